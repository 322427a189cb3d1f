//! The command line without surprises: which KB a command uses, what `add` registers and
//! where, config errors, lint and pending documents, the hook as users see it, `watch`, and
//! the small commands (`show`, `list --status`, several identifiers for `remove`, `kbs`).

use std::path::Path;
use std::process::Stdio;

use crate::harness::{Env, assert_consistent, stderr, stdout, wait_until};

/// `openkb ARGS` from `cwd` with the env's HOME and no --kb-dir: discovery decides.
fn bare(env: &Env, cwd: &Path, args: &[&str]) -> std::process::Output {
    env.bare(cwd).args(args).output().expect("run openkb")
}

#[test]
fn falling_back_to_the_default_kb_is_announced() {
    let env = Env::with_kb();
    let elsewhere = env.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("note.md"), "note\n").unwrap();
    let out = bare(&env, &elsewhere, &["add", "note.md"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let kb = env.kb().canonicalize().unwrap();
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "using the default knowledge base {}",
            kb.display()
        )),
        "{err}"
    );
    // -q: the note is context, not a warning about data; it goes.
    std::fs::write(elsewhere.join("other.md"), "other\n").unwrap();
    let out = bare(&env, &elsewhere, &["-q", "add", "other.md"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(stdout(&out), "added 1, skipped 0, failed 0\n");
    // Inside the KB, nothing to announce.
    let out = bare(&env, &kb.join("raw"), &["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("default knowledge base"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn init_says_when_it_becomes_the_default() {
    let env = Env::with_kb();
    let first = env.kb().canonicalize().unwrap();
    let second = env.path().join("second");
    let out = bare(
        &env,
        env.path(),
        &[
            "--kb-dir",
            second.to_str().unwrap(),
            "init",
            "--model",
            "m",
            "--language",
            "en",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "it is now the default knowledge base (was {}",
            first.display()
        )),
        "{text}"
    );
    // -q: the one line that says what was made.
    let third = env.path().join("third");
    let out = bare(
        &env,
        env.path(),
        &[
            "-q",
            "--kb-dir",
            third.to_str().unwrap(),
            "init",
            "--model",
            "m",
            "--language",
            "en",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "Initialized knowledge base at {}\n",
            third.canonicalize().unwrap().display()
        )
    );
    assert_eq!(stderr(&out), "");
}

#[test]
fn export_refuses_a_missing_folder_and_writes_nothing() {
    let env = Env::with_kb();
    let target = env.path().join("no/such/dir/x.json");
    let out = env
        .cmd()
        .args(["export", "--json", "-o"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(!env.path().join("no").exists());
    // An existing folder works.
    let target = env.path().join("x.json");
    let out = env
        .cmd()
        .args(["export", "--json", "-o"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(target.is_file());
}

#[test]
fn the_kbs_own_files_are_never_registered() {
    let env = Env::with_kb();
    let kb = env.kb();
    std::fs::write(kb.join("index.md"), "top-level index\n").unwrap();
    std::fs::write(env.path().join("mine.md"), "mine\n").unwrap();
    // A symlink from outside into the wiki is the wiki too.
    std::os::unix::fs::symlink(kb.join("wiki/index.md"), env.path().join("alias.md")).unwrap();
    let out = env
        .cmd()
        .current_dir(&kb)
        .args([
            "add",
            "wiki/index.md",
            "wiki/log.md",
            "wiki/AGENTS.md",
            "wiki",
            ".openkb/config.yaml",
            "index.md",
            "../alias.md",
            "../mine.md",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let names: Vec<String> = env.docs().iter().filter_map(|d| d.name.clone()).collect();
    assert_eq!(names, ["mine.md"]);
    let err = stderr(&out);
    assert_eq!(err.matches("knowledge base itself").count(), 7, "{err}");
    // `add .` from the KB root walks raw/ only.
    let out = env
        .cmd()
        .current_dir(&kb)
        .args(["add", "."])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.docs().len(), 1);
    assert_consistent(&env);
}

#[test]
fn files_already_in_raw_are_registered_in_place() {
    let env = Env::with_kb();
    let kb = env.kb();
    std::fs::create_dir_all(kb.join("raw/deep/er")).unwrap();
    std::fs::write(kb.join("raw/My Notes.md"), "spaces\n").unwrap();
    std::fs::write(kb.join("raw/deep/er/2509.11420.md"), "arxiv\n").unwrap();
    let out = env.run(&["add", kb.join("raw").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let notes = env.doc_named("My-Notes").expect("registered");
    assert_eq!(notes.raw_path.as_deref(), Some("raw/My Notes.md"));
    assert_eq!(notes.path.as_deref(), Some("raw/My Notes.md"));
    let arxiv = env.doc_named("2509-11420").expect("registered");
    assert_eq!(arxiv.raw_path.as_deref(), Some("raw/deep/er/2509.11420.md"));
    let mut raw_files: Vec<String> = walk(&kb.join("raw"));
    raw_files.sort();
    assert_eq!(raw_files, ["My Notes.md", "deep/er/2509.11420.md"]);
    // Removing it deletes that file, and only it.
    let out = env.run(&["remove", "-y", "My-Notes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(walk(&kb.join("raw")), ["deep/er/2509.11420.md"]);
    assert_consistent(&env);
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry.path().strip_prefix(dir).unwrap().to_owned();
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_compile_command_of_the_wrong_type_is_an_error_naming_file_key_and_type() {
    for bad in ["compile_command: 5\n", "compile_command: [make, wiki]\n"] {
        let env = Env::with_kb();
        env.set_config(bad);
        env.write("in/a.md", "a\n");
        for args in [&["add", "in"][..], &["compile", "--pending"][..]] {
            let out = env.run(args);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(err.contains(".openkb/config.yaml"), "{err}");
            assert!(err.contains("`compile_command` must be a string"), "{err}");
        }
        assert!(env.docs().is_empty(), "nothing added with a broken config");
    }
}

#[test]
fn status_shows_the_last_compile_only_from_compile_rows() {
    let env = Env::with_kb();
    env.write("in/a.md", "a\n");
    assert!(env.run(&["add", "in"]).status.success());
    let out = env.run(&["status"]);
    assert!(
        stdout(&out).contains("Last compile: never"),
        "{}",
        stdout(&out)
    );
    env.set_config("compile_command: 'true'\n");
    assert!(env.run(&["compile", "--pending"]).status.success());
    let out = env.run(&["status"]);
    assert!(
        stdout(&out).contains("(compile | compiled 1, failed 0)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn compile_without_a_target_is_a_usage_error() {
    let env = Env::with_kb();
    let out = env.run(&["compile"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--pending"), "{}", stderr(&out));
}

#[test]
fn links_to_pending_summaries_are_not_broken_and_survive_lint_fix() {
    let env = Env::with_kb();
    let kb = env.kb();
    env.write("in/a.md", "a\n");
    env.write("in/b.md", "b\n");
    assert!(env.run(&["add", "in"]).status.success());
    // A concept page linking to a pending document's summary and to a page that never exists.
    std::fs::write(
        kb.join("wiki/concepts/c.md"),
        "See [[summaries/a]] and [[summaries/ghost]].\n",
    )
    .unwrap();
    std::fs::write(kb.join("wiki/summaries/b.md"), "b [[concepts/c]]\n").unwrap();
    let out = env.run(&["lint", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let broken: Vec<&str> = report["issues"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "broken-link")
        .map(|i| i["target"].as_str().unwrap())
        .collect();
    assert_eq!(broken, ["summaries/ghost"], "{report:#}");
    let out = env.run(&["lint", "--fix"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        std::fs::read_to_string(kb.join("wiki/concepts/c.md")).unwrap(),
        "See [[summaries/a]] and summaries/ghost.\n"
    );
    let index = std::fs::read_to_string(kb.join("wiki/index.md")).unwrap();
    assert!(index.contains("[[summaries/a]]"), "{index}");
}

#[test]
fn remove_drops_its_index_line_whatever_happened_to_it() {
    let env = Env::with_kb();
    let kb = env.kb();
    for n in ["a", "b", "c"] {
        env.write(&format!("in/{n}.md"), &format!("{n}\n"));
    }
    assert!(env.run(&["add", "in"]).status.success());
    let index = std::fs::read_to_string(kb.join("wiki/index.md")).unwrap();
    // a: rewritten by a compiler; b: link stripped by an older lint --fix; c: untouched.
    let index = index
        .replace(
            "- [[summaries/a]] (short) — a.md",
            "  * [[summaries/a|A]] — a long summary",
        )
        .replace("- [[summaries/b]] (short)", "- summaries/b (short)");
    std::fs::write(kb.join("wiki/index.md"), &index).unwrap();
    for n in ["a", "b"] {
        let out = env.run(&["remove", "-y", n]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let index = std::fs::read_to_string(kb.join("wiki/index.md")).unwrap();
    assert!(!index.contains("summaries/a"), "{index}");
    assert!(!index.contains("summaries/b"), "{index}");
    assert!(index.contains("[[summaries/c]]"), "{index}");
}

#[test]
fn hook_output_is_streamed_with_the_document_and_stderr_kept() {
    let env = Env::with_kb();
    // The hook waits for a file the test creates only after seeing the first line: the line
    // must reach us while the hook still runs.
    let gate = env.path().join("gate");
    env.set_config(&format!(
        "compile_command: 'echo started; while [ ! -e {gate} ]; do sleep 0.05; done; echo done; echo quiet-warning >&2; case \"$OPENKB_DOC_NAME\" in bad) echo reason-of-failure >&2; exit 3;; esac'\n",
        gate = gate.display()
    ));
    env.write("in/good.md", "good\n");
    let mut child = env.spawn(&["add", "in/good.md"], Stdio::piped);
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut err, &mut first).unwrap();
    assert_eq!(first, "[good] started\n");
    std::fs::write(&gate, "").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "{rest}");
    assert!(rest.contains("[good] done"), "{rest}");
    assert!(
        !rest.contains("quiet-warning"),
        "stderr of a good hook hidden without -v: {rest}"
    );

    // -v shows it live, prefixed.
    env.write("in/good2.md", "good2\n");
    let out = env.run(&["-v", "add", "in/good2.md"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("[good2] quiet-warning"),
        "{}",
        stderr(&out)
    );

    // A failure keeps the stderr in the message and in the registry... (add rolls back: shown).
    env.write("in/bad.md", "bad\n");
    let out = env.run(&["add", "in/bad.md"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("compile_command exited with status 3"),
        "{err}"
    );
    assert!(err.contains("reason-of-failure"), "{err}");

    // -q: a good hook's output is progress, gone; a failing hook's reason is the error, kept.
    env.write("in/good3.md", "good3\n");
    std::fs::write(env.path().join("gate"), "").unwrap();
    let out = env.run(&["-q", "add", "in/good3.md"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    env.write("in/again/bad.md", "bad again\n");
    let out = env.run(&["-q", "add", "in/again/bad.md"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).contains("started"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("reason-of-failure"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn nested_openkb_in_a_hook_fails_at_once_with_a_reason() {
    let env = Env::with_kb();
    let bin = env!("CARGO_BIN_EXE_openkb");
    env.set_config(&format!(
        "compile_command: 'OPENKB_LOCK_TIMEOUT=10 {bin} --kb-dir \"$OPENKB_KB_DIR\" list > ../nested.out 2>&1; echo $? > ../nested.code'\n"
    ));
    env.write("in/a.md", "a\n");
    let out = env.run(&["add", "in/a.md"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let code = std::fs::read_to_string(env.path().join("nested.code")).unwrap();
    let text = std::fs::read_to_string(env.path().join("nested.out")).unwrap();
    assert_eq!(code.trim(), "1", "{text}");
    assert!(text.contains("started by the compile hook"), "{text}");
    assert!(!text.contains("waiting for another"), "{text}");
}

fn sigint(child: &std::process::Child) {
    // SAFETY: sending a signal to our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
}

#[test]
fn watch_catches_up_at_start_and_reports_files_still_waiting_on_ctrl_c() {
    use std::io::BufRead;
    let env = Env::with_kb();
    let kb = env.kb();
    // Dropped while no watch ran.
    std::fs::write(kb.join("raw/before.md"), "before\n").unwrap();
    let mut watch = env
        .cmd()
        // Long enough that a file dropped later is still being debounced at Ctrl-C.
        .env("OPENKB_WATCH_DEBOUNCE_MS", "600000")
        .arg("watch")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(watch.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("added ") && line.contains("as before"),
        "{line}"
    );
    assert!(env.doc_named("before").is_some());

    std::fs::write(kb.join("raw/late.md"), "late\n").unwrap();
    sigint(&watch);
    let status = watch.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut watch.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("not added yet:") && err.contains("raw/late.md"),
        "{err}"
    );
    assert!(err.contains("1 file(s)"), "{err}");
    assert!(env.doc_named("late").is_none());

    // --once adds what was waiting, and is quiet about what is registered.
    let out = env.run(&["watch", "--once"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("added 1, skipped 1, failed 0"),
        "{}",
        stdout(&out)
    );
    assert!(env.doc_named("late").is_some());
    let out = env.run(&["watch", "--once"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("added 0"), "{}", stdout(&out));
    assert_consistent(&env);
}

#[test]
fn watch_stopped_with_nothing_waiting_exits_zero() {
    use std::io::BufRead;
    let env = Env::with_kb();
    let mut watch = env
        .cmd()
        .arg("watch")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(watch.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("watching "), "{line}");
    sigint(&watch);
    let status = watch.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
    assert!(!rest.contains("not added yet"), "{rest}");
}

#[test]
fn show_tells_everything_about_one_document() {
    let env = Env::with_kb();
    let kb = env.kb();
    env.set_config("compile_command: 'case \"$OPENKB_DOC_NAME\" in bad) echo model refused >&2; exit 4;; esac; cp \"$OPENKB_SOURCE_PATH\" wiki/summaries/$OPENKB_DOC_NAME.md'\n");
    env.write("in/good.md", "good\n");
    env.write("in/bad.md", "bad\n");
    assert!(env.run(&["add", "in/good.md"]).status.success());
    // bad: registered pending (no hook at add time), then its compile fails.
    let config = std::fs::read_to_string(kb.join(".openkb/config.yaml")).unwrap();
    let without_hook: String = config
        .lines()
        .filter(|l| !l.starts_with("compile_command"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(kb.join(".openkb/config.yaml"), &without_hook).unwrap();
    assert!(env.run(&["add", "in/bad.md"]).status.success());
    std::fs::write(kb.join(".openkb/config.yaml"), &config).unwrap();
    assert_eq!(env.run(&["compile", "bad"]).status.code(), Some(1));

    let out = env.run(&["show", "bad"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("bad.md\n"), "{text}");
    assert!(text.contains("status     failed"), "{text}");
    assert!(text.contains("model refused"), "{text}");
    assert!(text.contains("raw/bad.md  exists"), "{text}");
    assert!(
        text.contains("wiki/summaries/bad.md  missing (not compiled yet)"),
        "{text}"
    );
    assert!(text.contains("] ingest | bad.md"), "{text}");

    std::fs::remove_file(kb.join("raw/good.md")).unwrap();
    let out = env.run(&["show", "good", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["document"]["status"], "compiled");
    assert_eq!(v["document"]["error"], serde_json::Value::Null);
    assert_eq!(v["document"]["doc_id"], serde_json::Value::Null);
    let files = v["files"].as_array().unwrap();
    let exists = |role: &str| {
        files
            .iter()
            .find(|f| f["role"] == role)
            .map(|f| f["exists"].clone())
            .unwrap()
    };
    assert_eq!(exists("raw"), false);
    assert_eq!(exists("source"), true);
    assert_eq!(exists("summary"), true);
    assert_eq!(v["log"][0]["operation"], "ingest");

    let out = env.run(&["show", ".md"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("2 documents match") && !err.contains("removed"),
        "{err}"
    );
    let out = env.run(&["show", "nothing-like-it"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no document matches"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn list_filters_by_status() {
    let env = Env::with_kb();
    env.write("in/a.md", "a\n");
    env.write("in/b.md", "b\n");
    assert!(env.run(&["add", "in"]).status.success());
    env.set_config("compile_command: 'test \"$OPENKB_DOC_NAME\" = a'\n");
    let _ = env.run(&["compile", "--pending"]);
    let names = |status: &str| -> Vec<String> {
        let out = env.run(&["list", "--json", "--status", status]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["doc_name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("compiled"), ["a"]);
    assert_eq!(names("failed"), ["b"]);
    assert!(names("pending").is_empty());
    let out = env.run(&["list", "--status", "failed"]);
    let text = stdout(&out);
    assert!(text.contains("b.md") && !text.contains("a.md"), "{text}");
    let out = env.run(&["list", "--status", "pending"]);
    assert_eq!(stdout(&out), "No pending documents.\n");
    let out = env.run(&["list", "--status", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn remove_takes_several_identifiers_and_checks_them_all_first() {
    let env = Env::with_kb();
    for n in ["a", "b", "c"] {
        env.write(&format!("in/{n}.md"), &format!("{n}\n"));
    }
    assert!(env.run(&["add", "in"]).status.success());
    // One bad identifier: nothing is removed.
    let out = env.run(&["remove", "-y", "a", "zzz", "b"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("\"zzz\"") && err.contains("nothing was removed"),
        "{err}"
    );
    assert_eq!(env.docs().len(), 3);
    // The same document named twice is removed once.
    let out = env.run(&["remove", "-y", "a", "b.md", "a.md"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).matches("removed ").count(),
        2,
        "{}",
        stdout(&out)
    );
    let left: Vec<String> = env
        .docs()
        .iter()
        .filter_map(|d| d.doc_name.clone())
        .collect();
    assert_eq!(left, ["c"]);
    assert_consistent(&env);
}

#[test]
fn known_kbs_are_listed_and_forgotten() {
    let env = Env::with_kb();
    let first = env.kb().canonicalize().unwrap();
    let second = env.path().join("second");
    let out = bare(
        &env,
        env.path(),
        &[
            "--kb-dir",
            second.to_str().unwrap(),
            "init",
            "-m",
            "m",
            "-l",
            "en",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let second = second.canonicalize().unwrap();
    std::fs::remove_dir_all(&second).unwrap();

    let out = bare(&env, env.path(), &["kbs", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["default_kb"], second.to_str().unwrap());
    let kbs = v["knowledge_bases"].as_array().unwrap();
    assert_eq!(kbs.len(), 2);
    assert_eq!(kbs[0]["path"], first.to_str().unwrap());
    assert_eq!(kbs[0]["is_kb"], true);
    assert_eq!(kbs[1]["exists"], false);
    let text = stdout(&bare(&env, env.path(), &["kbs"]));
    assert!(
        text.contains(&format!("* {}  (missing)", second.display())),
        "{text}"
    );

    // A deleted KB (the default) is forgotten; the other stays, untouched.
    let out = bare(&env, env.path(), &["forget", second.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("it was the default"),
        "{}",
        stdout(&out)
    );
    let global =
        std::fs::read_to_string(env.path().join("home/.config/openkb/global.yaml")).unwrap();
    assert!(!global.contains("second"), "{global}");
    assert!(!global.contains("default_kb"), "{global}");
    assert!(global.contains(first.to_str().unwrap()), "{global}");
    assert!(first.join(".openkb/state.db").is_file());
    // Forgetting it again says it is unknown.
    let out = bare(&env, env.path(), &["forget", second.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a known knowledge base"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_background_process_of_the_hook_holding_its_output_does_not_hold_openkb() {
    let env = Env::with_kb();
    let gate = env.path().join("gate");
    // The background loop keeps the hook's stdout and stderr open until the test opens the
    // gate, which it does only once `add` has returned (or after a generous deadline).
    env.set_config(&format!(
        "compile_command: '(while [ ! -e {gate} ]; do sleep 0.05; done) & echo compiled-it'\n",
        gate = gate.display()
    ));
    env.write("in/a.md", "a\n");
    let mut add = env.spawn(&["add", "in/a.md"], Stdio::piped);
    let mut status = None;
    let returned = wait_until(|| {
        status = add.try_wait().unwrap();
        status.is_some()
    });
    std::fs::write(&gate, "").unwrap();
    assert!(
        returned,
        "add did not return while the hook's background process ran"
    );
    let status = status.expect("exit status");
    let out = add.wait_with_output().unwrap();
    assert!(status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("[a] compiled-it"), "{}", stderr(&out));
    assert_eq!(
        env.doc_named("a").unwrap().status,
        openkb::state::Status::Compiled
    );
}
