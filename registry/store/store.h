/* SPDX-License-Identifier: BSD-2-Clause */
/* store.h — the store of registryd: one interface, several backends.
 *
 * A narrow, synchronous interface. Each backend is a table of functions (store_backend)
 * picked by store_open from the scheme of a spec string:
 *
 *   sqlite:PATH   the durable SQLite database at PATH (registry/store/sqlite.c)
 *   memory:NAME   an in-memory store for unit tests, nothing on disk; NAME is ignored
 *                 (registry/store/memory.c)
 *   PATH          anything else is a SQLite path, so `--db ./registry.db` keeps working;
 *                 a path may contain ':' (only the exact prefixes "sqlite:", "memory:"
 *                 and "etcd:" select a backend; write ./sqlite:x for a file of that name)
 *   etcd:URL[,URL...]  an etcd v3 cluster shared with other registryd nodes, through its
 *                 JSON gateway (registry/store/etcd.c; store_options names the node, the
 *                 key prefix and the deadline of an operation)
 *
 * Only files in registry/store/ speak SQL or etcd's API. The semantics below are the contract every
 * backend keeps (tests/unit/test_store.c runs the same tests against each one).
 *
 * Threading: the daemon never calls the store on the event loop once serving has
 * started, except store_open/store_load at start-up and store_close at exit: every other
 * call runs on the single writer thread (registry/core/writer.c), one call at a time, so
 * a handle is never used by two threads at once and needs no locking of its own. (Test
 * hooks that say so, e.g. store_memory_fail, may be called from another thread.) A
 * shared store's follow/resume/renew/unfollow/stats run on the loop: that backend keeps
 * a second connection of its own for them and guards what both halves read.
 *
 * Times are Unix milliseconds (UTC). Strings are NUL-terminated UTF-8.
 * Every function returns 0 or a negative errno-style code (see STORE_E*), and fills
 * err[errlen] with a one-line message a person can act on when it fails.
 */
#ifndef REGISTRY_STORE_H
#define REGISTRY_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <jansson.h>

#define STORE_ID_LEN     16     /* generated instance ids: 16 lowercase hex chars (64 random bits) */
#define STORE_ID_MAX     64     /* a chosen id (a Consul ServiceID): up to 64 of [A-Za-z0-9._:@-] */
#define STORE_HASH_LEN   32     /* SHA-256 of the owner token */
#define STORE_ERR_LEN    256    /* a good size for err buffers */

/* Return codes besides plain -errno values. */
#define STORE_ENOTFOUND  (-2)   /* -ENOENT: no such instance */
#define STORE_EDENIED    (-13)  /* -EACCES: token hash does not match */
#define STORE_EIO        (-5)   /* -EIO: the database failed (disk full, I/O, read-only...) */
#define STORE_ECORRUPT   (-74)  /* -EBADMSG: not a database, corrupt, or not ours (foreign) */

/* Instance status, as stored. */
enum store_status { STORE_PASSING = 0, STORE_CRITICAL = 1 };
/* Health check kind. */
enum store_check { STORE_CHECK_TCP = 0, STORE_CHECK_NONE = 1 };

typedef struct store store;
struct store_follower;

/* One registered instance, as the store keeps it. In store_load callbacks all pointers
 * are borrowed and valid only during the callback; in changes they are borrowed from
 * the caller and must stay valid until store_apply returns. */
typedef struct store_instance {
    char id[STORE_ID_MAX + 1];          /* primary key */
    const char *service;                /* [a-z0-9._-], <= 63 bytes */
    const char *host;                   /* IP literal or hostname, <= 253 bytes */
    int port;                           /* 1..65535 */
    const char *description;            /* may be "" (never NULL) */
    const char *tags_json;              /* JSON array text, e.g. ["a","b"]; "[]" when none */
    int ttl;                            /* seconds; 0 = no TTL */
    int check;                          /* enum store_check */
    unsigned char token_hash[STORE_HASH_LEN]; /* SHA-256 of the owner token */
    int64_t registered_at;              /* last (re-)registration time */
    int64_t last_seen;                  /* last successful check (or registration); 0 = never */
    int64_t last_check;                 /* last check of any outcome; 0 = never */
    int status;                         /* enum store_status */
    int failures;                       /* consecutive failed checks */
    int maintenance;                    /* 1: an operator took it out of service (it stays
                                         * registered, lookups skip it); 0: in service */
    int64_t lease;                      /* shared stores: the etcd lease its TTL lives on,
                                         * filled by load, the follower, and apply for a
                                         * PUT or a MAINTENANCE change of a TTL'd instance
                                         * (0: none, as in maintenance; local stores leave
                                         * it 0 and ignore it) */
} store_instance;

/* One activity event (the bounded `events` table). */
typedef struct store_event {
    int64_t seq;                        /* assigned by the store (strictly increasing) */
    int64_t ts;                         /* Unix ms */
    const char *event;                  /* "register", "evict", ... never NULL */
    const char *service;                /* may be NULL */
    const char *id;                     /* instance id, may be NULL */
    const char *host;                   /* may be NULL */
    int port;                           /* 0 = none */
    const char *detail;                 /* JSON object text, may be NULL */
} store_event;

enum store_change_kind {
    STORE_PUT,        /* upsert an instance by (service, host, port) */
    STORE_DELETE,     /* delete an instance by id (optionally only if token matches) */
    STORE_HEALTH,     /* update status/failures/last_seen/last_check of an instance by id */
    STORE_MAINTENANCE, /* set inst.maintenance of an instance by id */
    STORE_EVENT_ONLY  /* nothing but the event below */
};

/* One change in a batch. The caller fills the inputs; store_apply fills the outputs. */
typedef struct store_change {
    int kind;                           /* enum store_change_kind */
    store_instance inst;                /* PUT: all fields; DELETE/HEALTH: id (+ the health fields) */
    int check_token;                    /* DELETE: delete only if inst.token_hash matches */
    const char *once;                   /* shared stores, STORE_EVENT_ONLY: a name for the
                                         * fact its event records (e.g. an expiry; [A-Za-z0-9
                                         * ._:@/-]): only the first change
                                         * naming it commits, a later one gets -EEXIST and
                                         * changes nothing (for a while: the name is kept
                                         * ten minutes). NULL: none; local stores ignore it */
    int durable;                        /* acknowledged to a client: with sync_full, the
                                         * batch holding it is fsynced before store_apply
                                         * returns. A batch with no durable change (health
                                         * state, events) may commit without an fsync: it
                                         * survives a crash of the process, and the next
                                         * durable commit makes it durable too. */
    int has_event;                      /* append `event` in the same transaction */
    store_event event;                  /* event.seq is filled on success */
    /* outputs */
    int rc;                             /* 0, STORE_ENOTFOUND, STORE_EDENIED; also -EINVAL
                                           (malformed change) and -EEXIST (PUT: inst.id is
                                           another instance's id: pick a new one) */
    int existed;                        /* PUT: 1 when (service, host, port) was already there */
    char id_out[STORE_ID_MAX + 1];      /* PUT: the instance's id (the old one when existed) */
    int64_t rev;                        /* shared stores: the revision the change committed
                                         * at (every change of one commit has the same);
                                         * 0 for local stores */
} store_change;

/* Options of store_open. */
typedef struct store_options {
    int sync_full;                      /* fsync every batch with a durable change before
                                           store_apply returns (SQLite: synchronous=FULL,
                                           else NORMAL); the memory backend ignores it
                                           (and store_change.durable) */
    int64_t events_keep;                /* bound of the events table, as for
                                           store_set_events_keep: 0 keeps none, a negative
                                           value counts as 0 */
    /* Shared stores (etcd) only; local stores ignore them. */
    const char *node_name;              /* this node's name among the registry's nodes */
    const char *prefix;                 /* where the registry's keys live (NULL: "/registry/") */
    int64_t timeout_ms;                 /* deadline of one store operation (0: 3000) */
} store_options;

#define STORE_EVENTS_KEEP_DEFAULT 100000
/* What store_open uses when opt is NULL. */
#define STORE_OPTIONS_DEFAULT { .sync_full = 1, .events_keep = STORE_EVENTS_KEEP_DEFAULT }

/* One backend: what store_open picked for a scheme. Every function gets a handle this
 * backend's open returned. The generic functions below (store.c) check the arguments,
 * reset the outputs of store_apply and mark every change failed when apply fails, so a
 * backend may assume st != NULL, cb != NULL, limit >= 0 and n >= 1 with changes !=
 * NULL, and its apply returns 0 or STORE_EIO (with a message) without touching the
 * outputs of a batch that failed. */
typedef struct store_backend {
    const char *scheme;                 /* "sqlite", "memory" (without the colon) */
    /* arg: the spec after "scheme:" (never NULL); opt: never NULL. */
    int (*open)(const char *arg, const store_options *opt, store **out, char *err,
                size_t errlen);
    int (*load)(store *st, int (*cb)(void *ud, const store_instance *inst), void *ud,
                char *err, size_t errlen);
    int (*apply)(store *st, store_change *changes, size_t n, char *err, size_t errlen);
    int (*events)(store *st, int64_t since, int limit, const char *service,
                  int (*cb)(void *ud, const store_event *ev), void *ud, char *err,
                  size_t errlen);
    int64_t (*last_seq)(store *st);
    void (*set_events_keep)(store *st, int64_t keep);
    void (*close)(store *st);
    /* Shared stores (etcd) only: NULL for sqlite and memory. These run on the loop
     * thread (the backend keeps a second connection of its own for them), never on
     * the writer's.
     * follow: after load, follows every node's commits from the revision load read at,
     *   in revision order, on loop, calling f's callbacks (see store_follower), and keeps
     *   this node a member of the cluster. Returns 0 or -errno.
     * resume: a follower's changes callback returned 1 (not yet): deliver again from
     *   that revision (from a later loop turn, not from inside this call).
     * renew: keeps the lease an instance's TTL lives on alive (a heartbeat); cb(ud, rc,
     *   err) runs once on the loop: 0, STORE_ENOTFOUND (the lease ran out) or STORE_EIO.
     * unfollow: stops following and closes the loop's handles; cb(ud) once closed.
     * stats: {endpoint, connected, revision, nodes:[...], ...} (new reference). */
    int (*follow)(store *st, uv_loop_t *loop, const struct store_follower *f, char *err,
                  size_t errlen);
    void (*resume)(store *st);
    int (*renew)(store *st, int64_t lease, void (*cb)(void *ud, int rc, const char *err),
                 void *ud);
    void (*unfollow)(store *st, void (*cb)(void *ud), void *ud);
    json_t *(*stats)(store *st);
    size_t max_batch;                   /* changes one store_apply takes at most (0: any) */
} store_backend;

/* What a shared store tells the node following it (store_backend.follow). Every callback
 * runs on the loop; what it is given is borrowed for the call. */
typedef struct store_follower {
    void *ud;
    /* One commit (revision rev) of any node: its changes in order, outputs filled
     * (id_out, event.seq, rev; a DELETE names only inst.id, a PUT carries the whole
     * instance, an event comes as a STORE_EVENT_ONLY change after the changes it
     * describes). own: the commit carries this node's mark (its own writer made it).
     * Returns 0 when taken, 1 for "not yet": the store holds it (and everything after)
     * until resume. */
    int (*changes)(void *ud, int64_t rev, int own, const store_change *ch, size_t n);
    /* The cluster's live nodes changed (names sorted, this node's included). */
    void (*members)(void *ud, const char *const *names, size_t n);
    /* The store cannot deliver the commits since the last one given (etcd compacted
     * them): here is everything as of rev; the changes after rev follow as usual. */
    void (*resync)(void *ud, int64_t rev, const store_instance *insts, size_t n);
} store_follower;

/* The generic handle: the first member of every backend's own handle struct, so a
 * backend turns a store * back into its own type with a cast. */
struct store {
    const store_backend *be;
};

/* Opens the store that spec names (see the top of this file; a bare path is SQLite)
 * with opt (NULL: STORE_OPTIONS_DEFAULT). On success *out is a new handle the caller
 * owns (free with store_close); on failure *out is NULL and the code is -EINVAL (no
 * spec, an empty path, a scheme that is not built in), -ENOMEM, or the backend's own.
 *
 * SQLite: first takes an exclusive flock on the database file, held until store_close
 * (or the process's end, even by kill -9): one registryd per database. When another
 * process (or handle) holds it: -EBUSY, "database PATH is in use by another registryd,
 * pid N", and nothing is touched. Then it opens (creating if new or empty) the
 * database, sets WAL and synchronous
 * (sync_full: FULL, else NORMAL), applies pending schema migrations (schema/NNN_*.sql,
 * embedded at build time), and checks it is ours. A corrupt or foreign file is never
 * modified: -> STORE_ECORRUPT with a message naming the path. A file this process may
 * not write opens read-only when its schema is current: loads and events work, and
 * store_apply fails with STORE_EIO until the file is writable again (each call retries).
 * Memory: a new, empty store; nothing survives store_close. */
int store_open(const char *spec, const store_options *opt, store **out, char *err,
               size_t errlen);

/* Calls cb for every instance, in registration order: a re-registration (PUT of an
 * existing endpoint) keeps its place, a deleted and re-added instance comes last.
 * Stops and returns cb's value if it is non-zero. -EINVAL when st or cb is NULL. */
int store_load(store *st, int (*cb)(void *ud, const store_instance *inst), void *ud,
               char *err, size_t errlen);

/* Applies n changes in ONE transaction, in order, then commits (group commit). The
 * outputs of every change are reset first (rc 0, existed 0, id_out "", event.seq 0).
 * Each change's rc says what happened to it; a change whose rc is not 0 changed nothing
 * and appended no event:
 *   PUT       upsert by (service, host, port). New endpoint: inserted with inst.id
 *             (-EEXIST when that id is another instance's: pick a new one). Existing
 *             endpoint: every other field replaced, the old id kept (existed = 1; the
 *             offered inst.id is then ignored), except maintenance: an existing
 *             endpoint keeps its stored flag (an operator's decision outlasts the
 *             service registering itself again). id_out is the stored id. NULL
 *             description/tags_json are stored as "" / "[]".
 *   DELETE    by inst.id; with check_token only if inst.token_hash matches
 *             (STORE_ENOTFOUND: no such id; STORE_EDENIED: wrong token).
 *   HEALTH    status, failures, last_seen, last_check of inst.id (STORE_ENOTFOUND).
 *   MAINTENANCE  inst.maintenance (0 or 1) of inst.id (STORE_ENOTFOUND).
 *   EVENT_ONLY  needs has_event.
 * A malformed change (bad id, port, ttl, check, status, failures, maintenance, NULL service/host, an
 * event without a name, an unknown kind) gets -EINVAL. With has_event, a change that
 * succeeded appends its event and gets its seq; seqs are strictly increasing, the first
 * is 1, and none is ever handed out twice (not after trimming, nor after a reopen of a
 * durable store). A PUT that kept an old id stores its event with that id when event.id
 * was the offered inst.id. Strings are copied: nothing is kept of the caller's memory.
 * The return value is 0 when the transaction committed (n == 0: nothing to commit), or
 * STORE_EIO when it could not (then nothing at all changed, no seq was used, and every
 * change has rc STORE_EIO), or -EINVAL for bad arguments. After each commit, events
 * beyond the newest `events_keep` are dropped (seq <= last seq - events_keep). */
int store_apply(store *st, store_change *changes, size_t n, char *err, size_t errlen);

/* Calls cb for up to limit events with seq > since (and service == service when not
 * NULL; an event without a service never matches one), oldest first. Stops and returns
 * cb's value if it is non-zero. -EINVAL when st or cb is NULL or limit < 0. */
int store_events(store *st, int64_t since, int limit, const char *service,
                 int (*cb)(void *ud, const store_event *ev), void *ud,
                 char *err, size_t errlen);

/* The newest event seq ever handed out, even if trimmed since (0 when none, or st is
 * NULL). */
int64_t store_last_seq(store *st);

/* Bound of the events table from the next commit on (store_options.events_keep at
 * open); a negative keep counts as 0 (keep none). No-op when st is NULL. */
void store_set_events_keep(store *st, int64_t keep);

/* Closes the store (SQLite: checkpointing the WAL) and frees the handle.
 * store_close(NULL) is a no-op. */
void store_close(store *st);

/* 1 when id is a valid instance id: a generated one (STORE_ID_LEN lowercase hex) or a
 * chosen one (1-STORE_ID_MAX of [A-Za-z0-9._:@-], the first a letter or digit). */
int store_id_valid(const char *id);

/* A shared store (several nodes, store_backend.follow), or a local one? */
int store_shared(const store *st);
/* The changes one store_apply should take at most (0: no bound). */
size_t store_max_batch(const store *st);

#endif
