/* SPDX-License-Identifier: BSD-2-Clause */
/* fuzz_decode.c — libFuzzer target for the request decoder/validator (registry/front/line/proto.c).
 *
 * Each input is one request line (without its newline), as the daemon hands it to
 * proto_decode. The target then does what the daemon does with the result: an error
 * becomes proto_error(code, msg, request_id), a success an {"ok":true,...} answer that
 * echoes request_id, and the answer goes through proto_encode. Beyond "no crash, no
 * leak, no undefined behaviour" (ASan/UBSan/LeakSanitizer), it checks the decoder's
 * promises: a validated request only holds values the protocol allows, every error has
 * a message that can be sent (valid UTF-8: otherwise proto_error returns NULL and the
 * daemon drops the connection instead of answering), and every encoded answer is one
 * JSON object on one line carrying the request_id unchanged. It also offers every
 * decoded request to a decode memo (proto_memo, as line.c does) and checks that a
 * memo hit is exactly what decoding gives.
 *
 * Build and run: make fuzz (or tests/fuzz/run.sh SECONDS).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "front/line/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken promise: say which one (libFuzzer saves the input), then crash. */
#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "fuzz_decode: check failed: %s (%s:%d)\n", #cond, __FILE__,    \
                    __LINE__);                                                             \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

static int valid_cstr(const char *s, size_t max) {
    return s != NULL && strlen(s) <= max;
}

/* Nesting depth of a decoded value (a scalar is 0, [] is 1). */
static int depth(json_t *v) {
    int max = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *m;
        json_object_foreach(v, k, m) {
            int d = depth(m);
            max = d > max ? d : max;
        }
        return max + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m) {
            int d = depth(m);
            max = d > max ? d : max;
        }
        return max + 1;
    }
    return 0;
}

/* The fields of a successfully decoded request are within the protocol's limits. */
static void check_request(const proto_request *r, const uint8_t *data, size_t size) {
    CHECK(size < PROTO_MAX_LINE);
    CHECK(memchr(data, '\0', size) == NULL);
    CHECK(json_is_object(r->root));
    CHECK(depth(r->root) <= PROTO_MAX_DEPTH);
    CHECK((unsigned)r->r.op < OP__COUNT);
    CHECK(r->request_id == NULL || (!json_is_object(r->request_id) && !json_is_array(r->request_id)));
    CHECK(r->r.auth == NULL || valid_cstr(r->r.auth, 4096));
    switch (r->r.op) {
    case OP_REGISTER:
        CHECK(r->r.service != NULL && proto_valid_service(r->r.service, strlen(r->r.service)));
        CHECK(r->r.host == NULL || proto_valid_host(r->r.host, strlen(r->r.host)));
        CHECK(r->r.host == NULL || (strcmp(r->r.host, "0.0.0.0") != 0 && strcmp(r->r.host, "::") != 0));
        CHECK(r->r.port >= 1 && r->r.port <= 65535);
        CHECK(valid_cstr(r->r.description, REQ_DESC_MAX));
        CHECK(r->r.tags == NULL || (json_is_array(r->r.tags) && json_array_size(r->r.tags) <= REQ_TAGS_MAX));
        if (r->r.tags != NULL) {
            size_t i;
            json_t *t;
            json_array_foreach(r->r.tags, i, t) {
                CHECK(json_is_string(t));
                CHECK(json_string_length(t) >= 1 && json_string_length(t) <= REQ_TAG_MAX);
                CHECK(strlen(json_string_value(t)) == json_string_length(t));
            }
        }
        CHECK(r->r.ttl >= 0 && r->r.ttl <= REQ_TTL_MAX);
        CHECK(r->r.check == REQ_CHECK_TCP || r->r.check == REQ_CHECK_NONE);
        break;
    case OP_DEREGISTER:
    case OP_HEARTBEAT:
        CHECK(r->r.id != NULL && r->r.token != NULL);
        break;
    case OP_LOOKUP:
        CHECK(r->r.service != NULL && proto_valid_service(r->r.service, strlen(r->r.service)));
        CHECK(r->r.tag == NULL || valid_cstr(r->r.tag, REQ_TAG_MAX));
        CHECK(r->r.all == 0 || r->r.all == 1);
        break;
    case OP_EVENTS:
        CHECK(r->r.since >= 0);
        CHECK(r->r.limit >= 1 && r->r.limit <= REQ_EVENTS_LIMIT);
        /* fall through: events and watch take an optional service */
    case OP_WATCH:
        CHECK(r->r.service == NULL || proto_valid_service(r->r.service, strlen(r->r.service)));
        break;
    default:
        break;
    }
}

/* The answer encodes as one compact JSON object on one line, request_id echoed. */
static void check_encoded(const char *buf, size_t len, const json_t *request_id) {
    CHECK(len >= 2 && buf[len - 1] == '\n');
    CHECK(memchr(buf, '\n', len - 1) == NULL);
    json_error_t jerr;
    json_t *back = json_loadb(buf, len - 1, 0, &jerr);
    CHECK(back != NULL && json_is_object(back));
    json_t *rid = json_object_get(back, "request_id");
    CHECK(request_id == NULL ? rid == NULL : json_equal(rid, (json_t *)request_id));
    json_decref(back);
}

static int same_str(const char *a, const char *b) {
    return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

/* The memo must answer a line with what decoding it gives, or not at all. One memo for
 * the whole run, as the daemon keeps one: its state carries across inputs, but the
 * property checked does not depend on that state. */
static void check_memo(const uint8_t *data, size_t size, req_err e, const proto_request *r) {
    static proto_memo *memo;
    if (memo == NULL)
        CHECK((memo = proto_memo_new()) != NULL);
    const char *line = (const char *)data;
    proto_request m;
    for (int round = 0; round < 2; round++) {
        if (proto_memo_get(memo, line, size, &m)) {
            CHECK(e == RERR_NONE);
            CHECK(m.r.op == r->r.op && m.r.op == OP_LOOKUP);
            CHECK(m.root == NULL && m.request_id == NULL && r->request_id == NULL);
            CHECK(m.r.auth == NULL && r->r.auth == NULL);
            CHECK(same_str(m.r.service, r->r.service));
            CHECK(same_str(m.r.tag, r->r.tag));
            CHECK(m.r.all == r->r.all);
            CHECK(m.page.on == 0 && r->page.on == 0); /* paged lookups are not memoized */
            proto_request_free(&m);
        }
        if (round == 0 && e == RERR_NONE)
            proto_memo_put(memo, line, size, r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    proto_request r;
    char msg[PROTO_MSG_LEN];
    memset(msg, 'x', sizeof msg); /* the decoder must terminate it */
    req_err e = proto_decode((const char *)data, size, &r, msg);
    CHECK(memchr(msg, '\0', sizeof msg) != NULL);

    json_t *resp;
    json_t *echo; /* what proto_encode adds */
    if (e == RERR_NONE) {
        check_request(&r, data, size);
        resp = json_pack("{s:b, s:s}", "ok", 1, "op", req_op_name(r.r.op));
        CHECK(resp != NULL);
        echo = r.request_id;
    } else {
        CHECK(e == RERR_BAD_REQUEST || e == RERR_TOO_LARGE);
        CHECK((e == RERR_TOO_LARGE) == (size >= PROTO_MAX_LINE));
        CHECK(msg[0] != '\0');
        CHECK(r.request_id == NULL || r.root != NULL);
        /* As the daemon answers it (line.c put_error). */
        resp = proto_error(e, msg, r.request_id);
        if (resp == NULL)
            fprintf(stderr, "fuzz_decode: proto_error() refused the message \"%s\"\n", msg);
        CHECK(resp != NULL);
        echo = NULL;
    }

    check_memo(data, size, e, &r);

    char *buf = NULL;
    size_t len = 0, cap = 0;
    CHECK(proto_encode(resp, echo, &buf, &len, &cap) == 0);
    CHECK(len <= cap);
    check_encoded(buf, len, r.request_id);

    free(buf);
    json_decref(resp);
    proto_request_free(&r);
    CHECK(r.root == NULL);
    return 0;
}
