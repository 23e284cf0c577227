/* SPDX-License-Identifier: BSD-2-Clause */
/* req.h — what a request to the registry is, whatever front-end it came through: the
 * operations, their limits, the error codes and the decoded request. A front-end (the
 * line protocol, DNS, HTTP) builds a `req` from its own wire format and hands it to the
 * core (ops.h); the core never sees bytes from the wire.
 */
#ifndef REGISTRY_CORE_REQ_H
#define REGISTRY_CORE_REQ_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define REQ_SERVICE_MAX   63
#define REQ_HOST_MAX      253
#define REQ_DESC_MAX      1024
#define REQ_TAGS_MAX      32
#define REQ_TAG_MAX       255
#define REQ_TTL_MAX       86400
#define REQ_EVENTS_LIMIT  10000   /* max `limit` of the events op */
#define PEER_LEN          64      /* a peer as "[ipv6]:port" */

typedef enum req_op {
    OP_REGISTER, OP_DEREGISTER, OP_HEARTBEAT, OP_LOOKUP, OP_LIST,
    OP_PING, OP_STATS, OP_EVENTS, OP_WATCH, OP_MAINTENANCE, OP__COUNT
} req_op;

/* The outcome of a request. The names (req_err_name) are the protocol's error codes. */
typedef enum req_err {
    RERR_NONE = 0, RERR_BAD_REQUEST, RERR_NOT_FOUND, RERR_UNAUTHORIZED, RERR_CONFLICT,
    RERR_TOO_LARGE, RERR_UNAVAILABLE, RERR_INTERNAL
} req_err;
#define RERR__COUNT (RERR_INTERNAL + 1)

enum { REQ_CHECK_TCP = 0, REQ_CHECK_NONE = 1 };

/* A validated request. Strings and `tags` are borrowed from whoever decoded it and live
 * at least until ops_run returns (the core copies what it keeps). */
typedef struct request {
    req_op op;
    const char *service;       /* register, lookup; events/watch (optional) */
    const char *host;          /* register: NULL when omitted, "0.0.0.0" or "::" */
    int port;                  /* register */
    const char *description;   /* register: "" when omitted */
    json_t *tags;              /* register: borrowed array of strings, or NULL */
    int ttl;                   /* register: 0 = none */
    int check;                 /* register: REQ_CHECK_* */
    const char *id;            /* deregister, heartbeat, maintenance */
    const char *token;         /* deregister, heartbeat; register: optional, the current
                                * token of the instance being registered again */
    int admin;                 /* register: an operator's update of someone else's
                                * instance (needs the shared secret) */
    const char *want_id;       /* register: the id the client chose (a Consul ServiceID,
                                * store_id_valid), or NULL for a generated one */
    int by_standing;           /* deregister, heartbeat without a token (the Consul API):
                                * allowed to the instance's registrant or its own host,
                                * or with the shared secret in `auth` */
    int force;                 /* deregister: an operator's removal without the token
                                * (the shared secret, or a loopback client when the
                                * registry has none) */
    int enable;                /* maintenance: 1 take the instance out of service, 0 put
                                * it back (operator only, as force) */
    const char *reason;        /* maintenance: optional, for the event and the log */
    const char *auth;          /* optional shared secret (any op) */
    const char *tag;           /* lookup: optional filter */
    int all;                   /* lookup: list every instance, not only passing ones */
    int64_t since;             /* events */
    int limit;                 /* events: 1..REQ_EVENTS_LIMIT, default 100 */
    int tail;                  /* events: the newest `limit` events after `since`, not
                                * the oldest */
    int64_t before;            /* events with tail: only seqs below it (0: no bound), so
                                * a client pages backwards */
} request;

/* Who waits for a reply (ops.h). */
typedef struct waiter waiter;

/* Is s (len bytes) a valid service name: 1..REQ_SERVICE_MAX bytes of [a-z0-9._-], the
 * first a letter or digit? One rule for every front-end. */
int req_valid_service(const char *s, size_t len);
/* Is s (len bytes) a valid host: an IP literal, or an RFC 1123 hostname of at most
 * REQ_HOST_MAX bytes? */
int req_valid_host(const char *s, size_t len);

/* "bad_request", "not_found", ... ("internal" for an unknown value). */
const char *req_err_name(req_err e);
/* "register", "lookup", ... ("?" for an unknown value). */
const char *req_op_name(req_op op);

#endif
