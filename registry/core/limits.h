/* SPDX-License-Identifier: BSD-2-Clause */
/* limits.h — what registrations may take: instances in all, per service and per client
 * IP, and the catalog's memory. A new instance's registration is counted from the moment
 * it is admitted until it is done (committed or failed), so a pipeline of registrations
 * cannot pass every check at once before any of them commits.
 */
#ifndef REGISTRY_CORE_LIMITS_H
#define REGISTRY_CORE_LIMITS_H

#include <stddef.h>

#include "core/internal.h"
#include "core/ops.h"
#include "core/pipeline.h"

/* RERR_NONE when a registration (of existing, or of a new instance when NULL) of about
 * bytes fits every limit; else RERR_UNAVAILABLE with msg naming the flag (and a "limit"
 * log line). */
req_err limits_admit(core *c, const request *rq, const peer *pr, const cat_instance *existing,
                     size_t bytes, char *msg, size_t len);
/* Counts p (a new instance's registration for p->owner, of bytes) until limits_release.
 * Returns 0 or -ENOMEM. */
int limits_reserve(core *c, pending *p, size_t bytes);
void limits_release(core *c, pending *p);
/* Frees the counts (at exit). */
void limits_clear(core *c);

#endif
