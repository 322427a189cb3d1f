//! Atomic writes: old-or-new content, modes kept, no temp files left.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use openkb::fsx::{append, atomic_write, is_temp_name};

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
