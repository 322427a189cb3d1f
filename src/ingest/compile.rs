//! The compile hook: `compile_command` of `config.yaml`, run by `sh -c` once per document.
//!
//! This is where an LLM compiler plugs in. The command runs in the KB folder with
//! `OPENKB_KB_DIR`, `OPENKB_DOC_NAME`, `OPENKB_DOC_HASH`, `OPENKB_RAW_PATH` and
//! `OPENKB_SOURCE_PATH` (absolute paths; empty when the document has no such file). It runs
//! while openkb holds the KB's exclusive lock, as the Python tool's compiler does, because it
//! writes shared wiki pages (summaries, concepts, index) that other writers must not race; so it
//! must not itself run openkb commands on the same KB (they would wait for that lock).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::kb::Kb;
use crate::state::Document;

/// Lines of the hook's stderr kept in the error shown and stored for `status`.
const ERROR_TAIL_LINES: usize = 20;

/// Run the hook for `doc`. `Ok(Err(message))` is a failed compile (non-zero exit, killed by a
/// signal); `Err` is a failure to start it at all.
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
    let output = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(kb.root())
        .env("OPENKB_KB_DIR", kb.root())
        .env("OPENKB_DOC_NAME", &doc_name)
        .env("OPENKB_DOC_HASH", &doc.hash)
        .env("OPENKB_RAW_PATH", abs(&doc.raw_path))
        .env("OPENKB_SOURCE_PATH", abs(&doc.source_path))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::Invalid(format!(
                "cannot run compile_command {command:?} (from {}): {e}",
                kb.config_path().display()
            ))
        })?;
    if verbose && !output.stdout.is_empty() {
        eprint!("{}", String::from_utf8_lossy(&output.stdout));
    }
    if output.status.success() {
        return Ok(Ok(()));
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(ERROR_TAIL_LINES)..].join("\n");
    let how = match output.status.code() {
        Some(code) => format!("exited with status {code}"),
        None => "was killed by a signal".to_owned(),
    };
    Ok(Err(if tail.trim().is_empty() {
        format!("compile_command {how}")
    } else {
        format!("compile_command {how}:\n{tail}")
    }))
}
