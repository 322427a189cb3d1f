//! Handing the KB to the Python tool and back.
//!
//! Out: [`export_for_python`] writes `.openkb/hashes.json` exactly as the Python tool 0.4
//! writes it and records those entries as the base ([`crate::state::python_base`]). Back:
//! `openkb migrate` merges the `hashes.json` the Python tool left against that base (additions,
//! removals and edits; see `migrate::plan_drift`) and imports the lines it appended to
//! `wiki/log.md`.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::fsx;
use crate::log_md::{self, LegacyLogEntry};
use crate::session::WriteSession;
use crate::state::python_base;
use crate::state::{Queries, Status};

/// What [`export_for_python`] wrote.
#[derive(Debug)]
pub struct HandedOver {
    pub documents: usize,
    pub log_md: LogMd,
    /// Documents not compiled (pending or failed), which the Python tool sees as registered.
    pub unfinished: usize,
}

/// Write `.openkb/hashes.json` for the Python tool and record it as the base of the next
/// merge, in a write session. Refuses when a `hashes.json` is already
/// there (the Python tool's changes would be overwritten: `openkb migrate` merges them first).
/// The file is written first and the base recorded after; if recording fails the file is
/// removed again, so the base always describes what the Python tool was given.
pub fn export_for_python(session: &WriteSession) -> Result<HandedOver> {
    let (kb, store) = (session.kb(), session.store());
    let path = kb.hashes_json();
    if path.exists() {
        return Err(Error::Invalid(format!(
            "{} already exists (the Python tool's registry, not merged yet); run `openkb \
             migrate` to merge it first; nothing was written",
            path.display()
        )));
    }
    store.ensure_writable()?;
    let log_md = sync_log_md(session)?;
    let documents = store.reader()?.list()?;
    let mut text = String::with_capacity(documents.len() * 320 + 4);
    super::export::write_registry(&mut text, &documents);
    if !fsx::write_new(&path, text.as_bytes())? {
        return Err(Error::Invalid(format!(
            "{} appeared while it was being written (was the Python tool run without the KB \
             lock?); nothing was written, run `openkb migrate`",
            path.display()
        )));
    }
    let sha256 = crate::hash::sha256_hex(text.as_bytes());
    let entries = documents
        .iter()
        .map(|doc| (doc.hash.clone(), super::entry_of(doc)));
    let recorded = session.write(|tx| {
        python_base::record_export(tx, &sha256, entries.clone())?;
        tx.append_log(
            "export",
            &format!(
                "hashes.json for the Python tool ({} documents)",
                documents.len()
            ),
        )
    });
    match recorded {
        Ok(row) => {
            log_md::append(kb, std::slice::from_ref(&row))?;
            Ok(HandedOver {
                documents: documents.len(),
                log_md,
                unfinished: documents
                    .iter()
                    .filter(|d| d.status != Status::Compiled)
                    .count(),
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

/// What [`sync_log_md`] did to `wiki/log.md`.
#[derive(Debug, PartialEq, Eq)]
pub enum LogMd {
    /// It already rendered the log table.
    Current,
    /// Rewritten from the log table (after importing the Python tool's lines); `imported`
    /// lines of the Python tool became rows first.
    Rewritten { imported: usize },
    /// It holds text that is not in the log table; left as it is (`openkb doctor --fix`
    /// saves that text aside and rewrites the page).
    LeftAsIs,
}

/// Make `wiki/log.md` the rendering of the log table before the Python tool reads and appends
/// to it: lines the Python tool appended earlier become rows first, then the page is rewritten
/// from the table when that loses nothing (every entry on the page is in the table).
fn sync_log_md(session: &WriteSession) -> Result<LogMd> {
    let (kb, store) = (session.kb(), session.store());
    let lines = super::migrate::python_log_lines(kb, &store.reader()?)?;
    super::migrate::import_log_lines(session, &lines, "export")?;
    let expected = log_md::render(&store.reader()?)?;
    let path = kb.log_md();
    let current = crate::fsx::read_if_exists(&path)?;
    if current.as_deref() == Some(expected.as_bytes()) {
        return Ok(if lines.is_empty() {
            LogMd::Current
        } else {
            LogMd::Rewritten {
                imported: lines.len(),
            }
        });
    }
    if let Some(current) = &current {
        let mut in_table: HashMap<LegacyLogEntry, usize> = HashMap::new();
        for entry in log_md::parse_text(&expected) {
            *in_table.entry(entry).or_default() += 1;
        }
        let loses_text = log_md::parse_text(&String::from_utf8_lossy(current))
            .into_iter()
            .any(|entry| match in_table.get_mut(&entry) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    false
                }
                _ => true,
            });
        if loses_text {
            return Ok(LogMd::LeftAsIs);
        }
    }
    fsx::atomic_write(&path, expected.as_bytes())?;
    Ok(LogMd::Rewritten {
        imported: lines.len(),
    })
}
