/* SPDX-License-Identifier: BSD-2-Clause */
/* test_client.c — unit tests of the client library (client/registry_client.h): address
 * parsing, line framing, error mapping, typed replies, and the libuv registration
 * helper against a scripted in-process registry.
 *
 * Peers are socketpairs or loopback listeners on port 0; a scripted peer that must
 * answer while the code under test blocks runs in a thread. No fixed ports, no sleeps:
 * every wait is bounded by a deadline.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "registry_helper.h"
#include "registry_json.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

/* ---- helpers ---------------------------------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A socketpair of `type`; sv[0] goes to the library, sv[1] plays the peer. */
static void pair(int type, int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv), 0);
}

static void write_str(int fd, const char *s)
{
    size_t len = strlen(s);
    assert_int_equal(write(fd, s, len), (ssize_t)len);
}

/* Reads what the library sent on the peer end (it is all there: sends complete before
 * the library waits for the reply). */
static void read_sent(int fd, char *buf, size_t cap)
{
    ssize_t n = recv(fd, buf, cap - 1, MSG_DONTWAIT);
    assert_true(n > 0);
    buf[n] = '\0';
}

/* A TCP listener on 127.0.0.1:0; returns the fd and fills "127.0.0.1:PORT". */
static int listener(char *addr, size_t len, int do_listen)
{
    struct sockaddr_in sin = { .sin_family = AF_INET };
    socklen_t sl = sizeof sin;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    if (do_listen)
        assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    snprintf(addr, len, "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    return fd;
}

/* ---- addresses -------------------------------------------------------------------------- */

static void test_parse_v4(void **state)
{
    char host[REGC_HOST_MAX];
    uint16_t port = 0;
    regc_error err;
    assert_int_equal(regc_parse_addr("127.0.0.1:5380", host, sizeof host, &port, &err), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 5380);
    assert_int_equal(regc_parse_addr("localhost:1", host, sizeof host, &port, &err), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 1);
    assert_int_equal(regc_parse_addr("10.0.0.1:0", host, sizeof host, &port, &err), 0);
    assert_int_equal(port, 0);
}

static void test_parse_v6(void **state)
{
    char host[REGC_HOST_MAX];
    uint16_t port = 0;
    regc_error err;
    assert_int_equal(regc_parse_addr("[::1]:80", host, sizeof host, &port, &err), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 80);
    assert_int_equal(regc_parse_addr("[fe80::1:2]:65535", host, sizeof host, &port, &err), 0);
    assert_string_equal(host, "fe80::1:2");
    assert_int_equal(port, 65535);
}

static void test_parse_bad(void **state)
{
    static const char *bad[] = {
        "", "localhost", ":80", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
        "127.0.0.1:+80", "127.0.0.1: 80", "127.0.0.1:80x", "127.0.0.1:0x50", "::1:80",
        "[::1]80", "[::1]", "[::1:80", "[]:80", "[not-v6]:80", "[127.0.0.1]:80",
        "bad host:80", "host/x:80", "127.0.0.1:123456",
    };
    char host[REGC_HOST_MAX], small[4];
    uint16_t port;
    regc_error err;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        int rc = regc_parse_addr(bad[i], host, sizeof host, &port, &err);
        if (rc != -EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
        assert_int_equal(err.kind, REGC_INVALID);
        assert_true(strlen(err.message) > 0);
    }
    /* A host that does not fit the caller's buffer. */
    assert_int_equal(regc_parse_addr("example.com:1", small, sizeof small, &port, &err), -EINVAL);
    assert_int_equal(regc_parse_addr(NULL, host, sizeof host, &port, NULL), -EINVAL);
}

static void test_default_addr(void **state)
{
    char *saved = getenv(REGC_ADDR_ENV) ? strdup(getenv(REGC_ADDR_ENV)) : NULL;
    unsetenv(REGC_ADDR_ENV);
    assert_string_equal(regc_default_addr(NULL), "127.0.0.1:5380");
    assert_string_equal(regc_default_addr(""), "127.0.0.1:5380");
    setenv(REGC_ADDR_ENV, "10.1.2.3:99", 1);
    assert_string_equal(regc_default_addr(NULL), "10.1.2.3:99");
    assert_string_equal(regc_default_addr("[::1]:7"), "[::1]:7");
    setenv(REGC_ADDR_ENV, "", 1);
    assert_string_equal(regc_default_addr(NULL), "127.0.0.1:5380");
    if (saved)
        setenv(REGC_ADDR_ENV, saved, 1);
    else
        unsetenv(REGC_ADDR_ENV);
    free(saved);
}

static void test_format_addr(void **state)
{
    char buf[REGC_ADDR_MAX], tiny[8];
    assert_int_equal(regc_format_addr("127.0.0.1", 80, buf, sizeof buf), 0);
    assert_string_equal(buf, "127.0.0.1:80");
    assert_int_equal(regc_format_addr("::1", 5380, buf, sizeof buf), 0);
    assert_string_equal(buf, "[::1]:5380");
    assert_int_equal(regc_format_addr("127.0.0.1", 80, tiny, sizeof tiny), -ENOSPC);
}

static void test_valid_service(void **state)
{
    assert_true(regc_valid_service("timestamp"));
    assert_true(regc_valid_service("a"));
    assert_true(regc_valid_service("0web-1.x_y"));
    assert_false(regc_valid_service(""));
    assert_false(regc_valid_service("-web"));
    assert_false(regc_valid_service("Web"));
    assert_false(regc_valid_service("we b"));
    char long64[65];
    memset(long64, 'a', 64);
    long64[64] = '\0';
    assert_false(regc_valid_service(long64));
    long64[63] = '\0';
    assert_true(regc_valid_service(long64));
}

static void test_load_auth(void **state)
{
    char path[] = "/tmp/test_client_authXXXXXX", *secret = (char *)1;
    regc_error err;
    int fd = mkstemp(path);
    char *saved = getenv(REGC_AUTH_ENV) ? strdup(getenv(REGC_AUTH_ENV)) : NULL;
    assert_true(fd >= 0);
    write_str(fd, "  s3cret value \n\n");
    close(fd);

    unsetenv(REGC_AUTH_ENV);
    assert_int_equal(regc_load_auth(NULL, &secret, &err), 0);
    assert_null(secret);
    assert_int_equal(regc_load_auth(path, &secret, &err), 0);
    assert_string_equal(secret, "s3cret value");
    free(secret);
    setenv(REGC_AUTH_ENV, path, 1);
    assert_int_equal(regc_load_auth(NULL, &secret, &err), 0);
    assert_string_equal(secret, "s3cret value");
    free(secret);

    fd = open(path, O_WRONLY | O_TRUNC);
    write_str(fd, " \n");
    close(fd);
    assert_int_equal(regc_load_auth(path, &secret, &err), -EINVAL);
    assert_null(secret);
    assert_int_equal(err.kind, REGC_INVALID);
    unlink(path);
    assert_int_equal(regc_load_auth(path, &secret, &err), -ENOENT);
    assert_int_equal(err.kind, REGC_INVALID);

    if (saved)
        setenv(REGC_AUTH_ENV, saved, 1);
    else
        unsetenv(REGC_AUTH_ENV);
    free(saved);
}

/* ---- framing --------------------------------------------------------------------------- */

static void test_multiple_lines_one_read(void **state)
{
    int sv[2];
    regc_conn *c;
    regc_error err;
    const char *line;
    size_t len;
    pair(SOCK_STREAM, sv);
    assert_int_equal(regc_conn_from_fd(sv[0], 2000, &c, &err), 0);
    write_str(sv[1], "first\nsecond line\n\nlast\n");
    assert_int_equal(regc_read_line(c, 2000, &line, &len, &err), 0);
    assert_string_equal(line, "first");
    assert_int_equal(len, 5);
    assert_int_equal(regc_read_line(c, 2000, &line, &len, &err), 0);
    assert_string_equal(line, "second line");
    assert_int_equal(regc_read_line(c, 2000, &line, &len, &err), 0);
    assert_string_equal(line, "");
    assert_int_equal(len, 0);
    assert_int_equal(regc_read_line(c, 2000, &line, &len, &err), 0);
    assert_string_equal(line, "last");
    assert_string_equal(regc_last_line(c), "last");
    regc_close(c);
    close(sv[1]);
}

static void test_split_reads(void **state)
{
    /* SOCK_SEQPACKET keeps write boundaries: every recv sees one piece, so a line really
     * arrives in several reads, and one read may end one line and start the next. */
    static const char *pieces[] = { "{\"o", "k\":tr", "ue}", "\n{\"ok\":", "false}\nx", "y", "\n" };
    int sv[2];
    regc_conn *c;
    regc_error err;
    const char *line;
    size_t len;
    pair(SOCK_SEQPACKET, sv);
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++)
        write_str(sv[1], pieces[i]);
    assert_int_equal(regc_conn_from_fd(sv[0], 2000, &c, &err), 0);
    assert_int_equal(regc_read_line(c, 2000, &line, &len, &err), 0);
    assert_string_equal(line, "{\"ok\":true}");
    assert_int_equal(regc_read_line(c, 2000, &line, &len, &err), 0);
    assert_string_equal(line, "{\"ok\":false}");
    assert_int_equal(regc_read_line(c, 2000, &line, &len, &err), 0);
    assert_string_equal(line, "xy");
    regc_close(c);
    close(sv[1]);
}

struct writer {
    int fd;
    size_t n;          /* bytes of 'a' */
    int newline;       /* then a newline */
};

static void *write_big(void *arg)
{
    struct writer *w = arg;
    char *buf = malloc(w->n + 1);
    size_t off = 0, total = w->n + (w->newline ? 1 : 0);
    memset(buf, 'a', w->n);
    buf[w->n] = '\n';
    while (off < total) {
        ssize_t n = send(w->fd, buf + off, total - off, MSG_NOSIGNAL);
        if (n <= 0)
            break;   /* the reader gave up: that is what the test expects */
        off += (size_t)n;
    }
    free(buf);
    return NULL;
}

static void test_longest_line_fits(void **state)
{
    int sv[2];
    pthread_t t;
    regc_conn *c;
    regc_error err;
    const char *line;
    size_t len;
    struct writer w;
    pair(SOCK_STREAM, sv);
    w.fd = sv[1];
    w.n = REGC_MAX_LINE - 1;   /* + newline = exactly the limit */
    w.newline = 1;
    assert_int_equal(pthread_create(&t, NULL, write_big, &w), 0);
    assert_int_equal(regc_conn_from_fd(sv[0], 5000, &c, &err), 0);
    assert_int_equal(regc_read_line(c, 5000, &line, &len, &err), 0);
    assert_int_equal(len, REGC_MAX_LINE - 1);
    assert_int_equal(strlen(line), REGC_MAX_LINE - 1);
    pthread_join(t, NULL);
    regc_close(c);
    close(sv[1]);
}

static void test_overlong_line(void **state)
{
    int sv[2];
    pthread_t t;
    regc_conn *c;
    regc_error err;
    const char *line;
    size_t len;
    struct writer w;
    pair(SOCK_STREAM, sv);
    w.fd = sv[1];
    w.n = REGC_MAX_LINE;      /* one byte too many before the newline */
    w.newline = 1;
    assert_int_equal(pthread_create(&t, NULL, write_big, &w), 0);
    assert_int_equal(regc_conn_from_fd(sv[0], 5000, &c, &err), 0);
    assert_int_equal(regc_read_line(c, 5000, &line, &len, &err), -EMSGSIZE);
    assert_int_equal(err.kind, REGC_PROTOCOL);
    /* Framing is lost: the connection refuses further use. */
    assert_int_equal(regc_read_line(c, 5000, &line, &len, &err), -EPROTO);
    regc_close(c);          /* unblocks the writer if it still writes */
    pthread_join(t, NULL);
    close(sv[1]);
}

static void test_closed_between_lines(void **state)
{
    int sv[2];
    regc_conn *c;
    regc_error err;
    const char *line;
    size_t len;
    pair(SOCK_STREAM, sv);
    write_str(sv[1], "one\n");
    shutdown(sv[1], SHUT_WR);
    assert_int_equal(regc_conn_from_fd(sv[0], 2000, &c, &err), 0);
    assert_int_equal(regc_read_line(c, 2000, &line, &len, &err), 0);
    assert_int_equal(regc_read_line(c, 2000, &line, &len, &err), -ECONNRESET);
    assert_int_equal(err.kind, REGC_UNREACHABLE);
    assert_non_null(strstr(err.message, "closed"));
    regc_close(c);
    close(sv[1]);
}

static void test_closed_mid_line(void **state)
{
    int sv[2];
    regc_conn *c;
    regc_error err;
    const char *line;
    size_t len;
    pair(SOCK_STREAM, sv);
    write_str(sv[1], "{\"ok\":tr");
    close(sv[1]);
    assert_int_equal(regc_conn_from_fd(sv[0], 2000, &c, &err), 0);
    assert_int_equal(regc_read_line(c, 2000, &line, &len, &err), -ECONNRESET);
    assert_int_equal(err.kind, REGC_UNREACHABLE);
    assert_non_null(strstr(err.message, "middle"));
    regc_close(c);
}

static void test_send_line_limits(void **state)
{
    int sv[2];
    regc_conn *c;
    regc_error err;
    char *big = malloc(REGC_MAX_LINE);
    pair(SOCK_STREAM, sv);
    assert_int_equal(regc_conn_from_fd(sv[0], 2000, &c, &err), 0);
    memset(big, 'x', REGC_MAX_LINE);
    assert_int_equal(regc_send_line(c, big, REGC_MAX_LINE, &err), -EMSGSIZE);
    assert_int_equal(err.kind, REGC_INVALID);
    assert_int_equal(regc_send_line(c, "a\nb", 3, &err), -EINVAL);
    assert_int_equal(regc_send_line(c, "hello", 5, &err), 0);
    char got[64];
    read_sent(sv[1], got, sizeof got);
    assert_string_equal(got, "hello\n");
    free(big);
    regc_close(c);
    close(sv[1]);
}

/* ---- connection errors ----------------------------------------------------------------- */

static void test_connect_refused(void **state)
{
    char addr[64];
    regc_conn *c = (regc_conn *)1;
    regc_error err;
    /* Bound but not listening: the kernel refuses, and nobody else can take the port
     * while we hold it. */
    int fd = listener(addr, sizeof addr, 0);
    int64_t t0 = mono_ms();
    assert_int_equal(regc_connect(addr, 2000, &c, &err), -ECONNREFUSED);
    assert_null(c);
    assert_int_equal(err.kind, REGC_UNREACHABLE);
    assert_int_equal(err.errnum, ECONNREFUSED);
    assert_non_null(strstr(err.message, addr));
    assert_true(mono_ms() - t0 < 2000);
    close(fd);
}

static void test_connect_bad_addr(void **state)
{
    regc_conn *c;
    regc_error err;
    assert_int_equal(regc_connect("nonsense", 100, &c, &err), -EINVAL);
    assert_int_equal(err.kind, REGC_INVALID);
    assert_int_equal(regc_connect("127.0.0.1:0", 100, &c, &err), -EINVAL);
    assert_int_equal(err.kind, REGC_INVALID);
}

static void test_timeout_silent_server(void **state)
{
    char addr[64];
    regc_conn *c;
    regc_error err;
    /* Listening but never accepting or answering: the kernel completes the handshake,
     * the reply never comes. */
    int fd = listener(addr, sizeof addr, 1);
    assert_int_equal(regc_connect(addr, 200, &c, &err), 0);
    int64_t t0 = mono_ms();
    assert_int_equal(regc_ping(c, &err), -ETIMEDOUT);
    int64_t took = mono_ms() - t0;
    assert_int_equal(err.kind, REGC_UNREACHABLE);
    assert_true(took >= 190);
    assert_true(took < 3000);
    /* A late reply could no longer be paired with its request. */
    assert_int_equal(regc_ping(c, &err), -EPROTO);
    regc_close(c);
    close(fd);
}

static void test_interrupt_flag(void **state)
{
    /* With the flag set before the wait, an EINTR ends the wait; here we only check the
     * flag does not disturb a normal read. */
    int sv[2];
    volatile sig_atomic_t flag = 0;
    regc_conn *c;
    regc_error err;
    const char *line;
    size_t len;
    pair(SOCK_STREAM, sv);
    assert_int_equal(regc_conn_from_fd(sv[0], 2000, &c, &err), 0);
    regc_set_interrupt(c, &flag);
    write_str(sv[1], "x\n");
    assert_int_equal(regc_read_line(c, -1, &line, &len, &err), 0);
    assert_string_equal(line, "x");
    regc_close(c);
    close(sv[1]);
}

/* ---- replies --------------------------------------------------------------------------- */

/* A connection whose peer has already written `reply`. */
static regc_conn *scripted(const char *reply, int sv[2])
{
    regc_conn *c;
    regc_error err;
    pair(SOCK_STREAM, sv);
    write_str(sv[1], reply);
    assert_int_equal(regc_conn_from_fd(sv[0], 2000, &c, &err), 0);
    return c;
}

static void test_error_not_found(void **state)
{
    int sv[2];
    regc_error err;
    regc_lookup_result *r = (regc_lookup_result *)1;
    regc_conn *c = scripted("{\"ok\":false,\"error\":{\"code\":\"not_found\","
                            "\"message\":\"no passing instance of 'web'\"}}\n", sv);
    assert_int_equal(regc_lookup(c, "web", NULL, 0, &r, &err), -ENOENT);
    assert_null(r);
    assert_int_equal(err.kind, REGC_NOT_FOUND);
    assert_string_equal(err.code, "not_found");
    assert_string_equal(err.message, "no passing instance of 'web'");
    regc_close(c);
    close(sv[1]);
}

static void test_error_remote(void **state)
{
    int sv[2];
    regc_error err;
    json_t *resp = NULL, *req = json_pack("{s:s}", "op", "deregister");
    regc_conn *c = scripted("{\"ok\":false,\"error\":{\"code\":\"unauthorized\","
                            "\"message\":\"wrong token\\nsecond line\"},\"request_id\":7}\n", sv);
    assert_int_equal(regc_request(c, req, &resp, &err), -EREMOTEIO);
    assert_int_equal(err.kind, REGC_REMOTE);
    assert_string_equal(err.code, "unauthorized");
    /* A foreign message is kept on one line. */
    assert_string_equal(err.message, "wrong token second line");
    /* The error reply is handed out too (regctl --json prints it). */
    assert_non_null(resp);
    assert_int_equal(json_integer_value(json_object_get(resp, "request_id")), 7);
    assert_non_null(strstr(regc_last_line(c), "unauthorized"));
    json_decref(resp);
    json_decref(req);
    regc_close(c);
    close(sv[1]);
}

static void test_malformed_replies(void **state)
{
    static const char *bad[] = {
        "not json\n", "[1,2]\n", "{\"ok\":1}\n", "{\"ok\":false}\n",
        "{\"ok\":false,\"error\":{\"message\":\"x\"}}\n", "{}\n", "\"ok\"\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int sv[2];
        regc_error err;
        json_t *resp = (json_t *)1;
        regc_conn *c = scripted(bad[i], sv);
        json_t *req = json_pack("{s:s}", "op", "ping");
        int rc = regc_request(c, req, &resp, &err);
        if (rc != -EPROTO)
            fail_msg("reply '%s' gave %d", bad[i], rc);
        assert_int_equal(err.kind, REGC_PROTOCOL);
        assert_null(resp);
        json_decref(req);
        regc_close(c);
        close(sv[1]);
    }
}

static void test_register_request_and_reply(void **state)
{
    int sv[2];
    regc_error err;
    char id[REGC_ID_MAX], token[REGC_TOKEN_MAX], sent[4096];
    const char *tags[] = { "blue", "v2" };
    regc_registration r = { .service = "web", .host = "10.0.0.5", .port = 8080,
                            .description = "the web", .tags = tags, .ntags = 2, .ttl = 30,
                            .check = REGC_CHECK_NONE };
    regc_conn *c = scripted("{\"ok\":true,\"id\":\"0123456789abcdef\",\"token\":\"tok\"}\n", sv);
    assert_int_equal(regc_set_auth(c, "hush"), 0);
    assert_int_equal(regc_register(c, &r, id, token, &err), 0);
    assert_string_equal(id, "0123456789abcdef");
    assert_string_equal(token, "tok");

    read_sent(sv[1], sent, sizeof sent);
    assert_int_equal(sent[strlen(sent) - 1], '\n');
    json_t *o = json_loads(sent, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "op")), "register");
    assert_string_equal(json_string_value(json_object_get(o, "service")), "web");
    assert_string_equal(json_string_value(json_object_get(o, "host")), "10.0.0.5");
    assert_int_equal(json_integer_value(json_object_get(o, "port")), 8080);
    assert_int_equal(json_integer_value(json_object_get(o, "ttl")), 30);
    assert_string_equal(json_string_value(json_object_get(o, "check")), "none");
    assert_string_equal(json_string_value(json_object_get(o, "auth")), "hush");
    assert_int_equal(json_array_size(json_object_get(o, "tags")), 2);
    json_decref(o);
    regc_close(c);
    close(sv[1]);
}

static void test_register_reply_without_token(void **state)
{
    int sv[2];
    regc_error err;
    char id[REGC_ID_MAX], token[REGC_TOKEN_MAX];
    regc_registration r = { .service = "web", .port = 1 };
    regc_conn *c = scripted("{\"ok\":true,\"id\":\"abc\"}\n", sv);
    assert_int_equal(regc_register(c, &r, id, token, &err), -EPROTO);
    assert_int_equal(err.kind, REGC_PROTOCOL);
    regc_close(c);
    close(sv[1]);
}

static void test_oversized_request(void **state)
{
    int sv[2];
    regc_error err;
    char id[REGC_ID_MAX], token[REGC_TOKEN_MAX];
    char *desc = malloc(REGC_MAX_LINE + 1);
    memset(desc, 'd', REGC_MAX_LINE);
    desc[REGC_MAX_LINE] = '\0';
    regc_registration r = { .service = "web", .port = 1, .description = desc };
    regc_conn *c = scripted("", sv);
    assert_int_equal(regc_register(c, &r, id, token, &err), -EMSGSIZE);
    assert_int_equal(err.kind, REGC_INVALID);
    /* Nothing went out. */
    char got[8];
    assert_int_equal(recv(sv[1], got, sizeof got, MSG_DONTWAIT), -1);
    free(desc);
    regc_close(c);
    close(sv[1]);
}

static void test_lookup_reply(void **state)
{
    int sv[2];
    regc_error err;
    regc_lookup_result *r;
    regc_conn *c = scripted(
        "{\"ok\":true,\"service\":\"web\",\"host\":\"::1\",\"port\":81,\"description\":\"d\","
        "\"instances\":[{\"id\":\"a\",\"host\":\"::1\",\"port\":81,\"status\":\"passing\","
        "\"tags\":[\"x\"],\"last_seen\":\"2026-01-01T00:00:00Z\"},"
        "{\"id\":\"b\",\"host\":\"10.0.0.1\",\"port\":82,\"status\":\"critical\"}]}\n", sv);
    assert_int_equal(regc_lookup(c, "web", "x", 1, &r, &err), 0);
    assert_string_equal(r->host, "::1");
    assert_int_equal(r->port, 81);
    assert_int_equal(r->ninstances, 2);
    assert_string_equal(r->instances[0].id, "a");
    assert_string_equal(r->instances[0].last_seen, "2026-01-01T00:00:00Z");
    assert_null(r->instances[0].last_check);
    assert_int_equal(json_array_size(r->instances[0].tags), 1);
    assert_string_equal(r->instances[1].status, "critical");
    assert_int_equal(r->instances[1].port, 82);
    regc_lookup_free(r);

    char sent[1024];
    read_sent(sv[1], sent, sizeof sent);
    json_t *o = json_loads(sent, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "tag")), "x");
    assert_true(json_is_true(json_object_get(o, "all")));
    assert_null(json_object_get(o, "auth"));
    json_decref(o);
    regc_close(c);
    close(sv[1]);
}

static void test_lookup_bad_port(void **state)
{
    int sv[2];
    regc_error err;
    regc_lookup_result *r;
    regc_conn *c = scripted("{\"ok\":true,\"service\":\"web\",\"host\":\"h\",\"port\":70000}\n", sv);
    assert_int_equal(regc_lookup(c, "web", NULL, 0, &r, &err), -EPROTO);
    assert_int_equal(err.kind, REGC_PROTOCOL);
    regc_close(c);
    close(sv[1]);
}

static void test_list_reply(void **state)
{
    int sv[2];
    regc_error err;
    regc_service_list *l;
    regc_conn *c = scripted("{\"ok\":true,\"services\":[{\"service\":\"a\",\"description\":\"x\","
                            "\"instances\":3,\"passing\":2},{\"service\":\"b\",\"instances\":1,"
                            "\"passing\":0}]}\n", sv);
    assert_int_equal(regc_list(c, &l, &err), 0);
    assert_int_equal(l->nservices, 2);
    assert_string_equal(l->services[0].service, "a");
    assert_int_equal(l->services[0].instances, 3);
    assert_int_equal(l->services[0].passing, 2);
    assert_null(l->services[1].description);
    regc_service_list_free(l);
    regc_close(c);
    close(sv[1]);
}

/* The request lines the library sent on the peer end, decoded (at most max). */
static size_t sent_requests(int fd, json_t **reqs, size_t max)
{
    static char buf[16384];
    size_t n = 0;
    read_sent(fd, buf, sizeof buf);
    for (char *line = buf, *nl; n < max && (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        reqs[n] = json_loads(line, 0, NULL);
        assert_non_null(reqs[n]);
        n++;
    }
    return n;
}

static void test_list_follows_pages(void **state)
{
    int sv[2];
    regc_error err;
    regc_service_list *l;
    json_t *reqs[4];
    regc_conn *c = scripted(
        "{\"ok\":true,\"services\":[{\"service\":\"a\",\"instances\":1,\"passing\":1}],"
        "\"next\":\"a\"}\n"
        "{\"ok\":true,\"services\":[{\"service\":\"b\",\"instances\":2,\"passing\":0},"
        "{\"service\":\"c\",\"instances\":3,\"passing\":3}],\"next\":\"c\"}\n"
        "{\"ok\":true,\"services\":[{\"service\":\"d\",\"instances\":4,\"passing\":4}]}\n",
        sv);
    assert_int_equal(regc_list(c, &l, &err), 0);
    assert_int_equal(l->nservices, 4);
    assert_string_equal(l->services[0].service, "a");
    assert_string_equal(l->services[1].service, "b");
    assert_int_equal(l->services[1].passing, 0);
    assert_string_equal(l->services[3].service, "d");
    assert_int_equal(l->services[3].instances, 4);
    assert_null(l->next);
    /* The reply holds them all, and says no "next": what regctl --json prints. */
    assert_int_equal(json_array_size(json_object_get(l->reply, "services")), 4);
    assert_null(json_object_get(l->reply, "next"));
    regc_service_list_free(l);

    assert_int_equal(sent_requests(sv[1], reqs, 4), 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(json_string_value(json_object_get(reqs[i], "op")), "list");
        assert_int_equal(json_integer_value(json_object_get(reqs[i], "limit")), REGC_PAGE_MAX);
    }
    assert_null(json_object_get(reqs[0], "cursor"));
    assert_string_equal(json_string_value(json_object_get(reqs[1], "cursor")), "a");
    assert_string_equal(json_string_value(json_object_get(reqs[2], "cursor")), "c");
    for (int i = 0; i < 3; i++)
        json_decref(reqs[i]);
    regc_close(c);
    close(sv[1]);
}

static void test_lookup_follows_pages(void **state)
{
    int sv[2];
    regc_error err;
    regc_lookup_result *r;
    json_t *reqs[4];
    regc_conn *c = scripted(
        "{\"ok\":true,\"service\":\"web\",\"host\":\"10.0.0.2\",\"port\":82,"
        "\"instances\":[{\"id\":\"a\",\"host\":\"10.0.0.1\",\"port\":81}],\"next\":\"0.a\"}\n"
        "{\"ok\":true,\"service\":\"web\",\"host\":\"10.0.0.1\",\"port\":81,"
        "\"instances\":[{\"id\":\"b\",\"host\":\"10.0.0.2\",\"port\":82,\"tags\":[\"t\"]}]}\n",
        sv);
    assert_int_equal(regc_lookup(c, "web", "t", 1, &r, &err), 0);
    /* The endpoint is the first page's; the instances are every page's, in order. */
    assert_string_equal(r->host, "10.0.0.2");
    assert_int_equal(r->port, 82);
    assert_int_equal(r->ninstances, 2);
    assert_string_equal(r->instances[0].id, "a");
    assert_string_equal(r->instances[1].id, "b");
    assert_int_equal(json_array_size(r->instances[1].tags), 1);
    assert_null(r->next);
    regc_lookup_free(r);

    assert_int_equal(sent_requests(sv[1], reqs, 4), 2);
    for (int i = 0; i < 2; i++) {
        assert_string_equal(json_string_value(json_object_get(reqs[i], "service")), "web");
        assert_string_equal(json_string_value(json_object_get(reqs[i], "tag")), "t");
        assert_true(json_is_true(json_object_get(reqs[i], "all")));
    }
    assert_null(json_object_get(reqs[0], "cursor"));
    assert_string_equal(json_string_value(json_object_get(reqs[1], "cursor")), "0.a");
    for (int i = 0; i < 2; i++)
        json_decref(reqs[i]);
    regc_close(c);
    close(sv[1]);
}

static void test_one_page(void **state)
{
    int sv[2];
    regc_error err;
    regc_service_list *l = NULL;
    regc_lookup_result *r = NULL;
    json_t *reqs[4];
    regc_conn *c = scripted(
        "{\"ok\":true,\"services\":[{\"service\":\"b\"}],\"next\":\"b\"}\n"
        "{\"ok\":true,\"service\":\"web\",\"host\":\"h\",\"port\":1,"
        "\"instances\":[{\"id\":\"a\",\"host\":\"h\",\"port\":1}]}\n", sv);
    assert_int_equal(regc_list_page(c, 1, "a", &l, &err), 0);
    assert_int_equal(l->nservices, 1);
    assert_string_equal(l->next, "b");
    regc_service_list_free(l);
    assert_int_equal(regc_lookup_page(c, "web", NULL, 0, 5, NULL, &r, &err), 0);
    assert_int_equal(r->ninstances, 1);
    assert_null(r->next);          /* the last page */
    regc_lookup_free(r);
    assert_int_equal(sent_requests(sv[1], reqs, 4), 2);
    assert_int_equal(json_integer_value(json_object_get(reqs[0], "limit")), 1);
    assert_string_equal(json_string_value(json_object_get(reqs[0], "cursor")), "a");
    assert_int_equal(json_integer_value(json_object_get(reqs[1], "limit")), 5);
    assert_null(json_object_get(reqs[1], "cursor"));
    json_decref(reqs[0]);
    json_decref(reqs[1]);
    /* A limit out of range is the caller's mistake; nothing is sent. */
    assert_int_equal(regc_list_page(c, 0, NULL, &l, &err), -EINVAL);
    assert_int_equal(err.kind, REGC_INVALID);
    assert_null(l);
    assert_int_equal(regc_lookup_page(c, "web", NULL, 0, REGC_PAGE_MAX + 1, NULL, &r, &err),
                     -EINVAL);
    assert_null(r);
    regc_close(c);
    close(sv[1]);
}

static void test_pages_that_do_not_advance(void **state)
{
    /* A registry that hands out the same cursor again, or an empty page that is not the
     * last, would keep the library asking for ever: a protocol error instead. */
    static const char *const scripts[] = {
        "{\"ok\":true,\"services\":[{\"service\":\"a\"}],\"next\":\"a\"}\n"
        "{\"ok\":true,\"services\":[{\"service\":\"a\"}],\"next\":\"a\"}\n",
        "{\"ok\":true,\"services\":[{\"service\":\"a\"}],\"next\":\"a\"}\n"
        "{\"ok\":true,\"services\":[],\"next\":\"b\"}\n",
        "{\"ok\":true,\"services\":[{\"service\":\"a\"}],\"next\":7}\n",
        "{\"ok\":true,\"services\":[{\"service\":\"a\"}],\"next\":\"a\"}\n"
        "{\"ok\":true,\"services\":{}}\n",
    };
    for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++) {
        int sv[2];
        regc_error err;
        regc_service_list *l = (regc_service_list *)1;
        regc_conn *c = scripted(scripts[i], sv);
        assert_int_equal(regc_list(c, &l, &err), -EPROTO);
        assert_int_equal(err.kind, REGC_PROTOCOL);
        assert_null(l);
        regc_close(c);
        close(sv[1]);
    }
}

static void test_events_and_watch(void **state)
{
    int sv[2];
    regc_error err;
    regc_event_list *l;
    regc_event ev;
    regc_conn *c = scripted(
        "{\"ok\":true,\"events\":[{\"seq\":4,\"ts\":\"T\",\"event\":\"check_failed\","
        "\"service\":\"web\",\"host\":\"127.0.0.1\",\"port\":9,\"detail\":{\"failures\":2}}]}\n"
        "{\"ok\":true}\n"
        "{\"seq\":5,\"ts\":\"T2\",\"event\":\"evict\",\"service\":\"web\",\"detail\":\"3 of 3\"}\n"
        "{\"ok\":false,\"error\":{\"code\":\"unavailable\",\"message\":\"too slow\"}}\n", sv);
    assert_int_equal(regc_events(c, 3, "web", 10, &l, &err), 0);
    assert_int_equal(l->nevents, 1);
    assert_int_equal(l->events[0].seq, 4);
    assert_string_equal(l->events[0].event, "check_failed");
    assert_int_equal(l->events[0].port, 9);
    assert_string_equal(l->events[0].detail, "{\"failures\":2}");
    regc_event_list_free(l);

    assert_int_equal(regc_watch_start(c, "web", &err), 0);
    assert_int_equal(regc_watch_next(c, 2000, &ev, &err), 0);
    assert_int_equal(ev.seq, 5);
    assert_string_equal(ev.event, "evict");
    assert_string_equal(ev.detail, "3 of 3");
    assert_int_equal(ev.port, 0);
    assert_null(ev.host);
    assert_int_equal(regc_watch_next(c, 2000, &ev, &err), -EREMOTEIO);
    assert_string_equal(err.code, "unavailable");
    close(sv[1]);
    assert_int_equal(regc_watch_next(c, 2000, &ev, &err), -ECONNRESET);
    assert_int_equal(err.kind, REGC_UNREACHABLE);
    regc_close(c);
}

/* ---- the registration helper --------------------------------------------------------- */

/* A scripted registry in a thread: for each step, accept a connection if asked, read
 * one request and check its op, then answer or hang up. */
enum { S_REPLY, S_CLOSE, S_EXPECT_EOF };
struct step {
    int accept;              /* accept a new connection first */
    const char *op;          /* the op the request must have */
    int action;              /* S_REPLY: send reply; S_CLOSE: close the connection */
    const char *reply;
};

struct script {
    int lfd;
    const struct step *steps;
    size_t nsteps;
    size_t done;             /* steps that went as scripted */
    char failure[512];
    char last_id[64], last_token[64];   /* from the last deregister/heartbeat seen */
    char reg_token[64];      /* the token the last register carried, or "" */
    int missing_auth;        /* requests without the configured secret */
};

static void *run_script(void *arg)
{
    struct script *s = arg;
    regc_conn *c = NULL;
    regc_error err;
    const char *line;
    size_t len;

    for (size_t i = 0; i < s->nsteps; i++) {
        const struct step *st = &s->steps[i];
        if (st->accept) {
            regc_close(c);
            c = NULL;
            struct pollfd pfd = { .fd = s->lfd, .events = POLLIN };
            if (poll(&pfd, 1, 10000) != 1) {
                snprintf(s->failure, sizeof s->failure, "step %zu: no connection", i);
                break;
            }
            int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
            if (fd < 0 || regc_conn_from_fd(fd, 10000, &c, &err) < 0) {
                snprintf(s->failure, sizeof s->failure, "step %zu: accept failed", i);
                break;
            }
        }
        if (regc_read_line(c, 10000, &line, &len, &err) < 0) {
            snprintf(s->failure, sizeof s->failure, "step %zu: %s", i, err.message);
            break;
        }
        json_t *o = json_loadb(line, len, 0, NULL);
        const char *op = json_string_value(json_object_get(o, "op"));
        if (!op || strcmp(op, st->op) != 0) {
            snprintf(s->failure, sizeof s->failure, "step %zu: want op %s, got %.100s", i,
                     st->op, line);
            json_decref(o);
            break;
        }
        if (!json_is_string(json_object_get(o, "auth")) ||
            strcmp(json_string_value(json_object_get(o, "auth")), "sesame") != 0)
            s->missing_auth++;
        if (strcmp(op, "register") == 0)
            snprintf(s->reg_token, sizeof s->reg_token, "%s",
                     json_string_value(json_object_get(o, "token")) ?
                     json_string_value(json_object_get(o, "token")) : "");
        if (json_object_get(o, "id")) {
            snprintf(s->last_id, sizeof s->last_id, "%s",
                     json_string_value(json_object_get(o, "id")));
            snprintf(s->last_token, sizeof s->last_token, "%s",
                     json_string_value(json_object_get(o, "token")));
        }
        json_decref(o);
        if (st->action == S_CLOSE) {
            regc_close(c);
            c = NULL;
        } else if (regc_send_line(c, st->reply, strlen(st->reply), &err) < 0) {
            snprintf(s->failure, sizeof s->failure, "step %zu: %s", i, err.message);
            break;
        }
        s->done = i + 1;
    }
    regc_close(c);
    return NULL;
}

struct helper_test {
    regc_helper *h;
    const char *want_id;     /* stop once registered with this id */
    int stopped;
    int done_called;
    int timed_out;
    uv_timer_t poll, watchdog;
};

static void on_done(void *arg)
{
    struct helper_test *t = arg;
    t->done_called++;
    uv_close((uv_handle_t *)&t->poll, NULL);
    uv_close((uv_handle_t *)&t->watchdog, NULL);
}

static void on_poll(uv_timer_t *timer)
{
    struct helper_test *t = timer->data;
    char id[REGC_ID_MAX];
    if (!t->stopped && regc_helper_registered(t->h, id) && strcmp(id, t->want_id) == 0) {
        t->stopped = 1;
        uv_timer_stop(timer);
        regc_helper_stop(t->h, 5000, on_done, t);
    }
}

static void on_watchdog(uv_timer_t *timer)
{
    struct helper_test *t = timer->data;
    t->timed_out = 1;
    if (!t->stopped) {
        t->stopped = 1;
        uv_timer_stop(&t->poll);
        regc_helper_stop(t->h, 0, on_done, t);
    }
}

/* Counts the helper's log lines that say it moves to another node. */
static void count_moves(void *arg, const char *msg)
{
    if (strstr(msg, "moving to the registry"))
        (*(int *)arg)++;
}

/* Runs a helper against the registry nodes `nodes` (a list: addresses of listeners,
 * `scripts[i]` served on the ith, where scripts[i].steps is set; the others are
 * listeners nobody serves) until it is registered as want_id, then stops it. *moves
 * (may be NULL) gets the count of "moving to" log lines. */
static void run_helper_nodes(struct script *scripts, size_t n, int ttl, int reply_ms,
                             const char *want_id, int *moves)
{
    char addr[64], list[64 * 4] = "", errbuf[256];
    uv_loop_t loop;
    pthread_t thr[4];
    struct helper_test t;
    int nmoves = 0;
    regc_helper_config cfg = {
        .registry = NULL,
        .reg = { .service = "web", .host = "127.0.0.1", .port = 4242, .ttl = ttl },
        .auth = "sesame",
        .reply_timeout_ms = reply_ms,
        .log = count_moves,
        .log_arg = &nmoves,
    };

    assert_true(n >= 1 && n <= 4);
    memset(&t, 0, sizeof t);
    for (size_t i = 0; i < n; i++) {
        scripts[i].lfd = listener(addr, sizeof addr, 1);
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? "," : "", addr);
        if (scripts[i].steps)
            assert_int_equal(pthread_create(&thr[i], NULL, run_script, &scripts[i]), 0);
    }
    cfg.registry = list;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(regc_helper_create(&loop, &cfg, &t.h, errbuf, sizeof errbuf), 0);
    t.want_id = want_id;
    uv_timer_init(&loop, &t.poll);
    uv_timer_init(&loop, &t.watchdog);
    t.poll.data = t.watchdog.data = &t;
    uv_timer_start(&t.poll, on_poll, 5, 5);
    uv_timer_start(&t.watchdog, on_watchdog, 15000, 0);
    assert_int_equal(regc_helper_start(t.h), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    for (size_t i = 0; i < n; i++) {
        if (scripts[i].steps)
            pthread_join(thr[i], NULL);
        close(scripts[i].lfd);
    }
    assert_false(t.timed_out);
    assert_int_equal(t.done_called, 1);
    for (size_t i = 0; i < n; i++) {
        if (scripts[i].failure[0])
            fail_msg("node %zu: %s", i, scripts[i].failure);
        assert_int_equal(scripts[i].missing_auth, 0);
    }
    if (moves)
        *moves = nmoves;
}

/* Runs a helper against `script` until it is registered as want_id, then stops it. */
static void run_helper(const struct step *steps, size_t nsteps, int ttl, const char *want_id,
                       struct script *s)
{
    memset(s, 0, sizeof *s);
    s->steps = steps;
    s->nsteps = nsteps;
    run_helper_nodes(s, 1, ttl, 5000, want_id, NULL);
}

static void test_helper_reregisters_after_registry_loss(void **state)
{
    struct script s;
    /* The registry dies with the registration in flight: the connection drops with no
     * answer; the helper must connect again and register. */
    static const struct step quick[] = {
        { 1, "register", S_CLOSE, NULL },
        { 1, "register", S_REPLY, "{\"ok\":true,\"id\":\"id2\",\"token\":\"t2\"}" },
        { 0, "deregister", S_REPLY, "{\"ok\":true}" },
    };
    run_helper(quick, 3, 0, "id2", &s);
    assert_int_equal(s.done, 3);
    assert_string_equal(s.last_id, "id2");
    assert_string_equal(s.last_token, "t2");
}

static void test_helper_heartbeat_not_found(void **state)
{
    static const struct step steps[] = {
        { 1, "register", S_REPLY, "{\"ok\":true,\"id\":\"id1\",\"token\":\"t1\"}" },
        { 0, "heartbeat", S_REPLY,
          "{\"ok\":false,\"error\":{\"code\":\"not_found\",\"message\":\"expired\"}}" },
        { 0, "register", S_REPLY, "{\"ok\":true,\"id\":\"id2\",\"token\":\"t2\"}" },
        { 0, "deregister", S_REPLY, "{\"ok\":true}" },
    };
    struct script s;
    run_helper(steps, 4, 1, "id2", &s);   /* ttl 1: heartbeat after ~333 ms */
    assert_int_equal(s.done, 4);
    assert_string_equal(s.last_id, "id2");
}

static void test_helper_refused_registration_retries(void **state)
{
    static const struct step steps[] = {
        { 1, "register", S_REPLY,
          "{\"ok\":false,\"error\":{\"code\":\"unavailable\",\"message\":\"full\"}}" },
        { 1, "register", S_REPLY, "{\"ok\":true,\"id\":\"id9\",\"token\":\"t9\"}" },
        { 0, "deregister", S_REPLY, "{\"ok\":true}" },
    };
    struct script s;
    run_helper(steps, 3, 0, "id9", &s);
    assert_int_equal(s.done, 3);
}

static void on_stop_now(uv_timer_t *timer)
{
    struct helper_test *t = timer->data;
    t->stopped = 1;
    regc_helper_stop(t->h, 5000, on_done, t);
}

static void test_helper_registry_down_stops_promptly(void **state)
{
    char addr[64], errbuf[256];
    uv_loop_t loop;
    struct helper_test t;
    int fd = listener(addr, sizeof addr, 0);   /* refuses */
    regc_helper_config cfg = {
        .registry = addr,
        .reg = { .service = "web", .port = 4242, .ttl = 15 },
    };
    memset(&t, 0, sizeof t);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(regc_helper_create(&loop, &cfg, &t.h, errbuf, sizeof errbuf), 0);
    uv_timer_init(&loop, &t.poll);
    uv_timer_init(&loop, &t.watchdog);
    t.poll.data = t.watchdog.data = &t;
    /* Let it fail a few connects, then stop while it backs off. */
    uv_timer_start(&t.poll, on_stop_now, 400, 0);
    assert_int_equal(regc_helper_start(t.h), 0);
    int64_t t0 = mono_ms();
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(mono_ms() - t0 < 2000);   /* no deregistration to wait for */
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(t.done_called, 1);
    close(fd);
}

static void test_helper_bad_config(void **state)
{
    uv_loop_t loop;
    regc_helper *h = NULL;
    char errbuf[256];
    regc_helper_config cfg = { .registry = "127.0.0.1:1", .reg = { .service = "Bad", .port = 1 } };
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(regc_helper_create(&loop, &cfg, &h, errbuf, sizeof errbuf), -EINVAL);
    assert_null(h);
    cfg.reg.service = "ok";
    cfg.reg.port = 0;
    assert_int_equal(regc_helper_create(&loop, &cfg, &h, errbuf, sizeof errbuf), -EINVAL);
    cfg.reg.port = 1;
    cfg.registry = "nonsense";
    assert_int_equal(regc_helper_create(&loop, &cfg, &h, errbuf, sizeof errbuf), -EINVAL);
    /* Created but never started: stop still frees it and leaves the loop empty. */
    cfg.registry = "127.0.0.1:1";
    assert_int_equal(regc_helper_create(&loop, &cfg, &h, errbuf, sizeof errbuf), 0);
    regc_helper_stop(h, 100, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Node A answers the registration, then dies at the first heartbeat (its connection
 * closes): the helper moves to node B and registers there with the same endpoint and
 * the token A gave, and is deregistered from B at the stop. One log line for the move. */
static void test_helper_moves_to_next_node(void **state)
{
    static const struct step a[] = {
        { 1, "register", S_REPLY, "{\"ok\":true,\"id\":\"idA\",\"token\":\"tA\"}" },
        { 0, "heartbeat", S_CLOSE, NULL },
    };
    static const struct step b[] = {
        { 1, "register", S_REPLY, "{\"ok\":true,\"id\":\"idB\",\"token\":\"tB\"}" },
        { 0, "deregister", S_REPLY, "{\"ok\":true}" },
    };
    struct script s[2];
    int moves = -1;
    memset(s, 0, sizeof s);
    s[0].steps = a;
    s[0].nsteps = 2;
    s[1].steps = b;
    s[1].nsteps = 2;
    run_helper_nodes(s, 2, 1, 5000, "idB", &moves);   /* ttl 1: heartbeat after ~333 ms */
    assert_int_equal(s[0].done, 2);
    assert_int_equal(s[1].done, 2);
    assert_string_equal(s[1].reg_token, "tA");
    assert_string_equal(s[1].last_id, "idB");
    assert_string_equal(s[1].last_token, "tB");
    assert_int_equal(moves, 1);
}

/* Node A accepts and never answers: the registration's reply deadline moves the helper
 * to node B. */
static void test_helper_reply_timeout_moves_to_next_node(void **state)
{
    static const struct step b[] = {
        { 1, "register", S_REPLY, "{\"ok\":true,\"id\":\"idB\",\"token\":\"tB\"}" },
        { 0, "deregister", S_REPLY, "{\"ok\":true}" },
    };
    struct script s[2];
    int moves = -1;
    int64_t t0 = mono_ms();
    memset(s, 0, sizeof s);
    s[1].steps = b;
    s[1].nsteps = 2;
    run_helper_nodes(s, 2, 0, 300, "idB", &moves);
    assert_true(mono_ms() - t0 >= 300);
    assert_int_equal(s[1].done, 2);
    assert_int_equal(moves, 1);
}

/* ---- address lists and failover of the blocking calls ----------------------------------- */

static void test_parse_addr_list(void **state)
{
    regc_node nodes[REGC_NODES_MAX];
    size_t n = 99;
    regc_error err;
    assert_int_equal(regc_parse_addr_list("127.0.0.1:5380", nodes, REGC_NODES_MAX, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(nodes[0].host, "127.0.0.1");
    assert_int_equal(nodes[0].port, 5380);
    assert_int_equal(regc_parse_addr_list("10.0.0.1:1,node-b.example:2,[::1]:65535", nodes,
                                          REGC_NODES_MAX, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(nodes[0].host, "10.0.0.1");
    assert_int_equal(nodes[0].port, 1);
    assert_string_equal(nodes[1].host, "node-b.example");
    assert_int_equal(nodes[1].port, 2);
    assert_string_equal(nodes[2].host, "::1");
    assert_int_equal(nodes[2].port, 65535);
    /* A list as long as allowed. */
    char list[REGC_NODES_MAX * 16] = "";
    for (int i = 0; i < REGC_NODES_MAX; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%sh%d:%d", i ? "," : "",
                 i, 1000 + i);
    assert_int_equal(regc_parse_addr_list(list, nodes, REGC_NODES_MAX, &n, &err), 0);
    assert_int_equal(n, REGC_NODES_MAX);
    assert_string_equal(nodes[REGC_NODES_MAX - 1].host, "h15");
}

/* Each bad list is refused, its message naming what is wrong (and where). */
static void test_parse_addr_list_bad(void **state)
{
    static const struct { const char *text, *says; } bad[] = {
        { "", "empty" },
        { ",", "element 1 is empty" },
        { "a:1,", "element 2 is empty" },
        { ",a:1", "element 1 is empty" },
        { "a:1,,b:2", "element 2 is empty" },
        { "a:1,b:0", "element 2: bad address 'b:0' (port 0)" },
        { "a:0", "bad address 'a:0' (port 0)" },
        { "a:1,b:65536", "element 2: bad address 'b:65536' (port" },
        { "a:1,b", "element 2: bad address 'b'" },
        { "a:1, b:2", "element 2: bad address ' b:2'" },
        { "a:1,[::1]", "element 2: bad address '[::1]'" },
        { "a:x,b:2", "element 1: bad address 'a:x'" },
    };
    regc_node nodes[REGC_NODES_MAX];
    size_t n;
    regc_error err;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = 99;
        memset(&err, 0, sizeof err);
        if (regc_parse_addr_list(bad[i].text, nodes, REGC_NODES_MAX, &n, &err) != -EINVAL)
            fail_msg("'%s' was accepted", bad[i].text);
        assert_int_equal(err.kind, REGC_INVALID);
        assert_int_equal(n, 0);
        if (!strstr(err.message, bad[i].says))
            fail_msg("'%s': message '%s' does not say '%s'", bad[i].text, err.message,
                     bad[i].says);
    }
    /* Too many for the caller's room, or for REGC_NODES_MAX. */
    assert_int_equal(regc_parse_addr_list("a:1,b:2,c:3", nodes, 2, &n, &err), -EINVAL);
    assert_non_null(strstr(err.message, "more than 2 nodes"));
    char list[(REGC_NODES_MAX + 1) * 16] = "";
    for (int i = 0; i <= REGC_NODES_MAX; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%sh%d:1", i ? "," : "", i);
    assert_int_equal(regc_parse_addr_list(list, nodes, REGC_NODES_MAX + 8, &n, &err), -EINVAL);
    assert_int_equal(regc_parse_addr_list(NULL, nodes, REGC_NODES_MAX, &n, NULL), -EINVAL);
}

/* Starts a script thread on a new listener; fills addr. */
static void serve(struct script *s, const struct step *steps, size_t nsteps, char *addr,
                  size_t len, pthread_t *thr)
{
    memset(s, 0, sizeof *s);
    s->lfd = listener(addr, len, 1);
    s->steps = steps;
    s->nsteps = nsteps;
    assert_int_equal(pthread_create(thr, NULL, run_script, s), 0);
}

static void served(struct script *s, pthread_t thr, size_t want_done)
{
    pthread_join(thr, NULL);
    close(s->lfd);
    if (s->failure[0])
        fail_msg("%s", s->failure);
    assert_int_equal(s->done, want_done);
}

/* A refused node is skipped at connect; the connection names the node it reached. */
static void test_connect_list_skips_refused_node(void **state)
{
    static const struct step b[] = { { 1, "ping", S_REPLY, "{\"ok\":true}" } };
    char dead[64], live[64], list[140];
    struct script s;
    pthread_t thr;
    regc_conn *c;
    regc_error err;
    int fd = listener(dead, sizeof dead, 0);   /* bound, not listening: refused */
    serve(&s, b, 1, live, sizeof live, &thr);
    snprintf(list, sizeof list, "%s,%s", dead, live);
    assert_int_equal(regc_connect(list, 2000, &c, &err), 0);
    assert_string_equal(regc_peer(c), live);
    assert_int_equal(regc_set_auth(c, "sesame"), 0);
    assert_int_equal(regc_ping(c, &err), 0);
    regc_close(c);
    served(&s, thr, 1);
    assert_int_equal(s.missing_auth, 0);

    /* Every node refuses: unreachable, each one named. */
    int fd2 = listener(live, sizeof live, 0);
    snprintf(list, sizeof list, "%s,%s", dead, live);
    assert_int_equal(regc_connect(list, 2000, &c, &err), -ECONNREFUSED);
    assert_null(c);
    assert_int_equal(err.kind, REGC_UNREACHABLE);
    assert_non_null(strstr(err.message, dead));
    assert_non_null(strstr(err.message, live));
    close(fd);
    close(fd2);
}

/* A node that closes the connection on a request: the request goes to the next node,
 * on a new connection with the same secret, and the answer is the next node's. */
static void test_request_moves_to_next_node(void **state)
{
    static const struct step a[] = {
        { 1, "lookup", S_CLOSE, NULL },
    };
    static const struct step b[] = {
        { 1, "lookup", S_REPLY, "{\"ok\":true,\"service\":\"web\",\"host\":\"10.0.0.2\","
          "\"port\":81,\"instances\":[{\"id\":\"b\",\"host\":\"10.0.0.2\",\"port\":81}]}" },
        { 0, "ping", S_REPLY, "{\"ok\":true}" },
    };
    char aaddr[64], baddr[64], list[140];
    struct script sa, sb;
    pthread_t ta, tb;
    regc_conn *c;
    regc_lookup_result *r = NULL;
    regc_error err;
    serve(&sa, a, 1, aaddr, sizeof aaddr, &ta);
    serve(&sb, b, 2, baddr, sizeof baddr, &tb);
    snprintf(list, sizeof list, "%s,%s", aaddr, baddr);
    assert_int_equal(regc_connect(list, 2000, &c, &err), 0);
    assert_string_equal(regc_peer(c), aaddr);
    assert_int_equal(regc_set_auth(c, "sesame"), 0);
    assert_int_equal(regc_lookup(c, "web", NULL, 0, &r, &err), 0);
    assert_string_equal(r->host, "10.0.0.2");
    assert_int_equal(r->port, 81);
    assert_string_equal(regc_peer(c), baddr);
    regc_lookup_free(r);
    assert_int_equal(regc_ping(c, &err), 0);   /* and it stays there */
    regc_close(c);
    served(&sa, ta, 1);
    served(&sb, tb, 2);
    assert_int_equal(sa.missing_auth + sb.missing_auth, 0);
}

/* A node that accepts and never answers: after the reply deadline the request goes to
 * the next node, which gets its whole deadline too. */
static void test_request_timeout_moves_to_next_node(void **state)
{
    static const struct step b[] = { { 1, "ping", S_REPLY, "{\"ok\":true}" } };
    char mute[64], baddr[64], list[140];
    struct script sb;
    pthread_t tb;
    regc_conn *c;
    regc_error err;
    int fd = listener(mute, sizeof mute, 1);   /* the handshake completes, no reply */
    serve(&sb, b, 1, baddr, sizeof baddr, &tb);
    snprintf(list, sizeof list, "%s,%s", mute, baddr);
    assert_int_equal(regc_connect(list, 300, &c, &err), 0);
    int64_t t0 = mono_ms();
    assert_int_equal(regc_ping(c, &err), 0);
    int64_t took = mono_ms() - t0;
    assert_true(took >= 290);
    assert_true(took < 3000);
    assert_string_equal(regc_peer(c), baddr);
    regc_close(c);
    served(&sb, tb, 1);
    close(fd);
}

/* `unavailable` moves on too; when every node is lost the error names each, and the
 * connection is unusable until regc_reconnect. */
static void test_request_every_node_lost(void **state)
{
    static const struct step a[] = {
        { 1, "ping", S_REPLY, "{\"ok\":false,\"error\":{\"code\":\"unavailable\","
          "\"message\":\"too many connections\"}}" },
    };
    static const struct step b[] = {
        { 1, "ping", S_CLOSE, NULL },
        { 1, "ping", S_REPLY, "{\"ok\":true}" },
    };
    char aaddr[64], baddr[64], list[140];
    struct script sa, sb;
    pthread_t ta, tb;
    regc_conn *c;
    regc_error err;
    serve(&sa, a, 1, aaddr, sizeof aaddr, &ta);
    serve(&sb, b, 2, baddr, sizeof baddr, &tb);
    snprintf(list, sizeof list, "%s,%s", aaddr, baddr);
    assert_int_equal(regc_connect(list, 2000, &c, &err), 0);
    assert_int_equal(regc_set_auth(c, "sesame"), 0);
    assert_int_equal(regc_ping(c, &err), -ECONNRESET);
    assert_int_equal(err.kind, REGC_UNREACHABLE);
    assert_non_null(strstr(err.message, "no registry node answered"));
    assert_non_null(strstr(err.message, "unavailable: too many connections"));
    assert_non_null(strstr(err.message, baddr));
    assert_int_equal(regc_ping(c, &err), -EPROTO);   /* not moved again by itself */
    /* regc_reconnect goes on from the node after B: A, whose script is over (refused
     * or closed), then B, which answers. */
    served(&sa, ta, 1);
    assert_int_equal(regc_reconnect(c, &err), 0);
    assert_string_equal(regc_peer(c), baddr);
    assert_int_equal(regc_ping(c, &err), 0);
    regc_close(c);
    served(&sb, tb, 2);
}

/* regc_reconnect goes round the list; one address is connected to again; a connection
 * made from a socket has nowhere to go. */
static void test_reconnect(void **state)
{
    char aaddr[64], baddr[64], list[140];
    int fa = listener(aaddr, sizeof aaddr, 1), fb = listener(baddr, sizeof baddr, 1);
    regc_conn *c;
    regc_error err;
    int sv[2];
    snprintf(list, sizeof list, "%s,%s", aaddr, baddr);
    assert_int_equal(regc_connect(list, 2000, &c, &err), 0);
    assert_string_equal(regc_peer(c), aaddr);
    assert_int_equal(regc_reconnect(c, &err), 0);
    assert_string_equal(regc_peer(c), baddr);
    assert_int_equal(regc_reconnect(c, &err), 0);
    assert_string_equal(regc_peer(c), aaddr);
    regc_close(c);
    assert_int_equal(regc_connect(baddr, 2000, &c, &err), 0);
    assert_int_equal(regc_reconnect(c, &err), 0);
    assert_string_equal(regc_peer(c), baddr);
    regc_close(c);
    pair(SOCK_STREAM, sv);
    assert_int_equal(regc_conn_from_fd(sv[0], 2000, &c, &err), 0);
    assert_int_equal(regc_reconnect(c, &err), -EINVAL);
    assert_int_equal(err.kind, REGC_INVALID);
    regc_close(c);
    close(sv[1]);
    close(fa);
    close(fb);
}

/* regc_resolve over a list: a refused node, then one that answers. */
static void test_resolve_list(void **state)
{
    static const struct step b[] = {
        { 1, "lookup", S_REPLY, "{\"ok\":true,\"service\":\"web\",\"host\":\"10.0.0.9\","
          "\"port\":99}" },
    };
    char dead[64], baddr[64], list[140], host[REGC_HOST_MAX];
    struct script sb;
    pthread_t tb;
    regc_error err;
    int port = 0;
    int fd = listener(dead, sizeof dead, 0);
    serve(&sb, b, 1, baddr, sizeof baddr, &tb);
    snprintf(list, sizeof list, "%s,%s", dead, baddr);
    assert_int_equal(regc_resolve(list, "web", host, sizeof host, &port, 2000, &err), 0);
    assert_string_equal(host, "10.0.0.9");
    assert_int_equal(port, 99);
    served(&sb, tb, 1);
    /* Now both refuse. */
    assert_int_equal(regc_resolve(list, "web", host, sizeof host, &port, 2000, &err),
                     -ECONNREFUSED);
    assert_int_equal(err.kind, REGC_UNREACHABLE);
    assert_non_null(strstr(err.message, dead));
    assert_non_null(strstr(err.message, baddr));
    assert_int_equal(regc_resolve("a:1,,b:2", "web", host, sizeof host, &port, 2000, &err),
                     -EINVAL);
    close(fd);
}

/* ---- regc_resolve ------------------------------------------------------------------------ */

/* One call: a lookup of one page on a connection of its own, the endpoint copied out. */
static void test_resolve(void **state)
{
    static const struct step steps[] = {
        { 1, "lookup", S_REPLY, "{\"ok\":true,\"service\":\"web\",\"host\":\"10.0.0.7\","
          "\"port\":8080,\"instances\":[{\"id\":\"a\",\"host\":\"10.0.0.7\",\"port\":8080}],"
          "\"next\":\"c1\"}" },
        { 1, "lookup", S_REPLY, "{\"ok\":false,\"error\":{\"code\":\"not_found\","
          "\"message\":\"no passing instance of web\"}}" },
        { 1, "lookup", S_REPLY, "{\"ok\":true,\"service\":\"web\","
          "\"host\":\"a-long-host.example\",\"port\":1}" },
    };
    char *saved = getenv(REGC_ADDR_ENV) ? strdup(getenv(REGC_ADDR_ENV)) : NULL;
    char addr[64], host[REGC_HOST_MAX], small[8];
    struct script s;
    pthread_t thr;
    regc_error err;
    int port = -1;

    memset(&s, 0, sizeof s);
    s.lfd = listener(addr, sizeof addr, 1);
    s.steps = steps;
    s.nsteps = sizeof steps / sizeof steps[0];
    assert_int_equal(pthread_create(&thr, NULL, run_script, &s), 0);

    /* addr NULL: $REGISTRY_ADDR. */
    setenv(REGC_ADDR_ENV, addr, 1);
    assert_int_equal(regc_resolve(NULL, "web", host, sizeof host, &port, 5000, &err), 0);
    assert_string_equal(host, "10.0.0.7");
    assert_int_equal(port, 8080);
    unsetenv(REGC_ADDR_ENV);

    assert_int_equal(regc_resolve(addr, "web", host, sizeof host, &port, 5000, &err), -ENOENT);
    assert_int_equal(err.kind, REGC_NOT_FOUND);
    assert_string_equal(err.code, "not_found");
    assert_string_equal(host, "");
    assert_int_equal(port, 0);

    assert_int_equal(regc_resolve(addr, "web", small, sizeof small, &port, 5000, &err), -ENOSPC);
    assert_int_equal(err.kind, REGC_INVALID);

    pthread_join(thr, NULL);
    close(s.lfd);
    if (s.failure[0])
        fail_msg("%s", s.failure);
    assert_int_equal(s.done, 3);
    if (saved) {
        setenv(REGC_ADDR_ENV, saved, 1);
        free(saved);
    }
}

/* timeout_ms bounds connect and reply together; nothing listening is unreachable. */
static void test_resolve_deadline(void **state)
{
    char addr[64], host[REGC_HOST_MAX];
    regc_error err;
    int port;
    int fd = listener(addr, sizeof addr, 1);   /* the handshake completes, no reply comes */
    int64_t t0 = mono_ms();
    assert_int_equal(regc_resolve(addr, "web", host, sizeof host, &port, 200, &err), -ETIMEDOUT);
    int64_t took = mono_ms() - t0;
    assert_int_equal(err.kind, REGC_UNREACHABLE);
    assert_true(took >= 190);
    assert_true(took < 3000);
    close(fd);

    fd = listener(addr, sizeof addr, 0);       /* bound, not listening: refused */
    assert_int_equal(regc_resolve(addr, "web", host, sizeof host, &port, 2000, &err),
                     -ECONNREFUSED);
    assert_int_equal(err.kind, REGC_UNREACHABLE);
    close(fd);
    assert_int_equal(regc_resolve(addr, "web", NULL, 0, &port, 2000, &err), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_v4),
        cmocka_unit_test(test_parse_v6),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_default_addr),
        cmocka_unit_test(test_format_addr),
        cmocka_unit_test(test_valid_service),
        cmocka_unit_test(test_load_auth),
        cmocka_unit_test(test_multiple_lines_one_read),
        cmocka_unit_test(test_split_reads),
        cmocka_unit_test(test_longest_line_fits),
        cmocka_unit_test(test_overlong_line),
        cmocka_unit_test(test_closed_between_lines),
        cmocka_unit_test(test_closed_mid_line),
        cmocka_unit_test(test_send_line_limits),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_connect_bad_addr),
        cmocka_unit_test(test_timeout_silent_server),
        cmocka_unit_test(test_interrupt_flag),
        cmocka_unit_test(test_error_not_found),
        cmocka_unit_test(test_error_remote),
        cmocka_unit_test(test_malformed_replies),
        cmocka_unit_test(test_register_request_and_reply),
        cmocka_unit_test(test_register_reply_without_token),
        cmocka_unit_test(test_oversized_request),
        cmocka_unit_test(test_lookup_reply),
        cmocka_unit_test(test_lookup_bad_port),
        cmocka_unit_test(test_list_reply),
        cmocka_unit_test(test_list_follows_pages),
        cmocka_unit_test(test_lookup_follows_pages),
        cmocka_unit_test(test_one_page),
        cmocka_unit_test(test_pages_that_do_not_advance),
        cmocka_unit_test(test_events_and_watch),
        cmocka_unit_test(test_helper_reregisters_after_registry_loss),
        cmocka_unit_test(test_helper_heartbeat_not_found),
        cmocka_unit_test(test_helper_refused_registration_retries),
        cmocka_unit_test(test_helper_registry_down_stops_promptly),
        cmocka_unit_test(test_helper_bad_config),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_resolve_deadline),
        cmocka_unit_test(test_helper_moves_to_next_node),
        cmocka_unit_test(test_helper_reply_timeout_moves_to_next_node),
        cmocka_unit_test(test_parse_addr_list),
        cmocka_unit_test(test_parse_addr_list_bad),
        cmocka_unit_test(test_connect_list_skips_refused_node),
        cmocka_unit_test(test_request_moves_to_next_node),
        cmocka_unit_test(test_request_timeout_moves_to_next_node),
        cmocka_unit_test(test_request_every_node_lost),
        cmocka_unit_test(test_reconnect),
        cmocka_unit_test(test_resolve_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
