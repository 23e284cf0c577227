/* ops.c — what each request does. Reads (lookup, list, stats, ping, heartbeat) are
 * answered from the catalog at once; writes (register, deregister) are checked against
 * the catalog, then go to the writer and are acknowledged after their commit.
 *
 * ops_handle returns 0 (answered), 1 (answer after the commit) or 2 (the connection has
 * writes in flight and this answer would overtake them: try again once they are done).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "base/dict.h"
#include "base/util.h"

#define LOOKUP_CLIENTS_MAX 10000    /* distinct clients counted per service per summary */

/* --- auth ------------------------------------------------------------------------------ */

/* 0 when the request may proceed, else fills msg (never with the secret itself). */
static int auth_check(regd *d, const proto_request *req, char *msg, size_t len) {
    if (!d->has_auth)
        return 0;
    if (req->auth == NULL) {
        snprintf(msg, len, "this registry requires a shared secret: field \"auth\" is missing");
        return -1;
    }
    unsigned char h[32];
    if (util_sha256(req->auth, strlen(req->auth), h) != 0 || !util_ct_equal(h, d->auth_hash, 32)) {
        snprintf(msg, len, "wrong shared secret in field \"auth\"");
        return -1;
    }
    return 0;
}

/* --- register / deregister --------------------------------------------------------------- */

static void reply_store_error(pending *p, const char *what) {
    char msg[STORE_ERR_LEN + 64];
    switch (p->ch.rc) {
    case STORE_ENOTFOUND:
        snprintf(msg, sizeof(msg), "no instance with id \"%s\"", p->ch.inst.id);
        conn_reply_error(p->c, PERR_NOT_FOUND, msg, p->request_id);
        break;
    case STORE_EDENIED:
        snprintf(msg, sizeof(msg), "token does not match instance \"%s\"", p->ch.inst.id);
        conn_reply_error(p->c, PERR_UNAUTHORIZED, msg, p->request_id);
        break;
    default:
        snprintf(msg, sizeof(msg), "could not store the %s (database unavailable: %.200s); nothing "
                                   "was changed, retry later", what, p->job.err);
        conn_reply_error(p->c, PERR_UNAVAILABLE, msg, p->request_id);
    }
}

static void finish(pending *p) {
    conn_async_done(p->c);
    pending_free(p);
}

static void register_done(pending *p) {
    regd *d = p->d;
    if (p->ch.rc != 0) {
        alog_event(d->log, ALOG_ERROR, "store_failed",
                   json_pack("{s:s, s:s, s:s}", "op", "register", "error", p->job.err, "client",
                             p->client));
        reply_store_error(p, "registration");
        finish(p);
        return;
    }
    store_instance si = p->ch.inst;
    memcpy(si.id, p->ch.id_out, sizeof(si.id));
    cat_instance *in = NULL;
    int rc = cat_put(d->cat, &si, &in);
    if (rc != 0) {
        /* Durable but not in memory: it will be back after a restart. */
        alog_msg(d->log, ALOG_ERROR, "registration %s committed but not loaded: %s", si.id,
                 strerror(-rc));
        conn_reply_error(p->c, PERR_INTERNAL, "out of memory", p->request_id);
        finish(p);
        return;
    }
    health_track(d->health, in, 0);
    if (p->ch.has_event) {
        memcpy(p->ch.inst.id, p->ch.id_out, sizeof(p->ch.inst.id)); /* the event names the real id */
        events_publish(d, &p->ch.event, p->client, ALOG_INFO);
    }
    json_t *o = json_pack("{s:b, s:s, s:s}", "ok", 1, "id", in->id, "token", p->token);
    if (o != NULL)
        conn_reply(p->c, o, p->request_id);
    else
        conn_reply_error(p->c, PERR_INTERNAL, "out of memory", p->request_id);
    json_decref(o);
    finish(p);
}

static int op_register(regd *d, conn *c, proto_request *req, int busy) {
    char msg[256];
    proto_err e = PERR_NONE;
    const char *host = req->host ? req->host : conn_peer_ip(c);
    cat_instance *existing = cat_by_key(d->cat, req->service, host, req->port);
    cat_service *svc = cat_service_get(d->cat, req->service, strlen(req->service));
    if (auth_check(d, req, msg, sizeof(msg)) != 0) {
        e = PERR_UNAUTHORIZED;
    } else if (existing == NULL && (long long)cat_instances(d->cat) >= d->cfg.max_instances) {
        e = PERR_UNAVAILABLE;
        snprintf(msg, sizeof(msg), "registry is full (--max-instances %lld reached)",
                 d->cfg.max_instances);
    } else if (existing == NULL && svc != NULL &&
               (long long)svc->n >= d->cfg.max_instances_per_service) {
        e = PERR_UNAVAILABLE;
        snprintf(msg, sizeof(msg), "service \"%s\" is full (--max-instances-per-service %lld reached)",
                 req->service, d->cfg.max_instances_per_service);
    }
    if (e != PERR_NONE) {
        if (busy)
            return 2;
        if (e == PERR_UNAVAILABLE)
            alog_event(d->log, ALOG_WARN, "limit",
                       json_pack("{s:s, s:s, s:s}", "limit", "max_instances", "service",
                                 req->service, "client", conn_peer(c)));
        conn_reply_error(c, e, msg, req->request_id);
        return 0;
    }

    char *tags_json = req->tags ? json_dumps(req->tags, JSON_COMPACT) : strdup("[]");
    unsigned char idb[8], tokb[16];
    char candidate[STORE_ID_LEN + 1];
    pending *p = NULL;
    if (tags_json == NULL || util_random(idb, sizeof(idb)) != 0 ||
        util_random(tokb, sizeof(tokb)) != 0)
        goto oom;
    util_hex(idb, sizeof(idb), candidate);
    p = pending_new(d, STORE_PUT, existing ? "reregister" : "register", req->service,
                    existing ? existing->id : candidate, host, req->port, NULL);
    if (p == NULL || (p->description = strdup(req->description)) == NULL)
        goto oom;
    p->tags_json = tags_json;
    tags_json = NULL;
    util_hex(tokb, sizeof(tokb), p->token);
    if (util_sha256(p->token, strlen(p->token), p->ch.inst.token_hash) != 0)
        goto oom;
    int64_t now = util_now_ms();
    p->ch.inst.description = p->description;
    p->ch.inst.tags_json = p->tags_json;
    p->ch.inst.ttl = req->ttl;
    p->ch.inst.check = req->check == PROTO_CHECK_NONE ? STORE_CHECK_NONE : STORE_CHECK_TCP;
    p->ch.inst.registered_at = now;
    p->ch.inst.last_seen = now;
    p->ch.inst.status = STORE_PASSING;
    p->ch.durable = 1; /* acknowledged to the client */
    p->c = c;
    conn_ref(c);
    p->request_id = json_incref(req->request_id);
    snprintf(p->client, sizeof(p->client), "%s", conn_peer(c));
    p->done = register_done;
    pending_submit(p);
    return 1;
oom:
    free(tags_json);
    pending_free(p);
    if (busy)
        return 2;
    conn_reply_error(c, PERR_INTERNAL, "out of memory", req->request_id);
    return 0;
}

static void deregister_done(pending *p) {
    regd *d = p->d;
    if (p->ch.rc != 0) {
        reply_store_error(p, "deregistration");
        finish(p);
        return;
    }
    cat_instance *in = cat_by_id(d->cat, p->ch.inst.id);
    if (in != NULL) {
        health_forget(d->health, in);
        cat_remove(d->cat, in);
    }
    events_publish(d, &p->ch.event, p->client, ALOG_INFO);
    json_t *o = json_pack("{s:b}", "ok", 1);
    conn_reply(p->c, o, p->request_id);
    json_decref(o);
    finish(p);
}

/* Finds the instance of a deregister/heartbeat and checks its token. Returns the
 * instance, or NULL with *e and msg set. */
static cat_instance *owned_instance(regd *d, const proto_request *req, unsigned char hash[32],
                                    proto_err *e, char *msg, size_t len) {
    cat_instance *in = cat_by_id(d->cat, req->id);
    if (in == NULL) {
        *e = PERR_NOT_FOUND;
        snprintf(msg, len, "no instance with id \"%.64s\" (deregistered, evicted or expired)",
                 req->id);
        return NULL;
    }
    if (util_sha256(req->token, strlen(req->token), hash) != 0 ||
        !util_ct_equal(hash, in->token_hash, STORE_HASH_LEN)) {
        *e = PERR_UNAUTHORIZED;
        snprintf(msg, len, "token does not match instance \"%s\"", in->id);
        return NULL;
    }
    return in;
}

static int op_deregister(regd *d, conn *c, proto_request *req, int busy) {
    char msg[256];
    unsigned char hash[32];
    proto_err e = PERR_NONE;
    cat_instance *in = owned_instance(d, req, hash, &e, msg, sizeof(msg));
    if (in == NULL) {
        if (busy)
            return 2;
        conn_reply_error(c, e, msg, req->request_id);
        return 0;
    }
    pending *p = pending_new(d, STORE_DELETE, "deregister", in->svc->name, in->id, in->host,
                             in->port, NULL);
    if (p == NULL) {
        if (busy)
            return 2;
        conn_reply_error(c, PERR_INTERNAL, "out of memory", req->request_id);
        return 0;
    }
    p->ch.check_token = 1;
    p->ch.durable = 1; /* acknowledged to the client */
    memcpy(p->ch.inst.token_hash, hash, sizeof(hash));
    p->c = c;
    conn_ref(c);
    p->request_id = json_incref(req->request_id);
    snprintf(p->client, sizeof(p->client), "%s", conn_peer(c));
    p->done = deregister_done;
    pending_submit(p);
    return 1;
}

static int op_heartbeat(regd *d, conn *c, proto_request *req) {
    char msg[256];
    unsigned char hash[32];
    proto_err e = PERR_NONE;
    cat_instance *in = owned_instance(d, req, hash, &e, msg, sizeof(msg));
    if (in == NULL) {
        conn_reply_error(c, e, msg, req->request_id);
        return 0;
    }
    health_heartbeat(d->health, in);
    json_t *o = json_pack("{s:b, s:i}", "ok", 1, "ttl", in->ttl);
    conn_reply(c, o, req->request_id);
    json_decref(o);
    return 0;
}

/* --- lookup ------------------------------------------------------------------------------ */

/* Builds the answer for (svc, tag, all) from the instances' pre-encoded fragments (no
 * JSON encoding here). NULL when nothing matches (or out of memory: *oom set). */
static cache_answer *build_answer(cat_service *svc, const char *key, size_t key_len,
                                  const char *tag, int all, int *oom) {
    cache_answer *a = calloc(1, sizeof(*a));
    ubuf tail = {0};
    *oom = 1;
    if (a == NULL || (a->cands = malloc(svc->n * sizeof(*a->cands))) == NULL ||
        (tail.p = malloc(tail.cap = 256 + 320 * svc->n)) == NULL ||
        ubuf_add(&tail, "\"instances\":[", 13) != 0)
        goto fail;
    size_t listed = 0;
    for (size_t i = 0; i < svc->n; i++) {
        cat_instance *in = svc->inst[i];
        if ((tag && !cat_has_tag(in, tag)) || (!all && in->status != STORE_PASSING))
            continue;
        size_t flen;
        const char *frag = cat_instance_frag(in, &flen);
        if (frag == NULL || (listed > 0 && ubuf_add(&tail, ",", 1) != 0) ||
            ubuf_add(&tail, frag, flen) != 0)
            goto fail;
        listed++;
        if (in->status == STORE_PASSING)
            a->cands[a->n++] = in;
    }
    if (listed == 0) {
        *oom = 0;
        goto fail;
    }
    if (a->n == 0) { /* "all" and none passing: rotate among all that are listed */
        for (size_t i = 0; i < svc->n; i++)
            if (!tag || cat_has_tag(svc->inst[i], tag))
                a->cands[a->n++] = svc->inst[i];
    }
    if (ubuf_add(&tail, "]}\n", 3) != 0 || (a->key = malloc(key_len)) == NULL)
        goto fail;
    memcpy(a->key, key, key_len);
    a->key_len = key_len;
    a->gen = svc->gen;
    a->tail = tail.p;
    a->tail_len = tail.len;
    return a;
fail:
    free(tail.p);
    cache_answer_free(a);
    return NULL;
}

/* --- lookup summary counters ------------------------------------------------------------- */

/* Lookups of one service since the last summary: a count and the distinct clients (a
 * small open-addressing set of the hashes of their IPs, capped). */
typedef struct lookup_count {
    char *service;              /* owned; the dict key */
    uint64_t count;
    uint64_t *clients;          /* owned set of IP hashes, 0 = empty slot */
    size_t nclients, cap;
} lookup_count;

static void lookup_count_free(lookup_count *lc) {
    free(lc->service);
    free(lc->clients);
    free(lc);
}

static void add_client(lookup_count *lc, uint64_t h) {
    if (lc->nclients >= LOOKUP_CLIENTS_MAX)
        return;
    if ((lc->nclients + 1) * 2 > lc->cap) {
        size_t ncap = lc->cap ? lc->cap * 2 : 8;
        uint64_t *ns = calloc(ncap, sizeof(*ns));
        if (ns == NULL)
            return;
        for (size_t i = 0; i < lc->cap; i++) {
            if (lc->clients[i] == 0)
                continue;
            size_t j = lc->clients[i] & (ncap - 1);
            while (ns[j] != 0)
                j = (j + 1) & (ncap - 1);
            ns[j] = lc->clients[i];
        }
        free(lc->clients);
        lc->clients = ns;
        lc->cap = ncap;
    }
    size_t j = h & (lc->cap - 1);
    while (lc->clients[j] != 0) {
        if (lc->clients[j] == h)
            return;
        j = (j + 1) & (lc->cap - 1);
    }
    lc->clients[j] = h;
    lc->nclients++;
}

static void count_lookup(regd *d, conn *c, const char *service, size_t slen,
                         const cat_instance *in) {
    if (d->cfg.log_lookups) {
        if (alog_enabled(d->log, ALOG_INFO))
            alog_event(d->log, ALOG_INFO, "lookup",
                       json_pack("{s:s, s:s, s:s, s:i, s:s}", "service", service, "id", in->id,
                                 "host", in->host, "port", in->port, "client", conn_peer(c)));
        return;
    }
    lookup_count *lc = dict_get(d->lookup_counts, service, slen);
    if (lc == NULL) {
        lc = calloc(1, sizeof(*lc));
        if (lc == NULL || (lc->service = strdup(service)) == NULL ||
            dict_put(d->lookup_counts, lc->service, slen, lc) != 0) {
            if (lc)
                lookup_count_free(lc);
            return;
        }
    }
    lc->count++;
    add_client(lc, conn_peer_hash(c));
}

void ops_log_lookup_summary(regd *d) {
    if (dict_size(d->lookup_counts) == 0)
        return;
    size_t pos = 0;
    lookup_count *lc;
    while ((lc = dict_next(d->lookup_counts, &pos)) != NULL) {
        alog_event(d->log, ALOG_INFO, "lookup",
                   json_pack("{s:s, s:I, s:I, s:s}", "service", lc->service, "count",
                             (json_int_t)lc->count, "clients", (json_int_t)lc->nclients,
                             "summary", "interval"));
    }
    ops_lookup_counts_clear(d);
}

void ops_lookup_counts_clear(regd *d) {
    size_t pos = 0;
    lookup_count *lc;
    dict *fresh = dict_new();
    if (fresh == NULL)
        return; /* keep counting into the old one */
    while ((lc = dict_next(d->lookup_counts, &pos)) != NULL)
        lookup_count_free(lc);
    dict_free(d->lookup_counts);
    d->lookup_counts = fresh;
}

/* Writes the opening of a pre-encoded answer: "{" and, when the request had one,
 * "\"request_id\":ID,". The caller writes the members and the closing "}\n". */
static int write_open(conn *c, json_t *request_id) {
    char prefix[512];
    size_t plen = 1;
    prefix[0] = '{';
    if (request_id != NULL) {
        size_t n = json_dumpb(request_id, prefix + 14, sizeof(prefix) - 16,
                              JSON_COMPACT | JSON_ENCODE_ANY);
        if (n > 0 && n < sizeof(prefix) - 16) {
            memcpy(prefix + 1, "\"request_id\":", 13);
            plen = 14 + n;
            prefix[plen++] = ',';
        }
    }
    return conn_write(c, prefix, plen);
}

static int op_lookup(regd *d, conn *c, proto_request *req) {
    char msg[256];
    size_t slen = strlen(req->service);
    cat_service *svc = cat_service_get(d->cat, req->service, slen);
    if (svc == NULL) {
        snprintf(msg, sizeof(msg), "no service named \"%s\" is registered", req->service);
        conn_reply_error(c, PERR_NOT_FOUND, msg, req->request_id);
        return 0;
    }
    char key[PROTO_SERVICE_MAX + PROTO_TAG_MAX + 8];
    size_t tlen = req->tag ? strlen(req->tag) : 0;
    memcpy(key, req->service, slen);
    key[slen] = '\0';
    if (tlen)
        memcpy(key + slen + 1, req->tag, tlen);
    key[slen + 1 + tlen] = '\0';
    key[slen + 2 + tlen] = req->all ? '1' : '0';
    size_t key_len = slen + 3 + tlen;

    cache_answer *a = cache_get(d->cache, key, key_len, svc->gen);
    int cached = 1;
    if (a == NULL) {
        int oom = 0;
        a = build_answer(svc, key, key_len, req->tag, req->all, &oom);
        if (a == NULL) {
            if (oom)
                conn_reply_error(c, PERR_INTERNAL, "out of memory", req->request_id);
            else if (req->tag)
                snprintf(msg, sizeof(msg), "service \"%s\" has no %sinstance with tag \"%s\"",
                         req->service, req->all ? "" : "passing ", req->tag);
            else
                snprintf(msg, sizeof(msg), "service \"%s\" has no passing instance", req->service);
            if (!oom)
                conn_reply_error(c, PERR_NOT_FOUND, msg, req->request_id);
            return 0;
        }
        cached = cache_admit(d->cache, key, key_len) && cache_put(d->cache, a);
    }
    size_t pick = (size_t)(svc->rr++ % a->n), hlen = 0;
    const char *head = cat_instance_head(a->cands[pick], &hlen);
    if (head == NULL) {
        conn_reply_error(c, PERR_INTERNAL, "out of memory", req->request_id);
    } else {
        if (write_open(c, req->request_id) == 0 && conn_write(c, head, hlen) == 0)
            conn_write(c, a->tail, a->tail_len);
        count_lookup(d, c, req->service, slen, a->cands[pick]);
    }
    if (!cached)
        cache_answer_free(a);
    return 0;
}

/* --- list, stats, events, watch ------------------------------------------------------------- */

/* Encodes the list body ("\"ok\":true,\"services\":[...]}\n") into d->list_body. */
static int build_list(regd *d) {
    size_t n = 0;
    cat_service **svcs = cat_sorted_services(d->cat, &n);
    json_t *arr = json_array();
    int rc = -1;
    if (svcs == NULL || arr == NULL)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const cat_service *s = svcs[i];
        const cat_instance *latest = s->inst[0];
        for (size_t k = 1; k < s->n; k++)
            if (s->inst[k]->registered_at >= latest->registered_at)
                latest = s->inst[k];
        if (json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:I}", "service", s->name,
                                                 "description", latest->description, "instances",
                                                 (json_int_t)s->n, "passing",
                                                 (json_int_t)s->passing)) != 0)
            goto out;
    }
    char *enc = json_dumps(arr, JSON_COMPACT);
    if (enc == NULL)
        goto out;
    d->list_body.len = 0;
    static const char open[] = "\"ok\":true,\"services\":";
    rc = ubuf_add(&d->list_body, open, sizeof(open) - 1) ||
                 ubuf_add(&d->list_body, enc, strlen(enc)) || ubuf_add(&d->list_body, "}\n", 2)
             ? -1
             : 0;
    free(enc);
out:
    free(svcs);
    json_decref(arr);
    return rc;
}

/* The list is encoded once per catalog generation: repeated lists of a large registry
 * cost a copy, not an encoding of every service on the loop. */
static int op_list(regd *d, conn *c, proto_request *req) {
    uint64_t gen = cat_generation(d->cat);
    if (d->list_body.len == 0 || d->list_gen != gen) {
        if (build_list(d) != 0) {
            d->list_body.len = 0;
            conn_reply_error(c, PERR_INTERNAL, "out of memory", req->request_id);
            return 0;
        }
        d->list_gen = gen;
    }
    if (write_open(c, req->request_id) == 0)
        conn_write(c, d->list_body.p, d->list_body.len);
    return 0;
}

json_t *ops_stats(regd *d) {
    cache_stats cs;
    writer_stats ws;
    cache_get_stats(d->cache, &cs);
    writer_get_stats(d->writer, &ws);
    json_t *errors = json_object();
    for (int e = PERR_BAD_REQUEST; e <= PERR_INTERNAL; e++)
        json_object_set_new(errors, proto_err_code((proto_err)e), json_integer((json_int_t)d->errors[e]));
    json_t *o = json_pack(
        "{s:b, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o,"
        " s:{s:I, s:I, s:I, s:I, s:I},"
        " s:{s:I, s:I, s:I, s:I, s:I}}",
        "ok", 1, "version", REGISTRY_VERSION, "uptime_s",
        (json_int_t)((util_now_ms() - d->started_ms) / 1000), "connections", (json_int_t)d->nconns,
        "watchers", (json_int_t)d->nwatchers, "requests", (json_int_t)d->requests, "services",
        (json_int_t)cat_services(d->cat), "instances", (json_int_t)cat_instances(d->cat),
        "rejected_connections", (json_int_t)d->rejected_conns, "errors", errors, "cache", "hits",
        (json_int_t)cs.hits, "misses", (json_int_t)cs.misses, "entries", (json_int_t)cs.entries,
        "capacity", (json_int_t)cs.capacity, "evictions", (json_int_t)cs.evictions, "store",
        "commits", (json_int_t)ws.commits, "changes", (json_int_t)ws.changes, "failures",
        (json_int_t)ws.failures, "queued", (json_int_t)ws.queued, "max_batch",
        (json_int_t)ws.max_batch);
    if (o != NULL) {
        health_stats(d->health, o);
        json_object_set_new(o, "log_dropped", json_integer((json_int_t)alog_dropped(d->log)));
    }
    return o;
}

static void events_done(wjob *job) {
    pending *p = job->ud;
    if (job->rc != 0 || job->events == NULL) {
        char msg[STORE_ERR_LEN + 64];
        snprintf(msg, sizeof(msg), "could not read events: %s", job->err);
        conn_reply_error(p->c, PERR_UNAVAILABLE, msg, p->request_id);
    } else {
        json_t *o = json_pack("{s:b, s:O}", "ok", 1, "events", job->events);
        conn_reply(p->c, o, p->request_id);
        json_decref(o);
    }
    json_decref(job->events);
    finish(p);
}

static int op_events(regd *d, conn *c, proto_request *req, int busy) {
    pending *p = pending_new(d, STORE_EVENT_ONLY, NULL, req->service, NULL, NULL, 0, NULL);
    if (p == NULL) {
        if (busy)
            return 2;
        conn_reply_error(c, PERR_INTERNAL, "out of memory", req->request_id);
        return 0;
    }
    p->c = c;
    conn_ref(c);
    p->request_id = json_incref(req->request_id);
    p->job.kind = WJOB_EVENTS;
    p->job.since = req->since;
    p->job.limit = req->limit;
    p->job.service = p->service;
    p->job.done = events_done;
    p->job.ud = p;
    writer_submit(d->writer, &p->job);
    return 1;
}

static int op_watch(regd *d, conn *c, proto_request *req) {
    if (conn_watch(c, req->service) != 0) {
        conn_reply_error(c, PERR_INTERNAL, "out of memory", req->request_id);
        return 0;
    }
    json_t *o = json_pack("{s:b}", "ok", 1);
    conn_reply(c, o, req->request_id);
    json_decref(o);
    return 0;
}

static int reply_ok(conn *c, json_t *o, json_t *request_id) {
    if (o == NULL)
        return conn_reply_error(c, PERR_INTERNAL, "out of memory", request_id), 0;
    conn_reply(c, o, request_id);
    json_decref(o);
    return 0;
}

int ops_handle(regd *d, conn *c, proto_request *req, int busy) {
    /* --auth-lookups: every read needs the secret too (register checks it itself). */
    if (d->cfg.auth_lookups && (req->op == OP_LOOKUP || req->op == OP_LIST ||
                                req->op == OP_EVENTS || req->op == OP_WATCH)) {
        char msg[256];
        if (auth_check(d, req, msg, sizeof(msg)) != 0) {
            if (busy)
                return 2;
            conn_reply_error(c, PERR_UNAUTHORIZED, msg, req->request_id);
            return 0;
        }
    }
    switch (req->op) {
    case OP_REGISTER:
        return op_register(d, c, req, busy);
    case OP_DEREGISTER:
        return op_deregister(d, c, req, busy);
    case OP_EVENTS:
        return op_events(d, c, req, busy);
    default:
        break;
    }
    if (busy)
        return 2;
    switch (req->op) {
    case OP_HEARTBEAT:
        return op_heartbeat(d, c, req);
    case OP_LOOKUP:
        return op_lookup(d, c, req);
    case OP_LIST:
        return op_list(d, c, req);
    case OP_WATCH:
        return op_watch(d, c, req);
    case OP_STATS:
        return reply_ok(c, ops_stats(d), req->request_id);
    case OP_PING:
    default:
        return reply_ok(c, json_pack("{s:b}", "ok", 1), req->request_id);
    }
}

void ops_bad_request(regd *d, conn *c, proto_err e, const char *msg, const char *line,
                     size_t len) {
    if (!alog_enabled(d->log, ALOG_WARN))
        return;
    /* Only the first bytes, and only as an escaped string: the line may be huge or binary.
     * Nothing from where a shared secret could start ("auth", or any \u escape that could
     * spell it) is ever logged. */
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
    alog_event(d->log, ALOG_WARN, "bad_request",
               json_pack("{s:s, s:s, s:s, s:s}", "code", proto_err_code(e), "message", msg,
                         "client", conn_peer(c), "line", head));
}
