//! The verdicts held against data whose truth is known: synthetic runs drawn from a process
//! like a load test's (per-second rates with autocorrelated drift, request latencies drawn per
//! second from a drifting distribution, failures in bursts), seeded, many pairs at once.
//!
//! * A/A: both runs of a pair from the same process; the share called significant must stay
//!   within the nominal 5 % plus three binomial standard deviations at the number of
//!   pairs run (no more), for rates, p95 and failure rates, at 4, 10 and 150 seconds per step (at 4,
//!   every verdict must be "cannot tell").
//! * Power: a real −20 % throughput drop at 10 s steps and a +10 % p95 shift at 45 s steps
//!   (what the stand-in's per-second noise allows) must be called significant in at least
//!   80 % of pairs.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{compare_seconds, Options, Verdict};

/// The process one synthetic run is drawn from.
#[derive(Debug, Clone, Copy)]
struct Process {
    /// Requests per second on average.
    rate: f64,
    /// Sd of the rate's multiplicative drift between seconds (0.03 = 3 %).
    rate_drift: f64,
    /// Lag-1 autocorrelation of that drift.
    rate_rho: f64,
    /// Latency of a request: uniform on [lo, hi] ms, times the second's drift and jitter.
    latency: (f64, f64),
    /// Sd of the latency's multiplicative drift between seconds.
    latency_drift: f64,
    /// Lag-1 autocorrelation of that drift.
    latency_rho: f64,
    /// Sd of a second's own latency factor, independent of its neighbours'.
    latency_jitter: f64,
    /// Failure probability outside and inside a burst.
    failure_p: (f64, f64),
    /// Chance a calm second is followed by a burst, and a burst by another.
    burst: (f64, f64),
}

/// Like the stand-in (uniform 10–50 ms) under 8 users' verification sessions on a shared
/// 2-core machine, as measured there: per endpoint about 90 requests per second, rates
/// varying 6 % between seconds with a lag-1 autocorrelation about 0.15, per-second p95 varying
/// 10 % with one about 0.2; failures in bursts (5 % of the requests for a few seconds).
const STANDIN_LIKE: Process = Process {
    rate: 90.0,
    rate_drift: 0.03,
    rate_rho: 0.6,
    latency: (10.0, 50.0),
    latency_drift: 0.06,
    latency_rho: 0.5,
    latency_jitter: 0.08,
    failure_p: (0.005, 0.05),
    burst: (0.05, 0.5),
};

/// One run's steady seconds, as `SteadySamples` keeps them.
struct Run {
    rps: Vec<f64>,
    p95_ms: Vec<f64>,
    failure_rate: Vec<f64>,
}

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.gen::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A stationary AR(1) series of multiplicative drifts around 1.
fn drift(rng: &mut StdRng, n: usize, sd: f64, rho: f64) -> Vec<f64> {
    let innovation = sd * (1.0 - rho * rho).sqrt();
    let mut x = sd * normal(rng);
    (0..n)
        .map(|_| {
            let v = 1.0 + x;
            x = rho * x + innovation * normal(rng);
            v
        })
        .collect()
}

/// A Poisson count (inversion; the means here are small).
fn poisson(rng: &mut StdRng, mean: f64) -> u64 {
    let (mut k, mut p, mut cdf) = (0u64, (-mean).exp(), 0.0);
    let u: f64 = rng.gen();
    loop {
        cdf += p;
        if u <= cdf || k > 10_000 {
            return k;
        }
        k += 1;
        p *= mean / k as f64;
    }
}

impl Process {
    /// `seconds` steady seconds; `latency_scale` and `rate_scale` shift the contender.
    fn run(&self, rng: &mut StdRng, seconds: usize, latency_scale: f64, rate_scale: f64) -> Run {
        let rate_drift = drift(rng, seconds, self.rate_drift, self.rate_rho);
        let latency_drift = drift(rng, seconds, self.latency_drift, self.latency_rho);
        let mut burst = false;
        let mut run = Run {
            rps: Vec::new(),
            p95_ms: Vec::new(),
            failure_rate: Vec::new(),
        };
        let mut latencies = Vec::new();
        for s in 0..seconds {
            let mean = self.rate * rate_scale * rate_drift[s];
            // Counting noise of a closed loop: about a quarter of Poisson's variance.
            let count = (mean + 0.5 * mean.sqrt() * normal(rng)).round().max(1.0);
            let scale =
                latency_drift[s] * (1.0 + self.latency_jitter * normal(rng)) * latency_scale;
            latencies.clear();
            for _ in 0..count as usize {
                let u: f64 = rng.gen();
                let (lo, hi) = self.latency;
                latencies.push((lo + (hi - lo) * u) * scale);
            }
            let k = ((0.95 * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1;
            let (_, p95, _) = latencies.select_nth_unstable_by(k, f64::total_cmp);
            burst = rng.gen::<f64>() < if burst { self.burst.1 } else { self.burst.0 };
            let p = if burst {
                self.failure_p.1
            } else {
                self.failure_p.0
            };
            let failures = poisson(rng, p * count).min(count as u64);
            run.rps.push(count);
            run.p95_ms.push(*p95);
            run.failure_rate.push(failures as f64 / count);
        }
        run
    }
}

/// Shares of pairs called significant for rates, p95 and failure rates, and of "cannot tell".
fn shares(
    process: Process,
    seconds: usize,
    pairs: usize,
    seed: u64,
    contender: (f64, f64),
) -> ([f64; 3], [f64; 3]) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut significant, mut cannot) = ([0usize; 3], [0usize; 3]);
    for _ in 0..pairs {
        let a = process.run(&mut rng, seconds, 1.0, 1.0);
        let b = process.run(&mut rng, seconds, contender.0, contender.1);
        let verdicts = [
            compare_seconds(&a.rps, &b.rps, Options::default()).verdict,
            compare_seconds(&a.p95_ms, &b.p95_ms, Options::default()).verdict,
            compare_seconds(&a.failure_rate, &b.failure_rate, Options::default()).verdict,
        ];
        for (i, v) in verdicts.iter().enumerate() {
            significant[i] += v.is_significant() as usize;
            cannot[i] += matches!(v, Verdict::CannotTell { .. }) as usize;
        }
    }
    let share = |x: [usize; 3]| x.map(|c| c as f64 / pairs as f64);
    (share(significant), share(cannot))
}

/// The nominal 5 % plus three binomial standard deviations at `pairs`.
fn tolerance(pairs: usize) -> f64 {
    0.05 + 3.0 * (0.05 * 0.95 / pairs as f64).sqrt()
}

#[test]
fn a_a_pairs_are_significant_at_most_at_the_nominal_rate() {
    for (seconds, pairs, seed) in [(4, 300, 1), (10, 1500, 2), (150, 600, 3)] {
        let (significant, cannot) = shares(STANDIN_LIKE, seconds, pairs, seed, (1.0, 1.0));
        let limit = tolerance(pairs);
        eprintln!("A/A at {seconds} s, {pairs} pairs: significant {significant:?} (limit {limit:.3}), cannot tell {cannot:?}");
        for (figure, share) in ["rps", "p95", "failure rate"].iter().zip(significant) {
            assert!(
                share <= limit,
                "A/A at {seconds} s: {figure} significant in {:.1} % of {pairs} identical pairs (limit {:.1} %)",
                100.0 * share,
                100.0 * limit
            );
        }
        if seconds < super::MIN_SECONDS {
            assert_eq!(
                cannot, [1.0; 3],
                "at {seconds} s every verdict is 'cannot tell'"
            );
        }
    }
}

/// Steady seconds per step at which the power test runs: a throughput drop shows in 10 s; a
/// +10 % p95 against per-second p95s that wobble 10 % needs about 45 s (at 10 s even a test
/// that knew the seconds were independent would find it in only about 60 % of pairs).
const REHEARSAL_SECONDS: (usize, usize) = (10, 45);

#[test]
fn a_real_change_is_found_at_the_rehearsals_size() {
    let pairs = 300;
    let (rps_seconds, p95_seconds) = REHEARSAL_SECONDS;
    let (rps, _) = shares(STANDIN_LIKE, rps_seconds, pairs, 5, (1.0, 0.80));
    let (p95, _) = shares(STANDIN_LIKE, p95_seconds, pairs, 4, (1.10, 1.0));
    eprintln!(
        "power: rps −20 % at {rps_seconds} s {:.3}, p95 +10 % at {p95_seconds} s {:.3}",
        rps[0], p95[1]
    );
    assert!(
        rps[0] >= 0.8,
        "−20 % throughput found in {:.1} % of pairs at {rps_seconds} s",
        100.0 * rps[0]
    );
    assert!(
        p95[1] >= 0.8,
        "+10 % p95 found in {:.1} % of pairs at {p95_seconds} s",
        100.0 * p95[1]
    );
}
