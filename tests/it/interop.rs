//! The Python tool and openkb on one KB: doc_name parity with Python's `re`, the three-way
//! drift merge of a reappeared `hashes.json`, the way back (`export --for-python`), and the
//! warnings every command gives.

use crate::harness;

use openkb::ingest::docname::sanitize;

/// Python's own rule, run by python3 (standard library only) over every code point `c` as the
/// stem `a<c>b`: the name it produces, or nothing for code points Python's Unicode database
/// does not assign. The first line is that database's Unicode version.
const PYTHON_TABLE: &str = r#"
import re, sys, unicodedata
rule = re.compile(r"[^\w\-]+")
out = [unicodedata.unidata_version]
for cp in range(0x110000):
    if 0xD800 <= cp <= 0xDFFF:
        continue
    c = chr(cp)
    if unicodedata.category(c) == "Cn":
        continue
    stem = "a" + c + "b"
    name = rule.sub("-", unicodedata.normalize("NFKC", stem)).strip("-") or "document"
    out.append("%x\t%s" % (cp, name.encode("unicode_escape").decode("ascii")))
sys.stdout.write("\n".join(out))
"#;

fn unescape(text: &str) -> String {
    // Python's unicode_escape of a str: \\, \xNN, \uNNNN, \UNNNNNNNN, \t \n \r.
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> char {
            let digits: String = chars.take(n).collect();
            char::from_u32(u32::from_str_radix(&digits, 16).expect("hex")).expect("char")
        };
        match chars.next().expect("escape") {
            '\\' => out.push('\\'),
            't' => out.push('\t'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            'x' => out.push(hex(&mut chars, 2)),
            'u' => out.push(hex(&mut chars, 4)),
            'U' => out.push(hex(&mut chars, 8)),
            other => panic!("unexpected escape \\{other}"),
        }
    }
    out
}

#[test]
fn doc_name_matches_pythons_re_for_every_assigned_code_point() {
    let out = harness::clean("python3")
        .args(["-c", PYTHON_TABLE])
        .output()
        .expect("python3 runs (it is part of the test environment)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).expect("ASCII table");
    let mut lines = table.lines();
    let python_unicode = lines.next().expect("the Unicode version line");
    let mut checked = 0;
    let mut newer_in_python = 0;
    let mut mismatches = Vec::new();
    for line in lines {
        let (cp, expected) = line.split_once('\t').expect("two columns");
        let c = char::from_u32(u32::from_str_radix(cp, 16).expect("hex")).expect("char");
        // Assigned by a Unicode newer than openkb's tables: a version difference, not a rule
        // one (a python3 newer than the tables must not fail the build; counted below).
        if unicode_general_category::get_general_category(c)
            == unicode_general_category::GeneralCategory::Unassigned
        {
            newer_in_python += 1;
            continue;
        }
        let expected = unescape(expected);
        let actual = sanitize(&format!("a{c}b"));
        if actual != expected {
            mismatches.push(format!(
                "U+{cp:0>4}: python {expected:?}, openkb {actual:?}"
            ));
        }
        checked += 1;
    }
    // Python 3.8+ assigns well over 140,000 code points; a short table means python3 failed.
    assert!(checked > 140_000, "only {checked} code points checked");
    // Each Unicode version adds a few thousand code points at most.
    assert!(
        newer_in_python < 20_000,
        "{newer_in_python} code points unknown to openkb's tables (Unicode {:?}), python3 has \
         Unicode {python_unicode}",
        unicode_general_category::UNICODE_VERSION
    );
    assert!(
        mismatches.is_empty(),
        "{} of {checked} code points differ (python3's Unicode {python_unicode}), e.g.\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );
}

#[test]
fn doc_name_of_scripts_with_combining_marks_matches_the_python_tool() {
    // What the Python tool's converter (0.4.5) names these stems; the first is the issue's case.
    for (stem, python) in [
        ("हिन्दी", "ह-न-द"),
        ("ภาษาไทย", "ภาษาไทย"),
        ("ภูมิ", "ภ-ม"),
        ("مَرحَبا", "م-رح-با"),
        ("שָׁלוֹם", "ש-לו-ם"),
        ("cafe\u{301}", "caf\u{e9}"),
    ] {
        assert_eq!(sanitize(stem), python, "{stem}");
    }
}

use std::path::{Path, PathBuf};

use crate::harness::{Env, json, ok, run};
use serde_json::Value;

/// What the Python tool does to a KB, emulated with python3's standard library exactly as its
/// `HashRegistry` and `append_log` do it: the registry is a dict loaded from `hashes.json` and
/// rewritten whole (`json.dumps(indent=2, ensure_ascii=True) + "\n"`, insertion order: a
/// removed key goes, a new one is appended), and a log entry is appended to `wiki/log.md`.
const PYTHON_TOOL: &str = r###"
import hashlib, json, os, sys
kb = sys.argv[1]
reg_path = os.path.join(kb, ".openkb", "hashes.json")
with open(reg_path, encoding="utf-8") as f:
    registry = json.load(f)
def save():
    tmp = reg_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(registry, indent=2, ensure_ascii=True) + "\n")
    os.replace(tmp, reg_path)
def log(op, desc, ts):
    with open(os.path.join(kb, "wiki", "log.md"), "a", encoding="utf-8") as f:
        f.write(f"## [{ts}] {op} | {desc}\n\n")
def by_doc_name(name):
    return next(h for h, m in registry.items() if m.get("doc_name") == name)
def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()
out = {}
"###;

fn python_tool(kb: &Path, script: &str) -> Value {
    let program = format!("{PYTHON_TOOL}{script}\nprint(json.dumps(out))\n");
    let output = harness::clean("python3")
        .arg("-c")
        .arg(program)
        .arg(kb)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script's JSON")
}

/// The fixture KB, migrated, then handed back to the Python tool with `export --for-python`.
fn handed_to_python(sb: &Env) -> PathBuf {
    let kb = sb.fixture_kb("kb");
    ok(&mut sb.openkb(&kb, &["migrate"]));
    let out = ok(&mut sb.openkb(&kb, &["export", "--for-python"]));
    assert!(
        out.stdout.contains("recorded it as the base"),
        "{}",
        out.stdout
    );
    kb
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fn documents(sb: &Env, kb: &Path) -> Vec<Value> {
    json(&ok(&mut sb.openkb(kb, &["list", "--json"])))["documents"]
        .as_array()
        .unwrap()
        .clone()
}

fn hashes_of(docs: &[Value]) -> Vec<&str> {
    docs.iter().map(|d| d["hash"].as_str().unwrap()).collect()
}

/// A migrate report with the dry run's wording made the run's, and without the lines only one
/// of them has (the heading, the run's import record and hint), so a prediction and its
/// outcome compare equal line for line.
fn as_done(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| {
            !l.starts_with("Dry run:")
                && !l.starts_with("Merged a reappeared")
                && !l.contains("state.db: import #")
                && !l.contains("hands the KB back to the Python tool")
        })
        .map(|l| {
            l.replace("would be ", "")
                .replace("hashes.json renamed to", "hashes.json kept as")
                .replace("to merge", "merged")
                .replace("to import", "imported")
        })
        .collect()
}

/// `migrate --dry-run` then `migrate`: the dry run changed nothing it reads and its report is
/// the run's, line for line. Returns the run's output.
fn dry_run_then_run(sb: &Env, kb: &Path) -> harness::Run {
    let before = (
        std::fs::read(kb.join(".openkb/hashes.json")).ok(),
        read(kb.join("wiki/log.md")),
        json(&ok(&mut sb.openkb(kb, &["export", "--json"])))["documents"].clone(),
    );
    let dry = ok(&mut sb.openkb(kb, &["migrate", "--dry-run"]));
    let after_dry = (
        std::fs::read(kb.join(".openkb/hashes.json")).ok(),
        read(kb.join("wiki/log.md")),
        json(&ok(&mut sb.openkb(kb, &["export", "--json"])))["documents"].clone(),
    );
    assert!(before == after_dry, "the dry run changed the KB");
    let done = ok(&mut sb.openkb(kb, &["migrate"]));
    assert_eq!(
        as_done(&dry.stdout),
        as_done(&done.stdout),
        "prediction:\n{}\nrun:\n{}",
        dry.stdout,
        done.stdout
    );
    done
}

#[test]
fn python_side_add_remove_edit_and_log_lines_are_merged_with_nothing_lost() {
    let sb = Env::new();
    let kb = handed_to_python(&sb);
    let handed = read(kb.join(".openkb/hashes.json"));
    let exported = ok(&mut sb.openkb(&kb, &["export", "--legacy-json"]));
    assert_eq!(
        handed, exported.stdout_bytes,
        "the Python tool gets the 0.4 format"
    );

    let ids = python_tool(
        &kb,
        r###"
# remove: wiki pages deleted, registry pruned by hash, then the log line
removed = by_doc_name("report")
meta = registry.pop(removed)
os.remove(os.path.join(kb, "wiki", "summaries", "report.md"))
save(); log("remove", meta["name"], "2026-12-24 10:00:01")
# edit: the file at the same path changed; same doc_name, new hash (remove_by_doc_name + add)
old = by_doc_name("report-0d8d1e29")
meta = registry.pop(old)
new = sha("edited report")
registry[new] = meta
save(); log("ingest", meta["name"], "2026-12-24 10:00:02")
# add
added = sha("new paper")
registry[added] = {"name": "new paper.md", "doc_name": "new-paper", "type": "md",
    "path": "inbox/new paper.md", "raw_path": "raw/new-paper.md",
    "source_path": "wiki/sources/new-paper.md"}
save(); log("ingest", "new paper.md", "2026-12-24 10:00:03")
log("query", "what changed?\nasked over two lines", "2026-12-24 10:00:04")
out = {"removed": removed, "old": old, "new": new, "added": added}
"###,
    );
    let python_file = read(kb.join(".openkb/hashes.json"));

    // Every command warns about the reappeared hashes.json (lint: see the conflict test).
    for args in [&["use", "."][..], &["status"][..], &["list"][..]] {
        let mut cmd = sb.openkb(&kb, args);
        cmd.current_dir(&kb);
        let out = run(&mut cmd);
        assert!(
            out.stderr.contains("reappeared after migration")
                && out.stderr.contains("openkb migrate"),
            "{args:?}: {}",
            out.stderr
        );
    }

    assert_eq!(read(kb.join(".openkb/hashes.json")), python_file);
    let done = dry_run_then_run(&sb, &kb);
    assert!(
        done.stdout.contains(
            "2 new merged, 0 updated, 2 removed, 48 already in state.db unchanged, 0 conflicting"
        ),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout.contains("wiki/log.md: 4 entries imported"),
        "{}",
        done.stdout
    );

    let docs = documents(&sb, &kb);
    let hashes = hashes_of(&docs);
    assert_eq!(docs.len(), 50);
    for gone in [&ids["removed"], &ids["old"]] {
        assert!(
            !hashes.contains(&gone.as_str().unwrap()),
            "{gone} still registered"
        );
    }
    let edited = docs.iter().find(|d| d["hash"] == ids["new"]).unwrap();
    assert_eq!(edited["doc_name"], "report-0d8d1e29");
    assert_eq!(hashes[49], ids["added"].as_str().unwrap());

    // Both tools now see one registry: the export is the Python tool's file byte for byte,
    // and that file is kept whole beside the earlier one.
    let exported = ok(&mut sb.openkb(&kb, &["export", "--legacy-json"]));
    assert_eq!(exported.stdout_bytes, python_file);
    assert_eq!(read(kb.join(".openkb/hashes.json.migrated.2")), python_file);
    assert!(!kb.join(".openkb/hashes.json").exists());

    // The Python tool's log lines are rows, in order, and stay where they were in log.md.
    let log = json(&ok(&mut sb.openkb(&kb, &["log", "-n", "5", "--json"])))["entries"].clone();
    let rows: Vec<(String, String, String)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap().to_owned();
            (text("timestamp"), text("operation"), text("description"))
        })
        .collect();
    assert_eq!(rows[0].1, "remove");
    assert_eq!(
        rows[1],
        (
            "2026-12-24 10:00:02".into(),
            "ingest".into(),
            "report.md".into()
        )
    );
    assert_eq!(rows[2].2, "new paper.md");
    assert_eq!(rows[3].2, "what changed?\nasked over two lines");
    assert_eq!(rows[4].1, "migrate");
    let doctor = run(&mut sb.openkb(&kb, &["doctor"]));
    assert!(
        doctor.stdout.contains("wiki/log.md matches the log table"),
        "{}",
        doctor.stdout
    );

    // Running again merges nothing more.
    let again = ok(&mut sb.openkb(&kb, &["migrate"]));
    assert!(
        again.stdout.contains("already migrated"),
        "{}",
        again.stdout
    );
    assert_eq!(documents(&sb, &kb).len(), 50);
}

#[test]
fn log_lines_the_python_tool_appends_without_touching_the_registry_are_imported() {
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    ok(&mut sb.openkb(&kb, &["migrate"]));
    // The Python tool's `query` appends to log.md (plain append) and never writes hashes.json.
    let appended = "## [2026-12-24 11:00:00] query | first question\n\n\
                    ## [2026-12-24 11:00:00] query | second question\n\n";
    let mut log_md = std::fs::read_to_string(kb.join("wiki/log.md")).unwrap();
    log_md.push_str(appended);
    std::fs::write(kb.join("wiki/log.md"), &log_md).unwrap();

    let done = dry_run_then_run(&sb, &kb);
    assert!(
        done.stdout
            .contains("2 entries appended by the Python tool imported"),
        "{}",
        done.stdout
    );
    let log = json(&ok(&mut sb.openkb(&kb, &["log", "-n", "3", "--json"])))["entries"].clone();
    assert_eq!(log[0]["description"], "first question");
    assert_eq!(log[1]["description"], "second question");
    assert_eq!(log[1]["timestamp"], "2026-12-24 11:00:00");
    assert_eq!(log[2]["operation"], "migrate");
    // log.md keeps its lines where they were; only the migrate row is appended.
    let now = std::fs::read_to_string(kb.join("wiki/log.md")).unwrap();
    assert!(now.starts_with(&log_md), "{now}");
    assert!(now[log_md.len()..].contains("] migrate | imported 2 wiki/log.md entries"));

    let again = ok(&mut sb.openkb(&kb, &["migrate"]));
    assert!(again.stdout.contains("nothing changed"), "{}", again.stdout);
}

#[test]
fn a_document_changed_on_both_sides_keeps_state_db_and_loses_nothing() {
    let sb = Env::new();
    let kb = handed_to_python(&sb);
    let docs = documents(&sb, &kb);
    let short: Vec<&Value> = docs
        .iter()
        .filter(|d| d["type"] == "md" && d["doc_name"].is_string() && d["path"].is_string())
        .collect();
    let (x, y, z) = (short[0], short[1], short[2]);
    let name_of = |d: &Value| d["doc_name"].as_str().unwrap().to_owned();

    // openkb: removes X, renames Y and Z (as a newer openkb would edit an entry).
    ok(&mut sb.openkb(&kb, &["remove", &name_of(x), "--yes"]));
    let store = harness::write_session(&kb);
    store
        .write(|tx| {
            for d in [y, z] {
                let mut doc = store.get(d["hash"].as_str().unwrap())?.unwrap();
                doc.name = Some("renamed by openkb.md".into());
                tx.upsert_document(&doc)?;
            }
            Ok(())
        })
        .unwrap();
    drop(store);

    // The Python tool: edits X's entry, removes Y, renames Z.
    python_tool(
        &kb,
        &format!(
            r###"
registry["{x}"]["pages"] = 3
meta = registry.pop("{y}")
summary = os.path.join(kb, "wiki", "summaries", meta["doc_name"] + ".md")
if os.path.exists(summary):
    os.remove(summary)
registry["{z}"]["name"] = "renamed by python.md"
save()
"###,
            x = x["hash"].as_str().unwrap(),
            y = y["hash"].as_str().unwrap(),
            z = z["hash"].as_str().unwrap(),
        ),
    );
    let python_file = read(kb.join(".openkb/hashes.json"));
    let lint = run(&mut sb.openkb(&kb, &["lint"]));
    assert!(
        lint.stderr.contains("reappeared after migration")
            && lint.stderr.contains("openkb migrate"),
        "{}",
        lint.stderr
    );

    let done = dry_run_then_run(&sb, &kb);
    assert!(
        done.stdout.contains(
            "0 new merged, 0 updated, 0 removed, 47 already in state.db unchanged, 3 conflicting"
        ),
        "{}",
        done.stdout
    );
    for (doc, what) in [
        (
            x,
            "removed by openkb, changed by the Python tool: stays removed",
        ),
        (
            y,
            "changed by openkb, removed by the Python tool: kept in state.db",
        ),
        (z, "changed on both sides: state.db keeps its version"),
    ] {
        let line = format!("conflict: {}", doc["hash"].as_str().unwrap());
        let reported = done.stdout.lines().find(|l| l.contains(&line));
        assert!(
            reported.is_some_and(|l| l.contains(what) && l.contains("hashes.json.migrated.2")),
            "{what}: {}",
            done.stdout
        );
    }

    // state.db's side won; the Python tool's versions are all in the kept file.
    let after = documents(&sb, &kb);
    let get = |d: &Value| after.iter().find(|a| a["hash"] == d["hash"]);
    assert!(get(x).is_none());
    assert_eq!(get(y).unwrap()["name"], "renamed by openkb.md");
    assert_eq!(get(z).unwrap()["name"], "renamed by openkb.md");
    assert_eq!(read(kb.join(".openkb/hashes.json.migrated.2")), python_file);
    let kept: Value = serde_json::from_slice(&python_file).unwrap();
    assert_eq!(kept[x["hash"].as_str().unwrap()]["pages"], 3);
    assert_eq!(
        kept[z["hash"].as_str().unwrap()]["name"],
        "renamed by python.md"
    );
    let state = json(&ok(&mut sb.openkb(&kb, &["export", "--json"])));
    assert_eq!(state["imports"][1]["conflicting_entries"], 3);
}

#[test]
fn a_dry_run_predicts_the_run_when_a_python_journal_will_be_rolled_back() {
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    ok(&mut sb.openkb(&kb, &["migrate"]));
    let log_md = read(kb.join("wiki/log.md"));
    // The Python tool was killed in an add on the migrated KB: its journal is active, the
    // hashes.json it created (did not exist before: backup null) names one new document, and
    // log.md has its line (snapshotted first: the rollback restores the old page).
    let root = kb.canonicalize().unwrap();
    let id = "0123456789abcdef0123456789abcdef";
    let backup_dir = root.join(format!(".openkb/staging/rollback-{id}"));
    std::fs::create_dir_all(backup_dir.join("wiki")).unwrap();
    std::fs::write(backup_dir.join("wiki/log.md"), &log_md).unwrap();
    let journal = serde_json::json!({
        "version": 1, "operation": "add", "status": "active",
        "kb_dir": root, "backup_dir": backup_dir,
        "details": {"file_hash": "f".repeat(64), "name": "new.md", "doc_name": "new"},
        "attempts": 0,
        "entries": [
            {"target": root.join(".openkb/hashes.json"), "backup": null},
            {"target": root.join("wiki/log.md"), "backup": backup_dir.join("wiki/log.md")},
        ],
    });
    std::fs::create_dir_all(kb.join(".openkb/journal")).unwrap();
    std::fs::write(
        kb.join(format!(".openkb/journal/{id}.json")),
        serde_json::to_string_pretty(&journal).unwrap(),
    )
    .unwrap();
    let half_applied = format!(
        "{{\n  \"{}\": {{\n    \"name\": \"new.md\",\n    \"doc_name\": \"new\",\n    \"type\": \"md\"\n  }}\n}}\n",
        "f".repeat(64)
    );
    std::fs::write(kb.join(".openkb/hashes.json"), &half_applied).unwrap();
    let mut appended = log_md.clone();
    appended.extend_from_slice(b"## [2026-12-24 12:00:00] ingest | new.md\n\n");
    std::fs::write(kb.join("wiki/log.md"), &appended).unwrap();

    let dry = ok(&mut sb.openkb(&kb, &["migrate", "--dry-run"]));
    assert!(!dry.stdout.contains("new to merge"), "{}", dry.stdout);
    assert!(
        dry.stdout.contains("would be rolled back"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("already migrated"), "{}", dry.stdout);
    assert!(dry.stdout.contains("nothing changed"), "{}", dry.stdout);
    assert_eq!(
        read(kb.join(".openkb/hashes.json")),
        half_applied.as_bytes()
    );
    assert_eq!(read(kb.join("wiki/log.md")), appended);

    let done = ok(&mut sb.openkb(&kb, &["migrate"]));
    assert_eq!(as_done(&dry.stdout), as_done(&done.stdout));
    assert!(done.stdout.contains("rolled back"), "{}", done.stdout);
    assert!(done.stdout.contains("already migrated"), "{}", done.stdout);
    assert!(done.stdout.contains("nothing changed"), "{}", done.stdout);
    assert!(!kb.join(".openkb/hashes.json").exists());
    assert_eq!(read(kb.join("wiki/log.md")), log_md);
    assert_eq!(documents(&sb, &kb).len(), 50);
}

#[test]
fn export_for_python_refuses_to_overwrite_an_unmerged_hashes_json() {
    let sb = Env::new();
    let kb = handed_to_python(&sb);
    let handed = read(kb.join(".openkb/hashes.json"));
    let refused = run(&mut sb.openkb(&kb, &["export", "--for-python"]));
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("openkb migrate"),
        "{}",
        refused.stderr
    );
    assert_eq!(read(kb.join(".openkb/hashes.json")), handed);
    // Unchanged by the Python tool: migrate merges nothing and removes nothing.
    let done = dry_run_then_run(&sb, &kb);
    assert!(
        done.stdout.contains(
            "0 new merged, 0 updated, 0 removed, 50 already in state.db unchanged, 0 conflicting"
        ),
        "{}",
        done.stdout
    );
}

#[test]
fn a_python_tool_that_started_from_an_empty_registry_removes_nothing() {
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    ok(&mut sb.openkb(&kb, &["migrate"]));
    // `migrate` moved hashes.json away, so the Python tool starts from an empty registry and
    // its file holds only what it added since.
    std::fs::write(kb.join(".openkb/hashes.json"), "{}\n").unwrap();
    python_tool(
        &kb,
        r###"
registry[sha("fresh")] = {"name": "fresh.md", "doc_name": "fresh", "type": "md",
    "path": "fresh.md", "raw_path": "raw/fresh.md", "source_path": "wiki/sources/fresh.md"}
save()
"###,
    );
    let done = dry_run_then_run(&sb, &kb);
    assert!(
        done.stdout.contains(
            "1 new merged, 0 updated, 0 removed, 0 already in state.db unchanged, 0 conflicting"
        ),
        "{}",
        done.stdout
    );
    assert_eq!(
        done.stdout
            .matches("no entry in common with the registry handed over")
            .count(),
        50,
        "{}",
        done.stdout
    );
    assert_eq!(documents(&sb, &kb).len(), 51);
}

#[test]
fn export_for_python_brings_log_md_to_the_log_table_first() {
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    ok(&mut sb.openkb(&kb, &["migrate"]));
    // The Python tool appended a line, then openkb logged a row of its own after it.
    let python_line = "## [2026-12-24 13:00:00] query | asked before the hand-over\n\n";
    let mut page = std::fs::read_to_string(kb.join("wiki/log.md")).unwrap();
    page.push_str(python_line);
    std::fs::write(kb.join("wiki/log.md"), &page).unwrap();
    run(&mut sb.openkb(&kb, &["lint"]));

    let out = ok(&mut sb.openkb(&kb, &["export", "--for-python"]));
    assert!(
        out.stdout
            .contains("wiki/log.md rewritten from the log table (1 line"),
        "{}",
        out.stdout
    );
    let page = std::fs::read_to_string(kb.join("wiki/log.md")).unwrap();
    assert_eq!(page.matches(python_line).count(), 1, "{page}");
    let doctor = run(&mut sb.openkb(&kb, &["doctor"]));
    assert!(
        doctor.stdout.contains("wiki/log.md matches the log table"),
        "{}",
        doctor.stdout
    );
    let log = json(&ok(&mut sb.openkb(&kb, &["log", "-n", "3", "--json"])))["entries"].clone();
    assert_eq!(log[0]["description"], "asked before the hand-over");
    assert_eq!(log[1]["operation"], "export");
    assert_eq!(log[2]["operation"], "export");
}

#[test]
fn a_kb_migrated_before_bases_were_kept_uses_the_file_its_migration_moved_aside() {
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    ok(&mut sb.openkb(&kb, &["migrate"]));
    // As a state.db of an older openkb: no base recorded.
    forget_python_handovers(&kb);
    // The user put the migrated file back and the Python tool removed a document.
    std::fs::copy(
        kb.join(".openkb/hashes.json.migrated"),
        kb.join(".openkb/hashes.json"),
    )
    .unwrap();
    let removed = python_tool(
        &kb,
        r###"
h = by_doc_name("report")
registry.pop(h)
os.remove(os.path.join(kb, "wiki", "summaries", "report.md"))
save()
out = h
"###,
    );
    let done = dry_run_then_run(&sb, &kb);
    assert!(
        done.stdout.contains(
            "0 new merged, 0 updated, 1 removed, 49 already in state.db unchanged, 0 conflicting"
        ),
        "{}",
        done.stdout
    );
    assert!(!hashes_of(&documents(&sb, &kb)).contains(&removed.as_str().unwrap()));

    // Without that file (or with it changed) there is no base: nothing is removed.
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    ok(&mut sb.openkb(&kb, &["migrate"]));
    forget_python_handovers(&kb);
    std::fs::rename(
        kb.join(".openkb/hashes.json.migrated"),
        kb.join(".openkb/hashes.json"),
    )
    .unwrap();
    python_tool(&kb, "registry.pop(by_doc_name(\"report\"))\nsave()");
    let done = dry_run_then_run(&sb, &kb);
    assert!(done.stdout.contains("no base known"), "{}", done.stdout);
    assert!(done.stdout.contains("0 removed"), "{}", done.stdout);
    assert_eq!(documents(&sb, &kb).len(), 50);
}

#[test]
fn imported_history_is_never_taken_for_new_python_lines() {
    let sb = Env::new();
    let hash = "a".repeat(64);
    let kb = sb.legacy_kb(
        "kb",
        format!("{{\"{hash}\": {{\"name\": \"a.md\", \"type\": \"md\"}}}}\n").as_bytes(),
        Some(
            "# Operations Log\n\nnotes typed by hand\n\n\
             ## [2026-01-01 00:00:00] query | first line\n## [not a time] second\n\n\
             ## [2026-01-01 00:00:01] query | twice\n\n## [2026-01-01 00:00:01] query | twice\n\n",
        ),
    );
    ok(&mut sb.openkb(&kb, &["migrate"]));
    let rows = json(&ok(&mut sb.openkb(&kb, &["log", "--all", "--json"])))["entries"]
        .clone()
        .as_array()
        .unwrap()
        .len();
    for _ in 0..2 {
        let again = ok(&mut sb.openkb(&kb, &["migrate"]));
        assert!(again.stdout.contains("nothing changed"), "{}", again.stdout);
    }
    // (doctor finds the raw copies missing in this registry-only KB: exit 1, beside the point)
    let doctor = run(&mut sb.openkb(&kb, &["doctor", "--fix"]));
    assert!(
        !doctor.stdout.contains("appended by the Python tool"),
        "{}",
        doctor.stdout
    );
    let after = json(&ok(&mut sb.openkb(&kb, &["log", "--all", "--json"])))["entries"].clone();
    assert_eq!(after.as_array().unwrap().len(), rows);
}

#[test]
fn python_lines_with_control_characters_are_imported_once_whoever_imports_them() {
    // log.md escapes control characters in openkb's own lines (`\u{1b}`), but the Python tool
    // writes them raw: its lines must still be found once, by migrate or by doctor --fix, and
    // never again however often either runs.
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    ok(&mut sb.openkb(&kb, &["migrate"]));
    let append = |text: &str| {
        let mut page = std::fs::read_to_string(kb.join("wiki/log.md")).unwrap();
        page.push_str(text);
        std::fs::write(kb.join("wiki/log.md"), page).unwrap();
    };
    let log_rows = || {
        json(&ok(&mut sb.openkb(&kb, &["log", "--all", "--json"])))["entries"]
            .as_array()
            .unwrap()
            .clone()
    };
    append(
        "## [2026-12-24 10:00:00] query | esc \u{1b}[31m red and\rcarriage\n\n\
         ## [2026-12-24 10:00:01] query | line\u{2028}separator\u{202e}bidi\n\n",
    );
    let verbose = ok(&mut sb.openkb(&kb, &["migrate", "-v"]));
    assert!(
        verbose
            .stdout
            .contains("2 entries appended by the Python tool imported")
            && verbose
                .stdout
                .contains("esc \\u{1b}[31m red and\\u{d}carriage"),
        "{}",
        verbose.stdout
    );
    assert!(
        !verbose.stdout.contains('\u{1b}'),
        "raw ESC on the terminal"
    );
    let rows = log_rows();
    let n = rows.len();
    assert_eq!(
        rows[n - 3]["description"],
        "esc \u{1b}[31m red and\rcarriage"
    );
    assert_eq!(
        rows[n - 2]["description"],
        "line\u{2028}separator\u{202e}bidi"
    );

    // A second line after the import: doctor --fix imports it (once).
    append("## [2026-12-24 10:00:02] query | tab\there \u{7f} and \u{85} next\n\n");
    let fixed = run(&mut sb.openkb(&kb, &["doctor", "--fix"]));
    assert_eq!(
        fixed
            .stdout
            .matches("imported 1 wiki/log.md entries appended by the Python tool")
            .count(),
        1,
        "{}",
        fixed.stdout
    );
    // The page reads back as the table (the Python tool's lines, raw, are not moved aside).
    let page = std::fs::read_to_string(kb.join("wiki/log.md")).unwrap();
    assert!(
        page.contains("| esc \u{1b}[31m red and\rcarriage\n"),
        "{page}"
    );
    let imported = log_rows();
    assert_eq!(imported.len(), n + 2);
    for _ in 0..2 {
        let fixed = run(&mut sb.openkb(&kb, &["doctor", "--fix"]));
        assert!(
            !fixed.stdout.contains("appended by the Python tool"),
            "{}",
            fixed.stdout
        );
        let again = ok(&mut sb.openkb(&kb, &["migrate"]));
        assert!(again.stdout.contains("nothing changed"), "{}", again.stdout);
    }
    assert_eq!(log_rows(), imported);
    let doctor = run(&mut sb.openkb(&kb, &["doctor"]));
    assert!(
        doctor.stdout.contains("wiki/log.md matches the log table"),
        "{}",
        doctor.stdout
    );
}

/// The entry the Python tool 0.4.5 registers for `raw/<file>` (its watch mode keeps the file
/// where it is: `raw_dest = src`), from its `cli.py` and `converter.py`, with python3's `re`.
const PYTHON_IN_PLACE_ENTRY: &str = r###"
def in_place(file_name):
    import re, unicodedata
    stem = os.path.splitext(file_name)[0]
    doc_name = re.sub(r"[^\w\-]+", "-", unicodedata.normalize("NFKC", stem)).strip("-") or "document"
    return {"name": file_name, "doc_name": doc_name, "type": os.path.splitext(file_name)[1].lstrip("."),
        "path": "raw/" + file_name, "raw_path": "raw/" + file_name,
        "source_path": "wiki/sources/" + doc_name + ".md"}
"###;

#[test]
fn files_registered_in_raw_in_place_go_to_the_python_tool_and_back_as_it_writes_them() {
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    ok(&mut sb.openkb(&kb, &["migrate"]));
    std::fs::write(kb.join("raw/Foo Bar.md"), "# Foo Bar\nby openkb\n").unwrap();
    ok(sb.openkb(&kb, &["add"]).arg(kb.join("raw/Foo Bar.md")));
    ok(&mut sb.openkb(&kb, &["export", "--for-python"]));

    let python = python_tool(
        &kb,
        &format!(
            r###"{PYTHON_IN_PLACE_ENTRY}
handed = registry[by_doc_name("Foo-Bar")]
out["handed"] = handed == in_place("Foo Bar.md")
out["keys"] = list(handed)
# The Python tool's remove of openkb's in-place document (raw_path recorded: that file goes).
gone = by_doc_name("Foo-Bar")
del registry[gone]
os.remove(os.path.join(kb, "raw", "Foo Bar.md"))
os.remove(os.path.join(kb, "wiki", "sources", "Foo-Bar.md"))
save(); log("remove", "Foo Bar.md", "2026-12-24 10:00:01")
# Its watch mode registering a file already in raw/.
with open(os.path.join(kb, "raw", "Baz Qux.md"), "w") as f:
    f.write("# Baz\n")
with open(os.path.join(kb, "raw", "Baz Qux.md"), "rb") as f:
    added = hashlib.sha256(f.read()).hexdigest()
with open(os.path.join(kb, "wiki", "sources", "Baz-Qux.md"), "w") as f:
    f.write("# Baz\n")
registry[added] = in_place("Baz Qux.md")
save(); log("ingest", "Baz Qux.md", "2026-12-24 10:00:02")
out["gone"] = gone; out["added"] = added
"###
        ),
    );
    assert_eq!(python["handed"], true, "{python}");
    assert_eq!(
        python["keys"],
        serde_json::json!([
            "name",
            "doc_name",
            "type",
            "path",
            "raw_path",
            "source_path"
        ])
    );
    let python_file = read(kb.join(".openkb/hashes.json"));

    let done = dry_run_then_run(&sb, &kb);
    assert!(
        done.stdout.contains("1 new merged, 0 updated, 1 removed"),
        "{}",
        done.stdout
    );
    let docs = documents(&sb, &kb);
    assert!(!hashes_of(&docs).contains(&python["gone"].as_str().unwrap()));
    let baz = docs.iter().find(|d| d["hash"] == python["added"]).unwrap();
    assert_eq!(baz["path"], "raw/Baz Qux.md");
    assert_eq!(baz["raw_path"], "raw/Baz Qux.md");
    assert_eq!(baz["doc_name"], "Baz-Qux");
    // openkb sees the same registry and the file in place as already registered.
    assert_eq!(
        ok(&mut sb.openkb(&kb, &["export", "--legacy-json"])).stdout_bytes,
        python_file
    );
    let again = ok(sb.openkb(&kb, &["add"]).arg(kb.join("raw/Baz Qux.md")));
    assert!(again.stdout.contains("added 0"), "{}", again.stdout);
    let doctor = run(&mut sb.openkb(&kb, &["doctor"]));
    assert!(
        doctor.stdout.contains("ok      duplicate-claim:")
            && doctor
                .stdout
                .contains("every raw copy and source is present")
            && doctor.stdout.contains("Healthy (0 warning(s))"),
        "{}",
        doctor.stdout
    );
}

#[test]
fn legacy_json_never_replaces_the_kbs_own_hashes_json() {
    let sb = Env::new();
    let kb = handed_to_python(&sb);
    // The Python tool changed the file; an export there would throw that away and hand over
    // without a base.
    python_tool(&kb, "registry.pop(by_doc_name(\"report\"))\nsave()");
    let python_file = read(kb.join(".openkb/hashes.json"));
    for (dir, target) in [
        (kb.clone(), ".openkb/hashes.json"),
        (kb.join(".openkb"), "hashes.json"),
        (kb.join("wiki"), "../.openkb/./hashes.json"),
    ] {
        for format in ["--legacy-json", "--json"] {
            let mut cmd = sb.openkb(&kb, &["export", format, "-o", target]);
            cmd.current_dir(&dir);
            let refused = run(&mut cmd);
            assert_eq!(refused.code, 1, "{target}: {}", refused.stderr);
            assert!(
                refused.stderr.contains("openkb export --for-python"),
                "{}",
                refused.stderr
            );
            assert_eq!(read(kb.join(".openkb/hashes.json")), python_file);
        }
    }
    // Once merged (no hashes.json there), the path is still the KB's registry: refused too.
    ok(&mut sb.openkb(&kb, &["migrate"]));
    let refused = run(sb
        .openkb(&kb, &["export", "--legacy-json", "-o"])
        .arg(kb.join(".openkb/hashes.json")));
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(!kb.join(".openkb/hashes.json").exists());
}

#[test]
fn python_side_renames_shared_names_and_foreign_paths_are_predicted_and_merged() {
    let sb = Env::new();
    let kb = handed_to_python(&sb);
    let pending_before = documents(&sb, &kb);
    let ids = python_tool(
        &kb,
        r###"
# rename and a new key on one entry (same hash: an edit of the entry, not of the file)
renamed = by_doc_name("report")
registry[renamed]["name"] = "renamed by python.md"
registry[renamed]["pages"] = 7
# an entry whose doc_name another document already owns (as 0.2-0.3 entries could)
shared = sha("shared")
registry[shared] = {"name": "report.md", "doc_name": "report", "type": "md"}
# an entry naming a path outside the KB
foreign = sha("foreign")
registry[foreign] = {"name": "x.md", "doc_name": "x", "type": "md", "path": "../outside/x.md",
    "raw_path": "../outside/x.md", "source_path": "wiki/sources/x.md"}
save()
out = {"renamed": renamed, "shared": shared, "foreign": foreign}
"###,
    );
    let python_file = read(kb.join(".openkb/hashes.json"));
    let done = dry_run_then_run(&sb, &kb);
    assert!(
        done.stdout
            .contains("2 new merged, 1 updated, 0 removed, 49 already in state.db unchanged"),
        "{}",
        done.stdout
    );
    let id = |k: &str| ids[k].as_str().unwrap().to_owned();
    assert!(
        done.stdout.contains(&format!("updated: {}", id("renamed"))),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout
            .contains(&format!("doc_name \"report\" of {}", id("shared"))),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout
            .contains(&format!("entry {} names paths", id("foreign"))),
        "{}",
        done.stdout
    );
    let docs = documents(&sb, &kb);
    let get = |h: &str| docs.iter().find(|d| d["hash"] == h).unwrap().clone();
    let before = pending_before
        .iter()
        .find(|d| d["hash"] == ids["renamed"])
        .unwrap();
    assert_eq!(get(&id("renamed"))["name"], "renamed by python.md");
    assert_eq!(get(&id("renamed"))["status"], before["status"]);
    // Nothing lost: openkb writes back exactly the Python tool's registry.
    assert_eq!(
        ok(&mut sb.openkb(&kb, &["export", "--legacy-json"])).stdout_bytes,
        python_file
    );
}

/// Make `kb`'s state.db look like one of an openkb that kept no Python hand-over base.
fn forget_python_handovers(kb: &Path) {
    rusqlite::Connection::open(kb.join(".openkb/state.db"))
        .expect("open state.db")
        .execute_batch("DELETE FROM python_base; DELETE FROM python_handovers;")
        .expect("delete the hand-over records");
}
