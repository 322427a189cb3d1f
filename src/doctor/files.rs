//! The registry against the files on disk, and `wiki/log.md` against the log table.
//!
//! Built for 100k documents: one pass over the registry (collecting the paths documents own
//! and checking theirs against a set), and one walk of `raw/` and `wiki/sources/`; no stat
//! per document.

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::fsx::{self, WalkStep, walk};
use crate::kb::Kb;
use crate::log_md;
use crate::names;
use crate::state::{Document, Queries};

use super::Finding;

/// KB-relative folders whose files documents own (`wiki/sources/images/` is excluded: its
/// folders are named by doc_name and hold extracted images, not registry paths).
const OWNED_DIRS: [&str; 2] = ["raw", "wiki/sources"];

/// `full`: also hash every raw copy against its document's hash.
pub fn check(kb: &Kb, reader: &impl Queries, full: bool) -> Result<Vec<Finding>> {
    let present = present_files(kb)?;
    let untrusted = crate::state::untrusted::list(reader)?.into_iter().collect();
    let mut pass = RegistryPass {
        kb,
        present: &present,
        full,
        untrusted,
        findings: Vec::new(),
        owned: HashSet::new(),
        doc_names: HashSet::new(),
        claims: HashMap::new(),
        duplicate_claims: 0,
        hashed: 0,
        documents: 0,
    };
    reader.for_each_document(&mut |doc| {
        pass.visit(&doc);
        Ok(())
    })?;
    let mut findings = std::mem::take(&mut pass.findings);
    findings.extend(unowned_files(&present, &pass.owned));
    findings.extend(orphan_summaries(kb, &pass.doc_names)?);
    pass.all_clear(&mut findings);
    findings.push(check_log_md(kb, reader)?);
    Ok(findings)
}

/// Every file under the folders documents own (KB-relative), dotfiles left out: temp files
/// and `.DS_Store` are not documents (leftovers.rs sweeps temps).
fn present_files(kb: &Kb) -> Result<HashSet<String>> {
    let mut present = HashSet::new();
    for dir in OWNED_DIRS {
        walk(kb.root(), dir, &mut |rel, _| {
            if rel.ends_with('/') {
                return match rel {
                    "wiki/sources/images/" => WalkStep::Skip,
                    _ => WalkStep::Continue,
                };
            }
            if !rel.rsplit('/').next().unwrap_or(rel).starts_with('.') {
                present.insert(rel.to_owned());
            }
            WalkStep::Continue
        })?;
    }
    Ok(present)
}

/// The one pass over the registry: each document's claims and files against what is on
/// disk, and what the documents own, for the checks that follow.
struct RegistryPass<'a> {
    kb: &'a Kb,
    present: &'a HashSet<String>,
    full: bool,
    /// Hash -> why `migrate` marked the entry untrusted.
    untrusted: HashMap<String, String>,
    findings: Vec<Finding>,
    owned: HashSet<String>,
    doc_names: HashSet<String>,
    /// path / raw_path / source_path -> the first document (registry order) claiming it:
    /// (hash, label, key). The Python tool finds a document by any of the three
    /// (`get_by_path`), so two documents claiming one path make it pick whichever comes first.
    claims: HashMap<String, (String, String, &'static str)>,
    duplicate_claims: usize,
    hashed: usize,
    documents: u64,
}

impl RegistryPass<'_> {
    fn visit(&mut self, doc: &Document) {
        self.documents += 1;
        let label = doc
            .display_doc_name()
            .unwrap_or_else(|| names::short_hash(&doc.hash).into_owned());
        if let Some(why) = self.untrusted.get(&doc.hash) {
            // Its paths are not the document's to check or to delete: say what remove does.
            self.findings.push(Finding::warning(
                "untrusted-entry",
                format!(
                    "document {label} ({}): its legacy entry names paths openkb will not touch \
                     ({why}); the files are left as they are, and `openkb remove` of it only \
                     unregisters it",
                    names::short_hash(&doc.hash)
                ),
            ));
            return;
        }
        self.check_claims(doc, &label);
        self.check_raw(doc, &label);
        if let Some(path) = doc.path.as_deref().filter(|p| p.starts_with("raw/")) {
            self.owned.insert(path.to_owned());
        }
        if let Some(source) = &doc.source_path {
            if !self.exists(source) {
                self.findings.push(Finding::problem(
                    "missing-source",
                    format!(
                        "document {label}: its source {source} is missing; re-add the document \
                         (`openkb remove {label}` then `openkb add`) to regenerate it"
                    ),
                ));
            }
            self.owned.insert(source.clone());
        }
        if let Some(name) = doc.display_doc_name() {
            self.owned.insert(format!("wiki/sources/{name}.md"));
            self.owned.insert(format!("wiki/sources/{name}.json"));
            self.doc_names.insert(name);
        }
    }

    /// Is `rel` on disk? Answered from the walk for the folders it covered.
    fn exists(&self, rel: &str) -> bool {
        let walked = OWNED_DIRS
            .iter()
            .any(|d| rel.strip_prefix(d).is_some_and(|r| r.starts_with('/')));
        self.present.contains(rel) || (!walked && self.kb.root().join(rel).exists())
    }

    /// Two documents claiming one path, raw_path or source_path.
    fn check_claims(&mut self, doc: &Document, label: &str) {
        for (key, value) in [
            ("path", &doc.path),
            ("raw_path", &doc.raw_path),
            ("source_path", &doc.source_path),
        ] {
            let Some(value) = value.as_deref().filter(|v| !v.is_empty()) else {
                continue;
            };
            match self.claims.get(value) {
                Some((owner_hash, _, _)) if *owner_hash == doc.hash => {}
                Some((_, owner, owner_key)) => {
                    self.duplicate_claims += 1;
                    self.findings.push(Finding::problem(
                        "duplicate-claim",
                        format!(
                            "documents {owner} ({owner_key}) and {label} ({key}) both claim \
                             {value}; both tools find the first one by that path: `openkb \
                             remove` the stale one (`openkb list` shows both)"
                        ),
                    ));
                }
                None => {
                    self.claims
                        .insert(value.to_owned(), (doc.hash.clone(), label.to_owned(), key));
                }
            }
        }
    }

    /// The raw copy: present, and (with `full`) still the content its hash names.
    fn check_raw(&mut self, doc: &Document, label: &str) {
        let cloud = doc.origin.as_deref() == Some("cloud")
            || doc.doc_type.as_deref() == Some("pageindex_cloud");
        // Entries from before raw_path (eras A and B) kept their copy at raw/<name>.
        let raw = doc.raw_path.clone().or_else(|| match (&doc.name, cloud) {
            (Some(name), false) => Some(format!("raw/{name}")),
            _ => None,
        });
        let Some(raw) = raw else {
            return;
        };
        if self.full && self.exists(&raw) && !cloud {
            self.hashed += 1;
            match crate::hash::sha256_file(&self.kb.root().join(&raw)) {
                Ok(actual) if actual == doc.hash => {}
                Ok(actual) => self.findings.push(Finding::problem(
                    "hash-mismatch",
                    format!(
                        "document {label}: the content of {raw} no longer matches its hash \
                         (registered {}, now {}); it changed since it was added: `openkb \
                         add {raw}` registers the new content",
                        names::short_hash(&doc.hash),
                        names::short_hash(&actual)
                    ),
                )),
                Err(e) => self.findings.push(Finding::problem(
                    "hash-mismatch",
                    format!("document {label}: cannot hash {raw}: {e}"),
                )),
            }
        }
        if !self.exists(&raw) {
            self.findings.push(Finding::problem(
                "missing-raw",
                format!(
                    "document {label}: its raw copy {raw} is missing; restore the file, or \
                     run `openkb remove {label}`"
                ),
            ));
        }
        self.owned.insert(raw);
    }

    /// The "ok" findings of the checks that found nothing.
    fn all_clear(&self, findings: &mut Vec<Finding>) {
        if self.duplicate_claims == 0 {
            findings.push(Finding::ok(
                "duplicate-claim",
                "no two documents claim one path, raw_path or source_path",
            ));
        }
        if self.full && !findings.iter().any(|f| f.check == "hash-mismatch") {
            findings.push(Finding::ok(
                "hash-mismatch",
                format!(
                    "{} raw cop(ies) hashed; every one matches its document's hash",
                    self.hashed
                ),
            ));
        }
        if !findings.iter().any(|f| f.check.starts_with("missing-")) {
            findings.push(Finding::ok(
                "registry",
                format!(
                    "{} document(s); every raw copy and source is present",
                    self.documents
                ),
            ));
        }
    }
}

/// Files in the owned folders that no document owns.
fn unowned_files(present: &HashSet<String>, owned: &HashSet<String>) -> Vec<Finding> {
    let mut unowned: Vec<&String> = present.difference(owned).collect();
    unowned.sort();
    unowned
        .into_iter()
        .map(|path| {
            Finding::warning(
                "unowned-file",
                format!(
                    "{path} belongs to no registered document; `openkb add` it, or move it out \
                     of the KB"
                ),
            )
        })
        .collect()
}

/// Summaries whose doc_name no registered document has.
fn orphan_summaries(kb: &Kb, doc_names: &HashSet<String>) -> Result<Vec<Finding>> {
    let summaries = kb.wiki_dir().join("summaries");
    let mut orphans = Vec::new();
    for entry in fsx::read_dir_if_exists(&summaries)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".md")
            && !name.starts_with('.')
            && !doc_names.contains(stem)
        {
            orphans.push(name.clone());
        }
    }
    orphans.sort();
    Ok(orphans
        .into_iter()
        .map(|name| {
            Finding::warning(
                "orphan-summary",
                format!("wiki/summaries/{name} has no registered document"),
            )
        })
        .collect())
}

fn check_log_md(kb: &Kb, reader: &impl Queries) -> Result<Finding> {
    let expected = log_md::render(reader)?;
    let path = kb.log_md();
    let actual = fsx::read_if_exists(&path)?;
    Ok(match actual {
        Some(bytes) if bytes == expected.as_bytes() => {
            Finding::ok("log.md", "wiki/log.md matches the log table")
        }
        // The Python tool writes multi-line descriptions verbatim where openkb escapes them:
        // the same entries, written either way, are no difference worth a rewrite.
        Some(bytes) if same_entries(&bytes, &expected) => {
            Finding::ok("log.md", "wiki/log.md matches the log table")
        }
        Some(_) => Finding::warning(
            "log.md",
            "wiki/log.md differs from the log table (the source of truth); `openkb doctor --fix` \
             rewrites it from the table",
        )
        .fixable(),
        None => Finding::warning(
            "log.md",
            "wiki/log.md is missing; `openkb doctor --fix` rewrites it from the log table",
        )
        .fixable(),
    })
}

/// Whether the page `bytes` holds exactly the entries of `expected`, as the log.md parser
/// reads them.
pub(super) fn same_entries(bytes: &[u8], expected: &str) -> bool {
    std::str::from_utf8(bytes)
        .is_ok_and(|text| log_md::parse_text(text) == log_md::parse_text(expected))
}
