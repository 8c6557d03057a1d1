//! `shard-router replay-dlq`: after the cause is fixed (a column widened, a constraint dropped),
//! applies the dead letters one replica got again.
//!
//! It reads `<prefix>.<shard>.dlq` from the beginning and takes the dead letters of this replica's
//! consumer group (header `cascade-consumer-group`). Each one holding a row change is applied to the
//! replica in one transaction with its `_cascade_dead_letters` row marked `replayed`, and only if that
//! row is still open: a dead letter is applied at most once however often the command runs, and one
//! the router has not recorded yet (it is about to) is left alone. Messages that hold no row change
//! (undecodable ones, a begin or commit out of its frame) cannot be applied; `--discard` marks them
//! `discarded`. The dead letters stay in Kafka.
//!
//! What a replay does not do: order. The row change is applied as it was when it was refused, so a
//! later change of the same row that the replica already holds is overwritten by the older values;
//! compare with the source afterwards (the verify tool) and re-copy such tables with
//! `cdc snapshot --table …`.

use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use shared::{codec, Change};

use crate::apply::Applier;
use crate::batch::Row;
use crate::config::ReplicaUrl;
use crate::dead_letter::{dlq_topic, Reason, Scan, Stored};
use crate::error::RouterError;
use crate::replica::AnyReplica;

/// Applies the dead letters of one replica again (see docs/event-format.md, "Dead letters").
#[derive(Debug, Clone, Parser)]
#[command(name = "shard-router replay-dlq", version, about, long_about = None)]
pub struct ReplayArgs {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: String,

    /// Prefix of the topics cdc writes (<prefix>.<shard>); the dead letters are in <prefix>.<shard>.dlq.
    #[arg(long, env = "TOPIC_PREFIX", default_value = "cascade")]
    pub topic_prefix: String,

    /// The shard whose dead letters to replay.
    #[arg(long, env = "ROUTER_SHARD", default_value = "main")]
    pub shard: String,

    /// The replica, as the router was given it. The password is never logged.
    #[arg(long, env = "ROUTER_REPLICA_URL", hide_env_values = true)]
    pub replica_url: ReplicaUrl,

    /// The replica's name in the consumer group id, as the router was given it (default
    /// <scheme>-<database>); only this group's dead letters are replayed.
    #[arg(long, env = "ROUTER_REPLICA_NAME")]
    pub replica_name: Option<String>,

    /// Only the dead letters of this source partition.
    #[arg(long)]
    pub partition: Option<i32>,

    /// Mark the dead letters that hold no row change (undecodable messages, a begin or commit out of
    /// its frame) as discarded instead of leaving them open.
    #[arg(long)]
    pub discard: bool,

    /// librdkafka properties for every Kafka client (TLS, SASL, tuning), as the router was given them.
    #[command(flatten)]
    pub kafka: shared::kafka::KafkaArgs,
}

impl ReplayArgs {
    fn topic(&self) -> String {
        format!("{}.{}", self.topic_prefix, self.shard)
    }

    fn group_id(&self) -> String {
        let name = self
            .replica_name
            .clone()
            .unwrap_or_else(|| self.replica_url.default_name());
        format!("{}.{}.{name}", self.topic_prefix, self.shard)
    }
}

/// What a replay did, counted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub replayed: usize,
    pub discarded: usize,
    /// Resolved already, or not recorded by the router yet.
    pub skipped: usize,
    /// Hold no row change (left open without `--discard`).
    pub not_replayable: usize,
    pub failed: usize,
}

/// Runs the command; prints one line per dead letter it acts on and a summary. Fails when a dead
/// letter could not be applied.
pub async fn run(args: ReplayArgs) -> Result<(), RouterError> {
    let topic = args.topic();
    let group = args.group_id();
    let dlq = dlq_topic(&topic);
    let replica = AnyReplica::connect(&args.replica_url, 2).await?;
    let applier = Applier::new(replica, topic.clone())?;
    let letters = read_all(&args.kafka_brokers, &args.kafka, &dlq).await?;
    let mut summary = Summary::default();
    for letter in letters.into_iter().filter(|l| {
        l.source_topic == topic
            && l.group == group
            && args.partition.is_none_or(|p| p == l.source_partition)
    }) {
        let (p, o) = (letter.source_partition, letter.source_offset);
        let at = format!("{topic} partition {p} offset {o}");
        let row = row_change(&letter);
        let outcome = match &row {
            Some(change) => {
                let row = Row {
                    offset: o,
                    change: change.clone(),
                };
                applier.replay(p, o, Some(&row)).await
            }
            None if args.discard => applier.replay(p, o, None).await,
            None => {
                summary.not_replayable += 1;
                println!(
                    "not replayable: {at} ({}): holds no row change; --discard marks it discarded",
                    letter.reason.map_or("unknown", Reason::as_str)
                );
                continue;
            }
        };
        match outcome {
            Ok(true) if row.is_some() => {
                summary.replayed += 1;
                println!("replayed: {at}");
            }
            Ok(true) => {
                summary.discarded += 1;
                println!("discarded: {at}");
            }
            Ok(false) => summary.skipped += 1,
            Err(error) => {
                summary.failed += 1;
                println!("failed: {at}: {}", shared::service::error_chain(&error));
            }
        }
    }
    println!(
        "replay-dlq {dlq} for group {group}: {} replayed, {} discarded, {} skipped (resolved already or not recorded yet), {} not replayable, {} failed",
        summary.replayed, summary.discarded, summary.skipped, summary.not_replayable, summary.failed
    );
    if summary.failed > 0 {
        return Err(RouterError::Replay {
            failed: summary.failed,
        });
    }
    Ok(())
}

/// The row change a dead letter holds, if it holds one.
fn row_change(letter: &Stored) -> Option<shared::RowChange> {
    if letter.reason == Some(Reason::Decode) {
        return None;
    }
    match codec::decode(letter.value.as_deref()?) {
        Ok(Change::Row(row)) => Some(row),
        _ => None,
    }
}

/// Every message of the DLQ, partition by partition.
async fn read_all(
    brokers: &str,
    options: &shared::kafka::KafkaArgs,
    topic: &str,
) -> Result<Vec<Stored>, RouterError> {
    let (brokers, name, options) = (brokers.to_owned(), topic.to_owned(), options.clone());
    let read = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = options
            .apply(ClientConfig::new().set("bootstrap.servers", &brokers))
            .create()?;
        let metadata = consumer.fetch_metadata(Some(&name), std::time::Duration::from_secs(10))?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none())
            .map_or(0, |t| t.partitions().len() as i32);
        let mut all = Vec::new();
        for partition in 0..partitions {
            let scan = Scan {
                brokers: brokers.clone(),
                options: options.clone(),
                topic: name.clone(),
                partition,
                from: 0,
            };
            all.extend(scan.run()?);
        }
        Ok(all)
    })
    .await
    .unwrap_or(Err(rdkafka::error::KafkaError::Canceled));
    read.map_err(|source| RouterError::Kafka {
        context: format!("reading the dead-letter topic {topic}"),
        source,
    })
}
