//! `openkb remove IDENTIFIER`: remove a document, its files and its wiki pages.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ingest::remove::{self, Plan};
use crate::lock::LockMode;
use crate::state::{Document, Queries};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The document: its file name, its doc_name, or a unique part of either
    identifier: String,
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
    hash: &'a str,
    name: Option<&'a str>,
    doc_name: Option<&'a str>,
    dry_run: bool,
    keep_raw: bool,
    /// The document is unregistered and its files deleted (false: dry run, not confirmed, or
    /// another process removed it first).
    removed: bool,
    /// KB-relative files deleted (or to delete, when `removed` is false).
    files: &'a [String],
    refused: Vec<Refused<'a>>,
}

#[derive(Serialize)]
struct Refused<'a> {
    path: &'a str,
    reason: &'a str,
}

fn report<'a>(doc: &'a Document, plan: &'a Plan, args: &Args, removed: bool) -> RemoveReport<'a> {
    RemoveReport {
        hash: &doc.hash,
        name: doc.name.as_deref(),
        doc_name: plan.doc_name.as_deref(),
        dry_run: args.dry_run,
        keep_raw: args.keep_raw,
        removed,
        files: &plan.existing,
        refused: plan
            .refused
            .iter()
            .map(|(path, reason)| Refused { path, reason })
            .collect(),
    }
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<()> {
    let out = ctx.output(args.json);
    // Plan under the shared lock, so that a question waiting for an answer never blocks the
    // KB; then take the exclusive lock and plan again (the KB may have changed meanwhile).
    let (doc, plan) = {
        let open = super::open_kb(ctx, LockMode::Shared)?;
        let doc = pick(&open.store.reader()?, &args.identifier)?;
        let plan = remove::plan(&open.kb, &doc, args.keep_raw)?;
        (doc, plan)
    };
    // The plan is what a dry run was asked for and what the question asks to confirm: -q drops
    // it only when nothing is asked.
    if !out.json && (!ctx.quiet || args.dry_run || !args.yes) {
        show(&doc, &plan, args.keep_raw);
    }
    if args.dry_run {
        out.result("dry run: nothing was changed");
        return if out.json {
            out.json(&report(&doc, &plan, &args, false))
        } else {
            Ok(())
        };
    }
    if !args.yes && !confirm()? {
        out.result("nothing was changed");
        return if out.json {
            out.json(&report(&doc, &plan, &args, false))
        } else {
            Ok(())
        };
    }
    let open = super::open_kb(ctx, LockMode::Exclusive)?;
    let Some(current) = open.store.get(&doc.hash)? else {
        out.result("already removed (by another process)");
        return if out.json {
            out.json(&report(&doc, &plan, &args, false))
        } else {
            Ok(())
        };
    };
    let plan = remove::plan(&open.kb, &current, args.keep_raw)?;
    remove::execute(&open.kb, &open.store, &plan)?;
    out.result(format_args!(
        "removed {}",
        current
            .name
            .as_deref()
            .or(plan.doc_name.as_deref())
            .unwrap_or(&current.hash)
    ));
    if out.json {
        out.json(&report(&current, &plan, &args, true))?;
    }
    Ok(())
}

fn pick(q: &impl Queries, identifier: &str) -> Result<Document> {
    let mut found = remove::find(q, identifier)?;
    match found.len() {
        0 => Err(Error::Invalid(format!(
            "no document matches {identifier:?}; `openkb list` shows the registered ones"
        ))),
        1 => Ok(found.remove(0)),
        n => {
            let listed: Vec<String> = found
                .iter()
                .map(|d| {
                    format!(
                        "  {}  (doc_name {}, {})",
                        d.name.as_deref().unwrap_or("-"),
                        d.display_doc_name().as_deref().unwrap_or("-"),
                        d.path.as_deref().unwrap_or("no path")
                    )
                })
                .collect();
            Err(Error::Invalid(format!(
                "{n} documents match {identifier:?}; nothing was removed. Name one by its \
                 doc_name:\n{}",
                listed.join("\n")
            )))
        }
    }
}

fn show(doc: &Document, plan: &Plan, keep_raw: bool) {
    println!(
        "Remove {} (doc_name {}, hash {}):",
        doc.name.as_deref().unwrap_or("-"),
        plan.doc_name.as_deref().unwrap_or("-"),
        &doc.hash[..12]
    );
    for file in &plan.existing {
        println!("  delete {file}");
    }
    if let Some(d) = &plan.doc_name {
        println!("  drop its line from wiki/index.md and links to [[summaries/{d}]]");
    }
    println!(
        "  unregister it (log: remove | {})",
        doc.name.as_deref().unwrap_or("-")
    );
    if keep_raw {
        println!("  keep the copy in raw/ (--keep-raw)");
    }
    for (path, why) in &plan.refused {
        println!("  leave {path} alone: {why}");
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
