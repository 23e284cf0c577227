/* SPDX-License-Identifier: BSD-2-Clause */
/* lookup.c — see lookup.h. */
#include "core/lookup.h"

#include <stdlib.h>
#include <string.h>

#include "store/store.h"

size_t lookup_key(const char *service, const char *tag, int all, char *key) {
    size_t slen = strnlen(service, REQ_SERVICE_MAX), tlen = tag ? strnlen(tag, REQ_TAG_MAX) : 0;
    memcpy(key, service, slen);
    key[slen] = '\0';
    if (tlen)
        memcpy(key + slen + 1, tag, tlen);
    key[slen + 1 + tlen] = '\0';
    key[slen + 2 + tlen] = all ? '1' : '0';
    return slen + 3 + tlen;
}

static void set_free(cache_entry *e) {
    lookup_set *s = (lookup_set *)e;
    for (int i = 0; s->kinds && i < s->kinds->n; i++)
        if (s->attach[i] != NULL)
            s->kinds->free_fn[i](s->attach[i]);
    free(s); /* key, listed and cands live in the same block */
}

lookup_set *lookup_build(const cat_service *svc, const char *key, size_t key_len,
                         const char *tag, int all, const lookup_kinds *kinds, int *oom) {
    /* One block: the set, its two arrays, then its key (a miss allocates once). */
    size_t arr = svc->n * sizeof(cat_instance *);
    lookup_set *s = malloc(sizeof(*s) + 2 * arr + key_len);
    *oom = 1;
    if (s == NULL)
        return NULL;
    memset(s, 0, sizeof(*s));
    s->kinds = kinds;
    s->base.free_fn = set_free;
    s->base.gen = svc->gen;
    s->listed = (cat_instance **)(s + 1);
    s->cands = (cat_instance **)((char *)(s + 1) + arr);
    s->base.key = (char *)(s + 1) + 2 * arr;
    memcpy(s->base.key, key, key_len);
    s->base.key_len = key_len;
    for (size_t i = 0; i < svc->n; i++) {
        cat_instance *in = svc->inst[i];
        if ((tag && !cat_has_tag(in, tag)) || (!all && !cat_in_service(in)))
            continue;
        s->listed[s->nlisted++] = in;
        if (cat_in_service(in))
            s->cands[s->ncands++] = in;
    }
    if (s->nlisted == 0) {
        *oom = 0;
        goto fail;
    }
    /* "all" and none in service: host/port names one of the listed all the same (the
     * answer is a listing): a critical one, or with none, one in maintenance. */
    if (s->ncands == 0) {
        for (size_t i = 0; i < s->nlisted; i++)
            if (!s->listed[i]->maintenance)
                s->cands[s->ncands++] = s->listed[i];
    }
    if (s->ncands == 0) {
        memcpy(s->cands, s->listed, s->nlisted * sizeof(*s->cands));
        s->ncands = s->nlisted;
    }
    return s;
fail:
    set_free(&s->base);
    return NULL;
}
