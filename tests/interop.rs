//! The Python tool and openkb on one KB: doc_name parity with Python's `re`, the three-way
//! drift merge of a reappeared `hashes.json`, the way back (`export --for-python`), and the
//! warnings every command gives.

mod common;

use std::process::Command;

use openkb::ingest::docname::sanitize;

/// Python's own rule, run by python3 (standard library only) over every code point `c` as the
/// stem `a<c>b`: the name it produces, or nothing for code points Python's Unicode database
/// does not assign (a newer Unicode in Rust may; that is a version, not a rule, difference).
const PYTHON_TABLE: &str = r#"
import re, sys, unicodedata
rule = re.compile(r"[^\w\-]+")
out = []
for cp in range(0x110000):
    if 0xD800 <= cp <= 0xDFFF:
        continue
    c = chr(cp)
    if unicodedata.category(c) == "Cn":
        continue
    stem = "a" + c + "b"
    name = rule.sub("-", unicodedata.normalize("NFKC", stem)).strip("-") or "document"
    out.append("%x\t%s" % (cp, name.encode("unicode_escape").decode("ascii")))
sys.stdout.write("\n".join(out))
"#;

fn unescape(text: &str) -> String {
    // Python's unicode_escape of a str: \\, \xNN, \uNNNN, \UNNNNNNNN, \t \n \r.
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> char {
            let digits: String = chars.take(n).collect();
            char::from_u32(u32::from_str_radix(&digits, 16).expect("hex")).expect("char")
        };
        match chars.next().expect("escape") {
            '\\' => out.push('\\'),
            't' => out.push('\t'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            'x' => out.push(hex(&mut chars, 2)),
            'u' => out.push(hex(&mut chars, 4)),
            'U' => out.push(hex(&mut chars, 8)),
            other => panic!("unexpected escape \\{other}"),
        }
    }
    out
}

#[test]
fn doc_name_matches_pythons_re_for_every_assigned_code_point() {
    let out = Command::new("python3")
        .args(["-c", PYTHON_TABLE])
        .output()
        .expect("python3 runs (it is part of the test environment)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).expect("ASCII table");
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for line in table.lines() {
        let (cp, expected) = line.split_once('\t').expect("two columns");
        let c = char::from_u32(u32::from_str_radix(cp, 16).expect("hex")).expect("char");
        let expected = unescape(expected);
        let actual = sanitize(&format!("a{c}b"));
        if actual != expected {
            mismatches.push(format!(
                "U+{cp:0>4}: python {expected:?}, openkb {actual:?}"
            ));
        }
        checked += 1;
    }
    // Python 3.8+ assigns well over 140,000 code points; a short table means python3 failed.
    assert!(checked > 140_000, "only {checked} code points checked");
    assert!(
        mismatches.is_empty(),
        "{} of {checked} code points differ, e.g.\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );
}

#[test]
fn doc_name_of_scripts_with_combining_marks_matches_the_python_tool() {
    // What the Python tool's converter (0.4.5) names these stems; the first is the issue's case.
    for (stem, python) in [
        ("हिन्दी", "ह-न-द"),
        ("ภาษาไทย", "ภาษาไทย"),
        ("ภูมิ", "ภ-ม"),
        ("مَرحَبا", "م-رح-با"),
        ("שָׁלוֹם", "ש-לו-ם"),
        ("cafe\u{301}", "caf\u{e9}"),
    ] {
        assert_eq!(sanitize(stem), python, "{stem}");
    }
}
