//! One committed transaction makes one trace: cdc's `send <topic>` span and the router's
//! `process <topic>` span (its child, through the `traceparent` Kafka header) and `apply batch`
//! database span, received by an OTLP receiver started here — gRPC (tonic), and HTTP/protobuf
//! (`OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`, `POST /v1/traces`) — and decoded with the OTLP
//! protobuf definitions. A `tracestate` a producer sets reaches the router's spans (the Kafka
//! headers go through the global propagator).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

use crate::support::*;

/// A received span: (service name, span).
type Received = Arc<Mutex<Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)>>>;

#[derive(Clone, Default)]
struct Collector(Received);

impl Collector {
    fn record(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.0.lock().unwrap();
        for rs in request.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
    }

    /// An OTLP/gRPC receiver on a free port; returns its endpoint.
    fn serve_grpc(&self) -> String {
        let port = testkit::free_port();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(self.clone()))
                .serve(addr),
        );
        format!("http://127.0.0.1:{port}")
    }

    /// An OTLP/HTTP receiver (binary protobuf, `POST /v1/traces`) on a free port: HTTP/1.1 with
    /// `Content-Length` bodies and keep-alive, which is what OTLP exporters send. Returns its
    /// endpoint.
    async fn serve_http(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let collector = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let collector = collector.clone();
                tokio::spawn(async move { collector.http_connection(conn).await });
            }
        });
        format!("http://127.0.0.1:{port}")
    }

    async fn http_connection(&self, mut conn: tokio::net::TcpStream) {
        use prost::Message;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = Vec::new();
        loop {
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 8192];
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < head_end + length {
                let mut chunk = [0u8; 8192];
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body: Vec<u8> = buf.drain(..head_end + length).skip(head_end).collect();
            let status = if head.starts_with("POST /v1/traces ") {
                match ExportTraceServiceRequest::decode(body.as_slice()) {
                    Ok(request) => {
                        self.record(request);
                        "200 OK"
                    }
                    Err(_) => "400 Bad Request",
                }
            } else {
                "404 Not Found"
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"
            );
            if conn.write_all(response.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.record(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn attr(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(Value::StringValue(s)) => Some(s.clone()),
            Some(Value::IntValue(i)) => Some(i.to_string()),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_transaction_is_one_trace_from_cdc_to_the_router() {
    let collector = Collector::default();
    let endpoint = collector.serve_grpc();
    one_trace(collector, &endpoint, "grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_transaction_is_one_trace_over_otlp_http() {
    let collector = Collector::default();
    let endpoint = collector.serve_http().await;
    one_trace(collector, &endpoint, "http/protobuf").await;
}

async fn one_trace(collector: Collector, endpoint: &str, protocol: &str) {
    let received = collector.0.clone();
    let envs = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];

    let s = services();
    let name = unique("trace");
    let source_url = testkit::create_pg_db(&s.source_url, &name).await;
    let source = connect(&source_url).await;
    source
        .batch_execute("CREATE TABLE secrets (id integer PRIMARY KEY, token text)")
        .await
        .unwrap();
    let target = Target::create(&s, Engine::Sqlite, &name).await;
    let prefix = unique("trace");
    let topic = format!("{prefix}.main");
    // No initial snapshot: a copy of `secrets` racing the insert below would be a second trace.
    let cdc = start_cdc_env(
        &s,
        &source_url,
        &name,
        &prefix,
        &["--snapshot", "never"],
        &envs,
    );
    let mut router = start_router_env(&s, &target, &prefix, &[], &envs);
    router.wait_ready(Duration::from_secs(60));
    source
        .batch_execute("INSERT INTO secrets VALUES (1, 'TOKEN-VALUE-NEVER-IN-SPANS')")
        .await
        .unwrap();

    let send_name = format!("send {topic}");
    let process_name = format!("process {topic}");
    let (send, process, apply) = wait_for(
        Duration::from_secs(90),
        "a trace with cdc's send span, and the router's process and apply spans under it",
        || {
            let spans = received.lock().unwrap();
            let by_id: HashMap<&[u8], &(String, _)> =
                spans.iter().map(|s| (s.1.span_id.as_slice(), s)).collect();
            spans
                .iter()
                .filter(|(svc, sp)| svc == "shard-router" && sp.name == process_name)
                .find_map(|(_, process)| {
                    let (svc, send) = by_id.get(process.parent_span_id.as_slice())?;
                    if svc != "cdc" || send.name != send_name {
                        return None;
                    }
                    let apply = spans.iter().find(|(svc, sp)| {
                        svc == "shard-router"
                            && sp.name == "apply batch"
                            && sp.parent_span_id == process.span_id
                    })?;
                    Some((send.clone(), process.clone(), apply.1.clone()))
                })
        },
    );
    assert_eq!(send.trace_id, process.trace_id);
    assert_eq!(apply.trace_id, send.trace_id);
    assert_eq!(attr(&send, "messaging.system").as_deref(), Some("kafka"));
    assert_eq!(
        attr(&send, "messaging.destination.name"),
        Some(topic.clone())
    );
    assert_eq!(
        attr(&process, "messaging.destination.name"),
        Some(topic.clone())
    );
    assert_eq!(attr(&apply, "db.system.name").as_deref(), Some("sqlite"));
    assert_eq!(
        attr(&apply, "db.operation.batch.size").as_deref(),
        Some("1")
    );
    assert!(
        attr(&apply, "db.namespace").is_some_and(|n| !n.is_empty()),
        "db.namespace"
    );
    // Semantic conventions: the partition id is a string, the consumer group is named.
    let partition = process
        .attributes
        .iter()
        .find(|kv| kv.key == "messaging.destination.partition.id")
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.clone());
    assert!(
        matches!(partition, Some(Value::StringValue(_))),
        "partition id as a string: {partition:?}"
    );
    assert!(
        attr(&process, "messaging.consumer.group.name")
            .is_some_and(|g| g.starts_with(&format!("{prefix}.main."))),
        "consumer group name"
    );
    // A producer's tracestate survives to the router's spans: a frame produced here with a W3C
    // trace context of its own (an LSN far above cdc's, so it is applied, not skipped).
    let (trace_id, parent_id) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let tracestate = "cascade=it,vendor=x1";
    let traceparent = format!("00-{trace_id}-{parent_id}-01");
    let headers = [
        (shared::codec::FORMAT_HEADER, shared::codec::FORMAT_VERSION),
        ("traceparent", traceparent.as_str()),
        ("tracestate", tracestate),
    ];
    let lsn = shared::Lsn(0x7FFF_0000_0000);
    let (at, next) = (lsn, shared::Lsn(lsn.0 + 8));
    for json in [
        format!(r#"{{"action":"B","xid":9,"lsn":"{at}","nextlsn":"{next}"}}"#),
        r#"{"action":"I","schema":"public","table":"secrets","columns":[{"name":"id","type":"integer","typeoid":23,"value":2},{"name":"token","type":"text","typeoid":25,"value":"x"}],"pk":[{"name":"id","type":"integer","typeoid":23}]}"#.to_owned(),
        format!(r#"{{"action":"C","xid":9,"lsn":"{at}","nextlsn":"{next}"}}"#),
    ] {
        produce(&s.kafka, &topic, 0, json.as_bytes(), &headers).await;
    }
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let (process, apply) = wait_for(
        Duration::from_secs(60),
        "the router's spans of the produced frame, with its trace context",
        || {
            let spans = received.lock().unwrap();
            let process = spans.iter().find(|(svc, sp)| {
                svc == "shard-router"
                    && sp.name == process_name
                    && hex(&sp.trace_id) == trace_id
                    && hex(&sp.parent_span_id) == parent_id
            })?;
            let apply = spans.iter().find(|(_, sp)| {
                sp.name == "apply batch" && sp.parent_span_id == process.1.span_id
            })?;
            Some((process.1.clone(), apply.1.clone()))
        },
    );
    assert_eq!(
        process.trace_state, tracestate,
        "tracestate of the process span"
    );
    assert_eq!(
        apply.trace_state, tracestate,
        "tracestate of the apply span"
    );
    // The transaction's span in cdc is the send span's parent, in the same trace.
    let spans = received.lock().unwrap().clone();
    let txn = spans
        .iter()
        .find(|(svc, sp)| svc == "cdc" && sp.span_id == send.parent_span_id)
        .expect("cdc's transaction span");
    assert_eq!(txn.1.name, "capture transaction");
    // No row value ever reaches a span.
    for (_, sp) in &spans {
        for kv in &sp.attributes {
            let text = format!("{:?}", kv.value);
            assert!(
                !text.contains("TOKEN-VALUE"),
                "a row value leaked into span {}",
                sp.name
            );
        }
    }
    // Both exit cleanly, flushing their exporter, whichever transport it uses.
    assert_eq!(
        router.terminate(Duration::from_secs(30)),
        0,
        "router exit on SIGTERM ({protocol})"
    );
    let mut cdc = cdc;
    assert_eq!(
        cdc.terminate(Duration::from_secs(30)),
        0,
        "cdc exit on SIGTERM ({protocol})"
    );
    testkit::drop_slot(&s.source_url, &name).await;
}
