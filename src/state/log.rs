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

#[cfg(test)]
mod tests {
    use super::LogEntry;

    /// One line per entry: a line break in a field is escaped, so no description can start
    /// an entry of its own (the log.md parser unescapes it).
    #[test]
    fn an_entry_renders_as_one_log_md_block() {
        let entry = LogEntry {
            id: 1,
            timestamp: "2024-05-06 07:08:09".into(),
            operation: "query".into(),
            description: "line one\n## [x] forged | entry".into(),
            recorded_at: None,
        };
        assert_eq!(
            entry.to_markdown(),
            "## [2024-05-06 07:08:09] query | line one\\u{a}## [x] forged | entry\n\n"
        );
    }
}
