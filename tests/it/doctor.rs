//! `openkb doctor` on real KBs: each finding is detected, `--fix` repairs what it claims and
//! deletes nothing, and damaged or foreign databases are reported without being written.

use std::time::Duration;

use crate::harness::testkb::*;
use openkb::state::{Document, Queries, Status};

#[test]
fn a_healthy_kb_exits_0() {
    let kb = TestKb::new();
    kb.add_doc("alpha.md", "alpha text", true);
    kb.add_doc("beta.md", "beta text", false);
    kb.record("ingest", "alpha.md");
    let output = kb.cmd().arg("doctor").output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("Healthy"), "{}", stdout(&output));

    let (code, json) = doctor_json(&kb, &["--full"]);
    assert_eq!(code, 0);
    assert_eq!(json["healthy"], true);
    assert_eq!(json["problems"], 0);
    let messages: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert!(messages.contains(&"integrity_check: ok"), "{messages:?}");
    assert!(messages.contains(&"foreign_key_check: ok"), "{messages:?}");
}

#[test]
fn registry_and_files_disagreements_are_found() {
    let kb = TestKb::new();
    kb.add_doc("kept.md", "kept", true);
    kb.add_doc("noraw.md", "noraw", true);
    std::fs::remove_file(kb.path("raw/noraw.md")).unwrap();
    kb.add_doc("nosource.md", "nosource", true);
    std::fs::remove_file(kb.path("wiki/sources/nosource.md")).unwrap();
    // A legacy (era A) entry: no raw_path, its copy at raw/<name>.
    kb.write("raw/Legacy Paper.md", "legacy");
    let mut legacy = Document::new(sha256(b"legacy"));
    legacy.name = Some("Legacy Paper.md".into());
    legacy.doc_type = Some("md".into());
    legacy.status = Status::Compiled;
    kb.upsert(&legacy);
    kb.write("wiki/summaries/Legacy Paper.md", "# Legacy\n");
    // A cloud document has no raw copy; its source is JSON.
    kb.write("wiki/sources/Cloud-Doc.json", "[]");
    let mut cloud = Document::new(sha256(b"pageindex-cloud:pi-1"));
    cloud.name = Some("Cloud Doc.pdf".into());
    cloud.doc_name = Some("Cloud-Doc".into());
    cloud.doc_type = Some("pageindex_cloud".into());
    cloud.origin = Some("cloud".into());
    cloud.path = Some("pageindex-cloud:pi-1".into());
    cloud.source_path = Some("wiki/sources/Cloud-Doc.json".into());
    kb.upsert(&cloud);
    // Files nobody owns, and a summary of nothing. Images are never "unowned".
    kb.write("raw/stray.pdf", "stray");
    kb.write("wiki/sources/stray-source.md", "stray");
    kb.write("wiki/sources/images/kept/fig1.png", "png");
    kb.write("wiki/summaries/ghost.md", "# Ghost\n");

    let (code, json) = doctor_json(&kb, &[]);
    assert_eq!(code, 1, "{json:#}");
    let missing_raw = findings(&json, "missing-raw");
    assert_eq!(missing_raw.len(), 1, "{missing_raw:?}");
    assert!(missing_raw[0].1.contains("raw/noraw.md"));
    assert_eq!(missing_raw[0].0, "problem");
    let missing_source = findings(&json, "missing-source");
    assert_eq!(missing_source.len(), 1, "{missing_source:?}");
    assert!(missing_source[0].1.contains("wiki/sources/nosource.md"));
    let unowned: Vec<String> = findings(&json, "unowned-file")
        .into_iter()
        .map(|f| f.1)
        .collect();
    assert_eq!(unowned.len(), 2, "{unowned:?}");
    assert!(unowned[0].starts_with("raw/stray.pdf "), "{unowned:?}");
    assert!(unowned[1].starts_with("wiki/sources/stray-source.md "));
    let orphans = findings(&json, "orphan-summary");
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    assert!(orphans[0].1.contains("wiki/summaries/ghost.md"));
    // Nothing was changed by looking.
    assert!(kb.path("raw/stray.pdf").exists());
    assert!(kb.path("wiki/summaries/ghost.md").exists());
}

#[test]
fn old_temp_files_are_reported_and_swept_by_fix_and_nothing_else_is_touched() {
    let kb = TestKb::new();
    kb.add_doc("a.md", "a", true);
    let old = ".index.md.0123abcd.tmp";
    kb.write(&format!("wiki/{old}"), "partial");
    age_file(&kb.path(&format!("wiki/{old}")), Duration::from_secs(600));
    kb.write(".openkb/.config.yaml.99.tmp", "partial");
    age_file(
        &kb.path(".openkb/.config.yaml.99.tmp"),
        Duration::from_secs(3600),
    );
    // A fresh one may belong to a running command; the PageIndex blob store is not ours.
    kb.write("raw/.a.md.fresh.tmp", "in progress");
    kb.write(".openkb/files/default/.blob.tmp", "pageindex");
    age_file(
        &kb.path(".openkb/files/default/.blob.tmp"),
        Duration::from_secs(3600),
    );

    let (code, json) = doctor_json(&kb, &[]);
    assert_eq!(code, 0, "temp files are warnings: {json:#}");
    let temps = findings(&json, "temp-file");
    assert_eq!(temps.len(), 2, "{temps:?}");
    assert!(temps[0].1.starts_with(".openkb/.config.yaml.99.tmp"));
    assert!(temps[1].1.starts_with(&format!("wiki/{old}")));

    let (code, json) = doctor_json(&kb, &["--fix"]);
    assert_eq!(code, 0, "{json:#}");
    let fixed: Vec<_> = findings(&json, "temp-file")
        .into_iter()
        .filter(|f| f.2)
        .collect();
    assert_eq!(fixed.len(), 2, "{json:#}");
    assert!(!kb.path(&format!("wiki/{old}")).exists());
    assert!(!kb.path(".openkb/.config.yaml.99.tmp").exists());
    assert!(kb.path("raw/.a.md.fresh.tmp").exists());
    assert!(kb.path(".openkb/files/default/.blob.tmp").exists());
    let (_, json) = doctor_json(&kb, &[]);
    assert!(findings(&json, "temp-file").is_empty(), "{json:#}");
}

#[test]
fn fix_rebuilds_log_md_from_the_log_table() {
    let kb = TestKb::new();
    kb.record("ingest", "a.md");
    kb.record("query", "what is\na question over two lines?");
    kb.record("lint", "report \u{2192} lint_20260101_000000.md");
    let expected = {
        let store = kb.store();
        openkb::log_md::render(&store.reader().unwrap()).unwrap()
    };
    assert_eq!(
        kb.read("wiki/log.md"),
        expected,
        "record renders the same text"
    );

    // An entry the table lacks (the Python tool appended after migration) becomes a log row,
    // in place: nothing is moved aside.
    let python_appended =
        format!("{expected}## [2026-02-03 04:05:06] query | asked by the Python tool\n\n");
    std::fs::write(kb.path("wiki/log.md"), &python_appended).unwrap();
    kb.cmd().args(["doctor", "--fix"]).assert().success();
    let expected = kb.read("wiki/log.md");
    assert!(expected.starts_with(&python_appended), "{expected}");
    assert!(
        expected[python_appended.len()..]
            .contains("] doctor | imported 1 wiki/log.md entries appended by the Python tool\n"),
        "{expected}"
    );
    assert!(kb.openkb_files("log.md.before-doctor-").is_empty());
    let rows = kb.store().reader().unwrap().log_tail(None, None).unwrap();
    assert_eq!(rows[3].timestamp, "2026-02-03 04:05:06");
    assert_eq!(rows[3].description, "asked by the Python tool");
    kb.cmd().args(["doctor", "--fix"]).assert().success();
    assert_eq!(
        kb.read("wiki/log.md"),
        expected,
        "a second fix changes nothing"
    );

    // Text that is not a log entry is not history: saved aside, then the page is rewritten.
    std::fs::write(kb.path("wiki/log.md"), "# Operations Log\n\nhand edits\n").unwrap();
    let (code, json) = doctor_json(&kb, &[]);
    assert_eq!(code, 0);
    let log = findings(&json, "log.md");
    assert_eq!(log.len(), 1, "{json:#}");
    assert_eq!(log[0].0, "warning");

    let (code, json) = doctor_json(&kb, &["--fix"]);
    assert_eq!(code, 0, "{json:#}");
    assert!(findings(&json, "log.md").iter().any(|f| f.2), "{json:#}");
    assert_eq!(kb.read("wiki/log.md"), expected);
    let saved = kb.openkb_files("log.md.before-doctor-");
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert_eq!(
        kb.read(&format!(".openkb/{}", saved[0])),
        "# Operations Log\n\nhand edits\n"
    );

    std::fs::remove_file(kb.path("wiki/log.md")).unwrap();
    let (_, json) = doctor_json(&kb, &[]);
    assert!(findings(&json, "log.md")[0].1.contains("missing"));
    kb.cmd().args(["doctor", "--fix"]).assert().success();
    assert_eq!(kb.read("wiki/log.md"), expected);
}

fn assert_rebuilt_from_files(kb: &TestKb, alpha: &Document, beta: &Document) {
    let store = kb.store();
    let docs = store.list().unwrap();
    assert_eq!(docs.len(), 2, "{docs:#?}");
    let a = store.get(&alpha.hash).unwrap().expect("alpha rebuilt");
    assert_eq!(a.name.as_deref(), Some("alpha.md"));
    assert_eq!(a.doc_name.as_deref(), Some("alpha"));
    assert_eq!(a.doc_type.as_deref(), Some("md"));
    assert_eq!(a.raw_path.as_deref(), Some("raw/alpha.md"));
    assert_eq!(a.path.as_deref(), Some("raw/alpha.md"));
    assert_eq!(a.source_path.as_deref(), Some("wiki/sources/alpha.md"));
    assert_eq!(a.status, Status::Compiled);
    let b = store.get(&beta.hash).unwrap().expect("beta rebuilt");
    assert_eq!(b.status, Status::Pending, "no summary: pending");
    let log = store.log_tail(None, None).unwrap();
    let ops: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.operation.as_str(), e.description.as_str()))
        .collect();
    assert_eq!(ops[0], ("ingest", "alpha.md"));
    assert_eq!(ops[1], ("ingest", "beta.md"));
    assert_eq!(ops.len(), 3, "{ops:?}");
    assert_eq!(ops[2].0, "doctor");
    assert_eq!(log[0].timestamp, "2026-01-02 03:04:05");
}

fn two_document_kb() -> (TestKb, Document, Document) {
    let kb = TestKb::new();
    let alpha = kb.add_doc("alpha.md", "alpha text", true);
    let beta = kb.add_doc("beta.md", "beta text", false);
    std::fs::write(
        kb.path("wiki/log.md"),
        "# Operations Log\n\n## [2026-01-02 03:04:05] ingest | alpha.md\n\n\
         ## [2026-01-02 03:04:06] ingest | beta.md\n\n",
    )
    .unwrap();
    (kb, alpha, beta)
}

#[test]
fn a_state_db_that_is_not_a_database_is_reported_then_moved_aside_and_rebuilt() {
    let (kb, alpha, beta) = two_document_kb();
    let garbage = b"this is not a database, it is a text file that replaced it".repeat(100);
    std::fs::write(kb.db(), &garbage).unwrap();
    std::fs::write(kb.path(".openkb/state.db-wal"), b"wal bytes").unwrap();
    std::fs::write(kb.path(".openkb/state.db-shm"), b"shm bytes").unwrap();

    let output = kb.cmd().arg("doctor").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text.contains("not a SQLite database"), "{text}");
    assert!(text.contains("openkb doctor --fix"), "{text}");
    assert_eq!(
        std::fs::read(kb.db()).unwrap(),
        garbage,
        "a check changes nothing"
    );

    let output = kb.cmd().args(["doctor", "--fix"]).output().unwrap();
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    assert!(text.contains("rebuilt .openkb/state.db"), "{text}");
    let aside = kb.openkb_files("state.db.corrupt-");
    assert_eq!(aside.len(), 3, "{aside:?}");
    let main = &aside[0];
    assert!(
        main.len() == "state.db.corrupt-20260101T000000Z".len(),
        "{main}"
    );
    assert_eq!(
        std::fs::read(kb.path(&format!(".openkb/{main}"))).unwrap(),
        garbage
    );
    assert_eq!(
        std::fs::read(kb.path(&format!(".openkb/{main}-wal"))).unwrap(),
        b"wal bytes"
    );
    assert_eq!(
        std::fs::read(kb.path(&format!(".openkb/{main}-shm"))).unwrap(),
        b"shm bytes"
    );
    assert_rebuilt_from_files(&kb, &alpha, &beta);
    assert!(
        kb.read("wiki/log.md")
            .contains("] doctor | rebuilt state.db from files (2 documents)")
    );
    assert!(
        kb.openkb_files(".state.db").is_empty(),
        "no temp database left"
    );
    kb.cmd().arg("doctor").assert().code(0);
}

#[test]
fn a_damaged_database_fails_quick_check_and_is_rebuilt() {
    let (kb, alpha, beta) = two_document_kb();
    // Enough rows for several pages, then scribble over a b-tree page.
    kb.write_session()
        .write(|tx| {
            for i in 0..400 {
                tx.import_log(
                    "2026-01-01 00:00:00",
                    "query",
                    &format!("question {i} {}", "x".repeat(200)),
                )?;
            }
            Ok(())
        })
        .unwrap();
    kb.write_session().checkpoint().unwrap();
    let mut bytes = std::fs::read(kb.db()).unwrap();
    assert!(bytes.len() > 8 * 4096, "{}", bytes.len());
    for b in &mut bytes[5 * 4096..7 * 4096] {
        *b = 0x5a;
    }
    std::fs::write(kb.db(), &bytes).unwrap();

    let (code, json) = doctor_json(&kb, &[]);
    assert_eq!(code, 1, "{json:#}");
    let db = findings(&json, "state.db");
    assert_eq!(db.len(), 1, "{json:#}");
    assert!(db[0].1.contains("doctor --fix"), "{}", db[0].1);

    let (code, json) = doctor_json(&kb, &["--fix"]);
    assert_eq!(code, 0, "{json:#}");
    // The damaged file is kept; SQLite's read-only inspection may have added empty -wal/-shm.
    let kept: Vec<String> = kb
        .openkb_files("state.db.corrupt-")
        .into_iter()
        .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        std::fs::read(kb.path(&format!(".openkb/{}", kept[0]))).unwrap(),
        bytes
    );
    let store = kb.store();
    assert!(store.get(&alpha.hash).unwrap().is_some());
    assert!(store.get(&beta.hash).unwrap().is_some());
}

#[test]
fn a_missing_state_db_is_rebuilt_but_a_legacy_kb_is_sent_to_migrate() {
    let (kb, alpha, beta) = two_document_kb();
    std::fs::remove_file(kb.db()).unwrap();
    let (code, json) = doctor_json(&kb, &[]);
    assert_eq!(code, 1);
    assert!(findings(&json, "state.db")[0].1.contains("missing"));
    assert!(!kb.db().exists(), "a check never creates state.db");
    // A stray WAL of the lost database must not be replayed into the new one.
    std::fs::write(kb.path(".openkb/state.db-wal"), b"stale wal").unwrap();
    kb.cmd().args(["doctor", "--fix"]).assert().code(0);
    assert_rebuilt_from_files(&kb, &alpha, &beta);
    let aside = kb.openkb_files("state.db.corrupt-");
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(aside[0].ends_with("-wal"));
    assert_eq!(
        std::fs::read(kb.path(&format!(".openkb/{}", aside[0]))).unwrap(),
        b"stale wal"
    );

    let legacy = TestKb::new();
    std::fs::remove_file(legacy.db()).unwrap();
    legacy.write(
        ".openkb/hashes.json",
        "{\"aa\": {\"name\": \"a.md\", \"type\": \"md\"}}\n",
    );
    for args in [&["doctor"][..], &["doctor", "--fix"][..]] {
        let output = legacy.cmd().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(1));
        let text = stdout(&output);
        assert!(text.contains("legacy knowledge base"), "{text}");
        assert!(text.contains("openkb migrate"), "{text}");
        assert!(
            !legacy.db().exists(),
            "doctor must not create state.db on a legacy KB"
        );
    }
}

#[test]
fn a_newer_schema_is_reported_and_never_written() {
    let kb = TestKb::new();
    kb.add_doc("a.md", "a", true);
    kb.write("wiki/log.md", "# Operations Log\n\nout of date\n");
    {
        let conn = rusqlite::Connection::open(kb.db()).unwrap();
        conn.execute_batch("PRAGMA user_version = 99; PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    let before = std::fs::read(kb.db()).unwrap();
    for args in [&["doctor"][..], &["doctor", "--fix"][..]] {
        let output = kb.cmd().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
        assert!(
            stdout(&output).contains("schema version 99 is newer"),
            "{}",
            stdout(&output)
        );
    }
    assert_eq!(std::fs::read(kb.db()).unwrap(), before);
    assert_eq!(kb.read("wiki/log.md"), "# Operations Log\n\nout of date\n");
    assert!(kb.openkb_files("state.db.corrupt").is_empty());
}

#[test]
fn python_journals_and_a_reappeared_hashes_json_are_reported() {
    let kb = TestKb::new();
    kb.write(
        ".openkb/journal/0123456789abcdef0123456789abcdef.json",
        "{\"version\": 1, \"operation\": \"add\", \"status\": \"active\"}\n",
    );
    kb.write(
        ".openkb/journal/fedcba9876543210fedcba9876543210.json",
        "{\"version\": 1, \"operation\": \"add\", \"status\": \"committed\"}\n",
    );
    kb.write(".openkb/hashes.json", "{}\n");
    let (code, json) = doctor_json(&kb, &[]);
    assert_eq!(code, 1, "an active journal is a problem: {json:#}");
    let journals = findings(&json, "python-journal");
    assert_eq!(journals.len(), 2);
    assert_eq!(journals[0].0, "problem");
    assert!(journals[0].1.contains("interrupted during add"));
    assert_eq!(journals[1].0, "warning");
    let drift = findings(&json, "hashes.json");
    assert_eq!(drift.len(), 1);
    assert!(drift[0].1.contains("openkb migrate"));
    // --fix does not touch what belongs to the Python tool.
    kb.cmd().args(["doctor", "--fix"]).assert().code(1);
    assert!(
        kb.path(".openkb/journal/0123456789abcdef0123456789abcdef.json")
            .exists()
    );
    assert!(kb.path(".openkb/hashes.json").exists());
}

/// Scale check (run by hand: `cargo test --test doctor -- --ignored --nocapture`): doctor and
/// lint on 100k registered documents with their raw copies, sources and summaries. With
/// `OPENKB_SCALE_KB=<dir>` the KB is built there and kept, to time other builds of the binary.
#[test]
#[ignore]
fn doctor_scales_to_100k_documents() {
    const N: usize = 100_000;
    let kb = TestKb::new();
    let kb = match std::env::var_os("OPENKB_SCALE_KB") {
        Some(dir) => TestKb::keep_at(kb, std::path::Path::new(&dir)),
        None => kb,
    };
    let started = std::time::Instant::now();
    let mut docs = Vec::with_capacity(N);
    for i in 0..N {
        let name = format!("doc-{i:06}.md");
        let content = format!("document {i}");
        kb.write(&format!("raw/{name}"), &content);
        kb.write(&format!("wiki/sources/doc-{i:06}.md"), &content);
        kb.write(&format!("wiki/summaries/doc-{i:06}.md"), "# s\n");
        let mut doc = Document::new(sha256(content.as_bytes()));
        doc.name = Some(name.clone());
        doc.doc_name = Some(format!("doc-{i:06}"));
        doc.doc_type = Some("md".into());
        doc.path = Some(format!("raw/{name}"));
        doc.raw_path = Some(format!("raw/{name}"));
        doc.source_path = Some(format!("wiki/sources/doc-{i:06}.md"));
        doc.status = Status::Compiled;
        docs.push(doc);
    }
    kb.write_session()
        .write(|tx| {
            for doc in &docs {
                tx.upsert_document(doc)?;
            }
            Ok(())
        })
        .unwrap();
    kb.write_session().checkpoint().unwrap();
    eprintln!("setup: {:?}", started.elapsed());
    let started = std::time::Instant::now();
    let (code, json) = doctor_json(&kb, &[]);
    eprintln!("doctor on {N} documents: {:?}", started.elapsed());
    assert_eq!(code, 0, "{}", json["findings"]);
    let started = std::time::Instant::now();
    kb.cmd().arg("lint").assert().success();
    eprintln!("lint on {N} documents: {:?}", started.elapsed());
}

#[test]
fn long_lists_are_cut_in_text_output_but_complete_in_json() {
    let kb = TestKb::new();
    for i in 0..25 {
        kb.write(&format!("raw/stray-{i:02}.md"), "stray");
    }
    let output = kb.cmd().arg("doctor").output().unwrap();
    assert_eq!(output.status.code(), Some(0), "unowned files are warnings");
    let text = stdout(&output);
    assert_eq!(
        text.matches("warning unowned-file: raw/stray-").count(),
        20,
        "{text}"
    );
    assert!(
        text.contains("... and 5 more unowned-file finding(s)"),
        "{text}"
    );
    assert!(text.contains("Healthy (25 warning(s))"), "{text}");
    let (_, json) = doctor_json(&kb, &[]);
    assert_eq!(findings(&json, "unowned-file").len(), 25);
}

#[test]
fn a_check_shares_the_kb_and_fix_waits_for_the_exclusive_lock() {
    let kb = TestKb::new();
    kb.add_doc("a.md", "a", true);
    let lock_path = kb.path(".openkb/ingest.lock");
    let _reader =
        openkb::lock::acquire(&lock_path, openkb::lock::LockMode::Shared, &kb.root).unwrap();
    kb.cmd()
        .env("OPENKB_LOCK_TIMEOUT", "0.3")
        .arg("doctor")
        .assert()
        .code(0);
    let output = kb
        .cmd()
        .env("OPENKB_LOCK_TIMEOUT", "0.3")
        .args(["doctor", "--fix"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(stderr(&output).contains("waiting for another openkb process"));
}

/// Staging folders and lock files of killed adds and temp databases of killed builds are
/// reported with their size and swept by the next write command; dead or alive is decided by
/// the lock, never by age, and what is not openkb's own (the Python tool's staging) is left.
#[test]
fn leftovers_of_dead_processes_are_reported_with_their_size_and_swept() {
    let kb = TestKb::new();
    let staging = kb.path(".openkb/staging");
    // A killed add: its folder with 3 MiB staged, its lock file unlocked.
    std::fs::create_dir_all(staging.join("rs-999-1-0/nested")).unwrap();
    std::fs::write(staging.join("rs-999-1-0/nested/0.raw"), vec![7u8; 3 << 20]).unwrap();
    std::fs::write(staging.join("rs-999-1-0.lock"), b"").unwrap();
    // Killed between creating its lock file and its folder.
    std::fs::write(staging.join("rs-998-1-0.lock"), b"").unwrap();
    // A killed migrate's temp database.
    std::fs::write(kb.path(".openkb/state.db.importing-77"), vec![0u8; 4096]).unwrap();
    // A live add (this test holds its lock), young or not; and the Python tool's staging.
    std::fs::create_dir_all(staging.join("rs-1-1-0")).unwrap();
    std::fs::write(staging.join("rs-1-1-0/0.raw"), b"live").unwrap();
    let live_lock = std::fs::File::create(staging.join("rs-1-1-0.lock")).unwrap();
    live_lock.lock().unwrap();
    std::fs::create_dir_all(staging.join("add-report-1234abcd")).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(7 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(staging.join("rs-1-1-0/0.raw"))
        .unwrap()
        .set_modified(old)
        .unwrap();

    let output = kb.cmd().arg("doctor").output().unwrap();
    let text = stdout(&output);
    assert!(
        text.contains(".openkb/staging/rs-999-1-0 (3.0 MiB) was left by a killed openkb process"),
        "{text}"
    );
    assert!(
        text.contains(".openkb/staging/rs-998-1-0.lock (0 B)"),
        "{text}"
    );
    assert!(
        text.contains(".openkb/state.db.importing-77 (4.0 KiB)"),
        "{text}"
    );
    assert!(
        text.contains("3 leftover(s) of killed processes hold 3.0 MiB"),
        "{text}"
    );
    assert!(
        !text.contains("rs-1-1-0"),
        "a live add's folder is not a leftover: {text}"
    );
    let (_, json) = doctor_json(&kb, &[]);
    let reported = findings(&json, "leftovers");
    assert_eq!(reported.len(), 4, "{reported:?}");
    assert!(
        reported
            .iter()
            .all(|(severity, _, fixed)| severity == "warning" && !fixed)
    );

    // The next write command sweeps them.
    kb.write("../in/x.md", "x\n");
    let output = kb
        .cmd()
        .arg("add")
        .arg(kb.path("../in/x.md"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("3 leftover(s) of dead processes removed"),
        "{}",
        stderr(&output)
    );
    assert!(!staging.join("rs-999-1-0").exists());
    assert!(!staging.join("rs-999-1-0.lock").exists());
    assert!(!staging.join("rs-998-1-0.lock").exists());
    assert!(!kb.path(".openkb/state.db.importing-77").exists());
    assert!(staging.join("rs-1-1-0/0.raw").exists());
    assert!(staging.join("rs-1-1-0.lock").exists());
    assert!(staging.join("add-report-1234abcd").exists());

    // Once its owner is gone, the last one goes too (here through doctor --fix).
    drop(live_lock);
    let output = kb.cmd().args(["doctor", "--fix"]).output().unwrap();
    assert!(
        stdout(&output).contains("removed 1 leftover(s) of killed openkb processes (4 B)"),
        "{}",
        stdout(&output)
    );
    assert!(!staging.join("rs-1-1-0").exists());
    let output = kb.cmd().arg("doctor").output().unwrap();
    assert!(
        stdout(&output).contains("no staging folders or temp databases of dead processes"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn duplicate_path_claims_and_with_full_changed_raw_copies_are_reported() {
    let kb = TestKb::new();
    let alpha = kb.add_doc("alpha.md", "alpha", true);
    kb.add_doc("beta.md", "beta", true);
    for extra in [&[][..], &["--full"][..]] {
        let (code, json) = doctor_json(&kb, extra);
        assert_eq!(code, 0, "{json:#}");
        assert!(findings(&json, "duplicate-claim").is_empty(), "{json:#}");
        assert!(findings(&json, "hash-mismatch").is_empty(), "{json:#}");
    }

    // An edit merged as an addition only: the old and the new entry share one path.
    let mut stale = Document::new(sha256(b"alpha, before the edit"));
    stale.name = Some("alpha.md".into());
    stale.doc_name = Some("alpha-old".into());
    stale.path = alpha.path.clone();
    stale.raw_path = alpha.raw_path.clone();
    stale.status = Status::Compiled;
    kb.upsert(&stale);
    let (code, json) = doctor_json(&kb, &[]);
    assert_eq!(code, 1, "{json:#}");
    let claims = findings(&json, "duplicate-claim");
    assert_eq!(claims.len(), 2, "path and raw_path: {json:#}");
    assert!(claims[0].1.contains("alpha") && claims[0].1.contains("alpha-old"));
    assert!(claims[0].1.contains("raw/alpha.md"), "{}", claims[0].1);
    kb.write_session()
        .write(|tx| tx.remove_document(&stale.hash))
        .unwrap();

    // A raw copy edited in place: only --full reads contents.
    kb.write("raw/beta.md", "beta, edited in place");
    let (code, json) = doctor_json(&kb, &[]);
    assert_eq!(code, 0, "{json:#}");
    assert!(findings(&json, "hash-mismatch").is_empty());
    let (code, json) = doctor_json(&kb, &["--full"]);
    assert_eq!(code, 1, "{json:#}");
    let mismatch = findings(&json, "hash-mismatch");
    assert_eq!(mismatch.len(), 1, "{json:#}");
    assert!(mismatch[0].1.contains("raw/beta.md"), "{}", mismatch[0].1);
    assert!(
        mismatch[0].1.contains(&sha256(b"beta")[..12]),
        "{}",
        mismatch[0].1
    );
}
