//! Test-only fault injection, compiled in only with the cargo feature `fault-injection`.
//!
//! Crash and failure tests need a process to die, or a system call to fail, at an exact point:
//! a kill from outside cannot aim that well, and a real `EACCES` depends on who runs the test
//! (root reads through mode 000, so a permission test means something else in CI). The points
//! below are named places in the code; the switches are environment variables read once per
//! process, and only by builds with the feature. A release build (`cargo build --release`,
//! `cargo install`) has no such code at all: every function here is then an empty inline
//! function, and the variables mean nothing.
//!
//! A plain `cargo test` builds openkb with the feature: the package is its own dev-dependency
//! with `features = ["fault-injection"]` (Cargo.toml), and dev-dependencies are built only for
//! tests, examples and benchmarks. `openkb --version` says `(fault-injection)` when the
//! binary has it, which the integration tests check.
//!
//! | variable | effect |
//! | --- | --- |
//! | `OPENKB_TEST_ABORT_AT=<point>` | [`crash_point`]: abort the process there (no unwinding, no cleanup, like SIGKILL) |
//! | `OPENKB_TEST_RUN_AT=<point>`, `OPENKB_TEST_RUN=<sh command>` | [`run_point`]: run the command there and wait for it |
//! | `OPENKB_TEST_IO_FAULT=<op>:<ERRNO>:<path part>` | [`io`]: the `fsx` operation `op` (`read`, `create`, `read-dir`) on a path containing `<path part>` fails with `ERRNO` (`EACCES`, `EPERM`, `EIO`, `EROFS`, `ENOSPC`) |

use std::path::Path;

/// Whether this build has fault injection (shown by `openkb --version`).
pub const ENABLED: bool = cfg!(feature = "fault-injection");

/// Abort the process at `point` when `OPENKB_TEST_ABORT_AT` names it. Points: `add-commit`,
/// `remove-commit` (just before those commits), `migrate-rename` (between a migration's
/// commit and the rename of `hashes.json`), and each step of a move between backends
/// (`to-postgres-commit`, `-config`, `-set-aside`; `to-sqlite-commit`, `-config`, `-retire`:
/// see `state_move.rs`).
#[inline(always)]
pub(crate) fn crash_point(point: &str) {
    #[cfg(feature = "fault-injection")]
    if enabled::get().abort_at.as_deref() == Some(point) {
        std::process::abort();
    }
    let _ = point;
}

/// Run `OPENKB_TEST_RUN` with `sh -c` in the current folder when `OPENKB_TEST_RUN_AT` names
/// `point`, and wait for it: another process acting at exactly that moment (replacing
/// `state.db` just before a remove's commit, say, or ending the server session of a team
/// KB's lock). Points: `remove-commit`, `add-commit`.
#[inline(always)]
pub(crate) fn run_point(point: &str) {
    #[cfg(feature = "fault-injection")]
    if let (Some(at), Some(command)) = (&enabled::get().run_at, &enabled::get().run)
        && at == point
    {
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .status();
    }
    let _ = point;
}

/// The error `OPENKB_TEST_IO_FAULT` asks the operation `op` on `path` to fail with, if any.
#[inline(always)]
pub(crate) fn io(op: &str, path: &Path) -> std::io::Result<()> {
    #[cfg(feature = "fault-injection")]
    if let Some(fault) = &enabled::get().io {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_os_str().as_bytes();
        let part = fault.path_part.as_bytes();
        if fault.op == op && bytes.windows(part.len().max(1)).any(|w| w == part) {
            return Err(std::io::Error::from_raw_os_error(fault.errno));
        }
    }
    let _ = (op, path);
    Ok(())
}

#[cfg(feature = "fault-injection")]
mod enabled {
    use std::sync::OnceLock;

    pub(super) struct Switches {
        pub abort_at: Option<String>,
        pub run_at: Option<String>,
        pub run: Option<std::ffi::OsString>,
        pub io: Option<IoFault>,
    }

    pub(super) struct IoFault {
        pub op: String,
        pub errno: i32,
        pub path_part: String,
    }

    pub(super) fn get() -> &'static Switches {
        static SWITCHES: OnceLock<Switches> = OnceLock::new();
        SWITCHES.get_or_init(|| {
            let text = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            Switches {
                abort_at: text("OPENKB_TEST_ABORT_AT"),
                run_at: text("OPENKB_TEST_RUN_AT"),
                run: std::env::var_os("OPENKB_TEST_RUN"),
                io: text("OPENKB_TEST_IO_FAULT").map(|spec| parse_io(&spec)),
            }
        })
    }

    /// `<op>:<ERRNO>:<path part>`. A test that misspells it must fail loudly, not pass
    /// because nothing was injected.
    fn parse_io(spec: &str) -> IoFault {
        let mut parts = spec.splitn(3, ':');
        let (Some(op), Some(errno), Some(path_part)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("OPENKB_TEST_IO_FAULT={spec:?}: expected <op>:<ERRNO>:<path part>");
        };
        let errno = match errno {
            "EACCES" => libc::EACCES,
            "EPERM" => libc::EPERM,
            "EIO" => libc::EIO,
            "EROFS" => libc::EROFS,
            "ENOSPC" => libc::ENOSPC,
            other => panic!("OPENKB_TEST_IO_FAULT: unknown errno {other:?}"),
        };
        assert!(
            ["read", "create", "read-dir"].contains(&op),
            "OPENKB_TEST_IO_FAULT: unknown operation {op:?}"
        );
        IoFault {
            op: op.to_owned(),
            errno,
            path_part: path_part.to_owned(),
        }
    }
}
