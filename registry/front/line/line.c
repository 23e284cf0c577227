/* SPDX-License-Identifier: BSD-2-Clause */
/* line.c — the newline-JSON front-end (see line.h): the listener, connections, line
 * framing, the per-connection output buffer, limits and timeouts, replies in request
 * order, the encodings of replies, and watchers as subscribers of the event bus.
 *
 * Ordering: replies go out in request order. Reads are answered at once; a write
 * (ops_is_write) takes a slot in its connection's queue of replies, and a later read
 * waits (parsing pauses) until every earlier reply is out, so it sees the writes before
 * it. Writes that follow writes are run at once, so a pipeline of registrations still
 * shares group commits; their replies leave in order as their slots fill.
 *
 * Output: replies are appended to the connection's buffer and written once per loop
 * iteration (uv_prepare/uv_check), so a pipeline of N requests costs one write(2), and
 * most writes complete inline with uv_try_write; only the remainder goes to uv_write.
 */
#include "front/line/line.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/dict.h"
#include "base/util.h"
#include "core/ops.h"
#include "front/line/proto.h"
#include "front/net.h"

#define IN_MAX (PROTO_MAX_LINE + (16u << 10)) /* input buffer cap: a line and a read */
#define PAGE_BYTES PROTO_MAX_LINE   /* a page of list or lookup fits one protocol line, as a
                                     * request does (a lone entry larger than that still
                                     * goes, alone) */
#define NEXT_ROOM (16 + PROTO_CURSOR_MAX) /* ",\"next\":\"CURSOR\"" */

typedef struct conn conn;
typedef struct slot slot;

struct line_server {
    line_config cfg;
    core *core;                     /* borrowed */
    alog *log;                      /* borrowed (the core's) */
    net_server *net;                /* listener, connections, output, timeouts */
    int attach_slot;                /* our line_answer in lookup_set.attach */
    dict *encs;                     /* instance id -> inst_enc: its encodings, by version */
    bus_sub *removals;              /* drops the encodings of instances that went */
    proto_memo *memo;               /* decoded hot lookup lines */
    size_t nwatchers;
    uint64_t requests;              /* since start */
    uint64_t errors[RERR__COUNT];
    uint64_t by_op[OP__COUNT][RERR__COUNT]; /* answers from the core, by op and result */
    ubuf list_body;                 /* encoded list answer, valid for list_gen */
    size_t *list_off;               /* where each entry of list_body starts (page_end) */
    cat_service **list_svcs;        /* the services it lists, by name (valid for list_gen) */
    size_t list_n;
    uint64_t list_gen;
    int64_t ev_seq;                 /* the event encoded in ev_line (0: none) */
    ubuf ev_line;
};

struct conn {
    net_conn net;                   /* must stay first */
    line_server *s;
    size_t scanned;                 /* leading bytes of in known to hold no newline */
    slot *slots, *slots_tail;       /* replies still owed, in request order (net.busy of them) */
    int processing;                 /* process_input is running */
    bus_sub *sub;                   /* a watcher's subscription, or NULL */
    char *watch_service;            /* owned; NULL = every service */
};

/* A reply owed to a connection for a request the core answers later (a write). */
struct slot {
    waiter w;                       /* must stay first */
    conn *c;                        /* referenced */
    json_t *request_id;             /* referenced, or NULL */
    int done;
    ubuf out;                       /* the encoded reply, until the slots before it are out */
    slot *next;
};

/* A reply the core gives at once (reads), encoded straight into the connection. */
typedef struct sync_waiter {
    waiter w;                       /* must stay first */
    conn *c;
    const request *rq;              /* borrowed: the request being answered */
    json_t *request_id;             /* borrowed */
    const proto_page *page;         /* borrowed: list, lookup: the page asked for */
} sync_waiter;

/* A lookup answer, encoded, attached to its lookup set (core/lookup.h), so it is valid
 * for exactly the set's key and service generation: the list of instances (the tail,
 * shared by every answer of this set) and, per candidate, the head naming it, built when
 * first handed out. */
typedef struct line_answer {
    char *tail;                     /* owned: "\"instances\":[...]}\n" */
    size_t tail_len;
    size_t *off;                    /* owned, nlisted + 1: where each instance starts in
                                     * tail (page_end) */
    size_t nlisted;
    char **heads;                   /* owned array of ncands owned strings (NULL: not yet) */
    size_t *head_lens;
    size_t ncands;
} line_answer;

/* An instance's encodings, kept while its version holds, so rebuilding an answer after
 * a change (or after the answer left the cache) re-encodes only what changed. */
typedef struct inst_enc {
    uint64_t ver;                   /* cat_instance.ver they were built from */
    char *frag;                     /* owned, or NULL: the instance's JSON object */
    size_t frag_len;
    char *head;                     /* owned, or NULL: "\"ok\":true,...,\"description\":..," */
    size_t head_len;
    char id[];                      /* the dict key, as long as the id */
} inst_enc;

static void process_input(conn *c);

static void unwatch(conn *c) {
    if (c->sub == NULL)
        return;
    bus_unsubscribe(c->sub);
    c->sub = NULL;
    c->net.long_lived = 0;
    c->s->nwatchers--;
}

/* --- encoding replies ------------------------------------------------------------------------ */

/* Appends the JSON object o (borrowed) with request_id (borrowed, may be NULL). */
static int put_json(ubuf *b, json_t *o, json_t *request_id) {
    if (o == NULL)
        return -ENOMEM;
    return proto_encode(o, request_id, &b->p, &b->len, &b->cap);
}

static int put_error(line_server *s, ubuf *b, req_err e, const char *msg, json_t *request_id) {
    s->errors[e]++;
    json_t *o = proto_error(e, msg, request_id);
    int rc = put_json(b, o, NULL);
    json_decref(o);
    return rc;
}

/* Appends "{" and, when there is one, "\"request_id\":ID,": the opening of a
 * pre-encoded answer, whose members and closing "}\n" follow. Sized by jansson, so an
 * id of any length (within a line) is echoed. */
static int put_open(ubuf *b, json_t *request_id) {
    if (ubuf_add(b, "{", 1) != 0)
        return -ENOMEM;
    if (request_id == NULL)
        return 0;
    size_t n = json_dumpb(request_id, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    if (n == 0 || ubuf_add(b, "\"request_id\":", 13) != 0)
        return -ENOMEM;
    if (ubuf_reserve(b, n) != 0)
        return -ENOMEM;
    if (json_dumpb(request_id, b->p + b->len, n, JSON_COMPACT | JSON_ENCODE_ANY) != n)
        return -ENOMEM;
    b->len += n;
    return ubuf_add(b, ",", 1);
}

static void answer_free(void *p) {
    line_answer *a = p;
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->ncands; i++)
        free(a->heads[i]);
    free(a->tail);
    free(a); /* heads, head_lens and off live in its block */
}

/* Encodes o (stolen) compactly into a new string; NULL when out of memory. */
static char *encode(json_t *o, size_t *len) {
    char *str = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (str != NULL)
        *len = strlen(str);
    return str;
}

static void enc_free(inst_enc *e) {
    free(e->frag);
    free(e->head);
    free(e);
}

/* The encodings of in at its current version (NULL when out of memory). */
static inst_enc *enc_of(line_server *s, const cat_instance *in) {
    size_t idlen = strlen(in->id);
    inst_enc *e = dict_get(s->encs, in->id, idlen);
    if (e == NULL) {
        if ((e = calloc(1, sizeof(*e) + idlen + 1)) == NULL)
            return NULL;
        memcpy(e->id, in->id, idlen + 1);
        if (dict_put(s->encs, e->id, idlen, e) != 0) {
            free(e);
            return NULL;
        }
        e->ver = in->ver;
    } else if (e->ver != in->ver) {
        free(e->frag);
        free(e->head);
        e->frag = e->head = NULL;
        e->ver = in->ver;
    }
    return e;
}

static const char *enc_frag(line_server *s, const cat_instance *in, size_t *len) {
    inst_enc *e = enc_of(s, in);
    if (e == NULL)
        return NULL;
    if (e->frag == NULL && (e->frag = encode(cat_instance_json(in), &e->frag_len)) == NULL)
        return NULL;
    *len = e->frag_len;
    return e->frag;
}

/* The head of an answer handing out in:
 * "\"ok\":true,\"service\":..,\"host\":..,\"port\":..,\"description\":..," */
static const char *enc_head(line_server *s, const cat_instance *in, size_t *len) {
    inst_enc *e = enc_of(s, in);
    if (e == NULL)
        return NULL;
    if (e->head == NULL) {
        size_t n = 0;
        char *str = encode(json_pack("{s:b, s:s, s:s, s:i, s:s}", "ok", 1, "service",
                                     in->svc->name, "host", in->host, "port", in->port,
                                     "description", in->description),
                           &n);
        if (str == NULL)
            return NULL;
        /* "{...}" -> "...," so a request_id can go in front and the list behind */
        memmove(str, str + 1, n - 2);
        str[n - 2] = ',';
        str[n - 1] = '\0';
        e->head = str;
        e->head_len = n - 1;
    }
    *len = e->head_len;
    return e->head;
}

/* The instances that went (the bus says so): their encodings go too. */
static void on_removal(void *ud, const store_event *ev, json_t *obj) {
    line_server *s = ud;
    if (ev->id == NULL || (strcmp(ev->event, "deregister") != 0 &&
                           strcmp(ev->event, "evict") != 0 && strcmp(ev->event, "expire") != 0))
        return;
    inst_enc *e = dict_del(s->encs, ev->id, strlen(ev->id));
    if (e != NULL)
        enc_free(e);
}

/* The encoded answer of a lookup set: the instances it lists, with their current check
 * times (a new time is a new version and a new service generation, so a cached answer
 * always has them). */
static line_answer *answer_build(line_server *s, const lookup_set *set) {
    /* One block for the answer and its arrays, and the tail at its exact size: a lookup
     * that misses the cache allocates twice here. */
    size_t nc = set->ncands, nl = set->nlisted, need = 13 + 3;
    line_answer *a = calloc(1, sizeof(*a) + nc * (sizeof(char *) + sizeof(size_t)) +
                                   (nl + 1) * sizeof(size_t));
    ubuf tail = {0};
    if (a == NULL)
        return NULL;
    a->ncands = nc;
    a->nlisted = nl;
    a->heads = (char **)(a + 1);
    a->head_lens = (size_t *)(a->heads + nc);
    a->off = a->head_lens + nc;
    for (size_t i = 0; i < nl; i++) {
        size_t flen = 0;
        if (enc_frag(s, set->listed[i], &flen) == NULL)
            goto fail;
        need += flen + 1;
    }
    if (ubuf_reserve(&tail, need) != 0 || ubuf_add(&tail, "\"instances\":[", 13) != 0)
        goto fail;
    for (size_t i = 0; i < set->nlisted; i++) {
        size_t flen = 0;
        const char *frag = enc_frag(s, set->listed[i], &flen);
        if (frag == NULL || (i > 0 && ubuf_add(&tail, ",", 1) != 0))
            goto fail;
        a->off[i] = tail.len;
        if (ubuf_add(&tail, frag, flen) != 0)
            goto fail;
    }
    if (ubuf_add(&tail, "]}\n", 3) != 0)
        goto fail;
    a->off[set->nlisted] = tail.len - 2; /* just past the ']' */
    a->tail = tail.p;
    a->tail_len = tail.len;
    return a;
fail:
    free(tail.p);
    answer_free(a);
    return NULL;
}

/* The head of the answer handing out candidate i (a copy of the instance's, kept with
 * the answer so a hit costs no lookup of it). */
static const char *answer_head(line_server *s, line_answer *a, const lookup_set *set, size_t i,
                               size_t *len) {
    if (a->heads[i] == NULL) {
        size_t n = 0;
        const char *head = enc_head(s, set->cands[i], &n);
        if (head == NULL || (a->heads[i] = malloc(n + 1)) == NULL)
            return NULL;
        memcpy(a->heads[i], head, n + 1);
        a->head_lens[i] = n;
    }
    *len = a->head_lens[i];
    return a->heads[i];
}

/* --- pages and replies too large to send ----------------------------------------------- */

/* "16 MiB", "40.2 MiB", "70.5 KiB", "900 bytes" */
static void fmt_size(char *buf, size_t len, uint64_t bytes) {
    const char *unit = bytes >= (1u << 20) ? "MiB" : bytes >= 1024 ? "KiB" : NULL;
    if (unit == NULL) {
        snprintf(buf, len, "%llu bytes", (unsigned long long)bytes);
        return;
    }
    uint64_t tenths = (bytes * 10 + (bytes >= (1u << 20) ? (1u << 19) : 512)) /
                      (bytes >= (1u << 20) ? (1u << 20) : 1024);
    if (tenths % 10 == 0)
        snprintf(buf, len, "%llu %s", (unsigned long long)(tenths / 10), unit);
    else
        snprintf(buf, len, "%llu.%llu %s", (unsigned long long)(tenths / 10),
                 (unsigned long long)(tenths % 10), unit);
}

/* The most bytes one reply may take: it must fit the output cap on its own. */
static uint64_t reply_cap(const line_server *s) {
    return s->cfg.max_output_buffer > 0 ? (uint64_t)s->cfg.max_output_buffer : UINT64_MAX;
}

/* A reply of `bytes` (a list, or a lookup of service) that cannot fit
 * --max-output-buffer is not sent: the client, which may well be reading, is answered
 * too_large naming the paging fields, and keeps its connection. The log gets the
 * reply's real size. */
static int put_too_large(conn *c, ubuf *b, const char *service, int paged, uint64_t bytes,
                         json_t *request_id) {
    line_server *s = c->s;
    char msg[PROTO_MSG_LEN], size[32], cap[32], what[REQ_SERVICE_MAX + 16];
    if (service != NULL)
        snprintf(what, sizeof(what), "lookup of \"%s\"", service);
    else
        snprintf(what, sizeof(what), "list");
    fmt_size(size, sizeof(size), bytes);
    fmt_size(cap, sizeof(cap), reply_cap(s));
    snprintf(msg, sizeof(msg),
             paged ? "this page of %s is %s, more than --max-output-buffer %s: ask for smaller "
                     "pages with \"limit\""
                   : "%s is %s, more than --max-output-buffer %s: ask for pages with \"limit\" "
                     "and \"cursor\"",
             what, size, cap);
    alog_event(s->log, ALOG_WARN, "limit",
               json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:b}", "limit", "max_output_buffer",
                         "client", c->net.peer, "reply", what, "bytes", (json_int_t)bytes, "max",
                         (json_int_t)reply_cap(s), "answer", "too_large", "paged", paged));
    return put_error(s, b, RERR_TOO_LARGE, msg, request_id);
}

/* Where a page ends (exclusive) that starts at entry `start` of n, whose encodings sit
 * at off[0..n] (entry k runs from off[k] to off[k + 1] - 1, where a comma or the closing
 * ']' follows): at most limit entries and, past the first, at most budget bytes of
 * them. */
static size_t page_end(const size_t *off, size_t n, size_t start, size_t limit,
                       size_t budget) {
    size_t end = start;
    while (end < n && end - start < limit &&
           (end == start || off[end + 1] - 1 - off[start] <= budget))
        end++;
    return end;
}

/* Bytes left for a page's entries once `fixed` bytes of it are spoken for. */
static size_t page_budget(const line_server *s, size_t fixed) {
    uint64_t cap = reply_cap(s) < PAGE_BYTES ? reply_cap(s) : PAGE_BYTES;
    return cap > fixed ? (size_t)(cap - fixed) : 0;
}

/* Appends entries [start, end) of an encoding (off as for page_end), the closing ']',
 * ",\"next\":CURSOR" when end < n, and "}\n". */
static int put_page_rest(ubuf *b, const char *enc, const size_t *off, size_t n, size_t start,
                         size_t end, const char *next) {
    if (end > start && ubuf_add(b, enc + off[start], off[end] - 1 - off[start]) != 0)
        return -ENOMEM;
    if (ubuf_add(b, "]", 1) != 0)
        return -ENOMEM;
    /* Cursors are made of [a-z0-9._-] (proto.h): nothing to escape. */
    if (end < n && next != NULL &&
        (ubuf_add(b, ",\"next\":\"", 9) != 0 || ubuf_add(b, next, strlen(next)) != 0 ||
         ubuf_add(b, "\"", 1) != 0))
        return -ENOMEM;
    return ubuf_add(b, "}\n", 2);
}

/* Where a lookup page starts: right after the cursor's instance, looked for at the
 * cursor's index first (nothing moved before it) and then anywhere (instances before it
 * went). When it is no longer listed (deregistered, evicted, or no longer passing), at
 * the index it had: the instance that followed it has moved up into its place. Only if
 * instances before it went too between the two pages are that many skipped; none is
 * ever listed twice. */
static size_t lookup_resume(const lookup_set *set, const proto_page *pg) {
    size_t n = set->nlisted;
    if (pg->id[0] == '\0')
        return 0;
    if (pg->index < n && strcmp(set->listed[pg->index]->id, pg->id) == 0)
        return pg->index + 1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(set->listed[i]->id, pg->id) == 0)
            return i + 1;
    return pg->index < n ? pg->index : n;
}

/* A lookup: the set's encoding is built once and attached to the set, which the core
 * keeps (and drops, with it) by key and service generation; a page is a slice of it,
 * behind the same head (the instance handed out, round-robin). */
static int put_lookup(conn *c, ubuf *b, const reply *r, json_t *request_id,
                      const proto_page *pg) {
    line_server *s = c->s;
    lookup_set *set = r->set;
    line_answer *a = set->attach[s->attach_slot];
    if (a == NULL) {
        if ((a = answer_build(s, set)) == NULL)
            return put_error(s, b, RERR_INTERNAL, "out of memory", request_id);
        set->attach[s->attach_slot] = a;
    }
    size_t hlen = 0;
    const char *head = answer_head(s, a, set, r->pick, &hlen);
    if (head == NULL)
        return put_error(s, b, RERR_INTERNAL, "out of memory", request_id);
    size_t before = b->len;
    if (put_open(b, request_id) != 0)
        return -ENOMEM;
    size_t open = b->len - before;
    if (pg == NULL || !pg->on) {
        /* All of it: measured before it is copied. */
        uint64_t total = (uint64_t)open + hlen + a->tail_len;
        if (total > reply_cap(s)) {
            b->len = before;
            return put_too_large(c, b, r->svc->name, 0, total, request_id);
        }
        if (ubuf_add(b, head, hlen) != 0 || ubuf_add(b, a->tail, a->tail_len) != 0)
            return -ENOMEM;
        return 0;
    }
    size_t n = a->nlisted, start = lookup_resume(set, pg);
    size_t end = page_end(a->off, n, start, (size_t)pg->limit,
                          page_budget(s, open + hlen + 13 + 1 + NEXT_ROOM + 2));
    char next[PROTO_CURSOR_MAX];
    if (end > start)
        proto_lookup_cursor(end - 1, set->listed[end - 1]->id, next);
    else
        next[0] = '\0';
    if (ubuf_add(b, head, hlen) != 0 || ubuf_add(b, a->tail, 13) != 0 ||
        put_page_rest(b, a->tail, a->off, n, start, end, end > start ? next : NULL) != 0)
        return -ENOMEM;
    if (b->len - before > reply_cap(s)) {
        uint64_t total = b->len - before;
        b->len = before;
        return put_too_large(c, b, r->svc->name, 1, total, request_id);
    }
    return 0;
}

/* Encodes the list body ("\"ok\":true,\"services\":[...]}\n") into s->list_body, with
 * where each entry starts (s->list_off) and the services in name order (s->list_svcs). */
static int build_list(line_server *s) {
    static const char open[] = "\"ok\":true,\"services\":[";
    size_t n = 0;
    cat_service **svcs = cat_sorted_services(core_catalog(s->core), &n);
    size_t *off = svcs ? malloc((n + 1) * sizeof(*off)) : NULL;
    if (off == NULL) {
        free(svcs);
        return -1;
    }
    s->list_body.len = 0;
    if (ubuf_add(&s->list_body, open, sizeof(open) - 1) != 0)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        const cat_service *sv = svcs[i];
        size_t len = 0;
        json_t *o = json_pack("{s:s, s:s, s:I, s:I}", "service", sv->name, "description",
                              sv->latest->description, "instances", (json_int_t)sv->n,
                              "passing", (json_int_t)sv->passing);
        if (o != NULL && sv->maintenance > 0) /* like "ttl": only when there is any */
            json_object_set_new(o, "maintenance", json_integer((json_int_t)sv->maintenance));
        char *enc = encode(o, &len);
        int rc = enc == NULL || (i > 0 && ubuf_add(&s->list_body, ",", 1) != 0);
        off[i] = s->list_body.len;
        rc = rc || ubuf_add(&s->list_body, enc, len) != 0;
        free(enc);
        if (rc)
            goto fail;
    }
    if (ubuf_add(&s->list_body, "]}\n", 3) != 0)
        goto fail;
    off[n] = s->list_body.len - 2; /* just past the ']' */
    free(s->list_off);
    free(s->list_svcs);
    s->list_off = off;
    s->list_svcs = svcs;
    s->list_n = n;
    return 0;
fail:
    free(off);
    free(svcs);
    return -1;
}

/* The first service of a list page: the first name after the cursor's. */
static size_t list_resume(const line_server *s, const proto_page *pg) {
    size_t lo = 0, hi = s->list_n;
    if (pg->after == NULL)
        return 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(s->list_svcs[mid]->name, pg->after) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The list is encoded once per catalog generation: repeated lists of a large registry
 * cost a copy; a page is a slice of it. */
static int put_list(conn *c, ubuf *b, json_t *request_id, const proto_page *pg) {
    line_server *s = c->s;
    uint64_t gen = cat_generation(core_catalog(s->core));
    if (s->list_body.len == 0 || s->list_gen != gen) {
        if (build_list(s) != 0) {
            s->list_body.len = 0;
            return put_error(s, b, RERR_INTERNAL, "out of memory", request_id);
        }
        s->list_gen = gen;
    }
    size_t before = b->len;
    if (put_open(b, request_id) != 0)
        return -ENOMEM;
    size_t open = b->len - before;
    if (pg == NULL || !pg->on) {
        uint64_t total = (uint64_t)open + s->list_body.len;
        if (total > reply_cap(s)) {
            b->len = before;
            return put_too_large(c, b, NULL, 0, total, request_id);
        }
        return ubuf_add(b, s->list_body.p, s->list_body.len);
    }
    static const char head[] = "\"ok\":true,\"services\":[";
    size_t n = s->list_n, start = list_resume(s, pg);
    size_t end = page_end(s->list_off, n, start, (size_t)pg->limit,
                          page_budget(s, open + sizeof(head) - 1 + 1 + NEXT_ROOM + 2));
    if (ubuf_add(b, head, sizeof(head) - 1) != 0 ||
        put_page_rest(b, s->list_body.p, s->list_off, n, start, end,
                      end > start ? s->list_svcs[end - 1]->name : NULL) != 0)
        return -ENOMEM;
    if (b->len - before > reply_cap(s)) {
        uint64_t total = b->len - before;
        b->len = before;
        return put_too_large(c, b, NULL, 1, total, request_id);
    }
    return 0;
}

static void on_event(void *ud, const store_event *ev, json_t *obj);

/* A watcher follows the bus from now on (of service, or every service when NULL). */
static int conn_watch(conn *c, const char *service) {
    if (c->sub != NULL)
        unwatch(c);
    free(c->watch_service);
    c->watch_service = NULL;
    if (service != NULL && (c->watch_service = strdup(service)) == NULL)
        return -ENOMEM;
    if ((c->sub = bus_subscribe(core_bus(c->s->core), on_event, c)) == NULL)
        return -ENOMEM;
    c->net.long_lived = 1; /* exempt from --idle-timeout */
    c->s->nwatchers++;
    return 0;
}

/* The line protocol's figures in the core's stats (core_stats_add): the stats op and
 * /metrics show the same. */
static void add_stats(void *ud, json_t *stats) {
    line_server *s = ud;
    json_t *errors = json_object();
    for (int e = RERR_BAD_REQUEST; e <= RERR_INTERNAL; e++)
        json_object_set_new(errors, req_err_name((req_err)e),
                            json_integer((json_int_t)s->errors[e]));
    json_object_set_new(stats, "connections", json_integer((json_int_t)net_conns(s->net)));
    json_object_set_new(stats, "watchers", json_integer((json_int_t)s->nwatchers));
    json_object_set_new(stats, "requests", json_integer((json_int_t)s->requests));
    json_object_set_new(stats, "rejected_connections", json_integer((json_int_t)net_rejected(s->net)));
    json_object_set_new(stats, "errors", errors);
    /* {op: {result: n}} for what the core answered; errors[] also counts the requests
     * refused before they reached it (malformed, too long, ...). */
    json_t *ops = json_object();
    for (int op = 0; ops != NULL && op < OP__COUNT; op++) {
        json_t *res = NULL;
        for (int e = 0; e < RERR__COUNT; e++) {
            if (s->by_op[op][e] == 0)
                continue;
            if (res == NULL && (res = json_object()) == NULL)
                break;
            json_object_set_new(res, e == RERR_NONE ? "ok" : req_err_name((req_err)e),
                                json_integer((json_int_t)s->by_op[op][e]));
        }
        if (res != NULL)
            json_object_set_new(ops, req_op_name((req_op)op), res);
    }
    json_object_set_new(stats, "requests_by_op", ops);
}

static int put_stats(line_server *s, ubuf *b, json_t *stats, json_t *request_id) {
    (void)s;
    return put_json(b, stats, request_id);
}

/* Is s free of what a JSON string would escape (an id or a token always is)? */
static int safe_text(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\' || (unsigned char)*s >= 0x80)
            return 0;
    return 1;
}

/* Encodes the reply to one request of c into b (page: what a list or lookup asked for, or
 * NULL). */
static int put_reply(conn *c, ubuf *b, const reply *r, json_t *request_id,
                     const proto_page *page) {
    line_server *s = c->s;
    if ((unsigned)r->op < OP__COUNT && (unsigned)r->err < RERR__COUNT)
        s->by_op[r->op][r->err]++;
    if (r->err != RERR_NONE)
        return put_error(s, b, r->err, r->msg, request_id);
    json_t *o = NULL;
    int rc;
    switch (r->op) {
    case OP_LOOKUP:
        return put_lookup(c, b, r, request_id, page);
    case OP_LIST:
        return put_list(c, b, request_id, page);
    case OP_STATS:
        return put_stats(s, b, r->stats, request_id);
    case OP_REGISTER:
        if (request_id == NULL && safe_text(r->id) && safe_text(r->token)) {
            /* The common answer, written directly: jansson's pack and dump of these three
             * members were a tenth of a registration's instructions. */
            size_t il = strlen(r->id), tl = strlen(r->token);
            if (ubuf_reserve(b, il + tl + 40) != 0)
                return -ENOMEM;
            ubuf_add(b, "{\"ok\":true,\"id\":\"", 17);
            ubuf_add(b, r->id, il);
            ubuf_add(b, "\",\"token\":\"", 11);
            ubuf_add(b, r->token, tl);
            ubuf_add(b, "\"}\n", 3);
            return 0;
        }
        o = json_pack("{s:b, s:s, s:s}", "ok", 1, "id", r->id, "token", r->token);
        break;
    case OP_HEARTBEAT:
        o = json_pack("{s:b, s:i}", "ok", 1, "ttl", r->ttl);
        break;
    case OP_EVENTS:
        o = json_pack("{s:b, s:O}", "ok", 1, "events", r->events);
        break;
    case OP_MAINTENANCE:
        o = json_pack("{s:b, s:s, s:b}", "ok", 1, "id", r->id, "maintenance", r->maintenance);
        break;
    default: /* deregister, watch, ping */
        o = json_pack("{s:b}", "ok", 1);
        break;
    }
    if (o == NULL)
        return put_error(s, b, RERR_INTERNAL, "out of memory", request_id);
    rc = put_json(b, o, request_id);
    json_decref(o);
    return rc;
}

/* --- watchers ------------------------------------------------------------------------------ */

static void on_event(void *ud, const store_event *ev, json_t *obj) {
    conn *c = ud;
    line_server *s = c->s;
    if (c->watch_service && (ev->service == NULL || strcmp(ev->service, c->watch_service) != 0))
        return;
    if (s->ev_seq != ev->seq || s->ev_line.len == 0) { /* encoded once for every watcher */
        s->ev_line.len = 0;
        s->ev_seq = 0;
        if (put_json(&s->ev_line, obj, NULL) != 0) {
            s->ev_line.len = 0;
            return;
        }
        s->ev_seq = ev->seq;
    }
    net_write(&c->net, s->ev_line.p, s->ev_line.len);
}

/* --- requests: order and replies ------------------------------------------------------------ */

static void sync_done(waiter *w, const reply *r) {
    sync_waiter *sw = (sync_waiter *)w;
    conn *c = sw->c;
    if (!net_can_write(&c->net))
        return;
    if (r->op == OP_WATCH && r->err == RERR_NONE && conn_watch(c, sw->rq->service) != 0) {
        reply e = {.op = r->op, .err = RERR_INTERNAL, .msg = "out of memory"};
        sync_done(w, &e);
        return;
    }
    size_t before = c->net.out.len;
    if (put_reply(c, &c->net.out, r, sw->request_id, sw->page) != 0) {
        c->net.out.len = before;
        net_close(&c->net);
        return;
    }
    net_commit(&c->net, before);
}

static void resume(conn *c);

/* Sends the replies at the head of the queue that are ready, in order. Returns 1 when
 * the connection was freed with its last slot (the caller must not touch it). */
static int send_ready(conn *c) {
    while (c->slots != NULL && c->slots->done) {
        slot *sl = c->slots;
        c->slots = sl->next;
        if (c->slots == NULL)
            c->slots_tail = NULL;
        c->net.busy--;
        if (sl->out.len > 0)
            net_write(&c->net, sl->out.p, sl->out.len);
        free(sl->out.p);
        json_decref(sl->request_id);
        free(sl);
        if (net_unref(&c->net))
            return 1;
    }
    return 0;
}

static void slot_done(waiter *w, const reply *r) {
    slot *sl = (slot *)w;
    conn *c = sl->c;
    sl->done = 1;
    if (net_can_write(&c->net) && put_reply(c, &sl->out, r, sl->request_id, NULL) != 0)
        sl->out.len = 0;
    if (!c->processing && c->slots == sl && send_ready(c) == 0 && c->net.busy == 0)
        resume(c);
}

/* Every reply owed was sent: parse what waited, and read again. */
static void resume(conn *c) {
    if (c->net.closing || c->processing)
        return;
    if (c->net.paused) {
        c->net.paused = 0;
        process_input(c);
        if (!c->net.closing && !c->net.paused)
            net_read_resume(&c->net);
    }
    if (!c->net.closing && c->net.busy == 0 && (c->net.eof || c->net.close_after_flush))
        net_close_after_flush(&c->net);
}

/* Logs a bad request: only the first bytes, and only as an escaped string (the line may
 * be huge or binary). Nothing from where a shared secret could start ("auth", or any \u
 * escape that could spell it) is ever logged. */
static void log_bad_request(line_server *s, conn *c, req_err e, const char *msg, const char *line,
                            size_t len) {
    if (!alog_enabled(s->log, ALOG_WARN))
        return;
    char head[65];
    size_t n = len < 64 ? len : 64;
    const char *secret = memmem(line, len, "auth", 4);
    const char *esc = memmem(line, len, "\\u", 2);
    if (esc != NULL && (secret == NULL || esc < secret))
        secret = esc;
    if (secret != NULL && (size_t)(secret - line) < n)
        n = (size_t)(secret - line);
    for (size_t i = 0; i < n; i++)
        head[i] = (line[i] >= 0x20 && line[i] < 0x7f) ? line[i] : '.';
    head[n] = '\0';
    alog_event(s->log, ALOG_WARN, "bad_request",
               json_pack("{s:s, s:s, s:s, s:s}", "code", req_err_name(e), "message", msg,
                         "client", c->net.peer, "line", head));
}

static void handle_too_large(conn *c) {
    static const char msg[] = "request line longer than 65536 bytes";
    log_bad_request(c->s, c, RERR_TOO_LARGE, msg, c->net.in, 64);
    size_t before = c->net.out.len;
    if (put_error(c->s, &c->net.out, RERR_TOO_LARGE, "request line longer than 65536 bytes (the "
                                                 "limit, newline included); closing the "
                                                 "connection", NULL) == 0)
        net_commit(&c->net, before);
    c->net.in_len = 0;
    net_read_stop(&c->net);
    net_close_after_flush(&c->net);
}

/* Runs one decoded request. Returns 0 when it was run (answered, or its reply owed in a
 * slot), or 1 when it must wait for the replies owed before it. */
static int run_request(conn *c, proto_request *pr) {
    line_server *s = c->s;
    peer p = {c->net.peer, c->net.peer_ip, c->net.peer_hash, NULL};
    if (!ops_answers_later(s->core, pr->r.op)) {
        if (c->net.busy)
            return 1; /* a read sees every write before it */
        s->requests++;
        sync_waiter sw = {{sync_done}, c, &pr->r, pr->request_id, &pr->page};
        ops_run(s->core, &pr->r, &p, &sw.w);
        return 0;
    }
    slot *sl = calloc(1, sizeof(*sl));
    if (sl == NULL) {
        if (c->net.busy)
            return 1;
        s->requests++;
        reply e = {.op = pr->r.op, .err = RERR_INTERNAL, .msg = "out of memory"};
        sync_waiter sw = {{sync_done}, c, &pr->r, pr->request_id, &pr->page};
        sync_done(&sw.w, &e);
        return 0;
    }
    s->requests++;
    sl->w.done = slot_done;
    sl->c = c;
    sl->request_id = json_incref(pr->request_id);
    net_ref(&c->net);
    c->net.busy++;
    if (c->slots_tail)
        c->slots_tail->next = sl;
    else
        c->slots = sl;
    c->slots_tail = sl;
    ops_run(s->core, &pr->r, &p, &sl->w);
    return 0;
}

/* Parses and runs every complete line in the input buffer, in order, until the
 * connection must wait for replies owed. */
static void process_input(conn *c) {
    line_server *s = c->s;
    size_t pos = 0;
    /* A line arriving in small pieces: look only at the new bytes for its end, so a
     * byte-at-a-time client costs O(n), not O(n^2). */
    if (!c->net.paused && c->scanned > 0 && c->net.in_len < PROTO_MAX_LINE &&
        memchr(c->net.in + c->scanned, '\n', c->net.in_len - c->scanned) == NULL) {
        c->scanned = c->net.in_len;
        return;
    }
    c->scanned = 0;
    c->processing = 1;
    for (;;) {
        while (!c->net.closing && !c->net.close_after_flush && !c->net.paused) {
            char *start = c->net.in + pos;
            size_t len = 0;
            int f = proto_frame(start, c->net.in_len - pos, &len);
            if (f == PROTO_FRAME_MORE) {
                c->scanned = c->net.in_len - pos; /* after the compaction below */
                break;
            }
            if (f == PROTO_FRAME_TOO_LARGE) {
                if (c->net.busy) { /* its error must not overtake earlier replies */
                    c->net.paused = 1;
                    break;
                }
                c->processing = 0;
                handle_too_large(c);
                return;
            }
            proto_request pr;
            char msg[PROTO_MSG_LEN];
            req_err e = RERR_NONE;
            if (!proto_memo_get(s->memo, start, len, &pr)) {
                e = proto_decode(start, len, &pr, msg);
                if (e == RERR_NONE)
                    proto_memo_put(s->memo, start, len, &pr);
            }
            int wait = 0;
            if (e != RERR_NONE) {
                if (c->net.busy) {
                    wait = 1;
                } else {
                    s->requests++;
                    log_bad_request(s, c, e, msg, start, len);
                    size_t before = c->net.out.len;
                    if (put_error(s, &c->net.out, e, msg, pr.request_id) == 0)
                        net_commit(&c->net, before);
                }
            } else {
                wait = run_request(c, &pr);
            }
            proto_request_free(&pr);
            if (wait) {
                c->net.paused = 1;
                break;
            }
            pos += len + 1;
        }
        /* Writes answered while we parsed (refused before the store) go out now, and
         * what waited for them runs: in this loop, not by recursion, however many a
         * pipeline holds. The slots hold references, and a connection is freed only
         * from the loop, so c stays valid here. */
        send_ready(c);
        if (c->net.paused && c->net.busy == 0 && !c->net.closing && !c->net.close_after_flush) {
            c->net.paused = 0;
            continue;
        }
        break;
    }
    c->processing = 0;
    if (c->net.closing)
        return;
    net_consume(&c->net, pos);
    /* The request timeout times the oldest unfinished line: it starts when a partial
     * line is first left over, and again whenever a line completed and another partial
     * one remains (it began with this read, or waited while we paused the connection,
     * which is not the client's delay). A client that finishes
     * a line on every read is active, however long it pipelines; a slowloris never
     * finishes one, so its clock never starts over. */
    if (c->net.in_len == 0)
        c->net.partial_since = 0;
    else if (pos > 0 || c->net.partial_since == 0)
        c->net.partial_since = uv_now(c->net.tcp.loop);
    /* Paused with a full buffer: stop reading until the replies owed are out. */
    if (c->net.paused && c->net.in_len >= PROTO_MAX_LINE)
        net_read_stop(&c->net);
}

/* --- the server -------------------------------------------------------------------------- */

/* --- net's callbacks -------------------------------------------------------------------- */

static void on_open(net_conn *nc) {
    ((conn *)nc)->s = net_ud(nc->srv);
}

static void on_input(net_conn *nc) {
    process_input((conn *)nc);
}

static void on_close(net_conn *nc) {
    conn *c = (conn *)nc;
    unwatch(c);
    free(c->watch_service);
    c->watch_service = NULL;
}

static void on_overflow(net_conn *nc, ubuf *out) {
    conn *c = (conn *)nc;
    unwatch(c); /* no longer a subscriber, though its last line is still going out */
    put_error(c->s, out, RERR_UNAVAILABLE, "output buffer limit reached (the client is not "
                                           "reading); disconnecting", NULL);
}

static void on_reject(net_conn *nc, ubuf *out, const char *why) {
    line_server *s = net_ud(nc->srv);
    put_error(s, out, RERR_UNAVAILABLE, why, NULL);
}

/* --- the server -------------------------------------------------------------------------- */

void line_config_defaults(line_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->listen_host, sizeof(cfg->listen_host), "127.0.0.1");
    cfg->listen_port = LINE_DEFAULT_PORT;
    cfg->max_conns = 10000;
    cfg->max_output_buffer = 16ll << 20;
    cfg->idle_timeout_ms = 300000;
    cfg->request_timeout_ms = 10000;
}

int line_new(uv_loop_t *loop, const line_config *cfg, core *c, line_server **out, char *err,
             size_t errlen) {
    line_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        goto oom;
    s->cfg = *cfg;
    s->core = c;
    s->log = core_log(c);
    s->memo = proto_memo_new();
    s->encs = dict_new();
    if (s->memo == NULL || s->encs == NULL ||
        (s->removals = bus_subscribe_raw(core_bus(c), on_removal, s)) == NULL)
        goto oom;
    if ((s->attach_slot = core_lookup_attach(c, answer_free)) < 0 ||
        core_stats_add(c, add_stats, s) != 0) {
        snprintf(err, errlen, "too many front-ends for lookup encodings or stats");
        goto fail;
    }
    net_config nc = {.host = s->cfg.listen_host,
                     .port = cfg->listen_port,
                     .max_conns = cfg->max_conns,
                     .shared_conns = cfg->shared_conns,
                     .max_output_buffer = cfg->max_output_buffer,
                     .idle_timeout_ms = cfg->idle_timeout_ms,
                     .request_timeout_ms = cfg->request_timeout_ms};
    net_handler h = {.conn_size = sizeof(conn),
                     .max_input = IN_MAX,
                     .on_open = on_open,
                     .on_input = on_input,
                     .on_close = on_close,
                     .on_overflow = on_overflow,
                     .on_reject = on_reject,
                     .ud = s};
    if (net_new(loop, &nc, &h, s->log, &s->net, err, errlen) != 0)
        goto fail;
    *out = s;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    line_free(s);
    return -ENOMEM;
}

void line_free(line_server *s) {
    if (s == NULL)
        return;
    net_free(s->net);
    proto_memo_free(s->memo);
    bus_unsubscribe(s->removals); /* the core outlives its front-ends */
    if (s->encs) {
        size_t pos = 0;
        inst_enc *e;
        while ((e = dict_next(s->encs, &pos)) != NULL)
            enc_free(e);
        dict_free(s->encs);
    }
    free(s->list_body.p);
    free(s->list_off);
    free(s->list_svcs);
    free(s->ev_line.p);
    free(s);
}

int line_listen(line_server *s, char *bound, size_t len, char *err, size_t errlen) {
    return net_listen(s->net, bound, len, err, errlen);
}

void line_stop_accepting(line_server *s) {
    net_stop_accepting(s->net);
}

int line_busy(const line_server *s) {
    return net_busy(s->net);
}

uint64_t line_requests(const line_server *s) {
    return s->requests;
}

void line_close_all(line_server *s, uint64_t deadline_ms, void (*done)(void *ud), void *ud) {
    net_close_all(s->net, deadline_ms, done, ud);
}
