//! The SQLite backend against real files: what only SQLite has (WAL, the file's identity,
//! schema constraints, other processes). The storage contract itself is the conformance
//! suite, run here on temp databases.
//!
//! These are unit tests because they exercise `Store::write` directly, which needs a
//! `WriteAccess` that only this crate can grant (everyone else writes through a session).

use std::path::Path;
use std::time::Duration;

use crate::Error;
use crate::state::conformance::{doc, hash_of};
use crate::state::{Create, Queries, Store, WriteAccess};

/// A fresh `state.db` in a temp folder, for the conformance suite.
struct TempDb {
    dir: tempfile::TempDir,
}

impl TempDb {
    fn new() -> TempDb {
        TempDb {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
}

impl crate::state::conformance::Harness for TempDb {
    fn open(&self) -> Store {
        new_store(self.dir.path())
    }

    fn open_impatient(&self) -> Store {
        Store::open_with_busy_timeout(
            &self.dir.path().join("state.db"),
            Create::IfMissing,
            Duration::from_millis(50),
            &Default::default(),
        )
        .expect("open")
    }
}

mod conformance {
    crate::state::conformance::storage_tests!(super::TempDb::new());
}

/// A temp folder and a store whose `state.db` there registers document 1 ("a").
fn store_with_one_document() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store
        .write(&WriteAccess::granted(), |tx| {
            tx.upsert_document(&doc(1, "a"))
        })
        .unwrap();
    (dir, store)
}

fn new_store(dir: &Path) -> Store {
    Store::open(&dir.join("state.db"), Create::IfMissing).expect("open")
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
fn the_schema_refuses_rows_the_api_would_never_write() {
    let (dir, store) = store_with_one_document();
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
                tx.upsert_document(&doc(n, &format!("w{worker}-{i}")))?;
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
    // The test's name as the harness knows it: this module's path without the crate.
    let child_test = format!(
        "{}::child_writer",
        module_path!().split_once("::").unwrap().1
    );
    let children: Vec<_> = (0..4)
        .map(|w| {
            std::process::Command::new(&exe)
                .args(["--exact", &child_test, "--ignored", "--test-threads=1"])
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
fn a_newer_schema_is_readable_but_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let store = new_store(dir.path());
    store
        .write(&WriteAccess::granted(), |tx| {
            tx.upsert_document(&doc(1, "a"))
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
            tx.upsert_document(&doc(2, "b"))
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

/// Rows another program wrote are input like any file: a value no openkb writes is an error
/// that names the column, never a panic or a silent default.
#[test]
fn rows_another_program_broke_are_reported_by_column() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store
        .write(&WriteAccess::granted(), |tx| {
            tx.upsert_document(&doc(1, "a"))?;
            tx.upsert_document(&doc(2, "b"))?;
            tx.record_intent(crate::state::IntentOp::Add, &hash_of(1), None, &[])
                .map(drop)
        })
        .unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA ignore_check_constraints = ON;
         UPDATE documents SET status = 'done' WHERE hash = '{h1}';
         INSERT INTO document_legacy (hash, extra) VALUES ('{h2}', '[1]');
         UPDATE intents SET operation = 'explode';",
        h1 = hash_of(1),
        h2 = hash_of(2)
    ))
    .unwrap();
    let err = store.get(&hash_of(1)).unwrap_err();
    assert!(matches!(err, Error::Storage { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("state.db") && text.contains("status"),
        "{text}"
    );
    assert!(text.contains("unknown status \"done\""), "{text}");
    let text = store.get(&hash_of(2)).unwrap_err().to_string();
    assert!(
        text.contains("extra") && text.contains("not a JSON object"),
        "{text}"
    );
    let text = store
        .reader()
        .unwrap()
        .unfinished_intents()
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("unknown intent operation \"explode\""),
        "{text}"
    );
}

#[test]
fn disk_usage_counts_the_database_and_its_write_ahead_log() {
    let (dir, store) = store_with_one_document();
    let db = dir.path().join("state.db");
    let wal = crate::state::sidecar_path(&db, "-wal");
    let usage = store.disk_usage().unwrap();
    assert_eq!(usage.database_bytes, std::fs::metadata(&db).unwrap().len());
    assert_eq!(
        usage.pending_log_bytes,
        std::fs::metadata(&wal).unwrap().len()
    );
    assert!(usage.pending_log_bytes > 0, "the commit is in the WAL");
    store.checkpoint().unwrap();
    assert_eq!(store.disk_usage().unwrap().pending_log_bytes, 0);
}

#[test]
fn a_replaced_database_file_is_noticed_and_its_commits_do_not_follow_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let store = new_store(dir.path());
    // A commit that stays in the WAL while the store's pooled connection is open.
    store
        .write(&WriteAccess::granted(), |tx| tx.append_log("ingest", "old"))
        .unwrap();
    store.check_still_at_path().unwrap();
    // Another database is renamed over state.db while the store has the old one open.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    drop(new_store(&other));
    std::fs::rename(other.join("state.db"), &db).unwrap();
    let err = store.check_still_at_path().unwrap_err();
    assert!(matches!(err, Error::StateDbReplaced { .. }), "{err}");
    assert!(
        err.to_string().contains("replaced by another file"),
        "{err}"
    );
    drop(store);
    // The old file's -wal at the path went with it: the new file shows none of its commits.
    let reopened = Store::open(&db, Create::Never).unwrap();
    assert_eq!(reopened.reader().unwrap().log_count().unwrap(), 0);
}
