//! The document registry's domain types: one entry per content hash, its lifecycle status,
//! and the counts by status.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::names;

/// Lifecycle of a registered document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Registered, its files published, not compiled into the wiki yet.
    #[default]
    Pending,
    /// Compiled into the wiki (imported legacy documents count as compiled).
    Compiled,
    /// The compile hook failed; `error` says why.
    Failed,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Pending, Status::Compiled, Status::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Compiled => "compiled",
            Status::Failed => "failed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown status {s:?}"))
    }
}

/// One registry entry. In JSON output every key is present, `null` when absent (the
/// `--json` contract, docs/output.md). The string fields mirror the keys of a Python-tool
/// `hashes.json` entry;
/// `extra` holds every other key (and any known key whose value is not a string), so an entry
/// of any era round-trips without loss.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Document {
    pub hash: String,
    pub name: Option<String>,
    pub doc_name: Option<String>,
    #[serde(rename = "type")]
    pub doc_type: Option<String>,
    pub path: Option<String>,
    pub raw_path: Option<String>,
    pub source_path: Option<String>,
    pub doc_id: Option<String>,
    pub origin: Option<String>,
    pub pages: Option<i64>,
    pub extra: Map<String, Value>,
    /// Key order of the legacy entry, when it is not the canonical one.
    pub key_order: Option<Vec<String>>,
    pub status: Status,
    pub error: Option<String>,
    /// Registry order; assigned by the store.
    pub position: i64,
    /// ISO-8601 UTC; assigned by the store.
    pub created_at: String,
    pub updated_at: String,
}

impl Document {
    pub fn new(hash: impl Into<String>) -> Self {
        Document {
            hash: hash.into(),
            ..Document::default()
        }
    }

    /// The name wiki artifacts are named by: `doc_name`, or the stem of `name` for entries that
    /// predate `doc_name`.
    pub fn display_doc_name(&self) -> Option<String> {
        match (&self.doc_name, &self.name) {
            (Some(d), _) if !d.is_empty() => Some(d.clone()),
            (_, Some(n)) => Some(names::stem(n).to_owned()),
            _ => None,
        }
    }

    pub fn name_key(&self) -> String {
        names::name_key(self.doc_name.as_deref(), self.name.as_deref())
    }

    /// `extra` and `key_order` as stored: JSON text (`{}` when there are no extra keys).
    pub fn legacy_json(&self) -> (String, Option<String>) {
        let extra = if self.extra.is_empty() {
            "{}".to_owned()
        } else {
            Value::Object(self.extra.clone()).to_string()
        };
        let key_order = self
            .key_order
            .as_ref()
            .map(|k| Value::from(k.clone()).to_string());
        (extra, key_order)
    }

    /// The inverse of [`Document::legacy_json`]: `extra` and `key_order` read back from the
    /// stored text. The error names the column that does not hold what it must.
    pub fn legacy_from_json(
        extra: &str,
        key_order: Option<&str>,
    ) -> Result<LegacyFields, (&'static str, String)> {
        // Nearly every row has no extra keys: skip the JSON parser for those.
        let extra = if extra == "{}" {
            Map::new()
        } else {
            match serde_json::from_str::<Value>(extra) {
                Ok(Value::Object(map)) => map,
                _ => return Err(("extra", format!("not a JSON object: {extra}"))),
            }
        };
        let key_order = match key_order {
            None => None,
            Some(text) => Some(
                serde_json::from_str::<Vec<String>>(text)
                    .map_err(|e| ("key_order", e.to_string()))?,
            ),
        };
        Ok((extra, key_order))
    }
}

/// A document's legacy round-trip fields: its extra keys and its key order.
pub type LegacyFields = (Map<String, Value>, Option<Vec<String>>);

/// Counts of documents by lifecycle status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub pending: u64,
    pub compiled: u64,
    pub failed: u64,
}

impl StatusCounts {
    pub fn total(&self) -> u64 {
        self.pending + self.compiled + self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::{Document, Status};

    #[test]
    fn every_status_parses_back_from_its_text_and_nothing_else_does() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>(), Ok(status));
            assert_eq!(status.to_string(), status.as_str());
        }
        for bad in ["Pending", "done", ""] {
            assert!(bad.parse::<Status>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_name_of_wiki_artifacts_is_doc_name_or_the_stem_of_name() {
        let legacy = Document {
            name: Some("Report.final.md".into()),
            ..Document::new("h")
        };
        assert_eq!(legacy.display_doc_name().as_deref(), Some("Report.final"));
        let named = Document {
            doc_name: Some("report".into()),
            ..legacy.clone()
        };
        assert_eq!(named.display_doc_name().as_deref(), Some("report"));
        // An empty doc_name (seen in hand-edited registries) falls back to the name.
        let empty = Document {
            doc_name: Some(String::new()),
            ..legacy
        };
        assert_eq!(empty.display_doc_name().as_deref(), Some("Report.final"));
        assert_eq!(Document::new("h").display_doc_name(), None);
    }
}
