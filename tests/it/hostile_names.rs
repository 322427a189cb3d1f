//! Hostile names and values: control characters in file names and legacy entries, huge names,
//! absurd `OPENKB_LOCK_TIMEOUT` values, duplicate legacy entries, colliding long stems; and
//! property tests of the parsers that read what the Python tool (or anyone) left on disk.
//!
//! Every command test keeps a canary folder outside the KB and a snapshot of the KB tree, and
//! checks that nothing outside changed and nothing inside changed but the named document's
//! own files (and the bookkeeping the command is there to write).

use std::path::Path;

use crate::harness::{Env, Guard, kb_snapshot, stderr, stdout, tree_snapshot};
use openkb::legacy::{self, export, hashes_json, journal};
use openkb::log_md;
use openkb::names;
use openkb::state::LogEntry;
use proptest::prelude::*;
use serde_json::{Map, Value};

const FORGED: &str = "## [2020-01-01 00:00:00] remove | forged";

fn no_terminal_controls(text: &str) {
    assert!(
        !text.chars().any(|c| c != '\n' && names::is_unsafe_char(c)),
        "control character printed: {text:?}"
    );
}

#[test]
fn a_name_with_newlines_and_escapes_forges_no_log_or_index_line() {
    let env = Env::with_kb();
    let mut guard = Guard::new(env.path(), &env.kb());
    let name = format!("evil\n{FORGED}\r\u{1b}[31mred\u{202e}txt\u{2028}.md");
    let file = env.write(&format!("inbox/{name}"), "hostile\n");
    guard.retake();

    let add = env.run(&["add", file.to_str().unwrap()]);
    assert!(add.status.success(), "{}", stderr(&add));
    no_terminal_controls(&stdout(&add));
    no_terminal_controls(&stderr(&add));

    // Only the document's own files and the two pages it is listed in changed.
    let docs = env.docs();
    assert_eq!(docs.len(), 1);
    let doc_name = docs[0].doc_name.clone().unwrap();
    assert!(!doc_name.contains(['\n', '\r', '\u{1b}']), "{doc_name:?}");
    let mut expected = vec![
        format!("raw/{doc_name}.md"),
        format!("wiki/sources/{doc_name}.md"),
        "wiki/index.md".to_owned(),
        "wiki/log.md".to_owned(),
    ];
    expected.sort();
    let got = guard.changed_files();
    assert_eq!(got, expected);

    let log_md = std::fs::read_to_string(env.kb().join("wiki/log.md")).unwrap();
    assert!(!log_md.lines().any(|l| l.starts_with(FORGED)), "{log_md}");
    assert_eq!(log_md.lines().filter(|l| l.starts_with("## [")).count(), 1);
    let entries = log_md::parse_text(&log_md);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].operation, "ingest");
    assert_eq!(
        entries[0].description, name,
        "the parser reads back the name"
    );

    let index = std::fs::read_to_string(env.kb().join("wiki/index.md")).unwrap();
    assert_eq!(
        index
            .lines()
            .filter(|l| l.contains("remove | forged"))
            .count(),
        1,
        "{index}"
    );
    assert!(!index.lines().any(|l| l.starts_with(FORGED)), "{index}");

    for args in [&["list"][..], &["log"], &["status"], &["doctor"], &["lint"]] {
        let out = env.run(args);
        no_terminal_controls(&stdout(&out));
        no_terminal_controls(&stderr(&out));
        assert!(
            !stdout(&out).lines().any(|l| l.starts_with(FORGED)),
            "{args:?}: {}",
            stdout(&out)
        );
    }

    // doctor --fix rebuilds a lost state.db from the files, log.md included: the forged row
    // must stay part of the name, not become a `remove` row.
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(env.kb().join(".openkb").join(f));
    }
    let fix = env.run(&["doctor", "--fix"]);
    no_terminal_controls(&stdout(&fix));
    let removes = env.run(&["log", "--all", "--op", "remove", "--json"]);
    assert!(removes.status.success(), "{}", stderr(&removes));
    let rows: Value = serde_json::from_slice(&removes.stdout).unwrap();
    assert_eq!(rows["entries"].as_array().map(Vec::len), Some(0), "{rows}");
    guard.assert_outside_unchanged("");
}

#[test]
fn remove_prints_and_logs_a_hostile_name_escaped() {
    let env = Env::with_kb();
    let mut guard = Guard::new(env.path(), &env.kb());
    let file = env.write("inbox/x\u{1b}]0;title\u{7}\ny.md", "x\n");
    assert!(env.run(&["add", file.to_str().unwrap()]).status.success());
    let hash = env.docs()[0].hash.clone();
    let doc_name = env.docs()[0].doc_name.clone().unwrap();
    guard.retake();
    let out = env.run(&["remove", "-y", &hash[..10]]);
    assert!(out.status.success(), "{}", stderr(&out));
    no_terminal_controls(&stdout(&out));
    let got = guard.changed_files();
    let mut expected = vec![
        format!("raw/{doc_name}.md"),
        format!("wiki/sources/{doc_name}.md"),
        "wiki/index.md".to_owned(),
        "wiki/log.md".to_owned(),
    ];
    expected.sort();
    assert_eq!(got, expected);
    let log_md = std::fs::read_to_string(env.kb().join("wiki/log.md")).unwrap();
    assert_eq!(log_md.lines().filter(|l| l.starts_with("## [")).count(), 2);
    assert!(!log_md.contains('\u{1b}'));
    guard.assert_outside_unchanged("");
}

/// A migrated legacy KB with `entries` (hash -> entry) and the given files.
fn legacy_env(entries: &Value, files: &[(&str, &str)]) -> Env {
    let env = Env::new();
    let kb = env.kb();
    std::fs::create_dir_all(kb.join(".openkb")).unwrap();
    std::fs::create_dir_all(kb.join("wiki")).unwrap();
    std::fs::write(
        kb.join(".openkb/hashes.json"),
        serde_json::to_vec(entries).unwrap(),
    )
    .unwrap();
    for (rel, text) in files {
        let path = kb.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let out = env.run(&["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    env
}

#[test]
fn list_shows_a_multi_megabyte_legacy_name_cut_without_panicking() {
    let long = format!("{}\u{1b}.md", "n".repeat(3 << 20));
    let entries = serde_json::json!({ "a".repeat(64): {"name": long, "type": "md"} });
    let env = legacy_env(&entries, &[]);
    let guard = Guard::new(env.path(), &env.kb());
    let before = kb_snapshot(&env.kb());
    for args in [
        &["list"][..],
        &["status"],
        &["doctor"],
        &["remove", "--dry-run", "aaaa"],
    ] {
        let out = env.run(args);
        assert_ne!(
            out.status.code(),
            Some(101),
            "{args:?} panicked: {}",
            stderr(&out)
        );
        no_terminal_controls(&stdout(&out));
        let longest = stdout(&out).lines().map(str::len).max().unwrap_or(0);
        assert!(longest < 4096, "{args:?} printed a {longest}-byte line");
    }
    let list = env.run(&["list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    assert!(stdout(&list).contains("more bytes)"), "{}", stdout(&list));
    assert_eq!(kb_snapshot(&env.kb()), before);
    guard.assert_outside_unchanged("");
}

#[test]
fn absurd_lock_timeouts_are_clear_errors_in_every_command() {
    let env = Env::with_kb();
    let guard = Guard::new(env.path(), &env.kb());
    let file = env.write("inbox/a.md", "a\n");
    let file = file.to_str().unwrap();
    let before = kb_snapshot(&env.kb());
    let commands: [&[&str]; 13] = [
        &["init"],
        &["use"],
        &["list"],
        &["status"],
        &["log"],
        &["add", file],
        &["remove", "-y", "a"],
        &["compile", "--pending"],
        &["doctor"],
        &["doctor", "--fix"],
        &["lint"],
        &["export", "--legacy-json"],
        &["migrate"],
    ];
    for value in [
        "99999999999999999999",
        "-1",
        "NaN",
        "inf",
        "-inf",
        "1e400",
        "ten",
        "604801",
    ] {
        for args in commands {
            let out = env
                .cmd()
                .env("OPENKB_LOCK_TIMEOUT", value)
                .args(args)
                .output()
                .unwrap();
            let err = stderr(&out);
            assert!(
                !out.status.success() && out.status.code() != Some(101),
                "{value} {args:?}: {:?} {err}",
                out.status
            );
            assert!(
                err.contains("OPENKB_LOCK_TIMEOUT"),
                "{value} {args:?}: {err}"
            );
            assert!(!err.contains("panicked"), "{value} {args:?}: {err}");
        }
    }
    // Within bounds the value is accepted.
    let ok = env
        .cmd()
        .env("OPENKB_LOCK_TIMEOUT", "0.5")
        .arg("list")
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(kb_snapshot(&env.kb()), before);
    guard.assert_outside_unchanged("");
}

#[test]
fn duplicate_legacy_entries_are_removed_one_at_a_time_by_hash() {
    let b = "b".repeat(64);
    let c = format!("bbbb{}", "c".repeat(60));
    let entry = serde_json::json!({"name": "same.md", "type": "md", "doc_name": "same",
                                    "raw_path": "raw/same.md"});
    let entries = serde_json::json!({ b.clone(): entry.clone(), c.clone(): entry });
    let env = legacy_env(
        &entries,
        &[
            ("raw/same.md", "same\n"),
            ("wiki/summaries/same.md", "summary\n"),
            (
                "wiki/index.md",
                "# Index\n\n## Documents\n- [[summaries/same]] (short) — same.md\n",
            ),
        ],
    );
    let mut guard = Guard::new(env.path(), &env.kb());
    guard.retake();

    let by_name = env.run(&["remove", "-y", "same"]);
    assert!(!by_name.status.success());
    let err = stderr(&by_name);
    assert!(err.contains(&b[..12]) && err.contains(&c[..12]), "{err}");
    let ambiguous = env.run(&["remove", "-y", "bbbb"]);
    assert!(!ambiguous.status.success());
    assert!(
        stderr(&ambiguous).contains(&c[..12]),
        "{}",
        stderr(&ambiguous)
    );
    assert!(
        guard.changed_files().is_empty(),
        "a refused remove changes nothing"
    );

    // The hash the plan prints is accepted; the other entry's files and index line stay.
    let first = env.run(&["remove", "-y", &b[..12]]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains(&format!("hash {}", &b[..12])));
    let got = guard.changed_files();
    assert_eq!(got, ["wiki/log.md"]);
    assert_eq!(env.docs().len(), 1);

    let second = env.run(&["remove", "-y", &c[..]]);
    assert!(second.status.success(), "{}", stderr(&second));
    let got = guard.changed_files();
    assert_eq!(
        got,
        [
            "raw/same.md",
            "wiki/index.md",
            "wiki/log.md",
            "wiki/summaries/same.md"
        ]
    );
    assert!(env.docs().is_empty());
    guard.assert_outside_unchanged("");
}

#[test]
fn colliding_long_stems_get_names_that_fit_the_file_system() {
    let env = Env::with_kb();
    let mut guard = Guard::new(env.path(), &env.kb());
    // 252 bytes: the stem plus `.md` is exactly NAME_MAX, and `é` is two bytes wide.
    let stem = format!("{}ab", "é".repeat(125));
    let a = env.write(&format!("in/a/{stem}.md"), "one\n");
    let b = env.write(&format!("in/b/{stem}.md"), "two\n");
    guard.retake();
    let out = env.run(&["add", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("rollback failed"),
        "{}",
        stderr(&out)
    );
    let docs = env.docs();
    assert_eq!(docs.len(), 2);
    let mut expected = vec!["wiki/index.md".to_owned(), "wiki/log.md".to_owned()];
    for doc in &docs {
        let d = doc.doc_name.as_deref().unwrap();
        assert!(d.len() + ".md".len() <= 255, "{} bytes", d.len());
        expected.push(format!("raw/{d}.md"));
        expected.push(format!("wiki/sources/{d}.md"));
    }
    assert!(docs[1].doc_name.as_deref().unwrap().starts_with("ééé"));
    expected.sort();
    let got = guard.changed_files();
    assert_eq!(got, expected);
    guard.assert_outside_unchanged("");
}

// ---------------------------------------------------------------------------------------------
// Property tests: the parsers and the name rules never panic, and round-trip where promised.

fn any_text() -> impl Strategy<Value = String> {
    // Arbitrary text, biased towards what breaks line formats and escapes.
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just("\n".to_owned()),
                Just("\r".to_owned()),
                Just("\\".to_owned()),
                Just("\\u{".to_owned()),
                Just("}".to_owned()),
                Just("## [".to_owned()),
                Just("] ".to_owned()),
                Just(" | ".to_owned()),
                Just("\u{1b}".to_owned()),
                Just("\u{2028}".to_owned()),
                Just("a".to_owned()),
                Just("é".to_owned()),
                "[0-9a-fA-F]{1,7}",
            ],
            0..24
        )
        .prop_map(|parts| parts.concat()),
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn entry(timestamp: String, operation: String, description: String) -> LogEntry {
    LogEntry {
        id: 0,
        timestamp,
        operation,
        description,
        recorded_at: None,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn escaping_never_makes_a_line_break_and_round_trips(text in any_text()) {
        let escaped = names::escape_line(&text);
        prop_assert!(!escaped.chars().any(names::is_unsafe_char), "{escaped:?}");
        prop_assert_eq!(names::unescape_line(&escaped), text.as_str());
        let shown = names::shown(&text);
        prop_assert!(!shown.chars().any(names::is_unsafe_char));
        prop_assert!(shown.chars().count() <= names::SHOWN_MAX_CHARS + 40);
        let message = names::shown_message(&text);
        prop_assert_eq!(message.lines().count(), text.lines().count());
    }

    #[test]
    fn log_md_render_then_parse_gives_the_entries_back(
        rows in proptest::collection::vec(
            ("[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}", "[a-z_]{1,12}", any_text()),
            0..8,
        )
    ) {
        let entries: Vec<LogEntry> =
            rows.into_iter().map(|(t, o, d)| entry(t, o, d)).collect();
        let mut page = String::from("# Operations Log\n\n");
        for e in &entries {
            page.push_str(&log_md::entry(e));
        }
        let parsed: Vec<(String, String, String)> = log_md::parse_text(&page)
            .into_iter()
            .map(|e| (e.timestamp, e.operation, e.description))
            .collect();
        let expected: Vec<(String, String, String)> = entries
            .into_iter()
            .map(|e| (e.timestamp, e.operation, e.description))
            .collect();
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn an_unparsed_block_renders_and_parses_back(text in any_text()) {
        let kept = entry(String::new(), log_md::UNPARSED.to_owned(), text.clone());
        let page = format!("# Operations Log\n\n{}", log_md::entry(&kept));
        let parsed = log_md::parse_text(&page);
        prop_assert_eq!(parsed.len(), 1);
        prop_assert!(parsed[0].is_unparsed());
        prop_assert_eq!(&parsed[0].description, &text);
    }

    #[test]
    fn the_log_md_parser_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                        text in any_text()) {
        let _ = log_md::parse(Path::new("log.md"), &bytes);
        // Nothing is dropped: every line of the page but the header and blank ones is in an
        // entry (escaped or not).
        let entries = log_md::parse_text(&text);
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && *l != "# Operations Log") {
            let line = line.trim_start_matches('\u{feff}');
            prop_assert!(
                line.is_empty() || entries.iter().any(|e| {
                    let d = &e.description;
                    d.contains(line) || d.contains(names::unescape_line(line).as_ref())
                        || line.contains(names::unescape_line(d).as_ref())
                        || line.contains(e.timestamp.as_str()) && line.contains(e.operation.as_str())
                }),
                "line {line:?} lost: {entries:?}"
            );
        }
    }

    #[test]
    fn the_hashes_json_parser_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                             text in any_text()) {
        let _ = hashes_json::parse(Path::new("hashes.json"), &bytes);
        let _ = hashes_json::parse(Path::new("hashes.json"), text.as_bytes());
        let _ = hashes_json::parse_documents(Path::new("hashes.json"), &bytes);
    }

    #[test]
    fn an_imported_hashes_json_exports_byte_for_byte(registry in registry()) {
        let mut original = String::new();
        export::write_value(&mut original, &Value::Object(registry), 0);
        original.push('\n');
        let entries = hashes_json::parse(Path::new("hashes.json"), original.as_bytes())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        // As migrate does: a doc_name owned by an earlier entry is kept in `extra`.
        let mut owned = std::collections::HashSet::new();
        let docs: Vec<_> = entries
            .into_iter()
            .map(|e| {
                let doc_name = e.meta.get("doc_name").and_then(Value::as_str).map(str::to_owned);
                let elsewhere = doc_name.is_some_and(|d| !owned.insert(d));
                legacy::document_from_entry(e, elsewhere)
            })
            .collect();
        let mut exported = String::new();
        export::write_registry(&mut exported, &docs);
        prop_assert_eq!(&exported, &original);

        // And through a real state.db: what `export --legacy-json` writes after `migrate`.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".openkb")).unwrap();
        let store = openkb::kb::Kb::at(dir.path())
            .unwrap()
            .write_session_creating()
            .unwrap();
        store
            .write(|tx| docs.iter().try_for_each(|d| tx.upsert_document(d)))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut from_db = String::new();
        export::write_registry(&mut from_db, &store.list().unwrap());
        prop_assert_eq!(from_db, original);
    }

    #[test]
    fn journals_of_any_content_are_inspected_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        value in json_value(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let journals = dir.path().join(".openkb/journal");
        std::fs::create_dir_all(&journals).unwrap();
        std::fs::write(journals.join("a.json"), &bytes).unwrap();
        std::fs::write(journals.join("b.json"), serde_json::to_vec(&value).unwrap()).unwrap();
        let mut object = Map::new();
        object.insert("kb_dir".into(), Value::String(dir.path().display().to_string()));
        object.insert("backup_dir".into(), value.clone());
        object.insert("entries".into(), Value::Array(vec![value.clone()]));
        std::fs::write(journals.join("c.json"), serde_json::to_vec(&object).unwrap()).unwrap();
        let before = tree_snapshot(dir.path(), &[]);
        let kb = openkb::kb::Kb::at(dir.path()).unwrap();
        let reports = journal::inspect(&kb).unwrap();
        prop_assert_eq!(reports.len(), 3);
        prop_assert_eq!(tree_snapshot(dir.path(), &[]), before, "inspect changes nothing");
    }

    #[test]
    fn the_sanitiser_makes_a_clean_name_of_anything(stem in any_text()) {
        let name = openkb::ingest::docname::sanitize(&stem);
        prop_assert!(!name.is_empty());
        prop_assert!(name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-'), "{name:?}");
        prop_assert!(!name.starts_with('-') && !name.ends_with('-'));
        prop_assert_eq!(openkb::ingest::docname::sanitize(&name), name.clone());
        prop_assert_eq!(names::escape_line(&name), name.as_str());
        for max in [0, 1, 2, 5, 255] {
            let cut = names::truncate_bytes(&name, max);
            prop_assert!(cut.len() <= max && name.starts_with(cut));
        }
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((any_text(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A registry as the Python tool could have written it: 64-hex keys, entries with known and
/// unknown keys holding any JSON.
fn registry() -> impl Strategy<Value = Map<String, Value>> {
    let key = prop_oneof![
        Just("name".to_owned()),
        Just("type".to_owned()),
        Just("doc_name".to_owned()),
        Just("path".to_owned()),
        Just("raw_path".to_owned()),
        Just("source_path".to_owned()),
        Just("doc_id".to_owned()),
        Just("pages".to_owned()),
        "[a-z_]{1,8}",
    ];
    let meta = proptest::collection::vec((key, json_value()), 0..6)
        .prop_map(|kv| kv.into_iter().collect::<Map<String, Value>>());
    proptest::collection::vec(("[0-9a-f]{64}", meta), 0..5).prop_map(|entries| {
        entries
            .into_iter()
            .map(|(h, m)| (h, Value::Object(m)))
            .collect()
    })
}

#[test]
fn a_name_holding_a_wikilink_adds_no_link_to_the_index() {
    let env = Env::with_kb();
    let mut guard = Guard::new(env.path(), &env.kb());
    let evil = env.write("inbox/evil [[victim]] ]].md", "evil\n");
    guard.retake();
    let add = env.run(&["add", evil.to_str().unwrap()]);
    assert!(add.status.success(), "{}", stderr(&add));
    let index = std::fs::read_to_string(env.kb().join("wiki/index.md")).unwrap();
    let links: Vec<&str> = openkb::wiki::links(&index)
        .iter()
        .map(|l| l.target)
        .collect();
    assert_eq!(links, ["summaries/evil-victim"], "{index}");
    let got = guard.changed_files();
    assert_eq!(
        got,
        [
            "raw/evil-victim.md",
            "wiki/index.md",
            "wiki/log.md",
            "wiki/sources/evil-victim.md"
        ]
    );
    guard.assert_outside_unchanged("");
}

#[test]
fn a_negative_schema_version_is_reported_not_a_panic() {
    let env = Env::with_kb();
    let guard = Guard::new(env.path(), &env.kb());
    let db = env.kb().join(".openkb/state.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA user_version = -1")
        .unwrap();
    let before = kb_snapshot(&env.kb());
    for args in [&["list"][..], &["status"], &["add", "nothing.md"], &["log"]] {
        let out = env.run(args);
        assert_ne!(out.status.code(), Some(101), "{args:?}: {}", stderr(&out));
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("user_version is -1"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let doctor = env.run(&["doctor"]);
    assert!(
        stdout(&doctor).contains("schema version -1"),
        "{}",
        stdout(&doctor)
    );
    assert_eq!(kb_snapshot(&env.kb()), before);
    let fix = env.run(&["doctor", "--fix"]);
    assert!(fix.status.success(), "{}{}", stdout(&fix), stderr(&fix));
    assert!(env.run(&["list"]).status.success());
    guard.assert_outside_unchanged("");
}

#[test]
fn python_multi_line_entries_match_the_table_and_are_imported_once() {
    let env = legacy_env(
        &serde_json::json!({}),
        &[(
            "wiki/log.md",
            "# Operations Log\n\n## [2026-01-01 00:00:00] query | line one\nline two\n\n",
        )],
    );
    let guard = Guard::new(env.path(), &env.kb());
    let log_md = env.kb().join("wiki/log.md");
    let before = std::fs::read(&log_md).unwrap();
    let doctor = env.run(&["doctor"]);
    assert!(
        stdout(&doctor).contains("log.md: wiki/log.md matches the log table"),
        "{}",
        stdout(&doctor)
    );
    env.run(&["doctor", "--fix"]);
    assert_eq!(
        std::fs::read(&log_md).unwrap(),
        before,
        "nothing to rewrite"
    );

    // The Python tool appends a multi-line entry after the migration: --fix imports it once,
    // as one row, and the page then matches the table however each entry is written.
    let mut appended = before.clone();
    appended.extend_from_slice(b"## [2026-01-02 00:00:00] query | second\nquestion\n\n");
    std::fs::write(&log_md, &appended).unwrap();
    let doctor = env.run(&["doctor"]);
    assert!(
        stdout(&doctor).contains("differs from the log table"),
        "{}",
        stdout(&doctor)
    );
    for _ in 0..2 {
        let fix = env.run(&["doctor", "--fix"]);
        assert!(fix.status.success(), "{}{}", stdout(&fix), stderr(&fix));
    }
    let queries = env.run(&["log", "--all", "--op", "query", "--json"]);
    let rows: Value = serde_json::from_slice(&queries.stdout).unwrap();
    let descriptions: Vec<&str> = rows["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["description"].as_str().unwrap())
        .collect();
    assert_eq!(descriptions, ["line one\nline two", "second\nquestion"]);
    let doctor = env.run(&["doctor"]);
    assert!(
        stdout(&doctor).contains("log.md: wiki/log.md matches the log table"),
        "{}",
        stdout(&doctor)
    );
    guard.assert_outside_unchanged("");
}

#[test]
fn duplicate_legacy_entries_removed_together_take_their_shared_files() {
    let b = "b".repeat(64);
    let c = format!("bbbb{}", "c".repeat(60));
    let entry = serde_json::json!({"name": "same.md", "type": "md", "doc_name": "same",
                                    "raw_path": "raw/same.md"});
    let env = legacy_env(
        &serde_json::json!({ b.clone(): entry.clone(), c.clone(): entry }),
        &[
            ("raw/same.md", "same\n"),
            ("wiki/summaries/same.md", "summary\n"),
        ],
    );
    let mut guard = Guard::new(env.path(), &env.kb());
    guard.retake();
    let out = env.run(&["remove", "-y", &b[..12], &c[..12]]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("alone"),
        "the plan is the command's: {}",
        stdout(&out)
    );
    let got = guard.changed_files();
    assert_eq!(
        got,
        ["raw/same.md", "wiki/log.md", "wiki/summaries/same.md"]
    );
    assert!(env.docs().is_empty());
    guard.assert_outside_unchanged("");
}

#[test]
fn an_empty_identifier_names_no_document() {
    let env = Env::with_kb();
    let file = env.write("inbox/only.md", "the only one\n");
    assert!(env.run(&["add", file.to_str().unwrap()]).status.success());
    let guard = Guard::new(env.path(), &env.kb());
    for args in [
        &["remove", "-y", ""][..],
        &["remove", "-y", "  "],
        &["remove", "-y", "only", ""],
        &["show", ""],
    ] {
        let out = env.run(args);
        assert!(!out.status.success(), "{args:?}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("is not an identifier"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(
        guard.changed_files().is_empty(),
        "{:?}",
        guard.changed_files()
    );
    guard.assert_outside_unchanged("");
    assert_eq!(env.docs().len(), 1);
}
