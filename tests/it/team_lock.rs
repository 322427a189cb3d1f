//! The team KB lock through the command line, against a real PostgreSQL server (the test
//! harness starts one): its configuration and the refusals of it, exclusion between two
//! processes with the waiting message and OPENKB_LOCK_TIMEOUT (exit 4), a SIGKILLed holder
//! freeing the lock, a terminated holder fenced (exit 5), an unreachable server (exit 5).
//!
//! The holder is an `openkb compile` whose hook announces itself through a FIFO and blocks
//! on another: the test knows the lock is held without sleeping, and decides when it ends.
//! Both "hosts" set `OPENKB_FS_TYPE=nfs`, so openkb skips the flock and the PostgreSQL lock
//! alone excludes them.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::harness::{self, PythonLockHolder, clean, stderr, stdout, wait_output};
use crate::pg_server;

/// A temp folder with its own HOME and a team KB at `<tmp>/kb` whose state is in the test
/// server.
struct Team {
    dir: tempfile::TempDir,
    url: String,
}

impl Team {
    fn new() -> Team {
        let team = Team {
            dir: tempfile::tempdir().unwrap(),
            url: pg_server::server().url(),
        };
        std::fs::create_dir_all(team.path().join("home")).unwrap();
        let out = team.run(&["init", "-m", "m", "-l", "en", "--backend", "postgres"]);
        assert!(out.status.success(), "init: {}", stderr(&out));
        team
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn kb(&self) -> PathBuf {
        self.path().join("kb")
    }

    /// `openkb --kb-dir <kb>` as a member of the team: the server from OPENKB_STATE_URL, no
    /// libpq variable of the test's environment, and no flock (a network filesystem).
    fn cmd(&self) -> Command {
        let mut cmd = self.member();
        cmd.arg("--kb-dir").arg(self.kb());
        cmd
    }

    /// [`Team::cmd`] without `--kb-dir`.
    fn member(&self) -> Command {
        let mut cmd = harness::openkb(&self.path().join("home"), self.path());
        cmd.env("OPENKB_STATE_URL", &self.url)
            .env("OPENKB_FS_TYPE", "nfs");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn config(&self) -> PathBuf {
        self.kb().join(".openkb/config.yaml")
    }

    fn add_to_config(&self, text: &str) {
        let mut config = std::fs::read_to_string(self.config()).unwrap();
        config.push_str(text);
        std::fs::write(self.config(), config).unwrap();
    }

    fn schema(&self) -> String {
        let config = std::fs::read_to_string(self.config()).unwrap();
        let kb_id = config
            .lines()
            .find_map(|l| l.trim().strip_prefix("kb_id: "))
            .expect("kb_id in config");
        format!("openkb_{}", kb_id.replace('-', ""))
    }

    /// `status` of the document `doc_name` in the server.
    fn status_of(&self, doc_name: &str) -> String {
        pg_server::server().psql(&format!(
            "SELECT status FROM {}.documents WHERE doc_name = '{doc_name}'",
            self.schema()
        ))
    }

    /// A pending document `a` and a compile hook that writes its summary, announces its
    /// process group on `ready.fifo` and blocks until `go.fifo` is written.
    fn blocking_compile(&self) -> Holder {
        let added = self.run(&["add", &self.write("a.md", "alpha\n")]);
        assert!(added.status.success(), "add: {}", stderr(&added));
        let config = std::fs::read_to_string(self.config()).unwrap();
        self.add_to_config(
            "compile_command: 'echo \"# s\" > \"wiki/summaries/$OPENKB_DOC_NAME.md\"; \
             echo $$ > ../ready.fifo; read x < ../go.fifo'\n",
        );
        let ready = self.path().join("ready.fifo");
        let go = self.path().join("go.fifo");
        for fifo in [&ready, &go] {
            let made = clean("mkfifo").arg(fifo).status().unwrap();
            assert!(made.success());
        }
        let child = self
            .cmd()
            .args(["compile", "--pending"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pgid = String::new();
        std::fs::File::open(&ready)
            .unwrap()
            .read_to_string(&mut pgid)
            .unwrap();
        // The holder read its hook; the commands the test runs next must not run it too.
        std::fs::write(self.config(), config).unwrap();
        Holder {
            child: Some(child),
            hook_group: pgid.trim().parse().unwrap(),
            go,
        }
    }
}

/// An `openkb compile` holding the KB's exclusive lock while its hook waits.
struct Holder {
    child: Option<Child>,
    hook_group: i32,
    go: PathBuf,
}

impl Holder {
    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Let the hook end (if it still runs: recovery may have ended it) and wait for the
    /// command.
    fn release(mut self) -> Output {
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking: with no hook left to read it, opening the FIFO fails (ENXIO) at once
        // instead of waiting for a reader forever.
        if let Ok(mut go) = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.go)
        {
            let _ = writeln!(go, "go");
        }
        wait_output(self.child.take().unwrap())
    }

    /// SIGKILL the command (its hook is ended by the guard's drop).
    fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if self.hook_group > 1 {
            // SAFETY: a plain syscall on the process group this test's hook created.
            unsafe {
                libc::killpg(self.hook_group, libc::SIGKILL);
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_team_kb_keeps_its_state_in_the_server_and_says_so() {
    let team = Team::new();
    let config = std::fs::read_to_string(team.config()).unwrap();
    assert!(
        config.contains("state:\n  backend: postgres\n  kb_id: "),
        "{config}"
    );
    assert!(
        !config.contains("host="),
        "no connection in the shared folder: {config}"
    );
    assert!(!team.kb().join(".openkb/state.db").exists());
    let added = team.run(&["add", &team.write("a.md", "alpha\n")]);
    assert!(added.status.success(), "{}", stderr(&added));
    assert_eq!(team.status_of("a"), "pending");

    let status = team.run(&["status", "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["state"]["backend"], "postgresql");
    assert_eq!(json["state"]["schema"], team.schema());
    assert!(
        json["state"]["server_version"]
            .as_str()
            .unwrap()
            .starts_with("PostgreSQL "),
        "{json:#}"
    );
    assert!(json["state"]["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(json["total_documents"], 1);

    let doctor = team.run(&["doctor"]);
    let text = stdout(&doctor);
    assert!(doctor.status.success(), "{text}{}", stderr(&doctor));
    assert!(text.contains("State: PostgreSQL "), "{text}");
    assert!(text.contains(&team.schema()), "{text}");
    // The network filesystem (here the override) is fine in team mode, and doctor says why.
    assert!(text.contains("network filesystem (nfs)"), "{text}");
    assert!(text.contains("fine for a team KB"), "{text}");
    assert!(!text.contains("state.db is missing"), "{text}");
}

#[test]
fn passwords_in_the_config_and_a_missing_url_are_refused_with_what_to_do() {
    let team = Team::new();
    team.add_to_config("  password: hunter2\n");
    let out = team.run(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains(".openkb/config.yaml"), "{message}");
    assert!(message.contains("`state.password`"), "{message}");
    assert!(message.contains("OPENKB_STATE_URL"), "{message}");
    assert!(message.contains("~/.pgpass"), "{message}");
    assert!(
        !message.contains("hunter2"),
        "the secret is echoed: {message}"
    );

    let team = Team::new();
    let out = team
        .cmd()
        .env_remove("OPENKB_STATE_URL")
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains("is a team KB"), "{message}");
    assert!(message.contains("OPENKB_STATE_URL is not set"), "{message}");

    // init refuses before creating anything.
    let fresh = team.path().join("fresh");
    let out = team
        .member()
        .env_remove("OPENKB_STATE_URL")
        .arg("--kb-dir")
        .arg(&fresh)
        .args(["init", "-m", "m", "-l", "en", "--backend", "postgres"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!fresh.join(".openkb").exists());
}

#[test]
fn an_unreachable_server_is_exit_5_and_nothing_is_written() {
    let team = Team::new();
    let gone = team.path().join("no-server");
    std::fs::create_dir(&gone).unwrap();
    let doc = team.write("b.md", "beta\n");
    let raw_before = std::fs::read_dir(team.kb().join("raw")).unwrap().count();
    for args in [vec!["add", doc.as_str()], vec!["list"], vec!["doctor"]] {
        let out = team
            .cmd()
            .env(
                "OPENKB_STATE_URL",
                format!("host={} user=openkb dbname=postgres", gone.display()),
            )
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(5), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("cannot reach the state server"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let raw_after = std::fs::read_dir(team.kb().join("raw")).unwrap().count();
    assert_eq!(
        raw_before, raw_after,
        "add wrote into raw/ without its state"
    );
}

#[test]
fn a_second_process_waits_says_why_and_gives_up_with_exit_4() {
    let team = Team::new();
    let holder = team.blocking_compile();
    let doc = team.write("b.md", "beta\n");
    for args in [vec!["add", doc.as_str()], vec!["status"]] {
        let out = team
            .cmd()
            .env("OPENKB_LOCK_TIMEOUT", "0.5")
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(4), "{args:?}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(
            message.contains("waiting for another openkb process on"),
            "{message}"
        );
        assert!(
            message.contains(&format!(" {}", holder.pid())),
            "the holder is named: {message}"
        );
        assert!(message.contains("timed out after 0.5s"), "{message}");
        assert!(message.contains("OPENKB_LOCK_TIMEOUT"), "{message}");
    }
    assert_eq!(
        team.status_of("b"),
        "",
        "b was registered while the lock was held"
    );

    // Without a bound it waits, and goes on once the holder lets go.
    let waiter = team
        .cmd()
        .args(["add", &doc])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let held = holder.release();
    assert!(held.status.success(), "{}", stderr(&held));
    let waited = wait_output(waiter);
    assert!(waited.status.success(), "{}", stderr(&waited));
    assert_eq!(team.status_of("a"), "compiled");
    assert_eq!(team.status_of("b"), "pending");
}

#[test]
fn a_sigkilled_holder_frees_the_lock_and_the_next_holder_settles_its_work() {
    let team = Team::new();
    let holder = team.blocking_compile();
    holder.kill();
    // The server sees the connection close: the next command gets the lock within its
    // bound, and its recovery settles the killed compile.
    let out = team
        .cmd()
        .env("OPENKB_LOCK_TIMEOUT", "10")
        .args(["add", &team.write("b.md", "beta\n")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(team.status_of("b"), "pending");
    assert_eq!(
        team.status_of("a"),
        "failed",
        "the killed compile was settled"
    );
    let doctor = team.run(&["doctor"]);
    assert!(doctor.status.success(), "{}", stdout(&doctor));
}

#[test]
fn a_terminated_holder_is_fenced_commits_nothing_and_puts_its_files_back() {
    let team = Team::new();
    let holder = team.blocking_compile();
    let summary = team.kb().join("wiki/summaries/a.md");
    assert!(
        summary.exists(),
        "the hook wrote the summary before blocking"
    );
    // The holder's sessions end (a partition, an administrator): another host gets the
    // lock at once and moves the epoch on.
    let ended = pg_server::server().terminate_backends(&format!(
        "application_name LIKE 'openkb % {}'",
        holder.pid()
    ));
    assert!(ended >= 1, "the holder's lock session was found");
    let other = team
        .cmd()
        .env("OPENKB_LOCK_TIMEOUT", "10")
        .args(["add", &team.write("b.md", "beta\n")])
        .output()
        .unwrap();
    assert!(other.status.success(), "{}", stderr(&other));

    let fenced = holder.release();
    assert_eq!(fenced.status.code(), Some(5), "{}", stderr(&fenced));
    assert!(
        stderr(&fenced).contains("lost the KB lock"),
        "{}",
        stderr(&fenced)
    );
    assert_ne!(team.status_of("a"), "compiled", "a fenced holder committed");
    assert!(!summary.exists(), "the fenced compile left its summary");
}

#[test]
fn an_openkb_run_by_the_compile_hook_refuses_at_once_instead_of_waiting_for_its_parent() {
    let team = Team::new();
    let bin = env!("CARGO_BIN_EXE_openkb");
    team.add_to_config(&format!(
        "compile_command: 'OPENKB_LOCK_TIMEOUT=10 {bin} --kb-dir \"$OPENKB_KB_DIR\" list \
         > ../nested.out 2>&1; echo $? > ../nested.code'\n"
    ));
    let out = team.run(&["add", &team.write("a.md", "alpha\n")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let code = std::fs::read_to_string(team.path().join("nested.code")).unwrap();
    let text = std::fs::read_to_string(team.path().join("nested.out")).unwrap();
    assert_eq!(code.trim(), "1", "{text}");
    assert!(text.contains("started by the compile hook"), "{text}");
    assert!(!text.contains("waiting for another"), "{text}");
}

#[test]
fn the_flock_is_still_taken_where_it_works_and_skipped_on_a_network_filesystem() {
    let team = Team::new();
    // The Python tool knows only the flock: on a local disk a team KB still respects it.
    let python = PythonLockHolder::hold(&team.kb().join(".openkb/ingest.lock"), true);
    let doc = team.write("a.md", "alpha\n");
    let out = team
        .cmd()
        .env_remove("OPENKB_FS_TYPE")
        .env("OPENKB_LOCK_TIMEOUT", "0.5")
        .args(["add", &doc])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(".openkb/ingest.lock"),
        "the flock is named: {}",
        stderr(&out)
    );
    assert_eq!(team.status_of("a"), "");
    // On a network filesystem the flock excludes nobody on other machines and can hang: the
    // advisory lock alone is taken.
    let out = team
        .cmd()
        .env("OPENKB_LOCK_TIMEOUT", "0.5")
        .args(["add", &doc])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(team.status_of("a"), "pending");
    python.release();
}
