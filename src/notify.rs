//! The webhook on a failed gate: when `TRIALRUNNER_WEBHOOK_URL` is set and a run's gate fails,
//! one POST of Slack-compatible JSON (`{"text": …}`) with the ✓/✗ list and the link to the report
//! (`TRIALRUNNER_REPORT_URL` when the pipeline publishes it somewhere, else the report's path).
//! The URL is a secret (a Slack webhook's path is its credential): it is never printed, logged
//! or put in an error, and a webhook that fails is a warning, never the run's result.

use std::time::Duration;

use crate::secret::Secret;

/// The variable holding the webhook's URL.
pub const WEBHOOK_VAR: &str = "TRIALRUNNER_WEBHOOK_URL";
/// The variable holding the report's link, when the pipeline publishes it.
pub const REPORT_URL_VAR: &str = "TRIALRUNNER_REPORT_URL";

/// What a failed gate says: the trial, the environment, the ✓/✗ list and the report's link.
pub fn message(trial: &str, environment: &str, checks: &str, report: &str) -> serde_json::Value {
    serde_json::json!({
        "text": format!(
            "✗ trialrunner: the gate of `{trial}` in `{environment}` failed\n{}\nreport: {report}",
            checks.trim_end()
        )
    })
}

/// Posts `body` to the webhook named by the environment, when there is one; says on the
/// terminal whether it was sent (never where to).
pub async fn post_if_configured(body: &serde_json::Value) {
    let Ok(url) = Secret::from_env(WEBHOOK_VAR) else {
        return;
    };
    let sent = async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.without_url().to_string())?;
        let answer = client
            .post(url.expose())
            .json(body)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(format!("it answered HTTP {}", answer.status().as_u16()))
        }
    }
    .await;
    match sent {
        Ok(()) => crate::terminal::say(&format!("notified the webhook ({WEBHOOK_VAR})")),
        Err(why) => crate::terminal::say(&format!(
            "warning: the webhook ({WEBHOOK_VAR}) was not notified: {why}"
        )),
    }
}
