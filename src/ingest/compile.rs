//! The compile hook: `compile_command` of `config.yaml`, run by `sh -c` once per document.
//!
//! This is where an LLM compiler plugs in. The command runs in the KB folder with
//! `OPENKB_KB_DIR`, `OPENKB_DOC_NAME`, `OPENKB_DOC_HASH`, `OPENKB_RAW_PATH` and
//! `OPENKB_SOURCE_PATH` (absolute paths; empty when the document has no such file). It runs
//! while openkb holds the KB's exclusive lock, as the Python tool's compiler does, because it
//! writes shared wiki pages (summaries, concepts, index) that other writers must not race; so it
//! cannot itself run openkb commands on the same KB: they would wait for that lock forever, so
//! they refuse at once instead (see [`crate::lock::HOOK_LOCK_ENV`]).

use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::AsRawFd;
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
    let label = if doc_name.is_empty() {
        doc.hash.chars().take(12).collect()
    } else {
        doc_name
    };
    let (status, stderr) =
        stream_output(&mut child, &label, verbose, |c| c.try_wait()).map_err(cannot_run)?;
    Ok(judge(status, &stderr))
}

/// Stream a running hook's output to our stderr, each line prefixed with `[label] ` so the
/// lines of one document stay recognisable: stdout always, stderr only when `show_stderr` (it
/// is kept either way, its last lines returned for the failure message).
///
/// `exited` is asked after every wake-up (output, or a 100 ms tick) whether the child is done
/// (plainly `Child::try_wait`; a caller with a timeout kills the child there). Once it is,
/// what its pipes already hold is read and the rest is not waited for: a background process
/// the hook started may keep them open for as long as it likes without holding openkb (and
/// the KB lock) up.
pub fn stream_output(
    child: &mut Child,
    label: &str,
    show_stderr: bool,
    mut exited: impl FnMut(&mut Child) -> std::io::Result<Option<ExitStatus>>,
) -> std::io::Result<(ExitStatus, Vec<String>)> {
    let mut pipes: Vec<Pipe> = Vec::new();
    if let Some(out) = child.stdout.take() {
        pipes.push(Pipe::new(Box::new(out), false));
    }
    if let Some(err) = child.stderr.take() {
        pipes.push(Pipe::new(Box::new(err), true));
    }
    let mut kept: VecDeque<String> = VecDeque::new();
    let mut emit = |is_stderr: bool, line: &str| {
        if is_stderr {
            if show_stderr {
                eprintln!("[{label}] {line}");
            }
            if kept.len() == ERROR_TAIL_LINES {
                kept.pop_front();
            }
            kept.push_back(line.to_owned());
        } else {
            eprintln!("[{label}] {line}");
        }
    };
    let mut status = None;
    loop {
        let timeout_ms = if status.is_some() { 0 } else { 100 };
        let ready = poll_readable(&pipes, timeout_ms)?;
        for (pipe, ready) in pipes.iter_mut().zip(&ready) {
            if *ready {
                pipe.read_some(&mut emit)?;
            }
        }
        pipes.retain(|p| p.open);
        if status.is_none() {
            status = exited(child)?;
        } else if pipes.is_empty() || !ready.iter().any(|r| *r) {
            break;
        }
    }
    for mut pipe in pipes {
        pipe.flush(&mut emit);
    }
    let status = status.ok_or_else(|| std::io::Error::other("the hook did not end"))?;
    Ok((status, kept.into()))
}

/// One output pipe of the hook and its unfinished last line.
struct Pipe {
    reader: Box<dyn ReadFd>,
    is_stderr: bool,
    partial: Vec<u8>,
    open: bool,
}

trait ReadFd: Read + AsRawFd {}
impl<T: Read + AsRawFd> ReadFd for T {}

impl Pipe {
    fn new(reader: Box<dyn ReadFd>, is_stderr: bool) -> Self {
        Pipe {
            reader,
            is_stderr,
            partial: Vec::new(),
            open: true,
        }
    }

    /// One read (poll said it will not block): emit the whole lines it completes.
    fn read_some(&mut self, emit: &mut impl FnMut(bool, &str)) -> std::io::Result<()> {
        let mut buf = [0u8; 8192];
        let n = match self.reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        };
        if n == 0 {
            self.flush(emit);
            self.open = false;
            return Ok(());
        }
        self.partial.extend_from_slice(&buf[..n]);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            emit(self.is_stderr, text.trim_end_matches(['\n', '\r']));
        }
        Ok(())
    }

    /// Emit a last line that has no newline.
    fn flush(&mut self, emit: &mut impl FnMut(bool, &str)) {
        if !self.partial.is_empty() {
            let text = String::from_utf8_lossy(&self.partial).into_owned();
            emit(self.is_stderr, text.trim_end_matches('\r'));
            self.partial.clear();
        }
    }
}

/// Which of `pipes` can be read without blocking (data, or end of file), waiting up to
/// `timeout_ms` for one to become so.
fn poll_readable(pipes: &[Pipe], timeout_ms: i32) -> std::io::Result<Vec<bool>> {
    if pipes.is_empty() {
        if timeout_ms > 0 {
            // Nothing to read: only the child's exit is awaited.
            std::thread::sleep(std::time::Duration::from_millis(timeout_ms as u64));
        }
        return Ok(Vec::new());
    }
    let mut fds: Vec<libc::pollfd> = pipes
        .iter()
        .map(|p| libc::pollfd {
            fd: p.reader.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for the whole call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n >= 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(fds
        .iter()
        .map(|f| f.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
        .collect())
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
