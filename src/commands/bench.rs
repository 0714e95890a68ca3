//! `trialrunner bench`: the load engine alone, closed-model GET, one user per connection.

use crate::error::{exit, Result};

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The URL to GET.
    #[arg(long)]
    pub url: url::Url,
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
    let report = rt.block_on(crate::load::bench::run(
        &args.url,
        args.connections,
        args.duration,
        threads,
        &dir,
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let report = report?;
    let s = &report.summary;
    println!(
        "connections: {}  duration: {:.1} s",
        args.connections, s.duration_s
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
    // A rate of failures is not a measurement of the engine.
    let a = &s.aggregated;
    if a.count == 0 || a.failures * 2 > a.count {
        let why = s
            .failures
            .first()
            .map(|f| format!("{}: {}", f.class, f.message))
            .unwrap_or_else(|| "no request completed".into());
        crate::exec::signals::say(&format!(
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
