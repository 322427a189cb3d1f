//! The compile hook: `compile_command` of `config.yaml`, run by `sh -c` once per document.
//!
//! This is where an LLM compiler plugs in. The command runs in the KB folder with
//! `OPENKB_KB_DIR`, `OPENKB_DOC_NAME`, `OPENKB_DOC_HASH`, `OPENKB_RAW_PATH` and
//! `OPENKB_SOURCE_PATH` (absolute paths; empty when the document has no such file). It runs
//! while openkb holds the KB's exclusive lock, as the Python tool's compiler does, because it
//! writes shared wiki pages (summaries, concepts, index) that other writers must not race; so it
//! cannot itself run openkb commands on the same KB: they would wait for that lock forever, so
//! they refuse at once instead (see [`crate::lock::HOOK_LOCK_ENV`]).

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use super::hook_output;
use crate::error::{Error, Result};
use crate::kb::Kb;
use crate::lock::HOOK_LOCK_ENV;
use crate::state::Document;

/// Run the hook for `doc`. `Ok(Err(message))` is a failed compile (non-zero exit, killed by a
/// signal); `Err` is a failure to start it at all.
///
/// Its output is streamed as it comes (see [`hook_output`]); its environment carries
/// [`HOOK_LOCK_ENV`], so an `openkb` it runs on the same KB fails at once instead of waiting
/// for the lock this process holds for the hook's whole run.
pub fn run_hook(
    kb: &Kb,
    command: &str,
    doc: &Document,
    verbose: bool,
) -> Result<std::result::Result<(), String>> {
    let abs = |rel: &Option<String>| -> String {
        rel.as_deref()
            .filter(|r| !r.is_empty() && !Path::new(r).is_absolute())
            .map(|r| kb.root().join(r).display().to_string())
            .unwrap_or_default()
    };
    let doc_name = doc.display_doc_name().unwrap_or_default();
    let cannot_run = |e: std::io::Error| {
        Error::Invalid(format!(
            "cannot run compile_command {command:?} (from {}): {e}",
            kb.config_path().display()
        ))
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(kb.root())
        .env("OPENKB_KB_DIR", kb.root())
        .env("OPENKB_DOC_NAME", &doc_name)
        .env("OPENKB_DOC_HASH", &doc.hash)
        .env("OPENKB_RAW_PATH", abs(&doc.raw_path))
        .env("OPENKB_SOURCE_PATH", abs(&doc.source_path))
        .env(
            HOOK_LOCK_ENV,
            crate::lock::hook_marker(std::process::id(), &kb.lock_path()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(cannot_run)?;
    let label = hook_output::label(doc);
    let (status, stderr) =
        hook_output::stream(&mut child, &label, verbose, |c| c.try_wait()).map_err(cannot_run)?;
    Ok(judge(status, &stderr))
}

/// A hook's exit status and the end of its stderr as a compile outcome.
fn judge(status: ExitStatus, stderr: &[String]) -> std::result::Result<(), String> {
    if status.success() {
        return Ok(());
    }
    let tail = stderr.join("\n");
    let how = match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => "was killed by a signal".to_owned(),
    };
    Err(if tail.trim().is_empty() {
        format!("compile_command {how}")
    } else {
        format!("compile_command {how}:\n{tail}")
    })
}
