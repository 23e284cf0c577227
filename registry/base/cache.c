/* SPDX-License-Identifier: BSD-2-Clause */
/* cache.c — see cache.h. A dict for the index and a doubly linked list for recency. */
#include "base/cache.h"

#include <stdlib.h>
#include <string.h>

#include "base/dict.h"

#define DOOR_BITS (1u << 16)     /* doorkeeper: keys seen once recently */

struct cache {
    dict *index;                /* key -> cache_entry */
    uint64_t door[DOOR_BITS / 64];
    uint64_t door_checks;       /* admissions asked since the doorkeeper was cleared */
    cache_entry *head, *tail;  /* most / least recently used */
    size_t capacity;
    uint64_t hits, misses, evictions;
};

cache *cache_new(size_t capacity) {
    cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->capacity = capacity;
    if ((c->index = dict_new()) == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

void cache_entry_free(cache_entry *a) {
    if (a != NULL)
        a->free_fn(a);
}

static void unlink_entry(cache *c, cache_entry *a) {
    if (a->prev)
        a->prev->next = a->next;
    else
        c->head = a->next;
    if (a->next)
        a->next->prev = a->prev;
    else
        c->tail = a->prev;
    a->prev = a->next = NULL;
}

static void push_front(cache *c, cache_entry *a) {
    a->prev = NULL;
    a->next = c->head;
    if (c->head)
        c->head->prev = a;
    c->head = a;
    if (c->tail == NULL)
        c->tail = a;
}

static void drop(cache *c, cache_entry *a) {
    unlink_entry(c, a);
    dict_del(c->index, a->key, a->key_len);
    cache_entry_free(a);
}

void cache_free(cache *c) {
    if (c == NULL)
        return;
    while (c->head)
        drop(c, c->head);
    dict_free(c->index);
    free(c);
}

cache_entry *cache_get(cache *c, const char *key, size_t key_len, uint64_t gen) {
    cache_entry *a = c->capacity ? dict_get(c->index, key, key_len) : NULL;
    if (a != NULL && a->gen != gen) {
        drop(c, a);
        a = NULL;
    }
    if (a == NULL) {
        c->misses++;
        return NULL;
    }
    c->hits++;
    if (c->head != a) {
        unlink_entry(c, a);
        push_front(c, a);
    }
    return a;
}

int cache_put(cache *c, cache_entry *a) {
    if (c->capacity == 0)
        goto uncached;
    cache_entry *old = dict_get(c->index, a->key, a->key_len);
    if (old != NULL)
        drop(c, old);
    while (dict_size(c->index) >= c->capacity && c->tail) {
        drop(c, c->tail);
        c->evictions++;
    }
    if (dict_put(c->index, a->key, a->key_len, a) != 0)
        goto uncached;
    push_front(c, a);
    return 1;
uncached:
    return 0;
}

int cache_admit(cache *c, const char *key, size_t key_len) {
    if (c->capacity == 0)
        return 0;
    /* Forget periodically, so "seen before" means "seen recently". */
    if (++c->door_checks > 8 * (uint64_t)c->capacity + DOOR_BITS / 4) {
        memset(c->door, 0, sizeof(c->door));
        c->door_checks = 0;
    }
    uint64_t h = dict_hash(key, key_len) & (DOOR_BITS - 1);
    uint64_t bit = 1ULL << (h & 63);
    if (c->door[h >> 6] & bit)
        return 1;
    c->door[h >> 6] |= bit;
    return 0;
}

void cache_get_stats(const cache *c, cache_stats *st) {
    st->hits = c->hits;
    st->misses = c->misses;
    st->evictions = c->evictions;
    st->entries = dict_size(c->index);
    st->capacity = c->capacity;
}
