//! Command-line parsing and dispatch. Each command lives in its own module under
//! [`crate::commands`]; this file only holds the global flags, the list of commands, logging
//! set-up and the mapping of errors to exit codes.

use clap::{Parser, Subcommand};

use crate::commands::{self, Global};
use crate::error::Error;

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
    Validate(commands::validate::Args),
    /// Print a trial's steps and expected total time; touches nothing.
    Plan(commands::plan::Args),
    /// Run a campaign.
    Run(commands::run::Args),
    /// Per-endpoint deltas between two results directories; exit 1 when a threshold breaks.
    Compare(commands::compare::Args),
    /// The embedded default: the stand-in in-process, scaled-down seed trials 1 and 3, reports.
    Demo(commands::demo::Args),
    /// (Re)build the report of a results directory.
    Report(commands::report::Args),
    /// Count or clear the stores of an environment outside a trial.
    Stores {
        /// count or clear.
        #[command(subcommand)]
        action: commands::stores::Action,
    },
    /// Show ASG state, or replay the undo journal a crashed trial left.
    Infra {
        /// status or restore.
        #[command(subcommand)]
        action: commands::infra::Action,
    },
    /// Prepare a local rehearsal: a Veraison-shaped deployment in the AWS emulator named by the
    /// environment (`aws.endpoint` or --aws-endpoint; loopback only) and seeded CloudWatch series.
    Rehearse(commands::rehearse::Args),
    /// Pull CloudWatch metrics for a window outside a trial.
    Metrics {
        /// pull.
        #[command(subcommand)]
        action: commands::metrics::Action,
    },
    /// Write keys, CoRIMs and PSA tokens for a fleet of synthetic devices.
    Psa(commands::psa::Args),
    /// Run the Veraison stand-in service.
    Standin(commands::standin::Args),
    /// Measure the load engine itself: closed-model GET, one user per connection, no wait.
    Bench(commands::bench::Args),
    /// Print the JSON Schema of trial or environment files, or the reference of every field.
    Schema(commands::schema::Args),
    /// Print the least-privilege IAM policy (JSON) a campaign of the trial needs in its
    /// environment.
    IamPolicy(commands::iam_policy::Args),
    /// Write a CloudWatch dashboard: the trial's client figures beside the deployment's series.
    Dashboard(commands::dashboard::Args),
    /// One generator worker of a fleet (started by a coordinator, locally or through SSM).
    Worker(commands::worker::Args),
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    init_logging(&cli);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            crate::terminal::say(&format!("error: {e}"));
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
    // Colour only on a terminal: logs piped to files or CI stay plain.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn dispatch(cli: Cli) -> Result<i32, Error> {
    let global = Global {
        aws_endpoint: cli.aws_endpoint.clone(),
    };
    match cli.command {
        Command::Validate(a) => commands::validate::run(a),
        Command::Plan(a) => commands::plan::run(a, &global),
        Command::Run(a) => commands::run::run(a, &global),
        Command::Compare(a) => commands::compare::run(a),
        Command::Demo(a) => commands::demo::run(a),
        Command::Report(a) => commands::report::run(a, &global),
        Command::Stores { action } => commands::stores::run(action, &global),
        Command::Infra { action } => commands::infra::run(action, &global),
        Command::Rehearse(a) => commands::rehearse::run(a, &global),
        Command::Metrics { action } => commands::metrics::run(action, &global),
        Command::Psa(a) => commands::psa::run(a),
        Command::Standin(a) => commands::standin::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Schema(a) => commands::schema::run(a),
        Command::Worker(a) => commands::worker::run(a),
        Command::IamPolicy(a) => commands::iam_policy::run(a),
        Command::Dashboard(a) => commands::dashboard::run(a, &global),
    }
}
