//! Handing the KB to the Python tool and back.
//!
//! Out: [`export_for_python`] writes `.openkb/hashes.json` exactly as the Python tool 0.4
//! writes it and records those entries as the base ([`crate::state::python_base`]). Back:
//! `openkb migrate` merges the `hashes.json` the Python tool left against that base (additions,
//! removals and edits; see `migrate::plan_drift`) and imports the lines it appended to
//! `wiki/log.md`.

use crate::error::{Error, Result};
use crate::fsx;
use crate::kb::Kb;
use crate::state::python_base::{self, Handover};
use crate::state::{Queries, Status, Store};

/// What [`export_for_python`] wrote.
#[derive(Debug)]
pub struct HandedOver {
    pub documents: usize,
    /// Documents not compiled (pending or failed), which the Python tool sees as registered.
    pub unfinished: usize,
}

/// Write `.openkb/hashes.json` for the Python tool and record it as the base of the next
/// merge. The caller holds the KB's exclusive lock. Refuses when a `hashes.json` is already
/// there (the Python tool's changes would be overwritten: `openkb migrate` merges them first).
/// The file is written first and the base recorded after; if recording fails the file is
/// removed again, so the base always describes what the Python tool was given.
pub fn export_for_python(kb: &Kb, store: &Store) -> Result<HandedOver> {
    let path = kb.hashes_json();
    if path.exists() {
        return Err(Error::Invalid(format!(
            "{} already exists (the Python tool's registry, not merged yet); run `openkb \
             migrate` to merge it first; nothing was written",
            path.display()
        )));
    }
    store.ensure_writable()?;
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
    let sha256 = crate::ingest::hash::sha256_hex(text.as_bytes());
    let entries = documents
        .iter()
        .map(|doc| (doc.hash.clone(), super::entry_of(doc)));
    let recorded = store.write(|tx| {
        python_base::record(tx, Handover::Export, &sha256, entries.clone())?;
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
            kb.append_log_md(&row)?;
            Ok(HandedOver {
                documents: documents.len(),
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
