//! A checked environment: where things are (URLs, auto-scaling groups, stores, the generators),
//! read from its file and checked section by section, every problem naming file, line and field.

use std::path::{Path, PathBuf};

use super::check::{fields_of, is_slug, sha256_hex, Check};
use super::limits;
use super::model::*;
use super::source::{deserialize_all, drop_echoes, Diagnostic, Diagnostics, Source};
use crate::veraison::release::ReleaseProfile;

/// A checked environment.
#[derive(Debug, Clone)]
pub struct Environment {
    /// Where it was read from.
    pub file: PathBuf,
    /// SHA-256 of its text.
    pub hash: String,
    /// The file as written.
    pub spec: EnvironmentFile,
    /// The wire contract of its Veraison release.
    pub release: ReleaseProfile,
}

impl Environment {
    /// The ASG name of a service, explicit or derived from the deployment name.
    pub fn asg_name(&self, role: ServiceRole) -> Option<String> {
        if role == ServiceRole::Generators {
            return self
                .spec
                .generators
                .as_ref()
                .and_then(|g| g.aws.as_ref())
                .map(|a| a.asg.clone());
        }
        let explicit = self.spec.services.get(role).and_then(|s| s.asg.clone());
        explicit.or_else(|| {
            self.spec
                .deployment
                .as_ref()
                .map(|d| format!("{d}-{}-asg", role.asg_suffix()))
        })
    }

    /// The target group name of a service, explicit or derived from the deployment name.
    pub fn target_group_name(&self, role: ServiceRole) -> Option<String> {
        if role == ServiceRole::Generators {
            return None;
        }
        let explicit = self
            .spec
            .services
            .get(role)
            .and_then(|s| s.target_group.clone());
        explicit.or_else(|| {
            self.spec
                .deployment
                .as_ref()
                .map(|d| format!("{d}-{}-tg", role.asg_suffix()))
        })
    }

    /// The deployment's RDS instance as the environment names it (`stores.postgres.rds-instance`,
    /// or `auto` when the database has no `host`: the stores find it the same way); `None` when
    /// it names none, or has no `aws` section to find one in.
    pub fn rds_instance(&self) -> Option<String> {
        self.spec.aws.as_ref()?;
        let pg = self.spec.stores.as_ref()?.postgres.as_ref()?;
        match (&pg.rds_instance, &pg.host) {
            (Some(i), _) => Some(i.clone()),
            (None, None) => Some("auto".into()),
            (None, Some(_)) => None,
        }
    }

    /// True when the environment names some store driver.
    pub fn has_store_driver(&self) -> bool {
        self.spec.stores.as_ref().is_some_and(|s| {
            s.postgres.is_some() || s.sqlite.is_some() || s.command.is_some() || s.standin.is_some()
        })
    }
}

/// Reads and checks an environment file alone.
pub fn load_environment(file: &Path) -> Result<Environment, Diagnostics> {
    let source = Source::read(file)?;
    let (spec, mut diags) = deserialize_all::<EnvironmentFile>(&source);
    let unreadable = fields_of(&diags);
    let env = spec.and_then(|spec| check_environment(&source, spec, &mut diags));
    drop_echoes(&mut diags, &source.file, unreadable.len(), &unreadable);
    match env {
        Some(env) if diags.is_empty() => Ok(env),
        _ => Err(Diagnostics(diags)),
    }
}

/// `aws`: the account, region and endpoint.
fn check_aws(c: &mut Check, aws: &AwsSpec) {
    if aws.account.len() != 12 || !aws.account.chars().all(|ch| ch.is_ascii_digit()) {
        c.err(
            "aws.account",
            format!("`{}` is not a 12-digit AWS account id", aws.account),
            Some("quote it: account: \"123456789012\""),
        );
    }
    let region_ok = !aws.region.is_empty()
        && aws
            .region
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
    if !region_ok {
        c.err(
            "aws.region",
            format!("`{}` is not an AWS region", aws.region),
            Some("e.g. eu-west-1"),
        );
    }
    if let Some(e) = aws
        .endpoint
        .as_ref()
        .filter(|e| url::Url::parse(e).is_err())
    {
        c.err(
            "aws.endpoint",
            format!("`{e}` is not a URL"),
            Some("e.g. http://127.0.0.1:5000"),
        );
    }
}

/// `services`: URLs, TLS files, auth.
fn check_services(c: &mut Check, services: &ServicesSpec) {
    let dir = c.src.file.parent().unwrap_or(Path::new(".")).to_path_buf();
    for role in ServiceRole::ALL {
        let Some(svc) = services.get(role) else {
            continue;
        };
        let field = format!("services.{role}");
        if !matches!(svc.url.scheme(), "http" | "https") {
            c.err(
                &format!("{field}.url"),
                format!("`{}` must be an http or https URL", svc.url),
                None,
            );
        }
        if let Some(tls) = &svc.tls {
            for (key, path) in [
                ("ca-file", &tls.ca_file),
                ("client-cert", &tls.client_cert),
                ("client-key", &tls.client_key),
            ] {
                if let Some(p) = path.as_ref().filter(|p| !dir.join(p).is_file()) {
                    c.err(
                        &format!("{field}.tls.{key}"),
                        format!("file `{}` not found", p.display()),
                        Some("paths are relative to the environment file"),
                    );
                }
            }
            if tls.client_cert.is_some() != tls.client_key.is_some() {
                c.err(
                    &format!("{field}.tls"),
                    "give both client-cert and client-key",
                    None,
                );
            }
        }
        if let Some(AuthSpec { oauth2_password: g }) = &svc.auth {
            if g.password_env.is_empty() {
                c.err(
                    &format!("{field}.auth.oauth2-password.password-env"),
                    "empty variable name",
                    None,
                );
            }
            if let Some(p) = g.ca_file.as_ref().filter(|p| !dir.join(p).is_file()) {
                c.err(
                    &format!("{field}.auth.oauth2-password.ca-file"),
                    format!("file `{}` not found", p.display()),
                    Some("paths are relative to the environment file"),
                );
            }
        }
    }
}

/// `stores`: one driver, what it needs to be found, the session cache's nodes.
fn check_store_locations(c: &mut Check, spec: &EnvironmentFile, stores: &StoresLocation) {
    let drivers = [
        stores.postgres.is_some(),
        stores.sqlite.is_some(),
        stores.command.is_some(),
        stores.standin.is_some(),
    ];
    if drivers.iter().filter(|d| **d).count() > 1 {
        c.err(
            "stores",
            "name one store driver: postgres, sqlite, command or standin",
            None,
        );
    }
    if let Some(pg) = &stores.postgres {
        if pg.host.is_none() && pg.rds_instance.is_none() {
            c.err(
                "stores.postgres",
                "needs `host` or `rds-instance`",
                Some("rds-instance: auto finds the deployment's database"),
            );
        }
        if pg.rds_instance.is_some() && spec.aws.is_none() {
            c.err(
                "stores.postgres.rds-instance",
                "finding an RDS instance needs the `aws` section",
                Some("give `host` instead"),
            );
        }
        if pg.password_env.is_none() && spec.aws.is_none() {
            c.err(
                "stores.postgres",
                "needs `password-env` (no AWS stack to read the password from)",
                None,
            );
        }
    }
    let Some(s) = &stores.sessions else { return };
    for (i, server) in s.memcached.iter().enumerate() {
        let field = format!("stores.sessions.memcached[{i}]");
        if server == "auto" {
            if spec.aws.is_none() || spec.deployment.is_none() {
                c.err(
                    &field,
                    "`auto` discovery needs the `aws` and `deployment` sections",
                    None,
                );
            }
        } else if server
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            c.err(
                &field,
                format!("`{server}` is not host:port"),
                Some("e.g. 127.0.0.1:11211"),
            );
        }
    }
}

fn check_environment(
    src: &Source,
    spec: EnvironmentFile,
    diags: &mut Vec<Diagnostic>,
) -> Option<Environment> {
    let before = diags.len();
    let mut c = Check { src, diags };
    if !is_slug(&spec.name) {
        c.err(
            "name",
            format!("`{}` is not a valid name", spec.name),
            Some("use letters, digits, - and _"),
        );
    }
    if let Some(r) = spec.results.as_deref().filter(|r| r.starts_with("s3://")) {
        match crate::trial::s3::S3Location::parse(r) {
            Some(l) if !l.prefix.chars().any(char::is_control) => {
                if spec.aws.is_none() {
                    c.err(
                        "results",
                        format!(
                            "`{r}` is on S3: the environment needs an `aws` section to reach it"
                        ),
                        None,
                    );
                }
            }
            _ => c.err(
                "results",
                format!("`{}` is not an S3 location", r.escape_debug()),
                Some("write it s3://bucket/prefix, or a folder"),
            ),
        }
    }
    if let Some(aws) = &spec.aws {
        check_aws(&mut c, aws);
    }
    check_services(&mut c, &spec.services);
    let release = match ReleaseProfile::parse(&spec.veraison.release) {
        Ok(r) => Some(r),
        Err(m) => {
            c.err(
                "veraison.release",
                m,
                Some("the services tag the deployment runs, e.g. v0.0.2602"),
            );
            None
        }
    };
    if let Some(stores) = &spec.stores {
        check_store_locations(&mut c, &spec, stores);
    }
    if let Some(g) = &spec.generators {
        check_generators(&mut c, g, spec.aws.is_some());
    }
    if diags.len() > before {
        return None;
    }
    Some(Environment {
        file: src.file.clone(),
        hash: sha256_hex(&src.text),
        spec,
        release: release?,
    })
}

fn check_generators(c: &mut Check, g: &GeneratorsSpec, has_aws: bool) {
    match (g.local, &g.aws) {
        (Some(_), Some(_)) | (None, None) => c.err(
            "generators",
            "give exactly one of `local` and `aws`",
            Some("`generators: { local: 4 }` or `generators: { aws: { asg: …, count: …, bucket: s3://… } }`"),
        ),
        (Some(n), None) if n == 0 || n as i64 > limits::GENERATORS => c.err(
            "generators.local",
            format!("{n} worker processes: between 1 and {}", limits::GENERATORS),
            None,
        ),
        (None, Some(a)) => {
            if a.count == 0 || a.count as i64 > limits::GENERATORS {
                c.err(
                    "generators.aws.count",
                    format!("{} instances: between 1 and {}", a.count, limits::GENERATORS),
                    None,
                );
            }
            match crate::trial::s3::S3Location::parse(&a.bucket) {
                None => c.err(
                    "generators.aws.bucket",
                    format!("`{}` is not an S3 location", a.bucket),
                    Some("write it s3://bucket or s3://bucket/prefix"),
                ),
                // The prefix goes into the instances' shell script (quoted) and S3 keys: a
                // control character there is a paste slip, never a folder name.
                Some(l) if l.prefix.chars().any(char::is_control) => c.err(
                    "generators.aws.bucket",
                    format!("the prefix of `{}` holds a control character", a.bucket.escape_debug()),
                    None,
                ),
                Some(_) => {}
            }
            if let Some(u) = &a.binary_url {
                let web = url::Url::parse(u)
                    .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.has_host());
                if !web {
                    c.err(
                        "generators.aws.binary-url",
                        format!("`{}` is not an http(s) URL the instances can fetch", u.escape_debug()),
                        Some("e.g. https://releases.example/trialrunner-x86_64, or leave it out to ship this binary through the bucket"),
                    );
                }
            }
            if !has_aws {
                c.err(
                    "generators.aws",
                    "a fleet on AWS needs the environment's `aws` (account, region)",
                    None,
                );
            }
        }
        _ => {}
    }
}
