//! The deployment's database settings a trial changes for its runs (`infra.database`): the RDS
//! instance class and PostgreSQL's `max_connections` (set through a parameter group the trial
//! names, or one it creates). What is written here is the grammar and its checks; the provider
//! reads the originals, applies these (waiting for RDS, bounded by `timeout`) and puts the
//! originals back.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::quantities::Span;

/// How long each of the database's waits may take when the trial gives no `timeout` (a class
/// change takes RDS several minutes; a reboot about one).
pub const DEFAULT_DATABASE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The values RDS for PostgreSQL allows for `max_connections`.
pub const MAX_CONNECTIONS: (i64, i64) = (6, 8_388_607);

/// The parameter whose value `max-connections` sets.
pub const MAX_CONNECTIONS_PARAMETER: &str = "max_connections";

/// `database: { instance-class: db.t3.medium, max-connections: 200, parameter-group: NAME,
/// timeout: 30m }`: the environment's RDS instance (`stores.postgres.rds-instance`) for the
/// trial's runs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DatabaseSpec {
    /// The RDS instance class for the trial (`db.t3.medium`): RDS moves the instance to it
    /// (minutes, with a short outage), and the restore moves it back.
    #[serde(default)]
    pub instance_class: Option<String>,
    /// PostgreSQL's `max_connections` for the trial: set in a parameter group (a static
    /// parameter: the instance is rebooted for it to take effect, about a minute without
    /// connections, and again on restore).
    #[serde(default)]
    pub max_connections: Option<i64>,
    /// An existing parameter group whose `max_connections` the trial sets (and puts back),
    /// the instance set to it if it uses another; default: a group the trial creates
    /// (`trialrunner-<trial>-<instance>`, a copy of the instance's own), deleted on restore.
    #[serde(default)]
    pub parameter_group: Option<String>,
    /// How long each wait for RDS may take (the change, the reboot; default 30m): longer, and
    /// the trial fails with exit 3, the restore putting the originals back.
    #[serde(default)]
    pub timeout: Option<Span>,
}

/// True when `c` reads as an RDS instance class (`db.t3.medium`, `db.r6g.2xlarge`).
fn is_instance_class(c: &str) -> bool {
    c.strip_prefix("db.")
        .is_some_and(super::deployment::is_instance_type)
}

/// True when `name` is a name RDS accepts for a parameter group: 1 to 255 letters, digits and
/// hyphens, a letter first, no hyphen last and no two in a row.
fn is_group_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// The name of the parameter group a trial creates for instance `instance`: lower case (RDS
/// keeps group names so), its characters those RDS allows, at most 255 of them.
pub fn created_group_name(trial: &str, instance: &str) -> String {
    let raw = format!("trialrunner-{trial}-{instance}").to_ascii_lowercase();
    let mut name = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && name.ends_with('-')) {
            name.push(c);
        }
    }
    name.truncate(255);
    name.trim_end_matches('-').to_string()
}

impl DatabaseSpec {
    /// True when it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.instance_class.is_none() && self.max_connections.is_none()
    }

    /// How long each wait may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
            .map(|t| t.0)
            .unwrap_or(DEFAULT_DATABASE_TIMEOUT)
    }

    /// The parameters it sets in the parameter group, by name, with their values.
    pub fn parameters(&self) -> Vec<(&'static str, String)> {
        self.max_connections
            .map(|n| (MAX_CONNECTIONS_PARAMETER, n.to_string()))
            .into_iter()
            .collect()
    }

    /// `over`'s fields over this one's (a variant's `infra.database` over the trial's).
    pub fn merged(&self, over: &DatabaseSpec) -> DatabaseSpec {
        DatabaseSpec {
            instance_class: over
                .instance_class
                .clone()
                .or_else(|| self.instance_class.clone()),
            max_connections: over.max_connections.or(self.max_connections),
            parameter_group: over
                .parameter_group
                .clone()
                .or_else(|| self.parameter_group.clone()),
            timeout: over.timeout.or(self.timeout),
        }
    }

    /// What is wrong with it: (field under `database`, message, hint); an empty field names
    /// `database` itself.
    pub fn problems(&self) -> Vec<(String, String, Option<&'static str>)> {
        let mut out = Vec::new();
        let mut bad = |f: &str, m: String, h: Option<&'static str>| out.push((f.to_string(), m, h));
        if self.is_empty() {
            bad(
                "",
                "sets neither `instance-class` nor `max-connections`".into(),
                Some("e.g. database: { instance-class: db.t3.medium, max-connections: 200 }"),
            );
        }
        if let Some(c) = self
            .instance_class
            .as_ref()
            .filter(|c| !is_instance_class(c))
        {
            bad(
                "instance-class",
                format!("`{c}` is not an RDS instance class"),
                Some("e.g. instance-class: db.t3.medium"),
            );
        }
        let (lo, hi) = MAX_CONNECTIONS;
        if let Some(n) = self.max_connections.filter(|n| *n < lo || *n > hi) {
            bad(
                "max-connections",
                format!("must be between {lo} and {hi} (RDS for PostgreSQL's range), got {n}"),
                None,
            );
        }
        if let Some(g) = &self.parameter_group {
            if self.max_connections.is_none() {
                bad(
                    "parameter-group",
                    "names the group whose max_connections the trial sets, and the trial sets none"
                        .into(),
                    Some("add max-connections, or drop parameter-group"),
                );
            }
            if g.starts_with("default.") {
                bad(
                    "parameter-group",
                    format!("`{g}` is one of RDS's default groups, which cannot be changed"),
                    Some("name a group of your own, or leave parameter-group out: the trial then creates one"),
                );
            } else if !is_group_name(g) {
                bad(
                    "parameter-group",
                    format!("`{g}` is not a parameter group name"),
                    Some("letters, digits and hyphens, a letter first"),
                );
            }
        }
        if let Some(t) = self
            .timeout
            .filter(|t| t.0.is_zero() || t.0 > Duration::from_secs(6 * 3600))
        {
            bad(
                "timeout",
                format!("must be above zero and at most 6h, got {t}"),
                None,
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> DatabaseSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn fields(s: &DatabaseSpec) -> Vec<String> {
        s.problems().into_iter().map(|(f, _, _)| f).collect()
    }

    #[test]
    fn a_class_and_max_connections_parse_and_pass() {
        let s = spec("{ instance-class: db.t3.medium, max-connections: 200, timeout: 20m }");
        assert_eq!(s.instance_class.as_deref(), Some("db.t3.medium"));
        assert_eq!(s.parameters(), [("max_connections", "200".to_string())]);
        assert_eq!(s.timeout(), Duration::from_secs(20 * 60));
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        assert_eq!(
            spec("{ max-connections: 50 }").timeout(),
            DEFAULT_DATABASE_TIMEOUT
        );
        assert!(serde_yaml::from_str::<DatabaseSpec>("{ max-conns: 5 }").is_err());
    }

    #[test]
    fn each_wrong_field_is_named() {
        assert_eq!(fields(&spec("{}")), [""], "nothing to change");
        assert_eq!(
            fields(&spec("{ instance-class: t3.medium }")),
            ["instance-class"],
            "an EC2 type is not an RDS class"
        );
        assert_eq!(fields(&spec("{ max-connections: 5 }")), ["max-connections"]);
        assert_eq!(
            fields(&spec(
                "{ instance-class: db.t3.micro, parameter-group: pg1 }"
            )),
            ["parameter-group"],
            "a named group with nothing to set in it"
        );
        assert_eq!(
            fields(&spec(
                "{ max-connections: 100, parameter-group: default.postgres15 }"
            )),
            ["parameter-group"],
            "RDS's default groups cannot be changed"
        );
        assert_eq!(
            fields(&spec("{ max-connections: 100, parameter-group: 'a--b' }")),
            ["parameter-group"]
        );
        assert_eq!(
            fields(&spec("{ max-connections: 100, timeout: 7h }")),
            ["timeout"]
        );
    }

    #[test]
    fn a_variant_overrides_field_by_field() {
        let base = spec("{ instance-class: db.t3.micro, max-connections: 100 }");
        let over = spec("{ max-connections: 400 }");
        let merged = base.merged(&over);
        assert_eq!(merged.instance_class.as_deref(), Some("db.t3.micro"));
        assert_eq!(merged.max_connections, Some(400));
    }

    #[test]
    fn the_created_group_is_named_from_the_trial_and_the_instance_as_rds_allows() {
        assert_eq!(
            created_group_name("Trial_4", "veraison-support-rdsinstance-x1"),
            "trialrunner-trial-4-veraison-support-rdsinstance-x1"
        );
        assert!(is_group_name(&created_group_name("a__b-", "c")));
        assert!(created_group_name("t", &"x".repeat(400)).len() <= 255);
    }
}
