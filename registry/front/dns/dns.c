/* SPDX-License-Identifier: BSD-2-Clause */
/* dns.c — the DNS front-end's server side (see dns.h): sockets, the question's way to the
 * core, and the records of the answer. Parsing and building are msg.c's.
 */
#include "front/dns/dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/dict.h"
#include "core/ops.h"
#include "front/dns/msg.h"
#include "front/net.h"

#define UDP_MAX 4096                /* largest UDP answer we send */
#define MAX_RECORDS 512             /* answer records considered (TCP fits ~4,000 A) */
#define INSTANCE_NAME_MAX (DNS_LABEL_MAX + 16 + 256)

struct dns_server {
    uv_loop_t *loop;
    dns_config cfg;
    core *core;                     /* borrowed */
    alog *log;                      /* borrowed */
    uv_udp_t udp;
    int udp_open, udp_closed;
    net_server *tcp;
    uint32_t serial;                /* the SOA serial: the start time */
    int attach_slot;                /* our dns_cache in lookup_set.attach */
    struct {
        uint64_t queries, answered, nxdomain, refused, formerr, truncated, tcp;
    } st;
    void (*done)(void *ud);
    void *done_ud;
    int closing;                    /* 1: waiting for TCP and UDP to close */
};

typedef struct tconn {
    net_conn net;                   /* must stay first */
    dns_server *s;
} tconn;

/* --- answering --------------------------------------------------------------------------- */

/* Encoded answers kept with a lookup set (core/lookup.h attachments), so a hot query
 * costs the core's lookup, a copy and dns_patch: one per (question form, type, EDNS,
 * size limit) and per rotation position. Bounded: sets of at most CACHE_CANDS instances,
 * CACHE_VARIANTS forms each, answers of at most DNS_EDNS_PAYLOAD bytes. */
#define CACHE_CANDS 8
#define CACHE_VARIANTS 4

typedef struct cached_variant {
    uint16_t qtype, max_size;
    uint8_t kind, edns;
    uint8_t *msg[CACHE_CANDS];      /* owned; by rotation position (NULL: not yet) */
    size_t len[CACHE_CANDS];
} cached_variant;

typedef struct dns_cache {
    cached_variant v[CACHE_VARIANTS];
    int n;
} dns_cache;

static void cache_free_fn(void *p) {
    dns_cache *dc = p;
    for (int i = 0; i < dc->n; i++)
        for (int k = 0; k < CACHE_CANDS; k++)
            free(dc->v[i].msg[k]);
    free(dc);
}

/* A lookup's answer, built inside the waiter (the set is valid only there). */
typedef struct lookup_result {
    waiter w;                       /* must stay first */
    dns_server *s;
    const dns_query *q;
    const dns_name *nm;
    size_t max_size;
    int err;                        /* the core's */
    int rc;                         /* 0: out/outlen hold the answer */
    uint8_t *out;
    size_t outlen;
    size_t n;                       /* instances, in rotation order from the pick */
    const cat_instance *in[MAX_RECORDS];
} lookup_result;

static int build_lookup_answer(lookup_result *lr);

static cached_variant *variant(dns_cache *dc, const lookup_result *lr, int make) {
    for (int i = 0; i < dc->n; i++) {
        cached_variant *v = &dc->v[i];
        if (v->qtype == lr->q->qtype && v->kind == lr->nm->kind && v->edns == lr->q->edns &&
            v->max_size == lr->max_size)
            return v;
    }
    if (!make || dc->n == CACHE_VARIANTS)
        return NULL;
    cached_variant *v = &dc->v[dc->n++];
    memset(v, 0, sizeof(*v));
    v->qtype = lr->q->qtype;
    v->kind = (uint8_t)lr->nm->kind;
    v->edns = lr->q->edns;
    v->max_size = (uint16_t)lr->max_size;
    return v;
}

static void on_lookup(waiter *w, const reply *r) {
    lookup_result *lr = (lookup_result *)w;
    lr->err = r->err;
    lr->rc = -1;
    if (r->err != RERR_NONE)
        return;
    lookup_set *set = r->set;
    int slot = lr->s->attach_slot;
    int cacheable = set->ncands <= CACHE_CANDS && lr->max_size <= DNS_EDNS_PAYLOAD &&
                    lr->q->edns_version == 0;
    dns_cache *dc = cacheable ? set->attach[slot] : NULL;
    cached_variant *v = dc ? variant(dc, lr, 0) : NULL;
    if (v != NULL && v->msg[r->pick] != NULL) {
        if ((lr->out = malloc(v->len[r->pick])) == NULL)
            return;
        memcpy(lr->out, v->msg[r->pick], v->len[r->pick]);
        lr->outlen = v->len[r->pick];
        if (dns_patch(lr->out, lr->outlen, lr->q) == 0) {
            lr->rc = 0;
            return;
        }
        free(lr->out); /* not this question after all: build it */
        lr->out = NULL;
    }
    size_t n = set->ncands < MAX_RECORDS ? set->ncands : MAX_RECORDS;
    for (size_t i = 0; i < n; i++)
        lr->in[i] = set->cands[(r->pick + i) % set->ncands];
    lr->n = n;
    lr->rc = build_lookup_answer(lr);
    if (lr->rc != 0 || !cacheable)
        return;
    if (dc == NULL && (dc = calloc(1, sizeof(*dc))) != NULL)
        set->attach[slot] = dc;
    if (dc != NULL && (v = variant(dc, lr, 1)) != NULL && v->msg[r->pick] == NULL &&
        (v->msg[r->pick] = malloc(lr->outlen)) != NULL) {
        memcpy(v->msg[r->pick], lr->out, lr->outlen);
        v->len[r->pick] = lr->outlen;
    }
}

static int service_exists(void *ud, const char *name) {
    dns_server *s = ud;
    return cat_service_get(core_catalog(s->core), name, strlen(name)) != NULL;
}

/* An instance's address as a record of qtype's family: 1 and *rr filled, or 0. */
static int addr_rr(const cat_instance *in, uint16_t want, const char *owner, dns_rr *rr) {
    memset(rr, 0, sizeof(*rr));
    rr->owner = owner;
    if ((want == DNS_TYPE_A || want == DNS_TYPE_ANY) && inet_pton(AF_INET, in->host, rr->addr) == 1) {
        rr->type = DNS_TYPE_A;
        return 1;
    }
    if ((want == DNS_TYPE_AAAA || want == DNS_TYPE_ANY) &&
        inet_pton(AF_INET6, in->host, rr->addr) == 1) {
        rr->type = DNS_TYPE_AAAA;
        return 1;
    }
    return 0;
}

static int is_literal(const char *host) {
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Fills answer records of addresses (A/AAAA by qtype) of the instances; an instance
 * registered with a hostname answers a CNAME to it (only the first, as a name has one
 * CNAME, and only when no address answers). Returns the count. */
static size_t address_records(const lookup_result *lr, uint16_t qtype, dns_rr *rr) {
    size_t n = 0;
    const cat_instance *named = NULL;
    for (size_t i = 0; i < lr->n; i++) {
        if (addr_rr(lr->in[i], qtype, NULL, &rr[n]))
            n++;
        else if (named == NULL && !is_literal(lr->in[i]->host))
            named = lr->in[i];
    }
    if (n == 0 && named != NULL &&
        (qtype == DNS_TYPE_A || qtype == DNS_TYPE_AAAA || qtype == DNS_TYPE_ANY)) {
        memset(&rr[0], 0, sizeof(rr[0]));
        rr[0].type = DNS_TYPE_CNAME;
        rr[0].target = named->host;
        n = 1;
    }
    return n;
}

/* The answer to a lookup-backed name (service, tagged, SRV) from lr->in[0..n). */
static int build_lookup_answer(lookup_result *lr) {
    static dns_rr rr[MAX_RECORDS], add[MAX_RECORDS];
    static char names[MAX_RECORDS][INSTANCE_NAME_MAX];
    dns_server *s = lr->s;
    const dns_query *q = lr->q;
    dns_answer a = {.rcode = DNS_RCODE_NOERROR, .aa = 1, .ttl = s->cfg.ttl, .zone = s->cfg.domain,
                    .serial = s->serial, .answer = rr, .additional = add};
    if (lr->nm->kind != DNS_NAME_SRV) {
        a.nanswer = address_records(lr, q->qtype, rr);
    } else if (q->qtype == DNS_TYPE_SRV || q->qtype == DNS_TYPE_ANY) {
        for (size_t i = 0; i < lr->n; i++) {
            const cat_instance *in = lr->in[i];
            memset(&rr[i], 0, sizeof(rr[i]));
            rr[i].type = DNS_TYPE_SRV;
            rr[i].priority = rr[i].weight = 1;
            rr[i].port = (uint16_t)in->port;
            if (is_literal(in->host)) {
                snprintf(names[i], sizeof(names[i]), "%s.instance.%s", in->id, s->cfg.domain);
                rr[i].target = names[i];
                if (addr_rr(in, DNS_TYPE_ANY, names[i], &add[a.nadditional]))
                    a.nadditional++;
            } else {
                rr[i].target = in->host;
            }
        }
        a.nanswer = lr->n;
    }
    a.soa = a.nanswer == 0; /* NODATA */
    return dns_build(q, &a, lr->max_size, &lr->out, &lr->outlen) == 0 ? 0 : -1;
}

/* Answers one parsed query into *out (malloc'ed) of at most max_size bytes. peer: who
 * asked, for the core's lookup log. Returns 0, or -1 to send nothing. */
static int answer(dns_server *s, const dns_query *q, dns_outcome oc, const peer *pr,
                  size_t max_size, uint8_t **out, size_t *outlen) {
    static dns_rr rr[MAX_RECORDS]; /* answers built here carry no additional records */
    static lookup_result lr;
    dns_answer a = {.rcode = DNS_RCODE_NOERROR, .aa = 1, .ttl = s->cfg.ttl, .zone = s->cfg.domain,
                    .serial = s->serial, .answer = rr};
    s->st.queries++;
    if (oc == DNS_PARSE_IGNORE)
        return -1;
    if (oc == DNS_PARSE_FORMERR) {
        a.rcode = DNS_RCODE_FORMERR;
        s->st.formerr++;
    } else if (oc == DNS_PARSE_NOTIMP) {
        a.rcode = DNS_RCODE_NOTIMP;
    } else if (q->edns && q->edns_version > 0) {
        a.rcode = DNS_RCODE_BADVERS;
    } else if (q->qclass != DNS_CLASS_IN && q->qclass != DNS_CLASS_ANY) {
        a.rcode = DNS_RCODE_REFUSED;
    } else {
        dns_name nm;
        switch (dns_classify(s->cfg.domain, q->qname, service_exists, s, &nm)) {
        case DNS_NAME_OUTSIDE:
            a.rcode = DNS_RCODE_REFUSED;
            break;
        case DNS_NAME_UNKNOWN:
            a.rcode = DNS_RCODE_NXDOMAIN;
            a.soa = 1;
            break;
        case DNS_NAME_EMPTY:
            a.soa = 1;
            break;
        case DNS_NAME_APEX:
            if (q->qtype == DNS_TYPE_SOA || q->qtype == DNS_TYPE_ANY) {
                memset(&rr[0], 0, sizeof(rr[0]));
                rr[0].type = DNS_TYPE_SOA;
                a.nanswer = 1;
            } else {
                a.soa = 1;
            }
            break;
        case DNS_NAME_INSTANCE: {
            if (core_reads_need_auth(s->core)) { /* as a lookup would be: no secret here */
                a.rcode = DNS_RCODE_REFUSED;
                break;
            }
            const cat_instance *in = cat_by_id(core_catalog(s->core), nm.id);
            if (in == NULL || !cat_in_service(in)) { /* as a lookup would hand out */
                a.rcode = DNS_RCODE_NXDOMAIN;
                a.soa = 1;
                break;
            }
            lr.n = 1;
            lr.in[0] = in;
            a.nanswer = address_records(&lr, q->qtype, rr);
            a.soa = a.nanswer == 0;
            break;
        }
        case DNS_NAME_SERVICE:
        case DNS_NAME_TAGGED:
        case DNS_NAME_SRV: {
            request rq = {.op = OP_LOOKUP, .service = nm.service,
                          .tag = nm.has_tag ? nm.tag : NULL, .description = ""};
            memset(&lr, 0, offsetof(lookup_result, in));
            lr.w.done = on_lookup;
            lr.s = s;
            lr.q = q;
            lr.nm = &nm;
            lr.max_size = max_size;
            lr.rc = -1;
            ops_run(s->core, &rq, pr, &lr.w);
            if (lr.err == RERR_NONE) {
                if (lr.rc != 0)
                    return -1;
                s->st.answered++;
                *out = lr.out;
                *outlen = lr.outlen;
                if (dns_truncated(*out, *outlen))
                    s->st.truncated++;
                return 0;
            }
            /* no such service, or no passing instance */
            a.rcode = lr.err == RERR_UNAUTHORIZED ? DNS_RCODE_REFUSED : DNS_RCODE_NXDOMAIN;
            a.soa = a.rcode == DNS_RCODE_NXDOMAIN;
            break;
        }
        }
    }
    if (a.rcode == DNS_RCODE_NXDOMAIN)
        s->st.nxdomain++;
    else if (a.rcode == DNS_RCODE_REFUSED)
        s->st.refused++;
    else if (a.rcode == DNS_RCODE_NOERROR)
        s->st.answered++;
    if (dns_build(q, &a, max_size, out, outlen) != 0)
        return -1;
    if (dns_truncated(*out, *outlen))
        s->st.truncated++;
    return 0;
}

/* --- UDP ------------------------------------------------------------------------------------ */

typedef struct usend {
    uv_udp_send_t req;
    uint8_t *buf;                   /* owned */
} usend;

static void on_sent(uv_udp_send_t *req, int status) {
    usend *u = (usend *)req;
    free(u->buf);
    free(u);
}

static void on_udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    static char slab[65536];        /* one datagram at a time, on the loop thread */
    buf->base = slab;
    buf->len = sizeof(slab);
}

/* "IP:PORT" (or "[IPv6]:PORT") and "IP" of a client, without printf: this runs for
 * every datagram. */
static void peer_of(const struct sockaddr *sa, char *addr, size_t alen, char *ip, size_t iplen) {
    int port, v6 = sa->sa_family == AF_INET6;
    if (v6) {
        uv_ip6_name((const struct sockaddr_in6 *)sa, ip, iplen);
        port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    } else {
        uv_ip4_name((const struct sockaddr_in *)sa, ip, iplen);
        port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    }
    size_t n = strlen(ip), k = 0;
    char digits[8];
    do
        digits[k++] = (char)('0' + port % 10);
    while ((port /= 10) > 0);
    if (n + k + 4 > alen) {
        addr[0] = '\0';
        return;
    }
    size_t o = 0;
    if (v6)
        addr[o++] = '[';
    memcpy(addr + o, ip, n);
    o += n;
    if (v6)
        addr[o++] = ']';
    addr[o++] = ':';
    while (k > 0)
        addr[o++] = digits[--k];
    addr[o] = '\0';
}

static void on_udp(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
                   unsigned flags) {
    dns_server *s = h->data;
    if (nread <= 0 || from == NULL || (flags & UV_UDP_PARTIAL))
        return; /* nothing, an error, or a datagram larger than any query: no answer */
    dns_query q;
    dns_outcome oc = dns_parse((const uint8_t *)buf->base, (size_t)nread, &q);
    char addr[NET_PEER_LEN], ip[INET6_ADDRSTRLEN];
    peer_of(from, addr, sizeof(addr), ip, sizeof(ip));
    peer pr = {addr, ip, dict_hash(ip, strlen(ip)), "dns"};
    uint8_t *out = NULL;
    size_t outlen = 0;
    /* UDP answers: the client's size, at most UDP_MAX (a client may claim 65535; larger
     * answers go over TCP, and nobody can make us send big datagrams to a forged source) */
    if (answer(s, &q, oc, &pr, q.udp_size < UDP_MAX ? q.udp_size : UDP_MAX, &out, &outlen) != 0)
        return;
    uv_buf_t b = uv_buf_init((char *)out, (unsigned)outlen);
    int rc = uv_udp_try_send(&s->udp, &b, 1, from);
    if (rc == (int)outlen) {
        free(out);
        return;
    }
    usend *u = malloc(sizeof(*u));
    if (u == NULL || uv_udp_send(&u->req, &s->udp, &b, 1, from, on_sent) != 0) {
        free(u);
        free(out); /* UDP: a lost answer is retried by the client */
        return;
    }
    u->buf = out;
}

/* --- TCP: a 2-byte length before each message (RFC 1035 4.2.2) ------------------------------ */

static void on_tcp_open(net_conn *nc) {
    ((tconn *)nc)->s = net_ud(nc->srv);
}

static void on_tcp_input(net_conn *nc) {
    tconn *c = (tconn *)nc;
    dns_server *s = c->s;
    peer pr = {nc->peer, nc->peer_ip, nc->peer_hash, "dns"};
    while (nc->in_len >= 2 && net_can_write(nc)) {
        size_t len = ((size_t)(uint8_t)nc->in[0] << 8) | (uint8_t)nc->in[1];
        if (nc->in_len < 2 + len) {
            if (nc->partial_since == 0)
                nc->partial_since = uv_now(s->loop);
            return;
        }
        s->st.tcp++;
        dns_query q;
        dns_outcome oc = dns_parse((const uint8_t *)nc->in + 2, len, &q);
        uint8_t *out = NULL;
        size_t outlen = 0;
        if (answer(s, &q, oc, &pr, DNS_TCP_MAX, &out, &outlen) == 0) {
            uint8_t pfx[2] = {(uint8_t)(outlen >> 8), (uint8_t)outlen};
            if (net_write(nc, (const char *)pfx, 2) == 0)
                net_write(nc, (const char *)out, outlen);
            free(out);
        }
        net_consume(nc, 2 + len);
        nc->partial_since = 0;
    }
    if (nc->in_len > 0 && nc->partial_since == 0)
        nc->partial_since = uv_now(s->loop);
}

/* --- the server ------------------------------------------------------------------------------ */

static void add_stats(void *ud, json_t *stats) {
    dns_server *s = ud;
    json_object_set_new(stats, "dns",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "queries",
                                  (json_int_t)s->st.queries, "answered", (json_int_t)s->st.answered,
                                  "nxdomain", (json_int_t)s->st.nxdomain, "refused",
                                  (json_int_t)s->st.refused, "formerr", (json_int_t)s->st.formerr,
                                  "truncated", (json_int_t)s->st.truncated, "tcp",
                                  (json_int_t)s->st.tcp));
}

void dns_config_defaults(dns_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->host, sizeof(cfg->host), "127.0.0.1");
    cfg->port = 8600;
    snprintf(cfg->domain, sizeof(cfg->domain), "registry");
    cfg->max_conns = 10000;
    cfg->idle_timeout_ms = 300000;
    cfg->request_timeout_ms = 10000;
}

int dns_new(uv_loop_t *loop, const dns_config *cfg, core *c, dns_server **out, char *err,
            size_t errlen) {
    dns_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->loop = loop;
    s->cfg = *cfg;
    s->core = c;
    s->log = core_log(c);
    s->serial = (uint32_t)time(NULL);
    int rc = core_stats_add(c, add_stats, s);
    if (rc == 0 && (s->attach_slot = core_lookup_attach(c, cache_free_fn)) < 0)
        rc = s->attach_slot;
    if (rc != 0) {
        dns_free(s);
        snprintf(err, errlen, "too many front-ends for stats or lookup encodings");
        return rc;
    }
    *out = s;
    return 0;
}

void dns_free(dns_server *s) {
    if (s == NULL)
        return;
    net_free(s->tcp);
    free(s);
}

/* UDP on host:port (port 0: any). Returns the bound port, or a negative libuv error. */
static int bind_udp(dns_server *s, const struct sockaddr *sa) {
    uv_udp_init(s->loop, &s->udp);
    s->udp.data = s;
    s->udp_open = 1;
    int rc = uv_udp_bind(&s->udp, sa, 0);
    if (rc != 0)
        return rc;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_udp_getsockname(&s->udp, (struct sockaddr *)&ss, &len);
    return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                    : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void on_udp_closed(uv_handle_t *h) {
    dns_server *s = h->data;
    s->udp_closed = 1;
}

/* TCP on the port UDP got. Returns 0 or a libuv error with err filled. */
static int listen_tcp(dns_server *s, int port, char *bound, size_t len, char *err, size_t errlen) {
    net_config nc = {.host = s->cfg.host, .port = port, .max_conns = s->cfg.max_conns,
                     .max_output_buffer = 4 * (DNS_TCP_MAX + 2),
                     .idle_timeout_ms = s->cfg.idle_timeout_ms,
                     .request_timeout_ms = s->cfg.request_timeout_ms};
    net_handler h = {.conn_size = sizeof(tconn), .max_input = DNS_TCP_MAX + 2 + (16u << 10),
                     .on_open = on_tcp_open, .on_input = on_tcp_input, .ud = s};
    int rc = net_new(s->loop, &nc, &h, s->log, &s->tcp, err, errlen);
    if (rc != 0)
        return rc;
    return net_listen(s->tcp, bound, len, err, errlen);
}

/* A port free for both TCP and UDP at the address (for --dns ...:0): a TCP socket bound
 * to port 0 says one, and a UDP socket must get the same; tried a few times. The probe
 * sockets are closed again (never connected, so the port is free at once). Returns the
 * port, or 0 when none was found. */
static int free_port_pair(const struct sockaddr *sa, socklen_t salen) {
    for (int attempt = 0; attempt < 20; attempt++) {
        int t = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int u = socket(sa->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        int port = 0;
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (t >= 0 && u >= 0 && bind(t, sa, salen) == 0 &&
            getsockname(t, (struct sockaddr *)&ss, &len) == 0) {
            port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                            : ntohs(((struct sockaddr_in *)&ss)->sin_port);
            if (bind(u, (struct sockaddr *)&ss, len) != 0)
                port = 0;
        }
        if (t >= 0)
            close(t);
        if (u >= 0)
            close(u);
        if (port != 0)
            return port;
    }
    return 0;
}

int dns_listen(dns_server *s, char *bound, size_t len, char *err, size_t errlen) {
    struct addrinfo hints = {0}, *res = NULL;
    char port[16];
    snprintf(port, sizeof(port), "%d", s->cfg.port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(s->cfg.host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve --dns address %s: %s", s->cfg.host, gai_strerror(gai));
        return UV_EINVAL;
    }
    /* Port 0: one port free for both first, then UDP and TCP bind it. */
    if (s->cfg.port == 0) {
        int p = free_port_pair(res->ai_addr, res->ai_addrlen);
        if (p == 0) {
            freeaddrinfo(res);
            snprintf(err, errlen, "cannot find a port free for both UDP and TCP on %s",
                     s->cfg.host);
            return UV_EADDRINUSE;
        }
        if (res->ai_family == AF_INET6)
            ((struct sockaddr_in6 *)res->ai_addr)->sin6_port = htons((uint16_t)p);
        else
            ((struct sockaddr_in *)res->ai_addr)->sin_port = htons((uint16_t)p);
    }
    int rc = bind_udp(s, res->ai_addr);
    if (rc < 0)
        snprintf(err, errlen, "cannot listen for DNS on %s:%d (udp): %s", s->cfg.host,
                 s->cfg.port, uv_strerror(rc));
    else
        rc = listen_tcp(s, rc, bound, len, err, errlen);
    freeaddrinfo(res);
    if (rc != 0)
        return rc;
    if ((rc = uv_udp_recv_start(&s->udp, on_udp_alloc, on_udp)) != 0) {
        snprintf(err, errlen, "cannot receive DNS on %s: %s", bound, uv_strerror(rc));
        return rc;
    }
    return 0;
}

void dns_stop_accepting(dns_server *s) {
    if (s->udp_open)
        uv_udp_recv_stop(&s->udp);
    if (s->tcp)
        net_stop_accepting(s->tcp);
}

static void tcp_closed(void *ud) {
    dns_server *s = ud;
    if (s->udp_open && !uv_is_closing((uv_handle_t *)&s->udp))
        uv_close((uv_handle_t *)&s->udp, on_udp_closed);
    if (s->done)
        s->done(s->done_ud);
}

void dns_close_all(dns_server *s, uint64_t deadline_ms, void (*done)(void *ud), void *ud) {
    s->done = done;
    s->done_ud = ud;
    if (s->tcp)
        net_close_all(s->tcp, deadline_ms, tcp_closed, s);
    else
        tcp_closed(s);
}
