/* SPDX-License-Identifier: BSD-2-Clause */
/* test_cache.c — unit tests of the in-memory catalog (registry/core/catalog.c), the
 * generation-checked LRU cache (registry/base/cache.c) and the lookup sets the core keeps
 * in it (registry/core/lookup.c) with cmocka.
 *
 * The catalog is built with cat_put from store_instance records, as the core's apply
 * path does at start and after each commit. The cache tests build entries by hand; what
 * matters here is ownership, generations and LRU order.
 * Run under valgrind to check ownership: every answer is freed exactly once.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/cache.h"
#include "core/catalog.h"
#include "core/lookup.h"
#include "store/store.h"

/* ---------------------------------------------------------------------------------- */
/* Helpers                                                                             */

/* A store record; strings are borrowed from the arguments (literals in these tests). */
static store_instance rec(const char *id, const char *service, const char *host, int port,
                          int status) {
    store_instance si;
    memset(&si, 0, sizeof si);
    snprintf(si.id, sizeof si.id, "%s", id);
    si.service = service;
    si.host = host;
    si.port = port;
    si.description = "";
    si.tags_json = "[]";
    si.check = STORE_CHECK_TCP;
    si.registered_at = 1700000000000;
    si.status = status;
    memset(si.token_hash, 0xAB, sizeof si.token_hash);
    return si;
}

static cat_instance *put(catalog *c, const char *id, const char *service, const char *host,
                         int port, int status) {
    store_instance si = rec(id, service, host, port, status);
    cat_instance *in = NULL;
    assert_int_equal(cat_put(c, &si, NULL, &in), 0);
    assert_non_null(in);
    return in;
}

static uint64_t gen_of(const catalog *c, const char *service) {
    cat_service *s = cat_service_get(c, service, strlen(service));
    assert_non_null(s);
    return s->gen;
}

/* A hand-built entry for key; every field the cache frees is allocated, so a leak or
 * double free shows under valgrind / ASan. */
typedef struct test_entry {
    cache_entry base;
    char *payload;
} test_entry;

static void entry_free(cache_entry *e) {
    free(((test_entry *)e)->payload);
    free(e->key);
    free(e);
}

static cache_entry *answer(const char *key, uint64_t gen) {
    test_entry *a = calloc(1, sizeof *a);
    assert_non_null(a);
    a->base.key_len = strlen(key);
    a->base.key = malloc(a->base.key_len + 1);
    assert_non_null(a->base.key);
    memcpy(a->base.key, key, a->base.key_len + 1);
    a->base.gen = gen;
    a->base.free_fn = entry_free;
    a->payload = strdup("\"instances\":[]}\n");
    assert_non_null(a->payload);
    return &a->base;
}

/* The string member key of o; fails the test (instead of crashing) when absent. */
static const char *jstr(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        fail_msg("member \"%s\" is not a string", key);
    return json_string_value(v);
}

static cache_stats stats(const cache *c) {
    cache_stats st;
    cache_get_stats(c, &st);
    return st;
}

/* ---------------------------------------------------------------------------------- */
/* Catalog                                                                             */

static void test_cat_new_empty(void **state) {
    (void)state;
    catalog *c = cat_new();
    assert_non_null(c);
    assert_int_equal(cat_services(c), 0);
    assert_int_equal(cat_instances(c), 0);
    assert_null(cat_by_id(c, "0000000000000001"));
    assert_null(cat_by_key(c, "web", "127.0.0.1", 80));
    assert_null(cat_service_get(c, "web", 3));
    size_t pos = 0;
    assert_null(cat_next_instance(c, &pos));
    cat_free(c);
    cat_free(NULL);
}

static void test_cat_put_indexes(void **state) {
    (void)state;
    catalog *c = cat_new();
    cat_instance *a = put(c, "000000000000000a", "web", "10.0.0.1", 80, STORE_PASSING);
    cat_instance *b = put(c, "000000000000000b", "web", "10.0.0.2", 80, STORE_PASSING);
    cat_instance *d = put(c, "000000000000000d", "db", "10.0.0.1", 5432, STORE_PASSING);
    assert_int_equal(cat_services(c), 2);
    assert_int_equal(cat_instances(c), 3);
    assert_ptr_equal(cat_by_id(c, "000000000000000a"), a);
    assert_ptr_equal(cat_by_id(c, "000000000000000b"), b);
    assert_ptr_equal(cat_by_id(c, "000000000000000d"), d);
    assert_null(cat_by_id(c, "000000000000000c"));
    assert_ptr_equal(cat_by_key(c, "web", "10.0.0.1", 80), a);
    assert_ptr_equal(cat_by_key(c, "web", "10.0.0.2", 80), b);
    assert_ptr_equal(cat_by_key(c, "db", "10.0.0.1", 5432), d);
    assert_null(cat_by_key(c, "web", "10.0.0.1", 81));
    assert_null(cat_by_key(c, "db", "10.0.0.2", 5432));
    cat_service *web = cat_service_get(c, "web", 3);
    assert_non_null(web);
    assert_string_equal(web->name, "web");
    assert_int_equal(web->n, 2);
    assert_ptr_equal(web->inst[0], a); /* registration order */
    assert_ptr_equal(web->inst[1], b);
    assert_int_equal(a->slot, 0);
    assert_int_equal(b->slot, 1);
    assert_ptr_equal(a->svc, web);
    assert_string_equal(a->host, "10.0.0.1");
    assert_int_equal(a->port, 80);
    assert_string_equal(a->description, "");
    cat_free(c);
}

static void test_cat_passing_counts(void **state) {
    (void)state;
    catalog *c = cat_new();
    put(c, "0000000000000001", "web", "h1", 1, STORE_PASSING);
    cat_instance *b = put(c, "0000000000000002", "web", "h2", 1, STORE_CRITICAL);
    cat_instance *d = put(c, "0000000000000003", "web", "h3", 1, STORE_PASSING);
    cat_service *s = cat_service_get(c, "web", 3);
    assert_int_equal(s->n, 3);
    assert_int_equal(s->passing, 2);
    cat_set_status(b, STORE_PASSING);
    assert_int_equal(s->passing, 3);
    cat_set_status(d, STORE_CRITICAL);
    cat_set_status(b, STORE_CRITICAL);
    assert_int_equal(s->passing, 1);
    cat_set_status(b, STORE_CRITICAL); /* no change, no double count */
    assert_int_equal(s->passing, 1);
    cat_remove(c, d); /* a critical one leaves: passing unchanged */
    assert_int_equal(s->passing, 1);
    assert_int_equal(s->n, 2);
    cat_free(c);
}

static void test_cat_generation_changes_on_put(void **state) {
    (void)state;
    catalog *c = cat_new();
    put(c, "0000000000000001", "web", "h1", 1, STORE_PASSING);
    uint64_t g1 = gen_of(c, "web");
    put(c, "0000000000000002", "web", "h2", 1, STORE_PASSING);
    uint64_t g2 = gen_of(c, "web");
    assert_true(g2 != g1);
    /* Re-registration (same id) is a change too. */
    put(c, "0000000000000001", "web", "h1", 1, STORE_PASSING);
    assert_true(gen_of(c, "web") != g2);
    assert_true(gen_of(c, "web") != g1);
    cat_free(c);
}

static void test_cat_generation_changes_on_remove(void **state) {
    (void)state;
    catalog *c = cat_new();
    put(c, "0000000000000001", "web", "h1", 1, STORE_PASSING);
    cat_instance *b = put(c, "0000000000000002", "web", "h2", 1, STORE_PASSING);
    uint64_t g = gen_of(c, "web");
    cat_remove(c, b);
    assert_true(gen_of(c, "web") != g);
    cat_free(c);
}

static void test_cat_generation_changes_on_status(void **state) {
    (void)state;
    catalog *c = cat_new();
    cat_instance *a = put(c, "0000000000000001", "web", "h1", 1, STORE_PASSING);
    uint64_t g = gen_of(c, "web");
    cat_set_status(a, STORE_PASSING); /* same status: nothing changed */
    assert_true(gen_of(c, "web") == g);
    cat_set_status(a, STORE_CRITICAL);
    uint64_t g2 = gen_of(c, "web");
    assert_true(g2 != g);
    cat_set_status(a, STORE_PASSING);
    assert_true(gen_of(c, "web") != g2);
    assert_true(gen_of(c, "web") != g);
    cat_free(c);
}

static void test_cat_generation_is_per_service(void **state) {
    (void)state;
    catalog *c = cat_new();
    put(c, "0000000000000001", "web", "h1", 1, STORE_PASSING);
    put(c, "0000000000000002", "db", "h1", 2, STORE_PASSING);
    uint64_t gw = gen_of(c, "web");
    put(c, "0000000000000003", "db", "h2", 2, STORE_PASSING);
    assert_true(gen_of(c, "web") == gw);
    cat_free(c);
}

static void test_cat_reput_same_id_updates_in_place(void **state) {
    (void)state;
    catalog *c = cat_new();
    cat_instance *a = put(c, "0000000000000001", "web", "h1", 80, STORE_CRITICAL);
    store_instance si = rec("0000000000000001", "web", "h1", 80, STORE_PASSING);
    si.description = "new";
    si.tags_json = "[\"eu\"]";
    si.ttl = 30;
    cat_instance *again = NULL;
    assert_int_equal(cat_put(c, &si, NULL, &again), 0);
    assert_ptr_equal(again, a);
    assert_int_equal(cat_instances(c), 1);
    assert_int_equal(cat_services(c), 1);
    assert_string_equal(a->description, "new");
    assert_int_equal(a->ttl, 30);
    assert_int_equal(cat_has_tag(a, "eu"), 1);
    assert_int_equal(a->svc->passing, 1);
    assert_ptr_equal(cat_by_key(c, "web", "h1", 80), a);
    cat_free(c);
}

static void test_cat_remove_keeps_order(void **state) {
    (void)state;
    catalog *c = cat_new();
    cat_instance *in[4];
    static const char *const ids[] = {"0000000000000001", "0000000000000002", "0000000000000003",
                                      "0000000000000004"};
    static const char *const hosts[] = {"h1", "h2", "h3", "h4"};
    for (int i = 0; i < 4; i++)
        in[i] = put(c, ids[i], "web", hosts[i], 1, STORE_PASSING);
    cat_remove(c, in[1]);
    cat_service *s = cat_service_get(c, "web", 3);
    assert_int_equal(s->n, 3);
    assert_ptr_equal(s->inst[0], in[0]);
    assert_ptr_equal(s->inst[1], in[2]);
    assert_ptr_equal(s->inst[2], in[3]);
    for (size_t i = 0; i < s->n; i++)
        assert_int_equal(s->inst[i]->slot, i);
    assert_null(cat_by_id(c, ids[1]));
    assert_null(cat_by_key(c, "web", "h2", 1));
    assert_ptr_equal(cat_by_id(c, ids[3]), in[3]);
    assert_int_equal(s->passing, 3);
    assert_int_equal(cat_instances(c), 3);
    cat_free(c);
}

static void test_cat_service_removed_with_last_instance(void **state) {
    (void)state;
    catalog *c = cat_new();
    cat_instance *a = put(c, "0000000000000001", "web", "h1", 1, STORE_PASSING);
    cat_instance *b = put(c, "0000000000000002", "web", "h2", 1, STORE_PASSING);
    put(c, "0000000000000003", "db", "h1", 1, STORE_PASSING);
    cat_remove(c, a);
    assert_non_null(cat_service_get(c, "web", 3));
    assert_int_equal(cat_services(c), 2);
    cat_remove(c, b);
    assert_null(cat_service_get(c, "web", 3));
    assert_int_equal(cat_services(c), 1);
    assert_int_equal(cat_instances(c), 1);
    size_t n = 0;
    cat_service **all = cat_sorted_services(c, &n);
    assert_non_null(all);
    assert_int_equal(n, 1);
    assert_string_equal(all[0]->name, "db");
    free(all);
    cat_free(c);
}

static void test_cat_recreated_service_gets_fresh_generation(void **state) {
    (void)state;
    catalog *c = cat_new();
    uint64_t seen[64];
    size_t nseen = 0;
    /* Churn: "web" is created and destroyed repeatedly; others change in between. */
    for (int round = 0; round < 8; round++) {
        cat_instance *a = put(c, "0000000000000001", "web", "h1", 1, STORE_PASSING);
        seen[nseen++] = gen_of(c, "web");
        cat_set_status(a, STORE_CRITICAL);
        seen[nseen++] = gen_of(c, "web");
        cat_remove(c, a);
        assert_null(cat_service_get(c, "web", 3));
        cat_instance *o = put(c, "0000000000000002", "other", "h1", 1, STORE_PASSING);
        cat_remove(c, o);
    }
    put(c, "0000000000000009", "web", "h9", 9, STORE_PASSING);
    uint64_t g = gen_of(c, "web");
    for (size_t i = 0; i < nseen; i++)
        assert_true(g != seen[i]);
    for (size_t i = 0; i < nseen; i++)
        for (size_t j = i + 1; j < nseen; j++)
            assert_true(seen[i] != seen[j]);
    cat_free(c);
}

static void test_cat_put_bad_tags_json(void **state) {
    (void)state;
    catalog *c = cat_new();
    store_instance si = rec("0000000000000001", "web", "h1", 1, STORE_PASSING);
    cat_instance *in = NULL;
    si.tags_json = "{\"not\":\"an array\"}";
    assert_int_equal(cat_put(c, &si, NULL, &in), -EINVAL);
    si.tags_json = "[unterminated";
    assert_int_equal(cat_put(c, &si, NULL, &in), -EINVAL);
    assert_int_equal(cat_instances(c), 0);
    assert_int_equal(cat_services(c), 0);
    assert_null(cat_by_id(c, "0000000000000001"));
    /* A bad update leaves the existing instance as it was. */
    cat_instance *a = put(c, "0000000000000001", "web", "h1", 1, STORE_PASSING);
    uint64_t g = gen_of(c, "web");
    assert_int_equal(cat_put(c, &si, NULL, &in), -EINVAL);
    assert_ptr_equal(cat_by_id(c, "0000000000000001"), a);
    assert_string_equal(a->tags_json, "[]");
    assert_true(gen_of(c, "web") == g);
    cat_free(c);
}

static void test_cat_sorted_services(void **state) {
    (void)state;
    catalog *c = cat_new();
    static const char *const names[] = {"zeta", "alpha", "mid", "alpha2", "0first"};
    static const char *const ids[] = {"0000000000000001", "0000000000000002", "0000000000000003",
                                      "0000000000000004", "0000000000000005"};
    for (int i = 0; i < 5; i++)
        put(c, ids[i], names[i], "h", 1, STORE_PASSING);
    size_t n = 0;
    cat_service **all = cat_sorted_services(c, &n);
    assert_non_null(all);
    assert_int_equal(n, 5);
    static const char *const want[] = {"0first", "alpha", "alpha2", "mid", "zeta"};
    for (size_t i = 0; i < n; i++)
        assert_string_equal(all[i]->name, want[i]);
    free(all);
    cat_free(c);
}

static void test_cat_next_instance_visits_all(void **state) {
    (void)state;
    catalog *c = cat_new();
    char ids[50][STORE_ID_MAX + 1], hosts[50][16];
    for (int i = 0; i < 50; i++) {
        snprintf(ids[i], sizeof ids[i], "%016x", i + 1);
        snprintf(hosts[i], sizeof hosts[i], "h%d", i);
        put(c, ids[i], i % 2 ? "odd" : "even", hosts[i], 1000 + i, STORE_PASSING);
    }
    int seen[50] = {0};
    size_t pos = 0, count = 0;
    cat_instance *in;
    while ((in = cat_next_instance(c, &pos)) != NULL) {
        int i = in->port - 1000;
        assert_true(i >= 0 && i < 50);
        assert_int_equal(seen[i], 0);
        seen[i] = 1;
        count++;
    }
    assert_int_equal(count, 50);
    cat_free(c);
}

static void test_cat_instance_json(void **state) {
    (void)state;
    catalog *c = cat_new();
    store_instance si = rec("00000000000000ff", "web", "::1", 8080, STORE_CRITICAL);
    si.description = "api";
    si.tags_json = "[\"eu\",\"v2\"]";
    si.ttl = 15;
    si.registered_at = 1700000000123; /* 2023-11-14T22:13:20.123Z */
    si.last_seen = 0;                 /* never */
    cat_instance *in = NULL;
    assert_int_equal(cat_put(c, &si, NULL, &in), 0);
    assert_int_equal(cat_has_tag(in, "v2"), 1);
    assert_int_equal(cat_has_tag(in, "us"), 0);
    json_t *o = cat_instance_json(in);
    assert_non_null(o);
    assert_string_equal(jstr(o, "id"), "00000000000000ff");
    assert_string_equal(jstr(o, "host"), "::1");
    assert_int_equal(json_integer_value(json_object_get(o, "port")), 8080);
    assert_string_equal(jstr(o, "description"), "api");
    assert_int_equal(json_array_size(json_object_get(o, "tags")), 2);
    assert_string_equal(jstr(o, "status"), "critical");
    assert_string_equal(jstr(o, "registered_at"),
                        "2023-11-14T22:13:20.123Z");
    assert_true(json_is_null(json_object_get(o, "last_seen"))); /* never */
    assert_true(json_is_null(json_object_get(o, "last_check")));
    assert_int_equal(json_integer_value(json_object_get(o, "failures")), 0);
    assert_string_equal(jstr(o, "check"), "tcp");
    assert_int_equal(json_integer_value(json_object_get(o, "ttl")), 15);
    json_decref(o);
    cat_free(c);
}

static void test_cat_to_store_round_trip(void **state) {
    (void)state;
    catalog *c = cat_new();
    store_instance si = rec("0000000000000042", "web", "h1", 81, STORE_PASSING);
    si.description = "d";
    si.tags_json = "[\"x\"]";
    si.ttl = 9;
    si.check = STORE_CHECK_NONE;
    si.last_seen = 5;
    si.last_check = 6;
    si.failures = 2;
    cat_instance *in = NULL;
    assert_int_equal(cat_put(c, &si, NULL, &in), 0);
    store_instance out;
    cat_to_store(in, &out);
    assert_string_equal(out.id, si.id);
    assert_string_equal(out.service, "web");
    assert_string_equal(out.host, "h1");
    assert_int_equal(out.port, 81);
    assert_string_equal(out.description, "d");
    assert_string_equal(out.tags_json, "[\"x\"]");
    assert_int_equal(out.ttl, 9);
    assert_int_equal(out.check, STORE_CHECK_NONE);
    assert_memory_equal(out.token_hash, si.token_hash, STORE_HASH_LEN);
    assert_int_equal(out.registered_at, si.registered_at);
    assert_int_equal(out.last_seen, 5);
    assert_int_equal(out.last_check, 6);
    assert_int_equal(out.status, STORE_PASSING);
    assert_int_equal(out.failures, 2);
    cat_free(c);
}

/* ---------------------------------------------------------------------------------- */
/* Cache                                                                               */

static void test_cache_miss_then_hit(void **state) {
    (void)state;
    cache *c = cache_new(4);
    assert_non_null(c);
    assert_null(cache_get(c, "web", 3, 1));
    cache_entry *a = answer("web", 1);
    assert_int_equal(cache_put(c, a), 1);
    assert_ptr_equal(cache_get(c, "web", 3, 1), a);
    assert_ptr_equal(cache_get(c, "web", 3, 1), a);
    assert_null(cache_get(c, "db", 2, 1));
    cache_stats st = stats(c);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.evictions, 0);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.capacity, 4);
    cache_free(c);
    cache_free(NULL);
}

static void test_cache_stale_generation_dropped(void **state) {
    (void)state;
    cache *c = cache_new(4);
    assert_int_equal(cache_put(c, answer("web", 5)), 1);
    assert_null(cache_get(c, "web", 3, 6)); /* the service changed: a miss */
    cache_stats st = stats(c);
    assert_int_equal(st.entries, 0);        /* ...and the old answer is gone */
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.hits, 0);
    assert_int_equal(st.evictions, 0);
    assert_null(cache_get(c, "web", 3, 5)); /* even for its own generation */
    cache_free(c);
}

static void test_cache_put_replaces_same_key(void **state) {
    (void)state;
    cache *c = cache_new(4);
    cache_entry *old = answer("web", 1), *fresh = answer("web", 2);
    assert_int_equal(cache_put(c, old), 1);
    assert_int_equal(cache_put(c, fresh), 1); /* old is freed by the cache */
    cache_stats st = stats(c);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.evictions, 0);
    assert_ptr_equal(cache_get(c, "web", 3, 2), fresh);
    cache_free(c);
}

static void test_cache_keys_are_bytes(void **state) {
    (void)state;
    /* Keys are "service\0tag\0all": embedded NULs separate different answers. */
    cache *c = cache_new(4);
    cache_entry *a = answer("xxx", 1), *b = answer("xxx", 1);
    memcpy(a->key, "w\0t", 3);
    a->key_len = 3;
    memcpy(b->key, "w\0u", 3);
    b->key_len = 3;
    assert_int_equal(cache_put(c, a), 1);
    assert_int_equal(cache_put(c, b), 1);
    assert_ptr_equal(cache_get(c, "w\0t", 3, 1), a);
    assert_ptr_equal(cache_get(c, "w\0u", 3, 1), b);
    assert_null(cache_get(c, "w", 1, 1));
    cache_free(c);
}

static void test_cache_lru_eviction_order(void **state) {
    (void)state;
    cache *c = cache_new(3);
    cache_entry *a = answer("a", 1), *b = answer("b", 1), *cc = answer("c", 1);
    assert_int_equal(cache_put(c, a), 1);
    assert_int_equal(cache_put(c, b), 1);
    assert_int_equal(cache_put(c, cc), 1); /* recency: c b a */
    assert_ptr_equal(cache_get(c, "a", 1, 1), a); /* a c b */
    assert_int_equal(cache_put(c, answer("d", 1)), 1); /* evicts b: d a c */
    cache_stats st = stats(c);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.entries, 3);
    assert_int_equal(cache_put(c, answer("e", 1)), 1); /* evicts c: e d a */
    st = stats(c);
    assert_int_equal(st.evictions, 2);
    assert_int_equal(st.entries, 3);
    assert_null(cache_get(c, "b", 1, 1));
    assert_null(cache_get(c, "c", 1, 1));
    assert_non_null(cache_get(c, "a", 1, 1)); /* a e d */
    assert_non_null(cache_get(c, "d", 1, 1)); /* d a e */
    assert_non_null(cache_get(c, "e", 1, 1)); /* e d a */
    assert_int_equal(cache_put(c, answer("f", 1)), 1); /* evicts a: f e d */
    assert_null(cache_get(c, "a", 1, 1));
    st = stats(c);
    assert_int_equal(st.evictions, 3);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.hits, 4);
    assert_int_equal(st.misses, 3);
    cache_free(c);
}

static void test_cache_stale_drop_is_not_eviction(void **state) {
    (void)state;
    cache *c = cache_new(2);
    assert_int_equal(cache_put(c, answer("a", 1)), 1);
    assert_int_equal(cache_put(c, answer("b", 1)), 1);
    assert_null(cache_get(c, "a", 1, 2)); /* stale: dropped, frees a slot */
    assert_int_equal(cache_put(c, answer("c", 1)), 1);
    cache_stats st = stats(c);
    assert_int_equal(st.evictions, 0);
    assert_int_equal(st.entries, 2);
    assert_non_null(cache_get(c, "b", 1, 1));
    assert_non_null(cache_get(c, "c", 1, 1));
    cache_free(c);
}

static void test_cache_capacity_zero_disabled(void **state) {
    (void)state;
    cache *c = cache_new(0);
    assert_non_null(c);
    cache_entry *a = answer("web", 1);
    assert_int_equal(cache_put(c, a), 0);
    /* Not cached: the caller still owns it, can read it, and frees it. */
    assert_string_equal(a->key, "web");
    assert_null(cache_get(c, "web", 3, 1));
    cache_stats st = stats(c);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.capacity, 0);
    assert_int_equal(st.hits, 0);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.evictions, 0);
    cache_entry_free(a);
    cache_entry_free(NULL);
    cache_free(c);
}

static void test_cache_capacity_one(void **state) {
    (void)state;
    cache *c = cache_new(1);
    for (int i = 0; i < 100; i++) {
        char k[8];
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(cache_put(c, answer(k, 1)), 1);
        assert_non_null(cache_get(c, k, strlen(k), 1));
    }
    cache_stats st = stats(c);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.evictions, 99);
    cache_free(c);
}

static void test_cache_many_entries_freed(void **state) {
    (void)state;
    /* Fill past capacity many times over; cache_free releases what remains (valgrind). */
    cache *c = cache_new(1000);
    for (int i = 0; i < 5000; i++) {
        char k[16];
        snprintf(k, sizeof k, "svc-%d", i);
        assert_int_equal(cache_put(c, answer(k, (uint64_t)i)), 1);
    }
    cache_stats st = stats(c);
    assert_int_equal(st.entries, 1000);
    assert_int_equal(st.evictions, 4000);
    assert_null(cache_get(c, "svc-3999", 8, 3999));  /* evicted */
    assert_non_null(cache_get(c, "svc-4000", 8, 4000));
    cache_free(c);
}

/* The contract between catalog and cache: an answer built before a change is never
 * served after it. */
static void test_cache_with_catalog_generations(void **state) {
    (void)state;
    catalog *cat = cat_new();
    cache *c = cache_new(8);
    cat_instance *a = put(cat, "0000000000000001", "web", "h1", 80, STORE_PASSING);
    uint64_t g = gen_of(cat, "web");
    assert_int_equal(cache_put(c, answer("web", g)), 1);
    assert_non_null(cache_get(c, "web", 3, gen_of(cat, "web")));
    cat_set_status(a, STORE_CRITICAL);
    assert_null(cache_get(c, "web", 3, gen_of(cat, "web")));
    assert_int_equal(cache_put(c, answer("web", gen_of(cat, "web"))), 1);
    put(cat, "0000000000000002", "web", "h2", 80, STORE_PASSING);
    assert_null(cache_get(c, "web", 3, gen_of(cat, "web")));
    assert_int_equal(cache_put(c, answer("web", gen_of(cat, "web"))), 1);
    cat_remove(cat, a);
    assert_null(cache_get(c, "web", 3, gen_of(cat, "web")));
    cache_free(c);
    cat_free(cat);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cat_new_empty),
        cmocka_unit_test(test_cat_put_indexes),
        cmocka_unit_test(test_cat_passing_counts),
        cmocka_unit_test(test_cat_generation_changes_on_put),
        cmocka_unit_test(test_cat_generation_changes_on_remove),
        cmocka_unit_test(test_cat_generation_changes_on_status),
        cmocka_unit_test(test_cat_generation_is_per_service),
        cmocka_unit_test(test_cat_reput_same_id_updates_in_place),
        cmocka_unit_test(test_cat_remove_keeps_order),
        cmocka_unit_test(test_cat_service_removed_with_last_instance),
        cmocka_unit_test(test_cat_recreated_service_gets_fresh_generation),
        cmocka_unit_test(test_cat_put_bad_tags_json),
        cmocka_unit_test(test_cat_sorted_services),
        cmocka_unit_test(test_cat_next_instance_visits_all),
        cmocka_unit_test(test_cat_instance_json),
        cmocka_unit_test(test_cat_to_store_round_trip),
        cmocka_unit_test(test_cache_miss_then_hit),
        cmocka_unit_test(test_cache_stale_generation_dropped),
        cmocka_unit_test(test_cache_put_replaces_same_key),
        cmocka_unit_test(test_cache_keys_are_bytes),
        cmocka_unit_test(test_cache_lru_eviction_order),
        cmocka_unit_test(test_cache_stale_drop_is_not_eviction),
        cmocka_unit_test(test_cache_capacity_zero_disabled),
        cmocka_unit_test(test_cache_capacity_one),
        cmocka_unit_test(test_cache_many_entries_freed),
        cmocka_unit_test(test_cache_with_catalog_generations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
