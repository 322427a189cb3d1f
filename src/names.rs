//! Name rules shared with the Python tool: file stems, NFKC comparison keys, hash checks.

use unicode_normalization::UnicodeNormalization;

/// `pathlib.PurePath(name).stem` of Python 3.11: the last component without its last suffix,
/// where a suffix needs a dot that is neither the first nor the last character.
pub fn stem(name: &str) -> &str {
    let base = name.rsplit('/').next().unwrap_or(name);
    match base.rfind('.') {
        Some(i) if i > 0 && i < base.len() - 1 => &base[..i],
        _ => base,
    }
}

/// `pathlib.PurePath(name).suffix`: the part `stem` leaves off, dot included.
pub fn suffix(name: &str) -> &str {
    let base = name.rsplit('/').next().unwrap_or(name);
    &base[stem(base).len()..]
}

/// Unicode NFKC, the normalization the Python tool compares names under.
pub fn nfkc(text: &str) -> String {
    // ASCII is unchanged by every normalization form; most names are ASCII.
    if text.is_ascii() {
        return text.to_owned();
    }
    text.nfkc().collect()
}

/// The key under which a registry entry owns a name: NFKC of its `doc_name`, or of its
/// file name's stem for entries that predate `doc_name`.
pub fn name_key(doc_name: Option<&str>, name: Option<&str>) -> String {
    match (doc_name, name) {
        (Some(d), _) if !d.is_empty() => nfkc(d),
        (_, Some(n)) => nfkc(stem(n)),
        _ => String::new(),
    }
}

/// A registry key: 64 lowercase hex digits.
pub fn is_valid_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stem_and_suffix_follow_pathlib() {
        assert_eq!(stem("report.md"), "report");
        assert_eq!(suffix("report.md"), ".md");
        assert_eq!(stem("a.tar.gz"), "a.tar");
        assert_eq!(stem(".bashrc"), ".bashrc");
        assert_eq!(suffix(".bashrc"), "");
        assert_eq!(stem("x."), "x.");
        assert_eq!(stem("dir/Survey 0 (journal).md"), "Survey 0 (journal)");
        assert_eq!(suffix("Long Book.PDF"), ".PDF");
    }

    #[test]
    fn name_key_prefers_doc_name_and_normalizes() {
        assert_eq!(name_key(Some("report"), Some("x.md")), "report");
        assert_eq!(
            name_key(None, Some("cafe\u{301}-menu.md")),
            "caf\u{e9}-menu"
        );
        assert_eq!(name_key(Some(""), Some("a.md")), "a");
        assert_eq!(name_key(None, None), "");
    }

    #[test]
    fn hashes_must_be_lowercase_hex() {
        assert!(is_valid_hash(&"a".repeat(64)));
        assert!(!is_valid_hash(&"A".repeat(64)));
        assert!(!is_valid_hash(&"a".repeat(63)));
        assert!(!is_valid_hash(&"g".repeat(64)));
    }
}
