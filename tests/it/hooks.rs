//! The compile hook lives and dies with its lock: no hook process outlives a killed openkb
//! past the next recovery, a background child neither hangs openkb nor keeps the lock,
//! `compile_timeout` stops a hook, and two compilers never run the hook for one document.
//!
//! Every wait on a hook is a handshake: the hook writes to a fifo the test reads, and blocks on
//! a fifo the test writes.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};

use crate::harness::{Env, assert_consistent, stderr, stdout, wait_output};
use openkb::ingest::hook::live_members;
use openkb::state::Status;

fn mkfifo(path: &Path) {
    let status = crate::harness::clean("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(status.success());
}

/// Kills a process group when dropped, so that a failing test leaves no hook running.
struct GroupGuard(i32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.0 > 1 {
            // SAFETY: plain syscall on a group this test's hook created.
            unsafe {
                libc::killpg(self.0, libc::SIGKILL);
            }
        }
    }
}

/// Read the hook's "<pgid>" handshake line from `fifo` (blocks until the hook writes it).
fn read_handshake(fifo: &Path) -> i32 {
    let mut text = String::new();
    std::fs::File::open(fifo)
        .expect("open ready fifo")
        .read_to_string(&mut text)
        .expect("read ready fifo");
    text.trim().parse().expect("hook wrote its pgid")
}

/// Let a hook blocked on `read x < go.fifo` go on.
fn release(fifo: &Path) {
    let mut go = std::fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .expect("open go fifo");
    writeln!(go, "go").expect("write go fifo");
}

/// The process group id a hook wrote to `<env>/pgid`.
fn hook_pgid(env: &Env) -> i32 {
    std::fs::read_to_string(env.path().join("pgid"))
        .expect("pgid")
        .trim()
        .parse()
        .expect("number")
}

fn sigkill(mut child: Child) -> ExitStatus {
    child.kill().expect("SIGKILL");
    child.wait().expect("wait")
}

/// A hook that announces its process group on `ready.fifo`, leaves a background writer
/// appending to `bg.out`, and blocks until `go.fifo` is written.
const BLOCKING_HOOK: &str = r#"compile_command: '(while :; do echo x >> ../bg.out; sleep 0.01; done) & echo $$ > ../ready.fifo; read x < ../go.fifo; echo done >> ../hook.log'
"#;

fn fifos(env: &Env) -> (PathBuf, PathBuf) {
    let ready = env.path().join("ready.fifo");
    let go = env.path().join("go.fifo");
    mkfifo(&ready);
    mkfifo(&go);
    (ready, go)
}

#[test]
fn sigkill_of_compile_leaves_no_hook_process_after_recovery() {
    let env = Env::with_kb();
    env.write("in/doc.md", "text\n");
    assert!(env.run(&["add", "in"]).status.success());
    env.set_config(BLOCKING_HOOK);
    let (ready, _go) = fifos(&env);
    let child = env.spawn(&["compile", "--pending"], Stdio::null);
    let pgid = read_handshake(&ready);
    let _guard = GroupGuard(pgid);
    assert!(!live_members(pgid).is_empty());
    sigkill(child);
    // The hook's main process died with openkb (parent-death signal), but the background
    // writer it started is still in the group: only recovery can tell it from a stranger.
    let out = env.run(&["doctor"]);
    assert!(
        stdout(&out).contains(&format!(
            "compile hook, process group {pgid}, may still be running"
        )),
        "{}",
        stdout(&out)
    );
    assert!(
        !live_members(pgid).is_empty(),
        "doctor without --fix killed the hook"
    );
    let out = env.run(&["doctor", "--fix"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("orphaned compile hook"),
        "{}",
        stdout(&out)
    );
    assert_eq!(live_members(pgid), Vec::<i32>::new(), "hook processes left");
    let doc = env.doc_named("doc").expect("doc");
    assert_eq!(doc.status, Status::Failed);
    assert!(
        doc.error.as_deref().unwrap_or("").contains("interrupted"),
        "{:?}",
        doc.error
    );
    assert!(!env.path().join("hook.log").exists());
    assert_consistent(&env);
}

#[test]
fn sigkill_of_add_while_the_hook_runs_leaves_no_hook_and_rolls_back() {
    let env = Env::with_kb();
    env.set_config(BLOCKING_HOOK);
    let (ready, _go) = fifos(&env);
    env.write("in/doc.md", "text\n");
    let child = env.spawn(&["add", "in"], Stdio::null);
    let pgid = read_handshake(&ready);
    let _guard = GroupGuard(pgid);
    sigkill(child);
    assert!(
        !live_members(pgid).is_empty(),
        "the background writer should outlive the killed add until recovery"
    );
    // The next add (a write session) recovers first: kills the hook, rolls the add back, and
    // adds the file again (with the hook released this time).
    std::fs::write(
        env.kb().join(".openkb/config.yaml"),
        "language: en\nmodel: m\npageindex_threshold: 20\ncompile_command: 'echo again >> ../hook.log'\n",
    )
    .expect("config");
    let out = env.run(&["add", "in"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 orphaned compile hook(s) killed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(live_members(pgid), Vec::<i32>::new(), "hook processes left");
    assert_eq!(
        std::fs::read_to_string(env.path().join("hook.log")).expect("log"),
        "again\n"
    );
    assert_eq!(env.doc_named("doc").expect("doc").status, Status::Compiled);
    assert_consistent(&env);
}

#[test]
fn a_background_child_neither_hangs_openkb_nor_keeps_the_lock() {
    let env = Env::with_kb();
    env.write("in/doc.md", "text\n");
    assert!(env.run(&["add", "in"]).status.success());
    // The background sleep keeps the hook's stdout and stderr open; the fd listing shows
    // what the hook inherited.
    env.set_config(
        r#"compile_command: 'sleep 1000 & echo $$ > ../pgid; ls -l /proc/$$/fd > ../fds; echo compiled'
"#,
    );
    let child = env.spawn(&["compile", "--pending"], Stdio::piped);
    let out = wait_output(child);
    assert!(out.status.success(), "{}", stderr(&out));
    let pgid = hook_pgid(&env);
    let _guard = GroupGuard(pgid);
    assert_eq!(live_members(pgid), Vec::<i32>::new(), "the sleep survived");
    let fds = std::fs::read_to_string(env.path().join("fds")).expect("fds");
    assert!(fds.contains("/dev/null"), "{fds}");
    assert!(
        !fds.contains("ingest.lock"),
        "the hook inherited the lock: {fds}"
    );
    assert!(
        !fds.contains("state.db"),
        "the hook inherited the database: {fds}"
    );
    // The lock is free: taking it without waiting succeeds.
    let lock = std::fs::File::open(env.kb().join(".openkb/ingest.lock")).expect("lock file");
    lock.try_lock().expect("the KB lock is free");
    assert_eq!(env.doc_named("doc").expect("doc").status, Status::Compiled);
}

#[test]
fn compile_timeout_kills_the_hook_group_and_marks_the_document_failed() {
    let env = Env::with_kb();
    env.write("in/doc.md", "text\n");
    assert!(env.run(&["add", "in"]).status.success());
    env.set_config(
        r#"compile_timeout: 0.5
compile_command: 'echo $$ > ../pgid; echo "thinking hard" >&2; sleep 1000 & exec sleep 1000'
"#,
    );
    let child = env.spawn(&["compile", "--pending"], Stdio::piped);
    let out = wait_output(child);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let pgid = hook_pgid(&env);
    let _guard = GroupGuard(pgid);
    assert_eq!(live_members(pgid), Vec::<i32>::new(), "hook processes left");
    let doc = env.doc_named("doc").expect("doc");
    assert_eq!(doc.status, Status::Failed);
    let error = doc.error.unwrap_or_default();
    assert!(error.contains("did not finish within 0.5 s"), "{error}");
    assert!(error.contains("compile_timeout"), "{error}");
    assert!(error.contains("thinking hard"), "{error}");
    assert!(stderr(&out).contains("compile_timeout"), "{}", stderr(&out));
    let store = env.store();
    let reader = store.reader().expect("reader");
    assert!(
        openkb::state::intents::unfinished(&reader)
            .expect("intents")
            .is_empty()
    );

    // During add, a timed-out hook rolls the document back.
    env.write("in/late.md", "late\n");
    let child = env.spawn(&["add", "in/late.md"], Stdio::piped);
    let out = wait_output(child);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("compile_timeout"), "{}", stderr(&out));
    let pgid = hook_pgid(&env);
    let _guard = GroupGuard(pgid);
    assert_eq!(live_members(pgid), Vec::<i32>::new(), "hook processes left");
    assert!(env.doc_named("late").is_none());
    assert!(!env.kb().join("raw/late.md").exists());
}

#[test]
fn a_wrong_compile_timeout_is_an_error_naming_the_file() {
    let env = Env::with_kb();
    env.write("in/doc.md", "text\n");
    env.set_config("compile_timeout: soon\ncompile_command: 'true'\n");
    for args in [&["add", "in"][..], &["compile", "--pending"][..]] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("config.yaml"), "{err}");
        assert!(
            err.contains("`compile_timeout` must be a positive number"),
            "{err}"
        );
        assert!(err.contains("a string"), "{err}");
    }
    assert!(env.docs().is_empty());
}

#[test]
fn two_concurrent_compilers_run_the_hook_once_per_document() {
    let env = Env::with_kb();
    for i in 0..5 {
        env.write(&format!("in/doc{i}.md"), &format!("text {i}\n"));
    }
    assert!(env.run(&["add", "in"]).status.success());
    // The first hook run blocks until released; every run appends its doc_name.
    env.set_config(
        r#"compile_command: 'echo "$OPENKB_DOC_NAME" >> ../count; if [ ! -e ../released ]; then touch ../released; echo $$ > ../ready.fifo; read x < ../go.fifo; fi'
"#,
    );
    let (ready, go) = fifos(&env);
    let first = env.spawn(&["compile", "--pending"], Stdio::piped);
    let pgid = read_handshake(&ready);
    let _guard = GroupGuard(pgid);
    // The second compiler lists the same pending documents, then waits for the lock.
    let mut second = env.spawn(&["compile", "--pending"], Stdio::piped);
    let mut second_err = BufReader::new(second.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("waiting for another openkb process") {
        line.clear();
        assert!(
            second_err.read_line(&mut line).expect("read") > 0,
            "the second compiler ended before waiting for the lock"
        );
    }
    release(&go);
    let first = wait_output(first);
    let second = wait_output(second);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(second.status.success(), "{}", stderr(&second));
    let count = std::fs::read_to_string(env.path().join("count")).expect("count");
    let mut runs: Vec<&str> = count.lines().collect();
    runs.sort_unstable();
    assert_eq!(runs, ["doc0", "doc1", "doc2", "doc3", "doc4"], "{count}");
    assert!(env.docs().iter().all(|d| d.status == Status::Compiled));
}

#[test]
fn sigterm_is_passed_on_to_the_hook_and_the_command_reports_it() {
    let env = Env::with_kb();
    env.write("in/a.md", "a\n");
    env.write("in/b.md", "b\n");
    assert!(env.run(&["add", "in"]).status.success());
    env.set_config(BLOCKING_HOOK);
    let (ready, _go) = fifos(&env);
    let child = env.spawn(&["compile", "--pending"], Stdio::piped);
    let pgid = read_handshake(&ready);
    let _guard = GroupGuard(pgid);
    // SAFETY: plain syscall on the child this test spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = wait_output(child);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(live_members(pgid), Vec::<i32>::new(), "hook processes left");
    assert!(
        stderr(&out).contains("interrupted (SIGINT passed on to the hook)"),
        "{}",
        stderr(&out)
    );
    // One document failed, the other was not started and stays pending.
    let mut statuses: Vec<Status> = env.docs().into_iter().map(|d| d.status).collect();
    statuses.sort_by_key(|s| s.as_str());
    assert_eq!(statuses, [Status::Failed, Status::Pending]);
    assert!(!env.path().join("hook.log").exists());
}

/// Recovery reads the group id from state.db: it kills a group only when a live member
/// carries the recorded token, so an id since reused by an unrelated process group (or a
/// forged one) is left alone.
#[test]
fn recovery_kills_only_a_group_that_carries_the_recorded_token() {
    use openkb::ingest::hook::{HOOK_TOKEN_ENV, kill_orphaned_hook};
    use openkb::state::HookGroup;
    use std::os::unix::process::CommandExt;

    let spawn = |token: Option<&str>| {
        let mut cmd = crate::harness::clean("sleep");
        cmd.arg("1000").process_group(0);
        if let Some(token) = token {
            cmd.env(HOOK_TOKEN_ENV, token);
        }
        cmd.spawn().expect("sleep")
    };
    let mut stranger = spawn(None);
    let mut other_run = spawn(Some("another-run"));
    let mut ours = spawn(Some("this-run"));
    let guards: Vec<GroupGuard> = [&stranger, &other_run, &ours]
        .iter()
        .map(|c| GroupGuard(c.id() as i32))
        .collect();
    let group = |child: &Child| HookGroup {
        pgid: child.id() as i32,
        token: "this-run".into(),
    };
    assert!(!kill_orphaned_hook(&group(&stranger)));
    assert!(!kill_orphaned_hook(&group(&other_run)));
    for pgid in [0, 1, -1] {
        assert!(!kill_orphaned_hook(&HookGroup {
            pgid,
            token: "this-run".into()
        }));
    }
    assert!(
        stranger.try_wait().expect("wait").is_none(),
        "a stranger was killed"
    );
    assert!(other_run.try_wait().expect("wait").is_none());
    assert!(kill_orphaned_hook(&group(&ours)));
    let status = ours.wait().expect("wait");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    drop(guards);
    stranger.wait().expect("wait");
    other_run.wait().expect("wait");
}
