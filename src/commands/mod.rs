//! One module per command: each defines its arguments (`Args`) and a short `run` from those
//! arguments to the library, returning the process exit code (`run`'s arguments stand in
//! `run_args`, which `variants` shares). `cli.rs` only parses and dispatches; nothing here
//! holds logic another command or a test would need.

pub mod bench;
pub mod compare;
pub mod dashboard;
pub mod demo;
pub mod iam_policy;
pub mod infra;
pub mod live;
pub mod metrics;
pub mod plan;
pub mod psa;
pub mod rehearse;
pub mod report;
pub mod run;
pub mod run_args;
pub mod schema;
pub mod standin;
pub mod stores;
pub mod validate;
pub mod variants;
pub mod worker;

use crate::error::{Error, Result};
use crate::setup::SetupOptions;

/// Options every command shares (the global flags).
#[derive(Debug, Clone, Default)]
pub struct Global {
    /// `--aws-endpoint`.
    pub aws_endpoint: Option<String>,
}

impl Global {
    /// The options the wiring in [`crate::setup`] needs.
    pub fn setup(&self) -> SetupOptions {
        SetupOptions {
            aws_endpoint: self.aws_endpoint.clone(),
            progress: true,
        }
    }
}

/// A multi-threaded runtime for one command.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts")
}

/// Asks before a destructive action; refuses without a terminal unless `yes`.
pub fn confirm(question: &str, yes: bool) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(format!(
            "{question}: refusing without confirmation; pass --yes"
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Error::Usage("not confirmed; nothing was changed".into()))
    }
}
