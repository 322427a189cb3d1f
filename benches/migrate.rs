//! `openkb migrate` of a 100k-entry legacy KB (target: under 2 s on a 2-core machine).
//!
//! Each iteration builds a fresh legacy KB (outside the timing): a `hashes.json` of 100,000
//! entries in the 0.4 shapes the Python tool writes (short docs, long PDFs, cloud imports,
//! 0.1 and 0.2-0.3 entries, NFD and CJK names), written byte-exactly as Python would, and a
//! `wiki/log.md` with one `ingest` line per entry. The timed part is the whole migration as
//! the command runs it: lock, journal scan, parse, validate, import into a temp database in
//! one transaction, checkpoint, link into place, rename `hashes.json`, append to `log.md`.
//!
//! `cargo bench --bench migrate` runs it. `OPENKB_BENCH_WRITE_KB=/some/dir cargo bench --bench
//! migrate` only writes such a KB into `/some/dir` (for timing the real binary:
//! `time openkb --kb-dir /some/dir migrate`).

use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use openkb::Kb;
use openkb::legacy::export::write_registry;
use openkb::legacy::migrate::{Options, migrate};
use openkb::state::Document;
use sha2::{Digest, Sha256};

const ENTRIES: usize = 100_000;

fn hash_of(i: usize) -> String {
    let digest = Sha256::digest(format!("document {i}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn legacy_document(i: usize) -> Document {
    let mut doc = Document::new(hash_of(i));
    let stem = match i % 50 {
        0 => format!("cafe\u{301}-menu-{i}"),
        1 => format!("\u{4f1a}\u{8bae}\u{7eaa}\u{8981}-{i}"),
        _ => format!("doc-{i:06}-notes"),
    };
    match i % 100 {
        // 0.1: name and type only.
        0..=3 => {
            doc.name = Some(format!("{stem}.md"));
            doc.doc_type = Some("md".into());
        }
        // 0.2-0.3: plus doc_name (the raw stem).
        4..=8 => {
            doc.name = Some(format!("{stem}.md"));
            doc.doc_name = Some(stem);
            doc.doc_type = Some("md".into());
        }
        // 0.4 long PDF.
        9 | 10 => {
            doc.name = Some(format!("{stem}.pdf"));
            doc.doc_type = Some("long_pdf".into());
            doc.path = Some(format!("inbox/books/{stem}.pdf"));
            doc.raw_path = Some(format!("raw/{stem}.pdf"));
            doc.doc_id = Some(format!("86fb1ea5-6ad1-a1c6-ed5e-{i:012}"));
            doc.doc_name = Some(stem);
        }
        // 0.4.2+ cloud import.
        11 => {
            doc.name = Some(format!("{stem}.pdf"));
            doc.doc_type = Some("pageindex_cloud".into());
            doc.origin = Some("cloud".into());
            doc.path = Some(format!("pageindex-cloud:pi-{i:012}"));
            doc.source_path = Some(format!("wiki/sources/{stem}.json"));
            doc.doc_id = Some(format!("pi-{i:012}"));
            doc.doc_name = Some(stem);
        }
        // 0.4 short document.
        _ => {
            doc.name = Some(format!("{stem}.md"));
            doc.doc_type = Some("md".into());
            doc.path = Some(format!("inbox/notes/{stem}.md"));
            doc.raw_path = Some(format!("raw/{stem}.md"));
            doc.source_path = Some(format!("wiki/sources/{stem}.md"));
            doc.doc_name = Some(stem);
        }
    }
    doc
}

/// Write a legacy KB with `entries` registry entries and as many log entries into `root`.
fn write_legacy_kb(root: &Path, entries: usize) {
    let docs: Vec<Document> = (0..entries).map(legacy_document).collect();
    let mut registry = String::with_capacity(entries * 320);
    write_registry(&mut registry, &docs);
    let mut log = String::from("# Operations Log\n\n");
    for doc in &docs {
        log.push_str(&format!(
            "## [2026-11-27 01:43:36] ingest | {}\n\n",
            doc.name.as_deref().unwrap_or_default()
        ));
    }
    std::fs::create_dir_all(root.join(".openkb")).unwrap();
    std::fs::create_dir_all(root.join("wiki")).unwrap();
    std::fs::write(root.join(".openkb/hashes.json"), registry).unwrap();
    std::fs::write(root.join("wiki/log.md"), log).unwrap();
}

fn bench_migrate(c: &mut Criterion) {
    if let Some(dir) = std::env::var_os("OPENKB_BENCH_WRITE_KB") {
        write_legacy_kb(Path::new(&dir), ENTRIES);
        eprintln!(
            "wrote a legacy KB with {ENTRIES} entries to {}",
            Path::new(&dir).display()
        );
        return;
    }
    let mut group = c.benchmark_group("migrate");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.bench_function("100k-entry hashes.json + 100k log entries", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                write_legacy_kb(dir.path(), ENTRIES);
                dir
            },
            |dir| {
                let kb = Kb::at(dir.path()).unwrap();
                migrate(&kb, Options::default()).unwrap();
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_migrate);
criterion_main!(benches);
