//! A comparison as text: the terminal table (per endpoint, then its steps, then the
//! thresholds), the ✓/✗ line per threshold check, and JUnit XML for CI.

use std::fmt::Write as _;

use super::compare::{Check, Comparison, EndpointDelta};
use super::format::pct;
use super::stats;

/// A ✓/✗ line per threshold check, as k6 ends a test.
pub fn checks_text(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        let base = c
            .baseline
            .map(|b| format!(" (baseline {} {}, {})", fmt(b), c.unit, pct(b, c.value)))
            .unwrap_or_default();
        let change = c
            .significance
            .as_ref()
            .map(|t| format!("; change {t}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{} {:<28} {}: {} {}{base}{change}",
            if c.passed { "✓" } else { "✗" },
            c.threshold,
            c.endpoint,
            fmt(c.value),
            c.unit
        );
    }
    s
}

fn fmt(v: f64) -> String {
    super::format::fmt_ms(v)
}

impl Comparison {
    /// A plain-text table: per endpoint over all matched runs (figures pooled, each figure's
    /// step verdicts counted), then each of its steps with its own changes tested, then the
    /// thresholds.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}\n", stats::METHOD);
        let _ = writeln!(
            s,
            "{:<52} {:>16} {:>18} {:>18} {:>12}",
            "endpoint (all matched runs), then per step", "rps", "p95 ms", "p99 ms", "failures %"
        );
        let row = |s: &mut String, label: &str, d: &EndpointDelta| {
            let (b, c) = (&d.base, &d.contender);
            let cell = |x: f64, y: f64| format!("{} ({})", fmt(y), pct(x, y));
            let _ = writeln!(
                s,
                "{:<52} {:>16} {:>18} {:>18} {:>12}",
                label.chars().take(52).collect::<String>(),
                cell(b.rps, c.rps),
                cell(b.p95, c.p95),
                cell(b.p99, c.p99),
                format!("{:.2}", c.failure_rate)
            );
            let _ = writeln!(s, "{:<6}{}", "", d.note);
        };
        for d in &self.endpoints {
            row(&mut s, &d.endpoint, d);
            if d.changes.len() > 1 {
                for step in self
                    .steps
                    .iter()
                    .filter(|x| x.task == d.task && x.endpoint == d.endpoint)
                {
                    row(&mut s, &format!("  {} ({})", step.run, step.load), step);
                }
            }
        }
        s.push_str(&checks_text(&self.checks));
        s
    }

    /// JUnit XML: one test case per threshold and endpoint.
    pub fn junit(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let failures = self.checks.iter().filter(|c| !c.passed).count();
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(x, "<testsuites><testsuite name=\"trialrunner.thresholds\" tests=\"{}\" failures=\"{failures}\" errors=\"0\">", self.checks.len());
        for c in &self.checks {
            let _ = write!(
                x,
                "<testcase classname=\"{}\" name=\"{}\">",
                esc(&c.endpoint),
                esc(&c.threshold)
            );
            if !c.passed {
                let _ = write!(
                    x,
                    "<failure message=\"{}\">value {:.3}{}{}</failure>",
                    esc(&format!("{} broke", c.threshold)),
                    c.value,
                    c.baseline
                        .map(|b| format!(", baseline {b:.3}"))
                        .unwrap_or_default(),
                    c.significance
                        .as_ref()
                        .map(|t| format!("; change {}", esc(t)))
                        .unwrap_or_default()
                );
            }
            x.push_str("</testcase>\n");
        }
        x.push_str("</testsuite></testsuites>\n");
        x
    }
}
