/* SPDX-License-Identifier: BSD-2-Clause */
/* follow.h — a node of a shared store (etcd): follows every node's commits, and divides
 * the health checks among the live nodes.
 *
 * The store's watch hands over each commit of the cluster in revision order; this
 * applies another node's through apply (the same path as our own commits), and hands
 * this node's own back to the writer, whose parked batch then completes: so every node
 * applies the same changes in the same order, and a client still reads its own writes
 * on the node that acknowledged them. It keeps the live nodes' names for owners.h, which
 * says which node checks (and expires) each instance.
 */
#ifndef REGISTRY_CORE_FOLLOW_H
#define REGISTRY_CORE_FOLLOW_H

#include "core/internal.h"

/* Starts following when the store is shared (no-op otherwise). Returns 0 or -errno. */
int follow_start(core *c, char *err, size_t errlen);
/* The store's figures (backend, endpoint, connected, revision, nodes) into stats.store. */
void follow_stats(core *c, json_t *store_stats);
/* Stops following (at exit, once the writer is idle); cb(ud) when done. */
void follow_stop(core *c, void (*cb)(void *ud), void *ud);
void follow_free(core *c);

#endif
