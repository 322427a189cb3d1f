//! `openkb completions SHELL` and `openkb man`: generated from the clap definitions, so they
//! can never disagree with the commands they describe.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::error::{Error, IoContext, Result};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Install, for example:
  bash: openkb completions bash > ~/.local/share/bash-completion/completions/openkb
  zsh:  openkb completions zsh > ~/.zfunc/_openkb   (with fpath+=~/.zfunc before compinit)
  fish: openkb completions fish > ~/.config/fish/completions/openkb.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for
    shell: Shell,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Install, for example:
  openkb man > ~/.local/share/man/man1/openkb.1
  for c in add remove list status; do openkb man $c > ~/.local/share/man/man1/openkb-$c.1; done
Read one without installing: openkb man add | man -l -")]
pub struct ManArgs {
    /// The command whose page to print (openkb-COMMAND(1)); without it, openkb(1)
    #[arg(value_name = "COMMAND")]
    command: Option<String>,
}

pub fn completions(args: CompletionsArgs) -> Result<()> {
    let mut command = super::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "openkb", &mut out);
    write_stdout(&out)
}

pub fn man(args: ManArgs) -> Result<()> {
    let mut command = super::Cli::command();
    command.build();
    let page = match &args.command {
        None => command,
        Some(name) => {
            let Some(sub) = command.find_subcommand(name) else {
                let names: Vec<&str> = command.get_subcommands().map(|s| s.get_name()).collect();
                return Err(Error::Usage(format!(
                    "no command {name:?}; the commands are: {}",
                    names.join(", ")
                )));
            };
            // `openkb-add(1)`, as git and cargo name their per-command pages.
            let page_name = format!("openkb-{}", sub.get_name());
            sub.clone()
                .name(page_name.clone())
                .bin_name(page_name)
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .with_path("cannot render", "the manual page")?;
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    lock.write_all(bytes)
        .and_then(|()| lock.flush())
        .with_path("cannot write", "standard output")
}
