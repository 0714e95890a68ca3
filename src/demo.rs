//! `trialrunner demo`: the embedded default. Starts the Veraison stand-in in-process, runs
//! scaled-down seed trials 1 and 3 against it, and writes results and reports. No AWS, no setup.

use std::path::{Path, PathBuf};

use crate::dashboard::{Dashboard, Watched};
use crate::error::{Error, Result};
use crate::exec::Interrupts;
use crate::setup::{self, SetupOptions};
use crate::standin::store::KvStore;
use crate::standin::{Standin, StandinConfig};
use crate::trial;

/// The trials the demo runs, embedded so the binary needs nothing beside it.
pub const DEMO_TRIALS: [(&str, &str); 2] = [
    (
        "local-users.yaml",
        include_str!("../trials/local-users.yaml"),
    ),
    (
        "local-store-weight.yaml",
        include_str!("../trials/local-store-weight.yaml"),
    ),
];

/// The environment the demo writes for its stand-in.
pub fn local_environment(standin: &url::Url, release: &str) -> String {
    format!(
        "# Written by `trialrunner demo`: the in-process Veraison stand-in.\nname: local\nservices:\n  provisioning: {{ url: \"{standin}\" }}\n  verification: {{ url: \"{standin}\" }}\nveraison: {{ release: {release} }}\nstores:\n  standin: {{ url: \"{standin}\" }}\n  disposable: true\n"
    )
}

/// What the demo produced.
pub struct DemoOutcome {
    /// One results directory per trial.
    pub results: Vec<PathBuf>,
    /// The report of each.
    pub reports: Vec<PathBuf>,
}

/// Runs the demo into `out`.
pub async fn run(out: &Path, interrupts: &Interrupts, progress: bool) -> Result<DemoOutcome> {
    run_watched(out, interrupts, progress, None).await
}

/// Runs the demo into `out`, each trial shown in turn on `dashboard` when there is one.
pub async fn run_watched(
    out: &Path,
    interrupts: &Interrupts,
    progress: bool,
    dashboard: Option<&Dashboard>,
) -> Result<DemoOutcome> {
    let standin = Standin::start(
        "127.0.0.1:0".parse().expect("valid address"),
        StandinConfig::default(),
        KvStore::memory(),
    )
    .await
    .map_err(|e| Error::io("starting the stand-in", e))?;
    let inputs = out.join("inputs");
    std::fs::create_dir_all(&inputs)
        .map_err(|e| Error::io(format!("creating {}", inputs.display()), e))?;
    let env_file = inputs.join("local.yaml");
    crate::results::write_atomic(
        &env_file,
        local_environment(&standin.url(), "v0.0.2602").as_bytes(),
    )?;
    let mut outcome = DemoOutcome {
        results: Vec::new(),
        reports: Vec::new(),
    };
    for (name, text) in DEMO_TRIALS {
        let file = inputs.join(name);
        crate::results::write_atomic(&file, text.as_bytes())?;
        let t = trial::load_trial(&file, Some(&env_file))?;
        let plan = trial::plan(&t);
        let providers = setup::providers_for(
            &t,
            &SetupOptions {
                aws_endpoint: None,
                progress,
            },
        )
        .await?;
        let dir = crate::results::ResultsDir::replace(&out.join(&t.spec.name))?;
        if progress {
            eprintln!(
                "demo: trial `{}`: {} load runs, about {:.0} s",
                t.spec.name,
                plan.load_phases().count(),
                plan.total().as_secs_f64()
            );
        }
        if let Some(d) = dashboard {
            d.follow(Watched::new(&t.spec.name, &dir, &plan));
        }
        let done =
            crate::campaign::execute_and_report(&t, &plan, &providers, &dir, interrupts).await;
        done.outcome?;
        outcome.reports.extend(done.report);
        outcome.results.push(dir.root);
    }
    standin.shutdown().await;
    Ok(outcome)
}
