/* SPDX-License-Identifier: BSD-2-Clause */
/* hdr.c — log-linear latency histogram (see hdr.h for the bucket layout).
 *
 * Index of value v:
 *   v < 2^SUB_BITS          → v itself (exact)
 *   2^k <= v < 2^(k+1), k >= SUB_BITS
 *                           → 2^SUB_BITS + (k - SUB_BITS) * HALF + (v >> (k - SUB_BITS + 1)) - HALF
 * i.e. each octave above the exact range keeps its top SUB_BITS bits: HALF = 2^(SUB_BITS-1)
 * sub-buckets of width 2^(k - SUB_BITS + 1).
 */
#include "hdr.h"

#include <stdlib.h>
#include <string.h>

#define SUB_BITS 11u                    /* 2048 exact values, 1024 sub-buckets/octave */
#define EXACT    (1u << SUB_BITS)
#define HALF     (EXACT >> 1)

struct hdr {
    uint64_t *counts;                   /* nbuckets counters */
    size_t nbuckets;
    uint64_t total;                     /* values recorded */
    uint64_t min, max;                  /* exact extremes */
    long double sum;                    /* for the mean; long double keeps ns sums exact enough */
};

static unsigned msb(uint64_t v)
{
    return 63u - (unsigned)__builtin_clzll(v);
}

static size_t value_index(uint64_t v)
{
    if (v < EXACT)
        return (size_t)v;
    unsigned k = msb(v);
    unsigned shift = k - SUB_BITS + 1u;
    return (size_t)EXACT + (size_t)(k - SUB_BITS) * HALF + (size_t)((v >> shift) - HALF);
}

/* Highest value that maps to bucket idx. */
static uint64_t index_high(size_t idx)
{
    if (idx < EXACT)
        return (uint64_t)idx;
    size_t rel = idx - EXACT;
    unsigned k = SUB_BITS + (unsigned)(rel / HALF);
    unsigned shift = k - SUB_BITS + 1u;
    uint64_t sub = (uint64_t)(rel % HALF) + HALF;
    return ((sub + 1u) << shift) - 1u;
}

hdr *hdr_create(uint64_t max_value)
{
    if (max_value < EXACT)
        max_value = EXACT;
    hdr *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->nbuckets = value_index(max_value) + 1u;
    h->counts = calloc(h->nbuckets, sizeof(*h->counts));
    if (!h->counts) {
        free(h);
        return NULL;
    }
    h->min = UINT64_MAX;
    return h;
}

void hdr_destroy(hdr *h)
{
    if (!h)
        return;
    free(h->counts);
    free(h);
}

void hdr_reset(hdr *h)
{
    memset(h->counts, 0, h->nbuckets * sizeof(*h->counts));
    h->total = 0;
    h->min = UINT64_MAX;
    h->max = 0;
    h->sum = 0;
}

void hdr_record(hdr *h, uint64_t value)
{
    size_t idx = value_index(value);
    if (idx >= h->nbuckets)
        idx = h->nbuckets - 1u;
    h->counts[idx]++;
    h->total++;
    h->sum += (long double)value;
    if (value > h->max)
        h->max = value;
    if (value < h->min)
        h->min = value;
}

void hdr_add(hdr *dst, const hdr *src)
{
    size_t n = dst->nbuckets < src->nbuckets ? dst->nbuckets : src->nbuckets;
    for (size_t i = 0; i < n; i++)
        dst->counts[i] += src->counts[i];
    /* buckets src has beyond dst's range land in dst's last one, as hdr_record would */
    for (size_t i = n; i < src->nbuckets; i++)
        dst->counts[dst->nbuckets - 1u] += src->counts[i];
    dst->total += src->total;
    dst->sum += src->sum;
    if (src->total) {
        if (src->max > dst->max)
            dst->max = src->max;
        if (src->min < dst->min)
            dst->min = src->min;
    }
}

uint64_t hdr_count(const hdr *h)
{
    return h->total;
}

uint64_t hdr_max(const hdr *h)
{
    return h->total ? h->max : 0;
}

uint64_t hdr_min(const hdr *h)
{
    return h->total ? h->min : 0;
}

double hdr_mean(const hdr *h)
{
    return h->total ? (double)(h->sum / (long double)h->total) : 0.0;
}

uint64_t hdr_percentile(const hdr *h, double p)
{
    if (!h->total)
        return 0;
    if (p < 0.0)
        p = 0.0;
    if (p > 100.0)
        p = 100.0;
    /* rank of the value wanted, 1-based; the tolerance keeps float noise (99.9% of 1000
     * computing as 999.0000000001) from skipping to the next rank */
    double want = p / 100.0 * (double)h->total;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want - 1e-9)
        rank++;
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < h->nbuckets; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            if (i == h->nbuckets - 1u)
                return h->max; /* the last bucket also holds values clamped into it */
            uint64_t v = index_high(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}
