/* SPDX-License-Identifier: BSD-2-Clause */
/* internal.h — the core's own context, shared by the core's modules (ops, apply,
 * pipeline, health, lookup). Front-ends and main see only core.h. */
#ifndef REGISTRY_CORE_INTERNAL_H
#define REGISTRY_CORE_INTERNAL_H

#include "base/hist.h"
#include "base/cache.h"
#include "base/dict.h"
#include "core/core.h"
#include "core/lookup.h"
#include "core/writer.h"

typedef struct health health;

#define LOOKUP_SAMPLE 16            /* a power of two */

struct core {
    uv_loop_t *loop;
    core_config cfg;
    store *store;                   /* borrowed */
    alog *log;                      /* borrowed */
    catalog *cat;
    cache *sets;                    /* lookup candidate sets (lookup.h) */
    lookup_kinds kinds;             /* front-ends' attachments to the sets */
    struct {
        void (*fn)(void *ud, json_t *stats);
        void *ud;
    } stats_add[4];                 /* front-ends' figures in stats (core_stats_add) */
    int nstats_add;
    writer *writer;
    health *health;
    event_bus *bus;
    dict *lookup_counts;            /* service -> lookup_count, for the summary log */
    /* Registrations of new instances in flight (admitted, not yet committed): the limits
     * count them, or a pipeline of registrations would pass every check at once. */
    size_t pending_new;
    size_t pending_bytes;
    dict *pending_by_client;        /* IP -> pending_count */
    uv_timer_t summary;             /* writes the lookup summary each interval */
    int64_t started_ms;
    int started, stopping;
    hist lookup_seconds;            /* time ops_run takes for a lookup, one in LOOKUP_SAMPLE */
    uint64_t lookup_tick;
    /* A shared store (follow.h) */
    int shared;
    char **members;                 /* live nodes' names, sorted (this node's included) */
    size_t nmembers;
    int stalled;                    /* the store holds a commit of ours for the writer */
    int64_t follow_rev;             /* the last commit applied */
    uint64_t remote_changes;        /* other nodes' changes applied */
};

#endif
