-- Legacy registry entries whose paths openkb will not act on: a raw_path, path or source_path
-- naming a folder, one of the KB's own files, or a place outside the KB. `migrate` keeps the
-- entry (nothing of a legacy registry is dropped) and records here why it is not trusted;
-- `remove` of such a document unregisters it and touches no file. The row goes with its
-- document (ON DELETE CASCADE).
CREATE TABLE untrusted_entries (
    hash   TEXT PRIMARY KEY NOT NULL REFERENCES documents (hash) ON DELETE CASCADE,
    reason TEXT NOT NULL
) WITHOUT ROWID;
