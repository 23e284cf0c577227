/* catalog.h — the in-memory picture of the store: services, their instances, and the
 * indexes lookups need (by service, by id, by (service, host, port)). Loaded from the
 * store at start; afterwards changed only by committed writes and health results, on
 * the loop thread. Lookups read it and never touch the disk.
 *
 * Every change to a service's instances or their status bumps the service's `gen`:
 * cached lookup answers carry the generation they were built from, so an answer older
 * than an acknowledged change can never be served (see cache.h). */
#ifndef REGISTRY_CATALOG_H
#define REGISTRY_CATALOG_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "store/store.h"

typedef struct cat_service cat_service;

typedef struct cat_instance {
    char id[STORE_ID_LEN + 1];
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
    int successes;                  /* consecutive passed checks while critical (rise) */
    char *key;                      /* owned "service\nhost\nport": the upsert key */
    size_t key_len;
    size_t slot;                    /* index in svc->inst */
    /* health bookkeeping, owned by health.c */
    uint64_t hc_due;                /* loop ms of the next check */
    size_t hc_idx;                  /* index in the check heap, SIZE_MAX = none */
    uint64_t ttl_due;               /* loop ms of the TTL deadline (0 = no TTL) */
    size_t ttl_idx;                 /* index in the TTL heap, SIZE_MAX = none */
    int ttl_warned;                 /* heartbeat_missed already logged this period */
    struct hc_probe *probe;         /* check in flight, or NULL */
    int evict_pending;              /* an evict/expire is queued to the writer */
    int hc_state;                   /* health.c's count of it: 0 none, 1 checked, 2 failing */
    int hc_dirty;                   /* check times changed since last persisted */
    char *frag;                     /* owned, lazily built: the instance's JSON object */
    size_t frag_len;
    char *head;                     /* owned, lazily built: "\"ok\":true,..." head of a lookup
                                     * answer that hands out this instance */
    size_t head_len;
} cat_instance;

struct cat_service {
    char *name;                     /* owned */
    size_t name_len;
    cat_instance **inst;            /* owned array of instances, registration order */
    size_t n, cap;
    size_t passing;                 /* how many have status passing */
    uint64_t rr;                    /* round-robin cursor */
    uint64_t gen;                   /* new on every change (cache validation) */
    struct catalog *cat;            /* back-pointer (borrowed) */
};

typedef struct catalog catalog;

catalog *cat_new(void);
/* Frees every service and instance. cat_free(NULL) is a no-op. */
void cat_free(catalog *c);

/* Inserts (or, when the id is known, replaces the fields of) an instance from a store
 * record (borrowed; copied). Sets *out to the catalog's instance. Returns 0, -ENOMEM or
 * -EINVAL (tags_json not a JSON array). */
int cat_put(catalog *c, const store_instance *si, cat_instance **out);
/* Removes and frees an instance; its service goes too when it was the last. */
void cat_remove(catalog *c, cat_instance *in);

cat_instance *cat_by_id(const catalog *c, const char *id);
cat_instance *cat_by_key(const catalog *c, const char *service, const char *host, int port);
cat_service *cat_service_get(const catalog *c, const char *name, size_t len);

/* Sets status, keeping the service's passing count and generation right. */
void cat_set_status(cat_instance *in, int status);

/* Changes whenever any service changes (a new value each time, never reused). */
uint64_t cat_generation(const catalog *c);
size_t cat_services(const catalog *c);
size_t cat_instances(const catalog *c);
/* Services sorted by name into a new array (caller frees it, not the elements). */
cat_service **cat_sorted_services(const catalog *c, size_t *n);
/* Iterates every instance: *pos starts at 0. */
cat_instance *cat_next_instance(const catalog *c, size_t *pos);

/* Does the instance carry this tag? */
int cat_has_tag(const cat_instance *in, const char *tag);
/* The JSON object of one instance, as lookups list it. New reference. */
json_t *cat_instance_json(const cat_instance *in);
/* The same, encoded, kept with the instance until it changes (NULL when out of memory).
 * Borrowed: valid until the instance changes (cat_changed) or goes. */
const char *cat_instance_frag(cat_instance *in, size_t *len);
/* The head of a lookup answer that hands out this instance:
 * "\"ok\":true,\"service\":..,\"host\":..,\"port\":..,\"description\":..,"
 * Borrowed like cat_instance_frag; it changes only with a re-registration. */
const char *cat_instance_head(cat_instance *in, size_t *len);
/* Call after changing any field of an instance that its JSON shows (times, failures). */
void cat_changed(cat_instance *in);
/* Fills a store record that borrows from the instance (for writes of health state). */
void cat_to_store(const cat_instance *in, store_instance *si);

#endif
