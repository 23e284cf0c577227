/* SPDX-License-Identifier: BSD-2-Clause */
/* etcd_loop.c — the etcd backend's loop half: the watch that follows every node's
 * commits, this node's membership, and lease keepalives for heartbeats.
 *
 * libcurl's multi interface runs on the libuv loop as curl's multi-uv.c example does:
 * curl tells us which sockets to poll (CURLMOPT_SOCKETFUNCTION -> uv_poll) and when to
 * call it back (CURLMOPT_TIMERFUNCTION -> uv_timer). We open and close the sockets
 * ourselves (CURLOPT_OPENSOCKETFUNCTION/CLOSESOCKETFUNCTION): curl may say
 * CURL_POLL_REMOVE after it closed a socket, and a uv_poll must be closed before its fd.
 *
 * The watch (POST /v3/watch) is one long response of JSON objects, which chunks split
 * or join as they like: they are framed by object (brace depth outside strings), never
 * by chunk. Each object's events are grouped by revision and handed, one revision at a
 * time and in order, to the follower (store_follower.changes); the follower may say
 * "not yet" (its own writer has not finished that commit), and delivery resumes from
 * there. When the stream ends or fails, it starts again from the next revision on the
 * next endpoint.
 */
#include "store/etcd_int.h"
#include "store/backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <curl/curl.h>

#define RETRY_MS 200                /* a failed watch starts again after this */
#define KEEPALIVE_MS (ETCD_NODE_TTL_S * 1000 / 3)

typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    etcd_loop *el;
    int polling;
} sock_ctx;

typedef struct areq areq;
typedef void (*areq_cb)(etcd_loop *el, areq *rq, json_t *reply, const char *err);

/* One asynchronous call (POST path body), tried again on the next endpoint until its
 * deadline. */
struct areq {
    etcd_loop *el;
    CURL *h;
    char *path, *body;
    ubuf resp;
    uint64_t deadline;              /* loop ms */
    areq_cb cb;
    void (*user_cb)(void *ud, int rc, const char *err); /* renew's */
    void *ud;
    uv_timer_t retry;
    int attempts;
    size_t ep;                      /* the endpoint it is sent to */
    int fixed;                      /* to that endpoint only, once (a probe) */
    areq *next, *prev;
};

/* A revision's worth of watch events: events [from, to) of resp.result.events. */
typedef struct wgroup {
    json_t *resp;                   /* one reference per group */
    size_t from, to;
    int64_t rev;
} wgroup;

struct etcd_loop {
    etcd *e;
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t curl_timer, tick, kick;
    store_follower f;
    size_t cur;                     /* the endpoint the loop half talks to */
    sock_ctx **socks;               /* by fd */
    size_t nsocks;
    areq *reqs;                     /* in flight */
    /* watch */
    CURL *watch;
    char wurl[512], *wbody;
    etcd_frame wf;                  /* the stream, framed by object */
    wgroup *q;                      /* groups not delivered yet */
    size_t qhead, qn, qcap;
    int64_t next_rev;               /* the first revision not delivered yet */
    size_t wcur;                    /* the endpoint the watch is on */
    int wprobe_fail;                /* probes of that endpoint failed in a row */
    int wabort;                     /* the stream must end (compacted, cancelled) */
    int probing;
    int watching, stalled, closing;
    uint64_t watch_retry_at;
    /* membership */
    char **members;
    size_t nmembers;
    int64_t node_lease;
    int granting, resyncing;
    int connected;
    void (*closed_cb)(void *ud);
    void *closed_ud;
};

static uint64_t lnow(etcd_loop *el) {
    uv_update_time(el->loop);
    return uv_now(el->loop);
}

static void note(etcd_loop *el, int up, const char *err) {
    etcd *e = el->e;
    el->connected = up;
    pthread_mutex_lock(&e->mu);
    e->connected = up;
    if (!up && err)
        snprintf(e->last_err, sizeof(e->last_err), "%s", err);
    pthread_mutex_unlock(&e->mu);
}

/* --- curl on the loop ------------------------------------------------------------------------ */

static void check_done(etcd_loop *el);

static void on_poll(uv_poll_t *p, int status, int events) {
    sock_ctx *s = p->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(s->el->multi, s->fd, flags, &running);
    check_done(s->el);
}

static sock_ctx *sock_get(etcd_loop *el, curl_socket_t fd) {
    return fd >= 0 && (size_t)fd < el->nsocks ? el->socks[fd] : NULL;
}

static int on_socket(CURL *h, curl_socket_t fd, int what, void *ud, void *sockp) {
    (void)h;
    (void)sockp;
    etcd_loop *el = ud;
    sock_ctx *s = sock_get(el, fd);
    if (s == NULL)
        return 0; /* closed already (REMOVE after close) */
    if (what == CURL_POLL_REMOVE) {
        if (s->polling)
            uv_poll_stop(&s->poll);
        s->polling = 0;
        return 0;
    }
    int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&s->poll, ev, on_poll);
    s->polling = 1;
    return 0;
}

static void on_curl_timer(uv_timer_t *t) {
    etcd_loop *el = t->data;
    int running;
    curl_multi_socket_action(el->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(el);
}

static int on_timer(CURLM *m, long ms, void *ud) {
    (void)m;
    etcd_loop *el = ud;
    if (ms < 0)
        uv_timer_stop(&el->curl_timer);
    else
        uv_timer_start(&el->curl_timer, on_curl_timer, (uint64_t)ms, 0);
    return 0;
}

static curl_socket_t open_sock(void *ud, curlsocktype purpose, struct curl_sockaddr *a) {
    (void)purpose;
    etcd_loop *el = ud;
    curl_socket_t fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    if ((size_t)fd >= el->nsocks) {
        size_t n = (size_t)fd + 16;
        sock_ctx **ns = realloc(el->socks, n * sizeof(*ns));
        if (ns == NULL) {
            close(fd);
            return CURL_SOCKET_BAD;
        }
        memset(ns + el->nsocks, 0, (n - el->nsocks) * sizeof(*ns));
        el->socks = ns;
        el->nsocks = n;
    }
    sock_ctx *s = calloc(1, sizeof(*s));
    if (s == NULL || uv_poll_init_socket(el->loop, &s->poll, fd) != 0) {
        free(s);
        close(fd);
        return CURL_SOCKET_BAD;
    }
    s->fd = fd;
    s->el = el;
    s->poll.data = s;
    el->socks[fd] = s;
    return fd;
}

static void on_sock_closed(uv_handle_t *hd) {
    sock_ctx *s = hd->data;
    close(s->fd); /* only now: the fd number cannot be reused under a closing poll */
    free(s);
}

static int close_sock(void *ud, curl_socket_t fd) {
    etcd_loop *el = ud;
    sock_ctx *s = sock_get(el, fd);
    if (s == NULL)
        return close(fd);
    el->socks[fd] = NULL;
    if (!uv_is_closing((uv_handle_t *)&s->poll)) /* (a failed start closed every handle) */
        uv_close((uv_handle_t *)&s->poll, on_sock_closed);
    return 0;
}

static CURL *easy_new(etcd_loop *el, const char *url, const char *body, void *wdata,
                      size_t (*wfn)(char *, size_t, size_t, void *)) {
    CURL *h = curl_easy_init();
    if (h == NULL)
        return NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, wfn);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, wdata);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_sock);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, el);
    curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, close_sock);
    curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, el);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, el->e->hdrs);
    curl_easy_setopt(h, CURLOPT_PRIVATE, NULL);
    return h;
}

/* --- asynchronous calls ---------------------------------------------------------------------- */

static size_t areq_body(char *p, size_t size, size_t n, void *ud) {
    areq *rq = ud;
    return ubuf_add(&rq->resp, p, size * n) == 0 ? size * n : 0;
}

static void areq_closed(uv_handle_t *hd) {
    free(hd->data);
}

static void areq_free(areq *rq) {
    etcd_loop *el = rq->el;
    if (rq->prev)
        rq->prev->next = rq->next;
    else
        el->reqs = rq->next;
    if (rq->next)
        rq->next->prev = rq->prev;
    if (rq->h) {
        curl_multi_remove_handle(el->multi, rq->h);
        curl_easy_cleanup(rq->h);
    }
    free(rq->path);
    free(rq->body);
    free(rq->resp.p);
    uv_close((uv_handle_t *)&rq->retry, areq_closed);
}

static int areq_send(areq *rq) {
    etcd_loop *el = rq->el;
    char url[512];
    snprintf(url, sizeof(url), "%s%s", el->e->urls[rq->ep], rq->path);
    rq->resp.len = 0;
    rq->h = easy_new(el, url, rq->body, rq, areq_body);
    if (rq->h == NULL)
        return -1;
    uint64_t now = lnow(el);
    long left = rq->deadline > now ? (long)(rq->deadline - now) : 1;
    curl_easy_setopt(rq->h, CURLOPT_TIMEOUT_MS, left);
    curl_easy_setopt(rq->h, CURLOPT_CONNECTTIMEOUT_MS, left < 1000 ? left : 1000L);
    curl_easy_setopt(rq->h, CURLOPT_PRIVATE, rq);
    rq->attempts++;
    return curl_multi_add_handle(el->multi, rq->h) == CURLM_OK ? 0 : -1;
}

static void areq_retry(uv_timer_t *t) {
    areq *rq = t->data;
    if (areq_send(rq) != 0) {
        areq_cb cb = rq->cb;
        cb(rq->el, rq, NULL, "out of memory");
        areq_free(rq);
    }
}

/* Starts a call; cb(el, rq, reply, err) runs once (reply borrowed; NULL with err on
 * failure), then rq is freed. */
static areq *areq_start(etcd_loop *el, const char *path, json_t *body, uint64_t timeout_ms,
                        areq_cb cb) {
    areq *rq = calloc(1, sizeof(*rq));
    if (rq == NULL)
        return NULL;
    rq->el = el;
    rq->cb = cb;
    rq->path = strdup(path);
    rq->body = json_dumps(body, JSON_COMPACT);
    rq->deadline = lnow(el) + timeout_ms;
    rq->ep = el->cur;
    uv_timer_init(el->loop, &rq->retry);
    rq->retry.data = rq;
    rq->next = el->reqs;
    if (el->reqs)
        el->reqs->prev = rq;
    el->reqs = rq;
    if (rq->path == NULL || rq->body == NULL || areq_send(rq) != 0) {
        areq_free(rq);
        return NULL;
    }
    return rq;
}

static void areq_finish(areq *rq, CURLcode cc) {
    etcd_loop *el = rq->el;
    long status = 0;
    curl_easy_getinfo(rq->h, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(el->multi, rq->h);
    curl_easy_cleanup(rq->h);
    rq->h = NULL;
    json_t *reply = cc == CURLE_OK ? json_loadb(rq->resp.p ? rq->resp.p : "", rq->resp.len, 0, NULL)
                                   : NULL;
    char why[STORE_ERR_LEN];
    if (cc == CURLE_OK && status == 200 && json_is_object(reply) &&
        etcd_reply_error(reply) == NULL) {
        note(el, 1, NULL);
        rq->cb(el, rq, reply, NULL);
        json_decref(reply);
        areq_free(rq);
        return;
    }
    const char *url = el->e->urls[rq->ep];
    if (cc != CURLE_OK)
        snprintf(why, sizeof(why), "etcd at %s: %s", url, curl_easy_strerror(cc));
    else if (etcd_reply_error(reply))
        snprintf(why, sizeof(why), "etcd at %s: %s", url, etcd_reply_error(reply));
    else
        snprintf(why, sizeof(why), "etcd at %s: HTTP status %ld", url, status);
    int again = (cc != CURLE_OK || etcd_retryable(reply) || status != 200) && !rq->fixed;
    json_decref(reply);
    if (cc != CURLE_OK && !rq->fixed)
        note(el, 0, why);
    if (!rq->fixed) { /* the next try, and the calls after it, go to the next endpoint */
        if (rq->ep == el->cur)
            el->cur = (el->cur + 1) % el->e->nurls;
        rq->ep = el->cur;
    }
    uint64_t now = lnow(el), pause = rq->attempts % el->e->nurls == 0 ? 100 : 0;
    if (again && !el->closing && now + pause < rq->deadline) {
        uv_timer_start(&rq->retry, areq_retry, pause, 0);
        return;
    }
    rq->cb(el, rq, NULL, why);
    areq_free(rq);
}

/* --- the watch ------------------------------------------------------------------------------- */

static void watch_start(etcd_loop *el);
static void deliver(etcd_loop *el);

static int push_group(etcd_loop *el, json_t *resp, size_t from, size_t to, int64_t rev) {
    if (el->qhead + el->qn == el->qcap) {
        if (el->qhead > 0) {
            memmove(el->q, el->q + el->qhead, el->qn * sizeof(*el->q));
            el->qhead = 0;
        }
        if (el->qn == el->qcap) {
            size_t nc = el->qcap ? 2 * el->qcap : 64;
            wgroup *nq = realloc(el->q, nc * sizeof(*nq));
            if (nq == NULL)
                return -1;
            el->q = nq;
            el->qcap = nc;
        }
    }
    json_incref(resp);
    el->q[el->qhead + el->qn++] = (wgroup){resp, from, to, rev};
    return 0;
}

/* One framed object of the watch stream. */
static void watch_object(etcd_loop *el, const char *p, size_t len) {
    json_t *o = json_loadb(p, len, 0, NULL);
    json_t *res = json_object_get(o, "result");
    if (res == NULL) {
        json_decref(o);
        return;
    }
    if (etcd_int(res, "compact_revision") > 0 || json_is_true(json_object_get(res, "canceled"))) {
        /* Compacted past us (or cancelled): nothing can be resumed; reload instead. */
        int64_t crev = etcd_int(res, "compact_revision");
        if (crev > 0)
            el->next_rev = -crev; /* mark: reload (resync_start), then watch on */
        el->wabort = 1;           /* end this stream: watch_body makes curl stop it */
        json_decref(o);
        return;
    }
    json_t *evs = json_object_get(res, "events");
    size_t n = json_array_size(evs), from = 0;
    for (size_t i = 1; i <= n; i++) {
        int64_t rev = etcd_int(json_object_get(json_array_get(evs, from), "kv"), "mod_revision");
        int64_t r2 = i < n ? etcd_int(json_object_get(json_array_get(evs, i), "kv"), "mod_revision")
                           : -1;
        if (r2 == rev)
            continue;
        if (rev >= el->next_rev && push_group(el, res, from, i, rev) != 0)
            break;
        from = i;
    }
    json_decref(o);
    deliver(el);
}

static int framed(void *ud, const char *p, size_t n) {
    etcd_loop *el = ud;
    watch_object(el, p, n);
    return el->wabort; /* the stream must end: stop at this object */
}

static size_t watch_body(char *p, size_t size, size_t n, void *ud) {
    etcd_loop *el = ud;
    /* A short count makes curl end the transfer (CURLE_WRITE_ERROR). */
    return etcd_frame_feed(&el->wf, p, size * n, framed, el) == 0 ? size * n : 0;
}

static void watch_start(etcd_loop *el) {
    if (el->closing || el->watching || el->next_rev < 0)
        return;
    etcd *e = el->e;
    json_t *cr = json_object(), *body = json_object();
    size_t plen = e->prefix_len;
    char *end = malloc(plen + 1);
    if (end != NULL) {
        memcpy(end, e->prefix, plen + 1);
        end[plen - 1]++; /* the prefix ends in '/': '/' + 1 = '0' */
    }
    if (cr && body && end && etcd_set_b64(cr, "key", e->prefix, plen) == 0 &&
        etcd_set_b64(cr, "range_end", end, plen) == 0) {
        json_object_set_new(cr, "start_revision", json_integer(el->next_rev));
        json_object_set_new(body, "create_request", cr);
        cr = NULL;
        free(el->wbody);
        el->wbody = json_dumps(body, JSON_COMPACT);
    }
    json_decref(cr);
    json_decref(body);
    free(end);
    if (el->wbody == NULL)
        return;
    el->wcur = el->cur;
    el->wprobe_fail = 0;
    el->wabort = 0;
    snprintf(el->wurl, sizeof(el->wurl), "%s/v3/watch", e->urls[el->wcur]);
    etcd_frame_reset(&el->wf);
    el->watch = easy_new(el, el->wurl, el->wbody, el, watch_body);
    if (el->watch == NULL)
        return;
    curl_easy_setopt(el->watch, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
    /* A stream that carries nothing for this long is restarted (etcd says nothing while
     * nothing changes, so this is the time a silent, dead peer can hide). */
    curl_easy_setopt(el->watch, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(el->watch, CURLOPT_LOW_SPEED_TIME, 600L);
    curl_easy_setopt(el->watch, CURLOPT_PRIVATE, NULL);
    if (curl_multi_add_handle(el->multi, el->watch) != CURLM_OK) {
        curl_easy_cleanup(el->watch);
        el->watch = NULL;
        return;
    }
    el->watching = 1;
}

static void watch_ended(etcd_loop *el, CURLcode cc) {
    char why[STORE_ERR_LEN];
    snprintf(why, sizeof(why), "etcd watch at %s ended: %s", el->e->urls[el->wcur],
             cc == CURLE_OK ? "closed by etcd" : curl_easy_strerror(cc));
    curl_multi_remove_handle(el->multi, el->watch);
    curl_easy_cleanup(el->watch);
    el->watch = NULL;
    el->watching = 0;
    note(el, 0, why);
    if (el->cur == el->wcur)
        el->cur = (el->cur + 1) % el->e->nurls;
    el->watch_retry_at = lnow(el) + RETRY_MS;
}

/* --- delivery -------------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void member_set(etcd_loop *el, const char *name, int present) {
    for (size_t i = 0; i < el->nmembers; i++) {
        if (strcmp(el->members[i], name) != 0)
            continue;
        if (!present) {
            free(el->members[i]);
            el->members[i] = el->members[--el->nmembers];
        }
        return;
    }
    if (!present)
        return;
    char **nm = realloc(el->members, (el->nmembers + 1) * sizeof(*nm));
    if (nm == NULL)
        return;
    el->members = nm;
    if ((nm[el->nmembers] = strdup(name)) != NULL)
        el->nmembers++;
}

static void members_tell(etcd_loop *el) {
    /* This node counts as a member even while its own key is away (a lapse). */
    int self = 0;
    for (size_t i = 0; i < el->nmembers; i++)
        self |= strcmp(el->members[i], el->e->node) == 0;
    if (!self)
        member_set(el, el->e->node, 1);
    qsort(el->members, el->nmembers, sizeof(char *), cmp_str);
    el->f.members(el->f.ud, (const char *const *)el->members, el->nmembers);
}

/* Delivers one group. Returns 0 when taken, 1 when the follower said "not yet". */
static int deliver_group(etcd_loop *el, wgroup *g) {
    etcd *e = el->e;
    json_t *evs = json_object_get(g->resp, "events");
    size_t n = g->to - g->from, nch = 0;
    store_change *ch = calloc(n ? n : 1, sizeof(*ch));
    json_t **keep = calloc(n ? n : 1, sizeof(*keep));
    int own = 0, members = 0, rc = 0;
    if (ch == NULL || keep == NULL) {
        free(ch);
        free(keep);
        return 1; /* try again later */
    }
    /* instances first, then events (in the order the commit wrote them) */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = g->from; i < g->to; i++) {
            json_t *ev = json_array_get(evs, i), *kv = json_object_get(ev, "kv");
            int del = json_is_string(json_object_get(ev, "type")) &&
                      strcmp(json_string_value(json_object_get(ev, "type")), "DELETE") == 0;
            size_t klen;
            char *key = etcd_unb64(json_string_value(json_object_get(kv, "key")), &klen);
            if (key == NULL || klen < e->prefix_len || memcmp(key, e->prefix, e->prefix_len) != 0) {
                free(key);
                continue;
            }
            const char *k = key + e->prefix_len;
            size_t vlen;
            const char *vb = json_string_value(json_object_get(kv, "value"));
            if (pass == 0 && strncmp(k, "instances/", 10) == 0) {
                store_change *c = &ch[nch];
                if (del) {
                    c->kind = STORE_DELETE;
                    snprintf(c->inst.id, sizeof(c->inst.id), "%s", k + 10);
                    nch++;
                } else {
                    char *v = etcd_unb64(vb ? vb : "", &vlen);
                    if (v && etcd_inst_parse(v, vlen, &c->inst, &keep[nch]) == 0) {
                        c->kind = STORE_PUT;
                        c->inst.lease = etcd_int(kv, "lease");
                        snprintf(c->id_out, sizeof(c->id_out), "%s", c->inst.id);
                        nch++;
                    } else {
                        json_decref(keep[nch]);
                        keep[nch] = NULL;
                    }
                    free(v);
                }
            } else if (pass == 1 && strncmp(k, "events/", 7) == 0 && !del) {
                store_change *c = &ch[nch];
                char *v = etcd_unb64(vb ? vb : "", &vlen);
                if (v && etcd_event_parse(v, vlen, &c->event, &keep[nch]) == 0) {
                    c->kind = STORE_EVENT_ONLY;
                    c->has_event = 1;
                    nch++;
                } else {
                    json_decref(keep[nch]);
                    keep[nch] = NULL;
                }
                free(v);
            } else if (pass == 0 && strncmp(k, "txn/", 4) == 0 && !del &&
                       strcmp(k + 4, e->node) == 0) {
                own = 1;
            } else if (pass == 0 && strncmp(k, "nodes/", 6) == 0) {
                members = 1;
            }
            free(key);
        }
    }
    for (size_t i = 0; i < nch; i++)
        ch[i].rev = g->rev;
    if (own || nch > 0)
        rc = el->f.changes(el->f.ud, g->rev, own, ch, nch);
    if (rc == 0 && members) {
        for (size_t i = g->from; i < g->to; i++) {
            json_t *ev = json_array_get(evs, i), *kv = json_object_get(ev, "kv");
            size_t klen;
            char *key = etcd_unb64(json_string_value(json_object_get(kv, "key")), &klen);
            if (key && klen > e->prefix_len + 6 &&
                memcmp(key, e->prefix, e->prefix_len) == 0 &&
                strncmp(key + e->prefix_len, "nodes/", 6) == 0)
                member_set(el, key + e->prefix_len + 6,
                           !json_is_string(json_object_get(ev, "type")));
            free(key);
        }
        members_tell(el);
    }
    for (size_t i = 0; i < n; i++)
        json_decref(keep[i]);
    free(keep);
    free(ch);
    return rc;
}

static void deliver(etcd_loop *el) {
    if (el->stalled || el->closing)
        return;
    while (el->qn > 0) {
        wgroup *g = &el->q[el->qhead];
        if (deliver_group(el, g) != 0) {
            el->stalled = 1;
            return;
        }
        el->next_rev = g->rev + 1;
        pthread_mutex_lock(&el->e->mu);
        el->e->load_rev = g->rev;
        pthread_mutex_unlock(&el->e->mu);
        json_decref(g->resp);
        el->qhead++;
        el->qn--;
    }
    el->qhead = 0;
}

static void on_kick(uv_timer_t *t) {
    deliver(t->data);
}

void etcd_resume(store *st) {
    etcd_loop *el = ((etcd *)st)->loop;
    if (el == NULL || el->closing)
        return;
    el->stalled = 0;
    uv_timer_start(&el->kick, on_kick, 0, 0);
}

static void check_done(etcd_loop *el) {
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(el->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *h = m->easy_handle;
        CURLcode cc = m->data.result;
        if (h == el->watch) {
            watch_ended(el, cc);
            continue;
        }
        areq *rq = NULL;
        curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&rq);
        if (rq != NULL)
            areq_finish(rq, cc);
    }
}

/* --- membership and keepalives ----------------------------------------------------------- */

static void put_node_done(etcd_loop *el, areq *rq, json_t *reply, const char *err) {
    (void)rq;
    (void)reply;
    (void)err;
    el->granting = 0;
}

static void grant_done(etcd_loop *el, areq *rq, json_t *reply, const char *err) {
    (void)rq;
    (void)err;
    int64_t id = reply ? etcd_int(reply, "ID") : 0;
    if (id == 0) {
        el->granting = 0;
        return;
    }
    el->node_lease = id;
    etcd *e = el->e;
    size_t n = e->prefix_len + 6 + strlen(e->node) + 1;
    char *key = malloc(n);
    json_t *body = json_object();
    char val[160];
    snprintf(val, sizeof(val), "{\"name\":\"%s\",\"pid\":%ld}", e->node, (long)getpid());
    if (key && body) {
        snprintf(key, n, "%snodes/%s", e->prefix, e->node);
        etcd_set_b64(body, "key", key, strlen(key));
        etcd_set_b64(body, "value", val, strlen(val));
        json_object_set_new(body, "lease", json_integer(id));
        if (areq_start(el, "/v3/kv/put", body, (uint64_t)e->timeout_ms, put_node_done) == NULL)
            el->granting = 0;
    } else {
        el->granting = 0;
    }
    free(key);
    json_decref(body);
}

static void node_join(etcd_loop *el) {
    if (el->granting || el->closing)
        return;
    json_t *body = json_pack("{s:i}", "TTL", ETCD_NODE_TTL_S);
    el->granting = 1;
    if (body == NULL || areq_start(el, "/v3/lease/grant", body, (uint64_t)el->e->timeout_ms,
                                   grant_done) == NULL)
        el->granting = 0;
    json_decref(body);
}

static void keepalive_done(etcd_loop *el, areq *rq, json_t *reply, const char *err) {
    (void)rq;
    (void)err;
    if (reply == NULL)
        return;
    if (etcd_int(json_object_get(reply, "result"), "TTL") <= 0) {
        el->node_lease = 0; /* ran out (etcd was away longer than the node TTL): join again */
        node_join(el);
    }
}

/* The watch cannot resume (etcd compacted the revisions it needs): read every instance
 * as of now, let the follower make its catalog that, and watch on from there. */
static void resync_done(etcd_loop *el, areq *rq, json_t *reply, const char *err) {
    (void)rq;
    el->resyncing = 0;
    if (reply == NULL) {
        note(el, 0, err);
        return; /* the next tick tries again */
    }
    json_t *kvs = json_object_get(reply, "kvs"), *kv;
    size_t n = json_array_size(kvs), i, got = 0;
    store_instance *insts = calloc(n ? n : 1, sizeof(*insts));
    json_t **keep = calloc(n ? n : 1, sizeof(*keep));
    if (insts == NULL || keep == NULL) {
        free(insts);
        free(keep);
        return;
    }
    json_array_foreach(kvs, i, kv) {
        size_t vlen;
        char *v = etcd_unb64(json_string_value(json_object_get(kv, "value")) ?: "", &vlen);
        if (v && etcd_inst_parse(v, vlen, &insts[got], &keep[got]) == 0) {
            insts[got].lease = etcd_int(kv, "lease");
            got++;
        } else {
            json_decref(keep[got]);
            keep[got] = NULL;
        }
        free(v);
    }
    int64_t rev = etcd_int(json_object_get(reply, "header"), "revision");
    el->f.resync(el->f.ud, rev, insts, got);
    for (size_t j = 0; j < got; j++)
        json_decref(keep[j]);
    free(keep);
    free(insts);
    el->next_rev = rev + 1;
    watch_start(el);
}

static void resync_start(etcd_loop *el) {
    if (el->resyncing)
        return;
    etcd *e = el->e;
    size_t n = e->prefix_len + 16;
    char *k = malloc(n), *end = malloc(n);
    json_t *body = json_object();
    if (k && end && body) {
        snprintf(k, n, "%sinstances/", e->prefix);
        snprintf(end, n, "%sinstances0", e->prefix);
        etcd_set_b64(body, "key", k, strlen(k));
        etcd_set_b64(body, "range_end", end, strlen(end));
        el->resyncing = 1;
        if (areq_start(el, "/v3/kv/range", body, (uint64_t)e->timeout_ms, resync_done) == NULL)
            el->resyncing = 0;
    }
    json_decref(body);
    free(k);
    free(end);
}

/* A watch says nothing while nothing changes, so a member that hangs, or that lost the
 * quorum (it no longer hears of new commits), would keep it silent for good: each tick
 * asks the watch's member for a linearizable read, and two failures in a row move the
 * watch to the next endpoint (it resumes from the next revision, nothing is lost). */
static void probe_done(etcd_loop *el, areq *rq, json_t *reply, const char *err) {
    (void)rq;
    (void)err;
    el->probing = 0;
    if (reply != NULL) {
        el->wprobe_fail = 0;
        return;
    }
    if (++el->wprobe_fail < 2 || !el->watching || el->closing)
        return;
    char why[STORE_ERR_LEN];
    snprintf(why, sizeof(why), "etcd at %s does not answer: moving the watch on",
             el->e->urls[el->wcur]);
    note(el, 0, why);
    curl_multi_remove_handle(el->multi, el->watch);
    curl_easy_cleanup(el->watch);
    el->watch = NULL;
    el->watching = 0;
    el->cur = (el->wcur + 1) % el->e->nurls;
    el->watch_retry_at = lnow(el);
    watch_start(el);
}

static void probe_watch(etcd_loop *el) {
    etcd *e = el->e;
    size_t n = e->prefix_len + 4;
    char *k = malloc(n);
    json_t *body = json_object();
    if (k != NULL && body != NULL) {
        snprintf(k, n, "%sseq", e->prefix);
        etcd_set_b64(body, "key", k, strlen(k));
        json_object_set_new(body, "count_only", json_true());
        size_t keep = el->cur;
        el->cur = el->wcur; /* areq_start sends to el->cur */
        areq *rq = areq_start(el, "/v3/kv/range", body, KEEPALIVE_MS, probe_done);
        el->cur = keep;
        if (rq != NULL) {
            rq->fixed = 1;
            el->probing = 1;
        }
    }
    free(k);
    json_decref(body);
}

static void on_tick(uv_timer_t *t) {
    etcd_loop *el = t->data;
    if (el->closing)
        return;
    if (el->node_lease == 0) {
        node_join(el);
    } else {
        json_t *body = json_pack("{s:I}", "ID", (json_int_t)el->node_lease);
        if (body)
            areq_start(el, "/v3/lease/keepalive", body, KEEPALIVE_MS, keepalive_done);
        json_decref(body);
    }
    if (el->watching && !el->probing)
        probe_watch(el);
    if (!el->watching && lnow(el) >= el->watch_retry_at) {
        if (el->next_rev < 0 && el->qn == 0 && !el->stalled)
            resync_start(el);
        else
            watch_start(el);
    }
}

static void renew_done(etcd_loop *el, areq *rq, json_t *reply, const char *err) {
    (void)el;
    if (reply == NULL)
        rq->user_cb(rq->ud, STORE_EIO, err);
    else if (etcd_int(json_object_get(reply, "result"), "TTL") <= 0)
        rq->user_cb(rq->ud, STORE_ENOTFOUND, "its lease ran out");
    else
        rq->user_cb(rq->ud, 0, NULL);
}

int etcd_renew(store *st, int64_t lease, void (*cb)(void *ud, int rc, const char *err),
               void *ud) {
    etcd_loop *el = ((etcd *)st)->loop;
    if (el == NULL || el->closing)
        return -EINVAL;
    json_t *body = json_pack("{s:I}", "ID", (json_int_t)lease);
    areq *rq = body ? areq_start(el, "/v3/lease/keepalive", body, (uint64_t)el->e->timeout_ms,
                                 renew_done)
                    : NULL;
    json_decref(body);
    if (rq == NULL)
        return -ENOMEM;
    rq->user_cb = cb;
    rq->ud = ud;
    return 0;
}

/* --- start / stop ------------------------------------------------------------------------------ */

int etcd_follow(store *st, uv_loop_t *loop, const store_follower *f, char *err,
                size_t errlen) {
    etcd *e = (etcd *)st;
    etcd_loop *el = calloc(1, sizeof(*el));
    if (el == NULL) {
        store_set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    el->e = e;
    el->loop = loop;
    el->f = *f;
    el->cur = e->cur;
    el->next_rev = e->load_rev + 1;
    el->multi = curl_multi_init();
    if (el->multi == NULL) {
        free(el);
        store_set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    curl_multi_setopt(el->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(el->multi, CURLMOPT_SOCKETDATA, el);
    curl_multi_setopt(el->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(el->multi, CURLMOPT_TIMERDATA, el);
    uv_timer_init(loop, &el->curl_timer);
    uv_timer_init(loop, &el->tick);
    uv_timer_init(loop, &el->kick);
    el->curl_timer.data = el->tick.data = el->kick.data = el;
    e->loop = el;
    for (size_t i = 0; i < e->ninit_members; i++)
        member_set(el, e->init_members[i], 1);
    members_tell(el);
    node_join(el);
    watch_start(el);
    uv_timer_start(&el->tick, on_tick, KEEPALIVE_MS, KEEPALIVE_MS);
    return 0;
}

static void finish_close(etcd_loop *el) {
    while (el->reqs) {
        areq *rq = el->reqs;
        if (rq->user_cb) /* a heartbeat still waiting: its client gets an answer */
            rq->user_cb(rq->ud, STORE_EIO, "the registry is stopping");
        areq_free(rq);
    }
    if (el->watch) {
        curl_multi_remove_handle(el->multi, el->watch);
        curl_easy_cleanup(el->watch);
        el->watch = NULL;
    }
    curl_multi_cleanup(el->multi); /* closes the cached connections: close_sock */
    el->multi = NULL;
    uv_close((uv_handle_t *)&el->curl_timer, NULL);
    uv_close((uv_handle_t *)&el->tick, NULL);
    uv_close((uv_handle_t *)&el->kick, NULL);
    if (el->closed_cb)
        el->closed_cb(el->closed_ud);
}

static void on_close_kick(uv_timer_t *t) {
    finish_close(t->data);
}

/* The node's lease is revoked on the way out: the others take its share at once rather
 * than after the node TTL. */
static void revoke_done(etcd_loop *el, areq *rq, json_t *reply, const char *err) {
    (void)rq;
    (void)reply;
    (void)err;
    el->node_lease = 0;
    uv_timer_start(&el->kick, on_close_kick, 0, 0);
}

void etcd_unfollow(store *st, void (*cb)(void *ud), void *ud) {
    etcd_loop *el = ((etcd *)st)->loop;
    if (el == NULL) {
        if (cb)
            cb(ud);
        return;
    }
    el->closed_cb = cb;
    el->closed_ud = ud;
    el->closing = 1;
    uv_timer_stop(&el->tick);
    json_t *body = el->node_lease ? json_pack("{s:I}", "ID", (json_int_t)el->node_lease) : NULL;
    if (body == NULL || areq_start(el, "/v3/lease/revoke", body, 1000, revoke_done) == NULL)
        uv_timer_start(&el->kick, on_close_kick, 0, 0);
    json_decref(body);
}

void etcd_loop_free(etcd *e) {
    etcd_loop *el = e->loop;
    if (el == NULL)
        return;
    for (size_t i = 0; i < el->qn; i++)
        json_decref(el->q[el->qhead + i].resp);
    free(el->q);
    for (size_t i = 0; i < el->nmembers; i++)
        free(el->members[i]);
    free(el->members);
    free(el->socks);
    etcd_frame_free(&el->wf);
    free(el->wbody);
    free(el);
    e->loop = NULL;
}

json_t *etcd_stats(store *st) {
    etcd *e = (etcd *)st;
    etcd_loop *el = e->loop;
    json_t *nodes = json_array(), *eps = json_array();
    for (size_t i = 0; el && i < el->nmembers; i++)
        json_array_append_new(nodes, json_string(el->members[i]));
    for (size_t i = 0; i < e->nurls; i++)
        json_array_append_new(eps, json_string(e->urls[i]));
    pthread_mutex_lock(&e->mu);
    json_t *o = json_pack("{s:s, s:s, s:o, s:b, s:I, s:o, s:s, s:s, s:I, s:i}", "backend", "etcd",
                          "endpoint", e->urls[el ? el->cur : e->cur_shared], "endpoints", eps,
                          "connected", el ? el->connected && el->watching : e->connected,
                          "revision", (json_int_t)e->load_rev, "nodes", nodes, "node", e->node,
                          "prefix", e->prefix, "timeout_ms", (json_int_t)e->timeout_ms,
                          "min_ttl_s", ETCD_MIN_TTL_S);
    if (o && !(el && el->connected) && e->last_err[0])
        json_object_set_new(o, "error", json_string(e->last_err));
    pthread_mutex_unlock(&e->mu);
    return o;
}
