//! Team mode beside local mode, same machine, same program: one KB of N documents (100,000
//! unless OPENKB_BENCH_N says otherwise) kept in `state.db` and the same KB moved into the
//! PostgreSQL server the test harness starts (`tests/support/pg_server.rs`: Unix socket,
//! `fsync=off`, so the server's own disk flushes are not counted; the SQLite side keeps
//! `synchronous=FULL`). Prints a Markdown table:
//!
//! - register one document at N documents (a durable write transaction with its log row, the
//!   way `add` commits), p50 / p99 over 2,000 registrations, through a write session;
//! - cold `openkb status`, `openkb list --json` and `openkb log -n 20` (median of several runs,
//!   process start included, output discarded);
//! - `openkb migrate` of an N-entry `hashes.json` and `openkb migrate --to-postgres` of the
//!   result.
//!
//! Run: `cargo bench --bench team`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openkb::state_url::StateEnv;

mod common;
#[path = "../tests/support/pg_server.rs"]
mod pg_server;

const BIN: &str = env!("CARGO_BIN_EXE_openkb");
const REGISTRATIONS: u64 = 2_000;

fn main() {
    let n: u64 = std::env::var("OPENKB_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let server = pg_server::server();
    let url = server.url_for(&server.create_database());
    let work = tempfile::tempdir().expect("temp dir");
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let openkb = |kb: &Path, args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("HOME", &home)
            .env("OPENKB_STATE_URL", &url)
            .arg("--kb-dir")
            .arg(kb)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    };
    let mut rows: Vec<(String, String, String)> = Vec::new();

    let local = work.path().join("local");
    write_legacy_kb(&local, n);
    let migrate = timed(&mut openkb(&local, &["migrate"]));
    let team = work.path().join("team");
    let status = Command::new("cp").arg("-a").arg(&local).arg(&team).status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "cp -a {}",
        local.display()
    );
    let to_postgres = timed(&mut openkb(&team, &["migrate", "--to-postgres"]));
    rows.push((
        format!("move the KB's state ({n} documents, {n} log rows)"),
        format!("`migrate` from hashes.json: {}", secs(migrate)),
        format!("`migrate --to-postgres`: {}", secs(to_postgres)),
    ));

    let state_env = StateEnv {
        url: Some(url.clone()),
        ..StateEnv::default()
    };
    let mut measured = Vec::new();
    for kb in [&local, &team] {
        let register = register_latencies(kb, &state_env, n);
        measured.push([
            format!(
                "p50 {} / p99 {}",
                millis(percentile(&register, 0.50)),
                millis(percentile(&register, 0.99))
            ),
            millis(median(30, || timed(&mut openkb(kb, &["status"])))),
            millis(median(10, || timed(&mut openkb(kb, &["list", "--json"])))),
            millis(median(30, || timed(&mut openkb(kb, &["log", "-n", "20"])))),
        ]);
    }
    let what = [
        format!("register one document at {n} documents ({REGISTRATIONS} registrations)"),
        format!("`openkb status`, {n} documents"),
        format!("`openkb list --json`, {n} documents"),
        format!("`openkb log -n 20`, {n} entries"),
    ];
    for (i, what) in what.into_iter().enumerate() {
        rows.push((what, measured[0][i].clone(), measured[1][i].clone()));
    }

    println!("| what | SQLite (local) | PostgreSQL (team, local socket) |");
    println!("| --- | --- | --- |");
    for (what, sqlite, postgres) in rows {
        println!("| {what} | {sqlite} | {postgres} |");
    }
}

/// An N-entry legacy KB (0.4-format `hashes.json` and `log.md`), as benches/commands.sh makes.
fn write_legacy_kb(kb: &Path, n: u64) {
    use std::io::Write;
    std::fs::create_dir_all(kb.join(".openkb")).expect("mkdir");
    std::fs::create_dir_all(kb.join("raw")).expect("mkdir");
    std::fs::create_dir_all(kb.join("wiki")).expect("mkdir");
    let mut registry = serde_json::Map::new();
    let mut log = String::from("# Operations Log\n\n");
    for i in 0..n {
        let stem = format!("doc-{i:06}");
        registry.insert(
            common::doc(i).hash,
            serde_json::json!({
                "name": format!("{stem}.md"), "doc_name": stem, "type": "md",
                "path": format!("inbox/{stem}.md"), "raw_path": format!("raw/{stem}.md"),
                "source_path": format!("wiki/sources/{stem}.md"),
            }),
        );
        log.push_str(&format!("## [2026-01-01 00:00:00] ingest | {stem}.md\n\n"));
    }
    let mut file = std::fs::File::create(kb.join(".openkb/hashes.json")).expect("hashes.json");
    serde_json::to_writer_pretty(&mut file, &registry).expect("hashes.json");
    writeln!(file).expect("hashes.json");
    std::fs::write(kb.join("wiki/log.md"), log).expect("log.md");
    std::fs::write(
        kb.join(".openkb/config.yaml"),
        "language: en\nmodel: gpt-5.4\npageindex_threshold: 20\n",
    )
    .expect("config.yaml");
}

/// One write session, `REGISTRATIONS` durable registrations (document + log row) after the
/// KB's `n`: the latency of each.
fn register_latencies(kb: &Path, state_env: &StateEnv, n: u64) -> Vec<Duration> {
    let session = openkb::Kb::at(kb)
        .expect("kb")
        .with_settings(openkb::settings::Settings {
            state: state_env.clone(),
            ..openkb::settings::Settings::default()
        })
        .write_session()
        .expect("write session");
    let mut latencies: Vec<Duration> = (n..n + REGISTRATIONS)
        .map(|i| {
            let doc = common::doc(i);
            let started = Instant::now();
            session
                .write(|tx| {
                    tx.upsert_document(&doc)?;
                    tx.append_log("ingest", doc.name.as_deref().unwrap_or(""))
                })
                .expect("register");
            started.elapsed()
        })
        .collect();
    latencies.sort();
    latencies
}

fn timed(cmd: &mut Command) -> Duration {
    let started = Instant::now();
    let out = cmd.stderr(Stdio::piped()).output().expect("run openkb");
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

/// The median of `runs` runs, after two warm-up runs.
fn median(runs: usize, mut run: impl FnMut() -> Duration) -> Duration {
    run();
    run();
    let mut times: Vec<Duration> = (0..runs).map(|_| run()).collect();
    times.sort();
    percentile(&times, 0.5)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}
