/* SPDX-License-Identifier: BSD-2-Clause */
/* sleepserv.c — the sleep RPC: a request line {"sleep": SECONDS} (0 <= SECONDS <= 3600,
 * fractions allowed) is answered {"ok":true,"slept":SECONDS} that long after it arrived;
 * bad input gets {"ok":false,"error":"..."} at once. Each request sleeps on its own libuv
 * timer, so any number of sleeps run at the same time, on one connection or many;
 * svc.c sends a connection's replies in request order. Registers itself as "sleep".
 */
#include "svc.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SLEEP_MAX_S 3600

struct sleeper {
    uv_timer_t timer;       /* first: the close callback casts back */
    svc_req *req;
    json_t *reply;          /* owned: the answer to send when the timer fires */
    int cancelled;
};

/* Encodes o (borrowed) and answers r with it. */
static void reply_json(svc_req *r, json_t *o)
{
    /* 15 significant digits print 0.1 as 0.1, not 0.10000000000000001. */
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    if (!text) {
        static const char oom[] = "{\"ok\":false,\"error\":\"out of memory\"}";
        svc_req_reply(r, oom, sizeof oom - 1);
        return;
    }
    svc_req_reply(r, text, strlen(text));
    free(text);
}

static void reply_error(svc_req *r, const char *msg)
{
    json_t *o = json_pack("{s:b, s:s}", "ok", 0, "error", msg);
    reply_json(r, o);
    json_decref(o);
}

static void on_sleeper_closed(uv_handle_t *h)
{
    struct sleeper *s = (struct sleeper *)h;
    if (s->cancelled)
        svc_req_reply(s->req, NULL, 0);   /* dropped: frees the request */
    else
        reply_json(s->req, s->reply);
    json_decref(s->reply);
    free(s);
}

static void on_wake(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, on_sleeper_closed);
}

static void on_cancel(svc_req *r, void *data)
{
    struct sleeper *s = data;
    s->cancelled = 1;
    uv_timer_stop(&s->timer);
    if (!uv_is_closing((uv_handle_t *)&s->timer))
        uv_close((uv_handle_t *)&s->timer, on_sleeper_closed);
}

static void on_request(svc_req *r, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *req = json_loadb(line, len, 0, &jerr), *secs;
    struct sleeper *s;
    double v;

    if (!req) {
        char msg[256];
        snprintf(msg, sizeof msg, "invalid JSON: %s (want {\"sleep\": SECONDS})", jerr.text);
        reply_error(r, msg);
        return;
    }
    secs = json_object_get(req, "sleep");
    if (!json_is_object(req) || !secs) {
        reply_error(r, "want {\"sleep\": SECONDS}");
        goto out;
    }
    if (!json_is_number(secs)) {
        reply_error(r, "\"sleep\" must be a number of seconds, 0 to 3600");
        goto out;
    }
    v = json_number_value(secs);
    if (!isfinite(v) || v < 0 || v > SLEEP_MAX_S) {
        reply_error(r, "\"sleep\" must be between 0 and 3600 seconds");
        goto out;
    }
    s = calloc(1, sizeof *s);
    if (!s || !(s->reply = json_pack("{s:b, s:O}", "ok", 1, "slept", secs))) {
        free(s);
        reply_error(r, "out of memory");
        goto out;
    }
    s->req = r;
    uv_timer_init(svc_req_loop(r), &s->timer);
    svc_req_on_cancel(r, on_cancel, s);
    /* The loop's clock was read when this iteration started, i.e. about when the
     * request arrived: that is where the sleep is measured from. */
    uv_timer_start(&s->timer, on_wake, (uint64_t)llround(v * 1000.0), 0);
out:
    json_decref(req);
}

int main(int argc, char **argv)
{
    static const svc_def def = {
        .prog = "sleepserv",
        .default_name = "sleep",
        .default_description = "sleep RPC: {\"sleep\": S} -> {\"ok\":true,\"slept\":S} after S seconds",
        .summary = "The sleep RPC: answers a line {\"sleep\": SECONDS} (0 to 3600, fractions\n"
                   "allowed) with {\"ok\":true,\"slept\":SECONDS} after that long; bad input\n"
                   "gets {\"ok\":false,\"error\":\"...\"} at once. Sleeps run concurrently;\n"
                   "replies on one connection come back in request order.",
        .max_line = SVC_MAX_LINE,
        .too_long_reply = "{\"ok\":false,\"error\":\"request line over 65536 bytes\"}",
        .on_request = on_request,
    };
    return svc_main(argc, argv, &def);
}
