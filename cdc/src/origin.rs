//! Whether cdc may create its slot, and whether the slot and topics belong to the server it is
//! connected to.
//!
//! The rule: **cdc creates a slot only on its very first run for that slot and topic prefix.** The
//! proof that it ran before lives in Kafka, next to the data whose completeness is at stake:
//!
//! - the *origin record*: one record per slot, keyed by the slot name, in the topic
//!   `<prefix>-cdc-origin` (one partition, compacted). cdc writes it right after creating the slot
//!   (and on the first start of a version that did not write it yet); it names the PostgreSQL server
//!   (system identifier, timeline, database) and the slot's starting LSN;
//! - or records in any of the shard topics `<prefix>.<shard>` (high watermark > 0 on any partition):
//!   this covers topics written before the origin record existed, and a lost origin record.
//!   Retention deletes old records but never lowers the high watermark.
//!
//! What survives what: restarting cdc or its container, a DBA dropping the slot, a failover to a
//! standby (logical slots are not copied to physical standbys before PostgreSQL 17) — the proof is
//! in Kafka, so each ends in [`CdcError::SlotLost`]. Deleting the topics, or a broker that keeps
//! them in memory and restarts, removes the proof too: cdc then sees a first run, as it would for a
//! new prefix.
//!
//! The record's system identifier is compared with the connected server's on every start: another
//! server's slot (same name, same prefix) is refused with [`CdcError::OtherSource`]. A different
//! timeline with the slot present (a promoted standby with PostgreSQL 17's failover slots) is logged,
//! not refused: the slot carried its position over.
//!
//! [`decide`] is pure; [`identify`] reads the server's identity; the Kafka side is
//! [`crate::sink::origin_log`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::error::CdcError;

/// The version of the origin record's format.
pub const FORMAT: u32 = 1;

/// The topic holding the origin records of `prefix` (a `-`, not a `.`, so no shard's topic
/// `<prefix>.<shard>` can have its name).
pub fn topic(prefix: &str) -> String {
    format!("{prefix}-cdc-origin")
}

/// Which PostgreSQL server (and database) cdc is connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceId {
    pub system_identifier: String,
    pub timeline: u32,
    pub database: String,
}

/// The origin record: the slot and prefix were first streamed from this server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginRecord {
    pub format: u32,
    pub slot: String,
    pub topic_prefix: String,
    pub system_identifier: String,
    pub timeline: u32,
    pub database: String,
    /// Where the slot started, when this cdc created it (absent when recorded for an existing slot).
    pub slot_created_at: Option<String>,
    pub recorded_by: String,
    /// The partition count of each shard topic cdc publishes (absent in records of older versions).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub partitions: BTreeMap<String, i32>,
}

impl OriginRecord {
    pub fn new(
        slot: &str,
        prefix: &str,
        source: &SourceId,
        created_at: Option<String>,
        partitions: BTreeMap<String, i32>,
    ) -> Self {
        OriginRecord {
            partitions,
            format: FORMAT,
            slot: slot.to_owned(),
            topic_prefix: prefix.to_owned(),
            system_identifier: source.system_identifier.clone(),
            timeline: source.timeline,
            database: source.database.clone(),
            slot_created_at: created_at,
            recorded_by: format!("cdc {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Compares the shard topics' partition counts with those the record holds: a changed count is
/// refused ([`CdcError::PartitionsChanged`]); returns the record to write when it lacks some topics
/// (a record of an older version, a shard added to the routing file), None when it is complete.
pub fn check_partitions(
    record: &OriginRecord,
    now: &BTreeMap<String, i32>,
) -> Result<Option<OriginRecord>, CdcError> {
    for (topic, &count) in now {
        if let Some(&recorded) = record.partitions.get(topic) {
            if recorded != count {
                return Err(CdcError::PartitionsChanged {
                    slot: record.slot.clone(),
                    topic: topic.clone(),
                    recorded,
                    now: count,
                });
            }
        }
    }
    if now.keys().all(|t| record.partitions.contains_key(t)) {
        return Ok(None);
    }
    let mut next = record.clone();
    for (topic, &count) in now {
        next.partitions.entry(topic.clone()).or_insert(count);
    }
    Ok(Some(next))
}

/// Records found in a shard topic: cdc published there before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicData {
    pub topic: String,
    pub partition: i32,
    pub high_watermark: i64,
}

/// What this session does with the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The slot exists and the origin record matches: stream.
    Stream,
    /// The slot exists but no origin record does (a first run that stopped before writing it, or
    /// topics from before origin records): write it, then stream.
    RecordThenStream,
    /// First run for this slot and prefix: create the slot, write the record, stream.
    CreateSlot,
}

/// Decides from what the source and Kafka hold. `topic_data` is the first shard-topic partition
/// found with records, if any.
pub fn decide(
    slot: &str,
    prefix: &str,
    slot_exists: bool,
    record: Option<&OriginRecord>,
    topic_data: Option<&TopicData>,
    source: &SourceId,
) -> Result<Plan, CdcError> {
    if let Some(record) = record {
        if record.system_identifier != source.system_identifier {
            return Err(CdcError::OtherSource {
                slot: slot.to_owned(),
                prefix: prefix.to_owned(),
                recorded: record.system_identifier.clone(),
                actual: source.system_identifier.clone(),
            });
        }
    }
    match (slot_exists, record, topic_data) {
        (true, Some(_), _) => Ok(Plan::Stream),
        (true, None, _) => Ok(Plan::RecordThenStream),
        (false, Some(record), _) => Err(CdcError::SlotLost {
            slot: slot.to_owned(),
            prefix: prefix.to_owned(),
            evidence: format!(
                "its origin record in topic {} says it was first streamed from database {:?} of \
                 server {}{}",
                topic(prefix),
                record.database,
                record.system_identifier,
                record
                    .slot_created_at
                    .as_deref()
                    .map(|lsn| format!(", slot created at {lsn}"))
                    .unwrap_or_default()
            ),
        }),
        (false, None, Some(data)) => Err(CdcError::SlotLost {
            slot: slot.to_owned(),
            prefix: prefix.to_owned(),
            evidence: format!(
                "topic {} partition {} holds records up to offset {}",
                data.topic, data.partition, data.high_watermark
            ),
        }),
        (false, None, None) => Ok(Plan::CreateSlot),
    }
}

/// The connected server's system identifier and timeline (`pg_control_*`, readable by any role),
/// and the database.
pub async fn identify(client: &Client) -> Result<SourceId, CdcError> {
    let row = client
        .query_one(
            "SELECT (SELECT system_identifier::text FROM pg_control_system()), \
                    (SELECT timeline_id FROM pg_control_checkpoint()), current_database()::text",
            &[],
        )
        .await
        .map_err(|source| CdcError::SourceQuery {
            context: "reading the server's system identifier",
            source,
        })?;
    let timeline: i32 = row.get(1);
    Ok(SourceId {
        system_identifier: row.get(0),
        timeline: u32::try_from(timeline).unwrap_or_default(),
        database: row.get(2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(id: &str) -> SourceId {
        SourceId {
            system_identifier: id.to_owned(),
            timeline: 1,
            database: "db".to_owned(),
        }
    }

    fn record(id: &str) -> OriginRecord {
        OriginRecord::new(
            "s",
            "p",
            &source(id),
            Some("0/16B3748".to_owned()),
            BTreeMap::new(),
        )
    }

    fn data() -> TopicData {
        TopicData {
            topic: "p.main".to_owned(),
            partition: 3,
            high_watermark: 12,
        }
    }

    #[test]
    fn a_first_run_creates_the_slot() {
        let plan = decide("s", "p", false, None, None, &source("1")).unwrap();
        assert_eq!(plan, Plan::CreateSlot);
    }

    #[test]
    fn an_existing_slot_streams_and_gets_its_record() {
        let me = source("1");
        assert_eq!(
            decide("s", "p", true, Some(&record("1")), None, &me).unwrap(),
            Plan::Stream
        );
        assert_eq!(
            decide("s", "p", true, None, Some(&data()), &me).unwrap(),
            Plan::RecordThenStream
        );
    }

    #[test]
    fn a_missing_slot_after_an_earlier_run_is_lost() {
        let me = source("1");
        for (record, data) in [
            (Some(record("1")), None),
            (None, Some(data())),
            (Some(record("1")), Some(data())),
        ] {
            let e = decide("s", "p", false, record.as_ref(), data.as_ref(), &me).unwrap_err();
            assert!(matches!(e, CdcError::SlotLost { .. }), "{e}");
            assert!(!e.is_retryable());
            let text = e.to_string();
            assert!(text.contains("\"s\" is missing"), "{text}");
            assert!(
                text.contains("pg_create_logical_replication_slot('s'"),
                "{text}"
            );
        }
        let e = decide("s", "p", false, None, Some(&data()), &me).unwrap_err();
        assert!(e.to_string().contains("topic p.main partition 3"), "{e}");
    }

    #[test]
    fn another_servers_record_is_refused() {
        for exists in [true, false] {
            let e = decide("s", "p", exists, Some(&record("2")), None, &source("1")).unwrap_err();
            assert!(matches!(e, CdcError::OtherSource { .. }), "{e}");
            assert!(!e.is_retryable());
        }
    }

    #[test]
    fn the_record_round_trips_as_json() {
        let r = record("7");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<OriginRecord>(&json).unwrap(), r);
        assert!(json.contains("\"system_identifier\":\"7\""), "{json}");
    }

    #[test]
    fn a_changed_partition_count_is_refused_and_a_missing_one_recorded() {
        let counts = |pairs: &[(&str, i32)]| -> BTreeMap<String, i32> {
            pairs.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
        };
        let mut r = OriginRecord::new("s", "p", &source("1"), None, counts(&[("p.main", 4)]));
        assert_eq!(
            check_partitions(&r, &counts(&[("p.main", 4)])).unwrap(),
            None
        );
        let err = check_partitions(&r, &counts(&[("p.main", 6)])).unwrap_err();
        assert!(
            matches!(&err, CdcError::PartitionsChanged { topic, recorded: 4, now: 6, .. } if topic == "p.main"),
            "{err:?}"
        );
        assert!(err.to_string().contains("another --topic-prefix"), "{err}");
        // A shard added to the routing file, and a record of an older version: counts recorded.
        let update = check_partitions(&r, &counts(&[("p.main", 4), ("p.eu", 2)]))
            .unwrap()
            .unwrap();
        assert_eq!(update.partitions, counts(&[("p.main", 4), ("p.eu", 2)]));
        r.partitions.clear();
        let update = check_partitions(&r, &counts(&[("p.main", 4)]))
            .unwrap()
            .unwrap();
        assert_eq!(update.partitions, counts(&[("p.main", 4)]));
        // Older records without the field still read.
        let old: OriginRecord = serde_json::from_str(
            r#"{"format":1,"slot":"s","topic_prefix":"p","system_identifier":"1","timeline":1,"database":"d","slot_created_at":null,"recorded_by":"cdc 0.1.0"}"#,
        )
        .unwrap();
        assert!(old.partitions.is_empty());
    }
}
