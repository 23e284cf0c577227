/* SPDX-License-Identifier: BSD-2-Clause */
/* reghelper.c — the registration helper of the client library: keeps one service
 * instance registered, driven by the service's own libuv loop.
 *
 * One state machine per helper:
 *
 *   connect ──► register ──► registered ──(every ttl/3)──► heartbeat ─┐
 *      ▲            │             ▲                                    │ ok
 *      │            │             └────────────────────────────────────┘
 *      │            └─ error / closed / timeout ─► backoff (100 ms doubling to 5 s,
 *      └────────────────────────────────────────── jittered) ─┘
 *
 * A heartbeat answered not_found (the registry forgot us: expired, or restarted with
 * its state lost) registers again on the same connection at once.
 *
 * With a list of registry nodes, every failure moves on to the next node (wrapping
 * round) and registers there: the same service, host and port, and the token we hold,
 * so nodes that share a store give back the same id. The backoff then grows once per
 * round of the list, not once per node: losing one node costs one short wait. Everything is
 * asynchronous (uv_getaddrinfo, uv_tcp_connect, uv_read_start, timers), so a registry
 * that is down or slow costs the service nothing but a timer now and then.
 *
 * Memory: the helper owns two timers and at most one live connection (struct hconn,
 * a new one per attempt, freed in its close callback). After regc_helper_stop it frees
 * itself once every handle is closed and a pending resolve has come back.
 */
#include "registry_helper.h"
#include "registry_json.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BACKOFF_START_MS   100
#define BACKOFF_CAP_MS     5000
#define PING_INTERVAL_MS   60000     /* keep-alive without a TTL */
#define DEFAULT_REPLY_MS   5000
#define MAX_PENDING        4         /* requests in flight on one connection */

enum hstate {
    H_IDLE,          /* created, not started */
    H_RESOLVING,     /* uv_getaddrinfo in flight */
    H_CONNECTING,    /* uv_tcp_connect in flight */
    H_CONNECTED,     /* connection up: registering, registered, or re-registering */
    H_BACKOFF,       /* waiting to try again */
    H_FINISHING      /* stop done: closing handles */
};

enum pkind { P_REGISTER, P_HEARTBEAT, P_PING, P_DEREGISTER };

struct hconn {
    uv_tcp_t tcp;            /* first: the close callback casts back */
    uv_connect_t creq;
    regc_helper *h;
    char *rbuf;              /* REGC_MAX_LINE bytes: the partial reply line */
    size_t rlen;
    int closing;
};

struct regc_helper {
    uv_loop_t *loop;                 /* borrowed */
    regc_node *nodes;                /* owned: the registry's nodes, in the list's order */
    size_t nnodes;
    size_t cur;                      /* the node in use */
    char raddr[REGC_ADDR_MAX];       /* that node: as given (one address) or HOST:PORT */
    char rhost[REGC_HOST_MAX];
    uint16_t rport;
    /* What we register (owned copies). */
    char *service, *host, *description, **tags;
    size_t ntags;
    int port, ttl, check;
    char *auth;                      /* owned secret or NULL */
    int reply_ms;                    /* connect and per-reply deadline */
    regc_helper_log_cb log;
    void *log_arg;

    enum hstate state;
    uv_timer_t timer;                /* backoff, next heartbeat, or the stop deadline */
    uv_timer_t reply_timer;          /* deadline of the connect or the oldest reply */
    uv_getaddrinfo_t gai;
    int gai_active;
    struct hconn *conn;              /* the live connection, or NULL */
    enum pkind pending[MAX_PENDING]; /* requests awaiting replies, oldest first */
    int npending;
    int attempt;                     /* consecutive failures, for the backoff (one
                                      * doubling per round of the node list) */
    int registered;
    char id[REGC_ID_MAX], token[REGC_TOKEN_MAX];
    int was_lost;                    /* lost the registry since the last registration */

    int stopping;
    int dereg_sent;
    regc_helper_done_cb done;
    void *done_arg;
    int open_handles;                /* timers + connections not yet closed */
    uint64_t rng;                    /* xorshift state for the jitter */
};

static void begin_connect(regc_helper *h);
static void fail(regc_helper *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void finish(regc_helper *h);

static void hlog(regc_helper *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void hlog(regc_helper *h, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    if (!h->log)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    h->log(h->log_arg, msg);
}

static uint64_t next_rand(regc_helper *h)
{
    uint64_t x = h->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return h->rng = x;
}

/* ---- lifetime ------------------------------------------------------------------------ */

static void free_helper(regc_helper *h)
{
    free(h->nodes);
    free(h->service);
    free(h->host);
    free(h->description);
    for (size_t i = 0; i < h->ntags; i++)
        free(h->tags[i]);
    free(h->tags);
    if (h->auth) {
        explicit_bzero(h->auth, strlen(h->auth));
        free(h->auth);
    }
    free(h);
}

/* Frees the helper once finishing and nothing of it is left on the loop. */
static void maybe_done(regc_helper *h)
{
    if (h->state != H_FINISHING || h->open_handles > 0 || h->gai_active)
        return;
    if (h->done)
        h->done(h->done_arg);
    free_helper(h);
}

static void on_timer_closed(uv_handle_t *handle)
{
    regc_helper *h = handle->data;
    h->open_handles--;
    maybe_done(h);
}

static void on_conn_closed(uv_handle_t *handle)
{
    struct hconn *conn = (struct hconn *)handle;
    regc_helper *h = conn->h;
    free(conn->rbuf);
    free(conn);
    h->open_handles--;
    maybe_done(h);
}

static void close_conn(regc_helper *h)
{
    struct hconn *conn = h->conn;
    if (!conn)
        return;
    h->conn = NULL;
    h->npending = 0;
    uv_timer_stop(&h->reply_timer);
    conn->closing = 1;
    uv_close((uv_handle_t *)&conn->tcp, on_conn_closed);
}

static char *dup_or_null(const char *s, int *bad)
{
    char *d;
    if (!s)
        return NULL;
    if (!(d = strdup(s)))
        *bad = 1;
    return d;
}

/* Makes nodes[i] the node to talk to from the next connection on. */
static void use_node(regc_helper *h, size_t i)
{
    h->cur = i;
    memcpy(h->rhost, h->nodes[i].host, sizeof h->rhost);
    h->rport = h->nodes[i].port;
    if (h->nnodes > 1)
        regc_format_addr(h->rhost, h->rport, h->raddr, sizeof h->raddr);
}

int regc_helper_create(uv_loop_t *loop, const regc_helper_config *cfg,
                       regc_helper **out, char *errbuf, size_t errlen)
{
    regc_node nodes[REGC_NODES_MAX];
    regc_helper *h;
    regc_error err;
    const char *addr = regc_default_addr(cfg->registry);
    size_t n;
    int bad = 0;

    *out = NULL;
    if (!cfg->reg.service || !regc_valid_service(cfg->reg.service)) {
        snprintf(errbuf, errlen, "bad service name '%s' (want [a-z0-9._-], 1-63, "
                 "starting with a letter or digit)", cfg->reg.service ? cfg->reg.service : "");
        return -EINVAL;
    }
    if (cfg->reg.port < 1 || cfg->reg.port > 65535) {
        snprintf(errbuf, errlen, "bad port %d to register", cfg->reg.port);
        return -EINVAL;
    }
    if (cfg->reg.ttl < 0 || cfg->reg.ttl > 86400) {
        snprintf(errbuf, errlen, "bad ttl %d (want 0-86400 s)", cfg->reg.ttl);
        return -EINVAL;
    }
    if (!(h = calloc(1, sizeof *h))) {
        snprintf(errbuf, errlen, "out of memory");
        return -ENOMEM;
    }
    if (regc_parse_addr_list(addr, nodes, REGC_NODES_MAX, &n, &err) < 0) {
        snprintf(errbuf, errlen, "%s", err.message);
        free(h);
        return -EINVAL;
    }
    if (!(h->nodes = malloc(n * sizeof *h->nodes))) {
        snprintf(errbuf, errlen, "out of memory");
        free(h);
        return -ENOMEM;
    }
    memcpy(h->nodes, nodes, n * sizeof *h->nodes);
    h->nnodes = n;
    snprintf(h->raddr, sizeof h->raddr, "%s", addr);
    use_node(h, 0);
    h->loop = loop;
    h->service = dup_or_null(cfg->reg.service, &bad);
    h->host = dup_or_null(cfg->reg.host, &bad);
    h->description = dup_or_null(cfg->reg.description, &bad);
    h->auth = dup_or_null(cfg->auth, &bad);
    if (cfg->reg.ntags > 0) {
        if (!(h->tags = calloc(cfg->reg.ntags, sizeof *h->tags)))
            bad = 1;
        for (size_t i = 0; h->tags && i < cfg->reg.ntags; i++) {
            h->tags[i] = dup_or_null(cfg->reg.tags[i], &bad);
            h->ntags = i + 1;
        }
    }
    if (bad) {
        free_helper(h);
        snprintf(errbuf, errlen, "out of memory");
        return -ENOMEM;
    }
    h->port = cfg->reg.port;
    h->ttl = cfg->reg.ttl;
    h->check = cfg->reg.check;
    h->reply_ms = cfg->reply_timeout_ms > 0 ? cfg->reply_timeout_ms : DEFAULT_REPLY_MS;
    h->log = cfg->log;
    h->log_arg = cfg->log_arg;
    h->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)h;
    if (h->rng == 0)
        h->rng = 0x9e3779b97f4a7c15ULL;
    uv_timer_init(loop, &h->timer);
    uv_timer_init(loop, &h->reply_timer);
    h->timer.data = h->reply_timer.data = h;
    h->open_handles = 2;
    h->state = H_IDLE;
    *out = h;
    return 0;
}

int regc_helper_registered(const regc_helper *h, char *id)
{
    if (h->registered && id)
        memcpy(id, h->id, sizeof h->id);
    return h->registered;
}

/* ---- requests ------------------------------------------------------------------------- */

struct wreq {
    uv_write_t req;
    size_t len;
    char data[];
};

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct hconn *conn = (struct hconn *)req->handle;
    regc_helper *h = conn->h;
    explicit_bzero(w->data, w->len);   /* may hold the auth secret or a token */
    free(w);
    if (status < 0 && !conn->closing && h->conn == conn)
        fail(h, "writing to the registry %s: %s", h->raddr, uv_strerror(status));
}

static void on_reply_timeout(uv_timer_t *t)
{
    regc_helper *h = t->data;
    if (h->state == H_CONNECTING)
        fail(h, "registry %s: no answer to connect within %d ms", h->raddr, h->reply_ms);
    else
        fail(h, "registry %s: no reply within %d ms", h->raddr, h->reply_ms);
}

/* Sends req (borrowed) on the live connection and records what answer it awaits.
 * Returns 0, or -1 after fail() when it could not. */
static int send_req(regc_helper *h, enum pkind kind, json_t *req)
{
    struct hconn *conn = h->conn;
    struct wreq *w;
    char *text;
    size_t len;
    uv_buf_t buf;
    int rc;

    if (h->npending >= MAX_PENDING) {
        fail(h, "too many requests in flight");
        return -1;
    }
    if (h->auth && json_object_set_new(req, "auth", json_string(h->auth)) < 0) {
        fail(h, "out of memory");
        return -1;
    }
    text = json_dumps(req, JSON_COMPACT);
    if (!text) {
        fail(h, "out of memory encoding a request");
        return -1;
    }
    len = strlen(text);
    w = malloc(sizeof *w + len + 1);
    if (!w) {
        explicit_bzero(text, len);
        free(text);
        fail(h, "out of memory");
        return -1;
    }
    memcpy(w->data, text, len);
    w->data[len] = '\n';
    w->len = len + 1;
    explicit_bzero(text, len);
    free(text);
    buf = uv_buf_init(w->data, (unsigned)(len + 1));
    rc = uv_write(&w->req, (uv_stream_t *)&conn->tcp, &buf, 1, on_written);
    if (rc < 0) {
        free(w);
        fail(h, "writing to the registry %s: %s", h->raddr, uv_strerror(rc));
        return -1;
    }
    h->pending[h->npending++] = kind;
    if (!uv_is_active((uv_handle_t *)&h->reply_timer))
        uv_timer_start(&h->reply_timer, on_reply_timeout, (uint64_t)h->reply_ms, 0);
    return 0;
}

static json_t *new_req(const char *op)
{
    json_t *o = json_object();
    if (o && json_object_set_new(o, "op", json_string(op)) < 0) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

static void send_register(regc_helper *h)
{
    json_t *req = new_req("register"), *tags = NULL;
    int bad = !req;
    if (!bad) {
        bad |= json_object_set_new(req, "service", json_string(h->service)) < 0;
        if (h->host)
            bad |= json_object_set_new(req, "host", json_string(h->host)) < 0;
        bad |= json_object_set_new(req, "port", json_integer(h->port)) < 0;
        if (h->description)
            bad |= json_object_set_new(req, "description", json_string(h->description)) < 0;
        if (h->ttl > 0)
            bad |= json_object_set_new(req, "ttl", json_integer(h->ttl)) < 0;
        bad |= json_object_set_new(req, "check",
                                   json_string(h->check == REGC_CHECK_NONE ? "none" : "tcp")) < 0;
        /* Registering again (the registry restarted, or forgot us): the token we hold
         * proves the instance is ours, whatever address we come from. */
        if (h->token[0])
            bad |= json_object_set_new(req, "token", json_string(h->token)) < 0;
        if (h->ntags > 0) {
            bad |= !(tags = json_array()) || json_object_set_new(req, "tags", tags) < 0;
            for (size_t i = 0; !bad && i < h->ntags; i++)
                bad |= json_array_append_new(tags, json_string(h->tags[i])) < 0;
        }
    }
    if (bad) {
        json_decref(req);
        fail(h, "out of memory building the registration");
        return;
    }
    send_req(h, P_REGISTER, req);
    json_decref(req);
}

static void send_id_token(regc_helper *h, enum pkind kind, const char *op)
{
    json_t *req = new_req(op);
    if (!req || json_object_set_new(req, "id", json_string(h->id)) < 0 ||
        json_object_set_new(req, "token", json_string(h->token)) < 0) {
        json_decref(req);
        fail(h, "out of memory");
        return;
    }
    send_req(h, kind, req);
    json_decref(req);
}

static void on_keepalive(uv_timer_t *t)
{
    regc_helper *h = t->data;
    if (h->state != H_CONNECTED || h->stopping)
        return;
    if (h->ttl > 0) {
        send_id_token(h, P_HEARTBEAT, "heartbeat");
    } else {
        json_t *req = new_req("ping");
        if (!req) {
            fail(h, "out of memory");
            return;
        }
        send_req(h, P_PING, req);
        json_decref(req);
    }
}

static void schedule_keepalive(regc_helper *h)
{
    uint64_t ms = h->ttl > 0 ? (uint64_t)h->ttl * 1000 / 3 : PING_INTERVAL_MS;
    if (ms < 1)
        ms = 1;
    uv_timer_start(&h->timer, on_keepalive, ms, 0);
}

/* ---- replies --------------------------------------------------------------------------- */

/* Called once the stop sequence has what it waits for (or gives up). */
static void stop_progress(regc_helper *h)
{
    if (!h->stopping)
        return;
    if (h->registered && h->conn && !h->dereg_sent) {
        h->dereg_sent = 1;
        send_id_token(h, P_DEREGISTER, "deregister");
        return;
    }
    if (h->npending == 0 || !h->conn)
        finish(h);
}

/* Handles one reply line; the oldest pending request is what it answers. */
static void handle_reply(regc_helper *h, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *o, *ok, *e;
    enum pkind kind;
    const char *code = NULL, *msg = NULL;

    if (h->npending == 0) {
        fail(h, "registry %s sent a reply nobody asked for", h->raddr);
        return;
    }
    kind = h->pending[0];
    memmove(h->pending, h->pending + 1, (size_t)(h->npending - 1) * sizeof h->pending[0]);
    h->npending--;
    uv_timer_stop(&h->reply_timer);
    if (h->npending > 0)
        uv_timer_start(&h->reply_timer, on_reply_timeout, (uint64_t)h->reply_ms, 0);

    o = json_loadb(line, len, 0, &jerr);
    ok = json_object_get(o, "ok");
    if (!json_is_object(o) || !json_is_boolean(ok)) {
        json_decref(o);
        fail(h, "registry %s sent a malformed reply", h->raddr);
        return;
    }
    if (json_is_false(ok)) {
        e = json_object_get(o, "error");
        code = json_string_value(json_object_get(e, "code"));
        msg = json_string_value(json_object_get(e, "message"));
        if (!code)
            code = "?";
        if (!msg)
            msg = "";
    }

    switch (kind) {
    case P_REGISTER: {
        const char *id = code ? NULL : json_string_value(json_object_get(o, "id"));
        const char *tok = code ? NULL : json_string_value(json_object_get(o, "token"));
        if (code) {
            fail(h, "registry %s refused the registration: %s: %s", h->raddr, code, msg);
            break;
        }
        if (!id || !tok || strlen(id) >= sizeof h->id || strlen(tok) >= sizeof h->token) {
            fail(h, "registry %s sent a register reply without id/token", h->raddr);
            break;
        }
        memcpy(h->id, id, strlen(id) + 1);
        memcpy(h->token, tok, strlen(tok) + 1);
        h->registered = 1;
        h->attempt = 0;
        hlog(h, "registered %s %s:%d with the registry %s as %s%s", h->service,
             h->host ? h->host : "(source address)", h->port, h->raddr, h->id,
             h->was_lost ? " (again)" : "");
        h->was_lost = 0;
        if (h->stopping)
            stop_progress(h);
        else
            schedule_keepalive(h);
        break;
    }
    case P_HEARTBEAT:
        if (code && strcmp(code, "not_found") == 0) {
            hlog(h, "the registry %s forgot %s (expired or restarted); registering again",
                 h->raddr, h->id);
            h->registered = 0;
            h->was_lost = 1;
            if (h->stopping)
                stop_progress(h);
            else
                send_register(h);
        } else if (code) {
            fail(h, "registry %s refused the heartbeat: %s: %s", h->raddr, code, msg);
        } else if (h->stopping) {
            stop_progress(h);
        } else {
            schedule_keepalive(h);
        }
        break;
    case P_PING:
        if (code)
            fail(h, "registry %s refused ping: %s: %s", h->raddr, code, msg);
        else if (h->stopping)
            stop_progress(h);
        else
            schedule_keepalive(h);
        break;
    case P_DEREGISTER:
        if (code)
            hlog(h, "deregistering %s: %s: %s", h->id, code, msg);
        else
            hlog(h, "deregistered %s from the registry %s", h->id, h->raddr);
        h->registered = 0;
        finish(h);
        break;
    }
    json_decref(o);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct hconn *conn = (struct hconn *)handle;
    /* Read straight into the line buffer: a line can never need more than it holds. */
    buf->base = conn->rbuf + conn->rlen;
    buf->len = REGC_MAX_LINE - conn->rlen;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct hconn *conn = (struct hconn *)stream;
    regc_helper *h = conn->h;
    size_t start = 0;

    if (conn->closing || h->conn != conn)
        return;
    if (nread == UV_EOF) {
        fail(h, "the registry %s closed the connection", h->raddr);
        return;
    }
    if (nread < 0) {
        fail(h, "reading from the registry %s: %s", h->raddr, uv_strerror((int)nread));
        return;
    }
    if (nread == 0)
        return;
    size_t scan_from = conn->rlen;
    conn->rlen += (size_t)nread;
    for (;;) {
        char *nl = memchr(conn->rbuf + scan_from, '\n', conn->rlen - scan_from);
        if (!nl)
            break;
        size_t end = (size_t)(nl - conn->rbuf);
        handle_reply(h, conn->rbuf + start, end - start);
        if (conn->closing || h->conn != conn)
            return;   /* the reply ended this connection; conn is freed later */
        start = end + 1;
        scan_from = start;
    }
    if (start > 0) {
        memmove(conn->rbuf, conn->rbuf + start, conn->rlen - start);
        conn->rlen -= start;
    }
    if (conn->rlen >= REGC_MAX_LINE)
        fail(h, "registry %s sent a line over %d bytes", h->raddr, REGC_MAX_LINE);
}

/* ---- connecting ------------------------------------------------------------------------ */

static void on_connect(uv_connect_t *req, int status)
{
    struct hconn *conn = req->data;
    regc_helper *h = conn->h;
    int rc;

    if (conn->closing || h->conn != conn)
        return;
    uv_timer_stop(&h->reply_timer);
    if (status < 0) {
        fail(h, "cannot connect to the registry %s: %s", h->raddr, uv_strerror(status));
        return;
    }
    h->state = H_CONNECTED;
    if ((rc = uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read)) < 0) {
        fail(h, "reading from the registry %s: %s", h->raddr, uv_strerror(rc));
        return;
    }
    if (h->stopping) {
        finish(h);
        return;
    }
    send_register(h);
}

static void connect_to(regc_helper *h, const struct sockaddr *sa)
{
    struct hconn *conn = calloc(1, sizeof *conn);
    int rc;

    if (!conn || !(conn->rbuf = malloc(REGC_MAX_LINE))) {
        free(conn);
        fail(h, "out of memory");
        return;
    }
    conn->h = h;
    if ((rc = uv_tcp_init(h->loop, &conn->tcp)) < 0) {
        free(conn->rbuf);
        free(conn);
        fail(h, "cannot create a socket: %s", uv_strerror(rc));
        return;
    }
    h->open_handles++;
    h->conn = conn;
    h->npending = 0;
    conn->creq.data = conn;
    (void)uv_tcp_nodelay(&conn->tcp, 1);
    h->state = H_CONNECTING;
    rc = uv_tcp_connect(&conn->creq, &conn->tcp, sa, on_connect);
    if (rc < 0) {
        fail(h, "cannot connect to the registry %s: %s", h->raddr, uv_strerror(rc));
        return;
    }
    uv_timer_start(&h->reply_timer, on_reply_timeout, (uint64_t)h->reply_ms, 0);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    regc_helper *h = req->data;
    h->gai_active = 0;
    if (h->state != H_RESOLVING) {
        /* Stopped meanwhile. */
        uv_freeaddrinfo(res);
        maybe_done(h);
        return;
    }
    if (status < 0 || !res) {
        uv_freeaddrinfo(res);
        fail(h, "cannot resolve the registry host %s: %s", h->rhost,
             status < 0 ? uv_strerror(status) : "no address");
        return;
    }
    connect_to(h, res->ai_addr);
    uv_freeaddrinfo(res);
}

static void begin_connect(regc_helper *h)
{
    struct sockaddr_storage ss;
    struct addrinfo hints;
    char portstr[8];
    int rc;

    /* IP literals need no resolver thread. */
    if (uv_ip4_addr(h->rhost, h->rport, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(h->rhost, h->rport, (struct sockaddr_in6 *)&ss) == 0) {
        connect_to(h, (struct sockaddr *)&ss);
        return;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(portstr, sizeof portstr, "%u", (unsigned)h->rport);
    h->gai.data = h;
    h->state = H_RESOLVING;
    rc = uv_getaddrinfo(h->loop, &h->gai, on_resolved, h->rhost, portstr, &hints);
    if (rc < 0) {
        fail(h, "cannot resolve the registry host %s: %s", h->rhost, uv_strerror(rc));
        return;
    }
    h->gai_active = 1;
}

static void on_backoff_done(uv_timer_t *t)
{
    regc_helper *h = t->data;
    if (h->state == H_BACKOFF && !h->stopping)
        begin_connect(h);
}

/* Something went wrong with the registry: drop the connection and try again later
 * (or, when stopping, give up on deregistering). */
static void fail(regc_helper *h, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    uint64_t d, delay;
    int moving;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (h->state == H_FINISHING)
        return;
    close_conn(h);
    uv_timer_stop(&h->timer);
    if (h->registered)
        h->was_lost = 1;
    h->registered = 0;
    if (h->stopping) {
        hlog(h, "%s; not deregistered", msg);
        finish(h);
        return;
    }
    /* With several nodes, the next one (the message above named the one lost). */
    moving = h->nnodes > 1;
    if (moving)
        use_node(h, (h->cur + 1) % h->nnodes);
    /* Exponential backoff with jitter, so a fleet of services does not knock on a
     * restarted registry all in the same millisecond; it doubles once per round of the
     * nodes, so the first try of each other node comes as soon as the first retry. */
    d = BACKOFF_START_MS;
    for (int i = 0; i < h->attempt / (int)h->nnodes && d < BACKOFF_CAP_MS; i++)
        d *= 2;
    if (d > BACKOFF_CAP_MS)
        d = BACKOFF_CAP_MS;
    delay = d / 2 + next_rand(h) % (d / 2 + 1);
    if (h->attempt < INT_MAX)
        h->attempt++;
    if (moving)
        hlog(h, "%s; moving to the registry %s in %llu ms", msg, h->raddr,
             (unsigned long long)delay);
    else
        hlog(h, "%s; retrying in %llu ms", msg, (unsigned long long)delay);
    h->state = H_BACKOFF;
    uv_timer_start(&h->timer, on_backoff_done, delay, 0);
}

int regc_helper_start(regc_helper *h)
{
    if (h->state != H_IDLE || h->stopping)
        return -EALREADY;
    begin_connect(h);
    return 0;
}

/* ---- stopping -------------------------------------------------------------------------- */

static void finish(regc_helper *h)
{
    if (h->state == H_FINISHING)
        return;
    h->state = H_FINISHING;
    close_conn(h);
    if (h->gai_active)
        uv_cancel((uv_req_t *)&h->gai);   /* its callback still comes; maybe_done waits */
    uv_close((uv_handle_t *)&h->timer, on_timer_closed);
    uv_close((uv_handle_t *)&h->reply_timer, on_timer_closed);
}

static void on_stop_deadline(uv_timer_t *t)
{
    regc_helper *h = t->data;
    hlog(h, "no answer to deregister from the registry %s; giving up", h->raddr);
    finish(h);
}

void regc_helper_stop(regc_helper *h, int timeout_ms, regc_helper_done_cb done, void *arg)
{
    h->stopping = 1;
    h->done = done;
    h->done_arg = arg;
    uv_timer_stop(&h->timer);
    if (h->state == H_CONNECTED && (h->registered || h->npending > 0)) {
        /* Registered, or the registration is in flight: deregister once we can. */
        uv_timer_start(&h->timer, on_stop_deadline, timeout_ms > 0 ? (uint64_t)timeout_ms : 0,
                       0);
        if (h->npending == 0)
            stop_progress(h);
        return;
    }
    finish(h);
}
