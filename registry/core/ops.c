/* SPDX-License-Identifier: BSD-2-Clause */
/* ops.c — what each request means. Reads (lookup, list, stats, ping, heartbeat, watch)
 * are answered from the catalog at once; writes (register, deregister, maintenance) are checked
 * against the catalog, go to the write pipeline and are answered after their commit,
 * once apply has put them in the catalog; an events query runs on the writer after the
 * writes before it.
 */
#include "core/ops.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cidr.h"
#include "base/dict.h"
#include "base/util.h"
#include "core/apply.h"
#include "core/internal.h"
#include "core/pipeline.h"
#include "core/limits.h"
#include "core/usage.h"

int ops_is_write(req_op op) {
    return op == OP_REGISTER || op == OP_DEREGISTER || op == OP_EVENTS || op == OP_MAINTENANCE;
}

int ops_answers_later(const core *c, req_op op) {
    return ops_is_write(op) || (op == OP_HEARTBEAT && c->shared);
}

static void answer(waiter *w, req_op op, req_err e, const char *msg) {
    reply r = {.op = op, .err = e, .msg = msg};
    w->done(w, &r);
}

/* --- auth ------------------------------------------------------------------------------ */

/* 0 when the request may proceed, else fills msg (never with the secret itself). */
static int auth_check(core *c, const request *rq, char *msg, size_t len) {
    if (!c->cfg.has_auth)
        return 0;
    if (rq->auth == NULL) {
        snprintf(msg, len, "this registry requires a shared secret: field \"auth\" is missing");
        return -1;
    }
    unsigned char h[32];
    if (util_sha256(rq->auth, strlen(rq->auth), h) != 0 || !util_ct_equal(h, c->cfg.auth_hash, 32)) {
        snprintf(msg, len, "wrong shared secret in field \"auth\"");
        return -1;
    }
    return 0;
}

/* Is ip (text, no port) a loopback address: 127.0.0.0/8, ::1, or ::ffff:127.x.x.x? */
static int is_loopback(const char *ip) {
    unsigned char a[16];
    static const unsigned char v6lo[16] = {[15] = 1};
    static const unsigned char mapped[12] = {[10] = 0xff, [11] = 0xff};
    if (ip == NULL)
        return 0;
    if (inet_pton(AF_INET, ip, a) == 1)
        return a[0] == 127;
    if (inet_pton(AF_INET6, ip, a) != 1)
        return 0;
    return memcmp(a, v6lo, 16) == 0 || (memcmp(a, mapped, 12) == 0 && a[12] == 127);
}

/* An operator's request (a forced deregister, maintenance): it acts on someone else's
 * instance without its token, so it needs the shared secret when the registry has one,
 * and else must come from this machine (a loopback peer): whoever can reach the registry
 * from elsewhere is not, by that alone, its operator. 0, or -1 with msg filled. */
static int operator_check(core *c, const request *rq, const peer *pr, const char *what,
                          char *msg, size_t len) {
    if (c->cfg.has_auth)
        return auth_check(c, rq, msg, len);
    if (is_loopback(pr->ip))
        return 0;
    snprintf(msg, len, "%s is an operator's request: this registry has no shared secret "
                       "(--auth-token-file), so only a client on its own host (loopback) "
                       "may send it",
             what);
    return -1;
}

/* --- register / deregister --------------------------------------------------------------- */

/* The ownership rule: registering an existing (service, host, port) again replaces its
 * fields and its token, so it is allowed only to whoever could have registered it:
 * a request carrying the instance's current token, a request from the instance's own
 * host (a restarted service that lost its token) or from the client that registered it
 * (while this registryd runs: the registrant's address is not stored), or an operator's
 * "admin" request authorised by the shared secret. The secret alone admits a client to register; it
 * does not make it the owner of someone else's instance. 0, or -1 with msg filled. */
static int owner_check(core *c, const request *rq, const peer *pr, const cat_instance *in,
                       char *msg, size_t len) {
    unsigned char h[32];
    if (rq->token != NULL && util_sha256(rq->token, strlen(rq->token), h) == 0 &&
        util_ct_equal(h, in->token_hash, STORE_HASH_LEN))
        return 0;
    if (strcmp(in->host, pr->ip) == 0)
        return 0;
    if (in->owner != NULL && strcmp(in->owner, pr->ip) == 0)
        return 0; /* the client that registered it (Consul clients re-register by ID) */
    if (rq->admin && c->cfg.has_auth) /* the secret itself was checked before */
        return 0;
    snprintf(msg, len,
             "instance %s of \"%.63s\" at %.100s:%d belongs to another owner: registering it "
             "again needs its current token (field \"token\"), a request from %.100s itself, or "
             "\"admin\":true with the shared secret%s",
             in->id, in->svc->name, in->host, in->port, in->host,
             c->cfg.has_auth ? "" : " (this registry has none: --auth-token-file)");
    return -1;
}

static void answer_store_error(pending *p, req_op op, const char *what) {
    char msg[STORE_ERR_LEN + 64];
    req_err e = RERR_UNAVAILABLE;
    switch (p->ch.rc) {
    case STORE_ENOTFOUND:
        e = RERR_NOT_FOUND;
        snprintf(msg, sizeof(msg), "no instance with id \"%s\"", p->ch.inst.id);
        break;
    case -EEXIST: /* two registrations raced for one chosen id */
        e = RERR_CONFLICT;
        snprintf(msg, sizeof(msg), "instance id \"%s\" was taken by another registration",
                 p->ch.inst.id);
        break;
    case STORE_EDENIED:
        e = RERR_UNAUTHORIZED;
        snprintf(msg, sizeof(msg), "token does not match instance \"%s\"", p->ch.inst.id);
        break;
    default:
        if (p->core->shared) /* a commit whose answer did not come may still land */
            snprintf(msg, sizeof(msg), "could not store the %s (%.200s); it is in doubt (it may"
                     " still be applied): retry later", what, p->job.err);
        else
            snprintf(msg, sizeof(msg), "could not store the %s (database unavailable: %.200s);"
                     " nothing was changed, retry later", what, p->job.err);
    }
    answer(p->w, op, e, msg);
}

static void register_done(pending *p) {
    core *c = p->core;
    limits_release(c, p);
    if (p->ch.rc != 0) {
        alog_event(c->log, ALOG_ERROR, "store_failed",
                   json_pack("{s:s, s:s, s:s}", "op", "register", "error", p->job.err, "client",
                             p->client));
        answer_store_error(p, OP_REGISTER, "registration");
        pending_free(p);
        return;
    }
    int rc = apply_change(c, &p->ch, p->client, p->owner, ALOG_INFO);
    if (rc != 0) {
        /* Durable but not in memory: it will be back after a restart. */
        alog_msg(c->log, ALOG_ERROR, "registration %s committed but not loaded: %s", p->ch.id_out,
                 strerror(-rc));
        answer(p->w, OP_REGISTER, RERR_INTERNAL, "out of memory");
    } else {
        reply r = {.op = OP_REGISTER, .id = p->ch.id_out, .token = p->token};
        p->w->done(p->w, &r);
    }
    pending_free(p);
}

/* A tcp-checked registration must name a target the operator lets the checker probe
 * (an IP literal here; a hostname's addresses are checked when it is resolved). */
static int target_allowed(core *c, const char *host, char *msg, size_t len) {
    const cidr *why = NULL;
    if (cidr_allowed_text(&c->cfg.check_rule, host, &why) != 0)
        return 1;
    char list[256];
    if (why == NULL)
        cidr_list_text(&c->cfg.check_rule.allow, list, sizeof(list));
    snprintf(msg, len, "host %s is not a health check target this registry may probe (%s %s); "
                       "register it with \"check\":\"none\", or ask the operator",
             host, why ? "--check-deny" : "not in --check-allow", why ? why->text : list);
    return 0;
}

static void op_register(core *c, const request *rq, const peer *pr, waiter *w) {
    char msg[640];
    req_err e = RERR_NONE;
    const char *host = rq->host ? rq->host : pr->ip;
    cat_instance *existing = cat_by_key(c->cat, rq->service, host, rq->port);
    cat_instance *named = rq->want_id ? cat_by_id(c->cat, rq->want_id) : NULL;
    size_t ntags = rq->tags ? json_array_size(rq->tags) : 0, tags_len = 2;
    for (size_t i = 0; i < ntags; i++)
        tags_len += json_string_length(json_array_get(rq->tags, i)) + 3;
    size_t bytes = cat_estimate(strlen(rq->service), strlen(host), strlen(rq->description),
                                tags_len, ntags);
    if (auth_check(c, rq, msg, sizeof(msg)) != 0) {
        e = RERR_UNAUTHORIZED;
    } else if (rq->want_id && named != existing) {
        /* One id names one (service, host, port): moving an id, or giving an address a
         * second id, is a deregistration first. */
        e = RERR_CONFLICT;
        if (named != NULL)
            snprintf(msg, sizeof(msg), "instance id \"%s\" is registered as %.63s at %.100s:%d; "
                     "deregister it before registering it elsewhere", named->id, named->svc->name,
                     named->host, named->port);
        else
            snprintf(msg, sizeof(msg), "%.63s at %.100s:%d is already registered as instance \"%s\"",
                     rq->service, host, rq->port, existing->id);
    } else if (existing != NULL && owner_check(c, rq, pr, existing, msg, sizeof(msg)) != 0) {
        e = RERR_CONFLICT;
        alog_event(c->log, ALOG_WARN, "conflict",
                   json_pack("{s:s, s:s, s:s, s:i, s:s}", "service", rq->service, "id",
                             existing->id, "host", existing->host, "port", existing->port,
                             "client", pr->addr));
    } else if (rq->check != REQ_CHECK_NONE && !target_allowed(c, host, msg, sizeof(msg))) {
        e = RERR_BAD_REQUEST;
    } else {
        e = limits_admit(c, rq, pr, existing, bytes, msg, sizeof(msg));
    }
    if (e != RERR_NONE) {
        answer(w, OP_REGISTER, e, msg);
        return;
    }

    char *tags_json = rq->tags ? json_dumps(rq->tags, JSON_COMPACT) : strdup("[]");
    unsigned char idb[8], tokb[16];
    char candidate[STORE_ID_MAX + 1];
    pending *p = NULL;
    if (tags_json == NULL || util_random(idb, sizeof(idb)) != 0 ||
        util_random(tokb, sizeof(tokb)) != 0)
        goto oom;
    if (rq->want_id)
        snprintf(candidate, sizeof(candidate), "%s", rq->want_id);
    else
        util_hex(idb, sizeof(idb), candidate);
    p = pending_new(c, STORE_PUT, existing ? "reregister" : "register", rq->service,
                    existing ? existing->id : candidate, host, rq->port, NULL);
    if (p == NULL || (p->description = strdup(rq->description)) == NULL)
        goto oom;
    p->tags_json = tags_json;
    tags_json = NULL;
    util_hex(tokb, sizeof(tokb), p->token);
    if (util_sha256(p->token, strlen(p->token), p->ch.inst.token_hash) != 0)
        goto oom;
    int64_t now = util_now_ms();
    p->ch.inst.description = p->description;
    p->ch.inst.tags_json = p->tags_json;
    p->ch.inst.ttl = rq->ttl;
    p->ch.inst.check = rq->check == REQ_CHECK_NONE ? STORE_CHECK_NONE : STORE_CHECK_TCP;
    p->ch.inst.registered_at = now;
    p->ch.inst.last_seen = now;
    p->ch.inst.status = STORE_PASSING;
    p->ch.durable = 1; /* acknowledged to the client */
    p->w = w;
    snprintf(p->client, sizeof(p->client), "%s", pr->addr);
    snprintf(p->owner, sizeof(p->owner), "%s", pr->ip);
    if (existing == NULL && limits_reserve(c, p, bytes) != 0)
        goto oom;
    p->done = register_done;
    pending_submit(p);
    return;
oom:
    free(tags_json);
    pending_free(p);
    answer(w, OP_REGISTER, RERR_INTERNAL, "out of memory");
}

static void deregister_done(pending *p) {
    if (p->ch.rc != 0) {
        answer_store_error(p, OP_DEREGISTER, "deregistration");
    } else {
        apply_change(p->core, &p->ch, p->client, NULL, ALOG_INFO);
        answer(p->w, OP_DEREGISTER, RERR_NONE, NULL);
    }
    pending_free(p);
}

/* Finds the instance of a deregister/heartbeat and checks its token, or with
 * rq->by_standing who asks: the client that registered it, its own host, or the shared
 * secret. Returns the instance, or NULL with *e and msg set. */
static cat_instance *owned_instance(core *c, const request *rq, const peer *pr,
                                    unsigned char hash[32], req_err *e, char *msg, size_t len) {
    cat_instance *in = cat_by_id(c->cat, rq->id);
    if (in == NULL) {
        *e = RERR_NOT_FOUND;
        snprintf(msg, len, "no instance with id \"%.64s\" (deregistered, evicted or expired)",
                 rq->id);
        return NULL;
    }
    if (rq->by_standing) {
        unsigned char h[32];
        if ((in->owner != NULL && strcmp(in->owner, pr->ip) == 0) || strcmp(in->host, pr->ip) == 0)
            return in;
        if (c->cfg.has_auth && rq->auth != NULL &&
            util_sha256(rq->auth, strlen(rq->auth), h) == 0 && util_ct_equal(h, c->cfg.auth_hash, 32))
            return in;
        *e = RERR_UNAUTHORIZED;
        snprintf(msg, len, "instance \"%s\" was registered by another client: only %.64s, its "
                           "host %.100s or a request with the shared secret may change it",
                 in->id, in->owner ? in->owner : in->host, in->host);
        return NULL;
    }
    if (rq->token == NULL || util_sha256(rq->token, strlen(rq->token), hash) != 0 ||
        !util_ct_equal(hash, in->token_hash, STORE_HASH_LEN)) {
        *e = RERR_UNAUTHORIZED;
        snprintf(msg, len, "token does not match instance \"%s\"", in->id);
        return NULL;
    }
    return in;
}

/* Finds the instance an operator's request (force, maintenance) names, after checking
 * who asks. Returns it, or NULL with *e and msg set. */
static cat_instance *operated_instance(core *c, const request *rq, const peer *pr,
                                       const char *what, req_err *e, char *msg, size_t len) {
    cat_instance *in;
    if (operator_check(c, rq, pr, what, msg, len) != 0) {
        *e = RERR_UNAUTHORIZED;
        alog_event(c->log, ALOG_WARN, "refused",
                   json_pack("{s:s, s:s, s:s}", "op", what, "id", rq->id, "client", pr->addr));
        return NULL;
    }
    if ((in = cat_by_id(c->cat, rq->id)) == NULL) {
        *e = RERR_NOT_FOUND;
        snprintf(msg, len, "no instance with id \"%.64s\" (deregistered, evicted or expired)",
                 rq->id);
    }
    return in;
}

static void op_deregister(core *c, const request *rq, const peer *pr, waiter *w) {
    char msg[400];
    unsigned char hash[32];
    req_err e = RERR_NONE;
    cat_instance *in = rq->force
                           ? operated_instance(c, rq, pr, "a forced deregister", &e, msg, sizeof(msg))
                           : owned_instance(c, rq, pr, hash, &e, msg, sizeof(msg));
    if (in == NULL) {
        answer(w, OP_DEREGISTER, e, msg);
        return;
    }
    pending *p = pending_new(c, STORE_DELETE, "deregister", in->svc->name, in->id, in->host,
                             in->port, rq->force ? json_pack("{s:b}", "forced", 1) : NULL);
    if (p == NULL) {
        answer(w, OP_DEREGISTER, RERR_INTERNAL, "out of memory");
        return;
    }
    /* Forced: whatever its token now (the owner lost it, or re-registered meanwhile). */
    p->ch.check_token = !rq->force && !rq->by_standing;
    p->ch.durable = 1; /* acknowledged to the client */
    if (p->ch.check_token)
        memcpy(p->ch.inst.token_hash, hash, sizeof(hash));
    p->w = w;
    snprintf(p->client, sizeof(p->client), "%s", pr->addr);
    p->done = deregister_done;
    pending_submit(p);
}

static void maintenance_done(pending *p) {
    if (p->ch.rc != 0) {
        answer_store_error(p, OP_MAINTENANCE, "maintenance change");
    } else {
        apply_change(p->core, &p->ch, p->client, NULL, ALOG_WARN);
        reply r = {.op = OP_MAINTENANCE, .id = p->ch.inst.id, .maintenance = p->ch.inst.maintenance};
        p->w->done(p->w, &r);
    }
    pending_free(p);
}

/* Takes an instance out of service or puts it back: it stays registered (and checked),
 * lookups skip it, health neither evicts nor expires it. Stored, so a restart keeps it;
 * asking for the state it is already in changes (and records) nothing. */
static void op_maintenance(core *c, const request *rq, const peer *pr, waiter *w) {
    char msg[320];
    req_err e = RERR_NONE;
    cat_instance *in = operated_instance(c, rq, pr, "maintenance", &e, msg, sizeof(msg));
    if (in == NULL) {
        answer(w, OP_MAINTENANCE, e, msg);
        return;
    }
    if (in->maintenance == (rq->enable != 0)) {
        reply r = {.op = OP_MAINTENANCE, .id = in->id, .maintenance = in->maintenance};
        w->done(w, &r);
        return;
    }
    json_t *detail = rq->reason ? json_pack("{s:s}", "reason", rq->reason) : NULL;
    pending *p = pending_new(c, STORE_MAINTENANCE, rq->enable ? "maintenance_on" : "maintenance_off",
                             in->svc->name, in->id, in->host, in->port, detail);
    if (p == NULL) {
        answer(w, OP_MAINTENANCE, RERR_INTERNAL, "out of memory");
        return;
    }
    p->ch.inst.maintenance = rq->enable != 0;
    p->ch.durable = 1; /* acknowledged to the client */
    p->w = w;
    snprintf(p->client, sizeof(p->client), "%s", pr->addr);
    p->done = maintenance_done;
    pending_submit(p);
}

/* A heartbeat on a shared store: the instance's TTL is its lease there, so the heartbeat
 * is a keepalive of that lease, answered once the store renewed it. */
typedef struct renewal {
    core *c;
    waiter *w;
    char id[STORE_ID_MAX + 1];
} renewal;

static void renewed(void *ud, int rc, const char *err) {
    renewal *rn = ud;
    core *c = rn->c;
    char msg[STORE_ERR_LEN + 96];
    cat_instance *in = cat_by_id(c->cat, rn->id);
    if (rc == 0 && in != NULL) {
        apply_heartbeat(c, in);
        reply r = {.op = OP_HEARTBEAT, .ttl = in->ttl};
        rn->w->done(rn->w, &r);
    } else if (rc == 0 || rc == STORE_ENOTFOUND) {
        snprintf(msg, sizeof(msg), "no instance with id \"%.64s\" (its TTL ran out: register"
                 " again)", rn->id);
        answer(rn->w, OP_HEARTBEAT, RERR_NOT_FOUND, msg);
    } else {
        snprintf(msg, sizeof(msg), "could not renew the TTL of \"%.64s\" (%.200s); retry",
                 rn->id, err ? err : "store unavailable");
        answer(rn->w, OP_HEARTBEAT, RERR_UNAVAILABLE, msg);
    }
    free(rn);
}

static void renew_heartbeat(core *c, cat_instance *in, waiter *w) {
    renewal *rn = calloc(1, sizeof(*rn));
    if (rn == NULL) {
        answer(w, OP_HEARTBEAT, RERR_INTERNAL, "out of memory");
        return;
    }
    rn->c = c;
    rn->w = w;
    snprintf(rn->id, sizeof(rn->id), "%s", in->id);
    if (c->store->be->renew(c->store, in->lease, renewed, rn) != 0) {
        free(rn);
        answer(w, OP_HEARTBEAT, RERR_UNAVAILABLE, "could not renew the TTL: the store is"
               " stopping or out of memory; retry");
    }
}

static void op_heartbeat(core *c, const request *rq, const peer *pr, waiter *w) {
    char msg[400];
    unsigned char hash[32];
    req_err e = RERR_NONE;
    cat_instance *in = owned_instance(c, rq, pr, hash, &e, msg, sizeof(msg));
    if (in == NULL) {
        answer(w, OP_HEARTBEAT, e, msg);
        return;
    }
    if (c->shared && in->ttl > 0 && in->lease > 0) {
        renew_heartbeat(c, in, w);
        return;
    }
    apply_heartbeat(c, in);
    reply r = {.op = OP_HEARTBEAT, .ttl = in->ttl};
    w->done(w, &r);
}

/* --- lookup ------------------------------------------------------------------------------- */

static void op_lookup(core *c, const request *rq, const peer *pr, waiter *w) {
    char msg[256];
    size_t slen = strlen(rq->service);
    uint64_t h = dict_hash(rq->service, slen); /* one hash for the catalog and the log */
    cat_service *svc = cat_service_get_h(c->cat, rq->service, slen, h);
    if (svc == NULL) {
        snprintf(msg, sizeof(msg), "no service named \"%s\" is registered", rq->service);
        answer(w, OP_LOOKUP, RERR_NOT_FOUND, msg);
        return;
    }
    char key[LOOKUP_KEY_MAX];
    size_t key_len = lookup_key(rq->service, rq->tag, rq->all, key);
    lookup_set *set = (lookup_set *)cache_get(c->sets, key, key_len, svc->gen);
    int cached = 1;
    if (set == NULL) {
        int oom = 0;
        set = lookup_build(svc, key, key_len, rq->tag, rq->all, &c->kinds, &oom);
        if (set == NULL) {
            if (oom)
                snprintf(msg, sizeof(msg), "out of memory");
            else if (rq->tag)
                snprintf(msg, sizeof(msg), "service \"%s\" has no %sinstance with tag \"%s\"",
                         rq->service, rq->all ? "" : "passing ", rq->tag);
            else
                snprintf(msg, sizeof(msg), "service \"%s\" has no passing instance", rq->service);
            answer(w, OP_LOOKUP, oom ? RERR_INTERNAL : RERR_NOT_FOUND, msg);
            return;
        }
        cached = cache_admit(c->sets, key, key_len) && cache_put(c->sets, &set->base);
    }
    reply r = {.op = OP_LOOKUP, .svc = svc, .set = set, .pick = (size_t)(svc->rr++ % set->ncands)};
    usage_lookup(c, pr->addr, pr->ip_hash, pr->via, rq->service, slen, h, set->cands[r.pick]);
    w->done(w, &r);
    if (!cached)
        cache_entry_free(&set->base);
}

/* --- events, stats, the rest ---------------------------------------------------------------- */

static void events_done(wjob *job) {
    pending *p = job->ud;
    if (job->rc != 0 || job->events == NULL) {
        char msg[STORE_ERR_LEN + 64];
        snprintf(msg, sizeof(msg), "could not read events: %s", job->err);
        answer(p->w, OP_EVENTS, RERR_UNAVAILABLE, msg);
    } else {
        reply r = {.op = OP_EVENTS, .events = job->events};
        p->w->done(p->w, &r);
    }
    json_decref(job->events);
    pending_free(p);
}

static void op_events(core *c, const request *rq, waiter *w) {
    pending *p = pending_new(c, STORE_EVENT_ONLY, NULL, rq->service, NULL, NULL, 0, NULL);
    if (p == NULL) {
        answer(w, OP_EVENTS, RERR_INTERNAL, "out of memory");
        return;
    }
    p->w = w;
    p->job.kind = WJOB_EVENTS;
    p->job.since = rq->since;
    p->job.limit = rq->limit;
    p->job.tail = rq->tail;
    p->job.before = rq->before;
    p->job.service = p->service;
    p->job.done = events_done;
    p->job.ud = p;
    writer_submit(c->writer, &p->job);
}

static void op_stats(core *c, waiter *w) {
    json_t *o = core_stats(c);
    if (o == NULL) {
        answer(w, OP_STATS, RERR_INTERNAL, "out of memory");
        return;
    }
    reply r = {.op = OP_STATS, .stats = o};
    w->done(w, &r);
    json_decref(o);
}

void ops_run(core *c, const request *rq, const peer *pr, waiter *w) {
    /* --auth-lookups: every read needs the secret too (register checks it itself). */
    if (c->cfg.auth_lookups && (rq->op == OP_LOOKUP || rq->op == OP_LIST ||
                                rq->op == OP_EVENTS || rq->op == OP_WATCH)) {
        char msg[256];
        if (auth_check(c, rq, msg, sizeof(msg)) != 0) {
            answer(w, rq->op, RERR_UNAUTHORIZED, msg);
            return;
        }
    }
    switch (rq->op) {
    case OP_REGISTER:
        op_register(c, rq, pr, w);
        break;
    case OP_DEREGISTER:
        op_deregister(c, rq, pr, w);
        break;
    case OP_EVENTS:
        op_events(c, rq, w);
        break;
    case OP_MAINTENANCE:
        op_maintenance(c, rq, pr, w);
        break;
    case OP_HEARTBEAT:
        op_heartbeat(c, rq, pr, w);
        break;
    case OP_LOOKUP:
        /* One lookup in LOOKUP_SAMPLE is timed: two clock reads and a histogram update on
         * every lookup were 6% of a cached lookup's instructions (tests/bench/instr.sh). */
    {
        int timed = (++c->lookup_tick & (LOOKUP_SAMPLE - 1)) == 0;
        uint64_t t0 = timed ? uv_hrtime() : 0;
        op_lookup(c, rq, pr, w); /* one call site: inlined */
        if (timed)
            hist_add(&c->lookup_seconds, (double)(uv_hrtime() - t0) / 1e9);
        break;
    }
    case OP_STATS:
        op_stats(c, w);
        break;
    case OP_LIST:  /* the front-end encodes the catalog's services (core_catalog) */
    case OP_WATCH: /* the front-end subscribes to the bus */
    case OP_PING:
    default:
        answer(w, rq->op, RERR_NONE, NULL);
        break;
    }
}
