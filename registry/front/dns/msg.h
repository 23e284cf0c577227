/* SPDX-License-Identifier: BSD-2-Clause */
/* msg.h — the DNS front-end's message layer: read a query (dns_parse), say what a name
 * under the registry's domain asks for (dns_classify), write an answer (dns_build).
 * Pure functions in the shape of NSD's query.c (take a packet) and answer.c (assemble
 * sections); the sockets, the core and the answer cache live elsewhere (the server file
 * of the DNS front-end), so this file can be unit-tested and fuzzed on its own
 * (tests/unit/test_dnsmsg.c, tests/fuzz/fuzz_dns.c). Queries are read by a scanner made
 * for their narrow shape, answers written with ldns (msg.c's head says why).
 *
 * The server's way through it:
 *   dns_parse(pkt, len, &q)
 *     IGNORE  -> send nothing
 *     NOTIMP  -> dns_build(&q, {rcode NOTIMP})       header only, opcode echoed
 *     FORMERR -> dns_build(&q, {rcode FORMERR})      header only
 *     OK      -> class not IN/ANY: REFUSED; else dns_classify(domain, q.qname, ...)
 *                  OUTSIDE -> REFUSED; UNKNOWN -> NXDOMAIN + SOA; EMPTY -> NODATA + SOA;
 *                  the others -> ask the core, fill a dns_answer, dns_build(...)
 *   max_size: UDP q.udp_size (512 without EDNS), TCP DNS_TCP_MAX.
 * ANY (qtype 255): the builder writes whatever records it is given. The suggested answer
 * is every record the name has (A and AAAA of a service, SRV + additional for an SRV
 * name, the SOA at the apex): small per name, and cut to the client's size like any
 * answer, so it amplifies no more than an A query; RFC 8482's minimal answer is allowed
 * but would make `dig ANY` useless for no gain here.
 */
#ifndef REGISTRY_FRONT_DNS_MSG_H
#define REGISTRY_FRONT_DNS_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "core/req.h"

#define DNS_HEADER_LEN     12
#define DNS_LABEL_MAX      63      /* bytes of one label */
#define DNS_NAME_WIRE_MAX  255     /* bytes of a name in wire form, root label included */
#define DNS_NAME_TEXT_MAX  1012    /* chars of a name as text: 253 label bytes, each "\DDD" */
#define DNS_UDP_MIN        512     /* UDP payload without EDNS0 (RFC 1035), and the floor
                                    * of an EDNS0 client's advertised size (RFC 6891 6.2.5) */
#define DNS_TCP_MAX        65535   /* a TCP message's length prefix is 16 bits */
#define DNS_EDNS_PAYLOAD   1232    /* the UDP payload size our OPT record advertises: what
                                    * fits an IPv6 minimum MTU without fragments (DNS flag
                                    * day 2020); queries are far smaller anyway */

/* Types and classes (IANA values) the registry answers or the server compares with. */
enum {
    DNS_TYPE_A = 1, DNS_TYPE_NS = 2, DNS_TYPE_CNAME = 5, DNS_TYPE_SOA = 6,
    DNS_TYPE_AAAA = 28, DNS_TYPE_SRV = 33, DNS_TYPE_OPT = 41, DNS_TYPE_ANY = 255
};
enum { DNS_CLASS_IN = 1, DNS_CLASS_ANY = 255 };

/* Response codes. BADVERS (16) exists only with EDNS0: its high bits go in the OPT
 * record (answer it when q.edns_version > 0, RFC 6891 6.1.3). */
enum {
    DNS_RCODE_NOERROR = 0, DNS_RCODE_FORMERR = 1, DNS_RCODE_SERVFAIL = 2,
    DNS_RCODE_NXDOMAIN = 3, DNS_RCODE_NOTIMP = 4, DNS_RCODE_REFUSED = 5,
    DNS_RCODE_BADVERS = 16
};

/* ------------------------------------------------------------------------------------ */
/* Parsing a query                                                                       */

typedef enum dns_outcome {
    DNS_PARSE_OK,        /* a query to answer: every field of dns_query is set */
    DNS_PARSE_FORMERR,   /* a header could be read but the message is malformed: answer
                          * FORMERR (id, opcode, rd, cd are set; has_question = 0) */
    DNS_PARSE_IGNORE,    /* shorter than a header, or QR=1 (a response sent to us):
                          * send nothing, or two servers could answer each other forever */
    DNS_PARSE_NOTIMP     /* opcode other than QUERY: answer NOTIMP (id, opcode, rd, cd set) */
} dns_outcome;

/* A parsed query. Plain data, no pointers: it may be copied, kept and compared. */
typedef struct dns_query {
    uint16_t id;
    uint8_t opcode;               /* 0 = QUERY; echoed in every answer */
    uint8_t rd, cd;               /* RD and CD flags, copied into the answer */
    uint8_t has_question;         /* 1 when OK: the fields below are set */
    uint16_t qtype, qclass;       /* as sent: the server decides what it answers */
    uint8_t edns;                 /* an OPT record was present (answer with one) */
    uint8_t edns_version;         /* its version (0 is the only one there is) */
    uint8_t edns_do;              /* its DO bit (informational: we do no DNSSEC) */
    uint16_t udp_size;            /* the client's UDP payload size clamped to
                                   * [DNS_UDP_MIN, 65535]; DNS_UDP_MIN without EDNS */
    uint16_t qname_len;           /* bytes of qname_wire, root label included: 1..255 */
    uint8_t qname_wire[DNS_NAME_WIRE_MAX]; /* the name, uncompressed, in the case it was
                                   * sent (echoed, so 0x20-randomising resolvers match) */
    char qname[DNS_NAME_TEXT_MAX + 1]; /* the name as text, ASCII-lowercased, without the
                                   * trailing dot ("" = the root); in a label, '.' and '\'
                                   * are written "\." and "\\", bytes outside '!'..'~' as
                                   * "\DDD" (decimal), as in zone files */
} dns_query;

/* Reads the DNS message pkt[len] as a query into *q (reset first). Strict where a
 * query has no business being odd, lenient where resolvers differ:
 *   - exactly one question, no answer or authority records; in the additional section
 *     at most one OPT (owner: the root) and then at most one TSIG or SIG(0) record as
 *     the last one (skipped: we do not sign, the client sees an unsigned answer);
 *     anything else is FORMERR, as in NSD; bytes after the last record are ignored;
 *   - names: labels of at most 63 bytes, at most 255 bytes in all; compression pointers
 *     only into the message after the header, each strictly before every byte read so
 *     far for that name (so a name is read in O(its length) and a loop is FORMERR at
 *     once, where ldns alone follows up to 65,535 pointers); the extended label types 01/10 are FORMERR;
 *   - the OPT record's options must each fit its data (RFC 6891 6.1.2).
 * The question's name is the first name of the message, so it cannot be compressed (a
 * pointer can only point back): it is read in place, and a pointer there is FORMERR.
 * Returns the outcome; allocates nothing, cannot fail otherwise. O(len), about 60-100 ns
 * for a typical query (ldns_wire2pkt: ~0.5-1 us). */
dns_outcome dns_parse(const uint8_t *pkt, size_t len, dns_query *q);

/* ------------------------------------------------------------------------------------ */
/* What a name asks for                                                                  */

typedef enum dns_kind {
    DNS_NAME_OUTSIDE,    /* not under the domain (or not a well-formed name): REFUSED */
    DNS_NAME_APEX,       /* the domain itself: SOA (SOA, ANY), NODATA otherwise */
    DNS_NAME_SERVICE,    /* <service>.service.<domain>: A/AAAA (CNAME) */
    DNS_NAME_TAGGED,     /* <tag>.<service>.service.<domain>: the same, with that tag */
    DNS_NAME_SRV,        /* _<service>._tcp.service.<domain>, _<service>._<tag>.service.
                          * <domain> (RFC 2782): SRV + targets' addresses as additional */
    DNS_NAME_INSTANCE,   /* <id>.instance.<domain>: one instance's address (SRV targets) */
    DNS_NAME_EMPTY,      /* service.<domain>, instance.<domain>, _<x>.service.<domain>:
                          * names that exist because names below them do (RFC 8020 "empty
                          * non-terminals"): NODATA, never NXDOMAIN, or a resolver that
                          * follows RFC 8020 would take every name below as nonexistent */
    DNS_NAME_UNKNOWN     /* under the domain but none of the above: NXDOMAIN */
} dns_kind;

typedef struct dns_name {
    dns_kind kind;
    char service[REQ_SERVICE_MAX + 1]; /* SERVICE, TAGGED, SRV: a valid service name */
    int has_tag;                  /* TAGGED; SRV unless the protocol label is "_tcp" */
    char tag[DNS_LABEL_MAX + 1];  /* the tag (one label: at most 63 of a tag's 255 bytes;
                                   * unescaped, ASCII-lowercased, no NUL) or "" */
    char id[DNS_LABEL_MAX + 1];   /* INSTANCE: 1..63 bytes of [a-z0-9_-] (ids are hex) */
} dns_name;

/* Says what the text name qname (as dns_query.qname; any case, escapes as there, an
 * optional trailing dot) asks for under `domain` (text, e.g. "registry"; "" = the root).
 * Case-insensitive. Service names (REQ_SERVICE_MAX, [a-z0-9._-], first a letter or
 * digit) may contain dots, so a prefix P (one or more labels) in P.service.D can be read
 * up to three ways:
 *   SRV      P = _S._L (S one or more labels): SRV of service S, tag L unless L is "tcp"
 *   SERVICE  P as a whole is the service
 *   TAGGED   P = T.S: tag T (the first label, any bytes but NUL) of service S (the rest)
 * The first reading, in that order, whose service exists wins; if none exists, the first
 * reading that is well-formed (the server then answers NXDOMAIN: no such service); if no
 * reading is, UNKNOWN. So the whole prefix is a service before its first label is a tag.
 * I.instance.D is INSTANCE I. A label holding a '.' ("a\.b") is never part of a service
 * name. service_exists(ud, name) says whether a service is registered (name: a valid
 * service name, NUL-terminated; called up to 3 times); NULL means none is. Fills *out and
 * returns out->kind. */
dns_kind dns_classify(const char *domain, const char *qname,
                      int (*service_exists)(void *ud, const char *service), void *ud,
                      dns_name *out);

/* ------------------------------------------------------------------------------------ */
/* Building an answer                                                                    */

/* One record. The strings are borrowed for the call. */
typedef struct dns_rr {
    uint16_t type;                /* DNS_TYPE_A, _AAAA, _CNAME, _SRV, or _SOA (the zone's
                                   * SOA, from dns_answer: for SOA/ANY at the apex) */
    const char *owner;            /* its name as text; NULL = the question's name (then
                                   * written as a pointer to it, in the client's case) */
    uint8_t addr[16];             /* A: addr[0..3], AAAA: addr[0..15], network order */
    const char *target;           /* CNAME: the canonical name (a CNAME must be the only
                                   * record of its owner, RFC 2181 10.1: never mixed with
                                   * A/AAAA for one name); SRV: the target host */
    uint16_t priority, weight, port; /* SRV */
} dns_rr;

/* What the server decided to answer. Plain data it fills; the builder applies the rules
 * every answer shares (flags, question echo, EDNS0, truncation). */
typedef struct dns_answer {
    int rcode;                    /* DNS_RCODE_* */
    int aa;                       /* set AA: we are the authority for the domain */
    uint32_t ttl;                 /* TTL of every record; also the SOA's minimum (the
                                   * negative-caching TTL, RFC 2308) */
    const dns_rr *answer;         /* borrowed: the answer section, in order (the order the
                                   * server chose: rotation is its business) */
    size_t nanswer;
    const dns_rr *additional;     /* borrowed: the additional section (addresses of SRV
                                   * targets); the OPT record is added by the builder */
    size_t nadditional;
    int soa;                      /* add the zone's SOA to the authority section
                                   * (NXDOMAIN, NODATA) */
    const char *zone;             /* the domain, text ("" = root): owner of the SOA, whose
                                   * MNAME/RNAME are ns.<zone> and hostmaster.<zone>;
                                   * needed when soa is set or a record is DNS_TYPE_SOA */
    uint32_t serial;              /* the SOA serial */
} dns_answer;

/* Writes the answer to query *q into *out (malloc'ed, the caller frees it) of *outlen
 * bytes, at most max_size (capped at DNS_TCP_MAX).
 * Header: QR, q's id and opcode, AA as a->aa, RD and CD copied from q, RA = 0, the rcode.
 * Question: q's, echoed byte for byte, when q->has_question (not for FORMERR/NOTIMP).
 * EDNS0: an OPT record advertising DNS_EDNS_PAYLOAD when q->edns (never otherwise).
 * Names are compressed (not SRV targets, RFC 2782); records carry class IN and a->ttl.
 * Truncation, when the whole message is larger than max_size: records are dropped from
 * the end (the additional section first, then the authority, then the answer section)
 * until the rest fits; what is kept is always the header, the question, the OPT record,
 * and the records before the cut in full (the first answers: the server's rotation
 * decides which). TC is set when an answer or authority record was dropped, not when
 * only additional ones were (RFC 2181 9: a client retries over TCP on TC; missing
 * additional data it can ask for).
 * Returns 0, -EINVAL (a name that is not valid text, an unknown record type, no question
 * for an owner-less record, BADVERS without EDNS0), -ENOMEM, or -EMSGSIZE (not even the
 * header, question and OPT fit in max_size). */
int dns_build(const dns_query *q, const dns_answer *a, size_t max_size,
              uint8_t **out, size_t *outlen);

/* Did dns_build truncate msg (its TC bit)? */
int dns_truncated(const uint8_t *msg, size_t len);

/* Makes an answer built for one query the answer to another query q with the same
 * question (same name ignoring case, type, class, EDNS presence, and max_size): writes
 * q's id, RD and CD flags, and q's question name in q's case. This is how a cached
 * answer is reused: copy it, patch it, send it. Returns 0, or -EINVAL when msg has no
 * question or its question name is not q's. */
int dns_patch(uint8_t *msg, size_t len, const dns_query *q);

#endif
