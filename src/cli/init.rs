//! `openkb init`: create a knowledge base.

use std::path::{Path, PathBuf};

use crate::config::{self, DEFAULT_LANGUAGE, DEFAULT_MODEL, GlobalConfig, KbConfig};
use crate::error::{Error, IoContext, Result};
use crate::fsx;
use crate::kb::Kb;
use crate::state::{self, LOG_MD_HEADER, Store};
use crate::wiki;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// LLM model the compiler uses (asked for on a terminal; default gpt-5.4)
    #[arg(short, long)]
    model: Option<String>,
    /// Language of the wiki (asked for on a terminal; default en)
    #[arg(short, long)]
    language: Option<String>,
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<()> {
    let root = match &ctx.kb_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().with_path("cannot read", "the current folder")?,
    };
    std::fs::create_dir_all(&root).with_path("cannot create folder", &root)?;
    let kb = Kb::at(&root)?;
    let interactive = super::stdin_is_terminal();
    let model = choose(args.model, "Model", DEFAULT_MODEL, interactive)?;
    config::validate_init_value("model", &model, 100)?;
    let language = choose(args.language, "Language", DEFAULT_LANGUAGE, interactive)?;
    config::validate_init_value("language", &language, 50)?;

    create_layout(&kb, &KbConfig::initial(&model, &language))?;

    println!("Initialized knowledge base at {}", kb.root().display());
    println!("  model: {model}, language: {language}");
    if let Err(e) = GlobalConfig::update(|g| {
        g.register(kb.root());
        Ok(())
    }) {
        eprintln!("warning: the KB was created but not registered as the default: {e}");
    }
    Ok(())
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

/// Create the KB's files. Claiming `.openkb/` with a plain `mkdir` makes two racing `init`s
/// safe: one wins, the other is told the KB exists. If anything fails afterwards, what this
/// call created is removed again, so a failed init can simply be re-run.
fn create_layout(kb: &Kb, config: &KbConfig) -> Result<()> {
    let openkb_dir = kb.openkb_dir();
    match std::fs::create_dir(&openkb_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::AlreadyInitialized {
                path: kb.root().to_path_buf(),
            });
        }
        Err(e) => return Err(Error::io("cannot create folder", &openkb_dir, e)),
    }
    let mut created: Vec<PathBuf> = vec![openkb_dir.clone()];
    let result = populate(kb, config, &mut created);
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

fn populate(kb: &Kb, config: &KbConfig, created: &mut Vec<PathBuf>) -> Result<()> {
    for dir in wiki::INIT_DIRS {
        create_dirs(&kb.root().join(dir), created)?;
    }
    let seeds: [(PathBuf, &str); 3] = [
        (kb.wiki_dir().join("AGENTS.md"), wiki::AGENTS_MD),
        (kb.index_md(), wiki::INDEX_SEED),
        (kb.log_md(), LOG_MD_HEADER),
    ];
    for (path, text) in seeds {
        // A wiki that already exists keeps its pages; init only adds what is missing.
        if !path.exists() {
            fsx::atomic_write(&path, text.as_bytes())?;
            created.push(path);
        }
    }
    config.file.save(&kb.config_path())?;
    let store = Store::open(&kb.state_db(), state::Create::IfMissing)?;
    drop(store);
    Ok(())
}

/// `create_dir_all` that remembers the folders it made, outermost first.
fn create_dirs(dir: &Path, created: &mut Vec<PathBuf>) -> Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    std::fs::create_dir_all(dir).with_path("cannot create folder", dir)?;
    created.extend(missing.into_iter().rev().map(Path::to_path_buf));
    Ok(())
}
