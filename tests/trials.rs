//! Trials as data: the seed trials validate and plan as the brief says; every malformed file in
//! `tests/malformed/` yields exit 2 and an error naming its line and field; random YAML never
//! panics the parser.

mod common;

use std::path::{Path, PathBuf};

use std::process::Command;

use proptest::prelude::*;
use trialrunner::trial::model::{EnvironmentFile, TrialFile};
use trialrunner::trial::source::{deserialize_all, Source};
use trialrunner::trial::{self, Diagnostics};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trialrunner"))
}

fn malformed() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(common::root().join("tests/malformed"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .chars()
                .nth(1)
                .is_some_and(|c| c.is_ascii_digit())
        })
        .collect();
    files.sort();
    files
}

/// `# expect: LINE FIELD` lines at the top of a malformed file (`-` for no field).
fn expectations(file: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|e| {
            let (line, field) = e.split_once(' ').unwrap();
            (
                line.parse().unwrap(),
                if field == "-" {
                    String::new()
                } else {
                    field.to_string()
                },
            )
        })
        .collect()
}

fn diagnostics(file: &Path) -> Diagnostics {
    let is_env = file.file_name().unwrap().to_str().unwrap().starts_with('e');
    if is_env {
        trial::load_environment(file)
            .map(|_| ())
            .expect_err("malformed environment must fail")
    } else {
        trial::load_trial(file, None)
            .map(|_| ())
            .expect_err("malformed trial must fail")
    }
}

#[test]
fn every_malformed_file_names_its_line_and_field() {
    let files = malformed();
    assert!(files.len() >= 20, "the corpus has {} files", files.len());
    for file in files {
        let d = diagnostics(&file);
        let wanted = expectations(&file);
        assert!(
            !wanted.is_empty(),
            "{} has no `# expect:` line",
            file.display()
        );
        for (line, field) in wanted {
            let hit = d.0.iter().any(|x| {
                x.position.map(|p| p.line) == Some(line) && x.field == field && x.file == file
            });
            assert!(
                hit,
                "{}: expected an error at line {line} on `{field}`, got:\n{d}",
                file.display()
            );
        }
        // Each message names file:line:column.
        let text = d.to_string();
        assert!(text.contains(&format!("{}:", file.display())), "{text}");
    }
}

#[test]
fn every_malformed_file_exits_2_from_the_cli() {
    for file in malformed() {
        let out = bin().arg("validate").arg(&file).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let (line, field) = &expectations(&file)[0];
        assert!(
            stderr.contains(&format!(":{line}:")) && stderr.contains(field.as_str()),
            "{}: {stderr}",
            file.display()
        );
    }
}

#[test]
fn seed_and_local_trials_validate() {
    let trials: Vec<PathBuf> = std::fs::read_dir(common::root().join("trials"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(trials.len() >= 7);
    let out = bin()
        .current_dir(common::root())
        .arg("validate")
        .args(&trials)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn trial_1_plans_14_user_steps_times_3_tasks() {
    let root = common::root();
    let t = trial::load_trial(
        &root.join("trials/trial-1-users-pinned-3.yaml"),
        Some(&root.join("templates/veraison-aws.yaml")),
    )
    .unwrap();
    assert_eq!(
        t.user_steps,
        (0..14).map(|i| 2 + 8 * i).collect::<Vec<u32>>()
    );
    let plan = trial::plan(&t);
    assert_eq!(plan.load_phases().count(), 42);
    // 42 runs of 150 s plus per-run overheads (cooldown, clearing, metrics) and the infra steps.
    let total = plan.total().as_secs_f64();
    let load = 42.0 * 150.0;
    assert!(total > load && total < load * 1.3, "total {total}");
    // The order of the first steps: preflight, snapshot, pin, pin, wait ready, check, clear, load.
    let kinds: Vec<String> = plan
        .steps
        .iter()
        .take(8)
        .map(|s| {
            format!("{:?}", s.step)
                .split([' ', '{', '('])
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "Preflight",
            "SnapshotInfra",
            "SetCapacity",
            "SetCapacity",
            "WaitReady",
            "CheckTarget",
            "ClearStores",
            "Load"
        ]
    );
    // The CLI prints the same count and total.
    let out = bin()
        .current_dir(&root)
        .args([
            "plan",
            "trials/trial-1-users-pinned-3.yaml",
            "--env",
            "templates/veraison-aws.yaml",
            "--offline",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("42 load runs"), "{text}");
}

#[test]
fn trial_3_counts_after_each_of_six_iterations() {
    let root = common::root();
    let t = trial::load_trial(
        &root.join("trials/trial-3-store-weight.yaml"),
        Some(&root.join("templates/veraison-aws.yaml")),
    )
    .unwrap();
    let plan = trial::plan(&t);
    let runs: Vec<&str> = plan.load_phases().map(|p| p.run_id.as_str()).collect();
    assert_eq!(runs.len(), 12);
    assert_eq!(&runs[..2], ["it1-u015-provision", "it1-u015-verify"]);
    let counts = plan
        .steps
        .iter()
        .filter(|s| matches!(s.step, trial::Step::CountStores { .. }))
        .count();
    assert_eq!(counts, 6);
}

fn yaml_fragment() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "name",
        "environment",
        "runs",
        "users",
        "from",
        "to",
        "step",
        "duration",
        "tasks",
        "infra",
        "pin",
        "min",
        "max",
        "stores",
        "clear",
        "arrival",
        "rate",
        "wait",
        "between",
        "metrics",
        "http-tasks",
        "services",
        "url",
        "aws",
        "account",
        "zz",
    ]);
    let scalar = prop::sample::select(vec![
        "1",
        "0",
        "-3",
        "150s",
        "x",
        "[verify]",
        "{ pin: 3 }",
        "10/s",
        "null",
        "~",
        "'",
        "\"a",
        "[",
        "{",
        ":",
        "- a",
        "&a",
        "*a",
        "!!int x",
    ]);
    prop::collection::vec((0usize..4, key, scalar), 0..12).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(indent, k, v)| format!("{}{k}: {v}\n", "  ".repeat(indent)))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn random_yaml_never_panics(text in yaml_fragment(), noise in ".{0,40}") {
        for t in [text.clone(), format!("{text}{noise}"), noise.clone()] {
            let source = Source::from_text(Path::new("fuzz.yaml"), t);
            let (_, d1) = deserialize_all::<TrialFile>(&source);
            let (_, d2) = deserialize_all::<EnvironmentFile>(&source);
            for d in d1.iter().chain(&d2) {
                // Every diagnostic can be printed and names the file.
                prop_assert!(d.to_string().starts_with("fuzz.yaml"));
            }
        }
    }
}

/// Values that break naive numeric handling: NaN, infinities, negatives, huge and tiny numbers,
/// and strings that parse into the same.
fn number() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "0",
        "-1",
        "1",
        "2",
        "0.5",
        "1e30",
        "-1e30",
        ".nan",
        ".inf",
        "-.inf",
        "4294967296",
        "9223372036854775807",
        "1e-9",
        "100000",
        "100001",
        "\"1e30s\"",
        "\"nan/s\"",
        "\"inf/s\"",
        "\"-5/s\"",
        "\"99999999999999999999s\"",
        "\"0s\"",
        "\"1ns\"",
        "\"10/s\"",
        "\"150s\"",
        "\"31d\"",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    /// Every numeric field of a trial, given any of the values above: validation answers (an
    /// error naming the file, or a trial) and never panics, and a trial that validates plans
    /// to finite, bounded steps.
    #[test]
    fn numeric_fields_never_panic(v in prop::collection::vec(number(), 16), arrival in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let load = if arrival {
            format!("  arrival: {{ rate: {}, to: {}, max-in-flight: {} }}\n", v[0], v[1], v[2])
        } else {
            format!("  users: {{ from: {}, to: {}, step: {} }}\n  spawn-rate: {}\n", v[0], v[1], v[2], v[3])
        };
        let text = format!(
            "name: numbers\ninfra:\n  verification: {{ min: {}, max: {}, desired: {} }}\n  provisioning: {{ pin: {} }}\n  ready-timeout: {}\n  sample-every: {}\nruns:\n{load}  duration: {}\n  warmup: {}\n  cooldown: {}\n  request-timeout: {}\n  iterations: {}\n  wait: {{ between: [{}, {}] }}\n  tasks: [verify]\nmetrics-settle: {}\n",
            v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15], v[3], v[0]
        );
        let file = common::write(dir.path(), "numbers.yaml", &text);
        let env = common::root().join("templates/veraison-aws.yaml");
        match trial::load_trial(&file, Some(&env)) {
            Err(d) => {
                for line in d.0.iter() {
                    prop_assert!(line.to_string().starts_with(file.to_str().unwrap()));
                }
            }
            Ok(t) => {
                let plan = trial::plan(&t);
                prop_assert!(plan.total().as_secs_f64().is_finite());
                for p in plan.load_phases() {
                    prop_assert!(p.duration <= trialrunner::trial::limits::RUN);
                    prop_assert!(p.users.unwrap_or(1) as i64 <= trialrunner::trial::limits::USERS);
                    if let Some(a) = p.arrival {
                        prop_assert!(a.rate.0.is_finite() && a.rate.0 > 0.0);
                    }
                }
            }
        }
    }
}

/// The manifest keeps the trial as JSON; `report --refresh-metrics` reads it back. Every
/// trial in the project survives the round trip unchanged.
#[test]
fn trials_round_trip_through_the_manifests_json() {
    let mut files = Vec::new();
    for dir in ["trials", "trials/rehearsal"] {
        for e in std::fs::read_dir(common::root().join(dir))
            .unwrap()
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "yaml") {
                files.push(e.path());
            }
        }
    }
    assert!(files.len() >= 10);
    for f in files {
        let spec: TrialFile = serde_yaml::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        let back: TrialFile = serde_json::from_value(json.clone())
            .unwrap_or_else(|e| panic!("{}: {e}\n{json}", f.display()));
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            json,
            "{}",
            f.display()
        );
    }
    // The less common shapes too.
    let text = "name: x\nruns: { users: [1, 2], duration: 1s, spawn-rate: 5/s, wait: { between: [1s, 2s] }, tasks: [verify] }\n";
    let spec: TrialFile = serde_yaml::from_str(text).unwrap();
    let json = serde_json::to_value(&spec).unwrap();
    let back: TrialFile = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), json);
}

/// The JSON Schemas and the field reference in docs/ are generated from the types that parse
/// the files; CI fails when they are not current.
#[test]
fn the_schemas_and_the_reference_in_docs_are_current() {
    use trialrunner::trial::schema;
    let docs = common::root().join("docs");
    for (file, now) in [
        (
            "trial.schema.json",
            format!("{:#}\n", schema::trial_schema()),
        ),
        (
            "environment.schema.json",
            format!("{:#}\n", schema::environment_schema()),
        ),
        ("reference.md", schema::reference_markdown()),
    ] {
        let what = file.split('.').next().unwrap();
        let what = if what == "reference" {
            "reference"
        } else {
            what
        };
        let kept = std::fs::read_to_string(docs.join(file)).unwrap_or_default();
        assert!(
            kept == now,
            "docs/{file} is not current: run `cargo run -- schema {what} > docs/{file}`"
        );
    }
    // Every trial and environment in the project points editors at the schema.
    for dir in ["trials", "trials/rehearsal", "templates"] {
        for e in std::fs::read_dir(common::root().join(dir))
            .unwrap()
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "yaml") {
                let text = std::fs::read_to_string(e.path()).unwrap();
                assert!(
                    text.starts_with("# yaml-language-server: $schema="),
                    "{}",
                    e.path().display()
                );
            }
        }
    }
}

/// What a new user's typos get: the nearest field name, the shapes a field accepts in words,
/// and no second error that only echoes the first (a field removed to find further errors is
/// not also "missing").
#[test]
fn typos_get_a_suggestion_and_no_echoes() {
    let dir = tempfile::tempdir().unwrap();
    let local = std::fs::read_to_string(common::root().join("trials/local-users.yaml")).unwrap();
    let env = common::root().join("templates/local.yaml");
    let check = |name: &str, text: String| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let out = bin()
            .args(["validate", "--env"])
            .arg(&env)
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let typo = check("typo.yaml", local.replacen("duration:", "durration:", 1));
    assert!(typo.contains("did you mean `duration`?"), "{typo}");
    assert!(!typo.contains("missing field `duration`"), "{typo}");
    let users = check("users.yaml", local.replacen("to: 10", "to: ten", 1));
    assert!(
        users.contains("runs.users: not a form this field takes"),
        "{users}"
    );
    assert!(users.contains("{ from: 2, to: 106, step: 8 }"), "{users}");
    assert!(!users.contains("untagged"), "{users}");
    assert!(!users.contains("missing `users` or `arrival`"), "{users}");
    let seed =
        std::fs::read_to_string(common::root().join("trials/trial-1-users-pinned-3.yaml")).unwrap();
    let pin = check("pin.yaml", seed.replacen("pin: 3", "pin: \"three\"", 1));
    assert!(pin.contains("expected a whole number"), "{pin}");
    assert!(!pin.contains("i64"), "{pin}");
    assert!(!pin.contains("write either"), "{pin}");
}

/// `validate trial.yaml env.yaml`: the trial is checked against the environment given beside
/// it (by its `name:`), not one looked up elsewhere.
#[test]
fn a_trial_binds_the_environment_given_in_the_same_call() {
    let dir = tempfile::tempdir().unwrap();
    let trial = dir.path().join("t.yaml");
    std::fs::write(
        &trial,
        std::fs::read_to_string(common::root().join("trials/local-users.yaml"))
            .unwrap()
            .replacen("environment: local", "environment: truth", 1),
    )
    .unwrap();
    let env_dir = dir.path().join("elsewhere");
    std::fs::create_dir(&env_dir).unwrap();
    let env = env_dir.join("truth-env.yaml");
    std::fs::write(
        &env,
        std::fs::read_to_string(common::root().join("templates/local.yaml"))
            .unwrap()
            .replacen("name: local", "name: truth", 1),
    )
    .unwrap();
    let alone = bin().arg("validate").arg(&trial).output().unwrap();
    assert_eq!(alone.status.code(), Some(2));
    let both = bin()
        .arg("validate")
        .arg(&trial)
        .arg(&env)
        .output()
        .unwrap();
    assert_eq!(
        both.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&both.stderr)
    );
}

/// `plan` against an AWS endpoint that does not answer: the plan is printed, the environment it
/// bound and why are said, the failure is one readable line per call (no SDK debug dump), the
/// look is bounded, and the exit code says it could not read what it will change (3).
#[test]
fn a_plan_that_cannot_read_aws_says_so_in_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let env = dir.path().join("dead.yaml");
    std::fs::write(
        &env,
        std::fs::read_to_string(common::root().join("templates/veraison-aws.yaml"))
            .unwrap()
            .replacen("name: veraison-aws", "name: dead", 1)
            .replacen(
                "  profile: veraison\n",
                &format!("  endpoint: http://127.0.0.1:{port}\n"),
                1,
            ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = bin()
        .current_dir(common::root())
        .args(["plan", "trials/trial-1-users-pinned-3.yaml", "--env"])
        .arg(&env)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(50));
    assert!(stdout.contains("42 load runs"), "{stdout}");
    assert!(
        stderr.contains(&format!("environment `dead` from {}", env.display())),
        "{stderr}"
    );
    let credentials = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("credentials"))
        .unwrap();
    assert!(credentials.contains("not checked"), "{credentials}");
    assert!(
        !stdout.contains("DispatchFailure") && !stdout.contains("{ "),
        "{stdout}"
    );
}

/// A trial that changes the database plans a `change database` step after the groups'
/// settings (its RDS waits in the estimate: minutes for a class, a reboot for
/// `max_connections`), shows each setting it changes (`--offline`: before unknown), and a
/// variant's `database` goes over the trial's field by field.
#[test]
fn a_database_change_is_planned_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let trial = common::write(
        dir.path(),
        "db.yaml",
        "name: db\ninfra:\n  verification: { pin: 2 }\n  database: { instance-class: db.t3.medium, max-connections: 200 }\nvariants:\n  - name: few\n    infra: { database: { max-connections: 50 } }\nruns: { users: 2, duration: 5s, tasks: [verify] }\n",
    );
    let env = common::root().join("templates/veraison-aws.yaml");
    let t = trial::load_trial(&trial, Some(&env)).unwrap();
    let plan = trial::plan(&t);
    let kinds: Vec<&str> = plan.steps.iter().map(|s| s.step.kind()).collect();
    let at = |k: &str| kinds.iter().position(|x| *x == k).unwrap();
    assert!(at("set-capacity") < at("change-database"), "{kinds:?}");
    assert!(at("change-database") < at("wait-ready"), "{kinds:?}");
    let change = &plan.steps[at("change-database")];
    assert_eq!(
        change.estimate.as_secs(),
        600 + 90,
        "a class change and a reboot"
    );
    assert!(
        plan.steps[at("restore-infra")].estimate.as_secs() > 600,
        "and as long again to put it back"
    );
    let changes = trial::plan::changes(&t);
    let db = changes.database.as_ref().unwrap();
    assert_eq!(db.instance, "auto");
    let settings: Vec<(&str, &str)> = db
        .settings
        .iter()
        .map(|c| (c.setting.as_str(), c.after.as_str()))
        .collect();
    assert_eq!(
        settings,
        [
            ("instance-class", "db.t3.medium"),
            ("max-connections", "200 (applied by a reboot)"),
            (
                "parameter-group",
                "a copy of its own made for the trial (deleted on restore)"
            ),
        ]
    );
    let text = changes.to_string();
    assert!(
        text.contains("  database      the deployment's RDS instance")
            && text
                .contains("instance-class                   not read (--offline) → db.t3.medium"),
        "{text}"
    );
    let few = t.under(&t.variants[0]);
    let merged = few.spec.infra.database.as_ref().unwrap();
    assert_eq!(
        (merged.instance_class.as_deref(), merged.max_connections),
        (Some("db.t3.medium"), Some(50)),
        "the variant's max-connections over the trial's class"
    );
}
