/* SPDX-License-Identifier: BSD-2-Clause */
/* alog.c — see alog.h. */
#include "base/alog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"

#define ALOG_BATCH    (64u << 10)  /* write at once when this much is pending */
#define ALOG_DELAY_MS 50            /* else at most this late */

struct alog {
    char *path;             /* owned; NULL = stderr */
    int fd;
    uv_loop_t *loop;        /* NULL: synchronous writes */
    uv_timer_t timer;       /* writes out a small pending tail after ALOG_DELAY_MS */
    int timer_open;         /* timer initialised and not closed */
    uv_fs_t req;            /* the write in flight */
    int writing;            /* req is in flight */
    int reopen_pending;     /* SIGHUP arrived while writing */
    char *wbuf;             /* owned: the bytes being written */
    size_t wlen, woff, wcap;
    int min_level;
    ubuf buf;               /* pending bytes */
    uint64_t dropped;       /* lines lost to a full buffer, total */
    int64_t ts_ms;          /* the time ts holds, formatted */
    char ts[UTIL_TIME_LEN];
    uint64_t dropped_unreported;
    int journal;            /* stderr is the journal: each line starts with <N> */
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};
/* sd-daemon(3) prefixes: journald takes a line's priority from them, so
 * `journalctl -p warning` filters our lines. */
static const char *const level_prefixes[] = {"<7>", "<6>", "<4>", "<3>"};

int alog_stderr_is_journal(void) {
    /* systemd sets JOURNAL_STREAM=DEV:INODE of the stream it connected stdout/stderr
     * to; a match with our stderr (not inherited by something redirected since)
     * means journald reads it (systemd.exec(5)). */
    const char *e = getenv("JOURNAL_STREAM");
    if (e == NULL || *e == '\0')
        return 0;
    char *end;
    errno = 0;
    unsigned long long dev = strtoull(e, &end, 10);
    if (errno != 0 || end == e || *end != ':')
        return 0;
    const char *ino_s = end + 1;
    unsigned long long ino = strtoull(ino_s, &end, 10);
    if (errno != 0 || end == ino_s || *end != '\0')
        return 0;
    struct stat st;
    if (fstat(STDERR_FILENO, &st) != 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

int alog_level_parse(const char *s) {
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

static int open_fd(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    return fd < 0 ? -errno : fd;
}

int alog_open(const char *path, int min_level, alog **out, char *err, size_t errlen) {
    alog *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    l->min_level = min_level;
    l->fd = STDERR_FILENO;
    if (path == NULL || strcmp(path, "-") == 0)
        l->journal = alog_stderr_is_journal();
    else {
        if ((l->path = strdup(path)) == NULL) {
            free(l);
            return -ENOMEM;
        }
        l->fd = open_fd(path);
        if (l->fd < 0) {
            int rc = l->fd;
            snprintf(err, errlen, "cannot open log file %s: %s", path, strerror(-rc));
            free(l->path);
            free(l);
            return rc;
        }
    }
    *out = l;
    return 0;
}

void alog_close(alog *l) {
    if (l == NULL)
        return;
    l->loop = NULL; /* the loop has finished: the rest goes out synchronously */
    alog_flush(l);
    if (l->path != NULL && l->fd >= 0)
        close(l->fd);
    free(l->path);
    free(l->buf.p);
    free(l->wbuf);
    free(l);
}

static int reopen_now(alog *l) {
    int fd = open_fd(l->path);
    if (fd < 0)
        return fd;
    close(l->fd);
    l->fd = fd;
    return 0;
}

int alog_reopen(alog *l) {
    if (l->path == NULL)
        return 0;
    if (l->writing) { /* the write in flight still uses the old descriptor */
        l->reopen_pending = 1;
        return 0;
    }
    return reopen_now(l);
}

static void start_write(alog *l);

static void on_delay(uv_timer_t *t) {
    start_write(t->data);
}

void alog_attach(alog *l, uv_loop_t *loop) {
    if (loop == NULL) {
        alog_detach(l);
        return;
    }
    l->loop = loop;
    if (!l->timer_open && uv_timer_init(loop, &l->timer) == 0) {
        l->timer.data = l;
        l->timer_open = 1;
    }
}

void alog_detach(alog *l) {
    if (l->timer_open) {
        uv_close((uv_handle_t *)&l->timer, NULL);
        l->timer_open = 0;
    }
    l->loop = NULL;
}

int alog_enabled(const alog *l, int level) {
    return l != NULL && level >= l->min_level;
}

static void append(alog *l, const char *s, size_t n) {
    if (l->buf.len + n > ALOG_MAX_BUFFER || ubuf_add(&l->buf, s, n) != 0) {
        l->dropped++;
        l->dropped_unreported++;
    }
}

/* The start of a line: ts, level and event (the time is formatted once per millisecond;
 * the event name is one of ours, a literal). Its length, or -1 when it does not fit. */
static int line_head(alog *l, int level, const char *event, char *line, size_t size) {
    int64_t now = util_now_ms();
    if (now != l->ts_ms) {
        l->ts_ms = now;
        util_rfc3339(now, l->ts);
    }
    int n = snprintf(line, size, "%s{\"ts\":\"%s\",\"level\":\"%s\",\"event\":\"%s\"",
                     l->journal ? level_prefixes[level] : "", l->ts, level_names[level], event);
    return n < 0 || (size_t)n >= size ? -1 : n;
}

void alog_event(alog *l, int level, const char *event, json_t *fields) {
    if (!alog_enabled(l, level)) {
        json_decref(fields);
        return;
    }
    if (l->dropped_unreported > 0) {
        if (fields == NULL)
            fields = json_object();
        if (fields != NULL)
            json_object_set_new(fields, "log_dropped", json_integer((json_int_t)l->dropped_unreported));
        l->dropped_unreported = 0;
    }
    /* The fields go through jansson. */
    char line[1024];
    int n = line_head(l, level, event, line, sizeof(line));
    if (n < 0) {
        json_decref(fields);
        return;
    }
    size_t len = (size_t)n, room = sizeof(line) - len - 1;
    size_t fl = fields && json_object_size(fields) ? json_dumpb(fields, line + len, room, JSON_COMPACT)
                                                   : 0;
    if (fl > 0 && fl <= room) {
        line[len] = ','; /* the fields' own '{' becomes the separator */
        len += fl;
        line[len++] = '\n';
        append(l, line, len);
    } else if (fl > room) {
        char *f = json_dumps(fields, JSON_COMPACT);
        if (f != NULL) {
            f[0] = ',';
            append(l, line, len);
            append(l, f, strlen(f));
            append(l, "\n", 1);
            free(f);
        }
    } else {
        line[len++] = '}';
        line[len++] = '\n';
        append(l, line, len);
    }
    json_decref(fields);
}

void alog_event_text(alog *l, int level, const char *event, const char *members, size_t len) {
    if (!alog_enabled(l, level))
        return;
    if (l->dropped_unreported > 0) { /* rare: the general path adds the count */
        json_error_t e;
        char *wrapped = malloc(len + 3);
        json_t *fields = NULL;
        if (wrapped != NULL) {
            wrapped[0] = '{';
            memcpy(wrapped + 1, members, len);
            wrapped[len + 1] = '}';
            wrapped[len + 2] = '\0';
            fields = json_loads(wrapped, 0, &e);
            free(wrapped);
        }
        alog_event(l, level, event, fields);
        return;
    }
    char line[1024];
    int n = line_head(l, level, event, line, sizeof(line));
    if (n < 0)
        return;
    size_t used = (size_t)n;
    if (used + len + 3 <= sizeof(line)) {
        if (len > 0) {
            line[used++] = ',';
            memcpy(line + used, members, len);
            used += len;
        }
        line[used++] = '}';
        line[used++] = '\n';
        append(l, line, used);
    } else {
        append(l, line, used);
        append(l, ",", 1);
        append(l, members, len);
        append(l, "}\n", 2);
    }
}

void alog_msg(alog *l, int level, const char *fmt, ...) {
    if (!alog_enabled(l, level))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    alog_event(l, level, "message", json_pack("{s:s}", "msg", msg));
}

/* Writes buf[len] synchronously (start-up, exit). */
static int write_all(int fd, const char *buf, size_t len) {
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        off += (size_t)w;
    }
    return 0;
}

static void on_written(uv_fs_t *req) {
    alog *l = req->data;
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    l->writing = 0;
    if (r > 0)
        l->woff += (size_t)r;
    if (r < 0 || l->woff >= l->wlen) /* done, or a hard error: drop the rest */
        l->wlen = l->woff = 0;
    if (l->reopen_pending) {
        l->reopen_pending = 0;
        reopen_now(l);
    }
    if (l->wlen > l->woff)
        start_write(l);
    else if (l->buf.len > 0 && l->loop != NULL)
        alog_flush(l);
}

/* Hands the pending bytes to the threadpool, swapping buffers. */
static void start_write(alog *l) {
    if (l->writing || l->loop == NULL)
        return;
    if (l->timer_open)
        uv_timer_stop(&l->timer);
    if (l->wlen == l->woff) {
        if (l->buf.len == 0)
            return;
        char *tmp = l->wbuf;
        size_t tcap = l->wcap;
        l->wbuf = l->buf.p;
        l->wcap = l->buf.cap;
        l->wlen = l->buf.len;
        l->woff = 0;
        l->buf = (ubuf){tmp, 0, tcap};
    }
    uv_buf_t b = uv_buf_init(l->wbuf + l->woff, (unsigned)(l->wlen - l->woff));
    l->req.data = l;
    if (uv_fs_write(l->loop, &l->req, l->fd, &b, 1, -1, on_written) == 0)
        l->writing = 1;
    else
        l->wlen = l->woff = 0;
}

int alog_flush(alog *l) {
    if (l->loop != NULL) {
        /* Batch: one threadpool write per ALOG_BATCH bytes or per ALOG_DELAY_MS, not one
         * per loop iteration (thousands of wake-ups a second under load). */
        if (l->buf.len >= ALOG_BATCH || !l->timer_open)
            start_write(l);
        else if (l->buf.len > 0 && !uv_is_active((uv_handle_t *)&l->timer))
            uv_timer_start(&l->timer, on_delay, ALOG_DELAY_MS, 0);
        return 0;
    }
    int rc = 0;
    if (l->wlen > l->woff)
        rc = write_all(l->fd, l->wbuf + l->woff, l->wlen - l->woff);
    l->wlen = l->woff = 0;
    if (rc == 0 && l->buf.len > 0)
        rc = write_all(l->fd, l->buf.p, l->buf.len);
    l->buf.len = 0;
    return rc;
}

uint64_t alog_dropped(const alog *l) {
    return l->dropped;
}
