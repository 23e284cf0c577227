/* SPDX-License-Identifier: BSD-2-Clause */
/* usage.c — who asked for what (see usage.h). */
#include "core/usage.h"

#include <stdlib.h>
#include <string.h>

#include "base/dict.h"

#define LOOKUP_CLIENTS_MAX 10000    /* distinct clients counted per service per summary */

/* Lookups of one service since the last summary: a count and the distinct clients (a
 * small open-addressing set of the hashes of their IPs, capped). */
typedef struct lookup_count {
    char *key;                  /* owned; the dict key: the service, "|via" appended */
    char *service;              /* owned */
    const char *via;            /* static: the front-end ("dns"), NULL for the line one */
    uint64_t count;
    uint64_t *clients;          /* owned set of IP hashes, 0 = empty slot */
    size_t nclients, cap;
} lookup_count;

static void lookup_count_free(lookup_count *lc) {
    free(lc->key);
    free(lc->service);
    free(lc->clients);
    free(lc);
}

static void add_client(lookup_count *lc, uint64_t h) {
    if (lc->nclients >= LOOKUP_CLIENTS_MAX)
        return;
    if ((lc->nclients + 1) * 2 > lc->cap) {
        size_t ncap = lc->cap ? lc->cap * 2 : 8;
        uint64_t *ns = calloc(ncap, sizeof(*ns));
        if (ns == NULL)
            return;
        for (size_t i = 0; i < lc->cap; i++) {
            if (lc->clients[i] == 0)
                continue;
            size_t j = lc->clients[i] & (ncap - 1);
            while (ns[j] != 0)
                j = (j + 1) & (ncap - 1);
            ns[j] = lc->clients[i];
        }
        free(lc->clients);
        lc->clients = ns;
        lc->cap = ncap;
    }
    size_t j = h & (lc->cap - 1);
    while (lc->clients[j] != 0) {
        if (lc->clients[j] == h)
            return;
        j = (j + 1) & (lc->cap - 1);
    }
    lc->clients[j] = h;
    lc->nclients++;
}

void usage_lookup(core *c, const char *client, uint64_t client_hash, const char *via,
                  const char *service, size_t slen, uint64_t service_hash,
                  const cat_instance *in) {
    if (c->cfg.log_lookups) {
        if (alog_enabled(c->log, ALOG_INFO)) {
            json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:s}", "service", service, "id", in->id,
                                  "host", in->host, "port", in->port, "client", client);
            if (o != NULL && via != NULL)
                json_object_set_new(o, "via", json_string(via));
            alog_event(c->log, ALOG_INFO, "lookup", o);
        }
        return;
    }
    /* The key: the service, and "|via" for another front-end's lookups. Built without
     * printf: this runs for every lookup. */
    char key[REQ_SERVICE_MAX + 32];
    size_t klen = slen, vlen = via ? strlen(via) : 0;
    if (slen > REQ_SERVICE_MAX || vlen > 30)
        return;
    memcpy(key, service, slen);
    if (via != NULL) {
        key[klen++] = '|';
        memcpy(key + klen, via, vlen);
        klen += vlen;
    }
    key[klen] = '\0';
    lookup_count *lc = via ? dict_get(c->lookup_counts, key, klen)
                           : dict_get_h(c->lookup_counts, key, klen, service_hash);
    if (lc == NULL) {
        lc = calloc(1, sizeof(*lc));
        if (lc == NULL || (lc->key = strdup(key)) == NULL ||
            (lc->service = strndup(service, slen)) == NULL ||
            dict_put(c->lookup_counts, lc->key, klen, lc) != 0) {
            if (lc)
                lookup_count_free(lc);
            return;
        }
        lc->via = via;
    }
    lc->count++;
    add_client(lc, client_hash | 1); /* 0 marks an empty slot */
}

void usage_clear(core *c) {
    size_t pos = 0;
    lookup_count *lc;
    dict *fresh = dict_new();
    if (fresh == NULL)
        return; /* keep counting into the old one */
    while ((lc = dict_next(c->lookup_counts, &pos)) != NULL)
        lookup_count_free(lc);
    dict_free(c->lookup_counts);
    c->lookup_counts = fresh;
}

void usage_summary(core *c) {
    if (dict_size(c->lookup_counts) == 0)
        return;
    size_t pos = 0;
    lookup_count *lc;
    while ((lc = dict_next(c->lookup_counts, &pos)) != NULL) {
        json_t *o = json_pack("{s:s, s:I, s:I, s:s}", "service", lc->service, "count",
                              (json_int_t)lc->count, "clients", (json_int_t)lc->nclients,
                              "summary", "interval");
        if (o != NULL && lc->via != NULL)
            json_object_set_new(o, "via", json_string(lc->via));
        alog_event(c->log, ALOG_INFO, "lookup", o);
    }
    usage_clear(c);
}
