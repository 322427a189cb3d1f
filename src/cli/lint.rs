//! `openkb lint`: structural checks of the wiki, with a report page and a log row.

use serde::Serialize;

use crate::error::{Result, exit};
use crate::lint::{self, Issue};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Checks broken [[wikilinks]], orphan concept/entity/exploration pages, summaries without a
document and compiled documents without a summary. Writes wiki/reports/lint_YYYYMMDD_HHMMSS.md
and a `lint` log row. --fix turns broken links into plain text ([[x]] -> x, [[x|label]] ->
label), rewriting each page atomically.

Exit codes: 0 no issue left, 1 issues remain (listed in the report), 3 no knowledge base,
4 another openkb process holds the KB. A KB without documents has nothing to lint: exit 0,
nothing written.")]
pub struct Args {
    /// Turn broken links into plain text
    #[arg(long)]
    fix: bool,
    /// Print the result as JSON (docs/schemas/lint.json)
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct LintOutput<'a> {
    report: Option<String>,
    pages: usize,
    documents: u64,
    remaining: usize,
    pages_rewritten: usize,
    issues: &'a [Issue],
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<i32> {
    let out = ctx.output(args.json);
    let Some(linted) = lint::lint(&ctx.kb()?, args.fix)? else {
        if out.json {
            out.json(&LintOutput {
                report: None,
                pages: 0,
                documents: 0,
                remaining: 0,
                pages_rewritten: 0,
                issues: &[],
            })?;
        } else {
            out.result("Nothing to lint: the knowledge base has no documents.");
        }
        return Ok(exit::OK);
    };
    let (analysis, name, pages_rewritten) =
        (&linted.analysis, &linted.report, linted.pages_rewritten);
    let remaining = analysis.remaining();
    if out.json {
        out.json(&LintOutput {
            report: Some(format!("wiki/reports/{name}")),
            pages: analysis.pages,
            documents: analysis.documents,
            remaining,
            pages_rewritten,
            issues: &analysis.issues,
        })?;
    } else {
        for issue in &analysis.issues {
            let tag = if issue.fixed { "fixed  " } else { "issue  " };
            let text = lint::describe(issue);
            out.line(format_args!("{tag}{}", crate::names::shown_line(&text)));
        }
        if args.fix && pages_rewritten > 0 {
            out.line(format_args!(
                "Rewrote {pages_rewritten} page(s) to turn broken links into plain text."
            ));
        }
        if remaining == 0 {
            out.result(format_args!(
                "No structural issues left ({} pages, {} documents).",
                analysis.pages, analysis.documents
            ));
        } else {
            out.result(format_args!("{remaining} structural issue(s)."));
        }
        out.result(format_args!("Report: wiki/reports/{name}"));
    }
    Ok(if remaining == 0 {
        exit::OK
    } else {
        exit::FAILURE
    })
}
