//! A campaign's results directory on S3 (`--out s3://bucket/prefix/…`): the local directory is
//! the working copy (a cache under `results/s3/<bucket>/<prefix>`), and after each completed step
//! every file that changed is put under the prefix, the ledger last, so the copy never lists a
//! step whose files it lacks. `--resume s3://…` brings the copy down (what the cache lacks) and
//! continues from it, on any machine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;

use super::bucket::Bucket;
use super::{is_emulator, AwsContext, AwsTimeouts};
use crate::error::{Error, Result};
use crate::provider::ResultsMirror;
use crate::results::{absolute, ResultsDir};
use crate::trial::model::EnvironmentFile;
use crate::trial::s3::S3Location;

/// Above this size a file is put with attempts as long as its upload needs
/// ([`Bucket::put_large`]), not the clients' 20 s.
const LARGE: usize = 8_000_000;

/// Files of a results directory that stay local: the process lock and temporary files.
fn stays_local(relative: &str) -> bool {
    relative == "campaign.lock"
        || relative
            .rsplit('/')
            .next()
            .is_some_and(|name| name.starts_with('.'))
}

/// `text` as an S3 location when it is written `s3://…`; `None` for a local path; bad input
/// when it starts `s3://` but is not one.
pub fn location_of(text: &Path, flag: &str) -> Result<Option<S3Location>> {
    let Some(t) = text.to_str().filter(|t| t.starts_with("s3://")) else {
        return Ok(None);
    };
    S3Location::parse(t)
        .filter(|l| !l.prefix.chars().any(char::is_control))
        .map(Some)
        .ok_or_else(|| {
            Error::Usage(format!(
                "{flag} `{t}` is not an S3 location: write s3://bucket/prefix"
            ))
        })
}

/// The local copy of an S3 location: `results/s3/<bucket>/<prefix>` under the working
/// directory (absolute).
pub fn cache_dir(location: &S3Location) -> PathBuf {
    let mut p = PathBuf::from("results").join("s3").join(&location.bucket);
    for part in location.prefix.split('/').filter(|p| !p.is_empty()) {
        p.push(part);
    }
    absolute(&p)
}

/// `s3://bucket/prefix` as it is written.
pub fn url_of(location: &S3Location) -> String {
    if location.prefix.is_empty() {
        format!("s3://{}", location.bucket)
    } else {
        format!("s3://{}/{}", location.bucket, location.prefix)
    }
}

/// A bucket client for `location`, with the environment's AWS account, region and credentials
/// (an S3 location needs the environment's `aws` section).
pub async fn bucket_for(
    env: &EnvironmentFile,
    endpoint_override: Option<&str>,
    location: S3Location,
) -> Result<Bucket> {
    let spec = env.aws.as_ref().ok_or_else(|| {
        Error::Usage(format!(
            "{} is on S3: the environment `{}` needs an `aws` section (account, region) to reach it",
            url_of(&location),
            env.name
        ))
    })?;
    let ctx = AwsContext::load(spec, endpoint_override, AwsTimeouts::default()).await?;
    let path_style = is_emulator(&ctx.endpoint);
    let config = ctx.config.clone();
    Ok(Bucket::new(&ctx, &config, location, path_style))
}

/// A results directory mirrored to S3 as the campaign goes.
pub struct S3Results {
    bucket: Bucket,
    /// What was sent of each file (length, modification time), by its path in the directory.
    sent: Mutex<HashMap<String, (u64, SystemTime)>>,
}

impl S3Results {
    /// The mirror of the results directory at `bucket`'s location.
    pub fn new(bucket: Bucket) -> S3Results {
        S3Results {
            bucket,
            sent: Mutex::default(),
        }
    }

    /// A new campaign's results directory: refused when the S3 location or its local copy
    /// already holds anything (two campaigns never merge; continue one with `--resume`).
    pub async fn create(&self) -> Result<ResultsDir> {
        let here = url_of(&self.bucket.location);
        if !self
            .bucket
            .list(&self.bucket.location.prefix)
            .await?
            .is_empty()
        {
            return Err(Error::Usage(format!(
                "{here} already holds results: continue that campaign with --resume {here}, or choose another --out"
            )));
        }
        ResultsDir::create(&cache_dir(&self.bucket.location))
    }

    /// The results directory of a campaign on S3, brought down into its local copy (only the
    /// files the copy lacks: a copy left on this machine is as new as S3's, or newer).
    pub async fn resume(&self) -> Result<ResultsDir> {
        let here = url_of(&self.bucket.location);
        let local = cache_dir(&self.bucket.location);
        let n = self
            .bucket
            .download_except(&self.bucket.location.prefix, &local, |p| p.exists())
            .await?;
        if !local.join("ledger.jsonl").is_file() && !local.join("manifest.json").is_file() {
            return Err(Error::Usage(format!(
                "{here} holds no campaign (no manifest.json or ledger.jsonl under it)"
            )));
        }
        std::fs::create_dir_all(local.join("runs"))
            .map_err(|e| Error::io(format!("creating {}", local.display()), e))?;
        crate::terminal::say(&format!(
            "resuming {here}: {n} file(s) brought down into {}",
            local.display()
        ));
        ResultsDir::open(&local)
    }

    /// Every file of `dir` to send, by its path in the directory, the ledger last.
    fn files(dir: &Path) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(dir) {
                    let rel = rel.to_string_lossy().replace('\\', "/");
                    if !stays_local(&rel) {
                        out.push((rel, p));
                    }
                }
            }
        }
        out.sort_by_key(|(rel, _)| (rel == "ledger.jsonl", rel.clone()));
        out
    }
}

#[async_trait]
impl ResultsMirror for S3Results {
    fn location(&self) -> String {
        url_of(&self.bucket.location)
    }

    async fn sync(&self, dir: &Path) -> Result<()> {
        let mut failed: Vec<String> = Vec::new();
        let mut first_error = None;
        for (rel, path) in Self::files(dir) {
            // The ledger goes up only with every file it may name.
            if rel == "ledger.jsonl" && !failed.is_empty() {
                failed.push(rel);
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let stamp = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            if self.sent.lock().expect("sent").get(&rel) == Some(&stamp) {
                continue;
            }
            // S3 refused or did not answer one file (each call already tried to its deadline):
            // the rest wait for the next sync, so an unreachable S3 costs one call's deadline
            // per step, not one per file.
            if first_error.is_some() {
                failed.push(rel);
                continue;
            }
            let sent = match std::fs::read(&path) {
                // A large file (a long run's latency log) gets attempts as long as it needs.
                Ok(bytes) if bytes.len() > LARGE => {
                    self.bucket
                        .put_large(&self.bucket.location.key(&rel), bytes)
                        .await
                }
                Ok(bytes) => {
                    self.bucket
                        .put(&self.bucket.location.key(&rel), bytes)
                        .await
                }
                Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
            };
            match sent {
                Ok(()) => {
                    self.sent.lock().expect("sent").insert(rel, stamp);
                }
                Err(e) => {
                    first_error.get_or_insert(e.to_string());
                    failed.push(rel);
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(Error::Infra(format!(
                "{} file(s) not copied yet ({}): {e}",
                failed.len(),
                failed.join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_goes_last_and_the_lock_and_temporary_files_stay_local() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "ledger.jsonl",
            "manifest.json",
            "campaign.lock",
            ".manifest.json.tmp-1",
            "runs/u001/summary.json",
            "journal.json",
        ] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        let names: Vec<String> = S3Results::files(d.path())
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        assert_eq!(
            names,
            [
                "journal.json",
                "manifest.json",
                "runs/u001/summary.json",
                "ledger.jsonl"
            ]
        );
    }

    #[test]
    fn an_s3_flag_is_parsed_and_a_local_path_is_not_one() {
        let l = location_of(Path::new("s3://bkt/nightly/t1"), "--out")
            .unwrap()
            .unwrap();
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("bkt", "nightly/t1")
        );
        assert!(cache_dir(&l).ends_with("results/s3/bkt/nightly/t1"));
        assert!(location_of(Path::new("results/x"), "--out")
            .unwrap()
            .is_none());
        assert!(location_of(Path::new("s3://B!/x"), "--out").is_err());
    }
}
