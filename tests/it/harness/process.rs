//! Starting processes: the one place a test builds a command (openkb, a wrapper around it, or
//! a helper such as python3), always from a cleared environment, and the handshakes that let a
//! test wait for what a background process does instead of sleeping.
//!
//! Why a cleared environment: openkb reads `OPENKB_*`, `HOME`, locale and terminal variables,
//! and a hook inherits everything. A developer's shell (an exported `OPENKB_DIR`, a
//! `OPENKB_LOCK_TIMEOUT`, `NO_COLOR`, `COLUMNS`) must not change what a test sees, so every
//! command starts with nothing and gets only what [`clean`] sets plus what the test sets.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The built `openkb` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_openkb");

/// How long a handshake waits before it fails the test: far longer than any working openkb
/// takes, so only a broken (hung) test ever reaches it. Never a measure of speed.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// `program` with an empty environment but for `PATH` (to find `sh`, python3 and the tools
/// hooks run) and a fixed UTF-8 locale; stdin is null, so nothing waits on a terminal.
pub fn clean(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

/// `openkb` from a cleared environment with `home` as HOME (where global.yaml lives), run in
/// `cwd`. Every openkb a test starts is built here (or by [`openkb_with_umask`]).
pub fn openkb(home: &Path, cwd: &Path) -> Command {
    let mut cmd = clean(BIN);
    cmd.env("HOME", home).current_dir(cwd);
    cmd
}

/// `program wrapper_args... <openkb>` with openkb's environment ([`openkb`]). Append openkb's
/// own arguments to the result.
fn wrapped(program: &str, wrapper_args: &[&str], home: &Path, cwd: &Path) -> Command {
    let mut cmd = clean(program);
    cmd.args(wrapper_args)
        .arg(BIN)
        .env("HOME", home)
        .current_dir(cwd);
    cmd
}

/// `words` as one POSIX shell command line (each word single-quoted).
pub fn shell_line<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| format!("'{}'", w.as_ref().replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Wait for `child` to end and collect its output, failing the test (after killing the child)
/// when it has not ended by [`DEADLINE`]: a hang is a failure, not a stuck CI job.
pub fn wait_output(child: Child) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.expect("wait for the child"),
        Err(_) => {
            // SAFETY: signalling the child this test started (not reaped: its wait is pending).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("process {pid} did not end within {DEADLINE:?}: it hangs")
        }
    }
}

/// Run `cmd` to the end with output captured, bounded by [`DEADLINE`].
pub fn output_bounded(cmd: &mut Command) -> Output {
    wait_output(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    )
}

/// Poll `done` (a state another process brings about: a row registered, a file written)
/// until it holds; false once [`DEADLINE`] passed.
pub fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A process started in the background whose stderr is read line by line on a thread, so a
/// test can wait for a line it prints (a handshake: "waiting for another openkb process",
/// "watching ...") rather than sleep and hope.
pub struct Background {
    /// `None` once [`Background::finish`] took it; a `Background` dropped with its child still
    /// there (a test that failed half-way) kills it, so no process outlives its test.
    child: Option<Child>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Background {
    /// Start `cmd` with stderr piped and read; stdout piped (read by [`Background::finish`]).
    pub fn start(cmd: &mut Command) -> Background {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn in the background");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background {
            child: Some(child),
            lines,
            seen: Vec::new(),
        }
    }

    fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the child is there until finish")
    }

    pub fn id(&mut self) -> u32 {
        self.child().id()
    }

    /// The stderr lines printed so far (for a failure message), without waiting.
    pub fn stderr_so_far(&mut self) -> String {
        self.seen.extend(self.lines.try_iter());
        self.seen.join("\n")
    }

    /// Block until a stderr line contains `needle`, and return it. Fails the test when the
    /// process ends (or [`DEADLINE`] passes) without printing it.
    pub fn wait_for_stderr(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no stderr line with {needle:?} within {DEADLINE:?}: {:?}",
                        self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the process closed stderr without a line with {needle:?}: {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Whether the process is still running (it has not exited).
    pub fn is_running(&mut self) -> bool {
        self.child().try_wait().expect("try_wait").is_none()
    }

    /// Send `signal` to the process.
    pub fn signal(&mut self, signal: libc::c_int) {
        let pid = self.id();
        // SAFETY: signalling the child this test started (not reaped before `finish`).
        let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// Wait (bounded by [`DEADLINE`]) for the process to end; its status, stdout and whole
    /// stderr (the lines already waited for included).
    pub fn finish(mut self) -> (ExitStatus, String, String) {
        let out = wait_output(self.child.take().expect("finish is called once"));
        // The reader thread ends at end of file; a grandchild holding stderr open past
        // DEADLINE is a hang like any other.
        loop {
            match self.lines.recv_timeout(DEADLINE) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("stderr still open after {DEADLINE:?}"),
            }
        }
        let mut err = self.seen.join("\n");
        if !err.is_empty() {
            err.push('\n');
        }
        (out.status, stdout(&out), err)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `openkb` (environment as [`openkb`]) started by `sh` after `umask <umask>`, so the files it
/// creates show what that umask makes of them. Append openkb's arguments.
pub fn openkb_with_umask(umask: &str, home: &Path, cwd: &Path) -> Command {
    wrapped(
        "sh",
        &["-c", &format!("umask {umask} && exec \"$@\""), "sh"],
        home,
        cwd,
    )
}

/// The proof that the environment is cleared: a compile hook (which inherits openkb's
/// environment) sees nothing of the test process's (cargo sets `CARGO_*` there, a developer's
/// shell more), only what the harness sets and openkb's own `OPENKB_*` hook variables.
#[test]
fn openkb_and_its_hooks_see_only_what_the_harness_sets() {
    let env = super::Env::with_kb();
    env.set_config("compile_command: 'env > ../hook.env'\n");
    env.write("in/a.md", "a\n");
    let out = env.run(&["add", "in/a.md"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = std::fs::read_to_string(env.path().join("hook.env")).expect("hook.env");
    let names: std::collections::BTreeSet<&str> = seen
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .filter(|name| !name.starts_with("OPENKB_"))
        // What the hook's own shell adds.
        .filter(|name| !["PWD", "OLDPWD", "SHLVL", "_"].contains(name))
        .collect();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["HOME", "LANG", "LC_ALL", "PATH"],
        "{seen}"
    );
}
