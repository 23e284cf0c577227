/* SPDX-License-Identifier: BSD-2-Clause */
/* etcd_json.c — the etcd backend's codec, shared by its two halves: base64 (the gateway
 * sends keys and values so), the gateway's integers and errors, and the JSON values the
 * registry keeps under its keys (an instance, an event). Pure: no I/O.
 */
#include "store/etcd_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

char *etcd_b64(const void *p, size_t len) {
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out != NULL)
        EVP_EncodeBlock((unsigned char *)out, p, (int)len);
    return out;
}

char *etcd_unb64(const char *s, size_t *len) {
    size_t n = strlen(s);
    if (n % 4 != 0)
        return NULL;
    char *out = malloc(n / 4 * 3 + 1);
    if (out == NULL)
        return NULL;
    int got = n ? EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n) : 0;
    if (got < 0) {
        free(out);
        return NULL;
    }
    if (n >= 1 && s[n - 1] == '=')
        got--;
    if (n >= 2 && s[n - 2] == '=')
        got--;
    out[got] = '\0';
    *len = (size_t)got;
    return out;
}

int etcd_set_b64(json_t *o, const char *key, const char *s, size_t len) {
    char *b = etcd_b64(s, len);
    if (b == NULL)
        return -1;
    int rc = json_object_set_new(o, key, json_string(b));
    free(b);
    return rc;
}

int64_t etcd_int(const json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return 0;
}

const char *etcd_reply_error(const json_t *reply) {
    json_t *e = json_object_get(reply, "error");
    if (e == NULL)
        e = json_object_get(json_object_get(reply, "error"), "message");
    if (json_is_string(e))
        return json_string_value(e);
    json_t *m = json_object_get(reply, "message");
    if (json_object_get(reply, "code") != NULL && json_is_string(m))
        return json_string_value(m);
    return NULL;
}

int etcd_retryable(const json_t *reply) {
    const char *e = etcd_reply_error(reply);
    json_int_t code = json_integer_value(json_object_get(reply, "code"));
    if (e == NULL)
        return 0;
    /* gRPC codes: 14 unavailable, 4 deadline exceeded, 10 aborted, 2 unknown */
    return code == 14 || code == 4 || code == 10 || strstr(e, "leader") != NULL ||
           strstr(e, "timed out") != NULL || strstr(e, "unavailable") != NULL ||
           strstr(e, "stopped") != NULL || strstr(e, "too many requests") != NULL;
}

/* Instance values: the store_instance's fields; the tags as their JSON text. */
json_t *etcd_inst_json(const store_instance *in, int64_t ord) {
    char tok[2 * STORE_HASH_LEN + 1];
    util_hex(in->token_hash, STORE_HASH_LEN, tok);
    json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:i, s:i, s:s, s:I, s:I, s:I, s:i,"
                     " s:i, s:i}",
                     "id", in->id, "service", in->service, "host", in->host, "port", in->port,
                     "description", in->description ? in->description : "", "tags",
                     in->tags_json ? in->tags_json : "[]", "ttl", in->ttl, "check", in->check,
                     "token", tok, "registered_at", (json_int_t)in->registered_at, "last_seen",
                     (json_int_t)in->last_seen, "last_check", (json_int_t)in->last_check,
                     "status", in->status, "failures", in->failures, "maintenance",
                     in->maintenance);
    if (o != NULL && ord > 0)
        json_object_set_new(o, "ord", json_integer(ord));
    return o;
}

/* The ord of an instance's value (0: none). */
int64_t etcd_ord_of(const char *text, size_t len) {
    json_t *o = json_loadb(text, len, 0, NULL);
    int64_t ord = etcd_int(o, "ord");
    json_decref(o);
    return ord;
}

static int unhex(const char *s, unsigned char *out, size_t n) {
    if (s == NULL || strlen(s) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s[2 * i + k];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= (unsigned)(c - 'a' + 10);
            else
                return -1;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

static const char *str_of(const json_t *o, const char *k) {
    return json_string_value(json_object_get(o, k));
}

int etcd_inst_parse(const char *text, size_t len, store_instance *si, json_t **keep) {
    json_t *o = json_loadb(text, len, 0, NULL);
    memset(si, 0, sizeof(*si));
    *keep = o;
    const char *id = str_of(o, "id");
    if (!json_is_object(o) || id == NULL || strlen(id) > STORE_ID_MAX)
        return -1;
    snprintf(si->id, sizeof(si->id), "%s", id);
    si->service = str_of(o, "service");
    si->host = str_of(o, "host");
    si->description = str_of(o, "description");
    si->tags_json = str_of(o, "tags");
    si->port = (int)etcd_int(o, "port");
    si->ttl = (int)etcd_int(o, "ttl");
    si->check = (int)etcd_int(o, "check");
    si->registered_at = etcd_int(o, "registered_at");
    si->last_seen = etcd_int(o, "last_seen");
    si->last_check = etcd_int(o, "last_check");
    si->status = (int)etcd_int(o, "status");
    si->failures = (int)etcd_int(o, "failures");
    si->maintenance = (int)etcd_int(o, "maintenance");
    if (si->service == NULL || si->host == NULL || si->description == NULL ||
        si->tags_json == NULL || unhex(str_of(o, "token"), si->token_hash, STORE_HASH_LEN) != 0)
        return -1;
    return 0;
}

json_t *etcd_event_json(const store_event *ev, const char *node) {
    json_t *o = json_pack("{s:I, s:I, s:s, s:s}", "seq", (json_int_t)ev->seq, "ts",
                          (json_int_t)ev->ts, "event", ev->event, "node", node);
    if (o == NULL)
        return NULL;
    if (ev->service)
        json_object_set_new(o, "service", json_string(ev->service));
    if (ev->id)
        json_object_set_new(o, "id", json_string(ev->id));
    if (ev->host)
        json_object_set_new(o, "host", json_string(ev->host));
    if (ev->port)
        json_object_set_new(o, "port", json_integer(ev->port));
    if (ev->detail)
        json_object_set_new(o, "detail", json_string(ev->detail));
    return o;
}

int etcd_event_parse(const char *text, size_t len, store_event *ev, json_t **keep) {
    json_t *o = json_loadb(text, len, 0, NULL);
    memset(ev, 0, sizeof(*ev));
    *keep = o;
    if (!json_is_object(o) || str_of(o, "event") == NULL)
        return -1;
    ev->seq = etcd_int(o, "seq");
    ev->ts = etcd_int(o, "ts");
    ev->event = str_of(o, "event");
    ev->service = str_of(o, "service");
    ev->id = str_of(o, "id");
    ev->host = str_of(o, "host");
    ev->port = (int)etcd_int(o, "port");
    ev->detail = str_of(o, "detail");
    return ev->seq > 0 ? 0 : -1;
}


/* --- framing a stream of JSON objects ------------------------------------------------------ */

void etcd_frame_reset(etcd_frame *f) {
    f->buf.len = 0;
    f->scan = 0;
    f->start = 0;
    f->depth = f->in_str = f->esc = 0;
}

void etcd_frame_free(etcd_frame *f) {
    free(f->buf.p);
    memset(f, 0, sizeof(*f));
}

int etcd_frame_feed(etcd_frame *f, const char *p, size_t n,
                    int (*obj)(void *ud, const char *p, size_t n), void *ud) {
    if (n > 0 && ubuf_add(&f->buf, p, n) != 0)
        return -ENOMEM;
    size_t done = 0; /* bytes before this are delivered (or between objects) */
    int rc = 0;
    for (size_t i = f->scan; i < f->buf.len; i++) {
        char c = f->buf.p[i];
        if (f->in_str) {
            if (f->esc)
                f->esc = 0;
            else if (c == '\\')
                f->esc = 1;
            else if (c == '"')
                f->in_str = 0;
            continue;
        }
        if (c == '"' && f->depth > 0) {
            f->in_str = 1;
        } else if (c == '{') {
            if (f->depth++ == 0)
                f->start = i;
        } else if (c == '}' && f->depth > 0 && --f->depth == 0) {
            rc = obj(ud, f->buf.p + f->start, i + 1 - f->start);
            done = i + 1;
            if (rc != 0)
                break;
        }
    }
    /* Keep an unfinished object from its start; drop what lies between objects. */
    size_t keep_from = f->depth > 0 ? f->start : f->buf.len;
    if (rc != 0)
        keep_from = done;
    if (keep_from > 0) { /* (an empty buffer may have no storage yet) */
        memmove(f->buf.p, f->buf.p + keep_from, f->buf.len - keep_from);
        f->buf.len -= keep_from;
    }
    f->start -= f->depth > 0 && rc == 0 ? keep_from : 0;
    f->scan = rc != 0 ? 0 : f->buf.len;
    if (rc != 0) { /* stopped: what follows is scanned again from its start */
        f->depth = f->in_str = f->esc = 0;
        f->start = 0;
    }
    return rc;
}
