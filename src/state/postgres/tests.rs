//! Tests of what is PostgreSQL's own in this backend (the schema per KB, its version and
//! identity, fencing, the lock session, unreachable servers), against a real server started
//! by the test harness. What both backends promise is the conformance suite's.

use std::str::FromStr;
use std::sync::{Arc, Barrier};

use super::*;
use crate::config::KbId;
use crate::state::Document;

use crate::test_pg_server as pg_server;

fn server_config() -> StateServer {
    StateServer::plain(Config::from_str(&pg_server::server().url()).unwrap())
}

fn fresh_kb() -> KbId {
    KbId::new_random().unwrap()
}

fn psql(sql: &str) -> String {
    pg_server::server().psql(sql)
}

fn doc(n: u8) -> Document {
    let mut doc = Document::new(format!("{n:02x}").repeat(32));
    doc.name = Some(format!("doc{n}.md"));
    doc.doc_name = Some(format!("doc{n}"));
    doc
}

#[test]
fn open_creates_the_kbs_schema_with_its_identity_and_version() {
    let kb = fresh_kb();
    let store = PgStore::open(&server_config(), &kb, Create::IfMissing).unwrap();
    assert_eq!(store.schema_version(), schema::latest_version());
    let schema = kb.schema_name();
    assert_eq!(store.schema_name(), schema);
    let meta = psql(&format!(
        "SELECT key || '=' || value FROM {schema}.meta
         WHERE key IN ('schema_version', 'kb_id', 'lock_epoch') ORDER BY key"
    ));
    assert_eq!(
        meta,
        format!(
            "kb_id={}\nlock_epoch=0\nschema_version={}",
            kb.as_str(),
            schema::latest_version()
        )
    );
    // A second open finds it current and changes nothing.
    let again = PgStore::open(&server_config(), &kb, Create::Never).unwrap();
    assert_eq!(again.schema_version(), schema::latest_version());
}

#[test]
fn open_without_create_refuses_a_kb_the_database_does_not_hold() {
    let kb = fresh_kb();
    let err = PgStore::open(&server_config(), &kb, Create::Never).unwrap_err();
    assert!(matches!(err, Error::StateMissing { .. }), "{err:?}");
    assert!(err.to_string().contains(&kb.schema_name()), "{err}");
    assert_eq!(err.exit_code(), crate::error::exit::NO_KB);
    let schemas = psql(&format!(
        "SELECT count(*) FROM pg_namespace WHERE nspname = '{}'",
        kb.schema_name()
    ));
    assert_eq!(schemas, "0", "nothing was created");
}

#[test]
fn a_schema_whose_meta_names_another_kb_is_refused() {
    let kb = fresh_kb();
    drop(PgStore::open(&server_config(), &kb, Create::IfMissing).unwrap());
    let other = fresh_kb();
    psql(&format!(
        "UPDATE {}.meta SET value = '{}' WHERE key = 'kb_id'",
        kb.schema_name(),
        other.as_str()
    ));
    let err = PgStore::open(&server_config(), &kb, Create::Never).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(other.as_str()) && text.contains(kb.as_str()),
        "{text}"
    );
}

#[test]
fn a_newer_schema_is_read_but_never_written() {
    let kb = fresh_kb();
    let store = PgStore::open(&server_config(), &kb, Create::IfMissing).unwrap();
    store
        .write(None, |tx| rows::upsert_document(tx, &doc(1), &utc()))
        .unwrap();
    drop(store);
    let newer = schema::latest_version() + 1;
    let schema = kb.schema_name();
    psql(&format!(
        "UPDATE {schema}.meta SET value = '{newer}' WHERE key = 'schema_version'"
    ));
    let store = PgStore::open(&server_config(), &kb, Create::Never).unwrap();
    assert!(store.is_too_new());
    assert_eq!(store.schema_version(), newer);
    let reader = store.reader().unwrap();
    assert_eq!(rows::list(&reader).unwrap().len(), 1);
    let err = store
        .write(None, |tx| rows::upsert_document(tx, &doc(2), &utc()))
        .unwrap_err();
    assert!(
        matches!(err, Error::SchemaTooNew { found, .. } if found == newer),
        "{err:?}"
    );
    assert_eq!(
        psql(&format!("SELECT count(*) FROM {schema}.documents")),
        "1"
    );
    assert_eq!(
        psql(&format!(
            "SELECT value FROM {schema}.meta WHERE key = 'schema_version'"
        )),
        newer.to_string()
    );
}

#[test]
fn concurrent_creators_of_one_kb_make_one_schema() {
    let kb = fresh_kb();
    let start = Arc::new(Barrier::new(4));
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let (kb, start) = (kb.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                PgStore::open(&server_config(), &kb, Create::IfMissing).map(|s| s.schema_version())
            })
        })
        .collect();
    for opener in openers {
        assert_eq!(opener.join().unwrap().unwrap(), schema::latest_version());
    }
    let schema = kb.schema_name();
    assert_eq!(
        psql(&format!("SELECT count(*) FROM {schema}.document_counts")),
        "3",
        "the migration ran once"
    );
}

fn utc() -> String {
    crate::state::utc_now()
}

#[test]
fn a_write_carrying_an_old_lock_epoch_is_fenced_and_commits_nothing() {
    let kb = fresh_kb();
    let store = PgStore::open(&server_config(), &kb, Create::IfMissing).unwrap();
    let mut first = store.session().unwrap();
    let old = first.advance_lock_epoch().unwrap();
    assert_eq!(old, Fence { epoch: 1 });
    store
        .write_on(&mut first, Some(old), |tx| {
            rows::upsert_document(tx, &doc(1), &utc())
        })
        .unwrap();
    // Another holder takes the lock after this one's session was given up for dead.
    let mut second = store.session().unwrap();
    assert_eq!(second.advance_lock_epoch().unwrap(), Fence { epoch: 2 });
    let mut ran = false;
    let err = store
        .write_on(&mut first, Some(old), |tx| {
            ran = true;
            rows::upsert_document(tx, &doc(2), &utc())
        })
        .unwrap_err();
    assert!(matches!(err, Error::Fenced { epoch: 1, .. }), "{err:?}");
    assert_eq!(err.exit_code(), crate::error::exit::STATE_SERVER);
    assert!(!ran, "a fenced write stops before its body");
    let listed = rows::list(&store.reader().unwrap()).unwrap();
    assert_eq!(listed.len(), 1);
}

#[test]
fn a_write_on_a_terminated_session_is_unreachable_and_commits_nothing() {
    let kb = fresh_kb();
    let store = PgStore::open(&server_config(), &kb, Create::IfMissing).unwrap();
    let mut session = store.session().unwrap();
    let fence = session.advance_lock_epoch().unwrap();
    let pid = session.backend_pid().unwrap();
    let ended = pg_server::server().terminate_backends(&format!("pid = {pid}"));
    assert_eq!(ended, 1);
    let err = store
        .write_on(&mut session, Some(fence), |tx| {
            rows::upsert_document(tx, &doc(1), &utc())
        })
        .unwrap_err();
    assert!(matches!(err, Error::StateUnreachable { .. }), "{err:?}");
    assert_eq!(err.exit_code(), crate::error::exit::STATE_SERVER);
    assert!(rows::list(&store.reader().unwrap()).unwrap().is_empty());
}

#[test]
fn a_server_that_is_not_there_is_unreachable_with_where_it_was_looked_for() {
    let nowhere = tempfile::tempdir().unwrap();
    let config = Config::from_str(&format!(
        "host={} port=5999 user=openkb",
        nowhere.path().display()
    ))
    .unwrap();
    let err =
        PgStore::open(&StateServer::plain(config), &fresh_kb(), Create::IfMissing).unwrap_err();
    assert!(matches!(err, Error::StateUnreachable { .. }), "{err:?}");
    assert_eq!(err.exit_code(), crate::error::exit::STATE_SERVER);
    let text = err.to_string();
    assert!(
        text.contains(&nowhere.path().display().to_string()),
        "{text}"
    );
    assert!(text.contains("OPENKB_STATE_URL"), "{text}");
}

#[test]
fn advisory_locks_exclude_and_a_bounded_wait_ends_busy() {
    let kb = fresh_kb();
    let store = PgStore::open(&server_config(), &kb, Create::IfMissing).unwrap();
    let key = kb_lock_key(&kb);
    const CLASS: i32 = 7;
    let (mut a, mut b) = (store.session().unwrap(), store.session().unwrap());
    assert!(a.try_advisory_lock(LockMode::Shared, CLASS, key).unwrap());
    assert!(b.try_advisory_lock(LockMode::Shared, CLASS, key).unwrap());
    assert!(b.advisory_unlock(LockMode::Shared, CLASS, key).unwrap());
    assert!(
        !b.try_advisory_lock(LockMode::Exclusive, CLASS, key)
            .unwrap()
    );
    let err = b
        .advisory_lock(
            LockMode::Exclusive,
            CLASS,
            key,
            Some(Duration::from_millis(50)),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err:?}");
    let holders = b.lock_holders(CLASS, key).unwrap();
    assert_eq!(holders, [application_name()]);
    assert!(a.advisory_unlock(LockMode::Shared, CLASS, key).unwrap());
    b.advisory_lock(
        LockMode::Exclusive,
        CLASS,
        key,
        Some(Duration::from_secs(5)),
    )
    .unwrap();
    assert!(!a.try_advisory_lock(LockMode::Shared, CLASS, key).unwrap());
    // The session's lock_timeout is back to "no limit" after a bounded wait.
    assert_eq!(
        a.conn
            .client
            .query_one("SHOW lock_timeout", &[])
            .unwrap()
            .get::<_, String>(0),
        "0"
    );
}

#[test]
fn kb_lock_keys_are_stable_and_differ_between_kbs() {
    let kb = KbId::parse("5b0c2c1e-8d3f-4a6b-9c2d-0e1f2a3b4c5d").unwrap();
    assert_eq!(kb_lock_key(&kb), kb_lock_key(&kb.clone()));
    assert_ne!(kb_lock_key(&kb), kb_lock_key(&fresh_kb()));
}

/// A fresh KB id, so a fresh schema, for each test of the conformance suite.
struct FreshSchema {
    kb: KbId,
}

impl FreshSchema {
    fn new() -> FreshSchema {
        FreshSchema { kb: fresh_kb() }
    }
}

impl crate::state::conformance::Harness for FreshSchema {
    fn open(&self) -> crate::state::Store {
        let store = PgStore::open(&server_config(), &self.kb, Create::IfMissing).unwrap();
        crate::state::Store::from_backend(Box::new(store))
    }

    fn open_impatient(&self) -> crate::state::Store {
        let store = PgStore::open(&server_config(), &self.kb, Create::IfMissing)
            .unwrap()
            .with_busy_timeout(Duration::from_millis(50));
        crate::state::Store::from_backend(Box::new(store))
    }
}

mod conformance {
    crate::state::conformance::storage_tests!(super::FreshSchema::new());
}
