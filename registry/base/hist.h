/* SPDX-License-Identifier: BSD-2-Clause */
/* hist.h — a histogram with fixed bucket bounds (Prometheus's cumulative kind is made
 * from it when rendered): for latencies and batch sizes the registry reports. Adding a
 * value is a short scan of the bounds; no allocation. */
#ifndef REGISTRY_BASE_HIST_H
#define REGISTRY_BASE_HIST_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define HIST_MAX_BUCKETS 16

typedef struct hist {
    const double *bounds;           /* upper bounds, ascending (borrowed, static) */
    size_t nb;                      /* <= HIST_MAX_BUCKETS */
    uint64_t counts[HIST_MAX_BUCKETS + 1]; /* per bucket (not cumulative); +Inf last */
    uint64_t n;
    double sum;
} hist;

/* Bounds of seconds for latencies (100 us .. 10 s) and of counts for batch sizes. */
extern const double hist_seconds[];
extern const size_t hist_seconds_n;
extern const double hist_sizes[];
extern const size_t hist_sizes_n;

void hist_init(hist *h, const double *bounds, size_t nb);
void hist_add(hist *h, double v);
/* {"le": [bounds...], "counts": [cumulative..., total], "sum": S, "count": N}: what
 * stats shows and /metrics renders. New reference (NULL when out of memory). */
json_t *hist_json(const hist *h);

#endif
