//! `openkb lint` on real KBs: what it finds, the report and log row it writes, and what
//! `--fix` rewrites.

use crate::harness::testkb::*;
use openkb::state::Queries;

fn reports(kb: &TestKb) -> Vec<String> {
    match std::fs::read_dir(kb.path("wiki/reports")) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
        Err(_) => Vec::new(),
    }
}

#[test]
fn an_empty_kb_has_nothing_to_lint_and_nothing_is_written() {
    let kb = TestKb::new();
    let log_md = kb.read("wiki/log.md");
    let output = kb.cmd().arg("lint").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stdout(&output).contains("Nothing to lint"),
        "{}",
        stdout(&output)
    );
    assert!(reports(&kb).is_empty());
    assert_eq!(kb.read("wiki/log.md"), log_md);
    assert_eq!(kb.store().reader().unwrap().log_count().unwrap(), 0);
}

/// A compiled wiki with one of each problem.
fn messy_kb() -> TestKb {
    let kb = TestKb::new();
    kb.add_doc("alpha.md", "alpha", true);
    kb.add_doc("beta.md", "beta", true);
    kb.add_doc("gamma.md", "gamma", false); // pending: no summary expected
    std::fs::remove_file(kb.path("wiki/summaries/beta.md")).unwrap();
    kb.write("wiki/summaries/ghost.md", "# Ghost\n\nNo document.\n");
    kb.write(
        "wiki/index.md",
        "# Knowledge Base Index\n\n## Documents\n\n- [[summaries/alpha]] (short) — alpha\n\n\
         ## Concepts\n\n- [[concepts/linked]]\n",
    );
    kb.write(
        "wiki/concepts/linked.md",
        "# Linked\n\nSee [[entities/missing-person|Missing Person]] and [[concepts/nowhere]], \
         [[concepts/nowhere#part]], [[summaries/alpha#intro|alpha]] and [[#top]].\n\n\
         ```\n[[concepts/in-code]]\n```\n",
    );
    kb.write(
        "wiki/concepts/lonely.md",
        "# Lonely\n\nLinks to [[concepts/lonely]] only.\n",
    );
    kb.write(
        "wiki/entities/someone.md",
        "# Someone\n\nSee [[concepts/linked]].\n",
    );
    kb.write(
        "wiki/explorations/question.md",
        "# Q\n\nAbout [[entities/someone]].\n",
    );
    kb
}

#[test]
fn lint_finds_broken_links_orphans_and_summary_mismatches() {
    let kb = messy_kb();
    let output = kb.cmd().args(["lint", "--json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let issues: Vec<(String, String, String)> = json["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_owned(),
                i["page"].as_str().unwrap().to_owned(),
                i["target"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expect = |k: &str, p: &str, t: &str| (k.to_owned(), p.to_owned(), t.to_owned());
    assert_eq!(
        issues,
        vec![
            expect(
                "broken-link",
                "concepts/linked.md",
                "entities/missing-person"
            ),
            expect("broken-link", "concepts/linked.md", "concepts/nowhere"),
            expect("broken-link", "concepts/linked.md", "concepts/nowhere"),
            expect("orphan-page", "concepts/lonely.md", ""),
            expect("orphan-page", "explorations/question.md", ""),
            expect("summary-without-document", "summaries/ghost.md", ""),
            expect("document-without-summary", "summaries/beta.md", "beta"),
        ]
    );
    assert_eq!(json["remaining"], 7);

    // The report and its log row.
    let names = reports(&kb);
    assert_eq!(names.len(), 1, "{names:?}");
    let name = &names[0];
    assert!(
        name.starts_with("lint_") && name.ends_with(".md") && name.len() == 23,
        "{name}"
    );
    assert_eq!(json["report"], format!("wiki/reports/{name}"));
    let report = kb.read(&format!("wiki/reports/{name}"));
    // The Python tool's header: the same stamp as the file name (lint_<stamp>.md).
    assert!(
        report.starts_with(&format!("# Lint Report — {}\n\n", &name[5..20])),
        "{report}"
    );
    assert!(report.contains("\n\n## Structural\n\n"), "{report}");
    assert!(report.contains("### Broken links (3)"), "{report}");
    assert!(report.contains("### Orphan pages (2)"), "{report}");
    assert!(report.contains("[[entities/missing-person]]"), "{report}");
    assert!(
        report.ends_with("## Semantic\n\nNot run (no LLM).\n"),
        "{report}"
    );
    let last = kb
        .store()
        .reader()
        .unwrap()
        .last_log_of("lint")
        .unwrap()
        .unwrap();
    assert_eq!(last.description, format!("report \u{2192} {name}"));
    assert!(
        kb.read("wiki/log.md")
            .ends_with(&openkb::log_md::entry(&last))
    );
    // Without --fix no page changes.
    assert!(
        kb.read("wiki/concepts/linked.md")
            .contains("[[concepts/nowhere]]")
    );
}

#[test]
fn fix_turns_broken_links_into_plain_text_and_keeps_the_rest() {
    let kb = messy_kb();
    let output = kb.cmd().args(["lint", "--fix"]).output().unwrap();
    // Orphans and summary mismatches remain: still exit 1.
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("Rewrote 1 page(s)"),
        "{}",
        stdout(&output)
    );
    assert_eq!(
        kb.read("wiki/concepts/linked.md"),
        "# Linked\n\nSee Missing Person and concepts/nowhere, concepts/nowhere, \
         [[summaries/alpha#intro|alpha]] and [[#top]].\n\n```\n[[concepts/in-code]]\n```\n"
    );
    let report = kb.read(&format!("wiki/reports/{}", reports(&kb)[0]));
    assert!(report.contains("(fixed: now plain text)"), "{report}");

    // Fix the rest by hand: lint is clean and exits 0.
    std::fs::remove_file(kb.path("wiki/summaries/ghost.md")).unwrap();
    kb.write("wiki/summaries/beta.md", "# beta\n");
    kb.write(
        "wiki/entities/someone.md",
        "# Someone\n\nSee [[concepts/linked]], [[concepts/lonely]], [[explorations/question]].\n",
    );
    let first = reports(&kb);
    let output = kb.cmd().arg("lint").output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("No structural issues left"));
    // A second report, even within the same second: the first one is kept as it was.
    let names = reports(&kb);
    assert_eq!(names.len(), 2);
    let second = names.iter().find(|n| !first.contains(n)).unwrap();
    assert!(
        kb.read(&format!("wiki/reports/{second}"))
            .contains("No structural issues found.")
    );
    assert!(
        kb.read(&format!("wiki/reports/{}", first[0]))
            .contains("(fixed: now plain text)")
    );
    assert_eq!(kb.log_rows("lint"), 2);
}

#[test]
fn lint_reads_beside_other_readers_and_writes_nothing_until_it_has_the_exclusive_lock() {
    let kb = messy_kb();
    let lock_path = kb.path(".openkb/ingest.lock");
    let reader =
        openkb::lock::acquire(&lock_path, openkb::lock::LockMode::Shared, &kb.root).unwrap();
    let output = kb
        .cmd()
        .env("OPENKB_LOCK_TIMEOUT", "0.3")
        .args(["lint", "--fix"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(reports(&kb).is_empty());
    assert!(
        kb.read("wiki/concepts/linked.md")
            .contains("[[concepts/nowhere]]")
    );
    assert_eq!(kb.store().reader().unwrap().log_count().unwrap(), 0);
    drop(reader);
    kb.cmd().arg("lint").assert().code(1);
    assert_eq!(reports(&kb).len(), 1);
}

#[test]
fn reports_of_the_same_second_get_their_own_files() {
    let kb = messy_kb();
    let openkb_kb = openkb::kb::Kb::at(&kb.root).unwrap();
    let analysis = openkb::lint::analyze(&openkb_kb.read_session().unwrap()).unwrap();
    let session = openkb_kb.write_session().unwrap();
    let stamp = "20260102_030405";
    let names: Vec<String> = (0..3)
        .map(|_| openkb::lint::write_report(&session, stamp, &analysis).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "lint_20260102_030405.md",
            "lint_20260102_030405-2.md",
            "lint_20260102_030405-3.md"
        ]
    );
    std::fs::write(kb.path("wiki/reports/lint_20260102_030405.md"), "mine\n").unwrap();
    openkb::lint::write_report(&session, stamp, &analysis).unwrap();
    assert_eq!(kb.read("wiki/reports/lint_20260102_030405.md"), "mine\n");
    assert_eq!(reports(&kb).len(), 4);
}
