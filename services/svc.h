/* SPDX-License-Identifier: BSD-2-Clause */
/* svc.h — what tsserv and sleepserv share: flags, a line-framed libuv TCP server that
 * answers each connection's requests in order, self-registration through the client
 * library's registration helper, logging, and a clean SIGINT/SIGTERM shutdown
 * (deregister, close everything, exit 0).
 *
 * A service supplies one function that receives each request line with a reply slot
 * (svc_req) and fills the slot, at once or later (from a timer, say). Slots of one
 * connection are sent in request order whatever order they are filled in, so a client
 * may pipeline.
 */
#ifndef SERVICES_SVC_H
#define SERVICES_SVC_H

#include <stddef.h>
#include <uv.h>

#define SVC_MAX_LINE        65536     /* request bytes, newline included */
#define SVC_MAX_PENDING     1024      /* unanswered requests per connection before we
                                         stop reading from it */
#define SVC_MAX_OUTPUT      (1 << 20) /* queued reply bytes per connection before we stop
                                         reading from it */

typedef struct svc_req svc_req;

/* Called for each request line (without its newline or a trailing CR; borrowed for the
 * call). The service must call svc_req_reply(r, ...) exactly once, now or later. */
typedef void (*svc_request_fn)(svc_req *r, const char *line, size_t len);

/* Called when a request's connection goes away (client left, or shutdown) before it
 * was answered; the service must stop its work and still call svc_req_reply (the
 * text is then dropped), possibly later, e.g. from a timer's close callback. */
typedef void (*svc_cancel_fn)(svc_req *r, void *data);

typedef struct svc_def {
    const char *prog;                 /* "tsserv": log prefix and usage */
    const char *default_name;         /* the service name to register */
    const char *default_description;
    const char *summary;              /* one paragraph for --help: what it answers */
    size_t max_line;                  /* request cap incl. newline (<= SVC_MAX_LINE) */
    const char *too_long_reply;       /* sent for a line over max_line, then close */
    svc_request_fn on_request;
} svc_def;

/* Parses the flags, binds, prints "listening on HOST:PORT" (flushed) on stdout,
 * registers through the helper and runs the loop until SIGINT/SIGTERM. Returns the exit
 * status: 0 after a clean stop, 1 on a runtime failure, 2 on a usage error. */
int svc_main(int argc, char **argv, const svc_def *def);

/* Answers r: copies len bytes of text (a newline is added) to be sent in order. Frees r:
 * do not touch it afterwards. On a cancelled request the text is dropped. */
void svc_req_reply(svc_req *r, const char *text, size_t len);

/* Registers a cancel callback for r (see svc_cancel_fn). data is borrowed. */
void svc_req_on_cancel(svc_req *r, svc_cancel_fn fn, void *data);

/* The loop serving r (for timers). */
uv_loop_t *svc_req_loop(const svc_req *r);

/* "HOST:PORT" of r's client, for logs. Borrowed: valid until svc_req_reply. */
const char *svc_req_peer(const svc_req *r);

/* One log line on stderr, "PROG: ..." . */
void svc_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
