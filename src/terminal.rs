//! What the tool says on the terminal, and nothing else: a line on stderr ([`say`]) for what is
//! happening, and text on stdout ([`out!`](crate::out), [`outln!`](crate::outln)) for what a
//! command answers.
//!
//! Neither ever panics. After SIGHUP the terminal may be gone, and a failed write to stderr must
//! not turn an orderly stop into a crash; a reader that closes the pipe early (`plan … | head -2`)
//! ends the command's output, not the command: the rest of stdout is dropped quietly and the
//! command finishes (restoring whatever it changed) with its own exit code.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout's reader has gone: everything after is dropped.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes a line to stderr, ignoring failures (the terminal may be gone after SIGHUP).
pub fn say(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
    let _ = err.flush();
}

/// Writes to stdout; once the reader has closed the pipe, writes nothing more and never panics.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
    }
}

/// True once stdout's reader closed the pipe.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// `print!` that never panics on a closed pipe (see [`write_stdout`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::terminal::write_stdout(format_args!($($arg)*)) };
}

/// `crate::outln!` that never panics on a closed pipe (see [`write_stdout`]).
#[macro_export]
macro_rules! outln {
    () => { $crate::terminal::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::terminal::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}
