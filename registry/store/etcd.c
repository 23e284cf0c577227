/* SPDX-License-Identifier: BSD-2-Clause */
/* etcd.c — the etcd v3 backend, the writer thread's half: open, load, apply, events.
 *
 * etcd has no maintained C client; this speaks its v3 JSON gateway (HTTP/1.1 POST of
 * JSON, keys and values in base64, 64-bit integers as strings) with a libcurl easy
 * handle, which is all the writer thread needs: its calls are synchronous by contract
 * (store.h). Every operation has a deadline (--etcd-timeout): within it a failed call
 * (refused, reset, timed out, "no leader", "leader changed") moves on to the next
 * endpoint and tries again; past it, the operation fails with a message naming etcd.
 *
 * A batch of changes (store_apply) is one etcd transaction: the keys it depends on are
 * read first (one `txn` of ranges), the changes are worked out in order against those
 * reads (a later change of the batch sees the earlier ones), and the result commits with
 * a compare on the mod revision of every key read and of the seq counter. When another
 * node changed one of them meanwhile, the compare fails and the batch is worked out
 * again from fresh reads: two nodes racing for one (service, host, port) end with one
 * id, and a verdict never resurrects or double-evicts an instance. A commit whose answer
 * was lost and that was sent again is recognised by this node's mark (P txn/NODE).
 */
#include "store/etcd_int.h"
#include "store/etcd.h"
#include "store/backend.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>

#define MAX_BATCH 32        /* changes per commit: etcd allows 128 operations per txn */
#define FACT_TTL_S 600      /* how long a recorded fact's name is kept (store_change.once) */
#define PAGE 2000           /* instances per range while loading */

static const char *str_of(const json_t *o, const char *k) {
    return json_string_value(json_object_get(o, k));
}

/* --- one call to etcd, with a deadline --------------------------------------------------- */

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    return ubuf_add(ud, p, size * n) == 0 ? size * n : 0;
}

static void set_connected(etcd *e, int up, const char *err) {
    pthread_mutex_lock(&e->mu);
    e->connected = up;
    e->cur_shared = e->cur;
    if (!up && err)
        snprintf(e->last_err, sizeof(e->last_err), "%s", err);
    pthread_mutex_unlock(&e->mu);
}

/* POSTs body to path on the current endpoint, moving to the next one and trying again
 * on failure until deadline (monotonic ms). *sent (may be NULL) is set when a request
 * may have reached etcd without its answer reaching us. Returns the reply (new
 * reference) or NULL with err filled. */
static json_t *call(etcd *e, const char *path, json_t *body, uint64_t deadline, int *sent,
                    char *err, size_t errlen) {
    CURL *h = e->easy;
    char *text = json_dumps(body, JSON_COMPACT);
    char url[512], why[STORE_ERR_LEN] = "no attempt";
    unsigned attempt = 0;
    if (text == NULL) {
        store_set_err(err, errlen, "etcd: out of memory");
        return NULL;
    }
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline && attempt > 0)
            break;
        long left = (long)(deadline > now ? deadline - now : 1);
        snprintf(url, sizeof(url), "%s%s", e->urls[e->cur], path);
        e->resp.len = 0;
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, left);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, left < 1000 ? left : 1000L);
        CURLcode cc = curl_easy_perform(h);
        attempt++;
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        json_t *reply = NULL;
        if (cc == CURLE_OK)
            reply = json_loadb(e->resp.p ? e->resp.p : "", e->resp.len, 0, NULL);
        if (cc == CURLE_OK && status == 200 && json_is_object(reply) &&
            etcd_reply_error(reply) == NULL) {
            free(text);
            set_connected(e, 1, NULL);
            return reply;
        }
        if (cc == CURLE_OK && json_is_object(reply) && etcd_reply_error(reply) != NULL &&
            !etcd_retryable(reply)) {
            store_set_err(err, errlen, "etcd at %s refused %s: %s", e->urls[e->cur], path,
                          etcd_reply_error(reply));
            json_decref(reply);
            free(text);
            return NULL;
        }
        if (cc != CURLE_OK)
            snprintf(why, sizeof(why), "%s", curl_easy_strerror(cc));
        else if (etcd_reply_error(reply))
            snprintf(why, sizeof(why), "%s", etcd_reply_error(reply));
        else
            snprintf(why, sizeof(why), "HTTP status %ld", status);
        json_decref(reply);
        /* A request that went out may have been applied; a refused connect was not. */
        if (sent && cc != CURLE_COULDNT_CONNECT)
            *sent = 1;
        set_connected(e, 0, why);
        e->cur = (e->cur + 1) % e->nurls;
        /* Every endpoint failed once: pause a little before the next round. */
        if (attempt % e->nurls == 0) {
            uint64_t pause = 50u * (attempt / e->nurls);
            if (pause > 250)
                pause = 250;
            now = now_ms();
            if (now + pause >= deadline)
                break;
            struct timespec ts = {0, (long)pause * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    free(text);
    store_set_err(err, errlen, "etcd unavailable: %s (last tried %s, %zu endpoint%s, %lld ms)",
                  why, e->urls[(e->cur + e->nurls - 1) % e->nurls], e->nurls,
                  e->nurls == 1 ? "" : "s", (long long)e->timeout_ms);
    return NULL;
}

static uint64_t deadline_of(etcd *e) {
    return now_ms() + (uint64_t)e->timeout_ms;
}

/* --- keys --------------------------------------------------------------------------------- */

static char *key_of(etcd *e, const char *what, const char *a, const char *b, int port) {
    char tail[32] = "";
    if (port > 0)
        snprintf(tail, sizeof(tail), "/%d", port);
    size_t n = e->prefix_len + strlen(what) + (a ? strlen(a) : 0) + (b ? strlen(b) + 1 : 0) +
               strlen(tail) + 1;
    char *k = malloc(n);
    if (k != NULL)
        snprintf(k, n, "%s%s%s%s%s%s", e->prefix, what, a ? a : "", b ? "/" : "", b ? b : "",
                 tail);
    return k;
}

/* The key just past every key that starts with prefix (etcd's range_end). */
static char *range_end(const char *prefix) {
    size_t n = strlen(prefix);
    char *r = strdup(prefix);
    if (r == NULL)
        return NULL;
    while (n > 0) {
        if ((unsigned char)r[n - 1] < 0xff) {
            r[n - 1]++;
            r[n] = '\0';
            return r;
        }
        n--;
    }
    r[0] = '\0';
    return r;
}

static json_t *range_req(const char *key, const char *end, int64_t limit, int64_t rev) {
    json_t *o = json_object();
    if (o == NULL || etcd_set_b64(o, "key", key, strlen(key)) != 0 ||
        (end && etcd_set_b64(o, "range_end", end, strlen(end)) != 0)) {
        json_decref(o);
        return NULL;
    }
    if (limit > 0)
        json_object_set_new(o, "limit", json_integer(limit));
    if (rev > 0)
        json_object_set_new(o, "revision", json_integer(rev));
    return o;
}

/* The value of kv (decoded, new buffer) or NULL. */
static char *kv_value(const json_t *kv, size_t *len) {
    const char *v = str_of(kv, "value");
    *len = 0;
    return etcd_unb64(v ? v : "", len);
}

/* --- open / close ---------------------------------------------------------------------------- */

static void etcd_close(store *st) {
    etcd *e = (etcd *)st;
    etcd_loop_free(e);
    if (e->easy)
        curl_easy_cleanup(e->easy);
    curl_slist_free_all(e->hdrs);
    for (size_t i = 0; i < e->nurls; i++)
        free(e->urls[i]);
    free(e->prefix);
    free(e->node);
    for (size_t i = 0; i < e->ninit_members; i++)
        free(e->init_members[i]);
    free(e->init_members);
    free(e->resp.p);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

static int parse_urls(etcd *e, const char *arg, char *err, size_t errlen) {
    const char *p = arg;
    if (*p == '\0') {
        store_set_err(err, errlen, "--etcd: no endpoint given (e.g. http://127.0.0.1:2379)");
        return -EINVAL;
    }
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0) {
            store_set_err(err, errlen, "--etcd: an empty endpoint in \"%s\"", arg);
            return -EINVAL;
        }
        if (e->nurls == ETCD_MAX_URLS) {
            store_set_err(err, errlen, "--etcd: more than %d endpoints", ETCD_MAX_URLS);
            return -EINVAL;
        }
        char *u = strndup(p, n);
        if (u == NULL)
            return -ENOMEM;
        while (n > 0 && u[n - 1] == '/')
            u[--n] = '\0';
        const char *host = strncmp(u, "http://", 7) == 0    ? u + 7
                           : strncmp(u, "https://", 8) == 0 ? u + 8
                                                            : NULL;
        if (host == NULL || *host == '\0' || strchr(host, '/') != NULL) {
            store_set_err(err, errlen, "--etcd: endpoint \"%s\" is not http://HOST:PORT or"
                          " https://HOST:PORT", u);
            free(u);
            return -EINVAL;
        }
        e->urls[e->nurls++] = u;
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

int store_etcd_test_break(store *st, int on) {
    if (st == NULL || st->be != &store_etcd_backend)
        return -EINVAL;
    ((etcd *)st)->broken = on != 0;
    return 0;
}

static int valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && strchr("._-", s[i]) == NULL)
            return 0;
    return 1;
}

static void global_init(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int etcd_open(const char *arg, const store_options *opt, store **out, char *err,
                     size_t errlen) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    etcd *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -ENOMEM;
    e->base.be = &store_etcd_backend;
    pthread_mutex_init(&e->mu, NULL);
    int rc = parse_urls(e, arg, err, errlen);
    const char *prefix = opt->prefix && *opt->prefix ? opt->prefix : ETCD_PREFIX_DEFAULT;
    char host[65] = "registryd";
    const char *node = opt->node_name;
    if (node == NULL) {
        if (gethostname(host, sizeof(host) - 1) != 0 || !valid_name(host))
            snprintf(host, sizeof(host), "registryd");
        node = host;
    }
    if (rc == 0 && !valid_name(node)) {
        store_set_err(err, errlen, "--node-name \"%s\": 1-64 of [A-Za-z0-9._-]", node);
        rc = -EINVAL;
    }
    if (rc == 0 && (strlen(prefix) > 200 || strchr(prefix, '\n') != NULL)) {
        store_set_err(err, errlen, "--etcd-prefix: at most 200 bytes, no newline");
        rc = -EINVAL;
    }
    if (rc != 0) {
        etcd_close(&e->base);
        return rc;
    }
    size_t pl = strlen(prefix);
    e->prefix = malloc(pl + 2);
    e->node = rc == 0 ? strdup(node) : NULL;
    if (e->prefix)
        snprintf(e->prefix, pl + 2, "%s%s", prefix, prefix[pl - 1] == '/' ? "" : "/");
    e->prefix_len = e->prefix ? strlen(e->prefix) : 0;
    e->timeout_ms = opt->timeout_ms > 0 ? opt->timeout_ms : ETCD_TIMEOUT_DEFAULT_MS;
    e->events_keep = opt->events_keep < 0 ? 0 : opt->events_keep;
    (void)pthread_once(&once, global_init);
    e->easy = curl_easy_init();
    if (e->prefix == NULL || e->node == NULL || e->easy == NULL) {
        etcd_close(&e->base);
        return -ENOMEM;
    }
    curl_easy_setopt(e->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e->easy, CURLOPT_WRITEDATA, &e->resp);
    curl_easy_setopt(e->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e->easy, CURLOPT_TCP_NODELAY, 1L);
    if ((e->hdrs = curl_slist_append(NULL, "Content-Type: application/json")) == NULL) {
        etcd_close(&e->base);
        return -ENOMEM;
    }
    curl_easy_setopt(e->easy, CURLOPT_HTTPHEADER, e->hdrs);
    *out = &e->base;
    return 0;
}

/* --- load ----------------------------------------------------------------------------------- */

typedef struct loaded {
    int64_t ord;                    /* registration order */
    int64_t create;                 /* create revision (ties) */
    char *text;
    size_t len;
    int64_t lease;
} loaded;

static int by_create(const void *a, const void *b) {
    const loaded *x = a, *y = b;
    if (x->ord != y->ord)
        return (x->ord > y->ord) - (x->ord < y->ord);
    return (x->create > y->create) - (x->create < y->create);
}

/* Reads the seq counter as of rev (0: now). Returns 0 or -1; *mod its mod revision. */
static int read_seq(etcd *e, int64_t rev, int64_t *seq, int64_t *mod, uint64_t deadline,
                    char *err, size_t errlen) {
    char *k = key_of(e, "seq", NULL, NULL, 0);
    json_t *rq = k ? range_req(k, NULL, 0, rev) : NULL;
    json_t *r = rq ? call(e, "/v3/kv/range", rq, deadline, NULL, err, errlen) : NULL;
    json_decref(rq);
    free(k);
    if (r == NULL)
        return -1;
    json_t *kv = json_array_get(json_object_get(r, "kvs"), 0);
    *seq = 0;
    *mod = 0;
    if (kv != NULL) {
        size_t len;
        char *v = kv_value(kv, &len);
        *seq = v ? strtoll(v, NULL, 10) : 0;
        *mod = etcd_int(kv, "mod_revision");
        free(v);
    }
    json_decref(r);
    return 0;
}

/* Appends the instances of one range reply to *all. Returns 0 or -ENOMEM. */
static int add_loaded(json_t *kvs, loaded **all, size_t *n, size_t *cap) {
    json_t *kv;
    size_t i;
    json_array_foreach(kvs, i, kv) {
        if (*n == *cap) {
            size_t nc = *cap ? 2 * *cap : 1024;
            loaded *na = realloc(*all, nc * sizeof(*na));
            if (na == NULL)
                return -ENOMEM;
            *all = na;
            *cap = nc;
        }
        loaded *l = &(*all)[*n];
        if ((l->text = kv_value(kv, &l->len)) == NULL)
            return -ENOMEM;
        l->create = etcd_int(kv, "create_revision");
        l->ord = etcd_ord_of(l->text, l->len);
        if (l->ord == 0)
            l->ord = l->create * 1024;
        l->lease = etcd_int(kv, "lease");
        (*n)++;
    }
    return 0;
}

/* The live nodes as of rev, for follow's first member list. */
static int read_nodes(etcd *e, int64_t rev, uint64_t deadline, char *err, size_t errlen) {
    char *k = key_of(e, "nodes/", NULL, NULL, 0), *end = k ? range_end(k) : NULL;
    json_t *rq = end ? range_req(k, end, 0, rev) : NULL;
    json_t *r = rq ? call(e, "/v3/kv/range", rq, deadline, NULL, err, errlen) : NULL;
    json_decref(rq);
    int rc = r ? 0 : STORE_EIO;
    json_t *kv;
    size_t i;
    json_array_foreach(json_object_get(r, "kvs"), i, kv) {
        size_t len;
        char *key = etcd_unb64(str_of(kv, "key"), &len);
        char **nm = key ? realloc(e->init_members, (e->ninit_members + 1) * sizeof(*nm)) : NULL;
        if (nm != NULL) {
            e->init_members = nm;
            if ((nm[e->ninit_members] = strdup(key + strlen(k))) != NULL)
                e->ninit_members++;
        }
        free(key);
    }
    json_decref(r);
    free(k);
    free(end);
    return rc;
}

/* Reads the keys in [from, end) page by page (page keys each, at most), in key order:
 * each(ud, kvs, rev) gets every page's kvs and the revision the first page was read at
 * (the later pages are read at that one too when pin is set: one consistent picture).
 * It stops when the range is done or each returns non-zero (returned). Returns 0, that
 * value, STORE_EIO or -ENOMEM. */
static int range_pages(etcd *e, const char *from, const char *end, int64_t page, int pin,
                       int (*each)(void *ud, json_t *kvs, int64_t rev), void *ud,
                       uint64_t deadline, char *err, size_t errlen) {
    char *key = strdup(from);
    size_t klen = key ? strlen(key) : 0;
    int64_t rev = 0;
    int rc = key ? 0 : -ENOMEM;
    while (rc == 0) {
        json_t *rq = range_req("", end, page, pin ? rev : 0);
        if (rq == NULL || etcd_set_b64(rq, "key", key, klen) != 0) {
            json_decref(rq);
            rc = -ENOMEM;
            break;
        }
        json_t *r = call(e, "/v3/kv/range", rq, deadline, NULL, err, errlen);
        json_decref(rq);
        if (r == NULL) {
            rc = STORE_EIO;
            break;
        }
        if (rev == 0)
            rev = etcd_int(json_object_get(r, "header"), "revision");
        json_t *kvs = json_object_get(r, "kvs");
        size_t nk = json_array_size(kvs);
        rc = each(ud, kvs, rev);
        if (rc != 0 || !json_is_true(json_object_get(r, "more")) || nk == 0) {
            json_decref(r);
            break;
        }
        size_t len;
        char *last = etcd_unb64(str_of(json_array_get(kvs, nk - 1), "key"), &len);
        json_decref(r);
        free(key);
        key = last ? malloc(len + 1) : NULL; /* the next key after last: last + "\0" */
        if (key == NULL) {
            free(last);
            rc = -ENOMEM;
            break;
        }
        memcpy(key, last, len);
        key[len] = '\0';
        klen = len + 1;
        free(last);
    }
    free(key);
    return rc;
}

typedef struct loading {
    loaded *all;
    size_t n, cap;
    int64_t rev;
} loading;

static int load_page(void *ud, json_t *kvs, int64_t rev) {
    loading *l = ud;
    l->rev = rev;
    return add_loaded(kvs, &l->all, &l->n, &l->cap);
}

static int etcd_load(store *st, int (*cb)(void *ud, const store_instance *inst), void *ud,
                     char *err, size_t errlen) {
    etcd *e = (etcd *)st;
    uint64_t deadline = deadline_of(e);
    char *from = key_of(e, "instances/", NULL, NULL, 0), *end = from ? range_end(from) : NULL;
    loading l = {0};
    int rc = from && end ? range_pages(e, from, end, PAGE, 1, load_page, &l, deadline, err,
                                       errlen)
                         : -ENOMEM;
    int64_t rev = l.rev;
    loaded *all = l.all;
    size_t n = l.n;
    free(from);
    free(end);
    int64_t seq = 0, mod;
    if (rc == 0 && read_seq(e, rev, &seq, &mod, deadline, err, errlen) != 0)
        rc = STORE_EIO;
    if (rc == 0)
        rc = read_nodes(e, rev, deadline, err, errlen);
    if (rc == 0) {
        e->load_rev = rev;
        e->last_seq = seq;
        if (n > 1)
            qsort(all, n, sizeof(*all), by_create);
    }
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) {
            store_instance si;
            json_t *keep;
            if (etcd_inst_parse(all[i].text, all[i].len, &si, &keep) == 0) {
                si.lease = all[i].lease;
                rc = cb(ud, &si);
            }
            json_decref(keep);
        }
        free(all[i].text);
    }
    free(all);
    if (rc == -ENOMEM)
        store_set_err(err, errlen, "out of memory loading from etcd");
    return rc;
}

/* --- apply ---------------------------------------------------------------------------------- */

/* What a batch knows of one key: as read from etcd, then as the batch's earlier changes
 * left it. */
typedef struct kst {
    char *key;
    int read;                       /* read from etcd: its mod revision is compared */
    int64_t mod;                    /* mod revision read (0: absent) */
    int exists;                     /* now (after the batch's earlier changes) */
    char *value;                    /* now, owned (NULL when absent) */
    size_t len;
    int64_t lease;                  /* put with this lease (-1: keep the key's own) */
    int dirty;                      /* written by the batch */
} kst;

typedef struct batch {
    etcd *e;
    int64_t read_rev;               /* the newest revision a read of the batch saw */
    kst **k;                        /* each apart: a kst * stays valid as keys are added */
    size_t n, cap;
} batch;

static void batch_clear(batch *b) {
    for (size_t i = 0; i < b->n; i++) {
        free(b->k[i]->key);
        free(b->k[i]->value);
        free(b->k[i]);
    }
    b->n = 0;
}

/* The key's state, added unread when new (NULL: out of memory). */
static kst *kget(batch *b, const char *key) {
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->k[i]->key, key) == 0)
            return b->k[i];
    if (b->n == b->cap) {
        size_t nc = b->cap ? 2 * b->cap : 64;
        kst **nk = realloc(b->k, nc * sizeof(*nk));
        if (nk == NULL)
            return NULL;
        b->k = nk;
        b->cap = nc;
    }
    kst *k = calloc(1, sizeof(*k));
    if (k == NULL || (k->key = strdup(key)) == NULL) {
        free(k);
        return NULL;
    }
    k->lease = -1;
    b->k[b->n++] = k;
    return k;
}

/* Reads every key of the batch not read yet, in one txn of ranges. */
static int kread(batch *b, uint64_t deadline, char *err, size_t errlen) {
    json_t *txn = json_object(), *succ = json_array();
    size_t want = 0;
    if (txn == NULL || succ == NULL || json_object_set_new(txn, "success", succ) != 0) {
        json_decref(txn);
        return -ENOMEM;
    }
    size_t *idx = malloc((b->n + 1) * sizeof(*idx));
    if (idx == NULL) {
        json_decref(txn);
        return -ENOMEM;
    }
    for (size_t i = 0; i < b->n; i++) {
        kst *k = b->k[i];
        if (k->read || k->dirty)
            continue;
        json_t *rr = range_req(k->key, NULL, 0, 0), *op = json_object();
        if (rr == NULL || op == NULL || json_object_set_new(op, "request_range", rr) != 0 ||
            json_array_append_new(succ, op) != 0) {
            json_decref(txn);
            free(idx);
            return -ENOMEM;
        }
        idx[want++] = i;
    }
    if (want == 0) {
        json_decref(txn);
        free(idx);
        return 0;
    }
    json_t *r = call(b->e, "/v3/kv/txn", txn, deadline, NULL, err, errlen);
    json_decref(txn);
    if (r == NULL) {
        free(idx);
        return STORE_EIO;
    }
    json_t *resps = json_object_get(r, "responses");
    int64_t rr = etcd_int(json_object_get(r, "header"), "revision");
    if (rr > b->read_rev)
        b->read_rev = rr;
    for (size_t j = 0; j < want; j++) {
        kst *k = b->k[idx[j]];
        json_t *kv = json_array_get(
            json_object_get(json_object_get(json_array_get(resps, j), "response_range"), "kvs"),
            0);
        k->read = 1;
        k->mod = 0;
        k->exists = 0;
        if (kv != NULL) {
            k->mod = etcd_int(kv, "mod_revision");
            k->exists = 1;
            if ((k->value = kv_value(kv, &k->len)) == NULL) {
                json_decref(r);
                free(idx);
                return -ENOMEM;
            }
        }
    }
    json_decref(r);
    free(idx);
    return 0;
}

/* The state of key (a new string, freed here) if the batch read or wrote it already:
 * returns 0 and sets *out; 1 when it must be read first (kread); -ENOMEM. */
static int kneed(batch *b, char *key, kst **out) {
    kst *k = key ? kget(b, key) : NULL;
    free(key);
    if (k == NULL)
        return -ENOMEM;
    *out = k;
    return !k->read && !k->dirty;
}

static int kset(kst *k, const char *v, size_t len, int64_t lease) {
    char *nv = NULL;
    if (v != NULL && (nv = malloc(len + 1)) == NULL)
        return -ENOMEM;
    if (nv) {
        memcpy(nv, v, len);
        nv[len] = '\0';
    }
    free(k->value);
    k->value = nv;
    k->len = len;
    k->exists = v != NULL;
    k->lease = lease;
    k->dirty = 1;
    return 0;
}

static char *inst_key(etcd *e, const char *id) {
    return key_of(e, "instances/", id, NULL, 0);
}

static char *endpoint_key(etcd *e, const char *service, const char *host, int port) {
    char *k = key_of(e, "endpoints/", service, host, 0);
    if (k == NULL)
        return NULL;
    size_t n = strlen(k) + 16;
    char *r = malloc(n);
    if (r)
        snprintf(r, n, "%s/%d", k, port);
    free(k);
    return r;
}

/* Grants a lease of ttl seconds (rounded up to etcd's shortest). Returns its id or 0. */
static int64_t grant(etcd *e, int ttl, uint64_t deadline, char *err, size_t errlen) {
    json_t *rq = json_pack("{s:I}", "TTL", (json_int_t)(ttl < ETCD_MIN_TTL_S ? ETCD_MIN_TTL_S : ttl));
    json_t *r = rq ? call(e, "/v3/lease/grant", rq, deadline, NULL, err, errlen) : NULL;
    json_decref(rq);
    int64_t id = r ? etcd_int(r, "ID") : 0;
    json_decref(r);
    return id;
}

/* Puts the instance value v (JSON) under k. */
static int put_inst(kst *k, json_t *v, int64_t lease) {
    char *text = json_dumps(v, JSON_COMPACT);
    if (text == NULL)
        return -ENOMEM;
    int rc = kset(k, text, strlen(text), lease);
    free(text);
    return rc;
}

/* Works one change out against the batch's keys. Returns 0 (the change's own verdict is
 * in c->rc), 1 when a key must be read first (then call again), or -ENOMEM. */
static int work_change(batch *b, store_change *c, int64_t *leases, size_t ci, uint64_t deadline,
                       char *err, size_t errlen) {
    etcd *e = b->e;
    store_instance *in = &c->inst;
    c->rc = 0;
    c->existed = 0;
    c->id_out[0] = '\0';
    switch (c->kind) {
    case STORE_PUT: {
        kst *E;
        int wE = kneed(b, endpoint_key(e, in->service, in->host, in->port), &E);
        if (wE != 0)
            return wE;
        store_instance si = *in;
        int keep_maint = 0;
        int64_t ord = 0;
        if (E->exists) { /* registered again: the old id, and the operator's flag */
            kst *I;
            int wI = kneed(b, inst_key(e, E->value), &I);
            if (wI != 0)
                return wI;
            if (I->exists) {
                store_instance old;
                json_t *keep;
                if (etcd_inst_parse(I->value, I->len, &old, &keep) == 0) {
                    keep_maint = old.maintenance;
                    c->existed = 1;
                    snprintf(si.id, sizeof(si.id), "%s", old.id);
                    ord = etcd_int(keep, "ord");
                }
                json_decref(keep);
            }
        }
        if (!c->existed) {
            kst *I;
            int wI = kneed(b, inst_key(e, in->id), &I);
            if (wI != 0)
                return wI;
            if (I->exists) {
                c->rc = -EEXIST;
                return 0;
            }
            /* A new registration comes after every one committed before it: the
             * revision after the batch's reads (a re-added key of this very batch
             * keeps its etcd create revision, so that cannot say it). */
            ord = (b->read_rev + 1) * 1024 + (int64_t)ci;
        } else {
            si.maintenance = keep_maint;
        }
        int64_t lease = 0;
        if (si.ttl > 0 && !si.maintenance) /* (in maintenance it does not expire) */
            lease = leases[ci];
        char *ik = inst_key(e, si.id);
        kst *I = ik ? kget(b, ik) : NULL;
        free(ik);
        json_t *v = etcd_inst_json(&si, ord);
        int rc = I && v ? put_inst(I, v, lease) : -ENOMEM;
        json_decref(v);
        if (rc == 0)
            rc = kset(E, si.id, strlen(si.id), lease);
        if (rc != 0)
            return rc;
        snprintf(c->id_out, sizeof(c->id_out), "%s", si.id);
        c->inst.lease = lease; /* the catalog renews it on heartbeats */
        return 0;
    }
    case STORE_DELETE:
    case STORE_HEALTH:
    case STORE_MAINTENANCE: {
        kst *I;
        int wI = kneed(b, inst_key(e, in->id), &I);
        if (wI != 0)
            return wI;
        if (!I->exists) {
            c->rc = STORE_ENOTFOUND;
            return 0;
        }
        store_instance old;
        json_t *keep;
        if (etcd_inst_parse(I->value, I->len, &old, &keep) != 0) {
            json_decref(keep);
            c->rc = STORE_ENOTFOUND;
            return 0;
        }
        int rc = 0;
        if (c->kind == STORE_DELETE) {
            if (c->check_token && memcmp(old.token_hash, in->token_hash, STORE_HASH_LEN) != 0) {
                c->rc = STORE_EDENIED;
            } else {
                char *ek = endpoint_key(e, old.service, old.host, old.port);
                kst *E = ek ? kget(b, ek) : NULL;
                free(ek);
                rc = E ? kset(I, NULL, 0, 0) : -ENOMEM;
                if (rc == 0)
                    rc = kset(E, NULL, 0, 0);
            }
        } else {
            if (c->kind == STORE_HEALTH) {
                old.status = in->status;
                old.failures = in->failures;
                old.last_seen = in->last_seen;
                old.last_check = in->last_check;
            } else {
                old.maintenance = in->maintenance;
            }
            int64_t lease = -1; /* keep the key's own */
            if (c->kind == STORE_MAINTENANCE && old.ttl > 0) {
                /* An operator's instance does not expire: in maintenance its keys leave
                 * their lease; back in service they get a new one (its TTL starts
                 * over, as with a local store). */
                if (in->maintenance) {
                    lease = 0;
                } else {
                    if (leases[ci] == 0 &&
                        (leases[ci] = grant(e, old.ttl, deadline, err, errlen)) == 0) {
                        json_decref(keep);
                        return STORE_EIO;
                    }
                    lease = leases[ci];
                }
                char *ek = endpoint_key(e, old.service, old.host, old.port);
                kst *E = ek ? kget(b, ek) : NULL;
                free(ek);
                rc = E ? kset(E, old.id, strlen(old.id), lease) : -ENOMEM;
                c->inst.lease = lease;
            }
            json_t *v = rc == 0 ? etcd_inst_json(&old, etcd_int(keep, "ord")) : NULL;
            rc = rc == 0 && v ? put_inst(I, v, lease) : rc ? rc : -ENOMEM;
            json_decref(v);
        }
        json_decref(keep);
        return rc;
    }
    case STORE_EVENT_ONLY:
    default:
        return 0;
    }
}

/* A change that records a fact (store_change.once) commits only if no change named the
 * fact before: its key is created here, on a lease of its own (FACT_TTL_S). Returns 0
 * (the verdict in c->rc), 1 when the key must be read first, -ENOMEM or STORE_EIO. */
static int work_once(batch *b, store_change *c, int64_t *fact_lease, uint64_t deadline,
                     char *err, size_t errlen) {
    kst *F;
    int w = kneed(b, key_of(b->e, "facts/", c->once, NULL, 0), &F);
    if (w != 0)
        return w;
    if (F->exists) {
        c->rc = -EEXIST; /* recorded already (by another node) */
        return 0;
    }
    if (*fact_lease == 0 &&
        (*fact_lease = grant(b->e, FACT_TTL_S, deadline, err, errlen)) == 0)
        return STORE_EIO;
    return kset(F, "1", 1, *fact_lease);
}

static int add_op(json_t *arr, const char *kind, json_t *req) {
    json_t *op = json_object();
    if (req == NULL || op == NULL || json_object_set_new(op, kind, req) != 0) {
        json_decref(op);
        return -1;
    }
    return json_array_append_new(arr, op);
}

static json_t *put_req(const char *key, const char *v, size_t len, int64_t lease) {
    json_t *o = json_object();
    if (o == NULL || etcd_set_b64(o, "key", key, strlen(key)) != 0 ||
        etcd_set_b64(o, "value", v, len) != 0) {
        json_decref(o);
        return NULL;
    }
    if (lease > 0)
        json_object_set_new(o, "lease", json_integer(lease));
    else if (lease < 0)
        json_object_set_new(o, "ignore_lease", json_true());
    return o;
}

static int add_compare(json_t *arr, const char *key, int64_t mod) {
    json_t *o = json_pack("{s:s, s:s, s:I}", "target", "MOD", "result", "EQUAL", "mod_revision",
                          (json_int_t)mod);
    if (o == NULL || etcd_set_b64(o, "key", key, strlen(key)) != 0) {
        json_decref(o);
        return -1;
    }
    return json_array_append_new(arr, o);
}

/* Adds the deletion of every event older than the newest events_keep (seq below
 * last - keep + 1) to a commit: trimming rides in the commit, as in SQLite. */
static int add_trim(etcd *e, json_t *succ, int64_t last) {
    int64_t below = last - e->events_keep + 1;
    if (below <= 1)
        return 0;
    char to[48];
    snprintf(to, sizeof(to), "events/%020lld", (long long)below);
    char *k = key_of(e, "events/", NULL, NULL, 0), *end = key_of(e, to, NULL, NULL, 0);
    json_t *d = k && end ? range_req(k, end, 0, 0) : NULL;
    free(k);
    free(end);
    return add_op(succ, "request_delete_range", d);
}

/* One transaction of at most MAX_BATCH changes (etcd allows 128 operations a txn). */
static int apply_chunk(etcd *e, store_change *changes, size_t n, uint64_t deadline, char *err,
                       size_t errlen) {
    batch b = {.e = e};
    int64_t *leases = calloc(n, sizeof(*leases));
    char *seqk = key_of(e, "seq", NULL, NULL, 0), *mark = key_of(e, "txn/", e->node, NULL, 0);
    int rc = leases && seqk && mark ? 0 : -ENOMEM;
    int sent = 0;
    int64_t nonce = 0, fact_lease = 0;
    int *valid = calloc(n, sizeof(*valid));
    if (valid == NULL)
        rc = -ENOMEM;
    if (rc == 0 && e->broken) {
        store_set_err(err, errlen, "etcd unavailable: broken on purpose (a test)");
        rc = STORE_EIO;
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        valid[i] = store_change_valid(&changes[i]);
    /* The leases TTL'd registrations will live on: one each, granted once per batch. */
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (valid[i] && changes[i].kind == STORE_PUT && changes[i].inst.ttl > 0 &&
            (leases[i] = grant(e, changes[i].inst.ttl, deadline, err, errlen)) == 0)
            rc = STORE_EIO;
    while (rc == 0) {
        batch_clear(&b);
        int has_event = 0;
        for (size_t i = 0; i < n; i++)
            has_event |= valid[i] && changes[i].has_event;
        kst *S = has_event ? kget(&b, seqk) : NULL;
        if (has_event && S == NULL) {
            rc = -ENOMEM;
            break;
        }
        /* Work the changes out in order, reading what they need as they need it (most
         * batches need one round of reads: the keys every change names directly). */
        for (size_t i = 0; rc == 0 && i < n; i++) {
            int w;
            if (!valid[i]) {
                changes[i].rc = -EINVAL; /* refused as a whole, nothing of it written */
                continue;
            }
            if (changes[i].once != NULL) {
                changes[i].rc = 0;
                while ((w = work_once(&b, &changes[i], &fact_lease, deadline, err,
                                      errlen)) == 1)
                    if ((rc = kread(&b, deadline, err, errlen)) != 0)
                        break;
                if (rc == 0 && w != 0)
                    rc = w;
                if (rc != 0 || changes[i].rc != 0)
                    continue;
            }
            while ((w = work_change(&b, &changes[i], leases, i, deadline, err, errlen)) == 1)
                if ((rc = kread(&b, deadline, err, errlen)) != 0)
                    break;
            if (rc == 0 && w != 0)
                rc = w; /* -ENOMEM, or STORE_EIO (a lease could not be granted) */
        }
        if (rc == 0 && has_event && !S->read)
            rc = kread(&b, deadline, err, errlen);
        if (rc != 0)
            break;
        json_t *txn = json_object(), *cmp = json_array(), *succ = json_array();
        if (txn == NULL || cmp == NULL || succ == NULL ||
            json_object_set_new(txn, "compare", cmp) != 0 ||
            json_object_set_new(txn, "success", succ) != 0) {
            json_decref(txn);
            rc = -ENOMEM;
            break;
        }
        int bad = 0;
        for (size_t i = 0; i < b.n; i++) {
            kst *k = b.k[i];
            if (k == S)
                continue;
            if (k->read)
                bad |= add_compare(cmp, k->key, k->mod);
            if (!k->dirty)
                continue;
            if (k->exists) {
                bad |= add_op(succ, "request_put", put_req(k->key, k->value, k->len, k->lease));
            } else {
                json_t *d = json_object();
                if (d == NULL || etcd_set_b64(d, "key", k->key, strlen(k->key)) != 0)
                    bad = 1;
                bad |= add_op(succ, "request_delete_range", d);
            }
        }
        int64_t seq = 0, total = 0;
        if (has_event) {
            seq = S->exists ? strtoll(S->value, NULL, 10) : 0;
            bad |= add_compare(cmp, seqk, S->mod);
            for (size_t i = 0; i < n; i++)
                total += valid[i] && changes[i].has_event && changes[i].rc == 0;
        }
        /* Events that the bound drops at once are numbered but never written (a put
         * and a delete of one key cannot share a txn). */
        int64_t keep_from = seq + total - e->events_keep + 1;
        for (size_t i = 0; i < n; i++) {
            store_change *c = &changes[i];
            if (!c->has_event || c->rc != 0)
                continue;
            store_event ev = c->event;
            ev.seq = ++seq;
            if (c->kind == STORE_PUT && ev.id && strcmp(ev.id, c->inst.id) == 0)
                ev.id = c->id_out;
            c->event.seq = ev.seq;
            if (ev.seq < keep_from)
                continue;
            char sk[32];
            snprintf(sk, sizeof(sk), "events/%020lld", (long long)ev.seq);
            char *k = key_of(e, sk, NULL, NULL, 0);
            json_t *v = etcd_event_json(&ev, e->node);
            char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
            bad |= !k || !text || add_op(succ, "request_put", put_req(k, text, strlen(text), 0));
            json_decref(v);
            free(text);
            free(k);
            c->event.seq = ev.seq;
        }
        if (has_event) {
            char v[32];
            snprintf(v, sizeof(v), "%lld", (long long)seq);
            bad |= add_op(succ, "request_put", put_req(seqk, v, strlen(v), 0));
        }
        bad |= add_trim(e, succ, has_event ? seq : e->last_seq);
        char nv[64];
        nonce = (int64_t)++e->nonce;
        snprintf(nv, sizeof(nv), "%lld", (long long)nonce);
        bad |= add_op(succ, "request_put", put_req(mark, nv, strlen(nv), 0));
        if (bad) {
            json_decref(txn);
            rc = -ENOMEM;
            break;
        }
        json_t *r = call(e, "/v3/kv/txn", txn, deadline, &sent, err, errlen);
        json_decref(txn);
        if (r == NULL) {
            rc = STORE_EIO;
            break;
        }
        int64_t rev = etcd_int(json_object_get(r, "header"), "revision");
        int ok = json_is_true(json_object_get(r, "succeeded"));
        json_decref(r);
        if (!ok && sent) {
            /* A commit sent again after its answer was lost: if the first one went
             * through, our mark holds its nonce, and this batch is done. */
            char *mk = mark;
            json_t *rq = range_req(mk, NULL, 0, 0);
            json_t *mr = rq ? call(e, "/v3/kv/range", rq, deadline, NULL, err, errlen) : NULL;
            json_decref(rq);
            json_t *kv = json_array_get(json_object_get(mr, "kvs"), 0);
            size_t len;
            char *v = kv ? kv_value(kv, &len) : NULL;
            if (v && strtoll(v, NULL, 10) == nonce) {
                ok = 1;
                rev = etcd_int(kv, "mod_revision");
            }
            free(v);
            json_decref(mr);
            sent = 0;
        }
        if (ok) {
            for (size_t i = 0; i < n; i++)
                changes[i].rev = rev;
            if (has_event)
                e->last_seq = seq;
            break;
        }
        /* Another node changed a key we read: work the batch out again from fresh reads. */
        for (size_t i = 0; i < n; i++)
            changes[i].event.seq = 0;
        if (now_ms() >= deadline) {
            store_set_err(err, errlen, "etcd: the commit kept conflicting with other nodes'"
                                       " for %lld ms", (long long)e->timeout_ms);
            rc = STORE_EIO;
        }
    }
    batch_clear(&b);
    free(b.k);
    free(leases);
    free(valid);
    free(seqk);
    free(mark);
    if (rc == -ENOMEM) {
        store_set_err(err, errlen, "out of memory writing to etcd");
        rc = STORE_EIO;
    }
    return rc;
}

/* The writer never hands over more than max_batch changes; a longer list (a direct
 * caller) commits in transactions of MAX_BATCH, in order. */
static int etcd_apply(store *st, store_change *changes, size_t n, char *err, size_t errlen) {
    etcd *e = (etcd *)st;
    for (size_t off = 0; off < n; off += MAX_BATCH) {
        size_t k = n - off < MAX_BATCH ? n - off : MAX_BATCH;
        int rc = apply_chunk(e, changes + off, k, deadline_of(e), err, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* --- events --------------------------------------------------------------------------------- */

#define ENOUGH (-1000001) /* events_page: the limit is reached (no callback returns it) */

typedef struct reading {
    int64_t since;
    int limit, given;
    const char *service;
    int (*cb)(void *ud, const store_event *ev);
    void *ud;
} reading;

static int events_page(void *ud, json_t *kvs, int64_t rev) {
    reading *r = ud;
    json_t *kv;
    size_t i;
    int rc = 0;
    (void)rev;
    json_array_foreach(kvs, i, kv) {
        size_t len;
        char *v = kv_value(kv, &len);
        store_event ev;
        json_t *keep = NULL;
        if (v != NULL && etcd_event_parse(v, len, &ev, &keep) == 0 && ev.seq > r->since &&
            (r->service == NULL || (ev.service && strcmp(ev.service, r->service) == 0))) {
            r->given++;
            rc = r->cb(r->ud, &ev);
        }
        json_decref(keep);
        free(v);
        if (rc != 0)
            return rc;
        if (r->given >= r->limit)
            return ENOUGH; /* stop reading */
    }
    return 0;
}

static int etcd_events(store *st, int64_t since, int limit, const char *service,
                       int (*cb)(void *ud, const store_event *ev), void *ud, char *err,
                       size_t errlen) {
    etcd *e = (etcd *)st;
    char sk[48];
    snprintf(sk, sizeof(sk), "events/%020lld", (long long)(since < 0 ? 0 : since) + 1);
    char *from = key_of(e, sk, NULL, NULL, 0), *base = key_of(e, "events/", NULL, NULL, 0);
    char *end = base ? range_end(base) : NULL;
    reading r = {since, limit, 0, service, cb, ud};
    /* Without a service filter, the keys read are the events given. */
    int rc = limit == 0 ? 0
             : from && end ? range_pages(e, from, end, service ? 500 : limit, 0, events_page, &r,
                                         deadline_of(e), err, errlen)
                           : -ENOMEM;
    if (rc == ENOUGH)
        rc = 0; /* the limit, not the callback, stopped it */
    free(from);
    free(base);
    free(end);
    if (rc == -ENOMEM)
        store_set_err(err, errlen, "out of memory reading events from etcd");
    return rc;
}

static int64_t etcd_last_seq(store *st) {
    etcd *e = (etcd *)st;
    int64_t seq, mod;
    char err[STORE_ERR_LEN];
    if (read_seq(e, 0, &seq, &mod, deadline_of(e), err, sizeof(err)) == 0 && seq > e->last_seq)
        e->last_seq = seq;
    return e->last_seq;
}

static void etcd_set_events_keep(store *st, int64_t keep) {
    ((etcd *)st)->events_keep = keep;
}

const store_backend store_etcd_backend = {
    .scheme = "etcd",
    .open = etcd_open,
    .load = etcd_load,
    .apply = etcd_apply,
    .events = etcd_events,
    .last_seq = etcd_last_seq,
    .set_events_keep = etcd_set_events_keep,
    .close = etcd_close,
    .follow = etcd_follow,
    .resume = etcd_resume,
    .renew = etcd_renew,
    .unfollow = etcd_unfollow,
    .stats = etcd_stats,
    .max_batch = MAX_BATCH,
};
