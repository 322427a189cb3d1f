//! `openkb compile [DOC_NAME...] [--pending] [--failed]`: run `compile_command` for documents.
//! The protocol (one lock per document, the intent, the claim) is [`crate::ingest::compile`];
//! this module parses the arguments and prints.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ingest::{self, compile};
use crate::names;
use crate::state::Status;

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
    let options = compile::Options::from_config(probe.kb(), ctx.verbose > 0)?;
    let selection = compile::Selection {
        doc_names: args.doc_names,
        pending: args.pending,
        failed: args.failed,
    };
    ingest::stop_cleanly_on_interrupt();
    let mut documents = Vec::new();
    let summary = compile::compile(&probe, &selection, &options, &mut |doc, outcome| {
        let label = doc
            .display_doc_name()
            .map_or_else(|| doc.hash.clone(), |d| names::shown(&d).into_owned());
        match outcome {
            Ok(()) => out.line(format_args!("compiled {label}")),
            Err(message) => eprintln!("failed {label}: {}", names::shown_message(message)),
        }
        if out.json {
            documents.push(CompiledDocument {
                hash: doc.hash.clone(),
                doc_name: doc.display_doc_name(),
                status: if outcome.is_ok() {
                    Status::Compiled
                } else {
                    Status::Failed
                },
                error: outcome.clone().err(),
            });
        }
    })?;
    let (compiled, failed) = (summary.compiled, summary.failed);
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
    if summary.interrupted {
        return Err(Error::Incomplete(
            "interrupted: the documents not compiled yet keep their status; run the same \
             command again"
                .into(),
        ));
    }
    Ok(())
}
