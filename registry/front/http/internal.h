/* SPDX-License-Identifier: BSD-2-Clause */
/* internal.h — what the HTTP front-end's files share: the server, a connection, a parsed
 * request and a response. server.c owns connections, parsing and the order of answers;
 * api.c routes a request and renders its JSON; metrics.c renders /metrics. */
#ifndef REGISTRY_FRONT_HTTP_INTERNAL_H
#define REGISTRY_FRONT_HTTP_INTERNAL_H

#include <http_parser.h>
#include <jansson.h>
#include <stdint.h>

#include "base/cache.h"
#include "base/dict.h"
#include "base/util.h"
#include "core/bus.h"
#include "core/core.h"
#include "core/ops.h"
#include "front/http/http.h"
#include "front/http/parse.h"
#include "front/net.h"

#define HTTP_WAIT_MAX_MS (10 * 60 * 1000ULL) /* a blocking query's longest wait */
#define HTTP_WAIT_DEFAULT_MS (5 * 60 * 1000ULL) /* Consul's default wait */
#define HTTP_SSE_QUEUE_MAX 10000    /* live events held while a stream catches up */

typedef struct hconn hconn;


/* Route ids, for the counters and the latency histogram. */
enum http_route {
    R_AGENT_SELF, R_CATALOG_SERVICES, R_CATALOG_SERVICE, R_HEALTH_SERVICE, R_HEALTH_STATE,
    R_REGISTER, R_DEREGISTER, R_CHECK_PASS, R_MAINTENANCE, R_KV, R_STATUS, R_API_SERVICES,
    R_API_SERVICE,
    R_API_EVENTS, R_API_STREAM, R_API_STATS, R_PROM_SD, R_METRICS, R_UI, R_OTHER, R__COUNT
};
extern const char *const http_route_names[R__COUNT];

#define HTTP_LAT_BUCKETS 12
extern const double http_lat_bounds[HTTP_LAT_BUCKETS]; /* seconds */

typedef struct http_stats {
    uint64_t requests[R__COUNT][6]; /* by route and status class: 1xx..5xx (index 1..5) */
    uint64_t lat[HTTP_LAT_BUCKETS + 1]; /* request durations (+Inf last) */
    double lat_sum;
    uint64_t bad_requests;          /* refused before routing: 400, 408, 413, 431 */
    uint64_t blocking_queries, sse_streams_total, sse_events;
} http_stats;

/* The index of one service (the seq of the last event about it). */
typedef struct svc_index {
    uint64_t seq;
    size_t len;
    char name[];
} svc_index;

struct http_server {
    uv_loop_t *loop;
    http_config cfg;
    core *core;
    alog *log;
    net_server *net;
    bus_sub *sub;                   /* raw: indexes and blocking queries */
    bus_sub *stream_sub;            /* while event streams are open: their JSON */
    dict *index;                    /* service name -> svc_index */
    cache *answers;                 /* encoded bodies of the hot reads (api.c) */
    uint64_t seq;                   /* the newest event seq seen (0: none yet) */
    uint64_t base_seq;              /* seq when listening began: the index of a service no
                                     * event has named since */
    hconn *blocked;                 /* blocking queries waiting (list) */
    hconn *streams;                 /* server-sent event streams (list) */
    size_t nstreams;
    uv_timer_t keepalive;           /* comments on event streams, so proxies keep them */
    int listening, stopping;
    uint64_t started_ms;            /* for uptime */
    http_stats st;
};

/* A response being built. */
typedef struct http_resp {
    int status;
    const char *ctype;              /* NULL: application/json */
    ubuf body;
    uint64_t index;                 /* X-Consul-Index (0: the global one) */
    const char *allow;              /* 405: the Allow header */
    const char *extra;              /* more header lines, each ending in \r\n */
} http_resp;

/* --- api.c ----------------------------------------------------------------------------- */
/* What a request needs. */
enum api_kind {
    API_DONE,                       /* resp is filled: send it */
    API_BLOCK,                      /* a blocking query not ready: wait for `service`
                                     * (NULL: the services list) past want, for wait_ms */
    API_WRITE,                      /* run *out_req through ops_run; the answer comes later */
    API_EVENTS,                     /* run *out_req (events) */
    API_STREAM                      /* start a server-sent events stream */
};
typedef struct api_call {
    int answer_now;                 /* set by the caller: a blocking query answers as it is
                                     * (its wait ended, or registryd is stopping) */
    int route;
    const char *service;            /* API_BLOCK: borrowed from the request */
    uint64_t want;                  /* API_BLOCK: answer once the index passes this */
    uint64_t wait_ms;
    request rq;                     /* API_WRITE, API_EVENTS (strings borrowed from req or
                                     * from the call's own storage below) */
    json_t *doc;                    /* API_WRITE: the parsed body (owned) */
    char id[80];                    /* API_WRITE: the instance id */
    char secret[256];
    char reason[256];               /* API_WRITE: a maintenance reason */
    const char *stream_service;     /* API_STREAM: optional filter */
    int64_t since;                  /* API_STREAM: resume after this seq */
} api_call;

int api_handle(http_server *s, const http_req *rq, const peer *pr, http_resp *resp,
               api_call *call);
/* The answer to a finished write or events request. */
void api_reply(http_server *s, const api_call *call, const reply *r, http_resp *resp);
/* A JSON error body {"error": msg}. */
void api_error(http_resp *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void api_json(http_resp *resp, int status, json_t *doc); /* steals doc */
/* The X-Consul-Index of a service (any name, present or not) and of the catalog. */
uint64_t api_index(const http_server *s, const char *service);
uint64_t api_global_index(const http_server *s);
/* Parses a Go duration ("120000ms", "30s", "5m", "1m30s"). 0 or -1. */
int api_duration(const char *s, uint64_t *ms);

/* --- metrics.c ------------------------------------------------------------------------- */
/* The Prometheus text exposition of the registry's figures into out. 0 or -ENOMEM. */
int metrics_render(http_server *s, ubuf *out);

#endif
