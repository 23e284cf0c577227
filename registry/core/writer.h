/* SPDX-License-Identifier: BSD-2-Clause */
/* writer.h — group commit: every durable change goes through here.
 *
 * Jobs are queued on the loop thread. While no commit is running, the queue is handed
 * to a libuv worker thread (uv_queue_work) that applies all its changes in ONE store
 * transaction; jobs queued meanwhile wait and form the next batch. So N writers arriving
 * together share one fsync, and the loop never waits on the disk. Completion callbacks
 * run on the loop thread, in submission order, after the commit: that is where the
 * caller applies the change to the catalog and acknowledges it.
 *
 * A job may also be a read of the events table (WJOB_EVENTS): it runs on the worker
 * after the batch's commit, so it sees every write submitted before it. */
#ifndef REGISTRY_WRITER_H
#define REGISTRY_WRITER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <jansson.h>

#include "base/hist.h"
#include "store/store.h"

enum wjob_kind { WJOB_APPLY, WJOB_EVENTS };

typedef struct wjob wjob;
typedef void (*wjob_done_cb)(wjob *job);

struct wjob {
    int kind;                   /* enum wjob_kind */
    store_change *changes;      /* APPLY: borrowed from the submitter until done */
    size_t n;
    /* EVENTS query */
    int64_t since;
    int limit;
    int tail;                   /* the newest `limit` events after since, not the oldest */
    int64_t before;             /* with tail: only seqs below it (0: no bound) */
    const char *service;        /* borrowed, may be NULL */
    json_t *events;             /* EVENTS result: new array, owned by the job's owner */
    /* result */
    int rc;                     /* 0, or STORE_EIO (the batch did not commit) */
    char err[STORE_ERR_LEN];
    wjob_done_cb done;          /* called on the loop thread */
    void *ud;                   /* the submitter's */
    wjob *next;                 /* queue link (writer-owned while queued) */
};

typedef struct writer writer;

typedef struct writer_stats {
    uint64_t commits;           /* transactions committed */
    uint64_t changes;           /* changes applied */
    uint64_t failures;          /* transactions that failed */
    size_t queued;              /* jobs waiting now */
    uint64_t max_batch;         /* largest batch so far (changes) */
    hist commit_seconds;        /* how long each committed batch took on the worker */
    hist batch_changes;         /* changes per committed batch */
} writer_stats;

/* A writer over st (borrowed; it must outlive the writer). NULL when out of memory. */
writer *writer_new(uv_loop_t *loop, store *st);
/* Frees the writer; it must be idle (writer_idle). writer_free(NULL) is a no-op. */
void writer_free(writer *w);
/* Queues a job; job->done will be called exactly once, on the loop thread. */
void writer_submit(writer *w, wjob *job);
/* Nothing queued and nothing running? */
int writer_idle(const writer *w);
/* Called (on the loop) each time the writer becomes idle: for shutdown. */
void writer_on_idle(writer *w, void (*cb)(void *ud), void *ud);
void writer_get_stats(const writer *w, writer_stats *st);
/* Closes the writer's timer (before the loop's last run; writer_free after). */
void writer_close(writer *w);

/* A shared store (store_shared): every committed batch is parked until the follower,
 * which applies all nodes' commits in revision order, reaches the batch's revision and
 * calls writer_own_commit; only then do its jobs complete (so a node's own writes reach
 * its catalog in the same order as everyone else's). on_parked(ud) runs when a batch
 * parks, or when a batch finished without parking (it failed: in doubt); after wait_ms a
 * parked batch completes anyway (it is committed). */
void writer_set_follow(writer *w, uint64_t wait_ms, void (*on_parked)(void *ud), void *ud);
/* The follower met this node's commit at rev. Returns 0 when its batch completed now
 * (or did already: nothing else to apply), 1 when a batch is still on its way to the
 * store (ask again after on_parked), -1 when it is no batch of this process (a commit
 * whose answer was lost, or an earlier process's): apply it like another node's. */
int writer_own_commit(writer *w, int64_t rev);
/* The JSON form of an event {seq, ts, event, service, id, host, port, detail}; detail is
 * always there ({} when the event has none).
 * New reference (NULL when out of memory). Thread-safe (used on the worker too). */
json_t *writer_event_json(const store_event *ev);

#endif
