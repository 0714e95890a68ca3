//! Load beyond one process: a phase split across generator workers, each running the same
//! engine on its share from the same wall-clock start, merged second by second by adding
//! histograms (never averaging percentiles). The results directory, report and compare are the
//! same as for one generator, plus one row per worker.
//!
//! * [`split`]: users, spawn and arrival rates shared out (106 users over 4: 27/27/26/26).
//! * [`WorkerSpec`]: what `trialrunner worker` reads.
//! * [`merge`]: the workers' lossless per-second cells fed through the engine's own aggregation.
//! * [`local::LocalFleet`]: N worker processes on this host; [`aws`]: instances of an
//!   auto-scaling group started through Systems Manager, with S3 carrying specs and results
//!   ([`elf`]: what the binary shipped to them needs).
//!
//! What the operator must see of a worker is said once, here, for both fleets: a lost worker's
//! reason with the tail of its log, a worker that started late and by how much (terminal,
//! `summary.json`, and through it the report).

pub mod aws;
pub mod elf;
pub mod local;

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::load::aggregate::{Aggregator, CellLine, Window};
use crate::load::recorder::{Endpoint, Recorder, Slot};
use crate::load::Share;
use crate::results::{self, GeneratorHealth, RunSummary, WorkerRow};

use crate::trial::LoadPhase;

/// What one worker runs: its share of a phase and where the trial is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// `w1`, `w2`, …
    pub name: String,
    /// Its share of the phase.
    pub phase: LoadPhase,
    /// Its first user and the common start.
    pub share: Share,
    /// The trial file (its plain HTTP tasks and body files).
    pub trial: PathBuf,
    /// The environment file.
    pub environment: PathBuf,
    /// Engine threads (default: every core of the worker's host).
    #[serde(default)]
    pub threads: Option<usize>,
}

pub use crate::trial::share::split;

/// How a worker ended.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerEnd {
    /// It wrote its summary.
    Finished,
    /// It failed or stopped reporting; what is known.
    Lost(String),
}

/// A worker's files after the run.
#[derive(Debug, Clone)]
pub struct WorkerOutcome {
    /// Its name.
    pub name: String,
    /// Where its files are (its `cells.jsonl`, `endpoints.json`, `summary.json`, `worker.log`).
    pub dir: PathBuf,
    /// How it ended.
    pub end: WorkerEnd,
    /// Its share.
    pub phase: LoadPhase,
    /// What the process that ran it printed on failure (an SSM invocation's stderr): the
    /// reason when the worker's own log never came back.
    pub console: String,
}

/// A worker that starts this much after the fleet's common start is said to be late.
pub const LATE: f64 = 0.25;

/// The last lines of a log (or a command's output), each cut to a readable length: why a
/// worker failed, for the terminal, the report and `summary.json`.
pub fn log_tail(text: &str) -> Vec<String> {
    const LINES: usize = 10;
    const WIDTH: usize = 400;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(LINES)..]
        .iter()
        .map(|l| match l.char_indices().nth(WIDTH) {
            Some((at, _)) => format!("{}…", &l[..at]),
            None => l.to_string(),
        })
        .collect()
}

/// Reads a worker's cells; a torn last line (a killed worker) ends the reading.
fn read_cells(dir: &Path) -> Vec<CellLine> {
    let Ok(f) = std::fs::File::open(dir.join("cells.jsonl")) else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(|l| l.ok().and_then(|l| serde_json::from_str(&l).ok()))
        .collect()
}

fn read_summary(dir: &Path) -> Option<RunSummary> {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).ok()?).ok()
}

/// The generator health of a fleet: threads added, CPU, busy and waiting time weighted by
/// threads, the worst timer lag and own busy share, saturated (or on a busy machine) when any
/// worker was.
fn fleet_health(all: &[GeneratorHealth]) -> GeneratorHealth {
    let threads: usize = all.iter().map(|g| g.threads).sum();
    let weighted = |f: fn(&GeneratorHealth) -> f64| {
        all.iter().map(|g| f(g) * g.threads as f64).sum::<f64>() / threads.max(1) as f64
    };
    let worst = |f: fn(&GeneratorHealth) -> f64| all.iter().map(f).fold(0.0, f64::max);
    GeneratorHealth {
        cpu_pct: weighted(|g| g.cpu_pct),
        busy_pct: weighted(|g| g.busy_pct),
        wait_pct: weighted(|g| g.wait_pct),
        own_busy_pct: worst(|g| g.own_busy_pct),
        threads,
        timer_lag_p50_ms: worst(|g| g.timer_lag_p50_ms),
        timer_lag_p99_ms: worst(|g| g.timer_lag_p99_ms),
        max_timer_lag_ms: worst(|g| g.max_timer_lag_ms),
        own_timer_lag_p99_ms: worst(|g| g.own_timer_lag_p99_ms),
        cpu_us_per_request: weighted(|g| g.cpu_us_per_request),
        check_cpu_us_per_task: weighted(|g| g.check_cpu_us_per_task),
        machine_cpu_pct: worst(|g| g.machine_cpu_pct),
        saturated: all.iter().any(|g| g.saturated),
        machine_busy: all.iter().any(|g| g.machine_busy),
    }
}

/// What a merge gathers from the workers' summaries beside their cells.
#[derive(Default)]
struct Gathered {
    healths: Vec<GeneratorHealth>,
    ends: Vec<f64>,
    drain_s: f64,
    arrivals: Option<results::Arrivals>,
    interrupted: bool,
    /// Workers that started after the common start, and by how much (s).
    late: Vec<(String, f64)>,
}

impl Gathered {
    /// Feeds one worker's per-second cells into `rec`, gathers its summary and gives its row.
    fn absorb(&mut self, rec: &Recorder, w: &WorkerOutcome, start_unix: f64) -> WorkerRow {
        let (mut requests, mut failures) = (0, 0);
        for line in read_cells(&w.dir) {
            let cells: Option<Vec<_>> = line.cells.iter().map(|c| c.cell()).collect();
            let Some(cells) = cells else { break };
            for (c, ep) in cells.iter().zip(rec.endpoints()) {
                if ep.kind == crate::results::cells::Kind::Request {
                    requests += c.count();
                    failures += c.failures();
                }
            }
            rec.inject(
                line.unix.map_or(Slot::Drain, Slot::Second),
                &cells,
                line.users,
            );
        }
        let summary = read_summary(&w.dir);
        let late = summary
            .as_ref()
            .map(|s| s.started_unix - start_unix)
            .filter(|l| *l > LATE);
        if let Some(l) = late {
            self.late.push((w.name.clone(), l));
        }
        if let Some(s) = &summary {
            let unknown = rec.inject_failures(&s.failures);
            if !unknown.is_empty() {
                tracing::warn!("{}: failures naming unknown endpoints: {unknown:?}", w.name);
            }
            self.healths.push(s.generator.clone());
            self.ends.push(s.started_unix + s.duration_s);
            self.drain_s = self.drain_s.max(
                s.endpoints
                    .iter()
                    .map(|e| e.drain.seconds)
                    .fold(0.0, f64::max),
            );
            self.interrupted |= s.interrupted;
            if let Some(a) = &s.arrivals {
                self.arrivals.get_or_insert_with(Default::default).add(a);
            }
        }
        let (status, why) = match &w.end {
            WorkerEnd::Finished if summary.is_some() => ("finished", None),
            WorkerEnd::Finished => ("lost", Some("ended without its summary".to_string())),
            WorkerEnd::Lost(why) => ("lost", Some(why.clone())),
        };
        let tail = if why.is_some() {
            w.own_words()
        } else {
            Vec::new()
        };
        let message = why.map(|why| match reason_line(&tail) {
            Some(line) if !why.contains(line) => format!("{why}: {line}"),
            _ => why,
        });
        WorkerRow {
            name: w.name.clone(),
            users: w.phase.users,
            arrival_rate: w.phase.arrival.map(|a| a.rate.0),
            requests,
            failures,
            generator: summary.map(|s| s.generator).unwrap_or_default(),
            status: status.into(),
            message,
            log_tail: tail,
            late_s: late,
        }
    }
}

impl WorkerOutcome {
    /// Why it was lost, in its own words: the end of its log, else of its command's output.
    fn own_words(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.join("worker.log")).unwrap_or_default();
        match log_tail(&log) {
            t if t.is_empty() => log_tail(&self.console),
            t => t,
        }
    }
}

/// The line of a log's tail that says why: its last `error` line (hints follow it), else its
/// last line.
fn reason_line(tail: &[String]) -> Option<&str> {
    tail.iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.to_ascii_lowercase().starts_with("error"))
        .or_else(|| tail.last().map(|l| l.trim()))
}

/// Says on the terminal what the operator must know of a fleet's run: each lost worker with
/// the end of its log, each late one.
fn tell(run_id: &str, rows: &[WorkerRow], warnings: &[String]) {
    for r in rows.iter().filter(|r| r.status != "finished") {
        crate::terminal::say(&format!(
            "{run_id}: generator worker {} lost: {}",
            r.name,
            r.message.as_deref().unwrap_or("no reason known")
        ));
        for line in &r.log_tail {
            crate::terminal::say(&format!("    | {line}"));
        }
    }
    for w in warnings {
        crate::terminal::say(&format!("{run_id}: {w}"));
    }
}

/// Merges the workers' files of a phase that started at `start_unix` into `dir`: the same
/// per-second files, `stats.csv`, `failures.csv` and `summary.json` as one engine writes, from
/// the workers' histograms added second by second; one [`WorkerRow`] each. A lost worker's
/// seconds so far are merged and the run is marked partial, naming it. When no worker wrote
/// its endpoints, `fallback` (the phase's endpoints as the coordinator knows them) lets the
/// run's rows and reasons be written all the same; without one that is an error naming them.
pub fn merge(
    phase: &LoadPhase,
    start_unix: f64,
    workers: &[WorkerOutcome],
    dir: &Path,
    fallback: &[Endpoint],
) -> Result<RunSummary> {
    let endpoints: Vec<Endpoint> = workers
        .iter()
        .find_map(|w| {
            serde_json::from_slice(&std::fs::read(w.dir.join("endpoints.json")).ok()?).ok()
        })
        .or_else(|| (!fallback.is_empty()).then(|| fallback.to_vec()))
        .ok_or_else(|| {
            Error::Infra(format!(
                "{}: no generator worker produced results ({})",
                phase.run_id,
                lost_names(workers)
            ))
        })?;
    let rec = Recorder::detached(endpoints);
    let mut gathered = Gathered::default();
    let rows: Vec<WorkerRow> = workers
        .iter()
        .map(|w| gathered.absorb(&rec, w, start_unix))
        .collect();
    let Gathered {
        healths,
        ends,
        drain_s,
        arrivals,
        interrupted,
        late,
    } = gathered;
    let warnings: Vec<String> = late
        .iter()
        .map(|(name, s)| {
            format!(
                "generator worker {name} started {s:.2} s after the fleet's common start: the run's first seconds had less load than planned"
            )
        })
        .collect();
    // The window: the common start to the latest end a worker reported (the phase's length
    // when none did).
    let end = ends
        .iter()
        .copied()
        .fold(None, |m: Option<f64>, e| Some(m.map_or(e, |m| m.max(e))))
        .unwrap_or(start_unix + phase.duration.as_secs_f64());
    let window = Window {
        start: start_unix,
        warmup_end: start_unix + phase.warmup.as_secs_f64(),
        end,
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    // The engine's own aggregation, fed the merged cells: the same files, the same figures.
    let mut agg = Aggregator::create(dir, &rec, window)?;
    while (agg.next_second() as f64) < window.end {
        agg.flush_second(&rec)?;
    }
    let steady_s = agg.steady_seconds() as f64;
    let (endpoint_summaries, aggregated) = agg.finish(&rec, dir, drain_s)?;
    let lost: Vec<&WorkerRow> = rows.iter().filter(|r| r.status != "finished").collect();
    let partial = (!lost.is_empty()).then(|| {
        format!(
            "generator worker{} lost: {}; the results hold what the others measured and its seconds until then",
            if lost.len() > 1 { "s" } else { "" },
            lost.iter()
                .map(|r| format!("{} ({})", r.name, r.message.as_deref().unwrap_or("lost")))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    let summary = RunSummary {
        arrivals,
        steady_s,
        endpoints: endpoint_summaries,
        aggregated,
        failures: rec.failure_groups(),
        generator: fleet_health(&healths),
        interrupted,
        workers: rows,
        partial,
        warnings,
        ..crate::load::phase_summary(phase, start_unix, end)
    };
    results::write_json(&dir.join("summary.json"), &summary)?;
    tell(&phase.run_id, &summary.workers, &summary.warnings);
    Ok(summary)
}

/// A merged run under the trial's `on-generator-loss`: partial results are kept either way;
/// with `stop` (and no stop request already ending the campaign) the phase fails naming why.
pub fn after_loss(
    phase: &LoadPhase,
    summary: RunSummary,
    on_loss: crate::trial::model::GeneratorLoss,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<RunSummary> {
    match (&summary.partial, on_loss) {
        (Some(why), crate::trial::model::GeneratorLoss::Stop) if !cancel.is_cancelled() => {
            Err(Error::Infra(format!(
                "{}: {why} (the trial's on-generator-loss is stop; its results are kept)",
                phase.run_id
            )))
        }
        _ => Ok(summary),
    }
}

/// Each worker and how it ended, a lost one with the last line of its log (or its command's
/// output).
fn lost_names(workers: &[WorkerOutcome]) -> String {
    workers
        .iter()
        .map(|w| match &w.end {
            WorkerEnd::Finished => format!("{}: finished", w.name),
            WorkerEnd::Lost(m) => match reason_line(&w.own_words()) {
                Some(l) => format!("{}: {m}: {l}", w.name),
                None => format!("{}: {m}", w.name),
            },
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trial::model::SpawnSpec;
    use crate::trial::quantities::Rate;
    use std::time::Duration;

    fn phase(users: Option<u32>) -> LoadPhase {
        LoadPhase {
            run_id: "r".into(),
            iteration: 1,
            users,
            arrival: None,
            tasks: vec![crate::trial::TaskRef::Verify],
            duration: Duration::from_secs(10),
            spawn: SpawnSpec::Rate(Rate(10.6)),
            wait: Default::default(),
            warmup: Duration::ZERO,
            request_timeout: Duration::from_secs(5),
            nonce: Default::default(),
            fleet: true,
        }
    }

    /// A failed worker's reason is its error line, not the hint printed after it, and a long
    /// log is cut to its end.
    #[test]
    fn the_reason_of_a_lost_worker_is_its_error_line() {
        let mut log: Vec<String> = (0..30).map(|i| format!("line {i}")).collect();
        log.push("error: ../trial.yaml:11:5: http-tasks.upload.body-file: not found".into());
        log.push("    hint: paths are relative to the trial file".into());
        let tail = log_tail(&log.join("\n"));
        assert_eq!(tail.len(), 10);
        assert_eq!(
            tail.last().unwrap(),
            "    hint: paths are relative to the trial file"
        );
        assert_eq!(
            reason_line(&tail),
            Some("error: ../trial.yaml:11:5: http-tasks.upload.body-file: not found")
        );
        assert_eq!(reason_line(&log_tail("killed\n")), Some("killed"));
        assert_eq!(reason_line(&[]), None);
    }

    #[test]
    fn a_phase_spec_survives_the_trip_through_json() {
        let spec = WorkerSpec {
            name: "w1".into(),
            phase: phase(Some(5)),
            share: Share {
                first_user: 5,
                start_unix: 1.5e9,
            },
            trial: "t.yaml".into(),
            environment: "e.yaml".into(),
            threads: Some(2),
        };
        let back: WorkerSpec =
            serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(
            serde_json::to_value(&back.phase).unwrap(),
            serde_json::to_value(&spec.phase).unwrap()
        );
        assert_eq!(back.share, spec.share);
    }

    /// A fleet's generator figures: CPU and busy time weighted by each worker's threads (a
    /// 1-thread worker at 90 % and a 3-thread one at 10 % used 30 % of the fleet's 4 threads,
    /// not the 50 % a plain mean says), the worst timer lag, and saturated when any worker was,
    /// though the weighted figures alone would not say so.
    #[test]
    fn fleet_health_weights_cpu_by_threads_and_is_saturated_when_any_worker_is() {
        let worker = |threads, cpu_pct, busy_pct, lag_ms, saturated| GeneratorHealth {
            cpu_pct,
            busy_pct,
            threads,
            timer_lag_p50_ms: lag_ms / 4.0,
            timer_lag_p99_ms: lag_ms,
            max_timer_lag_ms: lag_ms * 2.0,
            check_cpu_us_per_task: cpu_pct,
            saturated,
            ..GeneratorHealth::default()
        };
        let fleet = fleet_health(&[
            worker(1, 90.0, 95.0, 3.0, true),
            worker(3, 10.0, 20.0, 12.0, false),
        ]);
        assert_eq!(fleet.threads, 4);
        assert_eq!(fleet.cpu_pct, (90.0 + 3.0 * 10.0) / 4.0);
        assert_eq!(fleet.busy_pct, (95.0 + 3.0 * 20.0) / 4.0);
        assert_eq!(fleet.check_cpu_us_per_task, 30.0);
        assert_eq!(
            (
                fleet.timer_lag_p50_ms,
                fleet.timer_lag_p99_ms,
                fleet.max_timer_lag_ms
            ),
            (3.0, 12.0, 24.0)
        );
        assert!(fleet.saturated, "one worker saturated: the fleet is");
        let calm = fleet_health(&[
            worker(1, 10.0, 20.0, 3.0, false),
            worker(1, 20.0, 30.0, 4.0, false),
        ]);
        assert!(!calm.saturated);
        assert_eq!(calm.cpu_pct, 15.0);
    }
}
