-- openkb state database: the registry openkb last handed to the Python tool.
-- Applied once, in one transaction, by src/state/schema.rs. Never edit a shipped migration.

-- One row per hand-over: `migrate` (the hashes.json it imported) or `export` (the hashes.json
-- `openkb export --for-python` / `--legacy-json` wrote). The fingerprint identifies the file.
CREATE TABLE python_handovers (
    id                 INTEGER PRIMARY KEY,
    kind               TEXT NOT NULL CHECK (kind IN ('migrate', 'export')),
    hashes_json_sha256 TEXT NOT NULL CHECK (length(hashes_json_sha256) = 64),
    entries            INTEGER NOT NULL,
    handed_over_at     TEXT NOT NULL              -- ISO-8601 UTC
);

-- The entries of the latest hand-over, in registry order: the base of the three-way merge of
-- a hashes.json that reappears (what the Python tool started from). Replaced at each
-- hand-over; earlier ones keep only their fingerprint above.
CREATE TABLE python_base (
    hash     TEXT PRIMARY KEY NOT NULL,
    position INTEGER NOT NULL,
    -- The entry exactly as handed over (a JSON object, keys in their order).
    entry    TEXT NOT NULL CHECK (json_valid(entry) AND json_type(entry) = 'object')
);
