//! `openkb migrate --to-postgres` and `--to-sqlite` against a real PostgreSQL server (the test
//! harness starts one): a KB's whole state moves and comes back byte-identical, the old state
//! is kept aside, a move killed at any step leaves a usable KB, and refusals change nothing.
//! Each test works in a database of its own, so what it counts is its own.

use std::process::Output;

use crate::harness::{Env, legacy_kb, names_starting_with, stderr, stdout};
use crate::pg_server;
use openkb::state::Queries;

/// A KB (the legacy fixture, migrated: 50 documents of every era, its log) and a database
/// of its own on the test server.
struct TeamEnv {
    env: Env,
    database: String,
}

impl TeamEnv {
    fn new() -> TeamEnv {
        let env = Env::new();
        legacy_kb(&env);
        let database = pg_server::server().create_database();
        TeamEnv { env, database }
    }

    /// `openkb args...` with OPENKB_STATE_URL naming this test's database and no other
    /// libpq variable inherited.
    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let mut cmd = self.env.cmd();
        for var in [
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGPASSWORD",
            "PGDATABASE",
            "PGPASSFILE",
        ] {
            cmd.env_remove(var);
        }
        cmd.env(
            "OPENKB_STATE_URL",
            pg_server::server().url_for(&self.database),
        );
        cmd.envs(vars.iter().copied());
        cmd.args(args).output().expect("run openkb")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "openkb {args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        out
    }

    fn psql(&self, sql: &str) -> String {
        pg_server::server().psql_in(&self.database, sql)
    }

    /// The openkb schemas in this test's database, by name.
    fn schemas(&self) -> Vec<String> {
        let out = self.psql(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'openkb\\_%' ORDER BY nspname",
        );
        out.lines().map(str::to_owned).collect()
    }

    fn config(&self) -> String {
        std::fs::read_to_string(self.env.kb().join(".openkb/config.yaml")).unwrap()
    }

    fn kb_id(&self) -> String {
        let config = self.config();
        let line = config
            .lines()
            .find(|l| l.trim_start().starts_with("kb_id:"))
            .unwrap_or_else(|| panic!("no kb_id in config:\n{config}"));
        line.split_once(':').unwrap().1.trim().to_owned()
    }

    /// Files in .openkb/ whose names start with `prefix`.
    fn openkb_files(&self, prefix: &str) -> Vec<String> {
        names_starting_with(&self.env.kb().join(".openkb"), prefix)
    }

    /// `export --json` (without the time it was made) and `export --legacy-json`, as text.
    fn exports(&self) -> (String, String) {
        let mut json: serde_json::Value =
            serde_json::from_slice(&self.ok(&["export", "--json"]).stdout).unwrap();
        json.as_object_mut().unwrap().remove("exported_at");
        (
            serde_json::to_string_pretty(&json).unwrap(),
            stdout(&self.ok(&["export", "--legacy-json"])),
        )
    }

    fn assert_local_kb_usable(&self, documents: usize) {
        assert!(
            !self.config().contains("backend: postgres"),
            "{}",
            self.config()
        );
        let listed = self.ok(&["list", "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
        assert_eq!(json["documents"].as_array().unwrap().len(), documents);
    }
}

/// The process stopped at its injected crash point (SIGABRT), not on an error of its own.
fn assert_aborted(out: &Output, point: &str) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{point}: expected the crash point to abort the process: {}",
        stderr(out)
    );
}

fn hex(kb_id: &str) -> String {
    kb_id.replace('-', "")
}

#[test]
fn a_kb_moves_into_postgresql_and_back_unchanged() {
    let team = TeamEnv::new();
    let before = team.exports();
    let moved = team.ok(&["migrate", "--to-postgres"]);
    let text = stdout(&moved);
    assert!(text.contains("50 documents"), "{text}");
    assert!(text.contains("checksums verified"), "{text}");

    // The config names the KB; the local database is kept aside, whole.
    let config = team.config();
    assert!(config.contains("backend: postgres"), "{config}");
    let kb_id = team.kb_id();
    assert!(text.contains(&kb_id), "{text}");
    assert!(!team.env.kb().join(".openkb/state.db").exists());
    let aside = team.openkb_files("state.db.local-");
    assert_eq!(aside.len(), 1, "{aside:?}");
    let kept = openkb::state::Store::open_read_only(&team.env.kb().join(".openkb").join(&aside[0]))
        .unwrap();
    assert_eq!(kept.list().unwrap().len(), 50);

    // The server holds every document, in registry order, and every log entry.
    let schema = format!("openkb_{}", hex(&kb_id));
    assert_eq!(team.schemas(), std::slice::from_ref(&schema));
    assert_eq!(
        team.psql(&format!("SELECT count(*) FROM {schema}.documents")),
        "50"
    );
    let local_hashes: Vec<String> = kept.list().unwrap().into_iter().map(|d| d.hash).collect();
    let server_hashes = team.psql(&format!(
        "SELECT hash FROM {schema}.documents ORDER BY position"
    ));
    assert_eq!(server_hashes.lines().collect::<Vec<_>>(), local_hashes);
    assert_eq!(
        team.psql(&format!("SELECT count(*) FROM {schema}.log")),
        kept.reader().unwrap().log_count().unwrap().to_string()
    );
    assert_eq!(
        team.psql(&format!(
            "SELECT value FROM {schema}.meta WHERE key = 'kb_id'"
        )),
        kb_id
    );

    // In team mode the exports read the server, and say exactly what they said before.
    // (`schema_version` is the version of the schema the state is in: PostgreSQL's own list.)
    let in_team_mode = team.exports();
    assert_eq!(
        in_team_mode.1, before.1,
        "export --legacy-json differs in team mode"
    );
    let mut team_json: serde_json::Value = serde_json::from_str(&in_team_mode.0).unwrap();
    let local_json: serde_json::Value = serde_json::from_str(&before.0).unwrap();
    assert_eq!(
        team_json["schema_version"],
        openkb::state::postgres::schema::latest_version()
    );
    team_json["schema_version"] = local_json["schema_version"].clone();
    assert!(
        team_json == local_json,
        "export --json differs in team mode"
    );

    // And back: a fresh state.db, the config local again, the schema renamed aside.
    let back = team.ok(&["migrate", "--to-sqlite"]);
    assert!(stdout(&back).contains("50 documents"), "{}", stdout(&back));
    assert!(!team.config().contains("backend:"), "{}", team.config());
    let schemas = team.schemas();
    assert_eq!(schemas.len(), 1, "{schemas:?}");
    assert!(
        schemas[0].starts_with(&format!("{schema}_moved_")),
        "{schemas:?}"
    );
    assert!(team.exports() == before, "exports differ after the moves");
    team.assert_local_kb_usable(50);
    // The KB keeps working: a new document goes after the moved ones.
    team.env.write("new.md", "# New\n\nafter the moves\n");
    team.ok(&["add", "new.md"]);
    let docs = team.env.docs();
    assert_eq!(docs.len(), 51);
    assert!(docs[50].position > docs[49].position);
}

#[test]
fn what_a_team_adds_comes_back_with_the_kb() {
    let team = TeamEnv::new();
    team.ok(&["migrate", "--to-postgres"]);
    team.env.write("team.md", "# Team\n\nadded in team mode\n");
    team.ok(&["add", "team.md"]);
    let schema = format!("openkb_{}", hex(&team.kb_id()));
    assert_eq!(
        team.psql(&format!("SELECT count(*) FROM {schema}.documents")),
        "51"
    );
    let log_rows = team.psql(&format!("SELECT count(*) FROM {schema}.log"));
    team.ok(&["migrate", "--to-sqlite"]);
    let docs = team.env.docs();
    assert_eq!(docs.len(), 51);
    assert_eq!(docs[50].doc_name.as_deref(), Some("team"));
    assert!(docs[50].position > docs[49].position);
    let store = team.env.store();
    assert_eq!(
        store.reader().unwrap().log_count().unwrap().to_string(),
        log_rows
    );
}

#[test]
fn a_move_killed_before_its_commit_leaves_the_local_kb_and_an_empty_server() {
    let team = TeamEnv::new();
    let before = team.exports();
    let killed = team.run_env(
        &["migrate", "--to-postgres"],
        &[("OPENKB_TEST_ABORT_AT", "to-postgres-commit")],
    );
    assert_aborted(&killed, "to-postgres-commit");
    assert!(team.schemas().is_empty(), "{:?}", team.schemas());
    assert!(team.openkb_files("state.db.local-").is_empty());
    team.assert_local_kb_usable(50);
    assert!(team.exports() == before, "exports differ");
    // Nothing stands in the way of the move done again.
    team.ok(&["migrate", "--to-postgres"]);
    assert_eq!(team.schemas().len(), 1);
}

#[test]
fn a_move_killed_before_the_config_switch_leaves_the_local_kb_working() {
    let team = TeamEnv::new();
    let killed = team.run_env(
        &["migrate", "--to-postgres"],
        &[("OPENKB_TEST_ABORT_AT", "to-postgres-config")],
    );
    assert_aborted(&killed, "to-postgres-config");
    // The copy was committed, but no config names it: the KB is local and whole.
    assert_eq!(team.schemas().len(), 1);
    team.assert_local_kb_usable(50);
    team.env.write("more.md", "# More\n\nstill local\n");
    team.ok(&["add", "more.md"]);
    team.ok(&["migrate", "--to-postgres"]);
    let kb_id = team.kb_id();
    assert!(team.schemas().contains(&format!("openkb_{}", hex(&kb_id))));
    assert_eq!(
        team.psql(&format!(
            "SELECT count(*) FROM openkb_{}.documents",
            hex(&kb_id)
        )),
        "51"
    );
}

#[test]
fn a_move_killed_before_setting_state_db_aside_is_finished_by_the_way_back() {
    let team = TeamEnv::new();
    let before = team.exports();
    let killed = team.run_env(
        &["migrate", "--to-postgres"],
        &[("OPENKB_TEST_ABORT_AT", "to-postgres-set-aside")],
    );
    assert_aborted(&killed, "to-postgres-set-aside");
    assert!(team.config().contains("backend: postgres"));
    assert!(team.env.kb().join(".openkb/state.db").exists());
    // The way back sets the stale state.db aside and builds a new one from the server.
    let back = team.ok(&["migrate", "--to-sqlite"]);
    assert!(stderr(&back).contains("set aside"), "{}", stderr(&back));
    assert_eq!(team.openkb_files("state.db.local-").len(), 1);
    team.assert_local_kb_usable(50);
    assert!(team.exports() == before, "exports differ");
}

#[test]
fn a_way_back_killed_at_any_step_leaves_a_usable_kb_and_can_be_run_again() {
    for point in ["to-sqlite-commit", "to-sqlite-config", "to-sqlite-retire"] {
        let team = TeamEnv::new();
        let before = team.exports();
        team.ok(&["migrate", "--to-postgres"]);
        let killed = team.run_env(
            &["migrate", "--to-sqlite"],
            &[("OPENKB_TEST_ABORT_AT", point)],
        );
        assert_aborted(&killed, point);
        if point == "to-sqlite-retire" {
            // The switch was made: the KB is local again, the schema merely not renamed.
            team.assert_local_kb_usable(50);
        } else {
            // Still a team KB: the schema is intact, the way back can be run again.
            assert!(team.config().contains("backend: postgres"), "{point}");
            assert_eq!(team.schemas().len(), 1, "{point}");
            team.ok(&["migrate", "--to-sqlite"]);
            assert!(
                team.openkb_files("state.db.importing-").is_empty(),
                "{point}: {:?}",
                team.openkb_files("state.db.importing-")
            );
            team.assert_local_kb_usable(50);
        }
        assert!(team.exports() == before, "{point}: exports differ");
    }
}

#[test]
fn moves_that_cannot_be_made_are_refused_and_change_nothing() {
    let team = TeamEnv::new();
    let kb = team.env.kb();
    let config_before = team.config();

    // No server named: says what to set.
    let mut cmd = team.env.cmd();
    for var in [
        "OPENKB_STATE_URL",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.args(["migrate", "--to-postgres"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("OPENKB_STATE_URL"),
        "{}",
        stderr(&out)
    );

    // A server that is not there: exit 5, nothing written.
    let nowhere = tempfile::tempdir().unwrap();
    let out = team.run_env(
        &["migrate", "--to-postgres"],
        &[(
            "OPENKB_STATE_URL",
            &format!("host={} port=5999 user=openkb", nowhere.path().display()),
        )],
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));

    // A local KB has nothing to bring back.
    let out = team.run(&["migrate", "--to-sqlite"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(team.config(), config_before);
    assert!(kb.join(".openkb/state.db").exists());
    assert!(team.schemas().is_empty());

    // A team KB is not moved in twice.
    team.ok(&["migrate", "--to-postgres"]);
    let out = team.run(&["migrate", "--to-postgres"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already a team KB"),
        "{}",
        stderr(&out)
    );
    assert_eq!(team.schemas().len(), 1);
}
