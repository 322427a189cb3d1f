//! `openkb show IDENTIFIER`: everything about one document: its registry fields, status and
//! error, the files it owns (and whether each exists), and the log rows that name it.

use serde::Serialize;

use crate::error::Result;
use crate::kb::Kb;
use crate::state::{Document, LogEntry, Queries};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The document: its file name, its doc_name, or a unique part of either
    #[arg(value_name = "IDENTIFIER")]
    identifier: String,
    /// Print JSON (docs/schemas/show.json) instead of text
    #[arg(long)]
    json: bool,
}

/// The document's fields, every key present (`null` when absent) so scripts need no guessing.
#[derive(Serialize)]
struct Fields<'a> {
    hash: &'a str,
    name: Option<&'a str>,
    doc_name: Option<String>,
    #[serde(rename = "type")]
    doc_type: Option<&'a str>,
    status: &'static str,
    error: Option<&'a str>,
    path: Option<&'a str>,
    raw_path: Option<&'a str>,
    source_path: Option<&'a str>,
    doc_id: Option<&'a str>,
    origin: Option<&'a str>,
    pages: Option<i64>,
    position: i64,
    created_at: &'a str,
    updated_at: &'a str,
}

#[derive(Serialize)]
struct File {
    /// What the file is to the document: raw, source, summary, original.
    role: &'static str,
    /// KB-relative (or absolute, for an original outside the KB).
    path: String,
    /// `null` when openkb refuses to look (a path leading outside the KB).
    exists: Option<bool>,
}

/// `show --json` (docs/schemas/show.json); `format_version` is added by `output`.
#[derive(Serialize)]
struct ShowReport<'a> {
    document: Fields<'a>,
    files: Vec<File>,
    log: Vec<LogEntry>,
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<()> {
    let open = super::read_session(ctx)?;
    let reader = open.reader()?;
    let doc = crate::ingest::remove::find_one(&reader, &args.identifier)?;
    let doc_name = doc.display_doc_name();
    let mut log = Vec::new();
    // Log rows carry a document by its file name (ingest, remove) or doc_name.
    reader.for_each_log_entry(&mut |entry| {
        if Some(entry.description.as_str()) == doc.name.as_deref()
            || Some(&entry.description) == doc_name.as_ref()
        {
            log.push(entry);
        }
        Ok(())
    })?;
    let output = ShowReport {
        files: files_of(open.kb(), &doc, doc_name.as_deref()),
        document: fields(&doc, doc_name.clone()),
        log,
    };
    if args.json {
        return ctx.output(true).json(&output);
    }
    print_text(&output);
    Ok(())
}

fn fields(doc: &Document, doc_name: Option<String>) -> Fields<'_> {
    Fields {
        hash: &doc.hash,
        name: doc.name.as_deref(),
        doc_name,
        doc_type: doc.doc_type.as_deref(),
        status: doc.status.as_str(),
        error: doc.error.as_deref(),
        path: doc.path.as_deref(),
        raw_path: doc.raw_path.as_deref(),
        source_path: doc.source_path.as_deref(),
        doc_id: doc.doc_id.as_deref(),
        origin: doc.origin.as_deref(),
        pages: doc.pages,
        position: doc.position,
        created_at: &doc.created_at,
        updated_at: &doc.updated_at,
    }
}

/// The files the document owns, each looked at only through the confined KB path (a legacy
/// entry naming `../elsewhere` is shown, never followed).
fn files_of(kb: &Kb, doc: &Document, doc_name: Option<&str>) -> Vec<File> {
    let mut files: Vec<(&'static str, String)> = Vec::new();
    let mut push = |role, path: String| {
        if !path.is_empty() && !files.iter().any(|(_, p)| *p == path) {
            files.push((role, path));
        }
    };
    if let Some(raw) = &doc.raw_path {
        push("raw", raw.clone());
    }
    if let Some(source) = &doc.source_path {
        push("source", source.clone());
    }
    if let Some(d) = doc_name {
        push("summary", format!("wiki/summaries/{d}.md"));
    }
    if let Some(path) = &doc.path {
        push("original", path.clone());
    }
    files
        .into_iter()
        .map(|(role, path)| {
            let exists = if std::path::Path::new(&path).is_absolute() {
                // An original outside the KB (added from elsewhere): only looked at.
                Some(std::fs::symlink_metadata(&path).is_ok())
            } else {
                crate::kbpath::KbPath::new(kb, &path)
                    .ok()
                    .map(|full| std::fs::symlink_metadata(full.as_path()).is_ok())
            };
            File { role, path, exists }
        })
        .collect()
}

fn print_text(o: &ShowReport<'_>) {
    let d = &o.document;
    // Every value is the registry's (a legacy entry's): shown escaped and cut, like all names.
    let or_dash = |v: Option<&str>| crate::names::shown(v.unwrap_or("-")).into_owned();
    println!("{}", or_dash(d.name));
    let mut rows: Vec<(&str, String)> = vec![
        ("doc_name", or_dash(d.doc_name.as_deref())),
        ("hash", d.hash.to_owned()),
        ("type", or_dash(d.doc_type)),
        ("status", d.status.to_owned()),
    ];
    if let Some(error) = d.error {
        let error = crate::names::shown_message(error);
        rows.push(("error", error.replace('\n', "\n             ")));
    }
    for (key, value) in [("path", d.path), ("doc_id", d.doc_id), ("origin", d.origin)] {
        if let Some(v) = value {
            rows.push((key, crate::names::shown(v).into_owned()));
        }
    }
    if let Some(pages) = d.pages {
        rows.push(("pages", pages.to_string()));
    }
    rows.push(("registered", d.created_at.to_owned()));
    rows.push(("updated", d.updated_at.to_owned()));
    for (key, value) in rows {
        println!("  {key:<11}{value}");
    }
    println!("Files:");
    for f in &o.files {
        let state = match f.exists {
            Some(true) => "exists",
            Some(false) if f.role == "summary" && d.status != "compiled" => {
                "missing (not compiled yet)"
            }
            Some(false) => "missing",
            None => "not looked at (outside the knowledge base)",
        };
        println!("  {:<9}{}  {state}", f.role, crate::names::shown(&f.path));
    }
    println!("Log:");
    if o.log.is_empty() {
        println!("  (no rows name it)");
    }
    for e in &o.log {
        println!(
            "  [{}] {} | {}",
            crate::names::shown(&e.timestamp),
            crate::names::shown(&e.operation),
            crate::names::escape_line(&e.description)
        );
    }
}
