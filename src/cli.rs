//! Command-line interface: argument parsing and wiring. Each command is a short function that
//! calls into the library and maps its outcome to an exit code.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::{exit, Error};
use crate::trial;

/// Load-test campaigns against Veraison deployments on AWS.
#[derive(Debug, Parser)]
#[command(name = "trialrunner", version, about)]
pub struct Cli {
    /// AWS endpoint override for every client (moto, LocalStack).
    #[arg(long, global = true, env = "TRIALRUNNER_AWS_ENDPOINT")]
    pub aws_endpoint: Option<String>,
    /// Log format.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// More logging (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands (names are fixed: scripts and docs use them).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and check trials and the environments they name; exit 2 on error.
    Validate {
        /// Trial or environment files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Environment to use instead of the one each trial names.
        #[arg(long)]
        env: Option<PathBuf>,
    },
    /// Print a trial's steps and expected total time; touches nothing.
    Plan {
        /// The trial file.
        trial: PathBuf,
        /// Environment file instead of the one the trial names.
        #[arg(long)]
        env: Option<PathBuf>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    init_logging(&cli);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn init_logging(cli: &Cli) {
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRIALRUNNER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("trialrunner={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run(cli: Cli) -> Result<i32, Error> {
    match cli.command {
        Command::Validate { files, env } => Ok(validate(&files, env.as_deref())),
        Command::Plan { trial, env, json } => {
            let t = trial::load_trial(&trial, env.as_deref())?;
            let p = trial::plan(&t);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&p).expect("plan serializes")
                );
            } else {
                println!("{p}");
            }
            Ok(exit::OK)
        }
    }
}

/// Validates trials and environments; a file with `services:` at top level is an environment.
fn validate(files: &[PathBuf], env: Option<&std::path::Path>) -> i32 {
    let mut failed = false;
    for f in files {
        let is_env = std::fs::read_to_string(f)
            .map(|t| t.lines().any(|l| l.starts_with("services:")))
            .unwrap_or(false);
        let result = if is_env {
            trial::load_environment(f).map(|e| format!("environment `{}`", e.spec.name))
        } else {
            trial::load_trial(f, env).map(|t| {
                let p = trial::plan(&t);
                format!(
                    "trial `{}`: {} load runs, about {:.0} s",
                    t.spec.name,
                    p.load_phases().count(),
                    p.total().as_secs_f64()
                )
            })
        };
        match result {
            Ok(what) => println!("ok   {}: {what}", f.display()),
            Err(d) => {
                failed = true;
                eprintln!("FAIL {}:\n{d}", f.display());
            }
        }
    }
    if failed {
        exit::BAD_INPUT
    } else {
        exit::OK
    }
}
