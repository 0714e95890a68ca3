//! Veraison's SQLite stores (docker and native deployments): `en-store.sql`, `ta-store.sql`,
//! `po-store.sql`, each with a `kvstore` table (services `deployments/docker`).

use std::path::PathBuf;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::provider::{StoreCounts, StoreDriver};

/// The store files and the names we report them under.
pub const FILES: [(&str, &str); 3] = [
    ("en-store.sql", "endorsements"),
    ("ta-store.sql", "trust_anchors"),
    ("po-store.sql", "policies"),
];

/// SQLite store files in a directory.
pub struct SqliteStores {
    /// The directory (`…/stores/vts`).
    pub dir: PathBuf,
}

impl SqliteStores {
    async fn each(&self, delete: bool) -> Result<StoreCounts> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = StoreCounts::new();
            for (file, name) in FILES {
                let path = dir.join(file);
                if !path.is_file() {
                    continue;
                }
                let err = |e: rusqlite::Error| Error::Infra(format!("{}: {e}", path.display()));
                let conn = rusqlite::Connection::open(&path).map_err(err)?;
                conn.busy_timeout(std::time::Duration::from_secs(10))
                    .map_err(err)?;
                let n: i64 = conn
                    .query_row("SELECT count(*) FROM kvstore", [], |r| r.get(0))
                    .map_err(err)?;
                if delete {
                    conn.execute("DELETE FROM kvstore", []).map_err(err)?;
                }
                out.insert(name.to_string(), n as u64);
            }
            if out.is_empty() {
                return Err(Error::Infra(format!(
                    "{} holds none of en-store.sql, ta-store.sql, po-store.sql",
                    dir.display()
                )));
            }
            Ok(out)
        })
        .await
        .map_err(|e| Error::Infra(format!("sqlite stores: {e}")))?
    }
}

#[async_trait]
impl StoreDriver for SqliteStores {
    fn describe(&self) -> String {
        format!("SQLite stores in {}", self.dir.display())
    }
    async fn count(&self) -> Result<StoreCounts> {
        self.each(false).await
    }
    async fn clear(&self) -> Result<StoreCounts> {
        self.each(true).await
    }
}
