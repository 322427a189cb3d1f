//! Each promise of the guard against a real KB folder and a real `state.db`: a commit leaves no
//! intent; a failure in the middle leaves nothing; a dropped operation ends where crash
//! recovery ends; one document rolled back alone leaves the others.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Operation, Planned};
use crate::error::Error;
use crate::ingest::prepare::Staging;
use crate::ingest::publish;
use crate::kb::Kb;
use crate::session::WriteSession;
use crate::state::{Document, IntentFile, IntentOp, Status, intents};
use crate::wiki;

/// A KB with a `wiki/sources/a.md` left from an earlier version of `a`, and an empty `state.db`.
fn new_kb() -> (tempfile::TempDir, Kb) {
    let dir = tempfile::tempdir().unwrap();
    for sub in [".openkb", "raw", "wiki/sources", "wiki/summaries"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    std::fs::write(dir.path().join("wiki/sources/a.md"), "old source\n").unwrap();
    let kb = Kb::at(dir.path()).unwrap();
    drop(kb.write_session_creating().unwrap());
    (dir, kb)
}

fn hash_of(n: u64) -> String {
    format!("{n:064x}")
}

fn doc(n: u64, stem: &str) -> Document {
    Document {
        name: Some(format!("{stem}.md")),
        doc_name: Some(stem.to_owned()),
        doc_type: Some("md".into()),
        raw_path: Some(format!("raw/{stem}.md")),
        ..Document::new(hash_of(n))
    }
}

/// An add of `raw/<stem>.md`, and of `wiki/sources/<stem>.md` when `with_source`.
fn add_intent(n: u64, stem: &str, files: Vec<IntentFile>) -> Planned {
    Planned {
        operation: IntentOp::Add,
        hash: hash_of(n),
        doc_name: Some(stem.to_owned()),
        files,
    }
}

/// Do what an add of document `a` does before its commit: a new `raw/a.md`, `wiki/sources/a.md`
/// replaced (its old content kept in staging), the index line inserted. Returns the guard.
fn add_a<'s>(session: &'s WriteSession, staging: &Staging) -> Operation<'s> {
    let kb = session.kb();
    let backup = staging.fresh("backup");
    let backup_rel = backup
        .strip_prefix(kb.root())
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let files = vec![
        IntentFile::new("raw/a.md"),
        IntentFile {
            path: "wiki/sources/a.md".into(),
            backup: Some(backup_rel),
        },
    ];
    let mut op = Operation::begin(session, vec![add_intent(1, "a", files)]).unwrap();
    std::fs::write(kb.root().join("raw/a.md"), "new a\n").unwrap();
    let source = kb.root().join("wiki/sources/a.md");
    assert!(publish::backup(&source, &backup).unwrap());
    let staged = staging.fresh("source");
    std::fs::write(&staged, "new source\n").unwrap();
    publish::publish(&staged, &source).unwrap();
    let line = wiki::index_line("a", "a.md");
    let inserted = wiki::index_insert(&wiki::index_md(kb).unwrap(), &[("a".into(), line)]).unwrap();
    op.undo_mut(0).index_line_ours = Some(inserted.contains(&"a".to_owned()));
    op
}

/// Every file under `raw/` and `wiki/` with its content.
fn tree(kb: &Kb) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    for top in ["raw", "wiki"] {
        walk(kb.root(), &kb.root().join(top), &mut out);
    }
    out
}

fn intent_count(kb: &Kb) -> u64 {
    let session = kb.read_session().unwrap();
    intents::unfinished_count(&session.reader().unwrap()).unwrap()
}

#[test]
fn commit_leaves_no_intent_and_keeps_the_work() {
    let (_dir, kb) = new_kb();
    let session = kb.write_session().unwrap();
    let staging = Staging::create(&kb).unwrap();
    let op = add_a(&session, &staging);
    assert_eq!(
        intent_count(&kb),
        1,
        "the intent is committed before any file"
    );
    let log = op
        .commit(|tx| {
            tx.upsert_document(&doc(1, "a"))?;
            tx.append_log("ingest", "a.md")
        })
        .unwrap();
    assert_eq!(log.operation, "ingest");
    drop(session);
    assert_eq!(intent_count(&kb), 0);
    assert!(kb.read_session().unwrap().is_known(&hash_of(1)).unwrap());
    let files = tree(&kb);
    assert_eq!(files["raw/a.md"], b"new a\n");
    assert_eq!(files["wiki/sources/a.md"], b"new source\n");
    assert!(String::from_utf8_lossy(&files["wiki/index.md"]).contains("[[summaries/a]]"));
}

#[test]
fn a_failure_in_the_middle_leaves_nothing() {
    let (_dir, kb) = new_kb();
    let before = tree(&kb);
    let session = kb.write_session().unwrap();
    let staging = Staging::create(&kb).unwrap();
    let op = add_a(&session, &staging);
    let err = op
        .commit(|tx| {
            tx.upsert_document(&doc(1, "a"))?;
            tx.append_log("ingest", "a.md")?;
            Err::<(), _>(Error::Invalid("the commit body failed".into()))
        })
        .unwrap_err();
    assert!(err.to_string().contains("the commit body failed"), "{err}");
    drop(session);
    let reader = kb.read_session().unwrap();
    assert!(
        !reader.is_known(&hash_of(1)).unwrap(),
        "the row went with the transaction"
    );
    assert!(reader.log_tail(None, None).unwrap().is_empty());
    drop(reader);
    assert_eq!(intent_count(&kb), 0);
    let mut after = tree(&kb);
    // index.md did not exist before: the rollback leaves its seed, without the line.
    let index = after.remove("wiki/index.md").unwrap_or_default();
    assert!(!String::from_utf8_lossy(&index).contains("[[summaries/a]]"));
    assert_eq!(after, before, "new files deleted, replaced files restored");
}

#[test]
fn drop_rolls_back_exactly_what_recovery_would() {
    let (_dropped_dir, dropped) = new_kb();
    let (_crashed_dir, crashed) = new_kb();
    {
        let session = dropped.write_session().unwrap();
        let staging = Staging::create(&dropped).unwrap();
        drop(add_a(&session, &staging));
    }
    let staging = Staging::create(&crashed).unwrap();
    {
        let session = crashed.write_session().unwrap();
        // A crash: neither commit nor rollback runs; the intent stays in state.db.
        std::mem::forget(add_a(&session, &staging));
    }
    assert_eq!(intent_count(&crashed), 1);
    let recovered = crashed.write_session().unwrap();
    assert_eq!(recovered.recovered().adds_rolled_back, 1);
    drop(recovered);
    assert_eq!(tree(&dropped), tree(&crashed));
    assert_eq!(intent_count(&dropped), 0);
    assert_eq!(intent_count(&crashed), 0);
}

#[test]
fn a_dropped_compile_leaves_its_document_failed_as_recovery_does() {
    let (_dropped_dir, dropped) = new_kb();
    let (_crashed_dir, crashed) = new_kb();
    let compile = || Planned {
        operation: IntentOp::Compile,
        hash: hash_of(1),
        doc_name: Some("a".into()),
        files: Vec::new(),
    };
    for kb in [&dropped, &crashed] {
        let session = kb.write_session().unwrap();
        session
            .write(|tx| tx.upsert_document(&doc(1, "a")))
            .unwrap();
        let op = Operation::begin(&session, vec![compile()]).unwrap();
        if kb == &dropped {
            drop(op);
        } else {
            std::mem::forget(op);
        }
    }
    drop(crashed.write_session().unwrap());
    for kb in [&dropped, &crashed] {
        let doc = kb
            .read_session()
            .unwrap()
            .get(&hash_of(1))
            .unwrap()
            .unwrap();
        assert_eq!(doc.status, Status::Failed);
        assert!(doc.error.unwrap().contains("run `openkb compile` again"));
        assert_eq!(intent_count(kb), 0);
    }
}

#[test]
fn a_document_rolled_back_alone_leaves_the_others() {
    let (_dir, kb) = new_kb();
    let session = kb.write_session().unwrap();
    let mut op = Operation::begin(
        &session,
        vec![
            add_intent(1, "one", vec![IntentFile::new("raw/one.md")]),
            add_intent(2, "two", vec![IntentFile::new("raw/two.md")]),
        ],
    )
    .unwrap();
    assert_eq!(op.len(), 2);
    std::fs::write(kb.root().join("raw/one.md"), "1").unwrap();
    std::fs::write(kb.root().join("raw/two.md"), "2").unwrap();
    op.roll_back(0);
    assert!(
        !kb.root().join("raw/one.md").exists(),
        "rolled back at once"
    );
    op.commit(|tx| tx.upsert_document(&doc(2, "two"))).unwrap();
    drop(session);
    assert!(kb.root().join("raw/two.md").exists());
    assert!(!kb.root().join("raw/one.md").exists());
    assert_eq!(
        intent_count(&kb),
        0,
        "the rolled-back document's intent went too"
    );
}
