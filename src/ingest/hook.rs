//! The compile hook: `compile_command` of `config.yaml`, run by `sh -c` once per document.
//!
//! This is where an LLM compiler plugs in. The command runs in the KB folder with
//! `OPENKB_KB_DIR`, `OPENKB_DOC_NAME`, `OPENKB_DOC_HASH`, `OPENKB_RAW_PATH` and
//! `OPENKB_SOURCE_PATH` (absolute paths; empty when the document has no such file). It runs
//! while openkb holds the KB's exclusive lock, as the Python tool's compiler does, because it
//! writes shared wiki pages (summaries, concepts, index) that other writers must not race; so it
//! cannot itself run openkb commands on the same KB: they would wait for that lock forever, so
//! they refuse at once instead (see [`crate::lock::HOOK_LOCK_ENV`]). Its output is streamed as
//! it comes ([`hook_output`]).
//!
//! # A hook lives and dies with its lock
//!
//! A hook that kept running after its openkb process, or after the lock it ran under, would
//! write wiki pages for a document that recovery has already rolled back, racing whoever holds
//! the lock next. So:
//!
//! - The hook runs in a process group of its own, which openkb kills as a whole: when the
//!   hook's main process exits (a `sleep 1000 &` left behind neither keeps the lock nor keeps
//!   openkb waiting for the pipes it inherited) and when `compile_timeout` runs out. openkb
//!   returns only once no process of the group is left. SIGINT/SIGTERM to a command that asked
//!   for [`super::stop_cleanly_on_interrupt`] are passed on to the group as SIGINT (in a group
//!   of its own the hook no longer gets the terminal's Ctrl-C).
//! - Its main process gets SIGKILL when the openkb thread that started it dies
//!   (`PR_SET_PDEATHSIG` on Linux), so a killed openkb takes it along at once.
//! - The group id is recorded in the operation's intent ([`HookEvents::started`]) before the
//!   hook's command starts (it waits for a line on stdin, written after the record).
//!   Background children a dead hook left are killed by the recovery that settles the intent
//!   ([`kill_orphaned_hook`]), before it rolls the operation back.
//!   `OPENKB_HOOK_TOKEN` in the hook's environment tells its processes from unrelated ones that
//!   later reuse the id; a process that clears its environment and leaves the group escapes.
//! - The lock's file descriptor is close-on-exec (Rust opens every file so): the hook never
//!   inherits the flock.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::hook_output;
use crate::error::{Error, Result};
use crate::kb::Kb;
use crate::kbpath::{KbPath, Owned};
use crate::lock::HOOK_LOCK_ENV;
use crate::state::{Document, HookGroup};

/// Environment variable holding the token that marks a hook's processes as openkb's.
pub const HOOK_TOKEN_ENV: &str = "OPENKB_HOOK_TOKEN";

/// The script `sh` runs first: it waits for one line on stdin (written once the hook's group
/// is recorded, see [`HookEvents::started`]), then becomes the hook's command (same process,
/// so `$$` is the group id), with stdin from /dev/null.
const GATE: &str = r#"read -r _ || exit 125; exec sh -c "$1" </dev/null"#;

/// How long to wait for a killed process group to be gone (they die at once unless stuck in
/// the kernel, e.g. on a hung network file system).
const GROUP_EXIT_WAIT: Duration = Duration::from_secs(10);

/// How a hook run is bounded and shown.
#[derive(Clone, Copy, Debug, Default)]
pub struct HookOptions {
    /// `compile_timeout` of config.yaml: the hook's group is killed when it runs longer.
    pub timeout: Option<Duration>,
    /// Show the hook's stderr live too (`-v`), not only on failure.
    pub verbose: bool,
}

/// What the caller of [`run_hook`] is told while the hook runs.
pub trait HookEvents {
    /// The hook's process group exists. Record it in the operation's intent (an `Err` kills
    /// the hook and is returned). The hook's command starts only after this returns.
    fn started(&mut self, hook: &HookGroup) -> Result<()>;
}

/// Run the hook for `doc`. `Ok(Err(message))` is a failed compile (non-zero exit, killed by a
/// signal, timed out, interrupted); `Err` is a failure to start it at all or to record it.
///
/// Its output is streamed as it comes (see [`hook_output`]); its environment carries
/// [`HOOK_LOCK_ENV`], so an `openkb` it runs on the same KB fails at once instead of waiting
/// for the lock this process holds for the hook's whole run.
pub fn run_hook(
    kb: &Kb,
    command: &str,
    doc: &Document,
    options: &HookOptions,
    events: &mut dyn HookEvents,
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
    let token = new_token();
    let mut child = hook_command(kb, command, doc, &env, &token)
        .spawn()
        .map_err(cannot_run)?;
    // process_group(0): the main process leads a new group whose id is its pid.
    let pgid = child.id() as libc::pid_t;
    let recorded = events.started(&HookGroup { pgid, token });
    open_gate(&mut child, pgid, recorded.is_ok());
    let mut supervisor = Supervisor {
        kb,
        pgid,
        timeout: options.timeout,
        started: Instant::now(),
        active: recorded.is_ok(),
        stopped: None,
        interrupted: false,
    };
    let label = hook_output::label(doc);
    let streamed = hook_output::stream(&mut child, &label, options.verbose, |_| supervisor.tick());
    // Also after a failed stream: nothing of the hook may outlive this call.
    kill_group(pgid);
    let reaped = child.wait();
    wait_until_group_gone(pgid);
    recorded?;
    let (_, stderr) = streamed.map_err(cannot_run)?;
    let status = reaped.map_err(cannot_run)?;
    Ok(supervisor.outcome(status, &stderr))
}

/// `sh` running the gate and then `command`, in the KB folder, with the hook's environment,
/// piped, in a process group of its own, and killed with the thread that spawns it.
fn hook_command(kb: &Kb, command: &str, doc: &Document, env: &HookEnv, token: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(GATE)
        .arg("openkb-hook")
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
        .env(HOOK_TOKEN_ENV, token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    die_with_parent(&mut cmd);
    cmd
}

/// Open the gate when the hook's group is on record, so that its command starts; otherwise
/// kill the group (without a write the gate sees end-of-file and the hook exits unstarted).
fn open_gate(child: &mut std::process::Child, pgid: libc::pid_t, recorded: bool) {
    if let Some(mut gate) = child.stdin.take()
        && recorded
    {
        use std::io::Write;
        // An error means the hook is gone already; its exit status tells the rest.
        let _ = gate.write_all(b"go\n");
    }
    if !recorded {
        kill_group(pgid);
    }
}

/// Watches a running hook between its output lines: stops it at `compile_timeout`, passes
/// SIGINT on, and kills what its main process left behind when that exits.
struct Supervisor<'a> {
    kb: &'a Kb,
    pgid: libc::pid_t,
    timeout: Option<Duration>,
    started: Instant,
    /// The hook's group is on record and its command runs.
    active: bool,
    /// Why the hook was stopped (the timeout ran out).
    stopped: Option<String>,
    /// SIGINT was passed on to the hook.
    interrupted: bool,
}

impl Supervisor<'_> {
    /// One look at the hook; the main process's exit status once it has exited.
    fn tick(&mut self) -> std::io::Result<Option<ExitStatus>> {
        if self.stopped.is_none() && self.active {
            if let Some(limit) = self.timeout.filter(|l| self.started.elapsed() >= *l) {
                self.stopped = Some(format!(
                    "compile_command did not finish within {} s (compile_timeout in {}) and \
                     was stopped",
                    limit.as_secs_f64(),
                    self.kb.config_path().display()
                ));
                kill_group(self.pgid);
            } else if !self.interrupted && super::interrupted() {
                // In its own group the hook no longer gets the terminal's Ctrl-C: pass it on,
                // once. A hook that stops on it fails; one that finishes anyway is done.
                self.interrupted = true;
                signal_group(self.pgid, libc::SIGINT);
            }
        }
        let exited = exited_unreaped(self.pgid)?;
        if exited.is_some() {
            // The main process has exited but is not reaped, so its id still names this group
            // and no other: kill what it left running before its pipes are drained.
            kill_group(self.pgid);
            wait_until_group_gone(self.pgid);
        }
        Ok(exited)
    }

    /// The compile outcome of the finished hook.
    fn outcome(self, status: ExitStatus, stderr: &[String]) -> std::result::Result<(), String> {
        if let Some(why) = self.stopped {
            return Err(with_tail(why, stderr));
        }
        judge(status, stderr).map_err(|why| {
            if self.interrupted {
                format!("interrupted (SIGINT passed on to the hook): {why}")
            } else {
                why
            }
        })
    }
}

/// A hook's exit status and the end of its stderr as a compile outcome.
fn judge(status: ExitStatus, stderr: &[String]) -> std::result::Result<(), String> {
    if status.success() {
        return Ok(());
    }
    let how = match status.code() {
        Some(code) => format!("compile_command exited with status {code}"),
        None => "compile_command was killed by a signal".to_owned(),
    };
    Err(with_tail(how, stderr))
}

fn with_tail(message: String, stderr: &[String]) -> String {
    let tail = stderr.join("\n");
    if tail.trim().is_empty() {
        message
    } else {
        format!("{message}:\n{tail}")
    }
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

/// A token unique to this hook run (it only has to differ from other runs' tokens).
fn new_token() -> String {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{nanos}-{run}", std::process::id())
}

/// Have the hook's main process killed when the thread that spawns it dies.
fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpid is async-signal-safe; called before the fork.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
        // functions (prctl, getppid), allocating nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) == -1
                {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before prctl took effect: no signal will come; stop now.
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// The exit status of child `pid` if it has exited, without reaping it (its id keeps naming
/// its process group until it is reaped).
fn exited_unreaped(pid: libc::pid_t) -> std::io::Result<Option<ExitStatus>> {
    loop {
        // SAFETY: waitid writes only into `info`, a zeroed siginfo_t owned here.
        let (rc, info) = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let rc = libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            (rc, info)
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: after a successful waitid, si_pid and si_status are the fields it filled.
        let (child, code) = unsafe { (info.si_pid(), info.si_status()) };
        if child == 0 {
            return Ok(None);
        }
        // Back to the raw wait status ExitStatus is built from.
        let raw = match info.si_code {
            libc::CLD_EXITED => (code & 0xff) << 8,
            libc::CLD_DUMPED => (code & 0x7f) | 0x80,
            _ => code & 0x7f,
        };
        return Ok(Some(ExitStatus::from_raw(raw)));
    }
}

fn kill_group(pgid: libc::pid_t) {
    signal_group(pgid, libc::SIGKILL);
}

fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    if pgid > 1 {
        // SAFETY: plain syscall; ESRCH (the group is gone) is the expected outcome at times.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

/// Wait (bounded by [`GROUP_EXIT_WAIT`]) until no live process is left in group `pgid`;
/// zombies do not count, they run no code. Returns whether the group is gone.
fn wait_until_group_gone(pgid: libc::pid_t) -> bool {
    let deadline = Instant::now() + GROUP_EXIT_WAIT;
    let mut pause = Duration::from_millis(1);
    loop {
        if live_members(pgid).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Kill what is left of a hook recorded in an intent whose openkb process died: its process
/// group, if some live process of that group carries the hook's token in its environment (so
/// a group id reused by unrelated processes is left alone). Returns whether it killed anything.
/// The caller holds the KB's exclusive lock and settles the intent afterwards.
pub fn kill_orphaned_hook(hook: &HookGroup) -> bool {
    if hook.pgid <= 1 || hook.token.is_empty() {
        return false;
    }
    let marker = format!("{HOOK_TOKEN_ENV}={}", hook.token).into_bytes();
    let ours = live_members(hook.pgid).into_iter().any(|pid| {
        std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == marker.as_slice()))
    });
    if ours {
        kill_group(hook.pgid);
        wait_until_group_gone(hook.pgid);
    }
    ours
}

/// Pids of the live (not zombie) processes in group `pgid`, from `/proc`.
pub fn live_members(pgid: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|&pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let mut fields = after.split_whitespace();
            let state = fields.next();
            let pgrp = fields.nth(1).and_then(|f| f.parse::<libc::pid_t>().ok());
            pgrp == Some(pgid) && !matches!(state, Some("Z" | "X"))
        })
        .collect()
}
