/* cache.h — a bounded LRU of ready-to-send lookup answers, so a hot lookup costs one
 * hash probe and a copy: no catalog walk, no JSON encoding.
 *
 * An answer is built for one (service, tag, all) from the catalog and carries the
 * service's generation; the catalog gives a service a new generation on every change
 * (register, deregister, evict, expire, status change) before the change is
 * acknowledged, and cache_get treats an entry of another generation as a miss and drops
 * it. So no client can be served an answer older than a change it saw acknowledged.
 *
 * Round-robin: an answer holds its candidate instances; the head naming the one handed
 * out ("host", "port", ...) is the instance's own pre-encoded head (catalog.h), the
 * instances list (the tail) is shared by all. */
#ifndef REGISTRY_CACHE_H
#define REGISTRY_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "core/catalog.h"

typedef struct cache_answer {
    char *key;                  /* owned: "service\0tag\0all" */
    size_t key_len;
    uint64_t gen;               /* service generation it was built from */
    cat_instance **cands;       /* owned array; the pointers are valid while gen matches */
    size_t n;                   /* number of candidates (>= 1) */
    char *tail;                 /* owned: "\"instances\":[...]}\n" */
    size_t tail_len;
    size_t bytes;               /* memory accounted to this answer */
    struct cache_answer *prev, *next; /* LRU list, most recent first */
} cache_answer;

typedef struct cache cache;

typedef struct cache_stats {
    uint64_t hits, misses, evictions;
    size_t entries, capacity;
} cache_stats;

/* A cache of at most capacity answers (0: disabled: cache_get always misses and
 * cache_put frees). NULL when out of memory. */
cache *cache_new(size_t capacity);
void cache_free(cache *c);

/* The answer for key if cached at generation gen (and marks it recently used), else NULL
 * (a stale entry is dropped). Counts a hit or a miss. */
cache_answer *cache_get(cache *c, const char *key, size_t key_len, uint64_t gen);
/* Admission (TinyLFU's doorkeeper): 1 when key was asked for recently enough to be
 * worth caching, else 0 (and remembers it). One-off lookups of a large registry then
 * pass by without evicting hot answers or churning the cache. */
int cache_admit(cache *c, const char *key, size_t key_len);
/* Offers a freshly built answer; evicts the least recently used entry when full.
 * Returns 1 when cached (the cache owns it now), 0 when not (disabled or out of
 * memory: the caller still owns it and frees it after use). */
int cache_put(cache *c, cache_answer *a);
/* Frees an answer that is not in a cache. */
void cache_answer_free(cache_answer *a);
void cache_get_stats(const cache *c, cache_stats *st);

#endif
