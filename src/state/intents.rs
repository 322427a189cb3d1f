//! The `intents` table: operations in flight, recorded before they touch a file.
//!
//! The ingest protocol (see `ingest/mod.rs`) is: under the KB's exclusive lock, commit an
//! intent naming every file the operation will create or delete; do the file work; then one
//! transaction commits the operation's rows and deletes the intent. An intent that outlives its
//! process is the exact, guess-free description of what to roll back or finish; it is settled
//! by `ingest::recover` on the next outermost exclusive lock. `openkb doctor` lists them.

use serde::{Deserialize, Serialize};

use super::Queries;
use crate::error::Result;

/// What an intent is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IntentOp {
    Add,
    Remove,
    Compile,
}

impl IntentOp {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentOp::Add => "add",
            IntentOp::Remove => "remove",
            IntentOp::Compile => "compile",
        }
    }

    pub const ALL: [IntentOp; 3] = [IntentOp::Add, IntentOp::Remove, IntentOp::Compile];
}

impl std::str::FromStr for IntentOp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IntentOp::ALL
            .into_iter()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| format!("unknown intent operation {s:?}"))
    }
}

/// One file an intent touches, KB-relative POSIX paths.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentFile {
    pub path: String,
    /// For an add that replaces an existing file: where its previous content was kept
    /// (a hard link under `.openkb/staging/`), to be put back on rollback.
    pub backup: Option<String>,
}

impl IntentFile {
    pub fn new(path: impl Into<String>) -> Self {
        IntentFile {
            path: path.into(),
            backup: None,
        }
    }

    /// An intent's files as every backend stores them: one JSON list.
    pub fn list_to_json(files: &[IntentFile]) -> Result<String> {
        serde_json::to_string(files)
            .map_err(|e| crate::Error::Invalid(format!("cannot serialize intent files: {e}")))
    }
}

/// An unfinished operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Intent {
    pub id: i64,
    pub operation: IntentOp,
    pub hash: String,
    pub doc_name: Option<String>,
    pub files: Vec<IntentFile>,
    pub started_at: String,
    pub pid: i64,
    /// The compile hook this operation started, while it may still run.
    pub hook: Option<HookGroup>,
}

/// A compile hook's process group, as recorded in its intent: the group id and the token in
/// the hook's environment that tells its processes from unrelated ones reusing the id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HookGroup {
    pub pgid: i32,
    pub token: String,
}

impl HookGroup {
    /// The hook recorded with an intent, as read back from storage. Read from disk: an id that
    /// is not a plausible process group is ignored, never signalled (0, 1 and negatives would
    /// reach this process's group, init or every process), and so is a group without a token.
    pub fn from_stored(pgid: Option<i64>, token: Option<String>) -> Option<HookGroup> {
        match (pgid, token) {
            (Some(pgid), Some(token)) if !token.is_empty() => i32::try_from(pgid)
                .ok()
                .filter(|&p| p > 1)
                .map(|pgid| HookGroup { pgid, token }),
            _ => None,
        }
    }
}

/// Every unfinished intent, oldest first (for recovery and `openkb doctor`).
pub fn unfinished(q: &impl Queries) -> Result<Vec<Intent>> {
    q.unfinished_intents()
}

/// How many intents are unfinished: the cheap check run on every exclusive acquisition.
pub fn unfinished_count(q: &impl Queries) -> Result<u64> {
    q.unfinished_intent_count()
}

#[cfg(test)]
mod tests {
    use super::{HookGroup, IntentOp};

    #[test]
    fn a_stored_hook_is_used_only_when_it_is_a_plausible_group_with_a_token() {
        let token = || Some("t".to_owned());
        assert_eq!(
            HookGroup::from_stored(Some(4242), token()),
            Some(HookGroup {
                pgid: 4242,
                token: "t".into()
            })
        );
        // 0, 1 and negatives would signal this process's group, init, or everyone.
        for pgid in [0, 1, -1, -4242, i64::from(i32::MAX) + 1] {
            assert_eq!(HookGroup::from_stored(Some(pgid), token()), None, "{pgid}");
        }
        assert_eq!(
            HookGroup::from_stored(Some(4242), Some(String::new())),
            None
        );
        assert_eq!(HookGroup::from_stored(Some(4242), None), None);
        assert_eq!(HookGroup::from_stored(None, token()), None);
    }

    #[test]
    fn every_operation_parses_back_from_its_text_and_nothing_else_does() {
        for op in IntentOp::ALL {
            assert_eq!(op.as_str().parse::<IntentOp>(), Ok(op));
        }
        assert!("Add".parse::<IntentOp>().is_err());
        assert!("".parse::<IntentOp>().is_err());
    }
}
