//! `openkb migrate` end to end: the real binary on copies of the legacy fixture and on KBs
//! built by the tests (eras, journals, bad input, drift, `--all`, concurrency).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::harness::*;
use serde_json::Value;

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

fn hashes(kb: &Path) -> PathBuf {
    kb.join(".openkb/hashes.json")
}

fn migrated(kb: &Path) -> PathBuf {
    kb.join(".openkb/hashes.json.migrated")
}

/// Keys of the legacy file, in order.
fn legacy_keys(bytes: &[u8]) -> Vec<String> {
    match serde_json::from_slice::<Value>(bytes).unwrap() {
        Value::Object(map) => map.keys().cloned().collect(),
        _ => panic!("not an object"),
    }
}

/// (timestamp, operation, description) of every `## [` entry, parsed independently of the
/// implementation for the fixture (whose entries are all one line).
fn fixture_log_entries(log_md: &str) -> Vec<(String, String, String)> {
    log_md
        .lines()
        .filter_map(|l| l.strip_prefix("## ["))
        .map(|rest| {
            let (ts, rest) = rest.split_once("] ").unwrap();
            let (op, desc) = rest.split_once(" | ").unwrap();
            (ts.to_owned(), op.to_owned(), desc.to_owned())
        })
        .collect()
}

#[test]
fn fixture_migrates_losslessly_end_to_end() {
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    let original = read(hashes(&kb));
    let original_log = String::from_utf8(read(kb.join("wiki/log.md"))).unwrap();
    let untouched = |kb: &Path| {
        let mut s = snapshot(&kb.join(".openkb/files"));
        s.extend(snapshot(&kb.join(".openkb/chats")));
        s.insert("pageindex.db".into(), read(kb.join(".openkb/pageindex.db")));
        s.insert("chat_history".into(), read(kb.join(".openkb/chat_history")));
        s.insert("config.yaml".into(), read(kb.join(".openkb/config.yaml")));
        s.extend(snapshot(&kb.join("raw")));
        s
    };
    let before = untouched(&kb);

    let out = ok(&mut sb.openkb(&kb, &["migrate"]));
    assert!(out.stdout.contains("Migrated "), "{}", out.stdout);
    assert!(
        out.stdout.contains("hashes.json: 50 entries"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("38  0.4: name, doc_name, type, path, raw_path, source_path")
    );
    assert!(out.stdout.contains("wiki/log.md: 57 entries imported"));

    // The legacy file is renamed, byte-identical, never deleted; state.db is in place.
    assert!(!hashes(&kb).exists());
    assert_eq!(read(migrated(&kb)), original);
    assert!(kb.join(".openkb/state.db").is_file());
    assert!(names_starting_with(&kb.join(".openkb"), "state.db.importing").is_empty());
    assert_eq!(
        before,
        untouched(&kb),
        "pageindex.db, files/, chats/, raw/ must not change"
    );

    // Every entry byte-exact, in order: the export is the original file.
    let export = ok(&mut sb.openkb(&kb, &["export", "--legacy-json"]));
    assert_eq!(export.stdout_bytes, original);

    // Registry order and statuses.
    let list = json(&ok(&mut sb.openkb(&kb, &["list", "--json"])))["documents"].clone();
    let docs = list.as_array().unwrap();
    let hashes_in_db: Vec<String> = docs
        .iter()
        .map(|d| d["hash"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(hashes_in_db, legacy_keys(&original));
    assert!(docs.iter().all(|d| d["status"] == "compiled"));
    let cafe = docs
        .iter()
        .find(|d| d["doc_name"] == "caf\u{e9}-menu")
        .unwrap();
    assert_eq!(cafe["name"], "cafe\u{301}-menu.md", "NFD name stays NFD");
    let table = ok(&mut sb.openkb(&kb, &["list"]));
    assert!(table.stdout.contains("50 document(s)"), "{}", table.stdout);

    // The history: every log.md entry with its timestamp, then the migrate row.
    let log = json(&ok(&mut sb.openkb(&kb, &["log", "--all", "--json"])))["entries"].clone();
    let rows: Vec<(String, String, String)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["timestamp"].as_str().unwrap().to_owned(),
                e["operation"].as_str().unwrap().to_owned(),
                e["description"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = fixture_log_entries(&original_log);
    assert_eq!(expected.len(), 57);
    assert_eq!(&rows[..57], &expected[..]);
    assert_eq!(rows.len(), 58);
    assert_eq!(rows[57].1, "migrate");
    assert_eq!(rows[57].2, "imported 50 documents from hashes.json");
    assert!(
        log[0]["recorded_at"].is_null(),
        "imported rows keep no write time"
    );

    // wiki/log.md is not rewritten: the migrate line is appended.
    let log_after = String::from_utf8(read(kb.join("wiki/log.md"))).unwrap();
    let appended = log_after
        .strip_prefix(&original_log)
        .expect("log.md only appended");
    assert!(
        appended.starts_with("## [")
            && appended.ends_with("] migrate | imported 50 documents from hashes.json\n\n"),
        "{appended:?}"
    );

    // The import record.
    let state = json(&ok(&mut sb.openkb(&kb, &["export", "--json"])));
    let record = &state["imports"][0];
    assert_eq!(record["kind"], "initial");
    assert_eq!(record["entries"], 50);
    assert_eq!(record["new_entries"], 50);
    assert_eq!(record["log_entries"], 57);
    assert_eq!(record["source_bytes"], original.len());
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(&original)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(record["source_sha256"], sha.as_str());
    assert!(
        record["moved_to"]
            .as_str()
            .unwrap()
            .ends_with(".openkb/hashes.json.migrated")
    );
    assert_eq!(state["documents"].as_array().unwrap().len(), 50);
    assert_eq!(state["log"].as_array().unwrap().len(), 58);

    // Other commands work on it, and without the legacy warning.
    let status = ok(&mut sb.openkb(&kb, &["status"]));
    assert!(
        status.stdout.contains("Documents: 50 (compiled 50"),
        "{}",
        status.stdout
    );
    assert!(!status.stderr.contains("reappeared"), "{}", status.stderr);
}

#[test]
fn running_again_reports_already_migrated_and_changes_nothing() {
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    ok(&mut sb.openkb(&kb, &["migrate"]));
    // The second run reads the log table (for lines the Python tool appended to log.md), so
    // SQLite's own -wal/-shm files may come and go; everything else stays byte for byte.
    let files = |kb: &Path| {
        let mut files = snapshot(kb);
        files.retain(|path, _| {
            !path.to_string_lossy().ends_with("-wal") && !path.to_string_lossy().ends_with("-shm")
        });
        files
    };
    let before = files(&kb);
    let again = ok(&mut sb.openkb(&kb, &["migrate"]));
    assert!(
        again.stdout.contains("already migrated"),
        "{}",
        again.stdout
    );
    assert_eq!(before, files(&kb));
}

#[test]
fn every_era_imports_and_exports_in_the_0_4_format() {
    let sb = Env::new();
    for (name, file) in [
        ("era-0.1", "era-0.1-hashes.json"),
        ("era-0.2-0.3", "era-0.2-0.3-hashes.json"),
        ("odd", "odd-hashes.json"),
    ] {
        let original = read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data")
                .join(file),
        );
        let kb = sb.legacy_kb(name, &original, None);
        let out = ok(&mut sb.openkb(&kb, &["migrate"]));
        let export = ok(&mut sb.openkb(&kb, &["export", "--legacy-json"]));
        // 0.1-0.3 wrote no trailing newline; the export is the 0.4 format of the same data.
        let mut expected = original.clone();
        if !expected.ends_with(b"\n") {
            expected.push(b'\n');
        }
        assert_eq!(
            String::from_utf8_lossy(&export.stdout_bytes),
            String::from_utf8_lossy(&expected),
            "{name}"
        );
        assert_eq!(read(migrated(&kb)), original, "{name}");
        let docs = json(&ok(&mut sb.openkb(&kb, &["list", "--json"])))["documents"].clone();
        assert_eq!(
            docs.as_array().unwrap().len(),
            legacy_keys(&original).len(),
            "{name}: {}",
            out.stdout
        );
    }

    // 0.1: no doc_name; "PDF" type keeps its case.
    let docs = json(&ok(
        &mut sb.openkb(&sb.path().join("era-0.1"), &["list", "--json"])
    ))["documents"]
        .clone();
    assert_eq!(docs[1]["type"], "PDF");
    assert!(docs[0]["doc_name"].is_null());

    // 0.2-0.3: two raw stems share a doc_name; both are imported, the first owns it.
    let kb = sb.path().join("era-0.2-0.3");
    let docs = json(&ok(&mut sb.openkb(&kb, &["list", "--json"])))["documents"].clone();
    assert_eq!(docs[0]["doc_name"], "Survey 0 (journal)");
    assert!(docs[1]["doc_name"].is_null());
    assert_eq!(docs[1]["extra"]["doc_name"], "Survey 0 (journal)");
    assert_eq!(docs[2]["doc_id"], "86fb1ea5-6ad1-a1c6-ed5e-3e741e9431aa");

    // Odd entries: unknown keys, type-mismatched known keys and key order survive.
    let docs = json(&ok(
        &mut sb.openkb(&sb.path().join("odd"), &["list", "--json"])
    ))["documents"]
        .clone();
    assert_eq!(docs[0]["key_order"][0], "type");
    assert_eq!(
        docs[0]["path"], "../outside/odd.md",
        "outside paths are kept as data"
    );
    assert_eq!(docs[1]["pages"], 12);
    assert_eq!(docs[2]["extra"]["pages"], "7");
    assert!(docs[2]["name"].is_null());
}

/// A journal as the Python tool writes it, for a KB that lived at `recorded_kb`.
fn journal_json(
    recorded_kb: &str,
    id: &str,
    status: &str,
    entries: &[(&str, Option<&str>)],
) -> String {
    let entries: Vec<Value> = entries
        .iter()
        .map(|(target, backup)| {
            serde_json::json!({
                "target": format!("{recorded_kb}/{target}"),
                "backup": backup.map(|b| format!("{recorded_kb}/.openkb/staging/rollback-{id}/{b}")),
            })
        })
        .collect();
    let value = serde_json::json!({
        "version": 1,
        "operation": "add",
        "status": status,
        "kb_dir": recorded_kb,
        "backup_dir": format!("{recorded_kb}/.openkb/staging/rollback-{id}"),
        "details": {"file_hash": "f".repeat(64), "name": "new.md", "doc_name": "new"},
        "attempts": 0,
        "entries": entries,
    });
    serde_json::to_string_pretty(&value).unwrap() + "\n"
}

#[test]
fn python_crash_journals_are_recovered_before_the_import() {
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    // The fixture's journals name the machine it was made on; recovery re-roots them.
    let recorded = "/home/user/openkb-fixtures/legacy-kb-50/kb";
    let openkb = kb.join(".openkb");
    let journal_dir = openkb.join("journal");
    std::fs::create_dir_all(&journal_dir).unwrap();
    let original_registry = read(hashes(&kb));
    let original_index = read(kb.join("wiki/index.md"));

    // An add interrupted half-way: backups taken, then hashes.json, index.md changed and a
    // new summary and raw file written.
    let active = "a".repeat(32);
    let backup_dir = openkb.join(format!("staging/rollback-{active}"));
    std::fs::create_dir_all(backup_dir.join(".openkb")).unwrap();
    std::fs::create_dir_all(backup_dir.join("wiki")).unwrap();
    std::fs::write(backup_dir.join(".openkb/hashes.json"), &original_registry).unwrap();
    std::fs::write(backup_dir.join("wiki/index.md"), &original_index).unwrap();
    let mut half_added: Value = serde_json::from_slice(&original_registry).unwrap();
    half_added.as_object_mut().unwrap().insert(
        "f".repeat(64),
        serde_json::json!({"name": "new.md", "type": "md"}),
    );
    std::fs::write(
        hashes(&kb),
        serde_json::to_string_pretty(&half_added).unwrap(),
    )
    .unwrap();
    std::fs::write(kb.join("wiki/index.md"), "half-written index").unwrap();
    std::fs::write(kb.join("wiki/summaries/new.md"), "new summary").unwrap();
    std::fs::write(kb.join("raw/new.md"), "new raw").unwrap();
    std::fs::write(
        journal_dir.join(format!("{active}.json")),
        journal_json(
            recorded,
            &active,
            "active",
            &[
                (".openkb/hashes.json", Some(".openkb/hashes.json")),
                ("wiki/index.md", Some("wiki/index.md")),
                ("wiki/summaries/new.md", None),
                ("raw/new.md", None),
            ],
        ),
    )
    .unwrap();

    // A committed one and a rolled-back one: only their leftovers are discarded.
    let committed = "b".repeat(32);
    std::fs::create_dir_all(openkb.join(format!("staging/rollback-{committed}/wiki"))).unwrap();
    std::fs::write(
        journal_dir.join(format!("{committed}.json")),
        journal_json(
            recorded,
            &committed,
            "committed",
            &[("wiki/index.md", Some("wiki/index.md"))],
        ),
    )
    .unwrap();
    let rolled = "c".repeat(32);
    std::fs::write(
        journal_dir.join(format!("{rolled}.json")),
        journal_json(recorded, &rolled, "rolled_back", &[]),
    )
    .unwrap();
    // And one nobody can read: reported, left for a person.
    let unreadable = journal_dir.join(format!("{}.json", "d".repeat(32)));
    std::fs::write(&unreadable, "{not json").unwrap();

    let dry = ok(&mut sb.openkb(&kb, &["migrate", "--dry-run"]));
    assert!(
        dry.stdout.contains("interrupted add would be rolled back"),
        "{}",
        dry.stdout
    );
    assert!(kb.join("raw/new.md").exists(), "a dry run recovers nothing");

    let out = ok(&mut sb.openkb(&kb, &["migrate"]));
    assert!(
        out.stdout
            .contains("interrupted add rolled back (4 path(s)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("committed, discarded"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("rolled_back, discarded"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("unreadable"), "{}", out.stdout);
    assert!(
        out.stdout.contains("hashes.json: 50 entries"),
        "{}",
        out.stdout
    );

    assert_eq!(read(kb.join("wiki/index.md")), original_index);
    assert!(!kb.join("wiki/summaries/new.md").exists());
    assert!(!kb.join("raw/new.md").exists());
    assert_eq!(
        read(migrated(&kb)),
        original_registry,
        "the restored registry was imported"
    );
    assert!(!openkb.join(format!("staging/rollback-{active}")).exists());
    assert!(
        !openkb
            .join(format!("staging/rollback-{committed}"))
            .exists()
    );
    assert_eq!(
        names_starting_with(&journal_dir, ""),
        [format!("{}.json", "d".repeat(32))]
    );
    assert_eq!(read(&unreadable), b"{not json");
    let docs = json(&ok(&mut sb.openkb(&kb, &["list", "--json"])))["documents"].clone();
    assert_eq!(docs.as_array().unwrap().len(), 50);
}

#[test]
fn a_journal_pointing_outside_the_kb_is_refused_and_nothing_is_imported() {
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    let outside = sb.path().join("precious.txt");
    std::fs::write(&outside, "do not delete").unwrap();
    let journal_dir = kb.join(".openkb/journal");
    std::fs::create_dir_all(&journal_dir).unwrap();
    let kb_text = kb.canonicalize().unwrap().display().to_string();
    let journal = serde_json::json!({
        "version": 1, "operation": "add", "status": "active", "kb_dir": kb_text,
        "backup_dir": format!("{kb_text}/.openkb/staging/rollback-x"),
        "entries": [{"target": format!("{kb_text}/../precious.txt"), "backup": null}],
    });
    std::fs::write(journal_dir.join("x.json"), journal.to_string()).unwrap();
    let original = read(hashes(&kb));

    let out = run(&mut sb.openkb(&kb, &["migrate"]));
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("refused"), "{}", out.stderr);
    assert_eq!(read(&outside), b"do not delete");
    assert_eq!(read(hashes(&kb)), original);
    assert!(!kb.join(".openkb/state.db").exists());
    assert!(journal_dir.join("x.json").exists());
}

/// Run migrate on a KB whose hashes.json is `bytes`; require a clean failure.
fn assert_refused(sb: &Env, name: &str, bytes: &[u8], expected: &[&str]) {
    let kb = sb.legacy_kb(name, bytes, Some("# Operations Log\n\n"));
    let out = run(&mut sb.openkb(&kb, &["migrate"]));
    assert_eq!(out.code, 1, "{name}: {}{}", out.stdout, out.stderr);
    let path = hashes(&kb.canonicalize().unwrap()).display().to_string();
    assert!(out.stderr.contains(&path), "{name}: {}", out.stderr);
    for needle in expected {
        assert!(
            out.stderr.contains(needle),
            "{name}: {needle:?} in {}",
            out.stderr
        );
    }
    assert_eq!(read(hashes(&kb)), bytes, "{name}: hashes.json untouched");
    assert!(!kb.join(".openkb/state.db").exists(), "{name}: no state.db");
    assert!(!migrated(&kb).exists());
    assert!(
        names_starting_with(&kb.join(".openkb"), "state.db").is_empty(),
        "{name}: no temp database left"
    );
}

#[test]
fn bad_registry_files_fail_cleanly_and_change_nothing() {
    let sb = Env::new();
    let h = "6".repeat(64);
    assert_refused(
        &sb,
        "truncated",
        format!("{{\n  \"{h}\": {{\n    \"name\": \"a.md\",\n").as_bytes(),
        &["truncated", "line 4"],
    );
    assert_refused(
        &sb,
        "invalid",
        format!("{{\n  \"{h}\": {{\"name\": 'a.md'}}\n}}\n").as_bytes(),
        &["invalid JSON", "line 2 column"],
    );
    assert_refused(
        &sb,
        "array",
        b"[\n  {}\n]\n",
        &["expected a JSON object mapping document hashes"],
    );
    assert_refused(
        &sb,
        "entry",
        format!("{{\n  \"{h}\": \"a.md\"\n}}\n").as_bytes(),
        &[&format!("an object as the entry of document {h}"), "line 2"],
    );
    assert_refused(
        &sb,
        "key",
        b"{\n  \"report.md\": {\"name\": \"report.md\"}\n}\n",
        &["\"report.md\" is not a document hash", "line 2"],
    );
    let mut invalid_utf8 = format!("{{\n  \"{h}\": {{\"name\": \"caf").into_bytes();
    invalid_utf8.push(0xff);
    invalid_utf8.extend_from_slice(b".md\"}\n}\n");
    assert_refused(&sb, "utf8", &invalid_utf8, &["invalid UTF-8 at line 2"]);
}

#[test]
fn unreadable_and_read_only_state_fail_cleanly() {
    let sb = Env::new();
    // Unreadable: a folder where the file should be (works even when tests run as root).
    let kb = sb.path().join("dir-kb");
    std::fs::create_dir_all(kb.join(".openkb/hashes.json")).unwrap();
    let out = run(&mut sb.openkb(&kb, &["migrate"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot read") && out.stderr.contains("hashes.json"),
        "{}",
        out.stderr
    );
    assert!(!kb.join(".openkb/state.db").exists());

    // .openkb/ refuses the new database: an injected EACCES where the import creates it, the
    // same for root (which writes through modes) as for anyone else.
    let kb = sb.fixture_kb("ro");
    let openkb = kb.join(".openkb");
    let original = read(hashes(&kb));
    let out = run(sb.openkb(&kb, &["migrate"]).env(
        "OPENKB_TEST_IO_FAULT",
        "create:EACCES:.openkb/state.db.importing-",
    ));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(".openkb/state.db.importing-")
            && out.stderr.contains("Permission denied"),
        "{}",
        out.stderr
    );
    assert_eq!(read(hashes(&kb)), original);
    assert!(!openkb.join("state.db").exists());
}

#[test]
fn log_md_problems_keep_text_or_fail_cleanly() {
    let sb = Env::new();
    let h = "6".repeat(64);
    let registry =
        format!("{{\n  \"{h}\": {{\n    \"name\": \"a.md\",\n    \"type\": \"md\"\n  }}\n}}\n");
    let log = "# Operations Log\n\n## [2026-11-27 01:43:36] ingest | a.md\n\n\
               ## [2026-11-27 01:43:37 broken entry without bracket\n\n\
               ## [2026-11-27 01:43:38] query | first line\nsecond line\n\n";
    let kb = sb.legacy_kb("malformed", registry.as_bytes(), Some(log));
    let out = ok(&mut sb.openkb(&kb, &["migrate"]));
    assert!(
        out.stdout.contains("3 entries imported (1 not in the"),
        "{}",
        out.stdout
    );
    let rows = json(&ok(&mut sb.openkb(&kb, &["log", "--all", "--json"])))["entries"].clone();
    assert_eq!(rows[1]["operation"], "unparsed");
    assert_eq!(
        rows[1]["description"],
        "## [2026-11-27 01:43:37 broken entry without bracket"
    );
    assert_eq!(rows[2]["description"], "first line\nsecond line");
    assert_eq!(rows[2]["timestamp"], "2026-11-27 01:43:38");

    let kb = sb.legacy_kb(
        "bad-log",
        registry.as_bytes(),
        Some("# Operations Log\n\n## [t] query | caf\u{e9}\n\n"),
    );
    let mut bytes = read(kb.join("wiki/log.md"));
    let at = bytes.iter().position(|&b| b == 0xc3).unwrap();
    bytes[at] = 0xff;
    std::fs::write(kb.join("wiki/log.md"), &bytes).unwrap();
    let out = run(&mut sb.openkb(&kb, &["migrate"]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("wiki/log.md: invalid UTF-8 at line 3"),
        "{}",
        out.stderr
    );
    assert_eq!(read(hashes(&kb)), registry.as_bytes());
    assert!(!kb.join(".openkb/state.db").exists());
}

#[test]
fn dry_run_changes_nothing() {
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    let before = snapshot(&kb);
    let out = ok(&mut sb.openkb(&kb, &["migrate", "--dry-run"]));
    assert!(
        out.stdout.contains("Dry run: nothing was changed"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("documents: 50 to import"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("4  0.1: name, type"), "{}", out.stdout);
    assert!(
        out.stdout.contains("wiki/log.md: 57 entries to import"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("would be renamed to .openkb/hashes.json.migrated")
    );
    assert_eq!(before, snapshot(&kb));
}

#[test]
fn concurrent_migrates_import_once() {
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    // Hold the KB lock so that both processes are waiting when it is released.
    let lock = openkb::lock::acquire(
        &kb.join(".openkb/ingest.lock"),
        openkb::lock::LockMode::Exclusive,
        &kb,
    )
    .unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            let mut child = Background::start(&mut sb.openkb(&kb, &["migrate"]));
            child.wait_for_stderr("waiting for another openkb process");
            child
        })
        .collect();
    assert!(
        !kb.join(".openkb/state.db").exists(),
        "nobody imports while the lock is held"
    );
    drop(lock);
    let outputs: Vec<String> = children
        .into_iter()
        .map(|c| {
            let (status, out, err) = c.finish();
            assert!(status.success(), "{err}");
            out
        })
        .collect();
    assert_eq!(
        outputs.iter().filter(|o| o.contains("Migrated ")).count(),
        1,
        "{outputs:?}"
    );
    assert_eq!(
        outputs
            .iter()
            .filter(|o| o.contains("already migrated"))
            .count(),
        1,
        "{outputs:?}"
    );
    let docs = json(&ok(&mut sb.openkb(&kb, &["list", "--json"])))["documents"].clone();
    assert_eq!(docs.as_array().unwrap().len(), 50);
    let migrate_rows = json(&ok(
        &mut sb.openkb(&kb, &["log", "--all", "--json", "--op", "migrate"])
    ))["entries"]
        .clone();
    assert_eq!(migrate_rows.as_array().unwrap().len(), 1);
}

#[test]
fn drift_merges_additions_and_edits_of_the_python_tool() {
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    ok(&mut sb.openkb(&kb, &["migrate"]));
    let first_migrated = read(migrated(&kb));
    let original: Value = serde_json::from_slice(&first_migrated).unwrap();
    let original = original.as_object().unwrap();
    let (same_hash, same_entry) = original.iter().next().unwrap();
    let (changed_hash, changed_entry) = original.iter().nth(1).unwrap();
    let mut changed_entry = changed_entry.clone();
    changed_entry["name"] = Value::from("renamed by python.md");
    let taken_doc_name = same_entry["doc_name"].as_str().unwrap().to_owned();

    // The hashes.json went back to the Python tool, which edited one entry and added two
    // (appended, as Python dicts do).
    let new1 = "e".repeat(64);
    let new2 = "d".repeat(64);
    let mut drift = original.clone();
    assert_eq!(&drift[same_hash], same_entry);
    drift.insert(changed_hash.clone(), changed_entry);
    drift.insert(new1.clone(), serde_json::json!({"name": "later.md", "doc_name": "later", "type": "md", "path": "inbox/later.md", "raw_path": "raw/later.md", "source_path": "wiki/sources/later.md"}));
    drift.insert(
        new2.clone(),
        serde_json::json!({"name": "clash.md", "doc_name": taken_doc_name, "type": "md"}),
    );
    let mut text = String::new();
    openkb::legacy::export::write_value(&mut text, &Value::Object(drift), 0);
    text.push('\n');
    std::fs::write(hashes(&kb), &text).unwrap();
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(kb.join("wiki/log.md"))
        .unwrap();
    use std::io::Write;
    log.write_all(b"## [2026-11-28 09:00:00] ingest | later.md\n\n## [2026-11-28 09:00:01] ingest | clash.md\n\n").unwrap();
    drop(log);

    let warned = ok(&mut sb.openkb(&kb, &["list"]));
    assert!(
        warned.stderr.contains("reappeared after migration"),
        "{}",
        warned.stderr
    );

    let dry = ok(&mut sb.openkb(&kb, &["migrate", "--dry-run"]));
    assert!(
        dry.stdout.contains(
            "2 new to merge, 1 updated, 0 removed, 49 already in state.db unchanged, 0 conflicting"
        ),
        "{}",
        dry.stdout
    );
    assert!(hashes(&kb).exists());

    let out = ok(&mut sb.openkb(&kb, &["migrate"]));
    assert!(
        out.stdout.contains(
            "2 new merged, 1 updated, 0 removed, 49 already in state.db unchanged, 0 conflicting"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("updated: {changed_hash}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("hashes.json.migrated.2"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("wiki/log.md: 2 entries imported"),
        "{}",
        out.stdout
    );

    // The earlier .migrated is not overwritten; the drift file is kept whole.
    assert_eq!(read(migrated(&kb)), first_migrated);
    assert_eq!(
        read(kb.join(".openkb/hashes.json.migrated.2")),
        text.as_bytes()
    );
    assert!(!hashes(&kb).exists());

    let docs = json(&ok(&mut sb.openkb(&kb, &["list", "--json"])))["documents"].clone();
    let docs = docs.as_array().unwrap();
    assert_eq!(docs.len(), 52);
    assert_eq!(docs[50]["hash"], new1.as_str());
    assert_eq!(docs[51]["hash"], new2.as_str());
    assert_eq!(docs[51]["extra"]["doc_name"], taken_doc_name.as_str());
    // The edit is taken (only the Python tool changed the entry) and keeps its position.
    assert_eq!(docs[1]["hash"], changed_hash.as_str());
    assert_eq!(docs[1]["name"], "renamed by python.md");
    let log = json(&ok(&mut sb.openkb(&kb, &["log", "-n", "3", "--json"])))["entries"].clone();
    assert_eq!(log[0]["description"], "later.md");
    assert_eq!(log[1]["description"], "clash.md");
    assert_eq!(log[2]["operation"], "migrate");
    assert!(
        log[2]["description"]
            .as_str()
            .unwrap()
            .starts_with("merged hashes.json: 2 added, 1 updated, 0 removed")
    );

    // The export writes the two merged entries exactly as the file had them.
    let export = ok(&mut sb.openkb(&kb, &["export", "--legacy-json"]));
    let exported: Value = serde_json::from_slice(&export.stdout_bytes).unwrap();
    let drift_value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(exported[&new1], drift_value[&new1]);
    assert_eq!(exported[&new2], drift_value[&new2]);

    let again = ok(&mut sb.openkb(&kb, &["migrate"]));
    assert!(
        again.stdout.contains("already migrated"),
        "{}",
        again.stdout
    );
    let state = json(&ok(&mut sb.openkb(&kb, &["export", "--json"])));
    assert_eq!(state["imports"][1]["kind"], "drift-merge");
    assert_eq!(state["imports"][1]["conflicting_entries"], 0);
}

#[test]
fn migrate_all_reports_each_kb_and_goes_on_after_a_failure() {
    let sb = Env::new();
    let good = sb.fixture_kb("good");
    let broken = sb.legacy_kb("broken", b"{\"not-a-hash\": {}}", None);
    let done = sb.fixture_kb("done");
    ok(&mut sb.openkb(&done, &["migrate"]));
    let gone = sb.path().join("gone");
    let last = sb.fixture_kb("last");
    let kbs = [&good, &broken, &done, &gone, &last];
    let yaml = format!(
        "default_kb: {}\nknown_kbs:\n{}",
        good.display(),
        kbs.iter()
            .map(|k| format!("- {}\n", k.display()))
            .collect::<String>()
    );
    std::fs::create_dir_all(sb.home().join(".config/openkb")).unwrap();
    std::fs::write(sb.home().join(".config/openkb/global.yaml"), yaml).unwrap();

    let out = run(&mut sb.openkb_bare(&["migrate", "--all"]));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(lines.len(), 5, "{}", out.stdout);
    assert_eq!(
        lines[0],
        format!(
            "{}: migrated 50 documents and 57 log entries",
            good.display()
        )
    );
    assert!(
        lines[1].starts_with(&format!("{}: FAILED: ", broken.display())),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("is not a document hash"), "{}", lines[1]);
    assert_eq!(lines[2], format!("{}: already migrated", done.display()));
    assert!(
        lines[3].starts_with(&format!("{}: not a KB anymore", gone.display())),
        "{}",
        lines[3]
    );
    assert_eq!(
        lines[4],
        format!(
            "{}: migrated 50 documents and 57 log entries",
            last.display()
        )
    );
    assert!(
        out.stderr.contains("1 of 5 knowledge base(s) failed"),
        "{}",
        out.stderr
    );
    assert!(migrated(&good).exists() && migrated(&last).exists());
    assert!(hashes(&broken).exists() && !broken.join(".openkb/state.db").exists());
}

#[test]
fn a_legacy_kb_is_refused_by_other_commands_until_migrated() {
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    let out = run(&mut sb.openkb(&kb, &["list"]));
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("openkb migrate"), "{}", out.stderr);
    assert!(!kb.join(".openkb/state.db").exists());
    let out = run(&mut sb.openkb(&kb, &["export", "--legacy-json"]));
    assert_eq!(out.code, 3);
    ok(&mut sb.openkb(&kb, &["migrate"]));
    ok(&mut sb.openkb(&kb, &["list"]));
}

#[test]
fn a_kb_without_hashes_json_has_nothing_to_migrate_and_gets_no_state_db() {
    let sb = Env::new();
    let kb = sb.path().join("empty");
    std::fs::create_dir_all(kb.join(".openkb")).unwrap();
    let out = ok(&mut sb.openkb(&kb, &["migrate"]));
    assert!(out.stdout.contains("Nothing to migrate"), "{}", out.stdout);
    assert!(!kb.join(".openkb/state.db").exists());
}

#[test]
fn a_migration_interrupted_before_the_rename_is_finished_by_the_next_run() {
    // The state after a crash between the commit and the rename: state.db complete, the
    // same hashes.json still in place.
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    let original = read(hashes(&kb));
    ok(&mut sb.openkb(&kb, &["migrate"]));
    std::fs::write(hashes(&kb), &original).unwrap();
    let out = ok(&mut sb.openkb(&kb, &["migrate"]));
    assert!(
        out.stdout.contains(
            "0 new merged, 0 updated, 0 removed, 50 already in state.db unchanged, 0 conflicting"
        ),
        "{}",
        out.stdout
    );
    assert_eq!(read(kb.join(".openkb/hashes.json.migrated.2")), original);
    assert!(!hashes(&kb).exists());
    let docs = json(&ok(&mut sb.openkb(&kb, &["list", "--json"])))["documents"].clone();
    assert_eq!(docs.as_array().unwrap().len(), 50);
    // Finishing is the rename alone: no second import record, no second `migrate` row.
    let state = json(&ok(&mut sb.openkb(&kb, &["export", "--json"])));
    assert_eq!(state["imports"].as_array().unwrap().len(), 1);
    let migrates = state["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["operation"] == "migrate")
        .count();
    assert_eq!(migrates, 1);
}

#[test]
fn an_orphan_wal_blocks_the_import_instead_of_being_replayed() {
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    std::fs::write(kb.join(".openkb/state.db-wal"), b"stale").unwrap();
    let out = run(&mut sb.openkb(&kb, &["migrate"]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("state.db-wal exists without state.db"),
        "{}",
        out.stderr
    );
    assert!(hashes(&kb).exists());
    assert!(!kb.join(".openkb/state.db").exists());
}

/// Write a legacy KB of `n` 0.4-shaped entries and as many log lines.
fn big_legacy_kb(sb: &Env, name: &str, n: usize) -> PathBuf {
    use sha2::Digest;
    let docs: Vec<openkb::state::Document> = (0..n)
        .map(|i| {
            let hash: String = sha2::Sha256::digest(format!("doc {i}").as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let mut doc = openkb::state::Document::new(hash);
            doc.name = Some(format!("doc-{i}.md"));
            doc.doc_name = Some(format!("doc-{i}"));
            doc.doc_type = Some("md".into());
            doc.path = Some(format!("inbox/doc-{i}.md"));
            doc.raw_path = Some(format!("raw/doc-{i}.md"));
            doc.source_path = Some(format!("wiki/sources/doc-{i}.md"));
            doc
        })
        .collect();
    let mut registry = String::new();
    openkb::legacy::export::write_registry(&mut registry, &docs);
    let mut log = String::from("# Operations Log\n\n");
    for i in 0..n {
        log.push_str(&format!("## [2026-01-01 00:00:00] ingest | doc-{i}.md\n\n"));
    }
    sb.legacy_kb(name, registry.as_bytes(), Some(&log))
}

#[test]
fn a_migration_killed_at_any_moment_leaves_no_state_db_or_a_complete_one() {
    let sb = Env::new();
    let n = 4_000;
    for (round, delay_ms) in [5u64, 100, 250, 350, 450, 600, 900].into_iter().enumerate() {
        let kb = big_legacy_kb(&sb, &format!("kb{round}"), n);
        let original = read(hashes(&kb));
        let mut child = sb
            .openkb(&kb, &["migrate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();

        let db = kb.join(".openkb/state.db");
        eprintln!(
            "round {round} (killed after {delay_ms} ms): state.db {}, temp {:?}",
            if db.exists() { "present" } else { "absent" },
            names_starting_with(&kb.join(".openkb"), "state.db.importing")
        );
        if db.exists() {
            // Placed only when complete.
            let docs = json(&ok(&mut sb.openkb(&kb, &["list", "--json"])))["documents"].clone();
            assert_eq!(docs.as_array().unwrap().len(), n, "round {round}");
        } else {
            assert_eq!(read(hashes(&kb)), original, "round {round}");
        }
        // Whatever the moment, the next run finishes the job.
        ok(&mut sb.openkb(&kb, &["migrate"]));
        assert!(!hashes(&kb).exists(), "round {round}");
        assert!(names_starting_with(&kb.join(".openkb"), "state.db.importing").is_empty());
        let docs = json(&ok(&mut sb.openkb(&kb, &["list", "--json"])))["documents"].clone();
        assert_eq!(docs.as_array().unwrap().len(), n, "round {round}");
        let exported = ok(&mut sb.openkb(&kb, &["export", "--legacy-json"])).stdout_bytes;
        let kept = names_starting_with(&kb.join(".openkb"), "hashes.json.migrated");
        assert!(
            kept.iter()
                .any(|k| read(kb.join(".openkb").join(k)) == original),
            "round {round}: {kept:?}"
        );
        assert_eq!(exported, original, "round {round}");
        std::fs::remove_dir_all(&kb).unwrap();
    }
}
