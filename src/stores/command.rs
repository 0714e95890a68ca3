//! Stores cleared and counted by commands the environment gives (e.g. the deployment's own
//! `veraison clear-stores`), for setups the tool cannot reach directly. The count command prints
//! one `table count` (or `table: count`, `table|count`) per line.

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::provider::{StoreCounts, StoreDriver};

/// Clear and count commands, run with `sh -c`.
pub struct CommandStores {
    /// Clears the stores.
    pub clear: String,
    /// Prints the counts.
    pub count: String,
}

/// Parses `table count` lines; other lines are ignored.
pub fn parse_counts(text: &str) -> StoreCounts {
    text.lines()
        .filter_map(|l| {
            let mut parts = l
                .split(|c: char| c.is_whitespace() || c == ':' || c == '|' || c == ',')
                .filter(|p| !p.is_empty());
            let (name, n) = (parts.next()?, parts.next()?);
            Some((name.to_string(), n.parse::<u64>().ok()?))
        })
        .collect()
}

async fn sh(cmd: &str) -> Result<String> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .await
        .map_err(|e| Error::Infra(format!("running the store command: {e}")))?;
    if !out.status.success() {
        let err: String = String::from_utf8_lossy(&out.stderr)
            .chars()
            .take(400)
            .collect();
        return Err(Error::Infra(format!(
            "the store command failed ({}): {}",
            out.status,
            err.trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[async_trait]
impl StoreDriver for CommandStores {
    fn describe(&self) -> String {
        "the stores behind the configured commands".into()
    }
    async fn count(&self) -> Result<StoreCounts> {
        let counts = parse_counts(&sh(&self.count).await?);
        if counts.is_empty() {
            return Err(Error::Infra(
                "the count command printed no `table count` lines".into(),
            ));
        }
        Ok(counts)
    }
    async fn clear(&self) -> Result<StoreCounts> {
        let before = self.count().await?;
        sh(&self.clear).await?;
        Ok(before)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_common_shapes() {
        let c = super::parse_counts("endorsements 12\ntrust_anchors: 4\n policies|0\nnoise\n");
        assert_eq!(c.len(), 3);
        assert_eq!(c["trust_anchors"], 4);
    }
}
