//! Reports in a real browser: headless Chromium (no network) loads a page with a probe script
//! appended that measures the laid-out page (the campaign timeline first, then the summary
//! tables before the other charts, text inside view boxes, points inside plots, a legend entry
//! per series, per-run charts' axes within their run) and lists the verdict's findings; and
//! screenshots as RGB pixels.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;

/// Measures a page after layout: opens every `<details>`, then checks every chart. Its result
/// is base64 JSON in `<pre id="probe">` (the DOM dump escapes nothing in base64).
const PROBE: &str = r#"
<script>
(function () {
  document.querySelectorAll('details').forEach(function (d) { d.open = true; });
  var out = { charts: 0, problems: [], titles: [], series: 0, legend: 0 };
  var inside = function (r, box, slack) {
    return r.left >= box.left - slack && r.right <= box.right + slack &&
           r.top >= box.top - slack && r.bottom <= box.bottom + slack;
  };
  var follows = function (a, b) {
    return !!(a && b && (a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING));
  };
  var charts = Array.prototype.slice.call(document.querySelectorAll('svg.chart'));
  var overview = charts.filter(function (c) { return !!c.closest('.overview'); });
  var firstChart = charts.filter(function (c) { return !c.closest('.overview'); })[0];
  var firstTable = document.querySelector('table.summary');
  out.summary_before_chart = !!(firstTable && (!firstChart || follows(firstTable, firstChart)));
  out.overview = overview.map(function (c) { return c.getAttribute('aria-label'); });
  out.overview_before_summary = overview.length > 0 && (!firstTable || follows(overview[overview.length - 1], firstTable));
  out.findings = [];
  var heads = document.querySelectorAll('#verdict h3');
  heads.forEach(function (h) {
    if (h.textContent === 'Findings' && h.nextElementSibling) {
      h.nextElementSibling.querySelectorAll('li').forEach(function (li) { out.findings.push(li.textContent); });
    }
  });
  document.querySelectorAll('svg.chart').forEach(function (svg) {
    out.charts += 1;
    if (!svg.closest('details')) { out.open_charts = (out.open_charts || 0) + 1; }
    var title = svg.getAttribute('aria-label');
    out.titles.push(title);
    var box = svg.getBoundingClientRect();
    svg.querySelectorAll('text').forEach(function (t) {
      var r = t.getBoundingClientRect();
      if (r.width > 0 && !inside(r, box, 0.5)) {
        out.problems.push(title + ': text "' + t.textContent + '" outside its chart');
      }
    });
    var plot = svg.querySelector('rect.plot').getBoundingClientRect();
    svg.querySelectorAll('circle.pt').forEach(function (c) {
      var r = c.getBoundingClientRect();
      var cx = (r.left + r.right) / 2, cy = (r.top + r.bottom) / 2;
      if (cx < plot.left - 0.5 || cx > plot.right + 0.5 || cy < plot.top - 0.5 || cy > plot.bottom + 0.5) {
        out.problems.push(title + ': a point of "' + c.textContent + '" outside the plot');
      }
    });
    if (svg.hasAttribute('data-run')) {
      var lo = parseFloat(svg.getAttribute('data-x-lo')), hi = parseFloat(svg.getAttribute('data-x-hi'));
      var from = parseFloat(svg.getAttribute('data-run-from')), to = parseFloat(svg.getAttribute('data-run-to'));
      out.run_charts = (out.run_charts || 0) + 1;
      if (lo < from - 1.001 || hi > to + 1.001) {
        out.problems.push(title + ': x axis ' + lo + '…' + hi + ' beyond its run ' + from + '…' + to);
      }
    }
    var series = parseInt(svg.getAttribute('data-series'), 10);
    var legend = svg.querySelectorAll('g.legend-item[data-kind="series"]').length;
    out.series += series;
    out.legend += legend;
    var keys = svg.querySelectorAll('g.legend-item').length;
    if (legend !== series || keys === 0) {
      out.problems.push(title + ': ' + series + ' series, ' + legend + ' legend entries');
    }
  });
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = btoa(unescape(encodeURIComponent(JSON.stringify(out))));
  document.body.appendChild(pre);
})();
</script>
"#;

/// Headless Chromium with no network and a throwaway profile.
pub fn chromium() -> Command {
    let mut c = Command::new("chromium");
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1500,1200",
    ]);
    c
}

/// How long one headless Chromium may take to load a page and answer: far beyond what a busy
/// machine needs (seconds), short of leaving the whole test binary hanging on a stuck browser.
pub const CHROMIUM_BOUND: std::time::Duration = std::time::Duration::from_secs(180);

/// Runs a Chromium command to its end and returns what it printed; a Chromium still running
/// after [`CHROMIUM_BOUND`] is killed with its renderers (its process group) and the test fails
/// saying so.
pub fn output_within_bound(mut cmd: Command) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let child = cmd
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("chromium runs (scripts/install-test-deps installs it)");
    let pid = child.id() as i32;
    let (done, waited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match waited.recv_timeout(CHROMIUM_BOUND) {
        Ok(out) => out.expect("chromium's output"),
        Err(_) => {
            // SAFETY: kill has no memory preconditions; the group is the one spawned above.
            unsafe { libc::killpg(pid, libc::SIGKILL) };
            panic!("chromium did not finish in {CHROMIUM_BOUND:?}: killed");
        }
    }
}

/// What the probe measured in a page.
pub struct Probe(pub serde_json::Value);

impl Probe {
    /// Every layout rule it saw broken.
    pub fn problems(&self) -> Vec<String> {
        self.0["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect()
    }

    /// Every chart's title, in page order.
    pub fn titles(&self) -> Vec<String> {
        self.0["titles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap_or("").to_string())
            .collect()
    }

    /// A chart whose title holds `needle`.
    pub fn has_chart(&self, needle: &str) -> bool {
        self.titles().iter().any(|t| t.contains(needle))
    }

    /// The findings the verdict lists.
    pub fn findings(&self) -> Vec<String> {
        self.0["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p.as_str().unwrap_or("").to_string())
            .collect()
    }

    /// The campaign timeline's charts (the overview), when it comes before the summary tables.
    pub fn overview_first(&self) -> Vec<String> {
        if self.0["overview_before_summary"] != true {
            return Vec::new();
        }
        self.0["overview"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p.as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Every layout rule held, on at least `charts` charts.
    pub fn assert_clean(&self, page: &Path, charts: u64) {
        assert!(
            self.problems().is_empty(),
            "{}:\n{}",
            page.display(),
            self.problems().join("\n")
        );
        assert!(
            self.0["charts"].as_u64().unwrap() >= charts,
            "{}: {} charts",
            page.display(),
            self.0["charts"]
        );
        assert_eq!(
            self.0["summary_before_chart"],
            true,
            "{}: the summary table comes first",
            page.display()
        );
    }
}

/// Loads a page with the probe appended in headless Chromium and reads what it measured.
pub fn probe(page: &Path) -> Probe {
    let profile = tempfile::tempdir().unwrap();
    let html = std::fs::read_to_string(page).unwrap();
    let probed = profile.path().join("probed.html");
    std::fs::write(&probed, html.replace("</body>", &format!("{PROBE}</body>"))).unwrap();
    let mut cmd = chromium();
    cmd.arg(format!(
        "--user-data-dir={}",
        profile.path().join("p").display()
    ))
    .arg("--dump-dom")
    .arg(format!("file://{}", probed.display()));
    let out = output_within_bound(cmd);
    let dom = String::from_utf8_lossy(&out.stdout);
    let b64 = dom
        .split("<pre id=\"probe\">")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .unwrap_or_else(|| {
            panic!(
                "{}: no probe result; stderr: {}",
                page.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let json = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap();
    Probe(serde_json::from_slice(&json).unwrap())
}

/// Screenshot of a page as RGB pixels.
pub fn screenshot(page: &Path, png: &Path, height: u32) -> (u32, u32, Vec<u8>) {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = chromium();
    cmd.arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size=1500,{height}"))
        .arg(format!("file://{}", page.display()));
    let out = output_within_bound(cmd);
    assert!(
        png.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::fs::File::open(png).unwrap());
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

/// Pixels within a small distance of a colour.
pub fn count_near(rgb: &[u8], color: (u8, u8, u8)) -> usize {
    rgb.chunks(3)
        .filter(|p| {
            (p[0] as i32 - color.0 as i32).abs() < 24
                && (p[1] as i32 - color.1 as i32).abs() < 24
                && (p[2] as i32 - color.2 as i32).abs() < 24
        })
        .count()
}
