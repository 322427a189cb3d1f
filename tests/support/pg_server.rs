//! A real PostgreSQL server for the tests, started from the installed binaries (std and libc
//! only, so that the integration tests and the library's unit tests can both include this file).
//!
//! One server per test binary, started on first use by [`server`]: `initdb -A trust -U openkb
//! --no-sync` into a temp folder, then `postgres` with its Unix socket in that folder (and
//! loopback TCP on a free port), `fsync=off`. Tests that disrupt the server (restart, stop) take
//! their own with [`Server::start_private`], so they never cut the connections of tests running
//! beside them. Every test that needs a server and cannot get one panics with the reason: a
//! PostgreSQL test never skips.
//!
//! Where the binaries come from: `OPENKB_TEST_PGBIN` (a folder holding `initdb` and `postgres`;
//! an unusable value is an error, never a silent fallback), else `initdb` on `$PATH`, else the
//! newest `/usr/lib/postgresql/*/bin` (Debian's layout).
//!
//! Why the server runs as a child of a dedicated thread rather than under `pg_ctl start`:
//! `pg_ctl` detaches the server into its own session, so a test binary that is killed (a CI
//! timeout, Ctrl-C) would leave it running. Here the postmaster is started with a parent-death
//! signal (`SIGQUIT`, PostgreSQL's immediate shutdown), and the kernel sends that signal when the
//! *thread* that spawned it ends: hence one long-lived control thread per server, which also
//! performs restarts. A normal exit of the test binary stops the shared server from an `atexit`
//! handler and removes its folder; a killed binary's folder is removed by the next run's
//! [`sweep_stale`].
//!
//! When run as root (`initdb` refuses root), `initdb` and `postgres` run as the `postgres`
//! system user. The user switch is done by `std`'s `CommandExt::uid`/`gid` rather than
//! `runuser`/`setpriv`: no wrapper process stands between the test and the postmaster, and the
//! parent-death signal set after the switch survives the `exec`.
#![allow(dead_code)]

use std::ffi::CString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

/// The role every test connects as (made by `initdb -U`).
pub const ROLE: &str = "openkb";
/// The `application_name` of the harness's own `psql` sessions, so that filters can leave them out.
pub const HARNESS_APP: &str = "openkb-test-harness";
/// Folders of this harness in the temp dir start with this.
const DIR_PREFIX: &str = "openkb-pg-";
/// The line PostgreSQL logs once it accepts connections (messages are forced to English).
const READY_LINE: &str = "database system is ready to accept connections";

static SHARED: OnceLock<Result<Server, String>> = OnceLock::new();

/// The server shared by every test of this binary, started on first use and stopped when the
/// binary exits. Panics with the reason when it cannot be started.
pub fn server() -> &'static Server {
    let shared = SHARED.get_or_init(|| {
        let server = Server::start_private()?;
        // SAFETY: registering a plain `extern "C" fn` with no captured state.
        if unsafe { libc::atexit(stop_shared_server) } != 0 {
            return Err("atexit refused to register the server's shutdown".to_string());
        }
        Ok(server)
    });
    match shared {
        Ok(server) => server,
        Err(reason) => panic!("the test PostgreSQL server could not be started: {reason}"),
    }
}

extern "C" fn stop_shared_server() {
    if let Some(Ok(server)) = SHARED.get() {
        server.shutdown();
    }
}

/// A running PostgreSQL server in its own temp folder (`data/`, `sock/`, `server.log`).
pub struct Server {
    root: PathBuf,
    bin: PathBuf,
    port: u16,
    postmaster_pid: AtomicU32,
    control: Mutex<Option<Control>>,
}

struct Control {
    commands: mpsc::Sender<(Request, mpsc::Sender<Result<u32, String>>)>,
    thread: JoinHandle<()>,
}

enum Request {
    RestartImmediate,
    StopImmediate,
    Start,
    Exit,
}

/// How the server processes are launched: which binaries, which user, which folder.
#[derive(Clone)]
struct Launch {
    bin: PathBuf,
    root: PathBuf,
    run_as: Option<(u32, u32)>,
}

impl Server {
    /// A server of the caller's own, stopped and removed when dropped. For tests that restart
    /// or stop the server; everything else uses the shared [`server`].
    pub fn start_private() -> Result<Server, String> {
        Server::start_prepared(|_| Ok(()))
    }

    /// [`Server::start_private`], with `prepare` run on the new cluster before it starts.
    fn start_prepared(
        prepare: impl FnOnce(&Launch) -> Result<(), String>,
    ) -> Result<Server, String> {
        let bin = find_bin_dir()?;
        let run_as = server_user()?;
        sweep_stale();
        let root = make_root(run_as)?;
        let launch = Launch {
            bin: bin.clone(),
            root: root.clone(),
            run_as,
        };
        let started = initdb(&launch)
            .and_then(|()| prepare(&launch))
            .and_then(|()| start_control(launch));
        match started {
            Ok((control, port, pid)) => Ok(Server {
                root,
                bin,
                port,
                postmaster_pid: AtomicU32::new(pid),
                control: Mutex::new(Some(control)),
            }),
            Err(reason) => {
                let _ = fs::remove_dir_all(&root);
                Err(reason)
            }
        }
    }

    /// An `OPENKB_STATE_URL` value (libpq key=value form) for the `postgres` database over the
    /// Unix socket.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The same for another database of this server (see [`Server::create_database`]).
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "host={} port={} user={ROLE} dbname={database}",
            self.socket_dir().display(),
            self.port
        )
    }

    /// A `postgresql://` URL over loopback TCP, for what only TCP has (keepalives).
    pub fn tcp_url(&self, database: &str) -> String {
        format!("postgresql://{ROLE}@127.0.0.1:{}/{database}", self.port)
    }

    /// The folder holding the server's Unix socket (libpq's `host` / `PGHOST`).
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("sock")
    }

    /// The folder of the PostgreSQL binaries in use (`psql`, `pg_dump`, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder of this server: `data/`, `sock/`, `server.log`. Removed when it stops.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The process id of the running postmaster.
    pub fn postmaster_pid(&self) -> u32 {
        self.postmaster_pid.load(Ordering::SeqCst)
    }

    /// The server's log so far (for assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
    }

    /// A new, empty database with a unique name; returns its name (see [`Server::url_for`]).
    pub fn create_database(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        self.psql(&format!("CREATE DATABASE {name}"));
        name
    }

    /// Runs SQL with `psql` in the `postgres` database and returns its unaligned, tuples-only
    /// output (fields separated by `|`), trimmed. Panics with psql's error when it fails.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// [`Server::psql`] in another database.
    pub fn psql_in(&self, database: &str, sql: &str) -> String {
        match self.try_psql_in(database, sql) {
            Ok(out) => out,
            Err(error) => panic!("psql failed on {database}: {error}\nSQL: {sql}"),
        }
    }

    /// [`Server::psql_in`] that returns psql's error instead of panicking.
    pub fn try_psql_in(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = self
            .psql_command(database)
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.join("psql").display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(describe(&out))
        }
    }

    /// A `psql` command connected to `database`, quiet, unaligned and tuples-only, with a
    /// cleared environment (no `PG*` variable of the test leaks in). Add `-c` or pipe stdin.
    pub fn psql_command(&self, database: &str) -> Command {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.env_clear()
            .env("LC_ALL", "C")
            .env("PGAPPNAME", HARNESS_APP)
            .arg("-X")
            .args(["-q", "-A", "-t"])
            .arg("-h")
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string(), "-U", ROLE, "-d", database]);
        cmd
    }

    /// Terminates the client sessions matching `filter`, an SQL condition on
    /// `pg_stat_activity` (e.g. `application_name LIKE 'openkb%'`), waiting until each has
    /// ended. The harness's own session is never among them. Returns how many ended.
    pub fn terminate_backends(&self, filter: &str) -> usize {
        let out = self.psql(&format!(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 30000)) \
             FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' AND ({filter})"
        ));
        out.parse()
            .unwrap_or_else(|_| panic!("terminate_backends: unexpected psql output {out:?}"))
    }

    /// `pg_ctl restart -m immediate`: the postmaster gets SIGQUIT (every session is cut, nothing
    /// is flushed), then a new one starts on the same data and port, recovering from the WAL.
    /// Returns once the new server accepts connections. Every session of every test using this
    /// server is cut: use it on a server from [`Server::start_private`].
    pub fn restart_immediate(&self) {
        let pid = self
            .request(Request::RestartImmediate)
            .unwrap_or_else(|e| panic!("restarting the test PostgreSQL server failed: {e}"));
        self.postmaster_pid.store(pid, Ordering::SeqCst);
    }

    /// Stops the server like `pg_ctl stop -m immediate` and keeps its data: the server is down
    /// (connections fail at once) until [`Server::start`]. Use it on a private server.
    pub fn stop_immediate(&self) {
        self.request(Request::StopImmediate)
            .unwrap_or_else(|e| panic!("stopping the test PostgreSQL server failed: {e}"));
    }

    /// Starts a server stopped by [`Server::stop_immediate`] again, on the same data and port;
    /// returns once it accepts connections.
    pub fn start(&self) {
        let pid = self
            .request(Request::Start)
            .unwrap_or_else(|e| panic!("starting the test PostgreSQL server again failed: {e}"));
        self.postmaster_pid.store(pid, Ordering::SeqCst);
    }

    /// Stops the server (immediate shutdown) and removes its folder. Idempotent.
    pub fn shutdown(&self) {
        let control = match self.control.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(control) = control {
            let (reply, answer) = mpsc::channel();
            if control.commands.send((Request::Exit, reply)).is_ok() {
                let _ = answer.recv();
            }
            drop(control.commands);
            let _ = control.thread.join();
        }
        let _ = fs::remove_dir_all(&self.root);
    }

    fn request(&self, request: Request) -> Result<u32, String> {
        let guard = self
            .control
            .lock()
            .map_err(|_| "control lock poisoned".to_string())?;
        let control = guard.as_ref().ok_or("the server was shut down")?;
        let (reply, answer) = mpsc::channel();
        control
            .commands
            .send((request, reply))
            .map_err(|_| "the server's control thread is gone".to_string())?;
        answer
            .recv()
            .map_err(|_| "the server's control thread is gone".to_string())?
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Removes the folders of servers whose test binary is gone (killed before its `atexit` ran),
/// stopping a postmaster still running there. Called before every start; public for the test
/// that proves it.
pub fn sweep_stale() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        // The owner's pid is in the name (`openkb-pg-<pid>-<n>`), there from the first instant.
        let owner = name.to_string_lossy()[DIR_PREFIX.len()..]
            .split('-')
            .next()
            .and_then(|pid| pid.parse().ok());
        if owner.is_none_or(process_alive) {
            continue;
        }
        if let Some(postmaster) = read_postmaster_pid(&dir.join("data"))
            && cmdline_mentions(postmaster, &dir)
        {
            // SAFETY: plain kill(2) of a postmaster whose command line names this folder.
            unsafe { libc::kill(postmaster as libc::pid_t, libc::SIGQUIT) };
            wait_for_exit(postmaster);
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// Blocks until process `pid` has exited (any process, not only a child: `pidfd_open` + poll).
/// Returns false if it is still alive after a minute.
pub fn wait_for_exit(pid: u32) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        // ESRCH: already gone (and reaped).
        return !process_alive(pid);
    }
    let fd = fd as libc::c_int;
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; the fd is ours and closed right after.
    let ready = unsafe { libc::poll(&mut poll, 1, 60_000) };
    unsafe { libc::close(fd) };
    ready == 1
}

/// Whether a process with this id exists and has not exited (a zombie counts as exited).
pub fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may itself hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

static TLS: OnceLock<Result<TlsServer, String>> = OnceLock::new();

/// A second server of this test binary, started on first use, that speaks TLS and accepts TCP
/// connections only with it (`hostssl` in pg_hba.conf; its Unix socket stays plain, as
/// PostgreSQL's always is). Its certificate is for `localhost` only, signed by [`TlsServer::ca`].
pub fn tls_server() -> &'static TlsServer {
    let shared = TLS.get_or_init(|| {
        let server = Server::start_prepared(|launch| {
            let dir = launch.root.join("tls");
            fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            enable_tls(launch, &dir)
        })?;
        let tls = server.root().join("tls");
        // SAFETY: registering a plain `extern "C" fn` with no captured state.
        if unsafe { libc::atexit(stop_tls_server) } != 0 {
            return Err("atexit refused to register the TLS server's shutdown".to_string());
        }
        Ok(TlsServer { server, dir: tls })
    });
    match shared {
        Ok(server) => server,
        Err(reason) => panic!("the test PostgreSQL TLS server could not be started: {reason}"),
    }
}

extern "C" fn stop_tls_server() {
    if let Some(Ok(tls)) = TLS.get() {
        tls.server.shutdown();
    }
}

/// The server of [`tls_server`] and the certificates made for it (in its folder, removed with
/// it).
pub struct TlsServer {
    pub server: Server,
    dir: PathBuf,
}

impl TlsServer {
    /// The CA that signed the server's certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Another CA, which signed nothing the server has.
    pub fn other_ca(&self) -> PathBuf {
        self.dir.join("other-ca.pem")
    }

    /// A libpq key=value string for TCP to `host` (resolved to 127.0.0.1 by `hostaddr`, so
    /// any name can be checked against the certificate), plus `extra` settings.
    pub fn tcp_url(&self, host: &str, extra: &str) -> String {
        format!(
            "host={host} hostaddr=127.0.0.1 port={} user={ROLE} dbname=postgres {extra}",
            self.server.port()
        )
    }
}

/// Make a CA, a second CA and a server certificate for `localhost` in `dir` with the
/// `openssl` command, and switch the new cluster to TLS-only TCP.
fn enable_tls(launch: &Launch, dir: &Path) -> Result<(), String> {
    let openssl = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run openssl (install it): {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("openssl {args:?} failed: {}", describe(&out)))
        }
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for (name, subject) in [("ca", "/CN=openkb test CA"), ("other-ca", "/CN=another CA")] {
        let (keyout, out) = (format!("{name}.key"), format!("{name}.pem"));
        let mut args = vec!["req", "-x509", "-days", "2", "-subj", subject];
        args.extend(key);
        args.extend(["-keyout", &keyout, "-out", &out]);
        openssl(&args)?;
    }
    let mut args = vec!["req", "-subj", "/CN=localhost", "-keyout", "server.key"];
    args.extend(key);
    args.extend(["-out", "server.csr"]);
    openssl(&args)?;
    fs::write(dir.join("san.cnf"), "subjectAltName=DNS:localhost\n").map_err(|e| e.to_string())?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
        "-out",
        "server.crt",
    ])?;
    let data = launch.root.join("data");
    for file in ["server.crt", "server.key"] {
        let target = data.join(file);
        fs::copy(dir.join(file), &target).map_err(|e| e.to_string())?;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = launch.run_as {
            std::os::unix::fs::chown(&target, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
    }
    let mut conf = fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .map_err(|e| e.to_string())?;
    writeln!(
        conf,
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'"
    )
    .map_err(|e| e.to_string())?;
    fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
    )
    .map_err(|e| e.to_string())
}

fn read_postmaster_pid(data: &Path) -> Option<u32> {
    fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn cmdline_mentions(pid: u32, dir: &Path) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()))
        .unwrap_or(false)
}

fn find_bin_dir() -> Result<PathBuf, String> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("OPENKB_TEST_PGBIN") {
        let dir = PathBuf::from(dir);
        return if has_server(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "OPENKB_TEST_PGBIN={} holds no initdb and postgres: point it at PostgreSQL's bin \
                 folder (e.g. /usr/lib/postgresql/15/bin)",
                dir.display()
            ))
        };
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("initdb"))
        .find(|initdb| initdb.is_file())
        // Debian links initdb into /usr/local/bin; the server binaries live beside its target.
        .and_then(|initdb| fs::canonicalize(initdb).ok())
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
        .filter(|dir| has_server(dir));
    if let Some(dir) = on_path {
        return Ok(dir);
    }
    let mut debian: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|dir| has_server(&dir.join("bin")))
        .filter_map(|dir| {
            let version: Option<Vec<u32>> = dir
                .file_name()?
                .to_str()?
                .split('.')
                .map(|n| n.parse().ok())
                .collect();
            Some((version?, dir.join("bin")))
        })
        .collect();
    debian.sort();
    debian.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "no PostgreSQL server found (OPENKB_TEST_PGBIN unset, no initdb on PATH, nothing in \
         /usr/lib/postgresql/*/bin): install the `postgresql` package (.ci/run does)"
            .to_string()
    })
}

/// `None` to run the server as ourselves; the `postgres` user's ids when we are root.
fn server_user() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam returns null or a pointer to a static passwd record, read at once.
    let record = unsafe { libc::getpwnam(name.as_ptr()) };
    if record.is_null() {
        return Err(
            "running as root, and initdb refuses root, but there is no `postgres` user \
                    to run the server as: install the `postgresql` package or run as a non-root \
                    user"
                .to_string(),
        );
    }
    // SAFETY: non-null record from getpwnam.
    let (uid, gid) = unsafe { ((*record).pw_uid, (*record).pw_gid) };
    Ok(Some((uid, gid)))
}

fn make_root(run_as: Option<(u32, u32)>) -> Result<PathBuf, String> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let pid = std::process::id();
    loop {
        let root = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{pid}-{}",
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        match fs::create_dir(&root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create {}: {e}", root.display())),
        }
        let prepare = || -> std::io::Result<()> {
            fs::create_dir(root.join("sock"))?;
            // The server user must reach its folder and create data/ and the socket in it.
            fs::set_permissions(&root, fs::Permissions::from_mode(0o755))?;
            if let Some((uid, gid)) = run_as {
                std::os::unix::fs::chown(&root, Some(uid), Some(gid))?;
                std::os::unix::fs::chown(root.join("sock"), Some(uid), Some(gid))?;
            }
            Ok(())
        };
        return match prepare() {
            Ok(()) => Ok(root),
            Err(e) => {
                let _ = fs::remove_dir_all(&root);
                Err(format!("cannot prepare {}: {e}", root.display()))
            }
        };
    }
}

impl Launch {
    /// A command for one of the server binaries, as the server user, with a cleared environment
    /// (English messages; no `PG*` variable of the test leaks in).
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.env_clear()
            .env("LC_ALL", "C")
            .current_dir(&self.root)
            .stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Spawns the postmaster on `port` and waits for its "ready" line (a handshake, no
    /// polling). Its log goes to `server.log`. Returns the child, or the log when it failed.
    fn spawn_postmaster(&self, port: u16) -> Result<Child, String> {
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(self.root.join("data"))
            .arg("-k")
            .arg(self.root.join("sock"))
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=300", "-c", "lc_messages=C"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; it runs after std switched the user, so the
        // kernel keeps the signal across exec (a credential change would clear it).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.join("postgres").display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log_path = self.root.join("server.log");
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = String::new();
        let ready = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    let _ = writeln!(log, "{line}");
                    let ready = line.contains(READY_LINE);
                    seen.push_str(&line);
                    seen.push('\n');
                    if ready {
                        break true;
                    }
                }
                _ => break false,
            }
        };
        if !ready {
            let status = child.wait().map_err(|e| e.to_string())?;
            return Err(format!(
                "postgres exited ({status}) before accepting connections:\n{seen}"
            ));
        }
        // Keep draining the log, or the server would block once the pipe is full.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
            }
        });
        Ok(child)
    }

    /// Picks a free loopback port and starts there; retries with another port when the one
    /// picked was taken meanwhile.
    fn spawn_on_free_port(&self) -> Result<(Child, u16), String> {
        let mut last = String::new();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map_err(|e| format!("cannot find a free loopback port: {e}"))?
                .port();
            match self.spawn_postmaster(port) {
                Ok(child) => return Ok((child, port)),
                Err(log) if log.contains("could not bind") || log.contains("in use") => last = log,
                Err(log) => return Err(log),
            }
        }
        Err(last)
    }
}

fn initdb(launch: &Launch) -> Result<(), String> {
    let out = launch
        .command("initdb")
        .arg("-D")
        .arg(launch.root.join("data"))
        .args(["-A", "trust", "-U", ROLE, "--no-sync", "--no-instructions"])
        .args(["-E", "UTF8", "--locale=C"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", launch.bin.join("initdb").display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("initdb failed: {}", describe(&out)))
    }
}

/// Starts the control thread, which spawns the postmaster (so that the parent-death signal is
/// tied to a thread that lives as long as the server) and then serves restart and stop
/// requests. Returns once the server accepts connections.
fn start_control(launch: Launch) -> Result<(Control, u16, u32), String> {
    let (commands, requests) = mpsc::channel::<(Request, mpsc::Sender<Result<u32, String>>)>();
    let (started, first) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("pg-server".to_string())
        .spawn(move || {
            let (child, port) = match launch.spawn_on_free_port() {
                Ok(spawned) => spawned,
                Err(reason) => {
                    let _ = started.send(Err(reason));
                    return;
                }
            };
            let _ = started.send(Ok((port, child.id())));
            let mut running = Some(child);
            for (request, reply) in requests {
                if !matches!(request, Request::Start)
                    && let Some(mut child) = running.take()
                {
                    stop_immediately(&mut child);
                }
                match request {
                    Request::Exit => {
                        let _ = reply.send(Ok(0));
                        return;
                    }
                    Request::StopImmediate => {
                        let _ = reply.send(Ok(0));
                    }
                    Request::RestartImmediate | Request::Start => {
                        if let Some(child) = &running {
                            let _ = reply.send(Ok(child.id()));
                            continue;
                        }
                        let spawned = launch.spawn_postmaster(port);
                        let _ = reply.send(spawned.as_ref().map(Child::id).map_err(Clone::clone));
                        running = spawned.ok();
                    }
                }
            }
            // Every sender dropped (the server value is gone): stop the postmaster.
            if let Some(mut child) = running {
                stop_immediately(&mut child);
            }
        })
        .map_err(|e| format!("cannot start the server's control thread: {e}"))?;
    match first.recv() {
        Ok(Ok((port, pid))) => Ok((Control { commands, thread }, port, pid)),
        Ok(Err(reason)) => {
            let _ = thread.join();
            Err(reason)
        }
        Err(_) => Err("the server's control thread died while starting".to_string()),
    }
}

/// SIGQUIT is PostgreSQL's immediate shutdown (what `pg_ctl stop -m immediate` sends); the
/// postmaster ends its sessions, and we reap it so no zombie remains.
fn stop_immediately(child: &mut Child) {
    // SAFETY: kill(2) of our own child, not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGQUIT) };
    let _ = child.wait();
}

fn describe(out: &Output) -> String {
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
