/* SPDX-License-Identifier: BSD-2-Clause */
/* pipeline.c — see pipeline.h. */
#include "core/pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "core/apply.h"

static char *dup_or_null(const char *s) {
    return s ? strdup(s) : NULL;
}

void pending_free(pending *p) {
    if (p == NULL)
        return;
    free(p->service);
    free(p->host);
    free(p->description);
    free(p->tags_json);
    free(p->detail);
    free(p);
}

pending *pending_new(core *c, int kind, const char *event, const char *service, const char *id,
                     const char *host, int port, json_t *detail) {
    pending *p = calloc(1, sizeof(*p));
    if (p == NULL)
        goto fail;
    p->core = c;
    p->level = ALOG_INFO;
    p->ch.kind = kind;
    p->service = dup_or_null(service);
    p->host = dup_or_null(host);
    if ((service && !p->service) || (host && !p->host))
        goto fail;
    if (detail) {
        if ((p->detail = json_dumps(detail, JSON_COMPACT)) == NULL)
            goto fail;
    }
    p->ch.inst.service = p->service;
    p->ch.inst.host = p->host;
    p->ch.inst.port = port;
    p->ch.inst.description = "";
    p->ch.inst.tags_json = "[]";
    if (id)
        snprintf(p->ch.inst.id, sizeof(p->ch.inst.id), "%s", id);
    if (event) {
        p->ch.has_event = 1;
        p->ch.event.ts = util_now_ms();
        p->ch.event.event = event; /* string literal */
        p->ch.event.service = p->service;
        p->ch.event.id = id ? p->ch.inst.id : NULL;
        p->ch.event.host = p->host;
        p->ch.event.port = port;
        p->ch.event.detail = p->detail;
    }
    json_decref(detail);
    return p;
fail:
    json_decref(detail);
    pending_free(p);
    return NULL;
}

static void pending_job_done(wjob *job) {
    pending *p = job->ud;
    p->done(p);
}

void pending_submit(pending *p) {
    p->job.kind = WJOB_APPLY;
    p->job.changes = &p->ch;
    p->job.n = 1;
    p->job.done = pending_job_done;
    p->job.ud = p;
    writer_submit(p->core->writer, &p->job);
}

static void emit_done(pending *p) {
    if (p->ch.rc == 0)
        apply_change(p->core, &p->ch, NULL, NULL, p->level);
    else
        alog_msg(p->core->log, ALOG_ERROR, "could not store event %s: %s", p->ch.event.event,
                 p->job.err);
    pending_free(p);
}

void pipeline_emit(core *c, const char *event, int level, json_t *detail) {
    pending *p = pending_new(c, STORE_EVENT_ONLY, event, NULL, NULL, NULL, 0, detail);
    if (p == NULL) {
        alog_msg(c->log, ALOG_ERROR, "could not record event %s: out of memory", event);
        return;
    }
    p->level = level;
    p->done = emit_done;
    pending_submit(p);
}
