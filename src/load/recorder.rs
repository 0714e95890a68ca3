//! The recorder: per endpoint × per UTC second HdrHistograms (µs, 3 significant digits), kept
//! apart for successes and failures, with counts, bytes and failures grouped by endpoint, class
//! and message.
//!
//! * **Seconds are UTC seconds.** A sample belongs to the second in which it completed, on the
//!   wall clock (as Locust's and CloudWatch's do): the row stamped `T` holds what completed in
//!   `[T, T+1)`. Samples that complete after the run's deadline go to a separate *drain* bucket.
//! * **No global lock.** Users record into one of several shards (by thread), each a small map
//!   from second to cells; the [`Aggregator`] takes a second from every shard once it is over.
//! * **Endpoints and tasks.** Each request kind is an endpoint; each task (a verification
//!   session of three requests, a provisioning, a discovery) is a unit of its own, recorded as
//!   an endpoint of kind `task` with its whole latency and whether every request succeeded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::http::Timings;
pub use crate::results::cells::{new_hist, Cell, Endpoint, FailureClass, Kind};
use crate::results::FailureGroup;

/// Index of an endpoint registered with the recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndpointId(pub usize);

/// Adds a finished sample to a cell.
fn add(cell: &mut Cell, s: &Sample) {
    let h = if s.ok { &mut cell.ok } else { &mut cell.failed };
    let _ = h.record(s.service_us.max(1));
    if let Some(c) = s.corrected_us {
        let _ = cell.corrected.get_or_insert_with(new_hist).record(c.max(1));
    }
    cell.bytes += s.bytes;
    let t = &s.timings;
    if *t != Timings::default() {
        let p = cell.phases.get_or_insert_with(Box::default);
        for (h, v) in [
            (&mut p.connect, t.connect_us),
            (&mut p.tls, t.tls_us),
            (&mut p.wait, t.wait_us),
            (&mut p.receive, t.receive_us),
        ] {
            if let Some(v) = v {
                let _ = h.record(v);
            }
        }
        p.opened += u64::from(t.opened);
        p.closed += u64::from(t.closed);
    }
}

/// One finished request or task.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it completed.
    pub end: Instant,
    /// Service time: from sending to the last byte (a task: first sent to last answered), µs.
    pub service_us: u64,
    /// From the intended start (open model tasks), µs.
    pub corrected_us: Option<u64>,
    /// Response body bytes.
    pub bytes: u64,
    /// Counted as a success.
    pub ok: bool,
    /// Where a request's time went (all `None` for a task's unit).
    pub timings: Timings,
}

/// Where a sample goes in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// Completed in this UTC second, before the deadline.
    Second(i64),
    /// Completed after the deadline (requests in flight finishing).
    Drain,
}

/// The mapping from the monotonic clock to UTC, fixed at the start of a run, and the deadline.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_unix_us: i64,
    deadline: Instant,
}

impl Clock {
    /// A clock whose `base` instant is `base_unix` on the wall clock; samples completing at or
    /// after `deadline` are drain.
    pub fn new(base: Instant, base_unix: f64, deadline: Instant) -> Clock {
        Clock {
            base,
            base_unix_us: (base_unix * 1e6) as i64,
            deadline,
        }
    }

    /// Unix microseconds of an instant.
    pub fn unix_us(&self, t: Instant) -> i64 {
        match t.checked_duration_since(self.base) {
            Some(d) => self.base_unix_us + d.as_micros() as i64,
            None => self.base_unix_us - (self.base - t).as_micros() as i64,
        }
    }

    /// Unix seconds of an instant.
    pub fn unix(&self, t: Instant) -> f64 {
        self.unix_us(t) as f64 / 1e6
    }

    /// The slot of a sample completing at `t`.
    pub fn slot(&self, t: Instant) -> Slot {
        if t >= self.deadline {
            Slot::Drain
        } else {
            Slot::Second(self.unix_us(t).div_euclid(1_000_000))
        }
    }

    /// The deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Moves the deadline (a stop request ends the measured window early).
    pub fn with_deadline(self, deadline: Instant) -> Clock {
        Clock { deadline, ..self }
    }
}

#[derive(Default)]
struct Shard {
    /// Cells per slot; rarely more than two slots at once.
    slots: Vec<(Slot, Vec<Cell>)>,
    /// Virtual users started minus stopped, per slot of when it happened.
    users: Vec<(Slot, i64)>,
    /// Requests sent minus those over (answered, refused or timed out); a send and its end may
    /// land in different shards: only the sum means much.
    in_flight: i64,
    failures: HashMap<(usize, FailureClass, String), u64>,
}

/// Shared by all virtual users of a run.
pub struct Recorder {
    endpoints: Vec<Endpoint>,
    clock: Clock,
    /// The deadline as µs after the clock's base (a stop request moves it earlier).
    deadline_us: std::sync::atomic::AtomicU64,
    shards: Box<[Mutex<Shard>]>,
    /// Virtual users currently running (live figures).
    active_users: AtomicUsize,
}

thread_local! {
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

impl Recorder {
    /// A recorder for these endpoints (ids are their indexes), on a clock.
    pub fn new(endpoints: Vec<Endpoint>, clock: Clock) -> Recorder {
        let shards = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            * 2;
        Recorder {
            endpoints,
            deadline_us: std::sync::atomic::AtomicU64::new(
                clock
                    .deadline
                    .saturating_duration_since(clock.base)
                    .as_micros() as u64,
            ),
            clock,
            shards: (0..shards.max(2))
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
            active_users: AtomicUsize::new(0),
        }
    }

    /// A recorder not tied to a run (readiness checks, set-up): every sample in one slot.
    pub fn detached(endpoints: Vec<Endpoint>) -> Recorder {
        let now = Instant::now();
        Recorder::new(
            endpoints,
            Clock::new(now, 0.0, now + Duration::from_secs(365 * 24 * 3600)),
        )
    }

    /// The registered endpoints.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The run's clock (with the current deadline).
    pub fn clock(&self) -> Clock {
        let us = self.deadline_us.load(Ordering::Relaxed);
        self.clock
            .with_deadline(self.clock.base + Duration::from_micros(us))
    }

    /// Ends the measured window at `at` (a stop request): later completions are drain.
    pub fn end_window(&self, at: Instant) {
        let us = at.saturating_duration_since(self.clock.base).as_micros() as u64;
        self.deadline_us.fetch_min(us, Ordering::Relaxed);
    }

    /// The slot of a sample completing at `t`: one relaxed atomic load, no lock.
    fn slot(&self, t: Instant) -> Slot {
        let since = t.saturating_duration_since(self.clock.base).as_micros() as u64;
        if since >= self.deadline_us.load(Ordering::Relaxed) {
            Slot::Drain
        } else {
            Slot::Second((self.clock.base_unix_us + since as i64).div_euclid(1_000_000))
        }
    }

    fn shard(&self) -> &Mutex<Shard> {
        let i = SHARD.with(|s| *s) % self.shards.len();
        &self.shards[i]
    }

    fn cells_for(shard: &mut Shard, slot: Slot, n: usize) -> &mut Vec<Cell> {
        let i = match shard.slots.iter().rposition(|(s, _)| *s == slot) {
            Some(i) => i,
            None => {
                shard.slots.push((slot, vec![Cell::default(); n]));
                shard.slots.len() - 1
            }
        };
        &mut shard.slots[i].1
    }

    /// Virtual users running now.
    pub fn active_users(&self) -> usize {
        self.active_users.load(Ordering::Relaxed)
    }

    /// A virtual user (or open-model session) starts; counted in the second it happens.
    pub fn user_started(&self) {
        self.active_users.fetch_add(1, Ordering::Relaxed);
        self.note_users(Instant::now(), 1);
    }

    /// A virtual user (or open-model session) ends.
    pub fn user_stopped(&self) {
        self.active_users.fetch_sub(1, Ordering::Relaxed);
        self.note_users(Instant::now(), -1);
    }

    fn note_users(&self, at: Instant, delta: i64) {
        let slot = self.slot(at);
        let mut shard = self.shard().lock().expect("recorder lock");
        match shard.users.iter_mut().rev().find(|(s, _)| *s == slot) {
            Some((_, d)) => *d += delta,
            None => shard.users.push((slot, delta)),
        }
    }

    /// Takes the change in running users over the slots up to `until`: added to the count at
    /// the end of the previous second, it is the count at the end of `until`, whenever read.
    pub fn take_users(&self, until: Slot) -> i64 {
        let mut sum = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().expect("recorder lock");
            shard.users.retain(|(s, d)| {
                let due = *s <= until;
                if due {
                    sum += d;
                }
                !due
            });
        }
        sum
    }

    /// A request is sent.
    pub fn note_sent(&self) {
        self.shard().lock().expect("recorder lock").in_flight += 1;
    }

    /// A request sent is over: answered, refused or timed out.
    pub fn note_over(&self) {
        self.shard().lock().expect("recorder lock").in_flight -= 1;
    }

    /// Requests sent and not over: at the end of a run, those abandoned when it stopped.
    pub fn in_flight(&self) -> u64 {
        let n: i64 = self
            .shards
            .iter()
            .map(|s| s.lock().expect("recorder lock").in_flight)
            .sum();
        n.max(0) as u64
    }

    /// Records a finished request or task.
    pub fn record(&self, ep: EndpointId, s: Sample) {
        let slot = self.slot(s.end);
        let mut shard = self.shard().lock().expect("recorder lock");
        let n = self.endpoints.len();
        add(&mut Self::cells_for(&mut shard, slot, n)[ep.0], &s);
    }

    /// Records a failed request with why it failed.
    pub fn record_failure(&self, ep: EndpointId, s: Sample, class: FailureClass, message: &str) {
        let slot = self.slot(s.end);
        let mut msg: String = message.chars().take(240).collect();
        if msg.len() < message.len() {
            msg.push('…');
        }
        let mut shard = self.shard().lock().expect("recorder lock");
        let n = self.endpoints.len();
        let cell = &mut Self::cells_for(&mut shard, slot, n)[ep.0];
        add(cell, &Sample { ok: false, ..s });
        match class {
            FailureClass::Connect => cell.refused += 1,
            FailureClass::Timeout => cell.timed_out += 1,
            _ => {}
        }
        *shard.failures.entry((ep.0, class, msg)).or_default() += 1;
    }

    /// Records an open-model arrival that never started (still waiting for a slot at the
    /// deadline): only its lateness, in the corrected latency.
    pub fn record_dropped(&self, ep: EndpointId, at: Instant, lateness: Duration) {
        let slot = self.slot(at);
        let mut shard = self.shard().lock().expect("recorder lock");
        let n = self.endpoints.len();
        let cell = &mut Self::cells_for(&mut shard, slot, n)[ep.0];
        let _ = cell
            .corrected
            .get_or_insert_with(new_hist)
            .record((lateness.as_micros() as u64).max(1));
    }

    /// Takes every cell of slots up to `until` (a second: that second and any earlier one
    /// still held, late samples folded in; `Drain`: everything).
    pub fn take(&self, until: Slot) -> Vec<Cell> {
        let mut out = vec![Cell::default(); self.endpoints.len()];
        for shard in self.shards.iter() {
            let mut shard = shard.lock().expect("recorder lock");
            let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut shard.slots)
                .into_iter()
                .partition(|(s, _)| *s <= until);
            shard.slots = keep;
            for (_, cells) in due {
                for (o, c) in out.iter_mut().zip(&cells) {
                    o.merge(c);
                }
            }
        }
        out
    }

    /// Adds cells measured elsewhere (a fleet worker's second) to a slot, with the change in
    /// running users over it: the merge of a fleet feeds the same aggregation as one engine.
    pub fn inject(&self, slot: Slot, cells: &[Cell], users_delta: i64) {
        let mut shard = self.shards[0].lock().expect("recorder lock");
        let n = self.endpoints.len();
        for (mine, theirs) in Self::cells_for(&mut shard, slot, n).iter_mut().zip(cells) {
            mine.merge(theirs);
        }
        shard.users.push((slot, users_delta));
    }

    /// Adds failure groups counted elsewhere (a fleet worker's); groups naming an endpoint or
    /// class this recorder does not know are returned.
    pub fn inject_failures(&self, groups: &[FailureGroup]) -> Vec<FailureGroup> {
        let mut shard = self.shards[0].lock().expect("recorder lock");
        let mut unknown = Vec::new();
        for g in groups {
            let ep = self
                .endpoints
                .iter()
                .position(|e| e.method == g.method && e.name == g.name);
            match (ep, FailureClass::parse(&g.class)) {
                (Some(ep), Some(class)) => {
                    *shard
                        .failures
                        .entry((ep, class, g.message.clone()))
                        .or_default() += g.count;
                }
                _ => unknown.push(g.clone()),
            }
        }
        unknown
    }

    /// Failures so far, grouped and sorted by count.
    pub fn failure_groups(&self) -> Vec<FailureGroup> {
        let mut all: HashMap<(usize, FailureClass, String), u64> = HashMap::new();
        for shard in self.shards.iter() {
            for (k, n) in &shard.lock().expect("recorder lock").failures {
                *all.entry(k.clone()).or_default() += n;
            }
        }
        let mut out: Vec<FailureGroup> = all
            .into_iter()
            .map(|((ep, class, msg), n)| FailureGroup {
                method: self.endpoints[ep].method.clone(),
                name: self.endpoints[ep].name.clone(),
                class: class.as_str().into(),
                message: msg,
                count: n,
            })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_counted_in_the_second_they_start_and_stop_not_when_read() {
        let base = Instant::now();
        let clock = Clock::new(base, 1000.192, base + Duration::from_millis(2500));
        let r = Recorder::new(Vec::new(), clock);
        let at = |ms| base + Duration::from_millis(ms);
        for _ in 0..3 {
            r.note_users(at(10), 1);
        }
        r.note_users(at(900), 1);
        // A stop request: every user ends after the deadline, before the last seconds are read.
        for _ in 0..4 {
            r.note_users(at(2600), -1);
        }
        assert_eq!(r.take_users(Slot::Second(1000)), 3);
        assert_eq!(r.take_users(Slot::Second(1001)), 1, "4 running at its end");
        assert_eq!(r.take_users(Slot::Second(1002)), 0, "still 4");
        assert_eq!(r.take_users(Slot::Drain), -4);
    }

    #[test]
    fn samples_land_in_their_utc_second_and_after_the_deadline_in_the_drain() {
        let base = Instant::now();
        // The run starts 0.192 s into UTC second 1000; the deadline is 2.5 s later.
        let clock = Clock::new(base, 1000.192, base + Duration::from_millis(2500));
        assert_eq!(clock.slot(base), Slot::Second(1000));
        assert_eq!(
            clock.slot(base + Duration::from_millis(807)),
            Slot::Second(1000)
        );
        assert_eq!(
            clock.slot(base + Duration::from_millis(808)),
            Slot::Second(1001)
        );
        assert_eq!(
            clock.slot(base + Duration::from_millis(2499)),
            Slot::Second(1002)
        );
        assert_eq!(clock.slot(base + Duration::from_millis(2500)), Slot::Drain);
        let ep = Endpoint {
            method: "GET".into(),
            name: "/".into(),
            task: "t".into(),
            kind: Kind::Request,
        };
        let r = Recorder::new(vec![ep], clock);
        let at = |ms: u64, ok: bool| Sample {
            end: base + Duration::from_millis(ms),
            service_us: 1000 + ms,
            corrected_us: None,
            bytes: 1,
            ok,
            timings: Timings::default(),
        };
        r.record(EndpointId(0), at(10, true));
        r.record(EndpointId(0), at(900, true));
        r.record_failure(
            EndpointId(0),
            at(950, false),
            FailureClass::Connect,
            "refused",
        );
        r.record(EndpointId(0), at(2600, true));
        let s1000 = r.take(Slot::Second(1000));
        assert_eq!((s1000[0].successes(), s1000[0].failures()), (1, 0));
        let s1001 = r.take(Slot::Second(1001));
        assert_eq!(
            (s1001[0].successes(), s1001[0].failures(), s1001[0].refused),
            (1, 1, 1)
        );
        assert_eq!(r.take(Slot::Second(1002))[0].count(), 0);
        assert_eq!(
            r.take(Slot::Drain)[0].count(),
            1,
            "the drain holds what ended late"
        );
        assert_eq!(r.failure_groups()[0].count, 1);
    }
}
