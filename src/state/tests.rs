//! The state engine against real SQLite files: order, lookups, constraints, concurrency.
//!
//! These are unit tests because they exercise `Store::write` directly, which needs a
//! `WriteAccess` that only this crate can grant (everyone else writes through a session).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{Create, Document, Queries, Status, Store, WriteAccess};
use crate::Error;
use serde_json::json;

fn hash_of(n: u64) -> String {
    format!("{n:064x}")
}

/// An era-C document as `add` would register it.
fn text_doc(n: u64, stem: &str) -> Document {
    Document {
        name: Some(format!("{stem}.md")),
        doc_name: Some(stem.to_owned()),
        doc_type: Some("md".into()),
        path: Some(format!("inbox/{stem}.md")),
        raw_path: Some(format!("raw/{stem}.md")),
        source_path: Some(format!("wiki/sources/{stem}.md")),
        ..Document::new(hash_of(n))
    }
}

fn new_store(dir: &Path) -> Store {
    Store::open(&dir.join("state.db"), Create::IfMissing).expect("open")
}

fn hashes(store: &Store) -> Vec<String> {
    store.list().unwrap().into_iter().map(|d| d.hash).collect()
}

#[test]
fn fresh_database_is_wal_with_schema_and_application_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    assert_eq!(
        store.schema_version(),
        crate::state::schema::latest_version()
    );
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let app: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(app, crate::state::schema::APPLICATION_ID);
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for table in ["documents", "log", "meta"] {
        assert!(tables.iter().any(|t| t == table), "{table} in {tables:?}");
    }
}

#[test]
fn upsert_keeps_registry_order_and_remove_then_add_moves_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    for (n, stem) in [(1, "a"), (2, "b"), (3, "c")] {
        store
            .write(&WriteAccess::granted(), |tx| {
                tx.upsert_document(&text_doc(n, stem))
            })
            .unwrap();
    }
    let created_a = store.get(&hash_of(1)).unwrap().unwrap().created_at;
    // Updating the first entry keeps its position and creation time.
    let mut a = text_doc(1, "a");
    a.status = Status::Compiled;
    a.path = Some("elsewhere/a.md".into());
    store
        .write(&WriteAccess::granted(), |tx| tx.upsert_document(&a))
        .unwrap();
    assert_eq!(hashes(&store), [hash_of(1), hash_of(2), hash_of(3)]);
    let stored = store.get(&hash_of(1)).unwrap().unwrap();
    assert_eq!(stored.status, Status::Compiled);
    assert_eq!(stored.path.as_deref(), Some("elsewhere/a.md"));
    assert_eq!(stored.created_at, created_a);
    // Remove + add moves an entry to the end, as a Python dict does.
    assert!(
        store
            .write(&WriteAccess::granted(), |tx| tx
                .remove_document(&hash_of(2)))
            .unwrap()
    );
    assert!(
        !store
            .write(&WriteAccess::granted(), |tx| tx
                .remove_document(&hash_of(2)))
            .unwrap()
    );
    store
        .write(&WriteAccess::granted(), |tx| {
            tx.upsert_document(&text_doc(2, "b"))
        })
        .unwrap();
    assert_eq!(hashes(&store), [hash_of(1), hash_of(3), hash_of(2)]);
}

#[test]
fn every_field_round_trips_including_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let mut doc = Document {
        name: Some("cafe\u{301}-menu.md".into()),
        doc_type: Some("long_pdf".into()),
        doc_id: Some("86fb1ea5".into()),
        origin: Some("cloud".into()),
        pages: Some(12),
        key_order: Some(vec!["type".into(), "name".into()]),
        error: Some("boom".into()),
        status: Status::Failed,
        ..Document::new(hash_of(7))
    };
    doc.extra.insert("filename".into(), json!("x.md"));
    // Parsed from text: numbers keep their exact spelling (2.50 stays 2.50).
    let nested: serde_json::Value = serde_json::from_str(r#"{"a":[1,2.50,null]}"#).unwrap();
    doc.extra.insert("nested".into(), nested);
    store
        .write(&WriteAccess::granted(), |tx| tx.upsert_document(&doc))
        .unwrap();
    let back = store.get(&hash_of(7)).unwrap().unwrap();
    assert_eq!(
        back.name.as_deref(),
        Some("cafe\u{301}-menu.md"),
        "NFD kept"
    );
    assert_eq!(back.extra, doc.extra);
    assert_eq!(back.extra["nested"].to_string(), r#"{"a":[1,2.50,null]}"#);
    assert_eq!(back.key_order, doc.key_order);
    assert_eq!(back.pages, Some(12));
    assert_eq!(back.status, Status::Failed);
    assert_eq!(back.error.as_deref(), Some("boom"));
    assert!(back.created_at.ends_with('Z') && back.created_at.contains('T'));
}

#[test]
fn lookups_by_hash_path_doc_name_and_name_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let legacy = Document {
        name: Some("Report.md".into()),
        doc_type: Some("md".into()),
        ..Document::new(hash_of(10))
    };
    let first = text_doc(11, "report");
    let mut second = text_doc(12, "report-0d8d1e29");
    second.path = Some("inbox/b/report.md".into());
    second.name = Some("report.md".into());
    store
        .write(&WriteAccess::granted(), |tx| {
            tx.upsert_document(&legacy)?;
            tx.upsert_document(&first)?;
            tx.upsert_document(&second)
        })
        .unwrap();

    assert!(store.is_known(&hash_of(11)).unwrap());
    assert!(!store.is_known(&hash_of(99)).unwrap());
    assert!(store.get(&hash_of(99)).unwrap().is_none());
    for path in ["inbox/report.md", "raw/report.md", "wiki/sources/report.md"] {
        let found = store.find_by_path(path).unwrap().expect(path);
        assert_eq!(found.hash, hash_of(11), "{path}");
    }
    assert_eq!(
        store
            .find_by_path("inbox/b/report.md")
            .unwrap()
            .unwrap()
            .hash,
        hash_of(12)
    );
    assert!(
        store.find_by_path("Report.md").unwrap().is_none(),
        "name is not a path"
    );
    assert_eq!(
        store
            .find_by_doc_name("report-0d8d1e29")
            .unwrap()
            .unwrap()
            .hash,
        hash_of(12)
    );
    assert!(store.find_by_doc_name("Report").unwrap().is_none());
    // Name keys: an entry without doc_name owns its stem; NFKC on both sides.
    let reader = store.reader().unwrap();
    let owners: Vec<String> = reader
        .find_by_name_key("Report")
        .unwrap()
        .into_iter()
        .map(|d| d.hash)
        .collect();
    assert_eq!(owners, [hash_of(10)]);
    assert_eq!(
        reader.find_by_name_key("ｒｅｐｏｒｔ").unwrap()[0].hash,
        hash_of(11)
    );
}

#[test]
fn find_by_path_returns_the_first_in_registry_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let mut later = text_doc(2, "x");
    later.path = Some("shared/p.md".into());
    let mut earlier = text_doc(1, "y");
    earlier.source_path = Some("shared/p.md".into());
    store
        .write(&WriteAccess::granted(), |tx| tx.upsert_document(&earlier))
        .unwrap();
    store
        .write(&WriteAccess::granted(), |tx| tx.upsert_document(&later))
        .unwrap();
    assert_eq!(
        store.find_by_path("shared/p.md").unwrap().unwrap().hash,
        hash_of(1)
    );
}

#[test]
fn constraints_reject_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    for bad in ["ABC", &"A".repeat(64), &"g".repeat(64), &"a".repeat(65)] {
        let err = store
            .write(&WriteAccess::granted(), |tx| {
                tx.upsert_document(&Document::new(bad))
            })
            .unwrap_err();
        assert!(matches!(err, Error::InvalidHash { .. }), "{bad}: {err}");
    }
    store
        .write(&WriteAccess::granted(), |tx| {
            tx.upsert_document(&text_doc(1, "a"))
        })
        .unwrap();
    let err = store
        .write(&WriteAccess::granted(), |tx| {
            tx.upsert_document(&text_doc(2, "a"))
        })
        .unwrap_err();
    assert!(matches!(err, Error::DocNameTaken { .. }), "{err}");
    assert!(err.to_string().contains(&hash_of(1)));
    // A failed transaction leaves nothing behind, even the part that succeeded.
    let err = store
        .write(&WriteAccess::granted(), |tx| {
            tx.upsert_document(&text_doc(3, "c"))?;
            tx.append_log("ingest", "c.md")?;
            tx.upsert_document(&text_doc(4, "a"))
        })
        .unwrap_err();
    assert!(matches!(err, Error::DocNameTaken { .. }));
    assert!(!store.is_known(&hash_of(3)).unwrap());
    assert_eq!(store.reader().unwrap().log_count().unwrap(), 0);

    // The schema itself refuses what the API would never write.
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    let insert = |hash: &str, doc_name: &str, status: &str| {
        conn.execute(
            "INSERT INTO documents (hash, position, doc_name, name_key, status, created_at, updated_at)
             VALUES (?1, (SELECT max(position) + 1 FROM documents), ?2, ?2, ?3, 't', 't')",
            [hash, doc_name, status],
        )
    };
    assert!(
        insert(&"Z".repeat(64), "z1", "pending").is_err(),
        "bad hash"
    );
    assert!(
        insert(&hash_of(5), "a", "pending").is_err(),
        "doc_name taken"
    );
    assert!(insert(&hash_of(6), "z2", "done").is_err(), "unknown status");
    assert!(insert(&hash_of(8), "z3", "pending").is_ok());
}

#[test]
fn status_counts_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store
        .write(&WriteAccess::granted(), |tx| {
            for n in 0..5 {
                tx.upsert_document(&text_doc(n, &format!("d{n}")))?;
            }
            tx.set_status(&hash_of(1), Status::Compiled, None)?;
            tx.set_status(&hash_of(2), Status::Compiled, None)?;
            tx.set_status(&hash_of(3), Status::Failed, Some("exit 1"))?;
            tx.append_log("ingest", "d0.md")?;
            tx.append_log("query", "line one\nline two")?;
            tx.append_log("ingest", "d1.md")
        })
        .unwrap();
    let counts = store.counts().unwrap();
    assert_eq!((counts.pending, counts.compiled, counts.failed), (2, 2, 1));
    assert_eq!(counts.total(), 5);
    assert_eq!(
        store.get(&hash_of(3)).unwrap().unwrap().error.as_deref(),
        Some("exit 1")
    );

    let all = store.log_tail(None, None).unwrap();
    let ops: Vec<&str> = all.iter().map(|e| e.operation.as_str()).collect();
    assert_eq!(ops, ["ingest", "query", "ingest"], "oldest first");
    let last_two = store.log_tail(Some(2), None).unwrap();
    assert_eq!(last_two[0].operation, "query");
    assert_eq!(last_two[1].description, "d1.md");
    let ingests = store.log_tail(None, Some("ingest")).unwrap();
    assert_eq!(ingests.len(), 2);
    assert_eq!(all[1].timestamp.len(), "YYYY-MM-DD HH:MM:SS".len());
}

#[test]
fn concurrent_writer_threads_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(new_store(dir.path()));
    let threads = 8;
    let per_thread = 100u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    let n = t * 1000 + i;
                    store
                        .write(&WriteAccess::granted(), |tx| {
                            tx.upsert_document(&text_doc(n, &format!("t{t}-{i}")))?;
                            tx.append_log("ingest", &format!("t{t}-{i}.md"))
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let docs = store.list().unwrap();
    assert_eq!(docs.len() as u64, threads * per_thread);
    // Every write landed once (nothing lost, nothing doubled) ...
    let expected: std::collections::BTreeSet<String> = (0..threads)
        .flat_map(|t| (0..per_thread).map(move |i| hash_of(t * 1000 + i)))
        .collect();
    let registered: std::collections::BTreeSet<String> =
        docs.iter().map(|d| d.hash.clone()).collect();
    assert_eq!(registered, expected);
    // ... and registry order is commit order: each thread's documents come in the order that
    // thread committed them (a position taken from a stale read would break this).
    for t in 0..threads {
        let prefix = format!("t{t}-");
        let order: Vec<u64> = docs
            .iter()
            .filter_map(|d| d.doc_name.as_deref()?.strip_prefix(&prefix)?.parse().ok())
            .collect();
        assert_eq!(order, (0..per_thread).collect::<Vec<_>>(), "thread {t}");
    }
    let reader = store.reader().unwrap();
    assert_eq!(reader.log_count().unwrap(), threads * per_thread);
    let mut logged: Vec<String> = store
        .log_tail(None, Some("ingest"))
        .unwrap()
        .into_iter()
        .map(|e| e.description)
        .collect();
    logged.sort();
    let mut written: Vec<String> = (0..threads)
        .flat_map(|t| (0..per_thread).map(move |i| format!("t{t}-{i}.md")))
        .collect();
    written.sort();
    assert_eq!(logged, written, "one log row per write");
}

/// Child side of `concurrent_writer_processes_lose_nothing`: run by the parent test through
/// this test binary, with the database and worker number in the environment.
#[test]
#[ignore = "run as a child process by concurrent_writer_processes_lose_nothing"]
fn child_writer() {
    let db = std::env::var("OPENKB_TEST_DB").unwrap();
    let worker: u64 = std::env::var("OPENKB_TEST_WORKER")
        .unwrap()
        .parse()
        .unwrap();
    let store = Store::open(Path::new(&db), Create::Never).unwrap();
    for i in 0..150 {
        let n = worker * 10_000 + i;
        store
            .write(&WriteAccess::granted(), |tx| {
                tx.upsert_document(&text_doc(n, &format!("w{worker}-{i}")))?;
                tx.append_log("ingest", &format!("w{worker}-{i}"))
            })
            .unwrap();
    }
}

#[test]
fn concurrent_writer_processes_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    drop(new_store(dir.path()));
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|w| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "state::tests::child_writer",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env("OPENKB_TEST_DB", &db)
                .env("OPENKB_TEST_WORKER", w.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let store = Store::open(&db, Create::Never).unwrap();
    assert_eq!(store.counts().unwrap().total(), 600);
    assert_eq!(store.reader().unwrap().log_count().unwrap(), 600);
    for w in 0..4u64 {
        assert!(store.is_known(&hash_of(w * 10_000 + 149)).unwrap());
    }
}

#[test]
fn a_busy_database_gives_a_typed_error_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    drop(new_store(dir.path()));
    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let store = Store::open_with_busy_timeout(
        &db,
        Create::Never,
        Duration::from_millis(50),
        &Default::default(),
    )
    .unwrap();
    let err = store
        .write(&WriteAccess::granted(), |tx| {
            tx.upsert_document(&text_doc(1, "a"))
        })
        .unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err}");
    assert!(err.to_string().contains("another openkb process"), "{err}");
    assert_eq!(err.exit_code(), crate::error::exit::BUSY);
    // Reads still work while another connection writes (WAL).
    assert!(store.list().unwrap().is_empty());
    blocker.execute_batch("ROLLBACK").unwrap();
    store
        .write(&WriteAccess::granted(), |tx| {
            tx.upsert_document(&text_doc(1, "a"))
        })
        .unwrap();
}

#[test]
fn a_second_writer_waits_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    drop(new_store(dir.path()));
    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        blocker.execute_batch("COMMIT").unwrap();
    });
    let store = Store::open(&db, Create::Never).unwrap();
    store
        .write(&WriteAccess::granted(), |tx| {
            tx.upsert_document(&text_doc(1, "a"))
        })
        .unwrap();
    release.join().unwrap();
    assert!(store.is_known(&hash_of(1)).unwrap());
}

#[test]
fn a_newer_schema_is_readable_but_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let store = new_store(dir.path());
    store
        .write(&WriteAccess::granted(), |tx| {
            tx.upsert_document(&text_doc(1, "a"))
        })
        .unwrap();
    drop(store);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA user_version = 999")
        .unwrap();
    let store = Store::open(&db, Create::Never).unwrap();
    assert!(store.is_too_new());
    assert_eq!(store.list().unwrap().len(), 1);
    let err = store
        .write(&WriteAccess::granted(), |tx| {
            tx.upsert_document(&text_doc(2, "b"))
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::SchemaTooNew { found: 999, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("newer than this openkb"));
}

#[test]
fn files_that_are_not_openkb_databases_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 8192]).unwrap();
    let err = Store::open(&garbage, Create::Never).unwrap_err();
    assert!(matches!(err, Error::NotStateDb { .. }), "{err}");
    assert!(err.to_string().contains("garbage.db"));
    assert_eq!(
        std::fs::read(&garbage).unwrap(),
        vec![b'x'; 8192],
        "untouched"
    );

    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let err = Store::open(&foreign, Create::Never).unwrap_err();
    assert!(err.to_string().contains("another program"), "{err}");

    let missing = dir.path().join("missing.db");
    assert!(Store::open(&missing, Create::Never).is_err());
    assert!(!missing.exists());
}

#[test]
fn status_counts_follow_every_kind_of_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let scan = || {
        let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
        let mut counts = [0u64; 3];
        let mut stmt = conn
            .prepare("SELECT status, count(*) FROM documents GROUP BY status")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .unwrap();
        for row in rows {
            let (status, n) = row.unwrap();
            let slot = ["pending", "compiled", "failed"]
                .iter()
                .position(|s| *s == status)
                .unwrap();
            counts[slot] = n as u64;
        }
        counts
    };
    let check = |store: &Store| {
        let c = store.counts().unwrap();
        assert_eq!([c.pending, c.compiled, c.failed], scan());
    };
    store
        .write(&WriteAccess::granted(), |tx| {
            for n in 0..6 {
                tx.upsert_document(&text_doc(n, &format!("d{n}")))?;
            }
            Ok(())
        })
        .unwrap();
    check(&store);
    store
        .write(&WriteAccess::granted(), |tx| {
            tx.set_status(&hash_of(0), Status::Compiled, None)?;
            tx.set_status(&hash_of(1), Status::Failed, Some("x"))?;
            tx.set_status(&hash_of(1), Status::Failed, Some("y"))?;
            tx.remove_document(&hash_of(2))
        })
        .unwrap();
    check(&store);
    // An upsert that changes the status of an existing row moves it between counts.
    let mut d3 = text_doc(3, "d3");
    d3.status = Status::Compiled;
    store
        .write(&WriteAccess::granted(), |tx| tx.upsert_document(&d3))
        .unwrap();
    check(&store);
    // A rolled-back transaction leaves the counts as they were.
    let before = store.counts().unwrap();
    let _ = store.write(&WriteAccess::granted(), |tx| {
        tx.remove_document(&hash_of(4))?;
        tx.upsert_document(&text_doc(9, "d0"))
    });
    assert_eq!(store.counts().unwrap(), before);
    check(&store);
    let c = store.counts().unwrap();
    assert_eq!((c.pending, c.compiled, c.failed), (2, 2, 1));
}
