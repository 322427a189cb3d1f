//! The operations log's entry (rendered as `wiki/log.md` by [`crate::log_md`]).

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogEntry {
    pub id: i64,
    /// Local time as shown in `wiki/log.md` (`YYYY-MM-DD HH:MM:SS`).
    pub timestamp: String,
    pub operation: String,
    pub description: String,
    /// ISO-8601 UTC time the row was written; `None` for imported entries.
    pub recorded_at: Option<String>,
}
