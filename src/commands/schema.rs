//! `trialrunner schema trial|environment|reference`: the JSON Schema of the files (for editors
//! and the YAML language server), or the Markdown reference of every field.

use crate::error::{exit, Result};
use crate::trial::schema;

/// What to print.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum What {
    /// The JSON Schema of trial files.
    Trial,
    /// The JSON Schema of environment files.
    Environment,
    /// The Markdown reference of every field (docs/reference.md).
    Reference,
}

/// Arguments of `schema`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which.
    pub what: What,
}

/// Prints it.
pub fn run(args: Args) -> Result<i32> {
    match args.what {
        What::Trial => crate::outln!("{:#}", schema::trial_schema()),
        What::Environment => crate::outln!("{:#}", schema::environment_schema()),
        What::Reference => crate::out!("{}", schema::reference_markdown()),
    }
    Ok(exit::OK)
}
