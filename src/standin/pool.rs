//! One instance's database connections, pooled as Go's `database/sql` pools them for VTS:
//! a request takes an idle connection, or opens a new one while fewer than `max_open` are open,
//! or waits for one to be returned; a returned connection is kept while fewer than `max_idle`
//! are idle and closed otherwise. Opening is where the database says no: past PostgreSQL's
//! `max_connections` the server refuses with "sorry, too many clients already" and that request
//! fails, as the 2025 campaign saw under load. Connections are real PostgreSQL sessions, or
//! (without a database) slots counted against a shared [`DbAccount`] that refuses alike.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_postgres::NoTls;

use super::store::{db_error, StoreError};

/// The message PostgreSQL gives past `max_connections` (seed Trial 1).
pub const TOO_MANY_CLIENTS: &str = "FATAL: sorry, too many clients already (SQLSTATE 53300)";

/// A database without a server: its `max_connections` and the connections open against it.
#[derive(Debug)]
pub struct DbAccount {
    max: AtomicUsize,
    open: AtomicUsize,
}

impl DbAccount {
    /// A database that accepts `max_connections` at once.
    pub fn new(max_connections: usize) -> Arc<DbAccount> {
        Arc::new(DbAccount {
            max: AtomicUsize::new(max_connections),
            open: AtomicUsize::new(0),
        })
    }

    /// Its `max_connections` now.
    pub fn max_connections(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// A new `max_connections` (as a reboot with another parameter value makes it): the
    /// connections open stay, new ones past it are refused.
    pub fn set_max_connections(&self, max_connections: usize) {
        self.max.store(max_connections, Ordering::Relaxed);
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// Where a pool's connections come from.
#[derive(Debug, Clone)]
pub enum Opener {
    /// Real sessions on a PostgreSQL server (`conninfo`).
    Postgres(String),
    /// Slots of a counted database.
    Counted(Arc<DbAccount>),
}

/// One open connection.
pub enum Connection {
    /// A PostgreSQL session; the store's queries go through it.
    Postgres(tokio_postgres::Client),
    /// A slot of a counted database, given back when dropped.
    Counted(Arc<DbAccount>),
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Connection::Counted(account) = self {
            account.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Connection {
    /// The session to query through, when it is a real one.
    pub fn client(&self) -> Option<&tokio_postgres::Client> {
        match self {
            Connection::Postgres(c) => Some(c),
            Connection::Counted(_) => None,
        }
    }
}

struct PoolState {
    open: usize,
    idle: Vec<Connection>,
}

/// One instance's pool (see the module's documentation).
pub struct SessionPool {
    opener: Opener,
    max_open: usize,
    max_idle: usize,
    state: Mutex<PoolState>,
    returned: Notify,
    refused: AtomicUsize,
    /// Connections opened so far.
    opened: AtomicUsize,
    /// What opening one costs beyond the real connect (modelled: an RDS handshake).
    open_cost: std::time::Duration,
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool")
            .field("max_open", &self.max_open)
            .field("max_idle", &self.max_idle)
            .field("open", &self.open())
            .finish()
    }
}

/// A connection taken from a pool, returned to it when dropped.
pub struct Lease<'a> {
    pool: &'a SessionPool,
    conn: Option<Connection>,
}

impl Lease<'_> {
    /// The session to query through, when it is a real one.
    pub fn client(&self) -> Option<&tokio_postgres::Client> {
        self.conn.as_ref().and_then(Connection::client)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut s = self.pool.state.lock().expect("pool lock");
            if s.idle.len() < self.pool.max_idle && !conn.is_closed() {
                s.idle.push(conn);
            } else {
                s.open -= 1;
                drop(conn);
            }
        }
        self.pool.returned.notify_one();
    }
}

impl Connection {
    fn is_closed(&self) -> bool {
        matches!(self, Connection::Postgres(c) if c.is_closed())
    }
}

impl SessionPool {
    /// A pool opening through `opener`, at most `max_open` at once (0: no limit, Go's
    /// default), keeping at most `max_idle` idle (Go's default is 2).
    pub fn new(opener: Opener, max_open: usize, max_idle: usize) -> SessionPool {
        SessionPool {
            opener,
            max_open: if max_open == 0 { usize::MAX } else { max_open },
            max_idle,
            state: Mutex::new(PoolState {
                open: 0,
                idle: Vec::new(),
            }),
            returned: Notify::new(),
            refused: AtomicUsize::new(0),
            opened: AtomicUsize::new(0),
            open_cost: std::time::Duration::ZERO,
        }
    }

    /// The same pool, each new connection costing `cost` more to open (the modelled setup of a
    /// connection to RDS: TCP, TLS, authentication), paid by the request that needs it.
    pub fn with_open_cost(self, cost: std::time::Duration) -> SessionPool {
        SessionPool {
            open_cost: cost,
            ..self
        }
    }

    /// Connections opened so far (a pool that keeps its connections opens few).
    pub fn opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }

    /// Connections open now (idle or in use).
    pub fn open(&self) -> usize {
        self.state.lock().expect("pool lock").open
    }

    /// Opens the database refused so far.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }

    /// A connection: an idle one, a new one, or the next one returned. The database refusing
    /// a new one is this request's error.
    pub async fn acquire(&self) -> Result<Lease<'_>, StoreError> {
        loop {
            let returned = self.returned.notified();
            {
                let mut s = self.state.lock().expect("pool lock");
                if let Some(conn) = s.idle.pop() {
                    return Ok(Lease {
                        pool: self,
                        conn: Some(conn),
                    });
                }
                if s.open < self.max_open {
                    s.open += 1;
                    break;
                }
            }
            returned.await;
        }
        match self.connect().await {
            Ok(conn) => {
                self.opened.fetch_add(1, Ordering::Relaxed);
                if !self.open_cost.is_zero() {
                    tokio::time::sleep(self.open_cost).await;
                }
                Ok(Lease {
                    pool: self,
                    conn: Some(conn),
                })
            }
            Err(e) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                self.state.lock().expect("pool lock").open -= 1;
                self.returned.notify_one();
                Err(e)
            }
        }
    }

    async fn connect(&self) -> Result<Connection, StoreError> {
        match &self.opener {
            Opener::Postgres(conninfo) => {
                let (client, conn) = tokio_postgres::connect(conninfo, NoTls)
                    .await
                    .map_err(db_error)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Connection::Postgres(client))
            }
            Opener::Counted(account) => {
                if account.open.fetch_add(1, Ordering::Relaxed) >= account.max_connections() {
                    account.open.fetch_sub(1, Ordering::Relaxed);
                    return Err(StoreError::Db(TOO_MANY_CLIENTS.to_string()));
                }
                Ok(Connection::Counted(account.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_on_demand_keeps_max_idle_and_the_database_refuses_past_its_max() {
        let db = DbAccount::new(3);
        let a = SessionPool::new(Opener::Counted(db.clone()), 0, 1);
        let b = SessionPool::new(Opener::Counted(db.clone()), 0, 1);
        // Three in flight on `a`: three connections; a fourth anywhere is refused.
        let leases = [
            a.acquire().await.unwrap(),
            a.acquire().await.unwrap(),
            a.acquire().await.unwrap(),
        ];
        assert_eq!((a.open(), db.open()), (3, 3));
        let Err(err) = b.acquire().await else {
            panic!("a fourth connection was opened")
        };
        assert!(err.to_string().contains("too many clients"), "{err}");
        assert_eq!((b.open(), b.refused()), (0, 1));
        // Returned: one kept idle, two closed; `b` can open again.
        drop(leases);
        assert_eq!((a.open(), db.open()), (1, 1));
        let _l = b.acquire().await.unwrap();
        assert_eq!(db.open(), 2);
    }

    #[tokio::test]
    async fn at_max_open_a_request_waits_for_a_returned_connection() {
        let pool = Arc::new(SessionPool::new(Opener::Counted(DbAccount::new(10)), 1, 1));
        let first = pool.acquire().await.unwrap();
        let p = pool.clone();
        let waiter = tokio::spawn(async move { p.acquire().await.map(drop).is_ok() });
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "waits while the only connection is out"
        );
        drop(first);
        assert!(waiter.await.unwrap());
        assert_eq!(pool.open(), 1);
    }
}
