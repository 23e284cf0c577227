/* SPDX-License-Identifier: BSD-2-Clause */
/* test_etcd_json.c — the etcd backend's codec (registry/store/etcd_json.c), alone: base64
 * both ways, the values kept under the registry's keys, the gateway's errors, and the
 * framing of the watch stream, which chunks split and join as they like.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "store/etcd_int.h"
#include "regress_dir.h"

#define REGRESS_DIR "tests/fuzz/regress/etcd"

static void test_base64_round_trip(void **state) {
    (void)state;
    const char *in[] = {"", "a", "ab", "abc", "abcd", "/registry/instances/0123456789abcdef"};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        char *b = etcd_b64(in[i], strlen(in[i]));
        assert_non_null(b);
        size_t n = 99;
        char *back = etcd_unb64(b, &n);
        assert_non_null(back);
        assert_int_equal(n, strlen(in[i]));
        assert_memory_equal(back, in[i], n);
        assert_int_equal(back[n], '\0');
        free(b);
        free(back);
    }
    /* bytes that are no text: a NUL inside survives */
    char *b = etcd_b64("a\0b", 3);
    size_t n;
    char *back = etcd_unb64(b, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(back, "a\0b", 3);
    free(b);
    free(back);
    /* not base64: refused, not guessed */
    assert_null(etcd_unb64("abc", &n));
    assert_null(etcd_unb64("a$c=", &n));
}

static void test_integers_and_errors(void **state) {
    (void)state;
    json_t *o = json_loads("{\"a\":\"123456789012\",\"b\":7,\"c\":\"x\"}", 0, NULL);
    assert_int_equal(etcd_int(o, "a"), 123456789012LL);
    assert_int_equal(etcd_int(o, "b"), 7);
    assert_int_equal(etcd_int(o, "missing"), 0);
    assert_null(etcd_reply_error(o));
    json_decref(o);
    o = json_loads("{\"error\":\"etcdserver: no leader\",\"code\":14,\"message\":\"x\"}", 0, NULL);
    assert_string_equal(etcd_reply_error(o), "etcdserver: no leader");
    assert_true(etcd_retryable(o));
    json_decref(o);
    o = json_loads("{\"error\":\"etcdserver: duplicate key given in txn request\",\"code\":3}",
                   0, NULL);
    assert_false(etcd_retryable(o));
    json_decref(o);
}

static void test_instance_round_trip(void **state) {
    (void)state;
    store_instance in = {.port = 8080, .ttl = 30, .check = STORE_CHECK_NONE,
                         .registered_at = 1764547200123LL, .last_seen = 5, .last_check = 6,
                         .status = STORE_CRITICAL, .failures = 2, .maintenance = 1};
    strcpy(in.id, "web-1");
    in.service = "web";
    in.host = "::1";
    in.description = "a \"quoted\" one\n";
    in.tags_json = "[\"a\",\"b\"]";
    for (int i = 0; i < STORE_HASH_LEN; i++)
        in.token_hash[i] = (unsigned char)(i * 7);
    json_t *v = etcd_inst_json(&in, 4242);
    char *text = json_dumps(v, JSON_COMPACT);
    store_instance out;
    json_t *keep;
    assert_int_equal(etcd_inst_parse(text, strlen(text), &out, &keep), 0);
    assert_string_equal(out.id, "web-1");
    assert_string_equal(out.service, "web");
    assert_string_equal(out.host, "::1");
    assert_string_equal(out.description, in.description);
    assert_string_equal(out.tags_json, in.tags_json);
    assert_int_equal(out.port, 8080);
    assert_int_equal(out.ttl, 30);
    assert_int_equal(out.check, STORE_CHECK_NONE);
    assert_int_equal(out.registered_at, in.registered_at);
    assert_int_equal(out.last_seen, 5);
    assert_int_equal(out.last_check, 6);
    assert_int_equal(out.status, STORE_CRITICAL);
    assert_int_equal(out.failures, 2);
    assert_int_equal(out.maintenance, 1);
    assert_memory_equal(out.token_hash, in.token_hash, STORE_HASH_LEN);
    assert_int_equal(etcd_ord_of(text, strlen(text)), 4242);
    json_decref(keep);
    free(text);
    json_decref(v);
    /* what is not an instance of ours is refused */
    const char *bad[] = {"", "[]", "{}", "{\"id\":\"x\"}", "not json",
                         "{\"id\":\"x\",\"service\":\"s\",\"host\":\"h\",\"description\":\"\","
                         "\"tags\":\"[]\",\"token\":\"zz\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(etcd_inst_parse(bad[i], strlen(bad[i]), &out, &keep), -1);
        json_decref(keep);
    }
}

static void test_event_round_trip(void **state) {
    (void)state;
    store_event ev = {.seq = 77, .ts = 1764547200999LL, .event = "register", .service = "web",
                      .id = "web-1", .host = "127.0.0.1", .port = 80,
                      .detail = "{\"node\":\"n1\"}"};
    json_t *v = etcd_event_json(&ev, "n1");
    char *text = json_dumps(v, JSON_COMPACT);
    store_event out;
    json_t *keep;
    assert_int_equal(etcd_event_parse(text, strlen(text), &out, &keep), 0);
    assert_int_equal(out.seq, 77);
    assert_int_equal(out.ts, ev.ts);
    assert_string_equal(out.event, "register");
    assert_string_equal(out.service, "web");
    assert_string_equal(out.id, "web-1");
    assert_string_equal(out.host, "127.0.0.1");
    assert_int_equal(out.port, 80);
    assert_string_equal(out.detail, ev.detail);
    json_decref(keep);
    free(text);
    json_decref(v);
    /* an event without a seq or a name is none */
    assert_int_equal(etcd_event_parse("{\"event\":\"x\"}", 13, &out, &keep), -1);
    json_decref(keep);
}

/* --- the framer ------------------------------------------------------------------------ */

typedef struct got {
    char *all;                      /* the objects delivered, each followed by '|' */
    size_t len;
    int stop_after;                 /* return 1 after this many (0: never) */
    int n;
} got;

static int collect(void *ud, const char *p, size_t n) {
    got *g = ud;
    g->all = realloc(g->all, g->len + n + 2);
    memcpy(g->all + g->len, p, n);
    g->len += n;
    g->all[g->len++] = '|';
    g->all[g->len] = '\0';
    g->n++;
    return g->stop_after && g->n == g->stop_after;
}

static const char stream[] =
    "{\"result\":{\"header\":{\"revision\":\"4\"},\"created\":true}}\n"
    "{\"result\":{\"events\":[{\"kv\":{\"key\":\"a2V5\",\"value\":\"e30=\"}}]}}\r\n"
    "{\"s\":\"braces { } and \\\" quotes \\\\\",\"t\":\"}\"}"
    "{\"u\":{\"v\":{\"w\":[{},{}]}}}";

static const char want[] =
    "{\"result\":{\"header\":{\"revision\":\"4\"},\"created\":true}}|"
    "{\"result\":{\"events\":[{\"kv\":{\"key\":\"a2V5\",\"value\":\"e30=\"}}]}}|"
    "{\"s\":\"braces { } and \\\" quotes \\\\\",\"t\":\"}\"}|"
    "{\"u\":{\"v\":{\"w\":[{},{}]}}}|";

static void test_frame_whole_and_byte_by_byte(void **state) {
    (void)state;
    etcd_frame f = {0};
    got g = {0};
    assert_int_equal(etcd_frame_feed(&f, stream, strlen(stream), collect, &g), 0);
    assert_string_equal(g.all, want);
    assert_int_equal(f.buf.len, 0);
    free(g.all);
    memset(&g, 0, sizeof g);
    etcd_frame_reset(&f);
    for (size_t i = 0; i < strlen(stream); i++)
        assert_int_equal(etcd_frame_feed(&f, stream + i, 1, collect, &g), 0);
    assert_string_equal(g.all, want);
    free(g.all);
    etcd_frame_free(&f);
}

/* Every way of cutting the stream in chunks of random sizes gives the same objects. */
static void test_frame_random_chunks(void **state) {
    (void)state;
    unsigned seed = 12345;
    for (int round = 0; round < 2000; round++) {
        etcd_frame f = {0};
        got g = {0};
        size_t len = strlen(stream), off = 0;
        while (off < len) {
            seed = seed * 1103515245u + 12345u;
            size_t k = 1 + (seed >> 16) % 40;
            if (k > len - off)
                k = len - off;
            assert_int_equal(etcd_frame_feed(&f, stream + off, k, collect, &g), 0);
            off += k;
        }
        assert_string_equal(g.all, want);
        free(g.all);
        etcd_frame_free(&f);
    }
}

/* A callback that says stop ends the feed at that object; the rest waits, whole. */
static void test_frame_stop(void **state) {
    (void)state;
    etcd_frame f = {0};
    got g = {.stop_after = 2};
    assert_int_equal(etcd_frame_feed(&f, stream, strlen(stream), collect, &g), 1);
    assert_int_equal(g.n, 2);
    g.stop_after = 0;
    assert_int_equal(etcd_frame_feed(&f, "", 0, collect, &g), 0);
    assert_string_equal(g.all, want);
    free(g.all);
    etcd_frame_free(&f);
}

/* Every input fuzz_etcd ever crashed on, fed as it fed it (first byte: the read size). */
static const char *replay_etcd(const char *name, const unsigned char *data, size_t n,
                               void *ud) {
    (void)name;
    (void)ud;
    size_t step = n > 0 ? data[0] % 16 + 1 : 1;
    const char *p = (const char *)data + (n > 0);
    size_t len = n > 0 ? n - 1 : 0;
    etcd_frame whole = {0}, cut = {0};
    got a = {0}, b = {0};
    int rc = etcd_frame_feed(&whole, p, len, collect, &a);
    for (size_t off = 0; rc == 0 && off < len; off += step)
        rc = etcd_frame_feed(&cut, p + off, len - off < step ? len - off : step, collect, &b);
    const char *why = rc != 0 ? "the framer failed"
                      : a.len != b.len || (a.len && memcmp(a.all, b.all, a.len) != 0)
                          ? "framed differently whole and cut"
                          : NULL;
    free(a.all);
    free(b.all);
    etcd_frame_free(&whole);
    etcd_frame_free(&cut);
    return why;
}

static void test_fuzz_regressions(void **state) {
    (void)state;
    regress_replay(REGRESS_DIR, 65536, 1, replay_etcd, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_round_trip),
        cmocka_unit_test(test_integers_and_errors),
        cmocka_unit_test(test_instance_round_trip),
        cmocka_unit_test(test_event_round_trip),
        cmocka_unit_test(test_frame_whole_and_byte_by_byte),
        cmocka_unit_test(test_frame_random_chunks),
        cmocka_unit_test(test_frame_stop),
        cmocka_unit_test(test_fuzz_regressions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
