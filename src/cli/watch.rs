//! `openkb watch`: add files dropped into `raw/` (see `ingest::watch` for how). Events are
//! debounced about 2 s. If files in `raw/` are still waiting when the watch stops, they are
//! listed and the exit code is 1, never a silent 0. `--once` is the catch-up scan alone, for
//! scripts and cron.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::ingest::{self, add::Options, watch};

/// Debounce delay in milliseconds; hidden, for tests.
const DEBOUNCE_ENV: &str = "OPENKB_WATCH_DEBOUNCE_MS";

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
    let debounce = match std::env::var_os(DEBOUNCE_ENV) {
        None => Duration::from_secs(2),
        Some(v) => match v.to_str().and_then(|v| v.trim().parse::<u64>().ok()) {
            Some(ms) if ms <= 3_600_000 => Duration::from_millis(ms),
            _ => {
                return Err(Error::Invalid(format!(
                    "{DEBOUNCE_ENV}={:?} is not a number of milliseconds from 0 to 3600000",
                    crate::names::truncate_bytes(&v.to_string_lossy(), 64)
                )));
            }
        },
    };

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
