-- openkb state database: the registry keyed by its own order, legacy round-trip data aside.
-- Applied once, in one transaction, by src/state/sqlite/schema.rs (with foreign key
-- enforcement off, checked with foreign_key_check before the commit). Never edit a shipped
-- migration: add a new NNNN_name.sql instead.
--
-- 1. `position` becomes the table's INTEGER PRIMARY KEY (SQLite's rowid). Registry order is
--    the table's own order: a listing scans the table instead of an index plus one lookup
--    per row, and a registration updates one index fewer (the UNIQUE index on position).
-- 2. `extra` and `key_order`, which only the round trip of a legacy hashes.json entry needs,
--    move to `document_legacy` (a row only for the entries that have them), so that
--    `SELECT * FROM documents` in sqlite3 shows what a person looks for.
-- SQLite cannot change a primary key in place, so the table is rebuilt: every row copied with
-- its position, then the indexes and counting triggers made again.

CREATE TABLE documents_rebuilt (
    -- Registry (insertion) order: the `list` order and the order name resolution scans.
    -- Re-registering a hash keeps its position; remove + add moves it to the end.
    position    INTEGER PRIMARY KEY,
    -- SHA-256 of the source bytes (or of "pageindex-cloud:<doc_id>" for cloud imports).
    hash        TEXT NOT NULL UNIQUE
                CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*'),
    doc_name    TEXT UNIQUE,              -- wiki slug; owned by at most one document
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'compiled', 'failed')),
    name        TEXT,                     -- original file name, byte-exact (NFD stays NFD)
    type        TEXT,                     -- md, pdf, long_pdf, pageindex_cloud, ...
    path        TEXT,                     -- identity: KB-relative POSIX path or absolute
    raw_path    TEXT,                     -- KB-relative path of the copy in raw/
    source_path TEXT,                     -- wiki/sources/<doc_name>.md|json
    doc_id      TEXT,                     -- PageIndex document id
    origin      TEXT,                     -- "cloud" for PageIndex Cloud imports
    pages       INTEGER,
    error       TEXT,                     -- why the last compile failed (status = 'failed')
    -- NFKC of (doc_name, or the stem of name): the key under which a name is "owned" in the
    -- Python tool's doc_name rules. Indexed so name resolution never scans the registry.
    name_key    TEXT NOT NULL,
    created_at  TEXT NOT NULL,            -- ISO-8601 UTC
    updated_at  TEXT NOT NULL             -- ISO-8601 UTC
);

INSERT INTO documents_rebuilt (position, hash, doc_name, status, name, type, path, raw_path,
        source_path, doc_id, origin, pages, error, name_key, created_at, updated_at)
    SELECT position, hash, doc_name, status, name, type, path, raw_path,
        source_path, doc_id, origin, pages, error, name_key, created_at, updated_at
    FROM documents ORDER BY position;

-- What a legacy hashes.json entry held beyond the columns of `documents`: kept so that an
-- export writes the entry back byte for byte. Most documents have no row here.
CREATE TABLE document_legacy (
    hash      TEXT PRIMARY KEY NOT NULL REFERENCES documents (hash) ON DELETE CASCADE,
    -- Keys of the entry that have no column (or whose value is not of the column's type), as
    -- a JSON object: nothing of a hashes.json entry is ever dropped.
    extra     TEXT NOT NULL DEFAULT '{}'
              CHECK (json_valid(extra) AND json_type(extra) = 'object'),
    -- The entry's key order in hashes.json when it differs from the canonical one (a JSON
    -- array).
    key_order TEXT
              CHECK (key_order IS NULL OR (json_valid(key_order) AND json_type(key_order) = 'array'))
) WITHOUT ROWID;

INSERT INTO document_legacy (hash, extra, key_order)
    SELECT hash, extra, key_order FROM documents
    WHERE extra <> '{}' OR key_order IS NOT NULL;

DROP TABLE documents;
ALTER TABLE documents_rebuilt RENAME TO documents;

CREATE INDEX documents_by_path ON documents (path) WHERE path IS NOT NULL;
CREATE INDEX documents_by_raw_path ON documents (raw_path) WHERE raw_path IS NOT NULL;
CREATE INDEX documents_by_source_path ON documents (source_path) WHERE source_path IS NOT NULL;
-- The rowid (position) ends every index entry, so equal keys come in registry order.
CREATE INDEX documents_by_name_key ON documents (name_key);

CREATE TRIGGER documents_counted_on_insert AFTER INSERT ON documents BEGIN
    UPDATE document_counts SET n = n + 1 WHERE status = NEW.status;
END;

CREATE TRIGGER documents_counted_on_delete AFTER DELETE ON documents BEGIN
    UPDATE document_counts SET n = n - 1 WHERE status = OLD.status;
END;

CREATE TRIGGER documents_counted_on_status AFTER UPDATE OF status ON documents
    WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE document_counts SET n = n - 1 WHERE status = OLD.status;
    UPDATE document_counts SET n = n + 1 WHERE status = NEW.status;
END;
