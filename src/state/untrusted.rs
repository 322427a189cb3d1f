//! Untrusted legacy registry entries: entries whose paths openkb will not act on (see
//! `kbpath::owned_by_document`). `migrate` marks them; `remove` reads the mark to unregister
//! such a document without touching a file; `openkb doctor` lists them.

use super::Queries;
use crate::error::Result;

/// Why the document `hash` is not trusted, if it is marked.
pub fn reason(q: &impl Queries, hash: &str) -> Result<Option<String>> {
    q.untrusted_reason(hash)
}

/// Every marked document: (hash, reason), in registry order.
pub fn list(q: &impl Queries) -> Result<Vec<(String, String)>> {
    q.untrusted_entries()
}
