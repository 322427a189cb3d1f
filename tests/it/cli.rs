//! Every foundation command through the built binary, on temp KBs with HOME redirected.

use crate::harness;

use std::os::unix::fs::PermissionsExt;

use crate::harness::{Background, Env, PythonLockHolder, open_store, stderr, stdout, text_doc};
use openkb::state::Status;
use predicates::prelude::*;

#[test]
fn init_creates_the_python_layout_and_registers_the_kb() {
    let sb = Env::new();
    let kb = sb.init_kb("kb");
    for dir in [
        "raw",
        "wiki/sources/images",
        "wiki/summaries",
        "wiki/concepts",
        "wiki/entities",
        ".openkb",
    ] {
        assert!(kb.join(dir).is_dir(), "{dir}");
    }
    assert_eq!(
        std::fs::read_to_string(kb.join(".openkb/config.yaml")).unwrap(),
        "language: en\nmodel: gpt-5.4\npageindex_threshold: 20\n"
    );
    assert_eq!(
        std::fs::read_to_string(kb.join("wiki/log.md")).unwrap(),
        "# Operations Log\n\n"
    );
    let index = std::fs::read_to_string(kb.join("wiki/index.md")).unwrap();
    assert!(index.starts_with("# Knowledge Base Index\n\n## Documents\n"));
    assert!(
        std::fs::read_to_string(kb.join("wiki/AGENTS.md"))
            .unwrap()
            .contains("# Wiki Schema")
    );
    assert!(kb.join(".openkb/state.db").is_file());
    assert!(
        !kb.join(".openkb/hashes.json").exists(),
        "no legacy registry"
    );
    let global = std::fs::read_to_string(sb.global_yaml()).unwrap();
    assert_eq!(
        global,
        format!("default_kb: {0}\nknown_kbs:\n- {0}\n", kb.display())
    );
    let store = open_store(&kb);
    assert_eq!(store.counts().unwrap().total(), 0);
}

#[test]
fn init_takes_model_and_language_and_validates_them() {
    let sb = Env::new();
    sb.assert_bare()
        .args([
            "--kb-dir",
            "kb",
            "init",
            "--model",
            "anthropic/claude",
            "-l",
            "de",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "model: anthropic/claude, language: de",
        ));
    let config = std::fs::read_to_string(sb.path().join("kb/.openkb/config.yaml")).unwrap();
    assert_eq!(
        config,
        "language: de\nmodel: anthropic/claude\npageindex_threshold: 20\n"
    );
    sb.assert_bare()
        .args(["--kb-dir", "bad", "init", "--model", "a\nb"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("control characters"));
    sb.assert_bare()
        .args(["--kb-dir", "bad", "init", "--language"])
        .arg("x".repeat(51))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("longer than 50"));
    assert!(!sb.path().join("bad/.openkb").exists(), "nothing created");
}

#[test]
fn init_refuses_an_existing_kb_and_changes_nothing() {
    let sb = Env::new();
    let kb = sb.init_kb("kb");
    std::fs::write(kb.join(".openkb/config.yaml"), "model: mine\n").unwrap();
    sb.assert_bare()
        .current_dir(&kb)
        .arg("init")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already an openkb knowledge base"));
    assert_eq!(
        std::fs::read_to_string(kb.join(".openkb/config.yaml")).unwrap(),
        "model: mine\n"
    );
}

#[test]
fn init_files_follow_the_umask() {
    let sb = Env::new();
    let out = harness::openkb_with_umask("027", &sb.home(), sb.path())
        .args(["--kb-dir", "kb2", "init"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for file in [".openkb/config.yaml", "wiki/index.md", "wiki/log.md"] {
        let mode = std::fs::metadata(sb.path().join("kb2").join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o640, "{file}");
    }
}

#[test]
fn discovery_walks_up_from_the_working_directory() {
    let sb = Env::new();
    let kb = sb.init_kb("kb");
    let deep = kb.join("wiki/concepts");
    sb.assert_bare()
        .current_dir(&deep)
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(format!(
            "Knowledge base: {}\n",
            kb.display()
        )));
    // OPENKB_DIR wins over the working directory.
    let other = sb.init_kb("other");
    sb.assert_bare()
        .current_dir(&deep)
        .env("OPENKB_DIR", &other)
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(format!(
            "Knowledge base: {}\n",
            other.display()
        )));
}

#[test]
fn use_sets_the_default_kb_used_outside_any_kb() {
    let sb = Env::new();
    let first = sb.init_kb("first");
    let second = sb.init_kb("second");
    let outside = sb.path().join("elsewhere");
    std::fs::create_dir(&outside).unwrap();
    let status_from_outside = || {
        let out = sb
            .bare(sb.path())
            .current_dir(&outside)
            .arg("status")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        stdout(&out).lines().next().unwrap().to_owned()
    };
    assert_eq!(
        status_from_outside(),
        format!("Knowledge base: {}", second.display())
    );
    sb.assert_bare()
        .arg("use")
        .arg(&first)
        .assert()
        .success()
        .stdout(predicate::str::contains(first.display().to_string()));
    assert_eq!(
        status_from_outside(),
        format!("Knowledge base: {}", first.display())
    );
    let global = std::fs::read_to_string(sb.global_yaml()).unwrap();
    assert_eq!(
        global.matches(&*first.display().to_string()).count(),
        2,
        "{global}"
    );
    sb.assert_bare()
        .args(["use", "elsewhere"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("not an openkb knowledge base"));
}

#[test]
fn use_keeps_unknown_global_keys_and_refuses_malformed_yaml() {
    let sb = Env::new();
    let kb = sb.init_kb("kb");
    let global = sb.global_yaml();
    let text = std::fs::read_to_string(&global).unwrap();
    std::fs::write(&global, format!("{text}kb_aliases:\n  main: /x\n")).unwrap();
    sb.assert_bare().arg("use").arg(&kb).assert().success();
    assert!(
        std::fs::read_to_string(&global)
            .unwrap()
            .contains("kb_aliases:\n  main: /x\n")
    );

    let broken = "default_kb: [unclosed\nknown_kbs: 3\n";
    std::fs::write(&global, broken).unwrap();
    sb.assert_bare()
        .arg("use")
        .arg(&kb)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(global.display().to_string()))
        .stderr(predicate::str::contains("line 2"));
    assert_eq!(
        std::fs::read_to_string(&global).unwrap(),
        broken,
        "not overwritten"
    );
}

#[test]
fn no_kb_anywhere_suggests_init() {
    let sb = Env::new();
    sb.assert_bare()
        .arg("list")
        .assert()
        .code(3)
        .stderr(predicate::str::contains("no knowledge base found"))
        .stderr(predicate::str::contains("openkb init"));
}

#[test]
fn kb_dir_pointing_at_a_file_or_nowhere_is_explained() {
    let sb = Env::new();
    std::fs::write(sb.path().join("file.txt"), "x").unwrap();
    sb.assert_bare()
        .args(["--kb-dir", "file.txt", "status"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "file.txt: is a file, not a folder",
        ));
    sb.assert_bare()
        .args(["--kb-dir", "missing", "status"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("missing: does not exist"));
}

#[test]
fn a_legacy_kb_is_refused_by_every_command_and_no_state_db_appears() {
    let sb = Env::new();
    let kb = sb.path().join("legacy");
    std::fs::create_dir_all(kb.join(".openkb")).unwrap();
    std::fs::write(
        kb.join(".openkb/hashes.json"),
        format!(
            "{{\"{}\": {{\"name\": \"a.md\", \"type\": \"md\"}}}}",
            "a".repeat(64)
        ),
    )
    .unwrap();
    for args in [&["list"][..], &["status"], &["log"], &["list", "--json"]] {
        sb.assert_bare()
            .current_dir(&kb)
            .args(args)
            .assert()
            .code(3)
            .stderr(predicate::str::contains("hashes.json holds 1 document(s)"))
            .stderr(predicate::str::contains("openkb migrate"));
    }
    assert!(!kb.join(".openkb/state.db").exists());
}

#[test]
fn list_shows_registry_order_with_status() {
    let sb = Env::new();
    let kb = sb.init_kb("kb");
    sb.assert_bare()
        .current_dir(&kb)
        .arg("list")
        .assert()
        .success()
        .stdout(predicate::str::contains("No documents registered"));
    sb.assert_bare()
        .current_dir(&kb)
        .args(["list", "--json"])
        .assert()
        .success()
        .stdout("{\n  \"format_version\": 1,\n  \"documents\": []\n}\n");
    harness::write_session(&kb)
        .write(|tx| {
            tx.upsert_document(&text_doc(3, "zeta"))?;
            tx.upsert_document(&text_doc(1, "alpha"))?;
            tx.upsert_document(&openkb::state::Document {
                name: Some("Legacy Paper 0.md".into()),
                doc_type: Some("md".into()),
                ..openkb::state::Document::new(harness::hash_of(2))
            })?;
            tx.set_status(&harness::hash_of(1), Status::Compiled, None)?;
            Ok(())
        })
        .unwrap();
    let out = sb
        .bare(sb.path())
        .current_dir(&kb)
        .arg("list")
        .output()
        .unwrap();
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{text}");
    assert!(
        lines[1].starts_with("zeta.md") && lines[1].ends_with("pending"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("alpha.md") && lines[2].ends_with("compiled"),
        "{text}"
    );
    assert!(
        lines[3].contains("Legacy Paper 0"),
        "legacy doc_name from the stem: {text}"
    );
    assert_eq!(lines[4], "3 document(s)");

    let out = sb
        .bare(sb.path())
        .current_dir(&kb)
        .args(["list", "--json"])
        .output()
        .unwrap();
    let docs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = docs["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["zeta.md", "alpha.md", "Legacy Paper 0.md"]);
    let docs = &docs["documents"];
    assert_eq!(docs[1]["status"], "compiled");
    assert_eq!(docs[0]["type"], "md");
    assert_eq!(docs[0]["doc_name"], "zeta");
}

#[test]
fn status_reports_counts_files_and_state() {
    let sb = Env::new();
    let kb = sb.init_kb("kb");
    std::fs::write(kb.join("raw/a.md"), "a").unwrap();
    std::fs::create_dir(kb.join("raw/sub")).unwrap();
    std::fs::write(kb.join("raw/sub/b.pdf"), "b").unwrap();
    std::fs::write(kb.join("raw/.hidden"), "h").unwrap();
    std::fs::write(kb.join("wiki/summaries/a.md"), "s").unwrap();
    harness::write_session(&kb)
        .write(|tx| {
            tx.upsert_document(&text_doc(1, "a"))?;
            tx.upsert_document(&text_doc(2, "b"))?;
            tx.set_status(&harness::hash_of(2), Status::Failed, Some("boom"))?;
            tx.append_log("ingest", "a.md")?;
            tx.append_log("lint", "report → lint_20260101_000000.md")
        })
        .unwrap();
    let out = sb
        .bare(sb.path())
        .current_dir(&kb)
        .arg("status")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.starts_with(&format!("Knowledge base: {}\n", kb.display())));
    assert!(
        text.contains("Documents: 2 (compiled 0, pending 1, failed 1)"),
        "{text}"
    );
    assert!(text.contains("Raw files: 2\n"), "{text}");
    assert!(text.contains("summaries 1"), "{text}");
    // An ingest row is no compile.
    assert!(text.contains("Last compile: never\n"), "{text}");
    assert!(
        text.contains("lint | report → lint_20260101_000000.md"),
        "{text}"
    );
    let version = openkb::state::schema::latest_version();
    assert!(
        text.contains(&format!("schema version {version}")),
        "{text}"
    );

    let out = sb
        .bare(sb.path())
        .current_dir(&kb)
        .args(["status", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["documents"]["failed"], 1);
    assert_eq!(report["total_documents"], 2);
    assert_eq!(report["raw_files"], 2);
    assert_eq!(report["last_lint"]["operation"], "lint");
}

#[test]
fn log_shows_newest_last_with_limit_and_filter() {
    let sb = Env::new();
    let kb = sb.init_kb("kb");
    let session = harness::write_session(&kb);
    for i in 0..30 {
        let op = if i % 3 == 0 { "query" } else { "ingest" };
        session.record(op, &format!("entry {i}")).unwrap();
    }
    drop(session);
    let log_md = std::fs::read_to_string(kb.join("wiki/log.md")).unwrap();
    assert!(log_md.starts_with("# Operations Log\n\n## ["));
    assert_eq!(
        log_md.matches("\n## [").count() + 1,
        31,
        "header + 30 entries"
    );
    assert!(log_md.ends_with("] ingest | entry 29\n\n"));

    let out = sb
        .bare(sb.path())
        .current_dir(&kb)
        .arg("log")
        .output()
        .unwrap();
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 20, "default is the newest 20");
    assert!(lines[19].ends_with("ingest | entry 29"));
    assert!(lines[0].ends_with("entry 10"));
    let out = sb
        .bare(sb.path())
        .current_dir(&kb)
        .args(["log", "-n", "3", "--op", "query"])
        .output()
        .unwrap();
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l.contains("] query | ")));
    assert!(lines[2].ends_with("entry 27"));
    let out = sb
        .bare(sb.path())
        .current_dir(&kb)
        .args(["log", "--all", "--json"])
        .output()
        .unwrap();
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(log["entries"].as_array().unwrap().len(), 30);
    assert_eq!(log["entries"][0]["description"], "entry 0");
}

#[test]
fn a_python_lock_holder_makes_commands_wait_then_time_out() {
    let sb = Env::new();
    let kb = sb.init_kb("kb");
    let holder = PythonLockHolder::hold(&kb.join(".openkb/ingest.lock"), true);
    let out = sb
        .bare(sb.path())
        .current_dir(&kb)
        .env("OPENKB_LOCK_TIMEOUT", "0.5")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("waiting for another openkb process on"),
        "{err}"
    );
    assert!(err.contains("timed out after 0.5s"), "{err}");

    // With a timeout it would not reach, and without one, the command waits (it says so and
    // is still running while the lock is held) and succeeds once the holder is gone.
    let mut holder = Some(holder);
    for timeout in [Some("600"), None] {
        let held = holder
            .take()
            .unwrap_or_else(|| PythonLockHolder::hold(&kb.join(".openkb/ingest.lock"), true));
        let mut cmd = sb.bare(sb.path());
        cmd.current_dir(&kb).arg("status");
        if let Some(seconds) = timeout {
            cmd.env("OPENKB_LOCK_TIMEOUT", seconds);
        }
        let mut waiter = Background::start(&mut cmd);
        waiter.wait_for_stderr("waiting for another openkb process on");
        assert!(
            waiter.is_running(),
            "timeout {timeout:?}: went on while held"
        );
        held.release();
        let (status, _, err) = waiter.finish();
        assert!(status.success(), "timeout {timeout:?}: {err}");
    }
}

#[test]
fn a_bad_setting_is_reported_by_every_command() {
    let sb = Env::new();
    let kb = sb.init_kb("kb");
    // Settings are read once, before the command runs: a read command, a write command and one
    // that needs no KB all refuse the same way, and nothing is written.
    for (name, value, said) in [
        (
            "OPENKB_LOCK_TIMEOUT",
            "soon",
            "OPENKB_LOCK_TIMEOUT=\"soon\" is not a number",
        ),
        (
            "OPENKB_NETWORK_FS",
            "yes",
            "OPENKB_NETWORK_FS=\"yes\" is not understood",
        ),
        (
            "OPENKB_WATCH_DEBOUNCE_MS",
            "2s",
            "OPENKB_WATCH_DEBOUNCE_MS=\"2s\" is not a number",
        ),
    ] {
        for args in [&["list"][..], &["add", "raw"], &["kbs"]] {
            sb.assert_bare()
                .current_dir(&kb)
                .env(name, value)
                .args(args)
                .assert()
                .code(1)
                .stderr(predicate::str::contains(said));
        }
    }
    let log = std::fs::read_to_string(kb.join("wiki/log.md")).unwrap();
    assert!(!log.contains("ingest"), "{log}");
}

#[test]
fn a_state_db_that_is_not_a_database_is_reported_not_replaced() {
    let sb = Env::new();
    let kb = sb.init_kb("kb");
    let db = kb.join(".openkb/state.db");
    std::fs::write(&db, vec![7u8; 4096]).unwrap();
    sb.assert_bare()
        .current_dir(&kb)
        .arg("list")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "state.db: is not an openkb state database",
        ));
    assert_eq!(std::fs::read(&db).unwrap(), vec![7u8; 4096]);
}

#[test]
fn version_and_help_on_every_command() {
    let sb = Env::new();
    sb.assert_bare()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("openkb "));
    sb.assert_bare()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Exit codes"));
    for command in ["init", "use", "list", "status", "log"] {
        sb.assert_bare()
            .args([command, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Usage: openkb"));
    }
    sb.assert_bare().arg("frobnicate").assert().code(2);
}

/// What a killed `init` of an older build could leave: config written, `state.db` created but
/// empty (0 bytes) or holding only a SQLite header. The next `init` finishes the KB.
#[test]
fn init_finishes_a_kb_whose_state_db_a_killed_init_left_empty() {
    let sb = Env::new();
    for leftover in ["zero bytes", "header only"] {
        let kb = sb.init_kb(&leftover.replace(' ', "-"));
        let db = kb.join(".openkb/state.db");
        std::fs::remove_file(&db).unwrap();
        if leftover == "zero bytes" {
            std::fs::write(&db, b"").unwrap();
        } else {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch("PRAGMA journal_mode = WAL; VACUUM;")
                .unwrap();
            drop(conn);
            assert!(std::fs::metadata(&db).unwrap().len() > 0);
        }
        let out = sb.openkb(&kb, &["init"]).output().unwrap();
        assert!(out.status.success(), "{leftover}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("finishing the interrupted initialization"),
            "{leftover}: {}",
            stderr(&out)
        );
        let store = open_store(&kb);
        assert_eq!(
            store.schema_version(),
            openkb::state::schema::latest_version(),
            "{leftover}"
        );
        let out = sb.openkb(&kb, &["init"]).output().unwrap();
        assert!(stderr(&out).contains("already"), "{}", stderr(&out));
    }
}

/// A temp database of a killed init (built aside, never linked in) is removed by the next
/// init, which builds its own and links it in.
#[test]
fn init_removes_the_temp_database_of_a_killed_init() {
    let sb = Env::new();
    let kb = sb.init_kb("kb");
    let db = kb.join(".openkb/state.db");
    let temp = kb.join(".openkb/state.db.init-999999999");
    std::fs::rename(&db, &temp).unwrap();
    let out = sb.openkb(&kb, &["init"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!temp.exists(), "the temp database was left");
    assert_eq!(
        open_store(&kb).schema_version(),
        openkb::state::schema::latest_version()
    );
    let left: Vec<String> = std::fs::read_dir(kb.join(".openkb"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.db."))
        .collect();
    assert!(left.is_empty(), "temp databases left: {left:?}");
    assert!(kb.join(".openkb/state.db").is_file());
}

/// A Python-tool KB missing its config.yaml: init writes the config but never a state.db
/// beside the unmigrated hashes.json (every document would look new), and says to migrate.
#[test]
fn init_never_creates_state_db_beside_an_unmigrated_hashes_json() {
    let sb = Env::new();
    let kb = sb.fixture_kb("legacy");
    std::fs::remove_file(kb.join(".openkb/config.yaml")).ok();
    assert!(!kb.join(".openkb/state.db").exists());
    let out = sb.openkb(&kb, &["init"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("openkb migrate"), "{}", stderr(&out));
    assert!(kb.join(".openkb/config.yaml").is_file());
    assert!(!kb.join(".openkb/state.db").exists());
    // And again: the KB is whole now (config + a registry to migrate).
    let out = sb.openkb(&kb, &["init"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!kb.join(".openkb/state.db").exists());
    let out = sb.openkb(&kb, &["migrate"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(open_store(&kb).list().unwrap().len(), 50);
}
