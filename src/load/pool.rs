//! The load engine's own threads: one single-threaded tokio runtime per thread (as wrk runs one
//! event loop per thread), users spread over them round-robin. Keeping the generator on threads
//! of its own is what lets it measure itself: its CPU is those threads' CPU (an in-process
//! stand-in, the flusher, the executor are not the generator), and its timer lag is measured on
//! those runtimes.

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

/// Seconds a thread of this process has been running or ready to run (waiting for a core),
/// from the scheduler's own accounting; `None` where the kernel keeps none.
fn thread_busy_s(tid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let mut f = stat.split_whitespace();
    let run: f64 = f.next()?.parse().ok()?;
    let wait: f64 = f.next()?.parse().ok()?;
    (run > 0.0).then_some((run + wait) / 1e9)
}

/// The engine's threads.
pub struct EnginePool {
    handles: Vec<Handle>,
    threads: Vec<std::thread::JoinHandle<()>>,
    tids: Vec<i32>,
    stop: CancellationToken,
    next: AtomicUsize,
    lag: Arc<Mutex<Histogram<u64>>>,
}

impl EnginePool {
    /// Starts `n` threads (at least one), each running a single-threaded runtime until
    /// [`EnginePool::shutdown`], each with a 100 ms timer whose lateness is recorded.
    pub fn start(n: usize) -> std::io::Result<EnginePool> {
        let stop = CancellationToken::new();
        let lag = Arc::new(Mutex::new(new_hist()));
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

    /// CPU seconds its threads have used so far.
    pub fn cpu_s(&self) -> f64 {
        self.tids.iter().filter_map(|t| thread_cpu_s(*t)).sum()
    }

    /// Seconds its threads have been running or waiting for a core so far: what they wanted,
    /// where [`EnginePool::cpu_s`] is what a busy machine gave them (CPU where the kernel keeps
    /// no scheduler statistics).
    pub fn busy_s(&self) -> f64 {
        self.tids
            .iter()
            .filter_map(|t| thread_busy_s(*t).or_else(|| thread_cpu_s(*t)))
            .sum()
    }

    /// Timer lateness so far (µs), and resets it.
    pub fn take_lag(&self) -> Histogram<u64> {
        std::mem::replace(&mut *self.lag.lock().expect("lag lock"), new_hist())
    }

    /// Stops the threads (their tasks are dropped) and waits for them.
    pub fn shutdown(self) {
        self.stop.cancel();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Records how late a 100 ms timer fires: a saturated generator delays everything.
async fn lag_probe(lag: Arc<Mutex<Histogram<u64>>>, stop: CancellationToken) {
    let period = Duration::from_millis(100);
    loop {
        let asked = Instant::now();
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.cancelled() => return,
        }
        let late = asked.elapsed().saturating_sub(period);
        let _ = lag
            .lock()
            .expect("lag lock")
            .record(late.as_micros() as u64);
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
                        let t = Instant::now();
                        let mut x = 0u64;
                        while t.elapsed() < Duration::from_millis(300) {
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
        assert!(used > 0.05, "busy threads of the pool used CPU: {used}");
        pool.shutdown();
    }
}
