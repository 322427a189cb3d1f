//! File locks: the KB lock (`.openkb/ingest.lock`) and the global lock
//! (`~/.config/openkb/global.lock`).
//!
//! Both are BSD `flock(2)` locks on an empty file, the protocol of the Python openkb tool, so
//! that the two tools exclude each other on one KB. `flock` belongs to an open file
//! description: two threads of one process that each open the file conflict exactly as two
//! processes do, so no in-process reader/writer lock is needed on top of it. A dead holder's
//! lock is released by the kernel. The lock file is never deleted: deleting it would let a new
//! process lock a fresh inode while an old one still holds the old.
//!
//! Re-entrancy is per thread (a thread-local table of held locks): a nested acquisition
//! only bumps a counter. A thread that holds the lock shared and asks for it exclusive gets
//! [`Error::LockUpgrade`]: upgrading in place would deadlock two such threads.
//!
//! A busy lock is announced once on stderr ("waiting for another openkb process on ...") and
//! then waited for; `OPENKB_LOCK_TIMEOUT` (seconds), read by the command line into a
//! [`LockWait`], bounds the wait.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::marker::PhantomData;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};

/// Environment variable bounding how long a command waits for a busy lock, in seconds.
pub const LOCK_TIMEOUT_ENV: &str = "OPENKB_LOCK_TIMEOUT";

/// Set in a compile hook's environment to `<pid>:<lock path>`: the openkb process that runs
/// the hook and the lock it holds meanwhile. An openkb started by the hook that finds that
/// lock busy while that process lives is waiting for its own parent: it refuses at once
/// ([`Error::NestedInHook`]) instead of hanging forever.
pub const HOOK_LOCK_ENV: &str = "OPENKB_HOOK_LOCK";

/// The value of [`HOOK_LOCK_ENV`] for a hook run by `pid` under `lock_path`.
pub fn hook_marker(pid: u32, lock_path: &Path) -> std::ffi::OsString {
    let mut marker = std::ffi::OsString::from(format!("{pid}:"));
    marker.push(lock_path);
    marker
}

/// How to wait for a busy lock: the part of [`crate::settings::Settings`] this module uses.
/// The default waits as long as it takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockWait {
    /// `OPENKB_LOCK_TIMEOUT`: `None` waits as long as it takes.
    pub timeout: Option<Duration>,
    /// `OPENKB_HOOK_LOCK` as openkb set it for a compile hook ([`hook_marker`]).
    pub hook_lock: Option<std::ffi::OsString>,
}

/// The holder named by the hook marker when it names `lock_path` and is still alive.
pub(crate) fn hook_holder(marker: Option<&std::ffi::OsStr>, lock_path: &Path) -> Option<u32> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = marker?.as_bytes();
    let colon = bytes.iter().position(|&b| b == b':')?;
    let pid: u32 = std::str::from_utf8(&bytes[..colon]).ok()?.parse().ok()?;
    let named = Path::new(std::ffi::OsStr::from_bytes(&bytes[colon + 1..]));
    if named != lock_path || pid == std::process::id() {
        return None;
    }
    let pid_t = libc::pid_t::try_from(pid).ok().filter(|p| *p > 0)?;
    // SAFETY: signal 0 only checks that the process exists; it sends nothing.
    let alive = unsafe { libc::kill(pid_t, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    alive.then_some(pid)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// How many times one thread holds a lock in each mode: a nested acquisition only counts, and
/// the lock itself goes with the last release. Shared by the flock and the team lock.
#[derive(Debug)]
pub(crate) struct Depth {
    exclusive: u32,
    shared: u32,
}

impl Depth {
    /// The first acquisition, in `mode`.
    pub(crate) fn first(mode: LockMode) -> Depth {
        Depth {
            exclusive: u32::from(mode == LockMode::Exclusive),
            shared: u32::from(mode == LockMode::Shared),
        }
    }

    /// Count a nested acquisition; false (nothing counted) for exclusive while only shared is
    /// held: upgrading in place would deadlock two such threads.
    pub(crate) fn enter(&mut self, mode: LockMode) -> bool {
        match mode {
            LockMode::Exclusive if self.exclusive == 0 => return false,
            LockMode::Exclusive => self.exclusive += 1,
            LockMode::Shared => self.shared += 1,
        }
        true
    }

    /// Count a release; true when it was the last.
    pub(crate) fn leave(&mut self, mode: LockMode) -> bool {
        match mode {
            LockMode::Exclusive => self.exclusive -= 1,
            LockMode::Shared => self.shared -= 1,
        }
        self.exclusive == 0 && self.shared == 0
    }

    /// The strongest mode held.
    pub(crate) fn mode(&self) -> LockMode {
        if self.exclusive > 0 {
            LockMode::Exclusive
        } else {
            LockMode::Shared
        }
    }
}

struct Held {
    /// Keeps the open file description (and so the flock) alive.
    _file: File,
    depth: Depth,
}

thread_local! {
    static HELD: RefCell<HashMap<PathBuf, Held>> = RefCell::new(HashMap::new());
}

/// A held lock. Dropping it releases one level of re-entrancy; the flock goes with the last.
/// Not `Send`: re-entrancy is tracked per thread.
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard {
    path: PathBuf,
    mode: LockMode,
    first: bool,
    _not_send: PhantomData<*const ()>,
}

impl LockGuard {
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// True when this guard took the OS lock (not a nested re-entry). Recovery of interrupted
    /// work runs only then.
    pub fn is_outermost(&self) -> bool {
        self.first
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        HELD.with(|held| {
            let mut held = held.borrow_mut();
            if let Some(entry) = held.get_mut(&self.path)
                && entry.depth.leave(self.mode)
            {
                // Closing the file releases the flock.
                held.remove(&self.path);
            }
        });
    }
}

/// What the current thread holds on `lock_path`, if anything.
pub fn held_mode(lock_path: &Path) -> Option<LockMode> {
    HELD.with(|held| held.borrow().get(lock_path).map(|h| h.depth.mode()))
}

/// Acquire `lock_path` in `mode`, waiting as long as it takes. `subject` is what the waiting
/// message names (the KB folder, or the global config).
pub fn acquire(lock_path: &Path, mode: LockMode, subject: &Path) -> Result<LockGuard> {
    acquire_waiting(lock_path, mode, subject, &LockWait::default())
}

/// [`acquire`] with an explicit bound on the wait (`None`: wait as long as it takes).
pub fn acquire_with_timeout(
    lock_path: &Path,
    mode: LockMode,
    subject: &Path,
    timeout: Option<Duration>,
) -> Result<LockGuard> {
    acquire_waiting(
        lock_path,
        mode,
        subject,
        &LockWait {
            timeout,
            hook_lock: None,
        },
    )
}

/// Acquire `lock_path` in `mode`, waiting as `wait` says (see the module docs): a busy lock
/// held by the openkb that runs this process as its compile hook is refused at once
/// ([`Error::NestedInHook`]); else the wait is said on stderr and bounded by the timeout.
pub fn acquire_waiting(
    lock_path: &Path,
    mode: LockMode,
    subject: &Path,
    wait: &LockWait,
) -> Result<LockGuard> {
    acquire_inner(lock_path, mode, subject, wait, true)
}

/// [`acquire_waiting`] that never makes a blocking `flock` call: it retries `try_lock` until
/// the lock is free or the wait runs out. Team mode takes the flock this way, beside the
/// PostgreSQL lock: a blocking `flock` on a network filesystem can hang forever.
pub fn acquire_polling(
    lock_path: &Path,
    mode: LockMode,
    subject: &Path,
    wait: &LockWait,
) -> Result<LockGuard> {
    acquire_inner(lock_path, mode, subject, wait, false)
}

fn acquire_inner(
    lock_path: &Path,
    mode: LockMode,
    subject: &Path,
    wait: &LockWait,
    blocking: bool,
) -> Result<LockGuard> {
    let timeout = wait.timeout;
    if let Some(guard) = reenter(lock_path, mode)? {
        return Ok(guard);
    }
    let file = open_lock_file(lock_path)?;
    let try_once = |file: &File| match mode {
        LockMode::Exclusive => file.try_lock(),
        LockMode::Shared => file.try_lock_shared(),
    };
    match try_once(&file) {
        Ok(()) => {}
        Err(TryLockError::Error(e)) => return Err(Error::io("cannot lock", lock_path, e)),
        Err(TryLockError::WouldBlock) => {
            if let Some(holder) = hook_holder(wait.hook_lock.as_deref(), lock_path) {
                return Err(Error::NestedInHook {
                    kb: subject.to_path_buf(),
                    holder,
                });
            }
            crate::notice::note(&format!(
                "waiting for another openkb process on {} (lock {})",
                subject.display(),
                lock_path.display()
            ));
            match timeout {
                None if blocking => match mode {
                    LockMode::Exclusive => file.lock(),
                    LockMode::Shared => file.lock_shared(),
                }
                .with_path("cannot lock", lock_path)?,
                // A deadline `Instant` cannot hold: polled as long as it takes.
                None => wait_with_deadline(&file, lock_path, subject, Duration::MAX, try_once)?,
                Some(timeout) => wait_with_deadline(&file, lock_path, subject, timeout, try_once)?,
            }
        }
    }
    HELD.with(|held| {
        held.borrow_mut().insert(
            lock_path.to_path_buf(),
            Held {
                _file: file,
                depth: Depth::first(mode),
            },
        )
    });
    Ok(LockGuard {
        path: lock_path.to_path_buf(),
        mode,
        first: true,
        _not_send: PhantomData,
    })
}

fn reenter(lock_path: &Path, mode: LockMode) -> Result<Option<LockGuard>> {
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        let Some(entry) = held.get_mut(lock_path) else {
            return Ok(None);
        };
        if !entry.depth.enter(mode) {
            return Err(Error::LockUpgrade {
                path: lock_path.to_path_buf(),
            });
        }
        Ok(Some(LockGuard {
            path: lock_path.to_path_buf(),
            mode,
            first: false,
            _not_send: PhantomData,
        }))
    })
}

fn open_lock_file(lock_path: &Path) -> Result<File> {
    if let Some(parent) = lock_path.parent() {
        std::fs::create_dir_all(parent).with_path("cannot create folder", parent)?;
    }
    // Opened for append and never truncated: the file stays empty and is shared with the
    // Python tool, which opens it "a+".
    // O_NOFOLLOW: a symlinked lock file could make openkb create a file outside the KB.
    match OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o666)
        .custom_flags(libc::O_NOFOLLOW)
        .open(lock_path)
    {
        Ok(file) => Ok(file),
        // A read-only KB (modes, an immutable flag, a read-only mount): flock needs no write
        // access, so an existing lock file is locked through a read-only descriptor and reads
        // keep working; a write fails later, naming the file it cannot write.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ) && lock_path.is_file() =>
        {
            File::open(lock_path).with_path("cannot open lock file", lock_path)
        }
        Err(e) => Err(Error::io("cannot open lock file", lock_path, e)),
    }
}

fn wait_with_deadline(
    file: &File,
    lock_path: &Path,
    subject: &Path,
    timeout: Duration,
    try_once: impl Fn(&File) -> Result<(), TryLockError>,
) -> Result<()> {
    // `None` (a deadline past what `Instant` can hold) waits as long as it takes; with
    // LOCK_TIMEOUT_MAX_SECS it does not happen, but an addition that can panic is no bound.
    let deadline = Instant::now().checked_add(timeout);
    let mut pause = Duration::from_millis(5);
    loop {
        match try_once(file) {
            Ok(()) => return Ok(()),
            Err(TryLockError::Error(e)) => return Err(Error::io("cannot lock", lock_path, e)),
            Err(TryLockError::WouldBlock) => {}
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(Error::LockTimeout {
                kb: subject.to_path_buf(),
                seconds: timeout.as_secs_f64(),
            });
        }
        let left = deadline.map_or(pause, |d| d.saturating_duration_since(now));
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// The longest wait `OPENKB_LOCK_TIMEOUT` may ask for: a week is already "wait for a
/// person"; anything longer is a typo, and unset means forever.
pub const LOCK_TIMEOUT_MAX_SECS: f64 = 7.0 * 24.0 * 3600.0;

/// The value of `OPENKB_LOCK_TIMEOUT` (if set) as a duration; unset or empty means wait
/// forever.
pub fn parse_lock_timeout_env(raw: Option<std::ffi::OsString>) -> Result<Option<Duration>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match raw.into_string() {
        Ok(raw) => parse_lock_timeout(&raw),
        Err(raw) => Err(Error::Invalid(format!(
            "{LOCK_TIMEOUT_ENV}={raw:?} is not a number of seconds (e.g. 30 or 0.5); \
             unset it to wait as long as it takes"
        ))),
    }
}

/// The value of `OPENKB_LOCK_TIMEOUT`: seconds from 0 to [`LOCK_TIMEOUT_MAX_SECS`].
pub fn parse_lock_timeout(raw: &str) -> Result<Option<Duration>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    // Shown with {:?} and cut: the value is the user's, of any length and content.
    let shown = crate::names::truncate_bytes(raw, 64);
    match raw.parse::<f64>() {
        Ok(secs) if (0.0..=LOCK_TIMEOUT_MAX_SECS).contains(&secs) => Ok(Some(
            Duration::try_from_secs_f64(secs.abs()).unwrap_or(Duration::ZERO),
        )),
        Ok(secs) if secs.is_finite() && secs > 0.0 => Err(Error::Invalid(format!(
            "{LOCK_TIMEOUT_ENV}={shown:?} is too long a wait (at most {LOCK_TIMEOUT_MAX_SECS} \
             seconds, a week); unset it to wait as long as it takes"
        ))),
        _ => Err(Error::Invalid(format!(
            "{LOCK_TIMEOUT_ENV}={shown:?} is not a number of seconds from 0 to \
             {LOCK_TIMEOUT_MAX_SECS} (e.g. 30 or 0.5); unset it to wait as long as it takes"
        ))),
    }
}
