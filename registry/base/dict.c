/* dict.c — see dict.h. Power-of-two table, load factor <= 1/2. */
#include "base/dict.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    uint64_t hash;      /* 0 = empty (real hashes are forced non-zero) */
    const char *key;    /* borrowed */
    size_t len;
    void *value;
};

struct dict {
    struct slot *slots;
    size_t cap;         /* power of two */
    size_t size;
};

uint64_t dict_hash(const char *key, size_t len) {
    uint64_t h = 14695981039346656037ULL; /* FNV-1a 64 offset basis */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ULL;
    }
    return h ? h : 1;
}

dict *dict_new(void) {
    dict *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    d->cap = 16;
    d->slots = calloc(d->cap, sizeof(*d->slots));
    if (d->slots == NULL) {
        free(d);
        return NULL;
    }
    return d;
}

void dict_free(dict *d) {
    if (d == NULL)
        return;
    free(d->slots);
    free(d);
}

static struct slot *find(const dict *d, const char *key, size_t len, uint64_t h) {
    size_t mask = d->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct slot *s = &d->slots[i];
        if (s->hash == 0)
            return s;
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
            return s;
    }
}

static int grow(dict *d) {
    size_t ncap = d->cap * 2;
    struct slot *ns = calloc(ncap, sizeof(*ns));
    if (ns == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < d->cap; i++) {
        struct slot *s = &d->slots[i];
        if (s->hash == 0)
            continue;
        size_t j = s->hash & (ncap - 1);
        while (ns[j].hash != 0)
            j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    free(d->slots);
    d->slots = ns;
    d->cap = ncap;
    return 0;
}

void *dict_get(const dict *d, const char *key, size_t len) {
    struct slot *s = find(d, key, len, dict_hash(key, len));
    return s->hash ? s->value : NULL;
}

int dict_put(dict *d, const char *key, size_t len, void *value) {
    if ((d->size + 1) * 2 > d->cap && grow(d) != 0)
        return -ENOMEM;
    uint64_t h = dict_hash(key, len);
    struct slot *s = find(d, key, len, h);
    if (s->hash == 0)
        d->size++;
    s->hash = h;
    s->key = key;
    s->len = len;
    s->value = value;
    return 0;
}

void *dict_del(dict *d, const char *key, size_t len) {
    size_t mask = d->cap - 1;
    struct slot *s = find(d, key, len, dict_hash(key, len));
    if (s->hash == 0)
        return NULL;
    void *value = s->value;
    /* Backward-shift: pull later members of the probe run into the hole. */
    size_t i = (size_t)(s - d->slots);
    for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
        struct slot *t = &d->slots[j];
        if (t->hash == 0)
            break;
        size_t home = t->hash & mask;
        /* t may move to i only if its home is not in the cyclic range (i, j]. */
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            d->slots[i] = *t;
            i = j;
        }
    }
    memset(&d->slots[i], 0, sizeof(d->slots[i]));
    d->size--;
    return value;
}

size_t dict_size(const dict *d) {
    return d->size;
}

void *dict_next(const dict *d, size_t *pos) {
    while (*pos < d->cap) {
        struct slot *s = &d->slots[(*pos)++];
        if (s->hash != 0)
            return s->value;
    }
    return NULL;
}
