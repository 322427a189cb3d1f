//! Moving a KB's state between its local `state.db` and PostgreSQL (team mode):
//! `openkb migrate --to-postgres` and `openkb migrate --to-sqlite`.
//!
//! Each move is a copy, a switch and a setting aside, in an order that leaves the KB usable at
//! every instant a process could be killed:
//!
//! 1. Under the KB's exclusive lock (recovery settled), the whole state is copied into the
//!    new backend in ONE transaction of that backend (a new PostgreSQL schema, or a new
//!    `state.db` built under a temp name and linked into place without replacing anything),
//!    and the copy's fingerprint (counts, SHA-256 of the registry and of the log) must equal
//!    the original's before it commits (`state::transfer`). Killed before that commit: the
//!    new backend holds nothing, the KB is as it was.
//! 2. The config's `state:` section is switched (one atomic write): the commit point of the
//!    move. Killed before it: the KB still works in its old mode; the committed copy is
//!    unreferenced (a schema nobody's config names, or a `state.db` a team KB ignores; the
//!    next `--to-sqlite` sets such a file aside first).
//! 3. The old state is set aside, still under the lock: `state.db` is renamed
//!    `state.db.local-<time>`; a PostgreSQL schema is renamed `<schema>_moved_<time>`. A
//!    process that read the old config before the switch and waited for the lock then finds
//!    no old state and stops with an error instead of writing where nobody will read it.
//!    Killed before it: the new mode works; the old state lingers and is set aside by hand
//!    (the message of the next move says where).
//!
//! The old state is never deleted: `state.db.local-*` and the `_moved_` schema are there to
//! inspect or restore.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::config::{KbId, StateConfig};
use crate::error::{Error, Result};
use crate::faults::crash_point;
use crate::kb::Kb;
use crate::state::postgres::PgStore;
use crate::state::transfer::{self, Fingerprint};
use crate::state::{Queries, WriteTx, build};

/// What a move did.
#[derive(Debug, Serialize)]
pub struct Moved {
    /// `postgres` or `sqlite`: where the state is now.
    pub backend: &'static str,
    pub kb_id: String,
    /// Where the state is now (a schema on a server, or the `state.db` path).
    pub location: String,
    /// Where the old state was set aside (a file, or a schema).
    pub kept_aside: Option<String>,
    pub fingerprint: Fingerprint,
}

/// `migrate --to-postgres`: copy the local `state.db` into a new schema of the server the
/// environment names, switch the config, set `state.db` aside.
pub fn to_postgres(kb: &Kb) -> Result<Moved> {
    if let StateConfig::Postgres { kb_id } = kb.state_config()? {
        return Err(Error::Usage(format!(
            "{}: is already a team KB (its state is in PostgreSQL, kb_id {}); nothing to move",
            kb.config_path().display(),
            kb_id.as_str()
        )));
    }
    let server = kb.settings().state.config(kb.root())?;
    let session = kb.write_session()?;
    // Kept after the session (and its database connections) is closed, so that state.db is
    // set aside before any other process can take the lock.
    let lock = kb.lock_exclusive()?;
    let kb_id = KbId::new_random()?;
    let (store, fingerprint) = PgStore::create_filled(&server, &kb_id, |tx| {
        let reader = session.reader()?;
        let copied = transfer::copy_all(reader.reads(), &WriteTx::new(tx), &kb_id.schema_name())?;
        crash_point("to-postgres-commit");
        Ok(copied)
    })?;
    crash_point("to-postgres-config");
    switch_config(
        kb,
        StateConfig::Postgres {
            kb_id: kb_id.clone(),
        },
    )?;
    // Fold the WAL into state.db and close every connection before the rename: a renamed
    // file must be whole on its own.
    session.checkpoint()?;
    drop(session);
    crash_point("to-postgres-set-aside");
    let aside = set_aside_local(kb)?;
    drop(lock);
    Ok(Moved {
        backend: "postgres",
        kb_id: kb_id.as_str().to_owned(),
        location: store.location().to_owned(),
        kept_aside: aside.map(|p| p.display().to_string()),
        fingerprint,
    })
}

/// `migrate --to-sqlite`: build a new `state.db` from the KB's PostgreSQL schema, link it in,
/// switch the config, rename the schema aside.
pub fn to_sqlite(kb: &Kb) -> Result<Moved> {
    let StateConfig::Postgres { kb_id } = kb.state_config()? else {
        return Err(Error::Usage(format!(
            "{}: is not a team KB (its state is the local .openkb/state.db); nothing to move",
            kb.config_path().display()
        )));
    };
    // The team lock, and what interrupted team processes left settled by recovery.
    let session = kb.write_session()?;
    build::remove_stale_builds(&kb.openkb_dir())?;
    // A state.db beside a team config was left by an interrupted move: not the KB's state.
    let stale = set_aside_local(kb)?;
    let reader = session.reader()?;
    let rows = reader.counts()?.total() + reader.log_count()?;
    let target = kb.state_db().display().to_string();
    let fingerprint = build::create_filled(&kb.state_db(), rows as usize, |tx| {
        let copied = transfer::copy_all(reader.reads(), tx, &target)?;
        crash_point("to-sqlite-commit");
        Ok(copied)
    })?;
    crash_point("to-sqlite-config");
    switch_config(kb, StateConfig::Sqlite)?;
    crash_point("to-sqlite-retire");
    let aside = kb
        .team_store(&kb_id, crate::state::postgres::Create::Never)?
        .retire(&stamp())?;
    drop(session);
    if let Some(stale) = stale {
        crate::notice::warn(&format!(
            "a state.db left by an interrupted move was set aside as {}",
            stale.display()
        ));
    }
    Ok(Moved {
        backend: "sqlite",
        kb_id: kb_id.as_str().to_owned(),
        location: kb.state_db().display().to_string(),
        kept_aside: Some(format!("PostgreSQL schema {aside}")),
        fingerprint,
    })
}

/// The commit point of a move: the config's `state:` section rewritten (read afresh, so an
/// edit made meanwhile is kept; written atomically).
fn switch_config(kb: &Kb, state: StateConfig) -> Result<()> {
    let mut config = kb.config()?;
    config.set_state(&state);
    config.file.save(&kb.config_path())
}

/// UTC time for the names of what is set aside: `20261201T131500Z`.
fn stamp() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string()
}

/// Rename `.openkb/state.db` (and its sidecars) to `state.db.local-<time>`, once no
/// connection of this process has it open; `None` when there is no `state.db`.
fn set_aside_local(kb: &Kb) -> Result<Option<PathBuf>> {
    let db = kb.state_db();
    if !db.exists() {
        return Ok(None);
    }
    wait_until_closed(&db)?;
    let aside = db.with_file_name(build::free_name_beside(
        &db,
        &format!("state.db.local-{}", stamp()),
    ));
    build::move_database_aside(&db, &aside)?;
    Ok(Some(aside))
}

/// A dropped pool may close its last connection a moment later on another thread; renaming
/// the file before that would let the closing connection act on the old name.
fn wait_until_closed(db: &Path) -> Result<()> {
    let Ok(id) = crate::state::FileId::of(db) else {
        return Ok(());
    };
    let mut pause = Duration::from_millis(1);
    while crate::state::sqlite::held_open_files().contains(&id) {
        if pause > Duration::from_secs(2) {
            return Err(Error::Invalid(format!(
                "{}: still open by this process; the move is done (see .openkb/config.yaml), \
                 rename the file aside by hand",
                db.display()
            )));
        }
        std::thread::sleep(pause);
        pause *= 2;
    }
    Ok(())
}
