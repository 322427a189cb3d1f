//! `openkb migrate` as a library call: import a legacy KB's `hashes.json` and `wiki/log.md`
//! into `state.db`, or merge a `hashes.json` that reappeared after migration ("drift").
//!
//! The order of steps is what makes it safe:
//!
//! 1. Take the KB's exclusive lock (shared for a dry run): the Python tool and every other
//!    openkb command wait, and a second `migrate` finds the work done when it gets the lock.
//! 2. Recover the Python tool's crash journals ([`super::journal`]), so a half-applied `add`
//!    is rolled back before anything is read. A journal that cannot be rolled back stops the
//!    migration.
//! 3. Read and validate everything (`hashes.json`, `wiki/log.md`) before writing anything:
//!    a bad file is reported with its name and the problem, and nothing changes.
//! 4. Initial import: build the database as `.openkb/state.db.importing-<pid>`, import every
//!    entry, every log entry, a `migrate` log row and the `imports` record in one transaction
//!    (see `state::build::create_filled`: a private file, filled without journal or syncs,
//!    then switched to WAL, closed and fsynced), and only then hard-link it into place as
//!    `state.db` (never replacing one). A failure at any point removes the temp database, so
//!    `state.db` is absent, never empty beside an unmigrated `hashes.json`. Drift merge: the
//!    same rows in one `BEGIN IMMEDIATE` transaction on the existing `state.db`, then a WAL
//!    checkpoint.
//! 5. After the commit, rename `hashes.json` to `hashes.json.migrated` (or `.migrated.2`, ...
//!    when an earlier migration left one): it is never deleted or overwritten. Then render
//!    the `migrate` row into `wiki/log.md` (which already holds the imported history).
//!
//! A crash after step 4 and before step 5 leaves `state.db` and `hashes.json` side by side;
//! the next `migrate` sees every entry already imported, merges nothing and renames the file.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::hashes_json::{self, Entry};
use super::journal::{self, JournalReport};
use crate::error::{Error, IoContext, Result};
use crate::fsx;
use crate::kb::Kb;
use crate::log_md::{self, LegacyLogEntry};
use crate::names;
use crate::session::WriteSession;
use crate::state::build;
use crate::state::imports::{self, ImportKind, ImportRecord};
use crate::state::python_base::{self, Base};
use crate::state::{Document, LogEntry, Queries, Store, WriteTx};

/// Operation of the log row a migration adds after the imported history.
pub const MIGRATE_OPERATION: &str = "migrate";

/// KB-relative paths of the files a migration reads.
const HASHES_JSON: &str = ".openkb/hashes.json";
const LOG_MD: &str = "wiki/log.md";

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Work out and report what would happen; change nothing.
    pub dry_run: bool,
}

/// What `migrate` found or did.
#[derive(Debug)]
pub enum Outcome {
    /// Neither `hashes.json` nor `state.db`: nothing to import (and nothing was created).
    NothingToMigrate { journals: Vec<JournalReport> },
    /// `state.db` exists and no `hashes.json` is waiting. `log_entries`: the lines the Python
    /// tool appended to `wiki/log.md` since they were last imported or rendered, imported now
    /// (or, for a dry run, to import).
    AlreadyMigrated {
        journals: Vec<JournalReport>,
        log_entries: Vec<LegacyLogEntry>,
    },
    /// The plan was carried out (or, for a dry run, is what would be done).
    Migrated { plan: Box<Plan>, dry_run: bool },
}

/// An entry whose `doc_name` another document already owns; kept in its `extra`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedDocName {
    pub hash: String,
    pub doc_name: String,
    pub owner: String,
}

/// Drift: an entry whose hash `state.db` has, with other metadata. `state.db` keeps its
/// version; the file's stays in the renamed `hashes.json.migrated*`.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    pub hash: String,
    pub name: Option<String>,
    /// Keys whose value differs (or that only one side has), in the file's order first.
    pub keys: Vec<String>,
    /// What both sides did, and what was kept.
    pub resolution: &'static str,
}

/// A document the Python tool removed (missing from the file, unchanged in `state.db` since
/// the hand-over), and whether the merge removes it from `state.db` too.
#[derive(Clone, Debug, PartialEq)]
pub struct Removal {
    pub hash: String,
    pub name: Option<String>,
    /// False: kept and reported, because the Python tool more likely started from an empty
    /// registry than removed it ([`Removal::why_kept`]).
    pub applied: bool,
    pub why_kept: Option<&'static str>,
}

/// Why a base entry missing from the file is not removed.
const SUMMARY_STILL_THERE: &str = "its summary page is still there and no new entry took its name";
const NOTHING_IN_COMMON: &str =
    "the file has no entry in common with the registry handed over (a registry started empty)";

/// Everything an import will do, worked out before anything is written.
#[derive(Debug)]
pub struct Plan {
    pub kind: ImportKind,
    pub source: PathBuf,
    pub source_sha256: String,
    pub source_bytes: u64,
    /// Where `hashes.json` goes after the commit.
    pub moved_to: PathBuf,
    pub entries: usize,
    /// (era label, keys in file order, count), in order of first appearance.
    pub shapes: Vec<(&'static str, Vec<String>, usize)>,
    /// Documents to insert, in registry order.
    pub new_documents: Vec<Document>,
    pub shared_doc_names: Vec<SharedDocName>,
    /// Entries whose paths openkb will not act on (a folder, a KB file, outside the KB, a
    /// doc_name that is not a file name): imported as they are and marked, so that `remove`
    /// only unregisters them. (hash, why).
    pub untrusted: Vec<(String, String)>,
    /// Drift: entries already in `state.db` with the same metadata.
    pub unchanged: usize,
    pub conflicts: Vec<Conflict>,
    /// Drift: entries the Python tool edited since the hand-over (same hash), as they will be
    /// stored (status kept).
    pub updated_documents: Vec<Document>,
    /// Drift: base entries missing from the file.
    pub removals: Vec<Removal>,
    /// Drift: whether a base (what openkb last handed to the Python tool) was known. Without
    /// one the merge only adds and reports conflicts.
    pub has_base: bool,
    /// Log entries to import (drift: those of `wiki/log.md` the log table does not have).
    pub log_entries: Vec<LegacyLogEntry>,
    pub journals: Vec<JournalReport>,
    /// Set once carried out.
    pub record: Option<ImportRecord>,
    /// The `migrate` log row, once committed.
    pub log_row: Option<LogEntry>,
    /// Problems after the commit that did not undo it (e.g. `wiki/log.md` not writable).
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn unparsed_log_entries(&self) -> usize {
        self.log_entries.iter().filter(|e| e.is_unparsed()).count()
    }

    /// A drift merge that would only rename the file.
    pub fn changes_nothing(&self) -> bool {
        self.new_documents.is_empty()
            && self.updated_documents.is_empty()
            && self.applied_removals() == 0
            && self.conflicts.is_empty()
            && self.log_entries.is_empty()
    }

    /// Base entries the Python tool removed that the merge removes from `state.db` too.
    pub fn applied_removals(&self) -> usize {
        self.removals.iter().filter(|r| r.applied).count()
    }

    fn log_description(&self) -> String {
        let n = self.new_documents.len();
        match self.kind {
            ImportKind::Initial => format!("imported {n} documents from hashes.json"),
            ImportKind::DriftMerge => {
                let mut text = format!(
                    "merged hashes.json: {n} added, {} updated, {} removed",
                    self.updated_documents.len(),
                    self.applied_removals()
                );
                if !self.conflicts.is_empty() {
                    text.push_str(&format!(
                        " ({} conflicting entries: state.db kept its version, the file's is in {})",
                        self.conflicts.len(),
                        file_name(&self.moved_to)
                    ));
                }
                text
            }
        }
    }
}

/// Migrate `kb` (see the module docs for the steps).
pub fn migrate(kb: &Kb, options: Options) -> Result<Outcome> {
    let lock = if options.dry_run {
        kb.lock_shared()?
    } else {
        kb.lock_exclusive()?
    };
    // Settled before anything is read, so that a half-applied Python `add` is never imported.
    let journals = if options.dry_run {
        journal::inspect(kb)?
    } else {
        crate::session::settle_python_journals(kb, &lock)?
    };
    // A KB with a state.db gets a write session for whatever this run writes into it. It is
    // nested in this function's lock, so it settles openkb's own interrupted work only when
    // told to (here, before anything is read).
    let session = if !options.dry_run && kb.state_db().exists() {
        let session = kb.write_session()?;
        if lock.is_outermost() {
            session.settle()?;
        }
        Some(session)
    } else {
        None
    };

    let hashes_path = kb.hashes_json();
    let Some(bytes) = read_kb_file(kb, options.dry_run, &hashes_path, HASHES_JSON)? else {
        return if kb.state_db().exists() {
            let log_entries = import_python_log_lines(kb, session.as_ref())?;
            Ok(Outcome::AlreadyMigrated {
                journals,
                log_entries,
            })
        } else {
            Ok(Outcome::NothingToMigrate { journals })
        };
    };
    // An initial import parses straight into documents; a drift merge compares entries.
    let initial = !kb.state_db().exists();
    let (parsed, sha256, legacy_log) =
        parse_source(kb, &hashes_path, &bytes, initial, options.dry_run)?;
    let source = Source {
        path: hashes_path,
        sha256,
        bytes: bytes.len() as u64,
        moved_to: free_migrated_name(kb)?,
    };
    drop(bytes);

    match parsed {
        Parsed::Entries(entries) => {
            let plan = merge(kb, session.as_ref(), source, entries, legacy_log, journals)?;
            Ok(Outcome::Migrated {
                plan: Box::new(plan),
                dry_run: options.dry_run,
            })
        }
        Parsed::Documents((documents, shapes)) => {
            let mut plan = plan_initial(source, documents, shapes, legacy_log, journals);
            if !options.dry_run {
                import_into_new_db(kb, &mut plan)?;
                crate::faults::crash_point("migrate-rename");
                finish(kb, &mut plan)?;
            }
            Ok(Outcome::Migrated {
                plan: Box::new(plan),
                dry_run: options.dry_run,
            })
        }
    }
}

/// A KB file's bytes (`None`: missing). A dry run does not roll journals back, so it reads
/// the KB as the rollback will leave it.
fn read_kb_file(kb: &Kb, dry_run: bool, path: &Path, rel: &str) -> Result<Option<Vec<u8>>> {
    if dry_run {
        journal::content_after_recovery(kb, rel)
    } else {
        fsx::read_if_exists(path)
    }
}

/// Parse `hashes.json` (`bytes`) and, on the other core, checksum it and read `wiki/log.md`.
/// The registry parse is the long pole.
fn parse_source(
    kb: &Kb,
    hashes_path: &Path,
    bytes: &[u8],
    initial: bool,
    dry_run: bool,
) -> Result<(Parsed, String, Vec<LegacyLogEntry>)> {
    let log_path = kb.log_md();
    std::thread::scope(|scope| {
        let side = scope.spawn(|| -> Result<(String, Vec<LegacyLogEntry>)> {
            let sha256 = crate::hash::sha256_hex(bytes);
            let log = match read_kb_file(kb, dry_run, &log_path, LOG_MD)? {
                Some(text) => log_md::parse(&log_path, &text)?,
                None => Vec::new(),
            };
            Ok((sha256, log))
        });
        let parsed = if initial {
            hashes_json::parse_documents(hashes_path, bytes).map(Parsed::Documents)
        } else {
            hashes_json::parse(hashes_path, bytes).map(Parsed::Entries)
        };
        let side = side
            .join()
            .unwrap_or_else(|_| Err(Error::Invalid("reading wiki/log.md failed".into())));
        let (sha256, log) = side?;
        Ok((parsed?, sha256, log))
    })
}

/// Merge the Python tool's entries into an existing `state.db`: a plan only, under a read
/// session, for a dry run (`session` is `None`); else committed, and `hashes.json` moved.
fn merge(
    kb: &Kb,
    session: Option<&WriteSession>,
    source: Source,
    entries: Vec<Entry>,
    legacy_log: Vec<LegacyLogEntry>,
    journals: Vec<JournalReport>,
) -> Result<Plan> {
    let Some(session) = session else {
        let read = kb.read_session()?;
        return plan_drift(kb, &read, source, entries, legacy_log, journals);
    };
    let mut plan = plan_drift(kb, session, source, entries, legacy_log, journals)?;
    // The very file the last import read, with nothing to merge: a migration killed after its
    // commit and before the rename. Finishing it is the rename alone; another record and
    // `migrate` row would say something happened twice.
    if plan.changes_nothing() && is_last_import(session, &plan.source_sha256)? {
        // Its `migrate` row is committed; the kill may have come before its line reached
        // wiki/log.md too.
        plan.log_row = unrendered_migrate_row(kb, session.store())?;
    } else {
        commit(session, &mut plan)?;
        session.checkpoint()?;
    }
    crate::faults::crash_point("migrate-rename");
    finish(kb, &mut plan)?;
    Ok(plan)
}

enum Parsed {
    Entries(Vec<Entry>),
    Documents((Vec<Document>, hashes_json::Shapes)),
}

struct Source {
    path: PathBuf,
    sha256: String,
    bytes: u64,
    moved_to: PathBuf,
}

fn new_plan(
    kind: ImportKind,
    source: Source,
    entries: &[Entry],
    log_entries: Vec<LegacyLogEntry>,
    journals: Vec<JournalReport>,
) -> Plan {
    Plan {
        kind,
        source: source.path,
        source_sha256: source.sha256,
        source_bytes: source.bytes,
        moved_to: source.moved_to,
        entries: entries.len(),
        shapes: shapes(entries),
        new_documents: Vec::new(),
        shared_doc_names: Vec::new(),
        untrusted: Vec::new(),
        unchanged: 0,
        conflicts: Vec::new(),
        updated_documents: Vec::new(),
        removals: Vec::new(),
        has_base: false,
        log_entries,
        journals,
        record: None,
        log_row: None,
        warnings: Vec::new(),
    }
}

fn plan_initial(
    source: Source,
    mut documents: Vec<Document>,
    shapes: hashes_json::Shapes,
    log_entries: Vec<LegacyLogEntry>,
    journals: Vec<JournalReport>,
) -> Plan {
    let mut plan = new_plan(ImportKind::Initial, source, &[], log_entries, journals);
    plan.entries = documents.len();
    plan.shapes = shapes;
    // First pass, borrowing: which documents share a doc_name with an earlier one.
    let mut shared = Vec::new();
    {
        let mut owners: HashMap<&str, &str> = HashMap::with_capacity(documents.len());
        for (i, doc) in documents.iter().enumerate() {
            if let Some(doc_name) = &doc.doc_name {
                match owners.get(doc_name.as_str()) {
                    Some(owner) => {
                        shared.push(i);
                        plan.shared_doc_names.push(SharedDocName {
                            hash: doc.hash.clone(),
                            doc_name: doc_name.clone(),
                            owner: (*owner).to_owned(),
                        });
                    }
                    None => {
                        owners.insert(doc_name, &doc.hash);
                    }
                }
            }
        }
    }
    for i in shared {
        super::move_doc_name_to_extra(&mut documents[i]);
    }
    plan.new_documents = documents;
    plan.untrusted = untrusted_of(plan.new_documents.iter());
    plan
}

/// The documents whose entries name paths openkb will not act on, and why.
fn untrusted_of<'a>(documents: impl Iterator<Item = &'a Document>) -> Vec<(String, String)> {
    documents
        .filter_map(|doc| {
            let reasons = crate::ingest::remove::untrusted_reasons(doc);
            (!reasons.is_empty()).then(|| (doc.hash.clone(), reasons.join("; ")))
        })
        .collect()
}

/// The three-way merge: base = what openkb last handed to the Python tool
/// ([`python_base`]), theirs = the reappeared file, ours = `state.db`. A side that did not
/// change an entry since the base takes the other side's change (addition, removal, edit);
/// when both changed one document, `state.db` keeps its version and the file's stays in the
/// moved-aside `hashes.json.migrated*` (reported as a conflict). Nothing is lost either way.
fn plan_drift(
    kb: &Kb,
    store: &Store,
    source: Source,
    entries: Vec<Entry>,
    legacy_log: Vec<LegacyLogEntry>,
    journals: Vec<JournalReport>,
) -> Result<Plan> {
    let reader = store.reader()?;
    let new_log = log_entries_not_in_table(&reader, legacy_log)?;
    let mut plan = new_plan(ImportKind::DriftMerge, source, &entries, new_log, journals);
    let base = load_base(kb, &reader)?;
    plan.has_base = base.is_some();
    let base = base.unwrap_or_else(|| MergeBase::new(Vec::new()));
    let removed = plan_removals(kb, &reader, &mut plan, &base, &entries)?;
    let mut claimed: HashMap<String, String> = HashMap::new();
    for entry in entries {
        plan_entry(&reader, &mut plan, &base, &removed, &mut claimed, entry)?;
    }
    // An entry the Python tool edited is judged again, like a new one.
    plan.untrusted = untrusted_of(plan.new_documents.iter().chain(&plan.updated_documents));
    Ok(plan)
}

/// The base of a three-way merge: the registry as last handed to (or imported from) the
/// Python tool, if known.
fn load_base(kb: &Kb, reader: &impl Queries) -> Result<Option<MergeBase>> {
    let entries = match python_base::load(reader)? {
        Some(Base::Entries(entries)) => Some(entries),
        Some(Base::File { kept_as, sha256 }) => base_from_kept_file(kb, &kept_as, &sha256)?,
        None => match imports::list(reader)?.pop() {
            Some(last) => base_from_kept_file(kb, Path::new(&last.moved_to), &last.source_sha256)?,
            None => None,
        },
    };
    Ok(entries.map(MergeBase::new))
}

/// The base's entries, by hash and in registry order.
struct MergeBase {
    order: Vec<String>,
    entries: HashMap<String, Map<String, Value>>,
}

impl MergeBase {
    fn new(base: Vec<(String, Map<String, Value>)>) -> MergeBase {
        MergeBase {
            order: base.iter().map(|(hash, _)| hash.clone()).collect(),
            entries: base.into_iter().collect(),
        }
    }
}

/// The base entries the Python tool's file lacks: removed by it (applied, or kept with the
/// reason), or conflicts when openkb changed them meanwhile. Returns the hashes removed.
fn plan_removals(
    kb: &Kb,
    reader: &impl Queries,
    plan: &mut Plan,
    base: &MergeBase,
    entries: &[Entry],
) -> Result<HashSet<String>> {
    let in_file: HashSet<&str> = entries.iter().map(|e| e.hash.as_str()).collect();
    // Names of the Python tool's new entries: an entry it replaced by an edited file (same
    // doc_name, new hash) is a removal even though the summary page is still there.
    let new_names: HashSet<String> = entries
        .iter()
        .filter(|e| !base.entries.contains_key(&e.hash))
        .map(|e| {
            let text = |k: &str| e.meta.get(k).and_then(Value::as_str);
            names::name_key(text("doc_name"), text("name"))
        })
        .collect();
    // A Python tool that found no hashes.json (moved away by `migrate`) starts from an empty
    // registry: its file then lacks every base entry without having removed any.
    let started_empty =
        !base.entries.is_empty() && !entries.iter().any(|e| base.entries.contains_key(&e.hash));
    let mut removed: HashSet<String> = HashSet::new();
    for hash in &base.order {
        if in_file.contains(hash.as_str()) {
            continue;
        }
        let Some(doc) = reader.get(hash)? else {
            continue; // removed on both sides
        };
        let name = doc.name.clone();
        if !differing_keys(&base.entries[hash], &super::entry_of(&doc)).is_empty() {
            plan.conflicts.push(Conflict {
                hash: hash.clone(),
                name,
                keys: vec!["(removed by the Python tool)".into()],
                resolution: "changed by openkb, removed by the Python tool: kept in state.db",
            });
            continue;
        }
        let summary_gone = doc.display_doc_name().is_none_or(|n| {
            !kb.wiki_dir()
                .join("summaries")
                .join(format!("{n}.md"))
                .exists()
        });
        let why_kept = if started_empty {
            Some(NOTHING_IN_COMMON)
        } else if summary_gone || new_names.contains(&doc.name_key()) {
            None
        } else {
            Some(SUMMARY_STILL_THERE)
        };
        if why_kept.is_none() {
            removed.insert(hash.clone());
        }
        plan.removals.push(Removal {
            hash: hash.clone(),
            name,
            applied: why_kept.is_none(),
            why_kept,
        });
    }
    Ok(removed)
}

/// One entry of the Python tool's file, merged three ways: unchanged, a conflict, an update
/// or a new document (with a doc_name another document owns kept in its extra keys).
/// `claimed`: the doc_names the file's earlier entries took.
fn plan_entry(
    reader: &impl Queries,
    plan: &mut Plan,
    base: &MergeBase,
    removed: &HashSet<String>,
    claimed: &mut HashMap<String, String>,
    entry: Entry,
) -> Result<()> {
    let base_entry = base.entries.get(&entry.hash);
    let name = entry
        .meta
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let existing = reader.get(&entry.hash)?;
    let theirs_changed = base_entry.is_none_or(|b| !differing_keys(&entry.meta, b).is_empty());
    match (&existing, base_entry) {
        (Some(existing), _) => {
            let stored = super::entry_of(existing);
            let keys = differing_keys(&entry.meta, &stored);
            if keys.is_empty() || !theirs_changed {
                plan.unchanged += 1; // same on both sides, or only openkb changed it
                return Ok(());
            }
            if !base_entry.is_some_and(|b| differing_keys(b, &stored).is_empty()) {
                plan.conflicts.push(Conflict {
                    hash: entry.hash.clone(),
                    name,
                    keys,
                    resolution: "changed on both sides: state.db keeps its version",
                });
                return Ok(());
            }
        }
        (None, Some(_)) => {
            if theirs_changed {
                plan.conflicts.push(Conflict {
                    hash: entry.hash.clone(),
                    name,
                    keys: vec!["(removed by openkb)".into()],
                    resolution: "removed by openkb, changed by the Python tool: stays removed",
                });
            } else {
                plan.unchanged += 1; // removed by openkb only: stays removed
            }
            return Ok(());
        }
        (None, None) => {}
    }
    let owner = match entry.meta.get("doc_name") {
        Some(Value::String(doc_name)) => {
            match doc_name_owner(reader, removed, claimed, doc_name, &entry.hash)? {
                Some(owner) => Some((doc_name.clone(), owner)),
                None => {
                    claimed.insert(doc_name.clone(), entry.hash.clone());
                    None
                }
            }
        }
        _ => None,
    };
    if let Some((doc_name, owner)) = &owner {
        plan.shared_doc_names.push(SharedDocName {
            hash: entry.hash.clone(),
            doc_name: doc_name.clone(),
            owner: owner.clone(),
        });
    }
    let mut doc = super::document_from_entry(entry, owner.is_some());
    match existing {
        Some(existing) => {
            // Only the Python tool changed it: take its version, keep openkb's lifecycle.
            doc.status = existing.status;
            doc.error = existing.error;
            plan.updated_documents.push(doc);
        }
        None => plan.new_documents.push(doc),
    }
    Ok(())
}

/// The document other than `hash` that owns `doc_name` after the merge: an earlier entry of
/// the file, or a registered document the merge does not remove.
fn doc_name_owner(
    reader: &impl Queries,
    removed: &HashSet<String>,
    claimed: &HashMap<String, String>,
    doc_name: &str,
    hash: &str,
) -> Result<Option<String>> {
    if let Some(owner) = claimed.get(doc_name) {
        return Ok((owner != hash).then(|| owner.clone()));
    }
    Ok(reader
        .find_by_doc_name(doc_name)?
        .filter(|doc| doc.hash != hash && !removed.contains(&doc.hash))
        .map(|doc| doc.hash))
}

/// The entries of `wiki/log.md` the log table does not have: lines the Python tool appended
/// (its `query`, `ingest`, `remove` entries) since openkb last imported or rendered the log.
/// Call under the exclusive lock (a shared one for a read-only look).
pub fn python_log_lines(kb: &Kb, reader: &impl Queries) -> Result<Vec<LegacyLogEntry>> {
    let log_path = kb.log_md();
    python_log_lines_in(&log_path, fsx::read_if_exists(&log_path)?, reader)
}

fn python_log_lines_in(
    log_path: &Path,
    log_md: Option<Vec<u8>>,
    reader: &impl Queries,
) -> Result<Vec<LegacyLogEntry>> {
    let legacy_log = match log_md {
        Some(text) => log_md::parse(log_path, &text)?,
        None => return Ok(Vec::new()),
    };
    // Only real entries: text that is not `## [time] op | text` was not appended by a tool.
    let entries = legacy_log
        .into_iter()
        .filter(|e| !e.is_unparsed())
        .collect();
    log_entries_not_in_table(reader, entries)
}

/// Import the Python tool's new `wiki/log.md` lines as log rows, in file order, with a
/// `migrate` row after them, in `session`; without one (a dry run), only find them. The page
/// itself is not rewritten: it already holds them.
fn import_python_log_lines(kb: &Kb, session: Option<&WriteSession>) -> Result<Vec<LegacyLogEntry>> {
    let log_path = kb.log_md();
    let Some(session) = session else {
        let read = kb.read_session()?;
        let log_md = journal::content_after_recovery(kb, LOG_MD)?;
        return python_log_lines_in(&log_path, log_md, &read.reader()?);
    };
    let lines = python_log_lines_in(
        &log_path,
        fsx::read_if_exists(&log_path)?,
        &session.reader()?,
    )?;
    import_log_lines(session, &lines, MIGRATE_OPERATION)?;
    Ok(lines)
}

/// Import `lines` (from [`python_log_lines`]) as log rows in order, followed by a row of
/// `operation` saying so, rendered into `wiki/log.md` (which already holds the lines). Nothing
/// when `lines` is empty.
pub fn import_log_lines(
    session: &WriteSession,
    lines: &[LegacyLogEntry],
    operation: &str,
) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let description = format!(
        "imported {} wiki/log.md entries appended by the Python tool",
        lines.len()
    );
    let row = session.write(|tx| {
        imports::append_log_entries(
            tx,
            lines.iter().map(|e| {
                (
                    e.timestamp.as_str(),
                    e.operation.as_str(),
                    e.description.as_str(),
                )
            }),
        )?;
        tx.append_log(operation, &description)
    })?;
    log_md::append(session.kb(), std::slice::from_ref(&row))
}

/// The last `migrate` log row, when `wiki/log.md` does not show it yet.
fn unrendered_migrate_row(kb: &Kb, store: &Store) -> Result<Option<LogEntry>> {
    let Some(row) = store
        .log_tail(Some(1), Some(MIGRATE_OPERATION))?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let log_md = fsx::read_if_exists(&kb.log_md())?.unwrap_or_default();
    let line = log_md::entry(&row);
    Ok((!String::from_utf8_lossy(&log_md).contains(line.trim())).then_some(row))
}

/// True when the last import read a file with this SHA-256.
fn is_last_import(store: &Store, sha256: &str) -> Result<bool> {
    Ok(imports::list(&store.reader()?)?
        .last()
        .is_some_and(|last| last.source_sha256 == sha256))
}

/// The entries of the `hashes.json` a migration imported and kept as `kept_as`, when it is
/// still there unchanged (`sha256`). The KB may have moved since: the file is looked up by
/// name in this KB's `.openkb/`. Gone or changed: no base (the merge then only adds).
fn base_from_kept_file(
    kb: &Kb,
    kept_as: &Path,
    sha256: &str,
) -> Result<Option<python_base::Entries>> {
    let name = file_name(kept_as);
    if !name.starts_with("hashes.json") {
        return Ok(None); // not a name a migration gives: nothing to look up
    }
    let path = kb.openkb_dir().join(name);
    let Some(bytes) = fsx::read_if_exists(&path)? else {
        return Ok(None);
    };
    if crate::hash::sha256_hex(&bytes) != sha256 {
        return Ok(None);
    }
    Ok(hashes_json::parse(&path, &bytes)
        .ok()
        .map(|entries| entries.into_iter().map(|e| (e.hash, e.meta)).collect()))
}

/// Keys whose value (or position) differs between the file's entry and the stored one.
fn differing_keys(file: &Map<String, Value>, stored: &Map<String, Value>) -> Vec<String> {
    let mut keys: Vec<String> = file
        .iter()
        .filter(|(k, v)| stored.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    keys.extend(stored.keys().filter(|k| !file.contains_key(*k)).cloned());
    let same_order = file.keys().eq(stored.keys());
    if keys.is_empty() && !same_order {
        keys.push("(key order)".into());
    }
    keys
}

/// The entries of `wiki/log.md` the log table does not have yet (the Python tool's appends
/// since the migration), as a multiset difference in file order.
fn log_entries_not_in_table(
    reader: &impl Queries,
    legacy_log: Vec<LegacyLogEntry>,
) -> Result<Vec<LegacyLogEntry>> {
    // A row is known by how it reads back from the page (its rendering parsed), so however
    // log.md renders a description (escaping, several lines), openkb's own lines are never
    // mistaken for the Python tool's.
    let mut known: HashMap<(String, String, String), usize> = HashMap::new();
    // Imported `unparsed` text is known by its own fields (it renders differently).
    reader.for_each_log_entry(&mut |row| {
        let rendered = log_md::parse_text(&log_md::entry(&row));
        let raw = (row.timestamp, row.operation, row.description);
        for e in rendered {
            let key = (e.timestamp, e.operation, e.description);
            if key != raw {
                *known.entry(key).or_default() += 1;
            }
        }
        *known.entry(raw).or_default() += 1;
        Ok(())
    })?;
    Ok(legacy_log
        .into_iter()
        .filter(|e| {
            let key = (
                e.timestamp.clone(),
                e.operation.clone(),
                e.description.clone(),
            );
            match known.get_mut(&key) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    false
                }
                _ => true,
            }
        })
        .collect())
}

fn shapes(entries: &[Entry]) -> hashes_json::Shapes {
    let mut shapes = Vec::new();
    for entry in entries {
        let keys: Vec<&str> = entry.meta.keys().map(String::as_str).collect();
        let doc_type = entry.meta.get("type").and_then(Value::as_str);
        hashes_json::add_shape(&mut shapes, &keys, doc_type);
    }
    shapes
}

/// The import record and `migrate` log description of `plan`.
fn record_of(plan: &Plan) -> ImportRecord {
    ImportRecord {
        id: 0,
        kind: plan.kind,
        source_path: plan.source.display().to_string(),
        source_sha256: plan.source_sha256.clone(),
        source_bytes: plan.source_bytes,
        moved_to: plan.moved_to.display().to_string(),
        entries: plan.entries as u64,
        new_entries: plan.new_documents.len() as u64,
        conflicting_entries: plan.conflicts.len() as u64,
        log_entries: plan.log_entries.len() as u64,
        journals_recovered: plan.journals.iter().filter(|j| j.recovered()).count() as u64,
        imported_at: String::new(),
    }
}

/// The whole import inside one transaction: documents, log history, the `migrate` row, the
/// record.
fn write_import(
    tx: &WriteTx<'_>,
    plan: &Plan,
    record: &ImportRecord,
    description: &str,
) -> Result<(ImportRecord, LogEntry)> {
    for removal in plan.removals.iter().filter(|r| r.applied) {
        tx.remove_document(&removal.hash)?;
    }
    for doc in &plan.updated_documents {
        tx.upsert_document(doc)?;
    }
    imports::append_documents(tx, &plan.new_documents)?;
    for (hash, reason) in &plan.untrusted {
        tx.mark_untrusted(hash, reason)?;
    }
    imports::append_log_entries(
        tx,
        plan.log_entries.iter().map(|e| {
            (
                e.timestamp.as_str(),
                e.operation.as_str(),
                e.description.as_str(),
            )
        }),
    )?;
    let row = tx.append_log(MIGRATE_OPERATION, description)?;
    python_base::record_migrate(
        tx,
        &plan.source_sha256,
        plan.entries,
        &plan.moved_to.display().to_string(),
    )?;
    Ok((imports::record(tx, record)?, row))
}

/// Drift merge into the existing `state.db`, in one `BEGIN IMMEDIATE` transaction.
fn commit(session: &WriteSession, plan: &mut Plan) -> Result<()> {
    let record = record_of(plan);
    let description = plan.log_description();
    let (stored, row) = session.write(|tx| write_import(tx, plan, &record, &description))?;
    plan.record = Some(stored);
    plan.log_row = Some(row);
    Ok(())
}

/// Initial import into a temp database beside `state.db`, linked into place only when it is
/// complete, checkpointed and closed.
fn import_into_new_db(kb: &Kb, plan: &mut Plan) -> Result<()> {
    build::remove_stale_builds(&kb.openkb_dir())?;
    let record = record_of(plan);
    let description = plan.log_description();
    let rows = plan.new_documents.len() + plan.log_entries.len();
    let (stored, row) = build::create_filled(&kb.state_db(), rows, |tx| {
        write_import(tx, plan, &record, &description)
    })?;
    plan.record = Some(stored);
    plan.log_row = Some(row);
    Ok(())
}

/// Rename `hashes.json` away and render the `migrate` row, after the commit.
fn finish(kb: &Kb, plan: &mut Plan) -> Result<()> {
    fs::rename(&plan.source, &plan.moved_to).map_err(|e| {
        Error::Invalid(format!(
            "the import is committed in {}, but {} could not be renamed to {}: {e}\n  run \
             `openkb migrate` again to finish (it will find every entry already imported)",
            kb.state_db().display(),
            plan.source.display(),
            file_name(&plan.moved_to)
        ))
    })?;
    fsx::fsync_dir(&kb.openkb_dir())?;
    if let Some(row) = &plan.log_row
        && let Err(e) = log_md::append(kb, std::slice::from_ref(row))
    {
        plan.warnings.push(format!(
            "the import is complete, but its line could not be added to wiki/log.md: {e}"
        ));
    }
    Ok(())
}

/// `hashes.json.migrated`, or the first free `hashes.json.migrated.N` (N from 2).
fn free_migrated_name(kb: &Kb) -> Result<PathBuf> {
    let dir = kb.openkb_dir();
    let taken: HashSet<String> = fs::read_dir(&dir)
        .with_path("cannot read folder", &dir)?
        .filter_map(|item| item.ok())
        .map(|item| item.file_name().to_string_lossy().into_owned())
        .collect();
    let mut candidate = "hashes.json.migrated".to_owned();
    let mut n = 1;
    while taken.contains(&candidate) {
        n += 1;
        candidate = format!("hashes.json.migrated.{n}");
    }
    Ok(dir.join(candidate))
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
