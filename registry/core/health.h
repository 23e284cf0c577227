/* SPDX-License-Identifier: BSD-2-Clause */
/* health.h — keeps the registry true: active TCP checks, TTL expiry, eviction and
 * self-preservation. Health learns which instances exist by observing the catalog
 * (cat_observe): it is never called by the request path. Its verdicts go through the
 * write pipeline and reach the catalog through apply, like every other change.
 */
#ifndef REGISTRY_CORE_HEALTH_H
#define REGISTRY_CORE_HEALTH_H

#include <jansson.h>

#include "core/internal.h"

/* NULL when out of memory. health_free(NULL) is a no-op. */
health *health_new(core *c);
void health_free(health *h);
/* Starts tracking every instance in the catalog (after the start-up load) and observing
 * the catalog for what comes, goes and is renewed. Returns 0 or -ENOMEM. */
int health_start(health *h);
/* Persists check times, stops timers and cancels probes (for exit). */
void health_stop(health *h);
/* A shared store: another node's verdict about in reached the catalog; health's record
 * follows it (this node may check the instance later). */
void health_sync(health *h, cat_instance *in);
/* An expiry this node recorded (a shared store's lease ran out). */
void health_expired(health *h);
/* The live nodes changed: which instances this node checks is worked out again. */
void health_members_changed(health *h);
/* Adds the health figures to a stats object. */
void health_stats(health *h, json_t *stats);

/* Test hook: when > 0, that many next per-instance records fail as if out of memory (the
 * instance must then be tracked by the retry, not left unchecked). */
extern int health__fail_records;

#endif
