//! Sessions: read commands never create, migrate or write; write commands settle interrupted
//! work (openkb intents and Python crash journals) first; a commit into a `state.db` that was
//! replaced or removed meanwhile is refused and its files rolled back.

use crate::harness;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::harness::{Env, stderr, stdout};
use openkb::state::{Queries, intents, schema};

fn state_db(env: &Env) -> PathBuf {
    env.kb().join(".openkb/state.db")
}

/// The names in `.openkb/`, sorted.
fn openkb_files(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.kb().join(".openkb"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

fn user_version(db: &Path) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

fn intents_left(env: &Env) -> usize {
    intents::unfinished(&env.store().reader().unwrap())
        .unwrap()
        .len()
}

/// A KB with one registered document (`alpha`).
fn kb_with_a_document() -> Env {
    let env = Env::with_kb();
    let file = env.write("in/alpha.md", "# Alpha\n");
    let out = env.cmd().arg("add").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    env
}

/// An `add` of `in/<stem>.md` that aborts just before its commit (as a kill there would),
/// leaving an intent.
fn interrupted_add(env: &Env, stem: &str) {
    let file = env.write(&format!("in/{stem}.md"), &format!("# {stem}\n"));
    let out = env
        .cmd()
        .env("OPENKB_TEST_ABORT_AT", "add-commit")
        .arg("add")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(intents_left(env), 1);
}

#[test]
fn a_missing_state_db_is_reported_by_every_command_and_never_recreated() {
    let env = kb_with_a_document();
    std::fs::remove_file(state_db(&env)).unwrap();
    let other = env.write("in/beta.md", "# Beta\n");
    let other = other.to_str().unwrap();
    let commands: [&[&str]; 8] = [
        &["list"],
        &["status"],
        &["log"],
        &["export", "--json"],
        &["lint"],
        &["add", other],
        &["remove", "-y", "alpha"],
        &["compile", "--pending"],
    ];
    for args in commands {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("state.db is missing"), "{args:?}: {err}");
        assert!(err.contains("openkb doctor --fix"), "{args:?}: {err}");
        assert!(!state_db(&env).exists(), "{args:?} created state.db");
    }
    // doctor without --fix reports it and creates nothing either.
    let out = env.run(&["doctor"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(!state_db(&env).exists());
    // doctor --fix is the one that rebuilds it, from raw/.
    let out = env.run(&["doctor", "--fix"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let out = env.run(&["list"]);
    assert!(stdout(&out).contains("alpha"), "{}", stdout(&out));
}

#[test]
fn an_empty_kb_whose_state_db_is_gone_is_not_silently_recreated() {
    let env = Env::with_kb();
    std::fs::remove_file(state_db(&env)).unwrap();
    let out = env.run(&["list"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("state.db is missing"));
    assert!(!state_db(&env).exists());
}

#[test]
fn read_commands_change_nothing_in_openkb_folder() {
    let env = kb_with_a_document();
    let before_files = openkb_files(&env);
    let before_bytes = std::fs::read(state_db(&env)).unwrap();
    let before_mtime = mtime(&state_db(&env));
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["status"],
        &["log"],
        &["export", "--json"],
        &["doctor"],
        &["doctor", "--full"],
    ] {
        let out = env.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(openkb_files(&env), before_files, "{args:?}");
    }
    assert_eq!(std::fs::read(state_db(&env)).unwrap(), before_bytes);
    assert_eq!(mtime(&state_db(&env)), before_mtime);
}

/// Replace the KB's state.db by one at schema version 3, built from the shipped migrations.
fn downgrade_to_schema_3(env: &Env) {
    let db = state_db(env);
    std::fs::remove_file(&db).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA application_id = {};",
        schema::APPLICATION_ID
    ))
    .unwrap();
    for (index, migration) in schema::MIGRATIONS[..3].iter().enumerate() {
        match migration.step {
            schema::Step::Sql(sql) => conn.execute_batch(sql).unwrap(),
            schema::Step::Rust(step) => step(&conn, &schema::MIGRATIONS[..index]).unwrap(),
        }
    }
    conn.execute_batch("PRAGMA user_version = 3; PRAGMA journal_mode = WAL;")
        .unwrap();
    drop(conn);
    assert_eq!(user_version(&db), 3);
}

#[test]
fn an_older_schema_is_upgraded_by_any_command_but_doctor_without_fix() {
    let env = Env::with_kb();
    downgrade_to_schema_3(&env);
    let before = std::fs::read(state_db(&env)).unwrap();

    let out = env.run(&["doctor"]);
    assert!(stdout(&out).contains("schema"), "{}", stdout(&out));
    assert_eq!(
        user_version(&state_db(&env)),
        3,
        "doctor migrated the schema"
    );
    assert_eq!(std::fs::read(state_db(&env)).unwrap(), before);

    // A reading command upgrades it through a short write session, and says so.
    let out = env.run(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("from schema 3 to"), "{err}");
    assert_eq!(user_version(&state_db(&env)), schema::latest_version());
    assert!(env.run(&["doctor"]).status.success());
}

#[test]
fn reads_work_on_a_read_only_mount() {
    let env = kb_with_a_document();
    let out = env.run_on_read_only_mount(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("alpha"), "{}", stdout(&out));
    for args in [
        &["status"][..],
        &["log"],
        &["export", "--json"],
        &["doctor"],
    ] {
        let out = env.run_on_read_only_mount(args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    // A write says what it cannot write instead of "unable to open database file".
    let other = env.write("in/beta.md", "# Beta\n");
    let out = env.run_on_read_only_mount(&["add", other.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        !stderr(&out).contains("unable to open database file"),
        "{}",
        stderr(&out)
    );
}

/// Configure a compile hook that runs `script` (in the KB folder) before each add's commit.
fn hook(env: &Env, script: &str) {
    let path = env.write("hook.sh", script);
    env.set_config(&format!("compile_command: sh {}\n", path.display()));
}

#[test]
fn a_state_db_replaced_during_an_add_is_refused_and_nothing_is_lost() {
    let env = kb_with_a_document();
    // A copy of the database as it is now, as a restore or a sync client would bring back.
    std::fs::copy(state_db(&env), env.path().join("restored.db")).unwrap();
    hook(
        &env,
        &format!(
            "cp '{0}/restored.db' .openkb/incoming.db && mv .openkb/incoming.db .openkb/state.db\n",
            env.path().display()
        ),
    );
    let index_before = std::fs::read_to_string(env.kb().join("wiki/index.md")).unwrap();
    let file = env.write("in/beta.md", "# Beta\n");
    let out = env.cmd().arg("add").arg(&file).output().unwrap();
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = format!("{}{}", stdout(&out), stderr(&out));
    assert!(err.contains("replaced"), "{err}");
    assert!(!stdout(&out).contains("added 1"), "{}", stdout(&out));

    // The add's files were rolled back; the live registry is the restored one, intact.
    assert!(!env.kb().join("raw/beta.md").exists());
    assert!(!env.kb().join("wiki/sources/beta.md").exists());
    assert_eq!(
        std::fs::read_to_string(env.kb().join("wiki/index.md")).unwrap(),
        index_before
    );
    let names: Vec<_> = env.docs().into_iter().filter_map(|d| d.doc_name).collect();
    assert_eq!(names, ["alpha"]);
    assert_eq!(intents_left(&env), 0);
    let out = env.run(&["doctor"]);
    assert!(out.status.success(), "{}", stdout(&out));

    // Run again without the hook's interference: it lands.
    std::fs::write(env.path().join("hook.sh"), "true\n").unwrap();
    let out = env.cmd().arg("add").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env.doc_named("beta").is_some());
}

#[test]
fn a_state_db_removed_during_an_add_is_refused_and_its_files_rolled_back() {
    let env = kb_with_a_document();
    hook(&env, "rm .openkb/state.db\n");
    let file = env.write("in/beta.md", "# Beta\n");
    let out = env.cmd().arg("add").arg(&file).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("removed"), "{}", stderr(&out));
    assert!(!env.kb().join("raw/beta.md").exists());
    assert!(!env.kb().join("wiki/sources/beta.md").exists());
    assert!(!state_db(&env).exists(), "a new state.db was created");
    let out = env.run(&["list"]);
    assert!(stderr(&out).contains("state.db is missing"));
}

/// After a remove that was refused or rolled back: every file of `alpha` is there again and
/// the linking page still links to it. Returns the snapshot for further checks.
fn assert_remove_undone(env: &Env) -> (Vec<(String, Option<String>)>, Vec<String>) {
    let (files, staging) = remove_snapshot(env);
    for (file, text) in &files {
        assert!(text.is_some(), "{file} was not put back");
    }
    assert!(
        files[4]
            .1
            .as_deref()
            .unwrap()
            .contains("[[summaries/alpha]]")
    );
    (files, staging)
}

/// The files of a KB that a remove touches, with their contents, and what `.openkb/staging`
/// holds.
fn remove_snapshot(env: &Env) -> (Vec<(String, Option<String>)>, Vec<String>) {
    let files = [
        "raw/alpha.md",
        "wiki/sources/alpha.md",
        "wiki/sources/images/alpha/fig.png",
        "wiki/summaries/alpha.md",
        "wiki/concepts/topic.md",
        "wiki/index.md",
    ]
    .iter()
    .map(|f| {
        (
            (*f).to_owned(),
            std::fs::read_to_string(env.kb().join(f)).ok(),
        )
    })
    .collect();
    let staging = std::fs::read_dir(env.kb().join(".openkb/staging"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    (files, staging)
}

/// A remove of `alpha` that runs `meanwhile` (a shell command, in the test's folder) just
/// before its commit.
fn remove_alpha_while(env: &Env, meanwhile: &str) -> std::process::Output {
    std::fs::write(
        env.kb().join("wiki/summaries/alpha.md"),
        "# Alpha summary\n",
    )
    .unwrap();
    std::fs::create_dir_all(env.kb().join("wiki/sources/images/alpha")).unwrap();
    std::fs::write(env.kb().join("wiki/sources/images/alpha/fig.png"), "png").unwrap();
    std::fs::create_dir_all(env.kb().join("wiki/concepts")).unwrap();
    std::fs::write(
        env.kb().join("wiki/concepts/topic.md"),
        "---\nsources: [summaries/alpha]\n---\nSee [[summaries/alpha]].\n",
    )
    .unwrap();
    env.cmd()
        .args(["remove", "alpha", "--yes"])
        .env("OPENKB_TEST_RUN_AT", "remove-commit")
        .env("OPENKB_TEST_RUN", meanwhile)
        .output()
        .unwrap()
}

#[test]
fn a_state_db_replaced_during_a_remove_is_refused_and_its_files_put_back() {
    let env = kb_with_a_document();
    std::fs::copy(state_db(&env), env.path().join("restored.db")).unwrap();
    let kb = env.kb().display().to_string();
    // Taken just before the remove's commit, after its files went.
    let during = format!(
        "ls '{kb}/raw' > during.txt; cp restored.db '{kb}/.openkb/incoming.db' && \
         mv '{kb}/.openkb/incoming.db' '{kb}/.openkb/state.db'"
    );
    let out = remove_alpha_while(&env, &during);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("replaced"), "{err}");
    assert_eq!(
        std::fs::read_to_string(env.path().join("during.txt")).unwrap(),
        "",
        "the files were gone before the commit"
    );

    let (files, staging) = assert_remove_undone(&env);
    assert!(files[5].1.as_deref().unwrap().contains("alpha"));
    assert_eq!(files[3].1.as_deref(), Some("# Alpha summary\n"));
    assert!(staging.is_empty(), "staging left: {staging:?}");
    assert!(env.doc_named("alpha").is_some());
    assert_eq!(intents_left(&env), 0);

    // Without interference it goes.
    let out = env.run(&["remove", "alpha", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!env.kb().join("raw/alpha.md").exists());
    assert!(env.doc_named("alpha").is_none());
}

#[test]
fn a_state_db_removed_during_a_remove_is_refused_and_its_files_put_back() {
    let env = kb_with_a_document();
    let kb = env.kb().display().to_string();
    let out = remove_alpha_while(&env, &format!("rm '{kb}/.openkb/state.db'"));
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("removed"), "{}", stderr(&out));
    let (_, staging) = assert_remove_undone(&env);
    assert!(staging.is_empty(), "staging left: {staging:?}");
    assert!(!state_db(&env).exists(), "a new state.db was created");
}

#[test]
fn a_state_db_replaced_during_a_compile_is_refused_and_the_documents_files_put_back() {
    let env = kb_with_a_document();
    let source = env.kb().join("wiki/sources/alpha.md");
    let source_before = std::fs::read_to_string(&source).unwrap();
    std::fs::write(env.kb().join("wiki/summaries/alpha.md"), "old summary\n").unwrap();
    std::fs::copy(state_db(&env), env.path().join("restored.db")).unwrap();
    hook(
        &env,
        &format!(
            "echo rewritten > wiki/summaries/alpha.md\n\
             echo changed >> wiki/sources/alpha.md\n\
             echo new > wiki/sources/alpha.notes\n\
             mkdir -p wiki/concepts && echo shared > wiki/concepts/topic.md\n\
             cp '{0}/restored.db' .openkb/incoming.db && mv .openkb/incoming.db .openkb/state.db\n",
            env.path().display()
        ),
    );
    let out = env.run(&["compile", "alpha"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("replaced"), "{}", stderr(&out));

    // The document's own files are as before the hook; shared pages are the hook's.
    assert_eq!(
        std::fs::read_to_string(env.kb().join("wiki/summaries/alpha.md")).unwrap(),
        "old summary\n"
    );
    assert_eq!(std::fs::read_to_string(&source).unwrap(), source_before);
    assert!(!env.kb().join("wiki/sources/alpha.notes").exists());
    assert!(env.kb().join("wiki/concepts/topic.md").exists());
    let (_, staging) = remove_snapshot(&env);
    assert!(staging.is_empty(), "staging left: {staging:?}");

    // A summary the hook created where there was none is deleted too.
    std::fs::remove_file(env.kb().join("wiki/summaries/alpha.md")).unwrap();
    std::fs::copy(state_db(&env), env.path().join("restored.db")).unwrap();
    let out = env.run(&["compile", "alpha"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(!env.kb().join("wiki/summaries/alpha.md").exists());
}

#[test]
fn lint_settles_interrupted_work_first() {
    let env = kb_with_a_document();
    interrupted_add(&env, "beta");
    assert!(env.kb().join("raw/beta.md").exists());
    let out = env.run(&["lint"]);
    assert!(
        stderr(&out).contains("recovered interrupted work"),
        "{}",
        stderr(&out)
    );
    assert_eq!(intents_left(&env), 0);
    assert!(!env.kb().join("raw/beta.md").exists());
}

#[test]
fn init_finishing_a_kb_settles_interrupted_work_first() {
    let env = kb_with_a_document();
    interrupted_add(&env, "beta");
    // An interrupted init left no config: init finishes the KB.
    std::fs::remove_file(env.kb().join(".openkb/config.yaml")).unwrap();
    let out = env.run(&["init", "--model", "m", "--language", "en"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(intents_left(&env), 0);
    assert!(!env.kb().join("raw/beta.md").exists());
    assert!(env.doc_named("alpha").is_some());
}

#[test]
fn migrate_settles_interrupted_work_first() {
    let env = kb_with_a_document();
    interrupted_add(&env, "beta");
    // The Python tool was used again: a hashes.json to merge. (Put in place by hand: `export
    // -o` refuses the KB's own hashes.json, and `export --for-python` would settle the
    // interrupted add itself.)
    let out = env.run(&["export", "--legacy-json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(env.kb().join(".openkb/hashes.json"), &out.stdout).unwrap();
    let out = env.run(&["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(intents_left(&env), 0);
    assert!(!env.kb().join("raw/beta.md").exists());
}

#[test]
fn an_active_python_journal_is_settled_before_openkb_writes() {
    let env = kb_with_a_document();
    let kb = env.kb().canonicalize().unwrap();
    let index = kb.join("wiki/index.md");
    let index_before = std::fs::read_to_string(&index).unwrap();
    // The Python tool, killed in the middle of an add: index.md backed up then changed, a
    // summary written, the journal still active.
    let id = "c".repeat(32);
    let backup_dir = kb.join(format!(".openkb/staging/rollback-{id}"));
    std::fs::create_dir_all(backup_dir.join("wiki")).unwrap();
    std::fs::write(backup_dir.join("wiki/index.md"), &index_before).unwrap();
    std::fs::write(
        &index,
        format!("{index_before}- [[summaries/pyadd]] (short) — pyadd.md\n"),
    )
    .unwrap();
    std::fs::write(kb.join("wiki/summaries/pyadd.md"), "half").unwrap();
    std::fs::create_dir_all(kb.join(".openkb/journal")).unwrap();
    let journal = serde_json::json!({
        "version": 1,
        "operation": "add",
        "status": "active",
        "kb_dir": kb,
        "backup_dir": backup_dir,
        "details": {"file_hash": "e".repeat(64), "name": "pyadd.md", "doc_name": "pyadd"},
        "attempts": 0,
        "entries": [
            {"target": kb.join("wiki/index.md"), "backup": backup_dir.join("wiki/index.md")},
            {"target": kb.join("wiki/summaries/pyadd.md"), "backup": null},
        ],
    });
    let journal_path = kb.join(format!(".openkb/journal/{id}.json"));
    std::fs::write(
        &journal_path,
        serde_json::to_string_pretty(&journal).unwrap(),
    )
    .unwrap();

    let file = env.write("in/beta.md", "# Beta\n");
    let out = env.cmd().arg("add").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("crash journal of the Python tool"),
        "{}",
        stderr(&out)
    );
    // Python's rollback happened before the add, so it can no longer erase the add's line.
    assert!(!journal_path.exists());
    assert!(!kb.join("wiki/summaries/pyadd.md").exists());
    let index_after = std::fs::read_to_string(&index).unwrap();
    assert!(!index_after.contains("pyadd"), "{index_after}");
    assert!(index_after.contains("[[summaries/beta]]"), "{index_after}");
    assert!(env.doc_named("beta").is_some());
}

#[test]
fn init_beside_an_unmigrated_hashes_json_creates_no_state_db() {
    let env = Env::new();
    harness::copy_fixture_kb(&env.kb());
    let _ = std::fs::remove_file(env.kb().join(".openkb/config.yaml"));
    assert!(env.kb().join(".openkb/hashes.json").exists());
    let out = env.run(&["init", "--model", "m", "--language", "en"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("openkb migrate"), "{}", stderr(&out));
    assert!(
        !state_db(&env).exists(),
        "init created state.db beside hashes.json"
    );
    assert!(env.kb().join(".openkb/config.yaml").exists());
    let out = env.run(&["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.docs().len(), 50);
}

#[test]
fn every_write_session_gives_the_database_an_identity_that_a_rebuild_changes() {
    let env = kb_with_a_document();
    let id = || env.store().reader().unwrap().meta("database_id").unwrap();
    let first = id().expect("a database id");
    assert_eq!(first.len(), 32);
    assert!(env.run(&["list"]).status.success());
    assert_eq!(id().as_deref(), Some(first.as_str()));
    // A rebuild is another database.
    std::fs::remove_file(state_db(&env)).unwrap();
    assert!(env.run(&["doctor", "--fix"]).status.success());
    let file = env.write("in/gamma.md", "# Gamma\n");
    assert!(env.cmd().arg("add").arg(&file).status().unwrap().success());
    let second = id().expect("a database id");
    assert_ne!(first, second);
}
