//! Where a KB's state lives and how fast it answers: the backend, its version, the schema and
//! one measured round trip, as `status` and `doctor` show them (text and `--json`).

use serde::Serialize;

use crate::error::Result;

/// Where the state lives and how fast it answers: the same for both backends, so a script
/// reads one shape whatever the KB's mode.
#[derive(Clone, Debug, Serialize)]
pub struct StateReport {
    /// `sqlite` or `postgresql`.
    pub backend: &'static str,
    /// The engine's version (`SQLite 3.50.4`, `PostgreSQL 15.18`).
    pub server_version: String,
    /// The PostgreSQL schema holding the KB (`openkb_<kb_id>`); `null` for `state.db`.
    pub schema: Option<String>,
    pub schema_version: i64,
    /// The database file, or the server and database (never a password).
    pub location: String,
    /// One round trip to the state (a read of the counts by status), in milliseconds.
    pub latency_ms: f64,
    /// How the connection to the server is encrypted (`TLSv1.3 (sslmode=verify-full)`);
    /// `null` for `state.db` or a connection in plain text.
    pub tls: Option<String>,
}

impl StateReport {
    /// Describe `store` and time `round_trip` once.
    pub fn measure(
        kb: &crate::Kb,
        store: &crate::state::Store,
        round_trip: impl FnOnce() -> Result<()>,
    ) -> Result<StateReport> {
        let description = store.backend().describe()?;
        let start = std::time::Instant::now();
        round_trip()?;
        let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
        let schema = match kb.state_config()? {
            crate::config::StateConfig::Postgres { kb_id } => Some(kb_id.schema_name()),
            crate::config::StateConfig::Sqlite => None,
        };
        Ok(StateReport {
            backend: description.backend,
            server_version: description.engine_version,
            schema,
            schema_version: description.schema_version,
            location: description.location,
            latency_ms,
            tls: description.tls,
        })
    }

    /// `PostgreSQL 15.18, schema version 1, round trip 0.41 ms, at <location>` (a team KB's
    /// location names its schema), and for a server how the connection is encrypted.
    pub fn line(&self) -> String {
        let tls = match (&self.tls, self.schema.is_some()) {
            (Some(tls), _) => format!(", over {tls}"),
            (None, true) => ", not encrypted".to_owned(),
            (None, false) => String::new(),
        };
        format!(
            "{}, schema version {}, round trip {:.2} ms, at {}{tls}",
            self.server_version, self.schema_version, self.latency_ms, self.location
        )
    }
}
