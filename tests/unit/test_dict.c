/* SPDX-License-Identifier: BSD-2-Clause */
/* test_dict.c — unit tests of the string-keyed hash map (registry/base/dict.c) with cmocka.
 *
 * Keys are borrowed by the map, so every test keeps its keys in arrays that outlive the
 * map. Deletion uses backward shift (no tombstones): the tests that matter most delete
 * from the middle of long probe runs, in random order, and check that every remaining
 * key is still found and every deleted one is not.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "base/dict.h"

#define KEY_LEN 24

/* n keys "prefix-<i>" in one block of n * KEY_LEN bytes (the caller frees it). */
static char *make_keys(size_t n, const char *prefix) {
    char *keys = malloc(n * KEY_LEN);
    assert_non_null(keys);
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(keys + i * KEY_LEN, KEY_LEN, "%s-%zu", prefix, i);
        assert_true(w > 0 && w < KEY_LEN);
    }
    return keys;
}

#define KEY(keys, i) ((keys) + (size_t)(i) * KEY_LEN)

/* A deterministic permutation of 0..n-1 (Fisher-Yates with a fixed xorshift seed). */
static size_t *shuffled(size_t n, uint64_t seed) {
    size_t *p = malloc(n * sizeof(*p));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = i;
    uint64_t x = seed;
    for (size_t i = n; i > 1; i--) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t j = (size_t)(x % i);
        size_t t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
    return p;
}

/* A distinct non-NULL value per index. */
static void *val(size_t i) {
    return (void *)(uintptr_t)(i + 1);
}

static void test_new_is_empty(void **state) {
    (void)state;
    dict *d = dict_new();
    assert_non_null(d);
    assert_int_equal(dict_size(d), 0);
    assert_null(dict_get(d, "a", 1));
    assert_null(dict_del(d, "a", 1));
    size_t pos = 0;
    assert_null(dict_next(d, &pos));
    dict_free(d);
    dict_free(NULL);
}

static void test_put_get_del(void **state) {
    (void)state;
    dict *d = dict_new();
    int a = 1, b = 2;
    assert_int_equal(dict_put(d, "alpha", 5, &a), 0);
    assert_int_equal(dict_put(d, "beta", 4, &b), 0);
    assert_int_equal(dict_size(d), 2);
    assert_ptr_equal(dict_get(d, "alpha", 5), &a);
    assert_ptr_equal(dict_get(d, "beta", 4), &b);
    assert_null(dict_get(d, "gamma", 5));
    assert_ptr_equal(dict_del(d, "alpha", 5), &a);
    assert_int_equal(dict_size(d), 1);
    assert_null(dict_get(d, "alpha", 5));
    assert_ptr_equal(dict_get(d, "beta", 4), &b);
    assert_null(dict_del(d, "alpha", 5));
    assert_int_equal(dict_size(d), 1);
    dict_free(d);
}

static void test_replace_keeps_size(void **state) {
    (void)state;
    dict *d = dict_new();
    int a = 1, b = 2;
    static const char k1[] = "key", k2[] = "key";
    assert_int_equal(dict_put(d, k1, 3, &a), 0);
    assert_int_equal(dict_put(d, k2, 3, &b), 0); /* equal bytes, another pointer */
    assert_int_equal(dict_size(d), 1);
    assert_ptr_equal(dict_get(d, "key", 3), &b);
    assert_ptr_equal(dict_del(d, "key", 3), &b);
    assert_int_equal(dict_size(d), 0);
    dict_free(d);
}

static void test_length_is_part_of_key(void **state) {
    (void)state;
    dict *d = dict_new();
    int a = 1, b = 2, c = 3;
    static const char buf[] = "abc\0def";
    assert_int_equal(dict_put(d, buf, 2, &a), 0);     /* "ab" */
    assert_int_equal(dict_put(d, buf, 3, &b), 0);     /* "abc" */
    assert_int_equal(dict_put(d, buf, 7, &c), 0);     /* "abc\0def": embedded NUL */
    assert_int_equal(dict_size(d), 3);
    assert_ptr_equal(dict_get(d, "ab", 2), &a);
    assert_ptr_equal(dict_get(d, "abc", 3), &b);
    assert_ptr_equal(dict_get(d, "abc\0def", 7), &c);
    assert_null(dict_get(d, "abc\0deg", 7));
    assert_int_equal(dict_put(d, "", 0, &a), 0);      /* the empty key is a key */
    assert_ptr_equal(dict_get(d, "", 0), &a);
    assert_int_equal(dict_size(d), 4);
    dict_free(d);
}

/* A key's length rides in its slot's tag (16 bits): the longest key, 65,535 bytes, is
 * kept and found; one byte more is refused (-EINVAL) and never found; keys that are
 * prefixes of each other stay apart whatever their lengths. */
static void test_longest_key(void **state) {
    (void)state;
    size_t max = 65535;
    char *big = malloc(max + 2);
    assert_non_null(big);
    memset(big, 'k', max + 1);
    big[max + 1] = '\0';
    dict *d = dict_new();
    assert_non_null(d);
    assert_int_equal(dict_put(d, big, max, val(1)), 0);
    assert_int_equal(dict_put(d, big, max + 1, val(2)), -EINVAL);
    assert_int_equal(dict_put(d, big, 1, val(3)), 0);
    assert_int_equal(dict_put(d, big, 256, val(4)), 0);
    assert_ptr_equal(dict_get(d, big, max), val(1));
    assert_null(dict_get(d, big, max + 1));
    assert_null(dict_del(d, big, max + 1));
    assert_ptr_equal(dict_get(d, big, 1), val(3));
    assert_ptr_equal(dict_get(d, big, 256), val(4));
    assert_null(dict_get(d, big, 255));
    assert_int_equal(dict_size(d), 3);
    assert_ptr_equal(dict_del(d, big, max), val(1));
    assert_int_equal(dict_size(d), 2);
    dict_free(d);
    free(big);
}

static void test_growth_to_100k(void **state) {
    (void)state;
    const size_t n = 100000;
    char *keys = make_keys(n, "svc");
    dict *d = dict_new();
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(dict_put(d, KEY(keys, i), strlen(KEY(keys, i)), val(i)), 0);
        assert_int_equal(dict_size(d), i + 1);
    }
    for (size_t i = 0; i < n; i++)
        assert_ptr_equal(dict_get(d, KEY(keys, i), strlen(KEY(keys, i))), val(i));
    assert_null(dict_get(d, "svc-100000", 10));
    assert_null(dict_get(d, "svc", 3));
    dict_free(d);
    free(keys);
}

static void test_delete_random_order_keeps_chains(void **state) {
    (void)state;
    const size_t n = 20000;
    char *keys = make_keys(n, "k");
    dict *d = dict_new();
    for (size_t i = 0; i < n; i++)
        assert_int_equal(dict_put(d, KEY(keys, i), strlen(KEY(keys, i)), val(i)), 0);
    size_t *order = shuffled(n, 0x9E3779B97F4A7C15ULL);
    char *gone = calloc(n, 1);
    assert_non_null(gone);
    for (size_t k = 0; k < n; k++) {
        size_t i = order[k];
        assert_ptr_equal(dict_del(d, KEY(keys, i), strlen(KEY(keys, i))), val(i));
        gone[i] = 1;
        assert_int_equal(dict_size(d), n - k - 1);
        /* Every so often, and near the end, every key is where it should be. */
        if (k % 1000 == 0 || n - k < 64) {
            for (size_t j = 0; j < n; j++) {
                void *v = dict_get(d, KEY(keys, j), strlen(KEY(keys, j)));
                if (gone[j])
                    assert_null(v);
                else
                    assert_ptr_equal(v, val(j));
            }
        }
    }
    assert_int_equal(dict_size(d), 0);
    free(gone);
    free(order);
    dict_free(d);
    free(keys);
}

/* Next lexicographic permutation of p[n]; 0 after the last one. */
static int next_perm(size_t *p, size_t n) {
    size_t i = n - 1;
    while (i > 0 && p[i - 1] >= p[i])
        i--;
    if (i == 0)
        return 0;
    size_t j = n - 1;
    while (p[j] <= p[i - 1])
        j--;
    size_t t = p[i - 1];
    p[i - 1] = p[j];
    p[j] = t;
    for (size_t a = i, b = n - 1; a < b; a++, b--) {
        t = p[a];
        p[a] = p[b];
        p[b] = t;
    }
    return 1;
}

/* Keys chosen so their hashes collide in a small table: long probe runs that wrap
 * around the end of the table, the case backward-shift deletion gets wrong first.
 * With at most 7 keys the table stays at 16 slots (load <= 1/2). Four keys live at
 * home 14/15 and three at home 0/1, so the run 14..4 wraps and mixes members that may
 * and may not move back across the wrap. Every one of the 7! deletion orders, for two
 * insertion orders, must leave every remaining key findable. */
static void test_delete_colliding_keys(void **state) {
    (void)state;
    enum { WANT = 7, HIGH = 4, CANDIDATES = 100000 };
    char *keys = make_keys(CANDIDATES, "c");
    size_t picked[WANT], nhigh = 0, nlow = 0;
    for (size_t i = 0; i < CANDIDATES && nhigh + nlow < WANT; i++) {
        uint64_t home = dict_hash(KEY(keys, i), strlen(KEY(keys, i))) & 15;
        if (home >= 14 && nhigh < HIGH)
            picked[nhigh++] = i;
        else if (home <= 1 && nlow < WANT - HIGH)
            picked[HIGH + nlow++] = i;
    }
    assert_int_equal(nhigh + nlow, WANT);
    size_t orders = 0;
    for (int reversed = 0; reversed < 2; reversed++) {
        size_t perm[WANT];
        for (size_t k = 0; k < WANT; k++)
            perm[k] = k;
        do {
            dict *d = dict_new();
            assert_non_null(d);
            for (size_t k = 0; k < WANT; k++) {
                size_t i = picked[reversed ? WANT - 1 - k : k];
                assert_int_equal(dict_put(d, KEY(keys, i), strlen(KEY(keys, i)), val(i)), 0);
            }
            char gone[WANT] = {0};
            for (size_t k = 0; k < WANT; k++) {
                size_t i = picked[perm[k]];
                assert_ptr_equal(dict_del(d, KEY(keys, i), strlen(KEY(keys, i))), val(i));
                gone[perm[k]] = 1;
                for (size_t j = 0; j < WANT; j++) {
                    void *v = dict_get(d, KEY(keys, picked[j]), strlen(KEY(keys, picked[j])));
                    if (gone[j])
                        assert_null(v);
                    else
                        assert_ptr_equal(v, val(picked[j]));
                }
            }
            assert_int_equal(dict_size(d), 0);
            dict_free(d);
            orders++;
        } while (next_perm(perm, WANT));
    }
    assert_int_equal(orders, 2 * 5040);
    free(keys);
}

static void test_interleaved_put_del(void **state) {
    (void)state;
    const size_t n = 5000;
    char *keys = make_keys(n, "x");
    dict *d = dict_new();
    char *in = calloc(n, 1);
    assert_non_null(in);
    size_t live = 0;
    uint64_t x = 12345;
    for (size_t step = 0; step < 200000; step++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t i = (size_t)(x % n);
        if (in[i]) {
            assert_ptr_equal(dict_del(d, KEY(keys, i), strlen(KEY(keys, i))), val(i));
            in[i] = 0;
            live--;
        } else {
            assert_int_equal(dict_put(d, KEY(keys, i), strlen(KEY(keys, i)), val(i)), 0);
            in[i] = 1;
            live++;
        }
        assert_int_equal(dict_size(d), live);
    }
    for (size_t i = 0; i < n; i++) {
        void *v = dict_get(d, KEY(keys, i), strlen(KEY(keys, i)));
        if (in[i])
            assert_ptr_equal(v, val(i));
        else
            assert_null(v);
    }
    free(in);
    dict_free(d);
    free(keys);
}

static void test_iteration_visits_each_once(void **state) {
    (void)state;
    const size_t n = 10000;
    char *keys = make_keys(n, "it");
    dict *d = dict_new();
    for (size_t i = 0; i < n; i++)
        assert_int_equal(dict_put(d, KEY(keys, i), strlen(KEY(keys, i)), val(i)), 0);
    /* Delete every third so the table has holes. */
    for (size_t i = 0; i < n; i += 3)
        assert_non_null(dict_del(d, KEY(keys, i), strlen(KEY(keys, i))));
    unsigned char *seen = calloc(n, 1);
    assert_non_null(seen);
    size_t pos = 0, count = 0;
    void *v;
    while ((v = dict_next(d, &pos)) != NULL) {
        size_t i = (size_t)(uintptr_t)v - 1;
        assert_true(i < n);
        assert_true(i % 3 != 0);
        assert_int_equal(seen[i], 0);
        seen[i] = 1;
        count++;
    }
    assert_int_equal(count, dict_size(d));
    assert_int_equal(count, n - (n + 2) / 3);
    /* At the end it stays at the end. */
    assert_null(dict_next(d, &pos));
    free(seen);
    dict_free(d);
    free(keys);
}

/* The reference vectors of SipHash: key 00 01 .. 0f, message 00 01 .. (len-1) for len 0..63,
 * 64-bit output. SipHash-2-4: vectors_sip64 of the reference implementation
 * (github.com/veorq/SipHash, vectors.h). SipHash-1-3, which dict_hash uses: the same
 * reference code built with cROUNDS=1, dROUNDS=3 (the table Rust's and Swift's SipHasher13
 * tests use; OpenSSL 3's SIPHASH with c-rounds:1 d-rounds:3 gives the same). Lengths 0..63
 * cover every tail length, and zero to seven whole blocks before it. */
static const uint64_t sip24_vectors[64] = {
    0x726fdb47dd0e0e31ULL, 0x74f839c593dc67fdULL, 0x0d6c8009d9a94f5aULL,
    0x85676696d7fb7e2dULL, 0xcf2794e0277187b7ULL, 0x18765564cd99a68dULL,
    0xcbc9466e58fee3ceULL, 0xab0200f58b01d137ULL, 0x93f5f5799a932462ULL,
    0x9e0082df0ba9e4b0ULL, 0x7a5dbbc594ddb9f3ULL, 0xf4b32f46226bada7ULL,
    0x751e8fbc860ee5fbULL, 0x14ea5627c0843d90ULL, 0xf723ca908e7af2eeULL,
    0xa129ca6149be45e5ULL, 0x3f2acc7f57c29bdbULL, 0x699ae9f52cbe4794ULL,
    0x4bc1b3f0968dd39cULL, 0xbb6dc91da77961bdULL, 0xbed65cf21aa2ee98ULL,
    0xd0f2cbb02e3b67c7ULL, 0x93536795e3a33e88ULL, 0xa80c038ccd5ccec8ULL,
    0xb8ad50c6f649af94ULL, 0xbce192de8a85b8eaULL, 0x17d835b85bbb15f3ULL,
    0x2f2e6163076bcfadULL, 0xde4daaaca71dc9a5ULL, 0xa6a2506687956571ULL,
    0xad87a3535c49ef28ULL, 0x32d892fad841c342ULL, 0x7127512f72f27cceULL,
    0xa7f32346f95978e3ULL, 0x12e0b01abb051238ULL, 0x15e034d40fa197aeULL,
    0x314dffbe0815a3b4ULL, 0x027990f029623981ULL, 0xcadcd4e59ef40c4dULL,
    0x9abfd8766a33735cULL, 0x0e3ea96b5304a7d0ULL, 0xad0c42d6fc585992ULL,
    0x187306c89bc215a9ULL, 0xd4a60abcf3792b95ULL, 0xf935451de4f21df2ULL,
    0xa9538f0419755787ULL, 0xdb9acddff56ca510ULL, 0xd06c98cd5c0975ebULL,
    0xe612a3cb9ecba951ULL, 0xc766e62cfcadaf96ULL, 0xee64435a9752fe72ULL,
    0xa192d576b245165aULL, 0x0a8787bf8ecb74b2ULL, 0x81b3e73d20b49b6fULL,
    0x7fa8220ba3b2eceaULL, 0x245731c13ca42499ULL, 0xb78dbfaf3a8d83bdULL,
    0xea1ad565322a1a0bULL, 0x60e61c23a3795013ULL, 0x6606d7e446282b93ULL,
    0x6ca4ecb15c5f91e1ULL, 0x9f626da15c9625f3ULL, 0xe51b38608ef25f57ULL,
    0x958a324ceb064572ULL,
};

static const uint64_t sip13_vectors[64] = {
    0xabac0158050fc4dcULL, 0xc9f49bf37d57ca93ULL, 0x82cb9b024dc7d44dULL,
    0x8bf80ab8e7ddf7fbULL, 0xcf75576088d38328ULL, 0xdef9d52f49533b67ULL,
    0xc50d2b50c59f22a7ULL, 0xd3927d989bb11140ULL, 0x369095118d299a8eULL,
    0x25a48eb36c063de4ULL, 0x79de85ee92ff097fULL, 0x70c118c1f94dc352ULL,
    0x78a384b157b4d9a2ULL, 0x306f760c1229ffa7ULL, 0x605aa111c0f95d34ULL,
    0xd320d86d2a519956ULL, 0xcc4fdd1a7d908b66ULL, 0x9cf2689063dbd80cULL,
    0x8ffc389cb473e63eULL, 0xf21f9de58d297d1cULL, 0xc0dc2f46a6cce040ULL,
    0xb992abfe2b45f844ULL, 0x7ffe7b9ba320872eULL, 0x525a0e7fdae6c123ULL,
    0xf464aeb267349c8cULL, 0x45cd5928705b0979ULL, 0x3a3e35e3ca9913a5ULL,
    0xa91dc74e4ade3b35ULL, 0xfb0bed02ef6cd00dULL, 0x88d93cb44ab1e1f4ULL,
    0x540f11d643c5e663ULL, 0x2370dd1f8c21d1bcULL, 0x81157b6c16a7b60dULL,
    0x4d54b9e57a8ff9bfULL, 0x759f12781f2a753eULL, 0xcea1a3bebf186b91ULL,
    0x2cf508d3ada26206ULL, 0xb6101c2da3c33057ULL, 0xb3f47496ae3a36a1ULL,
    0x626b57547b108392ULL, 0xc1d2363299e41531ULL, 0x667cc1923f1ad944ULL,
    0x65704ffec8138825ULL, 0x24f280d1c28949a6ULL, 0xc2ca1cedfaf8876bULL,
    0xc2164bfc9f042196ULL, 0xa16e9c9368b1d623ULL, 0x49fb169c8b5114fdULL,
    0x9f3143f8df074c46ULL, 0xc6fdaf2412cc86b3ULL, 0x7eaf49d10a52098fULL,
    0x1cf313559d292f9aULL, 0xc44a30dda2f41f12ULL, 0x36fae98943a71ed0ULL,
    0x318fb34c73f0bce6ULL, 0xa27abf3670a7e980ULL, 0xb4bcc0db243c6d75ULL,
    0x23f8d852fdb71513ULL, 0x8f035f4da67d8a08ULL, 0xd89cd0e5b7e8f148ULL,
    0xf6f4e6bcf7a644eeULL, 0xaec59ad80f1837f2ULL, 0xc3b2f6154b6694e0ULL,
    0x9d199062b7bbb3a8ULL,
};

static void reference_input(unsigned char key[16], unsigned char msg[64]) {
    for (int i = 0; i < 16; i++)
        key[i] = (unsigned char)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (unsigned char)i;
}

static void test_siphash24_reference_vectors(void **state) {
    (void)state;
    unsigned char key[16], msg[64];
    reference_input(key, msg);
    for (size_t len = 0; len < 64; len++) {
        uint64_t h = dict_siphash24_with_key(key, msg, len);
        if (h != sip24_vectors[len])
            fail_msg("SipHash-2-4 of %zu bytes: %016llx, want %016llx", len,
                     (unsigned long long)h, (unsigned long long)sip24_vectors[len]);
    }
}

static void test_siphash13_reference_vectors(void **state) {
    (void)state;
    unsigned char key[16], msg[64];
    reference_input(key, msg);
    for (size_t len = 0; len < 64; len++) {
        uint64_t h = dict_siphash_with_key(key, msg, len);
        if (h != sip13_vectors[len])
            fail_msg("SipHash-1-3 of %zu bytes: %016llx, want %016llx", len,
                     (unsigned long long)h, (unsigned long long)sip13_vectors[len]);
    }
    /* The input need not be aligned. */
    unsigned char buf[80];
    for (size_t off = 1; off < 8; off++) {
        memcpy(buf + off, msg, 64);
        assert_true(dict_siphash_with_key(key, buf + off, 63) == sip13_vectors[63]);
    }
}

/* The old unkeyed FNV-1a 64 that dict_hash was before issue 10 (hash flooding), for the
 * flood tests and the benchmark. */
static uint64_t fnv1a64(const char *key, size_t len) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* dict_hash is keyed: stable within the process, and neither the unkeyed FNV-1a it
 * replaced nor SipHash under the all-zero key (the chance that a random key gives equal
 * values for all three inputs is 2^-192). */
static void test_hash_is_keyed(void **state) {
    (void)state;
    static const char *in[] = {"", "a", "timestamp"};
    static const unsigned char zero[16];
    int same_fnv = 0, same_zero = 0;
    for (size_t i = 0; i < 3; i++) {
        size_t len = strlen(in[i]);
        uint64_t h = dict_hash(in[i], len);
        assert_true(h != 0);
        assert_true(dict_hash(in[i], len) == h);
        same_fnv += h == fnv1a64(in[i], len);
        same_zero += h == dict_siphash_with_key(zero, in[i], len);
    }
    assert_true(same_fnv < 3);
    assert_true(same_zero < 3);
}

/* n distinct names of [a-z0-9] whose FNV-1a 64 hashes all have the same low 16 bits, so
 * under the old hash they all had one home slot in any table of up to 65536 slots (each
 * name KEY_LEN bytes in one block; the caller frees it). The low 16 bits of FNV-1a depend
 * only on the low 16 bits of its state, and that step is invertible (the prime is odd), so
 * every 3-character suffix needs exactly one state before it to end on the target: a
 * table of those states, and prefixes "f<i>-" until n of them have a matching state. */
static char *fnv_flood_names(size_t n) {
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    const uint16_t target = 0x5eed, prime = 0x01b3; /* FNV prime mod 2^16 */
    uint16_t inv = prime;
    for (int i = 0; i < 4; i++)
        inv = (uint16_t)(inv * (uint16_t)(2 - prime * inv)); /* Newton: prime^-1 mod 2^16 */
    int32_t *suffix_for = malloc(65536 * sizeof(*suffix_for));
    assert_non_null(suffix_for);
    for (size_t i = 0; i < 65536; i++)
        suffix_for[i] = -1;
    for (int32_t sfx = 0; sfx < 36 * 36 * 36; sfx++) {
        uint16_t st = target;
        for (int pos = 2; pos >= 0; pos--) { /* undo the suffix's bytes, last first */
            int c = alnum[(sfx / (pos == 0 ? 1 : pos == 1 ? 36 : 1296)) % 36];
            st = (uint16_t)((uint16_t)(st * inv) ^ (unsigned char)c);
        }
        suffix_for[st] = sfx;
    }
    char *keys = malloc(n * KEY_LEN);
    assert_non_null(keys);
    size_t have = 0;
    for (size_t i = 0; have < n; i++) {
        char *k = KEY(keys, have);
        int w = snprintf(k, KEY_LEN, "f%zu-", i);
        int32_t sfx = suffix_for[(uint16_t)fnv1a64(k, (size_t)w)];
        if (sfx < 0)
            continue;
        k[w] = alnum[sfx % 36];
        k[w + 1] = alnum[(sfx / 36) % 36];
        k[w + 2] = alnum[(sfx / 1296) % 36];
        k[w + 3] = '\0';
        assert_int_equal(fnv1a64(k, strlen(k)) & 0xffff, target);
        have++;
    }
    free(suffix_for);
    return keys;
}

/* Issue 10: names that all collided under the old FNV-1a spread out under dict_hash (2000
 * random values in 65536 slots give about 1970 distinct ones), and a map of them works
 * like any other: every name found, deletions in random order (backward shift), iteration. */
static void test_fnv_flood_names_spread(void **state) {
    (void)state;
    const size_t n = 2000;
    char *keys = fnv_flood_names(n);
    unsigned char *home = calloc(65536, 1);
    assert_non_null(home);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = dict_hash(KEY(keys, i), strlen(KEY(keys, i))) & 0xffff;
        distinct += !home[h];
        home[h] = 1;
    }
    assert_true(distinct > 1800);
    free(home);

    dict *d = dict_new();
    assert_non_null(d);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(dict_put(d, KEY(keys, i), strlen(KEY(keys, i)), val(i)), 0);
    assert_int_equal(dict_size(d), n);
    for (size_t i = 0; i < n; i++)
        assert_ptr_equal(dict_get(d, KEY(keys, i), strlen(KEY(keys, i))), val(i));
    size_t *order = shuffled(n, 0xD1B54A32D192ED03ULL);
    char *gone = calloc(n, 1);
    assert_non_null(gone);
    for (size_t k = 0; k < n / 2; k++) {
        size_t i = order[k];
        assert_ptr_equal(dict_del(d, KEY(keys, i), strlen(KEY(keys, i))), val(i));
        gone[i] = 1;
    }
    for (size_t i = 0; i < n; i++) {
        void *v = dict_get(d, KEY(keys, i), strlen(KEY(keys, i)));
        if (gone[i])
            assert_null(v);
        else
            assert_ptr_equal(v, val(i));
    }
    size_t pos = 0, count = 0;
    void *v;
    while ((v = dict_next(d, &pos)) != NULL) {
        size_t i = (size_t)(uintptr_t)v - 1;
        assert_true(i < n && !gone[i]);
        gone[i] = 2; /* seen */
        count++;
    }
    assert_int_equal(count, n - n / 2);
    assert_int_equal(dict_size(d), count);
    free(gone);
    free(order);
    dict_free(d);
    free(keys);
}

/* --- micro benchmark: DICT_BENCH=1 build/tests/test_dict (skipped otherwise) ------------ */

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ns per call of f over n 12-byte keys "svc-NNNNNNNN" (4096 of them, in turn). */
static double bench_hash(uint64_t (*f)(const char *, size_t), size_t n, uint64_t *sink) {
    static char keys[4096][16];
    for (size_t i = 0; i < 4096; i++)
        snprintf(keys[i], sizeof(keys[i]), "svc-%08zu", i * 7919);
    uint64_t acc = 0;
    double t0 = now_ns();
    for (size_t i = 0; i < n; i++)
        acc += f(keys[i & 4095], 12);
    double ns = (now_ns() - t0) / (double)n;
    *sink += acc;
    return ns;
}

static uint64_t bench_sip24(const char *key, size_t len) {
    static const unsigned char k[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    return dict_siphash24_with_key(k, key, len);
}

/* OpenSSL's SipHash through EVP_MAC, as a per-lookup hash would have to call it: a context
 * per call (reuse = 0) or one context re-initialised with the key per call (reuse = 1). */
static double bench_evp(size_t n, int reuse, uint64_t *sink) {
    static const unsigned char k[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
    if (mac == NULL)
        return -1;
    unsigned int size = 8, crounds = 1, drounds = 3;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_uint("size", &size),
        OSSL_PARAM_construct_uint("c-rounds", &crounds),
        OSSL_PARAM_construct_uint("d-rounds", &drounds),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC_CTX *ctx = reuse ? EVP_MAC_CTX_new(mac) : NULL;
    char key[13];
    memcpy(key, "svc-00000000", 13);
    uint64_t acc = 0;
    double t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        key[11] = (char)('0' + i % 10);
        EVP_MAC_CTX *c = reuse ? ctx : EVP_MAC_CTX_new(mac);
        unsigned char out[8];
        size_t outl = 0;
        if (c == NULL || !EVP_MAC_init(c, k, sizeof(k), params) ||
            !EVP_MAC_update(c, (const unsigned char *)key, 12) ||
            !EVP_MAC_final(c, out, &outl, sizeof(out)))
            fail_msg("EVP_MAC SipHash failed");
        acc += out[0];
        if (!reuse)
            EVP_MAC_CTX_free(c);
    }
    double ns = (now_ns() - t0) / (double)n;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    *sink += acc;
    return ns;
}

/* The fastest of five rounds of each (10M hashes each; 1M through EVP_MAC), so a busy
 * machine disturbs the figures less. */
static void test_hash_speed(void **state) {
    (void)state;
    const char *env = getenv("DICT_BENCH");
    if (env == NULL || strcmp(env, "1") != 0)
        skip(); /* timing is reported, never asserted */
    const size_t n = 10000000;
    uint64_t sink = 0;
    double best[5] = {1e9, 1e9, 1e9, 1e9, 1e9};
    for (int round = 0; round < 5; round++) {
        double t[5] = {
            bench_hash(fnv1a64, n, &sink),
            bench_hash(dict_hash, n, &sink),
            bench_hash(bench_sip24, n, &sink),
            bench_evp(n / 10, 0, &sink),
            bench_evp(n / 10, 1, &sink),
        };
        for (int i = 0; i < 5; i++)
            best[i] = t[i] < best[i] ? t[i] : best[i];
    }
    fprintf(stderr, "# 12-byte keys, ns/hash (best of 5): FNV-1a %.2f  SipHash-1-3 (dict_hash) "
            "%.2f  SipHash-2-4 %.2f  EVP_MAC SipHash-1-3: ctx per call %.1f, reused ctx %.1f"
            "  (sink %llu)\n", best[0], best[1], best[2], best[3], best[4],
            (unsigned long long)(sink & 1));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_is_empty),
        cmocka_unit_test(test_put_get_del),
        cmocka_unit_test(test_replace_keeps_size),
        cmocka_unit_test(test_length_is_part_of_key),
        cmocka_unit_test(test_longest_key),
        cmocka_unit_test(test_growth_to_100k),
        cmocka_unit_test(test_delete_random_order_keeps_chains),
        cmocka_unit_test(test_delete_colliding_keys),
        cmocka_unit_test(test_interleaved_put_del),
        cmocka_unit_test(test_iteration_visits_each_once),
        cmocka_unit_test(test_siphash24_reference_vectors),
        cmocka_unit_test(test_siphash13_reference_vectors),
        cmocka_unit_test(test_hash_is_keyed),
        cmocka_unit_test(test_fnv_flood_names_spread),
        cmocka_unit_test(test_hash_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
