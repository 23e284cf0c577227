/* SPDX-License-Identifier: BSD-2-Clause */
/* dns.h — the DNS front-end: any program, resolver or `dig` finds a service by name.
 * DNS over UDP and TCP on one port; names under --dns-domain (README "DNS"):
 *   <service>.service.<domain>          A / AAAA (CNAME for a hostname) of passing instances
 *   <tag>.<service>.service.<domain>    ... with that tag
 *   _<service>._tcp.service.<domain>    SRV (and _<service>._<tag>...), targets' addresses
 *                                       as additional records
 *   <id>.instance.<domain>              one instance (the SRV targets)
 * Questions are parsed and answers built by msg.h (pure, fuzzed); lookups go to the core
 * through ops_run like any other front-end's, so a critical instance is never answered
 * and the order rotates as lookup's does. TCP connections ride on front/net.h.
 *
 * Everything here runs on the loop thread.
 */
#ifndef REGISTRY_FRONT_DNS_H
#define REGISTRY_FRONT_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/core.h"

typedef struct dns_config {
    char host[256];                 /* listen address (UDP and TCP) */
    int port;                       /* 0: a free port, the same for both */
    char domain[256];               /* the zone, e.g. "registry" */
    uint32_t ttl;                   /* TTL of answers and the SOA minimum (0: no caching) */
    long long max_conns;            /* TCP connections at once */
    uint64_t idle_timeout_ms;       /* TCP: idle connections are closed */
    uint64_t request_timeout_ms;    /* TCP: a message left unfinished this long */
} dns_config;

typedef struct dns_server dns_server;

void dns_config_defaults(dns_config *cfg);
/* A DNS server over core c (borrowed). Returns 0 or -ENOMEM with err filled. */
int dns_new(uv_loop_t *loop, const dns_config *cfg, core *c, dns_server **out, char *err,
            size_t errlen);
/* Binds UDP and TCP on one port; writes the bound address to bound[len]. Returns 0 or a
 * libuv error with err filled. */
int dns_listen(dns_server *s, char *bound, size_t len, char *err, size_t errlen);
/* Stops receiving (UDP) and accepting (TCP); what was read is answered. */
void dns_stop_accepting(dns_server *s);
/* Closes everything (TCP connections once answered, cut after deadline_ms), then calls
 * done(ud) once. */
void dns_close_all(dns_server *s, uint64_t deadline_ms, void (*done)(void *ud), void *ud);
/* After the loop ran out. dns_free(NULL) is a no-op. */
void dns_free(dns_server *s);

#endif
