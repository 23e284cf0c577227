/* SPDX-License-Identifier: BSD-2-Clause */
/* catalog.c — see catalog.h. */
#include "core/catalog.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/dict.h"
#include "base/util.h"

/* service (63) + host (253) + port (5) + separators, with room. */
#define PROTO_KEY_MAX 400
/* An entry of a dict takes 2 to 4 slots of 32 bytes (load factor <= 1/2): 96 on average;
 * an instance is in two (by id, by key), and in its service's array. */
#define INDEX_BYTES (2 * 96 + 2 * sizeof(void *))
/* jansson: a string value of n bytes is an object of about 48 bytes plus a copy; an array
 * about 64 plus a pointer per entry. */
#define JSON_STRING_BYTES(n) (48 + (n) + 1)
#define JSON_ARRAY_BYTES(n) (64 + (n) * sizeof(void *))

typedef struct owner_count {
    char *ip;               /* owned; the dict key */
    size_t n;
} owner_count;

struct catalog {
    uint64_t gen_seq;       /* source of service generations: never reused */
    uint64_t list_gen;      /* cat_generation: the list of services changed */
    json_t *no_tags;        /* shared by every instance without tags */
    dict *services;         /* name -> cat_service */
    dict *ids;              /* id -> cat_instance */
    dict *keys;             /* "service\nhost\nport" -> cat_instance */
    size_t ninstances;
    size_t bytes;           /* sum of every instance's bytes */
    dict *owners;           /* registrant IP -> owner_count */
    cat_observer observer;  /* health, or NULL */
    void *observer_ud;
};

void cat_observe(catalog *c, cat_observer fn, void *ud) {
    c->observer = fn;
    c->observer_ud = ud;
}

static void notify(catalog *c, cat_instance *in, int change) {
    if (c->observer)
        c->observer(c->observer_ud, in, change);
}

catalog *cat_new(void) {
    catalog *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->services = dict_new();
    c->ids = dict_new();
    c->keys = dict_new();
    c->owners = dict_new();
    c->no_tags = json_array();
    if (!c->services || !c->ids || !c->keys || !c->owners || !c->no_tags) {
        cat_free(c);
        return NULL;
    }
    return c;
}

static void instance_free(cat_instance *in) {
    if (in == NULL)
        return;
    free(in->host);
    free(in->description);
    free(in->tags_json);
    json_decref(in->tags);
    free(in->key);
    free(in->owner);
    free(in);
}

static void service_free(cat_service *s) {
    free(s->name);
    free(s->inst);
    free(s);
}

void cat_free(catalog *c) {
    if (c == NULL)
        return;
    if (c->ids) {
        size_t pos = 0;
        cat_instance *in;
        while ((in = dict_next(c->ids, &pos)) != NULL)
            instance_free(in);
    }
    if (c->services) {
        size_t pos = 0;
        cat_service *s;
        while ((s = dict_next(c->services, &pos)) != NULL)
            service_free(s);
    }
    if (c->owners) {
        size_t pos = 0;
        owner_count *o;
        while ((o = dict_next(c->owners, &pos)) != NULL) {
            free(o->ip);
            free(o);
        }
    }
    dict_free(c->owners);
    dict_free(c->services);
    dict_free(c->ids);
    dict_free(c->keys);
    json_decref(c->no_tags);
    free(c);
}

/* A new generation for a changed service, unique across the catalog's life, so a
 * service deleted and created again never matches an old cached answer. */
static void bump(cat_service *s) {
    s->gen = ++s->cat->gen_seq;
    s->cat->list_gen = s->gen;
}

/* A new generation for a service whose instances' check times changed: lookups see it,
 * the list does not. */
static void touch(cat_service *s) {
    s->gen = ++s->cat->gen_seq;
}

static char *make_key(const char *service, const char *host, int port, size_t *len) {
    int n = snprintf(NULL, 0, "%s\n%s\n%d", service, host, port);
    char *k = malloc((size_t)n + 1);
    if (k == NULL)
        return NULL;
    snprintf(k, (size_t)n + 1, "%s\n%s\n%d", service, host, port);
    *len = (size_t)n;
    return k;
}

static cat_service *service_get_or_add(catalog *c, const char *name) {
    size_t len = strlen(name);
    cat_service *s = dict_get(c->services, name, len);
    if (s != NULL)
        return s;
    s = calloc(1, sizeof(*s));
    if (s == NULL || (s->name = strdup(name)) == NULL)
        goto fail;
    s->name_len = len;
    s->cat = c;
    if (dict_put(c->services, s->name, len, s) != 0)
        goto fail;
    return s;
fail:
    if (s)
        free(s->name);
    free(s);
    return NULL;
}

static int service_append(cat_service *s, cat_instance *in) {
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 4;
        cat_instance **ni = realloc(s->inst, ncap * sizeof(*ni));
        if (ni == NULL)
            return -ENOMEM;
        s->inst = ni;
        s->cap = ncap;
    }
    in->slot = s->n;
    s->inst[s->n++] = in;
    in->svc = s;
    return 0;
}

/* Copies the mutable fields of a store record into an instance. */
/* no_tags: the catalog's shared, immutable empty array: most instances have no tags. */
static int fill(cat_instance *in, const store_instance *si, json_t *no_tags) {
    char *host = strdup(si->host);
    char *desc = strdup(si->description ? si->description : "");
    char *tj = strdup(si->tags_json ? si->tags_json : "[]");
    json_t *tags = tj && strcmp(tj, "[]") == 0 && no_tags ? json_incref(no_tags)
                                                           : json_loads(tj ? tj : "[]", 0, NULL);
    if (!host || !desc || !tj || !tags || !json_is_array(tags)) {
        int rc = (host && desc && tj) ? -EINVAL : -ENOMEM;
        free(host);
        free(desc);
        free(tj);
        json_decref(tags);
        return rc;
    }
    free(in->host);
    free(in->description);
    free(in->tags_json);
    json_decref(in->tags);
    in->host = host;
    in->description = desc;
    in->tags_json = tj;
    in->tags = tags;
    in->port = si->port;
    in->ttl = si->ttl;
    in->check = si->check;
    memcpy(in->token_hash, si->token_hash, STORE_HASH_LEN);
    in->registered_at = si->registered_at;
    in->last_seen = si->last_seen;
    in->last_check = si->last_check;
    in->failures = si->failures;
    in->lease = si->lease;
    return 0;
}

static size_t usable(const void *p) {
    return p ? malloc_usable_size((void *)p) : 0;
}

/* What an instance holds, counted on its real allocations where we own them. */
static size_t instance_bytes(const cat_instance *in) {
    size_t n = usable(in) + usable(in->host) + usable(in->description) + usable(in->tags_json) +
               usable(in->key) + usable(in->owner) + INDEX_BYTES;
    size_t ntags = json_array_size(in->tags);
    if (ntags > 0) {
        n += JSON_ARRAY_BYTES(ntags);
        for (size_t i = 0; i < ntags; i++)
            n += JSON_STRING_BYTES(json_string_length(json_array_get(in->tags, i)));
    }
    return n;
}

size_t cat_estimate(size_t service_len, size_t host_len, size_t desc_len, size_t tags_json_len,
                    size_t ntags) {
    size_t n = sizeof(cat_instance) + (STORE_ID_MAX + 1) + (host_len + 1) + (desc_len + 1) +
               (tags_json_len + 1) +
               (service_len + host_len + 8) + 46 /* owner */ + INDEX_BYTES;
    if (ntags > 0)
        n += JSON_ARRAY_BYTES(ntags) + ntags * JSON_STRING_BYTES(0) + tags_json_len;
    return n;
}

static void account(catalog *c, cat_instance *in) {
    c->bytes -= in->bytes;
    in->bytes = instance_bytes(in);
    c->bytes += in->bytes;
}

/* Counts an instance for its owner (+1) or stops counting it (-1). */
static void own(catalog *c, const cat_instance *in, int delta) {
    const char *ip = in->owner ? in->owner : in->host;
    size_t len = strlen(ip);
    owner_count *o = dict_get(c->owners, ip, len);
    if (delta < 0) {
        if (o != NULL && --o->n == 0) {
            dict_del(c->owners, o->ip, len);
            free(o->ip);
            free(o);
        }
        return;
    }
    if (o == NULL) {
        if ((o = calloc(1, sizeof(*o))) == NULL || (o->ip = strdup(ip)) == NULL ||
            dict_put(c->owners, o->ip, len, o) != 0) {
            if (o)
                free(o->ip);
            free(o);
            return; /* uncounted: the cap errs on the lenient side when memory is short */
        }
    }
    o->n++;
}

size_t cat_owned(const catalog *c, const char *ip) {
    owner_count *o = dict_get(c->owners, ip, strlen(ip));
    return o ? o->n : 0;
}

size_t cat_bytes(const catalog *c) {
    return c->bytes;
}

int cat_put(catalog *c, const store_instance *si, const char *owner, cat_instance **out) {
    cat_instance *in = dict_get(c->ids, si->id, strlen(si->id));
    if (in != NULL) {
        /* Same id: a re-registration (the key cannot change: the store keys by it). */
        int rc = fill(in, si, c->no_tags); /* leaves status to cat_set_status */
        if (rc != 0)
            return rc;
        cat_set_status(in, si->status);
        in->svc->latest = in;
        account(c, in);
        bump(in->svc);
        in->ver = in->svc->gen;
        *out = in;
        notify(c, in, CAT_REPLACED);
        return 0;
    }
    size_t idlen = strnlen(si->id, STORE_ID_MAX);
    in = calloc(1, sizeof(*in) + idlen + 1);
    if (in == NULL)
        return -ENOMEM;
    memcpy(in->id, si->id, idlen);
    int rc = fill(in, si, c->no_tags);
    if (rc != 0) {
        instance_free(in);
        return rc;
    }
    in->status = si->status;
    if (owner != NULL && strcmp(owner, si->host) != 0 && (in->owner = strdup(owner)) == NULL) {
        instance_free(in);
        return -ENOMEM;
    }
    in->key = make_key(si->service, si->host, si->port, &in->key_len);
    cat_service *s = in->key ? service_get_or_add(c, si->service) : NULL;
    if (s == NULL || service_append(s, in) != 0) {
        instance_free(in);
        return -ENOMEM;
    }
    if (dict_put(c->ids, in->id, strlen(in->id), in) != 0 ||
        dict_put(c->keys, in->key, in->key_len, in) != 0) {
        dict_del(c->ids, in->id, strlen(in->id));
        s->n--;
        if (s->n == 0) {
            dict_del(c->services, s->name, s->name_len);
            service_free(s);
        }
        instance_free(in);
        return -ENOMEM;
    }
    in->maintenance = si->maintenance != 0;
    if (cat_in_service(in))
        s->passing++;
    if (in->maintenance)
        s->maintenance++;
    s->latest = in;
    bump(s);
    in->ver = s->gen;
    c->ninstances++;
    account(c, in);
    own(c, in, +1);
    *out = in;
    notify(c, in, CAT_ADDED);
    return 0;
}

void cat_remove(catalog *c, cat_instance *in) {
    notify(c, in, CAT_REMOVED);
    own(c, in, -1);
    c->bytes -= in->bytes;
    cat_service *s = in->svc;
    dict_del(c->ids, in->id, strlen(in->id));
    dict_del(c->keys, in->key, in->key_len);
    if (cat_in_service(in))
        s->passing--;
    if (in->maintenance)
        s->maintenance--;
    /* Keep registration order: shift the tail down (services are small; O(n) is fine). */
    memmove(&s->inst[in->slot], &s->inst[in->slot + 1], (s->n - in->slot - 1) * sizeof(*s->inst));
    s->n--;
    for (size_t i = in->slot; i < s->n; i++)
        s->inst[i]->slot = i;
    if (s->latest == in) { /* the newest of those left (the last of equal times) */
        s->latest = s->n ? s->inst[0] : NULL;
        for (size_t i = 1; i < s->n; i++)
            if (s->inst[i]->registered_at >= s->latest->registered_at)
                s->latest = s->inst[i];
    }
    bump(s);
    c->ninstances--;
    if (s->n == 0) {
        dict_del(c->services, s->name, s->name_len);
        service_free(s);
    }
    instance_free(in);
}

cat_instance *cat_by_id(const catalog *c, const char *id) {
    return dict_get(c->ids, id, strlen(id));
}

cat_instance *cat_by_key(const catalog *c, const char *service, const char *host, int port) {
    char buf[PROTO_KEY_MAX];
    int n = snprintf(buf, sizeof(buf), "%s\n%s\n%d", service, host, port);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return NULL;
    return dict_get(c->keys, buf, (size_t)n);
}

cat_service *cat_service_get(const catalog *c, const char *name, size_t len) {
    return dict_get(c->services, name, len);
}

cat_service *cat_service_get_h(const catalog *c, const char *name, size_t len, uint64_t h) {
    return dict_get_h(c->services, name, len, h);
}

int cat_in_service(const cat_instance *in) {
    return in->status == STORE_PASSING && !in->maintenance;
}

/* After in's status or maintenance changed (was: it was in service before): the
 * service's passing count, its generation and the instance's version follow. */
static void changed_service(cat_instance *in, int was) {
    if (was != cat_in_service(in)) {
        if (was)
            in->svc->passing--;
        else
            in->svc->passing++;
    }
    bump(in->svc);
    in->ver = in->svc->gen;
}

void cat_set_status(cat_instance *in, int status) {
    if (in->status == status)
        return;
    int was = cat_in_service(in);
    in->status = status;
    changed_service(in, was);
}

void cat_set_maintenance(catalog *c, cat_instance *in, int on) {
    on = on != 0;
    if (in->maintenance == on)
        return;
    int was = cat_in_service(in);
    in->maintenance = on;
    if (on)
        in->svc->maintenance++;
    else
        in->svc->maintenance--;
    changed_service(in, was);
    if (!on)
        notify(c, in, CAT_RENEWED);
}

void cat_set_health(cat_instance *in, int64_t last_seen, int64_t last_check, int failures) {
    if (in->last_seen == last_seen && in->last_check == last_check && in->failures == failures)
        return;
    in->last_seen = last_seen;
    in->last_check = last_check;
    in->failures = failures;
    touch(in->svc);
    in->ver = in->svc->gen;
}

void cat_renew(catalog *c, cat_instance *in, int64_t now) {
    cat_set_health(in, now, in->last_check, in->failures);
    notify(c, in, CAT_RENEWED);
}

uint64_t cat_generation(const catalog *c) {
    return c->list_gen;
}

size_t cat_services(const catalog *c) {
    return dict_size(c->services);
}

size_t cat_instances(const catalog *c) {
    return c->ninstances;
}

static int by_name(const void *a, const void *b) {
    const cat_service *x = *(cat_service *const *)a, *y = *(cat_service *const *)b;
    return strcmp(x->name, y->name);
}

cat_service **cat_sorted_services(const catalog *c, size_t *n) {
    size_t count = dict_size(c->services), pos = 0, i = 0;
    cat_service **arr = malloc((count ? count : 1) * sizeof(*arr));
    if (arr == NULL)
        return NULL;
    cat_service *s;
    while ((s = dict_next(c->services, &pos)) != NULL)
        arr[i++] = s;
    qsort(arr, i, sizeof(*arr), by_name);
    *n = i;
    return arr;
}

cat_instance *cat_next_instance(const catalog *c, size_t *pos) {
    return dict_next(c->ids, pos);
}

int cat_has_tag(const cat_instance *in, const char *tag) {
    size_t i;
    json_t *t;
    json_array_foreach(in->tags, i, t) {
        if (strcmp(json_string_value(t), tag) == 0)
            return 1;
    }
    return 0;
}

/* A time as RFC 3339, or JSON null for "never" (0). New reference. */
static json_t *time_json(int64_t ms) {
    char buf[UTIL_TIME_LEN];
    return ms > 0 ? json_string(util_rfc3339(ms, buf)) : json_null();
}

json_t *cat_instance_json(const cat_instance *in) {
    const char *health = in->status == STORE_PASSING ? "passing" : "critical";
    json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:O, s:s, s:o, s:o, s:o, s:i, s:s}", "id", in->id,
                          "host", in->host, "port", in->port, "description", in->description,
                          "tags", in->tags, "status",
                          in->maintenance ? "maintenance" : health, "registered_at",
                          time_json(in->registered_at), "last_seen", time_json(in->last_seen),
                          "last_check", time_json(in->last_check), "failures", in->failures,
                          "check", in->check == STORE_CHECK_TCP ? "tcp" : "none");
    if (o != NULL && in->ttl > 0)
        json_object_set_new(o, "ttl", json_integer(in->ttl));
    if (o != NULL && in->maintenance)
        json_object_set_new(o, "health", json_string(health));
    return o;
}

void cat_to_store(const cat_instance *in, store_instance *si) {
    memset(si, 0, sizeof(*si));
    snprintf(si->id, sizeof(si->id), "%s", in->id);
    si->service = in->svc->name;
    si->host = in->host;
    si->port = in->port;
    si->description = in->description;
    si->tags_json = in->tags_json;
    si->ttl = in->ttl;
    si->check = in->check;
    memcpy(si->token_hash, in->token_hash, STORE_HASH_LEN);
    si->registered_at = in->registered_at;
    si->last_seen = in->last_seen;
    si->last_check = in->last_check;
    si->status = in->status;
    si->failures = in->failures;
    si->maintenance = in->maintenance;
}
