//! `openkb lint`: structural checks of the wiki, like the Python tool's `lint`.
//!
//! Pages examined: `wiki/index.md` and every `.md` under `summaries/`, `concepts/`,
//! `entities/` and `explorations/` (not `sources/`, which is document text, nor `reports/`,
//! `log.md` or `AGENTS.md`). Checks:
//! - broken `[[wikilinks]]`: `[[target]]`, `[[target|label]]`, `[[target#anchor]]`, whose
//!   `wiki/<target>.md` (or `.json`, for long sources) does not exist; links inside fenced
//!   code blocks are ignored; a link to the summary of a pending or failed document is not
//!   broken (compiling writes it), so `--fix` never strips it;
//! - orphan pages: concept, entity and exploration pages no other page links to (`index.md`
//!   counts as linking);
//! - summaries without a registered document, and compiled documents without a summary
//!   (pending and failed documents are not compiled yet, so they have none by design).
//!
//! [`analyze`] only reads (the caller holds the shared lock); [`fix_broken_links`] rewrites
//! pages atomically and re-checks each page as it reads it, so it is correct even if the wiki
//! changed between the analysis and the exclusive lock.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, IoContext, Result};
use crate::fsx::WalkStep;
use crate::kb::Kb;
use crate::kbpath::KbPath;
use crate::session::{ReadSession, WriteSession};
use crate::state::{Queries, Status};
use crate::wiki::{links, page_key};

/// Folders of linkable pages, relative to `wiki/`.
const PAGE_DIRS: [&str; 4] = ["summaries", "concepts", "entities", "explorations"];
/// Pages that must be linked from somewhere.
const ORPHAN_DIRS: [&str; 3] = ["concepts", "entities", "explorations"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssueKind {
    BrokenLink,
    OrphanPage,
    SummaryWithoutDocument,
    DocumentWithoutSummary,
}

impl IssueKind {
    fn heading(self) -> &'static str {
        match self {
            IssueKind::BrokenLink => "Broken links",
            IssueKind::OrphanPage => "Orphan pages",
            IssueKind::SummaryWithoutDocument => "Summaries without a document",
            IssueKind::DocumentWithoutSummary => "Documents without a summary",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub kind: IssueKind,
    /// The page concerned, relative to `wiki/` (for a document without a summary: the
    /// summary page that is missing).
    pub page: String,
    /// The link target (broken links) or the document's name.
    pub target: Option<String>,
    /// `lint --fix` repaired it.
    pub fixed: bool,
}

impl Issue {
    fn describe(&self) -> String {
        match self.kind {
            IssueKind::BrokenLink => format!(
                "`{}`: [[{}]] points to a page that does not exist",
                self.page,
                self.target.as_deref().unwrap_or_default()
            ),
            IssueKind::OrphanPage => format!("`{}`: no page links to it", self.page),
            IssueKind::SummaryWithoutDocument => {
                format!("`{}`: no registered document has this name", self.page)
            }
            IssueKind::DocumentWithoutSummary => format!(
                "document `{}` is compiled but `{}` does not exist",
                self.target.as_deref().unwrap_or_default(),
                self.page
            ),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Analysis {
    pub pages: usize,
    pub documents: u64,
    pub issues: Vec<Issue>,
}

impl Analysis {
    /// Issues still present (not fixed).
    pub fn remaining(&self) -> usize {
        self.issues.iter().filter(|i| !i.fixed).count()
    }
}

fn target_exists(wiki: &Path, target: &str) -> bool {
    let key = page_key(target);
    // A target with `..` could point outside the wiki; it is never a valid wiki page.
    if key.split('/').any(|c| c == "..") {
        return false;
    }
    wiki.join(format!("{key}.md")).is_file() || wiki.join(format!("{key}.json")).is_file()
}

/// Pages lint reads, relative to `wiki/`, sorted.
fn pages(wiki: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if wiki.join("index.md").is_file() {
        out.push("index.md".to_owned());
    }
    for dir in PAGE_DIRS {
        collect_md(wiki, dir, &mut out)?;
    }
    out.sort();
    Ok(out)
}

fn collect_md(wiki: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
    crate::fsx::walk(wiki, rel, &mut |child, entry| {
        if entry.file_name().to_string_lossy().starts_with('.') {
            return WalkStep::Skip;
        }
        if !child.ends_with('/') && child.ends_with(".md") {
            out.push(child.to_owned());
        }
        WalkStep::Continue
    })
}

/// What a lint run did.
#[derive(Debug)]
pub struct Linted {
    pub analysis: Analysis,
    /// The report's file name, under `wiki/reports/`.
    pub report: String,
    /// Pages `fix` rewrote.
    pub pages_rewritten: usize,
}

/// Lint `kb`: analyse under a read session (so lint never blocks other readers for long),
/// then, in a short write session, rewrite broken links (with `fix`), write the report and
/// its `lint` log row. `None`: the KB has no documents, nothing to lint; nothing is written.
pub fn lint(kb: &Kb, fix: bool) -> Result<Option<Linted>> {
    let mut analysis = {
        let session = kb.read_session_for_write()?;
        // lint always writes (its report and log row): refuse up front, before any work.
        if session.is_too_new() {
            return Err(Error::SchemaTooNew {
                path: session.path().to_path_buf(),
                found: session.schema_version(),
                supported: crate::state::schema::latest_version(),
            });
        }
        if session.counts()?.total() == 0 {
            return Ok(None);
        }
        analyze(&session)?
    };
    let session = kb.write_session()?;
    session.ensure_writable()?;
    // Checked before any page is rewritten: a symlinked reports/ or log.md stops lint early.
    KbPath::bookkeeping(kb, "wiki/reports")?;
    KbPath::bookkeeping(kb, "wiki/log.md")?;
    let pages_rewritten = if fix {
        fix_broken_links(&session, &mut analysis)?
    } else {
        0
    };
    let stamp = report_stamp(&chrono::Local::now());
    let report = write_report(&session, &stamp, &analysis)?;
    session.record("lint", &format!("report \u{2192} {report}"))?;
    Ok(Some(Linted {
        analysis,
        report,
        pages_rewritten,
    }))
}

/// Run every structural check, in a read session.
pub fn analyze(session: &ReadSession) -> Result<Analysis> {
    let wiki = session.kb().wiki_dir();
    let pages = pages(&wiki)?;
    let registered = Registered::read(&session.reader()?, &wiki)?;
    let mut issues = registered.issues;
    let linked = check_links(&wiki, &pages, &registered.uncompiled, &mut issues)?;
    for page in &pages {
        let key = page.strip_suffix(".md").unwrap_or(page);
        if ORPHAN_DIRS
            .iter()
            .any(|d| key.starts_with(&format!("{d}/")))
            && !linked.contains(key)
        {
            issues.push(Issue {
                kind: IssueKind::OrphanPage,
                page: page.clone(),
                target: None,
                fixed: false,
            });
        }
    }
    for page in &pages {
        if let Some(stem) = page
            .strip_prefix("summaries/")
            .and_then(|p| p.strip_suffix(".md"))
            && !registered.doc_names.contains(stem)
        {
            issues.push(Issue {
                kind: IssueKind::SummaryWithoutDocument,
                page: page.clone(),
                target: None,
                fixed: false,
            });
        }
    }
    issues.sort_by(|a, b| (a.kind, &a.page).cmp(&(b.kind, &b.page)));
    Ok(Analysis {
        pages: pages.len(),
        documents: registered.documents,
        issues,
    })
}

/// What the registry says about the wiki: the doc_names, the summaries that do not exist yet
/// by design (their document is pending or failed), and compiled documents without a summary.
struct Registered {
    documents: u64,
    doc_names: HashSet<String>,
    /// Page keys (`summaries/<doc_name>`) of documents not compiled.
    uncompiled: HashSet<String>,
    issues: Vec<Issue>,
}

impl Registered {
    fn read(reader: &impl Queries, wiki: &Path) -> Result<Registered> {
        let mut registered = Registered {
            documents: 0,
            doc_names: HashSet::new(),
            uncompiled: HashSet::new(),
            issues: Vec::new(),
        };
        reader.for_each_document(&mut |doc| {
            registered.documents += 1;
            if let Some(name) = doc.display_doc_name() {
                let summary = format!("summaries/{name}.md");
                if doc.status == Status::Compiled && !wiki.join(&summary).is_file() {
                    registered.issues.push(Issue {
                        kind: IssueKind::DocumentWithoutSummary,
                        page: summary,
                        target: Some(name.clone()),
                        fixed: false,
                    });
                }
                if doc.status != Status::Compiled {
                    registered.uncompiled.insert(format!("summaries/{name}"));
                }
                registered.doc_names.insert(name);
            }
            Ok(())
        })?;
        Ok(registered)
    }
}

/// Read every page's links: broken ones become issues (not those to the summary of an
/// uncompiled document). Returns the keys of the pages linked from another page.
fn check_links(
    wiki: &Path,
    pages: &[String],
    uncompiled: &HashSet<String>,
    issues: &mut Vec<Issue>,
) -> Result<HashSet<String>> {
    let mut linked: HashSet<String> = HashSet::new();
    for page in pages {
        let text = read_page(&wiki.join(page))?;
        let own_key = page.strip_suffix(".md").unwrap_or(page);
        for link in links(&text) {
            if link.target.is_empty() {
                continue; // [[#anchor]]: a link within the page
            }
            let key = page_key(link.target);
            if key != own_key {
                linked.insert(key.to_owned());
            }
            if !target_exists(wiki, link.target) && !uncompiled.contains(key) {
                issues.push(Issue {
                    kind: IssueKind::BrokenLink,
                    page: page.clone(),
                    target: Some(link.target.to_owned()),
                    fixed: false,
                });
            }
        }
    }
    Ok(linked)
}

fn read_page(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_path("cannot read", path)?;
    // A page that is not UTF-8 is linted as far as it can be decoded; it is never rewritten
    // (fix_broken_links reads it strictly).
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Turn the broken links of every page in `analysis` into plain text (`[[x]]` → `x`,
/// `[[x|label]]` → `label`), writing each changed page atomically. Marks the broken-link
/// issues it repaired as fixed. Only in a write session: it rewrites pages other writers edit.
pub fn fix_broken_links(session: &WriteSession, analysis: &mut Analysis) -> Result<usize> {
    let kb = session.kb();
    let wiki = kb.wiki_dir();
    // Only the links the analysis found broken: a page may also link to the summary of a
    // pending document, which compiling will create and which must survive.
    let broken: HashSet<(String, String)> = analysis
        .issues
        .iter()
        .filter(|i| i.kind == IssueKind::BrokenLink)
        .filter_map(|i| Some((i.page.clone(), i.target.clone()?)))
        .collect();
    let pages: HashSet<String> = broken.iter().map(|(page, _)| page.clone()).collect();
    let mut repaired: HashSet<(String, String)> = HashSet::new();
    // Plan, check, act: every page is confined and rewritten in memory before the first write.
    let mut edits = Vec::new();
    for page in pages {
        let confined = match page.as_str() {
            "index.md" => crate::wiki::index_md(kb)?,
            _ => KbPath::new(kb, &format!("wiki/{page}"))?,
        };
        if confined.kind()? == Some(crate::kbpath::Kind::Symlink) {
            continue; // never written through; its links stay reported
        }
        let path = wiki.join(&page);
        let Some(bytes) = crate::fsx::read_if_exists(&path)? else {
            continue;
        };
        let Ok(text) = String::from_utf8(bytes) else {
            continue; // not UTF-8: never rewritten, its links stay reported
        };
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for link in links(&text) {
            if link.target.is_empty()
                || target_exists(&wiki, link.target)
                || !broken.contains(&(page.clone(), link.target.to_owned()))
            {
                continue;
            }
            out.push_str(&text[last..link.start]);
            out.push_str(link.label.unwrap_or(link.target));
            last = link.end;
            repaired.insert((page.clone(), link.target.to_owned()));
        }
        if last == 0 {
            continue;
        }
        out.push_str(&text[last..]);
        edits.push(crate::wiki::Edit {
            path: confined,
            text: out,
        });
    }
    for edit in &edits {
        edit.apply()?;
    }
    let rewritten = edits.len();
    for issue in &mut analysis.issues {
        if issue.kind == IssueKind::BrokenLink
            && let Some(target) = &issue.target
            && repaired.contains(&(issue.page.clone(), target.clone()))
        {
            issue.fixed = true;
        }
    }
    Ok(rewritten)
}

/// The Python tool's report stamp (`%Y%m%d_%H%M%S`, local time): the file is
/// `lint_<stamp>.md` and the title `# Lint Report — <stamp>` (formats §1.7).
pub fn report_stamp(now: &chrono::DateTime<chrono::Local>) -> String {
    now.format("%Y%m%d_%H%M%S").to_string()
}

/// Write the report as `wiki/reports/lint_<stamp>.md`, or `lint_<stamp>-2.md`, `-3`, ... when
/// an earlier run in the same second wrote one: a report is never overwritten. Returns the
/// file name.
pub fn write_report(session: &WriteSession, stamp: &str, analysis: &Analysis) -> Result<String> {
    // Never through a symlink: the report is the KB's own file.
    let dir = KbPath::bookkeeping(session.kb(), "wiki/reports")?
        .as_path()
        .to_path_buf();
    let text = render_report(stamp, analysis);
    let mut name = format!("lint_{stamp}.md");
    let mut n = 1u64;
    while !crate::fsx::write_new(&dir.join(&name), text.as_bytes())? {
        n += 1;
        name = format!("lint_{stamp}-{n}.md");
    }
    Ok(name)
}

/// The report page, in the Python tool's layout (formats §1.7).
pub fn render_report(timestamp: &str, analysis: &Analysis) -> String {
    let mut structural = format!(
        "Checked {} page(s) and {} document(s).\n",
        analysis.pages, analysis.documents
    );
    let mut groups: BTreeMap<IssueKind, Vec<&Issue>> = BTreeMap::new();
    for issue in &analysis.issues {
        groups.entry(issue.kind).or_default().push(issue);
    }
    if groups.is_empty() {
        structural.push_str("\nNo structural issues found.");
    }
    for (kind, issues) in groups {
        structural.push_str(&format!("\n### {} ({})\n\n", kind.heading(), issues.len()));
        for issue in issues {
            let fixed = if issue.fixed {
                " (fixed: now plain text)"
            } else {
                ""
            };
            // Page names and link targets are file names: escaped, one line per issue.
            let text = issue.describe();
            structural.push_str(&format!("- {}{fixed}\n", crate::names::escape_line(&text)));
        }
    }
    let structural = structural.trim_end();
    format!(
        "# Lint Report — {timestamp}\n\n## Structural\n\n{structural}\n\n## Semantic\n\n\
         Not run (no LLM).\n"
    )
}

/// One line per issue, for the terminal.
pub fn describe(issue: &Issue) -> String {
    issue.describe()
}
