//! Prints what a Cascade topic holds: messages per partition, transactions, and row changes per table
//! and operation. Used by `scripts/demo.sh`; handy for looking at any topic cdc wrote.
//!
//! usage: cargo run -p cdc --example topic_summary -- <brokers> <topic> [expected-row-changes] [timeout-secs]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use shared::{codec, Change};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        anyhow::bail!(
            "usage: topic_summary <brokers> <topic> [expected-row-changes] [timeout-secs]"
        );
    }
    let (brokers, topic) = (&args[1], &args[2]);
    let expected: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let timeout = Duration::from_secs(args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(30));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "cascade-topic-summary")
        .set("enable.auto.commit", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .filter(|n| *n > 0)
        .ok_or_else(|| anyhow::anyhow!("topic {topic} not found"))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;

    let mut per_partition = vec![0usize; partitions];
    let mut per_table: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    let mut commits = std::collections::BTreeSet::new();
    let mut rows = 0usize;
    let mut bytes = 0usize;
    let deadline = Instant::now() + timeout;
    let mut last_message = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(m) => {
                let m = m?;
                last_message = Instant::now();
                let payload = m.payload().unwrap_or_default();
                bytes += payload.len();
                per_partition[m.partition() as usize] += 1;
                let change = codec::decode(payload)?;
                match &change {
                    Change::Commit(txn) => {
                        commits.insert(txn.xid);
                    }
                    Change::Row(_) | Change::Truncate(_) | Change::Schema(_) => {
                        rows += 1;
                        let table = change.table().map(ToString::to_string).unwrap_or_default();
                        *per_table
                            .entry((table, change.action().as_str()))
                            .or_default() += 1;
                    }
                    Change::Begin(_) | Change::Message(_) => {}
                }
            }
            None if rows >= expected && last_message.elapsed() > Duration::from_secs(1) => break,
            None => {}
        }
    }
    println!(
        "topic {topic}: {} messages, {bytes} bytes, {partitions} partitions",
        per_partition.iter().sum::<usize>()
    );
    println!("  messages per partition: {per_partition:?}");
    println!("  source transactions: {}", commits.len());
    println!("  row changes: {rows}");
    println!("  {:<32} {:>4} {:>8}", "table", "op", "events");
    for ((table, op), n) in &per_table {
        println!("  {table:<32} {op:>4} {n:>8}");
    }
    if rows < expected {
        anyhow::bail!(
            "only {rows} of {expected} expected row changes reached Kafka within {timeout:?}"
        );
    }
    Ok(())
}
