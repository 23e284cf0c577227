/* events.c — the write pipeline's bookkeeping and the lifecycle event fan-out.
 *
 * Every durable change is a `pending`: the change handed to the writer, owned copies of
 * what it borrows, and what to do after the commit. Lifecycle events ride in the same
 * transaction as their change, so an event is published (log + watchers) only once the
 * change it describes is durable, carrying the sequence number the store gave it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "base/util.h"

static char *dup_or_null(const char *s) {
    return s ? strdup(s) : NULL;
}

void pending_free(pending *p) {
    if (p == NULL)
        return;
    if (p->c)
        conn_unref(p->c);
    json_decref(p->request_id);
    free(p->service);
    free(p->host);
    free(p->description);
    free(p->tags_json);
    free(p->detail);
    free(p);
}

pending *pending_new(regd *d, int kind, const char *event, const char *service, const char *id,
                     const char *host, int port, json_t *detail) {
    pending *p = calloc(1, sizeof(*p));
    if (p == NULL)
        goto fail;
    p->d = d;
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
    writer_submit(p->d->writer, &p->job);
}

void events_publish(regd *d, const store_event *ev, const char *client, int level) {
    json_t *o = writer_event_json(ev);
    if (o == NULL)
        return;
    if (d->nwatchers > 0) {
        char *line = json_dumps(o, JSON_COMPACT);
        if (line != NULL) {
            size_t n = strlen(line);
            char *withnl = realloc(line, n + 2);
            if (withnl != NULL) {
                withnl[n] = '\n';
                withnl[n + 1] = '\0';
                server_broadcast(d, ev->service, withnl, n + 1);
                line = withnl;
            }
            free(line);
        }
    }
    /* The log line: the event's fields flattened, plus who asked. */
    json_t *fields = json_object();
    if (fields != NULL) {
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v) {
            if (strcmp(k, "ts") == 0 || strcmp(k, "event") == 0 || strcmp(k, "detail") == 0)
                continue;
            json_object_set(fields, k, v);
        }
        json_t *detail = json_object_get(o, "detail");
        if (json_is_object(detail))
            json_object_update_missing(fields, detail);
        if (client && client[0])
            json_object_set_new(fields, "client", json_string(client));
    }
    alog_event(d->log, level, ev->event, fields);
    json_decref(o);
}

static void emit_done(pending *p) {
    if (p->ch.rc == 0)
        events_publish(p->d, &p->ch.event, NULL, p->level);
    else
        alog_msg(p->d->log, ALOG_ERROR, "could not store event %s: %s", p->ch.event.event,
                 p->job.err);
    pending_free(p);
}

void events_emit(regd *d, const char *event, int level, json_t *detail) {
    pending *p = pending_new(d, STORE_EVENT_ONLY, event, NULL, NULL, NULL, 0, detail);
    if (p == NULL)
        return;
    p->level = level;
    p->done = emit_done;
    pending_submit(p);
}
