//! `openkb export`: the registry as a 0.4-format `hashes.json` (to go back to the Python tool)
//! or the whole state as JSON (for scripts and backups).

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, IoContext, Result};
use crate::fsx;
use crate::legacy::export::write_registry;
use crate::legacy::handover::LogMd;
use crate::state::imports::{self, ImportRecord};
use crate::state::{Document, LogEntry, Queries, Status};

#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("format").required(true).args(["legacy_json", "json", "for_python"])
))]
pub struct Args {
    /// Hand the KB back to the Python tool: write .openkb/hashes.json (refused if one exists)
    /// and record it as the base of the next `openkb migrate` (a three-way merge)
    #[arg(long, conflicts_with = "output")]
    for_python: bool,
    /// Write the registry as the Python tool's hashes.json (0.4 format, registry order)
    #[arg(long)]
    legacy_json: bool,
    /// Write documents, log and import records as one JSON document
    #[arg(long)]
    json: bool,
    /// Write to PATH (replaced atomically) instead of standard output
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
}

/// Format of `export --json` (docs/schemas/export.json); `format_version` is added by
/// `output::write_json`, as for every JSON document.
#[derive(Serialize)]
struct StateExport<'a> {
    format: &'static str,
    knowledge_base: String,
    exported_at: String,
    schema_version: i64,
    documents: &'a [Document],
    log: &'a [LogEntry],
    imports: &'a [ImportRecord],
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<()> {
    if args.for_python {
        return for_python(ctx);
    }
    let out = ctx.output(false);
    let open = super::read_session(ctx)?;
    let reader = open.reader()?;
    let documents = reader.list()?;
    let text = if args.legacy_json {
        let unfinished = documents
            .iter()
            .filter(|d| d.status != Status::Compiled)
            .count();
        if unfinished > 0 {
            out.warn(format_args!(
                "{unfinished} document(s) are not compiled (pending or failed); the Python \
                 tool will consider them registered"
            ));
        }
        let mut text = String::with_capacity(documents.len() * 320 + 4);
        write_registry(&mut text, &documents);
        text
    } else {
        let mut log = Vec::new();
        reader.for_each_log_entry(&mut |entry| {
            log.push(entry);
            Ok(())
        })?;
        let export = StateExport {
            format: "openkb-export",
            knowledge_base: open.kb().root().display().to_string(),
            exported_at: crate::state::utc_now(),
            schema_version: open.schema_version(),
            documents: &documents,
            log: &log,
            imports: &imports::list(&reader)?,
        };
        let mut bytes = Vec::new();
        super::output::write_json(&mut bytes, &export)?;
        String::from_utf8(bytes)
            .map_err(|e| Error::Invalid(format!("exported JSON is not UTF-8: {e}")))?
    };
    match &args.output {
        Some(path) => {
            refuse_missing_folder(path)?;
            refuse_kb_registry(open.kb(), path)?;
            fsx::atomic_write(path, text.as_bytes())?;
            out.note(format_args!(
                "wrote {} document(s) to {}",
                documents.len(),
                path.display()
            ));
            Ok(())
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .with_path("cannot write", "standard output")
        }
    }
}

/// `export --for-python`: see [`crate::legacy::handover::export_for_python`].
fn for_python(ctx: &super::Ctx) -> Result<()> {
    let open = super::write_session(ctx)?;
    let handed = crate::legacy::handover::export_for_python(&open)?;
    if handed.unfinished > 0 {
        eprintln!(
            "warning: {} document(s) are not compiled (pending or failed); the Python tool will \
             consider them registered",
            handed.unfinished
        );
    }
    println!(
        "Wrote {} ({} documents) for the Python tool and recorded it as the base of the next \
         `openkb migrate`.",
        open.kb().hashes_json().display(),
        handed.documents
    );
    match handed.log_md {
        LogMd::Current => println!("wiki/log.md is current (it renders the log table)."),
        LogMd::Rewritten { imported } => println!(
            "wiki/log.md rewritten from the log table ({imported} line(s) the Python tool had \
             appended imported first)."
        ),
        LogMd::LeftAsIs => eprintln!(
            "warning: wiki/log.md holds text the log table does not have; left as it is (`openkb \
             doctor --fix` saves that text aside and rewrites the page)"
        ),
    }
    println!(
        "Use the Python tool now; openkb commands warn until `openkb migrate` merges its changes \
         back."
    );
    Ok(())
}

/// `-o` must not name the KB's own `.openkb/hashes.json`: it would replace a file the Python
/// tool may have changed since (unmerged work) and record no base, so the next `openkb
/// migrate` could not tell the Python tool's changes from openkb's. `--for-python` does both.
fn refuse_kb_registry(kb: &crate::kb::Kb, path: &std::path::Path) -> Result<()> {
    let registry = kb.hashes_json();
    let same_folder = |folder: &std::path::Path| {
        let registry_folder = registry.parent().and_then(|p| p.canonicalize().ok());
        folder
            .canonicalize()
            .ok()
            .is_some_and(|f| Some(f) == registry_folder)
    };
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let names_registry = (path.file_name() == registry.file_name() && same_folder(folder))
        || path
            .canonicalize()
            .is_ok_and(|p| registry.canonicalize().is_ok_and(|r| r == p));
    if !names_registry {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "refusing to write {}: it is the KB's own registry file for the Python tool; run \
         `openkb export --for-python`, which never replaces a hashes.json the Python tool may \
         have changed and records the base `openkb migrate` merges against (nothing was \
         written)",
        path.display()
    )))
}

/// `-o` writes one file: a missing folder is most likely a typo, and creating it would leave
/// the export somewhere nobody looks.
fn refuse_missing_folder(path: &std::path::Path) -> Result<()> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => return Ok(()),
    };
    if folder.is_dir() {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "cannot write {}: the folder {} does not exist; create it first (nothing was written)",
        path.display(),
        folder.display()
    )))
}
