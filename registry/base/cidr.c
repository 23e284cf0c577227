/* SPDX-License-Identifier: BSD-2-Clause */
/* cidr.c — see cidr.h. */
#include "base/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_one(const char *s, size_t n, cidr *c) {
    char buf[CIDR_TEXT];
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    snprintf(c->text, sizeof(c->text), "%s", buf);
    char *slash = strchr(buf, '/');
    int bits = -1;
    if (slash != NULL) {
        *slash = '\0';
        const char *b = slash + 1;
        if (*b == '\0' || strlen(b) > 3)
            return -1;
        bits = 0;
        for (; *b; b++) {
            if (*b < '0' || *b > '9')
                return -1;
            bits = bits * 10 + (*b - '0');
        }
    }
    memset(c->addr, 0, sizeof(c->addr));
    if (inet_pton(AF_INET, buf, c->addr) == 1) {
        c->family = AF_INET;
        if (bits < 0)
            bits = 32;
        if (bits > 32)
            return -1;
    } else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
        c->family = AF_INET6;
        if (bits < 0)
            bits = 128;
        if (bits > 128)
            return -1;
    } else {
        return -1;
    }
    c->bits = bits;
    return 0;
}

static void add(cidr_list *l, const char *text) {
    if (l->n < CIDR_MAX && parse_one(text, strlen(text), &l->r[l->n]) == 0)
        l->n++;
}

void cidr_default_deny(cidr_list *l) {
    l->n = 0;
    add(l, "169.254.0.0/16");
    add(l, "fe80::/10");
    add(l, "224.0.0.0/4");
    add(l, "ff00::/8");
    add(l, "255.255.255.255/32");
    add(l, "0.0.0.0/32");
    add(l, "::/128");
}

int cidr_parse_list(const char *s, cidr_list *l, char *msg, size_t len) {
    l->n = 0;
    if (strcmp(s, "none") == 0)
        return 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (l->n == CIDR_MAX) {
            snprintf(msg, len, "more than %d ranges", CIDR_MAX);
            return -1;
        }
        if (parse_one(p, n, &l->r[l->n]) != 0) {
            snprintf(msg, len, "\"%.*s\" is not an address or ADDRESS/BITS", (int)(n > 64 ? 64 : n), p);
            return -1;
        }
        l->n++;
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

static int in_range(const cidr *c, int family, const unsigned char *a) {
    if (c->family != family)
        return 0;
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, a, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (c->addr[full] & mask) == (a[full] & mask);
}

static const cidr *find(const cidr_list *l, int family, const unsigned char *a) {
    for (size_t i = 0; i < l->n; i++)
        if (in_range(&l->r[i], family, a))
            return &l->r[i];
    return NULL;
}

static int allowed(const cidr_rule *rule, int family, const unsigned char *a, const cidr **why) {
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (family == AF_INET6 && memcmp(a, mapped, 12) == 0) { /* ::ffff:a.b.c.d is a.b.c.d */
        family = AF_INET;
        a += 12;
    }
    *why = NULL;
    if (rule->allow.n > 0 && find(&rule->allow, family, a) == NULL)
        return 0;
    const cidr *d = find(&rule->deny, family, a);
    if (d != NULL) {
        *why = d;
        return 0;
    }
    return 1;
}

int cidr_allowed(const cidr_rule *rule, const struct sockaddr *sa, const cidr **why) {
    if (sa->sa_family == AF_INET)
        return allowed(rule, AF_INET,
                       (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr, why);
    if (sa->sa_family == AF_INET6)
        return allowed(rule, AF_INET6,
                       (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr, why);
    *why = NULL;
    return 0;
}

int cidr_allowed_text(const cidr_rule *rule, const char *text, const cidr **why) {
    unsigned char a[16];
    if (inet_pton(AF_INET, text, a) == 1)
        return allowed(rule, AF_INET, a, why);
    if (inet_pton(AF_INET6, text, a) == 1)
        return allowed(rule, AF_INET6, a, why);
    return -1;
}

void cidr_list_text(const cidr_list *l, char *out, size_t len) {
    size_t used = 0;
    if (len == 0)
        return;
    out[0] = '\0';
    if (l->n == 0) {
        snprintf(out, len, "none");
        return;
    }
    for (size_t i = 0; i < l->n && used < len; i++) {
        int w = snprintf(out + used, len - used, "%s%s", i ? "," : "", l->r[i].text);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}
