//! Support shared by the integration tests of every crate: the local services started by
//! `scripts/services.sh up`, unique names, throwaway PostgreSQL databases, and child processes
//! (`cdc`, `shard-router`) with their logs and HTTP endpoints; and in-memory stand-ins for unit tests of
//! the pipeline's loops (a scripted replication slot, a Kafka log). Test code: it panics with a clear
//! message instead of returning errors.

#![allow(clippy::unwrap_used)]

pub mod compare;
pub mod kafka_log;
pub mod memory_replica;
pub mod slot;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Connection strings of the services started by `scripts/services.sh up`.
#[derive(Debug, Clone)]
pub struct Services {
    pub source_url: String,
    pub kafka: String,
    pub replica_pg_url: String,
    pub mysql_url: String,
    pub sqlite_url: String,
    pub pg_bindir: String,
    /// The tansu binary, for a test that needs a broker of its own (to pause or stop it).
    pub tansu_bin: String,
    /// Prometheus started by the services script, and the directory of its file_sd target files.
    pub prometheus_url: String,
    pub prometheus_targets_dir: String,
    /// The throwaway CA that signed the TLS certificates of the local PostgreSQL and MariaDB
    /// servers (`CASCADE_CA_FILE`); empty when the services were started by an older script.
    pub ca_file: String,
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Reads the services from the environment, or from `target/services/env`.
pub fn services() -> Services {
    let mut vars: BTreeMap<String, String> = std::env::vars().collect();
    let file = repo_root().join("target/services/env");
    if !vars.contains_key("CDC_SOURCE_URL") {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|_| {
            panic!(
                "integration tests need the local services: run `scripts/services.sh up` first ({} is missing \
                 and CDC_SOURCE_URL is not set)",
                file.display()
            )
        });
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("export ") {
                if let Some((k, v)) = rest.split_once('=') {
                    vars.insert(k.to_owned(), v.trim_matches('\'').to_owned());
                }
            }
        }
    }
    let get = |k: &str| {
        vars.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} is not set (see target/services/env)"))
    };
    Services {
        source_url: get("CDC_SOURCE_URL"),
        kafka: get("KAFKA_BROKERS"),
        replica_pg_url: get("REPLICA_PG_URL"),
        mysql_url: get("MYSQL_URL"),
        sqlite_url: get("SQLITE_URL"),
        pg_bindir: vars
            .get("PG_BINDIR")
            .cloned()
            .unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into()),
        tansu_bin: vars.get("TANSU_BIN").cloned().unwrap_or_default(),
        prometheus_url: vars.get("PROMETHEUS_URL").cloned().unwrap_or_default(),
        prometheus_targets_dir: vars
            .get("PROMETHEUS_TARGETS_DIR")
            .cloned()
            .unwrap_or_default(),
        ca_file: vars.get("CASCADE_CA_FILE").cloned().unwrap_or_default(),
    }
}

/// A CA of a test's own (made with the openssl CLI), which signed none of the services' certificates.
pub fn throwaway_ca() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("other_ca"));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=not the cascade CA", "-keyout"])
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(dir.join("ca.pem"))
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("ca.pem")
}

/// A name unique to this test run: lowercase, safe as database, slot and topic name.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 100_000
    )
}

/// Replaces the database (last path segment) of a URL.
pub fn with_db(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("url has a path");
    format!("{base}/{db}")
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_postgres::connect(url, tokio_postgres::NoTls),
    )
    .await
    .unwrap_or_else(|_| panic!("timed out connecting to {url}"))
    .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL: {e}"));
    tokio::spawn(conn);
    client
}

/// Creates a fresh database on the PostgreSQL server of `server_url` and returns its URL.
pub async fn create_pg_db(server_url: &str, name: &str) -> String {
    let admin = connect(server_url).await;
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    with_db(server_url, name)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free port outside the kernel's ephemeral range (32768-60999 by default), so no outgoing
/// connection takes it while a [`TcpProxy`] is stopped and must listen on it again.
pub fn stable_free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = 20_000 + (std::process::id() % 4_000) * 3;
    for i in 0..10_000 {
        let port = 20_000 + ((start + NEXT.fetch_add(1, Ordering::Relaxed) + i) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    free_port()
}

/// The path of another workspace binary next to `known` (a `CARGO_BIN_EXE_*` path): integration
/// tests only get their own crate's binaries, and `cargo test --workspace` builds them all.
pub fn sibling_binary(known: &str, name: &str) -> PathBuf {
    let path = Path::new(known).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build -p {name}`; `cargo test --workspace` does)",
        path.display()
    );
    path
}

/// A running child process with its log in a file; killed when dropped.
pub struct Process {
    pub name: String,
    child: Child,
    pub http_port: u16,
    pub log: PathBuf,
}

impl Process {
    /// Starts `bin` with `args`; `--http-addr` is added with a free port.
    pub fn start(bin: &Path, name: &str, args: &[String], envs: &[(&str, &str)]) -> Process {
        let http_port = free_port();
        let log = std::env::temp_dir().join(format!("{name}-{http_port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            .envs(envs.iter().copied())
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(out);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Process {
            name: name.to_owned(),
            child,
            http_port,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status} before becoming ready; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if http_get(self.http_port, "/readyz").is_some_and(|(code, _)| code == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after {timeout:?}; log:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn metrics(&self) -> String {
        http_get(self.http_port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {timeout:?}; log:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> i32 {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        self.wait_exit(timeout)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a binary to completion (for the failure cases) and returns (exit code, stderr).
pub fn run_to_exit(bin: &Path, args: &[&str], timeout: Duration) -> (i32, String) {
    run_to_exit_env(bin, args, &[], timeout)
}

/// [`run_to_exit`] with extra environment variables.
pub fn run_to_exit_env(
    bin: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    timeout: Duration,
) -> (i32, String) {
    let mut child = Command::new(bin)
        .args(args)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "warn")
        .env("LOG_FORMAT", "text")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let deadline = Instant::now() + timeout;
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code().unwrap_or(-1), reader.join().unwrap());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {args:?} still running after {timeout:?}; stderr:\n{}",
                bin.display(),
                reader.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A tiny HTTP/1.0 GET (no client dependency needed for a few endpoints).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

/// Waits until `check` returns `Some`, polling every 100 ms; panics naming `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Drops a replication slot left by a test (its cdc must have stopped), so repeated runs do not use
/// up `max_replication_slots` or keep WAL on the throwaway server.
pub async fn drop_slot(server_url: &str, slot: &str) {
    let admin = connect(server_url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dropped = admin
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = $1 AND NOT active",
                &[&slot],
            )
            .await;
        let remaining = admin
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0);
        if dropped.is_ok() && remaining == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "slot {slot} is still in use after 10s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A TCP proxy on loopback in front of a service, to make it unreachable and reachable again while
/// the processes under test keep their configuration: [`TcpProxy::stop`] closes the port and cuts
/// every connection, [`TcpProxy::resume`] listens again on the same port, [`TcpProxy::freeze`]
/// makes the connections open so far half-open (kept, but nothing passes either way any more, like
/// a peer that vanished without a FIN or RST) while new connections work.
pub struct TcpProxy {
    pub port: u16,
    upstream: String,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    /// Connections numbered below this pass nothing.
    frozen_below: std::sync::Arc<AtomicU32>,
    next: std::sync::Arc<AtomicU32>,
}

impl TcpProxy {
    /// Starts forwarding a free local port to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> TcpProxy {
        let proxy = TcpProxy {
            port: stable_free_port(),
            upstream: upstream.to_owned(),
            tasks: Default::default(),
            frozen_below: Default::default(),
            next: Default::default(),
        };
        proxy.resume().await;
        proxy
    }

    /// Listens (again) and forwards new connections.
    pub async fn resume(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap_or_else(|e| panic!("proxy cannot listen on {}: {e}", self.port));
        let upstream = self.upstream.clone();
        let tasks = self.tasks.clone();
        let frozen_below = self.frozen_below.clone();
        let next = self.next.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let id = next.fetch_add(1, Ordering::SeqCst);
                let frozen_below = frozen_below.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(server) = tokio::net::TcpStream::connect(&upstream).await {
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        let frozen = move || frozen_below.load(Ordering::SeqCst) > id;
                        let up = forward(cr, sw, frozen.clone());
                        let down = forward(sr, cw, frozen);
                        let _ = tokio::join!(up, down);
                    }
                });
                tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }

    /// Closes the port and cuts every forwarded connection.
    pub fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Every connection open so far stops passing bytes, and stays open: half-open, as when the
    /// network between the two ends fails silently. New connections pass.
    pub fn freeze(&self) {
        self.frozen_below
            .store(self.next.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either ends, or forever holding what it read once `frozen` says so.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: impl Fn() -> bool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                if !frozen() {
                    let _ = to.shutdown().await;
                    return;
                }
                0
            }
            Ok(n) => n,
        };
        if frozen() {
            // Swallow everything and never answer: the connection is still up for both ends.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A tansu broker of one test's own, on a free port, in memory (`bin`: the services env's
/// `TANSU_BIN`): pausing it disturbs no other test. Killed when dropped.
pub struct Broker {
    child: Child,
    pub port: u16,
}

impl Broker {
    pub fn start(bin: &str) -> Broker {
        assert!(
            !bin.is_empty() && std::path::Path::new(bin).exists(),
            "TANSU_BIN ({bin:?}) is not the tansu binary: run scripts/services.sh up"
        );
        let port = free_port();
        let log = std::env::temp_dir().join(format!("chaos-tansu-{port}.log"));
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tansu: {e}"));
        wait_for(
            Duration::from_secs(30),
            "the test's tansu to listen",
            || TcpStream::connect(("127.0.0.1", port)).ok(),
        );
        Broker { child, port }
    }

    /// Sends `signal` (`-STOP`, `-CONT`) to the broker process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} tansu failed");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
