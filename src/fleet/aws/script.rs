//! The shell scripts a fleet's instances run under `AWS-RunShellScript`, and where a campaign's
//! files are, in the bucket and on the instances.
//!
//! The SSM agent joins a command's lines into one file and runs it with `sh` (dash or bash), as
//! root, with no `HOME` and systemd's `PATH`. Every value a script names is quoted for that
//! shell ([`quote`]), whatever it holds. Four scripts:
//! * [`probe`]: what the instance is (`uname -m`, its glibc), before anything is sent to it;
//! * [`prepare`]: once per campaign and instance: leftovers of campaigns that ended early
//!   removed, the binary fetched (kept across the campaign's runs, checked by its hash when it
//!   came from the bucket), the trial and environment fetched, the binary run once;
//! * [`worker`]: one run's share: its spec fetched, `trialrunner worker` run, its log's tail on
//!   the command's own output (stderr when it failed: the SSM console shows why), its files
//!   uploaded, the run's folder removed (and the campaign's after its last run);
//! * [`stop`]: a stop request: the worker asked to stop in order (SIGTERM), so that it writes
//!   and uploads what it measured; the command is only cancelled when that does not end it.
//!
//! ```text
//! s3://bucket/prefix/bin/trialrunner-<sha256>                  the binary, by content
//! s3://bucket/prefix/<campaign>/inputs/                        trial.yaml, environment.yaml
//! s3://bucket/prefix/<campaign>/<run>/<attempt>/wN/spec.json   one worker's share
//! s3://bucket/prefix/<campaign>/<run>/<attempt>/wN/out/        what it wrote
//! /var/tmp/trialrunner/<campaign>/                             trialrunner, trial.yaml, environment.yaml
//! /var/tmp/trialrunner/<campaign>/<run>.<attempt>/             spec.json, out/ (removed after upload)
//! ```
//! The campaign id is unique per campaign (kept across `--resume`), the attempt per sending of
//! a run: the coordinator reads only what this attempt's workers wrote.

use std::time::Duration;

use super::S3Location;

/// Where instances keep campaigns.
pub const ROOT: &str = "/var/tmp/trialrunner";

/// `text` as one word for `sh`: single-quoted, a `'` inside written `'\''`.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Where an instance gets the trialrunner binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binary {
    /// A release URL the instances fetch with curl.
    Url(String),
    /// An object in the fleet's bucket, with its content's SHA-256.
    Key {
        /// The object's key.
        key: String,
        /// Its content's SHA-256, hex.
        sha256: String,
    },
}

/// One sending of one run: the keys and folders its workers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The run (`u005-well-known`).
    pub run: String,
    /// Unique per sending of the run.
    pub id: String,
}

/// A campaign's places in the bucket and on the instances.
#[derive(Debug, Clone)]
pub struct Layout {
    bucket: S3Location,
    region: String,
    campaign: String,
}

impl Layout {
    /// The places of `campaign` under the fleet's bucket and prefix.
    pub fn new(bucket: &S3Location, region: &str, campaign: &str) -> Layout {
        Layout {
            bucket: bucket.clone(),
            region: region.into(),
            campaign: campaign.into(),
        }
    }

    /// The campaign's id.
    pub fn campaign(&self) -> &str {
        &self.campaign
    }

    /// The key under which the campaign's trial and environment are.
    pub fn inputs_key(&self) -> String {
        self.bucket.key(&format!("{}/inputs", self.campaign))
    }

    /// The key of an attempt of a run.
    pub fn attempt_key(&self, a: &Attempt) -> String {
        self.bucket
            .key(&format!("{}/{}/{}", self.campaign, a.run, a.id))
    }

    /// The key of a worker's spec.
    pub fn spec_key(&self, a: &Attempt, worker: &str) -> String {
        format!("{}/{worker}/spec.json", self.attempt_key(a))
    }

    /// The key under which a worker's files are uploaded.
    pub fn results_key(&self, a: &Attempt, worker: &str) -> String {
        format!("{}/{worker}/out", self.attempt_key(a))
    }

    /// The campaign's folder on an instance.
    pub fn instance_dir(&self) -> String {
        format!("{ROOT}/{}", self.campaign)
    }

    fn run_dir(&self, a: &Attempt) -> String {
        format!("{}/{}.{}", self.instance_dir(), a.run, a.id)
    }

    fn url(&self, key: &str) -> String {
        quote(&format!("s3://{}/{key}", self.bucket.bucket))
    }

    /// `aws s3 cp` in the bucket's region (an instance's CLI may not know its own).
    fn cp(&self) -> String {
        format!(
            "aws s3 cp --only-show-errors --region {}",
            quote(&self.region)
        )
    }
}

/// What the instance is: its architecture and C library.
pub fn probe() -> Vec<String> {
    vec![
        "echo \"arch=$(uname -m)\"".into(),
        "echo \"libc=$(getconf GNU_LIBC_VERSION 2>/dev/null || ldd --version 2>&1 | head -n 1)\""
            .into(),
    ]
}

/// Once per campaign and instance: the campaign's folder with the binary, the trial and the
/// environment, and proof the binary runs there.
pub fn prepare(layout: &Layout, binary: &Binary) -> Vec<String> {
    let c = quote(&layout.instance_dir());
    let fetch = match binary {
        Binary::Url(u) => format!(
            "[ -s trialrunner ] || {{ curl -fsSL -o trialrunner.part {} && mv trialrunner.part trialrunner; }} || {{ echo {} >&2; exit 3; }}",
            quote(u),
            quote(&format!("could not fetch the binary from {u}"))
        ),
        Binary::Key { key, sha256 } => format!(
            "[ \"$(sha256sum trialrunner 2>/dev/null | cut -d ' ' -f 1)\" = {} ] || {{ {} {} trialrunner.part && mv trialrunner.part trialrunner; }} || {{ echo {} >&2; exit 3; }}",
            quote(sha256),
            layout.cp(),
            layout.url(key),
            quote(&format!("could not fetch the binary from s3://{}/{key}", layout.bucket.bucket))
        ),
    };
    vec![
        "set -u".into(),
        format!("root={}", quote(ROOT)),
        format!("c={c}"),
        "# One campaign at a time drives a generator group (its undo journal refuses a second):".into(),
        "# anything else here was left by a campaign that ended early.".into(),
        "for old in \"$root\"/*; do [ \"$old\" = \"$c\" ] || rm -rf -- \"$old\"; done".into(),
        "mkdir -p \"$c\" && cd \"$c\" || { echo \"cannot create $c\" >&2; exit 3; }".into(),
        format!(
            "{} --recursive {} . || {{ echo {} >&2; exit 3; }}",
            layout.cp(),
            layout.url(&layout.inputs_key()),
            quote("could not fetch the campaign's trial and environment")
        ),
        fetch,
        "chmod +x trialrunner || exit 3".into(),
        "./trialrunner --version || { echo \"this binary does not run on this instance ($(uname -m), $(getconf GNU_LIBC_VERSION 2>/dev/null || echo 'libc unknown'))\" >&2; exit 126; }".into(),
    ]
}

/// One run's share on one instance. `bound` stops the worker (SIGTERM) if it is still running
/// then; `last` removes the campaign's folder after the upload.
pub fn worker(
    layout: &Layout,
    attempt: &Attempt,
    worker: &str,
    bound: Duration,
    last: bool,
) -> Vec<String> {
    let spec = layout.spec_key(attempt, worker);
    let results = layout.results_key(attempt, worker);
    let mut lines = vec![
        "set -u".into(),
        format!("c={}", quote(&layout.instance_dir())),
        format!("r={}", quote(&layout.run_dir(attempt))),
        "mkdir -p \"$r/out\" && cd \"$r\" || { echo \"cannot create $r\" >&2; exit 3; }".into(),
        format!(
            "{} {} spec.json || {{ echo {} >&2; exit 3; }}",
            layout.cp(),
            layout.url(&spec),
            quote(&format!(
                "could not fetch the worker's spec from s3://{}/{spec}",
                layout.bucket.bucket
            ))
        ),
        format!(
            "timeout -s TERM {} \"$c/trialrunner\" worker --spec spec.json --out out > out/worker.log 2>&1 &",
            bound.as_secs()
        ),
        "w=$!".into(),
        "echo \"$w\" > worker.pid".into(),
        "# A stop that came before the pid was written: the marker says it.".into(),
        "[ ! -e stop ] || kill -TERM \"$w\"".into(),
        "rc=0; wait \"$w\" || rc=$?".into(),
        "if [ \"$rc\" -eq 0 ]; then tail -c 16000 out/worker.log; else".into(),
        format!(
            "  echo \"worker {worker} exited with code $rc; the end of its log:\" >&2; tail -c 6000 out/worker.log >&2; fi"
        ),
        format!(
            "{} --recursive out {} || {{ echo {} >&2; [ \"$rc\" -ne 0 ] || rc=3; }}",
            layout.cp(),
            layout.url(&results),
            quote(&format!(
                "could not upload the worker's files to s3://{}/{results}",
                layout.bucket.bucket
            ))
        ),
        "cd / && rm -rf -- \"$r\"".into(),
    ];
    if last {
        lines.push("rm -rf -- \"$c\"".into());
    }
    lines.push("exit \"$rc\"".into());
    lines
}

/// Asks the worker of an attempt to stop in order: it writes its files, the script uploads
/// them. A marker covers a worker not started yet.
pub fn stop(layout: &Layout, attempt: &Attempt) -> Vec<String> {
    vec![
        format!("c={}", quote(&layout.instance_dir())),
        format!("r={}", quote(&layout.run_dir(attempt))),
        "[ -d \"$c\" ] || exit 0".into(),
        "mkdir -p \"$r\" && touch \"$r/stop\"".into(),
        "[ ! -f \"$r/worker.pid\" ] || kill -TERM \"$(cat \"$r/worker.pid\")\" 2>/dev/null || true"
            .into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every quoted word comes back as itself from `sh`, whatever it holds.
    #[test]
    fn a_quoted_word_is_itself_to_the_shell() {
        for word in [
            "plain",
            "with space",
            "it's",
            "a'b'c",
            "$HOME `id` \\ \"x\" * ?",
            "new\nline",
            "",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(word)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), word);
        }
    }

    #[test]
    fn every_value_a_script_names_is_quoted() {
        let bucket = S3Location::parse("s3://bkt-1/my camp/it's").unwrap();
        let layout = Layout::new(&bucket, "eu-west-1", "fleet-20260101T000000Z-ab12");
        let a = Attempt {
            run: "u005-well-known".into(),
            id: "a1b2c3d4".into(),
        };
        let text = worker(&layout, &a, "w1", Duration::from_secs(70), true).join("\n");
        assert!(
            text.contains(r"'s3://bkt-1/my camp/it'\''s/fleet-20260101T000000Z-ab12/u005-well-known/a1b2c3d4/w1/spec.json'"),
            "{text}"
        );
        let status = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(&text)
            .status()
            .unwrap();
        assert!(status.success(), "sh -n accepts it:\n{text}");
    }
}
