/* SPDX-License-Identifier: BSD-2-Clause */
/* usage.h — the activity log of reads: every lookup (--log-lookups), or by default one
 * line per service per interval with its count of lookups and of distinct clients. */
#ifndef REGISTRY_CORE_USAGE_H
#define REGISTRY_CORE_USAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"

/* A lookup of service (slen bytes) by client ("IP:PORT"; client_hash: a hash of its IP)
 * through front-end via (a static string such as "dns"; NULL: the line protocol) that
 * handed out in. service_hash: dict_hash(service, slen), computed once per lookup. Each
 * front-end's lookups are summarised on their own lines. */
void usage_lookup(core *c, const char *client, uint64_t client_hash, const char *via,
                  const char *service, size_t slen, uint64_t service_hash,
                  const cat_instance *in);
/* Writes the summary lines and starts counting afresh. */
void usage_summary(core *c);
/* Drops the counts (also at exit). */
void usage_clear(core *c);

#endif
