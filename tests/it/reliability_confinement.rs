//! Confinement: no command writes outside the KB (and the global config) because of a name,
//! a legacy path or a symlink. A canary folder beside the KB must be byte-identical
//! afterwards, with the same modes and mtimes.

use crate::harness;

use std::path::{Path, PathBuf};

use crate::harness::{Background, Env, stderr, stdout, tree_snapshot};
use openkb::state::Document;

/// `<env>/canary/`: files the attacks aim at, by relative and absolute paths.
fn canary(env: &Env) -> PathBuf {
    harness::make_canary(env.path())
}

/// Documents whose names and legacy paths point out of the KB, registered as a legacy
/// registry could hold them.
fn register_escapes(env: &Env, canary: &Path) {
    let docs = vec![
        Document {
            name: Some("victim.md".into()),
            doc_name: Some("../../canary/victim".into()),
            doc_type: Some("md".into()),
            path: Some("../canary/victim.md".into()),
            raw_path: Some("../canary/victim.md".into()),
            source_path: Some("wiki/sources/../../../canary/sources/victim.md".into()),
            ..Document::new(harness::hash_of(1))
        },
        Document {
            name: Some("absolute.pdf".into()),
            doc_name: Some("absolute".into()),
            doc_type: Some("pdf".into()),
            path: Some(canary.join("victim.pdf").to_string_lossy().into_owned()),
            raw_path: Some(canary.join("victim.pdf").to_string_lossy().into_owned()),
            source_path: Some(
                canary
                    .join("sources/victim.md")
                    .to_string_lossy()
                    .into_owned(),
            ),
            ..Document::new(harness::hash_of(2))
        },
        Document {
            // No raw_path: the oldest entries' raw copy is raw/<name>; a name with `..`.
            name: Some("../canary/victim.md".into()),
            doc_name: None,
            doc_type: Some("md".into()),
            ..Document::new(harness::hash_of(3))
        },
        Document {
            // Through a symlinked folder in raw/.
            name: Some("victim.md".into()),
            doc_name: Some("linked".into()),
            doc_type: Some("md".into()),
            raw_path: Some("raw/outside/victim.md".into()),
            ..Document::new(harness::hash_of(4))
        },
    ];
    env.write_session()
        .write(|tx| {
            for doc in &docs {
                tx.upsert_document(doc)?;
            }
            Ok(())
        })
        .expect("register");
}

#[test]
fn names_legacy_paths_and_symlinks_never_reach_outside_the_kb() {
    let env = Env::with_kb();
    let canary = canary(&env);
    let kb = env.kb();
    // Symlinks in raw/ and wiki/ leading out.
    std::os::unix::fs::symlink(&canary, kb.join("raw/outside")).expect("dir link");
    std::os::unix::fs::symlink(canary.join("victim.md"), kb.join("raw/linked.md"))
        .expect("file link");
    std::os::unix::fs::symlink(canary.join("summaries"), kb.join("wiki/concepts/out"))
        .expect("wiki link");
    // Wiki pages linking to the escaping names, so remove and lint --fix have links to
    // rewrite, and a page whose link target is outside.
    env.write(
        "kb/wiki/concepts/links.md",
        "# links\n\n[[summaries/../../canary/victim]] [[../../canary/deep/page]] \
         [[summaries/absolute]]\n",
    );
    register_escapes(&env, &canary);
    // A file whose name is `..`-like, added explicitly.
    env.write("in/..md", "# dots\n");
    let before = tree_snapshot(&canary, &[]);

    let mut ran = Vec::new();
    let mut run = |args: &[&str]| {
        let out = env.run(args);
        ran.push(format!(
            "{args:?} -> {:?}\n{}{}",
            out.status.code(),
            stdout(&out),
            stderr(&out)
        ));
        out
    };
    run(&["add", &env.path().join("in/..md").to_string_lossy()]);
    run(&["add", &kb.join("raw").to_string_lossy()]);
    for id in [
        "../../canary/victim",
        "absolute",
        "../canary/victim.md",
        "linked",
    ] {
        run(&["remove", "-y", id]);
    }
    run(&["doctor", "--fix", "--full"]);
    run(&["lint", "--fix"]);
    // watch: its scan of raw/ (all of `watch --once`) meets raw/linked.md and raw/outside/;
    // a live watch sets up its recursive watcher over them, then stops on SIGTERM.
    run(&["watch", "--once"]);
    let mut watch = Background::start(env.cmd().arg("watch"));
    watch.wait_for_stderr("watching ");
    watch.signal(libc::SIGTERM);
    let (status, _, err) = watch.finish();
    ran.push(format!("watch -> {:?}\n{err}", status.code()));

    let after = tree_snapshot(&canary, &[]);
    assert_eq!(
        after,
        before,
        "the canary changed; commands run:\n{}",
        ran.join("\n")
    );
    // Every escaping document was unregistered, its outside files left alone, and said so.
    let all = ran.join("\n");
    // Each path an entry names outside the KB (and the `..` doc_name) is listed as left alone.
    assert_eq!(all.matches(" alone: ").count(), 7, "{all}");
    let left: Vec<_> = env.docs().into_iter().filter_map(|d| d.doc_name).collect();
    assert_eq!(left, vec!["document".to_owned()], "{all}");
    eprintln!("confinement: {} commands, canary unchanged", ran.len());
}

#[test]
fn a_raw_folder_that_is_a_symlink_out_of_the_kb_gets_no_writes() {
    let env = Env::with_kb();
    let canary = canary(&env);
    let kb = env.kb();
    // raw/ itself replaced by a symlink to the canary: nothing may be written through it.
    std::fs::remove_dir(kb.join("raw")).expect("rmdir raw");
    std::os::unix::fs::symlink(&canary, kb.join("raw")).expect("raw link");
    let before = tree_snapshot(&canary, &[]);
    let file = env.write("in/new.md", "# new\n");
    let add = env.cmd().arg("add").arg(&file).output().expect("add");
    let doctor = env.run(&["doctor", "--fix"]);
    let after = tree_snapshot(&canary, &[]);
    assert_eq!(
        after,
        before,
        "add: {}{}\ndoctor: {}",
        stdout(&add),
        stderr(&add),
        stdout(&doctor)
    );
}
