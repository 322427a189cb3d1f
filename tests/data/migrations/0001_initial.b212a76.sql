-- openkb state database, schema 1.
-- Applied once, in one transaction, by src/state/schema.rs. Never edit a shipped migration:
-- add a new NNNN_name.sql instead.

-- The document registry: one row per registered content hash, in registry order.
CREATE TABLE documents (
    -- SHA-256 of the source bytes (or of "pageindex-cloud:<doc_id>" for cloud imports).
    hash        TEXT PRIMARY KEY NOT NULL
                CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*'),
    -- Registry (insertion) order: the `list` order and the order name resolution scans.
    -- Re-registering a hash keeps its position; remove + add moves it to the end.
    position    INTEGER NOT NULL UNIQUE,
    name        TEXT,                     -- original file name, byte-exact (NFD stays NFD)
    doc_name    TEXT UNIQUE,              -- wiki slug; owned by at most one document
    type        TEXT,                     -- md, pdf, long_pdf, pageindex_cloud, ...
    path        TEXT,                     -- identity: KB-relative POSIX path or absolute
    raw_path    TEXT,                     -- KB-relative path of the copy in raw/
    source_path TEXT,                     -- wiki/sources/<doc_name>.md|json
    doc_id      TEXT,                     -- PageIndex document id
    origin      TEXT,                     -- "cloud" for PageIndex Cloud imports
    pages       INTEGER,
    -- Keys of a legacy entry that have no column (or whose value is not of the column's
    -- type), as a JSON object: nothing of a hashes.json entry is ever dropped.
    extra       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(extra) AND json_type(extra) = 'object'),
    -- The entry's key order in hashes.json when it differs from the canonical one
    -- (JSON array), so an export reproduces the file byte for byte.
    key_order   TEXT CHECK (key_order IS NULL OR (json_valid(key_order) AND json_type(key_order) = 'array')),
    -- NFKC of (doc_name, or the stem of name): the key under which a name is "owned" in the
    -- Python tool's doc_name rules. Indexed so name resolution never scans the registry.
    name_key    TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'compiled', 'failed')),
    error       TEXT,                     -- why the last compile failed (status = 'failed')
    created_at  TEXT NOT NULL,            -- ISO-8601 UTC
    updated_at  TEXT NOT NULL             -- ISO-8601 UTC
);

CREATE INDEX documents_by_path ON documents (path) WHERE path IS NOT NULL;
CREATE INDEX documents_by_raw_path ON documents (raw_path) WHERE raw_path IS NOT NULL;
CREATE INDEX documents_by_source_path ON documents (source_path) WHERE source_path IS NOT NULL;
CREATE INDEX documents_by_name_key ON documents (name_key, position);
CREATE INDEX documents_by_status ON documents (status);

-- The operations log; wiki/log.md is a human-readable rendering of it.
CREATE TABLE log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- As shown in wiki/log.md: local time, 'YYYY-MM-DD HH:MM:SS' (imported entries keep the
    -- text they had).
    timestamp   TEXT NOT NULL,
    operation   TEXT NOT NULL,
    description TEXT NOT NULL,
    -- ISO-8601 UTC time the row was written; NULL for entries imported from a legacy log.md.
    recorded_at TEXT
);

CREATE INDEX log_by_operation ON log (operation, id);

-- Small facts about this database (who created it, pinned settings).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
