//! The KB flock: re-entrancy, the upgrade error, sharing, and exclusion between threads and
//! processes (including a python3 process holding the lock the way the Python tool does).

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::harness::{DEADLINE, PythonLockHolder};
use openkb::Error;
use openkb::lock::{self, LockMode, acquire_with_timeout, held_mode};

const SHORT: Option<Duration> = Some(Duration::from_millis(300));

fn take(path: &Path, mode: LockMode) -> openkb::Result<lock::LockGuard> {
    acquire_with_timeout(path, mode, path.parent().unwrap(), SHORT)
}

#[test]
fn locks_are_reentrant_within_a_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".openkb/ingest.lock");
    let outer = take(&path, LockMode::Exclusive).unwrap();
    assert!(outer.is_outermost());
    let inner = take(&path, LockMode::Exclusive).unwrap();
    assert!(!inner.is_outermost());
    let nested_read = take(&path, LockMode::Shared).unwrap();
    drop(inner);
    drop(nested_read);
    assert_eq!(held_mode(&path), Some(LockMode::Exclusive));
    drop(outer);
    assert_eq!(held_mode(&path), None);
    assert!(path.exists(), "the lock file is never deleted");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

    let read = take(&path, LockMode::Shared).unwrap();
    let read_again = take(&path, LockMode::Shared).unwrap();
    drop(read_again);
    drop(read);
}

#[test]
fn upgrading_a_shared_lock_is_an_error_not_a_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ingest.lock");
    // Asked without a timeout, on a thread: a deadlock would block it forever, and the test
    // fails after the harness's deadline instead of hanging.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _read = take(&path, LockMode::Shared).unwrap();
        let upgrade = acquire_with_timeout(&path, LockMode::Exclusive, &path, None);
        let _ = tx.send(upgrade.map(drop));
    });
    let err = rx
        .recv_timeout(DEADLINE)
        .expect("upgrading a shared lock blocks: a deadlock")
        .unwrap_err();
    assert!(matches!(err, Error::LockUpgrade { .. }), "{err}");
}

#[test]
fn shared_locks_are_held_together_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("ingest.lock"));
    let barrier = Arc::new(Barrier::new(3));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (path, barrier) = (Arc::clone(&path), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let guard = take(&path, LockMode::Shared).expect("shared lock");
                // All three hold it at this point.
                barrier.wait();
                drop(guard);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn exclusive_lock_excludes_other_threads() {
    // Each thread increments a counter file under the lock; a lost update would show.
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("ingest.lock"));
    let counter = Arc::new(dir.path().join("counter"));
    std::fs::write(&*counter, "0").unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (path, counter) = (Arc::clone(&path), Arc::clone(&counter));
            std::thread::spawn(move || {
                for _ in 0..10 {
                    let _guard =
                        acquire_with_timeout(&path, LockMode::Exclusive, &path, None).unwrap();
                    let n: u32 = std::fs::read_to_string(&*counter).unwrap().parse().unwrap();
                    std::thread::yield_now();
                    std::fs::write(&*counter, (n + 1).to_string()).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(std::fs::read_to_string(&*counter).unwrap(), "80");
}

#[test]
fn a_python_flock_holder_excludes_openkb_until_it_dies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ingest.lock");
    let holder = PythonLockHolder::hold(&path, true);
    let err = take(&path, LockMode::Shared).unwrap_err();
    assert!(
        matches!(err, Error::LockTimeout { seconds, .. } if seconds == 0.3),
        "{err}"
    );
    assert!(err.to_string().contains("OPENKB_LOCK_TIMEOUT"), "{err}");
    assert_eq!(err.exit_code(), openkb::error::exit::BUSY);
    // A killed holder's lock is released by the kernel.
    holder.release();
    let _guard = take(&path, LockMode::Exclusive).unwrap();
}

#[test]
fn a_python_shared_holder_allows_readers_but_not_writers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ingest.lock");
    let _holder = PythonLockHolder::hold(&path, false);
    drop(take(&path, LockMode::Shared).unwrap());
    assert!(matches!(
        take(&path, LockMode::Exclusive),
        Err(Error::LockTimeout { .. })
    ));
}

#[test]
fn openkb_holds_the_lock_against_python() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ingest.lock");
    let _guard = take(&path, LockMode::Exclusive).unwrap();
    let probe = crate::harness::clean("python3")
        .arg("-c")
        .arg(
            "import fcntl, sys\n\
             f = open(sys.argv[1], 'a+')\n\
             try:\n    fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB); print('ACQUIRED')\n\
             except BlockingIOError:\n    print('BLOCKED')\n",
        )
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "BLOCKED");
}
