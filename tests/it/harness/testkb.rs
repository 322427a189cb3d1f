//! Shared helpers of the doctor, lint and netfs tests: real KBs made by the real `openkb init`
//! in temp folders, documents registered through the library, files written on disk.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use assert_cmd::Command;
use openkb::state::{Document, Queries, Status, Store};
use sha2::{Digest, Sha256};

pub struct TestKb {
    _dir: tempfile::TempDir,
    pub home: PathBuf,
    pub root: PathBuf,
}

impl TestKb {
    /// A fresh KB made by `openkb init`.
    pub fn new() -> TestKb {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let root = dir.path().join("kb");
        let kb = TestKb {
            _dir: dir,
            home,
            root,
        };
        kb.cmd().arg("init").assert().success();
        kb
    }

    /// Move a fresh KB to `root` (outside any temp folder) so it outlives the test.
    pub fn keep_at(kb: TestKb, root: &Path) -> TestKb {
        std::fs::create_dir_all(root.parent().unwrap()).unwrap();
        std::fs::rename(&kb.root, root).unwrap();
        TestKb {
            root: root.to_path_buf(),
            ..kb
        }
    }

    /// `openkb --kb-dir <root>` with HOME in the temp folder (and, like every command of the
    /// harness, nothing else of the test's environment: no filesystem overrides).
    pub fn cmd(&self) -> Command {
        let mut cmd = self.bare();
        cmd.arg("--kb-dir").arg(&self.root);
        cmd
    }

    /// `openkb` without `--kb-dir`, with the KB's HOME.
    pub fn bare(&self) -> Command {
        Command::from_std(super::openkb(&self.home, self._dir.path()))
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    pub fn db(&self) -> PathBuf {
        self.path(".openkb/state.db")
    }

    pub fn write_session(&self) -> openkb::session::WriteSession {
        openkb::Kb::at(&self.root).unwrap().write_session().unwrap()
    }

    pub fn store(&self) -> Store {
        Store::open_read_only(&self.db()).unwrap()
    }

    /// Register a short document the way `add` leaves it: raw copy, source, and (when
    /// compiled) a summary, then the registry row.
    pub fn add_doc(&self, name: &str, content: &str, compiled: bool) -> Document {
        let stem = openkb::names::stem(name).to_owned();
        self.write(&format!("raw/{name}"), content);
        self.write(&format!("wiki/sources/{stem}.md"), content);
        if compiled {
            self.write(
                &format!("wiki/summaries/{stem}.md"),
                &format!("# {stem}\n\nSummary of [[sources/{stem}]].\n"),
            );
        }
        let mut doc = Document::new(sha256(content.as_bytes()));
        doc.name = Some(name.to_owned());
        doc.doc_name = Some(stem.clone());
        doc.doc_type = Some(
            openkb::names::suffix(name)
                .trim_start_matches('.')
                .to_owned(),
        );
        doc.path = Some(format!("raw/{name}"));
        doc.raw_path = Some(format!("raw/{name}"));
        doc.source_path = Some(format!("wiki/sources/{stem}.md"));
        doc.status = if compiled {
            Status::Compiled
        } else {
            Status::Pending
        };
        self.upsert(&doc);
        doc
    }

    pub fn upsert(&self, doc: &Document) {
        self.write_session()
            .write(|tx| tx.upsert_document(doc))
            .unwrap();
    }

    /// Commit a log row and render it into wiki/log.md, as commands do.
    pub fn record(&self, op: &str, desc: &str) {
        self.write_session().record(op, desc).unwrap();
    }

    /// How many log rows of operation `op` state.db holds.
    pub fn log_rows(&self, op: &str) -> usize {
        self.store()
            .reader()
            .unwrap()
            .log_tail(None, Some(op))
            .unwrap()
            .len()
    }

    /// Files of `.openkb/` whose names start with `prefix`.
    pub fn openkb_files(&self, prefix: &str) -> Vec<String> {
        super::names_starting_with(&self.path(".openkb"), prefix)
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Make a file look `age` old.
pub fn age_file(path: &Path, age: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

pub use super::{stderr, stdout};

/// `openkb doctor --json` parsed.
pub fn doctor_json(kb: &TestKb, extra: &[&str]) -> (i32, serde_json::Value) {
    let output = kb
        .cmd()
        .arg("doctor")
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&output), stderr(&output)));
    (output.status.code().unwrap(), json)
}

/// Findings of one check that are not ok, as (severity, message, fixed).
pub fn findings(json: &serde_json::Value, check: &str) -> Vec<(String, String, bool)> {
    json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == check && f["severity"] != "ok")
        .map(|f| {
            (
                f["severity"].as_str().unwrap().to_owned(),
                f["message"].as_str().unwrap().to_owned(),
                f["fixed"].as_bool().unwrap(),
            )
        })
        .collect()
}
