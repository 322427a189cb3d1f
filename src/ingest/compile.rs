//! The compile hook: `compile_command` of `config.yaml`, run by `sh -c` once per document.
//!
//! This is where an LLM compiler plugs in. The command runs in the KB folder with
//! `OPENKB_KB_DIR`, `OPENKB_DOC_NAME`, `OPENKB_DOC_HASH`, `OPENKB_RAW_PATH` and
//! `OPENKB_SOURCE_PATH` (absolute paths; empty when the document has no such file). It runs
//! while openkb holds the KB's exclusive lock, as the Python tool's compiler does, because it
//! writes shared wiki pages (summaries, concepts, index) that other writers must not race; so it
//! cannot itself run openkb commands on the same KB: they would wait for that lock forever, so
//! they refuse at once instead (see [`crate::lock::HOOK_LOCK_ENV`]).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::error::{Error, Result};
use crate::kb::Kb;
use crate::lock::HOOK_LOCK_ENV;
use crate::state::Document;

/// Lines of the hook's stderr kept in the error shown and stored for `status`.
const ERROR_TAIL_LINES: usize = 20;

/// Run the hook for `doc`. `Ok(Err(message))` is a failed compile (non-zero exit, killed by a
/// signal); `Err` is a failure to start it at all.
///
/// Its output is streamed as it comes (see [`stream_output`]); its environment carries
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
    let child = Command::new("sh")
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
    let label = if doc_name.is_empty() {
        doc.hash.chars().take(12).collect()
    } else {
        doc_name
    };
    let (status, stderr) =
        stream_output(child, &label, verbose, |c| c.wait()).map_err(cannot_run)?;
    Ok(judge(status, &stderr))
}

/// Stream a running hook's output to our stderr, each line prefixed with `[label] ` so the
/// lines of one document stay recognisable: stdout always, stderr only when `show_stderr` (it
/// is kept either way, and returned for the failure message). `wait` waits for the child
/// (the caller decides how: plainly, or with a timeout that kills its process group); the
/// output is read until both pipes close.
pub fn stream_output(
    mut child: Child,
    label: &str,
    show_stderr: bool,
    wait: impl FnOnce(&mut Child) -> std::io::Result<ExitStatus>,
) -> std::io::Result<(ExitStatus, Vec<String>)> {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (status, kept) = std::thread::scope(|scope| {
        let out = scope.spawn(|| {
            if let Some(pipe) = stdout {
                for_each_line(pipe, |line| eprintln!("[{label}] {line}"));
            }
        });
        let err = scope.spawn(|| {
            let mut kept: std::collections::VecDeque<String> = Default::default();
            if let Some(pipe) = stderr {
                for_each_line(pipe, |line| {
                    if show_stderr {
                        eprintln!("[{label}] {line}");
                    }
                    if kept.len() == ERROR_TAIL_LINES {
                        kept.pop_front();
                    }
                    kept.push_back(line.to_owned());
                });
            }
            kept
        });
        let status = wait(&mut child);
        let _ = out.join();
        let kept = err.join().unwrap_or_default();
        (status, kept)
    });
    Ok((status?, kept.into()))
}

/// Call `each` per line of `pipe` (lossily decoded, line ending dropped) until it closes.
fn for_each_line(pipe: impl Read, mut each: impl FnMut(&str)) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                each(line.trim_end_matches(['\n', '\r']));
            }
        }
    }
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
