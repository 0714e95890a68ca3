//! One campaign per results directory at a time: an exclusive `flock` on `campaign.lock`
//! inside it, held for the campaign's lifetime and released by the kernel however the process
//! ends (`kill -9` included). Two processes can therefore never append to one ledger; the file
//! names the holder, so a refusal says who it is.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;

use super::ResultsDir;
use crate::error::{Error, Result};
use crate::owner::Owner;

/// The name of the lock file in a results directory.
pub const LOCK_FILE: &str = "campaign.lock";

/// A results directory held by this process; dropping it releases the directory.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl ResultsDir {
    /// Takes the directory for this process, or refuses (bad input, nothing changed) naming the
    /// process that holds it.
    pub fn lock(&self) -> Result<DirLock> {
        let path = self.root.join(LOCK_FILE);
        let io = |e| Error::io(format!("opening {}", path.display()), e);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock on a file descriptor we own; LOCK_NB never blocks.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let who = serde_json::from_str::<Owner>(&text)
                .map(|o| o.to_string())
                .unwrap_or_else(|_| "another process".into());
            return Err(Error::Usage(format!(
                "{} is in use by a campaign that is still running ({who}): two processes never write one results directory; wait for it to end or stop it (Ctrl-C), then resume",
                self.root.display()
            )));
        }
        let owner = serde_json::to_string(&Owner::current()).expect("an owner serializes");
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(owner.as_bytes()))
            .and_then(|_| file.sync_all())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_results_directory_has_one_holder_at_a_time_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let rd = ResultsDir::create(&dir.path().join("r")).unwrap();
        let held = rd.lock().unwrap();
        // Another open file description, as another process has: refused, the holder named.
        let err = rd.lock().unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::BAD_INPUT);
        let text = err.to_string();
        assert!(
            text.contains("in use by a campaign that is still running")
                && text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(held);
        let _again = rd.lock().expect("released when dropped");
    }
}
