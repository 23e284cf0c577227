/* SPDX-License-Identifier: BSD-2-Clause */
/* parse.h — the HTTP front-end's boundary with the wire, pure (no loop, no sockets, no
 * core): http-parser driven one request at a time, with our limits on the request line
 * and headers (431) and the body (413), the headers we use kept, and the request target
 * percent-decoded into a path and a query (NUL bytes and ".." segments refused). The
 * server feeds it what a connection read; tests/fuzz/fuzz_http.c feeds it anything.
 */
#ifndef REGISTRY_FRONT_HTTP_PARSE_H
#define REGISTRY_FRONT_HTTP_PARSE_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

#define HTTP_QUERY_MAX 24           /* query parameters kept per request */

/* A parsed request. Strings are owned by it (hreq_clear). */
typedef struct http_req {
    int method;                     /* enum http_method */
    char *path;                     /* percent-decoded path, NUL-terminated */
    char *qk[HTTP_QUERY_MAX], *qv[HTTP_QUERY_MAX]; /* decoded query (values "" if none) */
    size_t nq;
    const char *token;              /* X-Consul-Token, or ?token= (borrowed from the parser
                                     * or the query: valid until the next hparse_feed) */
    const char *body;               /* borrowed likewise */
    size_t body_len;
    int64_t last_event_id;          /* Last-Event-ID, -1 when none */
    const char *if_none_match;      /* If-None-Match, NULL when none (borrowed likewise) */
} http_req;

typedef struct hparse {
    http_parser p;
    size_t max_header, max_body;
    ubuf url, field, value, body, token, leid, inm; /* inm: If-None-Match */
    int last_was_value;
    size_t header_bytes;
    int reject;                     /* 413 or 431: why the parser was stopped */
    int in_message;                 /* a request has begun and not ended */
    /* of the request just completed */
    int method, keep_alive, upgrade, http09, http10;
} hparse;

void hparse_init(hparse *h, size_t max_header, size_t max_body);
void hparse_free(hparse *h);

enum { HP_MORE = 0, HP_REQUEST = 1, HP_ERROR = -1 };
/* Parses data[len]: *used bytes were consumed. HP_REQUEST: one request ended there
 * (build it with hparse_request before feeding more); HP_MORE: everything was consumed
 * and the request (if one began) is not complete; HP_ERROR: the bytes are not HTTP we
 * take, *status (400, 413, 431) and msg say why (the connection must close). */
int hparse_feed(hparse *h, const char *data, size_t len, size_t *used, int *status, char *msg,
                size_t msglen);
/* The request that just ended, into r (cleared first). 0, or an HTTP status (400) with
 * msg filled. */
int hparse_request(hparse *h, http_req *r, char *msg, size_t msglen);
/* Frees what r owns and zeroes it. */
void hreq_clear(http_req *r);
/* The first value of query parameter key, or NULL. */
const char *hreq_query(const http_req *r, const char *key);

#endif
