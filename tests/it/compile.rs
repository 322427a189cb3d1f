//! The compile hook during `add`, and `openkb compile` later.

use crate::harness::{Env, assert_consistent, stderr, stdout};
use openkb::state::Status;

const RECORDING_HOOK: &str = r#"compile_command: 'test -f "$OPENKB_RAW_PATH" || exit 9; printf "%s|%s|%s|%s|%s\n" "$OPENKB_KB_DIR" "$OPENKB_DOC_NAME" "$OPENKB_DOC_HASH" "$OPENKB_RAW_PATH" "$OPENKB_SOURCE_PATH" >> ../hook.log; case "$OPENKB_DOC_NAME" in bad*) echo "step one ok" >&2; echo "LLM quota exceeded" >&2; exit 3;; esac; cp "$OPENKB_SOURCE_PATH" "wiki/summaries/$OPENKB_DOC_NAME.md"'
"#;

#[test]
fn hook_success_compiles_with_the_documented_environment() {
    let env = Env::with_kb();
    env.set_config(RECORDING_HOOK);
    env.write("in/good.md", "good\n");
    let out = env.run(&["add", "in"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = env.doc_named("good").unwrap();
    assert_eq!(doc.status, Status::Compiled);
    let log = std::fs::read_to_string(env.path().join("hook.log")).unwrap();
    let kb = env.kb();
    assert_eq!(
        log,
        format!(
            "{}|good|{}|{}|{}\n",
            kb.display(),
            doc.hash,
            kb.join("raw/good.md").display(),
            kb.join("wiki/sources/good.md").display()
        )
    );
    assert!(kb.join("wiki/summaries/good.md").is_file());
    assert_consistent(&env);
}

#[test]
fn hook_failure_rolls_that_document_back_and_the_rest_goes_on() {
    let env = Env::with_kb();
    env.set_config(RECORDING_HOOK);
    env.write("in/a-good.md", "good\n");
    env.write("in/bad.md", "bad\n");
    env.write("in/z-good.md", "also good\n");
    let out = env.run(&["add", "in"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("LLM quota exceeded"), "{err}");
    assert!(err.contains("exited with status 3"), "{err}");
    assert!(stdout(&out).ends_with("added 2, skipped 0, failed 1\n"));
    let kb = env.kb();
    assert!(env.doc_named("bad").is_none());
    assert!(!kb.join("raw/bad.md").exists());
    assert!(!kb.join("wiki/sources/bad.md").exists());
    let index = std::fs::read_to_string(kb.join("wiki/index.md")).unwrap();
    assert!(!index.contains("summaries/bad]"), "{index}");
    assert!(
        !std::fs::read_to_string(kb.join("wiki/log.md"))
            .unwrap()
            .contains("bad.md")
    );
    assert_eq!(env.docs().len(), 2);
    assert_consistent(&env);
}

#[test]
fn hook_failure_on_an_edited_file_restores_the_previous_version() {
    let env = Env::with_kb();
    let file = env.write("in/bad-plan.md", "version 1\n");
    assert!(env.run(&["add", "in"]).status.success());
    let v1 = env.doc_named("bad-plan").unwrap();
    env.set_config(RECORDING_HOOK);
    std::fs::write(&file, "version 2\n").unwrap();
    let out = env.run(&["add", "in"]);
    assert_eq!(out.status.code(), Some(1));
    let kb = env.kb();
    assert_eq!(
        std::fs::read_to_string(kb.join("raw/bad-plan.md")).unwrap(),
        "version 1\n"
    );
    assert_eq!(
        std::fs::read_to_string(kb.join("wiki/sources/bad-plan.md")).unwrap(),
        "version 1\n"
    );
    let docs = env.docs();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].hash, v1.hash);
    let index = std::fs::read_to_string(kb.join("wiki/index.md")).unwrap();
    assert_eq!(
        index.matches("[[summaries/bad-plan]]").count(),
        1,
        "{index}"
    );
    assert_consistent(&env);
}

#[test]
fn compile_command_later_sets_compiled_and_failed() {
    let env = Env::with_kb();
    env.write("in/good.md", "good\n");
    env.write("in/bad.md", "bad\n");
    assert!(env.run(&["add", "in"]).status.success());
    assert!(env.docs().iter().all(|d| d.status == Status::Pending));

    let out = env.run(&["compile", "--pending"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no compile_command"),
        "{}",
        stderr(&out)
    );

    env.set_config(RECORDING_HOOK);
    let out = env.run(&["compile", "--pending"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("compiled 1, failed 1"),
        "{}",
        stdout(&out)
    );
    assert_eq!(env.doc_named("good").unwrap().status, Status::Compiled);
    let bad = env.doc_named("bad").unwrap();
    assert_eq!(bad.status, Status::Failed);
    assert!(
        bad.error.as_deref().unwrap().contains("LLM quota exceeded"),
        "{:?}",
        bad.error
    );

    let status = env.run(&["status"]);
    assert!(
        stdout(&status).contains("Documents: 2 (compiled 1, pending 0, failed 1)"),
        "{}",
        stdout(&status)
    );
    let log = env.store().log_tail(None, Some("compile")).unwrap();
    assert_eq!(log.last().unwrap().description, "compiled 1, failed 1");

    // Fixed compiler: compiling the failed one by name succeeds and clears the error.
    let path = env.kb().join(".openkb/config.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("bad*)", "nomatch*)");
    std::fs::write(&path, text).unwrap();
    let out = env.run(&["compile", "bad"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bad = env.doc_named("bad").unwrap();
    assert_eq!(bad.status, Status::Compiled);
    assert_eq!(bad.error, None);
    assert!(env.kb().join("wiki/summaries/bad.md").is_file());

    let out = env.run(&["compile", "no-such-doc"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no document has doc_name"),
        "{}",
        stderr(&out)
    );
    assert_consistent(&env);
}
