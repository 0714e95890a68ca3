//! The generator judging itself: second by second (`generator.csv`) and over a run
//! ([`GeneratorHealth`]), from what its own threads did, never from what the process or the
//! machine did. Busy, waiting for a core and late timers are told apart:
//!
//! * *own busy*: the time its threads ran over the time they could have run (wall time less
//!   their wait for a core). A generator that always has work is at 100 % however little CPU a
//!   busy machine gives it; an idle one stays low however busy the machine is.
//! * *own timer lag*: how late a 100 ms timer fired, less the time its thread waited for a
//!   core meanwhile: what the generator's own work delayed.
//! * *waiting for a core* and the lag it explains are the machine's, said apart
//!   (`machine_busy`).

use std::path::Path;
use std::time::Instant;

use super::pool::{EnginePool, Lateness, SchedTimes};
use crate::error::Result;
use crate::results::{self, GeneratorHealth};

/// `/proc/stat`'s first line: (busy, total) clock ticks of every core.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is within user).
    let total: u64 = f.iter().take(8).sum();
    let idle = f.get(3)? + f.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Percent of `part` in `whole`, 0 when `whole` is nothing.
fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part / whole
    } else {
        0.0
    }
}

/// The engine's threads from one instant to another, as shares of their wall time.
#[derive(Debug, Clone, Copy, Default)]
struct Shares {
    cpu_pct: f64,
    busy_pct: f64,
    wait_pct: f64,
    own_busy_pct: f64,
}

impl Shares {
    /// From CPU and scheduler figures over `wall_s` seconds of `threads` threads.
    fn of(cpu_s: f64, sched: SchedTimes, wall_s: f64, threads: usize) -> Shares {
        let span = wall_s.max(1e-9) * threads.max(1) as f64;
        // The scheduler's running time is finer than the CPU ticks; either may lag the other.
        let ran = sched.run_s.max(cpu_s);
        let waited = sched.wait_s.min(span - ran).max(0.0);
        // The time the threads wanted nothing: what is left of the span.
        let slept = (span - ran - waited).max(0.0);
        Shares {
            cpu_pct: pct(cpu_s, span),
            busy_pct: pct(ran + waited, span).min(100.0),
            wait_pct: pct(waited, span),
            own_busy_pct: pct(ran, ran + slept),
        }
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// What the generator's threads and the machine had done at an instant.
#[derive(Clone, Copy)]
struct Reading {
    at: Instant,
    cpu_s: f64,
    sched: SchedTimes,
    machine: Option<(u64, u64)>,
}

impl Reading {
    fn now(pool: &EnginePool) -> Reading {
        Reading {
            at: Instant::now(),
            cpu_s: pool.cpu_s(),
            sched: pool.sched(),
            machine: machine_ticks(),
        }
    }
}

/// The generator's figures from a start to an end: its threads' CPU and scheduling, the
/// machine's CPU.
pub struct GeneratorWatch {
    start: Reading,
    end: Option<Reading>,
}

impl GeneratorWatch {
    /// Starts watching the pool's threads now.
    pub fn start(pool: &EnginePool) -> GeneratorWatch {
        GeneratorWatch {
            start: Reading::now(pool),
            end: None,
        }
    }

    /// Ends the span watched now (the health reads up to here, however late it is asked).
    pub fn stop(&mut self, pool: &EnginePool) {
        self.end = Some(Reading::now(pool));
    }

    /// The generator's health over the span (up to now if not stopped): `lag` is the timer
    /// lateness over the same span, `requests` and `tasks` what it sent and ran, `check_cpu_ns`
    /// what the semantic checks cost.
    pub fn health(
        &self,
        pool: &EnginePool,
        lag: &Lateness,
        requests: u64,
        tasks: u64,
        check_cpu_ns: u64,
    ) -> GeneratorHealth {
        let (a, b) = (self.start, self.end.unwrap_or_else(|| Reading::now(pool)));
        let cpu_s = b.cpu_s - a.cpu_s;
        let sched = SchedTimes {
            run_s: b.sched.run_s - a.sched.run_s,
            wait_s: b.sched.wait_s - a.sched.wait_s,
            slices: b.sched.slices.saturating_sub(a.sched.slices),
        };
        let wall_s = (b.at - a.at).as_secs_f64();
        let shares = Shares::of(cpu_s, sched, wall_s, pool.threads());
        let machine_cpu_pct = match (a.machine, b.machine) {
            (Some((b0, t0)), Some((b1, t1))) => pct((b1 - b0) as f64, (t1 - t0) as f64),
            _ => 0.0,
        };
        let q = |h: &hdrhistogram::Histogram<u64>, q: f64| {
            if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_quantile(q))
            }
        };
        GeneratorHealth {
            cpu_pct: shares.cpu_pct,
            busy_pct: shares.busy_pct,
            wait_pct: shares.wait_pct,
            own_busy_pct: shares.own_busy_pct,
            threads: pool.threads(),
            timer_lag_p50_ms: q(&lag.all, 0.5),
            timer_lag_p99_ms: q(&lag.all, 0.99),
            max_timer_lag_ms: q(&lag.all, 1.0),
            own_timer_lag_p99_ms: q(&lag.own, 0.99),
            cpu_us_per_request: if requests == 0 {
                0.0
            } else {
                cpu_s * 1e6 / requests as f64
            },
            check_cpu_us_per_task: check_cpu_ns as f64 / 1000.0 / tasks.max(1) as f64,
            machine_cpu_pct,
            saturated: false,
            machine_busy: false,
        }
        .judge()
    }
}

/// `generator.csv`: the engine's own CPU, scheduling and timer lag, second by second; and the
/// run's timer lateness so far.
pub struct GeneratorSeconds {
    file: results::AppendFile,
    last: GeneratorWatch,
    /// The run's timer lateness so far.
    pub lag: Lateness,
}

impl GeneratorSeconds {
    /// The file's columns (the last three appended after the first five: older readers read
    /// on).
    pub const HEADER: &'static str = "unix,cpu_pct,timer_lag_p50_ms,timer_lag_p99_ms,timer_lag_max_ms,wait_pct,own_busy_pct,own_timer_lag_p99_ms\n";

    /// Starts `generator.csv` in `dir`, counting from now.
    pub fn create(dir: &Path, pool: &EnginePool) -> Result<GeneratorSeconds> {
        let mut file = results::AppendFile::create(&dir.join("generator.csv"))?;
        file.write(Self::HEADER)?;
        Ok(GeneratorSeconds {
            file,
            last: GeneratorWatch::start(pool),
            lag: Lateness::default(),
        })
    }

    /// One second's row from the pool's counters.
    pub fn second(&mut self, unix: i64, pool: &EnginePool) {
        let lag = pool.take_lag();
        let h = self.last.health(pool, &lag, 0, 0, 0);
        self.last = GeneratorWatch::start(pool);
        let _ = self.file.write(&format!(
            "{unix},{:.1},{:.3},{:.3},{:.3},{:.1},{:.1},{:.3}\n",
            h.cpu_pct,
            h.timer_lag_p50_ms,
            h.timer_lag_p99_ms,
            h.max_timer_lag_ms,
            h.wait_pct,
            h.own_busy_pct,
            h.own_timer_lag_p99_ms
        ));
        let _ = self.file.flush();
        self.lag.add(&lag);
    }

    /// The run's timer lateness, the pool's last counts included; the file flushed.
    pub fn finish(&mut self, pool: &EnginePool) -> &Lateness {
        self.lag.add(&pool.take_lag());
        let _ = self.file.flush();
        &self.lag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_generator_on_a_busy_machine_is_not_busy_and_a_starved_busy_one_is() {
        // Idle: ran 2 ms and waited 40 ms for a core in a second.
        let idle = Shares::of(
            0.002,
            SchedTimes {
                run_s: 0.002,
                wait_s: 0.04,
                slices: 20,
            },
            1.0,
            1,
        );
        assert!(idle.own_busy_pct < 1.0, "{idle:?}");
        assert!((idle.wait_pct - 4.0).abs() < 1e-9, "{idle:?}");
        // Always ready, given half a core by a neighbour: busy by its own work all the time.
        let starved = Shares::of(
            0.5,
            SchedTimes {
                run_s: 0.5,
                wait_s: 0.5,
                slices: 400,
            },
            1.0,
            1,
        );
        assert!(starved.own_busy_pct > 99.0, "{starved:?}");
        assert!((starved.cpu_pct - 50.0).abs() < 1e-9, "{starved:?}");
    }

    #[test]
    fn the_verdicts_read_their_own_figures() {
        let h = GeneratorHealth {
            own_busy_pct: 3.0,
            wait_pct: 4.0,
            timer_lag_p99_ms: 70.0,
            own_timer_lag_p99_ms: 1.0,
            ..GeneratorHealth::default()
        }
        .judge();
        assert!(!h.saturated && h.machine_busy, "{h:?}");
        let h = GeneratorHealth {
            own_busy_pct: 97.0,
            ..GeneratorHealth::default()
        }
        .judge();
        assert!(h.saturated && !h.machine_busy, "{h:?}");
        assert!(h.verdict_line().starts_with("generator saturated"));
    }
}
