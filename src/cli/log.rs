//! `openkb log`: the operations log.

use std::io::Write;

use super::output::JsonArrayWriter;
use crate::error::{IoContext, Result};
use crate::names;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show the newest N entries
    #[arg(
        short = 'n',
        long = "limit",
        value_name = "N",
        default_value_t = 20,
        conflicts_with = "all"
    )]
    limit: u64,
    /// Show every entry
    #[arg(long)]
    all: bool,
    /// Only entries of this operation (ingest, remove, query, lint, migrate, ...)
    #[arg(long, value_name = "OPERATION")]
    op: Option<String>,
    /// Print JSON (docs/schemas/log.json)
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<()> {
    let open = super::read_session(ctx)?;
    let limit = (!args.all).then_some(args.limit);
    let entries = open.log_tail(limit, args.op.as_deref())?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.json {
        let mut json = JsonArrayWriter::start(out, "entries")?;
        for entry in &entries {
            json.item(entry)?;
        }
        json.finish()?;
        return Ok(());
    }

    for entry in &entries {
        writeln!(
            out,
            "[{}] {} | {}",
            names::shown(&entry.timestamp),
            names::shown(&entry.operation),
            names::escape_line(&entry.description)
        )
        .with_path("cannot write", "standard output")?;
    }
    out.flush().with_path("cannot write", "standard output")
}
