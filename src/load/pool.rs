//! The load engine's own threads: one single-threaded tokio runtime per thread (as wrk runs one
//! event loop per thread), users spread over them round-robin. Keeping the generator on threads
//! of its own is what lets it measure itself: its CPU is those threads' CPU (an in-process
//! stand-in, the flusher, the executor are not the generator), and its timer lag is measured on
//! those runtimes, split into what waiting for a core explains (the machine's) and the rest
//! (the generator's own: its loop was busy when the timer was due).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::recorder::new_hist;

/// Clock ticks per second of `/proc/<pid>/task/<tid>/stat` CPU times.
fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU seconds (user + system) a thread of this process has used, from the kernel.
fn thread_cpu_s(tid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_s())
}

/// What the scheduler says of a thread: seconds it ran, seconds it was ready to run but waited
/// for a core, and how many times it got one; `None` where the kernel keeps no such accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SchedTimes {
    /// Running, s.
    pub run_s: f64,
    /// Ready to run, waiting for a core, s.
    pub wait_s: f64,
    /// Times it was given a core.
    pub slices: u64,
}

impl SchedTimes {
    /// From `/proc/.../schedstat` text: `run_ns wait_ns slices`.
    fn parse(text: &str) -> Option<SchedTimes> {
        let mut f = text.split_whitespace();
        let run: f64 = f.next()?.parse().ok()?;
        let wait: f64 = f.next()?.parse().ok()?;
        let slices: u64 = f.next()?.parse().ok()?;
        (run > 0.0).then_some(SchedTimes {
            run_s: run / 1e9,
            wait_s: wait / 1e9,
            slices,
        })
    }

    /// A thread of this process.
    fn of(tid: i32) -> Option<SchedTimes> {
        SchedTimes::parse(
            &std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?,
        )
    }

    /// The calling thread.
    fn this_thread() -> Option<SchedTimes> {
        SchedTimes::parse(&std::fs::read_to_string("/proc/thread-self/schedstat").ok()?)
    }
}

/// The timer lateness of the engine's runtimes (µs): all of it, and the generator's own part
/// (what waiting for a core does not explain).
pub struct Lateness {
    /// How late the timer fired.
    pub all: Histogram<u64>,
    /// How late, less the time its thread waited for a core meanwhile.
    pub own: Histogram<u64>,
}

impl Default for Lateness {
    fn default() -> Self {
        Lateness {
            all: new_hist(),
            own: new_hist(),
        }
    }
}

impl Lateness {
    /// Adds another span's.
    pub fn add(&mut self, other: &Lateness) {
        self.all
            .add(&other.all)
            .expect("auto-resizing histograms merge");
        self.own
            .add(&other.own)
            .expect("auto-resizing histograms merge");
    }
}

/// The engine's threads.
pub struct EnginePool {
    handles: Vec<Handle>,
    threads: Vec<std::thread::JoinHandle<()>>,
    tids: Vec<i32>,
    stop: CancellationToken,
    next: AtomicUsize,
    lag: Arc<Mutex<Lateness>>,
}

impl EnginePool {
    /// Starts `n` threads (at least one), each running a single-threaded runtime until
    /// [`EnginePool::shutdown`], each with a 100 ms timer whose lateness is recorded.
    pub fn start(n: usize) -> std::io::Result<EnginePool> {
        let stop = CancellationToken::new();
        let lag = Arc::new(Mutex::new(Lateness::default()));
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        let mut tids = Vec::new();
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            let (tx, rx) = std::sync::mpsc::channel();
            let stop = stop.clone();
            let lag = lag.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("tr-load-{i}"))
                    .spawn(move || {
                        // SAFETY: gettid has no preconditions.
                        let _ = tx.send(unsafe { libc::gettid() });
                        rt.block_on(lag_probe(lag, stop));
                        rt.shutdown_background();
                    })?,
            );
            tids.push(rx.recv().unwrap_or(0));
        }
        Ok(EnginePool {
            handles,
            threads,
            tids,
            stop,
            next: AtomicUsize::new(0),
            lag,
        })
    }

    /// Its threads.
    pub fn threads(&self) -> usize {
        self.handles.len()
    }

    /// Spawns a task on the next thread (round-robin).
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[i].spawn(fut)
    }

    /// Spawns many tasks at once, spread round-robin: each thread queues its share on its own
    /// run queue in one go (what it polls first), rather than taking them one at a time from
    /// the queue of tasks sent from other threads.
    pub async fn spawn_together<F>(&self, futs: Vec<F>) -> Vec<tokio::task::JoinHandle<F::Output>>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let n = self.handles.len();
        let mut shares: Vec<Vec<F>> = (0..n).map(|_| Vec::new()).collect();
        for (i, f) in futs.into_iter().enumerate() {
            shares[i % n].push(f);
        }
        let spawners: Vec<_> = shares
            .into_iter()
            .zip(&self.handles)
            .map(|(share, h)| {
                h.spawn(async move { share.into_iter().map(tokio::spawn).collect::<Vec<_>>() })
            })
            .collect();
        let mut all = Vec::new();
        for s in spawners {
            all.extend(s.await.expect("a spawner only spawns"));
        }
        all
    }

    /// CPU seconds its threads have used so far.
    pub fn cpu_s(&self) -> f64 {
        self.tids.iter().filter_map(|t| thread_cpu_s(*t)).sum()
    }

    /// What the scheduler says of its threads so far, added up (their CPU as running time, no
    /// wait, where the kernel keeps no scheduler statistics).
    pub fn sched(&self) -> SchedTimes {
        let mut sum = SchedTimes::default();
        for t in &self.tids {
            let s = SchedTimes::of(*t).unwrap_or_else(|| SchedTimes {
                run_s: thread_cpu_s(*t).unwrap_or(0.0),
                ..SchedTimes::default()
            });
            sum.run_s += s.run_s;
            sum.wait_s += s.wait_s;
            sum.slices += s.slices;
        }
        sum
    }

    /// Timer lateness so far, and resets it.
    pub fn take_lag(&self) -> Lateness {
        std::mem::take(&mut *self.lag.lock().expect("lag lock"))
    }

    /// Stops the threads (their tasks are dropped) and waits for them.
    pub fn shutdown(self) {
        self.stop.cancel();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Records how late a 100 ms timer fires: a saturated generator delays everything. The part of
/// it that its thread spent waiting for a core is the machine's; the rest is the generator's
/// own (its loop was busy with other work when the timer was due).
async fn lag_probe(lag: Arc<Mutex<Lateness>>, stop: CancellationToken) {
    let period = Duration::from_millis(100);
    let mut waited = SchedTimes::this_thread().map(|s| s.wait_s);
    loop {
        let asked = Instant::now();
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.cancelled() => return,
        }
        let late = asked.elapsed().saturating_sub(period);
        let now_waited = SchedTimes::this_thread().map(|s| s.wait_s);
        let machine = match (waited, now_waited) {
            (Some(a), Some(b)) => Duration::from_secs_f64((b - a).max(0.0)),
            _ => Duration::ZERO,
        };
        waited = now_waited;
        let mut lag = lag.lock().expect("lag lock");
        let _ = lag.all.record(late.as_micros() as u64);
        let _ = lag
            .own
            .record(late.saturating_sub(machine).as_micros() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_threads_do_the_work_and_their_cpu_is_counted() {
        let pool = EnginePool::start(2).unwrap();
        assert_eq!(pool.threads(), 2);
        let before = pool.cpu_s();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let jobs: Vec<_> = (0..2)
                .map(|_| {
                    pool.spawn(async {
                        let name = std::thread::current().name().unwrap_or("").to_string();
                        // 200 ms of this thread's own CPU, however long a busy machine takes
                        // to give it (300 ms of wall clock could be a few ms of CPU).
                        let (t, cpu) = (Instant::now(), crate::load::tasks::thread_cpu_ns());
                        let mut x = 0u64;
                        while crate::load::tasks::thread_cpu_ns() - cpu < 200_000_000
                            && t.elapsed() < Duration::from_secs(30)
                        {
                            x = x.wrapping_add(1);
                        }
                        (name, x)
                    })
                })
                .collect();
            for j in jobs {
                let (name, _) = j.await.unwrap();
                assert!(name.starts_with("tr-load-"), "{name}");
            }
        });
        let used = pool.cpu_s() - before;
        // 0.4 CPU s spun, counted in clock ticks (10 ms) per thread.
        assert!(used >= 0.35, "busy threads of the pool used CPU: {used}");
        pool.shutdown();
    }
}
