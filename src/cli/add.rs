//! `openkb add PATH...`: add files and folders (see `ingest::add` for how).

use std::path::PathBuf;

use serde::Serialize;

use super::common::{FileReport, Printer, finish_add};
use crate::error::Result;
use crate::ingest::add::{self, Options};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Output: each file's outcome as it is done (added on stdout; skipped and failed on stderr), then
`added N, skipped N, failed N`. On a terminal a progress bar replaces the per-file lines of a
folder (failures are still printed; -v brings the lines back). -q prints only failures and the
summary; --json prints one JSON document (docs/schemas/add.json) with every file's outcome.")]
pub struct Args {
    /// Files and folders (recursive) to add: .pdf .md .markdown .docx .pptx .xlsx .html .htm
    /// .txt .csv; other files are skipped
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Print the outcome as JSON (docs/schemas/add.json)
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<()> {
    let out = ctx.output(args.json);
    let probe = super::probe(ctx)?;
    let kb = probe.kb();
    let options = Options::from_config(kb, ctx.verbose > 0)?;
    crate::ingest::stop_cleanly_on_interrupt();
    let mut reporter = Printer::new(out);
    let summary = add::add_paths(&probe, &args.paths, &options, &mut reporter)?;
    reporter.finish();
    if out.json {
        out.json(&AddReport {
            added: summary.added,
            skipped: summary.skipped,
            failed: summary.failed,
            not_done: summary.not_done,
            files: &reporter.files,
        })?;
    }
    finish_add(&out, summary)
}

/// `add --json` (docs/schemas/add.json).
#[derive(Serialize)]
struct AddReport<'a> {
    added: usize,
    skipped: usize,
    failed: usize,
    not_done: usize,
    files: &'a [FileReport],
}
