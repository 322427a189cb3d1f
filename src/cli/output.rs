//! What a command prints, and where: the one place that knows `-q`, `-v` and `--json`.
//!
//! The contract (docs/output.md):
//! - standard output carries the result: human lines, or with `--json` exactly one JSON
//!   document and nothing else, so `openkb ... --json | jq` always works;
//! - standard error carries progress, notes, warnings and errors;
//! - `-q` keeps errors, warnings and the result: the final summary line of a command that
//!   works through items (add, compile, ...), the report of one that only reads (status,
//!   list, log); it drops per-item lines, progress and notes. `-v` adds detail;
//! - every JSON document is an object whose first key is `format_version`
//!   ([`FORMAT_VERSION`]); keys are always present, `null` when a value is absent; a change
//!   that removes or retypes a key bumps the version (adding a key does not).
//!
//! Commands print through an [`Output`] instead of `println!`, so a new command gets the same
//! behaviour by construction. A new reporting command: give it a `--json` flag, take
//! `let out = ctx.output(args.json)`, print per-item lines with [`Output::line`], its result
//! with [`Output::result`], and its JSON with [`Output::json`] on a struct whose absent values
//! are `Option`s (never `skip_serializing_if`), or stream a long list with
//! [`JsonArrayWriter`]; then add docs/schemas/<command>.json and validate the command's output
//! against it in tests/it/output.rs.

use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::error::{Error, IoContext, Result};

/// Version of every `--json` document; the schemas in docs/schemas/ describe this version.
pub const FORMAT_VERSION: u32 = 1;

/// How much a command says, from the global `-q`/`-v` and the command's own `--json`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Output {
    pub quiet: bool,
    pub verbose: u8,
    pub json: bool,
}

/// A JSON document: `format_version` first, then the command's own keys.
#[derive(Serialize)]
struct Versioned<'a, T: Serialize> {
    format_version: u32,
    #[serde(flatten)]
    body: &'a T,
}

impl Output {
    /// A line about one item of work on stdout ("added x as y"): not with `-q` or `--json`.
    pub fn line(&self, text: impl std::fmt::Display) {
        if !self.quiet && !self.json {
            println!("{text}");
        }
    }

    /// What the command was asked for, on stdout: the final summary ("added 3, skipped 1,
    /// failed 0") or a report (`status`). Kept by `-q`; replaced by the JSON document with
    /// `--json`.
    pub fn result(&self, text: impl std::fmt::Display) {
        if !self.json {
            println!("{text}");
        }
    }

    /// Something worth knowing that is not the result (on stderr): not with `-q`.
    pub fn note(&self, text: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// Detail for `-v` (on stderr).
    pub fn detail(&self, text: impl std::fmt::Display) {
        if self.verbose > 0 && !self.quiet {
            eprintln!("{text}");
        }
    }

    /// A warning (on stderr): always shown, `-q` included.
    pub fn warn(&self, text: impl std::fmt::Display) {
        eprintln!("warning: {text}");
    }

    /// Per-item lines may be shown (not `-q`, not `--json`).
    pub fn chatty(&self) -> bool {
        !self.quiet && !self.json
    }

    /// A progress bar may be drawn: stderr is a terminal and neither `-q` nor `--json` asked
    /// for silence.
    pub fn progress_bar(&self) -> bool {
        !self.quiet && !self.json && std::io::stderr().is_terminal()
    }

    /// Print `body` as the command's JSON document, `format_version` first.
    pub fn json<T: Serialize>(&self, body: &T) -> Result<()> {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        write_json(&mut out, body)?;
        out.flush().with_path("cannot write", "standard output")
    }
}

/// Write `body` as a pretty JSON document with `format_version` first, and a newline.
pub fn write_json<T: Serialize>(out: &mut impl Write, body: &T) -> Result<()> {
    serde_json::to_writer_pretty(
        &mut *out,
        &Versioned {
            format_version: FORMAT_VERSION,
            body,
        },
    )
    .map_err(json_error)?;
    out.write_all(b"\n")
        .with_path("cannot write", "standard output")
}

/// A streamed JSON document `{"format_version": 1, "<key>": [ item, ... ]}` whose array is
/// written one item at a time, so a 100k-row listing never sits in memory.
pub struct JsonArrayWriter<W: Write> {
    out: W,
    first: bool,
}

impl<W: Write> JsonArrayWriter<W> {
    pub fn start(mut out: W, key: &str) -> Result<Self> {
        let key = serde_json::to_string(key).map_err(json_error)?;
        write!(
            out,
            "{{\n  \"format_version\": {FORMAT_VERSION},\n  {key}: ["
        )
        .with_path("cannot write", "standard output")?;
        Ok(JsonArrayWriter { out, first: true })
    }

    pub fn item<T: Serialize>(&mut self, item: &T) -> Result<()> {
        self.out
            .write_all(if self.first { b"\n    " } else { b",\n    " })
            .with_path("cannot write", "standard output")?;
        self.first = false;
        serde_json::to_writer(&mut self.out, item).map_err(json_error)
    }

    pub fn finish(mut self) -> Result<W> {
        self.out
            .write_all(if self.first { b"]\n}\n" } else { b"\n  ]\n}\n" })
            .and_then(|()| self.out.flush())
            .with_path("cannot write", "standard output")?;
        Ok(self.out)
    }
}

fn json_error(e: serde_json::Error) -> Error {
    if let Some(kind) = e.io_error_kind() {
        return Error::io(
            "cannot write",
            "standard output",
            std::io::Error::from(kind),
        );
    }
    Error::Invalid(format!("cannot serialize JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_version_comes_first_and_body_keys_follow() {
        #[derive(Serialize)]
        struct Body {
            name: Option<String>,
            count: u32,
        }
        let mut out = Vec::new();
        write_json(
            &mut out,
            &Body {
                name: None,
                count: 2,
            },
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["format_version", "name", "count"]);
        assert_eq!(value["name"], serde_json::Value::Null);
    }

    #[test]
    fn streamed_array_is_valid_json_empty_or_not() {
        for n in [0usize, 1, 3] {
            let mut writer = JsonArrayWriter::start(Vec::new(), "items").unwrap();
            for i in 0..n {
                writer.item(&i).unwrap();
            }
            let out = writer.finish().unwrap();
            let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(value["format_version"], FORMAT_VERSION);
            assert_eq!(value["items"].as_array().unwrap().len(), n);
        }
    }
}
