/* SPDX-License-Identifier: BSD-2-Clause */
/* regctl.c — the registry's command line: look services up, call them by name, list,
 * register and deregister by hand, read statistics and the activity log, follow events.
 *
 *   regctl [--registry HOST:PORT] [--json] [--timeout S] [--auth-file PATH] COMMAND ...
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
    const char *registry;     /* NULL: $REGISTRY_ADDR, then the default */
    int json;
    int timeout_ms;
    const char *auth_file;    /* NULL: $REGISTRY_AUTH_FILE */
};

struct command {
    const char *name;
    int (*run)(struct opts *o, int argc, char **argv);
    const char *usage;        /* the synopsis after "regctl " */
    const char *help;         /* what it does and its options */
};

static const struct command *find_command(const char *name);

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
    switch (e->kind) {
    case REGC_NOT_FOUND:
        errmsg("%s", e->message);
        return EXIT_NOT_FOUND;
    case REGC_UNREACHABLE:
        errmsg("%s", e->message);
        return EXIT_UNREACHABLE;
    case REGC_INVALID:
        errmsg("%s", e->message);
        return EXIT_USAGE;
    case REGC_REMOTE:
        errmsg("%s: %s", e->code, e->message);
        return EXIT_REMOTE;
    default:
        errmsg("%s", e->message[0] ? e->message : "unexpected error");
        return EXIT_REMOTE;
    }
}

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
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
    OPT_TOKEN, OPT_ADMIN
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
    char host[REGC_HOST_MAX];
    uint16_t port;

    switch (opt) {
    case OPT_REGISTRY:
        if (regc_parse_addr(arg, host, sizeof host, &port, &err) < 0)
            return usage_error(cmd, "--registry: %s", err.message);
        if (port == 0)
            return usage_error(cmd, "--registry: port 0 in '%s'", arg);
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
    printf("\nGlobal options (also accepted after the command): --registry HOST:PORT,\n"
           "--json, --timeout S, --auth-file PATH. See 'regctl --help'.\n");
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
    size_t n = 0;
    int opt, rc;

    for (size_t i = 0; i < nown && n < 16; i++)
        all[n++] = own[i];
    for (size_t i = 0; i < sizeof globals / sizeof globals[0]; i++)
        all[n++] = globals[i];
    memset(&all[n], 0, sizeof all[n]);

    *nargs = 0;
    optind = 0;     /* GNU: full re-initialisation for the new argv */
    opterr = 0;
    while ((opt = getopt_long(argc, argv, permute ? "-" : "+", all, NULL)) != -1) {
        if (opt == 1) {
            /* An operand, in place ("-" mode). */
            if (*nargs >= nmax)
                return usage_error(c->name, "unexpected argument '%s'", optarg);
            args[(*nargs)++] = optarg;
            continue;
        }
        if (opt == '?') {
            if (optopt)
                return usage_error(c->name, "option '%s' needs a value", argv[optind - 1]);
            return usage_error(c->name, "unknown option '%s'", argv[optind - 1]);
        }
        if (opt == OPT_HELP) {
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
static int open_registry(const struct opts *o, regc_conn **c)
{
    regc_error err;
    char *secret = NULL;
    int rc;

    if (regc_load_auth(o->auth_file, &secret, &err) < 0) {
        errmsg("%s", err.message);
        return EXIT_USAGE;
    }
    rc = regc_connect(o->registry, o->timeout_ms, c, &err);
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
        printf("%s\n", ep);
    } else {
        /* HOST:PORT  STATUS  LAST_CHECK  ID, aligned. */
        int w_ep = 0, w_st = 0, w_lc = 0;
        for (size_t i = 0; i < r->ninstances; i++) {
            regc_instance *in = &r->instances[i];
            const char *lc = in->last_check ? in->last_check : in->last_seen;
            regc_format_addr(in->host, in->port, ep, sizeof ep);
            if ((int)strlen(ep) > w_ep) w_ep = (int)strlen(ep);
            if ((int)strlen(or_dash(in->status)) > w_st) w_st = (int)strlen(or_dash(in->status));
            if ((int)strlen(or_dash(lc)) > w_lc) w_lc = (int)strlen(or_dash(lc));
        }
        for (size_t i = 0; i < r->ninstances; i++) {
            regc_instance *in = &r->instances[i];
            const char *lc = in->last_check ? in->last_check : in->last_seen;
            regc_format_addr(in->host, in->port, ep, sizeof ep);
            printf("%-*s  %-*s  %-*s  %s\n", w_ep, ep, w_st, or_dash(in->status), w_lc,
                   or_dash(lc), or_dash(in->id));
        }
        if (r->ninstances == 0) {
            errmsg("no instance of '%s'", args[0]);
            rc = EXIT_NOT_FOUND;
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

/* Sends one line to the service and prints its reply. Returns an exit status. */
static int call_once(regc_conn *svc, int reply_ms, const char *name, const char *line,
                     size_t len)
{
    regc_error err;
    const char *reply;
    size_t rlen;
    if (regc_send_line(svc, line, len, &err) < 0 ||
        regc_read_line(svc, reply_ms, &reply, &rlen, &err) < 0) {
        if (err.kind == REGC_UNREACHABLE) {
            errmsg("service %s: %s", name, err.message);
            return EXIT_UNREACHABLE;
        }
        errmsg("service %s: %s", name, err.message);
        return err.kind == REGC_INVALID ? EXIT_USAGE : EXIT_REMOTE;
    }
    fwrite(reply, 1, rlen, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    return EXIT_OK;
}

static int cmd_call(struct opts *o, int argc, char **argv)
{
    const struct command *cmd = find_command("call");
    regc_conn *c = NULL, *svc = NULL;
    regc_lookup_result *r = NULL;
    regc_error err;
    char ep[REGC_ADDR_MAX], *msg = NULL, *line = NULL;
    size_t cap = 0, mlen = 0;
    int first, rc, reply_ms;

    /* No permutation: everything after SERVICE is the message, dashes included. */
    rc = parse_command(o, cmd, argc, argv, NULL, 0, no_own_opts, NULL, 0, NULL, 0, &first);
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
        rc = call_once(svc, reply_ms, service, msg, mlen);
        goto out;
    }
    rc = EXIT_OK;
    for (;;) {
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0)
            break;
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        if ((rc = call_once(svc, reply_ms, service, line, (size_t)n)) != EXIT_OK)
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
    int w_s = (int)strlen("SERVICE"), w_i = (int)strlen("INSTANCES"), w_p = (int)strlen("PASSING");
    char num[32];
    for (size_t i = 0; i < l->nservices; i++) {
        if ((int)strlen(l->services[i].service) > w_s)
            w_s = (int)strlen(l->services[i].service);
        snprintf(num, sizeof num, "%ld", l->services[i].instances);
        if ((int)strlen(num) > w_i)
            w_i = (int)strlen(num);
        snprintf(num, sizeof num, "%ld", l->services[i].passing);
        if ((int)strlen(num) > w_p)
            w_p = (int)strlen(num);
    }
    printf("%-*s  %*s  %*s  %s\n", w_s, "SERVICE", w_i, "INSTANCES", w_p, "PASSING",
           "DESCRIPTION");
    for (size_t i = 0; i < l->nservices; i++) {
        regc_service_info *s = &l->services[i];
        printf("%-*s  %*ld  %*ld  %s\n", w_s, s->service, w_i, s->instances, w_p, s->passing,
               s->description ? s->description : "");
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
        printf("%s %s\n", id, token);
    regc_close(c);
    return rc;
}

static int id_token_cmd(struct opts *o, const char *name, int argc, char **argv)
{
    const struct command *cmd = find_command(name);
    char *args[2];
    regc_conn *c = NULL;
    regc_error err;
    int n, rc, ttl = 0;

    rc = parse_all(o, cmd, argc, argv, NULL, 0, no_own_opts, NULL, args, 2, &n);
    if (rc)
        return rc == EXIT_DONE ? EXIT_OK : rc;
    if (n != 2)
        return usage_error(name, "want ID TOKEN");
    if ((rc = open_registry(o, &c)) != 0)
        return rc;
    if (strcmp(name, "deregister") == 0)
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
            printf("%-*s  %s\n", width, name, json_string_value(v));
        } else {
            char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(6));
            printf("%-*s  %s\n", width, name, t ? t : "?");
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

/* ---- events / watch ------------------------------------------------------------------------ */

static void event_endpoint(const regc_event *e, char *buf, size_t len)
{
    if (e->host && e->port > 0)
        regc_format_addr(e->host, e->port, buf, len);
    else
        snprintf(buf, len, "%s", or_dash(e->host));
}

struct events_state {
    long long since;
    const char *service;
    long limit;
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
        return 0;
    case OPT_SERVICE:
        s->service = arg;
        return 0;
    case OPT_LIMIT:
        if (parse_long(arg, 1, 10000, &v) < 0)
            return usage_error("events", "--limit: want a number 1-10000, not '%s'", arg);
        s->limit = v;
        return 0;
    default:
        return EXIT_USAGE;
    }
}

static const struct option events_opts[] = {
    { "since", required_argument, NULL, OPT_SINCE },
    { "service", required_argument, NULL, OPT_SERVICE },
    { "limit", required_argument, NULL, OPT_LIMIT },
};

static int cmd_events(struct opts *o, int argc, char **argv)
{
    const struct command *cmd = find_command("events");
    struct events_state st = { 0, NULL, 0 };
    char *args[1], ep[REGC_ADDR_MAX];
    regc_conn *c = NULL;
    regc_event_list *l = NULL;
    regc_error err;
    int n, rc;

    rc = parse_all(o, cmd, argc, argv, events_opts, 3, events_opt, &st, args, 0, &n);
    if (rc)
        return rc == EXIT_DONE ? EXIT_OK : rc;
    if ((rc = open_registry(o, &c)) != 0)
        return rc;
    rc = regc_events(c, st.since, st.service, (int)st.limit, &l, &err);
    if (o->json || rc < 0) {
        rc = finish_request(o, c, rc, &err);
        goto out;
    }
    int w_seq = 3, w_ts = 4, w_ev = 5, w_svc = 7, w_ep = 8;
    char num[32];
    for (size_t i = 0; i < l->nevents; i++) {
        regc_event *e = &l->events[i];
        snprintf(num, sizeof num, "%" PRId64, e->seq);
        event_endpoint(e, ep, sizeof ep);
        if ((int)strlen(num) > w_seq) w_seq = (int)strlen(num);
        if ((int)strlen(or_dash(e->ts)) > w_ts) w_ts = (int)strlen(or_dash(e->ts));
        if ((int)strlen(or_dash(e->event)) > w_ev) w_ev = (int)strlen(or_dash(e->event));
        if ((int)strlen(or_dash(e->service)) > w_svc) w_svc = (int)strlen(or_dash(e->service));
        if ((int)strlen(ep) > w_ep) w_ep = (int)strlen(ep);
    }
    printf("%*s  %-*s  %-*s  %-*s  %-*s  %s\n", w_seq, "SEQ", w_ts, "TIME", w_ev, "EVENT",
           w_svc, "SERVICE", w_ep, "ENDPOINT", "DETAIL");
    for (size_t i = 0; i < l->nevents; i++) {
        regc_event *e = &l->events[i];
        event_endpoint(e, ep, sizeof ep);
        printf("%*" PRId64 "  %-*s  %-*s  %-*s  %-*s  %s\n", w_seq, e->seq, w_ts, or_dash(e->ts),
               w_ev, or_dash(e->event), w_svc, or_dash(e->service), w_ep, ep,
               e->detail ? e->detail : "");
    }
    rc = EXIT_OK;
out:
    regc_event_list_free(l);
    regc_close(c);
    return rc;
}

static volatile sig_atomic_t got_signal;

static void on_stop_signal(int sig)
{
    got_signal = sig;
}

static int cmd_watch(struct opts *o, int argc, char **argv)
{
    const struct command *cmd = find_command("watch");
    char *args[1], ep[REGC_ADDR_MAX];
    regc_conn *c = NULL;
    regc_error err;
    regc_event ev;
    struct sigaction sa;
    int n, rc;

    rc = parse_all(o, cmd, argc, argv, NULL, 0, no_own_opts, NULL, args, 1, &n);
    if (rc)
        return rc == EXIT_DONE ? EXIT_OK : rc;
    if ((rc = open_registry(o, &c)) != 0)
        return rc;
    rc = regc_watch_start(c, n ? args[0] : NULL, &err);
    if (rc < 0) {
        rc = finish_request(o, c, rc, &err);
        goto out;
    }
    if (o->json) {
        printf("%s\n", regc_last_line(c));
        fflush(stdout);
    }
    /* Ctrl-C or SIGTERM end the stream cleanly (exit 0); a second one kills as usual. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESETHAND;      /* and no SA_RESTART: poll() must return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    regc_set_interrupt(c, &got_signal);
    while (!got_signal) {
        rc = regc_watch_next(c, -1, &ev, &err);
        if (rc < 0)
            break;
        if (o->json) {
            printf("%s\n", regc_last_line(c));
        } else {
            event_endpoint(&ev, ep, sizeof ep);
            printf("%s  %-14s  %-20s  %-21s  %s\n", or_dash(ev.ts), or_dash(ev.event),
                   or_dash(ev.service), ep, ev.detail ? ev.detail : "");
        }
        /* One line per event as it happens, also into a pipe. */
        fflush(stdout);
    }
    if (err.kind == REGC_INTERRUPTED || got_signal) {
        rc = EXIT_OK;
    } else if (err.kind == REGC_UNREACHABLE) {
        errmsg("%s", err.message);
        rc = EXIT_UNREACHABLE;
    } else {
        rc = finish_request(o, c, rc, &err);
    }
out:
    regc_close(c);
    return rc;
}

/* ---- help ----------------------------------------------------------------------------------- */

static int cmd_help(struct opts *o, int argc, char **argv);

static const struct command commands[] = {
    { "lookup", cmd_lookup, "lookup SERVICE [--tag T] [--all]",
      "Prints HOST:PORT of a passing instance of SERVICE (round-robin among them).\n"
      "  --tag T   only instances carrying tag T\n"
      "  --all     every instance, one line each: HOST:PORT  STATUS  LAST_CHECK  ID\n"
      "            (asked for page by page: any number of them)\n"
      "Exit 1 when nothing passing is registered.\n" },
    { "call", cmd_call, "call SERVICE [MESSAGE ...]",
      "Looks SERVICE up, connects to the endpoint it got, sends the MESSAGE words\n"
      "joined by spaces as one line and prints the reply line. With no MESSAGE, sends\n"
      "each line of standard input and prints each reply, until end of input.\n"
      "The lookup and the connect use --timeout; a reply may take up to an hour\n"
      "(or --timeout, if longer).\n"
      "  regctl call timestamp hello\n"
      "  regctl call sleep '{\"sleep\": 2}'\n" },
    { "list", cmd_list, "list",
      "Prints every service: SERVICE, INSTANCES, PASSING, DESCRIPTION. The registry\n"
      "is asked page by page, so any number of services is listed.\n" },
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
      "                    registry's shared secret, --auth-file)\n" },
    { "deregister", cmd_deregister, "deregister ID TOKEN",
      "Removes the instance ID (TOKEN is what register printed).\n" },
    { "heartbeat", cmd_heartbeat, "heartbeat ID TOKEN",
      "Renews the TTL of instance ID.\n" },
    { "stats", cmd_stats, "stats", "Prints the registry's statistics.\n" },
    { "ping", cmd_ping, "ping", "Checks that the registry answers; prints \"ok\".\n" },
    { "events", cmd_events, "events [--since SEQ] [--service S] [--limit N]",
      "Prints stored activity events (registrations, checks, evictions...), oldest\n"
      "first: SEQ, TIME, EVENT, SERVICE, ENDPOINT, DETAIL.\n"
      "  --since SEQ   only events after sequence number SEQ (default 0)\n"
      "  --service S   only events of service S\n"
      "  --limit N     at most N events (1-10000; default: the registry's, 100)\n" },
    { "watch", cmd_watch, "watch [SERVICE]",
      "Follows events live (like tail -f), one line each: time, event, service,\n"
      "endpoint, detail; with --json the raw JSON lines. Runs until Ctrl-C (exit 0)\n"
      "or the registry closes the connection (exit 3).\n" },
    { "help", cmd_help, "help [COMMAND]", "Prints help for regctl or one command.\n" },
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
    printf("usage: regctl [--registry HOST:PORT] [--json] [--timeout S] [--auth-file PATH]\n"
           "              COMMAND [ARGS...]\n"
           "       regctl --help | --version | help COMMAND | COMMAND --help\n"
           "\nThe command line of the service registry.\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("  %s\n", commands[i].usage);
    printf("\nGlobal options:\n"
           "  --registry HOST:PORT  the registry ([IPV6]:PORT too; default $REGISTRY_ADDR,\n"
           "                        else %s)\n"
           "  --json                print the registry's JSON reply instead of text\n"
           "  --timeout S           connect and reply timeout in seconds (default %d)\n"
           "  --auth-file PATH      file holding the registry secret, sent with every\n"
           "                        request (default $REGISTRY_AUTH_FILE)\n"
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
    while ((opt = getopt_long(argc, argv, "+", gopts, NULL)) != -1) {
        if (opt == OPT_HELP) {
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
    return rc;
}
