/* SPDX-License-Identifier: BSD-2-Clause */
/* apply.c — see apply.h. */
#include "core/apply.h"

#include <errno.h>
#include <string.h>

#include "base/util.h"

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
        if ((in = cat_by_id(c->cat, ch->inst.id)) != NULL)
            cat_set_maintenance(c->cat, in, ch->inst.maintenance);
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

void apply_publish(core *c, const store_event *ev, const char *client, int level) {
    json_t *o = writer_event_json(ev);
    if (o == NULL)
        return;
    bus_publish(c->bus, ev, o);
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
    alog_event(c->log, level, ev->event, fields);
    json_decref(o);
}
