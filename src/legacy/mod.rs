//! Legacy (Python openkb 0.1–0.4.5) state: reading `hashes.json` and `wiki/log.md`,
//! recovering crash journals, importing it all into `state.db` (`openkb migrate`), and
//! writing the registry back as a `hashes.json` (`openkb export --legacy-json`).
//!
//! # Mapping a `hashes.json` entry to a [`Document`]
//!
//! The known keys whose value is a JSON string (`name`, `doc_name`, `type`, `path`,
//! `raw_path`, `source_path`, `doc_id`, `origin`) go to their columns, and `pages` when it is
//! an integer written the way Python writes one. Everything else (unknown keys, and known keys
//! holding another type, e.g. `"name": null`) goes to `extra`, a JSON object, values
//! untouched. The entry's key order is kept in `key_order` only when it differs from the
//! canonical order ([`CANONICAL_ORDER`], then the other keys in their order), which every
//! shape the Python tool writes follows. [`entry_of`] is the inverse, so an entry survives the
//! round trip byte for byte.
//!
//! `doc_name` is unique in `state.db`, but two legacy entries can share one (0.2–0.3 used the
//! raw file stem). The first entry in registry order owns the `doc_name` column; a later one
//! keeps its `doc_name` in `extra` (so nothing is lost and export still writes it), and the
//! migration report lists it.

pub mod export;
pub mod handover;
pub mod hashes_json;
pub mod journal;
pub mod migrate;

use serde_json::{Map, Value};

use crate::state::{Document, Status};

pub use hashes_json::Entry;

/// Key order of an entry written by the Python tool (0.1 to 0.4.5), then `pages`.
pub const CANONICAL_ORDER: [&str; 9] = [
    "name",
    "doc_name",
    "type",
    "origin",
    "path",
    "raw_path",
    "source_path",
    "doc_id",
    "pages",
];

/// The document an entry becomes. `doc_name_owned_elsewhere`: another document already owns
/// this entry's `doc_name`, so it is kept in `extra`.
pub fn document_from_entry(entry: Entry, doc_name_owned_elsewhere: bool) -> Document {
    let order: Vec<&str> = entry.meta.keys().map(String::as_str).collect();
    let key_order = key_order_of(&order);
    let mut doc = Document::new(entry.hash);
    doc.status = Status::Compiled;
    doc.key_order = key_order;
    for (key, value) in entry.meta {
        place(&mut doc, &key, value);
    }
    if doc_name_owned_elsewhere {
        move_doc_name_to_extra(&mut doc);
    }
    doc
}

/// Put one key of a legacy entry where it belongs in `doc` (its column, or `extra`).
pub(crate) fn place(doc: &mut Document, key: &str, value: Value) {
    let slot = match key {
        "name" => Some(&mut doc.name),
        "doc_name" => Some(&mut doc.doc_name),
        "type" => Some(&mut doc.doc_type),
        "path" => Some(&mut doc.path),
        "raw_path" => Some(&mut doc.raw_path),
        "source_path" => Some(&mut doc.source_path),
        "doc_id" => Some(&mut doc.doc_id),
        "origin" => Some(&mut doc.origin),
        _ => None,
    };
    match (slot, value) {
        (Some(slot), Value::String(text)) => *slot = Some(text),
        (_, value) if key == "pages" && exact_integer(&value).is_some() => {
            doc.pages = exact_integer(&value);
        }
        (_, value) => {
            doc.extra.insert(key.to_owned(), value);
        }
    }
}

/// Another document owns this one's `doc_name`: keep it in `extra` (exported in place).
pub(crate) fn move_doc_name_to_extra(doc: &mut Document) {
    if let Some(doc_name) = doc.doc_name.take() {
        doc.extra.insert("doc_name".into(), Value::String(doc_name));
    }
}

/// The entry's key order, when it is not the canonical one.
pub(crate) fn key_order_of(order: &[&str]) -> Option<Vec<String>> {
    (order != canonical_order(order.iter().copied()).as_slice())
        .then(|| order.iter().map(|k| (*k).to_owned()).collect())
}

/// An integer whose text is exactly how it would be written back (`7`, not `7.0`, `-0` or
/// `1e1`), so storing it in the integer column loses nothing.
fn exact_integer(value: &Value) -> Option<i64> {
    let Value::Number(n) = value else { return None };
    let text = n.to_string();
    let parsed: i64 = text.parse().ok()?;
    (parsed.to_string() == text).then_some(parsed)
}

/// The canonical order of a set of keys: the known keys in [`CANONICAL_ORDER`], then the
/// others in the order given.
fn canonical_order<'k>(keys: impl Iterator<Item = &'k str> + Clone) -> Vec<&'k str> {
    let mut order: Vec<&str> = CANONICAL_ORDER
        .iter()
        .filter_map(|known| keys.clone().find(|k| k == known))
        .collect();
    order.extend(keys.filter(|k| !CANONICAL_ORDER.contains(k)));
    order
}

/// The `hashes.json` entry of `doc`: its columns and `extra`, in its legacy key order.
pub fn entry_of(doc: &Document) -> Map<String, Value> {
    let columns = [
        ("name", &doc.name),
        ("doc_name", &doc.doc_name),
        ("type", &doc.doc_type),
        ("origin", &doc.origin),
        ("path", &doc.path),
        ("raw_path", &doc.raw_path),
        ("source_path", &doc.source_path),
        ("doc_id", &doc.doc_id),
    ];
    let mut fields = Map::new();
    for (key, value) in columns {
        if let Some(text) = value {
            fields.insert(key.to_owned(), Value::String(text.clone()));
        }
    }
    if let Some(pages) = doc.pages {
        fields.insert("pages".into(), Value::from(pages));
    }
    for (key, value) in &doc.extra {
        // A column value wins over an `extra` copy of the same key: the column is what the
        // engine maintains.
        if !fields.contains_key(key) {
            fields.insert(key.clone(), value.clone());
        }
    }
    let extra_keys = doc.extra.keys().map(String::as_str);
    let present = |k: &&str| fields.contains_key(*k);
    let mut order: Vec<&str> = match &doc.key_order {
        Some(order) => order.iter().map(String::as_str).filter(present).collect(),
        None => Vec::new(),
    };
    for key in CANONICAL_ORDER.iter().copied().chain(extra_keys) {
        if present(&key) && !order.contains(&key) {
            order.push(key);
        }
    }
    let mut entry = Map::new();
    for key in order {
        if let Some(value) = fields.get(key) {
            entry.insert(key.to_owned(), value.clone());
        }
    }
    entry
}

/// A label for an entry's shape: the Python-tool era whose `add` writes exactly these keys.
pub fn shape_label(meta: &Map<String, Value>) -> &'static str {
    let keys: Vec<&str> = meta.keys().map(String::as_str).collect();
    shape_label_of(&keys, meta.get("type").and_then(Value::as_str))
}

/// [`shape_label`] from an entry's keys and its `type` string.
pub(crate) fn shape_label_of(keys: &[&str], doc_type: Option<&str>) -> &'static str {
    let has = |k: &str| keys.contains(&k);
    if !keys.iter().all(|k| CANONICAL_ORDER.contains(k)) {
        "with keys the Python tool never writes"
    } else if has("origin") || doc_type == Some("pageindex_cloud") {
        "0.4.2+ PageIndex Cloud import"
    } else if has("path") || has("raw_path") || has("source_path") {
        if doc_type == Some("long_pdf") {
            "0.4 long PDF"
        } else {
            "0.4"
        }
    } else if has("doc_name") || has("doc_id") {
        "0.2-0.3"
    } else {
        "0.1"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> Entry {
        let meta = match serde_json::from_str::<Value>(json).unwrap() {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        Entry {
            hash: "a".repeat(64),
            meta,
        }
    }

    fn round_trip(json: &str) -> (Document, String) {
        let e = entry(json);
        let doc = document_from_entry(e.clone(), false);
        let back = Value::Object(entry_of(&doc)).to_string();
        assert_eq!(back, Value::Object(e.meta).to_string(), "{json}");
        (doc, back)
    }

    #[test]
    fn python_shapes_are_canonical_and_map_to_columns() {
        for json in [
            r#"{"name": "a.md", "type": "md"}"#,
            r#"{"name": "a.md", "doc_name": "a", "type": "md"}"#,
            r#"{"name": "a.md", "doc_name": "a", "type": "md", "path": "p", "raw_path": "r", "source_path": "s"}"#,
            r#"{"name": "a.pdf", "doc_name": "a", "type": "long_pdf", "path": "p", "raw_path": "r", "doc_id": "d"}"#,
            r#"{"name": "c", "doc_name": "c", "type": "pageindex_cloud", "origin": "cloud", "path": "p", "source_path": "s", "doc_id": "d"}"#,
        ] {
            let (doc, _) = round_trip(json);
            assert_eq!(doc.key_order, None, "{json}");
            assert!(doc.extra.is_empty(), "{json}");
            assert_eq!(doc.status, Status::Compiled);
        }
    }

    #[test]
    fn odd_entries_keep_order_types_and_unknown_keys() {
        let (doc, _) = round_trip(r#"{"type": "md", "name": "a.md"}"#);
        assert_eq!(
            doc.key_order.as_deref(),
            Some(&["type".into(), "name".into()][..])
        );

        let (doc, _) = round_trip(r#"{"name": null, "pages": 10, "nested": {"b": [1, 2.50]}}"#);
        assert_eq!(doc.name, None);
        assert_eq!(doc.pages, Some(10));
        assert_eq!(doc.extra.keys().collect::<Vec<_>>(), ["name", "nested"]);
        assert_eq!(doc.key_order, None);

        for json in [
            r#"{"pages": 10.0}"#,
            r#"{"pages": -0}"#,
            r#"{"pages": 1e2}"#,
            r#"{"pages": 99999999999999999999}"#,
            r#"{"pages": "7"}"#,
        ] {
            let (doc, _) = round_trip(json);
            assert_eq!(doc.pages, None, "{json}");
            assert!(doc.extra.contains_key("pages"), "{json}");
        }
        let (doc, _) = round_trip(r#"{"filename": "x", "name": "a", "type": "md"}"#);
        assert!(doc.key_order.is_some());
    }

    #[test]
    fn a_doc_name_owned_elsewhere_stays_in_extra_and_exports_in_place() {
        let e = entry(r#"{"name": "a.md", "doc_name": "a", "type": "md"}"#);
        let doc = document_from_entry(e.clone(), true);
        assert_eq!(doc.doc_name, None);
        assert_eq!(doc.extra.get("doc_name"), Some(&Value::from("a")));
        assert_eq!(doc.key_order, None);
        assert_eq!(Value::Object(entry_of(&doc)), Value::Object(e.meta.clone()));
        let keys: Vec<String> = entry_of(&doc).keys().cloned().collect();
        assert_eq!(keys, ["name", "doc_name", "type"]);
    }

    #[test]
    fn shapes_are_labelled_by_era() {
        assert_eq!(
            shape_label(&entry(r#"{"name": "a", "type": "md"}"#).meta),
            "0.1"
        );
        assert_eq!(
            shape_label(&entry(r#"{"name": "a", "doc_name": "a", "type": "md"}"#).meta),
            "0.2-0.3"
        );
        assert_eq!(
            shape_label(&entry(r#"{"name": "a", "filename": "a"}"#).meta),
            "with keys the Python tool never writes"
        );
    }
}
