/* SPDX-License-Identifier: BSD-2-Clause */
/* memory.h — test hooks of the in-memory backend of the store (registry/store/memory.c,
 * opened with store_open("memory:", ...)), for unit tests of the core that need a store
 * without a disk and a way to make it fail.
 *
 * Unlike the rest of the store, these two may be called from any thread while the
 * writer's worker thread is inside store_apply (they use atomics only).
 */
#ifndef REGISTRY_STORE_MEMORY_H
#define REGISTRY_STORE_MEMORY_H

#include <stdint.h>

#include "store/store.h"

/* Makes the next n calls of store_apply that have at least one change fail with
 * STORE_EIO and a message, changing nothing (n replaces what was left of an earlier
 * call; 0 cancels). Returns 0, or -EINVAL when st is not a memory store or n < 0. */
int store_memory_fail(store *st, int n);

/* How many calls of store_apply (with at least one change) committed on st so far;
 * 0 when st is not a memory store. */
uint64_t store_memory_applies(store *st);

#endif
