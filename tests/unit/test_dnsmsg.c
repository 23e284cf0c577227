/* SPDX-License-Identifier: BSD-2-Clause */
/* test_dnsmsg.c — unit tests of the DNS message layer (registry/front/dns/msg.c) with
 * cmocka: parsing queries (typical ones built by ldns as a client library would, bad ones
 * written byte by byte), classifying names under the domain, building answers and
 * reading them back with ldns's own parser, truncation, reusing a cached answer; and the
 * replay of every fuzzer-found input in tests/fuzz/regress/dns/. Pure: no socket.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "regress_dir.h"

#include <ldns/ldns.h>

#include "front/dns/msg.h"

#define REGRESS_DIR "tests/fuzz/regress/dns"

/* ---------------------------------------------------------------------------------- */
/* Helpers: messages                                                                   */

/* A message written byte by byte (for the inputs no client library would write). */
typedef struct wire {
    uint8_t b[DNS_TCP_MAX + 1024];
    size_t n;
} wire;

static wire W;                     /* one at a time: tests run one after another */

static void w8(wire *w, unsigned v) {
    assert_true(w->n < sizeof(w->b));
    w->b[w->n++] = (uint8_t)v;
}

static void w16(wire *w, unsigned v) {
    w8(w, v >> 8);
    w8(w, v & 0xFF);
}

static void w32(wire *w, uint32_t v) {
    w16(w, v >> 16);
    w16(w, v & 0xFFFF);
}

/* A name as labels: "a.b.c" (no escapes); "" is the root. */
static void wname(wire *w, const char *s) {
    while (*s != '\0') {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);
        w8(w, (unsigned)n);
        for (size_t i = 0; i < n; i++)
            w8(w, (unsigned char)s[i]);
        s += n + (dot ? 1 : 0);
    }
    w8(w, 0);
}

/* Starts W with a header: flags is the 16-bit second word (0x0100 = RD). */
static wire *header(uint16_t id, unsigned flags, unsigned qd, unsigned an, unsigned ns,
                    unsigned ar) {
    W.n = 0;
    w16(&W, id);
    w16(&W, flags);
    w16(&W, qd);
    w16(&W, an);
    w16(&W, ns);
    w16(&W, ar);
    return &W;
}

/* An OPT record: payload size, TTL (ext rcode, version, flags), no options. */
static void wopt(wire *w, unsigned udp, uint32_t ttl) {
    w8(w, 0);
    w16(w, DNS_TYPE_OPT);
    w16(w, udp);
    w32(w, ttl);
    w16(w, 0);
}

/* A query for name/type written by ldns as a client would (RD set, id 0x1234); with an
 * OPT record of payload `udp` unless it is 0. Returns a malloc'ed message. */
static uint8_t *client_query(const char *name, ldns_rr_type type, uint16_t udp, size_t *len) {
    ldns_pkt *p = NULL;
    assert_int_equal(ldns_pkt_query_new_frm_str(&p, name, type, LDNS_RR_CLASS_IN, LDNS_RD),
                     LDNS_STATUS_OK);
    ldns_pkt_set_id(p, 0x1234);
    if (udp != 0)
        ldns_pkt_set_edns_udp_size(p, udp);
    uint8_t *wire_out = NULL;
    assert_int_equal(ldns_pkt2wire(&wire_out, p, len), LDNS_STATUS_OK);
    ldns_pkt_free(p);
    return wire_out;
}

/* Parses a client_query and expects OK. */
static void parse_client(const char *name, ldns_rr_type type, uint16_t udp, dns_query *q) {
    size_t len;
    uint8_t *m = client_query(name, type, udp, &len);
    assert_int_equal(dns_parse(m, len, q), DNS_PARSE_OK);
    free(m);
}

static dns_outcome parse_w(dns_query *q) {
    return dns_parse(W.b, W.n, q);
}

/* Reads a built message back with ldns; the caller frees it. */
static ldns_pkt *readback(const uint8_t *m, size_t len) {
    ldns_pkt *p = NULL;
    ldns_status st = ldns_wire2pkt(&p, m, len);
    if (st != LDNS_STATUS_OK)
        fail_msg("ldns cannot read the answer: %s", ldns_get_errorstr_by_id(st));
    return p;
}

/* The text of an ldns name, without the trailing dot, into buf. */
static const char *name_str(const ldns_rdf *d, char *buf, size_t cap) {
    char *s = ldns_rdf2str(d);
    assert_non_null(s);
    size_t n = strlen(s);
    if (n > 1 && s[n - 1] == '.')
        s[n - 1] = '\0';
    snprintf(buf, cap, "%s", s);
    free(s);
    return buf;
}

static void assert_owner(const ldns_rr *rr, const char *want) {
    char buf[DNS_NAME_TEXT_MAX + 2];
    assert_string_equal(name_str(ldns_rr_owner(rr), buf, sizeof(buf)), want);
}

static void assert_rdf_name(const ldns_rdf *d, const char *want) {
    char buf[DNS_NAME_TEXT_MAX + 2];
    assert_string_equal(name_str(d, buf, sizeof(buf)), want);
}

/* A record's rdata as text (ldns's presentation), into buf. */
static const char *rdf_str(const ldns_rdf *d, char *buf, size_t cap) {
    char *s = ldns_rdf2str(d);
    assert_non_null(s);
    snprintf(buf, cap, "%s", s);
    free(s);
    return buf;
}

static dns_rr rr_a(const char *owner, uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
    dns_rr r = {.type = DNS_TYPE_A, .owner = owner};
    r.addr[0] = a;
    r.addr[1] = b;
    r.addr[2] = c;
    r.addr[3] = d;
    return r;
}

static dns_rr rr_aaaa(const char *owner, const char *text) {
    dns_rr r = {.type = DNS_TYPE_AAAA, .owner = owner};
    ldns_rdf *d = ldns_rdf_new_frm_str(LDNS_RDF_TYPE_AAAA, text);
    assert_non_null(d);
    memcpy(r.addr, ldns_rdf_data(d), 16);
    ldns_rdf_deep_free(d);
    return r;
}

/* Builds, expects success, reads back with ldns. *raw gets the wire (caller frees) when
 * not NULL. */
static ldns_pkt *build_read(const dns_query *q, const dns_answer *a, size_t max,
                            uint8_t **raw, size_t *rawlen) {
    uint8_t *m = NULL;
    size_t len = 0;
    assert_int_equal(dns_build(q, a, max, &m, &len), 0);
    assert_non_null(m);
    assert_true(len <= max);
    ldns_pkt *p = readback(m, len);
    if (rawlen != NULL)
        *rawlen = len;
    if (raw != NULL)
        *raw = m;
    else
        free(m);
    return p;
}

/* ---------------------------------------------------------------------------------- */
/* Parsing: typical queries                                                            */

static void test_parse_a_query_with_edns(void **state) {
    (void)state;
    dns_query q;
    parse_client("timestamp.service.registry", LDNS_RR_TYPE_A, 4096, &q);
    assert_int_equal(q.id, 0x1234);
    assert_int_equal(q.opcode, 0);
    assert_int_equal(q.rd, 1);
    assert_int_equal(q.has_question, 1);
    assert_string_equal(q.qname, "timestamp.service.registry");
    assert_int_equal(q.qtype, DNS_TYPE_A);
    assert_int_equal(q.qclass, DNS_CLASS_IN);
    assert_int_equal(q.edns, 1);
    assert_int_equal(q.edns_version, 0);
    assert_int_equal(q.udp_size, 4096);
    assert_int_equal(q.qname_len, 28);   /* 1+9 1+7 1+8 1 */
}

static void test_parse_aaaa_query_without_edns(void **state) {
    (void)state;
    dns_query q;
    parse_client("timestamp.service.registry", LDNS_RR_TYPE_AAAA, 0, &q);
    assert_int_equal(q.qtype, DNS_TYPE_AAAA);
    assert_int_equal(q.edns, 0);
    assert_int_equal(q.udp_size, DNS_UDP_MIN);
}

static void test_parse_srv_query(void **state) {
    (void)state;
    dns_query q;
    parse_client("_timestamp._tcp.service.registry", LDNS_RR_TYPE_SRV, 1232, &q);
    assert_string_equal(q.qname, "_timestamp._tcp.service.registry");
    assert_int_equal(q.qtype, DNS_TYPE_SRV);
    assert_int_equal(q.udp_size, 1232);
}

static void test_parse_mixed_case_lowercases_text_keeps_wire(void **state) {
    (void)state;
    dns_query q;
    parse_client("TimeStamp.SERVICE.Registry", LDNS_RR_TYPE_A, 0, &q);
    assert_string_equal(q.qname, "timestamp.service.registry");
    assert_memory_equal(q.qname_wire, "\x09TimeStamp\x07SERVICE\x08Registry", 28);
}

static void test_parse_edns_size_clamped(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 1);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    wopt(w, 100, 0);
    assert_int_equal(parse_w(&q), DNS_PARSE_OK);
    assert_int_equal(q.edns, 1);
    assert_int_equal(q.udp_size, DNS_UDP_MIN);
    W.b[W.n - 8] = 0xFF;           /* the OPT's class: 65535 */
    W.b[W.n - 7] = 0xFF;
    assert_int_equal(parse_w(&q), DNS_PARSE_OK);
    assert_int_equal(q.udp_size, 65535);
}

static void test_parse_edns_version_and_do_bit(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 1);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    wopt(w, 1232, 0x00018000);     /* version 1, DO */
    assert_int_equal(parse_w(&q), DNS_PARSE_OK);
    assert_int_equal(q.edns_version, 1);
    assert_int_equal(q.edns_do, 1);
}

static void test_parse_opt_with_options(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 1);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    w8(w, 0);
    w16(w, DNS_TYPE_OPT);
    w16(w, 1232);
    w32(w, 0);
    w16(w, 12);                    /* a client cookie (option 10, 8 bytes) */
    w16(w, 10);
    w16(w, 8);
    for (int i = 0; i < 8; i++)
        w8(w, (unsigned)i);
    assert_int_equal(parse_w(&q), DNS_PARSE_OK);
    assert_int_equal(q.edns, 1);
}

static void test_parse_root_name(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 0);
    wname(w, "");
    w16(w, DNS_TYPE_SOA);
    w16(w, DNS_CLASS_IN);
    assert_int_equal(parse_w(&q), DNS_PARSE_OK);
    assert_string_equal(q.qname, "");
    assert_int_equal(q.qname_len, 1);
}

static void test_parse_text_escapes_dots_and_odd_bytes(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 0);
    w8(w, 6);
    w8(w, 'a');
    w8(w, '.');
    w8(w, 'B');
    w8(w, ' ');
    w8(w, '\\');
    w8(w, 0xFF);
    wname(w, "registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    assert_int_equal(parse_w(&q), DNS_PARSE_OK);
    assert_string_equal(q.qname, "a\\.b\\032\\\\\\255.registry");
}

static void test_parse_unknown_class_is_ok(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 0);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, 3);                     /* CH: the server answers REFUSED */
    assert_int_equal(parse_w(&q), DNS_PARSE_OK);
    assert_int_equal(q.qclass, 3);
}

static void test_parse_trailing_bytes_ignored(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 0);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    w32(w, 0xDEADBEEF);
    assert_int_equal(parse_w(&q), DNS_PARSE_OK);
}

static void test_parse_tsig_last_is_skipped(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 2);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    wopt(w, 1232, 0);
    w16(w, 0xC000 | DNS_HEADER_LEN); /* owner: a pointer to the question's name */
    w16(w, 250);
    w16(w, 255);
    w32(w, 0);
    w16(w, 3);
    w8(w, 1);
    w8(w, 2);
    w8(w, 3);
    assert_int_equal(parse_w(&q), DNS_PARSE_OK);
    assert_int_equal(q.edns, 1);
}

/* ---------------------------------------------------------------------------------- */
/* Parsing: bad input (the list, then the rest of the rules)                   */

static void test_parse_empty_packet_ignored(void **state) {
    (void)state;
    dns_query q;
    assert_int_equal(dns_parse((const uint8_t *)"", 0, &q), DNS_PARSE_IGNORE);
}

static void test_parse_11_bytes_ignored(void **state) {
    (void)state;
    dns_query q;
    uint8_t b[11] = {0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0};
    assert_int_equal(dns_parse(b, sizeof(b), &q), DNS_PARSE_IGNORE);
}

static void test_parse_65535_questions_formerr_with_id(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(0xBEEF, 0x0100, 65535, 0, 0, 0);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
    assert_int_equal(q.id, 0xBEEF);
    assert_int_equal(q.rd, 1);
    assert_int_equal(q.has_question, 0);
}

static void test_parse_no_question_formerr(void **state) {
    (void)state;
    dns_query q;
    header(7, 0, 0, 0, 0, 0);
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
    assert_int_equal(q.id, 7);
}

static void test_parse_compression_loop_formerr(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 0);
    w16(w, 0xC000 | DNS_HEADER_LEN);  /* the question's name points to itself */
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
}

static void test_parse_compression_loop_in_additional_formerr(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 1);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    size_t at = w->n;              /* a TSIG owned by "x" + a pointer back to "x" */
    w8(w, 1);
    w8(w, 'x');
    w16(w, 0xC000 | (unsigned)at);
    w16(w, 250);
    w16(w, 255);
    w32(w, 0);
    w16(w, 0);
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
}

static void test_parse_forward_pointer_formerr(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 0);
    w16(w, 0xC000 | 18);           /* to the name after it */
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    wname(w, "a");
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
}

static void test_parse_label_64_formerr(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 0);
    w8(w, 64);                     /* 0x40: also the reserved "extended label" type */
    for (int i = 0; i < 64; i++)
        w8(w, 'a');
    wname(w, "registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
}

static void test_parse_label_63_ok(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 0);
    w8(w, 63);
    for (int i = 0; i < 63; i++)
        w8(w, 'a');
    wname(w, "registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    assert_int_equal(parse_w(&q), DNS_PARSE_OK);
}

/* A name of `total` wire bytes (root included): labels of 63 then one to make it up. */
static void wname_of(wire *w, size_t total) {
    size_t left = total - 1;
    while (left > 0) {
        size_t n = left - 1 > 63 ? 63 : left - 1;
        w8(w, (unsigned)n);
        for (size_t i = 0; i < n; i++)
            w8(w, 'x');
        left -= n + 1;
    }
    w8(w, 0);
}

static void test_parse_name_over_255_formerr(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 0);
    wname_of(w, 256);
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
}

static void test_parse_name_of_255_ok(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 0);
    wname_of(w, 255);
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    assert_int_equal(parse_w(&q), DNS_PARSE_OK);
    assert_int_equal(q.qname_len, 255);
}

static void test_parse_response_ignored(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0x8180, 1, 0, 0, 0);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    assert_int_equal(parse_w(&q), DNS_PARSE_IGNORE);
}

static void test_parse_opcode_not_query_notimp(void **state) {
    (void)state;
    dns_query q;
    const unsigned opcodes[] = {1, 2, 4, 5, 15};  /* IQUERY STATUS NOTIFY UPDATE ... */
    for (size_t i = 0; i < sizeof(opcodes) / sizeof(opcodes[0]); i++) {
        wire *w = header(0x4242, opcodes[i] << 11 | 0x0100, 1, 0, 0, 0);
        wname(w, "a.registry");
        w16(w, DNS_TYPE_SOA);
        w16(w, DNS_CLASS_IN);
        assert_int_equal(parse_w(&q), DNS_PARSE_NOTIMP);
        assert_int_equal(q.id, 0x4242);
        assert_int_equal(q.opcode, opcodes[i]);
        assert_int_equal(q.rd, 1);
    }
}

static void test_parse_truncated_question_formerr(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 0);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);            /* the class is missing */
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
    W.n = DNS_HEADER_LEN + 3;      /* cut inside the name */
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
}

static void test_parse_answer_or_authority_records_formerr(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 1, 0, 0);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
    W.b[7] = 0;
    W.b[9] = 1;                    /* NSCOUNT 1 */
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
}

static void test_parse_two_opt_formerr(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 2);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    wopt(w, 1232, 0);
    wopt(w, 1232, 0);
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
}

static void test_parse_opt_not_owned_by_root_formerr(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 1);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    wname(w, "x");
    w16(w, DNS_TYPE_OPT);
    w16(w, 1232);
    w32(w, 0);
    w16(w, 0);
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
}

static void test_parse_opt_bad_option_length_formerr(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 1);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    w8(w, 0);
    w16(w, DNS_TYPE_OPT);
    w16(w, 1232);
    w32(w, 0);
    w16(w, 6);                     /* an option claiming 9 bytes in 2 */
    w16(w, 10);
    w16(w, 9);
    w16(w, 0);
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
}

static void test_parse_rdata_past_the_end_formerr(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 1);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    w8(w, 0);
    w16(w, DNS_TYPE_OPT);
    w16(w, 1232);
    w32(w, 0);
    w16(w, 100);
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
}

static void test_parse_record_after_tsig_formerr(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 2);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    wname(w, "key");
    w16(w, 250);
    w16(w, 255);
    w32(w, 0);
    w16(w, 0);
    wopt(w, 1232, 0);
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
}

static void test_parse_other_additional_record_formerr(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 1);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    w32(w, 0);
    w16(w, 4);
    w32(w, 0x7F000001);
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
}

static void test_parse_more_records_than_bytes_formerr(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 65535);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    wopt(w, 1232, 0);
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
}

/* Every message dns_parse accepts reads the same through ldns_wire2pkt. */
static void test_parse_agrees_with_ldns(void **state) {
    (void)state;
    const char *names[] = {"timestamp.service.registry", "_x._tcp.service.registry",
                           "MiXeD.Case.Registry", "a"};
    const uint16_t udp[] = {0, 512, 4096};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        for (size_t j = 0; j < sizeof(udp) / sizeof(udp[0]); j++) {
            size_t len;
            uint8_t *m = client_query(names[i], LDNS_RR_TYPE_SRV, udp[j], &len);
            dns_query q;
            assert_int_equal(dns_parse(m, len, &q), DNS_PARSE_OK);
            ldns_pkt *p = readback(m, len);
            ldns_rr *qr = ldns_rr_list_rr(ldns_pkt_question(p), 0);
            assert_int_equal(q.id, ldns_pkt_id(p));
            assert_int_equal(q.rd, ldns_pkt_rd(p));
            assert_int_equal(q.qtype, ldns_rr_get_type(qr));
            assert_int_equal(q.qclass, ldns_rr_get_class(qr));
            assert_int_equal(q.qname_len, ldns_rdf_size(ldns_rr_owner(qr)));
            assert_memory_equal(q.qname_wire, ldns_rdf_data(ldns_rr_owner(qr)), q.qname_len);
            assert_int_equal(q.edns, ldns_pkt_edns(p));
            if (q.edns)
                assert_int_equal(q.udp_size, ldns_pkt_edns_udp_size(p));
            ldns_pkt_free(p);
            free(m);
        }
    }
}

/* ---------------------------------------------------------------------------------- */
/* Classification                                                                      */

/* The services that exist in these tests. */
static const char *const SERVICES[] = {"timestamp", "web", "a.b", "b", "my.svc", "x._y",
                                       NULL};

static int services_exist(void *ud, const char *service) {
    const char *const *list = ud != NULL ? ud : SERVICES;
    /* The classifier only asks about valid service names. */
    assert_true(strlen(service) >= 1 && strlen(service) <= REQ_SERVICE_MAX);
    assert_true(strspn(service, "abcdefghijklmnopqrstuvwxyz0123456789._-") == strlen(service));
    for (size_t i = 0; list[i] != NULL; i++)
        if (strcmp(list[i], service) == 0)
            return 1;
    return 0;
}

#define LONG60 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

static dns_kind classify(const char *qname, dns_name *n) {
    return dns_classify("registry", qname, services_exist, NULL, n);
}

static void test_classify_service(void **state) {
    (void)state;
    dns_name n;
    assert_int_equal(classify("timestamp.service.registry", &n), DNS_NAME_SERVICE);
    assert_int_equal(n.kind, DNS_NAME_SERVICE);
    assert_string_equal(n.service, "timestamp");
    assert_int_equal(n.has_tag, 0);
}

static void test_classify_service_that_does_not_exist(void **state) {
    (void)state;
    dns_name n;
    assert_int_equal(classify("nosuch.service.registry", &n), DNS_NAME_SERVICE);
    assert_string_equal(n.service, "nosuch");
}

static void test_classify_dotted_service_prefix_tried_whole_first(void **state) {
    (void)state;
    dns_name n;
    /* "a.b" and "b" both exist: the whole prefix wins. */
    assert_int_equal(classify("a.b.service.registry", &n), DNS_NAME_SERVICE);
    assert_string_equal(n.service, "a.b");
    assert_int_equal(classify("my.svc.service.registry", &n), DNS_NAME_SERVICE);
    assert_string_equal(n.service, "my.svc");
}

static void test_classify_tag_when_prefix_is_no_service(void **state) {
    (void)state;
    dns_name n;
    assert_int_equal(classify("primary.web.service.registry", &n), DNS_NAME_TAGGED);
    assert_string_equal(n.service, "web");
    assert_int_equal(n.has_tag, 1);
    assert_string_equal(n.tag, "primary");
    /* "c.b": no such service, "b" exists: tag c of b. */
    assert_int_equal(classify("c.b.service.registry", &n), DNS_NAME_TAGGED);
    assert_string_equal(n.service, "b");
    assert_string_equal(n.tag, "c");
    /* A tag of a dotted service. */
    assert_int_equal(classify("v2.my.svc.service.registry", &n), DNS_NAME_TAGGED);
    assert_string_equal(n.service, "my.svc");
    assert_string_equal(n.tag, "v2");
}

static void test_classify_tag_fallback_only_when_prefix_missing(void **state) {
    (void)state;
    dns_name n;
    const char *const with_both[] = {"web", "primary.web", NULL};
    assert_int_equal(dns_classify("registry", "primary.web.service.registry", services_exist,
                                  (void *)with_both, &n),
                     DNS_NAME_SERVICE);
    assert_string_equal(n.service, "primary.web");
    const char *const only_web[] = {"web", NULL};
    assert_int_equal(dns_classify("registry", "primary.web.service.registry", services_exist,
                                  (void *)only_web, &n),
                     DNS_NAME_TAGGED);
}

static void test_classify_tag_may_hold_any_byte(void **state) {
    (void)state;
    dns_name n;
    /* A tag is any string: "Blue Team" reaches DNS as one label (lowercased). */
    assert_int_equal(classify("blue\\032team.web.service.registry", &n), DNS_NAME_TAGGED);
    assert_string_equal(n.tag, "blue team");
    assert_int_equal(classify("v1\\.2.web.service.registry", &n), DNS_NAME_TAGGED);
    assert_string_equal(n.tag, "v1.2");
    /* but no NUL: it could not be compared as a string */
    assert_int_equal(classify("a\\000b.web.service.registry", &n), DNS_NAME_UNKNOWN);
}

static void test_classify_escaped_dot_is_not_a_service_dot(void **state) {
    (void)state;
    dns_name n;
    /* One label "a.b" is not the service "a.b" (two labels). */
    assert_int_equal(classify("a\\.b.service.registry", &n), DNS_NAME_UNKNOWN);
}

static void test_classify_srv_tcp(void **state) {
    (void)state;
    dns_name n;
    assert_int_equal(classify("_timestamp._tcp.service.registry", &n), DNS_NAME_SRV);
    assert_string_equal(n.service, "timestamp");
    assert_int_equal(n.has_tag, 0);
    assert_string_equal(n.tag, "");
}

static void test_classify_srv_tag(void **state) {
    (void)state;
    dns_name n;
    assert_int_equal(classify("_web._primary.service.registry", &n), DNS_NAME_SRV);
    assert_string_equal(n.service, "web");
    assert_int_equal(n.has_tag, 1);
    assert_string_equal(n.tag, "primary");
}

static void test_classify_srv_dotted_service(void **state) {
    (void)state;
    dns_name n;
    assert_int_equal(classify("_my.svc._tcp.service.registry", &n), DNS_NAME_SRV);
    assert_string_equal(n.service, "my.svc");
    assert_int_equal(n.has_tag, 0);
}

static void test_classify_srv_or_tag_of_underscored_service(void **state) {
    (void)state;
    dns_name n;
    /* "_t.x._y": SRV of "t.x" (missing) with tag y, or tag "_t" of "x._y" (exists). */
    assert_int_equal(classify("_t.x._y.service.registry", &n), DNS_NAME_TAGGED);
    assert_string_equal(n.service, "x._y");
    assert_string_equal(n.tag, "_t");
    /* With neither existing, the SRV reading. */
    assert_int_equal(classify("_t.z._y.service.registry", &n), DNS_NAME_SRV);
    assert_string_equal(n.service, "t.z");
    assert_string_equal(n.tag, "y");
}

static void test_classify_instance(void **state) {
    (void)state;
    dns_name n;
    assert_int_equal(classify("0123456789abcdef.instance.registry", &n), DNS_NAME_INSTANCE);
    assert_string_equal(n.id, "0123456789abcdef");
    assert_int_equal(classify("a.b.instance.registry", &n), DNS_NAME_UNKNOWN);
    assert_int_equal(classify("a\\.b.instance.registry", &n), DNS_NAME_UNKNOWN);
}

static void test_classify_case_insensitive(void **state) {
    (void)state;
    dns_name n;
    assert_int_equal(dns_classify("REGISTRY.", "TimeStamp.SERVICE.Registry.", services_exist,
                                  NULL, &n),
                     DNS_NAME_SERVICE);
    assert_string_equal(n.service, "timestamp");
    assert_int_equal(classify("_TimeStamp._TCP.Service.REGISTRY", &n), DNS_NAME_SRV);
    assert_string_equal(n.service, "timestamp");
    assert_int_equal(n.has_tag, 0);
    assert_int_equal(classify("PRIMARY.Web.service.registry", &n), DNS_NAME_TAGGED);
    assert_string_equal(n.tag, "primary");
}

static void test_classify_outside(void **state) {
    (void)state;
    dns_name n;
    const char *outside[] = {"example.com", "registryx", "xregistry", "registry.com",
                             "timestamp.service.registry.com", "", "a..registry",
                             "bad\\1.registry"};
    for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++) {
        assert_int_equal(classify(outside[i], &n), DNS_NAME_OUTSIDE);
        assert_int_equal(n.kind, DNS_NAME_OUTSIDE);
    }
}

static void test_classify_text_name_over_255_is_outside(void **state) {
    (void)state;
    dns_name n;
    char q[400];
    /* 4 labels of 60 + "service" + "registry": 4 * 61 + 8 + 9 + 1 = 262 bytes of wire */
    snprintf(q, sizeof(q), "%.60s.%.60s.%.60s.%.60s.service.registry", LONG60, LONG60,
             LONG60, LONG60);
    assert_int_equal(classify(q, &n), DNS_NAME_OUTSIDE);
    /* 3 of them: 200 bytes, a name (a tag of a service too long to be one: UNKNOWN) */
    snprintf(q, sizeof(q), "%.60s.%.60s.%.60s.service.registry", LONG60, LONG60, LONG60);
    assert_int_equal(classify(q, &n), DNS_NAME_UNKNOWN);
}

static void test_classify_apex(void **state) {
    (void)state;
    dns_name n;
    assert_int_equal(classify("registry", &n), DNS_NAME_APEX);
    assert_int_equal(classify("Registry.", &n), DNS_NAME_APEX);
}

static void test_classify_unknown(void **state) {
    (void)state;
    dns_name n;
    const char *unknown[] = {"foo.registry", "x.y.registry", "service.foo.registry",
                             "-x.service.registry", "-a.-b.service.registry"};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
        assert_int_equal(classify(unknown[i], &n), DNS_NAME_UNKNOWN);
}

static void test_classify_empty_non_terminals(void **state) {
    (void)state;
    dns_name n;
    assert_int_equal(classify("service.registry", &n), DNS_NAME_EMPTY);
    assert_int_equal(classify("instance.registry", &n), DNS_NAME_EMPTY);
    assert_int_equal(classify("_tcp.service.registry", &n), DNS_NAME_EMPTY);
    assert_int_equal(classify("_primary.service.registry", &n), DNS_NAME_EMPTY);
}

static void test_classify_service_name_limits(void **state) {
    (void)state;
    dns_name n;
    char q[256];
    /* 63 characters over two labels: a service; 64: not. */
    snprintf(q, sizeof(q), "%.31s.%.31s.service.registry",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
             "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    assert_int_equal(classify(q, &n), DNS_NAME_SERVICE);
    assert_int_equal(strlen(n.service), 63);
    snprintf(q, sizeof(q), "%.32s.%.31s.service.registry",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
             "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    /* the whole is too long; the rest (31 b's) is a service and the a's its tag */
    assert_int_equal(classify(q, &n), DNS_NAME_TAGGED);
    assert_int_equal(strlen(n.service), 31);
    assert_int_equal(strlen(n.tag), 32);
}

static void test_classify_other_domains(void **state) {
    (void)state;
    dns_name n;
    assert_int_equal(dns_classify("dc1.example.com", "web.service.dc1.example.com",
                                  services_exist, NULL, &n),
                     DNS_NAME_SERVICE);
    assert_int_equal(dns_classify("dc1.example.com", "web.service.dc2.example.com",
                                  services_exist, NULL, &n),
                     DNS_NAME_OUTSIDE);
    assert_int_equal(dns_classify("", "web.service", services_exist, NULL, &n),
                     DNS_NAME_SERVICE);
    assert_int_equal(dns_classify(".", "", services_exist, NULL, &n), DNS_NAME_APEX);
}

static void test_classify_without_callback_nothing_exists(void **state) {
    (void)state;
    dns_name n;
    assert_int_equal(dns_classify("registry", "primary.web.service.registry", NULL, NULL, &n),
                     DNS_NAME_SERVICE);
    assert_string_equal(n.service, "primary.web");
}

/* ---------------------------------------------------------------------------------- */
/* Building                                                                            */

static void test_build_a_roundtrip(void **state) {
    (void)state;
    dns_query q;
    parse_client("timestamp.service.registry", LDNS_RR_TYPE_A, 0, &q);
    dns_rr rrs[2] = {rr_a(NULL, 10, 0, 0, 1), rr_a(NULL, 10, 0, 0, 2)};
    dns_answer a = {.rcode = DNS_RCODE_NOERROR, .aa = 1, .ttl = 30, .answer = rrs,
                    .nanswer = 2, .zone = "registry"};
    ldns_pkt *p = build_read(&q, &a, q.udp_size, NULL, NULL);
    assert_int_equal(ldns_pkt_id(p), 0x1234);
    assert_true(ldns_pkt_qr(p));
    assert_true(ldns_pkt_aa(p));
    assert_true(ldns_pkt_rd(p));
    assert_false(ldns_pkt_ra(p));
    assert_false(ldns_pkt_tc(p));
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(p), 2);
    assert_int_equal(ldns_pkt_nscount(p), 0);
    assert_int_equal(ldns_pkt_arcount(p), 0);
    assert_false(ldns_pkt_edns(p));
    char buf[64];
    for (size_t i = 0; i < 2; i++) {
        ldns_rr *rr = ldns_rr_list_rr(ldns_pkt_answer(p), i);
        assert_int_equal(ldns_rr_get_type(rr), LDNS_RR_TYPE_A);
        assert_int_equal(ldns_rr_get_class(rr), LDNS_RR_CLASS_IN);
        assert_int_equal(ldns_rr_ttl(rr), 30);
        assert_owner(rr, "timestamp.service.registry");
        assert_string_equal(rdf_str(ldns_rr_rdf(rr, 0), buf, sizeof(buf)),
                            i == 0 ? "10.0.0.1" : "10.0.0.2");
    }
    ldns_pkt_free(p);
}

static void test_build_aaaa_roundtrip(void **state) {
    (void)state;
    dns_query q;
    parse_client("timestamp.service.registry", LDNS_RR_TYPE_AAAA, 4096, &q);
    dns_rr rr = rr_aaaa(NULL, "2001:db8::5");
    dns_answer a = {.aa = 1, .ttl = 0, .answer = &rr, .nanswer = 1, .zone = "registry"};
    ldns_pkt *p = build_read(&q, &a, q.udp_size, NULL, NULL);
    ldns_rr *r = ldns_rr_list_rr(ldns_pkt_answer(p), 0);
    assert_int_equal(ldns_rr_get_type(r), LDNS_RR_TYPE_AAAA);
    assert_int_equal(ldns_rr_ttl(r), 0);
    char buf[64];
    assert_string_equal(rdf_str(ldns_rr_rdf(r, 0), buf, sizeof(buf)), "2001:db8::5");
    assert_true(ldns_pkt_edns(p));
    assert_int_equal(ldns_pkt_edns_udp_size(p), DNS_EDNS_PAYLOAD);
    ldns_pkt_free(p);
}

static void test_build_cname_roundtrip(void **state) {
    (void)state;
    dns_query q;
    parse_client("db.service.registry", LDNS_RR_TYPE_A, 0, &q);
    dns_rr rr = {.type = DNS_TYPE_CNAME, .target = "db1.example.com"};
    dns_answer a = {.aa = 1, .ttl = 5, .answer = &rr, .nanswer = 1, .zone = "registry"};
    ldns_pkt *p = build_read(&q, &a, q.udp_size, NULL, NULL);
    ldns_rr *r = ldns_rr_list_rr(ldns_pkt_answer(p), 0);
    assert_int_equal(ldns_rr_get_type(r), LDNS_RR_TYPE_CNAME);
    assert_owner(r, "db.service.registry");
    assert_rdf_name(ldns_rr_rdf(r, 0), "db1.example.com");
    assert_int_equal(ldns_rr_ttl(r), 5);
    ldns_pkt_free(p);
}

static void test_build_srv_with_additional_roundtrip(void **state) {
    (void)state;
    dns_query q;
    parse_client("_timestamp._tcp.service.registry", LDNS_RR_TYPE_SRV, 0, &q);
    dns_rr srv[2] = {
        {.type = DNS_TYPE_SRV, .priority = 1, .weight = 1, .port = 41023,
         .target = "0123456789abcdef.instance.registry"},
        {.type = DNS_TYPE_SRV, .priority = 1, .weight = 1, .port = 41024,
         .target = "fedcba9876543210.instance.registry"},
    };
    dns_rr add[2] = {rr_a("0123456789abcdef.instance.registry", 127, 0, 0, 1),
                     rr_aaaa("fedcba9876543210.instance.registry", "::1")};
    dns_answer a = {.aa = 1, .ttl = 0, .answer = srv, .nanswer = 2, .additional = add,
                    .nadditional = 2, .zone = "registry"};
    ldns_pkt *p = build_read(&q, &a, q.udp_size, NULL, NULL);
    assert_int_equal(ldns_pkt_ancount(p), 2);
    assert_int_equal(ldns_pkt_arcount(p), 2);
    assert_false(ldns_pkt_tc(p));
    ldns_rr *r = ldns_rr_list_rr(ldns_pkt_answer(p), 1);
    assert_int_equal(ldns_rr_get_type(r), LDNS_RR_TYPE_SRV);
    assert_owner(r, "_timestamp._tcp.service.registry");
    assert_int_equal(ldns_rdf2native_int16(ldns_rr_rdf(r, 0)), 1);
    assert_int_equal(ldns_rdf2native_int16(ldns_rr_rdf(r, 1)), 1);
    assert_int_equal(ldns_rdf2native_int16(ldns_rr_rdf(r, 2)), 41024);
    assert_rdf_name(ldns_rr_rdf(r, 3), "fedcba9876543210.instance.registry");
    ldns_rr *x = ldns_rr_list_rr(ldns_pkt_additional(p), 0);
    assert_int_equal(ldns_rr_get_type(x), LDNS_RR_TYPE_A);
    assert_owner(x, "0123456789abcdef.instance.registry");
    x = ldns_rr_list_rr(ldns_pkt_additional(p), 1);
    assert_int_equal(ldns_rr_get_type(x), LDNS_RR_TYPE_AAAA);
    assert_owner(x, "fedcba9876543210.instance.registry");
    ldns_pkt_free(p);
}

/* The SOA of the negative answers, and where its fields come from. */
static void check_soa(ldns_pkt *p, uint32_t ttl, uint32_t serial) {
    assert_int_equal(ldns_pkt_nscount(p), 1);
    ldns_rr *soa = ldns_rr_list_rr(ldns_pkt_authority(p), 0);
    assert_int_equal(ldns_rr_get_type(soa), LDNS_RR_TYPE_SOA);
    assert_owner(soa, "registry");
    assert_int_equal(ldns_rr_ttl(soa), ttl);
    assert_rdf_name(ldns_rr_rdf(soa, 0), "ns.registry");
    assert_rdf_name(ldns_rr_rdf(soa, 1), "hostmaster.registry");
    assert_int_equal(ldns_rdf2native_int32(ldns_rr_rdf(soa, 2)), serial);
    assert_int_equal(ldns_rdf2native_int32(ldns_rr_rdf(soa, 6)), ttl);   /* minimum */
}

static void test_build_nxdomain_with_soa(void **state) {
    (void)state;
    dns_query q;
    parse_client("nosuch.service.registry", LDNS_RR_TYPE_A, 0, &q);
    dns_answer a = {.rcode = DNS_RCODE_NXDOMAIN, .aa = 1, .ttl = 7, .soa = 1,
                    .zone = "registry", .serial = 42};
    ldns_pkt *p = build_read(&q, &a, q.udp_size, NULL, NULL);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
    assert_true(ldns_pkt_aa(p));
    assert_int_equal(ldns_pkt_ancount(p), 0);
    check_soa(p, 7, 42);
    ldns_pkt_free(p);
}

static void test_build_nodata_with_soa(void **state) {
    (void)state;
    dns_query q;
    parse_client("timestamp.service.registry", LDNS_RR_TYPE_MX, 0, &q);
    dns_answer a = {.rcode = DNS_RCODE_NOERROR, .aa = 1, .ttl = 0, .soa = 1,
                    .zone = "registry", .serial = 1};
    ldns_pkt *p = build_read(&q, &a, q.udp_size, NULL, NULL);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(p), 0);
    check_soa(p, 0, 1);
    ldns_pkt_free(p);
}

static void test_build_apex_soa_answer(void **state) {
    (void)state;
    dns_query q;
    parse_client("registry", LDNS_RR_TYPE_SOA, 0, &q);
    dns_rr rr = {.type = DNS_TYPE_SOA};
    dns_answer a = {.aa = 1, .ttl = 3, .answer = &rr, .nanswer = 1, .zone = "registry",
                    .serial = 9};
    ldns_pkt *p = build_read(&q, &a, q.udp_size, NULL, NULL);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    ldns_rr *soa = ldns_rr_list_rr(ldns_pkt_answer(p), 0);
    assert_int_equal(ldns_rr_get_type(soa), LDNS_RR_TYPE_SOA);
    assert_owner(soa, "registry");
    ldns_pkt_free(p);
}

static void test_build_refused_without_aa(void **state) {
    (void)state;
    dns_query q;
    parse_client("example.com", LDNS_RR_TYPE_A, 0, &q);
    dns_answer a = {.rcode = DNS_RCODE_REFUSED};
    ldns_pkt *p = build_read(&q, &a, q.udp_size, NULL, NULL);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
    assert_false(ldns_pkt_aa(p));
    assert_int_equal(ldns_pkt_qdcount(p), 1);
    assert_int_equal(ldns_pkt_ancount(p) + ldns_pkt_nscount(p) + ldns_pkt_arcount(p), 0);
    ldns_pkt_free(p);
}

static void test_build_formerr_is_header_only(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(0xBEEF, 0x0100, 2, 0, 0, 0);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    assert_int_equal(parse_w(&q), DNS_PARSE_FORMERR);
    dns_answer a = {.rcode = DNS_RCODE_FORMERR};
    uint8_t *m;
    size_t len;
    ldns_pkt *p = build_read(&q, &a, q.udp_size, &m, &len);
    assert_int_equal(len, DNS_HEADER_LEN);
    assert_int_equal(ldns_pkt_id(p), 0xBEEF);
    assert_true(ldns_pkt_qr(p));
    assert_true(ldns_pkt_rd(p));
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_FORMERR);
    assert_int_equal(ldns_pkt_qdcount(p), 0);
    ldns_pkt_free(p);
    free(m);
}

static void test_build_notimp_echoes_opcode(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(0x0101, 4u << 11, 1, 0, 0, 0);  /* NOTIFY */
    wname(w, "registry");
    w16(w, DNS_TYPE_SOA);
    w16(w, DNS_CLASS_IN);
    assert_int_equal(parse_w(&q), DNS_PARSE_NOTIMP);
    dns_answer a = {.rcode = DNS_RCODE_NOTIMP};
    ldns_pkt *p = build_read(&q, &a, q.udp_size, NULL, NULL);
    assert_int_equal(ldns_pkt_get_opcode(p), LDNS_PACKET_NOTIFY);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOTIMPL);
    assert_int_equal(ldns_pkt_id(p), 0x0101);
    ldns_pkt_free(p);
}

static void test_build_badvers_uses_extended_rcode(void **state) {
    (void)state;
    dns_query q;
    wire *w = header(1, 0, 1, 0, 0, 1);
    wname(w, "a.registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    wopt(w, 1232, 0x00010000);     /* version 1 */
    assert_int_equal(parse_w(&q), DNS_PARSE_OK);
    dns_answer a = {.rcode = DNS_RCODE_BADVERS};
    ldns_pkt *p = build_read(&q, &a, q.udp_size, NULL, NULL);
    assert_int_equal(ldns_pkt_get_rcode(p), 0);
    assert_int_equal(ldns_pkt_edns_extended_rcode(p), 1);   /* 1 << 4 | 0 = 16 */
    ldns_pkt_free(p);
    /* Without EDNS0 there is no way to say it. */
    parse_client("a.registry", LDNS_RR_TYPE_A, 0, &q);
    uint8_t *m = NULL;
    size_t len;
    assert_int_equal(dns_build(&q, &a, 512, &m, &len), -EINVAL);
    assert_null(m);
}

static void test_build_question_echoed_in_client_case(void **state) {
    (void)state;
    dns_query q;
    parse_client("TimeStamp.Service.REGISTRY", LDNS_RR_TYPE_A, 0, &q);
    dns_rr rr = rr_a("timestamp.service.registry", 10, 0, 0, 1);
    dns_answer a = {.aa = 1, .answer = &rr, .nanswer = 1, .zone = "registry"};
    uint8_t *m;
    size_t len;
    ldns_pkt *p = build_read(&q, &a, q.udp_size, &m, &len);
    assert_memory_equal(m + DNS_HEADER_LEN, q.qname_wire, q.qname_len);
    ldns_rr *qr = ldns_rr_list_rr(ldns_pkt_question(p), 0);
    assert_owner(qr, "TimeStamp.Service.REGISTRY");
    assert_int_equal(ldns_rr_get_type(qr), LDNS_RR_TYPE_A);
    assert_int_equal(ldns_rr_get_class(qr), LDNS_RR_CLASS_IN);
    /* The answer's owner, equal but for case, is a pointer to the question's name. */
    assert_int_equal(len, DNS_HEADER_LEN + q.qname_len + 4 + 2 + 10 + 4);
    assert_int_equal(m[DNS_HEADER_LEN + q.qname_len + 4], 0xC0);
    assert_int_equal(m[DNS_HEADER_LEN + q.qname_len + 5], DNS_HEADER_LEN);
    ldns_pkt_free(p);
    free(m);
}

/* A query for `name` with the given EDNS size (0: none) and 40 A records for it. */
static ldns_pkt *forty(uint16_t udp, size_t max_from_query, size_t *len) {
    dns_query q;
    parse_client("timestamp.service.registry", LDNS_RR_TYPE_A, udp, &q);
    dns_rr rrs[40];
    for (int i = 0; i < 40; i++)
        rrs[i] = rr_a(NULL, 10, 1, 0, (uint8_t)(i + 1));
    dns_answer a = {.aa = 1, .answer = rrs, .nanswer = 40, .zone = "registry"};
    return build_read(&q, &a, max_from_query ? max_from_query : q.udp_size, NULL, len);
}

static void test_build_truncates_40_a_records_at_512(void **state) {
    (void)state;
    size_t len;
    ldns_pkt *p = forty(0, 0, &len);
    assert_true(len <= 512);
    assert_true(ldns_pkt_tc(p));
    /* 12 + 32 (question) + 16 per record: 29 records fit in 512. */
    assert_int_equal(ldns_pkt_ancount(p), 29);
    assert_int_equal(len, 12 + 32 + 29 * 16);
    /* the first ones, in order */
    char buf[64];
    assert_string_equal(rdf_str(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(p), 28), 0), buf,
                                sizeof(buf)),
                        "10.1.0.29");
    ldns_pkt_free(p);
}

static void test_build_edns_4096_lets_40_a_records_through(void **state) {
    (void)state;
    size_t len;
    ldns_pkt *p = forty(4096, 0, &len);
    assert_false(ldns_pkt_tc(p));
    assert_int_equal(ldns_pkt_ancount(p), 40);
    assert_true(ldns_pkt_edns(p));
    assert_int_equal(len, 12 + 32 + 40 * 16 + 11);
    ldns_pkt_free(p);
}

static void test_build_truncation_keeps_the_opt_record(void **state) {
    (void)state;
    size_t len;
    ldns_pkt *p = forty(512, 0, &len);   /* EDNS, but only 512 bytes */
    assert_true(len <= 512);
    assert_true(ldns_pkt_tc(p));
    assert_true(ldns_pkt_edns(p));
    assert_int_equal(ldns_pkt_ancount(p), 28);   /* one less: the OPT takes 11 bytes */
    ldns_pkt_free(p);
}

static void test_build_tcp_sends_everything(void **state) {
    (void)state;
    size_t len;
    ldns_pkt *p = forty(0, DNS_TCP_MAX, &len);
    assert_false(ldns_pkt_tc(p));
    assert_int_equal(ldns_pkt_ancount(p), 40);
    ldns_pkt_free(p);
}

static void test_build_over_65535_truncated_even_over_tcp(void **state) {
    (void)state;
    dns_query q;
    parse_client("timestamp.service.registry", LDNS_RR_TYPE_A, 0, &q);
    size_t n = 5000;               /* 5000 * 16 bytes > 65535 */
    dns_rr *rrs = calloc(n, sizeof(*rrs));
    assert_non_null(rrs);
    for (size_t i = 0; i < n; i++)
        rrs[i] = rr_a(NULL, 10, (uint8_t)(i >> 8), (uint8_t)i, 1);
    dns_answer a = {.aa = 1, .answer = rrs, .nanswer = n, .zone = "registry"};
    size_t len;
    ldns_pkt *p = build_read(&q, &a, 1000000, NULL, &len);   /* capped at 65535 */
    assert_true(len <= DNS_TCP_MAX);
    assert_true(ldns_pkt_tc(p));
    assert_int_equal(ldns_pkt_ancount(p), (DNS_TCP_MAX - 12 - 32) / 16);
    ldns_pkt_free(p);
    free(rrs);
}

static void test_build_drops_additional_first_without_tc(void **state) {
    (void)state;
    dns_query q;
    parse_client("_web._tcp.service.registry", LDNS_RR_TYPE_SRV, 0, &q);
    enum { N = 8 };
    dns_rr srv[N], add[N];
    char names[N][64];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "%016x.instance.registry", i);
        srv[i] = (dns_rr){.type = DNS_TYPE_SRV, .priority = 1, .weight = 1,
                          .port = (uint16_t)(8000 + i), .target = names[i]};
        add[i] = rr_aaaa(names[i], "2001:db8::1");
    }
    dns_answer a = {.aa = 1, .answer = srv, .nanswer = N, .additional = add,
                    .nadditional = N, .zone = "registry"};
    size_t len;
    ldns_pkt *p = build_read(&q, &a, 512, NULL, &len);
    /* 8 SRV (their targets uncompressed: ~51 bytes each) fit; not every AAAA does. */
    assert_int_equal(ldns_pkt_ancount(p), N);
    assert_true(ldns_pkt_arcount(p) < N);
    assert_false(ldns_pkt_tc(p));
    ldns_pkt_free(p);
}

static void test_build_emsgsize_when_the_question_cannot_fit(void **state) {
    (void)state;
    dns_query q;
    parse_client("timestamp.service.registry", LDNS_RR_TYPE_A, 0, &q);
    dns_answer a = {.rcode = DNS_RCODE_SERVFAIL};
    uint8_t *m = NULL;
    size_t len = 99;
    assert_int_equal(dns_build(&q, &a, 40, &m, &len), -EMSGSIZE);
    assert_null(m);
    assert_int_equal(len, 0);
    assert_int_equal(dns_build(&q, &a, 44, &m, &len), 0);   /* exactly fits */
    assert_int_equal(len, 44);
    free(m);
}

static void test_build_invalid_input_einval(void **state) {
    (void)state;
    dns_query q;
    parse_client("timestamp.service.registry", LDNS_RR_TYPE_A, 0, &q);
    uint8_t *m = NULL;
    size_t len;
    dns_rr bad_name = rr_a("a..b", 1, 2, 3, 4);
    dns_answer a = {.answer = &bad_name, .nanswer = 1, .zone = "registry"};
    assert_int_equal(dns_build(&q, &a, 512, &m, &len), -EINVAL);
    dns_rr bad_type = {.type = 99};
    a.answer = &bad_type;
    assert_int_equal(dns_build(&q, &a, 512, &m, &len), -EINVAL);
    dns_rr no_target = {.type = DNS_TYPE_CNAME};
    a.answer = &no_target;
    assert_int_equal(dns_build(&q, &a, 512, &m, &len), -EINVAL);
    /* An owner-less record needs a question. */
    dns_query none;
    header(1, 0, 0, 0, 0, 0);
    assert_int_equal(parse_w(&none), DNS_PARSE_FORMERR);
    dns_rr rr = rr_a(NULL, 1, 2, 3, 4);
    a.answer = &rr;
    assert_int_equal(dns_build(&none, &a, 512, &m, &len), -EINVAL);
    assert_null(m);
}

static void test_patch_reuses_an_answer_for_another_query(void **state) {
    (void)state;
    dns_query first, second;
    parse_client("timestamp.service.registry", LDNS_RR_TYPE_A, 0, &first);
    dns_rr rr = rr_a(NULL, 10, 0, 0, 1);
    dns_answer a = {.aa = 1, .answer = &rr, .nanswer = 1, .zone = "registry"};
    uint8_t *m;
    size_t len;
    assert_int_equal(dns_build(&first, &a, 512, &m, &len), 0);
    /* The same question from another client: another id, no RD, other case. */
    wire *w = header(0x7777, 0x0010, 1, 0, 0, 0);   /* CD set, RD clear */
    wname(w, "TIMESTAMP.service.Registry");
    w16(w, DNS_TYPE_A);
    w16(w, DNS_CLASS_IN);
    assert_int_equal(parse_w(&second), DNS_PARSE_OK);
    assert_int_equal(dns_patch(m, len, &second), 0);
    ldns_pkt *p = readback(m, len);
    assert_int_equal(ldns_pkt_id(p), 0x7777);
    assert_false(ldns_pkt_rd(p));
    assert_true(ldns_pkt_cd(p));
    assert_true(ldns_pkt_aa(p));
    assert_owner(ldns_rr_list_rr(ldns_pkt_question(p), 0), "TIMESTAMP.service.Registry");
    assert_owner(ldns_rr_list_rr(ldns_pkt_answer(p), 0), "TIMESTAMP.service.Registry");
    assert_int_equal(ldns_pkt_ancount(p), 1);
    ldns_pkt_free(p);
    free(m);
}

static void test_patch_refuses_another_question(void **state) {
    (void)state;
    dns_query first, other;
    parse_client("timestamp.service.registry", LDNS_RR_TYPE_A, 0, &first);
    dns_answer a = {.rcode = DNS_RCODE_NXDOMAIN};
    uint8_t *m;
    size_t len;
    assert_int_equal(dns_build(&first, &a, 512, &m, &len), 0);
    parse_client("timestamq.service.registry", LDNS_RR_TYPE_A, 0, &other);
    assert_int_equal(dns_patch(m, len, &other), -EINVAL);
    parse_client("timestamp.service.registry", LDNS_RR_TYPE_AAAA, 0, &other);
    assert_int_equal(dns_patch(m, len, &other), -EINVAL);
    parse_client("x.registry", LDNS_RR_TYPE_A, 0, &other);
    assert_int_equal(dns_patch(m, len, &other), -EINVAL);
    free(m);
}

static void test_truncated_reads_the_tc_bit(void **state) {
    (void)state;
    uint8_t h[DNS_HEADER_LEN] = {0, 1, 0x82, 0};
    assert_int_equal(dns_truncated(h, sizeof(h)), 1);
    h[2] = 0x80;
    assert_int_equal(dns_truncated(h, sizeof(h)), 0);
    assert_int_equal(dns_truncated(h, 3), 0);
}

/* ---------------------------------------------------------------------------------- */
/* Fuzzer regressions                                                                  */

static int regress_exists(void *ud, const char *service) {
    (void)ud;
    return strcmp(service, "timestamp") == 0 || strcmp(service, "a.b") == 0;
}

/* One input as the server would treat it: parse; answer what parses (an A record for
 * a service, NXDOMAIN + SOA otherwise) within the client's size; read the answer back
 * with ldns. Returns NULL or what went wrong. */
static const char *replay(const uint8_t *d, size_t n) {
    dns_query q;
    dns_outcome o = dns_parse(d, n, &q);
    if (o == DNS_PARSE_IGNORE)
        return NULL;
    dns_rr rr = rr_a(NULL, 127, 0, 0, 1);
    dns_answer a = {.rcode = o == DNS_PARSE_FORMERR ? DNS_RCODE_FORMERR : DNS_RCODE_NOTIMP,
                    .zone = "registry"};
    if (o == DNS_PARSE_OK) {
        dns_name nm;
        dns_kind k = dns_classify("registry", q.qname, regress_exists, NULL, &nm);
        a.aa = k != DNS_NAME_OUTSIDE;
        a.rcode = k == DNS_NAME_OUTSIDE     ? DNS_RCODE_REFUSED
                  : k == DNS_NAME_SERVICE ? DNS_RCODE_NOERROR
                                          : DNS_RCODE_NXDOMAIN;
        a.answer = k == DNS_NAME_SERVICE ? &rr : NULL;
        a.nanswer = k == DNS_NAME_SERVICE;
        a.soa = k != DNS_NAME_OUTSIDE && k != DNS_NAME_SERVICE;
    }
    uint8_t *m = NULL;
    size_t len;
    if (dns_build(&q, &a, q.udp_size, &m, &len) != 0)
        return "no answer could be built";
    const char *why = NULL;
    ldns_pkt *p = NULL;
    if (len > q.udp_size)
        why = "the answer is larger than the client's size";
    else if (ldns_wire2pkt(&p, m, len) != LDNS_STATUS_OK)
        why = "ldns cannot read the answer";
    else if (ldns_pkt_id(p) != q.id || !ldns_pkt_qr(p))
        why = "the answer's header is wrong";
    ldns_pkt_free(p);
    free(m);
    return why;
}

/* Every input the fuzzer ever crashed on goes through parse, classify and build as the
 * server uses them. All files are tried; the failures are listed together. */
static const char *replay_dns(const char *name, const unsigned char *data, size_t n,
                              void *ud) {
    (void)name;
    (void)ud;
    return replay(data, n > DNS_TCP_MAX ? DNS_TCP_MAX : n);
}

static void test_fuzz_regressions(void **state) {
    (void)state;
    regress_replay(REGRESS_DIR, DNS_TCP_MAX + 1, 0, replay_dns, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_a_query_with_edns),
        cmocka_unit_test(test_parse_aaaa_query_without_edns),
        cmocka_unit_test(test_parse_srv_query),
        cmocka_unit_test(test_parse_mixed_case_lowercases_text_keeps_wire),
        cmocka_unit_test(test_parse_edns_size_clamped),
        cmocka_unit_test(test_parse_edns_version_and_do_bit),
        cmocka_unit_test(test_parse_opt_with_options),
        cmocka_unit_test(test_parse_root_name),
        cmocka_unit_test(test_parse_text_escapes_dots_and_odd_bytes),
        cmocka_unit_test(test_parse_unknown_class_is_ok),
        cmocka_unit_test(test_parse_trailing_bytes_ignored),
        cmocka_unit_test(test_parse_tsig_last_is_skipped),
        cmocka_unit_test(test_parse_empty_packet_ignored),
        cmocka_unit_test(test_parse_11_bytes_ignored),
        cmocka_unit_test(test_parse_65535_questions_formerr_with_id),
        cmocka_unit_test(test_parse_no_question_formerr),
        cmocka_unit_test(test_parse_compression_loop_formerr),
        cmocka_unit_test(test_parse_compression_loop_in_additional_formerr),
        cmocka_unit_test(test_parse_forward_pointer_formerr),
        cmocka_unit_test(test_parse_label_64_formerr),
        cmocka_unit_test(test_parse_label_63_ok),
        cmocka_unit_test(test_parse_name_over_255_formerr),
        cmocka_unit_test(test_parse_name_of_255_ok),
        cmocka_unit_test(test_parse_response_ignored),
        cmocka_unit_test(test_parse_opcode_not_query_notimp),
        cmocka_unit_test(test_parse_truncated_question_formerr),
        cmocka_unit_test(test_parse_answer_or_authority_records_formerr),
        cmocka_unit_test(test_parse_two_opt_formerr),
        cmocka_unit_test(test_parse_opt_not_owned_by_root_formerr),
        cmocka_unit_test(test_parse_opt_bad_option_length_formerr),
        cmocka_unit_test(test_parse_rdata_past_the_end_formerr),
        cmocka_unit_test(test_parse_record_after_tsig_formerr),
        cmocka_unit_test(test_parse_other_additional_record_formerr),
        cmocka_unit_test(test_parse_more_records_than_bytes_formerr),
        cmocka_unit_test(test_parse_agrees_with_ldns),
        cmocka_unit_test(test_classify_service),
        cmocka_unit_test(test_classify_service_that_does_not_exist),
        cmocka_unit_test(test_classify_dotted_service_prefix_tried_whole_first),
        cmocka_unit_test(test_classify_tag_when_prefix_is_no_service),
        cmocka_unit_test(test_classify_tag_fallback_only_when_prefix_missing),
        cmocka_unit_test(test_classify_tag_may_hold_any_byte),
        cmocka_unit_test(test_classify_escaped_dot_is_not_a_service_dot),
        cmocka_unit_test(test_classify_srv_tcp),
        cmocka_unit_test(test_classify_srv_tag),
        cmocka_unit_test(test_classify_srv_dotted_service),
        cmocka_unit_test(test_classify_srv_or_tag_of_underscored_service),
        cmocka_unit_test(test_classify_instance),
        cmocka_unit_test(test_classify_case_insensitive),
        cmocka_unit_test(test_classify_outside),
        cmocka_unit_test(test_classify_text_name_over_255_is_outside),
        cmocka_unit_test(test_classify_apex),
        cmocka_unit_test(test_classify_unknown),
        cmocka_unit_test(test_classify_empty_non_terminals),
        cmocka_unit_test(test_classify_service_name_limits),
        cmocka_unit_test(test_classify_other_domains),
        cmocka_unit_test(test_classify_without_callback_nothing_exists),
        cmocka_unit_test(test_build_a_roundtrip),
        cmocka_unit_test(test_build_aaaa_roundtrip),
        cmocka_unit_test(test_build_cname_roundtrip),
        cmocka_unit_test(test_build_srv_with_additional_roundtrip),
        cmocka_unit_test(test_build_nxdomain_with_soa),
        cmocka_unit_test(test_build_nodata_with_soa),
        cmocka_unit_test(test_build_apex_soa_answer),
        cmocka_unit_test(test_build_refused_without_aa),
        cmocka_unit_test(test_build_formerr_is_header_only),
        cmocka_unit_test(test_build_notimp_echoes_opcode),
        cmocka_unit_test(test_build_badvers_uses_extended_rcode),
        cmocka_unit_test(test_build_question_echoed_in_client_case),
        cmocka_unit_test(test_build_truncates_40_a_records_at_512),
        cmocka_unit_test(test_build_edns_4096_lets_40_a_records_through),
        cmocka_unit_test(test_build_truncation_keeps_the_opt_record),
        cmocka_unit_test(test_build_tcp_sends_everything),
        cmocka_unit_test(test_build_over_65535_truncated_even_over_tcp),
        cmocka_unit_test(test_build_drops_additional_first_without_tc),
        cmocka_unit_test(test_build_emsgsize_when_the_question_cannot_fit),
        cmocka_unit_test(test_build_invalid_input_einval),
        cmocka_unit_test(test_patch_reuses_an_answer_for_another_query),
        cmocka_unit_test(test_patch_refuses_another_question),
        cmocka_unit_test(test_truncated_reads_the_tc_bit),
        cmocka_unit_test(test_fuzz_regressions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
