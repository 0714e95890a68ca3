//! What a report reads from a results directory: the run summaries, store counts and manifest
//! (read once, in [`ReportData`]), and readers of each run's timeline, latency log, cloud series,
//! infra samples and spin-up timeline, called by the chart or table that needs them (a run's
//! cloud file is read by more than one; a 42-run report still builds in about 0.15 s). Readers
//! tolerate missing files (a run interrupted early has fewer).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::results::{self, ResultsDir, RunSummary, StoreSnapshot};

pub use crate::results::csv::{read_timeline, split_csv, TimelineRecord as TimelineRow};

/// The twin's own view of a run (`rehearsal.json`, written by a rehearsal), if there is one.
pub fn read_twin(dir: &Path) -> Option<crate::results::twin::TwinObservations> {
    results::read_json(&dir.join("rehearsal.json")).ok()
}

/// A cloud series' legend name: its metric and the resource it is of, short
/// (`UnHealthyHostCount verif-tg`, not the target group's ARN). Labels read
/// `NAMESPACE METRIC RESOURCE… STATISTIC`.
pub fn short_label(label: &str, metric: &str) -> String {
    let words: Vec<&str> = label.split_whitespace().collect();
    let resource = words
        .iter()
        .position(|w| *w == metric)
        .and_then(|i| words.get(i + 1..words.len().saturating_sub(1)))
        .and_then(|dims| dims.first())
        .map(|v| {
            // targetgroup/NAME/hash, app/NAME/hash: the name; the deployment's prefix dropped.
            let parts: Vec<&str> = v.split('/').collect();
            let name = if parts.len() >= 3 { parts[1] } else { v };
            match name.split_once('-') {
                Some((_, rest)) if name.matches('-').count() >= 2 => rest.to_string(),
                _ => name.to_string(),
            }
        });
    // Metrics that do not name their service say it (`RDS CPUUtilization`); the
    // load balancer's and the groups' names already do.
    let service = words
        .first()
        .and_then(|ns| ns.rsplit('/').next())
        .filter(|ns| !matches!(*ns, "AutoScaling" | "ApplicationELB") && *ns != metric);
    let metric = match service {
        Some(ns) if !metric.is_empty() => format!("{ns} {metric}"),
        _ => metric.to_string(),
    };
    match resource {
        Some(r) if !metric.is_empty() => format!("{metric} {r}"),
        _ if !metric.is_empty() => metric,
        _ => label.to_string(),
    }
}

/// Reads a JSON-lines file.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The per-second histograms of a run's `latency.hlog`: (tag, Unix second, histogram), request
/// endpoints' latency only (not tasks, not the requests' phases).
pub fn hlog_seconds(path: &Path) -> Vec<(String, f64, hdrhistogram::Histogram<u64>)> {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let mut base = 0.0;
    let mut out = Vec::new();
    for entry in IntervalLogIterator::new(&bytes).flatten() {
        match entry {
            LogEntry::BaseTime(b) => base = b.as_secs_f64(),
            LogEntry::Interval(i) => {
                let tag = i.tag().map(|t| t.as_str().to_string()).unwrap_or_default();
                if tag.starts_with("TASK:") || tag.contains(";phase=") {
                    continue;
                }
                let Some(h) = crate::results::cells::decode(i.encoded_histogram()) else {
                    continue;
                };
                out.push((tag, base + i.start_timestamp().as_secs_f64(), h));
            }
            _ => {}
        }
    }
    out
}

/// A CloudWatch series of a run, on the generator's clock.
#[derive(Debug, Clone)]
pub struct CloudSeries {
    /// Its label (namespace, metric, dimensions, statistic; "(emulator)" from a rehearsal).
    pub label: String,
    /// The metric's name.
    pub metric: String,
    /// Period start (Unix seconds) and value.
    pub points: Vec<(f64, f64)>,
    /// The period, s.
    pub period: f64,
}

/// Lines of a log group matching one pattern.
#[derive(Debug, Clone, Default)]
pub struct ErrorLog {
    /// The log group.
    pub group: String,
    /// The pattern.
    pub pattern: String,
    /// (minute start, lines) on the generator's clock.
    pub per_minute: Vec<(f64, u64)>,
    /// (second start, lines) on the generator's clock (empty in results from before they were
    /// kept).
    pub per_second: Vec<(f64, u64)>,
    /// The first matching lines.
    pub samples: Vec<String>,
}

impl ErrorLog {
    /// Lines in `[from, to)` on the generator's clock: by second, or (results from before the
    /// seconds were kept) by the minutes that overlap it.
    pub fn lines_within(&self, from: f64, to: f64) -> u64 {
        let (buckets, width) = if self.per_second.is_empty() {
            (&self.per_minute, 60.0)
        } else {
            (&self.per_second, 1.0)
        };
        buckets
            .iter()
            .filter(|(t, _)| *t + width > from && *t < to)
            .map(|(_, n)| n)
            .sum()
    }
}

/// The span of a run whose lines are its own: start to the end of its drain.
pub fn run_span(run: &RunSummary) -> (f64, f64) {
    let drain = run
        .endpoints
        .iter()
        .map(|e| e.drain.seconds)
        .fold(0.0, f64::max);
    (run.started_unix, run.started_unix + run.duration_s + drain)
}

/// Cloud figures of a run: its series, error-log counts, and why they are missing if they are.
#[derive(Debug, Clone, Default)]
pub struct Cloud {
    /// The series.
    pub series: Vec<CloudSeries>,
    /// Error-log counts per pattern.
    pub logs: Vec<ErrorLog>,
    /// Why the pull failed, if it did.
    pub error: Option<String>,
    /// Series from an emulator.
    pub synthetic: bool,
}

/// Reads a run's `cloudwatch.json`.
pub fn read_cloud(dir: &Path) -> Cloud {
    let cw: Value = results::read_json(&dir.join("cloudwatch.json")).unwrap_or(Value::Null);
    let synthetic = cw["synthetic"].as_bool() == Some(true);
    let period = cw["period_s"].as_f64().unwrap_or(60.0);
    let series = cw["series"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let mut label = s["label"].as_str()?.to_string();
            if synthetic {
                label.push_str(" (emulator)");
            }
            Some(CloudSeries {
                label,
                metric: s["metric"].as_str().unwrap_or("").to_string(),
                points: s["points"]
                    .as_array()?
                    .iter()
                    .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                    .collect(),
                period,
            })
        })
        .collect();
    let logs = cw["logs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let minutes = l["per_minute"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| Some((p[0].as_f64()?, p[1].as_u64()?)))
                        .collect()
                })
                .or_else(|| {
                    l["per_minute"].as_object().map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_u64()?)))
                            .collect()
                    })
                })
                .unwrap_or_default();
            let per_second = l["per_second"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| Some((p[0].as_f64()?, p[1].as_u64()?)))
                .collect();
            let samples = l["samples"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect();
            ErrorLog {
                group: l["log_group"].as_str().unwrap_or("").to_string(),
                pattern: l["pattern"].as_str().unwrap_or("").to_string(),
                per_minute: minutes,
                per_second,
                samples,
            }
        })
        .collect();
    Cloud {
        series,
        logs,
        error: cw["error"].as_str().map(str::to_string),
        synthetic,
    }
}

/// One instance's life as the samples and the spin-up timeline saw it.
#[derive(Debug, Clone, Default)]
pub struct InstanceLife {
    /// Instance id.
    pub id: String,
    /// Its group.
    pub group: String,
    /// The service its group runs, as the samples name it (empty in older results).
    pub service: String,
    /// Launched (EC2 launch time).
    pub launched: Option<f64>,
    /// First sampled.
    pub first_seen: Option<f64>,
    /// First seen InService.
    pub in_service: Option<f64>,
    /// First seen with a healthy target.
    pub healthy: Option<f64>,
    /// Last seen.
    pub last_seen: f64,
    /// Gone before the last sample (terminated or replaced).
    pub gone: bool,
}

/// Every instance a run's infra samples and spin-up timeline saw.
pub fn instance_lives(dir: &Path) -> Vec<InstanceLife> {
    let samples = read_jsonl(&dir.join("infra.jsonl"));
    let scaling: Value = results::read_json(&dir.join("scaling.json")).unwrap_or(Value::Null);
    let mut lives: BTreeMap<String, InstanceLife> = BTreeMap::new();
    let last_t = samples
        .last()
        .and_then(|s| s["unix"].as_f64())
        .unwrap_or(0.0);
    for s in &samples {
        let t = s["unix"].as_f64().unwrap_or(0.0);
        for g in s["groups"].as_array().into_iter().flatten() {
            let group = g["asg"].as_str().unwrap_or("").to_string();
            let service = g["service"].as_str().unwrap_or("").to_string();
            for i in g["instances"].as_array().into_iter().flatten() {
                let id = i["id"].as_str().unwrap_or("?").to_string();
                let life = lives.entry(id.clone()).or_insert_with(|| InstanceLife {
                    id,
                    group: group.clone(),
                    service: service.clone(),
                    first_seen: Some(t),
                    ..Default::default()
                });
                life.last_seen = t;
                if i["lifecycle"] == "InService" && life.in_service.is_none() {
                    life.in_service = Some(t);
                }
            }
            for tg in g["targets"].as_array().into_iter().flatten() {
                if tg["state"] == "healthy" {
                    if let Some(life) = tg["id"].as_str().and_then(|id| lives.get_mut(id)) {
                        life.healthy.get_or_insert(t);
                    }
                }
            }
        }
    }
    for i in scaling["instances"].as_array().into_iter().flatten() {
        if let (Some(id), Some(t)) = (i["id"].as_str(), i["launch_time"].as_f64()) {
            if let Some(life) = lives.get_mut(id) {
                life.launched = Some(t);
            }
        }
    }
    for life in lives.values_mut() {
        life.gone = life.last_seen + 1e-9 < last_t;
    }
    lives.into_values().collect()
}

/// Everything a report of one results directory reads.
pub struct ReportData {
    /// The directory.
    pub dir: ResultsDir,
    /// Completed (and interrupted) runs, in start order.
    pub runs: Vec<RunSummary>,
    /// Store counts.
    pub stores: Vec<StoreSnapshot>,
    /// The manifest.
    pub manifest: Value,
}

impl ReportData {
    /// Reads a results directory.
    pub fn read(dir: &Path) -> crate::Result<ReportData> {
        let rd = ResultsDir::open(dir)?;
        let runs = rd.summaries()?;
        let stores = results::read_json(&rd.root.join("stores.json")).unwrap_or_default();
        let manifest = results::read_json(&rd.root.join("manifest.json")).unwrap_or(Value::Null);
        Ok(ReportData {
            dir: rd,
            runs,
            stores,
            manifest,
        })
    }

    /// The trial's name.
    pub fn trial(&self) -> String {
        self.manifest["trial"]["spec"]["name"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                self.dir
                    .root
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("results")
                    .to_string()
            })
    }

    /// The variant of the trial these results ran under, if any.
    pub fn variant(&self) -> Option<String> {
        self.manifest["trial"]["spec"]["variant"]
            .as_str()
            .map(str::to_string)
    }

    /// The trial's name, with its variant when it ran under one (`warm-pool, variant warm`):
    /// what titles and comparisons call these results.
    pub fn label(&self) -> String {
        match self.variant() {
            Some(v) => format!("{}, variant {v}", self.trial()),
            None => self.trial(),
        }
    }

    /// The environment's name.
    pub fn environment(&self) -> String {
        self.manifest["environment"]["spec"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The tasks, in the order the runs show them.
    pub fn tasks(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.runs {
            for e in &r.endpoints {
                if !out.contains(&e.task) && e.task != "auth" {
                    out.push(e.task.clone());
                }
            }
        }
        out
    }
}

/// Instances that became InService during a run, after its first infra sample: (id, seconds
/// since `start`). Instances already in service when sampling began did not join.
pub fn joins(lives: &[InstanceLife], start: f64) -> Vec<(String, f64)> {
    let first = lives
        .iter()
        .filter_map(|l| l.first_seen)
        .fold(f64::INFINITY, f64::min);
    lives
        .iter()
        .filter_map(|l| Some((l, l.in_service?)))
        .filter(|(_, t)| *t > first)
        .map(|(l, t)| (l.id.clone(), t - start))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_series_are_named_by_metric_and_resource() {
        let tg = "AWS/ApplicationELB UnHealthyHostCount targetgroup/veraison-verif-tg/0a83 app/veraison-svc-lb/5ff6 Average";
        assert_eq!(
            short_label(tg, "UnHealthyHostCount"),
            "UnHealthyHostCount verif-tg"
        );
        let asg = "AWS/AutoScaling GroupInServiceInstances veraison-prov-asg Average";
        assert_eq!(
            short_label(asg, "GroupInServiceInstances"),
            "GroupInServiceInstances prov-asg"
        );
        assert_eq!(
            short_label("AWS/RDS CPUUtilization Average", "CPUUtilization"),
            "RDS CPUUtilization"
        );
        let db = "AWS/RDS DatabaseConnections veraison-support-rds Maximum";
        assert_eq!(
            short_label(db, "DatabaseConnections"),
            "RDS DatabaseConnections support-rds"
        );
    }

    #[test]
    fn a_runs_error_lines_are_its_own_seconds_not_its_padded_windows() {
        // A run over [1000.5, 1003.5): lines before it, during it and after it, in one minute.
        let log = ErrorLog {
            per_minute: vec![(960.0, 9)],
            per_second: vec![
                (995.0, 2),
                (1000.0, 1),
                (1002.0, 3),
                (1003.0, 1),
                (1010.0, 2),
            ],
            ..Default::default()
        };
        assert_eq!(log.lines_within(1000.5, 1003.5), 5);
        // Results from before the seconds were kept: the minutes the run overlaps.
        let minutes_only = ErrorLog {
            per_minute: vec![(900.0, 4), (960.0, 9), (1020.0, 6)],
            ..Default::default()
        };
        assert_eq!(minutes_only.lines_within(1000.5, 1003.5), 9);
    }
}
