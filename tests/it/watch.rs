//! `openkb watch`: files dropped into raw/ are added while other commands stay instant, and
//! SIGINT ends it cleanly.

use crate::harness::{Background, Env, assert_consistent, stderr, wait_until};

/// `openkb watch` with the given debounce, returned once it says it is watching.
fn start_watch(env: &Env, debounce_ms: &str) -> Background {
    let mut watch = Background::start(
        env.cmd()
            .env("OPENKB_WATCH_DEBOUNCE_MS", debounce_ms)
            .arg("watch"),
    );
    watch.wait_for_stderr("watching ");
    watch
}

#[test]
fn files_dropped_into_raw_are_added_while_list_stays_instant() {
    let env = Env::with_kb();
    let kb = env.kb();
    let mut watch = start_watch(&env, "300");

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

    // While watch works, list and status keep answering; once it is idle they find the lock
    // free at once (a probe: OPENKB_LOCK_TIMEOUT=0 fails if anyone holds it), so watch never
    // sits on the lock between batches.
    let all_added = wait_until(|| {
        for args in [&["list"][..], &["status"][..]] {
            let out = env.run(args);
            assert!(out.status.success(), "{}", stderr(&out));
        }
        env.docs().len() >= 13
    });
    assert!(
        all_added,
        "watch did not add the 13 files: {:?}\n{}",
        env.docs(),
        watch.stderr_so_far()
    );
    for args in [&["list"][..], &["status"][..]] {
        let out = env
            .cmd()
            .env("OPENKB_LOCK_TIMEOUT", "0")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "idle watch holds the lock: {}",
            stderr(&out)
        );
    }
    // Settle: a file dropped after all the others is added only once every earlier event was
    // handled, so a stray event has done whatever it would do by then.
    std::fs::write(kb.join("raw/zz-last.md"), "last\n").unwrap();
    assert!(
        wait_until(|| env.doc_named("zz-last").is_some()),
        "zz-last.md"
    );
    watch.signal(libc::SIGINT);
    let (status, _, rest) = watch.finish();
    assert_eq!(status.code(), Some(0), "{rest}");
    assert!(rest.contains("stopped watching"), "{rest}");

    let docs = env.docs();
    assert_eq!(docs.len(), 13 + 1, "the 13 files and zz-last.md: {docs:#?}");
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

#[test]
fn watch_reopens_a_state_db_replaced_while_it_runs() {
    let env = Env::with_kb();
    let kb = env.kb();
    let mut watch = start_watch(&env, "200");

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
    watch.signal(libc::SIGINT);
    let (status, _, rest) = watch.finish();
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
