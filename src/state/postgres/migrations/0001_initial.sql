-- openkb team-mode state, PostgreSQL schema 1: the same tables and column meanings as the
-- SQLite state.db at its schema 8 (migrations/0001..0008), in one schema per KB
-- (openkb_<kb_id as 32 hex digits>). Applied once, in one transaction, by
-- src/state/postgres/schema.rs, with the KB's schema as the search_path. Never edit a shipped
-- migration: add a new NNNN_name.sql instead.
--
-- Differences from SQLite, each for a reason:
-- - Timestamps stay TEXT (ISO-8601 UTC, or the log.md text an import kept), so an export
--   from either backend is byte-identical.
-- - `extra`, `key_order`, `files` and `entry` are `json`, not `jsonb`: `json` keeps the text
--   as written (key order, number spelling), which a byte-exact hashes.json export needs;
--   jsonb would sort keys and normalise numbers.
-- - Registry positions, log ids and intent ids are identity columns. An upsert keeps a row's
--   position (ON CONFLICT DO UPDATE never touches it); a new row takes the next value, so
--   "remove + add moves it to the end" holds. Copies (migrate --to-postgres) insert the
--   values they carry and move the sequences past them.

-- Small facts about this KB's state: schema_version, kb_id and lock_epoch (the fencing
-- token, incremented at each exclusive acquisition of the KB lock), plus the keys SQLite's
-- meta holds (database_id, created_by, ...).
CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- The document registry: one row per registered content hash, in registry order.
CREATE TABLE documents (
    hash        text PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
    position    bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    name        text,
    doc_name    text UNIQUE,
    type        text,
    path        text,
    raw_path    text,
    source_path text,
    doc_id      text,
    origin      text,
    pages       bigint,
    extra       json NOT NULL DEFAULT '{}' CHECK (json_typeof(extra) = 'object'),
    key_order   json CHECK (key_order IS NULL OR json_typeof(key_order) = 'array'),
    -- NFKC of (doc_name, or the stem of name), computed by openkb.
    name_key    text NOT NULL,
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'compiled', 'failed')),
    error       text,
    created_at  text NOT NULL,
    updated_at  text NOT NULL
);

CREATE INDEX documents_by_path ON documents (path) WHERE path IS NOT NULL;
CREATE INDEX documents_by_raw_path ON documents (raw_path) WHERE raw_path IS NOT NULL;
CREATE INDEX documents_by_source_path ON documents (source_path) WHERE source_path IS NOT NULL;
CREATE INDEX documents_by_name_key ON documents (name_key, position);

-- Documents by lifecycle status, kept by triggers in the transaction of every change to
-- `documents`, so `openkb status` reads three rows instead of counting the registry. The
-- triggers are per statement (with transition tables), not per row: a row updated many times
-- in one transaction leaves a version per update that later updates must step over, so a
-- per-row count made a 100k-document import quadratic. A statement that changes no status
-- (an upsert of the same status) does not touch the counts at all.
CREATE TABLE document_counts (
    status text PRIMARY KEY CHECK (status IN ('pending', 'compiled', 'failed')),
    n      bigint NOT NULL CHECK (n >= 0)
);
INSERT INTO document_counts (status, n) VALUES ('pending', 0), ('compiled', 0), ('failed', 0);

-- SET search_path FROM CURRENT: the functions find this schema's document_counts whatever the
-- search_path of the session that changes `documents` (a person in psql, say).
CREATE FUNCTION count_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE document_counts c SET n = c.n + d.k
    FROM (SELECT status, count(*) AS k FROM inserted GROUP BY status) d
    WHERE c.status = d.status;
    RETURN NULL;
END;
$$;

CREATE FUNCTION count_deleted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE document_counts c SET n = c.n - d.k
    FROM (SELECT status, count(*) AS k FROM deleted GROUP BY status) d
    WHERE c.status = d.status;
    RETURN NULL;
END;
$$;

CREATE FUNCTION count_updated() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE document_counts c SET n = c.n + d.k
    FROM (SELECT status, sum(k) AS k
          FROM (SELECT status, 1 AS k FROM after_update
                UNION ALL SELECT status, -1 FROM before_update) x
          GROUP BY status HAVING sum(k) <> 0) d
    WHERE c.status = d.status;
    RETURN NULL;
END;
$$;

CREATE TRIGGER documents_counted_on_insert AFTER INSERT ON documents
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION count_inserted();
CREATE TRIGGER documents_counted_on_delete AFTER DELETE ON documents
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION count_deleted();
CREATE TRIGGER documents_counted_on_update AFTER UPDATE ON documents
    REFERENCING OLD TABLE AS before_update NEW TABLE AS after_update
    FOR EACH STATEMENT EXECUTE FUNCTION count_updated();

-- The operations log; wiki/log.md is a human-readable rendering of it.
CREATE TABLE log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    timestamp   text NOT NULL,
    operation   text NOT NULL,
    description text NOT NULL,
    recorded_at text
);
CREATE INDEX log_by_operation ON log (operation, id);

-- Operations in flight (see src/state/intents.rs).
CREATE TABLE intents (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operation  text NOT NULL CHECK (operation IN ('add', 'remove', 'compile')),
    hash       text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    doc_name   text,
    files      json NOT NULL DEFAULT '[]' CHECK (json_typeof(files) = 'array'),
    started_at text NOT NULL,
    pid        bigint NOT NULL,
    hook_pgid  bigint CHECK (hook_pgid IS NULL OR hook_pgid > 1),
    hook_token text
);

-- The record of every import of a legacy hashes.json (see migrations/0002_imports.sql).
CREATE TABLE imports (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind                text NOT NULL CHECK (kind IN ('initial', 'drift-merge')),
    source_path         text NOT NULL,
    source_sha256       text NOT NULL CHECK (length(source_sha256) = 64),
    source_bytes        bigint NOT NULL,
    moved_to            text NOT NULL,
    entries             bigint NOT NULL,
    new_entries         bigint NOT NULL,
    conflicting_entries bigint NOT NULL DEFAULT 0,
    log_entries         bigint NOT NULL,
    journals_recovered  bigint NOT NULL DEFAULT 0,
    imported_at         text NOT NULL
);

-- What openkb last handed to the Python tool (see migrations/0006_python_base.sql).
CREATE TABLE python_handovers (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind               text NOT NULL CHECK (kind IN ('migrate', 'export')),
    hashes_json_sha256 text NOT NULL CHECK (length(hashes_json_sha256) = 64),
    entries            bigint NOT NULL,
    kept_as            text,
    handed_over_at     text NOT NULL
);

CREATE TABLE python_base (
    hash     text PRIMARY KEY,
    position bigint NOT NULL,
    entry    json NOT NULL CHECK (json_typeof(entry) = 'object')
);

-- Legacy entries whose paths openkb will not act on (see migrations/0007_untrusted_entries.sql).
CREATE TABLE untrusted_entries (
    hash   text PRIMARY KEY REFERENCES documents (hash) ON DELETE CASCADE,
    reason text NOT NULL
);
