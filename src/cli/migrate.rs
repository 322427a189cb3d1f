//! `openkb migrate`: import a legacy (Python-tool) KB into `state.db`, or merge a `hashes.json`
//! that reappeared after migration. The work is `legacy::migrate`; this prints it.

use std::path::Path;

use serde::Serialize;

use super::output::Output;
use crate::config::GlobalConfig;
use crate::error::{Error, Result};
use crate::kb::Kb;
use crate::legacy::journal::JournalReport;
use crate::legacy::migrate::{self, Options, Outcome, Plan, file_name};
use crate::log_md::LegacyLogEntry;
use crate::names;
use crate::state::imports::ImportKind;
use crate::state_move;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Migrate every KB listed in known_kbs of ~/.config/openkb/global.yaml (one line each)
    #[arg(long)]
    all: bool,
    /// Show what would be imported, recovered and renamed; change nothing
    #[arg(long)]
    dry_run: bool,
    /// Print the outcome as JSON (docs/schemas/migrate.json)
    #[arg(long)]
    json: bool,
    /// Move this KB's state into PostgreSQL (team mode): the server OPENKB_STATE_URL names
    #[arg(long, conflicts_with_all = ["all", "dry_run", "json", "to_sqlite"])]
    to_postgres: bool,
    /// Move a team KB's state out of PostgreSQL into a local .openkb/state.db
    #[arg(long, conflicts_with_all = ["all", "dry_run", "json"])]
    to_sqlite: bool,
}

/// `migrate --json` (docs/schemas/migrate.json): one entry per KB, for one KB and for `--all`
/// alike, so a script reads both the same way.
#[derive(Serialize)]
struct MigrateReport {
    dry_run: bool,
    knowledge_bases: Vec<KbReport>,
}

#[derive(Serialize)]
struct KbReport {
    knowledge_base: String,
    /// `migrated`, `merged` (a reappeared hashes.json), `already-migrated`,
    /// `nothing-to-migrate`, `not-a-kb` (`--all` only) or `failed` (`--all` only).
    outcome: &'static str,
    /// Entries in hashes.json; null when none was read.
    entries: Option<usize>,
    /// Documents imported (or that would be).
    documents: Option<usize>,
    /// Entries of a reappeared hashes.json that differ from state.db (kept in state.db).
    conflicts: Option<usize>,
    log_entries: Option<usize>,
    /// Where hashes.json went (KB-relative), or would go on a dry run.
    moved_to: Option<String>,
    journals: Vec<JournalEntry>,
    warnings: Vec<String>,
    error: Option<String>,
}

#[derive(Serialize)]
struct JournalEntry {
    file: String,
    recovered: bool,
    message: String,
}

impl KbReport {
    /// A KB with only an outcome to report (`not-a-kb`, `failed`).
    fn bare(path: &Path, outcome: &'static str) -> Self {
        KbReport {
            knowledge_base: path.display().to_string(),
            outcome,
            entries: None,
            documents: None,
            conflicts: None,
            log_entries: None,
            moved_to: None,
            journals: Vec::new(),
            warnings: Vec::new(),
            error: None,
        }
    }

    fn failed(path: &Path, error: &Error) -> Self {
        KbReport {
            error: Some(error.to_string()),
            ..KbReport::bare(path, "failed")
        }
    }

    fn new(path: &Path, outcome: &Outcome, dry_run: bool) -> Self {
        let mut report = KbReport::bare(path, "failed");
        let journals = match outcome {
            Outcome::NothingToMigrate { journals } => {
                report.outcome = "nothing-to-migrate";
                journals
            }
            Outcome::AlreadyMigrated {
                journals,
                log_entries,
            } => {
                report.outcome = "already-migrated";
                // Lines the Python tool appended to wiki/log.md since, imported now.
                report.log_entries = Some(log_entries.len());
                journals
            }
            Outcome::Migrated { plan, .. } => {
                report.outcome = match plan.kind {
                    ImportKind::Initial => "migrated",
                    ImportKind::DriftMerge => "merged",
                };
                report.entries = Some(plan.entries);
                report.documents = Some(plan.new_documents.len());
                report.conflicts = Some(plan.conflicts.len());
                report.log_entries = Some(plan.log_entries.len());
                report.moved_to = Some(format!(".openkb/{}", file_name(&plan.moved_to)));
                report.warnings = plan.warnings.clone();
                &plan.journals
            }
        };
        report.journals = journals
            .iter()
            .map(|j| JournalEntry {
                file: j.file.display().to_string(),
                recovered: j.recovered(),
                message: j.describe(dry_run),
            })
            .collect();
        report
    }
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<()> {
    if args.to_postgres || args.to_sqlite {
        let kb = ctx.kb_quiet()?;
        let moved = if args.to_postgres {
            state_move::to_postgres(&kb)?
        } else {
            state_move::to_sqlite(&kb)?
        };
        print_moved(&kb, &moved);
        return Ok(());
    }
    let out = ctx.output(args.json);
    let options = Options {
        dry_run: args.dry_run,
    };
    if args.all {
        return run_all(ctx, &out, options);
    }
    let kb = ctx.kb_quiet()?;
    let outcome = migrate::migrate(&kb, options)?;
    if out.json {
        return out.json(&MigrateReport {
            dry_run: options.dry_run,
            knowledge_bases: vec![KbReport::new(kb.root(), &outcome, options.dry_run)],
        });
    }
    print_outcome(&kb, &outcome, options.dry_run, ctx.verbose);
    Ok(())
}

fn run_all(ctx: &super::Ctx, out: &Output, options: Options) -> Result<()> {
    let known = GlobalConfig::load(&ctx.settings)?.known_kbs();
    if known.is_empty() && !out.json {
        println!("No known knowledge bases (known_kbs of ~/.config/openkb/global.yaml is empty).");
        return Ok(());
    }
    let mut failed = 0usize;
    let mut reports = Vec::new();
    for path in &known {
        let result = migrate_one(ctx, path, options);
        if out.json {
            reports.push(match &result {
                Ok(None) => KbReport::bare(path, "not-a-kb"),
                Ok(Some(outcome)) => KbReport::new(path, outcome, options.dry_run),
                Err(e) => KbReport::failed(path, e),
            });
        }
        let line = match result {
            Ok(Some(outcome)) => summary_line(&outcome, options),
            Ok(None) => "not a KB anymore (no .openkb/ folder); skipped".into(),
            Err(e) => {
                failed += 1;
                format!("FAILED: {}", e.to_string().replace('\n', "\n    "))
            }
        };
        if !out.json {
            println!(
                "{}: {}",
                names::shown(&path.to_string_lossy()),
                names::shown_message(&line)
            );
        }
    }
    if out.json {
        out.json(&MigrateReport {
            dry_run: options.dry_run,
            knowledge_bases: reports,
        })?;
    }
    if failed > 0 {
        return Err(Error::Invalid(format!(
            "{failed} of {} knowledge base(s) failed to migrate (see above); the others are done",
            known.len()
        )));
    }
    Ok(())
}

/// Migrate one KB of `--all`; `None` when it is no KB anymore.
fn migrate_one(ctx: &super::Ctx, path: &Path, options: Options) -> Result<Option<Outcome>> {
    if !path.join(".openkb").is_dir() {
        return Ok(None);
    }
    let kb = ctx.kb_at(path)?;
    migrate::migrate(&kb, options).map(Some)
}

fn print_moved(kb: &Kb, moved: &state_move::Moved) {
    let print = &moved.fingerprint;
    let (into, after) = match moved.backend {
        "postgres" => (
            "PostgreSQL",
            "Every user of this KB now needs OPENKB_STATE_URL set to that server (the \
             password in PGPASSWORD or ~/.pgpass).",
        ),
        _ => (
            "the local state database",
            "The KB no longer uses the server.",
        ),
    };
    println!(
        "Moved the state of {} into {into}: {}.",
        names::shown(&kb.root().to_string_lossy()),
        names::shown_message(&moved.location)
    );
    println!(
        "  {} documents, {} log entries, {} imports; registry and log checksums verified \
         (registry {}).",
        print.documents,
        print.log_entries,
        print.imports,
        &print.registry_sha256[..16]
    );
    println!("  kb_id {} (in .openkb/config.yaml).", moved.kb_id);
    if let Some(aside) = &moved.kept_aside {
        println!(
            "  The old state was kept as {}.",
            names::shown_message(aside)
        );
    }
    println!("{after}");
}

/// One line per KB for `--all`.
fn summary_line(outcome: &Outcome, options: Options) -> String {
    let journals = match &outcome {
        Outcome::NothingToMigrate { journals } | Outcome::AlreadyMigrated { journals, .. } => {
            journals
        }
        Outcome::Migrated { plan, .. } => &plan.journals,
    };
    let mut line = match outcome {
        Outcome::NothingToMigrate { .. } => "nothing to migrate (no hashes.json)".to_owned(),
        Outcome::AlreadyMigrated { log_entries, .. } if !log_entries.is_empty() => format!(
            "already migrated; {} wiki/log.md entries of the Python tool {}imported",
            log_entries.len(),
            if options.dry_run { "would be " } else { "" }
        ),
        Outcome::AlreadyMigrated { .. } => "already migrated".to_owned(),
        Outcome::Migrated { plan, dry_run } => {
            let would = if *dry_run { "would be " } else { "" };
            let n = plan.new_documents.len();
            match plan.kind {
                ImportKind::Initial => format!(
                    "migrated {n} documents and {} log entries{}",
                    plan.log_entries.len(),
                    if *dry_run { " (dry run)" } else { "" }
                ),
                ImportKind::DriftMerge => format!(
                    "{n} documents {would}added, {} updated and {} removed from a reappeared \
                     hashes.json, {} conflicting",
                    plan.updated_documents.len(),
                    plan.applied_removals(),
                    plan.conflicts.len()
                ),
            }
        }
    };
    let recovered = journals.iter().filter(|j| j.recovered()).count();
    if recovered > 0 {
        line.push_str(&format!("; {recovered} crash journal(s) recovered"));
    }
    let left = journals.len() - recovered;
    if left > 0 {
        line.push_str(&format!("; {left} journal(s) left for review"));
    }
    line
}

fn print_outcome(kb: &Kb, outcome: &Outcome, dry_run: bool, verbose: u8) {
    match outcome {
        Outcome::NothingToMigrate { journals } => {
            print_journals(journals, dry_run);
            println!(
                "Nothing to migrate: {} has no .openkb/hashes.json.",
                kb.root().display()
            );
        }
        Outcome::AlreadyMigrated {
            journals,
            log_entries,
        } if log_entries.is_empty() => {
            print_journals(journals, dry_run);
            println!(
                "{}: already migrated (state.db exists and no hashes.json is waiting); nothing \
                 changed.",
                kb.root().display()
            );
        }
        Outcome::AlreadyMigrated {
            journals,
            log_entries,
        } => {
            print_journals(journals, dry_run);
            println!(
                "{}: already migrated (no hashes.json is waiting); wiki/log.md: {} entries \
                 appended by the Python tool {}",
                kb.root().display(),
                log_entries.len(),
                if dry_run { "to import" } else { "imported" }
            );
            if verbose > 0 {
                print_log_entries(log_entries);
            }
        }
        Outcome::Migrated { plan, dry_run } => print_plan(kb, plan, *dry_run, verbose),
    }
}

fn print_journals(journals: &[JournalReport], dry_run: bool) {
    for journal in journals {
        println!("  {}", names::shown_line(&journal.describe(dry_run)));
    }
}

/// The plan of an import (or what it did), section by section, then its warnings.
fn print_plan(kb: &Kb, plan: &Plan, dry_run: bool, verbose: u8) {
    let root = kb.root().display();
    if dry_run {
        println!("Dry run: nothing was changed. `openkb migrate` on {root} would:");
    } else {
        match plan.kind {
            ImportKind::Initial => println!("Migrated {root}:"),
            ImportKind::DriftMerge => {
                println!("Merged a reappeared hashes.json into the state.db of {root}:")
            }
        }
    }
    if plan.journals.is_empty() {
        println!("  crash journals: none");
    } else {
        println!("  crash journals of the Python tool:");
        for journal in &plan.journals {
            println!("    {}", journal.describe(dry_run));
        }
    }
    println!(
        "  hashes.json: {} entries ({} bytes, sha256 {})",
        plan.entries, plan.source_bytes, plan.source_sha256
    );
    for (label, keys, count) in &plan.shapes {
        println!("    {count:>6}  {label}: {}", keys.join(", "));
    }
    match plan.kind {
        ImportKind::Initial => println!(
            "  documents: {} {} (status compiled, registry order kept)",
            plan.new_documents.len(),
            if dry_run { "to import" } else { "imported" }
        ),
        ImportKind::DriftMerge => print_merge(plan, dry_run),
    }
    print_kept_entries(plan, dry_run);
    print_log_import(plan, dry_run, verbose);
    let moved = file_name(&plan.moved_to);
    if dry_run {
        println!("  .openkb/hashes.json would be renamed to .openkb/{moved}");
    } else {
        if let Some(record) = &plan.record {
            println!(
                "  state.db: import #{} recorded at {}",
                record.id, record.imported_at
            );
        }
        println!("  .openkb/hashes.json kept as .openkb/{moved}");
        println!("  (`openkb export --for-python` hands the KB back to the Python tool)");
    }
    for warning in &plan.warnings {
        eprintln!("warning: {}", names::shown_message(warning));
    }
}

/// What a drift merge does to each document: new, updated, removed or kept, conflicting.
fn print_merge(plan: &Plan, dry_run: bool) {
    println!(
        "  documents: {} new {}, {} updated, {} removed, {} already in state.db unchanged, {} \
         conflicting",
        plan.new_documents.len(),
        if dry_run { "to merge" } else { "merged" },
        plan.updated_documents.len(),
        plan.applied_removals(),
        plan.unchanged,
        plan.conflicts.len()
    );
    if !plan.has_base {
        println!(
            "    no base known (nothing handed to the Python tool since this state.db keeps \
             one): only additions are merged, other differences are conflicts"
        );
    }
    for doc in &plan.updated_documents {
        println!(
            "    updated: {} ({}) as the Python tool changed it",
            doc.hash,
            names::shown(doc.name.as_deref().unwrap_or("no name"))
        );
    }
    for removal in &plan.removals {
        let name = names::shown(removal.name.as_deref().unwrap_or("no name"));
        if removal.applied {
            println!(
                "    removed: {} ({name}), as the Python tool did",
                removal.hash
            );
        } else {
            println!(
                "    kept: {} ({name}) is missing from hashes.json, but {}; remove it with \
                 `openkb remove` if it should go",
                removal.hash,
                removal.why_kept.unwrap_or("it was not removed")
            );
        }
    }
    let moved = file_name(&plan.moved_to);
    for conflict in &plan.conflicts {
        println!(
            "    conflict: {} ({}) differs in {}: {}; the file's version stays in \
             .openkb/{moved}",
            conflict.hash,
            names::shown(conflict.name.as_deref().unwrap_or("no name")),
            conflict.keys.join(", "),
            conflict.resolution
        );
    }
}

/// Entries kept as they are: a doc_name another document owns, paths openkb will not touch.
fn print_kept_entries(plan: &Plan, dry_run: bool) {
    for shared in &plan.shared_doc_names {
        println!(
            "    doc_name \"{}\" of {} is already owned by {}: kept in its extra keys (exported \
             unchanged)",
            names::shown(&shared.doc_name),
            shared.hash,
            shared.owner
        );
    }
    for (hash, why) in &plan.untrusted {
        println!(
            "    entry {hash} names paths openkb will not touch ({why}): {} as it is and marked \
             untrusted; `openkb remove` of it only unregisters it",
            if dry_run { "would be kept" } else { "kept" }
        );
    }
}

/// The `wiki/log.md` entries imported (each one with `-v`).
fn print_log_import(plan: &Plan, dry_run: bool, verbose: u8) {
    let unparsed = plan.unparsed_log_entries();
    println!(
        "  wiki/log.md: {} entries {}{}",
        plan.log_entries.len(),
        if dry_run { "to import" } else { "imported" },
        if unparsed > 0 {
            format!(
                " ({unparsed} not in the `## [time] op | text` form, kept as text under the \
                 operation `unparsed`)"
            )
        } else {
            String::new()
        }
    );
    if verbose > 0 {
        print_log_entries(&plan.log_entries);
    }
}

/// Log entries read from the Python tool's `wiki/log.md`, one line each.
fn print_log_entries(entries: &[LegacyLogEntry]) {
    for entry in entries {
        // The Python tool's lines are hostile input: a control character in one must not
        // drive the terminal.
        println!(
            "    [{}] {} | {}",
            names::shown(&entry.timestamp),
            names::shown(&entry.operation),
            names::escape_line(&entry.description)
        );
    }
}
