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
//!    (see `state::imports::build_database`: a private file, filled without journal or syncs,
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
use super::log_md::{self, LegacyLogEntry};
use crate::error::{Error, IoContext, Result};
use crate::fsx;
use crate::kb::Kb;
use crate::state::build;
use crate::state::imports::{self, ImportKind, ImportRecord};
use crate::state::{Document, LogEntry, Queries, Store, WriteTx};

/// Operation of the log row a migration adds after the imported history.
pub const MIGRATE_OPERATION: &str = "migrate";

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
    /// `state.db` exists and no `hashes.json` is waiting.
    AlreadyMigrated { journals: Vec<JournalReport> },
    /// The plan was carried out (or, for a dry run, is what would be done).
    Migrated { plan: Box<Plan>, dry_run: bool },
    /// `hashes.json` is the very file an earlier migration committed (same checksum) before it
    /// was killed: that migration was finished (or, for a dry run, would be) by renaming the
    /// file and rendering its log line; nothing was imported again.
    Resumed {
        journals: Vec<JournalReport>,
        record: Box<ImportRecord>,
        moved_to: PathBuf,
        dry_run: bool,
    },
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
}

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
    /// Drift: entries already in `state.db` with the same metadata.
    pub unchanged: usize,
    pub conflicts: Vec<Conflict>,
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

    fn log_description(&self) -> String {
        let n = self.new_documents.len();
        match self.kind {
            ImportKind::Initial => format!("imported {n} documents from hashes.json"),
            ImportKind::DriftMerge if self.conflicts.is_empty() => {
                format!("merged {n} documents from hashes.json")
            }
            ImportKind::DriftMerge => format!(
                "merged {n} documents from hashes.json ({} conflicting entries kept in {})",
                self.conflicts.len(),
                file_name(&self.moved_to)
            ),
        }
    }
}

/// Migrate `kb` (see the module docs for the steps).
pub fn migrate(kb: &Kb, options: Options) -> Result<Outcome> {
    let _lock = if options.dry_run {
        kb.lock_shared()?
    } else {
        kb.lock_exclusive()?
    };
    let journals = if options.dry_run {
        journal::inspect(kb)?
    } else {
        journal::recover(kb)?
    };
    if !options.dry_run && journals.iter().any(JournalReport::blocks_import) {
        let lines: Vec<String> = journals.iter().map(|j| j.describe(false)).collect();
        return Err(Error::Invalid(format!(
            "{}: a crash journal of the Python tool could not be recovered, so the KB may hold a \
             half-applied change; nothing was imported\n  {}\n  fix the cause and run `openkb \
             migrate` again",
            kb.root().display(),
            lines.join("\n  ")
        )));
    }

    let hashes_path = kb.hashes_json();
    let Some(bytes) = read_if_exists(&hashes_path)? else {
        return Ok(if kb.state_db().exists() {
            Outcome::AlreadyMigrated { journals }
        } else {
            Outcome::NothingToMigrate { journals }
        });
    };
    let initial = !kb.state_db().exists();
    if !initial && let Some(resumed) = resume_interrupted(kb, &bytes, &journals, options)? {
        return Ok(resumed);
    }
    // The registry parse is the long pole; the checksum and log.md go on the other core. An
    // initial import parses straight into documents; a drift merge compares entries.
    let log_path = kb.log_md();
    let (parsed, (sha256, legacy_log)) = std::thread::scope(|scope| {
        let side = scope.spawn(|| -> Result<(String, Vec<LegacyLogEntry>)> {
            let sha256 = crate::ingest::hash::sha256_hex(&bytes);
            let log = match read_if_exists(&log_path)? {
                Some(text) => log_md::parse(&log_path, &text)?,
                None => Vec::new(),
            };
            Ok((sha256, log))
        });
        let parsed = if initial {
            hashes_json::parse_documents(&hashes_path, &bytes).map(Parsed::Documents)
        } else {
            hashes_json::parse(&hashes_path, &bytes).map(Parsed::Entries)
        };
        let side = side
            .join()
            .unwrap_or_else(|_| Err(Error::Invalid("reading wiki/log.md failed".into())));
        Ok::<_, Error>((parsed?, side?))
    })?;
    let source = Source {
        path: hashes_path,
        sha256,
        bytes: bytes.len() as u64,
        moved_to: free_migrated_name(kb)?,
    };
    drop(bytes);

    match parsed {
        Parsed::Entries(entries) => {
            let store = kb.open_store()?;
            let mut plan = plan_drift(&store, source, entries, legacy_log, journals)?;
            if !options.dry_run {
                commit(&store, &mut plan)?;
                store.checkpoint()?;
                crate::ingest::crash_point("migrate-rename");
                finish(kb, &mut plan)?;
            }
            Ok(Outcome::Migrated {
                plan: Box::new(plan),
                dry_run: options.dry_run,
            })
        }
        Parsed::Documents((documents, shapes)) => {
            let mut plan = plan_initial(source, documents, shapes, legacy_log, journals);
            if !options.dry_run {
                import_into_new_db(kb, &mut plan)?;
                crate::ingest::crash_point("migrate-rename");
                finish(kb, &mut plan)?;
            }
            Ok(Outcome::Migrated {
                plan: Box::new(plan),
                dry_run: options.dry_run,
            })
        }
    }
}

/// A migration killed after its commit and before `hashes.json` was renamed leaves the file
/// it imported beside `state.db`. Recognised by its checksum in an `imports` record whose
/// renamed copy does not exist, it is finished: the file is renamed as that record says and
/// the record's `migrate` line is rendered into `wiki/log.md` if it is missing. Merging it as
/// drift instead would add a second import record, log row and renamed copy.
fn resume_interrupted(
    kb: &Kb,
    bytes: &[u8],
    journals: &[JournalReport],
    options: Options,
) -> Result<Option<Outcome>> {
    let sha256 = crate::ingest::hash::sha256_hex(bytes);
    let store = kb.open_store()?;
    let dir = kb.openkb_dir();
    // `moved_to` was written by an earlier run, maybe on another machine: only its file name
    // is used, and only if it is a name migrate gives.
    let renamed = |record: &ImportRecord| -> Option<PathBuf> {
        let name = Path::new(&record.moved_to).file_name()?.to_str()?;
        name.starts_with("hashes.json.migrated")
            .then(|| dir.join(name))
    };
    let record = {
        let reader = store.reader()?;
        imports::list(&reader)?
            .into_iter()
            .rev()
            .find(|r| r.source_sha256 == sha256 && renamed(r).is_none_or(|path| !path.exists()))
    };
    let Some(record) = record else {
        return Ok(None);
    };
    let moved_to = match renamed(&record) {
        Some(path) => path,
        None => free_migrated_name(kb)?,
    };
    if !options.dry_run {
        fs::rename(kb.hashes_json(), &moved_to).map_err(|e| {
            Error::Invalid(format!(
                "{} could not be renamed to {}: {e}; fix the cause and run `openkb migrate` \
                 again",
                kb.hashes_json().display(),
                file_name(&moved_to)
            ))
        })?;
        fsx::fsync_dir(&dir)?;
        let last_migrate = store
            .log_tail(Some(1), Some(MIGRATE_OPERATION))?
            .into_iter()
            .next();
        if let Some(row) = last_migrate {
            let log_md = read_if_exists(&kb.log_md())?.unwrap_or_default();
            let line = row.to_markdown();
            if !String::from_utf8_lossy(&log_md).contains(line.trim()) {
                kb.append_log_md(&row)?;
            }
        }
    }
    Ok(Some(Outcome::Resumed {
        journals: journals.to_vec(),
        record: Box::new(record),
        moved_to,
        dry_run: options.dry_run,
    }))
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
        unchanged: 0,
        conflicts: Vec::new(),
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
    plan
}

fn plan_drift(
    store: &Store,
    source: Source,
    entries: Vec<Entry>,
    legacy_log: Vec<LegacyLogEntry>,
    journals: Vec<JournalReport>,
) -> Result<Plan> {
    let reader = store.reader()?;
    let new_log = log_entries_not_in_table(&reader, legacy_log)?;
    let mut plan = new_plan(ImportKind::DriftMerge, source, &entries, new_log, journals);
    let mut claimed: HashMap<String, String> = HashMap::new();
    for entry in entries {
        if let Some(existing) = reader.get(&entry.hash)? {
            let stored = super::entry_of(&existing);
            match differing_keys(&entry.meta, &stored) {
                keys if keys.is_empty() => plan.unchanged += 1,
                keys => plan.conflicts.push(Conflict {
                    hash: entry.hash.clone(),
                    name: entry
                        .meta
                        .get("name")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    keys,
                }),
            }
            continue;
        }
        let owner = match entry.meta.get("doc_name") {
            Some(Value::String(doc_name)) => match claimed.get(doc_name) {
                Some(owner) => Some((doc_name.clone(), owner.clone())),
                None => match reader.find_by_doc_name(doc_name)? {
                    Some(doc) => Some((doc_name.clone(), doc.hash)),
                    None => {
                        claimed.insert(doc_name.clone(), entry.hash.clone());
                        None
                    }
                },
            },
            _ => None,
        };
        if let Some((doc_name, owner)) = &owner {
            plan.shared_doc_names.push(SharedDocName {
                hash: entry.hash.clone(),
                doc_name: doc_name.clone(),
                owner: owner.clone(),
            });
        }
        plan.new_documents
            .push(super::document_from_entry(entry, owner.is_some()));
    }
    Ok(plan)
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
    let mut known: HashMap<(String, String, String), usize> = HashMap::new();
    reader.for_each_log_entry(&mut |row| {
        *known
            .entry((row.timestamp, row.operation, row.description))
            .or_default() += 1;
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
    imports::append_documents(tx, &plan.new_documents)?;
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
    Ok((imports::record(tx, record)?, row))
}

/// Drift merge into the existing `state.db`, in one `BEGIN IMMEDIATE` transaction.
fn commit(store: &Store, plan: &mut Plan) -> Result<()> {
    let record = record_of(plan);
    let description = plan.log_description();
    let (stored, row) = store.write(|tx| write_import(tx, plan, &record, &description))?;
    plan.record = Some(stored);
    plan.log_row = Some(row);
    Ok(())
}

/// Initial import into a temp database beside `state.db`, linked into place only when it is
/// complete, checkpointed and closed.
fn import_into_new_db(kb: &Kb, plan: &mut Plan) -> Result<()> {
    build::remove_stale_builds(&kb.openkb_dir())?;
    build::refuse_orphan_sidecars(&kb.state_db())?;
    let temp = build::temp_name(&kb.state_db(), build::IMPORTING_PREFIX);
    // Created by hand first so that a read-only .openkb/ is reported as an I/O error naming the
    // file, not as SQLite's "unable to open database file".
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .with_path("cannot create", &temp)?;
    let built = (|| -> Result<()> {
        let record = record_of(plan);
        let description = plan.log_description();
        let rows = plan.new_documents.len() + plan.log_entries.len();
        let (stored, row) = imports::build_database(&temp, rows, |tx| {
            write_import(tx, plan, &record, &description)
        })?;
        plan.record = Some(stored);
        plan.log_row = Some(row);
        let wal = build::sidecar(&temp, "-wal");
        if fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            return Err(Error::Invalid(format!(
                "{}: the import's write-ahead log was not fully checkpointed; nothing was \
                 changed, run `openkb migrate` again",
                wal.display()
            )));
        }
        build::place_without_replacing(&temp, &kb.state_db())
    })();
    if built.is_err() {
        build::remove_database_files(&temp);
    }
    built
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
        && let Err(e) = kb.append_log_md(row)
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

fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("cannot read", path, e)),
    }
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
