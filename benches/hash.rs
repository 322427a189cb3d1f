//! SHA-256 throughput of `openkb::hash::sha256_file` (the registry key of every
//! document): writes a 1 GiB file, hashes it once to warm the page cache, then reports the best
//! of three runs. Run: `cargo bench --bench hash` (OPENKB_BENCH_MIB overrides 1024).

use std::io::Write;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: u64 = std::env::var("OPENKB_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("big.bin");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    // Non-repeating content, so nothing below the hash can shortcut it.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&block)?;
    }
    file.flush()?;
    drop(file);
    let bytes = (mib << 20) as f64;
    openkb::hash::sha256_file(&path)?;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        openkb::hash::sha256_file(&path)?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "sha256 of {mib} MiB: best {best:.3} s = {:.2} GiB/s",
        bytes / best / (1u64 << 30) as f64
    );
    Ok(())
}
