//! Schema migrations.
//!
//! The migrations are one append-only list: the `migrations/NNNN_*.sql` files embedded in the
//! binary, and steps written in Rust where SQL cannot say what is needed. `PRAGMA user_version`
//! records how many have been applied. Rules: never remove or edit a shipped migration (the
//! checksum test below fails if a file changes); no destructive changes; each runs in the same
//! `BEGIN IMMEDIATE` transaction as the `user_version` bump, so a crash or an error leaves the
//! database at the old version or the new one, and two processes upgrading at once apply it
//! once.
//!
//! # One physical schema per version
//!
//! 0001 and 0003 were edited after they had shipped, so databases at the same `user_version`
//! were made with different statements. What builds may have left, recognised by what
//! `sqlite_master` holds:
//! - `log` (0001) and `intents` (0003) declared `INTEGER PRIMARY KEY AUTOINCREMENT`, and
//!   `sqlite_sequence` holds a row for each; the current statements declare a plain
//!   `INTEGER PRIMARY KEY` and carry comments the old ones lack.
//! - An index `documents_by_status` (0001), since replaced by the `document_counts` table.
//! - No `imports` table: builds of the time when 0003 was the second migration recorded
//!   `intents` as version 2, and the later list (0002 = imports) skipped 0002 on them.
//!
//! The decision: the one current schema is what the migrations make on an empty database, and
//! [`one_physical_schema`] (migration 0005) brings every database to it by comparing its
//! `sqlite_master` with that of an in-memory database built by the migrations before it. A
//! missing table is created; a table whose `CREATE` statement differs is rebuilt from the
//! current statement with every row copied (ids, positions and order kept, so log ids stay
//! what `wiki/log.md` and users have seen), refused with an error if its columns differ;
//! indexes and triggers of those tables are made exactly the current set. Tables it does not
//! know are left alone. On a database that already has the current shape it changes nothing,
//! so it is cheap and safe on every database, whichever build made it. Comparing against the
//! migrations themselves, rather than against copies of their statements, keeps it right
//! wherever it sits in the list and whatever columns later migrations add.

use std::collections::BTreeMap;

use rusqlite::{Connection, TransactionBehavior};

/// `PRAGMA application_id` of an openkb state database ("OKB1").
pub const APPLICATION_ID: i64 = 0x4F4B_4231;

pub struct Migration {
    pub name: &'static str,
    pub step: Step,
}

#[derive(Clone, Copy)]
pub enum Step {
    /// A `migrations/NNNN_*.sql` file, run as one batch.
    Sql(&'static str),
    /// A change SQL cannot express. It receives the migrations before it (to build the schema
    /// they make). Like a file, a shipped step is never changed: fix it with a new migration.
    Rust(fn(&Connection, &[Migration]) -> rusqlite::Result<()>),
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "0001_initial",
        step: Step::Sql(include_str!("../../../migrations/0001_initial.sql")),
    },
    Migration {
        name: "0002_imports",
        step: Step::Sql(include_str!("../../../migrations/0002_imports.sql")),
    },
    Migration {
        name: "0003_intents",
        step: Step::Sql(include_str!("../../../migrations/0003_intents.sql")),
    },
    Migration {
        name: "0004_document_counts",
        step: Step::Sql(include_str!("../../../migrations/0004_document_counts.sql")),
    },
    Migration {
        name: "0005_one_physical_schema",
        step: Step::Rust(one_physical_schema),
    },
    Migration {
        name: "0006_python_base",
        step: Step::Sql(include_str!("../../../migrations/0006_python_base.sql")),
    },
    Migration {
        name: "0007_untrusted_entries",
        step: Step::Sql(include_str!(
            "../../../migrations/0007_untrusted_entries.sql"
        )),
    },
    Migration {
        name: "0008_intent_hooks",
        step: Step::Sql(include_str!("../../../migrations/0008_intent_hooks.sql")),
    },
    Migration {
        name: "0009_documents_keyed_by_position",
        step: Step::Sql(include_str!(
            "../../../migrations/0009_documents_keyed_by_position.sql"
        )),
    },
    Migration {
        name: "0010_registry_view",
        step: Step::Sql(include_str!("../../../migrations/0010_registry_view.sql")),
    },
];

/// The schema version this binary writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

pub fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

pub fn application_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA application_id", [], |r| r.get(0))
}

/// `meta` key pinning the journal mode of a database used in single-host network mode.
pub const JOURNAL_MODE_META: &str = "journal_mode";
/// The pinned value: SQLite's rollback journal.
pub const JOURNAL_DELETE: &str = "delete";

/// The journal mode pinned in `meta`, if any (a fresh database has no `meta` table yet).
pub fn pinned_journal_mode(conn: &Connection) -> rusqlite::Result<Option<String>> {
    use rusqlite::OptionalExtension;
    let has_meta: bool = conn
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'")?
        .exists([])?;
    if !has_meta {
        return Ok(None);
    }
    conn.query_row(
        "SELECT value FROM meta WHERE key = ?1",
        [JOURNAL_MODE_META],
        |r| r.get(0),
    )
    .optional()
}

pub fn pin_journal_mode(conn: &Connection, mode: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [JOURNAL_MODE_META, mode],
    )
    .map(drop)
}

/// Outcome of checking a database's version against this binary.
#[derive(Debug, PartialEq, Eq)]
pub enum Version {
    Current,
    /// Newer than this binary: readable, never written.
    TooNew(i64),
    /// Older (or new): `migrate` brings it up to date.
    Behind(i64),
}

pub fn check(conn: &Connection) -> rusqlite::Result<Version> {
    let found = user_version(conn)?;
    Ok(match found.cmp(&latest_version()) {
        std::cmp::Ordering::Equal => Version::Current,
        std::cmp::Ordering::Greater => Version::TooNew(found),
        std::cmp::Ordering::Less => Version::Behind(found),
    })
}

/// Apply the missing migrations. Returns the version reached. Re-checks the version inside the
/// write transaction, so a concurrent upgrade by another process is not applied twice.
pub fn migrate(conn: &mut Connection, now: &str) -> rusqlite::Result<i64> {
    migrate_with(conn, MIGRATIONS, now)
}

fn migrate_with(
    conn: &mut Connection,
    migrations: &[Migration],
    now: &str,
) -> rusqlite::Result<i64> {
    // A table is reshaped the way SQLite documents (create the new table, copy the rows, drop
    // the old one, rename), which must run with foreign key enforcement off: dropping a parent
    // table would otherwise delete its children's rows (ON DELETE CASCADE). The pragma does
    // nothing inside a transaction, so it is switched around it, and `foreign_key_check`
    // proves the result consistent before the commit.
    let enforced: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    if enforced {
        conn.execute_batch("PRAGMA foreign_keys = OFF")?;
    }
    let migrated = migrate_in_transaction(conn, migrations, now);
    if enforced {
        conn.execute_batch("PRAGMA foreign_keys = ON")?;
    }
    migrated
}

fn migrate_in_transaction(
    conn: &mut Connection,
    migrations: &[Migration],
    now: &str,
) -> rusqlite::Result<i64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let from = user_version(&tx)?;
    let to = migrations.len() as i64;
    if from >= to {
        tx.commit()?;
        return Ok(from);
    }
    let Ok(first_missing) = usize::try_from(from) else {
        return Err(failure(format!(
            "user_version is {from}, which no openkb writes: the database was changed by \
             another program; run `openkb doctor`"
        )));
    };
    if from == 0 {
        tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))?;
    }
    // Rows a hand edit left dangling before are not this upgrade's to judge (doctor --full
    // reports them); rows the upgrade itself would leave dangling stop it.
    let dangling_before = dangling_rows(&tx)?;
    apply(&tx, migrations, first_missing)?;
    let dangling_after = dangling_rows(&tx)?;
    if dangling_after > dangling_before {
        return Err(failure(format!(
            "the schema upgrade would leave {} row(s) pointing at rows that do not exist; \
             nothing was changed",
            dangling_after - dangling_before
        )));
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_updated_at', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [now],
    )?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('created_by', ?1) ON CONFLICT(key) DO NOTHING",
        [concat!("openkb ", env!("CARGO_PKG_VERSION"))],
    )?;
    // The database's identity (see `session.rs`), given when it is created or upgraded; a
    // current database made before ids existed gets one from its first write session.
    tx.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('database_id', lower(hex(randomblob(16))))",
        [],
    )?;
    tx.execute_batch(&format!("PRAGMA user_version = {to}"))?;
    tx.commit()?;
    Ok(to)
}

/// Rows whose foreign key names no row (what `PRAGMA foreign_key_check` lists).
fn dangling_rows(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
        r.get(0)
    })
}

/// Run `migrations[first..]` on `conn`, inside the caller's transaction.
fn apply(conn: &Connection, migrations: &[Migration], first: usize) -> rusqlite::Result<()> {
    for (index, migration) in migrations.iter().enumerate().skip(first) {
        match migration.step {
            Step::Sql(sql) => conn.execute_batch(sql)?,
            Step::Rust(step) => step(conn, &migrations[..index])?,
        }
    }
    Ok(())
}

/// An error of this module's own finding, reported like SQLite's.
fn failure(message: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
        Some(message),
    )
}

/// One `sqlite_master` entry with a `CREATE` statement (not SQLite's own tables, nor the
/// implicit indexes of `PRIMARY KEY` and `UNIQUE`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct SchemaObject {
    kind: String,
    name: String,
    table: String,
    sql: String,
}

/// The schema of `conn`, by object name.
fn schema_objects(conn: &Connection) -> rusqlite::Result<BTreeMap<String, SchemaObject>> {
    let mut stmt = conn.prepare(
        "SELECT type, name, tbl_name, sql FROM sqlite_master
         WHERE sql IS NOT NULL AND substr(name, 1, 7) <> 'sqlite_'",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(SchemaObject {
            kind: r.get(0)?,
            name: r.get(1)?,
            table: r.get(2)?,
            sql: r.get(3)?,
        })
    })?;
    rows.map(|object| object.map(|o| (o.name.clone(), o)))
        .collect()
}

/// The schema `migrations` make on an empty database.
fn reference_schema(migrations: &[Migration]) -> rusqlite::Result<BTreeMap<String, SchemaObject>> {
    let conn = Connection::open_in_memory()?;
    apply(&conn, migrations, 0)?;
    schema_objects(&conn)
}

/// Migration 0005: bring a database made by any earlier build to the one physical schema the
/// migrations before this one make today (see the module documentation).
fn one_physical_schema(conn: &Connection, earlier: &[Migration]) -> rusqlite::Result<()> {
    let reference = reference_schema(earlier)?;
    let found = schema_objects(conn)?;
    let tables = reference.values().filter(|o| o.kind == "table");
    for table in tables {
        match found.get(&table.name) {
            None => conn.execute_batch(&table.sql)?,
            Some(object) if object.sql != table.sql => rebuild_table(conn, table)?,
            Some(_) => {}
        }
    }
    let is_reference_table = |name: &str| reference.get(name).is_some_and(|o| o.kind == "table");
    for object in schema_objects(conn)?.values() {
        let derived = object.kind == "index" || object.kind == "trigger";
        if derived
            && is_reference_table(&object.table)
            && reference.get(&object.name) != Some(object)
        {
            let kind = object.kind.to_uppercase();
            conn.execute_batch(&format!("DROP {kind} {}", quoted(&object.name)))?;
        }
    }
    let present = schema_objects(conn)?;
    for object in reference.values() {
        if object.kind != "table" && !present.contains_key(&object.name) {
            conn.execute_batch(&object.sql)?;
        }
    }
    Ok(())
}

/// Re-create `table` from its current statement with every row, every column copied (an
/// `INTEGER PRIMARY KEY` is the rowid, so log and intent ids are kept). The old table is
/// renamed aside first, so the new one is created under its own name and its stored
/// `CREATE` statement is byte-equal to a fresh database's. Its indexes and triggers go with
/// the old table; the caller re-creates them.
fn rebuild_table(conn: &Connection, table: &SchemaObject) -> rusqlite::Result<()> {
    let aside = format!("{}_before_0005", table.name);
    // Legacy renaming leaves other tables' triggers naming this table as they are: after the
    // rebuild the name means the new table again.
    let legacy: bool = conn.query_row("PRAGMA legacy_alter_table", [], |r| r.get(0))?;
    conn.execute_batch(&format!(
        "PRAGMA legacy_alter_table = ON; ALTER TABLE {} RENAME TO {};
         PRAGMA legacy_alter_table = {};",
        quoted(&table.name),
        quoted(&aside),
        if legacy { "ON" } else { "OFF" },
    ))?;
    conn.execute_batch(&table.sql)?;
    let old_columns = column_names(conn, &aside)?;
    let new_columns = column_names(conn, &table.name)?;
    if old_columns != new_columns {
        return Err(failure(format!(
            "table {} has the columns ({}) where openkb expects ({}): the database was changed \
             by another program; run `openkb doctor`",
            table.name,
            old_columns.join(", "),
            new_columns.join(", "),
        )));
    }
    let columns = new_columns
        .iter()
        .map(|c| quoted(c))
        .collect::<Vec<_>>()
        .join(", ");
    conn.execute_batch(&format!(
        "INSERT INTO {table} ({columns}) SELECT {columns} FROM {aside}; DROP TABLE {aside};",
        table = quoted(&table.name),
        aside = quoted(&aside),
    ))
}

fn column_names(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    conn.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?
        .query_map([table], |r| r.get(0))?
        .collect()
}

/// `name` as an SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;

    /// Every shipped migration, in order, and the SHA-256 of its SQL file as shipped (`None`
    /// for a migration written in Rust, whose code is covered by its own tests).
    const SHIPPED: &[(&str, Option<&str>)] = &[
        (
            "0001_initial",
            Some("ca40b1925773519e36a237927a14ff487c19f4c100b1c2cd9484673928044521"),
        ),
        (
            "0002_imports",
            Some("8924a16c70d5db7fbe3dcf0f607d02ec3fc0bc098fa7156e4b2df96590bcf724"),
        ),
        (
            "0003_intents",
            Some("afd7c2c28c5246a71cf8b7ece9d4b76ee362f2f5c8243fa9cf54e1a51ebfc9b7"),
        ),
        (
            "0004_document_counts",
            Some("d54714a484aa57fb46475cadec6d652ec2c3c930866d9e42e07833b66bf81568"),
        ),
        ("0005_one_physical_schema", None),
        (
            "0006_python_base",
            Some("9a687175ea1f6bcae862695315281ad6b0bc08eadcaca50b691ae1bdcaee522a"),
        ),
        (
            "0007_untrusted_entries",
            Some("919c4552223c87fb181a5c8e6d012becd53f586c4a0c7d296f1646719039b456"),
        ),
        (
            "0008_intent_hooks",
            Some("492e33c22256a8c0ac966a84e726811a966000eef66c2d829a4864b029af85ff"),
        ),
        (
            "0009_documents_keyed_by_position",
            Some("88322883c5ca13df56aae73a7fc1d27d27eec262d88d19f4e900ce211c894c4e"),
        ),
        (
            "0010_registry_view",
            Some("79c805ece3c465a17ecac169eba283f8f201e1089c76729142429800de8ff58a"),
        ),
    ];

    #[test]
    fn shipped_migrations_are_unchanged() {
        for (name, expected) in SHIPPED {
            let migration = MIGRATIONS
                .iter()
                .find(|m| m.name == *name)
                .unwrap_or_else(|| panic!("shipped migration {name} is gone from MIGRATIONS"));
            let Some(expected) = expected else {
                continue;
            };
            let Step::Sql(sql) = migration.step else {
                panic!("shipped migration {name} is no longer its SQL file");
            };
            let found = crate::hash::sha256_hex(sql.as_bytes());
            assert_eq!(
                &found, expected,
                "migrations/{name}.sql changed after it shipped: never edit a shipped \
                 migration; add a new one (databases that ran the old text keep its schema)"
            );
        }
    }

    #[test]
    fn migration_numbers_are_their_positions() {
        // `user_version` counts applied migrations, so the number in a name is its place in
        // the list; a gap or a duplicate would make the file names lie about the version.
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            assert!(
                migration.name.starts_with(&format!("{:04}_", i + 1)),
                "migration {} sits at position {}",
                migration.name,
                i + 1
            );
        }
    }

    #[test]
    fn migrations_keep_their_shipped_order() {
        let names: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        let shipped: Vec<&str> = SHIPPED.iter().map(|(name, _)| *name).collect();
        assert_eq!(names[..shipped.len()], shipped[..]);
    }

    fn fresh() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, "2026-01-01T00:00:00.000Z").unwrap();
        conn
    }

    /// Everything that identifies the physical schema, including where each b-tree lives (a
    /// rebuilt table or index gets a new root page).
    fn physical(conn: &Connection) -> Vec<(String, String, i64, Option<String>)> {
        conn.prepare("SELECT type, name, rootpage, sql FROM sqlite_master ORDER BY name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    fn meta(conn: &Connection) -> Vec<(String, String)> {
        conn.prepare("SELECT key, value FROM meta ORDER BY key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// A database at 0008 holding a document, its legacy columns and an untrusted mark.
    fn at_0008_with_a_marked_legacy_document(conn: &mut Connection) {
        migrate_with(conn, &MIGRATIONS[..8], "2026-01-01T00:00:00.000Z").unwrap();
        let hash = "a".repeat(64);
        conn.execute_batch(&format!(
            "INSERT INTO documents (hash, position, name, extra, key_order, name_key, status,
                 created_at, updated_at)
             VALUES ('{hash}', 3, 'x.md', '{{\"tags\":[1]}}', '[\"name\",\"tags\"]', 'x',
                 'compiled', 't', 't');
             INSERT INTO untrusted_entries (hash, reason) VALUES ('{hash}', 'outside the KB');"
        ))
        .unwrap();
    }

    #[test]
    fn reshaping_documents_keeps_children_even_with_foreign_keys_enforced() {
        let mut conn = Connection::open_in_memory().unwrap();
        at_0008_with_a_marked_legacy_document(&mut conn);
        // As `build_database` opens its connection: a dropped parent table would cascade.
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        migrate(&mut conn, "2026-02-01T00:00:00.000Z").unwrap();
        let enforced: bool = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert!(enforced, "the caller's setting is restored");
        let marked: Vec<(i64, String, String)> = conn
            .prepare(
                "SELECT d.position, d.name, u.reason FROM untrusted_entries u
                 JOIN documents d ON d.hash = u.hash",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            marked,
            [(3, "x.md".to_owned(), "outside the KB".to_owned())]
        );
        let legacy: (String, String) = conn
            .query_row("SELECT extra, key_order FROM document_legacy", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(
            legacy,
            (r#"{"tags":[1]}"#.into(), r#"["name","tags"]"#.into())
        );
        // The children still follow their document.
        conn.execute("DELETE FROM documents", []).unwrap();
        for child in ["untrusted_entries", "document_legacy"] {
            let n: i64 = conn
                .query_row(&format!("SELECT count(*) FROM {child}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0, "{child}");
        }
    }

    #[test]
    fn an_upgrade_that_would_leave_dangling_rows_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        let broken = [
            Migration {
                name: MIGRATIONS[0].name,
                step: MIGRATIONS[0].step,
            },
            Migration {
                name: "0002_dangling",
                step: Step::Sql(
                    "CREATE TABLE child (parent TEXT NOT NULL REFERENCES documents (hash));
                     INSERT INTO child VALUES ('no such document');",
                ),
            },
        ];
        let err = migrate_with(&mut conn, &broken, "now")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1 row(s) pointing at rows that do not exist"),
            "{err}"
        );
        assert_eq!(user_version(&conn).unwrap(), 0);
        assert!(schema_objects(&conn).unwrap().is_empty(), "nothing applied");
    }

    #[test]
    fn the_registry_view_lists_documents_in_order_and_cannot_be_written() {
        let mut conn = Connection::open_in_memory().unwrap();
        at_0008_with_a_marked_legacy_document(&mut conn);
        migrate(&mut conn, "2026-02-01T00:00:00.000Z").unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO documents (hash, doc_name, name_key, status, created_at, updated_at)
             VALUES ('{}', 'b', 'b', 'pending', 't', 't')",
            "b".repeat(64)
        ))
        .unwrap();
        let rows: Vec<(i64, Option<String>, String, Option<String>)> = conn
            .prepare("SELECT position, doc_name, status, untrusted FROM registry")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (3, None, "compiled".into(), Some("outside the KB".into())),
                (4, Some("b".into()), "pending".into(), None),
            ]
        );
        assert!(conn.execute("DELETE FROM registry", []).is_err());
        assert!(
            conn.execute("UPDATE registry SET status = 'failed'", [])
                .is_err()
        );
    }

    #[test]
    fn too_new_database_is_reported_and_left_untouched() {
        let mut conn = fresh();
        let newer = latest_version() + 1;
        conn.execute_batch(&format!("PRAGMA user_version = {newer}"))
            .unwrap();
        let (schema_before, meta_before) = (physical(&conn), meta(&conn));
        assert_eq!(check(&conn).unwrap(), Version::TooNew(newer));
        assert_eq!(
            migrate(&mut conn, "2030-01-01T00:00:00.000Z").unwrap(),
            newer
        );
        assert_eq!(user_version(&conn).unwrap(), newer);
        assert_eq!(physical(&conn), schema_before);
        assert_eq!(meta(&conn), meta_before);
    }

    #[test]
    fn negative_user_version_is_an_error_not_a_panic() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA user_version = -3").unwrap();
        assert_eq!(check(&conn).unwrap(), Version::Behind(-3));
        let err = migrate(&mut conn, "now").unwrap_err().to_string();
        assert!(err.contains("user_version is -3"), "{err}");
        assert_eq!(user_version(&conn).unwrap(), -3);
        assert!(schema_objects(&conn).unwrap().is_empty());
    }

    /// Migrations whose every application leaves a row, so applying one twice shows.
    const COUNTED: &[Migration] = &[
        Migration {
            name: "first",
            step: Step::Sql(
                "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                 CREATE TABLE applied (name TEXT NOT NULL);
                 INSERT INTO applied VALUES ('first');",
            ),
        },
        Migration {
            name: "second",
            step: Step::Sql("INSERT INTO applied VALUES ('second');"),
        },
    ];

    fn applied(conn: &Connection) -> Vec<String> {
        conn.prepare("SELECT name FROM applied ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    fn open_file(path: &std::path::Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(60))
            .unwrap();
        conn
    }

    #[test]
    fn concurrent_upgrades_apply_each_migration_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        open_file(&path)
            .execute_batch("PRAGMA journal_mode = WAL")
            .unwrap();
        let start = Arc::new(Barrier::new(4));
        let upgraders: Vec<_> = (0..4)
            .map(|_| {
                let (path, start) = (path.clone(), Arc::clone(&start));
                std::thread::spawn(move || {
                    let mut conn = open_file(&path);
                    start.wait();
                    migrate_with(&mut conn, COUNTED, "now")
                })
            })
            .collect();
        for upgrader in upgraders {
            assert_eq!(upgrader.join().unwrap().unwrap(), 2);
        }
        let conn = open_file(&path);
        assert_eq!(applied(&conn), ["first", "second"]);
        assert_eq!(user_version(&conn).unwrap(), 2);
    }

    #[test]
    fn a_failing_migration_leaves_the_old_version_and_nothing_of_the_new_ones() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_with(&mut conn, &COUNTED[..1], "then").unwrap();
        let (schema_before, meta_before) = (physical(&conn), meta(&conn));
        let failing = [
            Migration {
                name: "first",
                step: COUNTED[0].step,
            },
            Migration {
                name: "second",
                step: Step::Sql("CREATE TABLE half (x); INSERT INTO applied VALUES ('second');"),
            },
            Migration {
                name: "third",
                step: Step::Sql("CREATE TABLE other (y); INSERT INTO no_such_table VALUES (1);"),
            },
        ];
        let err = migrate_with(&mut conn, &failing, "now").unwrap_err();
        assert!(err.to_string().contains("no_such_table"), "{err}");
        assert_eq!(user_version(&conn).unwrap(), 1);
        assert_eq!(physical(&conn), schema_before);
        assert_eq!(meta(&conn), meta_before);
        assert_eq!(applied(&conn), ["first"]);
        // The same list succeeds once the fault is gone, from the version that was kept.
        let fixed = [
            Migration {
                name: "first",
                step: COUNTED[0].step,
            },
            Migration {
                name: "second",
                step: COUNTED[1].step,
            },
        ];
        assert_eq!(migrate_with(&mut conn, &fixed, "now").unwrap(), 2);
        assert_eq!(applied(&conn), ["first", "second"]);
    }

    #[test]
    fn fresh_database_has_the_reference_schema_and_one_physical_schema_changes_nothing() {
        let conn = fresh();
        assert_eq!(
            schema_objects(&conn).unwrap(),
            reference_schema(MIGRATIONS).unwrap()
        );
        // 0005 gets the migrations before it, on a database they made: later migrations run
        // after it, and may alter tables it knows (0008 adds columns to `intents`).
        let at = MIGRATIONS
            .iter()
            .position(|m| m.name == "0005_one_physical_schema")
            .unwrap();
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_with(&mut conn, &MIGRATIONS[..=at], "2026-01-01T00:00:00.000Z").unwrap();
        let before = physical(&conn);
        one_physical_schema(&conn, &MIGRATIONS[..at]).unwrap();
        assert_eq!(
            physical(&conn),
            before,
            "nothing rebuilt, dropped or re-created"
        );
    }

    #[test]
    fn a_table_whose_columns_were_changed_by_hand_is_refused_with_its_rows_kept() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_with(&mut conn, &MIGRATIONS[..4], "then").unwrap();
        conn.execute_batch(
            "ALTER TABLE log ADD COLUMN note TEXT;
             INSERT INTO log (timestamp, operation, description, note)
                 VALUES ('2026-01-01 00:00:00', 'add', 'a.md', 'kept');",
        )
        .unwrap();
        let before = physical(&conn);
        let err = migrate(&mut conn, "now").unwrap_err().to_string();
        assert!(err.contains("table log has the columns"), "{err}");
        assert!(err.contains("note"), "{err}");
        assert_eq!(user_version(&conn).unwrap(), 4);
        assert_eq!(physical(&conn), before);
        let note: String = conn
            .query_row("SELECT note FROM log", [], |r| r.get(0))
            .unwrap();
        assert_eq!(note, "kept");
    }

    #[test]
    fn objects_it_does_not_know_are_left_alone() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_with(&mut conn, &MIGRATIONS[..4], "then").unwrap();
        conn.execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT);
             CREATE INDEX notes_by_body ON notes (body);
             INSERT INTO notes (body) VALUES ('mine');",
        )
        .unwrap();
        migrate(&mut conn, "now").unwrap();
        let objects = schema_objects(&conn).unwrap();
        assert!(objects.contains_key("notes") && objects.contains_key("notes_by_body"));
        let body: String = conn
            .query_row("SELECT body FROM notes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(body, "mine");
    }
}
