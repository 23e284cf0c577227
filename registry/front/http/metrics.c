/* SPDX-License-Identifier: BSD-2-Clause */
/* metrics.c — GET /metrics: the registry's figures in Prometheus's text exposition
 * format (version 0.0.4). The figures come from where `regctl stats` reads them (the
 * core's stats, with each front-end's members), from the catalog (instances by status),
 * from the HTTP front-end's own counters, and from /proc for the process. Counters end in
 * _total; `promtool check metrics` passes on the output (tests/e2e/test_http.py). */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "front/http/internal.h"

static int out(ubuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int out(ubuf *b, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n >= sizeof(tmp))
        n = (int)sizeof(tmp) - 1;
    return ubuf_add(b, tmp, (size_t)n);
}

static void head(ubuf *b, const char *name, const char *type, const char *help) {
    out(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A number at a dotted path of the stats object (0 when absent). */
static double num(json_t *stats, const char *path) {
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    json_t *v = stats;
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && v; k = strtok_r(NULL, ".", &save))
        v = json_object_get(v, k);
    if (json_is_boolean(v))
        return json_is_true(v);
    return json_is_number(v) ? json_number_value(v) : 0;
}

typedef struct simple {
    const char *name, *type, *path, *help;
} simple;

static const simple simples[] = {
    {"registry_uptime_seconds", "gauge", "uptime_s", "Seconds since registryd started."},
    {"registry_services", "gauge", "services", "Services registered."},
    {"registry_catalog_bytes", "gauge", "catalog_bytes", "Memory the catalog holds."},
    {"registry_cache_hits_total", "counter", "cache.hits", "Lookups answered from the cache."},
    {"registry_cache_misses_total", "counter", "cache.misses", "Lookups that built their answer."},
    {"registry_cache_evictions_total", "counter", "cache.evictions", "Answers evicted from the cache."},
    {"registry_cache_entries", "gauge", "cache.entries", "Answers in the cache."},
    {"registry_health_checks_total", "counter", "health.checks", "Health checks run."},
    {"registry_health_checks_failed_total", "counter", "health.failed_checks", "Health checks that failed."},
    {"registry_health_checks_in_flight", "gauge", "health.in_flight", "Health checks running now."},
    {"registry_evictions_total", "counter", "health.evictions", "Instances evicted after failed checks."},
    {"registry_expirations_total", "counter", "health.expirations", "Instances expired (TTL without heartbeat)."},
    {"registry_self_preservation", "gauge", "health.preserving", "1 while self-preservation holds evictions."},
    {"registry_store_commits_total", "counter", "store.commits", "Store commits (group commits)."},
    {"registry_store_changes_total", "counter", "store.changes", "Changes committed to the store."},
    {"registry_store_failures_total", "counter", "store.failures", "Store commits that failed."},
    {"registry_store_queued", "gauge", "store.queued", "Changes waiting for the store."},
    {"registry_store_max_batch", "gauge", "store.max_batch", "Largest group commit so far."},
    {"registry_log_dropped_total", "counter", "log_dropped", "Log lines dropped (log writer behind)."},
    {"registry_line_connections", "gauge", "connections", "Open line-protocol connections."},
    {"registry_line_watchers", "gauge", "watchers", "Line-protocol connections watching events."},
    {"registry_line_connections_rejected_total", "counter", "rejected_connections",
     "Line-protocol connections refused (limits)."},
};

/* A histogram as hist_json gives it ({le, counts (cumulative, +Inf last), sum, count}). */
static void histogram(ubuf *b, json_t *h, const char *name, const char *help) {
    json_t *le = json_object_get(h, "le"), *counts = json_object_get(h, "counts");
    if (!json_is_array(le) || !json_is_array(counts) ||
        json_array_size(counts) != json_array_size(le) + 1)
        return;
    head(b, name, "histogram", help);
    size_t i;
    json_t *v;
    json_array_foreach(le, i, v)
        out(b, "%s_bucket{le=\"%g\"} %lld\n", name, json_number_value(v),
            (long long)json_integer_value(json_array_get(counts, i)));
    out(b, "%s_bucket{le=\"+Inf\"} %lld\n", name,
        (long long)json_integer_value(json_array_get(counts, json_array_size(le))));
    out(b, "%s_sum %.9f\n", name, json_number_value(json_object_get(h, "sum")));
    out(b, "%s_count %lld\n", name, (long long)json_integer_value(json_object_get(h, "count")));
}

static long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = 0;
    fclose(f);
    return rss * sysconf(_SC_PAGESIZE);
}

static long open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    long n = 0;
    if (d == NULL)
        return 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n > 3 ? n - 3 : 0; /* ".", ".." and the directory's own descriptor */
}

int metrics_render(http_server *s, ubuf *b) {
    json_t *st = core_stats(s->core);
    if (st == NULL)
        return -1;
    head(b, "registry_info", "gauge", "Version of registryd (always 1).");
    out(b, "registry_info{version=\"%s\",node=\"%s\"} 1\n", REGISTRY_VERSION, s->cfg.node_name);
    for (size_t i = 0; i < sizeof(simples) / sizeof(simples[0]); i++) {
        head(b, simples[i].name, simples[i].type, simples[i].help);
        out(b, "%s %.17g\n", simples[i].name, num(st, simples[i].path));
    }

    histogram(b, json_object_get(st, "lookup_seconds"), "registry_lookup_duration_seconds",
              "Time the core takes to answer a lookup (any front-end), encoding included; "
              "sampled: one lookup in 16 is timed.");
    json_t *sto = json_object_get(st, "store");
    histogram(b, json_object_get(sto, "commit_seconds"), "registry_store_commit_duration_seconds",
              "Time of each committed batch on the store (a group commit: fsync included).");
    histogram(b, json_object_get(sto, "batch_changes"), "registry_store_batch_changes",
              "Changes per committed batch (group commit sizes).");
    head(b, "registry_store_backend_info", "gauge", "The store backend in use (always 1).");
    out(b, "registry_store_backend_info{backend=\"%s\"} 1\n",
        json_string_value(json_object_get(sto, "backend")) ? json_string_value(json_object_get(sto, "backend")) : "?");
    if (json_object_get(sto, "nodes") != NULL) { /* a shared store (etcd) */
        head(b, "registry_store_connected", "gauge",
             "1 while the shared store (etcd) answers and its watch runs.");
        out(b, "registry_store_connected %d\n", json_is_true(json_object_get(sto, "connected")));
        head(b, "registry_store_revision", "gauge",
             "The shared store's revision this node's catalog has reached.");
        out(b, "registry_store_revision %.17g\n", num(st, "store.revision"));
        head(b, "registry_cluster_nodes", "gauge", "Live registryd nodes of the cluster.");
        out(b, "registry_cluster_nodes %zu\n", json_array_size(json_object_get(sto, "nodes")));
        head(b, "registry_health_owned", "gauge",
             "Instances this node checks (the checks are divided among the nodes).");
        out(b, "registry_health_owned %.17g\n", num(st, "health.owned"));
    }

    /* Instances by status, from the catalog. */
    size_t passing = 0, critical = 0, maint = 0, pos = 0;
    cat_instance *in;
    while ((in = cat_next_instance(core_catalog(s->core), &pos)) != NULL) {
        if (in->maintenance)
            maint++;
        else if (in->status == STORE_PASSING)
            passing++;
        else
            critical++;
    }
    head(b, "registry_instances", "gauge", "Registered instances by status.");
    out(b, "registry_instances{status=\"passing\"} %zu\n", passing);
    out(b, "registry_instances{status=\"critical\"} %zu\n", critical);
    out(b, "registry_instances{status=\"maintenance\"} %zu\n", maint);

    /* Requests by front-end and outcome. */
    head(b, "registry_requests_total", "counter", "Requests by front-end, op and result.");
    /* Line protocol: what the core answered by op, and what was refused before (op
     * "invalid": the errors the core did not give). */
    json_t *errs = json_object_get(st, "errors"), *byop = json_object_get(st, "requests_by_op");
    const char *k, *k2;
    json_t *v, *v2;
    json_object_foreach(byop, k, v) json_object_foreach(v, k2, v2)
        out(b, "registry_requests_total{frontend=\"line\",op=\"%s\",result=\"%s\"} %lld\n", k, k2,
            (long long)json_integer_value(v2));
    json_object_foreach(errs, k, v) {
        long long before_core = json_integer_value(v);
        json_object_foreach(byop, k2, v2) before_core -= json_integer_value(json_object_get(v2, k));
        if (before_core > 0)
            out(b, "registry_requests_total{frontend=\"line\",op=\"invalid\",result=\"%s\"} %lld\n",
                k, before_core);
    }
    json_t *dns = json_object_get(st, "dns");
    json_object_foreach(dns, k, v) if (strcmp(k, "queries") != 0 && strcmp(k, "tcp") != 0)
        out(b, "registry_requests_total{frontend=\"dns\",op=\"lookup\",result=\"%s\"} %.17g\n", k,
            json_number_value(v));
    for (int r = 0; r < R__COUNT; r++)
        for (int c = 1; c <= 5; c++)
            if (s->st.requests[r][c])
                out(b, "registry_requests_total{frontend=\"http\",op=\"%s\",result=\"%dxx\"} %llu\n",
                    http_route_names[r], c, (unsigned long long)s->st.requests[r][c]);

    head(b, "registry_http_request_duration_seconds", "histogram",
         "HTTP request durations, from the first byte of the request to its answer.");
    uint64_t cum = 0;
    for (int i = 0; i <= HTTP_LAT_BUCKETS; i++) {
        cum += s->st.lat[i];
        if (i < HTTP_LAT_BUCKETS)
            out(b, "registry_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                http_lat_bounds[i], (unsigned long long)cum);
        else
            out(b, "registry_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                (unsigned long long)cum);
    }
    out(b, "registry_http_request_duration_seconds_sum %.9f\n", s->st.lat_sum);
    out(b, "registry_http_request_duration_seconds_count %llu\n", (unsigned long long)cum);
    head(b, "registry_http_connections", "gauge", "Open HTTP connections.");
    out(b, "registry_http_connections %zu\n", net_conns(s->net));
    head(b, "registry_http_connections_rejected_total", "counter", "HTTP connections refused (limits).");
    out(b, "registry_http_connections_rejected_total %llu\n",
        (unsigned long long)net_rejected(s->net));
    head(b, "registry_http_event_streams", "gauge", "Open server-sent event streams.");
    out(b, "registry_http_event_streams %zu\n", s->nstreams);
    head(b, "registry_http_blocking_queries_total", "counter", "Blocking queries that waited.");
    out(b, "registry_http_blocking_queries_total %llu\n",
        (unsigned long long)s->st.blocking_queries);

    head(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    out(b, "process_resident_memory_bytes %ld\n", rss_bytes());
    head(b, "process_open_fds", "gauge", "Number of open file descriptors.");
    out(b, "process_open_fds %ld\n", open_fds());
    json_decref(st);
    return 0;
}
