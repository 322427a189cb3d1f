//! What openkb last handed to the Python tool: the base of the three-way merge of a
//! `hashes.json` that reappears (`legacy::migrate`).
//!
//! Each hand-over adds a `python_handovers` row (kind, fingerprint) in the transaction that
//! does the hand-over's other writes, so the base always matches what the Python tool was
//! given. A `migrate` hand-over keeps no copy: the file it imported is kept whole as
//! `hashes.json.migrated*` (recorded in `kept_as`), and copying 100k entries would slow every
//! migration down. An `export` hand-over copies its entries into `python_base`, because the
//! file it wrote is the one the Python tool rewrites.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::{Queries, WriteTx};
use crate::error::Result;

/// Entries in registry order.
pub type Entries = Vec<(String, Map<String, Value>)>;

/// The latest hand-over.
#[derive(Debug)]
pub enum Base {
    /// `migrate`: the file it imported, kept as `kept_as`, with this SHA-256.
    File { kept_as: PathBuf, sha256: String },
    /// `export`: the entries it wrote.
    Entries(Entries),
}

/// Record that `migrate` handed over the `hashes.json` with `sha256`, now kept as `kept_as`.
pub fn record_migrate(tx: &WriteTx<'_>, sha256: &str, entries: usize, kept_as: &str) -> Result<()> {
    tx.record_python_migrate(sha256, entries, kept_as)
}

/// Record that `export` handed over `entries` (registry order) as the `hashes.json` with
/// `sha256`, replacing the stored base.
pub fn record_export(
    tx: &WriteTx<'_>,
    sha256: &str,
    entries: impl IntoIterator<Item = (String, Map<String, Value>)>,
) -> Result<()> {
    tx.record_python_export(sha256, entries)
}

/// The latest hand-over, or `None` when this database has recorded none (made by an openkb
/// that did not keep them).
/// One stored entry of the base (a JSON object, as every backend keeps it); `None` when the
/// text is anything else.
pub fn parse_entry(text: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(entry)) => Some(entry),
        _ => None,
    }
}

pub fn load(q: &impl Queries) -> Result<Option<Base>> {
    q.python_base()
}
