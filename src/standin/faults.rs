//! Fault injection for the stand-in, modelled on what the 2025 AWS campaign saw: added latency,
//! random 500s, a slow start (port open, VTS not yet up), a cap on database connections
//! ("too many clients"), and a pause (the service stops answering for a while).

use std::str::FromStr;
use std::time::Duration;

use rand::Rng;

/// A latency distribution: `10ms` (fixed), `uniform:10ms:50ms`, `exp:20ms` (exponential mean),
/// `bimodal:10ms:100ms:0.1` (10 % slow).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    /// Always this long.
    Fixed(Duration),
    /// Uniform between two bounds.
    Uniform(Duration, Duration),
    /// Exponential with this mean.
    Exponential(Duration),
    /// The first value, or with probability `p` the second (a slow path: a cache miss, a
    /// database round trip).
    Bimodal(Duration, Duration, f64),
}

impl Latency {
    /// Draws one delay.
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        match *self {
            Latency::Fixed(d) => d,
            Latency::Uniform(lo, hi) => {
                if hi <= lo {
                    lo
                } else {
                    Duration::from_secs_f64(rng.gen_range(lo.as_secs_f64()..hi.as_secs_f64()))
                }
            }
            Latency::Exponential(mean) => {
                let u: f64 = rng.gen_range(f64::EPSILON..1.0);
                Duration::from_secs_f64(-mean.as_secs_f64() * u.ln())
            }
            Latency::Bimodal(fast, slow, p) => {
                if rng.gen_bool(p.clamp(0.0, 1.0)) {
                    slow
                } else {
                    fast
                }
            }
        }
    }

    /// The exact quantile `q` (0..1) of the distribution: what a load test should measure.
    pub fn quantile(&self, q: f64) -> Duration {
        match *self {
            Latency::Fixed(d) => d,
            Latency::Uniform(lo, hi) => Duration::from_secs_f64(
                lo.as_secs_f64() + q * (hi.as_secs_f64() - lo.as_secs_f64()),
            ),
            Latency::Exponential(mean) => {
                Duration::from_secs_f64(-mean.as_secs_f64() * (1.0 - q).ln())
            }
            Latency::Bimodal(fast, slow, p) => {
                if q < 1.0 - p {
                    fast
                } else {
                    slow
                }
            }
        }
    }
}

impl FromStr for Latency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d =
            |t: &str| humantime::parse_duration(t).map_err(|_| format!("`{t}` is not a duration"));
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            [one] => Ok(Latency::Fixed(d(one)?)),
            ["uniform", lo, hi] => Ok(Latency::Uniform(d(lo)?, d(hi)?)),
            ["exp", mean] => Ok(Latency::Exponential(d(mean)?)),
            ["bimodal", fast, slow, p] => {
                let p: f64 = p
                    .parse()
                    .ok()
                    .filter(|p: &f64| (0.0..=1.0).contains(p))
                    .ok_or_else(|| format!("`{p}` is not a probability between 0 and 1"))?;
                Ok(Latency::Bimodal(d(fast)?, d(slow)?, p))
            }
            _ => Err(format!(
                "`{s}`: write 10ms, uniform:10ms:50ms, exp:20ms or bimodal:10ms:100ms:0.1"
            )),
        }
    }
}

/// The faults a stand-in injects.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Added to every provisioning and verification response.
    pub latency: Option<Latency>,
    /// Probability (0..1) of answering 500 instead.
    pub error_rate: f64,
    /// For this long after start, answer 500 as a joining instance whose VTS is not up.
    pub slow_start: Duration,
    /// At most this many requests hold a database connection at once; others get
    /// `FATAL: sorry, too many clients already`.
    pub db_connections: Option<usize>,
    /// Stop answering from `at` after start for `for` (requests wait until the pause ends).
    pub pause: Option<(Duration, Duration)>,
    /// What one instance can serve: without it, as much as this machine can.
    pub capacity: Option<InstanceCapacity>,
    /// The instance's own database connections, pooled as VTS pools them (see
    /// [`super::pool`]): requests needing one take it from here, and the database may refuse
    /// to open more ("too many clients").
    pub db_pool: Option<std::sync::Arc<super::pool::SessionPool>>,
}

/// One instance's capacity, as a small EC2 instance has: `workers` requests in service at
/// once, each occupying its worker for its *modelled* time (queued beyond that): `service`, plus
/// `per_row` for every stored row its reads go through (VTS reads every duplicate of a key and
/// decodes each, so a store that grows slows verification). The real work is done within that
/// time; a request whose real work (or whose timer) ran past it is *overhead*, what this machine
/// added to the model, which the instance records so a rehearsal can say when the machine, not
/// the modelled deployment, set a figure. Throughput tops out at `workers / service` per second,
/// whatever the machine running the rehearsal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceCapacity {
    /// Requests served at once.
    pub workers: usize,
    /// Time each one occupies its worker.
    pub service: Duration,
    /// Added occupancy per stored row a request's reads went through.
    pub per_row: Duration,
    /// What opening one database connection costs (RDS: TCP, TLS and authentication), paid by
    /// the request that needs a new one: the cold start of an instance's pool.
    pub db_open: Duration,
}

impl InstanceCapacity {
    /// `workers` × `service`, no per-row or connection cost.
    pub fn new(workers: usize, service: Duration) -> InstanceCapacity {
        InstanceCapacity {
            workers,
            service,
            per_row: Duration::ZERO,
            db_open: Duration::ZERO,
        }
    }

    /// Requests per second at most.
    pub fn per_second(&self) -> f64 {
        self.workers as f64 / self.service.as_secs_f64().max(1e-9)
    }

    /// How long a request that read `rows` stored rows occupies its worker.
    pub fn occupancy(&self, rows: usize) -> Duration {
        self.service + self.per_row * rows as u32
    }
}

/// The message a Veraison front end gives when its local VTS is not up (seed Trial 4).
pub const VTS_REFUSED: &str =
    "rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:50051: connect: connection refused\"";

pub use super::pool::TOO_MANY_CLIENTS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_samples_within_bounds() {
        let l: Latency = "uniform:10ms:20ms".parse().unwrap();
        let mut rng = rand::thread_rng();
        for _ in 0..100 {
            let s = l.sample(&mut rng);
            assert!(s >= Duration::from_millis(10) && s < Duration::from_millis(20));
        }
        assert_eq!(l.quantile(0.5), Duration::from_millis(15));
        assert_eq!(
            "5ms".parse::<Latency>().unwrap(),
            Latency::Fixed(Duration::from_millis(5))
        );
        assert!("gauss:1ms".parse::<Latency>().is_err());
    }
}
