//! The test ingestion server's own tests, with a raw HTTP/1.1 client so that they do not depend
//! on the gateway's HTTP stack.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{IngestServer, Mode};

/// One JSON message with a text payload.
fn msg(device: &str, seq: u64, payload: &str) -> serde_json::Value {
    serde_json::json!({
        "key": format!("gw1:{seq}"), "seq": seq, "device": device, "topic": "t/x", "qos": 1,
        "received_at_ms": 1_700_000_000_000u64, "payload": payload, "content_type": null,
        "user_properties": [["k", "v"]],
    })
}

fn batch(key: &str, messages: Vec<serde_json::Value>) -> String {
    serde_json::json!({ "gateway": "gw1", "batch_key": key, "messages": messages }).to_string()
}

/// POSTs `body` with `Idempotency-Key: key` and returns the status code.
async fn post(server: &IngestServer, key: &str, body: &str) -> u16 {
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    let request = format!(
        "POST /ingest HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Idempotency-Key: {key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response.split(' ').nth(1).expect("status line");
    status.parse().expect("numeric status")
}

#[tokio::test]
async fn accepted_batches_are_recorded_in_arrival_order_with_their_keys() {
    let server = IngestServer::start().await;
    assert!(server.url().ends_with("/ingest"));
    assert_eq!(post(&server, "b1", &batch("b1", vec![msg("d1", 1, "a"), msg("d1", 2, "b")])).await, 200);
    assert_eq!(post(&server, "b2", &batch("b2", vec![msg("d1", 3, "c")])).await, 200);
    let seqs: Vec<u64> = server.accepted().iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(server.batch_keys(), ["b1", "b2"]);
    assert_eq!(server.accepted()[0].user_properties, [("k".to_string(), "v".to_string())]);
    assert_eq!((server.requests(), server.malformed()), (2, 0));
    server.assert_per_device_order();
}

#[tokio::test]
async fn a_redelivered_batch_counts_as_duplicates_not_as_new_keys() {
    let server = IngestServer::start().await;
    let body = batch("b1", vec![msg("d1", 1, "a"), msg("d2", 2, "b")]);
    assert_eq!(post(&server, "b1", &body).await, 200);
    assert_eq!(post(&server, "b1", &body).await, 200);
    assert_eq!((server.accepted().len(), server.unique_keys(), server.duplicates()), (4, 2, 2));
    server.assert_per_device_order();
}

#[tokio::test]
#[should_panic(expected = "device \"d1\"")]
async fn per_device_order_check_catches_a_lower_seq_arriving_later() {
    let server = IngestServer::start().await;
    assert_eq!(post(&server, "b1", &batch("b1", vec![msg("d1", 5, "a")])).await, 200);
    assert_eq!(post(&server, "b2", &batch("b2", vec![msg("d1", 4, "b")])).await, 200);
    server.assert_per_device_order();
}

#[tokio::test]
async fn fail_mode_answers_its_status_and_records_nothing() {
    let server = IngestServer::start().await;
    server.set_mode(Mode::Fail(503));
    assert_eq!(post(&server, "b1", &batch("b1", vec![msg("d1", 1, "a")])).await, 503);
    assert_eq!((server.requests(), server.accepted().len()), (1, 0));
}

#[tokio::test]
async fn reject_mode_refuses_only_batches_with_a_matching_payload() {
    let server = IngestServer::start().await;
    server.set_mode(Mode::RejectPayloadContaining("poison".into()));
    let mut b64 = msg("d1", 2, "");
    b64["payload"] = serde_json::Value::Null;
    b64["payload_base64"] = "eHhwb2lzb254eA==".into(); // "xxpoisonxx"
    assert_eq!(post(&server, "b1", &batch("b1", vec![msg("d1", 1, "fine")])).await, 200);
    assert_eq!(post(&server, "b2", &batch("b2", vec![b64])).await, 400);
    assert_eq!(post(&server, "b3", &batch("b3", vec![msg("d1", 3, "a poison pill")])).await, 400);
    assert_eq!((server.requests(), server.accepted().len(), server.malformed()), (3, 1, 0));
}

#[tokio::test]
async fn stall_mode_reads_the_request_but_never_answers() {
    let server = IngestServer::start().await;
    server.set_mode(Mode::Stall);
    let body = batch("b1", vec![msg("d1", 1, "a")]);
    let answer = tokio::time::timeout(Duration::from_millis(300), post(&server, "b1", &body)).await;
    assert!(answer.is_err(), "a stalled server answered: {answer:?}");
    assert_eq!((server.requests(), server.accepted().len()), (1, 0));
}

#[tokio::test]
async fn a_batch_whose_idempotency_key_differs_from_its_batch_key_is_malformed() {
    let server = IngestServer::start().await;
    assert_eq!(post(&server, "other", &batch("b1", vec![msg("d1", 1, "a")])).await, 400);
    assert_eq!(post(&server, "b2", "{not json").await, 400);
    assert_eq!((server.requests(), server.malformed(), server.accepted().len()), (2, 2, 0));
}

#[tokio::test]
async fn a_stopped_server_refuses_connections_and_restarts_on_the_same_port() {
    let server = IngestServer::start().await;
    let addr = server.addr();
    let open = TcpStream::connect(addr).await.expect("connect while running");
    server.stop();
    let refused = TcpStream::connect(addr).await;
    assert!(refused.is_err(), "connect succeeded while stopped");
    let mut open = open;
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), open.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "open connection survived stop: {read:?}");

    server.restart().await;
    assert_eq!(server.addr(), addr);
    assert_eq!(post(&server, "b1", &batch("b1", vec![msg("d1", 1, "a")])).await, 200);
    assert_eq!(server.accepted().len(), 1);
}
