/* SPDX-License-Identifier: BSD-2-Clause */
/* memory.c — the "memory" backend of store.h (memory:NAME, NAME ignored): a store that
 * lives in the process only, for unit tests of the core that need no disk. Not a
 * production store: nothing survives store_close, lookups are linear scans.
 *
 * Its observable behaviour is that of the SQLite backend for everything in store.h's
 * contract (tests/unit/test_store.c runs the same tests against both):
 *   - instances are a doubly linked list in registration order (SQLite's rowid order:
 *     a re-registration keeps its place, a new or re-added instance goes last);
 *   - events are a ring buffer ordered by seq, trimmed from the oldest end after each
 *     commit; seqs are never handed out twice;
 *   - a batch is all-or-nothing: every change to the list is recorded in an undo journal
 *     (allocated before the first change), and a failure half way (out of memory, or a
 *     failure asked for with store_memory_fail) undoes them in reverse order;
 *   - every string kept is an owned copy (the caller's are borrowed).
 * The store_memory_* hooks (memory.h) use atomics only, so a test may call them from the
 * loop thread while the writer's worker thread is inside store_apply.
 */
#include "store/memory.h"
#include "store/backend.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* One instance. in's strings point into strs. */
typedef struct mem_inst {
    struct mem_inst *prev, *next;
    store_instance in;
    char *strs;                         /* owned: service, host, description, tags_json */
} mem_inst;

/* One event. Its strings point into strs, or are NULL. */
typedef struct mem_event {
    store_event ev;
    char *strs;                         /* owned */
} mem_event;

/* One entry of the undo journal of the running batch. */
enum undo_kind {
    UNDO_INSERT,                        /* node was appended: unlink and free it */
    UNDO_DELETE,                        /* node was unlinked from between prev and next */
    UNDO_SET                            /* node->in was overwritten: restore old (and
                                           old_strs when not NULL) */
};

typedef struct undo {
    int kind;
    mem_inst *node;
    mem_inst *prev, *next;              /* UNDO_DELETE */
    store_instance old;                 /* UNDO_SET */
    char *old_strs;                     /* UNDO_SET: the strings replaced, or NULL */
} undo;

typedef struct memory_store {
    store base;                         /* base.be == &store_memory_backend */
    mem_inst *head, *tail;              /* registration order */
    mem_event *ring;                    /* events, oldest at ring[head_ev] */
    size_t ring_cap, head_ev, nev;
    int64_t last_seq;                   /* newest seq ever handed out (0: none) */
    int64_t events_keep;
    undo *journal;                      /* owned, reused by every batch */
    size_t journal_cap, journal_n;
    atomic_int fail_next;               /* store_memory_fail: applies left to fail */
    atomic_uint_fast64_t applies;       /* store_memory_applies */
} memory_store;

/* ---------------------------------------------------------------------------------- */
/* Strings                                                                             */

/* Copies up to 5 strings (each may be NULL) into one new buffer; out[i] points at the
 * copy of in[i] (NULL stays NULL). Returns the buffer (the caller owns it), or NULL
 * when out of memory. */
static char *copy_strings(const char *const *in, const char **out, size_t n) {
    size_t len[5], total = 0;
    char *buf, *p;

    for (size_t i = 0; i < n; i++) {
        len[i] = in[i] ? strlen(in[i]) + 1 : 0;
        total += len[i];
    }
    buf = malloc(total ? total : 1);
    if (!buf)
        return NULL;
    p = buf;
    for (size_t i = 0; i < n; i++) {
        if (!in[i]) {
            out[i] = NULL;
            continue;
        }
        memcpy(p, in[i], len[i]);
        out[i] = p;
        p += len[i];
    }
    return buf;
}

/* Sets dst to src (a valid PUT) with owned copies of its strings and the given id.
 * Returns the new string buffer (dst's strings point into it) or NULL when out of
 * memory (dst untouched). */
static char *copy_instance(store_instance *dst, const store_instance *src, const char *id) {
    const char *in[4] = { src->service, src->host,
                          src->description ? src->description : "",
                          src->tags_json ? src->tags_json : "[]" };
    const char *out[4];
    char *strs = copy_strings(in, out, 4);

    if (!strs)
        return NULL;
    *dst = *src;
    snprintf(dst->id, sizeof(dst->id), "%s", id);
    dst->service = out[0];
    dst->host = out[1];
    dst->description = out[2];
    dst->tags_json = out[3];
    return strs;
}

/* ---------------------------------------------------------------------------------- */
/* Instances                                                                           */

static mem_inst *find_id(memory_store *m, const char *id) {
    for (mem_inst *i = m->head; i; i = i->next)
        if (strcmp(i->in.id, id) == 0)
            return i;
    return NULL;
}

static mem_inst *find_endpoint(memory_store *m, const store_instance *in) {
    for (mem_inst *i = m->head; i; i = i->next)
        if (i->in.port == in->port && strcmp(i->in.service, in->service) == 0 &&
            strcmp(i->in.host, in->host) == 0)
            return i;
    return NULL;
}

/* Links node between prev and next (either may be NULL: the list's end). */
static void link_between(memory_store *m, mem_inst *node, mem_inst *prev, mem_inst *next) {
    node->prev = prev;
    node->next = next;
    if (prev)
        prev->next = node;
    else
        m->head = node;
    if (next)
        next->prev = node;
    else
        m->tail = node;
}

static void unlink_node(memory_store *m, mem_inst *node) {
    if (node->prev)
        node->prev->next = node->next;
    else
        m->head = node->next;
    if (node->next)
        node->next->prev = node->prev;
    else
        m->tail = node->prev;
    node->prev = node->next = NULL;
}

static void free_node(mem_inst *node) {
    if (node) {
        free(node->strs);
        free(node);
    }
}

/* ---------------------------------------------------------------------------------- */
/* Events                                                                              */

static mem_event *event_at(memory_store *m, size_t i) {
    return &m->ring[(m->head_ev + i) % m->ring_cap];
}

/* Makes room for `more` events beyond the current ones. Returns 0 or -ENOMEM (nothing
 * changed). */
static int ring_reserve(memory_store *m, size_t more) {
    size_t need, cap;
    mem_event *nr;

    if (more > SIZE_MAX / 2 - m->nev)
        return -ENOMEM;
    need = m->nev + more;
    if (need <= m->ring_cap)
        return 0;
    cap = m->ring_cap ? m->ring_cap : 64;
    while (cap < need)
        cap *= 2;
    if (cap > SIZE_MAX / sizeof *nr)
        return -ENOMEM;
    nr = malloc(cap * sizeof *nr);
    if (!nr)
        return -ENOMEM;
    for (size_t i = 0; i < m->nev; i++)
        nr[i] = *event_at(m, i);
    free(m->ring);
    m->ring = nr;
    m->ring_cap = cap;
    m->head_ev = 0;
    return 0;
}

/* Appends a copy of ev with the given seq and instance id (room was reserved).
 * Returns 0 or -ENOMEM (nothing appended). */
static int append_event(memory_store *m, const store_event *ev, const char *id,
                        int64_t seq) {
    const char *in[5] = { ev->event, ev->service, id, ev->host, ev->detail };
    const char *out[5];
    mem_event *slot;
    char *strs = copy_strings(in, out, 5);

    if (!strs)
        return -ENOMEM;
    slot = &m->ring[(m->head_ev + m->nev) % m->ring_cap];
    slot->strs = strs;
    slot->ev.seq = seq;
    slot->ev.ts = ev->ts;
    slot->ev.event = out[0];
    slot->ev.service = out[1];
    slot->ev.id = out[2];
    slot->ev.host = out[3];
    slot->ev.port = ev->port;
    slot->ev.detail = out[4];
    m->nev++;
    return 0;
}

/* Drops the newest events until n are left (undo of a batch's appends). */
static void drop_newest(memory_store *m, size_t n) {
    while (m->nev > n) {
        m->nev--;
        free(event_at(m, m->nev)->strs);
    }
}

/* Drops the oldest events with seq <= upto. */
static void drop_oldest(memory_store *m, int64_t upto) {
    while (m->nev > 0 && m->ring[m->head_ev].ev.seq <= upto) {
        free(m->ring[m->head_ev].strs);
        m->head_ev = (m->head_ev + 1) % m->ring_cap;
        m->nev--;
    }
    if (m->nev == 0)
        m->head_ev = 0;
}

/* ---------------------------------------------------------------------------------- */
/* Writing                                                                             */

/* Undoes the journal in reverse order; the list is then as before the batch. */
static void roll_back(memory_store *m) {
    while (m->journal_n > 0) {
        undo *u = &m->journal[--m->journal_n];

        switch (u->kind) {
        case UNDO_INSERT:
            unlink_node(m, u->node);
            free_node(u->node);
            break;
        case UNDO_DELETE:
            link_between(m, u->node, u->prev, u->next);
            break;
        default: /* UNDO_SET */
            if (u->old_strs) {
                free(u->node->strs);
                u->node->strs = u->old_strs;
            }
            u->node->in = u->old;
            break;
        }
    }
}

/* Makes the journal's changes final: frees what they replaced or removed. */
static void commit_journal(memory_store *m) {
    for (size_t i = 0; i < m->journal_n; i++) {
        undo *u = &m->journal[i];

        if (u->kind == UNDO_DELETE)
            free_node(u->node);
        else if (u->kind == UNDO_SET)
            free(u->old_strs);
    }
    m->journal_n = 0;
}

/* Journals node's fields before an update in place of some of them (no strings). */
static void journal_set(memory_store *m, mem_inst *node) {
    undo *u = &m->journal[m->journal_n++];
    u->kind = UNDO_SET;
    u->node = node;
    u->old = node->in;
    u->old_strs = NULL;
}

/* Applies one change. Sets c->rc and the outputs; returns 0, or -ENOMEM, which fails
 * the whole batch. The journal has room for one entry per change. */
static int apply_one(memory_store *m, store_change *c) {
    mem_inst *node;
    undo *u;

    if (!store_change_valid(c)) {
        c->rc = -EINVAL;
        return 0;
    }
    switch (c->kind) {
    case STORE_PUT:
        node = find_endpoint(m, &c->inst);
        if (node) {
            store_instance upd;
            char *strs = copy_instance(&upd, &c->inst, node->in.id);

            if (!strs)
                return -ENOMEM;
            upd.maintenance = node->in.maintenance; /* kept (store.h) */
            u = &m->journal[m->journal_n++];
            u->kind = UNDO_SET;
            u->node = node;
            u->old = node->in;
            u->old_strs = node->strs;
            node->in = upd;
            node->strs = strs;
            c->existed = 1;
            memcpy(c->id_out, node->in.id, sizeof c->id_out);
        } else if (find_id(m, c->inst.id)) {
            c->rc = -EEXIST;
        } else {
            node = calloc(1, sizeof *node);
            if (!node)
                return -ENOMEM;
            node->strs = copy_instance(&node->in, &c->inst, c->inst.id);
            if (!node->strs) {
                free(node);
                return -ENOMEM;
            }
            link_between(m, node, m->tail, NULL);
            u = &m->journal[m->journal_n++];
            u->kind = UNDO_INSERT;
            u->node = node;
            memcpy(c->id_out, c->inst.id, sizeof c->id_out);
        }
        break;

    case STORE_DELETE:
        node = find_id(m, c->inst.id);
        if (!node) {
            c->rc = STORE_ENOTFOUND;
        } else if (c->check_token &&
                   memcmp(node->in.token_hash, c->inst.token_hash, STORE_HASH_LEN) != 0) {
            c->rc = STORE_EDENIED;
        } else {
            u = &m->journal[m->journal_n++];
            u->kind = UNDO_DELETE;
            u->node = node;
            u->prev = node->prev;
            u->next = node->next;
            unlink_node(m, node);
        }
        break;

    case STORE_HEALTH:
        node = find_id(m, c->inst.id);
        if (!node) {
            c->rc = STORE_ENOTFOUND;
            break;
        }
        journal_set(m, node);
        node->in.status = c->inst.status;
        node->in.failures = c->inst.failures;
        node->in.last_seen = c->inst.last_seen;
        node->in.last_check = c->inst.last_check;
        break;

    case STORE_MAINTENANCE:
        node = find_id(m, c->inst.id);
        if (!node) {
            c->rc = STORE_ENOTFOUND;
            break;
        }
        journal_set(m, node);
        node->in.maintenance = c->inst.maintenance;
        break;

    default: /* STORE_EVENT_ONLY */
        break;
    }

    if (c->rc != 0 || !c->has_event)
        return 0;
    {
        /* A re-registration keeps the old id: the event names the instance as stored. */
        const char *id = c->event.id;

        if (c->kind == STORE_PUT && c->existed && id && strcmp(id, c->inst.id) == 0)
            id = c->id_out;
        if (append_event(m, &c->event, id, m->last_seq + 1) != 0)
            return -ENOMEM;
        c->event.seq = ++m->last_seq;
    }
    return 0;
}

/* Takes one failure asked for with store_memory_fail, if any is left: 1 taken, 0 not. */
static int take_failure(memory_store *m) {
    int left = atomic_load(&m->fail_next);

    while (left > 0)
        if (atomic_compare_exchange_weak(&m->fail_next, &left, left - 1))
            return 1;
    return 0;
}

/* store_backend.apply: the dispatcher has checked the arguments (n >= 1) and reset the
 * outputs; it also marks every change failed when this returns non-zero. */
static int mem_apply(store *base, store_change *changes, size_t n, char *err,
                     size_t errlen) {
    memory_store *m = (memory_store *)base;
    size_t nev0 = m->nev;
    int64_t seq0 = m->last_seq;

    if (take_failure(m)) {
        store_set_err(err, errlen, "memory store: write failed (store_memory_fail),"
                      " nothing was changed");
        return STORE_EIO;
    }
    /* Everything that cannot be undone without allocating is allocated first. */
    if (n > m->journal_cap) {
        undo *nj = n <= SIZE_MAX / sizeof *nj ? realloc(m->journal, n * sizeof *nj) : NULL;

        if (!nj)
            goto nomem;
        m->journal = nj;
        m->journal_cap = n;
    }
    if (ring_reserve(m, n) != 0)
        goto nomem;
    m->journal_n = 0;
    for (size_t i = 0; i < n; i++)
        if (apply_one(m, &changes[i]) != 0)
            goto undo_all;
    commit_journal(m);
    if (m->last_seq - m->events_keep >= 1)
        drop_oldest(m, m->last_seq - m->events_keep);
    atomic_fetch_add(&m->applies, 1);
    return 0;

undo_all:
    roll_back(m);
    drop_newest(m, nev0);
    m->last_seq = seq0;
nomem:
    store_set_err(err, errlen, "memory store: out of memory, nothing was changed");
    return STORE_EIO;
}

/* ---------------------------------------------------------------------------------- */
/* Reading                                                                             */

static int mem_load(store *base, int (*cb)(void *ud, const store_instance *inst), void *ud,
                    char *err, size_t errlen) {
    memory_store *m = (memory_store *)base;

    for (mem_inst *i = m->head; i; i = i->next) {
        int r = cb(ud, &i->in);
        if (r != 0)
            return r;
    }
    return 0;
}

static int mem_events(store *base, int64_t since, int limit, const char *service,
                      int (*cb)(void *ud, const store_event *ev), void *ud,
                      char *err, size_t errlen) {
    memory_store *m = (memory_store *)base;
    size_t lo = 0, hi = m->nev;
    int sent = 0;

    /* seqs increase along the ring: find the first one > since. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (event_at(m, mid)->ev.seq <= since)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < m->nev && sent < limit; i++) {
        const store_event *ev = &event_at(m, i)->ev;
        int r;

        if (service && (!ev->service || strcmp(ev->service, service) != 0))
            continue;
        sent++;
        r = cb(ud, ev);
        if (r != 0)
            return r;
    }
    return 0;
}

static int64_t mem_last_seq(store *base) {
    return ((memory_store *)base)->last_seq;
}

static void mem_set_events_keep(store *base, int64_t keep) {
    ((memory_store *)base)->events_keep = keep < 0 ? 0 : keep;
}

/* ---------------------------------------------------------------------------------- */
/* Opening and closing                                                                 */

static void mem_close(store *base) {
    memory_store *m = (memory_store *)base;

    while (m->head) {
        mem_inst *i = m->head;
        m->head = i->next;
        free_node(i);
    }
    drop_newest(m, 0);
    free(m->ring);
    free(m->journal);
    free(m);
}

/* store_backend.open: arg (the name after "memory:") is ignored: every open is a new,
 * empty store. */
static int mem_open(const char *arg, const store_options *opt, store **out, char *err,
                    size_t errlen) {
    memory_store *m = calloc(1, sizeof *m);

    if (!m) {
        store_set_err(err, errlen, "memory store: out of memory");
        return -ENOMEM;
    }
    m->base.be = &store_memory_backend;
    m->events_keep = opt->events_keep < 0 ? 0 : opt->events_keep;
    atomic_init(&m->fail_next, 0);
    atomic_init(&m->applies, 0);
    *out = &m->base;
    return 0;
}

const store_backend store_memory_backend = {
    .scheme = "memory",
    .open = mem_open,
    .load = mem_load,
    .apply = mem_apply,
    .events = mem_events,
    .last_seq = mem_last_seq,
    .set_events_keep = mem_set_events_keep,
    .close = mem_close,
    /* watch, renew, members: NULL, one process has no other nodes nor leases. */
};

/* ---------------------------------------------------------------------------------- */
/* Test hooks                                                                          */

int store_memory_fail(store *st, int n) {
    if (!st || st->be != &store_memory_backend || n < 0)
        return -EINVAL;
    atomic_store(&((memory_store *)st)->fail_next, n);
    return 0;
}

uint64_t store_memory_applies(store *st) {
    if (!st || st->be != &store_memory_backend)
        return 0;
    return (uint64_t)atomic_load(&((memory_store *)st)->applies);
}
