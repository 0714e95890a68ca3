//! Results directories with known contents, for report and compare tests and the report
//! benchmark.

#![allow(dead_code)]

use std::path::Path;

use hdrhistogram::Histogram;
use trialrunner::load::aggregate::{encode, figures as figures_of};
use trialrunner::results::{self, EndpointSummary, Histograms, RunSummary, SteadySamples};

/// A histogram of `count` latencies spread evenly over `[0, p95 / 0.95]` ms: its p95 is `p95`.
pub fn histogram(count: u64, p95: f64) -> Histogram<u64> {
    let mut h = trialrunner::load::recorder::new_hist();
    let top_us = p95 / 0.95 * 1000.0;
    for i in 0..count {
        h.record(((i as f64 + 0.5) / count as f64 * top_us).max(1.0) as u64)
            .unwrap();
    }
    h
}

/// An endpoint whose per-second samples are `rps` and `p95` with a little deterministic noise.
pub fn endpoint(
    method: &str,
    name: &str,
    task: &str,
    rps: f64,
    p95: f64,
    failures: u64,
    seconds: usize,
) -> EndpointSummary {
    let noise = |i: usize| ((i * 7919) % 11) as f64 / 10.0 - 0.5;
    let count = (rps * seconds as f64) as u64;
    let h = histogram(count.saturating_sub(failures).max(1), p95);
    let f = figures_of(&h, count, failures, seconds as f64);
    EndpointSummary {
        method: method.into(),
        name: name.into(),
        task: task.into(),
        total: f.clone(),
        steady: f,
        histograms: Histograms {
            steady: encode(&h),
            total: encode(&h),
            corrected: String::new(),
        },
        samples: SteadySamples {
            rps: (0..seconds).map(|i| rps + noise(i) * rps * 0.05).collect(),
            p95_ms: (0..seconds).map(|i| p95 + noise(i) * p95 * 0.05).collect(),
            failures: (0..seconds)
                .map(|i| if (i as u64) < failures { 1.0 } else { 0.0 })
                .collect(),
        },
        ..Default::default()
    }
}

/// Writes a results dir with one run per user count, verify's p95 scaled by `slow`.
pub fn write_results(dir: &Path, users: &[u32], seconds: usize, slow: f64) {
    results::ResultsDir::create(dir).unwrap();
    let start = 1_790_000_000.0;
    for (i, u) in users.iter().enumerate() {
        let run_id = format!("u{u:03}-verify");
        let run_dir = dir.join("runs").join(&run_id);
        std::fs::create_dir_all(&run_dir).unwrap();
        let started = start + i as f64 * (seconds as f64 + 10.0);
        let eps = vec![
            endpoint(
                "POST",
                "/challenge-response/v1/newSession?nonce=[NONCE]",
                "verify",
                10.0 * *u as f64,
                20.0 * slow,
                0,
                seconds,
            ),
            endpoint(
                "POST",
                "/challenge-response/v1/[SESSION_ID]",
                "verify",
                10.0 * *u as f64,
                100.0 * slow + *u as f64,
                (*u / 10) as u64,
                seconds,
            ),
        ];
        let s = RunSummary {
            run_id: run_id.clone(),
            iteration: 1,
            users: Some(*u),
            tasks: vec!["verify".into()],
            started_unix: started,
            duration_s: seconds as f64,
            warmup_s: 10.0,
            endpoints: eps,
            ..Default::default()
        };
        let mut timeline = String::from(results::csv::TIMELINE_HEADER);
        for sec in 0..seconds {
            for e in &s.endpoints {
                timeline.push_str(&format!(
                    "{},{sec}.000,1.000,{},{},{},request,{u},{:.0},0,0,{:.3},,{:.3},,,,,\n",
                    started as i64 + sec as i64,
                    if sec < 10 { "warmup" } else { "steady" },
                    e.method,
                    results::csv::field(&e.name),
                    e.samples.rps[sec],
                    e.steady.p50_ms,
                    e.samples.p95_ms[sec],
                ));
            }
        }
        std::fs::write(run_dir.join("timeline.csv"), timeline).unwrap();
        // An instance joins a third of the way in.
        let mut infra = String::new();
        for sec in (0..seconds).step_by(5) {
            let joined = sec >= seconds / 3;
            let mut instances = vec![
                serde_json::json!({"id": "i-a", "lifecycle": "InService", "health": "Healthy"}),
            ];
            if joined {
                instances.push(
                    serde_json::json!({"id": "i-b", "lifecycle": "InService", "health": "Healthy"}),
                );
            }
            let targets: Vec<_> = instances
                .iter()
                .map(|i| serde_json::json!({"id": i["id"], "state": "healthy"}))
                .collect();
            infra.push_str(&format!("{}\n", serde_json::json!({"unix": started + sec as f64, "groups": [{"asg": "veraison-verif-asg", "desired": if joined {2} else {1}, "instances": instances, "targets": targets}]})));
        }
        std::fs::write(run_dir.join("infra.jsonl"), infra).unwrap();
        results::write_json(&run_dir.join("scaling.json"), &serde_json::json!({"activities": [], "instances": [{"id": "i-b", "launch_time": started + seconds as f64 / 4.0}]})).unwrap();
        results::write_json(&run_dir.join("summary.json"), &s).unwrap();
    }
    results::write_json(&dir.join("manifest.json"), &serde_json::json!({"status": "complete", "trial": {"spec": {"name": "crafted"}, "sha256": "ab"}, "ended_at": "2026-11-27T00:00:00Z"})).unwrap();
}
