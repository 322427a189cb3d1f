//! The one harness of the integration tests: a temp HOME, the built binary started from a
//! cleared environment ([`process`]), KBs (fresh or a copy of the legacy fixture), snapshots,
//! and a whole-KB consistency check. `testkb` adds the doctor/lint/netfs fixture.

pub mod process;
pub mod testkb;

pub use process::{
    BIN, Background, DEADLINE, clean, openkb, openkb_with_umask, output_bounded, shell_line,
    stderr, stdout, wait_output, wait_until,
};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use openkb::state::{Document, Store, intents};

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

/// A write session on the KB at `kb` (the only way to write to its state.db). Holds the
/// exclusive lock until dropped: drop it before running a command on the KB.
pub fn write_session(kb: &Path) -> openkb::session::WriteSession {
    openkb::Kb::at(kb)
        .expect("kb")
        .write_session()
        .expect("write session")
}

pub fn open_store(kb: &Path) -> Store {
    Store::open_read_only(&kb.join(".openkb/state.db")).expect("open store")
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
        let mut child = clean("python3")
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

/// The legacy KB written by the Python tool 0.4.5 (50 entries of every era; see its
/// MANIFEST.json), kept in the repository so the tests need nothing beside it.
pub const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/legacy-kb-50");

/// A temp folder with a HOME of its own (`<tmp>/home`), a KB at `<tmp>/kb` for the tests that
/// need one, and room for more KBs (`init_kb`, `fixture_kb`, `legacy_kb` by name).
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home");
        Env { dir }
    }

    /// A fresh KB (`openkb init`).
    pub fn with_kb() -> Env {
        let env = Env::new();
        let out = env.run(&["init", "--model", "m", "--language", "en"]);
        assert!(out.status.success(), "init: {}", stderr(&out));
        env
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn kb(&self) -> PathBuf {
        self.dir.path().join("kb")
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// `openkb --kb-dir <kb> ...` with HOME inside the temp folder.
    pub fn cmd(&self) -> Command {
        let mut cmd = self.bare(self.path());
        cmd.arg("--kb-dir").arg(self.kb());
        cmd
    }

    /// `openkb ...` without `--kb-dir`, run in `cwd` (discovery decides the KB), with the
    /// env's HOME.
    pub fn bare(&self, cwd: &Path) -> Command {
        openkb(&self.home(), cwd)
    }

    /// [`Env::bare`] in the env's folder, as an `assert_cmd` command.
    pub fn assert_bare(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.bare(self.path()))
    }

    pub fn global_yaml(&self) -> PathBuf {
        self.home().join(".config/openkb/global.yaml")
    }

    /// `openkb init` a KB at `<env>/<name>` and return its root.
    pub fn init_kb(&self, name: &str) -> PathBuf {
        let root = self.path().join(name);
        let out = self
            .bare(self.path())
            .arg("--kb-dir")
            .arg(&root)
            .arg("init")
            .output()
            .expect("run openkb init");
        assert!(out.status.success(), "init failed: {out:?}");
        root.canonicalize().expect("kb root")
    }

    /// A writable copy of the legacy fixture KB at `<env>/<name>`.
    pub fn fixture_kb(&self, name: &str) -> PathBuf {
        let target = self.path().join(name);
        copy_fixture_kb(&target);
        target
    }

    /// A minimal legacy KB (just `.openkb/hashes.json` and optionally `wiki/log.md`) at
    /// `<env>/<name>`.
    pub fn legacy_kb(&self, name: &str, hashes_json: &[u8], log_md: Option<&str>) -> PathBuf {
        let root = self.path().join(name);
        std::fs::create_dir_all(root.join(".openkb")).unwrap();
        std::fs::create_dir_all(root.join("wiki")).unwrap();
        std::fs::write(root.join(".openkb/hashes.json"), hashes_json).unwrap();
        if let Some(log) = log_md {
            std::fs::write(root.join("wiki/log.md"), log).unwrap();
        }
        root
    }

    /// `openkb --kb-dir <kb> args...` for a KB other than `<env>/kb`.
    pub fn openkb(&self, kb: &Path, args: &[&str]) -> Command {
        let mut cmd = self.bare(self.path());
        cmd.arg("--kb-dir").arg(kb).args(args);
        cmd
    }

    /// `openkb args...` without `--kb-dir`, in the env's folder.
    pub fn openkb_bare(&self, args: &[&str]) -> Command {
        let mut cmd = self.bare(self.path());
        cmd.args(args);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run openkb")
    }

    /// `openkb args...` (as [`Env::cmd`]) on the KB mounted read-only: a read-only bind mount
    /// in a private mount namespace, inside a user namespace where the caller is root, so it is
    /// the same for root (CI) and for a user, and needs no privilege. Panics with the reason
    /// when this machine cannot make the mount (no `unshare`, user namespaces disabled): a skip
    /// would hide a regression.
    pub fn run_on_read_only_mount(&self, args: &[&str]) -> Output {
        const SETUP_FAILED: i32 = 98;
        let cmd = self.cmd();
        let mut wrapped = clean("unshare");
        wrapped
            .args(["--map-root-user", "--mount", "sh", "-c"])
            .arg(format!(
                r#"{{ mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && ! touch "$1/.rw-probe"; }} 2>/dev/null || {{ echo "cannot make a read-only bind mount of $1" >&2; exit {SETUP_FAILED}; }}; shift; exec "$@""#
            ))
            .arg("sh")
            .arg(self.kb())
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .args(args)
            .current_dir(self.path());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        let out = wrapped
            .output()
            .expect("cannot run `unshare` (util-linux): needed to make a read-only mount");
        let err = stderr(&out);
        assert!(
            out.status.code() != Some(SETUP_FAILED) && !err.starts_with("unshare:"),
            "needs `unshare --map-root-user --mount` (user namespaces) and `mount`: {err}"
        );
        out
    }

    /// `openkb args...` started in the background with both output streams `io` (piped to
    /// read them, or null).
    pub fn spawn(&self, args: &[&str], io: fn() -> std::process::Stdio) -> std::process::Child {
        self.cmd()
            .args(args)
            .stdout(io())
            .stderr(io())
            .spawn()
            .expect("spawn openkb")
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
        path
    }

    pub fn store(&self) -> Store {
        Store::open_read_only(&self.kb().join(".openkb/state.db")).expect("open store")
    }

    pub fn write_session(&self) -> openkb::session::WriteSession {
        write_session(&self.kb())
    }

    pub fn docs(&self) -> Vec<Document> {
        self.store().list().expect("list")
    }

    pub fn doc_named(&self, doc_name: &str) -> Option<Document> {
        self.store().find_by_doc_name(doc_name).expect("find")
    }

    pub fn set_config(&self, key_value_lines: &str) {
        let path = self.kb().join(".openkb/config.yaml");
        let mut text = std::fs::read_to_string(&path).expect("config");
        text.push_str(key_value_lines);
        std::fs::write(&path, text).expect("config");
    }
}

/// A writable copy of the fixture's KB at `target` (the fixture itself is never touched).
pub fn copy_fixture_kb(target: &Path) {
    let status = clean("cp")
        .arg("-r")
        .arg(Path::new(FIXTURE).join("kb"))
        .arg(target)
        .status()
        .expect("cp");
    assert!(status.success());
    let status = clean("chmod")
        .args(["-R", "u+w"])
        .arg(target)
        .status()
        .expect("chmod");
    assert!(status.success());
}

/// Copy the legacy fixture KB to `<env>/kb` (writable) and `openkb migrate` it.
pub fn legacy_kb(env: &Env) {
    copy_fixture_kb(&env.kb());
    let out = env.run(&["migrate"]);
    assert!(out.status.success(), "migrate: {}", stderr(&out));
}

/// Every invariant the crash-safety promise names: each registered document has its files;
/// no published file in raw/ or wiki/sources/ lacks a document; no intents are left;
/// `PRAGMA integrity_check` is ok; index.md lists each registered doc_name once.
pub fn assert_consistent(env: &Env) {
    let kb = env.kb();
    let store = env.store();
    let docs = store.list().expect("list");
    let mut referenced = BTreeSet::new();
    for doc in &docs {
        for rel in [&doc.raw_path, &doc.source_path].into_iter().flatten() {
            assert!(kb.join(rel).is_file(), "{} lacks {rel}", doc.hash);
            referenced.insert(rel.clone());
        }
        if let Some(path) = &doc.path {
            referenced.insert(path.clone());
        }
    }
    for folder in ["raw", "wiki/sources"] {
        for entry in std::fs::read_dir(kb.join(folder))
            .expect("read_dir")
            .flatten()
        {
            if entry.file_type().expect("type").is_file() {
                let rel = format!("{folder}/{}", entry.file_name().to_string_lossy());
                assert!(referenced.contains(&rel), "orphan published file {rel}");
            }
        }
    }
    let reader = store.reader().expect("reader");
    let left = intents::unfinished(&reader).expect("intents");
    assert!(left.is_empty(), "intents left: {left:?}");
    let conn = rusqlite::Connection::open(kb.join(".openkb/state.db")).expect("sqlite");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
    let index = std::fs::read_to_string(kb.join("wiki/index.md")).expect("index");
    for doc in &docs {
        if let Some(d) = &doc.doc_name {
            let link = format!("[[summaries/{d}]]");
            assert_eq!(
                index.matches(&link).count(),
                1,
                "index lines for {d}:\n{index}"
            );
        }
    }
    let staging = kb.join(".openkb/staging");
    if staging.exists() {
        let left: Vec<_> = std::fs::read_dir(&staging)
            .expect("staging")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("rs-"))
            .collect();
        assert!(left.is_empty(), "staging leftovers: {left:?}");
    }
}

/// `n` small text files under `<env>/<folder>/`, in a few subfolders.
pub fn make_files(env: &Env, folder: &str, n: usize) -> PathBuf {
    for i in 0..n {
        env.write(
            &format!("{folder}/sub{}/note-{i:05}.md", i % 7),
            &format!("# Note {i}\n\nbody of note {i}\n"),
        );
    }
    env.path().join(folder)
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

/// Every entry under `root` (files, folders, symlinks) with its content, mode and mtime, by
/// path relative to `root`; paths starting with one of `skip` are left out. Two equal
/// snapshots mean nothing under `root` was created, deleted, written or touched.
pub fn tree_snapshot(root: &Path, skip: &[&str]) -> BTreeMap<String, String> {
    use std::os::unix::fs::MetadataExt;
    fn walk(root: &Path, dir: &Path, skip: &[&str], out: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            if skip.iter().any(|s| rel.starts_with(s)) {
                continue;
            }
            // SQLite may delete a -wal/-shm as a pool closes its last connection.
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let kind = if meta.file_type().is_symlink() {
                format!("link -> {:?}", std::fs::read_link(&path).expect("link"))
            } else if meta.is_dir() {
                "dir".to_owned()
            } else if meta.is_file() {
                use sha2::Digest;
                let bytes = std::fs::read(&path).unwrap_or_default();
                format!("file {:x}", sha2::Sha256::digest(&bytes))
            } else {
                "special".to_owned()
            };
            let mtime = if meta.is_dir() {
                // A folder's mtime changes when an entry comes or goes, which the entries
                // themselves show; lock files are created on first use and kept.
                String::new()
            } else {
                format!("{}.{}", meta.mtime(), meta.mtime_nsec())
            };
            out.insert(rel, format!("{kind} mode {:o} mtime {mtime}", meta.mode()));
            if meta.is_dir() {
                walk(root, &path, skip, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, skip, &mut out);
    out
}

/// The rows of state.db's registry and log tables, as text, for before/after comparisons.
pub fn db_rows(kb: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(
        kb.join(".openkb/state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("sqlite");
    let mut rows = Vec::new();
    for table in ["documents", "log", "meta"] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY rowid"))
            .expect("prepare");
        let columns = stmt.column_count();
        let mut q = stmt.query([]).expect("query");
        while let Some(row) = q.next().expect("row") {
            let cells: Vec<String> = (0..columns)
                .map(|i| format!("{:?}", row.get_ref(i).expect("cell")))
                .collect();
            rows.push(format!("{table}: {}", cells.join(" | ")));
        }
    }
    rows
}

/// A KB's files (but state.db and its WAL, compared by rows with [`db_rows`], and the lock
/// file) and registry, to assert a failed command changed nothing.
pub fn kb_snapshot(kb: &Path) -> (BTreeMap<String, String>, Vec<String>) {
    (
        tree_snapshot(kb, &[".openkb/state.db", ".openkb/ingest.lock"]),
        db_rows(kb),
    )
}

/// Paths a write command may change in any KB besides a document's own files: the database,
/// the lock file, the log page, openkb's staging area.
pub const BOOKKEEPING_CHANGES: &[&str] = &[
    ".openkb/state.db",
    ".openkb/ingest.lock",
    ".openkb/staging",
    "wiki/log.md",
];

/// `<dir>/canary`: files an attack could aim at (a page, a PDF, a source, a summary, a nested
/// folder), with old mtimes so that a touch would show.
pub fn make_canary(dir: &Path) -> PathBuf {
    let canary = dir.join("canary");
    for (rel, text) in [
        ("victim.md", "# victim\n"),
        ("victim.pdf", "%PDF victim\n"),
        ("sources/victim.md", "# source victim\n"),
        ("summaries/victim.md", "# summary victim\n"),
        ("deep/page.md", "[[summaries/victim]]\n"),
    ] {
        let path = canary.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        if !path.exists() {
            std::fs::write(&path, text).expect("write");
            let f = std::fs::File::options()
                .write(true)
                .open(&path)
                .expect("open");
            f.set_modified(
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000),
            )
            .expect("mtime");
        }
    }
    canary
}

/// A canary folder outside a KB plus tree snapshots (paths, content hashes, modes, mtimes,
/// symlink targets) of it and of the KB, taken when the guard is made. [`Guard::assert_only`]
/// then checks that nothing outside changed and nothing inside changed but the named paths.
pub struct Guard {
    pub canary: PathBuf,
    kb: PathBuf,
    canary_before: BTreeMap<String, String>,
    kb_before: BTreeMap<String, String>,
}

impl Guard {
    /// Make `<dir>/canary` (files an attack could aim at: a page, a PDF, a source, a summary,
    /// a nested folder; old mtimes, so a touch would show) and snapshot it and `kb`.
    pub fn new(dir: &Path, kb: &Path) -> Guard {
        let canary = make_canary(dir);
        let mut guard = Guard {
            canary_before: BTreeMap::new(),
            kb_before: BTreeMap::new(),
            canary,
            kb: kb.to_path_buf(),
        };
        guard.retake();
        guard
    }

    /// Snapshot again (after setting up the attack inside the KB).
    pub fn retake(&mut self) {
        self.canary_before = tree_snapshot(&self.canary, &[]);
        self.kb_before = tree_snapshot(&self.kb, &[]);
    }

    /// KB-relative paths created, deleted or changed since the snapshot.
    pub fn changed(&self) -> Vec<String> {
        let after = tree_snapshot(&self.kb, &[]);
        let mut keys: BTreeSet<&String> = self.kb_before.keys().collect();
        keys.extend(after.keys());
        keys.into_iter()
            .filter(|k| self.kb_before.get(*k) != after.get(*k))
            .cloned()
            .collect()
    }

    /// [`Guard::changed`] without the database, the lock file and the staging area, which
    /// every write command touches: the KB's files a command changed, sorted.
    pub fn changed_files(&self) -> Vec<String> {
        self.changed()
            .into_iter()
            .filter(|p| {
                ![".openkb/state.db", ".openkb/ingest.lock", ".openkb/staging"]
                    .iter()
                    .any(|b| p.starts_with(b))
            })
            .collect()
    }

    /// Nothing outside the KB changed. `context` is shown on failure.
    pub fn assert_outside_unchanged(&self, context: &str) {
        assert_eq!(
            tree_snapshot(&self.canary, &[]),
            self.canary_before,
            "something outside the KB changed:\n{context}"
        );
    }

    /// Nothing outside the KB changed; inside, only paths starting with one of `allowed` (and
    /// [`BOOKKEEPING_CHANGES`]) did. `context` is shown on failure (the commands' output).
    pub fn assert_only(&self, allowed: &[&str], context: &str) {
        self.assert_outside_unchanged(context);
        let unexpected: Vec<String> = self
            .changed()
            .into_iter()
            .filter(|p| {
                !allowed
                    .iter()
                    .chain(BOOKKEEPING_CHANGES)
                    .any(|a| p.starts_with(a))
            })
            .collect();
        assert!(
            unexpected.is_empty(),
            "KB paths changed that are not the document's own: {unexpected:?}\n{context}"
        );
    }
}
