/* fuzz_frame.c — libFuzzer target for the line framer (proto_frame in registry/front/line/proto.c).
 *
 * It replays a byte stream through a small copy of registryd's input path
 * (server.c: on_alloc grows the buffer up to PROTO_MAX_LINE + 16 KiB, on_read appends
 * what the socket gave, process_input calls proto_frame until it says MORE or
 * TOO_LARGE, then moves the unfinished line to the front), delivered in chunks whose
 * sizes the input chooses, and checks the framer's promises:
 *   - every line found is shorter than PROTO_MAX_LINE bytes and holds no newline;
 *   - TOO_LARGE only when at least PROTO_MAX_LINE bytes are buffered with no newline
 *     among the first PROTO_MAX_LINE;
 *   - the lines found, each followed by its newline, are exactly the consumed prefix
 *     of the stream;
 *   - the outcome (lines, and where TOO_LARGE struck) does not depend on the chunking:
 *     it equals a one-pass reference computed over the whole stream.
 *
 * Input layout: byte 0 picks the chunking (low 2 bits: 0 = as much as fits, 1 = one
 * byte per read, 2 = 1..64 bytes, 3 = 1..32 KiB; the rest seeds the sizes; tiny reads
 * fall back to mode 3 on long streams, as each read rescans the pending line), byte 1
 * seeds them too, and the remaining bytes describe the stream: literal bytes, except that
 * 0xFE HI LO B stands for the byte B repeated HI*256+LO times, so that small inputs reach
 * the 64 KiB limit (0xFE 0x00 0x01 0xFE is a literal 0xFE).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "front/line/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define IN_CHUNK   (16u << 10)                 /* as server.c */
#define IN_MAX     (PROTO_MAX_LINE + IN_CHUNK) /* as server.c */
#define STREAM_MAX (4u * PROTO_MAX_LINE)       /* bounds the work per input */
#define BYTEWISE_MAX 8192                      /* tiny reads rescan the pending line: O(n^2), */
#define SMALL_MAX    (16u << 10)               /* so keep them to short streams */

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "fuzz_frame: check failed: %s (%s:%d)\n", #cond, __FILE__,     \
                    __LINE__);                                                             \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* Expands the stream description into *out (caller frees). */
static size_t expand(const uint8_t *p, size_t n, uint8_t **out) {
    size_t len = 0;
    uint8_t *s = malloc(STREAM_MAX);
    CHECK(s != NULL);
    for (size_t i = 0; i < n && len < STREAM_MAX;) {
        if (p[i] == 0xFE && i + 3 < n) {
            size_t count = (size_t)p[i + 1] << 8 | p[i + 2];
            if (count > STREAM_MAX - len)
                count = STREAM_MAX - len;
            memset(s + len, p[i + 3], count);
            len += count;
            i += 4;
        } else {
            s[len++] = p[i++];
        }
    }
    *out = s;
    return len;
}

/* The outcome of framing a stream. */
typedef struct outcome {
    size_t lines;      /* complete lines found */
    size_t consumed;   /* bytes of the stream they took, newlines included */
    int too_large;     /* the connection would be closed with too_large */
} outcome;

/* Reference: one pass over the whole stream, no buffers. */
static outcome reference(const uint8_t *s, size_t n) {
    outcome o = {0, 0, 0};
    size_t pos = 0;
    while (pos < n) {
        const uint8_t *nl = memchr(s + pos, '\n', n - pos);
        size_t seg = nl ? (size_t)(nl - (s + pos)) : n - pos;
        if (seg >= PROTO_MAX_LINE) { /* a newline at index >= 65535 comes too late */
            o.too_large = 1;
            break;
        }
        if (nl == NULL)
            break; /* an unfinished line that may still fit */
        o.lines++;
        pos += seg + 1;
        o.consumed = pos;
    }
    return o;
}

static uint64_t next_rand(uint64_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static size_t chunk_size(int mode, uint64_t *rng) {
    switch (mode) {
    case 0:
        return SIZE_MAX;
    case 1:
        return 1;
    case 2:
        return 1 + (size_t)(next_rand(rng) % 64);
    default:
        return 1 + (size_t)(next_rand(rng) % (2 * IN_CHUNK));
    }
}

/* The daemon's loop over a connection's input, chunk by chunk. */
static outcome simulate(const uint8_t *s, size_t n, int mode, uint64_t rng) {
    outcome o = {0, 0, 0};
    char *in = NULL;
    size_t in_len = 0, in_cap = 0, fed = 0;
    while (fed < n) {
        /* on_alloc: grow by doubling up to IN_MAX when less than a chunk is free. */
        if (in_cap - in_len < IN_CHUNK && in_cap < IN_MAX) {
            size_t ncap = in_cap ? in_cap * 2 : IN_CHUNK;
            if (ncap > IN_MAX)
                ncap = IN_MAX;
            char *nb = realloc(in, ncap);
            CHECK(nb != NULL);
            in = nb;
            in_cap = ncap;
        }
        size_t room = in_cap - in_len;
        CHECK(room > 0); /* a full buffer must have been decided already */
        size_t want = chunk_size(mode, &rng);
        size_t got = want < room ? want : room;
        if (got > n - fed)
            got = n - fed;
        memcpy(in + in_len, s + fed, got);
        in_len += got;
        fed += got;

        /* on_read: a full buffer without any newline is too large at once. */
        if (in_len == in_cap && in_cap == IN_MAX && memchr(in, '\n', in_len) == NULL) {
            CHECK(in_len >= PROTO_MAX_LINE);
            o.too_large = 1;
            break;
        }

        /* process_input */
        size_t pos = 0;
        for (;;) {
            const char *start = in + pos;
            size_t avail = in_len - pos, len = SIZE_MAX;
            int f = proto_frame(start, avail, &len);
            if (f == PROTO_FRAME_LINE) {
                CHECK(len < PROTO_MAX_LINE);
                CHECK(len < avail);
                CHECK(start[len] == '\n');
                CHECK(memchr(start, '\n', len) == NULL);
                CHECK(o.consumed + len + 1 <= fed);
                CHECK(memcmp(start, s + o.consumed, len + 1) == 0);
                o.consumed += len + 1;
                o.lines++;
                pos += len + 1;
                continue;
            }
            if (f == PROTO_FRAME_TOO_LARGE) {
                CHECK(avail >= PROTO_MAX_LINE);
                CHECK(memchr(start, '\n', PROTO_MAX_LINE) == NULL);
                o.too_large = 1;
            } else {
                CHECK(f == PROTO_FRAME_MORE);
                CHECK(avail < PROTO_MAX_LINE);
                CHECK(memchr(start, '\n', avail) == NULL);
            }
            break;
        }
        if (o.too_large)
            break;
        memmove(in, in + pos, in_len - pos);
        in_len -= pos;
        CHECK(o.consumed + in_len == fed); /* nothing lost, nothing invented */
    }
    free(in);
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    int mode = data[0] & 3;
    uint64_t rng = ((uint64_t)data[0] << 8 | data[1]) * 0x9E3779B97F4A7C15ULL + 1;
    uint8_t *stream = NULL;
    size_t n = expand(data + 2, size - 2, &stream);
    if ((mode == 1 && n > BYTEWISE_MAX) || (mode == 2 && n > SMALL_MAX))
        mode = 3;
    outcome want = reference(stream, n);
    outcome got = simulate(stream, n, mode, rng);
    CHECK(got.lines == want.lines);
    CHECK(got.consumed == want.consumed);
    CHECK(got.too_large == want.too_large);
    free(stream);
    return 0;
}
