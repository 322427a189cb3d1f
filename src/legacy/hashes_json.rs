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

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::names;
use crate::state::Document;

/// One registry entry: its key (the document hash) and its metadata, in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub hash: String,
    pub meta: Map<String, Value>,
}

/// Parse the bytes of `path` (a `hashes.json`). Errors name `path` and the problem.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<Entry>> {
    let text = checked_text(path, bytes)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let entries = de
        .deserialize_map(RegistryVisitor)
        .and_then(|entries| de.end().map(|()| entries))
        .map_err(|e| Error::LegacyFile {
            path: path.to_path_buf(),
            problem: describe(&e),
        })?;
    Ok(entries)
}

/// `bytes` as text, or the error for invalid UTF-8 or a byte-order mark.
fn checked_text<'b>(path: &Path, bytes: &'b [u8]) -> Result<&'b str> {
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
    Ok(text)
}

/// Shapes of a registry: (era label, keys in file order, count), in order of first appearance.
pub type Shapes = Vec<(&'static str, Vec<String>, usize)>;

/// Most distinct key lists told apart; the rest are counted together.
const MAX_SHAPES: usize = 64;
pub const OTHER_SHAPES: &str = "other key sets";

/// Parse `path` straight into documents (the initial import's fast path), with the same checks,
/// errors and mapping as [`parse`] followed by [`super::document_from_entry`], plus the shapes.
/// Every `doc_name` is in its column; the caller moves shared ones to `extra`.
pub fn parse_documents(path: &Path, bytes: &[u8]) -> Result<(Vec<Document>, Shapes)> {
    let text = checked_text(path, bytes)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let mut out = (Vec::new(), Vec::new());
    de.deserialize_map(DocumentsVisitor { out: &mut out })
        .and_then(|()| de.end())
        .map_err(|e| Error::LegacyFile {
            path: path.to_path_buf(),
            problem: describe(&e),
        })?;
    Ok(out)
}

/// Add one entry's key list to `shapes`.
pub(crate) fn add_shape(shapes: &mut Shapes, keys: &[&str], doc_type: Option<&str>) {
    // A registry has a handful of shapes, so a linear scan beats hashing every key list.
    match shapes
        .iter()
        .position(|(_, known, _)| known.iter().eq(keys))
    {
        Some(i) => shapes[i].2 += 1,
        None if shapes.len() < MAX_SHAPES => shapes.push((
            super::shape_label_of(keys, doc_type),
            keys.iter().map(|k| (*k).to_owned()).collect(),
            1,
        )),
        None => match shapes.last_mut() {
            Some(last) if last.0 == OTHER_SHAPES => last.2 += 1,
            _ => shapes.push((OTHER_SHAPES, Vec::new(), 1)),
        },
    }
}

struct DocumentsVisitor<'a> {
    out: &'a mut (Vec<Document>, Shapes),
}

impl<'de> Visitor<'de> for DocumentsVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object mapping document hashes to entries at the top level")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (documents, shapes) = self.out;
        let mut seen = HashSet::new();
        while let Some(hash) = map.next_key::<String>()? {
            check_key(&hash, &mut seen)?;
            let doc = map.next_value_seed(DocumentSeed {
                hash,
                shapes: &mut *shapes,
            })?;
            documents.push(doc);
        }
        Ok(())
    }
}

struct DocumentSeed<'s> {
    hash: String,
    shapes: &'s mut Shapes,
}

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_> {
    type Value = Document;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocumentSeed<'_> {
    type Value = Document;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object as the entry of document {}", self.hash)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut doc = Document::new(String::new());
        doc.status = crate::state::Status::Compiled;
        // Keys borrow from the file when they have no escapes: no allocation per key.
        let mut keys: Vec<Cow<'de, str>> = Vec::with_capacity(8);
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if keys.contains(&key) {
                return Err(de::Error::custom(format!(
                    "key {key:?} appears twice in the entry of document {}",
                    self.hash
                )));
            }
            let value: Value = map.next_value()?;
            super::place(&mut doc, &key, value);
            keys.push(key);
        }
        let names: Vec<&str> = keys.iter().map(|k| k.as_ref()).collect();
        doc.key_order = super::key_order_of(&names);
        let doc_type = match (&doc.doc_type, doc.extra.get("type")) {
            (Some(t), _) => Some(t.as_str()),
            (None, Some(Value::String(t))) => Some(t.as_str()),
            _ => None,
        };
        add_shape(self.shapes, &names, doc_type);
        doc.hash = self.hash;
        Ok(doc)
    }
}

/// A key borrowed from the input when it has no escapes (`Cow<str>`'s own `Deserialize`
/// always copies).
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

fn check_key<E: de::Error>(hash: &str, seen: &mut HashSet<String>) -> Result<(), E> {
    if !names::is_valid_hash(hash) {
        return Err(E::custom(format!(
            "key {hash:?} is not a document hash (64 lowercase hex digits)"
        )));
    }
    if !seen.insert(hash.to_owned()) {
        return Err(E::custom(format!(
            "document hash {hash} appears twice (the second would silently replace the first); \
             keep one of the two entries"
        )));
    }
    Ok(())
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
            check_key(&hash, &mut seen)?;
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
    fn the_document_fast_path_maps_exactly_like_entries() {
        let files: [&[u8]; 4] = [
            include_bytes!("../../tests/data/odd-hashes.json"),
            include_bytes!("../../tests/data/era-0.1-hashes.json"),
            include_bytes!("../../tests/data/era-0.2-0.3-hashes.json"),
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/legacy-kb-50/kb/.openkb/hashes.json"
            ))
            .expect("the legacy fixture beside the repository"),
        ];
        for bytes in files {
            let path = Path::new("h.json");
            let entries = parse(path, bytes).unwrap();
            let (documents, shapes) = parse_documents(path, bytes).unwrap();
            let mut expected_shapes = Vec::new();
            for entry in &entries {
                let keys: Vec<&str> = entry.meta.keys().map(String::as_str).collect();
                let label = super::super::shape_label(&entry.meta);
                assert_eq!(
                    label,
                    super::super::shape_label_of(
                        &keys,
                        entry.meta.get("type").and_then(Value::as_str)
                    )
                );
                add_shape(
                    &mut expected_shapes,
                    &keys,
                    entry.meta.get("type").and_then(Value::as_str),
                );
            }
            assert_eq!(shapes, expected_shapes);
            let expected: Vec<_> = entries
                .into_iter()
                .map(|e| super::super::document_from_entry(e, false))
                .collect();
            assert_eq!(documents, expected);
            for (doc, exp) in documents.iter().zip(&expected) {
                assert_eq!(
                    Value::Object(doc.extra.clone()).to_string(),
                    Value::Object(exp.extra.clone()).to_string()
                );
            }
        }
        let e = parse_documents(
            Path::new("h.json"),
            format!("{{\"{H1}\": {{\"a\": 1, \"a\": 2}}}}").as_bytes(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"a\" appears twice"), "{e}");
        let e = parse_documents(Path::new("h.json"), b"{\"x\": {}}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a document hash"), "{e}");
        let e = parse_documents(Path::new("h.json"), format!("{{\"{H1}\": 1}}").as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("an object as the entry of document"), "{e}");
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
