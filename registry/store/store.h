/* store.h — the durable store of registryd: the only module that speaks SQL.
 *
 * A narrow, synchronous interface that a second (distributed) backend can implement
 * later. The daemon never calls it on the event loop once serving has started, except
 * store_open/store_load at start-up and store_close at exit: every other call runs on the
 * single writer thread (registry/writer.c), one call at a time, so a store handle is never
 * used by two threads at once and needs no locking of its own.
 *
 * Times are Unix milliseconds (UTC). Strings are NUL-terminated UTF-8.
 * Every function returns 0 or a negative errno-style code (see STORE_E*), and fills
 * err[errlen] with a one-line message a person can act on when it fails.
 */
#ifndef REGISTRY_STORE_H
#define REGISTRY_STORE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_ID_LEN     16     /* instance ids: 16 lowercase hex chars (64 random bits) */
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

/* One registered instance, as the store keeps it. In store_load callbacks all pointers
 * are borrowed and valid only during the callback; in changes they are borrowed from
 * the caller and must stay valid until store_apply returns. */
typedef struct store_instance {
    char id[STORE_ID_LEN + 1];          /* primary key */
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
    STORE_EVENT_ONLY  /* nothing but the event below */
};

/* One change in a batch. The caller fills the inputs; store_apply fills the outputs. */
typedef struct store_change {
    int kind;                           /* enum store_change_kind */
    store_instance inst;                /* PUT: all fields; DELETE/HEALTH: id (+ the health fields) */
    int check_token;                    /* DELETE: delete only if inst.token_hash matches */
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
    char id_out[STORE_ID_LEN + 1];      /* PUT: the instance's id (the old one when existed) */
} store_change;

/* Opens (creating if new or empty) the database at path, sets WAL and synchronous
 * (sync_full: FULL, else NORMAL), applies pending schema migrations (schema/NNN_*.sql,
 * embedded at build time), and checks it is ours. A corrupt or foreign file is never
 * modified: -> STORE_ECORRUPT with a message naming the path. A file this process may
 * not write opens read-only when its schema is current: loads and events work, and
 * store_apply fails with STORE_EIO until the file is writable again (each call retries).
 * On success *out is a new handle the caller owns (free with store_close). */
int store_open(const char *path, int sync_full, store **out, char *err, size_t errlen);

/* Calls cb for every instance, in registration order. Stops and returns cb's value
 * if it is non-zero. */
int store_load(store *st, int (*cb)(void *ud, const store_instance *inst), void *ud,
               char *err, size_t errlen);

/* Applies n changes in ONE transaction, in order, then commits (group commit). Each
 * change's rc says what happened to it; a change whose rc is not 0 changed nothing and
 * appended no event. The return value is 0 when the transaction committed, or
 * STORE_EIO when it could not (then nothing at all changed: every change is to be
 * reported as failed). After each commit, events beyond the newest `events_keep`
 * are dropped. */
int store_apply(store *st, store_change *changes, size_t n, char *err, size_t errlen);

/* Calls cb for up to limit events with seq > since (and service == service when not
 * NULL), oldest first. */
int store_events(store *st, int64_t since, int limit, const char *service,
                 int (*cb)(void *ud, const store_event *ev), void *ud,
                 char *err, size_t errlen);

/* The newest event seq (0 when none). */
int64_t store_last_seq(store *st);

/* Bound of the events table (default 100000). */
void store_set_events_keep(store *st, int64_t keep);

/* Closes the database (checkpointing the WAL). store_close(NULL) is a no-op. */
void store_close(store *st);

/* ---- Test hooks: for tests/unit/test_store.c only; the daemon never calls these. ---- */
struct schema_migration;
/* store_open with an explicit migration list (ascending versions) instead of the
 * embedded schema/ files, so tests can migrate across versions that do not exist yet. */
int store_test_open_with(const char *path, int sync_full,
                         const struct schema_migration *migrations, size_t n,
                         store **out, char *err, size_t errlen);
/* The schema version of the open database (>= 0), or a negative code. */
int store_test_schema_version(store *st);
/* Caps the database at max_pages pages (0: lift the cap) so writes fail as on a full
 * disk (SQLITE_FULL). Returns 0 or a negative code. */
int store_test_limit_pages(store *st, int64_t max_pages);
/* on=1: the connection refuses writes as a read-only database does; on=0: accepts again. */
int store_test_set_query_only(store *st, int on);

#endif
