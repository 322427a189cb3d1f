//! The `openkb` command line: one module per command. Each command parses its arguments,
//! composes the library (kb, state, lock, config) and prints; none of them runs SQL.

mod add;
mod common;
mod compile;
mod doctor;
mod export;
mod generate;
mod init;
mod kbs;
mod lint;
mod list;
mod log;
mod migrate;
pub mod output;
mod remove;
mod show;
mod status;
mod table;
mod use_kb;
mod watch;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::error::{Result, exit};
use crate::kb::{Found, Kb, OPENKB_DIR_ENV};
use crate::session::{Probe, ReadSession, WriteSession};
use crate::settings::Settings;

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 failed (the message says why; nothing was half-done), 2 usage error,
3 no usable knowledge base (none found, or a legacy KB that needs `openkb migrate`),
4 another openkb process holds the KB (lock wait timed out or database busy): try again,
5 team mode: the state server cannot be reached, or the KB lock was lost; nothing committed.

Environment: OPENKB_DIR (the KB, like --kb-dir), OPENKB_LOCK_TIMEOUT (seconds to wait for a
busy KB; unset waits forever), HOME (where ~/.config/openkb/global.yaml lives),
OPENKB_STATE_URL (a team KB's PostgreSQL server; PGHOST, PGPASSWORD, ~/.pgpass fill the rest).

Output: results on stdout, progress, notes and errors on stderr. --json (add, remove, compile,
migrate, doctor, lint, list, show, status, log, kbs) prints one JSON document whose first key is
format_version; absent values are null. Shell completions: `openkb completions SHELL`; the
manual: `openkb man [COMMAND]`.";

/// The `--version` answer; a build with test-only fault injection says so, which is how the
/// integration tests know the binary they run has it (see `faults`).
const VERSION: &str = if crate::faults::ENABLED {
    concat!(env!("CARGO_PKG_VERSION"), " (fault-injection)")
} else {
    env!("CARGO_PKG_VERSION")
};

#[derive(Debug, Parser)]
#[command(
    name = "openkb",
    version = VERSION,
    about = "State engine for OpenKB knowledge bases",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// The knowledge base folder (default: the nearest ancestor with a .openkb/ folder, then
    /// default_kb of ~/.config/openkb/global.yaml)
    #[arg(long, global = true, env = OPENKB_DIR_ENV, value_name = "PATH")]
    pub kb_dir: Option<PathBuf>,

    /// Say more (repeat for more detail)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print only errors, warnings and the result (a summary line, a report): no per-file
    /// lines, no progress bar
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a knowledge base in the current folder (or --kb-dir)
    Init(init::Args),
    /// Make a knowledge base the default one
    Use(use_kb::Args),
    /// List the knowledge bases ~/.config/openkb/global.yaml knows, and the default
    Kbs(kbs::KbsArgs),
    /// Forget a known knowledge base (global.yaml only; its files are untouched)
    Forget(kbs::ForgetArgs),
    /// List the registered documents in registry order
    List(list::Args),
    /// Show the state of the knowledge base
    Status(status::Args),
    /// Show one document: its fields, status, files and log rows
    Show(show::Args),
    /// Show the operations log, newest last
    Log(log::Args),
    /// Add files and folders to the knowledge base
    Add(add::Args),
    /// Remove documents and their wiki pages
    Remove(remove::Args),
    /// Run compile_command for pending (or named) documents
    Compile(compile::Args),
    /// Add the unregistered files of raw/, then watch it and add new or changed files
    Watch(watch::Args),
    /// Check the knowledge base's health (and repair what is safe with --fix)
    Doctor(doctor::Args),
    /// Check the wiki's structure: broken links, orphan pages, missing summaries
    Lint(lint::Args),
    /// Import a legacy (Python openkb) knowledge base into state.db, losslessly
    Migrate(migrate::Args),
    /// Write the registry as a legacy hashes.json, or the whole state as JSON
    Export(export::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(generate::CompletionsArgs),
    /// Print the manual page (roff), e.g. `openkb man | man -l -`
    Man(generate::ManArgs),
}

/// What every command gets: the global options and the way to find the KB.
pub struct Ctx {
    pub kb_dir: Option<PathBuf>,
    pub verbose: u8,
    pub quiet: bool,
    /// The environment's settings, read once (see `settings.rs`); every `Kb` carries them.
    pub settings: Settings,
}

impl Ctx {
    /// How this command prints, given its own `--json` flag (false for commands without one).
    pub fn output(&self, json: bool) -> output::Output {
        output::Output {
            quiet: self.quiet,
            verbose: self.verbose,
            json,
        }
    }

    /// The KB this command works on.
    pub fn kb(&self) -> Result<Kb> {
        let kb = self.kb_quiet()?;
        warn_if_registry_reappeared(&kb);
        Ok(kb)
    }

    /// The KB, without the warning about a reappeared `hashes.json` (for `migrate`, which
    /// merges it).
    pub fn kb_quiet(&self) -> Result<Kb> {
        let cwd = std::env::current_dir()
            .map_err(|e| crate::Error::io("cannot read", "the current folder", e))?;
        let (kb, found) = Kb::discover_how(self.kb_dir.as_deref(), &cwd, &self.settings)?;
        if found == Found::Default {
            crate::notice::note(&format!(
                "using the default knowledge base {} (no knowledge base encloses {}; pass \
                 --kb-dir to choose another)",
                kb.root().display(),
                cwd.display()
            ));
        } else if self.verbose > 0 {
            eprintln!("knowledge base: {}", kb.root().display());
        }
        Ok(kb)
    }

    /// The KB at `root` (not discovered: `init`, `migrate --all`), with this run's settings.
    pub fn kb_at(&self, root: &Path) -> Result<Kb> {
        Ok(Kb::at(root)?.with_settings(self.settings.clone()))
    }
}

/// Every command but `migrate` warns when a `hashes.json` reappeared beside `state.db` (the
/// Python tool was used on the KB since its migration): openkb does not read it, so the
/// Python tool's changes are invisible until `openkb migrate` merges them.
pub(crate) fn warn_if_registry_reappeared(kb: &Kb) {
    if !kb.state_db().exists() {
        return; // a legacy KB: commands that need the registry refuse it with exit 3
    }
    let entries = match kb.legacy_registry_entries() {
        Ok(Some(entries)) => entries.to_string(),
        Ok(None) => return,
        Err(e) => format!("unreadable: {e}"),
    };
    eprintln!(
        "warning: {} reappeared after migration ({entries} entries; was the Python tool used on \
         this KB?); openkb does not read it: run `openkb migrate` to merge the Python tool's \
         changes into state.db",
        kb.hashes_json().display()
    );
}

/// Run a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> Result<i32> {
    // Read and checked first, so that a bad value is the same clear error whatever the command
    // and whatever else is wrong.
    let settings = Settings::from_env()?;
    crate::notice::set_quiet(cli.quiet);
    let ctx = Ctx {
        kb_dir: cli.kb_dir,
        verbose: cli.verbose,
        quiet: cli.quiet,
        settings,
    };
    match cli.command {
        Command::Init(args) => init::run(&ctx, args),
        Command::Use(args) => use_kb::run(&ctx, args),
        Command::Kbs(args) => kbs::list(&ctx, args),
        Command::Forget(args) => kbs::forget(&ctx, args),
        Command::List(args) => list::run(&ctx, args),
        Command::Status(args) => status::run(&ctx, args),
        Command::Show(args) => show::run(&ctx, args),
        Command::Log(args) => log::run(&ctx, args),
        Command::Add(args) => add::run(&ctx, args),
        Command::Remove(args) => remove::run(&ctx, args),
        Command::Compile(args) => compile::run(&ctx, args),
        Command::Watch(args) => watch::run(&ctx, args),
        Command::Doctor(args) => return doctor::run(&ctx, args),
        Command::Lint(args) => return lint::run(&ctx, args),
        Command::Migrate(args) => migrate::run(&ctx, args),
        Command::Export(args) => export::run(&ctx, args),
        Command::Completions(args) => generate::completions(args),
        Command::Man(args) => generate::man(args),
    }
    .map(|()| exit::OK)
}

/// Ask `question` on stderr and read one line of answer from stdin (trimmed).
pub(crate) fn ask(question: &str) -> Result<String> {
    use std::io::{BufRead, Write};
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| crate::Error::io("cannot read", "standard input", e))?;
    Ok(line.trim().to_owned())
}

pub(crate) fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Find the KB and open a read session on it. A `state.db` with an older schema (openkb was
/// upgraded since it last wrote) is first brought up to date by a short write session, said
/// once on stderr, so reading commands keep working after an upgrade; the read session itself
/// never migrates. `doctor` does not come here: without `--fix` it reports an old schema.
pub(crate) fn read_session(ctx: &Ctx) -> Result<ReadSession> {
    let kb = ctx.kb()?;
    match kb.read_session() {
        // On a read-only filesystem nothing can upgrade it; the error says where to run openkb.
        Err(crate::Error::SchemaBehind {
            path,
            found,
            supported,
        }) if !crate::fsx::on_read_only_fs(&kb.openkb_dir()) => {
            drop(kb.write_session()?);
            if !ctx.quiet {
                eprintln!(
                    "upgraded {} from schema {found} to {supported}",
                    path.display()
                );
            }
            kb.read_session()
        }
        other => other,
    }
}

/// Find the KB and open a write session on it.
pub(crate) fn write_session(ctx: &Ctx) -> Result<WriteSession> {
    ctx.kb()?.write_session()
}

/// Find the KB and open a read session, for a command that writes after reading (an older
/// schema is upgraded first).
pub(crate) fn read_session_for_write(ctx: &Ctx) -> Result<ReadSession> {
    ctx.kb()?.read_session_for_write()
}

/// Find the KB and open a lock-free read-only probe (for `add`, `watch`, `compile`, which take
/// write sessions per batch or per document; an older schema is upgraded first).
pub(crate) fn probe(ctx: &Ctx) -> Result<Probe> {
    ctx.kb()?.probe_for_write()
}
