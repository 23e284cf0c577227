/* SPDX-License-Identifier: BSD-2-Clause */
/* core.h — the registry itself, with no sockets and no wire formats: what main builds and
 * what front-ends are given. A front-end decodes its wire format into a `req` (req.h),
 * runs it with ops_run (ops.h) and encodes the reply in its own format; it follows
 * lifecycle events on the bus (bus.h) and reads the catalog (catalog.h) to encode
 * answers. The core keeps the catalog, the lookup sets, health checking and the write
 * pipeline to a store backend (store/store.h).
 *
 * Everything here runs on the loop thread.
 */
#ifndef REGISTRY_CORE_CORE_H
#define REGISTRY_CORE_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <jansson.h>

#include "base/alog.h"
#include "base/cidr.h"
#include "core/bus.h"
#include "core/catalog.h"
#include "store/store.h"

typedef struct core_config {
    uint64_t check_interval_ms, check_timeout_ms;
    long long max_failures, rise, check_concurrency;
    long long preserve_min;
    double preserve_threshold;      /* fraction 0..1 */
    long long cache_size;           /* lookup sets kept (0: none) */
    int log_lookups;                /* log every lookup, not a summary per interval */
    uint64_t log_lookups_interval_ms;
    long long max_instances, max_instances_per_service;
    long long max_instances_per_client; /* instances one client IP may have registered */
    long long max_catalog_bytes;    /* memory the catalog may hold */
    cidr_rule check_rule;           /* addresses health checks may connect to */
    int has_auth;                   /* a shared secret is set: */
    unsigned char auth_hash[32];    /* ...its SHA-256 (never the secret) */
    int auth_lookups;               /* reads need the secret too */
    const char *node_name;          /* this node's name (shared stores), borrowed */
    uint64_t store_timeout_ms;      /* a shared store's deadline per operation */
} core_config;

typedef struct core core;

/* The defaults of every setting (those of registryd's flags). */
void core_config_defaults(core_config *cfg);

/* A core on loop over st and log (both borrowed: they outlive the core). Returns 0 or
 * -ENOMEM with err filled; *out is owned by the caller (core_free). */
int core_new(uv_loop_t *loop, const core_config *cfg, store *st, alog *log, core **out,
             char *err, size_t errlen);
/* Loads every stored instance into the catalog (before core_start). Returns 0 or the
 * store's error with err filled. */
int core_load(core *c, char *err, size_t errlen);
/* Starts health checking and the lookup summary, and records the "start" event with
 * detail (stolen). */
void core_start(core *c, json_t *detail);
/* Stops checking, records the "stop" event with detail (stolen); every write in flight
 * still completes. */
void core_stop(core *c, json_t *detail);
/* Nothing is waiting on the store? */
int core_idle(const core *c);
/* cb(ud) runs each time the write pipeline becomes idle (for an orderly stop). */
void core_on_idle(core *c, void (*cb)(void *ud), void *ud);
/* Closes the core's handles (after core_stop, once idle); core_free after the loop ran. */
void core_close(core *c);
/* core_free(NULL) is a no-op. */
void core_free(core *c);

/* A front-end that keeps an encoding with each lookup set gets a slot (0 ..
 * LOOKUP_ATTACH_MAX-1) for lookup_set.attach; free_fn frees an attachment when its set
 * goes. Returns the slot, or -ENOSPC. Call before the first request. */
int core_lookup_attach(core *c, void (*free_fn)(void *attachment));

/* A front-end's own figures in the core's stats: fn(ud, stats) adds its members to the
 * stats object (borrowed) each time core_stats builds one. Returns 0 or -ENOSPC. */
int core_stats_add(core *c, void (*fn)(void *ud, json_t *stats), void *ud);

/* Do reads need the shared secret (--auth-lookups)? A front-end that reads the catalog
 * itself, without ops_run, must refuse then. */
int core_reads_need_auth(const core *c);
/* Is a shared secret configured, and is secret (NULL: none given) that secret? */
int core_has_auth(const core *c);
int core_auth_matches(const core *c, const char *secret);

/* What front-ends read. Borrowed, valid for the core's life. */
const catalog *core_catalog(const core *c);
event_bus *core_bus(core *c);
alog *core_log(const core *c);
/* The core's figures: version, uptime_s, services, instances, cache, store, health,
 * log_dropped. New reference (NULL when out of memory). */
json_t *core_stats(core *c);

#endif
