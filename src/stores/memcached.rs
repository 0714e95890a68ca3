//! The verification session cache on memcached (ElastiCache on AWS): flushed before runs when a
//! trial asks, over memcached's text protocol (`flush_all`).

use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::error::{Error, Result};
use crate::provider::SessionCache;

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
}

/// Sends one command and returns the first response line.
pub async fn command(server: &str, cmd: &str) -> Result<String> {
    let io = |e: std::io::Error| Error::Infra(format!("memcached {server}: {e}"));
    let run = async {
        let stream = tokio::net::TcpStream::connect(server).await.map_err(io)?;
        let (r, mut w) = stream.into_split();
        w.write_all(cmd.as_bytes()).await.map_err(io)?;
        let mut line = String::new();
        BufReader::new(r).read_line(&mut line).await.map_err(io)?;
        Ok(line.trim_end().to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .map_err(|_| Error::Infra(format!("memcached {server}: no answer in 10 s")))?
}

#[async_trait]
impl SessionCache for MemcachedSessions {
    async fn flush(&self) -> Result<()> {
        for server in self.servers.servers().await? {
            let reply = command(&server, "flush_all\r\n").await?;
            if reply != "OK" {
                return Err(Error::Infra(format!(
                    "memcached {server}: flush_all answered {reply:?}"
                )));
            }
        }
        Ok(())
    }
}
