/* SPDX-License-Identifier: BSD-2-Clause */
/* registry_client.h — the client library of the registry (libregclient): talk to
 * registryd.
 *
 * Three headers, so a program pulls in only what it uses:
 *  - this one: the blocking API for command-line tools and programs (regc_conn):
 *    connect with a timeout, one request / one reply, every reply read with a deadline,
 *    and regc_resolve, a service name to HOST:PORT in one call. It needs neither
 *    <uv.h> nor <jansson.h>: the decoded replies it hands out are `struct json_t *`,
 *    opaque here, jansson's json_t to a program that includes <jansson.h>;
 *  - registry_json.h: regc_request and regc_stats, which take and give jansson values;
 *  - registry_helper.h: the registration helper for long-running libuv services
 *    (regc_helper): registers, heartbeats, re-registers after a registry restart,
 *    deregisters on shutdown, all on the service's own loop and never blocking it.
 *
 * The wire protocol (README "Protocol"): one JSON object per line in each direction,
 * lines of at most REGC_MAX_LINE bytes, newline included.
 *
 * Errors: every function returns 0 or a negative errno-style value and, when `err` is not
 * NULL, fills it with a category (regc_kind), the registry's error code if the registry
 * answered one, and a one-line message for a person. The library never prints, exits or
 * aborts, and never changes the process's signal dispositions (it sends with
 * MSG_NOSIGNAL).
 *
 * Threads: the library keeps no global state. A regc_conn, and everything a call on it
 * returns, belongs to one thread at a time: use one connection per thread (or lock
 * around one). Functions without a connection (regc_resolve, regc_parse_addr,
 * regc_format_addr, regc_valid_service, regc_load_auth, regc_default_addr) may be
 * called from any thread at once, as long as no thread changes the environment
 * (setenv) meanwhile: regc_default_addr and regc_resolve read $REGISTRY_ADDR,
 * regc_load_auth $REGISTRY_AUTH_FILE. A regc_helper lives on its loop's thread
 * (registry_helper.h).
 *
 * Several registry nodes: wherever an address is taken (regc_connect, regc_resolve,
 * $REGISTRY_ADDR, the helper's config) it may be a comma-separated list of the nodes of
 * one registry, "HOST:PORT,HOST:PORT,[IPV6]:PORT" (regc_parse_addr_list). A connection
 * then goes to the first node that answers, in the list's order, and a request on it
 * whose node is lost (refused, timed out, closed, or answering `unavailable`) is sent
 * again to the next node, each node at most once per call and each with the full
 * timeout: see regc_connect. One address works exactly as it always did.
 *
 * Link: pkg-config --cflags --libs registry-client (libregclient.so; the static
 * libregclient.a with --static, which adds libuv and jansson).
 */
#ifndef REGISTRY_CLIENT_H
#define REGISTRY_CLIENT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header; the library's soname (libregclient.so.N) changes with
 * REGC_VERSION_MAJOR. */
#define REGC_VERSION_MAJOR   0
#define REGC_VERSION_MINOR   1
#define REGC_VERSION_PATCH   0
#define REGC_VERSION         "0.1.0"

/* jansson's value type, opaque to programs that do not include <jansson.h>. */
struct json_t;

#define REGC_MAX_LINE        65536      /* bytes in one protocol line, newline included */
#define REGC_DEFAULT_ADDR    "127.0.0.1:5380"
#define REGC_ADDR_ENV        "REGISTRY_ADDR"
#define REGC_AUTH_ENV        "REGISTRY_AUTH_FILE"
#define REGC_HOST_MAX        256        /* room for a host name (<= 253) + NUL */
#define REGC_ADDR_MAX        (REGC_HOST_MAX + 8) /* "[host]:65535" + NUL */
#define REGC_MSG_LEN         256        /* room for an error message */
#define REGC_ID_MAX          128        /* room for an instance id + NUL */
#define REGC_TOKEN_MAX       256        /* room for an owner token + NUL */
#define REGC_AUTH_MAX        4096       /* largest auth secret file accepted */
#define REGC_PAGE_MAX        10000      /* entries one page of list or lookup may ask for */
#define REGC_NODES_MAX       16         /* registry nodes in one address list */

/* What kind of failure an error is; callers (regctl) map these to exit codes. */
typedef enum regc_kind {
    REGC_OK = 0,
    REGC_NOT_FOUND,      /* the registry answered not_found (rc -ENOENT) */
    REGC_REMOTE,         /* the registry answered another error; see code (rc -EREMOTEIO) */
    REGC_UNREACHABLE,    /* refused, unresolvable, timed out, or closed by the peer */
    REGC_PROTOCOL,       /* a reply the protocol does not allow (not JSON, too long, ...) */
    REGC_INVALID,        /* a bad argument from the caller (rc -EINVAL or -EMSGSIZE) */
    REGC_INTERRUPTED,    /* a wait ended by a signal the caller asked to see (rc -EINTR) */
    REGC_SYSTEM          /* a local failure: out of memory, out of descriptors, ... */
} regc_kind;

typedef struct regc_error {
    regc_kind kind;
    int errnum;                  /* the positive errno value behind rc */
    char code[32];               /* registry error code ("not_found", ...) or "" */
    char message[REGC_MSG_LEN];  /* one line for a person, no trailing newline */
} regc_error;

/* ---- addresses -------------------------------------------------------------------- */

/* Parses "HOST:PORT" or "[IPV6]:PORT" (PORT 0..65535; an unbracketed host may not hold
 * ':'). Fills host[hostlen] and *port. Returns 0 or -EINVAL (err says why). */
int regc_parse_addr(const char *text, char *host, size_t hostlen, uint16_t *port,
                    regc_error *err);

/* Formats host and port as "HOST:PORT", bracketing IPv6 literals. Returns 0 or
 * -ENOSPC when buf[len] is too small. */
int regc_format_addr(const char *host, int port, char *buf, size_t len);

/* One node of an address list. */
typedef struct regc_node {
    char host[REGC_HOST_MAX];     /* as regc_parse_addr fills it: no brackets */
    uint16_t port;                /* 1..65535 */
} regc_node;

/* Parses an address list: one address, or several separated by commas
 * ("10.0.0.1:5380,10.0.0.2:5380,[::1]:5380"; no spaces), each as regc_parse_addr with a
 * port of 1-65535. Fills nodes[0 .. *n) in the list's order; max is the room in nodes
 * (REGC_NODES_MAX holds any list accepted). Returns 0, or -EINVAL (REGC_INVALID) for an
 * empty list or element, a bad address or port, or more than max or REGC_NODES_MAX
 * nodes, err naming the element and its position. A single address gets
 * regc_parse_addr's messages. */
int regc_parse_addr_list(const char *text, regc_node *nodes, size_t max, size_t *n,
                         regc_error *err);

/* The registry address to use: `arg` when not NULL/empty, else $REGISTRY_ADDR when set
 * and not empty, else REGC_DEFAULT_ADDR. Borrowed (from arg, the environment or a
 * constant). Either may be an address list. */
const char *regc_default_addr(const char *arg);

/* Is s a valid service name ([a-z0-9._-], 1..63 bytes, starting with a letter or a
 * digit)? The registry is the authority; this lets a program fail fast at start-up. */
int regc_valid_service(const char *s);

/* Reads the shared auth secret from `path`, else from the file named by
 * $REGISTRY_AUTH_FILE. On success *secret is a new malloc'd string with surrounding
 * whitespace stripped (caller frees), or NULL when neither path nor the variable is
 * set. Fails (-errno, REGC_INVALID) when the file cannot be read, is empty or is larger
 * than REGC_AUTH_MAX. */
int regc_load_auth(const char *path, char **secret, regc_error *err);

/* ---- one call ------------------------------------------------------------------------- */

/* Where is `service`? Connects to the registry at addr (NULL or "": $REGISTRY_ADDR, else
 * REGC_DEFAULT_ADDR), looks the service up, closes. On success fills host[hostlen] and
 * *port with the endpoint the registry hands out (round-robin among passing instances,
 * as regc_lookup's host/port). timeout_ms bounds the whole call, connect and reply
 * together (< 0: no limit); with an address list it bounds the call on each node, and
 * a node that cannot be reached, or answers `unavailable`, passes the question to the
 * next one. Returns 0; -ENOENT (REGC_NOT_FOUND) when no instance of the
 * service passes; -ENOSPC (REGC_INVALID) when host[hostlen] cannot hold the host
 * (REGC_HOST_MAX always can); otherwise as regc_connect and regc_lookup. Uses no
 * auth secret: a registry run with --auth-lookups needs regc_connect + regc_set_auth. */
int regc_resolve(const char *addr, const char *service, char *host, size_t hostlen,
                 int *port, int timeout_ms, regc_error *err);

/* ---- the blocking connection ---------------------------------------------------------- */

typedef struct regc_conn regc_conn;   /* opaque: one TCP connection to a line server */

/* Connects to addr ("HOST:PORT", see regc_parse_addr; NULL = regc_default_addr(NULL)),
 * resolving HOST with getaddrinfo and trying each address until one answers, all within
 * timeout_ms (< 0: no limit). timeout_ms is also the default deadline for every reply.
 * On success *out is a new connection (regc_close frees it).
 *
 * addr may be a list of nodes (regc_parse_addr_list): they are tried in order, each
 * within timeout_ms, and the connection is made to the first that accepts; when none
 * does, the error (REGC_UNREACHABLE, errnum that of the last node) names each node's
 * failure. The connection keeps the list: a request on it (regc_request, and every
 * typed operation but regc_watch_next) that meets a refusal, a timeout, a closed
 * connection or an `unavailable` answer is sent again on a new connection to the next
 * node, wrapping round, each node at most once per call and each with the whole reply
 * deadline. Such a request may have been carried out by the node that was lost before
 * it could answer: a repeated register is harmless (the same endpoint gets the same
 * id), a repeated deregister may answer not_found. A stream (regc_watch_next) is not
 * moved: after it fails, regc_reconnect and subscribe again. With one address nothing
 * of this happens. */
int regc_connect(const char *addr, int timeout_ms, regc_conn **out, regc_error *err);

/* Drops c's connection and connects again, to the next node of its list: each node is
 * tried once (in timeout_ms of regc_connect), from the one after the current one,
 * wrapping round and ending with the current one, which with one address is the only
 * one. The auth secret, reply timeout and interrupt flag stay. Returns 0 or as
 * regc_connect (then c stays unusable until a later regc_reconnect succeeds); -EINVAL
 * for a connection without an address (regc_conn_from_fd). */
int regc_reconnect(regc_conn *c, regc_error *err);

/* The node c is connected to (or was, last), as "HOST:PORT" ("[IPV6]:PORT"); "peer"
 * for regc_conn_from_fd. Borrowed: until the next call on c. */
const char *regc_peer(const regc_conn *c);

/* Wraps an already connected stream socket (owned from now on, closed by regc_close);
 * the same as regc_connect otherwise. Made for tests and for callers with their own
 * sockets. */
int regc_conn_from_fd(int fd, int timeout_ms, regc_conn **out, regc_error *err);

/* Closes the connection and frees it. NULL is a no-op. */
void regc_close(regc_conn *c);

/* Sets the deadline of later replies (< 0: wait forever). */
void regc_set_timeout(regc_conn *c, int timeout_ms);

/* Sets the auth secret (copied) sent as "auth" in every request from now on; NULL
 * clears it. Returns 0 or -ENOMEM. */
int regc_set_auth(regc_conn *c, const char *secret);

/* Lets a wait be ended by a signal: when poll() is interrupted and *flag is non-zero,
 * the call returns -EINTR (REGC_INTERRUPTED). flag is borrowed; NULL (the default)
 * makes every wait resume after signals. */
void regc_set_interrupt(regc_conn *c, volatile sig_atomic_t *flag);

/* Sends `len` bytes of `line` followed by a newline. The line may not hold a newline
 * and must fit REGC_MAX_LINE with it (else -EMSGSIZE, REGC_INVALID). */
int regc_send_line(regc_conn *c, const char *line, size_t len, regc_error *err);

/* Reads the next line, waiting at most timeout_ms (< 0: forever). On success *line
 * points at it without its newline, NUL-terminated (borrowed: valid until the next call
 * on c), and *len is its length. A peer that closes between lines gives -ECONNRESET
 * (REGC_UNREACHABLE, message "connection closed"); a line longer than REGC_MAX_LINE gives
 * -EMSGSIZE (REGC_PROTOCOL). After a timeout or a framing error the connection is
 * unusable (replies could no longer be paired with requests): later calls fail. */
int regc_read_line(regc_conn *c, int timeout_ms, const char **line, size_t *len,
                   regc_error *err);

/* The raw text of the last reply line read by any call on c (borrowed: until the next
 * call on c), or "" — what `regctl --json` prints. */
const char *regc_last_line(const regc_conn *c);

/* ---- typed operations ------------------------------------------------------------------ */

enum { REGC_CHECK_TCP = 0, REGC_CHECK_NONE = 1 };

/* What to register. Everything is borrowed for the duration of the call. */
typedef struct regc_registration {
    const char *service;          /* required */
    const char *host;             /* NULL, "0.0.0.0" or "::": the address the request came from */
    int port;                     /* 1..65535 */
    const char *description;      /* NULL: none */
    const char *const *tags;      /* ntags strings */
    size_t ntags;
    int ttl;                      /* seconds; 0: no TTL */
    int check;                    /* REGC_CHECK_TCP (default) or REGC_CHECK_NONE */
    const char *token;            /* NULL, or the current token of this instance: lets
                                   * the owner register it again from another host */
    int admin;                    /* an operator's update of someone else's instance
                                   * (needs the registry's shared secret) */
} regc_registration;

/* Registers; fills id[REGC_ID_MAX] and token[REGC_TOKEN_MAX]. */
int regc_register(regc_conn *c, const regc_registration *r, char *id, char *token,
                  regc_error *err);

int regc_deregister(regc_conn *c, const char *id, const char *token, regc_error *err);

/* Renews a TTL registration; *ttl (may be NULL) gets the registration's TTL. -ENOENT
 * (REGC_NOT_FOUND) means the registry forgot it: register again. */
int regc_heartbeat(regc_conn *c, const char *id, const char *token, int *ttl,
                   regc_error *err);

int regc_ping(regc_conn *c, regc_error *err);

/* One instance in a lookup answer. Strings borrow from the answer; NULL when the
 * registry did not send the field. */
typedef struct regc_instance {
    const char *id;
    const char *host;
    int port;
    const char *description;
    const char *status;           /* "passing", "critical", ... */
    const char *registered_at;    /* RFC 3339 UTC */
    const char *last_seen;
    const char *last_check;
    struct json_t *tags;          /* borrowed array of strings, or NULL */
} regc_instance;

typedef struct regc_lookup_result {
    const char *service;
    const char *host;             /* the endpoint to use (round-robin among passing ones) */
    int port;
    const char *description;
    regc_instance *instances;
    size_t ninstances;
    struct json_t *reply;         /* the decoded reply the strings borrow from (after
                                   * paging: the first page's, holding every instance) */
    const char *next;             /* regc_lookup_page: the cursor of the next page, NULL
                                   * on the last one; regc_lookup: always NULL */
} regc_lookup_result;

/* Looks `service` up, optionally only instances carrying `tag` (NULL: any), with `all`
 * every instance and not only passing ones. On success *out is new (free with
 * regc_lookup_free). No passing instance: -ENOENT (REGC_NOT_FOUND).
 * Every instance is there, however many: the answer is asked for in pages (README "The
 * protocol": "limit", "cursor", "next"), each one request within the connection's
 * timeout, and their instances are gathered in order. host/port are the first page's;
 * each further page is a lookup too, so it moves the registry's round-robin on. */
int regc_lookup(regc_conn *c, const char *service, const char *tag, int all,
                regc_lookup_result **out, regc_error *err);
/* One page of that answer: at most `limit` instances (1..REGC_PAGE_MAX; the registry may
 * send fewer, as a page fits one protocol line) after `cursor` (NULL: from the first),
 * host/port naming the instance handed out. (*out)->next is the cursor of the next
 * page, or NULL on the last. */
int regc_lookup_page(regc_conn *c, const char *service, const char *tag, int all, int limit,
                     const char *cursor, regc_lookup_result **out, regc_error *err);
void regc_lookup_free(regc_lookup_result *r);

typedef struct regc_service_info {
    const char *service;
    const char *description;      /* NULL when absent */
    long instances;
    long passing;
} regc_service_info;

typedef struct regc_service_list {
    regc_service_info *services;  /* sorted by name, as the registry sends them */
    size_t nservices;
    struct json_t *reply;         /* the decoded reply (after paging: holding them all) */
    const char *next;             /* regc_list_page: the cursor of the next page, NULL on
                                   * the last one; regc_list: always NULL */
} regc_service_list;

/* Every registered service, however many: asked for in pages (as regc_lookup) and
 * gathered in name order. */
int regc_list(regc_conn *c, regc_service_list **out, regc_error *err);
/* One page: at most `limit` services (1..REGC_PAGE_MAX; the registry may send fewer)
 * after `cursor` (NULL: from the first); (*out)->next as for regc_lookup_page. */
int regc_list_page(regc_conn *c, int limit, const char *cursor, regc_service_list **out,
                   regc_error *err);
void regc_service_list_free(regc_service_list *l);

/* One activity event (the `events` op and `watch` lines). Strings borrow from the
 * decoded line; NULL when absent. `detail` is the detail field as text: a string as is,
 * anything else as compact JSON. */
typedef struct regc_event {
    int64_t seq;
    const char *ts;
    const char *event;
    const char *service;
    const char *id;
    const char *host;
    int port;                     /* 0 when absent */
    const char *detail;
} regc_event;

typedef struct regc_event_list {
    regc_event *events;           /* oldest first */
    size_t nevents;
    struct json_t *reply;         /* the decoded reply the strings borrow from */
    char **details;               /* owned texts of non-string details */
} regc_event_list;

/* Events with seq > since (0: from the start), at most limit (0: the registry's
 * default), only those of `service` when not NULL. */
int regc_events(regc_conn *c, int64_t since, const char *service, int limit,
                regc_event_list **out, regc_error *err);
void regc_event_list_free(regc_event_list *l);

/* Starts following events (of `service` when not NULL): sends the watch request and
 * waits for its {"ok":true}. Then call regc_watch_next until it fails. */
int regc_watch_start(regc_conn *c, const char *service, regc_error *err);

/* Waits up to timeout_ms (< 0: forever) for the next event line and decodes it into
 * *ev (strings borrowed until the next call on c; regc_last_line gives the raw line).
 * An error line from the registry (e.g. `unavailable` for a slow watcher) fails with
 * its code; a closed connection with -ECONNRESET. */
int regc_watch_next(regc_conn *c, int timeout_ms, regc_event *ev, regc_error *err);

#ifdef __cplusplus
}
#endif

#endif
