//! Finding the deployment's stores in AWS: the RDS instance (`rds-instance: auto` picks
//! `D-support-rdsinstance-…`), its password (an environment variable, else the `RdsPassword`
//! parameter of the `D-support` CloudFormation stack, which Veraison's template leaves
//! readable), and the ElastiCache memcached node endpoints.

use async_trait::async_trait;

use super::AwsContext;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::stores::memcached::ServerList;
use crate::stores::postgres::{DbLocation, DbLocator};

/// What finding the RDS instance reads.
pub const RDS_READS: &[&str] = &["rds:DescribeDBInstances"];

/// What reading the `D-support` stack (the RDS password, the cache's id) takes; `iam-policy`
/// grants it on that stack only (its parameters hold the database password).
pub const STACK_READS: &[&str] = &["cloudformation:DescribeStacks"];

/// What finding the ElastiCache nodes reads besides the stack.
pub const ELASTICACHE_READS: &[&str] = &[
    "elasticache:DescribeCacheClusters",
    "elasticache:ListTagsForResource",
];

/// The deployment's RDS instance.
pub struct RdsLocator {
    /// AWS access.
    pub ctx: AwsContext,
    /// Deployment name `D`.
    pub deployment: String,
    /// An identifier, or `auto`.
    pub instance: String,
    /// A port to use instead of the instance's.
    pub port: Option<u16>,
    /// The password, when the environment names its variable.
    pub password: Option<Secret>,
}

impl RdsLocator {
    async fn stack_password(&self) -> Result<Secret> {
        let cfn = aws_sdk_cloudformation::Client::new(&self.ctx.config);
        let stack = format!("{}-support", self.deployment);
        let out = self
            .ctx
            .call("cloudformation:DescribeStacks", || {
                cfn.describe_stacks().stack_name(&stack).send()
            })
            .await?;
        out.stacks()
            .first()
            .and_then(|s| {
                s.parameters()
                    .iter()
                    .find(|p| p.parameter_key() == Some("RdsPassword"))
            })
            .and_then(|p| p.parameter_value())
            .map(Secret::new)
            .ok_or_else(|| {
                Error::Infra(format!(
                    "stack {stack} has no RdsPassword parameter: give stores.postgres.password-env"
                ))
            })
    }
}

/// The deployment's RDS instance: `instance` by its identifier, or (`auto`) the one whose
/// identifier starts with `D-support` (Veraison's template names it `D-support-rdsinstance-…`).
/// One that is not there is [`Error::Missing`].
pub(super) async fn find_rds_instance(
    ctx: &AwsContext,
    client: &aws_sdk_rds::Client,
    deployment: &str,
    instance: &str,
    deadline: tokio::time::Instant,
) -> Result<aws_sdk_rds::types::DbInstance> {
    let mut req = client.describe_db_instances();
    if instance != "auto" {
        req = req.db_instance_identifier(instance);
    }
    let found = ctx
        .call_until("rds:DescribeDBInstances", deadline, || req.clone().send())
        .await;
    let out = match found {
        Err(Error::Infra(why)) if why.contains("DBInstanceNotFound") => {
            return Err(Error::Missing(format!(
                "no RDS instance {instance} in {}",
                ctx.endpoint
            )))
        }
        other => other?,
    };
    let prefix = format!("{deployment}-support");
    out.db_instances()
        .iter()
        .find(|i| {
            instance != "auto"
                || i.db_instance_identifier()
                    .is_some_and(|id| id.starts_with(&prefix))
        })
        .cloned()
        .ok_or_else(|| {
            Error::Missing(format!(
                "no RDS instance {} found in {}",
                if instance == "auto" {
                    format!("{prefix}-…")
                } else {
                    instance.to_string()
                },
                ctx.endpoint
            ))
        })
}

#[async_trait]
impl DbLocator for RdsLocator {
    async fn locate(&self) -> Result<DbLocation> {
        let rds = aws_sdk_rds::Client::new(&self.ctx.config);
        let deadline = tokio::time::Instant::now() + self.ctx.timeouts.operation;
        let db = find_rds_instance(&self.ctx, &rds, &self.deployment, &self.instance, deadline)
            .await
            .map_err(|e| match e {
                Error::Missing(why) => Error::Infra(why),
                e => e,
            })?;
        let endpoint = db.endpoint().ok_or_else(|| {
            Error::Infra(format!(
                "RDS instance {} has no endpoint yet",
                db.db_instance_identifier().unwrap_or("?")
            ))
        })?;
        let host = endpoint.address().unwrap_or_default().to_string();
        let port = self
            .port
            .or(endpoint.port().map(|p| p as u16))
            .unwrap_or(5432);
        let password = match &self.password {
            Some(p) => p.clone(),
            None => self.stack_password().await?,
        };
        Ok(DbLocation {
            host,
            port,
            password,
        })
    }
}

/// The memcached nodes of the deployment's ElastiCache cluster, found the way the deployment
/// records it: the `ElastiCacheClusterId` output of its `D-support` stack, else the cluster
/// tagged `veraison-deployment=D`. Never by a name prefix (another deployment's cluster may
/// share it).
pub struct ElastiCacheNodes {
    /// AWS access.
    pub ctx: AwsContext,
    /// Deployment name `D`.
    pub deployment: String,
}

impl ElastiCacheNodes {
    /// The cluster id from the `D-support` stack's outputs, if the stack is there.
    async fn cluster_in_stack_outputs(&self) -> Result<Option<String>> {
        let cfn = aws_sdk_cloudformation::Client::new(&self.ctx.config);
        let stack = format!("{}-support", self.deployment);
        let found = self
            .ctx
            .call("cloudformation:DescribeStacks", || {
                cfn.describe_stacks().stack_name(&stack).send()
            })
            .await;
        match found {
            Ok(out) => Ok(out
                .stacks()
                .iter()
                .flat_map(|s| s.outputs())
                .find(|o| o.output_key() == Some("ElastiCacheClusterId"))
                .and_then(|o| o.output_value())
                .map(str::to_string)),
            Err(err) => {
                // No such stack: look for the tag instead.
                if err.to_string().contains("does not exist")
                    || err.to_string().contains("ValidationError")
                {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// The id of the cluster tagged `veraison-deployment=D`.
    async fn cluster_by_tag(&self, ec: &aws_sdk_elasticache::Client) -> Result<Option<String>> {
        let out = self
            .ctx
            .call("elasticache:DescribeCacheClusters", || {
                ec.describe_cache_clusters().send()
            })
            .await?;
        for c in out.cache_clusters() {
            let Some(arn) = c.arn() else { continue };
            let tags = self
                .ctx
                .call("elasticache:ListTagsForResource", || {
                    ec.list_tags_for_resource().resource_name(arn).send()
                })
                .await?;
            let ours = tags.tag_list().iter().any(|t| {
                t.key() == Some("veraison-deployment")
                    && t.value() == Some(self.deployment.as_str())
            });
            if ours {
                return Ok(c.cache_cluster_id().map(str::to_string));
            }
        }
        Ok(None)
    }
}

impl ElastiCacheNodes {
    /// The deployment's cluster id, if it has one.
    pub async fn cluster_id(&self) -> Result<Option<String>> {
        match self.cluster_in_stack_outputs().await? {
            Some(id) => Ok(Some(id)),
            None => {
                let ec = aws_sdk_elasticache::Client::new(&self.ctx.config);
                self.cluster_by_tag(&ec).await
            }
        }
    }
}

#[async_trait]
impl ServerList for ElastiCacheNodes {
    async fn servers(&self) -> Result<Vec<String>> {
        let ec = aws_sdk_elasticache::Client::new(&self.ctx.config);
        let id = match self.cluster_id().await? {
            Some(id) => id,
            None => {
                return Err(Error::Missing(format!(
                    "no ElastiCache cluster for deployment `{}` in {} (no `ElastiCacheClusterId` output of stack {}-support, no cluster tagged veraison-deployment={}): list the nodes in stores.sessions.memcached",
                    self.deployment, self.ctx.endpoint, self.deployment, self.deployment
                )))
            }
        };
        let out = self
            .ctx
            .call("elasticache:DescribeCacheClusters", || {
                ec.describe_cache_clusters()
                    .cache_cluster_id(&id)
                    .show_cache_node_info(true)
                    .send()
            })
            .await?;
        let nodes: Vec<String> = out
            .cache_clusters()
            .iter()
            .flat_map(|c| c.cache_nodes())
            .filter_map(|n| n.endpoint())
            .filter_map(|e| Some(format!("{}:{}", e.address()?, e.port()?)))
            .collect();
        if nodes.is_empty() {
            return Err(Error::Missing(format!(
                "ElastiCache cluster {id} of deployment `{}` has no node endpoints in {}: list them in stores.sessions.memcached",
                self.deployment, self.ctx.endpoint
            )));
        }
        Ok(nodes)
    }
}
