//! Analysis and presentation of results: thresholds, comparisons, HTML and Markdown reports.

pub mod thresholds;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::exec::StoreSnapshot;
use crate::results::{self, ResultsDir, RunSummary};

/// Builds `report.md` for a results directory and returns its path.
pub fn build(dir: &Path) -> Result<PathBuf> {
    let rd = ResultsDir::open(dir)?;
    let runs = rd.summaries()?;
    let stores: Vec<StoreSnapshot> =
        results::read_json(&dir.join("stores.json")).unwrap_or_default();
    let md = markdown(dir, &runs, &stores);
    let path = dir.join("report.md");
    results::write_atomic(&path, md.as_bytes())?;
    Ok(path)
}

/// The per-endpoint summary table of every run, as Markdown.
pub fn markdown(dir: &Path, runs: &[RunSummary], stores: &[StoreSnapshot]) -> String {
    let mut s = String::new();
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("results");
    let _ = writeln!(s, "# trialrunner report: {name}\n");
    let _ = writeln!(s, "| run | users | endpoint | requests | failures | rps | p50 ms | p95 ms | p99 ms | max ms |");
    let _ = writeln!(s, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        let who = r
            .users
            .map(|u| u.to_string())
            .or(r.arrival_rate.map(|a| format!("{a}/s")))
            .unwrap_or_default();
        for e in &r.endpoints {
            let f = &e.total;
            let _ = writeln!(
                s,
                "| {} | {who} | {} {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                r.run_id,
                e.method,
                e.name,
                f.count,
                f.failures,
                f.rps,
                f.p50_ms,
                f.p95_ms,
                f.p99_ms,
                f.max_ms
            );
        }
    }
    let failures: Vec<_> = runs
        .iter()
        .flat_map(|r| r.failures.iter().map(move |f| (r, f)))
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(
            s,
            "\n## Failures\n\n| run | endpoint | class | message | count |\n|---|---|---|---|---:|"
        );
        for (r, f) in failures {
            let _ = writeln!(
                s,
                "| {} | {} {} | {} | {} | {} |",
                r.run_id,
                f.method,
                f.name,
                f.class,
                f.message.replace('|', "\\|"),
                f.count
            );
        }
    }
    if !stores.is_empty() {
        let _ = writeln!(s, "\n## Store counts\n\n| when | rows |\n|---|---|");
        for st in stores {
            let rows: Vec<String> = st.counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
            let _ = writeln!(s, "| {} | {} |", st.label, rows.join(", "));
        }
    }
    let saturated: Vec<&str> = runs
        .iter()
        .filter(|r| r.generator.saturated)
        .map(|r| r.run_id.as_str())
        .collect();
    if !saturated.is_empty() {
        let _ = writeln!(
            s,
            "\n**Generator saturated** in: {} (results may understate the target).",
            saturated.join(", ")
        );
    }
    s
}
