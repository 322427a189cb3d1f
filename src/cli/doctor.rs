//! `openkb doctor`: check the knowledge base's health, and repair what is safe with `--fix`.

use std::collections::HashMap;

use crate::doctor::{self, Finding, Options, Severity};
use crate::error::Result;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit codes: 0 healthy (warnings allowed), 1 a problem remains (the output says what and how to
fix it), 3 no knowledge base found, 4 another openkb process holds the KB.

Without --fix nothing is changed (shared lock). --fix takes the exclusive lock and repairs what
is safe: removes temp files older than 5 minutes, rewrites wiki/log.md from the log table,
checkpoints a large WAL and, for a damaged or missing state.db, moves it aside as
state.db.corrupt-<UTC timestamp> (with -wal/-shm; nothing is deleted) and rebuilds it from the
files in raw/ and wiki/.

OPENKB_FS_TYPE=<type> (nfs, cifs, fuse.sshfs, ext4, ...) overrides filesystem detection, for
testing and diagnosis.")]
pub struct Args {
    /// Run integrity_check and foreign_key_check instead of the faster quick_check
    #[arg(long)]
    full: bool,
    /// Repair what can be repaired safely (takes the exclusive KB lock)
    #[arg(long)]
    fix: bool,
    /// Print the findings as JSON (docs/schemas/doctor.json)
    #[arg(long)]
    json: bool,
}

/// How many findings of one check the text output shows before summarizing the rest.
const SHOWN_PER_CHECK: usize = 20;

pub fn run(ctx: &super::Ctx, args: Args) -> Result<i32> {
    let out = ctx.output(args.json);
    let kb = ctx.kb()?;
    let report = if !args.fix && doctor::cannot_open_state(&kb) {
        // Reported without taking the lock: the lock file itself may be the link.
        doctor::symlinks_only(&kb)
    } else {
        // doctor::run takes the KB lock itself: shared, or exclusive with --fix.
        doctor::run(
            &kb,
            Options {
                full: args.full,
                fix: args.fix,
            },
        )?
    };
    if out.json {
        out.json(&report)?;
        return Ok(report.exit_code());
    }
    out.result(format_args!("Knowledge base: {}", report.knowledge_base));
    if let Some(state) = &report.state {
        out.line(format_args!("State: {}", state.line()));
    }
    // Long lists (100k unowned files) are cut per check; --json has them all.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut hidden: Vec<(&str, usize)> = Vec::new();
    for finding in &report.findings {
        let count = seen.entry(finding.check).or_default();
        *count += 1;
        if *count > SHOWN_PER_CHECK && finding.severity != Severity::Ok {
            match hidden.iter_mut().find(|(c, _)| *c == finding.check) {
                Some((_, n)) => *n += 1,
                None => hidden.push((finding.check, 1)),
            }
            continue;
        }
        // -q keeps what needs attention and drops the checks that passed.
        if finding.severity == Severity::Ok && !finding.fixed {
            out.line(line(finding));
        } else {
            out.result(line(finding));
        }
    }
    for (check, n) in hidden {
        out.result(format_args!(
            "        ... and {n} more {check} finding(s) (--json lists them all)"
        ));
    }
    let fixed = if report.fixed > 0 {
        format!(", {} fixed", report.fixed)
    } else {
        String::new()
    };
    if report.healthy {
        out.result(format_args!(
            "Healthy ({} warning(s){fixed})",
            report.warnings
        ));
    } else {
        out.result(format_args!(
            "{} problem(s), {} warning(s){fixed}",
            report.problems, report.warnings
        ));
    }
    Ok(report.exit_code())
}

fn line(f: &Finding) -> String {
    let tag = match (f.fixed, f.severity) {
        (true, _) => "fixed",
        (false, Severity::Ok) => "ok",
        (false, Severity::Warning) => "warning",
        (false, Severity::Problem) => "PROBLEM",
    };
    format!(
        "{tag:<7} {}: {}",
        f.check,
        crate::names::shown_line(&f.message)
    )
}
