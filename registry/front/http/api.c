/* SPDX-License-Identifier: BSD-2-Clause */
/* api.c — what each HTTP path means: Consul's API (field names as Consul spells them),
 * the registry's own /api/, Prometheus service discovery, /metrics. Reads render the
 * catalog directly; writes become requests to the core (ops_run), so the ownership rule,
 * the limits and durability are those of every other front-end.
 *
 * The X-Consul-Index of a service is the seq of the last lifecycle event about it (a
 * register, deregister, check verdict, eviction, ...): never 0, never going backwards,
 * persistent across restarts as seqs are. A service no event named since start has the
 * seq of the start; a service not registered has the catalog's index, the newest seq. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "front/http/internal.h"
#include "front/http/ui.h"
#include "store/store.h"

/* --- helpers ---------------------------------------------------------------------------- */

int api_duration(const char *s, uint64_t *ms) {
    double total = 0;
    if (*s == '\0')
        return -1;
    while (*s) {
        char *end;
        double v = strtod(s, &end);
        if (end == s || v < 0)
            return -1;
        s = end;
        double unit;
        if (strncmp(s, "ns", 2) == 0)
            unit = 1e-6, s += 2;
        else if (strncmp(s, "us", 2) == 0)
            unit = 1e-3, s += 2;
        else if (strncmp(s, "\xc2\xb5s", 3) == 0)
            unit = 1e-3, s += 3;
        else if (strncmp(s, "ms", 2) == 0)
            unit = 1, s += 2;
        else if (*s == 's')
            unit = 1000, s += 1;
        else if (*s == 'm')
            unit = 60000, s += 1;
        else if (*s == 'h')
            unit = 3600000, s += 1;
        else
            return -1;
        total += v * unit;
        if (total > 1e12)
            return -1;
    }
    *ms = (uint64_t)total;
    return 0;
}

uint64_t api_global_index(const http_server *s) {
    return s->seq ? s->seq : 1;
}

uint64_t api_index(const http_server *s, const char *service) {
    size_t len = strlen(service);
    svc_index *x = dict_get(s->index, service, len);
    if (x != NULL)
        return x->seq;
    if (cat_service_get(core_catalog(s->core), service, len) != NULL)
        return s->base_seq ? s->base_seq : 1;
    return api_global_index(s);
}

/* Is name a query parameter (with any value)? */
static int has_flag(const http_req *rq, const char *name) {
    return hreq_query(rq, name) != NULL;
}

/* Does the instance carry every tag= of the request? */
static int tags_match(const http_req *rq, const cat_instance *in) {
    for (size_t i = 0; i < rq->nq; i++)
        if (strcmp(rq->qk[i], "tag") == 0 && !cat_has_tag(in, rq->qv[i]))
            return 0;
    return 1;
}

static int is_critical(const cat_instance *in) {
    return in->status != STORE_PASSING || in->maintenance;
}

static const char *check_type(const cat_instance *in) {
    if (in->check == STORE_CHECK_TCP)
        return "tcp";
    return in->ttl > 0 ? "ttl" : "";
}

static json_t *check_json(const http_server *s, const cat_instance *in, uint64_t idx) {
    char id[STORE_ID_MAX + 16], name[128], out[512];
    snprintf(id, sizeof(id), "service:%s", in->id);
    snprintf(name, sizeof(name), "Service '%s' check", in->svc->name);
    if (in->maintenance)
        snprintf(out, sizeof(out), "in maintenance (regctl maintenance %s off)", in->id);
    else if (in->check == STORE_CHECK_TCP)
        snprintf(out, sizeof(out), "TCP connect %s:%d: %s", in->host, in->port,
                 in->status == STORE_PASSING ? "Success" : "failed");
    else if (in->ttl > 0)
        snprintf(out, sizeof(out), "%s", in->status == STORE_PASSING ? "TTL check passing"
                                                                      : "TTL expired");
    else
        out[0] = '\0';
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:O, s:s, s:I, s:I}", "Node",
                     s->cfg.node_name, "CheckID", id, "Name", name, "Status",
                     is_critical(in) ? "critical" : "passing", "Notes", "", "Output", out,
                     "ServiceID", in->id, "ServiceName", in->svc->name, "ServiceTags", in->tags,
                     "Type", check_type(in), "CreateIndex", (json_int_t)idx, "ModifyIndex",
                     (json_int_t)idx);
}

static json_t *meta_json(const cat_instance *in) {
    json_t *m = json_object();
    if (m != NULL && in->description[0])
        json_object_set_new(m, "description", json_string(in->description));
    return m;
}

static json_t *catalog_entry(const http_server *s, const cat_instance *in, uint64_t idx) {
    return json_pack("{s:s, s:s, s:s, s:s, s:{}, s:{}, s:s, s:s, s:s, s:O, s:s, s:{s:i, s:i}, "
                     "s:o, s:i, s:b, s:I, s:I}",
                     "ID", "", "Node", s->cfg.node_name, "Address", in->host, "Datacenter",
                     s->cfg.datacenter, "TaggedAddresses", "NodeMeta", "ServiceKind", "",
                     "ServiceID", in->id, "ServiceName", in->svc->name, "ServiceTags", in->tags,
                     "ServiceAddress", in->host, "ServiceWeights", "Passing", 1, "Warning", 1,
                     "ServiceMeta", meta_json(in), "ServicePort", in->port,
                     "ServiceEnableTagOverride", 0, "CreateIndex", (json_int_t)idx,
                     "ModifyIndex", (json_int_t)idx);
}

static json_t *health_entry(const http_server *s, const cat_instance *in, uint64_t idx) {
    return json_pack(
        "{s:{s:s, s:s, s:s, s:s, s:{}, s:{}, s:I, s:I}, "
        "s:{s:s, s:s, s:O, s:s, s:o, s:i, s:{s:i, s:i}, s:b, s:I, s:I}, s:[o]}",
        "Node", "ID", "", "Node", s->cfg.node_name, "Address", in->host, "Datacenter",
        s->cfg.datacenter, "TaggedAddresses", "Meta", "CreateIndex", (json_int_t)idx,
        "ModifyIndex", (json_int_t)idx, "Service", "ID", in->id, "Service", in->svc->name, "Tags",
        in->tags, "Address", in->host, "Meta", meta_json(in), "Port", in->port, "Weights",
        "Passing", 1, "Warning", 1, "EnableTagOverride", 0, "CreateIndex", (json_int_t)idx,
        "ModifyIndex", (json_int_t)idx, "Checks", check_json(s, in, idx));
}

/* The union of a service's tags, in first-seen order. New reference. */
static json_t *service_tags(const cat_service *svc) {
    json_t *all = json_array();
    for (size_t i = 0; all != NULL && i < svc->n; i++) {
        size_t j;
        json_t *t;
        json_array_foreach(svc->inst[i]->tags, j, t) {
            size_t k;
            json_t *u;
            int seen = 0;
            json_array_foreach(all, k, u) if (json_equal(t, u)) {
                seen = 1;
                break;
            }
            if (!seen)
                json_array_append(all, t);
        }
    }
    return all;
}

/* --- encoded answers, kept ------------------------------------------------------------------ */

/* A read's encoded body, valid while what it was built from holds: the catalog's (or
 * the service's) generation and the index it shows. Building a Consul health entry
 * with jansson costs ~160,000 instructions a request; a kept body costs a copy. */
typedef struct body_entry {
    cache_entry ce;
    uint64_t index;
    size_t len;
    char body[];
} body_entry;

static void body_free(cache_entry *e) {
    free(e->key);
    free(e);
}

/* Serves key's kept body into resp if it was built at (gen, index): 1, else 0. */
static int kept_body(http_server *s, const ubuf *key, uint64_t gen, uint64_t index,
                     http_resp *resp) {
    if (key->len == 0)
        return 0;
    body_entry *b = (body_entry *)cache_get(s->answers, key->p, key->len, gen);
    if (b == NULL || b->index != index)
        return 0;
    resp->status = 200;
    resp->index = index;
    return ubuf_add(&resp->body, b->body, b->len) == 0;
}

/* Keeps resp's body for key at (gen, index). Out of memory: not kept. */
static void keep_body(http_server *s, const ubuf *key, uint64_t gen, uint64_t index,
                      const http_resp *resp) {
    if (key->len == 0 || resp->status != 200)
        return;
    body_entry *b = malloc(sizeof(*b) + resp->body.len);
    char *k = malloc(key->len);
    if (b == NULL || k == NULL) {
        free(b);
        free(k);
        return;
    }
    memcpy(k, key->p, key->len);
    memcpy(b->body, resp->body.p ? resp->body.p : "", resp->body.len);
    b->len = resp->body.len;
    b->index = index;
    b->ce = (cache_entry){.key = k, .key_len = key->len, .gen = gen, .free_fn = body_free};
    if (!cache_put(s->answers, &b->ce))
        cache_entry_free(&b->ce);
}

/* The key of a read: its route, its name and every query parameter that changes the
 * answer, in order (index, wait and stale do not). Empty (not kept) when too long. */
static void answer_key(ubuf *key, int route, const char *name, const http_req *rq) {
    char r = (char)('A' + route);
    ubuf_add(key, &r, 1);
    ubuf_add(key, name, strlen(name) + 1);
    for (size_t i = 0; i < rq->nq; i++) {
        const char *k = rq->qk[i];
        if (strcmp(k, "index") == 0 || strcmp(k, "wait") == 0 || strcmp(k, "stale") == 0 ||
            strcmp(k, "token") == 0 || strcmp(k, "dc") == 0 || strcmp(k, "consistent") == 0)
            continue;
        ubuf_add(key, k, strlen(k) + 1);
        ubuf_add(key, rq->qv[i], strlen(rq->qv[i]) + 1);
    }
    if (key->len > 1024)
        key->len = 0;
}

/* A read whose encoded body may be kept: its key and what it is built from. */
typedef struct kept_read {
    ubuf key;
    uint64_t gen, idx;
} kept_read;

/* Starts a read of route (name, rq) built from (gen, idx): 1 when a kept body answered
 * it (resp filled), else 0: build the document, then kept_finish. */
static int kept_start(http_server *s, kept_read *k, int route, const char *name,
                      const http_req *rq, uint64_t gen, uint64_t idx, http_resp *resp) {
    *k = (kept_read){.gen = gen, .idx = idx};
    answer_key(&k->key, route, name, rq);
    if (!kept_body(s, &k->key, gen, idx, resp))
        return 0;
    free(k->key.p);
    return 1;
}

/* Answers with doc (stolen), keeps its body when k has a key. API_DONE. */
static int kept_finish(http_server *s, kept_read *k, json_t *doc, http_resp *resp) {
    resp->index = k->idx;
    api_json(resp, 200, doc);
    keep_body(s, &k->key, k->gen, k->idx, resp);
    free(k->key.p);
    return API_DONE;
}

/* --- blocking queries ------------------------------------------------------------------- */

/* With ?index=N (N > 0) and an index not past N: how long to wait. 1 (block,
 * call->want and call->wait_ms set), 0 (answer now: also when call->answer_now) or -1 (a
 * bad parameter, resp filled). */
static int wants_block(const http_req *rq, uint64_t now, api_call *call, http_resp *resp) {
    const char *idx = hreq_query(rq, "index");
    if (idx == NULL || idx[0] == '\0')
        return 0;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(idx, &end, 10);
    if (errno != 0 || *end != '\0' || idx[0] == '-') {
        api_error(resp, 400, "query parameter \"index\" must be a non-negative integer");
        return -1;
    }
    uint64_t wait = HTTP_WAIT_DEFAULT_MS;
    const char *w = hreq_query(rq, "wait");
    if (w != NULL && w[0] != '\0' && api_duration(w, &wait) != 0) {
        api_error(resp, 400, "query parameter \"wait\" must be a duration such as 30s, 5m or "
                             "120000ms");
        return -1;
    }
    if (wait > HTTP_WAIT_MAX_MS)
        wait = HTTP_WAIT_MAX_MS;
    if (n == 0 || now > n || call->answer_now)
        return 0;
    call->want = n;
    call->wait_ms = wait;
    return 1;
}

/* --- reads --------------------------------------------------------------------------------- */

static int agent_self(http_server *s, http_resp *resp) {
    char addr[300];
    snprintf(addr, sizeof(addr), "%s", s->cfg.host);
    json_t *doc = json_pack(
        "{s:{s:s, s:s, s:s, s:b, s:s, s:s, s:s}, s:{}, s:{}, s:{s:s, s:s, s:i, s:{}, s:i}, "
        "s:{s:{s:s}}, s:{}}",
        "Config", "Datacenter", s->cfg.datacenter, "NodeName", s->cfg.node_name, "NodeID", "",
        "Server", 1, "Revision", "", "Version", "1.15.0", "RegistryVersion", REGISTRY_VERSION,
        "DebugConfig", "Coord", "Member", "Name", s->cfg.node_name, "Addr", addr, "Port",
        s->cfg.port, "Tags", "Status", 1, "Stats", "registry", "version", REGISTRY_VERSION, "Meta");
    api_json(resp, 200, doc);
    return API_DONE;
}

static int catalog_services(http_server *s, const http_req *rq, http_resp *resp, api_call *call) {
    uint64_t idx = api_global_index(s);
    int b = wants_block(rq, idx, call, resp);
    if (b != 0)
        return b > 0 ? API_BLOCK : API_DONE;
    kept_read k;
    if (kept_start(s, &k, R_CATALOG_SERVICES, "", rq, cat_generation(core_catalog(s->core)), idx,
                   resp))
        return API_DONE;
    size_t n;
    cat_service **all = cat_sorted_services(core_catalog(s->core), &n);
    json_t *doc = json_object();
    for (size_t i = 0; doc != NULL && all != NULL && i < n; i++)
        json_object_set_new(doc, all[i]->name, service_tags(all[i]));
    free(all);
    if (all == NULL && n > 0) {
        json_decref(doc);
        doc = NULL;
    }
    return kept_finish(s, &k, doc, resp);
}

/* /v1/catalog/service/<name> and /v1/health/service/<name>: the same instances, in the
 * same (registration) order. */
static int service_entries(http_server *s, const http_req *rq, const char *name, int health,
                           http_resp *resp, api_call *call) {
    if (name[0] == '\0') {
        api_error(resp, 400, "missing service name: %s/NAME",
                  health ? "/v1/health/service" : "/v1/catalog/service");
        return API_DONE;
    }
    uint64_t idx = api_index(s, name);
    int b = wants_block(rq, idx, call, resp);
    if (b != 0) {
        call->service = name;
        return b > 0 ? API_BLOCK : API_DONE;
    }
    const cat_service *svc = cat_service_get(core_catalog(s->core), name, strlen(name));
    kept_read k = {.idx = idx}; /* an unknown service: nothing kept */
    if (svc != NULL && kept_start(s, &k, health ? R_HEALTH_SERVICE : R_CATALOG_SERVICE, name, rq,
                                  svc->gen, idx, resp))
        return API_DONE;
    json_t *doc = json_array();
    int passing = health && has_flag(rq, "passing") &&
                  strcmp(hreq_query(rq, "passing"), "false") != 0 &&
                  strcmp(hreq_query(rq, "passing"), "0") != 0;
    for (size_t i = 0; doc != NULL && svc != NULL && i < svc->n; i++) {
        const cat_instance *in = svc->inst[i];
        if (!tags_match(rq, in) || (passing && is_critical(in)))
            continue;
        json_array_append_new(doc, health ? health_entry(s, in, idx) : catalog_entry(s, in, idx));
    }
    return kept_finish(s, &k, doc, resp);
}

static int health_state(http_server *s, const http_req *rq, const char *state, http_resp *resp,
                        api_call *call) {
    int want; /* 0 any, 1 passing, 2 critical, 3 warning (none here) */
    if (strcmp(state, "any") == 0)
        want = 0;
    else if (strcmp(state, "passing") == 0)
        want = 1;
    else if (strcmp(state, "critical") == 0)
        want = 2;
    else if (strcmp(state, "warning") == 0)
        want = 3;
    else {
        api_error(resp, 400, "unknown check state \"%.64s\": any, passing, warning or critical",
                  state);
        return API_DONE;
    }
    uint64_t idx = api_global_index(s);
    int b = wants_block(rq, idx, call, resp);
    if (b != 0)
        return b > 0 ? API_BLOCK : API_DONE;
    json_t *doc = json_array();
    const catalog *cat = core_catalog(s->core);
    size_t pos = 0;
    cat_instance *in;
    while (doc != NULL && want != 3 && (in = cat_next_instance(cat, &pos)) != NULL) {
        if ((want == 1 && is_critical(in)) || (want == 2 && !is_critical(in)))
            continue;
        json_array_append_new(doc, check_json(s, in, api_index(s, in->svc->name)));
    }
    resp->index = idx;
    api_json(resp, 200, doc);
    return API_DONE;
}

static int api_services(http_server *s, const http_req *rq, http_resp *resp) {
    /* Every service's figures: 130-180 ms of the loop for 10,000 services, so the body is
     * kept for the catalog's generation and the newest event (what it shows moves only
     * with them). */
    kept_read k;
    if (kept_start(s, &k, R_API_SERVICES, "", rq, cat_generation(core_catalog(s->core)),
                   api_global_index(s), resp))
        return API_DONE;
    size_t n;
    cat_service **all = cat_sorted_services(core_catalog(s->core), &n);
    json_t *doc = json_array();
    for (size_t i = 0; doc != NULL && all != NULL && i < n; i++) {
        const cat_service *svc = all[i];
        size_t maint = svc->maintenance; /* passing counts what lookups hand out */
        json_array_append_new(
            doc, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:o, s:I}", "name", svc->name,
                           "description", svc->latest ? svc->latest->description : "", "instances",
                           (json_int_t)svc->n, "passing", (json_int_t)svc->passing, "critical",
                           (json_int_t)(svc->n - svc->passing - maint), "maintenance",
                           (json_int_t)maint,
                           "tags", service_tags(svc), "index",
                           (json_int_t)api_index(s, svc->name)));
    }
    free(all);
    return kept_finish(s, &k, doc, resp);
}

static int api_service(http_server *s, const char *name, http_resp *resp) {
    const cat_service *svc = cat_service_get(core_catalog(s->core), name, strlen(name));
    if (svc == NULL) {
        resp->index = api_global_index(s);
        api_error(resp, 404, "no service named \"%.64s\" is registered", name);
        return API_DONE;
    }
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < svc->n; i++)
        json_array_append_new(list, cat_instance_json(svc->inst[i]));
    resp->index = api_index(s, name);
    api_json(resp, 200,
             json_pack("{s:s, s:s, s:o}", "service", svc->name, "description",
                       svc->latest ? svc->latest->description : "", "instances", list));
    return API_DONE;
}

static int prometheus_sd(http_server *s, const http_req *rq, http_resp *resp) {
    kept_read k;
    if (kept_start(s, &k, R_PROM_SD, "", rq, cat_generation(core_catalog(s->core)),
                   api_global_index(s), resp))
        return API_DONE;
    const char *only = hreq_query(rq, "service");
    json_t *doc = json_array();
    size_t n;
    cat_service **all = cat_sorted_services(core_catalog(s->core), &n);
    for (size_t i = 0; doc != NULL && all != NULL && i < n; i++) {
        const cat_service *svc = all[i];
        if (only != NULL && strcmp(only, svc->name) != 0)
            continue;
        for (size_t j = 0; j < svc->n; j++) {
            const cat_instance *in = svc->inst[j];
            ubuf tags = {0};
            size_t ti;
            json_t *t;
            ubuf_add(&tags, ",", 1);
            json_array_foreach(in->tags, ti, t) {
                ubuf_add(&tags, json_string_value(t), json_string_length(t));
                ubuf_add(&tags, ",", 1);
            }
            ubuf_add(&tags, "", 1);
            char target[300];
            snprintf(target, sizeof(target), strchr(in->host, ':') ? "[%s]:%d" : "%s:%d",
                     in->host, in->port);
            json_array_append_new(
                doc, json_pack("{s:[s], s:{s:s, s:s, s:s, s:s}}", "targets", target, "labels",
                               "__meta_registry_service", svc->name,
                               "__meta_registry_instance_id", in->id, "__meta_registry_status",
                               is_critical(in) ? "critical" : "passing",
                               "__meta_registry_tags", tags.p ? tags.p : ","));
            free(tags.p);
        }
    }
    free(all);
    return kept_finish(s, &k, doc, resp);
}

/* --- writes ---------------------------------------------------------------------------- */

/* A member of a Consul body, its name matched case-insensitively (clients send "Name",
 * "name" or "NAME"). */
static json_t *member(json_t *o, const char *name) {
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) if (strcasecmp(k, name) == 0) return json_is_null(v) ? NULL : v;
    return NULL;
}

static int bad(http_resp *resp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(http_resp *resp, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    api_error(resp, 400, "%s", msg);
    return API_DONE;
}

/* The shared secret a request carries (X-Consul-Token or ?token=). */
static void set_auth(http_server *s, const http_req *rq, api_call *call) {
    if (rq->token != NULL && core_has_auth(s->core)) {
        snprintf(call->secret, sizeof(call->secret), "%s", rq->token);
        call->rq.auth = call->secret;
    }
}

static int do_register(http_server *s, const http_req *rq, http_resp *resp, api_call *call) {
    json_error_t jerr;
    json_t *doc = json_loadb(rq->body ? rq->body : "", rq->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL)
        return bad(resp, "request body is not valid JSON: %s (line %d, column %d)", jerr.text,
                   jerr.line, jerr.column);
    call->doc = doc;
    if (!json_is_object(doc))
        return bad(resp, "request body must be a JSON object (a Consul service registration)");
    request *r = &call->rq;
    r->op = OP_REGISTER;
    json_t *v = member(doc, "Name");
    if (!json_is_string(v) || !req_valid_service(json_string_value(v), json_string_length(v)))
        return bad(resp, "\"Name\" must be 1-%d characters of [a-z0-9._-] starting with a letter "
                         "or digit",
                   REQ_SERVICE_MAX);
    r->service = json_string_value(v);
    v = member(doc, "ID");
    if (v != NULL && (!json_is_string(v) || (json_string_length(v) > 0 &&
                                             !store_id_valid(json_string_value(v)))))
        return bad(resp, "\"ID\" must be 1-%d characters of [A-Za-z0-9._:@-] starting with a "
                         "letter or digit",
                   STORE_ID_MAX);
    r->want_id = v != NULL && json_string_length(v) > 0 ? json_string_value(v) : r->service;
    v = member(doc, "Address");
    if (v != NULL && !json_is_string(v))
        return bad(resp, "\"Address\" must be a string (an IP address or a hostname)");
    if (v != NULL && json_string_length(v) > 0) {
        const char *h = json_string_value(v);
        if (strcmp(h, "0.0.0.0") != 0 && strcmp(h, "::") != 0) {
            if (!req_valid_host(h, json_string_length(v)))
                return bad(resp, "\"Address\" must be an IP address or a hostname of at most %d "
                                 "bytes",
                           REQ_HOST_MAX);
            r->host = h;
        }
    }
    v = member(doc, "Port");
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535)
        return bad(resp, "\"Port\" must be an integer 1-65535");
    r->port = (int)json_integer_value(v);
    r->description = "";
    v = member(doc, "Meta");
    if (v != NULL) {
        if (!json_is_object(v))
            return bad(resp, "\"Meta\" must be an object of strings");
        json_t *d = member(v, "description");
        if (d != NULL) {
            if (!json_is_string(d) || json_string_length(d) > REQ_DESC_MAX)
                return bad(resp, "\"Meta\".\"description\" must be a string of at most %d bytes",
                           REQ_DESC_MAX);
            r->description = json_string_value(d);
        }
    }
    v = member(doc, "Tags");
    if (v != NULL) {
        if (!json_is_array(v) || json_array_size(v) > REQ_TAGS_MAX)
            return bad(resp, "\"Tags\" must be an array of at most %d strings", REQ_TAGS_MAX);
        size_t i;
        json_t *t;
        json_array_foreach(v, i, t) if (!json_is_string(t) || json_string_length(t) < 1 ||
                                         json_string_length(t) > REQ_TAG_MAX ||
                                         strlen(json_string_value(t)) != json_string_length(t))
            return bad(resp, "\"Tags\" entry %zu must be a string of 1-%d bytes", i, REQ_TAG_MAX);
        r->tags = v;
    }
    /* The check: TCP (and HTTP/gRPC, probed as TCP on the service's address), TTL, or
     * none given: our default TCP check (the registry pings what it lists). */
    r->check = REQ_CHECK_TCP;
    json_t *chk = member(doc, "Check");
    json_t *checks = member(doc, "Checks");
    if (chk == NULL && json_is_array(checks) && json_array_size(checks) > 0)
        chk = json_array_get(checks, 0);
    if (chk != NULL) {
        if (!json_is_object(chk))
            return bad(resp, "\"Check\" must be an object");
        json_t *ttl = member(chk, "TTL");
        if (ttl != NULL) {
            uint64_t ms;
            if (!json_is_string(ttl) || api_duration(json_string_value(ttl), &ms) != 0 ||
                ms < 1 || ms > (uint64_t)REQ_TTL_MAX * 1000)
                return bad(resp, "\"Check\".\"TTL\" must be a duration from 1s to %ds, such as "
                                 "\"15s\"",
                           REQ_TTL_MAX);
            r->ttl = (int)((ms + 999) / 1000);
            r->check = REQ_CHECK_NONE;
        }
        const char *strs[] = {"TCP", "HTTP", "GRPC", "Interval", "Timeout",
                              "DeregisterCriticalServiceAfter"};
        for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
            json_t *x = member(chk, strs[i]);
            if (x != NULL && !json_is_string(x))
                return bad(resp, "\"Check\".\"%s\" must be a string", strs[i]);
        }
    }
    set_auth(s, rq, call);
    r->admin = r->auth != NULL;
    call->route = R_REGISTER;
    return API_WRITE;
}

/* deregister/<id> and check/pass/<id>: the owner's standing (its registrant or its host)
 * or the shared secret decides, as Consul clients hold no token of ours. */
static int do_by_id(http_server *s, const http_req *rq, const char *id, req_op op, int route,
                    http_resp *resp, api_call *call) {
    if (strncmp(id, "service:", 8) == 0 && op == OP_HEARTBEAT)
        id += 8;
    if (!store_id_valid(id))
        return bad(resp, "\"%.80s\" is not an instance id", id);
    snprintf(call->id, sizeof(call->id), "%s", id);
    call->rq.op = op;
    call->rq.id = call->id;
    call->rq.by_standing = 1;
    set_auth(s, rq, call);
    call->route = route;
    return API_WRITE;
}

static int http_status_of(req_err e) {
    switch (e) {
    case RERR_NONE: return 200;
    case RERR_BAD_REQUEST: return 400;
    case RERR_NOT_FOUND: return 404;
    case RERR_UNAUTHORIZED: return 403;
    case RERR_CONFLICT: return 409;
    case RERR_TOO_LARGE: return 429;
    case RERR_UNAVAILABLE: return 503;
    default: return 500;
    }
}

void api_reply(http_server *s, const api_call *call, const reply *r, http_resp *resp) {
    resp->index = api_global_index(s);
    if (r->err != RERR_NONE) {
        api_error(resp, http_status_of(r->err), "%s", r->msg ? r->msg : req_err_name(r->err));
        return;
    }
    if (call->route == R_API_EVENTS) {
        api_json(resp, 200, json_pack("{s:O}", "events", r->events));
        return;
    }
    if (call->route == R_REGISTER && call->rq.service != NULL)
        resp->index = api_index(s, call->rq.service);
    resp->status = 200; /* Consul answers these with an empty body */
}

/* --- routing ----------------------------------------------------------------------------- */

/* The rest of path after prefix, or NULL when path does not start with it. */
static const char *after(const char *path, const char *prefix) {
    size_t n = strlen(prefix);
    return strncmp(path, prefix, n) == 0 ? path + n : NULL;
}

static int method_is(const http_req *rq, const char *allow, http_resp *resp) {
    int m = rq->method;
    /* HEAD only where it is named: on deregister and check/pass, GET (for old clients)
     * is a write, and a HEAD must never be one. */
    int ok = (strstr(allow, "GET") && m == HTTP_GET) || (strstr(allow, "HEAD") && m == HTTP_HEAD) ||
             (strstr(allow, "PUT") && m == HTTP_PUT) || (strstr(allow, "POST") && m == HTTP_POST);
    if (!ok) {
        resp->allow = allow;
        api_error(resp, 405, "method %s is not allowed here (allowed: %s)",
                  http_method_str((enum http_method)m), allow);
    }
    return ok;
}

int api_handle(http_server *s, const http_req *rq, const peer *pr, http_resp *resp,
               api_call *call) {
    const char *p = rq->path, *rest;
    int read_auth_needed = core_reads_need_auth(s->core) && !core_auth_matches(s->core, rq->token);
    call->route = R_OTHER;
#define READ(route_)                                                                            \
    do {                                                                                       \
        call->route = (route_);                                                                \
        if (!method_is(rq, "GET, HEAD", resp))                                                 \
            return API_DONE;                                                                   \
        if (read_auth_needed) {                                                                \
            api_error(resp, 403, "this registry needs the shared secret for reads "          \
                                 "(X-Consul-Token header or ?token=)");                         \
            return API_DONE;                                                                   \
        }                                                                                      \
    } while (0)
    if (strcmp(p, "/v1/agent/self") == 0) {
        READ(R_AGENT_SELF);
        return agent_self(s, resp);
    }
    if (strcmp(p, "/v1/catalog/services") == 0) {
        READ(R_CATALOG_SERVICES);
        return catalog_services(s, rq, resp, call);
    }
    if ((rest = after(p, "/v1/catalog/service/")) != NULL) {
        READ(R_CATALOG_SERVICE);
        return service_entries(s, rq, rest, 0, resp, call);
    }
    if ((rest = after(p, "/v1/health/service/")) != NULL) {
        READ(R_HEALTH_SERVICE);
        return service_entries(s, rq, rest, 1, resp, call);
    }
    if ((rest = after(p, "/v1/health/state/")) != NULL) {
        READ(R_HEALTH_STATE);
        return health_state(s, rq, rest, resp, call);
    }
    if (strcmp(p, "/v1/agent/service/register") == 0) {
        call->route = R_REGISTER;
        if (!method_is(rq, "PUT", resp))
            return API_DONE;
        return do_register(s, rq, resp, call);
    }
    if ((rest = after(p, "/v1/agent/service/deregister/")) != NULL) {
        call->route = R_DEREGISTER;
        if (!method_is(rq, "PUT, GET", resp))
            return API_DONE;
        return do_by_id(s, rq, rest, OP_DEREGISTER, R_DEREGISTER, resp, call);
    }
    if ((rest = after(p, "/v1/agent/service/maintenance/")) != NULL) {
        call->route = R_MAINTENANCE;
        if (!method_is(rq, "PUT", resp))
            return API_DONE;
        const char *en = hreq_query(rq, "enable");
        if (en == NULL || (strcmp(en, "true") != 0 && strcmp(en, "false") != 0))
            return bad(resp, "query parameter \"enable\" must be true or false");
        int st = do_by_id(s, rq, rest, OP_MAINTENANCE, R_MAINTENANCE, resp, call);
        if (st == API_WRITE) {
            /* An operator's request (the core checks: the shared secret, or loopback). */
            call->rq.by_standing = 0;
            call->rq.enable = strcmp(en, "true") == 0;
            const char *why = hreq_query(rq, "reason");
            if (why != NULL && why[0]) {
                snprintf(call->reason, sizeof(call->reason), "%s", why);
                call->rq.reason = call->reason;
            }
        }
        return st;
    }
    if ((rest = after(p, "/v1/agent/check/pass/")) != NULL) {
        call->route = R_CHECK_PASS;
        if (!method_is(rq, "PUT, GET", resp))
            return API_DONE;
        return do_by_id(s, rq, rest, OP_HEARTBEAT, R_CHECK_PASS, resp, call);
    }
    if (after(p, "/v1/kv/") != NULL || strcmp(p, "/v1/kv") == 0) {
        call->route = R_KV;
        api_error(resp, 404, "this registry has no key/value store");
        return API_DONE;
    }
    if (strcmp(p, "/v1/status/leader") == 0 || strcmp(p, "/v1/status/peers") == 0) {
        READ(R_STATUS);
        char addr[300];
        snprintf(addr, sizeof(addr), "%s:%d", s->cfg.host, s->cfg.port);
        api_json(resp, 200, p[11] == 'l' ? json_string(addr) : json_pack("[s]", addr));
        return API_DONE;
    }
    if (strcmp(p, "/api/services") == 0) {
        READ(R_API_SERVICES);
        return api_services(s, rq, resp);
    }
    if ((rest = after(p, "/api/services/")) != NULL) {
        READ(R_API_SERVICE);
        return api_service(s, rest, resp);
    }
    if (strcmp(p, "/api/events") == 0) {
        READ(R_API_EVENTS);
        long long since = 0, limit = 100;
        const char *v;
        if ((v = hreq_query(rq, "since")) != NULL && util_parse_int(v, 0, INT64_MAX, &since) != 0)
            return bad(resp, "query parameter \"since\" must be an event seq (0 or more)");
        if ((v = hreq_query(rq, "limit")) != NULL &&
            util_parse_int(v, 1, REQ_EVENTS_LIMIT, &limit) != 0)
            return bad(resp, "query parameter \"limit\" must be 1-%d", REQ_EVENTS_LIMIT);
        call->rq = (request){.op = OP_EVENTS, .since = since, .limit = (int)limit};
        if ((v = hreq_query(rq, "service")) != NULL && v[0])
            call->rq.service = v;
        set_auth(s, rq, call); /* the events op checks the secret itself */
        return API_EVENTS;
    }
    if (strcmp(p, "/api/events/stream") == 0) {
        READ(R_API_STREAM);
        long long since = 0;
        const char *v = hreq_query(rq, "since");
        if (v != NULL && util_parse_int(v, 0, INT64_MAX, &since) != 0)
            return bad(resp, "query parameter \"since\" must be an event seq (0 or more)");
        if (rq->last_event_id >= 0)
            since = rq->last_event_id;
        if (v == NULL && rq->last_event_id < 0)
            since = (long long)s->seq; /* from now on */
        call->since = since;
        v = hreq_query(rq, "service");
        call->stream_service = v && v[0] ? v : NULL;
        set_auth(s, rq, call); /* for the history the stream reads first */
        return API_STREAM;
    }
    if (strcmp(p, "/api/stats") == 0) {
        READ(R_API_STATS);
        json_t *st = core_stats(s->core);
        if (st != NULL) {
            json_object_set_new(st, "node", json_string(s->cfg.node_name));
            json_object_set_new(st, "datacenter", json_string(s->cfg.datacenter));
            /* With etcd: the live nodes, for the dashboard's header. */
            json_t *nodes = json_object_get(json_object_get(st, "store"), "nodes");
            if (nodes != NULL)
                json_object_set(st, "nodes", nodes);
            json_object_set_new(st, "http", json_pack("{s:I, s:I, s:I}", "connections",
                                                      (json_int_t)net_conns(s->net), "streams",
                                                      (json_int_t)s->nstreams, "index",
                                                      (json_int_t)api_global_index(s)));
        }
        api_json(resp, 200, st);
        return API_DONE;
    }
    if (strcmp(p, "/api/prometheus/sd") == 0) {
        READ(R_PROM_SD);
        return prometheus_sd(s, rq, resp);
    }
    if (strcmp(p, "/metrics") == 0) {
        call->route = R_METRICS;
        if (!method_is(rq, "GET, HEAD", resp))
            return API_DONE;
        resp->ctype = "text/plain; version=0.0.4; charset=utf-8";
        resp->status = metrics_render(s, &resp->body) == 0 ? 200 : 500;
        return API_DONE;
    }
    if (ui_path(p)) { /* the dashboard: static files, no catalog data, so no secret */
        call->route = R_UI;
        if (!method_is(rq, "GET, HEAD", resp))
            return API_DONE;
        ui_serve(p, rq->if_none_match, resp);
        return API_DONE;
    }
    (void)pr;
    api_error(resp, 404, "no such endpoint: %.200s (README \"HTTP API\" lists them)", p);
    return API_DONE;
#undef READ
}
