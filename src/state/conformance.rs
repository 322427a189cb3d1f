//! The storage contract as tests: one suite that every backend runs.
//!
//! `state/backend.rs` says in words what a backend must do; this module says it in code, so
//! two backends cannot drift apart on what "registry order", "upsert" or "busy" means. Each
//! property is a function over a [`Harness`] (a fresh, empty database the test may open as
//! many times as it likes); [`storage_tests!`] turns the list into one `#[test]` per property
//! for a backend:
//!
//! ```ignore
//! #[cfg(test)]
//! mod conformance {
//!     crate::state::conformance::storage_tests!(super::TestDatabase::new());
//! }
//! ```
//!
//! The properties go through [`Store`] and [`WriteTx`](crate::state::WriteTx), the API every
//! caller uses, so the checks `WriteTx` does for all backends (hash shape, `doc_name`
//! ownership) are part of what is tested. The model is taskchampion's `storage_tests!`.

use std::sync::mpsc;

use serde_json::{Map, Value, json};

use super::python_base::Base;
use super::{
    CheckDepth, Document, HookGroup, ImportKind, ImportRecord, IntentFile, IntentOp, Queries,
    Status, Store, WriteAccess,
};
use crate::error::{Error, Result};

/// A fresh database for one test, and the ways to open it.
pub(crate) trait Harness: Sync {
    /// A store on this harness's database (a new handle on each call, as another process
    /// would open it; the database is created empty on first use).
    fn open(&self) -> Store;

    /// Like [`Harness::open`], but the store gives up on a busy database quickly: its
    /// whole retry budget ends in well under a second.
    fn open_impatient(&self) -> Store;
}

/// One `#[test]` per property of the storage contract, each on a fresh harness made by the
/// expression given (evaluated once per test).
macro_rules! storage_tests {
    ($harness:expr) => {
        $crate::state::conformance::storage_tests!(@each $harness;
            registry_order_is_first_registration_and_an_upsert_keeps_its_place,
            upsert_replaces_every_field_and_keeps_created_at,
            a_doc_name_owned_by_another_document_is_refused,
            a_malformed_hash_is_refused,
            lookups_by_hash_path_doc_name_and_name_key,
            find_by_path_returns_the_first_in_registry_order,
            counts_follow_every_kind_of_change,
            set_status_and_remove_report_unknown_hashes,
            bulk_append_goes_after_existing_documents_in_order,
            a_visitor_error_stops_the_scan_unchanged,
            log_tail_filter_count_last_and_order,
            imported_log_entries_keep_their_text_and_have_no_recorded_at,
            intents_record_hook_delete_and_unfinished_order,
            imports_are_recorded_and_listed_oldest_first,
            meta_is_set_replaced_and_a_random_id_is_stable,
            untrusted_marks_follow_their_document,
            python_base_is_the_latest_hand_over,
            a_failed_transaction_leaves_nothing,
            a_transaction_sees_its_own_writes_and_readers_do_not,
            concurrent_writers_lose_nothing,
            a_second_writer_waits_for_the_first,
            a_writer_that_stays_blocked_gets_the_typed_busy_error,
            maintenance_describes_checks_and_rebuilds,
            copies_keep_positions_ids_and_timestamps,
        );
    };
    (@each $harness:expr; $($property:ident),* $(,)?) => {
        $(
            #[test]
            fn $property() {
                let harness = $harness;
                $crate::state::conformance::$property(&harness);
            }
        )*
    };
}
pub(crate) use storage_tests;

/// The hash of test document `n`.
pub(crate) fn hash_of(n: u64) -> String {
    format!("{n:064x}")
}

/// A document as `add` registers one.
pub(crate) fn doc(n: u64, stem: &str) -> Document {
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

fn write<T>(store: &Store, body: impl FnMut(&super::WriteTx<'_>) -> Result<T>) -> Result<T> {
    store.write(&WriteAccess::granted(), body)
}

fn register(store: &Store, docs: &[Document]) {
    write(store, |tx| {
        docs.iter().try_for_each(|d| tx.upsert_document(d))
    })
    .expect("register");
}

fn hashes(store: &Store) -> Vec<String> {
    store
        .list()
        .expect("list")
        .into_iter()
        .map(|d| d.hash)
        .collect()
}

pub(crate) fn registry_order_is_first_registration_and_an_upsert_keeps_its_place(h: &dyn Harness) {
    let store = h.open();
    register(&store, &[doc(3, "c"), doc(1, "a"), doc(2, "b")]);
    assert_eq!(hashes(&store), [hash_of(3), hash_of(1), hash_of(2)]);
    let mut a = doc(1, "a");
    a.status = Status::Compiled;
    register(&store, &[a]);
    assert_eq!(hashes(&store), [hash_of(3), hash_of(1), hash_of(2)]);
    // Remove and register again: to the end, as a Python dict does.
    assert!(write(&store, |tx| tx.remove_document(&hash_of(3))).unwrap());
    register(&store, &[doc(3, "c")]);
    assert_eq!(hashes(&store), [hash_of(1), hash_of(2), hash_of(3)]);
    let positions: Vec<i64> = store.list().unwrap().iter().map(|d| d.position).collect();
    assert!(
        positions.windows(2).all(|p| p[0] < p[1]),
        "positions ascend in registry order: {positions:?}"
    );
    // Every read that returns several documents uses the same order.
    let mut visited = Vec::new();
    store
        .reader()
        .unwrap()
        .for_each_document(&mut |d| {
            visited.push(d.hash);
            Ok(())
        })
        .unwrap();
    assert_eq!(visited, hashes(&store));
}

pub(crate) fn upsert_replaces_every_field_and_keeps_created_at(h: &dyn Harness) {
    let store = h.open();
    register(&store, &[doc(7, "menu")]);
    let first = store.get(&hash_of(7)).unwrap().unwrap();
    assert!(
        first.created_at.ends_with('Z') && first.created_at.contains('T'),
        "ISO-8601 UTC: {}",
        first.created_at
    );
    assert_eq!(first.created_at, first.updated_at);
    let mut changed = Document {
        name: Some("cafe\u{301}-menu.md".into()),
        doc_name: Some("menu-2".into()),
        doc_type: Some("long_pdf".into()),
        path: None,
        raw_path: Some("raw/other.pdf".into()),
        source_path: Some("wiki/sources/menu-2.json".into()),
        doc_id: Some("86fb1ea5".into()),
        origin: Some("cloud".into()),
        pages: Some(12),
        key_order: Some(vec!["type".into(), "name".into()]),
        status: Status::Failed,
        error: Some("exit 1".into()),
        position: 999,
        created_at: "ignored".into(),
        updated_at: "ignored".into(),
        ..Document::new(hash_of(7))
    };
    changed.extra.insert("filename".into(), json!("x.md"));
    // Parsed from text: numbers keep their exact spelling (2.50 stays 2.50).
    let nested: Value = serde_json::from_str(r#"{"a":[1,2.50,null]}"#).unwrap();
    changed.extra.insert("nested".into(), nested);
    register(&store, std::slice::from_ref(&changed));
    let back = store.get(&hash_of(7)).unwrap().unwrap();
    assert_eq!(
        back,
        Document {
            position: first.position,
            created_at: first.created_at.clone(),
            updated_at: back.updated_at.clone(),
            ..changed
        }
    );
    assert_eq!(back.extra["nested"].to_string(), r#"{"a":[1,2.50,null]}"#);
    assert!(back.updated_at >= first.updated_at);
    assert!(
        store.find_by_doc_name("menu").unwrap().is_none(),
        "old name freed"
    );
    assert!(store.find_by_path("inbox/menu.md").unwrap().is_none());
}

pub(crate) fn a_doc_name_owned_by_another_document_is_refused(h: &dyn Harness) {
    let store = h.open();
    register(&store, &[doc(1, "a")]);
    let err = write(&store, |tx| tx.upsert_document(&doc(2, "a"))).unwrap_err();
    assert!(
        matches!(&err, Error::DocNameTaken { owner, .. } if *owner == hash_of(1)),
        "{err}"
    );
    assert!(!store.is_known(&hash_of(2)).unwrap());
    // The same document may keep its own name.
    register(&store, &[doc(1, "a")]);
    // Within one transaction too, and the whole transaction fails.
    let err = write(&store, |tx| {
        tx.upsert_document(&doc(3, "c"))?;
        tx.upsert_document(&doc(4, "c"))
    })
    .unwrap_err();
    assert!(matches!(err, Error::DocNameTaken { .. }), "{err}");
    assert_eq!(hashes(&store), [hash_of(1)]);
}

pub(crate) fn a_malformed_hash_is_refused(h: &dyn Harness) {
    let store = h.open();
    for bad in ["", "ABC", &"A".repeat(64), &"g".repeat(64), &"a".repeat(65)] {
        let err = write(&store, |tx| tx.upsert_document(&Document::new(bad))).unwrap_err();
        assert!(matches!(err, Error::InvalidHash { .. }), "{bad:?}: {err}");
    }
    assert!(store.list().unwrap().is_empty());
}

pub(crate) fn lookups_by_hash_path_doc_name_and_name_key(h: &dyn Harness) {
    let store = h.open();
    // A legacy entry without doc_name owns the stem of its name.
    let legacy = Document {
        name: Some("Report.md".into()),
        doc_type: Some("md".into()),
        ..Document::new(hash_of(10))
    };
    let mut second = doc(12, "report-0d8d1e29");
    second.path = Some("inbox/b/report.md".into());
    second.name = Some("report.md".into());
    register(&store, &[legacy, doc(11, "report"), second]);

    assert!(store.is_known(&hash_of(11)).unwrap());
    assert!(!store.is_known(&hash_of(99)).unwrap());
    assert!(store.get(&hash_of(99)).unwrap().is_none());
    for path in ["inbox/report.md", "raw/report.md", "wiki/sources/report.md"] {
        let found = store.find_by_path(path).unwrap().expect(path);
        assert_eq!(found.hash, hash_of(11), "{path}");
    }
    assert!(
        store.find_by_path("Report.md").unwrap().is_none(),
        "a name is not a path"
    );
    assert!(
        store.find_by_path("INBOX/report.md").unwrap().is_none(),
        "exact bytes"
    );
    let reader = store.reader().unwrap();
    assert_eq!(
        reader.claimants_of_path("raw/report.md").unwrap(),
        [hash_of(11)]
    );
    assert!(reader.claimants_of_path("raw/none.md").unwrap().is_empty());
    assert_eq!(
        store
            .find_by_doc_name("report-0d8d1e29")
            .unwrap()
            .unwrap()
            .hash,
        hash_of(12)
    );
    assert!(
        store.find_by_doc_name("Report").unwrap().is_none(),
        "exact, not a key"
    );
    let owners = |name: &str| -> Vec<String> {
        reader
            .find_by_name_key(name)
            .unwrap()
            .into_iter()
            .map(|d| d.hash)
            .collect()
    };
    assert_eq!(owners("Report"), [hash_of(10)]);
    // NFKC on both sides: full-width letters are the same key.
    assert_eq!(owners("ｒｅｐｏｒｔ"), [hash_of(11)]);
    assert!(owners("nobody").is_empty());
}

pub(crate) fn find_by_path_returns_the_first_in_registry_order(h: &dyn Harness) {
    let store = h.open();
    let mut earlier = doc(2, "y");
    earlier.source_path = Some("shared/p.md".into());
    let mut later = doc(1, "x");
    later.path = Some("shared/p.md".into());
    register(&store, &[earlier, later]);
    assert_eq!(
        store.find_by_path("shared/p.md").unwrap().unwrap().hash,
        hash_of(2)
    );
    assert_eq!(
        store
            .reader()
            .unwrap()
            .claimants_of_path("shared/p.md")
            .unwrap(),
        [hash_of(2), hash_of(1)]
    );
}

pub(crate) fn counts_follow_every_kind_of_change(h: &dyn Harness) {
    let store = h.open();
    let by_scan = |store: &Store| {
        let mut n = [0u64; 3];
        for d in store.list().unwrap() {
            n[Status::ALL.iter().position(|s| *s == d.status).unwrap()] += 1;
        }
        n
    };
    let check = |store: &Store| {
        let c = store.counts().unwrap();
        assert_eq!([c.pending, c.compiled, c.failed], by_scan(store));
        assert_eq!(c.total(), store.list().unwrap().len() as u64);
    };
    check(&store);
    register(
        &store,
        &(0..6).map(|n| doc(n, &format!("d{n}"))).collect::<Vec<_>>(),
    );
    check(&store);
    write(&store, |tx| {
        tx.set_status(&hash_of(0), Status::Compiled, None)?;
        tx.set_status(&hash_of(1), Status::Failed, Some("x"))?;
        tx.set_status(&hash_of(1), Status::Failed, Some("y"))?;
        tx.remove_document(&hash_of(2))
    })
    .unwrap();
    check(&store);
    assert_eq!(
        store.get(&hash_of(1)).unwrap().unwrap().error.as_deref(),
        Some("y")
    );
    // An upsert that changes a registered document's status moves it between counts.
    let mut d3 = doc(3, "d3");
    d3.status = Status::Compiled;
    register(&store, &[d3]);
    check(&store);
    let c = store.counts().unwrap();
    assert_eq!((c.pending, c.compiled, c.failed), (2, 2, 1));
}

pub(crate) fn set_status_and_remove_report_unknown_hashes(h: &dyn Harness) {
    let store = h.open();
    register(&store, &[doc(1, "a")]);
    let (set, removed) = write(&store, |tx| {
        Ok((
            tx.set_status(&hash_of(2), Status::Compiled, None)?,
            tx.remove_document(&hash_of(2))?,
        ))
    })
    .unwrap();
    assert!(!set && !removed);
    assert!(write(&store, |tx| tx.remove_document(&hash_of(1))).unwrap());
    assert!(!write(&store, |tx| tx.remove_document(&hash_of(1))).unwrap());
    assert!(store.get(&hash_of(1)).unwrap().is_none());
    assert_eq!(store.counts().unwrap().total(), 0);
}

pub(crate) fn bulk_append_goes_after_existing_documents_in_order(h: &dyn Harness) {
    let store = h.open();
    register(&store, &[doc(100, "first")]);
    let batch: Vec<Document> = (0..50).rev().map(|n| doc(n, &format!("b{n}"))).collect();
    write(&store, |tx| tx.append_documents(&batch)).unwrap();
    let mut expected = vec![hash_of(100)];
    expected.extend(batch.iter().map(|d| d.hash.clone()));
    assert_eq!(hashes(&store), expected);
    assert_eq!(store.counts().unwrap().pending, 51);
    let stored = store.get(&hash_of(7)).unwrap().unwrap();
    assert_eq!(stored.doc_name.as_deref(), Some("b7"));
    assert_eq!(
        store
            .reader()
            .unwrap()
            .find_by_name_key("b7")
            .unwrap()
            .len(),
        1
    );
}

pub(crate) fn a_visitor_error_stops_the_scan_unchanged(h: &dyn Harness) {
    let store = h.open();
    register(&store, &[doc(1, "a"), doc(2, "b"), doc(3, "c")]);
    write(&store, |tx| {
        tx.append_log("ingest", "a")?;
        tx.append_log("ingest", "b")
    })
    .unwrap();
    let reader = store.reader().unwrap();
    let mut seen = 0;
    let err = reader
        .for_each_document(&mut |_| {
            seen += 1;
            Err(Error::Invalid("visitor says stop".into()))
        })
        .unwrap_err();
    assert_eq!(seen, 1);
    assert!(
        matches!(&err, Error::Invalid(m) if m == "visitor says stop"),
        "{err}"
    );
    let err = reader
        .for_each_log_entry(&mut |_| Err(Error::Usage("stop".into())))
        .unwrap_err();
    assert!(matches!(err, Error::Usage(_)), "{err}");
}

pub(crate) fn log_tail_filter_count_last_and_order(h: &dyn Harness) {
    let store = h.open();
    let reader = store.reader().unwrap();
    assert_eq!(reader.log_count().unwrap(), 0);
    assert!(reader.last_log_of("ingest").unwrap().is_none());
    assert!(store.log_tail(Some(5), None).unwrap().is_empty());
    let written = write(&store, |tx| {
        ["ingest", "query", "ingest", "lint", "ingest"]
            .iter()
            .enumerate()
            .map(|(i, op)| tx.append_log(op, &format!("entry {i}")))
            .collect::<Result<Vec<_>>>()
    })
    .unwrap();
    assert!(written.windows(2).all(|w| w[0].id < w[1].id), "ids ascend");
    assert!(written.iter().all(|e| e.recorded_at.is_some()));
    assert_eq!(written[0].timestamp.len(), "YYYY-MM-DD HH:MM:SS".len());
    let reader = store.reader().unwrap();
    assert_eq!(reader.log_count().unwrap(), 5);
    assert_eq!(
        store.log_tail(None, None).unwrap(),
        written,
        "all, oldest first"
    );
    assert_eq!(store.log_tail(Some(2), None).unwrap(), written[3..]);
    assert_eq!(store.log_tail(Some(0), None).unwrap(), []);
    assert_eq!(
        store.log_tail(Some(2), Some("ingest")).unwrap(),
        [written[2].clone(), written[4].clone()]
    );
    assert_eq!(store.log_tail(None, Some("ingest")).unwrap().len(), 3);
    assert!(store.log_tail(None, Some("nothing")).unwrap().is_empty());
    assert_eq!(
        reader.last_log_of("query").unwrap(),
        Some(written[1].clone())
    );
    let mut all = Vec::new();
    reader
        .for_each_log_entry(&mut |e| {
            all.push(e);
            Ok(())
        })
        .unwrap();
    assert_eq!(all, written);
}

pub(crate) fn imported_log_entries_keep_their_text_and_have_no_recorded_at(h: &dyn Harness) {
    let store = h.open();
    write(&store, |tx| {
        tx.import_log("2024-01-02 03:04:05", "ingest", "old.md")?;
        tx.append_log_entries([
            ("not a time", "query", "line one\nline two"),
            ("2024-01-03 00:00:00", "ingest", "new.md"),
        ])
    })
    .unwrap();
    let log = store.log_tail(None, None).unwrap();
    let rows: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| {
            (
                e.timestamp.as_str(),
                e.operation.as_str(),
                e.description.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("2024-01-02 03:04:05", "ingest", "old.md"),
            ("not a time", "query", "line one\nline two"),
            ("2024-01-03 00:00:00", "ingest", "new.md"),
        ]
    );
    assert!(log.iter().all(|e| e.recorded_at.is_none()));
}

pub(crate) fn intents_record_hook_delete_and_unfinished_order(h: &dyn Harness) {
    let store = h.open();
    let files = vec![
        IntentFile::new("raw/a.md"),
        IntentFile {
            path: "wiki/sources/a.md".into(),
            backup: Some(".openkb/staging/x/a.md".into()),
        },
    ];
    let hook = HookGroup {
        pgid: 4242,
        token: "t-1".into(),
    };
    let (first, second, third) = write(&store, |tx| {
        let first = tx.record_intent(IntentOp::Add, &hash_of(1), Some("a"), &files)?;
        let second = tx.record_intent(IntentOp::Remove, &hash_of(2), None, &[])?;
        let third = tx.record_intent(IntentOp::Compile, &hash_of(3), Some("c"), &[])?;
        tx.record_intent_hook(first, &hook)?;
        Ok((first, second, third))
    })
    .unwrap();
    assert!(first < second && second < third);
    let reader = store.reader().unwrap();
    assert_eq!(reader.unfinished_intent_count().unwrap(), 3);
    let intents = reader.unfinished_intents().unwrap();
    let ids: Vec<i64> = intents.iter().map(|i| i.id).collect();
    assert_eq!(ids, [first, second, third]);
    let add = &intents[0];
    assert_eq!(add.operation, IntentOp::Add);
    assert_eq!(add.hash, hash_of(1));
    assert_eq!(add.doc_name.as_deref(), Some("a"));
    assert_eq!(add.files, files);
    assert_eq!(add.pid, i64::from(std::process::id()));
    assert!(add.started_at.ends_with('Z'));
    assert_eq!(add.hook, Some(hook));
    assert_eq!(intents[1].operation, IntentOp::Remove);
    assert_eq!(intents[1].doc_name, None);
    assert_eq!(intents[1].hook, None);
    assert_eq!(intents[2].operation, IntentOp::Compile);
    let (deleted, again) = write(&store, |tx| {
        Ok((tx.delete_intent(second)?, tx.delete_intent(second)?))
    })
    .unwrap();
    assert!(deleted && !again);
    let reader = store.reader().unwrap();
    assert_eq!(reader.unfinished_intent_count().unwrap(), 2);
    let ids: Vec<i64> = reader
        .unfinished_intents()
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, [first, third]);
}

pub(crate) fn imports_are_recorded_and_listed_oldest_first(h: &dyn Harness) {
    let store = h.open();
    assert!(store.reader().unwrap().imports().unwrap().is_empty());
    let record = ImportRecord {
        id: 0,
        kind: ImportKind::Initial,
        source_path: ".openkb/hashes.json".into(),
        source_sha256: hash_of(5),
        source_bytes: 1234,
        moved_to: ".openkb/hashes.json.migrated".into(),
        entries: 50,
        new_entries: 48,
        conflicting_entries: 2,
        log_entries: 7,
        journals_recovered: 1,
        imported_at: "ignored".into(),
    };
    let drift = ImportRecord {
        kind: ImportKind::DriftMerge,
        entries: 3,
        ..record.clone()
    };
    let (a, b) = write(&store, |tx| {
        Ok((tx.record_import(&record)?, tx.record_import(&drift)?))
    })
    .unwrap();
    assert!(a.id < b.id);
    assert!(a.imported_at.ends_with('Z'));
    assert_eq!(
        a,
        ImportRecord {
            id: a.id,
            imported_at: a.imported_at.clone(),
            ..record
        }
    );
    assert_eq!(store.reader().unwrap().imports().unwrap(), [a, b]);
}

pub(crate) fn meta_is_set_replaced_and_a_random_id_is_stable(h: &dyn Harness) {
    let store = h.open();
    let reader = store.reader().unwrap();
    assert_eq!(reader.meta("conformance_key").unwrap(), None);
    write(&store, |tx| tx.set_meta("conformance_key", "one")).unwrap();
    write(&store, |tx| tx.set_meta("conformance_key", "two")).unwrap();
    assert_eq!(
        store
            .reader()
            .unwrap()
            .meta("conformance_key")
            .unwrap()
            .as_deref(),
        Some("two")
    );
    let id = write(&store, |tx| tx.ensure_random_meta("conformance_id")).unwrap();
    assert_eq!(id.len(), 32, "{id}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{id}"
    );
    assert_eq!(
        write(&store, |tx| tx.ensure_random_meta("conformance_id")).unwrap(),
        id
    );
    let other = write(&store, |tx| tx.ensure_random_meta("conformance_id_2")).unwrap();
    assert_ne!(other, id);
}

pub(crate) fn untrusted_marks_follow_their_document(h: &dyn Harness) {
    let store = h.open();
    register(&store, &[doc(1, "a"), doc(2, "b"), doc(3, "c")]);
    write(&store, |tx| {
        tx.mark_untrusted(&hash_of(3), "folder named as raw_path")?;
        tx.mark_untrusted(&hash_of(1), "first reason")?;
        tx.mark_untrusted(&hash_of(1), "path outside the KB")
    })
    .unwrap();
    let reader = store.reader().unwrap();
    assert_eq!(
        reader.untrusted_reason(&hash_of(1)).unwrap().as_deref(),
        Some("path outside the KB")
    );
    assert_eq!(reader.untrusted_reason(&hash_of(2)).unwrap(), None);
    assert_eq!(
        reader.untrusted_entries().unwrap(),
        [
            (hash_of(1), "path outside the KB".to_owned()),
            (hash_of(3), "folder named as raw_path".to_owned()),
        ],
        "registry order"
    );
    write(&store, |tx| tx.remove_document(&hash_of(1))).unwrap();
    let reader = store.reader().unwrap();
    assert_eq!(reader.untrusted_reason(&hash_of(1)).unwrap(), None);
    assert_eq!(reader.untrusted_entries().unwrap().len(), 1);
}

pub(crate) fn python_base_is_the_latest_hand_over(h: &dyn Harness) {
    let store = h.open();
    assert!(store.reader().unwrap().python_base().unwrap().is_none());
    let entry = |n: u64| -> (String, Map<String, Value>) {
        let mut map = Map::new();
        map.insert("name".into(), json!(format!("d{n}.md")));
        map.insert("pages".into(), json!(n));
        (hash_of(n), map)
    };
    let exported = vec![entry(9), entry(1), entry(5)];
    write(&store, |tx| {
        tx.record_python_export(&hash_of(77), exported.clone())
    })
    .unwrap();
    match store.reader().unwrap().python_base().unwrap() {
        Some(Base::Entries(entries)) => assert_eq!(entries, exported, "in the order given"),
        other => panic!("expected the exported entries, got {other:?}"),
    }
    write(&store, |tx| {
        tx.record_python_migrate(&hash_of(78), 50, ".openkb/hashes.json.migrated")
    })
    .unwrap();
    match store.reader().unwrap().python_base().unwrap() {
        Some(Base::File { kept_as, sha256 }) => {
            assert_eq!(
                kept_as,
                std::path::Path::new(".openkb/hashes.json.migrated")
            );
            assert_eq!(sha256, hash_of(78));
        }
        other => panic!("expected the migrated file, got {other:?}"),
    }
    // An export after a migrate replaces the base again.
    write(&store, |tx| {
        tx.record_python_export(&hash_of(79), vec![entry(2)])
    })
    .unwrap();
    assert!(matches!(
        store.reader().unwrap().python_base().unwrap(),
        Some(Base::Entries(e)) if e == [entry(2)]
    ));
}

pub(crate) fn a_failed_transaction_leaves_nothing(h: &dyn Harness) {
    let store = h.open();
    register(&store, &[doc(1, "a")]);
    let err = write(&store, |tx| {
        tx.upsert_document(&doc(2, "b"))?;
        tx.set_status(&hash_of(1), Status::Failed, Some("x"))?;
        tx.remove_document(&hash_of(1))?;
        tx.append_log("ingest", "b.md")?;
        tx.record_intent(IntentOp::Add, &hash_of(2), Some("b"), &[])?;
        tx.set_meta("conformance_key", "x")?;
        tx.mark_untrusted(&hash_of(2), "x")?;
        Err::<(), _>(Error::Invalid("the body failed".into()))
    })
    .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(m) if m == "the body failed"),
        "{err}"
    );
    let reader = store.reader().unwrap();
    assert_eq!(hashes(&store), [hash_of(1)]);
    assert_eq!(
        store.get(&hash_of(1)).unwrap().unwrap().status,
        Status::Pending
    );
    assert_eq!(store.counts().unwrap().pending, 1);
    assert_eq!(reader.log_count().unwrap(), 0);
    assert_eq!(reader.unfinished_intent_count().unwrap(), 0);
    assert_eq!(reader.meta("conformance_key").unwrap(), None);
    assert!(reader.untrusted_entries().unwrap().is_empty());
}

pub(crate) fn a_transaction_sees_its_own_writes_and_readers_do_not(h: &dyn Harness) {
    let store = &h.open();
    let (to_main, from_writer) = mpsc::channel();
    let (to_writer, from_main) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            write(store, |tx| {
                tx.upsert_document(&doc(1, "a"))?;
                assert!(tx.is_known(&hash_of(1))?, "its own write");
                assert_eq!(tx.counts()?.pending, 1);
                to_main.send(()).expect("main thread waits");
                from_main.recv().expect("main thread answers");
                Ok(())
            })
        });
        from_writer.recv().unwrap();
        // Another handle, as another process: the uncommitted document is not there.
        let other = h.open();
        assert!(!other.is_known(&hash_of(1)).unwrap());
        assert_eq!(other.counts().unwrap().total(), 0);
        to_writer.send(()).unwrap();
        writer.join().unwrap().unwrap();
        assert!(other.is_known(&hash_of(1)).unwrap(), "committed");
    });
}

pub(crate) fn concurrent_writers_lose_nothing(h: &dyn Harness) {
    const THREADS: u64 = 6;
    const PER_THREAD: u64 = 40;
    let shared = h.open();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let shared = &shared;
            scope.spawn(move || {
                // Half share one store (its pool), half open their own, like processes.
                let own;
                let store = if t % 2 == 0 {
                    shared
                } else {
                    own = h.open();
                    &own
                };
                for i in 0..PER_THREAD {
                    write(store, |tx| {
                        tx.upsert_document(&doc(t * 1000 + i, &format!("t{t}-{i}")))?;
                        tx.append_log("ingest", &format!("t{t}-{i}.md"))
                    })
                    .expect("every write commits");
                }
            });
        }
    });
    let docs = shared.list().unwrap();
    assert_eq!(docs.len() as u64, THREADS * PER_THREAD);
    assert_eq!(shared.counts().unwrap().pending, THREADS * PER_THREAD);
    assert_eq!(
        shared.reader().unwrap().log_count().unwrap(),
        THREADS * PER_THREAD
    );
    // Every write landed once (nothing lost, nothing doubled) ...
    let expected: std::collections::BTreeSet<String> = (0..THREADS)
        .flat_map(|t| (0..PER_THREAD).map(move |i| hash_of(t * 1000 + i)))
        .collect();
    let registered: std::collections::BTreeSet<String> =
        docs.iter().map(|d| d.hash.clone()).collect();
    assert_eq!(registered, expected);
    // ... and registry order is commit order: each writer's documents come in the order it
    // committed them (a position taken from a stale read would break this; distinct positions
    // alone are the UNIQUE constraint's promise, not the backend's).
    for t in 0..THREADS {
        let prefix = format!("t{t}-");
        let order: Vec<u64> = docs
            .iter()
            .filter_map(|d| d.doc_name.as_deref()?.strip_prefix(&prefix)?.parse().ok())
            .collect();
        assert_eq!(order, (0..PER_THREAD).collect::<Vec<_>>(), "writer {t}");
    }
    let mut logged: Vec<String> = shared
        .log_tail(None, Some("ingest"))
        .unwrap()
        .into_iter()
        .map(|e| e.description)
        .collect();
    logged.sort();
    let mut written: Vec<String> = (0..THREADS)
        .flat_map(|t| (0..PER_THREAD).map(move |i| format!("t{t}-{i}.md")))
        .collect();
    written.sort();
    assert_eq!(logged, written, "one log row per write");
}

/// Hold a write transaction open on `holder` (one registered document in it) while `during`
/// runs; then commit it.
fn while_a_transaction_is_open<T>(holder: &Store, during: impl FnOnce() -> T) -> T {
    let (opened, wait_opened) = mpsc::channel();
    let (release, wait_release) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            write(holder, |tx| {
                tx.upsert_document(&doc(1, "held"))?;
                opened.send(()).expect("the test waits");
                wait_release.recv().expect("the test releases");
                Ok(())
            })
        });
        wait_opened.recv().unwrap();
        let value = during();
        release.send(()).unwrap();
        writer.join().unwrap().expect("the holder commits");
        value
    })
}

pub(crate) fn a_second_writer_waits_for_the_first(h: &dyn Harness) {
    let holder = h.open();
    let second = &h.open();
    let (started, wait_started) = mpsc::channel();
    std::thread::scope(|scope| {
        let waiter = scope.spawn(move || {
            wait_started.recv().unwrap();
            write(second, |tx| tx.upsert_document(&doc(2, "second")))
        });
        while_a_transaction_is_open(&holder, || started.send(()).unwrap());
        waiter
            .join()
            .unwrap()
            .expect("the second writer commits after the first");
    });
    assert_eq!(hashes(&holder), [hash_of(1), hash_of(2)]);
}

pub(crate) fn a_writer_that_stays_blocked_gets_the_typed_busy_error(h: &dyn Harness) {
    let holder = h.open();
    let impatient = h.open_impatient();
    let (err, read_meanwhile) = while_a_transaction_is_open(&holder, || {
        let err = write(&impatient, |tx| tx.upsert_document(&doc(2, "blocked"))).unwrap_err();
        (err, impatient.list().unwrap())
    });
    assert!(matches!(err, Error::Busy { .. }), "{err}");
    assert!(err.to_string().contains("another openkb process"), "{err}");
    assert_eq!(err.exit_code(), crate::error::exit::BUSY);
    assert!(read_meanwhile.is_empty(), "reads work while another writes");
    // Nothing of the blocked transaction was written; once free, it goes through.
    assert_eq!(hashes(&holder), [hash_of(1)]);
    write(&impatient, |tx| tx.upsert_document(&doc(2, "blocked"))).unwrap();
    assert_eq!(hashes(&holder), [hash_of(1), hash_of(2)]);
}

pub(crate) fn maintenance_describes_checks_and_rebuilds(h: &dyn Harness) {
    let store = h.open();
    register(
        &store,
        &(0..20)
            .map(|n| doc(n, &format!("m{n}")))
            .collect::<Vec<_>>(),
    );
    write(&store, |tx| {
        tx.set_status(&hash_of(3), Status::Compiled, None).map(drop)
    })
    .unwrap();
    let backend = store.backend();
    let described = backend.describe().unwrap();
    assert!(!described.backend.is_empty() && !described.engine_version.is_empty());
    assert_eq!(described.schema_version, store.schema_version());
    assert!(!described.location.is_empty());
    assert!(!store.is_too_new());
    store.ensure_writable().unwrap();
    store.check_still_at_path().unwrap();
    for depth in [CheckDepth::Quick, CheckDepth::Full] {
        assert_eq!(
            backend.check_integrity(depth).unwrap(),
            Vec::<String>::new()
        );
    }
    let before = store.counts().unwrap();
    backend.rebuild_derived().unwrap();
    assert_eq!(store.counts().unwrap(), before);
    assert_eq!(hashes(&store).len(), 20);
    assert!(store.disk_usage().unwrap().database_bytes > 0);
    backend.checkpoint().unwrap();
    backend.end_write_session();
    assert_eq!(store.counts().unwrap(), before);
}

pub(crate) fn copies_keep_positions_ids_and_timestamps(h: &dyn Harness) {
    let store = h.open();
    let mut first = doc(7, "copied-7");
    first.position = 5;
    first.status = Status::Compiled;
    first.created_at = "2020-01-02T03:04:05.678Z".into();
    first.updated_at = "2021-01-02T03:04:05.678Z".into();
    let mut second = doc(8, "copied-8");
    second.position = 9;
    second.created_at = "2020-02-02T00:00:00.000Z".into();
    second.updated_at = second.created_at.clone();
    let entry = super::LogEntry {
        id: 41,
        timestamp: "2020-01-02 03:04:05".into(),
        operation: "add".into(),
        description: "copied.md".into(),
        recorded_at: Some("2020-01-02T03:04:05.678Z".into()),
    };
    write(&store, |tx| {
        tx.copy_documents(&[first.clone(), second.clone()])?;
        tx.copy_log_entries(std::slice::from_ref(&entry))
    })
    .unwrap();
    assert_eq!(store.list().unwrap(), [first.clone(), second.clone()]);
    assert_eq!(
        store.log_tail(None, None).unwrap(),
        std::slice::from_ref(&entry)
    );
    // A hash already there is refused, never duplicated.
    assert!(write(&store, |tx| tx.copy_documents(std::slice::from_ref(&first))).is_err());
    // What comes after a copy goes after it.
    write(&store, |tx| {
        tx.upsert_document(&doc(1, "later"))?;
        tx.append_log("ingest", "later.md").map(drop)
    })
    .unwrap();
    let docs = store.list().unwrap();
    assert_eq!(docs.len(), 3);
    assert!(docs[2].position > second.position, "{docs:?}");
    let log = store.log_tail(None, None).unwrap();
    assert!(log[1].id > entry.id, "{log:?}");
}
