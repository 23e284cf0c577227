/* SPDX-License-Identifier: BSD-2-Clause */
/* loop_util.h — the fixture shared by test_core.c and test_line.c: a real uv_loop, an
 * in-memory store (store_open("memory:")), a log in a temporary file, a core (and, for
 * test_line.c, the line front-end), started and stopped in registry/main.c's order.
 *
 *   setup      loop, memory store, log file, default configs (f->cfg, f->line_cfg)
 *   test       tweaks f->cfg, calls fx_start (or fx_start_line), drives the loop with
 *              RUN_UNTIL(f, condition, "what"): runs the loop until the condition holds,
 *              failing the test after DEADLINE_MS (a uv_timer, never a sleep); ends with
 *              fx_finish: the orderly stop, every handle closed, uv_loop_close == 0
 *   teardown   frees; after a failed test it first stops and closes what it can
 *
 * Everything a callback may still write to after a failed test (waiters, clients,
 * subscriber state) lives in the fixture, not on the test's stack, so teardown can run
 * the loop safely after cmocka jumped out of a test.
 *
 * Functions are static inline so each test file uses what it needs without warnings.
 */
#ifndef TESTS_UNIT_LOOP_UTIL_H
#define TESTS_UNIT_LOOP_UTIL_H

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>
#include <jansson.h>
#include <uv.h>

#include "base/alog.h"
#include "base/util.h"
#include "core/bus.h"
#include "core/catalog.h"
#include "core/core.h"
#include "core/health.h"
#include "core/ops.h"
#include "front/line/line.h"
#include "front/net.h"
#include "store/memory.h"
#include "store/store.h"

/* How long any one wait may take before the test fails. Generous: the machine has two
 * cores and is noisy, and the sanitizer build is several times slower. Passing tests
 * never wait for it. */
#define DEADLINE_MS 10000

#define FX_RECS 64
#define FX_CLIENTS 4

typedef struct fx fx;

/* A waiter that copies what a reply holds (the reply is borrowed during done only). */
typedef struct rec {
    waiter w;                       /* must stay first */
    fx *f;
    int calls;                      /* done called this many times */
    int order;                      /* 1-based rank among every reply of the test */
    int inside;                     /* done ran inside ops_run */
    req_op op;
    req_err err;
    char msg[512];
    char id[STORE_ID_MAX + 1];
    char token[64];
    int ttl;
    const void *set;                /* lookup: the set (compared, never dereferenced) */
    size_t nlisted, ncands;
    char listed[8][STORE_ID_MAX + 1]; /* lookup: ids of the first listed instances */
    char host[REQ_HOST_MAX + 1];    /* lookup: the instance handed out */
    int port;
    char pick_id[STORE_ID_MAX + 1];
    json_t *events;                 /* events: a copy */
    json_t *stats;                  /* stats: a copy */
    void (*then)(struct rec *r);    /* optional: runs at the end of done */
} rec;

/* A TCP client of the line front-end, in the same loop. */
typedef struct client {
    uv_tcp_t tcp;
    uv_connect_t creq;
    fx *f;
    int open;                       /* uv_tcp_init ran, uv_close not yet */
    int closed;                     /* close callback ran */
    int connected;                  /* connect callback ran with status 0 */
    int connect_status;
    int eof;                        /* the server closed (UV_EOF) */
    int read_error;                 /* any other read error */
    char in[65536];
    size_t in_len;
} client;

struct fx {
    uv_loop_t loop;
    int loop_closed;
    uv_timer_t deadline;
    int timed_out;
    store *st;
    alog *log;
    char log_path[PATH_MAX];
    core_config cfg;
    core *core;
    line_config line_cfg;
    line_server *line;
    int line_port;
    int stop_phase;                 /* 0 running, 1 stopping, 2 closing conns, 3 stopped */
    int finished;                   /* fx_finish succeeded */
    json_t *events;                 /* every bus event since fx_start (references) */
    bus_sub *recorder;
    rec recs[FX_RECS];
    int nrecs, completions, in_ops_run;
    /* A TCP listener owned by the test: a healthy check target. */
    uv_tcp_t target;
    int target_open, target_port;
    unsigned target_accepted;
    /* A timer a test may use for its own periodic work (heartbeats). */
    uv_timer_t aux;
    int aux_open;
    int aux_ticks;
    client clients[FX_CLIENTS];
};

static const peer fx_peer = {"127.0.0.1:40000", "127.0.0.1", 0x1234, NULL};

/* --- the deadline and running the loop --------------------------------------------------- */

static inline void fx_on_deadline(uv_timer_t *t) {
    fx *f = t->data;
    f->timed_out = 1;
    uv_stop(&f->loop);
}

static inline void fx_arm(fx *f) {
    f->timed_out = 0;
    uv_ref((uv_handle_t *)&f->deadline);
    uv_timer_start(&f->deadline, fx_on_deadline, DEADLINE_MS, 0);
}

static inline void fx_disarm(fx *f) {
    uv_timer_stop(&f->deadline);
}

/* Runs the loop until cond holds or the deadline passed (no failure). The armed deadline
 * timer keeps the loop alive, so each UV_RUN_ONCE blocks until something happens. */
#define RUN_WHILE_NOT(f, cond)                                                        \
    do {                                                                              \
        fx_arm(f);                                                                    \
        while (!(cond) && !(f)->timed_out)                                            \
            uv_run(&(f)->loop, UV_RUN_ONCE);                                          \
        fx_disarm(f);                                                                 \
    } while (0)

/* Runs the loop until cond holds; fails the test naming what did not happen. */
#define RUN_UNTIL(f, cond, what)                                                      \
    do {                                                                              \
        RUN_WHILE_NOT(f, cond);                                                       \
        if (!(cond))                                                                  \
            fail_msg("timed out after %d ms waiting for %s", DEADLINE_MS, what);       \
    } while (0)

/* --- the bus recorder ------------------------------------------------------------------- */

static inline void fx_record(void *ud, const store_event *ev, json_t *obj) {
    fx *f = ud;
    (void)ev;
    json_array_append(f->events, obj);
}

/* Index of the first recorded event named name (of instance id when not NULL), or -1. */
static inline int fx_event_index(fx *f, const char *name, const char *id) {
    size_t i;
    json_t *e;
    json_array_foreach(f->events, i, e) {
        const char *n = json_string_value(json_object_get(e, "event"));
        const char *eid = json_string_value(json_object_get(e, "id"));
        if (n && strcmp(n, name) == 0 && (id == NULL || (eid && strcmp(eid, id) == 0)))
            return (int)i;
    }
    return -1;
}

static inline int fx_event_count(fx *f, const char *name, const char *id) {
    size_t i;
    json_t *e;
    int n = 0;
    json_array_foreach(f->events, i, e) {
        const char *en = json_string_value(json_object_get(e, "event"));
        const char *eid = json_string_value(json_object_get(e, "id"));
        if (en && strcmp(en, name) == 0 && (id == NULL || (eid && strcmp(eid, id) == 0)))
            n++;
    }
    return n;
}

/* --- setup, start, stop, teardown -------------------------------------------------------- */

static inline int fx_setup(void **state) {
    char err[STORE_ERR_LEN];
    fx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(f->log_path, sizeof(f->log_path), "%s/registry_test_log.XXXXXX", tmp);
    int fd = mkstemp(f->log_path);
    if (fd < 0) {
        free(f);
        return -1;
    }
    close(fd);
    if (uv_loop_init(&f->loop) != 0 ||
        alog_open(f->log_path, ALOG_DEBUG, &f->log, err, sizeof(err)) != 0 ||
        store_open("memory:", NULL, &f->st, err, sizeof(err)) != 0 ||
        (f->events = json_array()) == NULL) {
        fprintf(stderr, "fixture: %s\n", err);
        return -1;
    }
    uv_timer_init(&f->loop, &f->deadline);
    f->deadline.data = f;
    core_config_defaults(&f->cfg);
    line_config_defaults(&f->line_cfg);
    snprintf(f->line_cfg.listen_host, sizeof(f->line_cfg.listen_host), "127.0.0.1");
    f->line_cfg.listen_port = 0;
    *state = f;
    return 0;
}

/* Builds and starts the core (and the line front-end when with_line) like main.c:
 * core_new -> core_load -> [line_new -> alog_attach -> line_listen] -> core_start; then
 * waits until the "start" event committed, so every test begins with an idle writer. */
static inline void fx_start_with(fx *f, int with_line) {
    char err[512], bound[300];
    assert_int_equal(core_new(&f->loop, &f->cfg, f->st, f->log, &f->core, err, sizeof(err)), 0);
    assert_int_equal(core_load(f->core, err, sizeof(err)), 0);
    if (with_line) {
        assert_int_equal(line_new(&f->loop, &f->line_cfg, f->core, &f->line, err, sizeof(err)), 0);
        alog_attach(f->log, &f->loop);
        if (line_listen(f->line, bound, sizeof(bound), err, sizeof(err)) != 0)
            fail_msg("line_listen: %s", err);
        const char *colon = strrchr(bound, ':');
        assert_non_null(colon);
        f->line_port = atoi(colon + 1);
        assert_true(f->line_port > 0);
    }
    f->recorder = bus_subscribe(core_bus(f->core), fx_record, f);
    assert_non_null(f->recorder);
    core_start(f->core, NULL);
    RUN_UNTIL(f, core_idle(f->core), "the start event to commit");
}

static inline void fx_start(fx *f) {
    fx_start_with(f, 0);
}

static inline void fx_start_line(fx *f) {
    fx_start_with(f, 1);
}

static inline void fx_line_closed(void *ud) {
    fx *f = ud;
    core_close(f->core);
    alog_detach(f->log); /* what is still pending goes out synchronously at close */
    f->stop_phase = 3;
}

/* main.c's maybe_finish: once no write is in flight, close every connection, then the
 * core's handles. */
static inline void fx_maybe_close_line(void *ud) {
    fx *f = ud;
    if (f->stop_phase != 1 || !core_idle(f->core) || line_busy(f->line))
        return;
    f->stop_phase = 2;
    line_close_all(f->line, 5000, fx_line_closed, f);
}

/* The orderly stop of main.c. Returns 0, or -1 when it did not complete in time. */
static inline int fx_stop(fx *f) {
    if (f->core == NULL)
        return 0;
    if (f->stop_phase == 0) {
        f->stop_phase = 1;
        if (f->line != NULL) {
            line_stop_accepting(f->line);
            core_on_idle(f->core, fx_maybe_close_line, f);
        }
        core_stop(f->core, NULL);
        if (f->line != NULL)
            fx_maybe_close_line(f);
    }
    if (f->line != NULL) {
        RUN_WHILE_NOT(f, f->stop_phase == 3);
    } else if (f->stop_phase != 3) {
        RUN_WHILE_NOT(f, core_idle(f->core));
        if (core_idle(f->core)) {
            core_close(f->core);
            f->stop_phase = 3;
        }
    }
    return f->stop_phase == 3 ? 0 : -1;
}

static inline void fx_close_test_handles(fx *f) {
    if (f->target_open) {
        uv_close((uv_handle_t *)&f->target, NULL);
        f->target_open = 0;
    }
    if (f->aux_open) {
        uv_close((uv_handle_t *)&f->aux, NULL);
        f->aux_open = 0;
    }
    for (int i = 0; i < FX_CLIENTS; i++) {
        if (f->clients[i].open) {
            uv_close((uv_handle_t *)&f->clients[i].tcp, NULL);
            f->clients[i].open = 0;
        }
    }
}

typedef struct walk_list {
    const uv_handle_t *skip;
    char *buf;
    size_t len, used;
    int n;
} walk_list;

static inline void fx_list_handle(uv_handle_t *h, void *arg) {
    walk_list *wl = arg;
    if (h == wl->skip || uv_is_closing(h))
        return;
    wl->n++;
    int k = snprintf(wl->buf + wl->used, wl->len - wl->used, "%s%s%s", wl->n > 1 ? ", " : "",
                     uv_handle_type_name(h->type), uv_is_active(h) ? " (active)" : "");
    if (k > 0 && wl->used + (size_t)k < wl->len)
        wl->used += (size_t)k;
}

static inline void fx_close_any(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* After the stop: the loop must end by itself (only the unreferenced deadline keeps
 * watch) with nothing left open. Returns 0, or -1 with the handles left in left[]. */
static inline int fx_drain(fx *f, char *left, size_t len) {
    fx_close_test_handles(f);
    fx_arm(f);
    uv_unref((uv_handle_t *)&f->deadline);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int timed_out = f->timed_out;
    fx_disarm(f);
    walk_list wl = {(const uv_handle_t *)&f->deadline, left, len, 0, 0};
    left[0] = '\0';
    uv_walk(&f->loop, fx_list_handle, &wl);
    uv_close((uv_handle_t *)&f->deadline, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    if (timed_out && wl.n == 0)
        snprintf(left, len, "a request still running after %d ms", DEADLINE_MS);
    if (timed_out || wl.n > 0)
        return -1;
    if (uv_loop_close(&f->loop) != 0) {
        snprintf(left, len, "uv_loop_close refused");
        return -1;
    }
    f->loop_closed = 1;
    return 0;
}

/* The end of every test: the orderly stop, then every handle closed and the loop closed
 * (libuv's MAKE_VALGRIND_HAPPY, but asserting the core closed its own handles). */
static inline void fx_finish(fx *f) {
    char left[512];
    if (fx_stop(f) != 0)
        fail_msg("the orderly stop did not complete in %d ms", DEADLINE_MS);
    if (fx_drain(f, left, sizeof(left)) != 0)
        fail_msg("handles left open after the orderly stop: %s", left);
    f->finished = 1;
}

static inline int fx_teardown(void **state) {
    fx *f = *state;
    health__fail_records = 0;
    net__fail_allocs = 0;
    if (!f->finished) {
        /* The test failed: stop what can be stopped, close every handle, no asserts. */
        if (!f->loop_closed) {
            if (uv_is_closing((uv_handle_t *)&f->deadline) == 0)
                fx_stop(f);
            fx_close_test_handles(f);
            uv_walk(&f->loop, fx_close_any, NULL);
            uv_run(&f->loop, UV_RUN_DEFAULT);
            uv_loop_close(&f->loop);
        }
    }
    line_free(f->line);
    core_free(f->core);
    store_close(f->st);
    alog_close(f->log);
    unlink(f->log_path);
    for (int i = 0; i < f->nrecs; i++) {
        json_decref(f->recs[i].events);
        json_decref(f->recs[i].stats);
    }
    json_decref(f->events);
    free(f);
    return 0;
}

/* --- requests and replies ------------------------------------------------------------------ */

static inline void rec_done(waiter *w, const reply *r) {
    rec *x = (rec *)w;
    fx *f = x->f;
    x->calls++;
    x->order = ++f->completions;
    x->inside = f->in_ops_run;
    x->op = r->op;
    x->err = r->err;
    snprintf(x->msg, sizeof(x->msg), "%s", r->msg ? r->msg : "");
    if (r->id)
        snprintf(x->id, sizeof(x->id), "%s", r->id);
    if (r->token)
        snprintf(x->token, sizeof(x->token), "%s", r->token);
    x->ttl = r->ttl;
    if (r->set != NULL) {
        const lookup_set *s = r->set;
        x->set = s;
        x->nlisted = s->nlisted;
        x->ncands = s->ncands;
        for (size_t i = 0; i < s->nlisted && i < 8; i++)
            snprintf(x->listed[i], sizeof(x->listed[i]), "%s", s->listed[i]->id);
        const cat_instance *in = s->cands[r->pick];
        snprintf(x->host, sizeof(x->host), "%s", in->host);
        x->port = in->port;
        snprintf(x->pick_id, sizeof(x->pick_id), "%s", in->id);
    }
    if (r->events) {
        json_decref(x->events);
        x->events = json_deep_copy(r->events);
    }
    if (r->stats) {
        json_decref(x->stats);
        x->stats = json_deep_copy(r->stats);
    }
    if (x->then)
        x->then(x);
}

/* A fresh waiter from the fixture's pool. */
static inline rec *fx_rec(fx *f) {
    assert_true(f->nrecs < FX_RECS);
    rec *x = &f->recs[f->nrecs++];
    memset(x, 0, sizeof(*x));
    x->w.done = rec_done;
    x->f = f;
    return x;
}

/* Runs rq with a fresh waiter; returns it (its reply may still be owed). */
static inline rec *fx_op(fx *f, const request *rq) {
    rec *x = fx_rec(f);
    f->in_ops_run++;
    ops_run(f->core, rq, &fx_peer, &x->w);
    f->in_ops_run--;
    return x;
}

static inline request rq_register(const char *service, const char *host, int port) {
    request r;
    memset(&r, 0, sizeof(r));
    r.op = OP_REGISTER;
    r.service = service;
    r.host = host;
    r.port = port;
    r.description = "";
    r.check = REQ_CHECK_NONE;
    return r;
}

static inline request rq_lookup(const char *service) {
    request r;
    memset(&r, 0, sizeof(r));
    r.op = OP_LOOKUP;
    r.service = service;
    return r;
}

static inline request rq_owner(req_op op, const char *id, const char *token) {
    request r;
    memset(&r, 0, sizeof(r));
    r.op = op;
    r.id = id;
    r.token = token;
    return r;
}

static inline request rq_simple(req_op op) {
    request r;
    memset(&r, 0, sizeof(r));
    r.op = op;
    r.limit = 100;
    return r;
}

/* Runs rq and waits for its reply. */
static inline rec *fx_call(fx *f, const request *rq) {
    rec *x = fx_op(f, rq);
    RUN_UNTIL(f, x->calls > 0, req_op_name(rq->op));
    return x;
}

#define assert_ok(x)                                                                  \
    do {                                                                              \
        if ((x)->err != RERR_NONE)                                                    \
            fail_msg("%s failed: %s: %s", req_op_name((x)->op), req_err_name((x)->err), \
                     (x)->msg);                                                       \
    } while (0)

/* Registers (check none unless rq says otherwise) and waits; the registration must work. */
static inline rec *fx_register(fx *f, const request *rq) {
    rec *x = fx_call(f, rq);
    assert_ok(x);
    return x;
}

static inline cat_instance *fx_inst(fx *f, const char *id) {
    return cat_by_id(core_catalog(f->core), id);
}

static inline cat_service *fx_service(fx *f, const char *name) {
    return cat_service_get(core_catalog(f->core), name, strlen(name));
}

/* A figure of core_stats: "instances", or "cache"/"hits" (sub = the member inside). */
static inline long long fx_stat(fx *f, const char *key, const char *sub) {
    json_t *o = core_stats(f->core);
    assert_non_null(o);
    json_t *v = json_object_get(o, key);
    if (sub != NULL)
        v = json_object_get(v, sub);
    long long n = json_is_boolean(v) ? json_is_true(v) : (long long)json_integer_value(v);
    if (!json_is_integer(v) && !json_is_boolean(v))
        n = -1;
    json_decref(o);
    return n;
}

/* Does the log file hold needle? (Flushes first: the core-only fixture never attaches the
 * log to the loop, so the flush is synchronous.) */
static inline int fx_log_contains(fx *f, const char *needle) {
    alog_flush(f->log);
    FILE *fp = fopen(f->log_path, "r");
    if (fp == NULL)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof(line), fp) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(fp);
    return found;
}

/* --- network helpers -------------------------------------------------------------------------- */

static inline void fx_target_conn_closed(uv_handle_t *h) {
    free(h);
}

static inline void fx_target_on_conn(uv_stream_t *server, int status) {
    fx *f = server->data;
    if (status != 0)
        return;
    uv_tcp_t *c = malloc(sizeof(*c));
    if (c == NULL)
        return;
    uv_tcp_init(&f->loop, c);
    if (uv_accept(server, (uv_stream_t *)c) == 0)
        f->target_accepted++;
    uv_close((uv_handle_t *)c, fx_target_conn_closed);
}

/* A listener on 127.0.0.1, a free port, that accepts and closes: a healthy check target.
 * Returns its port. */
static inline int fx_target(fx *f) {
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_init(&f->loop, &f->target), 0);
    f->target.data = f;
    f->target_open = 1;
    assert_int_equal(uv_tcp_bind(&f->target, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->target, 128, fx_target_on_conn), 0);
    assert_int_equal(uv_tcp_getsockname(&f->target, (struct sockaddr *)&ss, &len), 0);
    f->target_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return f->target_port;
}

/* A loopback port nothing listens on: bound (so the kernel picked a free one), read,
 * closed. A check of it is refused. */
static inline int closed_port(void) {
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* --- a line client --------------------------------------------------------------------------- */

static inline void cl_closed(uv_handle_t *h) {
    client *c = h->data;
    c->closed = 1;
}

static inline void cl_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    client *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(sizeof(c->in) - 1 - c->in_len));
}

static inline void cl_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    client *c = s->data;
    (void)buf;
    if (nread > 0) {
        c->in_len += (size_t)nread;
        c->in[c->in_len] = '\0';
        if (c->in_len + 1 >= sizeof(c->in))
            uv_read_stop(s);
    } else if (nread == UV_EOF) {
        c->eof = 1;
        uv_read_stop(s);
    } else if (nread < 0) {
        c->read_error = (int)nread;
        uv_read_stop(s);
    }
}

static inline void cl_on_connect(uv_connect_t *req, int status) {
    client *c = req->data;
    c->connect_status = status;
    if (status == 0) {
        c->connected = 1;
        uv_read_start((uv_stream_t *)&c->tcp, cl_alloc, cl_read);
    } else {
        c->read_error = status;
    }
}

/* Connects client i to the line server (127.0.0.1:f->line_port). */
static inline client *cl_connect(fx *f, int i) {
    client *c = &f->clients[i];
    struct sockaddr_in sa;
    memset(c, 0, sizeof(*c));
    c->f = f;
    uv_ip4_addr("127.0.0.1", f->line_port, &sa);
    assert_int_equal(uv_tcp_init(&f->loop, &c->tcp), 0);
    c->tcp.data = c;
    c->open = 1;
    c->creq.data = c;
    assert_int_equal(uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&sa,
                                    cl_on_connect), 0);
    return c;
}

typedef struct cl_wreq {
    uv_write_t req;
    char data[];
} cl_wreq;

static inline void cl_written(uv_write_t *req, int status) {
    (void)status;
    free(req);
}

/* Sends text (copied). */
static inline void cl_send(client *c, const char *text) {
    size_t n = strlen(text);
    cl_wreq *w = malloc(sizeof(*w) + n);
    assert_non_null(w);
    memcpy(w->data, text, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    assert_int_equal(uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, cl_written), 0);
}

/* Complete lines received so far. */
static inline int cl_lines(const client *c) {
    int n = 0;
    for (size_t i = 0; i < c->in_len; i++)
        n += c->in[i] == '\n';
    return n;
}

/* Line k (0-based) decoded as JSON (new reference), or NULL. */
static inline json_t *cl_json(const client *c, int k) {
    const char *p = c->in;
    for (int i = 0; i < k; i++) {
        p = strchr(p, '\n');
        if (p == NULL)
            return NULL;
        p++;
    }
    const char *e = strchr(p, '\n');
    if (e == NULL)
        return NULL;
    return json_loadb(p, (size_t)(e - p), 0, NULL);
}

static inline void cl_close(client *c) {
    if (!c->open)
        return;
    c->open = 0;
    uv_close((uv_handle_t *)&c->tcp, cl_closed);
}

#endif
