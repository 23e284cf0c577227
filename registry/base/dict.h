/* SPDX-License-Identifier: BSD-2-Clause */
/* dict.h — a string-keyed hash map (open addressing, linear probing, backward-shift
 * deletion, so no tombstones). Keys are BORROWED: the caller keeps each key alive and
 * unchanged while it is in the map (typically the key points into the value). */
#ifndef REGISTRY_DICT_H
#define REGISTRY_DICT_H

#include <stddef.h>
#include <stdint.h>

typedef struct dict dict;

/* New empty map, or NULL when out of memory. Free with dict_free. */
dict *dict_new(void);
/* Frees the map (not the keys or values). dict_free(NULL) is a no-op. */
void dict_free(dict *d);
/* The value for key (len bytes), or NULL. */
void *dict_get(const dict *d, const char *key, size_t len);
/* The same with key's dict_hash already computed (h): for a hot path that looks one key
 * up in several maps. */
void *dict_get_h(const dict *d, const char *key, size_t len, uint64_t h);
/* Inserts or replaces. Returns 0, -ENOMEM, or -EINVAL for a key over 65,535 bytes. */
int dict_put(dict *d, const char *key, size_t len, void *value);
/* Removes key; returns its value or NULL when absent. */
void *dict_del(dict *d, const char *key, size_t len);
/* Number of entries. */
size_t dict_size(const dict *d);
/* Iteration: *pos starts at 0; returns the next value or NULL at the end. The map must
 * not change during an iteration. */
void *dict_next(const dict *d, size_t *pos);
/* The hash function: SipHash-1-3 under a random 128-bit key drawn from the OS once per
 * process (by its first dict_new), so clients cannot choose keys that collide (hash
 * flooding). The same within a process, different between processes; never 0. */
uint64_t dict_hash(const char *key, size_t len);
/* SipHash-1-3 (what dict_hash uses) and SipHash-2-4, 64-bit output, under a given key:
 * for the tests' reference vectors. */
uint64_t dict_siphash_with_key(const unsigned char k[16], const void *msg, size_t len);
uint64_t dict_siphash24_with_key(const unsigned char k[16], const void *msg, size_t len);

#endif
