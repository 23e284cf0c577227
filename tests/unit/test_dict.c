/* test_dict.c — unit tests of the string-keyed hash map (registry/base/dict.c) with cmocka.
 *
 * Keys are borrowed by the map, so every test keeps its keys in arrays that outlive the
 * map. Deletion uses backward shift (no tombstones): the tests that matter most delete
 * from the middle of long probe runs, in random order, and check that every remaining
 * key is still found and every deleted one is not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

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

/* Regression: dict_hash once had its offset basis a digit short (1469598103934665603
 * instead of 14695981039346656037), so it was not the FNV-1a dict.h promises. Fixed in
 * 502e623. */
static void test_hash_fnv1a(void **state) {
    (void)state;
    /* FNV-1a 64 test vectors. */
    assert_true(dict_hash("", 0) == 0xcbf29ce484222325ULL);
    assert_true(dict_hash("a", 1) == 0xaf63dc4c8601ec8cULL);
    assert_true(dict_hash("foobar", 6) == 0x85944171f73967e8ULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_is_empty),
        cmocka_unit_test(test_put_get_del),
        cmocka_unit_test(test_replace_keeps_size),
        cmocka_unit_test(test_length_is_part_of_key),
        cmocka_unit_test(test_growth_to_100k),
        cmocka_unit_test(test_delete_random_order_keeps_chains),
        cmocka_unit_test(test_delete_colliding_keys),
        cmocka_unit_test(test_interleaved_put_del),
        cmocka_unit_test(test_iteration_visits_each_once),
        cmocka_unit_test(test_hash_fnv1a),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
