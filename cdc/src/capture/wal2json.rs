//! wal2json `format-version 2` payloads → typed [`Change`]s, and the [`ChangeSource`] that decodes a
//! replication stream. wal2json's lines are Cascade's wire format (docs/event-format.md), so decoding is
//! the shared codec's; this module adds the position to its errors.

use shared::{codec, Change, Lsn};

use super::stream::{ReplicationMessage, ReplicationStream, StandbyStatus};
use super::{Captured, ChangeSource};
use crate::error::CdcError;

/// Decodes one wal2json message and checks that it carries what its action needs.
///
/// Errors never quote the payload (it holds row values); they name the position and what is wrong.
pub fn decode(data: &[u8], wal_start: Lsn) -> Result<Change, CdcError> {
    codec::decode(data).map_err(|e| CdcError::Decode {
        lsn: wal_start,
        reason: e.to_string(),
    })
}

/// The changes of a wal2json replication stream.
pub struct Wal2JsonSource<S> {
    stream: S,
}

impl<S: ReplicationStream> Wal2JsonSource<S> {
    pub fn new(stream: S) -> Self {
        Wal2JsonSource { stream }
    }

    /// Ends the stream politely.
    pub async fn close(self) {
        self.stream.close().await
    }
}

impl<S: ReplicationStream + Send> ChangeSource for Wal2JsonSource<S> {
    async fn next(&mut self) -> Result<Option<Captured>, CdcError> {
        Ok(match self.stream.recv().await? {
            None => None,
            Some(ReplicationMessage::Keepalive {
                wal_end,
                reply_requested,
            }) => Some(Captured::Keepalive {
                wal_end,
                reply_requested,
            }),
            Some(ReplicationMessage::XLogData {
                wal_start, data, ..
            }) => Some(Captured::Change {
                change: decode(&data, wal_start)?,
                at: wal_start,
            }),
        })
    }

    async fn confirm(&mut self, status: StandbyStatus) -> Result<(), CdcError> {
        self.stream.send_status(status).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Action;

    const INSERT: &str = r#"{"action":"I","xid":727,"timestamp":"2026-11-21 20:03:00.783386+00","lsn":"0/1948458","schema":"public","table":"t","columns":[{"name":"id","type":"integer","typeoid":23,"value":1},{"name":"n","type":"numeric(30,10)","typeoid":1700,"value":12345678901234567890.0123456789},{"name":"f","type":"double precision","typeoid":701,"value":null}],"pk":[{"name":"id","type":"integer","typeoid":23}]}"#;

    #[test]
    fn decodes_every_action() {
        let lines = [
            r#"{"action":"B","xid":726,"timestamp":"2026-11-21 20:03:00.767411+00","lsn":"0/1947E28","nextlsn":"0/1948458"}"#,
            INSERT,
            r#"{"action":"U","xid":732,"lsn":"0/194D8F0","schema":"public","table":"t2","columns":[{"name":"id","type":"integer","typeoid":23,"value":3}],"identity":[{"name":"id","type":"integer","typeoid":23,"value":1}],"pk":[{"name":"id","type":"integer","typeoid":23}]}"#,
            r#"{"action":"D","xid":732,"lsn":"0/194D988","schema":"public","table":"t2","identity":[{"name":"id","type":"integer","typeoid":23,"value":3}],"pk":[{"name":"id","type":"integer","typeoid":23}]}"#,
            r#"{"action":"T","xid":731,"lsn":"0/1949550","schema":"public","table":"t"}"#,
            r#"{"action":"C","xid":726,"timestamp":"2026-11-21 20:03:00.767411+00","lsn":"0/1947E28","nextlsn":"0/1948458"}"#,
            r#"{"action":"M","transactional":false,"prefix":"p","content":"hello"}"#,
        ];
        let actions: Vec<Action> = lines
            .iter()
            .map(|l| decode(l.as_bytes(), Lsn(1)).unwrap().action())
            .collect();
        use Action::*;
        assert_eq!(
            actions,
            vec![Begin, Insert, Update, Delete, Truncate, Commit, Message]
        );
    }

    #[test]
    fn numeric_text_is_kept_exactly() {
        let Change::Row(row) = decode(INSERT.as_bytes(), Lsn(1)).unwrap() else {
            panic!("not a row change")
        };
        assert_eq!(
            row.new_values().unwrap()[1].value.get(),
            "12345678901234567890.0123456789"
        );
    }

    #[test]
    fn errors_name_the_position_and_never_the_values() {
        let bad = br#"{"action":"I","schema":"public","table":"t","columns":[{"name":"secret","type":"text","value":"hunter2"}"#;
        let msg = decode(bad, Lsn(0x1948458)).unwrap_err().to_string();
        assert!(msg.contains("0/1948458"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        let no_cols = br#"{"action":"I","schema":"public","table":"t"}"#;
        assert!(decode(no_cols, Lsn(1))
            .unwrap_err()
            .to_string()
            .contains("without columns"));
        let no_xid = br#"{"action":"B","lsn":"0/1"}"#;
        assert!(decode(no_xid, Lsn(1)).is_err());
    }
}
