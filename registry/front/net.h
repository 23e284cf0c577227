/* SPDX-License-Identifier: BSD-2-Clause */
/* net.h — the stream plumbing every TCP front-end shares: a listener, the list of
 * connections, peer addresses, input buffers, a bounded output buffer flushed once per
 * loop turn (so a pipeline of N requests costs one write(2)), limits on connections and
 * descriptors, idle and request timeouts, and the drain at stop.
 *
 * A front-end embeds net_conn as the FIRST member of its own connection struct (the
 * handler's conn_size says how big that is) and is called back when bytes arrive; it
 * never touches a socket. It encodes replies into c->out and calls net_commit, or hands
 * finished bytes to net_write. Everything here runs on the loop thread.
 */
#ifndef REGISTRY_FRONT_NET_H
#define REGISTRY_FRONT_NET_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/alog.h"
#include "base/util.h"

#define NET_PEER_LEN 64             /* "[ipv6]:port" */

typedef struct net_server net_server;
typedef struct net_conn net_conn;

struct net_conn {
    uv_tcp_t tcp;                   /* must stay first */
    net_server *srv;
    char peer[NET_PEER_LEN];        /* "IP:PORT" or "[IPv6]:PORT" */
    char peer_ip[INET6_ADDRSTRLEN]; /* "IP" */
    uint64_t peer_hash;             /* a hash of peer_ip */
    char *in;                       /* bytes read and not yet consumed (net_consume) */
    size_t in_len, in_cap;
    ubuf out;                       /* output not yet handed to the kernel */
    /* Set by the front-end: */
    int busy;                       /* work in flight: no idle timeout; closing waits */
    int long_lived;                 /* e.g. a watcher: no idle timeout */
    int paused;                     /* parsing waits for busy work: no request timeout */
    uint64_t partial_since;         /* loop ms an unfinished request began, 0 = none */
    /* Read by the front-end, kept by net: */
    int closing;                    /* being closed: nothing more goes out */
    int close_after_flush;          /* closing once the output is written */
    int overflowed;                 /* went over the output cap: closing */
    int read_stopped;
    int eof;                        /* the peer finished sending */
    /* net's own */
    net_conn *prev, *next;          /* the server's list */
    net_conn *flush_next;           /* the flush queue */
    int in_flushq;
    int refs;                       /* net_ref holders */
    int closed;                     /* close callback ran */
    int rejected;                   /* over a limit: not counted, not read */
    uint64_t overflow_at;           /* loop ms it overflowed */
    uint64_t last_active;           /* loop ms of the last complete request */
    size_t out_pending;             /* bytes in uv_write requests in flight */
};

typedef struct net_handler {
    size_t conn_size;               /* of the front-end's connection (net_conn first) */
    size_t max_input;               /* input buffer cap: a request can never be longer */
    /* A connection was accepted (not called for refused ones); reading starts next. */
    void (*on_open)(net_conn *c);
    /* New bytes arrived (c->in[0..in_len)); consume what was handled with net_consume. */
    void (*on_input)(net_conn *c);
    /* The connection starts closing: end subscriptions and the like. Its memory stays
     * until every net_ref is dropped. */
    void (*on_close)(net_conn *c);
    /* The output cap was reached: append (to out) a last line saying so, if the protocol
     * has one. */
    void (*on_overflow)(net_conn *c, ubuf *out);
    /* A connection is refused (why: a person's sentence): append its answer to out. */
    void (*on_reject)(net_conn *c, ubuf *out, const char *why);
    /* A request stayed unfinished past the request timeout: append a last answer to out
     * (HTTP's 408), if the protocol has one; the connection closes once it is written. */
    void (*on_timeout)(net_conn *c, ubuf *out);
    void *ud;                       /* the front-end's, net_ud() */
} net_handler;

typedef struct net_config {
    const char *host;               /* listen address */
    int port;                       /* 0: any free port */
    long long max_conns;
    long long max_output_buffer;    /* unread reply bytes before a client is dropped */
    uint64_t idle_timeout_ms, request_timeout_ms; /* 0 = never */
    size_t *shared_conns;           /* optional: a count several servers share, so that
                                     * max_conns bounds them together */
} net_config;

/* A server (not listening yet). handler and log are borrowed. Returns 0 or -ENOMEM. */
int net_new(uv_loop_t *loop, const net_config *cfg, const net_handler *handler, alog *log,
            net_server **out, char *err, size_t errlen);
/* Binds, listens and starts flushing and sweeping; writes the bound address to
 * bound[len]. Returns 0 or a libuv error with err filled. */
int net_listen(net_server *s, char *bound, size_t len, char *err, size_t errlen);
/* Stops accepting and reading; what was read is still handled. */
void net_stop_accepting(net_server *s);
int net_stopping(const net_server *s);
/* Does any connection have busy work? */
int net_busy(const net_server *s);
/* Closes every connection once its output is written (cutting the rest after
 * deadline_ms), then the server's handles, then calls done(ud) once. */
void net_close_all(net_server *s, uint64_t deadline_ms, void (*done)(void *ud), void *ud);
/* After the loop ran out. net_free(NULL) is a no-op. */
void net_free(net_server *s);
void *net_ud(const net_server *s);
size_t net_conns(const net_server *s);
uint64_t net_rejected(const net_server *s);

/* Output. net_write copies bytes in; returns 0, or -1 when the connection is over its
 * cap (or out of memory) and closing. A reply encoded straight into c->out from offset
 * before is kept by net_commit if it fits (0), else dropped (-1, closing). */
int net_can_write(const net_conn *c);
int net_write(net_conn *c, const char *data, size_t len);
int net_commit(net_conn *c, size_t before);
/* Input: drops the first n bytes of c->in; a complete request was handled. */
void net_consume(net_conn *c, size_t n);
/* Reading: stop (backpressure) and start again (unless the peer or the server is done). */
void net_read_stop(net_conn *c);
void net_read_resume(net_conn *c);
/* Closing: now, or once the output is written and busy is 0. */
void net_close(net_conn *c);
void net_close_after_flush(net_conn *c);
/* Keeps a connection's memory across asynchronous work; net_unref returns 1 when it
 * freed it (the caller must not touch c again). */
void net_ref(net_conn *c);
int net_unref(net_conn *c);

/* Test hook: when > 0, that many next accepted connections fail to allocate (they must
 * be refused while the listener goes on accepting). */
extern int net__fail_allocs;

#endif
