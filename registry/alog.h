/* alog.h — registryd's activity log: one JSON object per line
 * {"ts","level","event", ...fields}, to a file or stderr.
 *
 * Lines are appended to a memory buffer and written out by alog_flush, which the loop
 * calls once per iteration (before it polls), so a request never waits on the log and
 * many lines share one write(2). The buffer is bounded: past ALOG_MAX_BUFFER bytes
 * lines are dropped and counted (reported by the next line that fits), never blocking. */
#ifndef REGISTRY_ALOG_H
#define REGISTRY_ALOG_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define ALOG_MAX_BUFFER (8u << 20)

enum alog_level { ALOG_DEBUG = 0, ALOG_INFO, ALOG_WARN, ALOG_ERROR };

typedef struct alog alog;

/* Opens the log: path NULL or "-" means stderr. Returns 0 or -errno (message in err). */
int alog_open(const char *path, int min_level, alog **out, char *err, size_t errlen);
/* Flushes and closes. alog_close(NULL) is a no-op. */
void alog_close(alog *l);
/* Reopens the file by name (for log rotation: SIGHUP). Returns 0 or -errno. */
int alog_reopen(alog *l);
/* Parses "debug|info|warn|error"; -1 when unknown. */
int alog_level_parse(const char *s);
/* Would a line at this level be written? */
int alog_enabled(const alog *l, int level);

/* Logs one event. fields: a JSON object whose members are appended after ts/level/event
 * (stolen: the function takes the reference; may be NULL). */
void alog_event(alog *l, int level, const char *event, json_t *fields);
/* Logs a free-text message as event "message" with a "msg" field (printf-style). */
void alog_msg(alog *l, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Writes buffered lines out. Returns 0 or -errno. */
int alog_flush(alog *l);
/* Lines dropped because the buffer was full. */
uint64_t alog_dropped(const alog *l);

#endif
