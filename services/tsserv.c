/* SPDX-License-Identifier: BSD-2-Clause */
/* tsserv.c — the timestamp service: for every line it receives it replies
 * "[<ctime() of now>] LINE". Registers itself as "timestamp" (see svc.h for the flags,
 * registration and shutdown it shares with sleepserv).
 */
#include "svc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Room for "[" + ctime's 24 characters + "] " in front of the echoed line; the request
 * cap leaves that much so a reply never exceeds the line limit clients enforce. */
#define PREFIX_MAX 64

static void on_request(svc_req *r, const char *line, size_t len)
{
    char when[64], *out;
    time_t now = time(NULL);
    int n;

    if (!ctime_r(&now, when))
        snprintf(when, sizeof when, "(unknown time)");
    when[strcspn(when, "\n")] = '\0';
    out = malloc(PREFIX_MAX + len);
    if (!out) {
        static const char oom[] = "error: out of memory";
        svc_req_reply(r, oom, sizeof oom - 1);
        return;
    }
    n = snprintf(out, PREFIX_MAX, "[%s] ", when);
    if (n < 0 || n >= PREFIX_MAX)
        n = 0;
    memcpy(out + n, line, len);
    svc_req_reply(r, out, (size_t)n + len);
    free(out);
}

int main(int argc, char **argv)
{
    static const svc_def def = {
        .prog = "tsserv",
        .default_name = "timestamp",
        .default_description = "timestamp service: replies [ctime] LINE to each line",
        .summary = "The timestamp service: replies to each line with the current time in\n"
                   "ctime() form in brackets, a space, and the line:\n"
                   "  hello  ->  [Sun Nov 22 14:37:46 2026] hello",
        .max_line = SVC_MAX_LINE - PREFIX_MAX,
        .too_long_reply = "error: line too long",
        .on_request = on_request,
    };
    return svc_main(argc, argv, &def);
}
