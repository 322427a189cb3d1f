//! doc_name resolution, compatible with the Python tool 0.4 ("Scheme A",
//! `converter.resolve_doc_name`); see formats §1.2:
//!
//! 1. a document registered under the same path (its `path`, `raw_path` or `source_path`)
//!    keeps its name (an edited file keeps its wiki pages);
//! 2. else the first legacy entry (registry order, no `path`) whose name key is the stem under
//!    NFKC gives its name (the add then replaces that entry: legacy convergence);
//! 3. else the sanitized stem, with `-<first 8 hex of sha256(path key)>` appended when another
//!    document already owns that name.
//!
//! A new name is cut (at a char boundary) so that every file named after it fits the file
//! system's 255-byte limit on a name (`NAME_MAX`): the raw copy `<doc_name><suffix>` and the
//! wiki pages `<doc_name>.md`, with the disambiguator included. The Python tool would fail to
//! write such files; names that already fit are unchanged.
//!
//! Every lookup uses the store's indexes (`find_by_path`, `find_by_name_key`); the registry is
//! never scanned. `Claims` carries the names and legacy entries taken by earlier files of the
//! same batch, which are published together and not yet committed.

use std::collections::HashSet;

use crate::error::Result;
use crate::hash::sha256_hex;
use crate::names;
use crate::state::Queries;

/// How a name was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Reused from the document registered at the same path (its hash).
    SamePath(String),
    /// Taken over from a legacy entry matched by stem (its hash).
    Legacy(String),
    /// A new name.
    New,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub doc_name: String,
    pub origin: Origin,
}

/// Names and legacy entries claimed by earlier files of an uncommitted batch.
#[derive(Debug, Default)]
pub struct Claims {
    name_keys: HashSet<String>,
    legacy: HashSet<String>,
    paths: HashSet<String>,
}

impl Claims {
    /// Is `doc_name` free: neither registered (by name key) nor claimed by the batch?
    pub fn is_free(&self, q: &impl Queries, doc_name: &str) -> Result<bool> {
        Ok(!self.name_keys.contains(&names::nfkc(doc_name))
            && q.find_by_name_key(doc_name)?.is_empty())
    }

    pub fn claim(&mut self, resolved: &Resolved, path_key: &str) {
        self.name_keys.insert(names::nfkc(&resolved.doc_name));
        self.paths.insert(path_key.to_owned());
        if let Origin::Legacy(hash) | Origin::SamePath(hash) = &resolved.origin {
            self.legacy.insert(hash.clone());
        }
    }
}

/// `re.sub(r"[^\w\-]+", "-", NFKC(stem)).strip("-") or "document"`, the Python tool's rule.
pub fn sanitize(stem: &str) -> String {
    let normalized = names::nfkc(stem);
    let mut out = String::with_capacity(normalized.len());
    let mut in_run = false;
    for c in normalized.chars() {
        if is_python_word(c) || c == '-' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('-');
            in_run = true;
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "document".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Python's `re` `\w` on a `str`: `_`, or a character whose general category is a letter
/// (`Lu Ll Lt Lm Lo`) or a number (`Nd Nl No`) — exactly `str.isalnum()`. Rust's
/// `char::is_alphanumeric` is wider: it counts combining vowel signs (`Mn`, `Mc`, e.g.
/// Devanagari `ि`) as alphabetic, which Python turns into `-`, and the same file must get the
/// same doc_name from both tools. `tests/it/interop.rs` checks every code point against python3.
pub fn is_python_word(c: char) -> bool {
    use unicode_general_category::{GeneralCategory as G, get_general_category};
    c == '_'
        || matches!(
            get_general_category(c),
            G::UppercaseLetter
                | G::LowercaseLetter
                | G::TitlecaseLetter
                | G::ModifierLetter
                | G::OtherLetter
                | G::DecimalNumber
                | G::LetterNumber
                | G::OtherNumber
        )
}

/// Resolve the doc_name of a file with registry path key `path_key` and stem `stem`.
pub fn resolve(q: &impl Queries, path_key: &str, stem: &str, claims: &Claims) -> Result<Resolved> {
    if !claims.paths.contains(path_key)
        && let Some(doc) = q.find_by_path(path_key)?
        && !claims.legacy.contains(&doc.hash)
        && let Some(doc_name) = doc.display_doc_name()
    {
        return Ok(Resolved {
            doc_name,
            origin: Origin::SamePath(doc.hash),
        });
    }
    for doc in q.find_by_name_key(stem)? {
        let has_path = doc.path.as_deref().is_some_and(|p| !p.is_empty());
        if has_path || claims.legacy.contains(&doc.hash) {
            continue;
        }
        if let Some(doc_name) = doc.display_doc_name()
            && !claims.name_keys.contains(&names::nfkc(&doc_name))
        {
            return Ok(Resolved {
                doc_name,
                origin: Origin::Legacy(doc.hash),
            });
        }
    }
    let budget = name_budget(names::suffix(path_key));
    let clean = sanitize(stem);
    let clean = names::truncate_bytes(&clean, budget);
    let doc_name = if claims.is_free(q, clean)? {
        clean.to_owned()
    } else {
        disambiguated(path_key, stem)
    };
    Ok(Resolved {
        doc_name,
        origin: Origin::New,
    })
}

/// The sanitized stem with `-<first 8 hex of sha256(path key)>` appended, cut to fit
/// [`NAME_MAX`]: the name a new document gets when its plain name is taken (by a registered
/// name, or by a file already at one of the paths the name would give it).
pub fn disambiguated(path_key: &str, stem: &str) -> String {
    let budget = name_budget(names::suffix(path_key));
    let clean = sanitize(stem);
    let disambiguator = &sha256_hex(path_key.as_bytes())[..8];
    let cut = names::truncate_bytes(&clean, budget.saturating_sub(disambiguator.len() + 1));
    format!("{cut}-{disambiguator}")
}

/// Bytes in a file name (Linux, macOS and Windows file systems alike).
pub const NAME_MAX: usize = 255;

/// The longest doc_name whose files all fit [`NAME_MAX`]: the raw copy keeps the original
/// `suffix`, wiki pages get `.md`.
pub fn name_budget(suffix: &str) -> usize {
    NAME_MAX.saturating_sub(suffix.len().max(".md".len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_follows_the_python_rules() {
        assert_eq!(sanitize("Survey 0 (journal)"), "Survey-0-journal");
        assert_eq!(sanitize("2509.11420"), "2509-11420");
        assert_eq!(sanitize("会议纪要（草稿）"), "会议纪要-草稿");
        assert_eq!(sanitize("cafe\u{301}-menu"), "caf\u{e9}-menu");
        assert_eq!(sanitize("!!!"), "document");
        assert_eq!(sanitize("Long Book 0"), "Long-Book-0");
        assert_eq!(sanitize("a__b--c"), "a__b--c");
        // Combining vowel signs are not `\w` in Python: हिन्दी -> ह-न-द.
        assert_eq!(
            sanitize("\u{939}\u{93f}\u{928}\u{94d}\u{926}\u{940}"),
            "\u{939}-\u{928}-\u{926}"
        );
    }

    #[test]
    fn collision_suffix_is_sha256_of_the_path_key() {
        // The fixture's second report.md: inbox/b/report.md -> report-0d8d1e29.
        assert_eq!(&sha256_hex(b"inbox/b/report.md")[..8], "0d8d1e29");
    }
}
