//! Reports and comparisons, looked at in a real browser: the demo's reports and a crafted
//! Trial 1/2/3/4 set opened in headless Chromium (no network) with a probe script that measures
//! the laid-out page (tables before charts, text inside view boxes, points inside plots, a
//! legend entry per series); `compare` on crafted results with known deltas.

mod common;
#[path = "common/crafted.rs"]
mod crafted;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::browser::{count_near, probe, screenshot};
use trialrunner::exec::Interrupts;
use trialrunner::report::compare;
use trialrunner::report::stats::Verdict;
use trialrunner::trial::thresholds::Threshold;

/// A page's text with the template's escaping of `/` undone (paths read as written).
fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p).unwrap().replace("&#x2f;", "/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_reports_answer_their_questions_in_a_real_browser() {
    let out = tempfile::tempdir().unwrap();
    let demo = trialrunner::demo::run(out.path(), &Interrupts::default(), false)
        .await
        .unwrap();
    assert_eq!(demo.reports.len(), 2);
    let users_page = out.path().join("local-users/report.html");
    let weight_page = out.path().join("local-store-weight/report.html");
    let (users, weight) = (read(&users_page), read(&weight_page));
    for html in [&users, &weight] {
        // Self-contained: nothing fetched, no script at all.
        assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("src=\""));
    }
    // Trial 1: per task, every endpoint and the session on one chart against users.
    let p = probe(&users_page);
    p.assert_clean(&users_page, 4);
    assert!(p.has_chart("verify: throughput vs virtual users"));
    assert!(p.has_chart("verify: latency vs virtual users"));
    assert!(
        users.contains("verification session p95"),
        "the session's percentiles"
    );
    assert!(users.contains(r#"class="ci""#), "confidence bars");
    assert!(
        users.contains("<details") && users.contains("Run u010-verify"),
        "per-run detail, collapsed"
    );
    // Trial 3: verification against the rows stored, one point per iteration.
    let w = probe(&weight_page);
    w.assert_clean(&weight_page, 2);
    assert!(w.has_chart("store weight: latency vs stored rows"));
    assert!(
        !w.has_chart("vs virtual users"),
        "one user count: no curve against users"
    );
    // Rendered: series and axes are on screen (not a blank page).
    let shot = out.path().join("users.png");
    let (w, h, rgb) = screenshot(&users_page, &shot, 4000);
    assert_eq!((w, h), (1500, 4000));
    assert!(count_near(&rgb, (0x1f, 0x77, 0xb4)) > 1000, "series pixels");
    assert!(
        count_near(&rgb, (0xff, 0xff, 0xff)) < rgb.len() / 3 * 95 / 100,
        "not blank"
    );
    // The Markdown twin carries the same summary rows.
    let md = read(out.path().join("local-users/report.md"));
    assert!(
        md.contains("## Summary: verify")
            && md.contains("| u010-verify | 10 | verification session |")
    );
    // README screenshots are regenerated from the demo when asked.
    if let Some(dest) = std::env::var_os("TRIALRUNNER_SCREENSHOTS") {
        let dest = PathBuf::from(dest);
        std::fs::create_dir_all(&dest).unwrap();
        screenshot(&users_page, &dest.join("report-users.png"), 1800);
        screenshot(&weight_page, &dest.join("report-store-weight.png"), 1400);
    }
}

#[test]
fn crafted_trials_1_to_4_answer_the_campaign_questions_in_a_real_browser() {
    let root = tempfile::tempdir().unwrap();
    let [t1, t2, t3, t4] = crafted::campaign(root.path(), &[2, 10, 20, 40]);
    for dir in [&t1, &t2, &t3, &t4] {
        trialrunner::report::build(dir).unwrap();
    }
    // Trial 2 names Trial 1 with compare-with: overlaid, and its relative threshold checked
    // against it (+190 % p95 breaks `verify p95 +10%`), failure rate under 5 % holds.
    let t2_page = t2.join("report.html");
    let p2 = probe(&t2_page);
    p2.assert_clean(&t2_page, 5);
    assert!(p2.has_chart("verify: p95 vs virtual users, this trial against users-pinned-3"));
    let html2 = read(&t2_page);
    assert!(html2.contains(&format!(
        "compared with</th><td>users-pinned-3: {}",
        t1.display()
    )));
    assert!(html2.contains(r#"<span class="fail">✗</span> <code>verify p95 +10%</code>"#));
    assert!(
        html2.contains(r#"<span class="pass">✓</span> <code>verify failure-rate &lt; 5%</code>"#)
    );
    let md2 = read(t2.join("report.md"));
    assert!(md2.contains("✗ verify p95 +10%") && md2.contains("✓ verify failure-rate < 5%"));
    // Trial 3: one point per iteration at the rows the run began with.
    let t3_page = t3.join("report.html");
    let p3 = probe(&t3_page);
    p3.assert_clean(&t3_page, 2);
    let html3 = read(&t3_page);
    let points: Vec<(f64, f64)> = html3
        .split("<title>verification session p95: ")
        .skip(1)
        .filter_map(|t| {
            let (p95, rest) = t.split_once(" at ")?;
            let rows = rest.split('<').next()?;
            Some((p95.parse().ok()?, rows.parse().ok()?))
        })
        .collect();
    assert_eq!(points.len(), 3, "{points:?}");
    for (it, rows) in [
        (1, 0),
        (2, crafted::rows_after(1)),
        (3, crafted::rows_after(2)),
    ] {
        let p95 = crafted::Crafted::default().session_p95(10, it);
        assert!(
            points
                .iter()
                .any(|(p, r)| *r == rows as f64 && (p - p95).abs() / p95 < 0.01),
            "iteration {it}: p95 {p95} at {rows} rows, in {points:?}"
        );
    }
    // Trial 4: every instance, including the one that came and the one that went.
    let t4_page = t4.join("report.html");
    let p4 = probe(&t4_page);
    p4.assert_clean(&t4_page, 4);
    assert!(p4.has_chart("auto-scaling: every instance"));
    let html4 = read(&t4_page);
    for text in [
        "verif a",
        "verif b",
        "verif c",
        "i-c terminated",
        "i-b InService",
        "too many clients",
        "RDS DatabaseConnections",
    ] {
        assert!(html4.contains(text), "{text}");
    }
    // How the group scaled, from what the crafted samples made happen: `i-a` and `i-c` serve
    // at the start, `i-b` has a healthy target from the sample at 50 s of the first run (0.4
    // of its 120 s, sampled every 5 s), three at once until `i-c` goes; no twin recorded when
    // `i-b` first answered, so its failures at joins are not claimed.
    let data = trialrunner::report::data::ReportData::read(&t4).unwrap();
    let scaling = trialrunner::report::autoscaling::scaling(&data);
    assert_eq!(scaling.len(), 1, "{scaling:?}");
    let s = &scaling[0];
    assert_eq!((s.at_start, s.peak), (2, 3), "{s:?}");
    let (run, into) = s.reached.clone().unwrap();
    assert_eq!(run, "u010-verify");
    assert!((into - 50.0).abs() < 1e-6, "{s:?}");
    assert_eq!(s.failed_at_joins, None);
    assert!(html4.contains("failures at joins not known"));
    // Trial 1 with no compare-with and no thresholds says so instead of passing silently.
    assert!(read(t1.join("report.html")).contains("None set"));
}

#[test]
fn a_rebuilt_report_shows_the_trend_as_it_was() {
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (1..=3).map(|i| root.path().join(format!("n{i}"))).collect();
    let mut history = String::new();
    for (i, d) in dirs.iter().enumerate() {
        crafted::Crafted {
            name: "nightly".into(),
            slow: 1.0 + i as f64,
            ended_at: format!("2026-11-2{}T00:00:00Z", i + 1),
            ..Default::default()
        }
        .write(d);
        history.push_str(&compare::history_line(d).unwrap());
        history.push('\n');
    }
    // Another trial and another environment in the same history stay out of the trend.
    let other = history
        .lines()
        .next()
        .unwrap()
        .replace("\"nightly\"", "\"other\"");
    history.push_str(&other.replace("2026-11-21", "2026-10-05"));
    history.push('\n');
    std::fs::write(root.path().join("history.jsonl"), &history).unwrap();
    let page = trialrunner::report::build(&dirs[1]).unwrap();
    let before = read(&page);
    assert!(before.contains("2026-11-21") && before.contains("2026-11-22"));
    assert!(
        !before.contains("2026-11-23"),
        "a later campaign is not in an earlier report"
    );
    assert!(
        !before.contains("2026-10-05"),
        "another trial is not in this trend"
    );
    trialrunner::report::build(&dirs[1]).unwrap();
    assert_eq!(read(&page), before, "rebuilding changes nothing");
}

#[test]
fn a_42_run_report_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let users: Vec<u32> = (0..42).map(|i| 2 + 2 * i).collect();
    crafted::Crafted {
        users,
        seconds: 30,
        provision: true,
        ..Default::default()
    }
    .write(dir.path());
    let page = trialrunner::report::build(dir.path()).unwrap();
    let p = probe(&page);
    p.assert_clean(&page, 4);
    let html = read(&page);
    // The summary is a table of 42 steps, the charts are per task (not per endpoint and run),
    // and the 42 timelines are collapsed.
    assert_eq!(html.matches("<details").count(), 42);
    let open_charts = p.0["open_charts"].as_u64().unwrap();
    assert!(
        open_charts <= 12,
        "{open_charts} charts outside the per-run detail"
    );
}

#[test]
fn compare_gives_the_right_deltas_exit_codes_junit_and_page() {
    let base = tempfile::tempdir().unwrap();
    let slow = tempfile::tempdir().unwrap();
    crafted::write_results(base.path(), &[2, 10], 60, 1.0);
    crafted::write_results(slow.path(), &[2, 10], 60, 2.9);
    let th = |s: &str| Threshold::parse(s).unwrap();
    let c = compare::compare(
        base.path(),
        slow.path(),
        &[th("verify p95 < 1s"), th("verify p95 +10%")],
    )
    .unwrap();
    assert_eq!(c.matched_runs, 2);
    // Per step and pooled, from the histograms (3 significant digits).
    assert_eq!(
        c.steps
            .iter()
            .filter(|d| d.endpoint == "verification session")
            .count(),
        2
    );
    let session = c
        .endpoints
        .iter()
        .find(|d| d.endpoint == "verification session")
        .unwrap();
    let at10 = c
        .steps
        .iter()
        .find(|d| d.endpoint == "verification session" && d.run == "u010-verify")
        .unwrap();
    assert!(
        (at10.base.p95 - 130.0).abs() < 0.5 && (at10.contender.p95 - 377.0).abs() < 1.0,
        "{} {}",
        at10.base.p95,
        at10.contender.p95
    );
    // +190 % p95 is significant, unchanged throughput is not, at each step on its own 60 s,
    // each beside its effect, its test and its samples; the endpoint's row counts the steps'
    // verdicts, never averaging them; the +10 % threshold breaks on the same number.
    assert!(
        at10.note.contains("p95 +190 % [")
            && at10.note.contains("(Welch t, 60 vs 60 s), significant")
            && at10.note.contains("rps +0.0 % ["),
        "{}",
        at10.note
    );
    assert_eq!(session.changes.len(), 2);
    for step in &session.changes {
        assert_eq!(step.p95.verdict, Verdict::Significant, "{}", step.run);
        assert_eq!(step.rps.verdict, Verdict::NotSignificant, "{}", step.run);
    }
    assert!(
        session.note.contains("p95 significant at 2 of 2 steps (+1")
            && session.note.contains("rps not significant at 2 of 2 steps"),
        "{}",
        session.note
    );
    let relative: Vec<_> = c
        .checks
        .iter()
        .filter(|k| k.threshold == "verify p95 +10%")
        .collect();
    assert_eq!(relative.len(), 1, "the session, the task's unit");
    assert!(!relative[0].passed && (relative[0].baseline.unwrap() - session.base.p95).abs() < 1e-9);
    assert!(c
        .checks
        .iter()
        .filter(|k| k.threshold == "verify p95 < 1s")
        .all(|k| k.passed));
    // A p90 threshold checks p90; `<=` is `<=`.
    let p90 = compare::compare(
        base.path(),
        slow.path(),
        &[th(&format!("verify p90 <= {}ms", session.contender.p90))],
    )
    .unwrap();
    assert!(p90.passed() && (session.contender.p90 - session.contender.p95).abs() > 1.0);
    // A threshold matching nothing, or relative without a baseline, is an error.
    assert!(compare::compare(base.path(), slow.path(), &[th("provision p95 < 1s")]).is_err());
    assert!(compare::check_absolute(slow.path(), &[th("verify p95 +10%")]).is_err());
    // The CLI: exit 1 when a threshold breaks, 0 when none does; JUnit is valid XML; the page.
    let dir = tempfile::tempdir().unwrap();
    let broken = common::write(dir.path(), "t.yaml", "thresholds:\n  - \"* p95 +10%\"\n");
    let fine = common::write(dir.path(), "ok.yaml", "- verify p95 < 1s\n");
    let junit = dir.path().join("junit.xml");
    let page = dir.path().join("compare.html");
    let run = |th: &Path| {
        Command::new(env!("CARGO_BIN_EXE_trialrunner"))
            .arg("compare")
            .arg(base.path())
            .arg(slow.path())
            .arg("--thresholds")
            .arg(th)
            .arg("--junit")
            .arg(&junit)
            .arg("--html")
            .arg(&page)
            .output()
            .unwrap()
    };
    let out = run(&broken);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("✗ * p95 +10%"), "{stdout}");
    let xml = read(&junit);
    let (mut cases, mut failures) = (0, 0);
    let mut reader = quick_xml::Reader::from_str(&xml);
    loop {
        match reader.read_event().expect("valid XML") {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                match e.name().as_ref() {
                    b"testcase" => cases += 1,
                    b"failure" => failures += 1,
                    _ => {}
                }
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    // Every endpoint of verify: the session and its three requests, all +190 %.
    assert_eq!((cases, failures), (4, 4));
    // The page: both trials, overlaid per endpoint, as a real page.
    let p = probe(&page);
    p.assert_clean(&page, 2);
    let html = read(&page);
    assert!(!html.contains("<pre"), "a page, not terminal text");
    assert!(p.has_chart("verify: p95 vs virtual users"));
    assert!(
        html.contains(&base.path().display().to_string())
            && html.contains(&slow.path().display().to_string())
    );
    assert_eq!(run(&fine).status.code(), Some(0));
    // Same directory against itself: no change, nothing significant.
    let same = compare::compare(base.path(), base.path(), &[]).unwrap();
    assert!(same
        .endpoints
        .iter()
        .chain(&same.steps)
        .flat_map(|d| &d.changes)
        .all(|s| [&s.rps, &s.p95, &s.failure_rate]
            .iter()
            .all(|c| c.verdict == Verdict::NotSignificant)));
}

#[test]
fn metrics_pull_output_renders() {
    let dir = tempfile::tempdir().unwrap();
    crafted::write_results(dir.path(), &[10], 120, 1.0);
    let pulled = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("runs/u010-verify/cloudwatch.json"),
        pulled.path().join("cloudwatch.json"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trialrunner"))
        .arg("report")
        .arg(pulled.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = pulled.path().join("metrics.html");
    let html = read(&page);
    assert!(html.contains("RDS DatabaseConnections") && html.contains("too many clients"));
    let p = probe(&page);
    assert!(p.problems().is_empty(), "{:?}", p.problems());
    assert!(p.0["charts"].as_u64().unwrap() >= 2);
}

/// The "Generator fleet" table (README: a generator fleet): one row per worker of each run with
/// its share, what it recorded, its own CPU, busy time, timer lag and saturation, and its
/// status, from the run's summary: a saturated worker says YES though the fleet's weighted CPU
/// would not, and a lost one says what happened.
#[test]
fn the_fleet_table_shows_each_workers_own_health_and_status() {
    use trialrunner::results::{GeneratorHealth, RunSummary, WorkerRow};
    let worker = |name: &str, users, cpu_pct, saturated, status: &str| WorkerRow {
        name: name.into(),
        users: Some(users),
        requests: 1000 * users as u64,
        failures: users as u64,
        generator: GeneratorHealth {
            cpu_pct,
            busy_pct: cpu_pct + 4.0,
            threads: 1,
            timer_lag_p99_ms: if saturated { 31.5 } else { 2.25 },
            saturated,
            ..GeneratorHealth::default()
        },
        status: status.into(),
        message: (status == "lost").then(|| "killed by signal 9".into()),
        late_s: (name == "w1").then_some(0.4),
        ..WorkerRow::default()
    };
    let run = RunSummary {
        run_id: "u007-verify".into(),
        workers: vec![
            worker("w1", 4, 93.0, true, "finished"),
            worker("w2", 3, 12.0, false, "lost"),
        ],
        ..RunSummary::default()
    };
    let table = trialrunner::report::tables::workers_table(&[run]);
    assert_eq!(table.title, "Generator fleet");
    assert_eq!(
        table.rows,
        [
            [
                "u007-verify",
                "w1",
                "4 users",
                "4000",
                "4",
                "93",
                "97",
                "31.50",
                "YES",
                "0.40",
                "finished"
            ],
            [
                "u007-verify",
                "w2",
                "3 users",
                "3000",
                "3",
                "12",
                "16",
                "2.25",
                "no",
                "",
                "lost: killed by signal 9"
            ]
        ]
    );
    assert!(
        trialrunner::report::tables::workers_table(&[RunSummary::default()])
            .rows
            .is_empty(),
        "no fleet, no rows"
    );
}

/// A campaign long enough to watch: six load runs of 5 s (three user levels, two tasks)
/// against the stand-in.
const LIVE_TRIAL: &str = "name: steps\nenvironment: local\nstores: { clear: before-each-run, flush-sessions: false }\nruns:\n  users: { from: 2, to: 6, step: 2 }\n  duration: 5s\n  warmup: 1s\n  tasks: [well-known, verify]\n";

/// What the live page saw: per frame, its step and the points on the campaign's charts.
#[derive(Debug, Default, Clone)]
struct Seen {
    frames: u64,
    steps: Vec<u64>,
    points: Vec<u64>,
    ended: bool,
}

fn seen(page: &mut common::cdp::LivePage) -> Seen {
    let v = page.eval("JSON.stringify(window.dashboard || null)");
    let v: serde_json::Value = serde_json::from_str(v.as_str().unwrap_or("null")).unwrap();
    let list = |k: &str| -> Vec<u64> {
        v[k].as_array()
            .into_iter()
            .flatten()
            .map(|x| x.as_u64().unwrap())
            .collect()
    };
    Seen {
        frames: v["frames"].as_u64().unwrap_or(0),
        steps: list("steps"),
        points: list("points"),
        ended: v["ended"] == true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_dashboard_follows_a_campaign_in_a_real_browser() {
    use common::cdp::LivePage;
    use std::time::Duration;
    use trialrunner::dashboard::{Dashboard, DashboardAddr, Watched};
    use trialrunner::setup::{self, SetupOptions};
    use trialrunner::standin::{store::KvStore, Standin, StandinConfig};

    let out = tempfile::tempdir().unwrap();
    let standin = Standin::start(
        "127.0.0.1:0".parse().unwrap(),
        StandinConfig::default(),
        KvStore::memory(),
    )
    .await
    .unwrap();
    let env = common::write(
        out.path(),
        "local.yaml",
        &trialrunner::demo::local_environment(&standin.url(), "v0.0.2602"),
    );
    let file = common::write(out.path(), "live.yaml", LIVE_TRIAL);
    let t = trialrunner::trial::load_trial(&file, Some(&env)).unwrap();
    let plan = trialrunner::trial::plan(&t);
    let steps = plan.steps.len() as u64;
    let providers = setup::providers_for(
        &t,
        &SetupOptions {
            aws_endpoint: None,
            progress: false,
        },
    )
    .await
    .unwrap();
    let dir = trialrunner::results::ResultsDir::create(&out.path().join("results")).unwrap();
    let dashboard = Dashboard::start(DashboardAddr::parse("127.0.0.1:0", false).unwrap())
        .await
        .unwrap();
    let url = dashboard.url().to_string();
    // Self-contained: no script, style or image fetched from anywhere.
    let html = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(!html.contains("<link") && !html.contains("src=") && !html.contains("http"));
    dashboard.follow(Watched::new(&t.spec.name, &dir, &plan));
    let campaign = tokio::spawn(async move {
        trialrunner::campaign::execute_and_report(
            &t,
            &plan,
            &providers,
            &dir,
            &Interrupts::default(),
        )
        .await
    });
    let shots = std::env::var_os("TRIALRUNNER_SCREENSHOTS").map(PathBuf::from);
    let live = url.clone();
    let mut page = tokio::task::spawn_blocking(move || {
        let mut page = LivePage::open(&live);
        let deadline = Duration::from_secs(90);
        // One page open: its campaign charts gain points and its step counter advances.
        let mut s = Seen::default();
        common::wait_until(
            "a frame with points on the campaign's charts",
            deadline,
            || {
                s = seen(&mut page);
                s.points.iter().any(|p| *p > 0)
            },
        );
        let first = s.points.iter().position(|p| *p > 0).unwrap();
        let (step0, points0) = (s.steps[first], s.points[first]);
        common::wait_until(
            "more points and a later step on the same page",
            deadline,
            || {
                s = seen(&mut page);
                s.points.last() > Some(&points0) && s.steps.last() > Some(&step0)
            },
        );
        assert!(
            s.steps.windows(2).all(|w| w[0] <= w[1]),
            "the step counter never goes back: {:?}",
            s.steps
        );
        if let Some(dir) = &shots {
            std::fs::create_dir_all(dir).unwrap();
            page.screenshot(&dir.join("dashboard-live.png"));
        }
        // A reload mid-run starts from a snapshot of where the campaign is, then streams on.
        let before = seen(&mut page);
        assert!(!before.ended, "the campaign is still running: {before:?}");
        page.reload();
        let mut after = Seen::default();
        common::wait_until("the reloaded page's frames", deadline, || {
            after = seen(&mut page);
            after.frames >= 2
        });
        assert!(
            after.steps[0] >= *before.steps.last().unwrap()
                && after.points[0] >= *before.points.last().unwrap(),
            "after a reload the first frame is where the campaign was: {before:?} then {after:?}"
        );
        page
    })
    .await
    .unwrap();
    let finished = campaign.await.unwrap();
    finished.outcome.unwrap();
    let report = finished.report.expect("a report");
    dashboard.ended(vec![report.clone()]);
    let page = tokio::task::spawn_blocking(move || {
        // The open page says the campaign ended (every step done) and links the report ...
        let mut s = Seen::default();
        common::wait_until("the end on the open page", Duration::from_secs(30), || {
            s = seen(&mut page);
            s.ended
        });
        assert_eq!(s.steps.last(), Some(&(steps + 1)), "{s:?}");
        // ... and so does a page opened after the end.
        page.open_another(&url);
        common::wait_until(
            "the end on a page opened late",
            Duration::from_secs(30),
            || seen(&mut page).ended,
        );
        let link = page.eval("document.querySelector('a.report').getAttribute('href')");
        (page, link.as_str().unwrap().to_string())
    });
    let (page, link) = page.await.unwrap();
    let served = reqwest::get(format!(
        "{}{}",
        dashboard.url(),
        link.trim_start_matches('/')
    ))
    .await
    .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(
        served.text().await.unwrap(),
        std::fs::read_to_string(&report).unwrap(),
        "the link serves the final report"
    );
    drop(page);
    dashboard.stop();
    standin.shutdown().await;
}
