/* cache.c — see cache.h. A dict for the index and a doubly linked list for recency. */
#include "cache.h"

#include <stdlib.h>

#include "dict.h"

struct cache {
    dict *index;                /* key -> cache_answer */
    cache_answer *head, *tail;  /* most / least recently used */
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

void cache_answer_free(cache_answer *a) {
    if (a == NULL)
        return;
    if (a->heads)
        for (size_t i = 0; i < a->n; i++)
            free(a->heads[i]);
    free(a->heads);
    free(a->head_lens);
    free(a->cands);
    free(a->tail);
    free(a->key);
    free(a);
}

static void unlink_answer(cache *c, cache_answer *a) {
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

static void push_front(cache *c, cache_answer *a) {
    a->prev = NULL;
    a->next = c->head;
    if (c->head)
        c->head->prev = a;
    c->head = a;
    if (c->tail == NULL)
        c->tail = a;
}

static void drop(cache *c, cache_answer *a) {
    unlink_answer(c, a);
    dict_del(c->index, a->key, a->key_len);
    cache_answer_free(a);
}

void cache_free(cache *c) {
    if (c == NULL)
        return;
    while (c->head)
        drop(c, c->head);
    dict_free(c->index);
    free(c);
}

cache_answer *cache_get(cache *c, const char *key, size_t key_len, uint64_t gen) {
    cache_answer *a = c->capacity ? dict_get(c->index, key, key_len) : NULL;
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
        unlink_answer(c, a);
        push_front(c, a);
    }
    return a;
}

int cache_put(cache *c, cache_answer *a) {
    if (c->capacity == 0)
        goto uncached;
    cache_answer *old = dict_get(c->index, a->key, a->key_len);
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

void cache_get_stats(const cache *c, cache_stats *st) {
    st->hits = c->hits;
    st->misses = c->misses;
    st->evictions = c->evictions;
    st->entries = dict_size(c->index);
    st->capacity = c->capacity;
}
