//! Crash safety: a process killed at any instant leaves a KB the next command repairs.

use crate::harness;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Env, assert_consistent, make_files, output_bounded, stderr, stdout};
use openkb::state::intents;

/// Run an openkb command that aborts at the hidden crash point `point` (as a kill there
/// would), and check that it failed.
fn run_aborted_at(env: &Env, point: &str, args: impl FnOnce(&mut Command)) {
    let mut cmd = env.cmd();
    cmd.env("OPENKB_TEST_ABORT_AT", point);
    args(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{}", stderr(&out));
}

fn intents_left(env: &Env) -> usize {
    intents::unfinished(&env.store().reader().unwrap())
        .unwrap()
        .len()
}

#[test]
fn an_add_killed_before_its_commit_is_rolled_back_then_redone() {
    let env = Env::with_kb();
    let folder = make_files(&env, "in", 20);
    run_aborted_at(&env, "add-commit", |cmd| {
        cmd.arg("add").arg(&folder);
    });
    // Files published, nothing committed, the intents say what to undo.
    assert!(env.kb().join("raw/note-00000.md").is_file());
    assert!(env.docs().is_empty());
    assert_eq!(intents_left(&env), 20);
    // Its staging folder and lock file are left (an abort runs no cleanup).
    let left = harness::names_starting_with(&env.kb().join(".openkb/staging"), "rs-");
    assert_eq!(left.len(), 2, "{left:?}");

    // Readers do not repair (they take the shared lock) and are not confused.
    let out = env.run(&["list"]);
    assert!(
        stdout(&out).contains("No documents registered"),
        "{}",
        stdout(&out)
    );

    // Under -q too: work rolled back changes what the user should believe (docs/output.md).
    let out = env
        .cmd()
        .arg("-q")
        .arg("add")
        .arg(&folder)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("20 add(s) rolled back"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).ends_with("added 20, skipped 0, failed 0\n"));
    assert_eq!(env.docs().len(), 20);
    let left = harness::names_starting_with(&env.kb().join(".openkb/staging"), "rs-");
    assert!(left.is_empty(), "swept by the next write: {left:?}");
    assert_consistent(&env);
}

#[test]
fn doctor_reports_an_interrupted_add_and_fix_rolls_it_back() {
    let env = Env::with_kb();
    let folder = make_files(&env, "in", 5);
    run_aborted_at(&env, "add-commit", |cmd| {
        cmd.arg("add").arg(&folder);
    });
    let out = env.run(&["doctor"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("an interrupted add of note-00000"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        intents_left(&env),
        5,
        "doctor without --fix changes nothing"
    );

    let out = env.run(&["doctor", "--fix"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("5 add(s) rolled back"),
        "{}",
        stdout(&out)
    );
    assert!(!env.kb().join("raw/note-00000.md").exists());
    assert_consistent(&env);
    assert!(env.run(&["doctor"]).status.success());
}

#[test]
fn a_killed_add_that_replaced_a_file_restores_it() {
    let env = Env::with_kb();
    let file = env.write("in/plan.md", "version 1\n");
    assert!(env.run(&["add", "in"]).status.success());
    std::fs::write(&file, "version 2\n").unwrap();
    run_aborted_at(&env, "add-commit", |cmd| {
        cmd.args(["add", "in"]);
    });
    let raw = env.kb().join("raw/plan.md");
    assert_eq!(std::fs::read_to_string(&raw).unwrap(), "version 2\n");

    // Any exclusive command repairs first: here, an add of something else.
    env.write("other/x.md", "x\n");
    let out = env.run(&["add", "other"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&raw).unwrap(), "version 1\n");
    let plan = env.doc_named("plan").unwrap();
    assert_eq!(plan.hash, openkb::hash::sha256_hex(b"version 1\n"));
    assert_consistent(&env);
}

#[test]
fn a_remove_killed_before_its_commit_is_finished() {
    let env = Env::with_kb();
    env.write("in/gone.md", "gone\n");
    env.write("in/stays.md", "stays\n");
    assert!(env.run(&["add", "in"]).status.success());
    run_aborted_at(&env, "remove-commit", |cmd| {
        cmd.args(["remove", "gone.md", "-y"]);
    });
    assert!(!env.kb().join("raw/gone.md").exists());
    assert!(
        env.doc_named("gone").is_some(),
        "the row is the commit point"
    );
    assert_eq!(intents_left(&env), 1);

    env.write("other/x.md", "x\n");
    let out = env.run(&["add", "other"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env.doc_named("gone").is_none());
    let removes = env.store().log_tail(None, Some("remove")).unwrap();
    assert_eq!(removes.len(), 1);
    assert_eq!(removes[0].description, "gone.md");
    assert_consistent(&env);
}

/// How long an unkilled add of `files` small files takes on this machine, so kill points can
/// be spread over the run whatever the machine's speed.
fn time_full_add(files: usize) -> Duration {
    let timing = Env::with_kb();
    let folder = make_files(&timing, "in", files);
    let started = Instant::now();
    let out = timing.cmd().arg("add").arg(&folder).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    started.elapsed()
}

#[test]
fn sigkill_during_a_folder_add_then_a_rerun_completes_it() {
    // Kill points are spread over the whole run, whatever this machine's speed: time one
    // full add first, then kill at fractions of it.
    let full = time_full_add(400);

    for fraction in [0.1, 0.3, 0.5, 0.7, 0.9] {
        let env = Env::with_kb();
        let folder = make_files(&env, "in", 400);
        let mut child = env
            .cmd()
            .arg("add")
            .arg(&folder)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(fraction));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let registered = env.docs().len();
        eprintln!("killed at {fraction} of {full:?}: {registered} registered");

        let out = output_bounded(env.cmd().arg("add").arg(&folder));
        assert!(out.status.success(), "at {fraction}: {}", stderr(&out));
        assert_eq!(
            env.docs().len(),
            400,
            "at {fraction} ({registered} before the re-run)"
        );
        assert_consistent(&env);
        // And a third run finds nothing to do.
        let out = env.cmd().arg("add").arg(&folder).output().unwrap();
        assert!(stdout(&out).ends_with("added 0, skipped 400, failed 0\n"));
    }
}

/// An add killed after its last commit leaves only its staging folder and lock file; the re-run
/// finds every file registered ("added 0") and commits nothing, and must still sweep them
/// (the race behind an occasional leftover in the SIGKILL tests above).
#[test]
fn a_rerun_that_adds_nothing_still_sweeps_a_killed_adds_staging() {
    let env = Env::with_kb();
    let folder = make_files(&env, "in", 3);
    assert!(
        env.cmd()
            .arg("add")
            .arg(&folder)
            .output()
            .unwrap()
            .status
            .success()
    );
    let staging = env.kb().join(".openkb/staging");
    // As a killed add leaves them: a folder with its (unlocked) lock, and a lone lock.
    std::fs::create_dir_all(staging.join("rs-999999-1-0")).unwrap();
    std::fs::write(staging.join("rs-999999-1-0/0.doc.md"), "copy").unwrap();
    std::fs::write(staging.join("rs-999999-1-0.lock"), "").unwrap();
    std::fs::write(staging.join("rs-999998-1-0.lock"), "").unwrap();

    let out = env.cmd().arg("add").arg(&folder).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).ends_with("added 0, skipped 3, failed 0\n"),
        "{}",
        stdout(&out)
    );
    assert_consistent(&env);
}

#[test]
fn a_compile_killed_mid_hook_is_marked_failed_and_an_add_rolled_back() {
    let env = Env::with_kb();
    env.write("in/doc.md", "doc\n");
    assert!(env.run(&["add", "in"]).status.success());
    // The hook kills openkb itself (its parent), as a SIGKILL from outside would.
    env.set_config("compile_command: 'kill -9 $PPID; sleep 5'\n");
    let out = env.run(&["compile", "--pending"]);
    assert!(!out.status.success());
    assert_eq!(intents_left(&env), 1);

    env.write("other/new.md", "new\n");
    let out = env.run(&["add", "other"]);
    assert!(!out.status.success(), "the hook kills this add too");
    // That add's own recovery marked the compile failed before its hook killed it.
    let doc = env.doc_named("doc").unwrap();
    assert_eq!(doc.status, openkb::state::Status::Failed);
    assert!(doc.error.unwrap().contains("interrupted"));
    assert!(env.doc_named("new").is_none());
    assert_eq!(intents_left(&env), 1);

    // Without the killer hook, the next add rolls the killed one back, then redoes it.
    let path = env.kb().join(".openkb/config.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("compile_command: 'kill -9 $PPID; sleep 5'\n", ""),
    )
    .unwrap();
    let out = env.run(&["add", "other"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 add(s) rolled back"),
        "{}",
        stderr(&out)
    );
    assert!(env.doc_named("new").is_some());
    assert_consistent(&env);
}

#[test]
fn ctrl_c_during_a_folder_add_finishes_the_batch_and_leaves_nothing_to_repair() {
    let full = time_full_add(800);

    let env = Env::with_kb();
    let folder = make_files(&env, "in", 800);
    let child = env
        .cmd()
        .arg("add")
        .arg(&folder)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(full.mul_f64(0.4));
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let signalled = Instant::now();
    let out = child.wait_with_output().unwrap();
    let registered = env.docs().len();
    eprintln!(
        "interrupted at 0.4 of {full:?}: {registered} registered, exited {:?} after the signal: {}",
        signalled.elapsed(),
        stderr(&out)
    );
    if registered < 800 {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("interrupted:"), "{}", stderr(&out));
    }
    // Nothing for recovery to do: no intents, no staging, every registered file in place.
    assert_eq!(intents_left(&env), 0);
    assert_consistent(&env);
    let out = env.cmd().arg("add").arg(&folder).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("recovered"), "{}", stderr(&out));
    assert_eq!(env.docs().len(), 800);
    assert_consistent(&env);
}

fn count(env: &Env, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(env.kb().join(".openkb/state.db")).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn migrated_copies(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.kb().join(".openkb"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("hashes.json"))
        .collect();
    names.sort();
    names
}

/// A migration killed after its commit and before `hashes.json` was renamed: the next
/// `migrate` finishes it and adds nothing twice (no second log row, import record or renamed
/// copy), for the initial import and for a drift merge alike.
#[test]
fn a_migrate_killed_before_the_rename_is_finished_without_importing_twice() {
    let env = Env::new();
    harness::copy_fixture_kb(&env.kb());
    run_aborted_at(&env, "migrate-rename", |cmd| {
        cmd.arg("migrate");
    });
    assert!(env.kb().join(".openkb/hashes.json").exists());
    let log_rows = count(&env, "SELECT count(*) FROM log");
    assert_eq!(count(&env, "SELECT count(*) FROM imports"), 1);
    let log_md = std::fs::read_to_string(env.kb().join("wiki/log.md")).unwrap();
    assert!(
        !log_md.contains("] migrate |"),
        "rendered before the rename"
    );

    let out = env.run(&["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(count(&env, "SELECT count(*) FROM log"), log_rows);
    assert_eq!(count(&env, "SELECT count(*) FROM imports"), 1);
    assert_eq!(migrated_copies(&env), ["hashes.json.migrated"]);
    let log_md = std::fs::read_to_string(env.kb().join("wiki/log.md")).unwrap();
    assert_eq!(log_md.matches("] migrate |").count(), 1, "{log_md}");
    assert_eq!(env.docs().len(), 50);
    // wiki/log.md agrees with the log table: doctor has nothing to rewrite (or back up).
    let out = env.run(&["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let log_findings: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "log.md" && f["severity"] != "ok")
        .collect();
    assert!(log_findings.is_empty(), "{log_findings:?}");

    // Nothing is left to do, and a further run changes nothing.
    let out = env.run(&["migrate"]);
    assert!(
        stdout(&out).contains("already migrated"),
        "{}",
        stdout(&out)
    );
    assert_eq!(count(&env, "SELECT count(*) FROM log"), log_rows);

    // A reappeared hashes.json, merged as drift, killed before its rename, resumed.
    // (`export -o` refuses the KB's own hashes.json: the test puts the file there itself.)
    let exported = env.run(&["export", "--legacy-json"]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    let mut text = String::from_utf8(exported.stdout).unwrap();
    text = text.replacen(
        "{",
        &format!(
            "{{\n  \"{}\": {{\"name\": \"new.md\", \"type\": \"md\"}},",
            "ab".repeat(32)
        ),
        1,
    );
    std::fs::write(env.kb().join(".openkb/hashes.json"), text).unwrap();
    run_aborted_at(&env, "migrate-rename", |cmd| {
        cmd.arg("migrate");
    });
    assert_eq!(count(&env, "SELECT count(*) FROM imports"), 2);
    let log_rows = count(&env, "SELECT count(*) FROM log");
    let out = env.run(&["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(count(&env, "SELECT count(*) FROM imports"), 2);
    assert_eq!(count(&env, "SELECT count(*) FROM log"), log_rows);
    assert_eq!(env.docs().len(), 51);
    assert_eq!(
        migrated_copies(&env),
        ["hashes.json.migrated", "hashes.json.migrated.2"]
    );
}
