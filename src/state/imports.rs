//! The `imports` table: the record of each legacy `hashes.json` import (`openkb migrate`).
//!
//! A record is written in the same transaction as the rows it describes, so `state.db` never
//! holds imported documents without the record saying where they came from (the flaw of the
//! Python tool's own SQLite attempt, whose "migrated" sentinel was a separate transaction).

use serde::Serialize;

use super::{Document, Queries, WriteTx};
use crate::error::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ImportKind {
    /// The first import, which created `state.db`.
    #[serde(rename = "initial")]
    Initial,
    /// A `hashes.json` that reappeared after migration, merged into an existing `state.db`.
    #[serde(rename = "drift-merge")]
    DriftMerge,
}

impl ImportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportKind::Initial => "initial",
            ImportKind::DriftMerge => "drift-merge",
        }
    }

    pub const ALL: [ImportKind; 2] = [ImportKind::Initial, ImportKind::DriftMerge];
}

impl std::str::FromStr for ImportKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImportKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| format!("unknown import kind {s:?}"))
    }
}

/// What an import did; the fields of an `imports` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImportRecord {
    /// Assigned by the store.
    pub id: i64,
    pub kind: ImportKind,
    pub source_path: String,
    pub source_sha256: String,
    pub source_bytes: u64,
    pub moved_to: String,
    pub entries: u64,
    pub new_entries: u64,
    pub conflicting_entries: u64,
    pub log_entries: u64,
    pub journals_recovered: u64,
    /// ISO-8601 UTC; assigned by the store.
    pub imported_at: String,
}

/// Write the record of an import inside the transaction that imports it. `record.id` and
/// `record.imported_at` are ignored; the returned record carries the stored ones.
pub fn record(tx: &WriteTx<'_>, record: &ImportRecord) -> Result<ImportRecord> {
    tx.record_import(record)
}

/// Every import, oldest first.
pub fn list(q: &impl Queries) -> Result<Vec<ImportRecord>> {
    q.imports()
}

/// Append `docs` to the registry, in order, after the last registered document: the bulk path
/// of an import. Every document must be new, which the importer checks beforehand (a hash
/// already registered would be updated in place; a `doc_name` owned by another document fails
/// the whole transaction on its constraint). One timestamp serves the batch.
pub fn append_documents(tx: &WriteTx<'_>, docs: &[Document]) -> Result<()> {
    tx.append_documents(docs)
}

/// Append log rows with the timestamps they were read with (imported history: no
/// `recorded_at`), in order.
pub fn append_log_entries<'e>(
    tx: &WriteTx<'_>,
    entries: impl IntoIterator<Item = (&'e str, &'e str, &'e str)>,
) -> Result<()> {
    tx.append_log_entries(entries)
}

#[cfg(test)]
mod tests {
    use super::ImportKind;

    #[test]
    fn every_kind_parses_back_from_its_text_and_serializes_as_it() {
        for kind in ImportKind::ALL {
            assert_eq!(kind.as_str().parse::<ImportKind>(), Ok(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
        }
        assert!("drift_merge".parse::<ImportKind>().is_err());
    }
}
