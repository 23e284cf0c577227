/* SPDX-License-Identifier: BSD-2-Clause */
/* registry_client.c — the blocking half of the client library: addresses, the auth
 * secret, one TCP connection with deadlines and line framing, and the typed operations
 * of the protocol. See registry_client.h for the contract.
 *
 * The socket is non-blocking from connect on; every wait is a poll() against an absolute
 * CLOCK_MONOTONIC deadline, so a silent or half-dead peer can never hang the caller for
 * longer than it asked.
 */
#include "registry_json.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

struct regc_conn {
    int fd;                          /* non-blocking socket, owned */
    int timeout_ms;                  /* default reply deadline; < 0: none */
    int broken;                      /* framing or pairing lost: refuse further use */
    char *auth;                      /* owned secret or NULL */
    volatile sig_atomic_t *interrupt;/* borrowed flag, see regc_set_interrupt */
    char peer[REGC_ADDR_MAX];        /* for messages */
    char *buf;                       /* REGC_MAX_LINE bytes of read buffer */
    size_t off;                      /* first unconsumed byte */
    size_t len;                      /* unconsumed bytes from off */
    size_t scanned;                  /* bytes from off known to hold no newline */
    const char *last;                /* last line read (into buf), or NULL */
    json_t *ev_obj;                  /* the last watch event decoded (regc_watch_next) */
    char *ev_detail;                 /* its rendered detail, or NULL */
    regc_node *nodes;                /* owned address list; NULL for regc_conn_from_fd */
    size_t nnodes;
    size_t cur;                      /* the node connected to, or tried last */
    int connect_ms;                  /* connect deadline on each node; < 0: none */
};

/* ---- errors --------------------------------------------------------------------------- */

/* Fills err (when given) and returns -errnum, so call sites can `return seterr(...)`. */
static int seterr(regc_error *err, regc_kind kind, int errnum, const char *code,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int seterr(regc_error *err, regc_kind kind, int errnum, const char *code,
                  const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->kind = kind;
        err->errnum = errnum;
        snprintf(err->code, sizeof err->code, "%s", code ? code : "");
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        /* One line, always: a registry message is foreign text. */
        for (char *p = err->message; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
    }
    return -errnum;
}

static void err_clear(regc_error *err)
{
    if (err) {
        err->kind = REGC_OK;
        err->errnum = 0;
        err->code[0] = '\0';
        err->message[0] = '\0';
    }
}

/* ---- addresses ------------------------------------------------------------------------ */

int regc_parse_addr(const char *text, char *host, size_t hostlen, uint16_t *port,
                    regc_error *err)
{
    const char *h, *colon;
    size_t hlen;
    char *end;
    long p;

    if (!text || !*text)
        return seterr(err, REGC_INVALID, EINVAL, NULL, "empty address (want HOST:PORT)");
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':')
            return seterr(err, REGC_INVALID, EINVAL, NULL,
                          "bad address '%s' (want [IPV6]:PORT)", text);
        h = text + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        struct in6_addr a6;
        char tmp[INET6_ADDRSTRLEN + 1];
        if (hlen == 0 || hlen >= sizeof tmp)
            return seterr(err, REGC_INVALID, EINVAL, NULL,
                          "bad address '%s' (not an IPv6 literal)", text);
        memcpy(tmp, h, hlen);
        tmp[hlen] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return seterr(err, REGC_INVALID, EINVAL, NULL,
                          "bad address '%s' (not an IPv6 literal)", text);
    } else {
        colon = strrchr(text, ':');
        if (!colon)
            return seterr(err, REGC_INVALID, EINVAL, NULL,
                          "bad address '%s' (want HOST:PORT)", text);
        h = text;
        hlen = (size_t)(colon - h);
        if (memchr(h, ':', hlen))
            return seterr(err, REGC_INVALID, EINVAL, NULL,
                          "bad address '%s' (write IPv6 as [ADDR]:PORT)", text);
        if (hlen == 0)
            return seterr(err, REGC_INVALID, EINVAL, NULL,
                          "bad address '%s' (missing host)", text);
        for (size_t i = 0; i < hlen; i++) {
            unsigned char ch = (unsigned char)h[i];
            if (!isalnum(ch) && ch != '.' && ch != '-' && ch != '_')
                return seterr(err, REGC_INVALID, EINVAL, NULL,
                              "bad address '%s' (bad character in host)", text);
        }
    }
    if (hlen > 253 || hlen + 1 > hostlen)
        return seterr(err, REGC_INVALID, EINVAL, NULL, "bad address '%s' (host too long)",
                      text);
    /* The port: digits only (strtol would take "+1", " 1", "0x1"). */
    const char *ps = colon + 1;
    if (!*ps || strspn(ps, "0123456789") != strlen(ps) || strlen(ps) > 5)
        return seterr(err, REGC_INVALID, EINVAL, NULL,
                      "bad address '%s' (port must be a number 0-65535)", text);
    errno = 0;
    p = strtol(ps, &end, 10);
    if (errno || *end || p < 0 || p > 65535)
        return seterr(err, REGC_INVALID, EINVAL, NULL,
                      "bad address '%s' (port must be a number 0-65535)", text);
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)p;
    return 0;
}

int regc_parse_addr_list(const char *text, regc_node *nodes, size_t max, size_t *n,
                         regc_error *err)
{
    /* One element: an address (at most "[" 253 "]:65535") and room to see it is longer. */
    char elem[REGC_ADDR_MAX + 8];
    regc_error e;
    size_t count = 0, pos = 0;
    int rc;

    *n = 0;
    if (!text || !*text)
        return seterr(err, REGC_INVALID, EINVAL, NULL, "empty address (want HOST:PORT)");
    if (max > REGC_NODES_MAX)
        max = REGC_NODES_MAX;
    if (!strchr(text, ',')) {
        /* One address: the messages it always had. */
        if (max < 1)
            return seterr(err, REGC_INVALID, EINVAL, NULL, "no room for an address");
        if ((rc = regc_parse_addr(text, nodes[0].host, sizeof nodes[0].host, &nodes[0].port,
                                  err)) < 0)
            return rc;
        if (nodes[0].port == 0)
            return seterr(err, REGC_INVALID, EINVAL, NULL, "bad address '%s' (port 0)", text);
        *n = 1;
        return 0;
    }
    for (const char *p = text, *comma;; p = comma + 1) {
        comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        pos++;
        if (len == 0)
            return seterr(err, REGC_INVALID, EINVAL, NULL,
                          "address list '%s': element %zu is empty (want HOST:PORT,HOST:PORT...)",
                          text, pos);
        if (count == max)
            return seterr(err, REGC_INVALID, EINVAL, NULL,
                          "address list: more than %zu nodes", max);
        if (len >= sizeof elem)
            return seterr(err, REGC_INVALID, EINVAL, NULL,
                          "address list, element %zu: bad address '%.40s...' (too long)", pos, p);
        memcpy(elem, p, len);
        elem[len] = '\0';
        if (regc_parse_addr(elem, nodes[count].host, sizeof nodes[count].host,
                            &nodes[count].port, &e) < 0)
            return seterr(err, REGC_INVALID, EINVAL, NULL, "address list, element %zu: %s",
                          pos, e.message);
        if (nodes[count].port == 0)
            return seterr(err, REGC_INVALID, EINVAL, NULL,
                          "address list, element %zu: bad address '%s' (port 0)", pos, elem);
        count++;
        if (!comma)
            break;
    }
    *n = count;
    return 0;
}

int regc_format_addr(const char *host, int port, char *buf, size_t len)
{
    int n = strchr(host, ':') ? snprintf(buf, len, "[%s]:%d", host, port)
                              : snprintf(buf, len, "%s:%d", host, port);
    return (n < 0 || (size_t)n >= len) ? -ENOSPC : 0;
}

const char *regc_default_addr(const char *arg)
{
    const char *env;
    if (arg && *arg)
        return arg;
    env = getenv(REGC_ADDR_ENV);
    if (env && *env)
        return env;
    return REGC_DEFAULT_ADDR;
}

int regc_valid_service(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 63)
        return 0;
    if (!islower((unsigned char)s[0]) && !isdigit((unsigned char)s[0]))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!(ch >= 'a' && ch <= 'z') && !isdigit(ch) && ch != '.' && ch != '_' && ch != '-')
            return 0;
    }
    return 1;
}

int regc_load_auth(const char *path, char **secret, regc_error *err)
{
    char buf[REGC_AUTH_MAX + 2];
    size_t n;
    FILE *f;
    int rc = 0, e;

    *secret = NULL;
    err_clear(err);
    if (!path || !*path)
        path = getenv(REGC_AUTH_ENV);
    if (!path || !*path)
        return 0;
    if (!(f = fopen(path, "re")))
        return seterr(err, REGC_INVALID, errno, NULL, "cannot read auth file %s: %s", path,
                      strerror(errno));
    n = fread(buf, 1, sizeof buf - 1, f);
    e = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    buf[n] = '\0';
    if (e) {
        rc = seterr(err, REGC_INVALID, e, NULL, "cannot read auth file %s: %s", path,
                    strerror(e));
        goto out;
    }
    if (n > REGC_AUTH_MAX) {
        rc = seterr(err, REGC_INVALID, EFBIG, NULL, "auth file %s is larger than %d bytes",
                    path, REGC_AUTH_MAX);
        goto out;
    }
    if (memchr(buf, '\0', n)) {
        rc = seterr(err, REGC_INVALID, EINVAL, NULL, "auth file %s holds a NUL byte", path);
        goto out;
    }
    char *s = buf, *end = buf + n;
    while (s < end && isspace((unsigned char)*s))
        s++;
    while (end > s && isspace((unsigned char)end[-1]))
        end--;
    if (s == end) {
        rc = seterr(err, REGC_INVALID, EINVAL, NULL, "auth file %s is empty", path);
        goto out;
    }
    *end = '\0';
    if (!(*secret = strdup(s)))
        rc = seterr(err, REGC_SYSTEM, ENOMEM, NULL, "out of memory");
out:
    /* The secret never lingers on the stack. */
    explicit_bzero(buf, sizeof buf);
    return rc;
}

/* ---- time ----------------------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Absolute deadline for a wait of timeout_ms (< 0: none, returned as -1). */
static int64_t deadline_after(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* Milliseconds left until deadline for poll(): -1 for none, 0 when past. */
static int remaining(int64_t deadline)
{
    int64_t left;
    if (deadline < 0)
        return -1;
    left = deadline - now_ms();
    if (left <= 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

/* Waits for `events` on fd until deadline. Returns 1 when ready, 0 on timeout, or a
 * negative errno (-EINTR only when the caller's interrupt flag is set). */
static int wait_fd(int fd, short events, int64_t deadline, volatile sig_atomic_t *intr)
{
    for (;;) {
        /* A signal that landed while the caller was busy (printing, say) must not be
         * lost in an unbounded poll. */
        if (intr && *intr)
            return -EINTR;
        struct pollfd pfd = { .fd = fd, .events = events, .revents = 0 };
        int r = poll(&pfd, 1, remaining(deadline));
        if (r > 0)
            return 1;
        if (r == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
        if (intr && *intr)
            return -EINTR;
    }
}

/* ---- connections ---------------------------------------------------------------------- */

static int conn_new(int fd, int timeout_ms, const char *peer, regc_conn **out,
                    regc_error *err)
{
    regc_conn *c = calloc(1, sizeof *c);
    if (!c || !(c->buf = malloc(REGC_MAX_LINE))) {
        free(c);
        return seterr(err, REGC_SYSTEM, ENOMEM, NULL, "out of memory");
    }
    c->fd = fd;
    c->timeout_ms = timeout_ms;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    *out = c;
    return 0;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

/* One non-blocking connect to ai within deadline. Returns the fd or a negative errno. */
static int connect_one(const struct addrinfo *ai, int64_t deadline,
                       volatile sig_atomic_t *intr)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    int rc, one = 1;
    if (fd < 0)
        return -errno;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            rc = -errno;
            goto fail;
        }
        rc = wait_fd(fd, POLLOUT, deadline, intr);
        if (rc == 0) {
            rc = -ETIMEDOUT;
            goto fail;
        }
        if (rc < 0)
            goto fail;
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
            rc = -errno;
            goto fail;
        }
        if (soerr) {
            rc = -soerr;
            goto fail;
        }
    }
    /* Requests are small and answered one at a time: don't let Nagle hold them. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
fail:
    close(fd);
    return rc;
}

/* Connects to one node within timeout_ms (< 0: no limit): resolves host, tries each of
 * its addresses until one answers. On success *fdp is the connected non-blocking socket
 * and peer[REGC_ADDR_MAX] names the node. intr as for wait_fd. */
static int dial(const regc_node *node, int timeout_ms, volatile sig_atomic_t *intr, int *fdp,
                char *peer, regc_error *err)
{
    char portstr[8];
    struct addrinfo hints, *res = NULL;
    int64_t deadline = deadline_after(timeout_ms);
    int rc, fd = -1;

    *fdp = -1;
    regc_format_addr(node->host, node->port, peer, REGC_ADDR_MAX);
    snprintf(portstr, sizeof portstr, "%u", (unsigned)node->port);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    rc = getaddrinfo(node->host, portstr, &hints, &res);
    if (rc != 0) {
        if (rc == EAI_MEMORY)
            return seterr(err, REGC_SYSTEM, ENOMEM, NULL, "out of memory");
        return seterr(err, REGC_UNREACHABLE, EHOSTUNREACH, NULL, "cannot resolve %s: %s",
                      node->host, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    }
    rc = -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = connect_one(ai, deadline, intr);
        if (fd >= 0)
            break;
        rc = fd;
        /* A timeout used the whole budget; other addresses get nothing more. */
        if (rc == -ETIMEDOUT || rc == -EINTR || remaining(deadline) == 0)
            break;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        if (rc == -EINTR)
            return seterr(err, REGC_INTERRUPTED, EINTR, NULL, "interrupted");
        if (rc == -ETIMEDOUT)
            return seterr(err, REGC_UNREACHABLE, ETIMEDOUT, NULL,
                          "cannot connect to %s: no answer within %.3g s", peer,
                          timeout_ms / 1000.0);
        if (rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM || rc == -ENOBUFS)
            return seterr(err, REGC_SYSTEM, -rc, NULL, "cannot connect to %s: %s", peer,
                          strerror(-rc));
        return seterr(err, REGC_UNREACHABLE, -rc, NULL, "cannot connect to %s: %s", peer,
                      strerror(-rc));
    }
    *fdp = fd;
    return 0;
}

/* Appends "; msg" (or msg, first) to sum[REGC_MSG_LEN]: what each node said, for the
 * message of a call that no node could answer. */
static void add_failure(char *sum, const char *msg)
{
    size_t used = strlen(sum), room = REGC_MSG_LEN - 1 - used, k = strlen(msg);
    if (used > 0) {
        if (room < 3)
            return;
        memcpy(sum + used, "; ", 2);
        used += 2;
        room -= 2;
    }
    if (k > room)
        k = room;     /* the end of a long story is cut, as any message is */
    memcpy(sum + used, msg, k);
    sum[used + k] = '\0';
}

/* add_failure for a node lost in a request: a refusal names its node already, an
 * `unavailable` answer does not. */
static void add_node_failure(char *sum, const char *peer, const regc_error *e)
{
    char msg[REGC_MSG_LEN];
    if (e->kind == REGC_REMOTE) {
        snprintf(msg, sizeof msg, "%.100s: %.31s: %.100s", peer, e->code, e->message);
        add_failure(sum, msg);
    } else {
        add_failure(sum, e->message);
    }
}

/* Drops c's socket and connects to nodes[i]. On success c is fresh (nothing buffered,
 * usable); on failure it has no socket and stays broken. Either way c->cur is i. */
static int connect_node(regc_conn *c, size_t i, regc_error *err)
{
    int fd, rc;

    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->broken = 1;
    c->off = c->len = c->scanned = 0;
    c->last = NULL;
    c->cur = i;
    if ((rc = dial(&c->nodes[i], c->connect_ms, c->interrupt, &fd, c->peer, err)) < 0)
        return rc;
    c->fd = fd;
    c->broken = 0;
    return 0;
}

/* Connects c to the first of its nodes that accepts, from nodes[start] on, wrapping
 * round, each tried once. With several nodes a failure names every node's; a local
 * failure (out of descriptors) or an interruption ends the round at once. */
static int connect_from(regc_conn *c, size_t start, regc_error *err)
{
    char sum[REGC_MSG_LEN] = "";
    regc_error e;
    int rc = -EHOSTUNREACH;

    for (size_t k = 0; k < c->nnodes; k++) {
        if ((rc = connect_node(c, (start + k) % c->nnodes, &e)) == 0) {
            err_clear(err);
            return 0;
        }
        if (c->nnodes == 1 || e.kind != REGC_UNREACHABLE) {
            if (err)
                *err = e;
            return rc;
        }
        add_failure(sum, e.message);
    }
    return seterr(err, REGC_UNREACHABLE, -rc, NULL, "no registry node answered: %s", sum);
}

int regc_connect(const char *addr, int timeout_ms, regc_conn **out, regc_error *err)
{
    regc_node nodes[REGC_NODES_MAX];
    regc_conn *c = NULL;
    size_t n;
    int rc;

    *out = NULL;
    err_clear(err);
    if (!addr)
        addr = regc_default_addr(NULL);
    if ((rc = regc_parse_addr_list(addr, nodes, REGC_NODES_MAX, &n, err)) < 0)
        return rc;
    if ((rc = conn_new(-1, timeout_ms, "", &c, err)) < 0)
        return rc;
    if (!(c->nodes = malloc(n * sizeof *c->nodes))) {
        regc_close(c);
        return seterr(err, REGC_SYSTEM, ENOMEM, NULL, "out of memory");
    }
    memcpy(c->nodes, nodes, n * sizeof *c->nodes);
    c->nnodes = n;
    c->connect_ms = timeout_ms;
    if ((rc = connect_from(c, 0, err)) < 0) {
        regc_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

int regc_reconnect(regc_conn *c, regc_error *err)
{
    err_clear(err);
    if (c->nnodes == 0)
        return seterr(err, REGC_INVALID, EINVAL, NULL,
                      "a connection made from a socket has no address to connect to again");
    return connect_from(c, (c->cur + 1) % c->nnodes, err);
}

const char *regc_peer(const regc_conn *c)
{
    return c->peer;
}

int regc_conn_from_fd(int fd, int timeout_ms, regc_conn **out, regc_error *err)
{
    int rc;
    *out = NULL;
    err_clear(err);
    if ((rc = set_nonblock(fd)) < 0)
        return seterr(err, REGC_INVALID, -rc, NULL, "bad socket: %s", strerror(-rc));
    return conn_new(fd, timeout_ms, "peer", out, err);
}

void regc_close(regc_conn *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    if (c->auth) {
        explicit_bzero(c->auth, strlen(c->auth));
        free(c->auth);
    }
    json_decref(c->ev_obj);
    free(c->ev_detail);
    free(c->nodes);
    free(c->buf);
    free(c);
}

void regc_set_timeout(regc_conn *c, int timeout_ms)
{
    c->timeout_ms = timeout_ms;
}

int regc_set_auth(regc_conn *c, const char *secret)
{
    char *copy = NULL;
    if (secret && !(copy = strdup(secret)))
        return -ENOMEM;
    if (c->auth) {
        explicit_bzero(c->auth, strlen(c->auth));
        free(c->auth);
    }
    c->auth = copy;
    return 0;
}

void regc_set_interrupt(regc_conn *c, volatile sig_atomic_t *flag)
{
    c->interrupt = flag;
}

const char *regc_last_line(const regc_conn *c)
{
    return c->last ? c->last : "";
}

static int check_usable(regc_conn *c, regc_error *err)
{
    if (c->broken)
        return seterr(err, REGC_PROTOCOL, EPROTO, NULL,
                      "connection to %s unusable after an earlier error", c->peer);
    return 0;
}

/* Writes all of buf before deadline. */
static int write_all(regc_conn *c, const char *buf, size_t len, int64_t deadline,
                     regc_error *err)
{
    while (len > 0) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_fd(c->fd, POLLOUT, deadline, c->interrupt);
            if (r == 1)
                continue;
            c->broken = 1;
            if (r == 0)
                return seterr(err, REGC_UNREACHABLE, ETIMEDOUT, NULL,
                              "%s does not read its input (timed out)", c->peer);
            if (r == -EINTR)
                return seterr(err, REGC_INTERRUPTED, EINTR, NULL, "interrupted");
            return seterr(err, REGC_UNREACHABLE, -r, NULL, "writing to %s: %s", c->peer,
                          strerror(-r));
        }
        c->broken = 1;
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
            return seterr(err, REGC_UNREACHABLE, ECONNRESET, NULL,
                          "connection closed by %s", c->peer);
        return seterr(err, REGC_UNREACHABLE, n < 0 ? errno : EIO, NULL, "writing to %s: %s",
                      c->peer, strerror(n < 0 ? errno : EIO));
    }
    return 0;
}

/* Sends line + "\n" with the given deadline. The two parts go out with one send when
 * they fit a small buffer, so a request is one segment. */
static int send_line_by(regc_conn *c, const char *line, size_t len, int64_t deadline,
                        regc_error *err)
{
    char small[2048];
    int rc;
    if (len + 1 > REGC_MAX_LINE)
        return seterr(err, REGC_INVALID, EMSGSIZE, NULL,
                      "request of %zu bytes is over the %d-byte line limit", len + 1,
                      REGC_MAX_LINE);
    if (memchr(line, '\n', len))
        return seterr(err, REGC_INVALID, EINVAL, NULL, "a request line may not hold a newline");
    if (len + 1 <= sizeof small) {
        memcpy(small, line, len);
        small[len] = '\n';
        return write_all(c, small, len + 1, deadline, err);
    }
    if ((rc = write_all(c, line, len, deadline, err)) < 0)
        return rc;
    return write_all(c, "\n", 1, deadline, err);
}

int regc_send_line(regc_conn *c, const char *line, size_t len, regc_error *err)
{
    int rc;
    err_clear(err);
    if ((rc = check_usable(c, err)) < 0)
        return rc;
    return send_line_by(c, line, len, deadline_after(c->timeout_ms), err);
}

static int read_line_by(regc_conn *c, int64_t deadline, int timeout_ms, const char **line,
                        size_t *len, regc_error *err)
{
    int rc;
    if ((rc = check_usable(c, err)) < 0)
        return rc;
    c->last = NULL;
    for (;;) {
        char *nl = memchr(c->buf + c->off + c->scanned, '\n', c->len - c->scanned);
        if (nl) {
            size_t n = (size_t)(nl - (c->buf + c->off));
            *nl = '\0';
            *line = c->last = c->buf + c->off;
            *len = n;
            c->off += n + 1;
            c->len -= n + 1;
            c->scanned = 0;
            return 0;
        }
        c->scanned = c->len;
        if (c->len >= REGC_MAX_LINE) {
            c->broken = 1;
            return seterr(err, REGC_PROTOCOL, EMSGSIZE, NULL,
                          "reply from %s is longer than %d bytes", c->peer, REGC_MAX_LINE);
        }
        /* Make room: slide the partial line to the front of the buffer. */
        if (c->off > 0) {
            memmove(c->buf, c->buf + c->off, c->len);
            c->off = 0;
        }
        ssize_t n = recv(c->fd, c->buf + c->len, REGC_MAX_LINE - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            continue;
        }
        if (n == 0) {
            c->broken = 1;
            if (c->len > 0)
                return seterr(err, REGC_UNREACHABLE, ECONNRESET, NULL,
                              "connection closed by %s in the middle of a reply", c->peer);
            return seterr(err, REGC_UNREACHABLE, ECONNRESET, NULL,
                          "connection closed by %s", c->peer);
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            int e = errno;
            c->broken = 1;
            if (e == ECONNRESET || e == EPIPE)
                return seterr(err, REGC_UNREACHABLE, ECONNRESET, NULL,
                              "connection reset by %s", c->peer);
            return seterr(err, REGC_UNREACHABLE, e, NULL, "reading from %s: %s", c->peer,
                          strerror(e));
        }
        rc = wait_fd(c->fd, POLLIN, deadline, c->interrupt);
        if (rc == 1)
            continue;
        if (rc == -EINTR)
            return seterr(err, REGC_INTERRUPTED, EINTR, NULL, "interrupted");
        c->broken = 1;
        if (rc == 0)
            return seterr(err, REGC_UNREACHABLE, ETIMEDOUT, NULL,
                          "no reply from %s within %.3g s", c->peer, timeout_ms / 1000.0);
        return seterr(err, REGC_UNREACHABLE, -rc, NULL, "reading from %s: %s", c->peer,
                      strerror(-rc));
    }
}

int regc_read_line(regc_conn *c, int timeout_ms, const char **line, size_t *len,
                   regc_error *err)
{
    err_clear(err);
    return read_line_by(c, deadline_after(timeout_ms), timeout_ms, line, len, err);
}

/* Decodes a reply line into a new object reference in *resp and classifies it. With
 * event_ok, an object without "ok" (a watch event line) counts as success. */
static int decode_reply(regc_conn *c, const char *line, size_t len, json_t **resp,
                        int event_ok, regc_error *err)
{
    json_error_t jerr;
    json_t *o = json_loadb(line, len, 0, &jerr), *ok, *e, *code, *msg;

    *resp = NULL;
    if (!o)
        return seterr(err, REGC_PROTOCOL, EPROTO, NULL, "malformed reply from %s: %s",
                      c->peer, jerr.text);
    if (!json_is_object(o)) {
        json_decref(o);
        return seterr(err, REGC_PROTOCOL, EPROTO, NULL,
                      "malformed reply from %s: not a JSON object", c->peer);
    }
    ok = json_object_get(o, "ok");
    if (json_is_true(ok) || (event_ok && !ok)) {
        *resp = o;
        return 0;
    }
    e = json_object_get(o, "error");
    code = json_object_get(e, "code");
    msg = json_object_get(e, "message");
    if (!json_is_false(ok) || !json_is_string(code)) {
        json_decref(o);
        return seterr(err, REGC_PROTOCOL, EPROTO, NULL,
                      "malformed reply from %s: no \"ok\" or no error code", c->peer);
    }
    *resp = o;
    const char *cs = json_string_value(code);
    const char *ms = json_is_string(msg) ? json_string_value(msg) : "(no message)";
    if (strcmp(cs, "not_found") == 0)
        return seterr(err, REGC_NOT_FOUND, ENOENT, cs, "%s", ms);
    return seterr(err, REGC_REMOTE, EREMOTEIO, cs, "%s", ms);
}

/* One request and its reply on c's current connection (regc_request without moving to
 * another node). */
static int request_once(regc_conn *c, json_t *req, json_t **resp, regc_error *err)
{
    json_t *copy = NULL, *dummy = NULL;
    char *text = NULL;
    const char *line;
    size_t len;
    int rc;
    int64_t deadline = deadline_after(c->timeout_ms);

    if (!resp)
        resp = &dummy;
    *resp = NULL;
    err_clear(err);
    if ((rc = check_usable(c, err)) < 0)
        return rc;
    if (!json_is_object(req))
        return seterr(err, REGC_INVALID, EINVAL, NULL, "a request must be a JSON object");
    if (c->auth) {
        /* A shallow copy, so the caller's object is not changed behind its back. */
        if (!(copy = json_copy(req)) ||
            json_object_set_new(copy, "auth", json_string(c->auth)) < 0) {
            rc = seterr(err, REGC_SYSTEM, ENOMEM, NULL, "out of memory");
            goto out;
        }
        req = copy;
    }
    text = json_dumps(req, JSON_COMPACT);
    if (!text) {
        rc = seterr(err, REGC_INVALID, EINVAL, NULL, "cannot encode the request");
        goto out;
    }
    if ((rc = send_line_by(c, text, strlen(text), deadline, err)) < 0)
        goto out;
    if ((rc = read_line_by(c, deadline, c->timeout_ms, &line, &len, err)) < 0)
        goto out;
    rc = decode_reply(c, line, len, resp, 0, err);
out:
    if (text) {
        if (c->auth)
            explicit_bzero(text, strlen(text));
        free(text);
    }
    json_decref(copy);
    json_decref(dummy);
    return rc;
}

/* Is e a failure another node may not have: the node refused, timed out, closed the
 * connection, or said it cannot serve now? (Not an interruption, a protocol error or the
 * registry's answer to the request itself.) */
static int node_lost(const regc_error *e)
{
    return e->kind == REGC_UNREACHABLE ||
           (e->kind == REGC_REMOTE && strcmp(e->code, "unavailable") == 0);
}

int regc_request(regc_conn *c, json_t *req, json_t **resp, regc_error *err)
{
    char sum[REGC_MSG_LEN] = "";
    json_t *dummy = NULL;
    regc_error e;
    int rc;

    if (!resp)
        resp = &dummy;
    rc = request_once(c, req, resp, &e);
    /* The node is lost: the same request to the next node, each node once a call. */
    for (size_t k = 1; rc < 0 && k < c->nnodes && node_lost(&e); k++) {
        add_node_failure(sum, c->peer, &e);
        json_decref(*resp);
        *resp = NULL;
        if ((rc = connect_node(c, (c->cur + 1) % c->nnodes, &e)) == 0)
            rc = request_once(c, req, resp, &e);
    }
    if (rc < 0 && sum[0] && e.kind == REGC_UNREACHABLE) {
        add_failure(sum, e.message);
        seterr(&e, REGC_UNREACHABLE, e.errnum, NULL, "no registry node answered: %s", sum);
    }
    if (err)
        *err = e;
    json_decref(dummy);
    return rc;
}

/* ---- typed operations ------------------------------------------------------------------ */

/* Builds a request object {"op": op}; NULL when out of memory. */
static json_t *new_req(const char *op)
{
    json_t *o = json_object();
    if (o && json_object_set_new(o, "op", json_string(op)) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int set_str(json_t *o, const char *key, const char *val)
{
    return json_object_set_new(o, key, json_string(val));
}

static int nomem(regc_error *err)
{
    return seterr(err, REGC_SYSTEM, ENOMEM, NULL, "out of memory");
}

/* A string field of o, or NULL when absent or not a string. */
static const char *str_field(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* A port field: 1..65535 or -1. */
static int port_field(json_t *o, const char *key)
{
    json_t *p = json_object_get(o, key);
    json_int_t v;
    if (!json_is_integer(p))
        return -1;
    v = json_integer_value(p);
    return (v >= 1 && v <= 65535) ? (int)v : -1;
}

static int proto_err(regc_conn *c, regc_error *err, const char *what)
{
    return seterr(err, REGC_PROTOCOL, EPROTO, NULL, "malformed reply from %s: %s", c->peer,
                  what);
}

int regc_register(regc_conn *c, const regc_registration *r, char *id, char *token,
                  regc_error *err)
{
    json_t *req = new_req("register"), *resp = NULL, *tags = NULL;
    const char *s;
    int rc;

    err_clear(err);
    if (!req)
        return nomem(err);
    if (set_str(req, "service", r->service ? r->service : "") < 0 ||
        (r->host && set_str(req, "host", r->host) < 0) ||
        json_object_set_new(req, "port", json_integer(r->port)) < 0 ||
        (r->description && set_str(req, "description", r->description) < 0) ||
        (r->ttl > 0 && json_object_set_new(req, "ttl", json_integer(r->ttl)) < 0) ||
        set_str(req, "check", r->check == REGC_CHECK_NONE ? "none" : "tcp") < 0 ||
        (r->token && set_str(req, "token", r->token) < 0) ||
        (r->admin && json_object_set_new(req, "admin", json_true()) < 0)) {
        rc = nomem(err);
        goto out;
    }
    if (r->ntags > 0) {
        if (!(tags = json_array()) || json_object_set(req, "tags", tags) < 0) {
            rc = nomem(err);
            goto out;
        }
        for (size_t i = 0; i < r->ntags; i++)
            if (json_array_append_new(tags, json_string(r->tags[i])) < 0) {
                rc = nomem(err);
                goto out;
            }
    }
    if ((rc = regc_request(c, req, &resp, err)) < 0)
        goto out;
    if (!(s = str_field(resp, "id")) || strlen(s) >= REGC_ID_MAX) {
        rc = proto_err(c, err, "register: no valid \"id\"");
        goto out;
    }
    memcpy(id, s, strlen(s) + 1);
    if (!(s = str_field(resp, "token")) || strlen(s) >= REGC_TOKEN_MAX) {
        rc = proto_err(c, err, "register: no valid \"token\"");
        goto out;
    }
    memcpy(token, s, strlen(s) + 1);
out:
    json_decref(tags);
    json_decref(req);
    json_decref(resp);
    return rc;
}

/* deregister and heartbeat: {"op", "id", "token"}. */
static int id_token_op(regc_conn *c, const char *op, const char *id, const char *token,
                       json_t **resp, regc_error *err)
{
    json_t *req = new_req(op);
    int rc;
    err_clear(err);
    if (!req || set_str(req, "id", id) < 0 || set_str(req, "token", token) < 0) {
        json_decref(req);
        return nomem(err);
    }
    rc = regc_request(c, req, resp, err);
    json_decref(req);
    return rc;
}

int regc_deregister(regc_conn *c, const char *id, const char *token, regc_error *err)
{
    return id_token_op(c, "deregister", id, token, NULL, err);
}

int regc_heartbeat(regc_conn *c, const char *id, const char *token, int *ttl,
                   regc_error *err)
{
    json_t *resp = NULL;
    int rc = id_token_op(c, "heartbeat", id, token, &resp, err);
    if (rc == 0 && ttl) {
        json_t *t = json_object_get(resp, "ttl");
        *ttl = json_is_integer(t) ? (int)json_integer_value(t) : 0;
    }
    json_decref(resp);
    return rc;
}

int regc_ping(regc_conn *c, regc_error *err)
{
    json_t *req = new_req("ping");
    int rc;
    err_clear(err);
    if (!req)
        return nomem(err);
    rc = regc_request(c, req, NULL, err);
    json_decref(req);
    return rc;
}

/* ---- paging ------------------------------------------------------------------------------ */

/* Sends req (a list or lookup) for one page: at most limit entries (0: no paging fields,
 * the whole answer at once) after cursor (NULL: the first page). *resp as regc_request. */
static int page_request(regc_conn *c, json_t *req, int limit, const char *cursor,
                        json_t **resp, regc_error *err)
{
    if ((limit > 0 && json_object_set_new(req, "limit", json_integer(limit)) < 0) ||
        (cursor && set_str(req, "cursor", cursor) < 0))
        return nomem(err);
    if (!cursor)
        json_object_del(req, "cursor");
    return regc_request(c, req, resp, err);
}

/* Follows "next" from the first page `all` (borrowed): asks for each following page with
 * req and appends its array `key` to all's, in order; all keeps no "next". */
static int follow_pages(regc_conn *c, json_t *req, const char *key, json_t *all,
                        regc_error *err)
{
    json_t *arr = json_object_get(all, key), *next = json_object_get(all, "next");
    json_t *resp = NULL, *more;
    char *cursor = NULL;
    int rc = 0;

    while (next && !json_is_null(next)) {
        /* A registry that sent the same cursor again would keep us here for ever. */
        if (!json_is_string(next) || (cursor && strcmp(cursor, json_string_value(next)) == 0)) {
            rc = proto_err(c, err, "a page's \"next\" is not a new cursor");
            break;
        }
        free(cursor);
        if (!(cursor = strdup(json_string_value(next)))) {
            rc = nomem(err);
            break;
        }
        json_decref(resp);
        resp = NULL;
        if ((rc = page_request(c, req, REGC_PAGE_MAX, cursor, &resp, err)) < 0)
            break;
        more = json_object_get(resp, key);
        next = json_object_get(resp, "next");
        if (!json_is_array(more) || (json_array_size(more) == 0 && next && !json_is_null(next))) {
            rc = proto_err(c, err, "a page without entries that is not the last");
            break;
        }
        if (json_array_extend(arr, more) < 0) {
            rc = nomem(err);
            break;
        }
    }
    json_object_del(all, "next");
    free(cursor);
    json_decref(resp);
    return rc;
}

/* ---- lookup ------------------------------------------------------------------------------ */

void regc_lookup_free(regc_lookup_result *r)
{
    if (!r)
        return;
    free(r->instances);
    json_decref(r->reply);
    free(r);
}

/* A lookup (one page when follow is 0, else every page from cursor on). */
static int lookup(regc_conn *c, const char *service, const char *tag, int all, int limit,
                  const char *cursor, int follow, regc_lookup_result **out, regc_error *err)
{
    json_t *req = new_req("lookup"), *resp = NULL, *insts;
    regc_lookup_result *r = NULL;
    int rc;

    *out = NULL;
    err_clear(err);
    if (!req || set_str(req, "service", service) < 0 ||
        (tag && set_str(req, "tag", tag) < 0) ||
        json_object_set_new(req, "all", json_boolean(all)) < 0) {
        rc = nomem(err);
        goto out;
    }
    if ((rc = page_request(c, req, limit, cursor, &resp, err)) < 0)
        goto out;
    if (!(r = calloc(1, sizeof *r))) {
        rc = nomem(err);
        goto out;
    }
    r->reply = resp;
    resp = NULL;
    r->service = str_field(r->reply, "service");
    r->host = str_field(r->reply, "host");
    r->port = port_field(r->reply, "port");
    r->description = str_field(r->reply, "description");
    /* With "all", every instance may be critical and there is no endpoint to use. */
    if (!all && (!r->host || r->port < 0)) {
        rc = proto_err(c, err, "lookup: no valid \"host\"/\"port\"");
        goto out;
    }
    insts = json_object_get(r->reply, "instances");
    if (insts && !json_is_array(insts)) {
        rc = proto_err(c, err, "lookup: \"instances\" is not an array");
        goto out;
    }
    if (insts && follow && (rc = follow_pages(c, req, "instances", r->reply, err)) < 0)
        goto out;
    r->next = str_field(r->reply, "next");
    r->ninstances = json_array_size(insts);
    if (r->ninstances > 0 && !(r->instances = calloc(r->ninstances, sizeof *r->instances))) {
        rc = nomem(err);
        goto out;
    }
    for (size_t i = 0; i < r->ninstances; i++) {
        json_t *o = json_array_get(insts, i);
        regc_instance *in = &r->instances[i];
        if (!json_is_object(o) || !(in->host = str_field(o, "host")) ||
            (in->port = port_field(o, "port")) < 0) {
            rc = proto_err(c, err, "lookup: an instance without host/port");
            goto out;
        }
        in->id = str_field(o, "id");
        in->description = str_field(o, "description");
        in->status = str_field(o, "status");
        in->registered_at = str_field(o, "registered_at");
        in->last_seen = str_field(o, "last_seen");
        in->last_check = str_field(o, "last_check");
        in->tags = json_is_array(json_object_get(o, "tags")) ? json_object_get(o, "tags") : NULL;
    }
    *out = r;
    r = NULL;
out:
    regc_lookup_free(r);
    json_decref(req);
    json_decref(resp);
    return rc;
}

int regc_lookup(regc_conn *c, const char *service, const char *tag, int all,
                regc_lookup_result **out, regc_error *err)
{
    return lookup(c, service, tag, all, REGC_PAGE_MAX, NULL, 1, out, err);
}

int regc_lookup_page(regc_conn *c, const char *service, const char *tag, int all, int limit,
                     const char *cursor, regc_lookup_result **out, regc_error *err)
{
    *out = NULL;
    if (limit < 1 || limit > REGC_PAGE_MAX)
        return seterr(err, REGC_INVALID, EINVAL, NULL, "page limit %d is not 1-%d", limit,
                      REGC_PAGE_MAX);
    return lookup(c, service, tag, all, limit, cursor, 0, out, err);
}

/* regc_resolve on one node (addr a single address), timeout_ms for it all. */
static int resolve_one(const char *addr, const char *service, char *host, size_t hostlen,
                       int *port, int timeout_ms, regc_error *err)
{
    int64_t deadline = deadline_after(timeout_ms);
    regc_conn *c = NULL;
    regc_lookup_result *r = NULL;
    int rc;

    if ((rc = regc_connect(addr, timeout_ms, &c, err)) < 0)
        return rc;
    /* One budget for the whole call: the reply gets what the connect left. */
    regc_set_timeout(c, remaining(deadline));
    /* A page of one: the endpoint to use is host/port, and no instance list is needed. */
    if ((rc = regc_lookup_page(c, service, NULL, 0, 1, NULL, &r, err)) < 0)
        goto out;
    if (strlen(r->host) >= hostlen) {
        rc = seterr(err, REGC_INVALID, ENOSPC, NULL, "host '%.64s...' does not fit %zu bytes",
                    r->host, hostlen);
        goto out;
    }
    memcpy(host, r->host, strlen(r->host) + 1);
    *port = r->port;
out:
    regc_lookup_free(r);
    regc_close(c);
    return rc;
}

int regc_resolve(const char *addr, const char *service, char *host, size_t hostlen,
                 int *port, int timeout_ms, regc_error *err)
{
    regc_node nodes[REGC_NODES_MAX];
    char node[REGC_ADDR_MAX], sum[REGC_MSG_LEN] = "";
    regc_error e;
    size_t n;
    int rc;

    err_clear(err);
    if (!service || !host || hostlen == 0 || !port)
        return seterr(err, REGC_INVALID, EINVAL, NULL, "regc_resolve: missing argument");
    host[0] = '\0';
    *port = 0;
    addr = regc_default_addr(addr);
    if ((rc = regc_parse_addr_list(addr, nodes, REGC_NODES_MAX, &n, err)) < 0)
        return rc;
    if (n == 1)
        return resolve_one(addr, service, host, hostlen, port, timeout_ms, err);
    /* A list: each node in turn with the whole budget, until one answers. */
    for (size_t i = 0; i < n; i++) {
        regc_format_addr(nodes[i].host, nodes[i].port, node, sizeof node);
        rc = resolve_one(node, service, host, hostlen, port, timeout_ms, &e);
        if (rc == 0 || !node_lost(&e))
            break;
        add_node_failure(sum, node, &e);
    }
    if (rc < 0 && e.kind == REGC_UNREACHABLE && sum[0])
        seterr(&e, REGC_UNREACHABLE, e.errnum, NULL, "no registry node answered: %s", sum);
    if (err)
        *err = e;
    return rc;
}

/* ---- list -------------------------------------------------------------------------------- */

void regc_service_list_free(regc_service_list *l)
{
    if (!l)
        return;
    free(l->services);
    json_decref(l->reply);
    free(l);
}

static long count_field(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (long)json_integer_value(v) : -1;
}

static int list(regc_conn *c, int limit, const char *cursor, int follow,
                regc_service_list **out, regc_error *err)
{
    json_t *req = new_req("list"), *resp = NULL, *arr;
    regc_service_list *l = NULL;
    int rc;

    *out = NULL;
    err_clear(err);
    if (!req) {
        rc = nomem(err);
        goto out;
    }
    if ((rc = page_request(c, req, limit, cursor, &resp, err)) < 0)
        goto out;
    arr = json_object_get(resp, "services");
    if (!json_is_array(arr)) {
        rc = proto_err(c, err, "list: no \"services\" array");
        goto out;
    }
    if (follow && (rc = follow_pages(c, req, "services", resp, err)) < 0)
        goto out;
    if (!(l = calloc(1, sizeof *l))) {
        rc = nomem(err);
        goto out;
    }
    l->reply = resp;
    resp = NULL;
    l->next = str_field(l->reply, "next");
    l->nservices = json_array_size(arr);
    if (l->nservices > 0 && !(l->services = calloc(l->nservices, sizeof *l->services))) {
        rc = nomem(err);
        goto out;
    }
    for (size_t i = 0; i < l->nservices; i++) {
        json_t *o = json_array_get(arr, i);
        regc_service_info *s = &l->services[i];
        if (!json_is_object(o) || !(s->service = str_field(o, "service"))) {
            rc = proto_err(c, err, "list: an entry without \"service\"");
            goto out;
        }
        s->description = str_field(o, "description");
        s->instances = count_field(o, "instances");
        s->passing = count_field(o, "passing");
    }
    *out = l;
    l = NULL;
out:
    regc_service_list_free(l);
    json_decref(req);
    json_decref(resp);
    return rc;
}

int regc_list(regc_conn *c, regc_service_list **out, regc_error *err)
{
    return list(c, REGC_PAGE_MAX, NULL, 1, out, err);
}

int regc_list_page(regc_conn *c, int limit, const char *cursor, regc_service_list **out,
                   regc_error *err)
{
    *out = NULL;
    if (limit < 1 || limit > REGC_PAGE_MAX)
        return seterr(err, REGC_INVALID, EINVAL, NULL, "page limit %d is not 1-%d", limit,
                      REGC_PAGE_MAX);
    return list(c, limit, cursor, 0, out, err);
}

int regc_stats(regc_conn *c, json_t **stats, regc_error *err)
{
    json_t *req = new_req("stats");
    int rc;
    *stats = NULL;
    err_clear(err);
    if (!req)
        return nomem(err);
    rc = regc_request(c, req, stats, err);
    if (rc < 0) {
        json_decref(*stats);
        *stats = NULL;
    }
    json_decref(req);
    return rc;
}

/* Fills ev from an event object o (borrowed). A non-string detail is rendered into
 * *owned (new malloc'd text, or left NULL). Returns 0 or -EPROTO / -ENOMEM. */
static int parse_event(json_t *o, regc_event *ev, char **owned)
{
    json_t *seq, *detail;
    memset(ev, 0, sizeof *ev);
    *owned = NULL;
    if (!json_is_object(o))
        return -EPROTO;
    seq = json_object_get(o, "seq");
    if (!json_is_integer(seq))
        return -EPROTO;
    ev->seq = json_integer_value(seq);
    ev->ts = str_field(o, "ts");
    ev->event = str_field(o, "event");
    ev->service = str_field(o, "service");
    ev->id = str_field(o, "id");
    ev->host = str_field(o, "host");
    ev->port = port_field(o, "port") > 0 ? port_field(o, "port") : 0;
    detail = json_object_get(o, "detail");
    if (json_is_string(detail)) {
        ev->detail = json_string_value(detail);
    } else if (detail && !json_is_null(detail)) {
        if (!(*owned = json_dumps(detail, JSON_COMPACT | JSON_ENCODE_ANY)))
            return -ENOMEM;
        ev->detail = *owned;
    }
    return 0;
}

void regc_event_list_free(regc_event_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; l->details && i < l->nevents; i++)
        free(l->details[i]);
    free(l->details);
    free(l->events);
    json_decref(l->reply);
    free(l);
}

int regc_events(regc_conn *c, int64_t since, const char *service, int limit,
                regc_event_list **out, regc_error *err)
{
    json_t *req = new_req("events"), *resp = NULL, *arr;
    regc_event_list *l = NULL;
    int rc;

    *out = NULL;
    err_clear(err);
    if (!req || json_object_set_new(req, "since", json_integer(since)) < 0 ||
        (service && set_str(req, "service", service) < 0) ||
        (limit > 0 && json_object_set_new(req, "limit", json_integer(limit)) < 0)) {
        rc = nomem(err);
        goto out;
    }
    if ((rc = regc_request(c, req, &resp, err)) < 0)
        goto out;
    arr = json_object_get(resp, "events");
    if (!json_is_array(arr)) {
        rc = proto_err(c, err, "events: no \"events\" array");
        goto out;
    }
    if (!(l = calloc(1, sizeof *l))) {
        rc = nomem(err);
        goto out;
    }
    l->reply = resp;
    resp = NULL;
    size_t n = json_array_size(arr);
    if (n > 0 && (!(l->events = calloc(n, sizeof *l->events)) ||
                  !(l->details = calloc(n, sizeof *l->details)))) {
        rc = nomem(err);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        l->nevents = i + 1;   /* so free() sees details[i] */
        rc = parse_event(json_array_get(arr, i), &l->events[i], &l->details[i]);
        if (rc == -ENOMEM) {
            rc = nomem(err);
            goto out;
        }
        if (rc < 0) {
            rc = proto_err(c, err, "events: an event without \"seq\"");
            goto out;
        }
    }
    l->nevents = n;
    *out = l;
    l = NULL;
out:
    regc_event_list_free(l);
    json_decref(req);
    json_decref(resp);
    return rc;
}

int regc_watch_start(regc_conn *c, const char *service, regc_error *err)
{
    json_t *req = new_req("watch");
    int rc;
    err_clear(err);
    if (!req || (service && set_str(req, "service", service) < 0)) {
        json_decref(req);
        return nomem(err);
    }
    rc = regc_request(c, req, NULL, err);
    json_decref(req);
    return rc;
}

int regc_watch_next(regc_conn *c, int timeout_ms, regc_event *ev, regc_error *err)
{
    const char *line;
    size_t len;
    json_t *o = NULL;
    int rc;

    err_clear(err);
    memset(ev, 0, sizeof *ev);
    /* What the previous event borrowed from dies now. */
    json_decref(c->ev_obj);
    free(c->ev_detail);
    c->ev_obj = NULL;
    c->ev_detail = NULL;
    if ((rc = read_line_by(c, deadline_after(timeout_ms), timeout_ms, &line, &len, err)) < 0)
        return rc;
    if ((rc = decode_reply(c, line, len, &o, 1, err)) < 0) {
        /* An error line ends the stream (e.g. `unavailable` for a slow watcher). */
        json_decref(o);
        return rc;
    }
    rc = parse_event(o, ev, &c->ev_detail);
    if (rc < 0) {
        json_decref(o);
        free(c->ev_detail);
        c->ev_detail = NULL;
        memset(ev, 0, sizeof *ev);
        return rc == -ENOMEM ? nomem(err) : proto_err(c, err, "watch: an event without \"seq\"");
    }
    c->ev_obj = o;
    return 0;
}
