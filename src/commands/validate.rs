//! `trialrunner validate FILE…`: parse and check trials and environments; exit 2 on error.

use std::path::{Path, PathBuf};

use crate::error::{exit, Result};
use crate::trial;

/// Arguments of `validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Trial or environment files, or directories of them.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Environment to use instead of the one each trial names.
    #[arg(long)]
    pub env: Option<PathBuf>,
}

/// The files named, with directories replaced by the YAML files inside them (recursively).
pub fn yaml_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            inner.sort();
            let yaml: Vec<PathBuf> = inner
                .into_iter()
                .filter(|q| q.is_dir() || q.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            out.extend(yaml_files(&yaml));
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// True when a file is an environment (it has `services:` at top level).
fn is_environment(file: &Path) -> bool {
    std::fs::read_to_string(file)
        .map(|t| t.lines().any(|l| l.starts_with("services:")))
        .unwrap_or(false)
}

/// The environment a trial file names (`environment:`), read without validating the trial.
fn named_environment(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
    doc.get("environment")?.as_str().map(str::to_string)
}

/// Validates every file; prints one line per file. A trial naming an environment given in the
/// same call (by its `name:`) is checked against that file.
pub fn run(args: Args) -> Result<i32> {
    let mut failed = false;
    let files = yaml_files(&args.files);
    let given: Vec<(String, PathBuf)> = files
        .iter()
        .filter(|f| is_environment(f))
        .filter_map(|f| Some((trial::load_environment(f).ok()?.spec.name, f.clone())))
        .collect();
    for f in &files {
        let result = if is_environment(f) {
            trial::load_environment(f).map(|e| format!("environment `{}`", e.spec.name))
        } else {
            let env = args.env.clone().or_else(|| {
                let name = named_environment(f)?;
                given
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, p)| p.clone())
            });
            trial::load_trial(f, env.as_deref()).map(|t| {
                let p = trial::plan(&t);
                format!(
                    "trial `{}`: {} load runs, about {:.0} s",
                    t.spec.name,
                    p.load_phases().count(),
                    p.total().as_secs_f64()
                )
            })
        };
        match result {
            Ok(what) => crate::outln!("ok   {}: {what}", f.display()),
            Err(d) => {
                failed = true;
                eprintln!("FAIL {}:\n{d}", f.display());
            }
        }
    }
    Ok(if failed { exit::BAD_INPUT } else { exit::OK })
}
