//! `openkb add PATH...`: add files and folders (see `ingest::add` for how).

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::output::Output;
use crate::error::{Error, Result};
use crate::ingest::add::{self, Options, Outcome, Reporter, Summary};
use crate::state::Status;

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
    finish(&out, summary)
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

/// What became of one file, for `--json`.
#[derive(Serialize)]
pub(super) struct FileReport {
    path: String,
    /// `added`, `known` (same content already registered), `skipped` or `failed`.
    outcome: &'static str,
    doc_name: Option<String>,
    status: Option<Status>,
    /// Why it was skipped or failed.
    reason: Option<String>,
}

impl FileReport {
    fn new(path: &Path, outcome: &Outcome) -> FileReport {
        let (kind, doc_name, status, reason) = match outcome {
            Outcome::Added { doc_name, status } => {
                ("added", Some(doc_name.clone()), Some(*status), None)
            }
            Outcome::Known => (
                "known",
                None,
                None,
                Some("already registered (same content)".to_owned()),
            ),
            Outcome::Skipped(why) => ("skipped", None, None, Some(why.clone())),
            Outcome::Failed(e) => ("failed", None, None, Some(e.to_string())),
        };
        FileReport {
            path: path.display().to_string(),
            outcome: kind,
            doc_name,
            status,
            reason,
        }
    }
}

/// Print the summary line and turn failures into the exit code.
pub(super) fn finish(out: &Output, summary: Summary) -> Result<()> {
    out.result(format_args!(
        "added {}, skipped {}, failed {}",
        summary.added, summary.skipped, summary.failed
    ));
    if summary.not_done > 0 {
        return Err(Error::Incomplete(format!(
            "interrupted: {} file(s) were not looked at (what was started was finished); run \
             the same command again to add them",
            summary.not_done
        )));
    }
    if summary.failed > 0 {
        return Err(Error::Incomplete(format!(
            "{} file(s) could not be added (see the messages above); the others were",
            summary.failed
        )));
    }
    Ok(())
}

/// Reports each file as add works through it. Not a terminal (a pipe, a log file): one line
/// per file (added on stdout, skipped and failed on stderr), so logs keep every outcome. On a
/// terminal, a folder gets a progress bar instead, with only failures printed above it
/// (`-v` prints every line over the bar): 5000 lines scrolling by tell nobody anything.
/// `-q` keeps the failures; `--json` collects every outcome for the final document.
pub(super) struct Printer {
    out: Output,
    bar: Option<ProgressBar>,
    /// Print "skipped" lines (watch keeps them for -v: it sees its own copies come and go).
    pub show_skipped: bool,
    /// Every outcome, with `--json`.
    files: Vec<FileReport>,
    /// Skips not shown one by one (already registered; others under the progress bar), so
    /// that the end of the run still says why the summary counts them.
    unlisted_known: usize,
    unlisted_skipped: usize,
}

impl Printer {
    pub fn new(out: Output) -> Self {
        Printer {
            out,
            bar: None,
            show_skipped: true,
            files: Vec::new(),
            unlisted_known: 0,
            unlisted_skipped: 0,
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        // watch (no skip lines) sees its own copies again and again: nothing to explain there.
        if !self.out.chatty() || !self.show_skipped {
            return;
        }
        if self.unlisted_known > 0 {
            self.out.note(format_args!(
                "{} file(s) skipped: already registered (same content); -v lists them",
                self.unlisted_known
            ));
        }
        if self.unlisted_skipped > 0 {
            self.out.note(format_args!(
                "{} file(s) skipped: not a supported document; -v lists them",
                self.unlisted_skipped
            ));
        }
    }

    fn line(&self, text: String, to_stdout: bool) {
        match &self.bar {
            Some(bar) => bar.suspend(|| print_line(&text, to_stdout)),
            None => print_line(&text, to_stdout),
        }
    }

    /// Per-file lines other than failures: not with -q or --json; under a progress bar only
    /// with -v.
    fn per_file_lines(&self) -> bool {
        self.out.chatty() && (self.bar.is_none() || self.out.verbose > 0)
    }
}

fn print_line(text: &str, to_stdout: bool) {
    let text = crate::names::shown_message(text);
    if to_stdout {
        println!("{text}");
    } else {
        eprintln!("{text}");
    }
}

impl Reporter for Printer {
    fn found(&mut self, files: usize) {
        if files > 1 && self.out.progress_bar() {
            let bar =
                ProgressBar::with_draw_target(Some(files as u64), ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{bar:40} {pos}/{len} files  {elapsed_precise} {msg}")
            {
                bar.set_style(style);
            }
            self.bar = Some(bar);
        }
    }

    fn outcome(&mut self, path: &Path, outcome: &Outcome) {
        if self.out.json {
            self.files.push(FileReport::new(path, outcome));
        }
        match outcome {
            Outcome::Added { doc_name, status } => {
                if self.per_file_lines() {
                    self.line(
                        format!(
                            "added {} as {} ({status})",
                            crate::names::shown(&path.to_string_lossy()),
                            crate::names::shown(doc_name)
                        ),
                        true,
                    );
                }
            }
            Outcome::Known => {
                if self.per_file_lines() && self.out.verbose > 0 {
                    self.line(
                        format!(
                            "skipped {}: already registered (same content)",
                            crate::names::shown(&path.to_string_lossy())
                        ),
                        false,
                    );
                } else {
                    self.unlisted_known += 1;
                }
            }
            Outcome::Skipped(why) => {
                if self.per_file_lines() && (self.show_skipped || self.out.verbose > 0) {
                    self.line(
                        format!(
                            "skipped {}: {why}",
                            crate::names::shown(&path.to_string_lossy())
                        ),
                        false,
                    );
                } else {
                    self.unlisted_skipped += 1;
                }
            }
            // Errors are always said, on stderr, whatever the mode.
            Outcome::Failed(e) => self.line(
                format!(
                    "failed {}: {e}",
                    crate::names::shown(&path.to_string_lossy())
                ),
                false,
            ),
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }
}
