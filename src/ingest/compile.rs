//! The compile hook: `compile_command` of `config.yaml`, run by `sh -c` once per document.
//!
//! This is where an LLM compiler plugs in. The command runs in the KB folder with
//! `OPENKB_KB_DIR`, `OPENKB_DOC_NAME`, `OPENKB_DOC_HASH`, `OPENKB_RAW_PATH` and
//! `OPENKB_SOURCE_PATH` (absolute paths; empty when the document has no such file). It runs
//! while openkb holds the KB's exclusive lock, as the Python tool's compiler does, because it
//! writes shared wiki pages (summaries, concepts, index) that other writers must not race; so it
//! cannot itself run openkb commands on the same KB: they would wait for that lock forever, so
//! they refuse at once instead (see [`crate::lock::HOOK_LOCK_ENV`]).

use std::process::{Command, ExitStatus, Stdio};

use super::hook_output;
use crate::error::{Error, Result};
use crate::kb::Kb;
use crate::kbpath::{KbPath, Owned};
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
    let env = match hook_env(kb, doc) {
        Ok(env) => env,
        Err(why) => {
            return Ok(Err(format!(
                "refused before compile_command ran: {why}; the hook only ever sees validated \
                 names and paths inside the KB"
            )));
        }
    };
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
        .env("OPENKB_DOC_NAME", &env.doc_name)
        .env("OPENKB_DOC_HASH", &doc.hash)
        .env("OPENKB_RAW_PATH", &env.raw_path)
        .env("OPENKB_SOURCE_PATH", &env.source_path)
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

/// The names and paths a hook is given, every one validated.
#[derive(Debug, PartialEq, Eq)]
pub struct HookEnv {
    pub doc_name: String,
    /// Absolute, or empty when the document has no such file.
    pub raw_path: String,
    pub source_path: String,
}

/// Validate what the hook of `doc` would see: a doc_name that is one file name, a raw copy
/// under `raw/` and a source in `wiki/sources/`, both confined to the KB. A document whose
/// entry fails (a legacy doc_name with `..`, a raw_path naming a KB file) is refused before
/// the hook runs: the README's own example hook writes to `wiki/summaries/$OPENKB_DOC_NAME.md`.
pub fn hook_env(kb: &Kb, doc: &Document) -> std::result::Result<HookEnv, String> {
    let doc_name = doc
        .display_doc_name()
        .ok_or_else(|| "the document has no doc_name".to_owned())?;
    crate::kbpath::check_doc_name(&doc_name)?;
    let confined = |rel: &Option<String>, want: Owned| -> std::result::Result<String, String> {
        let Some(rel) = rel.as_deref().filter(|r| !r.is_empty()) else {
            return Ok(String::new());
        };
        match crate::kbpath::owned_by_document(rel, Some(&doc_name))? {
            owned if owned == want => {}
            _ => return Err(format!("{rel:?} is not the document's own file")),
        }
        let path = KbPath::new(kb, rel).map_err(|e| e.to_string())?;
        Ok(path.as_path().display().to_string())
    };
    Ok(HookEnv {
        raw_path: confined(&doc.raw_path, Owned::Raw)?,
        source_path: confined(&doc.source_path, Owned::Source)?,
        doc_name,
    })
}
