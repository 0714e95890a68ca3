//! The webhook on a failed gate: a local HTTP receiver gets one Slack-compatible JSON message
//! with the ✓/✗ list and the report's link; the webhook's URL (a secret) appears nowhere the
//! tool writes, and a webhook that cannot be reached is a warning, not the run's result.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::mpsc;

use trialrunner::standin::faults::Faults;
use trialrunner::standin::store::KvStore;
use trialrunner::standin::{Standin, StandinConfig};

/// The webhook's path carries its credential, as a Slack incoming webhook's does.
const TOKEN: &str = "T0KEN-b5f2e9-never-printed";

/// A receiver of one POST: (its URL, the request line and body it got).
fn receiver() -> (String, mpsc::Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/services/{TOKEN}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .unwrap();
        tx.send((request_line, String::from_utf8(body).unwrap()))
            .unwrap();
    });
    (url, rx)
}

/// Every file under `dir`, as text where it is text.
fn all_text(dir: &Path) -> String {
    let mut text = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            text += &all_text(&p);
        } else {
            text += &String::from_utf8_lossy(&std::fs::read(&p).unwrap());
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_gate_posts_its_list_and_link_and_never_shows_the_webhook() {
    let sick = Standin::start(
        "127.0.0.1:0".parse().unwrap(),
        StandinConfig {
            faults: Faults {
                error_rate: 0.5,
                ..Faults::default()
            },
            ..StandinConfig::default()
        },
        KvStore::memory(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = sick.url().to_string();
    let env = std::fs::read_to_string(common::root().join("templates/local.yaml"))
        .unwrap()
        .replace("http://127.0.0.1:8443/", &url)
        .replace("http://127.0.0.1:8443", url.trim_end_matches('/'));
    common::write(dir.path(), "local.yaml", &env);
    let trial = common::write(
        dir.path(),
        "sick.yaml",
        "name: sick\nenvironment: local.yaml\nruns:\n  users: 2\n  duration: 2s\n  tasks: [verify]\nthresholds:\n  - verify failure-rate < 1%\n  - verify p95 < 10s\n",
    );
    let run = |out: &str, webhook: &str| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_trialrunner"));
        c.arg("run")
            .arg(&trial)
            .arg("--out")
            .arg(dir.path().join(out))
            .arg("--yes")
            .env("TRIALRUNNER_WEBHOOK_URL", webhook)
            .env("TRIALRUNNER_REPORT_URL", "https://ci.example/runs/7");
        c
    };

    let (webhook, got) = receiver();
    let done = common::expect_exit(&mut run("a", &webhook), 1);
    let (request_line, body) = got
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the webhook was posted to");
    assert!(
        request_line.starts_with(&format!("POST /services/{TOKEN} ")),
        "{request_line}"
    );
    let message: serde_json::Value = serde_json::from_str(&body).unwrap();
    let text = message["text"].as_str().expect("Slack's `text`");
    assert!(text.contains("`sick`") && text.contains("failed"), "{text}");
    assert!(text.contains("✗ verify failure-rate < 1%"), "{text}");
    assert!(text.contains("✓ verify p95 < 10s"), "{text}");
    assert!(text.contains("report: https://ci.example/runs/7"), "{text}");
    assert!(done
        .stderr
        .contains("notified the webhook (TRIALRUNNER_WEBHOOK_URL)"));
    assert!(!done.text().contains(TOKEN), "{}", done.text());
    assert!(
        !all_text(&dir.path().join("a")).contains(TOKEN),
        "the results never hold it"
    );

    // Nobody listening: a warning that does not say where, and the gate's exit code stands.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/services/{TOKEN}", l.local_addr().unwrap())
    };
    let done = common::expect_exit(&mut run("b", &closed), 1);
    assert!(
        done.stderr
            .contains("warning: the webhook (TRIALRUNNER_WEBHOOK_URL) was not notified"),
        "{}",
        done.stderr
    );
    assert!(!done.text().contains(TOKEN), "{}", done.text());
    assert!(
        !done.text().contains(&closed[..20]),
        "not even its host: {}",
        done.text()
    );
}
