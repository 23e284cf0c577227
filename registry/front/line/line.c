/* server.c — registryd's network side: the listener, connections, line framing, the
 * per-connection output buffer, limits and timeouts, and event fan-out to watchers.
 *
 * Ordering: replies go out in request order. Synchronous requests are answered at once;
 * a request that goes to the writer marks its connection busy, and a later request that
 * would be answered synchronously waits (parsing pauses) until the earlier ones are
 * acknowledged. Writes that follow writes are queued at once, so a pipeline of
 * registrations still shares group commits.
 *
 * Output: replies are appended to the connection's buffer and written once per loop
 * iteration (uv_prepare/uv_check), so a pipeline of N requests costs one write(2), and
 * most writes complete inline with uv_try_write; only the remainder goes to uv_write.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "base/dict.h"
#include "base/util.h"

#define IN_CHUNK        (16u << 10)         /* read granularity */
#define IN_MAX          (PROTO_MAX_LINE + IN_CHUNK) /* input buffer cap */
#define OVERFLOW_DRAIN_MS 5000      /* an overflowed client gets this long to take its last line */

struct conn {
    uv_tcp_t tcp;                   /* must stay first: handle->data is not used */
    regd *d;
    conn *prev, *next;              /* d->conns */
    conn *flush_next;               /* d->flushq link */
    int in_flushq;
    char peer[DAEMON_PEER_LEN];     /* "IP:PORT" */
    char peer_ip[INET6_ADDRSTRLEN];
    uint64_t peer_hash;             /* dict_hash of peer_ip */
    char *in;                       /* unparsed input */
    size_t in_len, in_cap;
    size_t scanned;                 /* leading bytes of in known to hold no newline */
    ubuf out;                       /* queued output not yet handed to the kernel/libuv */
    size_t out_pending;             /* bytes in uv_write requests in flight */
    int refs;                       /* async operations holding the struct */
    int closing;                    /* uv_close called (or about to be) */
    int closed;                     /* close callback ran */
    int close_after_flush;          /* close once the output is written */
    int busy;                       /* requests waiting on the writer */
    int paused;                     /* parsing stopped until busy drops to 0 */
    int read_stopped;
    int eof;                        /* peer finished sending */
    int rejected;                   /* over --max-conns: not counted, not read */
    int overflowed;                 /* went over --max-output-buffer: closing */
    uint64_t overflow_at;           /* loop ms when it did */
    int watcher;
    char *watch_service;            /* owned; NULL = every service */
    uint64_t last_active;           /* loop ms of the last complete request */
    uint64_t line_started;          /* loop ms when the current partial line began, 0 = none */
};

struct wreq {
    uv_write_t req;
    conn *c;
    char *buf;                      /* owned */
    size_t len;
};

static void conn_close(conn *c);
static void process_input(conn *c);
static void on_read_restart(conn *c);

const char *conn_peer(const conn *c) {
    return c->peer;
}

const char *conn_peer_ip(const conn *c) {
    return c->peer_ip;
}

uint64_t conn_peer_hash(const conn *c) {
    return c->peer_hash;
}

int conn_is_open(const conn *c) {
    return !c->closing;
}

static void conn_free(conn *c) {
    free(c->in);
    free(c->out.p);
    free(c->watch_service);
    free(c);
}

void conn_ref(conn *c) {
    c->refs++;
}

void conn_unref(conn *c) {
    if (--c->refs == 0 && c->closed)
        conn_free(c);
}

static void close_server_handles(regd *d);

static void on_close(uv_handle_t *h) {
    conn *c = (conn *)h;
    regd *d = c->d;
    c->closed = 1;
    if (c->refs == 0)
        conn_free(c);
    if (d->draining == 1 && d->conns == NULL)
        close_server_handles(d);
}

/* Starts closing: unlinks the connection; its memory goes in on_close (or when the last
 * async operation holding it completes). */
static void conn_close(conn *c) {
    if (c->closing)
        return;
    regd *d = c->d;
    c->closing = 1;
    if (c->prev)
        c->prev->next = c->next;
    else if (d->conns == c)
        d->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (!c->rejected)
        d->nconns--;
    if (c->watcher)
        d->nwatchers--;
    /* Drop it from the flush queue. */
    if (c->in_flushq) {
        for (conn **pp = &d->flushq; *pp; pp = &(*pp)->flush_next) {
            if (*pp == c) {
                *pp = c->flush_next;
                break;
            }
        }
        c->in_flushq = 0;
    }
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_write(uv_write_t *req, int status) {
    struct wreq *w = (struct wreq *)req;
    conn *c = w->c;
    c->out_pending -= w->len;
    free(w->buf);
    free(w);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->close_after_flush && c->out.len == 0 && c->out_pending == 0 &&
        (c->busy == 0 || c->overflowed))
        conn_close(c);
}

/* Hands the queued output to the kernel: inline when it takes it all, else the rest
 * goes to a uv_write that owns the buffer. */
static void conn_flush(conn *c) {
    if (c->closing)
        return;
    if (c->out.len > 0) {
        size_t off = 0;
        if (c->out_pending == 0) {
            uv_buf_t b = uv_buf_init(c->out.p, (unsigned)c->out.len);
            int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
            if (n < 0 && n != UV_EAGAIN) {
                conn_close(c);
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
                conn_close(c);
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
                conn_close(c);
                return;
            }
        }
    }
    if (c->close_after_flush && c->out.len == 0 && c->out_pending == 0 &&
        (c->busy == 0 || c->overflowed))
        conn_close(c);
}

void server_flush(regd *d) {
    while (d->flushq) {
        conn *c = d->flushq;
        d->flushq = c->flush_next;
        c->flush_next = NULL;
        c->in_flushq = 0;
        conn_flush(c);
    }
    if (d->log)
        alog_flush(d->log);
}

static void schedule_flush(conn *c) {
    if (!c->in_flushq && !c->closing) {
        c->in_flushq = 1;
        c->flush_next = c->d->flushq;
        c->d->flushq = c;
    }
}

/* Appends without the cap check (for the final error line of a connection). */
static int out_append(conn *c, const char *data, size_t len) {
    if (ubuf_add(&c->out, data, len) != 0)
        return -ENOMEM;
    schedule_flush(c);
    return 0;
}

/* The connection will not take more output: what libuv already holds (whole lines) is
 * still delivered, the rest is dropped, one line says why, then the connection closes.
 * A client that does not read even that is cut at OVERFLOW_DRAIN_MS. */
static void conn_overflow(conn *c) {
    regd *d = c->d;
    alog_event(d->log, ALOG_WARN, "limit",
               json_pack("{s:s, s:s, s:I, s:b}", "limit", "max_output_buffer", "client", c->peer,
                         "bytes", (json_int_t)(c->out.len + c->out_pending), "watcher",
                         c->watcher));
    c->overflowed = 1;
    c->overflow_at = uv_now(d->loop);
    if (c->watcher) { /* no longer a subscriber, though its last line is still going out */
        c->watcher = 0;
        d->nwatchers--;
    }
    c->out.len = 0;
    char line[256];
    json_t *e = proto_error(PERR_UNAVAILABLE, "output buffer limit reached (the client is not "
                                              "reading); disconnecting", NULL);
    size_t n = e ? json_dumpb(e, line, sizeof(line) - 1, JSON_COMPACT) : 0;
    json_decref(e);
    if (n > 0 && n < sizeof(line) - 1) {
        line[n++] = '\n';
        out_append(c, line, n);
    }
    d->errors[PERR_UNAVAILABLE]++;
    c->close_after_flush = 1;
    if (!c->read_stopped && !c->closing) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->read_stopped = 1;
    }
}

int conn_write(conn *c, const char *data, size_t len) {
    if (c->closing || c->close_after_flush || c->overflowed)
        return -1;
    if ((long long)(c->out.len + c->out_pending + len) > c->d->cfg.max_output_buffer) {
        conn_overflow(c);
        return -1;
    }
    if (out_append(c, data, len) != 0) {
        conn_close(c);
        return -1;
    }
    return 0;
}

int conn_reply(conn *c, json_t *resp, json_t *request_id) {
    if (c->closing || c->close_after_flush || c->overflowed)
        return -1;
    /* Encoded straight into the output buffer: one pass, no copy. */
    size_t before = c->out.len;
    if (proto_encode(resp, request_id, &c->out.p, &c->out.len, &c->out.cap) != 0) {
        conn_close(c);
        return -1;
    }
    if ((long long)(c->out.len + c->out_pending) > c->d->cfg.max_output_buffer) {
        c->out.len = before; /* the reply that does not fit is not sent */
        conn_overflow(c);
        return -1;
    }
    schedule_flush(c);
    return 0;
}

int conn_reply_error(conn *c, proto_err e, const char *msg, json_t *request_id) {
    c->d->errors[e]++;
    json_t *o = proto_error(e, msg, request_id);
    if (o == NULL) {
        conn_close(c);
        return -1;
    }
    int rc = conn_reply(c, o, NULL);
    json_decref(o);
    return rc;
}

int conn_watch(conn *c, const char *service) {
    if (service != NULL && (c->watch_service = strdup(service)) == NULL)
        return -ENOMEM;
    if (!c->watcher)
        c->d->nwatchers++;
    c->watcher = 1;
    return 0;
}

void server_broadcast(regd *d, const char *service, const char *line, size_t len) {
    if (d->nwatchers == 0)
        return;
    for (conn *c = d->conns, *next; c != NULL; c = next) {
        next = c->next; /* conn_write may close c */
        if (!c->watcher || c->closing)
            continue;
        if (c->watch_service && (service == NULL || strcmp(service, c->watch_service) != 0))
            continue;
        conn_write(c, line, len);
    }
}

void conn_async_done(conn *c) {
    c->busy--;
    if (c->closing)
        return;
    if (c->busy == 0 && c->paused) {
        c->paused = 0;
        process_input(c);
        if (!c->closing && c->read_stopped && !c->paused && !c->eof && !c->close_after_flush &&
            !c->d->stopping) {
            c->read_stopped = 0;
            on_read_restart(c);
        }
    }
    if (!c->closing && c->busy == 0 && (c->eof || c->close_after_flush)) {
        c->close_after_flush = 1;
        schedule_flush(c);
    }
}

/* The first bytes of a bad line, for the log (never the whole line: it may be huge). */
static void handle_too_large(conn *c) {
    ops_bad_request(c->d, c, PERR_TOO_LARGE, "request line longer than 65536 bytes", c->in, 64);
    conn_reply_error(c, PERR_TOO_LARGE, "request line longer than 65536 bytes (the limit, newline "
                                        "included); closing the connection", NULL);
    c->close_after_flush = 1;
    c->in_len = 0;
    if (!c->read_stopped) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->read_stopped = 1;
    }
    schedule_flush(c);
}

/* Parses and handles every complete line in the input buffer, in order, until the
 * connection must wait for an asynchronous reply. */
static void process_input(conn *c) {
    regd *d = c->d;
    size_t pos = 0;
    /* A line arriving in small pieces: look only at the new bytes for its end, so a
     * byte-at-a-time client costs O(n), not O(n^2). */
    if (!c->paused && c->scanned > 0 && c->in_len < PROTO_MAX_LINE &&
        memchr(c->in + c->scanned, '\n', c->in_len - c->scanned) == NULL) {
        c->scanned = c->in_len;
        return;
    }
    c->scanned = 0;
    while (!c->closing && !c->close_after_flush && !c->paused) {
        char *start = c->in + pos;
        size_t len = 0;
        int f = proto_frame(start, c->in_len - pos, &len);
        if (f == PROTO_FRAME_MORE) {
            c->scanned = c->in_len - pos; /* after the compaction below */
            break;
        }
        if (f == PROTO_FRAME_TOO_LARGE) {
            if (c->busy) { /* its error must not overtake earlier replies */
                c->paused = 1;
                break;
            }
            handle_too_large(c);
            return;
        }
        proto_request req;
        char msg[PROTO_MSG_LEN];
        proto_err e = PERR_NONE;
        if (!proto_memo_get(d->memo, start, len, &req)) {
            e = proto_decode(start, len, &req, msg);
            if (e == PERR_NONE)
                proto_memo_put(d->memo, start, len, &req);
        }
        int rc;
        if (e != PERR_NONE) {
            if (c->busy) {
                rc = 2;
            } else {
                d->requests++;
                ops_bad_request(d, c, e, msg, start, len);
                conn_reply_error(c, e, msg, req.request_id);
                rc = 0;
            }
        } else {
            d->requests++; /* counted before it runs: stats counts itself */
            rc = ops_handle(d, c, &req, c->busy);
            if (rc == 2)
                d->requests--; /* it will run again */
        }
        proto_request_free(&req);
        if (rc == 2) {
            c->paused = 1;
            break;
        }
        if (rc == 1)
            c->busy++;
        pos += len + 1;
        c->last_active = uv_now(d->loop);
    }
    if (c->closing)
        return;
    if (pos > 0) {
        memmove(c->in, c->in + pos, c->in_len - pos);
        c->in_len -= pos;
    }
    c->line_started = c->in_len > 0 ? (c->line_started ? c->line_started : uv_now(d->loop)) : 0;
    /* Paused with a full buffer: stop reading until the pipeline drains. */
    if (c->paused && c->in_len >= IN_MAX - IN_CHUNK && !c->read_stopped) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->read_stopped = 1;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    conn *c = (conn *)h;
    if (c->in_cap - c->in_len < IN_CHUNK && c->in_cap < IN_MAX) {
        size_t ncap = c->in_cap ? c->in_cap * 2 : IN_CHUNK;
        if (ncap > IN_MAX)
            ncap = IN_MAX;
        char *nb = realloc(c->in, ncap);
        if (nb != NULL) {
            c->in = nb;
            c->in_cap = ncap;
        }
    }
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    conn *c = (conn *)s;
    if (nread == 0)
        return;
    if (nread < 0) {
        /* EOF: answer what was read (a client may half-close after its requests), then
         * close; a partial last line is dropped. Errors: close now. */
        uv_read_stop(s);
        c->read_stopped = 1;
        if (nread != UV_EOF) {
            conn_close(c);
            return;
        }
        c->eof = 1;
        if (c->busy == 0) {
            c->close_after_flush = 1;
            schedule_flush(c);
        }
        return;
    }
    c->in_len += (size_t)nread; /* process_input's framing catches an over-long line */
    process_input(c);
}

static void on_read_restart(conn *c) {
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void format_peer(conn *c) {
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
static long long fd_headroom(const regd *d) {
    long long h = d->fd_limit / 4;
    return h > 32 ? 32 : h;
}

static void on_connection(uv_stream_t *server, int status) {
    regd *d = server->data;
    if (status < 0) {
        /* libuv already accepted-and-closed with its reserve descriptor on EMFILE, so
         * the loop does not spin; say so (rate-limited by the kernel's backlog). */
        d->rejected_conns++;
        alog_event(d->log, ALOG_WARN, "accept_failed", json_pack("{s:s}", "error", uv_strerror(status)));
        return;
    }
    conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->d = d;
    uv_tcp_init(d->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        c->rejected = 1;
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    format_peer(c);
    c->peer_hash = dict_hash(c->peer_ip, strlen(c->peer_ip));
    /* Descriptor headroom: the database, the log and health probes need descriptors too,
     * so clients stop short of the limit. Past it they are told and closed; when the
     * table is completely full libuv accepts-and-closes with its reserve descriptor. */
    uv_os_fd_t fd = -1;
    int low_fds = uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 &&
                  (long long)fd >= d->fd_limit - fd_headroom(d);
    c->last_active = uv_now(d->loop);
    c->next = d->conns;
    if (d->conns)
        d->conns->prev = c;
    d->conns = c;
    if (low_fds) {
        c->rejected = 1;
        d->rejected_conns++;
        uint64_t now = uv_now(d->loop);
        if (now - d->last_emfile_log >= 1000) { /* at most one line a second */
            d->last_emfile_log = now;
            alog_event(d->log, ALOG_WARN, "limit",
                       json_pack("{s:s, s:s, s:s, s:I}", "limit", "file_descriptors", "error",
                                 "too many open files (EMFILE): new connections are refused",
                                 "client", c->peer, "rejected", (json_int_t)d->rejected_conns));
        }
        conn_reply_error(c, PERR_UNAVAILABLE, "registry is out of file descriptors; try again later",
                         NULL);
        c->close_after_flush = 1;
        return;
    }
    if ((long long)d->nconns >= d->cfg.max_conns || d->stopping) {
        c->rejected = 1;
        d->rejected_conns++;
        alog_event(d->log, ALOG_WARN, "limit",
                   json_pack("{s:s, s:s, s:I}", "limit", "max_conns", "client", c->peer, "max",
                             (json_int_t)d->cfg.max_conns));
        conn_reply_error(c, PERR_UNAVAILABLE,
                         d->stopping ? "registry is shutting down"
                                     : "too many connections (--max-conns reached); try again later",
                         NULL);
        c->close_after_flush = 1;
        return;
    }
    d->nconns++;
    on_read_restart(c);
}

int server_listen(regd *d, char *bound, size_t len, char *err, size_t errlen) {
    struct addrinfo hints = {0}, *res = NULL;
    char port[16];
    snprintf(port, sizeof(port), "%d", d->cfg.listen_port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(d->cfg.listen_host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve listen address %s: %s", d->cfg.listen_host,
                 gai_strerror(gai));
        return UV_EINVAL;
    }
    uv_tcp_init(d->loop, &d->listener);
    d->listener.data = d;
    int rc = uv_tcp_bind(&d->listener, res->ai_addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&d->listener, 511, on_connection);
    freeaddrinfo(res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", d->cfg.listen_host, d->cfg.listen_port,
                 uv_strerror(rc));
        return rc;
    }
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    char ip[INET6_ADDRSTRLEN];
    uv_tcp_getsockname(&d->listener, (struct sockaddr *)&ss, &sl);
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
        snprintf(bound, len, "[%s]:%d", ip, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
        snprintf(bound, len, "%s:%d", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
    return 0;
}

static void on_prepare(uv_prepare_t *h) {
    server_flush(h->data);
}

static void on_check(uv_check_t *h) {
    regd *d = h->data;
    d->loop_iter++; /* right after the poll: a new iteration's budgets start here */
    server_flush(d);
}

/* Once per tick: drop idle connections and slow (unfinished) request lines, and write
 * the lookup summary when its interval is up. */
static void on_sweep(uv_timer_t *t) {
    regd *d = t->data;
    uint64_t now = uv_now(d->loop);
    if (d->draining == 1 && now >= d->drain_deadline) {
        while (d->conns)
            conn_close(d->conns);
        return;
    }
    for (conn *c = d->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->closing || c->rejected)
            continue;
        const char *why = NULL;
        if (c->overflowed) {
            if (now - c->overflow_at > OVERFLOW_DRAIN_MS)
                conn_close(c);
            continue;
        }
        if (c->line_started && d->cfg.request_timeout_ms &&
            now - c->line_started > d->cfg.request_timeout_ms && !c->paused)
            why = "request_timeout";
        else if (!c->watcher && c->busy == 0 && d->cfg.idle_timeout_ms &&
                 now - c->last_active > d->cfg.idle_timeout_ms)
            why = "idle_timeout";
        if (why != NULL) {
            alog_event(d->log, ALOG_INFO, "limit",
                       json_pack("{s:s, s:s}", "limit", why, "client", c->peer));
            conn_close(c);
        }
    }
    if (!d->cfg.log_lookups && now - d->last_summary_ms >= d->cfg.log_lookups_interval_ms) {
        d->last_summary_ms = now;
        ops_log_lookup_summary(d);
    }
}

int server_start(regd *d) {
    uv_prepare_init(d->loop, &d->prepare);
    d->prepare.data = d;
    uv_prepare_start(&d->prepare, on_prepare);
    uv_check_init(d->loop, &d->check);
    d->check.data = d;
    uv_check_start(&d->check, on_check);
    uv_timer_init(d->loop, &d->sweep);
    d->sweep.data = d;
    uint64_t tick = 1000;
    if (d->cfg.idle_timeout_ms && d->cfg.idle_timeout_ms / 4 < tick)
        tick = d->cfg.idle_timeout_ms / 4;
    if (d->cfg.request_timeout_ms && d->cfg.request_timeout_ms / 4 < tick)
        tick = d->cfg.request_timeout_ms / 4;
    if (tick < 20)
        tick = 20;
    uv_timer_start(&d->sweep, on_sweep, tick, tick);
    uv_unref((uv_handle_t *)&d->sweep);
    return 0;
}

void server_stop_accepting(regd *d) {
    if (!uv_is_closing((uv_handle_t *)&d->listener))
        uv_close((uv_handle_t *)&d->listener, NULL);
    /* What was read is answered; nothing more is read. */
    for (conn *c = d->conns; c != NULL; c = c->next) {
        if (!c->read_stopped && !c->closing) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->read_stopped = 1;
        }
    }
}

int server_busy(const regd *d) {
    for (const conn *c = d->conns; c != NULL; c = c->next)
        if (c->busy > 0)
            return 1;
    return 0;
}

static void close_server_handles(regd *d) {
    if (d->draining == 2)
        return;
    d->draining = 2;
    uv_close((uv_handle_t *)&d->prepare, NULL);
    uv_close((uv_handle_t *)&d->check, NULL);
    uv_close((uv_handle_t *)&d->sweep, NULL);
    if (d->on_drained)
        d->on_drained(d);
}

void server_close_all(regd *d, uint64_t deadline_ms) {
    /* Every connection closes once its replies are written; past the deadline the rest
     * are cut (a client that does not read must not hold up the exit). */
    d->drain_deadline = uv_now(d->loop) + deadline_ms;
    d->draining = 1;
    for (conn *c = d->conns; c != NULL; c = c->next) {
        c->close_after_flush = 1;
        schedule_flush(c);
    }
    server_flush(d);
    if (d->conns == NULL)
        close_server_handles(d);
}
