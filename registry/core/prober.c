/* SPDX-License-Identifier: BSD-2-Clause */
/* prober.c — TCP probes on their own thread and loop (prober.h).
 *
 * Two queues under one mutex: jobs submitted (loop thread -> prober) and jobs finished
 * (prober -> loop thread), each with a uv_async_t to wake the other side. A job's libuv
 * handles live on the prober's loop only; the loop thread touches a job only before it
 * is queued in and after it is queued out.
 */
#include "core/prober.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct job {
    prober *pr;
    void *tag;
    char host[256];
    int port;
    uint64_t timeout_ms;
    /* the outcome */
    int result, denied, connected;
    char why[160];
    /* prober side */
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    int open_handles, gai_pending, finished, dropped;
    struct job *next;               /* in a queue, or the prober's active list */
    struct job *aprev, *anext;      /* the prober's active list */
} job;

struct prober {
    uv_loop_t *main;
    uv_async_t results;             /* on the caller's loop */
    prober_done done;
    void *ud;
    const cidr_rule *rule;
    uv_thread_t thread;
    int thread_started;
    uv_loop_t loop;                 /* the prober's own */
    uv_async_t wake;                /* on the prober's loop: jobs or stop */
    uv_mutex_t mu;
    job *in_head, *in_tail, *out_head, *out_tail;
    int stop;
    job *active;                    /* prober side: started, not finished */
};

/* --- the prober's thread ------------------------------------------------------------------ */

static void job_release(job *j) {
    if (j->open_handles > 0 || j->gai_pending)
        return;
    prober *pr = j->pr;
    if (j->dropped) {
        free(j);
        return;
    }
    uv_mutex_lock(&pr->mu);
    j->next = NULL;
    if (pr->out_tail)
        pr->out_tail->next = j;
    else
        pr->out_head = j;
    pr->out_tail = j;
    uv_mutex_unlock(&pr->mu);
    uv_async_send(&pr->results);
}

static void handle_closed(uv_handle_t *h) {
    job *j = h->data;
    j->open_handles--;
    job_release(j);
}

static int local_error(int status) {
    return status == UV_EMFILE || status == UV_ENFILE || status == UV_ENOBUFS ||
           status == UV_ENOMEM || status == UV_EAI_MEMORY;
}

static void finish(job *j, int result, const char *why) {
    if (j->finished)
        return;
    j->finished = 1;
    j->result = result;
    snprintf(j->why, sizeof(j->why), "%s", why);
    prober *pr = j->pr;
    if (j->aprev)
        j->aprev->anext = j->anext;
    else
        pr->active = j->anext;
    if (j->anext)
        j->anext->aprev = j->aprev;
    if (j->gai_pending)
        uv_cancel((uv_req_t *)&j->gai);
    uv_close((uv_handle_t *)&j->timer, handle_closed);
    uv_close((uv_handle_t *)&j->tcp, handle_closed);
}

static void on_connect(uv_connect_t *req, int status) {
    job *j = req->data;
    if (status == UV_ECANCELED)
        return;
    finish(j, status == 0 ? 1 : (local_error(status) ? -1 : 0),
           status == 0 ? "" : uv_strerror(status));
}

static void on_timeout(uv_timer_t *t) {
    finish(t->data, 0, "timed out");
}

static void connect_to(job *j, const struct sockaddr *sa) {
    const cidr *why = NULL;
    if (!cidr_allowed(j->pr->rule, sa, &why)) {
        char msg[160];
        snprintf(msg, sizeof(msg), "address refused by %s%s", why ? "--check-deny " : "--check-allow",
                 why ? why->text : "");
        j->denied = 1;
        finish(j, 0, msg);
        return;
    }
    j->connected = 1;
    j->connect.data = j;
    int rc = uv_tcp_connect(&j->connect, &j->tcp, sa, on_connect);
    if (rc != 0)
        finish(j, local_error(rc) ? -1 : 0, uv_strerror(rc));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    job *j = req->data;
    j->gai_pending = 0;
    if (j->finished) {
        uv_freeaddrinfo(res);
        job_release(j);
        return;
    }
    if (status != 0 || res == NULL)
        finish(j, local_error(status) ? -1 : 0, status ? uv_strerror(status) : "no address");
    else
        connect_to(j, res->ai_addr);
    uv_freeaddrinfo(res);
}

static void start(prober *pr, job *j) {
    j->anext = pr->active;
    if (pr->active)
        pr->active->aprev = j;
    pr->active = j;
    uv_tcp_init(&pr->loop, &j->tcp);
    uv_timer_init(&pr->loop, &j->timer);
    j->tcp.data = j->timer.data = j;
    j->open_handles = 2;
    uv_timer_start(&j->timer, on_timeout, j->timeout_ms, 0);
    struct sockaddr_storage ss;
    if (uv_ip4_addr(j->host, j->port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(j->host, j->port, (struct sockaddr_in6 *)&ss) == 0) {
        connect_to(j, (struct sockaddr *)&ss);
        return;
    }
    char port[8];
    snprintf(port, sizeof(port), "%d", j->port);
    struct addrinfo hints = {0};
    hints.ai_socktype = SOCK_STREAM;
    j->gai.data = j;
    j->gai_pending = 1;
    int rc = uv_getaddrinfo(&pr->loop, &j->gai, on_resolved, j->host, port, &hints);
    if (rc != 0) {
        j->gai_pending = 0;
        finish(j, local_error(rc) ? -1 : 0, uv_strerror(rc));
    }
}

static void on_wake(uv_async_t *a) {
    prober *pr = a->data;
    uv_mutex_lock(&pr->mu);
    job *list = pr->in_head;
    pr->in_head = pr->in_tail = NULL;
    int stop = pr->stop;
    uv_mutex_unlock(&pr->mu);
    while (list != NULL) {
        job *next = list->next;
        list->next = NULL;
        if (stop)
            free(list);
        else
            start(pr, list);
        list = next;
    }
    if (stop) {
        /* Drop what is in flight: the handles close, nothing is delivered. */
        while (pr->active != NULL) {
            job *j = pr->active;
            j->dropped = 1;
            finish(j, -1, "stopping");
        }
        uv_close((uv_handle_t *)&pr->wake, NULL);
    }
}

static void thread_main(void *arg) {
    prober *pr = arg;
    uv_run(&pr->loop, UV_RUN_DEFAULT);
}

/* --- the caller's loop -------------------------------------------------------------------- */

static void on_results(uv_async_t *a) {
    prober *pr = a->data;
    uv_mutex_lock(&pr->mu);
    job *list = pr->out_head;
    pr->out_head = pr->out_tail = NULL;
    uv_mutex_unlock(&pr->mu);
    while (list != NULL) {
        job *next = list->next;
        probe_outcome o = {list->tag, list->result, list->denied, list->connected, list->why};
        pr->done(pr->ud, &o);
        free(list);
        list = next;
    }
}

prober *prober_new(uv_loop_t *loop, const cidr_rule *rule, prober_done done, void *ud) {
    prober *pr = calloc(1, sizeof(*pr));
    if (pr == NULL)
        return NULL;
    pr->main = loop;
    pr->rule = rule;
    pr->done = done;
    pr->ud = ud;
    if (uv_mutex_init(&pr->mu) != 0) {
        free(pr);
        return NULL;
    }
    if (uv_loop_init(&pr->loop) != 0) {
        uv_mutex_destroy(&pr->mu);
        free(pr);
        return NULL;
    }
    uv_async_init(&pr->loop, &pr->wake, on_wake);
    pr->wake.data = pr;
    if (uv_thread_create(&pr->thread, thread_main, pr) != 0) {
        uv_close((uv_handle_t *)&pr->wake, NULL);
        uv_run(&pr->loop, UV_RUN_DEFAULT);
        uv_loop_close(&pr->loop);
        uv_mutex_destroy(&pr->mu);
        free(pr);
        return NULL;
    }
    /* Nothing sends on it before the first submit, after this returns. */
    uv_async_init(loop, &pr->results, on_results);
    pr->results.data = pr;
    uv_unref((uv_handle_t *)&pr->results); /* the loop may end while the prober idles */
    pr->thread_started = 1;
    return pr;
}

int prober_submit(prober *pr, void *tag, const char *host, int port, uint64_t timeout_ms) {
    job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return -ENOMEM;
    j->pr = pr;
    j->tag = tag;
    snprintf(j->host, sizeof(j->host), "%s", host);
    j->port = port;
    j->timeout_ms = timeout_ms;
    uv_mutex_lock(&pr->mu);
    if (pr->in_tail)
        pr->in_tail->next = j;
    else
        pr->in_head = j;
    pr->in_tail = j;
    uv_mutex_unlock(&pr->mu);
    uv_async_send(&pr->wake);
    return 0;
}

void prober_stop(prober *pr) {
    if (pr == NULL || !pr->thread_started)
        return;
    uv_mutex_lock(&pr->mu);
    pr->stop = 1;
    uv_mutex_unlock(&pr->mu);
    uv_async_send(&pr->wake);
    uv_thread_join(&pr->thread);
    pr->thread_started = 0;
    uv_loop_close(&pr->loop);
    /* Outcomes that were queued and not delivered are dropped. */
    job *list = pr->out_head;
    pr->out_head = pr->out_tail = NULL;
    while (list != NULL) {
        job *next = list->next;
        free(list);
        list = next;
    }
    uv_close((uv_handle_t *)&pr->results, NULL);
}

void prober_free(prober *pr) {
    if (pr == NULL)
        return;
    if (pr->thread_started) { /* never stopped (a start that failed): end the thread */
        uv_mutex_lock(&pr->mu);
        pr->stop = 1;
        uv_mutex_unlock(&pr->mu);
        uv_async_send(&pr->wake);
        uv_thread_join(&pr->thread);
        uv_loop_close(&pr->loop);
    }
    uv_mutex_destroy(&pr->mu);
    free(pr);
}
