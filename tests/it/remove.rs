//! `openkb remove` on entries of every era (a migrated copy of the legacy fixture), its
//! matching rules, confirmation, and its refusal to delete anything outside the KB.

use crate::harness;

use std::path::Path;

use crate::harness::{Env, legacy_kb, stderr, stdout};
use openkb::state::Document;

fn legacy() -> Env {
    let env = Env::new();
    legacy_kb(&env);
    env
}

fn remove(env: &Env, identifier: &str) -> std::process::Output {
    let out = env.run(&["remove", identifier, "-y"]);
    assert!(
        out.status.success(),
        "remove {identifier}: {}",
        stderr(&out)
    );
    out
}

fn index(env: &Env) -> String {
    std::fs::read_to_string(env.kb().join("wiki/index.md")).unwrap()
}

fn by_name(env: &Env, name: &str) -> Vec<Document> {
    env.docs()
        .into_iter()
        .filter(|d| d.name.as_deref() == Some(name))
        .collect()
}

fn last_remove_log(env: &Env) -> String {
    env.store()
        .log_tail(Some(1), Some("remove"))
        .unwrap()
        .pop()
        .unwrap()
        .description
}

#[test]
fn era_a_entry_without_doc_name_is_removed_by_hash() {
    let env = legacy();
    let kb = env.kb();
    assert_eq!(by_name(&env, "Legacy Paper 0.md").len(), 1);
    let out = remove(&env, "Legacy Paper 0.md");
    assert!(
        stdout(&out).contains("delete raw/Legacy Paper 0.md"),
        "{}",
        stdout(&out)
    );
    assert!(by_name(&env, "Legacy Paper 0.md").is_empty());
    for gone in [
        "raw/Legacy Paper 0.md",
        "wiki/sources/Legacy Paper 0.md",
        "wiki/summaries/Legacy Paper 0.md",
    ] {
        assert!(!kb.join(gone).exists(), "{gone}");
    }
    assert!(kb.join("raw/Legacy Paper 1.md").exists());
    assert!(!index(&env).contains("[[summaries/Legacy Paper 0]]"));
    assert!(index(&env).contains("[[summaries/Legacy Paper 1]]"));
    assert_eq!(last_remove_log(&env), "Legacy Paper 0.md");
    let log = std::fs::read_to_string(kb.join("wiki/log.md")).unwrap();
    assert!(
        log.trim_end().ends_with("] remove | Legacy Paper 0.md"),
        "{log}"
    );
    assert_eq!(env.docs().len(), 49);
}

#[test]
fn era_b_entry_is_removed_by_doc_name() {
    let env = legacy();
    remove(&env, "Survey 0 (journal)");
    assert!(env.doc_named("Survey 0 (journal)").is_none());
    assert!(!env.kb().join("raw/Survey 0 (journal).md").exists());
    assert!(
        !env.kb()
            .join("wiki/summaries/Survey 0 (journal).md")
            .exists()
    );
    assert!(env.kb().join("raw/Survey 1 (snapshot).md").exists());
}

#[test]
fn era_c_entries_and_wiki_links() {
    let env = legacy();
    let kb = env.kb();
    // Two documents are named report.md: the name alone is refused.
    let out = env.run(&["remove", "report.md", "-y"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("2 documents match"), "{err}");
    assert!(err.contains("report-0d8d1e29"), "{err}");
    assert_eq!(env.docs().len(), 50);

    remove(&env, "report");
    assert!(env.doc_named("report").is_none());
    assert!(env.doc_named("report-0d8d1e29").is_some());
    assert!(!kb.join("raw/report.md").exists());
    assert!(!kb.join("wiki/sources/report.md").exists());
    assert!(kb.join("raw/report-0d8d1e29.md").exists());
    let sqlite = std::fs::read_to_string(kb.join("wiki/entities/sqlite.md")).unwrap();
    assert!(!sqlite.contains("\"summaries/report.md\""), "{sqlite}");
    assert!(sqlite.contains("\"summaries/2509-11420.md\""), "{sqlite}");
    assert!(!index(&env).contains("[[summaries/report]]"));
    assert!(index(&env).contains("[[summaries/report-0d8d1e29]]"));
    assert_eq!(last_remove_log(&env), "report.md");

    // A document added outside the KB: its original is never touched.
    remove(&env, "outside-kb");
    assert!(!kb.join("raw/outside-kb.md").exists());
    assert!(
        Path::new(harness::FIXTURE)
            .join("external/outside-kb.md")
            .exists()
    );

    // Dropped into raw/ with a sanitized copy: both raw files go.
    remove(&env, "2509.11420.md");
    assert!(!kb.join("raw/2509.11420.md").exists());
    assert!(!kb.join("raw/2509-11420.md").exists());
    assert!(!kb.join("wiki/sources/2509-11420.md").exists());
}

#[test]
fn long_pdf_and_cloud_entries() {
    let env = legacy();
    let kb = env.kb();
    remove(&env, "Long Book 0.pdf");
    assert!(!kb.join("raw/Long-Book-0.pdf").exists());
    assert!(!kb.join("wiki/sources/Long-Book-0.json").exists());
    assert!(!kb.join("wiki/summaries/Long-Book-0.md").exists());
    assert!(kb.join("raw/Long-Book-1.pdf").exists());
    // PageIndex's own files belong to another package and stay.
    assert!(kb.join(".openkb/pageindex.db").exists());

    remove(&env, "Cloud-Whitepaper-0");
    assert!(!kb.join("wiki/sources/Cloud-Whitepaper-0.json").exists());
    assert!(env.doc_named("Cloud-Whitepaper-0").is_none());
    assert_eq!(env.docs().len(), 48);
}

#[test]
fn dry_run_keep_raw_and_confirmation() {
    let env = legacy();
    let kb = env.kb();
    let out = env.run(&["remove", "doc-001-shard", "--dry-run"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("delete raw/doc-001-shard.md"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("nothing was changed"));
    assert!(kb.join("raw/doc-001-shard.md").exists());
    assert!(env.doc_named("doc-001-shard").is_some());

    // No terminal to ask on: -y is required.
    let out = env.run(&["remove", "doc-001-shard"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("pass -y"), "{}", stderr(&out));
    assert!(env.doc_named("doc-001-shard").is_some());

    let out = env.run(&["remove", "doc-001-shard", "--keep-raw", "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(kb.join("raw/doc-001-shard.md").exists());
    assert!(!kb.join("wiki/sources/doc-001-shard.md").exists());
    assert!(env.doc_named("doc-001-shard").is_none());

    let out = env.run(&["remove", "no-such-document", "-y"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no document matches"));
}

#[test]
fn never_deletes_outside_the_kb_whatever_the_entry_says() {
    let env = Env::with_kb();
    let kb = env.kb();
    let victims: Vec<_> = (1..=4)
        .map(|i| env.write(&format!("victims/v{i}.md"), "precious\n"))
        .collect();
    std::os::unix::fs::symlink(env.path().join("victims"), kb.join("raw/escape")).unwrap();
    let mut doc = Document::new("a".repeat(64));
    doc.name = Some("evil.md".into());
    doc.doc_name = Some("../../victims/v3".into());
    doc.raw_path = Some("../victims/v1.md".into());
    doc.source_path = Some(victims[1].to_str().unwrap().to_owned());
    doc.path = Some("raw/escape/v4.md".into());
    env.write_session()
        .write(|tx| tx.upsert_document(&doc))
        .unwrap();

    let out = env.run(&["remove", "evil.md", "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("leave ../victims/v1.md alone"),
        "{}",
        stdout(&out)
    );
    for victim in &victims {
        assert_eq!(
            std::fs::read_to_string(victim).unwrap(),
            "precious\n",
            "{victim:?}"
        );
    }
    assert!(env.docs().is_empty(), "the entry itself is removed");
}
