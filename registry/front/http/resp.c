/* SPDX-License-Identifier: BSD-2-Clause */
/* resp.c — what every part of the HTTP front-end shares: the bodies it answers with (a
 * JSON document, or a JSON error {"error": "..."} naming the problem) and the names of
 * its routes and latency buckets. Below the routes (api.c, ui.c), /metrics and the
 * server, so none of them has to reach into another for it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "front/http/internal.h"

const char *const http_route_names[R__COUNT] = {
    [R_AGENT_SELF] = "agent_self",         [R_CATALOG_SERVICES] = "catalog_services",
    [R_CATALOG_SERVICE] = "catalog_service", [R_HEALTH_SERVICE] = "health_service",
    [R_HEALTH_STATE] = "health_state",     [R_REGISTER] = "register",
    [R_DEREGISTER] = "deregister",         [R_CHECK_PASS] = "check_pass",
    [R_MAINTENANCE] = "maintenance",
    [R_KV] = "kv",                         [R_STATUS] = "status",
    [R_API_SERVICES] = "api_services",     [R_API_SERVICE] = "api_service",
    [R_API_EVENTS] = "api_events",         [R_API_STREAM] = "api_events_stream",
    [R_PROM_SD] = "prometheus_sd",         [R_API_STATS] = "api_stats",         [R_METRICS] = "metrics",
    [R_UI] = "ui",                         [R_OTHER] = "other"};

const double http_lat_bounds[HTTP_LAT_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                  0.01,   0.025,   0.05,   0.1,   0.5,    1.0};

void api_json(http_resp *resp, int status, json_t *doc) {
    resp->status = status;
    char *txt = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (txt == NULL) {
        resp->status = 500;
        txt = strdup("{\"error\":\"out of memory\"}");
        if (txt == NULL)
            return;
    }
    ubuf_add(&resp->body, txt, strlen(txt));
    free(txt);
}

void api_error(http_resp *resp, int status, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    api_json(resp, status, json_pack("{s:s}", "error", msg));
}
