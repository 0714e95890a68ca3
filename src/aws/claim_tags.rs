//! A campaign's claim on an auto-scaling group as tags, and back: what the deployment lock
//! (`aws::lock`) writes and reads, and what the restore reads to leave alone a group another
//! campaign holds now. Pure: no AWS call here.
//!
//! Each claim has its own four tags (`trialrunner:lock:<id>:owner|lease|original|results`,
//! never propagated to instances), so two claims written at once never overwrite each other. A
//! claim carries the group's original settings (so that an operator on another host can put the
//! group back), its owner (host, pid, process start), its lease and its results directory as far
//! as it fits. Values keep to what AWS allows in tags (256 characters of letters, digits, spaces
//! and `_ . : / = + - @`).
use std::collections::BTreeMap;

use crate::owner::Owner;
use crate::provider::{AsgSettings, LockClaim};
use crate::trial::model::ServiceRole;

/// The prefix of every lock tag.
pub const PREFIX: &str = "trialrunner:lock:";
/// The longest tag value AWS accepts.
const VALUE_MAX: usize = 256;
/// The fields of a claim, one tag each.
pub(super) const FIELDS: [&str; 4] = ["owner", "lease", "original", "results"];

/// The tag key of one field of a claim.
pub(super) fn key(id: &str, field: &str) -> String {
    format!("{PREFIX}{id}:{field}")
}

/// A value AWS accepts: disallowed characters become `_`; too long, the head is cut (`...`).
fn tag_value(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || " _.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let n = clean.chars().count();
    if n <= VALUE_MAX {
        return clean;
    }
    let tail: String = clean.chars().skip(n - (VALUE_MAX - 3)).collect();
    format!("...{tail}")
}

/// `key=value` words of a tag value.
fn words(value: &str) -> BTreeMap<&str, &str> {
    value
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect()
}

fn owner_value(o: &Owner) -> String {
    tag_value(&format!(
        "host={} pid={} ticks={} since={:.0}",
        o.host,
        o.pid,
        o.proc_start
            .map(|t| t.to_string())
            .unwrap_or_else(|| "-".into()),
        o.started_unix
    ))
}

fn owner_of(value: &str) -> Owner {
    let w = words(value);
    Owner {
        host: w.get("host").unwrap_or(&"?").to_string(),
        pid: w.get("pid").and_then(|p| p.parse().ok()).unwrap_or(0),
        started_unix: w.get("since").and_then(|p| p.parse().ok()).unwrap_or(0.0),
        proc_start: w.get("ticks").and_then(|p| p.parse().ok()),
    }
}

/// Group metrics are all `Group…`: the prefix is left out to fit.
fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "-".into();
    }
    items
        .iter()
        .map(|m| m.strip_prefix("Group").unwrap_or(m))
        .collect::<Vec<_>>()
        .join("+")
}

/// The original settings of a group as a tag value. When the list of enabled metrics does not
/// fit, it becomes `unlisted` (read back as `*`: "leave the group's metrics as they are" on
/// restore).
pub fn original_value(o: &AsgSettings) -> String {
    let head = format!(
        "min={} max={} desired={} suspended={}",
        o.min,
        o.max,
        o.desired,
        list(&o.suspended_processes)
    );
    let full = format!("{head} metrics={}", list(&o.enabled_metrics));
    if full.len() <= VALUE_MAX {
        full
    } else {
        tag_value(&format!("{head} metrics=unlisted"))
    }
}

/// The original settings a tag value carries (`None` when it is not one).
pub fn original_of(value: &str, service: ServiceRole, name: &str) -> Option<AsgSettings> {
    let w = words(value);
    let num = |k: &str| w.get(k).and_then(|v| v.parse::<i32>().ok());
    let items = |k: &str, prefix: &str| -> Vec<String> {
        match w.get(k).copied() {
            None | Some("-") => Vec::new(),
            Some("unlisted") => vec!["*".to_string()],
            Some(v) => v.split('+').map(|x| format!("{prefix}{x}")).collect(),
        }
    };
    Some(AsgSettings {
        service,
        name: name.to_string(),
        min: num("min")?,
        max: num("max")?,
        desired: num("desired")?,
        suspended_processes: items("suspended", ""),
        enabled_metrics: items("metrics", "Group"),
        deployment: None,
        held: false,
    })
}

/// The tags of a claim on one group.
pub fn claim_tags(claim: &LockClaim, original: &AsgSettings) -> Vec<(String, String)> {
    let mut tags = vec![
        (key(&claim.id, "owner"), owner_value(&claim.owner)),
        (
            key(&claim.id, "lease"),
            format!("{:.0}", claim.expires_unix),
        ),
        (key(&claim.id, "original"), original_value(original)),
    ];
    if let Some(d) = &claim.results_dir {
        tags.push((key(&claim.id, "results"), tag_value(d)));
    }
    tags
}

/// The claims on one group (a claim without its owner tag, half written or half removed, is
/// not one), with the original settings each carries.
pub fn claims_on(
    tags: &[(String, String)],
    service: ServiceRole,
    group: &str,
) -> Vec<(LockClaim, Option<AsgSettings>)> {
    let mut by_id: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for (k, v) in tags {
        if let Some((id, field)) = k.strip_prefix(PREFIX).and_then(|r| r.split_once(':')) {
            by_id.entry(id).or_default().insert(field, v.as_str());
        }
    }
    by_id
        .into_iter()
        .filter_map(|(id, fields)| {
            let owner = owner_of(fields.get("owner")?);
            let claim = LockClaim {
                id: id.to_string(),
                owner,
                expires_unix: fields
                    .get("lease")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0),
                results_dir: fields.get("results").map(|d| d.to_string()),
            };
            let original = fields
                .get("original")
                .and_then(|v| original_of(v, service, group));
            Some((claim, original))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Takeover;

    fn settings(metrics: Vec<String>) -> AsgSettings {
        AsgSettings {
            service: ServiceRole::Verification,
            name: "veraison-verif-asg".into(),
            min: 1,
            max: 3,
            desired: 2,
            suspended_processes: vec!["AZRebalance".into(), "Launch".into()],
            enabled_metrics: metrics,
            deployment: None,
            held: false,
        }
    }

    #[test]
    fn a_claim_round_trips_through_its_tags_and_fits_them() {
        let claim = LockClaim {
            id: LockClaim::new_id(),
            owner: Owner {
                host: "ci-runner-7.example.com".into(),
                pid: 4242,
                started_unix: 1_767_000_000.0,
                proc_start: Some(123_456),
            },
            expires_unix: 1_767_000_900.0,
            results_dir: Some(format!(
                "/home/op/{}/results/trial 1 (copy)",
                "x".repeat(300)
            )),
        };
        let original = settings(vec![
            "GroupDesiredCapacity".into(),
            "GroupInServiceInstances".into(),
        ]);
        let tags = claim_tags(&claim, &original);
        for (k, v) in &tags {
            assert!(k.len() <= 128, "{k}");
            assert!(v.chars().count() <= VALUE_MAX, "{k}: {} chars", v.len());
            assert!(
                v.chars()
                    .all(|c| c.is_alphanumeric() || " _.:/=+-@".contains(c)),
                "{k}: {v}"
            );
        }
        let mut all = tags.clone();
        all.push(("Name".into(), "not ours".into()));
        let found = claims_on(&all, ServiceRole::Verification, "veraison-verif-asg");
        assert_eq!(found.len(), 1);
        let (c, o) = &found[0];
        assert_eq!(c.id, claim.id);
        assert_eq!(c.owner, claim.owner);
        assert_eq!(c.expires_unix, claim.expires_unix);
        assert!(c.results_dir.as_ref().unwrap().starts_with("..."));
        assert!(c.results_dir.as_ref().unwrap().ends_with("trial 1 _copy_"));
        assert_eq!(o.as_ref(), Some(&original));
        // A claim without its owner tag (half removed) is no claim.
        let lease_only: Vec<_> = tags
            .into_iter()
            .filter(|(k, _)| k.ends_with(":lease"))
            .collect();
        assert!(claims_on(&lease_only, ServiceRole::Verification, "g").is_empty());
    }

    #[test]
    fn metrics_that_do_not_fit_are_left_as_they_are() {
        let many: Vec<String> = (0..20)
            .map(|i| format!("GroupSomeVeryLongMetricName{i}"))
            .collect();
        let v = original_value(&settings(many));
        assert!(
            v.len() <= VALUE_MAX && v.ends_with("metrics=unlisted"),
            "{v}"
        );
        let o = original_of(&v, ServiceRole::Verification, "g").unwrap();
        assert_eq!(o.enabled_metrics, ["*"]);
        assert_eq!((o.min, o.max, o.desired), (1, 3, 2));
        let none = original_of(
            &original_value(&AsgSettings {
                suspended_processes: vec![],
                ..settings(vec![])
            }),
            ServiceRole::Verification,
            "g",
        )
        .unwrap();
        assert!(none.enabled_metrics.is_empty() && none.suspended_processes.is_empty());
    }

    #[test]
    fn who_blocks_whom() {
        let now = crate::results::unix_now();
        let me = LockClaim {
            id: "aaaaaaaaaaaa".into(),
            owner: Owner::current(),
            expires_unix: now + 900.0,
            results_dir: None,
        };
        let elsewhere = Owner {
            host: "another-host".into(),
            ..Owner::current()
        };
        let other = LockClaim {
            id: "bbbbbbbbbbbb".into(),
            owner: elsewhere.clone(),
            ..me.clone()
        };
        // Another campaign always blocks, live or not, with its owner named.
        let why = other.blocks(&me, Takeover::Forced).unwrap();
        assert!(
            why.contains("another host") && why.contains("another-host"),
            "{why}"
        );
        let expired = LockClaim {
            expires_unix: now - 1.0,
            ..other.clone()
        };
        assert!(expired
            .blocks(&me, Takeover::Forced)
            .unwrap()
            .contains("lease expired"));
        // The same campaign: its own process, a gone one, an expired lease, or --force.
        assert_eq!(me.blocks(&me, Takeover::WhenGone), None);
        let mine_elsewhere = LockClaim {
            owner: elsewhere,
            ..me.clone()
        };
        assert!(mine_elsewhere
            .blocks(&me, Takeover::WhenGone)
            .unwrap()
            .contains("--force"));
        assert_eq!(mine_elsewhere.blocks(&me, Takeover::Forced), None);
        let mine_expired = LockClaim {
            expires_unix: now - 1.0,
            ..mine_elsewhere
        };
        assert_eq!(mine_expired.blocks(&me, Takeover::WhenGone), None);
    }
}
