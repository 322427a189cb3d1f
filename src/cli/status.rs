//! `openkb status`: what the knowledge base holds.

use std::path::Path;

use serde::Serialize;

use crate::doctor::StateReport;
use crate::error::Result;
use crate::names;
use crate::state::{LogEntry, Queries, StatusCounts};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (docs/schemas/status.json) instead of text
    #[arg(long)]
    json: bool,
}

/// Wiki folders counted by `status`, as the Python tool shows them.
const WIKI_FOLDERS: &[&str] = &[
    "sources",
    "summaries",
    "concepts",
    "entities",
    "explorations",
    "reports",
];

#[derive(Serialize)]
struct Report {
    knowledge_base: String,
    documents: StatusCounts,
    total_documents: u64,
    raw_files: u64,
    /// Files per wiki folder, in the order `WIKI_FOLDERS` lists them (serde_json's map keeps
    /// insertion order).
    wiki: serde_json::Map<String, serde_json::Value>,
    last_compile: Option<LogEntry>,
    last_lint: Option<LogEntry>,
    schema_version: i64,
    state_db_bytes: u64,
    wal_bytes: u64,
    state: StateReport,
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<()> {
    let out = ctx.output(args.json);
    let open = super::read_session(ctx)?;
    let mut documents = StatusCounts::default();
    // The long-lived reader is taken after the measure and the disk usage, which each read on
    // a connection of their own: while it held one, a team KB would open another.
    let state = StateReport::measure(open.kb(), open.store(), || {
        documents = open.reader()?.counts()?;
        Ok(())
    })?;
    let usage = open.disk_usage()?;
    let reader = open.reader()?;
    // Only compile rows: an `ingest` row says a file was added, not that anything compiled.
    let last_compile = ["compile", "recompile"]
        .into_iter()
        .filter_map(|op| reader.last_log_of(op).transpose())
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .max_by_key(|e| e.id);
    let report = Report {
        knowledge_base: open.kb().root().display().to_string(),
        total_documents: documents.total(),
        documents,
        raw_files: count_files(&open.kb().raw_dir(), true)?,
        wiki: WIKI_FOLDERS
            .iter()
            .map(|f| {
                Ok((
                    f.to_string(),
                    count_files(&open.kb().wiki_dir().join(f), false)?.into(),
                ))
            })
            .collect::<Result<_>>()?,
        last_compile,
        last_lint: reader.last_log_of("lint")?,
        schema_version: open.schema_version(),
        state_db_bytes: usage.database_bytes,
        wal_bytes: usage.pending_log_bytes,
        state,
    };
    if out.json {
        return out.json(&report);
    }
    out.result(format_args!("Knowledge base: {}", report.knowledge_base));
    out.result(format_args!(
        "Documents: {} (compiled {}, pending {}, failed {})",
        report.total_documents, documents.compiled, documents.pending, documents.failed
    ));
    out.result(format_args!("Raw files: {}", report.raw_files));
    let wiki: Vec<String> = report
        .wiki
        .iter()
        .map(|(f, n)| format!("{f} {n}"))
        .collect();
    out.result(format_args!("Wiki: {}", wiki.join(", ")));
    let when = |e: &Option<LogEntry>| match e {
        Some(e) => format!(
            "{} ({} | {})",
            e.timestamp,
            names::shown(&e.operation),
            names::shown(&e.description)
        ),
        None => "never".to_owned(),
    };
    out.result(format_args!("Last compile: {}", when(&report.last_compile)));
    out.result(format_args!("Last lint: {}", when(&report.last_lint)));
    out.result(format_args!("State: {}", report.state.line()));
    if report.state.schema.is_none() {
        out.result(format_args!(
            "State size: state.db {} (WAL {})",
            human_bytes(report.state_db_bytes),
            human_bytes(report.wal_bytes)
        ));
    }
    Ok(())
}

/// Regular files in `dir` (recursively when asked), ignoring dotfiles; a missing folder is 0.
fn count_files(dir: &Path, recursive: bool) -> Result<u64> {
    use crate::fsx::WalkStep;
    let mut n = 0;
    crate::fsx::walk(dir, "", &mut |rel, entry| {
        if entry.file_name().to_string_lossy().starts_with('.') {
            return WalkStep::Skip;
        }
        if rel.ends_with('/') {
            return if recursive {
                WalkStep::Continue
            } else {
                WalkStep::Skip
            };
        }
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            n += 1;
        }
        WalkStep::Continue
    })?;
    Ok(n)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
