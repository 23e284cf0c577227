/* SPDX-License-Identifier: BSD-2-Clause */
/* store.c — the generic side of store.h: store_open picks a backend by the scheme of
 * its spec, and the store_* functions check their arguments and dispatch to the
 * handle's backend table. Also the validation every backend shares (backend.h), so a
 * change is refused the same way whichever backend stores it.
 */
#include "store/store.h"
#include "store/backend.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <ctype.h>
#include <string.h>

/* Schemes store_open knows. A NULL backend is a scheme that is reserved but not built
 * in: refused with a clear message instead of being taken for a file name. */
static const struct {
    const char *prefix;                 /* "scheme:" */
    const store_backend *be;
} schemes[] = {
    { "sqlite:", &store_sqlite_backend },
    { "memory:", &store_memory_backend },
    { "etcd:", &store_etcd_backend },
};

void store_set_err(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int store_id_valid(const char *id) {
    size_t len = strnlen(id, STORE_ID_MAX + 1);

    if (len == 0 || len > STORE_ID_MAX || !isalnum((unsigned char)id[0]))
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)id[i]) && strchr("._:@-", id[i]) == NULL)
            return 0;
    return 1;
}

static int status_valid(int status) {
    return status == STORE_PASSING || status == STORE_CRITICAL;
}

int store_change_valid(const store_change *c) {
    const store_instance *in = &c->inst;

    if (c->has_event && !c->event.event)
        return 0;
    switch (c->kind) {
    case STORE_PUT:
        return store_id_valid(in->id) && in->service && in->host && in->port >= 1 &&
               in->port <= 65535 && in->ttl >= 0 &&
               (in->check == STORE_CHECK_TCP || in->check == STORE_CHECK_NONE) &&
               status_valid(in->status) && in->failures >= 0 &&
               (in->maintenance == 0 || in->maintenance == 1);
    case STORE_DELETE:
        return store_id_valid(in->id);
    case STORE_HEALTH:
        return store_id_valid(in->id) && status_valid(in->status) && in->failures >= 0;
    case STORE_MAINTENANCE:
        return store_id_valid(in->id) && (in->maintenance == 0 || in->maintenance == 1);
    case STORE_EVENT_ONLY:
        return c->has_event;
    default:
        return 0;
    }
}

int store_open(const char *spec, const store_options *opt, store **out, char *err,
               size_t errlen) {
    static const store_options defaults = STORE_OPTIONS_DEFAULT;
    const store_backend *be = &store_sqlite_backend;
    const char *arg = spec;
    int rc;

    if (!out) {
        store_set_err(err, errlen, "store_open: bad arguments");
        return -EINVAL;
    }
    *out = NULL;
    if (!spec || !*spec) {
        store_set_err(err, errlen, "store_open: no store given (a path, sqlite:PATH or"
                      " memory:)");
        return -EINVAL;
    }
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t len = strlen(schemes[i].prefix);

        if (strncmp(spec, schemes[i].prefix, len) != 0)
            continue;
        if (!schemes[i].be) {
            store_set_err(err, errlen, "store %s is not built in yet (this registryd has"
                          " sqlite:PATH and memory:)", schemes[i].prefix);
            return -EINVAL;
        }
        be = schemes[i].be;
        arg = spec + len;
        break;
    }
    rc = be->open(arg, opt ? opt : &defaults, out, err, errlen);
    if (rc != 0) {
        *out = NULL;
        return rc;
    }
    return 0;
}

int store_load(store *st, int (*cb)(void *ud, const store_instance *inst), void *ud,
               char *err, size_t errlen) {
    if (!st || !cb) {
        store_set_err(err, errlen, "store_load: bad arguments");
        return -EINVAL;
    }
    return st->be->load(st, cb, ud, err, errlen);
}

int store_apply(store *st, store_change *changes, size_t n, char *err, size_t errlen) {
    int rc;

    if (!st || (!changes && n > 0)) {
        store_set_err(err, errlen, "store_apply: bad arguments");
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        changes[i].rc = 0;
        changes[i].existed = 0;
        changes[i].id_out[0] = '\0';
        changes[i].event.seq = 0;
        changes[i].rev = 0;
    }
    if (n == 0)
        return 0;
    rc = st->be->apply(st, changes, n, err, errlen);
    if (rc == 0)
        return 0;
    /* Nothing changed: whatever the backend left in the outputs is void. */
    for (size_t i = 0; i < n; i++) {
        changes[i].rc = STORE_EIO;
        changes[i].existed = 0;
        changes[i].id_out[0] = '\0';
        changes[i].event.seq = 0;
    }
    return STORE_EIO;
}

int store_events(store *st, int64_t since, int limit, const char *service,
                 int (*cb)(void *ud, const store_event *ev), void *ud,
                 char *err, size_t errlen) {
    if (!st || !cb || limit < 0) {
        store_set_err(err, errlen, "store_events: bad arguments");
        return -EINVAL;
    }
    return st->be->events(st, since, limit, service, cb, ud, err, errlen);
}

int64_t store_last_seq(store *st) {
    return st ? st->be->last_seq(st) : 0;
}

void store_set_events_keep(store *st, int64_t keep) {
    if (st)
        st->be->set_events_keep(st, keep < 0 ? 0 : keep);
}

void store_close(store *st) {
    if (st)
        st->be->close(st);
}

int store_shared(const store *st) {
    return st != NULL && st->be->follow != NULL;
}

size_t store_max_batch(const store *st) {
    return st ? st->be->max_batch : 0;
}
