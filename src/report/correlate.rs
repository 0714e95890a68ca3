//! Correlating client-side latency with the cloud on one time axis.
//!
//! A CloudWatch datapoint covers its period `[t, t+60)`; the client's requests are pooled into
//! the same buckets (their per-second histograms merged, never a mean of percentiles), so the
//! pairs compared are what both sides saw in the same minute. The lag that best aligns DB
//! connections and p95 is searched in both directions, whole periods at a time, and every
//! finding states `n`, the number of real datapoints behind it: too few, and nothing is claimed.
//! Failures near instance joins and warm-up against steady state are per second.

use serde::Serialize;

/// One CloudWatch period with the client's figures for the same span.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Minute {
    /// Start of the period on the generator's clock (Unix seconds).
    pub t: f64,
    /// DB connections in the period.
    pub db: f64,
    /// The client's p95 over the period (worst endpoint, pooled), when it ran through it.
    pub p95: Option<f64>,
}

/// What a run's signals show.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Correlation {
    /// The periods compared.
    pub minutes: Vec<Minute>,
    /// Peak DB connections.
    pub peak_db: Option<f64>,
    /// Mean DB connections.
    pub mean_db: Option<f64>,
    /// p95 (ms, worst endpoint) in the period of peak DB connections.
    pub p95_at_db_peak: Option<f64>,
    /// Median of the periods' p95.
    pub p95_median: Option<f64>,
    /// The lag that aligns them best, in periods (positive: p95 follows DB connections).
    pub best_lag_periods: Option<i64>,
    /// Pearson r at that lag.
    pub best_r: Option<f64>,
    /// Pairs behind `best_r`.
    pub n: usize,
    /// Failures within the join window of an instance joining.
    pub failures_near_join: u64,
    /// Failures elsewhere.
    pub failures_elsewhere: u64,
    /// Failures per second near joins ÷ elsewhere.
    pub join_concentration: Option<f64>,
    /// Median p95 during warm-up and after.
    pub p95_warmup_vs_steady: Option<(f64, f64)>,
    /// Error-log lines per pattern over the run's window (every log group searched).
    pub error_lines: std::collections::BTreeMap<String, u64>,
    /// The client's p95 over the whole run (ms, worst endpoint, pooled).
    pub p95_run: Option<f64>,
    /// Plain-language findings.
    pub findings: Vec<String>,
}

/// Half-width of the window around an instance joining, seconds.
pub const JOIN_WINDOW_S: f64 = 40.0;
/// The largest lag searched, in periods (each way).
pub const MAX_LAG_PERIODS: i64 = 3;
/// Fewest pairs for a claim about DB connections and p95.
pub const MIN_PAIRS: usize = 6;
fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Pearson correlation of paired samples (at least three pairs).
pub fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    let n = pairs.len() as f64;
    if n < 3.0 {
        return None;
    }
    let (mx, my) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Pairs (DB connections of period i, p95 of period i + lag) over runs of consecutive periods.
fn lagged(series: &[Vec<Minute>], lag: i64) -> Vec<(f64, f64)> {
    let mut pairs = Vec::new();
    for minutes in series {
        for (i, m) in minutes.iter().enumerate() {
            let j = i as i64 + lag;
            if j < 0 || j >= minutes.len() as i64 {
                continue;
            }
            if let Some(p) = minutes[j as usize].p95 {
                pairs.push((m.db, p));
            }
        }
    }
    pairs
}

/// The best lag over one or more runs' periods: (lag, r, n).
pub fn best_lag(series: &[Vec<Minute>]) -> Option<(i64, f64, usize)> {
    let mut best: Option<(i64, f64, usize)> = None;
    for lag in -MAX_LAG_PERIODS..=MAX_LAG_PERIODS {
        let pairs = lagged(series, lag);
        if let Some(r) = pearson(&pairs) {
            // Prefer the smaller lag when two are as good.
            let better = best.is_none_or(|(bl, br, _)| {
                r > br + 1e-9 || ((r - br).abs() <= 1e-9 && lag.abs() < bl.abs())
            });
            if better {
                best = Some((lag, r, pairs.len()));
            }
        }
    }
    best
}

/// Correlates a run's periods (DB connections and pooled p95) and its per-second failures with
/// instance joins. `failures[i]` and `p95_seconds[i]` describe second `i` of the run; `joins`
/// is (instance, seconds since start it became InService).
pub fn correlate(
    minutes: Vec<Minute>,
    p95_seconds: &[Option<f64>],
    failures: &[f64],
    warmup_s: f64,
    joins: &[(String, f64)],
) -> Correlation {
    let mut c = Correlation {
        p95_median: median(&mut minutes.iter().filter_map(|m| m.p95).collect::<Vec<_>>()),
        ..Default::default()
    };
    if let Some(peak) = minutes.iter().copied().max_by(|a, b| a.db.total_cmp(&b.db)) {
        c.peak_db = Some(peak.db);
        c.mean_db = Some(minutes.iter().map(|m| m.db).sum::<f64>() / minutes.len() as f64);
        c.p95_at_db_peak = peak.p95;
    }
    let series = vec![minutes.clone()];
    if let Some((lag, r, n)) = best_lag(&series) {
        c.best_lag_periods = Some(lag);
        c.best_r = Some(r);
        c.n = n;
    } else {
        c.n = lagged(&series, 0).len();
    }
    c.minutes = minutes;
    // Failures near instance joins.
    let near = |t: f64| joins.iter().any(|(_, j)| (t - j).abs() <= JOIN_WINDOW_S);
    let near_seconds = (0..failures.len()).filter(|t| near(*t as f64)).count();
    for (t, f) in failures.iter().enumerate() {
        if near(t as f64) {
            c.failures_near_join += *f as u64;
        } else {
            c.failures_elsewhere += *f as u64;
        }
    }
    if !joins.is_empty() && near_seconds > 0 {
        let rate_in = c.failures_near_join as f64 / near_seconds as f64;
        let out_seconds = failures.len() - near_seconds;
        let rate_out = if out_seconds > 0 {
            c.failures_elsewhere as f64 / out_seconds as f64
        } else {
            0.0
        };
        c.join_concentration = Some(if rate_out > 0.0 {
            rate_in / rate_out
        } else if rate_in > 0.0 {
            f64::INFINITY
        } else {
            1.0
        });
    }
    // Warm-up against steady state.
    let w = warmup_s as usize;
    let n = p95_seconds.len();
    if w > 0 && w < n {
        if let (Some(a), Some(b)) = (
            median(
                &mut p95_seconds[..w]
                    .iter()
                    .flatten()
                    .copied()
                    .collect::<Vec<_>>(),
            ),
            median(
                &mut p95_seconds[w..]
                    .iter()
                    .flatten()
                    .copied()
                    .collect::<Vec<_>>(),
            ),
        ) {
            c.p95_warmup_vs_steady = Some((a, b));
        }
    }
    c.findings = findings(&c, joins);
    c
}

/// What a DB ↔ p95 relation over `n` pairs says, in a sentence (or that `n` is too small).
fn db_finding(
    r: Option<f64>,
    lag: Option<i64>,
    n: usize,
    peak: f64,
    at_peak: Option<f64>,
    med: Option<f64>,
) -> String {
    if n < MIN_PAIRS {
        return format!(
            "too few CloudWatch datapoints (n = {n}, under {MIN_PAIRS}) to relate DB connections to p95"
        );
    }
    match (r, lag) {
        (Some(r), Some(lag)) if r >= 0.5 => {
            let rise = match (at_peak, med) {
                (Some(a), Some(m)) if m > 0.0 => format!(
                    "p95 was {:.1}× its median in the minute DB connections peaked at {peak:.0}",
                    a / m
                ),
                _ => format!("DB connections peaked at {peak:.0}"),
            };
            let when = match lag {
                0 => "in the same minute".to_string(),
                l if l > 0 => format!("p95 following by {l} min"),
                l => format!("p95 leading by {} min", -l),
            };
            format!("{rise}; DB connections and p95 move together, {when} (r = {r:.2}, n = {n})")
        }
        (Some(r), _) => {
            format!("no clear relation between DB connections and p95 (best r = {r:.2}, n = {n})")
        }
        _ => format!("DB connections did not vary: nothing to relate p95 to (n = {n})"),
    }
}

fn findings(c: &Correlation, joins: &[(String, f64)]) -> Vec<String> {
    let mut out = Vec::new();
    // Too few periods in one run is said once, for the trial (see `across_runs`).
    if let Some(peak) = c.peak_db.filter(|_| c.n >= MIN_PAIRS) {
        out.push(db_finding(
            c.best_r,
            c.best_lag_periods,
            c.n,
            peak,
            c.p95_at_db_peak,
            c.p95_median,
        ));
    }
    let total = c.failures_near_join + c.failures_elsewhere;
    if let Some(k) = c.join_concentration {
        if total > 0 && k >= 3.0 {
            let who: Vec<&str> = joins.iter().map(|(i, _)| i.as_str()).collect();
            out.push(format!(
                "{total} failures, {} within {JOIN_WINDOW_S:.0} s of {} becoming InService",
                c.failures_near_join,
                who.join(", ")
            ));
        } else if total > 0 {
            out.push(format!(
                "{total} failures, not concentrated around instance joins ({} near, {} elsewhere)",
                c.failures_near_join, c.failures_elsewhere
            ));
        }
    }
    // The warm-up against steady state is the trial's finding on the start of runs
    // (`findings::start_of_runs`), said once across the runs rather than per run.
    out
}

/// The trial-level view: failures near joins across all runs, the worst DB peak, and DB
/// connections against p95 over every run's periods together (more pairs than any one run).
pub fn across_runs(runs: &[(String, Correlation)]) -> Vec<String> {
    let mut out = Vec::new();
    let near: u64 = runs.iter().map(|(_, c)| c.failures_near_join).sum();
    let elsewhere: u64 = runs.iter().map(|(_, c)| c.failures_elsewhere).sum();
    // One run already says it for itself.
    let with_joins = runs
        .iter()
        .filter(|(_, c)| c.join_concentration.is_some())
        .count();
    if near + elsewhere > 0 && with_joins > 1 {
        out.push(format!("across the trial: {} failures, {near} within {JOIN_WINDOW_S:.0} s of an instance joining", near + elsewhere));
    }
    out.extend(error_patterns_against_p95(runs));
    let series: Vec<Vec<Minute>> = runs.iter().map(|(_, c)| c.minutes.clone()).collect();
    let all: Vec<Minute> = series.iter().flatten().copied().collect();
    if let Some(peak) = all.iter().copied().max_by(|a, b| a.db.total_cmp(&b.db)) {
        let (lag, r, n) = match best_lag(&series) {
            Some((l, r, n)) => (Some(l), Some(r), n),
            None => (None, None, lagged(&series, 0).len()),
        };
        let med = median(&mut all.iter().filter_map(|m| m.p95).collect::<Vec<_>>());
        out.push(if n < MIN_PAIRS {
            format!(
                "DB connections against p95: not judged: CloudWatch's periods are 60 s and the runs covered {n} of them with client figures (at least {MIN_PAIRS} needed); longer runs would give more"
            )
        } else {
            format!(
                "across the trial: {}",
                db_finding(r, lag, n, peak.db, peak.p95, med)
            )
        });
    }
    out
}

/// Each error pattern the logs showed in some runs and not in others, against the client's p95
/// in those runs: the runs' median p95 with the pattern and without it, and whether p95 rose
/// with it (the 2025 campaign's "too many clients" as load grew).
fn error_patterns_against_p95(runs: &[(String, Correlation)]) -> Vec<String> {
    let patterns: std::collections::BTreeSet<&String> = runs
        .iter()
        .flat_map(|(_, c)| {
            c.error_lines
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(p, _)| p)
        })
        .collect();
    let mut out = Vec::new();
    for pattern in patterns {
        let lines = |c: &Correlation| c.error_lines.get(pattern).copied().unwrap_or(0);
        let (with, without): (Vec<_>, Vec<_>) = runs.iter().partition(|(_, c)| lines(c) > 0);
        let total: u64 = with.iter().map(|(_, c)| lines(c)).sum();
        let each = |rs: &[&(String, Correlation)], with_lines: bool| {
            rs.iter()
                .map(|(r, c)| {
                    let p95 = c
                        .p95_run
                        .map(|p| format!("p95 {p:.1} ms"))
                        .unwrap_or_else(|| "no p95".into());
                    if with_lines {
                        format!("{r}: {} lines, {p95}", lines(c))
                    } else {
                        format!("{r}: {p95}")
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let head = format!(
            "\"{pattern}\" in {total} log lines, in {} of {} runs ({})",
            with.len(),
            runs.len(),
            each(&with, true)
        );
        // The verdict orders the runs, so it reads the same whichever runs a campaign has:
        // p95 in every run with the pattern above p95 in every run without it.
        let low_with = with.iter().filter_map(|(_, c)| c.p95_run).reduce(f64::min);
        let high_without = without
            .iter()
            .filter_map(|(_, c)| c.p95_run)
            .reduce(f64::max);
        out.push(match (low_with, high_without) {
            (Some(a), Some(b)) if a > b => format!(
                "{head}; p95 rose with it: every run with it above every run without ({})",
                each(&without, false)
            ),
            (Some(_), Some(_)) => format!(
                "{head}; p95 did not rise with it: some run without it was as slow ({})",
                each(&without, false)
            ),
            _ => format!("{head}; no run without it to compare p95 with"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 15 minutes: DB connections swell around minute 5; p95 follows one minute later.
    fn seeded() -> (Vec<Minute>, Vec<f64>, Vec<(String, f64)>) {
        let db_at = |m: f64| 20.0 + 50.0 * (-((m - 5.0) / 1.5).powi(2)).exp();
        let minutes = (0..15)
            .map(|m| Minute {
                t: 60.0 * m as f64,
                db: db_at(m as f64),
                p95: Some(100.0 + 10.0 * (db_at(m as f64 - 1.0) - 20.0)),
            })
            .collect();
        let failures: Vec<f64> = (0..900)
            .map(|t| if (590..620).contains(&t) { 1.0 } else { 0.0 })
            .collect();
        (minutes, failures, vec![("i-0abc".into(), 600.0)])
    }

    #[test]
    fn finds_the_seeded_lag_with_its_n_and_the_failures_at_the_join() {
        let (minutes, failures, joins) = seeded();
        let c = correlate(minutes, &[], &failures, 0.0, &joins);
        assert_eq!(c.best_lag_periods, Some(1), "{c:?}");
        assert!(c.best_r.unwrap() > 0.95);
        assert_eq!(c.n, 14);
        assert_eq!(c.peak_db.map(f64::round), Some(70.0));
        assert_eq!((c.failures_near_join, c.failures_elsewhere), (30, 0));
        assert!(
            c.findings
                .iter()
                .any(|f| f.contains("p95 following by 1 min (r = 1.00, n = 14)")),
            "{:?}",
            c.findings
        );
        assert!(
            c.findings
                .iter()
                .any(|f| f.contains("30 failures, 30 within 40 s of i-0abc")),
            "{:?}",
            c.findings
        );
    }

    #[test]
    fn a_lead_is_found_the_other_way_and_few_points_claim_nothing() {
        let (mut minutes, _, _) = seeded();
        // p95 now two minutes *before* DB connections.
        let p: Vec<Option<f64>> = minutes.iter().map(|m| m.p95).collect();
        for (i, m) in minutes.iter_mut().enumerate() {
            m.p95 = p.get(i + 3).copied().flatten();
        }
        let c = correlate(minutes.clone(), &[], &[], 0.0, &[]);
        assert_eq!(c.best_lag_periods, Some(-2), "{c:?}");
        let short = correlate(minutes[..4].to_vec(), &[], &[], 0.0, &[]);
        assert!(
            short.findings.iter().all(|f| !f.contains("DB connections")),
            "a run claims nothing on too few periods: {:?}",
            short.findings
        );
        // The trial says once why there is no verdict.
        let tiny = correlate(minutes[..2].to_vec(), &[], &[], 0.0, &[]);
        let trial = across_runs(&[("r1".into(), tiny.clone()), ("r2".into(), tiny)]);
        assert_eq!(
            trial
                .iter()
                .filter(|f| f.starts_with("DB connections against p95: not judged"))
                .count(),
            1,
            "{trial:?}"
        );
    }

    #[test]
    fn trial_level_findings_pool_the_runs() {
        let (minutes, failures, joins) = seeded();
        let c = correlate(minutes, &[], &failures, 0.0, &joins);
        let f = across_runs(&[("a".into(), c.clone()), ("b".into(), c)]);
        assert!(
            f.iter().any(|l| l.contains("60 failures, 60 within 40 s")),
            "{f:?}"
        );
        assert!(f.iter().any(|l| l.contains("n = 28")), "{f:?}");
    }

    #[test]
    fn an_error_pattern_is_tied_to_p95_only_when_p95_rose_in_its_runs() {
        let run = |lines: u64, p95: f64| Correlation {
            error_lines: [("too many clients".to_string(), lines)].into(),
            p95_run: Some(p95),
            ..Default::default()
        };
        let runs = |p95s: [f64; 4]| -> Vec<(String, Correlation)> {
            [
                (4, 0, p95s[0]),
                (16, 0, p95s[1]),
                (28, 40, p95s[2]),
                (40, 90, p95s[3]),
            ]
            .into_iter()
            .map(|(u, l, p)| (format!("u{u:03}-verify"), run(l, p)))
            .collect()
        };
        let f = across_runs(&runs([20.0, 24.0, 80.0, 120.0]));
        assert!(
            f.iter().any(|l| l
                == "\"too many clients\" in 130 log lines, in 2 of 4 runs (u028-verify: 40 lines, p95 80.0 ms, u040-verify: 90 lines, p95 120.0 ms); p95 rose with it: every run with it above every run without (u004-verify: p95 20.0 ms, u016-verify: p95 24.0 ms)"),
            "{f:?}"
        );
        let f = across_runs(&runs([20.0, 24.0, 22.0, 25.0]));
        assert!(
            f.iter().any(|l| l.contains("p95 did not rise with it")),
            "{f:?}"
        );
        // The same verdict whichever run a campaign happens to hold: one run without the
        // pattern less (the verdict used to flip on a median of what was left).
        let fewer: Vec<(String, Correlation)> = runs([20.0, 24.0, 80.0, 120.0])
            .into_iter()
            .skip(1)
            .collect();
        assert!(
            across_runs(&fewer)
                .iter()
                .any(|l| l.contains("p95 rose with it")),
            "{fewer:?}"
        );
    }

    #[test]
    fn shuffled_data_shows_no_relation() {
        let (minutes, failures, joins) = seeded();
        let perm = |i: usize, n: usize| (i * 7 + 3) % n;
        let n = minutes.len();
        let shuffled: Vec<Minute> = (0..n)
            .map(|i| Minute {
                p95: minutes[perm(i, n)].p95,
                ..minutes[i]
            })
            .collect();
        let fs: Vec<f64> = (0..failures.len())
            .map(|i| failures[(i * 7919 + 13) % failures.len()])
            .collect();
        let c = correlate(shuffled, &[], &fs, 0.0, &joins);
        assert!(c.best_r.unwrap() < 0.5, "{c:?}");
        assert!(
            c.findings
                .iter()
                .any(|f| f.starts_with("no clear relation")),
            "{:?}",
            c.findings
        );
        assert!(c.join_concentration.unwrap() < 3.0, "{c:?}");
    }
}
