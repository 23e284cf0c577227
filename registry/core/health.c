/* SPDX-License-Identifier: BSD-2-Clause */
/* health.c — keeps the registry true: active TCP checks, TTL expiry, eviction, and
 * self-preservation.
 *
 * Checks: what is probed is a target, a distinct (host, port): however many instances
 * name it, it is connected to once per interval and every instance naming it gets the
 * verdict (so registrations cannot multiply the registry's connects). Each target has a
 * due time in a min-heap; due times start spread over the interval and each next one is
 * one interval after the previous start, so a sweep stays spread rather than bursting.
 * A timer launches due probes while fewer than --check-concurrency are in flight. The
 * probes themselves run on a thread of their own (prober.h: resolve, connect with a
 * timeout, close), so lookups never wait behind a sweep's connects; their verdicts come
 * back to the loop in batches. An address the operator's --check-allow/--check-deny rule
 * refuses is never connected to: that is a failed check.
 * Local resource errors (EMFILE, ENOBUFS...) say nothing about the service: they
 * reschedule the check without a verdict.
 *
 * Verdicts: a failure marks the instance critical at once (lookups skip it) and records
 * check_failed (n of max); max consecutive failures evict it, unless self-preservation
 * is on. A critical instance needs --rise consecutive successes to pass again. Changes
 * of status or failure count are persisted through the writer with their event; plain
 * timestamps of healthy instances are flushed in bulk every minute and at exit.
 *
 * TTLs: a second heap holds heartbeat deadlines: at 2/3 of the TTL without a heartbeat a
 * heartbeat_missed event is logged; at the TTL the instance expires.
 *
 * Health keeps its bookkeeping in records of its own (hc_rec, by instance id), created
 * and dropped as it observes the catalog; the catalog's instances carry none of it. A
 * record's (and a target's) heap places are reserved when it is made, so re-keying a heap
 * never needs memory; an instance health could not track is retried every second.
 */
#include "core/health.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cidr.h"
#include "base/util.h"
#include "core/apply.h"
#include "core/owners.h"
#include "core/pipeline.h"
#include "core/prober.h"

#define FLUSH_EVERY_MS 60000        /* bulk flush of check timestamps */
#define LOAD_SPREAD_MAX_MS 2000     /* after a restart, the first sweep starts promptly */
#define RETRY_MS 1000               /* instances without a record: tracked again this often */
#define STARTS_PER_TICK 64          /* probes handed to the prober per loop iteration at
                                     * most: the rest go in the next iterations, between
                                     * I/O, so a due burst never holds the loop long */

/* What health knows of one instance. */
typedef struct hc_rec {
    cat_instance *in;               /* borrowed: valid until the catalog says CAT_REMOVED */
    int status;                     /* health's verdict (the catalog's follows after commit) */
    int failures;                   /* consecutive failed checks */
    int successes;                  /* consecutive passed checks while critical (rise) */
    int64_t last_seen, last_check;  /* Unix ms */
    struct hc_target *target;       /* what is probed for it (tcp checks), or NULL */
    size_t tslot;                   /* its index in target->recs */
    uint64_t ttl_due;               /* loop ms of the TTL deadline */
    size_t ttl_idx;                 /* index in the TTL heap, SIZE_MAX = none */
    int ttl_warned;                 /* heartbeat_missed already recorded this period */
    uint64_t tracked_at;            /* loop ms it was (re-)registered: older probes' verdicts
                                     * are not its own */
    int evict_pending;              /* an evict/expire is queued to the writer */
    int owned;                      /* this node checks it (always, with a local store) */
    int state;                      /* counted as: 0 none, 1 checked, 2 failing */
    int dirty;                      /* check times changed since last persisted */
    char id[];                      /* the dict key (as long as the id: ids may be up to
                                     * STORE_ID_MAX, most are STORE_ID_LEN) */
} hc_rec;

/* A distinct (host, port) that tcp checks probe, shared by every instance naming it. */
typedef struct hc_target {
    char *key;                      /* owned "host\nport": the dict key */
    char *host;                     /* owned */
    int port;
    hc_rec **recs;                  /* owned array: the instances naming it */
    size_t nrecs, cap;
    uint64_t hc_due;                /* loop ms of the next probe */
    size_t hc_idx;                  /* index in the check heap, SIZE_MAX = none */
    struct hc_probe *probe;         /* probe in flight, or NULL */
} hc_target;

/* A min-heap of records or targets, keyed by a due time: the offsets say where the key
 * and the heap index are in the element. */
typedef struct heap {
    void **a;
    size_t n, cap;
    size_t due_off, idx_off;
} heap;

/* A probe in flight on the prober's thread (prober.h): the loop thread's record of it. */
typedef struct hc_probe {
    health *h;
    hc_target *t;                   /* NULL once no instance names the target any more */
    uint64_t started;               /* loop ms */
    struct hc_probe *prev, *next;
} hc_probe;

struct health {
    core *c;
    dict *recs;                     /* id -> hc_rec */
    dict *targets;                  /* "host\nport" -> hc_target */
    heap checks, ttls;              /* targets by next probe; records by TTL deadline */
    uv_timer_t check_timer, ttl_timer, flush_timer, retry_timer;
    uv_idle_t check_idle;           /* continues due checks in the next iteration */
    uv_prepare_t iter;              /* counts loop iterations (the probe start budget) */
    uint64_t loop_iter;
    int observing;                  /* health_start ran */
    int untracked;                  /* an instance could not get a record: retry */
    prober *prober;                 /* connects, on a thread of its own */
    hc_probe *probes;               /* in flight */
    size_t inflight;
    size_t tracked, failing;        /* tcp-checked instances, and how many are critical */
    int preserving;
    size_t owned;                   /* records this node checks (owned) */
    int stopped;
    uint64_t tick;                  /* the loop iteration (loop_iter) that started... */
    int started_in_tick;            /* ...this many probes */
    uint64_t nchecks, failures, evictions, expirations, skipped;
    uint64_t probes_started, denied; /* connects started; probes the rule refused */
};

/* --- heap ---------------------------------------------------------------------------------- */

static uint64_t *due_of(heap *hp, void *e) {
    return (uint64_t *)((char *)e + hp->due_off);
}

static size_t *idx_of(heap *hp, void *e) {
    return (size_t *)((char *)e + hp->idx_off);
}

static void heap_set(heap *hp, size_t i, void *e) {
    hp->a[i] = e;
    *idx_of(hp, e) = i;
}

static void sift_up(heap *hp, size_t i) {
    void *e = hp->a[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (*due_of(hp, hp->a[parent]) <= *due_of(hp, e))
            break;
        heap_set(hp, i, hp->a[parent]);
        i = parent;
    }
    heap_set(hp, i, e);
}

static void sift_down(heap *hp, size_t i) {
    void *e = hp->a[i];
    for (;;) {
        size_t l = 2 * i + 1, rt = l + 1, m = i;
        uint64_t best = *due_of(hp, e);
        if (l < hp->n && *due_of(hp, hp->a[l]) < best)
            m = l, best = *due_of(hp, hp->a[l]);
        if (rt < hp->n && *due_of(hp, hp->a[rt]) < best)
            m = rt;
        if (m == i)
            break;
        heap_set(hp, i, hp->a[m]);
        i = m;
    }
    heap_set(hp, i, e);
}

/* Makes room for n entries. Returns 0 or -1 (out of memory; nothing changed). */
static int heap_reserve(heap *hp, size_t n) {
    if (n <= hp->cap)
        return 0;
    size_t ncap = hp->cap ? hp->cap : 64;
    while (ncap < n)
        ncap *= 2;
    void **na = realloc(hp->a, ncap * sizeof(*na));
    if (na == NULL)
        return -1;
    hp->a = na;
    hp->cap = ncap;
    return 0;
}

/* Never fails: every element reserved its place when it was made. */
static void heap_push(heap *hp, void *e) {
    hp->a[hp->n] = e;
    *idx_of(hp, e) = hp->n;
    sift_up(hp, hp->n++);
}

static void heap_remove(heap *hp, void *e) {
    size_t i = *idx_of(hp, e);
    if (i == SIZE_MAX)
        return;
    *idx_of(hp, e) = SIZE_MAX;
    if (i == --hp->n)
        return;
    void *moved = hp->a[hp->n];
    heap_set(hp, i, moved);
    sift_down(hp, i);
    sift_up(hp, *idx_of(hp, moved));
}

/* Re-keys an element (pushes it when it is not in the heap). */
static void heap_update(heap *hp, void *e, uint64_t due) {
    if (*idx_of(hp, e) != SIZE_MAX)
        heap_remove(hp, e);
    *due_of(hp, e) = due;
    heap_push(hp, e);
}

/* --- bookkeeping --------------------------------------------------------------------------- */

static void count_state(health *h, hc_rec *r) {
    int want = r->in == NULL || r->in->check != STORE_CHECK_TCP || !r->owned
                   ? 0
                   : (r->status == STORE_PASSING ? 1 : 2);
    if (r->state == want)
        return;
    if (r->state > 0)
        h->tracked--;
    if (r->state == 2)
        h->failing--;
    if (want > 0)
        h->tracked++;
    if (want == 2)
        h->failing++;
    r->state = want;
}

/* Self-preservation: when most checked instances fail at once, the fault is more
 * likely ours (our network) than theirs: pause evictions until it recovers. */
static void update_preservation(health *h) {
    core *c = h->c;
    int should = (long long)h->tracked >= c->cfg.preserve_min &&
                 (double)h->failing > c->cfg.preserve_threshold * (double)h->tracked;
    if (should == h->preserving)
        return;
    h->preserving = should;
    pipeline_emit(c, should ? "preserve_on" : "preserve_off", should ? ALOG_WARN : ALOG_INFO,
                  json_pack("{s:I, s:I, s:f}", "failing", (json_int_t)h->failing, "checked",
                            (json_int_t)h->tracked, "threshold", c->cfg.preserve_threshold));
}

static void arm_check_timer(health *h);
static void arm_ttl_timer(health *h);

/* --- removal: evict / expire ---------------------------------------------------------------- */

static void removal_done(pending *p) {
    core *c = p->core;
    health *h = c->health;
    if (p->ch.rc == 0) {
        if (strcmp(p->ch.event.event, "evict") == 0)
            h->evictions++;
        else
            h->expirations++;
        apply_change(c, &p->ch, NULL, NULL, ALOG_WARN); /* the catalog tells us: CAT_REMOVED */
        update_preservation(h);
        pending_free(p);
        return;
    }
    hc_rec *r = dict_get(h->recs, p->ch.inst.id, strlen(p->ch.inst.id));
    if (r != NULL && r->in != NULL) {
        /* Re-registered meanwhile (token changed), or the database failed: keep it; the
         * next check or deadline decides again. */
        r->evict_pending = 0;
        if (p->ch.rc == STORE_EIO)
            alog_msg(c->log, ALOG_ERROR, "could not %s %s: %s", p->ch.event.event, r->id,
                     p->job.err);
        if (!h->stopped) { /* its target goes on being probed; a TTL expiry is retried */
            if (r->in->ttl > 0 && r->ttl_idx == SIZE_MAX && !c->shared)
                heap_update(&h->ttls, r, uv_now(c->loop) + 1000);
            arm_ttl_timer(h);
        }
    }
    pending_free(p);
}

/* Evicts or expires an instance, unless it is in maintenance: an operator took it out of
 * service, and only the operator ends that (its checks go on, their verdicts shown). */
static void remove_instance(health *h, hc_rec *r, const char *event, json_t *detail) {
    cat_instance *in = r->in;
    if (r->evict_pending || in->maintenance) {
        json_decref(detail);
        return;
    }
    pending *p = pending_new(h->c, STORE_DELETE, event, in->svc->name, in->id, in->host,
                             in->port, detail);
    if (p == NULL)
        return;
    /* Only this registration: a re-registration (new token) in between survives. */
    p->ch.check_token = 1;
    memcpy(p->ch.inst.token_hash, in->token_hash, STORE_HASH_LEN);
    p->done = removal_done;
    r->evict_pending = 1;
    pending_submit(p);
}

/* A check's verdict is counted in stats (checks, failed_checks) when it is visible: a
 * status change once its commit reached the catalog, so the counts never run ahead of
 * what lookups show. */
static void count_verdict(health *h, int failed) {
    h->nchecks++;
    if (failed)
        h->failures++;
}

static void persist_done(pending *p) {
    health *h = p->core->health;
    if (p->ch.has_event && strcmp(p->ch.event.event, "check_passed") == 0)
        count_verdict(h, 0);
    else if (p->ch.has_event && strcmp(p->ch.event.event, "check_failed") == 0)
        count_verdict(h, 1);
    if (p->ch.rc == 0)
        apply_change(p->core, &p->ch, NULL, NULL,
                     p->ch.has_event && strcmp(p->ch.event.event, "check_passed") == 0 ? ALOG_INFO
                                                                                      : ALOG_WARN);
    else if (p->ch.rc == STORE_EIO)
        alog_msg(p->core->log, ALOG_ERROR, "could not store health of %s: %s", p->ch.inst.id,
                 p->job.err);
    pending_free(p);
}

/* Persists a record's health state, with an event (or none when event is NULL).
 * Returns 0, or -1 when it could not be queued (out of memory). */
static int persist_health(health *h, hc_rec *r, const char *event, json_t *detail) {
    cat_instance *in = r->in;
    pending *p = pending_new(h->c, STORE_HEALTH, event, in->svc->name, in->id, in->host,
                             in->port, detail);
    if (p == NULL)
        return -1;
    p->ch.inst.status = r->status;
    p->ch.inst.failures = r->failures;
    p->ch.inst.last_seen = r->last_seen;
    p->ch.inst.last_check = r->last_check;
    p->done = persist_done;
    r->dirty = 0;
    pending_submit(p);
    return 0;
}

/* --- verdicts ------------------------------------------------------------------------------- */

static void record(health *h, hc_rec *r, int ok, const char *why) {
    core *c = h->c;
    int64_t now = util_now_ms();
    r->last_check = now;
    if (ok)
        r->last_seen = now;
    /* What lookups show moves on now; a status change follows with its commit. */
    apply_checked(c, r->in, r->last_seen, r->last_check);
    if (ok) {
        if (r->status == STORE_PASSING) {
            count_verdict(h, 0);
            r->dirty = 1;
            if (r->failures != 0) { /* cannot happen (failing => critical), but stay exact */
                r->failures = 0;
                persist_health(h, r, NULL, NULL);
            }
            return;
        }
        if (++r->successes < c->cfg.rise) {
            count_verdict(h, 0);
            r->dirty = 1;
            return;
        }
        r->successes = 0;
        r->failures = 0;
        r->status = STORE_PASSING;
        count_state(h, r);
        if (persist_health(h, r, "check_passed",
                           json_pack("{s:I}", "rise", (json_int_t)c->cfg.rise)) != 0)
            count_verdict(h, 0);
        update_preservation(h);
        return;
    }
    r->failures++;
    r->successes = 0;
    r->status = STORE_CRITICAL;
    count_state(h, r);
    if (persist_health(h, r, "check_failed",
                       json_pack("{s:i, s:I, s:s}", "failures", r->failures, "max_failures",
                                 (json_int_t)c->cfg.max_failures, "error", why)) != 0)
        count_verdict(h, 1);
    update_preservation(h);
    if (r->failures >= c->cfg.max_failures && !h->preserving)
        remove_instance(h, r, "evict", json_pack("{s:i, s:s}", "failures", r->failures, "error", why));
}

/* --- probes --------------------------------------------------------------------------------- */

static void pump(health *h);

/* The probe's one outcome, for every instance naming the target. result: 1 passed, 0
 * failed, -1 no verdict (local error). */
static void probe_finish(hc_probe *p, int result, const char *why) {
    health *h = p->h;
    h->inflight--;
    if (p->prev)
        p->prev->next = p->next;
    else
        h->probes = p->next;
    if (p->next)
        p->next->prev = p->prev;
    hc_target *t = p->t;
    if (t != NULL) {
        t->probe = NULL;
        /* record() queues writes only: no instance leaves the target while we walk it. */
        for (size_t i = 0; i < t->nrecs; i++) {
            hc_rec *r = t->recs[i];
            if (r->evict_pending || r->tracked_at > p->started || !r->owned)
                continue; /* on its way out, registered again since the probe began, or
                           * another node's to check */
            if (result >= 0 && !h->stopped)
                record(h, r, result, why);
            else
                h->skipped++;
        }
        if (!h->stopped) {
            uint64_t next = p->started + h->c->cfg.check_interval_ms;
            uint64_t now = uv_now(h->c->loop);
            heap_update(&h->checks, t, next > now ? next : now);
        }
    }
    free(p);
    if (!h->stopped) {
        pump(h);
        arm_check_timer(h);
    }
}

/* An outcome from the prober, on the loop thread. */
static void on_outcome(void *ud, const probe_outcome *o) {
    hc_probe *p = o->tag;
    health *h = ud;
    if (o->denied)
        h->denied++;
    if (o->connected)
        h->probes_started++;
    probe_finish(p, o->result, o->why);
}

static void probe_start(health *h, hc_target *t) {
    core *c = h->c;
    hc_probe *p = calloc(1, sizeof(*p));
    if (p == NULL ||
        prober_submit(h->prober, p, t->host, t->port, c->cfg.check_timeout_ms) != 0) {
        free(p);
        heap_update(&h->checks, t, uv_now(c->loop) + c->cfg.check_interval_ms);
        return;
    }
    p->h = h;
    p->t = t;
    p->started = uv_now(c->loop);
    t->probe = p;
    h->inflight++;
    p->next = h->probes;
    if (h->probes)
        h->probes->prev = p;
    h->probes = p;
}

static int target_owned(const hc_target *t) {
    for (size_t i = 0; i < t->nrecs; i++)
        if (t->recs[i]->owned)
            return 1;
    return 0;
}

/* Launches due checks while under the concurrency cap. */
static void pump(health *h) {
    uint64_t now = uv_now(h->c->loop);
    if (h->loop_iter != h->tick) {
        h->tick = h->loop_iter;
        h->started_in_tick = 0;
    }
    while (h->checks.n > 0 && (long long)h->inflight < h->c->cfg.check_concurrency &&
           h->started_in_tick < STARTS_PER_TICK) {
        hc_target *t = h->checks.a[0];
        if (t->hc_due > now)
            break;
        heap_remove(&h->checks, t);
        if (!target_owned(t)) { /* another node checks every instance naming it */
            heap_update(&h->checks, t, now + h->c->cfg.check_interval_ms);
            continue;
        }
        h->started_in_tick++;
        probe_start(h, t);
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

static void on_iter(uv_prepare_t *p) {
    health *h = p->data;
    h->loop_iter++; /* a new iteration's probe budget starts here */
}

static void arm_check_timer(health *h) {
    if (h->stopped)
        return;
    if (h->checks.n == 0 || (long long)h->inflight >= h->c->cfg.check_concurrency) {
        uv_timer_stop(&h->check_timer); /* a finishing probe re-arms it */
        uv_idle_stop(&h->check_idle);
        return;
    }
    uint64_t now = uv_now(h->c->loop), due = ((hc_target *)h->checks.a[0])->hc_due;
    if (due <= now && h->tick == h->loop_iter && h->started_in_tick >= STARTS_PER_TICK) {
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
    uint64_t now = uv_now(h->c->loop);
    while (h->ttls.n > 0 && ((hc_rec *)h->ttls.a[0])->ttl_due <= now) {
        hc_rec *r = h->ttls.a[0];
        cat_instance *in = r->in;
        heap_remove(&h->ttls, r);
        if (!r->ttl_warned) {
            r->ttl_warned = 1;
            pending *p = pending_new(h->c, STORE_EVENT_ONLY, "heartbeat_missed", in->svc->name,
                                     in->id, in->host, in->port,
                                     json_pack("{s:i}", "ttl", in->ttl));
            if (p != NULL) {
                p->done = persist_done;
                pending_submit(p);
            }
            heap_update(&h->ttls, r, r->ttl_due + (uint64_t)in->ttl * 1000 - warn_after(in));
        } else {
            remove_instance(h, r, "expire", json_pack("{s:i}", "ttl", in->ttl));
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
    uint64_t now = uv_now(h->c->loop), due = ((hc_rec *)h->ttls.a[0])->ttl_due;
    uv_timer_start(&h->ttl_timer, on_ttl_timer, due > now ? due - now : 0, 0);
}

/* --- bulk timestamp flush --------------------------------------------------------------------- */

static void flush_dirty(health *h) {
    size_t pos = 0;
    hc_rec *r;
    if (h->c->shared)
        return; /* a shared store gets health changes only: every node would see each */
    while ((r = dict_next(h->recs, &pos)) != NULL)
        if (r->dirty && !r->evict_pending && r->in != NULL)
            persist_health(h, r, NULL, NULL);
}

static void on_flush_timer(uv_timer_t *t) {
    flush_dirty(t->data);
}

/* --- what the catalog tells us ---------------------------------------------------------------- */

static void on_retry_timer(uv_timer_t *t);

static void target_free(hc_target *t) {
    free(t->key);
    free(t->host);
    free(t->recs);
    free(t);
}

/* Detaches a record from its target; a target nobody names any more goes, and a probe in
 * flight for it finds no one to tell. */
static void untarget(health *h, hc_rec *r) {
    hc_target *t = r->target;
    if (t == NULL)
        return;
    r->target = NULL;
    hc_rec *last = t->recs[--t->nrecs];
    t->recs[r->tslot] = last;
    last->tslot = r->tslot;
    if (t->nrecs > 0)
        return;
    if (t->probe != NULL) {
        t->probe->t = NULL;
        t->probe = NULL;
    }
    heap_remove(&h->checks, t);
    dict_del(h->targets, t->key, strlen(t->key));
    target_free(t);
}


/* Attaches a record to the target of its instance's (host, port), which is made on first
 * use and first probed within spread ms. Returns 0 or -ENOMEM (nothing changed). */
static int retarget(health *h, hc_rec *r, const cat_instance *in, uint64_t spread) {
    char key[REQ_HOST_MAX + 16];
    int klen = snprintf(key, sizeof(key), "%s\n%d", in->host, in->port);
    if (klen < 0 || (size_t)klen >= sizeof(key))
        return -ENOMEM;
    if (r->target != NULL && strcmp(r->target->key, key) == 0)
        return 0;
    hc_target *t = dict_get(h->targets, key, (size_t)klen);
    int fresh = t == NULL;
    if (fresh) {
        if (heap_reserve(&h->checks, dict_size(h->targets) + 1) != 0 ||
            (t = calloc(1, sizeof(*t))) == NULL)
            return -ENOMEM;
        t->hc_idx = SIZE_MAX;
        t->port = in->port;
        if ((t->key = strdup(key)) == NULL || (t->host = strdup(in->host)) == NULL ||
            dict_put(h->targets, t->key, (size_t)klen, t) != 0) {
            target_free(t);
            return -ENOMEM;
        }
    }
    if (t->nrecs == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 4;
        hc_rec **nr = realloc(t->recs, ncap * sizeof(*nr));
        if (nr == NULL) {
            if (fresh) {
                dict_del(h->targets, t->key, (size_t)klen);
                target_free(t);
            }
            return -ENOMEM;
        }
        t->recs = nr;
        t->cap = ncap;
    }
    untarget(h, r);
    r->tslot = t->nrecs;
    t->recs[t->nrecs++] = r;
    r->target = t;
    if (fresh) {
        uint64_t rnd = 0;
        util_random(&rnd, sizeof(rnd));
        heap_update(&h->checks, t, uv_now(h->c->loop) + (spread ? rnd % spread : 0));
    }
    return 0;
}

static void rec_free(health *h, hc_rec *r) {
    h->owned -= (size_t)r->owned;
    untarget(h, r);
    heap_remove(&h->ttls, r);
    r->in = NULL; /* uncount it */
    count_state(h, r);
    dict_del(h->recs, r->id, strlen(r->id));
    free(r);
}

/* Test hook (health.h): when > 0, that many next records fail to allocate. */
int health__fail_records;

/* (Re)starts tracking an instance: new, registered again or loaded. */
static int track(health *h, cat_instance *in, int loaded) {
    core *c = h->c;
    hc_rec *r = dict_get(h->recs, in->id, strlen(in->id));
    int fresh = r == NULL;
    if (fresh) {
        if (health__fail_records > 0) {
            health__fail_records--;
            goto oom;
        }
        size_t idlen = strlen(in->id);
        if (heap_reserve(&h->ttls, dict_size(h->recs) + 1) != 0 ||
            (r = calloc(1, sizeof(*r) + idlen + 1)) == NULL)
            goto oom;
        memcpy(r->id, in->id, idlen + 1);
        r->ttl_idx = SIZE_MAX;
        if (dict_put(h->recs, r->id, strlen(r->id), r) != 0) {
            free(r);
            goto oom;
        }
    }
    uint64_t now = uv_now(c->loop);
    if (in->check == STORE_CHECK_TCP) {
        uint64_t spread = c->cfg.check_interval_ms;
        if (loaded && spread > LOAD_SPREAD_MAX_MS)
            spread = LOAD_SPREAD_MAX_MS;
        if (retarget(h, r, in, spread) != 0) {
            if (fresh) {
                dict_del(h->recs, r->id, strlen(r->id));
                free(r);
            }
            goto oom;
        }
    } else {
        untarget(h, r);
    }
    /* A re-registration starts over: no verdict of a probe started before it counts. */
    r->tracked_at = now;
    r->in = in;
    r->status = in->status;
    r->failures = in->failures;
    r->last_seen = in->last_seen;
    r->last_check = in->last_check;
    r->successes = 0;
    r->evict_pending = 0;
    r->dirty = 0;
    int was = r->owned;
    r->owned = owners_mine(c, in->id);
    h->owned = h->owned + (size_t)r->owned - (size_t)was;
    count_state(h, r);
    if (in->ttl > 0 && !c->shared) { /* a shared store's TTLs are its leases */
        r->ttl_warned = 0;
        heap_update(&h->ttls, r, now + warn_after(in));
    } else {
        heap_remove(&h->ttls, r);
    }
    return 0;
oom:
    /* Not silently unchecked: said once, and tried again every RETRY_MS. */
    if (!h->untracked)
        alog_msg(c->log, ALOG_ERROR, "cannot track instance %s for health checks: out of "
                                     "memory; retrying", in->id);
    h->untracked = 1;
    return -ENOMEM;
}

static void after_track_failure(health *h) {
    if (h->untracked && !h->stopped)
        uv_timer_start(&h->retry_timer, on_retry_timer, RETRY_MS, 0);
}


/* Tracks every instance of the catalog that has no record yet. */
static int track_missing(health *h, int loaded) {
    size_t pos = 0;
    cat_instance *in;
    int rc = 0;
    h->untracked = 0;
    while ((in = cat_next_instance(h->c->cat, &pos)) != NULL)
        if (dict_get(h->recs, in->id, strlen(in->id)) == NULL && track(h, in, loaded) != 0)
            rc = -ENOMEM;
    return rc;
}

static void on_retry_timer(uv_timer_t *t) {
    health *h = t->data;
    if (track_missing(h, 0) != 0)
        after_track_failure(h);
    update_preservation(h);
    arm_check_timer(h);
    arm_ttl_timer(h);
}

static void renew(health *h, cat_instance *in) {
    hc_rec *r = dict_get(h->recs, in->id, strlen(in->id));
    if (r == NULL)
        return;
    r->last_seen = in->last_seen;
    r->dirty = 1;
    if (in->ttl <= 0 || r->evict_pending || h->c->shared)
        return;
    r->ttl_warned = 0;
    heap_update(&h->ttls, r, uv_now(h->c->loop) + warn_after(in));
}

static void observe(void *ud, cat_instance *in, int change) {
    health *h = ud;
    if (h->stopped)
        return;
    switch (change) {
    case CAT_ADDED:
    case CAT_REPLACED:
        if (track(h, in, 0) != 0)
            after_track_failure(h);
        update_preservation(h);
        break;
    case CAT_REMOVED: {
        hc_rec *r = dict_get(h->recs, in->id, strlen(in->id));
        if (r != NULL)
            rec_free(h, r);
        break;
    }
    case CAT_RENEWED:
        renew(h, in);
        break;
    default:
        break;
    }
    arm_check_timer(h);
    arm_ttl_timer(h);
}

/* --- interface -------------------------------------------------------------------------------- */

health *health_new(core *c) {
    health *h = calloc(1, sizeof(*h));
    if (h == NULL || (h->recs = dict_new()) == NULL || (h->targets = dict_new()) == NULL) {
        if (h)
            dict_free(h->recs);
        free(h);
        return NULL;
    }
    h->c = c;
    if ((h->prober = prober_new(c->loop, &c->cfg.check_rule, on_outcome, h)) == NULL) {
        dict_free(h->recs);
        dict_free(h->targets);
        free(h);
        return NULL;
    }
    h->checks.due_off = offsetof(hc_target, hc_due);
    h->checks.idx_off = offsetof(hc_target, hc_idx);
    h->ttls.due_off = offsetof(hc_rec, ttl_due);
    h->ttls.idx_off = offsetof(hc_rec, ttl_idx);
    uv_timer_init(c->loop, &h->check_timer);
    uv_timer_init(c->loop, &h->ttl_timer);
    uv_timer_init(c->loop, &h->flush_timer);
    uv_timer_init(c->loop, &h->retry_timer);
    uv_idle_init(c->loop, &h->check_idle);
    uv_prepare_init(c->loop, &h->iter);
    h->check_timer.data = h->ttl_timer.data = h->flush_timer.data = h->check_idle.data = h;
    h->retry_timer.data = h->iter.data = h;
    return h;
}

int health_start(health *h) {
    core *c = h->c;
    uv_prepare_start(&h->iter, on_iter);
    uv_unref((uv_handle_t *)&h->iter);
    uv_timer_start(&h->flush_timer, on_flush_timer, FLUSH_EVERY_MS, FLUSH_EVERY_MS);
    uv_unref((uv_handle_t *)&h->flush_timer);
    cat_observe(c->cat, observe, h);
    h->observing = 1;
    int rc = track_missing(h, 1);
    if (rc != 0)
        after_track_failure(h);
    update_preservation(h);
    arm_check_timer(h);
    arm_ttl_timer(h);
    return rc;
}

void health_stop(health *h) {
    if (h == NULL || h->stopped)
        return;
    flush_dirty(h);
    h->stopped = 1;
    if (h->observing)
        cat_observe(h->c->cat, NULL, NULL);
    prober_stop(h->prober); /* no outcome arrives after this */
    while (h->probes)
        probe_finish(h->probes, -1, "stopping");
    uv_close((uv_handle_t *)&h->check_timer, NULL);
    uv_close((uv_handle_t *)&h->check_idle, NULL);
    uv_close((uv_handle_t *)&h->ttl_timer, NULL);
    uv_close((uv_handle_t *)&h->flush_timer, NULL);
    uv_close((uv_handle_t *)&h->retry_timer, NULL);
    uv_close((uv_handle_t *)&h->iter, NULL);
}

void health_free(health *h) {
    if (h == NULL)
        return;
    size_t pos = 0;
    hc_rec *r;
    while ((r = dict_next(h->recs, &pos)) != NULL)
        free(r);
    dict_free(h->recs);
    hc_target *t;
    pos = 0;
    while ((t = dict_next(h->targets, &pos)) != NULL)
        target_free(t);
    dict_free(h->targets);
    free(h->checks.a);
    free(h->ttls.a);
    prober_free(h->prober);
    free(h);
}

void health_sync(health *h, cat_instance *in) {
    hc_rec *r = dict_get(h->recs, in->id, strlen(in->id));
    if (r == NULL || r->evict_pending)
        return;
    r->status = in->status;
    r->failures = in->failures;
    r->last_seen = in->last_seen;
    r->last_check = in->last_check;
    count_state(h, r);
    update_preservation(h);
}

void health_expired(health *h) {
    h->expirations++;
}

void health_members_changed(health *h) {
    size_t pos = 0, owned = 0;
    hc_rec *r;
    if (h->stopped)
        return;
    while ((r = dict_next(h->recs, &pos)) != NULL) {
        r->owned = r->in != NULL && owners_mine(h->c, r->id);
        owned += r->owned;
        count_state(h, r);
    }
    h->owned = owned;
    update_preservation(h);
    arm_check_timer(h);
}

void health_stats(health *h, json_t *stats) {
    json_object_set_new(
        stats, "health",
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:I, s:I, s:I, s:I}", "checks",
                  (json_int_t)h->nchecks,
                  "failed_checks", (json_int_t)h->failures, "in_flight", (json_int_t)h->inflight,
                  "checked_instances", (json_int_t)h->tracked, "failing",
                  (json_int_t)h->failing, "evictions", (json_int_t)h->evictions, "expirations",
                  (json_int_t)h->expirations, "preserving", h->preserving, "skipped",
                  (json_int_t)h->skipped, "targets", (json_int_t)dict_size(h->targets), "probes",
                  (json_int_t)h->probes_started, "denied", (json_int_t)h->denied));
    json_object_set_new(json_object_get(stats, "health"), "owned",
                        json_integer((json_int_t)h->owned));
}
