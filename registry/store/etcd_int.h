/* SPDX-License-Identifier: BSD-2-Clause */
/* etcd_int.h — what the two halves of the etcd backend share (registry/store/ only).
 *
 * etcd.c is the writer thread's half: load, apply (conditional transactions), events,
 * through a blocking libcurl easy handle with a deadline per operation.
 * etcd_loop.c is the loop's half: the watch that follows every node's commits, this
 * node's membership lease and instance lease keepalives (heartbeats), through libcurl's
 * multi interface on the libuv loop. Each half has its own curl handles; what they share
 * is set at open (endpoints, prefix, node name) or guarded by `mu`.
 *
 * Keys, under the prefix P (default "/registry/"):
 *   P instances/ID                      the instance, JSON (etcd_inst_json); a TTL'd one on
 *                                       its own lease
 *   P endpoints/SERVICE/HOST/PORT       ID: one id per (service, host, port), on the same lease
 *   P events/SEQ                        an event, JSON; SEQ zero-padded to 20 digits
 *   P seq                               the last event seq handed out (decimal)
 *   P nodes/NAME                        a live registryd node, on its node lease
 *   P txn/NAME                          the mark of NAME's last commit (a nonce): a commit
 *                                       that carries it is that node's own
 */
#ifndef REGISTRY_STORE_ETCD_INT_H
#define REGISTRY_STORE_ETCD_INT_H

#include <pthread.h>
#include <stdint.h>
#include <jansson.h>

#include "base/util.h"
#include "store/store.h"

#define ETCD_PREFIX_DEFAULT "/registry/"
#define ETCD_TIMEOUT_DEFAULT_MS 3000
#define ETCD_NODE_TTL_S 3           /* node lease: a dead node's share moves after this */
#define ETCD_MAX_URLS 16
#define ETCD_MIN_TTL_S 2            /* etcd's shortest lease with its default election timeout */

typedef struct etcd_loop etcd_loop;

typedef struct etcd {
    store base;
    char *urls[ETCD_MAX_URLS];      /* client URLs, without a trailing '/' */
    size_t nurls;
    char *prefix;                   /* P, ending in '/' */
    size_t prefix_len;
    char *node;                     /* this node's name */
    int64_t timeout_ms;
    int64_t events_keep;

    /* writer thread */
    void *easy;                     /* CURL * */
    struct curl_slist *hdrs;
    size_t cur;                     /* the endpoint the writer talks to */
    ubuf resp;
    uint64_t nonce;                 /* commits so far (the mark's value) */
    int broken;                     /* store_etcd_test_break */
    int64_t last_seq;               /* the newest seq this half knows of */

    /* set by load, read by follow; then the follower's revision (under mu) */
    int64_t load_rev;
    char **init_members;            /* the nodes load saw */
    size_t ninit_members;

    pthread_mutex_t mu;             /* guards what both halves read: */
    size_t cur_shared;              /* the endpoint that answered last (either half) */
    int connected;                  /* the last call to etcd (either half) succeeded */
    char last_err[STORE_ERR_LEN];

    etcd_loop *loop;                /* the loop's half, once following */
} etcd;

/* --- the codec (etcd_json.c) --- */

/* Base64 of len bytes into a new string (NULL: out of memory). */
char *etcd_b64(const void *p, size_t len);
/* Decodes base64 s into a new NUL-terminated buffer, *len its length (NULL: bad input or
 * out of memory). */
char *etcd_unb64(const char *s, size_t *len);
/* A JSON string member holding base64 of s. Returns 0 or -1. */
int etcd_set_b64(json_t *o, const char *key, const char *s, size_t len);
/* An int64 member the gateway sends as a string (or a number); 0 when absent. */
int64_t etcd_int(const json_t *o, const char *key);
/* An instance's value: its fields, the tags as their JSON text, and ord, its place in
 * registration order (0: none). New reference, NULL when out of memory. */
json_t *etcd_inst_json(const store_instance *in, int64_t ord);
/* The ord of an instance's value (0: none). */
int64_t etcd_ord_of(const char *text, size_t len);
/* An event's value, naming the node that wrote it. New reference or NULL. */
json_t *etcd_event_json(const store_event *ev, const char *node);
/* Parses an instance's value (JSON text) into si, whose strings then borrow from *keep
 * (a new reference the caller drops). Returns 0 or -1 (not an instance). */
int etcd_inst_parse(const char *text, size_t len, store_instance *si, json_t **keep);
/* Parses an event's value into ev (strings borrow from *keep). Returns 0 or -1. */
int etcd_event_parse(const char *text, size_t len, store_event *ev, json_t **keep);
/* The gateway's error in a reply object, or NULL when it is not one. */
const char *etcd_reply_error(const json_t *reply);
/* 1 when an error the gateway reported is worth another try (no leader, a leader change,
 * a timeout, unavailable), else 0. */
int etcd_retryable(const json_t *reply);

/* A stream of JSON objects (the watch): chunks split or join them as they like, so they
 * are framed by object (brace depth outside strings), never by chunk. */
typedef struct etcd_frame {
    ubuf buf;                       /* bytes not framed yet (an object's start first) */
    size_t scan;                    /* scanned up to here */
    size_t start;                   /* where the open object starts */
    int depth, in_str, esc;
} etcd_frame;

/* Feeds n bytes: obj(ud, p, len) gets each complete top-level object in order; bytes
 * between objects are dropped. Stops at once when obj returns non-zero and returns that
 * (the bytes after that object stay, to be fed again). Returns 0, that value or -ENOMEM. */
int etcd_frame_feed(etcd_frame *f, const char *p, size_t n,
                    int (*obj)(void *ud, const char *p, size_t n), void *ud);
/* Forgets everything fed (a new stream). */
void etcd_frame_reset(etcd_frame *f);
void etcd_frame_free(etcd_frame *f);

/* --- the loop's half (etcd_loop.c) --- */
int etcd_follow(store *st, uv_loop_t *loop, const store_follower *f, char *err,
                size_t errlen);
void etcd_resume(store *st);
int etcd_renew(store *st, int64_t lease, void (*cb)(void *ud, int rc, const char *err),
               void *ud);
void etcd_unfollow(store *st, void (*cb)(void *ud), void *ud);
json_t *etcd_stats(store *st);
/* Frees what is left of the loop's half after unfollow (from close). */
void etcd_loop_free(etcd *e);

#endif
