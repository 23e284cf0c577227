/* SPDX-License-Identifier: BSD-2-Clause */
/* apply.h — the ONE path by which a change reaches the in-memory registry: a commit of
 * this node's writer (a registration, a deregistration, a health verdict, an eviction or
 * expiry), an instance loaded at start-up, and — with a shared store — a change another
 * node committed. It changes the catalog (which gives services new generations, so
 * cached answers go stale, and tells its observer, health, what came, went or was
 * renewed) and publishes the change's event on the bus and in the log.
 */
#ifndef REGISTRY_CORE_APPLY_H
#define REGISTRY_CORE_APPLY_H

#include "core/internal.h"

/* Applies a committed change (ch->rc == 0) and publishes its event (if any) at level,
 * naming client (may be NULL or ""); owner: the IP that registered a new instance (NULL
 * for changes that create none). Returns 0, or -ENOMEM/-EINVAL when a committed
 * registration could not be put in memory (it is durable: a restart loads it). */
int apply_change(core *c, const store_change *ch, const char *client, const char *owner,
                 int level);
/* Puts a stored instance in the catalog (start-up load). Returns 0, -ENOMEM or -EINVAL. */
int apply_loaded(core *c, const store_instance *si);
/* A heartbeat: the instance was seen now; its TTL starts over. */
void apply_heartbeat(core *c, cat_instance *in);
/* A check's outcome that changes no status: the times a lookup shows move on now (the
 * store gets them in health's periodic flush). */
void apply_checked(core *c, cat_instance *in, int64_t last_seen, int64_t last_check);
/* Publishes an event (bus, then log) at level, naming client (may be NULL or ""). */
void apply_publish(core *c, const store_event *ev, const char *client, int level);

#endif
