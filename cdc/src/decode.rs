//! wal2json `format-version 2` payloads → [`ChangeEvent`]s. Pure.

use shared::{Action, ChangeEvent, Lsn};

use crate::error::CdcError;

/// Decodes one wal2json message and checks that it carries what its action needs.
///
/// Errors never quote the payload (it holds row values); they name the position and what is wrong.
pub fn decode(data: &[u8], wal_start: Lsn) -> Result<ChangeEvent, CdcError> {
    let event: ChangeEvent = serde_json::from_slice(data).map_err(|e| CdcError::Decode {
        lsn: wal_start,
        reason: format!(
            "not a wal2json v2 object ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ),
    })?;
    let missing = |what: &str| CdcError::Decode {
        lsn: wal_start,
        reason: format!("{} message without {what}", event.action.as_str()),
    };
    match event.action {
        Action::Begin | Action::Commit => {
            if event.xid.is_none() {
                return Err(missing("xid (is include-xids on?)"));
            }
            if event.nextlsn.is_none() && event.lsn.is_none() {
                return Err(missing("lsn (is include-lsn on?)"));
            }
        }
        Action::Insert | Action::Update | Action::Delete | Action::Truncate => {
            if event.schema.is_none() || event.table.is_none() {
                return Err(missing("schema and table"));
            }
            match event.action {
                Action::Insert | Action::Update if event.columns.is_none() => {
                    return Err(missing("columns"))
                }
                Action::Delete if event.identity.is_none() => return Err(missing("identity")),
                _ => {}
            }
        }
        Action::Message => {}
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            .map(|l| decode(l.as_bytes(), Lsn(1)).unwrap().action)
            .collect();
        use Action::*;
        assert_eq!(
            actions,
            vec![Begin, Insert, Update, Delete, Truncate, Commit, Message]
        );
    }

    #[test]
    fn numeric_text_is_kept_exactly() {
        let ev = decode(INSERT.as_bytes(), Lsn(1)).unwrap();
        assert_eq!(
            ev.columns.unwrap()[1].value.get(),
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
