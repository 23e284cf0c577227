/* SPDX-License-Identifier: BSD-2-Clause */
/* catalog.h — the in-memory picture of the store: services, their instances, and the
 * indexes lookups need (by service, by id, by (service, host, port)). Loaded from the
 * store at start; afterwards changed only by committed writes and health results, on
 * the loop thread. Lookups read it and never touch the disk.
 *
 * Every change to anything a lookup shows of a service (its instances, their status,
 * their check and heartbeat times) gives the service a new `gen`: cached answers, in the
 * core (cache.h) and in front-ends, carry the generation they were built from, so a
 * cached answer is never older than a change (or a check) that already happened.
 *
 * The catalog is the core's read model: front-ends read it to encode answers; only the
 * core's apply path (apply.h) changes it. It holds no wire encodings and no health
 * bookkeeping. */
#ifndef REGISTRY_CATALOG_H
#define REGISTRY_CATALOG_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "store/store.h"

typedef struct cat_service cat_service;

typedef struct cat_instance {
    cat_service *svc;               /* owning service (borrowed back-pointer) */
    char *host;                     /* owned */
    int port;
    char *description;              /* owned, "" when none */
    char *tags_json;                /* owned JSON array text, as stored */
    json_t *tags;                   /* owned parsed array (for filters and answers) */
    int ttl;                        /* seconds, 0 = none */
    int check;                      /* enum store_check */
    unsigned char token_hash[STORE_HASH_LEN];
    int64_t registered_at, last_seen, last_check; /* Unix ms */
    int status;                     /* enum store_status */
    int failures;                   /* consecutive failed checks */
    int maintenance;                /* an operator took it out of service: lookups skip
                                     * it whatever its status; health neither evicts nor
                                     * expires it */
    int64_t lease;                  /* shared store: the lease its TTL lives on (0: none) */
    char *key;                      /* owned "service\nhost\nport": the upsert key */
    char *owner;                    /* owned: the IP that registered it (the host for one
                                     * loaded at start, whose registrant is not stored) */
    size_t bytes;                   /* memory it holds, as cat_bytes counts it */
    uint64_t ver;                   /* a new value (never reused) whenever anything its JSON
                                     * shows changes: front-ends cache encodings by it */
    size_t key_len;
    size_t slot;                    /* index in svc->inst */
    char id[];                      /* as long as the id (most are STORE_ID_LEN; chosen ones
                                     * up to STORE_ID_MAX) */
} cat_instance;

struct cat_service {
    char *name;                     /* owned */
    size_t name_len;
    cat_instance **inst;            /* owned array of instances, registration order */
    size_t n, cap;
    size_t passing;                 /* how many are in service: status passing and not
                                     * in maintenance (what lookups hand out) */
    size_t maintenance;             /* how many are in maintenance */
    cat_instance *latest;           /* the most recently (re-)registered instance: its
                                     * description is the service's */
    uint64_t rr;                    /* round-robin cursor */
    uint64_t gen;                   /* new on every change (cache validation) */
    struct catalog *cat;            /* back-pointer (borrowed) */
};

typedef struct catalog catalog;

/* What an observer of the catalog is told (health is one: it learns which instances
 * to check from here). */
enum cat_change {
    CAT_ADDED,      /* a new instance */
    CAT_REPLACED,   /* an instance registered again (fields and token may differ) */
    CAT_REMOVED,    /* an instance about to be freed */
    CAT_RENEWED     /* a heartbeat: the instance's TTL starts over */
};
typedef void (*cat_observer)(void *ud, cat_instance *in, int change);

catalog *cat_new(void);
/* Sets the catalog's one observer (NULL: none); it is called after each change, or just
 * before an instance is freed. */
void cat_observe(catalog *c, cat_observer fn, void *ud);
/* Frees every service and instance. cat_free(NULL) is a no-op. */
void cat_free(catalog *c);

/* Inserts (or, when the id is known, replaces the fields of) an instance from a store
 * record (borrowed; copied). owner: the IP that registered a new instance (NULL: its
 * host); a replaced instance keeps its owner. Sets *out to the catalog's instance.
 * Returns 0, -ENOMEM or -EINVAL (tags_json not a JSON array). */
int cat_put(catalog *c, const store_instance *si, const char *owner, cat_instance **out);
/* Removes and frees an instance; its service goes too when it was the last. */
void cat_remove(catalog *c, cat_instance *in);

cat_instance *cat_by_id(const catalog *c, const char *id);
cat_instance *cat_by_key(const catalog *c, const char *service, const char *host, int port);
cat_service *cat_service_get(const catalog *c, const char *name, size_t len);
/* The same with dict_hash(name, len) already computed. */
cat_service *cat_service_get_h(const catalog *c, const char *name, size_t len, uint64_t h);

/* Sets status, keeping the service's passing count and generations right. */
void cat_set_status(cat_instance *in, int status);
/* Puts an instance in maintenance (on) or back in service, keeping the service's counts
 * and generations right; back in service, its TTL starts over (the observer is told
 * CAT_RENEWED), as the owner could not be expected to heartbeat meanwhile. */
void cat_set_maintenance(catalog *c, cat_instance *in, int on);
/* Is the instance handed out by lookups: passing and not in maintenance? */
int cat_in_service(const cat_instance *in);
/* Sets the check/heartbeat figures of an instance (what its JSON shows besides its
 * registration) and gives its service a new generation. */
void cat_set_health(cat_instance *in, int64_t last_seen, int64_t last_check, int failures);
/* A heartbeat at now (Unix ms): sets last_seen and tells the observer (CAT_RENEWED). */
void cat_renew(catalog *c, cat_instance *in, int64_t now);

/* Changes whenever the list of services changes: a service comes or goes, an instance
 * comes, goes, changes status or description (a new value each time, never reused).
 * Check times do not change it. */
uint64_t cat_generation(const catalog *c);
size_t cat_services(const catalog *c);
size_t cat_instances(const catalog *c);
/* Memory the catalog's instances hold: their structs, strings, parsed tags and their
 * share of the indexes (what --max-catalog-bytes bounds). */
size_t cat_bytes(const catalog *c);
/* What one instance of these sizes would add to cat_bytes (for admission before the
 * commit). */
size_t cat_estimate(size_t service_len, size_t host_len, size_t desc_len, size_t tags_json_len,
                    size_t ntags);
/* Instances registered by (owned by) this IP. */
size_t cat_owned(const catalog *c, const char *ip);
/* Services sorted by name into a new array (caller frees it, not the elements). */
cat_service **cat_sorted_services(const catalog *c, size_t *n);
/* Iterates every instance: *pos starts at 0. */
cat_instance *cat_next_instance(const catalog *c, size_t *pos);

/* Does the instance carry this tag? */
int cat_has_tag(const cat_instance *in, const char *tag);
/* The JSON object of one instance, as lookups list it: "status" is "maintenance" for an
 * instance in maintenance, which then also carries "health" (its check verdict,
 * "passing" or "critical"). New reference. */
json_t *cat_instance_json(const cat_instance *in);
/* Fills a store record that borrows from the instance (for writes of health state). */
void cat_to_store(const cat_instance *in, store_instance *si);

#endif
