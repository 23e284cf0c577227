/* SPDX-License-Identifier: BSD-2-Clause */
/* proto.h — the wire protocol of registryd: decoding and validating one request line,
 * and encoding responses. Pure: no sockets, no store, no libuv, so it can be unit-tested
 * and fuzzed on its own (tests/unit/test_proto.c, tests/fuzz/).
 *
 * The contract (README "Protocol"): one JSON object per line in each direction.
 */
#ifndef REGISTRY_PROTO_H
#define REGISTRY_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "core/req.h"

#define PROTO_MAX_LINE      65536   /* bytes, newline included */
#define PROTO_MAX_DEPTH     32      /* JSON nesting levels */
#define PROTO_MSG_LEN       256     /* room for an error message */

#define PROTO_PAGE_MAX      10000   /* entries in one page of list or lookup, at most */
#define PROTO_CURSOR_MAX    128     /* bytes of a "cursor" */
#define PROTO_CURSOR_ID_MAX 64      /* bytes of the instance id in a lookup cursor */

/* Paging of `list` and `lookup` (README "The protocol"): "limit" and/or "cursor" ask for
 * one page, whose reply carries "next" (the cursor of the following page) unless it is
 * the last; with neither, the whole answer comes in one reply, as before paging existed.
 * The cursor is opaque to clients; here it is
 *   list:   the name of the last service of the previous page (pages follow name order)
 *   lookup: "INDEX.ID", the id of the last instance of the previous page and its index
 *           in the listed (registration) order, so a page can resume after it even if it
 *           was removed meanwhile. */
typedef struct proto_page {
    int on;                        /* one page was asked for */
    int limit;                     /* 1..PROTO_PAGE_MAX (the maximum when only a cursor
                                    * was given) */
    const char *after;             /* list: the page starts after this service name
                                    * (borrowed from root), or NULL: the first page */
    size_t index;                  /* lookup: the cursor's INDEX ... */
    char id[PROTO_CURSOR_ID_MAX + 1]; /* ... and ID; "" = the first page */
} proto_page;

/* A decoded line: the request the core runs, plus what only the line protocol has.
 * The strings in `r` borrow from `root`, which the request owns: they live until
 * proto_request_free. */
typedef struct proto_request {
    request r;                     /* what the core runs */
    json_t *root;              /* owned: the decoded object (NULL when not JSON) */
    json_t *request_id;        /* borrowed from root, or NULL: echoed in the reply */
    proto_page page;           /* list, lookup: the page asked for (page.on = 0: all) */
} proto_request;

/* Formats the lookup cursor "INDEX.ID" into buf[PROTO_CURSOR_MAX]; returns its length. */
size_t proto_lookup_cursor(size_t index, const char *id, char *buf);

/* Line framing: where does the next request line end in buf[len]?
 * Returns PROTO_FRAME_LINE with *line_len = bytes before the '\n' (the line takes
 * *line_len + 1 bytes), PROTO_FRAME_MORE when no newline yet and the line may still fit,
 * or PROTO_FRAME_TOO_LARGE when the line cannot fit in PROTO_MAX_LINE bytes. */
enum { PROTO_FRAME_LINE, PROTO_FRAME_MORE, PROTO_FRAME_TOO_LARGE };
int proto_frame(const char *buf, size_t len, size_t *line_len);

/* Decodes and validates one line (without its newline; len bytes, may hold NULs).
 * Returns RERR_NONE and fills *req, or an error (RERR_BAD_REQUEST or RERR_TOO_LARGE)
 * with a message naming the problem in msg[PROTO_MSG_LEN]. Even on error *req is set
 * up for proto_request_free and req->request_id is set when the line was an object
 * carrying one, so the error can echo it. */
req_err proto_decode(const char *line, size_t len, proto_request *req, char *msg);

/* Frees what proto_decode allocated. Safe on a zeroed request. */
void proto_request_free(proto_request *req);

/* Appends the encoding of `resp` (a JSON object; borrowed) plus a newline to the
 * buffer *buf of *len bytes with *cap allocated, growing it with realloc. If request_id
 * is not NULL it is added to the object first. Returns 0 or -ENOMEM. */
int proto_encode(json_t *resp, json_t *request_id, char **buf, size_t *len, size_t *cap);

/* Builds {"ok":false,"error":{"code":..,"message":..}} (+ request_id). New reference. */
json_t *proto_error(req_err e, const char *message, json_t *request_id);

/* A memo of decoded lookup lines. Decoding is a pure function of the line's bytes, so
 * a byte-identical line decodes to the same request: hot lookups (clients resolving the
 * same name again and again, without a request_id) skip the JSON parser. Only lookups
 * without request_id, auth or paging, on short lines, are kept. Direct-mapped, bounded. */
typedef struct proto_memo proto_memo;

proto_memo *proto_memo_new(void);
void proto_memo_free(proto_memo *m);
/* 1 and *req filled (strings borrowed from the memo, valid until the next
 * proto_memo_put; req->root is NULL) when line is memoized, else 0. */
int proto_memo_get(proto_memo *m, const char *line, size_t len, proto_request *req);
/* Remembers a successfully decoded request of line, when it is memoizable. */
void proto_memo_put(proto_memo *m, const char *line, size_t len, const proto_request *req);

/* Valid service name? ([a-z0-9._-], 1..63 bytes, first is a letter or digit) */
int proto_valid_service(const char *s, size_t len);

/* Valid host? (IPv4/IPv6 literal, or RFC 1123 hostname <= 253 bytes) */
int proto_valid_host(const char *s, size_t len);

#endif
