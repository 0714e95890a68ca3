//! Results directories with known contents, for report and compare tests and the report
//! benchmark: a Trial 1/2/3/4 set shaped like the 2025 campaign (user steps, one instance
//! against three, store weight over iterations, an instance joining and another leaving).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde_json::json;
use trialrunner::load::aggregate::{encode, figures as figures_of};
use trialrunner::load::recorder::Kind;
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
        kind: if method == "TASK" {
            Kind::Task
        } else {
            Kind::Request
        },
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

/// A crafted campaign's shape.
#[derive(Debug, Clone)]
pub struct Crafted {
    /// Trial name.
    pub name: String,
    /// The trial it compares itself with.
    pub compare_with: Option<String>,
    /// User steps.
    pub users: Vec<u32>,
    /// Iterations (store weight: each slower than the last).
    pub iterations: u32,
    /// Seconds per run.
    pub seconds: usize,
    /// Latency scale.
    pub slow: f64,
    /// Instances come and go during the runs, with cloud series and error logs.
    pub scaling: bool,
    /// The provision task too.
    pub provision: bool,
    /// Campaign end (RFC 3339), also the first run's start day.
    pub ended_at: String,
    /// Trial thresholds.
    pub thresholds: Vec<String>,
}

impl Default for Crafted {
    fn default() -> Crafted {
        Crafted {
            name: "crafted".into(),
            compare_with: None,
            users: vec![2, 10],
            iterations: 1,
            seconds: 60,
            slow: 1.0,
            scaling: false,
            provision: false,
            ended_at: "2026-11-27T00:00:00Z".into(),
            thresholds: vec![],
        }
    }
}

/// Rows the stores hold after `iteration` iterations.
pub fn rows_after(iteration: u32) -> u64 {
    iteration as u64 * 5000
}

impl Crafted {
    /// Verify's session p95 at this load and iteration, ms.
    pub fn session_p95(&self, users: u32, iteration: u32) -> f64 {
        (120.0 + users as f64) * self.slow * (1.0 + 0.5 * (iteration - 1) as f64)
    }

    fn run(&self, run_id: &str, users: u32, iteration: u32, started: f64) -> RunSummary {
        let s = self.seconds;
        let rate = 10.0 * users as f64;
        let weight = 1.0 + 0.5 * (iteration - 1) as f64;
        let mut eps = vec![
            endpoint(
                "TASK",
                "verification session",
                "verify",
                rate,
                self.session_p95(users, iteration),
                (users / 10) as u64,
                s,
            ),
            endpoint(
                "POST",
                "/challenge-response/v1/newSession?nonce=[NONCE]",
                "verify",
                rate,
                0.4 * self.slow,
                0,
                s,
            ),
            endpoint(
                "POST",
                "/challenge-response/v1/[SESSION_ID]",
                "verify",
                rate,
                (100.0 + users as f64) * self.slow * weight,
                (users / 10) as u64,
                s,
            ),
            endpoint(
                "DELETE",
                "/challenge-response/v1/[SESSION_ID]",
                "verify",
                rate,
                0.3 * self.slow,
                0,
                s,
            ),
        ];
        if self.provision {
            eps.push(endpoint(
                "TASK",
                "provisioning",
                "provision",
                rate / 2.0,
                40.0 * self.slow,
                0,
                s,
            ));
            eps.push(endpoint(
                "POST",
                "/endorsement-provisioning/v1/submit",
                "provision",
                rate / 2.0,
                40.0 * self.slow,
                0,
                s,
            ));
        }
        RunSummary {
            run_id: run_id.into(),
            iteration,
            users: Some(users),
            tasks: eps
                .iter()
                .map(|e| e.task.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            started_unix: started,
            duration_s: s as f64,
            steady_s: s as f64 - 10.0,
            warmup_s: 10.0,
            endpoints: eps,
            ..Default::default()
        }
    }

    fn timeline(&self, r: &RunSummary) -> String {
        let mut timeline = String::from(results::csv::TIMELINE_HEADER);
        let users = r.users.unwrap_or(0);
        for sec in 0..self.seconds {
            for e in r.endpoints.iter().filter(|e| e.kind == Kind::Request) {
                timeline.push_str(&format!(
                    "{},{sec}.000,1.000,{},{},{},request,{users},{:.0},{},0,{:.3},,{:.3},,,,,\n",
                    r.started_unix as i64 + sec as i64,
                    if sec < 10 { "warmup" } else { "steady" },
                    e.method,
                    results::csv::field(&e.name),
                    e.samples.rps[sec],
                    e.samples.failures[sec],
                    e.steady.p50_ms,
                    e.samples.p95_ms[sec],
                ));
            }
        }
        timeline
    }

    /// Instance `i-b` launches a quarter in, is InService a third in and healthy at 40 %;
    /// `i-c` is there at the start and terminated at 60 %.
    fn infra(&self, started: f64) -> String {
        let s = self.seconds as f64;
        let mut infra = String::new();
        for sec in (0..self.seconds).step_by(5) {
            let t = sec as f64;
            let mut instances =
                vec![json!({"id": "i-a", "lifecycle": "InService", "health": "Healthy"})];
            let mut targets = vec![json!({"id": "i-a", "state": "healthy"})];
            if t >= s / 4.0 {
                let state = if t >= s / 3.0 { "InService" } else { "Pending" };
                instances.push(json!({"id": "i-b", "lifecycle": state, "health": "Healthy"}));
                if t >= 0.4 * s {
                    targets.push(json!({"id": "i-b", "state": "healthy"}));
                } else if t >= s / 3.0 {
                    targets.push(json!({"id": "i-b", "state": "initial"}));
                }
            }
            if t < 0.6 * s {
                instances.push(json!({"id": "i-c", "lifecycle": "InService", "health": "Healthy"}));
                targets.push(json!({"id": "i-c", "state": "healthy"}));
            }
            infra.push_str(&format!(
                "{}\n",
                json!({"unix": started + t, "groups": [{"asg": "veraison-verif-asg", "desired": instances.len(), "instances": instances, "targets": targets}]})
            ));
        }
        infra
    }

    /// DB connections, healthy hosts and CPU per minute; error-log lines.
    fn cloud(&self, started: f64, users: u32) -> serde_json::Value {
        let minutes: Vec<f64> = (0..=(self.seconds / 60))
            .map(|m| (started / 60.0).floor() * 60.0 + 60.0 * m as f64)
            .collect();
        let series = |metric: &str, label: &str, value: &dyn Fn(usize) -> f64| {
            json!({"id": metric, "label": label, "namespace": "AWS/X", "metric": metric, "dimensions": {}, "stat": "Average",
                   "points": minutes.iter().enumerate().map(|(i, t)| json!([t, value(i)])).collect::<Vec<_>>()})
        };
        json!({
            "window": {"from": started, "to": started + self.seconds as f64},
            "period_s": 60,
            "synthetic": false,
            "series": [
                series("DatabaseConnections", "RDS DatabaseConnections", &|i| (users * 2 + i as u32) as f64),
                series("HealthyHostCount", "ALB HealthyHostCount", &|i| 1.0 + i as f64),
                series("CPUUtilization", "RDS CPUUtilization %", &|i| 20.0 + 5.0 * i as f64),
            ],
            "logs": [{"log_group": "veraison-vts", "pattern": "too many clients", "total": 3,
                      "per_minute": [[minutes[0], 3]], "samples": ["FATAL: sorry, too many clients already"]}],
        })
    }

    /// Writes the results directory.
    pub fn write(&self, dir: &Path) {
        results::ResultsDir::create(dir).unwrap();
        let day = chrono::DateTime::parse_from_rfc3339(&self.ended_at)
            .unwrap()
            .timestamp() as f64;
        let mut started = day - 86_400.0;
        let mut stores = vec![
            json!({"label": "before clear", "unix": started, "run_id": null, "counts": {"endorsements": 123}}),
            json!({"label": "after clear", "unix": started, "run_id": null, "counts": {"endorsements": 0}}),
        ];
        for it in 1..=self.iterations {
            for u in &self.users {
                let run_id = if self.iterations > 1 {
                    format!("it{it}-u{u:03}-verify")
                } else {
                    format!("u{u:03}-verify")
                };
                let run_dir = dir.join("runs").join(&run_id);
                std::fs::create_dir_all(&run_dir).unwrap();
                let s = self.run(&run_id, *u, it, started);
                std::fs::write(run_dir.join("timeline.csv"), self.timeline(&s)).unwrap();
                if self.iterations > 1 {
                    stores.push(json!({"label": format!("before {run_id}"), "unix": started, "run_id": run_id, "counts": {"endorsements": rows_after(it - 1)}}));
                }
                if self.scaling {
                    std::fs::write(run_dir.join("infra.jsonl"), self.infra(started)).unwrap();
                    results::write_json(&run_dir.join("scaling.json"), &json!({"activities": [], "instances": [{"id": "i-b", "launch_time": started + self.seconds as f64 / 4.0}]})).unwrap();
                    results::write_json(&run_dir.join("cloudwatch.json"), &self.cloud(started, *u))
                        .unwrap();
                }
                results::write_json(&run_dir.join("summary.json"), &s).unwrap();
                started += self.seconds as f64 + 10.0;
            }
            if self.iterations > 1 {
                stores.push(json!({"label": format!("after iteration {it}"), "unix": started, "run_id": null, "counts": {"endorsements": rows_after(it)}}));
            }
        }
        results::write_json(&dir.join("stores.json"), &stores).unwrap();
        let mut spec = json!({"name": self.name, "thresholds": self.thresholds});
        if let Some(c) = &self.compare_with {
            spec["compare-with"] = json!(c);
        }
        results::write_json(
            &dir.join("manifest.json"),
            &json!({"status": "complete", "trial": {"spec": spec, "sha256": "ab"}, "environment": {"spec": {"name": "crafted-env"}, "sha256": "cd"}, "started_at": self.ended_at, "ended_at": self.ended_at}),
        )
        .unwrap();
    }
}

/// Writes a results dir with one run per user count, verify's p95 scaled by `slow`.
pub fn write_results(dir: &Path, users: &[u32], seconds: usize, slow: f64) {
    Crafted {
        users: users.to_vec(),
        seconds,
        slow,
        scaling: true,
        ..Default::default()
    }
    .write(dir);
}

/// The 2025 campaign's four trials under `root` (one results root): Trial 1 (three instances,
/// user steps), Trial 2 (one instance, slower, compared with Trial 1), Trial 3 (store weight,
/// three iterations), Trial 4 (auto-scaling). Returns their directories in that order.
pub fn campaign(root: &Path, steps: &[u32]) -> [PathBuf; 4] {
    let dirs = ["trial-1", "trial-2", "trial-3", "trial-4"].map(|d| root.join(d));
    Crafted {
        name: "users-pinned-3".into(),
        users: steps.to_vec(),
        provision: true,
        ended_at: "2026-11-20T00:00:00Z".into(),
        ..Default::default()
    }
    .write(&dirs[0]);
    Crafted {
        name: "users-pinned-1".into(),
        compare_with: Some("users-pinned-3".into()),
        users: steps.to_vec(),
        provision: true,
        slow: 2.9,
        ended_at: "2026-11-21T00:00:00Z".into(),
        thresholds: vec!["verify p95 +10%".into(), "verify failure-rate < 5%".into()],
        ..Default::default()
    }
    .write(&dirs[1]);
    Crafted {
        name: "store-weight".into(),
        users: vec![10],
        iterations: 3,
        ended_at: "2026-11-22T00:00:00Z".into(),
        ..Default::default()
    }
    .write(&dirs[2]);
    Crafted {
        name: "autoscaling".into(),
        users: vec![10, 40],
        seconds: 120,
        scaling: true,
        ended_at: "2026-11-23T00:00:00Z".into(),
        ..Default::default()
    }
    .write(&dirs[3]);
    dirs
}
