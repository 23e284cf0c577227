/* daemon.h — the one context of registryd (built in main, passed explicitly) and the
 * entry points of the modules that work on it: server.c (listener, connections, line
 * framing, output buffers, watchers), ops.c (what each request does), health.c (checks,
 * TTLs, eviction, self-preservation) and events.c (the lifecycle event pipeline).
 *
 * Everything here runs on the loop thread. */
#ifndef REGISTRY_DAEMON_H
#define REGISTRY_DAEMON_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <jansson.h>

#include "base/alog.h"
#include "core/cache.h"
#include "core/catalog.h"
#include "front/line/proto.h"
#include "store/store.h"
#include "base/util.h"
#include "core/writer.h"

#define DAEMON_DEFAULT_PORT 5380
#define DAEMON_PEER_LEN 64          /* "[ipv6]:port" */

typedef struct daemon_config {
    char listen_host[256];
    int listen_port;
    const char *db_path;
    const char *log_path;
    int log_level;
    int sync_full;
    long long max_conns;
    uint64_t check_interval_ms, check_timeout_ms;
    long long max_failures, rise, check_concurrency;
    long long preserve_min;
    double preserve_threshold;      /* fraction 0..1 */
    long long cache_size;
    long long events_keep;
    int log_lookups;
    uint64_t log_lookups_interval_ms;
    long long max_output_buffer;
    uint64_t idle_timeout_ms, request_timeout_ms;
    const char *auth_token_file;
    int auth_lookups;
    long long max_instances, max_instances_per_service;
} daemon_config;

typedef struct conn conn;
typedef struct health health;

typedef struct regd {
    uv_loop_t *loop;
    daemon_config cfg;
    catalog *cat;
    cache *cache;
    proto_memo *memo;               /* decoded hot lookup lines */
    store *store;
    writer *writer;
    health *health;
    alog *log;
    uv_tcp_t listener;
    uv_signal_t sigint, sigterm, sighup, sigpipe;
    uv_prepare_t prepare;           /* flushes output before the loop polls */
    uv_check_t check;               /* ... and right after it handled I/O */
    uv_timer_t sweep;               /* idle / request timeouts, lookup log summaries */
    conn *conns;                    /* every open connection */
    conn *flushq;                   /* connections with output waiting (singly linked) */
    size_t nconns;
    size_t nwatchers;
    long long fd_limit;             /* RLIMIT_NOFILE at start */
    uint64_t last_emfile_log;       /* loop ms of the last descriptor warning */
    int has_auth;
    unsigned char auth_hash[32];    /* SHA-256 of the shared secret (never the secret) */
    int stopping;                   /* 1: finishing requests; 3: closing connections */
    int draining;                   /* server_close_all: 1 closing connections, 2 done */
    uint64_t drain_deadline;        /* loop ms */
    void (*on_drained)(struct regd *d); /* called once every connection is closed */
    int exit_code;
    int64_t started_ms;
    uint64_t requests;              /* since start */
    uint64_t errors[PERR_INTERNAL + 1];
    uint64_t rejected_conns;
    uint64_t last_summary_ms;       /* loop ms of the last lookup summary */
    ubuf list_body;                 /* encoded list answer (ops.c), valid for list_gen */
    uint64_t list_gen;
    uint64_t loop_iter;             /* loop iterations so far (counted after each poll) */
    struct dict *lookup_counts;     /* service -> lookup_count (ops.c), for the summary log */
} regd;

/* --- server.c -------------------------------------------------------------------------- */
/* Binds and listens on cfg.listen_host:listen_port; writes the bound address to
 * bound[len]. Returns 0 or a libuv error (message in err). */
int server_listen(regd *d, char *bound, size_t len, char *err, size_t errlen);
/* Starts the flush handles and the sweep timer. */
int server_start(regd *d);
/* Stops accepting; connections finish what they have read. */
void server_stop_accepting(regd *d);
/* Does any connection wait on the writer? */
int server_busy(const regd *d);
/* Closes every connection once its output is written (cutting the rest after
 * deadline_ms), then the server's handles, then calls d->on_drained. */
void server_close_all(regd *d, uint64_t deadline_ms);
/* Queues bytes for a connection (copied). Returns 0, or -1 when the connection went over
 * its output cap and is being closed. */
int conn_write(conn *c, const char *data, size_t len);
/* Encodes and queues a JSON response (borrowed) with request_id (borrowed, may be NULL). */
int conn_reply(conn *c, json_t *resp, json_t *request_id);
/* Queues an error response. */
int conn_reply_error(conn *c, proto_err e, const char *msg, json_t *request_id);
/* The peer as "IP:PORT" and as "IP". */
const char *conn_peer(const conn *c);
const char *conn_peer_ip(const conn *c);
/* A hash of the peer's IP (for counting distinct clients). */
uint64_t conn_peer_hash(const conn *c);
/* Holds a connection alive across an asynchronous operation (a write in the writer);
 * conn_unref after. An async op completing on a closed connection just drops its reply. */
void conn_ref(conn *c);
void conn_unref(conn *c);
int conn_is_open(const conn *c);
/* An async operation of this connection finished: resume reading its pipeline. */
void conn_async_done(conn *c);
/* Marks the connection as a watcher (of service, or all when NULL). Returns 0/-ENOMEM. */
int conn_watch(conn *c, const char *service);
/* Sends an event line to every watcher whose filter matches. */
void server_broadcast(regd *d, const char *service, const char *line, size_t len);
/* Flushes every queued output now (also called by the loop's prepare/check). */
void server_flush(regd *d);

/* --- ops.c ----------------------------------------------------------------------------- */
/* Handles one decoded request. Returns 0 when the reply is queued, 1 when the reply will
 * come later (the request went to the writer), or 2 when the request must wait for the
 * connection's earlier asynchronous requests to finish first (retry it then). */
int ops_handle(regd *d, conn *c, proto_request *req, int conn_busy);
/* Logs a bad request (first bytes only) and counts it. */
void ops_bad_request(regd *d, conn *c, proto_err e, const char *msg, const char *line,
                     size_t len);
/* Builds the "stats" object. New reference. */
json_t *ops_stats(regd *d);
/* Writes per-service lookup summary lines and resets the counters. */
void ops_log_lookup_summary(regd *d);
/* Drops the counters (also frees them at exit). */
void ops_lookup_counts_clear(regd *d);

/* --- events.c -------------------------------------------------------------------------- */
typedef struct pending pending;

/* A write in flight: the job, its change, owned copies of everything the change
 * borrows, and who is waiting for it. Freed by its completion. */
struct pending {
    wjob job;
    store_change ch;
    regd *d;
    conn *c;                        /* referenced, or NULL for internal writes */
    json_t *request_id;             /* referenced, or NULL */
    int level;                      /* log level of its event (ALOG_*) */
    char token[40];                 /* register: the plaintext token to hand back */
    char client[DAEMON_PEER_LEN];   /* who asked (for the log), "" for internal */
    char *service, *host, *description, *tags_json, *detail; /* owned copies */
    void (*done)(pending *p);       /* runs after the commit, on the loop */
};

/* A new pending write of kind with the instance's identity copied into the change and
 * its event (event may be NULL: no event). NULL when out of memory. */
pending *pending_new(regd *d, int kind, const char *event, const char *service,
                     const char *id, const char *host, int port, json_t *detail);
/* Submits it to the writer; p->done runs after the commit. */
void pending_submit(pending *p);
void pending_free(pending *p);
/* After a commit: logs the event of a successful change and sends it to watchers. */
void events_publish(regd *d, const store_event *ev, const char *client, int level);
/* A lifecycle event with no instance change (start, stop, preserve_on/off). */
void events_emit(regd *d, const char *event, int level, json_t *detail);

/* --- health.c -------------------------------------------------------------------------- */
health *health_new(regd *d);
void health_free(health *h);
/* Starts checking / TTL-tracking an instance (new, re-registered or loaded). */
void health_track(health *h, cat_instance *in, int loaded);
/* Stops everything about an instance that is being removed. */
void health_forget(health *h, cat_instance *in);
/* A heartbeat renewed the instance's TTL. */
void health_heartbeat(health *h, cat_instance *in);
/* Stops timers and cancels probes (for exit). */
void health_stop(health *h);
/* Adds the health figures to a stats object. */
void health_stats(health *h, json_t *stats);

#endif
