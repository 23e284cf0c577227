-- SPDX-License-Identifier: BSD-2-Clause
-- 001_init.sql — the first schema of the registry database.
--
-- Applied by registry/store/sqlite.c in one transaction together with its schema_version row;
-- later changes go into new files (schema/002_name.sql, ...), never into this one.
-- Times are Unix milliseconds (UTC). Owner tokens are stored only as their SHA-256
-- (32-byte BLOB), so the file alone does not let anyone deregister an instance.
-- The CHECKs are a last line of defence: the store (registry/store/) validates before writing.

-- One row per applied migration; the database's version is MAX(version).
CREATE TABLE schema_version (
    version INTEGER NOT NULL PRIMARY KEY
);

-- Registered instances. UNIQUE(service, host, port) is the upsert key of a
-- registration, and its index also serves lookups by service (leftmost column).
CREATE TABLE instances (
    id            TEXT    NOT NULL PRIMARY KEY,        -- 16 lowercase hex chars
    service       TEXT    NOT NULL,
    host          TEXT    NOT NULL,
    port          INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    description   TEXT    NOT NULL DEFAULT '',
    tags_json     TEXT    NOT NULL DEFAULT '[]',       -- JSON array of strings
    ttl           INTEGER NOT NULL DEFAULT 0 CHECK (ttl >= 0),  -- seconds, 0 = none
    check_kind    TEXT    NOT NULL DEFAULT 'tcp' CHECK (check_kind IN ('tcp', 'none')),
    token_hash    BLOB    NOT NULL
                  CHECK (typeof(token_hash) = 'blob' AND length(token_hash) = 32),
    registered_at INTEGER NOT NULL,                    -- last (re-)registration
    last_seen     INTEGER NOT NULL DEFAULT 0,          -- last successful check, 0 = never
    last_check    INTEGER NOT NULL DEFAULT 0,          -- last check of any outcome, 0 = never
    status        TEXT    NOT NULL DEFAULT 'passing' CHECK (status IN ('passing', 'critical')),
    failures      INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),  -- consecutive
    UNIQUE (service, host, port)
);

-- Lifecycle events, bounded by the daemon (--events-keep): the oldest are deleted.
-- AUTOINCREMENT so a seq is never handed out twice, even after trimming or a restart:
-- watchers resume with "since".
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    ts          INTEGER NOT NULL,
    event       TEXT    NOT NULL,                      -- "register", "evict", ...
    service     TEXT,
    instance_id TEXT,
    host        TEXT,
    port        INTEGER,                               -- NULL = none
    detail      TEXT                                   -- JSON object text
);

-- The events op filtered by service: WHERE service = ? AND seq > ? ORDER BY seq.
CREATE INDEX events_service_seq ON events (service, seq);
