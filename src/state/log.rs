//! The operations log's entry, and its rendering as a `wiki/log.md` block.

use serde::Serialize;

use crate::names;

/// Header of a fresh `wiki/log.md`, as the Python tool writes it.
pub const LOG_MD_HEADER: &str = "# Operations Log\n\n";

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

impl LogEntry {
    /// The entry as a `wiki/log.md` block: `## [ts] op | description` and a blank line, each
    /// field escaped by [`names::escape_line`] so that no name can start a line of its own (the
    /// log.md parser unescapes them again).
    pub fn to_markdown(&self) -> String {
        format!(
            "## [{}] {} | {}\n\n",
            names::escape_line(&self.timestamp),
            names::escape_line(&self.operation),
            names::escape_line(&self.description)
        )
    }
}
