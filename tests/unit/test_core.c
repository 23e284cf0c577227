/* SPDX-License-Identifier: BSD-2-Clause */
/* test_core.c — unit tests of the core (registry/core/ headers) on the in-memory store, with a
 * real uv_loop and no sockets but the ones health checks need.
 *
 * One behaviour per test. Each test gets its own loop, memory store, log file and core
 * (loop_util.h's fixture), drives the loop with RUN_UNTIL (a deadline timer fails the
 * test; there is no sleep anywhere) and ends with fx_finish: main.c's orderly stop, then
 * every handle closed and uv_loop_close(&loop) == 0.
 *
 * Requests go through ops_run as a front-end sends them (ops.h); replies are copied by a
 * waiter (rec) during done, since a reply is borrowed only for that call.
 *
 * Health tests use tiny intervals (20 ms) and loopback targets: a listener of the test's
 * own on a free port (healthy) and a port bound then closed (dead: refused at once).
 */
#include "loop_util.h"

/* --- helpers ------------------------------------------------------------------------------ */

static int is_hex(const char *s, size_t len) {
    if (strlen(s) != len)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* Health settings that make checks happen every 20 ms and decide fast. */
static void fast_health(core_config *c) {
    c->check_interval_ms = 20;
    c->check_timeout_ms = 20;
    c->rise = 1;
    c->max_failures = 2;
}

/* Puts an instance straight into the store, as a previous run would have left it (the
 * core loads it at fx_start). */
static void preload(fx *f, const char *id, const char *service, int port, int status) {
    store_change ch;
    char err[STORE_ERR_LEN];
    memset(&ch, 0, sizeof(ch));
    ch.kind = STORE_PUT;
    snprintf(ch.inst.id, sizeof(ch.inst.id), "%s", id);
    ch.inst.service = service;
    ch.inst.host = "127.0.0.1";
    ch.inst.port = port;
    ch.inst.description = "";
    ch.inst.tags_json = "[]";
    ch.inst.check = STORE_CHECK_NONE;
    ch.inst.status = status;
    ch.inst.registered_at = ch.inst.last_seen = util_now_ms();
    assert_int_equal(store_apply(f->st, &ch, 1, err, sizeof(err)), 0);
    assert_int_equal(ch.rc, 0);
}

static int listed(const rec *x, const char *id) {
    for (size_t i = 0; i < x->nlisted && i < 8; i++)
        if (strcmp(x->listed[i], id) == 0)
            return 1;
    return 0;
}

/* The event object of events[] named name for instance id, or NULL. */
static json_t *find_event(json_t *events, const char *name, const char *id) {
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e) {
        const char *n = json_string_value(json_object_get(e, "event"));
        const char *eid = json_string_value(json_object_get(e, "id"));
        if (n && eid && strcmp(n, name) == 0 && strcmp(eid, id) == 0)
            return e;
    }
    return NULL;
}

static int64_t last_check_of(fx *f, const char *id) {
    cat_instance *in = fx_inst(f, id);
    return in ? in->last_check : -1;
}

static int failures_of(fx *f, const char *id) {
    cat_instance *in = fx_inst(f, id);
    return in ? in->failures : -1;
}

/* --- ops: register, lookup, heartbeat, deregister ----------------------------------------- */

static void register_is_answered_after_commit_with_id_and_token(void **state) {
    fx *f = *state;
    fx_start(f);
    uint64_t applies = store_memory_applies(f->st);
    request rq = rq_register("web", "127.0.0.1", 8080);
    rec *x = fx_op(f, &rq);
    assert_int_equal(x->calls, 0); /* not inside ops_run: it waits for the commit */
    assert_int_equal(cat_instances(core_catalog(f->core)), 0);
    RUN_UNTIL(f, x->calls > 0, "the register reply");
    assert_int_equal(x->calls, 1);
    assert_false(x->inside);
    assert_ok(x);
    assert_true(store_memory_applies(f->st) > applies); /* the commit came first */
    assert_true(is_hex(x->id, STORE_ID_LEN));
    assert_true(strlen(x->token) >= 32);
    assert_true(is_hex(x->token, strlen(x->token)));
    assert_non_null(fx_inst(f, x->id));
    RUN_UNTIL(f, core_idle(f->core), "the writer to go idle");
    assert_int_equal(x->calls, 1); /* exactly once */
    fx_finish(f);
}

static void lookup_after_register_hands_out_the_instance(void **state) {
    fx *f = *state;
    fx_start(f);
    request reg = rq_register("web", "127.0.0.1", 8080);
    rec *r = fx_register(f, &reg);
    request lk = rq_lookup("web");
    rec *x = fx_op(f, &lk);
    assert_int_equal(x->calls, 1); /* a read: answered inside ops_run */
    assert_true(x->inside);
    assert_ok(x);
    assert_string_equal(x->host, "127.0.0.1");
    assert_int_equal(x->port, 8080);
    assert_string_equal(x->pick_id, r->id);
    assert_int_equal(x->nlisted, 1);
    fx_finish(f);
}

static void lookup_round_robins_over_two_passing_instances(void **state) {
    fx *f = *state;
    fx_start(f);
    request a = rq_register("web", "127.0.0.1", 8001), b = rq_register("web", "127.0.0.1", 8002);
    fx_register(f, &a);
    fx_register(f, &b);
    request lk = rq_lookup("web");
    int ports[4];
    for (int i = 0; i < 4; i++) {
        rec *x = fx_op(f, &lk);
        assert_ok(x);
        assert_int_equal(x->ncands, 2);
        ports[i] = x->port;
    }
    assert_true(ports[0] == 8001 || ports[0] == 8002);
    assert_int_not_equal(ports[0], ports[1]);
    assert_int_equal(ports[0], ports[2]);
    assert_int_equal(ports[1], ports[3]);
    fx_finish(f);
}

static void lookup_of_unknown_service_is_not_found(void **state) {
    fx *f = *state;
    fx_start(f);
    request reg = rq_register("web", "127.0.0.1", 8080);
    fx_register(f, &reg);
    request lk = rq_lookup("nosuch");
    rec *x = fx_op(f, &lk);
    assert_int_equal(x->calls, 1);
    assert_int_equal(x->err, RERR_NOT_FOUND);
    assert_non_null(strstr(x->msg, "nosuch"));
    fx_finish(f);
}

static void lookup_with_tag_lists_only_tagged_instances(void **state) {
    fx *f = *state;
    fx_start(f);
    json_t *blue = json_pack("[s]", "blue"), *green = json_pack("[s]", "green");
    request a = rq_register("web", "127.0.0.1", 8001), b = rq_register("web", "127.0.0.1", 8002);
    a.tags = blue;
    b.tags = green;
    rec *ra = fx_register(f, &a);
    fx_register(f, &b);
    json_decref(blue);
    json_decref(green);
    request lk = rq_lookup("web");
    lk.tag = "blue";
    for (int i = 0; i < 3; i++) { /* every turn of the round-robin */
        rec *x = fx_op(f, &lk);
        assert_ok(x);
        assert_int_equal(x->nlisted, 1);
        assert_int_equal(x->ncands, 1);
        assert_string_equal(x->pick_id, ra->id);
        assert_int_equal(x->port, 8001);
    }
    lk.tag = "red";
    rec *none = fx_op(f, &lk);
    assert_int_equal(none->err, RERR_NOT_FOUND);
    fx_finish(f);
}

static void lookup_all_lists_critical_instances(void **state) {
    fx *f = *state;
    preload(f, "00000000000000a1", "web", 8001, STORE_PASSING);
    preload(f, "00000000000000b2", "web", 8002, STORE_CRITICAL);
    fx_start(f);
    request lk = rq_lookup("web");
    rec *passing = fx_op(f, &lk);
    assert_ok(passing);
    assert_int_equal(passing->nlisted, 1);
    assert_true(listed(passing, "00000000000000a1"));
    lk.all = 1;
    rec *all = fx_op(f, &lk);
    assert_ok(all);
    assert_int_equal(all->nlisted, 2);
    assert_true(listed(all, "00000000000000a1"));
    assert_true(listed(all, "00000000000000b2"));
    assert_int_equal(all->ncands, 1); /* handed out: only the passing one */
    assert_string_equal(all->pick_id, "00000000000000a1");
    fx_finish(f);
}

static void heartbeat_with_wrong_token_is_unauthorized(void **state) {
    fx *f = *state;
    fx_start(f);
    request reg = rq_register("web", "127.0.0.1", 8080);
    reg.ttl = 30;
    rec *r = fx_register(f, &reg);
    request hb = rq_owner(OP_HEARTBEAT, r->id, "00000000000000000000000000000000");
    rec *x = fx_op(f, &hb);
    assert_int_equal(x->calls, 1);
    assert_int_equal(x->err, RERR_UNAUTHORIZED);
    fx_finish(f);
}

static void heartbeat_with_right_token_returns_ttl(void **state) {
    fx *f = *state;
    fx_start(f);
    request reg = rq_register("web", "127.0.0.1", 8080);
    reg.ttl = 30;
    rec *r = fx_register(f, &reg);
    request hb = rq_owner(OP_HEARTBEAT, r->id, r->token);
    rec *x = fx_op(f, &hb);
    assert_int_equal(x->calls, 1);
    assert_ok(x);
    assert_int_equal(x->ttl, 30);
    fx_finish(f);
}

static void deregister_removes_the_instance(void **state) {
    fx *f = *state;
    fx_start(f);
    request reg = rq_register("web", "127.0.0.1", 8080);
    rec *r = fx_register(f, &reg);
    request dr = rq_owner(OP_DEREGISTER, r->id, r->token);
    rec *x = fx_op(f, &dr);
    assert_int_equal(x->calls, 0); /* a write: after its commit */
    assert_non_null(fx_inst(f, r->id));
    RUN_UNTIL(f, x->calls > 0, "the deregister reply");
    assert_ok(x);
    assert_null(fx_inst(f, r->id));
    assert_null(fx_service(f, "web"));
    assert_int_equal(cat_instances(core_catalog(f->core)), 0);
    request lk = rq_lookup("web");
    assert_int_equal(fx_op(f, &lk)->err, RERR_NOT_FOUND);
    fx_finish(f);
}

static void register_while_store_fails_is_unavailable_and_changes_nothing(void **state) {
    fx *f = *state;
    fx_start(f);
    uint64_t gen = cat_generation(core_catalog(f->core));
    assert_int_equal(store_memory_fail(f->st, 1), 0);
    request reg = rq_register("web", "127.0.0.1", 8080);
    rec *x = fx_call(f, &reg);
    assert_int_equal(x->err, RERR_UNAVAILABLE);
    assert_string_equal(x->id, "");
    assert_string_equal(x->token, "");
    assert_int_equal(cat_instances(core_catalog(f->core)), 0);
    assert_int_equal(cat_services(core_catalog(f->core)), 0);
    assert_null(fx_service(f, "web"));
    assert_int_equal(cat_generation(core_catalog(f->core)), gen);
    assert_int_equal(fx_event_count(f, "register", NULL), 0);
    fx_finish(f);
}

/* --- ops: limits and the shared secret -------------------------------------------------------- */

static void max_instances_refuses_register_naming_the_flag(void **state) {
    fx *f = *state;
    f->cfg.max_instances = 1;
    fx_start(f);
    request a = rq_register("web", "127.0.0.1", 8001), b = rq_register("api", "127.0.0.1", 8002);
    fx_register(f, &a);
    rec *x = fx_call(f, &b);
    assert_int_equal(x->err, RERR_UNAVAILABLE);
    assert_non_null(strstr(x->msg, "--max-instances"));
    assert_null(strstr(x->msg, "--max-instances-per-service"));
    assert_int_equal(cat_instances(core_catalog(f->core)), 1);
    assert_null(fx_service(f, "api"));
    fx_finish(f);
}

static void max_instances_per_service_refuses_register_naming_the_flag(void **state) {
    fx *f = *state;
    f->cfg.max_instances_per_service = 1;
    fx_start(f);
    request a = rq_register("web", "127.0.0.1", 8001), b = rq_register("web", "127.0.0.1", 8002);
    request other = rq_register("api", "127.0.0.1", 8003);
    fx_register(f, &a);
    rec *x = fx_call(f, &b);
    assert_int_equal(x->err, RERR_UNAVAILABLE);
    assert_non_null(strstr(x->msg, "--max-instances-per-service"));
    assert_int_equal(fx_service(f, "web")->n, 1);
    fx_register(f, &other); /* another service still has room */
    fx_finish(f);
}

static void set_secret(core_config *cfg, const char *secret) {
    cfg->has_auth = 1;
    assert_int_equal(util_sha256(secret, strlen(secret), cfg->auth_hash), 0);
}

/* With a shared secret set, a register carrying auth (NULL: none) is refused, naming
 * nothing of the secret, and registers nothing. */
static void expect_auth_refused(fx *f, const char *auth) {
    set_secret(&f->cfg, "s3cret");
    fx_start(f);
    request reg = rq_register("web", "127.0.0.1", 8080);
    reg.auth = auth;
    rec *x = fx_call(f, &reg);
    assert_int_equal(x->err, RERR_UNAUTHORIZED);
    assert_null(strstr(x->msg, "s3cret"));
    assert_int_equal(cat_instances(core_catalog(f->core)), 0);
    fx_finish(f);
}

static void register_without_auth_is_unauthorized(void **state) {
    expect_auth_refused(*state, NULL);
}

static void register_with_wrong_auth_is_unauthorized(void **state) {
    expect_auth_refused(*state, "guess");
}

static void register_with_right_auth_succeeds(void **state) {
    fx *f = *state;
    set_secret(&f->cfg, "s3cret");
    fx_start(f);
    request reg = rq_register("web", "127.0.0.1", 8080);
    reg.auth = "s3cret";
    rec *x = fx_register(f, &reg);
    assert_non_null(fx_inst(f, x->id));
    fx_finish(f);
}

/* --- ops: events, stats, the lookup cache ------------------------------------------------------ */

static void events_op_sees_the_register_submitted_before_it(void **state) {
    fx *f = *state;
    fx_start(f);
    /* The first register commits on its own; the register and the events query queued
     * behind it go to the worker as ONE batch, so the query must run after the batch's
     * changes, not merely after an earlier batch. */
    request blocker = rq_register("other", "127.0.0.1", 7000);
    request reg = rq_register("web", "127.0.0.1", 8080);
    request ev = rq_simple(OP_EVENTS);
    fx_op(f, &blocker);
    rec *r = fx_op(f, &reg);
    rec *e = fx_op(f, &ev); /* same loop turn: the register is not committed yet */
    assert_int_equal(r->calls, 0);
    assert_int_equal(e->calls, 0);
    RUN_UNTIL(f, e->calls > 0, "the events reply");
    assert_ok(r);
    assert_ok(e);
    assert_true(r->order < e->order);
    assert_non_null(e->events);
    json_t *found = find_event(e->events, "register", r->id);
    assert_non_null(found);
    assert_string_equal(json_string_value(json_object_get(found, "service")), "web");
    assert_int_equal(json_integer_value(json_object_get(found, "port")), 8080);
    fx_finish(f);
}

static void stats_counts_services_and_instances(void **state) {
    fx *f = *state;
    fx_start(f);
    request a = rq_register("web", "127.0.0.1", 8001), b = rq_register("web", "127.0.0.1", 8002);
    request c = rq_register("api", "127.0.0.1", 8003);
    fx_register(f, &a);
    fx_register(f, &b);
    fx_register(f, &c);
    request st = rq_simple(OP_STATS);
    rec *x = fx_op(f, &st);
    assert_int_equal(x->calls, 1);
    assert_ok(x);
    assert_non_null(x->stats);
    assert_int_equal(json_integer_value(json_object_get(x->stats, "services")), 2);
    assert_int_equal(json_integer_value(json_object_get(x->stats, "instances")), 3);
    assert_true(json_is_object(json_object_get(x->stats, "cache")));
    assert_true(json_is_object(json_object_get(x->stats, "health")));
    fx_finish(f);
}

static void lookup_set_is_cached_until_the_service_changes(void **state) {
    fx *f = *state;
    fx_start(f);
    request a = rq_register("web", "127.0.0.1", 8001), b = rq_register("web", "127.0.0.1", 8002);
    fx_register(f, &a);
    request lk = rq_lookup("web");
    fx_op(f, &lk);
    rec *second = fx_op(f, &lk); /* by now the set is admitted to the cache */
    long long hits = fx_stat(f, "cache", "hits"), misses = fx_stat(f, "cache", "misses");
    rec *third = fx_op(f, &lk);
    assert_ok(third);
    assert_int_equal(fx_stat(f, "cache", "hits"), hits + 1);
    assert_int_equal(fx_stat(f, "cache", "misses"), misses);
    assert_ptr_equal(third->set, second->set);
    fx_register(f, &b); /* the service changes */
    rec *fourth = fx_op(f, &lk);
    assert_ok(fourth);
    assert_int_equal(fx_stat(f, "cache", "hits"), hits + 1);
    assert_int_equal(fx_stat(f, "cache", "misses"), misses + 1);
    assert_int_equal(fourth->nlisted, 2); /* not the stale set */
    fx_finish(f);
}

static void heartbeat_gives_the_service_a_new_generation(void **state) {
    fx *f = *state;
    fx_start(f);
    request reg = rq_register("web", "127.0.0.1", 8080);
    reg.ttl = 30;
    rec *r = fx_register(f, &reg);
    cat_service *svc = fx_service(f, "web");
    uint64_t gen = svc->gen;
    /* A heartbeat in the very millisecond of the registration changes nothing a lookup
     * shows (last_seen has ms resolution); let the clock tick first (at most 1 ms). */
    int64_t seen = fx_inst(f, r->id)->last_seen;
    while (util_now_ms() <= seen)
        ;
    request hb = rq_owner(OP_HEARTBEAT, r->id, r->token);
    assert_ok(fx_op(f, &hb));
    assert_true(svc->gen != gen);
    assert_true(fx_inst(f, r->id)->last_seen > seen);
    fx_finish(f);
}

/* --- the write pipeline ------------------------------------------------------------------------- */

#define BURST 20

static void registers_in_one_turn_share_commits(void **state) {
    fx *f = *state;
    fx_start(f);
    uint64_t before = store_memory_applies(f->st);
    char names[BURST][16];
    rec *x[BURST];
    for (int i = 0; i < BURST; i++) {
        snprintf(names[i], sizeof(names[i]), "svc%d", i);
        request rq = rq_register(names[i], "127.0.0.1", 9000 + i);
        x[i] = fx_op(f, &rq);
    }
    RUN_UNTIL(f, x[BURST - 1]->calls > 0, "the last register reply");
    for (int i = 0; i < BURST; i++)
        assert_ok(x[i]);
    uint64_t applies = store_memory_applies(f->st) - before;
    /* The first starts a commit at once; the rest queue behind it and share the next. */
    assert_true(applies >= 1);
    assert_true(applies < BURST);
    assert_true(applies <= 2);
    assert_int_equal(cat_instances(core_catalog(f->core)), BURST);
    fx_finish(f);
}

static void write_replies_arrive_in_submission_order(void **state) {
    fx *f = *state;
    fx_start(f);
    char names[BURST][16];
    rec *x[BURST];
    for (int i = 0; i < BURST; i++) {
        snprintf(names[i], sizeof(names[i]), "svc%d", i);
        request rq = rq_register(names[i], "127.0.0.1", 9000 + i);
        x[i] = fx_op(f, &rq);
    }
    RUN_UNTIL(f, x[0]->calls > 0 && x[BURST - 1]->calls > 0, "the register replies");
    for (int i = 0; i < BURST; i++) {
        assert_int_equal(x[i]->calls, 1);
        if (i > 0)
            assert_true(x[i - 1]->order < x[i]->order);
    }
    fx_finish(f);
}

static void failed_batch_fails_every_change_and_a_later_batch_succeeds(void **state) {
    fx *f = *state;
    fx_start(f);
    uint64_t before = store_memory_applies(f->st);
    /* Both batches the burst makes fail: the first register's own, and the one the four
     * queued behind it share. */
    assert_int_equal(store_memory_fail(f->st, 2), 0);
    char names[5][16];
    rec *x[5];
    for (int i = 0; i < 5; i++) {
        snprintf(names[i], sizeof(names[i]), "svc%d", i);
        request rq = rq_register(names[i], "127.0.0.1", 9000 + i);
        x[i] = fx_op(f, &rq);
    }
    RUN_UNTIL(f, x[4]->calls > 0, "the failed replies");
    for (int i = 0; i < 5; i++) {
        assert_int_equal(x[i]->calls, 1);
        assert_int_equal(x[i]->err, RERR_UNAVAILABLE);
    }
    assert_int_equal(store_memory_applies(f->st), before);
    assert_int_equal(fx_stat(f, "store", "failures"), 2);
    assert_int_equal(cat_instances(core_catalog(f->core)), 0);
    assert_int_equal(fx_event_count(f, "register", NULL), 0);
    /* The store works again: the next batch commits. */
    request a = rq_register("svc0", "127.0.0.1", 9000), b = rq_register("svc1", "127.0.0.1", 9001);
    rec *ra = fx_op(f, &a), *rb = fx_op(f, &b);
    RUN_UNTIL(f, rb->calls > 0, "the later replies");
    assert_ok(ra);
    assert_ok(rb);
    assert_int_equal(cat_instances(core_catalog(f->core)), 2);
    assert_true(store_memory_applies(f->st) > before);
    fx_finish(f);
}

/* --- health --------------------------------------------------------------------------------------- */

static void healthy_tcp_instance_keeps_passing(void **state) {
    fx *f = *state;
    fast_health(&f->cfg);
    int port = fx_target(f);
    fx_start(f);
    request reg = rq_register("web", "127.0.0.1", port);
    reg.check = REQ_CHECK_TCP;
    rec *r = fx_register(f, &reg);
    RUN_UNTIL(f, last_check_of(f, r->id) != 0, "the first check");
    int64_t first = last_check_of(f, r->id);
    assert_true(first > 0);
    RUN_UNTIL(f, last_check_of(f, r->id) != first && f->target_accepted >= 3, "later checks");
    assert_true(last_check_of(f, r->id) > first);
    cat_instance *in = fx_inst(f, r->id);
    assert_non_null(in);
    assert_int_equal(in->status, STORE_PASSING);
    assert_int_equal(in->failures, 0);
    assert_int_equal(fx_event_count(f, "check_failed", r->id), 0);
    assert_true(fx_stat(f, "health", "checks") >= 2);
    assert_int_equal(fx_stat(f, "health", "failed_checks"), 0);
    fx_finish(f);
}

static void dead_instance_fails_checks_then_is_evicted(void **state) {
    fx *f = *state;
    fast_health(&f->cfg);
    fx_start(f);
    request reg = rq_register("web", "127.0.0.1", closed_port());
    reg.check = REQ_CHECK_TCP;
    rec *r = fx_register(f, &reg);
    RUN_UNTIL(f, fx_event_index(f, "evict", r->id) >= 0, "the evict event");
    int failed = fx_event_index(f, "check_failed", r->id);
    assert_true(failed >= 0);
    assert_true(failed < fx_event_index(f, "evict", r->id));
    assert_int_equal(fx_event_count(f, "check_failed", r->id), 2); /* max_failures */
    assert_null(fx_inst(f, r->id));
    assert_null(fx_service(f, "web"));
    assert_int_equal(fx_stat(f, "health", "evictions"), 1);
    fx_finish(f);
}

static void self_preservation_evicts_nothing(void **state) {
    fx *f = *state;
    fast_health(&f->cfg);
    f->cfg.preserve_min = 2;
    f->cfg.preserve_threshold = 0.5;
    fx_start(f);
    int port = closed_port();
    /* The first register starts a commit of its own; the two dead instances queue behind
     * it and so commit (and start being checked) together: each fails its first check
     * before the other can fail its second. */
    request blocker = rq_register("other", "127.0.0.1", 7000);
    request a = rq_register("a", "127.0.0.1", port), b = rq_register("b", "127.0.0.1", port);
    a.check = b.check = REQ_CHECK_TCP;
    rec *rx = fx_op(f, &blocker), *ra = fx_op(f, &a), *rb = fx_op(f, &b);
    RUN_UNTIL(f, rx->calls && ra->calls && rb->calls, "the register replies");
    assert_ok(ra);
    assert_ok(rb);
    RUN_UNTIL(f, fx_event_index(f, "preserve_on", NULL) >= 0 || fx_event_count(f, "evict", NULL),
              "the preserve_on event");
    assert_int_equal(fx_event_count(f, "evict", NULL), 0);
    /* Well past max_failures for both: still nothing is evicted. */
    RUN_UNTIL(f, failures_of(f, ra->id) < 0 || failures_of(f, rb->id) < 0 ||
                     (failures_of(f, ra->id) >= 4 && failures_of(f, rb->id) >= 4),
              "more failed checks");
    assert_non_null(fx_inst(f, ra->id));
    assert_non_null(fx_inst(f, rb->id));
    assert_int_equal(fx_inst(f, ra->id)->status, STORE_CRITICAL);
    assert_int_equal(fx_event_count(f, "evict", NULL), 0);
    assert_int_equal(fx_stat(f, "health", "evictions"), 0);
    assert_int_equal(fx_stat(f, "health", "preserving"), 1);
    fx_finish(f);
}

static void ttl_instance_without_heartbeats_expires(void **state) {
    fx *f = *state;
    fx_start(f);
    request reg = rq_register("web", "127.0.0.1", 8080);
    reg.ttl = 1;
    rec *r = fx_register(f, &reg);
    RUN_UNTIL(f, fx_event_index(f, "expire", r->id) >= 0, "the expire event");
    int missed = fx_event_index(f, "heartbeat_missed", r->id);
    assert_true(missed >= 0);
    assert_true(missed < fx_event_index(f, "expire", r->id));
    assert_null(fx_inst(f, r->id));
    assert_int_equal(fx_stat(f, "health", "expirations"), 1);
    fx_finish(f);
}

static rec *hb_rec;
static request hb_rq;

static void send_heartbeat(uv_timer_t *t) {
    fx *f = t->data;
    f->aux_ticks++;
    hb_rec->calls = 0;
    f->in_ops_run++;
    ops_run(f->core, &hb_rq, &fx_peer, &hb_rec->w);
    f->in_ops_run--;
    if (hb_rec->calls != 1 || hb_rec->err != RERR_NONE)
        f->aux_ticks = -1000000; /* a heartbeat was refused: fail below */
}

static void heartbeats_keep_a_ttl_instance(void **state) {
    fx *f = *state;
    fx_start(f);
    request reg = rq_register("web", "127.0.0.1", 8080);
    reg.ttl = 1;
    rec *r = fx_register(f, &reg);
    hb_rec = fx_rec(f);
    hb_rq = rq_owner(OP_HEARTBEAT, r->id, r->token);
    uv_timer_init(&f->loop, &f->aux);
    f->aux.data = f;
    f->aux_open = 1;
    uv_timer_start(&f->aux, send_heartbeat, 200, 200);
    /* 15 heartbeats: 3 s, three times the TTL. */
    RUN_UNTIL(f, f->aux_ticks >= 15 || f->aux_ticks < 0 || fx_inst(f, r->id) == NULL,
              "15 heartbeats");
    assert_true(f->aux_ticks >= 15);
    assert_non_null(fx_inst(f, r->id));
    assert_int_equal(fx_event_count(f, "heartbeat_missed", r->id), 0);
    assert_int_equal(fx_event_count(f, "expire", r->id), 0);
    uv_timer_stop(&f->aux); /* no heartbeats into the stopping core */
    fx_finish(f);
}

static void instance_without_health_record_is_checked_after_retry(void **state) {
    fx *f = *state;
    fast_health(&f->cfg);
    int port = fx_target(f);
    fx_start(f);
    health__fail_records = 1; /* the next record cannot be allocated */
    request reg = rq_register("web", "127.0.0.1", port);
    reg.check = REQ_CHECK_TCP;
    rec *r = fx_register(f, &reg);
    assert_int_equal(health__fail_records, 0);
    assert_int_equal(fx_stat(f, "health", "checked_instances"), 0);
    char msg[128];
    snprintf(msg, sizeof(msg), "cannot track instance %s", r->id);
    assert_true(fx_log_contains(f, msg));
    RUN_UNTIL(f, fx_stat(f, "health", "checked_instances") == 1, "the instance to be tracked");
    RUN_UNTIL(f, last_check_of(f, r->id) != 0, "a check of the instance");
    assert_true(last_check_of(f, r->id) > 0);
    assert_int_equal(fx_inst(f, r->id)->status, STORE_PASSING);
    fx_finish(f);
}

/* --- the bus --------------------------------------------------------------------------------------- */

typedef struct sub_state {
    bus_sub *sub;
    int calls;
    int unsubscribe;                /* unsubscribe itself in its callback */
} sub_state;

static sub_state subs[2];

static void on_bus_event(void *ud, const store_event *ev, json_t *obj) {
    sub_state *s = ud;
    (void)ev;
    (void)obj;
    s->calls++;
    if (s->unsubscribe)
        bus_unsubscribe(s->sub);
}

static void bus_subscriber_unsubscribing_itself_is_not_called_again(void **state) {
    fx *f = *state;
    fx_start(f);
    event_bus *bus = core_bus(f->core);
    size_t before = bus_subscribers(bus);
    memset(subs, 0, sizeof(subs));
    subs[0].unsubscribe = 1;
    subs[0].sub = bus_subscribe(bus, on_bus_event, &subs[0]);
    subs[1].sub = bus_subscribe(bus, on_bus_event, &subs[1]);
    assert_non_null(subs[0].sub);
    assert_non_null(subs[1].sub);
    assert_int_equal(bus_subscribers(bus), before + 2);
    request a = rq_register("web", "127.0.0.1", 8001), b = rq_register("web", "127.0.0.1", 8002);
    fx_register(f, &a);
    assert_int_equal(subs[0].calls, 1);
    assert_int_equal(subs[1].calls, 1); /* called after the one that left, same event */
    assert_int_equal(bus_subscribers(bus), before + 1);
    fx_register(f, &b);
    assert_int_equal(subs[0].calls, 1);
    assert_int_equal(subs[1].calls, 2);
    assert_int_equal(fx_event_count(f, "register", NULL), 2); /* the recorder too */
    bus_unsubscribe(subs[1].sub);
    assert_int_equal(bus_subscribers(bus), before);
    fx_finish(f);
}

/* --- operator requests: maintenance, forced deregister; events tail ------------------------ */

static request rq_maintenance(const char *id, int enable) {
    request r;
    memset(&r, 0, sizeof(r));
    r.op = OP_MAINTENANCE;
    r.id = id;
    r.enable = enable;
    return r;
}

static void maintenance_takes_an_instance_out_of_lookups_and_back(void **state) {
    fx *f = *state;
    fx_start(f);
    request a = rq_register("web", "127.0.0.1", 8001), b = rq_register("web", "127.0.0.1", 8002);
    rec *ra = fx_register(f, &a), *rb = fx_register(f, &b);
    request on = rq_maintenance(ra->id, 1);
    rec *x = fx_call(f, &on);
    assert_ok(x);
    assert_false(x->inside); /* a write: after its commit */
    cat_service *svc = fx_service(f, "web");
    assert_int_equal(svc->n, 2);
    assert_int_equal(svc->passing, 1);
    assert_int_equal(svc->maintenance, 1);
    request lk = rq_lookup("web");
    for (int i = 0; i < 3; i++) {
        x = fx_op(f, &lk);
        assert_ok(x);
        assert_int_equal(x->ncands, 1);
        assert_string_equal(x->pick_id, rb->id);
    }
    lk.all = 1; /* listed, not handed out */
    x = fx_op(f, &lk);
    assert_int_equal(x->nlisted, 2);
    assert_int_equal(x->ncands, 1);
    assert_string_equal(x->pick_id, rb->id);
    request off = rq_maintenance(ra->id, 0);
    assert_ok(fx_call(f, &off));
    assert_int_equal(svc->passing, 2);
    assert_int_equal(svc->maintenance, 0);
    lk.all = 0;
    assert_int_equal(fx_op(f, &lk)->ncands, 2);
    assert_int_equal(fx_event_count(f, "maintenance_on", ra->id), 1);
    assert_int_equal(fx_event_count(f, "maintenance_off", ra->id), 1);
    fx_finish(f);
}

/* Runs rq as a client on another host would send it, and waits for the reply. */
static rec *fx_call_from(fx *f, const request *rq, const char *ip) {
    char addr[64];
    snprintf(addr, sizeof(addr), "%s:40000", ip);
    peer other = {addr, ip, 0x4321, NULL};
    rec *x = fx_rec(f);
    ops_run(f->core, rq, &other, &x->w);
    RUN_UNTIL(f, x->calls > 0, req_op_name(rq->op));
    return x;
}

static void operator_requests_need_loopback_without_a_secret(void **state) {
    fx *f = *state;
    fx_start(f);
    request a = rq_register("web", "127.0.0.1", 8001);
    rec *ra = fx_register(f, &a);
    request on = rq_maintenance(ra->id, 1);
    request force = rq_owner(OP_DEREGISTER, ra->id, NULL);
    force.force = 1;
    assert_int_equal(fx_call_from(f, &on, "192.0.2.7")->err, RERR_UNAUTHORIZED);
    assert_int_equal(fx_call_from(f, &force, "2001:db8::7")->err, RERR_UNAUTHORIZED);
    assert_int_equal(fx_inst(f, ra->id)->maintenance, 0);
    /* loopback, IPv4 or IPv6 */
    assert_ok(fx_call_from(f, &on, "127.0.0.9"));
    assert_int_equal(fx_inst(f, ra->id)->maintenance, 1);
    assert_ok(fx_call_from(f, &force, "::1"));
    assert_null(fx_inst(f, ra->id));
    fx_finish(f);
}

static void operator_requests_need_the_secret_when_there_is_one(void **state) {
    fx *f = *state;
    set_secret(&f->cfg, "s3cret");
    fx_start(f);
    request a = rq_register("web", "127.0.0.1", 8001);
    a.auth = "s3cret";
    rec *ra = fx_register(f, &a);
    request force = rq_owner(OP_DEREGISTER, ra->id, NULL);
    force.force = 1;
    assert_int_equal(fx_call(f, &force)->err, RERR_UNAUTHORIZED); /* loopback is not enough */
    force.auth = "s3cret";
    assert_ok(fx_call_from(f, &force, "192.0.2.7"));
    assert_null(fx_inst(f, ra->id));
    fx_finish(f);
}

static void events_tail_gives_the_newest_below_before(void **state) {
    fx *f = *state;
    fx_start(f);
    for (int i = 0; i < 6; i++) {
        request r = rq_register(i % 2 ? "odd" : "even", "127.0.0.1", 8000 + i);
        fx_register(f, &r);
    }
    request ev = rq_simple(OP_EVENTS);
    rec *all = fx_call(f, &ev);
    size_t n = json_array_size(all->events);
    json_int_t last = json_integer_value(json_object_get(json_array_get(all->events, n - 1), "seq"));
    ev.tail = 1;
    ev.limit = 2;
    rec *x = fx_call(f, &ev);
    assert_int_equal(json_array_size(x->events), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(x->events, 1), "seq")), last);
    ev.before = last;
    ev.service = "odd";
    x = fx_call(f, &ev);
    assert_int_equal(json_array_size(x->events), 2); /* the odd ones below the last */
    for (size_t i = 0; i < 2; i++) {
        json_t *e = json_array_get(x->events, i);
        assert_string_equal(json_string_value(json_object_get(e, "service")), "odd");
        assert_true(json_integer_value(json_object_get(e, "seq")) < last);
    }
    fx_finish(f);
}

/* ---------------------------------------------------------------------------------------------- */

#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        /* ops */
        T(register_is_answered_after_commit_with_id_and_token),
        T(lookup_after_register_hands_out_the_instance),
        T(lookup_round_robins_over_two_passing_instances),
        T(lookup_of_unknown_service_is_not_found),
        T(lookup_with_tag_lists_only_tagged_instances),
        T(lookup_all_lists_critical_instances),
        T(heartbeat_with_wrong_token_is_unauthorized),
        T(heartbeat_with_right_token_returns_ttl),
        T(deregister_removes_the_instance),
        T(register_while_store_fails_is_unavailable_and_changes_nothing),
        T(max_instances_refuses_register_naming_the_flag),
        T(max_instances_per_service_refuses_register_naming_the_flag),
        T(register_without_auth_is_unauthorized),
        T(register_with_wrong_auth_is_unauthorized),
        T(register_with_right_auth_succeeds),
        T(events_op_sees_the_register_submitted_before_it),
        T(stats_counts_services_and_instances),
        T(lookup_set_is_cached_until_the_service_changes),
        T(heartbeat_gives_the_service_a_new_generation),
        T(maintenance_takes_an_instance_out_of_lookups_and_back),
        T(operator_requests_need_loopback_without_a_secret),
        T(operator_requests_need_the_secret_when_there_is_one),
        T(events_tail_gives_the_newest_below_before),
        /* the write pipeline */
        T(registers_in_one_turn_share_commits),
        T(write_replies_arrive_in_submission_order),
        T(failed_batch_fails_every_change_and_a_later_batch_succeeds),
        /* health */
        T(healthy_tcp_instance_keeps_passing),
        T(dead_instance_fails_checks_then_is_evicted),
        T(self_preservation_evicts_nothing),
        T(ttl_instance_without_heartbeats_expires),
        T(heartbeats_keep_a_ttl_instance),
        T(instance_without_health_record_is_checked_after_retry),
        /* the bus */
        T(bus_subscriber_unsubscribing_itself_is_not_called_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
