//! Criterion benchmarks of the state engine: durable upserts at several registry sizes and the
//! lookups every command makes. Run: `cargo bench --bench store`.

use std::path::Path;

use common::doc;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use openkb::session::WriteSession;
use openkb::state::Queries;

mod common;

/// A write session on a new KB holding `n` documents, filled in one transaction. Writes go
/// through the session as every command's do (identity check included).
fn store_with(dir: &Path, n: u64) -> WriteSession {
    std::fs::create_dir_all(dir.join(".openkb")).unwrap();
    let store = openkb::Kb::at(dir)
        .unwrap()
        .write_session_creating()
        .unwrap();
    store
        .write(|tx| {
            for i in 0..n {
                tx.upsert_document(&doc(i))?;
            }
            Ok(())
        })
        .unwrap();
    store.checkpoint().unwrap();
    store
}

fn upsert(c: &mut Criterion) {
    let mut group = c.benchmark_group("upsert_with_log_row");
    for size in [0u64, 10_000, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), size);
        let mut next = 1u64 << 40;
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                next += 1;
                let d = doc(next);
                store
                    .write(|tx| {
                        tx.upsert_document(&d)?;
                        tx.append_log("ingest", d.name.as_deref().unwrap_or(""))
                    })
                    .unwrap();
            })
        });
    }
    group.finish();
}

fn lookups(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), 100_000);
    let reader = store.reader().unwrap();
    let hash = format!("{:064x}", 77_777);
    c.bench_function("is_known/100k", |b| {
        b.iter(|| assert!(reader.is_known(&hash).unwrap()))
    });
    c.bench_function("get/100k", |b| {
        b.iter(|| assert!(reader.get(&hash).unwrap().is_some()))
    });
    c.bench_function("find_by_path/100k", |b| {
        b.iter(|| assert!(reader.find_by_path("raw/doc-77777.md").unwrap().is_some()))
    });
    c.bench_function("find_by_name_key/100k", |b| {
        b.iter(|| assert_eq!(reader.find_by_name_key("doc-77777").unwrap().len(), 1))
    });
    let mut group = c.benchmark_group("scan");
    group.sample_size(10);
    group.bench_function("list/100k", |b| {
        b.iter_batched(
            || (),
            |()| assert_eq!(reader.list().unwrap().len(), 100_000),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("counts/100k", |b| {
        b.iter(|| assert_eq!(reader.counts().unwrap().total(), 100_000))
    });
    group.finish();
}

criterion_group!(benches, upsert, lookups);
criterion_main!(benches);
