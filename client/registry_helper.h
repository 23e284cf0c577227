/* SPDX-License-Identifier: BSD-2-Clause */
/* registry_helper.h — the registration helper of libregclient, for long-running libuv
 * services: it registers the service, heartbeats, registers again after the registry
 * restarts or forgets it, and deregisters on shutdown, all on the service's own loop and
 * never blocking it.
 *
 * Threads: a helper belongs to its loop; call its functions on the loop's thread only.
 *
 * Link: pkg-config --cflags --libs registry-client libuv.
 */
#ifndef REGISTRY_HELPER_H
#define REGISTRY_HELPER_H

#include <uv.h>

#include "registry_client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct regc_helper regc_helper;   /* opaque */

/* Called for each state change worth a log line (registered, lost the registry, retry,
 * error replies...). msg is borrowed for the call. */
typedef void (*regc_helper_log_cb)(void *arg, const char *msg);

/* Called once when regc_helper_stop has finished: deregistered (or given up) and every
 * handle closed. The helper is freed right after the callback returns. */
typedef void (*regc_helper_done_cb)(void *arg);

typedef struct regc_helper_config {
    const char *registry;         /* "HOST:PORT", or a list of the registry's nodes
                                   * (regc_parse_addr_list); NULL: regc_default_addr(NULL) */
    regc_registration reg;        /* what to register (copied by create) */
    const char *auth;             /* shared secret or NULL (copied) */
    int reply_timeout_ms;         /* connect + per-reply deadline; 0: 5000 */
    regc_helper_log_cb log;       /* optional */
    void *log_arg;
} regc_helper_config;

/* Creates a helper on `loop` (borrowed; must outlive the helper). Copies cfg. Returns 0
 * or a negative errno with a message in errbuf[errlen]. Nothing happens until start. */
int regc_helper_create(uv_loop_t *loop, const regc_helper_config *cfg,
                       regc_helper **out, char *errbuf, size_t errlen);

/* Starts registering: connect, register, heartbeat every ttl/3 (a ping every 60 s
 * without TTL, to notice a restarted registry); on any loss, reconnect with exponential
 * backoff and jitter (100 ms doubling to 5 s) and register again. With a list of nodes
 * it starts with the first; on any loss of its node (refused, closed, a reply or
 * heartbeat timed out, an error answer) it moves to the next one, wrapping round, and
 * registers there (same service, host, port and the token it holds), logging one line
 * per move; the backoff doubles once per round of the list. Returns 0. */
int regc_helper_start(regc_helper *h);

/* Is the service registered right now? Fills id[REGC_ID_MAX] when id is not NULL. */
int regc_helper_registered(const regc_helper *h, char *id);

/* Stops: deregisters if registered (waiting at most timeout_ms for the answer), then
 * closes every handle, then calls done(arg) and frees the helper. Call at most once.
 * A helper that was created but never started may be stopped too. */
void regc_helper_stop(regc_helper *h, int timeout_ms, regc_helper_done_cb done, void *arg);


#ifdef __cplusplus
}
#endif

#endif
