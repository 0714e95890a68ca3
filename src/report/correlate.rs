//! Correlating client-side latency with the cloud on one time axis: DB connections against p95
//! (peak, mean, and the lag that best aligns them), failures near instance joins against
//! failures elsewhere, warm-up against steady state, and a short plain-language finding.

use serde::Serialize;

/// What a run's signals show.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Correlation {
    /// Peak DB connections.
    pub peak_db: Option<f64>,
    /// Mean DB connections.
    pub mean_db: Option<f64>,
    /// p95 (ms, worst endpoint) in the second of peak DB connections.
    pub p95_at_db_peak: Option<f64>,
    /// Median of the per-second p95.
    pub p95_median: Option<f64>,
    /// Seconds by which DB connections lead p95 best (positive: DB first).
    pub best_lag_s: Option<i64>,
    /// Pearson r at that lag.
    pub best_r: Option<f64>,
    /// Failures within the join window of an instance joining.
    pub failures_near_join: u64,
    /// Failures elsewhere.
    pub failures_elsewhere: u64,
    /// Failures per second near joins ÷ elsewhere.
    pub join_concentration: Option<f64>,
    /// Median p95 during warm-up and after.
    pub p95_warmup_vs_steady: Option<(f64, f64)>,
    /// Plain-language findings.
    pub findings: Vec<String>,
}

/// Half-width of the window around an instance joining, seconds.
pub const JOIN_WINDOW_S: f64 = 40.0;
/// The largest DB → p95 lag searched, seconds.
pub const MAX_LAG_S: usize = 180;

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Pearson correlation of paired samples.
pub fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    let n = pairs.len() as f64;
    if n < 10.0 {
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

/// Puts a sparse series (seconds since start) onto a 1 s grid of `n` seconds, interpolating
/// linearly between datapoints (holding the first and last values outside them).
pub fn resample(points: &[(f64, f64)], n: usize) -> Vec<Option<f64>> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    if sorted.is_empty() {
        return vec![None; n];
    }
    let mut j = 0;
    (0..n)
        .map(|sec| {
            let t = sec as f64;
            while j + 1 < sorted.len() && sorted[j + 1].0 <= t {
                j += 1;
            }
            let (t0, v0) = sorted[j];
            Some(match sorted.get(j + 1) {
                Some(&(t1, v1)) if t >= t0 && t1 > t0 => v0 + (v1 - v0) * (t - t0) / (t1 - t0),
                _ => v0,
            })
        })
        .collect()
}

/// Correlates per-second client signals with DB connections and instance joins.
///
/// `p95[i]` and `failures[i]` describe second `i` of the run; `db` is (seconds since start,
/// connections); `joins` is (instance, seconds since start it became InService).
pub fn correlate(
    p95: &[Option<f64>],
    failures: &[f64],
    warmup_s: f64,
    db: &[(f64, f64)],
    joins: &[(String, f64)],
) -> Correlation {
    let n = p95.len();
    let mut c = Correlation {
        p95_median: median(&mut p95.iter().flatten().copied().collect::<Vec<_>>()),
        ..Default::default()
    };
    // DB connections against p95.
    if !db.is_empty() && n > 0 {
        let grid = resample(db, n);
        let vals: Vec<f64> = grid.iter().flatten().copied().collect();
        if !vals.is_empty() {
            let (peak_i, peak) = grid
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i, v)))
                .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
            c.peak_db = Some(peak);
            c.mean_db = Some(vals.iter().sum::<f64>() / vals.len() as f64);
            c.p95_at_db_peak = p95.get(peak_i).copied().flatten();
            let mut best: Option<(i64, f64)> = None;
            for lag in 0..=MAX_LAG_S.min(n / 2) {
                let pairs: Vec<(f64, f64)> = (0..n.saturating_sub(lag))
                    .filter_map(|t| Some((grid[t]?, p95[t + lag]?)))
                    .collect();
                if let Some(r) = pearson(&pairs) {
                    if best.is_none_or(|(_, br)| r > br) {
                        best = Some((lag as i64, r));
                    }
                }
            }
            if let Some((lag, r)) = best {
                c.best_lag_s = Some(lag);
                c.best_r = Some(r);
            }
        }
    }
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
    if w > 0 && w < n {
        if let (Some(a), Some(b)) = (
            median(&mut p95[..w].iter().flatten().copied().collect::<Vec<_>>()),
            median(&mut p95[w..].iter().flatten().copied().collect::<Vec<_>>()),
        ) {
            c.p95_warmup_vs_steady = Some((a, b));
        }
    }
    c.findings = findings(&c, joins);
    c
}

fn findings(c: &Correlation, joins: &[(String, f64)]) -> Vec<String> {
    let mut out = Vec::new();
    match (
        c.best_r,
        c.best_lag_s,
        c.peak_db,
        c.p95_at_db_peak,
        c.p95_median,
    ) {
        (Some(r), Some(lag), Some(peak), at_peak, med) if r >= 0.5 => {
            let rise = match (at_peak, med) {
                (Some(a), Some(m)) if m > 0.0 => format!("p95 was {:.1}× its median while DB connections were at their peak of {peak:.0}", a / m),
                _ => format!("DB connections peaked at {peak:.0}"),
            };
            out.push(format!(
                "{rise}; DB connections lead p95 by {lag} s (r = {r:.2})"
            ));
        }
        (Some(r), _, Some(_), _, _) => out.push(format!(
            "no clear relation between DB connections and p95 (best r = {r:.2})"
        )),
        _ => {}
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
    if let Some((a, b)) = c.p95_warmup_vs_steady {
        if b > 0.0 && a / b >= 2.0 {
            out.push(format!("warm-up p95 {a:.0} ms vs {b:.0} ms steady"));
        }
    }
    out
}

/// The trial-level view: failures near joins across all runs, the worst DB peak, and the lag the
/// strongly correlated runs agree on.
pub fn across_runs(runs: &[(String, Correlation)]) -> Vec<String> {
    let mut out = Vec::new();
    let near: u64 = runs.iter().map(|(_, c)| c.failures_near_join).sum();
    let elsewhere: u64 = runs.iter().map(|(_, c)| c.failures_elsewhere).sum();
    if near + elsewhere > 0 && runs.iter().any(|(_, c)| c.join_concentration.is_some()) {
        out.push(format!("across the trial: {} failures, {near} within {JOIN_WINDOW_S:.0} s of an instance joining", near + elsewhere));
    }
    if let Some((id, c)) = runs
        .iter()
        .filter(|(_, c)| c.peak_db.is_some())
        .max_by(|a, b| {
            a.1.peak_db
                .partial_cmp(&b.1.peak_db)
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    {
        out.push(format!(
            "across the trial: DB connections peaked at {:.0} in {id}",
            c.peak_db.unwrap_or(0.0)
        ));
    }
    let mut lags: Vec<f64> = runs
        .iter()
        .filter(|(_, c)| c.best_r.is_some_and(|r| r >= 0.5))
        .filter_map(|(_, c)| c.best_lag_s.map(|l| l as f64))
        .collect();
    if let Some(m) = median(&mut lags) {
        out.push(format!(
            "across the trial: in {} run(s) DB connections lead p95, by a median {m:.0} s",
            lags.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DB connections with a bump at 300 s; p95 follows 30 s later; failures around a join at 600 s.
    type Signals = (
        Vec<Option<f64>>,
        Vec<f64>,
        Vec<(f64, f64)>,
        Vec<(String, f64)>,
    );

    fn seeded() -> Signals {
        let n = 900;
        let db_at = |t: f64| 20.0 + 50.0 * (-((t - 300.0) / 60.0).powi(2)).exp();
        let db: Vec<(f64, f64)> = (0..n)
            .step_by(5)
            .map(|t| (t as f64, db_at(t as f64)))
            .collect();
        let p95: Vec<Option<f64>> = (0..n)
            .map(|t| Some(100.0 + 10.0 * (db_at(t as f64 - 30.0) - 20.0)))
            .collect();
        let failures: Vec<f64> = (0..n)
            .map(|t| if (590..620).contains(&t) { 1.0 } else { 0.0 })
            .collect();
        (p95, failures, db, vec![("i-0abc".into(), 600.0)])
    }

    #[test]
    fn finds_the_seeded_lag_and_the_failures_at_the_join() {
        let (p95, failures, db, joins) = seeded();
        let c = correlate(&p95, &failures, 0.0, &db, &joins);
        assert_eq!(c.best_lag_s, Some(30), "{c:?}");
        assert!(c.best_r.unwrap() > 0.95);
        assert_eq!(c.peak_db.map(f64::round), Some(70.0));
        assert_eq!((c.failures_near_join, c.failures_elsewhere), (30, 0));
        assert!(
            c.findings.iter().any(|f| f.contains("lead p95 by 30 s")),
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
    fn trial_level_findings_add_up_the_runs() {
        let (p95, failures, db, joins) = seeded();
        let c = correlate(&p95, &failures, 0.0, &db, &joins);
        let f = across_runs(&[("a".into(), c.clone()), ("b".into(), c)]);
        assert!(
            f.iter().any(|l| l.contains("60 failures, 60 within 40 s")),
            "{f:?}"
        );
        assert!(
            f.iter()
                .any(|l| l.contains("in 2 run(s) DB connections lead p95, by a median 30 s")),
            "{f:?}"
        );
    }

    #[test]
    fn shuffled_data_shows_no_relation() {
        let (p95, failures, db, joins) = seeded();
        // A fixed permutation (deterministic "shuffle") breaks every time relation.
        let perm = |i: usize, n: usize| (i * 7919 + 13) % n;
        let n = p95.len();
        let p95s: Vec<Option<f64>> = (0..n).map(|i| p95[perm(i, n)]).collect();
        let fs: Vec<f64> = (0..n).map(|i| failures[perm(i, n)]).collect();
        let c = correlate(&p95s, &fs, 0.0, &db, &joins);
        assert!(c.best_r.unwrap() < 0.5, "{c:?}");
        assert!(
            c.findings
                .iter()
                .any(|f| f.starts_with("no clear relation")),
            "{:?}",
            c.findings
        );
        assert!(c.join_concentration.unwrap() < 3.0, "{c:?}");
        assert!(
            c.findings.iter().any(|f| f.contains("not concentrated")),
            "{:?}",
            c.findings
        );
    }
}
