/* SPDX-License-Identifier: BSD-2-Clause */
/* limits.c — what registrations may take (see limits.h). */
#include "core/limits.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A new instance's registration in flight, counted by the limits until it is done. */
typedef struct pending_count {
    char *ip;                       /* owned; the dict key */
    size_t n;
} pending_count;

static size_t pending_of(core *c, const char *ip) {
    pending_count *pc = dict_get(c->pending_by_client, ip, strlen(ip));
    return pc ? pc->n : 0;
}

/* Admits a new instance of bytes for p's owner. Returns 0 or -ENOMEM. */
int limits_reserve(core *c, pending *p, size_t bytes) {
    size_t len = strlen(p->owner);
    pending_count *pc = dict_get(c->pending_by_client, p->owner, len);
    if (pc == NULL) {
        if ((pc = calloc(1, sizeof(*pc))) == NULL || (pc->ip = strdup(p->owner)) == NULL ||
            dict_put(c->pending_by_client, pc->ip, len, pc) != 0) {
            if (pc)
                free(pc->ip);
            free(pc);
            return -ENOMEM;
        }
    }
    pc->n++;
    c->pending_new++;
    c->pending_bytes += bytes;
    p->reserved = bytes;
    return 0;
}

void limits_release(core *c, pending *p) {
    if (p->reserved == 0)
        return;
    size_t len = strlen(p->owner);
    pending_count *pc = dict_get(c->pending_by_client, p->owner, len);
    if (pc != NULL && --pc->n == 0) {
        dict_del(c->pending_by_client, pc->ip, len);
        free(pc->ip);
        free(pc);
    }
    c->pending_new--;
    c->pending_bytes -= p->reserved;
    p->reserved = 0;
}

void limits_clear(core *c) {
    size_t pos = 0;
    pending_count *pc;
    while ((pc = dict_next(c->pending_by_client, &pos)) != NULL) {
        free(pc->ip);
        free(pc);
    }
}

req_err limits_admit(core *c, const request *rq, const peer *pr, const cat_instance *existing,
                     size_t bytes, char *msg, size_t len) {
    const core_config *cfg = &c->cfg;
    const char *limit = NULL, *flag = NULL;
    if (existing == NULL) {
        cat_service *svc = cat_service_get(c->cat, rq->service, strlen(rq->service));
        size_t owned = cat_owned(c->cat, pr->ip) + pending_of(c, pr->ip);
        if ((long long)(cat_instances(c->cat) + c->pending_new) >= cfg->max_instances) {
            limit = "max_instances", flag = "--max-instances";
            snprintf(msg, len, "registry is full (--max-instances %lld reached)",
                     cfg->max_instances);
        } else if (svc != NULL && (long long)svc->n >= cfg->max_instances_per_service) {
            limit = "max_instances", flag = "--max-instances-per-service";
            snprintf(msg, len, "service \"%s\" is full (--max-instances-per-service %lld reached)",
                     rq->service, cfg->max_instances_per_service);
        } else if ((long long)owned >= cfg->max_instances_per_client) {
            limit = "max_instances", flag = "--max-instances-per-client";
            snprintf(msg, len, "client %s has registered %zu instances "
                               "(--max-instances-per-client %lld reached)",
                     pr->ip, owned, cfg->max_instances_per_client);
        }
    }
    size_t held = cat_bytes(c->cat) + c->pending_bytes;
    size_t grows = existing == NULL ? bytes : (bytes > existing->bytes ? bytes - existing->bytes : 0);
    if (limit == NULL && grows > 0 && (long long)(held + grows) > cfg->max_catalog_bytes) {
        limit = "max_catalog_bytes", flag = "--max-catalog-bytes";
        snprintf(msg, len, "registry memory is full (--max-catalog-bytes %lld reached: the "
                           "catalog holds %zu bytes)", cfg->max_catalog_bytes, held);
    }
    if (limit == NULL)
        return RERR_NONE;
    alog_event(c->log, ALOG_WARN, "limit",
               json_pack("{s:s, s:s, s:s, s:s}", "limit", limit, "flag", flag, "service",
                         rq->service, "client", pr->addr));
    return RERR_UNAVAILABLE;
}
