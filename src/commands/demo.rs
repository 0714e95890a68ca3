//! `trialrunner demo`: the embedded default (stand-in in-process, scaled-down seed trials).

use std::path::PathBuf;

use super::runtime;
use crate::error::{exit, Error, Result};
use crate::exec::{signals, Interrupts};

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write results (default demo-results/).
    #[arg(long, default_value = "demo-results")]
    pub out: PathBuf,
    /// The live dashboard.
    #[command(flatten)]
    pub live: super::live::DashboardArgs,
}

/// Runs the demo and prints its reports.
pub fn run(args: Args) -> Result<i32> {
    let live = args.live.addr()?;
    let interrupts = Interrupts::default();
    let outcome = runtime().block_on(async {
        signals::watch(&interrupts);
        let dashboard = super::live::start(live).await?;
        let outcome =
            crate::demo::run_watched(&args.out, &interrupts, true, dashboard.as_ref()).await;
        let reports = outcome
            .as_ref()
            .map(|o| o.reports.clone())
            .unwrap_or_default();
        super::live::finish(dashboard, reports).await;
        outcome
    });
    let outcome = match outcome {
        Ok(o) => o,
        Err(Error::Interrupted) => return Ok(interrupts.exit_code()),
        Err(e) => return Err(e),
    };
    for dir in &outcome.results {
        if let Ok(md) = std::fs::read_to_string(dir.join("report.md")) {
            crate::outln!("{}", headline(&md));
        }
        crate::outln!("results: {}", dir.display());
    }
    for report in &outcome.reports {
        crate::outln!("report: {}", report.display());
    }
    Ok(exit::OK)
}

/// A report's head for the terminal: its title, figures and findings, up to the first table
/// section (the rest is in the report).
fn headline(md: &str) -> String {
    let mut out = Vec::new();
    let mut sections = 0;
    for line in md.lines() {
        if line.starts_with("## ") {
            sections += 1;
            if sections > 1 {
                break;
            }
        }
        out.push(line);
    }
    out.join("\n").trim_end().to_string() + "\n"
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_headline_is_the_title_figures_and_findings() {
        let md = "# report: t\n\n- **runs**: 2\n\n## Findings\n\n- flat at 40/s\n\n## Summary: verify\n\n| a |\n";
        assert_eq!(
            super::headline(md),
            "# report: t\n\n- **runs**: 2\n\n## Findings\n\n- flat at 40/s\n"
        );
    }
}
