//! Helpers shared by the integration tests: temp KBs copied from the legacy fixture, and the
//! real `openkb` binary run with `HOME` pointing into the test's own temp dir.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const FIXTURE: &str = "/work/shared/fixtures/legacy-kb-50/kb";

/// A temp dir holding `home/` (the test's HOME) and KBs.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home");
        Sandbox { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A writable copy of the legacy fixture KB at `<sandbox>/<name>`.
    pub fn fixture_kb(&self, name: &str) -> PathBuf {
        let target = self.dir.path().join(name);
        let status = Command::new("cp")
            .arg("-r")
            .arg(FIXTURE)
            .arg(&target)
            .status()
            .expect("cp");
        assert!(status.success());
        let status = Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(&target)
            .status()
            .expect("chmod");
        assert!(status.success());
        target
    }

    /// A minimal legacy KB (just `.openkb/hashes.json` and optionally `wiki/log.md`).
    pub fn legacy_kb(&self, name: &str, hashes_json: &[u8], log_md: Option<&str>) -> PathBuf {
        let root = self.dir.path().join(name);
        std::fs::create_dir_all(root.join(".openkb")).unwrap();
        std::fs::create_dir_all(root.join("wiki")).unwrap();
        std::fs::write(root.join(".openkb/hashes.json"), hashes_json).unwrap();
        if let Some(log) = log_md {
            std::fs::write(root.join("wiki/log.md"), log).unwrap();
        }
        root
    }

    /// `openkb --kb-dir <kb> args...` with HOME in the sandbox.
    pub fn openkb(&self, kb: &Path, args: &[&str]) -> Command {
        let mut cmd = self.openkb_bare(&["--kb-dir"]);
        cmd.arg(kb).args(args);
        cmd
    }

    pub fn openkb_bare(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_openkb"));
        cmd.args(args)
            .env("HOME", self.home())
            .env_remove("OPENKB_DIR")
            .env_remove("OPENKB_LOCK_TIMEOUT")
            .current_dir(self.dir.path());
        cmd
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub stdout_bytes: Vec<u8>,
}

pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("run openkb");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout_bytes: out.stdout,
    }
}

/// Run and require exit 0.
pub fn ok(cmd: &mut Command) -> Run {
    let r = run(cmd);
    assert_eq!(
        r.code, 0,
        "command failed: {cmd:?}\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    r
}

pub fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).expect("JSON output")
}

/// Every file under `root` (relative path -> bytes), symlinks as their target text.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for item in std::fs::read_dir(dir).unwrap() {
        let item = item.unwrap();
        let path = item.path();
        let kind = item.file_type().unwrap();
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        if kind.is_dir() {
            out.insert(rel.join(""), Vec::new());
            walk(root, &path, out);
        } else if kind.is_symlink() {
            out.insert(
                rel,
                std::fs::read_link(&path)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
                    .into_bytes(),
            );
        } else {
            out.insert(rel, std::fs::read(&path).unwrap());
        }
    }
}

/// Files whose name starts with `prefix` in `dir`.
pub fn names_starting_with(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}
