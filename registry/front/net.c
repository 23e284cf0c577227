/* SPDX-License-Identifier: BSD-2-Clause */
/* net.c — see net.h. Output: replies are appended to the connection's buffer and written
 * once per loop iteration (uv_prepare/uv_check), so a pipeline of N requests costs one
 * write(2); most writes complete inline with uv_try_write, and only the remainder goes to
 * uv_write, which then owns the buffer.
 */
#include "front/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "base/dict.h"

#define IN_CHUNK (16u << 10)        /* read granularity */
#define OVERFLOW_DRAIN_MS 5000      /* an overflowed client gets this long to take its last line */

struct net_server {
    uv_loop_t *loop;
    net_config cfg;
    char host[256];                 /* cfg.host, owned */
    net_handler h;
    alog *log;                      /* borrowed */
    uv_tcp_t listener;
    uv_prepare_t prepare;           /* flushes output before the loop polls */
    uv_check_t check;               /* ... and right after it handled I/O */
    uv_timer_t sweep;               /* idle / request timeouts */
    int listening;
    net_conn *conns;                /* every open connection */
    net_conn *flushq;               /* connections with output waiting (singly linked) */
    size_t nconns;
    long long fd_limit;             /* RLIMIT_NOFILE at start */
    uint64_t last_emfile_log;       /* loop ms of the last descriptor warning */
    uv_tcp_t *spare;                /* accepts-and-closes when a conn cannot be allocated
                                     * (NULL while it is closing) */
    int accept_waiting;             /* a connection waits for the spare */
    int stopping;
    int draining;                   /* net_close_all: 1 closing connections, 2 done */
    uint64_t drain_deadline;        /* loop ms */
    void (*on_drained)(void *ud);
    void *drained_ud;
    uint64_t rejected;
};

int net__fail_allocs;

/* --- connections ----------------------------------------------------------------------- */

static void conn_free(net_conn *c) {
    free(c->in);
    free(c->out.p);
    free(c);
}

void net_ref(net_conn *c) {
    c->refs++;
}

int net_unref(net_conn *c) {
    if (--c->refs == 0 && c->closed) {
        conn_free(c);
        return 1;
    }
    return 0;
}

static void close_server_handles(net_server *s);

static void on_close(uv_handle_t *h) {
    net_conn *c = (net_conn *)h;
    net_server *s = c->srv;
    c->closed = 1;
    if (c->refs == 0)
        conn_free(c);
    if (s->draining == 1 && s->conns == NULL)
        close_server_handles(s);
}

void net_close(net_conn *c) {
    if (c->closing)
        return;
    net_server *s = c->srv;
    c->closing = 1;
    if (c->prev)
        c->prev->next = c->next;
    else if (s->conns == c)
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (!c->rejected) {
        s->nconns--;
        if (s->cfg.shared_conns)
            (*s->cfg.shared_conns)--;
    }
    if (s->h.on_close && !c->rejected)
        s->h.on_close(c);
    if (c->in_flushq) {
        for (net_conn **pp = &s->flushq; *pp; pp = &(*pp)->flush_next) {
            if (*pp == c) {
                *pp = c->flush_next;
                break;
            }
        }
        c->in_flushq = 0;
    }
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* --- output ----------------------------------------------------------------------------- */

struct wreq {
    uv_write_t req;
    net_conn *c;
    char *buf;                      /* owned */
    size_t len;
};

static int done_writing(const net_conn *c) {
    return c->close_after_flush && c->out.len == 0 && c->out_pending == 0 &&
           (c->busy == 0 || c->overflowed);
}

static void on_write(uv_write_t *req, int status) {
    struct wreq *w = (struct wreq *)req;
    net_conn *c = w->c;
    c->out_pending -= w->len;
    free(w->buf);
    free(w);
    if (status < 0 || done_writing(c))
        net_close(c);
}

/* Hands the queued output to the kernel: inline when it takes it all, else the rest
 * goes to a uv_write that owns the buffer. */
static void conn_flush(net_conn *c) {
    if (c->closing)
        return;
    if (c->out.len > 0) {
        size_t off = 0;
        if (c->out_pending == 0) {
            uv_buf_t b = uv_buf_init(c->out.p, (unsigned)c->out.len);
            int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
            if (n < 0 && n != UV_EAGAIN) {
                net_close(c);
                return;
            }
            if (n > 0)
                off = (size_t)n;
        }
        if (off == c->out.len) {
            c->out.len = 0;
        } else {
            struct wreq *w = malloc(sizeof(*w));
            if (w == NULL) {
                net_close(c);
                return;
            }
            w->c = c;
            w->len = c->out.len - off;
            if (off > 0)
                memmove(c->out.p, c->out.p + off, w->len);
            w->buf = c->out.p;
            c->out = (ubuf){0};
            uv_buf_t b = uv_buf_init(w->buf, (unsigned)w->len);
            c->out_pending += w->len;
            if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
                c->out_pending -= w->len;
                free(w->buf);
                free(w);
                net_close(c);
                return;
            }
        }
    }
    if (done_writing(c))
        net_close(c);
}

static void flush_all(net_server *s) {
    while (s->flushq) {
        net_conn *c = s->flushq;
        s->flushq = c->flush_next;
        c->flush_next = NULL;
        c->in_flushq = 0;
        conn_flush(c);
    }
    alog_flush(s->log);
}

static void schedule_flush(net_conn *c) {
    if (!c->in_flushq && !c->closing) {
        c->in_flushq = 1;
        c->flush_next = c->srv->flushq;
        c->srv->flushq = c;
    }
}

void net_close_after_flush(net_conn *c) {
    c->close_after_flush = 1;
    schedule_flush(c);
}

/* The connection will not take more output: what libuv already holds (whole replies) is
 * still delivered, the rest is dropped, the front-end's last line says why, then the
 * connection closes. A client that does not read even that is cut at OVERFLOW_DRAIN_MS. */
static void conn_overflow(net_conn *c, size_t wanted) {
    net_server *s = c->srv;
    /* bytes: what the connection would have held with the output that did not fit */
    alog_event(s->log, ALOG_WARN, "limit",
               json_pack("{s:s, s:s, s:I, s:b}", "limit", "max_output_buffer", "client", c->peer,
                         "bytes", (json_int_t)wanted, "watcher", c->long_lived));
    c->overflowed = 1;
    c->overflow_at = uv_now(s->loop);
    c->out.len = 0;
    if (s->h.on_overflow)
        s->h.on_overflow(c, &c->out);
    net_close_after_flush(c);
    net_read_stop(c);
}

int net_can_write(const net_conn *c) {
    return !(c->closing || c->close_after_flush || c->overflowed);
}

int net_write(net_conn *c, const char *data, size_t len) {
    if (!net_can_write(c))
        return -1;
    if ((long long)(c->out.len + c->out_pending + len) > c->srv->cfg.max_output_buffer) {
        conn_overflow(c, c->out.len + c->out_pending + len);
        return -1;
    }
    if (ubuf_add(&c->out, data, len) != 0) {
        net_close(c);
        return -1;
    }
    schedule_flush(c);
    return 0;
}

int net_commit(net_conn *c, size_t before) {
    if ((long long)(c->out.len + c->out_pending) > c->srv->cfg.max_output_buffer) {
        size_t wanted = c->out.len + c->out_pending;
        c->out.len = before; /* the reply that does not fit is not sent */
        conn_overflow(c, wanted);
        return -1;
    }
    schedule_flush(c);
    return 0;
}

/* --- input -------------------------------------------------------------------------------- */

void net_consume(net_conn *c, size_t n) {
    if (n == 0)
        return;
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
    c->last_active = uv_now(c->srv->loop);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    net_conn *c = (net_conn *)h;
    size_t max = c->srv->h.max_input;
    if (c->in_cap - c->in_len < IN_CHUNK && c->in_cap < max) {
        size_t ncap = c->in_cap ? c->in_cap * 2 : IN_CHUNK;
        if (ncap > max)
            ncap = max;
        char *nb = realloc(c->in, ncap);
        if (nb != NULL) {
            c->in = nb;
            c->in_cap = ncap;
        }
    }
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    net_conn *c = (net_conn *)st;
    if (nread == 0)
        return;
    if (nread < 0) {
        /* EOF: what was read is handled (a client may half-close after its requests),
         * then the connection closes; a partial last request is dropped. Errors: close
         * now. */
        net_read_stop(c);
        if (nread != UV_EOF) {
            net_close(c);
            return;
        }
        c->eof = 1;
        if (c->busy == 0)
            net_close_after_flush(c);
        return;
    }
    c->in_len += (size_t)nread; /* the front-end's framing catches an over-long request */
    c->srv->h.on_input(c);
}

void net_read_stop(net_conn *c) {
    if (!c->read_stopped && !c->closing) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->read_stopped = 1;
    }
}

void net_read_resume(net_conn *c) {
    if (c->closing || !c->read_stopped || c->eof || c->close_after_flush || c->srv->stopping)
        return;
    c->read_stopped = 0;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* --- accepting ----------------------------------------------------------------------------- */

static void format_peer(net_conn *c) {
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    snprintf(c->peer, sizeof(c->peer), "?");
    snprintf(c->peer_ip, sizeof(c->peer_ip), "?");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, c->peer_ip, sizeof(c->peer_ip));
        snprintf(c->peer, sizeof(c->peer), "%s:%d", c->peer_ip, ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, c->peer_ip, sizeof(c->peer_ip));
        if (strncmp(c->peer_ip, "::ffff:", 7) == 0 && strchr(c->peer_ip + 7, '.') != NULL) {
            memmove(c->peer_ip, c->peer_ip + 7, strlen(c->peer_ip + 7) + 1);
            snprintf(c->peer, sizeof(c->peer), "%s:%d", c->peer_ip, ntohs(a->sin6_port));
        } else {
            snprintf(c->peer, sizeof(c->peer), "[%s]:%d", c->peer_ip, ntohs(a->sin6_port));
        }
    }
}

/* Descriptors kept free for the store, the log and health probes. */
static long long fd_headroom(const net_server *s) {
    long long h = s->fd_limit / 4;
    return h > 32 ? 32 : h;
}

/* A connection that could not be allocated is accepted into the spare handle (so libuv
 * goes on polling the listener: without an accept it stops for good) and closed at
 * once. While the spare is still closing, the next one waits in the listener (libuv
 * holds it and polls no more) and is accepted-and-closed as soon as the spare is free. */
static void refuse_unallocated(net_server *s);

static void spare_closed(uv_handle_t *h) {
    net_server *s = h->data;
    s->spare = (uv_tcp_t *)h;
    if (s->accept_waiting) {
        s->accept_waiting = 0;
        refuse_unallocated(s);
    }
}

static void refuse_unallocated(net_server *s) {
    uv_tcp_t *t = s->spare;
    if (t == NULL) {
        s->accept_waiting = 1;
        return;
    }
    s->rejected++;
    alog_event(s->log, ALOG_WARN, "limit",
               json_pack("{s:s, s:s}", "limit", "memory", "error",
                         "out of memory: a new connection was refused"));
    s->spare = NULL;
    uv_tcp_init(s->loop, t);
    t->data = s;
    if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)t) != 0)
        s->accept_waiting = 0; /* nothing was waiting after all */
    uv_close((uv_handle_t *)t, spare_closed);
}

static void refuse(net_conn *c, const char *why) {
    net_server *s = c->srv;
    c->rejected = 1;
    s->rejected++;
    size_t before = c->out.len;
    if (s->h.on_reject) {
        s->h.on_reject(c, &c->out, why);
        net_commit(c, before);
    }
    net_close_after_flush(c);
}

static void on_connection(uv_stream_t *server, int status) {
    net_server *s = server->data;
    if (status < 0) {
        /* libuv already accepted-and-closed with its reserve descriptor on EMFILE, so
         * the loop does not spin; say so (rate-limited by the kernel's backlog). */
        s->rejected++;
        alog_event(s->log, ALOG_WARN, "accept_failed", json_pack("{s:s}", "error", uv_strerror(status)));
        return;
    }
    net_conn *c = NULL;
    if (net__fail_allocs > 0)
        net__fail_allocs--;
    else
        c = calloc(1, s->h.conn_size);
    if (c == NULL) {
        refuse_unallocated(s);
        return;
    }
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        c->rejected = 1;
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    format_peer(c);
    c->peer_hash = dict_hash(c->peer_ip, strlen(c->peer_ip));
    c->last_active = uv_now(s->loop);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    /* Descriptor headroom: the database, the log and health probes need descriptors too,
     * so clients stop short of the limit. Past it they are told and closed; when the
     * table is completely full libuv accepts-and-closes with its reserve descriptor. */
    uv_os_fd_t fd = -1;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 &&
        (long long)fd >= s->fd_limit - fd_headroom(s)) {
        uint64_t now = uv_now(s->loop);
        if (now - s->last_emfile_log >= 1000) { /* at most one line a second */
            s->last_emfile_log = now;
            alog_event(s->log, ALOG_WARN, "limit",
                       json_pack("{s:s, s:s, s:s, s:I}", "limit", "file_descriptors", "error",
                                 "too many open files (EMFILE): new connections are refused",
                                 "client", c->peer, "rejected", (json_int_t)s->rejected + 1));
        }
        refuse(c, "registry is out of file descriptors; try again later");
        return;
    }
    size_t open = s->cfg.shared_conns ? *s->cfg.shared_conns : s->nconns;
    if ((long long)open >= s->cfg.max_conns || s->stopping) {
        alog_event(s->log, ALOG_WARN, "limit",
                   json_pack("{s:s, s:s, s:I}", "limit", "max_conns", "client", c->peer, "max",
                             (json_int_t)s->cfg.max_conns));
        refuse(c, s->stopping ? "registry is shutting down"
                              : "too many connections (--max-conns reached); try again later");
        return;
    }
    s->nconns++;
    if (s->cfg.shared_conns)
        (*s->cfg.shared_conns)++;
    if (s->h.on_open)
        s->h.on_open(c);
    c->read_stopped = 1;
    net_read_resume(c);
}

/* --- the server -------------------------------------------------------------------------- */

int net_new(uv_loop_t *loop, const net_config *cfg, const net_handler *handler, alog *log,
            net_server **out, char *err, size_t errlen) {
    net_server *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->spare = calloc(1, sizeof(*s->spare))) == NULL) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->loop = loop;
    s->cfg = *cfg;
    snprintf(s->host, sizeof(s->host), "%s", cfg->host ? cfg->host : "127.0.0.1");
    s->cfg.host = s->host;
    s->h = *handler;
    s->log = log;
    struct rlimit nofile;
    s->fd_limit = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY
                      ? (long long)nofile.rlim_cur
                      : (1LL << 30);
    *out = s;
    return 0;
}

void net_free(net_server *s) {
    if (s == NULL)
        return;
    free(s->spare);
    free(s);
}

void *net_ud(const net_server *s) {
    return s->h.ud;
}

size_t net_conns(const net_server *s) {
    return s->nconns;
}

uint64_t net_rejected(const net_server *s) {
    return s->rejected;
}

int net_stopping(const net_server *s) {
    return s->stopping;
}

static void on_prepare(uv_prepare_t *h) {
    flush_all(h->data);
}

static void on_check(uv_check_t *h) {
    flush_all(h->data);
}

/* Once per tick: drop idle connections and slow (unfinished) requests. */
static void on_sweep(uv_timer_t *t) {
    net_server *s = t->data;
    uint64_t now = uv_now(s->loop);
    if (s->draining == 1 && now >= s->drain_deadline) {
        while (s->conns)
            net_close(s->conns);
        return;
    }
    for (net_conn *c = s->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->closing || c->rejected)
            continue;
        const char *why = NULL;
        if (c->overflowed) {
            if (now - c->overflow_at > OVERFLOW_DRAIN_MS)
                net_close(c);
            continue;
        }
        if (c->partial_since && s->cfg.request_timeout_ms &&
            now - c->partial_since > s->cfg.request_timeout_ms && !c->paused)
            why = "request_timeout";
        else if (!c->long_lived && c->busy == 0 && s->cfg.idle_timeout_ms &&
                 now - c->last_active > s->cfg.idle_timeout_ms)
            why = "idle_timeout";
        if (why != NULL) {
            alog_event(s->log, ALOG_INFO, "limit",
                       json_pack("{s:s, s:s}", "limit", why, "client", c->peer));
            if (s->h.on_timeout != NULL && why[0] == 'r') {
                s->h.on_timeout(c, &c->out);
                c->partial_since = 0;
                net_read_stop(c);
                net_close_after_flush(c);
            } else {
                net_close(c);
            }
        }
    }
}

int net_listen(net_server *s, char *bound, size_t len, char *err, size_t errlen) {
    struct addrinfo hints = {0}, *res = NULL;
    char port[16];
    snprintf(port, sizeof(port), "%d", s->cfg.port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(s->host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve listen address %s: %s", s->host, gai_strerror(gai));
        return UV_EINVAL;
    }
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    s->listening = 1;
    int rc = uv_tcp_bind(&s->listener, res->ai_addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    freeaddrinfo(res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", s->host, s->cfg.port, uv_strerror(rc));
        return rc;
    }
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    char ip[INET6_ADDRSTRLEN];
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &sl);
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
        snprintf(bound, len, "[%s]:%d", ip, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
        snprintf(bound, len, "%s:%d", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
    uv_prepare_init(s->loop, &s->prepare);
    s->prepare.data = s;
    uv_prepare_start(&s->prepare, on_prepare);
    uv_check_init(s->loop, &s->check);
    s->check.data = s;
    uv_check_start(&s->check, on_check);
    uv_timer_init(s->loop, &s->sweep);
    s->sweep.data = s;
    uint64_t tick = 1000;
    if (s->cfg.idle_timeout_ms && s->cfg.idle_timeout_ms / 4 < tick)
        tick = s->cfg.idle_timeout_ms / 4;
    if (s->cfg.request_timeout_ms && s->cfg.request_timeout_ms / 4 < tick)
        tick = s->cfg.request_timeout_ms / 4;
    if (tick < 20)
        tick = 20;
    uv_timer_start(&s->sweep, on_sweep, tick, tick);
    uv_unref((uv_handle_t *)&s->sweep);
    return 0;
}

void net_stop_accepting(net_server *s) {
    s->stopping = 1;
    if (s->listening && !uv_is_closing((uv_handle_t *)&s->listener))
        uv_close((uv_handle_t *)&s->listener, NULL);
    /* What was read is handled; nothing more is read. */
    for (net_conn *c = s->conns; c != NULL; c = c->next)
        net_read_stop(c);
}

int net_busy(const net_server *s) {
    for (const net_conn *c = s->conns; c != NULL; c = c->next)
        if (c->busy > 0)
            return 1;
    return 0;
}

static void close_server_handles(net_server *s) {
    if (s->draining == 2)
        return;
    s->draining = 2;
    uv_close((uv_handle_t *)&s->prepare, NULL);
    uv_close((uv_handle_t *)&s->check, NULL);
    uv_close((uv_handle_t *)&s->sweep, NULL);
    if (s->on_drained)
        s->on_drained(s->drained_ud);
}

void net_close_all(net_server *s, uint64_t deadline_ms, void (*done)(void *ud), void *ud) {
    /* Every connection closes once its replies are written; past the deadline the rest
     * are cut (a client that does not read must not hold up the exit). */
    s->on_drained = done;
    s->drained_ud = ud;
    s->drain_deadline = uv_now(s->loop) + deadline_ms;
    s->draining = 1;
    for (net_conn *c = s->conns; c != NULL; c = c->next)
        net_close_after_flush(c);
    flush_all(s);
    if (s->conns == NULL)
        close_server_handles(s);
}
