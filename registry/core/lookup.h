/* SPDX-License-Identifier: BSD-2-Clause */
/* lookup.h — the instances a lookup of (service, tag, all) lists and hands out in turn,
 * computed once per service generation and kept in the core's cache (base/cache.h), so a
 * hot lookup costs one probe.
 *
 * Front-ends encode a set in their own format and keep that encoding attached to the set
 * (an attachment slot per front-end, as OpenSSL's ex_data or nginx's module contexts):
 * it is then valid for exactly the set's (key, generation) and goes when the set goes,
 * and a hot lookup costs one probe, not one per front-end. The core never looks inside.
 */
#ifndef REGISTRY_CORE_LOOKUP_H
#define REGISTRY_CORE_LOOKUP_H

#include <stddef.h>

#include "base/cache.h"
#include "core/catalog.h"
#include "core/req.h"

#define LOOKUP_KEY_MAX (REQ_SERVICE_MAX + REQ_TAG_MAX + 8)
#define LOOKUP_ATTACH_MAX 4         /* front-ends that may attach an encoding to a set */

/* The kinds of attachment: the destructor of each slot (core.h: core_lookup_attach). */
typedef struct lookup_kinds {
    void (*free_fn[LOOKUP_ATTACH_MAX])(void *attachment);
    int n;
} lookup_kinds;

typedef struct lookup_set {
    cache_entry base;               /* key "service\0tag\0all" and the service generation;
                                     * the key and both arrays live in the set's block */
    cat_instance **listed;          /* what the answer lists, in registration order (the
                                     * pointers are valid while gen matches) */
    size_t nlisted;                 /* >= 1 */
    cat_instance **cands;           /* handed out in turn: the passing ones among listed,
                                     * or all listed when none passes */
    size_t ncands;                  /* >= 1 */
    void *attach[LOOKUP_ATTACH_MAX]; /* front-ends' encodings of this set, or NULL; owned
                                     * by the set, freed with kinds->free_fn[slot] */
    const lookup_kinds *kinds;      /* borrowed from the core */
} lookup_set;

/* Writes the cache key of (service, tag, all) into key[LOOKUP_KEY_MAX]; returns its
 * length. tag may be NULL. */
size_t lookup_key(const char *service, const char *tag, int all, char *key);
/* The set of svc for (tag, all) under key, or NULL when no instance matches (*oom = 0)
 * or out of memory (*oom = 1). Owned by the caller until given to a cache. */
lookup_set *lookup_build(const cat_service *svc, const char *key, size_t key_len,
                         const char *tag, int all, const lookup_kinds *kinds, int *oom);

#endif
