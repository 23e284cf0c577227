/* SPDX-License-Identifier: BSD-2-Clause */
/* regctl.c — the registry's command line: look services up, call them by name, list,
 * register and deregister by hand, read statistics and the activity log, follow events.
 *
 *   regctl [--registry HOST:PORT[,HOST:PORT...]] [--json] [--timeout S] [--auth-file PATH]
 *          COMMAND ...
 *
 * The registry may be a list of its nodes: the library tries them in order and moves a
 * request to the next node when its node is lost; a watch resumes on the next node.
 *
 * Exit status (a contract scripts rely on): 0 success, 1 not found (the registry
 * answered not_found), 2 usage error, 3 cannot reach the registry (or the endpoint
 * `call` was given: refused, timed out, closed), 4 the registry refused the request with
 * any other error (its message is printed). Errors are one line on stderr, "regctl: ...".
 *
 * Built on the blocking half of the client library; every wait has a deadline except a
 * `call` reply (a service may legitimately take long: see CALL_REPLY_MIN_MS) and the
 * event stream of `watch`.
 */
#include "registry_json.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
    EXIT_OK = 0,
    EXIT_NOT_FOUND = 1,
    EXIT_USAGE = 2,
    EXIT_UNREACHABLE = 3,
    EXIT_REMOTE = 4
};

#define DEFAULT_TIMEOUT_MS   5000
#define CALL_REPLY_MIN_MS    (3700 * 1000)   /* a sleep RPC may take up to an hour */
#define MAX_TAGS             32

/* Global options; command options may repeat them after the command name. */
struct opts {
    const char *registry;     /* NULL: $REGISTRY_ADDR, then the default; may be a list */
    int json;
    int timeout_ms;
    const char *auth_file;    /* NULL: $REGISTRY_AUTH_FILE */
};

struct command {
    const char *name;
    int (*run)(struct opts *o, int argc, char **argv);
    const char *usage;        /* the synopsis after "regctl " */
    const char *help;         /* what it does and its options */
    const char *shorts;       /* its one-letter options for getopt ("f"), or NULL */
};

static const struct command *find_command(const char *name);
static const char *esc(const char *s);

/* ---- output helpers --------------------------------------------------------------------- */

static void errmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errmsg(const char *fmt, ...)
{
    va_list ap;
    fputs("regctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* A usage error: one line, pointing at the help. */
static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const char *cmd, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cmd)
        errmsg("%s: %s (see 'regctl %s --help')", cmd, msg, cmd);
    else
        errmsg("%s (see 'regctl --help')", msg);
    return EXIT_USAGE;
}

/* Maps a library error to an exit status, printing its one line. */
static int fail_with(const regc_error *e)
{
    /* The messages quote the registry (and, through it, what clients registered). */
    switch (e->kind) {
    case REGC_NOT_FOUND:
        errmsg("%s", esc(e->message));
        return EXIT_NOT_FOUND;
    case REGC_UNREACHABLE:
        errmsg("%s", esc(e->message));
        return EXIT_UNREACHABLE;
    case REGC_INVALID:
        errmsg("%s", esc(e->message));
        return EXIT_USAGE;
    case REGC_REMOTE:
        errmsg("%s: %s", esc(e->code), esc(e->message));
        return EXIT_REMOTE;
    default:
        errmsg("%s", e->message[0] ? esc(e->message) : "unexpected error");
        return EXIT_REMOTE;
    }
}

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

/* ---- text from the registry ------------------------------------------------------------
 *
 * Whatever the registry sends (names, descriptions, hosts, event details, its error
 * messages) is text some client registered. Printed raw, a newline in a description
 * forges a table row and an escape sequence drives the operator's terminal, so every
 * text output escapes it (esc): C0 controls and DEL as \n \r \t \e or \xHH, C1
 * controls (U+0080-U+009F), the bidirectional embeddings, overrides and isolates and
 * the line/paragraph separators as \uHHHH, each byte of invalid UTF-8 as \xHH, and a
 * backslash as \\, so what is shown is one line and says exactly what was sent. The
 * --json output is JSON, escaped by the encoder. `call` replies are the service's own
 * bytes: see cmd_call.
 *
 * Escaped strings live in a pool (freed by pool_reset: at exit, or after each event of a
 * stream), so the table code can hold many without owning them. */

static struct {
    char **v;
    size_t n, cap;
} pool;

/* Keeps p (malloc'd) until pool_reset; returns it, or NULL (p freed) when out of memory. */
static char *pool_keep(char *p)
{
    if (!p)
        return NULL;
    if (pool.n == pool.cap) {
        size_t ncap = pool.cap ? pool.cap * 2 : 64;
        char **nv = realloc(pool.v, ncap * sizeof *nv);
        if (!nv) {
            free(p);
            return NULL;
        }
        pool.v = nv;
        pool.cap = ncap;
    }
    return pool.v[pool.n++] = p;
}

static void pool_reset(void)
{
    for (size_t i = 0; i < pool.n; i++)
        free(pool.v[i]);
    pool.n = 0;
}

static void pool_free(void)
{
    pool_reset();
    free(pool.v);
    pool.v = NULL;
    pool.cap = 0;
}

/* Decodes one UTF-8 character at s (n bytes left): its code point, *len its bytes; -1
 * for a byte that does not start a valid sequence (overlong, surrogate, > U+10FFFF,
 * truncated). */
static long utf8_char(const unsigned char *s, size_t n, size_t *len)
{
    unsigned c = s[0];
    size_t k;
    long cp;
    if (c < 0x80) {
        *len = 1;
        return c;
    }
    if (c >= 0xC2 && c <= 0xDF)
        k = 1, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        k = 2, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        k = 3, cp = c & 0x07;
    else
        return -1;
    if (k >= n)
        return -1;
    for (size_t i = 1; i <= k; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return -1;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return -1;
    *len = k + 1;
    return cp;
}

/* Code points shown escaped besides the controls: they reorder or break what follows. */
static int invisible_mover(long cp)
{
    return (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x200E || cp == 0x200F || cp == 0x061C;
}

/* The escaped form of s[len] as a new malloc'd string (NULL when out of memory). json:
 * s is JSON text, whose backslashes are escapes already (kept as they are). */
static char *escape_text(const char *s, size_t len, int json)
{
    const unsigned char *u = (const unsigned char *)s;
    char *out = malloc(len * 6 + 1), *o = out;   /* \uHHHH is the longest: 6 per byte */
    size_t i = 0, n;
    if (!out)
        return NULL;
    while (i < len) {
        long cp = utf8_char(u + i, len - i, &n);
        if (cp < 0) {
            o += sprintf(o, "\\x%02x", u[i]);
            i++;
            continue;
        }
        if (cp == '\\') {
            *o++ = '\\';
            if (!json)
                *o++ = '\\';
        } else if (cp == '\n') {
            o += sprintf(o, "\\n");
        } else if (cp == '\r') {
            o += sprintf(o, "\\r");
        } else if (cp == '\t') {
            o += sprintf(o, "\\t");
        } else if (cp == 0x1b) {
            o += sprintf(o, "\\e");
        } else if (cp < 0x20 || cp == 0x7f) {
            o += sprintf(o, "\\x%02lx", cp);
        } else if ((cp >= 0x80 && cp <= 0x9f) || invisible_mover(cp)) {
            o += sprintf(o, "\\u%04lx", cp);
        } else {
            memcpy(o, s + i, n);
            o += n;
        }
        i += n;
    }
    *o = '\0';
    return out;
}

/* Registered text, escaped for a terminal, kept in the pool; NULL stays NULL. When out
 * of memory: "?" (an output line must not fail half way for want of a few bytes). */
static const char *esc(const char *s)
{
    if (!s)
        return NULL;
    const char *e = pool_keep(escape_text(s, strlen(s), 0));
    return e ? e : "?";
}

/* printf into the pool ("?" when out of memory). */
static const char *pool_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *pool_printf(const char *fmt, ...)
{
    va_list ap;
    char *p = NULL;
    va_start(ap, fmt);
    if (vasprintf(&p, fmt, ap) < 0)
        p = NULL;
    va_end(ap);
    p = pool_keep(p);
    return p ? p : "?";
}

/* Columns on a terminal: one per character (UTF-8 continuation bytes take none). */
static int text_width(const char *s)
{
    int w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

/* Prints s padded to w columns (right: aligned to the right). */
static void put_cell(const char *s, int w, int right)
{
    int pad = w - text_width(s);
    if (right)
        printf("%*s%s", pad > 0 ? pad : 0, "", s);
    else
        printf("%s%*s", s, pad > 0 ? pad : 0, "");
}

/* A table of escaped cells (borrowed from the pool), printed with aligned columns, two
 * spaces apart, the last column unpadded. */
typedef struct table {
    int ncols;
    unsigned right;           /* bit i: column i is aligned to the right */
    const char **cells;       /* nrows * ncols */
    size_t nrows, cap;
} table;

/* Appends a row of ncols cells (NULL cells print as "-"). 0, or -ENOMEM. */
static int table_add(table *t, const char *const *row)
{
    if (t->nrows == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 32;
        const char **nc = realloc(t->cells, ncap * (size_t)t->ncols * sizeof *nc);
        if (!nc)
            return -ENOMEM;
        t->cells = nc;
        t->cap = ncap;
    }
    for (int i = 0; i < t->ncols; i++)
        t->cells[t->nrows * (size_t)t->ncols + (size_t)i] = row[i] ? row[i] : "-";
    t->nrows++;
    return 0;
}

static void table_print(const table *t)
{
    int w[16] = { 0 };
    for (size_t r = 0; r < t->nrows; r++)
        for (int i = 0; i < t->ncols && i < 16; i++) {
            int cw = text_width(t->cells[r * (size_t)t->ncols + (size_t)i]);
            if (cw > w[i])
                w[i] = cw;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (int i = 0; i < t->ncols; i++) {
            const char *c = t->cells[r * (size_t)t->ncols + (size_t)i];
            if (i > 0)
                fputs("  ", stdout);
            if (i == t->ncols - 1 && !(t->right & (1u << i)))
                fputs(c, stdout);
            else
                put_cell(c, w[i], (t->right >> i) & 1);
        }
        fputc('\n', stdout);
    }
}

static void table_free(table *t)
{
    free(t->cells);
    t->cells = NULL;
    t->nrows = t->cap = 0;
}

/* ---- parsing numbers -------------------------------------------------------------------- */

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_seconds_ms(const char *s, int *ms)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v <= 0 || v > 86400)
        return -EINVAL;
    *ms = (int)ceil(v * 1000.0);
    return 0;
}

/* ---- options shared by every command ---------------------------------------------------- */

enum {
    OPT_REGISTRY = 1000, OPT_JSON, OPT_TIMEOUT, OPT_AUTH, OPT_HELP, OPT_VERSION,
    OPT_TAG, OPT_ALL, OPT_DESC, OPT_TTL, OPT_CHECK, OPT_SINCE, OPT_SERVICE, OPT_LIMIT,
    OPT_TOKEN, OPT_ADMIN, OPT_TAIL, OPT_FOLLOW, OPT_NO_RECONNECT, OPT_FORCE, OPT_REASON,
    OPT_RAW
};

#define GLOBAL_OPTS \
    { "registry", required_argument, NULL, OPT_REGISTRY }, \
    { "json", no_argument, NULL, OPT_JSON }, \
    { "timeout", required_argument, NULL, OPT_TIMEOUT }, \
    { "auth-file", required_argument, NULL, OPT_AUTH }, \
    { "help", no_argument, NULL, OPT_HELP }

/* Handles a global option met by a command's getopt loop. Returns 0 when handled,
 * EXIT_USAGE on a bad value, -1 when it was not a global option. */
static int global_opt(struct opts *o, const char *cmd, int opt, const char *arg)
{
    regc_error err;
    regc_node nodes[REGC_NODES_MAX];
    size_t n;

    switch (opt) {
    case OPT_REGISTRY:
        if (regc_parse_addr_list(arg, nodes, REGC_NODES_MAX, &n, &err) < 0)
            return usage_error(cmd, "--registry: %s", esc(err.message));
        o->registry = arg;
        return 0;
    case OPT_JSON:
        o->json = 1;
        return 0;
    case OPT_TIMEOUT:
        if (parse_seconds_ms(arg, &o->timeout_ms) < 0)
            return usage_error(cmd, "--timeout: '%s' is not a number of seconds > 0", arg);
        return 0;
    case OPT_AUTH:
        o->auth_file = arg;
        return 0;
    default:
        return -1;
    }
}

static void print_command_help(const struct command *c)
{
    printf("usage: regctl [GLOBAL OPTIONS] %s\n\n%s", c->usage, c->help);
    printf("\nGlobal options (also accepted after the command): --registry HOST:PORT\n"
           "(or a list, HOST:PORT,HOST:PORT...), --json, --timeout S, --auth-file PATH.\n"
           "See 'regctl --help'.\n");
}

/* What the option parsers return besides exit statuses: help was printed, exit 0. */
#define EXIT_DONE (-1)

typedef int (*opt_cb)(void *state, int opt, const char *arg);

/* Parses a command's arguments (argv[0] is the command name) with getopt_long: the
 * command's own options in `own` (handed to cb), the global ones merged in. With
 * `permute`, options and operands may mix ("lookup web --all") and the operands are
 * collected into args[nmax] (*nargs); without, parsing stops at the first operand and
 * *nargs is its index in argv (call: the message words are not options). Returns 0, an
 * exit status, or EXIT_DONE after printing the command's help. */
static int parse_command(struct opts *o, const struct command *c, int argc, char **argv,
                         const struct option *own, size_t nown, opt_cb cb, void *state,
                         int permute, char **args, int nmax, int *nargs)
{
    static const struct option globals[] = { GLOBAL_OPTS };
    struct option all[24];
    char shorts[16];
    size_t n = 0;
    int opt, rc;

    for (size_t i = 0; i < nown && n < 16; i++)
        all[n++] = own[i];
    for (size_t i = 0; i < sizeof globals / sizeof globals[0]; i++)
        all[n++] = globals[i];
    memset(&all[n], 0, sizeof all[n]);

    /* -h is --help everywhere; a command may have one-letter options of its own. */
    snprintf(shorts, sizeof shorts, "%sh%s", permute ? "-" : "+", c->shorts ? c->shorts : "");
    *nargs = 0;
    optind = 0;     /* GNU: full re-initialisation for the new argv */
    opterr = 0;
    while ((opt = getopt_long(argc, argv, shorts, all, NULL)) != -1) {
        if (opt == 1) {
            /* An operand, in place ("-" mode). */
            if (*nargs >= nmax)
                return usage_error(c->name, "unexpected argument '%s'", optarg);
            args[(*nargs)++] = optarg;
            continue;
        }
        if (opt == '?') {
            if (optopt >= OPT_REGISTRY)   /* a long option of ours without its value */
                return usage_error(c->name, "option '%s' needs a value", argv[optind - 1]);
            return usage_error(c->name, "unknown option '%s'", argv[optind - 1]);
        }
        if (opt == OPT_HELP || opt == 'h') {
            print_command_help(c);
            return EXIT_DONE;
        }
        rc = global_opt(o, c->name, opt, optarg);
        if (rc > 0)
            return rc;
        if (rc == 0)
            continue;
        if ((rc = cb(state, opt, optarg)) != 0)
            return rc;
    }
    if (!permute) {
        *nargs = optind;
        return 0;
    }
    /* After "--": the rest are operands. */
    for (int i = optind; i < argc; i++) {
        if (*nargs >= nmax)
            return usage_error(c->name, "unexpected argument '%s'", argv[i]);
        args[(*nargs)++] = argv[i];
    }
    return 0;
}

/* The usual case: permuted options, operands collected. */
static int parse_all(struct opts *o, const struct command *c, int argc, char **argv,
                     const struct option *own, size_t nown, opt_cb cb, void *state,
                     char **args, int nmax, int *nargs)
{
    return parse_command(o, c, argc, argv, own, nown, cb, state, 1, args, nmax, nargs);
}

static int no_own_opts(void *state, int opt, const char *arg)
{
    return EXIT_USAGE;
}

/* ---- connecting ---------------------------------------------------------------------- */

/* Connects to the registry with the options; on failure prints and returns the exit
 * status (>0), else 0 with *c set. */
static int open_registry_as(const struct opts *o, const char *node, regc_conn **c, int quiet);

static int open_registry(const struct opts *o, regc_conn **c)
{
    return open_registry_as(o, NULL, c, 0);
}

/* node: this one node of the registry instead of the options' (a stream's queries go
 * to the node it is subscribed at); quiet: a connect failure is not printed (a
 * reconnecting watch retries). */
static int open_registry_as(const struct opts *o, const char *node, regc_conn **c, int quiet)
{
    regc_error err;
    char *secret = NULL;
    int rc;

    if (regc_load_auth(o->auth_file, &secret, &err) < 0) {
        errmsg("%s", err.message);
        return EXIT_USAGE;
    }
    rc = regc_connect(node ? node : o->registry, o->timeout_ms, c, &err);
    if (rc == 0 && secret && regc_set_auth(*c, secret) < 0) {
        regc_close(*c);
        *c = NULL;
        free(secret);
        errmsg("out of memory");
        return EXIT_REMOTE;
    }
    if (secret) {
        explicit_bzero(secret, strlen(secret));
        free(secret);
    }
    if (rc < 0 && quiet)
        return err.kind == REGC_UNREACHABLE ? EXIT_UNREACHABLE : EXIT_REMOTE;
    if (rc < 0 && err.kind == REGC_INVALID && !node && !o->registry) {
        /* Not from the command line: say where the bad address came from. */
        errmsg("$%s: %s", REGC_ADDR_ENV, esc(err.message));
        return EXIT_USAGE;
    }
    if (rc < 0)
        return fail_with(&err);
    return 0;
}

/* After a request: with --json print the reply line as it came (errors included), then
 * map the result to an exit status. */
static int finish_request(const struct opts *o, regc_conn *c, int rc, const regc_error *err)
{
    if (o->json && (rc == 0 || err->kind == REGC_NOT_FOUND || err->kind == REGC_REMOTE))
        printf("%s\n", regc_last_line(c));
    return rc < 0 ? fail_with(err) : EXIT_OK;
}

/* After a list or lookup the library gathered from pages: with --json print the whole
 * answer (every page's entries in one object, as the registry sends a single page), or
 * the error line; then the exit status. */
static int finish_paged(const struct opts *o, regc_conn *c, int rc, const regc_error *err,
                        json_t *reply)
{
    if (rc < 0 || !o->json)
        return finish_request(o, c, rc, err);
    char *text = json_dumps(reply, JSON_COMPACT);
    if (!text) {
        errmsg("out of memory");
        return EXIT_REMOTE;
    }
    printf("%s\n", text);
    free(text);
    return EXIT_OK;
}

/* ---- lookup --------------------------------------------------------------------------- */

struct lookup_state {
    const char *tag;
    int all;
};

static int lookup_opt(void *state, int opt, const char *arg)
{
    struct lookup_state *s = state;
    if (opt == OPT_TAG)
        s->tag = arg;
    else if (opt == OPT_ALL)
        s->all = 1;
    else
        return EXIT_USAGE;
    return 0;
}

static const struct option lookup_opts[] = {
    { "tag", required_argument, NULL, OPT_TAG },
    { "all", no_argument, NULL, OPT_ALL },
};

static int cmd_lookup(struct opts *o, int argc, char **argv)
{
    const struct command *cmd = find_command("lookup");
    struct lookup_state st = { NULL, 0 };
    char *args[1], ep[REGC_ADDR_MAX];
    regc_conn *c = NULL;
    regc_lookup_result *r = NULL;
    regc_error err;
    int n, rc;

    rc = parse_all(o, cmd, argc, argv, lookup_opts, 2, lookup_opt, &st, args, 1, &n);
    if (rc)
        return rc == EXIT_DONE ? EXIT_OK : rc;
    if (n != 1)
        return usage_error("lookup", "missing SERVICE");
    if ((rc = open_registry(o, &c)) != 0)
        return rc;
    /* The endpoint alone needs one instance, not the list of all of them (which the
     * library gathers page by page, however long it is). */
    if (!st.all && !o->json)
        rc = regc_lookup_page(c, args[0], st.tag, 0, 1, NULL, &r, &err);
    else
        rc = regc_lookup(c, args[0], st.tag, st.all, &r, &err);
    if (o->json || rc < 0) {
        rc = finish_paged(o, c, rc, &err, r ? r->reply : NULL);
        goto out;
    }
    if (!st.all) {
        regc_format_addr(r->host, r->port, ep, sizeof ep);
        printf("%s\n", esc(ep));
    } else {
        /* ENDPOINT  STATUS  LAST_CHECK  ID under a header, aligned. */
        static const char *const head[4] = { "ENDPOINT", "STATUS", "LAST_CHECK", "ID" };
        table t = { .ncols = 4 };
        if (r->ninstances == 0) {
            errmsg("no instance of '%s'", args[0]);
            rc = EXIT_NOT_FOUND;
            goto out;
        }
        rc = table_add(&t, head);
        for (size_t i = 0; rc == 0 && i < r->ninstances; i++) {
            regc_instance *in = &r->instances[i];
            const char *lc = in->last_check ? in->last_check : in->last_seen;
            regc_format_addr(in->host, in->port, ep, sizeof ep);
            const char *row[4] = { esc(ep), esc(or_dash(in->status)), esc(or_dash(lc)),
                                   esc(or_dash(in->id)) };
            rc = table_add(&t, row);
        }
        if (rc == 0)
            table_print(&t);
        table_free(&t);
        if (rc != 0) {
            errmsg("out of memory");
            rc = EXIT_REMOTE;
            goto out;
        }
    }
    rc = EXIT_OK;
out:
    regc_lookup_free(r);
    regc_close(c);
    return rc;
}

/* ---- call ------------------------------------------------------------------------------ */

/* Sends one line to the service and prints its reply: raw (the service's own bytes,
 * for a pipe or with --raw), or on a terminal escaped as registered text is (a service,
 * or whoever answers at its address, must not drive the operator's terminal; its
 * backslashes are left as they are, it is not our table). */
static int call_once(regc_conn *svc, int reply_ms, const char *name, const char *line,
                     size_t len, int raw)
{
    regc_error err;
    const char *reply;
    size_t rlen;
    if (regc_send_line(svc, line, len, &err) < 0 ||
        regc_read_line(svc, reply_ms, &reply, &rlen, &err) < 0) {
        if (err.kind == REGC_UNREACHABLE) {
            errmsg("service %s: %s", name, esc(err.message));
            return EXIT_UNREACHABLE;
        }
        errmsg("service %s: %s", name, esc(err.message));
        return err.kind == REGC_INVALID ? EXIT_USAGE : EXIT_REMOTE;
    }
    if (raw) {
        fwrite(reply, 1, rlen, stdout);
    } else {
        char *e = escape_text(reply, rlen, 1);
        if (!e) {
            errmsg("out of memory");
            return EXIT_REMOTE;
        }
        fputs(e, stdout);
        free(e);
    }
    fputc('\n', stdout);
    fflush(stdout);
    return EXIT_OK;
}

static int raw_opt(void *state, int opt, const char *arg)
{
    (void)arg;
    if (opt != OPT_RAW)
        return EXIT_USAGE;
    *(int *)state = 1;
    return 0;
}

static const struct option call_opts[] = {
    { "raw", no_argument, NULL, OPT_RAW },
};

static int cmd_call(struct opts *o, int argc, char **argv)
{
    const struct command *cmd = find_command("call");
    regc_conn *c = NULL, *svc = NULL;
    regc_lookup_result *r = NULL;
    regc_error err;
    char ep[REGC_ADDR_MAX], *msg = NULL, *line = NULL;
    size_t cap = 0, mlen = 0;
    int first, rc, reply_ms, raw = !isatty(STDOUT_FILENO);

    /* No permutation: everything after SERVICE is the message, dashes included. */
    rc = parse_command(o, cmd, argc, argv, call_opts, 1, raw_opt, &raw, 0, NULL, 0, &first);
    if (rc)
        return rc == EXIT_DONE ? EXIT_OK : rc;
    if (first >= argc)
        return usage_error("call", "missing SERVICE");
    const char *service = argv[first++];
    if (first < argc) {
        /* The words joined by single spaces: one request line. */
        for (int i = first; i < argc; i++)
            mlen += strlen(argv[i]) + 1;
        if (!(msg = malloc(mlen))) {
            errmsg("out of memory");
            return EXIT_REMOTE;
        }
        size_t off = 0;
        for (int i = first; i < argc; i++) {
            size_t wl = strlen(argv[i]);
            if (i > first)
                msg[off++] = ' ';
            memcpy(msg + off, argv[i], wl);
            off += wl;
        }
        msg[off] = '\0';
        mlen = strlen(msg);
        if (memchr(msg, '\n', mlen)) {
            free(msg);
            return usage_error("call", "MESSAGE must be one line");
        }
    }

    if ((rc = open_registry(o, &c)) != 0)
        goto out;
    rc = regc_lookup_page(c, service, NULL, 0, 1, NULL, &r, &err); /* the endpoint */
    if (rc < 0) {
        rc = fail_with(&err);
        goto out;
    }
    regc_format_addr(r->host, r->port, ep, sizeof ep);
    if (regc_connect(ep, o->timeout_ms, &svc, &err) < 0) {
        errmsg("service %s at %s: %s", service, ep, err.message);
        rc = err.kind == REGC_UNREACHABLE ? EXIT_UNREACHABLE : EXIT_REMOTE;
        goto out;
    }
    /* A reply may take as long as the service's work (sleep: up to an hour); only the
     * lookup and the connect keep the short timeout. */
    reply_ms = o->timeout_ms > CALL_REPLY_MIN_MS ? o->timeout_ms : CALL_REPLY_MIN_MS;
    if (msg) {
        rc = call_once(svc, reply_ms, service, msg, mlen, raw);
        goto out;
    }
    rc = EXIT_OK;
    for (;;) {
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0)
            break;
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        if ((rc = call_once(svc, reply_ms, service, line, (size_t)n, raw)) != EXIT_OK)
            break;
    }
out:
    free(line);
    free(msg);
    regc_lookup_free(r);
    regc_close(svc);
    regc_close(c);
    return rc;
}

/* ---- list ------------------------------------------------------------------------------- */

static int cmd_list(struct opts *o, int argc, char **argv)
{
    const struct command *cmd = find_command("list");
    regc_conn *c = NULL;
    regc_service_list *l = NULL;
    regc_error err;
    char *args[1];
    int n, rc;

    rc = parse_all(o, cmd, argc, argv, NULL, 0, no_own_opts, NULL, args, 0, &n);
    if (rc)
        return rc == EXIT_DONE ? EXIT_OK : rc;
    if ((rc = open_registry(o, &c)) != 0)
        return rc;
    rc = regc_list(c, &l, &err);   /* every page */
    if (o->json || rc < 0) {
        rc = finish_paged(o, c, rc, &err, l ? l->reply : NULL);
        goto out;
    }
    /* PASSING: what lookups hand out; MAINTENANCE: taken out of service by an operator
     * (the registry sends the count only when there are any). */
    static const char *const head[5] = { "SERVICE", "INSTANCES", "PASSING", "MAINTENANCE",
                                         "DESCRIPTION" };
    json_t *entries = json_object_get(l->reply, "services");
    table t = { .ncols = 5, .right = 0xe };
    rc = table_add(&t, head);
    for (size_t i = 0; rc == 0 && i < l->nservices; i++) {
        regc_service_info *s = &l->services[i];
        json_t *m = json_object_get(json_array_get(entries, i), "maintenance");
        const char *row[5] = { esc(s->service), pool_printf("%ld", s->instances),
                               pool_printf("%ld", s->passing),
                               pool_printf("%lld", json_is_integer(m) ? (long long)json_integer_value(m) : 0LL),
                               s->description ? esc(s->description) : "" };
        rc = table_add(&t, row);
    }
    if (rc == 0)
        table_print(&t);
    table_free(&t);
    if (rc != 0) {
        errmsg("out of memory");
        rc = EXIT_REMOTE;
        goto out;
    }
    rc = EXIT_OK;
out:
    regc_service_list_free(l);
    regc_close(c);
    return rc;
}

/* ---- register / deregister / heartbeat ------------------------------------------------------ */

struct reg_state {
    const char *description;
    const char *tags[MAX_TAGS];
    size_t ntags;
    int ttl;
    int check;
    const char *token;   /* the instance's current token (registering it again) */
    int admin;
    const char *bad;     /* a bad option value, for the message */
};

static int reg_opt(void *state, int opt, const char *arg)
{
    struct reg_state *s = state;
    long v;
    switch (opt) {
    case OPT_DESC:
        s->description = arg;
        return 0;
    case OPT_TAG:
        if (s->ntags == MAX_TAGS)
            return usage_error("register", "at most %d tags", MAX_TAGS);
        s->tags[s->ntags++] = arg;
        return 0;
    case OPT_TTL:
        if (parse_long(arg, 0, 86400, &v) < 0)
            return usage_error("register", "--ttl: '%s' is not a whole number of seconds 0-86400", arg);
        s->ttl = (int)v;
        return 0;
    case OPT_CHECK:
        if (strcmp(arg, "tcp") == 0)
            s->check = REGC_CHECK_TCP;
        else if (strcmp(arg, "none") == 0)
            s->check = REGC_CHECK_NONE;
        else
            return usage_error("register", "--check: want tcp or none, not '%s'", arg);
        return 0;
    case OPT_TOKEN:
        s->token = arg;
        return 0;
    case OPT_ADMIN:
        s->admin = 1;
        return 0;
    default:
        return EXIT_USAGE;
    }
}

static const struct option reg_opts[] = {
    { "description", required_argument, NULL, OPT_DESC },
    { "tag", required_argument, NULL, OPT_TAG },
    { "ttl", required_argument, NULL, OPT_TTL },
    { "check", required_argument, NULL, OPT_CHECK },
    { "token", required_argument, NULL, OPT_TOKEN },
    { "admin", no_argument, NULL, OPT_ADMIN },
};

static int cmd_register(struct opts *o, int argc, char **argv)
{
    const struct command *cmd = find_command("register");
    struct reg_state st;
    char *args[3], id[REGC_ID_MAX], token[REGC_TOKEN_MAX];
    regc_conn *c = NULL;
    regc_error err;
    long port;
    int n, rc;

    memset(&st, 0, sizeof st);
    rc = parse_all(o, cmd, argc, argv, reg_opts, sizeof reg_opts / sizeof reg_opts[0], reg_opt,
                   &st, args, 3, &n);
    if (rc)
        return rc == EXIT_DONE ? EXIT_OK : rc;
    if (n != 3)
        return usage_error("register", "want SERVICE HOST PORT");
    if (parse_long(args[2], 1, 65535, &port) < 0)
        return usage_error("register", "PORT must be a number 1-65535, not '%s'", args[2]);
    if ((rc = open_registry(o, &c)) != 0)
        return rc;
    regc_registration reg = {
        .service = args[0], .host = args[1], .port = (int)port,
        .description = st.description, .tags = st.tags, .ntags = st.ntags,
        .ttl = st.ttl, .check = st.check, .token = st.token, .admin = st.admin,
    };
    rc = regc_register(c, &reg, id, token, &err);
    if (o->json || rc < 0)
        rc = finish_request(o, c, rc, &err);
    else
        printf("%s %s\n", esc(id), esc(token));
    regc_close(c);
    return rc;
}

/* An operator's request built here (the library has no call for it): sends req (stolen)
 * and, on success, prints `done` (a printf format taking the instance id). */
static int operator_request(struct opts *o, json_t *req, const char *id, const char *done)
{
    regc_conn *c = NULL;
    regc_error err;
    int rc;
    if (!req) {
        errmsg("out of memory");
        return EXIT_REMOTE;
    }
    if ((rc = open_registry(o, &c)) != 0) {
        json_decref(req);
        return rc;
    }
    rc = regc_request(c, req, NULL, &err);
    json_decref(req);
    if (o->json || rc < 0)
        rc = finish_request(o, c, rc, &err);
    else
        printf(done, esc(id));
    regc_close(c);
    return rc;
}

static int force_opt(void *state, int opt, const char *arg)
{
    (void)arg;
    if (opt != OPT_FORCE)
        return EXIT_USAGE;
    *(int *)state = 1;
    return 0;
}

static const struct option deregister_opts[] = {
    { "force", no_argument, NULL, OPT_FORCE },
};

static int id_token_cmd(struct opts *o, const char *name, int argc, char **argv)
{
    const struct command *cmd = find_command(name);
    char *args[2];
    regc_conn *c = NULL;
    regc_error err;
    int n, rc, ttl = 0, force = 0, dereg = strcmp(name, "deregister") == 0;

    rc = parse_all(o, cmd, argc, argv, dereg ? deregister_opts : NULL, dereg ? 1 : 0,
                   dereg ? force_opt : no_own_opts, &force, args, 2, &n);
    if (rc)
        return rc == EXIT_DONE ? EXIT_OK : rc;
    if (force) {
        /* The owner lost its token: the operator removes the instance by id alone. */
        if (n != 1)
            return usage_error(name, "--force wants ID alone (no TOKEN)");
        return operator_request(o, json_pack("{s:s, s:s, s:b}", "op", "deregister", "id",
                                             args[0], "force", 1),
                                args[0], "deregistered %s (forced)\n");
    }
    if (n != 2)
        return usage_error(name, "want ID TOKEN%s", dereg ? " (or --force ID)" : "");
    if ((rc = open_registry(o, &c)) != 0)
        return rc;
    if (dereg)
        rc = regc_deregister(c, args[0], args[1], &err);
    else
        rc = regc_heartbeat(c, args[0], args[1], &ttl, &err);
    if (o->json || rc < 0)
        rc = finish_request(o, c, rc, &err);
    else if (strcmp(name, "heartbeat") == 0 && ttl > 0)
        printf("ok (ttl %d s)\n", ttl);
    else
        printf("ok\n");
    regc_close(c);
    return rc;
}

static int cmd_deregister(struct opts *o, int argc, char **argv)
{
    return id_token_cmd(o, "deregister", argc, argv);
}

static int cmd_heartbeat(struct opts *o, int argc, char **argv)
{
    return id_token_cmd(o, "heartbeat", argc, argv);
}

static int reason_opt(void *state, int opt, const char *arg)
{
    if (opt != OPT_REASON)
        return EXIT_USAGE;
    *(const char **)state = arg;
    return 0;
}

static const struct option maintenance_opts[] = {
    { "reason", required_argument, NULL, OPT_REASON },
};

static int cmd_maintenance(struct opts *o, int argc, char **argv)
{
    const struct command *cmd = find_command("maintenance");
    const char *reason = NULL;
    char *args[2];
    int n, rc, on;

    rc = parse_all(o, cmd, argc, argv, maintenance_opts, 1, reason_opt, &reason, args, 2, &n);
    if (rc)
        return rc == EXIT_DONE ? EXIT_OK : rc;
    if (n != 2)
        return usage_error("maintenance", "want ID on|off");
    if (strcmp(args[1], "on") == 0)
        on = 1;
    else if (strcmp(args[1], "off") == 0)
        on = 0;
    else
        return usage_error("maintenance", "want on or off, not '%s'", args[1]);
    json_t *req = json_pack("{s:s, s:s, s:b}", "op", "maintenance", "id", args[0], "enable", on);
    if (req && reason && json_object_set_new(req, "reason", json_string(reason)) < 0) {
        json_decref(req);
        req = NULL;
    }
    return operator_request(o, req, args[0],
                            on ? "%s is in maintenance: lookups skip it\n"
                               : "%s is back in service\n");
}

/* ---- ping / stats ------------------------------------------------------------------------- */

static int cmd_ping(struct opts *o, int argc, char **argv)
{
    const struct command *cmd = find_command("ping");
    char *args[1];
    regc_conn *c = NULL;
    regc_error err;
    int n, rc;

    rc = parse_all(o, cmd, argc, argv, NULL, 0, no_own_opts, NULL, args, 0, &n);
    if (rc)
        return rc == EXIT_DONE ? EXIT_OK : rc;
    if ((rc = open_registry(o, &c)) != 0)
        return rc;
    rc = regc_ping(c, &err);
    if (o->json || rc < 0)
        rc = finish_request(o, c, rc, &err);
    else
        printf("ok\n");
    regc_close(c);
    return rc;
}

/* Prints the leaves of a stats object as "key.sub: value" lines (keys as sent). */
static void print_stats(json_t *obj, const char *prefix, int width)
{
    const char *key;
    json_t *v;
    char name[256];
    json_object_foreach(obj, key, v) {
        if (!*prefix && strcmp(key, "ok") == 0)
            continue;
        snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", key);
        if (json_is_object(v)) {
            print_stats(v, name, width);
        } else if (json_is_string(v)) {
            put_cell(esc(name), width, 0);
            printf("  %s\n", esc(json_string_value(v)));
            continue;
        } else {
            char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(6));
            put_cell(esc(name), width, 0);
            printf("  %s\n", t ? esc(t) : "?");
            free(t);
        }
    }
}

static int stats_width(json_t *obj, int prefix_len)
{
    const char *key;
    json_t *v;
    int w = 0, k;
    json_object_foreach(obj, key, v) {
        k = prefix_len + (prefix_len ? 1 : 0) + (int)strlen(key);
        if (json_is_object(v))
            k = stats_width(v, k);
        if (k > w)
            w = k;
    }
    return w;
}

static int cmd_stats(struct opts *o, int argc, char **argv)
{
    const struct command *cmd = find_command("stats");
    char *args[1];
    regc_conn *c = NULL;
    regc_error err;
    json_t *st = NULL;
    int n, rc;

    rc = parse_all(o, cmd, argc, argv, NULL, 0, no_own_opts, NULL, args, 0, &n);
    if (rc)
        return rc == EXIT_DONE ? EXIT_OK : rc;
    if ((rc = open_registry(o, &c)) != 0)
        return rc;
    rc = regc_stats(c, &st, &err);
    if (o->json || rc < 0) {
        rc = finish_request(o, c, rc, &err);
    } else {
        print_stats(st, "", stats_width(st, 0));
        rc = EXIT_OK;
    }
    json_decref(st);
    regc_close(c);
    return rc;
}

/* Both ends' versions: this regctl's, and the registry's from stats (its own line says
 * why when it cannot be reached: exit 3). */
static int cmd_version(struct opts *o, int argc, char **argv)
{
    const struct command *cmd = find_command("version");
    char *args[1];
    regc_conn *c = NULL;
    regc_error err;
    json_t *st = NULL;
    int n, rc;

    rc = parse_all(o, cmd, argc, argv, NULL, 0, no_own_opts, NULL, args, 0, &n);
    if (rc)
        return rc == EXIT_DONE ? EXIT_OK : rc;
    if (!o->json) {
        printf("regctl %s\n", REGISTRY_VERSION);
        fflush(stdout);
    }
    if ((rc = open_registry(o, &c)) != 0)
        return rc;
    rc = regc_stats(c, &st, &err);
    if (rc < 0) {
        rc = fail_with(&err);
    } else if (o->json) {
        json_t *v = json_pack("{s:s, s:O}", "regctl", REGISTRY_VERSION, "registryd",
                              json_object_get(st, "version") ? json_object_get(st, "version")
                                                             : json_null());
        char *t = v ? json_dumps(v, JSON_COMPACT) : NULL;
        if (t)
            puts(t);
        free(t);
        json_decref(v);
        rc = t ? EXIT_OK : EXIT_REMOTE;
    } else {
        const char *v = json_string_value(json_object_get(st, "version"));
        printf("registryd %s (%s)\n", v ? esc(v) : "(version not reported)", regc_peer(c));
        rc = EXIT_OK;
    }
    json_decref(st);
    regc_close(c);
    return rc;
}

/* ---- events / watch ------------------------------------------------------------------------ */

#define EVENTS_TTY_TAIL  20      /* events on a terminal, and events -f: the newest 20 */
#define EVENTS_PAGE      100     /* events asked for per request; halved while a page does
                                  * not fit one protocol line (the registry sends a page
                                  * whole; the client reads lines of REGC_MAX_LINE) */
#define EVENTS_TAIL_MAX  1000000 /* --tail at most */
#define BACKOFF_MIN_MS   100     /* watch: first reconnect after 50-100 ms ... */
#define BACKOFF_MAX_MS   5000    /* ... doubling, up to 2.5-5 s between attempts */

static volatile sig_atomic_t got_signal;

static void on_stop_signal(int sig)
{
    got_signal = sig;
}

/* Ctrl-C or SIGTERM end a stream cleanly (exit 0); a second one kills as usual. */
static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESETHAND;      /* and no SA_RESTART: poll() must return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int64_t event_seq(json_t *ev)
{
    json_t *v = json_object_get(ev, "seq");
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static const char *event_str(json_t *ev, const char *key)
{
    return json_string_value(json_object_get(ev, key));
}

/* The six cells of an event (SEQ TIME EVENT SERVICE ENDPOINT DETAIL), escaped, in the
 * pool. The detail is compact JSON ("" for {}), escaped as JSON text already is. */
static void event_cells(json_t *ev, const char *row[6])
{
    char ep[REGC_ADDR_MAX];
    const char *host = event_str(ev, "host");
    json_t *port = json_object_get(ev, "port"), *detail = json_object_get(ev, "detail");
    if (host && json_is_integer(port) && json_integer_value(port) > 0)
        regc_format_addr(host, (int)json_integer_value(port), ep, sizeof ep);
    else
        snprintf(ep, sizeof ep, "%s", or_dash(host));
    row[0] = pool_printf("%" PRId64, event_seq(ev));
    row[1] = esc(or_dash(event_str(ev, "ts")));
    row[2] = esc(or_dash(event_str(ev, "event")));
    row[3] = esc(or_dash(event_str(ev, "service")));
    row[4] = esc(ep);
    row[5] = "";
    if (json_is_string(detail)) {
        row[5] = esc(json_string_value(detail));
    } else if (detail && !(json_is_object(detail) && json_object_size(detail) == 0)) {
        char *t = json_dumps(detail, JSON_COMPACT | JSON_ENCODE_ANY);
        if (t) {
            char *e = pool_keep(escape_text(t, strlen(t), 1));
            row[5] = e ? e : "?";
        }
        free(t);
    }
}

static const char *const event_head[6] = { "SEQ", "TIME", "EVENT", "SERVICE", "ENDPOINT",
                                           "DETAIL" };

/* A stream (watch, events -f) cannot measure its columns first: fixed widths, wide
 * enough for the usual values (heartbeat_missed is the longest event name). */
static const int stream_width[5] = { 7, 24, 16, 20, 21 };

static void stream_row(const char *const row[6])
{
    for (int i = 0; i < 5; i++) {
        put_cell(row[i], stream_width[i], i == 0);
        fputs("  ", stdout);
    }
    fputs(row[5], stdout);
    fputc('\n', stdout);
}

/* Events as one aligned table (events without -f). */
static int print_event_table(json_t *events)
{
    table t = { .ncols = 6, .right = 1 };
    size_t i;
    json_t *ev;
    int rc = table_add(&t, event_head);
    json_array_foreach(events, i, ev) {
        const char *row[6];
        if (rc != 0)
            break;
        event_cells(ev, row);
        rc = table_add(&t, row);
    }
    if (rc == 0)
        table_print(&t);
    table_free(&t);
    return rc;
}

/* Queries of the events op, on a connection of their own. A page too large for one
 * protocol line leaves the connection unusable (the library cannot pair later replies):
 * the query reconnects and asks for half as many. */
struct evq {
    const struct opts *o;
    const char *service;       /* filter, or NULL */
    regc_conn *c;              /* NULL until the first query */
    int page;                  /* events per request */
    const char *node;          /* the one node to ask (borrowed), or NULL: the options' */
};

/* One request: with tail, the newest *n below `before` (0: no bound) after since; else
 * the oldest *n after since. *n becomes what was asked for in the end (fewer events
 * than that: there are no more). On success *out is a new reference to the events
 * array; else an exit status was printed and is returned. */
static int evq_get(struct evq *q, int64_t since, int64_t before, int tail, int *n, json_t **out)
{
    regc_error err;
    json_t *resp = NULL;
    int rc;
    *out = NULL;
    for (;;) {
        if (!q->c && (rc = open_registry_as(q->o, q->node, &q->c, 0)) != 0)
            return rc;
        json_t *req = json_pack("{s:s, s:I}", "op", "events", "since", (json_int_t)since);
        if (!req || json_object_set_new(req, tail ? "tail" : "limit", json_integer(*n)) < 0 ||
            (before > 0 && json_object_set_new(req, "before", json_integer(before)) < 0) ||
            (q->service && json_object_set_new(req, "service", json_string(q->service)) < 0)) {
            json_decref(req);
            errmsg("out of memory");
            return EXIT_REMOTE;
        }
        rc = regc_request(q->c, req, &resp, &err);
        json_decref(req);
        if (rc == -EMSGSIZE && *n > 1) {     /* the page did not fit a line: smaller */
            regc_close(q->c);
            q->c = NULL;
            *n = (*n + 1) / 2;
            if (q->page > *n)
                q->page = *n;
            continue;
        }
        if (rc < 0) {
            json_decref(resp);
            return finish_request(q->o, q->c, rc, &err);   /* --json: the error line too */
        }
        json_t *evs = json_object_get(resp, "events");
        if (!json_is_array(evs)) {
            json_decref(resp);
            errmsg("the registry's events reply has no \"events\" array");
            return EXIT_REMOTE;
        }
        *out = json_incref(evs);
        json_decref(resp);
        return 0;
    }
}

/* Appends to `all` the newest n events after since, oldest first, asked for page by page
 * from the newest backwards ("tail" and "before"). */
static int evq_tail(struct evq *q, int64_t since, long n, json_t *all)
{
    json_t *pages = json_array();   /* newest page first */
    int64_t before = 0;
    long left = n;
    int rc = 0;
    if (!pages) {
        errmsg("out of memory");
        return EXIT_REMOTE;
    }
    while (left > 0) {
        int want = left < q->page ? (int)left : q->page;
        json_t *evs;
        if ((rc = evq_get(q, since, before, 1, &want, &evs)) != 0)
            break;
        size_t k = json_array_size(evs);
        if (k > 0)
            before = event_seq(json_array_get(evs, 0));
        json_array_append_new(pages, evs);
        left -= (long)k;
        if (k == 0 || (long)k < want)
            break;
    }
    for (size_t i = json_array_size(pages); rc == 0 && i-- > 0;)
        json_array_extend(all, json_array_get(pages, i));
    json_decref(pages);
    return rc;
}

/* Appends to `all` the events after since, oldest first, page by page: at most limit
 * of them (0: every one). */
static int evq_since(struct evq *q, int64_t since, long limit, json_t *all)
{
    long left = limit;
    for (;;) {
        int want = limit && left < q->page ? (int)left : q->page;
        json_t *evs;
        int rc = evq_get(q, since, 0, 0, &want, &evs);
        if (rc != 0)
            return rc;
        size_t k = json_array_size(evs);
        if (k > 0)
            since = event_seq(json_array_get(evs, k - 1));
        json_array_extend(all, evs);
        json_decref(evs);
        left -= (long)k;
        if (k == 0 || (int)k < want || (limit && left <= 0))
            return 0;
    }
}

static void evq_close(struct evq *q)
{
    regc_close(q->c);
    q->c = NULL;
}

/* A live stream of events (watch, events -f): subscribe, print what came before (a
 * tail, or everything after a seq), then the stream, by seq: an event already printed
 * is never printed again and, when the connection is lost, the stream resumes after the
 * last seq printed (an events query fills what happened meanwhile), so nothing is
 * missed either. With several registry nodes the stream resumes on the next node that
 * answers (the library's regc_reconnect), and the queries that fill the gap go to the
 * node the stream is subscribed at: nodes sharing a store number events alike, but one
 * may not have seen yet what another streams. */
struct follow {
    const struct opts *o;
    const char *service;      /* filter, or NULL */
    int reconnect;            /* on a lost connection: reconnect (else exit 3) */
    int64_t last;             /* newest seq printed, or known when the stream started */
    char node[REGC_ADDR_MAX]; /* the node subscribed at */
};

/* Prints one event unless it was printed already. */
static void follow_print(struct follow *f, json_t *ev)
{
    int64_t seq = event_seq(ev);
    if (seq <= f->last)
        return;
    if (f->o->json) {
        char *t = json_dumps(ev, JSON_COMPACT);
        if (t)
            puts(t);
        free(t);
    } else {
        const char *row[6];
        event_cells(ev, row);
        stream_row(row);
    }
    f->last = seq;
    fflush(stdout);   /* one line per event as it happens, also into a pipe */
    pool_reset();
}

static void follow_print_all(struct follow *f, json_t *events)
{
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
        follow_print(f, ev);
}

/* Connects (*w NULL) or connects again (*w a lost stream: to the next node), and
 * subscribes. 0 with *w set and f->node naming the node, or an exit status (printed
 * unless quiet); *w, if set, stays for the caller to close or reconnect. */
static int follow_subscribe(struct follow *f, regc_conn **w, int quiet, regc_error *err)
{
    int rc;
    if (!*w) {
        if ((rc = open_registry_as(f->o, NULL, w, quiet)) != 0)
            return rc;
    } else if (regc_reconnect(*w, err) < 0) {
        return quiet ? (err->kind == REGC_UNREACHABLE ? EXIT_UNREACHABLE : EXIT_REMOTE)
                     : fail_with(err);
    }
    if (regc_watch_start(*w, f->service, err) < 0)
        return quiet ? (err->kind == REGC_UNREACHABLE ? EXIT_UNREACHABLE : EXIT_REMOTE)
                     : finish_request(f->o, *w, -1, err);
    regc_set_interrupt(*w, &got_signal);
    snprintf(f->node, sizeof f->node, "%s", regc_peer(*w));
    return 0;
}

/* Sleeps ms, unless a stop signal comes first. */
static void nap(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (!got_signal && nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* After a lost connection (*w, kept for regc_reconnect): subscribe again with jittered
 * exponential backoff, then print what happened meanwhile. 0 with *w subscribed;
 * EXIT_OK after a stop signal; the exit status when the registry refuses the
 * subscription (it answered: waiting won't help). */
static int follow_resume(struct follow *f, regc_conn **w)
{
    struct evq q = { f->o, f->service, NULL, EVENTS_PAGE, f->node };
    int delay = BACKOFF_MIN_MS;
    regc_error err;
    for (;;) {
        nap(delay / 2 + (int)(random() % (delay / 2 + 1)));
        if (got_signal)
            return EXIT_OK;
        if (delay < BACKOFF_MAX_MS)
            delay = delay * 2 < BACKOFF_MAX_MS ? delay * 2 : BACKOFF_MAX_MS;
        memset(&err, 0, sizeof err);   /* a failed connect leaves it untouched */
        if (follow_subscribe(f, w, 1, &err) != 0) {
            if (err.kind == REGC_REMOTE || err.kind == REGC_NOT_FOUND)
                return fail_with(&err);
            continue;
        }
        /* A registry that lost its history (another database) starts seqs over: then
         * whatever it has is new to us. */
        json_t *all = json_array(), *newest = json_array();
        struct evq any = { f->o, NULL, NULL, 1, f->node };
        int rc = all && newest ? evq_tail(&any, 0, 1, newest) : EXIT_REMOTE;
        evq_close(&any);
        if (rc == 0 && json_array_size(newest) == 1 &&
            event_seq(json_array_get(newest, 0)) < f->last) {
            errmsg("the registry's events start over (seq %" PRId64 " < %" PRId64
                   "): another database", event_seq(json_array_get(newest, 0)), f->last);
            f->last = 0;
        }
        if (rc == 0)
            rc = evq_since(&q, f->last, 0, all);
        evq_close(&q);
        if (rc == 0) {
            errmsg("reconnected to %s; resuming after seq %" PRId64, f->node, f->last);
            follow_print_all(f, all);
        }
        json_decref(all);
        json_decref(newest);
        if (rc == 0)
            return 0;
    }
}

/* Runs a stream: tail >= 0: the newest `tail` events first (0: none); else every event
 * after since first. Returns the exit status. */
static int follow_run(struct follow *f, long tail, int64_t since)
{
    struct evq q = { f->o, f->service, NULL, EVENTS_PAGE, NULL };
    regc_conn *w = NULL;
    regc_error err;
    json_t *before = json_array();
    int rc;

    if (!before) {
        errmsg("out of memory");
        return EXIT_REMOTE;
    }
    catch_stop_signals();
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());
    if (tail == 0) {
        /* Nothing from before: where the stream starts is the newest seq now, asked
         * before subscribing, so every event after the subscription is printed. */
        if ((rc = evq_tail(&q, 0, 1, before)) != 0)
            goto out;
        if (json_array_size(before) == 1)
            f->last = event_seq(json_array_get(before, 0));
        json_array_clear(before);
    }
    if ((rc = follow_subscribe(f, &w, 0, &err)) != 0)
        goto out;
    /* What came before is asked of the node subscribed at. */
    evq_close(&q);
    q.node = f->node;
    /* Subscribed first, then asked what came before: an event in between is in both,
     * and printed once (by seq). */
    if (tail > 0)
        rc = evq_tail(&q, since, tail, before);
    else if (tail < 0)
        rc = evq_since(&q, since, 0, before);
    evq_close(&q);
    if (rc != 0)
        goto out;
    if (!f->o->json) {
        stream_row(event_head);
        fflush(stdout);
    }
    follow_print_all(f, before);
    for (;;) {
        regc_event ev;
        if (got_signal) {     /* one that landed while an event was printed */
            rc = EXIT_OK;
            break;
        }
        if (regc_watch_next(w, -1, &ev, &err) == 0) {
            json_t *o = json_loads(regc_last_line(w), 0, NULL);
            if (o)
                follow_print(f, o);
            json_decref(o);
            continue;
        }
        if (err.kind == REGC_INTERRUPTED || got_signal) {
            rc = EXIT_OK;
            break;
        }
        if (!f->reconnect) {
            if (err.kind == REGC_UNREACHABLE) {
                errmsg("%s", esc(err.message));
                rc = EXIT_UNREACHABLE;
            } else {
                rc = finish_request(f->o, w, -1, &err);
            }
            break;
        }
        errmsg("lost the registry (%s); reconnecting", esc(err.message));
        if ((rc = follow_resume(f, &w)) != 0 || got_signal) {
            if (got_signal)
                rc = EXIT_OK;
            break;
        }
    }
out:
    evq_close(&q);
    regc_close(w);
    json_decref(before);
    return rc;
}

struct events_state {
    long long since;
    int has_since;
    const char *service;
    long limit;
    long tail;               /* -1: not given */
    int follow;
    int no_reconnect;
};

static int events_opt(void *state, int opt, const char *arg)
{
    struct events_state *s = state;
    long v;
    char *end;
    switch (opt) {
    case OPT_SINCE:
        errno = 0;
        s->since = strtoll(arg, &end, 10);
        if (errno || end == arg || *end || s->since < 0)
            return usage_error("events", "--since: want a sequence number >= 0, not '%s'", arg);
        s->has_since = 1;
        return 0;
    case OPT_SERVICE:
        s->service = arg;
        return 0;
    case OPT_LIMIT:
        if (parse_long(arg, 1, 10000, &v) < 0)
            return usage_error("events", "--limit: want a number 1-10000, not '%s'", arg);
        s->limit = v;
        return 0;
    case OPT_TAIL:
        if (parse_long(arg, 0, EVENTS_TAIL_MAX, &v) < 0)
            return usage_error("events", "--tail: want a number 0-%d, not '%s'", EVENTS_TAIL_MAX,
                               arg);
        s->tail = v;
        return 0;
    case 'f':
    case OPT_FOLLOW:
        s->follow = 1;
        return 0;
    case OPT_NO_RECONNECT:
        s->no_reconnect = 1;
        return 0;
    default:
        return EXIT_USAGE;
    }
}

static const struct option events_opts[] = {
    { "since", required_argument, NULL, OPT_SINCE },
    { "service", required_argument, NULL, OPT_SERVICE },
    { "limit", required_argument, NULL, OPT_LIMIT },
    { "tail", required_argument, NULL, OPT_TAIL },
    { "follow", no_argument, NULL, OPT_FOLLOW },
    { "no-reconnect", no_argument, NULL, OPT_NO_RECONNECT },
};

static int cmd_events(struct opts *o, int argc, char **argv)
{
    const struct command *cmd = find_command("events");
    struct events_state st = { 0, 0, NULL, 0, -1, 0, 0 };
    char *args[1];
    int n, rc;

    rc = parse_all(o, cmd, argc, argv, events_opts, sizeof events_opts / sizeof events_opts[0],
                   events_opt, &st, args, 0, &n);
    if (rc)
        return rc == EXIT_DONE ? EXIT_OK : rc;
    if (st.tail >= 0 && st.limit)
        return usage_error("events", "--tail and --limit exclude each other");
    if (st.follow && st.limit)
        return usage_error("events", "--follow takes --tail or --since, not --limit");
    if (st.follow) {
        struct follow f = { .o = o, .service = st.service, .reconnect = !st.no_reconnect,
                            .last = st.since };
        /* -f: the newest 20 then live, or everything after --since then live. */
        long tail = st.tail >= 0 ? st.tail : st.has_since ? -1 : EVENTS_TTY_TAIL;
        return follow_run(&f, tail, st.since);
    }
    /* The newest N: asked for, or what a person at a terminal wants by default; else
     * (a pipe, a script) the oldest after --since, as always. */
    if (st.tail < 0 && !st.has_since && !st.limit && isatty(STDOUT_FILENO))
        st.tail = EVENTS_TTY_TAIL;
    /* Page by page either way: a reply of events too large for one line (long details)
     * is asked for again in smaller pages. */
    struct evq q = { o, st.service, NULL, EVENTS_PAGE, NULL };
    json_t *all = json_array();
    if (!all) {
        errmsg("out of memory");
        return EXIT_REMOTE;
    }
    if (st.tail >= 0)
        rc = evq_tail(&q, st.since, st.tail, all);
    else
        rc = evq_since(&q, st.since, st.limit ? st.limit : 100, all);
    evq_close(&q);
    if (rc == 0 && o->json) {   /* one reply holding them all, as the registry's */
        json_t *reply = json_pack("{s:b, s:O}", "ok", 1, "events", all);
        char *t = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
        if (t)
            puts(t);
        else
            rc = EXIT_REMOTE;
        free(t);
        json_decref(reply);
    } else if (rc == 0 && print_event_table(all) != 0) {
        errmsg("out of memory");
        rc = EXIT_REMOTE;
    }
    json_decref(all);
    return rc;
}

struct watch_state {
    int no_reconnect;
};

static int watch_opt(void *state, int opt, const char *arg)
{
    struct watch_state *s = state;
    (void)arg;
    if (opt != OPT_NO_RECONNECT)
        return EXIT_USAGE;
    s->no_reconnect = 1;
    return 0;
}

static const struct option watch_opts[] = {
    { "no-reconnect", no_argument, NULL, OPT_NO_RECONNECT },
};

static int cmd_watch(struct opts *o, int argc, char **argv)
{
    const struct command *cmd = find_command("watch");
    struct watch_state st = { 0 };
    char *args[1];
    int n, rc;

    rc = parse_all(o, cmd, argc, argv, watch_opts, 1, watch_opt, &st, args, 1, &n);
    if (rc)
        return rc == EXIT_DONE ? EXIT_OK : rc;
    struct follow f = { .o = o, .service = n ? args[0] : NULL,
                        .reconnect = !st.no_reconnect };
    return follow_run(&f, 0, 0);
}

/* ---- help ----------------------------------------------------------------------------------- */

static int cmd_help(struct opts *o, int argc, char **argv);

static const struct command commands[] = {
    { "lookup", cmd_lookup, "lookup SERVICE [--tag T] [--all]",
      "Prints HOST:PORT of a passing instance of SERVICE (round-robin among them;\n"
      "instances in maintenance are never handed out).\n"
      "  --tag T   only instances carrying tag T\n"
      "  --all     every instance under a header: ENDPOINT  STATUS  LAST_CHECK  ID\n"
      "            (STATUS passing, critical or maintenance; asked for page by page:\n"
      "            any number of them)\n"
      "Exit 1 when nothing passing is registered.\n", NULL },
    { "call", cmd_call, "call [--raw] SERVICE [MESSAGE ...]",
      "Looks SERVICE up, connects to the endpoint it got, sends the MESSAGE words\n"
      "joined by spaces as one line and prints the reply line. With no MESSAGE, sends\n"
      "each line of standard input and prints each reply, until end of input.\n"
      "The lookup and the connect use --timeout; a reply may take up to an hour\n"
      "(or --timeout, if longer).\n"
      "The reply is the service's own bytes: printed as they came when standard output\n"
      "is not a terminal (a pipe, a file); on a terminal control characters and\n"
      "invalid UTF-8 are shown escaped (\\n, \\e, \\x01, \\u0085...), so a reply cannot\n"
      "drive the terminal.\n"
      "  --raw     print the reply as it came, on a terminal too\n"
      "  regctl call timestamp hello\n"
      "  regctl call sleep '{\"sleep\": 2}'\n", NULL },
    { "list", cmd_list, "list",
      "Prints every service under a header: SERVICE, INSTANCES, PASSING (handed out by\n"
      "lookups), MAINTENANCE (taken out of service by an operator), DESCRIPTION. The\n"
      "registry is asked page by page, so any number of services is listed.\n", NULL },
    { "register", cmd_register,
      "register SERVICE HOST PORT [--description D] [--tag T]... [--ttl S] [--check tcp|none]\n"
      "         [--token T | --admin]",
      "Registers an instance by hand and prints \"ID TOKEN\"; keep the token: it is\n"
      "needed to deregister, heartbeat, or register it again from another host.\n"
      "  --description D   what the service is\n"
      "  --tag T           a tag (repeatable, at most 32)\n"
      "  --ttl S           expire unless renewed (heartbeat) within S seconds\n"
      "  --check tcp|none  health check the registry runs (default tcp)\n"
      "  --token T         the instance's current token: update it from any host\n"
      "  --admin           an operator's update of someone else's instance (needs the\n"
      "                    registry's shared secret, --auth-file)\n", NULL },
    { "deregister", cmd_deregister, "deregister ID TOKEN | deregister --force ID",
      "Removes the instance ID (TOKEN is what register printed).\n"
      "  --force   an operator's removal without the token (its owner lost it): needs\n"
      "            the registry's shared secret (--auth-file) when it has one, else\n"
      "            works only on the registry's own host (a loopback connection).\n"
      "            Logged, and recorded as a deregister event with detail forced:true.\n", NULL },
    { "heartbeat", cmd_heartbeat, "heartbeat ID TOKEN",
      "Renews the TTL of instance ID.\n", NULL },
    { "maintenance", cmd_maintenance, "maintenance ID on|off [--reason R]",
      "An operator takes instance ID out of service (on) or puts it back (off). In\n"
      "maintenance it stays registered and checked, but lookups (and DNS) skip it, it\n"
      "is neither evicted nor expired, lookup --all shows it as maintenance, and it\n"
      "stays so across restarts of the registry and re-registrations, until off (or a\n"
      "deregistration). Back in service, its TTL starts over. Needs the registry's\n"
      "shared secret (--auth-file) when it has one, else works only on the registry's\n"
      "own host. Recorded as a maintenance_on / maintenance_off event.\n"
      "  --reason R   why, for the event and the log\n", NULL },
    { "stats", cmd_stats, "stats", "Prints the registry's statistics.\n", NULL },
    { "ping", cmd_ping, "ping", "Checks that the registry answers; prints \"ok\".\n", NULL },
    { "version", cmd_version, "version",
      "Prints this regctl's version, then the registry's (from its stats); exit 3 when\n"
      "the registry cannot be reached.\n", NULL },
    { "events", cmd_events,
      "events [--tail N | --since SEQ [--limit N]] [--service S] [-f|--follow [--no-reconnect]]",
      "Prints stored activity events (registrations, checks, evictions...) under a\n"
      "header, oldest first: SEQ, TIME, EVENT, SERVICE, ENDPOINT, DETAIL.\n"
      "Which ones: on a terminal, the newest 20 (--tail 20); otherwise (a pipe, a\n"
      "script) the oldest 100 after --since, as the registry gives them.\n"
      "  --tail N      the newest N (after --since SEQ, if given)\n"
      "  --since SEQ   only events after sequence number SEQ (default 0)\n"
      "  --limit N     at most N events after SEQ (1-10000; default: the registry's, 100)\n"
      "  --service S   only events of service S\n"
      "  -f, --follow  then follow new events live, like journalctl -f: the newest 20\n"
      "                (or --tail N, or all after --since SEQ), then each event as it\n"
      "                happens, none missed or printed twice (they go by SEQ); a lost\n"
      "                connection is resumed as in watch\n"
      "  --no-reconnect  with -f: exit 3 when the connection is lost\n", "f" },
    { "watch", cmd_watch, "watch [SERVICE] [--no-reconnect]",
      "Follows events live (like tail -f) under a header: SEQ, TIME, EVENT, SERVICE,\n"
      "ENDPOINT, DETAIL; with --json one JSON event object per line (nothing else).\n"
      "When the connection is lost (the registry restarted...) it reconnects, waiting\n"
      "100 ms doubling to 5 s between attempts (jittered), and goes on after the last\n"
      "SEQ it printed: what happened meanwhile is printed first, nothing twice. With a\n"
      "list of registry nodes (--registry A,B,...) it reconnects to the next node.\n"
      "Runs until Ctrl-C or SIGTERM (exit 0).\n"
      "  --no-reconnect  exit 3 when the connection is lost\n", NULL },
    { "help", cmd_help, "help [COMMAND]", "Prints help for regctl or one command.\n", NULL },
};

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void print_help(void)
{
    printf("usage: regctl [--registry HOST:PORT[,HOST:PORT...]] [--json] [--timeout S]\n"
           "              [--auth-file PATH] COMMAND [ARGS...]\n"
           "       regctl --help | --version | help COMMAND | COMMAND --help (-h: --help)\n"
           "\nThe command line of the service registry.\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("  %s\n", commands[i].usage);
    printf("\nGlobal options:\n"
           "  --registry HOST:PORT  the registry ([IPV6]:PORT too; default $REGISTRY_ADDR,\n"
           "                        else %s); a comma-separated list of its nodes is\n"
           "                        tried in order, and a request moves to the next node\n"
           "                        when its node is refused, times out or goes away\n"
           "  --json                print the registry's JSON reply instead of text\n"
           "  --timeout S           connect and reply timeout in seconds (default %d;\n"
           "                        each node of a list gets it whole)\n"
           "  --auth-file PATH      file holding the registry secret, sent with every\n"
           "                        request (default $REGISTRY_AUTH_FILE)\n"
           "\nText the registry sends (names, descriptions, details, its messages) is printed\n"
           "with control characters and invalid UTF-8 escaped (\\n, \\e, \\x01, \\u0085,\n"
           "\\\\ for a backslash); --json prints JSON. See 'regctl call --help' for replies.\n"
           "\nExit status: 0 success, 1 not found, 2 usage error, 3 cannot reach the\n"
           "registry (refused, timed out, closed), 4 the registry refused the request.\n",
           REGC_DEFAULT_ADDR, DEFAULT_TIMEOUT_MS / 1000);
}

static int cmd_help(struct opts *o, int argc, char **argv)
{
    const struct command *c;
    if (argc < 2) {
        print_help();
        return EXIT_OK;
    }
    if (argc > 2)
        return usage_error("help", "at most one COMMAND");
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        print_command_help(find_command("help"));
        return EXIT_OK;
    }
    if (!(c = find_command(argv[1])))
        return usage_error(NULL, "unknown command '%s'", argv[1]);
    print_command_help(c);
    return EXIT_OK;
}

/* ---- main ---------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const struct option gopts[] = {
        GLOBAL_OPTS,
        { "version", no_argument, NULL, OPT_VERSION },
        { NULL, 0, NULL, 0 }
    };
    struct opts o = { NULL, 0, DEFAULT_TIMEOUT_MS, NULL };
    const struct command *cmd;
    int opt, rc;

    opterr = 0;
    /* "+": stop at the command name; its own options are parsed by the command. */
    while ((opt = getopt_long(argc, argv, "+h", gopts, NULL)) != -1) {
        if (opt == OPT_HELP || opt == 'h') {
            print_help();
            return EXIT_OK;
        }
        if (opt == OPT_VERSION) {
            printf("regctl %s\n", REGISTRY_VERSION);
            return EXIT_OK;
        }
        if (opt == '?' || opt == ':')
            return usage_error(NULL, "unknown option or missing value: '%s'", argv[optind - 1]);
        if ((rc = global_opt(&o, NULL, opt, optarg)) > 0)
            return rc;
    }
    if (optind >= argc)
        return usage_error(NULL, "missing COMMAND");
    if (!(cmd = find_command(argv[optind])))
        return usage_error(NULL, "unknown command '%s'", argv[optind]);
    rc = cmd->run(&o, argc - optind, argv + optind);
    if (fflush(stdout) != 0 && rc == EXIT_OK) {
        errmsg("writing output: %s", strerror(errno));
        rc = EXIT_REMOTE;
    }
    pool_free();
    return rc;
}
