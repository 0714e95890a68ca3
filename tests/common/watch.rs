//! A child process watched line by line: wait for a line to appear (with a bound), send it a
//! signal, and collect how it ended and everything it printed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A running child whose stderr is collected as it comes.
pub struct Watched {
    /// The child.
    pub child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
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
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let (l, cv) = &*lines;
                    l.lock().unwrap().push(line);
                    cv.notify_all();
                }
            });
        }
        Watched {
            child,
            lines,
            started: Instant::now(),
        }
    }

    /// Waits until a line containing `pattern` appears; panics with the output after `timeout`.
    pub fn wait_for(&self, pattern: &str, timeout: Duration) {
        let (l, cv) = &*self.lines;
        let deadline = Instant::now() + timeout;
        let mut guard = l.lock().unwrap();
        while !guard.iter().any(|x| x.contains(pattern)) {
            let now = Instant::now();
            assert!(
                now < deadline,
                "no line with `{pattern}` after {timeout:?}:\n{}",
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
                // Let the readers drain the pipes.
                std::thread::sleep(Duration::from_millis(100));
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
