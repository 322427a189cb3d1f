//! The compile hook's output as users see it: shown as it comes, each line prefixed with the
//! document (`[doc_name] line`) so the lines of one document stay recognisable, on openkb's
//! stderr (stdout stays the command's own report). The hook's stdout is always shown; its
//! stderr live only with `-v`, else kept (the last [`ERROR_TAIL_LINES`]) for the failure
//! message, which is also stored as the document's error.
//!
//! [`show_line`] is the policy; [`stream`] reads a running hook's pipes and applies it.

use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::{Child, ExitStatus};

/// Lines of the hook's stderr kept in the error shown and stored for `status`.
pub const ERROR_TAIL_LINES: usize = 20;

/// What prefixes the hook's lines for `doc`: its doc_name (escaped like every name shown),
/// else the start of its hash.
pub fn label(doc: &crate::state::Document) -> String {
    doc.display_doc_name()
        .filter(|d| !d.is_empty())
        .map_or_else(
            || doc.hash.chars().take(12).collect(),
            |d| crate::names::shown(&d).into_owned(),
        )
}

/// Show one line of the hook's output: stdout always, stderr when `show_stderr` (`-v`).
pub fn show_line(label: &str, is_stderr: bool, show_stderr: bool, line: &str) {
    if !is_stderr || show_stderr {
        eprintln!("[{label}] {line}");
    }
}

/// Read a running hook's output as it comes and show it with [`show_line`]; the stderr is
/// kept either way, its last lines returned for the failure message.
///
/// `exited` is asked after every wake-up (output, or a 100 ms tick) whether the child is done
/// (plainly `Child::try_wait`; a caller with a timeout kills the child there). Once it is,
/// what its pipes already hold is read and the rest is not waited for: a background process
/// the hook started may keep them open for as long as it likes without holding openkb (and
/// the KB lock) up.
pub fn stream(
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
        show_line(label, is_stderr, show_stderr, line);
        if is_stderr {
            if kept.len() == ERROR_TAIL_LINES {
                kept.pop_front();
            }
            kept.push_back(line.to_owned());
        }
    };
    let mut status = None;
    // Once both pipes are closed only the exit is awaited. It usually follows at once (a
    // process closes its files just before it becomes waitable), so the wait starts short and
    // grows: a fixed 100 ms tick made every quick hook cost 100 ms.
    let mut exit_pause_ms = 1;
    loop {
        let timeout_ms = if status.is_some() {
            0
        } else if pipes.is_empty() {
            let pause = exit_pause_ms;
            exit_pause_ms = (exit_pause_ms * 2).min(100);
            pause
        } else {
            100
        };
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
