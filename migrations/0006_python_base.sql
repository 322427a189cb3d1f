-- openkb state database: what openkb last handed to the Python tool as its registry.
-- Applied once, in one transaction, by src/state/schema.rs. Never edit a shipped migration.

-- One row per hand-over, the latest being the base of the three-way merge of a hashes.json
-- that reappears. `migrate`: the hashes.json it imported, kept whole as the file `kept_as`
-- (hashes.json.migrated*, never deleted or overwritten), so no copy is stored here. `export`:
-- the hashes.json `openkb export --for-python` wrote, which the Python tool then rewrites, so
-- its entries are copied into python_base.
CREATE TABLE python_handovers (
    id                 INTEGER PRIMARY KEY,
    kind               TEXT NOT NULL CHECK (kind IN ('migrate', 'export')),
    hashes_json_sha256 TEXT NOT NULL CHECK (length(hashes_json_sha256) = 64),
    entries            INTEGER NOT NULL,
    kept_as            TEXT,                      -- migrate: the moved-aside file
    handed_over_at     TEXT NOT NULL              -- ISO-8601 UTC
);

-- The entries of the latest `export` hand-over, in registry order. Replaced by each export,
-- emptied by each migrate (whose base is its kept file).
CREATE TABLE python_base (
    hash     TEXT PRIMARY KEY NOT NULL,
    position INTEGER NOT NULL,
    -- The entry exactly as handed over (a JSON object, keys in their order).
    entry    TEXT NOT NULL CHECK (json_valid(entry) AND json_type(entry) = 'object')
);
