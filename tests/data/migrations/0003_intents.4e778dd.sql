-- openkb state database: intents of interrupted-safe operations.
-- Applied once, in one transaction, by src/state/schema.rs. Never edit a shipped migration.

-- One row per document operation in flight. It is committed BEFORE the operation touches any
-- file and deleted in the same transaction that commits the operation's result, so a row that
-- survives a crash says exactly which files to roll back (or, for a remove, to finish
-- deleting). The next openkb process that takes the KB's exclusive lock settles every row.
CREATE TABLE intents (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    operation  TEXT NOT NULL CHECK (operation IN ('add', 'remove', 'compile')),
    -- The document's content hash (the documents row this operation creates/deletes/compiles).
    hash       TEXT NOT NULL CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*'),
    doc_name   TEXT,
    -- JSON array of {"path": KB-relative POSIX path, "backup": KB-relative path or null}:
    -- the files the operation creates (add) or deletes (remove). For add, "backup" holds the
    -- previous content of a file the add replaces, restored on rollback.
    files      TEXT NOT NULL DEFAULT '[]'
               CHECK (json_valid(files) AND json_type(files) = 'array'),
    started_at TEXT NOT NULL,                 -- ISO-8601 UTC
    pid        INTEGER NOT NULL               -- process that recorded it (for people and doctor)
);
