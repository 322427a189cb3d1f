//! `openkb remove IDENTIFIER...`: remove documents, their files and their wiki pages.

use serde::Serialize;

use super::output::Output;
use crate::error::{Error, Result};
use crate::ingest::remove::{self, Plan};
use crate::names;
use crate::session::WriteSession;
use crate::state::Document;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The documents: each by its file name, its doc_name, its hash (or a unique prefix of at
    /// least 4 hex digits, as the plan and `openkb list --json` show it), or a unique part of
    /// its name or doc_name
    #[arg(required = true, value_name = "IDENTIFIER")]
    identifiers: Vec<String>,
    /// Keep the copy in raw/
    #[arg(long)]
    keep_raw: bool,
    /// Show what would be removed and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation (required when there is no terminal to ask on)
    #[arg(short = 'y', long = "yes")]
    yes: bool,
    /// Print the plan and the outcome as JSON (docs/schemas/remove.json)
    #[arg(long)]
    json: bool,
}

/// `remove --json` (docs/schemas/remove.json).
#[derive(Serialize)]
struct RemoveReport<'a> {
    dry_run: bool,
    keep_raw: bool,
    removed: usize,
    failed: usize,
    documents: Vec<DocumentReport<'a>>,
}

/// One document of `remove --json`, in the order the identifiers named them.
#[derive(Serialize)]
struct DocumentReport<'a> {
    hash: &'a str,
    name: Option<&'a str>,
    doc_name: Option<&'a str>,
    /// Unregistered and its files deleted (false: dry run, not confirmed, removed by another
    /// process first, or failed).
    removed: bool,
    /// KB-relative files deleted (or to delete, when `removed` is false).
    files: Vec<String>,
    refused: Vec<Refused<'a>>,
    /// Why it could not be removed.
    error: Option<String>,
}

#[derive(Serialize)]
struct Refused<'a> {
    path: &'a str,
    reason: &'a str,
}

impl<'a> DocumentReport<'a> {
    fn new(doc: &'a Document, plan: &'a Plan) -> Self {
        DocumentReport {
            hash: &doc.hash,
            name: doc.name.as_deref(),
            doc_name: plan.doc_name.as_deref(),
            removed: false,
            files: plan.existing.clone(),
            refused: plan
                .refused
                .iter()
                .map(|(path, reason)| Refused { path, reason })
                .collect(),
            error: None,
        }
    }
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<()> {
    let out = ctx.output(args.json);
    // Plan under the shared lock, so that a question waiting for an answer never blocks the
    // KB; then take the exclusive lock and plan again (the KB may have changed meanwhile).
    // Every identifier is resolved before anything is removed: one that matches nothing, or
    // several documents, stops the whole command with nothing changed.
    let targets = {
        let open = if args.dry_run {
            super::read_session(ctx)?
        } else {
            super::read_session_for_write(ctx)?
        };
        if !args.dry_run {
            // Said before the plan: a plan that cannot run would only confuse.
            crate::kbpath::refuse_symlinked_bookkeeping(open.kb())?;
        }
        remove::plan_targets(open.kb(), &open.reader()?, &args.identifiers, args.keep_raw)?
    };
    // The plan is what a dry run was asked for and what the question asks to confirm: -q drops
    // it only when nothing is asked.
    if !out.json && (!ctx.quiet || args.dry_run || !args.yes) {
        for (doc, plan) in &targets {
            show(doc, plan, args.keep_raw);
        }
    }
    let mut reports: Vec<DocumentReport> = targets
        .iter()
        .map(|(doc, plan)| DocumentReport::new(doc, plan))
        .collect();
    let untouched = |out: &Output, reports: Vec<DocumentReport>, message: &str| {
        out.result(message);
        if out.json {
            return out.json(&RemoveReport {
                dry_run: args.dry_run,
                keep_raw: args.keep_raw,
                removed: 0,
                failed: 0,
                documents: reports,
            });
        }
        Ok(())
    };
    if args.dry_run {
        return untouched(&out, reports, "dry run: nothing was changed");
    }
    if !args.yes && !confirm()? {
        return untouched(&out, reports, "nothing was changed");
    }
    let open = super::write_session(ctx)?;
    let (removed, failed) = remove_each(&open, &targets, &mut reports, args.keep_raw, &out);
    if out.json {
        out.json(&RemoveReport {
            dry_run: false,
            keep_raw: args.keep_raw,
            removed,
            failed,
            documents: reports,
        })?;
    }
    if failed > 0 {
        return Err(Error::Incomplete(format!(
            "{failed} of {} document(s) could not be removed (see above); the others were",
            targets.len()
        )));
    }
    Ok(())
}

/// Remove each target in `open`, one at a time (planned again under the lock), saying what
/// became of each and noting it in its report. Returns (removed, failed).
fn remove_each(
    open: &WriteSession,
    targets: &[(Document, Plan)],
    reports: &mut [DocumentReport<'_>],
    keep_raw: bool,
    out: &Output,
) -> (usize, usize) {
    let (mut removed, mut failed) = (0, 0);
    for ((doc, _), report) in targets.iter().zip(reports.iter_mut()) {
        match remove::remove_document(open, doc, keep_raw) {
            Ok(None) => out.result(format_args!(
                "{} was already removed (by another process)",
                label(doc, None)
            )),
            Ok(Some((doc, plan))) => {
                removed += 1;
                report.removed = true;
                // What was planned again under the exclusive lock is what was deleted.
                report.files = plan.existing.clone();
                out.result(format_args!(
                    "removed {}",
                    label(&doc, plan.doc_name.as_deref())
                ));
            }
            Err(e) => {
                failed += 1;
                let message = e.to_string();
                eprintln!(
                    "failed to remove {}: {}",
                    label(doc, None),
                    names::shown_message(&message)
                );
                report.error = Some(message);
            }
        }
    }
    (removed, failed)
}

fn label(doc: &Document, doc_name: Option<&str>) -> String {
    let text = doc
        .name
        .clone()
        .or_else(|| doc_name.map(str::to_owned))
        .or_else(|| doc.display_doc_name())
        .unwrap_or_else(|| doc.hash.clone());
    names::shown(&text).into_owned()
}

fn show(doc: &Document, plan: &Plan, keep_raw: bool) {
    println!(
        "Remove {} (doc_name {}, hash {}):",
        names::shown(doc.name.as_deref().unwrap_or("-")),
        names::shown(plan.doc_name.as_deref().unwrap_or("-")),
        names::short_hash(&doc.hash)
    );
    if let Some(why) = &plan.untrusted {
        println!(
            "  touch no file: migrate marked this legacy entry untrusted ({why}); it is only \
             unregistered"
        );
    }
    for file in &plan.existing {
        println!("  delete {}", names::shown(file));
    }
    match (&plan.doc_name, &plan.wiki_shared_with) {
        (Some(_), Some(other)) => println!(
            "  keep wiki/index.md and summary links: document {} has the same doc_name",
            names::short_hash(other)
        ),
        (Some(d), None) => println!(
            "  drop its line from wiki/index.md and links to [[summaries/{}]]",
            names::shown(d)
        ),
        (None, _) => {}
    }
    println!(
        "  unregister it (log: remove | {})",
        names::shown(doc.name.as_deref().unwrap_or("-"))
    );
    if keep_raw {
        println!("  keep the copy in raw/ (--keep-raw)");
    }
    for (path, why) in &plan.refused {
        println!(
            "  leave {} alone: {}",
            names::shown(path),
            names::shown(why)
        );
    }
}

fn confirm() -> Result<bool> {
    if !super::stdin_is_terminal() {
        return Err(Error::Invalid(
            "refusing to remove without confirmation: there is no terminal to ask on; pass -y \
             (or --dry-run to see the plan)"
                .into(),
        ));
    }
    let answer = super::ask("Proceed? [y/N] ")?;
    Ok(matches!(answer.as_str(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
