//! Shared support for cdc's integration tests: the local services, throwaway databases, the cdc
//! process, a Kafka topic reader and pg_recvlogical.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use shared::{Action, Column, Lsn, PkColumn};
pub use testkit::{connect, free_port, services, unique, Services};

/// A change as raw wire JSON, every field optional: the tests compare what wal2json printed with what
/// cdc published field by field, so they read both without the codec's checks (which are under test).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireEvent {
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xid: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<Lsn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nextlsn: Option<Lsn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<Column>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Vec<Column>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pk: Option<Vec<PkColumn>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactional: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl WireEvent {
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Creates a fresh database on the source and returns its URL.
pub async fn create_db(s: &Services, name: &str) -> String {
    testkit::create_pg_db(&s.source_url, name).await
}

/// A running `cdc` process; killed when dropped.
pub struct Cdc(testkit::Process);

impl Cdc {
    /// Starts cdc with the standard flags plus `extra`.
    pub fn start(s: &Services, source_url: &str, slot: &str, prefix: &str, extra: &[&str]) -> Cdc {
        let mut args: Vec<String> = [
            "--source-url",
            source_url,
            "--kafka-brokers",
            &s.kafka,
            "--slot",
            slot,
            "--topic-prefix",
            prefix,
            "--status-interval",
            "200ms",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        Cdc(testkit::Process::start(
            Path::new(env!("CARGO_BIN_EXE_cdc")),
            &format!("cdc-{slot}"),
            &args,
            &[("RUST_LOG", "info,cdc=debug")],
        ))
    }
}

impl Deref for Cdc {
    type Target = testkit::Process;
    fn deref(&self) -> &testkit::Process {
        &self.0
    }
}

impl DerefMut for Cdc {
    fn deref_mut(&mut self) -> &mut testkit::Process {
        &mut self.0
    }
}

/// Runs cdc to completion (for the failure cases) and returns (exit code, stderr).
pub fn run_cdc_to_exit(args: &[&str], timeout: Duration) -> (i32, String) {
    testkit::run_to_exit(Path::new(env!("CARGO_BIN_EXE_cdc")), args, timeout)
}

/// One message read back from Kafka.
#[derive(Debug, Clone)]
pub struct Msg {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub raw: Vec<u8>,
    pub event: WireEvent,
    pub format_header: Option<String>,
}

/// Reads every partition of a topic from the beginning.
pub struct TopicReader {
    consumer: BaseConsumer,
    pub partitions: i32,
    pub messages: Vec<Msg>,
}

impl TopicReader {
    /// Waits (up to `timeout`) for the topic to exist, then assigns all its partitions.
    pub fn open(kafka: &str, topic: &str, timeout: Duration) -> TopicReader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka)
            .set("group.id", unique("reader"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        let deadline = Instant::now() + timeout;
        let partitions = loop {
            let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5));
            if let Ok(md) = md {
                if let Some(t) = md
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic && !t.partitions().is_empty())
                {
                    break t.partitions().len() as i32;
                }
            }
            assert!(
                Instant::now() < deadline,
                "topic {topic} did not appear within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).expect("assign");
        TopicReader {
            consumer,
            partitions,
            messages: Vec::new(),
        }
    }

    /// Polls until `done(messages)` holds, failing after `timeout` with `what`.
    pub fn read_until(&mut self, timeout: Duration, what: &str, done: impl Fn(&[Msg]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.messages) {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; have {} messages",
                self.messages.len()
            );
            self.poll_once(Duration::from_millis(200));
        }
    }

    /// Keeps reading for `quiet` more (to catch extra, unexpected messages).
    pub fn read_for(&mut self, quiet: Duration) {
        let until = Instant::now() + quiet;
        while Instant::now() < until {
            self.poll_once(Duration::from_millis(100));
        }
    }

    /// Reads what is available (up to 2000 messages), waiting at most `wait` for the first one.
    fn poll_once(&mut self, wait: Duration) {
        let mut wait = wait;
        for _ in 0..2000 {
            if !self.poll_one(wait) {
                return;
            }
            wait = Duration::from_millis(5);
        }
    }

    fn poll_one(&mut self, wait: Duration) -> bool {
        let Some(r) = self.consumer.poll(wait) else {
            return false;
        };
        {
            let m = r.expect("kafka consume error");
            let raw = m.payload().unwrap_or_default().to_vec();
            let event = WireEvent::from_json(&raw).unwrap_or_else(|e| {
                panic!(
                    "undecodable message at {}/{}: {e}",
                    m.partition(),
                    m.offset()
                )
            });
            let format_header = m.headers().and_then(|h| {
                use rdkafka::message::Headers;
                h.iter()
                    .find(|h| h.key == shared::FORMAT_HEADER)
                    .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
            });
            self.messages.push(Msg {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                raw,
                event,
                format_header,
            });
        }
        true
    }
}

/// A row change of the source that cdc publishes: not one of cascade's own tables on the source
/// (snapshot requests, the schema-change triggers' `cascade.table_defs`).
pub fn is_published(e: &WireEvent) -> bool {
    e.action.is_row_change() && e.schema.as_deref() != Some("cascade")
}

/// Row-change count in a message list.
pub fn row_changes(msgs: &[Msg]) -> usize {
    msgs.iter()
        .filter(|m| m.event.action.is_row_change())
        .count()
}

/// The session settings cdc pins, for pg_recvlogical (via PGOPTIONS).
pub const PGOPTIONS: &str =
    "-c DateStyle=ISO,YMD -c TimeZone=UTC -c IntervalStyle=postgres -c extra_float_digits=1";

/// Creates a wal2json slot for pg_recvlogical on `db_url`.
pub async fn create_reference_slot(db_url: &str, slot: &str) {
    let c = connect(db_url).await;
    c.query_one(
        "SELECT pg_create_logical_replication_slot($1, 'wal2json')",
        &[&slot],
    )
    .await
    .expect("create reference slot");
}

/// Runs pg_recvlogical on `slot` up to the current WAL position with cdc's wal2json options and
/// returns its output, one event per line.
pub async fn pg_recvlogical(s: &Services, db_url: &str, slot: &str) -> Vec<WireEvent> {
    let c = connect(db_url).await;
    let end: String = c
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let cfg: tokio_postgres::Config = db_url.parse().unwrap();
    let host = match &cfg.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let password = cfg
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let out = std::env::temp_dir().join(format!("{slot}.jsonl"));
    let mut cmd = tokio::process::Command::new(format!("{}/pg_recvlogical", s.pg_bindir));
    cmd.args([
        "-h",
        &host,
        "-p",
        &cfg.get_ports()[0].to_string(),
        "-U",
        cfg.get_user().unwrap(),
    ])
    .args([
        "-d",
        cfg.get_dbname().unwrap(),
        "-S",
        slot,
        "--start",
        "--no-loop",
        "-E",
        &end,
        "-f",
    ])
    .arg(&out)
    .args([
        "-o",
        "format-version=2",
        "-o",
        "include-xids=1",
        "-o",
        "include-timestamp=1",
    ])
    .args([
        "-o",
        "include-lsn=1",
        "-o",
        "include-pk=1",
        "-o",
        "include-type-oids=1",
        "-o",
        "include-typmod=1",
    ])
    .args(["-o", "include-transaction=1"])
    .env("PGOPTIONS", PGOPTIONS)
    .env("PGPASSWORD", password)
    .stdin(Stdio::null())
    .kill_on_drop(true);
    let status = tokio::time::timeout(Duration::from_secs(60), cmd.status())
        .await
        .expect("pg_recvlogical did not reach the end position within 60s")
        .expect("run pg_recvlogical");
    assert!(status.success(), "pg_recvlogical failed: {status}");
    let text = std::fs::read_to_string(&out).expect("pg_recvlogical output");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            WireEvent::from_json(l.as_bytes())
                .unwrap_or_else(|e| panic!("pg_recvlogical line {l:?}: {e}"))
        })
        .collect()
}

/// A comparable rendering of a row change: everything wal2json said about it, values as raw text.
pub fn canonical(e: &WireEvent) -> String {
    serde_json::to_string(e).unwrap()
}

/// What cdc must publish for one wal2json row change: a key-changing update becomes a delete of the
/// old key and an upsert of the new key; a truncate goes to every partition.
pub fn expected_publications(e: &WireEvent, partitions: i32) -> Vec<WireEvent> {
    match e.action {
        Action::Update => {
            let pk: Vec<&str> = e.pk.iter().flatten().map(|p| p.name.as_str()).collect();
            let pick = |cols: &Option<Vec<shared::Column>>| -> Option<Vec<String>> {
                let cols = cols.as_ref()?;
                if pk.is_empty() {
                    return Some(cols.iter().map(|c| c.value.get().to_owned()).collect());
                }
                pk.iter()
                    .map(|k| {
                        cols.iter()
                            .find(|c| c.name == *k)
                            .map(|c| c.value.get().to_owned())
                    })
                    .collect()
            };
            match (pick(&e.identity), pick(&e.columns)) {
                (Some(old), Some(new)) if old != new => {
                    let mut d = e.clone();
                    d.action = Action::Delete;
                    d.columns = None;
                    let mut u = e.clone();
                    u.identity = None;
                    vec![d, u]
                }
                _ => vec![e.clone()],
            }
        }
        Action::Truncate => (0..partitions).map(|_| e.clone()).collect(),
        _ => vec![e.clone()],
    }
}

/// Checks the per-partition framing: every row change sits between a `B` and a `C` of its own
/// transaction, and frames do not nest. With `allow_cut_frames` (a cdc crash happened), a frame may be
/// cut short by a new `B`; the cut transaction must then appear later on that partition, complete.
pub fn assert_framing(msgs: &[Msg], partitions: i32, allow_cut_frames: bool) {
    for p in 0..partitions {
        let mut open: Option<u64> = None;
        let mut cut: Vec<u64> = Vec::new();
        let mut completed: std::collections::BTreeSet<u64> = Default::default();
        for m in msgs.iter().filter(|m| m.partition == p) {
            match m.event.action {
                Action::Begin => {
                    if let Some(x) = open {
                        assert!(
                            allow_cut_frames,
                            "partition {p} offset {}: B inside an open frame",
                            m.offset
                        );
                        cut.push(x);
                    }
                    open = m.event.xid;
                }
                Action::Commit => {
                    assert_eq!(
                        open, m.event.xid,
                        "partition {p} offset {}: C does not close its B",
                        m.offset
                    );
                    completed.extend(open);
                    open = None;
                }
                _ => assert_eq!(
                    open, m.event.xid,
                    "partition {p} offset {}: row change outside its transaction's frame",
                    m.offset
                ),
            }
        }
        assert!(
            open.is_none(),
            "partition {p}: the last frame is not closed"
        );
        for x in cut {
            assert!(
                completed.contains(&x),
                "partition {p}: transaction {x} was cut and never re-sent complete"
            );
        }
    }
}

/// Checks that each partition's row changes follow WAL order (positions in `reference`), ignoring
/// messages that repeat an earlier one (re-sent after a crash) when `allow_resend`.
pub fn assert_wal_order(
    msgs: &[Msg],
    reference: &[WireEvent],
    partitions: i32,
    allow_resend: bool,
) {
    let mut position: BTreeMap<String, usize> = BTreeMap::new();
    for (i, e) in reference.iter().enumerate() {
        for p in expected_publications(e, partitions) {
            position.entry(canonical(&p)).or_insert(i);
        }
    }
    for p in 0..partitions {
        let mut last: Option<usize> = None;
        for m in msgs
            .iter()
            .filter(|m| m.partition == p && m.event.action.is_row_change())
        {
            let c = canonical(&m.event);
            let pos = *position.get(&c).unwrap_or_else(|| {
                panic!(
                    "partition {p} offset {}: event not produced by wal2json: {c}",
                    m.offset
                )
            });
            if let Some(l) = last {
                if pos < l {
                    assert!(
                        allow_resend,
                        "partition {p} offset {}: out of WAL order ({pos} after {l})",
                        m.offset
                    );
                    continue;
                }
            }
            last = Some(pos);
        }
    }
}

/// Runs cdc on `slot` and `prefix` with the standard flags until it exits (for the refusals);
/// returns (exit code, stderr).
pub fn run_cdc_on(s: &Services, db_url: &str, slot: &str, prefix: &str) -> (i32, String) {
    run_cdc_to_exit(
        &[
            "--source-url",
            db_url,
            "--kafka-brokers",
            &s.kafka,
            "--slot",
            slot,
            "--topic-prefix",
            prefix,
            "--http-addr",
            "127.0.0.1:0",
        ],
        Duration::from_secs(60),
    )
}
