//! The fsx primitives (atomic writes: old-or-new content, modes kept, no temp files left;
//! create-new, remove-if-exists, read-dir-if-exists, the walker, copy-while-hashing), and the
//! proof that test-only fault injection is in the binary `cargo test` runs and in no plain
//! build.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use openkb::fsx::{
    WalkStep, append, atomic_copy, atomic_write, copy_hashing, create_new, is_temp_name,
    read_dir_if_exists, remove_file_if_exists, walk, write_new,
};

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| is_temp_name(n))
        .collect()
}

#[test]
fn readers_see_old_or_new_content_never_a_mix() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("index.md"));
    let old = vec![b'a'; 256 * 1024];
    let new = vec![b'b'; 100 * 1024];
    atomic_write(&path, &old).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (path, stop, old, new) = (
            Arc::clone(&path),
            Arc::clone(&stop),
            old.clone(),
            new.clone(),
        );
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let seen = std::fs::read(&*path).unwrap();
                assert!(
                    seen == old || seen == new,
                    "torn read of {} bytes",
                    seen.len()
                );
                reads += 1;
            }
            reads
        })
    };
    for i in 0..200 {
        atomic_write(&path, if i % 2 == 0 { &new } else { &old }).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn an_existing_files_mode_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "model: a\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    atomic_write(&path, b"model: b\n").unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "model: b\n");
}

#[test]
fn a_symlinked_file_stays_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real.yaml");
    let link = dir.path().join("link.yaml");
    std::fs::write(&target, "a").unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    atomic_write(&link, b"b").unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "b");
}

#[test]
fn a_failed_write_leaves_the_target_and_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    // The target is a non-empty folder: rename must fail after the temp file was written.
    let target = dir.path().join("page.md");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), "x").unwrap();
    let err = atomic_write(&target, b"new").unwrap_err();
    assert!(err.to_string().contains("page.md"), "{err}");
    assert!(target.join("keep").exists());
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

#[test]
fn append_creates_with_header_once_and_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.md");
    append(&log, "# H\n\n", "one\n").unwrap();
    append(&log, "# H\n\n", "two\n").unwrap();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "# H\n\none\ntwo\n");
}

/// The mode a plain new file gets here (0666 minus this process's umask).
fn umask_default_mode(dir: &Path) -> u32 {
    let probe = dir.join("probe-for-umask");
    std::fs::File::create(&probe).unwrap();
    let mode = std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777;
    std::fs::remove_file(&probe).unwrap();
    mode
}

#[test]
fn new_files_get_the_umask_default_never_0600() {
    let dir = tempfile::tempdir().unwrap();
    let expected = umask_default_mode(dir.path());
    atomic_write(&dir.path().join("a.yaml"), b"a").unwrap();
    assert!(write_new(&dir.path().join("b.md"), b"b").unwrap());
    create_new(&dir.path().join("c.lock")).unwrap();
    let source = dir.path().join("source");
    std::fs::write(&source, "d").unwrap();
    atomic_copy(&source, &dir.path().join("d.md")).unwrap();
    for name in ["a.yaml", "b.md", "c.lock", "d.md"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, expected, "{name}: {mode:o}");
    }
}

#[test]
fn atomic_copy_replaces_keeping_the_mode_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let (source, target) = (dir.path().join("staged"), dir.path().join("sub/page.md"));
    std::fs::write(&source, "new content").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(&target, "old").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o604)).unwrap();
    atomic_copy(&source, &target).unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "new content");
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o604
    );
    assert!(leftovers(&dir.path().join("sub")).is_empty());
    // A missing source fails naming it, and the target keeps its content.
    let err = atomic_copy(&dir.path().join("gone"), &target).unwrap_err();
    assert!(err.to_string().contains("gone"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "new content");
    assert!(leftovers(&dir.path().join("sub")).is_empty());
}

#[test]
fn write_new_and_create_new_never_replace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.md");
    assert!(write_new(&path, b"first").unwrap());
    assert!(!write_new(&path, b"second").unwrap());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "first");
    let err = create_new(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    // Not through a dangling symlink either: that would create a file wherever it points.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
    assert!(create_new(&link).is_err());
    assert!(!dir.path().join("elsewhere").exists());
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn missing_is_an_answer_but_other_errors_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    assert!(read_dir_if_exists(&gone).unwrap().is_empty());
    assert!(!remove_file_if_exists(&gone).unwrap());
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert_eq!(read_dir_if_exists(dir.path()).unwrap().len(), 1);
    // A file where a folder is expected is no "missing folder".
    let err = read_dir_if_exists(&file).unwrap_err();
    assert!(err.to_string().contains("file"), "{err}");
    assert!(remove_file_if_exists(&file).unwrap());
    assert!(!file.exists());
    // A folder is not a file to remove.
    std::fs::create_dir(&file).unwrap();
    assert!(remove_file_if_exists(&file).is_err());
}

#[test]
fn walk_does_not_follow_symlinks_and_can_skip_folders() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for rel in ["a/x.md", "a/b/y.md", "skip/z.md"] {
        std::fs::create_dir_all(root.join(rel).parent().unwrap()).unwrap();
        std::fs::write(root.join(rel), rel).unwrap();
    }
    std::os::unix::fs::symlink(root.join("a"), root.join("a/b/loop")).unwrap();
    let mut seen = Vec::new();
    walk(root, "", &mut |rel, _| {
        seen.push(rel.to_owned());
        match rel {
            "skip/" => WalkStep::Skip,
            _ => WalkStep::Continue,
        }
    })
    .unwrap();
    seen.sort();
    assert_eq!(
        seen,
        ["a/", "a/b/", "a/b/loop", "a/b/y.md", "a/x.md", "skip/"],
        "a symlinked folder is an entry, never descended"
    );
    walk(root, "missing", &mut |_, _| {
        panic!("a missing folder is empty")
    })
    .unwrap();
}

#[test]
fn copy_hashing_copies_and_hashes_what_it_copied() {
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (dir.path().join("big.pdf"), dir.path().join("copy"));
    let data: Vec<u8> = (0..(5 * 64 * 1024 + 3)).map(|i| (i % 253) as u8).collect();
    std::fs::write(&from, &data).unwrap();
    let hash = copy_hashing(&from, &to).unwrap();
    assert_eq!(hash, openkb::hash::sha256_hex(&data));
    assert_eq!(std::fs::read(&to).unwrap(), data);
    // The destination must be new: an existing file is never overwritten.
    let err = copy_hashing(&from, &to).unwrap_err();
    assert!(err.to_string().contains("copy"), "{err}");
}

/// The binary the integration tests run was built with fault injection (a plain `cargo test`
/// turns it on through the package's dev-dependency on itself); without it every crash and
/// injected-error test would run against a binary that ignores the switches.
#[test]
fn the_binary_under_test_has_fault_injection() {
    let out = crate::harness::clean(crate::harness::BIN)
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(version.contains("(fault-injection)"), "{version}");
    // And the switch really acts: an injected EACCES at reading the KB's folder.
    let dir = tempfile::tempdir().unwrap();
    let kb = dir.path().join("kb");
    let run = |args: &[&str], fault: Option<&str>| {
        let mut cmd = crate::harness::openkb(dir.path(), dir.path());
        cmd.arg("--kb-dir").arg(&kb).args(args);
        if let Some(fault) = fault {
            cmd.env("OPENKB_TEST_IO_FAULT", fault);
        }
        cmd.output().unwrap()
    };
    std::fs::create_dir(&kb).unwrap();
    assert!(
        run(&["init", "--model", "m", "--language", "en"], None)
            .status
            .success()
    );
    let docs = dir.path().join("in");
    std::fs::create_dir(&docs).unwrap();
    std::fs::write(docs.join("a.md"), "# a\n").unwrap();
    let out = run(&["add", docs.to_str().unwrap()], Some("read:EIO:in/a.md"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("a.md") && stderr.contains("Input/output error"),
        "{stderr}"
    );
}

/// What `cargo build` / `cargo install` resolve for this package: no features. `cargo tree`
/// runs Cargo's own feature resolver without building anything; the control (dev-dependencies
/// included, as for `cargo test`) shows the check can see the feature when it is there.
#[test]
fn a_plain_build_has_no_fault_injection() {
    let features = |edges: &str| {
        let out = std::process::Command::new(env!("CARGO"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "tree",
                "--offline",
                "--depth",
                "0",
                "--format",
                "{p} [{f}]",
                "-e",
                edges,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let plain = features("no-dev");
    assert!(
        plain.starts_with("openkb ") && plain.ends_with(" []"),
        "{plain}"
    );
    let for_tests = features("normal,dev");
    assert!(for_tests.ends_with("[fault-injection]"), "{for_tests}");
}

/// Settings are read once, by the command line (`settings.rs`); test switches only by test
/// builds (`faults.rs`). Any other `env::var` in the library is a setting read deep inside a
/// layer, where a program embedding openkb cannot see or override it.
#[test]
fn the_library_reads_no_environment_variable() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if !rel.ends_with(".rs")
                || ["settings.rs", "faults.rs"].contains(&rel.as_str())
                || rel.ends_with("/tests.rs")
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests may set up their own processes' environment.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (n, line) in code.lines().enumerate() {
                if line.contains("env::var") {
                    offenders.push(format!("src/{rel}:{}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}
