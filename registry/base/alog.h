/* SPDX-License-Identifier: BSD-2-Clause */
/* alog.h — registryd's activity log: one JSON object per line
 * {"ts","level","event", ...fields}, to a file or stderr.
 *
 * Lines are appended to a memory buffer; alog_flush, which the loop calls once per
 * iteration, hands what is there to libuv's threadpool (uv_fs_write) and goes on
 * filling a second buffer, so neither a request nor the loop ever waits on the disk
 * (a write(2) to a file can block in the filesystem). Before a loop is attached (start-up)
 * and at close, writes are synchronous. The buffer is bounded: past ALOG_MAX_BUFFER bytes
 * lines are dropped and counted (reported by the next line that fits).
 *
 * When the log is stderr and stderr is the journal (JOURNAL_STREAM names it), each line
 * starts with its syslog priority, <7> debug, <6> info, <4> warn, <3> error, which
 * journald strips and keeps as the entry's priority. */
#ifndef REGISTRY_ALOG_H
#define REGISTRY_ALOG_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#define ALOG_MAX_BUFFER (8u << 20)

enum alog_level { ALOG_DEBUG = 0, ALOG_INFO, ALOG_WARN, ALOG_ERROR };

typedef struct alog alog;

/* Opens the log: path NULL or "-" means stderr. Returns 0 or -errno (message in err). */
int alog_open(const char *path, int min_level, alog **out, char *err, size_t errlen);
/* From now on, flushes go through this loop's threadpool (in batches: at 64 KiB, or
 * 50 ms after the first pending line). NULL: synchronous again (see alog_detach). */
void alog_attach(alog *l, uv_loop_t *loop);
/* Back to synchronous writes; closes the batching timer (call before the loop ends). */
void alog_detach(alog *l);
/* Flushes (synchronously) and closes; the loop must not be running a flush (run it to
 * completion first). alog_close(NULL) is a no-op. */
void alog_close(alog *l);
/* Reopens the file by name (for log rotation: SIGHUP). Returns 0 or -errno. */
int alog_reopen(alog *l);
/* 1 when stderr is the journal's stream: JOURNAL_STREAM is DEV:INODE of fd 2. */
int alog_stderr_is_journal(void);
/* Parses "debug|info|warn|error"; -1 when unknown. */
int alog_level_parse(const char *s);
/* Would a line at this level be written? */
int alog_enabled(const alog *l, int level);

/* Logs one event. fields: a JSON object whose members are appended after ts/level/event
 * (stolen: the function takes the reference; may be NULL). */
void alog_event(alog *l, int level, const char *event, json_t *fields);
/* Logs one event whose members are already JSON text: members[len] is what goes between
 * the braces after ts/level/event ("\"k\":1,\"s\":\"x\"", or empty), valid JSON members
 * the caller wrote (a hot path: no JSON object is built). */
void alog_event_text(alog *l, int level, const char *event, const char *members, size_t len);
/* Logs a free-text message as event "message" with a "msg" field (printf-style). */
void alog_msg(alog *l, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Writes buffered lines out. Returns 0 or -errno. */
int alog_flush(alog *l);
/* Lines dropped because the buffer was full. */
uint64_t alog_dropped(const alog *l);

#endif
