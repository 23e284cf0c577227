/* SPDX-License-Identifier: BSD-2-Clause */
/* parse.c — HTTP requests from bytes (parse.h). */
#include "front/http/parse.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int grow(hparse *h, ubuf *b, const char *at, size_t len) {
    h->header_bytes += len;
    if (h->header_bytes > h->max_header) {
        h->reject = 431;
        return -1;
    }
    return ubuf_add(b, at, len) == 0 ? 0 : -1;
}

static int on_message_begin(http_parser *p) {
    hparse *h = p->data;
    h->url.len = h->field.len = h->value.len = h->body.len = h->token.len = h->leid.len = 0;
    h->inm.len = 0;
    h->last_was_value = 0;
    h->header_bytes = 0;
    h->reject = 0;
    h->in_message = 1;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
    hparse *h = p->data;
    return grow(h, &h->url, at, len);
}

static int ieq(const ubuf *b, const char *name) {
    size_t n = strlen(name);
    return b->len == n && strncasecmp(b->p, name, n) == 0;
}

/* One header is complete (field and value): keep the ones we use, NUL-terminated. */
static int end_header(hparse *h) {
    ubuf *dst = NULL;
    if (ieq(&h->field, "x-consul-token"))
        dst = &h->token;
    else if (ieq(&h->field, "last-event-id"))
        dst = &h->leid;
    else if (ieq(&h->field, "if-none-match"))
        dst = &h->inm;
    if (dst != NULL) {
        dst->len = 0;
        if (ubuf_add(dst, h->value.p ? h->value.p : "", h->value.len) != 0 ||
            ubuf_add(dst, "", 1) != 0)
            return -1;
    }
    h->field.len = h->value.len = 0;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
    hparse *h = p->data;
    if (h->last_was_value && end_header(h) != 0)
        return -1;
    h->last_was_value = 0;
    return grow(h, &h->field, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
    hparse *h = p->data;
    h->last_was_value = 1;
    return grow(h, &h->value, at, len);
}

static int on_headers_complete(http_parser *p) {
    hparse *h = p->data;
    if (h->last_was_value && end_header(h) != 0)
        return -1;
    h->last_was_value = 0;
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > h->max_body) {
        h->reject = 413;
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
    hparse *h = p->data;
    if (h->body.len + len > h->max_body) {
        h->reject = 413;
        return -1;
    }
    return ubuf_add(&h->body, at, len) == 0 ? 0 : -1;
}

static int on_message_complete(http_parser *p) {
    hparse *h = p->data;
    h->method = p->method;
    h->keep_alive = http_should_keep_alive(p);
    h->upgrade = p->upgrade;
    h->http09 = p->http_major == 0;
    h->http10 = p->http_major == 1 && p->http_minor == 0;
    h->in_message = 0;
    http_parser_pause(p, 1); /* one request at a time: answers stay in order */
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void hparse_init(hparse *h, size_t max_header, size_t max_body) {
    memset(h, 0, sizeof(*h));
    http_parser_init(&h->p, HTTP_REQUEST);
    h->p.data = h;
    h->max_header = max_header;
    h->max_body = max_body;
}

void hparse_free(hparse *h) {
    free(h->url.p);
    free(h->field.p);
    free(h->value.p);
    free(h->body.p);
    free(h->token.p);
    free(h->leid.p);
    free(h->inm.p);
    h->url = h->field = h->value = h->body = h->token = h->leid = h->inm = (ubuf){0};
}

int hparse_feed(hparse *h, const char *data, size_t len, size_t *used, int *status, char *msg,
                size_t msglen) {
    size_t n = http_parser_execute(&h->p, &settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&h->p);
    *used = n;
    if (e == HPE_PAUSED) {
        http_parser_pause(&h->p, 0);
        if (h->http09) {
            *status = 400;
            snprintf(msg, msglen, "request line has no HTTP version (HTTP/1.0 or HTTP/1.1)");
            return HP_ERROR;
        }
        if (h->upgrade) {
            *status = 400;
            snprintf(msg, msglen, "protocol upgrades are not supported");
            return HP_ERROR;
        }
        return HP_REQUEST;
    }
    if (e == HPE_OK && h->p.upgrade) {
        *status = 400;
        snprintf(msg, msglen, "protocol upgrades are not supported");
        return HP_ERROR;
    }
    if (e == HPE_OK)
        return HP_MORE;
    if (h->reject == 431 || e == HPE_HEADER_OVERFLOW) {
        *status = 431;
        snprintf(msg, msglen, "request headers are over %zu bytes", h->max_header);
    } else if (h->reject == 413) {
        *status = 413;
        snprintf(msg, msglen, "request body is over %zu bytes", h->max_body);
    } else {
        *status = 400;
        snprintf(msg, msglen, "malformed HTTP request: %s", http_errno_description(e));
    }
    return HP_ERROR;
}

/* --- the request target ------------------------------------------------------------------- */

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = tolower(ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Percent-decodes src[len] into a new string ('+' is a space in a query). NULL when it
 * holds a NUL byte or a bad escape (or out of memory). */
static char *decode(const char *src, size_t len, int query) {
    char *out = malloc(len + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        int ch = (unsigned char)src[i];
        if (ch == '%') {
            int hi = i + 2 < len ? hexval((unsigned char)src[i + 1]) : -1;
            int lo = i + 2 < len ? hexval((unsigned char)src[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            ch = hi * 16 + lo;
            i += 2;
        } else if (ch == '+' && query) {
            ch = ' ';
        } else if (ch == 0) {
            free(out);
            return NULL;
        }
        *o++ = (char)ch;
    }
    *o = '\0';
    return out;
}

void hreq_clear(http_req *r) {
    for (size_t i = 0; i < r->nq; i++) {
        free(r->qk[i]);
        free(r->qv[i]);
    }
    free(r->path);
    memset(r, 0, sizeof(*r));
    r->last_event_id = -1;
}

const char *hreq_query(const http_req *r, const char *key) {
    for (size_t i = 0; i < r->nq; i++)
        if (strcmp(r->qk[i], key) == 0)
            return r->qv[i];
    return NULL;
}

static int parse_query(http_req *r, const char *q, const char *end, char *msg, size_t len) {
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(stop - q));
        if (stop > q) {
            if (r->nq == HTTP_QUERY_MAX) {
                snprintf(msg, len, "more than %d query parameters", HTTP_QUERY_MAX);
                return 400;
            }
            const char *kend = eq ? eq : stop;
            char *k = decode(q, (size_t)(kend - q), 1);
            char *v = eq ? decode(eq + 1, (size_t)(stop - eq - 1), 1) : strdup("");
            if (k == NULL || v == NULL) {
                free(k);
                free(v);
                snprintf(msg, len, "query holds a NUL byte or a bad %%-escape");
                return 400;
            }
            r->qk[r->nq] = k;
            r->qv[r->nq++] = v;
        }
        q = stop + 1;
    }
    return 0;
}

int hparse_request(hparse *h, http_req *r, char *msg, size_t len) {
    struct http_parser_url u;
    http_parser_url_init(&u);
    hreq_clear(r);
    if (h->url.len == 0 || http_parser_parse_url(h->url.p, h->url.len, 0, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH))) {
        snprintf(msg, len, "request target is not a valid path");
        return 400;
    }
    const char *path = h->url.p + u.field_data[UF_PATH].off;
    if ((r->path = decode(path, u.field_data[UF_PATH].len, 0)) == NULL) {
        snprintf(msg, len, "path holds a NUL byte or a bad %%-escape");
        return 400;
    }
    /* No ".." segment: names never need one, and a path is never a file name. */
    for (const char *q = r->path; (q = strstr(q, "..")) != NULL; q += 2) {
        if ((q == r->path || q[-1] == '/') && (q[2] == '/' || q[2] == '\0')) {
            snprintf(msg, len, "path holds a \"..\" segment");
            return 400;
        }
    }
    if (u.field_set & (1 << UF_QUERY)) {
        const char *q = h->url.p + u.field_data[UF_QUERY].off;
        int st = parse_query(r, q, q + u.field_data[UF_QUERY].len, msg, len);
        if (st != 0)
            return st;
    }
    r->method = h->method;
    r->body = h->body.p;
    r->body_len = h->body.len;
    r->token = h->token.len ? h->token.p : hreq_query(r, "token");
    r->if_none_match = h->inm.len > 1 ? h->inm.p : NULL;
    if (h->leid.len > 1) {
        long long v;
        if (util_parse_int(h->leid.p, 0, INT64_MAX, &v) != 0) {
            snprintf(msg, len, "Last-Event-ID is not an event seq");
            return 400;
        }
        r->last_event_id = v;
    }
    return 0;
}
