//! `openkb compile [DOC_NAME...] [--pending] [--failed]`: run `compile_command` for documents.
//!
//! Each document is compiled under the KB's exclusive lock (the hook writes shared wiki
//! pages), taken per document and released in between, so other commands get their turn
//! during a long run. An intent marks the compile in flight: a killed run leaves the document
//! `failed` with a message, never silently `pending` or `compiled`. Documents picked by
//! `--pending` / `--failed` are claimed under the lock: one that changed since it was listed
//! (another compiler got to it) is skipped, so two compilers never run the hook for one
//! document.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ingest;
use crate::names;
use crate::state::{Document, IntentFile, IntentOp, Queries, Status};

const AFTER_HELP: &str = "\
compile_command (in .openkb/config.yaml) is run by `sh -c` in the KB folder, once per
document, with OPENKB_KB_DIR, OPENKB_DOC_NAME, OPENKB_DOC_HASH, OPENKB_RAW_PATH and
OPENKB_SOURCE_PATH (absolute paths, empty when the document has no such file). Exit 0 marks the
document compiled; anything else marks it failed and keeps the end of its stderr as the error.
Its output is shown as it comes, each line prefixed with [doc_name]: stdout always, stderr on
failure (and live with -v). It runs under the KB's exclusive lock: an openkb command it runs on
the same KB fails at once (OPENKB_HOOK_LOCK tells it why) instead of waiting forever.
compile_timeout (seconds, in config.yaml) bounds one run: when it runs out, the hook and every
process it started are killed and the document is marked failed. The hook runs in a process
group of its own; processes it leaves in the background are killed when it exits.";

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
// Naming no document is a usage error (exit 2), said by clap before anything is opened.
#[command(group(
    clap::ArgGroup::new("targets").required(true).multiple(true).args(["doc_names", "pending", "failed"])
))]
pub struct Args {
    /// doc_names of the documents to compile
    #[arg(value_name = "DOC_NAME")]
    doc_names: Vec<String>,
    /// Compile every pending document
    #[arg(long)]
    pending: bool,
    /// Compile every document whose last compile failed
    #[arg(long)]
    failed: bool,
    /// Print the outcome as JSON (docs/schemas/compile.json)
    #[arg(long)]
    json: bool,
}

/// `compile --json` (docs/schemas/compile.json).
#[derive(Serialize)]
struct CompileReport {
    compiled: usize,
    failed: usize,
    documents: Vec<CompiledDocument>,
}

#[derive(Serialize)]
struct CompiledDocument {
    hash: String,
    doc_name: Option<String>,
    /// `compiled` or `failed`.
    status: Status,
    /// The end of the hook's stderr, when it failed.
    error: Option<String>,
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<()> {
    let out = ctx.output(args.json);
    let probe = super::probe(ctx)?;
    let kb = probe.kb();
    let config = kb.config()?;
    let Some(command) = config.compile_command()?.map(str::to_owned) else {
        return Err(Error::Invalid(format!(
            "no compile_command in {}; set one (run by `sh -c` per document, see `openkb \
             compile --help`)",
            kb.config_path().display()
        )));
    };
    let hook_options = ingest::compile::HookOptions {
        timeout: config.compile_timeout()?,
        verbose: ctx.verbose > 0,
    };
    let mut targets: Vec<Target> = Vec::new();
    {
        let reader = probe.reader()?;
        for name in &args.doc_names {
            let doc = match reader.find_by_doc_name(name)? {
                Some(doc) => doc,
                None => ingest::remove::find(&reader, name)?
                    .into_iter()
                    .find(|d| d.display_doc_name().as_deref() == Some(name.as_str()))
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "no document has doc_name {name:?}; `openkb list` shows them"
                        ))
                    })?,
            };
            targets.push(Target { doc, named: true });
        }
        if args.pending || args.failed {
            reader.for_each_document(&mut |doc| {
                if (args.pending && doc.status == Status::Pending)
                    || (args.failed && doc.status == Status::Failed)
                {
                    targets.push(Target { doc, named: false });
                }
                Ok(())
            })?;
        }
    }
    let mut seen = std::collections::HashSet::new();
    targets.retain(|t| seen.insert(t.doc.hash.clone()));
    ingest::stop_cleanly_on_interrupt();
    let (mut compiled, mut failed) = (0usize, 0usize);
    let mut documents = Vec::new();
    for target in targets {
        if ingest::interrupted() {
            break;
        }
        let session = probe.write_session()?;
        // The claim, under the lock: a document picked by --pending/--failed that another
        // compiler (or anything else) changed since it was listed has been dealt with; a
        // document named on the command line is compiled as asked. Either way, a removed one
        // is skipped.
        let Some(doc) = session.get(&target.doc.hash)? else {
            continue;
        };
        if !target.named
            && (doc.status != target.doc.status || doc.updated_at != target.doc.updated_at)
        {
            continue;
        }
        let label = doc
            .display_doc_name()
            .map_or_else(|| doc.hash.clone(), |d| names::shown(&d).into_owned());
        let files: Vec<IntentFile> = Vec::new();
        let intent = session.write(|tx| {
            tx.record_intent(
                IntentOp::Compile,
                &doc.hash,
                doc.doc_name.as_deref(),
                &files,
            )
        })?;
        let mut record = ingest::compile::RecordInIntent {
            session: &session,
            intent,
        };
        // Until the status commits, what the hook did to the document's own files can be undone.
        let snapshot = ingest::compile::Snapshot::take(kb, &doc)?;
        let outcome = ingest::compile::run_hook(kb, &command, &doc, &hook_options, &mut record)?;
        let (status, error) = match &outcome {
            Ok(()) => (Status::Compiled, None),
            Err(message) => (Status::Failed, Some(message.as_str())),
        };
        if let Err(e) = session.write(|tx| {
            tx.set_status(&doc.hash, status, error)?;
            tx.delete_intent(intent)
        }) {
            // The refusal is the error to report; a failed restore is said beside it.
            if let Err(undo_error) = snapshot.restore(kb, session.store()) {
                eprintln!("warning: could not put every file of {label} back: {undo_error}");
            }
            return Err(e);
        }
        drop(snapshot);
        let error = match outcome {
            Ok(()) => {
                compiled += 1;
                out.line(format_args!("compiled {label}"));
                None
            }
            Err(message) => {
                failed += 1;
                eprintln!("failed {label}: {}", names::shown_message(&message));
                Some(message)
            }
        };
        if out.json {
            documents.push(CompiledDocument {
                hash: doc.hash.clone(),
                doc_name: doc.display_doc_name(),
                status,
                error,
            });
        }
    }
    if compiled + failed > 0 {
        probe
            .write_session()?
            .record("compile", &format!("compiled {compiled}, failed {failed}"))?;
    }
    if out.json {
        out.json(&CompileReport {
            compiled,
            failed,
            documents,
        })?;
    }
    out.result(format_args!("compiled {compiled}, failed {failed}"));
    if failed > 0 {
        return Err(Error::Incomplete(format!(
            "{failed} document(s) failed to compile; `openkb status` counts them, `openkb list` \
             shows which"
        )));
    }
    if ingest::interrupted() {
        return Err(Error::Incomplete(
            "interrupted: the documents not compiled yet keep their status; run the same \
             command again"
                .into(),
        ));
    }
    Ok(())
}

/// A document to compile, and whether the user named it (else a --pending/--failed pick).
struct Target {
    doc: Document,
    named: bool,
}
