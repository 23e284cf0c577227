/* SPDX-License-Identifier: BSD-2-Clause */
/* core.c — builds the core and runs its life: load, start, stop (see core.h). */
#include "core/core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "core/apply.h"
#include "core/follow.h"
#include "core/health.h"
#include "core/internal.h"
#include "core/limits.h"
#include "core/pipeline.h"
#include "core/usage.h"

void core_config_defaults(core_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->check_interval_ms = 10000;
    cfg->check_timeout_ms = 2000;
    cfg->max_failures = 3;
    cfg->rise = 2;
    cfg->check_concurrency = 256;
    cfg->preserve_min = 10;
    cfg->preserve_threshold = 0.5;
    cfg->cache_size = 4096;
    cfg->log_lookups_interval_ms = 60000;
    cfg->max_instances = 1000000;
    cfg->max_instances_per_service = 10000;
    cfg->max_instances_per_client = 10000;
    cfg->max_catalog_bytes = 1LL << 30;
    cidr_default_deny(&cfg->check_rule.deny);
}

int core_new(uv_loop_t *loop, const core_config *cfg, store *st, alog *log, core **out,
             char *err, size_t errlen) {
    core *c = calloc(1, sizeof(*c));
    if (c == NULL)
        goto oom;
    c->loop = loop;
    c->cfg = *cfg;
    c->store = st;
    c->log = log;
    c->shared = store_shared(st);
    c->cat = cat_new();
    c->sets = cache_new((size_t)cfg->cache_size);
    c->lookup_counts = dict_new();
    c->pending_by_client = dict_new();
    c->bus = bus_new();
    c->writer = writer_new(loop, st);
    if (!c->cat || !c->sets || !c->lookup_counts || !c->pending_by_client || !c->bus || !c->writer ||
        (c->health = health_new(c)) == NULL)
        goto oom;
    uv_timer_init(loop, &c->summary);
    c->summary.data = c;
    c->started_ms = util_now_ms();
    hist_init(&c->lookup_seconds, hist_seconds, hist_seconds_n);
    *out = c;
    return 0;
oom:
    core_free(c);
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
}

static int load_one(void *ud, const store_instance *si) {
    core *c = ud;
    int rc = apply_loaded(c, si);
    if (rc == -EINVAL) { /* a malformed row cannot be served; keep loading the rest */
        alog_msg(c->log, ALOG_WARN, "not serving stored instance %s of %s: its tags are not a "
                                    "JSON array", si->id, si->service);
        return 0;
    }
    return rc;
}

int core_load(core *c, char *err, size_t errlen) {
    int rc = store_load(c->store, load_one, c, err, errlen);
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory loading the store");
    /* A shared store: from the revision loaded on, follow every node's commits. */
    if (rc == 0)
        rc = follow_start(c, err, errlen);
    return rc;
}

static void on_summary(uv_timer_t *t) {
    usage_summary(t->data);
}

void core_start(core *c, json_t *detail) {
    c->started = 1;
    health_start(c->health);
    if (!c->cfg.log_lookups) {
        uv_timer_start(&c->summary, on_summary, c->cfg.log_lookups_interval_ms,
                       c->cfg.log_lookups_interval_ms);
        uv_unref((uv_handle_t *)&c->summary);
    }
    if (c->shared && detail != NULL)
        json_object_set_new(detail, "node", json_string(c->cfg.node_name));
    pipeline_emit(c, "start", ALOG_INFO, detail);
}

void core_stop(core *c, json_t *detail) {
    if (c->stopping) {
        json_decref(detail);
        return;
    }
    c->stopping = 1;
    health_stop(c->health);
    if (c->shared && detail != NULL)
        json_object_set_new(detail, "node", json_string(c->cfg.node_name));
    pipeline_emit(c, "stop", ALOG_INFO, detail);
}

int core_idle(const core *c) {
    return writer_idle(c->writer);
}

void core_on_idle(core *c, void (*cb)(void *ud), void *ud) {
    writer_on_idle(c->writer, cb, ud);
}

static void followed(void *ud) {
    (void)ud;
}

void core_close(core *c) {
    if (!uv_is_closing((uv_handle_t *)&c->summary))
        uv_close((uv_handle_t *)&c->summary, NULL);
    writer_close(c->writer);
    follow_stop(c, followed, NULL);
}

void core_free(core *c) {
    if (c == NULL)
        return;
    health_free(c->health);
    writer_free(c->writer);
    follow_free(c);
    cache_free(c->sets);
    cat_free(c->cat);
    if (c->lookup_counts) {
        usage_clear(c);
        dict_free(c->lookup_counts);
    }
    if (c->pending_by_client) {
        limits_clear(c);
        dict_free(c->pending_by_client);
    }
    bus_free(c->bus);
    free(c);
}

int core_stats_add(core *c, void (*fn)(void *ud, json_t *stats), void *ud) {
    if (c->nstats_add >= (int)(sizeof(c->stats_add) / sizeof(c->stats_add[0])))
        return -ENOSPC;
    c->stats_add[c->nstats_add].fn = fn;
    c->stats_add[c->nstats_add++].ud = ud;
    return 0;
}

int core_lookup_attach(core *c, void (*free_fn)(void *attachment)) {
    if (c->kinds.n >= LOOKUP_ATTACH_MAX)
        return -ENOSPC;
    c->kinds.free_fn[c->kinds.n] = free_fn;
    return c->kinds.n++;
}

int core_reads_need_auth(const core *c) {
    return c->cfg.auth_lookups;
}

int core_has_auth(const core *c) {
    return c->cfg.has_auth;
}

int core_auth_matches(const core *c, const char *secret) {
    unsigned char h[32];
    return c->cfg.has_auth && secret != NULL && util_sha256(secret, strlen(secret), h) == 0 &&
           util_ct_equal(h, c->cfg.auth_hash, sizeof(h));
}

const catalog *core_catalog(const core *c) {
    return c->cat;
}

event_bus *core_bus(core *c) {
    return c->bus;
}

alog *core_log(const core *c) {
    return c->log;
}

json_t *core_stats(core *c) {
    cache_stats cs;
    writer_stats ws;
    cache_get_stats(c->sets, &cs);
    writer_get_stats(c->writer, &ws);
    json_t *o = json_pack(
        "{s:b, s:s, s:I, s:I, s:I,"
        " s:{s:I, s:I, s:I, s:I, s:I},"
        " s:{s:I, s:I, s:I, s:I, s:I}}",
        "ok", 1, "version", REGISTRY_VERSION, "uptime_s",
        (json_int_t)((util_now_ms() - c->started_ms) / 1000), "services",
        (json_int_t)cat_services(c->cat), "instances", (json_int_t)cat_instances(c->cat),
        "cache", "hits", (json_int_t)cs.hits, "misses", (json_int_t)cs.misses, "entries",
        (json_int_t)cs.entries, "capacity", (json_int_t)cs.capacity, "evictions",
        (json_int_t)cs.evictions, "store", "commits", (json_int_t)ws.commits, "changes",
        (json_int_t)ws.changes, "failures", (json_int_t)ws.failures, "queued",
        (json_int_t)ws.queued, "max_batch", (json_int_t)ws.max_batch);
    if (o != NULL) {
        health_stats(c->health, o);
        json_object_set_new(o, "catalog_bytes", json_integer((json_int_t)cat_bytes(c->cat)));
        json_object_set_new(o, "lookup_seconds", hist_json(&c->lookup_seconds));
        json_t *st = json_object_get(o, "store");
        json_object_set_new(st, "backend", json_string(c->store->be->scheme));
        json_object_set_new(st, "commit_seconds", hist_json(&ws.commit_seconds));
        json_object_set_new(st, "batch_changes", hist_json(&ws.batch_changes));
        follow_stats(c, st);
        for (int i = 0; i < c->nstats_add; i++)
            c->stats_add[i].fn(c->stats_add[i].ud, o);
        json_object_set_new(o, "log_dropped", json_integer((json_int_t)alog_dropped(c->log)));
    }
    return o;
}
