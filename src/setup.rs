//! Wiring: from a checked trial and its environment to the load [`Target`] and the
//! [`Providers`]. Everything that can fail for want of input (a secret's variable unset, a body
//! file unreadable) fails here, before any step acts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::aws::cloudwatch::CloudWatchSource;
use crate::aws::scaler::{services_of, AwsScaler, ServiceInfra};
use crate::aws::stores::{ElastiCacheNodes, RdsLocator};
use crate::aws::{AwsContext, AwsTimeouts};
use crate::error::{Error, Result};
use crate::load::auth::{PasswordGrant, TokenSource};
use crate::load::tasks::{header_map, HttpTask, Target};
use crate::load::{LoadEngine, Progress};
use crate::provider::{JournalTarget, MetricsSource, Providers, Scaler, SessionCache, StoreDriver};
use crate::readiness::ServiceCheck;
use crate::secret::Secret;
use crate::stores::command::CommandStores;
use crate::stores::memcached::MemcachedSessions;
use crate::stores::postgres::{DbLocation, DbLocator, FixedLocation, PostgresStores};
use crate::stores::sqlite::SqliteStores;
use crate::stores::tables_for;
use crate::trial::model::{AuthSpec, ClearPolicy, ServiceRole};
use crate::trial::{Environment, Trial};

/// Options that come from the command line rather than the files.
#[derive(Debug, Clone, Default)]
pub struct SetupOptions {
    /// `--aws-endpoint`.
    pub aws_endpoint: Option<String>,
    /// Show live progress.
    pub progress: bool,
}

fn auth_for(env: &Environment) -> Result<Option<Arc<TokenSource>>> {
    let Some(AuthSpec { oauth2_password: g }) = &env.spec.services.provisioning.auth else {
        return Ok(None);
    };
    let password = Secret::from_env(&g.password_env).map_err(|m| {
        Error::Usage(format!(
            "{}: services.provisioning.auth: {m}",
            env.file.display()
        ))
    })?;
    let client_secret = match &g.client_secret_env {
        Some(var) => Some(Secret::from_env(var).map_err(|m| {
            Error::Usage(format!(
                "{}: services.provisioning.auth: {m}",
                env.file.display()
            ))
        })?),
        None => None,
    };
    Ok(Some(Arc::new(TokenSource::new(PasswordGrant {
        token_url: g.token_url.clone(),
        client_id: g.client_id.clone(),
        client_secret,
        username: g.username.clone(),
        password,
    }))))
}

/// The load target of an environment, with the trial's plain HTTP tasks.
pub fn target_for(env: &Environment, trial: Option<&Trial>) -> Result<Target> {
    let mut http_tasks = BTreeMap::new();
    if let Some(t) = trial {
        let dir = t.file.parent().unwrap_or(Path::new("."));
        for (name, spec) in &t.spec.http_tasks {
            let body = match &spec.body_file {
                Some(f) => std::fs::read(dir.join(f))
                    .map_err(|e| Error::io(format!("reading body file of http task {name}"), e))?,
                None => Vec::new(),
            };
            let headers = header_map(&spec.headers)
                .map_err(|m| Error::Usage(format!("http-tasks.{name}.headers: {m}")))?;
            let base = match spec.service {
                ServiceRole::Provisioning => &env.spec.services.provisioning.url,
                _ => &env.spec.services.verification.url,
            };
            let url = base
                .join(&spec.path)
                .map_err(|e| Error::Usage(format!("http-tasks.{name}.path: {e}")))?;
            http_tasks.insert(
                name.clone(),
                HttpTask {
                    url,
                    name: spec.path.clone(),
                    method: reqwest::Method::from_bytes(spec.method.as_bytes())
                        .map_err(|_| Error::Usage(format!("http-tasks.{name}.method")))?,
                    headers,
                    body: body.into(),
                    expect: reqwest::StatusCode::from_u16(spec.expect_status)
                        .map_err(|_| Error::Usage(format!("http-tasks.{name}.expect-status")))?,
                    auth: spec.auth,
                },
            );
        }
    }
    let services = &env.spec.services;
    Ok(Target {
        provisioning: services.provisioning.url.clone(),
        verification: services.verification.url.clone(),
        release: env.release.clone(),
        tokens: auth_for(env)?,
        http_tasks,
        tls: crate::load::tls::ClientTls::of(env)?,
    })
}

/// A store driver and a session cache, each optional.
pub type StoreProviders = (Option<Arc<dyn StoreDriver>>, Option<Arc<dyn SessionCache>>);

/// The store driver and session cache an environment names; `aws` finds RDS, its password
/// and the ElastiCache nodes when the environment asks for `auto`.
pub fn stores_for(env: &Environment, aws: Option<&AwsContext>) -> Result<StoreProviders> {
    let Some(stores) = &env.spec.stores else {
        return Ok((None, None));
    };
    let file = env.file.display();
    let mut driver: Option<Arc<dyn StoreDriver>> = None;
    let mut sessions: Option<Arc<dyn SessionCache>> = None;
    if let Some(s) = &stores.standin {
        let local = Arc::new(crate::local::StandinStores::new(&s.url));
        driver = Some(local.clone());
        sessions = Some(local);
    }
    if let Some(pg) = &stores.postgres {
        let password =
            match &pg.password_env {
                Some(var) => Some(Secret::from_env(var).map_err(|m| {
                    Error::Usage(format!("{file}: stores.postgres.password-env: {m}"))
                })?),
                None => None,
            };
        let locator: Arc<dyn DbLocator> = match (&pg.host, password, aws) {
            (Some(host), Some(password), _) => Arc::new(FixedLocation(DbLocation { host: host.clone(), port: pg.port.unwrap_or(5432), password })),
            (host, password, Some(ctx)) => {
                if host.is_some() {
                    return Err(Error::Usage(format!("{file}: stores.postgres: with `host`, give `password-env` too")));
                }
                Arc::new(RdsLocator {
                    ctx: ctx.clone(),
                    deployment: env.spec.deployment.clone().unwrap_or_default(),
                    instance: pg.rds_instance.clone().unwrap_or_else(|| "auto".into()),
                    port: pg.port,
                    password,
                })
            }
            _ => return Err(Error::Usage(format!("{file}: stores.postgres: give host and password-env, or an `aws` section to find the RDS instance"))),
        };
        driver = Some(Arc::new(PostgresStores {
            database: pg.database.clone(),
            user: pg.user.clone(),
            tls: pg.tls,
            tunnel: pg.tunnel.clone(),
            tables: tables_for(env.release.store),
            locator,
        }));
    }
    if let Some(sq) = &stores.sqlite {
        let dir = if sq.dir.is_absolute() {
            sq.dir.clone()
        } else {
            env.file.parent().unwrap_or(Path::new(".")).join(&sq.dir)
        };
        driver = Some(Arc::new(SqliteStores { dir }));
    }
    if let Some(c) = &stores.command {
        driver = Some(Arc::new(CommandStores {
            clear: c.clear.clone(),
            count: c.count.clone(),
        }));
    }
    if let Some(s) = &stores.sessions {
        let servers: Box<dyn crate::stores::memcached::ServerList> =
            match (s.memcached.iter().any(|m| m == "auto"), aws) {
                (false, _) => Box::new(s.memcached.clone()),
                (true, Some(ctx)) => Box::new(ElastiCacheNodes {
                    ctx: ctx.clone(),
                    deployment: env.spec.deployment.clone().unwrap_or_default(),
                }),
                (true, None) => {
                    return Err(Error::Usage(format!(
                        "{file}: stores.sessions.memcached: `auto` needs the `aws` section"
                    )))
                }
            };
        // The cache is inside the VPC like the database: the same jump host unless told otherwise.
        let tunnel = s
            .tunnel
            .clone()
            .or_else(|| stores.postgres.as_ref().and_then(|p| p.tunnel.clone()));
        sessions = Some(Arc::new(MemcachedSessions { servers, tunnel }));
    }
    Ok((driver, sessions))
}

/// True when the stores are found through AWS (RDS lookup, stack password, ElastiCache nodes).
pub fn stores_need_aws(env: &Environment) -> bool {
    env.spec.stores.as_ref().is_some_and(|s| {
        s.postgres
            .as_ref()
            .is_some_and(|p| p.host.is_none() || p.password_env.is_none())
            || s.sessions
                .as_ref()
                .is_some_and(|m| m.memcached.iter().any(|x| x == "auto"))
    }) && env.spec.aws.is_some()
}

/// True when the campaign of `trial` calls AWS: it changes groups, pulls metrics, clears
/// stores or finds them through AWS (the account guard runs whenever it does).
pub fn needs_aws(trial: &Trial) -> bool {
    trial.env.spec.aws.is_some()
        && (!trial.held_services().is_empty()
            || !trial.spec.metrics.is_empty()
            || !trial.spec.publish.is_empty()
            || trial.spec.stores.clear != ClearPolicy::Never
            || stores_need_aws(&trial.env))
}

/// The groups a trial holds (see [`Trial::held_services`]): the scaler acts on and samples
/// them; the journal is keyed by them.
pub fn changed_services(trial: &Trial) -> Vec<ServiceInfra> {
    let changed = trial.held_services();
    services_of(&trial.env)
        .into_iter()
        .filter(|s| changed.contains(&s.role))
        .collect()
}

/// The AWS context of an environment, with the account guard passed.
pub async fn aws_for(env: &Environment, opts: &SetupOptions) -> Result<Option<AwsContext>> {
    let Some(spec) = &env.spec.aws else {
        return Ok(None);
    };
    let ctx = AwsContext::load(spec, opts.aws_endpoint.as_deref(), AwsTimeouts::default()).await?;
    ctx.check_account().await?;
    Ok(Some(ctx))
}

/// Every provider a trial needs, built from its environment. When the trial changes
/// infrastructure or clears stores in an AWS environment, the account guard runs here, before
/// any step.
pub async fn providers_for(trial: &Trial, opts: &SetupOptions) -> Result<Providers> {
    let env = &trial.env;
    let target = target_for(env, Some(trial))?;
    let target_tls = target.tls.clone();
    let check_target = Arc::new(target_for(env, Some(trial))?);
    let progress = if opts.progress {
        Progress::Show
    } else {
        Progress::Quiet
    };
    let aws = if needs_aws(trial) {
        aws_for(env, opts).await?
    } else {
        None
    };
    let (stores, sessions) = stores_for(env, aws.as_ref())?;
    // The scaler acts on (and samples) exactly the groups the trial changes; the journal is
    // keyed by them.
    let services = changed_services(trial);
    // A trial that changes the database: the scaler acts on it too, and the journal's target
    // names it.
    let database = trial
        .spec
        .infra
        .database
        .as_ref()
        .and_then(|_| env.rds_instance());
    let (scaler, journal_target): (Option<Arc<dyn Scaler>>, _) = match &aws {
        Some(ctx) if !services.is_empty() => {
            let target = journal_target(ctx, env, &services).with_database(database.clone());
            let mut scaler = AwsScaler::new(ctx.clone(), services).with_tls(&target_tls);
            if let Some(instance) = &database {
                scaler = scaler.with_database(
                    instance,
                    env.spec.deployment.as_deref().unwrap_or_default(),
                    &trial.spec.name,
                );
            }
            (Some(Arc::new(scaler)), Some(target))
        }
        _ => (None, None),
    };
    let metrics: Option<Arc<dyn MetricsSource>> = match (&aws, trial.spec.metrics.is_empty()) {
        (Some(ctx), false) => Some(Arc::new(CloudWatchSource::new(
            ctx.clone(),
            env.clone(),
            trial.spec.metrics.clone(),
        ))),
        _ => None,
    };
    let publish: Option<Arc<dyn crate::provider::ClientMetricsSink>> =
        match (&aws, trial.spec.publish.is_empty()) {
            (Some(ctx), false) => Some(Arc::new(crate::aws::publish::CloudWatchPublisher::new(
                ctx.clone(),
                &trial.spec.name,
                &env.spec.name,
            ))),
            _ => None,
        };
    Ok(Providers {
        scaler,
        stores,
        sessions,
        metrics,
        publish,
        target: Arc::new(
            ServiceCheck::new(check_target)
                .for_tasks(&trial.tasks)
                .with_patience(
                    trial
                        .spec
                        .infra
                        .ready_timeout
                        .map(|t| t.0)
                        .unwrap_or(std::time::Duration::from_secs(60)),
                ),
        ),
        load: load_for(trial, target, progress, aws.as_ref())?,
        journal_target,
        results_mirror: None,
    })
}

/// Where a trial's load comes from: this process, or the generator fleet its environment names.
fn load_for(
    trial: &Trial,
    target: crate::load::Target,
    progress: Progress,
    aws: Option<&AwsContext>,
) -> Result<Arc<dyn crate::provider::LoadRunner>> {
    let Some(generators) = trial.env.spec.generators.as_ref() else {
        return Ok(Arc::new(LoadEngine::new(target, progress)));
    };
    match (generators.local, &generators.aws) {
        (Some(n), _) => Ok(Arc::new(crate::fleet::local::LocalFleet::new(
            n,
            &trial.file,
            &trial.env.file,
            trial.spec.on_generator_loss,
        )?)),
        (None, Some(spec)) => {
            let ctx = aws.ok_or_else(|| {
                Error::Usage(format!(
                    "{}: generators.aws needs the environment's `aws`",
                    trial.env.file.display()
                ))
            })?;
            Ok(Arc::new(
                crate::fleet::aws::AwsFleet::new(
                    ctx,
                    spec,
                    &trial.file,
                    &trial.env.file,
                    trial.spec.on_generator_loss,
                )?
                .for_trial(trial, target),
            ))
        }
        (None, None) => Ok(Arc::new(LoadEngine::new(target, progress))),
    }
}

/// What a journal over these groups of an environment is keyed by.
pub fn journal_target(
    ctx: &AwsContext,
    env: &Environment,
    services: &[ServiceInfra],
) -> JournalTarget {
    JournalTarget::new(
        &ctx.account,
        &ctx.region(),
        &ctx.endpoint,
        env.spec.deployment.as_deref(),
        services.iter().map(|s| s.asg.clone()),
    )
}
