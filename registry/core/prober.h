/* SPDX-License-Identifier: BSD-2-Clause */
/* prober.h — TCP probes on a thread of their own, with its own libuv loop, so that a
 * sweep of thousands of health checks costs the lookup loop a queue push per probe and
 * a batch of verdicts per wake-up, not thousands of connect(2)s, timers and closes
 * (README "Performance", row 5).
 *
 * The loop thread submits (host, port) with a tag; the prober resolves hostnames,
 * refuses addresses the operator's rule refuses (a failed check, never a connect),
 * connects with a timeout, and hands each outcome back to the loop thread, where
 * done() is called, in batches (uv_async_send coalesces wake-ups). Everything the
 * prober reads of the caller (the rule) is read-only while it runs.
 */
#ifndef REGISTRY_CORE_PROBER_H
#define REGISTRY_CORE_PROBER_H

#include <stdint.h>
#include <uv.h>

#include "base/cidr.h"

typedef struct prober prober;

/* An outcome, as done() gets it. */
typedef struct probe_outcome {
    void *tag;                      /* the submitter's */
    int result;                     /* 1 passed, 0 failed, -1 no verdict (local error) */
    int denied;                     /* the rule refused the address (result 0) */
    int connected;                  /* a connect was attempted */
    const char *why;                /* for a failure: a person's sentence */
} probe_outcome;

typedef void (*prober_done)(void *ud, const probe_outcome *o);

/* A prober whose outcomes reach done(ud, ...) on loop (the caller's). rule is borrowed
 * and must not change while the prober runs. NULL when out of memory or no thread. */
prober *prober_new(uv_loop_t *loop, const cidr_rule *rule, prober_done done, void *ud);
/* Probes host:port within timeout_ms; tag comes back in the outcome. 0 or -ENOMEM. */
int prober_submit(prober *p, void *tag, const char *host, int port, uint64_t timeout_ms);
/* Stops the thread (probes in flight are dropped: no outcome is delivered after this
 * returns) and closes the loop-side handle. prober_free after the loop ran. */
void prober_stop(prober *p);
/* Frees it (ending the thread if prober_stop did not; the loop-side handle must then
 * have been closed with the rest of the loop's). prober_free(NULL) is a no-op. */
void prober_free(prober *p);

#endif
