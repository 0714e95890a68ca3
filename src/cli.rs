//! Command-line interface: argument parsing and wiring. Each command is a short function that
//! calls into the library and maps its outcome to an exit code.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::aws::scaler::{services_of, AwsScaler};
use crate::error::{exit, Error};
use crate::exec::journal::UndoJournal;
use crate::exec::{self, Interrupts};
use crate::provider::Scaler;
use crate::results::ResultsDir;
use crate::setup::{self, SetupOptions};
use crate::trial::model::{ClearPolicy, MetricName};
use crate::veraison::release::ReleaseProfile;
use crate::veraison::standin::faults::Faults;
use crate::veraison::standin::store::KvStore;
use crate::veraison::standin::{Credentials, Standin, StandinConfig};
use crate::{demo, report, trial};

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
    /// Run a campaign.
    Run {
        /// The trial file.
        trial: PathBuf,
        /// Environment file instead of the one the trial names.
        #[arg(long)]
        env: Option<PathBuf>,
        /// Results directory (default results/<trial>-<UTC time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the campaign in this results directory: completed runs are kept.
        #[arg(long, conflicts_with = "out")]
        resume: Option<PathBuf>,
        /// Do not ask before clearing stores.
        #[arg(long)]
        yes: bool,
        /// Gate: compare with this baseline results directory after the run.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Thresholds for the gate (YAML list); the trial's own `thresholds` are checked too.
        #[arg(long)]
        thresholds: Option<PathBuf>,
        /// Write the gate's result as JUnit XML.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Append one line per run to this history file (default: history.jsonl beside the results).
        #[arg(long)]
        history: Option<PathBuf>,
    },
    /// Per-endpoint deltas between two results directories; exit 1 when a threshold breaks.
    Compare {
        /// Baseline results directory.
        base: PathBuf,
        /// Contender results directory.
        contender: PathBuf,
        /// Thresholds (YAML list, e.g. `- verify p95 < 800ms`, `- "* p95 +10%"`).
        #[arg(long)]
        thresholds: Option<PathBuf>,
        /// Write JUnit XML here.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Write compare.html here.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// The embedded default: the stand-in in-process, scaled-down seed trials 1 and 3, reports.
    Demo {
        /// Where to write results (default demo-results/).
        #[arg(long, default_value = "demo-results")]
        out: PathBuf,
    },
    /// (Re)build the report of a results directory.
    Report {
        /// The results directory.
        dir: PathBuf,
    },
    /// Count or clear the stores of an environment outside a trial.
    Stores {
        /// count or clear.
        #[command(subcommand)]
        action: StoresAction,
    },
    /// Show ASG state, or replay the undo journal a crashed trial left.
    Infra {
        /// status or restore.
        #[command(subcommand)]
        action: InfraAction,
    },
    /// Prepare a local rehearsal: a Veraison-shaped deployment in the AWS emulator named by the
    /// environment (`aws.endpoint` or --aws-endpoint; loopback only) and seeded CloudWatch series.
    Rehearse {
        /// The rehearsal environment file.
        #[arg(long)]
        env: PathBuf,
        /// Hours of CloudWatch series to seed ahead.
        #[arg(long, default_value_t = 2.0)]
        hours: f64,
    },
    /// Pull CloudWatch metrics for a window outside a trial.
    Metrics {
        /// pull.
        #[command(subcommand)]
        action: MetricsAction,
    },
    /// Write keys, CoRIMs and PSA tokens for a fleet of synthetic devices.
    Psa {
        /// Output directory.
        #[arg(long, default_value = "psa")]
        out: PathBuf,
        /// How many devices.
        #[arg(long, default_value_t = 1)]
        devices: u32,
        /// The Veraison release (media type, CoRIM tagging and profile).
        #[arg(long, default_value = "v0.0.2602")]
        release: String,
        /// Nonce of the tokens (padded base64url; default: the seed campaign's).
        #[arg(long)]
        nonce: Option<String>,
        /// Fleet seed (the same seed gives the same devices).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run the Veraison stand-in service.
    Standin(StandinArgs),
    /// Measure the load engine itself: closed-model GET, one user per connection, no wait.
    Bench {
        /// The URL to GET.
        #[arg(long)]
        url: url::Url,
        /// Connections (= virtual users).
        #[arg(long, default_value_t = 64)]
        connections: u32,
        /// How long.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Worker threads of the engine (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
}

/// `infra` sub-commands.
#[derive(Debug, Subcommand)]
pub enum InfraAction {
    /// Current ASG settings beside the journal's originals.
    Status {
        /// The environment file.
        #[arg(long)]
        env: PathBuf,
    },
    /// Put the ASGs back as the pending journal recorded them (idempotent).
    Restore {
        /// The environment file.
        #[arg(long)]
        env: PathBuf,
    },
}

/// `metrics` sub-commands.
#[derive(Debug, Subcommand)]
pub enum MetricsAction {
    /// Pull the named metric sets for [FROM, TO] into DIR/cloudwatch.json.
    Pull {
        /// The environment file.
        #[arg(long)]
        env: PathBuf,
        /// Start: RFC 3339 (`2026-11-27T21:00:00Z`) or Unix seconds.
        #[arg(long)]
        from: String,
        /// End: RFC 3339 or Unix seconds.
        #[arg(long)]
        to: String,
        /// Metric sets (default: all).
        #[arg(long, value_delimiter = ',')]
        metrics: Vec<String>,
        /// Where cloudwatch.json goes.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

fn parse_time(s: &str) -> Result<f64, Error> {
    s.parse::<f64>()
        .ok()
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.timestamp() as f64)
        })
        .ok_or_else(|| {
            Error::Usage(format!(
                "`{s}` is not a time: use RFC 3339 (2026-11-27T21:00:00Z) or Unix seconds"
            ))
        })
}

/// `stores` sub-commands.
#[derive(Debug, Subcommand)]
pub enum StoresAction {
    /// Print rows per table.
    Count {
        /// The environment file.
        #[arg(long)]
        env: PathBuf,
    },
    /// Delete every row (the environment must say `disposable: true`).
    Clear {
        /// The environment file.
        #[arg(long)]
        env: PathBuf,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
}

/// Options of the stand-in service.
#[derive(Debug, clap::Args)]
pub struct StandinArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: std::net::SocketAddr,
    /// The Veraison release whose contract it speaks.
    #[arg(long, default_value = "v0.0.2602")]
    pub release: String,
    /// Require a bearer token on provisioning (realm defaults: veraison-client / veraison-provisioner).
    #[arg(long)]
    pub auth: bool,
    /// With --auth: the accepted user instead of the realm's default.
    #[arg(long, requires = "auth")]
    pub auth_username: Option<String>,
    /// With --auth: a variable holding the accepted password (default: the realm's).
    #[arg(long, requires = "auth")]
    pub auth_password_env: Option<String>,
    /// With --auth: a variable holding the accepted client secret (default: the realm's).
    #[arg(long, requires = "auth")]
    pub auth_client_secret_env: Option<String>,
    /// Keep the stores in PostgreSQL (a libpq conninfo or URL) instead of memory.
    #[arg(long, env = "STANDIN_POSTGRES")]
    pub postgres: Option<String>,
    /// Added latency: 10ms, uniform:10ms:50ms or exp:20ms.
    #[arg(long)]
    pub latency: Option<crate::veraison::standin::faults::Latency>,
    /// Probability (0..1) of answering 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Answer 500 "connection refused" to VTS for this long after start.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub slow_start: Option<std::time::Duration>,
    /// At most this many requests use the database at once; others get "too many clients".
    #[arg(long)]
    pub db_connections: Option<usize>,
    /// DELETE of a missing session answers 500, as with Veraison's memcached backend.
    #[arg(long)]
    pub memcached_sessions: bool,
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

fn append_line(path: &std::path::Path, line: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    writeln!(f, "{line}")
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The regression gate after a run: the trial's thresholds and `--thresholds`, against the
/// baseline when given (relative bounds need one). Exit 1 when one breaks.
fn gate(
    t: &trial::Trial,
    dir: &std::path::Path,
    baseline: Option<&std::path::Path>,
    file: Option<&std::path::Path>,
    junit: Option<&std::path::Path>,
) -> Result<i32, Error> {
    let mut list: Vec<report::thresholds::Threshold> = t
        .spec
        .thresholds
        .iter()
        .filter_map(|s| report::thresholds::Threshold::parse(s).ok())
        .collect();
    if let Some(f) = file {
        list.extend(report::compare::read_thresholds(f)?);
    }
    if list.is_empty() && baseline.is_none() {
        return Ok(exit::OK);
    }
    let c = match baseline {
        Some(b) => report::compare::compare(b, dir, &list)?,
        None => report::compare::check_absolute(dir, &list)?,
    };
    print!("{}", c.table());
    if let Some(j) = junit {
        crate::results::write_atomic(j, c.junit().as_bytes())?;
    }
    Ok(if c.passed() {
        exit::OK
    } else {
        exit::CHECKS_FAILED
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts")
}

/// First Ctrl-C: stop the load, restore, write results. Second: skip everything but restoring.
fn watch_interrupts(interrupts: &Interrupts) {
    let i = interrupts.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: stopping the load, restoring infrastructure, writing results (Ctrl-C again to skip the report)");
            i.soft.cancel();
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted again: exiting after the restore attempt");
            i.hard.cancel();
        }
    });
}

fn confirm(question: &str, yes: bool) -> Result<(), Error> {
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

fn run(cli: Cli) -> Result<i32, Error> {
    let setup_opts = SetupOptions {
        aws_endpoint: cli.aws_endpoint.clone(),
        progress: true,
    };
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
        Command::Run {
            trial,
            env,
            out,
            resume,
            yes,
            baseline,
            thresholds,
            junit,
            history,
        } => {
            let t = trial::load_trial(&trial, env.as_deref())?;
            let p = trial::plan(&t);
            let interrupts = Interrupts::default();
            runtime().block_on(async {
                // Inputs and secrets are checked, and the account guard passed, before anything changes.
                let providers = setup::providers_for(&t, &setup_opts).await?;
                if t.spec.stores.clear != ClearPolicy::Never {
                    confirm(&format!("trial `{}` will clear the stores of environment `{}`", t.spec.name, t.env.spec.name), yes)?;
                }
                // A crashed trial's journal must be replayed first, unless this resumes that trial.
                if let Some(j) = UndoJournal::load_pending(&t.env.spec.name)? {
                    let same = resume.as_deref().and_then(|r| r.canonicalize().ok()).is_some_and(|r| j.state().results_dir.as_deref() == Some(r.as_path()));
                    if !same {
                        return Err(Error::Usage(format!(
                            "a previous trial ({}) left auto-scaling groups of `{}` changed; run `trialrunner infra restore --env {}` first, or --resume it",
                            j.state().results_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default(),
                            t.env.spec.name,
                            t.env.file.display()
                        )));
                    }
                }
                let dir = match (resume, out) {
                    (Some(r), _) => ResultsDir::open(&r)?,
                    (None, Some(o)) => ResultsDir::create(&o)?,
                    (None, None) => {
                        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
                        ResultsDir::create(&PathBuf::from("results").join(format!("{}-{stamp}", t.spec.name)))?
                    }
                };
                eprintln!("results: {}", dir.root.display());
                watch_interrupts(&interrupts);
                exec::execute(&t, &p, &providers, &dir, &interrupts).await?;
                Ok::<_, Error>(dir)
            })
            .and_then(|dir| {
                let history = history.unwrap_or_else(|| dir.root.parent().unwrap_or(std::path::Path::new(".")).join("history.jsonl"));
                let line = report::compare::history_line(&dir.root)?;
                append_line(&history, &line)?;
                let html = report::build(&dir.root)?;
                eprintln!("report: {}", html.display());
                gate(&t, &dir.root, baseline.as_deref(), thresholds.as_deref(), junit.as_deref())
            })
        }
        Command::Compare {
            base,
            contender,
            thresholds,
            junit,
            html,
        } => {
            let list = match &thresholds {
                Some(f) => report::compare::read_thresholds(f)?,
                None => Vec::new(),
            };
            let c = report::compare::compare(&base, &contender, &list)?;
            print!("{}", c.table());
            if let Some(j) = junit {
                crate::results::write_atomic(&j, c.junit().as_bytes())?;
            }
            if let Some(h) = html {
                let charts: String = c
                    .charts(
                        &base.display().to_string(),
                        &contender.display().to_string(),
                    )
                    .concat();
                let page = format!("<!doctype html><html><head><meta charset=\"utf-8\"><title>compare</title></head><body><h1>{} vs {}</h1><pre>{}</pre>{charts}</body></html>", base.display(), contender.display(), c.table().replace('<', "&lt;"));
                crate::results::write_atomic(&h, page.as_bytes())?;
            }
            Ok(if c.passed() {
                exit::OK
            } else {
                exit::CHECKS_FAILED
            })
        }
        Command::Demo { out } => {
            let interrupts = Interrupts::default();
            let outcome = runtime().block_on(async {
                watch_interrupts(&interrupts);
                demo::run(&out, &interrupts, true).await
            })?;
            for dir in &outcome.results {
                if let Ok(md) = std::fs::read_to_string(dir.join("report.md")) {
                    println!("{md}");
                }
                println!("results: {}", dir.display());
            }
            for report in &outcome.reports {
                println!("report: {}", report.display());
            }
            Ok(exit::OK)
        }
        Command::Infra { action } => {
            let (env_file, restore) = match action {
                InfraAction::Status { env } => (env, false),
                InfraAction::Restore { env } => (env, true),
            };
            let env = trial::load_environment(&env_file)?;
            runtime().block_on(async {
                let ctx = setup::aws_for(&env, &setup_opts).await?.ok_or_else(|| {
                    Error::Usage(format!(
                        "{}: the environment has no `aws` section",
                        env_file.display()
                    ))
                })?;
                let scaler = AwsScaler::new(ctx, services_of(&env));
                let pending = UndoJournal::load_pending(&env.spec.name)?;
                if restore {
                    match pending {
                        None => println!(
                            "nothing to restore: no pending journal for `{}`",
                            env.spec.name
                        ),
                        Some(mut j) => {
                            j.restore(&scaler).await?;
                            for o in &j.state().original {
                                println!(
                                    "restored {:<24} min {} max {} desired {}",
                                    o.name, o.min, o.max, o.desired
                                );
                            }
                        }
                    }
                    return Ok(());
                }
                println!(
                    "{:<24} {:>5} {:>5} {:>8}   journal (original)",
                    "asg", "min", "max", "desired"
                );
                for svc in services_of(&env) {
                    let orig = pending.as_ref().and_then(|j| {
                        j.state()
                            .original
                            .iter()
                            .find(|o| o.name == svc.asg)
                            .cloned()
                    });
                    let note = orig
                        .map(|o| format!("{} {} {}", o.min, o.max, o.desired))
                        .unwrap_or_else(|| "-".into());
                    match scaler.snapshot(&[svc.role]).await {
                        Ok(c) => println!(
                            "{:<24} {:>5} {:>5} {:>8}   {note}",
                            c[0].name, c[0].min, c[0].max, c[0].desired
                        ),
                        Err(e) => println!("{:<24} {e}", svc.asg),
                    }
                }
                if let Some(d) = &env.spec.deployment {
                    let instances = scaler.tagged_instances(d).await?;
                    println!(
                        "\n{} instance(s) tagged veraison-deployment={d}:",
                        instances.len()
                    );
                    for (id, name, state) in instances {
                        println!("  {id:<22} {name:<14} {state}");
                    }
                }
                if pending.is_some() {
                    println!(
                        "a journal is pending: run `trialrunner infra restore --env {}`",
                        env_file.display()
                    );
                }
                Ok::<_, Error>(())
            })?;
            Ok(exit::OK)
        }
        Command::Rehearse { env, hours } => {
            let env = trial::load_environment(&env)?;
            let d = env.spec.deployment.clone().ok_or_else(|| {
                Error::Usage("the rehearsal environment needs `deployment`".into())
            })?;
            runtime().block_on(async {
                let ctx = setup::aws_for(&env, &setup_opts).await?.ok_or_else(|| {
                    Error::Usage("the rehearsal environment needs an `aws` section".into())
                })?;
                crate::rehearsal::deploy_emulated(&ctx, &d).await?;
                let all = [
                    MetricName::AsgInstances,
                    MetricName::AsgCpu,
                    MetricName::RdsConnections,
                    MetricName::RdsCpu,
                    MetricName::RdsIo,
                    MetricName::AlbRequests,
                    MetricName::Alb5xx,
                    MetricName::TargetHealth,
                ];
                let resources = crate::aws::cloudwatch::resolve(&ctx, &env).await?;
                let n = crate::rehearsal::seed_cloudwatch(&ctx, &all, &resources, hours).await?;
                println!(
                    "deployment `{d}` ready in {}; {n} CloudWatch datapoints seeded",
                    ctx.endpoint
                );
                Ok::<_, Error>(())
            })?;
            Ok(exit::OK)
        }
        Command::Metrics {
            action:
                MetricsAction::Pull {
                    env,
                    from,
                    to,
                    metrics,
                    out,
                },
        } => {
            let (from, to) = (parse_time(&from)?, parse_time(&to)?);
            if to <= from {
                return Err(Error::Usage("--to must be after --from".into()));
            }
            let names: Vec<MetricName> = if metrics.is_empty() {
                vec![
                    MetricName::AsgInstances,
                    MetricName::AsgCpu,
                    MetricName::RdsConnections,
                    MetricName::RdsCpu,
                    MetricName::RdsIo,
                    MetricName::Cache,
                    MetricName::AlbRequests,
                    MetricName::Alb5xx,
                    MetricName::TargetHealth,
                    MetricName::ErrorLogs,
                ]
            } else {
                metrics
                    .iter()
                    .map(|m| {
                        serde_yaml::from_str::<MetricName>(m)
                            .map_err(|_| Error::Usage(format!("unknown metric set `{m}`")))
                    })
                    .collect::<Result<_, _>>()?
            };
            let env = trial::load_environment(&env)?;
            runtime().block_on(async {
                let ctx = setup::aws_for(&env, &setup_opts)
                    .await?
                    .ok_or_else(|| Error::Usage("the environment has no `aws` section".into()))?;
                let source = crate::aws::cloudwatch::CloudWatchSource::new(ctx, env.clone(), names);
                std::fs::create_dir_all(&out)
                    .map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
                crate::provider::MetricsSource::pull(&source, from, to, &out).await
            })?;
            println!("wrote {}", out.join("cloudwatch.json").display());
            Ok(exit::OK)
        }
        Command::Psa {
            out,
            devices,
            release,
            nonce,
            seed,
        } => {
            let rel = ReleaseProfile::parse(&release).map_err(Error::Usage)?;
            let nonce_b64 =
                nonce.unwrap_or_else(|| crate::veraison::psa::SEED_NONCE_B64.to_string());
            let nonce = crate::veraison::ear::decode_b64_lenient(&nonce_b64)
                .filter(|n| [32, 48, 64].contains(&n.len()))
                .ok_or_else(|| {
                    Error::Usage("--nonce must be base64 of 32, 48 or 64 bytes".into())
                })?;
            std::fs::create_dir_all(&out)
                .map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
            for i in 0..devices {
                let d = crate::veraison::psa::Device::synthetic(seed, i);
                let w = |name: String, bytes: &[u8]| {
                    crate::results::write_atomic(&out.join(name), bytes)
                };
                w(
                    format!("device-{i}.corim.cbor"),
                    &d.corim(
                        rel.corim_profile,
                        rel.corim_tagged,
                        &format!("trialrunner-{seed:x}-{i}"),
                    ),
                )?;
                w(format!("device-{i}.token.cbor"), &d.token(&nonce))?;
                w(
                    format!("device-{i}.iak-pub.pem"),
                    d.public_key_pem().as_bytes(),
                )?;
                let jwk = crate::veraison::ear::public_jwk(&d.key);
                w(
                    format!("device-{i}.iak-pub.jwk.json"),
                    jwk.to_string().as_bytes(),
                )?;
            }
            println!(
                "{devices} device(s) in {}: CoRIM for `{}`, tokens for nonce {nonce_b64}",
                out.display(),
                rel.provisioning_media_type
            );
            Ok(exit::OK)
        }
        Command::Report { dir } => {
            let path = report::build(&dir)?;
            println!("report: {}", path.display());
            Ok(exit::OK)
        }
        Command::Stores { action } => {
            let (env_file, clear, yes) = match action {
                StoresAction::Count { env } => (env, false, false),
                StoresAction::Clear { env, yes } => (env, true, yes),
            };
            let env = trial::load_environment(&env_file)?;
            let rt = runtime();
            let aws = if setup::stores_need_aws(&env) || (clear && env.spec.aws.is_some()) {
                rt.block_on(setup::aws_for(&env, &setup_opts))?
            } else {
                None
            };
            let (driver, _) = setup::stores_for(&env, aws.as_ref())?;
            let driver = driver.ok_or_else(|| {
                Error::Usage(format!(
                    "{}: the environment names no stores",
                    env_file.display()
                ))
            })?;
            if clear {
                if !env.spec.stores.as_ref().is_some_and(|s| s.disposable) {
                    return Err(Error::Usage(format!(
                        "{}: stores.disposable is not true: clearing is refused",
                        env_file.display()
                    )));
                }
                confirm(
                    &format!(
                        "clear every store of environment `{}` ({})",
                        env.spec.name,
                        driver.describe()
                    ),
                    yes,
                )?;
            }
            let counts = rt.block_on(async {
                if clear {
                    driver.clear().await
                } else {
                    driver.count().await
                }
            })?;
            for (table, n) in &counts {
                println!("{table:<16} {n}");
            }
            if clear {
                println!("(counts before clearing)");
            }
            Ok(exit::OK)
        }
        Command::Bench {
            url,
            connections,
            duration,
            threads,
        } => {
            // One thread: a current-thread runtime (no cross-thread wake-ups); more: multi-thread.
            let rt = match threads {
                Some(1) => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build(),
                Some(n) => tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(n.max(1))
                    .enable_all()
                    .build(),
                None => tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build(),
            }
            .expect("tokio runtime starts");
            let dir =
                std::env::temp_dir().join(format!("trialrunner-bench-{}", std::process::id()));
            let report = rt.block_on(crate::load::bench::run(&url, connections, duration, &dir));
            let _ = std::fs::remove_dir_all(&dir);
            let report = report?;
            let s = &report.summary;
            println!(
                "connections: {connections}  duration: {:.1} s",
                s.duration_s
            );
            println!(
                "requests: {}  failures: {}",
                s.aggregated.count, s.aggregated.failures
            );
            println!(
                "latency ms: p50 {:.3}  p95 {:.3}  p99 {:.3}  max {:.3}",
                s.aggregated.p50_ms, s.aggregated.p95_ms, s.aggregated.p99_ms, s.aggregated.max_ms
            );
            println!(
                "peak RSS: {} KiB ({:.1} KiB per connection above the baseline)",
                report.peak_rss_kib,
                report.kib_per_user()
            );
            println!("requests/s: {:.0}", report.requests_per_s());
            Ok(exit::OK)
        }
        Command::Standin(args) => {
            let release = ReleaseProfile::parse(&args.release).map_err(Error::Usage)?;
            let auth = if args.auth {
                let mut c = Credentials::default();
                if let Some(u) = &args.auth_username {
                    c.username = u.clone();
                }
                if let Some(var) = &args.auth_password_env {
                    c.password = crate::secret::Secret::from_env(var)
                        .map_err(Error::Usage)?
                        .expose()
                        .to_string();
                }
                if let Some(var) = &args.auth_client_secret_env {
                    c.client_secret = crate::secret::Secret::from_env(var)
                        .map_err(Error::Usage)?
                        .expose()
                        .to_string();
                }
                Some(c)
            } else {
                None
            };
            let config = StandinConfig {
                release,
                auth,
                faults: Faults {
                    latency: args.latency,
                    error_rate: args.error_rate,
                    slow_start: args.slow_start.unwrap_or_default(),
                    db_connections: args.db_connections,
                    pause: None,
                },
                memcached_sessions: args.memcached_sessions,
                ..StandinConfig::default()
            };
            runtime().block_on(async {
                let store = match &args.postgres {
                    Some(conninfo) => KvStore::postgres(conninfo, 8)
                        .await
                        .map_err(|e| Error::Infra(e.to_string()))?,
                    None => KvStore::memory(),
                };
                let s = Standin::start(args.listen, config, store)
                    .await
                    .map_err(|e| Error::io(format!("listening on {}", args.listen), e))?;
                println!("stand-in listening on {}", s.url());
                let _ = tokio::signal::ctrl_c().await;
                s.shutdown().await;
                Ok::<_, Error>(())
            })?;
            Ok(exit::OK)
        }
    }
}

/// The files named, with directories replaced by the YAML files inside them (recursively).
fn yaml_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            inner.sort();
            let yaml: Vec<PathBuf> = inner
                .into_iter()
                .filter(|q| q.is_dir() || q.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            out.extend(yaml_files(&yaml));
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// Validates trials and environments; a file with `services:` at top level is an environment.
fn validate(files: &[PathBuf], env: Option<&std::path::Path>) -> i32 {
    let mut failed = false;
    for f in &yaml_files(files) {
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
