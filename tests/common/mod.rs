//! Helpers shared by the integration tests: a temp HOME, the built binary, and KBs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use openkb::state::{Create, Document, Store};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_openkb");

/// A sandbox: a temp folder holding a fake HOME and room for KBs.
pub struct Sandbox {
    pub dir: TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
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

    pub fn global_yaml(&self) -> PathBuf {
        self.home().join(".config/openkb/global.yaml")
    }

    /// `openkb` with HOME redirected, no inherited KB or lock settings, run from the sandbox.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env("HOME", self.home())
            .env_remove("OPENKB_DIR")
            .env_remove("OPENKB_LOCK_TIMEOUT")
            .current_dir(self.path())
            .stdin(std::process::Stdio::null());
        cmd
    }

    pub fn assert_cmd(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.cmd())
    }

    /// `openkb init` a KB at `<sandbox>/<name>` and return its root.
    pub fn init_kb(&self, name: &str) -> PathBuf {
        let root = self.path().join(name);
        let out = self
            .cmd()
            .arg("--kb-dir")
            .arg(&root)
            .arg("init")
            .output()
            .expect("run openkb init");
        assert!(out.status.success(), "init failed: {out:?}");
        root.canonicalize().expect("kb root")
    }
}

pub fn hash_of(n: u64) -> String {
    format!("{n:064x}")
}

/// An era-C document as `add` would register it.
pub fn text_doc(n: u64, stem: &str) -> Document {
    Document {
        name: Some(format!("{stem}.md")),
        doc_name: Some(stem.to_owned()),
        doc_type: Some("md".into()),
        path: Some(format!("inbox/{stem}.md")),
        raw_path: Some(format!("raw/{stem}.md")),
        source_path: Some(format!("wiki/sources/{stem}.md")),
        ..Document::new(hash_of(n))
    }
}

pub fn open_store(kb: &Path) -> Store {
    Store::open(&kb.join(".openkb/state.db"), Create::Never).expect("open store")
}

pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A python3 child holding `fcntl.flock` on `path` (as the Python openkb tool does) until
/// killed; returns once the lock is held.
pub struct PythonLockHolder {
    child: std::process::Child,
}

impl PythonLockHolder {
    pub fn hold(path: &Path, exclusive: bool) -> Self {
        use std::io::BufRead;
        let mode = if exclusive { "LOCK_EX" } else { "LOCK_SH" };
        let script = format!(
            "import fcntl, sys, time\n\
             f = open(sys.argv[1], 'a+')\n\
             fcntl.flock(f, fcntl.{mode})\n\
             print('locked', flush=True)\n\
             time.sleep(600)\n"
        );
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 is needed for the cross-tool lock tests");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read from python");
        assert_eq!(line.trim(), "locked");
        PythonLockHolder { child }
    }

    pub fn release(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PythonLockHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
