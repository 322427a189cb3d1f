//! Name rules shared with the Python tool: file stems, NFKC comparison keys, hash checks, and
//! the escaping that keeps names (which are hostile input) from forging lines or terminal output.
//!
//! ## Escaping
//!
//! A file name may hold any character but `/` and NUL, and a legacy registry entry any
//! character at all. Written verbatim into a line-based file (`wiki/log.md`, `wiki/index.md`)
//! a newline in a name would start a forged `## [..] remove | ..` entry or index line; printed
//! verbatim to a terminal an ESC would drive it. So every such character is written as
//! `\u{HEX}` (lowercase hex, Rust's own notation): the C0 controls but tab, DEL, the C1
//! controls (NEL included), the line and paragraph separators U+2028/U+2029, and the bidi
//! controls (U+061C, U+200E/F, U+202A-E, U+2066-9) that can make a line read differently from
//! what it holds. A backslash that would otherwise read as the start of such an escape is
//! itself written `\u{5c}`, so [`unescape_line`] restores exactly what [`escape_line`] was
//! given, and the log.md parser reads back what openkb wrote.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

/// True for the characters [`escape_line`] writes as `\u{HEX}`.
pub fn is_unsafe_char(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{a}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{2028}' | '\u{2029}'
        | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every unsafe character (see the module docs) written as `\u{HEX}`: never holds
/// a line break or a terminal control, and [`unescape_line`] gives `text` back.
pub fn escape_line(text: &str) -> Cow<'_, str> {
    let needs =
        |i: usize, c: char| is_unsafe_char(c) || (c == '\\' && text[i + 1..].starts_with("u{"));
    if !text.char_indices().any(|(i, c)| needs(i, c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, c) in text.char_indices() {
        if needs(i, c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The inverse of [`escape_line`]: every `\u{HEX}` naming a character becomes that character;
/// any other text (a lone backslash, `\u{zz}`) is kept as written.
pub fn unescape_line(text: &str) -> Cow<'_, str> {
    if !text.contains("\\u{") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\\u{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        let decoded = after.find('}').and_then(|close| {
            let hex = &after[..close];
            let ok = (1..=6).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit());
            let c = ok.then(|| u32::from_str_radix(hex, 16).ok().and_then(char::from_u32))??;
            Some((c, close))
        });
        match decoded {
            Some((c, close)) => {
                out.push(c);
                rest = &after[close + 1..];
            }
            None => {
                out.push_str("\\u{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Longest text shown for one name on the terminal; a longer one (a legacy entry can hold
/// megabytes) is cut there with a note of what was left out.
pub const SHOWN_MAX_CHARS: usize = 512;

/// A name as printed on the terminal: escaped like [`escape_line`] and cut at
/// [`SHOWN_MAX_CHARS`] characters. Every command prints names through this.
pub fn shown(text: &str) -> Cow<'_, str> {
    cut(escape_line(text), SHOWN_MAX_CHARS)
}

/// Longest line of a message shown on the terminal (see [`shown_message`]).
pub const SHOWN_MESSAGE_MAX_CHARS: usize = 2048;

/// A whole message (an error, a doctor finding, a per-file line) as printed on the terminal:
/// like [`escape_line`] but its own line breaks kept, and each line cut at
/// [`SHOWN_MESSAGE_MAX_CHARS`]. The last guard for text that embeds a name without going
/// through [`shown`].
pub fn shown_message(text: &str) -> Cow<'_, str> {
    let long = text.len() > SHOWN_MESSAGE_MAX_CHARS
        && text
            .split('\n')
            .any(|l| l.chars().nth(SHOWN_MESSAGE_MAX_CHARS).is_some());
    if !long && !text.chars().any(|c| c != '\n' && is_unsafe_char(c)) {
        return Cow::Borrowed(text);
    }
    let lines: Vec<Cow<'_, str>> = text
        .split('\n')
        .map(|line| cut(escape_line(line), SHOWN_MESSAGE_MAX_CHARS))
        .collect();
    Cow::Owned(lines.join("\n"))
}

/// A one-line message (a `doctor` finding, a `lint` issue) as printed on the terminal: escaped
/// like [`escape_line`], line breaks included, and cut at [`SHOWN_MESSAGE_MAX_CHARS`].
pub fn shown_line(text: &str) -> Cow<'_, str> {
    cut(escape_line(text), SHOWN_MESSAGE_MAX_CHARS)
}

/// `text` cut after `max_chars` characters, with a note of how much was left out.
fn cut(text: Cow<'_, str>, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => text,
        Some((at, _)) => Cow::Owned(format!(
            "{}... ({} more bytes)",
            &text[..at],
            text.len() - at
        )),
    }
}

/// Characters of a hash shown as its short form (a unique prefix is accepted as an
/// identifier).
pub const SHORT_HASH_CHARS: usize = 12;

/// A registry hash as printed: its first [`SHORT_HASH_CHARS`] characters, escaped. A legacy
/// entry's key can be any text (short, non-ASCII, with control characters), so this never
/// slices bytes.
pub fn short_hash(hash: &str) -> Cow<'_, str> {
    let end = hash
        .char_indices()
        .nth(SHORT_HASH_CHARS)
        .map_or(hash.len(), |(at, _)| at);
    shown(&hash[..end])
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends at a char boundary.
pub fn truncate_bytes(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

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
    fn escaping_uses_rust_notation_and_only_where_needed() {
        assert_eq!(escape_line("plain name.md"), "plain name.md");
        assert_eq!(escape_line("a\nb\r\u{1b}[31m"), "a\\u{a}b\\u{d}\\u{1b}[31m");
        assert_eq!(escape_line("tab\there"), "tab\there");
        assert_eq!(
            escape_line("\u{85}\u{2028}\u{202e}\u{7f}"),
            "\\u{85}\\u{2028}\\u{202e}\\u{7f}"
        );
        // A backslash is escaped only where it would read as an escape.
        assert_eq!(escape_line("C:\\new\\u{41}"), "C:\\new\\u{5c}u{41}");
        assert_eq!(unescape_line("C:\\new\\u{5c}u{41}"), "C:\\new\\u{41}");
        assert_eq!(
            unescape_line("\\u{zz} \\u{110000} \\u{"),
            "\\u{zz} \\u{110000} \\u{"
        );
    }

    #[test]
    fn shown_cuts_long_names_at_a_char_boundary() {
        let long = "é".repeat(SHOWN_MAX_CHARS + 10);
        let shown = shown(&long);
        assert!(shown.starts_with(&"é".repeat(SHOWN_MAX_CHARS)));
        assert!(shown.ends_with("... (20 more bytes)"), "{shown}");
        assert_eq!(truncate_bytes("aé", 2), "a");
        assert_eq!(shown_message("line\nx\u{1b}"), "line\nx\\u{1b}");
    }

    #[test]
    fn hashes_must_be_lowercase_hex() {
        assert!(is_valid_hash(&"a".repeat(64)));
        assert!(!is_valid_hash(&"A".repeat(64)));
        assert!(!is_valid_hash(&"a".repeat(63)));
        assert!(!is_valid_hash(&"g".repeat(64)));
    }
}
