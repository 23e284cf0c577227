/* SPDX-License-Identifier: BSD-2-Clause */
/* ops.h — the request/reply boundary between front-ends and the core: what a request
 * means. The core takes a validated request (req.h) and who sent it, and answers through
 * the caller's waiter, exactly once, on the loop: at once for reads, after the commit
 * for writes (ops_is_write). It never sees a connection or a wire format.
 *
 * Ordering is the front-end's job: a front-end that promises replies in request order
 * (the line protocol) holds later requests of a connection while an earlier write is in
 * flight, using ops_is_write.
 */
#ifndef REGISTRY_CORE_OPS_H
#define REGISTRY_CORE_OPS_H

#include <stdint.h>
#include <jansson.h>

#include "core/core.h"
#include "core/lookup.h"
#include "core/req.h"

/* Who sent a request (borrowed for the call; the core copies what it keeps). */
typedef struct peer {
    const char *addr;               /* "IP:PORT" or "[IPv6]:PORT", for the log */
    const char *ip;                 /* "IP": the host of a register without one */
    uint64_t ip_hash;               /* a hash of ip, for counting distinct clients */
    const char *via;                /* the front-end, for the log ("dns"); NULL: line */
} peer;

/* The answer to a request. Everything is borrowed and valid only during waiter->done. */
typedef struct reply {
    req_op op;
    req_err err;                    /* RERR_NONE: success */
    const char *msg;                /* the error's message, naming the problem */
    const char *id, *token;         /* register: the instance and its new owner token */
    int ttl;                        /* heartbeat */
    int maintenance;                /* maintenance: the instance's state now (1: out of
                                     * service); id names it */
    const cat_service *svc;         /* lookup: the service */
    lookup_set *set;                /* lookup: its instances for (service, tag, all); a
                                     * front-end may attach its encoding (lookup.h) */
    size_t pick;                    /* lookup: the instance handed out: set->cands[pick] */
    json_t *events;                 /* events: the array of event objects */
    json_t *stats;                  /* stats: the core's figures (done may add members) */
} reply;

struct waiter {
    /* Called exactly once with the reply, on the loop: inside ops_run for reads, later
     * for writes. The waiter must stay valid until then. */
    void (*done)(waiter *w, const reply *r);
};

/* Runs one request for peer; w->done gets the reply. */
void ops_run(core *c, const request *r, const peer *p, waiter *w);
/* Does op wait for the store (its reply comes after ops_run returns)? */
int ops_is_write(req_op op);
/* Does op's reply come after ops_run returns on this core? The writes, and with a
 * shared store a heartbeat too (it renews a lease in the store). */
int ops_answers_later(const core *c, req_op op);

#endif
