//! What a stand-in answered: the ground truth tests compare a generator's figures with. Every
//! answered request (but the admin API's) is counted by route and by the UTC second in which
//! its answer left; for the last [`KEEP_SECONDS`] it also keeps, per request, when its answer
//! left, its own time in the stand-in (from its router receiving the request to the response
//! leaving the router) and the delay injected into it, so a test can compare a client's latency
//! with a truth measured in the same run that holds the same costs.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// How long the per-request times are kept (the counts are kept for the stand-in's life): a
/// long-running stand-in must not grow without bound, and a test reads seconds it just ran.
pub const KEEP_SECONDS: i64 = 600;

tokio::task_local! {
    /// The delay injected into the request being answered on this task, if any.
    static INJECTED: Cell<Option<Duration>>;
}

/// Says that `delay` was injected into the request this task is answering (nothing outside
/// [`AnswerLog::answer`]).
pub fn note_injected(delay: Duration) {
    let _ = INJECTED.try_with(|c| c.set(Some(delay)));
}

/// One answered request's times, µs.
#[derive(Debug, Clone, Copy)]
struct Times {
    /// When its answer left, after the start of its UTC second.
    at_us: u32,
    /// In the stand-in: from its router receiving the request to the response leaving it.
    own_us: u32,
    /// The delay injected into it, when one was.
    injected_us: Option<u32>,
}

/// Every answered request, by route and UTC second of its answer.
#[derive(Default)]
pub struct AnswerLog {
    counts: Mutex<BTreeMap<(String, i64), u64>>,
    times: Mutex<BTreeMap<(i64, String), Vec<Times>>>,
}

impl AnswerLog {
    /// Runs `answer` (the rest of the router) for a request on `route` and records it, unless
    /// the route is the admin API's.
    pub async fn answer<F: std::future::Future>(&self, route: String, answer: F) -> F::Output {
        let began = std::time::Instant::now();
        let (out, injected) = INJECTED
            .scope(Cell::new(None), async {
                let out = answer.await;
                (out, INJECTED.with(Cell::get))
            })
            .await;
        if !route.contains(" /standin/") {
            self.record(route, chrono::Utc::now(), began.elapsed(), injected);
        }
        out
    }

    fn record(
        &self,
        route: String,
        at: chrono::DateTime<chrono::Utc>,
        own: Duration,
        injected: Option<Duration>,
    ) {
        let us = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        let second = at.timestamp();
        *self
            .counts
            .lock()
            .expect("counts lock")
            .entry((route.clone(), second))
            .or_default() += 1;
        let mut times = self.times.lock().expect("times lock");
        while times
            .first_key_value()
            .is_some_and(|((s, _), _)| *s <= second - KEEP_SECONDS)
        {
            times.pop_first();
        }
        times.entry((second, route)).or_default().push(Times {
            at_us: at.timestamp_subsec_micros(),
            own_us: us(own),
            injected_us: injected.map(us),
        });
    }

    /// Requests answered, by (`METHOD route`, UTC second of the answer).
    pub fn counts(&self) -> BTreeMap<(String, i64), u64> {
        self.counts.lock().expect("counts lock").clone()
    }

    /// A histogram (µs) of `pick` over the requests answered on `route` (every route when
    /// `None`) within `span` (UTC, seconds since the epoch).
    fn histogram(
        &self,
        route: Option<&str>,
        span: &Range<f64>,
        pick: impl Fn(&Times) -> Option<u32>,
    ) -> Histogram<u64> {
        let mut h = crate::results::cells::new_hist();
        let times = self.times.lock().expect("times lock");
        for ((second, r), list) in times.iter() {
            if route.is_some_and(|want| want != r) {
                continue;
            }
            let within = |t: &&Times| span.contains(&(*second as f64 + f64::from(t.at_us) / 1e6));
            for v in list.iter().filter(within).filter_map(&pick) {
                h.record(u64::from(v))
                    .expect("auto-resizing histograms record");
            }
        }
        h
    }

    /// The stand-in's own time (µs) for each request on `route` (every route when `None`)
    /// answered within `span` (UTC, seconds since the epoch): what a client's latency holds
    /// beside the network and the client itself.
    pub fn own_times(&self, route: Option<&str>, span: Range<f64>) -> Histogram<u64> {
        self.histogram(route, &span, |t| Some(t.own_us))
    }

    /// When each request on `route` answered within `span` was answered (UTC, seconds since
    /// the epoch, µs resolution), in order.
    pub fn instants(&self, route: &str, span: Range<f64>) -> Vec<f64> {
        let times = self.times.lock().expect("times lock");
        let mut out: Vec<f64> = times
            .iter()
            .filter(|((_, r), _)| r == route)
            .flat_map(|((second, _), list)| {
                list.iter()
                    .map(move |t| *second as f64 + f64::from(t.at_us) / 1e6)
            })
            .filter(|at| span.contains(at))
            .collect();
        out.sort_by(f64::total_cmp);
        out
    }

    /// The delays (µs) injected into the requests answered within `span`.
    pub fn injected(&self, span: Range<f64>) -> Histogram<u64> {
        self.histogram(None, &span, |t| t.injected_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_answer_is_counted_with_its_own_time_and_its_injected_delay() {
        let log = AnswerLog::default();
        let began = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
        let route = || "POST /challenge-response/v1/newSession".to_string();
        // One answer with a 30 ms delay injected inside it, one without, one admin call.
        log.answer(route(), async {
            note_injected(Duration::from_millis(30));
            tokio::time::sleep(Duration::from_millis(30)).await;
        })
        .await;
        log.answer(route(), async {}).await;
        log.answer("GET /standin/v1/stores".into(), async {}).await;
        // Outside an answer, a note is dropped rather than a panic.
        note_injected(Duration::from_secs(1));
        let counts = log.counts();
        assert_eq!(counts.values().sum::<u64>(), 2, "{counts:?}");
        let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
        let injected = log.injected(began..now);
        assert_eq!(injected.len(), 1);
        assert!(
            injected.equivalent(injected.max(), 30_000),
            "30 ms injected"
        );
        let own = log.own_times(Some(&route()), began..now);
        assert_eq!(own.len(), 2);
        assert!(own.max() >= 30_000, "the delay is inside its own time");
        assert_eq!(log.own_times(Some("GET /other"), began..now).len(), 0);
        assert_eq!(log.own_times(None, began - 1.0..began).len(), 0, "before");
        let instants = log.instants(&route(), began..now);
        assert_eq!(instants.len(), 2);
        assert!(
            instants[0] - began >= 0.030 && instants[1] >= instants[0],
            "the first answer left after its 30 ms, the second after it: {instants:?}"
        );
    }

    #[test]
    fn times_older_than_the_kept_window_are_dropped_and_counts_kept() {
        let log = AnswerLog::default();
        let ms = Duration::from_millis(1);
        let at = |s: i64| chrono::DateTime::from_timestamp(s, 250_000_000).unwrap();
        let second = |s: i64| s as f64..s as f64 + 1.0;
        log.record("GET /a".into(), at(1_000), ms, None);
        log.record("GET /a".into(), at(1_000 + KEEP_SECONDS - 1), ms, None);
        assert_eq!(log.own_times(None, second(1_000)).len(), 1);
        assert_eq!(log.own_times(None, 1_000.0..1_000.25).len(), 0, "to the µs");
        log.record("GET /a".into(), at(1_000 + KEEP_SECONDS), ms, None);
        assert_eq!(log.own_times(None, second(1_000)).len(), 0, "dropped");
        let last = second(1_000 + KEEP_SECONDS - 1);
        assert_eq!(log.own_times(None, last).len(), 1, "kept");
        assert_eq!(log.counts().values().sum::<u64>(), 3);
    }
}
