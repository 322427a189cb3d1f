-- openkb state database, schema 2: the record of every import of a legacy hashes.json.
-- Applied once, in one transaction, by src/state/schema.rs. Never edit a shipped migration.

-- One row per `openkb migrate` that imported something: written in the same transaction as
-- the documents and log rows it imported, so a database holds either the import and its
-- record or neither.
CREATE TABLE imports (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 'initial': the first import, which created state.db. 'drift-merge': a hashes.json that
    -- reappeared after migration (the Python tool was used) merged into an existing state.db.
    kind             TEXT NOT NULL CHECK (kind IN ('initial', 'drift-merge')),
    -- The file as it was read (absolute path) and its SHA-256 and size, so the exact file can be
    -- identified later among the hashes.json.migrated* copies.
    source_path      TEXT NOT NULL,
    source_sha256    TEXT NOT NULL CHECK (length(source_sha256) = 64),
    source_bytes     INTEGER NOT NULL,
    -- Where the file was renamed to after the commit (hashes.json.migrated, .migrated.2, ...).
    moved_to         TEXT NOT NULL,
    -- Entries in the file; entries that became documents; entries whose hash state.db already
    -- had with other metadata (drift only: reported, and kept in the moved file).
    entries          INTEGER NOT NULL,
    new_entries      INTEGER NOT NULL,
    conflicting_entries INTEGER NOT NULL DEFAULT 0,
    -- Entries of wiki/log.md imported into the log table.
    log_entries      INTEGER NOT NULL,
    -- Python crash journals rolled back or discarded before the import.
    journals_recovered INTEGER NOT NULL DEFAULT 0,
    imported_at      TEXT NOT NULL            -- ISO-8601 UTC
);
