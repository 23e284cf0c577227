/* SPDX-License-Identifier: BSD-2-Clause */
/* main.c — registryd: flags, start-up, signals and the orderly stop.
 *
 * Start-up either completes or fails with one line on stderr and exit 2 (usage) or 1
 * (runtime): the database is opened and loaded and the port bound before the daemon
 * says `listening on HOST:PORT` on stdout, so a script that read that line can use it.
 * SIGINT/SIGTERM: stop accepting and reading, answer what was read, commit, close the
 * database, exit 0; a second signal exits at once. SIGHUP reopens the log file.
 * Under systemd (NOTIFY_SOCKET set) the daemon says READY=1 once it listens, STOPPING=1
 * when the orderly stop begins and RELOADING=1 ... READY=1 around a SIGHUP.
 *
 * --config FILE holds the same settings as the long flags, one `name value` a line; its
 * settings go in first and the command line's after them, whatever their order, so the
 * command line wins. Both go through apply_flag, so a flag added to the table below
 * works in the file with no more code.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include "base/alog.h"
#include "base/util.h"
#include "core/core.h"
#include "front/dns/dns.h"
#include "front/dns/msg.h"
#include "front/http/http.h"
#include "front/line/line.h"
#include "store/store.h"

/* Everything the flags say. */
typedef struct config {
    core_config core;
    line_config line;
    dns_config dns;
    int dns_on;                     /* --dns given */
    http_config http;
    int http_on;                    /* --http given */
    const char *db_path;
    int db_given;                   /* --db given (with --etcd: a usage error) */
    const char *etcd;               /* --etcd URL[,URL...]: the shared store */
    const char *etcd_prefix;
    uint64_t etcd_timeout_ms;
    int node_name_given;
    char *store_spec;               /* owned: "etcd:URLS" */
    const char *log_path;
    int log_level;
    int sync_full;
    long long events_keep;
    const char *auth_token_file;
    int check_timeout_given;        /* --check-timeout set (else it shrinks to fit) */
    char *config_text;              /* owned: --config's text; settings point into it */
} config;

/* The daemon: what main builds, and what the signal handlers and the stop sequence
 * need. */
typedef struct daemon {
    uv_loop_t *loop;
    config cfg;
    alog *log;
    store *store;
    core *core;
    line_server *line;
    dns_server *dns;                /* NULL without --dns */
    http_server *http;              /* NULL without --http */
    size_t open_conns;              /* line + HTTP connections (--max-conns bounds both) */
    uv_signal_t sigint, sigterm, sighup;
    int stopping;                   /* 1: finishing requests; 3: closing connections */
} registryd;

static void usage(FILE *f) {
    fprintf(f,
            "usage: registryd [options]\n"
            "\n"
            "A service registry: services register HOST:PORT under a name, clients look\n"
            "names up. Newline-delimited JSON over TCP; see README.md for the protocol.\n"
            "\n"
            "  --listen HOST:PORT        address to serve (default 127.0.0.1:5380; port 0: any)\n"
            "  --db PATH                 SQLite database (default ./registry.db)\n"
            "  --etcd URL[,URL...]       share an etcd v3 cluster with other registryd nodes\n"
            "                            instead of a local database (not with --db)\n"
            "  --etcd-prefix P           where the registry's keys live (default /registry/)\n"
            "  --etcd-timeout S          deadline of one etcd operation (default 3)\n"
            "  --sync full|normal        fsync every commit (full, default) or WAL-checkpoint only\n"
            "  --log PATH                activity log, JSON lines (default: stderr)\n"
            "  --log-level LEVEL         debug|info|warn|error (default info)\n"
            "  --log-lookups             log every lookup (default: a summary per interval)\n"
            "  --log-lookups-interval S  lookup summary interval (default 60)\n"
            "  --check-interval S        seconds between TCP checks of an instance (default 10)\n"
            "  --check-timeout S         TCP check timeout (default 2, at most the interval)\n"
            "  --max-failures N          consecutive failed checks before eviction (default 3)\n"
            "  --rise N                  consecutive passed checks to pass again (default 2)\n"
            "  --check-concurrency N     checks in flight at most (default 256)\n"
            "  --preserve-min N          self-preservation needs at least N checked (default 10)\n"
            "  --preserve-threshold P    ... and more than P%% failing (default 50)\n"
            "  --cache-size N            cached lookup answers (default 4096; 0 disables)\n"
            "  --events-keep N           events kept in the database (default 100000)\n"
            "  --max-conns N             connections served at once (default 10000)\n"
            "  --max-output-buffer B     unread reply bytes before a client is dropped (16 MiB)\n"
            "  --idle-timeout S          drop idle clients (default 300; 0 = never)\n"
            "  --request-timeout S       drop clients that leave a line unfinished (default 10)\n"
            "  --max-instances N         registered instances at most (default 1000000)\n"
            "  --max-instances-per-service N  (default 10000)\n"
            "  --max-instances-per-client N   instances one client IP may register (10000)\n"
            "  --max-catalog-bytes B     memory the catalog may hold (default 1 GiB)\n"
            "  --check-allow CIDR[,...]  health checks connect only to these (default: any)\n"
            "  --check-deny CIDR[,...]   ... and never to these (default: link-local,\n"
            "                            multicast, broadcast, unspecified; \"none\": no list)\n"
            "  --auth-token-file PATH    register (and with --auth-lookups, reads) need this secret\n"
            "  --auth-lookups            require the secret for lookups, list, events, watch too\n"
            "  --dns HOST:PORT           also serve DNS (UDP and TCP) there; port 0: any\n"
            "  --dns-domain D            the DNS zone (default registry)\n"
            "  --dns-ttl S               TTL of DNS answers, whole seconds (default 0)\n"
            "  --http HOST:PORT          also serve HTTP there: Consul's API, /api/, /metrics;\n"
            "                            port 0: any (off by default)\n"
            "  --node-name NAME          this node's name among the nodes and in the HTTP API\n"
            "                            (default: hostname; with --etcd, hostname-PORT)\n"
            "  --config FILE             settings from FILE, one \"name value\" a line (name: a\n"
            "                            long flag without --); the command line wins\n"
            "  --help, --version\n"
            "\n"
            "Signals: SIGTERM/SIGINT stop in order, SIGHUP reopens the log.\n"
            "The manual: man registryd (flags, config file, signals, files, systemd).\n");
}

enum {
    OPT_LISTEN = 256, OPT_DB, OPT_SYNC, OPT_LOG, OPT_LOG_LEVEL, OPT_LOG_LOOKUPS, OPT_LOG_LOOKUPS_INTERVAL,
    OPT_CHECK_INTERVAL, OPT_CHECK_TIMEOUT, OPT_MAX_FAILURES, OPT_RISE, OPT_CHECK_CONCURRENCY,
    OPT_PRESERVE_MIN, OPT_PRESERVE_THRESHOLD, OPT_CACHE_SIZE, OPT_EVENTS_KEEP, OPT_MAX_CONNS,
    OPT_MAX_OUTPUT_BUFFER, OPT_IDLE_TIMEOUT, OPT_REQUEST_TIMEOUT, OPT_MAX_INSTANCES,
    OPT_MAX_PER_SERVICE, OPT_MAX_PER_CLIENT, OPT_MAX_CATALOG_BYTES, OPT_CHECK_ALLOW,
    OPT_CHECK_DENY, OPT_DNS, OPT_DNS_DOMAIN, OPT_DNS_TTL, OPT_HTTP, OPT_NODE_NAME, OPT_AUTH_FILE, OPT_AUTH_LOOKUPS, OPT_ETCD, OPT_ETCD_PREFIX, OPT_ETCD_TIMEOUT, OPT_CONFIG, OPT_HELP, OPT_VERSION
};

static const struct option options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"db", required_argument, NULL, OPT_DB},
    {"etcd", required_argument, NULL, OPT_ETCD},
    {"etcd-prefix", required_argument, NULL, OPT_ETCD_PREFIX},
    {"etcd-timeout", required_argument, NULL, OPT_ETCD_TIMEOUT},
    {"sync", required_argument, NULL, OPT_SYNC},
    {"log", required_argument, NULL, OPT_LOG},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-lookups", no_argument, NULL, OPT_LOG_LOOKUPS},
    {"log-lookups-interval", required_argument, NULL, OPT_LOG_LOOKUPS_INTERVAL},
    {"check-interval", required_argument, NULL, OPT_CHECK_INTERVAL},
    {"check-timeout", required_argument, NULL, OPT_CHECK_TIMEOUT},
    {"max-failures", required_argument, NULL, OPT_MAX_FAILURES},
    {"rise", required_argument, NULL, OPT_RISE},
    {"check-concurrency", required_argument, NULL, OPT_CHECK_CONCURRENCY},
    {"preserve-min", required_argument, NULL, OPT_PRESERVE_MIN},
    {"preserve-threshold", required_argument, NULL, OPT_PRESERVE_THRESHOLD},
    {"cache-size", required_argument, NULL, OPT_CACHE_SIZE},
    {"events-keep", required_argument, NULL, OPT_EVENTS_KEEP},
    {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
    {"max-output-buffer", required_argument, NULL, OPT_MAX_OUTPUT_BUFFER},
    {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"request-timeout", required_argument, NULL, OPT_REQUEST_TIMEOUT},
    {"max-instances", required_argument, NULL, OPT_MAX_INSTANCES},
    {"max-instances-per-service", required_argument, NULL, OPT_MAX_PER_SERVICE},
    {"max-instances-per-client", required_argument, NULL, OPT_MAX_PER_CLIENT},
    {"max-catalog-bytes", required_argument, NULL, OPT_MAX_CATALOG_BYTES},
    {"check-allow", required_argument, NULL, OPT_CHECK_ALLOW},
    {"check-deny", required_argument, NULL, OPT_CHECK_DENY},
    {"dns", required_argument, NULL, OPT_DNS},
    {"dns-domain", required_argument, NULL, OPT_DNS_DOMAIN},
    {"dns-ttl", required_argument, NULL, OPT_DNS_TTL},
    {"http", required_argument, NULL, OPT_HTTP},
    {"node-name", required_argument, NULL, OPT_NODE_NAME},
    {"auth-token-file", required_argument, NULL, OPT_AUTH_FILE},
    {"auth-lookups", no_argument, NULL, OPT_AUTH_LOOKUPS},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* Where the value being applied came from: "" for the command line, "FILE:LINE" while
 * read_config applies a line (the usage errors then name it). */
static char flag_origin[4200];

/* What starts a line of ours on stderr: the journal's error priority when stderr is the
 * journal (so `journalctl -p err` shows why a start failed), else nothing. */
static const char *err_prefix(void) {
    return alog_stderr_is_journal() ? "<3>" : "";
}

static void print_origin(void) {
    fprintf(stderr, "%sregistryd: ", err_prefix());
    if (flag_origin[0] != '\0')
        fprintf(stderr, "%s: ", flag_origin);
}

static void die_usage(const char *fmt, const char *a, const char *b) {
    print_origin();
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see registryd --help)\n");
    exit(2);
}

static long long int_flag(const char *name, const char *v, long long min, long long max) {
    long long x;
    if (util_parse_int(v, min, max, &x) != 0) {
        char range[80];
        snprintf(range, sizeof(range), "a whole number from %lld to %lld", min, max);
        print_origin();
        fprintf(stderr, "--%s: \"%s\" is not %s (see registryd --help)\n", name, v, range);
        exit(2);
    }
    return x;
}

static uint64_t secs_flag(const char *name, const char *v, double min, double max) {
    uint64_t ms;
    if (util_parse_seconds(v, min, max, &ms) != 0) {
        print_origin();
        fprintf(stderr, "--%s: \"%s\" is not a number of seconds from %g to %g "
                        "(see registryd --help)\n", name, v, min, max);
        exit(2);
    }
    return ms;
}

/* Applies one option of the table, its value (if it takes one) in getopt's optarg: the
 * config file reader sets optarg too, so each option is written once for both. Exits 2
 * on a bad value. --config, --help and --version are parse_flags' own. */
static void apply_flag(config *cfg, int opt) {
    switch (opt) {
    case OPT_LISTEN:
        if (util_split_hostport(optarg, cfg->line.listen_host, sizeof(cfg->line.listen_host),
                                &cfg->line.listen_port) != 0)
            die_usage("--listen: \"%s\" is not HOST:PORT or [IPV6]:PORT%s", optarg, "");
        break;
    case OPT_DB:
        cfg->db_path = optarg;
        cfg->db_given = 1;
        break;
    case OPT_ETCD:
        if (*optarg == '\0')
            die_usage("--etcd: no endpoint given (e.g. http://127.0.0.1:2379)%s%s", "", "");
        cfg->etcd = optarg;
        break;
    case OPT_ETCD_PREFIX:
        if (*optarg == '\0' || strlen(optarg) > 200)
            die_usage("--etcd-prefix: \"%s\" must be 1-200 bytes%s", optarg, "");
        cfg->etcd_prefix = optarg;
        break;
    case OPT_ETCD_TIMEOUT:
        if (util_parse_seconds(optarg, 0.1, 60, &cfg->etcd_timeout_ms) != 0)
            die_usage("--etcd-timeout: \"%s\" is not a number of seconds from 0.1 to 60%s",
                      optarg, "");
        break;
    case OPT_SYNC:
        if (strcmp(optarg, "full") == 0)
            cfg->sync_full = 1;
        else if (strcmp(optarg, "normal") == 0)
            cfg->sync_full = 0;
        else
            die_usage("--sync: \"%s\" is not full or normal%s", optarg, "");
        break;
    case OPT_LOG: cfg->log_path = optarg; break;
    case OPT_LOG_LEVEL:
        if ((cfg->log_level = alog_level_parse(optarg)) < 0)
            die_usage("--log-level: \"%s\" is not debug, info, warn or error%s", optarg, "");
        break;
    case OPT_LOG_LOOKUPS: cfg->core.log_lookups = 1; break;
    case OPT_LOG_LOOKUPS_INTERVAL:
        cfg->core.log_lookups_interval_ms = secs_flag("log-lookups-interval", optarg, 0.1, 86400);
        break;
    case OPT_CHECK_INTERVAL:
        cfg->core.check_interval_ms = secs_flag("check-interval", optarg, 0.01, 86400);
        break;
    case OPT_CHECK_TIMEOUT:
        cfg->core.check_timeout_ms = secs_flag("check-timeout", optarg, 0.01, 86400);
        cfg->check_timeout_given = 1;
        break;
    case OPT_MAX_FAILURES: cfg->core.max_failures = int_flag("max-failures", optarg, 1, 1000); break;
    case OPT_RISE: cfg->core.rise = int_flag("rise", optarg, 1, 1000); break;
    case OPT_CHECK_CONCURRENCY:
        cfg->core.check_concurrency = int_flag("check-concurrency", optarg, 1, 100000);
        break;
    case OPT_PRESERVE_MIN: cfg->core.preserve_min = int_flag("preserve-min", optarg, 0, 1LL << 40); break;
    case OPT_PRESERVE_THRESHOLD: {
        uint64_t permille;
        if (util_parse_seconds(optarg, 0, 100, &permille) != 0)
            die_usage("--preserve-threshold: \"%s\" is not a percentage from 0 to 100%s",
                      optarg, "");
        cfg->core.preserve_threshold = (double)permille / 100000.0;
        break;
    }
    case OPT_CACHE_SIZE: cfg->core.cache_size = int_flag("cache-size", optarg, 0, 1LL << 30); break;
    case OPT_EVENTS_KEEP: cfg->events_keep = int_flag("events-keep", optarg, 1, 1LL << 40); break;
    case OPT_MAX_CONNS: cfg->line.max_conns = int_flag("max-conns", optarg, 1, 1000000); break;
    case OPT_MAX_OUTPUT_BUFFER:
        cfg->line.max_output_buffer = int_flag("max-output-buffer", optarg, 4096, 1LL << 40);
        break;
    case OPT_IDLE_TIMEOUT:
        cfg->line.idle_timeout_ms = secs_flag("idle-timeout", optarg, 0, 86400 * 365);
        break;
    case OPT_REQUEST_TIMEOUT:
        cfg->line.request_timeout_ms = secs_flag("request-timeout", optarg, 0, 86400);
        break;
    case OPT_MAX_INSTANCES:
        cfg->core.max_instances = int_flag("max-instances", optarg, 1, 1LL << 40);
        break;
    case OPT_MAX_PER_SERVICE:
        cfg->core.max_instances_per_service = int_flag("max-instances-per-service", optarg, 1, 1LL << 40);
        break;
    case OPT_MAX_PER_CLIENT:
        cfg->core.max_instances_per_client =
            int_flag("max-instances-per-client", optarg, 1, 1LL << 40);
        break;
    case OPT_MAX_CATALOG_BYTES:
        cfg->core.max_catalog_bytes = int_flag("max-catalog-bytes", optarg, 4096, 1LL << 50);
        break;
    case OPT_CHECK_ALLOW:
    case OPT_CHECK_DENY: {
        char msg[160];
        cidr_list *l = opt == OPT_CHECK_ALLOW ? &cfg->core.check_rule.allow
                                              : &cfg->core.check_rule.deny;
        if (cidr_parse_list(optarg, l, msg, sizeof(msg)) != 0)
            die_usage("--check-%s: %s", opt == OPT_CHECK_ALLOW ? "allow" : "deny", msg);
        break;
    }
    case OPT_DNS:
        if (util_split_hostport(optarg, cfg->dns.host, sizeof(cfg->dns.host), &cfg->dns.port) != 0)
            die_usage("--dns: \"%s\" is not HOST:PORT or [IPV6]:PORT%s", optarg, "");
        cfg->dns_on = 1;
        break;
    case OPT_DNS_DOMAIN: {
        size_t n = strlen(optarg);
        while (n > 0 && optarg[n - 1] == '.')
            n--;
        if (n == 0 || n >= sizeof(cfg->dns.domain) - 1 || strspn(optarg, "abcdefghijklmnopqrstuvwxyz"
                                                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                                   "0123456789-.") < n)
            die_usage("--dns-domain: \"%s\" is not a domain name%s", optarg, "");
        snprintf(cfg->dns.domain, sizeof(cfg->dns.domain), "%.*s", (int)n, optarg);
        dns_name apex;
        if (dns_classify(cfg->dns.domain, cfg->dns.domain, NULL, NULL, &apex) != DNS_NAME_APEX)
            die_usage("--dns-domain: \"%s\" is not a domain name%s", optarg, "");
        for (char *p = cfg->dns.domain; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        break;
    }
    case OPT_HTTP:
        if (util_split_hostport(optarg, cfg->http.host, sizeof(cfg->http.host), &cfg->http.port) != 0)
            die_usage("--http: \"%s\" is not HOST:PORT or [IPV6]:PORT%s", optarg, "");
        cfg->http_on = 1;
        break;
    case OPT_NODE_NAME: {
        size_t n = strlen(optarg);
        if (n == 0 || n >= sizeof(cfg->http.node_name) ||
            strspn(optarg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != n)
            die_usage("--node-name: \"%s\" must be 1-63 characters of [A-Za-z0-9._-]%s", optarg, "");
        snprintf(cfg->http.node_name, sizeof(cfg->http.node_name), "%s", optarg);
        cfg->node_name_given = 1;
        break;
    }
    case OPT_DNS_TTL: cfg->dns.ttl = (uint32_t)int_flag("dns-ttl", optarg, 0, 86400); break;
    case OPT_AUTH_FILE: cfg->auth_token_file = optarg; break;
    case OPT_AUTH_LOOKUPS: cfg->core.auth_lookups = 1; break;
    default:
        break;
    }
}

#define CONFIG_MAX_BYTES (1 << 20) /* a settings file larger than this is a mistake */

static void die_config(const char *path, int lineno, const char *fmt, const char *a,
                       const char *b) {
    fprintf(stderr, "%sregistryd: %s:%d: ", err_prefix(), path, lineno);
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    exit(2);
}

/* Reads the settings file at path into cfg through apply_flag. A line is `name value`
 * (name: a long flag without "--"; value: the rest of the line, surrounding blanks
 * dropped), `name` or `name yes|no` for a flag that takes no value, a comment whose
 * first non-blank character is '#', or blank. The text is kept in cfg->config_text
 * (settings point into it). Exits 2 naming path:line on an unknown name or bad value,
 * or naming the file when it cannot be read. */
static void read_config(const char *path, config *cfg) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "%sregistryd: --config: cannot read %s: %s\n", err_prefix(), path,
                strerror(errno));
        exit(2);
    }
    char *text = malloc(CONFIG_MAX_BYTES + 1);
    if (text == NULL) {
        fprintf(stderr, "%sregistryd: out of memory reading %s\n", err_prefix(), path);
        exit(1);
    }
    size_t n = fread(text, 1, CONFIG_MAX_BYTES + 1, f);
    int rerr = ferror(f) ? errno : 0;
    fclose(f);
    if (rerr != 0 || n > CONFIG_MAX_BYTES) {
        fprintf(stderr, "%sregistryd: --config: cannot read %s: %s\n", err_prefix(), path,
                rerr ? strerror(rerr) : "larger than 1 MiB");
        free(text);
        exit(2);
    }
    text[n] = '\0';
    cfg->config_text = text;
    int lineno = 0;
    for (char *line = text, *next; line < text + n; line = next) {
        char *nl = memchr(line, '\n', (size_t)(text + n - line));
        next = nl ? nl + 1 : text + n;
        if (nl)
            *nl = '\0';
        lineno++;
        if (strlen(line) != (size_t)((nl ? nl : text + n) - line))
            die_config(path, lineno, "a NUL byte: not a text file%s%s", "", "");
        char *e = line + strlen(line);
        while (e > line && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            *--e = '\0';
        char *name = line + strspn(line, " \t");
        if (*name == '\0' || *name == '#')
            continue;
        char *value = name + strcspn(name, " \t");
        if (*value != '\0') {
            *value++ = '\0';
            value += strspn(value, " \t");
        }
        const struct option *o = options;
        while (o->name != NULL && strcmp(o->name, name) != 0)
            o++;
        if (o->name == NULL || o->val == OPT_HELP || o->val == OPT_VERSION ||
            o->val == OPT_CONFIG) {
            if (strncmp(name, "--", 2) == 0)
                die_config(path, lineno, "unknown setting \"%s\" (write names without \"--\")",
                           name, "");
            die_config(path, lineno, "unknown setting \"%s\"%s", name, "");
        }
        if (o->has_arg == no_argument) {
            if (strcmp(value, "no") == 0)
                continue;
            if (*value != '\0' && strcmp(value, "yes") != 0)
                die_config(path, lineno, "%s takes no value, or yes or no, not \"%s\"", name, value);
        } else if (*value == '\0') {
            die_config(path, lineno, "%s needs a value%s", name, "");
        }
        snprintf(flag_origin, sizeof(flag_origin), "%s:%d", path, lineno);
        optarg = value;
        apply_flag(cfg, o->val);
        flag_origin[0] = '\0';
    }
}

static void parse_flags(int argc, char **argv, config *cfg) {
    core_config_defaults(&cfg->core);
    line_config_defaults(&cfg->line);
    dns_config_defaults(&cfg->dns);
    http_config_defaults(&cfg->http);
    cfg->db_path = "registry.db";
    cfg->log_level = ALOG_INFO;
    cfg->sync_full = 1;
    cfg->events_keep = 100000;
    int opt;
    const char *config_path = NULL;
    opterr = 0;
    /* First pass: --help, --version and --config only, so the file's settings go in
     * before the command line's, wherever --config stands. */
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == OPT_HELP) {
            usage(stdout);
            exit(0);
        }
        if (opt == OPT_VERSION) {
            printf("registryd %s\n", REGISTRY_VERSION);
            exit(0);
        }
        if (opt == OPT_CONFIG)
            config_path = optarg;
    }
    if (config_path != NULL)
        read_config(config_path, cfg);
    optind = 0; /* glibc: 0 starts a new scan */
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == '?') {
            if (optopt >= OPT_LISTEN) /* one of ours, without its value */
                die_usage("option %s needs a value%s", argv[optind - 1], "");
            die_usage("unknown option \"%s\"%s", argv[optind - 1], "");
        }
        apply_flag(cfg, opt);
    }
    if (optind < argc)
        die_usage("unexpected argument \"%s\"%s", argv[optind], "");
    if (cfg->core.check_timeout_ms > cfg->core.check_interval_ms) {
        if (cfg->check_timeout_given)
            die_usage("--check-timeout must not be longer than --check-interval%s%s", "", "");
        cfg->core.check_timeout_ms = cfg->core.check_interval_ms; /* the default shrinks to fit */
    }
    if (cfg->etcd && cfg->db_given)
        die_usage("--etcd and --db both given: a node keeps its registry either in an etcd"
                  " cluster shared with other nodes (--etcd) or in a local SQLite file (--db),"
                  " not both%s%s", "", "");
    if (cfg->etcd) {
        size_t n = strlen(cfg->etcd) + 6;
        if ((cfg->store_spec = malloc(n)) == NULL) {
            fprintf(stderr, "registryd: out of memory\n");
            exit(1);
        }
        snprintf(cfg->store_spec, n, "etcd:%s", cfg->etcd);
        cfg->db_path = cfg->store_spec;
        if (!cfg->node_name_given) { /* several nodes on one host must differ */
            char h[sizeof(cfg->http.node_name)];
            snprintf(h, sizeof(h), "%s", cfg->http.node_name);
            snprintf(cfg->http.node_name, sizeof(cfg->http.node_name), "%.40s-%d", h,
                     cfg->line.listen_port ? cfg->line.listen_port : (int)getpid());
        }
    }
    cfg->core.node_name = cfg->http.node_name;
    cfg->core.store_timeout_ms = cfg->etcd_timeout_ms ? cfg->etcd_timeout_ms : 3000;
    if (cfg->core.auth_lookups && !cfg->auth_token_file)
        die_usage("--auth-lookups needs --auth-token-file%s%s", "", "");
}

/* Reads the shared secret; keeps only its hash. */
static int load_secret(config *cfg, char *err, size_t errlen) {
    FILE *f = fopen(cfg->auth_token_file, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read --auth-token-file %s: %s", cfg->auth_token_file,
                 strerror(errno));
        return -1;
    }
    char buf[4097];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *s = buf, *e = buf + n;
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        e--;
    if (e == s) {
        snprintf(err, errlen, "--auth-token-file %s is empty", cfg->auth_token_file);
        return -1;
    }
    util_sha256(s, (size_t)(e - s), cfg->core.auth_hash);
    memset(buf, 0, sizeof(buf));
    cfg->core.has_auth = 1;
    return 0;
}

/* --- stopping ---------------------------------------------------------------------------- */

/* The last handles: after this the loop ends by itself. */
static void close_signals(void *ud) {
    registryd *d = ud;
    if (uv_is_closing((uv_handle_t *)&d->sigint))
        return;
    core_close(d->core);
    alog_detach(d->log); /* what is still pending goes out synchronously at close */
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sighup, NULL);
}

/* After the line front-end: the DNS front-end, the HTTP front-end, then the rest. */
static void close_http(void *ud) {
    registryd *d = ud;
    http_close_all(d->http, 5000, close_signals, d);
}

static void close_dns(void *ud) {
    registryd *d = ud;
    dns_close_all(d->dns, 5000, d->http ? close_http : close_signals, d);
}

/* Called whenever the core's writes go idle while stopping: once nothing is in flight,
 * close every connection, then everything else; the loop then ends by itself. */
static void maybe_finish(void *ud) {
    registryd *d = ud;
    if (d->stopping != 1 || !core_idle(d->core) || line_busy(d->line) ||
        (d->http && http_busy(d->http)))
        return;
    d->stopping = 3;
    alog_event(d->log, ALOG_INFO, "stopped",
               json_pack("{s:I}", "requests", (json_int_t)line_requests(d->line)));
    line_close_all(d->line, 5000,
                   d->dns ? close_dns : d->http ? close_http : close_signals, d);
}

static void on_signal(uv_signal_t *s, int signum) {
    registryd *d = s->data;
    if (signum == SIGHUP) {
        sd_notify(0, "RELOADING=1");
        int rc = alog_reopen(d->log);
        alog_event(d->log, rc ? ALOG_ERROR : ALOG_INFO, "log_reopened",
                   rc ? json_pack("{s:s}", "error", strerror(-rc)) : NULL);
        sd_notify(0, "READY=1");
        return;
    }
    if (d->stopping) {
        alog_attach(d->log, NULL); /* write what is buffered now, synchronously */
        alog_flush(d->log);
        fprintf(stderr, "registryd: second signal: exiting now\n");
        _exit(1);
    }
    d->stopping = 1;
    sd_notify(0, "STOPPING=1");
    line_stop_accepting(d->line);
    if (d->dns)
        dns_stop_accepting(d->dns);
    if (d->http)
        http_stop_accepting(d->http);
    core_on_idle(d->core, maybe_finish, d);
    core_stop(d->core, json_pack("{s:s}", "signal", signum == SIGINT ? "SIGINT" : "SIGTERM"));
    maybe_finish(d); /* in case the stop event could not be queued */
}

static void close_walk(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* --- main ---------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    registryd d;
    memset(&d, 0, sizeof(d));
    parse_flags(argc, argv, &d.cfg);
    signal(SIGPIPE, SIG_IGN);

    char err[512], bound[300], dns_bound[300] = "", http_bound[300] = "";
    int rc = 1;
    int loop_ready = 0;
    uv_loop_t loop;
    if (d.cfg.auth_token_file && load_secret(&d.cfg, err, sizeof(err)) != 0)
        goto fail;
    if (alog_open(d.cfg.log_path, d.cfg.log_level, &d.log, err, sizeof(err)) != 0)
        goto fail;
    store_options sopt = {.sync_full = d.cfg.sync_full, .events_keep = d.cfg.events_keep,
                          .node_name = d.cfg.http.node_name, .prefix = d.cfg.etcd_prefix,
                          .timeout_ms = (int64_t)d.cfg.core.store_timeout_ms};
    if (store_open(d.cfg.db_path, &sopt, &d.store, err, sizeof(err)) != 0)
        goto fail;
    if (uv_loop_init(&loop) != 0) {
        snprintf(err, sizeof(err), "cannot create the event loop");
        goto fail;
    }
    loop_ready = 1;
    d.loop = &loop;
    d.cfg.line.shared_conns = d.cfg.http.shared_conns = &d.open_conns;
    d.cfg.http.max_conns = d.cfg.line.max_conns;
    d.cfg.http.max_output_buffer = d.cfg.line.max_output_buffer;
    d.cfg.http.idle_timeout_ms = d.cfg.line.idle_timeout_ms;
    d.cfg.http.request_timeout_ms = d.cfg.line.request_timeout_ms;
    d.cfg.http.start_seq = (uint64_t)store_last_seq(d.store);
    if (core_new(&loop, &d.cfg.core, d.store, d.log, &d.core, err, sizeof(err)) != 0 ||
        core_load(d.core, err, sizeof(err)) != 0 ||
        line_new(&loop, &d.cfg.line, d.core, &d.line, err, sizeof(err)) != 0)
        goto fail;
    alog_attach(d.log, &loop);
    if (line_listen(d.line, bound, sizeof(bound), err, sizeof(err)) != 0)
        goto fail;
    if (d.cfg.dns_on &&
        (dns_new(&loop, &d.cfg.dns, d.core, &d.dns, err, sizeof(err)) != 0 ||
         dns_listen(d.dns, dns_bound, sizeof(dns_bound), err, sizeof(err)) != 0))
        goto fail;
    /* Before core_start: the HTTP front-end follows the bus from the start event on. */
    if (d.cfg.http_on &&
        (http_new(&loop, &d.cfg.http, d.core, &d.http, err, sizeof(err)) != 0 ||
         http_listen(d.http, http_bound, sizeof(http_bound), err, sizeof(err)) != 0))
        goto fail;
    uv_signal_init(&loop, &d.sigint);
    uv_signal_init(&loop, &d.sigterm);
    uv_signal_init(&loop, &d.sighup);
    d.sigint.data = d.sigterm.data = d.sighup.data = &d;
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_signal_start(&d.sighup, on_signal, SIGHUP);

    const char *host = d.cfg.line.listen_host;
    if (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "::1") != 0 &&
        strcmp(host, "localhost") != 0 && !d.cfg.core.has_auth)
        alog_event(d.log, ALOG_WARN, "insecure",
                   json_pack("{s:s}", "msg", "listening beyond loopback without "
                                             "--auth-token-file: anyone who can reach this port "
                                             "can register services"));
    core_start(d.core, json_pack("{s:s, s:s, s:s, s:I, s:I}", "version", REGISTRY_VERSION,
                                 "listen", bound, "db", d.cfg.db_path, "instances",
                                 (json_int_t)cat_instances(core_catalog(d.core)), "pid",
                                 (json_int_t)getpid()));
    printf("listening on %s\n", bound);
    if (d.dns)
        printf("dns on %s\n", dns_bound);
    if (d.http)
        printf("http on http://%s/\n", http_bound);
    fflush(stdout);
    /* systemd's Type=notify: ready now that every port is bound and the database loaded.
     * Without NOTIFY_SOCKET this does nothing. */
    sd_notifyf(0, "READY=1\nSTATUS=listening on %s", bound);

    uv_run(&loop, UV_RUN_DEFAULT);
    rc = 0;
    err[0] = '\0';
fail:
    if (rc != 0) {
        /* One line, whatever the message is made of (SQLite's integrity text has newlines). */
        for (char *p = err; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        fprintf(stderr, "%sregistryd: %s\n", err_prefix(), err);
    }
    if (loop_ready) {
        /* Let every handle close (start-up failures leave some open). */
        if (rc != 0)
            uv_walk(&loop, close_walk, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&loop) != 0 && rc == 0)
            alog_msg(d.log, ALOG_WARN, "event loop closed with handles still open");
    }
    line_free(d.line);
    dns_free(d.dns);
    http_free(d.http);
    core_free(d.core);
    store_close(d.store);
    alog_close(d.log);
    free(d.cfg.config_text);
    free(d.cfg.store_spec);
    return rc;
}
