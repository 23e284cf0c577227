/* SPDX-License-Identifier: BSD-2-Clause */
/* owners.h — which node checks (and expires) which instance, when several nodes share a
 * store: the live nodes' names, and rendezvous hashing of an instance's id over them
 * (the highest hash(node, id) wins), the same on every node. When a node comes or goes
 * only its share moves. With a local store this node owns everything.
 */
#ifndef REGISTRY_CORE_OWNERS_H
#define REGISTRY_CORE_OWNERS_H

#include "core/internal.h"

/* Does this node check (and expire) the instance? Always 1 with a local store, or while
 * this node knows of no other. */
int owners_mine(const core *c, const char *id);
/* The live nodes are now names[n] (sorted, copied). Returns 1 when they changed, 0 when
 * not, -1 when out of memory (the old list stays). */
int owners_set(core *c, const char *const *names, size_t n);
void owners_free(core *c);

#endif
