//! Faults: SIGKILL at many moments of `add`, `remove`, `migrate` and config writes (`use`
//! rewriting global.yaml, `init` writing config.yaml). Kill delays are spread over the measured
//! duration of an unkilled run, so the kills land at different moments on any machine.
//! Afterwards: the next command succeeds, `doctor --fix` then `doctor` report healthy, config
//! files are the old or the new version, and no temp file is left.

use crate::harness;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::harness::{Env, assert_consistent, make_files, stderr, stdout};
use openkb::config::YamlFile;
use openkb::kb::Kb;

/// Spawn `cmd`, SIGKILL it after `delay`; returns whether it was still running when killed.
fn kill_after(mut cmd: Command, delay: Duration) -> bool {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn openkb");
    std::thread::sleep(delay);
    let running = child.try_wait().expect("try_wait").is_none();
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL
    child.wait().expect("wait");
    running
}

/// `n` delays spread over `0..=1.2 * full` (a few land after the end: a finished run must
/// stay finished too).
fn delays(full: Duration, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|i| full.mul_f64(1.2 * i as f64 / (n - 1) as f64))
        .collect()
}

fn timed(mut cmd: Command) -> Duration {
    let started = Instant::now();
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    started.elapsed()
}

/// Temp files a killed process left are only swept by doctor once they are 5 minutes old (a
/// younger one may belong to a live writer): age them, as time would.
fn age_temp_files(root: &Path) -> usize {
    let kb = Kb::at(root).expect("kb");
    let temps = openkb::doctor::old_temp_files(&kb, Duration::ZERO).expect("walk");
    let old = SystemTime::now() - Duration::from_secs(600);
    for rel in &temps {
        let file = std::fs::File::options()
            .write(true)
            .open(root.join(rel))
            .expect("open temp");
        file.set_modified(old).expect("age temp");
    }
    temps.len()
}

fn assert_no_temp_files(root: &Path) {
    let kb = Kb::at(root).expect("kb");
    let left = openkb::doctor::old_temp_files(&kb, Duration::ZERO).expect("walk");
    assert!(left.is_empty(), "temp files left: {left:?}");
}

/// After a kill: `doctor --fix` repairs, a plain `doctor` then reports healthy, no temp file
/// and no intent is left, and every registered document has its files.
fn assert_repaired(env: &Env, what: &str) {
    assert_doctor_clean(env, what);
    assert_consistent(env);
}

/// [`assert_repaired`] without the registry-vs-files check, for the legacy fixture (whose
/// oldest entries have no `raw_path`, so its raw files look unowned to that check).
fn assert_doctor_clean(env: &Env, what: &str) {
    age_temp_files(&env.kb());
    let fix = env.run(&["doctor", "--fix"]);
    assert!(
        fix.status.success(),
        "{what}: doctor --fix\n{}{}",
        stdout(&fix),
        stderr(&fix)
    );
    let check = env.run(&["doctor"]);
    assert!(
        check.status.success(),
        "{what}: doctor after --fix\n{}{}",
        stdout(&check),
        stderr(&check)
    );
    assert_no_temp_files(&env.kb());
}

fn log_rows(env: &Env, op: &str) -> i64 {
    let conn = rusqlite::Connection::open(env.kb().join(".openkb/state.db")).expect("sqlite");
    conn.query_row("SELECT count(*) FROM log WHERE operation = ?1", [op], |r| {
        r.get(0)
    })
    .expect("count")
}

/// `openkb` with the env's HOME but no `--kb-dir`.
fn bare_cmd(env: &Env) -> Command {
    env.bare(env.path())
}

const ADD_FILES: usize = 60;
const ADD_KILLS: usize = 12;

#[test]
fn sigkill_during_folder_adds() {
    let env = Env::with_kb();
    // Timed on the second add: the first one into an empty KB runs slower than the rest.
    let timing = make_files(&env, "timing", ADD_FILES);
    let mut cmd = env.cmd();
    cmd.arg("add").arg(&timing);
    timed(cmd);
    let timing = make_files(&env, "timing2", ADD_FILES);
    for entry in walk_files(&timing) {
        std::fs::write(&entry, format!("{} timing2\n", entry.display())).expect("write");
    }
    let mut cmd = env.cmd();
    cmd.arg("add").arg(&timing);
    let full = timed(cmd);
    let mut expected = 2 * ADD_FILES;
    let mut interrupted = 0;
    for (i, delay) in delays(full, ADD_KILLS).into_iter().enumerate() {
        let folder = make_files(&env, &format!("in{i}"), ADD_FILES);
        // Distinct content per folder, so each folder adds ADD_FILES documents.
        for entry in walk_files(&folder) {
            let mut text = std::fs::read_to_string(&entry).expect("read");
            text.push_str(&format!("folder {i}\n"));
            std::fs::write(&entry, text).expect("write");
        }
        let mut cmd = env.cmd();
        cmd.arg("add").arg(&folder);
        interrupted += kill_after(cmd, delay) as usize;
        let what = format!("add killed after {delay:?} (full run {full:?})");
        if i % 2 == 0 {
            // The next command is the same add: its own recovery settles the killed one.
            let out = env.cmd().arg("add").arg(&folder).output().expect("add");
            assert!(out.status.success(), "{what}: re-run\n{}", stderr(&out));
            assert_repaired(&env, &what);
        } else {
            let out = env.run(&["list", "--json"]);
            assert!(out.status.success(), "{what}: list\n{}", stderr(&out));
            assert_repaired(&env, &what);
            let out = env.cmd().arg("add").arg(&folder).output().expect("add");
            assert!(out.status.success(), "{what}: re-run\n{}", stderr(&out));
        }
        expected += ADD_FILES;
        assert_eq!(env.docs().len(), expected, "{what}");
        assert_eq!(log_rows(&env, "ingest") as usize, expected, "{what}");
    }
    assert_consistent(&env);
    eprintln!("add: {ADD_KILLS} kills ({interrupted} mid-run) over {full:?}");
    // Under a loaded machine the timing run may be faster than later ones; a few kills must
    // still land mid-run for the test to mean anything.
    assert!(interrupted >= 2, "kills should land mid-run");
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

const REMOVE_KILLS: usize = 12;

#[test]
fn sigkill_during_removes() {
    let env = Env::with_kb();
    // Other pages link to each document, so a remove has wiki pages to rewrite.
    for i in 0..=REMOVE_KILLS {
        env.write(
            &format!("in/doc{i:02}.md"),
            &format!("# doc {i}\n\n{}\n", "text ".repeat(2000)),
        );
    }
    let out = env
        .cmd()
        .arg("add")
        .arg(env.path().join("in"))
        .output()
        .expect("add");
    assert!(out.status.success(), "{}", stderr(&out));
    for i in 0..=REMOVE_KILLS {
        env.write(
            &format!("kb/wiki/concepts/c{i:02}.md"),
            &format!("# c\n\nSee [[summaries/doc{i:02}]] and [[summaries/doc00]].\n"),
        );
        env.write(
            &format!("kb/wiki/summaries/doc{i:02}.md"),
            &format!("# doc{i:02}\n\nsummary\n"),
        );
    }
    let mut cmd = env.cmd();
    cmd.args(["remove", "-y", &format!("doc{REMOVE_KILLS:02}")]);
    let full = timed(cmd);
    let total = REMOVE_KILLS + 1;
    let mut interrupted = 0;
    for (i, delay) in delays(full, REMOVE_KILLS).into_iter().enumerate() {
        let name = format!("doc{i:02}");
        let mut cmd = env.cmd();
        cmd.args(["remove", "-y", &name]);
        interrupted += kill_after(cmd, delay) as usize;
        let what = format!("remove killed after {delay:?} (full run {full:?})");
        let out = env.run(&["status"]);
        assert!(out.status.success(), "{what}: status\n{}", stderr(&out));
        assert_repaired(&env, &what);
        // The document is wholly there or wholly gone, and each remove logged once.
        let gone = total - env.docs().len();
        assert_eq!(log_rows(&env, "remove") as usize, gone, "{what}");
        if let Some(doc) = env.doc_named(&name) {
            assert!(env.kb().join(doc.raw_path.expect("raw")).is_file());
            let out = env
                .cmd()
                .args(["remove", "-y", &name])
                .output()
                .expect("rm");
            assert!(out.status.success(), "{what}: re-run\n{}", stderr(&out));
        }
        assert!(env.doc_named(&name).is_none());
        let concept =
            std::fs::read_to_string(env.kb().join(format!("wiki/concepts/c{i:02}.md"))).expect("c");
        assert!(
            !concept.contains(&format!("[[summaries/{name}]]")),
            "{what}: link left in {concept}"
        );
    }
    assert_consistent(&env);
    eprintln!("remove: {REMOVE_KILLS} kills ({interrupted} mid-run) over {full:?}");
}

const USE_KILLS: usize = 12;

#[test]
fn sigkill_during_a_global_yaml_rewrite_leaves_the_old_or_the_new_version() {
    let env = Env::with_kb();
    let other = env.path().join("other");
    let out = bare_cmd(&env)
        .arg("--kb-dir")
        .arg(&other)
        .args(["init", "--model", "m", "--language", "en"])
        .output()
        .expect("init");
    assert!(out.status.success(), "{}", stderr(&out));
    let kbs = [
        env.kb().canonicalize().expect("kb"),
        other.canonicalize().expect("other"),
    ];
    let global = env.path().join("home/.config/openkb/global.yaml");
    let use_cmd = |target: &Path| {
        let mut cmd = bare_cmd(&env);
        cmd.arg("use").arg(target);
        cmd
    };
    let full = timed(use_cmd(&kbs[0]));
    let mut interrupted = 0;
    for (i, delay) in delays(full, USE_KILLS).into_iter().enumerate() {
        let before = std::fs::read_to_string(&global).expect("global.yaml");
        let target = &kbs[(i + 1) % 2];
        interrupted += kill_after(use_cmd(target), delay) as usize;
        let what = format!("use killed after {delay:?} (full run {full:?})");
        let text = std::fs::read_to_string(&global).expect("global.yaml");
        let parsed = YamlFile::parse(&global, &text).expect("global.yaml parses");
        let default = parsed.get_str("default_kb").expect("default_kb");
        assert!(kbs.iter().any(|k| k.to_string_lossy() == default), "{what}");
        // The next command succeeds (and completes the switch): its result is the new version,
        // which the killed one must equal if it is not the old one.
        let out = use_cmd(target).output().expect("use");
        assert!(out.status.success(), "{what}: {}", stderr(&out));
        let new = std::fs::read_to_string(&global).expect("global.yaml");
        assert_eq!(
            YamlFile::parse(&global, &new)
                .expect("parses")
                .get_str("default_kb"),
            Some(target.to_string_lossy().as_ref())
        );
        assert!(
            text == before || text == new,
            "{what}: neither old nor new:\n{text}\nold:\n{before}\nnew:\n{new}"
        );
        assert_repaired(&env, &what);
    }
    // Temp files of killed rewrites in ~/.config/openkb: the next rewrite sweeps them once
    // they are old (doctor only looks inside KBs).
    let config_dir = global.parent().expect("dir").to_path_buf();
    let temps = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&config_dir)
            .expect("dir")
            .flatten()
            .filter(|e| openkb::fsx::is_temp_name(&e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect()
    };
    let left = temps();
    // One more, as a kill between the temp write and the rename leaves it, so the sweep is
    // always exercised; and a young one, which may be a live writer's and must stay.
    std::fs::write(
        config_dir.join(".global.yaml.k1ll3d.tmp"),
        "default_kb: x\n",
    )
    .expect("temp");
    let young = config_dir.join(".global.yaml.y0ung1.tmp");
    for path in left
        .iter()
        .chain([&config_dir.join(".global.yaml.k1ll3d.tmp")])
    {
        let file = std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open");
        file.set_modified(SystemTime::now() - Duration::from_secs(600))
            .expect("age");
    }
    std::fs::write(&young, "default_kb: y\n").expect("temp");
    let out = use_cmd(&kbs[0]).output().expect("use");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(temps(), vec![young.clone()], "after a rewrite");
    std::fs::remove_file(&young).expect("rm");
    eprintln!(
        "use: {USE_KILLS} kills ({interrupted} mid-run) over {full:?}; {} temp file(s) left \
         in ~/.config/openkb, swept by the next rewrite",
        left.len()
    );
}

const INIT_KILLS: usize = 10;

#[test]
fn sigkill_during_init_leaves_no_config_or_the_whole_one() {
    let reference = Env::with_kb();
    let config_text =
        std::fs::read_to_string(reference.kb().join(".openkb/config.yaml")).expect("config");
    let timing = Env::new();
    let mut cmd = timing.cmd();
    cmd.args(["init", "--model", "m", "--language", "en"]);
    let full = timed(cmd);
    let mut interrupted = 0;
    for delay in delays(full, INIT_KILLS) {
        let env = Env::new();
        let mut cmd = env.cmd();
        cmd.args(["init", "--model", "m", "--language", "en"]);
        interrupted += kill_after(cmd, delay) as usize;
        let what = format!("init killed after {delay:?} (full run {full:?})");
        let config = env.kb().join(".openkb/config.yaml");
        if config.exists() {
            let text = std::fs::read_to_string(&config).expect("config");
            assert_eq!(
                text, config_text,
                "{what}: config.yaml neither absent nor whole"
            );
        }
        // state.db is built aside and linked in: absent, or whole at the current schema.
        let db = env.kb().join(".openkb/state.db");
        if db.exists() {
            let conn = rusqlite::Connection::open(&db).expect("sqlite");
            let version: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .expect("user_version");
            assert_eq!(
                version,
                openkb::state::schema::latest_version(),
                "{what}: a partial state.db"
            );
            assert!(config.exists(), "{what}: state.db without config.yaml");
        }
        // The next command, init again, finishes an interrupted init (or says the KB exists
        // when the killed one had completed).
        let was_complete = config.exists() && db.exists();
        let out = env.run(&["init", "--model", "m", "--language", "en"]);
        if was_complete {
            assert!(stderr(&out).contains("already"), "{what}: {}", stderr(&out));
        } else {
            assert!(out.status.success(), "{what}: init again\n{}", stderr(&out));
        }
        let out = env.run(&["status"]);
        assert!(out.status.success(), "{what}: status\n{}", stderr(&out));
        assert_eq!(
            std::fs::read_to_string(&config).expect("config"),
            config_text,
            "{what}"
        );
        assert_repaired(&env, &what);
    }
    eprintln!("init: {INIT_KILLS} kills ({interrupted} mid-run) over {full:?}");
}

const MIGRATE_KILLS: usize = 10;
/// Extra log.md entries so that a migration takes long enough to be killed mid-way.
const MIGRATE_EXTRA_LOG: usize = 20_000;

/// A copy of the legacy fixture at `<env>/kb` with a long `wiki/log.md` history.
fn legacy_copy(env: &Env) {
    harness::copy_fixture_kb(&env.kb());
    let log = env.kb().join("wiki/log.md");
    let mut text = std::fs::read_to_string(&log).expect("log.md");
    for i in 0..MIGRATE_EXTRA_LOG {
        text.push_str(&format!(
            "\n## [2025-01-01 00:{:02}:{:02}] query | question {i}\n",
            i / 60 % 60,
            i % 60
        ));
    }
    std::fs::write(&log, text).expect("log.md");
}

#[test]
fn sigkill_during_migrate() {
    let timing = Env::new();
    legacy_copy(&timing);
    let mut cmd = timing.cmd();
    cmd.arg("migrate");
    let full = timed(cmd);
    let expected_log = log_rows_total(&timing);
    let mut interrupted = 0;
    for delay in delays(full, MIGRATE_KILLS) {
        let env = Env::new();
        legacy_copy(&env);
        let mut cmd = env.cmd();
        cmd.arg("migrate");
        interrupted += kill_after(cmd, delay) as usize;
        let what = format!("migrate killed after {delay:?} (full run {full:?})");
        let db = env.kb().join(".openkb/state.db");
        let hashes = env.kb().join(".openkb/hashes.json");
        // Either not migrated (hashes.json, no state.db) or migrated whole.
        if db.exists() {
            assert_eq!(env.docs().len(), 50, "{what}: partial state.db");
        } else {
            assert!(hashes.exists(), "{what}: neither registry");
        }
        // The next command succeeds: migrate again (finishing or doing it).
        let out = env.run(&["migrate"]);
        assert!(
            out.status.success(),
            "{what}: migrate again\n{}",
            stderr(&out)
        );
        assert!(!hashes.exists(), "{what}: hashes.json still there");
        assert_eq!(env.docs().len(), 50, "{what}");
        assert_eq!(log_rows_total(&env), expected_log, "{what}: log rows");
        assert_doctor_clean(&env, &what);
    }
    eprintln!("migrate: {MIGRATE_KILLS} kills ({interrupted} mid-run) over {full:?}");
    assert!(interrupted >= 2, "kills should land mid-run");
}

fn log_rows_total(env: &Env) -> i64 {
    let conn = rusqlite::Connection::open(env.kb().join(".openkb/state.db")).expect("sqlite");
    conn.query_row("SELECT count(*) FROM log", [], |r| r.get(0))
        .expect("count")
}
