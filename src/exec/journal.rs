//! The undo journal: the original settings of every ASG a trial will touch, written (to the
//! results dir and to a state file outside it) *before* the first change, and replayed to
//! restore — at the end, on error, on Ctrl-C, or later by `trialrunner infra restore`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::provider::{AsgSettings, Scaler};
use crate::results;

/// What the journal holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JournalState {
    /// The environment's name.
    pub environment: String,
    /// The results directory of the trial that wrote it.
    pub results_dir: Option<PathBuf>,
    /// Original settings, one per ASG.
    pub original: Vec<AsgSettings>,
    /// True once everything was put back.
    pub restored: bool,
}

/// The journal and where it is kept.
pub struct UndoJournal {
    state: JournalState,
    files: Vec<PathBuf>,
}

/// The directory of per-environment state files (`$TRIALRUNNER_STATE_DIR`, else
/// `$XDG_STATE_HOME/trialrunner`, else `~/.local/state/trialrunner`).
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TRIALRUNNER_STATE_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("trialrunner")
}

/// The state file of an environment's journal.
pub fn state_file(environment: &str) -> PathBuf {
    state_dir().join(format!("journal-{environment}.json"))
}

impl UndoJournal {
    /// A journal for `environment`, kept in `results_dir/journal.json` and the state file.
    pub fn new(environment: &str, results_dir: Option<&Path>) -> UndoJournal {
        let mut files = vec![state_file(environment)];
        if let Some(d) = results_dir {
            files.insert(0, d.join("journal.json"));
        }
        UndoJournal {
            state: JournalState {
                environment: environment.into(),
                results_dir: results_dir.map(Path::to_path_buf),
                ..Default::default()
            },
            files,
        }
    }

    /// Loads the journal an earlier (crashed) trial left for this environment, if any.
    pub fn load_pending(environment: &str) -> Result<Option<UndoJournal>> {
        let f = state_file(environment);
        if !f.exists() {
            return Ok(None);
        }
        let state: JournalState = results::read_json(&f)?;
        if state.restored || state.original.is_empty() {
            return Ok(None);
        }
        let mut files = vec![f];
        if let Some(d) = &state.results_dir {
            files.insert(0, d.join("journal.json"));
        }
        Ok(Some(UndoJournal { state, files }))
    }

    /// The journal's contents.
    pub fn state(&self) -> &JournalState {
        &self.state
    }

    /// Records original settings (first record of an ASG wins) and persists before returning.
    pub fn record(&mut self, settings: Vec<AsgSettings>) -> Result<()> {
        for s in settings {
            if !self.state.original.iter().any(|o| o.name == s.name) {
                self.state.original.push(s);
            }
        }
        self.state.restored = false;
        self.persist()
    }

    fn persist(&self) -> Result<()> {
        for f in &self.files {
            results::write_json(f, &self.state)?;
        }
        Ok(())
    }

    /// True when there is something to restore.
    pub fn pending(&self) -> bool {
        !self.state.restored && !self.state.original.is_empty()
    }

    /// Puts every ASG back; tries all even if one fails; idempotent.
    pub async fn restore(&mut self, scaler: &dyn Scaler) -> Result<()> {
        if !self.pending() {
            return Ok(());
        }
        let mut failures = Vec::new();
        for original in &self.state.original {
            if let Err(e) = scaler.restore(original).await {
                failures.push(format!("{}: {e}", original.name));
            }
        }
        if !failures.is_empty() {
            return Err(Error::Infra(format!(
                "restoring ASGs failed ({}); the journal is kept: run `trialrunner infra restore --env …` again",
                failures.join("; ")
            )));
        }
        self.state.restored = true;
        self.persist()?;
        // The state file has done its job; the results dir keeps the record.
        if let Some(state) = self.files.last() {
            let _ = std::fs::remove_file(state);
        }
        Ok(())
    }
}
