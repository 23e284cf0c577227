/* SPDX-License-Identifier: BSD-2-Clause */
/* fuzz_http.c — libFuzzer target for the HTTP front-end's boundary with the wire
 * (registry/front/http/parse.c over http-parser).
 *
 * The input's first byte picks how the rest arrives: in one piece, or in reads of 1..k
 * bytes (as a slow or pipelining client sends it). The target does what the server
 * does: feed, build each completed request, go on with the bytes after it, stop at the
 * first error. Beyond "no crash, no leak, no undefined behaviour" it checks parse.h's
 * promises:
 *   - a feed consumes at most what it was given, and HP_MORE means all of it;
 *   - a request's path holds no NUL byte (it is a C string of its decoded length) and no
 *     ".." segment; at most HTTP_QUERY_MAX query parameters; a body of at most the limit;
 *   - an error is one of 400, 413, 431 with a message;
 *   - feeding the same bytes in one piece and in small reads gives the same requests
 *     (path, query, method, body length) and the same outcome (an error in both or in
 *     neither; its status may differ, see below).
 *
 * Build and run: make -f tests/fuzz/fuzz.mk build-fuzz/fuzz_http (tests/fuzz/fuzz.mk).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "front/http/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HEADER 2048
#define MAX_BODY 4096
#define MAX_REQS 64

typedef struct outcome {
    int nreq, err;
    unsigned long sig[MAX_REQS]; /* a digest of each request */
} outcome;

static unsigned long digest(const http_req *r) {
    unsigned long h = 5381u * 33u + (unsigned)r->method;
    for (const char *p = r->path; *p; p++)
        h = h * 33u + (unsigned char)*p;
    for (size_t i = 0; i < r->nq; i++) {
        for (const char *p = r->qk[i]; *p; p++)
            h = h * 33u + (unsigned char)*p;
        for (const char *p = r->qv[i]; *p; p++)
            h = h * 31u + (unsigned char)*p;
    }
    return h * 33u + r->body_len;
}

static void check_request(const http_req *r) {
    if (r->path == NULL || r->nq > HTTP_QUERY_MAX || r->body_len > MAX_BODY)
        abort();
    for (const char *q = r->path; (q = strstr(q, "..")) != NULL; q += 2)
        if ((q == r->path || q[-1] == '/') && (q[2] == '/' || q[2] == '\0'))
            abort();
}

static void run(const uint8_t *data, size_t size, size_t step, outcome *o) {
    hparse h;
    http_req r;
    char msg[160];
    size_t off = 0, avail = 0;
    memset(o, 0, sizeof(*o));
    memset(&r, 0, sizeof(r));
    hparse_init(&h, MAX_HEADER, MAX_BODY);
    /* bytes [off, avail) are "read and not consumed", as in a connection's buffer */
    while (off < size) {
        size_t more = step ? step : size;
        avail = avail + more > size ? size : avail + more;
        while (off < avail) {
            size_t used = 0;
            int status = 0;
            msg[0] = '\0';
            int rc = hparse_feed(&h, (const char *)data + off, avail - off, &used, &status, msg,
                                 sizeof(msg));
            if (used > avail - off)
                abort();
            off += used;
            if (rc == HP_ERROR) {
                if ((status != 400 && status != 413 && status != 431) || msg[0] == '\0')
                    abort();
                o->err = status;
                goto done;
            }
            if (rc == HP_MORE) {
                if (off != avail)
                    abort();
                break;
            }
            if (hparse_request(&h, &r, msg, sizeof(msg)) == 0) {
                check_request(&r);
                if (o->nreq < MAX_REQS)
                    o->sig[o->nreq] = digest(&r);
            } else if (msg[0] == '\0') {
                abort();
            }
            o->nreq++;
        }
    }
done:
    hreq_clear(&r);
    hparse_free(&h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t step = data[0] % 8; /* 0: one piece */
    outcome whole, pieces;
    run(data + 1, size - 1, 0, &whole);
    if (step == 0)
        return 0;
    run(data + 1, size - 1, step, &pieces);
    /* Reads of any size give the same requests and the same fate. Which status an error
     * gets may differ: a request line both too long and malformed is 431 when the reads
     * bring its target in pieces (our limit sees them first) and 400 when it comes whole
     * (http-parser judges the target before handing it over). */
    if ((whole.err != 0) != (pieces.err != 0) || whole.nreq != pieces.nreq)
        abort();
    for (int i = 0; i < whole.nreq && i < MAX_REQS; i++)
        if (whole.sig[i] != pieces.sig[i])
            abort();
    return 0;
}
