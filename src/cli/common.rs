//! Helpers more than one command uses, so that command modules never import each other:
//! the per-file outcome printer of `add` and `watch`.

use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::output::Output;
use crate::error::{Error, Result};
use crate::ingest::add::{Outcome, Reporter, Summary};
use crate::state::Status;

/// What became of one file, for `--json`.
#[derive(Serialize)]
pub struct FileReport {
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
pub fn finish_add(out: &Output, summary: Summary) -> Result<()> {
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
pub struct Printer {
    out: Output,
    bar: Option<ProgressBar>,
    /// Print "skipped" lines (watch keeps them for -v: it sees its own copies come and go).
    pub show_skipped: bool,
    /// Every outcome, with `--json`.
    pub files: Vec<FileReport>,
    /// Skips not shown one by one (already registered; others under the progress bar), so
    /// that the end of the run still says why the summary counts them.
    unlisted_known: usize,
    /// By reason ([`reason_kind`]), in a stable order for the closing lines.
    unlisted_skipped: std::collections::BTreeMap<String, usize>,
}

impl Printer {
    pub fn new(out: Output) -> Self {
        Printer {
            out,
            bar: None,
            show_skipped: true,
            files: Vec::new(),
            unlisted_known: 0,
            unlisted_skipped: std::collections::BTreeMap::new(),
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            crate::notice::clear_printer();
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
        for (reason, count) in &self.unlisted_skipped {
            self.out.note(format_args!(
                "{count} file(s) skipped: {reason}; -v lists them"
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

impl Drop for Printer {
    /// An add that ends in an error never reaches [`Printer::finish`]: its bar must not keep
    /// catching the library's lines.
    fn drop(&mut self) {
        if self.bar.take().is_some() {
            crate::notice::clear_printer();
        }
    }
}

/// The reason of a skip without its per-file detail ("unsupported file type (.exe)" counts as
/// "unsupported file type"), so that one closing line per reason says why files were skipped.
fn reason_kind(why: &str) -> &str {
    why.split_once(" (").map_or(why, |(kind, _)| kind)
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
            // The library's own lines (the hook's output, recovery, lock waits) go above the
            // bar instead of through it.
            let above = bar.clone();
            crate::notice::set_printer(move |line| above.suspend(|| eprintln!("{line}")));
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
                    *self
                        .unlisted_skipped
                        .entry(reason_kind(why).to_owned())
                        .or_default() += 1;
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
