//! Which earlier campaign is a baseline: the latest *complete* campaign of the named trial in
//! the same environment that ended no later than the one being judged. Never a partial,
//! interrupted or failed one, never another trial's or environment's. One rule for every place
//! that looks (sibling results directories by their manifests, a history by its lines, local or
//! on S3).

use serde_json::Value;

/// What the rule reads of an earlier campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Its trial's name.
    pub trial: String,
    /// Its environment's name.
    pub environment: String,
    /// How it ended (`complete`, `partial`, `interrupted`, `failed`; empty when unknown).
    pub status: String,
    /// When it ended (RFC 3339, UTC).
    pub ended_at: String,
}

impl Ended {
    /// From a results directory's `manifest.json`.
    pub fn of_manifest(m: &Value) -> Option<Ended> {
        Some(Ended {
            trial: m["trial"]["spec"]["name"].as_str()?.to_string(),
            environment: m["environment"]["spec"]["name"].as_str()?.to_string(),
            status: m["status"].as_str().unwrap_or_default().to_string(),
            ended_at: m["ended_at"].as_str()?.to_string(),
        })
    }

    /// From a history line.
    pub fn of_history(line: &Value) -> Option<Ended> {
        Some(Ended {
            trial: line["trial"].as_str()?.to_string(),
            environment: line["environment"].as_str()?.to_string(),
            status: line["status"].as_str().unwrap_or_default().to_string(),
            ended_at: line["date"].as_str()?.to_string(),
        })
    }
}

/// Of `candidates`, the latest complete campaign of `trial` in `environment` that ended no later
/// than `by` (RFC 3339; so a report rebuilt later finds the same baseline).
pub fn latest_complete<T>(
    candidates: impl IntoIterator<Item = (Ended, T)>,
    trial: &str,
    environment: &str,
    by: &str,
) -> Option<T> {
    candidates
        .into_iter()
        .filter(|(e, _)| {
            e.trial == trial
                && e.environment == environment
                && e.status == "complete"
                && e.ended_at.as_str() <= by
        })
        .max_by(|(a, _), (b, _)| a.ended_at.cmp(&b.ended_at))
        .map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(trial: &str, env: &str, status: &str, at: &str) -> Ended {
        Ended {
            trial: trial.into(),
            environment: env.into(),
            status: status.into(),
            ended_at: at.into(),
        }
    }

    #[test]
    fn the_latest_complete_run_of_the_same_trial_and_environment_is_chosen() {
        let c = vec![
            (ended("t", "e", "complete", "2026-12-01T00:00:00Z"), "old"),
            (ended("t", "e", "complete", "2026-12-02T00:00:00Z"), "right"),
            (
                ended("t", "e", "partial", "2026-12-03T00:00:00Z"),
                "partial",
            ),
            (
                ended("t", "e", "interrupted", "2026-12-03T01:00:00Z"),
                "stopped",
            ),
            (
                ended("other", "e", "complete", "2026-12-04T00:00:00Z"),
                "other trial",
            ),
            (
                ended("t", "staging", "complete", "2026-12-04T00:00:00Z"),
                "other env",
            ),
            (ended("t", "e", "complete", "2026-12-09T00:00:00Z"), "after"),
        ];
        assert_eq!(
            latest_complete(c, "t", "e", "2026-12-05T00:00:00Z"),
            Some("right")
        );
    }
}
