use std::process::ExitCode;

use clap::Parser;
use openkb::cli::Cli;

fn main() -> ExitCode {
    // Behave like other Unix tools when the reader of our output goes away
    // (`openkb list --json | head`): end quietly instead of panicking on EPIPE.
    // SAFETY: called first thing, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let verbose = cli.verbose;
    match openkb::cli::run(cli) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("error: {}", openkb::names::shown_message(&err.to_string()));
            if verbose > 0 {
                let mut source = std::error::Error::source(&err);
                while let Some(cause) = source {
                    let text = cause.to_string();
                    eprintln!("  caused by: {}", openkb::names::shown_message(&text));
                    source = cause.source();
                }
            }
            ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(1))
        }
    }
}
