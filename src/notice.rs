//! What the library itself says on stderr while it works (lock waits, recovery, the hook's
//! output, the default-KB note), under the same `-q` rule as the commands' own lines
//! (docs/output.md):
//!
//! - [`note`]: progress and context ("waiting for another openkb process", a hook's output
//!   lines). Dropped by `-q`.
//! - [`warn`]: something that changes what the user should believe about their data (work
//!   rolled back, a file left alone, a log.md that could not be written). Kept by `-q`.
//!
//! Every line goes through the installed printer, so a command drawing a progress bar can
//! print them above the bar instead of through it ([`set_printer`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

static QUIET: AtomicBool = AtomicBool::new(false);

type Printer = Box<dyn Fn(&str) + Send + Sync>;
static PRINTER: Mutex<Option<Printer>> = Mutex::new(None);

/// `-q` for the whole process: [`note`] prints nothing from now on.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether `-q` is in force.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Print every line through `printer` (e.g. a progress bar's `suspend`) until [`clear_printer`].
pub fn set_printer(printer: impl Fn(&str) + Send + Sync + 'static) {
    *PRINTER.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(printer));
}

/// Back to plain stderr.
pub fn clear_printer() {
    *PRINTER.lock().unwrap_or_else(PoisonError::into_inner) = None;
}

/// Context or progress on stderr; nothing under `-q`.
pub fn note(line: &str) {
    if !quiet() {
        emit(line);
    }
}

/// A warning about the user's data on stderr, `-q` included. `line` is printed as given (the
/// caller writes the `warning: ` prefix where it has one).
pub fn warn(line: &str) {
    emit(line);
}

fn emit(line: &str) {
    let printer = PRINTER.lock().unwrap_or_else(PoisonError::into_inner);
    match printer.as_ref() {
        Some(print) => print(line),
        None => eprintln!("{line}"),
    }
}
