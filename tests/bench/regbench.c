/* SPDX-License-Identifier: BSD-2-Clause */
/* regbench.c — load generator for registryd and, as its peer, Redis.
 *
 * In the spirit of redis-benchmark: one libuv loop drives C connections, each keeping P
 * requests outstanding (pipelining); requests are prebuilt byte strings written straight
 * from their tables; every reply is checked (a fast wrong answer is an error, not a
 * request served) and its latency goes into an HDR-style histogram (hdr.h).
 *
 * --target redis runs the very same client against redis-server: lookups become inline
 * `GET key` requests whose keys were first SET to a value shaped like a registry lookup
 * answer, so the two servers are compared through one load generator (issue 5: a ratio
 * between two different generators measures the generators).
 *
 * Phases of a run: connect all connections; preload (register --services N services ×
 * --instances-per-service K with "check":"none", pipelined over a few connections; or SET
 * the keys); optionally register --checked M health-checked instances; then for each test
 * of -t an optional warm-up and the measured run, which ends after -n requests or
 * --duration seconds, whichever comes first. Before the first lookup test, every service
 * is looked up once, unmeasured (see prime()). --bg-register W adds W connections that keep
 * registering (durable writes; --bg-rate paces them) while the measured test runs; their
 * figures are reported apart, so "lookup p99 while registrations stream in" can be read
 * off one run.
 *
 * Exit status: 0 all replies right, 3 the run completed but some replies were wrong or
 * missing, 1 runtime failure (cannot connect, preload failed), 2 usage.
 */
#include "hdr.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#define RB_MAX_CONNS        10000
#define RB_MAX_PIPELINE     1024
#define RB_MAX_SERVICES     1000000
#define RB_MAX_INSTANCES    1000       /* per service */
#define RB_MAX_REGS         2000000    /* services × instances */
#define RB_MAX_CHECKED      1000000
#define RB_MAX_BG           256
#define RB_MAX_DURATION     3600.0     /* seconds */
#define RB_READ_CHUNK       65536      /* free room offered to each read */
#define RB_MAX_INBUF        (64u << 20) /* one reply; list of 100k services is ~10 MiB */
#define RB_STALL_NS         (10ull * 1000000000ull) /* no reply for this long: give up */
#define RB_TICK_MS          10
#define RB_PRELOAD_CONNS    8
#define RB_PRELOAD_PIPELINE 256
#define RB_BG_PIPELINE      8
#define RB_BG_KEYS          1000       /* background registrations cycle over these */
#define RB_HIST_MAX_NS      (60ull * 1000000000ull)
#define RB_PORT_BASE        1024
#define RB_PORT_SPAN        64000
#define RB_MAX_ERR_SAMPLES  5
#define RB_NAME_LEN         64
#define RB_LINE_MAX         2048       /* one prebuilt request */
#define RB_MIX_REGISTER_PCT 10         /* -t mixed: share of registrations */
#define RB_DESCRIPTION      "regbench instance"
#define RB_HOST             "127.0.0.1"

enum target { TARGET_REGISTRY, TARGET_REDIS };

/* What a request was, so its reply can be checked. */
enum kind { K_LOOKUP, K_REGISTER, K_LIST, K_CHECKED, K_BG };

enum test { T_LOOKUP, T_REGISTER, T_LIST, T_MIXED, T_PRELOAD, T_CHECKED, T_BG, T_PRIME };

static const char *const test_names[] = {
    [T_LOOKUP] = "lookup", [T_REGISTER] = "register", [T_LIST] = "list", [T_MIXED] = "mixed",
    [T_PRELOAD] = "preload", [T_CHECKED] = "checked", [T_BG] = "bg-register",
    [T_PRIME] = "prime",
};

/* A table of prebuilt requests (or expected values): one arena, n + 1 offsets. */
typedef struct reqtab {
    char *data;
    size_t len, cap;
    size_t *off;                /* off[i]..off[i+1] is entry i */
    size_t n, ncap;
} reqtab;

typedef struct bench bench;
typedef struct stream stream;

/* One request generator with its statistics: the measured test, the preload, or the
 * background writers. Connections assigned to it pull requests from it. */
struct stream {
    enum test test;
    unsigned pipeline;          /* requests each of its connections keeps outstanding */
    uint64_t limit;             /* requests to issue (UINT64_MAX: until stopped) */
    uint64_t issued, ok, errors;
    uint64_t t_start, t_last;   /* hrtime at start, at the last reply */
    int stopping;               /* issue nothing more */
    double rate;                /* requests/s to pace at over all its conns, 0: flat out */
    unsigned live;              /* live connections assigned */
    hdr *hist;                  /* latencies of right replies, or NULL */
};

typedef struct slot {
    uint64_t t;                 /* hrtime when sent */
    uint32_t tag;               /* service / registration index */
    uint8_t kind;               /* enum kind */
} slot;

typedef struct wreq {
    uv_write_t req;
    struct wreq *next;          /* free list */
} wreq;

typedef struct conn {
    uv_tcp_t tcp;
    bench *b;
    stream *st;                 /* stream it serves now, NULL when idle */
    char *in;                   /* received bytes not yet consumed */
    size_t inlen, incap;
    size_t scanned;             /* bytes of `in` known to hold no newline (registry) */
    slot *ring;                 /* outstanding requests, oldest at head */
    unsigned head, count, ringcap;
    wreq *wfree;                /* spare write requests */
    int connected, dead;
} conn;

struct bench {
    uv_loop_t *loop;
    uv_timer_t tick;
    /* options */
    enum target target;
    struct sockaddr_storage addr;
    char addr_text[80];
    unsigned conns, pipeline, bg_conns;
    uint64_t requests;
    int requests_set;
    double duration, warmup;
    double bg_rate;             /* --bg-rate: background registrations/s, 0: flat out */
    size_t services, per_service, checked;
    int live_port, dead_port;
    int json, quiet, preload;
    uint64_t seed;
    unsigned tests[8];
    size_t ntests;
    /* prebuilt requests */
    reqtab lookups;             /* per service */
    reqtab registers;           /* per registration (service × instance) */
    reqtab checkregs;           /* health-checked registrations */
    reqtab bgregs;              /* background registrations */
    reqtab values;              /* redis: expected GET value per service */
    char list_req[32];
    size_t list_len;
    /* reply checking */
    char **verified;            /* registry: a checked lookup reply per service (owned) */
    uint32_t *verified_len;
    json_t **ids;               /* registry: id returned for each registration (owned) */
    unsigned err_samples;
    int primed;                 /* every service looked up once (prime) */
    /* run state */
    conn *c;                    /* conns + bg_conns */
    unsigned nconns;
    unsigned connected, connect_failed;
    stream *main, *bg;          /* streams of the running phase */
    uint64_t last_progress;     /* hrtime of the last reply (stall watchdog) */
    uint64_t deadline;          /* hrtime the running phase stops issuing, 0: none */
    int phase_running;
    uint64_t rng;
};

/* ---- small helpers ------------------------------------------------------------------- */

static void warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warnx_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("regbench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static uint64_t rng_next(bench *b)
{
    /* xorshift64*: cheap, and seeded so two runs draw the same keys */
    uint64_t x = b->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    b->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static uint32_t rng_below(bench *b, size_t n)
{
    return (uint32_t)(((rng_next(b) >> 32) * (uint64_t)n) >> 32);
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return -EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double min, double max, double *out)
{
    if (!s || !*s)
        return -EINVAL;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

/* "HOST:PORT" or "[V6]:PORT" with an IP literal on loopback (the bench never leaves the
 * machine). Returns 0 or -EINVAL. */
static int parse_addr(const char *text, struct sockaddr_storage *ss)
{
    char host[64];
    const char *colon, *h0, *h1;
    if (text[0] == '[') {
        h0 = text + 1;
        h1 = strchr(h0, ']');
        if (!h1 || h1[1] != ':')
            return -EINVAL;
        colon = h1 + 1;
    } else {
        h0 = text;
        colon = strrchr(text, ':');
        if (!colon)
            return -EINVAL;
        h1 = colon;
    }
    size_t hl = (size_t)(h1 - h0);
    if (hl == 0 || hl >= sizeof(host))
        return -EINVAL;
    memcpy(host, h0, hl);
    host[hl] = '\0';
    uint64_t port;
    if (parse_u64(colon + 1, 1, 65535, &port) < 0)
        return -EINVAL;
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        if ((ntohl(a->sin_addr.s_addr) >> 24) != 127)
            return -EINVAL;
        return 0;
    }
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        if (!IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
            return -EINVAL;
        return 0;
    }
    return -EINVAL;
}

/* ---- request tables ------------------------------------------------------------------ */

/* Appends one entry of len bytes. Returns 0 or -ENOMEM. */
static int reqtab_add(reqtab *t, const char *s, size_t len)
{
    if (t->n + 2 > t->ncap) {
        size_t ncap = t->ncap ? t->ncap * 2 : 1024;
        size_t *off = realloc(t->off, ncap * sizeof(*off));
        if (!off)
            return -ENOMEM;
        if (!t->off)
            off[0] = 0;
        t->off = off;
        t->ncap = ncap;
    }
    if (t->len + len > t->cap) {
        size_t cap = t->cap ? t->cap : 65536;
        while (cap < t->len + len)
            cap *= 2;
        char *d = realloc(t->data, cap);
        if (!d)
            return -ENOMEM;
        t->data = d;
        t->cap = cap;
    }
    memcpy(t->data + t->len, s, len);
    t->len += len;
    t->off[++t->n] = t->len;
    return 0;
}

static uv_buf_t reqtab_buf(const reqtab *t, size_t i)
{
    return uv_buf_init(t->data + t->off[i], (unsigned)(t->off[i + 1] - t->off[i]));
}

static void reqtab_free(reqtab *t)
{
    free(t->data);
    free(t->off);
    memset(t, 0, sizeof(*t));
}

/* Encodes obj (borrowed) compactly plus `nl` into buf[RB_LINE_MAX]; returns the length or
 * -ENOSPC. */
static int encode_line(json_t *obj, char *buf, const char *nl)
{
    size_t nll = strlen(nl);
    size_t n = json_dumpb(obj, buf, RB_LINE_MAX - nll, JSON_COMPACT);
    if (n == 0 || n > RB_LINE_MAX - nll)
        return -ENOSPC;
    memcpy(buf + n, nl, nll);
    return (int)(n + nll);
}

static int svc_name(char *buf, size_t cap, const char *prefix, size_t i)
{
    int n = snprintf(buf, cap, "%s-%zu", prefix, i);
    return (n < 0 || (size_t)n >= cap) ? -ENOSPC : n;
}

static int port_of(const bench *b, size_t svc, size_t inst)
{
    return RB_PORT_BASE + (int)((svc * b->per_service + inst) % RB_PORT_SPAN);
}

/* Adds a registry register request to t. */
static int add_register(reqtab *t, const char *service, int port, const char *check)
{
    char line[RB_LINE_MAX];
    json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s}", "op", "register", "service",
                          service, "host", RB_HOST, "port", port, "description", RB_DESCRIPTION,
                          "check", check);
    if (!o)
        return -ENOMEM;
    int n = encode_line(o, line, "\n");
    json_decref(o);
    return n < 0 ? n : reqtab_add(t, line, (size_t)n);
}

/* The value Redis keys hold: the JSON a registry lookup of that service answers with
 * (one instance), so both servers send replies of the same size. */
static int redis_value(const bench *b, size_t i, char *buf)
{
    char name[RB_NAME_LEN];
    if (svc_name(name, sizeof(name), "bench-svc", i) < 0)
        return -ENOSPC;
    int port = port_of(b, i, 0);
    json_t *o = json_pack(
        "{s:b, s:s, s:s, s:i, s:s, s:[{s:I, s:s, s:i, s:s, s:[], s:s, s:s, s:s}]}", "ok", 1,
        "service", name, "host", RB_HOST, "port", port, "description", RB_DESCRIPTION,
        "instances", "id", (json_int_t)(i + 1), "host", RB_HOST, "port", port, "description",
        RB_DESCRIPTION, "tags", "status", "passing", "registered_at", "2025-01-01T00:00:00Z",
        "last_seen", "2025-01-01T00:00:00Z");
    if (!o)
        return -ENOMEM;
    int n = encode_line(o, buf, "");
    json_decref(o);
    return n;
}

/* Appends a RESP SET (multibulk: the value holds quotes an inline command would parse). */
static int add_redis_set(reqtab *t, const char *key, const char *val, size_t vlen)
{
    char line[RB_LINE_MAX + 128];
    int n = snprintf(line, sizeof(line), "*3\r\n$3\r\nSET\r\n$%zu\r\n%s\r\n$%zu\r\n",
                     strlen(key), key, vlen);
    if (n < 0 || (size_t)n + vlen + 2 > sizeof(line))
        return -ENOSPC;
    memcpy(line + n, val, vlen);
    memcpy(line + n + vlen, "\r\n", 2);
    return reqtab_add(t, line, (size_t)n + vlen + 2);
}

static int test_wanted(const bench *b, enum test t)
{
    for (size_t i = 0; i < b->ntests; i++)
        if (b->tests[i] == (unsigned)t)
            return 1;
    return 0;
}

/* Builds every request the run can send, before anything is timed. */
static int build_tables(bench *b)
{
    char name[RB_NAME_LEN], line[RB_LINE_MAX + 128];
    int r;
    if (b->target == TARGET_REGISTRY) {
        for (size_t i = 0; i < b->services; i++) {
            if (svc_name(name, sizeof(name), "bench-svc", i) < 0)
                return -ENOSPC;
            json_t *o = json_pack("{s:s, s:s}", "op", "lookup", "service", name);
            if (!o)
                return -ENOMEM;
            int n = encode_line(o, line, "\n");
            json_decref(o);
            if (n < 0 || (r = reqtab_add(&b->lookups, line, (size_t)n)) < 0)
                return n < 0 ? n : r;
            for (size_t j = 0; j < b->per_service; j++)
                if ((r = add_register(&b->registers, name, port_of(b, i, j), "none")) < 0)
                    return r;
        }
        for (size_t m = 0; m < b->checked; m++) {
            if (svc_name(name, sizeof(name), "bench-chk", m) < 0)
                return -ENOSPC;
            int port = (m % 2 == 0) ? b->live_port : b->dead_port;
            if ((r = add_register(&b->checkregs, name, port, "tcp")) < 0)
                return r;
        }
        if (b->bg_conns)
            for (size_t k = 0; k < RB_BG_KEYS; k++) {
                if (svc_name(name, sizeof(name), "bench-bg", k) < 0)
                    return -ENOSPC;
                if ((r = add_register(&b->bgregs, name, port_of(b, k, 0), "none")) < 0)
                    return r;
            }
        json_t *o = json_pack("{s:s}", "op", "list");
        if (!o)
            return -ENOMEM;
        int n = json_dumpb(o, b->list_req, sizeof(b->list_req) - 1, JSON_COMPACT);
        json_decref(o);
        if (n <= 0 || (size_t)n >= sizeof(b->list_req) - 1)
            return -ENOSPC;
        b->list_req[n] = '\n';
        b->list_len = (size_t)n + 1;
        b->verified = calloc(b->services, sizeof(*b->verified));
        b->verified_len = calloc(b->services, sizeof(*b->verified_len));
        b->ids = calloc(b->services * b->per_service, sizeof(*b->ids));
        if (!b->verified || !b->verified_len || !b->ids)
            return -ENOMEM;
        return 0;
    }
    /* Redis: GET per service (inline, as the issue asks), SET per service */
    for (size_t i = 0; i < b->services; i++) {
        if (svc_name(name, sizeof(name), "bench-svc", i) < 0)
            return -ENOSPC;
        int n = snprintf(line, sizeof(line), "GET %s\r\n", name);
        if (n < 0 || (size_t)n >= sizeof(line))
            return -ENOSPC;
        if ((r = reqtab_add(&b->lookups, line, (size_t)n)) < 0)
            return r;
        n = redis_value(b, i, line);
        if (n < 0)
            return n;
        if ((r = reqtab_add(&b->values, line, (size_t)n)) < 0)
            return r;
        if ((r = add_redis_set(&b->registers, name, line, (size_t)n)) < 0)
            return r;
    }
    for (size_t k = 0; b->bg_conns && k < RB_BG_KEYS; k++) {
        if (svc_name(name, sizeof(name), "bench-bg", k) < 0)
            return -ENOSPC;
        int n = redis_value(b, k, line);
        if (n < 0)
            return n;
        if ((r = add_redis_set(&b->bgregs, name, line, (size_t)n)) < 0)
            return r;
    }
    return 0;
}

/* ---- reply checking ------------------------------------------------------------------ */

/* Reports a wrong reply (the first few only: a broken server would flood the terminal). */
static void bad_reply(bench *b, enum kind k, uint32_t tag, const char *why, const char *body,
                      size_t len)
{
    if (b->err_samples >= RB_MAX_ERR_SAMPLES)
        return;
    static const char *const kn[] = {"lookup", "register", "list", "checked", "bg-register"};
    int show = len > 160 ? 160 : (int)len;
    warnx_("%s #%" PRIu32 ": %s: %.*s%s", kn[k], tag, why, show, body ? body : "",
           len > 160 ? "..." : "");
    if (++b->err_samples == RB_MAX_ERR_SAMPLES)
        warnx_("(further wrong replies are counted, not shown)");
}

/* Is `reply` a right registry answer to `kind`/`tag`? Slow path: a full jansson decode. */
static int check_registry_json(bench *b, enum kind k, uint32_t tag, const char *body, size_t len)
{
    json_error_t jerr;
    int ok = 0;
    const char *why = "not a JSON object";
    json_t *o = json_loadb(body, len, 0, &jerr);
    if (!o || !json_is_object(o))
        goto out;
    why = "\"ok\" is not true";
    if (!json_is_true(json_object_get(o, "ok")))
        goto out;
    if (k == K_LOOKUP) {
        char name[RB_NAME_LEN];
        if (svc_name(name, sizeof(name), "bench-svc", tag) < 0)
            goto out;
        why = "wrong service";
        const char *svc = json_string_value(json_object_get(o, "service"));
        if (!svc || strcmp(svc, name) != 0)
            goto out;
        why = "wrong host";
        const char *host = json_string_value(json_object_get(o, "host"));
        if (!host || strcmp(host, RB_HOST) != 0)
            goto out;
        why = "port is not one of the service's";
        json_t *jp = json_object_get(o, "port");
        if (!json_is_integer(jp))
            goto out;
        json_int_t port = json_integer_value(jp);
        int found = 0;
        for (size_t j = 0; j < b->per_service && !found; j++)
            found = port == port_of(b, tag, j);
        if (!found)
            goto out;
        why = "no instances";
        json_t *inst = json_object_get(o, "instances");
        if (!json_is_array(inst) || json_array_size(inst) == 0)
            goto out;
        ok = 1;
    } else if (k == K_LIST) {
        why = "fewer services than preloaded";
        json_t *svcs = json_object_get(o, "services");
        if (!json_is_array(svcs) || json_array_size(svcs) < b->services)
            goto out;
        ok = 1;
    } else {
        why = "no id or token";
        json_t *id = json_object_get(o, "id");
        const char *tok = json_string_value(json_object_get(o, "token"));
        if (!(json_is_integer(id) || json_is_string(id)) || !tok || !*tok)
            goto out;
        if (k == K_REGISTER) {
            /* re-registering (service, host, port) must return the same id */
            why = "re-registration returned a different id";
            if (b->ids[tag] && !json_equal(b->ids[tag], id))
                goto out;
            if (!b->ids[tag])
                b->ids[tag] = json_incref(id);
        }
        ok = 1;
    }
out:
    if (!ok)
        bad_reply(b, k, tag, why, body, len);
    json_decref(o);
    return ok;
}

static int check_registry(bench *b, enum kind k, uint32_t tag, const char *body, size_t len)
{
    if (k != K_LOOKUP)
        return check_registry_json(b, k, tag, body, len);
    /* A reply byte-identical to one already decoded and found right for this very service
     * is right too: the memcmp keeps checking cheap (as cheap as checking a Redis GET)
     * without trusting anything unverified. */
    if (b->verified[tag] && b->verified_len[tag] == len && memcmp(b->verified[tag], body, len) == 0)
        return 1;
    if (!check_registry_json(b, k, tag, body, len))
        return 0;
    char *copy = realloc(b->verified[tag], len ? len : 1);
    if (copy) {
        memcpy(copy, body, len);
        b->verified[tag] = copy;
        b->verified_len[tag] = (uint32_t)len;
    }
    return 1;
}

/* type: the RESP type byte; body/len: the payload (bulk) or the line after the type. */
static int check_redis(bench *b, enum kind k, uint32_t tag, char type, const char *body,
                       size_t len, int nil)
{
    if (k == K_LOOKUP) {
        if (type == '$' && !nil) {
            uv_buf_t want = reqtab_buf(&b->values, tag);
            if (want.len == len && memcmp(want.base, body, len) == 0)
                return 1;
            bad_reply(b, k, tag, "wrong value", body, len);
            return 0;
        }
        bad_reply(b, k, tag, nil ? "nil (key missing)" : "not a bulk reply", body, len);
        return 0;
    }
    if (type == '+' && len == 2 && memcmp(body, "OK", 2) == 0)
        return 1;
    bad_reply(b, k, tag, "not +OK", body, len);
    return 0;
}

/* ---- connections --------------------------------------------------------------------- */

static uint64_t stream_outstanding(const stream *s)
{
    return s->issued - s->ok - s->errors;
}

static void on_close(uv_handle_t *h)
{
    (void)h; /* conns live in one array freed after the loop has closed every handle */
}

/* Gives up on a connection: its outstanding requests count as errors. */
static void conn_fail(conn *c, const char *why)
{
    if (c->dead)
        return;
    bench *b = c->b;
    c->dead = 1;
    if (c->st) {
        c->st->errors += c->count;
        c->st->live--;
        if (c->st->live == 0)
            c->st->stopping = 1;
    }
    if (b->err_samples < RB_MAX_ERR_SAMPLES) {
        b->err_samples++;
        warnx_("connection %u: %s (%u requests lost)", (unsigned)(c - b->c), why, c->count);
    }
    c->count = 0;
    c->head = 0;
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_write(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    conn *c = req->data;
    w->next = c->wfree;
    c->wfree = w;
    if (status < 0 && status != UV_ECANCELED)
        conn_fail(c, uv_strerror(status));
}

/* Writes nb buffers: synchronously when the socket takes them (the common case, no
 * request object), the rest through uv_write. Returns 0 or a libuv error. */
static int conn_send(conn *c, uv_buf_t *bufs, unsigned nb)
{
    size_t total = 0;
    for (unsigned i = 0; i < nb; i++)
        total += bufs[i].len;
    int r = uv_try_write((uv_stream_t *)&c->tcp, bufs, nb);
    if (r == UV_EAGAIN)
        r = 0;
    if (r < 0)
        return r;
    size_t done = (size_t)r;
    if (done == total)
        return 0;
    unsigned i = 0;
    while (done >= bufs[i].len) {
        done -= bufs[i].len;
        i++;
    }
    bufs[i].base += done;
    bufs[i].len -= (unsigned)done;
    wreq *w = c->wfree;
    if (w) {
        c->wfree = w->next;
    } else if (!(w = malloc(sizeof(*w)))) {
        return UV_ENOMEM;
    }
    w->req.data = c;
    r = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs + i, nb - i, on_write);
    if (r < 0) {
        w->next = c->wfree;
        c->wfree = w;
    }
    return r;
}

/* Picks the next request of stream s. */
static uv_buf_t next_request(bench *b, stream *s, uint32_t *tag, uint8_t *kind)
{
    switch (s->test) {
    case T_PRELOAD:
        *tag = (uint32_t)s->issued;
        *kind = K_REGISTER;
        return reqtab_buf(&b->registers, *tag);
    case T_CHECKED:
        *tag = (uint32_t)s->issued;
        *kind = K_CHECKED;
        return reqtab_buf(&b->checkregs, *tag);
    case T_BG:
        *tag = (uint32_t)(s->issued % RB_BG_KEYS);
        *kind = K_BG;
        return reqtab_buf(&b->bgregs, *tag);
    case T_PRIME:
        *tag = (uint32_t)s->issued;
        *kind = K_LOOKUP;
        return reqtab_buf(&b->lookups, *tag);
    case T_LIST:
        *tag = 0;
        *kind = K_LIST;
        return uv_buf_init(b->list_req, (unsigned)b->list_len);
    case T_REGISTER:
        *tag = rng_below(b, b->registers.n);
        *kind = K_REGISTER;
        return reqtab_buf(&b->registers, *tag);
    case T_MIXED:
        if (rng_below(b, 100) < RB_MIX_REGISTER_PCT) {
            *tag = rng_below(b, b->registers.n);
            *kind = K_REGISTER;
            return reqtab_buf(&b->registers, *tag);
        }
        /* fall through */
    case T_LOOKUP:
    default:
        *tag = rng_below(b, b->services);
        *kind = K_LOOKUP;
        return reqtab_buf(&b->lookups, *tag);
    }
}

/* Tops the connection up to its stream's pipeline depth, in one write. */
static void conn_fill(conn *c)
{
    stream *s = c->st;
    if (!s || c->dead || s->stopping)
        return;
    bench *b = c->b;
    uv_buf_t bufs[64];
    unsigned nb = 0;
    uint64_t now = uv_hrtime();
    uint64_t limit = s->limit;
    if (s->rate > 0) {
        /* paced: no further ahead than the schedule; the tick tops up as time passes */
        uint64_t due = (uint64_t)((double)(now - s->t_start) / 1e9 * s->rate) + 1;
        if (due < limit)
            limit = due;
    }
    while (c->count < s->pipeline && s->issued < limit) {
        slot *sl = &c->ring[(c->head + c->count) % c->ringcap];
        bufs[nb++] = next_request(b, s, &sl->tag, &sl->kind);
        sl->t = now;
        c->count++;
        s->issued++;
        if (nb == sizeof(bufs) / sizeof(bufs[0])) {
            int r = conn_send(c, bufs, nb);
            nb = 0;
            if (r < 0) {
                conn_fail(c, uv_strerror(r));
                return;
            }
        }
    }
    if (nb) {
        int r = conn_send(c, bufs, nb);
        if (r < 0)
            conn_fail(c, uv_strerror(r));
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = h->data;
    if (c->incap - c->inlen < RB_READ_CHUNK) {
        size_t cap = c->incap ? c->incap * 2 : 2 * RB_READ_CHUNK;
        while (cap - c->inlen < RB_READ_CHUNK)
            cap *= 2;
        if (cap > RB_MAX_INBUF + 2 * RB_READ_CHUNK) {
            *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
            return;
        }
        char *in = realloc(c->in, cap);
        if (!in) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        c->in = in;
        c->incap = cap;
    }
    *buf = uv_buf_init(c->in + c->inlen, (unsigned)(c->incap - c->inlen));
}

/* Finds one complete reply at p[0..len). Returns its size (0: incomplete, -1: garbage)
 * and sets the parts the checker needs. */
static long frame_registry(conn *c, const char *p, size_t len, const char **body, size_t *blen)
{
    size_t from = c->scanned < len ? c->scanned : len;
    const char *nl = memchr(p + from, '\n', len - from);
    if (!nl) {
        c->scanned = len;
        return 0;
    }
    c->scanned = 0;
    *body = p;
    *blen = (size_t)(nl - p);
    if (*blen && p[*blen - 1] == '\r')
        (*blen)--;
    return (long)(nl - p) + 1;
}

static long frame_redis(const char *p, size_t len, char *type, const char **body, size_t *blen,
                        int *nil)
{
    const char *nl = memchr(p, '\n', len);
    if (!nl)
        return 0;
    if (nl == p || nl[-1] != '\r')
        return -1;
    size_t hl = (size_t)(nl - p) + 1; /* header line, CRLF included */
    *type = p[0];
    *nil = 0;
    switch (p[0]) {
    case '+': case '-': case ':':
        *body = p + 1;
        *blen = hl - 3;
        return (long)hl;
    case '$': {
        /* RESP lengths are digits (or -1); decoded by hand because strtol would read past
         * the CR into bytes not yet received */
        const char *d = p + 1, *e = nl - 1;
        if (e - d == 2 && d[0] == '-' && d[1] == '1') {
            *nil = 1;
            *body = NULL;
            *blen = 0;
            return (long)hl;
        }
        if (d == e)
            return -1;
        uint64_t n = 0;
        for (; d < e; d++) {
            if (*d < '0' || *d > '9' || n > RB_MAX_INBUF)
                return -1;
            n = n * 10 + (uint64_t)(*d - '0');
        }
        if (n > RB_MAX_INBUF)
            return -1;
        if (len < hl + n + 2)
            return 0;
        if (p[hl + n] != '\r' || p[hl + n + 1] != '\n')
            return -1;
        *body = p + hl;
        *blen = (size_t)n;
        return (long)(hl + n + 2);
    }
    default:
        return -1;
    }
}

static void phase_check_done(bench *b);

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    conn *c = st->data;
    bench *b = c->b;
    if (nread < 0) {
        conn_fail(c, nread == UV_EOF ? "server closed the connection"
                     : nread == UV_ENOBUFS ? "reply larger than the input limit"
                     : uv_strerror((int)nread));
        phase_check_done(b);
        return;
    }
    if (nread == 0)
        return;
    c->inlen += (size_t)nread;
    uint64_t now = uv_hrtime();
    size_t pos = 0;
    for (;;) {
        const char *body = NULL;
        size_t blen = 0;
        char type = 0;
        int nil = 0;
        long fl = b->target == TARGET_REGISTRY
                      ? frame_registry(c, c->in + pos, c->inlen - pos, &body, &blen)
                      : frame_redis(c->in + pos, c->inlen - pos, &type, &body, &blen, &nil);
        if (fl == 0)
            break;
        if (fl < 0) {
            conn_fail(c, "malformed reply");
            phase_check_done(b);
            return;
        }
        if (c->count == 0 || !c->st) {
            conn_fail(c, "reply to no request");
            phase_check_done(b);
            return;
        }
        slot *sl = &c->ring[c->head];
        c->head = (c->head + 1) % c->ringcap;
        c->count--;
        stream *s = c->st;
        int ok = b->target == TARGET_REGISTRY
                     ? check_registry(b, (enum kind)sl->kind, sl->tag, body, blen)
                     : check_redis(b, (enum kind)sl->kind, sl->tag, type, body, blen, nil);
        if (ok) {
            s->ok++;
            if (s->hist)
                hdr_record(s->hist, now - sl->t);
        } else {
            s->errors++;
        }
        s->t_last = now;
        pos += (size_t)fl;
    }
    if (pos) {
        memmove(c->in, c->in + pos, c->inlen - pos);
        c->inlen -= pos;
    }
    if (c->inlen > RB_MAX_INBUF) {
        conn_fail(c, "reply larger than the input limit");
        phase_check_done(b);
        return;
    }
    b->last_progress = now;
    conn_fill(c);
    phase_check_done(b);
}

static void on_connect(uv_connect_t *req, int status)
{
    conn *c = req->data;
    bench *b = c->b;
    free(req);
    if (status < 0) {
        if (!b->connect_failed)
            warnx_("cannot connect to %s: %s", b->addr_text, uv_strerror(status));
        b->connect_failed++;
        c->dead = 1;
        if (!uv_is_closing((uv_handle_t *)&c->tcp))
            uv_close((uv_handle_t *)&c->tcp, on_close);
    } else {
        c->connected = 1;
        b->connected++;
        uv_tcp_nodelay(&c->tcp, 1);
        int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        if (r < 0)
            conn_fail(c, uv_strerror(r));
    }
    if (b->connected + b->connect_failed == b->nconns)
        uv_stop(b->loop);
}

/* Opens every connection (measured ones, then background ones). Returns 0 or -1. */
static int connect_all(bench *b)
{
    b->nconns = b->conns + b->bg_conns;
    b->c = calloc(b->nconns, sizeof(*b->c));
    if (!b->c)
        return -1;
    for (unsigned i = 0; i < b->nconns; i++) {
        conn *c = &b->c[i];
        c->b = b;
        int r = uv_tcp_init(b->loop, &c->tcp);
        if (r < 0) {
            warnx_("tcp init: %s", uv_strerror(r));
            return -1;
        }
        c->tcp.data = c;
        uv_connect_t *req = malloc(sizeof(*req));
        if (!req) {
            c->dead = 1;
            uv_close((uv_handle_t *)&c->tcp, on_close);
            b->connect_failed++;
            continue;
        }
        req->data = c;
        r = uv_tcp_connect(req, &c->tcp, (const struct sockaddr *)&b->addr, on_connect);
        if (r < 0) {
            free(req);
            if (!b->connect_failed)
                warnx_("cannot connect to %s: %s", b->addr_text, uv_strerror(r));
            c->dead = 1;
            uv_close((uv_handle_t *)&c->tcp, on_close);
            b->connect_failed++;
        }
    }
    if (b->connected + b->connect_failed < b->nconns)
        uv_run(b->loop, UV_RUN_DEFAULT);
    return b->connect_failed ? -1 : 0;
}

/* ---- phases -------------------------------------------------------------------------- */

static void phase_check_done(bench *b)
{
    if (!b->phase_running)
        return;
    stream *m = b->main, *g = b->bg;
    int main_done = (m->stopping || m->issued >= m->limit) && stream_outstanding(m) == 0;
    if ((m->stopping || m->issued >= m->limit) && g)
        g->stopping = 1; /* background load lasts as long as the measured one */
    if (main_done && (!g || stream_outstanding(g) == 0)) {
        b->phase_running = 0;
        uv_stop(b->loop);
    }
}

static void on_tick(uv_timer_t *t)
{
    bench *b = t->data;
    uint64_t now = uv_hrtime();
    if (b->deadline && now >= b->deadline) {
        b->main->stopping = 1;
        if (b->bg)
            b->bg->stopping = 1;
    }
    if (b->bg && b->bg->rate > 0)
        for (unsigned i = 0; i < b->nconns; i++)
            if (b->c[i].st == b->bg)
                conn_fill(&b->c[i]);
    uint64_t out = stream_outstanding(b->main) + (b->bg ? stream_outstanding(b->bg) : 0);
    if (out && now - b->last_progress > RB_STALL_NS) {
        for (unsigned i = 0; i < b->nconns; i++)
            if (b->c[i].count && !b->c[i].dead)
                conn_fail(&b->c[i], "no reply for 10 s");
    }
    phase_check_done(b);
}

static int conn_ensure_ring(conn *c, unsigned depth)
{
    if (c->ringcap >= depth)
        return 0;
    slot *ring = realloc(c->ring, depth * sizeof(*ring));
    if (!ring)
        return -ENOMEM;
    c->ring = ring;
    c->ringcap = depth;
    c->head = 0;
    return 0;
}

/* Runs stream m on connections [m0, m1) and, when g is set, stream g on [g0, g1), until m
 * ends (limit, duration, or every connection lost). Returns 0, or -1 when a connection
 * could not be set up. */
static int run_phase(bench *b, stream *m, unsigned m0, unsigned m1, stream *g, unsigned g0,
                     unsigned g1, double duration)
{
    b->main = m;
    b->bg = g;
    uint64_t now = uv_hrtime();
    m->t_start = m->t_last = now;
    if (g)
        g->t_start = g->t_last = now;
    b->last_progress = now;
    b->deadline = duration > 0 ? now + (uint64_t)(duration * 1e9) : 0;
    for (int pass = 0; pass < 2; pass++) {
        stream *s = pass ? g : m;
        unsigned lo = pass ? g0 : m0, hi = pass ? g1 : m1;
        if (!s)
            continue;
        for (unsigned i = lo; i < hi; i++) {
            conn *c = &b->c[i];
            if (c->dead)
                continue;
            if (conn_ensure_ring(c, s->pipeline) < 0)
                return -1;
            c->st = s;
            s->live++;
        }
        if (!s->live)
            s->stopping = 1;
    }
    b->phase_running = 1;
    for (unsigned i = 0; i < b->nconns; i++)
        conn_fill(&b->c[i]);
    phase_check_done(b);
    if (b->phase_running) {
        uv_timer_start(&b->tick, on_tick, RB_TICK_MS, RB_TICK_MS);
        uv_run(b->loop, UV_RUN_DEFAULT);
        uv_timer_stop(&b->tick);
    }
    b->phase_running = 0;
    for (unsigned i = 0; i < b->nconns; i++)
        b->c[i].st = NULL;
    b->main = b->bg = NULL;
    return 0;
}

static double elapsed_s(const stream *s)
{
    return (double)(s->t_last - s->t_start) / 1e9;
}

/* Registers (or SETs) everything the tests look up. Returns 0, or -1 when the preload
 * failed: every measurement after it would be meaningless. */
static int preload(bench *b, enum test t, const reqtab *tab, const char *what)
{
    if (!tab->n)
        return 0;
    unsigned n = b->conns < RB_PRELOAD_CONNS ? b->conns : RB_PRELOAD_CONNS;
    stream s = {.test = t, .pipeline = RB_PRELOAD_PIPELINE, .limit = tab->n};
    if (run_phase(b, &s, 0, n, NULL, 0, 0, 0) < 0)
        return -1;
    double secs = elapsed_s(&s);
    if (!b->quiet)
        fprintf(stderr, "regbench: preloaded %" PRIu64 " %s in %.2f s (%.0f/s)\n", s.ok, what,
                secs, secs > 0 ? (double)s.ok / secs : 0.0);
    if (s.ok != tab->n) {
        warnx_("preload of %s: %" PRIu64 " of %zu failed", what, tab->n - s.ok, tab->n);
        return -1;
    }
    return 0;
}

static double round1(double v)
{
    return round(v * 10.0) / 10.0;
}

static double us(uint64_t ns)
{
    return round1((double)ns / 1000.0);
}

static void report(bench *b, enum test t, const stream *m, const stream *g)
{
    double secs = elapsed_s(m);
    double rps = secs > 0 ? (double)m->ok / secs : 0.0;
    uint64_t done = m->ok + m->errors;
    const char *target = b->target == TARGET_REGISTRY ? "registry" : "redis";
    if (b->json) {
        json_t *o = json_object();
        if (!o)
            return;
        json_object_set_new(o, "target", json_string(target));
        json_object_set_new(o, "test", json_string(test_names[t]));
        json_object_set_new(o, "connections", json_integer(b->conns));
        json_object_set_new(o, "pipeline", json_integer(b->pipeline));
        json_object_set_new(o, "services", json_integer((json_int_t)b->services));
        json_object_set_new(o, "requests", json_integer((json_int_t)done));
        json_object_set_new(o, "seconds", json_real(round(secs * 1000.0) / 1000.0));
        json_object_set_new(o, "rps", json_real(round1(rps)));
        json_object_set_new(o, "p50_us", json_real(us(hdr_percentile(m->hist, 50.0))));
        json_object_set_new(o, "p99_us", json_real(us(hdr_percentile(m->hist, 99.0))));
        json_object_set_new(o, "p999_us", json_real(us(hdr_percentile(m->hist, 99.9))));
        json_object_set_new(o, "max_us", json_real(us(hdr_max(m->hist))));
        json_object_set_new(o, "mean_us", json_real(round1(hdr_mean(m->hist) / 1000.0)));
        json_object_set_new(o, "errors", json_integer((json_int_t)m->errors));
        if (g) {
            double gs = elapsed_s(g);
            json_object_set_new(o, "bg_connections", json_integer(b->bg_conns));
            json_object_set_new(o, "bg_rate", json_real(b->bg_rate));
            json_object_set_new(o, "bg_requests", json_integer((json_int_t)(g->ok + g->errors)));
            json_object_set_new(o, "bg_rps", json_real(round1(gs > 0 ? (double)g->ok / gs : 0)));
            json_object_set_new(o, "bg_p50_us", json_real(us(hdr_percentile(g->hist, 50.0))));
            json_object_set_new(o, "bg_p99_us", json_real(us(hdr_percentile(g->hist, 99.0))));
            json_object_set_new(o, "bg_errors", json_integer((json_int_t)g->errors));
        }
        json_dumpf(o, stdout, JSON_COMPACT | JSON_REAL_PRECISION(12));
        fputc('\n', stdout);
        json_decref(o);
    } else if (b->quiet) {
        printf("%s: %.2f requests per second, p50=%.3f msec, p99=%.3f msec, errors %" PRIu64 "\n",
               test_names[t], rps, (double)hdr_percentile(m->hist, 50.0) / 1e6,
               (double)hdr_percentile(m->hist, 99.0) / 1e6, m->errors);
    } else {
        printf("====== %s (%s %s) ======\n", test_names[t], target, b->addr_text);
        printf("  %" PRIu64 " requests in %.3f s, %u connections, pipeline %u, %zu services\n",
               done, secs, b->conns, b->pipeline, b->services);
        printf("  throughput: %.1f requests/s (right replies)\n", rps);
        printf("  latency us: p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (mean %.1f)\n",
               us(hdr_percentile(m->hist, 50.0)), us(hdr_percentile(m->hist, 99.0)),
               us(hdr_percentile(m->hist, 99.9)), us(hdr_max(m->hist)),
               hdr_mean(m->hist) / 1000.0);
        printf("  errors: %" PRIu64 "\n", m->errors);
        if (g) {
            double gs = elapsed_s(g);
            printf("  background registrations: %" PRIu64 " on %u connections, %.1f/s, "
                   "p99 %.1f us, errors %" PRIu64 "\n", g->ok + g->errors, b->bg_conns,
                   gs > 0 ? (double)g->ok / gs : 0.0, us(hdr_percentile(g->hist, 99.0)),
                   g->errors);
        }
    }
    fflush(stdout);
}

/* Looks every service up once, unmeasured, so the measured run finds a decoded and
 * checked answer to compare each reply with (check_registry): otherwise, with 100,000
 * services, most replies of a short run would be first sightings decoded by jansson, and
 * the client's decoding, not the server, would set the pace. Returns the errors seen. */
static int64_t prime(bench *b)
{
    unsigned n = b->conns < RB_PRELOAD_CONNS ? b->conns : RB_PRELOAD_CONNS;
    stream s = {.test = T_PRIME, .pipeline = RB_PRELOAD_PIPELINE, .limit = b->services};
    if (run_phase(b, &s, 0, n, NULL, 0, 0, 0) < 0)
        return -1;
    b->primed = 1;
    double secs = elapsed_s(&s);
    if (!b->quiet)
        fprintf(stderr, "regbench: looked up each of %zu services once in %.2f s\n",
                b->services, secs);
    return (int64_t)s.errors;
}

/* Runs one test (warm-up, then measured). Returns the errors seen, or -1. */
static int64_t run_test(bench *b, enum test t)
{
    int64_t rc = -1, primed_errors = 0;
    if (b->target == TARGET_REGISTRY && (t == T_LOOKUP || t == T_MIXED) && !b->primed &&
        (primed_errors = prime(b)) < 0)
        return -1;
    stream m = {.test = t, .pipeline = b->pipeline, .limit = b->requests};
    stream g = {.test = T_BG, .pipeline = RB_BG_PIPELINE, .limit = UINT64_MAX,
                .rate = b->bg_rate};
    m.hist = hdr_create(RB_HIST_MAX_NS);
    g.hist = hdr_create(RB_HIST_MAX_NS);
    if (!m.hist || !g.hist)
        goto out;
    m.errors = (uint64_t)primed_errors;
    stream *gp = b->bg_conns ? &g : NULL;
    unsigned n = b->conns, nb = b->conns + b->bg_conns;
    if (b->warmup > 0) {
        stream wm = m, wg = g;
        wm.limit = UINT64_MAX;
        if (run_phase(b, &wm, 0, n, gp ? &wg : NULL, n, nb, b->warmup) < 0)
            goto out;
        hdr_reset(m.hist);
        hdr_reset(g.hist);
        m.errors = wm.errors; /* a wrong reply while warming up is still a wrong reply */
    }
    if (run_phase(b, &m, 0, n, gp, n, nb, b->duration) < 0)
        goto out;
    report(b, t, &m, gp);
    rc = (int64_t)(m.errors + (gp ? g.errors : 0));
out:
    hdr_destroy(m.hist);
    hdr_destroy(g.hist);
    return rc;
}

/* ---- main ---------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: regbench [--registry HOST:PORT] [--target registry|redis] [-c CONNECTIONS]\n"
        "                [-n REQUESTS] [-P PIPELINE] [-t lookup,register,list,mixed]\n"
        "                [--services N] [--instances-per-service K] [--duration S]\n"
        "                [--warmup S] [--bg-register CONNS [--bg-rate R]] [--checked M\n"
        "                --live-port P --dead-port P] [--no-preload] [--seed N] [--json]\n"
        "                [--quiet]\n"
        "\n"
        "  --registry HOST:PORT  server address, loopback only (default 127.0.0.1:5380,\n"
        "                        or 127.0.0.1:6379 with --target redis)\n"
        "  --target T            registry (NDJSON protocol) or redis (GET/SET)\n"
        "  -c N                  connections (default 50)\n"
        "  -n N                  requests per test (default 100000; unlimited when only\n"
        "                        --duration is given)\n"
        "  -P N                  requests kept outstanding per connection (default 1)\n"
        "  -t LIST               tests, comma separated (default lookup); mixed is %d%%\n"
        "                        registrations, the rest lookups; list is registry only\n"
        "  --services N          services preloaded as bench-svc-<i> (default 100)\n"
        "  --instances-per-service K  instances of each (default 1; registry only)\n"
        "  --duration S          stop a test after S seconds (or -n, whichever is first)\n"
        "  --warmup S            run each test S seconds unmeasured first\n"
        "  --bg-register W       W more connections keep registering during each test\n"
        "  --bg-rate R           ... R registrations/s in all (default: as fast as they can)\n"
        "  --checked M           also register M instances with \"check\":\"tcp\", half at\n"
        "                        --live-port, half at --dead-port (127.0.0.1)\n"
        "  --no-preload          the services exist already (registered by an earlier run)\n"
        "  --seed N              seed of the key choice (default 1)\n"
        "  --json                one JSON object per test on stdout\n"
        "  -q, --quiet           one line per test\n"
        "exit status: 0 all replies right, 3 some were wrong or missing, 1 failure, 2 usage\n",
        RB_MIX_REGISTER_PCT);
}

static int parse_tests(bench *b, const char *arg)
{
    char buf[256];
    if (strlen(arg) >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, arg, strlen(arg) + 1);
    b->ntests = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        unsigned t;
        for (t = T_LOOKUP; t <= T_MIXED; t++)
            if (strcmp(tok, test_names[t]) == 0)
                break;
        if (t > T_MIXED || b->ntests == sizeof(b->tests) / sizeof(b->tests[0]))
            return -EINVAL;
        b->tests[b->ntests++] = t;
    }
    return b->ntests ? 0 : -EINVAL;
}

enum {
    OPT_REGISTRY = 256, OPT_TARGET, OPT_SERVICES, OPT_DURATION, OPT_PER_SERVICE, OPT_JSON,
    OPT_WARMUP, OPT_BG, OPT_BG_RATE, OPT_CHECKED, OPT_LIVE, OPT_DEAD, OPT_NO_PRELOAD, OPT_SEED,
};

static int parse_args(bench *b, int argc, char **argv)
{
    static const struct option opts[] = {
        {"registry", required_argument, NULL, OPT_REGISTRY},
        {"target", required_argument, NULL, OPT_TARGET},
        {"services", required_argument, NULL, OPT_SERVICES},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"instances-per-service", required_argument, NULL, OPT_PER_SERVICE},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"bg-register", required_argument, NULL, OPT_BG},
        {"bg-rate", required_argument, NULL, OPT_BG_RATE},
        {"checked", required_argument, NULL, OPT_CHECKED},
        {"live-port", required_argument, NULL, OPT_LIVE},
        {"dead-port", required_argument, NULL, OPT_DEAD},
        {"no-preload", no_argument, NULL, OPT_NO_PRELOAD},
        {"seed", required_argument, NULL, OPT_SEED},
        {"json", no_argument, NULL, OPT_JSON},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *addr = NULL;
    uint64_t v;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:n:P:t:qh", opts, NULL)) != -1) {
        switch (ch) {
        case OPT_REGISTRY: addr = optarg; break;
        case OPT_TARGET:
            if (strcmp(optarg, "registry") == 0)
                b->target = TARGET_REGISTRY;
            else if (strcmp(optarg, "redis") == 0)
                b->target = TARGET_REDIS;
            else
                return warnx_("--target: registry or redis, not '%s'", optarg), -1;
            break;
        case 'c':
            if (parse_u64(optarg, 1, RB_MAX_CONNS, &v) < 0)
                return warnx_("-c: 1..%d connections", RB_MAX_CONNS), -1;
            b->conns = (unsigned)v;
            break;
        case 'n':
            if (parse_u64(optarg, 1, 1000000000000ull, &v) < 0)
                return warnx_("-n: a positive number of requests"), -1;
            b->requests = v;
            b->requests_set = 1;
            break;
        case 'P':
            if (parse_u64(optarg, 1, RB_MAX_PIPELINE, &v) < 0)
                return warnx_("-P: 1..%d", RB_MAX_PIPELINE), -1;
            b->pipeline = (unsigned)v;
            break;
        case 't':
            if (parse_tests(b, optarg) < 0)
                return warnx_("-t: comma-separated lookup, register, list, mixed"), -1;
            break;
        case OPT_SERVICES:
            if (parse_u64(optarg, 1, RB_MAX_SERVICES, &v) < 0)
                return warnx_("--services: 1..%d", RB_MAX_SERVICES), -1;
            b->services = (size_t)v;
            break;
        case OPT_PER_SERVICE:
            if (parse_u64(optarg, 1, RB_MAX_INSTANCES, &v) < 0)
                return warnx_("--instances-per-service: 1..%d", RB_MAX_INSTANCES), -1;
            b->per_service = (size_t)v;
            break;
        case OPT_DURATION:
            if (parse_double(optarg, 0.001, RB_MAX_DURATION, &b->duration) < 0)
                return warnx_("--duration: seconds, 0.001..%.0f", RB_MAX_DURATION), -1;
            break;
        case OPT_WARMUP:
            if (parse_double(optarg, 0, RB_MAX_DURATION, &b->warmup) < 0)
                return warnx_("--warmup: seconds, 0..%.0f", RB_MAX_DURATION), -1;
            break;
        case OPT_BG:
            if (parse_u64(optarg, 0, RB_MAX_BG, &v) < 0)
                return warnx_("--bg-register: 0..%d connections", RB_MAX_BG), -1;
            b->bg_conns = (unsigned)v;
            break;
        case OPT_BG_RATE:
            if (parse_double(optarg, 1, 10000000, &b->bg_rate) < 0)
                return warnx_("--bg-rate: registrations per second, 1..10000000"), -1;
            break;
        case OPT_CHECKED:
            if (parse_u64(optarg, 0, RB_MAX_CHECKED, &v) < 0)
                return warnx_("--checked: 0..%d instances", RB_MAX_CHECKED), -1;
            b->checked = (size_t)v;
            break;
        case OPT_LIVE:
        case OPT_DEAD:
            if (parse_u64(optarg, 1, 65535, &v) < 0)
                return warnx_("--%s-port: 1..65535", ch == OPT_LIVE ? "live" : "dead"), -1;
            *(ch == OPT_LIVE ? &b->live_port : &b->dead_port) = (int)v;
            break;
        case OPT_NO_PRELOAD: b->preload = 0; break;
        case OPT_SEED:
            if (parse_u64(optarg, 0, UINT64_MAX, &v) < 0)
                return warnx_("--seed: a non-negative integer"), -1;
            b->seed = v;
            break;
        case OPT_JSON: b->json = 1; break;
        case 'q': b->quiet = 1; break;
        case 'h': usage(stdout); exit(0);
        default: return -1;
        }
    }
    if (optind < argc)
        return warnx_("unexpected argument '%s'", argv[optind]), -1;
    if (!addr)
        addr = b->target == TARGET_REGISTRY ? "127.0.0.1:5380" : "127.0.0.1:6379";
    if (parse_addr(addr, &b->addr) < 0)
        return warnx_("--registry: HOST:PORT with a loopback IP literal, not '%s'", addr), -1;
    snprintf(b->addr_text, sizeof(b->addr_text), "%s", addr);
    if (b->duration > 0 && !b->requests_set)
        b->requests = UINT64_MAX;
    if (b->services * b->per_service > RB_MAX_REGS)
        return warnx_("--services × --instances-per-service: at most %d", RB_MAX_REGS), -1;
    if (b->checked && (!b->live_port || !b->dead_port))
        return warnx_("--checked needs --live-port and --dead-port"), -1;
    if (b->target == TARGET_REDIS) {
        if (test_wanted(b, T_LIST))
            return warnx_("-t list is registry-only"), -1;
        if (b->checked || b->per_service != 1)
            return warnx_("--checked and --instances-per-service are registry-only"), -1;
    }
    return 0;
}

/* More connections than the default soft limit of 1024 descriptors need a raise. */
static void raise_nofile(unsigned want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        warnx_("cannot raise the descriptor limit to %u: %s", want, strerror(errno));
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int main(int argc, char **argv)
{
    bench b = {
        .target = TARGET_REGISTRY, .conns = 50, .pipeline = 1, .requests = 100000,
        .services = 100, .per_service = 1, .preload = 1, .seed = 1,
        .tests = {T_LOOKUP}, .ntests = 1,
    };
    uv_loop_t loop;
    int rc = 1, loop_ok = 0;
    if (parse_args(&b, argc, argv) < 0) {
        fputs("regbench: --help shows the usage\n", stderr);
        return 2;
    }
    b.rng = b.seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
    if (!b.rng)
        b.rng = 1;
    raise_nofile(b.conns + b.bg_conns + 64);
    if (build_tables(&b) < 0) {
        warnx_("out of memory building the requests");
        goto out;
    }
    if (uv_loop_init(&loop) < 0) {
        warnx_("cannot create the event loop");
        goto out;
    }
    loop_ok = 1;
    b.loop = &loop;
    uv_timer_init(&loop, &b.tick);
    b.tick.data = &b;
    if (connect_all(&b) < 0)
        goto out;
    if (b.preload && preload(&b, T_PRELOAD, &b.registers,
                             b.target == TARGET_REGISTRY ? "registrations" : "keys") < 0)
        goto out;
    if (preload(&b, T_CHECKED, &b.checkregs, "health-checked registrations") < 0)
        goto out;
    int64_t errors = 0;
    for (size_t i = 0; i < b.ntests; i++) {
        int64_t e = run_test(&b, (enum test)b.tests[i]);
        if (e < 0) {
            warnx_("out of memory");
            goto out;
        }
        errors += e;
    }
    rc = errors ? 3 : 0;
out:
    if (loop_ok) {
        uv_walk(&loop, close_walk, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&loop) != 0)
            warnx_("event loop still busy at exit");
    }
    for (unsigned i = 0; b.c && i < b.nconns; i++) {
        conn *c = &b.c[i];
        while (c->wfree) {
            wreq *w = c->wfree;
            c->wfree = w->next;
            free(w);
        }
        free(c->in);
        free(c->ring);
    }
    free(b.c);
    if (b.verified)
        for (size_t i = 0; i < b.services; i++)
            free(b.verified[i]);
    free(b.verified);
    free(b.verified_len);
    if (b.ids)
        for (size_t i = 0; i < b.services * b.per_service; i++)
            json_decref(b.ids[i]);
    free(b.ids);
    reqtab_free(&b.lookups);
    reqtab_free(&b.registers);
    reqtab_free(&b.checkregs);
    reqtab_free(&b.bgregs);
    reqtab_free(&b.values);
    return rc;
}
