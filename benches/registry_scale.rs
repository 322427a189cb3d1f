//! 100,000 one-by-one durable registrations, each with its log row, the way `openkb add`
//! commits documents. Prints the total time and per-registration latency percentiles overall
//! and for the last 10,000 (a registry of 90k-100k documents), to show the cost per add stays
//! flat. Run: `cargo bench --bench registry_scale` (OPENKB_BENCH_N overrides 100000).

use std::time::{Duration, Instant};

mod common;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn main() {
    // `cargo bench` passes --bench; any other argument is a criterion-style filter we ignore.
    let n: u64 = std::env::var("OPENKB_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join(".openkb")).expect("mkdir");
    // Through a write session, as every command writes (identity check included).
    let store = openkb::Kb::at(dir.path())
        .expect("kb")
        .write_session_creating()
        .expect("open");
    let mut latencies = Vec::with_capacity(n as usize);
    let started = Instant::now();
    for i in 0..n {
        let doc = common::doc(i);
        let t = Instant::now();
        store
            .write(|tx| {
                tx.upsert_document(&doc)?;
                tx.append_log("ingest", doc.name.as_deref().unwrap_or(""))
            })
            .expect("register");
        latencies.push(t.elapsed());
    }
    let total = started.elapsed();
    let tail_start = latencies.len().saturating_sub(10_000);
    let mut tail = latencies[tail_start..].to_vec();
    latencies.sort();
    tail.sort();
    println!("registrations: {n}");
    println!("total: {:.2} s", total.as_secs_f64());
    println!(
        "all:        p50 {:.3} ms  p99 {:.3} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "last 10000: p50 {:.3} ms  p99 {:.3} ms",
        percentile(&tail, 0.50).as_secs_f64() * 1e3,
        percentile(&tail, 0.99).as_secs_f64() * 1e3
    );
}
