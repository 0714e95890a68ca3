//! Store drivers against the fixture's real PostgreSQL and memcached (and sshd for the tunnel).

mod common;

use std::sync::Arc;

use trialrunner::provider::{SessionCache, StoreDriver};
use trialrunner::secret::Secret;
use trialrunner::standin::store::KV_SCHEMA;
use trialrunner::stores::command::CommandStores;
use trialrunner::stores::memcached::MemcachedSessions;
use trialrunner::stores::postgres::{DbLocation, FixedLocation, PostgresStores};
use trialrunner::stores::sqlite::SqliteStores;
use trialrunner::stores::{CORIM_STORE_TABLES, KV_TABLES};
use trialrunner::trial::model::{TlsMode, TunnelSpec};

fn pg_driver(
    db: &str,
    tables: &'static [&'static str],
    tls: TlsMode,
    tunnel: Option<TunnelSpec>,
    password: &str,
) -> PostgresStores {
    let pg = common::postgres();
    PostgresStores {
        database: db.into(),
        user: "postgres".into(),
        tls,
        tunnel,
        tables,
        locator: Arc::new(FixedLocation(DbLocation {
            host: "127.0.0.1".into(),
            port: pg.port,
            password: Secret::new(password),
        })),
    }
}

fn kv_database(prefix: &str) -> String {
    let pg = common::postgres();
    let db = pg.database(prefix);
    pg.psql(&db, KV_SCHEMA);
    // Duplicate rows, as repeated provisioning leaves them in the K-V era.
    pg.psql(
        &db,
        "INSERT INTO endorsements SELECT 'PSA_IOT://0/x', '{}' FROM generate_series(1, 1234)",
    );
    pg.psql(
        &db,
        "INSERT INTO trust_anchors SELECT 'PSA_IOT://0/x/y', '{}' FROM generate_series(1, 321)",
    );
    pg.psql(&db, "INSERT INTO policies VALUES ('p', '{}')");
    db
}

#[tokio::test]
async fn key_value_tables_are_counted_exactly_cleared_and_verified_empty() {
    let db = kv_database("kv");
    let d = pg_driver(&db, KV_TABLES, TlsMode::Prefer, None, "unused");
    let c = d.count().await.unwrap();
    assert_eq!(
        (c["endorsements"], c["trust_anchors"], c["policies"]),
        (1234, 321, 1)
    );
    let before = d.clear().await.unwrap();
    assert_eq!(before, c, "clear returns the counts before");
    assert!(d.count().await.unwrap().values().all(|n| *n == 0));
    assert_eq!(
        common::postgres().psql(&db, "SELECT count(*) FROM endorsements"),
        "0"
    );
}

#[tokio::test]
async fn corim_store_tables_with_foreign_keys_are_cleared_too() {
    let pg = common::postgres();
    let db = pg.database("corim");
    pg.psql(
        &db,
        "CREATE TABLE manifests (id serial PRIMARY KEY, manifest_id text UNIQUE);
         CREATE TABLE key_triples (id serial PRIMARY KEY, manifest int REFERENCES manifests(id));
         CREATE TABLE value_triples (id serial PRIMARY KEY, manifest int REFERENCES manifests(id));
         CREATE TABLE policies (kv_key text NOT NULL, kv_val text NOT NULL);
         INSERT INTO manifests (manifest_id) SELECT 'm' || g FROM generate_series(1, 50) g;
         INSERT INTO key_triples (manifest) SELECT id FROM manifests;
         INSERT INTO value_triples (manifest) SELECT id FROM manifests, generate_series(1, 3);",
    );
    let d = pg_driver(&db, CORIM_STORE_TABLES, TlsMode::Disable, None, "unused");
    let c = d.count().await.unwrap();
    assert_eq!(
        (
            c["manifests"],
            c["key_triples"],
            c["value_triples"],
            c["policies"]
        ),
        (50, 50, 150, 0)
    );
    assert_eq!(
        c.len(),
        4,
        "tables the database lacks are not invented: {c:?}"
    );
    d.clear().await.unwrap();
    assert!(d.count().await.unwrap().values().all(|n| *n == 0));
}

#[tokio::test]
async fn a_database_without_veraisons_tables_is_a_clear_error() {
    let db = common::postgres().database("empty");
    let err = pg_driver(&db, KV_TABLES, TlsMode::Prefer, None, "x")
        .count()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("none of the tables endorsements, trust_anchors, policies"),
        "{err}"
    );
}

#[tokio::test]
async fn the_password_never_appears_in_errors() {
    let pg = common::postgres();
    let db = pg.database("pw");
    let planted = "planted-Secret-9f1c0e";
    pg.psql(&db, &format!("CREATE ROLE veraison LOGIN PASSWORD 'right-one'; GRANT ALL ON DATABASE {db} TO veraison"));
    // Password auth for that role (the cluster trusts everyone else).
    let hba = pg.data_dir().join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).unwrap();
    if !text.contains("veraison") {
        std::fs::write(
            &hba,
            format!("host all veraison 127.0.0.1/32 scram-sha-256\n{text}"),
        )
        .unwrap();
        pg.reload();
    }
    let mut d = pg_driver(&db, KV_TABLES, TlsMode::Prefer, None, planted);
    d.user = "veraison".into();
    let err = d.count().await.unwrap_err().to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains(planted), "{err}");
    assert!(!format!(
        "{:?}",
        DbLocation {
            host: "h".into(),
            port: 1,
            password: Secret::new(planted)
        }
    )
    .contains(planted));
}

#[tokio::test]
async fn through_an_ssh_tunnel() {
    let db = kv_database("tunnel");
    let Some(sshd) = common::sshd() else {
        eprintln!("sshd cannot run here: only the failure path is checked");
        return;
    };
    let spec = TunnelSpec {
        ssh: format!("{}@127.0.0.1", sshd.user),
        port: Some(sshd.port),
        identity: Some(sshd.identity.clone()),
        options: vec![
            "StrictHostKeyChecking=no".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "LogLevel=ERROR".into(),
        ],
    };
    let d = pg_driver(&db, KV_TABLES, TlsMode::Prefer, Some(spec), "unused");
    assert_eq!(d.count().await.unwrap()["endorsements"], 1234);
}

#[tokio::test]
async fn a_failed_tunnel_is_a_clear_error() {
    let db = kv_database("badtunnel");
    let spec = TunnelSpec {
        ssh: "nobody@127.0.0.1".into(),
        port: Some(common::free_port()),
        identity: None,
        options: vec![
            "StrictHostKeyChecking=no".into(),
            "UserKnownHostsFile=/dev/null".into(),
        ],
    };
    let d = pg_driver(&db, KV_TABLES, TlsMode::Prefer, Some(spec), "unused");
    let err = d.count().await.unwrap_err().to_string();
    // At once, with ssh's own reason: not after the tunnel's wait for a forward ran out.
    assert!(
        err.contains("SSH tunnel through nobody@127.0.0.1")
            && err.contains("failed")
            && err.contains("Connection refused"),
        "{err}"
    );
}

/// The memcached tests flush the one shared server: one at a time.
static MEMCACHED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn memcached_sessions_are_flushed() {
    let _one = MEMCACHED.lock().await;
    let mc = common::memcached();
    assert_eq!(
        common::memcached_cmd(&mc.addr, "set session://0/abc 0 150 2\r\nhi\r\n"),
        "STORED\r\n"
    );
    MemcachedSessions {
        servers: Box::new(vec![mc.addr.clone()]),
        tunnel: None,
    }
    .flush()
    .await
    .unwrap();
    assert_eq!(
        common::memcached_cmd(&mc.addr, "get session://0/abc\r\n"),
        "END\r\n"
    );
    assert!(
        common::memcached_cmd(&mc.addr, "stats\r\n").contains("STAT curr_items 0\r\n"),
        "verified empty"
    );
    let dead = format!("127.0.0.1:{}", common::free_port());
    let err = MemcachedSessions {
        servers: Box::new(vec![dead.clone()]),
        tunnel: None,
    }
    .flush()
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains(&dead), "{err}");
}

/// The cache is inside the VPC on AWS: it is flushed (and checked empty) through the jump host.
#[tokio::test]
async fn memcached_sessions_are_flushed_through_the_jump_host() {
    let Some(sshd) = common::sshd() else {
        eprintln!("sshd cannot run here: skipped");
        return;
    };
    let _one = MEMCACHED.lock().await;
    let mc = common::memcached();
    for i in 0..5 {
        common::memcached_cmd(&mc.addr, &format!("set tunnel-{i} 0 150 2\r\nhi\r\n"));
    }
    let sessions = MemcachedSessions {
        servers: Box::new(vec![mc.addr.clone()]),
        tunnel: Some(TunnelSpec {
            ssh: format!("{}@127.0.0.1", sshd.user),
            port: Some(sshd.port),
            identity: Some(sshd.identity.clone()),
            options: vec![
                "StrictHostKeyChecking=no".into(),
                "UserKnownHostsFile=/dev/null".into(),
                "LogLevel=ERROR".into(),
            ],
        }),
    };
    let found = sessions.preflight().await.unwrap();
    assert!(
        found[0].starts_with(&format!("memcached {}", mc.addr)),
        "{found:?}"
    );
    sessions.flush().await.unwrap();
    assert_eq!(
        common::memcached_cmd(&mc.addr, "get tunnel-3\r\n"),
        "END\r\n"
    );
}

#[tokio::test]
async fn sqlite_store_files_are_counted_and_cleared() {
    let dir = tempfile::tempdir().unwrap();
    for (file, rows) in [
        ("en-store.sql", 30),
        ("ta-store.sql", 10),
        ("po-store.sql", 1),
    ] {
        let c = rusqlite::Connection::open(dir.path().join(file)).unwrap();
        c.execute_batch("CREATE TABLE kvstore (key text NOT NULL, vals text NOT NULL)")
            .unwrap();
        for i in 0..rows {
            c.execute("INSERT INTO kvstore VALUES ('k', ?1)", [i])
                .unwrap();
        }
    }
    let d = SqliteStores {
        dir: dir.path().into(),
    };
    let c = d.count().await.unwrap();
    assert_eq!(
        (c["endorsements"], c["trust_anchors"], c["policies"]),
        (30, 10, 1)
    );
    d.clear().await.unwrap();
    assert!(d.count().await.unwrap().values().all(|n| *n == 0));
}

#[tokio::test]
async fn command_stores_run_the_given_commands() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("cleared");
    let d = CommandStores {
        clear: format!("touch {}", marker.display()),
        count: "printf 'endorsements 7\\ntrust_anchors 2\\n'".into(),
    };
    assert_eq!(d.count().await.unwrap()["endorsements"], 7);
    d.clear().await.unwrap();
    assert!(marker.exists());
    let bad = CommandStores {
        clear: "exit 3".into(),
        count: "echo nothing".into(),
    };
    assert!(bad.count().await.is_err());
}

#[test]
fn clearing_a_non_disposable_environment_fails_at_validation_and_deletes_nothing() {
    let db = kv_database("keep");
    let pg = common::postgres();
    let dir = tempfile::tempdir().unwrap();
    let env = common::write(
        dir.path(),
        "env.yaml",
        &format!(
            "name: precious\nservices:\n  provisioning: {{ url: \"http://127.0.0.1:1\" }}\n  verification: {{ url: \"http://127.0.0.1:1\" }}\nstores:\n  postgres: {{ host: 127.0.0.1, port: {}, database: {db}, user: postgres, password-env: PGPW_TEST }}\n",
            pg.port
        ),
    );
    let trial = common::write(dir.path(), "t.yaml", "name: wipe\nenvironment: env.yaml\nstores: { clear: before-each-run }\nruns: { users: 1, duration: 1s, tasks: [verify] }\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trialrunner"))
        .env("PGPW_TEST", "x")
        .args(["run", trial.to_str().unwrap(), "--yes", "--out"])
        .arg(dir.path().join("r"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stores.clear") && stderr.contains("not marked disposable"),
        "{stderr}"
    );
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM endorsements"), "1234");
    // `stores clear` refuses too; `stores count` works and prints the counts.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trialrunner"))
        .env("PGPW_TEST", "x")
        .args(["stores", "clear", "--yes", "--env", env.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trialrunner"))
        .env("PGPW_TEST", "x")
        .args(["stores", "count", "--env", env.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("endorsements     1234"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM endorsements"), "1234");
}
