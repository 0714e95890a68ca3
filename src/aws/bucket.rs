//! A bucket and prefix on S3, every call through the retry policy: objects put (a large one
//! with an attempt as long as its upload needs), read, listed and copied down. The fleet's
//! binary, specs and workers' files, and a campaign's results and history, go through it.

use std::path::Path;
use std::time::Duration;

use crate::aws::AwsContext;
use crate::error::{Error, Result};
use crate::trial::s3::S3Location;

/// The slowest upload a large object is waited for at: 1 MB/s.
pub const SLOWEST_UPLOAD: u64 = 1_000_000;

/// What the coordinator does in the bucket, all under the fleet's prefix (IAM names: listing
/// is `s3:ListBucket`, HeadObject is `s3:GetObject`).
pub const OBJECT_ACTIONS: &[&str] = &["s3:PutObject", "s3:GetObject"];

/// The fleet's bucket and prefix.
pub struct Bucket {
    ctx: AwsContext,
    client: aws_sdk_s3::Client,
    /// Where: `s3://bucket/prefix`.
    pub location: S3Location,
}

impl Bucket {
    /// A client for the location (path-style against an emulator).
    pub fn new(
        ctx: &AwsContext,
        config: &aws_config::SdkConfig,
        location: S3Location,
        path_style: bool,
    ) -> Bucket {
        let s3_config = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(path_style)
            .build();
        Bucket {
            ctx: ctx.clone(),
            client: aws_sdk_s3::Client::from_conf(s3_config),
            location,
        }
    }

    /// Puts `bytes` at `key`.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let bytes = bytes::Bytes::from(bytes);
        self.ctx
            .call("s3:PutObject", || {
                self.client
                    .put_object()
                    .bucket(&self.location.bucket)
                    .key(key)
                    .body(bytes.clone().into())
                    .send()
            })
            .await?;
        Ok(())
    }

    /// Puts a large object: each attempt may take as long as sending it at
    /// [`SLOWEST_UPLOAD`] bytes per second (a minute at least), not the few seconds the
    /// clients' other calls get (an 80 MB binary from a home uplink takes half a minute); it is
    /// tried again until two attempts' time has passed (the fleet's binary, a long run's files).
    pub async fn put_large(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let attempt = Duration::from_secs((bytes.len() as u64 / SLOWEST_UPLOAD).max(60));
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(60))
            .operation_attempt_timeout(attempt)
            .operation_timeout(attempt * 2)
            .build();
        let bytes = bytes::Bytes::from(bytes);
        let deadline = tokio::time::Instant::now() + attempt * 2;
        self.ctx
            .call_until("s3:PutObject (a large object)", deadline, || {
                self.client
                    .put_object()
                    .bucket(&self.location.bucket)
                    .key(key)
                    .body(bytes.clone().into())
                    .customize()
                    .config_override(
                        aws_sdk_s3::config::Builder::default().timeout_config(timeouts.clone()),
                    )
                    .send()
            })
            .await?;
        Ok(())
    }

    /// True when an object is at `key` (HeadObject; IAM: `s3:GetObject`).
    pub async fn exists(&self, key: &str) -> bool {
        self.ctx
            .call("s3:HeadObject", || {
                self.client
                    .head_object()
                    .bucket(&self.location.bucket)
                    .key(key)
                    .send()
            })
            .await
            .is_ok()
    }

    /// The object at `key`.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let body = self
            .ctx
            .call("s3:GetObject", || {
                self.client
                    .get_object()
                    .bucket(&self.location.bucket)
                    .key(key)
                    .send()
            })
            .await?
            .body
            .collect()
            .await
            .map_err(|e| Error::Infra(format!("s3:GetObject {key}: {e}")))?;
        Ok(body.into_bytes().to_vec())
    }

    /// The keys of every object under `prefix/` (IAM: `s3:ListBucket`), in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .ctx
                .call("s3:ListObjectsV2", || {
                    self.client
                        .list_objects_v2()
                        .bucket(&self.location.bucket)
                        .prefix(format!("{prefix}/"))
                        .set_continuation_token(token.clone())
                        .send()
                })
                .await?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            token = out.next_continuation_token().map(str::to_string);
            if token.is_none() {
                keys.sort();
                return Ok(keys);
            }
        }
    }

    /// Copies every object under `prefix/` into `dir` (their names below the prefix), except
    /// those `skip` says are there already; how many it copied.
    pub async fn download_except(
        &self,
        prefix: &str,
        dir: &Path,
        skip: impl Fn(&Path) -> bool,
    ) -> Result<usize> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let mut n = 0;
        for key in self.list(prefix).await? {
            let name = &key[prefix.len() + 1..];
            if name.is_empty() || name.split('/').any(|p| p == ".." || p.is_empty()) {
                continue;
            }
            let path = dir.join(name);
            if skip(&path) {
                continue;
            }
            let body = self.get(&key).await?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
            }
            std::fs::write(&path, &body)
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            n += 1;
        }
        Ok(n)
    }

    /// Copies every object under `prefix/` into `dir` (their names below the prefix); how many.
    pub async fn download(&self, prefix: &str, dir: &Path) -> Result<usize> {
        self.download_except(prefix, dir, |_| false).await
    }
}
