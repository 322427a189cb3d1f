//! `openkb add`: files, folders, dedupe, doc_names, concurrency and the lock.

use crate::harness;

use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;

use crate::harness::{
    Background, Env, PythonLockHolder, assert_consistent, make_files, stderr, stdout,
};
use openkb::state::Status;

#[test]
fn adds_files_and_folders_with_era_c_entries() {
    let env = Env::with_kb();
    env.write("in/a/report.md", "# A report\n");
    env.write("in/b/report.md", "# Another report\n");
    env.write("in/Long Book.PDF", "%PDF-1.4 fake");
    env.write("in/skip.exe", "binary");
    env.write("in/.hidden.md", "hidden");
    let single = env.write("single.txt", "plain text\n");

    let out = env.run(&["add", "in", single.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).ends_with("added 4, skipped 1, failed 0\n"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("skip.exe: unsupported file type (.exe)"));

    let kb = env.kb();
    let a = env.doc_named("report").expect("report");
    assert_eq!(a.name.as_deref(), Some("report.md"));
    assert_eq!(a.doc_type.as_deref(), Some("md"));
    assert_eq!(a.raw_path.as_deref(), Some("raw/report.md"));
    assert_eq!(a.source_path.as_deref(), Some("wiki/sources/report.md"));
    assert_eq!(a.status, Status::Pending);
    let abs_a = env.path().join("in/a/report.md").canonicalize().unwrap();
    assert_eq!(a.path.as_deref(), abs_a.to_str());
    assert_eq!(
        std::fs::read_to_string(kb.join("raw/report.md")).unwrap(),
        "# A report\n"
    );
    assert_eq!(
        std::fs::read_to_string(kb.join("wiki/sources/report.md")).unwrap(),
        "# A report\n"
    );

    // Same stem from another folder: suffixed with sha256(path key)[:8].
    let b_path = env.path().join("in/b/report.md").canonicalize().unwrap();
    let suffix = &openkb::hash::sha256_hex(b_path.to_str().unwrap().as_bytes())[..8];
    let b = env
        .doc_named(&format!("report-{suffix}"))
        .expect("suffixed report");
    assert_eq!(b.raw_path.unwrap(), format!("raw/report-{suffix}.md"));

    // Non-text formats: raw copy with a lower-case suffix, type keeps its case, no source.
    let pdf = env.doc_named("Long-Book").expect("pdf");
    assert_eq!(pdf.doc_type.as_deref(), Some("PDF"));
    assert_eq!(pdf.raw_path.as_deref(), Some("raw/Long-Book.pdf"));
    assert_eq!(pdf.source_path, None);
    assert!(kb.join("raw/Long-Book.pdf").is_file());

    let index = std::fs::read_to_string(kb.join("wiki/index.md")).unwrap();
    assert!(
        index.contains("## Documents\n- [[summaries/single]] (short) — single.txt\n"),
        "{index}"
    );
    let log = std::fs::read_to_string(kb.join("wiki/log.md")).unwrap();
    assert_eq!(log.matches("] ingest | ").count(), 4, "{log}");
    assert_eq!(env.store().log_tail(None, Some("ingest")).unwrap().len(), 4);
    assert_consistent(&env);

    // A second run adds nothing.
    let out = env.run(&["add", "in", single.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        stdout(&out).ends_with("added 0, skipped 5, failed 0\n"),
        "{}",
        stdout(&out)
    );
    assert_eq!(env.docs().len(), 4);
}

#[test]
fn one_bad_file_does_not_stop_the_rest_and_fails_the_exit_code() {
    let env = Env::with_kb();
    env.write("in/good.md", "good\n");
    let bad = env
        .path()
        .join("in")
        .join(std::ffi::OsStr::from_bytes(b"bad\xff.md"));
    std::fs::write(&bad, "bad name").unwrap();
    env.write("in/later.md", "later\n");
    let out = env.run(&["add", "in", "missing.md"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).ends_with("added 2, skipped 0, failed 2\n"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("not valid UTF-8"), "{}", stderr(&out));
    assert!(stderr(&out).contains("missing.md"), "{}", stderr(&out));
    assert!(env.doc_named("good").is_some() && env.doc_named("later").is_some());
    assert_consistent(&env);
}

#[test]
fn edited_file_replaces_its_entry_and_keeps_its_name() {
    let env = Env::with_kb();
    let file = env.write("notes/plan.md", "version 1\n");
    assert!(env.run(&["add", file.to_str().unwrap()]).status.success());
    let first = env.doc_named("plan").unwrap();
    std::fs::write(&file, "version 2\n").unwrap();
    let out = env.run(&["add", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let docs = env.docs();
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0].doc_name.as_deref(), Some("plan"));
    assert_ne!(docs[0].hash, first.hash);
    assert_eq!(
        std::fs::read_to_string(env.kb().join("raw/plan.md")).unwrap(),
        "version 2\n"
    );
    assert_consistent(&env);
}

#[test]
fn a_file_already_in_raw_is_registered_in_place() {
    let env = Env::with_kb();
    std::fs::write(env.kb().join("raw/clean.md"), "clean\n").unwrap();
    std::fs::write(env.kb().join("raw/2509.11420.md"), "arxiv\n").unwrap();
    let out = env.run(&["add", env.kb().join("raw").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let clean = env.doc_named("clean").unwrap();
    assert_eq!(clean.path.as_deref(), Some("raw/clean.md"));
    assert_eq!(clean.raw_path.as_deref(), Some("raw/clean.md"));
    // A stem that needs sanitizing stays where it is too: no second copy under its doc_name
    // (the Python tool makes one, formats §1.2; users found that a surprise).
    let arxiv = env.doc_named("2509-11420").unwrap();
    assert_eq!(arxiv.path.as_deref(), Some("raw/2509.11420.md"));
    assert_eq!(arxiv.raw_path.as_deref(), Some("raw/2509.11420.md"));
    assert!(env.kb().join("raw/2509.11420.md").is_file());
    assert!(!env.kb().join("raw/2509-11420.md").exists());
    assert_eq!(env.docs().len(), 2);
    assert_consistent(&env);
}

#[test]
fn concurrent_adds_register_every_file_exactly_once() {
    let env = Env::with_kb();
    let folder = make_files(&env, "bulk", 300);
    let children: Vec<_> = (0..4)
        .map(|_| {
            env.cmd()
                .arg("add")
                .arg(&folder)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let docs = env.docs();
    assert_eq!(docs.len(), 300);
    let names: std::collections::BTreeSet<_> =
        docs.iter().map(|d| d.name.clone().unwrap()).collect();
    assert_eq!(names.len(), 300, "each file once");
    assert_eq!(
        env.store().log_tail(None, Some("ingest")).unwrap().len(),
        300
    );
    assert_consistent(&env);
}

#[test]
fn a_held_lock_makes_add_wait_and_the_timeout_ends_it_clearly() {
    let env = Env::with_kb();
    env.write("in/doc.md", "doc\n");
    let lock = env.kb().join(".openkb/ingest.lock");
    let holder = PythonLockHolder::hold(&lock, true);
    let out = env
        .cmd()
        .env("OPENKB_LOCK_TIMEOUT", "1")
        .args(["add", "in"])
        .output()
        .unwrap();
    holder.release();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("waiting for another openkb process"), "{err}");
    assert!(err.contains("timed out after 1s"), "{err}");
    assert!(err.contains("OPENKB_LOCK_TIMEOUT"), "{err}");
    assert!(env.docs().is_empty());
    assert_consistent(&env);

    // Without a timeout, add waits for the holder (it says so and is still running, the
    // lock being held) and then completes.
    let holder = PythonLockHolder::hold(&lock, true);
    let mut add = Background::start(env.cmd().args(["add", "in"]));
    add.wait_for_stderr("waiting for another openkb process");
    assert!(add.is_running(), "add went on while the lock was held");
    assert!(env.docs().is_empty());
    holder.release();
    let (status, _, err) = add.finish();
    assert!(status.success(), "{err}");
    assert_eq!(env.docs().len(), 1);
    assert_consistent(&env);
}

#[test]
fn doc_names_follow_the_python_rules_on_a_legacy_kb() {
    let env = Env::new();
    harness::legacy_kb(&env);
    let before = env.docs().len();
    // Era A entry {name, type}: a new version of the same file takes its name and replaces
    // it (legacy convergence: one entry, not two).
    env.write("new/Legacy Paper 0.md", "a new version of legacy paper 0\n");
    // Era B entry (doc_name = raw stem): reused and replaced the same way.
    env.write("new/Survey 1 (snapshot).md", "a new survey\n");
    // Owned names get the sha256(path key) suffix; NFKC makes the NFD name collide too.
    env.write("new/report.md", "yet another report\n");
    env.write("new/cafe\u{301}-menu.md", "another menu\n");
    // A fresh stem is sanitized and kept clean.
    env.write("new/Fresh Notes (v2).md", "fresh\n");
    let out = env.run(&["add", "new"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).ends_with("added 5, skipped 0, failed 0\n"),
        "{}",
        stdout(&out)
    );

    let docs = env.docs();
    assert_eq!(docs.len(), before + 3, "two legacy entries were replaced");
    let named = |name: &str| -> Vec<_> {
        docs.iter()
            .filter(|d| d.name.as_deref() == Some(name))
            .collect()
    };
    let legacy0 = named("Legacy Paper 0.md");
    assert_eq!(legacy0.len(), 1);
    assert_eq!(legacy0[0].doc_name.as_deref(), Some("Legacy Paper 0"));
    assert!(
        legacy0[0]
            .path
            .as_deref()
            .unwrap()
            .ends_with("new/Legacy Paper 0.md")
    );
    assert_eq!(
        std::fs::read_to_string(env.kb().join("raw/Legacy Paper 0.md")).unwrap(),
        "a new version of legacy paper 0\n"
    );
    let survey = named("Survey 1 (snapshot).md");
    assert_eq!(survey.len(), 1);
    assert_eq!(survey[0].doc_name.as_deref(), Some("Survey 1 (snapshot)"));

    let key = |rel: &str| {
        let p = env.path().join(rel).canonicalize().unwrap();
        openkb::hash::sha256_hex(p.to_str().unwrap().as_bytes())[..8].to_owned()
    };
    assert!(
        env.doc_named(&format!("report-{}", key("new/report.md")))
            .is_some()
    );
    assert!(
        env.doc_named(&format!(
            "caf\u{e9}-menu-{}",
            key("new/cafe\u{301}-menu.md")
        ))
        .is_some()
    );
    assert!(env.doc_named("Fresh-Notes-v2").is_some());
    // The old entries that kept their names are untouched.
    assert_eq!(
        env.doc_named("report").unwrap().path.as_deref(),
        Some("inbox/a/report.md")
    );
}
