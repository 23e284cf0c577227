/* health.c — keeps the registry true: active TCP checks, TTL expiry, eviction, and
 * self-preservation.
 *
 * Checks: each instance with check "tcp" has a due time in a min-heap; due times start
 * spread over the interval and each next one is one interval after the previous start,
 * so a sweep stays spread rather than bursting. A timer launches due probes while fewer
 * than --check-concurrency are in flight; each probe is a non-blocking uv_tcp_connect
 * (after uv_getaddrinfo for hostnames) raced against a timer, closed as soon as it
 * connects. Local resource errors (EMFILE, ENOBUFS...) say nothing about the service:
 * they reschedule the check without a verdict.
 *
 * Verdicts: a failure marks the instance critical at once (lookups skip it) and records
 * check_failed (n of max); max consecutive failures evict it, unless self-preservation
 * is on. A critical instance needs --rise consecutive successes to pass again. Changes
 * of status or failure count are persisted through the writer with their event; plain
 * timestamps of healthy instances are flushed in bulk every minute and at exit.
 *
 * TTLs: a second heap holds heartbeat deadlines: at 2/3 of the TTL without a heartbeat a
 * heartbeat_missed event is logged; at the TTL the instance expires.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "base/util.h"

#define FLUSH_EVERY_MS 60000        /* bulk flush of check timestamps */
#define LOAD_SPREAD_MAX_MS 2000     /* after a restart, the first sweep starts promptly */
#define STARTS_PER_TICK 8           /* probes started per loop iteration at most: on
                                     * loopback connect() does the handshake inline, so a
                                     * burst of hundreds would stall clients for ms; the
                                     * rest start in the next iterations, between I/O */

typedef struct heap {
    cat_instance **a;
    size_t n, cap;
    size_t due_off, idx_off;        /* offsets of the key and index fields in cat_instance */
} heap;

typedef struct hc_probe {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    health *h;
    cat_instance *in;               /* NULL once the instance is gone */
    uint64_t started;               /* loop ms */
    int open_handles;               /* tcp + timer not yet closed */
    int gai_pending;
    int finished;
    struct hc_probe *prev, *next;
} hc_probe;

struct health {
    regd *d;
    heap checks, ttls;
    uv_timer_t check_timer, ttl_timer, flush_timer;
    uv_idle_t check_idle;           /* continues due checks in the next iteration */
    hc_probe *probes;               /* in flight */
    size_t inflight;
    size_t tracked, failing;        /* tcp-checked instances, and how many are critical */
    int preserving;
    int stopped;
    uint64_t tick;                  /* the loop iteration (d->loop_iter) that started... */
    int started_in_tick;            /* ...this many probes */
    uint64_t nchecks, failures, evictions, expirations, skipped;
};

/* --- heap ---------------------------------------------------------------------------------- */

static uint64_t *due_of(heap *hp, cat_instance *in) {
    return (uint64_t *)((char *)in + hp->due_off);
}

static size_t *idx_of(heap *hp, cat_instance *in) {
    return (size_t *)((char *)in + hp->idx_off);
}

static void heap_set(heap *hp, size_t i, cat_instance *in) {
    hp->a[i] = in;
    *idx_of(hp, in) = i;
}

static void sift_up(heap *hp, size_t i) {
    cat_instance *in = hp->a[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (*due_of(hp, hp->a[parent]) <= *due_of(hp, in))
            break;
        heap_set(hp, i, hp->a[parent]);
        i = parent;
    }
    heap_set(hp, i, in);
}

static void sift_down(heap *hp, size_t i) {
    cat_instance *in = hp->a[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        uint64_t best = *due_of(hp, in);
        if (l < hp->n && *due_of(hp, hp->a[l]) < best)
            m = l, best = *due_of(hp, hp->a[l]);
        if (r < hp->n && *due_of(hp, hp->a[r]) < best)
            m = r;
        if (m == i)
            break;
        heap_set(hp, i, hp->a[m]);
        i = m;
    }
    heap_set(hp, i, in);
}

static int heap_push(heap *hp, cat_instance *in) {
    if (hp->n == hp->cap) {
        size_t ncap = hp->cap ? hp->cap * 2 : 64;
        cat_instance **na = realloc(hp->a, ncap * sizeof(*na));
        if (na == NULL)
            return -1;
        hp->a = na;
        hp->cap = ncap;
    }
    hp->a[hp->n] = in;
    *idx_of(hp, in) = hp->n;
    sift_up(hp, hp->n++);
    return 0;
}

static void heap_remove(heap *hp, cat_instance *in) {
    size_t i = *idx_of(hp, in);
    if (i == SIZE_MAX)
        return;
    *idx_of(hp, in) = SIZE_MAX;
    if (i == --hp->n)
        return;
    cat_instance *moved = hp->a[hp->n];
    heap_set(hp, i, moved);
    sift_down(hp, i);
    sift_up(hp, *idx_of(hp, moved));
}

/* Re-keys an instance (pushes it when it is not in the heap). */
static void heap_update(heap *hp, cat_instance *in, uint64_t due) {
    if (*idx_of(hp, in) != SIZE_MAX)
        heap_remove(hp, in);
    *due_of(hp, in) = due;
    heap_push(hp, in);
}

/* --- bookkeeping --------------------------------------------------------------------------- */

static void count_state(health *h, cat_instance *in) {
    int want = in->check != STORE_CHECK_TCP ? 0 : (in->status == STORE_PASSING ? 1 : 2);
    if (in->hc_state == want)
        return;
    if (in->hc_state > 0)
        h->tracked--;
    if (in->hc_state == 2)
        h->failing--;
    if (want > 0)
        h->tracked++;
    if (want == 2)
        h->failing++;
    in->hc_state = want;
}

/* Self-preservation: when most checked instances fail at once, the fault is more
 * likely ours (our network) than theirs: pause evictions until it recovers. */
static void update_preservation(health *h) {
    regd *d = h->d;
    int should = (long long)h->tracked >= d->cfg.preserve_min &&
                 (double)h->failing > d->cfg.preserve_threshold * (double)h->tracked;
    if (should == h->preserving)
        return;
    h->preserving = should;
    events_emit(d, should ? "preserve_on" : "preserve_off", should ? ALOG_WARN : ALOG_INFO,
                json_pack("{s:I, s:I, s:f}", "failing", (json_int_t)h->failing, "checked",
                          (json_int_t)h->tracked, "threshold", d->cfg.preserve_threshold));
}

static void arm_check_timer(health *h);
static void arm_ttl_timer(health *h);

/* --- removal: evict / expire ---------------------------------------------------------------- */

static void removal_done(pending *p) {
    regd *d = p->d;
    health *h = d->health;
    cat_instance *in = cat_by_id(d->cat, p->ch.inst.id);
    if (p->ch.rc == 0) {
        if (in != NULL) {
            health_forget(h, in);
            cat_remove(d->cat, in);
        }
        if (strcmp(p->ch.event.event, "evict") == 0)
            h->evictions++;
        else
            h->expirations++;
        events_publish(d, &p->ch.event, NULL, ALOG_WARN);
        update_preservation(h);
    } else if (in != NULL) {
        /* Re-registered meanwhile (token changed), or the database failed: keep it; the
         * next check or deadline decides again. */
        in->evict_pending = 0;
        if (p->ch.rc == STORE_EIO)
            alog_msg(d->log, ALOG_ERROR, "could not %s %s: %s", p->ch.event.event, in->id,
                     p->job.err);
        uint64_t now = uv_now(d->loop);
        if (in->check == STORE_CHECK_TCP && in->probe == NULL && in->hc_idx == SIZE_MAX)
            heap_update(&h->checks, in, now + d->cfg.check_interval_ms);
        if (in->ttl > 0 && in->ttl_idx == SIZE_MAX)
            heap_update(&h->ttls, in, now + 1000); /* retry the expiry soon */
        arm_check_timer(h);
        arm_ttl_timer(h);
    }
    pending_free(p);
}

static void remove_instance(health *h, cat_instance *in, const char *event, json_t *detail) {
    if (in->evict_pending) {
        json_decref(detail);
        return;
    }
    pending *p = pending_new(h->d, STORE_DELETE, event, in->svc->name, in->id, in->host, in->port,
                             detail);
    if (p == NULL)
        return;
    /* Only this registration: a re-registration (new token) in between survives. */
    p->ch.check_token = 1;
    memcpy(p->ch.inst.token_hash, in->token_hash, STORE_HASH_LEN);
    p->done = removal_done;
    in->evict_pending = 1;
    pending_submit(p);
}

static void persist_done(pending *p) {
    if (p->ch.rc == 0 && p->ch.has_event)
        events_publish(p->d, &p->ch.event, NULL,
                       strcmp(p->ch.event.event, "check_passed") == 0 ? ALOG_INFO : ALOG_WARN);
    else if (p->ch.rc == STORE_EIO)
        alog_msg(p->d->log, ALOG_ERROR, "could not store health of %s: %s", p->ch.inst.id,
                 p->job.err);
    pending_free(p);
}

/* Persists an instance's health state, with an event (or none when event is NULL). */
static void persist_health(health *h, cat_instance *in, const char *event, json_t *detail) {
    pending *p = pending_new(h->d, STORE_HEALTH, event, in->svc->name, in->id, in->host, in->port,
                             detail);
    if (p == NULL)
        return;
    p->ch.inst.status = in->status;
    p->ch.inst.failures = in->failures;
    p->ch.inst.last_seen = in->last_seen;
    p->ch.inst.last_check = in->last_check;
    p->done = persist_done;
    in->hc_dirty = 0;
    pending_submit(p);
}

/* --- verdicts ------------------------------------------------------------------------------- */

static void record(health *h, cat_instance *in, int ok, const char *why) {
    regd *d = h->d;
    int64_t now = util_now_ms();
    h->nchecks++;
    in->last_check = now;
    cat_changed(in);
    if (ok) {
        in->last_seen = now;
        if (in->status == STORE_PASSING) {
            in->hc_dirty = 1;
            if (in->failures != 0) { /* cannot happen (failing => critical), but stay exact */
                in->failures = 0;
                persist_health(h, in, NULL, NULL);
            }
            return;
        }
        if (++in->successes < d->cfg.rise) {
            in->hc_dirty = 1;
            return;
        }
        in->successes = 0;
        in->failures = 0;
        cat_set_status(in, STORE_PASSING);
        count_state(h, in);
        persist_health(h, in, "check_passed", json_pack("{s:I}", "rise", (json_int_t)d->cfg.rise));
        update_preservation(h);
        return;
    }
    h->failures++;
    in->failures++;
    in->successes = 0;
    cat_set_status(in, STORE_CRITICAL);
    count_state(h, in);
    persist_health(h, in, "check_failed",
                   json_pack("{s:i, s:I, s:s}", "failures", in->failures, "max_failures",
                             (json_int_t)d->cfg.max_failures, "error", why));
    update_preservation(h);
    if (in->failures >= d->cfg.max_failures && !h->preserving)
        remove_instance(h, in, "evict",
                        json_pack("{s:i, s:s}", "failures", in->failures, "error", why));
}

/* --- probes --------------------------------------------------------------------------------- */

static void probe_release(hc_probe *p) {
    if (p->open_handles > 0 || p->gai_pending)
        return;
    free(p);
}

static void probe_handle_closed(uv_handle_t *hd) {
    hc_probe *p = hd->data;
    p->open_handles--;
    probe_release(p);
}

static void pump(health *h);

/* The probe's one outcome. result: 1 passed, 0 failed, -1 no verdict (local error). */
static void probe_finish(hc_probe *p, int result, const char *why) {
    if (p->finished)
        return;
    p->finished = 1;
    health *h = p->h;
    h->inflight--;
    if (p->prev)
        p->prev->next = p->next;
    else
        h->probes = p->next;
    if (p->next)
        p->next->prev = p->prev;
    cat_instance *in = p->in;
    if (in != NULL) {
        in->probe = NULL;
        if (result >= 0)
            record(h, in, result, why);
        else
            h->skipped++;
        /* record() may have queued an eviction; the instance stays until it commits. */
        if (!in->evict_pending && in->check == STORE_CHECK_TCP && !h->stopped) {
            uint64_t next = p->started + h->d->cfg.check_interval_ms;
            uint64_t now = uv_now(h->d->loop);
            heap_update(&h->checks, in, next > now ? next : now);
        }
    }
    if (p->gai_pending)
        uv_cancel((uv_req_t *)&p->gai);
    uv_close((uv_handle_t *)&p->timer, probe_handle_closed);
    uv_close((uv_handle_t *)&p->tcp, probe_handle_closed);
    if (!h->stopped) {
        pump(h);
        arm_check_timer(h);
    }
}

static int local_error(int status) {
    return status == UV_EMFILE || status == UV_ENFILE || status == UV_ENOBUFS ||
           status == UV_ENOMEM || status == UV_EAI_MEMORY;
}

static void on_connect(uv_connect_t *req, int status) {
    hc_probe *p = req->data;
    if (status == UV_ECANCELED)
        return;
    probe_finish(p, status == 0 ? 1 : (local_error(status) ? -1 : 0),
                 status == 0 ? "" : uv_strerror(status));
}

static void on_probe_timeout(uv_timer_t *t) {
    probe_finish(t->data, 0, "timed out");
}

static void connect_to(hc_probe *p, const struct sockaddr *sa) {
    p->connect.data = p;
    int rc = uv_tcp_connect(&p->connect, &p->tcp, sa, on_connect);
    if (rc != 0)
        probe_finish(p, local_error(rc) ? -1 : 0, uv_strerror(rc));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    hc_probe *p = req->data;
    p->gai_pending = 0;
    if (p->finished) {
        uv_freeaddrinfo(res);
        probe_release(p);
        return;
    }
    if (status != 0 || res == NULL) {
        probe_finish(p, local_error(status) ? -1 : 0,
                     status ? uv_strerror(status) : "no address");
    } else {
        connect_to(p, res->ai_addr);
    }
    uv_freeaddrinfo(res);
}

static void probe_start(health *h, cat_instance *in) {
    regd *d = h->d;
    hc_probe *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        heap_update(&h->checks, in, uv_now(d->loop) + d->cfg.check_interval_ms);
        return;
    }
    p->h = h;
    p->in = in;
    p->started = uv_now(d->loop);
    in->probe = p;
    h->inflight++;
    p->next = h->probes;
    if (h->probes)
        h->probes->prev = p;
    h->probes = p;
    uv_tcp_init(d->loop, &p->tcp);
    uv_timer_init(d->loop, &p->timer);
    p->tcp.data = p->timer.data = p;
    p->open_handles = 2;
    uv_timer_start(&p->timer, on_probe_timeout, d->cfg.check_timeout_ms, 0);

    struct sockaddr_storage ss;
    if (uv_ip4_addr(in->host, in->port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(in->host, in->port, (struct sockaddr_in6 *)&ss) == 0) {
        connect_to(p, (struct sockaddr *)&ss);
        return;
    }
    char port[8];
    snprintf(port, sizeof(port), "%d", in->port);
    struct addrinfo hints = {0};
    hints.ai_socktype = SOCK_STREAM;
    p->gai.data = p;
    p->gai_pending = 1;
    int rc = uv_getaddrinfo(d->loop, &p->gai, on_resolved, in->host, port, &hints);
    if (rc != 0) {
        p->gai_pending = 0;
        probe_finish(p, local_error(rc) ? -1 : 0, uv_strerror(rc));
    }
}

/* Launches due checks while under the concurrency cap. */
static void pump(health *h) {
    uint64_t now = uv_now(h->d->loop);
    if (h->d->loop_iter != h->tick) {
        h->tick = h->d->loop_iter;
        h->started_in_tick = 0;
    }
    while (h->checks.n > 0 && (long long)h->inflight < h->d->cfg.check_concurrency &&
           h->started_in_tick < STARTS_PER_TICK) {
        cat_instance *in = h->checks.a[0];
        if (in->hc_due > now)
            break;
        heap_remove(&h->checks, in);
        h->started_in_tick++;
        probe_start(h, in);
    }
}

static void on_check_timer(uv_timer_t *t) {
    health *h = t->data;
    pump(h);
    arm_check_timer(h);
}

static void on_check_idle(uv_idle_t *idle) {
    health *h = idle->data;
    pump(h);
    arm_check_timer(h);
}

static void arm_check_timer(health *h) {
    if (h->stopped)
        return;
    if (h->checks.n == 0 || (long long)h->inflight >= h->d->cfg.check_concurrency) {
        uv_timer_stop(&h->check_timer); /* a finishing probe re-arms it */
        uv_idle_stop(&h->check_idle);
        return;
    }
    uint64_t now = uv_now(h->d->loop), due = h->checks.a[0]->hc_due;
    if (due <= now && h->tick == h->d->loop_iter && h->started_in_tick >= STARTS_PER_TICK) {
        /* Due, but this iteration's budget is spent: go on in the next iteration, after
         * it has polled for I/O (an idle handle makes that poll non-blocking; a zero
         * timer would run again at once, in this same timers phase). */
        uv_timer_stop(&h->check_timer);
        uv_idle_start(&h->check_idle, on_check_idle);
        return;
    }
    uv_idle_stop(&h->check_idle);
    uv_timer_start(&h->check_timer, on_check_timer, due > now ? due - now : 0, 0);
}

/* --- TTLs ------------------------------------------------------------------------------------ */

static uint64_t warn_after(const cat_instance *in) {
    return (uint64_t)in->ttl * 1000 * 2 / 3;
}

static void on_ttl_timer(uv_timer_t *t) {
    health *h = t->data;
    uint64_t now = uv_now(h->d->loop);
    while (h->ttls.n > 0 && h->ttls.a[0]->ttl_due <= now) {
        cat_instance *in = h->ttls.a[0];
        heap_remove(&h->ttls, in);
        if (!in->ttl_warned) {
            in->ttl_warned = 1;
            pending *p = pending_new(h->d, STORE_EVENT_ONLY, "heartbeat_missed", in->svc->name,
                                     in->id, in->host, in->port,
                                     json_pack("{s:i}", "ttl", in->ttl));
            if (p != NULL) {
                p->done = persist_done;
                pending_submit(p);
            }
            heap_update(&h->ttls, in, in->ttl_due + (uint64_t)in->ttl * 1000 - warn_after(in));
        } else {
            remove_instance(h, in, "expire", json_pack("{s:i}", "ttl", in->ttl));
        }
    }
    arm_ttl_timer(h);
}

static void arm_ttl_timer(health *h) {
    if (h->stopped)
        return;
    if (h->ttls.n == 0) {
        uv_timer_stop(&h->ttl_timer);
        return;
    }
    uint64_t now = uv_now(h->d->loop), due = h->ttls.a[0]->ttl_due;
    uv_timer_start(&h->ttl_timer, on_ttl_timer, due > now ? due - now : 0, 0);
}

/* --- bulk timestamp flush --------------------------------------------------------------------- */

static void flush_dirty(health *h) {
    size_t pos = 0;
    cat_instance *in;
    while ((in = cat_next_instance(h->d->cat, &pos)) != NULL)
        if (in->hc_dirty && !in->evict_pending)
            persist_health(h, in, NULL, NULL);
}

static void on_flush_timer(uv_timer_t *t) {
    flush_dirty(t->data);
}

/* --- interface -------------------------------------------------------------------------------- */

health *health_new(regd *d) {
    health *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->d = d;
    h->checks.due_off = offsetof(cat_instance, hc_due);
    h->checks.idx_off = offsetof(cat_instance, hc_idx);
    h->ttls.due_off = offsetof(cat_instance, ttl_due);
    h->ttls.idx_off = offsetof(cat_instance, ttl_idx);
    uv_timer_init(d->loop, &h->check_timer);
    uv_timer_init(d->loop, &h->ttl_timer);
    uv_timer_init(d->loop, &h->flush_timer);
    uv_idle_init(d->loop, &h->check_idle);
    h->check_timer.data = h->ttl_timer.data = h->flush_timer.data = h->check_idle.data = h;
    uv_timer_start(&h->flush_timer, on_flush_timer, FLUSH_EVERY_MS, FLUSH_EVERY_MS);
    uv_unref((uv_handle_t *)&h->flush_timer);
    return h;
}

void health_track(health *h, cat_instance *in, int loaded) {
    regd *d = h->d;
    uint64_t now = uv_now(d->loop);
    /* A re-registration starts over: no probe verdict from before it counts. */
    if (in->probe != NULL) {
        in->probe->in = NULL;
        in->probe = NULL;
    }
    in->successes = 0;
    in->evict_pending = 0;
    count_state(h, in);
    if (in->check == STORE_CHECK_TCP) {
        uint64_t spread = d->cfg.check_interval_ms;
        if (loaded && spread > LOAD_SPREAD_MAX_MS)
            spread = LOAD_SPREAD_MAX_MS;
        uint64_t r = 0;
        util_random(&r, sizeof(r));
        heap_update(&h->checks, in, now + (spread ? r % spread : 0));
    } else {
        heap_remove(&h->checks, in);
    }
    if (in->ttl > 0) {
        in->ttl_warned = 0;
        heap_update(&h->ttls, in, now + warn_after(in));
    } else {
        heap_remove(&h->ttls, in);
    }
    update_preservation(h);
    arm_check_timer(h);
    arm_ttl_timer(h);
}

void health_forget(health *h, cat_instance *in) {
    if (in->probe != NULL) {
        in->probe->in = NULL;
        in->probe = NULL;
    }
    heap_remove(&h->checks, in);
    heap_remove(&h->ttls, in);
    in->check = STORE_CHECK_NONE; /* uncount it */
    count_state(h, in);
    arm_check_timer(h);
    arm_ttl_timer(h);
}

void health_heartbeat(health *h, cat_instance *in) {
    in->last_seen = util_now_ms();
    in->hc_dirty = 1;
    cat_changed(in);
    if (in->ttl <= 0 || in->evict_pending)
        return;
    in->ttl_warned = 0;
    heap_update(&h->ttls, in, uv_now(h->d->loop) + warn_after(in));
    arm_ttl_timer(h);
}

void health_stop(health *h) {
    if (h == NULL || h->stopped)
        return;
    flush_dirty(h);
    h->stopped = 1;
    while (h->probes)
        probe_finish(h->probes, -1, "stopping");
    uv_close((uv_handle_t *)&h->check_timer, NULL);
    uv_close((uv_handle_t *)&h->check_idle, NULL);
    uv_close((uv_handle_t *)&h->ttl_timer, NULL);
    uv_close((uv_handle_t *)&h->flush_timer, NULL);
}

void health_free(health *h) {
    if (h == NULL)
        return;
    free(h->checks.a);
    free(h->ttls.a);
    free(h);
}

void health_stats(health *h, json_t *stats) {
    json_object_set_new(
        stats, "health",
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:I}", "checks", (json_int_t)h->nchecks,
                  "failed_checks", (json_int_t)h->failures, "in_flight", (json_int_t)h->inflight,
                  "checked_instances", (json_int_t)h->tracked, "failing",
                  (json_int_t)h->failing, "evictions", (json_int_t)h->evictions, "expirations",
                  (json_int_t)h->expirations, "preserving", h->preserving, "skipped",
                  (json_int_t)h->skipped));
}
