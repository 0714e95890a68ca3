//! The shared fixtures really start the servers the other test binaries rely on.

mod common;

#[test]
fn moto_answers_and_resets() {
    let m = common::moto();
    m.reset();
    let out = std::process::Command::new("curl")
        .args(["-s", &format!("{}/moto-api/data.json", m.url)])
        .output();
    // curl may be absent; the reset above already proved moto answers over HTTP.
    if let Ok(o) = out {
        if o.status.success() {
            assert!(String::from_utf8_lossy(&o.stdout).contains('{'));
        }
    }
}

#[test]
fn postgres_runs_queries_in_its_own_database() {
    let pg = common::postgres();
    let db = pg.database("fixture");
    pg.psql(&db, "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)");
    assert_eq!(pg.psql(&db, "SELECT sum(x) FROM t"), "3");
    assert_eq!(
        pg.psql(&db, "SHOW server_version_num")
            .chars()
            .take(2)
            .collect::<String>(),
        "15"
    );
}

#[test]
fn memcached_stores_and_flushes() {
    let mc = common::memcached();
    assert_eq!(
        common::memcached_cmd(&mc.addr, "set k 0 60 2\r\nhi\r\n"),
        "STORED\r\n"
    );
    assert!(common::memcached_cmd(&mc.addr, "get k\r\n").contains("hi"));
    assert_eq!(common::memcached_cmd(&mc.addr, "flush_all\r\n"), "OK\r\n");
    assert_eq!(common::memcached_cmd(&mc.addr, "get k\r\n"), "END\r\n");
}
