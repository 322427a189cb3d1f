//! Copying a KB's whole state from one backend to another (`openkb migrate --to-postgres` and
//! `--to-sqlite`), and the fingerprint that proves the copy.
//!
//! The copy goes through the storage traits only, so it is the same code in both directions:
//! documents keep their registry positions, statuses and timestamps, log entries their ids and
//! timestamps, import records their times, untrusted marks their reasons, and the latest
//! Python hand-over stays the base of a later three-way merge. It runs inside the target's one
//! write transaction, and [`copy_all`] compares the target's [`Fingerprint`] with the
//! source's before that transaction may commit: a copy that differs is never committed.
//!
//! Not copied, by design: meta (each backend keeps its own identity, schema version and
//! settings), and intents (a move starts only from a settled KB and refuses otherwise). Of the
//! latest hand-over only what `state::python_base` reads back is carried: the kept file and its
//! SHA-256 (a `migrate` hand-over), or the entries (an `export`, fingerprinted anew).

use sha2::{Digest, Sha256};

use super::WriteTx;
use super::backend::{Reads, Writes};
use super::python_base::Base;
use crate::error::{Error, Result};

/// What a copy must preserve, in a form cheap to compare: counts, and SHA-256 digests of the
/// registry (every field of every document, registry order) and of the log (every field of
/// every entry, id order).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Fingerprint {
    pub documents: u64,
    pub log_entries: u64,
    pub imports: u64,
    pub untrusted: u64,
    pub registry_sha256: String,
    pub log_sha256: String,
}

/// The fingerprint of the state `q` reads.
pub fn fingerprint(q: &dyn Reads) -> Result<Fingerprint> {
    let (mut documents, mut registry) = (0u64, Sha256::new());
    q.for_each_document(&mut |doc| {
        documents += 1;
        digest_json(&mut registry, &doc)
    })?;
    let (mut log_entries, mut log) = (0u64, Sha256::new());
    q.for_each_log_entry(&mut |entry| {
        log_entries += 1;
        digest_json(&mut log, &entry)
    })?;
    Ok(Fingerprint {
        documents,
        log_entries,
        imports: q.imports()?.len() as u64,
        untrusted: q.untrusted_entries()?.len() as u64,
        registry_sha256: hex(registry),
        log_sha256: hex(log),
    })
}

/// One JSON line per item: unambiguous, since JSON escapes every newline inside a value.
fn digest_json(hasher: &mut Sha256, item: &impl serde::Serialize) -> Result<()> {
    let line = serde_json::to_vec(item)
        .map_err(|e| Error::Invalid(format!("cannot serialize a row for the fingerprint: {e}")))?;
    hasher.update(&line);
    hasher.update(b"\n");
    Ok(())
}

fn hex(hasher: Sha256) -> String {
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Copy everything of `from` into `to` (a target holding no documents and no log), then check
/// that `to` now reads back the same fingerprint as `from`. Returns it. Refuses a source
/// with unfinished intents: they describe files mid-operation that only recovery may settle.
pub fn copy_all(from: &dyn Reads, to: &WriteTx<'_>, target: &str) -> Result<Fingerprint> {
    let to = to.inner;
    let pending = from.unfinished_intent_count()?;
    if pending > 0 {
        return Err(Error::Invalid(format!(
            "{}: {pending} interrupted operation(s) are not settled yet; run `openkb doctor \
             --fix` (or any command that writes) first, then move the KB; nothing was changed",
            from.location().display()
        )));
    }
    if to.counts()?.total() > 0 || to.log_count()? > 0 {
        return Err(Error::Invalid(format!(
            "{target}: already holds documents or log entries; a KB is moved only into an \
             empty state; nothing was changed"
        )));
    }
    let source = fingerprint(from)?;
    in_batches(
        |visit| from.for_each_document(visit),
        |docs| to.copy_documents(docs),
    )?;
    in_batches(
        |visit| from.for_each_log_entry(visit),
        |entries| to.copy_log_entries(entries),
    )?;
    for record in from.imports()? {
        to.record_import(&record, &record.imported_at)?;
    }
    for (hash, reason) in from.untrusted_entries()? {
        to.mark_untrusted(&hash, &reason)?;
    }
    copy_python_base(from, to)?;
    let copied = fingerprint(to)?;
    if copied != source {
        return Err(Error::Invalid(format!(
            "{target}: the copy does not read back as the original (expected {source:?}, read \
             {copied:?}); nothing was committed and the KB is unchanged"
        )));
    }
    Ok(source)
}

/// Rows copied per call: one statement each on a server, so a 100k-document KB is a hundred
/// round trips, not a hundred thousand, and at most this many rows are held at once.
const BATCH: usize = 1000;

/// Feed what `scan` visits to `store` in batches of [`BATCH`], in order.
fn in_batches<T>(
    scan: impl FnOnce(&mut dyn FnMut(T) -> Result<()>) -> Result<()>,
    mut store: impl FnMut(&[T]) -> Result<()>,
) -> Result<()> {
    let mut batch = Vec::with_capacity(BATCH);
    scan(&mut |item| {
        batch.push(item);
        if batch.len() == BATCH {
            store(&batch)?;
            batch.clear();
        }
        Ok(())
    })?;
    if !batch.is_empty() {
        store(&batch)?;
    }
    Ok(())
}

fn copy_python_base(from: &dyn Reads, to: &dyn Writes) -> Result<()> {
    let now = super::utc_now();
    match from.python_base()? {
        None => Ok(()),
        Some(Base::File { kept_as, sha256 }) => {
            to.record_python_migrate(&sha256, 0, &kept_as.to_string_lossy(), &now)
        }
        Some(Base::Entries(entries)) => {
            let mut digest = Sha256::new();
            for (hash, entry) in &entries {
                digest_json(&mut digest, &(hash, entry))?;
            }
            to.record_python_export(&hex(digest), &mut entries.into_iter(), &now)
        }
    }
}
