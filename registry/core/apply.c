/* SPDX-License-Identifier: BSD-2-Clause */
/* apply.c — see apply.h. */
#include "core/apply.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "core/writer.h"

int apply_change(core *c, const store_change *ch, const char *client, const char *owner,
                 int level) {
    store_event ev = ch->event;
    int rc = 0;
    cat_instance *in = NULL;
    switch (ch->kind) {
    case STORE_PUT: {
        store_instance si = ch->inst;
        memcpy(si.id, ch->id_out, sizeof(si.id));
        rc = cat_put(c->cat, &si, owner, &in);
        ev.id = ch->id_out; /* the event names the real id (the old one on re-registration) */
        break;
    }
    case STORE_DELETE:
        if ((in = cat_by_id(c->cat, ch->inst.id)) != NULL)
            cat_remove(c->cat, in);
        break;
    case STORE_HEALTH:
        if ((in = cat_by_id(c->cat, ch->inst.id)) != NULL) {
            cat_set_status(in, ch->inst.status);
            cat_set_health(in, ch->inst.last_seen, ch->inst.last_check, ch->inst.failures);
        }
        break;
    case STORE_MAINTENANCE:
        if ((in = cat_by_id(c->cat, ch->inst.id)) != NULL) {
            cat_set_maintenance(c->cat, in, ch->inst.maintenance);
            if (ch->inst.lease >= 0 && in->ttl > 0 && c->shared)
                in->lease = ch->inst.lease; /* its TTL's new lease (none in maintenance) */
        }
        break;
    default:
        break;
    }
    if (ch->has_event)
        apply_publish(c, &ev, client, level);
    return rc;
}

int apply_loaded(core *c, const store_instance *si) {
    cat_instance *in;
    return cat_put(c->cat, si, NULL, &in);
}

void apply_heartbeat(core *c, cat_instance *in) {
    cat_renew(c->cat, in, util_now_ms());
}

void apply_checked(core *c, cat_instance *in, int64_t last_seen, int64_t last_check) {
    cat_set_health(in, last_seen, last_check, in->failures);
}

/* A JSON string into b (quotes and escapes included). */
static void put_jstr(ubuf *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    ubuf_add(b, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        ubuf_add(b, run, (size_t)(s - run));
        char esc[6] = {'\\', (char)ch, 0, 0, 0, 0};
        size_t n = 2;
        if (ch < 0x20) {
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            n = 6;
        }
        ubuf_add(b, esc, n);
        run = s + 1;
    }
    ubuf_add(b, run, (size_t)(s - run));
    ubuf_add(b, "\"", 1);
}

static void put_num(ubuf *b, const char *key, long long v) {
    char tmp[48];
    int n = snprintf(tmp, sizeof(tmp), "%s%lld", key, v);
    ubuf_add(b, tmp, (size_t)n);
}

/* Could a detail member shadow one of the line's own (seq, service, id, host, port,
 * client)? Then the general path drops it, as it always did. */
static int detail_collides(const char *d) {
    static const char *const own[] = {"\"seq\"", "\"service\"", "\"id\"", "\"host\"",
                                      "\"port\"", "\"client\""};
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (strstr(d, own[i]) != NULL)
            return 1;
    return 0;
}

void apply_publish(core *c, const store_event *ev, const char *client, int level) {
    bus_publish(c->bus, ev, writer_event_json);
    if (!alog_enabled(c->log, level))
        return;
    /* The log line: the event's fields flattened, plus who asked; written as text (a
     * registration's JSON objects and their dump were a quarter of its instructions). */
    const char *d = ev->detail;
    size_t dlen = d ? strlen(d) : 0;
    int detail_ok = dlen == 0 || (dlen >= 2 && d[0] == '{' && d[dlen - 1] == '}' &&
                                  !detail_collides(d));
    if (!detail_ok) {
        json_t *o = writer_event_json(ev), *fields = json_object();
        if (o != NULL && fields != NULL) {
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
        json_decref(o);
        alog_event(c->log, level, ev->event, fields);
        return;
    }
    ubuf b = {0};
    /* Room for everything at once (an escape is at most 6 bytes a byte): no add below
     * can fail half-way and leave a line with a member missing. */
    size_t need = 160 + dlen;
    const char *strs[] = {ev->service, ev->id, ev->host, client};
    for (size_t i = 0; i < 4; i++)
        need += strs[i] ? 6 * strlen(strs[i]) : 0;
    if (ubuf_reserve(&b, need) != 0)
        return;
    put_num(&b, "\"seq\":", (long long)ev->seq);
    if (ev->service) {
        ubuf_add(&b, ",\"service\":", 11);
        put_jstr(&b, ev->service);
    }
    if (ev->id) {
        ubuf_add(&b, ",\"id\":", 6);
        put_jstr(&b, ev->id);
    }
    if (ev->host) {
        ubuf_add(&b, ",\"host\":", 8);
        put_jstr(&b, ev->host);
    }
    if (ev->port)
        put_num(&b, ",\"port\":", ev->port);
    if (dlen > 2) { /* the detail's members, from its JSON text */
        ubuf_add(&b, ",", 1);
        ubuf_add(&b, d + 1, dlen - 2);
    }
    if (client && client[0]) {
        ubuf_add(&b, ",\"client\":", 10);
        put_jstr(&b, client);
    }
    if (b.p != NULL) /* else out of memory: the line is lost, the event is not */
        alog_event_text(c->log, level, ev->event, b.p, b.len);
    free(b.p);
}
