/* SPDX-License-Identifier: BSD-2-Clause */
/* cidr.h — address ranges ("10.0.0.0/8", "fe80::/10") and the allow/deny rule the health
 * checker applies to its targets, so it cannot be pointed at a cloud metadata endpoint,
 * a multicast group or a whole subnet by whoever can register. Pure: no I/O.
 */
#ifndef REGISTRY_BASE_CIDR_H
#define REGISTRY_BASE_CIDR_H

#include <stddef.h>
#include <sys/socket.h>

#define CIDR_MAX 64                 /* ranges in one list */
#define CIDR_TEXT 64                /* room for one range as text */

typedef struct cidr {
    int family;                     /* AF_INET or AF_INET6 */
    unsigned char addr[16];         /* network address (4 bytes used for AF_INET) */
    int bits;                       /* prefix length */
    char text[CIDR_TEXT];           /* as written (for messages) */
} cidr;

typedef struct cidr_list {
    cidr r[CIDR_MAX];
    size_t n;
} cidr_list;

/* The rule: a target is allowed when allow is empty or holds it, and deny does not. */
typedef struct cidr_rule {
    cidr_list allow, deny;
} cidr_rule;

/* The default deny list: link-local (169.254.0.0/16, fe80::/10: cloud metadata
 * endpoints), multicast (224.0.0.0/4, ff00::/8), broadcast (255.255.255.255/32) and
 * unspecified (0.0.0.0/32, ::/128) addresses. */
void cidr_default_deny(cidr_list *l);
/* Parses "CIDR[,CIDR...]" (an address alone is a /32 or /128; "none" is the empty list)
 * into l. Returns 0, or -1 with msg[len] naming the bad part. */
int cidr_parse_list(const char *s, cidr_list *l, char *msg, size_t len);
/* Is the address (sockaddr_in/in6; IPv4-mapped IPv6 counts as IPv4) allowed? 1, or 0
 * with *why set to the range that refuses it (NULL: not in the allow list). */
int cidr_allowed(const cidr_rule *rule, const struct sockaddr *sa, const cidr **why);
/* The same for an IP literal; -1 when text is not an IP literal (a hostname). */
int cidr_allowed_text(const cidr_rule *rule, const char *text, const cidr **why);
/* Writes a list as "a,b,c" (or "none") into out[len]. */
void cidr_list_text(const cidr_list *l, char *out, size_t len);

#endif
