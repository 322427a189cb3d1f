//! `openkb remove IDENTIFIER`: remove a document, its files and its wiki pages.

use crate::error::{Error, Result};
use crate::ingest::remove::{self, Plan};
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
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<()> {
    // Plan under the shared lock, so that a question waiting for an answer never blocks the
    // KB; then take the exclusive lock and plan again (the KB may have changed meanwhile).
    let (doc, plan) = {
        let open = super::read_session(ctx)?;
        let doc = pick(&open.reader()?, &args.identifier)?;
        let plan = remove::plan(open.kb(), &doc, args.keep_raw)?;
        (doc, plan)
    };
    show(&doc, &plan, args.keep_raw);
    if args.dry_run {
        println!("dry run: nothing was changed");
        return Ok(());
    }
    if !args.yes && !confirm()? {
        println!("nothing was changed");
        return Ok(());
    }
    let open = super::write_session(ctx)?;
    let Some(doc) = open.get(&doc.hash)? else {
        println!("already removed (by another process)");
        return Ok(());
    };
    let plan = remove::plan(open.kb(), &doc, args.keep_raw)?;
    remove::execute(&open, &plan)?;
    println!(
        "removed {}",
        doc.name
            .as_deref()
            .or(plan.doc_name.as_deref())
            .unwrap_or(&doc.hash)
    );
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
