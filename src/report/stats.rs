//! The statistics behind every "± CI", every "significant" and every trend the reports state,
//! in one place, on Student's t (quantiles from `statrs`, not hand-written).
//!
//! **The sample is the second.** Throughput, p95 and failure rate are compared over the steady
//! per-second samples a run keeps (`SteadySamples`): each whole second is one sample, so the
//! thousands of requests inside a second, which share its load, its garbage collections and its
//! neighbours, never count as independent observations.
//!
//! **Seconds are not independent either.** A slow second tends to follow a slow second, so the
//! variance of a mean is not `s² / n`. Each mean's variance is the long-run variance of its
//! seconds estimated by equal-weighted cosine projections (EWC: the series' first `B` cosine
//! components, `B = ⌊0.4 · n^(2/3)⌋`, at least 2, as Lazarus, Lewis, Stock and Watson recommend
//! for HAR inference), whose t statistic follows Student's t with `B` degrees of freedom under
//! any short-range correlation. Fewer than [`MIN_SECONDS`] seconds per side and the correlation
//! cannot be told from a change: the verdict is "cannot tell", never a guess.
//!
//! **Two samples** are compared with Welch's t (Welch–Satterthwaite degrees of freedom), the
//! baseline's own uncertainty included; the relative change's interval is Fieller's, so it
//! excludes 0 exactly when the difference's does. Each load step is compared on its own: seconds
//! of different loads are never mixed, nor steps averaged; a comparison over several steps
//! states each step's verdict (`report::compare::StepChanges`).
//!
//! **A trend** (latency against rows stored, one point per iteration) is the OLS slope with its
//! t interval on `n − 2` degrees of freedom.
//!
//! A verdict can require a minimum effect: a significant change whose estimate is smaller than it
//! is [`Verdict::BelowMinimum`], so a real +0.9 % never fails a gate that asked for 5 %.

use std::fmt;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// The confidence level of every interval and verdict unless one is asked for.
pub const LEVEL: f64 = 0.95;

/// Fewest whole seconds per side (per step) for a verdict: with fewer, two cosine components
/// are no longer slower than the wobble between neighbouring seconds, and an A/A pair of
/// autocorrelated seconds reads "significant" far more often than the level says.
pub const MIN_SECONDS: usize = 6;

/// Largest degrees of freedom used: past it Student's t is the normal distribution to 4 digits.
const MAX_DF: f64 = 1e4;

/// How a verdict is reached.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// Confidence level (0.95: a 5 % chance of calling an unchanged figure changed).
    pub level: f64,
    /// Smallest relative change (0.05 = 5 %) a significant change must reach to be called
    /// significant; 0 asks for significance alone.
    pub min_effect: f64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            level: LEVEL,
            min_effect: 0.0,
        }
    }
}

impl Options {
    /// The same options with a minimum effect (a fraction: 0.05 = 5 %).
    pub fn with_min_effect(self, min_effect: f64) -> Options {
        Options { min_effect, ..self }
    }
}

/// What a test decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Verdict {
    /// The change is real at the level asked (and at least the minimum effect).
    Significant,
    /// The change is real but its estimate is smaller than the minimum effect asked for.
    BelowMinimum,
    /// The data are consistent with no change.
    NotSignificant,
    /// Too few seconds (or points) to decide: `n` is how many there were per side.
    CannotTell {
        /// Seconds per side (points, for a trend).
        n: usize,
    },
}

impl Verdict {
    /// True for a significant change at least the minimum effect.
    pub fn is_significant(self) -> bool {
        self == Verdict::Significant
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Significant => f.write_str("significant"),
            Verdict::BelowMinimum => f.write_str("significant but under the minimum effect"),
            Verdict::NotSignificant => f.write_str("not significant"),
            Verdict::CannotTell { n } => write!(f, "cannot tell (n = {n})"),
        }
    }
}

/// The mean of one series of seconds and how well it is known.
#[derive(Debug, Clone, Copy)]
struct MeanEstimate {
    n: usize,
    mean: f64,
    /// Variance of the mean.
    variance: f64,
    /// Degrees of freedom of that variance.
    df: f64,
}

impl MeanEstimate {
    /// From at least [`MIN_SECONDS`] seconds: the EWC long-run variance.
    fn robust(x: &[f64]) -> MeanEstimate {
        let n = x.len();
        let nf = n as f64;
        let mean = x.iter().sum::<f64>() / nf;
        let bands = cosine_bands(n);
        let long_run = (1..=bands)
            .map(|j| {
                let projection: f64 = x
                    .iter()
                    .enumerate()
                    .map(|(t, v)| {
                        (std::f64::consts::PI * j as f64 * (t as f64 + 0.5) / nf).cos() * (v - mean)
                    })
                    .sum::<f64>()
                    * (2.0 / nf).sqrt();
                projection * projection
            })
            .sum::<f64>()
            / bands as f64;
        MeanEstimate {
            n,
            mean,
            variance: long_run / nf,
            df: bands as f64,
        }
    }

    /// From seconds taken as independent (too few to measure their correlation).
    fn independent(x: &[f64]) -> MeanEstimate {
        let n = x.len();
        let nf = n as f64;
        let mean = if n == 0 {
            0.0
        } else {
            x.iter().sum::<f64>() / nf
        };
        let squares: f64 = x.iter().map(|v| (v - mean).powi(2)).sum();
        MeanEstimate {
            n,
            mean,
            variance: if n < 2 {
                0.0
            } else {
                squares / (nf - 1.0) / nf
            },
            df: nf - 1.0,
        }
    }
}

/// How many cosine components estimate the long-run variance of `n` seconds.
fn cosine_bands(n: usize) -> usize {
    ((0.4 * (n as f64).powf(2.0 / 3.0)).floor() as usize).max(2)
}

/// The two-sided critical value of Student's t at `level` with `df` degrees of freedom.
pub fn t_critical(df: f64, level: f64) -> f64 {
    students_t(df).inverse_cdf(0.5 + level / 2.0)
}

fn students_t(df: f64) -> StudentsT {
    StudentsT::new(0.0, 1.0, df.clamp(1e-3, MAX_DF)).expect("positive degrees of freedom")
}

/// The mean of per-second samples and the half-width of its confidence interval at `level`
/// (Student's t; from [`MIN_SECONDS`] seconds on the EWC long-run variance, so correlated
/// seconds widen it; below that the seconds are taken as independent, `n − 1` degrees of
/// freedom). Fewer than two samples: a half-width of 0.
pub fn mean_ci(samples: &[f64], level: f64) -> (f64, f64) {
    if samples.len() < 2 {
        return (MeanEstimate::independent(samples).mean, 0.0);
    }
    let e = if samples.len() >= MIN_SECONDS {
        MeanEstimate::robust(samples)
    } else {
        MeanEstimate::independent(samples)
    };
    (e.mean, t_critical(e.df, level) * e.variance.sqrt())
}

/// A change between a baseline and a contender, with the test that judged it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The test, as text says it.
    pub test: String,
    /// Seconds behind the baseline's figure.
    pub n_base: usize,
    /// Seconds behind the contender's.
    pub n_contender: usize,
    /// Baseline mean.
    pub base_mean: f64,
    /// Contender mean.
    pub contender_mean: f64,
    /// Contender − baseline.
    pub difference: f64,
    /// Its confidence interval (none when the verdict is "cannot tell").
    pub difference_ci: Option<(f64, f64)>,
    /// (contender − baseline) / baseline; none when the baseline is 0.
    pub relative: Option<f64>,
    /// Its confidence interval (Fieller's); none when unbounded or not told.
    pub relative_ci: Option<(f64, f64)>,
    /// Welch's t.
    pub t: Option<f64>,
    /// Its degrees of freedom (Welch–Satterthwaite over each mean's cosine components).
    pub df: Option<f64>,
    /// Two-sided p-value.
    pub p: Option<f64>,
    /// The options it was judged with.
    pub options: Options,
    /// The verdict.
    pub verdict: Verdict,
}

/// Compares two sets of per-second samples of one load step, baseline first: Welch's t on the
/// means, each mean's variance its seconds' long-run variance, degrees of freedom by
/// Welch–Satterthwaite. Fewer than [`MIN_SECONDS`] seconds on a side: "cannot tell". Steps of
/// different loads are never pooled: each is compared on its own (its own seconds, its own
/// verdict).
pub fn compare_seconds(base: &[f64], contender: &[f64], options: Options) -> Change {
    let per_side = base.len().min(contender.len());
    if per_side < MIN_SECONDS {
        // What there is, without an interval or a verdict.
        let (b, c) = (
            MeanEstimate::independent(base),
            MeanEstimate::independent(contender),
        );
        return Change {
            test: TEST.into(),
            n_base: base.len(),
            n_contender: contender.len(),
            base_mean: b.mean,
            contender_mean: c.mean,
            difference: c.mean - b.mean,
            difference_ci: None,
            relative: relative(b.mean, c.mean),
            relative_ci: None,
            t: None,
            df: None,
            p: None,
            options,
            verdict: Verdict::CannotTell { n: per_side },
        };
    }
    let (b, c) = (MeanEstimate::robust(base), MeanEstimate::robust(contender));
    let var = b.variance + c.variance;
    let df_denominator = b.variance.powi(2) / b.df + c.variance.powi(2) / c.df;
    let df = if df_denominator > 0.0 {
        var * var / df_denominator
    } else {
        MAX_DF
    };
    let difference = c.mean - b.mean;
    let critical = t_critical(df, options.level);
    let se = var.sqrt();
    let (t, p) = if se > 0.0 {
        let t = difference / se;
        (t, 2.0 * (1.0 - students_t(df).cdf(t.abs())))
    } else if difference == 0.0 {
        (0.0, 1.0)
    } else {
        (f64::INFINITY.copysign(difference), 0.0)
    };
    let changed = t.abs() > critical;
    let rel = relative(b.mean, c.mean);
    let verdict = match (changed, rel) {
        (false, _) => Verdict::NotSignificant,
        (true, Some(r)) if r.abs() < options.min_effect => Verdict::BelowMinimum,
        (true, _) => Verdict::Significant,
    };
    Change {
        test: TEST.into(),
        n_base: b.n,
        n_contender: c.n,
        base_mean: b.mean,
        contender_mean: c.mean,
        difference,
        difference_ci: Some((difference - critical * se, difference + critical * se)),
        relative: rel,
        relative_ci: fieller((b.mean, b.variance), (c.mean, c.variance), critical)
            .map(|(lo, hi)| (lo - 1.0, hi - 1.0)),
        t: Some(t),
        df: Some(df),
        p: Some(p),
        options,
        verdict,
    }
}

/// The name text gives the two-sample test.
const TEST: &str = "Welch t";

fn relative(base: f64, contender: f64) -> Option<f64> {
    (base != 0.0).then(|| (contender - base) / base)
}

/// Fieller's interval for the ratio contender / baseline of two independent means, each with
/// the variance of its estimate: every ratio `R` with `(c − R·b)² ≤ q²·(v_c + R²·v_b)`. `None`
/// when the baseline's mean is not itself told from 0 (the interval is unbounded).
fn fieller(base: (f64, f64), contender: (f64, f64), q: f64) -> Option<(f64, f64)> {
    let ((b, vb), (c, vc)) = (base, contender);
    let q2 = q * q;
    let a = b * b - q2 * vb;
    if a <= 0.0 {
        return None;
    }
    let half_b = -c * b;
    let cc = c * c - q2 * vc;
    let disc = half_b * half_b - a * cc;
    let root = disc.max(0.0).sqrt();
    Some(((-half_b - root) / a, (-half_b + root) / a))
}

/// What every comparison's text says about its tests, once (tables' notes, `compare`).
pub const METHOD: &str = "Each change: its size, its 95 % interval [low, high], the test and its samples, the verdict. Throughput, p95 and failure rate are compared over whole steady seconds, each second one sample (the requests inside a second are not independent), with Welch's t on Student's t quantiles; each mean's variance allows for correlation between neighbouring seconds, and the baseline's own uncertainty counts. Each load step is judged on its own seconds, never averaged with others. Fewer than 6 seconds per side: cannot tell.";

impl Change {
    /// The change relative to the baseline, with its test:
    /// `+12 % [+8, +16] (Welch t, 10 vs 10 s), significant` (absolute when the baseline is 0).
    pub fn describe(&self) -> String {
        let effect = match (self.relative, self.relative_ci) {
            (Some(r), Some((lo, hi))) => format!(
                "{} [{}, {}]",
                signed_pct(r),
                signed_pct_bare(lo),
                signed_pct_bare(hi)
            ),
            (Some(r), None) if self.difference_ci.is_some() => {
                format!("{} (interval unbounded)", signed_pct(r))
            }
            (Some(r), None) => signed_pct(r),
            (None, _) => self.absolute_effect(""),
        };
        self.with_test(effect)
    }

    /// The change in the figure's own unit: `+0.40 pp [+0.10, +0.70] (Welch t, 10 vs 10 s), …`.
    pub fn describe_absolute(&self, unit: &str) -> String {
        self.with_test(self.absolute_effect(unit))
    }

    fn absolute_effect(&self, unit: &str) -> String {
        match self.difference_ci {
            Some((lo, hi)) => format!(
                "{}{unit} [{}, {}]",
                signed(self.difference),
                signed(lo),
                signed(hi)
            ),
            None => format!("{}{unit}", signed(self.difference)),
        }
    }

    fn with_test(&self, effect: String) -> String {
        let verdict = match self.verdict {
            Verdict::BelowMinimum => format!(
                "significant but under the {:.0} % minimum",
                100.0 * self.options.min_effect
            ),
            v => v.to_string(),
        };
        format!(
            "{effect} ({}, {} vs {} s), {verdict}",
            self.test, self.n_base, self.n_contender
        )
    }
}

/// A relative change in percent with its sign and unit: `+12 %`, `−0.9 %`.
pub fn signed_pct(r: f64) -> String {
    format!("{} %", signed_pct_bare(r))
}

fn signed_pct_bare(r: f64) -> String {
    let v = 100.0 * r;
    if v.abs() >= 10.0 {
        format!("{v:+.0}")
    } else {
        format!("{v:+.1}")
    }
}

fn signed(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:+.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:+.2}")
    } else {
        format!("{v:+.3}")
    }
}

/// The OLS slope of y on x with its confidence interval, and what it says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    /// Points (iterations).
    pub n: usize,
    /// dy/dx.
    pub slope: f64,
    /// Its confidence interval (t on n − 2 degrees of freedom); none when not told.
    pub slope_ci: Option<(f64, f64)>,
    /// The change the slope makes over the x range, relative to the mean of y.
    pub relative_over_range: Option<f64>,
    /// The same for the ends of the slope's interval.
    pub relative_ci_over_range: Option<(f64, f64)>,
    /// The options it was judged with.
    pub options: Options,
    /// Significant (and at least the minimum effect over the range) or not.
    pub verdict: Verdict,
}

impl Trend {
    /// `grows`, `falls`, `flat` (a significant slope under the minimum effect, or none and its
    /// whole interval within the minimum effect over the range: shown to be small), `no clear
    /// trend` (none, but the interval allows one as large as the minimum effect: too few or too
    /// scattered points to say flat) or `cannot tell (n = 2)`.
    pub fn reading(&self) -> String {
        match self.verdict {
            Verdict::Significant if self.slope > 0.0 => "grows".into(),
            Verdict::Significant => "falls".into(),
            Verdict::CannotTell { n } => format!("cannot tell (n = {n})"),
            Verdict::BelowMinimum => "flat".into(),
            Verdict::NotSignificant => {
                let small = self
                    .relative_ci_over_range
                    .is_some_and(|(lo, hi)| lo.abs().max(hi.abs()) < self.options.min_effect);
                if small {
                    "flat".into()
                } else {
                    "no clear trend".into()
                }
            }
        }
    }
}

/// The trend of y against x (OLS): at least three points with x spread, else "cannot tell".
/// The minimum effect applies to the change over the x range relative to the mean of y.
pub fn trend(points: &[(f64, f64)], options: Options) -> Trend {
    let n = points.len();
    let nf = n as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / nf.max(1.0);
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / nf.max(1.0);
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let cannot = |slope| Trend {
        n,
        slope,
        slope_ci: None,
        relative_over_range: None,
        relative_ci_over_range: None,
        options,
        verdict: Verdict::CannotTell { n },
    };
    if n < 3 || sxx <= 0.0 {
        return cannot(0.0);
    }
    let slope = sxy / sxx;
    let residual: f64 = points
        .iter()
        .map(|p| (p.1 - mean_y - slope * (p.0 - mean_x)).powi(2))
        .sum();
    let se = (residual / (nf - 2.0) / sxx).sqrt();
    let critical = t_critical(nf - 2.0, options.level);
    let range = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max)
        - points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let relative_over_range = (mean_y != 0.0).then(|| slope * range / mean_y);
    let changed = if se > 0.0 {
        (slope / se).abs() > critical
    } else {
        slope != 0.0
    };
    let verdict = match (changed, relative_over_range) {
        (false, _) => Verdict::NotSignificant,
        (true, Some(r)) if r.abs() < options.min_effect => Verdict::BelowMinimum,
        (true, _) => Verdict::Significant,
    };
    let slope_ci = (slope - critical * se, slope + critical * se);
    Trend {
        n,
        slope,
        slope_ci: Some(slope_ci),
        relative_over_range,
        relative_ci_over_range: (mean_y != 0.0)
            .then(|| (slope_ci.0 * range / mean_y, slope_ci.1 * range / mean_y)),
        options,
        verdict,
    }
}

#[cfg(test)]
mod calibration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_use_students_t_not_1_96() {
        // Four independent seconds: t(3) = 3.182, not 1.96.
        let x = [10.0, 12.0, 11.0, 13.0];
        let (mean, hw) = mean_ci(&x, 0.95);
        let sem = (x.iter().map(|v| (v - 11.5f64).powi(2)).sum::<f64>() / 3.0 / 4.0).sqrt();
        assert!((mean - 11.5).abs() < 1e-12);
        assert!((hw / sem - 3.182).abs() < 0.001, "{}", hw / sem);
        assert!((t_critical(1e9, 0.95) - 1.960).abs() < 0.001);
        assert_eq!(mean_ci(&[5.0], 0.95), (5.0, 0.0));
    }

    #[test]
    fn correlated_seconds_widen_the_interval_and_independent_ones_do_not() {
        // A slow drift (each second like the last) is worth far fewer than n independent
        // seconds; alternating seconds are worth more. The cosine estimate sees both.
        let drift: Vec<f64> = (0..60).map(|i| 100.0 + (i / 15) as f64).collect();
        let alternating: Vec<f64> = (0..60).map(|i| 100.0 + (i % 2) as f64 * 3.0).collect();
        let iid = |x: &[f64]| {
            let e = MeanEstimate::independent(x);
            t_critical(e.df, 0.95) * e.variance.sqrt()
        };
        assert!(mean_ci(&drift, 0.95).1 > 2.0 * iid(&drift));
        assert!(mean_ci(&alternating, 0.95).1 < iid(&alternating));
        assert_eq!(cosine_bands(6), 2);
        assert_eq!(cosine_bands(150), 11);
    }

    #[test]
    fn welch_on_shifted_and_same_samples() {
        let a: Vec<f64> = (0..30).map(|i| 100.0 + (i % 5) as f64).collect();
        let b: Vec<f64> = a.iter().map(|v| v * 1.2).collect();
        let c = compare_seconds(&a, &b, Options::default());
        assert_eq!(c.verdict, Verdict::Significant);
        let (lo, hi) = c.relative_ci.unwrap();
        assert!(lo < 0.2 && 0.2 < hi && lo > 0.15 && hi < 0.25, "{lo} {hi}");
        let same = compare_seconds(&a, &a, Options::default());
        assert_eq!(same.verdict, Verdict::NotSignificant);
        assert!(same
            .describe()
            .contains("(Welch t, 30 vs 30 s), not significant"));
    }

    #[test]
    fn too_few_seconds_cannot_tell_and_say_how_many() {
        let c = compare_seconds(
            &[1.0, 2.0, 3.0, 4.0],
            &[9.0, 9.5, 10.0, 9.0],
            Options::default(),
        );
        assert_eq!(c.verdict, Verdict::CannotTell { n: 4 });
        assert!(c.difference_ci.is_none());
        assert!(
            c.describe()
                .ends_with("(Welch t, 4 vs 4 s), cannot tell (n = 4)"),
            "{}",
            c.describe()
        );
    }

    #[test]
    fn a_small_significant_change_is_under_a_minimum_effect() {
        // +1 % on a quiet series: real, and small.
        let a: Vec<f64> = (0..60)
            .map(|i| 100.0 + 0.1 * ((i * 7) % 11) as f64)
            .collect();
        let b: Vec<f64> = a.iter().map(|v| v * 1.01).collect();
        assert_eq!(
            compare_seconds(&a, &b, Options::default()).verdict,
            Verdict::Significant
        );
        let c = compare_seconds(&a, &b, Options::default().with_min_effect(0.05));
        assert_eq!(c.verdict, Verdict::BelowMinimum);
        assert!(
            c.describe()
                .contains("significant but under the 5 % minimum"),
            "{}",
            c.describe()
        );
        assert!(c.describe().starts_with("+1.0 % [+"), "{}", c.describe());
    }

    #[test]
    fn fieller_agrees_with_the_difference_about_zero() {
        // Whatever the data, the relative interval excludes 0 exactly when the difference's does.
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..500 {
            let shift = next() * 0.3;
            let a: Vec<f64> = (0..8).map(|_| 100.0 + 10.0 * next()).collect();
            let b: Vec<f64> = (0..8)
                .map(|_| (100.0 + 10.0 * next()) * (1.0 + shift))
                .collect();
            let c = compare_seconds(&a, &b, Options::default());
            if let (Some((dl, dh)), Some((rl, rh))) = (c.difference_ci, c.relative_ci) {
                assert_eq!(dl > 0.0 || dh < 0.0, rl > 0.0 || rh < 0.0, "{c:?}");
            }
        }
    }

    #[test]
    fn constant_series_decide_by_their_means() {
        let ten = [10.0; 8];
        assert_eq!(
            compare_seconds(&ten, &ten, Options::default()).verdict,
            Verdict::NotSignificant
        );
        assert_eq!(
            compare_seconds(&ten, &[12.0; 8], Options::default()).verdict,
            Verdict::Significant
        );
    }

    #[test]
    fn a_trend_grows_falls_or_is_flat() {
        let grows: Vec<(f64, f64)> = (0..5)
            .map(|i| {
                (
                    1000.0 * i as f64,
                    20.0 + 3.0 * i as f64 + if i % 2 == 0 { 0.3 } else { -0.3 },
                )
            })
            .collect();
        let t = trend(&grows, Options::default());
        assert_eq!(t.reading(), "grows");
        let (lo, hi) = t.slope_ci.unwrap();
        assert!(lo < 0.003 && 0.003 < hi);
        let flat: Vec<(f64, f64)> = (0..5)
            .map(|i| {
                (
                    1000.0 * i as f64,
                    20.0 + if i % 2 == 0 { 0.5 } else { -0.5 },
                )
            })
            .collect();
        // No slope, and its interval within ±20 % over the range: flat. Asked to rule out
        // any slope at all (no minimum effect), the same points cannot be called flat.
        assert_eq!(
            trend(&flat, Options::default().with_min_effect(0.2)).reading(),
            "flat"
        );
        assert_eq!(trend(&flat, Options::default()).reading(), "no clear trend");
        // Three scattered points around a doubling: no significant slope, and not flat either.
        let scattered = [(0.0, 180.0), (25.0, 150.0), (50.0, 470.0)];
        let t = trend(&scattered, Options::default().with_min_effect(0.2));
        assert_eq!(t.verdict, Verdict::NotSignificant);
        assert_eq!(t.reading(), "no clear trend");
        let falls: Vec<(f64, f64)> = grows.iter().map(|(x, y)| (*x, 40.0 - y)).collect();
        assert_eq!(trend(&falls, Options::default()).reading(), "falls");
        assert_eq!(
            trend(&grows[..2], Options::default()).reading(),
            "cannot tell (n = 2)"
        );
        // +60 % over the range, asked for 100 %: flat.
        assert_eq!(
            trend(&grows, Options::default().with_min_effect(1.0)).reading(),
            "flat"
        );
    }
}
