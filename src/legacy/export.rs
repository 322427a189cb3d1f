//! Writing the registry back as a 0.4-format `hashes.json`, byte for byte as the Python tool
//! writes it: `json.dumps(registry, indent=2, ensure_ascii=True) + "\n"`.
//!
//! Python's rules, reproduced exactly: two-space indent; items separated by `,` + newline; key
//! and value separated by `": "`; an empty object or array is `{}` / `[]`; every character
//! outside printable ASCII (space to `~`) is escaped: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`
//! by name, any other as lowercase `\u00XX` (including DEL, `\u007f`), and characters beyond
//! the BMP as a UTF-16 surrogate pair. Numbers are written with the text they were read with
//! (`serde_json` keeps it), which is what Python wrote.

use serde_json::{Map, Value};

use crate::state::Document;

/// Append `documents` (registry order) as a complete 0.4-format `hashes.json` to `out`.
pub fn write_registry<'d>(out: &mut String, documents: impl IntoIterator<Item = &'d Document>) {
    let mut empty = true;
    for doc in documents {
        out.push_str(if empty { "{\n  " } else { ",\n  " });
        empty = false;
        write_string(out, &doc.hash);
        out.push_str(": ");
        write_value(out, &Value::Object(super::entry_of(doc)), 1);
    }
    out.push_str(if empty { "{}\n" } else { "\n}\n" });
}

/// `json.dumps(value, indent=2, ensure_ascii=True)` of `value` nested `level` deep.
pub fn write_value(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                indent(out, level + 1);
                write_value(out, item, level + 1);
            }
            out.push('\n');
            indent(out, level);
            out.push(']');
        }
        Value::Object(map) => write_object(out, map, level),
    }
}

fn write_object(out: &mut String, map: &Map<String, Value>, level: usize) {
    if map.is_empty() {
        out.push_str("{}");
        return;
    }
    out.push('{');
    for (i, (key, item)) in map.iter().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        indent(out, level + 1);
        write_string(out, key);
        out.push_str(": ");
        write_value(out, item, level + 1);
    }
    out.push('\n');
    indent(out, level);
    out.push('}');
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

/// A JSON string with Python's `ensure_ascii=True` escaping.
pub fn write_string(out: &mut String, s: &str) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dumped(value: &Value) -> String {
        let mut out = String::new();
        write_value(&mut out, value, 0);
        out
    }

    #[test]
    fn escapes_like_python_ensure_ascii() {
        // Expected strings produced by CPython 3.11 json.dumps(..., ensure_ascii=True).
        let cases = [
            ("cafe\u{301}-menu.md", r#""cafe\u0301-menu.md""#),
            ("caf\u{e9}", r#""caf\u00e9""#),
            ("会议", r#""\u4f1a\u8bae""#),
            ("\u{1f600}", r#""\ud83d\ude00""#),
            ("a\"b\\c/d", r#""a\"b\\c/d""#),
            ("\n\r\t\u{8}\u{c}", r#""\n\r\t\b\f""#),
            ("\u{1}\u{1f}\u{7f}", r#""\u0001\u001f\u007f""#),
            ("\u{ff}\u{100}\u{ffff}", r#""\u00ff\u0100\uffff""#),
        ];
        for (input, expected) in cases {
            let mut out = String::new();
            write_string(&mut out, input);
            assert_eq!(out, expected, "{input:?}");
        }
    }

    #[test]
    fn nests_like_python_indent_2() {
        let value: Value =
            serde_json::from_str(r#"{"a": [], "b": {}, "c": [1, {"d": null}], "e": 1.50}"#)
                .unwrap();
        assert_eq!(
            dumped(&value),
            "{\n  \"a\": [],\n  \"b\": {},\n  \"c\": [\n    1,\n    {\n      \"d\": null\n    }\n  ],\n  \"e\": 1.50\n}"
        );
    }

    #[test]
    fn empty_registry_is_braces_and_newline() {
        let mut out = String::new();
        write_registry(&mut out, []);
        assert_eq!(out, "{}\n");
    }
}
