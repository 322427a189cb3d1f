//! SHA-256 throughput of `openkb::ingest::hash::sha256_file` on a file:
//! `cargo run --release --example hash_throughput -- FILE` (run it twice: the second run reads
//! from the page cache and measures the hash alone).

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: hash_throughput FILE");
        std::process::exit(2);
    };
    let path = std::path::PathBuf::from(path);
    let bytes = std::fs::metadata(&path)?.len();
    let started = Instant::now();
    let digest = openkb::ingest::hash::sha256_file(&path)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{digest}  {} bytes in {secs:.3} s = {:.2} GiB/s",
        bytes,
        bytes as f64 / secs / (1u64 << 30) as f64
    );
    Ok(())
}
