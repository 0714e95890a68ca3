//! Semantic validation of a trial: turns its parsed file into a checked [`Trial`] bound to its
//! [`Environment`] (read and checked by `environment`), or returns every problem found, each
//! naming file, line and field. Nothing here does I/O beyond reading the trial, its environment
//! and files they reference.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::check::{fields_of, is_slug, sha256_hex, Check};
use super::checked::{Capacity, TaskRef, Trial, Variant};
use super::deployment::GroupSettings;
use super::environment::{load_environment, Environment};
use super::limits;
use super::model::*;
use super::source::{deserialize_all, drop_echoes, Diagnostic, Diagnostics, Source};

/// The built-in Veraison tasks.
pub const BUILTIN_TASKS: [&str; 3] = ["well-known", "provision", "verify"];

/// Reads and checks a trial; `env_override` replaces the environment the trial names.
pub fn load_trial(file: &Path, env_override: Option<&Path>) -> Result<Trial, Diagnostics> {
    let source = Source::read(file)?;
    let (spec, mut diags) = deserialize_all::<TrialFile>(&source);
    let Some(spec) = spec else {
        return Err(Diagnostics(diags));
    };
    let unreadable = fields_of(&diags);
    let env_path = match env_override {
        Some(p) => Some(p.to_path_buf()),
        None => match &spec.environment {
            None => {
                diags.push(source.diagnostic(
                    "environment",
                    "the trial names no environment",
                    Some("add `environment: <name>` or pass --env FILE".into()),
                ));
                None
            }
            Some(name) => match find_environment(file, name) {
                Some(p) => Some(p),
                None => {
                    diags.push(source.diagnostic(
                        "environment",
                        format!("environment `{name}` not found"),
                        Some(format!(
                            "looked for {name}.yaml beside the trial, in environments/ and templates/; or pass --env FILE"
                        )),
                    ));
                    None
                }
            },
        },
    };
    let env = match env_path {
        Some(p) => match load_environment(&p) {
            Ok(env) => Some(env),
            Err(e) => {
                diags.extend(e.0);
                None
            }
        },
        None => None,
    };
    let checked = check_trial(&source, spec, env, &mut diags);
    drop_echoes(&mut diags, &source.file, unreadable.len(), &unreadable);
    match checked {
        Some(t) if diags.is_empty() => Ok(t),
        _ => Err(Diagnostics(diags)),
    }
}

/// Where an environment named in a trial is looked for.
pub fn find_environment(trial_file: &Path, name: &str) -> Option<PathBuf> {
    let dir = trial_file.parent().unwrap_or(Path::new("."));
    let as_path = Path::new(name);
    if name.ends_with(".yaml") || name.ends_with(".yml") || name.contains('/') {
        let p = if as_path.is_absolute() {
            as_path.to_path_buf()
        } else {
            dir.join(as_path)
        };
        return p.exists().then_some(p);
    }
    let file = format!("{name}.yaml");
    [
        dir.join(&file),
        dir.join("..").join("environments").join(&file),
        dir.join("..").join("templates").join(&file),
        PathBuf::from("environments").join(&file),
        PathBuf::from("templates").join(&file),
    ]
    .into_iter()
    .find(|p| p.exists())
}

fn check_capacity(c: &mut Check, field: &str, spec: &CapacitySpec) -> Option<Capacity> {
    let before = c.diags.len();
    let max = limits::CAPACITY;
    let cap = match (spec.pin, spec.min, spec.max) {
        (Some(p), None, None) if spec.desired.is_none() => c
            .int(&format!("{field}.pin"), p, 0, max, "pin")
            .map(Capacity::Pinned),
        (None, Some(min), Some(hi)) => {
            let lo = c.int(&format!("{field}.min"), min, 0, max, "min");
            let hi = c.int(&format!("{field}.max"), hi, 1, max, "max");
            let desired = spec
                .desired
                .and_then(|d| c.int(&format!("{field}.desired"), d, 0, max, "desired"));
            match (lo, hi) {
                (Some(lo), Some(hi)) if lo > hi => {
                    c.err(
                        &format!("{field}.min"),
                        format!("min ({lo}) is greater than max ({hi})"),
                        Some("min ≤ desired ≤ max"),
                    );
                    None
                }
                (Some(lo), Some(hi)) => {
                    if let Some(d) = desired.filter(|d| *d < lo || *d > hi) {
                        c.err(
                            &format!("{field}.desired"),
                            format!("desired ({d}) is outside {lo}..{hi}"),
                            None,
                        );
                    }
                    Some(Capacity::Range {
                        min: lo,
                        max: hi,
                        desired,
                    })
                }
                _ => None,
            }
        }
        _ => {
            c.err(
                field,
                "write either `{ pin: N }` or `{ min: A, max: B }`",
                Some("pin sets min = max = desired"),
            );
            None
        }
    };
    (c.diags.len() == before).then_some(cap).flatten()
}

/// `runs.users` / `runs.arrival`: the load points of the closed or open model.
fn check_load_points(c: &mut Check, runs: &RunsSpec) -> Vec<u32> {
    let mut steps = Vec::new();
    let users = |c: &mut Check, field: &str, n: i64| c.int(field, n, 1, limits::USERS, "users");
    match (&runs.users, &runs.arrival) {
        (Some(_), Some(_)) => c.err(
            "runs.arrival",
            "give `users` (closed model) or `arrival` (open model), not both",
            None,
        ),
        (None, None) => c.err(
            "runs",
            "missing `users` or `arrival`",
            Some("e.g. users: { from: 2, to: 106, step: 8 }"),
        ),
        (Some(UsersSpec::One(n)), None) => steps.extend(users(c, "runs.users", *n)),
        (Some(UsersSpec::List(list)), None) => {
            if list.is_empty() {
                c.err("runs.users", "the list of user counts is empty", None);
            }
            for (i, n) in list.iter().enumerate() {
                steps.extend(users(c, &format!("runs.users[{i}]"), *n));
            }
        }
        (Some(UsersSpec::Steps(s)), None) => {
            let from = users(c, "runs.users.from", s.from);
            let to = users(c, "runs.users.to", s.to);
            let step = c.int("runs.users.step", s.step, 1, limits::USERS, "step");
            if s.to < s.from {
                c.err(
                    "runs.users.to",
                    format!("`to` ({}) is less than `from` ({})", s.to, s.from),
                    Some("a ramp goes up: from ≤ to"),
                );
            } else if let (Some(from), Some(to), Some(step)) = (from, to, step) {
                steps.extend((from..=to).step_by(step as usize));
            }
        }
        (None, Some(a)) => {
            c.positive_rate("runs.arrival.rate", a.rate, "the arrival rate");
            if let Some(to) = a.to {
                c.positive_rate("runs.arrival.to", to, "the arrival rate");
            }
            c.int(
                "runs.arrival.max-in-flight",
                a.max_in_flight,
                1,
                limits::IN_FLIGHT,
                "max-in-flight",
            );
        }
    }
    steps
}

/// `runs`: durations, spawn, wait and iterations.
fn check_timing(c: &mut Check, runs: &RunsSpec) -> u32 {
    let zero = Duration::ZERO;
    c.span(
        "runs.duration",
        Some(runs.duration),
        zero,
        limits::RUN,
        "duration",
    );
    c.span(
        "runs.request-timeout",
        runs.request_timeout,
        zero,
        limits::REQUEST_TIMEOUT,
        "request-timeout",
    );
    if let Some(cooldown) = runs.cooldown {
        if cooldown.0 > limits::PAUSE {
            c.span(
                "runs.cooldown",
                Some(cooldown),
                zero,
                limits::PAUSE,
                "cooldown",
            );
        }
    }
    if let Some(w) = runs.warmup {
        if w >= runs.duration {
            c.err(
                "runs.warmup",
                format!(
                    "warm-up ({w}) is not shorter than the run ({})",
                    runs.duration
                ),
                None,
            );
        }
    }
    if let SpawnSpec::Rate(r) = runs.spawn_rate {
        if r.0 <= 0.0 {
            c.err(
                "runs.spawn-rate",
                "the spawn rate must be above zero",
                Some("or `all-at-once`"),
            );
        }
    }
    match runs.wait {
        WaitSpec::Between(a, b) if a > b => c.err(
            "runs.wait.between",
            format!("the lower bound ({a}) is above the upper ({b})"),
            None,
        ),
        WaitSpec::Between(_, s) | WaitSpec::Constant(s) | WaitSpec::Pacing(s)
            if s.0 > limits::PAUSE =>
        {
            c.span("runs.wait", Some(s), zero, limits::PAUSE, "the wait")
        }
        _ => {}
    }
    c.int(
        "runs.iterations",
        runs.iterations,
        1,
        limits::ITERATIONS,
        "iterations",
    )
    .unwrap_or(1)
}

/// `runs.tasks` resolved against the built-ins and `http-tasks`.
fn check_tasks(c: &mut Check, spec: &TrialFile) -> Vec<TaskRef> {
    let mut tasks = Vec::new();
    if spec.runs.tasks.is_empty() {
        let hint = format!("use some of {}", BUILTIN_TASKS.join(", "));
        c.err("runs.tasks", "no tasks", Some(&hint));
    }
    for (i, name) in spec.runs.tasks.iter().enumerate() {
        let field = format!("runs.tasks[{i}]");
        let t = match name.as_str() {
            "well-known" => TaskRef::WellKnown,
            "provision" => TaskRef::Provision,
            "verify" => TaskRef::Verify,
            other if spec.http_tasks.contains_key(other) => TaskRef::Http(other.to_string()),
            other => {
                let mut known: Vec<&str> = BUILTIN_TASKS.to_vec();
                known.extend(spec.http_tasks.keys().map(String::as_str));
                let hint = format!("known tasks: {}", known.join(", "));
                c.err(&field, format!("unknown task `{other}`"), Some(&hint));
                continue;
            }
        };
        if tasks.contains(&t) {
            c.err(&field, format!("task `{name}` is listed twice"), None);
        }
        tasks.push(t);
    }
    tasks
}

/// `http-tasks`: methods, paths, statuses and body files.
fn check_http_tasks(c: &mut Check, spec: &TrialFile) {
    let trial_dir = c.src.file.parent().unwrap_or(Path::new(".")).to_path_buf();
    for (name, t) in &spec.http_tasks {
        let field = format!("http-tasks.{name}");
        if BUILTIN_TASKS.contains(&name.as_str()) {
            c.err(
                &field,
                format!("`{name}` is a built-in task name"),
                Some("pick another name"),
            );
        }
        if reqwest::Method::from_bytes(t.method.as_bytes()).is_err()
            || t.method.chars().any(|ch| ch.is_ascii_lowercase())
        {
            c.err(
                &format!("{field}.method"),
                format!("`{}` is not an HTTP method", t.method),
                Some("GET, POST, PUT, DELETE, …"),
            );
        }
        if t.service == ServiceRole::Generators {
            c.err(
                &format!("{field}.service"),
                "`generators` is the load generators' group, not a service",
                Some("provisioning or verification"),
            );
        }
        if !t.path.starts_with('/') {
            c.err(
                &format!("{field}.path"),
                format!("`{}` must start with /", t.path),
                None,
            );
        }
        if !(100..=599).contains(&t.expect_status) {
            c.err(
                &format!("{field}.expect-status"),
                format!("{} is not an HTTP status", t.expect_status),
                None,
            );
        }
        if let Some(body) = &t.body_file {
            if !trial_dir.join(body).is_file() {
                c.err(
                    &format!("{field}.body-file"),
                    format!("file `{}` not found", body.display()),
                    Some("paths are relative to the trial file"),
                );
            }
        }
    }
}

/// Capacities and settings per service, as `check_infra` finds them.
type CheckedInfra = (
    Vec<(ServiceRole, Capacity)>,
    Vec<(ServiceRole, GroupSettings)>,
);

/// `infra` (at `at`: `infra`, or `variants[i].infra` for a variant merged over it): capacities,
/// the groups' other settings, readiness timeout and sampling interval.
fn check_infra(c: &mut Check, at: &str, infra: &InfraSpec) -> CheckedInfra {
    let mut capacities = Vec::new();
    let mut settings = Vec::new();
    for (role, spec) in infra.capacities() {
        let field = format!("{at}.{role}");
        if let Some(cap) = check_capacity(c, &field, &spec) {
            capacities.push((role, cap));
        }
        let group = spec.settings();
        for (sub, message, hint) in group.problems() {
            c.err(&format!("{field}.{sub}"), message, hint);
        }
        if !group.is_empty() {
            settings.push((role, group));
        }
    }
    if let Some(db) = &infra.database {
        let field = format!("{at}.database");
        for (sub, message, hint) in db.problems() {
            let at_field = if sub.is_empty() {
                field.clone()
            } else {
                format!("{field}.{sub}")
            };
            c.err(&at_field, message, hint);
        }
    }
    c.span(
        &format!("{at}.ready-timeout"),
        infra.ready_timeout,
        Duration::ZERO,
        limits::READY_TIMEOUT,
        "ready-timeout",
    );
    c.span(
        &format!("{at}.sample-every"),
        infra.sample_every,
        limits::SAMPLE_MIN,
        limits::PAUSE,
        "sample-every",
    );
    (capacities, settings)
}

/// `variants`: unique names, each one's `infra` merged over the trial's and checked.
fn check_variants(c: &mut Check, spec: &TrialFile) -> Vec<(Variant, String)> {
    let mut out: Vec<(Variant, String)> = Vec::new();
    for (i, v) in spec.variants.iter().enumerate() {
        let at = format!("variants[{i}]");
        if !is_slug(&v.name) {
            c.err(
                &format!("{at}.name"),
                format!("`{}` is not a valid name", v.name),
                Some("use letters, digits, - and _ (it names the variant's results folder)"),
            );
        } else if out.iter().any(|(o, _)| o.name == v.name) {
            c.err(
                &format!("{at}.name"),
                format!("a second variant named `{}`", v.name),
                None,
            );
        }
        let infra = spec.infra.merged(&v.infra);
        let (capacities, settings) = check_infra(c, &format!("{at}.infra"), &infra);
        out.push((
            Variant {
                name: v.name.clone(),
                infra,
                capacities,
                settings,
            },
            at,
        ));
    }
    out
}

/// `thresholds` and `metrics-settle`.
fn check_gates(c: &mut Check, spec: &TrialFile, tasks: &[TaskRef]) {
    for (i, t) in spec.thresholds.iter().enumerate() {
        let field = format!("thresholds[{i}]");
        match crate::trial::thresholds::Threshold::parse(t) {
            Err(m) => c.err(&field, m, Some("e.g. `verify p95 < 800ms` or `* p95 +10%`")),
            Ok(th) => {
                // A threshold that matches nothing would pass without checking anything.
                let requests: Vec<String> =
                    tasks.iter().flat_map(|t| t.request_names(spec)).collect();
                let e = th.endpoint.as_str();
                let matches = e == "*"
                    || tasks.iter().any(|t| t.name() == e)
                    || requests.iter().any(|r| r == e || r.ends_with(e));
                if !matches && !tasks.is_empty() {
                    let mut known: Vec<String> =
                        tasks.iter().map(|t| t.name().to_string()).collect();
                    known.extend(requests);
                    let hint = format!(
                        "name a task or a request of this trial: {}",
                        known.join(", ")
                    );
                    c.err(
                        &field,
                        format!("`{e}` matches no endpoint of this trial"),
                        Some(&hint),
                    );
                }
            }
        }
    }
    if let Some(settle) = spec.metrics_settle {
        if settle.0 > limits::SETTLE {
            c.span(
                "metrics-settle",
                Some(settle),
                Duration::ZERO,
                limits::SETTLE,
                "metrics-settle",
            );
        }
    }
}

/// Every group a trial (or a variant, at `at`) changes is one the environment names on AWS.
fn check_groups_in_environment(
    c: &mut Check,
    at: &str,
    capacities: &[(ServiceRole, Capacity)],
    env: &Environment,
) {
    let name = &env.spec.name;
    for (role, _) in capacities {
        if env.spec.aws.is_none() || env.asg_name(*role).is_none() {
            c.err(
                &format!("{at}.{role}"),
                format!("environment `{name}` has no AWS auto-scaling group for {role}"),
                Some("add `aws:` and `deployment:` (or services.<svc>.asg) to the environment, or drop `infra`"),
            );
        }
    }
}

/// A trial (or a variant, at `at`) that changes the database needs an environment that names
/// its RDS instance.
fn check_database_in_environment(c: &mut Check, at: &str, infra: &InfraSpec, env: &Environment) {
    if infra.database.is_some() && env.rds_instance().is_none() {
        c.err(
            &format!("{at}.database"),
            format!(
                "environment `{}` names no RDS instance to change",
                env.spec.name
            ),
            Some("give the environment an `aws` section and stores.postgres.rds-instance (or `auto`)"),
        );
    }
    // A trial that changes only the database holds the deployment's groups as they are: the
    // deployment lock and the undo journal are the groups'.
    let held = [ServiceRole::Provisioning, ServiceRole::Verification]
        .into_iter()
        .any(|r| env.asg_name(r).is_some());
    if infra.database.is_some() && infra.capacities().is_empty() && !held {
        c.err(
            &format!("{at}.database"),
            format!(
                "a trial that changes only the database holds the deployment's provisioning and verification groups (its lock and undo journal are the groups'), and environment `{}` names neither",
                env.spec.name
            ),
            Some("give the environment its `deployment` (or its groups' names)"),
        );
    }
}

/// What the environment must offer for the steps this trial needs.
fn check_against_environment(
    c: &mut Check,
    spec: &TrialFile,
    at: &str,
    capacities: &[(ServiceRole, Capacity)],
    env: &Environment,
) {
    let name = &env.spec.name;
    check_groups_in_environment(c, at, capacities, env);
    let stores = env.spec.stores.as_ref();
    if spec.stores.clear != ClearPolicy::Never {
        if !env.has_store_driver() {
            c.err(
                "stores.clear",
                format!("environment `{name}` says nothing of its stores"),
                Some("add stores.postgres (or sqlite, command, standin) to the environment"),
            );
        } else if !stores.is_some_and(|s| s.disposable) {
            c.err(
                "stores.clear",
                format!("environment `{name}` is not marked disposable: clearing its stores is refused"),
                Some("set `stores: { disposable: true }` in the environment if its data may be deleted"),
            );
        }
    }
    if spec.stores.count != CountPolicy::Never && !env.has_store_driver() {
        c.err(
            "stores.count",
            format!("environment `{name}` says nothing of its stores"),
            None,
        );
    }
    if spec.stores.flush_sessions && stores.is_none_or(|s| s.sessions.is_none()) {
        c.err(
            "stores.flush-sessions",
            format!("environment `{name}` has no session cache (stores.sessions)"),
            None,
        );
    }
    if env
        .spec
        .generators
        .as_ref()
        .is_some_and(|g| g.aws.is_some())
    {
        check_fleet_phase(c, spec);
    }
    if !spec.metrics.is_empty() && env.spec.aws.is_none() {
        c.err(
            "metrics",
            format!(
                "environment `{name}` has no `aws` section: CloudWatch metrics cannot be pulled"
            ),
            Some("remove `metrics` for local runs"),
        );
    }
    if !spec.publish.is_empty() && env.spec.aws.is_none() {
        c.err(
            "publish",
            format!(
                "environment `{name}` has no `aws` section: the client's figures cannot be published to CloudWatch"
            ),
            Some("remove `publish` for local runs"),
        );
    }
}

/// A fleet on AWS runs each worker's share as one SSM command, whose `executionTimeout` is
/// capped: the phase, with everything the command holds around it, must fit.
fn check_fleet_phase(c: &mut Check, spec: &TrialFile) {
    let request_timeout = spec
        .runs
        .request_timeout
        .map(|t| t.0)
        .unwrap_or(crate::trial::load_phase::REQUEST_TIMEOUT);
    let longest = crate::trial::ssm::longest_phase(request_timeout);
    if spec.runs.duration.0 > longest {
        let hint = format!(
            "at most {} with this request timeout; split it into shorter runs, or use `generators: {{ local: N }}`",
            humantime::format_duration(longest)
        );
        c.err(
            "runs.duration",
            format!(
                "a phase of {} does not fit a fleet on AWS: Systems Manager stops a command after {} s (AWS-RunShellScript's largest executionTimeout), and each worker's command also holds its start margin (up to {}), the request timeout and its upload",
                spec.runs.duration,
                crate::trial::ssm::EXECUTION_TIMEOUT_MAX.as_secs(),
                humantime::format_duration(crate::trial::ssm::START_MARGIN_MAX),
            ),
            Some(&hint),
        );
    }
}

fn check_trial(
    src: &Source,
    spec: TrialFile,
    env: Option<Environment>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Trial> {
    let before = diags.len();
    let mut c = Check { src, diags };
    if !is_slug(&spec.name) {
        c.err(
            "name",
            format!("`{}` is not a valid name", spec.name),
            Some("use letters, digits, - and _ (it names the results folder)"),
        );
    }
    let user_steps = check_load_points(&mut c, &spec.runs);
    let iterations = check_timing(&mut c, &spec.runs);
    let tasks = check_tasks(&mut c, &spec);
    check_http_tasks(&mut c, &spec);
    let (mut capacities, settings) = check_infra(&mut c, "infra", &spec.infra);
    let mut variants = check_variants(&mut c, &spec);
    check_gates(&mut c, &spec, &tasks);
    // A fleet on AWS: its group is pinned to the fleet's size, journaled and restored as the
    // services' are.
    if let Some(fleet) = env
        .as_ref()
        .and_then(|e| e.spec.generators.as_ref())
        .and_then(|g| g.aws.as_ref())
    {
        let pinned = (ServiceRole::Generators, Capacity::Pinned(fleet.count));
        capacities.push(pinned);
        for (v, _) in &mut variants {
            v.capacities.push(pinned);
        }
    }
    if let Some(env) = &env {
        check_against_environment(&mut c, &spec, "infra", &capacities, env);
        check_database_in_environment(&mut c, "infra", &spec.infra, env);
        for (v, at) in &variants {
            check_groups_in_environment(&mut c, &format!("{at}.infra"), &v.capacities, env);
            if v.infra.database != spec.infra.database {
                check_database_in_environment(&mut c, &format!("{at}.infra"), &v.infra, env);
            }
        }
    }
    if diags.len() > before {
        return None;
    }
    let hash = sha256_hex(&src.text);
    Some(Trial {
        file: src.file.clone(),
        hash,
        env: env?,
        user_steps,
        tasks,
        capacities,
        settings,
        variants: variants.into_iter().map(|(v, _)| v).collect(),
        iterations,
        spec,
    })
}
