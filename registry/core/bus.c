/* SPDX-License-Identifier: BSD-2-Clause */
/* bus.c — see bus.h. A doubly linked list of subscriptions; ending one while a publish
 * walks the list only marks it, and the walk's end frees what was marked. */
#include "core/bus.h"

#include <stdlib.h>

struct bus_sub {
    event_bus *bus;
    bus_cb cb;                  /* NULL once unsubscribed */
    void *ud;
    int raw;                    /* reads ev only: gets no JSON */
    bus_sub *prev, *next;
};

struct event_bus {
    bus_sub *head, *tail;
    size_t live;
    int publishing;             /* nesting depth of bus_publish */
    int dead;                   /* subscriptions marked during a publish */
};

event_bus *bus_new(void) {
    return calloc(1, sizeof(event_bus));
}

static void unlink_sub(event_bus *b, bus_sub *s) {
    if (s->prev)
        s->prev->next = s->next;
    else
        b->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        b->tail = s->prev;
    free(s);
}

void bus_free(event_bus *b) {
    if (b == NULL)
        return;
    while (b->head)
        unlink_sub(b, b->head);
    free(b);
}

bus_sub *bus_subscribe_raw(event_bus *b, bus_cb cb, void *ud) {
    bus_sub *s = bus_subscribe(b, cb, ud);
    if (s != NULL)
        s->raw = 1;
    return s;
}

bus_sub *bus_subscribe(event_bus *b, bus_cb cb, void *ud) {
    bus_sub *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->bus = b;
    s->cb = cb;
    s->ud = ud;
    s->prev = b->tail;
    if (b->tail)
        b->tail->next = s;
    else
        b->head = s;
    b->tail = s;
    b->live++;
    return s;
}

void bus_unsubscribe(bus_sub *s) {
    if (s == NULL || s->cb == NULL)
        return;
    event_bus *b = s->bus;
    s->cb = NULL;
    b->live--;
    if (b->publishing)
        b->dead = 1;
    else
        unlink_sub(b, s);
}

size_t bus_subscribers(const event_bus *b) {
    return b->live;
}

void bus_publish(event_bus *b, const store_event *ev, json_t *(*make)(const store_event *ev)) {
    if (b->live == 0)
        return;
    json_t *obj = NULL;
    int made = 0;
    b->publishing++;
    for (bus_sub *s = b->head; s != NULL; s = s->next) {
        if (s->cb == NULL)
            continue;
        if (s->raw) {
            s->cb(s->ud, ev, NULL);
            continue;
        }
        if (!made) {
            obj = make(ev);
            made = 1;
        }
        if (obj != NULL)
            s->cb(s->ud, ev, obj);
    }
    json_decref(obj);
    if (--b->publishing == 0 && b->dead) {
        b->dead = 0;
        for (bus_sub *s = b->head, *next; s != NULL; s = next) {
            next = s->next;
            if (s->cb == NULL)
                unlink_sub(b, s);
        }
    }
}
