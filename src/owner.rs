//! Who owns something a campaign holds (an undo journal, a results directory, the lock on a
//! deployment): the host, the process id and the kernel's start time of that process, so that
//! a reused pid is never taken for the owner. A leaf: every room may name an owner.
//!
//! The host an owner records is this machine's name, or `TRIALRUNNER_HOST` when it is set (the
//! tests play two operators on two hosts from one machine with it). Nothing else reads it.

use serde::{Deserialize, Serialize};

/// The process that holds something.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Owner {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When it started (Unix seconds).
    pub started_unix: f64,
    /// The kernel's start time of the process (clock ticks since boot), to tell a reused pid.
    #[serde(default)]
    pub proc_start: Option<u64>,
}

/// Whether an owner still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The owner is this process.
    ThisProcess,
    /// The owner runs on this host.
    Alive,
    /// The owner is gone.
    Gone,
    /// The owner ran on another host: cannot tell.
    Unknown,
}

/// This machine's host name (the kernel's).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The host owners on this machine record: `TRIALRUNNER_HOST`, else [`hostname`].
pub fn this_host() -> String {
    std::env::var("TRIALRUNNER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(hostname)
}

/// Field 22 of `/proc/<pid>/stat`: the process's start time in clock ticks since boot.
pub fn proc_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner {
            host: this_host(),
            pid,
            started_unix: crate::clock::unix_now(),
            proc_start: proc_start(pid),
        }
    }

    /// True when both name the same process (host, pid and start time).
    pub fn same_process(&self, other: &Owner) -> bool {
        self.host == other.host && self.pid == other.pid && self.proc_start == other.proc_start
    }

    /// Whether the owner still runs.
    pub fn liveness(&self) -> Liveness {
        if self.host != this_host() {
            return Liveness::Unknown;
        }
        if self.pid == std::process::id() && self.proc_start == proc_start(self.pid) {
            return Liveness::ThisProcess;
        }
        // SAFETY: signal 0 only checks that the process exists.
        let exists = unsafe { libc::kill(self.pid as i32, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        match (exists, self.proc_start) {
            (false, _) => Liveness::Gone,
            (true, Some(t)) if proc_start(self.pid) != Some(t) => Liveness::Gone,
            (true, _) => Liveness::Alive,
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = chrono::DateTime::from_timestamp(self.started_unix as i64, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        write!(f, "pid {} on {} since {since}", self.pid, self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every branch of the liveness check, each with an owner whose answer only that branch
    /// can give: a live process of this host, the same pid started at another time (a reused
    /// pid), a process that exited (recorded without a start time, so only the existence check
    /// can say gone), and another host.
    #[test]
    fn this_process_is_alive_and_a_dead_pid_is_gone() {
        let me = Owner::current();
        assert_eq!(me.liveness(), Liveness::ThisProcess);
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let started = proc_start(pid).expect("a live child has a start time");
        let other = Owner {
            pid,
            proc_start: Some(started),
            ..Owner::current()
        };
        assert_eq!(other.liveness(), Liveness::Alive, "another live process");
        let reused = Owner {
            proc_start: Some(started + 1),
            ..other.clone()
        };
        assert_eq!(
            reused.liveness(),
            Liveness::Gone,
            "the pid, not the process"
        );
        let unknown_start = Owner {
            proc_start: None,
            ..other.clone()
        };
        assert_eq!(unknown_start.liveness(), Liveness::Alive);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            unknown_start.liveness(),
            Liveness::Gone,
            "exited: without a start time only the existence check can tell"
        );
        assert_eq!(other.liveness(), Liveness::Gone);
        let elsewhere = Owner {
            host: "another-host".into(),
            ..Owner::current()
        };
        assert_eq!(elsewhere.liveness(), Liveness::Unknown);
    }
}
