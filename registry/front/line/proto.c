/* SPDX-License-Identifier: BSD-2-Clause */
/* proto.c — decoding, validation and encoding of the wire protocol (see proto.h).
 *
 * Checks run cheapest first: size, NUL bytes, UTF-8, nesting depth (jansson's own limit
 * is 2048, ours is 32, so we scan before parsing), then jansson, then per-op fields.
 * Every message names the field and what was expected.
 */
#include "front/line/proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static req_err fail(char *msg, req_err e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, PROTO_MSG_LEN, fmt, ap);
    va_end(ap);
    return e;
}

/* Returns the offset of the first byte that is not valid UTF-8, or len. Rejects
 * overlongs, surrogates and code points above U+10FFFF. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned cp;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return i;
        }
        if (i + n >= len) /* truncated sequence */
            return i;
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += n + 1;
    }
    return len;
}

/* Maximum nesting depth of [ and { outside strings, stopping early past limit. */
static int nesting_depth(const char *s, size_t len, int limit) {
    int depth = 0, max = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max && (max = depth) > limit)
                return max;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return max;
}

int proto_valid_service(const char *s, size_t len) {
    return req_valid_service(s, len);
}

int proto_valid_host(const char *s, size_t len) {
    return req_valid_host(s, len);
}

/* Field getters: each returns RERR_NONE, or RERR_BAD_REQUEST with msg naming the field. */
static req_err get_string(json_t *root, const char *name, int required, size_t maxlen,
                            const char **out, char *msg) {
    json_t *v = json_object_get(root, name);
    if (v == NULL || (json_is_null(v) && !required)) {
        if (required)
            return fail(msg, RERR_BAD_REQUEST, "missing field \"%s\"", name);
        return RERR_NONE;
    }
    if (!json_is_string(v))
        return fail(msg, RERR_BAD_REQUEST, "field \"%s\" must be a string", name);
    if (json_string_length(v) > maxlen)
        return fail(msg, RERR_BAD_REQUEST, "field \"%s\" is longer than %zu bytes", name, maxlen);
    if (memchr(json_string_value(v), '\0', json_string_length(v)) != NULL)
        return fail(msg, RERR_BAD_REQUEST, "field \"%s\" contains a NUL character", name);
    *out = json_string_value(v);
    return RERR_NONE;
}

static req_err get_int(json_t *root, const char *name, int required, long long min,
                         long long max, long long *out, char *msg) {
    json_t *v = json_object_get(root, name);
    if (v == NULL || (json_is_null(v) && !required)) {
        if (required)
            return fail(msg, RERR_BAD_REQUEST, "missing field \"%s\"", name);
        return RERR_NONE;
    }
    if (!json_is_integer(v))
        return fail(msg, RERR_BAD_REQUEST, "field \"%s\" must be an integer", name);
    long long x = json_integer_value(v);
    if (x < min || x > max)
        return fail(msg, RERR_BAD_REQUEST, "field \"%s\" must be between %lld and %lld (got %lld)",
                    name, min, max, x);
    *out = x;
    return RERR_NONE;
}

static req_err get_service(json_t *root, int required, const char **out, char *msg) {
    const char *s = NULL;
    req_err e = get_string(root, "service", required, 1u << 16, &s, msg);
    if (e != RERR_NONE || s == NULL)
        return e;
    if (!proto_valid_service(s, strlen(s)))
        return fail(msg, RERR_BAD_REQUEST,
                    "field \"service\" must be 1-%d characters of [a-z0-9._-] starting with a "
                    "letter or digit",
                    REQ_SERVICE_MAX);
    *out = s;
    return RERR_NONE;
}

static req_err decode_register(json_t *root, proto_request *r, char *msg) {
    req_err e;
    long long v;
    if ((e = get_service(root, 1, &r->r.service, msg)) != RERR_NONE)
        return e;
    if ((e = get_string(root, "host", 0, REQ_HOST_MAX, &r->r.host, msg)) != RERR_NONE)
        return e;
    if (r->r.host != NULL) {
        if (strcmp(r->r.host, "0.0.0.0") == 0 || strcmp(r->r.host, "::") == 0)
            r->r.host = NULL; /* "the address the request came from" */
        else if (!proto_valid_host(r->r.host, strlen(r->r.host)))
            return fail(msg, RERR_BAD_REQUEST,
                        "field \"host\" must be an IP address or a hostname of at most %d bytes",
                        REQ_HOST_MAX);
    }
    if ((e = get_int(root, "port", 1, 1, 65535, &v, msg)) != RERR_NONE)
        return e;
    r->r.port = (int)v;
    r->r.description = "";
    if ((e = get_string(root, "description", 0, REQ_DESC_MAX, &r->r.description, msg)) != RERR_NONE)
        return e;
    json_t *tags = json_object_get(root, "tags");
    if (tags != NULL && !json_is_null(tags)) {
        if (!json_is_array(tags))
            return fail(msg, RERR_BAD_REQUEST, "field \"tags\" must be an array of strings");
        if (json_array_size(tags) > REQ_TAGS_MAX)
            return fail(msg, RERR_BAD_REQUEST, "field \"tags\" has more than %d entries",
                        REQ_TAGS_MAX);
        size_t i;
        json_t *t;
        json_array_foreach(tags, i, t) {
            if (!json_is_string(t) || json_string_length(t) < 1 ||
                json_string_length(t) > REQ_TAG_MAX ||
                memchr(json_string_value(t), '\0', json_string_length(t)) != NULL)
                return fail(msg, RERR_BAD_REQUEST,
                            "field \"tags\" entry %zu must be a string of 1-%d bytes", i,
                            REQ_TAG_MAX);
        }
        r->r.tags = tags;
    }
    v = 0;
    if ((e = get_int(root, "ttl", 0, 1, REQ_TTL_MAX, &v, msg)) != RERR_NONE)
        return e;
    r->r.ttl = (int)v;
    const char *check = NULL;
    if ((e = get_string(root, "check", 0, 16, &check, msg)) != RERR_NONE)
        return e;
    r->r.check = REQ_CHECK_TCP;
    if (check != NULL) {
        if (strcmp(check, "none") == 0)
            r->r.check = REQ_CHECK_NONE;
        else if (strcmp(check, "tcp") != 0)
            return fail(msg, RERR_BAD_REQUEST, "field \"check\" must be \"tcp\" or \"none\"");
    }
    /* Registering an existing instance again: its current token, or an admin's update. */
    if ((e = get_string(root, "token", 0, 256, &r->r.token, msg)) != RERR_NONE)
        return e;
    json_t *admin = json_object_get(root, "admin");
    if (admin != NULL && !json_is_null(admin)) {
        if (!json_is_boolean(admin))
            return fail(msg, RERR_BAD_REQUEST, "field \"admin\" must be true or false");
        r->r.admin = json_is_true(admin);
    }
    return RERR_NONE;
}

/* An optional boolean field into *out (untouched when absent or null). */
static req_err get_bool(json_t *root, const char *name, int required, int *out, char *msg) {
    json_t *v = json_object_get(root, name);
    if (v == NULL || json_is_null(v)) {
        if (required)
            return fail(msg, RERR_BAD_REQUEST, "missing field \"%s\" (true or false)", name);
        return RERR_NONE;
    }
    if (!json_is_boolean(v))
        return fail(msg, RERR_BAD_REQUEST, "field \"%s\" must be true or false", name);
    *out = json_is_true(v);
    return RERR_NONE;
}

static req_err decode_owner(json_t *root, proto_request *r, char *msg) {
    req_err e;
    if ((e = get_string(root, "id", 1, 64, &r->r.id, msg)) != RERR_NONE)
        return e;
    /* deregister "force": an operator's, without the token (the core checks who asks). */
    if (r->r.op == OP_DEREGISTER && (e = get_bool(root, "force", 0, &r->r.force, msg)) != RERR_NONE)
        return e;
    if (r->r.force)
        return get_string(root, "token", 0, 256, &r->r.token, msg);
    return get_string(root, "token", 1, 256, &r->r.token, msg);
}

static req_err decode_maintenance(json_t *root, proto_request *r, char *msg) {
    req_err e;
    if ((e = get_string(root, "id", 1, 64, &r->r.id, msg)) != RERR_NONE)
        return e;
    if ((e = get_bool(root, "enable", 1, &r->r.enable, msg)) != RERR_NONE)
        return e;
    return get_string(root, "reason", 0, REQ_DESC_MAX, &r->r.reason, msg);
}

size_t proto_lookup_cursor(size_t index, const char *id, char *buf) {
    int n = snprintf(buf, PROTO_CURSOR_MAX, "%zu.%.*s", index, PROTO_CURSOR_ID_MAX, id);
    return n < 0 ? 0 : (size_t)n;
}

/* "limit" and "cursor" of list and lookup (proto.h: proto_page). A cursor is checked
 * for the shape this registry gives it, so a mangled one is a bad request, not a page
 * from somewhere else. */
static req_err decode_page(json_t *root, proto_request *r, char *msg) {
    static const char bad[] = "field \"cursor\" must be the \"next\" of an earlier %s page";
    const char *what = r->r.op == OP_LIST ? "list" : "lookup";
    const char *cursor = NULL;
    long long v = 0;
    req_err e;
    if ((e = get_int(root, "limit", 0, 1, PROTO_PAGE_MAX, &v, msg)) != RERR_NONE)
        return e;
    if ((e = get_string(root, "cursor", 0, PROTO_CURSOR_MAX, &cursor, msg)) != RERR_NONE)
        return e;
    if (v == 0 && cursor == NULL)
        return RERR_NONE;
    r->page.on = 1;
    r->page.limit = v ? (int)v : PROTO_PAGE_MAX;
    if (cursor == NULL)
        return RERR_NONE;
    if (r->r.op == OP_LIST) { /* the last service name of the previous page */
        if (!proto_valid_service(cursor, strlen(cursor)))
            return fail(msg, RERR_BAD_REQUEST, bad, what);
        r->page.after = cursor;
        return RERR_NONE;
    }
    /* lookup: "INDEX.ID", INDEX 1-9 digits, ID 1-64 of [0-9a-f] */
    size_t index = 0, i = 0, len = strlen(cursor);
    for (; i < len && cursor[i] >= '0' && cursor[i] <= '9'; i++)
        index = index * 10 + (size_t)(cursor[i] - '0');
    size_t idlen = i < len ? len - i - 1 : 0;
    if (i < 1 || i > 9 || i >= len || cursor[i] != '.' || idlen < 1 ||
        idlen > PROTO_CURSOR_ID_MAX)
        return fail(msg, RERR_BAD_REQUEST, bad, what);
    for (size_t k = i + 1; k < len; k++)
        if (!((cursor[k] >= '0' && cursor[k] <= '9') || (cursor[k] >= 'a' && cursor[k] <= 'f')))
            return fail(msg, RERR_BAD_REQUEST, bad, what);
    r->page.index = index;
    memcpy(r->page.id, cursor + i + 1, idlen);
    r->page.id[idlen] = '\0';
    return RERR_NONE;
}

static req_err decode_lookup(json_t *root, proto_request *r, char *msg) {
    req_err e;
    if ((e = get_service(root, 1, &r->r.service, msg)) != RERR_NONE)
        return e;
    if ((e = get_string(root, "tag", 0, REQ_TAG_MAX, &r->r.tag, msg)) != RERR_NONE)
        return e;
    json_t *all = json_object_get(root, "all");
    if (all != NULL && !json_is_null(all)) {
        if (!json_is_boolean(all))
            return fail(msg, RERR_BAD_REQUEST, "field \"all\" must be true or false");
        r->r.all = json_is_true(all);
    }
    return decode_page(root, r, msg);
}

static req_err decode_events(json_t *root, proto_request *r, char *msg) {
    req_err e;
    long long v = 0;
    if ((e = get_int(root, "since", 0, 0, INT64_MAX, &v, msg)) != RERR_NONE)
        return e;
    r->r.since = v;
    v = 100;
    if ((e = get_int(root, "limit", 0, 1, REQ_EVENTS_LIMIT, &v, msg)) != RERR_NONE)
        return e;
    r->r.limit = (int)v;
    /* "tail": N, the newest N (instead of "limit"'s oldest). */
    v = 0;
    if ((e = get_int(root, "tail", 0, 1, REQ_EVENTS_LIMIT, &v, msg)) != RERR_NONE)
        return e;
    if (v > 0) {
        r->r.tail = 1;
        r->r.limit = (int)v;
    }
    /* "before": SEQ with tail, the newest N below SEQ: paging backwards. */
    v = 0;
    if ((e = get_int(root, "before", 0, 1, INT64_MAX, &v, msg)) != RERR_NONE)
        return e;
    if (v > 0 && !r->r.tail)
        return fail(msg, RERR_BAD_REQUEST, "field \"before\" needs \"tail\"");
    r->r.before = v;
    return get_service(root, 0, &r->r.service, msg);
}

int proto_frame(const char *buf, size_t len, size_t *line_len) {
    /* Only the first PROTO_MAX_LINE bytes can hold the end of a line that fits. */
    size_t scan = len < PROTO_MAX_LINE ? len : PROTO_MAX_LINE;
    const char *nl = memchr(buf, '\n', scan);
    if (nl != NULL) {
        *line_len = (size_t)(nl - buf);
        return PROTO_FRAME_LINE;
    }
    return len >= PROTO_MAX_LINE ? PROTO_FRAME_TOO_LARGE : PROTO_FRAME_MORE;
}

req_err proto_decode(const char *line, size_t len, proto_request *r, char *msg) {
    memset(r, 0, sizeof(*r));
    msg[0] = '\0';
    if (len + 1 > PROTO_MAX_LINE)
        return fail(msg, RERR_TOO_LARGE, "request line longer than %d bytes", PROTO_MAX_LINE);
    if (len > 0 && line[len - 1] == '\r') /* tolerate CRLF from telnet-like tools */
        len--;
    if (memchr(line, '\0', len) != NULL)
        return fail(msg, RERR_BAD_REQUEST, "request contains a NUL byte at offset %zu",
                    (size_t)((const char *)memchr(line, '\0', len) - line));
    size_t bad = utf8_invalid_at((const unsigned char *)line, len);
    if (bad != len)
        return fail(msg, RERR_BAD_REQUEST, "request is not valid UTF-8 (byte %zu)", bad);
    if (nesting_depth(line, len, PROTO_MAX_DEPTH) > PROTO_MAX_DEPTH)
        return fail(msg, RERR_BAD_REQUEST, "JSON nested deeper than %d levels", PROTO_MAX_DEPTH);

    json_error_t jerr;
    r->root = json_loadb(line, len, JSON_DECODE_ANY, &jerr);
    if (r->root == NULL) {
        /* jansson appends " near '<bytes of the line>'": never echo request bytes (they
         * may hold a secret); the column says where. */
        char *near = strstr(jerr.text, " near ");
        if (near != NULL)
            *near = '\0';
        return fail(msg, RERR_BAD_REQUEST, "invalid JSON at column %d: %s", jerr.column, jerr.text);
    }
    if (!json_is_object(r->root))
        return fail(msg, RERR_BAD_REQUEST, "request must be a JSON object");

    json_t *rid = json_object_get(r->root, "request_id");
    if (rid != NULL) {
        if (json_is_object(rid) || json_is_array(rid))
            return fail(msg, RERR_BAD_REQUEST, "field \"request_id\" must be a JSON scalar");
        r->request_id = rid;
    }

    const char *op = NULL;
    req_err e = get_string(r->root, "op", 1, 64, &op, msg);
    if (e != RERR_NONE)
        return e;
    int found = 0;
    for (int i = 0; i < OP__COUNT; i++) {
        if (strcmp(op, req_op_name((req_op)i)) == 0) {
            r->r.op = (req_op)i;
            found = 1;
            break;
        }
    }
    if (!found) {
        /* Quote at most 32 bytes, cut on a character boundary: the message must stay
         * valid UTF-8 or it cannot be encoded at all. */
        int n = (int)strlen(op);
        if (n > 32) {
            n = 32;
            while (n > 0 && ((unsigned char)op[n] & 0xC0) == 0x80)
                n--;
        }
        return fail(msg, RERR_BAD_REQUEST,
                    "unknown op \"%.*s\" (expected register, deregister, heartbeat, lookup, "
                    "list, ping, stats, events, watch or maintenance)",
                    n, op);
    }
    if ((e = get_string(r->root, "auth", 0, 4096, &r->r.auth, msg)) != RERR_NONE)
        return e;

    switch (r->r.op) {
    case OP_REGISTER:
        return decode_register(r->root, r, msg);
    case OP_DEREGISTER:
    case OP_HEARTBEAT:
        return decode_owner(r->root, r, msg);
    case OP_LOOKUP:
        return decode_lookup(r->root, r, msg);
    case OP_LIST:
        return decode_page(r->root, r, msg);
    case OP_EVENTS:
        return decode_events(r->root, r, msg);
    case OP_WATCH:
        return get_service(r->root, 0, &r->r.service, msg);
    case OP_MAINTENANCE:
        return decode_maintenance(r->root, r, msg);
    default:
        return RERR_NONE;
    }
}

void proto_request_free(proto_request *r) {
    if (r->root != NULL)
        json_decref(r->root);
    r->root = NULL;
    r->request_id = NULL;
}

int proto_encode(json_t *resp, json_t *request_id, char **buf, size_t *len, size_t *cap) {
    if (request_id != NULL && json_object_set(resp, "request_id", request_id) != 0)
        return -ENOMEM;
    if (*cap - *len < 256) { /* room up front: an empty buffer would cost a sizing pass */
        char *nb = realloc(*buf, *len + 256);
        if (nb == NULL)
            return -ENOMEM;
        *buf = nb;
        *cap = *len + 256;
    }
    for (;;) {
        size_t room = *cap - *len;
        size_t need = json_dumpb(resp, *buf + *len, room, JSON_COMPACT);
        if (need == 0)
            return -ENOMEM;
        if (need + 1 <= room) {
            (*buf)[*len + need] = '\n';
            *len += need + 1;
            return 0;
        }
        size_t ncap = *cap ? *cap : 256;
        while (ncap - *len < need + 1)
            ncap *= 2;
        char *nb = realloc(*buf, ncap);
        if (nb == NULL)
            return -ENOMEM;
        *buf = nb;
        *cap = ncap;
    }
}

json_t *proto_error(req_err e, const char *message, json_t *request_id) {
    json_t *o = json_pack("{s:b, s:{s:s, s:s}}", "ok", 0, "error", "code", req_err_name(e),
                          "message", message ? message : "");
    if (o != NULL && request_id != NULL)
        json_object_set(o, "request_id", request_id);
    return o;
}

/* --- memo of decoded lookup lines ------------------------------------------------------- */

#define MEMO_SLOTS    512
#define MEMO_LINE_MAX 160

struct memo_slot {
    uint32_t len;                       /* 0 = empty */
    int all;
    int has_tag;
    char line[MEMO_LINE_MAX];
    char service[REQ_SERVICE_MAX + 1];
    char tag[REQ_SERVICE_MAX + 1];
};

struct proto_memo {
    struct memo_slot slot[MEMO_SLOTS];
};

static uint32_t memo_hash(const char *s, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

proto_memo *proto_memo_new(void) {
    return calloc(1, sizeof(proto_memo));
}

void proto_memo_free(proto_memo *m) {
    free(m);
}

int proto_memo_get(proto_memo *m, const char *line, size_t len, proto_request *req) {
    if (m == NULL || len == 0 || len > MEMO_LINE_MAX)
        return 0;
    struct memo_slot *s = &m->slot[memo_hash(line, len) % MEMO_SLOTS];
    if (s->len != len || memcmp(s->line, line, len) != 0)
        return 0;
    memset(req, 0, sizeof(*req));
    req->r.op = OP_LOOKUP;
    req->r.service = s->service;
    req->r.tag = s->has_tag ? s->tag : NULL;
    req->r.all = s->all;
    req->r.description = "";
    req->r.limit = 100;
    return 1;
}

void proto_memo_put(proto_memo *m, const char *line, size_t len, const proto_request *req) {
    if (m == NULL || len == 0 || len > MEMO_LINE_MAX || req->r.op != OP_LOOKUP ||
        req->request_id != NULL || req->r.auth != NULL || req->page.on)
        return;
    size_t slen = strlen(req->r.service), tlen = req->r.tag ? strlen(req->r.tag) : 0;
    if (slen > REQ_SERVICE_MAX || tlen > REQ_SERVICE_MAX)
        return;
    struct memo_slot *s = &m->slot[memo_hash(line, len) % MEMO_SLOTS];
    memcpy(s->line, line, len);
    s->len = (uint32_t)len;
    memcpy(s->service, req->r.service, slen + 1);
    s->has_tag = req->r.tag != NULL;
    if (req->r.tag)
        memcpy(s->tag, req->r.tag, tlen + 1);
    s->all = req->r.all;
}
