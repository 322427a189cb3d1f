//! `openkb list`: the registered documents in registry order.

use std::io::Write;

use super::output::JsonArrayWriter;
use crate::error::{IoContext, Result};
use crate::lock::LockMode;
use crate::state::{Document, Queries};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (docs/schemas/list.json) instead of a table
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<()> {
    let open = super::open_kb(ctx, LockMode::Shared)?;
    let reader = open.store.reader()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    if args.json {
        // Streamed row by row: a 100k-document registry never sits in memory twice.
        let mut json = JsonArrayWriter::start(out, "documents")?;
        reader.for_each_document(&mut |doc| json.item(&doc))?;
        json.finish()?;
        return Ok(());
    }
    let docs = reader.list()?;
    if docs.is_empty() {
        writeln!(
            out,
            "No documents registered. Add some with `openkb add PATH`."
        )
        .with_path("cannot write", "standard output")?;
    } else {
        write_table(&mut out, &docs).with_path("cannot write", "standard output")?;
    }
    out.flush().with_path("cannot write", "standard output")
}

fn write_table(out: &mut impl Write, docs: &[Document]) -> std::io::Result<()> {
    let rows: Vec<[String; 4]> = docs
        .iter()
        .map(|d| {
            [
                d.name.clone().unwrap_or_else(|| "-".into()),
                d.doc_type.clone().unwrap_or_else(|| "-".into()),
                d.display_doc_name().unwrap_or_else(|| "-".into()),
                d.status.to_string(),
            ]
        })
        .collect();
    let headers = ["NAME", "TYPE", "DOC_NAME", "STATUS"];
    let mut widths = headers.map(display_width);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(display_width(cell));
        }
    }
    let line = |out: &mut dyn Write, cells: [&str; 4]| -> std::io::Result<()> {
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                writeln!(out, "{cell}")?;
            } else {
                let pad = widths[i] - display_width(cell);
                write!(out, "{cell}{:pad$}  ", "")?;
            }
        }
        Ok(())
    };
    line(out, headers)?;
    for row in &rows {
        line(out, [&row[0], &row[1], &row[2], &row[3]])?;
    }
    writeln!(out, "{} document(s)", rows.len())
}

/// Columns a name takes on a terminal: combining marks (an NFD name's accents) take none.
fn display_width(text: &str) -> usize {
    text.chars()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .count()
}
