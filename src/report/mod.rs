//! Analysis and presentation of a results directory: `report.html` (self-contained: inline SVG
//! with values on hover, no network) and `report.md` with the same tables and findings.
//!
//! A report reads top-down as a performance engineer asks: header (what ran, where, how it
//! ended, whether the generator kept up) → verdict (thresholds ✓/✗, findings) → one summary
//! table per task → charts per question → per-run detail, collapsed. Its pieces: [`data`] reads
//! the files once, [`tables`] and [`charts`] turn them into rows and SVG ([`svg`]), [`correlate`]
//! finds what the client and the cloud share, [`compare`] and [`thresholds`] judge a run against
//! a baseline with the tests of [`stats`] (every interval and verdict). The same page template
//! renders `compare --html`.

pub mod autoscaling;
pub mod charts;
pub mod compare;
pub mod correlate;
pub mod data;
pub mod distribution;
pub mod findings;
pub mod format;
pub mod stats;
pub mod svg;
pub mod tables;
pub mod timeline;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::results::cells::Kind;
use crate::results::{self, ResultsDir, RunSummary};
use crate::trial::thresholds;
use compare::{Check, Comparison};
use data::{
    hlog_seconds, instance_lives, joins, read_cloud, read_jsonl, read_timeline, ReportData,
};
use tables::Table;

/// The page template, embedded so the binary needs nothing beside it.
pub const TEMPLATE: &str = include_str!("../../templates/report.html.j2");

/// The gate's outcome, kept beside the results so a rebuilt report shows what the run decided.
pub const CHECKS_FILE: &str = "checks.json";

/// A titled group of charts and tables; per-run detail is collapsed.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Section {
    /// Heading.
    pub title: String,
    /// What it shows, in a sentence.
    pub note: String,
    /// Inline SVG charts.
    pub charts: Vec<String>,
    /// Tables after the charts.
    pub tables: Vec<Table>,
    /// Rendered inside a closed `<details>`.
    pub collapsed: bool,
}

/// What the verdict block says: threshold checks, errors in them, findings, warnings.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Verdict {
    /// ✓/✗ per threshold and endpoint.
    pub checks: Vec<Check>,
    /// Thresholds that could not be checked, and why.
    pub errors: Vec<String>,
    /// What correlation found.
    pub findings: Vec<String>,
    /// What makes the numbers less trustworthy (interrupted runs, a saturated generator,
    /// missing cloud metrics).
    pub warnings: Vec<String>,
}

/// One page: the report or a comparison.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Page {
    /// Title (also the `<h1>`).
    pub title: String,
    /// Header lines: (label, value).
    pub meta: Vec<(String, String)>,
    /// `complete`, `partial`, `interrupted`, `failed`, or empty.
    pub status: String,
    /// The verdict.
    pub verdict: Verdict,
    /// What opens the page after the verdict: the campaign on one time axis.
    pub overview: Vec<Section>,
    /// Summary tables (before the charts per question).
    pub tables: Vec<Table>,
    /// Chart sections, then collapsed detail.
    pub sections: Vec<Section>,
}

impl Page {
    /// Renders the page as self-contained HTML.
    pub fn html(&self) -> Result<String> {
        let mut env = minijinja::Environment::new();
        env.add_template("report.html", TEMPLATE)
            .map_err(|e| Error::Internal(format!("report template: {e}")))?;
        env.get_template("report.html")
            .and_then(|t| t.render(minijinja::context! { page => self }))
            .map_err(|e| Error::Internal(format!("rendering the report: {e}")))
    }

    /// The same content as Markdown: header, verdict, every table (charts left out).
    pub fn markdown(&self) -> String {
        let mut s = format!("# {}\n\n", self.title);
        for (k, v) in &self.meta {
            s.push_str(&format!("- **{k}**: {v}\n"));
        }
        s.push('\n');
        let v = &self.verdict;
        if !v.checks.is_empty() || !v.errors.is_empty() {
            s.push_str("## Thresholds\n\n```\n");
            s.push_str(&compare::checks_text(&v.checks));
            for e in &v.errors {
                s.push_str(&format!("✗ {e}\n"));
            }
            s.push_str("```\n\n");
        }
        for (title, items) in [("Warnings", &v.warnings), ("Findings", &v.findings)] {
            if !items.is_empty() {
                s.push_str(&format!("## {title}\n\n"));
                for f in items {
                    s.push_str(&format!("- {f}\n"));
                }
                s.push('\n');
            }
        }
        let detail = self.sections.iter().flat_map(|x| &x.tables);
        for t in self
            .tables
            .iter()
            .chain(detail)
            .filter(|t| !t.rows.is_empty())
        {
            s.push_str(&tables::markdown(t));
        }
        s
    }
}

/// The correlation of one run, from its files: DB connections per CloudWatch period beside the
/// client's pooled p95 for the same period; failures and p95 per whole second; instance joins.
pub fn correlate_run(rd: &ResultsDir, run: &RunSummary) -> correlate::Correlation {
    let dir = rd.run_dir(&run.run_id);
    // Whole seconds of requests only: a partial second is not a one-second sample.
    let rows: Vec<_> = read_timeline(&dir.join("timeline.csv"))
        .into_iter()
        .filter(|r| r.phase != "partial" && r.kind == "request")
        .collect();
    let n = rows
        .iter()
        .map(|r| r.second as usize + 1)
        .max()
        .unwrap_or(0);
    let mut p95 = vec![None::<f64>; n];
    let mut failures = vec![0.0; n];
    for r in &rows {
        let i = r.second as usize;
        if let Some(v) = r.p95 {
            p95[i] = Some(p95[i].map_or(v, |x: f64| x.max(v)));
        }
        failures[i] += r.failures;
    }
    let seconds = hlog_seconds(&dir.join("latency.hlog"));
    let (start, end) = (run.started_unix, run.started_unix + run.duration_s);
    let minutes: Vec<correlate::Minute> = read_cloud(&dir)
        .series
        .into_iter()
        .filter(|s| s.metric.contains("DatabaseConnections"))
        .flat_map(|s| s.points)
        .map(|(t, db)| {
            // The client's figure for the period, when the run covered half of it at least.
            let covered = (end.min(t + 60.0) - start.max(t)).max(0.0);
            correlate::Minute {
                t,
                db,
                p95: (covered >= 30.0).then(|| period_p95(&seconds, t)).flatten(),
            }
        })
        .collect();
    let joined = joins(&instance_lives(&dir), start);
    let mut c = correlate::correlate(minutes, &p95, &failures, run.warmup_s, &joined);
    c.p95_run = window_p95(&seconds, start.floor(), end.ceil());
    // The run's own lines, not the padded window's neighbours'.
    let (from, to) = data::run_span(run);
    for log in read_cloud(&dir).logs {
        *c.error_lines.entry(log.pattern.clone()).or_default() += log.lines_within(from, to);
    }
    c
}

/// The worst endpoint's p95 over `[t, t + 60)`, pooled from its per-second histograms.
fn period_p95(seconds: &[(String, f64, hdrhistogram::Histogram<u64>)], t: f64) -> Option<f64> {
    window_p95(seconds, t, t + 60.0)
}

/// The worst endpoint's p95 over `[from, to)`, pooled from its per-second histograms.
fn window_p95(
    seconds: &[(String, f64, hdrhistogram::Histogram<u64>)],
    from: f64,
    to: f64,
) -> Option<f64> {
    let mut per_tag: BTreeMap<&str, hdrhistogram::Histogram<u64>> = BTreeMap::new();
    for (tag, at, h) in seconds {
        if *at >= from && *at < to {
            per_tag
                .entry(tag)
                .or_insert_with(crate::results::cells::new_hist)
                .add(h)
                .expect("auto-resizing histograms merge");
        }
    }
    per_tag
        .values()
        .filter(|h| !h.is_empty())
        .map(|h| h.value_at_quantile(0.95) as f64 / 1000.0)
        .reduce(f64::max)
}

/// Correlates every run (writing each `correlation.json` and the trial's) and returns the
/// findings, run by run and across runs.
fn correlate_all(data: &ReportData) -> Result<Vec<String>> {
    let mut findings = Vec::new();
    let mut per_run = Vec::new();
    for r in &data.runs {
        let c = correlate_run(&data.dir, r);
        results::write_json(&data.dir.run_dir(&r.run_id).join("correlation.json"), &c)?;
        findings.extend(c.findings.iter().map(|f| format!("{}: {f}", r.run_id)));
        per_run.push((r.run_id.clone(), c));
    }
    let trial_level = correlate::across_runs(&per_run);
    results::write_json(&data.dir.root.join("correlation.json"), &trial_level)?;
    findings.extend(trial_level);
    Ok(findings)
}

/// The baseline a trial names with `compare-with`: the latest results of that trial in the same
/// results root that ended before this one did (so rebuilding an old report finds the same).
pub fn compare_with_baseline(data: &ReportData) -> Option<(String, PathBuf)> {
    let name = data.manifest["trial"]["spec"]["compare-with"].as_str()?;
    let ended = data.manifest["ended_at"].as_str().unwrap_or("~");
    let root = data.dir.root.parent()?;
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("runs").is_dir() && *p != data.dir.root)
        .filter_map(|p| {
            let m: Value = results::read_json(&p.join("manifest.json")).ok()?;
            let at = m["ended_at"].as_str()?.to_string();
            (m["trial"]["spec"]["name"] == name && at.as_str() <= ended).then_some((at, p))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| (name.to_string(), p))
}

/// The thresholds of the trial in a manifest.
fn trial_thresholds(manifest: &Value) -> Vec<thresholds::Threshold> {
    manifest["trial"]["spec"]["thresholds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| thresholds::Threshold::parse(t.as_str()?).ok())
        .collect()
}

/// What the gate decided, as `run` recorded it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct GateRecord {
    /// The baseline directory, if there was one.
    pub baseline: Option<PathBuf>,
    /// The checks.
    pub checks: Vec<Check>,
    /// Thresholds that could not be checked.
    pub errors: Vec<String>,
}

/// The gate of a results directory: `thresholds` against `baseline` (or alone, absolute bounds
/// only). Recorded in `checks.json`; an unusable threshold is an error.
pub fn gate(
    dir: &Path,
    list: &[thresholds::Threshold],
    baseline: Option<&Path>,
) -> Result<Comparison> {
    let outcome = match baseline {
        Some(b) => compare::compare(b, dir, list),
        None => compare::check_absolute(dir, list),
    };
    let record = GateRecord {
        baseline: baseline.map(Path::to_path_buf),
        checks: outcome
            .as_ref()
            .map(|c| c.checks.clone())
            .unwrap_or_default(),
        errors: outcome
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .into_iter()
            .collect(),
    };
    results::write_json(&dir.join(CHECKS_FILE), &record)?;
    outcome
}

/// The checks a report shows: the gate's record when `run` made one, else the trial's own
/// thresholds against its `compare-with` baseline (errors shown, not raised).
fn report_checks(data: &ReportData, baseline: Option<&(String, PathBuf)>) -> GateRecord {
    if let Ok(r) = results::read_json::<GateRecord>(&data.dir.root.join(CHECKS_FILE)) {
        return r;
    }
    let list = trial_thresholds(&data.manifest);
    if list.is_empty() {
        return GateRecord::default();
    }
    let base_runs = baseline.and_then(|(_, p)| ResultsDir::open(p).ok()?.summaries().ok());
    let outcome = match &base_runs {
        Some(b) => compare::compare_runs(b, &data.runs, &list, true),
        None => compare::compare_runs(&data.runs, &data.runs, &list, false),
    };
    match outcome {
        Ok(c) => GateRecord {
            baseline: baseline.map(|(_, p)| p.clone()),
            checks: c.checks,
            errors: Vec::new(),
        },
        Err(e) => GateRecord {
            errors: vec![e.to_string()],
            ..Default::default()
        },
    }
}

/// Warnings about the numbers: runs that did not complete, requests the target never answered,
/// a saturated generator, missing cloud metrics.
fn warnings(data: &ReportData) -> Vec<String> {
    let mut out = Vec::new();
    let status = data.manifest["status"].as_str().unwrap_or("");
    if !status.is_empty() && status != "complete" {
        let why = data.manifest["stopped_by"]
            .as_str()
            .map(|s| format!(" (stopped by {s})"))
            .unwrap_or_default();
        out.push(format!("the campaign is {status}{why}"));
    }
    for p in data.manifest["partial"].as_array().into_iter().flatten() {
        if let Some(p) = p.as_str() {
            out.push(format!("missing: {p}"));
        }
    }
    for r in &data.runs {
        if let Some(why) = &r.partial {
            out.push(format!("run {} is partial: {why}", r.run_id));
        }
        for w in &r.warnings {
            out.push(format!("run {}: {w}", r.run_id));
        }
    }
    for r in data.runs.iter().filter(|r| !r.unanswered.none()) {
        let u = &r.unanswered;
        let mut what = Vec::new();
        if u.timed_out > 0 {
            what.push(format!(
                "{} timed out (no answer within {})",
                u.timed_out,
                humantime::format_duration(std::time::Duration::from_secs_f64(u.request_timeout_s))
            ));
        }
        if u.at_stop > 0 {
            what.push(format!("{} still waiting when it stopped", u.at_stop));
        }
        out.push(format!(
            "run {}: requests without an answer: {}",
            r.run_id,
            what.join(", ")
        ));
    }
    let saturated: Vec<&str> = data
        .runs
        .iter()
        .filter(|r| r.generator.saturated)
        .map(|r| r.run_id.as_str())
        .collect();
    if !saturated.is_empty() {
        out.push(format!(
            "the load generator was saturated in {} (its CPU or timer lag): these runs may understate the target",
            saturated.join(", ")
        ));
    }
    out
}

/// A run's load in words: `16 users`, `20/s`.
pub fn load_words(r: &RunSummary) -> String {
    match r.users {
        Some(1) => "1 user".into(),
        Some(u) => format!("{u} users"),
        None => format!("{} arrivals", r.load_label()),
    }
}

/// The headline numbers: every request of the campaign, its error rate, and per task its peak
/// steady throughput (sessions for a task with a unit) with the load it came at and the p95
/// there.
fn headline(data: &ReportData) -> Vec<(String, String)> {
    let (mut requests, mut failures) = (0u64, 0u64);
    for r in &data.runs {
        for e in r
            .endpoints
            .iter()
            .filter(|e| e.kind == Kind::Request && e.task != "auth")
        {
            requests += e.total.count + e.drain.count;
            failures += e.total.failures + e.drain.failures;
        }
    }
    let mut out = vec![(
        "requests".to_string(),
        format!(
            "{requests} in {} runs, {} failed ({:.2} %)",
            data.runs.len(),
            failures,
            if requests == 0 {
                0.0
            } else {
                100.0 * failures as f64 / requests as f64
            }
        ),
    )];
    for task in data.tasks() {
        let unit = |e: &&crate::results::EndpointSummary| e.task == task && e.kind == Kind::Task;
        let peak = data
            .runs
            .iter()
            .filter_map(|r| Some((r, r.endpoints.iter().find(unit)?)))
            .max_by(|a, b| a.1.steady.rps.total_cmp(&b.1.steady.rps));
        if let Some((r, e)) = peak.filter(|(_, e)| e.steady.count > 0) {
            out.push((
                format!("peak {task}"),
                format!(
                    "{:.1} {}/s at {} (p95 {} ms, {})",
                    e.steady.rps,
                    e.name,
                    load_words(r),
                    format::fmt_ms(e.steady.p95_ms),
                    r.run_id
                ),
            ));
        }
    }
    out
}

/// The header lines of a results directory.
fn meta(data: &ReportData) -> Vec<(String, String)> {
    let m = &data.manifest;
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let short = |v: &Value| s(v).chars().take(12).collect::<String>();
    let generator = if data.runs.iter().any(|r| r.generator.saturated) {
        "saturated in some runs (see warnings)".to_string()
    } else {
        let worst = data
            .runs
            .iter()
            .map(|r| r.generator.cpu_pct)
            .fold(0.0, f64::max);
        format!("kept up (peak CPU {worst:.0} % of its threads)")
    };
    let interrupted = data.runs.iter().filter(|r| r.interrupted).count();
    vec![
        (
            "trial".into(),
            format!("{} (sha256 {})", data.label(), short(&m["trial"]["sha256"])),
        ),
        (
            "environment".into(),
            format!(
                "{} (sha256 {})",
                data.environment(),
                short(&m["environment"]["sha256"])
            ),
        ),
        (
            "release".into(),
            format!(
                "Veraison {} · target {}",
                s(&m["release"]["tag"]),
                m["target"]["versions"]
            ),
        ),
        (
            "when".into(),
            format!("{} → {}", s(&m["started_at"]), s(&m["ended_at"])),
        ),
        (
            "runs".into(),
            format!("{} ({interrupted} interrupted)", data.runs.len()),
        ),
        ("generator".into(), generator),
        (
            "trialrunner".into(),
            m["tool"]["version"]
                .as_str()
                .unwrap_or(env!("CARGO_PKG_VERSION"))
                .to_string(),
        ),
    ]
}

/// History lines of the same trial and environment up to this campaign's end (an old report
/// rebuilt shows the trend as it was).
fn history_for(data: &ReportData) -> Vec<Value> {
    let Some(path) = data.dir.root.parent().map(|p| p.join("history.jsonl")) else {
        return Vec::new();
    };
    let ended = data.manifest["ended_at"]
        .as_str()
        .unwrap_or("~")
        .to_string();
    let (trial, env) = (data.trial(), data.environment());
    read_jsonl(&path)
        .into_iter()
        .filter(|l| {
            l["trial"] == trial.as_str()
                && l["environment"] == env.as_str()
                && l["date"].as_str().is_some_and(|d| d <= ended.as_str())
        })
        .collect()
}

/// The chart sections of a results directory, then the collapsed per-run detail.
fn sections(
    data: &ReportData,
    baseline: Option<&(String, Vec<RunSummary>)>,
    auto: Option<autoscaling::AutoScaling>,
) -> Vec<Section> {
    let mut out = Vec::new();
    let mut push =
        |title: String, note: &str, charts: Vec<String>, tables: Vec<Table>, collapsed| {
            if !charts.is_empty() || tables.iter().any(|t| !t.rows.is_empty()) {
                out.push(Section {
                    title,
                    note: note.into(),
                    charts,
                    tables: tables.into_iter().filter(|t| !t.rows.is_empty()).collect(),
                    collapsed,
                });
            }
        };
    for task in data.tasks() {
        let base = baseline.map(|(n, r)| (n.as_str(), r.as_slice()));
        push(
            format!("{task}: against the load"),
            "Steady state. Throughput: mean of the per-second rates ± 95 % CI, successes (OK) and failures (KO) apart. Latency: percentiles pooled from the histograms, one colour per endpoint. Hover a point for its value.",
            charts::task_charts(&data.runs, &task, base),
            vec![],
            false,
        );
    }
    for task in data.tasks() {
        let (charts, table) = distribution::distributions(&data.runs, &task);
        push(
            format!("{task}: response-time distribution"),
            "Each run's steady successes: the share in each latency bucket, and its percentiles.",
            charts,
            vec![table],
            false,
        );
    }
    push(
        "Store weight".into(),
        "Each task's session against the rows in the stores when the run began, one point per iteration.",
        charts::store_weight_charts(&data.runs, &data.stores),
        vec![],
        false,
    );
    if let Some(auto) = auto {
        push(
            "Auto-scaling".into(),
            &format!(
                "Every instance from launch to InService to a healthy target to serving (its first successful answers; red marker: terminated), above the client's p95 and failures on the same time axis. {}",
                auto.findings.join("; ")
            ),
            auto.charts,
            vec![],
            false,
        );
    }
    let history = history_for(data);
    push(
        "Trend".into(),
        "Earlier campaigns of this trial in this environment (history.jsonl), one point each.",
        charts::trend_charts(&history),
        vec![],
        false,
    );
    push(
        "Campaign detail".into(),
        "Store counts, the groups before and after, the generator's own health, error logs.",
        vec![],
        vec![
            tables::stores_table(data),
            tables::infra_table(data),
            tables::generator_table(&data.runs),
            tables::workers_table(&data.runs),
            tables::error_logs_table(data),
            tables::missing_table(data),
        ],
        false,
    );
    for r in &data.runs {
        push(
            format!("Run {} ({})", r.run_id, r.load_label()),
            "Per second: client throughput with users, p95 with the cloud's counts, failures with 5xx and error-log lines (cloud series as minute steps on the right axis). Shaded: warm-up.",
            charts::run_timeline(data, r),
            vec![],
            true,
        );
    }
    out
}

/// Builds `report.html` and `report.md` of a results directory (or `metrics.html` of a
/// `metrics pull` directory); returns the HTML's path.
pub fn build(dir: &Path) -> Result<PathBuf> {
    if !dir.join("runs").is_dir() && dir.join("cloudwatch.json").is_file() {
        return build_cloud(dir);
    }
    let data = ReportData::read(dir)?;
    let correlated = correlate_all(&data)?;
    let baseline = compare_with_baseline(&data);
    let gate = report_checks(&data, baseline.as_ref());
    let base_runs = baseline.as_ref().and_then(|(n, p)| {
        let runs = ResultsDir::open(p).ok()?.summaries().ok()?;
        Some((n.clone(), runs))
    });
    let mut meta = meta(&data);
    meta.extend(headline(&data));
    if let Some((name, p)) = &baseline {
        meta.push(("compared with".into(), format!("{name}: {}", p.display())));
    }
    let mut summary = tables::summary_tables(&data);
    summary.push(tables::failures_table(&data.runs));
    let tasks = data.tasks();
    let mut found = findings::knees(&data.runs, &tasks);
    if let Some((name, runs)) = &base_runs {
        found.extend(findings::against(&data.runs, runs, name, &tasks));
    }
    found.extend(findings::store_weight(&data.runs, &data.stores, &tasks));
    let auto = autoscaling::section(&data);
    if let Some(a) = &auto {
        found.extend(a.findings.iter().cloned());
    }
    found.extend(findings::start_of_runs(&data));
    found.extend(correlated);
    let mut warned = warnings(&data);
    warned.extend(findings::machine_limits(&data));
    let overview = vec![Section {
        title: "The campaign".into(),
        note: "Every run on one time axis (seconds since the first began; each run shaded: hover it for its id and load). Between runs the stores are cleared and counted and the metrics pulled: the lines break there.".into(),
        charts: timeline::campaign_timeline(&data),
        ..Default::default()
    }]
    .into_iter()
    .filter(|s| !s.charts.is_empty())
    .collect();
    let page = Page {
        title: format!("trialrunner report: {}", data.label()),
        meta,
        overview,
        status: data.manifest["status"].as_str().unwrap_or("").to_string(),
        verdict: Verdict {
            checks: gate.checks,
            errors: gate.errors,
            findings: found,
            warnings: warned,
        },
        tables: summary.into_iter().filter(|t| !t.rows.is_empty()).collect(),
        sections: sections(&data, base_runs.as_ref(), auto),
    };
    let path = data.dir.root.join("report.html");
    results::write_atomic(&path, page.html()?.as_bytes())?;
    results::write_json(
        &data.dir.root.join("findings.json"),
        &serde_json::json!({
            "findings": page.verdict.findings,
            "warnings": page.verdict.warnings,
        }),
    )?;
    results::write_atomic(&data.dir.root.join("report.md"), page.markdown().as_bytes())?;
    Ok(path)
}

/// The page of a `metrics pull` directory: its cloud series over the window.
fn build_cloud(dir: &Path) -> Result<PathBuf> {
    let cloud = read_cloud(dir);
    let doc: Value = results::read_json(&dir.join("cloudwatch.json"))?;
    let from = doc["window"]["from"].as_f64().unwrap_or(0.0);
    let to = doc["window"]["to"].as_f64().unwrap_or(from);
    let at = |t: f64| {
        chrono::DateTime::from_timestamp(t as i64, 0)
            .map(|d| d.to_rfc3339())
            .unwrap_or_default()
    };
    let mut warnings = Vec::new();
    if let Some(e) = &cloud.error {
        warnings.push(format!("the pull failed: {e}"));
    }
    let page = Page {
        title: "trialrunner: cloud metrics".into(),
        meta: vec![("window".into(), format!("{} → {}", at(from), at(to)))],
        verdict: Verdict {
            warnings,
            ..Default::default()
        },
        sections: vec![Section {
            title: "Cloud metrics".into(),
            note: "Each series over its periods (steps), seconds since the window's start.".into(),
            charts: charts::cloud_charts(&cloud, from),
            ..Default::default()
        }],
        ..Default::default()
    };
    let path = dir.join("metrics.html");
    results::write_atomic(&path, page.html()?.as_bytes())?;
    Ok(path)
}

/// The page of a comparison: both directories' headers, the pooled and per-step deltas, the
/// checks, and each task's baseline overlaid on the contender.
pub fn comparison_page(base: &Path, contender: &Path, c: &Comparison) -> Result<Page> {
    let (b, k) = (ReportData::read(base)?, ReportData::read(contender)?);
    // Two variants of one trial go by their variants' names.
    let (bn, kn) = match (b.variant(), k.variant()) {
        (Some(x), Some(y)) if b.trial() == k.trial() => (x, y),
        _ => (b.label(), k.label()),
    };
    let (bs, ks) = (autoscaling::scaling(&b), autoscaling::scaling(&k));
    let scaled = autoscaling::compared((&bn, &bs), (&kn, &ks));
    let mut sections = Vec::new();
    for task in k.tasks() {
        let charts = charts::overlay(&k.runs, &b.runs, &task, &k.label(), &b.label());
        if !charts.is_empty() {
            sections.push(Section {
                title: format!("{task}: {} over {}", k.label(), b.label()),
                note: "Steady state per load step; the baseline in its own series.".into(),
                charts,
                ..Default::default()
            });
        }
    }
    Ok(Page {
        title: format!("trialrunner compare: {} against {}", k.label(), b.label()),
        meta: vec![
            (
                "baseline".into(),
                format!("{} ({})", b.label(), base.display()),
            ),
            (
                "contender".into(),
                format!("{} ({})", k.label(), contender.display()),
            ),
            ("matched runs".into(), c.matched_runs.to_string()),
        ],
        // No green "passed" where no threshold was checked.
        status: match (c.checks.is_empty(), c.passed()) {
            (true, _) => String::new(),
            (false, true) => "passed".into(),
            (false, false) => "failed".into(),
        },
        verdict: Verdict {
            checks: c.checks.clone(),
            findings: scaled,
            ..Default::default()
        },
        overview: Vec::new(),
        tables: [
            tables::delta_table(
                "Per endpoint, all matched runs (each step's verdicts counted)",
                &c.endpoints,
            ),
            tables::delta_table("Per load step (each on its own seconds)", &c.steps),
        ]
        .into_iter()
        .chain(autoscaling::scaling_table(&[(bn, bs), (kn, ks)]))
        .collect(),
        sections,
    })
}
