//! A load phase shared out over generator workers: users as evenly as possible, rates in
//! proportion. A value of the trial, which `plan` shows and the fleets run.

use super::load_phase::LoadPhase;
use super::model::{ArrivalSpec, SpawnSpec};
use super::quantities::Rate;

/// Splits a phase over `workers`: users as evenly as possible (the first ones get one more),
/// spawn and arrival rates in proportion. Workers with nothing to do are left out. Returns
/// each share with the number of its first user.
pub fn split(phase: &LoadPhase, workers: u32) -> Vec<(LoadPhase, u32)> {
    let workers = workers.max(1);
    if let Some(users) = phase.users {
        let (base, extra) = (users / workers, users % workers);
        let mut first = 0;
        let mut out = Vec::new();
        for k in 0..workers {
            let n = base + u32::from(k < extra);
            if n == 0 {
                continue;
            }
            let mut p = phase.clone();
            p.users = Some(n);
            if let SpawnSpec::Rate(r) = phase.spawn {
                p.spawn = SpawnSpec::Rate(Rate(r.0 * n as f64 / users as f64));
            }
            out.push((p, first));
            first += n;
        }
        return out;
    }
    let Some(a) = phase.arrival else {
        return vec![(phase.clone(), 0)];
    };
    let n = workers as f64;
    (0..workers)
        .map(|k| {
            let mut p = phase.clone();
            p.arrival = Some(ArrivalSpec {
                rate: Rate(a.rate.0 / n),
                to: a.to.map(|t| Rate(t.0 / n)),
                max_in_flight: (a.max_in_flight + workers as i64 - 1) / workers as i64,
            });
            // Session numbers (device choice, unique ids) apart per worker.
            (p, k * 1_000_000)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn users_and_rates_are_shared_out_evenly_and_numbered_apart() {
        let shares = split(&phase(Some(106)), 4);
        let users: Vec<u32> = shares.iter().map(|(p, _)| p.users.unwrap()).collect();
        assert_eq!(users, [27, 27, 26, 26]);
        let firsts: Vec<u32> = shares.iter().map(|(_, f)| *f).collect();
        assert_eq!(firsts, [0, 27, 54, 80]);
        let spawn: f64 = shares
            .iter()
            .map(|(p, _)| match p.spawn {
                SpawnSpec::Rate(r) => r.0,
                SpawnSpec::AllAtOnce => 0.0,
            })
            .sum();
        assert!((spawn - 10.6).abs() < 1e-9, "{spawn}");
        // Fewer users than workers: no idle worker.
        assert_eq!(split(&phase(Some(2)), 4).len(), 2);
        let mut open = phase(None);
        open.arrival = Some(ArrivalSpec {
            rate: Rate(30.0),
            to: Some(Rate(90.0)),
            max_in_flight: 10,
        });
        let shares = split(&open, 3);
        assert_eq!(shares.len(), 3);
        for (p, _) in &shares {
            let a = p.arrival.unwrap();
            assert_eq!(
                (a.rate.0, a.to.unwrap().0, a.max_in_flight),
                (10.0, 30.0, 4)
            );
        }
    }
}
