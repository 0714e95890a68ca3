//! `trialrunner dashboard`: a CloudWatch dashboard (PutDashboard) with a trial's client figures
//! (the [`super::publish`] metrics, found with SEARCH expressions so every run and endpoint
//! appears) above the deployment's series the trial names (`metrics`, resolved as a pull
//! resolves them), on one time axis.

use serde_json::{json, Value};

use super::cloudwatch::MetricQuery;
use super::publish::NAMESPACE;
use super::AwsContext;
use crate::error::Result;

/// The dashboard's name for a trial in an environment (`trialrunner-trial-1-veraison-aws`).
pub fn name(trial: &str, environment: &str) -> String {
    let raw = format!("trialrunner-{trial}-{environment}");
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(255)
        .collect()
}

/// A metric widget at row `y`, column `x` of the 24-column grid.
fn widget(title: &str, metrics: Value, x: u32, y: u32, region: &str) -> Value {
    json!({
        "type": "metric", "x": x, "y": y, "width": 12, "height": 6,
        "properties": {"title": title, "region": region, "view": "timeSeries", "metrics": metrics, "period": 60}
    })
}

/// The dashboard's body: the client's requests, failures and p50/p95/p99 (SEARCH over the
/// `trialrunner` namespace for this trial and environment), then one widget per deployment
/// series.
pub fn body(trial: &str, environment: &str, region: &str, deployment: &[MetricQuery]) -> Value {
    let search = |metric: &str, stat: &str, id: &str| {
        json!([{ "expression": format!(
            "SEARCH('{{{NAMESPACE},trial,environment,run,endpoint}} MetricName=\"{metric}\" trial=\"{trial}\" environment=\"{environment}\"', '{stat}', 60)"
        ), "id": id, "label": "" }])
    };
    let mut widgets = vec![
        widget(
            "client: requests per minute, per run and endpoint",
            search("Requests", "Sum", "r"),
            0,
            0,
            region,
        ),
        widget(
            "client: failures per minute, per run and endpoint",
            search("Failures", "Sum", "f"),
            12,
            0,
            region,
        ),
        widget(
            "client: p95 (worst second of the minute), ms",
            search("LatencyP95", "Maximum", "p95"),
            0,
            6,
            region,
        ),
        widget(
            "client: p99 (worst second of the minute), ms",
            search("LatencyP99", "Maximum", "p99"),
            12,
            6,
            region,
        ),
    ];
    for (i, q) in deployment.iter().enumerate() {
        let mut m: Vec<Value> = vec![json!(q.namespace), json!(q.metric)];
        for (k, v) in &q.dimensions {
            m.push(json!(k));
            m.push(json!(v));
        }
        m.push(json!({"stat": q.stat, "label": q.label}));
        widgets.push(widget(
            &q.label,
            json!([m]),
            (i as u32 % 2) * 12,
            12 + (i as u32 / 2) * 6,
            region,
        ));
    }
    json!({ "widgets": widgets })
}

/// The calls `trialrunner dashboard` makes (not a campaign's: `iam-policy` leaves it out; it
/// needs `cloudwatch:PutDashboard` on `arn:aws:cloudwatch::ACCOUNT:dashboard/trialrunner-*`).
pub const WRITES: &[&str] = &["cloudwatch:PutDashboard"];

/// Writes (or replaces) the dashboard `name` through the retry policy.
pub async fn put(ctx: &AwsContext, name: &str, body: &Value) -> Result<()> {
    let cw = aws_sdk_cloudwatch::Client::new(&ctx.config);
    let req = cw
        .put_dashboard()
        .dashboard_name(name)
        .dashboard_body(body.to_string());
    ctx.call("cloudwatch:PutDashboard", || req.clone().send())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_searches_the_clients_metrics_and_names_each_deployment_series() {
        let q = MetricQuery {
            id: "m0".into(),
            label: "AWS/RDS DatabaseConnections db Maximum".into(),
            namespace: "AWS/RDS".into(),
            metric: "DatabaseConnections".into(),
            dimensions: vec![("DBInstanceIdentifier".into(), "db".into())],
            stat: "Maximum".into(),
        };
        let b = body("trial 1", "aws", "eu-west-1", &[q]);
        let text = b.to_string();
        assert!(
            text.contains(r#"MetricName=\"LatencyP95\" trial=\"trial 1\" environment=\"aws\""#),
            "{text}"
        );
        let w = b["widgets"].as_array().unwrap();
        assert_eq!(w.len(), 5);
        assert_eq!(w[4]["properties"]["metrics"][0][3], "db");
        assert_eq!(name("trial 1", "aws"), "trialrunner-trial-1-aws");
    }
}
