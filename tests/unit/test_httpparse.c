/* SPDX-License-Identifier: BSD-2-Clause */
/* test_httpparse.c — the HTTP front-end's wire boundary (registry/front/http/parse.c):
 * pipelined requests, byte-at-a-time reads, our limits (431, 413), target decoding, the
 * headers we keep, HTTP/0.9; and the replay of every fuzzer-found input in
 * tests/fuzz/regress/http/. Pure: no socket, no loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "front/http/parse.h"
#include "regress_dir.h"

#define REGRESS_DIR "tests/fuzz/regress/http"

typedef struct got {
    int nreq, err;
    char paths[8][128];
    char tokens[8][64];
    size_t bodies[8];
    int64_t leid[8];
    int keep_alive[8];
    char msg[160];
} got;

/* Feeds s in reads of step bytes (0: whole), as a connection would. */
static void feed(const char *s, size_t len, size_t step, size_t max_header, size_t max_body,
                 got *g) {
    hparse h;
    http_req r;
    memset(g, 0, sizeof(*g));
    memset(&r, 0, sizeof(r));
    hparse_init(&h, max_header, max_body);
    size_t off = 0, avail = 0;
    while (off < len) {
        avail = step == 0 || avail + step > len ? len : avail + step;
        while (off < avail) {
            size_t used;
            int status;
            int rc = hparse_feed(&h, s + off, avail - off, &used, &status, g->msg, sizeof(g->msg));
            off += used;
            if (rc == HP_ERROR) {
                g->err = status;
                goto done;
            }
            if (rc == HP_MORE)
                break;
            int st = hparse_request(&h, &r, g->msg, sizeof(g->msg));
            if (st != 0) {
                g->err = st;
                goto done;
            }
            if (g->nreq < 8) {
                snprintf(g->paths[g->nreq], sizeof(g->paths[0]), "%s", r.path);
                snprintf(g->tokens[g->nreq], sizeof(g->tokens[0]), "%s", r.token ? r.token : "");
                g->bodies[g->nreq] = r.body_len;
                g->leid[g->nreq] = r.last_event_id;
                g->keep_alive[g->nreq] = h.keep_alive;
            }
            g->nreq++;
        }
    }
done:
    hreq_clear(&r);
    hparse_free(&h);
}

static void test_pipeline_in_any_reads(void **state) {
    (void)state;
    static const char in[] = "GET /v1/agent/self HTTP/1.1\r\nHost: a\r\n\r\n"
                             "PUT /v1/agent/service/register HTTP/1.1\r\nContent-Length: 5\r\n"
                             "X-Consul-Token: s3cret\r\n\r\n{\"a\":"
                             "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                             "GET /api/events/stream HTTP/1.0\r\nLast-Event-ID: 42\r\n\r\n";
    for (size_t step = 0; step < 9; step++) {
        got g;
        feed(in, sizeof(in) - 1, step, 4096, 4096, &g);
        assert_int_equal(g.err, 0);
        assert_int_equal(g.nreq, 4);
        assert_string_equal(g.paths[0], "/v1/agent/self");
        assert_string_equal(g.paths[1], "/v1/agent/service/register");
        assert_string_equal(g.tokens[1], "s3cret");
        assert_int_equal(g.bodies[1], 5);
        assert_int_equal(g.bodies[2], 5); /* chunked, joined */
        assert_int_equal(g.leid[3], 42);
        assert_int_equal(g.leid[0], -1);
        assert_true(g.keep_alive[0]);
        assert_false(g.keep_alive[3]); /* HTTP/1.0 without keep-alive */
    }
}

static void test_limits(void **state) {
    (void)state;
    char big[8192];
    int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX-A: ");
    memset(big + n, 'a', 3000);
    memcpy(big + n + 3000, "\r\n\r\n", 4);
    got g;
    feed(big, (size_t)n + 3004, 0, 2048, 100, &g);
    assert_int_equal(g.err, 431);
    assert_non_null(strstr(g.msg, "2048"));
    feed(big, (size_t)n + 3004, 7, 2048, 100, &g);
    assert_int_equal(g.err, 431);

    static const char body[] = "PUT /x HTTP/1.1\r\nContent-Length: 101\r\n\r\n";
    feed(body, sizeof(body) - 1, 0, 2048, 100, &g);
    assert_int_equal(g.err, 413);
    static const char chunked[] = "PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  "64\r\n";
    char cb[512];
    int m = snprintf(cb, sizeof(cb), "%s", chunked);
    memset(cb + m, 'b', 100);
    memcpy(cb + m + 100, "\r\n1\r\nc\r\n0\r\n\r\n", 13);
    feed(cb, (size_t)m + 113, 3, 2048, 100, &g); /* 101 bytes in two chunks */
    assert_int_equal(g.err, 413);
}

static void test_refusals(void **state) {
    (void)state;
    got g;
    static const char *const bad400[] = {
        "GET /\r\n\r\n",                                          /* HTTP/0.9: no version */
        "GET /v1/catalog/service/we%00b HTTP/1.1\r\n\r\n",        /* NUL */
        "GET /api/../metrics HTTP/1.1\r\n\r\n",                   /* .. */
        "GET /a/.. HTTP/1.1\r\n\r\n",
        "GET /x%zz HTTP/1.1\r\n\r\n",                             /* bad escape */
        "GET /x?a=%00 HTTP/1.1\r\n\r\n",
        "PUT /x HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        "PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "GET /x HTTP/1.1\r\nLast-Event-ID: nope\r\n\r\n",
        "GET /x HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad400) / sizeof(bad400[0]); i++) {
        feed(bad400[i], strlen(bad400[i]), 0, 4096, 4096, &g);
        if (g.err != 400)
            fail_msg("%s: %d, not 400", bad400[i], g.err);
        assert_true(g.msg[0] != '\0');
    }
    /* ".." inside a name is not a segment. */
    feed("GET /api/services/a..b HTTP/1.1\r\n\r\n", 35, 0, 4096, 4096, &g);
    assert_int_equal(g.err, 0);
    assert_string_equal(g.paths[0], "/api/services/a..b");
}

static void test_query(void **state) {
    (void)state;
    hparse h;
    http_req r;
    char msg[160];
    size_t used;
    int status;
    static const char in[] =
        "GET /v1/health/service/web?passing&tag=a&tag=b%2Bc&wait=120000ms&token=x+y HTTP/1.1\r\n\r\n";
    memset(&r, 0, sizeof(r));
    hparse_init(&h, 4096, 4096);
    assert_int_equal(hparse_feed(&h, in, sizeof(in) - 1, &used, &status, msg, sizeof(msg)),
                     HP_REQUEST);
    assert_int_equal(hparse_request(&h, &r, msg, sizeof(msg)), 0);
    assert_string_equal(r.path, "/v1/health/service/web");
    assert_int_equal(r.nq, 5);
    assert_string_equal(hreq_query(&r, "passing"), "");
    assert_string_equal(hreq_query(&r, "tag"), "a");
    assert_string_equal(r.qv[2], "b+c");
    assert_string_equal(r.token, "x y"); /* ?token= when no header */
    assert_null(hreq_query(&r, "index"));
    hreq_clear(&r);
    hparse_free(&h);
}

/* Every input the fuzzer ever failed on goes through the parser as the server feeds it,
 * whole and in 3-byte reads. */
static const char *replay_http(const char *name, const unsigned char *data, size_t n,
                               void *ud) {
    (void)name;
    (void)ud;
    got a, b;
    const char *s = (const char *)data + (n > 0);
    feed(s, n > 0 ? n - 1 : 0, 0, 2048, 4096, &a);
    feed(s, n > 0 ? n - 1 : 0, 3, 2048, 4096, &b);
    if (a.nreq != b.nreq)
        return "a different number of requests whole and in reads of 3 bytes";
    if ((a.err != 0) != (b.err != 0))
        return "an error whole and none in reads of 3 bytes, or the other way round";
    return NULL;
}

static void test_fuzz_regressions(void **state) {
    (void)state;
    regress_replay(REGRESS_DIR, 65536, 1, replay_http, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline_in_any_reads),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_fuzz_regressions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
