/* SPDX-License-Identifier: BSD-2-Clause */
/* schema.h — the database migrations embedded at build time.
 *
 * schema/embed.sh turns schema/NNN_name.sql into build/gen/schema_sql.c, which defines
 * schema_migrations[]: one entry per file, in ascending version order. Only the SQLite
 * backend of the store (registry/store/sqlite.c) applies them; see store_open.
 */
#ifndef REGISTRY_SCHEMA_H
#define REGISTRY_SCHEMA_H

#include <stddef.h>

typedef struct schema_migration {
    int version;            /* NNN of the file name: >= 1, strictly increasing in the array */
    const char *name;       /* the rest of the file name, e.g. "init" for 001_init.sql */
    const char *sql;        /* the file's text: DDL/DML, no BEGIN/COMMIT of its own */
} schema_migration;

extern const schema_migration schema_migrations[];  /* static storage, never freed */
extern const size_t schema_migrations_count;

#endif
