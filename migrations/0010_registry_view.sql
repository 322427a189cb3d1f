-- openkb state database: a read-only view of the registry for people using sqlite3.
-- Applied once, in one transaction, by src/state/sqlite/schema.rs. Never edit a shipped
-- migration: add a new NNNN_name.sql instead.
--
--   sqlite3 -readonly .openkb/state.db 'SELECT * FROM registry'
--
-- One row per document in registry order, the columns a person asks about first, and why a
-- legacy entry is not trusted. openkb itself never reads it. A view cannot be written to
-- (it has no INSTEAD OF triggers), so it cannot be used to bypass openkb's checks.
CREATE VIEW registry AS
    SELECT d.position, d.doc_name, d.status, d.type, d.name, d.path, d.raw_path,
           d.source_path, d.pages, d.error, u.reason AS untrusted, d.created_at,
           d.updated_at, d.hash
    FROM documents d LEFT JOIN untrusted_entries u ON u.hash = d.hash
    ORDER BY d.position;
