//! Team mode against a real PostgreSQL server that the harness (`tests/support/pg_server.rs`)
//! starts: first the harness's own promises, then team-mode reliability.

#[path = "support/pg_server.rs"]
mod pg_server;

/// The harness: the server starts (as the `postgres` user when run as root), its URL works with
/// psql, a restart is real, and the server never outlives the test binary.
mod harness {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

    use super::pg_server::{self, Server};

    /// The name of the test that the exit tests run in a child copy of this test binary.
    const CHILD_TEST: &str = "harness::child_reports_its_server";
    /// Set by the exit tests: a FIFO the child blocks on after reporting, until it is killed.
    const HOLD_ENV: &str = "OPENKB_PG_HARNESS_HOLD";

    fn uid_of(pid: u32) -> u32 {
        std::fs::metadata(format!("/proc/{pid}"))
            .unwrap_or_else(|e| panic!("/proc/{pid}: {e}"))
            .uid()
    }

    #[test]
    fn server_runs_as_postgres_user_when_root_and_as_us_otherwise() {
        let server = pg_server::server();
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        let expected = if euid == 0 {
            let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
            passwd
                .lines()
                .find_map(|line| {
                    let fields: Vec<&str> = line.split(':').collect();
                    (fields.first() == Some(&"postgres")).then(|| fields[2].parse().unwrap())
                })
                .expect("a postgres user in /etc/passwd")
        } else {
            euid
        };
        let postmaster = server.postmaster_pid();
        assert_eq!(
            uid_of(postmaster),
            expected,
            "owner of the postmaster {postmaster}"
        );
        assert_ne!(uid_of(postmaster), 0, "the server must never run as root");
        assert_eq!(server.psql("SELECT current_user"), pg_server::ROLE);
        assert_eq!(server.psql("SHOW fsync"), "off");
    }

    #[test]
    fn url_works_with_the_psql_client_over_the_socket_and_tcp_works_too() {
        let server = pg_server::server();
        let db = server.create_database();
        let psql = |conninfo: &str, sql: &str| {
            let out = Command::new(server.bin_dir().join("psql"))
                .env_clear()
                .args([
                    "-X",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    conninfo,
                    "-c",
                    sql,
                ])
                .output()
                .expect("run psql");
            assert!(out.status.success(), "psql {conninfo:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        psql(
            &server.url_for(&db),
            "CREATE TABLE t (n int); INSERT INTO t VALUES (41), (1)",
        );
        assert_eq!(psql(&server.url_for(&db), "SELECT sum(n) FROM t"), "42");
        assert_eq!(psql(&server.tcp_url(&db), "SELECT sum(n) FROM t"), "42");
        assert_eq!(
            psql(
                &server.url_for(&db),
                "SELECT current_database() || ' ' || current_user"
            ),
            format!("{db} {}", pg_server::ROLE)
        );
        // The socket is where the URL says, and the default database exists.
        assert!(
            server
                .url()
                .contains(&*server.socket_dir().to_string_lossy())
        );
        psql(&server.url(), "SELECT 1");
    }

    /// A psql session kept open on a pipe, so that a test can see it cut. Killed when dropped.
    struct Session {
        child: Child,
        stdin: Option<ChildStdin>,
        stdout: BufReader<ChildStdout>,
        /// The server process serving this session.
        backend: u32,
    }

    impl Session {
        fn open(server: &Server, application_name: &str) -> Session {
            let mut child = server
                .psql_command("postgres")
                .env("PGAPPNAME", application_name)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn psql");
            let stdin = child.stdin.take();
            let stdout = BufReader::new(child.stdout.take().unwrap());
            let mut session = Session {
                child,
                stdin,
                stdout,
                backend: 0,
            };
            // Handshake: the session is connected once it answers.
            let backend = session
                .query("SELECT pg_backend_pid()")
                .expect("session answers");
            session.backend = backend.parse().unwrap();
            session
        }

        /// One query; None when the session is gone.
        fn query(&mut self, sql: &str) -> Option<String> {
            let stdin = self.stdin.as_mut()?;
            writeln!(stdin, "{sql};").ok()?;
            stdin.flush().ok()?;
            let mut line = String::new();
            match self.stdout.read_line(&mut line) {
                Ok(0) | Err(_) => None,
                Ok(_) => Some(line.trim().to_string()),
            }
        }

        /// Ends the input and returns what psql said on stderr.
        fn finish(&mut self) -> String {
            self.stdin = None;
            let mut stderr = String::new();
            let _ = std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut stderr);
            let _ = self.child.wait();
            stderr
        }
    }

    impl Drop for Session {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[test]
    fn restart_immediate_cuts_sessions_keeps_committed_rows_and_serves_again() {
        let server = Server::start_private().expect("a private server");
        server.psql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)");
        let before = server.postmaster_pid();
        let session = Session::open(&server, "victim");
        assert!(pg_server::process_alive(session.backend));

        server.restart_immediate();

        assert_ne!(server.postmaster_pid(), before, "a new postmaster");
        assert!(
            !pg_server::process_alive(before),
            "the old postmaster is gone"
        );
        assert!(
            !pg_server::process_alive(session.backend),
            "the open session was cut"
        );
        assert_eq!(
            server.psql("SELECT n FROM kept"),
            "7",
            "committed rows survive"
        );
        assert!(
            server.log().contains("not properly shut down"),
            "{}",
            server.log()
        );
    }

    #[test]
    fn stop_immediate_takes_the_server_down_until_start() {
        let server = Server::start_private().expect("a private server");
        server.psql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (8)");
        let before = server.postmaster_pid();

        server.stop_immediate();

        assert!(!pg_server::process_alive(before), "the postmaster is gone");
        let refused = server.try_psql_in("postgres", "SELECT 1").unwrap_err();
        assert!(
            refused.contains("No such file") || refused.contains("refused"),
            "{refused}"
        );
        server.start();
        assert_eq!(server.psql("SELECT n FROM kept"), "8");
    }

    #[test]
    fn terminate_backends_ends_only_the_matching_sessions() {
        let server = pg_server::server();
        let mut doomed = Session::open(server, "harness-doomed");
        let mut spared = Session::open(server, "harness-spared");

        let ended = server.terminate_backends("application_name = 'harness-doomed'");

        assert_eq!(ended, 1);
        assert_eq!(
            doomed.query("SELECT 1"),
            None,
            "the matching session was terminated"
        );
        assert_eq!(
            spared.query("SELECT 2"),
            Some("2".to_string()),
            "the other one lives"
        );
        assert!(doomed.finish().contains("terminat"));
        assert!(pg_server::process_alive(spared.backend));
    }

    #[test]
    fn private_server_is_stopped_and_removed_when_dropped() {
        let server = Server::start_private().expect("a private server");
        let (pid, root) = (server.postmaster_pid(), server.root().to_path_buf());
        assert!(pg_server::process_alive(pid));
        drop(server);
        assert!(
            !pg_server::process_alive(pid),
            "postmaster {pid} outlived its Server"
        );
        assert!(!root.exists(), "{} left behind", root.display());
    }

    /// Run by the exit tests in a child copy of this binary (and on its own in every run, where
    /// it checks the same report): prints the shared server's postmaster pid and folder.
    #[test]
    fn child_reports_its_server() {
        let server = pg_server::server();
        assert_eq!(server.psql("SELECT 40 + 2"), "42");
        println!(
            "PG_SERVER {} {}",
            server.postmaster_pid(),
            server.root().display()
        );
        if let Some(fifo) = std::env::var_os(HOLD_ENV) {
            // Blocks until the parent kills this process (it never opens the FIFO for writing).
            let _ = std::fs::read(fifo);
        }
    }

    /// A copy of this test binary running `child_reports_its_server`; killed if still running
    /// when dropped, so a failing test never leaves it blocked on its FIFO.
    struct ChildBinary {
        child: Child,
        postmaster: u32,
        root: PathBuf,
    }

    impl ChildBinary {
        fn spawn(hold: Option<&Path>) -> ChildBinary {
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            match hold {
                Some(fifo) => cmd.env(HOLD_ENV, fifo),
                None => cmd.env_remove(HOLD_ENV),
            };
            let mut child = cmd.spawn().expect("spawn the test binary");
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            // libtest prints the test's name on the same line, before the report.
            let report = lines
                .by_ref()
                .map_while(Result::ok)
                .find_map(|line| line.split_once("PG_SERVER ").map(|(_, r)| r.to_string()));
            // Drain the rest, so the child never fails writing its summary to a closed pipe.
            std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
            let Some(report) = report else {
                let _ = child.kill();
                let status = child.wait();
                panic!("the child test binary reported no server ({status:?})");
            };
            let (pid, root) = report.split_once(' ').unwrap();
            ChildBinary {
                child,
                postmaster: pid.parse().unwrap(),
                root: PathBuf::from(root),
            }
        }
    }

    impl Drop for ChildBinary {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[test]
    fn server_stops_and_its_folder_goes_when_the_test_binary_exits() {
        let mut child = ChildBinary::spawn(None);
        assert!(child.child.wait().unwrap().success());
        let (pid, root) = (child.postmaster, &child.root);
        assert!(
            !pg_server::process_alive(pid),
            "postmaster {pid} outlived the test binary"
        );
        assert!(!root.exists(), "{} left behind", root.display());
    }

    #[test]
    fn server_stops_when_the_test_binary_is_killed_and_the_next_start_sweeps_its_folder() {
        let fifos = tempfile::tempdir().unwrap();
        let fifo = fifos.path().join("hold");
        let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let mut child = ChildBinary::spawn(Some(&fifo));
        let (pid, root) = (child.postmaster, child.root.clone());
        assert!(pg_server::process_alive(pid));

        child.child.kill().unwrap();
        child.child.wait().unwrap();

        assert!(
            pg_server::wait_for_exit(pid),
            "postmaster {pid} outlived a killed test binary"
        );
        assert!(
            root.exists(),
            "a killed binary cannot clean up; the sweep does"
        );
        pg_server::sweep_stale();
        assert!(!root.exists(), "{} not swept", root.display());
    }
}
