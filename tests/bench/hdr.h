/* SPDX-License-Identifier: BSD-2-Clause */
/* hdr.h — a small HDR-style latency histogram for regbench.
 *
 * Log-linear buckets over nanoseconds: values below 2048 ns are counted exactly, and each
 * power-of-two range above is cut into 1024 equal sub-buckets, so every recorded value is
 * known to within 1/1024 (three significant digits) up to the tracked maximum. Recording
 * is O(1) with no allocation; the memory is fixed at create time (~220 KiB for a 60 s
 * range). Values beyond the range are clamped into the last bucket but the exact maximum
 * is kept separately, so `max` is never understated.
 */
#ifndef REGBENCH_HDR_H
#define REGBENCH_HDR_H

#include <stdint.h>

typedef struct hdr hdr;

/* Creates a histogram that resolves values up to max_value (ns, >= 2048).
 * Returns NULL when out of memory. */
hdr *hdr_create(uint64_t max_value);

/* Frees it; NULL is a no-op. */
void hdr_destroy(hdr *h);

/* Forgets every recorded value. */
void hdr_reset(hdr *h);

/* Counts one value (ns). */
void hdr_record(hdr *h, uint64_t value);

/* Adds every value of src into dst (both created with the same max_value). */
void hdr_add(hdr *dst, const hdr *src);

/* Number of values recorded. */
uint64_t hdr_count(const hdr *h);

/* The exact largest and smallest value recorded (0 when empty). */
uint64_t hdr_max(const hdr *h);
uint64_t hdr_min(const hdr *h);

/* Arithmetic mean (0 when empty). */
double hdr_mean(const hdr *h);

/* The value at percentile p (0..100): the highest value that lands in the same bucket as
 * the ceil(p% * count)-th smallest value, so a percentile is never understated by more
 * than the bucket width, and never exceeds hdr_max. 0 when empty. */
uint64_t hdr_percentile(const hdr *h, double p);

#endif
