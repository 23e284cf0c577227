/* SPDX-License-Identifier: BSD-2-Clause */
/* bus.h — the event bus: how the lifecycle events of the registry (register, evict,
 * check_failed, start, ...) reach whoever follows them: the line protocol's watchers
 * today, an HTTP event stream or metrics later. The core publishes each event once,
 * after the change it describes committed; subscribers are called in subscription order,
 * on the loop thread.
 */
#ifndef REGISTRY_CORE_BUS_H
#define REGISTRY_CORE_BUS_H

#include <stddef.h>
#include <jansson.h>

#include "store/store.h"

typedef struct event_bus event_bus;
typedef struct bus_sub bus_sub;

/* ev: the event as stored (borrowed); obj: its JSON form {seq, ts, event, service, id,
 * host, port, detail} (borrowed: incref to keep it), NULL for a raw subscription. Both
 * valid during the call. */
typedef void (*bus_cb)(void *ud, const store_event *ev, json_t *obj);

/* NULL when out of memory. bus_free(NULL) is a no-op; it frees every subscription. */
event_bus *bus_new(void);
void bus_free(event_bus *b);
/* Subscribes cb; NULL when out of memory. */
bus_sub *bus_subscribe(event_bus *b, bus_cb cb, void *ud);
/* The same for a subscriber that reads only ev (its obj is NULL): while every live
 * subscriber is raw, publishing builds no JSON. */
bus_sub *bus_subscribe_raw(event_bus *b, bus_cb cb, void *ud);
/* Ends a subscription. Safe inside any callback, its own included: a subscription ended
 * during a publish is not called again, and is freed once the publish is over. */
void bus_unsubscribe(bus_sub *s);
/* Live subscriptions. */
size_t bus_subscribers(const event_bus *b);
/* Calls every live subscriber with the event; make(ev) builds its JSON form (a new
 * reference) once, when the first subscriber that reads it is called. A subscriber that
 * reads JSON is skipped when make fails (out of memory). */
void bus_publish(event_bus *b, const store_event *ev, json_t *(*make)(const store_event *ev));

#endif
