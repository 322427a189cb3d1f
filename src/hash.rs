//! SHA-256, the one place openkb computes it: document keys (a file's bytes, streamed in 64 KiB
//! reads as the Python tool's `HashRegistry.hash_file` does, so both tools key a document
//! identically), doc_name disambiguators, the checksums of `hashes.json` imports and of shipped
//! migrations. A leaf: it depends on nothing else of openkb's but the error type, so every
//! layer can use it. sha2 picks the CPU's SHA extensions at run time when it has them (x86
//! SHA-NI, ARMv8 SHA2).

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{IoContext, Result};

/// Read size: the Python tool's chunk size.
pub const CHUNK: usize = 64 * 1024;

/// SHA-256 of the file at `path`, as 64 lowercase hex digits.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_path("cannot open", path)?;
    sha256_reader(&mut file).with_path("cannot read", path)
}

/// SHA-256 of everything `reader` yields.
pub fn sha256_reader(reader: &mut impl Read) -> std::io::Result<String> {
    let mut hasher = Hasher::default();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.finish_hex())
}

/// An incremental SHA-256, for code that sees the bytes go by (a copy that hashes what it
/// writes, so the file is read once).
#[derive(Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything passed to [`Hasher::update`], as 64 lowercase hex digits.
    pub fn finish_hex(self) -> String {
        hex(&self.0.finalize())
    }
}

/// SHA-256 of `bytes`, as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex of a digest.
fn hex(digest: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(digest.len() * 2);
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        // Crosses several chunk boundaries.
        let data: Vec<u8> = (0..(3 * CHUNK + 17)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        assert_eq!(sha256_file(&path).unwrap(), sha256_hex(&data));
    }
}
