//! The deployment's database acted out: the counted database's `max_connections` follows the
//! emulated RDS instance's parameter group, so a trial that sets `infra.database.max-connections`
//! moves where the twin's database runs out ("sorry, too many clients already"), as a reboot
//! with the new value does on RDS. With a real PostgreSQL server (`postgres`) the limit is that
//! server's own and does not follow.

use crate::aws::{sdk_error, AwsContext};
use crate::error::Result;
use crate::standin::pool::DbAccount;
use crate::trial::database::MAX_CONNECTIONS_PARAMETER;

/// `max_connections` in the parameter group of the deployment's RDS instance (`D-support-…`),
/// `None` when the group does not set it (or there is no instance).
pub(super) async fn max_connections(ctx: &AwsContext, deployment: &str) -> Result<Option<usize>> {
    let rds = aws_sdk_rds::Client::new(&ctx.config);
    let out = rds
        .describe_db_instances()
        .send()
        .await
        .map_err(|e| sdk_error(ctx, "rds:DescribeDBInstances", e))?;
    let prefix = format!("{deployment}-support");
    let Some(group) = out
        .db_instances()
        .iter()
        .find(|i| {
            i.db_instance_identifier()
                .is_some_and(|id| id.starts_with(&prefix))
        })
        .and_then(|i| i.db_parameter_groups().first())
        .and_then(|g| g.db_parameter_group_name())
        .map(str::to_string)
    else {
        return Ok(None);
    };
    let params = rds
        .describe_db_parameters()
        .db_parameter_group_name(group)
        .send()
        .await
        .map_err(|e| sdk_error(ctx, "rds:DescribeDBParameters", e))?;
    Ok(params
        .parameters()
        .iter()
        .find(|p| p.parameter_name() == Some(MAX_CONNECTIONS_PARAMETER))
        .and_then(|p| p.parameter_value())
        .and_then(|v| v.trim().parse().ok()))
}

/// Sets the counted database's limit to the emulated instance's `max_connections`, or back to
/// `configured` (the twin's own `db_max_connections`) when its group sets none.
pub(super) async fn follow(
    ctx: &AwsContext,
    deployment: &str,
    account: &DbAccount,
    configured: usize,
) -> Result<()> {
    let max = max_connections(ctx, deployment)
        .await?
        .unwrap_or(configured);
    if account.max_connections() != max {
        tracing::info!(
            max_connections = max,
            "twin: the database's max_connections"
        );
        account.set_max_connections(max);
    }
    Ok(())
}
