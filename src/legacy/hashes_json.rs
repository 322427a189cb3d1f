//! Strict reading of a Python-tool `.openkb/hashes.json`.
//!
//! The registry is the user's data, so the reader accepts exactly what the Python tool can
//! write and reports everything else precisely instead of guessing: invalid UTF-8 (with the
//! position of the first bad byte), a byte-order mark, invalid or truncated JSON (line and
//! column), a top level that is not an object, a key that is not a 64-hex document hash, an
//! entry that is not an object, and a key that appears twice (Python would silently keep the
//! last one, which loses the first; a migration must not drop anything quietly).
//!
//! Entries keep their file order and their keys keep theirs (`serde_json` is built with
//! `preserve_order`), and numbers keep their text (`arbitrary_precision`), so an entry can be
//! written back byte for byte by [`super::export`].

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::names;

/// One registry entry: its key (the document hash) and its metadata, in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub hash: String,
    pub meta: Map<String, Value>,
}

/// Parse the bytes of `path` (a `hashes.json`). Errors name `path` and the problem.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<Entry>> {
    let problem = |problem: String| Error::LegacyFile {
        path: path.to_path_buf(),
        problem,
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let (line, column) = line_column(bytes, e.valid_up_to());
            return Err(problem(format!(
                "invalid UTF-8 at line {line}, column {column} (byte offset {}); the Python \
                 tool writes this file as ASCII, so it was damaged or edited by another program",
                e.valid_up_to()
            )));
        }
    };
    if text.starts_with('\u{feff}') {
        return Err(problem(
            "the file starts with a UTF-8 byte-order mark, which JSON (and the Python tool) does \
             not accept; remove the first three bytes"
                .into(),
        ));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let entries = de
        .deserialize_map(RegistryVisitor)
        .and_then(|entries| de.end().map(|()| entries))
        .map_err(|e| problem(describe(&e)))?;
    Ok(entries)
}

/// A serde_json error as a sentence for the user (serde_json already appends the position).
fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match e.classify() {
        serde_json::error::Category::Eof => format!("the JSON is truncated: {text}"),
        serde_json::error::Category::Syntax if text.contains("surrogate") => format!(
            "invalid JSON: {text} (a \\udcXX escape is how Python writes a file name that was \
             not valid UTF-8; such a name cannot be stored losslessly, rename that document's \
             file and its entry)"
        ),
        serde_json::error::Category::Syntax => format!("invalid JSON: {text}"),
        serde_json::error::Category::Data | serde_json::error::Category::Io => text,
    }
}

/// 1-based line and column (in bytes) of byte `offset`.
pub(crate) fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    (line, offset - line_start + 1)
}

struct RegistryVisitor;

impl<'de> Visitor<'de> for RegistryVisitor {
    type Value = Vec<Entry>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object mapping document hashes to entries at the top level")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = HashSet::new();
        let mut entries = Vec::new();
        while let Some(hash) = map.next_key::<String>()? {
            if !names::is_valid_hash(&hash) {
                return Err(de::Error::custom(format!(
                    "key {hash:?} is not a document hash (64 lowercase hex digits)"
                )));
            }
            if !seen.insert(hash.clone()) {
                return Err(de::Error::custom(format!(
                    "document hash {hash} appears twice (the second would silently replace the \
                     first); keep one of the two entries"
                )));
            }
            let meta = map.next_value_seed(EntrySeed { hash: &hash })?;
            entries.push(Entry { hash, meta });
        }
        Ok(entries)
    }
}

struct EntrySeed<'h> {
    hash: &'h str,
}

impl<'de> DeserializeSeed<'de> for EntrySeed<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object as the entry of document {}", self.hash)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut meta = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value: Value = map.next_value()?;
            if meta.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "key {key:?} appears twice in the entry of document {}",
                    self.hash
                )));
            }
            meta.insert(key, value);
        }
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "636eb604ecf28040cc681a2c876462e95b615add214a9f574f3a85077149486a";
    const H2: &str = "6ca34ddfacd77d741c74e3452ba3c5dee2ae191e8e783882c8125e2715127e8b";

    fn err(text: &[u8]) -> String {
        parse(Path::new("/kb/.openkb/hashes.json"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn keeps_entry_and_key_order_and_number_text() {
        let text = format!(
            r#"{{"{H2}": {{"type": "md", "name": "b.md", "pages": 1.50, "x": {{"z": 1, "a": 2}}}},
                "{H1}": {{"name": "a.md", "type": "md"}}}}"#
        );
        let entries = parse(Path::new("h.json"), text.as_bytes()).unwrap();
        assert_eq!(entries[0].hash, H2);
        assert_eq!(entries[1].hash, H1);
        let keys: Vec<&str> = entries[0].meta.keys().map(String::as_str).collect();
        assert_eq!(keys, ["type", "name", "pages", "x"]);
        assert_eq!(entries[0].meta["pages"].to_string(), "1.50");
        assert_eq!(entries[0].meta["x"].to_string(), r#"{"z":1,"a":2}"#);
    }

    #[test]
    fn empty_registry_is_fine() {
        assert!(parse(Path::new("h.json"), b"{}").unwrap().is_empty());
        assert!(parse(Path::new("h.json"), b"{}\n").unwrap().is_empty());
    }

    #[test]
    fn reports_each_problem_with_file_and_position() {
        let truncated = format!("{{\n  \"{H1}\": {{\n    \"name\": \"a");
        let e = err(truncated.as_bytes());
        assert!(
            e.starts_with("/kb/.openkb/hashes.json: the JSON is truncated"),
            "{e}"
        );
        assert!(e.contains("line 3"), "{e}");

        let e = err(format!("{{\n  \"{H1}\": {{}},,\n}}").as_bytes());
        assert!(e.contains("invalid JSON") && e.contains("line 2"), "{e}");

        let e = err(b"[1, 2]");
        assert!(
            e.contains("expected a JSON object mapping document hashes"),
            "{e}"
        );

        let e = err(format!("{{\"{H1}\": [1]}}").as_bytes());
        assert!(
            e.contains(&format!("an object as the entry of document {H1}")),
            "{e}"
        );

        let e = err(b"{\"ABC\": {}}");
        assert!(e.contains("\"ABC\" is not a document hash"), "{e}");
        let e = err(format!("{{\"{}\": {{}}}}", H1.to_uppercase()).as_bytes());
        assert!(e.contains("is not a document hash"), "{e}");

        let e = err(format!("{{\"{H1}\": {{}}, \"{H1}\": {{}}}}").as_bytes());
        assert!(e.contains("appears twice"), "{e}");

        let e = err(format!("{{\"{H1}\": {{\"name\": \"a\", \"name\": \"b\"}}}}").as_bytes());
        assert!(e.contains("\"name\" appears twice"), "{e}");

        let e = err(b"{\n \"x\xff\": {}}");
        assert!(e.contains("invalid UTF-8 at line 2, column 4"), "{e}");

        let e = err(b"\xef\xbb\xbf{}");
        assert!(e.contains("byte-order mark"), "{e}");

        let e = err(b"{} {}");
        assert!(e.contains("trailing characters"), "{e}");

        let e = err(format!("{{\"{H1}\": {{\"name\": \"\\udc80.md\"}}}}").as_bytes());
        assert!(e.contains("not valid UTF-8"), "{e}");

        let e = err(b"");
        assert!(e.contains("truncated"), "{e}");
    }
}
