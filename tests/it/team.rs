//! Team mode against a real PostgreSQL server that the harness (`tests/support/pg_server.rs`)
//! starts: first the harness's own promises, then team-mode reliability.

/// The harness: the server starts (as the `postgres` user when run as root), its URL works with
/// psql, a restart is real, and the server never outlives the test binary.
mod pg_harness {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

    use crate::pg_server::{self, Server};

    /// The name of the test that the exit tests run in a child copy of this test binary.
    const CHILD_TEST: &str = "team::pg_harness::child_reports_its_server";
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
            let out = crate::harness::clean(server.bin_dir().join("psql"))
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
            // Not from a cleared environment: the copy must find the server binaries the way
            // this binary did (OPENKB_TEST_PGBIN in CI).
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

/// Team mode through the command line, as a team uses it: two "hosts" (processes with HOMEs of
/// their own, reaching the KB folder by different paths, flock out of the game through the
/// network-filesystem override) share one KB whose state and lock are in the test server.
mod reliability {
    use std::collections::{BTreeMap, BTreeSet};
    use std::io::{BufRead, BufReader, Lines, Read, Write};
    use std::path::{Path, PathBuf};
    use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
    use std::sync::{Arc, Barrier};

    use serde_json::Value;

    use crate::harness::{self, stderr};
    use crate::pg_server::{self, Server};

    /// What a command reports when the state server cannot be reached (exit 5).
    const UNREACHABLE: &str = "cannot reach the state server";

    #[derive(Clone, Copy, Debug)]
    enum Host {
        A,
        B,
    }

    /// A team KB at `<tmp>/kb`, its state in a database of its own. Host A reaches it as
    /// `<tmp>/kb`, host B through the symlink `<tmp>/mnt-b/kb` (another mount of the share).
    struct TeamKb<'s> {
        dir: tempfile::TempDir,
        server: &'s Server,
        database: String,
    }

    impl<'s> TeamKb<'s> {
        fn new(server: &'s Server) -> TeamKb<'s> {
            let dir = tempfile::tempdir().expect("tempdir");
            for sub in ["home-a", "home-b", "mnt-b", "in"] {
                std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
            }
            std::os::unix::fs::symlink(dir.path().join("kb"), dir.path().join("mnt-b/kb"))
                .expect("symlink");
            let team = TeamKb {
                dir,
                server,
                database: server.create_database(),
            };
            team.ok(
                Host::A,
                &[
                    "init",
                    "--backend",
                    "postgres",
                    "--model",
                    "m",
                    "--language",
                    "en",
                ],
            );
            team
        }

        /// Sets a compile hook that writes the document's summary page. (With a hook, `add`
        /// compiles and commits one document at a time.)
        fn with_compile_hook(self) -> Self {
            let hook =
                r#"printf '# %s\n' "$OPENKB_DOC_NAME" > "wiki/summaries/$OPENKB_DOC_NAME.md""#;
            let config = self.kb().join(".openkb/config.yaml");
            let mut text = std::fs::read_to_string(&config).expect("config");
            text.push_str(&format!(
                "compile_command: '{}'\n",
                hook.replace('\'', "''")
            ));
            std::fs::write(&config, text).expect("config");
            self
        }

        fn kb(&self) -> PathBuf {
            self.dir.path().join("kb")
        }

        fn path_for(&self, host: Host) -> PathBuf {
            match host {
                Host::A => self.kb(),
                Host::B => self.dir.path().join("mnt-b/kb"),
            }
        }

        /// `openkb --kb-dir <host's path> args...` from the harness's cleared environment: the
        /// host's HOME, this KB's database, flock disabled by the filesystem override.
        fn cmd(&self, host: Host, args: &[&str]) -> Command {
            let home = match host {
                Host::A => "home-a",
                Host::B => "home-b",
            };
            let mut cmd = harness::openkb(&self.dir.path().join(home), self.dir.path());
            cmd.env("OPENKB_STATE_URL", self.server.url_for(&self.database))
                .env("OPENKB_FS_TYPE", "nfs")
                .env("OPENKB_LOCK_TIMEOUT", "60")
                .arg("--kb-dir")
                .arg(self.path_for(host))
                .args(args);
            cmd
        }

        fn run(&self, host: Host, args: &[&str]) -> Output {
            self.cmd(host, args).output().expect("run openkb")
        }

        fn ok(&self, host: Host, args: &[&str]) -> Output {
            let out = self.run(host, args);
            assert!(
                out.status.success(),
                "openkb {args:?} on {host:?}: {}",
                text(&out)
            );
            out
        }

        fn json(&self, host: Host, args: &[&str]) -> Value {
            serde_json::from_slice(&self.ok(host, args).stdout).expect("JSON output")
        }

        /// A file to add, under `<tmp>/in/`.
        fn write(&self, rel: &str, content: &str) -> PathBuf {
            let path = self.dir.path().join("in").join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, content).expect("write");
            path
        }

        /// The registry as `openkb list --json` gives it.
        fn documents(&self) -> Vec<Value> {
            self.json(Host::B, &["list", "--json"])["documents"]
                .as_array()
                .expect("documents")
                .clone()
        }

        fn doc_names(&self) -> BTreeSet<String> {
            self.documents()
                .iter()
                .map(|d| d["doc_name"].as_str().expect("doc_name").to_string())
                .collect()
        }

        /// SQL in this KB's schema, through the harness's psql.
        fn sql(&self, sql: &str) -> String {
            let config = std::fs::read_to_string(self.kb().join(".openkb/config.yaml")).unwrap();
            let kb_id = config
                .lines()
                .find_map(|l| l.trim().strip_prefix("kb_id:"))
                .expect("kb_id in config.yaml")
                .trim()
                .replace('-', "");
            self.server.psql_in(
                &self.database,
                &format!("SET search_path = openkb_{kb_id}; {sql}"),
            )
        }

        fn count(&self, sql: &str) -> i64 {
            self.sql(sql)
                .lines()
                .last()
                .unwrap_or_default()
                .parse()
                .expect("a count")
        }

        /// Files directly in `folder` of the KB.
        fn files_in(&self, folder: &str) -> BTreeSet<String> {
            let Ok(entries) = std::fs::read_dir(self.kb().join(folder)) else {
                return BTreeSet::new();
            };
            entries
                .flatten()
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .map(|e| format!("{folder}/{}", e.file_name().to_string_lossy()))
                .collect()
        }

        /// Every promise about a settled team KB: each document once, with its files and its
        /// `index.md` line; no file without a document; no intent left; `wiki/log.md` holds
        /// exactly the log's rows; nothing left in staging.
        fn assert_consistent(&self) {
            let docs = self.documents();
            let mut names = BTreeSet::new();
            let (mut raw, mut sources) = (BTreeSet::new(), BTreeSet::new());
            for doc in &docs {
                let name = doc["doc_name"].as_str().expect("doc_name").to_string();
                assert!(names.insert(name.clone()), "{name} registered twice");
                raw.insert(doc["raw_path"].as_str().expect("raw_path").to_string());
                sources.insert(
                    doc["source_path"]
                        .as_str()
                        .expect("source_path")
                        .to_string(),
                );
            }
            assert_eq!(self.files_in("raw"), raw, "raw/ against the registry");
            assert_eq!(
                self.files_in("wiki/sources"),
                sources,
                "wiki/sources/ against the registry"
            );
            for summary in self.files_in("wiki/summaries") {
                let name = summary
                    .trim_start_matches("wiki/summaries/")
                    .trim_end_matches(".md");
                assert!(names.contains(name), "{summary} belongs to no document");
            }
            let index = std::fs::read_to_string(self.kb().join("wiki/index.md")).expect("index");
            let listed: Vec<&str> = index
                .lines()
                .filter_map(|l| l.strip_prefix("- [[summaries/"))
                .filter_map(|l| l.split_once("]]").map(|(name, _)| name))
                .collect();
            assert_eq!(listed.len(), names.len(), "index.md lines:\n{index}");
            assert_eq!(
                listed
                    .into_iter()
                    .map(str::to_string)
                    .collect::<BTreeSet<_>>(),
                names
            );
            assert_eq!(
                self.count("SELECT count(*) FROM intents"),
                0,
                "intents left"
            );
            let log_md = std::fs::read_to_string(self.kb().join("wiki/log.md")).expect("log.md");
            let entries = log_md.lines().filter(|l| l.starts_with("## [")).count() as i64;
            assert_eq!(
                entries,
                self.count("SELECT count(*) FROM log"),
                "log.md vs log rows"
            );
            let staging = self.kb().join(".openkb/staging");
            let left: Vec<String> = std::fs::read_dir(&staging)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into())
                        .collect()
                })
                .unwrap_or_default();
            assert!(
                left.iter().all(|n| !n.starts_with("rs-")),
                "staging leftovers: {left:?}"
            );
        }

        /// `openkb args...` on `host`, stopped just before its commit (`add-commit`): returns
        /// once it got there, holding the KB lock with its files published.
        fn paused_at_commit(&self, host: Host, args: &[&str]) -> Paused {
            let mut child = self
                .cmd(host, args)
                .env("OPENKB_TEST_RUN_AT", "add-commit")
                .env("OPENKB_TEST_RUN", "echo PAUSED-AT-COMMIT; read resume")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn openkb");
            let stdin = child.stdin.take();
            let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
            let reached = stdout
                .by_ref()
                .map_while(Result::ok)
                .any(|l| l == "PAUSED-AT-COMMIT");
            let mut paused = Paused {
                child,
                stdin,
                stdout,
            };
            if !reached {
                let out = paused.finish();
                panic!("openkb {args:?} ended before its commit: {}", text(&out));
            }
            paused
        }
    }

    /// An openkb process waiting at its commit point; killed if still running when dropped.
    struct Paused {
        child: Child,
        stdin: Option<ChildStdin>,
        stdout: Lines<BufReader<ChildStdout>>,
    }

    impl Paused {
        fn pid(&self) -> u32 {
            self.child.id()
        }

        /// Lets it go on to its commit and returns what it printed and its exit status.
        fn resume(mut self) -> Output {
            if let Some(mut stdin) = self.stdin.take() {
                writeln!(stdin).expect("resume");
            }
            self.finish()
        }

        fn finish(&mut self) -> Output {
            self.stdin = None;
            let stdout: Vec<String> = self.stdout.by_ref().map_while(Result::ok).collect();
            let mut stderr = Vec::new();
            if let Some(mut pipe) = self.child.stderr.take() {
                pipe.read_to_end(&mut stderr).expect("stderr");
            }
            let status = self.child.wait().expect("wait");
            Output {
                status,
                stdout: stdout.join("\n").into_bytes(),
                stderr,
            }
        }
    }

    impl Drop for Paused {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn text(out: &Output) -> String {
        format!(
            "{}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The doc_names an `add --json` or `remove --json` reports done.
    fn reported(json: &Value, list: &str, done: impl Fn(&Value) -> bool) -> Vec<String> {
        json[list]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|item| done(item))
                    .filter_map(|item| item["doc_name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    const WRITERS: usize = 8;
    const OPS_PER_WRITER: usize = 10;

    #[derive(Default)]
    struct Tally {
        added: BTreeMap<String, i64>,
        removed: BTreeMap<String, i64>,
        compiled: usize,
        failures: Vec<String>,
    }

    /// Writer `w` on its host: a fixed mix of adds (some contents shared by every writer, so
    /// they race to register the same bytes), batch adds, removes of its own documents,
    /// compiles and reads.
    fn writer(team: &TeamKb, w: usize, barrier: &Barrier) -> Tally {
        let host = if w.is_multiple_of(2) {
            Host::A
        } else {
            Host::B
        };
        let mut tally = Tally::default();
        let mut mine: Vec<String> = Vec::new();
        barrier.wait();
        for op in 0..OPS_PER_WRITER {
            let mut args: Vec<String> = Vec::new();
            match (w * 7 + op * 3) % 10 {
                0..=3 => {
                    let j = (w + op) % 6;
                    let file = team.dir.path().join(format!("in/w{w}/f{j}.md"));
                    args.extend(["add".into(), "--json".into(), file.display().to_string()]);
                }
                4 => {
                    let dir = team.dir.path().join(format!("in/w{w}/batch"));
                    args.extend(["add".into(), "--json".into(), dir.display().to_string()]);
                }
                5 | 6 if !mine.is_empty() => {
                    let name = mine.remove(op % mine.len());
                    args.extend(["remove".into(), "-y".into(), "--json".into(), name]);
                }
                5 | 7 => args.extend(["compile".into(), "--pending".into(), "--json".into()]),
                6 | 8 => args.extend(["list".into(), "--json".into()]),
                _ => args.push("status".into()),
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = team.run(host, &args);
            if !out.status.success() {
                tally
                    .failures
                    .push(format!("writer {w} {args:?}: {}", text(&out)));
                continue;
            }
            let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            match args[0] {
                "add" => {
                    for name in reported(&json, "files", |f| f["outcome"] == "added") {
                        *tally.added.entry(name.clone()).or_default() += 1;
                        mine.push(name);
                    }
                }
                "remove" => {
                    for name in reported(&json, "documents", |d| d["removed"] == true) {
                        *tally.removed.entry(name).or_default() += 1;
                    }
                }
                "compile" => tally.compiled += 1,
                _ => {}
            }
        }
        tally
    }

    #[test]
    fn two_hosts_times_four_writers_lose_and_duplicate_nothing() {
        let team = Arc::new(TeamKb::new(pg_server::server()).with_compile_hook());
        for w in 0..WRITERS {
            for j in 0..6 {
                // f0 and f1 hold the same bytes for every writer: only one add may win.
                let content = if j < 2 {
                    format!("# shared {j}\n")
                } else {
                    format!("# w{w} f{j}\n")
                };
                team.write(&format!("w{w}/f{j}.md"), &content);
            }
            for b in 0..3 {
                team.write(
                    &format!("w{w}/batch/b{b}.md"),
                    &format!("# w{w} batch {b}\n"),
                );
            }
        }
        let barrier = Arc::new(Barrier::new(WRITERS));
        let tallies: Vec<Tally> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let (team, barrier) = (&team, &barrier);
                    scope.spawn(move || writer(team, w, barrier))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("writer"))
                .collect()
        });

        let mut added: BTreeMap<String, i64> = BTreeMap::new();
        let mut removed: BTreeMap<String, i64> = BTreeMap::new();
        for tally in &tallies {
            assert!(
                tally.failures.is_empty(),
                "failed commands:\n{:#?}",
                tally.failures
            );
            for (name, n) in &tally.added {
                *added.entry(name.clone()).or_default() += n;
            }
            for (name, n) in &tally.removed {
                *removed.entry(name.clone()).or_default() += n;
            }
        }
        let (total_added, total_removed) =
            (added.values().sum::<i64>(), removed.values().sum::<i64>());
        let compiles: usize = tallies.iter().map(|t| t.compiled).sum();
        eprintln!(
            "{WRITERS} writers x {OPS_PER_WRITER} operations: {total_added} added, \
             {total_removed} removed, {compiles} compile runs"
        );
        assert!(
            total_added >= 20,
            "the run should add a fair number ({total_added})"
        );
        assert!(total_removed > 0, "the run should remove some");
        assert!(compiles > 0, "and compile");

        let mut expected = BTreeSet::new();
        for (name, n) in &added {
            let net = n - removed.get(name).copied().unwrap_or(0);
            assert!(
                (0..=1).contains(&net),
                "{name}: added {n} times, removed {}",
                n - net
            );
            if net == 1 {
                expected.insert(name.clone());
            }
        }
        for name in removed.keys() {
            assert!(added.contains_key(name), "{name} removed but never added");
        }
        assert_eq!(
            team.doc_names(),
            expected,
            "registered vs reported adds minus removes"
        );
        let count = |op: &str| {
            team.count(&format!(
                "SELECT count(*) FROM log WHERE operation = '{op}'"
            ))
        };
        assert_eq!(
            count("ingest"),
            total_added,
            "one ingest row per reported add"
        );
        assert_eq!(
            count("remove"),
            total_removed,
            "one remove row per reported remove"
        );
        team.assert_consistent();
    }

    #[test]
    fn sigkill_of_the_lock_holder_mid_batch_lets_the_other_host_in_and_recovery_rolls_it_back() {
        let team = TeamKb::new(pg_server::server());
        for b in 0..3 {
            team.write(&format!("batch/b{b}.md"), &format!("# batch {b}\n"));
        }
        let batch = team.dir.path().join("in/batch");
        let other = team.write("other.md", "# other\n");
        let mut holder = team.paused_at_commit(Host::A, &["add", batch.to_str().unwrap()]);
        // Mid-batch: the files are published and the intents recorded, nothing committed.
        assert_eq!(
            team.files_in("raw").len(),
            3,
            "the batch's files are published"
        );
        assert_eq!(team.count("SELECT count(*) FROM intents"), 3);

        holder.child.kill().expect("SIGKILL");
        holder.child.wait().expect("wait");

        // The dead holder's session, and with it the lock, is gone by the time the other host
        // asks: a bounded wait proves it (exit 4 if the lock were still held).
        let out = team
            .cmd(Host::B, &["add", other.to_str().unwrap()])
            .env("OPENKB_LOCK_TIMEOUT", "10")
            .output()
            .expect("run openkb");
        assert!(
            out.status.success(),
            "the other host got in: {}",
            text(&out)
        );
        assert!(
            stderr(&out).contains("rolled back"),
            "recovery says what it did: {}",
            text(&out)
        );
        assert_eq!(team.doc_names(), BTreeSet::from(["other".to_string()]));
        team.assert_consistent();
        // And the batch goes in whole when run again.
        team.ok(Host::B, &["add", batch.to_str().unwrap()]);
        assert_eq!(team.documents().len(), 4);
        team.assert_consistent();
    }

    #[test]
    fn a_holder_whose_server_session_is_terminated_is_fenced_and_rolls_its_files_back() {
        let server = pg_server::server();
        let team = TeamKb::new(server);
        for b in 0..3 {
            team.write(&format!("batch/b{b}.md"), &format!("# batch {b}\n"));
        }
        let batch = team.dir.path().join("in/batch");
        let holder = team.paused_at_commit(Host::A, &["add", batch.to_str().unwrap()]);
        assert_eq!(
            team.files_in("raw").len(),
            3,
            "the batch's files are published"
        );

        // Every session of the holder (its lock's session among them), as a partition or a
        // DBA would end them.
        let ended = server.terminate_backends(&format!(
            "application_name LIKE 'openkb % {}'",
            holder.pid()
        ));
        assert!(ended >= 1, "the holder had sessions on the server");
        let out = holder.resume();

        assert_eq!(out.status.code(), Some(5), "fenced: {}", text(&out));
        assert!(
            team.documents().is_empty(),
            "nothing of the fenced batch is registered"
        );
        assert!(team.files_in("raw").is_empty(), "its files are rolled back");
        assert!(
            team.files_in("wiki/sources").is_empty(),
            "its files are rolled back"
        );
        // The intents it could not delete are settled by the next writer.
        let other = team.write("other.md", "# other\n");
        team.ok(Host::B, &["add", other.to_str().unwrap()]);
        assert_eq!(team.doc_names(), BTreeSet::from(["other".to_string()]));
        team.assert_consistent();
    }

    #[test]
    fn a_server_restart_during_an_add_loses_it_cleanly_and_the_next_command_recovers() {
        let server = Server::start_private().expect("a private server");
        let team = TeamKb::new(&server);
        for b in 0..3 {
            team.write(&format!("batch/b{b}.md"), &format!("# batch {b}\n"));
        }
        let batch = team.dir.path().join("in/batch");
        let holder = team.paused_at_commit(Host::A, &["add", batch.to_str().unwrap()]);

        server.restart_immediate();
        let out = holder.resume();

        assert_eq!(out.status.code(), Some(5), "the add failed: {}", text(&out));
        let again = team.json(Host::B, &["add", "--json", batch.to_str().unwrap()]);
        assert_eq!(again["added"], 3, "{again}");
        let once_more = team.json(Host::A, &["add", "--json", batch.to_str().unwrap()]);
        assert_eq!(
            (once_more["added"].clone(), once_more["skipped"].clone()),
            (0.into(), 3.into())
        );
        assert_eq!(team.documents().len(), 3, "nothing registered twice");
        assert_eq!(
            team.count("SELECT count(*) FROM log WHERE operation = 'ingest'"),
            3
        );
        team.assert_consistent();
    }

    /// Every file under `root` with its bytes (folders as empty entries).
    fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
                let path = entry.path();
                let rel = path.strip_prefix(root).expect("under root").to_path_buf();
                if entry.file_type().expect("type").is_dir() {
                    out.insert(rel, Vec::new());
                    walk(root, &path, out);
                } else {
                    out.insert(rel, std::fs::read(&path).expect("read"));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(root, root, &mut out);
        out
    }

    #[test]
    fn with_the_server_down_every_command_says_so_exits_5_and_changes_nothing() {
        let server = Server::start_private().expect("a private server");
        let team = TeamKb::new(&server).with_compile_hook();
        let first = team.write("first.md", "# first\n");
        let second = team.write("second.md", "# second\n");
        let new = team.write("new.md", "# new\n");
        team.ok(
            Host::A,
            &["add", first.to_str().unwrap(), second.to_str().unwrap()],
        );
        team.ok(Host::A, &["compile", "first"]);
        let state = |team: &TeamKb| {
            let mut export = team.json(Host::A, &["export", "--json"]);
            export["exported_at"].take();
            export
        };
        let before = state(&team);
        let files = tree(&team.kb());

        server.stop_immediate();
        let commands: [&[&str]; 13] = [
            &["list"],
            &["status"],
            &["log"],
            &["show", "first"],
            &["add", new.to_str().unwrap()],
            &["add", first.to_str().unwrap()],
            &["remove", "-y", "second"],
            &["compile", "--pending"],
            &["compile", "first"],
            &["doctor"],
            &["export", "--json"],
            &["lint"],
            &["watch", "--once"],
        ];
        for args in commands {
            for host in [Host::A, Host::B] {
                let out = team.run(host, args);
                assert_eq!(out.status.code(), Some(5), "{args:?}: {}", text(&out));
                let said = stderr(&out);
                assert!(said.contains(UNREACHABLE), "{args:?} says why: {said}");
                assert!(
                    said.contains("OPENKB_STATE_URL"),
                    "{args:?} says what to check: {said}"
                );
                assert_eq!(tree(&team.kb()), files, "{args:?} changed the KB folder");
            }
        }
        server.start();

        assert_eq!(state(&team), before, "the state is as it was");
        team.ok(Host::B, &["add", new.to_str().unwrap()]);
        assert_eq!(team.documents().len(), 3);
        team.assert_consistent();
    }
}
