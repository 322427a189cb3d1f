//! The settings a user gives openkb from outside its files: environment variables, read once,
//! by the command line (`cli::run`), validated there, and carried down by [`crate::Kb`]. The
//! library itself reads no environment variable, so a program embedding it decides its own
//! policy (`Settings::default()` is the safe one: wait for a lock as long as it takes, refuse
//! to write on a network filesystem) and a setting cannot change behaviour deep inside a
//! layer where nobody looks for it. (Test-only switches live in [`crate::faults`], compiled
//! into test builds only.)
//!
//! | variable | field | meaning |
//! | --- | --- | --- |
//! | `OPENKB_LOCK_TIMEOUT` | [`Settings::lock`] | seconds to wait for a busy KB lock (0 to a week); unset waits as long as it takes |
//! | `OPENKB_HOOK_LOCK` | [`Settings::lock`] | set by openkb for its compile hook: the lock its parent holds, so a nested openkb refuses at once |
//! | `OPENKB_NETWORK_FS=single-host` | [`Settings::fs`] | allow writing a KB on a network filesystem, in SQLite's rollback-journal mode |
//! | `OPENKB_FS_TYPE` | [`Settings::fs`] | testing and diagnosis: the filesystem type to assume instead of the detected one |
//! | `OPENKB_WATCH_DEBOUNCE_MS` | [`Settings::watch_debounce`] | testing: `watch`'s debounce (default 2 s) |
//! | `HOME` | [`Settings::home`] | where `.config/openkb/global.yaml` and `global.lock` live |
//! | `OPENKB_STATE_URL` | [`Settings::state`] | a team KB's PostgreSQL server (see `state_url.rs`) |
//! | `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGPASSFILE` | [`Settings::state`] | what `OPENKB_STATE_URL` leaves out, as libpq reads them |
//!
//! `OPENKB_DIR` (the KB, like `--kb-dir`) is an argument, parsed by clap with the others.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::lock::{HOOK_LOCK_ENV, LOCK_TIMEOUT_ENV, LockWait};
use crate::netfs::{FS_TYPE_ENV, FsPolicy, NETWORK_FS_ENV};
use crate::state_url::StateEnv;

pub const WATCH_DEBOUNCE_ENV: &str = "OPENKB_WATCH_DEBOUNCE_MS";

/// Every setting, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// How to wait for a busy KB or global lock.
    pub lock: LockWait,
    /// What to do on a network filesystem, and which filesystem to assume.
    pub fs: FsPolicy,
    /// `watch`'s debounce; `None` for the default.
    pub watch_debounce: Option<Duration>,
    /// `HOME`, where `.config/openkb/` is; `None` when unset or empty (commands that need
    /// global.yaml then say to set it).
    pub home: Option<PathBuf>,
    /// Where a team KB's state server is.
    pub state: StateEnv,
}

impl Settings {
    /// The settings of this process's environment. A value that does not parse is an error
    /// naming the variable and what it accepts: a typo must not silently mean the default.
    pub fn from_env() -> Result<Settings> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// The settings `lookup` gives, by variable name (for tests, and for embedders that keep
    /// their configuration elsewhere).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Settings> {
        Ok(Settings {
            lock: LockWait {
                timeout: crate::lock::parse_lock_timeout_env(lookup(LOCK_TIMEOUT_ENV))?,
                hook_lock: lookup(HOOK_LOCK_ENV).filter(|v| !v.is_empty()),
            },
            fs: FsPolicy {
                single_host: crate::netfs::parse_network_fs(lookup(NETWORK_FS_ENV))?,
                fs_type: lookup(FS_TYPE_ENV)
                    .map(|v| v.to_string_lossy().trim().to_owned())
                    .filter(|v| !v.is_empty()),
            },
            watch_debounce: parse_debounce(lookup(WATCH_DEBOUNCE_ENV))?,
            home: lookup("HOME").filter(|v| !v.is_empty()).map(PathBuf::from),
            state: StateEnv::from_lookup(&lookup)?,
        })
    }
}

fn parse_debounce(raw: Option<OsString>) -> Result<Option<Duration>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match raw.to_str().and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(ms) if ms <= 3_600_000 => Ok(Some(Duration::from_millis(ms))),
        _ => Err(Error::Invalid(format!(
            "{WATCH_DEBOUNCE_ENV}={:?} is not a number of milliseconds from 0 to 3600000",
            crate::names::truncate_bytes(&raw.to_string_lossy(), 64)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Settings> {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Settings::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn nothing_set_is_the_safe_default() {
        assert_eq!(from(&[]).unwrap(), Settings::default());
        assert_eq!(from(&[]).unwrap().lock.timeout, None);
        assert!(!from(&[]).unwrap().fs.single_host);
    }

    #[test]
    fn values_are_parsed_and_bad_ones_name_the_variable() {
        let s = from(&[
            ("OPENKB_LOCK_TIMEOUT", "0.5"),
            ("OPENKB_NETWORK_FS", "single-host"),
            ("OPENKB_FS_TYPE", " nfs "),
            ("OPENKB_WATCH_DEBOUNCE_MS", "20"),
        ])
        .unwrap();
        assert_eq!(s.lock.timeout, Some(Duration::from_millis(500)));
        assert!(s.fs.single_host);
        assert_eq!(s.fs.fs_type.as_deref(), Some("nfs"));
        assert_eq!(s.watch_debounce, Some(Duration::from_millis(20)));
        for (name, value) in [
            ("OPENKB_LOCK_TIMEOUT", "soon"),
            ("OPENKB_NETWORK_FS", "yes"),
            ("OPENKB_WATCH_DEBOUNCE_MS", "-1"),
        ] {
            let err = from(&[(name, value)]).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }
}
