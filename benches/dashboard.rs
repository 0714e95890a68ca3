//! What a connected live dashboard costs the load: the same campaign against the in-process
//! stand-in (8 users, no think time, 10 s of `well-known`: the generator as busy as it gets),
//! run in alternating pairs without and with a dashboard whose page is open (a client reading
//! `/events` throughout). Prints each run's throughput and the frames the client got, then the
//! difference of the means beside the spread within each side: a dashboard that costs nothing
//! measurable shows a difference inside the spread. `cargo bench --bench dashboard`
//! (`PAIRS=5` for more pairs). A benchmark, not a test: its numbers are this machine's.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use trialrunner::dashboard::{Dashboard, DashboardAddr, Watched};
use trialrunner::exec::Interrupts;
use trialrunner::setup::{self, SetupOptions};
use trialrunner::standin::store::KvStore;
use trialrunner::standin::{Standin, StandinConfig};

const TRIAL: &str = "name: bench\nenvironment: local\nruns:\n  users: 8\n  duration: 10s\n  warmup: 2s\n  tasks: [well-known]\n";

/// One campaign; its steady requests per second, and the frames a page got (with a dashboard).
async fn campaign(standin: &Standin, dir: &std::path::Path, with: bool) -> (f64, usize) {
    let env = dir.join("local.yaml");
    std::fs::write(
        &env,
        trialrunner::demo::local_environment(&standin.url(), "v0.0.2602"),
    )
    .unwrap();
    let file = dir.join("bench.yaml");
    std::fs::write(&file, TRIAL).unwrap();
    let t = trialrunner::trial::load_trial(&file, Some(&env)).unwrap();
    let plan = trialrunner::trial::plan(&t);
    let providers = setup::providers_for(
        &t,
        &SetupOptions {
            aws_endpoint: None,
            progress: false,
        },
    )
    .await
    .unwrap();
    let results = trialrunner::results::ResultsDir::create(&dir.join("results")).unwrap();
    let frames = Arc::new(AtomicUsize::new(0));
    let dashboard = if with {
        let d = Dashboard::start(DashboardAddr::parse("127.0.0.1:0", false).unwrap())
            .await
            .unwrap();
        d.follow(Watched::new(&t.spec.name, &results, &plan));
        let url = format!("{}events", d.url());
        let count = frames.clone();
        tokio::spawn(async move {
            let mut r = reqwest::get(url).await.unwrap();
            while let Ok(Some(chunk)) = r.chunk().await {
                let text = String::from_utf8_lossy(&chunk);
                count.fetch_add(text.matches("event: frame").count(), Ordering::Relaxed);
            }
        });
        Some(d)
    } else {
        None
    };
    let outcome =
        trialrunner::exec::execute(&t, &plan, &providers, &results, &Interrupts::default())
            .await
            .unwrap();
    drop(dashboard);
    let rps = outcome.runs[0].aggregated.rps;
    (rps, frames.load(Ordering::Relaxed))
}

fn mean_and_spread(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let spread = v.iter().map(|x| (x - mean).abs()).fold(0.0, f64::max);
    (mean, spread)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let pairs: usize = std::env::var("PAIRS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3);
    let standin = Standin::start(
        "127.0.0.1:0".parse().unwrap(),
        StandinConfig::default(),
        KvStore::memory(),
    )
    .await
    .unwrap();
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for pair in 1..=pairs {
        for dashboard in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (rps, frames) = campaign(&standin, dir.path(), dashboard).await;
            if dashboard {
                println!(
                    "pair {pair}: with a dashboard open    {rps:>9.0} requests/s ({frames} frames)"
                );
                with.push(rps);
            } else {
                println!("pair {pair}: without a dashboard      {rps:>9.0} requests/s");
                without.push(rps);
            }
        }
    }
    let (a, sa) = mean_and_spread(&without);
    let (b, sb) = mean_and_spread(&with);
    println!(
        "without: {a:.0} ± {sa:.0} requests/s; with: {b:.0} ± {sb:.0} (± the widest deviation from the mean); difference {:+.1} %",
        (b - a) / a * 100.0
    );
    standin.shutdown().await;
}
