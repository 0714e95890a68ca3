//! `trialrunner standin`: the Veraison stand-in service, until Ctrl-C or SIGTERM.

use super::runtime;
use crate::error::{exit, Error, Result};
use crate::standin::faults::Faults;
use crate::standin::store::KvStore;
use crate::standin::{Credentials, Standin, StandinConfig};
use crate::veraison::release::ReleaseProfile;

/// Options of the stand-in service.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: std::net::SocketAddr,
    /// The Veraison release whose contract it speaks.
    #[arg(long, default_value = "v0.0.2602")]
    pub release: String,
    /// Require a bearer token on provisioning (realm defaults: veraison-client / veraison-provisioner).
    #[arg(long)]
    pub auth: bool,
    /// With --auth: the accepted user instead of the realm's default.
    #[arg(long, requires = "auth")]
    pub auth_username: Option<String>,
    /// With --auth: a variable holding the accepted password (default: the realm's).
    #[arg(long, requires = "auth")]
    pub auth_password_env: Option<String>,
    /// With --auth: a variable holding the accepted client secret (default: the realm's).
    #[arg(long, requires = "auth")]
    pub auth_client_secret_env: Option<String>,
    /// Keep the stores in PostgreSQL (a libpq conninfo or URL) instead of memory.
    #[arg(long, env = "STANDIN_POSTGRES")]
    pub postgres: Option<String>,
    /// Added latency: 10ms, uniform:10ms:50ms or exp:20ms.
    #[arg(long)]
    pub latency: Option<crate::standin::faults::Latency>,
    /// Probability (0..1) of answering 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Answer 500 "connection refused" to VTS for this long after start.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub slow_start: Option<std::time::Duration>,
    /// At most this many requests use the database at once; others get "too many clients".
    #[arg(long)]
    pub db_connections: Option<usize>,
    /// DELETE of a missing session answers 500, as with Veraison's memcached backend.
    #[arg(long)]
    pub memcached_sessions: bool,
}

fn credentials(args: &Args) -> Result<Option<Credentials>> {
    if !args.auth {
        return Ok(None);
    }
    let mut c = Credentials::default();
    if let Some(u) = &args.auth_username {
        c.username = u.clone();
    }
    let secret = |var: &str| {
        crate::secret::Secret::from_env(var)
            .map(|s| s.expose().to_string())
            .map_err(Error::Usage)
    };
    if let Some(var) = &args.auth_password_env {
        c.password = secret(var)?;
    }
    if let Some(var) = &args.auth_client_secret_env {
        c.client_secret = secret(var)?;
    }
    Ok(Some(c))
}

/// Serves until stopped.
pub fn run(args: Args) -> Result<i32> {
    if !(0.0..=1.0).contains(&args.error_rate) {
        return Err(Error::Usage(format!(
            "--error-rate must be between 0 and 1, got {}",
            args.error_rate
        )));
    }
    let config = StandinConfig {
        release: ReleaseProfile::parse(&args.release).map_err(Error::Usage)?,
        auth: credentials(&args)?,
        faults: Faults {
            latency: args.latency,
            error_rate: args.error_rate,
            slow_start: args.slow_start.unwrap_or_default(),
            db_connections: args.db_connections,
            pause: None,
            capacity: None,
            db_pool: None,
        },
        memcached_sessions: args.memcached_sessions,
        ..StandinConfig::default()
    };
    runtime().block_on(async {
        let store = match &args.postgres {
            Some(conninfo) => KvStore::postgres(conninfo, 8)
                .await
                .map_err(|e| Error::Infra(e.to_string()))?,
            None => KvStore::memory(),
        };
        let s = Standin::start(args.listen, config, store)
            .await
            .map_err(|e| Error::io(format!("listening on {}", args.listen), e))?;
        // Stop requests are watched before the line that says it is ready (a supervisor may
        // stop it as soon as it reads it).
        let interrupts = crate::exec::Interrupts::default();
        crate::exec::signals::watch_saying(
            &interrupts,
            crate::exec::signals::Stopping {
                first: "stopping the stand-in",
                again: "stopping the stand-in",
            },
        );
        crate::outln!("stand-in listening on {}", s.url());
        interrupts.soft.cancelled().await;
        s.shutdown().await;
        Ok::<_, Error>(())
    })?;
    Ok(exit::OK)
}
