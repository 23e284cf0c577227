/* SPDX-License-Identifier: BSD-2-Clause */
/* req.c — the names of operations and error codes (see req.h). */
#include "core/req.h"

#include <arpa/inet.h>
#include <string.h>

static const char *const op_names[OP__COUNT] = {
    [OP_REGISTER] = "register", [OP_DEREGISTER] = "deregister", [OP_HEARTBEAT] = "heartbeat",
    [OP_LOOKUP] = "lookup",     [OP_LIST] = "list",             [OP_PING] = "ping",
    [OP_STATS] = "stats",       [OP_EVENTS] = "events",         [OP_WATCH] = "watch",
    [OP_MAINTENANCE] = "maintenance",
};

static const char *const err_names[RERR__COUNT] = {
    [RERR_NONE] = "ok",
    [RERR_BAD_REQUEST] = "bad_request",
    [RERR_NOT_FOUND] = "not_found",
    [RERR_UNAUTHORIZED] = "unauthorized",
    [RERR_CONFLICT] = "conflict",
    [RERR_TOO_LARGE] = "too_large",
    [RERR_UNAVAILABLE] = "unavailable",
    [RERR_INTERNAL] = "internal",
};

const char *req_err_name(req_err e) {
    return (unsigned)e < RERR__COUNT ? err_names[e] : "internal";
}

const char *req_op_name(req_op op) {
    return (unsigned)op < OP__COUNT ? op_names[op] : "?";
}

int req_valid_service(const char *s, size_t len) {
    if (len < 1 || len > REQ_SERVICE_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return 0;
    }
    return 1;
}

int req_valid_host(const char *s, size_t len) {
    if (len < 1 || len > REQ_HOST_MAX || memchr(s, '\0', len) != NULL)
        return 0;
    char buf[REQ_HOST_MAX + 1];
    unsigned char addr[16];
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, addr) == 1 || inet_pton(AF_INET6, buf, addr) == 1)
        return 1;
    /* RFC 1123 hostname: dot-separated labels of 1-63 [A-Za-z0-9-], no leading or
     * trailing hyphen; a trailing dot is allowed. */
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 (c == '-' && label > 0);
        if (!ok || ++label > 63)
            return 0;
    }
    return len == 1 || s[len - 1] != '-';
}
