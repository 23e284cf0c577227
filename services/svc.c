/* SPDX-License-Identifier: BSD-2-Clause */
/* svc.c — the scaffolding of the sample services (see svc.h): flags, the line server,
 * in-order replies, self-registration and shutdown.
 *
 * Lifetimes: a connection (struct conn) is referenced by its TCP handle and by each of
 * its unanswered requests; it is freed when the handle's close callback has run and
 * every request has been answered or cancelled-and-answered. A request (svc_req) is
 * freed by svc_req_reply when its connection is gone, or when its reply is handed to
 * uv_write (the write request then owns the bytes).
 *
 * Health checks: the registry probes each service every few seconds with a connection
 * that closes without a request. Such connections are counted, not logged one by one
 * (a line every PROBE_LOG_MS when there were any, and the rest at stop); a connection
 * is logged from its first byte on.
 */
#include "svc.h"

#include "registry_helper.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TAGS            32
#define STOP_TIMEOUT_MS     2000     /* how long shutdown waits for the deregistration */
#define LOG_PREVIEW         64       /* bytes of a request shown in the log */
#define PROBE_LOG_MS        60000    /* how often the count of probe connections is logged */

/* The one read-mostly global: the program name for log lines. */
static const char *svc_prog = "svc";

struct wreq {                        /* a reply on its way out */
    uv_write_t req;
    size_t len;
    char data[];
};

struct svc_req {
    struct conn *conn;
    svc_req *next;                   /* the connection's queue, request order */
    struct wreq *reply;              /* filled reply, not yet sent */
    int done;
    int cancelled;
    svc_cancel_fn cancel;
    void *cancel_data;
};

struct ctx;

struct conn {
    uv_tcp_t tcp;                    /* first: handle callbacks cast back */
    struct ctx *ctx;
    struct conn *prev, *next;        /* the server's list, for shutdown */
    char peer[REGC_ADDR_MAX];
    char *rbuf;                      /* max_line bytes of partial request */
    size_t rlen;
    svc_req *head, *tail;            /* unsent requests in order */
    size_t npending;
    int refs;                        /* the handle + each unanswered request */
    int closing;                     /* uv_close called */
    int reading;
    int draining;                    /* no more input: close once all is sent */
    int shut;                        /* uv_shutdown issued */
    uv_shutdown_t sreq;
    unsigned long nreq;
    int announced;                   /* sent a byte: logged, not a probe */
};

struct ctx {
    const svc_def *def;
    uv_loop_t *loop;
    uv_tcp_t server;
    uv_signal_t sigint, sigterm;
    struct conn *conns;
    regc_helper *helper;
    int stopping;
    uv_timer_t probe_timer;          /* logs probes every PROBE_LOG_MS */
    unsigned long probes;            /* connections closed without a byte, not yet logged */
};

void svc_log(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", svc_prog, line);
}

/* ---- requests ------------------------------------------------------------------------- */

uv_loop_t *svc_req_loop(const svc_req *r)
{
    return r->conn->ctx->loop;
}

const char *svc_req_peer(const svc_req *r)
{
    return r->conn->peer;
}

void svc_req_on_cancel(svc_req *r, svc_cancel_fn fn, void *data)
{
    r->cancel = fn;
    r->cancel_data = data;
}

static void conn_unref(struct conn *c)
{
    if (--c->refs > 0)
        return;
    free(c->rbuf);
    free(c);
}

static void conn_flush(struct conn *c);
static void conn_close(struct conn *c);

void svc_req_reply(svc_req *r, const char *text, size_t len)
{
    struct conn *c = r->conn;

    if (r->cancelled) {
        /* Its connection is gone (conn_close unlinked it): nobody to send it to. */
        free(r);
        conn_unref(c);
        return;
    }
    r->reply = malloc(sizeof *r->reply + len + 1);
    if (!r->reply) {
        svc_log("%s: out of memory for a reply; closing", c->peer);
        r->done = 1;
        conn_close(c);
        return;
    }
    if (len)
        memcpy(r->reply->data, text, len);
    r->reply->data[len] = '\n';
    r->reply->len = len + 1;
    r->done = 1;
    conn_flush(c);
}

/* ---- connections ------------------------------------------------------------------------ */

static void on_conn_closed(uv_handle_t *h)
{
    struct conn *c = (struct conn *)h;
    if (c->announced)
        svc_log("%s: closed after %lu request%s", c->peer, c->nreq, c->nreq == 1 ? "" : "s");
    else
        c->ctx->probes++;
    conn_unref(c);
}

/* Logs how many connections closed without a byte (health checks) since the last such
 * line, if any did. */
static void log_probes(struct ctx *ctx, const char *since)
{
    if (ctx->probes == 0)
        return;
    svc_log("%lu connection%s closed without a request (health checks) %s", ctx->probes,
            ctx->probes == 1 ? "" : "s", since);
    ctx->probes = 0;
}

static void on_probe_timer(uv_timer_t *t)
{
    log_probes(t->data, "in the last minute");
}

/* Closes c at once: drops unsent replies, cancels unanswered requests. */
static void conn_close(struct conn *c)
{
    svc_req *r, *next;
    if (c->closing)
        return;
    c->closing = 1;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->ctx->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    for (r = c->head; r; r = next) {
        next = r->next;
        if (r->done) {
            free(r->reply);
            free(r);
            conn_unref(c);
        } else {
            /* Stays alive until the service answers it (svc_req_reply frees it). */
            r->cancelled = 1;
            r->next = NULL;
            if (r->cancel)
                r->cancel(r, r->cancel_data);
        }
    }
    c->head = c->tail = NULL;
    c->npending = 0;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn_close((struct conn *)req->handle);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = (struct conn *)h;
    buf->base = c->rbuf + c->rlen;
    buf->len = c->ctx->def->max_line - c->rlen;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Reading stops while a client has too much unanswered or unsent, so a client that
 * pipelines without reading cannot make us buffer without bound. */
static void update_reading(struct conn *c)
{
    int want = !c->closing && !c->draining && c->npending < SVC_MAX_PENDING &&
               uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < SVC_MAX_OUTPUT;
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct conn *c = (struct conn *)req->handle;
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        svc_log("%s: write failed: %s", c->peer, uv_strerror(status));
        conn_close(c);
        return;
    }
    update_reading(c);
}

/* Sends every answered request at the head of the queue; the first unanswered one holds
 * the rest back, which keeps replies in request order. */
static void conn_flush(struct conn *c)
{
    while (c->head && c->head->done) {
        svc_req *r = c->head;
        struct wreq *w = r->reply;
        uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
        c->head = r->next;
        if (!c->head)
            c->tail = NULL;
        c->npending--;
        r->reply = NULL;
        free(r);
        conn_unref(c);
        int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
        if (rc < 0) {
            free(w);
            svc_log("%s: write failed: %s", c->peer, uv_strerror(rc));
            conn_close(c);
            return;
        }
    }
    if (c->draining && !c->head && !c->shut) {
        /* All answered and queued: let the writes finish, then close. */
        c->shut = 1;
        if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
            conn_close(c);
        return;
    }
    update_reading(c);
}

/* Appends a new request slot to c's queue. NULL when out of memory. */
static svc_req *new_req(struct conn *c)
{
    svc_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->conn = c;
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->npending++;
    c->refs++;
    return r;
}

/* Logs a request with its first bytes, control characters escaped. */
static void log_request(struct conn *c, const char *line, size_t len)
{
    char prev[LOG_PREVIEW * 4 + 4];
    size_t o = 0;
    for (size_t i = 0; i < len && i < LOG_PREVIEW; i++) {
        unsigned char ch = (unsigned char)line[i];
        if (ch < 0x20 || ch == 0x7f || ch == '\\')
            o += (size_t)snprintf(prev + o, sizeof prev - o, "\\x%02x", ch);
        else
            prev[o++] = (char)ch;
    }
    prev[o] = '\0';
    svc_log("%s: request #%lu (%zu bytes): %s%s", c->peer, c->nreq, len, prev,
            len > LOG_PREVIEW ? "..." : "");
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = (struct conn *)s;
    const svc_def *def = c->ctx->def;
    size_t start = 0, scan;

    if (c->closing)
        return;
    if (nread == UV_EOF) {
        /* The client is done sending; answer what it asked, then close. */
        if (c->rlen > 0)
            svc_log("%s: %zu bytes without a newline dropped at end of input", c->peer,
                    c->rlen);
        uv_read_stop(s);
        c->reading = 0;
        c->draining = 1;
        conn_flush(c);
        return;
    }
    if (nread < 0) {
        if (c->announced)
            svc_log("%s: read failed: %s", c->peer, uv_strerror((int)nread));
        conn_close(c);
        return;
    }
    if (nread > 0 && !c->announced) {
        c->announced = 1;
        svc_log("%s: connected", c->peer);
    }
    scan = c->rlen;
    c->rlen += (size_t)nread;
    for (;;) {
        char *nl = memchr(c->rbuf + scan, '\n', c->rlen - scan);
        if (!nl)
            break;
        size_t end = (size_t)(nl - c->rbuf), len = end - start;
        const char *line = c->rbuf + start;
        if (len > 0 && line[len - 1] == '\r')
            len--;   /* telnet and nc -C send CRLF */
        c->nreq++;
        log_request(c, line, len);
        svc_req *r = new_req(c);
        if (!r) {
            svc_log("%s: out of memory; closing", c->peer);
            conn_close(c);
            return;
        }
        def->on_request(r, line, len);
        if (c->closing)
            return;
        start = end + 1;
        scan = start;
    }
    if (start > 0) {
        memmove(c->rbuf, c->rbuf + start, c->rlen - start);
        c->rlen -= start;
    }
    if (c->rlen >= def->max_line) {
        svc_log("%s: request line over %zu bytes; closing", c->peer, def->max_line);
        svc_req *r = new_req(c);
        c->rlen = 0;
        uv_read_stop(s);
        c->reading = 0;
        c->draining = 1;
        if (!r) {
            conn_close(c);
            return;
        }
        svc_req_reply(r, def->too_long_reply, strlen(def->too_long_reply));
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    struct ctx *ctx = server->data;
    struct conn *c;
    struct sockaddr_storage ss;
    int namelen = sizeof ss, rc;
    char ip[INET6_ADDRSTRLEN];

    if (status < 0) {
        svc_log("accept: %s", uv_strerror(status));
        return;
    }
    c = calloc(1, sizeof *c);
    if (!c || !(c->rbuf = malloc(ctx->def->max_line))) {
        free(c);
        svc_log("out of memory accepting a connection");
        return;
    }
    c->ctx = ctx;
    uv_tcp_init(ctx->loop, &c->tcp);
    c->refs = 1;
    if ((rc = uv_accept(server, (uv_stream_t *)&c->tcp)) < 0) {
        svc_log("accept: %s", uv_strerror(rc));
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    snprintf(c->peer, sizeof c->peer, "?");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &namelen) == 0) {
        int port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                            : ntohs(((struct sockaddr_in *)&ss)->sin_port);
        if (uv_ip_name((struct sockaddr *)&ss, ip, sizeof ip) == 0)
            regc_format_addr(ip, port, c->peer, sizeof c->peer);
    }
    (void)uv_tcp_nodelay(&c->tcp, 1);
    c->next = ctx->conns;
    if (ctx->conns)
        ctx->conns->prev = c;
    ctx->conns = c;
    update_reading(c); /* logged at its first byte: a health check sends none */
}

/* ---- shutdown ---------------------------------------------------------------------------- */

static void on_helper_done(void *arg)
{
    struct ctx *ctx = arg;
    ctx->helper = NULL;
    uv_close((uv_handle_t *)&ctx->sigint, NULL);
    uv_close((uv_handle_t *)&ctx->sigterm, NULL);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    struct ctx *ctx = sig->data;
    if (ctx->stopping) {
        svc_log("second signal: exiting at once");
        _exit(1);
    }
    ctx->stopping = 1;
    svc_log("%s: deregistering and stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
    uv_close((uv_handle_t *)&ctx->server, NULL);
    while (ctx->conns)
        conn_close(ctx->conns);
    uv_close((uv_handle_t *)&ctx->probe_timer, NULL);
    /* The helper closes its handles and calls back; the signal handles go then, so a
     * second Ctrl-C during the deregistration still exits at once. */
    regc_helper_stop(ctx->helper, STOP_TIMEOUT_MS, on_helper_done, ctx);
}

static void helper_log(void *arg, const char *msg)
{
    svc_log("registry: %s", msg);
}

/* ---- start-up ------------------------------------------------------------------------------ */

static void usage(FILE *f, const svc_def *def)
{
    fprintf(f,
            "usage: %s [--listen HOST:PORT] [--registry HOST:PORT[,HOST:PORT...]] [--name NAME]\n"
            "       %*s [--ttl S] [--description TEXT] [--tag TAG]... [--auth-file PATH]\n"
            "       %s --help | --version\n"
            "\n%s\n\n"
            "  --listen HOST:PORT    address to serve on (default 127.0.0.1:0: any free port;\n"
            "                        the port actually bound is the one registered)\n"
            "  --registry HOST:PORT  the registry (default $REGISTRY_ADDR, else %s); a\n"
            "                        comma-separated list of its nodes: when the node in\n"
            "                        use is lost, the service registers at the next one\n"
            "  --name NAME           service name to register (default %s)\n"
            "  --ttl S               registration TTL in seconds, heartbeat every S/3;\n"
            "                        0 = no TTL (default 15)\n"
            "  --description TEXT    description to register\n"
            "  --tag TAG             a tag to register (repeatable)\n"
            "  --auth-file PATH      registry secret (default $REGISTRY_AUTH_FILE)\n"
            "\nPrints \"listening on HOST:PORT\" on stdout when ready; logs on stderr.\n"
            "SIGINT/SIGTERM deregister and exit 0. The service keeps serving while the\n"
            "registry is down and registers again when it comes back.\n",
            def->prog, (int)strlen(def->prog), "", def->prog, def->summary,
            REGC_DEFAULT_ADDR, def->default_name);
}

/* Resolves the listen address (blocking is fine before the loop runs). */
static int resolve_listen(const char *text, struct sockaddr_storage *ss, char *host,
                          size_t hostlen)
{
    regc_error err;
    uint16_t port;
    struct addrinfo hints, *res = NULL;
    char ps[8];
    int rc;

    if (regc_parse_addr(text, host, hostlen, &port, &err) < 0) {
        svc_log("--listen: %s", err.message);
        return -EINVAL;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    snprintf(ps, sizeof ps, "%u", (unsigned)port);
    if ((rc = getaddrinfo(host, ps, &hints, &res)) != 0) {
        svc_log("--listen: cannot resolve %s: %s", host, gai_strerror(rc));
        return -EINVAL;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* Parses a TTL in whole seconds 0..86400. */
static int parse_ttl(const char *s, int *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 86400)
        return -EINVAL;
    *out = (int)v;
    return 0;
}

int svc_main(int argc, char **argv, const svc_def *def)
{
    static const struct option opts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "registry", required_argument, NULL, 'r' },
        { "name", required_argument, NULL, 'n' },
        { "ttl", required_argument, NULL, 't' },
        { "description", required_argument, NULL, 'd' },
        { "tag", required_argument, NULL, 'g' },
        { "auth-file", required_argument, NULL, 'a' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 }
    };
    const char *listen_addr = "127.0.0.1:0", *registry = NULL, *name = def->default_name;
    const char *description = def->default_description, *auth_file = NULL;
    const char *tags[MAX_TAGS];
    size_t ntags = 0;
    int ttl = 15, opt, rc, status = 1;
    struct ctx ctx;
    struct sockaddr_storage ss;
    char host[REGC_HOST_MAX], bound[REGC_ADDR_MAX], ip[INET6_ADDRSTRLEN], errbuf[256];
    char *auth = NULL;
    regc_error err;
    uv_loop_t loop;

    svc_prog = def->prog;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'l': listen_addr = optarg; break;
        case 'r': registry = optarg; break;
        case 'n': name = optarg; break;
        case 'd': description = optarg; break;
        case 'a': auth_file = optarg; break;
        case 't':
            if (parse_ttl(optarg, &ttl) < 0) {
                svc_log("--ttl: '%s' is not a whole number of seconds 0-86400", optarg);
                return 2;
            }
            break;
        case 'g':
            if (ntags == MAX_TAGS) {
                svc_log("--tag: at most %d tags", MAX_TAGS);
                return 2;
            }
            tags[ntags++] = optarg;
            break;
        case 'h': usage(stdout, def); return 0;
        case 'V': printf("%s %s\n", def->prog, REGISTRY_VERSION); return 0;
        default:
            fprintf(stderr, "%s: try '%s --help'\n", def->prog, def->prog);
            return 2;
        }
    }
    if (optind < argc) {
        svc_log("unexpected argument '%s' (try --help)", argv[optind]);
        return 2;
    }
    if (!regc_valid_service(name)) {
        svc_log("--name: bad service name '%s' (want [a-z0-9._-], 1-63, starting with a "
                "letter or digit)", name);
        return 2;
    }
    registry = regc_default_addr(registry);
    {
        regc_node nodes[REGC_NODES_MAX];
        size_t nnodes;
        if (regc_parse_addr_list(registry, nodes, REGC_NODES_MAX, &nnodes, &err) < 0) {
            svc_log("--registry: %s", err.message);
            return 2;
        }
    }
    if (resolve_listen(listen_addr, &ss, host, sizeof host) < 0)
        return 2;
    if (regc_load_auth(auth_file, &auth, &err) < 0) {
        svc_log("%s", err.message);
        return 2;
    }
    /* A client that goes away mid-reply must not kill the service. */
    signal(SIGPIPE, SIG_IGN);

    memset(&ctx, 0, sizeof ctx);
    ctx.def = def;
    ctx.loop = &loop;
    if ((rc = uv_loop_init(&loop)) < 0) {
        svc_log("cannot start the event loop: %s", uv_strerror(rc));
        free(auth);
        return 1;
    }
    uv_tcp_init(&loop, &ctx.server);
    ctx.server.data = &ctx;
    if ((rc = uv_tcp_bind(&ctx.server, (struct sockaddr *)&ss, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&ctx.server, 511, on_connection)) < 0) {
        svc_log("cannot listen on %s: %s", listen_addr, uv_strerror(rc));
        uv_close((uv_handle_t *)&ctx.server, NULL);
        goto out;
    }
    int namelen = sizeof ss;
    uv_tcp_getsockname(&ctx.server, (struct sockaddr *)&ss, &namelen);
    int port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    uv_ip_name((struct sockaddr *)&ss, ip, sizeof ip);
    regc_format_addr(ip, port, bound, sizeof bound);

    /* Register the address actually bound; a wildcard lets the registry use the address
     * our registration comes from. */
    int wildcard = strcmp(ip, "0.0.0.0") == 0 || strcmp(ip, "::") == 0;
    regc_helper_config hc = {
        .registry = registry,
        .reg = { .service = name, .host = wildcard ? NULL : ip, .port = port,
                 .description = description, .tags = tags, .ntags = ntags, .ttl = ttl,
                 .check = REGC_CHECK_TCP },
        .auth = auth,
        .log = helper_log,
    };
    if ((rc = regc_helper_create(&loop, &hc, &ctx.helper, errbuf, sizeof errbuf)) < 0) {
        svc_log("%s", errbuf);
        uv_close((uv_handle_t *)&ctx.server, NULL);
        status = 2;
        goto out;
    }
    uv_signal_init(&loop, &ctx.sigint);
    uv_signal_init(&loop, &ctx.sigterm);
    ctx.sigint.data = ctx.sigterm.data = &ctx;
    uv_signal_start(&ctx.sigint, on_signal, SIGINT);
    uv_signal_start(&ctx.sigterm, on_signal, SIGTERM);

    printf("listening on %s\n", bound);
    fflush(stdout);
    svc_log("serving %s on %s; registering with the registry %s", name, bound, registry);
    regc_helper_start(ctx.helper);
    uv_timer_init(&loop, &ctx.probe_timer);
    ctx.probe_timer.data = &ctx;
    uv_timer_start(&ctx.probe_timer, on_probe_timer, PROBE_LOG_MS, PROBE_LOG_MS);
    uv_run(&loop, UV_RUN_DEFAULT);
    status = 0;
    log_probes(&ctx, "since the last count");
    svc_log("stopped");
out:
    /* Let the close callbacks of whatever is still closing run. */
    uv_run(&loop, UV_RUN_DEFAULT);
    if ((rc = uv_loop_close(&loop)) < 0) {
        svc_log("event loop not empty at exit: %s", uv_strerror(rc));
        status = status ? status : 1;
    }
    if (auth) {
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    return status;
}
