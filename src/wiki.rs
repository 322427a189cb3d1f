//! The wiki's fixed layout and seed pages, shared with the Python tool.

/// Folders `init` creates, relative to the KB root (the Python tool's layout).
pub const INIT_DIRS: &[&str] = &[
    "raw",
    "wiki/sources/images",
    "wiki/summaries",
    "wiki/concepts",
    "wiki/entities",
];

/// The seed of `wiki/index.md`: the four sections the compiler fills.
pub const INDEX_SEED: &str =
    "# Knowledge Base Index\n\n## Documents\n\n## Concepts\n\n## Entities\n\n## Explorations\n";

/// `wiki/AGENTS.md`: the schema an LLM compiler follows when it writes this wiki.
pub const AGENTS_MD: &str = include_str!("wiki_schema.md");
