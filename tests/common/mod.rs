//! Shared test fixtures: real servers on free loopback ports, started once per test binary,
//! stopped by their own process id when the binary exits.
//!
//! * `moto()`      — moto_server (AWS emulator); `reset()` between tests.
//! * `postgres()`  — a throwaway PostgreSQL 15 cluster (`initdb` in a temp dir); `database()`
//!   gives each test its own database.
//! * `memcached()` — memcached.
//!
//! Every fixture waits for readiness with a probe, never a fixed sleep.

#![allow(dead_code)]

pub mod awsfault;
pub mod browser;
pub mod cdp;
pub mod deployment;
pub mod hang;
pub mod ssmagent;
pub mod tls;
pub mod watch;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A free loopback port for a server a test starts later, or for none (a port nothing listens
/// on). Taken below the kernel's ephemeral range, where no outgoing connection's local port can
/// land between the pick and the server's bind (a port from `bind 0` could), and never handed
/// out twice by one test binary (two `bind 0` back to back may return the same).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, span) = (ephemeral_low.saturating_sub(12_000).max(1025), 12_000);
    let mut given = GIVEN.lock().unwrap();
    let start: u16 = rand::random::<u16>() % span;
    for i in 0..span {
        let port = low + (start + i) % span;
        if port >= ephemeral_low || given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free loopback port in {low}..{ephemeral_low}")
}

/// Polls `ready` until it holds or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < timeout,
            "{what} not ready after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the upstream Veraison test vectors are: `$VERAISON_TESTDATA`, else
/// `../shared/veraison-testdata` beside the project. Read there, never copied.
pub fn testdata_dir() -> Option<PathBuf> {
    std::env::var_os("VERAISON_TESTDATA")
        .map(PathBuf::from)
        .or_else(|| Some(root().join("../shared/veraison-testdata")))
        .filter(|d| d.join("a-perf-psa.good.cbor").is_file())
}

static SKIP_SAID: OnceLock<()> = OnceLock::new();

/// The upstream vectors, for a conformance test. Without them the test is skipped with one
/// visible line (written past the test harness's capture), except under CI (`CI=true`), where
/// a missing vector set is a failure: CI always runs the conformance tests.
pub fn upstream_vectors(test: &str) -> Option<PathBuf> {
    if let Some(d) = testdata_dir() {
        return Some(d);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "{test}: the upstream Veraison vectors are missing under CI: set VERAISON_TESTDATA or provide ../shared/veraison-testdata"
    );
    SKIP_SAID.get_or_init(|| {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED conformance tests against the upstream Veraison vectors (first: {test}): not found; set VERAISON_TESTDATA=/path/to/veraison-testdata to run them"
        );
    });
    None
}

/// One upstream vector's bytes.
pub fn vector_in(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Children to kill when the test binary exits.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static CLEANUP: OnceLock<()> = OnceLock::new();

extern "C" fn kill_children() {
    if let Ok(pids) = CHILDREN.lock() {
        for pid in pids.iter() {
            // SAFETY: kill with a pid we started.
            unsafe {
                libc::kill(*pid as i32, libc::SIGKILL);
            }
        }
    }
    if let Some(pg) = PG.get() {
        pg.stop();
    }
}

fn track(child: &Child) {
    CLEANUP.get_or_init(|| {
        // SAFETY: registering a plain extern "C" fn.
        unsafe {
            libc::atexit(kill_children);
        }
    });
    CHILDREN.lock().unwrap().push(child.id());
}

// ------------------------------------------------------------------------------------- moto

/// A running moto_server.
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _child: Mutex<Child>,
}

fn moto_binary() -> PathBuf {
    std::env::var_os("TRIALRUNNER_MOTO")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv-moto/bin/moto_server"))
}

fn http(method: &str, url: &str) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, out))
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// The binary's moto_server (started on first use).
pub fn moto() -> &'static Moto {
    MOTO.get_or_init(|| start_moto(&[], None))
}

/// A moto_server of its own, with these environment variables (e.g.
/// `INITIAL_NO_AUTH_ACTION_COUNT`, which makes it enforce IAM) and, when given, Python run in
/// its interpreter before the server starts (a patch of an emulator quirk, said where it is used).
pub fn start_moto(env: &[(&str, &str)], prelude: Option<&str>) -> Moto {
    let bin = moto_binary();
    assert!(
        bin.exists(),
        "moto_server not found at {} (run scripts/install-test-deps)",
        bin.display()
    );
    let port = free_port();
    let mut command = match prelude {
        None => Command::new(&bin),
        Some(code) => {
            let mut c = Command::new(bin.with_file_name("python3"));
            c.arg("-c").arg(format!(
                "{code}\nimport sys\nfrom moto.server import main\nsys.exit(main())"
            ));
            c
        }
    };
    let child = command
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    track(&child);
    let url = format!("http://127.0.0.1:{port}");
    wait_until("moto_server", Duration::from_secs(60), || {
        http("GET", &format!("{url}/moto-api/")).is_some_and(|(c, _)| c == 200)
    });
    Moto {
        url,
        _child: Mutex::new(child),
    }
}

impl Moto {
    /// Empties every model.
    pub fn reset(&self) {
        let (code, _) =
            http("POST", &format!("{}/moto-api/reset", self.url)).expect("moto answers");
        assert_eq!(code, 200);
    }
}

// ------------------------------------------------------------------------------------- PostgreSQL

/// A throwaway PostgreSQL cluster.
pub struct Postgres {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    counter: Mutex<u32>,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user.
fn as_postgres(args: &[&str]) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).args(args);
        c
    } else {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        c
    }
}

static PG: OnceLock<Postgres> = OnceLock::new();

/// The binary's PostgreSQL cluster (started on first use).
pub fn postgres() -> &'static Postgres {
    PG.get_or_init(|| Postgres::start(200))
}

impl Postgres {
    /// A cluster of its own with this `max_connections`, stopped when dropped (the binary's
    /// shared one, [`postgres`], never is).
    pub fn start(max_connections: u32) -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("trialrunner-pg")
            .tempdir()
            .unwrap()
            .keep();
        let _ = Command::new("chown")
            .args(["-R", "postgres", dir.to_str().unwrap()])
            .status();
        let data = dir.join("data");
        let init = as_postgres(&[
            &format!("{PG_BIN}/initdb"),
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("initdb runs");
        assert!(init.success(), "initdb failed");
        let port = free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections={max_connections}",
            dir.display()
        );
        let start = as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            data.to_str().unwrap(),
            "-l",
            dir.join("log").to_str().unwrap(),
            "-w",
            "-o",
            &opts,
            "start",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("pg_ctl runs");
        assert!(
            start.success(),
            "pg_ctl start failed: {}",
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
        CLEANUP.get_or_init(|| unsafe {
            libc::atexit(kill_children);
        });
        Postgres {
            port,
            dir,
            counter: Mutex::new(0),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Postgres {
    /// A conninfo for a database.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        )
    }

    /// A new empty database for one test; returns its name.
    pub fn database(&self, prefix: &str) -> String {
        let n = {
            let mut c = self.counter.lock().unwrap();
            *c += 1;
            *c
        };
        let name = format!("{prefix}_{n}_{}", std::process::id());
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                &format!("CREATE DATABASE {name}"),
            ])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        name
    }

    /// Runs SQL with psql, returns stdout (tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn stop(&self) {
        let _ = as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            self.dir.join("data").to_str().unwrap(),
            "-m",
            "immediate",
            "stop",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// The cluster's data directory (for editing pg_hba.conf in auth tests).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Reloads the configuration.
    pub fn reload(&self) {
        let ok = as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            self.data_dir().to_str().unwrap(),
            "reload",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
        assert!(ok.success());
    }
}

// ------------------------------------------------------------------------------------- memcached

/// A running memcached.
pub struct Memcached {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    _child: Mutex<Child>,
}

/// Sends one memcached text command and reads until `END`/a status line.
pub fn memcached_cmd(addr: &str, cmd: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(cmd.as_bytes()).unwrap();
    let mut buf = [0u8; 65536];
    let mut out = String::new();
    loop {
        let n = s.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
        if [
            "END\r\n",
            "STORED\r\n",
            "OK\r\n",
            "ERROR\r\n",
            "NOT_STORED\r\n",
            "DELETED\r\n",
            "NOT_FOUND\r\n",
        ]
        .iter()
        .any(|e| out.ends_with(e))
        {
            break;
        }
    }
    out
}

static MEMCACHED: OnceLock<Memcached> = OnceLock::new();

/// The binary's memcached (started on first use).
pub fn memcached() -> &'static Memcached {
    MEMCACHED.get_or_init(|| {
        let port = free_port();
        let mut cmd = Command::new("memcached");
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "root"]);
        }
        let child = cmd
            .args(["-l", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("memcached starts");
        track(&child);
        let addr = format!("127.0.0.1:{port}");
        wait_until("memcached", Duration::from_secs(20), || {
            TcpStream::connect(&addr).is_ok()
                && memcached_cmd(&addr, "stats\r\n").contains("STAT pid")
        });
        Memcached {
            addr,
            _child: Mutex::new(child),
        }
    })
}

/// Writes a file and returns its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

// ------------------------------------------------------------------------------------- sshd

/// A throwaway sshd on loopback accepting one generated key for the current user.
pub struct Sshd {
    /// Its port.
    pub port: u16,
    /// The client's private key.
    pub identity: PathBuf,
    /// The user to log in as.
    pub user: String,
    _dir: tempfile::TempDir,
    _child: Mutex<Child>,
}

static SSHD: OnceLock<Option<Sshd>> = OnceLock::new();

/// The binary's sshd, or `None` where sshd cannot run (then tests check the failure path only).
pub fn sshd() -> Option<&'static Sshd> {
    SSHD.get_or_init(|| {
        if !Path::new("/usr/sbin/sshd").exists() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let keygen = |name: &str| {
            let p = dir.path().join(name);
            let ok = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f", p.to_str().unwrap()]).status().unwrap();
            assert!(ok.success());
            p
        };
        let host_key = keygen("host");
        let identity = keygen("user");
        std::fs::copy(identity.with_extension("pub"), dir.path().join("authorized_keys")).unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = free_port();
        let user = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "root".into());
        let config = write(
            dir.path(),
            "sshd_config",
            &format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nPidFile none\nAllowTcpForwarding yes\n",
                host_key.display(),
                dir.path().join("authorized_keys").display()
            ),
        );
        let mut child = Command::new("/usr/sbin/sshd").args(["-D", "-e", "-f", config.to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().ok()?;
        track(&child);
        // sshd that cannot run here (not root, no privilege separation) exits: the failure path
        // only. One that runs but is slow to listen on a busy machine is waited for, not
        // skipped: a slow minute must not quietly drop the tunnel's tests.
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return None;
            }
            assert!(start.elapsed() < Duration::from_secs(90), "sshd runs but does not listen on {port} after 90 s");
            std::thread::sleep(Duration::from_millis(25));
        }
        Some(Sshd { port, identity, user, _dir: dir, _child: Mutex::new(child) })
    })
    .as_ref()
}

/// What a finished command printed, and how it ended.
pub struct Finished {
    /// Its exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Finished {
    /// Everything it printed, stdout first.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` to its end and asserts its exit code; a mismatch shows everything it printed.
pub fn expect_exit(cmd: &mut Command, code: i32) -> Finished {
    let out = cmd.output().expect("the command starts");
    let done = Finished {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(
        done.code,
        Some(code),
        "{cmd:?} exited {:?}, expected {code}:\n{}",
        out.status,
        done.text()
    );
    done
}
