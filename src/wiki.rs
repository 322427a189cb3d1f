//! The wiki's fixed layout and seed pages, shared with the Python tool.

/// Folders `init` creates, relative to the KB root (the Python tool's layout).
pub const INIT_DIRS: &[&str] = &[
    "raw",
    "wiki/sources/images",
    "wiki/summaries",
    "wiki/concepts",
    "wiki/entities",
];

/// The seed of `wiki/index.md`: the four sections the compiler fills.
pub const INDEX_SEED: &str =
    "# Knowledge Base Index\n\n## Documents\n\n## Concepts\n\n## Entities\n\n## Explorations\n";

/// `wiki/AGENTS.md`: the schema an LLM compiler follows when it writes this wiki.
pub const AGENTS_MD: &str = include_str!("wiki_schema.md");

// ---------------------------------------------------------------------------------------------
// Editing the wiki when documents come and go. Every page is rewritten with
// `fsx::atomic_write`, and only when its text changed, so a crash leaves each page whole and
// the edits can simply be redone (they are idempotent).

use std::path::Path;

use crate::error::{Error, Result};
use crate::fsx::WalkStep;
use crate::kb::Kb;
use crate::kbpath::KbPath;
use crate::names;

/// The header of the section `index.md` lists documents in.
const DOCUMENTS_HEADER: &str = "## Documents";

/// The index line of a document added by openkb, in the Python compiler's shape. Both names
/// are escaped by [`names::escape_line`], so a name holding a newline cannot add lines of its
/// own to the index; in the file name shown after the link, `[[` and `]]` are written
/// `[\u{5b}` and `]\u{5d}` as well, so that it cannot hold a wikilink of its own (which
/// `remove` of the linked document would take for its line).
pub fn index_line(doc_name: &str, name: &str) -> String {
    let shown = names::escape_line(name)
        .replace("[[", "[\\u{5b}")
        .replace("]]", "]\\u{5d}");
    format!(
        "- [[summaries/{}]] (short) — {shown}",
        names::escape_line(doc_name)
    )
}

/// `wiki/index.md`, confined as a bookkeeping file (never written through a symlink).
pub fn index_md(kb: &Kb) -> Result<KbPath> {
    KbPath::bookkeeping(kb, "wiki/index.md")
}

/// Insert index lines (`(doc_name, line)`) at the top of `## Documents`, as if each had been
/// inserted in turn (the last one ends up first). Documents already linked from the index are
/// left alone. One rewrite of the file for the whole set. Returns the doc_names inserted.
pub fn index_insert(index_md: &KbPath, entries: &[(String, String)]) -> Result<Vec<String>> {
    let text = read_or(index_md.as_path(), INDEX_SEED)?;
    let linked = linked_summaries(&text);
    let mut inserted = Vec::new();
    let mut block = String::new();
    for (doc_name, line) in entries.iter().rev() {
        if linked.contains(names::escape_line(doc_name).as_ref()) || inserted.contains(doc_name) {
            continue;
        }
        block.push_str(line);
        block.push('\n');
        inserted.push(doc_name.clone());
    }
    if inserted.is_empty() {
        return Ok(inserted);
    }
    let updated = match find_header(&text, DOCUMENTS_HEADER) {
        Some(after_header) => {
            let newline = if text[..after_header].ends_with('\n') {
                ""
            } else {
                "\n"
            };
            format!(
                "{}{newline}{block}{}",
                &text[..after_header],
                &text[after_header..]
            )
        }
        None => {
            let sep = if text.is_empty() || text.ends_with("\n\n") {
                ""
            } else if text.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            format!("{text}{sep}{DOCUMENTS_HEADER}\n{block}")
        }
    };
    index_md.write_atomic(updated.as_bytes())?;
    Ok(inserted)
}

/// The doc_names `text` links to as `[[summaries/<doc_name>...]]`.
fn linked_summaries(text: &str) -> std::collections::HashSet<&str> {
    links(text)
        .into_iter()
        .filter_map(|l| page_key(l.target).strip_prefix("summaries/"))
        .collect()
}

/// Remove the index lines linking to any of `doc_names`. Returns whether the file changed.
pub fn index_remove(index_md: &KbPath, doc_names: &[&str]) -> Result<bool> {
    match index_without(index_md, doc_names)? {
        Some(text) => {
            index_md.write_atomic(text.as_bytes())?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// `index.md` without the lines linking to any of `doc_names`, or `None` when it has none
/// (or does not exist). Reads only: a remove checks this before it deletes anything.
pub fn index_without(index_md: &KbPath, doc_names: &[&str]) -> Result<Option<String>> {
    let path = index_md.as_path();
    let Some(bytes) = crate::fsx::read_if_exists(path)? else {
        return Ok(None);
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::Invalid(format!(
            "{}: is not valid UTF-8 (byte {}), so openkb cannot edit its lines; fix or re-save \
            it as UTF-8 and run the command again; nothing was changed",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    let mut changed = false;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if is_index_line_of(line, doc_names) {
            changed = true;
        } else {
            out.push_str(line);
        }
    }
    Ok(changed.then_some(out))
}

/// A page rewrite worked out before any file of an operation is touched.
#[derive(Debug)]
pub struct Edit {
    pub path: KbPath,
    pub text: String,
}

impl Edit {
    pub fn apply(&self) -> Result<()> {
        self.path.write_atomic(self.text.as_bytes())
    }
}

/// Every wiki edit that unlinking `doc_name` needs: its `index.md` line, and the
/// `[[summaries/<doc_name>]]` links and `sources:` entries of other pages. Reads only, so a
/// remove can check everything (an unreadable page, a non-UTF-8 index) before it deletes.
pub fn unlink_edits(kb: &Kb, doc_name: &str) -> Result<Vec<Edit>> {
    let mut edits = Vec::new();
    let index = index_md(kb)?;
    if let Some(text) = index_without(&index, &[doc_name])? {
        edits.push(Edit { path: index, text });
    }
    for (rel, text) in summary_link_edits(&kb.wiki_dir(), doc_name)? {
        edits.push(Edit {
            path: KbPath::new(kb, &format!("wiki/{rel}"))?,
            text,
        });
    }
    Ok(edits)
}

/// Strip `[[summaries/<doc_name>]]` links (keeping their text) and `summaries/<doc_name>.md`
/// from frontmatter `sources:` lists in every wiki page except `index.md`: the new texts, by
/// path relative to `wiki_dir`. Symlinks are neither followed nor written.
pub fn summary_link_edits(wiki_dir: &Path, doc_name: &str) -> Result<Vec<(String, String)>> {
    let mut pages = Vec::new();
    crate::fsx::walk(wiki_dir, "", &mut |rel, entry| {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return WalkStep::Skip; // not a page openkb could have linked
        };
        if name.starts_with('.') {
            return WalkStep::Skip;
        }
        if rel.ends_with('/') {
            // Sources are document text, not wiki prose: their links are the author's.
            return match rel {
                "sources/" => WalkStep::Skip,
                _ => WalkStep::Continue,
            };
        }
        let top_level = !rel.contains('/');
        if entry.file_type().is_ok_and(|t| t.is_file())
            && name.ends_with(".md")
            && !(top_level && (name == "index.md" || name == "log.md"))
        {
            pages.push(rel.to_owned());
        }
        WalkStep::Continue
    })?;
    let mut changed = Vec::new();
    for rel in pages {
        let path = wiki_dir.join(&rel);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            // A page that is not UTF-8 is not one openkb writes links into.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => continue,
            Err(e) => return Err(Error::io("cannot read", &path, e)),
        };
        if let Some(updated) = strip_links_in(&text, doc_name) {
            changed.push((rel, updated));
        }
    }
    changed.sort();
    Ok(changed)
}

/// The page text without links to `doc_name`'s summary, or `None` when there are none.
pub fn strip_links_in(text: &str, doc_name: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut in_frontmatter = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare == "---" {
            in_frontmatter = i == 0;
            out.push_str(line);
            continue;
        }
        if in_frontmatter && let Some(fixed) = strip_sources_entry(bare, doc_name) {
            changed = true;
            out.push_str(&fixed);
            out.push_str(&line[bare.len()..]);
            continue;
        }
        match strip_wikilinks(line, doc_name) {
            Some(fixed) => {
                changed = true;
                out.push_str(&fixed);
            }
            None => out.push_str(line),
        }
    }
    changed.then_some(out)
}

/// `sources: ["summaries/a.md", ...]` without `summaries/<doc_name>.md`.
fn strip_sources_entry(line: &str, doc_name: &str) -> Option<String> {
    let rest = line.strip_prefix("sources:")?;
    let list: Vec<String> = serde_json::from_str(rest.trim()).ok()?;
    let target = format!("summaries/{doc_name}.md");
    if !list.contains(&target) {
        return None;
    }
    let kept: Vec<String> = list
        .iter()
        .filter(|s| **s != target)
        .map(|s| serde_json::Value::String(s.clone()).to_string())
        .collect();
    Some(format!("sources: [{}]", kept.join(", ")))
}

/// Replace `[[summaries/<doc_name>]]`, `[[summaries/<doc_name>.md]]`, `...#section]]` and
/// `...|text]]` by their visible text.
fn strip_wikilinks(line: &str, doc_name: &str) -> Option<String> {
    let mut out = String::with_capacity(line.len());
    let mut last = 0;
    for link in links(line)
        .into_iter()
        .filter(|l| is_summary_of(l, doc_name))
    {
        out.push_str(&line[last..link.start]);
        out.push_str(link.label.unwrap_or(doc_name));
        last = link.end;
    }
    if last == 0 {
        return None;
    }
    out.push_str(&line[last..]);
    Some(out)
}

/// True when `line` is the index entry of one of `doc_names`, whatever happened to it: a
/// bullet linking to its summary (with a label, an anchor, text rewritten by a compiler), or
/// the plain `summaries/<doc_name> ...` an older `lint --fix` left when it stripped the link of
/// a pending document.
fn is_index_line_of(line: &str, doc_names: &[&str]) -> bool {
    let trimmed = line.trim_start();
    let Some(item) = trimmed
        .strip_prefix("- ")
        .or_else(|| trimmed.strip_prefix("* "))
    else {
        return false;
    };
    doc_names.iter().any(|d| {
        line_links(line, d)
            || item
                .strip_prefix("summaries/")
                .and_then(|rest| rest.strip_prefix(d))
                .is_some_and(|after| after.is_empty() || after.starts_with(char::is_whitespace))
    })
}

/// True when `line` holds a wiki link to `summaries/<doc_name>` exactly.
fn line_links(line: &str, doc_name: &str) -> bool {
    links(line).iter().any(|l| is_summary_of(l, doc_name))
}

/// A link names a summary by its escaped doc_name (what [`index_line`] writes); for every
/// doc_name a file can have, that is the doc_name itself.
fn is_summary_of(link: &Link<'_>, doc_name: &str) -> bool {
    page_key(link.target).strip_prefix("summaries/") == Some(names::escape_line(doc_name).as_ref())
}

/// One `[[...]]` occurrence in a page.
#[derive(Debug, PartialEq, Eq)]
pub struct Link<'a> {
    /// Byte range of the whole `[[...]]`.
    pub start: usize,
    pub end: usize,
    /// The target without anchor, trimmed.
    pub target: &'a str,
    pub label: Option<&'a str>,
}

/// Wikilinks of `text`, outside fenced code blocks.
pub fn links(text: &str) -> Vec<Link<'_>> {
    let mut out = Vec::new();
    let mut offset = 0;
    let mut in_fence = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
        } else if !in_fence {
            let mut from = 0;
            while let Some(open) = line[from..].find("[[") {
                let inner_start = from + open + 2;
                let Some(close) = line[inner_start..].find("]]") else {
                    break;
                };
                let inner = &line[inner_start..inner_start + close];
                let (target, label) = match inner.split_once('|') {
                    Some((t, l)) => (t, Some(l.trim())),
                    None => (inner, None),
                };
                let target = target.split('#').next().unwrap_or("").trim();
                out.push(Link {
                    start: offset + from + open,
                    end: offset + inner_start + close + 2,
                    target,
                    label,
                });
                from = inner_start + close + 2;
            }
        }
        offset += line.len();
    }
    out
}

/// The page key a target names: `concepts/x` for `concepts/x`, `/concepts/x` or
/// `concepts/x.md`.
pub fn page_key(target: &str) -> &str {
    let t = target.trim_start_matches('/');
    t.strip_suffix(".md").unwrap_or(t)
}

/// Byte offset just after the line `header` (its newline included), if present.
fn find_header(text: &str, header: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == header {
            return Some(offset + line.len());
        }
        offset += line.len();
    }
    None
}

fn read_or(path: &Path, default: &str) -> Result<String> {
    match crate::fsx::read_if_exists(path)? {
        Some(bytes) => utf8_page(path, bytes),
        None => Ok(default.to_owned()),
    }
}

/// A page's text, or an error saying it is not UTF-8 (openkb never rewrites such a page).
fn utf8_page(path: &Path, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        Error::Invalid(format!(
            "{}: is not valid UTF-8 (byte {}), so openkb cannot edit its lines; fix or re-save \
             it as UTF-8 and run the command again; nothing was changed",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_parsed_with_labels_and_anchors() {
        let text = "see [[concepts/a]] and [[entities/b|Bee]]\n```\n[[not/a-link]]\n```\n\
                    and [[summaries/c#part]] [[#self]]";
        let found: Vec<(&str, Option<&str>)> =
            links(text).iter().map(|l| (l.target, l.label)).collect();
        assert_eq!(
            found,
            vec![
                ("concepts/a", None),
                ("entities/b", Some("Bee")),
                ("summaries/c", None),
                ("", None),
            ]
        );
        let first = &links(text)[0];
        assert_eq!(&text[first.start..first.end], "[[concepts/a]]");
    }

    #[test]
    fn page_keys_ignore_slash_and_suffix() {
        assert_eq!(page_key("/concepts/x.md"), "concepts/x");
        assert_eq!(page_key("concepts/x"), "concepts/x");
    }

    #[test]
    fn index_lines_go_to_the_top_of_documents_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("wiki")).unwrap();
        std::fs::write(dir.path().join("wiki/index.md"), INDEX_SEED).unwrap();
        let kb = Kb::at(dir.path()).unwrap();
        let index = index_md(&kb).unwrap();
        let index_path = index.as_path().to_path_buf();
        let entries = vec![
            ("a".to_owned(), index_line("a", "a.md")),
            ("b".to_owned(), index_line("b", "b.md")),
        ];
        assert_eq!(index_insert(&index, &entries).unwrap(), ["b", "a"]);
        assert!(index_insert(&index, &entries[..1]).unwrap().is_empty());
        let text = std::fs::read_to_string(&index_path).unwrap();
        assert!(text.starts_with(
            "# Knowledge Base Index\n\n## Documents\n- [[summaries/b]] (short) — b.md\n- [[summaries/a]] (short) — a.md\n\n## Concepts"
        ), "{text}");
        assert!(index_remove(&index, &["a"]).unwrap());
        let text = std::fs::read_to_string(&index_path).unwrap();
        assert!(!text.contains("summaries/a]"), "{text}");
        assert!(text.contains("summaries/b]"), "{text}");
    }

    #[test]
    fn links_are_stripped_but_similar_names_kept() {
        let page = "---\nsources: [\"summaries/report.md\", \"summaries/report-2.md\"]\n---\n\nSee [[summaries/report]] and [[summaries/report|the report]] and [[summaries/report-2]].\n";
        let out = strip_links_in(page, "report").unwrap();
        assert_eq!(
            out,
            "---\nsources: [\"summaries/report-2.md\"]\n---\n\nSee report and the report and [[summaries/report-2]].\n"
        );
        assert!(strip_links_in(&out, "report").is_none());
    }
}
