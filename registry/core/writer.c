/* SPDX-License-Identifier: BSD-2-Clause */
/* writer.c — see writer.h. */
#include "core/writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

struct writer {
    uv_loop_t *loop;
    store *st;
    uv_work_t work;
    int running;                /* a batch is on the worker */
    int completing;             /* completion callbacks are running: only queue */
    wjob *qhead, *qtail;        /* waiting jobs */
    size_t queued;
    wjob *batch;                /* the running batch (list) */
    store_change *flat;         /* the running batch's changes, copied contiguous */
    size_t flat_n, flat_cap;
    int batch_rc;
    uint64_t batch_ns;          /* the last batch's store_apply, on the worker */
    char batch_err[STORE_ERR_LEN];
    void (*idle_cb)(void *ud);
    void *idle_ud;
    writer_stats stats;
    /* A shared store: a committed batch waits ("parked") until the follower reaches its
     * revision, so it reaches the catalog in revision order with every other node's. */
    size_t max_batch;               /* changes per store_apply (0: any) */
    int shared;
    wjob *parked;                   /* the committed batch waiting for the follower */
    int64_t parked_rev;
    int64_t released;               /* own revisions up to here were applied already */
    uv_timer_t park_timer;
    uint64_t park_ms;
    void (*on_parked)(void *ud);
    void *parked_ud;
};

writer *writer_new(uv_loop_t *loop, store *st) {
    writer *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->loop = loop;
    w->st = st;
    w->work.data = w;
    hist_init(&w->stats.commit_seconds, hist_seconds, hist_seconds_n);
    hist_init(&w->stats.batch_changes, hist_sizes, hist_sizes_n);
    w->max_batch = store_max_batch(st);
    uv_timer_init(loop, &w->park_timer);
    w->park_timer.data = w;
    uv_unref((uv_handle_t *)&w->park_timer);
    return w;
}

void writer_close(writer *w) {
    if (w != NULL && !uv_is_closing((uv_handle_t *)&w->park_timer))
        uv_close((uv_handle_t *)&w->park_timer, NULL);
}

void writer_free(writer *w) {
    if (w == NULL)
        return;
    free(w->flat);
    free(w);
}

int writer_idle(const writer *w) {
    return !w->running && w->qhead == NULL && w->parked == NULL;
}

void writer_on_idle(writer *w, void (*cb)(void *ud), void *ud) {
    w->idle_cb = cb;
    w->idle_ud = ud;
}

void writer_get_stats(const writer *w, writer_stats *st) {
    *st = w->stats;
    st->queued = w->queued;
}

json_t *writer_event_json(const store_event *ev) {
    char ts[UTIL_TIME_LEN];
    json_t *o = json_pack("{s:I, s:s, s:s}", "seq", (json_int_t)ev->seq, "ts",
                          util_rfc3339(ev->ts, ts), "event", ev->event);
    if (o == NULL)
        return NULL;
    if (ev->service)
        json_object_set_new(o, "service", json_string(ev->service));
    if (ev->id)
        json_object_set_new(o, "id", json_string(ev->id));
    if (ev->host)
        json_object_set_new(o, "host", json_string(ev->host));
    if (ev->port)
        json_object_set_new(o, "port", json_integer(ev->port));
    /* Always present, {} when there is nothing to say: clients rely on the shape. */
    json_t *d = ev->detail ? json_loads(ev->detail, 0, NULL) : NULL;
    if (!json_is_object(d)) {
        json_decref(d);
        d = json_object();
    }
    if (d == NULL || json_object_set_new(o, "detail", d) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int collect_event(void *ud, const store_event *ev) {
    json_t *o = writer_event_json(ev);
    if (o == NULL || json_array_append_new(ud, o) != 0)
        return -1;
    return 0;
}

/* The newest events of a window, kept in a ring of the last n (events_tail). */
typedef struct tail_ring {
    json_t **a;                 /* n slots, owned references */
    size_t n, count;            /* count: events seen (the newest n are kept) */
    int64_t last;               /* events above it are not wanted */
} tail_ring;

static int ring_event(void *ud, const store_event *ev) {
    tail_ring *r = ud;
    if (ev->seq > r->last)
        return 0;
    json_t *o = writer_event_json(ev);
    if (o == NULL)
        return -1;
    json_decref(r->a[r->count % r->n]);
    r->a[r->count++ % r->n] = o;
    return 0;
}

/* The newest `limit` events with since < seq < before (0: no bound; of service), oldest
 * first, into arr. The store reads oldest first, so look at a window of the newest seqs,
 * which holds at most as many events as it is wide, and widen it (x2) until it holds
 * `limit` events or reaches `since`: one read of `limit` events without a service
 * filter. Returns 0 or the store's error. */
static int events_tail(store *st, int64_t since, int64_t before, int limit,
                       const char *service, json_t *arr, char *err, size_t errlen) {
    int64_t last = store_last_seq(st), window = limit;
    if (before > 0 && before - 1 < last)
        last = before - 1;
    tail_ring r = {calloc((size_t)limit, sizeof(json_t *)), (size_t)limit, 0, last};
    int rc = 0;
    if (r.a == NULL)
        return -1;
    for (;;) {
        int64_t from = last - window > since ? last - window : since;
        for (size_t i = 0; i < r.n; i++) {
            json_decref(r.a[i]);
            r.a[i] = NULL;
        }
        r.count = 0;
        rc = store_events(st, from, window > INT32_MAX ? INT32_MAX : (int)window, service,
                          ring_event, &r, err, errlen);
        if (rc != 0 || r.count >= r.n || from <= since)
            break;
        window = window > INT64_MAX / 2 ? INT64_MAX : window * 2;
    }
    size_t kept = r.count < r.n ? r.count : r.n, first = r.count - kept;
    for (size_t i = 0; rc == 0 && i < kept; i++)
        if (json_array_append(arr, r.a[(first + i) % r.n]) != 0)
            rc = -1;
    for (size_t i = 0; i < r.n; i++)
        json_decref(r.a[i]);
    free(r.a);
    return rc;
}

/* Worker thread: one transaction for every change of the batch, then the reads. Only
 * this thread touches the store while a batch runs. */
static void work_cb(uv_work_t *req) {
    writer *w = req->data;
    w->batch_rc = 0;
    w->batch_err[0] = '\0';
    if (w->flat_n > 0) {
        uint64_t t0 = uv_hrtime();
        w->batch_rc = store_apply(w->st, w->flat, w->flat_n, w->batch_err, sizeof(w->batch_err));
        w->batch_ns = uv_hrtime() - t0; /* read by after_cb, on the loop, after this */
    }
    for (wjob *j = w->batch; j != NULL; j = j->next) {
        if (j->kind != WJOB_EVENTS)
            continue;
        j->events = json_array();
        if (j->events == NULL)
            j->rc = -1;
        else if (j->tail)
            j->rc = events_tail(w->st, j->since, j->before, j->limit, j->service, j->events,
                                j->err, sizeof(j->err));
        else
            j->rc = store_events(w->st, j->since, j->limit, j->service, collect_event,
                                 j->events, j->err, sizeof(j->err));
    }
}

static void start_batch(writer *w);

/* Completes a committed (or failed) batch's jobs in order, then starts the next batch. */
static void complete(writer *w, wjob *j) {
    w->completing = 1;
    while (j != NULL) {
        wjob *next = j->next;
        j->next = NULL;
        j->done(j);
        j = next;
    }
    w->completing = 0;
    /* Whatever the callbacks (and anyone else meanwhile) queued goes as one batch. */
    if (w->qhead != NULL)
        start_batch(w);
    else if (w->idle_cb != NULL && writer_idle(w))
        w->idle_cb(w->idle_ud);
}

static void release_parked(writer *w) {
    wjob *j = w->parked;
    w->parked = NULL;
    if (w->parked_rev > w->released)
        w->released = w->parked_rev;
    uv_timer_stop(&w->park_timer);
    complete(w, j);
}

/* The follower did not reach a commit in time (its watch is away): the commit is
 * durable, so acknowledge it from here; the watch skips it when it comes. */
static void on_park_timeout(uv_timer_t *t) {
    writer *w = t->data;
    release_parked(w);
    if (w->on_parked)
        w->on_parked(w->parked_ud);
}

int writer_own_commit(writer *w, int64_t rev) {
    if (rev <= w->released)
        return 0;
    if (w->parked != NULL && w->parked_rev <= rev) {
        int mine = w->parked_rev == rev;
        release_parked(w);
        return mine ? 0 : -1;
    }
    if (w->running)
        return 1;
    return -1;
}

void writer_set_follow(writer *w, uint64_t wait_ms, void (*on_parked)(void *ud), void *ud) {
    w->shared = 1;
    w->park_ms = wait_ms;
    w->on_parked = on_parked;
    w->parked_ud = ud;
}

static void after_cb(uv_work_t *req, int status) {
    writer *w = req->data;
    size_t off = 0;
    if (w->flat_n > 0) {
        if (w->batch_rc == 0) {
            w->stats.commits++;
            w->stats.changes += w->flat_n;
            hist_add(&w->stats.commit_seconds, (double)w->batch_ns / 1e9);
            hist_add(&w->stats.batch_changes, (double)w->flat_n);
        } else {
            w->stats.failures++;
        }
    }
    wjob *j = w->batch;
    w->batch = NULL;
    w->running = 0;
    int64_t rev = 0;
    /* Copy each change's result back to its job, then complete the jobs in order. */
    for (wjob *k = j; k != NULL; k = k->next) {
        if (k->kind != WJOB_APPLY)
            continue;
        for (size_t i = 0; i < k->n; i++, off++) {
            k->changes[i] = w->flat[off];
            if (w->batch_rc != 0)
                k->changes[i].rc = STORE_EIO;
            if (k->changes[i].rev > rev)
                rev = k->changes[i].rev;
        }
        k->rc = w->batch_rc;
        if (w->batch_rc != 0)
            snprintf(k->err, sizeof(k->err), "%s", w->batch_err);
    }
    if (w->shared && w->batch_rc == 0 && rev > w->released) {
        w->parked = j;
        w->parked_rev = rev;
        uv_timer_start(&w->park_timer, on_park_timeout, w->park_ms, 0);
        if (w->on_parked)
            w->on_parked(w->parked_ud);
        return;
    }
    complete(w, j);
    /* A failed batch (in doubt) parks nothing: a follower waiting for it goes on. */
    if (w->shared && w->on_parked)
        w->on_parked(w->parked_ud);
}

static void start_batch(writer *w) {
    size_t total = 0;
    wjob *last = NULL; /* the batch is qhead..last */
    for (wjob *j = w->qhead; j != NULL; j = j->next) {
        size_t add = j->kind == WJOB_APPLY ? j->n : 0;
        if (w->max_batch > 0 && last != NULL && total + add > w->max_batch)
            break;
        total += add;
        last = j;
    }
    if (total > w->flat_cap) {
        size_t ncap = w->flat_cap ? w->flat_cap : 64;
        while (ncap < total)
            ncap *= 2;
        store_change *nf = realloc(w->flat, ncap * sizeof(*nf));
        if (nf == NULL) {
            /* Fail the whole queue rather than lose track of it. */
            wjob *j = w->qhead;
            w->qhead = w->qtail = NULL;
            w->queued = 0;
            while (j != NULL) {
                wjob *next = j->next;
                j->next = NULL;
                j->rc = STORE_EIO;
                snprintf(j->err, sizeof(j->err), "out of memory");
                for (size_t i = 0; j->kind == WJOB_APPLY && i < j->n; i++)
                    j->changes[i].rc = STORE_EIO;
                j->done(j);
                j = next;
            }
            return;
        }
        w->flat = nf;
        w->flat_cap = ncap;
    }
    size_t off = 0, njobs = 0;
    for (wjob *j = w->qhead; j != NULL; j = j->next) {
        njobs++;
        if (j->kind == WJOB_APPLY) {
            memcpy(&w->flat[off], j->changes, j->n * sizeof(*j->changes));
            off += j->n;
        }
        if (j == last)
            break;
    }
    w->flat_n = total;
    if (total > w->stats.max_batch)
        w->stats.max_batch = total;
    w->batch = w->qhead;
    w->qhead = last->next;
    last->next = NULL;
    if (w->qhead == NULL)
        w->qtail = NULL;
    w->queued -= njobs;
    w->running = 1;
    if (uv_queue_work(w->loop, &w->work, work_cb, after_cb) != 0) {
        /* Cannot happen with a valid loop; run inline rather than stall forever. */
        work_cb(&w->work);
        after_cb(&w->work, 0);
    }
}

void writer_submit(writer *w, wjob *job) {
    job->next = NULL;
    job->rc = 0;
    job->err[0] = '\0';
    if (w->qtail)
        w->qtail->next = job;
    else
        w->qhead = job;
    w->qtail = job;
    w->queued++;
    if (!w->running && !w->completing && w->parked == NULL)
        start_batch(w);
}
