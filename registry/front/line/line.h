/* SPDX-License-Identifier: BSD-2-Clause */
/* line.h — the newline-JSON front-end: registryd's own protocol over TCP (README
 * "The protocol"). It frames lines, decodes them (proto.h), runs them in the core
 * (core/ops.h) and encodes the replies, in request order; `watch` connections follow the
 * core's event bus. It owns its encodings: ready-to-send lookup answers, attached to the
 * core's lookup sets (so valid for one lookup key and service generation), and the list
 * answer, kept for one catalog generation.
 *
 * Everything here runs on the loop thread.
 */
#ifndef REGISTRY_FRONT_LINE_H
#define REGISTRY_FRONT_LINE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/alog.h"
#include "core/core.h"

#define LINE_DEFAULT_PORT 5380

typedef struct line_config {
    char listen_host[256];
    int listen_port;                /* 0: any free port */
    long long max_conns;
    long long max_output_buffer;    /* unread reply bytes before a client is dropped */
    uint64_t idle_timeout_ms, request_timeout_ms; /* 0 = never */
    size_t *shared_conns;           /* optional: the count of connections max_conns bounds,
                                     * shared with the HTTP front-end (net.h) */
} line_config;

typedef struct line_server line_server;

/* The defaults of every setting (those of registryd's flags). */
void line_config_defaults(line_config *cfg);
/* A line server over core c (borrowed; it outlives the server). Returns 0 or -ENOMEM
 * with err filled. */
int line_new(uv_loop_t *loop, const line_config *cfg, core *c, line_server **out, char *err,
             size_t errlen);
/* Binds and listens; writes the bound address ("IP:PORT", "[IPv6]:PORT") to bound[len].
 * Returns 0 or a libuv error with err filled. */
int line_listen(line_server *s, char *bound, size_t len, char *err, size_t errlen);
/* Stops accepting and reading; what was read is still answered. */
void line_stop_accepting(line_server *s);
/* Does any connection wait on the core (a write in flight)? */
int line_busy(const line_server *s);
/* Requests handled since start. */
uint64_t line_requests(const line_server *s);
/* Closes every connection once its replies are written (cutting the rest after
 * deadline_ms), then the server's handles, then calls done(ud) once. */
void line_close_all(line_server *s, uint64_t deadline_ms, void (*done)(void *ud), void *ud);
/* After the loop ran out, before the core is freed. line_free(NULL) is a no-op. */
void line_free(line_server *s);


#endif
