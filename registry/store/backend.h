/* SPDX-License-Identifier: BSD-2-Clause */
/* backend.h — what the store's backends share (registry/store/ only, never included
 * elsewhere): the one validation of a change, so every backend refuses the same
 * changes with -EINVAL, and the message helper. Defined in store.c.
 */
#ifndef REGISTRY_STORE_BACKEND_H
#define REGISTRY_STORE_BACKEND_H

#include "store/store.h"

/* Fills err[errlen] (when err is not NULL) with a printf-style message; truncation is
 * acceptable for a human-readable message. */
void store_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


/* 1 when a change is well-formed, else 0 (its rc is then -EINVAL). Checked before
 * anything is written, so a malformed change is refused as a whole, never half
 * applied. The checks are those of the SQLite schema's NOT NULL and CHECK constraints,
 * so no backend has to rely on a constraint of its own. */
int store_change_valid(const store_change *c);

/* The backends store_open knows (sqlite.c, memory.c). */
extern const store_backend store_sqlite_backend;
extern const store_backend store_memory_backend;
extern const store_backend store_etcd_backend;

#endif
