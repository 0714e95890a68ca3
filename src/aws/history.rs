//! A regression history on S3 (`--history s3://bucket/prefix`): one object per campaign at
//! `<prefix>/<trial>/<environment>/<ended at>-<campaign>.json` (its history line), never one
//! file rewritten, so two campaigns appending at once both land. Read back by listing: the trend
//! chart's lines, and the baseline (the latest complete campaign of a trial in an environment,
//! by [`crate::results::baseline::latest_complete`], the rule local results follow too).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::bucket::Bucket;
use crate::error::{Error, Result};
use crate::results::baseline::{latest_complete, Ended};

/// A name as one part of a key (no `/`).
fn part(name: &str) -> String {
    name.replace('/', "_")
}

/// The key prefix of a trial's history in an environment.
fn prefix_of(bucket: &Bucket, trial: &str, environment: &str) -> String {
    bucket
        .location
        .key(&format!("{}/{}", part(trial), part(environment)))
}

/// Puts one campaign's history line as an object of its own; returns its key.
pub async fn put(bucket: &Bucket, line: &Value) -> Result<String> {
    let field = |k: &str| line[k].as_str().unwrap_or("unknown").to_string();
    let key = format!(
        "{}/{}-{}.json",
        prefix_of(bucket, &field("trial"), &field("environment")),
        field("date"),
        part(&field("campaign"))
    );
    bucket.put(&key, line.to_string().into_bytes()).await?;
    Ok(key)
}

/// Every history line of `trial` in `environment`, in key order (their end time).
pub async fn lines(bucket: &Bucket, trial: &str, environment: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for key in bucket.list(&prefix_of(bucket, trial, environment)).await? {
        let bytes = bucket.get(&key).await?;
        let line = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Infra(format!("s3 history object {key}: not a history line: {e}"))
        })?;
        out.push(line);
    }
    Ok(out)
}

/// Copies the history lines of `trial` in `environment` into `dir/<trial>/<environment>/`,
/// where the report's trend chart reads them beside `history.jsonl`; how many.
pub async fn bring_down(
    bucket: &Bucket,
    trial: &str,
    environment: &str,
    dir: &Path,
) -> Result<usize> {
    let into: PathBuf = dir.join(part(trial)).join(part(environment));
    bucket
        .download_except(&prefix_of(bucket, trial, environment), &into, |p| {
            p.exists()
        })
        .await
}

/// Where the latest complete campaign of `trial` in `environment` that ended by `by` keeps its
/// results (as its history line says), if the history holds one.
pub async fn baseline(
    bucket: &Bucket,
    trial: &str,
    environment: &str,
    by: &str,
) -> Result<Option<String>> {
    let found = lines(bucket, trial, environment)
        .await?
        .into_iter()
        .filter_map(|l| Some((Ended::of_history(&l)?, l["results"].as_str()?.to_string())));
    Ok(latest_complete(found, trial, environment, by))
}
