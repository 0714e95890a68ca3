//! Response-time distributions, as Locust's and Gatling's reports give them: per endpoint of a
//! task (a task whose unit is one request shown once), the share of its steady requests in each
//! latency bucket, one line per run (load step or iteration), and a table of its percentiles
//! from 50 % to 99.99 % per run, from the runs' kept histograms.

use super::charts::by_endpoint;
use super::svg::{Chart, Series};
use super::tables::{fmt_ms, Table};
use crate::results::cells::decode;
use crate::results::RunSummary;

/// The percentiles the table lists.
pub const PERCENTILES: [(f64, &str); 7] = [
    (0.5, "p50"),
    (0.75, "p75"),
    (0.9, "p90"),
    (0.95, "p95"),
    (0.99, "p99"),
    (0.999, "p99.9"),
    (0.9999, "p99.99"),
];

/// Buckets of a distribution chart.
const BUCKETS: usize = 40;

/// A task's distributions: one chart per endpoint, and one table of percentiles for all.
pub fn distributions(runs: &[RunSummary], task: &str) -> (Vec<String>, Table) {
    let mut charts = Vec::new();
    let mut header: Vec<String> = ["endpoint", "run", "load", "requests"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(PERCENTILES.iter().map(|(_, n)| format!("{n} ms")));
    header.push("max ms".into());
    let mut table = Table {
        title: format!("{task}: response-time percentiles"),
        note: "Steady successes of each run, from its kept histogram.".into(),
        header,
        rows: Vec::new(),
    };
    let run_of = |e: &crate::results::EndpointSummary| {
        runs.iter()
            .find(|r| r.endpoints.iter().any(|x| std::ptr::eq(x, e)))
    };
    for (name, points) in by_endpoint(runs, task) {
        let hists: Vec<(&RunSummary, hdrhistogram::Histogram<u64>)> = points
            .iter()
            .filter_map(|(_, e)| {
                let h = decode(&e.histograms.steady).filter(|h| !h.is_empty())?;
                Some((run_of(e)?, h))
            })
            .collect();
        if hists.is_empty() {
            continue;
        }
        for (r, h) in &hists {
            let mut row = vec![
                name.clone(),
                r.run_id.clone(),
                r.load_label(),
                h.len().to_string(),
            ];
            row.extend(
                PERCENTILES
                    .iter()
                    .map(|(q, _)| fmt_ms(h.value_at_quantile(*q) as f64 / 1000.0)),
            );
            row.push(fmt_ms(h.max() as f64 / 1000.0));
            table.rows.push(row);
        }
        let top_us = hists
            .iter()
            .map(|(_, h)| h.value_at_quantile(0.999))
            .max()
            .unwrap_or(1)
            .max(1);
        let width = (top_us as f64 / BUCKETS as f64).max(1.0);
        let mut chart = Chart::new(
            format!("{name}: response-time distribution"),
            "response time, ms (steady successes, up to the highest p99.9)",
            format!(
                "% of requests per {} ms",
                super::svg::fmt_num(width / 1000.0)
            ),
        );
        for (r, h) in &hists {
            let total = h.len() as f64;
            let step = width as u64;
            let mut points: Vec<(f64, f64)> = h
                .iter_linear(step)
                .take(BUCKETS)
                .map(|v| {
                    let mid = v.value_iterated_to() as f64 - step as f64 / 2.0;
                    (
                        mid / 1000.0,
                        100.0 * v.count_since_last_iteration() as f64 / total,
                    )
                })
                .collect();
            // Buckets past the run's slowest request hold none.
            while points.len() < BUCKETS {
                let mid = (points.len() as f64 + 0.5) * step as f64 / 1000.0;
                points.push((mid, 0.0));
            }
            chart.series.push(Series::line(
                format!("{} ({})", r.run_id, r.load_label()),
                points,
            ));
        }
        charts.push(chart.to_svg());
    }
    (charts, table)
}
