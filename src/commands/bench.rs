//! `trialrunner bench`: the load engine alone, closed-model GET, one user per connection.

use crate::error::{exit, Result};

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The target (for `--task verify` without it: a stand-in on its own thread, not counted).
    #[arg(long, required_if_eq("task", "http"))]
    pub url: Option<url::Url>,
    /// What each user does: `http` (GET the URL) or `verify` (Veraison verification sessions,
    /// reporting the generator's CPU per session).
    #[arg(long, value_enum, default_value = "http")]
    pub task: crate::load::bench::BenchTask,
    /// Connections (= virtual users).
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// How long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// Worker threads of the engine (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Measures and prints.
pub fn run(args: Args) -> Result<i32> {
    // The engine runs on its own threads; this runtime only waits and writes files.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let dir = std::env::temp_dir().join(format!("trialrunner-bench-{}", std::process::id()));
    // Without a URL, `verify` gets a stand-in on a runtime of its own (its CPU is not the
    // generator's: only the engine's threads are measured).
    let (_standin_rt, _standin, url) = match &args.url {
        Some(u) => (None, None, u.clone()),
        None => {
            let srt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("standin")
                .enable_all()
                .build()
                .expect("tokio runtime starts");
            let standin = srt
                .block_on(crate::standin::Standin::start(
                    "127.0.0.1:0".parse().expect("an address"),
                    crate::standin::StandinConfig::default(),
                    crate::standin::store::KvStore::memory(),
                ))
                .map_err(|e| crate::error::Error::io("starting the stand-in", e))?;
            let url = standin.url();
            (Some(srt), Some(standin), url)
        }
    };
    let report = rt.block_on(crate::load::bench::run(
        &url,
        args.task,
        args.connections,
        args.duration,
        threads,
        &dir,
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let report = report?;
    let s = &report.summary;
    crate::outln!(
        "connections: {}  duration: {:.1} s",
        args.connections,
        s.duration_s
    );
    crate::outln!(
        "requests: {}  failures: {}",
        s.aggregated.count,
        s.aggregated.failures
    );
    crate::outln!(
        "latency ms: p50 {:.3}  p95 {:.3}  p99 {:.3}  max {:.3}",
        s.aggregated.p50_ms,
        s.aggregated.p95_ms,
        s.aggregated.p99_ms,
        s.aggregated.max_ms
    );
    crate::outln!(
        "peak RSS: {} KiB ({:.1} KiB per connection above the baseline)",
        report.peak_rss_kib,
        report.kib_per_user()
    );
    crate::outln!(
        "generator CPU per request: {:.2} µs",
        s.generator.cpu_us_per_request
    );
    if args.task == crate::load::bench::BenchTask::Verify {
        crate::outln!(
            "generator CPU per verification session: {:.0} µs (goal ≤ 100 µs; token signing and EAR checks {:.0} µs of it)",
            report.cpu_us_per_task(),
            s.generator.check_cpu_us_per_task
        );
    }
    crate::outln!("{}", s.generator.verdict_line());
    crate::outln!("requests/s: {:.0}", report.requests_per_s());
    // A rate of failures is not a measurement of the engine.
    let a = &s.aggregated;
    if a.count == 0 || a.failures * 2 > a.count {
        let why = s
            .failures
            .first()
            .map(|f| format!("{}: {}", f.class, f.message))
            .unwrap_or_else(|| "no request completed".into());
        crate::terminal::say(&format!(
            "error: {} of {} requests failed ({why}): the figures above measure failures, not the engine",
            a.failures, a.count
        ));
        let refused = s.failures.first().is_some_and(|f| f.class == "connect");
        return Ok(if refused || a.count == 0 {
            exit::INFRA
        } else {
            exit::CHECKS_FAILED
        });
    }
    Ok(exit::OK)
}
