//! `openkb list`: the registered documents in registry order.

use std::io::Write;

use super::output::JsonArrayWriter;
use crate::error::{IoContext, Result};
use crate::state::{Document, Queries, Status};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (docs/schemas/list.json) instead of a table
    #[arg(long)]
    json: bool,
    /// Only the documents with this status
    #[arg(
        long,
        value_name = "STATUS",
        value_parser = clap::builder::PossibleValuesParser::new(Status::ALL.map(Status::as_str))
    )]
    status: Option<String>,
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<()> {
    let open = super::read_session(ctx)?;
    let reader = open.reader()?;
    let wanted: Option<Status> = match &args.status {
        Some(s) => Some(s.parse().map_err(crate::Error::Usage)?),
        None => None,
    };
    let keep = |doc: &Document| wanted.is_none_or(|w| doc.status == w);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    if args.json {
        // Streamed row by row: a 100k-document registry never sits in memory twice.
        let mut json = JsonArrayWriter::start(out, "documents")?;
        reader.for_each_document(&mut |doc| if keep(&doc) { json.item(&doc) } else { Ok(()) })?;
        json.finish()?;
        return Ok(());
    }
    let mut docs = reader.list()?;
    docs.retain(keep);
    if docs.is_empty() && wanted.is_some() {
        writeln!(
            out,
            "No {} documents.",
            args.status.as_deref().unwrap_or_default()
        )
        .with_path("cannot write", "standard output")?;
    } else if docs.is_empty() {
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
                d.name.as_deref().map_or_else(|| "-".into(), shown_owned),
                d.doc_type
                    .as_deref()
                    .map_or_else(|| "-".into(), shown_owned),
                d.display_doc_name()
                    .as_deref()
                    .map_or_else(|| "-".into(), shown_owned),
                d.status.to_string(),
            ]
        })
        .collect();
    super::table::write(out, ["NAME", "TYPE", "DOC_NAME", "STATUS"], &rows)?;
    writeln!(out, "{} document(s)", rows.len())
}

fn shown_owned(text: &str) -> String {
    crate::names::shown(text).into_owned()
}
