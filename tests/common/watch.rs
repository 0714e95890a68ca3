//! A child process watched line by line: wait for a line to appear (with a bound), send it a
//! signal, and collect how it ended and everything it printed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A running child whose stderr is collected as it comes.
pub struct Watched {
    /// The child.
    pub child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
    /// One message per output stream when its reader reached the stream's end.
    drained: Receiver<()>,
    started: Instant,
}

impl Watched {
    /// Spawns `cmd` with stderr piped (stdout too, collected with it).
    pub fn spawn(mut cmd: Command) -> Watched {
        let mut child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let (done, drained) = channel();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let (lines, done) = (lines.clone(), done.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let (l, cv) = &*lines;
                    l.lock().unwrap().push(line);
                    cv.notify_all();
                }
                let _ = done.send(());
            });
        }
        Watched {
            child,
            lines,
            drained,
            started: Instant::now(),
        }
    }

    /// Waits until a line containing `pattern` appears; panics with the output after `timeout`.
    pub fn wait_for(&self, pattern: &str, timeout: Duration) {
        self.wait_for_nth(pattern, 1, timeout);
    }

    /// Waits until `n` lines containing `pattern` have appeared; panics with the output after
    /// `timeout`.
    pub fn wait_for_nth(&self, pattern: &str, n: usize, timeout: Duration) {
        let (l, cv) = &*self.lines;
        let deadline = Instant::now() + timeout;
        let mut guard = l.lock().unwrap();
        while guard.iter().filter(|x| x.contains(pattern)).count() < n {
            let now = Instant::now();
            assert!(
                now < deadline,
                "not {n} lines with `{pattern}` after {timeout:?}:\n{}",
                guard.join("\n")
            );
            guard = cv.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        self.lines.0.lock().unwrap().join("\n")
    }

    /// Waits for the end (at most `timeout`, then kills it and panics); returns the status, the
    /// output and how long after `since` it ended.
    pub fn finish(mut self, since: Instant, timeout: Duration) -> (ExitStatus, String, Duration) {
        let deadline = since + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let took = since.elapsed();
                // Everything it printed: both readers at their stream's end. A process it left
                // behind may hold a pipe open: then what came within a few seconds.
                let drained_by = Instant::now() + Duration::from_secs(5);
                for _ in 0..2 {
                    let left = drained_by.saturating_duration_since(Instant::now());
                    if self.drained.recv_timeout(left).is_err() {
                        break;
                    }
                }
                return (status, self.output(), took);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "still running {timeout:?} after the stop request (started {:?} ago):\n{}",
                    self.started.elapsed(),
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
