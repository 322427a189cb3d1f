//! `wiki/log.md`: the operations log as a page for people, written and read in one place.
//!
//! The `log` table is the source of truth; the page is its rendering in the Python tool's
//! format, `## [YYYY-MM-DD HH:MM:SS] <operation> | <description>` and a blank line per entry
//! under `# Operations Log`. openkb appends each committed row ([`append`]), `doctor --fix` and
//! `export --for-python` rewrite the whole page ([`render`]), and `migrate` reads back what the
//! Python tool appended ([`parse`]).
//!
//! # Writing
//!
//! Every field is escaped by [`names::escape_line`] (one line per entry; kept unparsed text as
//! `## [] unparsed | <escaped text>`), so that a name can never start a line of its own and
//! forge an entry, and parsing the rendering gives the table back.
//!
//! # Reading
//!
//! The Python tool inserts the description verbatim, so a multi-line `query` question makes a
//! multi-line entry. Entries are therefore split where a line starts with `## [`, not line by
//! line, and each keeps its description (newlines included) and its timestamp text as written.
//! Escapes openkb wrote are undone; a Python-tool description that happens to hold a literal
//! `\u{HEX}` is read as that character.
//!
//! Nothing is dropped. A block that starts with `## [` but does not have the
//! `[timestamp] operation | description` shape, and any text before the first entry other
//! than the `# Operations Log` header, become entries with operation [`UNPARSED`], an empty
//! timestamp and the block's exact text as description: the history stays complete and the
//! odd text can be found with `openkb log --op unparsed`.

use std::path::Path;

use crate::error::{Error, Result};
use crate::kb::Kb;
use crate::kbpath::KbPath;
use crate::names;
use crate::state::{LogEntry, Queries};

/// Operation of a log row that holds text which was not a well-formed entry.
pub const UNPARSED: &str = "unparsed";

/// What a fresh `wiki/log.md` starts with, as the Python tool writes it.
pub const HEADER: &str = "# Operations Log\n\n";

/// One entry as a `wiki/log.md` block: `## [ts] op | description` and a blank line, each
/// field escaped so that no name can start a line of its own (the parser unescapes them).
pub fn entry(entry: &LogEntry) -> String {
    format!(
        "## [{}] {} | {}\n\n",
        names::escape_line(&entry.timestamp),
        names::escape_line(&entry.operation),
        names::escape_line(&entry.description)
    )
}

/// The whole page as the log table renders it: the header and every entry, oldest first.
pub fn render(reader: &impl Queries) -> Result<String> {
    let mut text = String::from(HEADER);
    reader.for_each_log_entry(&mut |row| {
        text.push_str(&entry(&row));
        Ok(())
    })?;
    Ok(text)
}

/// Append committed rows to `wiki/log.md` (created with its header when missing; never
/// through a symlink), in one write so that a batch's lines stay together.
pub fn append(kb: &Kb, rows: &[LogEntry]) -> Result<()> {
    let text: String = rows.iter().map(entry).collect();
    if text.is_empty() {
        return Ok(());
    }
    KbPath::bookkeeping(kb, "wiki/log.md")?.append(HEADER, &text)
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LegacyLogEntry {
    pub timestamp: String,
    pub operation: String,
    pub description: String,
}

impl LegacyLogEntry {
    pub fn is_unparsed(&self) -> bool {
        self.operation == UNPARSED && self.timestamp.is_empty()
    }
}

/// Parse `bytes`, the content of the `wiki/log.md` at `path`.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<LegacyLogEntry>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = crate::legacy::hashes_json::line_column(bytes, e.valid_up_to());
        Error::LegacyFile {
            path: path.to_path_buf(),
            problem: format!(
                "invalid UTF-8 at line {line}, column {column} (byte offset {}); the Python tool \
                 writes this file as UTF-8, so it was damaged or edited by another program",
                e.valid_up_to()
            ),
        }
    })?;
    Ok(parse_text(text))
}

/// Parse the text of a `wiki/log.md` (see the module docs; nothing is dropped).
pub fn parse_text(text: &str) -> Vec<LegacyLogEntry> {
    let starts = entry_starts(text);
    let mut entries = Vec::with_capacity(starts.len() + 1);
    let preamble = &text[..starts.first().copied().unwrap_or(text.len())];
    let rest = preamble.trim_start_matches('\u{feff}').trim();
    if !rest.is_empty() && rest != HEADER.trim_end() {
        entries.push(unparsed(preamble.trim_end_matches('\n')));
    }
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(text.len());
        entries.push(parse_block(strip_separator(&text[start..end])));
    }
    entries
}

/// Byte offsets of every line that starts with `## [`.
fn entry_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with("## [") {
            starts.push(line_start);
        }
        line_start += line.len();
    }
    starts
}

/// Remove the blank line the Python tool writes after each entry (`\n\n`), or what there is of
/// it when the file ends early.
fn strip_separator(block: &str) -> &str {
    block
        .strip_suffix("\n\n")
        .or_else(|| block.strip_suffix('\n'))
        .unwrap_or(block)
}

fn parse_block(block: &str) -> LegacyLogEntry {
    let parsed = (|| {
        let rest = block.strip_prefix("## [")?;
        let (timestamp, rest) = rest.split_once("] ")?;
        let (operation, description) = rest.split_once(" | ")?;
        // openkb renders a kept unparsed block with an empty timestamp.
        let well_formed = (!timestamp.is_empty() || operation == UNPARSED)
            && !timestamp.contains('\n')
            && !operation.is_empty()
            && !operation.contains('\n');
        well_formed.then(|| LegacyLogEntry {
            timestamp: names::unescape_line(timestamp).into_owned(),
            operation: names::unescape_line(operation).into_owned(),
            description: names::unescape_line(description).into_owned(),
        })
    })();
    parsed.unwrap_or_else(|| unparsed(block))
}

fn unparsed(text: &str) -> LegacyLogEntry {
    LegacyLogEntry {
        timestamp: String::new(),
        operation: UNPARSED.to_owned(),
        description: text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ts: &str, op: &str, desc: &str) -> LegacyLogEntry {
        LegacyLogEntry {
            timestamp: ts.into(),
            operation: op.into(),
            description: desc.into(),
        }
    }

    #[test]
    fn parses_entries_with_multiline_descriptions() {
        let text = "# Operations Log\n\n\
            ## [2026-11-27 01:43:36] ingest | a.md\n\n\
            ## [2026-11-27 01:43:40] query | line one\nline two\n\n## not an entry\n\n\
            ## [2026-11-27 01:43:41] lint | report \u{2192} lint_1.md\n\n";
        assert_eq!(
            parse_text(text),
            [
                entry("2026-11-27 01:43:36", "ingest", "a.md"),
                entry(
                    "2026-11-27 01:43:40",
                    "query",
                    "line one\nline two\n\n## not an entry"
                ),
                entry("2026-11-27 01:43:41", "lint", "report \u{2192} lint_1.md"),
            ]
        );
    }

    #[test]
    fn description_trailing_newline_and_missing_separator_are_kept_exactly() {
        let text = "# Operations Log\n\n## [t1] query | q\n\n\n## [t2] remove | x";
        assert_eq!(
            parse_text(text),
            [entry("t1", "query", "q\n"), entry("t2", "remove", "x")]
        );
    }

    #[test]
    fn malformed_entries_and_stray_text_are_kept_as_unparsed() {
        let text = "notes by hand\n\n## [2026-11-27 01:43:36 ingest a.md\n\n## [t] op without bar\n\n## [t] ok | fine\n\n";
        let entries = parse_text(text);
        assert_eq!(
            entries,
            [
                entry("", UNPARSED, "notes by hand"),
                entry("", UNPARSED, "## [2026-11-27 01:43:36 ingest a.md"),
                entry("", UNPARSED, "## [t] op without bar"),
                entry("t", "ok", "fine"),
            ]
        );
        assert!(entries[0].is_unparsed());
    }

    #[test]
    fn a_rendered_entry_is_one_line_and_parses_back() {
        let row = LogEntry {
            id: 1,
            timestamp: "2026-01-02 03:04:05".into(),
            operation: "query".into(),
            description: "line one\n## [x] remove | forged".into(),
            recorded_at: None,
        };
        // A line break in a description is escaped, so it cannot start an entry of its own.
        assert_eq!(
            super::entry(&row),
            "## [2026-01-02 03:04:05] query | line one\\u{a}## [x] remove | forged\n\n"
        );
        let page = format!("{HEADER}{}", super::entry(&row));
        assert_eq!(
            parse_text(&page),
            [entry(
                "2026-01-02 03:04:05",
                "query",
                "line one\n## [x] remove | forged"
            )]
        );
    }

    #[test]
    fn header_only_and_empty_files_have_no_entries() {
        assert!(parse_text("# Operations Log\n\n").is_empty());
        assert!(parse_text("").is_empty());
    }

    #[test]
    fn invalid_utf8_is_reported_with_position() {
        let e = parse(
            Path::new("/kb/wiki/log.md"),
            b"# Operations Log\n\n## [t] q | \xff\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/kb/wiki/log.md: invalid UTF-8 at line 3, column 12"),
            "{e}"
        );
    }
}
