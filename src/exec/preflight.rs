//! Preflight: before a campaign's first change, every provider resolves and checks what it will
//! use with cheap reads (the groups and target groups, the database's location, password,
//! tunnel and tables, the cache nodes, the metrics' resources and log groups). Nothing changes.

use crate::error::Result;
use crate::provider::Providers;
use crate::trial::model::{ClearPolicy, CountPolicy};
use crate::trial::Trial;

/// True when a trial clears or counts the stores.
fn uses_stores(trial: &Trial) -> bool {
    trial.spec.stores.clear != ClearPolicy::Never || trial.spec.stores.count != CountPolicy::Never
}

/// Resolves and checks everything a campaign needs before its first change (cheap reads only):
/// the groups and target groups, the database (location, password, tunnel, tables), the cache
/// nodes, the metrics' resources and log groups. One line per thing found.
pub async fn preflight(trial: &Trial, p: &Providers) -> Result<Vec<String>> {
    let mut found = Vec::new();
    if let Some(s) = &p.scaler {
        found.extend(s.preflight().await?);
        // The warm pools, policies and health checks a trial changes: read (and the
        // permissions to read them proven) before anything changes.
        for (role, group) in &trial.settings {
            let now = s.read_settings(*role, group.changes_launch()).await?;
            found.push(format!(
                "{role}: warm pool {}; policies {}; health check {} ({}s grace){}",
                now.describe("warm-pool"),
                now.describe("policy"),
                now.health_check_type,
                now.health_check_grace_s,
                now.launch
                    .as_ref()
                    .map(|l| format!(
                        "; launches from {} as {}",
                        l.describe(),
                        l.instance_type.as_deref().unwrap_or("?")
                    ))
                    .unwrap_or_default()
            ));
        }
        // The database a trial changes: found, its class and parameters read.
        if let Some(db) = &trial.spec.infra.database {
            let now = s.read_database(db).await?;
            found.push(format!("database {}", now.summary()));
        }
    }
    if uses_stores(trial) {
        if let Some(s) = &p.stores {
            found.extend(s.preflight().await?);
        }
    }
    if trial.spec.stores.flush_sessions {
        if let Some(s) = &p.sessions {
            found.extend(s.preflight().await?);
        }
    }
    if let Some(m) = &p.metrics {
        found.extend(m.preflight().await?);
    }
    for line in &found {
        tracing::info!("preflight: {line}");
    }
    Ok(found)
}
