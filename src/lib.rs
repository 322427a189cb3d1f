//! openkb: the state engine of OpenKB knowledge bases.
//!
//! Layers, top to bottom (data flows one way):
//! - `cli`: one module per command; parses arguments and composes the layers below.
//! - `kb`: finding a KB and its paths; it hands out the sessions.
//! - `session`: read and write sessions, the one door into a KB's state (lock, store, recovery).
//! - `state`: the SQLite engine (`.openkb/state.db`); `lock`: flock; `fsx`: careful file
//!   primitives (atomic replace, create-new, walk); `config`: YAML config files.
//! - Leaves used by every layer: `hash` (SHA-256), `names`, `error`, `settings`.

pub mod cli;
pub mod config;
pub mod doctor;
pub mod error;
pub mod faults;
pub mod fsx;
pub mod hash;
pub mod ingest;
pub mod kb;
pub mod kbpath;
pub mod legacy;
pub mod lint;
pub mod lock;
pub mod lock_team;
pub mod log_md;
pub mod names;
pub mod netfs;
pub mod notice;
pub mod session;
pub mod settings;
pub mod state;
pub mod state_move;
pub mod state_url;
pub mod wiki;

pub use error::{Error, Result};
pub use kb::Kb;

/// The test PostgreSQL server (one per test binary), for the unit tests of team mode.
#[cfg(test)]
#[path = "../tests/support/pg_server.rs"]
#[allow(unused_imports)]
mod test_pg_server;
