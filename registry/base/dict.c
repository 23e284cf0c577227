/* SPDX-License-Identifier: BSD-2-Clause */
/* dict.c — see dict.h. Power-of-two table, load factor <= 1/2. */
#include "base/dict.h"

#include "base/util.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* 24 bytes: the key's length rides in the low 16 bits of the hash (keys are names and
 * lookup keys, far below 64 KiB), which took a slot of its own (32 bytes) before. */
struct slot {
    uint64_t tag;       /* 0 = empty; else the hash's top 48 bits (never all zero) | len */
    const char *key;    /* borrowed */
    void *value;
};

#define LEN_MAX 0xFFFFu     /* the longest key */

static inline uint64_t tag_of(uint64_t h, size_t len) {
    uint64_t t = h & ~(uint64_t)LEN_MAX;
    return (t ? t : (uint64_t)1 << 16) | len;
}

static inline size_t home_of(uint64_t tag, size_t mask) {
    return (size_t)(tag >> 16) & mask;
}

struct dict {
    struct slot *slots;
    size_t cap;         /* power of two */
    size_t size;
};

/* --- SipHash (Aumasson & Bernstein), 64-bit output ----------------------------------------
 * The keys are client-chosen (service names, instance ids, lookup keys), so an unkeyed
 * hash lets a client pick thousands of keys with the same home slot and make every probe
 * walk them all (issue 10). Keyed with a secret drawn per process, the slots are not
 * predictable. SipHash-1-3 (one compression, three finalization rounds) is what Rust's and
 * Python's hash tables use: enough against flooding, cheaper than the 2-4 PRF on the short
 * keys of the lookup path. Hand-written because OpenSSL's EVP_MAC SipHash allocates a
 * context per call. Checked against the reference vectors (tests/unit/test_dict.c). */

#define ROTL64(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND()                                                                  \
    do {                                                                            \
        v0 += v1; v1 = ROTL64(v1, 13); v1 ^= v0; v0 = ROTL64(v0, 32);                \
        v2 += v3; v3 = ROTL64(v3, 16); v3 ^= v2;                                     \
        v0 += v3; v3 = ROTL64(v3, 21); v3 ^= v0;                                     \
        v2 += v1; v1 = ROTL64(v1, 17); v1 ^= v2; v2 = ROTL64(v2, 32);                \
    } while (0)

/* SipHash-c-d of in[len] under the key (k0, k1), each the little-endian half of the
 * 16-byte key. Inlined with constant c and d, the round loops unroll. */
static inline uint64_t siphash(int c, int d, uint64_t k0, uint64_t k1, const unsigned char *in,
                               size_t len) {
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    const unsigned char *end = in + (len & ~(size_t)7);
    for (; in != end; in += 8) {
        uint64_t m;
        memcpy(&m, in, 8);
        m = le64toh(m);
        v3 ^= m;
        for (int i = 0; i < c; i++)
            SIPROUND();
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56; /* the last block: the tail bytes and len mod 256 */
    switch (len & 7) {
    case 7: b |= (uint64_t)in[6] << 48; /* fall through */
    case 6: b |= (uint64_t)in[5] << 40; /* fall through */
    case 5: b |= (uint64_t)in[4] << 32; /* fall through */
    case 4: b |= (uint64_t)in[3] << 24; /* fall through */
    case 3: b |= (uint64_t)in[2] << 16; /* fall through */
    case 2: b |= (uint64_t)in[1] << 8;  /* fall through */
    case 1: b |= (uint64_t)in[0];       /* fall through */
    case 0: break;
    }
    v3 ^= b;
    for (int i = 0; i < c; i++)
        SIPROUND();
    v0 ^= b;
    v2 ^= 0xff;
    for (int i = 0; i < d; i++)
        SIPROUND();
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t load_le64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

uint64_t dict_siphash_with_key(const unsigned char k[16], const void *msg, size_t len) {
    return siphash(1, 3, load_le64(k), load_le64(k + 8), msg, len);
}

uint64_t dict_siphash24_with_key(const unsigned char k[16], const void *msg, size_t len) {
    return siphash(2, 4, load_le64(k), load_le64(k + 8), msg, len);
}

/* The per-process key: drawn once, by the first dict_new (or dict_hash) of the process. */
static uint64_t hash_k0, hash_k1;
static atomic_int hash_keyed;
static pthread_once_t hash_once = PTHREAD_ONCE_INIT;

static void draw_key(void) {
    unsigned char k[16];
    if (util_random(k, sizeof(k)) != 0) {
        /* No getrandom (ENOSYS, kernels before 3.17): weak, but not the same in every
         * process. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t a = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        uint64_t b = ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&ts;
        memcpy(k, &a, 8);
        memcpy(k + 8, &b, 8);
    }
    hash_k0 = load_le64(k);
    hash_k1 = load_le64(k + 8);
    atomic_store_explicit(&hash_keyed, 1, memory_order_release);
}

static inline void ensure_key(void) {
    if (!atomic_load_explicit(&hash_keyed, memory_order_acquire))
        pthread_once(&hash_once, draw_key);
}

uint64_t dict_hash(const char *key, size_t len) {
    ensure_key();
    uint64_t h = siphash(1, 3, hash_k0, hash_k1, (const unsigned char *)key, len);
    return h ? h : 1;
}

dict *dict_new(void) {
    ensure_key();
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

/* The slot of key (tag: tag_of its hash and len), or the empty slot where it would go. */
static struct slot *find(const dict *d, const char *key, size_t len, uint64_t tag) {
    size_t mask = d->cap - 1;
    for (size_t i = home_of(tag, mask);; i = (i + 1) & mask) {
        struct slot *s = &d->slots[i];
        if (s->tag == 0)
            return s;
        if (s->tag == tag && memcmp(s->key, key, len) == 0) /* same tag: same length */
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
        if (s->tag == 0)
            continue;
        size_t j = home_of(s->tag, ncap - 1);
        while (ns[j].tag != 0)
            j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    free(d->slots);
    d->slots = ns;
    d->cap = ncap;
    return 0;
}

void *dict_get(const dict *d, const char *key, size_t len) {
    return dict_get_h(d, key, len, dict_hash(key, len));
}

void *dict_get_h(const dict *d, const char *key, size_t len, uint64_t h) {
    if (len > LEN_MAX)
        return NULL; /* never put */
    struct slot *s = find(d, key, len, tag_of(h, len));
    return s->tag ? s->value : NULL;
}

int dict_put(dict *d, const char *key, size_t len, void *value) {
    if (len > LEN_MAX)
        return -EINVAL;
    if ((d->size + 1) * 2 > d->cap && grow(d) != 0)
        return -ENOMEM;
    uint64_t tag = tag_of(dict_hash(key, len), len);
    struct slot *s = find(d, key, len, tag);
    if (s->tag == 0)
        d->size++;
    s->tag = tag;
    s->key = key;
    s->value = value;
    return 0;
}

void *dict_del(dict *d, const char *key, size_t len) {
    size_t mask = d->cap - 1;
    if (len > LEN_MAX)
        return NULL;
    struct slot *s = find(d, key, len, tag_of(dict_hash(key, len), len));
    if (s->tag == 0)
        return NULL;
    void *value = s->value;
    /* Backward-shift: pull later members of the probe run into the hole. */
    size_t i = (size_t)(s - d->slots);
    for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
        struct slot *t = &d->slots[j];
        if (t->tag == 0)
            break;
        size_t home = home_of(t->tag, mask);
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
        if (s->tag != 0)
            return s->value;
    }
    return NULL;
}
