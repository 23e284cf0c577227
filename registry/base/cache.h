/* SPDX-License-Identifier: BSD-2-Clause */
/* cache.h — a bounded LRU of derived values, each valid for one generation of what it
 * was derived from, so a hot answer costs one hash probe: no catalog walk, no encoding.
 *
 * The core keeps the candidate sets of lookups in one (core/lookup.h); each front-end
 * keeps its encoded answers in its own. An entry carries the generation of the service it
 * was built from; the catalog gives a service a new generation on every change it shows
 * (core/catalog.h), and cache_get treats an entry of another generation as a miss and
 * drops it. So no client is served an answer older than a change it saw acknowledged.
 *
 * Entries are structs that embed a cache_entry as their FIRST member; the cache calls
 * entry->free_fn to free one it drops. */
#ifndef REGISTRY_BASE_CACHE_H
#define REGISTRY_BASE_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cache_entry cache_entry;
struct cache_entry {
    char *key;                  /* owned by the entry (free_fn frees it) */
    size_t key_len;
    uint64_t gen;               /* generation it was built from */
    void (*free_fn)(cache_entry *e); /* frees the whole entry */
    cache_entry *prev, *next;   /* LRU list, most recent first (cache-owned) */
};

typedef struct cache cache;

typedef struct cache_stats {
    uint64_t hits, misses, evictions;
    size_t entries, capacity;
} cache_stats;

/* A cache of at most capacity entries (0: disabled: cache_get always misses and
 * cache_put refuses). NULL when out of memory. cache_free(NULL) is a no-op. */
cache *cache_new(size_t capacity);
void cache_free(cache *c);

/* The entry for key if cached at generation gen (and marks it recently used), else NULL
 * (a stale entry is dropped). Counts a hit or a miss. Borrowed: valid until the next
 * cache_put or cache_free. */
cache_entry *cache_get(cache *c, const char *key, size_t key_len, uint64_t gen);
/* Admission (TinyLFU's doorkeeper): 1 when key was asked for recently enough to be
 * worth caching, else 0 (and remembers it). One-off lookups of a large registry then
 * pass by without evicting hot answers or churning the cache. */
int cache_admit(cache *c, const char *key, size_t key_len);
/* Offers a freshly built entry; evicts the least recently used one when full. Returns 1
 * when cached (the cache owns it now), 0 when not (disabled or out of memory: the
 * caller still owns it and frees it after use with cache_entry_free). */
int cache_put(cache *c, cache_entry *e);
/* Frees an entry that is not in a cache (NULL is a no-op). */
void cache_entry_free(cache_entry *e);
void cache_get_stats(const cache *c, cache_stats *st);

#endif
