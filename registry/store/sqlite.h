/* SPDX-License-Identifier: BSD-2-Clause */
/* sqlite.h — test hooks of the SQLite backend of the store (registry/store/sqlite.c),
 * for tests/unit/test_store.c only: the daemon never calls these, it opens the store with
 * store_open("sqlite:PATH" or a bare path, ...) and uses store.h alone.
 *
 * Every hook that takes a handle returns -EINVAL when it is NULL or not a SQLite handle.
 */
#ifndef REGISTRY_STORE_SQLITE_H
#define REGISTRY_STORE_SQLITE_H

#include "store/store.h"

struct schema_migration;

/* store_open of the SQLite file at path (no scheme prefix here) with an explicit
 * migration list (ascending versions) instead of the embedded schema/ files, so tests
 * can migrate across versions that do not exist yet. opt NULL: STORE_OPTIONS_DEFAULT.
 * On success *out is a new handle the caller owns (store_close); else *out is NULL. */
int store_test_open_with(const char *path, const store_options *opt,
                         const struct schema_migration *migrations, size_t n,
                         store **out, char *err, size_t errlen);

/* The schema version of the open database (>= 0), or a negative code. */
int store_test_schema_version(store *st);

/* Caps the database at max_pages pages (0: lift the cap) so writes fail as on a full
 * disk (SQLITE_FULL). Returns 0 or a negative code. */
int store_test_limit_pages(store *st, int64_t max_pages);

/* on=1: the connection refuses writes as a read-only database does; on=0: accepts again.
 * Returns 0 or a negative code. */
int store_test_set_query_only(store *st, int on);

#endif
