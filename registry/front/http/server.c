/* SPDX-License-Identifier: BSD-2-Clause */
/* server.c — HTTP/1.1 connections: parsing with http-parser, bounded headers (431) and
 * bodies (413), slow requests (408), keep-alive and pipelining with answers in order,
 * blocking queries, server-sent event streams, and the server's life (http.h). */
#include "front/http/http.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "front/http/internal.h"

struct hconn {
    net_conn nc;                    /* must stay first */
    http_server *s;
    hparse hp;                      /* the request being read */
    /* a request being answered later */
    int waiting;                    /* parsing waits for this answer */
    int dispatching;                /* inside api_handle / ops_run */
    waiter w;
    api_call call;
    http_req req;                   /* kept while waiting (blocking query re-runs it) */
    uint64_t started_ns;
    int head;
    int lingering;                  /* refused: reading on, discarding, until the peer
                                     * closes or the linger ends (so it reads our answer
                                     * rather than a reset) */
    uint64_t linger_until;
    /* a blocking query */
    uv_timer_t *timer;
    uint64_t want;
    char *block_service;            /* NULL: the services list */
    hconn *bprev, *bnext;
    int blocked;
    /* an event stream */
    int stream;
    int catching_up;
    int64_t sent_seq;
    char *stream_service;
    json_t *queue;                  /* live events while catching up */
    hconn *sprev, *snext;
};

static void process(hconn *c);

/* --- responses ---------------------------------------------------------------------------- */

static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* Appends a NUL-terminated string / a decimal number to h at *n (bounded by len). */
static void put_str(char *h, size_t len, size_t *n, const char *str) {
    size_t k = strlen(str);
    if (*n + k < len) {
        memcpy(h + *n, str, k);
        *n += k;
    } else {
        *n = len; /* over: the caller sees it */
    }
}

static void put_num(char *h, size_t len, size_t *n, uint64_t v) {
    char d[24];
    size_t i = sizeof(d);
    d[--i] = '\0';
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put_str(h, len, n, d + i);
}

/* Headers (and, but for HEAD, the body) of resp into out. Written without printf: on a
 * kept answer, formatting the headers was a quarter of a request's instructions. */
static int put_response(http_server *s, ubuf *out, const http_resp *resp, int head, int close,
                        int keep_alive_10) {
    char h[1024];
    size_t n = 0, len = sizeof(h);
    uint64_t index = resp->index ? resp->index : api_global_index(s);
    put_str(h, len, &n, "HTTP/1.1 ");
    put_num(h, len, &n, (uint64_t)resp->status);
    put_str(h, len, &n, " ");
    put_str(h, len, &n, reason(resp->status));
    put_str(h, len, &n, "\r\nContent-Type: ");
    put_str(h, len, &n, resp->ctype ? resp->ctype : "application/json");
    if (resp->status != 304) { /* a 304's length would have to be the 200's (RFC 9110) */
        put_str(h, len, &n, "\r\nContent-Length: ");
        put_num(h, len, &n, resp->body.len);
    }
    put_str(h, len, &n, "\r\nX-Consul-Index: ");
    put_num(h, len, &n, index);
    put_str(h, len, &n, "\r\nX-Consul-KnownLeader: true\r\nX-Consul-LastContact: 0\r\n");
    if (resp->allow) {
        put_str(h, len, &n, "Allow: ");
        put_str(h, len, &n, resp->allow);
        put_str(h, len, &n, "\r\n");
    }
    if (resp->extra)
        put_str(h, len, &n, resp->extra);
    if (close)
        put_str(h, len, &n, "Connection: close\r\n");
    else if (keep_alive_10) /* HTTP/1.0 closes unless the answer says otherwise */
        put_str(h, len, &n, "Connection: keep-alive\r\n");
    put_str(h, len, &n, "\r\n");
    if (n >= len)
        return -1;
    if (ubuf_add(out, h, n) != 0)
        return -1;
    if (!head && resp->body.len && ubuf_add(out, resp->body.p, resp->body.len) != 0)
        return -1;
    return 0;
}

static int status_class(int status) {
    int k = status / 100;
    return k >= 1 && k <= 5 ? k : 5;
}

static void count(http_server *s, int route, int status, uint64_t started_ns) {
    s->st.requests[route][status_class(status)]++;
    if (started_ns) {
        double d = (double)(uv_hrtime() - started_ns) / 1e9;
        size_t i = 0;
        while (i < HTTP_LAT_BUCKETS && d > http_lat_bounds[i])
            i++;
        s->st.lat[i]++;
        s->st.lat_sum += d;
    }
}

#define LINGER_MS 500               /* since the last bytes discarded */
#define LINGER_MAX_MS 5000          /* in all */

static void on_linger_end(uv_timer_t *t) {
    hconn *c = t->data;
    net_read_stop(&c->nc);
    net_close_after_flush(&c->nc);
}

/* Sends resp as the answer to the current request and frees its body. */
static void send_resp(hconn *c, http_resp *resp, int route) {
    http_server *s = c->s;
    int close = !c->hp.keep_alive || s->stopping;
    ubuf b = {0};
    count(s, route, resp->status, c->started_ns);
    if (put_response(s, &b, resp, c->head, close, c->hp.http10) == 0)
        net_write(&c->nc, b.p, b.len);
    free(b.p);
    free(resp->body.p);
    resp->body = (ubuf){0};
    if (close && c->lingering) {
        c->linger_until = uv_now(s->loop) + LINGER_MAX_MS;
        uv_timer_start(c->timer, on_linger_end, LINGER_MS, 0);
    } else if (close) {
        net_read_stop(&c->nc);
        net_close_after_flush(&c->nc);
    }
}

/* Refuses what cannot be parsed or is too large, and closes after the answer. */
static void refuse(hconn *c, int status, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_resp resp = {0};
    api_error(&resp, status, "%s", msg);
    c->s->st.bad_requests++;
    c->hp.keep_alive = 0;
    c->lingering = 1;
    c->head = 0;
    send_resp(c, &resp, R_OTHER);
    c->nc.partial_since = 0;
}

static void free_req(hconn *c) {
    hreq_clear(&c->req);
}

/* --- blocking queries ------------------------------------------------------------------- */

static void unblock(hconn *c) {
    http_server *s = c->s;
    if (!c->blocked)
        return;
    c->blocked = 0;
    if (c->bprev)
        c->bprev->bnext = c->bnext;
    else
        s->blocked = c->bnext;
    if (c->bnext)
        c->bnext->bprev = c->bprev;
    c->bprev = c->bnext = NULL;
    if (c->timer)
        uv_timer_stop(c->timer);
    free(c->block_service);
    c->block_service = NULL;
    c->nc.long_lived = 0;
    /* Its idle time starts now: the answer is only queued, and an idle check in this
     * same loop turn (last_active is the request's, wait_ms ago) would close the
     * connection and drop it. */
    c->nc.last_active = uv_now(s->loop);
}

static void timer_closed(uv_handle_t *h) {
    free(h);
}

/* Runs the current request (again: after a blocking query ended; now: answer even if
 * the index has not moved): answers it, or leaves it waiting. */
static void dispatch(hconn *c, int again, int now);

static void on_resume(uv_timer_t *t) {
    process(t->data);
}

/* Parsing goes on at the next loop turn, never inside the core's callback that
 * answered (or the bus event that woke) this connection. */
static void resume_later(hconn *c) {
    uv_timer_start(c->timer, on_resume, 0, 0);
}

static void on_block_timeout(uv_timer_t *t) {
    hconn *c = t->data;
    if (!c->blocked)
        return;
    unblock(c);
    dispatch(c, 1, 1);
}

static void wake_blocked(http_server *s, const char *service) {
    for (hconn *c = s->blocked, *next; c != NULL; c = next) {
        next = c->bnext;
        uint64_t now = c->block_service ? api_index(s, c->block_service) : api_global_index(s);
        if (service != NULL && c->block_service != NULL && strcmp(service, c->block_service) != 0 &&
            now <= c->want)
            continue;
        if (now > c->want || s->stopping) {
            unblock(c);
            dispatch(c, 1, s->stopping);
        }
    }
}

static int block(hconn *c, const api_call *call) {
    http_server *s = c->s;
    if (call->service && (c->block_service = strdup(call->service)) == NULL)
        return -1;
    c->want = call->want;
    c->blocked = 1;
    c->bnext = s->blocked;
    if (s->blocked)
        s->blocked->bprev = c;
    s->blocked = c;
    c->nc.long_lived = 1;
    s->st.blocking_queries++;
    uv_timer_start(c->timer, on_block_timeout, call->wait_ms, 0);
    return 0;
}

/* --- event streams ------------------------------------------------------------------------ */

static int put_event(hconn *c, json_t *obj) {
    json_int_t seq = json_integer_value(json_object_get(obj, "seq"));
    if (seq <= c->sent_seq)
        return 0; /* already sent (the history and the live events overlap) */
    if (c->stream_service != NULL) {
        const char *svc = json_string_value(json_object_get(obj, "service"));
        if (svc == NULL || strcmp(svc, c->stream_service) != 0) {
            c->sent_seq = seq;
            return 0;
        }
    }
    char *data = json_dumps(obj, JSON_COMPACT);
    if (data == NULL)
        return -1;
    char head[64];
    int n = snprintf(head, sizeof(head), "id: %lld\ndata: ", (long long)seq);
    int rc = net_write(&c->nc, head, (size_t)n) == 0 && net_write(&c->nc, data, strlen(data)) == 0 &&
                     net_write(&c->nc, "\n\n", 2) == 0
                 ? 0
                 : -1;
    free(data);
    c->sent_seq = seq;
    c->s->st.sse_events++;
    return rc;
}

static void on_bus_streams(void *ud, const store_event *ev, json_t *obj);

static void end_stream(hconn *c) {
    http_server *s = c->s;
    if (!c->stream)
        return;
    c->stream = 0;
    if (c->sprev)
        c->sprev->snext = c->snext;
    else
        s->streams = c->snext;
    if (c->snext)
        c->snext->sprev = c->sprev;
    c->sprev = c->snext = NULL;
    if (--s->nstreams == 0 && s->stream_sub != NULL) {
        bus_unsubscribe(s->stream_sub); /* no stream: events cost no JSON for us */
        s->stream_sub = NULL;
    }
    json_decref(c->queue);
    c->queue = NULL;
    free(c->stream_service);
    c->stream_service = NULL;
}

static void start_stream(hconn *c, const api_call *call) {
    http_server *s = c->s;
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
                               "Connection: close\r\n\r\nretry: 1000\n\n";
    count(s, R_API_STREAM, 200, c->started_ns);
    c->stream = 1;
    c->nc.long_lived = 1;
    c->sent_seq = call->since;
    c->stream_service = call->stream_service ? strdup(call->stream_service) : NULL;
    c->snext = s->streams;
    if (s->streams)
        s->streams->sprev = c;
    s->streams = c;
    s->nstreams++;
    s->st.sse_streams_total++;
    if (s->stream_sub == NULL &&
        (s->stream_sub = bus_subscribe(core_bus(s->core), on_bus_streams, s)) == NULL)
        net_close_after_flush(&c->nc); /* out of memory: the client reconnects */
    /* A stream is the connection's last answer; reading goes on (process drops what
     * comes) so that a client hanging up is seen at once, not at the next write. */
    net_write(&c->nc, head, sizeof(head) - 1);
    /* The history since the client's last seq first, then live events (held meanwhile
     * in the queue; put_event drops what was sent already). */
    c->catching_up = 1;
    c->queue = json_array();
    c->w.done = NULL;
    c->call.rq = (request){.op = OP_EVENTS, .since = call->since, .limit = REQ_EVENTS_LIMIT,
                           .auth = call->rq.auth};
    c->call.route = R_API_STREAM;
    c->waiting = 1;
    net_ref(&c->nc);
}

/* A page of history arrived for a stream: send it, then the page after or the queue. */
static void stream_history(hconn *c, const reply *r) {
    if (!c->stream || c->nc.closing)
        return;
    if (r->err != RERR_NONE || r->events == NULL) {
        c->catching_up = 0; /* no next page: on_reply would ask again, forever */
        net_close_after_flush(&c->nc);
        return;
    }
    size_t i, n = json_array_size(r->events);
    for (i = 0; i < n; i++)
        if (put_event(c, json_array_get(r->events, i)) != 0)
            return;
    if (n == REQ_EVENTS_LIMIT) { /* more history: the next page */
        c->call.rq.since = c->sent_seq;
        return;
    }
    c->catching_up = 0;
    json_t *ev;
    json_array_foreach(c->queue, i, ev)
        if (put_event(c, ev) != 0)
            break;
    json_array_clear(c->queue);
}

/* Every event: the index of its service moves; blocking queries may end. */
static void on_bus(void *ud, const store_event *ev, json_t *obj) {
    (void)obj; /* a raw subscription: the JSON form is built only for streams */
    http_server *s = ud;
    if ((uint64_t)ev->seq > s->seq)
        s->seq = (uint64_t)ev->seq;
    if (s->base_seq == 0) /* the start event: newer than anything loaded at start */
        s->base_seq = (uint64_t)ev->seq;
    const char *svc = ev->service && ev->service[0] ? ev->service : NULL;
    if (svc != NULL) {
        size_t len = strlen(svc);
        svc_index *x = dict_get(s->index, svc, len);
        if (cat_service_get(core_catalog(s->core), svc, len) == NULL) {
            /* Gone: its index is the catalog's from now on. */
            if (x != NULL) {
                dict_del(s->index, svc, len);
                free(x);
            }
        } else if (x != NULL) {
            x->seq = (uint64_t)ev->seq;
        } else if ((x = malloc(sizeof(*x) + len + 1)) != NULL) {
            x->seq = (uint64_t)ev->seq;
            x->len = len;
            memcpy(x->name, svc, len + 1);
            if (dict_put(s->index, x->name, len, x) != 0)
                free(x);
        }
    }
    wake_blocked(s, svc);
}

/* While streams are open: the event's JSON form to each. */
static void on_bus_streams(void *ud, const store_event *ev, json_t *obj) {
    http_server *s = ud;
    (void)ev;
    for (hconn *c = s->streams, *next; c != NULL; c = next) {
        next = c->snext;
        if (c->nc.closing)
            continue;
        if (c->catching_up) {
            if (json_array_size(c->queue) >= HTTP_SSE_QUEUE_MAX)
                net_close(&c->nc); /* too far behind: the client reconnects and resumes */
            else
                json_array_append(c->queue, obj);
        } else if (put_event(c, obj) != 0) {
            continue; /* over its output cap: closing */
        }
    }
}

static void on_keepalive(uv_timer_t *t) {
    http_server *s = t->data;
    for (hconn *c = s->streams; c != NULL; c = c->snext)
        if (!c->nc.closing && !c->catching_up)
            net_write(&c->nc, ":\n\n", 3);
}

/* --- dispatch ----------------------------------------------------------------------------- */

static void on_reply(waiter *w, const reply *r);

/* The request finished: let the next pipelined one run. */
static void finished(hconn *c) {
    c->waiting = 0;
    free_req(c);
    json_decref(c->call.doc);
    c->call.doc = NULL;
    if (c->nc.busy > 0)
        c->nc.busy--;
}

static void run_ops(hconn *c) {
    peer pr = {c->nc.peer, c->nc.peer_ip, c->nc.peer_hash, "http"};
    c->w.done = on_reply;
    c->dispatching = 1;
    ops_run(c->s->core, &c->call.rq, &pr, &c->w);
    c->dispatching = 0;
}

static void dispatch(hconn *c, int again, int now) {
    http_server *s = c->s;
    http_resp resp = {0};
    peer pr = {c->nc.peer, c->nc.peer_ip, c->nc.peer_hash, "http"};
    memset(&c->call, 0, sizeof(c->call));
    c->call.answer_now = now || s->stopping;
    c->dispatching = 1;
    int kind = api_handle(s, &c->req, &pr, &resp, &c->call);
    c->dispatching = 0;
    switch (kind) {
    case API_BLOCK:
        if (block(c, &c->call) == 0) {
            c->waiting = 1;
            return;
        }
        /* out of memory for the wait: answer now */
        free(resp.body.p);
        resp = (http_resp){0};
        memset(&c->call, 0, sizeof(c->call));
        c->call.answer_now = 1;
        api_handle(s, &c->req, &pr, &resp, &c->call);
        break;
    case API_WRITE:
    case API_EVENTS:
        c->waiting = 1;
        c->nc.busy++;
        net_ref(&c->nc);
        run_ops(c);
        return;
    case API_STREAM:
        start_stream(c, &c->call);
        run_ops(c);
        return;
    default:
        break;
    }
    send_resp(c, &resp, c->call.route);
    int was_waiting = c->waiting;
    finished(c);
    if (again && was_waiting)
        resume_later(c);
}

static void on_reply(waiter *w, const reply *r) {
    hconn *c = (hconn *)((char *)w - offsetof(hconn, w));
    if (c->stream) {
        stream_history(c, r);
        if (c->catching_up && !c->nc.closing) {
            run_ops(c); /* the next page (answered later, never inside this call) */
            return;
        }
        c->waiting = 0;
        net_unref(&c->nc);
        return;
    }
    int sync = c->dispatching;
    if (!c->nc.closing) {
        http_resp resp = {0};
        api_reply(c->s, &c->call, r, &resp);
        send_resp(c, &resp, c->call.route);
    }
    finished(c);
    if (net_unref(&c->nc))
        return;
    if (!sync)
        resume_later(c);
}

/* Parses and answers what arrived, one request at a time, until a request must wait. */
static void process(hconn *c) {
    net_conn *nc = &c->nc;
    if (c->stream) {
        net_consume(nc, nc->in_len);
        return;
    }
    if (c->lingering) {
        net_consume(nc, nc->in_len);
        nc->partial_since = 0;
        if (uv_is_active((uv_handle_t *)c->timer) && uv_now(c->s->loop) < c->linger_until)
            uv_timer_start(c->timer, on_linger_end, LINGER_MS, 0);
        return;
    }
    while (!c->waiting && !c->stream && !nc->closing && !nc->close_after_flush &&
           net_can_write(nc) && nc->in_len > 0) {
        size_t used = 0;
        int status = 0;
        char msg[160];
        if (!c->hp.in_message)
            c->started_ns = uv_hrtime(); /* the request's first bytes are in this read */
        int rc = hparse_feed(&c->hp, nc->in, nc->in_len, &used, &status, msg, sizeof(msg));
        if (rc == HP_ERROR) {
            refuse(c, status, "%s", msg);
            return;
        }
        net_consume(nc, used);
        if (rc == HP_MORE)
            break;
        nc->partial_since = 0;
        c->head = c->hp.method == HTTP_HEAD;
        if ((status = hparse_request(&c->hp, &c->req, msg, sizeof(msg))) != 0) {
            http_resp resp = {0};
            api_error(&resp, status, "%s", msg);
            send_resp(c, &resp, R_OTHER);
            free_req(c);
            continue;
        }
        dispatch(c, 0, 0);
    }
    if (c->hp.in_message && nc->partial_since == 0)
        nc->partial_since = uv_now(c->s->loop);
}

/* --- net callbacks ---------------------------------------------------------------------- */

static void on_open(net_conn *nc) {
    hconn *c = (hconn *)nc;
    c->s = net_ud(nc->srv);
    if ((c->timer = malloc(sizeof(*c->timer))) == NULL) {
        net_close(nc);
        return;
    }
    uv_timer_init(c->s->loop, c->timer);
    c->timer->data = c;
    hparse_init(&c->hp, c->s->cfg.max_header_bytes, c->s->cfg.max_body_bytes);
    c->req.last_event_id = -1;
}

static void on_input(net_conn *nc) {
    process((hconn *)nc);
}

static void on_close(net_conn *nc) {
    hconn *c = (hconn *)nc;
    if (c->blocked) { /* a blocking query waits on nothing but its timer and the bus */
        unblock(c);
        c->waiting = 0;
    }
    end_stream(c);
    if (c->timer) {
        uv_close((uv_handle_t *)c->timer, timer_closed);
        c->timer = NULL;
    }
    /* A write in flight still answers into on_reply (which sees closing). */
    if (!c->waiting) {
        free_req(c);
        json_decref(c->call.doc);
        c->call.doc = NULL;
    }
    hparse_free(&c->hp);
}

static void on_reject(net_conn *nc, ubuf *out, const char *why) {
    http_resp resp = {0};
    api_error(&resp, 503, "%s", why);
    put_response(net_ud(nc->srv), out, &resp, 0, 1, 0);
    free(resp.body.p);
}

static void on_timeout(net_conn *nc, ubuf *out) {
    hconn *c = (hconn *)nc;
    http_resp resp = {0};
    api_error(&resp, 408, "request not completed within %llu ms",
              (unsigned long long)c->s->cfg.request_timeout_ms);
    c->s->st.bad_requests++;
    count(c->s, R_OTHER, 408, 0);
    put_response(c->s, out, &resp, 0, 1, 0);
    free(resp.body.p);
}

/* --- the server ---------------------------------------------------------------------------- */

void http_config_defaults(http_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->host, sizeof(cfg->host), "127.0.0.1");
    cfg->port = HTTP_DEFAULT_PORT;
    if (gethostname(cfg->node_name, sizeof(cfg->node_name)) != 0 || cfg->node_name[0] == '\0')
        snprintf(cfg->node_name, sizeof(cfg->node_name), "registry");
    cfg->node_name[sizeof(cfg->node_name) - 1] = '\0';
    snprintf(cfg->datacenter, sizeof(cfg->datacenter), "dc1");
    cfg->max_conns = 10000;
    cfg->max_output_buffer = 64LL << 20;
    cfg->idle_timeout_ms = 300000;
    cfg->request_timeout_ms = 10000;
    cfg->max_header_bytes = 16384;
    cfg->max_body_bytes = 1 << 20;
}

int http_new(uv_loop_t *loop, const http_config *cfg, core *c, http_server **out, char *err,
             size_t errlen) {
    http_server *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->index = dict_new()) == NULL || (s->answers = cache_new(4096)) == NULL)
        goto oom;
    s->loop = loop;
    s->cfg = *cfg;
    s->core = c;
    s->log = core_log(c);
    s->started_ms = uv_now(loop);
    /* Until the start event comes through the bus (the writer commits it after we listen),
     * every index is the store's newest seq, never below one a client saw before a
     * restart (1 would send it backwards). */
    s->seq = s->base_seq = cfg->start_seq;
    if ((s->sub = bus_subscribe_raw(core_bus(c), on_bus, s)) == NULL)
        goto oom;
    net_config nc = {.host = s->cfg.host,
                     .port = cfg->port,
                     .max_conns = cfg->max_conns,
                     .shared_conns = cfg->shared_conns,
                     .max_output_buffer = cfg->max_output_buffer,
                     .idle_timeout_ms = cfg->idle_timeout_ms,
                     .request_timeout_ms = cfg->request_timeout_ms};
    net_handler h = {.conn_size = sizeof(hconn),
                     .max_input = 65536,
                     .on_open = on_open,
                     .on_input = on_input,
                     .on_close = on_close,
                     .on_reject = on_reject,
                     .on_timeout = on_timeout,
                     .ud = s};
    if (net_new(loop, &nc, &h, s->log, &s->net, err, errlen) != 0)
        goto fail;
    *out = s;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    http_free(s);
    return -ENOMEM;
}

int http_listen(http_server *s, char *bound, size_t len, char *err, size_t errlen) {
    int rc = net_listen(s->net, bound, len, err, errlen);
    if (rc != 0)
        return rc;
    const char *colon = strrchr(bound, ':');
    if (colon != NULL)
        s->cfg.port = atoi(colon + 1); /* port 0: the one picked */
    s->listening = 1;
    uv_timer_init(s->loop, &s->keepalive);
    s->keepalive.data = s;
    uv_timer_start(&s->keepalive, on_keepalive, 15000, 15000);
    uv_unref((uv_handle_t *)&s->keepalive);
    return 0;
}

void http_stop_accepting(http_server *s) {
    if (s->stopping)
        return;
    s->stopping = 1;
    net_stop_accepting(s->net);
    wake_blocked(s, NULL);
    for (hconn *c = s->streams, *next; c != NULL; c = next) {
        next = c->snext;
        net_close_after_flush(&c->nc);
    }
}

int http_busy(const http_server *s) {
    return net_busy(s->net);
}

typedef struct close_ctx {
    http_server *s;
    void (*done)(void *ud);
    void *ud;
} close_ctx;

static void keepalive_closed(uv_handle_t *h) {
    close_ctx *x = h->data;
    x->done(x->ud);
    free(x);
}

static void net_closed(void *ud) {
    close_ctx *x = ud;
    http_server *s = x->s;
    if (s->listening) {
        s->keepalive.data = x;
        uv_close((uv_handle_t *)&s->keepalive, keepalive_closed);
        return;
    }
    x->done(x->ud);
    free(x);
}

void http_close_all(http_server *s, uint64_t deadline_ms, void (*done)(void *ud), void *ud) {
    close_ctx *x = malloc(sizeof(*x));
    if (x == NULL) {
        done(ud);
        return;
    }
    *x = (close_ctx){s, done, ud};
    http_stop_accepting(s);
    net_close_all(s->net, deadline_ms, net_closed, x);
}

void http_free(http_server *s) {
    if (s == NULL)
        return;
    if (s->sub)
        bus_unsubscribe(s->sub);
    if (s->stream_sub)
        bus_unsubscribe(s->stream_sub);
    net_free(s->net);
    if (s->index) {
        size_t pos = 0;
        svc_index *x;
        while ((x = dict_next(s->index, &pos)) != NULL)
            free(x);
        dict_free(s->index);
    }
    cache_free(s->answers);
    free(s);
}
