/* line.c — the newline-JSON front-end (see line.h): the listener, connections, line
 * framing, the per-connection output buffer, limits and timeouts, replies in request
 * order, the encodings of replies, and watchers as subscribers of the event bus.
 *
 * Ordering: replies go out in request order. Reads are answered at once; a write
 * (ops_is_write) takes a slot in its connection's queue of replies, and a later read
 * waits (parsing pauses) until every earlier reply is out, so it sees the writes before
 * it. Writes that follow writes are run at once, so a pipeline of registrations still
 * shares group commits; their replies leave in order as their slots fill.
 *
 * Output: replies are appended to the connection's buffer and written once per loop
 * iteration (uv_prepare/uv_check), so a pipeline of N requests costs one write(2), and
 * most writes complete inline with uv_try_write; only the remainder goes to uv_write.
 */
#include "front/line/line.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>

#include "base/cache.h"
#include "base/dict.h"
#include "base/util.h"
#include "core/ops.h"
#include "front/line/proto.h"

#define IN_CHUNK        (16u << 10)         /* read granularity */
#define IN_MAX          (PROTO_MAX_LINE + IN_CHUNK) /* input buffer cap */
#define OVERFLOW_DRAIN_MS 5000      /* an overflowed client gets this long to take its last line */

typedef struct conn conn;
typedef struct slot slot;

struct line_server {
    uv_loop_t *loop;
    line_config cfg;
    core *core;                     /* borrowed */
    alog *log;                      /* borrowed (the core's) */
    cache *answers;                 /* encoded lookup answers (line_answer) */
    proto_memo *memo;               /* decoded hot lookup lines */
    uv_tcp_t listener;
    uv_prepare_t prepare;           /* flushes output before the loop polls */
    uv_check_t check;               /* ... and right after it handled I/O */
    uv_timer_t sweep;               /* idle / request timeouts */
    conn *conns;                    /* every open connection */
    conn *flushq;                   /* connections with output waiting (singly linked) */
    size_t nconns, nwatchers;
    long long fd_limit;             /* RLIMIT_NOFILE at start */
    uint64_t last_emfile_log;       /* loop ms of the last descriptor warning */
    conn *spare;                    /* accepts-and-closes when a new conn cannot be allocated */
    int stopping;
    int draining;                   /* line_close_all: 1 closing connections, 2 done */
    uint64_t drain_deadline;        /* loop ms */
    void (*on_drained)(void *ud);
    void *drained_ud;
    uint64_t requests;              /* since start */
    uint64_t errors[RERR__COUNT];
    uint64_t rejected_conns;
    ubuf list_body;                 /* encoded list answer, valid for list_gen */
    uint64_t list_gen;
    int64_t ev_seq;                 /* the event encoded in ev_line (0: none) */
    ubuf ev_line;
};

struct conn {
    uv_tcp_t tcp;                   /* must stay first: handle->data is not used */
    line_server *s;
    conn *prev, *next;              /* s->conns */
    conn *flush_next;               /* s->flushq link */
    int in_flushq;
    char peer[PEER_LEN];            /* "IP:PORT" */
    char peer_ip[INET6_ADDRSTRLEN];
    uint64_t peer_hash;             /* dict_hash of peer_ip */
    char *in;                       /* unparsed input */
    size_t in_len, in_cap;
    size_t scanned;                 /* leading bytes of in known to hold no newline */
    ubuf out;                       /* queued output not yet handed to the kernel/libuv */
    size_t out_pending;             /* bytes in uv_write requests in flight */
    int refs;                       /* slots holding the struct */
    int closing;                    /* uv_close called (or about to be) */
    int closed;                     /* close callback ran */
    int close_after_flush;          /* close once the output is written */
    slot *slots, *slots_tail;       /* replies still owed, in request order */
    int busy;                       /* number of slots */
    int paused;                     /* parsing stopped until busy drops to 0 */
    int processing;                 /* process_input is running */
    int read_stopped;
    int eof;                        /* peer finished sending */
    int rejected;                   /* over --max-conns: not counted, not read */
    int overflowed;                 /* went over --max-output-buffer: closing */
    uint64_t overflow_at;           /* loop ms when it did */
    bus_sub *sub;                   /* a watcher's subscription, or NULL */
    char *watch_service;            /* owned; NULL = every service */
    uint64_t last_active;           /* loop ms of the last complete request */
    uint64_t line_started;          /* loop ms when the current partial line began, 0 = none */
};

/* A reply owed to a connection for a request the core answers later (a write). */
struct slot {
    waiter w;                       /* must stay first */
    conn *c;                        /* referenced */
    json_t *request_id;             /* referenced, or NULL */
    int done;
    ubuf out;                       /* the encoded reply, until the slots before it are out */
    slot *next;
};

/* A reply the core gives at once (reads), encoded straight into the connection. */
typedef struct sync_waiter {
    waiter w;                       /* must stay first */
    conn *c;
    const request *rq;              /* borrowed: the request being answered */
    json_t *request_id;             /* borrowed */
} sync_waiter;

/* A lookup answer, encoded: the list of instances (the tail, shared by every answer of
 * this set) and, per candidate, the head naming it, built when first handed out. */
typedef struct line_answer {
    cache_entry base;               /* the set's key and generation */
    char *tail;                     /* owned: "\"instances\":[...]}\n" */
    size_t tail_len;
    char **heads;                   /* owned array of ncands owned strings (NULL: not yet) */
    size_t *head_lens;
    size_t ncands;
} line_answer;

static void conn_close(conn *c);
static void process_input(conn *c);
static void on_read_restart(conn *c);

/* --- connections ----------------------------------------------------------------------- */

static void conn_free(conn *c) {
    free(c->in);
    free(c->out.p);
    free(c->watch_service);
    free(c);
}

static void conn_unref(conn *c) {
    if (--c->refs == 0 && c->closed)
        conn_free(c);
}

static void close_server_handles(line_server *s);

static void on_close(uv_handle_t *h) {
    conn *c = (conn *)h;
    line_server *s = c->s;
    c->closed = 1;
    if (c->refs == 0)
        conn_free(c);
    if (s->draining == 1 && s->conns == NULL)
        close_server_handles(s);
}

static void unwatch(conn *c) {
    if (c->sub == NULL)
        return;
    bus_unsubscribe(c->sub);
    c->sub = NULL;
    c->s->nwatchers--;
}

/* Starts closing: unlinks the connection; its memory goes in on_close (or when the last
 * slot holding it is answered). */
static void conn_close(conn *c) {
    if (c->closing)
        return;
    line_server *s = c->s;
    c->closing = 1;
    if (c->prev)
        c->prev->next = c->next;
    else if (s->conns == c)
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (!c->rejected)
        s->nconns--;
    unwatch(c);
    /* Drop it from the flush queue. */
    if (c->in_flushq) {
        for (conn **pp = &s->flushq; *pp; pp = &(*pp)->flush_next) {
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
    conn *c;
    char *buf;                      /* owned */
    size_t len;
};

static int done_writing(const conn *c) {
    return c->close_after_flush && c->out.len == 0 && c->out_pending == 0 &&
           (c->busy == 0 || c->overflowed);
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
    if (done_writing(c))
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
    if (done_writing(c))
        conn_close(c);
}

static void server_flush(line_server *s) {
    while (s->flushq) {
        conn *c = s->flushq;
        s->flushq = c->flush_next;
        c->flush_next = NULL;
        c->in_flushq = 0;
        conn_flush(c);
    }
    alog_flush(s->log);
}

static void schedule_flush(conn *c) {
    if (!c->in_flushq && !c->closing) {
        c->in_flushq = 1;
        c->flush_next = c->s->flushq;
        c->s->flushq = c;
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
    line_server *s = c->s;
    alog_event(s->log, ALOG_WARN, "limit",
               json_pack("{s:s, s:s, s:I, s:b}", "limit", "max_output_buffer", "client", c->peer,
                         "bytes", (json_int_t)(c->out.len + c->out_pending), "watcher",
                         c->sub != NULL));
    c->overflowed = 1;
    c->overflow_at = uv_now(s->loop);
    unwatch(c); /* no longer a subscriber, though its last line is still going out */
    c->out.len = 0;
    char line[256];
    json_t *e = proto_error(RERR_UNAVAILABLE, "output buffer limit reached (the client is not "
                                              "reading); disconnecting", NULL);
    size_t n = e ? json_dumpb(e, line, sizeof(line) - 1, JSON_COMPACT) : 0;
    json_decref(e);
    if (n > 0 && n < sizeof(line) - 1) {
        line[n++] = '\n';
        out_append(c, line, n);
    }
    s->errors[RERR_UNAVAILABLE]++;
    c->close_after_flush = 1;
    if (!c->read_stopped && !c->closing) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->read_stopped = 1;
    }
}

static int can_write(const conn *c) {
    return !(c->closing || c->close_after_flush || c->overflowed);
}

/* Queues bytes (copied). Returns 0, or -1 when the connection went over its output cap
 * (or out of memory) and is being closed. */
static int conn_write(conn *c, const char *data, size_t len) {
    if (!can_write(c))
        return -1;
    if ((long long)(c->out.len + c->out_pending + len) > c->s->cfg.max_output_buffer) {
        conn_overflow(c);
        return -1;
    }
    if (out_append(c, data, len) != 0) {
        conn_close(c);
        return -1;
    }
    return 0;
}

/* A reply was encoded straight into c->out from offset before: keep it if it fits. */
static int conn_commit(conn *c, size_t before) {
    if ((long long)(c->out.len + c->out_pending) > c->s->cfg.max_output_buffer) {
        c->out.len = before; /* the reply that does not fit is not sent */
        conn_overflow(c);
        return -1;
    }
    schedule_flush(c);
    return 0;
}

/* --- encoding replies ------------------------------------------------------------------------ */

/* Appends the JSON object o (borrowed) with request_id (borrowed, may be NULL). */
static int put_json(ubuf *b, json_t *o, json_t *request_id) {
    if (o == NULL)
        return -ENOMEM;
    return proto_encode(o, request_id, &b->p, &b->len, &b->cap);
}

static int put_error(line_server *s, ubuf *b, req_err e, const char *msg, json_t *request_id) {
    s->errors[e]++;
    json_t *o = proto_error(e, msg, request_id);
    int rc = put_json(b, o, NULL);
    json_decref(o);
    return rc;
}

/* Appends "{" and, when there is one, "\"request_id\":ID,": the opening of a
 * pre-encoded answer, whose members and closing "}\n" follow. Sized by jansson, so an
 * id of any length (within a line) is echoed. */
static int put_open(ubuf *b, json_t *request_id) {
    if (ubuf_add(b, "{", 1) != 0)
        return -ENOMEM;
    if (request_id == NULL)
        return 0;
    size_t n = json_dumpb(request_id, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    if (n == 0 || ubuf_add(b, "\"request_id\":", 13) != 0)
        return -ENOMEM;
    if (b->cap - b->len < n + 1) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap - b->len < n + 1)
            ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (np == NULL)
            return -ENOMEM;
        b->p = np;
        b->cap = ncap;
    }
    if (json_dumpb(request_id, b->p + b->len, n, JSON_COMPACT | JSON_ENCODE_ANY) != n)
        return -ENOMEM;
    b->len += n;
    return ubuf_add(b, ",", 1);
}

static void answer_free(cache_entry *e) {
    line_answer *a = (line_answer *)e;
    if (a->heads)
        for (size_t i = 0; i < a->ncands; i++)
            free(a->heads[i]);
    free(a->heads);
    free(a->head_lens);
    free(a->tail);
    free(e->key);
    free(a);
}

/* Encodes o (stolen) compactly into a new string; NULL when out of memory. */
static char *encode(json_t *o, size_t *len) {
    char *str = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (str != NULL)
        *len = strlen(str);
    return str;
}

/* The encoded answer of a lookup set: the instances it lists, with their current check
 * times (a new time is a new service generation, so a cached answer always has them). */
static line_answer *answer_build(const lookup_set *set) {
    line_answer *a = calloc(1, sizeof(*a));
    ubuf tail = {0};
    if (a == NULL)
        return NULL;
    a->base.free_fn = answer_free;
    a->base.gen = set->base.gen;
    a->ncands = set->ncands;
    if ((a->base.key = malloc(set->base.key_len)) == NULL ||
        (a->heads = calloc(set->ncands, sizeof(*a->heads))) == NULL ||
        (a->head_lens = calloc(set->ncands, sizeof(*a->head_lens))) == NULL ||
        ubuf_add(&tail, "\"instances\":[", 13) != 0)
        goto fail;
    memcpy(a->base.key, set->base.key, set->base.key_len);
    a->base.key_len = set->base.key_len;
    for (size_t i = 0; i < set->nlisted; i++) {
        size_t flen = 0;
        char *frag = encode(cat_instance_json(set->listed[i]), &flen);
        int rc = frag == NULL || (i > 0 && ubuf_add(&tail, ",", 1) != 0) ||
                 ubuf_add(&tail, frag, flen) != 0;
        free(frag);
        if (rc)
            goto fail;
    }
    if (ubuf_add(&tail, "]}\n", 3) != 0)
        goto fail;
    a->tail = tail.p;
    a->tail_len = tail.len;
    return a;
fail:
    free(tail.p);
    answer_free(&a->base);
    return NULL;
}

/* The head of the answer handing out candidate i:
 * "\"ok\":true,\"service\":..,\"host\":..,\"port\":..,\"description\":..," */
static const char *answer_head(line_answer *a, const lookup_set *set, const cat_service *svc,
                               size_t i, size_t *len) {
    if (a->heads[i] == NULL) {
        const cat_instance *in = set->cands[i];
        size_t n = 0;
        char *str = encode(json_pack("{s:b, s:s, s:s, s:i, s:s}", "ok", 1, "service", svc->name,
                                     "host", in->host, "port", in->port, "description",
                                     in->description),
                           &n);
        if (str == NULL)
            return NULL;
        /* "{...}" -> "...," so a request_id can go in front and the list behind */
        memmove(str, str + 1, n - 2);
        str[n - 2] = ',';
        str[n - 1] = '\0';
        a->heads[i] = str;
        a->head_lens[i] = n - 1;
    }
    *len = a->head_lens[i];
    return a->heads[i];
}

static int put_lookup(line_server *s, ubuf *b, const reply *r, json_t *request_id) {
    const lookup_set *set = r->set;
    line_answer *a = (line_answer *)cache_get(s->answers, set->base.key, set->base.key_len,
                                              set->base.gen);
    int cached = 1, rc = -ENOMEM;
    if (a == NULL) {
        if ((a = answer_build(set)) == NULL)
            return put_error(s, b, RERR_INTERNAL, "out of memory", request_id);
        cached = cache_admit(s->answers, set->base.key, set->base.key_len) &&
                 cache_put(s->answers, &a->base);
    }
    size_t hlen = 0;
    const char *head = answer_head(a, set, r->svc, r->pick, &hlen);
    if (head == NULL)
        rc = put_error(s, b, RERR_INTERNAL, "out of memory", request_id);
    else if (put_open(b, request_id) == 0 && ubuf_add(b, head, hlen) == 0 &&
             ubuf_add(b, a->tail, a->tail_len) == 0)
        rc = 0;
    if (!cached)
        answer_free(&a->base);
    return rc;
}

/* Encodes the list body ("\"ok\":true,\"services\":[...]}\n") into s->list_body. */
static int build_list(line_server *s) {
    size_t n = 0;
    cat_service **svcs = cat_sorted_services(core_catalog(s->core), &n);
    json_t *arr = json_array();
    int rc = -1;
    if (svcs == NULL || arr == NULL)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const cat_service *sv = svcs[i];
        const cat_instance *latest = sv->latest;
        if (json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:I}", "service", sv->name,
                                                 "description", latest->description, "instances",
                                                 (json_int_t)sv->n, "passing",
                                                 (json_int_t)sv->passing)) != 0)
            goto out;
    }
    char *enc = json_dumps(arr, JSON_COMPACT);
    if (enc == NULL)
        goto out;
    s->list_body.len = 0;
    static const char open[] = "\"ok\":true,\"services\":";
    rc = ubuf_add(&s->list_body, open, sizeof(open) - 1) ||
                 ubuf_add(&s->list_body, enc, strlen(enc)) || ubuf_add(&s->list_body, "}\n", 2)
             ? -1
             : 0;
    free(enc);
out:
    free(svcs);
    json_decref(arr);
    return rc;
}

/* The list is encoded once per catalog generation: repeated lists of a large registry
 * cost a copy, not an encoding of every service on the loop. */
static int put_list(line_server *s, ubuf *b, json_t *request_id) {
    uint64_t gen = cat_generation(core_catalog(s->core));
    if (s->list_body.len == 0 || s->list_gen != gen) {
        if (build_list(s) != 0) {
            s->list_body.len = 0;
            return put_error(s, b, RERR_INTERNAL, "out of memory", request_id);
        }
        s->list_gen = gen;
    }
    if (put_open(b, request_id) != 0)
        return -ENOMEM;
    return ubuf_add(b, s->list_body.p, s->list_body.len);
}

static void on_event(void *ud, const store_event *ev, json_t *obj);

/* A watcher follows the bus from now on (of service, or every service when NULL). */
static int conn_watch(conn *c, const char *service) {
    if (c->sub != NULL)
        unwatch(c);
    free(c->watch_service);
    c->watch_service = NULL;
    if (service != NULL && (c->watch_service = strdup(service)) == NULL)
        return -ENOMEM;
    if ((c->sub = bus_subscribe(core_bus(c->s->core), on_event, c)) == NULL)
        return -ENOMEM;
    c->s->nwatchers++;
    return 0;
}

static int put_stats(line_server *s, ubuf *b, json_t *stats, json_t *request_id) {
    json_t *errors = json_object();
    for (int e = RERR_BAD_REQUEST; e <= RERR_INTERNAL; e++)
        json_object_set_new(errors, req_err_name((req_err)e),
                            json_integer((json_int_t)s->errors[e]));
    json_object_set_new(stats, "connections", json_integer((json_int_t)s->nconns));
    json_object_set_new(stats, "watchers", json_integer((json_int_t)s->nwatchers));
    json_object_set_new(stats, "requests", json_integer((json_int_t)s->requests));
    json_object_set_new(stats, "rejected_connections", json_integer((json_int_t)s->rejected_conns));
    json_object_set_new(stats, "errors", errors);
    return put_json(b, stats, request_id);
}

/* Encodes the reply to one request of c into b. */
static int put_reply(conn *c, ubuf *b, const reply *r, json_t *request_id) {
    line_server *s = c->s;
    if (r->err != RERR_NONE)
        return put_error(s, b, r->err, r->msg, request_id);
    json_t *o = NULL;
    int rc;
    switch (r->op) {
    case OP_LOOKUP:
        return put_lookup(s, b, r, request_id);
    case OP_LIST:
        return put_list(s, b, request_id);
    case OP_STATS:
        return put_stats(s, b, r->stats, request_id);
    case OP_REGISTER:
        o = json_pack("{s:b, s:s, s:s}", "ok", 1, "id", r->id, "token", r->token);
        break;
    case OP_HEARTBEAT:
        o = json_pack("{s:b, s:i}", "ok", 1, "ttl", r->ttl);
        break;
    case OP_EVENTS:
        o = json_pack("{s:b, s:O}", "ok", 1, "events", r->events);
        break;
    default: /* deregister, watch, ping */
        o = json_pack("{s:b}", "ok", 1);
        break;
    }
    if (o == NULL)
        return put_error(s, b, RERR_INTERNAL, "out of memory", request_id);
    rc = put_json(b, o, request_id);
    json_decref(o);
    return rc;
}

/* --- watchers ------------------------------------------------------------------------------ */

static void on_event(void *ud, const store_event *ev, json_t *obj) {
    conn *c = ud;
    line_server *s = c->s;
    if (c->watch_service && (ev->service == NULL || strcmp(ev->service, c->watch_service) != 0))
        return;
    if (s->ev_seq != ev->seq || s->ev_line.len == 0) { /* encoded once for every watcher */
        s->ev_line.len = 0;
        s->ev_seq = 0;
        if (put_json(&s->ev_line, obj, NULL) != 0) {
            s->ev_line.len = 0;
            return;
        }
        s->ev_seq = ev->seq;
    }
    conn_write(c, s->ev_line.p, s->ev_line.len);
}

/* --- requests: order and replies ------------------------------------------------------------ */

static void sync_done(waiter *w, const reply *r) {
    sync_waiter *sw = (sync_waiter *)w;
    conn *c = sw->c;
    if (!can_write(c))
        return;
    if (r->op == OP_WATCH && r->err == RERR_NONE && conn_watch(c, sw->rq->service) != 0) {
        reply e = {.op = r->op, .err = RERR_INTERNAL, .msg = "out of memory"};
        sync_done(w, &e);
        return;
    }
    size_t before = c->out.len;
    if (put_reply(c, &c->out, r, sw->request_id) != 0) {
        c->out.len = before;
        conn_close(c);
        return;
    }
    conn_commit(c, before);
}

static void resume(conn *c);

/* Sends the replies at the head of the queue that are ready, in order. Returns 1 when
 * the connection was freed with its last slot (the caller must not touch it). */
static int send_ready(conn *c) {
    while (c->slots != NULL && c->slots->done) {
        slot *sl = c->slots;
        c->slots = sl->next;
        if (c->slots == NULL)
            c->slots_tail = NULL;
        c->busy--;
        if (sl->out.len > 0)
            conn_write(c, sl->out.p, sl->out.len);
        free(sl->out.p);
        json_decref(sl->request_id);
        free(sl);
        int last = c->refs == 1 && c->closed;
        conn_unref(c);
        if (last)
            return 1;
    }
    return 0;
}

static void slot_done(waiter *w, const reply *r) {
    slot *sl = (slot *)w;
    conn *c = sl->c;
    sl->done = 1;
    if (can_write(c) && put_reply(c, &sl->out, r, sl->request_id) != 0)
        sl->out.len = 0;
    if (!c->processing && c->slots == sl && send_ready(c) == 0 && c->busy == 0)
        resume(c);
}

/* Every reply owed was sent: parse what waited, and read again. */
static void resume(conn *c) {
    if (c->closing || c->processing)
        return;
    if (c->paused) {
        c->paused = 0;
        process_input(c);
        if (!c->closing && c->read_stopped && !c->paused && !c->eof && !c->close_after_flush &&
            !c->s->stopping) {
            c->read_stopped = 0;
            on_read_restart(c);
        }
    }
    if (!c->closing && c->busy == 0 && (c->eof || c->close_after_flush)) {
        c->close_after_flush = 1;
        schedule_flush(c);
    }
}

/* Logs a bad request: only the first bytes, and only as an escaped string (the line may
 * be huge or binary). Nothing from where a shared secret could start ("auth", or any \u
 * escape that could spell it) is ever logged. */
static void log_bad_request(line_server *s, conn *c, req_err e, const char *msg, const char *line,
                            size_t len) {
    if (!alog_enabled(s->log, ALOG_WARN))
        return;
    char head[65];
    size_t n = len < 64 ? len : 64;
    const char *secret = memmem(line, len, "auth", 4);
    const char *esc = memmem(line, len, "\\u", 2);
    if (esc != NULL && (secret == NULL || esc < secret))
        secret = esc;
    if (secret != NULL && (size_t)(secret - line) < n)
        n = (size_t)(secret - line);
    for (size_t i = 0; i < n; i++)
        head[i] = (line[i] >= 0x20 && line[i] < 0x7f) ? line[i] : '.';
    head[n] = '\0';
    alog_event(s->log, ALOG_WARN, "bad_request",
               json_pack("{s:s, s:s, s:s, s:s}", "code", req_err_name(e), "message", msg,
                         "client", c->peer, "line", head));
}

static void handle_too_large(conn *c) {
    static const char msg[] = "request line longer than 65536 bytes";
    log_bad_request(c->s, c, RERR_TOO_LARGE, msg, c->in, 64);
    size_t before = c->out.len;
    if (put_error(c->s, &c->out, RERR_TOO_LARGE, "request line longer than 65536 bytes (the "
                                                 "limit, newline included); closing the "
                                                 "connection", NULL) == 0)
        conn_commit(c, before);
    c->close_after_flush = 1;
    c->in_len = 0;
    if (!c->read_stopped) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->read_stopped = 1;
    }
    schedule_flush(c);
}

/* Runs one decoded request. Returns 0 when it was run (answered, or its reply owed in a
 * slot), or 1 when it must wait for the replies owed before it. */
static int run_request(conn *c, proto_request *pr) {
    line_server *s = c->s;
    peer p = {c->peer, c->peer_ip, c->peer_hash};
    if (!ops_is_write(pr->r.op)) {
        if (c->busy)
            return 1; /* a read sees every write before it */
        s->requests++;
        sync_waiter sw = {{sync_done}, c, &pr->r, pr->request_id};
        ops_run(s->core, &pr->r, &p, &sw.w);
        return 0;
    }
    slot *sl = calloc(1, sizeof(*sl));
    if (sl == NULL) {
        if (c->busy)
            return 1;
        s->requests++;
        reply e = {.op = pr->r.op, .err = RERR_INTERNAL, .msg = "out of memory"};
        sync_waiter sw = {{sync_done}, c, &pr->r, pr->request_id};
        sync_done(&sw.w, &e);
        return 0;
    }
    s->requests++;
    sl->w.done = slot_done;
    sl->c = c;
    sl->request_id = json_incref(pr->request_id);
    c->refs++;
    c->busy++;
    if (c->slots_tail)
        c->slots_tail->next = sl;
    else
        c->slots = sl;
    c->slots_tail = sl;
    ops_run(s->core, &pr->r, &p, &sl->w);
    return 0;
}

/* Parses and runs every complete line in the input buffer, in order, until the
 * connection must wait for replies owed. */
static void process_input(conn *c) {
    line_server *s = c->s;
    size_t pos = 0;
    /* A line arriving in small pieces: look only at the new bytes for its end, so a
     * byte-at-a-time client costs O(n), not O(n^2). */
    if (!c->paused && c->scanned > 0 && c->in_len < PROTO_MAX_LINE &&
        memchr(c->in + c->scanned, '\n', c->in_len - c->scanned) == NULL) {
        c->scanned = c->in_len;
        return;
    }
    c->scanned = 0;
    c->processing = 1;
    for (;;) {
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
                c->processing = 0;
                handle_too_large(c);
                return;
            }
            proto_request pr;
            char msg[PROTO_MSG_LEN];
            req_err e = RERR_NONE;
            if (!proto_memo_get(s->memo, start, len, &pr)) {
                e = proto_decode(start, len, &pr, msg);
                if (e == RERR_NONE)
                    proto_memo_put(s->memo, start, len, &pr);
            }
            int wait = 0;
            if (e != RERR_NONE) {
                if (c->busy) {
                    wait = 1;
                } else {
                    s->requests++;
                    log_bad_request(s, c, e, msg, start, len);
                    size_t before = c->out.len;
                    if (put_error(s, &c->out, e, msg, pr.request_id) == 0)
                        conn_commit(c, before);
                }
            } else {
                wait = run_request(c, &pr);
            }
            proto_request_free(&pr);
            if (wait) {
                c->paused = 1;
                break;
            }
            pos += len + 1;
            c->last_active = uv_now(s->loop);
        }
        /* Writes answered while we parsed (refused before the store) go out now, and
         * what waited for them runs: in this loop, not by recursion, however many a
         * pipeline holds. The slots hold references, and a connection is freed only
         * from the loop, so c stays valid here. */
        send_ready(c);
        if (c->paused && c->busy == 0 && !c->closing && !c->close_after_flush) {
            c->paused = 0;
            continue;
        }
        break;
    }
    c->processing = 0;
    if (c->closing)
        return;
    if (pos > 0) {
        memmove(c->in, c->in + pos, c->in_len - pos);
        c->in_len -= pos;
    }
    c->line_started = c->in_len > 0 ? (c->line_started ? c->line_started : uv_now(s->loop)) : 0;
    /* Paused with a full buffer: stop reading until the replies owed are out. */
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

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    conn *c = (conn *)st;
    if (nread == 0)
        return;
    if (nread < 0) {
        /* EOF: answer what was read (a client may half-close after its requests), then
         * close; a partial last line is dropped. Errors: close now. */
        uv_read_stop(st);
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
static long long fd_headroom(const line_server *s) {
    long long h = s->fd_limit / 4;
    return h > 32 ? 32 : h;
}

/* Refuses a connection that could not be allocated: accepted into the spare (so libuv
 * goes on polling the listener) and closed at once; a new spare is made when the old one
 * is closed. Without it, libuv would stop accepting for good. */
static void spare_closed(uv_handle_t *h) {
    conn *c = (conn *)h;
    line_server *s = c->s;
    memset(c, 0, sizeof(*c));
    c->s = s;
    s->spare = c;
}

static int accept_into_spare(line_server *s, uv_stream_t *server) {
    conn *c = s->spare;
    if (c == NULL)
        return -1;
    s->spare = NULL;
    uv_tcp_init(s->loop, &c->tcp);
    uv_accept(server, (uv_stream_t *)&c->tcp);
    uv_close((uv_handle_t *)&c->tcp, spare_closed);
    s->rejected_conns++;
    alog_event(s->log, ALOG_WARN, "limit",
               json_pack("{s:s, s:s}", "limit", "memory", "error",
                         "out of memory: a new connection was refused"));
    return 0;
}

/* Test hook: when > 0, that many next connections fail to allocate. */
int line__fail_allocs;

static void on_connection(uv_stream_t *server, int status) {
    line_server *s = server->data;
    if (status < 0) {
        /* libuv already accepted-and-closed with its reserve descriptor on EMFILE, so
         * the loop does not spin; say so (rate-limited by the kernel's backlog). */
        s->rejected_conns++;
        alog_event(s->log, ALOG_WARN, "accept_failed", json_pack("{s:s}", "error", uv_strerror(status)));
        return;
    }
    conn *c = NULL;
    if (line__fail_allocs > 0)
        line__fail_allocs--;
    else
        c = calloc(1, sizeof(*c));
    if (c == NULL) {
        accept_into_spare(s, server);
        return;
    }
    c->s = s;
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
    /* Descriptor headroom: the database, the log and health probes need descriptors too,
     * so clients stop short of the limit. Past it they are told and closed; when the
     * table is completely full libuv accepts-and-closes with its reserve descriptor. */
    uv_os_fd_t fd = -1;
    int low_fds = uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 &&
                  (long long)fd >= s->fd_limit - fd_headroom(s);
    c->last_active = uv_now(s->loop);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    const char *why = NULL;
    if (low_fds) {
        c->rejected = 1;
        s->rejected_conns++;
        uint64_t now = uv_now(s->loop);
        if (now - s->last_emfile_log >= 1000) { /* at most one line a second */
            s->last_emfile_log = now;
            alog_event(s->log, ALOG_WARN, "limit",
                       json_pack("{s:s, s:s, s:s, s:I}", "limit", "file_descriptors", "error",
                                 "too many open files (EMFILE): new connections are refused",
                                 "client", c->peer, "rejected", (json_int_t)s->rejected_conns));
        }
        why = "registry is out of file descriptors; try again later";
    } else if ((long long)s->nconns >= s->cfg.max_conns || s->stopping) {
        c->rejected = 1;
        s->rejected_conns++;
        alog_event(s->log, ALOG_WARN, "limit",
                   json_pack("{s:s, s:s, s:I}", "limit", "max_conns", "client", c->peer, "max",
                             (json_int_t)s->cfg.max_conns));
        why = s->stopping ? "registry is shutting down"
                          : "too many connections (--max-conns reached); try again later";
    }
    if (why != NULL) {
        size_t before = c->out.len;
        if (put_error(s, &c->out, RERR_UNAVAILABLE, why, NULL) == 0)
            conn_commit(c, before);
        c->close_after_flush = 1;
        schedule_flush(c);
        return;
    }
    s->nconns++;
    on_read_restart(c);
}

/* --- the server -------------------------------------------------------------------------- */

void line_config_defaults(line_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->listen_host, sizeof(cfg->listen_host), "127.0.0.1");
    cfg->listen_port = LINE_DEFAULT_PORT;
    cfg->max_conns = 10000;
    cfg->max_output_buffer = 16ll << 20;
    cfg->idle_timeout_ms = 300000;
    cfg->request_timeout_ms = 10000;
    cfg->cache_size = 4096;
}

int line_new(uv_loop_t *loop, const line_config *cfg, core *c, line_server **out, char *err,
             size_t errlen) {
    line_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        goto oom;
    s->loop = loop;
    s->cfg = *cfg;
    s->core = c;
    s->log = core_log(c);
    s->answers = cache_new((size_t)cfg->cache_size);
    s->memo = proto_memo_new();
    s->spare = calloc(1, sizeof(conn));
    if (!s->answers || !s->memo || !s->spare)
        goto oom;
    s->spare->s = s;
    struct rlimit nofile;
    s->fd_limit = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY
                      ? (long long)nofile.rlim_cur
                      : (1LL << 30);
    *out = s;
    return 0;
oom:
    line_free(s);
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
}

void line_free(line_server *s) {
    if (s == NULL)
        return;
    cache_free(s->answers);
    proto_memo_free(s->memo);
    free(s->spare);
    free(s->list_body.p);
    free(s->ev_line.p);
    free(s);
}

static void on_prepare(uv_prepare_t *h) {
    server_flush(h->data);
}

static void on_check(uv_check_t *h) {
    server_flush(h->data);
}

/* Once per tick: drop idle connections and slow (unfinished) request lines. */
static void on_sweep(uv_timer_t *t) {
    line_server *s = t->data;
    uint64_t now = uv_now(s->loop);
    if (s->draining == 1 && now >= s->drain_deadline) {
        while (s->conns)
            conn_close(s->conns);
        return;
    }
    for (conn *c = s->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->closing || c->rejected)
            continue;
        const char *why = NULL;
        if (c->overflowed) {
            if (now - c->overflow_at > OVERFLOW_DRAIN_MS)
                conn_close(c);
            continue;
        }
        if (c->line_started && s->cfg.request_timeout_ms &&
            now - c->line_started > s->cfg.request_timeout_ms && !c->paused)
            why = "request_timeout";
        else if (c->sub == NULL && c->busy == 0 && s->cfg.idle_timeout_ms &&
                 now - c->last_active > s->cfg.idle_timeout_ms)
            why = "idle_timeout";
        if (why != NULL) {
            alog_event(s->log, ALOG_INFO, "limit",
                       json_pack("{s:s, s:s}", "limit", why, "client", c->peer));
            conn_close(c);
        }
    }
}

int line_listen(line_server *s, char *bound, size_t len, char *err, size_t errlen) {
    struct addrinfo hints = {0}, *res = NULL;
    char port[16];
    snprintf(port, sizeof(port), "%d", s->cfg.listen_port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(s->cfg.listen_host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve listen address %s: %s", s->cfg.listen_host,
                 gai_strerror(gai));
        return UV_EINVAL;
    }
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    int rc = uv_tcp_bind(&s->listener, res->ai_addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    freeaddrinfo(res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", s->cfg.listen_host, s->cfg.listen_port,
                 uv_strerror(rc));
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
    /* The flush handles and the sweep timer. */
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

void line_stop_accepting(line_server *s) {
    s->stopping = 1;
    if (!uv_is_closing((uv_handle_t *)&s->listener))
        uv_close((uv_handle_t *)&s->listener, NULL);
    /* What was read is answered; nothing more is read. */
    for (conn *c = s->conns; c != NULL; c = c->next) {
        if (!c->read_stopped && !c->closing) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->read_stopped = 1;
        }
    }
}

int line_busy(const line_server *s) {
    for (const conn *c = s->conns; c != NULL; c = c->next)
        if (c->busy > 0)
            return 1;
    return 0;
}

uint64_t line_requests(const line_server *s) {
    return s->requests;
}

static void close_server_handles(line_server *s) {
    if (s->draining == 2)
        return;
    s->draining = 2;
    uv_close((uv_handle_t *)&s->prepare, NULL);
    uv_close((uv_handle_t *)&s->check, NULL);
    uv_close((uv_handle_t *)&s->sweep, NULL);
    if (s->on_drained)
        s->on_drained(s->drained_ud);
}

void line_close_all(line_server *s, uint64_t deadline_ms, void (*done)(void *ud), void *ud) {
    /* Every connection closes once its replies are written; past the deadline the rest
     * are cut (a client that does not read must not hold up the exit). */
    s->on_drained = done;
    s->drained_ud = ud;
    s->drain_deadline = uv_now(s->loop) + deadline_ms;
    s->draining = 1;
    for (conn *c = s->conns; c != NULL; c = c->next) {
        c->close_after_flush = 1;
        schedule_flush(c);
    }
    server_flush(s);
    if (s->conns == NULL)
        close_server_handles(s);
}
