/* SPDX-License-Identifier: BSD-2-Clause */
/* msg.c — the DNS message layer (msg.h): reading queries, classifying names under the
 * domain, writing answers with ldns.
 *
 * Why queries are read here and not by ldns_wire2pkt: a query's shape is narrow (one
 * question whose name comes first in the message, so it cannot be compressed; at most
 * an OPT and a TSIG record after it), and ldns reads whatever a message holds with loose
 * limits: it follows up to 65,535 compression pointers per name, forward ones and loops
 * included (one self-pointing name costs ~330 us, a crafted 64 KiB message ~100 ms
 * against ~0.5 us for a real query), counts OPT records in a byte that wraps at 256 and
 * decrements ARCOUNT inside the loop that reads the additional section when it meets a
 * TSIG. A scanner that knows the shape of a query is short, reads a query in O(its
 * length) and is what a server must have in front of ldns anyway; with it in place
 * there is no query left that ldns would need to read. ldns remains the reference: the
 * unit tests and the fuzzer (tests/fuzz/fuzz_dns.c) check that every message accepted
 * here reads the same through ldns_wire2pkt. Answers are written with ldns (names,
 * compression, records).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#include "front/dns/msg.h"

#define TYPE_SIG     24   /* SIG(0), RFC 2931 */
#define TYPE_TSIG    250  /* RFC 8945 */
#define MAX_JUMPS    64   /* compression pointers followed in one name, at most: a
                           * compressed name has one; chains of them are legal but odd */
#define LABELS_MAX   128  /* labels of a name: 255 wire bytes hold at most 127 */
#define OPT_LEN      11   /* our OPT record: root, type, class, TTL, RDLENGTH 0 */

/* SOA timers (seconds): what a secondary would use; there is none, and only the
 * minimum (= the answer TTL, for negative caching) matters to resolvers. */
#define SOA_REFRESH  3600
#define SOA_RETRY    600
#define SOA_EXPIRE   86400

static uint16_t rd16(const uint8_t *p) {
    return (uint16_t)(p[0] << 8 | p[1]);
}

static char lower(char c) {
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* ------------------------------------------------------------------------------------ */
/* Parsing                                                                              */

/* Checks the name that starts at pkt[*pos] (rules: dns_parse in msg.h). A pointer must
 * target the message after the header and strictly before the lowest position read so
 * far in this name, so every jump goes further back and a name cannot loop; the labels
 * read in between are bounded by the 255-byte limit. On success returns 0, sets *pos
 * past the name's bytes at its place (the first pointer ends them) and *wire_len to its
 * uncompressed length, root label included. Returns -1 when malformed. */
static int scan_name(const uint8_t *pkt, size_t len, size_t *pos, size_t *wire_len) {
    size_t p = *pos, lowest = *pos, n = 0, end = 0;
    int jumps = 0;
    for (;;) {
        if (p >= len)
            return -1;
        uint8_t c = pkt[p];
        if ((c & 0xC0) == 0xC0) {
            if (p + 1 >= len)
                return -1;
            size_t target = (size_t)(c & 0x3F) << 8 | pkt[p + 1];
            if (target < DNS_HEADER_LEN || target >= lowest || ++jumps > MAX_JUMPS)
                return -1;
            if (end == 0)
                end = p + 2;
            p = lowest = target;
            continue;
        }
        if (c & 0xC0)
            return -1;             /* extended label types (01, 10): none in use */
        n += 1 + (size_t)c;        /* the length byte (the root label: only it) */
        if (n > DNS_NAME_WIRE_MAX)
            return -1;
        if (c == 0)
            break;
        if ((size_t)c >= len - p)  /* the label's bytes, and a byte after them */
            return -1;
        p += 1 + (size_t)c;
    }
    *pos = end != 0 ? end : p + 1;
    *wire_len = n;
    return 0;
}

/* Writes the uncompressed name wire[] as lowercased text into out[DNS_NAME_TEXT_MAX+1]
 * (format: dns_query.qname). */
static void name_text(const uint8_t *wire, char *out) {
    char *o = out;
    size_t p = 0;
    while (wire[p] != 0) {
        size_t n = wire[p++];
        if (o != out)
            *o++ = '.';
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)lower((char)wire[p + i]);
            if (c == '.' || c == '\\') {
                *o++ = '\\';
                *o++ = (char)c;
            } else if (c < '!' || c > '~') {
                *o++ = '\\';
                *o++ = (char)('0' + c / 100);
                *o++ = (char)('0' + c / 10 % 10);
                *o++ = (char)('0' + c % 10);
            } else {
                *o++ = (char)c;
            }
        }
        p += n;
    }
    *o = '\0';
}

/* OPT RDATA: a sequence of {code, length, data}, each fitting exactly (RFC 6891 6.1.2). */
static int options_ok(const uint8_t *p, size_t len) {
    while (len > 0) {
        if (len < 4)
            return 0;
        size_t olen = rd16(p + 2);
        if (olen > len - 4)
            return 0;
        p += 4 + olen;
        len -= 4 + olen;
    }
    return 1;
}

dns_outcome dns_parse(const uint8_t *pkt, size_t len, dns_query *q) {
    /* Not the two name buffers: zeroing them would cost more than the parse. */
    memset(q, 0, offsetof(dns_query, qname_wire));
    q->qname[0] = '\0';
    q->udp_size = DNS_UDP_MIN;
    if (len < DNS_HEADER_LEN)
        return DNS_PARSE_IGNORE;
    q->id = rd16(pkt);
    if (pkt[2] & 0x80)
        return DNS_PARSE_IGNORE;   /* QR: a response */
    q->opcode = (pkt[2] >> 3) & 0x0F;
    q->rd = pkt[2] & 0x01;
    q->cd = (pkt[3] >> 4) & 0x01;
    if (q->opcode != 0)
        return DNS_PARSE_NOTIMP;
    unsigned qd = rd16(pkt + 4), an = rd16(pkt + 6), ns = rd16(pkt + 8), ar = rd16(pkt + 10);
    if (qd != 1 || an != 0 || ns != 0)
        return DNS_PARSE_FORMERR;

    size_t pos = DNS_HEADER_LEN, qlen, wl;
    if (scan_name(pkt, len, &pos, &qlen) != 0 || len - pos < 4)
        return DNS_PARSE_FORMERR;
    /* The first name of a message cannot be compressed (no pointer can target an
     * earlier position after the header), so it lies at offset 12, in one piece. */
    uint16_t qtype = rd16(pkt + pos), qclass = rd16(pkt + pos + 2);
    pos += 4;

    int opt = 0, sig = 0;
    uint16_t udp = 0;
    uint8_t version = 0, dobit = 0;
    for (unsigned i = 0; i < ar; i++) {
        if (sig)
            return DNS_PARSE_FORMERR;  /* TSIG/SIG(0) must be the last record */
        size_t owner = pos;
        if (scan_name(pkt, len, &pos, &wl) != 0 || len - pos < 10)
            return DNS_PARSE_FORMERR;
        uint16_t type = rd16(pkt + pos);
        size_t rdlen = rd16(pkt + pos + 8);
        if (rdlen > len - pos - 10)
            return DNS_PARSE_FORMERR;
        if (type == DNS_TYPE_OPT) {
            if (opt || pos != owner + 1)   /* a second OPT; an owner other than the root */
                return DNS_PARSE_FORMERR;
            if (!options_ok(pkt + pos + 10, rdlen))
                return DNS_PARSE_FORMERR;
            opt = 1;
            udp = rd16(pkt + pos + 2);
            version = pkt[pos + 5];
            dobit = pkt[pos + 6] >> 7;
        } else if (type == TYPE_TSIG || type == TYPE_SIG) {
            sig = 1;
        } else {
            return DNS_PARSE_FORMERR;
        }
        pos += 10 + rdlen;
    }

    q->has_question = 1;
    q->qtype = qtype;
    q->qclass = qclass;
    q->qname_len = (uint16_t)qlen;
    memcpy(q->qname_wire, pkt + DNS_HEADER_LEN, qlen);
    name_text(q->qname_wire, q->qname);
    if (opt) {
        q->edns = 1;
        q->edns_version = version;
        q->edns_do = dobit;
        q->udp_size = udp < DNS_UDP_MIN ? DNS_UDP_MIN : udp;
    }
    return DNS_PARSE_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Classification                                                                       */

typedef struct label {
    size_t len;
    char b[DNS_LABEL_MAX + 1];     /* unescaped, ASCII-lowercased, NUL-terminated (a
                                    * label may hold a NUL: then strlen(b) < len) */
} label;

/* Splits the text name s (format: dns_query.qname; any case; an optional trailing dot;
 * "" and "." are the root) into lab[LABELS_MAX]. Returns the count, or -1 when s is not
 * a valid name (empty label, bad escape, a label over 63 bytes, over 255 bytes). */
static int split_name(const char *s, label *lab) {
    int n = 0;
    size_t wire = 1;               /* the root label */
    if (s[0] == '.' && s[1] == '\0')
        return 0;
    while (*s != '\0') {
        if (n == LABELS_MAX)
            return -1;
        label *l = &lab[n];
        l->len = 0;
        while (*s != '\0' && *s != '.') {
            unsigned c = (unsigned char)*s++;
            if (c == '\\') {
                if (s[0] >= '0' && s[0] <= '9') {
                    if (!(s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9'))
                        return -1;
                    c = (unsigned)(s[0] - '0') * 100 + (unsigned)(s[1] - '0') * 10 +
                        (unsigned)(s[2] - '0');
                    if (c > 255)
                        return -1;
                    s += 3;
                } else if (*s != '\0') {
                    c = (unsigned char)*s++;
                } else {
                    return -1;
                }
            }
            if (l->len == DNS_LABEL_MAX)
                return -1;
            l->b[l->len++] = lower((char)c);
        }
        if (l->len == 0)
            return -1;             /* "a..b", ".a" */
        l->b[l->len] = '\0';
        wire += 1 + l->len;
        if (wire > DNS_NAME_WIRE_MAX)
            return -1;
        n++;
        if (*s == '.')
            s++;                   /* a trailing dot ends the loop: "a.b." */
    }
    return n;
}

static int valid_service(const char *s) {
    return req_valid_service(s, strlen(s));
}

/* Joins lab[from..to) with dots into out[REQ_SERVICE_MAX + 1], after skipping `skip`
 * bytes of the first label (the '_' of an SRV name). Returns 1 when the result is a
 * valid service name; a label holding a '.' or a byte no service name has makes it
 * invalid (a name "a\.b" is not the service "a.b"). */
static int join_service(const label *lab, int from, int to, size_t skip, char *out) {
    size_t n = 0;
    out[0] = '\0';
    for (int i = from; i < to; i++) {
        const label *l = &lab[i];
        size_t off = i == from ? skip : 0;
        size_t len = l->len - off;
        if (memchr(l->b + off, '.', len) != NULL || memchr(l->b + off, '\0', len) != NULL)
            return 0;
        if (n + (i > from) + len > REQ_SERVICE_MAX)
            return 0;
        if (i > from)
            out[n++] = '.';
        memcpy(out + n, l->b + off, len);
        n += len;
        out[n] = '\0';
    }
    return valid_service(out);
}

/* A label usable as a tag (after skipping `skip` bytes): not empty, no NUL. */
static int tag_ok(const label *l, size_t skip) {
    return l->len > skip && memchr(l->b + skip, '\0', l->len - skip) == NULL;
}

static int exists(int (*service_exists)(void *, const char *), void *ud, const char *s) {
    return service_exists != NULL && service_exists(ud, s);
}

static dns_kind set_kind(dns_name *out, dns_kind k) {
    out->kind = k;
    return k;
}

dns_kind dns_classify(const char *domain, const char *qname,
                      int (*service_exists)(void *ud, const char *service), void *ud,
                      dns_name *out) {
    label lab[LABELS_MAX], dom[LABELS_MAX];
    memset(out, 0, sizeof(*out));
    int nq = split_name(qname, lab), nd = split_name(domain, dom);
    if (nq < 0 || nd < 0 || nq < nd)
        return set_kind(out, DNS_NAME_OUTSIDE);
    for (int i = 0; i < nd; i++) {
        const label *a = &lab[nq - nd + i], *b = &dom[i];
        if (a->len != b->len || memcmp(a->b, b->b, a->len) != 0)
            return set_kind(out, DNS_NAME_OUTSIDE);
    }
    int m = nq - nd - 1;           /* labels before "service" / "instance" */
    if (m < 0)
        return set_kind(out, DNS_NAME_APEX);
    const label *kind = &lab[m];

    if (strcmp(kind->b, "instance") == 0 && kind->len == 8) {
        if (m == 0)
            return set_kind(out, DNS_NAME_EMPTY);
        if (m > 1 || strspn(lab[0].b, "abcdefghijklmnopqrstuvwxyz0123456789_-") != lab[0].len)
            return set_kind(out, DNS_NAME_UNKNOWN);
        memcpy(out->id, lab[0].b, lab[0].len + 1);
        return set_kind(out, DNS_NAME_INSTANCE);
    }
    if (strcmp(kind->b, "service") != 0 || kind->len != 7)
        return set_kind(out, DNS_NAME_UNKNOWN);
    if (m == 0 || (m == 1 && lab[0].b[0] == '_'))
        return set_kind(out, DNS_NAME_EMPTY);   /* service.D; _tcp.service.D, _<tag>... */

    /* The readings of P = lab[0..m): */
    char srv[REQ_SERVICE_MAX + 1], whole[REQ_SERVICE_MAX + 1], rest[REQ_SERVICE_MAX + 1];
    int srv_ok = 0, whole_ok, tagged_ok = 0;
    const label *proto = &lab[m - 1];
    /* _S._L: SRV of S (one or more labels), tag L unless "tcp" */
    if (m >= 2 && lab[0].b[0] == '_' && proto->b[0] == '_')
        srv_ok = join_service(lab, 0, m - 1, 1, srv) && tag_ok(proto, 1);
    /* P as a whole: a service */
    whole_ok = join_service(lab, 0, m, 0, whole);
    /* T.S: tag T (the first label) of service S (the rest) */
    if (m >= 2)
        tagged_ok = join_service(lab, 1, m, 0, rest) && tag_ok(&lab[0], 0);

    int pick;                      /* 0 SRV, 1 SERVICE, 2 TAGGED, -1 none */
    if (srv_ok && exists(service_exists, ud, srv))
        pick = 0;
    else if (whole_ok && exists(service_exists, ud, whole))
        pick = 1;
    else if (tagged_ok && exists(service_exists, ud, rest))
        pick = 2;
    else
        pick = srv_ok ? 0 : whole_ok ? 1 : tagged_ok ? 2 : -1;

    switch (pick) {
    case 0:
        memcpy(out->service, srv, sizeof(srv));
        if (!(proto->len == 4 && strcmp(proto->b, "_tcp") == 0)) {
            out->has_tag = 1;
            memcpy(out->tag, proto->b + 1, proto->len);   /* with its NUL */
        }
        return set_kind(out, DNS_NAME_SRV);
    case 1:
        memcpy(out->service, whole, sizeof(whole));
        return set_kind(out, DNS_NAME_SERVICE);
    case 2:
        memcpy(out->service, rest, sizeof(rest));
        out->has_tag = 1;
        memcpy(out->tag, lab[0].b, lab[0].len + 1);
        return set_kind(out, DNS_NAME_TAGGED);
    default:
        return set_kind(out, DNS_NAME_UNKNOWN);
    }
}

/* ------------------------------------------------------------------------------------ */
/* Building                                                                             */

typedef struct builder {
    ldns_buffer *buf;
    ldns_rbtree_t *names;          /* ldns's compression table: name -> offset */
    ldns_rdf *qname;               /* the question's name (client's case), or NULL */
    const dns_answer *a;
} builder;

static void free_name_node(ldns_rbnode_t *node, void *arg) {
    (void)arg;
    ldns_rdf_deep_free((ldns_rdf *)node->key);
    free(node);
}

/* ldns_dname_new_frm_str with "" meaning the root. NULL: invalid text (or no memory). */
static ldns_rdf *dname(const char *text) {
    return ldns_dname_new_frm_str(text[0] == '\0' ? "." : text);
}

/* "<prefix>.<zone>" as a name (zone "" = the root). */
static ldns_rdf *zone_name(const char *prefix, const char *zone) {
    char s[DNS_NAME_TEXT_MAX + 16];
    int n = zone[0] == '\0' || strcmp(zone, ".") == 0
                ? snprintf(s, sizeof(s), "%s.", prefix)
                : snprintf(s, sizeof(s), "%s.%s", prefix, zone);
    if (n < 0 || (size_t)n >= sizeof(s))
        return NULL;
    return dname(s);
}

/* Pushes rdf onto rr, taking it over; 0 or -1 (rdf is freed). */
static int push(ldns_rr *rr, ldns_rdf *rdf) {
    if (rdf == NULL)
        return -1;
    if (!ldns_rr_push_rdf(rr, rdf)) {
        ldns_rdf_deep_free(rdf);
        return -1;
    }
    return 0;
}

/* Appends the record *in to the message, with compression. Returns 0, -EINVAL (bad
 * name text, unknown type, no question for an owner-less record) or -ENOMEM. */
static int write_rr(builder *b, const dns_rr *in, ldns_pkt_section section) {
    const dns_answer *a = b->a;
    ldns_rr *rr = ldns_rr_new();
    if (rr == NULL)
        return -ENOMEM;
    int rc = -EINVAL;
    ldns_rdf *owner;
    if (in->type == DNS_TYPE_SOA)
        owner = a->zone != NULL ? dname(a->zone) : NULL;
    else if (in->owner != NULL)
        owner = dname(in->owner);
    else
        owner = b->qname != NULL ? ldns_rdf_clone(b->qname) : NULL;
    if (owner == NULL)
        goto out;
    ldns_rr_set_owner(rr, owner);
    ldns_rr_set_type(rr, (ldns_rr_type)in->type);
    ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
    ldns_rr_set_ttl(rr, a->ttl);
    switch (in->type) {
    case DNS_TYPE_A:
        if (push(rr, ldns_rdf_new_frm_data(LDNS_RDF_TYPE_A, 4, in->addr)) != 0)
            goto nomem;
        break;
    case DNS_TYPE_AAAA:
        if (push(rr, ldns_rdf_new_frm_data(LDNS_RDF_TYPE_AAAA, 16, in->addr)) != 0)
            goto nomem;
        break;
    case DNS_TYPE_CNAME:
        if (in->target == NULL || push(rr, dname(in->target)) != 0)
            goto out;
        break;
    case DNS_TYPE_SRV:
        if (push(rr, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, in->priority)) != 0 ||
            push(rr, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, in->weight)) != 0 ||
            push(rr, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, in->port)) != 0)
            goto nomem;
        if (in->target == NULL || push(rr, dname(in->target)) != 0)
            goto out;
        break;
    case DNS_TYPE_SOA:
        if (push(rr, zone_name("ns", a->zone)) != 0 ||
            push(rr, zone_name("hostmaster", a->zone)) != 0)
            goto out;
        if (push(rr, ldns_native2rdf_int32(LDNS_RDF_TYPE_INT32, a->serial)) != 0 ||
            push(rr, ldns_native2rdf_int32(LDNS_RDF_TYPE_PERIOD, SOA_REFRESH)) != 0 ||
            push(rr, ldns_native2rdf_int32(LDNS_RDF_TYPE_PERIOD, SOA_RETRY)) != 0 ||
            push(rr, ldns_native2rdf_int32(LDNS_RDF_TYPE_PERIOD, SOA_EXPIRE)) != 0 ||
            push(rr, ldns_native2rdf_int32(LDNS_RDF_TYPE_PERIOD, a->ttl)) != 0)
            goto nomem;
        break;
    default:
        goto out;
    }
    if (ldns_rr2buffer_wire_compress(b->buf, rr, (int)section, b->names) != LDNS_STATUS_OK)
        goto nomem;
    rc = 0;
    goto out;
nomem:
    rc = -ENOMEM;
out:
    ldns_rr_free(rr);
    return rc;
}

int dns_build(const dns_query *q, const dns_answer *a, size_t max_size,
              uint8_t **out, size_t *outlen) {
    *out = NULL;
    *outlen = 0;
    if (a->rcode < 0 || a->rcode > 0xFFF || (a->rcode > 0xF && !q->edns))
        return -EINVAL;
    size_t limit = max_size < DNS_TCP_MAX ? max_size : DNS_TCP_MAX;
    size_t opt = q->edns ? OPT_LEN : 0;
    builder b = {.a = a};
    int rc = -ENOMEM;
    b.buf = ldns_buffer_new(DNS_UDP_MIN);
    b.names = ldns_rbtree_create(ldns_dname_compare_v);
    if (b.buf == NULL || b.names == NULL)
        goto done;

    /* The header last, when the counts are known. */
    if (!ldns_buffer_reserve(b.buf, DNS_HEADER_LEN))
        goto done;
    memset(ldns_buffer_begin(b.buf), 0, DNS_HEADER_LEN);
    ldns_buffer_skip(b.buf, DNS_HEADER_LEN);
    if (q->has_question) {
        /* In the client's case, byte for byte, and offered for compression: answers
         * owned by the question's name point to it. */
        b.qname = ldns_dname_new_frm_data(q->qname_len, q->qname_wire);
        if (b.qname == NULL ||
            ldns_dname2buffer_wire_compress(b.buf, b.qname, b.names) != LDNS_STATUS_OK ||
            !ldns_buffer_reserve(b.buf, 4))
            goto done;
        ldns_buffer_write_u16(b.buf, q->qtype);
        ldns_buffer_write_u16(b.buf, q->qclass);
    }
    if (ldns_buffer_position(b.buf) + opt > limit) {
        rc = -EMSGSIZE;
        goto done;
    }

    /* Records in wire order; the first one that does not fit cuts the message there
     * (compression pointers only point back, so the bytes before a record stand alone). */
    dns_rr soa = {.type = DNS_TYPE_SOA};
    const struct {
        const dns_rr *rr;
        size_t n;
        ldns_pkt_section section;
    } sections[3] = {
        {a->answer, a->answer ? a->nanswer : 0, LDNS_SECTION_ANSWER},
        {&soa, a->soa ? 1 : 0, LDNS_SECTION_AUTHORITY},
        {a->additional, a->additional ? a->nadditional : 0, LDNS_SECTION_ADDITIONAL},
    };
    size_t budget = limit - opt, kept_end = ldns_buffer_position(b.buf);
    unsigned count[3] = {0, 0, 0};
    int tc = 0;
    for (int s = 0; s < 3; s++) {
        for (size_t i = 0; i < sections[s].n; i++) {
            if ((rc = write_rr(&b, &sections[s].rr[i], sections[s].section)) != 0)
                goto done;
            if (ldns_buffer_position(b.buf) > budget) {
                tc = s < 2;        /* an answer or authority record dropped */
                goto cut;
            }
            kept_end = ldns_buffer_position(b.buf);
            count[s]++;
        }
    }
cut:
    ldns_buffer_set_position(b.buf, kept_end);
    rc = -ENOMEM;
    if (opt) {
        if (!ldns_buffer_reserve(b.buf, OPT_LEN))
            goto done;
        ldns_buffer_write_u8(b.buf, 0);                           /* owner: the root */
        ldns_buffer_write_u16(b.buf, DNS_TYPE_OPT);
        ldns_buffer_write_u16(b.buf, DNS_EDNS_PAYLOAD);           /* class: payload */
        ldns_buffer_write_u8(b.buf, (uint8_t)(a->rcode >> 4));    /* extended rcode */
        ldns_buffer_write_u8(b.buf, 0);                           /* version */
        ldns_buffer_write_u16(b.buf, 0);                          /* flags (no DO) */
        ldns_buffer_write_u16(b.buf, 0);                          /* RDLENGTH */
    }
    uint8_t *h = ldns_buffer_begin(b.buf);
    h[0] = (uint8_t)(q->id >> 8);
    h[1] = (uint8_t)q->id;
    h[2] = (uint8_t)(0x80 | (q->opcode & 0x0F) << 3 | (a->aa ? 0x04 : 0) | (tc ? 0x02 : 0) |
                     (q->rd ? 0x01 : 0));
    h[3] = (uint8_t)((q->cd ? 0x10 : 0) | (a->rcode & 0x0F));
    ldns_buffer_write_u16_at(b.buf, 4, q->has_question ? 1 : 0);
    ldns_buffer_write_u16_at(b.buf, 6, (uint16_t)count[0]);
    ldns_buffer_write_u16_at(b.buf, 8, (uint16_t)count[1]);
    ldns_buffer_write_u16_at(b.buf, 10, (uint16_t)(count[2] + (opt ? 1 : 0)));
    if (!ldns_buffer_status_ok(b.buf))
        goto done;
    *outlen = ldns_buffer_position(b.buf);
    *out = ldns_buffer_export(b.buf);  /* the data is ours now; the buffer is freed below */
    rc = 0;
done:
    if (b.names != NULL) {
        ldns_traverse_postorder(b.names, free_name_node, NULL);
        ldns_rbtree_free(b.names);
    }
    ldns_rdf_deep_free(b.qname);
    ldns_buffer_free(b.buf);
    return rc;
}

int dns_truncated(const uint8_t *msg, size_t len) {
    return len >= DNS_HEADER_LEN && (msg[2] & 0x02) != 0;
}

int dns_patch(uint8_t *msg, size_t len, const dns_query *q) {
    if (!q->has_question || len < DNS_HEADER_LEN + (size_t)q->qname_len + 4 ||
        rd16(msg + 4) != 1)
        return -EINVAL;
    uint8_t *name = msg + DNS_HEADER_LEN;
    for (size_t i = 0; i < q->qname_len; i++)
        if (lower((char)name[i]) != lower((char)q->qname_wire[i]))
            return -EINVAL;
    if (rd16(name + q->qname_len) != q->qtype || rd16(name + q->qname_len + 2) != q->qclass)
        return -EINVAL;
    memcpy(name, q->qname_wire, q->qname_len);
    msg[0] = (uint8_t)(q->id >> 8);
    msg[1] = (uint8_t)q->id;
    msg[2] = (uint8_t)((msg[2] & ~0x01) | (q->rd ? 0x01 : 0));
    msg[3] = (uint8_t)((msg[3] & ~0x10) | (q->cd ? 0x10 : 0));
    return 0;
}
