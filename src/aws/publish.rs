//! The client's own figures in CloudWatch (`publish: [cloudwatch]`): after each run, per
//! endpoint and per task and per UTC second, `Requests`, `Failures` (Count) and `LatencyP50`,
//! `LatencyP95`, `LatencyP99` (Milliseconds, of successes) as high-resolution custom metrics in
//! the [`NAMESPACE`] namespace, with dimensions `trial`, `environment`, `run` (the load run's id)
//! and `endpoint` (`POST verify`, `TASK verification session`). Read from the run's
//! `timeline.csv`, so CloudWatch holds exactly the results' per-second figures; timestamps are
//! moved onto AWS's clock by the measured offset in whole seconds (recorded in `published.json`). Sent in batches within PutMetricData's limits
//! (1000 datapoints, 1 MB a request), each through the retry policy.

use std::path::Path;

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_smithy_types::DateTime;

use super::AwsContext;
use crate::error::Result;
use crate::provider::{ClientMetricsSink, Published};
use crate::results::csv::{read_timeline, TimelineRecord};

/// The namespace of the client's metrics.
pub const NAMESPACE: &str = "trialrunner";

/// The calls publishing makes (for `iam-policy`).
pub const WRITES: &[&str] = &["cloudwatch:PutMetricData"];
/// Most datapoints PutMetricData takes in one request.
const MAX_DATUMS: usize = 1000;
/// Most bytes of one request PutMetricData takes (1 MB), less room for the envelope.
const MAX_BYTES: usize = 900 * 1024;

/// One datapoint to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Datapoint {
    /// `Requests`, `Failures`, `LatencyP95`, …
    pub metric: &'static str,
    /// The `endpoint` dimension.
    pub endpoint: String,
    /// The UTC second (generator's clock).
    pub unix: f64,
    /// The value.
    pub value: f64,
}

impl Datapoint {
    /// Its size in a query-encoded request, generously (names, dimensions, numbers).
    fn encoded_len(&self, fixed: usize) -> usize {
        fixed + self.metric.len() + 3 * self.endpoint.len() + 200
    }

    fn unit(&self) -> StandardUnit {
        if self.metric.starts_with("Latency") {
            StandardUnit::Milliseconds
        } else {
            StandardUnit::Count
        }
    }
}

/// A run's datapoints from its timeline: every second's requests and failures, and the
/// percentiles of the seconds that had successes.
pub fn datapoints(rows: &[TimelineRecord]) -> Vec<Datapoint> {
    let mut out = Vec::new();
    for r in rows {
        let point = |metric, value| Datapoint {
            metric,
            endpoint: r.endpoint.clone(),
            unix: r.unix,
            value,
        };
        out.push(point("Requests", r.requests));
        out.push(point("Failures", r.failures));
        for (metric, v) in [
            ("LatencyP50", r.p50),
            ("LatencyP95", r.p95),
            ("LatencyP99", r.p99),
        ] {
            if let Some(v) = v {
                out.push(point(metric, v));
            }
        }
    }
    out
}

/// Splits `items` into consecutive batches of at most `max_items` and `max_bytes` (an item
/// larger than `max_bytes` goes alone).
pub fn batches<T>(
    items: &[T],
    max_items: usize,
    max_bytes: usize,
    len: impl Fn(&T) -> usize,
) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let n = len(item);
        if i > start && (i - start == max_items || bytes + n > max_bytes) {
            out.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += n;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// Publishes to CloudWatch.
pub struct CloudWatchPublisher {
    ctx: AwsContext,
    trial: String,
    environment: String,
}

impl CloudWatchPublisher {
    /// A publisher for this trial in this environment.
    pub fn new(ctx: AwsContext, trial: &str, environment: &str) -> CloudWatchPublisher {
        CloudWatchPublisher {
            ctx,
            trial: trial.into(),
            environment: environment.into(),
        }
    }
}

#[async_trait]
impl ClientMetricsSink for CloudWatchPublisher {
    async fn publish(&self, run_id: &str, dir: &Path) -> Result<Published> {
        let points = datapoints(&read_timeline(&dir.join("timeline.csv")));
        // Whole seconds: the offset is known to about half a second, and a fraction would move
        // each second's datapoint into its neighbour's bucket.
        let offset = self.ctx.clock_offset().await.round();
        let cw = aws_sdk_cloudwatch::Client::new(&self.ctx.config);
        let dims = [
            ("trial", self.trial.as_str()),
            ("environment", self.environment.as_str()),
            ("run", run_id),
        ];
        let fixed: usize = dims.iter().map(|(k, v)| k.len() + 3 * v.len() + 60).sum();
        let mut calls = 0;
        for batch in batches(&points, MAX_DATUMS, MAX_BYTES, |p| p.encoded_len(fixed)) {
            let data: Vec<MetricDatum> = batch
                .iter()
                .map(|p| {
                    let mut d = MetricDatum::builder()
                        .metric_name(p.metric)
                        .timestamp(DateTime::from_secs_f64(p.unix + offset))
                        .value(p.value)
                        .unit(p.unit())
                        .storage_resolution(1);
                    for (k, v) in dims
                        .iter()
                        .copied()
                        .chain([("endpoint", p.endpoint.as_str())])
                    {
                        d = d.dimensions(Dimension::builder().name(k).value(v).build());
                    }
                    d.build()
                })
                .collect();
            let req = cw
                .put_metric_data()
                .namespace(NAMESPACE)
                .set_metric_data(Some(data));
            calls += 1;
            self.ctx
                .call("cloudwatch:PutMetricData", || req.clone().send())
                .await?;
        }
        Ok(Published {
            to: format!("cloudwatch:{NAMESPACE}"),
            datapoints: points.len(),
            calls,
            clock_offset_s: offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_within_both_limits_and_lose_nothing() {
        let items: Vec<usize> = (0..2500).map(|i| 100 + i % 7).collect();
        let b = batches(&items, 1000, usize::MAX, |n| *n);
        assert_eq!(
            b.iter().map(|x| x.len()).collect::<Vec<_>>(),
            [1000, 1000, 500]
        );
        let b = batches(&items, 1000, 10_000, |n| *n);
        assert!(b
            .iter()
            .all(|x| x.iter().sum::<usize>() <= 10_000 && x.len() <= 1000));
        assert_eq!(b.iter().map(|x| x.len()).sum::<usize>(), 2500);
        assert_eq!(b.concat(), items, "in order, nothing lost or repeated");
        let huge = [5, 50_000, 5];
        assert_eq!(
            batches(&huge, 1000, 100, |n| *n).len(),
            3,
            "a large item goes alone"
        );
        assert!(batches::<usize>(&[], 1000, 100, |n| *n).is_empty());
    }

    #[test]
    fn a_realistic_campaigns_batches_fit_a_megabyte() {
        // 1000 datapoints of long endpoint names, as encoded, stay under PutMetricData's 1 MB.
        let p = Datapoint {
            metric: "LatencyP99",
            endpoint: "POST /challenge-response/v1/session/deadbeef-0000".into(),
            unix: 0.0,
            value: 1.0,
        };
        let fixed = 3 * (12 + 3 * 64 + 60);
        assert!(
            p.encoded_len(fixed) * MAX_DATUMS > MAX_BYTES,
            "long names split a batch"
        );
        let many = vec![p.clone(); 5000];
        let batch = batches(&many, MAX_DATUMS, MAX_BYTES, |p| p.encoded_len(fixed));
        assert!(batch
            .iter()
            .all(|b| b.len() * p.encoded_len(fixed) <= MAX_BYTES));
    }
}
