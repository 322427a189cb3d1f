//! `openkb watch`: files dropped into raw/ are added while other commands stay instant, and
//! SIGINT ends it cleanly.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{Env, assert_consistent, stderr};

/// `openkb watch` with the given debounce, returned once it says it is watching (its first
/// stderr line), with the rest of its stderr to read.
fn start_watch(
    env: &Env,
    debounce_ms: &str,
    stdout: fn() -> Stdio,
) -> (std::process::Child, BufReader<std::process::ChildStderr>) {
    let mut watch = env
        .cmd()
        .env("OPENKB_WATCH_DEBOUNCE_MS", debounce_ms)
        .arg("watch")
        .stdout(stdout())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(watch.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("watching "), "{line}");
    (watch, err)
}

#[test]
fn files_dropped_into_raw_are_added_while_list_stays_instant() {
    let env = Env::with_kb();
    let kb = env.kb();
    let (mut watch, mut err) = start_watch(&env, "300", Stdio::piped);

    // Dropped the way editors and downloaders do: written under a temp name, then renamed;
    // plus a dotfile, a temp file and an unsupported file that must be ignored.
    for i in 0..12 {
        let temp = kb.join(format!("raw/.note-{i}.md.abc123.tmp"));
        std::fs::write(&temp, format!("note {i}\n")).unwrap();
        std::fs::rename(&temp, kb.join(format!("raw/note-{i}.md"))).unwrap();
    }
    std::fs::create_dir_all(kb.join("raw/sub")).unwrap();
    std::fs::write(kb.join("raw/sub/2509.11420.md"), "arxiv\n").unwrap();
    std::fs::write(kb.join("raw/.hidden.md"), "hidden\n").unwrap();
    std::fs::write(kb.join("raw/.draft.md.x1.tmp"), "temp\n").unwrap();
    std::fs::write(kb.join("raw/tool.exe"), "binary\n").unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut slowest = Duration::ZERO;
    loop {
        for args in [&["list"][..], &["status"][..]] {
            let started = Instant::now();
            let out = env.run(args);
            let took = started.elapsed();
            assert!(out.status.success(), "{}", stderr(&out));
            slowest = slowest.max(took);
        }
        if env.docs().len() >= 13 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        slowest < Duration::from_secs(2),
        "list/status took {slowest:?}"
    );
    // Settle: give a stray event time to do something wrong, then stop.
    std::thread::sleep(Duration::from_millis(800));
    // SAFETY: sending a signal to our own child.
    unsafe {
        libc::kill(watch.id() as libc::pid_t, libc::SIGINT);
    }
    let status = watch.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
    assert!(rest.contains("stopped watching"), "{rest}");

    let docs = env.docs();
    assert_eq!(docs.len(), 13, "{docs:#?}");
    let note = env.doc_named("note-3").unwrap();
    assert_eq!(note.path.as_deref(), Some("raw/note-3.md"));
    assert_eq!(note.raw_path.as_deref(), Some("raw/note-3.md"));
    assert_eq!(note.source_path.as_deref(), Some("wiki/sources/note-3.md"));
    let arxiv = env.doc_named("2509-11420").unwrap();
    assert_eq!(arxiv.path.as_deref(), Some("raw/sub/2509.11420.md"));
    assert_eq!(arxiv.raw_path.as_deref(), Some("raw/sub/2509.11420.md"));
    assert!(
        env.docs()
            .iter()
            .all(|d| d.name.as_deref() != Some(".hidden.md"))
    );
    // The ignored files are the user's, not published ones: out of the way for the check.
    for ignored in ["raw/.hidden.md", "raw/.draft.md.x1.tmp", "raw/tool.exe"] {
        std::fs::remove_file(kb.join(ignored)).unwrap();
    }
    assert_consistent(&env);
}

/// Poll `done` until it holds (the state a handshake waits for) or a minute passes.
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn watch_reopens_a_state_db_replaced_while_it_runs() {
    let env = Env::with_kb();
    let kb = env.kb();
    let (mut watch, mut err) = start_watch(&env, "200", Stdio::null);

    std::fs::write(kb.join("raw/one.md"), "one\n").unwrap();
    assert!(wait_until(|| env.doc_named("one").is_some()), "one.md");

    // A restore: a copy of the database (taken through SQLite), marked, renamed over it.
    let db = kb.join(".openkb/state.db");
    let copy = kb.join(".openkb/restored.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    drop(conn);
    let restored = rusqlite::Connection::open(&copy).unwrap();
    restored
        .execute(
            "INSERT INTO meta (key, value) VALUES ('restored', 'yes')",
            [],
        )
        .unwrap();
    drop(restored);
    std::fs::rename(&copy, &db).unwrap();
    // As a restore does: the old file's -wal and -shm go with it (watch still holds them open;
    // it must not take the new ones for its own).
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(kb.join(format!(".openkb/state.db{suffix}")));
    }

    std::fs::write(kb.join("raw/two.md"), "two\n").unwrap();
    let landed = wait_until(|| env.doc_named("two").is_some());
    // SAFETY: sending a signal to our own child.
    unsafe {
        libc::kill(watch.id() as libc::pid_t, libc::SIGINT);
    }
    let status = watch.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(landed, "two.md never reached the live state.db\n{rest}");
    assert_eq!(status.code(), Some(0), "{rest}");
    assert!(rest.contains("changed on disk; reopened"), "{rest}");
    let store = env.store();
    use openkb::state::Queries;
    assert_eq!(
        store.reader().unwrap().meta("restored").unwrap().as_deref(),
        Some("yes")
    );
    assert!(env.doc_named("one").is_some());
    assert_consistent(&env);
}
