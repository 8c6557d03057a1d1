use super::*;
use shared::codec;
use shared::Change;

fn row(action: &str, id: u32, v: &str) -> RowChange {
    let cols = format!(
        r#"[{{"name":"id","type":"integer","typeoid":23,"value":{id}}},{{"name":"v","type":"text","typeoid":25,"value":"{v}"}}]"#
    );
    let field = if action == "D" { "identity" } else { "columns" };
    let line = format!(
        r#"{{"action":"{action}","schema":"public","table":"t","{field}":{cols},"pk":[{{"name":"id","type":"integer","typeoid":23}}]}}"#
    );
    match codec::decode(line.as_bytes()).unwrap() {
        Change::Row(row) => row,
        other => panic!("{other:?}"),
    }
}

const SESSION: u64 = 7;

fn mark(watermark: Mark, counter: u64) -> String {
    serde_json::to_string(&Watermark {
        watermark,
        token: (SESSION << 32) | counter,
        schema: (watermark == Mark::Low).then(|| "public".into()),
        table: (watermark == Mark::Low).then(|| "t".into()),
    })
    .unwrap()
}

struct Rig {
    c: Coordinator,
    chunks: mpsc::Sender<Chunk>,
    events: mpsc::UnboundedReceiver<Event>,
}

fn rig() -> Rig {
    let (chunks, rx) = mpsc::channel(1);
    let (tx, events) = mpsc::unbounded_channel();
    Rig {
        c: Coordinator::new(SESSION, rx, tx),
        chunks,
        events,
    }
}

fn chunk(counter: u64, ids: &[u32], in_progress: Vec<u32>) -> Chunk {
    Chunk {
        token: (SESSION << 32) | counter,
        request: 1,
        table: TableName::new("public", "t"),
        rows: ids.iter().map(|&id| row("I", id, "copied")).collect(),
        in_progress,
        shard: None,
    }
}

fn ids(chunk: &Chunk) -> Vec<String> {
    chunk
        .rows
        .iter()
        .map(|r| r.new_values().unwrap()[0].value.get().to_owned())
        .collect()
}

#[test]
fn keys_the_stream_changed_between_the_watermarks_leave_the_chunk() {
    let mut r = rig();
    r.c.committed(10);
    r.c.message(MESSAGE_PREFIX, &mark(Mark::Low, 1));
    r.c.committed(11);
    r.c.observe(&row("U", 2, "streamed"));
    r.c.observe(&row("D", 4, "gone"));
    // Another table's keys do not count.
    let mut other = row("U", 3, "x");
    other.table = TableName::new("public", "other");
    r.c.observe(&other);
    r.chunks.try_send(chunk(1, &[1, 2, 3, 4], vec![])).unwrap();
    r.c.message(MESSAGE_PREFIX, &mark(Mark::High, 1));
    let ready = r.c.take_ready().expect("a chunk to publish");
    assert_eq!(ids(&ready), ["1", "3"]);
    // Keys seen after the high watermark no longer matter: the window is closed.
    r.c.observe(&row("U", 1, "later"));
    assert!(r.c.take_ready().is_none());
}

#[test]
fn a_commit_that_raced_the_read_sends_the_chunk_back() {
    let mut r = rig();
    r.c.committed(41);
    r.c.committed(42);
    r.c.message(MESSAGE_PREFIX, &mark(Mark::Low, 1));
    r.c.committed(43);
    // 42 was delivered before the low watermark, yet the read's snapshot saw it running.
    r.chunks.try_send(chunk(1, &[1], vec![42])).unwrap();
    r.c.message(MESSAGE_PREFIX, &mark(Mark::High, 1));
    assert!(r.c.take_ready().is_none());
    assert_eq!(
        r.events.try_recv().unwrap(),
        Event::Retry {
            token: (SESSION << 32) | 1,
            reason: "a commit raced the chunk's read"
        }
    );
    // One that committed after the low watermark is in the window: the chunk goes out.
    r.c.message(MESSAGE_PREFIX, &mark(Mark::Low, 2));
    r.c.committed(44);
    r.chunks.try_send(chunk(2, &[1], vec![44])).unwrap();
    r.c.message(MESSAGE_PREFIX, &mark(Mark::High, 2));
    assert!(r.c.take_ready().is_some());
}

#[test]
fn a_truncate_between_the_watermarks_sends_the_chunk_back() {
    let mut r = rig();
    r.c.message(MESSAGE_PREFIX, &mark(Mark::Low, 1));
    r.c.observe_truncate(&TableName::new("public", "t"));
    r.chunks.try_send(chunk(1, &[1], vec![])).unwrap();
    r.c.message(MESSAGE_PREFIX, &mark(Mark::High, 1));
    assert!(r.c.take_ready().is_none());
    assert!(matches!(
        r.events.try_recv().unwrap(),
        Event::Retry {
            reason: "the table was truncated",
            ..
        }
    ));
}

#[test]
fn watermarks_of_other_sessions_are_ignored() {
    let mut r = rig();
    let foreign = serde_json::to_string(&Watermark {
        watermark: Mark::Low,
        token: (99 << 32) | 1,
        schema: Some("public".into()),
        table: Some("t".into()),
    })
    .unwrap();
    r.c.message(MESSAGE_PREFIX, &foreign);
    r.c.message("someone.else", &mark(Mark::Low, 1));
    r.c.message(MESSAGE_PREFIX, "not json");
    assert!(r.c.window.is_none());
}

#[test]
fn a_chunk_is_published_once_every_message_is_acknowledged() {
    let mut r = rig();
    let mut progress = crate::progress::Progress::new(shared::Lsn(0));
    let txn = progress.begin();
    r.c.publishing(txn, 5);
    r.c.sent(txn);
    r.c.sent(txn);
    r.c.acked(txn);
    r.c.sealed(2);
    assert!(
        r.events.try_recv().is_err(),
        "one message still unacknowledged"
    );
    r.c.acked(txn);
    assert_eq!(
        r.events.try_recv().unwrap(),
        Event::Published { token: 5, rows: 2 }
    );
}

#[test]
fn an_insert_into_the_signal_table_is_a_request() {
    let r = rig();
    let mut events = r.events;
    let line = r#"{"action":"I","schema":"cascade","table":"snapshot_requests","columns":[{"name":"id","type":"bigint","typeoid":20,"value":12},{"name":"slot","type":"text","typeoid":25,"value":"cascade"}],"pk":[{"name":"id","type":"bigint","typeoid":20}]}"#;
    let Change::Row(signal) = codec::decode(line.as_bytes()).unwrap() else {
        panic!()
    };
    assert!(Coordinator::is_signal(&signal.table));
    r.c.signal_row(&signal);
    assert_eq!(events.try_recv().unwrap(), Event::Requested(12));
}
