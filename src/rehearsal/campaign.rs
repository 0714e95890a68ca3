//! The rehearsal of the 2025 campaign, as one configuration: the twin's knobs, the database's
//! `max_connections`, and the trials of `trials/rehearsal/` (embedded), run in order against
//! the twin of a Veraison-shaped deployment in a local AWS emulator, each with its report, then
//! Trial 1 compared with Trial 2. `scripts/rehearse` and the campaign test both run exactly
//! this (`trialrunner rehearse --campaign`): what the test asserts is what a user sees.
//!
//! The twin is scaled so that it, not the machine running it, is the bottleneck: on two shared
//! cores the stand-ins' real work (PSA verification, EAR signing, the database) stays well
//! under each request's modelled occupancy, and the twin records any second in which it did not
//! (`rehearsal.json` beside each run: the report then says the machine set those figures).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::exec::Interrupts;
use crate::results::{self, ResultsDir};
use crate::setup::{self, SetupOptions};
use crate::standin::faults::InstanceCapacity;
use crate::standin::store::KvStore;
use crate::trial;

use super::twin::{Twin, TwinConfig};

/// The deployment's name in the emulator.
pub const DEPLOYMENT: &str = "veraison";

/// The rehearsal database's `max_connections`: the seed trials' users never reach it, the
/// database trial's top step does (each instance pools real sessions on it, as VTS does).
pub const POSTGRES_MAX_CONNECTIONS: u32 = 30;

/// The rehearsal's trials, in the order they run: (file name, text).
pub const TRIALS: [(&str, &str); 6] = [
    (
        "rehearsal-1-users-pinned-3.yaml",
        include_str!("../../trials/rehearsal/rehearsal-1-users-pinned-3.yaml"),
    ),
    (
        "rehearsal-2-users-pinned-1.yaml",
        include_str!("../../trials/rehearsal/rehearsal-2-users-pinned-1.yaml"),
    ),
    (
        "rehearsal-3-store-weight.yaml",
        include_str!("../../trials/rehearsal/rehearsal-3-store-weight.yaml"),
    ),
    (
        "rehearsal-4-autoscaling.yaml",
        include_str!("../../trials/rehearsal/rehearsal-4-autoscaling.yaml"),
    ),
    (
        "rehearsal-5-db-connections.yaml",
        include_str!("../../trials/rehearsal/rehearsal-5-db-connections.yaml"),
    ),
    (
        "rehearsal-6-warm-pool.yaml",
        include_str!("../../trials/rehearsal/rehearsal-6-warm-pool.yaml"),
    ),
];

/// The twin the rehearsal runs against: what one instance of the deployment can do, scaled so
/// that three of them stay well within what two shared cores serve with the generator beside
/// them (see the module's documentation), and their lifecycle compressed from AWS's minutes
/// into seconds.
pub fn twin_config() -> TwinConfig {
    let mut c = TwinConfig::new(DEPLOYMENT);
    c.capacity = Some(InstanceCapacity {
        // 2 × 80 ms: 25 requests/s per instance, 12.5 verification sessions/s (newSession and
        // evidence each occupy a worker). Slow enough that the stand-ins' real work (a few ms
        // in a debug build) stays a small part of it even on a busy machine.
        workers: 2,
        service: Duration::from_millis(80),
        // Each stored duplicate of a device's keys that a verification reads and decodes.
        per_row: Duration::from_micros(100),
        // A new connection to the database (RDS: TCP, TLS, authentication). VTS keeps two idle
        // (Go's default), so every run that needs more opens them again: a cold start.
        db_open: Duration::from_millis(150),
    });
    // A launched instance: Pending 6 s (AWS: minutes of boot and deployment), then its VTS not
    // up for 4 s while the load balancer already routes to it (a shallow health check).
    c.spin_up = Duration::from_secs(6);
    c.not_ready = Duration::from_secs(4);
    c.poll = Duration::from_millis(500);
    // Target tracking judged every 2 s (AWS: one-minute alarms); scale-in after 3 quiet windows.
    c.policy_window = Duration::from_secs(2);
    c.publish_every = Some(Duration::from_secs(1));
    c
}

/// Where the rehearsal's servers are and where its results go.
#[derive(Debug, Clone)]
pub struct RehearsalOptions {
    /// The AWS emulator (moto) on this machine.
    pub emulator: String,
    /// The PostgreSQL database the twin's instances and the stores driver use (a libpq
    /// conninfo); its server must run with [`POSTGRES_MAX_CONNECTIONS`].
    pub postgres: String,
    /// The results root: one directory per trial, and `compare-1-vs-2.html`.
    pub out: PathBuf,
    /// Live progress on the terminal.
    pub progress: bool,
    /// Only these of [`TRIALS`] (by trial name, or its file name); empty: every one.
    pub only: Vec<String>,
}

/// One trial of the rehearsal as it ended.
#[derive(Debug, Clone)]
pub struct TrialOutcome {
    /// The trial's name (its results directory's).
    pub name: String,
    /// Its results directory.
    pub dir: PathBuf,
    /// Its report, when one was built.
    pub report: Option<PathBuf>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// What the rehearsal produced.
#[derive(Debug, Clone, Default)]
pub struct RehearsalOutcome {
    /// Each trial, in order.
    pub trials: Vec<TrialOutcome>,
    /// Trial 1 against Trial 2.
    pub compare: Option<PathBuf>,
}

/// The parts of a libpq conninfo the stores driver needs.
struct Database {
    host: String,
    port: u16,
    name: String,
    user: String,
}

fn database(conninfo: &str) -> Result<Database> {
    let bad = |why: &str| Error::Usage(format!("--postgres `{conninfo}`: {why}"));
    let c: tokio_postgres::Config = conninfo.parse().map_err(|_| bad("not a conninfo"))?;
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => return Err(bad("give a TCP host (host=127.0.0.1)")),
    };
    Ok(Database {
        host,
        port: c.get_ports().first().copied().unwrap_or(5432),
        name: c
            .get_dbname()
            .ok_or_else(|| bad("give dbname"))?
            .to_string(),
        user: c.get_user().unwrap_or("postgres").to_string(),
    })
}

/// The server's `max_connections` must be the rehearsal's: the database trial is calibrated on
/// it.
async fn check_max_connections(conninfo: &str) -> Result<()> {
    let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .map_err(|e| Error::Infra(format!("the rehearsal's PostgreSQL: {e}")))?;
    let task = tokio::spawn(conn);
    let row = client
        .query_one("SHOW max_connections", &[])
        .await
        .map_err(|e| Error::Infra(format!("the rehearsal's PostgreSQL: {e}")))?;
    drop(client);
    let _ = task.await;
    let max: String = row.get(0);
    if max.trim() != POSTGRES_MAX_CONNECTIONS.to_string() {
        return Err(Error::Usage(format!(
            "the rehearsal's PostgreSQL runs with max_connections {max}; the rehearsal is calibrated on {POSTGRES_MAX_CONNECTIONS} (start it with -c max_connections={POSTGRES_MAX_CONNECTIONS})"
        )));
    }
    Ok(())
}

/// The rehearsal environment: the emulator (through the twin's view of it) as AWS, the twin's
/// balancer as both services, the database as the stores.
fn environment_yaml(aws: &str, services: &str, db: &Database) -> String {
    format!(
        "# Written by `trialrunner rehearse --campaign`: the emulator as AWS, the twin as Veraison.\n\
         name: rehearsal\n\
         aws: {{ region: eu-west-1, account: \"123456789012\", endpoint: \"{aws}\" }}\n\
         deployment: {DEPLOYMENT}\n\
         services:\n  provisioning: {{ url: \"{services}\" }}\n  verification: {{ url: \"{services}\" }}\n\
         veraison: {{ release: v0.0.2602 }}\n\
         stores:\n  postgres: {{ host: {}, port: {}, database: {}, user: {}, password-env: REHEARSAL_DB_PASSWORD, tls: prefer }}\n  disposable: true\n",
        db.host, db.port, db.name, db.user
    )
}

/// Runs the whole rehearsal (see the module's documentation). A trial that fails is recorded
/// and the next runs; a stop request ends the rehearsal after the trial in flight restored.
pub async fn run(opts: &RehearsalOptions, interrupts: &Interrupts) -> Result<RehearsalOutcome> {
    run_watched(opts, interrupts, None).await
}

/// [`run`], each trial shown in turn on `dashboard` when there is one (`--dashboard`).
pub async fn run_watched(
    opts: &RehearsalOptions,
    interrupts: &Interrupts,
    dashboard: Option<&crate::dashboard::Dashboard>,
) -> Result<RehearsalOutcome> {
    let trials = selected(&opts.only)?;
    let db = database(&opts.postgres)?;
    check_max_connections(&opts.postgres).await?;
    let inputs = opts.out.join("inputs");
    std::fs::create_dir_all(&inputs)
        .map_err(|e| Error::io(format!("creating {}", inputs.display()), e))?;
    let env_file = inputs.join("rehearsal.yaml");
    // The deployment first (the environment's URLs are not known yet: the twin picks its ports).
    results::write_atomic(
        &env_file,
        environment_yaml(&opts.emulator, "http://127.0.0.1:9", &db).as_bytes(),
    )?;
    let env = trial::load_environment(&env_file)?;
    let ctx = setup::aws_for(&env, &SetupOptions::default())
        .await?
        .ok_or_else(|| Error::Internal("the rehearsal environment has an aws section".into()))?;
    super::deploy_emulated(&ctx, DEPLOYMENT).await?;
    let mut config = twin_config();
    config.resources = Some(crate::aws::cloudwatch::resolve(&ctx, &env).await?);
    config.postgres = Some(opts.postgres.clone());
    config.aws_view = Some("127.0.0.1:0".parse().expect("an address"));
    let store = KvStore::postgres(&opts.postgres, 4)
        .await
        .map_err(|e| Error::Infra(format!("the rehearsal's store: {e}")))?;
    let twin = Twin::start(
        &ctx,
        "127.0.0.1:0".parse().expect("an address"),
        config.clone(),
        store,
    )
    .await?;
    let view = twin
        .aws_view
        .as_ref()
        .map(|v| v.url())
        .ok_or_else(|| Error::Internal("the twin serves its view of the emulator".into()))?;
    results::write_atomic(
        &env_file,
        environment_yaml(&view, twin.url().as_str(), &db).as_bytes(),
    )?;
    crate::terminal::say(&format!(
        "rehearsal: the twin of `{DEPLOYMENT}` at {} (AWS as its instances are: {view}); results in {}",
        twin.url(),
        opts.out.display()
    ));
    let mut outcome = RehearsalOutcome::default();
    for (file, text) in trials {
        if interrupts.soft.is_cancelled() {
            break;
        }
        let trial_file = inputs.join(file);
        results::write_atomic(&trial_file, text.as_bytes())?;
        outcome.trials.push(
            run_trial(
                &trial_file,
                &env_file,
                &twin,
                &config,
                opts,
                interrupts,
                dashboard,
            )
            .await?,
        );
    }
    let named = |name: &str| outcome.trials.iter().find(|t| t.name == name);
    if let (Some(first), Some(second)) = (
        named("rehearsal-users-pinned-3"),
        named("rehearsal-users-pinned-1"),
    ) {
        if first.error.is_none() && second.error.is_none() {
            let c = crate::report::compare::compare(&first.dir, &second.dir, &[])?;
            let page = crate::report::comparison_page(&first.dir, &second.dir, &c)?;
            let path = opts.out.join("compare-1-vs-2.html");
            results::write_atomic(&path, page.html()?.as_bytes())?;
            outcome.compare = Some(path);
        }
    }
    Ok(outcome)
}

/// The trials `only` names (each by its name or its file's), in the rehearsal's order; every
/// trial when it names none. A name that is no trial of the rehearsal is refused up front.
fn selected(only: &[String]) -> Result<Vec<(&'static str, &'static str)>> {
    let name_of = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("name: "))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    for o in only {
        if !TRIALS
            .iter()
            .any(|(file, text)| o == file || *o == name_of(text))
        {
            let names: Vec<String> = TRIALS.iter().map(|(_, t)| name_of(t)).collect();
            return Err(Error::Usage(format!(
                "--only {o}: not a trial of the rehearsal (its trials: {})",
                names.join(", ")
            )));
        }
    }
    Ok(TRIALS
        .into_iter()
        .filter(|(file, text)| {
            only.is_empty() || only.iter().any(|o| o == file || *o == name_of(text))
        })
        .collect())
}

/// One trial of the rehearsal: with variants, each in turn into `<trial>/<variant>/` (its groups
/// restored at its end), then compared with the first (`variants.json`, the comparison pages);
/// else the trial's campaign into `<trial>/`.
async fn run_trial(
    trial_file: &Path,
    env_file: &Path,
    twin: &Twin,
    config: &TwinConfig,
    opts: &RehearsalOptions,
    interrupts: &Interrupts,
    dashboard: Option<&crate::dashboard::Dashboard>,
) -> Result<TrialOutcome> {
    let t = trial::load_trial(trial_file, Some(env_file))?;
    let root = opts.out.join(&t.spec.name);
    let one = |t: trial::Trial, dir: PathBuf| async move {
        let dir = ResultsDir::replace(&dir)?;
        run_campaign(&t, dir, twin, config, opts, interrupts, dashboard).await
    };
    if t.variants.is_empty() {
        return one(t.clone(), root).await.map(|(outcome, _)| outcome);
    }
    let _ = std::fs::remove_dir_all(&root);
    let mut ran = Vec::new();
    let mut errors = Vec::new();
    let mut reports = Vec::new();
    for v in &t.variants {
        if interrupts.soft.is_cancelled() {
            break;
        }
        crate::terminal::say(&format!("== variant {} of {}", v.name, t.spec.name));
        let (outcome, exit) = one(t.under(v), root.join(&v.name)).await?;
        if let Some(e) = outcome.error {
            errors.push(format!("variant {}: {e}", v.name));
        }
        reports.extend(outcome.report);
        ran.push(crate::campaign::VariantRun {
            variant: v,
            dir: outcome.dir,
            exit,
        });
    }
    let pages = crate::campaign::finish_variants(&root, &t, &ran)?;
    Ok(TrialOutcome {
        name: t.spec.name.clone(),
        dir: root,
        // The comparison of the variants stands for the trial; each variant has its own report.
        report: pages.into_iter().next().or(reports.into_iter().next()),
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    })
}

/// One campaign of the rehearsal into `dir`: the steps, the twin's own view beside each run,
/// the report; with the campaign's exit code.
async fn run_campaign(
    t: &trial::Trial,
    dir: ResultsDir,
    twin: &Twin,
    config: &TwinConfig,
    opts: &RehearsalOptions,
    interrupts: &Interrupts,
    dashboard: Option<&crate::dashboard::Dashboard>,
) -> Result<(TrialOutcome, i32)> {
    let plan = trial::plan(t);
    let label = match &t.spec.variant {
        Some(v) => format!("{}, variant {v}", t.spec.name),
        None => t.spec.name.clone(),
    };
    crate::terminal::say(&format!(
        "== {label}: {} load runs, about {}",
        plan.load_phases().count(),
        humantime::format_duration(Duration::from_secs(plan.total().as_secs()))
    ));
    let providers = setup::providers_for(
        t,
        &SetupOptions {
            aws_endpoint: None,
            progress: opts.progress,
        },
    )
    .await?;
    if let Some(d) = dashboard {
        d.follow(crate::dashboard::Watched::new(&label, &dir, &plan));
    }
    let outcome = crate::exec::execute(t, &plan, &providers, &dir, interrupts).await;
    // The twin's own view of every run that left files, before the report reads them.
    for run in dir.summaries().unwrap_or_default() {
        let seen = twin.observations(
            config,
            run.started_unix - 2.0,
            run.started_unix + run.duration_s + 2.0,
        );
        results::write_json(&dir.run_dir(&run.run_id).join("rehearsal.json"), &seen)?;
    }
    let report = crate::campaign::report_unless_skipped(&dir, interrupts);
    if let Some(r) = &report {
        crate::terminal::say(&format!("report: {}", r.display()));
    }
    let exit = match &outcome {
        Ok(o) if o.partial.is_empty() => crate::error::exit::OK,
        Ok(_) => crate::error::exit::PARTIAL,
        Err(Error::Interrupted) => interrupts.exit_code(),
        Err(e) => e.exit_code(),
    };
    Ok((
        TrialOutcome {
            name: label,
            dir: dir.root.clone(),
            report,
            error: outcome.err().map(|e| e.to_string()),
        },
        exit,
    ))
}
