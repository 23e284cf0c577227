/* alog.c — see alog.h. */
#include "alog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

struct alog {
    char *path;             /* owned; NULL = stderr */
    int fd;
    int min_level;
    char *buf;              /* pending bytes */
    size_t len, cap;
    uint64_t dropped;       /* lines lost to a full buffer, total */
    uint64_t dropped_unreported;
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

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
    if (path != NULL && strcmp(path, "-") != 0) {
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
    alog_flush(l);
    if (l->path != NULL && l->fd >= 0)
        close(l->fd);
    free(l->path);
    free(l->buf);
    free(l);
}

int alog_reopen(alog *l) {
    if (l->path == NULL)
        return 0;
    alog_flush(l);
    int fd = open_fd(l->path);
    if (fd < 0)
        return fd;
    close(l->fd);
    l->fd = fd;
    return 0;
}

int alog_enabled(const alog *l, int level) {
    return l != NULL && level >= l->min_level;
}

static void append(alog *l, const char *s, size_t n) {
    if (l->len + n > ALOG_MAX_BUFFER) {
        l->dropped++;
        l->dropped_unreported++;
        return;
    }
    if (l->len + n > l->cap) {
        size_t ncap = l->cap ? l->cap : 4096;
        while (ncap < l->len + n)
            ncap *= 2;
        char *nb = realloc(l->buf, ncap);
        if (nb == NULL) {
            l->dropped++;
            l->dropped_unreported++;
            return;
        }
        l->buf = nb;
        l->cap = ncap;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

void alog_event(alog *l, int level, const char *event, json_t *fields) {
    if (!alog_enabled(l, level)) {
        json_decref(fields);
        return;
    }
    char ts[UTIL_TIME_LEN];
    json_t *o = json_pack("{s:s, s:s, s:s}", "ts", util_rfc3339(util_now_ms(), ts), "level",
                          level_names[level], "event", event);
    if (o == NULL) {
        json_decref(fields);
        return;
    }
    if (fields != NULL) {
        json_object_update(o, fields);
        json_decref(fields);
    }
    if (l->dropped_unreported > 0) {
        json_object_set_new(o, "log_dropped", json_integer((json_int_t)l->dropped_unreported));
        l->dropped_unreported = 0;
    }
    char stackbuf[1024];
    size_t n = json_dumpb(o, stackbuf, sizeof(stackbuf) - 1, JSON_COMPACT);
    if (n > 0 && n < sizeof(stackbuf) - 1) {
        stackbuf[n] = '\n';
        append(l, stackbuf, n + 1);
    } else if (n > 0) {
        char *s = json_dumps(o, JSON_COMPACT);
        if (s != NULL) {
            append(l, s, strlen(s));
            append(l, "\n", 1);
            free(s);
        }
    }
    json_decref(o);
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

int alog_flush(alog *l) {
    size_t off = 0;
    while (off < l->len) {
        ssize_t w = write(l->fd, l->buf + off, l->len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int rc = -errno;
            /* Keep what was not written (EAGAIN on a pipe); drop on hard errors. */
            if (rc != -EAGAIN)
                off = l->len;
            memmove(l->buf, l->buf + off, l->len - off);
            l->len -= off;
            return rc;
        }
        off += (size_t)w;
    }
    l->len = 0;
    return 0;
}

uint64_t alog_dropped(const alog *l) {
    return l->dropped;
}
