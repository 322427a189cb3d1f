//! What the benchmarks share: a document as `add` registers it.

use openkb::state::Document;

/// An era-C document numbered `n` (hash = `n` as 64 hex digits).
pub fn doc(n: u64) -> Document {
    let stem = format!("doc-{n}");
    Document {
        name: Some(format!("{stem}.md")),
        doc_type: Some("md".into()),
        path: Some(format!("inbox/{stem}.md")),
        raw_path: Some(format!("raw/{stem}.md")),
        source_path: Some(format!("wiki/sources/{stem}.md")),
        doc_name: Some(stem),
        ..Document::new(format!("{n:064x}"))
    }
}
