//! `openkb watch`: add files dropped into `raw/` (see `ingest::watch` for how). Events are
//! debounced about 2 s. If files in `raw/` are still waiting when the watch stops, they are
//! listed and the exit code is 1, never a silent 0. `--once` is the catch-up scan alone, for
//! scripts and cron.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::ingest::{self, add::Options, watch};

/// Debounce delay in milliseconds; hidden, for tests.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Add the unregistered files of raw/ once and exit (for scripts and cron)
    #[arg(long)]
    once: bool,
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<()> {
    let probe = super::probe(ctx)?;
    let kb = probe.kb().clone();
    let raw = watch::raw_folder(&probe)?;
    // A testing knob, bounded all the same: the debouncer adds it to `Instant`s, which panics
    // past what they can hold.
    let debounce = ctx
        .settings
        .watch_debounce
        .unwrap_or(Duration::from_secs(2));

    ingest::stop_cleanly_on_interrupt();
    // Re-read each time: a compile_command set while watching takes effect.
    let options = || Options::from_config(&kb, ctx.verbose > 0);
    let mut printer = super::common::Printer::new(ctx.output(false));
    printer.show_skipped = false;
    if args.once {
        let summary = ingest::add::add_paths(
            &probe,
            std::slice::from_ref(&raw),
            &options()?,
            &mut printer,
        )?;
        printer.finish();
        return super::common::finish_add(&ctx.output(false), summary);
    }
    let waiting = watch::watch(probe, &raw, debounce, &options, &mut printer)?;
    if waiting.is_empty() {
        return Ok(());
    }
    const SHOWN: usize = 10;
    for path in waiting.iter().take(SHOWN) {
        eprintln!("  not added yet: {}", path.display());
    }
    if waiting.len() > SHOWN {
        eprintln!("  ... and {} more", waiting.len() - SHOWN);
    }
    Err(Error::Incomplete(format!(
        "stopped with {} file(s) in {} not added yet; `openkb watch --once` adds them",
        waiting.len(),
        raw.display()
    )))
}
