/* SPDX-License-Identifier: BSD-2-Clause */
/* fuzz_frame.c — libFuzzer target for the line framer (proto_frame in registry/front/line/proto.c).
 *
 * It replays a byte stream through a small copy of registryd's input path (net.c:
 * on_alloc grows the buffer by doubling up to IN_MAX = PROTO_MAX_LINE + 16 KiB, on_read
 * appends what the socket gave; line.c process_input: while a partial line is pending
 * and the line is still short, only the new bytes are searched for a newline (the
 * "scanned" shortcut); otherwise proto_frame is called until it says MORE or TOO_LARGE,
 * then the unfinished line moves to the front), delivered in reads whose sizes the input
 * chooses, and checks the framer's promises:
 *   - every line found is shorter than PROTO_MAX_LINE bytes and holds no newline;
 *   - MORE only when fewer than PROTO_MAX_LINE bytes are buffered, none a newline;
 *   - TOO_LARGE only when at least PROTO_MAX_LINE bytes are buffered with no newline
 *     among the first PROTO_MAX_LINE;
 *   - proto_frame reads nothing past the bytes it is given (the bytes after them are
 *     poisoned for ASan while it runs);
 *   - the lines found, each followed by its newline, are exactly the consumed prefix
 *     of the stream, and nothing buffered is lost or invented;
 *   - the outcome (lines, and where TOO_LARGE struck) does not depend on the chunking:
 *     it equals a one-pass reference computed over the whole stream.
 *
 * Input layout: byte 0 picks the chunking (low 2 bits: 0 = as much as fits, 1 = one
 * byte per read, 2 = 1..64 bytes, 3 = 1..32 KiB; the rest seeds the sizes), byte 1
 * seeds them too, and the remaining bytes describe the stream: literal bytes, except that
 * 0xFE HI LO B stands for the byte B repeated HI*256+LO times, so that small inputs reach
 * the 64 KiB limit (0xFE 0x00 0x01 0xFE is a literal 0xFE). The stream is cut at
 * STREAM_MAX bytes (4 * PROTO_MAX_LINE) and after its MAX_LINES-th line (64).
 *
 * Cost: O(stream length) per input, whatever the chunking, with the buffers allocated
 * once. Reads that the scanned shortcut answers (a partial line pending, the line still
 * short, no newline among the new bytes) change nothing but the buffer's length, so a
 * run of them is merged into one copy (next_reads): one-byte reads up to the next
 * newline at once, 1..64-byte reads all but the last 64..127 bytes before it. Before,
 * every read re-ran proto_frame over the whole pending line (O(n^2)), each input
 * malloc'ed a 256 KiB stream and reallocated the input buffer, and one small input could
 * expand to 65,536 lines: about 1,000 inputs/s, with tiny reads kept to short streams
 * (they never reached TOO_LARGE). Now tiny reads cover every size up to TOO_LARGE, and
 * MAX_LINES bounds the per-line work (many short lines add no buffer state that a few
 * long ones do not reach). Figures: tests/fuzz/fuzz.mk.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sanitizer/asan_interface.h>

#include "front/line/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define IN_CHUNK   (16u << 10)                 /* as net.c: read granularity */
#define IN_MAX     (PROTO_MAX_LINE + IN_CHUNK) /* as line.c: input buffer cap */
#define STREAM_MAX (4u * PROTO_MAX_LINE)       /* bound the work per input */
#define MAX_LINES  64                          /* (see "Cost" above) */
#define REDZONE    64                          /* bytes poisoned after the buffered ones */

/* Not instrumented for coverage (see next_reads); not inlined, as the code inlined into
 * a function is instrumented as that function is. */
#define NO_COVERAGE __attribute__((noinline, no_sanitize("coverage")))

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "fuzz_frame: check failed: %s (%s:%d)\n", #cond, __FILE__,     \
                    __LINE__);                                                             \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

static size_t min_size(size_t a, size_t b) {
    return a < b ? a : b;
}

/* Expands the stream description into s[STREAM_MAX]; returns its length. */
static size_t expand(const uint8_t *p, size_t n, uint8_t *s) {
    size_t len = 0, i = 0;
    while (i < n && len < STREAM_MAX) {
        /* Literal bytes up to the next 0xFE: one copy. */
        const uint8_t *fe = memchr(p + i, 0xFE, n - i);
        size_t lit = min_size(fe ? (size_t)(fe - (p + i)) : n - i, STREAM_MAX - len);
        memcpy(s + len, p + i, lit);
        len += lit;
        i += lit;
        if (i == n || len == STREAM_MAX)
            break;
        /* p[i] == 0xFE */
        if (i + 3 < n) {
            size_t count = min_size((size_t)p[i + 1] << 8 | p[i + 2], STREAM_MAX - len);
            memset(s + len, p[i + 3], count);
            len += count;
            i += 4;
        } else {
            s[len++] = p[i++];
        }
    }
    return len;
}

/* A stream, and the newlines the reference saw in it (the simulation looks ahead with
 * them instead of scanning the stream once more). */
typedef struct stream {
    const uint8_t *s;
    size_t n;
    size_t nl[MAX_LINES + 1]; /* positions of newlines, ascending */
    size_t nls;               /* how many */
    size_t known;             /* every newline of s[0..known) is in nl[] */
} stream;

/* The outcome of framing a stream. */
typedef struct outcome {
    size_t lines;      /* complete lines found */
    size_t consumed;   /* bytes of the stream they took, newlines included */
    int too_large;     /* the connection would be closed with too_large */
} outcome;

/* Reference: one pass over the whole stream, no buffers. Cuts the stream after its
 * MAX_LINES-th line. */
static outcome reference(stream *st) {
    outcome o = {0, 0, 0};
    size_t pos = 0;
    st->nls = 0;
    st->known = st->n;
    while (pos < st->n) {
        if (o.lines == MAX_LINES) {
            st->n = st->known = pos;
            break;
        }
        const uint8_t *nl = memchr(st->s + pos, '\n', st->n - pos);
        size_t seg = nl ? (size_t)(nl - (st->s + pos)) : st->n - pos;
        if (nl != NULL)
            st->nl[st->nls++] = pos + seg;
        if (seg >= PROTO_MAX_LINE) { /* a newline at index >= 65535 comes too late */
            o.too_large = 1;
            st->known = nl ? pos + seg + 1 : st->n;
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

/* Position of the first newline in s[from..n), or n; *i indexes st->nl, from one call
 * to the next (from only grows). */
static size_t next_newline(const stream *st, size_t from, size_t *i) {
    while (*i < st->nls && st->nl[*i] < from)
        (*i)++;
    if (*i < st->nls)
        return st->nl[*i];
    if (from < st->known)
        from = st->known;
    const uint8_t *nl = from < st->n ? memchr(st->s + from, '\n', st->n - from) : NULL;
    return nl ? (size_t)(nl - st->s) : st->n;
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

/* net.c on_alloc: grow by doubling up to IN_MAX when less than a chunk is free. */
static size_t grow(size_t cap) {
    return min_size(cap ? cap * 2 : IN_CHUNK, IN_MAX);
}

static size_t on_alloc(size_t cap, size_t len) {
    return cap - len < IN_CHUNK && cap < IN_MAX ? grow(cap) : cap;
}

/* on_alloc before each read of a run of one-byte reads, the last one at buffered length
 * `last`: each read adds a byte and a growth leaves at least IN_CHUNK free, so this is
 * growing until `last` no longer triggers it. */
static size_t on_alloc_bytewise(size_t cap, size_t last) {
    while (cap < IN_MAX && cap < last + IN_CHUNK)
        cap = grow(cap);
    return cap;
}

/* The reads that come next, as their total size: reads that the scanned shortcut will
 * answer (a partial line pending, the line still short, no newline among their bytes)
 * only append, so they are merged with the read that follows; the block ends with a
 * read that the shortcut does not answer, or with the stream. *cap follows on_alloc
 * before each read. `nl` is the first newline of s at or after `fed` (or n).
 *
 * Not instrumented for coverage: it is arithmetic per read, whose branches and loop
 * counts say nothing about the framer; instrumented, it made the fuzzer keep an input
 * per count of reads and cost a third of the throughput. */
NO_COVERAGE static size_t next_reads(int mode, uint64_t *rng, size_t *cap, size_t in_len,
                                     size_t fed, size_t n, size_t scanned, size_t nl) {
    uint64_t x = *rng;
    size_t c = *cap, len = in_len, at = fed;
    for (;;) {
        c = on_alloc(c, len);
        CHECK(c > len); /* a full buffer must have been decided already */
        size_t got = min_size(min_size(chunk_size(mode, &x), c - len), n - at);
        len += got;
        at += got;
        if (scanned == 0 || len >= PROTO_MAX_LINE || nl < at || at == n)
            break;
        /* Reads within the next `quiet` bytes are answered by the shortcut too (they
         * end before the next newline and before the line reaches PROTO_MAX_LINE). A
         * long run of small ones is taken at once, buffer growth included: for one-byte
         * reads all of it, for 1..64-byte reads all but the last 64..127 bytes, which
         * are read as drawn (the skipped bytes stand for some sequence of such reads). */
        size_t quiet = min_size(nl, at + (PROTO_MAX_LINE - 1 - len)) - at;
        size_t k = mode == 1                ? quiet
                   : mode == 2 && quiet > 128 ? quiet - 64 - (size_t)(next_rand(&x) % 64)
                                              : 0;
        if (k > 0) {
            len += k;
            at += k;
            c = on_alloc_bytewise(c, len - 1);
            CHECK(c > len - 1);
            if (at == n)
                break;
        }
    }
    *rng = x;
    *cap = c;
    return at - fed;
}

/* The daemon's loop over a connection's input, read by read. `in` has IN_MAX bytes;
 * in_cap is the capacity the daemon would have allocated. */
static outcome simulate(const stream *st, int mode, uint64_t rng, char *in) {
    const uint8_t *s = st->s;
    size_t n = st->n;
    outcome o = {0, 0, 0};
    size_t in_len = 0, in_cap = 0, fed = 0;
    size_t scanned = 0; /* line.c: leading bytes of in known to hold no newline */
    size_t nli = 0, nl = next_newline(st, 0, &nli); /* the first newline at or after fed */
    while (fed < n) {
        size_t blk = next_reads(mode, &rng, &in_cap, in_len, fed, n, scanned, nl);
        memcpy(in + in_len, s + fed, blk);
        in_len += blk;
        fed += blk;
        if (nl < fed)
            nl = next_newline(st, fed, &nli);

        /* process_input (line.c): a partial line growing by bytes without a newline is
         * not framed again. */
        if (scanned > 0 && in_len < PROTO_MAX_LINE &&
            memchr(in + scanned, '\n', in_len - scanned) == NULL) {
            scanned = in_len;
            CHECK(o.consumed + in_len == fed);
            continue;
        }
        scanned = 0;
        size_t pos = 0, redzone = min_size(REDZONE, IN_MAX - in_len);
        ASAN_POISON_MEMORY_REGION(in + in_len, redzone);
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
                scanned = avail; /* after the compaction below */
            }
            break;
        }
        ASAN_UNPOISON_MEMORY_REGION(in + in_len, redzone);
        if (o.too_large)
            break;
        memmove(in, in + pos, in_len - pos);
        in_len -= pos;
        CHECK(o.consumed + in_len == fed); /* nothing lost, nothing invented */
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Allocated once: the expanded stream, and the connection's input buffer. */
    static uint8_t *buf;
    static char *in;
    static stream st;
    if (buf == NULL) {
        CHECK((buf = malloc(STREAM_MAX)) != NULL);
        CHECK((in = malloc(IN_MAX)) != NULL);
    }
    if (size < 2)
        return 0;
    int mode = data[0] & 3;
    uint64_t rng = ((uint64_t)data[0] << 8 | data[1]) * 0x9E3779B97F4A7C15ULL + 1;
    st.s = buf;
    st.n = expand(data + 2, size - 2, buf);
    outcome want = reference(&st);
    outcome got = simulate(&st, mode, rng, in);
    CHECK(got.lines == want.lines);
    CHECK(got.consumed == want.consumed);
    CHECK(got.too_large == want.too_large);
    return 0;
}
