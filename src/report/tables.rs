//! The report's tables, first thing after the verdict: one summary per task (every load step,
//! the session before its requests), then failures, store counts, infrastructure, the generator
//! and the error logs. The same rows feed `report.md` and the terminal.

use serde::Serialize;
use serde_json::Value;

use super::charts::endpoint_label;
use super::data::{read_cloud, ReportData};
pub use super::format::fmt_ms;
use super::format::pct;
use super::stats::{mean_ci, LEVEL};
use crate::results::cells::Kind;
use crate::results::RunSummary;

/// A table: a title, a header, rows of cells.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    /// Title.
    pub title: String,
    /// What it shows, in a sentence.
    pub note: String,
    /// Column names.
    pub header: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<String>>,
}

/// One summary table per task: every run (load step or iteration) and, within it, the task's
/// session first, then its requests; steady figures (pooled percentiles, mean rate ± 95 % CI).
pub fn summary_tables(data: &ReportData) -> Vec<Table> {
    let mut out = Vec::new();
    for task in data.tasks() {
        let mut rows = Vec::new();
        for r in &data.runs {
            let mut eps: Vec<_> = r.endpoints.iter().filter(|e| e.task == task).collect();
            if eps.is_empty() {
                continue;
            }
            eps.sort_by_key(|e| e.kind != Kind::Task);
            for e in eps {
                let (mean, ci) = mean_ci(&e.samples.rps, LEVEL);
                let f = &e.steady;
                let failures_pct = if e.total.count == 0 {
                    0.0
                } else {
                    100.0 * e.total.failures as f64 / e.total.count as f64
                };
                rows.push(vec![
                    r.run_id.clone(),
                    r.load_label(),
                    endpoint_label(e),
                    e.total.count.to_string(),
                    format!("{failures_pct:.2}"),
                    // An interval needs two seconds at least.
                    if e.samples.rps.len() < 2 {
                        format!("{mean:.1} (one second)")
                    } else {
                        format!("{mean:.1} ± {ci:.1}")
                    },
                    fmt_ms(f.p50_ms),
                    fmt_ms(f.p95_ms),
                    fmt_ms(f.p99_ms),
                    fmt_ms(f.max_ms),
                    e.corrected
                        .as_ref()
                        .map(|c| fmt_ms(c.p95_ms))
                        .unwrap_or_else(|| "—".into()),
                    e.drain.count.to_string(),
                ]);
            }
        }
        out.push(Table {
            title: format!("Summary: {task}"),
            note: "Steady state: whole seconds after the warm-up (rates mean ± 95 % CI over them, Student's t allowing for correlation between seconds; percentiles pooled from their histograms, successes only). Requests and failures: the measured window. Corrected: p95 from the intended start (open model). Drain: completions after the deadline.".into(),
            header: [
                "run", "load", "endpoint", "requests", "failures %", "per second", "p50 ms",
                "p95 ms", "p99 ms", "max ms", "corrected p95 ms", "drain",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        });
    }
    out
}

/// Failures by cause.
pub fn failures_table(runs: &[RunSummary]) -> Table {
    Table {
        title: "Failures by cause".into(),
        note: "Grouped by endpoint, class and message.".into(),
        header: ["run", "endpoint", "class", "message", "count"]
            .map(String::from)
            .to_vec(),
        rows: runs
            .iter()
            .flat_map(|r| {
                r.failures.iter().map(move |f| {
                    vec![
                        r.run_id.clone(),
                        format!("{} {}", f.method, f.name),
                        f.class.clone(),
                        f.message.clone(),
                        f.count.to_string(),
                    ]
                })
            })
            .collect(),
    }
}

/// Store counts over the campaign.
pub fn stores_table(data: &ReportData) -> Table {
    Table {
        title: "Store counts".into(),
        note: "Rows per table when they were counted.".into(),
        header: ["when", "rows"].map(String::from).to_vec(),
        rows: data
            .stores
            .iter()
            .map(|s| {
                vec![
                    s.label.clone(),
                    s.counts
                        .iter()
                        .map(|(k, n)| format!("{k} {n}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            })
            .collect(),
    }
}

/// The auto-scaling groups before and after. After the restore, a desired capacity that
/// differs from the original on a group with a scaling policy is marked as the policy's.
pub fn infra_table(data: &ReportData) -> Table {
    let original = |name: &Value| {
        data.manifest["infra_original"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| &g["name"] == name)
            .map(|g| g["desired"].clone())
    };
    let rows = |key: &str| -> Vec<Vec<String>> {
        data.manifest[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let policy_moved = key == "infra_after"
                    && a["scaling_policies"]
                        .as_array()
                        .is_some_and(|p| !p.is_empty())
                    && original(&a["name"]).is_some_and(|d| d != a["desired"]);
                vec![
                    key.replace('_', " "),
                    a["name"].as_str().unwrap_or("").into(),
                    format!("{}", a["min"]),
                    format!("{}", a["max"]),
                    if policy_moved {
                        format!("{} (its scaling policy's)", a["desired"])
                    } else {
                        format!("{}", a["desired"])
                    },
                ]
            })
            .collect()
    };
    let mut all = rows("infra_original");
    all.extend(rows("infra_after"));
    Table {
        title: "Infrastructure".into(),
        note: "The groups as the undo journal recorded them before the first change, and after the restore. A group with a scaling policy sets its own desired capacity once the restore has put back its min and max: it may act at once on the load just run.".into(),
        header: ["when", "asg", "min", "max", "desired"]
            .map(String::from)
            .to_vec(),
        rows: all,
    }
}

/// A generator fleet's workers per run: each one's share, what it recorded, its own health,
/// and whether it finished (empty without a fleet).
pub fn workers_table(runs: &[RunSummary]) -> Table {
    let mut rows = Vec::new();
    for r in runs {
        for w in &r.workers {
            let g = &w.generator;
            let share = match (w.users, w.arrival_rate) {
                (Some(u), _) => format!("{u} users"),
                (None, Some(a)) => format!("{a}/s"),
                _ => String::new(),
            };
            rows.push(vec![
                r.run_id.clone(),
                w.name.clone(),
                share,
                w.requests.to_string(),
                w.failures.to_string(),
                format!("{:.0}", g.cpu_pct),
                format!("{:.0}", g.busy_pct),
                fmt_ms(g.timer_lag_p99_ms),
                if g.saturated {
                    "YES".into()
                } else {
                    "no".into()
                },
                w.late_s.map(|l| format!("{l:.2}")).unwrap_or_default(),
                match &w.message {
                    Some(m) => format!("{}: {m}", w.status),
                    None => w.status.clone(),
                },
            ]);
        }
    }
    Table {
        title: "Generator fleet".into(),
        note: "Each worker's share and what it recorded; the run's figures are their per-second \
               histograms added, never averaged percentiles. `late s`: how long after the \
               fleet's common start it began (its share was missing until then); a lost \
               worker's status ends with the last line of its log."
            .into(),
        header: [
            "run",
            "worker",
            "share",
            "requests",
            "failures",
            "CPU %",
            "busy %",
            "timer lag p99 ms",
            "saturated",
            "late s",
            "status",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// The generator's own health per run.
pub fn generator_table(runs: &[RunSummary]) -> Table {
    Table {
        title: "Load generator".into(),
        note:
            "The engine's own threads: the CPU they got, the time they wanted a core (running or \
               waiting for one), and the lateness of a 100 ms timer on them."
                .into(),
        header: [
            "run",
            "threads",
            "CPU %",
            "busy %",
            "timer lag p99 ms",
            "check CPU µs/task",
            "saturated",
        ]
        .map(String::from)
        .to_vec(),
        rows: runs
            .iter()
            .map(|r| {
                let g = &r.generator;
                vec![
                    r.run_id.clone(),
                    g.threads.to_string(),
                    format!("{:.0}", g.cpu_pct),
                    format!("{:.0}", g.busy_pct),
                    fmt_ms(g.timer_lag_p99_ms),
                    format!("{:.0}", g.check_cpu_us_per_task),
                    if g.saturated {
                        "YES: results may understate the target".into()
                    } else {
                        "no".into()
                    },
                ]
            })
            .collect(),
    }
}

/// Error-log lines per pattern and minute, with the first lines of each.
pub fn error_logs_table(data: &ReportData) -> Table {
    let mut rows = Vec::new();
    for r in &data.runs {
        let cloud = read_cloud(&data.dir.run_dir(&r.run_id));
        let (from, to) = super::data::run_span(r);
        for log in &cloud.logs {
            let super::data::ErrorLog {
                group,
                pattern,
                per_minute: minutes,
                samples,
                ..
            } = log;
            let per_minute: Vec<String> = minutes
                .iter()
                .map(|(t, n)| {
                    let at = chrono::DateTime::from_timestamp(*t as i64, 0)
                        .map(|d| d.format("%H:%M").to_string())
                        .unwrap_or_default();
                    format!("{at} {n}")
                })
                .collect();
            rows.push(vec![
                r.run_id.clone(),
                group.clone(),
                pattern.clone(),
                log.lines_within(from, to).to_string(),
                per_minute.join(", "),
                samples.first().cloned().unwrap_or_default(),
            ]);
        }
    }
    Table {
        title: "Error logs".into(),
        note:
            "Lines matching the seed campaign's failure causes: during the run (its drain included), per minute of the window pulled around it (a minute of context each side), and the first of them."
                .into(),
        header: [
            "run",
            "log group",
            "pattern",
            "lines in the run",
            "per minute around it",
            "first line",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// Cloud metrics that could not be pulled.
pub fn missing_table(data: &ReportData) -> Table {
    Table {
        title: "Missing cloud metrics".into(),
        note: "These windows could not be pulled; `trialrunner report DIR --refresh-metrics` tries again.".into(),
        header: ["run", "why"].map(String::from).to_vec(),
        rows: data
            .runs
            .iter()
            .filter_map(|r| {
                read_cloud(&data.dir.run_dir(&r.run_id))
                    .error
                    .map(|e| vec![r.run_id.clone(), e])
            })
            .collect(),
    }
}

/// Compared endpoints: baseline, contender and the change of each figure, with its significance.
pub fn delta_table(title: &str, deltas: &[super::compare::EndpointDelta]) -> Table {
    let pair = |b: f64, c: f64| format!("{} → {} ({})", fmt_ms(b), fmt_ms(c), pct(b, c));
    Table {
        title: title.into(),
        note: format!("Baseline → contender (change) per figure. A step's row: its changes tested on its own seconds. An endpoint's row over all matched runs: figures pooled, and each figure's verdicts at the steps counted, never averaged into one. {}", super::stats::METHOD),
        header: [
            "run", "load", "endpoint", "per second", "p50 ms", "p95 ms", "p99 ms",
            "corrected p95 ms", "failures %", "significance",
        ]
        .map(String::from)
        .to_vec(),
        rows: deltas
            .iter()
            .map(|d| {
                let (b, c) = (&d.base, &d.contender);
                vec![
                    d.run.clone(),
                    d.load.clone(),
                    d.endpoint.clone(),
                    pair(b.rps, c.rps),
                    pair(b.p50, c.p50),
                    pair(b.p95, c.p95),
                    pair(b.p99, c.p99),
                    match (b.corrected_p95, c.corrected_p95) {
                        (Some(x), Some(y)) => pair(x, y),
                        _ => "—".into(),
                    },
                    format!("{:.2} → {:.2}", b.failure_rate, c.failure_rate),
                    d.note.clone(),
                ]
            })
            .collect(),
    }
}

/// The end-of-run summary for a terminal (80 columns): per task, every run's endpoints with
/// requests, failures, rate and percentiles.
pub fn terminal_summary(data: &ReportData) -> String {
    let mut s = String::new();
    for t in summary_tables(data) {
        if !t.rows.is_empty() {
            s.push('\n');
            s.push_str(&text(&t, &[0, 2, 3, 4, 5, 7, 8]));
        }
    }
    let failures = failures_table(&data.runs);
    if !failures.rows.is_empty() {
        s.push('\n');
        s.push_str(&text(&failures, &[0, 1, 3, 4]));
    }
    s
}

/// A table as Markdown.
pub fn markdown(t: &Table) -> String {
    let mut s = format!(
        "## {}\n\n{}\n\n| {} |\n|{}\n",
        t.title,
        t.note,
        t.header.join(" | "),
        "---|".repeat(t.header.len())
    );
    for r in &t.rows {
        let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
        s.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    s.push('\n');
    s
}

/// A table as fixed-width text for a terminal of 80 columns or more (cells cut to fit).
pub fn text(t: &Table, columns: &[usize]) -> String {
    let widths: Vec<usize> = columns
        .iter()
        .map(|&c| {
            t.rows
                .iter()
                .map(|r| r.get(c).map(|x| x.chars().count()).unwrap_or(0))
                .chain([t.header[c].chars().count()])
                .max()
                .unwrap_or(0)
                .min(30)
        })
        .collect();
    let line = |cells: &[String]| -> String {
        columns
            .iter()
            .zip(&widths)
            .map(|(&c, &w)| {
                let v: String = cells
                    .get(c)
                    .map(|x| x.chars().take(w).collect())
                    .unwrap_or_default();
                format!("{v:<w$}")
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut s = format!("{}\n{}\n", t.title, line(&t.header));
    for r in &t.rows {
        s.push_str(&line(r));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A results directory whose manifest holds `after` as the groups after the restore.
    fn infra_rows(after: Value) -> Vec<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("runs")).unwrap();
        let manifest = serde_json::json!({
            "infra_original": [
                {"name": "a-asg", "min": 1, "max": 3, "desired": 1},
                {"name": "b-asg", "min": 1, "max": 3, "desired": 1},
            ],
            "infra_after": after,
        });
        std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).unwrap();
        infra_table(&ReportData::read(dir.path()).unwrap()).rows
    }

    #[test]
    fn a_desired_capacity_its_policy_moved_after_the_restore_says_so() {
        let rows = infra_rows(serde_json::json!([
            {"name": "a-asg", "min": 1, "max": 3, "desired": 2, "scaling_policies": ["cpu60"]},
            {"name": "b-asg", "min": 1, "max": 3, "desired": 2, "scaling_policies": []},
        ]));
        let desired = |name: &str| {
            rows.iter()
                .find(|r| r[0] == "infra after" && r[1] == name)
                .unwrap()[4]
                .clone()
        };
        assert_eq!(desired("a-asg"), "2 (its scaling policy's)");
        // No policy: a plain 2, which the reader compares with the original 1.
        assert_eq!(desired("b-asg"), "2");
        let same = infra_rows(serde_json::json!([
            {"name": "a-asg", "min": 1, "max": 3, "desired": 1, "scaling_policies": ["cpu60"]},
        ]));
        assert_eq!(same[2][4], "1");
    }
}
