//! Reports and comparisons: a demo run's report opened in headless Chromium (no network),
//! charts checked in the screenshot; `compare` on crafted results with known deltas.

mod common;
#[path = "common/crafted.rs"]
mod crafted;

use std::path::Path;
use std::process::Command;

use trialrunner::exec::Interrupts;
use trialrunner::report::compare;
use trialrunner::report::thresholds::Threshold;

/// Screenshot of a page in headless Chromium (no network, throwaway profile) as RGB pixels.
fn screenshot(page: &Path, height: u32) -> (u32, u32, Vec<u8>) {
    let profile = tempfile::tempdir().unwrap();
    let png = profile.path().join("shot.png");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size=1500,{height}"))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs (scripts/install-test-deps installs it)");
    assert!(
        png.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::fs::File::open(&png).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let rgb: Vec<u8> = buf[..info.buffer_size()]
        .chunks(channels)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, rgb)
}

fn count_near(rgb: &[u8], color: (u8, u8, u8)) -> usize {
    rgb.chunks(3)
        .filter(|p| {
            (p[0] as i32 - color.0 as i32).abs() < 24
                && (p[1] as i32 - color.1 as i32).abs() < 24
                && (p[2] as i32 - color.2 as i32).abs() < 24
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_reports_have_every_applicable_plot_and_render_in_chromium() {
    let out = tempfile::tempdir().unwrap();
    let demo = trialrunner::demo::run(out.path(), &Interrupts::default(), false)
        .await
        .unwrap();
    assert_eq!(demo.reports.len(), 2);
    let users = std::fs::read_to_string(out.path().join("local-users/report.html")).unwrap();
    let weight =
        std::fs::read_to_string(out.path().join("local-store-weight/report.html")).unwrap();
    // Trial 1 (user steps): a summary against users per endpoint with CI bars, and timelines.
    assert!(
        users.contains("Summary per endpoint")
            && users.contains("throughput vs users")
            && users.contains("latency vs users (steady, pooled)")
    );
    assert!(users.contains(r#"class="ci""#), "confidence bars");
    assert!(
        users.contains("Timeline: u010-verify") && users.contains(r#"class="span""#),
        "timelines with the warm-up shaded"
    );
    // Trial 3 (store weight): performance against stored rows.
    assert!(
        weight.contains("store weight: throughput vs stored rows")
            && weight.contains("store weight: p95 vs stored rows")
    );
    assert!(
        !weight.contains("vs users"),
        "one user count: no curve against users"
    );
    // Self-contained: no external resources.
    for html in [&users, &weight] {
        assert!(
            !html.contains("http://") || !html.contains("<script src"),
            "no external scripts"
        );
        assert!(!html.contains("<link"), "no external stylesheets");
    }
    // Rendered: the series colour and the axis colour are on screen, in quantity.
    let (w, h, rgb) = screenshot(&out.path().join("local-users/report.html"), 2400);
    assert_eq!((w, h), (1500, 2400));
    let series = count_near(&rgb, (0x1f, 0x77, 0xb4));
    let axes = count_near(&rgb, (0x33, 0x33, 0x33));
    let white = count_near(&rgb, (0xff, 0xff, 0xff));
    assert!(series > 2000, "series pixels: {series}");
    assert!(axes > 2000, "axis pixels: {axes}");
    assert!(white < rgb.len() / 3, "not a blank page");
    // The Markdown twin for terminals and CI pages.
    let md = std::fs::read_to_string(out.path().join("local-users/report.md")).unwrap();
    assert!(md.contains("| u010-verify | 10 | POST /challenge-response/v1/[SESSION_ID] |"));
}

#[test]
fn crafted_report_has_autoscaling_markers_and_renders() {
    let dir = tempfile::tempdir().unwrap();
    crafted::write_results(dir.path(), &[2, 10, 18], 60, 1.0);
    let html_path = trialrunner::report::build(dir.path()).unwrap();
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(
        html.contains("Auto-scaling")
            && html.contains("i-b launched")
            && html.contains("i-b InService")
            && html.contains("i-b healthy"),
        "spin-up markers"
    );
    assert!(
        html.contains("instances InService (right)"),
        "infra on the second axis of the timelines"
    );
    let (_, _, rgb) = screenshot(&html_path, 1600);
    assert!(count_near(&rgb, (0x1f, 0x77, 0xb4)) > 1000);
}

#[test]
fn compare_gives_the_right_deltas_exit_codes_and_junit() {
    let base = tempfile::tempdir().unwrap();
    let slow = tempfile::tempdir().unwrap();
    crafted::write_results(base.path(), &[2, 10], 60, 1.0);
    crafted::write_results(slow.path(), &[2, 10], 60, 1.5);
    let th = |s: &str| Threshold::parse(s).unwrap();
    let c = compare::compare(
        base.path(),
        slow.path(),
        &[th("verify p95 < 1s"), th("* p95 +10%")],
    )
    .unwrap();
    assert_eq!(c.matched_runs, 2);
    let new_session = c
        .endpoints
        .iter()
        .find(|d| d.endpoint.contains("newSession"))
        .unwrap();
    // Pooled from the runs' histograms (HdrHistogram keeps 3 significant digits).
    assert!(
        (new_session.base.p95 - 20.0).abs() < 0.1 && (new_session.contender.p95 - 30.0).abs() < 0.1,
        "{} {}",
        new_session.base.p95,
        new_session.contender.p95
    );
    assert!(
        (new_session.base.rps - 60.0).abs() < 1e-9
            && (new_session.contender.rps - 60.0).abs() < 1e-9,
        "same throughput"
    );
    assert!(
        new_session.note.contains("p95 change significant")
            && new_session.note.contains("rps change not significant"),
        "{}",
        new_session.note
    );
    // Absolute bounds hold, the relative one breaks (+50 % > +10 %).
    assert!(c
        .checks
        .iter()
        .filter(|k| k.threshold == "verify p95 < 1s")
        .all(|k| k.passed));
    assert!(c
        .checks
        .iter()
        .filter(|k| k.threshold == "* p95 +10%")
        .all(|k| !k.passed));
    assert!(!c.passed());
    // The CLI: exit 1 when a threshold breaks, 0 when none does; JUnit is valid XML.
    let dir = tempfile::tempdir().unwrap();
    let broken = common::write(dir.path(), "t.yaml", "thresholds:\n  - \"* p95 +10%\"\n");
    let fine = common::write(
        dir.path(),
        "ok.yaml",
        "- verify p95 < 1s\n- provision p95 < 1s\n",
    );
    let junit = dir.path().join("junit.xml");
    let run = |th: &Path| {
        Command::new(env!("CARGO_BIN_EXE_trialrunner"))
            .arg("compare")
            .arg(base.path())
            .arg(slow.path())
            .arg("--thresholds")
            .arg(th)
            .arg("--junit")
            .arg(&junit)
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
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL * p95 +10%"));
    let xml = std::fs::read_to_string(&junit).unwrap();
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
    assert_eq!((cases, failures), (2, 2));
    assert_eq!(run(&fine).status.code(), Some(0));
    // Same directory against itself: no change, nothing significant.
    let same = compare::compare(base.path(), base.path(), &[]).unwrap();
    assert!(same
        .endpoints
        .iter()
        .all(|d| d.note.contains("rps change not significant")
            && d.note.contains("p95 change not significant")));
}
