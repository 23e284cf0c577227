/* SPDX-License-Identifier: BSD-2-Clause */
/* test_store.c — the conformance suite of the store (registry/store/store.h) with cmocka.
 *
 * Every behaviour of store.h's contract is one test function run against each backend:
 * the entries "sqlite_NAME" and "memory_NAME" (BOTH below) call the same function with
 * a fixture that opens "sqlite:DIR/registry.db" or "memory:". Where a test closes and
 * re-opens the store to check that data survives, the memory backend (which keeps
 * nothing across store_close) keeps its handle instead (reopen_if_durable), and where a
 * test needs a write to fail, each backend's own hook breaks it (break_writes).
 *
 * SQLite-only tests ("sqlite_NAME" from SQLITE_ONLY) check what only a file has:
 * opening, WAL, migrations, corrupt and foreign files, read-only files, full disk, I/O
 * errors, crashes; they use the hooks of store/sqlite.h. The memory backend's own hooks
 * (store/memory.h) and store_open's scheme parsing ("spec_NAME") have tests of their own.
 *
 * Every test gets its own temporary directory (mkdtemp) and database file in it, and
 * checks one behaviour with exact counts. Fault tests use the store_test_* hooks
 * (page cap = full disk, query_only = refused writes) or run in a forked child that
 * sets RLIMIT_FSIZE (a real write error) or drops root (a really read-only file).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "store/store.h"
#include "store/etcd.h"
#include "store/memory.h"
#include "store/schema.h"
#include "store/sqlite.h"

#define NOBODY_ID 65534          /* uid/gid used to make a file really read-only as root */

typedef struct fixture {
    char dir[PATH_MAX];
    char db[PATH_MAX];
    const char *backend;        /* "sqlite" or "memory": the scheme under test */
    char spec[PATH_MAX + 16];   /* what open_store passes to store_open */
    int durable;                /* data survives store_close (sqlite, etcd) */
    char prefix[96];            /* etcd: the keys of this test alone */
} fixture;

/* etcd: the options every open of the test's store uses (its prefix). */
static store_options etcd_opt = STORE_OPTIONS_DEFAULT;

/* ---------------------------------------------------------------------------------- */
/* Helpers                                                                             */

/* A fixture for backend ("sqlite" or "memory"): a new temporary directory, the path of
 * a database file in it (not created) and the spec that opens the backend. */
static int setup_backend(void **state, const char *backend) {
    fixture *f = calloc(1, sizeof *f);
    int n;

    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/test_store.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    n = snprintf(f->db, sizeof f->db, "%s/registry.db", f->dir);
    if (n < 0 || (size_t)n >= sizeof f->db) {
        rmdir(f->dir);
        free(f);
        return -1;
    }
    f->backend = backend;
    f->durable = strcmp(backend, "memory") != 0;
    if (strcmp(backend, "etcd") == 0) {
        /* REG_TEST_ETCD: the endpoints of a running etcd (tests/e2e/test_store_etcd.py
         * starts one); each test has keys of its own under a fresh prefix. */
        static unsigned seq;
        n = snprintf(f->spec, sizeof f->spec, "etcd:%s", getenv("REG_TEST_ETCD"));
        snprintf(f->prefix, sizeof f->prefix, "/test_store/%ld-%u-%ld/", (long)getpid(), ++seq,
                 (long)time(NULL));
        etcd_opt = (store_options)STORE_OPTIONS_DEFAULT;
        etcd_opt.prefix = f->prefix;
        etcd_opt.node_name = "test";
        etcd_opt.timeout_ms = 2000;
    } else if (f->durable) {
        n = snprintf(f->spec, sizeof f->spec, "sqlite:%s", f->db);
    } else {
        n = snprintf(f->spec, sizeof f->spec, "memory:test");
    }
    if (n < 0 || (size_t)n >= sizeof f->spec) {
        rmdir(f->dir);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int setup_sqlite(void **state) {
    return setup_backend(state, "sqlite");
}

static int setup_memory(void **state) {
    return setup_backend(state, "memory");
}

static int setup_etcd(void **state) {
    return setup_backend(state, "etcd");
}

static int teardown(void **state) {
    fixture *f = *state;
    DIR *d = opendir(f->dir);
    struct dirent *e;

    if (d) {
        while ((e = readdir(d)) != NULL) {
            char p[PATH_MAX * 2];
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* A whole file into a new buffer (caller frees). */
static unsigned char *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    unsigned char *buf = NULL;
    long size;

    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    size = ftell(fp);
    assert_true(size >= 0);
    rewind(fp);
    buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    *len = (size_t)size;
    return buf;
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *fp = fopen(path, "wb");

    assert_non_null(fp);
    if (len)
        assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Number of entries in a directory besides . and .. */
static int dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* store_open(spec) with the default options (sync_full, 100000 events), which must
 * work. spec: a bare path in the SQLite-only tests. */
static store *open_ok(const char *spec) {
    char err[STORE_ERR_LEN] = "";
    store *st = NULL;
    int rc = store_open(spec, strncmp(spec, "etcd:", 5) == 0 ? &etcd_opt : NULL, &st, err,
                        sizeof err);

    if (rc != 0)
        fail_msg("store_open(%s) = %d: %s", spec, rc, err);
    assert_non_null(st);
    return st;
}

/* The store of the backend under test. */
static store *open_store(fixture *f) {
    store *st = open_ok(f->spec);

    assert_string_equal(st->be->scheme, f->backend);
    return st;
}

/* Closes and re-opens a durable store, so what follows checks what survived; a memory
 * store keeps nothing across store_close, so its handle is kept instead. */
static store *reopen_if_durable(fixture *f, store *st) {
    if (!f->durable)
        return st;
    store_close(st);
    return open_store(f);
}

/* Makes the next store_apply fail as a whole (with a message), by each backend's own
 * means: a connection that refuses writes, or a failure asked of the memory store. */
static void break_writes(fixture *f, store *st) {
    if (strcmp(f->backend, "etcd") == 0)
        assert_int_equal(store_etcd_test_break(st, 1), 0);
    else if (f->durable)
        assert_int_equal(store_test_set_query_only(st, 1), 0);
    else
        assert_int_equal(store_memory_fail(st, 1), 0);
}

/* Undoes break_writes. */
static void mend_writes(fixture *f, store *st) {
    if (strcmp(f->backend, "etcd") == 0)
        assert_int_equal(store_etcd_test_break(st, 0), 0);
    else if (f->durable)
        assert_int_equal(store_test_set_query_only(st, 0), 0);
    else
        assert_int_equal(store_memory_fail(st, 0), 0);
}

static void make_id(char id[STORE_ID_LEN + 1], unsigned n) {
    snprintf(id, STORE_ID_LEN + 1, "%016x", n);
}

static void make_hash(unsigned char h[STORE_HASH_LEN], unsigned char seed) {
    for (int i = 0; i < STORE_HASH_LEN; i++)
        h[i] = (unsigned char)(seed * 31 + i);
}

/* A PUT of instance n of service at 127.0.0.1:port, with a "register" event. */
static void put_change(store_change *c, unsigned n, const char *service, int port,
                       unsigned char seed) {
    memset(c, 0, sizeof *c);
    c->kind = STORE_PUT;
    make_id(c->inst.id, n);
    c->inst.service = service;
    c->inst.host = "127.0.0.1";
    c->inst.port = port;
    c->inst.description = "desc";
    c->inst.tags_json = "[\"a\",\"b\"]";
    c->inst.ttl = 30;
    c->inst.check = STORE_CHECK_TCP;
    make_hash(c->inst.token_hash, seed);
    c->inst.registered_at = 1000 + n;
    c->inst.last_seen = 1000 + n;
    c->inst.status = STORE_PASSING;
    c->has_event = 1;
    c->event.ts = 1000 + n;
    c->event.event = "register";
    c->event.service = service;
    c->event.id = c->inst.id;
    c->event.host = c->inst.host;
    c->event.port = port;
    c->event.detail = "{\"k\":1}";
}

static void delete_change(store_change *c, unsigned n, int check_token, unsigned char seed) {
    memset(c, 0, sizeof *c);
    c->kind = STORE_DELETE;
    make_id(c->inst.id, n);
    c->check_token = check_token;
    make_hash(c->inst.token_hash, seed);
    c->has_event = 1;
    c->event.ts = 5000;
    c->event.event = "deregister";
    c->event.id = c->inst.id;
}

static void apply_ok(store *st, store_change *c, size_t n) {
    char err[STORE_ERR_LEN] = "";
    int rc = store_apply(st, c, n, err, sizeof err);

    if (rc != 0)
        fail_msg("store_apply = %d: %s", rc, err);
}

/* Collected instances: owned copies of what store_load handed out. */
typedef struct row {
    store_instance in;
    char service[64], host[256], description[2048], tags[256];
} row;

typedef struct rows {
    row *v;
    size_t n, cap;
    int stop_after;         /* >0: return 42 once this many were seen */
} rows;

static int collect_row(void *ud, const store_instance *in) {
    rows *r = ud;

    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 16;
        row *nv = realloc(r->v, ncap * sizeof *nv);
        assert_non_null(nv);
        r->v = nv;
        r->cap = ncap;
    }
    row *w = &r->v[r->n++];
    w->in = *in;
    snprintf(w->service, sizeof w->service, "%s", in->service);
    snprintf(w->host, sizeof w->host, "%s", in->host);
    snprintf(w->description, sizeof w->description, "%s", in->description);
    snprintf(w->tags, sizeof w->tags, "%s", in->tags_json);
    w->in.service = w->service;
    w->in.host = w->host;
    w->in.description = w->description;
    w->in.tags_json = w->tags;
    if (r->stop_after > 0 && (int)r->n == r->stop_after)
        return 42;
    return 0;
}

static rows load_all(store *st) {
    char err[STORE_ERR_LEN] = "";
    rows r = { 0 };
    int rc = store_load(st, collect_row, &r, err, sizeof err);

    if (rc != 0)
        fail_msg("store_load = %d: %s", rc, err);
    return r;
}

static size_t count_instances(store *st) {
    rows r = load_all(st);
    free(r.v);
    return r.n;
}

/* Collected events. */
typedef struct evrow {
    int64_t seq, ts;
    int port;
    char event[32], service[64], id[32], host[64], detail[64];
    int has_service, has_id, has_host, has_detail;
} evrow;

typedef struct evs {
    evrow v[64];
    size_t n;               /* rows seen (only the first 64 are kept) */
    int stop_after;
} evs;

static int collect_event(void *ud, const store_event *ev) {
    evs *e = ud;

    if (e->n < 64) {
        evrow *w = &e->v[e->n];
        memset(w, 0, sizeof *w);
        w->seq = ev->seq;
        w->ts = ev->ts;
        w->port = ev->port;
        snprintf(w->event, sizeof w->event, "%s", ev->event);
        if ((w->has_service = ev->service != NULL))
            snprintf(w->service, sizeof w->service, "%s", ev->service);
        if ((w->has_id = ev->id != NULL))
            snprintf(w->id, sizeof w->id, "%s", ev->id);
        if ((w->has_host = ev->host != NULL))
            snprintf(w->host, sizeof w->host, "%s", ev->host);
        if ((w->has_detail = ev->detail != NULL))
            snprintf(w->detail, sizeof w->detail, "%s", ev->detail);
    }
    e->n++;
    if (e->stop_after > 0 && (int)e->n == e->stop_after)
        return 7;
    return 0;
}

static evs *events_since(store *st, int64_t since, int limit, const char *service) {
    char err[STORE_ERR_LEN] = "";
    evs *e = calloc(1, sizeof *e);
    int rc;

    assert_non_null(e);
    rc = store_events(st, since, limit, service, collect_event, e, err, sizeof err);
    if (rc != 0)
        fail_msg("store_events = %d: %s", rc, err);
    return e;
}

static size_t count_events(store *st) {
    evs *e = events_since(st, 0, 1000000, NULL);
    size_t n = e->n;
    free(e);
    return n;
}

static int latest_version(void) {
    return schema_migrations[schema_migrations_count - 1].version;
}

/* ---------------------------------------------------------------------------------- */
/* Opening                                                                             */

static void test_open_new_path(void **state) {
    fixture *f = *state;
    store *st;

    assert_false(file_exists(f->db));
    st = open_ok(f->db);
    assert_true(file_exists(f->db));
    assert_int_equal(store_test_schema_version(st), latest_version());
    assert_int_equal(count_instances(st), 0);
    assert_int_equal(count_events(st), 0);
    assert_int_equal(store_last_seq(st), 0);
    store_close(st);
    /* Closing checkpoints and removes the WAL. */
    assert_int_equal(dir_entries(f->dir), 1);
}

static void test_open_empty_file(void **state) {
    fixture *f = *state;
    store *st;
    store_change c;

    write_file(f->db, "", 0);
    st = open_ok(f->db);
    assert_int_equal(store_test_schema_version(st), latest_version());
    put_change(&c, 1, "web", 80, 1);
    apply_ok(st, &c, 1);
    assert_int_equal(count_instances(st), 1);
    store_close(st);
}

static void test_open_sync_normal(void **state) {
    fixture *f = *state;
    const store_options sync_normal = { .sync_full = 0,
                                        .events_keep = STORE_EVENTS_KEEP_DEFAULT };
    char err[STORE_ERR_LEN] = "";
    store *st = NULL;
    store_change c;

    assert_int_equal(store_open(f->db, &sync_normal, &st, err, sizeof err), 0);
    put_change(&c, 1, "web", 80, 1);
    apply_ok(st, &c, 1);
    store_close(st);
    st = open_ok(f->db);
    assert_int_equal(count_instances(st), 1);
    store_close(st);
}

static void test_open_bad_paths(void **state) {
    fixture *f = *state;
    char err[STORE_ERR_LEN] = "";
    char path[PATH_MAX + 32];
    store *st = (store *)&st;   /* must be reset to NULL on failure */

    assert_int_equal(store_open(NULL, NULL, &st, err, sizeof err), -EINVAL);
    assert_null(st);
    assert_int_equal(store_open("", NULL, &st, err, sizeof err), -EINVAL);

    /* A directory. */
    assert_int_equal(store_open(f->dir, NULL, &st, err, sizeof err), STORE_EIO);
    assert_null(st);
    assert_non_null(strstr(err, f->dir));

    /* A path in a directory that does not exist. */
    snprintf(path, sizeof path, "%s/no/such/dir/x.db", f->dir);
    err[0] = '\0';
    assert_int_equal(store_open(path, NULL, &st, err, sizeof err), STORE_EIO);
    assert_null(st);
    assert_non_null(strstr(err, path));
    assert_int_equal(dir_entries(f->dir), 0);

    store_close(NULL);  /* a no-op */
}

static void test_keeps_every_field(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c[3];
    rows r;
    evs *e;

    put_change(&c[0], 1, "web", 80, 1);
    put_change(&c[1], 2, "web", 81, 2);
    put_change(&c[2], 3, "db", 5432, 3);
    c[2].inst.description = "";
    c[2].inst.tags_json = "[]";
    c[2].inst.ttl = 0;
    c[2].inst.check = STORE_CHECK_NONE;
    c[2].inst.last_check = 777;
    c[2].inst.host = "db.example.org";
    c[2].event.service = NULL;
    c[2].event.host = NULL;
    c[2].event.id = NULL;
    c[2].event.port = 0;
    c[2].event.detail = NULL;
    apply_ok(st, c, 3);

    st = reopen_if_durable(f, st);
    r = load_all(st);
    assert_int_equal(r.n, 3);
    /* Registration order, every field as written. */
    assert_string_equal(r.v[0].in.id, "0000000000000001");
    assert_string_equal(r.v[0].in.service, "web");
    assert_string_equal(r.v[0].in.host, "127.0.0.1");
    assert_int_equal(r.v[0].in.port, 80);
    assert_string_equal(r.v[0].in.description, "desc");
    assert_string_equal(r.v[0].in.tags_json, "[\"a\",\"b\"]");
    assert_int_equal(r.v[0].in.ttl, 30);
    assert_int_equal(r.v[0].in.check, STORE_CHECK_TCP);
    assert_memory_equal(r.v[0].in.token_hash, c[0].inst.token_hash, STORE_HASH_LEN);
    assert_int_equal(r.v[0].in.registered_at, 1001);
    assert_int_equal(r.v[0].in.last_seen, 1001);
    assert_int_equal(r.v[0].in.last_check, 0);
    assert_int_equal(r.v[0].in.status, STORE_PASSING);
    assert_int_equal(r.v[0].in.failures, 0);
    assert_string_equal(r.v[1].in.id, "0000000000000002");
    assert_int_equal(r.v[1].in.port, 81);
    assert_string_equal(r.v[2].in.id, "0000000000000003");
    assert_string_equal(r.v[2].in.host, "db.example.org");
    assert_string_equal(r.v[2].in.description, "");
    assert_string_equal(r.v[2].in.tags_json, "[]");
    assert_int_equal(r.v[2].in.ttl, 0);
    assert_int_equal(r.v[2].in.check, STORE_CHECK_NONE);
    assert_int_equal(r.v[2].in.last_check, 777);
    assert_memory_equal(r.v[2].in.token_hash, c[2].inst.token_hash, STORE_HASH_LEN);
    free(r.v);

    assert_int_equal(store_last_seq(st), 3);
    e = events_since(st, 0, 100, NULL);
    assert_int_equal(e->n, 3);
    assert_int_equal(e->v[0].seq, 1);
    assert_int_equal(e->v[0].ts, 1001);
    assert_string_equal(e->v[0].event, "register");
    assert_string_equal(e->v[0].service, "web");
    assert_string_equal(e->v[0].id, "0000000000000001");
    assert_string_equal(e->v[0].host, "127.0.0.1");
    assert_int_equal(e->v[0].port, 80);
    assert_string_equal(e->v[0].detail, "{\"k\":1}");
    assert_int_equal(e->v[2].seq, 3);
    assert_false(e->v[2].has_service);
    assert_false(e->v[2].has_id);
    assert_false(e->v[2].has_host);
    assert_false(e->v[2].has_detail);
    assert_int_equal(e->v[2].port, 0);
    free(e);
    store_close(st);
}

/* ---------------------------------------------------------------------------------- */
/* PUT                                                                                 */

static void test_put_new_then_existing(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c, h, d;
    rows r;

    put_change(&c, 1, "web", 80, 1);
    apply_ok(st, &c, 1);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.existed, 0);
    assert_string_equal(c.id_out, "0000000000000001");
    assert_int_equal(c.event.seq, 1);

    /* Mark it critical, then re-register: same id back, every field replaced. */
    memset(&h, 0, sizeof h);
    h.kind = STORE_HEALTH;
    make_id(h.inst.id, 1);
    h.inst.status = STORE_CRITICAL;
    h.inst.failures = 2;
    h.inst.last_check = 1500;
    h.inst.last_seen = 1001;
    apply_ok(st, &h, 1);

    put_change(&c, 99, "web", 80, 2);       /* a fresh id and a new token hash */
    c.inst.description = "second";
    c.inst.tags_json = "[]";
    c.inst.ttl = 0;
    c.inst.check = STORE_CHECK_NONE;
    c.inst.registered_at = 2000;
    c.inst.last_seen = 2000;
    c.inst.last_check = 0;
    c.event.event = "reregister";
    apply_ok(st, &c, 1);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.existed, 1);
    assert_string_equal(c.id_out, "0000000000000001");
    assert_int_equal(c.event.seq, 2);

    r = load_all(st);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.v[0].in.id, "0000000000000001");
    assert_string_equal(r.v[0].in.description, "second");
    assert_string_equal(r.v[0].in.tags_json, "[]");
    assert_int_equal(r.v[0].in.ttl, 0);
    assert_int_equal(r.v[0].in.check, STORE_CHECK_NONE);
    assert_int_equal(r.v[0].in.registered_at, 2000);
    assert_int_equal(r.v[0].in.last_seen, 2000);
    assert_int_equal(r.v[0].in.last_check, 0);
    assert_int_equal(r.v[0].in.status, STORE_PASSING);
    assert_int_equal(r.v[0].in.failures, 0);
    assert_memory_equal(r.v[0].in.token_hash, c.inst.token_hash, STORE_HASH_LEN);
    free(r.v);
    {
        /* The event names the instance by the id it kept, not the fresh one offered. */
        evs *e = events_since(st, 1, 10, NULL);
        assert_int_equal(e->n, 1);
        assert_string_equal(e->v[0].event, "reregister");
        assert_string_equal(e->v[0].id, "0000000000000001");
        free(e);
    }

    /* The old token no longer works, the new one does. */
    delete_change(&d, 1, 1, 1);
    apply_ok(st, &d, 1);
    assert_int_equal(d.rc, STORE_EDENIED);
    delete_change(&d, 1, 1, 2);
    apply_ok(st, &d, 1);
    assert_int_equal(d.rc, 0);
    assert_int_equal(count_instances(st), 0);
    store_close(st);
}

static void test_put_same_service_other_endpoints(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c[3];

    put_change(&c[0], 1, "web", 80, 1);
    put_change(&c[1], 2, "web", 81, 1);             /* other port */
    put_change(&c[2], 3, "api", 80, 1);             /* other service */
    apply_ok(st, c, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c[i].rc, 0);
        assert_int_equal(c[i].existed, 0);
        assert_string_equal(c[i].id_out, c[i].inst.id);
    }
    assert_int_equal(count_instances(st), 3);
    store_close(st);
}

static void test_put_id_collision(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c[3];

    put_change(&c[0], 1, "web", 80, 1);
    apply_ok(st, c, 1);
    /* Another endpoint that was given an id already in use: refused alone. */
    put_change(&c[0], 1, "web", 81, 2);
    put_change(&c[1], 2, "web", 82, 3);
    apply_ok(st, c, 2);
    assert_int_equal(c[0].rc, -EEXIST);
    assert_int_equal(c[0].existed, 0);
    assert_int_equal(c[0].event.seq, 0);
    assert_string_equal(c[0].id_out, "");
    assert_int_equal(c[1].rc, 0);
    assert_int_equal(c[1].event.seq, 2);
    assert_int_equal(count_instances(st), 2);
    assert_int_equal(count_events(st), 2);
    store_close(st);
}

static void test_put_invalid(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c[7];

    put_change(&c[0], 1, "web", 80, 1);
    put_change(&c[1], 2, "web", 0, 1);             /* port 0 */
    put_change(&c[2], 3, "web", 70000, 1);         /* port too big */
    put_change(&c[3], 4, "web", 83, 1);
    c[3].inst.service = NULL;
    put_change(&c[4], 5, "web", 84, 1);
    strcpy(c[4].inst.id, "not an id");            /* a space: not a chosen id either */
    put_change(&c[5], 6, "web", 85, 1);
    c[5].event.event = NULL;                       /* an event without a name */
    put_change(&c[6], 7, "web", 86, 1);
    c[6].kind = 99;
    apply_ok(st, c, 7);
    assert_int_equal(c[0].rc, 0);
    for (int i = 1; i < 7; i++) {
        assert_int_equal(c[i].rc, -EINVAL);
        assert_int_equal(c[i].event.seq, 0);
    }
    assert_int_equal(count_instances(st), 1);
    assert_int_equal(count_events(st), 1);

    assert_int_equal(store_apply(NULL, c, 1, NULL, 0), -EINVAL);
    assert_int_equal(store_apply(st, NULL, 1, NULL, 0), -EINVAL);
    assert_int_equal(store_apply(st, NULL, 0, NULL, 0), 0);
    store_close(st);
}

static void test_batch_1000_puts(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change *c = calloc(1000, sizeof *c);
    char (*svc)[16] = calloc(1000, sizeof *svc);
    rows r;

    assert_non_null(c);
    assert_non_null(svc);
    for (unsigned i = 0; i < 1000; i++) {
        snprintf(svc[i], sizeof svc[i], "svc%u", i % 10);
        put_change(&c[i], i + 1, svc[i], 10000 + (int)i, (unsigned char)i);
    }
    apply_ok(st, c, 1000);
    for (unsigned i = 0; i < 1000; i++) {
        assert_int_equal(c[i].rc, 0);
        assert_int_equal(c[i].existed, 0);
        assert_int_equal(c[i].event.seq, (int64_t)i + 1);
    }
    assert_int_equal(store_last_seq(st), 1000);

    st = reopen_if_durable(f, st);
    r = load_all(st);
    assert_int_equal(r.n, 1000);
    for (unsigned i = 0; i < 1000; i++) {
        assert_string_equal(r.v[i].in.id, c[i].inst.id);
        assert_int_equal(r.v[i].in.port, 10000 + (int)i);
        assert_memory_equal(r.v[i].in.token_hash, c[i].inst.token_hash, STORE_HASH_LEN);
    }
    free(r.v);
    assert_int_equal(count_events(st), 1000);
    assert_int_equal(store_last_seq(st), 1000);
    store_close(st);
    free(svc);
    free(c);
}

/* ---------------------------------------------------------------------------------- */
/* DELETE and HEALTH                                                                   */

static void test_delete_with_token(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c[2];
    evs *e;

    put_change(&c[0], 1, "web", 80, 1);
    put_change(&c[1], 2, "web", 81, 2);
    apply_ok(st, c, 2);
    delete_change(&c[0], 1, 1, 1);
    apply_ok(st, c, 1);
    assert_int_equal(c[0].rc, 0);
    assert_int_equal(c[0].event.seq, 3);
    assert_int_equal(count_instances(st), 1);
    e = events_since(st, 2, 10, NULL);
    assert_int_equal(e->n, 1);
    assert_string_equal(e->v[0].event, "deregister");
    free(e);
    store_close(st);
}

static void test_delete_wrong_token(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c[2];

    put_change(&c[0], 1, "web", 80, 1);
    put_change(&c[1], 2, "web", 81, 2);
    apply_ok(st, c, 2);
    delete_change(&c[0], 1, 1, 2);          /* instance 2's token */
    apply_ok(st, c, 1);
    assert_int_equal(c[0].rc, STORE_EDENIED);
    assert_int_equal(c[0].event.seq, 0);
    assert_int_equal(count_instances(st), 2);
    assert_int_equal(count_events(st), 2);
    store_close(st);
}

static void test_delete_unknown(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c[2];

    put_change(&c[0], 1, "web", 80, 1);
    apply_ok(st, c, 1);
    delete_change(&c[0], 7, 1, 1);
    delete_change(&c[1], 8, 0, 1);
    apply_ok(st, c, 2);
    assert_int_equal(c[0].rc, STORE_ENOTFOUND);
    assert_int_equal(c[1].rc, STORE_ENOTFOUND);
    assert_int_equal(c[0].event.seq, 0);
    assert_int_equal(count_instances(st), 1);
    assert_int_equal(count_events(st), 1);
    store_close(st);
}

static void test_delete_without_token(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c;

    put_change(&c, 1, "web", 80, 1);
    apply_ok(st, &c, 1);
    delete_change(&c, 1, 0, 9);             /* eviction: the token does not matter */
    c.event.event = "evict";
    apply_ok(st, &c, 1);
    assert_int_equal(c.rc, 0);
    assert_int_equal(count_instances(st), 0);
    store_close(st);
}

static void test_health(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c[2];
    rows r;

    put_change(&c[0], 1, "web", 80, 1);
    apply_ok(st, c, 1);
    memset(c, 0, sizeof c);
    c[0].kind = STORE_HEALTH;
    make_id(c[0].inst.id, 1);
    c[0].inst.status = STORE_CRITICAL;
    c[0].inst.failures = 2;
    c[0].inst.last_seen = 1001;
    c[0].inst.last_check = 3000;
    c[0].has_event = 1;
    c[0].event.ts = 3000;
    c[0].event.event = "check_failed";
    c[0].event.detail = "{\"failures\":2,\"max\":3}";
    c[1] = c[0];
    make_id(c[1].inst.id, 2);               /* gone */
    apply_ok(st, c, 2);
    assert_int_equal(c[0].rc, 0);
    assert_int_equal(c[0].event.seq, 2);
    assert_int_equal(c[1].rc, STORE_ENOTFOUND);
    assert_int_equal(c[1].event.seq, 0);

    st = reopen_if_durable(f, st);
    r = load_all(st);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.v[0].in.status, STORE_CRITICAL);
    assert_int_equal(r.v[0].in.failures, 2);
    assert_int_equal(r.v[0].in.last_seen, 1001);
    assert_int_equal(r.v[0].in.last_check, 3000);
    assert_string_equal(r.v[0].in.description, "desc");     /* untouched */
    free(r.v);
    assert_int_equal(count_events(st), 2);
    store_close(st);
}

/* Maintenance: set and cleared by id, kept by a re-registration of the endpoint (which
 * replaces every other field), survives a reopen; an unknown id is not found and a flag
 * other than 0/1 is malformed. */
static void test_maintenance(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c[3];
    rows r;

    put_change(&c[0], 1, "web", 80, 1);
    put_change(&c[1], 2, "web", 81, 2);
    apply_ok(st, c, 2);
    memset(c, 0, sizeof c);
    c[0].kind = STORE_MAINTENANCE;
    make_id(c[0].inst.id, 1);
    c[0].inst.maintenance = 1;
    c[0].has_event = 1;
    c[0].event.ts = 3000;
    c[0].event.event = "maintenance_on";
    c[1] = c[0];
    make_id(c[1].inst.id, 9);               /* no such instance */
    c[2] = c[0];
    c[2].inst.maintenance = 2;              /* malformed */
    apply_ok(st, c, 3);
    assert_int_equal(c[0].rc, 0);
    assert_int_equal(c[0].event.seq, 3);
    assert_int_equal(c[1].rc, STORE_ENOTFOUND);
    assert_int_equal(c[2].rc, -EINVAL);

    /* The service registers itself again: new fields, the operator's flag stays. */
    put_change(&c[0], 7, "web", 80, 3);
    c[0].inst.description = "again";
    apply_ok(st, c, 1);
    assert_int_equal(c[0].existed, 1);

    st = reopen_if_durable(f, st);
    r = load_all(st);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.v[0].in.description, "again");
    assert_int_equal(r.v[0].in.maintenance, 1);
    assert_int_equal(r.v[1].in.maintenance, 0);
    free(r.v);

    memset(c, 0, sizeof c);
    c[0].kind = STORE_MAINTENANCE;
    make_id(c[0].inst.id, 1);
    c[0].inst.maintenance = 0;
    apply_ok(st, c, 1);
    assert_int_equal(c[0].rc, 0);
    st = reopen_if_durable(f, st);
    r = load_all(st);
    assert_int_equal(r.v[0].in.maintenance, 0);
    free(r.v);
    store_close(st);
}

static void test_batch_applies_in_order(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c[5];
    evs *e;

    put_change(&c[0], 1, "web", 80, 1);
    delete_change(&c[1], 1, 1, 1);          /* deletes what c[0] just added */
    delete_change(&c[2], 2, 0, 1);          /* not there yet */
    put_change(&c[3], 2, "web", 81, 2);
    memset(&c[4], 0, sizeof c[4]);
    c[4].kind = STORE_EVENT_ONLY;
    c[4].has_event = 1;
    c[4].event.ts = 9;
    c[4].event.event = "preserve_on";
    apply_ok(st, c, 5);
    assert_int_equal(c[0].rc, 0);
    assert_int_equal(c[1].rc, 0);
    assert_int_equal(c[2].rc, STORE_ENOTFOUND);
    assert_int_equal(c[3].rc, 0);
    assert_int_equal(c[4].rc, 0);
    assert_int_equal(c[0].event.seq, 1);
    assert_int_equal(c[1].event.seq, 2);
    assert_int_equal(c[2].event.seq, 0);
    assert_int_equal(c[3].event.seq, 3);
    assert_int_equal(c[4].event.seq, 4);
    assert_int_equal(count_instances(st), 1);
    e = events_since(st, 0, 100, NULL);
    assert_int_equal(e->n, 4);
    assert_string_equal(e->v[0].event, "register");
    assert_string_equal(e->v[1].event, "deregister");
    assert_string_equal(e->v[2].event, "register");
    assert_string_equal(e->v[3].event, "preserve_on");
    free(e);
    store_close(st);
}

/* ---------------------------------------------------------------------------------- */
/* Events                                                                              */

static void test_events_trimmed_to_keep(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c[5];
    evs *e;

    store_set_events_keep(st, 10);
    for (int b = 0; b < 5; b++) {
        for (int i = 0; i < 5; i++) {
            memset(&c[i], 0, sizeof c[i]);
            c[i].kind = STORE_EVENT_ONLY;
            c[i].has_event = 1;
            c[i].event.ts = b * 5 + i;
            c[i].event.event = "tick";
        }
        apply_ok(st, c, 5);
        for (int i = 0; i < 5; i++)
            assert_int_equal(c[i].event.seq, b * 5 + i + 1);   /* strictly increasing */
    }
    assert_int_equal(store_last_seq(st), 25);
    e = events_since(st, 0, 100, NULL);
    assert_int_equal(e->n, 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(e->v[i].seq, 16 + i);
    free(e);

    /* A smaller bound applies at the next commit; seqs are never reused, even after a
     * restart with fewer events left than were ever written. */
    store_set_events_keep(st, 2);
    memset(c, 0, sizeof c[0]);
    c[0].kind = STORE_EVENT_ONLY;
    c[0].has_event = 1;
    c[0].event.event = "tick";
    apply_ok(st, c, 1);
    assert_int_equal(c[0].event.seq, 26);
    assert_int_equal(count_events(st), 2);

    st = reopen_if_durable(f, st);
    assert_int_equal(store_last_seq(st), 26);
    store_set_events_keep(st, 0);           /* keep none */
    apply_ok(st, c, 1);
    assert_int_equal(c[0].event.seq, 27);
    assert_int_equal(store_last_seq(st), 27);
    assert_int_equal(count_events(st), 0);

    st = reopen_if_durable(f, st);
    assert_int_equal(store_last_seq(st), 27);
    store_close(st);
}

static void test_events_query(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c[6];
    char err[STORE_ERR_LEN];
    evs *e;
    int rc;

    /* seq 1..6: web, api, web, api, web, (no service) */
    for (unsigned i = 0; i < 6; i++)
        put_change(&c[i], i + 1, i % 2 ? "api" : "web", 80 + (int)i, 1);
    c[5].kind = STORE_EVENT_ONLY;
    c[5].event.service = NULL;
    c[5].event.event = "start";
    apply_ok(st, c, 6);

    e = events_since(st, 0, 100, NULL);
    assert_int_equal(e->n, 6);
    free(e);
    e = events_since(st, 4, 100, NULL);            /* strictly greater than since */
    assert_int_equal(e->n, 2);
    assert_int_equal(e->v[0].seq, 5);
    assert_int_equal(e->v[1].seq, 6);
    assert_string_equal(e->v[1].event, "start");
    free(e);
    e = events_since(st, 1, 2, NULL);              /* oldest first, at most limit */
    assert_int_equal(e->n, 2);
    assert_int_equal(e->v[0].seq, 2);
    assert_int_equal(e->v[1].seq, 3);
    free(e);
    e = events_since(st, 0, 100, "web");
    assert_int_equal(e->n, 3);
    assert_int_equal(e->v[0].seq, 1);
    assert_int_equal(e->v[1].seq, 3);
    assert_int_equal(e->v[2].seq, 5);
    free(e);
    e = events_since(st, 1, 1, "web");
    assert_int_equal(e->n, 1);
    assert_int_equal(e->v[0].seq, 3);
    free(e);
    e = events_since(st, 0, 100, "nosuch");
    assert_int_equal(e->n, 0);
    free(e);
    e = events_since(st, 6, 100, NULL);
    assert_int_equal(e->n, 0);
    free(e);
    e = events_since(st, 0, 0, NULL);
    assert_int_equal(e->n, 0);
    free(e);

    /* A callback's non-zero value stops the walk and is returned. */
    e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->stop_after = 2;
    rc = store_events(st, 0, 100, NULL, collect_event, e, err, sizeof err);
    assert_int_equal(rc, 7);
    assert_int_equal(e->n, 2);
    free(e);
    assert_int_equal(store_events(st, 0, -1, NULL, collect_event, NULL, err, sizeof err),
                     -EINVAL);
    /* ... and the statement was reset: the next walk starts over. */
    assert_int_equal(count_events(st), 6);
    store_close(st);
}

static void test_load_callback_stops(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c[3];
    char err[STORE_ERR_LEN];
    rows r = { 0 };

    for (unsigned i = 0; i < 3; i++)
        put_change(&c[i], i + 1, "web", 80 + (int)i, 1);
    apply_ok(st, c, 3);
    r.stop_after = 2;
    assert_int_equal(store_load(st, collect_row, &r, err, sizeof err), 42);
    assert_int_equal(r.n, 2);
    free(r.v);
    assert_int_equal(count_instances(st), 3);
    assert_int_equal(store_load(st, NULL, NULL, err, sizeof err), -EINVAL);
    store_close(st);
}

/* ---------------------------------------------------------------------------------- */
/* More of the contract (each backend)                                                 */

static void health_change(store_change *c, unsigned n, int status, int failures,
                          int64_t last_seen, int64_t last_check) {
    memset(c, 0, sizeof *c);
    c->kind = STORE_HEALTH;
    make_id(c->inst.id, n);
    c->inst.status = status;
    c->inst.failures = failures;
    c->inst.last_seen = last_seen;
    c->inst.last_check = last_check;
}

static void event_only_change(store_change *c, const char *name, int64_t ts) {
    memset(c, 0, sizeof *c);
    c->kind = STORE_EVENT_ONLY;
    c->has_event = 1;
    c->event.ts = ts;
    c->event.event = name;
}

/* store_change.once: with a shared store only the first change naming a fact commits
 * (in one batch or in the next); local stores have one writer and ignore it. */
static void test_once(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c[3];
    int shared = store_shared(st);

    for (int i = 0; i < 3; i++) {
        event_only_change(&c[i], "expire", i + 1);
        c[i].once = i < 2 ? "expire/abc/1" : "expire/abc/2";
    }
    apply_ok(st, c, 3);
    assert_int_equal(c[0].rc, 0);
    assert_int_equal(c[1].rc, shared ? -EEXIST : 0);
    assert_int_equal(c[2].rc, 0);
    assert_int_equal(c[1].event.seq, shared ? 0 : 2);
    event_only_change(&c[0], "expire", 4);
    c[0].once = "expire/abc/2";
    apply_ok(st, c, 1);
    assert_int_equal(c[0].rc, shared ? -EEXIST : 0);
    assert_int_equal(count_events(st), shared ? 2 : 4);
    store_close(st);
}

/* A new store is empty, and a memory store leaves nothing on disk. */
static void test_open_is_empty(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    evs *e;

    assert_int_equal(count_instances(st), 0);
    assert_int_equal(count_events(st), 0);
    assert_int_equal(store_last_seq(st), 0);
    e = events_since(st, -1, 100, "web");
    assert_int_equal(e->n, 0);
    free(e);
    store_close(st);
    assert_int_equal(dir_entries(f->dir), strcmp(f->backend, "sqlite") == 0 ? 1 : 0);
}

/* A batch whose commit fails changes nothing at all, whatever its changes were, uses no
 * seq, and the same batch commits once writes work again. */
static void test_failed_batch_changes_nothing(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    char err[STORE_ERR_LEN] = "";
    store_change c[6];
    rows r;

    put_change(&c[0], 1, "web", 80, 1);
    put_change(&c[1], 2, "web", 81, 2);
    event_only_change(&c[2], "start", 5);
    apply_ok(st, c, 3);
    assert_int_equal(store_last_seq(st), 3);

    put_change(&c[0], 3, "web", 82, 3);                 /* new */
    put_change(&c[1], 99, "web", 80, 4);                /* re-registration of 1 */
    c[1].inst.description = "second";
    delete_change(&c[2], 2, 1, 2);                      /* with the right token */
    health_change(&c[3], 1, STORE_CRITICAL, 3, 1001, 4000);
    c[3].has_event = 1;
    c[3].event.event = "check_failed";
    event_only_change(&c[4], "tick", 6);
    put_change(&c[5], 4, "web", 0, 5);                  /* malformed: would be -EINVAL */

    break_writes(f, st);
    assert_int_equal(store_apply(st, c, 6, err, sizeof err), STORE_EIO);
    assert_true(strlen(err) > 0);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(c[i].rc, STORE_EIO);
        assert_int_equal(c[i].existed, 0);
        assert_string_equal(c[i].id_out, "");
        assert_int_equal(c[i].event.seq, 0);
    }
    r = load_all(st);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.v[0].in.id, "0000000000000001");
    assert_string_equal(r.v[0].in.description, "desc");
    assert_int_equal(r.v[0].in.status, STORE_PASSING);
    assert_int_equal(r.v[0].in.failures, 0);
    assert_string_equal(r.v[1].in.id, "0000000000000002");
    free(r.v);
    assert_int_equal(count_events(st), 3);
    assert_int_equal(store_last_seq(st), 3);

    mend_writes(f, st);
    apply_ok(st, c, 6);
    assert_int_equal(c[0].rc, 0);
    assert_int_equal(c[0].existed, 0);
    assert_int_equal(c[1].rc, 0);
    assert_int_equal(c[1].existed, 1);
    assert_string_equal(c[1].id_out, "0000000000000001");
    assert_int_equal(c[2].rc, 0);
    assert_int_equal(c[3].rc, 0);
    assert_int_equal(c[4].rc, 0);
    assert_int_equal(c[5].rc, -EINVAL);
    for (int i = 0; i < 5; i++)
        assert_int_equal(c[i].event.seq, 4 + i);        /* no seq was used by the failure */
    assert_int_equal(c[5].event.seq, 0);
    assert_int_equal(store_last_seq(st), 8);

    st = reopen_if_durable(f, st);
    r = load_all(st);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.v[0].in.id, "0000000000000001");
    assert_string_equal(r.v[0].in.description, "second");
    assert_int_equal(r.v[0].in.status, STORE_CRITICAL);   /* HEALTH after the PUT */
    assert_int_equal(r.v[0].in.failures, 3);
    assert_int_equal(r.v[0].in.last_check, 4000);
    assert_string_equal(r.v[1].in.id, "0000000000000003");
    free(r.v);
    assert_int_equal(count_events(st), 8);
    store_close(st);
}

/* Registration order: a re-registration keeps its place; a deleted and re-added
 * instance, or a new one using an id freed earlier in the same batch, goes last. */
static void test_reregister_keeps_order(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c[3];
    rows r;

    put_change(&c[0], 1, "web", 80, 1);
    put_change(&c[1], 2, "web", 81, 1);
    put_change(&c[2], 3, "web", 82, 1);
    apply_ok(st, c, 3);
    put_change(&c[0], 10, "web", 80, 1);
    apply_ok(st, c, 1);
    assert_int_equal(c[0].existed, 1);
    r = load_all(st);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.v[0].in.id, "0000000000000001");
    assert_string_equal(r.v[1].in.id, "0000000000000002");
    assert_string_equal(r.v[2].in.id, "0000000000000003");
    free(r.v);

    delete_change(&c[0], 2, 0, 1);
    put_change(&c[1], 4, "web", 81, 1);                 /* the same endpoint, re-added */
    apply_ok(st, c, 2);
    assert_int_equal(c[1].rc, 0);
    assert_int_equal(c[1].existed, 0);

    delete_change(&c[0], 1, 1, 1);
    put_change(&c[1], 1, "web", 90, 1);                 /* the id just freed */
    apply_ok(st, c, 2);
    assert_int_equal(c[0].rc, 0);
    assert_int_equal(c[1].rc, 0);
    assert_int_equal(c[1].existed, 0);
    assert_string_equal(c[1].id_out, "0000000000000001");

    st = reopen_if_durable(f, st);
    r = load_all(st);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.v[0].in.id, "0000000000000003");
    assert_string_equal(r.v[1].in.id, "0000000000000004");
    assert_string_equal(r.v[2].in.id, "0000000000000001");
    assert_int_equal(r.v[2].in.port, 90);
    free(r.v);
    store_close(st);
}

/* -EEXIST is for a NEW endpoint whose id is taken (also by an earlier change of the same
 * batch). A re-registration ignores the id offered, even one that is another
 * instance's, and its event names the kept id only when event.id was the offered id. */
static void test_put_ids(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c[3];
    evs *e;

    put_change(&c[0], 1, "web", 80, 1);
    put_change(&c[1], 2, "web", 81, 1);
    apply_ok(st, c, 2);

    put_change(&c[0], 2, "web", 80, 5);                 /* 2 is web:81's id */
    put_change(&c[1], 7, "api", 80, 1);
    put_change(&c[2], 7, "api", 81, 1);                 /* 7 was taken just before */
    apply_ok(st, c, 3);
    assert_int_equal(c[0].rc, 0);
    assert_int_equal(c[0].existed, 1);
    assert_string_equal(c[0].id_out, "0000000000000001");
    assert_int_equal(c[0].event.seq, 3);
    assert_int_equal(c[1].rc, 0);
    assert_int_equal(c[1].event.seq, 4);
    assert_int_equal(c[2].rc, -EEXIST);
    assert_int_equal(c[2].event.seq, 0);
    assert_string_equal(c[2].id_out, "");

    put_change(&c[0], 9, "web", 81, 2);                 /* re-registration of 2 */
    c[0].event.id = "someone-else";                     /* not the offered id: kept */
    apply_ok(st, c, 1);
    assert_int_equal(c[0].existed, 1);
    assert_string_equal(c[0].id_out, "0000000000000002");

    e = events_since(st, 2, 100, NULL);
    assert_int_equal(e->n, 3);
    assert_string_equal(e->v[0].id, "0000000000000001");
    assert_string_equal(e->v[1].id, "0000000000000007");
    assert_string_equal(e->v[2].id, "someone-else");
    free(e);
    assert_int_equal(count_instances(st), 3);
    store_close(st);
}

/* A chosen id (a Consul ServiceID) of up to STORE_ID_MAX characters is kept and loaded
 * as it is; one character more, or a character outside [A-Za-z0-9._:@-], is refused. */
static void test_put_chosen_ids(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c[3];
    char longest[STORE_ID_MAX + 1];

    memset(longest, 'x', STORE_ID_MAX);
    longest[STORE_ID_MAX] = '\0';
    put_change(&c[0], 1, "web", 80, 1);
    strcpy(c[0].inst.id, "Web-1.example:8080@dc1");
    put_change(&c[1], 2, "web", 81, 1);
    strcpy(c[1].inst.id, longest);
    put_change(&c[2], 3, "web", 82, 1);
    strcpy(c[2].inst.id, "web/1");
    apply_ok(st, c, 3);
    assert_int_equal(c[0].rc, 0);
    assert_string_equal(c[0].id_out, "Web-1.example:8080@dc1");
    assert_int_equal(c[1].rc, 0);
    assert_int_equal(strlen(c[1].id_out), STORE_ID_MAX);
    assert_int_equal(c[2].rc, -EINVAL);

    rows r = load_all(st);
    assert_int_equal(r.n, 2);
    int seen = 0;
    for (size_t i = 0; i < r.n; i++)
        seen += strcmp(r.v[i].in.id, "Web-1.example:8080@dc1") == 0 ||
                strlen(r.v[i].in.id) == STORE_ID_MAX;
    assert_int_equal(seen, 2);
    free(r.v);
    assert_false(store_id_valid("x-65-chars-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"));
    assert_true(store_id_valid("0123456789abcdef"));
    assert_false(store_id_valid(".hidden"));
    store_close(st);
}

/* Malformed changes of every kind are refused alone with -EINVAL; a valid PUT without
 * an event changes the instance and uses no seq. */
static void test_invalid_changes(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c[12];
    rows r;

    put_change(&c[0], 1, "web", 80, 1);
    apply_ok(st, c, 1);

    put_change(&c[0], 2, "web", 81, 1);
    c[0].inst.ttl = -1;
    put_change(&c[1], 3, "web", 82, 1);
    c[1].inst.check = 7;
    put_change(&c[2], 4, "web", 83, 1);
    c[2].inst.status = 5;
    put_change(&c[3], 5, "web", 84, 1);
    c[3].inst.failures = -1;
    put_change(&c[4], 6, "web", 85, 1);
    c[4].inst.host = NULL;
    delete_change(&c[5], 1, 0, 1);
    strcpy(c[5].inst.id, "");                           /* empty */
    delete_change(&c[6], 1, 0, 1);
    strcpy(c[6].inst.id, "-web-1");                     /* starts with a dash */
    health_change(&c[7], 1, 9, 0, 0, 0);                /* no such status */
    health_change(&c[8], 1, STORE_CRITICAL, -2, 0, 0);
    event_only_change(&c[9], "tick", 1);
    c[9].has_event = 0;                                 /* nothing at all */
    health_change(&c[10], 1, STORE_CRITICAL, 1, 0, 0);
    c[10].has_event = 1;                                /* an event without a name */
    put_change(&c[11], 12, "web", 99, 1);
    c[11].has_event = 0;
    apply_ok(st, c, 12);
    for (int i = 0; i < 11; i++) {
        assert_int_equal(c[i].rc, -EINVAL);
        assert_int_equal(c[i].event.seq, 0);
        assert_string_equal(c[i].id_out, "");
    }
    assert_int_equal(c[11].rc, 0);
    assert_int_equal(c[11].event.seq, 0);
    assert_string_equal(c[11].id_out, "000000000000000c");

    r = load_all(st);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.v[0].in.status, STORE_PASSING);
    assert_int_equal(r.v[0].in.failures, 0);
    assert_int_equal(r.v[1].in.port, 99);
    free(r.v);
    assert_int_equal(count_events(st), 1);
    assert_int_equal(store_last_seq(st), 1);
    store_close(st);
}

/* HEALTH sets status, failures, last_seen and last_check, and nothing else. */
static void test_health_keeps_other_fields(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    store_change c;
    rows r;

    put_change(&c, 1, "web", 80, 4);
    c.inst.ttl = 15;
    c.inst.check = STORE_CHECK_NONE;
    c.inst.last_check = 1500;
    apply_ok(st, &c, 1);
    health_change(&c, 1, STORE_CRITICAL, 4, 0, 2500);
    apply_ok(st, &c, 1);
    assert_int_equal(c.rc, 0);
    health_change(&c, 1, STORE_PASSING, 0, 2600, 2600);
    apply_ok(st, &c, 1);

    st = reopen_if_durable(f, st);
    r = load_all(st);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.v[0].in.service, "web");
    assert_string_equal(r.v[0].in.host, "127.0.0.1");
    assert_int_equal(r.v[0].in.port, 80);
    assert_string_equal(r.v[0].in.description, "desc");
    assert_string_equal(r.v[0].in.tags_json, "[\"a\",\"b\"]");
    assert_int_equal(r.v[0].in.ttl, 15);
    assert_int_equal(r.v[0].in.check, STORE_CHECK_NONE);
    make_hash(c.inst.token_hash, 4);
    assert_memory_equal(r.v[0].in.token_hash, c.inst.token_hash, STORE_HASH_LEN);
    assert_int_equal(r.v[0].in.registered_at, 1001);
    assert_int_equal(r.v[0].in.status, STORE_PASSING);
    assert_int_equal(r.v[0].in.failures, 0);
    assert_int_equal(r.v[0].in.last_seen, 2600);
    assert_int_equal(r.v[0].in.last_check, 2600);
    free(r.v);
    assert_int_equal(count_events(st), 1);              /* the HEALTHs had none */
    store_close(st);
}

/* NULL description/tags are stored as "" and "[]"; every string is copied, so the
 * caller's buffers may change as soon as store_apply returns. */
static void test_put_copies_strings(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    char service[16], host[32], desc[16], tags[16], ev[16], detail[16];
    store_change c;
    rows r;
    evs *e;

    snprintf(service, sizeof service, "svc");
    snprintf(host, sizeof host, "10.0.0.1");
    snprintf(desc, sizeof desc, "mine");
    snprintf(tags, sizeof tags, "[\"t\"]");
    snprintf(ev, sizeof ev, "register");
    snprintf(detail, sizeof detail, "{\"d\":1}");
    put_change(&c, 1, service, 80, 1);
    c.inst.host = host;
    c.inst.description = desc;
    c.inst.tags_json = tags;
    c.event.event = ev;
    c.event.service = service;
    c.event.host = host;
    c.event.detail = detail;
    apply_ok(st, &c, 1);
    put_change(&c, 2, "bare", 81, 1);
    c.inst.description = NULL;
    c.inst.tags_json = NULL;
    apply_ok(st, &c, 1);
    memset(service, 'X', sizeof service - 1);
    memset(host, 'X', sizeof host - 1);
    memset(desc, 'X', sizeof desc - 1);
    memset(tags, 'X', sizeof tags - 1);
    memset(ev, 'X', sizeof ev - 1);
    memset(detail, 'X', sizeof detail - 1);

    r = load_all(st);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.v[0].in.service, "svc");
    assert_string_equal(r.v[0].in.host, "10.0.0.1");
    assert_string_equal(r.v[0].in.description, "mine");
    assert_string_equal(r.v[0].in.tags_json, "[\"t\"]");
    assert_string_equal(r.v[1].in.description, "");
    assert_string_equal(r.v[1].in.tags_json, "[]");
    free(r.v);
    e = events_since(st, 0, 10, "svc");
    assert_int_equal(e->n, 1);
    assert_string_equal(e->v[0].event, "register");
    assert_string_equal(e->v[0].service, "svc");
    assert_string_equal(e->v[0].host, "10.0.0.1");
    assert_string_equal(e->v[0].detail, "{\"d\":1}");
    free(e);
    store_close(st);
}

/* store_options.events_keep bounds the events from the first commit; any commit trims,
 * even one that appended no event; a negative bound keeps none; seqs go on. */
static void test_events_keep_option(void **state) {
    fixture *f = *state;
    const store_options opt = { .sync_full = 1, .events_keep = 3, .prefix = f->prefix,
                                .node_name = "test" };
    char err[STORE_ERR_LEN] = "";
    store *st = NULL;
    store_change c[5];
    evs *e;

    assert_int_equal(store_open(f->spec, &opt, &st, err, sizeof err), 0);
    for (int i = 0; i < 5; i++)
        event_only_change(&c[i], "tick", i);
    apply_ok(st, c, 5);
    assert_int_equal(c[4].event.seq, 5);
    e = events_since(st, -5, 100, NULL);
    assert_int_equal(e->n, 3);
    assert_int_equal(e->v[0].seq, 3);
    assert_int_equal(e->v[2].seq, 5);
    free(e);

    store_set_events_keep(st, 1);
    delete_change(&c[0], 42, 0, 1);                     /* not found: no event */
    apply_ok(st, c, 1);
    assert_int_equal(c[0].rc, STORE_ENOTFOUND);
    e = events_since(st, 0, 100, NULL);
    assert_int_equal(e->n, 1);
    assert_int_equal(e->v[0].seq, 5);
    free(e);

    store_set_events_keep(st, -5);
    put_change(&c[0], 1, "web", 0, 1);                  /* malformed: no event either */
    apply_ok(st, c, 1);
    assert_int_equal(count_events(st), 0);
    assert_int_equal(store_last_seq(st), 5);

    store_set_events_keep(st, 10);
    event_only_change(&c[0], "tick", 9);
    apply_ok(st, c, 1);
    assert_int_equal(c[0].event.seq, 6);
    assert_int_equal(count_events(st), 1);
    store_close(st);
}

/* ---------------------------------------------------------------------------------- */
/* The memory backend's hooks                                                          */

typedef struct poller {
    store *st;
    atomic_int stop;
    uint64_t max_seen;
} poller;

/* Another thread reading the hook while the test thread applies, as a test of the core
 * does from the loop thread while the writer's worker thread is in store_apply. */
static void *poll_applies(void *arg) {
    poller *p = arg;

    while (!atomic_load(&p->stop)) {
        uint64_t n = store_memory_applies(p->st);
        if (n > p->max_seen)
            p->max_seen = n;
        (void)store_memory_fail(p->st, 0);
    }
    return NULL;
}

static void test_memory_fail_and_applies(void **state) {
    fixture *f = *state;
    store *st = open_store(f);
    char err[STORE_ERR_LEN] = "";
    store_change c;
    poller p;
    pthread_t t;

    assert_int_equal(store_memory_applies(st), 0);
    assert_int_equal(store_memory_fail(st, -1), -EINVAL);
    assert_int_equal(store_memory_fail(st, 2), 0);
    assert_int_equal(store_apply(st, &c, 0, err, sizeof err), 0);   /* takes no failure */
    for (int i = 0; i < 2; i++) {
        put_change(&c, 1, "web", 80, 1);
        err[0] = '\0';
        assert_int_equal(store_apply(st, &c, 1, err, sizeof err), STORE_EIO);
        assert_int_equal(c.rc, STORE_EIO);
        assert_non_null(strstr(err, "nothing was changed"));
    }
    assert_int_equal(store_memory_applies(st), 0);
    assert_int_equal(count_instances(st), 0);
    assert_int_equal(store_last_seq(st), 0);
    apply_ok(st, &c, 1);
    assert_int_equal(c.event.seq, 1);
    assert_int_equal(store_memory_applies(st), 1);

    /* A change that fails alone still commits its batch. */
    put_change(&c, 1, "web", 81, 1);
    apply_ok(st, &c, 1);
    assert_int_equal(c.rc, -EEXIST);
    assert_int_equal(store_memory_applies(st), 2);

    memset(&p, 0, sizeof p);
    p.st = st;
    atomic_init(&p.stop, 0);
    assert_int_equal(pthread_create(&t, NULL, poll_applies, &p), 0);
    for (int i = 0; i < 500; i++) {
        event_only_change(&c, "tick", i);
        apply_ok(st, &c, 1);
    }
    atomic_store(&p.stop, 1);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(store_memory_applies(st), 502);
    assert_true(p.max_seen <= 502);
    store_close(st);
}

/* ---------------------------------------------------------------------------------- */
/* store_open: which backend a spec names                                              */

/* Runs store_open(spec) in dir (restoring the working directory), so relative paths
 * and anything a backend might create land in the test's directory. */
static int open_in(const char *dir, const char *spec, store **out, char *err,
                   size_t errlen) {
    char cwd[PATH_MAX];
    int rc;

    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    rc = store_open(spec, NULL, out, err, errlen);
    assert_int_equal(chdir(cwd), 0);
    return rc;
}

static void test_spec_sqlite_prefix(void **state) {
    fixture *f = *state;
    char err[STORE_ERR_LEN] = "", path[PATH_MAX + 32];
    store *st = NULL;
    store_change c;

    /* sqlite:PATH is the file PATH. */
    assert_int_equal(open_in(f->dir, f->spec, &st, err, sizeof err), 0);
    assert_string_equal(st->be->scheme, "sqlite");
    put_change(&c, 1, "web", 80, 1);
    apply_ok(st, &c, 1);
    store_close(st);
    assert_true(file_exists(f->db));
    assert_int_equal(dir_entries(f->dir), 1);
    st = open_ok(f->db);                                /* the same file, bare */
    assert_int_equal(count_instances(st), 1);
    store_close(st);

    /* sqlite: before a relative path that looks like a scheme. */
    assert_int_equal(open_in(f->dir, "sqlite:memory:x.db", &st, err, sizeof err), 0);
    assert_string_equal(st->be->scheme, "sqlite");
    store_close(st);
    snprintf(path, sizeof path, "%s/memory:x.db", f->dir);
    assert_true(file_exists(path));

    /* sqlite: needs a path. */
    st = (store *)&st;
    assert_int_equal(open_in(f->dir, "sqlite:", &st, err, sizeof err), -EINVAL);
    assert_null(st);
    assert_non_null(strstr(err, "path"));
    assert_int_equal(dir_entries(f->dir), 2);
}

static void test_spec_bare_path(void **state) {
    fixture *f = *state;
    char err[STORE_ERR_LEN] = "", path[PATH_MAX + 32];
    store *st = NULL;

    /* A path with ':' in it is a path. */
    snprintf(path, sizeof path, "%s/a:b.db", f->dir);
    st = open_ok(path);
    assert_string_equal(st->be->scheme, "sqlite");
    store_close(st);
    assert_true(file_exists(path));

    /* So is one that starts like a scheme but is not exactly one ... */
    assert_int_equal(open_in(f->dir, "./memory:y.db", &st, err, sizeof err), 0);
    assert_string_equal(st->be->scheme, "sqlite");
    store_close(st);
    assert_int_equal(open_in(f->dir, "Memory:z.db", &st, err, sizeof err), 0);
    assert_string_equal(st->be->scheme, "sqlite");
    store_close(st);
    assert_int_equal(open_in(f->dir, "memory", &st, err, sizeof err), 0);
    assert_string_equal(st->be->scheme, "sqlite");
    store_close(st);
    assert_int_equal(dir_entries(f->dir), 4);
    snprintf(path, sizeof path, "%s/memory:y.db", f->dir);
    assert_true(file_exists(path));
    snprintf(path, sizeof path, "%s/Memory:z.db", f->dir);
    assert_true(file_exists(path));
    snprintf(path, sizeof path, "%s/memory", f->dir);
    assert_true(file_exists(path));
}

static void test_spec_memory(void **state) {
    fixture *f = *state;
    char err[STORE_ERR_LEN] = "";
    store *a = NULL, *b = NULL;
    store_change c;

    assert_int_equal(open_in(f->dir, "memory:", &a, err, sizeof err), 0);
    assert_string_equal(a->be->scheme, "memory");
    assert_int_equal(open_in(f->dir, "memory:a", &b, err, sizeof err), 0);
    assert_string_equal(b->be->scheme, "memory");
    put_change(&c, 1, "web", 80, 1);
    apply_ok(a, &c, 1);
    assert_int_equal(count_instances(a), 1);
    assert_int_equal(count_instances(b), 0);            /* every open is a new store */
    store_close(b);
    b = NULL;
    assert_int_equal(open_in(f->dir, "memory:", &b, err, sizeof err), 0);
    assert_int_equal(count_instances(b), 0);            /* the name is no handle */
    store_close(a);
    store_close(b);
    assert_int_equal(dir_entries(f->dir), 0);           /* nothing on disk */
}

static void test_spec_unknown_scheme(void **state) {
    fixture *f = *state;
    /* etcd: takes a list of http(s) endpoints: anything else is named in the refusal. */
    static const char *const specs[] = { "etcd://127.0.0.1:2379/registry", "etcd:",
                                         "etcd:ftp://127.0.0.1:1",
                                         "etcd:http://127.0.0.1:1,,http://127.0.0.1:2",
                                         "etcd:http://127.0.0.1:1/path" };
    static const char *const says[] = { "//127.0.0.1:2379/registry", "no endpoint",
                                        "ftp://127.0.0.1:1", "empty endpoint",
                                        "http://127.0.0.1:1/path" };
    char err[STORE_ERR_LEN];
    store *st;

    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        st = (store *)&st;
        err[0] = '\0';
        assert_int_equal(open_in(f->dir, specs[i], &st, err, sizeof err), -EINVAL);
        assert_null(st);
        if (!strstr(err, says[i]))
            fail_msg("message \"%s\" does not name \"%s\"", err, says[i]);
    }
    assert_int_equal(dir_entries(f->dir), 0);
}

/* Bad arguments of the generic functions, and hooks given the other backend's handle. */
static void test_spec_bad_arguments(void **state) {
    fixture *f = *state;
    char err[STORE_ERR_LEN] = "";
    store *sq, *mem, *st = (store *)&st;
    evs e;

    assert_int_equal(store_open(NULL, NULL, &st, err, sizeof err), -EINVAL);
    assert_null(st);
    st = (store *)&st;
    assert_int_equal(store_open("", NULL, &st, err, sizeof err), -EINVAL);
    assert_null(st);
    assert_int_equal(store_open("memory:", NULL, NULL, err, sizeof err), -EINVAL);
    assert_int_equal(store_load(NULL, collect_row, NULL, err, sizeof err), -EINVAL);
    assert_int_equal(store_events(NULL, 0, 1, NULL, collect_event, &e, err, sizeof err),
                     -EINVAL);
    assert_int_equal(store_last_seq(NULL), 0);
    store_set_events_keep(NULL, 5);                     /* no-ops */
    store_close(NULL);

    sq = open_ok(f->db);
    mem = open_ok("memory:");
    assert_int_equal(store_test_schema_version(mem), -EINVAL);
    assert_int_equal(store_test_limit_pages(mem, 1), -EINVAL);
    assert_int_equal(store_test_set_query_only(mem, 1), -EINVAL);
    assert_int_equal(store_memory_fail(sq, 1), -EINVAL);
    assert_int_equal(store_memory_applies(sq), 0);
    assert_int_equal(store_memory_fail(NULL, 1), -EINVAL);
    assert_int_equal(store_test_schema_version(NULL), -EINVAL);
    /* Neither backend has the hooks of a distributed one. */
    assert_null(sq->be->follow);
    assert_null(sq->be->renew);
    assert_null(sq->be->unfollow);
    assert_false(store_shared(sq));
    assert_null(mem->be->follow);
    assert_null(mem->be->renew);
    assert_null(mem->be->unfollow);
    assert_false(store_shared(mem));
    assert_int_equal(store_etcd_test_break(sq, 1), -EINVAL);
    store_close(sq);
    store_close(mem);
}

/* ---------------------------------------------------------------------------------- */
/* Faults: the batch fails as a whole, the handle keeps working                        */

/* n PUTs with 1 KiB descriptions, ids/ports from base: enough to need new pages. */
static store_change *big_batch(unsigned base, size_t n, char *desc) {
    store_change *c = calloc(n, sizeof *c);

    assert_non_null(c);
    memset(desc, 'x', 1024);
    desc[1024] = '\0';
    for (size_t i = 0; i < n; i++) {
        put_change(&c[i], base + (unsigned)i, "bulk", 1000 + (int)(base + i), 7);
        c[i].inst.description = desc;
    }
    return c;
}

static void test_disk_full_rolls_back_and_recovers(void **state) {
    fixture *f = *state;
    store *st = open_ok(f->db);
    char err[STORE_ERR_LEN] = "", desc[1025];
    store_change c[5], *big;
    int64_t seq;

    for (unsigned i = 0; i < 5; i++)
        put_change(&c[i], i + 1, "web", 80 + (int)i, 1);
    apply_ok(st, c, 5);
    seq = store_last_seq(st);
    assert_int_equal(seq, 5);

    /* The cap cannot go below the current size: this means "no new page". */
    assert_int_equal(store_test_limit_pages(st, 1), 0);
    big = big_batch(100, 200, desc);
    assert_int_equal(store_apply(st, big, 200, err, sizeof err), STORE_EIO);
    assert_non_null(strstr(err, f->db));
    assert_non_null(strstr(err, "full"));
    for (size_t i = 0; i < 200; i++) {
        assert_int_equal(big[i].rc, STORE_EIO);
        assert_int_equal(big[i].event.seq, 0);
        assert_int_equal(big[i].existed, 0);
    }
    /* Nothing changed, reads still work. */
    assert_int_equal(count_instances(st), 5);
    assert_int_equal(count_events(st), 5);
    assert_int_equal(store_last_seq(st), 5);

    /* Space returns: the same batch commits on the same handle. */
    assert_int_equal(store_test_limit_pages(st, 0), 0);
    apply_ok(st, big, 200);
    for (size_t i = 0; i < 200; i++) {
        assert_int_equal(big[i].rc, 0);
        assert_int_equal(big[i].event.seq, seq + 1 + (int64_t)i);
    }
    store_close(st);

    st = open_ok(f->db);
    assert_int_equal(count_instances(st), 205);
    assert_int_equal(count_events(st), 205);
    store_close(st);
    free(big);
}

static void test_refused_writes_roll_back_and_recover(void **state) {
    fixture *f = *state;
    store *st = open_ok(f->db);
    char err[STORE_ERR_LEN] = "";
    store_change c[2];

    put_change(&c[0], 1, "web", 80, 1);
    apply_ok(st, c, 1);
    assert_int_equal(store_test_set_query_only(st, 1), 0);
    put_change(&c[0], 2, "web", 81, 1);
    delete_change(&c[1], 1, 1, 1);
    assert_int_equal(store_apply(st, c, 2, err, sizeof err), STORE_EIO);
    assert_non_null(strstr(err, "readonly"));
    assert_int_equal(c[0].rc, STORE_EIO);
    assert_int_equal(c[1].rc, STORE_EIO);
    assert_int_equal(count_instances(st), 1);
    assert_int_equal(store_test_set_query_only(st, 0), 0);
    apply_ok(st, c, 2);
    assert_int_equal(c[0].rc, 0);
    assert_int_equal(c[1].rc, 0);
    assert_int_equal(c[0].event.seq, 2);
    assert_int_equal(c[1].event.seq, 3);
    assert_int_equal(count_instances(st), 1);
    store_close(st);
}

/* Child-side checks: cmocka's asserts must not run in a forked child. */
#define CHILD_CHECK(cond)                                                           \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "child: %s:%d: check failed: %s (%s)\n", __FILE__,      \
                    __LINE__, #cond, err);                                          \
            _exit(1);                                                               \
        }                                                                           \
    } while (0)

static size_t child_count(store *st) {
    rows r = { 0 };
    if (store_load(st, collect_row, &r, NULL, 0) != 0)
        _exit(3);
    free(r.v);
    return r.n;
}

static void wait_child_ok(pid_t pid) {
    int status = 0;
    pid_t w;

    do {
        w = waitpid(pid, &status, 0);
    } while (w < 0 && errno == EINTR);
    assert_int_equal(w, pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* What kill -9 leaves on disk: the database and its WAL as they are after the last
 * commit, never checkpointed (copied while the writer's handle is still open; the
 * -shm is not needed, it is rebuilt). The next open, whose first look is read-only,
 * must see every committed change. The e2e tests do the same with a real kill -9. */
static void copy_file(const char *from, const char *to) {
    size_t len;
    unsigned char *buf = slurp(from, &len);

    write_file(to, buf, len);
    free(buf);
}

static void test_crash_keeps_committed(void **state) {
    fixture *f = *state;
    char wal[PATH_MAX + 8], copy[PATH_MAX + 16], copy_wal[PATH_MAX + 24];
    store_change c[100];
    store *st = open_ok(f->db);

    for (unsigned b = 0; b < 5; b++) {
        for (unsigned i = 0; i < 100; i++)
            put_change(&c[i], b * 100 + i + 1, "web", 1000 + (int)(b * 100 + i), 1);
        apply_ok(st, c, 100);
    }
    snprintf(wal, sizeof wal, "%s-wal", f->db);
    snprintf(copy, sizeof copy, "%s/crashed.db", f->dir);
    snprintf(copy_wal, sizeof copy_wal, "%s-wal", copy);
    copy_file(f->db, copy);
    copy_file(wal, copy_wal);
    store_close(st);

    st = open_ok(copy);
    assert_int_equal(count_instances(st), 500);
    assert_int_equal(count_events(st), 500);
    assert_int_equal(store_last_seq(st), 500);
    store_close(st);
}

/* A real write error (EFBIG from RLIMIT_FSIZE -> SQLITE_IOERR) in a child process. */
static void test_io_error_rolls_back_and_recovers(void **state) {
    fixture *f = *state;
    pid_t pid;

    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[STORE_ERR_LEN] = "", desc[1025], wal[PATH_MAX + 8];
        struct rlimit old, lim;
        struct stat sb;
        store_change c, *big;
        store *st = NULL;

        signal(SIGXFSZ, SIG_IGN);
        CHILD_CHECK(store_open(f->db, NULL, &st, err, sizeof err) == 0);
        put_change(&c, 1, "web", 80, 1);
        CHILD_CHECK(store_apply(st, &c, 1, err, sizeof err) == 0);
        snprintf(wal, sizeof wal, "%s-wal", f->db);
        CHILD_CHECK(stat(wal, &sb) == 0 && sb.st_size > 0);
        CHILD_CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
        lim = old;
        lim.rlim_cur = (rlim_t)sb.st_size;      /* no byte past the current WAL */
        CHILD_CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
        big = big_batch(100, 100, desc);
        CHILD_CHECK(store_apply(st, big, 100, err, sizeof err) == STORE_EIO);
        CHILD_CHECK(strstr(err, "I/O") != NULL);
        CHILD_CHECK(big[0].rc == STORE_EIO && big[99].rc == STORE_EIO);
        CHILD_CHECK(child_count(st) == 1);
        CHILD_CHECK(store_last_seq(st) == 1);
        CHILD_CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
        err[0] = '\0';
        CHILD_CHECK(store_apply(st, big, 100, err, sizeof err) == 0);
        CHILD_CHECK(big[0].rc == 0 && big[0].event.seq == 2 && big[99].event.seq == 101);
        CHILD_CHECK(child_count(st) == 101);
        store_close(st);
        free(big);
        _exit(0);
    }
    wait_child_ok(pid);

    store *st = open_ok(f->db);
    assert_int_equal(count_instances(st), 101);
    assert_int_equal(count_events(st), 101);
    store_close(st);
}

/* One instance in a database file that is then made read-only, for nobody when we are
 * root (root may write anything, so the forked child drops to nobody). */
static void seed_readonly(fixture *f) {
    store *st = open_ok(f->db);
    store_change c;

    put_change(&c, 1, "web", 80, 1);
    apply_ok(st, &c, 1);
    store_close(st);
    if (geteuid() == 0) {
        assert_int_equal(chown(f->dir, NOBODY_ID, NOBODY_ID), 0);
        assert_int_equal(chown(f->db, NOBODY_ID, NOBODY_ID), 0);
    }
    assert_int_equal(chmod(f->db, 0444), 0);
}

/* A database file this process may not write: opens read-only, lookups work, writes
 * fail with STORE_EIO, and resume once the file is writable. Root may write anything,
 * so the child becomes nobody first. */
static void test_readonly_file(void **state) {
    fixture *f = *state;
    store *st;
    pid_t pid;

    seed_readonly(f);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[STORE_ERR_LEN] = "";
        store_change d;
        store *ro = NULL;

        if (geteuid() == 0)
            CHILD_CHECK(setgid(NOBODY_ID) == 0 && setuid(NOBODY_ID) == 0);
        CHILD_CHECK(access(f->db, W_OK) != 0);
        CHILD_CHECK(store_open(f->db, NULL, &ro, err, sizeof err) == 0);
        CHILD_CHECK(child_count(ro) == 1);
        CHILD_CHECK(store_last_seq(ro) == 1);
        put_change(&d, 2, "web", 81, 2);
        CHILD_CHECK(store_apply(ro, &d, 1, err, sizeof err) == STORE_EIO);
        CHILD_CHECK(strstr(err, "read-only") != NULL && strstr(err, f->db) != NULL);
        CHILD_CHECK(d.rc == STORE_EIO);
        CHILD_CHECK(child_count(ro) == 1);
        /* Writable again: the next batch goes through on the same handle. */
        CHILD_CHECK(chmod(f->db, 0644) == 0);
        err[0] = '\0';
        CHILD_CHECK(store_apply(ro, &d, 1, err, sizeof err) == 0);
        CHILD_CHECK(d.rc == 0 && d.event.seq == 2);
        CHILD_CHECK(child_count(ro) == 2);
        store_close(ro);
        _exit(0);
    }
    wait_child_ok(pid);

    st = open_ok(f->db);
    assert_int_equal(count_instances(st), 2);
    store_close(st);
}

/* A reader of the read-only file leaves -wal/-shm behind with the file's read-only
 * mode; once the file is writable again a new start must write, not stay read-only. */
static void test_readonly_then_writable_restart(void **state) {
    fixture *f = *state;
    store *st;
    pid_t pid;

    seed_readonly(f);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[STORE_ERR_LEN] = "", wal[PATH_MAX + 8];
        store_change d;
        store *s2 = NULL;

        if (geteuid() == 0)
            CHILD_CHECK(setgid(NOBODY_ID) == 0 && setuid(NOBODY_ID) == 0);
        CHILD_CHECK(store_open(f->db, NULL, &s2, err, sizeof err) == 0);
        CHILD_CHECK(child_count(s2) == 1);
        store_close(s2);
        snprintf(wal, sizeof wal, "%s-wal", f->db);
        CHILD_CHECK(access(wal, F_OK) == 0 && access(wal, W_OK) != 0);

        CHILD_CHECK(chmod(f->db, 0644) == 0);
        s2 = NULL;
        CHILD_CHECK(store_open(f->db, NULL, &s2, err, sizeof err) == 0);
        put_change(&d, 2, "web", 81, 2);
        CHILD_CHECK(store_apply(s2, &d, 1, err, sizeof err) == 0);
        CHILD_CHECK(child_count(s2) == 2);
        store_close(s2);
        _exit(0);
    }
    wait_child_ok(pid);
    st = open_ok(f->db);
    assert_int_equal(count_instances(st), 2);
    store_close(st);
}

static void test_readonly_uninitialised_file(void **state) {
    fixture *f = *state;
    pid_t pid;

    write_file(f->db, "", 0);
    if (geteuid() == 0) {
        assert_int_equal(chown(f->dir, NOBODY_ID, NOBODY_ID), 0);
        assert_int_equal(chown(f->db, NOBODY_ID, NOBODY_ID), 0);
    }
    assert_int_equal(chmod(f->db, 0444), 0);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[STORE_ERR_LEN] = "";
        store *ro = (store *)&ro;

        if (geteuid() == 0)
            CHILD_CHECK(setgid(NOBODY_ID) == 0 && setuid(NOBODY_ID) == 0);
        CHILD_CHECK(store_open(f->db, NULL, &ro, err, sizeof err) == STORE_EIO);
        CHILD_CHECK(ro == NULL);
        CHILD_CHECK(strstr(err, "read-only") != NULL && strstr(err, f->db) != NULL);
        _exit(0);
    }
    wait_child_ok(pid);
    {
        struct stat sb;
        assert_int_equal(stat(f->db, &sb), 0);
        assert_int_equal(sb.st_size, 0);
    }
}

/* ---------------------------------------------------------------------------------- */
/* One registryd per database: the lock                                                */

/* What a refused open says: the path as it was given, and the holder's pid. */
static void in_use_message(char *buf, size_t len, const char *path, long pid) {
    if (pid > 0)
        snprintf(buf, len, "database %s is in use by another registryd, pid %ld", path, pid);
    else
        snprintf(buf, len, "database %s is in use by another registryd, pid unknown", path);
}

/* store_open(spec) in dir must fail with -EBUSY and exactly that message for path. */
static void expect_in_use(const char *dir, const char *spec, const char *path, long pid) {
    char err[STORE_ERR_LEN] = "", want[PATH_MAX + 96];
    store *st = (store *)&st;

    assert_int_equal(open_in(dir, spec, &st, err, sizeof err), -EBUSY);
    assert_null(st);
    in_use_message(want, sizeof want, path, pid);
    assert_string_equal(err, want);
}

/* The side file naming the holder: beside the database's real path. */
static void pid_file(const fixture *f, char *buf, size_t len) {
    char real[PATH_MAX];

    assert_non_null(realpath(f->db, real));
    snprintf(buf, len, "%s.pid", real);
}

/* A second handle on an open database, in the same process and under any spelling of
 * its path, is refused with a message naming the path and the holder, and changes no
 * byte of the database or its WAL; the first handle keeps working; once it is closed
 * the database opens again and nothing of the lock is left on disk. */
static void test_second_open_refused(void **state) {
    fixture *f = *state;
    char sym[PATH_MAX + 16], hard[PATH_MAX + 16], wal[PATH_MAX + 8], pidf[PATH_MAX + 8];
    char want[32];
    unsigned char *db0, *wal0, *db1, *wal1, *text;
    size_t dlen0, wlen0, dlen1, wlen1, tlen;
    store_change c;
    store *a, *b;

    a = open_ok(f->db);
    put_change(&c, 1, "web", 80, 1);
    apply_ok(a, &c, 1);
    snprintf(wal, sizeof wal, "%s-wal", f->db);
    snprintf(sym, sizeof sym, "%s/link.db", f->dir);
    snprintf(hard, sizeof hard, "%s/hard.db", f->dir);
    assert_int_equal(symlink("registry.db", sym), 0);
    assert_int_equal(link(f->db, hard), 0);
    db0 = slurp(f->db, &dlen0);
    wal0 = slurp(wal, &wlen0);

    expect_in_use(f->dir, f->db, f->db, (long)getpid());
    expect_in_use(f->dir, f->spec, f->db, (long)getpid());     /* sqlite:PATH */
    expect_in_use(f->dir, "registry.db", "registry.db", (long)getpid());
    expect_in_use(f->dir, "./registry.db", "./registry.db", (long)getpid());
    expect_in_use(f->dir, sym, sym, (long)getpid());
    expect_in_use(f->dir, "hard.db", "hard.db", (long)getpid());
    {
        char err[STORE_ERR_LEN] = "";
        store *st = (store *)&st;
        assert_int_equal(store_test_open_with(f->db, NULL, schema_migrations,
                                              schema_migrations_count, &st, err, sizeof err),
                         -EBUSY);
        assert_null(st);
    }

    db1 = slurp(f->db, &dlen1);
    wal1 = slurp(wal, &wlen1);
    assert_int_equal(dlen1, dlen0);
    assert_memory_equal(db1, db0, dlen0);
    assert_int_equal(wlen1, wlen0);
    assert_memory_equal(wal1, wal0, wlen0);
    free(db0);
    free(wal0);
    free(db1);
    free(wal1);

    /* The holder names itself in the side file. */
    pid_file(f, pidf, sizeof pidf);
    text = slurp(pidf, &tlen);
    snprintf(want, sizeof want, "%ld\n", (long)getpid());
    assert_int_equal(tlen, strlen(want));
    assert_memory_equal(text, want, tlen);
    free(text);

    /* The first handle is untouched by all that. */
    put_change(&c, 2, "web", 81, 2);
    apply_ok(a, &c, 1);
    assert_int_equal(count_instances(a), 2);
    store_close(a);
    assert_false(file_exists(pidf));

    b = open_ok(sym);                                  /* free again, by any name */
    assert_int_equal(count_instances(b), 2);
    expect_in_use(f->dir, f->db, f->db, (long)getpid());
    store_close(b);
    b = open_ok(f->db);
    store_close(b);
    assert_int_equal(dir_entries(f->dir), 3);           /* the database and its 2 names */
}

/* Another process meets the lock in the kernel (flock on the database file): its own
 * flock fails, store_open names the holder from the side file ("pid unknown" without
 * one, or when it names no live process). */
static void test_lock_seen_by_other_process(void **state) {
    fixture *f = *state;
    char pidf[PATH_MAX + 8];
    long parent = (long)getpid();
    store_change c;
    store *a = open_ok(f->db);
    pid_t pid;

    pid_file(f, pidf, sizeof pidf);
    for (int round = 0; round < 3; round++) {
        long expect = parent;

        if (round == 1) {
            assert_int_equal(unlink(pidf), 0);
            expect = 0;
        } else if (round == 2) {
            write_file(pidf, "999999999\n", 10);        /* above any pid_max */
            expect = 0;
        }
        fflush(NULL);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            char err[STORE_ERR_LEN] = "", want[PATH_MAX + 96];
            store *st = (store *)&st;
            int fd;

            /* The child shares the parent's descriptor; a new one conflicts. */
            fd = open(f->db, O_RDONLY | O_CLOEXEC);
            CHILD_CHECK(fd >= 0);
            CHILD_CHECK(flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK);
            CHILD_CHECK(flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK);
            close(fd);
            CHILD_CHECK(store_open(f->db, NULL, &st, err, sizeof err) == -EBUSY);
            CHILD_CHECK(st == NULL);
            in_use_message(want, sizeof want, f->db, expect);
            CHILD_CHECK(strcmp(err, want) == 0);
            _exit(0);
        }
        wait_child_ok(pid);
    }
    /* SQLite's own locks never met ours: the holder still writes. */
    put_change(&c, 1, "web", 80, 1);
    apply_ok(a, &c, 1);
    store_close(a);
}

/* The lock goes with its process, however it ends: a holder killed with SIGKILL (no
 * store_close, its side file left behind naming a dead pid) blocks nobody. */
static void test_lock_released_by_kill9(void **state) {
    fixture *f = *state;
    char pidf[PATH_MAX + 8], want[32];
    unsigned char *text;
    size_t tlen;
    int status = 0;
    store *st;
    pid_t pid, w;

    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[STORE_ERR_LEN] = "";
        store_change c;
        store *held = NULL;

        CHILD_CHECK(store_open(f->db, NULL, &held, err, sizeof err) == 0);
        put_change(&c, 1, "web", 80, 1);
        CHILD_CHECK(store_apply(held, &c, 1, err, sizeof err) == 0);
        raise(SIGKILL);
        _exit(2);
    }
    do {
        w = waitpid(pid, &status, 0);
    } while (w < 0 && errno == EINTR);
    assert_int_equal(w, pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    pid_file(f, pidf, sizeof pidf);
    assert_true(file_exists(pidf));                     /* stale, and harmless */

    st = open_ok(f->db);
    assert_int_equal(count_instances(st), 1);
    text = slurp(pidf, &tlen);                          /* now names this process */
    snprintf(want, sizeof want, "%ld\n", (long)getpid());
    assert_int_equal(tlen, strlen(want));
    assert_memory_equal(text, want, tlen);
    free(text);
    store_close(st);
    assert_int_equal(dir_entries(f->dir), 1);
}

/* ---------------------------------------------------------------------------------- */
/* Files that are not ours: refused, never modified                                    */

/* Opening must fail with STORE_ECORRUPT, a message holding `want` and the path, and
 * leave the file byte for byte as it was. */
static void expect_refused(const char *path, const char *want) {
    char err[STORE_ERR_LEN] = "";
    unsigned char *before, *after;
    size_t blen, alen;
    store *st = (store *)&st;

    before = slurp(path, &blen);
    assert_int_equal(store_open(path, NULL, &st, err, sizeof err), STORE_ECORRUPT);
    assert_null(st);
    if (!strstr(err, want) || !strstr(err, path))
        fail_msg("message \"%s\" lacks \"%s\" or the path", err, want);
    after = slurp(path, &alen);
    assert_int_equal(alen, blen);
    assert_memory_equal(after, before, blen);
    free(before);
    free(after);
}

/* A small SQLite database written by another program (sqlite3 3.40 CLI):
 *   PRAGMA page_size=512; CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT);
 *   INSERT INTO customers VALUES(1,'alice');
 * 1024 bytes, given as its non-zero runs. */
static const struct { unsigned off, len; const char *bytes; } foreign_db[] = {
    {    0,  32, "\x53\x51\x4c\x69\x74\x65\x20\x66\x6f\x72\x6d\x61\x74\x20\x33\x00"
                 "\x02\x00\x01\x01\x00\x40\x20\x20\x00\x00\x00\x02\x00\x00\x00\x02" },
    {   43,   5, "\x01\x00\x00\x00\x04" },
    {   59,   1, "\x01" },
    {   95,  15, "\x02\x00\x2e\x63\x01\x0d\x00\x00\x00\x01\x01\xa7\x00\x01\xa7" },
    {  423,  99, "\x57\x01\x06\x17\x1f\x1f\x01\x7f\x74\x61\x62\x6c\x65\x63\x75\x73"
                 "\x74\x6f\x6d\x65\x72\x73\x63\x75\x73\x74\x6f\x6d\x65\x72\x73\x02"
                 "\x43\x52\x45\x41\x54\x45\x20\x54\x41\x42\x4c\x45\x20\x63\x75\x73"
                 "\x74\x6f\x6d\x65\x72\x73\x28\x69\x64\x20\x49\x4e\x54\x45\x47\x45"
                 "\x52\x20\x50\x52\x49\x4d\x41\x52\x59\x20\x4b\x45\x59\x2c\x20\x6e"
                 "\x61\x6d\x65\x20\x54\x45\x58\x54\x29\x0d\x00\x00\x00\x01\x01\xf6"
                 "\x00\x01\xf6" },
    { 1014,  10, "\x08\x01\x03\x00\x17\x61\x6c\x69\x63\x65" },
};

static void test_foreign_sqlite_refused(void **state) {
    fixture *f = *state;
    unsigned char buf[1024] = { 0 };

    for (size_t i = 0; i < sizeof foreign_db / sizeof foreign_db[0]; i++)
        memcpy(buf + foreign_db[i].off, foreign_db[i].bytes, foreign_db[i].len);
    write_file(f->db, buf, sizeof buf);
    expect_refused(f->db, "is not a registry database (found table customers)");
    assert_int_equal(dir_entries(f->dir), 1);   /* no journal or WAL left behind */
}

static void test_garbage_refused(void **state) {
    fixture *f = *state;
    unsigned char buf[4096];

    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 7 + 3);
    write_file(f->db, buf, sizeof buf);
    expect_refused(f->db, "is not an SQLite database");
    assert_int_equal(dir_entries(f->dir), 1);

    write_file(f->db, "hello\n", 6);                /* shorter than a header */
    expect_refused(f->db, "is not an SQLite database");

    /* The right magic, then junk. */
    memcpy(buf, "SQLite format 3", 16);
    write_file(f->db, buf, sizeof buf);
    expect_refused(f->db, f->db);
}

static void test_corrupt_database_refused(void **state) {
    fixture *f = *state;
    store *st = open_ok(f->db);
    store_change *c = calloc(300, sizeof *c);
    unsigned char *buf;
    size_t len;

    assert_non_null(c);
    for (unsigned i = 0; i < 300; i++)
        put_change(&c[i], i + 1, "web", 1000 + (int)i, 1);
    apply_ok(st, c, 300);
    store_close(st);
    free(c);

    /* Wreck the b-tree page headers of pages 2.. (page 1, the schema, stays sound). */
    buf = slurp(f->db, &len);
    assert_true(len >= 4 * 4096);
    for (size_t p = 1; p < len / 4096; p++)
        memset(buf + p * 4096, 0xee, 8);
    write_file(f->db, buf, len);
    free(buf);
    expect_refused(f->db, "corrupt");
}

/* Migrations for tests: the real ones plus what a test needs (the store's statements
 * need every real migration's columns). */
static schema_migration mig[16];

/* Copies the real migrations into mig; returns how many. */
static size_t real_migrations(void) {
    assert_true(schema_migrations_count + 3 <= sizeof mig / sizeof mig[0]);
    for (size_t i = 0; i < schema_migrations_count; i++)
        mig[i] = schema_migrations[i];
    return schema_migrations_count;
}

static void test_newer_version_refused(void **state) {
    fixture *f = *state;
    char err[STORE_ERR_LEN] = "";
    store *st = NULL;

    size_t n = real_migrations();
    mig[n] = (schema_migration){ latest_version() + 1, "future",
                                 "CREATE TABLE future (x INTEGER);" };
    assert_int_equal(store_test_open_with(f->db, NULL, mig, n + 1, &st, err, sizeof err), 0);
    assert_int_equal(store_test_schema_version(st), latest_version() + 1);
    store_close(st);
    expect_refused(f->db, "newer than this registryd supports");
}

static void test_extra_table_refused(void **state) {
    fixture *f = *state;
    char err[STORE_ERR_LEN] = "";
    char *sql;
    store *st = NULL;
    size_t len;

    /* Our schema_version and tables, plus one nobody here created. */
    size_t n = real_migrations();
    len = strlen(mig[n - 1].sql) + 64;
    sql = malloc(len);
    assert_non_null(sql);
    snprintf(sql, len, "%s\nCREATE TABLE customers (x);", mig[n - 1].sql);
    mig[n - 1].sql = sql;
    assert_int_equal(store_test_open_with(f->db, NULL, mig, n, &st, err, sizeof err), 0);
    store_close(st);
    free(sql);
    expect_refused(f->db, "is not a registry database (found table customers)");
}

static void test_missing_table_refused(void **state) {
    fixture *f = *state;
    char err[STORE_ERR_LEN] = "";
    store *st = NULL;

    mig[0] = (schema_migration){ 1, "init",
                                 "CREATE TABLE schema_version (version INTEGER NOT NULL);" };
    /* Opening with this list fails to prepare (no instances table) ... */
    assert_int_equal(store_test_open_with(f->db, NULL, mig, 1, &st, err, sizeof err),
                     STORE_EIO);
    assert_null(st);
    /* ... but version 1 was committed: the real 001 finds its tables missing. */
    expect_refused(f->db, "is missing");
}

/* ---------------------------------------------------------------------------------- */
/* Migrations                                                                          */

static void test_migrates_older_version(void **state) {
    fixture *f = *state;
    char err[STORE_ERR_LEN] = "";
    store *st = NULL;
    store_change c;
    evs *e;
    rows r;

    /* A database at the current version with data in it. */
    size_t n = real_migrations();
    int v = latest_version();
    assert_int_equal(store_test_open_with(f->db, NULL, mig, n, &st, err, sizeof err), 0);
    assert_int_equal(store_test_schema_version(st), v);
    put_change(&c, 1, "web", 80, 1);
    apply_ok(st, &c, 1);
    store_close(st);

    /* This "registryd" knows two more versions (a gap is fine). */
    mig[n] = (schema_migration){ v + 1, "zone",
                                 "ALTER TABLE instances ADD COLUMN zone TEXT;\n"
                                 "INSERT INTO events (ts, event) VALUES (0, 'migrated');\n" };
    mig[n + 1] = (schema_migration){ v + 4, "zone_index",
                                     "CREATE INDEX instances_zone ON instances (zone);" };
    assert_int_equal(store_test_open_with(f->db, NULL, mig, n + 2, &st, err, sizeof err), 0);
    assert_int_equal(store_test_schema_version(st), v + 4);
    r = load_all(st);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.v[0].in.id, "0000000000000001");
    free(r.v);
    e = events_since(st, 0, 100, NULL);
    assert_int_equal(e->n, 2);
    assert_string_equal(e->v[1].event, "migrated");
    free(e);
    assert_int_equal(store_last_seq(st), 2);
    store_close(st);

    /* Applied once only. */
    assert_int_equal(store_test_open_with(f->db, NULL, mig, n + 2, &st, err, sizeof err), 0);
    assert_int_equal(count_events(st), 2);
    store_close(st);
}

static void test_failed_migration_rolls_back(void **state) {
    fixture *f = *state;
    char err[STORE_ERR_LEN] = "";
    store *st = NULL;
    store_change c;

    size_t n = real_migrations();
    assert_int_equal(store_test_open_with(f->db, NULL, mig, n, &st, err, sizeof err), 0);
    put_change(&c, 1, "web", 80, 1);
    apply_ok(st, &c, 1);
    store_close(st);

    mig[n] = (schema_migration){ latest_version() + 1, "broken",
                                 "CREATE TABLE half (x);\n"
                                 "INSERT INTO no_such_table VALUES (1);\n" };
    assert_int_equal(store_test_open_with(f->db, NULL, mig, n + 1, &st, err, sizeof err),
                     STORE_EIO);
    assert_null(st);
    assert_non_null(strstr(err, "migration"));
    assert_non_null(strstr(err, "no_such_table"));

    /* Still the current version and nothing of the failed step left (a stray table
     * "half" would be refused as foreign). */
    assert_int_equal(store_test_open_with(f->db, NULL, mig, n, &st, err, sizeof err), 0);
    assert_int_equal(store_test_schema_version(st), latest_version());
    assert_int_equal(count_instances(st), 1);
    store_close(st);
}

static void test_bad_migration_lists(void **state) {
    fixture *f = *state;
    char err[STORE_ERR_LEN] = "";
    store *st = NULL;

    assert_int_equal(store_test_open_with(f->db, NULL, NULL, 0, &st, err, sizeof err), -EINVAL);
    mig[0] = (schema_migration){ 2, "a", "" };
    mig[1] = (schema_migration){ 2, "b", "" };     /* not increasing */
    assert_int_equal(store_test_open_with(f->db, NULL, mig, 2, &st, err, sizeof err), -EINVAL);
    mig[0] = (schema_migration){ 0, "zero", "" };
    assert_int_equal(store_test_open_with(f->db, NULL, mig, 1, &st, err, sizeof err), -EINVAL);
    assert_false(file_exists(f->db));
}

/* The same test against each backend: "sqlite_NAME" and "memory_NAME". */
#define BOTH(name)                                                                  \
    { "sqlite_" #name, test_##name, setup_sqlite, teardown, NULL },                \
    { "memory_" #name, test_##name, setup_memory, teardown, NULL }
#define SQLITE_ONLY(name) { "sqlite_" #name, test_##name, setup_sqlite, teardown, NULL }
#define MEMORY_ONLY(name) { "memory_" #name, test_##name, setup_memory, teardown, NULL }
#define SPEC(name) { "spec_" #name, test_spec_##name, setup_sqlite, teardown, NULL }

/* With REG_TEST_ETCD, the contract runs against etcd too ("etcd_NAME"). */
#define ETCD(name) { "etcd_" #name, test_##name, setup_etcd, teardown, NULL }

int main(void) {
    const struct CMUnitTest etcd_tests[] = {
        ETCD(open_is_empty),
        ETCD(maintenance),
        ETCD(keeps_every_field),
        ETCD(put_new_then_existing),
        ETCD(put_same_service_other_endpoints),
        ETCD(put_id_collision),
        ETCD(put_ids),
        ETCD(put_chosen_ids),
        ETCD(put_invalid),
        ETCD(invalid_changes),
        ETCD(put_copies_strings),
        ETCD(batch_1000_puts),
        ETCD(delete_with_token),
        ETCD(delete_wrong_token),
        ETCD(delete_unknown),
        ETCD(delete_without_token),
        ETCD(health),
        ETCD(health_keeps_other_fields),
        ETCD(batch_applies_in_order),
        ETCD(reregister_keeps_order),
        ETCD(failed_batch_changes_nothing),
        ETCD(events_trimmed_to_keep),
        ETCD(events_keep_option),
        ETCD(events_query),
        ETCD(load_callback_stops),
        ETCD(once),
    };
    if (getenv("REG_TEST_ETCD") != NULL && getenv("REG_TEST_ETCD")[0] != '\0')
        return cmocka_run_group_tests_name("test_store_etcd", etcd_tests, NULL, NULL);
    const struct CMUnitTest tests[] = {
        /* The contract, against each backend. */
        BOTH(open_is_empty),
        BOTH(maintenance),
        BOTH(keeps_every_field),
        BOTH(put_new_then_existing),
        BOTH(put_same_service_other_endpoints),
        BOTH(put_id_collision),
        BOTH(put_ids),
        BOTH(put_chosen_ids),
        BOTH(put_invalid),
        BOTH(invalid_changes),
        BOTH(put_copies_strings),
        BOTH(batch_1000_puts),
        BOTH(delete_with_token),
        BOTH(delete_wrong_token),
        BOTH(delete_unknown),
        BOTH(delete_without_token),
        BOTH(health),
        BOTH(health_keeps_other_fields),
        BOTH(batch_applies_in_order),
        BOTH(reregister_keeps_order),
        BOTH(failed_batch_changes_nothing),
        BOTH(events_trimmed_to_keep),
        BOTH(events_keep_option),
        BOTH(events_query),
        BOTH(load_callback_stops),
        BOTH(once),
        /* store_open's specs. */
        SPEC(sqlite_prefix),
        SPEC(bare_path),
        SPEC(memory),
        SPEC(unknown_scheme),
        SPEC(bad_arguments),
        /* The memory backend's hooks. */
        MEMORY_ONLY(memory_fail_and_applies),
        /* What only a database file has. */
        SQLITE_ONLY(open_new_path),
        SQLITE_ONLY(open_empty_file),
        SQLITE_ONLY(open_sync_normal),
        SQLITE_ONLY(open_bad_paths),
        SQLITE_ONLY(disk_full_rolls_back_and_recovers),
        SQLITE_ONLY(refused_writes_roll_back_and_recover),
        SQLITE_ONLY(crash_keeps_committed),
        SQLITE_ONLY(io_error_rolls_back_and_recovers),
        SQLITE_ONLY(readonly_file),
        SQLITE_ONLY(readonly_then_writable_restart),
        SQLITE_ONLY(readonly_uninitialised_file),
        SQLITE_ONLY(second_open_refused),
        SQLITE_ONLY(lock_seen_by_other_process),
        SQLITE_ONLY(lock_released_by_kill9),
        SQLITE_ONLY(foreign_sqlite_refused),
        SQLITE_ONLY(garbage_refused),
        SQLITE_ONLY(corrupt_database_refused),
        SQLITE_ONLY(newer_version_refused),
        SQLITE_ONLY(extra_table_refused),
        SQLITE_ONLY(missing_table_refused),
        SQLITE_ONLY(migrates_older_version),
        SQLITE_ONLY(failed_migration_rolls_back),
        SQLITE_ONLY(bad_migration_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
