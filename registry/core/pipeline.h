/* SPDX-License-Identifier: BSD-2-Clause */
/* pipeline.h — the write pipeline: every durable change is a `pending`, handed to the
 * writer (group commit, off the loop) and completed after its commit on the loop.
 *
 * A pending owns copies of everything its change borrows, carries its lifecycle event
 * (which rides in the same transaction, so an event is published only once the change it
 * describes is durable, with the sequence number the store gave it) and says what to do
 * after the commit: p->done, which normally calls apply (apply.h) and answers its waiter.
 */
#ifndef REGISTRY_CORE_PIPELINE_H
#define REGISTRY_CORE_PIPELINE_H

#include <jansson.h>

#include "core/internal.h"
#include "core/req.h"

typedef struct pending pending;
struct pending {
    wjob job;
    store_change ch;
    core *core;
    waiter *w;                      /* who waits for the reply, or NULL (internal writes) */
    int level;                      /* log level of its event (ALOG_*) */
    char token[40];                 /* register: the plaintext token to hand back */
    char client[PEER_LEN];          /* who asked (for the log), "" for internal */
    char owner[PEER_LEN];           /* register: the IP asking ("": none) */
    size_t reserved;                /* register of a new instance: bytes admitted (0: none) */
    char *service, *host, *description, *tags_json, *detail; /* owned copies */
    char once[STORE_ID_MAX + 48];   /* ch.once points here when set */
    void (*done)(pending *p);       /* runs after the commit, on the loop; frees p */
};

/* A new pending write of kind with the instance's identity copied into the change and
 * its event (event may be NULL: no event; detail is stolen, may be NULL). NULL when out
 * of memory. */
pending *pending_new(core *c, int kind, const char *event, const char *service,
                     const char *id, const char *host, int port, json_t *detail);
/* Submits it to the writer; p->done runs after the commit. */
void pending_submit(pending *p);
void pending_free(pending *p);
/* Records a lifecycle event that changes no instance (start, stop, preserve_on/off);
 * detail is stolen. */
void pipeline_emit(core *c, const char *event, int level, json_t *detail);

#endif
