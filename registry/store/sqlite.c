/* SPDX-License-Identifier: BSD-2-Clause */
/* sqlite.c — the "sqlite" backend of store.h (sqlite:PATH, or a bare path): the durable
 * store of registryd, and with the migrations the only code of the project that speaks
 * SQL. Reached through store_sqlite_backend; its test hooks are in sqlite.h.
 *
 * One connection per handle, WAL journal, synchronous FULL or NORMAL. Every statement
 * that runs after start-up is prepared once into st->stmt[] (indexed by enum stmt_id,
 * as SQLite's own ext/fts5/fts5_storage.c does) and used as bind -> step -> reset; no
 * value ever goes into SQL text.
 *
 * Opening is careful with files that are not ours: an existing non-empty file is first
 * checked by hand (SQLite magic) and then inspected over a READ-ONLY connection (schema
 * version, the set of tables, PRAGMA quick_check) before any read-write connection
 * exists, so a corrupt, foreign or too-new file is reported and never modified. A
 * database the process may not write is still opened (read-only) when its schema is
 * current: loads and event reads work, store_apply fails with STORE_EIO, and each call
 * checks (cheaply) whether the file has become writable and then re-opens read-write,
 * so writes resume by themselves.
 *
 * One registryd per database: before anything else (before the first look, a migration
 * or any connection) store_open takes flock(LOCK_EX | LOCK_NB) on a descriptor of the
 * database file itself, held until store_close (or the process's exit, even by kill -9:
 * the kernel drops the lock with the last descriptor, so a crash never leaves a stale
 * lock). A second open of the same file fails with -EBUSY and "database PATH is in use
 * by another registryd, pid N", having written nothing. Why the file itself and not a
 * lock file beside it: the lock follows the inode, so every spelling of the path
 * (relative, through a symlink, a hard link) conflicts, and a read-only file or
 * directory needs nothing created (flock works on an O_RDONLY descriptor), so read-only
 * starts behave exactly as before. flock locks are independent of the POSIX (fcntl)
 * locks SQLite takes on the same file on Linux, so SQLite's locking is untouched (not
 * so on NFS, where flock is emulated with fcntl locks; WAL needs a local file system
 * anyway). The lock conflicts between two handles of one process too (flock belongs to
 * the open file description), but a second handle of this process is refused before
 * any descriptor is opened (the `held` list): closing a descriptor of a file drops
 * every POSIX lock the process holds on it, SQLite's included. The holder's pid, for
 * the message only, is in a side file: the database's real path + ".pid" (the same
 * for every spelling but a hard link), written after the lock is taken and removed by
 * store_close. A reader believes it only when that pid is alive; when there is none
 * to believe (a read-only directory, a crashed holder's leftover) the message says
 * "pid unknown". The lock, never the side file's existence, decides.
 */
#include "store/store.h"
#include "store/backend.h"
#include "store/schema.h"
#include "store/sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <sqlite3.h>

#define STORE_BUSY_TIMEOUT_MS     5000          /* another process holding the lock */
/* The WAL may stay this large after a big batch (64 MiB), not as large as the batch. */
#define STORE_JOURNAL_LIMIT_SQL   "PRAGMA journal_size_limit = 67108864"

/* The statements used after start-up, prepared once per connection. */
enum stmt_id {
    STMT_BEGIN,             /* BEGIN IMMEDIATE: take the write lock up front */
    STMT_COMMIT,
    STMT_ROLLBACK,
    STMT_FIND_ENDPOINT,     /* id of (service, host, port) */
    STMT_INSERT_INSTANCE,
    STMT_UPDATE_INSTANCE,   /* re-registration: everything but id/service/host/port */
    STMT_DELETE,
    STMT_DELETE_TOKEN,      /* only if the token hash matches */
    STMT_EXISTS,
    STMT_HEALTH,
    STMT_MAINTENANCE,
    STMT_INSERT_EVENT,
    STMT_TRIM_EVENTS,
    STMT_LOAD,
    STMT_EVENTS,
    STMT_EVENTS_SERVICE,
    STMT_SEQ_BOUNDS,        /* last seq ever handed out, lowest seq still present */
    STMT__COUNT
};

/* Parameter numbers are shared by INSERT and UPDATE of instances (bind_instance). */
static const char *const stmt_sql[STMT__COUNT] = {
    [STMT_BEGIN] = "BEGIN IMMEDIATE",
    [STMT_COMMIT] = "COMMIT",
    [STMT_ROLLBACK] = "ROLLBACK",
    [STMT_FIND_ENDPOINT] =
        "SELECT id FROM instances WHERE service = ?1 AND host = ?2 AND port = ?3",
    [STMT_INSERT_INSTANCE] =
        "INSERT INTO instances (id, service, host, port, description, tags_json, ttl,"
        " check_kind, token_hash, registered_at, last_seen, last_check, status, failures,"
        " maintenance)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    [STMT_UPDATE_INSTANCE] =
        "UPDATE instances SET description = ?5, tags_json = ?6, ttl = ?7, check_kind = ?8,"
        " token_hash = ?9, registered_at = ?10, last_seen = ?11, last_check = ?12,"
        " status = ?13, failures = ?14"
        " WHERE id = ?1 AND service = ?2 AND host = ?3 AND port = ?4",
    [STMT_DELETE] = "DELETE FROM instances WHERE id = ?1",
    [STMT_DELETE_TOKEN] = "DELETE FROM instances WHERE id = ?1 AND token_hash = ?2",
    [STMT_EXISTS] = "SELECT 1 FROM instances WHERE id = ?1",
    [STMT_HEALTH] =
        "UPDATE instances SET status = ?2, failures = ?3, last_seen = ?4, last_check = ?5"
        " WHERE id = ?1",
    [STMT_MAINTENANCE] = "UPDATE instances SET maintenance = ?2 WHERE id = ?1",
    [STMT_INSERT_EVENT] =
        "INSERT INTO events (ts, event, service, instance_id, host, port, detail)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [STMT_TRIM_EVENTS] = "DELETE FROM events WHERE seq <= ?1",
    [STMT_LOAD] =
        "SELECT id, service, host, port, description, tags_json, ttl, check_kind,"
        " token_hash, registered_at, last_seen, last_check, status, failures, maintenance"
        " FROM instances ORDER BY rowid",
    [STMT_EVENTS] =
        "SELECT seq, ts, event, service, instance_id, host, port, detail FROM events"
        " WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    [STMT_EVENTS_SERVICE] =
        "SELECT seq, ts, event, service, instance_id, host, port, detail FROM events"
        " WHERE service = ?3 AND seq > ?1 ORDER BY seq LIMIT ?2",
    [STMT_SEQ_BOUNDS] =
        "SELECT (SELECT seq FROM sqlite_sequence WHERE name = 'events'),"
        " (SELECT min(seq) FROM events)",
};

/* The handle: base first, so a store * from store_open is a sqlite_store *. */
typedef struct sqlite_store {
    store base;                         /* base.be == &store_sqlite_backend */
    sqlite3 *db;                        /* NULL only while being built */
    sqlite3_stmt *stmt[STMT__COUNT];    /* owned, finalized before db is closed */
    char *path;                         /* owned copy: for messages and re-opening */
    int sync_full;                      /* synchronous=FULL (else NORMAL) */
    int relaxed;                        /* sync_full, but synchronous=NORMAL right now */
    int readonly;                       /* opened read-only: writes need a re-open */
    const schema_migration *mig;        /* borrowed, static storage */
    size_t nmig;
    int version;                        /* schema version of the open database */
    int64_t events_keep;                /* bound of the events table */
    int64_t last_seq;                   /* newest seq ever handed out (0: none) */
    int64_t min_seq;                    /* lowest seq that may still be in the table */
    int64_t test_max_pages;             /* store_test_limit_pages: the original cap */
    /* The database lock (lock_db): lock_fd holds flock(LOCK_EX) on the database file,
     * -1 when there is none (":memory:", or not taken yet). */
    int lock_fd;
    dev_t lock_dev;                     /* the locked file, to find it in `held` */
    ino_t lock_ino;
    pid_t lock_pid;                     /* the process that took it (not a forked child) */
    off_t lock_size;                    /* the file's size when it was locked */
    struct sqlite_store *lock_next;     /* next in `held` */
    char *pid_path;                     /* owned: REALPATH.pid, the holder's pid as text */
    int pid_file_ours;                  /* we wrote pid_path: store_close removes it */
} sqlite_store;

/* STORE_ECORRUPT for "this is not (or no longer) a sound database", else STORE_EIO. */
static int map_rc(int rc) {
    switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return STORE_ECORRUPT;
    default:
        return STORE_EIO;
    }
}

/* How a message names a failed read: so "corrupt" appears whenever it is the cause. */
static const char *failure_words(int rc) {
    return map_rc(rc) == STORE_ECORRUPT ? "is corrupt" : "cannot be read";
}

/* Frees every prepared statement of a connection; the array may be partly filled. */
static void finalize_all(sqlite3_stmt **stmt) {
    for (int i = 0; i < STMT__COUNT; i++) {
        sqlite3_finalize(stmt[i]);
        stmt[i] = NULL;
    }
}

/* Prepares the statement array of db. On failure the array is left empty. */
static int prepare_all(sqlite3 *db, sqlite3_stmt **stmt, const char *path,
                       char *err, size_t errlen) {
    for (int i = 0; i < STMT__COUNT; i++) {
        int rc = sqlite3_prepare_v3(db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                    &stmt[i], NULL);
        if (rc != SQLITE_OK) {
            store_set_err(err, errlen, "database %s: cannot prepare statement %d: %s", path, i,
                    sqlite3_errmsg(db));
            finalize_all(stmt);
            return map_rc(rc);
        }
    }
    return 0;
}

/* Steps a statement that returns no row to completion, then resets it and drops its
 * bindings (which may point at the caller's memory). Returns an SQLite code. On error
 * the message is copied to err before anything else can overwrite it. */
static int run_stmt(sqlite3 *db, sqlite3_stmt *s, char *err, size_t errlen) {
    int rc = sqlite3_step(s);

    if (rc == SQLITE_DONE || rc == SQLITE_ROW)
        rc = SQLITE_OK;
    else
        store_set_err(err, errlen, "%s", sqlite3_errmsg(db));
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc;
}

static void reset_stmt(sqlite3_stmt *s) {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Opens a connection with the settings every connection gets. The caller closes *out
 * even on failure (SQLite may hand back a handle that carries the error). */
static int open_conn(const char *path, int flags, sqlite3 **out) {
    int rc = sqlite3_open_v2(path, out, flags | SQLITE_OPEN_NOMUTEX, NULL);

    if (rc != SQLITE_OK)
        return rc;
    sqlite3_extended_result_codes(*out, 1);
    sqlite3_busy_timeout(*out, STORE_BUSY_TIMEOUT_MS);
    /* A file from elsewhere must not run its own SQL functions/views on us, nor be
     * able to corrupt itself through writable_schema. */
    sqlite3_db_config(*out, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
    sqlite3_db_config(*out, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    return SQLITE_OK;
}

/* Reads the schema version of db into *version: 0 when there is no schema_version
 * table, -1 when its content makes no sense. Returns an SQLite code. */
static int read_version(sqlite3 *db, int *version) {
    sqlite3_stmt *s = NULL;
    int rc, has = 0;

    *version = 0;
    rc = sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master"
                                " WHERE type = 'table' AND name = 'schema_version'",
                            -1, &s, NULL);
    if (rc != SQLITE_OK)
        goto out;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        has = 1;
    else if (rc != SQLITE_DONE)
        goto out;
    sqlite3_finalize(s);
    s = NULL;
    rc = SQLITE_OK;
    if (!has)
        goto out;
    rc = sqlite3_prepare_v2(db, "SELECT max(version) FROM schema_version", -1, &s, NULL);
    if (rc != SQLITE_OK)
        goto out;
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW)
        goto out;
    if (sqlite3_column_type(s, 0) == SQLITE_INTEGER) {
        sqlite3_int64 v = sqlite3_column_int64(s, 0);
        *version = v < 0 || v > 999999999 ? -1 : (int)v;
    } else if (sqlite3_column_type(s, 0) != SQLITE_NULL) {
        *version = -1;
    }
    rc = SQLITE_OK;
out:
    sqlite3_finalize(s);
    return rc;
}

/* Checks a migration list: versions >= 1, strictly increasing, SQL present. */
static int check_migrations(const schema_migration *m, size_t n) {
    if (!m || n == 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (m[i].version < 1 || !m[i].sql || !m[i].name)
            return -EINVAL;
        if (i > 0 && m[i].version <= m[i - 1].version)
            return -EINVAL;
    }
    return 0;
}

/* Applies, in order, every migration with from < version <= to, each in its own
 * transaction together with its schema_version row, so a crash leaves the database at
 * one version or the next. The SQL is the static text of schema/NNN_*.sql; the version
 * number is bound. */
static int migrate(sqlite3 *db, const char *path, const schema_migration *m, size_t n,
                   int from, int to, char *err, size_t errlen) {
    sqlite3_stmt *ins = NULL;
    char *msg = NULL;
    int rc = SQLITE_OK, cur;

    for (size_t i = 0; i < n; i++) {
        if (m[i].version <= from || m[i].version > to)
            continue;
        rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg);
        if (rc != SQLITE_OK)
            goto fail;
        /* Another process may have migrated while we were not holding the lock. */
        rc = read_version(db, &cur);
        if (rc != SQLITE_OK)
            goto fail;
        if (cur >= m[i].version) {
            rc = sqlite3_exec(db, "COMMIT", NULL, NULL, &msg);
            if (rc != SQLITE_OK)
                goto fail;
            continue;
        }
        rc = sqlite3_exec(db, m[i].sql, NULL, NULL, &msg);
        if (rc != SQLITE_OK)
            goto fail;
        if (sqlite3_get_autocommit(db)) {
            store_set_err(err, errlen, "database %s: migration %03d_%s ends the transaction itself"
                    " (BEGIN/COMMIT do not belong in schema files)", path, m[i].version,
                    m[i].name);
            return STORE_EIO;
        }
        rc = sqlite3_prepare_v2(db, "INSERT INTO schema_version (version) VALUES (?1)", -1,
                                &ins, NULL);
        if (rc != SQLITE_OK)
            goto fail;
        sqlite3_bind_int(ins, 1, m[i].version);
        rc = sqlite3_step(ins);
        if (rc != SQLITE_DONE)
            goto fail;
        sqlite3_finalize(ins);
        ins = NULL;
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, &msg);
        if (rc != SQLITE_OK)
            goto fail;
    }
    return 0;

fail:
    store_set_err(err, errlen, "database %s: migration to version %d failed: %s", path,
            to, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    sqlite3_finalize(ins);
    if (!sqlite3_get_autocommit(db))
        (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return map_rc(rc);
}

/* Is there an object of this type and name in db? 1 yes, 0 no, <0 SQLite code negated. */
static int has_object(sqlite3 *db, const char *type, const char *name) {
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master"
                                    " WHERE type = ?1 AND name = ?2 COLLATE NOCASE",
                                -1, &s, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(s, 1, type, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(s);
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -rc;
}

/* Compares the tables, views and triggers of `a` with those of `b`: the first object
 * of `a` that `b` lacks is copied to type/name. Returns 1 when found, 0 when none, or
 * an SQLite code negated. */
static int first_missing(sqlite3 *a, sqlite3 *b, char *type, size_t tlen, char *name,
                         size_t nlen) {
    sqlite3_stmt *s = NULL;
    int rc, r = 0;

    rc = sqlite3_prepare_v2(a, "SELECT type, name FROM sqlite_master"
                               " WHERE type IN ('table', 'view', 'trigger')"
                               " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                               " ORDER BY rowid", -1, &s, NULL);
    if (rc != SQLITE_OK)
        return -rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        const char *nm = (const char *)sqlite3_column_text(s, 1);

        if (!t || !nm)
            continue;
        r = has_object(b, t, nm);
        if (r < 0)
            break;
        if (r == 0) {
            snprintf(type, tlen, "%s", t);
            snprintf(name, nlen, "%s", nm);
            r = 1;
            break;
        }
        r = 0;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = -rc;
    sqlite3_finalize(s);
    return r;
}

/* Decides whether db is ours and at which version, without writing to it: *version is
 * the schema version, 0 for an empty database. A database is ours when its objects are
 * exactly those that migrations 1..version create (computed by applying them to an
 * in-memory database), so another program's file is refused even if it happens to
 * have a table called schema_version. With integrity, PRAGMA quick_check runs too. */
static int inspect(sqlite3 *db, const char *path, const schema_migration *m, size_t n,
                   int integrity, int *version, char *err, size_t errlen) {
    sqlite3 *mem = NULL;
    char type[32], name[128];
    int rc, r, latest = m[n - 1].version;

    rc = read_version(db, version);
    if (rc != SQLITE_OK) {
        if ((rc & 0xff) == SQLITE_NOTADB)
            store_set_err(err, errlen, "database %s is not an SQLite database (or is encrypted)",
                    path);
        else
            store_set_err(err, errlen, "database %s %s: %s", path, failure_words(rc),
                    sqlite3_errmsg(db));
        return map_rc(rc);
    }
    if (*version < 0) {
        store_set_err(err, errlen, "database %s is corrupt: bad schema_version", path);
        return STORE_ECORRUPT;
    }
    if (*version > latest) {
        store_set_err(err, errlen, "database %s has schema version %d, newer than this registryd"
                " supports (%d): use a newer registryd", path, *version, latest);
        return STORE_ECORRUPT;
    }
    if (integrity) {
        sqlite3_stmt *s = NULL;

        rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &s, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            const char *res = (const char *)sqlite3_column_text(s, 0);
            if (!res || strcmp(res, "ok") != 0) {
                store_set_err(err, errlen, "database %s is corrupt: %s", path,
                        res ? res : "quick_check failed");
                sqlite3_finalize(s);
                return STORE_ECORRUPT;
            }
            rc = SQLITE_OK;
        } else {
            store_set_err(err, errlen, "database %s %s: %s", path, failure_words(rc),
                    sqlite3_errmsg(db));
            sqlite3_finalize(s);
            return map_rc(rc);
        }
        sqlite3_finalize(s);
    }

    rc = open_conn(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &mem);
    if (rc != SQLITE_OK) {
        store_set_err(err, errlen, "cannot open an in-memory database: %s", sqlite3_errstr(rc));
        sqlite3_close(mem);
        return STORE_EIO;
    }
    r = migrate(mem, path, m, n, 0, *version, err, errlen);  /* path: for its message */
    if (r != 0)
        goto out;

    r = first_missing(db, mem, type, sizeof type, name, sizeof name);
    if (r == 1) {
        store_set_err(err, errlen, "database %s is not a registry database (found %s %s)", path,
                type, name);
        r = STORE_ECORRUPT;
        goto out;
    }
    if (r == 0) {
        r = first_missing(mem, db, type, sizeof type, name, sizeof name);
        if (r == 1) {
            store_set_err(err, errlen, "database %s is not a valid registry database"
                    " (schema version %d but %s %s is missing)", path, *version, type, name);
            r = STORE_ECORRUPT;
            goto out;
        }
    }
    if (r < 0) {
        store_set_err(err, errlen, "database %s %s: %s", path, failure_words(-r),
                sqlite3_errstr(-r));
        r = map_rc(-r);
    }
out:
    sqlite3_close(mem);
    return r;
}

/* Reads the event sequence bounds of the open database into st. */
static int load_seq_bounds(sqlite_store *st, char *err, size_t errlen) {
    sqlite3_stmt *s = st->stmt[STMT_SEQ_BOUNDS];
    int rc = sqlite3_step(s);

    if (rc != SQLITE_ROW) {
        store_set_err(err, errlen, "database %s: cannot read events: %s", st->path,
                sqlite3_errmsg(st->db));
        reset_stmt(s);
        return map_rc(rc);
    }
    st->last_seq = sqlite3_column_int64(s, 0);  /* NULL -> 0 */
    st->min_seq = sqlite3_column_type(s, 1) == SQLITE_NULL ? st->last_seq + 1
                                                           : sqlite3_column_int64(s, 1);
    reset_stmt(s);
    return 0;
}

/* Makes a read-write connection ready for writing: WAL, synchronous, WAL size cap. */
static int configure_rw(sqlite3 *db, const char *path, int sync_full, char *err,
                        size_t errlen) {
    sqlite3_stmt *s = NULL;
    int rc, wal = 0;

    rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(s, 0);
        wal = mode && strcmp(mode, "wal") == 0;
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK) {
        store_set_err(err, errlen, "database %s: cannot enable WAL: %s", path, sqlite3_errmsg(db));
        sqlite3_finalize(s);
        return map_rc(rc);
    }
    sqlite3_finalize(s);
    if (!wal) {
        store_set_err(err, errlen, "database %s: the file system does not support WAL mode", path);
        return STORE_EIO;
    }
    rc = sqlite3_exec(db, sync_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                      NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, STORE_JOURNAL_LIMIT_SQL, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        store_set_err(err, errlen, "database %s: %s", path, sqlite3_errmsg(db));
        return map_rc(rc);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* The database lock: one registryd per database (see the top of this file)            */

/* The handles of this process that hold a database lock, linked by lock_next. Guarded
 * by held_mu, which lock_db holds from its look into the list until the new handle is
 * in it, so two opens racing in one process cannot both get past the check. */
static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static sqlite_store *held;

/* The handle of this process that holds the lock of the file (dev, ino), or NULL. A
 * handle inherited across fork() belongs to the parent: the child has none of the
 * parent's POSIX locks to lose, so it goes on to flock and meets the lock there. */
static sqlite_store *held_find(dev_t dev, ino_t ino) {
    for (sqlite_store *h = held; h; h = h->lock_next)
        if (h->lock_dev == dev && h->lock_ino == ino && h->lock_pid == getpid())
            return h;
    return NULL;
}

/* The message of a database locked by another registryd (pid <= 0: unknown). */
static int in_use(const char *path, long pid, char *err, size_t errlen) {
    if (pid > 0)
        store_set_err(err, errlen, "database %s is in use by another registryd, pid %ld",
                      path, pid);
    else
        store_set_err(err, errlen, "database %s is in use by another registryd, pid unknown",
                      path);
    return -EBUSY;
}

/* A new string: the side file that names the holder, beside the database's real path
 * (so every spelling of the path finds the same one), or NULL without memory. */
static char *pid_file_path(const char *path) {
    char *real = realpath(path, NULL);
    const char *base = real ? real : path;
    size_t len = strlen(base) + sizeof ".pid";
    char *p = malloc(len);

    if (p)
        snprintf(p, len, "%s.pid", base);
    free(real);
    return p;
}

/* The pid written in the side file at pid_path, when it is a live process; else 0. */
static long read_holder_pid(const char *pid_path) {
    char buf[32], *end;
    ssize_t got;
    long pid;
    int fd;

    if (!pid_path)
        return 0;
    do {
        fd = open(pid_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return 0;
    do {
        got = read(fd, buf, sizeof buf - 1);
    } while (got < 0 && errno == EINTR);
    close(fd);
    if (got <= 0)
        return 0;
    buf[got] = '\0';
    if (buf[0] < '0' || buf[0] > '9')
        return 0;
    errno = 0;
    pid = strtol(buf, &end, 10);
    if (errno != 0 || pid <= 0 || pid > INT_MAX || (*end != '\0' && strcmp(end, "\n") != 0))
        return 0;
    /* A file left by a holder that crashed, and could not be rewritten by this one. */
    if (kill((pid_t)pid, 0) != 0 && errno != EPERM)
        return 0;
    return pid;
}

/* Writes this process's pid into st->pid_path, best effort: without it (a read-only
 * directory, a file of someone else's) a second registryd says "pid unknown". Never
 * follows a symlink nor writes through a second hard link. */
static void write_pid_file(sqlite_store *st) {
    char buf[32];
    struct stat sb;
    int fd, len;

    if (!st->pid_path)
        return;
    do {
        fd = open(st->pid_path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK |
                  O_NOCTTY, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_nlink == 1 &&
        ftruncate(fd, 0) == 0) {
        st->pid_file_ours = 1;
        len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
        if (write(fd, buf, (size_t)len) != len) {
            /* An empty or partial file reads as "pid unknown"; store_close removes it. */
        }
    }
    close(fd);
}

/* Takes the database lock of st->path (creating an empty file when there is none, as
 * SQLite would a moment later) before anything else looks at the file. Fills
 * st->lock_* and st->pid_path. Returns 0; -EBUSY when another registryd (or another
 * handle of this process) holds it, with the message of in_use; STORE_EIO when the
 * file cannot be opened or locked, or is not a regular file. Nothing is written to the
 * database, whatever the outcome. */
static int lock_db(sqlite_store *st, char *err, size_t errlen) {
    const char *path = st->path;
    struct stat sb;
    sqlite_store *h;
    int fd = -1, r = 0;

    pthread_mutex_lock(&held_mu);
    /* A handle of this process: refused before a descriptor is opened (and closed). */
    if (stat(path, &sb) == 0 && (h = held_find(sb.st_dev, sb.st_ino)) != NULL) {
        r = in_use(path, (long)h->lock_pid, err, errlen);
        goto out;
    }
    /* O_RDONLY: enough for flock, and possible on a read-only file or directory.
     * O_NONBLOCK: a FIFO at the path must not hang the start. */
    do {
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0 && errno == ENOENT) {
        do {
            fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0644);
        } while (fd < 0 && errno == EINTR);
    }
    if (fd < 0) {
        store_set_err(err, errlen, "cannot open database %s: %s", path, strerror(errno));
        r = STORE_EIO;
        goto out;
    }
    if (fstat(fd, &sb) != 0) {
        store_set_err(err, errlen, "database %s: %s", path, strerror(errno));
        r = STORE_EIO;
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        store_set_err(err, errlen, "database %s is not a regular file", path);
        r = STORE_EIO;
        goto out;
    }
    /* Only if the path was replaced since stat() above: closing fd drops this
     * process's POSIX locks on that file, an accepted cost of so rare a race. */
    if ((h = held_find(sb.st_dev, sb.st_ino)) != NULL) {
        r = in_use(path, (long)h->lock_pid, err, errlen);
        goto out;
    }
    st->pid_path = pid_file_path(path);
    while ((r = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR)
        ;
    if (r != 0) {
        if (errno == EWOULDBLOCK)
            r = in_use(path, read_holder_pid(st->pid_path), err, errlen);
        else {
            store_set_err(err, errlen, "cannot lock database %s: %s", path, strerror(errno));
            r = STORE_EIO;
        }
        goto out;
    }
    st->lock_fd = fd;
    fd = -1;
    st->lock_dev = sb.st_dev;
    st->lock_ino = sb.st_ino;
    st->lock_pid = getpid();
    st->lock_size = sb.st_size;
    st->lock_next = held;
    held = st;
out:
    if (fd >= 0)
        close(fd);
    pthread_mutex_unlock(&held_mu);
    if (r == 0)
        write_pid_file(st);
    return r;
}

/* Releases the database lock of st, if it holds one: the side file goes first, so it
 * never removes the one of the next holder. Call only once SQLite has closed every
 * connection of st (closing the descriptor drops this process's POSIX locks of it). */
static void unlock_db(sqlite_store *st) {
    if (st->lock_fd < 0)
        return;
    if (st->pid_file_ours)
        (void)unlink(st->pid_path);
    pthread_mutex_lock(&held_mu);
    for (sqlite_store **p = &held; *p; p = &(*p)->lock_next)
        if (*p == st) {
            *p = st->lock_next;
            break;
        }
    close(st->lock_fd);
    st->lock_fd = -1;
    pthread_mutex_unlock(&held_mu);
}

/* Checks the 16-byte SQLite magic by hand (through fd, the locked descriptor), so
 * garbage is refused before SQLite (which might create side files next to it) ever
 * sees it. */
static int check_magic(int fd, const char *path, char *err, size_t errlen) {
    static const char magic[16] = "SQLite format 3";   /* with its NUL */
    char buf[16];
    size_t got = 0;

    while (got < sizeof buf) {
        ssize_t r = pread(fd, buf + got, sizeof buf - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            store_set_err(err, errlen, "database %s: %s", path, strerror(errno));
            return STORE_EIO;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    if (got < sizeof buf || memcmp(buf, magic, sizeof magic) != 0) {
        store_set_err(err, errlen, "database %s is not an SQLite database (bad file header);"
                " refusing to touch it", path);
        return STORE_ECORRUPT;
    }
    return 0;
}

/* SQLite creates a database's -wal and -shm with the database's own mode, so a reader
 * of a read-only (0444) database leaves read-only side files behind, and they would keep
 * the database read-only after it is made writable again. Gives such side files the
 * database's mode back (we own them: we created them). Returns 0, or -1 with err set
 * when a side file stays unwritable. Called only for a database known to be ours. */
static int fix_side_files(const char *path, char *err, size_t errlen) {
    static const char *const suffix[] = { "-wal", "-shm" };
    struct stat db, sb;
    char side[PATH_MAX];

    if (stat(path, &db) != 0)
        return 0;   /* open will say what is wrong */
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        int len = snprintf(side, sizeof side, "%s%s", path, suffix[i]);
        if (len < 0 || (size_t)len >= sizeof side)
            continue;   /* SQLite cannot use such a path either */
        if (stat(side, &sb) != 0 || faccessat(AT_FDCWD, side, W_OK, AT_EACCESS) == 0)
            continue;
        if (chmod(side, db.st_mode & 0666) != 0 ||
            faccessat(AT_FDCWD, side, W_OK, AT_EACCESS) != 0) {
            store_set_err(err, errlen, "database %s is read-only (%s: %s)", path, side,
                    strerror(errno ? errno : EACCES));
            return -1;
        }
    }
    return 0;
}

/* Opens st->db for serving: read-write when the file allows it (then WAL, synchronous,
 * pending migrations), else read-only, which is accepted only when the schema is
 * current. Prepares the statements and reads the event bounds. On failure st->db is
 * NULL again. */
static int connect_db(sqlite_store *st, char *err, size_t errlen) {
    int r, version = 0, latest = st->mig[st->nmig - 1].version;

    /* Best effort: a side file left unwritable shows up as a failed write later. */
    if (faccessat(AT_FDCWD, st->path, W_OK, AT_EACCESS) == 0)
        (void)fix_side_files(st->path, NULL, 0);
    r = open_conn(st->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &st->db);
    if (r != SQLITE_OK) {
        store_set_err(err, errlen, "cannot open database %s: %s", st->path,
                st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(r));
        r = map_rc(r);
        goto fail;
    }
    /* The file may have appeared or changed since store_open looked; this is cheap. */
    r = inspect(st->db, st->path, st->mig, st->nmig, 0, &version, err, errlen);
    if (r != 0)
        goto fail;
    st->readonly = sqlite3_db_readonly(st->db, "main") == 1;
    if (st->readonly) {
        if (version != latest) {
            store_set_err(err, errlen, "database %s is read-only and needs %s (schema version %d,"
                    " this registryd uses %d)", st->path,
                    version == 0 ? "initialising" : "migrating", version, latest);
            r = STORE_EIO;
            goto fail;
        }
    } else {
        r = configure_rw(st->db, st->path, st->sync_full, err, errlen);
        if (r != 0)
            goto fail;
        st->relaxed = 0; /* configure_rw set synchronous to the configured level */
        r = migrate(st->db, st->path, st->mig, st->nmig, version, latest, err, errlen);
        if (r != 0)
            goto fail;
        version = latest;
    }
    st->version = version;
    r = prepare_all(st->db, st->stmt, st->path, err, errlen);
    if (r != 0)
        goto fail;
    r = load_seq_bounds(st, err, errlen);
    if (r != 0)
        goto fail;
    return 0;

fail:
    finalize_all(st->stmt);
    sqlite3_close(st->db);
    st->db = NULL;
    return r;
}

/* Frees a handle, built or half built: statements, connection, lock, path. */
static void sq_free(sqlite_store *st) {
    if (!st)
        return;
    finalize_all(st->stmt);
    /* Last connection: SQLite checkpoints the WAL into the database and removes it. */
    if (sqlite3_close(st->db) != SQLITE_OK)
        sqlite3_close_v2(st->db);
    unlock_db(st);      /* after the connection: see unlock_db */
    free(st->pid_path);
    free(st->path);
    free(st);
}

/* Opens the database at path with the migrations m[n]. On success *out is a new
 * handle the caller owns (store_close); on failure *out is NULL. */
static int do_open(const char *path, const store_options *opt, const schema_migration *m,
                   size_t n, store **out, char *err, size_t errlen) {
    static const store_options defaults = STORE_OPTIONS_DEFAULT;
    sqlite_store *st = NULL;
    sqlite3 *ro = NULL;
    int r, state, version = 0;

    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!opt)
        opt = &defaults;
    if (!path || !*path || check_migrations(m, n) != 0) {
        store_set_err(err, errlen, "store_open: bad arguments%s",
                path && !*path ? " (sqlite: needs a path)" : "");
        return -EINVAL;
    }

    st = calloc(1, sizeof *st);
    if (st)
        st->lock_fd = -1;
    if (!st || !(st->path = strdup(path))) {
        store_set_err(err, errlen, "out of memory");
        sq_free(st);
        return -ENOMEM;
    }
    st->base.be = &store_sqlite_backend;

    /* The lock first: a second registryd stops here, before it looks at, migrates or
     * writes anything. ":memory:" is SQLite's private in-memory database: no file, no
     * lock (and nothing to look at). */
    if (strcmp(path, ":memory:") == 0) {
        state = 1;
    } else {
        r = lock_db(st, err, errlen);
        if (r != 0)
            goto fail;
        state = st->lock_size == 0 ? 2 : 0;    /* empty (or just created): initialise */
    }
    if (state == 0) {
        /* Existing data: look before touching. */
        r = check_magic(st->lock_fd, path, err, errlen);
        if (r != 0)
            goto fail;
        r = open_conn(path, SQLITE_OPEN_READONLY, &ro);
        if (r != SQLITE_OK) {
            store_set_err(err, errlen, "cannot open database %s: %s", path,
                    ro ? sqlite3_errmsg(ro) : sqlite3_errstr(r));
            sqlite3_close(ro);
            r = map_rc(r);
            goto fail;
        }
        r = inspect(ro, path, m, n, 1, &version, err, errlen);
        sqlite3_close(ro);
        if (r != 0)
            goto fail;
    }

    st->sync_full = opt->sync_full;
    st->mig = m;
    st->nmig = n;
    st->events_keep = opt->events_keep < 0 ? 0 : opt->events_keep;
    r = connect_db(st, err, errlen);
    if (r != 0)
        goto fail;
    *out = &st->base;
    return 0;

fail:
    sq_free(st);
    return r;
}

/* store_backend.open: arg is the path (after "sqlite:", or the whole spec). */
static int sq_open(const char *arg, const store_options *opt, store **out, char *err,
                   size_t errlen) {
    return do_open(arg, opt, schema_migrations, schema_migrations_count, out, err, errlen);
}

int store_test_open_with(const char *path, const store_options *opt,
                         const struct schema_migration *migrations, size_t n, store **out,
                         char *err, size_t errlen) {
    return do_open(path, opt, migrations, n, out, err, errlen);
}

/* Called by store_apply while the handle is read-only (or lost its connection): when
 * the file has become writable, replaces the connection by a read-write one. Returns 0,
 * or STORE_EIO with the reason, the handle still serving reads when at all possible. */
static int reopen_rw(sqlite_store *st, char *err, size_t errlen) {
    char msg[STORE_ERR_LEN];

    /* Cheap checks first, so a read-only period costs no re-open per batch. */
    if (st->db) {
        if (faccessat(AT_FDCWD, st->path, W_OK, AT_EACCESS) != 0) {
            store_set_err(err, errlen, "database %s is read-only (%s)", st->path, strerror(errno));
            return STORE_EIO;
        }
        if (fix_side_files(st->path, err, errlen) != 0)
            return STORE_EIO;
    }
    /* Close first: the connections of one process share the WAL index, and the old
     * one may hold it read-only. */
    finalize_all(st->stmt);
    sqlite3_close(st->db);
    st->db = NULL;
    if (connect_db(st, err, errlen) == 0 && !st->readonly)
        return 0;
    if (st->db) {   /* connected, but still read-only (a side file, a race) */
        store_set_err(err, errlen, "database %s is read-only", st->path);
        return STORE_EIO;
    }
    snprintf(msg, sizeof msg, "%s", err && errlen ? err : "cannot reopen the database");
    (void)connect_db(st, NULL, 0);  /* lost the race against a chmod: back to reading */
    store_set_err(err, errlen, "%s", msg);
    return STORE_EIO;
}

/* ---------------------------------------------------------------------------------- */
/* Writing                                                                             */

static const char *status_text(int status) {
    return status == STORE_CRITICAL ? "critical" : "passing";
}

/* Binds ?1..?14 of STMT_INSERT_INSTANCE / STMT_UPDATE_INSTANCE (the insert's ?15,
 * maintenance, is bound by the caller: an update keeps the stored flag). The strings are the
 * caller's (SQLITE_STATIC): valid until store_apply returns, and bindings are cleared
 * after each step. */
static void bind_instance(sqlite3_stmt *s, const store_instance *in) {
    sqlite3_bind_text(s, 1, in->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, in->service, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, in->host, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 4, in->port);
    sqlite3_bind_text(s, 5, in->description ? in->description : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, in->tags_json ? in->tags_json : "[]", -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 7, in->ttl);
    sqlite3_bind_text(s, 8, in->check == STORE_CHECK_NONE ? "none" : "tcp", -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 9, in->token_hash, STORE_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(s, 10, in->registered_at);
    sqlite3_bind_int64(s, 11, in->last_seen);
    sqlite3_bind_int64(s, 12, in->last_check);
    sqlite3_bind_text(s, 13, status_text(in->status), -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 14, in->failures);
}

/* A statement that changed data failed. A constraint violation concerns only this
 * change (SQLite has already undone the statement): its rc says why and the batch goes
 * on. Anything else fails the batch. */
static int change_failed(store_change *c, int rc) {
    if ((rc & 0xff) != SQLITE_CONSTRAINT)
        return rc;
    c->rc = rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE ? -EEXIST
                                                                                 : -EINVAL;
    return SQLITE_OK;
}

/* Applies one change inside the open transaction. Sets c->rc and the outputs; returns
 * SQLITE_OK, or an SQLite code that fails the whole batch (message in err). */
static int apply_one(sqlite_store *st, store_change *c, char *err, size_t errlen) {
    sqlite3_stmt *s;
    int rc;

    if (!store_change_valid(c)) {
        c->rc = -EINVAL;
        return SQLITE_OK;
    }
    switch (c->kind) {
    case STORE_PUT:
        s = st->stmt[STMT_FIND_ENDPOINT];
        sqlite3_bind_text(s, 1, c->inst.service, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, c->inst.host, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 3, c->inst.port);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            const unsigned char *id = sqlite3_column_text(s, 0);
            int len = sqlite3_column_bytes(s, 0);
            if (!id || len < 1 || len > STORE_ID_MAX) {
                store_set_err(err, errlen, "database %s is corrupt: bad instance id", st->path);
                reset_stmt(s);
                return SQLITE_CORRUPT;
            }
            memcpy(c->id_out, id, (size_t)len + 1);
            c->existed = 1;
        } else if (rc != SQLITE_DONE) {
            store_set_err(err, errlen, "%s", sqlite3_errmsg(st->db));
            reset_stmt(s);
            return rc;
        }
        reset_stmt(s);
        /* Bound with SQLITE_STATIC: must live until run_stmt below. */
        store_instance upd = c->inst;
        if (c->existed) {
            /* Keep the id; bind it in place of the caller's fresh one. */
            memcpy(upd.id, c->id_out, sizeof upd.id);
            s = st->stmt[STMT_UPDATE_INSTANCE];
            bind_instance(s, &upd);
        } else {
            memcpy(c->id_out, c->inst.id, sizeof c->id_out);
            s = st->stmt[STMT_INSERT_INSTANCE];
            bind_instance(s, &c->inst);
            sqlite3_bind_int(s, 15, c->inst.maintenance);
        }
        rc = run_stmt(st->db, s, err, errlen);
        if (rc != SQLITE_OK) {
            c->existed = 0;
            c->id_out[0] = '\0';
            return change_failed(c, rc);
        }
        break;

    case STORE_DELETE:
        s = st->stmt[c->check_token ? STMT_DELETE_TOKEN : STMT_DELETE];
        sqlite3_bind_text(s, 1, c->inst.id, -1, SQLITE_STATIC);
        if (c->check_token)
            sqlite3_bind_blob(s, 2, c->inst.token_hash, STORE_HASH_LEN, SQLITE_STATIC);
        rc = run_stmt(st->db, s, err, errlen);
        if (rc != SQLITE_OK)
            return change_failed(c, rc);
        if (sqlite3_changes(st->db) == 0) {
            /* Nothing deleted: tell "no such id" from "wrong token". */
            c->rc = STORE_ENOTFOUND;
            if (c->check_token) {
                s = st->stmt[STMT_EXISTS];
                sqlite3_bind_text(s, 1, c->inst.id, -1, SQLITE_STATIC);
                rc = sqlite3_step(s);
                if (rc == SQLITE_ROW)
                    c->rc = STORE_EDENIED;
                else if (rc != SQLITE_DONE)
                    store_set_err(err, errlen, "%s", sqlite3_errmsg(st->db));
                reset_stmt(s);
                if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                    return rc;
            }
        }
        break;

    case STORE_HEALTH:
        s = st->stmt[STMT_HEALTH];
        sqlite3_bind_text(s, 1, c->inst.id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, status_text(c->inst.status), -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 3, c->inst.failures);
        sqlite3_bind_int64(s, 4, c->inst.last_seen);
        sqlite3_bind_int64(s, 5, c->inst.last_check);
        rc = run_stmt(st->db, s, err, errlen);
        if (rc != SQLITE_OK)
            return change_failed(c, rc);
        if (sqlite3_changes(st->db) == 0)
            c->rc = STORE_ENOTFOUND;
        break;

    case STORE_MAINTENANCE:
        s = st->stmt[STMT_MAINTENANCE];
        sqlite3_bind_text(s, 1, c->inst.id, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 2, c->inst.maintenance);
        rc = run_stmt(st->db, s, err, errlen);
        if (rc != SQLITE_OK)
            return change_failed(c, rc);
        if (sqlite3_changes(st->db) == 0)
            c->rc = STORE_ENOTFOUND;
        break;

    default: /* STORE_EVENT_ONLY */
        break;
    }

    if (c->rc != 0 || !c->has_event)
        return SQLITE_OK;
    s = st->stmt[STMT_INSERT_EVENT];
    sqlite3_bind_int64(s, 1, c->event.ts);
    sqlite3_bind_text(s, 2, c->event.event, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, c->event.service, -1, SQLITE_STATIC);  /* NULL binds NULL */
    /* A re-registration keeps the old id: the event names the instance as stored. */
    if (c->kind == STORE_PUT && c->existed && c->event.id &&
        strcmp(c->event.id, c->inst.id) == 0)
        sqlite3_bind_text(s, 4, c->id_out, -1, SQLITE_STATIC);
    else
        sqlite3_bind_text(s, 4, c->event.id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, c->event.host, -1, SQLITE_STATIC);
    if (c->event.port != 0)
        sqlite3_bind_int(s, 6, c->event.port);
    sqlite3_bind_text(s, 7, c->event.detail, -1, SQLITE_STATIC);
    /* The change itself is already done, so even a constraint failure here fails the
     * batch: nothing may be half applied. */
    rc = run_stmt(st->db, s, err, errlen);
    if (rc != SQLITE_OK)
        return rc;
    c->event.seq = sqlite3_last_insert_rowid(st->db);
    return SQLITE_OK;
}

/* store_backend.apply: the dispatcher has checked the arguments (n >= 1) and reset the
 * outputs. */
static int sq_apply(store *base, store_change *changes, size_t n, char *err,
                    size_t errlen) {
    sqlite_store *st = (sqlite_store *)base;
    int64_t last_seq, min_seq;
    int rc;

    if ((st->readonly || !st->db) && reopen_rw(st, err, errlen) != 0)
        goto failed;

    if (st->sync_full) {
        /* Only acknowledged writes need their fsync; health state and events need not
         * wait for the disk (WAL keeps them across a crash of the process). */
        int durable = 0;
        for (size_t i = 0; i < n && !durable; i++)
            durable = changes[i].durable;
        if (durable == st->relaxed) {
            rc = sqlite3_exec(st->db, durable ? "PRAGMA synchronous = FULL"
                                              : "PRAGMA synchronous = NORMAL",
                              NULL, NULL, NULL);
            if (rc != SQLITE_OK) {
                store_set_err(err, errlen, "%s", sqlite3_errmsg(st->db));
                goto failed;
            }
            st->relaxed = !durable;
        }
    }
    rc = run_stmt(st->db, st->stmt[STMT_BEGIN], err, errlen);
    if (rc != SQLITE_OK)
        goto rollback;
    for (size_t i = 0; i < n; i++) {
        rc = apply_one(st, &changes[i], err, errlen);
        if (rc != SQLITE_OK)
            goto rollback;
    }

    /* Trim in the same transaction: one fsync for the batch and its trimming. */
    last_seq = st->last_seq;
    min_seq = st->min_seq;
    for (size_t i = n; i-- > 0;)
        if (changes[i].event.seq > 0) {
            last_seq = changes[i].event.seq;
            break;
        }
    if (last_seq - st->events_keep >= min_seq) {
        sqlite3_stmt *s = st->stmt[STMT_TRIM_EVENTS];
        sqlite3_bind_int64(s, 1, last_seq - st->events_keep);
        rc = run_stmt(st->db, s, err, errlen);
        if (rc != SQLITE_OK)
            goto rollback;
        min_seq = last_seq - st->events_keep + 1;
    }

    rc = run_stmt(st->db, st->stmt[STMT_COMMIT], err, errlen);
    if (rc != SQLITE_OK)
        goto rollback;
    st->last_seq = last_seq;
    st->min_seq = min_seq;
    return 0;

rollback: {
        /* err holds SQLite's message (when there is an err); say what it means. */
        char msg[STORE_ERR_LEN];

        snprintf(msg, sizeof msg, "%s", err && errlen ? err : sqlite3_errstr(rc));
        /* SQLite rolls some errors back by itself (SQLITE_FULL, IOERR...). */
        if (!sqlite3_get_autocommit(st->db))
            (void)run_stmt(st->db, st->stmt[STMT_ROLLBACK], NULL, 0);
        store_set_err(err, errlen, "database %s: write failed, nothing was changed: %s",
                st->path, msg);
    }
failed:
    return STORE_EIO;   /* store_apply marks every change failed */
}

/* ---------------------------------------------------------------------------------- */
/* Reading                                                                             */

static const char *col_text(sqlite3_stmt *s, int i, const char *dflt) {
    const char *t = (const char *)sqlite3_column_text(s, i);
    return t ? t : dflt;
}

static int sq_load(store *base, int (*cb)(void *ud, const store_instance *inst), void *ud,
                   char *err, size_t errlen) {
    sqlite_store *st = (sqlite_store *)base;
    sqlite3_stmt *s;
    int rc;

    if (!st->db) {
        store_set_err(err, errlen, "database %s is not open (a re-open failed)", st->path);
        return STORE_EIO;
    }
    s = st->stmt[STMT_LOAD];
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_instance in;
        const char *id = col_text(s, 0, "");
        const char *check = col_text(s, 7, "tcp");
        const char *status = col_text(s, 12, "passing");
        int r;

        memset(&in, 0, sizeof in);
        if (!store_id_valid(id) || sqlite3_column_bytes(s, 8) != STORE_HASH_LEN ||
            sqlite3_column_type(s, 8) != SQLITE_BLOB) {
            store_set_err(err, errlen, "database %s is corrupt: malformed instance %.16s",
                    st->path, id);
            reset_stmt(s);
            return STORE_ECORRUPT;
        }
        snprintf(in.id, sizeof(in.id), "%s", id);
        in.service = col_text(s, 1, "");
        in.host = col_text(s, 2, "");
        in.port = sqlite3_column_int(s, 3);
        in.description = col_text(s, 4, "");
        in.tags_json = col_text(s, 5, "[]");
        in.ttl = sqlite3_column_int(s, 6);
        in.check = strcmp(check, "none") == 0 ? STORE_CHECK_NONE : STORE_CHECK_TCP;
        memcpy(in.token_hash, sqlite3_column_blob(s, 8), STORE_HASH_LEN);
        in.registered_at = sqlite3_column_int64(s, 9);
        in.last_seen = sqlite3_column_int64(s, 10);
        in.last_check = sqlite3_column_int64(s, 11);
        in.status = strcmp(status, "critical") == 0 ? STORE_CRITICAL : STORE_PASSING;
        in.failures = sqlite3_column_int(s, 13);
        in.maintenance = sqlite3_column_int(s, 14) != 0;
        r = cb(ud, &in);
        if (r != 0) {
            reset_stmt(s);
            return r;
        }
    }
    if (rc != SQLITE_DONE) {
        store_set_err(err, errlen, "database %s %s (instances): %s", st->path,
                failure_words(rc), sqlite3_errmsg(st->db));
        reset_stmt(s);
        return map_rc(rc);
    }
    reset_stmt(s);
    return 0;
}

static int sq_events(store *base, int64_t since, int limit, const char *service,
                     int (*cb)(void *ud, const store_event *ev), void *ud,
                     char *err, size_t errlen) {
    sqlite_store *st = (sqlite_store *)base;
    sqlite3_stmt *s;
    int rc;

    if (!st->db) {
        store_set_err(err, errlen, "database %s is not open (a re-open failed)", st->path);
        return STORE_EIO;
    }
    s = st->stmt[service ? STMT_EVENTS_SERVICE : STMT_EVENTS];
    sqlite3_bind_int64(s, 1, since);
    sqlite3_bind_int(s, 2, limit);
    if (service)
        sqlite3_bind_text(s, 3, service, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_event ev;
        int r;

        ev.seq = sqlite3_column_int64(s, 0);
        ev.ts = sqlite3_column_int64(s, 1);
        ev.event = col_text(s, 2, "");
        ev.service = col_text(s, 3, NULL);
        ev.id = col_text(s, 4, NULL);
        ev.host = col_text(s, 5, NULL);
        ev.port = sqlite3_column_int(s, 6);
        ev.detail = col_text(s, 7, NULL);
        r = cb(ud, &ev);
        if (r != 0) {
            reset_stmt(s);
            return r;
        }
    }
    if (rc != SQLITE_DONE) {
        store_set_err(err, errlen, "database %s %s (events): %s", st->path,
                failure_words(rc), sqlite3_errmsg(st->db));
        reset_stmt(s);
        return map_rc(rc);
    }
    reset_stmt(s);
    return 0;
}

static int64_t sq_last_seq(store *base) {
    return ((sqlite_store *)base)->last_seq;
}

static void sq_set_events_keep(store *base, int64_t keep) {
    ((sqlite_store *)base)->events_keep = keep < 0 ? 0 : keep;
}

static void sq_close(store *base) {
    sq_free((sqlite_store *)base);
}

const store_backend store_sqlite_backend = {
    .scheme = "sqlite",
    .open = sq_open,
    .load = sq_load,
    .apply = sq_apply,
    .events = sq_events,
    .last_seq = sq_last_seq,
    .set_events_keep = sq_set_events_keep,
    .close = sq_close,
    /* watch, renew, members: NULL, a single file has no other nodes nor leases. */
};

/* ---------------------------------------------------------------------------------- */
/* Test hooks                                                                          */

/* The handle as a sqlite_store, or NULL when it is not one. */
static sqlite_store *as_sqlite(store *st) {
    return st && st->be == &store_sqlite_backend ? (sqlite_store *)st : NULL;
}

int store_test_schema_version(store *base) {
    sqlite_store *st = as_sqlite(base);

    return st ? st->version : -EINVAL;
}

int store_test_limit_pages(store *base, int64_t max_pages) {
    sqlite_store *st = as_sqlite(base);
    sqlite3_stmt *s = NULL;
    char *sql;
    int rc;

    if (!st || max_pages < 0)
        return -EINVAL;
    if (st->test_max_pages == 0) {
        /* Remember SQLite's own cap so 0 can restore it. */
        rc = sqlite3_prepare_v2(st->db, "PRAGMA max_page_count", -1, &s, NULL);
        if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
            st->test_max_pages = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
        if (st->test_max_pages <= 0)
            return STORE_EIO;
    }
    /* PRAGMA arguments cannot be bound; this is an integer, never request text. */
    sql = sqlite3_mprintf("PRAGMA max_page_count = %lld",
                          (long long)(max_pages ? max_pages : st->test_max_pages));
    if (!sql)
        return -ENOMEM;
    rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    sqlite3_free(sql);
    return rc == SQLITE_OK ? 0 : STORE_EIO;
}

int store_test_set_query_only(store *base, int on) {
    sqlite_store *st = as_sqlite(base);

    if (!st)
        return -EINVAL;
    return sqlite3_exec(st->db, on ? "PRAGMA query_only = 1" : "PRAGMA query_only = 0",
                        NULL, NULL, NULL) == SQLITE_OK ? 0 : STORE_EIO;
}
