//! Upgrades from every shipped schema version, including the physical shapes left by builds
//! that ran 0001 and 0003 before those files were edited (their texts, taken from the git
//! history, are in tests/data/migrations/), with real rows in every table; and the declared
//! `rust-version` against the lockfile.

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::{Env, stderr, stdout};
use openkb::state::schema;
use rusqlite::Connection;
use rusqlite::types::Value;

const M0002: &str = include_str!("../../migrations/0002_imports.sql");
const M0003: &str = include_str!("../../migrations/0003_intents.sql");
const M0004: &str = include_str!("../../migrations/0004_document_counts.sql");
/// 0001 as shipped first: `log` with AUTOINCREMENT, an index on `documents.status`.
const M0001_FIRST: &str = include_str!("../data/migrations/0001_initial.b212a76.sql");
/// 0003 as shipped first, on the branch where it was the second migration.
const M0003_FIRST: &str = include_str!("../data/migrations/0003_intents.4e778dd.sql");
/// 0003 made idempotent, still with AUTOINCREMENT (on main until the edit that removed it).
const M0003_IDEMPOTENT: &str = include_str!("../data/migrations/0003_intents.fab13a7.sql");

/// Databases builds left with statements that are no longer the shipped ones: the statements
/// each ran, in order (its `user_version` is their number).
const OLD_SHAPES: &[(&str, &[&str])] = &[
    ("first 0001", &[M0001_FIRST]),
    ("first 0001, then 0002", &[M0001_FIRST, M0002]),
    (
        "the ingest branch: first 0003 as version 2, no imports table",
        &[M0001_FIRST, M0003_FIRST],
    ),
    (
        "main between the ingest and migrate merges: idempotent 0003 as version 2",
        &[M0001_FIRST, M0003_IDEMPOTENT],
    ),
    (
        "first 0001, 0002, idempotent 0003",
        &[M0001_FIRST, M0002, M0003_IDEMPOTENT],
    ),
    (
        "first 0001, 0002, idempotent 0003, 0004",
        &[M0001_FIRST, M0002, M0003_IDEMPOTENT, M0004],
    ),
    (
        "version 2 without imports, upgraded to 4 (0003 re-run as a no-op)",
        &[M0001_FIRST, M0003_IDEMPOTENT, M0003_IDEMPOTENT, M0004],
    ),
    (
        "first 0001, upgraded by a build with the edited files",
        &[M0001_FIRST, M0002, M0003, M0004],
    ),
];

/// A database as some build left it.
struct Era {
    made_by: String,
    version: usize,
    /// The statements of an old shape; `None`: the first `version` shipped migrations.
    old_statements: Option<&'static [&'static str]>,
}

/// Every shipped version below the latest, made by the shipped migrations, then every old shape.
fn eras() -> Vec<Era> {
    let latest = schema::MIGRATIONS.len();
    let shipped = (1..latest).map(|version| Era {
        made_by: format!("shipped migrations 1..={version}"),
        version,
        old_statements: None,
    });
    let old = OLD_SHAPES.iter().map(|(made_by, statements)| Era {
        made_by: (*made_by).to_owned(),
        version: statements.len(),
        old_statements: Some(statements),
    });
    shipped.chain(old).collect()
}

fn hash(n: u64) -> String {
    format!("{n:064x}")
}

fn has_table(conn: &Connection, table: &str) -> bool {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get::<_, i64>(0),
    )
    .unwrap()
        == 1
}

/// Build the era's database at `path` and fill every table it has.
fn build(era: &Era, path: &Path, with_intents: bool) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA application_id = {};",
        schema::APPLICATION_ID
    ))
    .unwrap();
    match era.old_statements {
        Some(statements) => {
            for statement in statements {
                conn.execute_batch(statement).unwrap();
            }
        }
        None => {
            let shipped = &schema::MIGRATIONS[..era.version];
            for (index, migration) in shipped.iter().enumerate() {
                match migration.step {
                    schema::Step::Sql(sql) => conn.execute_batch(sql).unwrap(),
                    schema::Step::Rust(step) => step(&conn, &shipped[..index]).unwrap(),
                }
            }
        }
    }
    conn.execute_batch(&format!("PRAGMA user_version = {};", era.version))
        .unwrap();
    fill(&conn, with_intents);
}

fn fill(conn: &Connection, with_intents: bool) {
    // Positions with gaps (removals happened), one document of every status, one legacy entry
    // with extra keys, a key order and no names.
    let documents = [
        (hash(1), 1, "a.md", "a", "compiled", None),
        (hash(2), 2, "b.pdf", "b", "pending", None),
        (
            hash(3),
            5,
            "c.md",
            "c",
            "failed",
            Some("hook exited with 2"),
        ),
    ];
    for (hash, position, name, doc_name, status, error) in &documents {
        conn.execute(
            "INSERT INTO documents (hash, position, name, doc_name, type, path, raw_path,
                 source_path, name_key, status, error, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'md', 'inbox/' || ?3, 'raw/' || ?3,
                 'wiki/sources/' || ?4 || '.md', ?4, ?5, ?6,
                 '2026-11-01T10:00:00.000Z', '2026-11-02T10:00:00.000Z')",
            rusqlite::params![hash, position, name, doc_name, status, error],
        )
        .unwrap();
    }
    let (extra, key_order) = (
        r#"{"tags":["x"],"pages":"n/a"}"#,
        r#"["doc_id","origin","tags"]"#,
    );
    conn.execute(
        "INSERT INTO documents (hash, position, doc_id, origin, pages, name_key, status,
             created_at, updated_at)
         VALUES (?1, 9, 'pi-42', 'cloud', 12, 'pi-42', 'compiled',
             '2026-11-03T10:00:00.000Z', '2026-11-03T10:00:00.000Z')",
        [hash(4)],
    )
    .unwrap();
    // Before 0009 the legacy round-trip columns are in `documents`, from 0009 on beside it.
    if has_table(conn, "document_legacy") {
        conn.execute(
            "INSERT INTO document_legacy (hash, extra, key_order) VALUES (?1, ?2, ?3)",
            [&hash(4), extra, key_order],
        )
    } else {
        conn.execute(
            "UPDATE documents SET extra = ?2, key_order = ?3 WHERE hash = ?1",
            [&hash(4), extra, key_order],
        )
    }
    .unwrap();
    // Log ids with a gap, an imported entry without recorded_at.
    for (id, operation, description, recorded_at) in [
        (1, "init", "kb", None),
        (2, "add", "a.md", Some("2026-11-01T10:00:00.000Z")),
        (3, "compile", "a", Some("2026-11-01T10:01:00.000Z")),
        (7, "remove", "old.md", Some("2026-11-02T09:00:00.000Z")),
    ] {
        conn.execute(
            "INSERT INTO log (id, timestamp, operation, description, recorded_at)
             VALUES (?1, '2026-11-01 11:00:00', ?2, ?3, ?4)",
            rusqlite::params![id, operation, description, recorded_at],
        )
        .unwrap();
    }
    if with_intents && has_table(conn, "intents") {
        conn.execute(
            "INSERT INTO intents (id, operation, hash, doc_name, files, started_at, pid)
             VALUES (4, 'add', ?1, 'e',
                 '[{\"path\":\"raw/e.md\",\"backup\":null}]', '2026-11-04T10:00:00.000Z', 4242)",
            [hash(5)],
        )
        .unwrap();
    }
    if has_table(conn, "imports") {
        conn.execute(
            "INSERT INTO imports (kind, source_path, source_sha256, source_bytes, moved_to,
                 entries, new_entries, log_entries, imported_at)
             VALUES ('initial', '/kb/.openkb/hashes.json', ?1, 1234,
                 '/kb/.openkb/hashes.json.migrated', 4, 4, 1, '2026-11-01T09:00:00.000Z')",
            [hash(6)],
        )
        .unwrap();
    }
    conn.execute_batch(
        "INSERT INTO meta (key, value) VALUES ('created_by', 'openkb 0.0.1'),
             ('schema_updated_at', '2026-11-01T09:00:00.000Z'), ('note', 'kept');",
    )
    .unwrap();
}

/// A row by column name.
type Row = BTreeMap<String, Value>;
type Rows = Vec<Row>;

/// Every row of every table that holds data, in the order that matters (registry order, log
/// ids), each column by name, so a reshaped table compares with what it held. A document's
/// legacy round-trip columns are read from wherever the schema keeps them.
fn rows(conn: &Connection) -> BTreeMap<&'static str, Rows> {
    let documents = if has_table(conn, "document_legacy") {
        "SELECT d.*, coalesce(l.extra, '{}') AS extra, l.key_order AS key_order
         FROM documents d LEFT JOIN document_legacy l ON l.hash = d.hash ORDER BY d.position"
    } else {
        "SELECT * FROM documents ORDER BY position"
    };
    let queries = [
        ("documents", documents),
        ("log", "SELECT * FROM log ORDER BY id"),
        ("intents", "SELECT * FROM intents ORDER BY id"),
        ("imports", "SELECT * FROM imports ORDER BY id"),
        ("meta", "SELECT * FROM meta ORDER BY key"),
    ];
    let mut all = BTreeMap::new();
    for (table, query) in queries {
        if !has_table(conn, table) {
            continue;
        }
        let mut stmt = conn.prepare(query).unwrap();
        let names: Vec<String> = stmt.column_names().iter().map(|n| n.to_string()).collect();
        let table_rows = stmt
            .query_map([], |r| {
                names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| Ok((name.clone(), r.get::<_, Value>(i)?)))
                    .collect()
            })
            .unwrap()
            .collect::<rusqlite::Result<Rows>>()
            .unwrap();
        all.insert(table, table_rows);
    }
    all
}

/// The physical schema as `sqlite_master` states it (root pages aside).
fn master(conn: &Connection) -> Vec<(String, String, String, Option<String>)> {
    conn.prepare("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn fresh_master() -> Vec<(String, String, String, Option<String>)> {
    let mut conn = Connection::open_in_memory().unwrap();
    schema::migrate(&mut conn, "2026-12-01T00:00:00.000Z").unwrap();
    master(&conn)
}

fn text(value: &Value) -> &str {
    match value {
        Value::Text(text) => text,
        other => panic!("not text: {other:?}"),
    }
}

/// Checks that hold for every upgraded database: the current physical schema, every row it
/// had, counts that match the rows, no AUTOINCREMENT bookkeeping for `log` and `intents`.
fn assert_upgraded(conn: &Connection, before: &BTreeMap<&str, Rows>, made_by: &str) {
    assert_eq!(
        schema::user_version(conn).unwrap(),
        schema::latest_version(),
        "{made_by}"
    );
    assert_eq!(master(conn), fresh_master(), "{made_by}: physical schema");
    let after = rows(conn);
    for table in ["documents", "log", "intents", "imports"] {
        match before.get(table) {
            Some(rows) => {
                // Every column the row had keeps its value; columns added by later
                // migrations start NULL.
                assert_eq!(after[table].len(), rows.len(), "{made_by}: {table}");
                for (now, was) in after[table].iter().zip(rows) {
                    let (kept, added): (Row, Row) = now
                        .clone()
                        .into_iter()
                        .partition(|(c, _)| was.contains_key(c));
                    assert_eq!(&kept, was, "{made_by}: {table}");
                    assert!(
                        added.values().all(|v| *v == Value::Null),
                        "{made_by}: {table}: added columns not NULL: {added:?}"
                    );
                }
            }
            None => assert_eq!(
                after[table],
                Rows::new(),
                "{made_by}: {table} created empty"
            ),
        }
    }
    let meta_of = |rows: &Rows| -> BTreeMap<String, String> {
        rows.iter()
            .map(|r| (text(&r["key"]).to_owned(), text(&r["value"]).to_owned()))
            .collect()
    };
    let (meta_before, meta_after) = (meta_of(&before["meta"]), meta_of(&after["meta"]));
    for (key, value) in &meta_before {
        if key != "schema_updated_at" {
            assert_eq!(meta_after.get(key), Some(value), "{made_by}: meta {key}");
        }
    }
    let counts: Vec<(String, i64)> = conn
        .prepare(
            "SELECT c.status, c.n - (SELECT count(*) FROM documents d WHERE d.status = c.status)
             FROM document_counts c ORDER BY c.status",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(
        counts,
        [
            ("compiled".to_owned(), 0),
            ("failed".to_owned(), 0),
            ("pending".to_owned(), 0)
        ],
        "{made_by}: document_counts minus real counts"
    );
    let sequences: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_sequence ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert!(
        sequences.iter().all(|name| name == "imports"),
        "{made_by}: sqlite_sequence {sequences:?}"
    );
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok", "{made_by}");
}

#[test]
fn every_shipped_schema_version_and_shape_upgrades_with_every_row() {
    for era in &eras() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        build(era, &path, true);
        let mut conn = Connection::open(&path).unwrap();
        let before = rows(&conn);
        assert_eq!(
            schema::check(&conn).unwrap(),
            schema::Version::Behind(era.version as i64),
            "{}",
            &era.made_by
        );
        let reached = schema::migrate(&mut conn, "2026-12-01T00:00:00.000Z").unwrap();
        assert_eq!(reached, schema::latest_version(), "{}", era.made_by);
        assert_upgraded(&conn, &before, &era.made_by);

        // New rows continue after the kept ones, and the counting triggers work.
        conn.execute(
            "INSERT INTO log (timestamp, operation, description) VALUES ('t', 'add', 'new')",
            [],
        )
        .unwrap();
        assert_eq!(conn.last_insert_rowid(), 8, "{}", era.made_by);
        conn.execute(
            "UPDATE documents SET status = 'compiled' WHERE hash = ?1",
            [hash(2)],
        )
        .unwrap();
        let compiled: i64 = conn
            .query_row(
                "SELECT n FROM document_counts WHERE status = 'compiled'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(compiled, 3, "{}", era.made_by);

        // A second run finds nothing to do.
        let settled = master(&conn);
        assert_eq!(
            schema::migrate(&mut conn, "later").unwrap(),
            schema::latest_version()
        );
        assert_eq!(master(&conn), settled, "{}", era.made_by);
    }
}

/// Delete the KB's state.db with its WAL and shared-memory files (to put an older one there).
fn remove_state_db(env: &Env) {
    for companion in ["state.db", "state.db-wal", "state.db-shm"] {
        let file = env.kb().join(".openkb").join(companion);
        if file.exists() {
            std::fs::remove_file(file).unwrap();
        }
    }
}

#[test]
fn the_binary_upgrades_an_old_shape_database_in_a_kb_and_keeps_using_it() {
    let env = Env::with_kb();
    let db = env.kb().join(".openkb/state.db");
    remove_state_db(&env);
    let eras = eras();
    let era = eras
        .iter()
        .find(|e| e.made_by == "first 0001, 0002, idempotent 0003, 0004")
        .unwrap();
    // No intents: the binary would settle them against files this test does not make.
    build(era, &db, false);
    let before = rows(&Connection::open(&db).unwrap());

    let note = env.write("inbox/note.md", "# A note\n");
    let out = env.run(&["add", note.to_str().unwrap()]);
    assert!(out.status.success(), "add: {}", stderr(&out));

    let conn = Connection::open(&db).unwrap();
    let after = rows(&conn);
    assert_eq!(master(&conn), fresh_master(), "physical schema");
    assert_eq!(
        after["documents"][..4],
        before["documents"][..],
        "documents"
    );
    assert_eq!(after["documents"].len(), 5);
    assert_eq!(
        after["documents"][4]["position"],
        Value::Integer(10),
        "next position"
    );
    assert_eq!(after["log"][..4], before["log"][..], "log rows");
    let new_ids: Vec<&Value> = after["log"][4..].iter().map(|r| &r["id"]).collect();
    assert_eq!(
        new_ids.first(),
        Some(&&Value::Integer(8)),
        "log ids continue"
    );

    let out = env.run(&["log", "--all", "--json"]);
    assert!(out.status.success(), "log: {}", stderr(&out));
    let log = stdout(&out);
    for description in ["old.md", "a.md", "note"] {
        assert!(log.contains(description), "{description} in {log}");
    }
}

/// After a binary upgrade, reading commands bring an older schema up to date (saying so once)
/// instead of refusing it until something writes; `doctor` without `--fix` only reports it.
#[test]
fn reading_commands_upgrade_an_older_schema_once_and_doctor_only_reports_it() {
    let env = Env::with_kb();
    let db = env.kb().join(".openkb/state.db");
    remove_state_db(&env);
    let era = eras()
        .into_iter()
        .find(|e| e.old_statements.is_none() && e.version == 4)
        .unwrap();
    build(&era, &db, false);
    let version = |db: &Path| schema::user_version(&Connection::open(db).unwrap()).unwrap();

    let out = env.run(&["doctor"]);
    assert_eq!(version(&db), 4, "doctor without --fix: {}", stderr(&out));

    let out = env.run(&["list", "--json"]);
    assert!(out.status.success(), "list: {}", stderr(&out));
    let upgraded = format!("from schema 4 to {}", schema::latest_version());
    assert!(stderr(&out).contains(&upgraded), "{}", stderr(&out));
    assert!(stdout(&out).contains("a.md"), "{}", stdout(&out));
    assert_eq!(version(&db), schema::latest_version());

    for args in [&["status"][..], &["log", "--all"][..], &["list"][..]] {
        let out = env.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("upgraded"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

/// `(major, minor)` of a `rust-version` such as "1.95" or "1.89.0".
fn rust_version(text: &str) -> (u64, u64) {
    let mut parts = text.split('.').map(|p| p.parse::<u64>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap_or(0))
}

#[test]
fn rust_version_is_the_oldest_rust_that_builds_the_locked_dependencies() {
    // The crate's own floor: `if let ... &&` chains (stable in 1.88, edition 2024).
    const OWN_FLOOR: (u64, u64) = (1, 88);
    let out = std::process::Command::new(env!("CARGO"))
        // Not --offline: metadata needs every locked package, also those of other targets
        // (r-efi for UEFI) that a build on this machine never downloaded.
        .args(["metadata", "--format-version", "1", "--locked"])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo metadata: {}", stderr(&out));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut declared = None;
    let mut needed = (OWN_FLOOR, "openkb itself".to_owned());
    for package in metadata["packages"].as_array().unwrap() {
        let Some(version) = package["rust_version"].as_str() else {
            continue;
        };
        let name = package["name"].as_str().unwrap();
        if name == "openkb" {
            declared = Some(rust_version(version));
        } else if rust_version(version) > needed.0 {
            needed = (
                rust_version(version),
                format!("{name} {}", package["version"]),
            );
        }
    }
    let ((major, minor), why) = needed;
    assert_eq!(
        declared,
        Some((major, minor)),
        "Cargo.toml's rust-version must be {major}.{minor} (needed by {why}): the oldest Rust \
         that builds this crate with Cargo.lock"
    );
}
