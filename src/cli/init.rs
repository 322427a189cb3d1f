//! `openkb init`: create a knowledge base.

use std::path::{Path, PathBuf};

use crate::config::{
    self, DEFAULT_LANGUAGE, DEFAULT_MODEL, GlobalConfig, KbConfig, KbId, StateConfig,
};
use crate::error::{Error, IoContext, Result};
use crate::fsx;
use crate::kb::Kb;
use crate::state::build;
use crate::wiki;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// LLM model the compiler uses (asked for on a terminal; default gpt-5.4)
    #[arg(short, long)]
    model: Option<String>,
    /// Language of the wiki (asked for on a terminal; default en)
    #[arg(short, long)]
    language: Option<String>,
    /// Where the state lives: `sqlite` (.openkb/state.db, the default) or `postgres` (a team
    /// KB: the state in the PostgreSQL server OPENKB_STATE_URL names)
    #[arg(long, value_enum, default_value_t = Backend::Sqlite)]
    backend: Backend,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<()> {
    let root = match &ctx.kb_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().with_path("cannot read", "the current folder")?,
    };
    std::fs::create_dir_all(&root).with_path("cannot create folder", &root)?;
    let kb = ctx.kb_at(&root)?;
    if args.backend == Backend::Postgres {
        // Said before anything is created: a team KB without a server to reach is no KB.
        ctx.settings.state.config(kb.root())?;
    }
    let interactive = super::stdin_is_terminal();
    let model = choose(args.model, "Model", DEFAULT_MODEL, interactive)?;
    config::validate_init_value("model", &model, 100)?;
    let language = choose(args.language, "Language", DEFAULT_LANGUAGE, interactive)?;
    config::validate_init_value("language", &language, 50)?;

    let mut config = KbConfig::initial(&model, &language);
    if args.backend == Backend::Postgres {
        config.set_state(&StateConfig::Postgres {
            kb_id: KbId::new_random()?,
        });
    }
    create_layout(&kb, &config)?;

    println!("Initialized knowledge base at {}", kb.root().display());
    if !ctx.quiet {
        println!("  model: {model}, language: {language}");
    }
    let mut previous = None;
    match GlobalConfig::update(&ctx.settings, |g| {
        previous = g.default_kb();
        g.register(kb.root());
        Ok(())
    }) {
        Ok(_) if !ctx.quiet => println!("{}", default_note(kb.root(), previous.as_deref())),
        Ok(_) => {}
        Err(e) => {
            eprintln!("warning: the KB was created but not registered as the default: {e}")
        }
    }
    Ok(())
}

/// What `init` tells about the default KB: commands run outside any KB use it, so changing it
/// silently would send a later `openkb add` somewhere unexpected.
fn default_note(root: &Path, previous: Option<&Path>) -> String {
    match previous {
        Some(p) if p == root => "  it was already the default knowledge base".to_owned(),
        Some(p) => format!(
            "  it is now the default knowledge base (was {}; `openkb use PATH` switches back)",
            p.display()
        ),
        None => {
            "  it is now the default knowledge base (used outside any knowledge base)".to_owned()
        }
    }
}

fn choose(given: Option<String>, what: &str, default: &str, interactive: bool) -> Result<String> {
    if let Some(value) = given {
        return Ok(value);
    }
    if !interactive {
        return Ok(default.to_owned());
    }
    let answer = super::ask(&format!("{what} [{default}]: "))?;
    Ok(if answer.is_empty() {
        default.to_owned()
    } else {
        answer
    })
}

/// Create the KB's files. Claiming `.openkb/` with a plain `mkdir` and populating under the
/// KB lock makes two racing `init`s safe: the second waits, then finds a whole KB and is told
/// it exists. `state.db` is built aside and linked in whole, last; an `init` killed half-way
/// leaves `.openkb/` without its config or database (perhaps with a temp database, removed
/// then): the next `init` finishes it instead of refusing forever. If anything fails, what this call
/// created is removed again, so a failed init can simply be re-run.
fn create_layout(kb: &Kb, config: &KbConfig) -> Result<()> {
    let openkb_dir = kb.openkb_dir();
    let claimed = match std::fs::create_dir(&openkb_dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(Error::io("cannot create folder", &openkb_dir, e)),
    };
    if !claimed && is_complete(kb) {
        // Said at once, without waiting for a lock another command may hold for long.
        return Err(Error::AlreadyInitialized {
            path: kb.root().to_path_buf(),
        });
    }
    let mut created: Vec<PathBuf> = if claimed {
        vec![openkb_dir.clone()]
    } else {
        Vec::new()
    };
    let result = match kb.lock_exclusive() {
        Ok(lock) => {
            if is_complete(kb) {
                // A whole KB is left as it is, even if this call claimed `.openkb/` before
                // another init filled it.
                return Err(Error::AlreadyInitialized {
                    path: kb.root().to_path_buf(),
                });
            }
            if !claimed {
                crate::notice::note(&format!(
                    "finishing the interrupted initialization of {} (its config or database \
                     was missing)",
                    kb.root().display()
                ));
            }
            populate(kb, config, &mut created, &lock)
        }
        Err(e) => Err(e),
    };
    if result.is_err() {
        for path in created.iter().rev() {
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
        }
    }
    result
}

/// A KB has its config and its registry (state.db, or a legacy hashes.json to migrate). A
/// blank state.db (0 bytes or a bare header) is what an init killed while SQLite created the
/// file leaves: not a registry yet, so init finishes it (read commands refuse to).
/// A team KB is complete once its schema exists in the server.
fn is_complete(kb: &Kb) -> bool {
    if !kb.config_path().exists() {
        return false;
    }
    if let Ok(StateConfig::Postgres { kb_id }) = kb.state_config() {
        return kb
            .team_store(&kb_id, crate::state::postgres::Create::Never)
            .is_ok();
    }
    let has_db = kb.state_db().exists() && !crate::state::is_blank(&kb.state_db());
    has_db || kb.hashes_json().exists()
}

fn populate(
    kb: &Kb,
    config: &KbConfig,
    created: &mut Vec<PathBuf>,
    lock: &crate::kb::KbLock,
) -> Result<()> {
    for dir in wiki::INIT_DIRS {
        create_dirs(&kb.root().join(dir), created)?;
    }
    let seeds: [(PathBuf, &str); 3] = [
        (kb.wiki_dir().join("AGENTS.md"), wiki::AGENTS_MD),
        (kb.index_md(), wiki::INDEX_SEED),
        (kb.log_md(), crate::log_md::HEADER),
    ];
    for (path, text) in seeds {
        // A wiki that already exists keeps its pages; init only adds what is missing.
        if is_missing(&path)? {
            fsx::atomic_write(&path, text.as_bytes())?;
            created.push(path);
        }
    }
    // Written before the database, so a KB with a database always has its config; an existing
    // one (an interrupted init got that far, or a Python-tool KB) is kept.
    if is_missing(&kb.config_path())? {
        config.file.save(&kb.config_path())?;
        created.push(kb.config_path());
    }
    if let Some(entries) = kb.legacy_registry_entries()? {
        // An empty state.db beside an unmigrated registry would make every document look new.
        eprintln!(
            "{} holds the registry of the Python tool ({entries} entries): run `openkb migrate` \
             to import it; no state.db was created",
            kb.hashes_json().display()
        );
        return Ok(());
    }
    // A team KB's schema is made in the server by the write session below.
    if !kb.state_config()?.is_team() {
        let db = kb.state_db();
        if crate::state::is_blank(&db) {
            // Left by an init killed while SQLite created the file: it holds nothing.
            build::remove_database_files(&db);
        }
        if !db.exists() {
            // Built aside and linked in whole: a kill leaves no state.db or a complete one.
            build::remove_stale_builds(&kb.openkb_dir())?;
            build::create_empty(&db, &kb.settings().fs)?;
        }
    }
    let session = kb.write_session_creating()?;
    // The session is nested in this function's lock and so did not settle on its own; an
    // interrupted init being finished may sit beside interrupted work.
    if lock.is_outermost() {
        session.settle()?;
    }
    Ok(())
}

/// Is there nothing at `path`? A file there (or a symlink to one: a shared config, say) is
/// kept as it is; a symlink leading nowhere is refused, since creating the file would create
/// it wherever the link points.
fn is_missing(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::io("cannot read", path, e)),
        Ok(meta) if meta.file_type().is_symlink() && !path.exists() => {
            Err(Error::Invalid(format!(
                "{}: is a symbolic link to {}, which does not exist; init does not create files \
                 through symlinks (the link may lead outside the KB). Remove the link (or \
                 create what it points to) and run `openkb init` again",
                path.display(),
                std::fs::read_link(path).unwrap_or_default().display()
            )))
        }
        Ok(_) => Ok(false),
    }
}

/// `create_dir_all` that remembers the folders it made, outermost first.
fn create_dirs(dir: &Path, created: &mut Vec<PathBuf>) -> Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    std::fs::create_dir_all(dir).with_path("cannot create folder", dir)?;
    created.extend(missing.into_iter().rev().map(Path::to_path_buf));
    Ok(())
}
