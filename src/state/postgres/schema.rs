//! The PostgreSQL schema of one KB: its name, its append-only migration list, and the runner
//! that creates or upgrades it.
//!
//! Every KB lives in its own schema, `openkb_<kb_id as 32 hex digits>`, so many KBs share one
//! database and one role. The schema's `meta` table holds `schema_version` (how many of
//! [`MIGRATIONS`] were applied), `kb_id` (checked on every open, so a config pointing at
//! another KB's schema is refused) and `lock_epoch` (the fencing token).
//!
//! Rules, the same as SQLite's list (`state/schema.rs`): never remove or edit a shipped
//! migration (the checksum test fails if a file changes); each runs in the transaction that
//! bumps `schema_version`, so a crash leaves the old version or the new one; a transaction-level
//! advisory lock on the KB's migration key makes two processes creating or upgrading the same
//! KB at once apply each migration once. A schema newer than this binary is never touched.

use postgres::GenericClient;

use crate::config::KbId;

/// One step of the list: a SQL file run as one batch with the KB's schema as search_path.
pub struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[Migration {
    name: "0001_initial",
    sql: include_str!("migrations/0001_initial.sql"),
}];

/// The tables the migrations make (for maintenance that visits each).
pub const TABLES: &[&str] = &[
    "meta",
    "documents",
    "document_counts",
    "log",
    "intents",
    "imports",
    "python_handovers",
    "python_base",
    "untrusted_entries",
];

/// The schema version this binary writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Class id of the transaction-level advisory lock that serialises schema creation and upgrades
/// of one KB ("OKBm"). It differs from the KB lock's class, so a process holding the KB lock
/// on its lock connection can still upgrade the schema on another connection.
const MIGRATION_LOCK_CLASS: i32 = 0x4F4B_426D;

/// Outcome of looking at a KB's schema.
#[derive(Debug, PartialEq, Eq)]
pub enum Version {
    /// No schema (or no `meta` in it): the KB has no state in this database.
    Missing,
    Current,
    /// Newer than this binary: readable, never written.
    TooNew(i64),
    /// Older: [`migrate`] brings it up to date.
    Behind(i64),
}

/// The KB's schema version as found, without changing anything.
pub fn check(client: &mut impl GenericClient, schema: &str) -> Result<Version, postgres::Error> {
    let has_meta: bool = client
        .query_one(
            "SELECT to_regclass(quote_ident($1) || '.meta') IS NOT NULL",
            &[&schema],
        )?
        .get(0);
    if !has_meta {
        return Ok(Version::Missing);
    }
    let found = stored_version(client, schema)?;
    Ok(match found.cmp(&latest_version()) {
        std::cmp::Ordering::Equal => Version::Current,
        std::cmp::Ordering::Greater => Version::TooNew(found),
        std::cmp::Ordering::Less => Version::Behind(found),
    })
}

fn stored_version(client: &mut impl GenericClient, schema: &str) -> Result<i64, postgres::Error> {
    let row = client.query_opt(
        &format!("SELECT value FROM {schema}.meta WHERE key = 'schema_version'"),
        &[],
    )?;
    // A meta without the row (or with a value that is not a number) was not made by openkb's
    // runner; -1 makes it "behind", and `migrate` refuses it.
    Ok(row
        .and_then(|r| r.get::<_, String>(0).parse::<i64>().ok())
        .unwrap_or(-1))
}

/// Versions before and after [`migrate`]; `from` is `None` when it created the schema.
#[derive(Debug, PartialEq, Eq)]
pub struct Migrated {
    pub from: Option<i64>,
    pub to: i64,
}

/// What [`migrate`] found wrong with a schema, beside server errors.
#[derive(Debug)]
pub enum Refusal {
    /// No state for this KB in the database, and creating it was not allowed.
    Missing,
    /// `schema_version` missing or not a number: not made by openkb.
    Unversioned,
    /// `meta.kb_id` names another KB.
    OtherKb { found: String },
}

/// Create the KB's schema when `create` and it is missing, or apply the migrations it lacks.
/// A schema newer than this binary is left as it is. Runs in one transaction on `client`.
pub fn migrate(
    client: &mut postgres::Client,
    schema: &str,
    kb_id: &KbId,
    now: &str,
    create: bool,
) -> Result<Result<Migrated, Refusal>, postgres::Error> {
    let mut tx = client.transaction()?;
    let outcome = migrate_in(&mut tx, schema, kb_id, now, create)?;
    if outcome.is_ok() {
        tx.commit()?;
    }
    Ok(outcome)
}

/// [`migrate`] inside the caller's transaction, which commits it (with whatever else it
/// writes: a KB moved in is created and filled in one transaction).
pub fn migrate_in(
    tx: &mut postgres::Transaction<'_>,
    schema: &str,
    kb_id: &KbId,
    now: &str,
    create: bool,
) -> Result<Result<Migrated, Refusal>, postgres::Error> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&MIGRATION_LOCK_CLASS, &super::kb_lock_key(kb_id)],
    )?;
    let found = check(tx, schema)?;
    let from = match found {
        Version::Missing if !create => return Ok(Err(Refusal::Missing)),
        Version::Missing => None,
        Version::Current | Version::TooNew(_) => {
            let version = stored_version(tx, schema)?;
            if let Some(refusal) = other_kb(tx, schema, kb_id)? {
                return Ok(Err(refusal));
            }
            return Ok(Ok(Migrated {
                from: Some(version),
                to: version,
            }));
        }
        Version::Behind(found) if found < 1 => return Ok(Err(Refusal::Unversioned)),
        Version::Behind(found) => {
            if let Some(refusal) = other_kb(tx, schema, kb_id)? {
                return Ok(Err(refusal));
            }
            Some(found)
        }
    };
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}; SET LOCAL search_path TO {schema}"
    ))?;
    let first = from.unwrap_or(0) as usize;
    for migration in &MIGRATIONS[first..] {
        tx.batch_execute(migration.sql)?;
    }
    let to = latest_version();
    let set = "INSERT INTO meta (key, value) VALUES ($1, $2)
               ON CONFLICT (key) DO UPDATE SET value = excluded.value";
    let keep = "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";
    tx.execute(set, &[&"schema_version", &to.to_string()])?;
    tx.execute(set, &[&"schema_updated_at", &now])?;
    tx.execute(keep, &[&"kb_id", &kb_id.as_str()])?;
    tx.execute(keep, &[&"lock_epoch", &"0"])?;
    tx.execute(
        keep,
        &[
            &"created_by",
            &concat!("openkb ", env!("CARGO_PKG_VERSION")),
        ],
    )?;
    tx.execute(
        "INSERT INTO meta (key, value)
         VALUES ('database_id', replace(gen_random_uuid()::text, '-', ''))
         ON CONFLICT (key) DO NOTHING",
        &[],
    )?;
    Ok(Ok(Migrated { from, to }))
}

fn other_kb(
    client: &mut impl GenericClient,
    schema: &str,
    kb_id: &KbId,
) -> Result<Option<Refusal>, postgres::Error> {
    let found: Option<String> = client
        .query_opt(
            &format!("SELECT value FROM {schema}.meta WHERE key = 'kb_id'"),
            &[],
        )?
        .map(|r| r.get(0));
    Ok(match found {
        Some(found) if found != kb_id.as_str() => Some(Refusal::OtherKb { found }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped migration, in order, and the SHA-256 of its SQL as shipped.
    const SHIPPED: &[(&str, &str)] = &[(
        "0001_initial",
        "d9c41b44309c5170030874fcfa44ba3cb0d43ea3162419b21bc2db8a275d572e",
    )];

    #[test]
    fn shipped_migrations_are_unchanged_and_numbered_by_position() {
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            assert!(
                migration.name.starts_with(&format!("{:04}_", i + 1)),
                "migration {} sits at position {}",
                migration.name,
                i + 1
            );
        }
        for (i, (name, expected)) in SHIPPED.iter().enumerate() {
            let migration = &MIGRATIONS[i];
            assert_eq!(migration.name, *name, "shipped migrations keep their order");
            assert_eq!(
                crate::hash::sha256_hex(migration.sql.as_bytes()),
                *expected,
                "src/state/postgres/migrations/{name}.sql changed after it shipped: never \
                 edit a shipped migration; add a new one"
            );
        }
    }
}
