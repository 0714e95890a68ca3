//! Veraison's PostgreSQL stores (RDS on AWS): count rows per table, clear with `DELETE FROM`
//! (as `veraison clear-stores` does), verify empty after clearing.
//!
//! TLS follows libpq's `sslmode`: `require` encrypts without checking the certificate (RDS's
//! CA is not a public root), `prefer` uses TLS when offered, `disable` never. Where the
//! database is (and its password) comes from a [`DbLocator`]: fixed from the environment file,
//! or looked up in AWS (RDS endpoint, `D-support` stack parameter). The password is a
//! [`Secret`] and never appears in messages.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::SslMode;

use super::tunnel::SshTunnel;
use crate::error::{Error, Result};
use crate::provider::{StoreCounts, StoreDriver};
use crate::secret::{redact, Secret};
use crate::trial::model::{TlsMode, TunnelSpec};

/// Where the database is, resolved when first needed.
#[derive(Debug, Clone)]
pub struct DbLocation {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The password.
    pub password: Secret,
}

/// Finds the database (fixed, or from AWS).
#[async_trait]
pub trait DbLocator: Send + Sync {
    /// The host, port and password.
    async fn locate(&self) -> Result<DbLocation>;
}

/// A location given in full by the environment.
pub struct FixedLocation(pub DbLocation);

#[async_trait]
impl DbLocator for FixedLocation {
    async fn locate(&self) -> Result<DbLocation> {
        Ok(self.0.clone())
    }
}

/// A PostgreSQL store driver.
pub struct PostgresStores {
    /// Database name.
    pub database: String,
    /// User.
    pub user: String,
    /// TLS mode.
    pub tls: TlsMode,
    /// Jump host, when the database is only reachable through one.
    pub tunnel: Option<TunnelSpec>,
    /// The tables to clear and count.
    pub tables: &'static [&'static str],
    /// Where the database is.
    pub locator: Arc<dyn DbLocator>,
}

/// Accepts any server certificate: libpq's `sslmode=require` (encryption, no authentication).
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_connector() -> tokio_postgres_rustls::MakeRustlsConnect {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
        .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

impl PostgresStores {
    fn describe_at(&self, host: &str, port: u16) -> String {
        format!("PostgreSQL {}@{host}:{port}/{}", self.user, self.database)
    }

    /// Connects (through the tunnel if any) and runs `f` with the client.
    async fn with_client<T>(
        &self,
        f: impl AsyncFnOnce(&tokio_postgres::Client) -> std::result::Result<T, tokio_postgres::Error>,
    ) -> Result<T> {
        let loc = self.locator.locate().await?;
        let tunnel = match &self.tunnel {
            Some(spec) => {
                let (spec, host, port) = (spec.clone(), loc.host.clone(), loc.port);
                Some(
                    tokio::task::spawn_blocking(move || {
                        SshTunnel::open(&spec, &host, port, Duration::from_secs(30))
                    })
                    .await
                    .map_err(|e| Error::Infra(format!("ssh tunnel: {e}")))??,
                )
            }
            None => None,
        };
        let (host, port) = match &tunnel {
            Some(t) => (t.local.ip().to_string(), t.local.port()),
            None => (loc.host.clone(), loc.port),
        };
        let what = self.describe_at(&loc.host, loc.port);
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&host)
            .port(port)
            .user(&self.user)
            .dbname(&self.database)
            .password(loc.password.expose())
            .connect_timeout(Duration::from_secs(15))
            .application_name("trialrunner")
            .ssl_mode(match self.tls {
                TlsMode::Require => SslMode::Require,
                TlsMode::Prefer => SslMode::Prefer,
                TlsMode::Disable => SslMode::Disable,
            });
        let clean = |e: tokio_postgres::Error| {
            let text = match e.as_db_error() {
                Some(d) => format!(
                    "{}: {} (SQLSTATE {})",
                    d.severity(),
                    d.message(),
                    d.code().code()
                ),
                None => e.to_string(),
            };
            Error::Infra(format!("{what}: {}", redact(&text, &[&loc.password])))
        };
        let (client, connection) = cfg.connect(tls_connector()).await.map_err(clean)?;
        let conn = tokio::spawn(async move {
            let _ = connection.await;
        });
        let result = f(&client).await.map_err(clean);
        drop(client);
        let _ = conn.await;
        drop(tunnel);
        result
    }

    async fn existing_tables(
        client: &tokio_postgres::Client,
        wanted: &[&str],
    ) -> std::result::Result<Vec<String>, tokio_postgres::Error> {
        let names: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
        let rows = client
            .query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ANY($1)", &[&names])
            .await?;
        let have: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        Ok(wanted
            .iter()
            .filter(|t| have.iter().any(|h| h == *t))
            .map(|t| t.to_string())
            .collect())
    }

    async fn counts(
        client: &tokio_postgres::Client,
        tables: &[String],
    ) -> std::result::Result<StoreCounts, tokio_postgres::Error> {
        let mut out = StoreCounts::new();
        for t in tables {
            let row = client
                .query_one(&format!("SELECT count(*) FROM \"{t}\""), &[])
                .await?;
            out.insert(t.clone(), row.get::<_, i64>(0) as u64);
        }
        Ok(out)
    }

    fn none_found(&self) -> Error {
        Error::Infra(format!("database {} has none of the tables {}: is this Veraison's store, and the right release?", self.database, self.tables.join(", ")))
    }
}

#[async_trait]
impl StoreDriver for PostgresStores {
    fn describe(&self) -> String {
        format!("PostgreSQL database {} as {}", self.database, self.user)
    }

    async fn count(&self) -> Result<StoreCounts> {
        let wanted = self.tables;
        let counts = self
            .with_client(async |c| {
                let tables = Self::existing_tables(c, wanted).await?;
                Self::counts(c, &tables).await
            })
            .await?;
        if counts.is_empty() {
            return Err(self.none_found());
        }
        Ok(counts)
    }

    async fn clear(&self) -> Result<StoreCounts> {
        let wanted = self.tables;
        let before = self
            .with_client(async |c| {
                let tables = Self::existing_tables(c, wanted).await?;
                let before = Self::counts(c, &tables).await?;
                if !tables.is_empty() {
                    // One transaction; TRUNCATE … CASCADE copes with the corim-store's foreign keys
                    // (the K-V tables have none, and DELETE is what Veraison's own script runs).
                    let list = tables
                        .iter()
                        .map(|t| format!("\"{t}\""))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let sql = if tables
                        .iter()
                        .all(|t| super::KV_TABLES.contains(&t.as_str()))
                    {
                        format!(
                            "BEGIN; {} COMMIT;",
                            tables
                                .iter()
                                .map(|t| format!("DELETE FROM \"{t}\";"))
                                .collect::<String>()
                        )
                    } else {
                        format!("TRUNCATE {list} CASCADE")
                    };
                    c.batch_execute(&sql).await?;
                }
                Ok(before)
            })
            .await?;
        if before.is_empty() {
            return Err(self.none_found());
        }
        Ok(before)
    }
}
