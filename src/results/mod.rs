//! The results directory: formats on disk and how they are written so that they last.
//!
//! ```text
//! <dir>/manifest.json  journal.json  campaign.json  report.html  report.md
//! <dir>/runs/<run-id>/ summary.json timeline.csv latency.hlog stats.csv stats_history.csv
//!                      failures.csv stores.json infra.jsonl cloudwatch.json
//! ```
//! Whole files are written atomically (temp file, fsync, rename, fsync of the directory); the
//! per-second files of a run in flight are appended and flushed each second.

pub mod cells;
pub mod csv;
pub mod lock;
pub mod summary;
pub mod twin;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
pub use summary::*;

/// Seconds since the Unix epoch, now (the results' timestamps; defined in [`crate::clock`]).
pub use crate::clock::unix_now;

/// `path` made absolute against the current directory (without resolving links).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Writes `bytes` to `path` atomically: a reader sees the old file or the new one, never half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let io = |e| Error::io(format!("writing {}", path.display()), e);
    {
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    fs::rename(&tmp, path).map_err(io)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Serializes `value` as pretty JSON and writes it atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).expect("results serialize");
    write_atomic(path, &bytes)
}

/// Reads a JSON file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Usage(format!("{}: not a valid results file: {e}", path.display())))
}

/// A file appended to as a run goes, flushed after each batch.
pub struct AppendFile {
    file: std::io::BufWriter<File>,
    path: PathBuf,
}

impl AppendFile {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> Result<AppendFile> {
        if let Some(d) = path.parent() {
            fs::create_dir_all(d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(AppendFile {
            file: std::io::BufWriter::new(file),
            path: path.to_path_buf(),
        })
    }

    /// Appends text.
    pub fn write(&mut self, text: &str) -> Result<()> {
        self.file
            .write_all(text.as_bytes())
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))
    }

    /// Pushes buffered text to the OS.
    pub fn flush(&mut self) -> Result<()> {
        self.file
            .flush()
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))
    }

    /// Flushes and fsyncs.
    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        self.file
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(format!("syncing {}", self.path.display()), e))
    }
}

/// A results directory of one campaign.
#[derive(Debug, Clone)]
pub struct ResultsDir {
    /// Its root.
    pub root: PathBuf,
}

impl ResultsDir {
    /// Starts a new results directory. An existing one that holds anything is refused: two
    /// campaigns must never merge into one report (continue one with `--resume`).
    pub fn create(root: &Path) -> Result<ResultsDir> {
        let root = absolute(root);
        let occupied = fs::read_dir(&root).is_ok_and(|mut d| d.next().is_some());
        if occupied {
            return Err(Error::Usage(format!(
                "{} already exists and is not empty: continue that campaign with --resume {}, or choose another --out",
                root.display(),
                root.display()
            )));
        }
        fs::create_dir_all(root.join("runs"))
            .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
        Ok(ResultsDir { root })
    }

    /// Starts a results directory afresh, removing an earlier one at the same place only when
    /// it is a results directory (the demo's own output).
    pub fn replace(root: &Path) -> Result<ResultsDir> {
        if root.join("manifest.json").is_file() && root.join("runs").is_dir() {
            fs::remove_dir_all(root)
                .map_err(|e| Error::io(format!("removing {}", root.display()), e))?;
        }
        ResultsDir::create(root)
    }

    /// Opens an existing results directory.
    pub fn open(root: &Path) -> Result<ResultsDir> {
        let root = absolute(root);
        if !root.join("runs").is_dir() {
            return Err(Error::Usage(format!(
                "{} is not a results directory (no runs/ inside)",
                root.display()
            )));
        }
        Ok(ResultsDir { root })
    }

    /// Moves the folder of a run that did not complete to `superseded/<run-id>.<n>`, so that a
    /// new attempt starts clean and nothing measured is lost. Returns where it went.
    pub fn set_aside(&self, run_id: &str) -> Result<PathBuf> {
        let from = self.run_dir(run_id);
        let aside = self.root.join("superseded");
        fs::create_dir_all(&aside)
            .map_err(|e| Error::io(format!("creating {}", aside.display()), e))?;
        let to = (1..)
            .map(|n| aside.join(format!("{run_id}.{n}")))
            .find(|p| !p.exists())
            .expect("a free name");
        fs::rename(&from, &to)
            .map_err(|e| Error::io(format!("moving {} aside", from.display()), e))?;
        Ok(to)
    }

    /// The folder of a run.
    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.root.join("runs").join(run_id)
    }

    /// True when a run finished and its summary is on disk.
    pub fn run_complete(&self, run_id: &str) -> bool {
        self.run_dir(run_id).join("summary.json").is_file()
    }

    /// Summaries of every completed run, in start order.
    pub fn summaries(&self) -> Result<Vec<RunSummary>> {
        let mut out = Vec::new();
        let runs = self.root.join("runs");
        let entries =
            fs::read_dir(&runs).map_err(|e| Error::io(format!("reading {}", runs.display()), e))?;
        for entry in entries.flatten() {
            let p = entry.path().join("summary.json");
            if p.is_file() {
                out.push(read_json::<RunSummary>(&p)?);
            }
        }
        out.sort_by(|a, b| a.started_unix.total_cmp(&b.started_unix));
        Ok(out)
    }
}
