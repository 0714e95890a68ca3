//! `examples/`: the nightly pipelines people copy. Each is parsed, its shell is checked by the
//! shell itself (`bash -n`, `sh -n`), and every `trialrunner` command line in it is parsed by the
//! CLI's own parser, so a renamed flag or command breaks the suite, not somebody's night.

use std::path::{Path, PathBuf};

use clap::Parser;
use trialrunner::cli::Cli;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// The words of one shell command line, as far as its first operator (`||`, `;`, `>`, …), with
/// every `$VAR`, `${VAR}` and `$(…)` standing for a plain word.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '$' => {
                // A parameter or a command substitution: one placeholder.
                match chars.peek() {
                    Some('(') | Some('{') => {
                        let close = if chars.next() == Some('(') { ')' } else { '}' };
                        let mut depth = 1;
                        for d in chars.by_ref() {
                            if d == '(' || d == '{' {
                                depth += 1;
                            } else if d == close || d == ')' || d == '}' {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                        }
                    }
                    _ => {
                        while chars
                            .peek()
                            .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '_')
                        {
                            chars.next();
                        }
                    }
                }
                word.push_str("VALUE");
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '|' | ';' | '>' | '&' | '#' if !quoted => break,
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Every `trialrunner …` command line of a text (a line whose command is `trialrunner`).
fn commands(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("run:").map(str::trim).unwrap_or(l);
            l.starts_with("trialrunner ").then(|| words(l))
        })
        .collect()
}

fn checked_commands(file: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(examples().join(file)).unwrap();
    let found = commands(&text);
    assert!(!found.is_empty(), "{file} runs trialrunner");
    for argv in &found {
        if let Err(e) = Cli::try_parse_from(argv) {
            panic!(
                "{file}: `{}` is not a trialrunner command line:\n{e}",
                argv.join(" ")
            );
        }
    }
    found
}

fn shell_checks(shell: &str, script: &str, what: &str) {
    let out = std::process::Command::new(shell)
        .args(["-n", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: {shell} -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The run line: `run TRIAL --env … --out … --junit …`.
fn runs_the_gate_with_junit(found: &[Vec<String>]) -> bool {
    found
        .iter()
        .any(|a| a.get(1).map(String::as_str) == Some("run") && a.iter().any(|w| w == "--junit"))
}

#[test]
fn the_github_actions_workflow_is_a_nightly_that_the_exit_code_decides() {
    let text = std::fs::read_to_string(examples().join("github-actions-nightly.yml")).unwrap();
    let w: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    // `on` is a YAML 1.1 boolean to some parsers; serde_yaml reads it as the string key.
    let on = &w["on"];
    assert!(
        on["schedule"][0]["cron"].as_str().is_some(),
        "a cron schedule"
    );
    assert_eq!(w["permissions"]["id-token"].as_str(), Some("write"), "OIDC");
    assert!(
        w["concurrency"]["group"].as_str().is_some(),
        "runs never overlap"
    );
    assert_eq!(
        w["concurrency"]["cancel-in-progress"].as_bool(),
        Some(false)
    );
    let steps = w["jobs"]["nightly"]["steps"].as_sequence().unwrap();
    let uses = |prefix: &str| {
        steps
            .iter()
            .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with(prefix)))
    };
    let creds = uses("aws-actions/configure-aws-credentials").expect("AWS credentials step");
    assert!(
        creds["with"]["role-to-assume"].as_str().is_some(),
        "a role, no keys"
    );
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    for script in &runs {
        shell_checks("bash", script, "a workflow step");
    }
    assert!(runs
        .iter()
        .any(|r| r.contains("report.md") && r.contains("$GITHUB_STEP_SUMMARY")));
    // Results and history on S3 by the tool itself: no sync around it.
    assert!(runs
        .iter()
        .any(|r| r.contains("--out \"$RESULTS/$name\"")
            && r.contains("--history \"$RESULTS/history\"")));
    assert!(!runs.iter().any(|r| r.contains("aws s3 sync")));
    let last = steps.last().unwrap();
    assert_eq!(last["if"].as_str(), Some("always()"));
    assert!(last["run"]
        .as_str()
        .unwrap()
        .contains("steps.run.outputs.code"));
    assert!(runs_the_gate_with_junit(&checked_commands(
        "github-actions-nightly.yml"
    )));
}

#[test]
fn the_cron_and_systemd_wrapper_runs_the_gate_and_exits_with_its_code() {
    let script = std::fs::read_to_string(examples().join("nightly.sh")).unwrap();
    shell_checks("sh", &script, "nightly.sh");
    assert!(script.contains("exit \"$code\""));
    assert!(script.contains("--out \"$RESULTS/$name\"") && !script.contains("aws s3 sync"));
    assert!(runs_the_gate_with_junit(&checked_commands("nightly.sh")));
    let service = std::fs::read_to_string(examples().join("trialrunner-nightly.service")).unwrap();
    assert!(service.contains("Type=oneshot") && service.contains("trialrunner-nightly.sh"));
    let timer = std::fs::read_to_string(examples().join("trialrunner-nightly.timer")).unwrap();
    assert!(timer.contains("OnCalendar="));
}

#[test]
fn a_command_line_the_cli_does_not_know_is_caught() {
    // The check itself: a flag that does not exist fails to parse.
    let bad = words("trialrunner run \"$TRIAL\" --no-such-flag || code=$?");
    assert_eq!(bad, ["trialrunner", "run", "VALUE", "--no-such-flag"]);
    assert!(Cli::try_parse_from(&bad).is_err());
    let good = words("trialrunner run \"$TRIAL\" --out \"results/nightly-$(date -u +%Y%m%dT%H%M%SZ)\" --yes || code=$?");
    assert_eq!(
        good,
        [
            "trialrunner",
            "run",
            "VALUE",
            "--out",
            "results/nightly-VALUE",
            "--yes"
        ]
    );
    assert!(Cli::try_parse_from(&good).is_ok());
}
