/* SPDX-License-Identifier: BSD-2-Clause */
/* util.h — small helpers shared by registryd's modules: clocks, randomness, hashing of
 * owner tokens, RFC 3339 times, and range-checked number parsing for flags. */
#ifndef REGISTRY_UTIL_H
#define REGISTRY_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define UTIL_TIME_LEN 32   /* "2026-11-22T15:21:20.123Z" + NUL, with room */

/* Wall clock, Unix milliseconds. */
int64_t util_now_ms(void);

/* Formats a Unix-ms time as RFC 3339 UTC with milliseconds into out[UTIL_TIME_LEN].
 * 0 formats as "" (never). Returns out. */
char *util_rfc3339(int64_t ms, char *out);

/* Fills buf with n random bytes from the OS (getrandom). Returns 0 or -errno. */
int util_random(void *buf, size_t n);

/* Writes 2*n lowercase hex chars + NUL of the n bytes in. */
void util_hex(const unsigned char *in, size_t n, char *out);

/* SHA-256 of s (len bytes) into out[32]. Returns 0 or -EIO. */
int util_sha256(const char *s, size_t len, unsigned char out[32]);

/* Constant-time comparison of n bytes: 1 when equal. */
int util_ct_equal(const void *a, const void *b, size_t n);

/* Parses a whole decimal integer in [min, max]. Returns 0 or -EINVAL/-ERANGE. */
int util_parse_int(const char *s, long long min, long long max, long long *out);

/* Parses a whole non-negative decimal number of seconds (fractions allowed) in
 * [min, max] into milliseconds. Returns 0 or -EINVAL/-ERANGE. */
int util_parse_seconds(const char *s, double min, double max, uint64_t *out_ms);

/* A growable byte buffer. Zeroed is empty; the owner frees p. */
typedef struct ubuf {
    char *p;
    size_t len, cap;
} ubuf;

/* Makes room for n more bytes, growing by doubling (from 256). Returns 0 or -ENOMEM (b
 * unchanged). */
int ubuf_reserve(ubuf *b, size_t n);
/* Appends n bytes, growing by doubling (from 256). Returns 0 or -ENOMEM (b unchanged). */
int ubuf_add(ubuf *b, const void *s, size_t n);

/* Splits "HOST:PORT", "[V6]:PORT" into host (written to host[hostlen]) and port
 * 0..65535. Returns 0 or -EINVAL. */
int util_split_hostport(const char *s, char *host, size_t hostlen, int *port);

#endif
