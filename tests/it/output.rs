//! The output contract (docs/output.md): every `--json` document validated against its schema
//! in docs/schemas/, `-q` and `-v`, per-file lines against the progress bar (through a pipe
//! and through a pseudo-terminal), each documented exit code, shell completions and man pages.

use crate::harness;

use std::path::Path;
use std::process::Command;

use crate::harness::{Env, PythonLockHolder, Run, ok, run, stderr, stdout};
use serde_json::Value;

const SCHEMAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/schemas");

/// Serves `https://openkb.invalid/schemas/<name>` from docs/schemas/, so the schemas' `$ref`s
/// to common.json resolve to the file in the repository, never to the network.
struct SchemaFolder;

impl jsonschema::Retrieve for SchemaFolder {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri
            .path()
            .as_str()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let text = std::fs::read_to_string(Path::new(SCHEMAS).join(&name))
            .map_err(|e| format!("{uri}: {e}"))?;
        Ok(serde_json::from_str(&text)?)
    }
}

fn validator(schema: &str) -> jsonschema::Validator {
    let path = Path::new(SCHEMAS).join(format!("{schema}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::options()
        .with_retriever(SchemaFolder)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{path:?} is not a valid schema: {e}"))
}

/// Parse `run`'s stdout as one JSON document and validate it against docs/schemas/`schema`.
fn valid(schema: &str, run: &Run) -> Value {
    let value: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "{schema}: stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        )
    });
    let errors: Vec<String> = validator(schema)
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{schema}: output does not match docs/schemas/{schema}.json:\n{}\n{value:#}",
        errors.join("\n")
    );
    assert_eq!(
        value
            .as_object()
            .and_then(|o| o.keys().next())
            .map(String::as_str),
        Some("format_version"),
        "{schema}: format_version comes first"
    );
    value
}

fn openkb(env: &Env, args: &[&str]) -> Command {
    let mut cmd = env.cmd();
    cmd.args(args);
    cmd
}

/// A KB with two compiled documents, one failed, one pending.
fn busy_kb() -> Env {
    let env = Env::with_kb();
    for (name, text) in [
        ("notes/alpha.md", "# Alpha\n"),
        ("notes/beta.md", "# Beta\n"),
        ("notes/gamma.txt", "gamma\n"),
        ("later.md", "# Later\n"),
    ] {
        env.write(name, text);
    }
    ok(&mut openkb(
        &env,
        &["add", &env.path().join("notes").to_string_lossy()],
    ));
    let config = env.kb().join(".openkb/config.yaml");
    let without_hook = std::fs::read_to_string(&config).unwrap();
    env.set_config(&failing_for_gamma());
    let compiled = run(&mut openkb(&env, &["compile", "--pending"]));
    assert_eq!(compiled.code, 1, "gamma's hook fails: {}", compiled.stderr);
    std::fs::write(&config, without_hook).unwrap();
    ok(&mut openkb(
        &env,
        &["add", &env.path().join("later.md").to_string_lossy()],
    ));
    env
}

/// A compile_command that writes a summary, except for `gamma`, where it fails.
fn failing_for_gamma() -> String {
    "compile_command: 'if test \"$OPENKB_DOC_NAME\" = gamma; then echo gamma is broken >&2; \
     exit 3; fi; echo \"# $OPENKB_DOC_NAME\" > \"wiki/summaries/$OPENKB_DOC_NAME.md\"'\n"
        .to_owned()
}

#[test]
fn every_json_output_matches_its_schema() {
    let env = busy_kb();

    let list = valid("list", &ok(&mut openkb(&env, &["list", "--json"])));
    let statuses: Vec<&str> = list["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["compiled", "compiled", "failed", "pending"]);
    // Absent values are null, not missing keys.
    assert_eq!(list["documents"][0]["doc_id"], Value::Null);
    assert_eq!(list["documents"][0]["error"], Value::Null);
    assert!(
        list["documents"][2]["error"]
            .as_str()
            .unwrap()
            .contains("gamma is broken")
    );

    let status = valid("status", &ok(&mut openkb(&env, &["status", "--json"])));
    assert_eq!(
        status["wiki"]["summaries"], 2,
        "wiki is an object: {status:#}"
    );
    assert_eq!(status["last_lint"], Value::Null);
    assert_eq!(status["documents"]["failed"], 1);
    // A local KB: the state is state.db, described the same way a team KB's server is.
    assert_eq!(status["state"]["backend"], "sqlite");
    assert_eq!(status["state"]["schema"], Value::Null);
    assert_eq!(status["state"]["schema_version"], status["schema_version"]);
    assert!(
        status["state"]["server_version"]
            .as_str()
            .unwrap()
            .starts_with("SQLite 3."),
        "{status:#}"
    );
    assert!(
        status["state"]["location"]
            .as_str()
            .unwrap()
            .ends_with(".openkb/state.db")
    );
    assert!(status["state"]["latency_ms"].as_f64().unwrap() >= 0.0);

    let log = valid("log", &ok(&mut openkb(&env, &["log", "--json", "-n", "2"])));
    assert_eq!(log["entries"].as_array().unwrap().len(), 2);

    let lint = run(&mut openkb(&env, &["lint", "--json"]));
    let lint_json = valid("lint", &lint);
    assert_eq!(lint.code, i32::from(lint_json["remaining"] != 0));
    let status = valid("status", &ok(&mut openkb(&env, &["status", "--json"])));
    assert_eq!(status["last_lint"]["operation"], "lint");

    let doctor = run(&mut openkb(&env, &["doctor", "--json"]));
    let doctor_json = valid("doctor", &doctor);
    assert_eq!(
        doctor.code,
        i32::from(!doctor_json["healthy"].as_bool().unwrap())
    );
    assert_eq!(doctor_json["state"]["backend"], "sqlite");
    assert_eq!(
        doctor_json["state"]["schema_version"],
        status["schema_version"]
    );

    valid("export", &ok(&mut openkb(&env, &["export", "--json"])));

    // compile: one fails (exit 1), and the JSON still comes out, listing it.
    env.set_config(&failing_for_gamma());
    let compile = run(&mut openkb(
        &env,
        &["compile", "--pending", "--failed", "--json"],
    ));
    assert_eq!(compile.code, 1, "{}", compile.stderr);
    let compile = valid("compile", &compile);
    assert_eq!(
        (compile["compiled"].clone(), compile["failed"].clone()),
        (1.into(), 1.into())
    );
    let failed = &compile["documents"][0];
    assert_eq!(failed["doc_name"], "gamma");
    assert_eq!(failed["status"], "failed");

    // add: added, known and skipped outcomes, each with its reason or null.
    env.write("more/new.md", "# New\n");
    env.write("more/alpha-again.md", "# Alpha\n");
    env.write("more/picture.tiff", "not a document");
    let add = valid(
        "add",
        &ok(&mut openkb(
            &env,
            &["add", "--json", &env.path().join("more").to_string_lossy()],
        )),
    );
    let mut outcomes: Vec<(String, Value)> = add["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["outcome"].as_str().unwrap().to_owned(),
                f["reason"].clone(),
            )
        })
        .collect();
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(outcomes[0], ("added".to_owned(), Value::Null));
    assert_eq!(outcomes[1].0, "known");
    assert_eq!(outcomes[2].0, "skipped");
    assert!(outcomes[2].1.as_str().unwrap().contains(".tiff"));
    assert_eq!(add["added"], 1);

    // remove: dry run, then for real, of two documents at once.
    let dry = valid(
        "remove",
        &ok(&mut openkb(
            &env,
            &["remove", "new", "later", "--dry-run", "--json"],
        )),
    );
    assert_eq!(
        (dry["removed"].clone(), dry["dry_run"].clone()),
        (0.into(), true.into())
    );
    assert_eq!(dry["documents"][0]["removed"], false);
    assert!(
        dry["documents"][0]["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "raw/new.md"),
        "{dry:#}"
    );
    assert!(env.kb().join("raw/new.md").exists());
    let removed = valid(
        "remove",
        &ok(&mut openkb(
            &env,
            &["remove", "new", "later", "-y", "--json"],
        )),
    );
    assert_eq!(removed["removed"], 2);
    assert_eq!(removed["documents"][1]["doc_name"], "later");
    assert_eq!(removed["documents"][1]["error"], Value::Null);
    assert!(!env.kb().join("raw/new.md").exists());

    // show and kbs, which came with their own schemas.
    let show = valid("show", &ok(&mut openkb(&env, &["show", "gamma", "--json"])));
    assert_eq!(show["document"]["status"], "failed");
    let kbs = valid("kbs", &ok(&mut openkb(&env, &["kbs", "--json"])));
    assert_eq!(kbs["knowledge_bases"].as_array().unwrap().len(), 1);
}

#[test]
fn migrate_json_matches_its_schema_for_one_kb_and_for_all() {
    let env = Env::new();
    harness::copy_fixture_kb(&env.kb());
    let dry = valid(
        "migrate",
        &ok(&mut openkb(&env, &["migrate", "--dry-run", "--json"])),
    );
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["knowledge_bases"][0]["outcome"], "migrated");
    assert!(env.kb().join(".openkb/hashes.json").exists(), "dry run");
    let done = valid("migrate", &ok(&mut openkb(&env, &["migrate", "--json"])));
    let kb = &done["knowledge_bases"][0];
    assert_eq!(kb["documents"], 50);
    assert_eq!(kb["moved_to"], ".openkb/hashes.json.migrated");
    assert_eq!(kb["error"], Value::Null);
    let again = valid("migrate", &ok(&mut openkb(&env, &["migrate", "--json"])));
    assert_eq!(again["knowledge_bases"][0]["outcome"], "already-migrated");
    assert_eq!(again["knowledge_bases"][0]["documents"], Value::Null);

    // --all: a known KB that is gone is reported as such, in the same shape.
    let gone = env.path().join("gone");
    std::fs::create_dir_all(env.path().join("home/.config/openkb")).unwrap();
    std::fs::write(
        env.path().join("home/.config/openkb/global.yaml"),
        format!(
            "default_kb: {0}\nknown_kbs:\n- {0}\n- {1}\n",
            env.kb().display(),
            gone.display()
        ),
    )
    .unwrap();
    let all = valid(
        "migrate",
        &ok(&mut openkb(&env, &["migrate", "--all", "--json"])),
    );
    let outcomes: Vec<&str> = all["knowledge_bases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["already-migrated", "not-a-kb"]);
}

#[test]
fn the_schemas_are_strict_enough_to_catch_a_broken_output() {
    let env = busy_kb();
    let status: Value =
        serde_json::from_str(&ok(&mut openkb(&env, &["status", "--json"])).stdout).unwrap();
    let schema = validator("status");
    assert!(schema.is_valid(&status));
    let mut missing = status.clone();
    missing.as_object_mut().unwrap().remove("last_lint");
    assert!(!schema.is_valid(&missing), "a missing key is caught");
    let mut pairs = status.clone();
    pairs["wiki"] = serde_json::json!([["sources", 3]]);
    assert!(!schema.is_valid(&pairs), "wiki as pairs is caught");
    let mut backend = status.clone();
    backend["state"]["backend"] = "mysql".into();
    assert!(!schema.is_valid(&backend), "an unknown backend is caught");
    let mut no_latency = status.clone();
    no_latency["state"]
        .as_object_mut()
        .unwrap()
        .remove("latency_ms");
    assert!(!schema.is_valid(&no_latency), "a missing latency is caught");
    let mut version = status;
    version["format_version"] = 2.into();
    assert!(
        !schema.is_valid(&version),
        "another format version is caught"
    );

    let list: Value =
        serde_json::from_str(&ok(&mut openkb(&env, &["list", "--json"])).stdout).unwrap();
    let mut extra = list.clone();
    extra["documents"][0]
        .as_object_mut()
        .unwrap()
        .insert("surprise".into(), 1.into());
    assert!(
        !validator("list").is_valid(&extra),
        "an undocumented key is caught"
    );
}

#[test]
fn json_errors_still_go_to_stderr_with_their_exit_code_and_nothing_on_stdout() {
    let env = Env::new();
    std::fs::create_dir_all(env.kb()).unwrap();
    for args in [
        &["status", "--json"][..],
        &["list", "--json"],
        &["log", "--json"],
        &["doctor", "--json"],
    ] {
        let out = run(&mut openkb(&env, args));
        assert_eq!(out.code, 3, "{args:?}: {}", out.stderr);
        assert_eq!(out.stdout, "", "{args:?}");
        assert!(
            out.stderr.starts_with("error: "),
            "{args:?}: {}",
            out.stderr
        );
    }
}

fn folder_of(env: &Env, n: usize) -> String {
    for i in 0..n {
        env.write(
            &format!("batch/doc-{i:02}.md"),
            &format!("# Document {i}\n"),
        );
    }
    env.write("batch/scan.tiff", "not supported");
    env.path().join("batch").to_string_lossy().into_owned()
}

#[test]
fn quiet_keeps_the_summary_and_errors_only_and_verbose_adds_detail() {
    let env = Env::with_kb();
    let folder = folder_of(&env, 5);

    // Not a terminal: one line per file (the log of a script keeps every outcome).
    let plain = ok(&mut openkb(&env, &["add", &folder]));
    assert_eq!(
        plain.stdout.matches("\nadded ").count() + 1,
        6,
        "{}",
        plain.stdout
    );
    assert!(plain.stdout.ends_with("added 5, skipped 1, failed 0\n"));
    assert!(plain.stderr.contains("scan.tiff: unsupported file type"));

    // Again: the known files are not listed one by one, but the run says why it skipped them.
    let again = ok(&mut openkb(&env, &["add", &folder]));
    assert!(
        again.stdout.ends_with("added 0, skipped 6, failed 0\n"),
        "{}",
        again.stdout
    );
    assert!(
        again
            .stderr
            .contains("5 file(s) skipped: already registered (same content); -v lists them"),
        "{}",
        again.stderr
    );

    // Quietly: the summary only; the already registered files are not even mentioned.
    env.write("batch/doc-new.md", "# New\n");
    let quiet = ok(&mut openkb(&env, &["-q", "add", &folder]));
    assert_eq!(quiet.stdout, "added 1, skipped 6, failed 0\n");
    assert_eq!(quiet.stderr, "");

    // -v says why each known file was skipped, and which KB it used.
    let verbose = ok(&mut openkb(&env, &["-v", "add", &folder]));
    assert!(
        verbose
            .stderr
            .contains("doc-00.md: already registered (same content)"),
        "{}",
        verbose.stderr
    );
    assert!(verbose.stderr.contains("knowledge base: "));

    // An error is never silenced: a failing file and the final error under -q.
    env.set_config("compile_command: 'exit 7'\n");
    env.write("batch/doc-fails.md", "# Fails\n");
    let failing = run(&mut openkb(&env, &["-q", "add", &folder]));
    assert_eq!(failing.code, 1);
    assert_eq!(failing.stdout, "added 0, skipped 7, failed 1\n");
    assert!(failing.stderr.contains("failed "), "{}", failing.stderr);
    assert!(
        failing.stderr.contains("doc-fails.md"),
        "{}",
        failing.stderr
    );
    assert!(failing.stderr.contains("error: "), "{}", failing.stderr);

    // -q and -v together are a usage error.
    let both = run(&mut openkb(&env, &["-q", "-v", "status"]));
    assert_eq!(both.code, 2, "{}", both.stderr);
}

#[test]
fn quiet_drops_per_item_lines_of_compile_and_doctor_but_keeps_their_result() {
    let env = Env::with_kb();
    env.write("a.md", "# A\n");
    ok(&mut openkb(
        &env,
        &["add", &env.path().join("a.md").to_string_lossy()],
    ));
    env.set_config("compile_command: 'echo \"# s\" > \"wiki/summaries/$OPENKB_DOC_NAME.md\"'\n");
    let compile = ok(&mut openkb(&env, &["-q", "compile", "--pending"]));
    assert_eq!(compile.stdout, "compiled 1, failed 0\n");
    let loud = ok(&mut openkb(&env, &["doctor"]));
    assert!(loud.stdout.contains("\nok "), "{}", loud.stdout);
    assert!(
        loud.stdout.contains("\nState: SQLite 3."),
        "{}",
        loud.stdout
    );
    let quiet = ok(&mut openkb(&env, &["-q", "doctor"]));
    assert!(!quiet.stdout.contains("\nok "), "{}", quiet.stdout);
    assert!(!quiet.stdout.contains("State: "), "{}", quiet.stdout);
    assert!(quiet.stdout.contains("Healthy"), "{}", quiet.stdout);
    // remove -y -q: the summary alone; a dry run keeps its plan, which is its result.
    let dry = ok(&mut openkb(&env, &["-q", "remove", "a", "--dry-run"]));
    assert!(dry.stdout.contains("delete raw/a.md"), "{}", dry.stdout);
    let removed = ok(&mut openkb(&env, &["-q", "remove", "a", "-y"]));
    assert_eq!(removed.stdout, "removed a.md\n");
    // A reading command's report is its result: -q keeps it.
    let status = ok(&mut openkb(&env, &["-q", "status"]));
    assert!(
        status.stdout.contains("Documents: 0 (compiled 0"),
        "{}",
        status.stdout
    );
}

/// Run `openkb args` under a pseudo-terminal (util-linux `script`), so stdout and stderr are
/// a tty as for a person at a terminal; returns what the terminal showed.
fn on_a_terminal(env: &Env, args: &[&str]) -> String {
    assert!(
        harness::clean("script").arg("--version").output().is_ok(),
        "util-linux `script` is not installed: this test needs it for a pseudo-terminal"
    );
    let mut line = vec![
        env!("CARGO_BIN_EXE_openkb").to_owned(),
        "--kb-dir".to_owned(),
        env.kb().to_string_lossy().into_owned(),
    ];
    line.extend(args.iter().map(|a| a.to_string()));
    let out = harness::clean("script")
        .args(["-q", "-e", "-c", &harness::shell_line(&line), "/dev/null"])
        .env("HOME", env.home())
        .env("TERM", "xterm")
        .output()
        .expect("run script");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn on_a_terminal_the_progress_bar_replaces_per_file_lines() {
    let env = Env::with_kb();
    let folder = folder_of(&env, 8);
    let screen = on_a_terminal(&env, &["add", &folder]);
    assert!(screen.contains("added 8, skipped 1, failed 0"), "{screen}");
    assert!(
        !screen.contains(" as doc-0"),
        "no per-file lines under the bar: {screen}"
    );
    assert!(
        !screen.contains("scan.tiff"),
        "no skip lines under the bar: {screen}"
    );
    assert!(
        screen.contains("1 file(s) skipped: unsupported file type; -v lists them"),
        "{screen}"
    );
    assert_eq!(env.docs().len(), 8);

    // -v brings the per-file lines back, over the bar.
    env.write("batch/doc-extra.md", "# Extra\n");
    let screen = on_a_terminal(&env, &["-v", "add", &folder]);
    assert!(screen.contains("as doc-extra (pending)"), "{screen}");
    assert!(
        screen.contains("already registered (same content)"),
        "{screen}"
    );
    assert_eq!(env.docs().len(), 9);
}

#[test]
fn hook_lines_print_above_the_progress_bar_not_through_it() {
    let env = Env::with_kb();
    env.set_config("compile_command: 'echo hook-line-for $OPENKB_DOC_NAME'\n");
    let folder = folder_of(&env, 6);
    let screen = on_a_terminal(&env, &["add", &folder]);
    // Each hook line starts a line of its own on the screen (after the bar's erase sequence),
    // never glued to the end of a drawn bar.
    let mut seen = 0;
    for piece in screen.split(['\n', '\r']) {
        let text = strip_escapes(piece);
        if let Some(at) = text.find("hook-line-for") {
            seen += 1;
            assert!(
                text.starts_with("[doc-") && text[..at].ends_with("] "),
                "garbled: {text:?} in {screen:?}"
            );
        }
    }
    assert_eq!(seen, 6, "{screen}");
    assert!(screen.contains("added 6, skipped 1, failed 0"), "{screen}");
}

/// `text` without terminal escape sequences (CSI `ESC [ ... letter`).
fn strip_escapes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn each_documented_exit_code() {
    let env = Env::with_kb();
    env.write("a.md", "# A\n");
    // 0: done.
    ok(&mut openkb(
        &env,
        &["add", &env.path().join("a.md").to_string_lossy()],
    ));
    // 1: failed, the message says why (a document whose hook fails; a name nobody has).
    env.set_config("compile_command: 'exit 5'\n");
    let failed = run(&mut openkb(&env, &["compile", "--pending"]));
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    let unknown = run(&mut openkb(&env, &["remove", "nobody", "-y"]));
    assert_eq!(unknown.code, 1, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("no document matches"),
        "{}",
        unknown.stderr
    );
    // 2: usage errors, from clap and from openkb alike.
    for args in [
        &["list", "--no-such-flag"][..],
        &["add"],
        &["compile"],
        &["completions", "tcsh-nope"],
        &["man", "no-such-command"],
    ] {
        let out = run(&mut openkb(&env, args));
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert_eq!(out.stdout, "", "{args:?}");
    }
    // 3: no usable KB (none there; a legacy KB that needs migrate).
    let nowhere = env.path().join("nowhere");
    std::fs::create_dir_all(&nowhere).unwrap();
    let out = run(harness::openkb(&env.path().join("home-without-config"), &nowhere).arg("status"));
    assert_eq!(out.code, 3, "{}", out.stderr);
    let legacy = Env::new();
    harness::copy_fixture_kb(&legacy.kb());
    let out = run(&mut openkb(&legacy, &["list"]));
    assert_eq!(out.code, 3, "{}", out.stderr);
    // 4: busy, another process holds the lock past OPENKB_LOCK_TIMEOUT; nothing changed.
    let holder = PythonLockHolder::hold(&env.kb().join(".openkb/ingest.lock"), true);
    let new_file = env.write("new.md", "# New\n");
    let new_file = new_file.to_string_lossy();
    for args in [
        &["status"][..],
        &["list"],
        &["show", "a"],
        &["log"],
        &["add", &new_file],
        &["remove", "a", "-y"],
        &["compile", "a"],
        &["doctor"],
        &["lint"],
        &["migrate"],
        &["export", "--json"],
        &["export", "--for-python"],
    ] {
        let out = run(openkb(&env, args).env("OPENKB_LOCK_TIMEOUT", "0.2"));
        assert_eq!(out.code, 4, "{args:?}: {}", out.stderr);
    }
    // -q: the wait is not announced; the error that ends it is.
    let quiet = run(openkb(&env, &["-q", "status"]).env("OPENKB_LOCK_TIMEOUT", "0.2"));
    assert_eq!(quiet.code, 4, "{}", quiet.stderr);
    assert!(quiet.stderr.starts_with("error: "), "{}", quiet.stderr);
    assert!(
        !quiet.stderr.lines().any(|l| l.starts_with("waiting for")),
        "{}",
        quiet.stderr
    );
    holder.release();
    assert_eq!(env.docs().len(), 1, "nothing changed");

    // 1 from doctor and lint: a problem remains (a wiki link to no page).
    std::fs::write(env.kb().join("wiki/concepts/x.md"), "see [[nowhere]]\n").unwrap();
    let lint = run(&mut openkb(&env, &["lint"]));
    assert_eq!(lint.code, 1, "{}{}", lint.stdout, lint.stderr);

    // 3 for every command on a KB whose state.db is gone; doctor reports it (1), and nothing
    // recreates an empty one behind the user's back.
    let db = env.kb().join(".openkb/state.db");
    std::fs::rename(&db, env.path().join("state.db.aside")).unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(env.kb().join(format!(".openkb/state.db{suffix}")));
    }
    for args in [
        &["status"][..],
        &["list"],
        &["show", "a"],
        &["log"],
        &["add", &new_file],
        &["remove", "a", "-y"],
        &["compile", "--pending"],
        &["watch", "--once"],
        &["lint"],
        &["export", "--json"],
        &["export", "--for-python"],
    ] {
        let out = run(&mut openkb(&env, args));
        assert_eq!(out.code, 3, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("state.db is missing"),
            "{args:?}: {}",
            out.stderr
        );
    }
    let doctor = run(&mut openkb(&env, &["doctor"]));
    assert_eq!(doctor.code, 1, "{}{}", doctor.stdout, doctor.stderr);
    assert!(!db.exists(), "only init and doctor --fix create state.db");
}

const SUBCOMMANDS: &[&str] = &[
    "init",
    "use",
    "kbs",
    "forget",
    "list",
    "show",
    "status",
    "log",
    "add",
    "remove",
    "compile",
    "watch",
    "doctor",
    "lint",
    "migrate",
    "export",
    "completions",
    "man",
];

#[test]
fn completions_name_every_subcommand_and_parse_in_their_shell() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(&mut openkb(&env, &["completions", shell])).stdout;
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
        assert!(script.contains("--kb-dir"), "{shell}: global options too");
        // Syntax check by the shell itself; .ci/run installs zsh and fish, so a missing shell
        // is a broken machine, not a reason to pass.
        let file = env.path().join(format!("openkb.{shell}"));
        std::fs::write(&file, &script).unwrap();
        let checked = harness::clean(shell)
            .arg("-n")
            .arg(&file)
            .output()
            .unwrap_or_else(|e| {
                panic!("{shell} is not installed ({e}): the completion syntax check needs it")
            });
        assert!(
            checked.status.success(),
            "{shell} -n rejects the script: {}",
            stderr(&checked)
        );
    }
}

#[test]
fn man_pages_cover_the_tool_and_each_command() {
    let env = Env::new();
    let page = ok(&mut openkb(&env, &["man"])).stdout;
    assert!(page.contains(".TH openkb 1"), "{page}");
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&format!("openkb\\-{sub}(1)")),
            "{sub}: {page}"
        );
    }
    let add = ok(&mut openkb(&env, &["man", "add"])).stdout;
    assert!(add.contains(".TH openkb-add 1"), "{add}");
    assert!(
        add.contains("\\-\\-json"),
        "the add page lists its options: {add}"
    );
    // Rendered by man itself, where it is installed: no roff warnings.
    let file = env.path().join("openkb-add.1");
    std::fs::write(&file, &add).unwrap();
    if let Ok(rendered) = harness::clean("man")
        .args(["--warnings", "-l"])
        .arg(&file)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .output()
    {
        let text = stdout(&rendered);
        assert!(text.contains("openkb-add"), "{text}");
        assert_eq!(stderr(&rendered), "", "man warns about the page");
    }
}
