//! The campaign ledger (`ledger.jsonl` in the results directory): one line per completed step,
//! appended and fsynced the moment the step completes. `--resume` reads it to do exactly what
//! is left: a completed clear, count, load run or metrics pull is never repeated; a run that was
//! interrupted is not in it, so it runs again. Infrastructure steps (pin, wait, check) are
//! idempotent and run again on every resume: the groups may have been restored in between.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One completed step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Its key (`007-clear-stores`): the step's index in the plan and its kind.
    pub key: String,
    /// The step as `plan` prints it.
    pub step: String,
    /// When it completed (Unix seconds).
    pub done_unix: f64,
    /// What came of it, when there is something to say (a metrics pull that failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The ledger of one results directory.
pub struct Ledger {
    path: PathBuf,
    done: BTreeMap<String, LedgerEntry>,
}

impl Ledger {
    /// Opens (or starts) the ledger of a results directory.
    pub fn open(results_dir: &Path) -> Result<Ledger> {
        let path = results_dir.join("ledger.jsonl");
        let mut done = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                // A torn last line (a crash mid-write) is the only tolerated damage.
                match serde_json::from_str::<LedgerEntry>(line) {
                    Ok(e) => {
                        done.insert(e.key.clone(), e);
                    }
                    Err(_) if i + 1 == text.lines().count() => {}
                    Err(e) => {
                        return Err(Error::Usage(format!(
                            "{}:{}: not a ledger line: {e}",
                            path.display(),
                            i + 1
                        )))
                    }
                }
            }
        }
        Ok(Ledger { path, done })
    }

    /// True when the step with this key completed.
    pub fn is_done(&self, key: &str) -> bool {
        self.done.contains_key(key)
    }

    /// The entry of a completed step.
    pub fn entry(&self, key: &str) -> Option<&LedgerEntry> {
        self.done.get(key)
    }

    /// Every completed step, by key.
    pub fn entries(&self) -> impl Iterator<Item = &LedgerEntry> {
        self.done.values()
    }

    /// Records a completed step, durably, before the campaign goes on.
    pub fn record(&mut self, key: &str, step: &str, note: Option<String>) -> Result<()> {
        let entry = LedgerEntry {
            key: key.into(),
            step: step.into(),
            done_unix: crate::results::unix_now(),
            note,
        };
        let line = serde_json::to_string(&entry).expect("ledger entries serialize");
        let io = |e| Error::io(format!("writing {}", self.path.display()), e);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        writeln!(f, "{line}").map_err(io)?;
        f.sync_all().map_err(io)?;
        self.done.insert(key.into(), entry);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_steps_survive_a_reopen_and_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(dir.path()).unwrap();
        l.record("000-clear-stores", "clear stores", None).unwrap();
        l.record("001-load", "load u002-verify", Some("ok".into()))
            .unwrap();
        // A crash while appending leaves half a line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("ledger.jsonl"))
            .unwrap();
        f.write_all(b"{\"key\":\"002-co").unwrap();
        let l = Ledger::open(dir.path()).unwrap();
        assert!(l.is_done("000-clear-stores") && l.is_done("001-load"));
        assert!(!l.is_done("002-count-stores"));
        assert_eq!(l.entry("001-load").unwrap().note.as_deref(), Some("ok"));
    }
}
