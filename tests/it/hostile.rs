//! Hostile input: registry entries, crash journals, intents, symlinks and names that try to
//! make openkb delete or write what is not a document's own. Every test keeps a canary folder
//! outside the KB and a snapshot of the KB ([`harness::Guard`]) and asserts that nothing outside
//! changed and nothing inside changed but the named document's own files.

use crate::harness;

use std::path::Path;

use crate::harness::{Env, Guard, Run, copy_fixture_kb, hash_of, run};
use openkb::state::{Document, IntentFile, IntentOp, Status};
use serde_json::{Value, json};

fn show(runs: &[(&str, &Run)]) -> String {
    runs.iter()
        .map(|(what, r)| format!("{what} -> {}\n{}{}", r.code, r.stdout, r.stderr))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A copy of the legacy fixture at `<env>/kb` with `extra` entries added to its hashes.json.
fn legacy_with(env: &Env, extra: &[(String, Value)]) {
    copy_fixture_kb(&env.kb());
    let path = env.kb().join(".openkb/hashes.json");
    let mut registry: serde_json::Map<String, Value> =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for (hash, entry) in extra {
        registry.insert(hash.clone(), entry.clone());
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&registry).unwrap()).unwrap();
}

/// Legacy entries whose paths name folders or the KB's own files.
fn dangerous_entries() -> Vec<(String, Value)> {
    let paths = [
        ("raw_path", "raw/"),
        ("raw_path", "raw"),
        ("raw_path", "wiki/"),
        ("raw_path", "wiki/sources/images/"),
        ("raw_path", ".openkb/state.db"),
        ("raw_path", ".openkb/config.yaml"),
        ("source_path", "wiki/index.md"),
        ("path", "raw/"),
        ("source_path", "wiki/AGENTS.md"),
        ("raw_path", "wiki/log.md"),
    ];
    paths
        .iter()
        .enumerate()
        .map(|(i, (key, value))| {
            let mut entry = json!({
                "name": format!("hostile-{i}.md"),
                "doc_name": format!("hostile-{i}"),
                "type": "md",
            });
            entry[*key] = json!(value);
            (hash_of(9000 + i as u64), entry)
        })
        .collect()
}

#[test]
fn legacy_entries_naming_folders_or_kb_files_are_kept_marked_and_never_touched() {
    let env = Env::new();
    let entries = dangerous_entries();
    legacy_with(&env, &entries);
    env.write("kb/wiki/sources/images/doc-001-shard/fig.png", "png");
    let migrate = run(env.cmd().arg("migrate"));
    assert_eq!(migrate.code, 0, "{}", migrate.stderr);
    assert_eq!(
        migrate.stdout.matches("marked untrusted").count(),
        entries.len(),
        "{}",
        migrate.stdout
    );
    // Nothing of the registry was dropped.
    assert_eq!(env.docs().len(), 50 + entries.len());
    let mut guard = Guard::new(env.path(), &env.kb());
    guard.retake();

    let doctor = run(env.cmd().args(["doctor", "--json"]));
    let report: Value = serde_json::from_str(&doctor.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let untrusted: Vec<&Value> = findings
        .iter()
        .filter(|f| f["check"] == "untrusted-entry")
        .collect();
    assert_eq!(untrusted.len(), entries.len(), "{}", doctor.stdout);
    // doctor no longer recommends removing by a path it must not delete.
    for f in findings.iter().filter(|f| f["check"] == "missing-raw") {
        assert!(
            !f["message"].as_str().unwrap().contains("hostile"),
            "{}",
            f["message"]
        );
    }

    let mut runs = Vec::new();
    for i in 0..entries.len() {
        let name = format!("hostile-{i}.md");
        let out = run(env.cmd().args(["remove", "-y", &name]));
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        assert!(out.stdout.contains("touch no file"), "{}", out.stdout);
        runs.push((name, out));
    }
    let shown: Vec<(&str, &Run)> = runs.iter().map(|(n, r)| (n.as_str(), r)).collect();
    guard.assert_only(&[], &show(&shown));
    assert_eq!(env.docs().len(), 50);
    // No intent was left that could block later work: add and doctor --fix just work.
    let file = env.write("in/after.md", "# after\n");
    let add = run(env.cmd().arg("add").arg(&file));
    assert_eq!(add.code, 0, "{}", add.stderr);
    let fix = run(env.cmd().args(["doctor", "--fix"]));
    assert!(
        fix.stdout.contains("no interrupted operations"),
        "{}",
        fix.stdout
    );
    for dir in ["raw", "wiki", "wiki/sources/images"] {
        assert!(env.kb().join(dir).is_dir(), "{dir} is gone");
    }
    for file in [".openkb/config.yaml", "wiki/index.md", "wiki/AGENTS.md"] {
        assert!(env.kb().join(file).is_file(), "{file} is gone");
    }
}

#[test]
fn an_intent_naming_folders_and_kb_files_settles_without_deleting_them() {
    let env = Env::with_kb();
    let a = env.write("in/a.md", "# a\n");
    assert_eq!(run(env.cmd().arg("add").arg(&a)).code, 0);
    let hash = env.doc_named("a").unwrap().hash;
    // What a `raw_path` of `raw` used to leave behind, and worse.
    env.write_session()
        .write(|tx| {
            tx.record_intent(
                IntentOp::Remove,
                &hash,
                Some("a"),
                &[
                    IntentFile::new("raw"),
                    IntentFile::new("wiki/"),
                    IntentFile::new(".openkb/config.yaml"),
                    IntentFile::new("wiki/sources/images/"),
                    IntentFile::new("raw/a.md"),
                    IntentFile::new("wiki/sources/a.md"),
                ],
            )?;
            // An add that "created" KB files: rolling it back must not delete them.
            tx.record_intent(
                IntentOp::Add,
                &hash_of(4242),
                Some("z"),
                &[
                    IntentFile::new("wiki/index.md"),
                    IntentFile::new("wiki/AGENTS.md"),
                    IntentFile::new(".openkb/config.yaml"),
                    IntentFile::new("raw"),
                    IntentFile {
                        path: "raw/z.md".into(),
                        backup: Some(".openkb/config.yaml".into()),
                    },
                ],
            )
        })
        .unwrap();
    let guard = Guard::new(env.path(), &env.kb());
    let b = env.write("in/b.md", "# b\n");
    let add = run(env.cmd().arg("add").arg(&b));
    assert_eq!(add.code, 0, "{}", add.stderr);
    assert!(add.stderr.contains("left raw alone"), "{}", add.stderr);
    assert!(
        add.stderr.contains("left wiki/AGENTS.md alone"),
        "{}",
        add.stderr
    );
    guard.assert_only(
        &[
            "raw/a.md",
            "wiki/sources/a.md",
            "raw/b.md",
            "wiki/sources/b.md",
            "wiki/index.md",
        ],
        &show(&[("add", &add)]),
    );
    assert!(env.doc_named("a").is_none());
    assert!(env.doc_named("b").is_some());
    harness::assert_consistent(&env);
}

#[test]
fn an_intent_that_cannot_settle_blocks_nothing_and_doctor_fix_settles_it() {
    let env = Env::with_kb();
    let a = env.write("in/a.md", "# a\n");
    let b = env.write("in/b.md", "# b\n");
    assert_eq!(run(env.cmd().arg("add").arg(&a).arg(&b)).code, 0);
    env.set_config("compile_command: 'true'\n");
    let hash = env.doc_named("a").unwrap().hash;
    env.write_session()
        .write(|tx| {
            tx.record_intent(
                IntentOp::Remove,
                &hash,
                Some("a"),
                &[IntentFile::new("raw/a.md")],
            )
        })
        .unwrap();
    // index.md cannot be edited: the remove cannot finish, and must not half-happen.
    let index = env.kb().join("wiki/index.md");
    let good_index = std::fs::read(&index).unwrap();
    let mut bad = good_index.clone();
    bad.extend_from_slice(b"\xff\xfe broken\n");
    std::fs::write(&index, &bad).unwrap();
    let guard = Guard::new(env.path(), &env.kb());

    // An unrelated write (compiling b) still runs, with a warning about the intent.
    let compile = run(env.cmd().args(["compile", "b"]));
    assert_eq!(compile.code, 0, "{}", compile.stderr);
    assert!(
        compile.stderr.contains("could not finish"),
        "{}",
        compile.stderr
    );
    assert_eq!(env.doc_named("b").unwrap().status, Status::Compiled);
    assert!(
        env.kb().join("raw/a.md").is_file(),
        "a half-done remove deleted raw/a.md"
    );
    guard.assert_only(&[], &show(&[("compile", &compile)]));

    let doctor = run(env.cmd().arg("doctor"));
    assert_eq!(doctor.code, 1, "{}", doctor.stdout);
    assert!(
        doctor.stdout.contains("interrupted remove of a"),
        "{}",
        doctor.stdout
    );

    std::fs::write(&index, &good_index).unwrap();
    let fix = run(env.cmd().args(["doctor", "--fix"]));
    assert!(
        fix.stdout.contains("1 remove(s) finished"),
        "{}",
        fix.stdout
    );
    assert!(!env.kb().join("raw/a.md").exists());
    assert!(env.doc_named("a").is_none());
}

#[test]
fn remove_checks_everything_before_it_deletes_the_first_file() {
    let env = Env::with_kb();
    let a = env.write("in/a.md", "# a\n");
    assert_eq!(run(env.cmd().arg("add").arg(&a)).code, 0);
    let index = env.kb().join("wiki/index.md");
    let mut bytes = std::fs::read(&index).unwrap();
    bytes.extend_from_slice(b"- caf\xe9 (latin-1)\n");
    std::fs::write(&index, &bytes).unwrap();
    let before = harness::kb_snapshot(&env.kb());
    let guard = Guard::new(env.path(), &env.kb());

    let out = run(env.cmd().args(["remove", "-y", "a"]));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("index.md") && out.stderr.contains("not valid UTF-8"),
        "{}",
        out.stderr
    );
    guard.assert_only(&[], &show(&[("remove", &out)]));
    assert_eq!(harness::kb_snapshot(&env.kb()), before);
    assert!(env.doc_named("a").is_some());
    let reader = env.store().reader().unwrap();
    assert!(
        openkb::state::intents::unfinished(&reader)
            .unwrap()
            .is_empty()
    );
}

/// A Python journal at `<kb>/.openkb/journal/<name>.json`.
fn write_journal(kb: &Path, name: &str, backup_dir: &str, entries: Value) {
    let kb_text = kb.canonicalize().unwrap().display().to_string();
    let journal = json!({
        "version": 1, "operation": "add", "status": "active", "kb_dir": kb_text,
        "backup_dir": backup_dir.replace("<kb>", &kb_text),
        "entries": serde_json::from_str::<Value>(
            &entries.to_string().replace("<kb>", &kb_text)
        ).unwrap(),
    });
    let dir = kb.join(".openkb/journal");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.json")), journal.to_string()).unwrap();
}

#[test]
fn python_journals_naming_kb_folders_are_reported_and_never_executed() {
    let env = Env::new();
    copy_fixture_kb(&env.kb());
    let kb = env.kb();
    std::fs::create_dir_all(kb.join("raw/keep")).unwrap();
    std::fs::write(kb.join("raw/keep/precious.md"), "keep").unwrap();
    let staging = "<kb>/.openkb/staging/rollback-1";
    write_journal(&kb, "a", "<kb>/raw", json!([]));
    write_journal(&kb, "b", "<kb>/.openkb", json!([]));
    write_journal(
        &kb,
        "c",
        staging,
        json!([{"target": "<kb>/.openkb", "backup": null}]),
    );
    write_journal(
        &kb,
        "d",
        staging,
        json!([{"target": "<kb>/wiki", "backup": null}]),
    );
    write_journal(
        &kb,
        "e",
        staging,
        json!([{"target": "<kb>/raw", "backup": null}]),
    );
    write_journal(
        &kb,
        "f",
        staging,
        json!([{"target": "<kb>/raw/keep", "backup": null}]),
    );
    write_journal(
        &kb,
        "g",
        staging,
        json!([{"target": "<kb>/wiki/index.md", "backup": "<kb>/raw/doc-001-shard.md"}]),
    );
    // A well-formed journal, but a link to a file outside: recovery writes a journal back
    // (its status), which would go through the link.
    write_journal(&kb, "h", staging, json!([]));
    let linked = env.path().join("canary/h.json");
    std::fs::create_dir_all(linked.parent().unwrap()).unwrap();
    std::fs::rename(kb.join(".openkb/journal/h.json"), &linked).unwrap();
    std::os::unix::fs::symlink(&linked, kb.join(".openkb/journal/h.json")).unwrap();
    let guard = Guard::new(env.path(), &kb);

    let migrate = run(env.cmd().arg("migrate"));
    assert_ne!(migrate.code, 0);
    for name in ["a", "b", "c", "d", "e", "f", "g", "h"] {
        assert!(
            migrate
                .stderr
                .contains(&format!("journal {name}.json: refused as untrusted")),
            "{name}: {}",
            migrate.stderr
        );
    }
    guard.assert_only(&[], &show(&[("migrate", &migrate)]));
    assert!(!kb.join(".openkb/state.db").exists());

    let doctor = run(env.cmd().arg("doctor"));
    assert_eq!(
        doctor.stdout.matches("refused as untrusted").count(),
        8,
        "{}",
        doctor.stdout
    );
    guard.assert_only(&[], &show(&[("doctor", &doctor)]));
}

#[test]
fn a_symlinked_python_journal_is_refused_not_written_through() {
    let env = Env::new();
    copy_fixture_kb(&env.kb());
    let kb = env.kb();
    write_journal(&kb, "j", "<kb>/.openkb/staging/rollback-1", json!([]));
    let linked = env.path().join("canary/j.json");
    std::fs::create_dir_all(linked.parent().unwrap()).unwrap();
    std::fs::rename(kb.join(".openkb/journal/j.json"), &linked).unwrap();
    std::os::unix::fs::symlink(&linked, kb.join(".openkb/journal/j.json")).unwrap();
    let guard = Guard::new(env.path(), &kb);

    let migrate = run(env.cmd().arg("migrate"));
    assert_ne!(migrate.code, 0, "{}", migrate.stdout);
    assert!(
        migrate
            .stderr
            .contains("journal j.json: refused as untrusted")
            && migrate.stderr.contains("symbolic link"),
        "{}",
        migrate.stderr
    );
    guard.assert_only(&[], &show(&[("migrate", &migrate)]));
}

/// Each bookkeeping path replaced by a symlink into the canary: every command that would
/// write through it refuses with a message naming it, and nothing changes anywhere.
#[test]
fn bookkeeping_files_are_never_followed_through_symlinks() {
    for (rel, target) in [
        ("wiki/log.md", "victim.md"),
        ("wiki/index.md", "victim.md"),
        ("wiki/reports", "deep"),
        (".openkb/staging", "deep"),
        (".openkb/ingest.lock", "new.lock"),
        (".openkb/state.db", "new.db"),
        (".openkb/state.db-wal", "new.db-wal"),
    ] {
        let env = Env::with_kb();
        let a = env.write("in/a.md", "# a\n");
        assert_eq!(run(env.cmd().arg("add").arg(&a)).code, 0);
        let mut guard = Guard::new(env.path(), &env.kb());
        let path = env.kb().join(rel);
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else if rel != ".openkb/state.db" {
            // (a -wal is removed when the last connection closes: the link replaces it)
            let _ = std::fs::remove_file(&path);
        } else {
            // The database moves aside; the link would make openkb create a new one outside.
            std::fs::rename(&path, env.path().join("state.db.kept")).unwrap();
            let _ = std::fs::remove_file(env.kb().join(".openkb/state.db-wal"));
            let _ = std::fs::remove_file(env.kb().join(".openkb/state.db-shm"));
        }
        std::os::unix::fs::symlink(guard.canary.join(target), &path).unwrap();
        guard.retake();

        let (runs, context) = run_write_commands(&env, rel);
        for (what, out) in &runs {
            assert_ne!(out.code, 0, "{what} ran through a symlinked {context}");
            assert!(
                out.stderr.contains("symbolic link"),
                "{what}: no clear message\n{context}"
            );
        }
        guard.assert_only(&[], &context);
        if rel.starts_with(".openkb/state.db") || rel.ends_with(".lock") {
            // Even a read would open the database or the lock file through the link.
            let list = run(env.cmd().arg("list"));
            assert_ne!(list.code, 0, "list read through a symlinked {rel}");
            assert!(list.stderr.contains("symbolic link"), "{}", list.stderr);
            guard.assert_only(&[], &format!("list: {}", list.stderr));
        }
        let doctor = run(env.cmd().arg("doctor"));
        assert_eq!(doctor.code, 1, "{}", doctor.stdout);
        assert!(
            doctor.stdout.contains(&format!("{rel} is a symbolic link")),
            "{}",
            doctor.stdout
        );
        guard.assert_only(&[], &format!("doctor: {}", doctor.stdout));
    }
}

/// Every kind of write on a KB holding document `a`: add a new file, `lint --fix`, remove
/// `a`, `doctor --fix`. Returns each command with its run, and all of them shown for a failure
/// message about `rel`.
fn run_write_commands(env: &Env, rel: &str) -> (Vec<(String, Run)>, String) {
    let b = env.write("in/b.md", "# b\n");
    let mut runs = Vec::new();
    for args in [
        vec!["add".to_owned(), b.display().to_string()],
        vec!["lint".into(), "--fix".into()],
        vec!["remove".into(), "-y".into(), "a".into()],
        vec!["doctor".into(), "--fix".into()],
    ] {
        let out = run(env.cmd().args(&args));
        runs.push((args.join(" "), out));
    }
    let shown: Vec<(&str, &Run)> = runs.iter().map(|(n, r)| (n.as_str(), r)).collect();
    let context = format!("{rel}:\n{}", show(&shown));
    (runs, context)
}

/// A linked `wiki/` or `.openkb/` (the real folder moved out of the KB): every write command
/// refuses before it shows or does anything, and says how to put the folder back.
#[test]
fn a_linked_wiki_or_openkb_folder_blocks_writes_with_a_way_out() {
    for rel in ["wiki", ".openkb"] {
        let env = Env::with_kb();
        let a = env.write("in/a.md", "# a\n");
        assert_eq!(run(env.cmd().arg("add").arg(&a)).code, 0);
        let mut guard = Guard::new(env.path(), &env.kb());
        let moved = guard.canary.join(format!("moved{rel}"));
        std::fs::rename(env.kb().join(rel), &moved).unwrap();
        std::os::unix::fs::symlink(&moved, env.kb().join(rel)).unwrap();
        guard.retake();

        let (runs, context) = run_write_commands(&env, rel);
        for (what, out) in &runs {
            assert_ne!(out.code, 0, "{what} ran through a linked {context}");
            assert!(
                out.stderr.contains("symbolic link")
                    && out.stderr.contains(rel)
                    && out
                        .stderr
                        .contains("delete the link and move its target to its place"),
                "{what}: no way out said\n{context}"
            );
            assert!(
                !out.stdout.contains("Remove "),
                "{what}: a plan that cannot run\n{context}"
            );
        }
        guard.assert_only(&[], &context);
    }
}

/// init writes its seed pages and config.yaml only where nothing is; a link leading nowhere
/// (into the canary) is refused, not created through.
#[test]
fn init_never_creates_a_file_through_a_symlink() {
    for rel in ["wiki/AGENTS.md", ".openkb/config.yaml", "wiki/index.md"] {
        let env = Env::new();
        let link = env.kb().join(rel);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        let mut guard = Guard::new(env.path(), &env.kb());
        std::os::unix::fs::symlink(guard.canary.join("planted.md"), &link).unwrap();
        guard.retake();
        let init = run(env.cmd().args(["init", "--model", "m", "--language", "en"]));
        let context = show(&[("init", &init)]);
        assert_ne!(init.code, 0, "{rel}: {context}");
        assert!(init.stderr.contains("symbolic link"), "{rel}: {context}");
        guard.assert_outside_unchanged(&context);
        assert!(
            !guard.canary.join("planted.md").exists(),
            "{rel}: {context}"
        );
    }
}

#[test]
fn the_hook_sees_only_validated_names_and_paths() {
    let env = Env::with_kb();
    let marker = env.path().join("hook-ran");
    env.set_config(&format!(
        "compile_command: echo \"$OPENKB_DOC_NAME $OPENKB_RAW_PATH\" >> {}\n",
        marker.display()
    ));
    let mut guard = Guard::new(env.path(), &env.kb());
    let hostile = [
        ("../../canary/victim", Some("../canary/victim.md"), None),
        ("dots", Some("raw/../../canary/victim.md"), None),
        ("kbfile", Some("wiki/index.md"), None),
        ("abs", Some("/etc/passwd"), None),
        ("src", Some("raw/src.md"), Some("wiki/summaries/src.md")),
        ("ctl\nname", Some("raw/ctl.md"), None),
    ];
    env.write_session()
        .write(|tx| {
            for (i, (doc_name, raw, source)) in hostile.iter().enumerate() {
                tx.upsert_document(&Document {
                    name: Some(format!("h{i}.md")),
                    doc_name: Some((*doc_name).to_owned()),
                    doc_type: Some("md".into()),
                    raw_path: raw.map(str::to_owned),
                    source_path: source.map(str::to_owned),
                    status: Status::Pending,
                    ..Document::new(hash_of(7000 + i as u64))
                })?;
            }
            Ok(())
        })
        .unwrap();
    guard.retake();
    let out = run(env.cmd().args(["compile", "--pending"]));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        !marker.exists(),
        "the hook ran: {}",
        std::fs::read_to_string(&marker).unwrap()
    );
    for doc in env.docs() {
        assert_eq!(doc.status, Status::Failed, "{:?}", doc.doc_name);
        assert!(
            doc.error
                .as_deref()
                .is_some_and(|e| e.contains("refused before compile_command ran")),
            "{:?}",
            doc.error
        );
    }
    guard.assert_only(&[], &show(&[("compile", &out)]));
}

#[test]
fn a_valid_document_still_reaches_the_hook() {
    let env = Env::with_kb();
    let marker = env.path().join("hook-ran");
    env.set_config(&format!(
        "compile_command: echo \"$OPENKB_DOC_NAME|$OPENKB_RAW_PATH\" >> {}\n",
        marker.display()
    ));
    let a = env.write("in/a.md", "# a\n");
    let add = run(env.cmd().arg("add").arg(&a));
    assert_eq!(add.code, 0, "{}", add.stderr);
    let seen = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(
        seen.trim(),
        format!(
            "a|{}",
            env.kb().canonicalize().unwrap().join("raw/a.md").display()
        )
    );
}

/// A document registered in place in raw/ under a disambiguated name (its plain name was
/// taken when it came), whose plain name is free again.
fn in_place_doc_under_a_taken_name(env: &Env, stem: &str) -> String {
    let first = env.write(&format!("in1/{stem}.txt"), "first\n");
    let add = run(env.cmd().arg("add").arg(&first));
    assert_eq!(add.code, 0, "{}", add.stderr);
    let in_place = env.write(&format!("kb/raw/{stem}.md"), "kept in place\n");
    let add = run(env.cmd().arg("add").arg(&in_place));
    assert_eq!(add.code, 0, "{}", add.stderr);
    let remove = run(env.cmd().args(["remove", "-y", stem]));
    assert_eq!(remove.code, 0, "{}", remove.stderr);
    let doc = env
        .store()
        .find_by_path(&format!("raw/{stem}.md"))
        .unwrap()
        .expect("registered in place");
    assert_ne!(doc.doc_name.as_deref(), Some(stem));
    doc.hash
}

#[test]
fn add_never_overwrites_a_file_another_document_keeps_in_raw() {
    let env = Env::with_kb();
    let in_place = in_place_doc_under_a_taken_name(&env, "x");
    // A file in raw/ that no document claims is someone's too.
    env.write("kb/raw/y.md", "stray\n");
    let guard = Guard::new(env.path(), &env.kb());

    let x = env.write("in2/x.md", "outside x\n");
    let y = env.write("in2/y.md", "outside y\n");
    let add = run(env.cmd().arg("add").arg(&x).arg(&y));
    assert_eq!(add.code, 0, "{}", add.stderr);

    assert_eq!(
        std::fs::read_to_string(env.kb().join("raw/x.md")).unwrap(),
        "kept in place\n"
    );
    assert_eq!(
        std::fs::read_to_string(env.kb().join("raw/y.md")).unwrap(),
        "stray\n"
    );
    let mut allowed = vec!["wiki/index.md".to_owned()];
    for (stem, text) in [("x", "outside x\n"), ("y", "outside y\n")] {
        let doc = env
            .docs()
            .into_iter()
            .find(|d| {
                d.path
                    .as_deref()
                    .is_some_and(|p| p.ends_with(&format!("in2/{stem}.md")))
            })
            .expect("added");
        let doc_name = doc.doc_name.unwrap();
        assert!(doc_name.starts_with(&format!("{stem}-")), "{doc_name}");
        let raw = doc.raw_path.unwrap();
        assert_eq!(raw, format!("raw/{doc_name}.md"));
        assert_eq!(std::fs::read_to_string(env.kb().join(&raw)).unwrap(), text);
        allowed.push(raw);
        allowed.push(format!("wiki/sources/{doc_name}.md"));
    }
    let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
    guard.assert_only(&allowed, &show(&[("add", &add)]));
    let kept = env
        .store()
        .get(&in_place)
        .unwrap()
        .expect("still registered");
    assert_eq!(kept.raw_path.as_deref(), Some("raw/x.md"));
}

/// A link in raw/ to a file outside (or into a linked folder): not a file that is in raw/, so
/// neither registered in place nor copied in under another name.
#[test]
fn links_in_raw_leading_out_are_not_registered() {
    let env = Env::with_kb();
    let mut guard = Guard::new(env.path(), &env.kb());
    std::os::unix::fs::symlink(
        guard.canary.join("victim.md"),
        env.kb().join("raw/Linked File.md"),
    )
    .unwrap();
    std::os::unix::fs::symlink(guard.canary.join("sources"), env.kb().join("raw/outside")).unwrap();
    guard.retake();
    let mut runs = Vec::new();
    for args in [
        vec!["add".to_owned(), env.kb().join("raw").display().to_string()],
        vec![
            "add".into(),
            env.kb().join("raw/outside/victim.md").display().to_string(),
        ],
        vec!["watch".into(), "--once".into()],
    ] {
        let out = run(env.cmd().args(&args));
        runs.push((args.join(" "), out));
    }
    let shown: Vec<(&str, &Run)> = runs.iter().map(|(n, r)| (n.as_str(), r)).collect();
    let context = show(&shown);
    for (what, out) in &runs {
        assert_ne!(out.code, 0, "{what}: {context}");
        assert!(
            out.stdout.contains("leading out of raw/")
                || out.stderr.contains("leading out of raw/"),
            "{what}: {context}"
        );
    }
    assert!(env.docs().is_empty(), "{context}");
    guard.assert_only(&[], &context);
}

#[test]
fn add_refuses_an_inherited_name_whose_raw_path_another_document_keeps() {
    let env = Env::with_kb();
    in_place_doc_under_a_taken_name(&env, "z");
    // A legacy entry (no path) named z: a new z.md converges with it and keeps the name z,
    // whose raw copy raw/z.md is the in-place document's file.
    env.write_session()
        .write(|tx| {
            tx.upsert_document(&Document {
                name: Some("z.md".into()),
                doc_name: Some("z".into()),
                doc_type: Some("md".into()),
                ..Document::new(hash_of(4242))
            })
        })
        .unwrap();
    let guard = Guard::new(env.path(), &env.kb());
    let z = env.write("in3/z.md", "outside z\n");
    let add = run(env.cmd().arg("add").arg(&z));
    assert_eq!(add.code, 1, "{}{}", add.stdout, add.stderr);
    assert!(
        add.stderr
            .contains("raw/z.md is the file of another document")
            && add.stderr.contains("nothing was added"),
        "{}",
        add.stderr
    );
    guard.assert_only(&[], &show(&[("add", &add)]));
    assert_eq!(
        std::fs::read_to_string(env.kb().join("raw/z.md")).unwrap(),
        "kept in place\n"
    );
}
