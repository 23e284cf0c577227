/* SPDX-License-Identifier: BSD-2-Clause */
/* test_proto.c — unit tests of the wire protocol (registry/front/line/proto.c) with cmocka.
 *
 * One behaviour per test: proto_decode for every op (fields and defaults), every bad
 * input of the protocol's list (error code and a message naming the field), the line
 * limit at its exact edges, proto_frame, proto_encode / proto_error, the decode memo
 * (a hit is exactly what decoding gives), the service and host validators, and a replay
 * of every fuzzer-found input in tests/fuzz/regress/.
 *
 * Every error a decode returns must also be sendable: the daemon answers it with
 * proto_error(), and a NULL there closes the connection instead of answering. So the
 * bad-input helper also builds that reply and checks it.
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
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "regress_dir.h"

#include "front/line/proto.h"

#define REGRESS_DIR "tests/fuzz/regress"

/* ---------------------------------------------------------------------------------- */
/* Helpers                                                                             */

/* A heap copy of a formatted line (the caller frees it). */
static char *fmt_line(size_t *len, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *fmt_line(size_t *len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    *len = (size_t)n;
    return s;
}

/* n copies of c, NUL-terminated (the caller frees it). */
static char *repeat(char c, size_t n) {
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* The string member key of o; fails the test (instead of crashing) when absent. */
static const char *jstr(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        fail_msg("member \"%s\" is not a string", key);
    return json_string_value(v);
}

/* Decodes line[len] and expects success; the caller frees *r. */
static void decode_ok_n(const char *line, size_t len, proto_request *r) {
    char msg[PROTO_MSG_LEN];
    req_err e = proto_decode(line, len, r, msg);
    if (e != RERR_NONE) {
        proto_request_free(r);
        fail_msg("expected success for %.80s, got %s: %s", line, req_err_name(e), msg);
    }
}

static void decode_ok(const char *line, proto_request *r) {
    decode_ok_n(line, strlen(line), r);
}

/* msg with bytes outside printable ASCII shown as \xNN, for failure reports. */
static const char *printable(const char *msg, char *out, size_t outlen) {
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p && o + 5 < outlen; p++) {
        if (*p >= 0x20 && *p < 0x7f)
            out[o++] = (char)*p;
        else
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", *p);
    }
    out[o] = '\0';
    return out;
}

/* Can the daemon send this error? Returns NULL, or why not in why[PROTO_MSG_LEN * 5]
 * (checked without failing, so the caller can free its request first). */
static const char *error_unsendable(req_err e, const char *msg, json_t *request_id, char *why,
                                    size_t whylen) {
    char shown[4 * PROTO_MSG_LEN + 1];
    why[0] = '\0';
    json_t *o = proto_error(e, msg, request_id);
    if (o == NULL) {
        snprintf(why, whylen, "proto_error() returned NULL for message \"%s\" (not valid UTF-8)",
                 printable(msg, shown, sizeof shown));
        return why;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = proto_encode(o, NULL, &buf, &len, &cap);
    json_decref(o);
    if (rc != 0 || len == 0 || buf[len - 1] != '\n' || memchr(buf, '\n', len - 1) != NULL)
        snprintf(why, whylen, "the error for \"%s\" does not encode as one line",
                 printable(msg, shown, sizeof shown));
    free(buf);
    return why[0] ? why : NULL;
}

/* Decodes line[len], expects error `want` with a message containing `needle`, and a
 * reply the daemon can send. */
static void expect_err_n(const char *line, size_t len, req_err want, const char *needle) {
    proto_request r;
    char msg[PROTO_MSG_LEN], why[PROTO_MSG_LEN * 5] = "";
    char shown[4 * PROTO_MSG_LEN + 1];
    req_err e = proto_decode(line, len, &r, msg);
    const char *bad = e == RERR_NONE ? NULL : error_unsendable(e, msg, r.request_id, why, sizeof why);
    proto_request_free(&r);
    if (e != want)
        fail_msg("input %.80s: expected %s, got %s (%s)", line, req_err_name(want),
                 req_err_name(e), printable(msg, shown, sizeof shown));
    if (strstr(msg, needle) == NULL)
        fail_msg("input %.80s: message \"%s\" does not mention \"%s\"", line,
                 printable(msg, shown, sizeof shown), needle);
    if (bad != NULL)
        fail_msg("%s", bad);
}

static void expect_bad(const char *line, const char *needle) {
    expect_err_n(line, strlen(line), RERR_BAD_REQUEST, needle);
}

/* ---------------------------------------------------------------------------------- */
/* Valid requests: every op, fields and defaults                                       */

static void test_register_all_fields(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"register\",\"service\":\"web-1.a_b\",\"host\":\"10.0.0.7\",\"port\":8080,"
              "\"description\":\"front end\",\"tags\":[\"eu\",\"v2\"],\"ttl\":30,"
              "\"check\":\"none\",\"auth\":\"s3cret\",\"request_id\":\"r1\"}",
              &r);
    assert_int_equal(r.r.op, OP_REGISTER);
    assert_string_equal(r.r.service, "web-1.a_b");
    assert_string_equal(r.r.host, "10.0.0.7");
    assert_int_equal(r.r.port, 8080);
    assert_string_equal(r.r.description, "front end");
    assert_non_null(r.r.tags);
    assert_int_equal(json_array_size(r.r.tags), 2);
    assert_string_equal(json_string_value(json_array_get(r.r.tags, 0)), "eu");
    assert_string_equal(json_string_value(json_array_get(r.r.tags, 1)), "v2");
    assert_int_equal(r.r.ttl, 30);
    assert_int_equal(r.r.check, REQ_CHECK_NONE);
    assert_string_equal(r.r.auth, "s3cret");
    assert_non_null(r.request_id);
    assert_string_equal(json_string_value(r.request_id), "r1");
    proto_request_free(&r);
}

/* Registering an existing instance again may carry its current token, or be an admin's. */
static void test_register_token_and_admin(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"register\",\"service\":\"db\",\"port\":5432,"
              "\"token\":\"abc\",\"admin\":true}", &r);
    assert_string_equal(r.r.token, "abc");
    assert_int_equal(r.r.admin, 1);
    proto_request_free(&r);
    decode_ok("{\"op\":\"register\",\"service\":\"db\",\"port\":5432}", &r);
    assert_null(r.r.token);
    assert_int_equal(r.r.admin, 0);
    proto_request_free(&r);
    expect_bad("{\"op\":\"register\",\"service\":\"db\",\"port\":1,\"admin\":1}", "\"admin\"");
    expect_bad("{\"op\":\"register\",\"service\":\"db\",\"port\":1,\"token\":7}", "\"token\"");
}

static void test_register_defaults(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"register\",\"service\":\"db\",\"port\":5432}", &r);
    assert_int_equal(r.r.op, OP_REGISTER);
    assert_string_equal(r.r.service, "db");
    assert_null(r.r.host);
    assert_int_equal(r.r.port, 5432);
    assert_non_null(r.r.description);
    assert_string_equal(r.r.description, "");
    assert_null(r.r.tags);
    assert_int_equal(r.r.ttl, 0);
    assert_int_equal(r.r.check, REQ_CHECK_TCP);
    assert_null(r.r.auth);
    assert_null(r.request_id);
    assert_int_equal(r.r.all, 0);
    proto_request_free(&r);
}

static void test_register_check_tcp_explicit(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"register\",\"service\":\"db\",\"port\":1,\"check\":\"tcp\"}", &r);
    assert_int_equal(r.r.check, REQ_CHECK_TCP);
    proto_request_free(&r);
}

static void test_register_null_optionals_are_defaults(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"register\",\"service\":\"db\",\"port\":1,\"host\":null,"
              "\"description\":null,\"tags\":null,\"ttl\":null,\"check\":null}",
              &r);
    assert_null(r.r.host);
    assert_string_equal(r.r.description, "");
    assert_null(r.r.tags);
    assert_int_equal(r.r.ttl, 0);
    assert_int_equal(r.r.check, REQ_CHECK_TCP);
    proto_request_free(&r);
}

static void test_register_port_edges(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"register\",\"service\":\"a\",\"port\":1}", &r);
    assert_int_equal(r.r.port, 1);
    proto_request_free(&r);
    decode_ok("{\"op\":\"register\",\"service\":\"a\",\"port\":65535}", &r);
    assert_int_equal(r.r.port, 65535);
    proto_request_free(&r);
}

static void test_register_ttl_edges(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"ttl\":1}", &r);
    assert_int_equal(r.r.ttl, 1);
    proto_request_free(&r);
    decode_ok("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"ttl\":86400}", &r);
    assert_int_equal(r.r.ttl, 86400);
    proto_request_free(&r);
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"ttl\":0}", "\"ttl\"");
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"ttl\":86401}", "\"ttl\"");
}

static void test_register_wildcard_hosts_mean_peer(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"host\":\"0.0.0.0\"}", &r);
    assert_null(r.r.host);
    proto_request_free(&r);
    decode_ok("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"host\":\"::\"}", &r);
    assert_null(r.r.host);
    proto_request_free(&r);
}

static void test_register_hosts_accepted(void **state) {
    (void)state;
    static const char *const hosts[] = {"127.0.0.1", "::1", "fe80::1", "2001:db8::5",
                                        "localhost", "db-1.example.com", "x"};
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        size_t len;
        char *l = fmt_line(&len, "{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"host\":\"%s\"}",
                           hosts[i]);
        proto_request r;
        decode_ok_n(l, len, &r);
        assert_string_equal(r.r.host, hosts[i]);
        proto_request_free(&r);
        free(l);
    }
}

static void test_register_32_tags_ok(void **state) {
    (void)state;
    char line[1024] = "{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"tags\":[";
    for (int i = 0; i < REQ_TAGS_MAX; i++) {
        char t[16];
        snprintf(t, sizeof t, "%s\"t%d\"", i ? "," : "", i);
        strcat(line, t);
    }
    strcat(line, "]}");
    proto_request r;
    decode_ok(line, &r);
    assert_int_equal(json_array_size(r.r.tags), REQ_TAGS_MAX);
    proto_request_free(&r);
}

static void test_register_description_1024_bytes_ok(void **state) {
    (void)state;
    char *d = repeat('d', REQ_DESC_MAX);
    size_t len;
    char *l = fmt_line(&len, "{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"description\":\"%s\"}", d);
    proto_request r;
    decode_ok_n(l, len, &r);
    assert_int_equal(strlen(r.r.description), REQ_DESC_MAX);
    proto_request_free(&r);
    free(l);
    free(d);
}

static void test_register_description_multibyte_counts_bytes(void **state) {
    (void)state;
    /* 512 x "é" (2 bytes each) = 1024 bytes: accepted; 513 x = 1026 bytes: rejected. */
    char desc[2 * 513 + 1];
    for (int i = 0; i < 513; i++)
        memcpy(desc + 2 * i, "\xc3\xa9", 2);
    desc[2 * 512] = '\0';
    size_t len;
    char *l = fmt_line(&len, "{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"description\":\"%s\"}",
                       desc);
    proto_request r;
    decode_ok_n(l, len, &r);
    assert_int_equal(strlen(r.r.description), 1024);
    proto_request_free(&r);
    free(l);
    memcpy(desc + 2 * 512, "\xc3\xa9", 2);
    desc[2 * 513] = '\0';
    l = fmt_line(&len, "{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"description\":\"%s\"}", desc);
    expect_err_n(l, len, RERR_BAD_REQUEST, "\"description\"");
    free(l);
}

static void test_deregister(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"deregister\",\"id\":\"0123456789abcdef\",\"token\":\"tok\"}", &r);
    assert_int_equal(r.r.op, OP_DEREGISTER);
    assert_string_equal(r.r.id, "0123456789abcdef");
    assert_string_equal(r.r.token, "tok");
    proto_request_free(&r);
}

static void test_heartbeat(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"heartbeat\",\"id\":\"abc\",\"token\":\"t\"}", &r);
    assert_int_equal(r.r.op, OP_HEARTBEAT);
    assert_string_equal(r.r.id, "abc");
    assert_string_equal(r.r.token, "t");
    proto_request_free(&r);
}

static void test_owner_ops_need_id_and_token(void **state) {
    (void)state;
    expect_bad("{\"op\":\"deregister\",\"token\":\"t\"}", "\"id\"");
    expect_bad("{\"op\":\"deregister\",\"id\":\"a\"}", "\"token\"");
    expect_bad("{\"op\":\"heartbeat\",\"id\":5,\"token\":\"t\"}", "\"id\"");
    expect_bad("{\"op\":\"heartbeat\",\"id\":\"a\",\"token\":[]}", "\"token\"");
}

static void test_lookup_defaults(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"lookup\",\"service\":\"web\"}", &r);
    assert_int_equal(r.r.op, OP_LOOKUP);
    assert_string_equal(r.r.service, "web");
    assert_null(r.r.tag);
    assert_int_equal(r.r.all, 0);
    proto_request_free(&r);
}

static void test_lookup_tag_and_all(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"lookup\",\"service\":\"web\",\"tag\":\"eu\",\"all\":true}", &r);
    assert_string_equal(r.r.tag, "eu");
    assert_int_equal(r.r.all, 1);
    proto_request_free(&r);
    decode_ok("{\"op\":\"lookup\",\"service\":\"web\",\"all\":false}", &r);
    assert_int_equal(r.r.all, 0);
    proto_request_free(&r);
}

static void test_lookup_needs_service(void **state) {
    (void)state;
    expect_bad("{\"op\":\"lookup\"}", "\"service\"");
}

/* --- paging of list and lookup ("limit", "cursor") --- */

static void test_page_absent_means_everything(void **state) {
    (void)state;
    static const char *const lines[] = {
        "{\"op\":\"list\"}",
        "{\"op\":\"lookup\",\"service\":\"web\",\"all\":true}",
        "{\"op\":\"list\",\"limit\":null,\"cursor\":null}",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        proto_request r;
        decode_ok(lines[i], &r);
        assert_int_equal(r.page.on, 0);
        assert_null(r.page.after);
        assert_string_equal(r.page.id, "");
        proto_request_free(&r);
    }
}

static void test_page_list_limit_and_cursor(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"list\",\"limit\":1}", &r);
    assert_int_equal(r.page.on, 1);
    assert_int_equal(r.page.limit, 1);
    assert_null(r.page.after);
    proto_request_free(&r);
    decode_ok("{\"op\":\"list\",\"limit\":10000,\"cursor\":\"web-1.eu_2\"}", &r);
    assert_int_equal(r.page.limit, PROTO_PAGE_MAX);
    assert_string_equal(r.page.after, "web-1.eu_2");
    proto_request_free(&r);
    /* A cursor alone: a page of the most entries a page holds. */
    decode_ok("{\"op\":\"list\",\"cursor\":\"web\"}", &r);
    assert_int_equal(r.page.on, 1);
    assert_int_equal(r.page.limit, PROTO_PAGE_MAX);
    assert_string_equal(r.page.after, "web");
    proto_request_free(&r);
}

static void test_page_lookup_limit_and_cursor(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"lookup\",\"service\":\"web\",\"all\":true,\"limit\":5}", &r);
    assert_int_equal(r.page.on, 1);
    assert_int_equal(r.page.limit, 5);
    assert_string_equal(r.page.id, "");
    assert_int_equal(r.r.all, 1);
    proto_request_free(&r);
    decode_ok("{\"op\":\"lookup\",\"service\":\"web\",\"limit\":2,"
              "\"cursor\":\"41.3f1c0a9b2e7d4c11\"}", &r);
    assert_int_equal(r.page.limit, 2);
    assert_int_equal(r.page.index, 41);
    assert_string_equal(r.page.id, "3f1c0a9b2e7d4c11");
    assert_null(r.page.after);
    proto_request_free(&r);
    /* What the daemon hands out decodes back to the same place. */
    char cur[PROTO_CURSOR_MAX], *line;
    size_t len, n = proto_lookup_cursor(123456789, "00ff", cur);
    assert_int_equal(n, strlen(cur));
    assert_string_equal(cur, "123456789.00ff");
    line = fmt_line(&len, "{\"op\":\"lookup\",\"service\":\"web\",\"cursor\":\"%s\"}", cur);
    decode_ok(line, &r);
    free(line);
    assert_int_equal(r.page.on, 1);
    assert_int_equal(r.page.limit, PROTO_PAGE_MAX);
    assert_int_equal(r.page.index, 123456789);
    assert_string_equal(r.page.id, "00ff");
    proto_request_free(&r);
}

static void test_page_bad_limit(void **state) {
    (void)state;
    expect_bad("{\"op\":\"list\",\"limit\":0}", "\"limit\" must be between 1 and 10000");
    expect_bad("{\"op\":\"list\",\"limit\":10001}", "\"limit\"");
    expect_bad("{\"op\":\"list\",\"limit\":-3}", "\"limit\"");
    expect_bad("{\"op\":\"list\",\"limit\":\"5\"}", "\"limit\" must be an integer");
    expect_bad("{\"op\":\"list\",\"limit\":2.5}", "\"limit\"");
    expect_bad("{\"op\":\"lookup\",\"service\":\"web\",\"limit\":0}", "\"limit\"");
    expect_bad("{\"op\":\"lookup\",\"service\":\"web\",\"limit\":true}", "\"limit\"");
}

static void test_page_bad_cursor(void **state) {
    (void)state;
    static const char *const list[] = {
        "{\"op\":\"list\",\"cursor\":\"\"}",
        "{\"op\":\"list\",\"cursor\":\"Web\"}",          /* not a service name */
        "{\"op\":\"list\",\"cursor\":\"-web\"}",
        "{\"op\":\"list\",\"cursor\":\"a b\"}",
    };
    for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++)
        expect_bad(list[i], "\"cursor\" must be the \"next\" of an earlier list page");
    static const char *const lookup[] = {
        "{\"op\":\"lookup\",\"service\":\"w\",\"cursor\":\"\"}",
        "{\"op\":\"lookup\",\"service\":\"w\",\"cursor\":\"web\"}",   /* a list cursor */
        "{\"op\":\"lookup\",\"service\":\"w\",\"cursor\":\"12\"}",    /* no id */
        "{\"op\":\"lookup\",\"service\":\"w\",\"cursor\":\"12.\"}",
        "{\"op\":\"lookup\",\"service\":\"w\",\"cursor\":\".ab\"}",   /* no index */
        "{\"op\":\"lookup\",\"service\":\"w\",\"cursor\":\"-1.ab\"}",
        "{\"op\":\"lookup\",\"service\":\"w\",\"cursor\":\"1.AB\"}",  /* ids are lowercase hex */
        "{\"op\":\"lookup\",\"service\":\"w\",\"cursor\":\"1.ab.cd\"}",
        "{\"op\":\"lookup\",\"service\":\"w\",\"cursor\":\"1234567890.ab\"}", /* > 9 digits */
        "{\"op\":\"lookup\",\"service\":\"w\",\"cursor\":\"1.ab \"}",
    };
    for (size_t i = 0; i < sizeof(lookup) / sizeof(lookup[0]); i++)
        expect_bad(lookup[i], "\"cursor\"");
    expect_bad("{\"op\":\"lookup\",\"service\":\"w\",\"cursor\":\"x\"}",
               "must be the \"next\" of an earlier lookup page");
    /* 65 hex digits of id: longer than any id the registry gives. */
    char *id = repeat('a', PROTO_CURSOR_ID_MAX + 1), *line;
    size_t len;
    line = fmt_line(&len, "{\"op\":\"lookup\",\"service\":\"w\",\"cursor\":\"1.%s\"}", id);
    expect_bad(line, "\"cursor\"");
    free(line);
    id[PROTO_CURSOR_ID_MAX] = '\0';
    proto_request r;
    line = fmt_line(&len, "{\"op\":\"lookup\",\"service\":\"w\",\"cursor\":\"1.%s\"}", id);
    decode_ok(line, &r);
    assert_string_equal(r.page.id, id);
    proto_request_free(&r);
    free(line);
    free(id);
    /* Longer than any cursor at all; and not a string. */
    char *big = repeat('a', PROTO_CURSOR_MAX + 1);
    line = fmt_line(&len, "{\"op\":\"list\",\"cursor\":\"%s\"}", big);
    expect_bad(line, "\"cursor\" is longer than");
    free(line);
    free(big);
    expect_bad("{\"op\":\"list\",\"cursor\":7}", "\"cursor\" must be a string");
}

static void test_page_fields_ignored_elsewhere(void **state) {
    (void)state;
    proto_request r;
    /* events has a "limit" of its own; other ops ignore unknown fields. */
    decode_ok("{\"op\":\"events\",\"limit\":7,\"cursor\":\"bogus\"}", &r);
    assert_int_equal(r.r.limit, 7);
    assert_int_equal(r.page.on, 0);
    proto_request_free(&r);
    decode_ok("{\"op\":\"ping\",\"limit\":0,\"cursor\":\"\"}", &r);
    assert_int_equal(r.page.on, 0);
    proto_request_free(&r);
}

static void test_simple_ops(void **state) {
    (void)state;
    static const struct {
        const char *line;
        req_op op;
    } cases[] = {
        {"{\"op\":\"list\"}", OP_LIST},
        {"{\"op\":\"ping\"}", OP_PING},
        {"{\"op\":\"stats\"}", OP_STATS},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        proto_request r;
        decode_ok(cases[i].line, &r);
        assert_int_equal(r.r.op, cases[i].op);
        assert_null(r.r.service);
        assert_null(r.request_id);
        proto_request_free(&r);
    }
}

static void test_events_defaults(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"events\"}", &r);
    assert_int_equal(r.r.op, OP_EVENTS);
    assert_int_equal(r.r.since, 0);
    assert_int_equal(r.r.limit, 100);
    assert_null(r.r.service);
    proto_request_free(&r);
}

static void test_events_fields(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"events\",\"since\":42,\"limit\":10000,\"service\":\"web\"}", &r);
    assert_int_equal(r.r.since, 42);
    assert_int_equal(r.r.limit, REQ_EVENTS_LIMIT);
    assert_string_equal(r.r.service, "web");
    proto_request_free(&r);
    expect_bad("{\"op\":\"events\",\"limit\":0}", "\"limit\"");
    expect_bad("{\"op\":\"events\",\"limit\":10001}", "\"limit\"");
    expect_bad("{\"op\":\"events\",\"since\":-1}", "\"since\"");
    expect_bad("{\"op\":\"events\",\"service\":\"Bad\"}", "\"service\"");
}

static void test_watch(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"watch\"}", &r);
    assert_int_equal(r.r.op, OP_WATCH);
    assert_null(r.r.service);
    proto_request_free(&r);
    decode_ok("{\"op\":\"watch\",\"service\":\"web\"}", &r);
    assert_string_equal(r.r.service, "web");
    proto_request_free(&r);
}

static void test_unknown_fields_ignored(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"ping\",\"future\":{\"x\":[1,2,3]},\"v\":2}", &r);
    assert_int_equal(r.r.op, OP_PING);
    proto_request_free(&r);
}

static void test_auth_any_op(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"lookup\",\"service\":\"a\",\"auth\":\"k\"}", &r);
    assert_string_equal(r.r.auth, "k");
    proto_request_free(&r);
    expect_bad("{\"op\":\"ping\",\"auth\":7}", "\"auth\"");
}

static void test_crlf_tolerated(void **state) {
    (void)state;
    proto_request r;
    decode_ok("{\"op\":\"ping\"}\r", &r);
    assert_int_equal(r.r.op, OP_PING);
    proto_request_free(&r);
}

static void test_valid_utf8_accepted(void **state) {
    (void)state;
    proto_request r;
    /* 2-, 3- and 4-byte sequences: é, €, U+1D11E, and U+10FFFF (the last code point). */
    decode_ok("{\"op\":\"register\",\"service\":\"a\",\"port\":1,"
              "\"description\":\"\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e \xf4\x8f\xbf\xbf\"}",
              &r);
    assert_string_equal(r.r.description, "\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e \xf4\x8f\xbf\xbf");
    proto_request_free(&r);
}

static void test_brackets_inside_strings_are_not_nesting(void **state) {
    (void)state;
    char *b = repeat('[', 1000);
    size_t len;
    char *l = fmt_line(&len, "{\"op\":\"ping\",\"x\":\"%s\\\"%s\"}", b, b);
    proto_request r;
    decode_ok_n(l, len, &r);
    proto_request_free(&r);
    free(l);
    free(b);
}

/* ---------------------------------------------------------------------------------- */
/* Bad requests: the protocol's list                                                   */

static void test_bad_invalid_json(void **state) {
    (void)state;
    expect_bad("{", "invalid JSON");
    expect_bad("{\"op\":", "invalid JSON");
    expect_bad("{\"op\":\"ping\"", "invalid JSON");
    expect_bad("{\"op\":\"ping\"}}", "invalid JSON");
    expect_bad("{'op':'ping'}", "invalid JSON");
    expect_bad("", "invalid JSON");
    expect_bad("hello", "invalid JSON");
}

static void test_bad_not_object(void **state) {
    (void)state;
    expect_bad("42", "JSON object");
    expect_bad("[]", "JSON object");
    expect_bad("\"x\"", "JSON object");
    expect_bad("null", "JSON object");
    expect_bad("true", "JSON object");
}

static void test_bad_missing_op(void **state) {
    (void)state;
    expect_bad("{}", "\"op\"");
    expect_bad("{\"service\":\"a\"}", "\"op\"");
    expect_bad("{\"op\":null}", "\"op\"");
}

static void test_bad_op_not_string(void **state) {
    (void)state;
    expect_bad("{\"op\":1}", "\"op\" must be a string");
    expect_bad("{\"op\":[\"ping\"]}", "\"op\" must be a string");
    expect_bad("{\"op\":true}", "\"op\" must be a string");
}

static void test_bad_unknown_op(void **state) {
    (void)state;
    expect_bad("{\"op\":\"explode\"}", "unknown op");
    expect_bad("{\"op\":\"PING\"}", "unknown op");
    expect_bad("{\"op\":\"\"}", "unknown op");
}

/* Regression (tests/fuzz/regress/decode-unknown-op-utf8-split): the "unknown op"
 * message quoted the op with "%.32s", which can cut a multi-byte UTF-8 character in
 * half; proto_error() then returned NULL (jansson refuses invalid UTF-8) and the daemon
 * closed the connection instead of answering bad_request. Fixed in 502e623 (the quote
 * is cut on a character boundary). */
static void test_bad_unknown_op_message_is_valid_utf8(void **state) {
    (void)state;
    /* 31 ASCII bytes then "é": byte 32 is the first half of the 2-byte sequence. */
    expect_bad("{\"op\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9\"}", "unknown op");
    /* Same with a 4-byte character straddling the cut. */
    expect_bad("{\"op\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xf0\x9d\x84\x9e\"}", "unknown op");
}

/* Found by tests/fuzz/fuzz_decode (tests/fuzz/regress/decode-jansson-escape-utf8-split):
 * for an invalid escape, jansson's error text quotes the bytes read so far, ending with
 * the first byte of a multi-byte character (invalid escape near '"\\<0xC3>'), and the
 * message built from it was not valid UTF-8, so proto_error() returned NULL and the
 * daemon closed the connection instead of answering. Fixed when proto_decode stopped
 * quoting jansson's "near '...'" excerpt (commit 8206591); kept as a regression test. */
static void test_bad_json_message_is_valid_utf8(void **state) {
    (void)state;
    expect_bad("{\"op\":\"ping\",\"x\":\"\\\xc3\xa9\"}", "invalid JSON");
    expect_bad("{\"op\":\"ping\",\"x\":\"\\\xf0\x9d\x84\x9e\"}", "invalid JSON");
}

static void test_bad_op_too_long(void **state) {
    (void)state;
    char *op = repeat('x', 65);
    size_t len;
    char *l = fmt_line(&len, "{\"op\":\"%s\"}", op);
    expect_err_n(l, len, RERR_BAD_REQUEST, "\"op\"");
    free(l);
    free(op);
}

static void test_bad_port_types(void **state) {
    (void)state;
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":\"80\"}", "\"port\" must be an integer");
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":80.5}", "\"port\" must be an integer");
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":80.0}", "\"port\" must be an integer");
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":true}", "\"port\" must be an integer");
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":null}", "\"port\"");
}

static void test_bad_port_missing(void **state) {
    (void)state;
    expect_bad("{\"op\":\"register\",\"service\":\"a\"}", "missing field \"port\"");
}

static void test_bad_port_range(void **state) {
    (void)state;
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":0}", "\"port\"");
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":70000}", "\"port\"");
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":65536}", "\"port\"");
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":-1}", "\"port\"");
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":99999999999999999999}",
               "invalid JSON"); /* beyond int64: jansson refuses it */
}

static void test_bad_ttl_type(void **state) {
    (void)state;
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"ttl\":\"x\"}", "\"ttl\"");
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"ttl\":1.5}", "\"ttl\"");
}

static void test_bad_tags_not_array(void **state) {
    (void)state;
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"tags\":\"eu\"}", "\"tags\"");
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"tags\":{}}", "\"tags\"");
}

static void test_bad_tag_not_string(void **state) {
    (void)state;
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"tags\":[\"eu\",3]}",
               "\"tags\" entry 1");
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"tags\":[\"\"]}",
               "\"tags\" entry 0");
}

static void test_bad_tag_too_long(void **state) {
    (void)state;
    char *t = repeat('t', REQ_TAG_MAX + 1);
    size_t len;
    char *l = fmt_line(&len, "{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"tags\":[\"%s\"]}", t);
    expect_err_n(l, len, RERR_BAD_REQUEST, "\"tags\"");
    free(l);
    free(t);
}

static void test_bad_too_many_tags(void **state) {
    (void)state;
    char line[1024] = "{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"tags\":[";
    for (int i = 0; i < REQ_TAGS_MAX + 1; i++) {
        char t[16];
        snprintf(t, sizeof t, "%s\"t%d\"", i ? "," : "", i);
        strcat(line, t);
    }
    strcat(line, "]}");
    expect_bad(line, "\"tags\"");
}

static void test_bad_all_not_bool(void **state) {
    (void)state;
    expect_bad("{\"op\":\"lookup\",\"service\":\"a\",\"all\":1}", "\"all\"");
    expect_bad("{\"op\":\"lookup\",\"service\":\"a\",\"all\":\"true\"}", "\"all\"");
}

static void test_bad_tag_filter_type(void **state) {
    (void)state;
    expect_bad("{\"op\":\"lookup\",\"service\":\"a\",\"tag\":1}", "\"tag\"");
}

static void test_bad_check_value(void **state) {
    (void)state;
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"check\":\"http\"}", "\"check\"");
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"check\":1}", "\"check\"");
}

static void test_bad_service_missing_or_type(void **state) {
    (void)state;
    expect_bad("{\"op\":\"register\",\"port\":1}", "missing field \"service\"");
    expect_bad("{\"op\":\"register\",\"service\":5,\"port\":1}", "\"service\" must be a string");
}

static void test_service_63_ok_64_too_long(void **state) {
    (void)state;
    char *s = repeat('s', REQ_SERVICE_MAX);
    size_t len;
    char *l = fmt_line(&len, "{\"op\":\"lookup\",\"service\":\"%s\"}", s);
    proto_request r;
    decode_ok_n(l, len, &r);
    assert_int_equal(strlen(r.r.service), REQ_SERVICE_MAX);
    proto_request_free(&r);
    free(l);
    free(s);
    s = repeat('s', REQ_SERVICE_MAX + 1);
    l = fmt_line(&len, "{\"op\":\"register\",\"service\":\"%s\",\"port\":1}", s);
    expect_err_n(l, len, RERR_BAD_REQUEST, "\"service\"");
    free(l);
    free(s);
}

static void test_bad_service_chars(void **state) {
    (void)state;
    expect_bad("{\"op\":\"register\",\"service\":\"Web\",\"port\":1}", "\"service\"");
    expect_bad("{\"op\":\"register\",\"service\":\"my web\",\"port\":1}", "\"service\"");
    expect_bad("{\"op\":\"register\",\"service\":\"-web\",\"port\":1}", "\"service\"");
    expect_bad("{\"op\":\"register\",\"service\":\"\",\"port\":1}", "\"service\"");
    expect_bad("{\"op\":\"lookup\",\"service\":\"a/b\"}", "\"service\"");
    expect_bad("{\"op\":\"lookup\",\"service\":\"caf\xc3\xa9\"}", "\"service\"");
}

static void test_bad_host_too_long(void **state) {
    (void)state;
    /* 254 bytes of valid labels: 3 x 63 + 61 + 3 dots. */
    char host[REQ_HOST_MAX + 2];
    memset(host, 'h', sizeof host);
    host[63] = host[127] = host[191] = '.';
    host[REQ_HOST_MAX + 1] = '\0';
    assert_int_equal(strlen(host), 254);
    size_t len;
    char *l = fmt_line(&len, "{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"host\":\"%s\"}", host);
    expect_err_n(l, len, RERR_BAD_REQUEST, "\"host\"");
    free(l);
    host[REQ_HOST_MAX] = '\0'; /* 253 bytes: accepted */
    l = fmt_line(&len, "{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"host\":\"%s\"}", host);
    proto_request r;
    decode_ok_n(l, len, &r);
    assert_int_equal(strlen(r.r.host), REQ_HOST_MAX);
    proto_request_free(&r);
    free(l);
}

static void test_bad_host_invalid(void **state) {
    (void)state;
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"host\":\"bad host\"}", "\"host\"");
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"host\":\"a..b\"}", "\"host\"");
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"host\":\"-a\"}", "\"host\"");
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"host\":\"a_b\"}", "\"host\"");
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"host\":7}", "\"host\"");
}

static void test_bad_host_empty(void **state) {
    (void)state;
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"host\":\"\"}", "\"host\"");
}

static void test_bad_description_too_long(void **state) {
    (void)state;
    char *d = repeat('d', REQ_DESC_MAX + 1);
    size_t len;
    char *l = fmt_line(&len, "{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"description\":\"%s\"}", d);
    expect_err_n(l, len, RERR_BAD_REQUEST, "\"description\"");
    free(l);
    free(d);
}

static void test_bad_nul_byte_in_line(void **state) {
    (void)state;
    static const char line[] = "{\"op\":\"ping\",\0\"x\":1}";
    expect_err_n(line, sizeof(line) - 1, RERR_BAD_REQUEST, "NUL");
    static const char lead[] = "\0{\"op\":\"ping\"}";
    expect_err_n(lead, sizeof(lead) - 1, RERR_BAD_REQUEST, "NUL");
}

static void test_bad_escaped_nul_in_string(void **state) {
    (void)state;
    /* "\u0000" decodes to a NUL inside a string: refused (C strings cannot carry it). */
    expect_bad("{\"op\":\"lookup\",\"service\":\"a\\u0000b\"}", "invalid JSON");
    expect_bad("{\"op\":\"register\",\"service\":\"a\",\"port\":1,\"description\":\"x\\u0000\"}",
               "invalid JSON");
}

static void test_bad_utf8(void **state) {
    (void)state;
    static const char *const cases[] = {
        "{\"op\":\"ping\",\"x\":\"\xc0\xaf\"}",         /* overlong '/' (2 bytes) */
        "{\"op\":\"ping\",\"x\":\"\xe0\x80\xaf\"}",     /* overlong '/' (3 bytes) */
        "{\"op\":\"ping\",\"x\":\"\xf0\x80\x80\xaf\"}", /* overlong '/' (4 bytes) */
        "{\"op\":\"ping\",\"x\":\"\xed\xa0\x80\"}",     /* surrogate U+D800 */
        "{\"op\":\"ping\",\"x\":\"\xed\xbf\xbf\"}",     /* surrogate U+DFFF */
        "{\"op\":\"ping\",\"x\":\"\xf4\x90\x80\x80\"}", /* U+110000 */
        "{\"op\":\"ping\",\"x\":\"\xe2\x82\"}",         /* truncated, then a quote */
        "{\"op\":\"ping\",\"x\":\"\xff\"}",             /* 0xFF never appears */
        "{\"op\":\"ping\",\"x\":\"\xfe\"}",
        "{\"op\":\"ping\",\"x\":\"\x80\"}",             /* lone continuation byte */
        "{\"op\":\"ping\",\"x\":\"\xf5\x80\x80\x80\"}",
        "{\"op\":\"ping\"}\xe2\x82",                   /* truncated at the end of the line */
        "{\"op\":\"ping\"}\xc3",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_bad(cases[i], "UTF-8");
}

static void test_bad_utf8_in_key(void **state) {
    (void)state;
    expect_bad("{\"op\":\"ping\",\"\xff\":1}", "UTF-8");
}

/* {"op":"ping","x": + n-1 '[' + n-1 ']' + } : nesting n (the object is level 1). */
static char *nested(int n, size_t *len) {
    size_t inner = (size_t)(n - 1);
    char *open = repeat('[', inner), *close = repeat(']', inner);
    char *l = fmt_line(len, "{\"op\":\"ping\",\"x\":%s%s}", open, close);
    free(open);
    free(close);
    return l;
}

static void test_nesting_32_ok(void **state) {
    (void)state;
    size_t len;
    char *l = nested(PROTO_MAX_DEPTH, &len);
    proto_request r;
    decode_ok_n(l, len, &r);
    assert_int_equal(r.r.op, OP_PING);
    proto_request_free(&r);
    free(l);
}

static void test_nesting_33_rejected(void **state) {
    (void)state;
    size_t len;
    char *l = nested(PROTO_MAX_DEPTH + 1, &len);
    expect_err_n(l, len, RERR_BAD_REQUEST, "nested");
    free(l);
}

static void test_nesting_objects_33_rejected(void **state) {
    (void)state;
    char line[1024] = "{\"op\":\"ping\"";
    for (int i = 1; i < PROTO_MAX_DEPTH + 1; i++)
        strcat(line, ",\"a\":{\"b\":1");
    for (int i = 1; i < PROTO_MAX_DEPTH + 1; i++)
        strcat(line, "}");
    strcat(line, "}");
    expect_bad(line, "nested");
}

static void test_nesting_10000_brackets(void **state) {
    (void)state;
    char *b = repeat('[', 10000);
    expect_err_n(b, 10000, RERR_BAD_REQUEST, "nested");
    free(b);
}

static void test_request_id_scalars_echoed(void **state) {
    (void)state;
    static const char *const lines[] = {
        "{\"op\":\"ping\",\"request_id\":\"abc\"}",
        "{\"op\":\"ping\",\"request_id\":42}",
        "{\"op\":\"ping\",\"request_id\":-1.5}",
        "{\"op\":\"ping\",\"request_id\":true}",
        "{\"op\":\"ping\",\"request_id\":false}",
        "{\"op\":\"ping\",\"request_id\":null}",
    };
    static const char *const want[] = {"\"abc\"", "42", "-1.5", "true", "false", "null"};
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        proto_request r;
        decode_ok(lines[i], &r);
        assert_non_null(r.request_id);
        char *s = json_dumps(r.request_id, JSON_ENCODE_ANY | JSON_COMPACT);
        assert_non_null(s);
        assert_string_equal(s, want[i]);
        free(s);
        proto_request_free(&r);
    }
}

static void test_request_id_object_rejected(void **state) {
    (void)state;
    expect_bad("{\"op\":\"ping\",\"request_id\":{\"a\":1}}", "\"request_id\"");
    expect_bad("{\"op\":\"ping\",\"request_id\":[1]}", "\"request_id\"");
}

static void test_request_id_available_on_error(void **state) {
    (void)state;
    static const char *const lines[] = {
        "{\"op\":\"nope\",\"request_id\":7}",
        "{\"request_id\":7}",
        "{\"op\":5,\"request_id\":7}",
        "{\"op\":\"register\",\"service\":\"BAD\",\"port\":1,\"request_id\":7}",
        "{\"op\":\"register\",\"service\":\"a\",\"port\":0,\"request_id\":7}",
        "{\"op\":\"lookup\",\"request_id\":7}",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        proto_request r;
        char msg[PROTO_MSG_LEN];
        assert_int_equal(proto_decode(lines[i], strlen(lines[i]), &r, msg), RERR_BAD_REQUEST);
        assert_non_null(r.request_id);
        assert_int_equal(json_integer_value(r.request_id), 7);
        json_t *o = proto_error(RERR_BAD_REQUEST, msg, r.request_id);
        assert_non_null(o);
        assert_int_equal(json_integer_value(json_object_get(o, "request_id")), 7);
        json_decref(o);
        proto_request_free(&r);
    }
}

/* A ping line padded with a string to exactly n bytes. */
static char *line_of(size_t n) {
    static const char pre[] = "{\"op\":\"ping\",\"pad\":\"", post[] = "\"}";
    size_t fixed = sizeof(pre) - 1 + sizeof(post) - 1;
    assert_true(n > fixed);
    char *l = malloc(n + 1);
    assert_non_null(l);
    memcpy(l, pre, sizeof(pre) - 1);
    memset(l + sizeof(pre) - 1, 'p', n - fixed);
    memcpy(l + n - (sizeof(post) - 1), post, sizeof(post) - 1);
    l[n] = '\0';
    return l;
}

static void test_line_65535_bytes_ok(void **state) {
    (void)state;
    char *l = line_of(PROTO_MAX_LINE - 1);
    proto_request r;
    decode_ok_n(l, PROTO_MAX_LINE - 1, &r);
    assert_int_equal(r.r.op, OP_PING);
    proto_request_free(&r);
    free(l);
}

static void test_line_65536_bytes_too_large(void **state) {
    (void)state;
    char *l = line_of(PROTO_MAX_LINE);
    expect_err_n(l, PROTO_MAX_LINE, RERR_TOO_LARGE, "65536");
    free(l);
}

static void test_free_zeroed_request(void **state) {
    (void)state;
    proto_request r;
    memset(&r, 0, sizeof r);
    proto_request_free(&r);
    proto_request_free(&r);
    assert_null(r.root);
}

/* ---------------------------------------------------------------------------------- */
/* proto_frame                                                                         */

static void test_frame_line_found(void **state) {
    (void)state;
    size_t n = 99;
    assert_int_equal(proto_frame("abc\ndef\n", 8, &n), PROTO_FRAME_LINE);
    assert_int_equal(n, 3);
    assert_int_equal(proto_frame("\nx", 2, &n), PROTO_FRAME_LINE);
    assert_int_equal(n, 0);
}

static void test_frame_more(void **state) {
    (void)state;
    size_t n = 0;
    assert_int_equal(proto_frame("", 0, &n), PROTO_FRAME_MORE);
    assert_int_equal(proto_frame("{\"op\":", 6, &n), PROTO_FRAME_MORE);
    char *b = repeat('x', PROTO_MAX_LINE - 1);
    assert_int_equal(proto_frame(b, PROTO_MAX_LINE - 1, &n), PROTO_FRAME_MORE);
    free(b);
}

static void test_frame_max_line_fits(void **state) {
    (void)state;
    /* 65535 bytes + '\n' = 65536 bytes, the limit newline included: one line. */
    char *b = repeat('x', PROTO_MAX_LINE);
    b[PROTO_MAX_LINE - 1] = '\n';
    size_t n = 0;
    assert_int_equal(proto_frame(b, PROTO_MAX_LINE, &n), PROTO_FRAME_LINE);
    assert_int_equal(n, PROTO_MAX_LINE - 1);
    free(b);
}

static void test_frame_too_large_at_limit(void **state) {
    (void)state;
    /* 65536 bytes with no newline can never become a line that fits. */
    char *b = repeat('x', PROTO_MAX_LINE + 1);
    size_t n = 0;
    assert_int_equal(proto_frame(b, PROTO_MAX_LINE, &n), PROTO_FRAME_TOO_LARGE);
    /* ...nor can 65536 bytes followed by a newline. */
    b[PROTO_MAX_LINE] = '\n';
    assert_int_equal(proto_frame(b, PROTO_MAX_LINE + 1, &n), PROTO_FRAME_TOO_LARGE);
    free(b);
}

static void test_frame_newline_beyond_limit_is_too_large(void **state) {
    (void)state;
    size_t total = PROTO_MAX_LINE + 100;
    char *b = repeat('x', total);
    b[total - 1] = '\n';
    size_t n = 0;
    assert_int_equal(proto_frame(b, total, &n), PROTO_FRAME_TOO_LARGE);
    free(b);
}

/* ---------------------------------------------------------------------------------- */
/* proto_encode, proto_error, names                                                    */

static void test_encode_without_request_id(void **state) {
    (void)state;
    json_t *o = json_pack("{s:b, s:i}", "ok", 1, "port", 80);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    assert_int_equal(proto_encode(o, NULL, &buf, &len, &cap), 0);
    assert_int_equal(len, strlen("{\"ok\":true,\"port\":80}\n"));
    assert_memory_equal(buf, "{\"ok\":true,\"port\":80}\n", len);
    assert_true(cap >= len);
    assert_null(json_object_get(o, "request_id"));
    free(buf);
    json_decref(o);
}

static void test_encode_with_request_id(void **state) {
    (void)state;
    json_t *o = json_pack("{s:b}", "ok", 1);
    json_t *rid = json_string("q-1");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    assert_int_equal(proto_encode(o, rid, &buf, &len, &cap), 0);
    static const char want[] = "{\"ok\":true,\"request_id\":\"q-1\"}\n";
    assert_int_equal(len, sizeof(want) - 1);
    assert_memory_equal(buf, want, len);
    free(buf);
    json_decref(o);
    json_decref(rid);
}

static void test_encode_appends_and_grows(void **state) {
    (void)state;
    char *buf = malloc(4);
    assert_non_null(buf);
    memcpy(buf, "ab", 2);
    size_t len = 2, cap = 4;
    char *big = repeat('z', 5000);
    json_t *o = json_pack("{s:s}", "d", big);
    assert_int_equal(proto_encode(o, NULL, &buf, &len, &cap), 0);
    assert_int_equal(len, 2 + strlen("{\"d\":\"\"}\n") + 5000);
    assert_memory_equal(buf, "ab{\"d\":\"zzz", 11);
    assert_int_equal(buf[len - 1], '\n');
    json_t *p = json_pack("{s:i}", "n", 1);
    size_t before = len;
    assert_int_equal(proto_encode(p, NULL, &buf, &len, &cap), 0);
    assert_memory_equal(buf + before, "{\"n\":1}\n", 8);
    assert_int_equal(len, before + 8);
    free(buf);
    free(big);
    json_decref(o);
    json_decref(p);
}

static void test_error_shape(void **state) {
    (void)state;
    json_t *o = proto_error(RERR_NOT_FOUND, "no such service \"web\"", NULL);
    assert_non_null(o);
    assert_int_equal(json_object_size(o), 2);
    assert_true(json_is_false(json_object_get(o, "ok")));
    json_t *err = json_object_get(o, "error");
    assert_true(json_is_object(err));
    assert_int_equal(json_object_size(err), 2);
    assert_string_equal(jstr(err, "code"), "not_found");
    assert_string_equal(jstr(err, "message"), "no such service \"web\"");
    json_decref(o);
}

static void test_error_with_request_id(void **state) {
    (void)state;
    json_t *rid = json_integer(99);
    json_t *o = proto_error(RERR_BAD_REQUEST, "x", rid);
    assert_non_null(o);
    assert_int_equal(json_object_size(o), 3);
    assert_ptr_equal(json_object_get(o, "request_id"), rid); /* shared, not copied */
    char *buf = NULL;
    size_t len = 0, cap = 0;
    assert_int_equal(proto_encode(o, NULL, &buf, &len, &cap), 0);
    static const char want[] =
        "{\"ok\":false,\"error\":{\"code\":\"bad_request\",\"message\":\"x\"},\"request_id\":99}\n";
    assert_int_equal(len, sizeof(want) - 1);
    assert_memory_equal(buf, want, len);
    free(buf);
    json_decref(o);
    json_decref(rid);
}

static void test_error_codes_and_op_names(void **state) {
    (void)state;
    assert_string_equal(req_err_name(RERR_BAD_REQUEST), "bad_request");
    assert_string_equal(req_err_name(RERR_NOT_FOUND), "not_found");
    assert_string_equal(req_err_name(RERR_UNAUTHORIZED), "unauthorized");
    assert_string_equal(req_err_name(RERR_CONFLICT), "conflict");
    assert_string_equal(req_err_name(RERR_TOO_LARGE), "too_large");
    assert_string_equal(req_err_name(RERR_UNAVAILABLE), "unavailable");
    assert_string_equal(req_err_name(RERR_INTERNAL), "internal");
    assert_string_equal(req_err_name((req_err)1000), "internal");
    static const char *const ops[OP__COUNT] = {"register", "deregister", "heartbeat", "lookup",
                                               "list",     "ping",       "stats",     "events",
                                               "watch",    "maintenance"};
    for (int i = 0; i < OP__COUNT; i++) {
        assert_string_equal(req_op_name((req_op)i), ops[i]);
        /* ...and each name decodes to its op. */
        char line[128];
        snprintf(line, sizeof line, "{\"op\":\"%s\",\"service\":\"s\",\"port\":1,\"id\":\"i\",\"token\":\"t\","
                 "\"enable\":true}",
                 ops[i]);
        proto_request r;
        decode_ok(line, &r);
        assert_int_equal(r.r.op, i);
        proto_request_free(&r);
    }
    assert_string_equal(req_op_name(OP__COUNT), "?");
}

/* ---------------------------------------------------------------------------------- */
/* proto_memo: a memoized decode must be exactly what decoding gives                   */

/* Decodes line, offers it to the memo, and checks what the memo then returns: either
 * nothing, or the same lookup. Returns 1 when the memo answered. */
static int memo_round_trip(proto_memo *m, const char *line, size_t len) {
    proto_request r, mr;
    char msg[PROTO_MSG_LEN];
    req_err e = proto_decode(line, len, &r, msg);
    if (e == RERR_NONE)
        proto_memo_put(m, line, len, &r);
    int hit = proto_memo_get(m, line, len, &mr);
    if (hit) {
        if (e != RERR_NONE) {
            proto_request_free(&r);
            fail_msg("memo answered a line that does not decode: %.80s", line);
        }
        assert_int_equal(mr.r.op, r.r.op);
        assert_int_equal(mr.r.op, OP_LOOKUP);
        assert_null(mr.root);
        assert_null(mr.request_id);
        assert_null(mr.r.auth);
        assert_null(r.request_id);
        assert_null(r.r.auth);
        assert_string_equal(mr.r.service, r.r.service);
        if (r.r.tag == NULL)
            assert_null(mr.r.tag);
        else
            assert_string_equal(mr.r.tag, r.r.tag);
        assert_int_equal(mr.r.all, r.r.all);
        assert_int_equal(mr.page.on, r.page.on); /* a page is never memoized */
        proto_request_free(&mr); /* safe: it owns nothing */
    }
    proto_request_free(&r);
    return hit;
}

static int memo_round_trip_str(proto_memo *m, const char *line) {
    return memo_round_trip(m, line, strlen(line));
}

static void test_memo_plain_lookup_hits(void **state) {
    (void)state;
    proto_memo *m = proto_memo_new();
    assert_non_null(m);
    static const char line[] = "{\"op\":\"lookup\",\"service\":\"web\",\"tag\":\"eu\",\"all\":true}";
    proto_request mr;
    assert_int_equal(proto_memo_get(m, line, sizeof(line) - 1, &mr), 0); /* empty memo */
    assert_int_equal(memo_round_trip_str(m, line), 1);
    assert_int_equal(memo_round_trip_str(m, "{\"op\":\"lookup\",\"service\":\"db\"}"), 1);
    proto_memo_free(m);
    proto_memo_free(NULL);
}

static void test_memo_needs_identical_bytes(void **state) {
    (void)state;
    proto_memo *m = proto_memo_new();
    static const char line[] = "{\"op\":\"lookup\",\"service\":\"web\"}";
    assert_int_equal(memo_round_trip_str(m, line), 1);
    proto_request mr;
    static const char spaced[] = "{\"op\":\"lookup\", \"service\":\"web\"}";
    assert_int_equal(proto_memo_get(m, spaced, sizeof(spaced) - 1, &mr), 0);
    assert_int_equal(proto_memo_get(m, line, sizeof(line) - 2, &mr), 0); /* a prefix */
    assert_int_equal(proto_memo_get(m, line, 0, &mr), 0);
    proto_memo_free(m);
}

static void test_memo_skips_other_requests(void **state) {
    (void)state;
    proto_memo *m = proto_memo_new();
    static const char *const lines[] = {
        "{\"op\":\"ping\"}",
        "{\"op\":\"list\"}",
        "{\"op\":\"register\",\"service\":\"web\",\"port\":80}",
        "{\"op\":\"events\",\"service\":\"web\"}",
        "{\"op\":\"watch\",\"service\":\"web\"}",
        "{\"op\":\"lookup\",\"service\":\"web\",\"request_id\":1}",  /* echo differs per line */
        "{\"op\":\"lookup\",\"service\":\"web\",\"request_id\":null}",
        "{\"op\":\"lookup\",\"service\":\"web\",\"auth\":\"secret\"}", /* never kept */
        "{\"op\":\"lookup\",\"service\":\"Bad\"}",                  /* errors are not kept */
        "{\"op\":\"lookup\"}",
        "{\"op\":\"lookup\",\"service\":\"web\",\"limit\":5}",      /* pages are not kept */
        "{\"op\":\"lookup\",\"service\":\"web\",\"cursor\":\"0.ab\"}",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
        if (memo_round_trip_str(m, lines[i]) != 0)
            fail_msg("memo kept %s", lines[i]);
    proto_memo_free(m);
}

static void test_memo_long_lines_skipped(void **state) {
    (void)state;
    proto_memo *m = proto_memo_new();
    /* Pad with an ignored field to an exact length; short lines hit, long ones do not. */
    int hits_short = 0, hits_long = 0;
    for (size_t len = 40; len <= 400; len++) {
        static const char pre[] = "{\"op\":\"lookup\",\"service\":\"web\",\"x\":\"";
        char line[512];
        size_t pad = len - (sizeof(pre) - 1) - 2;
        memcpy(line, pre, sizeof(pre) - 1);
        memset(line + sizeof(pre) - 1, 'p', pad);
        memcpy(line + sizeof(pre) - 1 + pad, "\"}", 2);
        int hit = memo_round_trip(m, line, len);
        if (len <= 160)
            hits_short += hit;
        else
            hits_long += hit;
    }
    assert_true(hits_short > 0);
    assert_int_equal(hits_long, 0);
    proto_memo_free(m);
}

static void test_memo_long_tag_exact(void **state) {
    (void)state;
    proto_memo *m = proto_memo_new();
    assert_non_null(m);
    /* Tags up to REQ_TAG_MAX (255) bytes are valid in a lookup, but a memo slot holds
     * a tag of at most REQ_SERVICE_MAX (63) bytes. The rule (proto_memo_put): a lookup
     * whose tag fits is kept whole, one whose tag does not is not kept at all, even
     * when its line is short enough (tags 64..122 give lines under 160 bytes) --
     * never a truncated tag. So a hit must give back exactly the decoded request, and
     * a longer tag must miss, both for its own line and for lines that differ from a
     * kept one only near the end of the tag. */
    static const char fmt[] = "{\"op\":\"lookup\",\"service\":\"s\",\"tag\":\"%s\"}";
    for (size_t tlen = 1; tlen <= REQ_TAG_MAX; tlen++) {
        char *tag = repeat('t', tlen);
        size_t len;
        char *l = fmt_line(&len, fmt, tag);
        proto_request r, mr;
        char msg[PROTO_MSG_LEN];
        if (proto_decode(l, len, &r, msg) != RERR_NONE)
            fail_msg("a lookup with a %zu-byte tag does not decode: %s", tlen, msg);
        assert_non_null(r.r.tag);
        assert_int_equal(strlen(r.r.tag), tlen);
        proto_request_free(&r);

        /* Decode, offer, read back: memo_round_trip checks a hit field by field. */
        int hit = memo_round_trip(m, l, len);
        if (tlen <= REQ_SERVICE_MAX) {
            if (!hit)
                fail_msg("a lookup with a %zu-byte tag (<= %d) was not memoized", tlen,
                         REQ_SERVICE_MAX);
            assert_int_equal(proto_memo_get(m, l, len, &mr), 1);
            assert_non_null(mr.r.tag);
            assert_int_equal(strlen(mr.r.tag), tlen);
            assert_string_equal(mr.r.tag, tag);
            assert_string_equal(mr.r.service, "s");
            assert_int_equal(mr.r.all, 0);

            /* Similar lines, none of them offered to the memo: the same tag with its
             * last byte changed (same length), one byte longer, one byte shorter. */
            char *alt = repeat('t', tlen + 1);
            size_t alen;
            alt[tlen - 1] = 'u';
            alt[tlen] = '\0';
            char *al = fmt_line(&alen, fmt, alt);
            assert_int_equal(alen, len);
            assert_int_equal(proto_memo_get(m, al, alen, &mr), 0);
            free(al);
            memset(alt, 't', tlen + 1);
            alt[tlen + 1] = '\0';
            al = fmt_line(&alen, fmt, alt);
            assert_int_equal(proto_memo_get(m, al, alen, &mr), 0);
            free(al);
            alt[tlen - 1] = '\0';
            al = fmt_line(&alen, fmt, alt);
            if (tlen > 1) { /* the shorter line was kept one round ago, and may still be */
                if (proto_memo_get(m, al, alen, &mr)) {
                    assert_non_null(mr.r.tag);
                    assert_string_equal(mr.r.tag, alt);
                }
            } else {
                assert_int_equal(proto_memo_get(m, al, alen, &mr), 0); /* "tag":"" never offered */
            }
            free(al);
            free(alt);
        } else {
            if (hit)
                fail_msg("a lookup with a %zu-byte tag (> %d) was memoized", tlen,
                         REQ_SERVICE_MAX);
            assert_int_equal(proto_memo_get(m, l, len, &mr), 0);
        }
        free(l);
        free(tag);
    }
    /* Every line offered after the 63-byte tag was refused, and a refused line leaves
     * the memo as it was: the longest kept tag is still there, whole, and its one byte
     * longer neighbour still misses. */
    char *tag = repeat('t', REQ_SERVICE_MAX);
    size_t len;
    char *l = fmt_line(&len, fmt, tag);
    proto_request mr;
    assert_int_equal(proto_memo_get(m, l, len, &mr), 1);
    assert_string_equal(mr.r.tag, tag);
    free(l);
    free(tag);
    tag = repeat('t', REQ_SERVICE_MAX + 1);
    l = fmt_line(&len, fmt, tag);
    assert_int_equal(proto_memo_get(m, l, len, &mr), 0);
    free(l);
    free(tag);

    /* Lines that differ only in the last two bytes of a 63-byte tag, far more of them
     * than the memo has slots: many share a slot and replace each other. Whatever a
     * line gets back is its own tag, never a neighbour's. */
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    enum { A = sizeof(alphabet) - 1 };
    tag = repeat('t', REQ_SERVICE_MAX);
    for (int pass = 0; pass < 2; pass++) {
        int hits = 0;
        for (int i = 0; i < A * A; i++) {
            tag[REQ_SERVICE_MAX - 2] = alphabet[i / A];
            tag[REQ_SERVICE_MAX - 1] = alphabet[i % A];
            l = fmt_line(&len, fmt, tag);
            if (pass == 0) {
                assert_int_equal(memo_round_trip(m, l, len), 1);
            } else if (proto_memo_get(m, l, len, &mr)) {
                assert_non_null(mr.r.tag);
                assert_string_equal(mr.r.tag, tag);
                hits++;
            }
            free(l);
        }
        if (pass == 1)
            assert_true(hits > 0 && hits < A * A);
    }
    free(tag);
    proto_memo_free(m);
}

static void test_memo_many_lines_never_mixed(void **state) {
    (void)state;
    /* Far more lines than slots: lines that share a slot replace each other, and a
     * line is never answered with another line's request. */
    proto_memo *m = proto_memo_new();
    enum { N = 5000 };
    static char lines[N][64];
    for (int i = 0; i < N; i++) {
        snprintf(lines[i], sizeof lines[i], "{\"op\":\"lookup\",\"service\":\"svc-%d\"}", i);
        assert_int_equal(memo_round_trip_str(m, lines[i]), 1);
    }
    int hits = 0;
    for (int i = 0; i < N; i++) {
        proto_request mr;
        if (proto_memo_get(m, lines[i], strlen(lines[i]), &mr)) {
            char want[16];
            snprintf(want, sizeof want, "svc-%d", i);
            assert_string_equal(mr.r.service, want);
            hits++;
        }
    }
    assert_true(hits > 0 && hits < N);
    proto_memo_free(m);
}

static void test_memo_null_is_off(void **state) {
    (void)state;
    proto_request r, mr;
    char msg[PROTO_MSG_LEN];
    static const char line[] = "{\"op\":\"lookup\",\"service\":\"web\"}";
    assert_int_equal(proto_decode(line, sizeof(line) - 1, &r, msg), RERR_NONE);
    proto_memo_put(NULL, line, sizeof(line) - 1, &r);
    assert_int_equal(proto_memo_get(NULL, line, sizeof(line) - 1, &mr), 0);
    proto_request_free(&r);
}

/* ---------------------------------------------------------------------------------- */
/* Validators                                                                          */

static void test_valid_service_table(void **state) {
    (void)state;
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"a", 1},         {"web", 1},      {"0db", 1},      {"a.b_c-d", 1},  {"9", 1},
        {"a-", 1},        {"a.", 1},       {"", 0},         {"-a", 0},       {".a", 0},
        {"_a", 0},        {"A", 0},        {"aB", 0},       {"a b", 0},      {"a/b", 0},
        {"a:b", 0},       {"a\tb", 0},     {"caf\xc3\xa9", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (proto_valid_service(cases[i].s, strlen(cases[i].s)) != cases[i].ok)
            fail_msg("proto_valid_service(\"%s\") != %d", cases[i].s, cases[i].ok);
    }
    char *s = repeat('x', 63);
    assert_int_equal(proto_valid_service(s, 63), 1);
    free(s);
    s = repeat('x', 64);
    assert_int_equal(proto_valid_service(s, 64), 0);
    free(s);
    /* The length is what counts, not a NUL. */
    assert_int_equal(proto_valid_service("ab\0c", 4), 0);
    assert_int_equal(proto_valid_service("abXc", 2), 1);
}

static void test_valid_host_table(void **state) {
    (void)state;
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"127.0.0.1", 1},      {"10.1.2.3", 1},       {"::1", 1},           {"::", 1},
        {"fe80::1", 1},        {"2001:db8::1:2", 1},  {"::ffff:1.2.3.4", 1}, {"localhost", 1},
        {"Example.COM", 1},    {"a-b.c", 1},          {"a", 1},             {"1a", 1},
        {"example.com.", 1},   {"xn--bcher-kva.de", 1},
        {"", 0},               {"a..b", 0},           {".a", 0},            {"-a", 0},
        {"a-", 0},             {"a-.b", 0},           {"a b", 0},           {"a_b", 0},
        {"a/b", 0},            {"[::1]", 0},          {"1.2.3.4:80", 0},    {"h\xc3\xa9", 0},
        {"fe80::1%eth0", 0},   {"..", 0},             {".", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (proto_valid_host(cases[i].s, strlen(cases[i].s)) != cases[i].ok)
            fail_msg("proto_valid_host(\"%s\") != %d", cases[i].s, cases[i].ok);
    }
    /* Label of 63 ok, 64 not. */
    char *l = repeat('l', 64);
    assert_int_equal(proto_valid_host(l, 63), 1);
    assert_int_equal(proto_valid_host(l, 64), 0);
    free(l);
    /* Total 253 ok, 254 not (labels of 63). */
    char h[256];
    memset(h, 'h', sizeof h);
    h[63] = h[127] = h[191] = '.';
    assert_int_equal(proto_valid_host(h, 253), 1);
    assert_int_equal(proto_valid_host(h, 254), 0);
    assert_int_equal(proto_valid_host("ab\0c", 4), 0);
    assert_int_equal(proto_valid_host("abXc", 2), 1);
}

/* ---------------------------------------------------------------------------------- */
/* Fuzzer regressions                                                                  */

/* Every input a fuzzer ever crashed on goes through the decoder as the daemon uses it:
 * decode, build the reply (error or ok) echoing request_id, encode it. All files are
 * tried; the failures are listed together. */
static const char *replay_line(const char *name, const unsigned char *bytes, size_t n,
                               void *ud) {
    (void)name;
    (void)ud;
    static char why[6 * PROTO_MSG_LEN];
    const char *data = (const char *)bytes;
    proto_request r;
    char msg[PROTO_MSG_LEN], shown[4 * PROTO_MSG_LEN + 1];
    req_err err = proto_decode(data, n, &r, msg);
    json_t *resp = err == RERR_NONE ? json_pack("{s:b}", "ok", 1)
                                    : proto_error(err, msg, r.request_id);
    if (resp == NULL) {
        snprintf(why, sizeof why, "no reply could be built (%s: \"%s\")", req_err_name(err),
                 printable(msg, shown, sizeof shown));
        proto_request_free(&r);
        return why;
    }
    const char *bad = NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (proto_encode(resp, err == RERR_NONE ? r.request_id : NULL, &buf, &len, &cap) != 0 ||
        len == 0 || memchr(buf, '\n', len - 1) != NULL)
        bad = "the reply does not encode as one line";
    free(buf);
    json_decref(resp);
    proto_request_free(&r);
    return bad;
}

static void test_fuzz_regressions(void **state) {
    (void)state;
    /* (regress/dns/ and the other folders hold the other targets' inputs: skipped) */
    regress_replay(REGRESS_DIR, PROTO_MAX_LINE * 2, 0, replay_line, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_all_fields),
        cmocka_unit_test(test_register_defaults),
        cmocka_unit_test(test_register_token_and_admin),
        cmocka_unit_test(test_register_check_tcp_explicit),
        cmocka_unit_test(test_register_null_optionals_are_defaults),
        cmocka_unit_test(test_register_port_edges),
        cmocka_unit_test(test_register_ttl_edges),
        cmocka_unit_test(test_register_wildcard_hosts_mean_peer),
        cmocka_unit_test(test_register_hosts_accepted),
        cmocka_unit_test(test_register_32_tags_ok),
        cmocka_unit_test(test_register_description_1024_bytes_ok),
        cmocka_unit_test(test_register_description_multibyte_counts_bytes),
        cmocka_unit_test(test_deregister),
        cmocka_unit_test(test_heartbeat),
        cmocka_unit_test(test_owner_ops_need_id_and_token),
        cmocka_unit_test(test_lookup_defaults),
        cmocka_unit_test(test_lookup_tag_and_all),
        cmocka_unit_test(test_lookup_needs_service),
        cmocka_unit_test(test_page_absent_means_everything),
        cmocka_unit_test(test_page_list_limit_and_cursor),
        cmocka_unit_test(test_page_lookup_limit_and_cursor),
        cmocka_unit_test(test_page_bad_limit),
        cmocka_unit_test(test_page_bad_cursor),
        cmocka_unit_test(test_page_fields_ignored_elsewhere),
        cmocka_unit_test(test_simple_ops),
        cmocka_unit_test(test_events_defaults),
        cmocka_unit_test(test_events_fields),
        cmocka_unit_test(test_watch),
        cmocka_unit_test(test_unknown_fields_ignored),
        cmocka_unit_test(test_auth_any_op),
        cmocka_unit_test(test_crlf_tolerated),
        cmocka_unit_test(test_valid_utf8_accepted),
        cmocka_unit_test(test_brackets_inside_strings_are_not_nesting),
        cmocka_unit_test(test_bad_invalid_json),
        cmocka_unit_test(test_bad_not_object),
        cmocka_unit_test(test_bad_missing_op),
        cmocka_unit_test(test_bad_op_not_string),
        cmocka_unit_test(test_bad_unknown_op),
        cmocka_unit_test(test_bad_unknown_op_message_is_valid_utf8),
        cmocka_unit_test(test_bad_json_message_is_valid_utf8),
        cmocka_unit_test(test_bad_op_too_long),
        cmocka_unit_test(test_bad_port_types),
        cmocka_unit_test(test_bad_port_missing),
        cmocka_unit_test(test_bad_port_range),
        cmocka_unit_test(test_bad_ttl_type),
        cmocka_unit_test(test_bad_tags_not_array),
        cmocka_unit_test(test_bad_tag_not_string),
        cmocka_unit_test(test_bad_tag_too_long),
        cmocka_unit_test(test_bad_too_many_tags),
        cmocka_unit_test(test_bad_all_not_bool),
        cmocka_unit_test(test_bad_tag_filter_type),
        cmocka_unit_test(test_bad_check_value),
        cmocka_unit_test(test_bad_service_missing_or_type),
        cmocka_unit_test(test_service_63_ok_64_too_long),
        cmocka_unit_test(test_bad_service_chars),
        cmocka_unit_test(test_bad_host_too_long),
        cmocka_unit_test(test_bad_host_invalid),
        cmocka_unit_test(test_bad_host_empty),
        cmocka_unit_test(test_bad_description_too_long),
        cmocka_unit_test(test_bad_nul_byte_in_line),
        cmocka_unit_test(test_bad_escaped_nul_in_string),
        cmocka_unit_test(test_bad_utf8),
        cmocka_unit_test(test_bad_utf8_in_key),
        cmocka_unit_test(test_nesting_32_ok),
        cmocka_unit_test(test_nesting_33_rejected),
        cmocka_unit_test(test_nesting_objects_33_rejected),
        cmocka_unit_test(test_nesting_10000_brackets),
        cmocka_unit_test(test_request_id_scalars_echoed),
        cmocka_unit_test(test_request_id_object_rejected),
        cmocka_unit_test(test_request_id_available_on_error),
        cmocka_unit_test(test_line_65535_bytes_ok),
        cmocka_unit_test(test_line_65536_bytes_too_large),
        cmocka_unit_test(test_free_zeroed_request),
        cmocka_unit_test(test_frame_line_found),
        cmocka_unit_test(test_frame_more),
        cmocka_unit_test(test_frame_max_line_fits),
        cmocka_unit_test(test_frame_too_large_at_limit),
        cmocka_unit_test(test_frame_newline_beyond_limit_is_too_large),
        cmocka_unit_test(test_encode_without_request_id),
        cmocka_unit_test(test_encode_with_request_id),
        cmocka_unit_test(test_encode_appends_and_grows),
        cmocka_unit_test(test_error_shape),
        cmocka_unit_test(test_error_with_request_id),
        cmocka_unit_test(test_error_codes_and_op_names),
        cmocka_unit_test(test_memo_plain_lookup_hits),
        cmocka_unit_test(test_memo_needs_identical_bytes),
        cmocka_unit_test(test_memo_skips_other_requests),
        cmocka_unit_test(test_memo_long_lines_skipped),
        cmocka_unit_test(test_memo_long_tag_exact),
        cmocka_unit_test(test_memo_many_lines_never_mixed),
        cmocka_unit_test(test_memo_null_is_off),
        cmocka_unit_test(test_valid_service_table),
        cmocka_unit_test(test_valid_host_table),
        cmocka_unit_test(test_fuzz_regressions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
