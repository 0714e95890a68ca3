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
    /// Opens (or starts) the ledger of a results directory. A torn last line (a crash in the
    /// middle of an append) is cut off and kept aside in `ledger.torn`, so the file ends on a
    /// whole line again and the next append starts a line of its own; damage anywhere else is
    /// bad input, named by file and line.
    pub fn open(results_dir: &Path) -> Result<Ledger> {
        let path = results_dir.join("ledger.jsonl");
        let mut done = BTreeMap::new();
        let text = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        // Bytes up to the end of the last whole, readable line.
        let mut whole = 0;
        for (i, line) in lines.iter().enumerate() {
            let last = i + 1 == lines.len();
            if line.trim().is_empty() {
                whole += line.len();
                continue;
            }
            match serde_json::from_str::<LedgerEntry>(line.trim_end()) {
                // A complete entry whose newline never made it is still complete.
                Ok(e) => {
                    done.insert(e.key.clone(), e);
                    whole += line.len();
                }
                Err(_) if last => {}
                Err(e) => {
                    return Err(Error::Usage(format!(
                        "{}:{}: not a ledger line: {e}",
                        path.display(),
                        i + 1
                    )))
                }
            }
        }
        let ledger = Ledger { path, done };
        if whole < text.len() {
            ledger.cut_torn_tail(&text[whole..], whole as u64)?;
        } else if !text.is_empty() && !text.ends_with('\n') {
            ledger.append(b"\n")?;
        }
        Ok(ledger)
    }

    /// Keeps a torn tail in `ledger.torn` (with when it was found), then cuts it off.
    fn cut_torn_tail(&self, tail: &str, keep: u64) -> Result<()> {
        let aside = self.path.with_file_name("ledger.torn");
        tracing::warn!(
            "{}: a torn last line (a crash while writing it) is cut off and kept in {}",
            self.path.display(),
            aside.display()
        );
        let io = |e| Error::io(format!("repairing {}", self.path.display()), e);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&aside)
            .map_err(io)?;
        writeln!(f, "{} {tail}", crate::results::unix_now()).map_err(io)?;
        f.sync_all().map_err(io)?;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(io)?;
        f.set_len(keep).map_err(io)?;
        f.sync_all().map_err(io)
    }

    /// Appends bytes durably, on a line of their own: after a torn write, a newline first.
    fn append(&self, bytes: &[u8]) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let io = |e| Error::io(format!("writing {}", self.path.display()), e);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        if len > 0 && bytes != b"\n" {
            let mut last = [0u8; 1];
            f.seek(SeekFrom::Start(len - 1)).map_err(io)?;
            f.read_exact(&mut last).map_err(io)?;
            if last[0] != b'\n' {
                f.write_all(b"\n").map_err(io)?;
            }
        }
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)
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
        let mut line = serde_json::to_string(&entry).expect("ledger entries serialize");
        line.push('\n');
        self.append(line.as_bytes())?;
        self.done.insert(key.into(), entry);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Half a line at the end of the file, as a crash in the middle of an append leaves it.
    fn tear(dir: &Path, fragment: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("ledger.jsonl"))
            .unwrap();
        f.write_all(fragment.as_bytes()).unwrap();
    }

    #[test]
    fn completed_steps_survive_a_reopen_and_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(dir.path()).unwrap();
        l.record("000-clear-stores", "clear stores", None).unwrap();
        l.record("001-load", "load u002-verify", Some("ok".into()))
            .unwrap();
        tear(dir.path(), "{\"key\":\"002-co");
        let mut l = Ledger::open(dir.path()).unwrap();
        assert!(l.is_done("000-clear-stores") && l.is_done("001-load"));
        assert!(!l.is_done("002-count-stores"));
        assert_eq!(l.entry("001-load").unwrap().note.as_deref(), Some("ok"));
        // The campaign goes on writing, is torn again, and the ledger still reads whole.
        l.record("002-count-stores", "count stores", None).unwrap();
        tear(dir.path(), "{\"key\":\"003-lo");
        let mut l = Ledger::open(dir.path()).unwrap();
        l.record("003-load", "load u004-verify", None).unwrap();
        let l = Ledger::open(dir.path()).unwrap();
        let keys: Vec<&str> = l.entries().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "000-clear-stores",
                "001-load",
                "002-count-stores",
                "003-load"
            ]
        );
        let text = std::fs::read_to_string(dir.path().join("ledger.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 4, "whole lines only:\n{text}");
        assert!(text.ends_with('\n'));
        let torn = std::fs::read_to_string(dir.path().join("ledger.torn")).unwrap();
        assert!(
            torn.contains("{\"key\":\"002-co") && torn.contains("{\"key\":\"003-lo"),
            "both fragments kept for the record: {torn}"
        );
    }

    #[test]
    fn damage_before_the_last_line_is_named_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(dir.path()).unwrap();
        l.record("000-preflight", "preflight", None).unwrap();
        tear(dir.path(), "not json\n");
        l.record("001-load", "load", None).unwrap();
        let err = Ledger::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("ledger.jsonl:2: not a ledger line"), "{err}");
    }

    #[test]
    fn a_whole_entry_missing_only_its_newline_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        Ledger::open(dir.path())
            .unwrap()
            .record("000-preflight", "preflight", None)
            .unwrap();
        tear(
            dir.path(),
            "{\"key\":\"001-load\",\"step\":\"load\",\"done_unix\":1.0}",
        );
        let mut l = Ledger::open(dir.path()).unwrap();
        assert!(l.is_done("001-load"));
        l.record("002-count", "count", None).unwrap();
        assert_eq!(Ledger::open(dir.path()).unwrap().entries().count(), 3);
    }
}
