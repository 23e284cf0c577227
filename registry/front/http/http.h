/* SPDX-License-Identifier: BSD-2-Clause */
/* http.h — the HTTP front-end: the part of Consul's HTTP API that Prometheus,
 * consul-template, Traefik and Consul's client libraries use, the registry's own /api/
 * (with a server-sent events stream), Prometheus service discovery and /metrics
 * (README "HTTP API").
 *
 * HTTP/1.1 is parsed by http-parser (a pure parser, fuzzed at our boundary in
 * tests/fuzz/fuzz_http.c) over the connections of front/net.h. Requests of a connection
 * are answered in order: a request that waits (a write, a blocking query) holds the ones
 * pipelined behind it. Reads come from the catalog; writes go to the core through
 * ops_run like any other front-end's, under the same ownership rule.
 *
 * Everything here runs on the loop thread.
 */
#ifndef REGISTRY_FRONT_HTTP_H
#define REGISTRY_FRONT_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/core.h"

#define HTTP_DEFAULT_PORT 8500      /* Consul's */

typedef struct http_config {
    char host[256];                 /* listen address */
    int port;                       /* 0: a free port */
    char node_name[64];             /* this node, as Consul's Node */
    char datacenter[64];            /* Consul's Datacenter */
    long long max_conns;            /* shared with the line protocol when shared_conns */
    size_t *shared_conns;
    long long max_output_buffer;    /* unread response bytes before a client is dropped */
    uint64_t idle_timeout_ms;       /* idle keep-alive connections are closed */
    uint64_t request_timeout_ms;    /* headers (and body) must arrive within this (408) */
    size_t max_header_bytes;        /* request line + headers (431 beyond) */
    size_t max_body_bytes;          /* request body (413 beyond) */
    uint64_t start_seq;             /* the store's newest event seq at start (0: none):
                                     * no X-Consul-Index is ever below it */
} http_config;

typedef struct http_server http_server;

void http_config_defaults(http_config *cfg);
/* An HTTP server over core c (borrowed). Subscribes to the bus at once (create it before
 * core_start so that the index of every service is known). Returns 0 or -ENOMEM. */
int http_new(uv_loop_t *loop, const http_config *cfg, core *c, http_server **out, char *err,
             size_t errlen);
/* Binds and listens; writes the bound address to bound[len]. 0 or a libuv error. */
int http_listen(http_server *s, char *bound, size_t len, char *err, size_t errlen);
/* Stops accepting; blocking queries are answered now, event streams end. */
void http_stop_accepting(http_server *s);
/* Does any connection wait on the core (a write in flight)? */
int http_busy(const http_server *s);
/* Closes every connection once answered (cut after deadline_ms), then done(ud) once. */
void http_close_all(http_server *s, uint64_t deadline_ms, void (*done)(void *ud), void *ud);
/* After the loop ran out, before the core is freed. http_free(NULL) is a no-op. */
void http_free(http_server *s);

#endif
