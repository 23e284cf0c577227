/* SPDX-License-Identifier: BSD-2-Clause */
/* fuzz_dns.c — libFuzzer target for the DNS message layer (registry/front/dns/msg.c).
 *
 * Each input is one DNS message as a UDP datagram (or a TCP message without its length
 * prefix) brings it. The target does what the DNS server does with it: dns_parse; for a
 * query that parses, dns_classify its name under "registry" and answer it with an answer
 * of the kind the name asks for (1-48 A/AAAA, SRV + additional, NXDOMAIN + SOA,
 * REFUSED; the input's last byte picks the counts, so answers get cut); for FORMERR and
 * NOTIMP the header-only answer; each answer built for the client's UDP size, for 512
 * bytes and for TCP, then reused through dns_patch as the answer cache does. Beyond "no
 * crash, no leak, no undefined behaviour" it checks the promises of msg.h:
 *   - IGNORE exactly for messages shorter than a header or with QR set; the id (and
 *     the flags) are read whenever a header could be;
 *   - a parsed query's fields are what ldns_wire2pkt reads from the same bytes (id,
 *     flags, question, EDNS0), so the scanner accepts nothing ldns would read otherwise
 *     (the differential check: ldns is the reference parser);
 *   - the text name is lowercase and ldns reads it back as the same name;
 *   - classification is case-insensitive and only names valid service names;
 *   - every answer fits its size, is read by ldns, carries the query's id, opcode and
 *     question, sets TC only when it dropped answer records, and dns_patch with the
 *     same query changes nothing.
 * The input is also classified as a text name (NUL-terminated), which exercises the
 * text side of dns_classify with bytes no parsed query holds.
 *
 * Build and run: make -f tests/fuzz/fuzz.mk build-fuzz/fuzz_dns, then
 * build-fuzz/fuzz_dns -dict=... build-fuzz/corpus/dns tests/fuzz/corpus/dns
 * (tests/fuzz/fuzz.mk). Crash inputs go to tests/fuzz/regress/dns/ once fixed; the unit
 * test test_dnsmsg replays them under make check.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#include "front/dns/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken promise: say which one (libFuzzer saves the input), then crash. */
#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "fuzz_dns: check failed: %s (%s:%d)\n", #cond, __FILE__,       \
                    __LINE__);                                                             \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

static uint16_t rd16(const uint8_t *p) {
    return (uint16_t)(p[0] << 8 | p[1]);
}

static int valid_service(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > REQ_SERVICE_MAX)
        return 0;
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* Which services exist: decided by a byte of the name, so that both readings of an
 * ambiguous name get explored. */
static int exists_by_hash(void *ud, const char *service) {
    unsigned seed = *(const unsigned *)ud;
    CHECK(valid_service(service));
    unsigned h = seed;
    for (const char *p = service; *p; p++)
        h = h * 31 + (unsigned char)*p;
    return (h >> 3) & 1;
}

static int exists_all(void *ud, const char *service) {
    (void)ud;
    CHECK(valid_service(service));
    return 1;
}

/* The invariants of a classification. */
static void check_name(const dns_name *n, dns_kind k) {
    CHECK(n->kind == k);
    CHECK(k >= DNS_NAME_OUTSIDE && k <= DNS_NAME_UNKNOWN);
    switch (k) {
    case DNS_NAME_SERVICE:
        CHECK(valid_service(n->service));
        CHECK(!n->has_tag && n->tag[0] == '\0');
        break;
    case DNS_NAME_TAGGED:
        CHECK(valid_service(n->service));
        CHECK(n->has_tag && n->tag[0] != '\0' && strlen(n->tag) <= DNS_LABEL_MAX);
        break;
    case DNS_NAME_SRV:
        CHECK(valid_service(n->service));
        CHECK(n->has_tag ? n->tag[0] != '\0' : n->tag[0] == '\0');
        break;
    case DNS_NAME_INSTANCE:
        CHECK(n->id[0] != '\0' && strlen(n->id) <= DNS_LABEL_MAX);
        CHECK(n->service[0] == '\0');
        break;
    default:
        CHECK(n->service[0] == '\0' && n->id[0] == '\0' && !n->has_tag);
    }
    for (const char *p = n->tag; *p; p++)
        CHECK(!(*p >= 'A' && *p <= 'Z'));
}

/* The parsed query against ldns's reading of the same bytes. */
static void check_against_ldns(const uint8_t *data, size_t size, const dns_query *q) {
    /* ldns reads TSIG/SIG(0) rdata by type, which dns_parse skips: it may refuse one. */
    ldns_pkt *p = NULL;
    if (ldns_wire2pkt(&p, data, size) != LDNS_STATUS_OK) {
        CHECK(rd16(data + 10) >= 1);   /* only when there is an additional record */
        ldns_pkt_free(p);
        return;
    }
    CHECK(ldns_pkt_id(p) == q->id);
    CHECK(ldns_pkt_rd(p) == q->rd && ldns_pkt_cd(p) == q->cd);
    CHECK(ldns_pkt_get_opcode(p) == q->opcode);
    CHECK(ldns_rr_list_rr_count(ldns_pkt_question(p)) == 1);
    ldns_rr *qr = ldns_rr_list_rr(ldns_pkt_question(p), 0);
    CHECK(ldns_rr_get_type(qr) == q->qtype);
    CHECK(ldns_rr_get_class(qr) == q->qclass);
    CHECK(ldns_rdf_size(ldns_rr_owner(qr)) == q->qname_len);
    CHECK(memcmp(ldns_rdf_data(ldns_rr_owner(qr)), q->qname_wire, q->qname_len) == 0);
    if (ldns_pkt_tsig(p) == NULL) {
        /* (with a TSIG, ldns stops one additional record early: its ARCOUNT bug) */
        CHECK(ldns_pkt_edns(p) == q->edns);
        if (q->edns) {
            uint16_t udp = ldns_pkt_edns_udp_size(p);
            CHECK(q->udp_size == (udp < DNS_UDP_MIN ? DNS_UDP_MIN : udp));
            CHECK(ldns_pkt_edns_version(p) == q->edns_version);
            CHECK(ldns_pkt_edns_do(p) == q->edns_do);
        }
    }
    ldns_pkt_free(p);
}

/* The text name reads back (through ldns) as the lowercased wire name. */
static void check_text(const dns_query *q) {
    size_t n = strlen(q->qname);
    CHECK(n <= DNS_NAME_TEXT_MAX);
    for (size_t i = 0; i < n; i++)
        CHECK(!(q->qname[i] >= 'A' && q->qname[i] <= 'Z'));
    ldns_rdf *d = ldns_dname_new_frm_str(n == 0 ? "." : q->qname);
    CHECK(d != NULL);
    CHECK(ldns_rdf_size(d) == q->qname_len);
    const uint8_t *w = ldns_rdf_data(d);
    for (size_t i = 0; i < q->qname_len; i++) {
        uint8_t c = q->qname_wire[i];
        if (c >= 'A' && c <= 'Z')
            c = (uint8_t)(c - 'A' + 'a');
        CHECK(w[i] == c);
    }
    ldns_rdf_deep_free(d);
}

/* Builds the answer for max bytes and checks it. */
static void build_and_check(const dns_query *q, const dns_answer *a, size_t max) {
    uint8_t *m = NULL;
    size_t len = 0;
    int rc = dns_build(q, a, max, &m, &len);
    CHECK(rc == 0);
    CHECK(m != NULL && len >= DNS_HEADER_LEN && len <= max);
    ldns_pkt *p = NULL;
    CHECK(ldns_wire2pkt(&p, m, len) == LDNS_STATUS_OK);
    CHECK(ldns_pkt_id(p) == q->id && ldns_pkt_qr(p));
    CHECK(ldns_pkt_get_opcode(p) == q->opcode);
    CHECK(ldns_pkt_rd(p) == q->rd);
    CHECK(ldns_pkt_get_rcode(p) == (a->rcode & 0x0F));
    CHECK(ldns_pkt_edns(p) == q->edns);
    CHECK(ldns_pkt_qdcount(p) == q->has_question);
    if (q->has_question) {
        CHECK(memcmp(m + DNS_HEADER_LEN, q->qname_wire, q->qname_len) == 0);
        ldns_rr *qr = ldns_rr_list_rr(ldns_pkt_question(p), 0);
        CHECK(ldns_rr_get_type(qr) == q->qtype && ldns_rr_get_class(qr) == q->qclass);
    }
    size_t an = ldns_pkt_ancount(p), ns = ldns_pkt_nscount(p);
    CHECK(an <= a->nanswer && ns <= (a->soa ? 1u : 0u));
    CHECK(ldns_pkt_tc(p) == (an < a->nanswer || ns < (a->soa ? 1u : 0u)));
    /* Reusing it for the same query changes nothing. */
    if (q->has_question) {
        uint8_t *copy = malloc(len);
        CHECK(copy != NULL);
        memcpy(copy, m, len);
        CHECK(dns_patch(copy, len, q) == 0);
        CHECK(memcmp(copy, m, len) == 0);
        free(copy);
    }
    ldns_pkt_free(p);
    free(m);
}

#define MAX_RECORDS 48

/* The answer the server would give to a name of kind k, with `many` (0..255, from the
 * input) choosing how many records: enough, at the top, to be cut at 512 and 1232 bytes
 * (every section gets its turn). */
static void answer(const dns_query *q, const dns_name *n, unsigned many) {
    char target[DNS_LABEL_MAX + 32];
    snprintf(target, sizeof(target), "%s.instance.registry",
             n->kind == DNS_NAME_INSTANCE ? n->id : "0123456789abcdef");
    static dns_rr an[MAX_RECORDS], add[MAX_RECORDS];
    size_t count = 1 + many % MAX_RECORDS;
    memset(an, 0, sizeof(an));
    memset(add, 0, sizeof(add));
    dns_answer a = {.rcode = DNS_RCODE_NOERROR, .aa = 1, .ttl = 0, .answer = an,
                    .additional = add, .zone = "registry", .serial = 1};
    switch (n->kind) {
    case DNS_NAME_OUTSIDE:
        a.rcode = DNS_RCODE_REFUSED;
        a.aa = 0;
        break;
    case DNS_NAME_SERVICE:
    case DNS_NAME_TAGGED:
    case DNS_NAME_INSTANCE:
        for (size_t i = 0; i < count; i++)
            an[i] = i % 2 == 0
                        ? (dns_rr){.type = DNS_TYPE_A, .addr = {127, 0, 0, (uint8_t)i}}
                        : (dns_rr){.type = DNS_TYPE_AAAA,
                                   .addr = {0x20, 0x01, 0x0d, 0xb8, [15] = (uint8_t)i}};
        a.nanswer = count;
        break;
    case DNS_NAME_SRV:
        for (size_t i = 0; i < count; i++) {
            an[i] = (dns_rr){.type = DNS_TYPE_SRV, .priority = 1, .weight = 1,
                             .port = (uint16_t)(1000 + i), .target = target};
            add[i] = i % 2 == 0 ? (dns_rr){.type = DNS_TYPE_A, .owner = target,
                                           .addr = {10, 0, 0, (uint8_t)i}}
                                : (dns_rr){.type = DNS_TYPE_CNAME, .owner = "x.instance.registry",
                                           .target = "host.example.com"};
        }
        a.nanswer = count;
        a.nadditional = (many >> 1) % (count + 1);
        break;
    case DNS_NAME_APEX:
        an[0] = (dns_rr){.type = DNS_TYPE_SOA};
        a.nanswer = 1;
        break;
    case DNS_NAME_EMPTY:
        a.soa = 1;
        break;
    case DNS_NAME_UNKNOWN:
        a.rcode = DNS_RCODE_NXDOMAIN;
        a.soa = 1;
        break;
    }
    if (q->edns && q->edns_version > 0) {
        a.rcode = DNS_RCODE_BADVERS;
        a.nanswer = a.nadditional = 0;
        a.soa = 0;
    }
    build_and_check(q, &a, q->udp_size);
    build_and_check(q, &a, DNS_UDP_MIN);
    build_and_check(q, &a, DNS_TCP_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static dns_query q;            /* 1.3 KB: not on the stack of every call */
    dns_outcome o = dns_parse(data, size, &q);

    if (size < DNS_HEADER_LEN || (data[2] & 0x80)) {
        CHECK(o == DNS_PARSE_IGNORE);
    } else {
        CHECK(o != DNS_PARSE_IGNORE);
        CHECK(q.id == rd16(data));
        CHECK(q.rd == (data[2] & 1) && q.opcode == ((data[2] >> 3) & 0x0F));
        CHECK((o == DNS_PARSE_NOTIMP) == (q.opcode != 0));
    }
    CHECK(q.has_question == (o == DNS_PARSE_OK));
    CHECK(q.udp_size >= DNS_UDP_MIN);

    if (o == DNS_PARSE_OK) {
        CHECK(q.qname_len >= 1 && q.qname_len <= DNS_NAME_WIRE_MAX);
        CHECK(memcmp(q.qname_wire, data + DNS_HEADER_LEN, q.qname_len) == 0);
        CHECK(q.edns || q.udp_size == DNS_UDP_MIN);
        check_against_ldns(data, size, &q);
        check_text(&q);

        /* Classify with three views of which services exist; case must not matter. */
        unsigned seed = size > DNS_HEADER_LEN ? data[size - 1] : 0;
        dns_name n, upper;
        check_name(&n, dns_classify("registry", q.qname, NULL, NULL, &n));
        check_name(&n, dns_classify("registry", q.qname, exists_all, NULL, &n));
        dns_kind k = dns_classify("registry", q.qname, exists_by_hash, &seed, &n);
        check_name(&n, k);
        static char up[DNS_NAME_TEXT_MAX + 1];
        size_t len = strlen(q.qname);
        for (size_t i = 0; i <= len; i++) {
            char c = q.qname[i];
            up[i] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
        }
        CHECK(dns_classify("REGISTRY", up, exists_by_hash, &seed, &upper) == k);
        CHECK(memcmp(&n, &upper, sizeof(n)) == 0);
        answer(&q, &n, seed);
    } else if (o != DNS_PARSE_IGNORE) {
        dns_answer a = {.rcode = o == DNS_PARSE_FORMERR ? DNS_RCODE_FORMERR
                                                        : DNS_RCODE_NOTIMP};
        build_and_check(&q, &a, q.udp_size);
    }

    /* The input as a text name. */
    static char text[4096];
    size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
    memcpy(text, data, n);
    text[n] = '\0';
    dns_name tn;
    unsigned seed = 7;
    check_name(&tn, dns_classify("registry", text, exists_by_hash, &seed, &tn));
    check_name(&tn, dns_classify(text, "a.b.service.registry", exists_by_hash, &seed, &tn));
    return 0;
}
