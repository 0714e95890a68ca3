//! The verification session cache on memcached (ElastiCache on AWS): flushed before runs when a
//! trial asks, over memcached's text protocol (`flush_all`), then verified empty
//! (`stats` → `curr_items 0`). On AWS the cache port is open only inside the VPC, so it is
//! reached the way RDS is: through an SSH port forward via the jump host when the environment
//! names one.

use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::tunnel::SshTunnel;
use crate::error::{Error, Result};
use crate::provider::SessionCache;
use crate::trial::model::TunnelSpec;

/// Where the servers are: given, or discovered when first needed.
#[async_trait]
pub trait ServerList: Send + Sync {
    /// `host:port` of every node.
    async fn servers(&self) -> Result<Vec<String>>;
}

#[async_trait]
impl ServerList for Vec<String> {
    async fn servers(&self) -> Result<Vec<String>> {
        Ok(self.clone())
    }
}

/// memcached nodes.
pub struct MemcachedSessions {
    /// The nodes.
    pub servers: Box<dyn ServerList>,
    /// The jump host, when the nodes are only reachable through one.
    pub tunnel: Option<TunnelSpec>,
}

/// Sends one command and returns the response lines up to the terminating one (`END`, `OK`,
/// an error), at most 10 s.
pub async fn command(server: &str, cmd: &str) -> Result<Vec<String>> {
    let io = |e: std::io::Error| Error::Infra(format!("memcached {server}: {e}"));
    let run = async {
        let stream = tokio::net::TcpStream::connect(server).await.map_err(io)?;
        let (r, mut w) = stream.into_split();
        w.write_all(cmd.as_bytes()).await.map_err(io)?;
        let mut lines = Vec::new();
        let mut reader = BufReader::new(r);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.map_err(io)? == 0 {
                break;
            }
            let line = line.trim_end().to_string();
            let last = !line.starts_with("STAT ") && !line.starts_with("VALUE ");
            lines.push(line);
            if last {
                break;
            }
        }
        Ok(lines)
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .map_err(|_| Error::Infra(format!("memcached {server}: no answer in 10 s")))?
}

/// `curr_items` from a `stats` answer.
fn curr_items(stats: &[String]) -> Option<u64> {
    stats
        .iter()
        .find_map(|l| l.strip_prefix("STAT curr_items "))
        .and_then(|n| n.trim().parse().ok())
}

impl MemcachedSessions {
    /// Runs `f` against every node (through the tunnel when there is one); returns what each
    /// gave, labelled with the node's own address.
    async fn each<T>(&self, f: impl AsyncFn(&str) -> Result<T>) -> Result<Vec<(String, T)>> {
        let mut out = Vec::new();
        for server in self.servers.servers().await? {
            let value = match &self.tunnel {
                None => f(&server).await?,
                Some(spec) => {
                    let (host, port) = server
                        .rsplit_once(':')
                        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
                        .ok_or_else(|| {
                            Error::Usage(format!("memcached node `{server}` is not host:port"))
                        })?;
                    let spec = spec.clone();
                    let tunnel = tokio::task::spawn_blocking(move || {
                        SshTunnel::open(&spec, &host, port, Duration::from_secs(30))
                    })
                    .await
                    .map_err(|e| Error::Infra(format!("ssh tunnel: {e}")))??;
                    let local = tunnel.local.to_string();
                    let v = f(&local).await;
                    drop(tunnel);
                    v.map_err(|e| Error::Infra(format!("{e} (through the tunnel to {server})")))?
                }
            };
            out.push((server, value));
        }
        Ok(out)
    }
}

#[async_trait]
impl SessionCache for MemcachedSessions {
    async fn flush(&self) -> Result<()> {
        let left = self
            .each(async |addr: &str| {
                let reply = command(addr, "flush_all\r\n").await?;
                if reply.first().map(String::as_str) != Some("OK") {
                    return Err(Error::Infra(format!(
                        "memcached {addr}: flush_all answered {reply:?}"
                    )));
                }
                // flush_all empties at once on memcached ≥ 1.5; allow the crawler a moment.
                for _ in 0..20 {
                    let n = curr_items(&command(addr, "stats\r\n").await?);
                    if n == Some(0) {
                        return Ok(0);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(curr_items(&command(addr, "stats\r\n").await?).unwrap_or(u64::MAX))
            })
            .await?;
        let not_empty: Vec<String> = left
            .iter()
            .filter(|(_, n)| *n != 0)
            .map(|(s, n)| format!("{s} still holds {n} items"))
            .collect();
        if !not_empty.is_empty() {
            return Err(Error::Infra(format!(
                "the session cache is not empty after flush_all: {}",
                not_empty.join("; ")
            )));
        }
        Ok(())
    }

    async fn preflight(&self) -> Result<Vec<String>> {
        let found = self
            .each(async |addr: &str| {
                curr_items(&command(addr, "stats\r\n").await?).ok_or_else(|| {
                    Error::Infra(format!("memcached {addr}: `stats` gave no curr_items"))
                })
            })
            .await?;
        Ok(found
            .into_iter()
            .map(|(s, n)| format!("memcached {s}: {n} items"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn curr_items_is_read_from_stats() {
        let stats: Vec<String> = ["STAT pid 1", "STAT curr_items 42", "END"]
            .map(String::from)
            .to_vec();
        assert_eq!(super::curr_items(&stats), Some(42));
        assert_eq!(super::curr_items(&["END".to_string()]), None);
    }
}
