//! One committed transaction makes one trace: cdc's `send <topic>` span and the router's
//! `process <topic>` span (its child, through the `traceparent` Kafka header) and `apply batch`
//! database span, received by a real OTLP/gRPC receiver started here and decoded with the OTLP
//! protobuf definitions.

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

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
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
    let received = collector.0.clone();
    let port = testkit::free_port();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector))
            .serve(addr),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let envs = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
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
    let cdc = start_cdc_env(&s, &source_url, &name, &prefix, &[], &envs);
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
    assert_eq!(attr(&process, "messaging.destination.name"), Some(topic));
    assert_eq!(attr(&apply, "db.system.name").as_deref(), Some("sqlite"));
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
    drop(router);
    drop(cdc);
    testkit::drop_slot(&s.source_url, &name).await;
}
