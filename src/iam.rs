//! The least-privilege IAM policy of a campaign (`trialrunner iam-policy`): exactly the AWS
//! calls the wiring in [`crate::setup`] gives the trial's providers, from the lists each
//! provider keeps of its own calls ([`crate::aws::scaler::READS`] and the like; a test reads
//! the source so that a call added to a provider and left out of its list fails the suite).
//!
//! Read-only calls are granted on `*` (none of them has resource-level permissions worth the
//! name); the Auto Scaling writes only on the ARNs of the groups the trial changes; Run Command
//! only on the document it sends and the instances of the fleet's own group (by tag); S3 only
//! under the fleet's prefix. `sts:GetCallerIdentity` (the account guard) needs no permission.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::trial::model::{MetricName, ServiceRole};
use crate::trial::s3::S3Location;
use crate::trial::Trial;

/// One statement: allowed actions on resources, under an optional condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// What the statement is for (the policy's `Sid`).
    pub sid: &'static str,
    /// IAM actions (`service:Action`), sorted, no duplicates.
    pub actions: BTreeSet<&'static str>,
    /// Resource ARNs (or `*`).
    pub resources: Vec<String>,
    /// The statement's `Condition`, when it has one.
    pub condition: Option<Value>,
}

/// A policy: what a campaign of one trial in one environment is allowed to do.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policy {
    /// Its statements (only `Allow`).
    pub statements: Vec<Statement>,
}

impl Policy {
    fn allow(
        &mut self,
        sid: &'static str,
        actions: &[&[&'static str]],
        resources: Vec<String>,
        condition: Option<Value>,
    ) {
        let actions: BTreeSet<&'static str> =
            actions.iter().flat_map(|a| a.iter()).copied().collect();
        if !actions.is_empty() && !resources.is_empty() {
            self.statements.push(Statement {
                sid,
                actions,
                resources,
                condition,
            });
        }
    }

    /// Every action any statement allows.
    pub fn actions(&self) -> BTreeSet<&'static str> {
        self.statements
            .iter()
            .flat_map(|s| s.actions.iter().copied())
            .collect()
    }

    /// The policy document (IAM's JSON grammar, version 2012-10-17).
    pub fn document(&self) -> Value {
        let statements: Vec<Value> = self
            .statements
            .iter()
            .map(|s| {
                let mut v = json!({
                    "Sid": s.sid,
                    "Effect": "Allow",
                    "Action": s.actions.iter().collect::<Vec<_>>(),
                    "Resource": s.resources,
                });
                if let Some(c) = &s.condition {
                    v["Condition"] = c.clone();
                }
                v
            })
            .collect();
        json!({ "Version": "2012-10-17", "Statement": statements })
    }
}

/// The ARN partition of a region.
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The policy a campaign of `trial` (bound to its environment) needs; empty when it calls no AWS.
pub fn policy_for(trial: &Trial) -> Result<Policy> {
    use crate::aws::{cloudwatch, database, deployment, launch, lock, refresh, scaler, stores};
    use crate::fleet::aws as fleet;

    let mut policy = Policy::default();
    let env = &trial.env;
    let Some(aws) = env
        .spec
        .aws
        .as_ref()
        .filter(|_| crate::setup::needs_aws(trial))
    else {
        return Ok(policy);
    };
    let part = partition(&aws.region);
    let (region, account) = (&aws.region, &aws.account);
    // A trial with variants runs each of them: what any of them changes.
    let runs: Vec<Trial> = if trial.variants.is_empty() {
        vec![trial.clone()]
    } else {
        trial.variants.iter().map(|v| trial.under(v)).collect()
    };
    let settings = runs.iter().any(|t| !t.settings.is_empty());
    let launches = runs
        .iter()
        .any(|t| t.settings.iter().any(|(_, s)| s.changes_launch()));
    let mut roles: Vec<_> = runs
        .iter()
        .flat_map(|t| {
            t.held_services()
                .into_iter()
                .chain(t.settings.iter().map(|(r, _)| *r))
        })
        .collect();
    roles.sort_by_key(|r| r.to_string());
    roles.dedup();
    // Groups a run changes; the others are only held (locked as they are).
    let altered: Vec<ServiceRole> = runs
        .iter()
        .flat_map(|t| {
            t.capacities
                .iter()
                .map(|(r, _)| *r)
                .chain(t.settings.iter().map(|(r, _)| *r))
                .collect::<Vec<_>>()
        })
        .collect();
    let changed: Vec<_> = crate::aws::scaler::services_of(env)
        .into_iter()
        .filter(|s| roles.contains(&s.role))
        .collect();
    let group_arn = |s: &crate::aws::scaler::ServiceInfra| {
        format!(
            "arn:{part}:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/{}",
            s.asg
        )
    };
    let fleet = env.spec.generators.as_ref().and_then(|g| match g.local {
        Some(_) => None,
        None => g.aws.as_ref(),
    });
    // The database's class and parameters, when any run changes them.
    let databases: Vec<&crate::trial::database::DatabaseSpec> = runs
        .iter()
        .filter_map(|t| t.spec.infra.database.as_ref())
        .collect();
    let rds_instance = env.rds_instance().filter(|_| !databases.is_empty());
    let postgres = env.spec.stores.as_ref().and_then(|s| s.postgres.as_ref());
    let rds_lookup = postgres.is_some_and(|p| p.host.is_none()) || rds_instance.is_some();
    let stack_password = postgres.is_some_and(|p| p.password_env.is_none());
    let metrics = !trial.spec.metrics.is_empty();
    let error_logs = trial.spec.metrics.contains(&MetricName::ErrorLogs);
    // The metrics find the deployment's cache cluster (its dimension) as the sessions do.
    let cache_via_aws = env.spec.stores.as_ref().is_some_and(|s| {
        s.sessions
            .as_ref()
            .is_some_and(|m| m.memcached.iter().any(|x| x == "auto"))
    }) || (metrics && env.spec.deployment.is_some());

    let none: &[&str] = &[];
    policy.allow(
        "ReadOnly",
        &[
            if changed.is_empty() {
                none
            } else {
                scaler::READS
            },
            if settings { deployment::READS } else { none },
            if launches { launch::READS } else { none },
            if launches { refresh::READS } else { none },
            if metrics {
                cloudwatch::SERIES_READS
            } else {
                none
            },
            if error_logs {
                cloudwatch::LOG_READS
            } else {
                none
            },
            if rds_lookup { stores::RDS_READS } else { none },
            if rds_instance.is_some() {
                database::READS
            } else {
                none
            },
            if cache_via_aws {
                stores::ELASTICACHE_READS
            } else {
                none
            },
            if fleet.is_some() { fleet::READS } else { none },
            if fleet.is_some() {
                fleet::ssm::READS_AND_CANCEL
            } else {
                none
            },
        ],
        vec!["*".into()],
        None,
    );
    // The client's figures, only into the trialrunner namespace.
    if !trial.spec.publish.is_empty() {
        policy.allow(
            "PublishTheClientsFiguresOnly",
            &[crate::aws::publish::WRITES],
            vec!["*".into()],
            Some(json!({"StringEquals": {"cloudwatch:namespace": crate::aws::publish::NAMESPACE}})),
        );
    }
    policy.allow(
        "ChangeOnlyTheTrialsGroups",
        &[
            scaler::GROUP_WRITES,
            lock::GROUP_WRITES,
            if settings {
                deployment::GROUP_WRITES
            } else {
                none
            },
            if launches { launch::GROUP_WRITES } else { none },
            if launches {
                refresh::GROUP_WRITES
            } else {
                none
            },
        ],
        changed
            .iter()
            .filter(|s| altered.contains(&s.role))
            .map(group_arn)
            .collect(),
        None,
    );
    let held: Vec<String> = changed
        .iter()
        .filter(|s| !altered.contains(&s.role))
        .map(group_arn)
        .collect();
    policy.allow("LockTheHeldGroupsOnly", &[lock::GROUP_WRITES], held, None);
    if settings {
        policy.allow(
            "HealthChecksOfTheirTargetGroupsOnly",
            &[deployment::TARGET_GROUP_WRITES],
            changed
                .iter()
                .filter_map(|s| s.target_group.as_ref())
                .map(|tg| {
                    format!("arn:{part}:elasticloadbalancing:{region}:{account}:targetgroup/{tg}/*")
                })
                .collect(),
            None,
        );
    }
    if let Some(instance) = &rds_instance {
        let rds = |what: &str| format!("arn:{part}:rds:{region}:{account}:{what}");
        let db = if instance == "auto" {
            rds(&format!(
                "db:{}-support*",
                env.spec.deployment.as_deref().unwrap_or_default()
            ))
        } else {
            rds(&format!("db:{instance}"))
        };
        // ModifyDBInstance also names the parameter group the instance is set to: the trial's,
        // or on restore its original one, which the environment does not name.
        policy.allow(
            "ChangeOnlyTheTrialsDatabase",
            &[database::INSTANCE_WRITES],
            vec![db, rds("pg:*")],
            None,
        );
        let mut groups = vec![rds("pg:trialrunner-*")];
        for named in databases
            .iter()
            .filter_map(|d| d.parameter_group.as_deref())
        {
            let arn = rds(&format!("pg:{named}"));
            if !groups.contains(&arn) {
                groups.push(arn);
            }
        }
        policy.allow(
            "ParameterGroupsOfTheTrialOnly",
            &[database::GROUP_WRITES],
            groups,
            None,
        );
        // The trial's group is a copy of the instance's own, which the environment does not
        // name: copying reads it.
        policy.allow(
            "CopyTheInstancesParameterGroup",
            &[&["rds:CopyDBParameterGroup"]],
            vec![rds("pg:*")],
            None,
        );
    }
    // Whoever sets a group's launch template must also be allowed to launch with it (run
    // instances, pass its instance role to EC2): AWS checks both on `UpdateAutoScalingGroup`.
    if launches {
        policy.allow(
            "NewVersionsOfLaunchTemplates",
            &[launch::TEMPLATE_WRITES, &["ec2:RunInstances"]],
            vec![
                format!("arn:{part}:ec2:{region}:{account}:launch-template/*"),
                format!("arn:{part}:ec2:{region}:{account}:*"),
                format!("arn:{part}:ec2:{region}::image/*"),
            ],
            None,
        );
        policy.allow(
            "PassTheTemplatesRoleToEc2Only",
            &[&["iam:PassRole"]],
            vec!["*".into()],
            Some(json!({"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}})),
        );
    }
    if stack_password || cache_via_aws {
        let deployment = env.spec.deployment.clone().unwrap_or_default();
        policy.allow(
            "ReadOnlyTheSupportStack",
            &[stores::STACK_READS],
            vec![format!(
                "arn:{part}:cloudformation:{region}:{account}:stack/{deployment}-support/*"
            )],
            None,
        );
    }
    if let Some(f) = fleet {
        let location = S3Location::parse(&f.bucket).ok_or_else(|| {
            Error::Usage(format!(
                "{}: generators.aws.bucket: `{}` is not an S3 location",
                env.file.display(),
                f.bucket
            ))
        })?;
        let fleet_region = f.region.as_deref().unwrap_or(region);
        policy.allow(
            "RunCommandDocument",
            &[&["ssm:SendCommand"]],
            vec![format!(
                "arn:{part}:ssm:{fleet_region}::document/{}",
                fleet::ssm::DOCUMENT
            )],
            None,
        );
        policy.allow(
            "RunCommandOnTheFleetOnly",
            &[&["ssm:SendCommand"]],
            vec![format!(
                "arn:{part}:ec2:{fleet_region}:{account}:instance/*"
            )],
            Some(json!({
                "StringEquals": { "ssm:resourceTag/aws:autoscaling:groupName": f.asg }
            })),
        );
        let under = location.key("*");
        policy.allow(
            "FleetObjectsUnderItsPrefix",
            &[fleet::bucket::OBJECT_ACTIONS],
            vec![format!("arn:{part}:s3:::{}/{under}", location.bucket)],
            None,
        );
        policy.allow(
            "ListOnlyTheFleetsPrefix",
            &[&["s3:ListBucket"]],
            vec![format!("arn:{part}:s3:::{}", location.bucket)],
            Some(json!({ "StringLike": { "s3:prefix": [under] } })),
        );
    }
    Ok(policy)
}

/// Adds what results and history on S3 need (`run --out s3://…`, `--history s3://…`): objects
/// put and read, and listing, only under `results`' prefix. Needs the environment's `aws`
/// section (the S3 client is the environment's).
pub fn grant_results(policy: &mut Policy, trial: &Trial, results: &S3Location) -> Result<()> {
    let aws = trial.env.spec.aws.as_ref().ok_or_else(|| {
        Error::Usage(format!(
            "{}: results on S3 need the environment's `aws` section (account, region)",
            trial.env.file.display()
        ))
    })?;
    let part = partition(&aws.region);
    let under = results.key("*");
    policy.allow(
        "ResultsAndHistoryUnderTheirPrefix",
        &[crate::aws::bucket::OBJECT_ACTIONS],
        vec![format!("arn:{part}:s3:::{}/{under}", results.bucket)],
        None,
    );
    policy.allow(
        "ListOnlyTheResultsPrefix",
        &[&["s3:ListBucket"]],
        vec![format!("arn:{part}:s3:::{}", results.bucket)],
        Some(json!({ "StringLike": { "s3:prefix": [under] } })),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use super::*;

    /// The operation names of every AWS call in a source text: `.call("…"`, `.call_until("…"`,
    /// `.call_not_repeated("…"` — any method whose name starts with `call`, its first argument
    /// a string literal.
    fn operations(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find(".call") {
            rest = &rest[i + ".call".len()..];
            let name_end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let Some(args) = rest[name_end..].strip_prefix('(') else {
                continue;
            };
            if let Some(lit) = args.trim_start().strip_prefix('"') {
                if let Some(end) = lit.find('"') {
                    found.push(lit[..end].to_string());
                }
            }
        }
        found
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// Every AWS call in the source is in its file's list (so `iam-policy` grants it), and
    /// every listed action is one the file calls (no permission granted for nothing).
    #[test]
    fn every_aws_call_in_the_source_is_in_its_providers_list() {
        use crate::aws::{cloudwatch, database, deployment, launch, lock, refresh, scaler, stores};
        use crate::fleet::aws as fleet;
        let lists: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
            (
                "src/aws/database.rs",
                [
                    database::READS,
                    database::INSTANCE_WRITES,
                    database::GROUP_WRITES,
                ]
                .concat(),
            ),
            (
                "src/aws/scaler.rs",
                [scaler::READS, scaler::GROUP_WRITES].concat(),
            ),
            ("src/aws/lock.rs", lock::GROUP_WRITES.to_vec()),
            ("src/aws/publish.rs", crate::aws::publish::WRITES.to_vec()),
            ("src/aws/console.rs", crate::aws::console::WRITES.to_vec()),
            (
                "src/aws/deployment.rs",
                [
                    deployment::READS,
                    deployment::GROUP_WRITES,
                    deployment::TARGET_GROUP_WRITES,
                ]
                .concat(),
            ),
            (
                "src/aws/launch.rs",
                [launch::READS, launch::GROUP_WRITES, launch::TEMPLATE_WRITES].concat(),
            ),
            (
                "src/aws/refresh.rs",
                [refresh::READS, refresh::GROUP_WRITES].concat(),
            ),
            (
                "src/aws/cloudwatch.rs",
                [cloudwatch::SERIES_READS, cloudwatch::LOG_READS].concat(),
            ),
            (
                "src/aws/stores.rs",
                [
                    stores::RDS_READS,
                    stores::STACK_READS,
                    stores::ELASTICACHE_READS,
                ]
                .concat(),
            ),
            ("src/fleet/aws/mod.rs", fleet::READS.to_vec()),
            (
                "src/fleet/aws/ssm.rs",
                [fleet::ssm::READS_AND_CANCEL, &["ssm:SendCommand"]].concat(),
            ),
            (
                "src/aws/bucket.rs",
                [crate::aws::bucket::OBJECT_ACTIONS, &["s3:ListBucket"]].concat(),
            ),
            // The account guard: GetCallerIdentity needs no permission.
            ("src/aws/mod.rs", vec!["sts:GetCallerIdentity"]),
        ]);
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        rust_files(&root.join("src"), &mut files);
        let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in files {
            let rel = f
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&f).unwrap();
            // A file's own tests call fakes: only the code above them counts.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for op in operations(code) {
                if !op.contains(':') || rel == "src/iam.rs" {
                    continue;
                }
                let permission = crate::aws::permission_of(&op).to_string();
                let list = lists.get(rel.as_str()).unwrap_or_else(|| {
                    panic!("{rel} calls AWS ({op}) but keeps no list of its calls for iam-policy")
                });
                assert!(
                    list.contains(&permission.as_str()),
                    "{rel} calls {op} (IAM {permission}), missing from its list {list:?}"
                );
                seen.entry(rel.clone()).or_default().insert(permission);
            }
        }
        for (file, list) in &lists {
            for action in list {
                assert!(
                    seen.get(*file).is_some_and(|s| s.contains(*action)),
                    "{file} lists {action} but never calls it"
                );
            }
        }
    }

    const ENV: &str = "name: e\naws: { region: eu-west-1, account: \"111122223333\" }\ndeployment: vd\nservices:\n  provisioning: { url: \"http://127.0.0.1:9443\" }\n  verification: { url: \"http://127.0.0.1:8443\" }\nveraison: { release: v0.0.2602 }\n";
    const RUNS: &str = "runs: { users: 2, duration: 2s, tasks: [well-known] }\n";

    /// The policy of `trial` (its text, `environment: env.yaml` added) in environment `env`.
    fn policy(env: &str, trial: &str) -> Policy {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("env.yaml"), env).unwrap();
        let file = dir.path().join("t.yaml");
        std::fs::write(&file, format!("name: t\nenvironment: env.yaml\n{trial}")).unwrap();
        let t = crate::trial::load_trial(&file, None).unwrap();
        policy_for(&t).unwrap()
    }

    fn statement<'a>(p: &'a Policy, sid: &str) -> Option<&'a Statement> {
        p.statements.iter().find(|s| s.sid == sid)
    }

    /// A trial that publishes its figures may put metrics into the trialrunner namespace only;
    /// one that does not, none.
    #[test]
    fn publishing_is_granted_into_the_trialrunner_namespace_only() {
        let p = policy(ENV, &format!("publish: [cloudwatch]\n{RUNS}"));
        let s = statement(&p, "PublishTheClientsFiguresOnly").unwrap();
        assert!(s.actions.contains("cloudwatch:PutMetricData"));
        assert_eq!(
            s.condition.as_ref().unwrap()["StringEquals"]["cloudwatch:namespace"],
            "trialrunner"
        );
        let quiet = policy(ENV, &format!("metrics: [asg-cpu]\n{RUNS}"));
        assert!(statement(&quiet, "PublishTheClientsFiguresOnly").is_none());
    }

    #[test]
    fn an_instance_type_grants_template_versions_the_refresh_and_launching_with_them() {
        let p = policy(
            ENV,
            &format!("infra:\n  verification: {{ pin: 2, instance-type: c6i.xlarge }}\n{RUNS}"),
        );
        let writes = statement(&p, "ChangeOnlyTheTrialsGroups").unwrap();
        for a in [
            "autoscaling:StartInstanceRefresh",
            "autoscaling:CancelInstanceRefresh",
        ] {
            assert!(writes.actions.contains(a), "{a}");
        }
        let lt = statement(&p, "NewVersionsOfLaunchTemplates").unwrap();
        assert!(lt.actions.contains("ec2:CreateLaunchTemplateVersion"));
        assert!(lt.actions.contains("ec2:DeleteLaunchTemplateVersions"));
        assert!(p.actions().contains("ec2:DescribeLaunchTemplateVersions"));
        let pass = statement(&p, "PassTheTemplatesRoleToEc2Only").unwrap();
        assert_eq!(
            pass.condition.as_ref().unwrap()["StringEquals"]["iam:PassedToService"],
            "ec2.amazonaws.com"
        );
        let plain = policy(
            ENV,
            &format!("infra:\n  verification: {{ pin: 2 }}\n{RUNS}"),
        );
        assert!(statement(&plain, "NewVersionsOfLaunchTemplates").is_none());
        assert!(!plain.actions().contains("autoscaling:StartInstanceRefresh"));
    }

    #[test]
    fn a_database_change_grants_its_instance_and_the_trials_parameter_groups_only() {
        let env = format!("{ENV}stores:\n  postgres: {{ rds-instance: vd-db, database: v, user: v, password-env: PW }}\n");
        let p = policy(
            &env,
            &format!("infra:\n  verification: {{ pin: 2 }}\n  database: {{ instance-class: db.t3.medium, max-connections: 300 }}\n{RUNS}"),
        );
        let db = statement(&p, "ChangeOnlyTheTrialsDatabase").unwrap();
        assert_eq!(
            db.resources,
            [
                "arn:aws:rds:eu-west-1:111122223333:db:vd-db",
                "arn:aws:rds:eu-west-1:111122223333:pg:*"
            ]
        );
        assert!(db.actions.contains("rds:ModifyDBInstance"));
        assert!(db.actions.contains("rds:RebootDBInstance"));
        let groups = statement(&p, "ParameterGroupsOfTheTrialOnly").unwrap();
        assert_eq!(
            groups.resources,
            ["arn:aws:rds:eu-west-1:111122223333:pg:trialrunner-*"]
        );
        assert!(groups.actions.contains("rds:DeleteDBParameterGroup"));
        let all = p.actions();
        for read in [
            "rds:DescribeDBInstances",
            "rds:DescribeDBParameters",
            "rds:DescribeDBParameterGroups",
        ] {
            assert!(all.contains(read), "{read}");
        }
        let plain = policy(
            &env,
            &format!("infra:\n  verification: {{ pin: 2 }}\n{RUNS}"),
        );
        assert!(statement(&plain, "ChangeOnlyTheTrialsDatabase").is_none());
        assert!(!plain.actions().contains("rds:ModifyDBInstance"));
        // The database alone: the deployment's groups are held (locked), never changed.
        let only = policy(
            &env,
            &format!("infra:\n  database: {{ max-connections: 300 }}\n{RUNS}"),
        );
        assert!(statement(&only, "ChangeOnlyTheTrialsDatabase").is_some());
        assert!(statement(&only, "ChangeOnlyTheTrialsGroups").is_none());
        let held = statement(&only, "LockTheHeldGroupsOnly").unwrap();
        assert_eq!(
            held.actions.iter().copied().collect::<Vec<_>>(),
            ["autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags"]
        );
        assert_eq!(held.resources.len(), 2, "{:?}", held.resources);
    }

    #[test]
    fn writes_only_on_the_groups_the_trial_changes_and_nothing_it_does_not_call() {
        let p = policy(
            ENV,
            &format!("infra:\n  provisioning: {{ pin: 3 }}\n{RUNS}"),
        );
        let writes = statement(&p, "ChangeOnlyTheTrialsGroups").unwrap();
        assert_eq!(
            writes.resources,
            ["arn:aws:autoscaling:eu-west-1:111122223333:autoScalingGroup:*:autoScalingGroupName/vd-prov-asg"],
            "the verification group is left alone, so it is not writable"
        );
        assert!(writes
            .actions
            .contains("autoscaling:UpdateAutoScalingGroup"));
        assert!(writes.actions.contains("autoscaling:CreateOrUpdateTags"));
        let all = p.actions();
        for absent in [
            "cloudwatch:GetMetricData",
            "rds:DescribeDBInstances",
            "ssm:SendCommand",
            "s3:PutObject",
            "cloudformation:DescribeStacks",
        ] {
            assert!(
                !all.contains(absent),
                "{absent} is not called by this trial"
            );
        }
        assert!(p.statements.iter().all(|s| s.resources != ["*"]
            || s.actions
                .iter()
                .all(|a| !crate::aws::scaler::GROUP_WRITES.contains(a))));
    }

    #[test]
    fn metrics_add_reads_only_and_a_trial_without_aws_needs_nothing() {
        let no_deployment = ENV.replace("deployment: vd\n", "");
        let p = policy(&no_deployment, &format!("metrics: [asg-cpu]\n{RUNS}"));
        assert_eq!(p.statements.len(), 1, "{p:?}");
        assert_eq!(p.statements[0].resources, ["*"]);
        assert_eq!(
            p.actions(),
            crate::aws::cloudwatch::SERIES_READS
                .iter()
                .copied()
                .collect()
        );
        let p = policy(ENV, &format!("metrics: [asg-cpu, error-logs]\n{RUNS}"));
        let all = p.actions();
        assert!(
            all.contains("logs:FilterLogEvents")
                && all.contains("elasticache:DescribeCacheClusters")
        );
        assert!(
            statement(&p, "ReadOnlyTheSupportStack").is_some(),
            "the cache is found through the stack"
        );
        let local = ENV.replace(
            "aws: { region: eu-west-1, account: \"111122223333\" }\n",
            "",
        );
        assert!(policy(&local, RUNS).statements.is_empty());
        assert!(
            policy(ENV, RUNS).statements.is_empty(),
            "no change, no metrics: no AWS call"
        );
    }

    #[test]
    fn results_on_s3_are_granted_under_their_prefix_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("env.yaml"), ENV).unwrap();
        let file = dir.path().join("t.yaml");
        std::fs::write(&file, format!("name: t\nenvironment: env.yaml\n{RUNS}")).unwrap();
        let t = crate::trial::load_trial(&file, None).unwrap();
        let mut p = policy_for(&t).unwrap();
        let results = S3Location::parse("s3://res-bucket/nightly").unwrap();
        grant_results(&mut p, &t, &results).unwrap();
        let objects = statement(&p, "ResultsAndHistoryUnderTheirPrefix").unwrap();
        assert_eq!(objects.resources, ["arn:aws:s3:::res-bucket/nightly/*"]);
        assert_eq!(
            objects.actions.iter().copied().collect::<Vec<_>>(),
            ["s3:GetObject", "s3:PutObject"]
        );
        let list = statement(&p, "ListOnlyTheResultsPrefix").unwrap();
        assert_eq!(list.resources, ["arn:aws:s3:::res-bucket"]);
        assert_eq!(
            list.condition.as_ref().unwrap()["StringLike"]["s3:prefix"][0],
            "nightly/*"
        );
    }

    #[test]
    fn a_fleet_sends_commands_to_its_own_group_and_touches_only_its_prefix() {
        let env = format!("{ENV}generators:\n  aws: {{ asg: gen-asg, count: 2, bucket: \"s3://my-bucket/p/q\" }}\n");
        let p = policy(
            &env,
            &RUNS.replace("well-known]", "well-known], fleet: true"),
        );
        let writes = statement(&p, "ChangeOnlyTheTrialsGroups").unwrap();
        assert!(
            writes.resources[0].ends_with("autoScalingGroupName/gen-asg"),
            "{writes:?}"
        );
        let on_fleet = statement(&p, "RunCommandOnTheFleetOnly").unwrap();
        assert_eq!(
            on_fleet.condition.as_ref().unwrap()["StringEquals"]
                ["ssm:resourceTag/aws:autoscaling:groupName"],
            "gen-asg"
        );
        assert_eq!(
            statement(&p, "RunCommandDocument").unwrap().resources,
            ["arn:aws:ssm:eu-west-1::document/AWS-RunShellScript"]
        );
        assert_eq!(
            statement(&p, "FleetObjectsUnderItsPrefix")
                .unwrap()
                .resources,
            ["arn:aws:s3:::my-bucket/p/q/*"]
        );
        let list = statement(&p, "ListOnlyTheFleetsPrefix").unwrap();
        assert_eq!(list.resources, ["arn:aws:s3:::my-bucket"]);
        assert_eq!(
            list.condition.as_ref().unwrap()["StringLike"]["s3:prefix"][0],
            "p/q/*"
        );
    }

    #[test]
    fn the_support_stack_is_read_only_when_a_secret_or_the_cache_comes_from_it() {
        let stores = "stores:\n  postgres: { rds-instance: auto, database: v, user: v }\n";
        let p = policy(&format!("{ENV}{stores}"), RUNS);
        assert_eq!(
            statement(&p, "ReadOnlyTheSupportStack").unwrap().resources,
            ["arn:aws:cloudformation:eu-west-1:111122223333:stack/vd-support/*"]
        );
        assert!(p.actions().contains("rds:DescribeDBInstances"));
        let with_password = stores.replace("user: v }", "user: v, password-env: PW }");
        let p = policy(&format!("{ENV}{with_password}"), RUNS);
        assert!(statement(&p, "ReadOnlyTheSupportStack").is_none(), "{p:?}");
        assert!(p.actions().contains("rds:DescribeDBInstances"));
    }

    #[test]
    fn s3_operations_map_to_their_permissions() {
        use crate::aws::permission_of;
        assert_eq!(permission_of("s3:ListObjectsV2"), "s3:ListBucket");
        assert_eq!(permission_of("s3:HeadObject"), "s3:GetObject");
        assert_eq!(
            permission_of("s3:PutObject (a large object)"),
            "s3:PutObject"
        );
        assert_eq!(
            permission_of("autoscaling:UpdateAutoScalingGroup"),
            "autoscaling:UpdateAutoScalingGroup"
        );
    }

    #[test]
    fn partitions_follow_the_region() {
        assert_eq!(partition("eu-west-1"), "aws");
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
    }
}
