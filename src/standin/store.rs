//! The stand-in's endorsement store, shaped like Veraison's K-V era (`kvstore/sql.go`): tables
//! `endorsements`, `trust_anchors`, `policies` of `(kv_key text, kv_val text)`, no unique
//! constraint, an index on `kv_key`; `add` is a plain INSERT (duplicates pile up) and `get`
//! reads every row of a key, so store weight costs what it costs Veraison. The store counts the
//! rows it reads: tests assert on that, not on timings.
//! The corim-store era adds a unique `manifests(manifest_id)` table: duplicates are refused.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio_postgres::NoTls;

/// The K-V tables, in Veraison's names.
pub const KV_TABLES: [&str; 3] = ["endorsements", "trust_anchors", "policies"];

/// The DDL of Veraison's K-V schema on PostgreSQL (deployments/aws/misc/sentinel-commands).
pub const KV_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS endorsements (kv_key text NOT NULL, kv_val text NOT NULL);
CREATE INDEX IF NOT EXISTS endorsements_kv_key_idx ON endorsements(kv_key);
CREATE TABLE IF NOT EXISTS trust_anchors (kv_key text NOT NULL, kv_val text NOT NULL);
CREATE INDEX IF NOT EXISTS trust_anchors_kv_key_idx ON trust_anchors(kv_key);
CREATE TABLE IF NOT EXISTS policies (kv_key text NOT NULL, kv_val text NOT NULL);
CREATE INDEX IF NOT EXISTS policies_kv_key_idx ON policies(kv_key);
CREATE TABLE IF NOT EXISTS manifests (manifest_id text NOT NULL UNIQUE);
";

/// Store errors (surface as HTTP 500 or `status: failed`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A database error, with the server's message (e.g. `too many clients`).
    #[error("{0}")]
    Db(String),
    /// The corim-store era refuses a CoRIM id it already has.
    #[error("token already in store: manifest {0}")]
    Duplicate(String),
}

/// Where rows live, and how many rows reads have gone through (the store's own account of
/// what store weight costs: a key with 60 000 duplicate rows reads 60 000 rows).
pub struct KvStore {
    backend: Backend,
    rows_read: AtomicU64,
    /// Rows read by the UTC second in which the read ended.
    rows_read_by_second: Mutex<BTreeMap<i64, u64>>,
}

enum Backend {
    /// In process; duplicates kept, like the SQL backend.
    Memory(Mutex<MemoryTables>),
    /// A real PostgreSQL database.
    Postgres(PgPool),
}

/// In-memory tables: key → every value added, in order.
#[derive(Default)]
pub struct MemoryTables {
    tables: BTreeMap<&'static str, HashMap<String, Vec<String>>>,
    manifests: HashSet<String>,
}

/// A few PostgreSQL connections used round-robin (tokio-postgres pipelines on each).
pub struct PgPool {
    clients: Vec<tokio_postgres::Client>,
    next: AtomicUsize,
}

impl PgPool {
    /// `via` when the caller holds a session of its own, else the next of the store's.
    fn client<'a>(&'a self, via: Via<'a>) -> &'a tokio_postgres::Client {
        via.unwrap_or_else(|| {
            &self.clients[self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len()]
        })
    }
}

/// The session a store operation goes through: an instance's own (from its
/// [`super::pool::SessionPool`]), or none for the store's shared connections.
pub type Via<'a> = Option<&'a tokio_postgres::Client>;

fn table(name: &str) -> &'static str {
    KV_TABLES
        .iter()
        .find(|t| **t == name)
        .copied()
        .unwrap_or("policies")
}

impl KvStore {
    fn new(backend: Backend) -> KvStore {
        KvStore {
            backend,
            rows_read: AtomicU64::new(0),
            rows_read_by_second: Mutex::new(BTreeMap::new()),
        }
    }

    /// An empty in-memory store.
    pub fn memory() -> KvStore {
        KvStore::new(Backend::Memory(Mutex::new(MemoryTables::default())))
    }

    /// Rows read by `get` since the start (every duplicate counts).
    pub fn rows_read(&self) -> u64 {
        self.rows_read.load(Ordering::Relaxed)
    }

    /// Rows read by `get`, by the UTC second in which each read ended.
    pub fn rows_read_by_second(&self) -> BTreeMap<i64, u64> {
        self.rows_read_by_second.lock().expect("store lock").clone()
    }

    fn count_read(&self, rows: u64) {
        self.rows_read.fetch_add(rows, Ordering::Relaxed);
        let second = crate::results::unix_now().floor() as i64;
        *self
            .rows_read_by_second
            .lock()
            .expect("store lock")
            .entry(second)
            .or_default() += rows;
    }

    /// Connects to PostgreSQL (`connections` sessions) and creates the schema if missing.
    pub async fn postgres(conninfo: &str, connections: usize) -> Result<KvStore, StoreError> {
        let mut clients = Vec::new();
        for _ in 0..connections.max(1) {
            let (client, conn) = tokio_postgres::connect(conninfo, NoTls)
                .await
                .map_err(|e| {
                    StoreError::Db(format!("connecting to the stand-in's database: {e}"))
                })?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            clients.push(client);
        }
        clients[0]
            .batch_execute(KV_SCHEMA)
            .await
            .map_err(db_error)?;
        Ok(KvStore::new(Backend::Postgres(PgPool {
            clients,
            next: AtomicUsize::new(0),
        })))
    }

    /// Adds a row (a plain insert: duplicates accumulate).
    pub async fn add(
        &self,
        via: Via<'_>,
        table_name: &str,
        key: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(m) => {
                let mut m = m.lock().expect("store lock");
                m.tables
                    .entry(table(table_name))
                    .or_default()
                    .entry(key.to_string())
                    .or_default()
                    .push(value.to_string());
                Ok(())
            }
            Backend::Postgres(p) => {
                let sql = format!(
                    "INSERT INTO {} (kv_key, kv_val) VALUES ($1, $2)",
                    table(table_name)
                );
                p.client(via)
                    .execute(&sql, &[&key, &value])
                    .await
                    .map(drop)
                    .map_err(db_error)
            }
        }
    }

    /// Every distinct value of a key; every duplicate row is read to find them.
    pub async fn get(
        &self,
        via: Via<'_>,
        table_name: &str,
        key: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(self.get_reading(via, table_name, key).await?.0)
    }

    /// Every distinct value of a key, and how many rows were read to find them (every
    /// duplicate counts).
    pub async fn get_reading(
        &self,
        via: Via<'_>,
        table_name: &str,
        key: &str,
    ) -> Result<(Vec<String>, u64), StoreError> {
        match &self.backend {
            Backend::Memory(m) => {
                let m = m.lock().expect("store lock");
                let rows = m.tables.get(table(table_name)).and_then(|t| t.get(key));
                let read = rows.map(|r| r.len() as u64).unwrap_or(0);
                self.count_read(read);
                let mut seen = HashSet::new();
                let values = rows
                    .into_iter()
                    .flatten()
                    .filter(|v| seen.insert(v.as_str()))
                    .cloned()
                    .collect();
                Ok((values, read))
            }
            Backend::Postgres(p) => {
                // Veraison's `SELECT DISTINCT kv_val … WHERE kv_key = $1` reads every duplicate;
                // grouping reads the same rows and tells how many there were.
                let sql = format!(
                    "SELECT kv_val, count(*) FROM {} WHERE kv_key = $1 GROUP BY kv_val",
                    table(table_name)
                );
                let rows = p.client(via).query(&sql, &[&key]).await.map_err(db_error)?;
                let read: i64 = rows.iter().map(|r| r.get::<_, i64>(1)).sum();
                self.count_read(read as u64);
                Ok((
                    rows.iter().map(|r| r.get::<_, String>(0)).collect(),
                    read as u64,
                ))
            }
        }
    }

    /// Records a CoRIM id; refused when already present (corim-store era).
    pub async fn add_manifest(&self, via: Via<'_>, id: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(m) => {
                if m.lock()
                    .expect("store lock")
                    .manifests
                    .insert(id.to_string())
                {
                    Ok(())
                } else {
                    Err(StoreError::Duplicate(id.to_string()))
                }
            }
            Backend::Postgres(p) => match p
                .client(via)
                .execute("INSERT INTO manifests (manifest_id) VALUES ($1)", &[&id])
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    Err(StoreError::Duplicate(id.to_string()))
                }
                Err(e) => Err(db_error(e)),
            },
        }
    }

    /// Rows per table (including `manifests`).
    pub async fn counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut out = BTreeMap::new();
        match &self.backend {
            Backend::Memory(m) => {
                let m = m.lock().expect("store lock");
                for t in KV_TABLES {
                    let n = m
                        .tables
                        .get(t)
                        .map(|t| t.values().map(Vec::len).sum::<usize>())
                        .unwrap_or(0);
                    out.insert(t.to_string(), n as u64);
                }
                out.insert("manifests".into(), m.manifests.len() as u64);
            }
            Backend::Postgres(p) => {
                for t in KV_TABLES.iter().chain(&["manifests"]) {
                    let row = p
                        .client(None)
                        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
                        .await
                        .map_err(db_error)?;
                    out.insert(t.to_string(), row.get::<_, i64>(0) as u64);
                }
            }
        }
        Ok(out)
    }

    /// Sessions the PostgreSQL server lists for this database (`pg_stat_activity`), as RDS's
    /// `DatabaseConnections` counts them; none for the in-memory store.
    pub async fn sessions(&self) -> Result<Option<u64>, StoreError> {
        match &self.backend {
            Backend::Memory(_) => Ok(None),
            Backend::Postgres(p) => {
                let row = p
                    .client(None)
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()",
                        &[],
                    )
                    .await
                    .map_err(db_error)?;
                Ok(Some(row.get::<_, i64>(0) as u64))
            }
        }
    }

    /// Deletes every row; returns the counts before.
    pub async fn clear(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let before = self.counts().await?;
        match &self.backend {
            Backend::Memory(m) => *m.lock().expect("store lock") = MemoryTables::default(),
            Backend::Postgres(p) => {
                p.client(None)
                    .batch_execute("DELETE FROM endorsements; DELETE FROM trust_anchors; DELETE FROM policies; DELETE FROM manifests;")
                    .await
                    .map_err(db_error)?;
            }
        }
        Ok(before)
    }
}

/// A PostgreSQL error as the server put it (severity, message, SQLSTATE).
pub(crate) fn db_error(e: tokio_postgres::Error) -> StoreError {
    StoreError::Db(match e.as_db_error() {
        Some(d) => format!(
            "{}: {} (SQLSTATE {})",
            d.severity(),
            d.message(),
            d.code().code()
        ),
        None => e.to_string(),
    })
}
