/* SPDX-License-Identifier: BSD-2-Clause */
/* follow.c — see follow.h. */
#include "core/follow.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/dict.h"
#include "core/apply.h"
#include "core/health.h"
#include "core/owners.h"
#include "core/pipeline.h"

static int level_of(const char *event) {
    return strcmp(event, "evict") == 0 || strcmp(event, "expire") == 0 ||
                   strcmp(event, "check_failed") == 0 || strcmp(event, "preserve_on") == 0
               ? ALOG_WARN
               : ALOG_INFO;
}

static void expire_done(pending *p) {
    if (p->ch.rc == 0) {
        health_expired(p->core->health);
        apply_change(p->core, &p->ch, NULL, NULL, ALOG_WARN);
    } else if (p->ch.rc == -EEXIST) {
        /* another node recorded it (they disagreed for a moment on who checks it) */
    } else {
        alog_msg(p->core->log, ALOG_ERROR, "could not record the expiry of %s: %s",
                 p->ch.inst.id, p->job.err);
    }
    pending_free(p);
}

/* Another node's instance, as committed: a new registration (or a re-registration) goes
 * through apply like ours; the same registration with new health or maintenance changes
 * only those. */
static void remote_put(core *c, const store_change *ch) {
    const store_instance *si = &ch->inst;
    cat_instance *in = cat_by_id(c->cat, si->id);
    if (in != NULL && in->registered_at == si->registered_at &&
        memcmp(in->token_hash, si->token_hash, STORE_HASH_LEN) == 0 &&
        strcmp(in->svc->name, si->service) == 0 && in->port == si->port &&
        strcmp(in->host, si->host) == 0) {
        if (in->status != si->status)
            cat_set_status(in, si->status);
        cat_set_health(in, si->last_seen, si->last_check, si->failures);
        if (in->maintenance != (si->maintenance != 0))
            cat_set_maintenance(c->cat, in, si->maintenance != 0);
        in->lease = si->lease;
        health_sync(c->health, in);
        return;
    }
    store_change copy = *ch;
    copy.has_event = 0;
    if (apply_change(c, &copy, NULL, NULL, ALOG_INFO) != 0)
        alog_msg(c->log, ALOG_ERROR, "could not hold instance %s of %s in memory", si->id,
                 si->service);
}

/* Another node's deletion. One without an event in its commit is a lease that ran out
 * (etcd deleted the keys): the node that checks the instance records the expiry. */
static void remote_delete(core *c, const store_change *ch, const store_change *all, size_t n) {
    cat_instance *in = cat_by_id(c->cat, ch->inst.id);
    if (in == NULL)
        return;
    int explained = 0;
    for (size_t i = 0; i < n; i++)
        if (all[i].kind == STORE_EVENT_ONLY && all[i].event.id &&
            strcmp(all[i].event.id, ch->inst.id) == 0)
            explained = 1;
    pending *p = NULL;
    if (!explained && in->ttl > 0 && owners_mine(c, in->id)) {
        p = pending_new(c, STORE_EVENT_ONLY, "expire", in->svc->name, in->id, in->host,
                        in->port, json_pack("{s:i}", "ttl", in->ttl));
        if (p != NULL) {
            p->level = ALOG_WARN;
            p->done = expire_done;
            /* One expire per lease that ran out, whichever nodes believe they check it. */
            snprintf(p->once, sizeof(p->once), "expire/%s/%lld", in->id, (long long)in->lease);
            p->ch.once = p->once;
        }
    } else if (!explained && in->ttl == 0) {
        alog_msg(c->log, ALOG_WARN, "instance %s of %s was deleted from the store without a"
                 " registry (its key went away)", in->id, in->svc->name);
    }
    store_change copy = *ch;
    copy.has_event = 0;
    apply_change(c, &copy, NULL, NULL, ALOG_INFO);
    if (p != NULL)
        pending_submit(p);
}

static int on_changes(void *ud, int64_t rev, int own, const store_change *ch, size_t n) {
    core *c = ud;
    if (own) {
        int r = writer_own_commit(c->writer, rev);
        if (r == 1) {
            c->stalled = 1;
            return 1;
        }
        c->stalled = 0;
        if (r == 0) {
            c->follow_rev = rev;
            return 0;
        }
    }
    c->stalled = 0;
    for (size_t i = 0; i < n; i++) {
        switch (ch[i].kind) {
        case STORE_PUT:
            remote_put(c, &ch[i]);
            break;
        case STORE_DELETE:
            remote_delete(c, &ch[i], ch, n);
            break;
        case STORE_EVENT_ONLY:
            apply_publish(c, &ch[i].event, NULL, level_of(ch[i].event.event));
            break;
        default:
            break;
        }
        c->remote_changes++;
    }
    c->follow_rev = rev;
    return 0;
}

static void on_members(void *ud, const char *const *names, size_t n) {
    core *c = ud;
    if (owners_set(c, names, n) == 1) {
        alog_msg(c->log, ALOG_INFO, "registry nodes: %zu live", n);
        health_members_changed(c->health);
    }
}

/* The store lost the commits since our last one: make the catalog what it holds now. */
static void on_resync(void *ud, int64_t rev, const store_instance *insts, size_t n) {
    core *c = ud;
    dict *seen = dict_new();
    alog_msg(c->log, ALOG_WARN, "the store's history was compacted past revision %lld:"
             " reloaded %zu instances as of revision %lld", (long long)c->follow_rev, n,
             (long long)rev);
    for (size_t i = 0; i < n; i++) {
        store_change ch = {.kind = STORE_PUT, .inst = insts[i], .rev = rev};
        snprintf(ch.id_out, sizeof(ch.id_out), "%s", insts[i].id);
        remote_put(c, &ch);
        if (seen)
            dict_put(seen, insts[i].id, strlen(insts[i].id), (void *)1);
    }
    if (seen != NULL) {
        size_t pos = 0;
        cat_instance *in;
        char **gone = NULL;
        size_t ngone = 0;
        while ((in = cat_next_instance(c->cat, &pos)) != NULL)
            if (dict_get(seen, in->id, strlen(in->id)) == NULL) {
                char **ng = realloc(gone, (ngone + 1) * sizeof(*ng));
                if (ng == NULL)
                    break;
                gone = ng;
                if ((gone[ngone] = strdup(in->id)) != NULL)
                    ngone++;
            }
        for (size_t i = 0; i < ngone; i++) {
            store_change ch = {.kind = STORE_DELETE, .rev = rev};
            snprintf(ch.inst.id, sizeof(ch.inst.id), "%s", gone[i]);
            apply_change(c, &ch, NULL, NULL, ALOG_INFO);
            free(gone[i]);
        }
        free(gone);
        dict_free(seen);
    }
    c->follow_rev = rev;
}

static void on_parked(void *ud) {
    core *c = ud;
    if (c->stalled && c->store->be->resume)
        c->store->be->resume(c->store);
}

int follow_start(core *c, char *err, size_t errlen) {
    if (!store_shared(c->store))
        return 0;
    c->shared = 1;
    writer_set_follow(c->writer, c->cfg.store_timeout_ms ? c->cfg.store_timeout_ms : 3000,
                      on_parked, c);
    store_follower f = {
        .ud = c, .changes = on_changes, .members = on_members, .resync = on_resync};
    return c->store->be->follow(c->store, c->loop, &f, err, errlen);
}

void follow_stats(core *c, json_t *st) {
    if (!c->shared || st == NULL)
        return;
    json_t *s = c->store->be->stats(c->store);
    if (s != NULL) {
        json_object_update(st, s);
        json_decref(s);
    }
    json_object_set_new(st, "remote_changes", json_integer((json_int_t)c->remote_changes));
    json_object_set_new(st, "applied_revision", json_integer((json_int_t)c->follow_rev));
}

void follow_stop(core *c, void (*cb)(void *ud), void *ud) {
    if (!c->shared) {
        cb(ud);
        return;
    }
    c->store->be->unfollow(c->store, cb, ud);
}

void follow_free(core *c) {
    owners_free(c);
}
