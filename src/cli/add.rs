//! `openkb add PATH...`: add files and folders (see `ingest::add` for how).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::{Error, Result};
use crate::ingest::add::{self, Options, Outcome, Reporter, Summary};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files and folders (recursive) to add: .pdf .md .markdown .docx .pptx .xlsx .html .htm
    /// .txt .csv; other files are skipped
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<()> {
    let probe = super::probe(ctx)?;
    let kb = probe.kb();
    let options = Options {
        compile_command: kb.config()?.compile_command()?.map(str::to_owned),
        verbose: ctx.verbose > 0,
    };
    crate::ingest::stop_cleanly_on_interrupt();
    let mut reporter = Printer::new(ctx.verbose > 0);
    let summary = add::add_paths(&probe, &args.paths, &options, &mut reporter)?;
    reporter.finish();
    finish(summary)
}

/// Print the summary line and turn failures into the exit code.
pub(super) fn finish(summary: Summary) -> Result<()> {
    println!(
        "added {}, skipped {}, failed {}",
        summary.added, summary.skipped, summary.failed
    );
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

/// The KB and its store, without holding the lock: commands that prepare work outside it take
/// the lock themselves, per batch.
/// Per-file lines (added on stdout, skipped/failed on stderr) and, on a terminal, a progress
/// bar.
pub(super) struct Printer {
    bar: Option<ProgressBar>,
    verbose: bool,
    /// Print "skipped" lines (watch keeps them for -v: it sees its own copies come and go).
    pub show_skipped: bool,
}

impl Printer {
    pub fn new(verbose: bool) -> Self {
        Printer {
            bar: None,
            verbose,
            show_skipped: true,
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn line(&self, text: String, to_stdout: bool) {
        match &self.bar {
            Some(bar) => bar.suspend(|| print_line(&text, to_stdout)),
            None => print_line(&text, to_stdout),
        }
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
        if files > 1 && std::io::stderr().is_terminal() {
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
        match outcome {
            Outcome::Added { doc_name, status } => {
                self.line(
                    format!(
                        "added {} as {} ({status})",
                        crate::names::shown(&path.to_string_lossy()),
                        crate::names::shown(doc_name)
                    ),
                    true,
                );
            }
            Outcome::Known => {
                if self.verbose {
                    self.line(
                        format!(
                            "skipped {}: already registered (same content)",
                            crate::names::shown(&path.to_string_lossy())
                        ),
                        false,
                    );
                }
            }
            Outcome::Skipped(why) => {
                if self.show_skipped || self.verbose {
                    self.line(
                        format!(
                            "skipped {}: {why}",
                            crate::names::shown(&path.to_string_lossy())
                        ),
                        false,
                    );
                }
            }
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
