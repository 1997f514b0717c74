//! Outgoing QoS 2 to a persistent session is exactly once across connections and a SIGKILL
//! (MQTT 3.1.1 and 5, 4.4), also with several deliveries in flight at once (as a clean
//! session's are), on both protocol versions, with a raw client that stops where a
//! real one could lose its connection: a PUBLISH whose PUBREC never came goes again with DUP and
//! the same packet id; once the PUBREC came only the PUBREL goes again (also after the gateway
//! was killed and restarted), never the message; after the PUBCOMP nothing. The same client runs
//! the same case against a mosquitto started by the test (without the kill: it keeps its
//! sessions in memory here), which must behave the same. MQTT 5: a PUBREC (or a QoS 1 PUBACK)
//! that refuses the message ends that exchange, and the gateway counts it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::broker::{OPEN_ACL, extra, publish};
use crate::harness::{self, Process, http_get, sample};
use crate::ingest::IngestServer;
use crate::raw::{Event, Raw, Received, packet, parse_publish, subscribe_packet};
use crate::util::{self, Mosquitto, free_port};

const WAIT: Duration = Duration::from_secs(10);
/// How long "nothing comes" is watched for.
const QUIET: Duration = Duration::from_millis(1500);

async fn expect_publish(s: &mut Raw) -> Received {
    match s.next(WAIT).await {
        Event::Packet(first, body) => {
            parse_publish(first, &body, s.v5).unwrap_or_else(|| panic!("expected PUBLISH, got {first:#x} {body:?}"))
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

async fn expect_pubrel(s: &mut Raw, pkid: u16) {
    match s.next(WAIT).await {
        Event::Packet(0x62, body) => assert_eq!(&body[..2], &pkid.to_be_bytes(), "PUBREL for the original packet id"),
        other => panic!("expected PUBREL {pkid}, got {other:?}"),
    }
}

/// A new lasting (or clean) session of `client` subscribed at QoS 2 to `eo/<client>`, and that
/// topic.
async fn subscribed(addr: SocketAddr, who: &str, client: &str, v5: bool, lasting: bool) -> (Raw, String) {
    let (mut s, present) = match lasting {
        true => Raw::connect_persistent(addr, client, v5).await,
        false => (Raw::connect(addr, client, v5).await, false),
    };
    assert!(!present, "{who}: a new session");
    let topic = format!("eo/{client}");
    s.send(&subscribe_packet(1, &topic, 2, v5)).await;
    match s.next(WAIT).await {
        Event::Packet(0x90, body) => assert_eq!(body.last(), Some(&2), "{who}: QoS 2 granted: {body:?}"),
        other => panic!("{who}: expected SUBACK, got {other:?}"),
    }
    (s, topic)
}

/// Subscribe at QoS 2 in a lasting session, have `payload` published, and drop the connection
/// without a PUBREC; the next connection gets the same PUBLISH with DUP and the same packet id,
/// answers PUBREC and is dropped once the PUBREL came (no PUBCOMP). The packet id.
async fn until_released(addr: SocketAddr, who: &str, client: &str, v5: bool, payload: &str) -> u16 {
    let (mut s, topic) = subscribed(addr, who, client, v5, true).await;
    publish(addr.port(), &["-i", &format!("{client}-pub"), "-q", "2", "-t", &topic, "-m", payload]).await;
    let first = expect_publish(&mut s).await;
    assert_eq!((first.dup, first.qos, first.topic.as_str(), first.payload.as_slice()), (false, 2, topic.as_str(), payload.as_bytes()));
    drop(s);
    let (mut s, present) = Raw::connect_persistent(addr, client, v5).await;
    assert!(present, "{who}: the session is kept");
    let again = expect_publish(&mut s).await;
    assert_eq!((again.dup, again.pkid, again.payload.as_slice()), (true, first.pkid, payload.as_bytes()), "{who}: DUP, same packet id");
    s.send(&packet(0x50, first.pkid.to_be_bytes().to_vec())).await;
    expect_pubrel(&mut s, first.pkid).await;
    first.pkid
}

/// The next connection gets only the PUBREL again; after its PUBCOMP nothing comes, on this
/// connection or the next.
async fn released_again(addr: SocketAddr, who: &str, client: &str, v5: bool, pkid: u16) {
    let (mut s, present) = Raw::connect_persistent(addr, client, v5).await;
    assert!(present, "{who}: the session is kept");
    expect_pubrel(&mut s, pkid).await;
    s.send(&packet(0x70, pkid.to_be_bytes().to_vec())).await;
    assert_eq!(s.next(QUIET).await, Event::Timeout, "{who}: nothing after the PUBCOMP");
    drop(s);
    let (mut s, _) = Raw::connect_persistent(addr, client, v5).await;
    assert_eq!(s.next(QUIET).await, Event::Timeout, "{who}: nothing on the next connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_qos_2_to_a_persistent_session_is_exactly_once_across_connections_and_a_sigkill() {
    let dir = util::temp_dir();
    let mosquitto = Mosquitto::start(dir.path()).await;
    let theirs = SocketAddr::from(([127, 0, 0, 1], mosquitto.port));
    let ingest = IngestServer::start().await;
    let (mqtt, http) = (SocketAddr::from(([127, 0, 0, 1], free_port())), SocketAddr::from(([127, 0, 0, 1], free_port())));
    let extra = extra(dir.path(), OPEN_ACL, "");
    let config = harness::config_text(&dir.path().join("data"), &ingest.url(), &mqtt.to_string(), &http.to_string(), &extra);
    let mut gw = Process::start(dir.path(), &config, mqtt, http).await;
    for v5 in [false, true] {
        let client = if v5 { "eo-5" } else { "eo-3" };
        let who = format!("mosquitto {client}");
        let pkid = until_released(theirs, &who, client, v5, "m1").await;
        released_again(theirs, &who, client, v5, pkid).await;

        let who = format!("gateway {client}");
        let pkid = until_released(mqtt, &who, client, v5, "m1").await;
        gw.kill9();
        gw = Process::start(dir.path(), &config, mqtt, http).await;
        released_again(mqtt, &who, client, v5, pkid).await;

        let client = if v5 { "eo-pipe-5" } else { "eo-pipe-3" };
        several_in_flight(theirs, &format!("mosquitto {client}"), client, v5).await;
        several_in_flight(mqtt, &format!("gateway {client}"), client, v5).await;

        let client = if v5 { "eo-live-5" } else { "eo-live-3" };
        several_live_in_flight(theirs, &format!("mosquitto {client}"), client, v5).await;
        several_live_in_flight(mqtt, &format!("gateway {client}"), client, v5).await;
    }
    refused(theirs, "mosquitto eo-refuse-5", "eo-refuse-5").await;
    refused(mqtt, "gateway eo-refuse-5", "eo-refuse-5").await;
    refused_frees_its_place(theirs, "mosquitto eo-refuse-live-5", "eo-refuse-live-5").await;
    refused_frees_its_place(mqtt, "gateway eo-refuse-live-5", "eo-refuse-live-5").await;
    refused_at_qos_1(theirs, "mosquitto eo-refuse-q1-5", "eo-refuse-q1-5").await;
    refused_at_qos_1(mqtt, "gateway eo-refuse-q1-5", "eo-refuse-q1-5").await;
    // Two PUBRECs and one PUBACK refused: each counted once.
    let refusals = sample(&http_get(http, "/metrics").await.1, r#"gateway_deliveries_dropped_total{reason="refused"}"#);
    assert_eq!(refusals, 3.0, "refused deliveries counted");
    let queued = async || sample(&http_get(http, "/metrics").await.1, "gateway_session_queued_messages") == 0.0;
    util::eventually("no delivery left queued", WAIT, queued).await;
    let code = gw.terminate();
    assert_eq!(code, Some(0), "{}", std::fs::read_to_string(&gw.log).unwrap_or_default());
}

/// Answer each packet id in `pkids` with a packet of type `first` (PUBREC 0x50, PUBCOMP 0x70).
async fn answer(s: &mut Raw, first: u8, pkids: &[u16]) {
    for pkid in pkids {
        s.send(&packet(first, pkid.to_be_bytes().to_vec())).await;
    }
}

/// `m1`, `m2`, `m3` published to `topic`; their three PUBLISHes, read before any is answered.
async fn three_in_flight(s: &mut Raw, addr: SocketAddr, who: &str, client: &str, topic: &str) -> Vec<u16> {
    for m in ["m1", "m2", "m3"] {
        publish(addr.port(), &["-i", &format!("{client}-pub"), "-q", "2", "-t", topic, "-m", m]).await;
    }
    let mut pkids = Vec::new();
    for m in ["m1", "m2", "m3"] {
        let p = expect_publish(s).await;
        assert_eq!((p.dup, p.qos, p.payload.as_slice()), (false, 2, m.as_bytes()), "{who}: {m} before any PUBREC");
        assert!(!pkids.contains(&p.pkid), "{who}: a packet id in use twice: {pkids:?} {}", p.pkid);
        pkids.push(p.pkid);
    }
    pkids
}

/// The same for a clean session's (live) deliveries: three in flight; the first completed
/// (PUBREC, PUBREL, PUBCOMP) before the others are answered, which MQTT allows (4.6 orders
/// PUBRECs among themselves, not a PUBCOMP against a later PUBLISH's PUBREC); then the other
/// two, PUBRELs in the order of the PUBRECs, and nothing after the PUBCOMPs.
async fn several_live_in_flight(addr: SocketAddr, who: &str, client: &str, v5: bool) {
    let (mut s, topic) = subscribed(addr, who, client, v5, false).await;
    let pkids = three_in_flight(&mut s, addr, who, client, &topic).await;
    answer(&mut s, 0x50, &pkids[..1]).await;
    expect_pubrel(&mut s, pkids[0]).await;
    answer(&mut s, 0x70, &pkids[..1]).await;
    answer(&mut s, 0x50, &pkids[1..]).await;
    for pkid in &pkids[1..] {
        expect_pubrel(&mut s, *pkid).await;
    }
    answer(&mut s, 0x70, &pkids[1..]).await;
    assert_eq!(s.next(QUIET).await, Event::Timeout, "{who}: nothing after the PUBCOMPs");
}

/// Three queued QoS 2 deliveries are in flight together (the client has not answered the first
/// when the third comes), their PUBRELs go in the order of the PUBRECs, a connection lost after
/// two PUBRECs sends those two PUBRELs again and the third PUBLISH again with DUP and its packet
/// id, and once all are completed nothing comes again.
async fn several_in_flight(addr: SocketAddr, who: &str, client: &str, v5: bool) {
    let (mut s, topic) = subscribed(addr, who, client, v5, true).await;
    let pkids = three_in_flight(&mut s, addr, who, client, &topic).await;
    answer(&mut s, 0x50, &pkids[..2]).await;
    expect_pubrel(&mut s, pkids[0]).await;
    expect_pubrel(&mut s, pkids[1]).await;
    drop(s);
    let (mut s, present) = Raw::connect_persistent(addr, client, v5).await;
    assert!(present, "{who}: the session is kept");
    expect_pubrel(&mut s, pkids[0]).await;
    expect_pubrel(&mut s, pkids[1]).await;
    let again = expect_publish(&mut s).await;
    assert_eq!((again.dup, again.pkid, again.payload.as_slice()), (true, pkids[2], b"m3".as_slice()), "{who}: m3 again");
    answer(&mut s, 0x70, &pkids[..2]).await;
    answer(&mut s, 0x50, &pkids[2..]).await;
    expect_pubrel(&mut s, pkids[2]).await;
    answer(&mut s, 0x70, &pkids[2..]).await;
    assert_eq!(s.next(QUIET).await, Event::Timeout, "{who}: nothing after the PUBCOMPs");
    drop(s);
    let (mut s, _) = Raw::connect_persistent(addr, client, v5).await;
    assert_eq!(s.next(QUIET).await, Event::Timeout, "{who}: nothing on the next connection");
}

/// MQTT 5: a PUBREC with a reason code of 0x80 or more ends its exchange (4.3.3): no PUBREL
/// for it, the others in flight go on, and the refused message is not sent again on the next
/// connection of the lasting session.
async fn refused(addr: SocketAddr, who: &str, client: &str) {
    let (mut s, topic) = subscribed(addr, who, client, true, true).await;
    let pkids = three_in_flight(&mut s, addr, who, client, &topic).await;
    let [refused, kept @ ..] = pkids.as_slice() else { unreachable!() };
    // Packet id, reason code 0x80 (unspecified error), no properties.
    s.send(&packet(0x50, [&refused.to_be_bytes()[..], &[0x80]].concat())).await;
    answer(&mut s, 0x50, kept).await;
    for pkid in kept {
        expect_pubrel(&mut s, *pkid).await;
    }
    answer(&mut s, 0x70, kept).await;
    assert_eq!(s.next(QUIET).await, Event::Timeout, "{who}: no PUBREL for the refused one, nothing after the PUBCOMPs");
    drop(s);
    let (mut s, present) = Raw::connect_persistent(addr, client, true).await;
    assert!(present, "{who}: the session is kept");
    assert_eq!(s.next(QUIET).await, Event::Timeout, "{who}: the refused message is not sent again");
}

/// MQTT 5 at QoS 1: a PUBACK that refuses the message ends its delivery (not sent again), and
/// the next message comes.
async fn refused_at_qos_1(addr: SocketAddr, who: &str, client: &str) {
    let (mut s, topic) = subscribed(addr, who, client, true, false).await;
    for m in ["m1", "m2"] {
        publish(addr.port(), &["-i", &format!("{client}-pub"), "-q", "1", "-t", &topic, "-m", m]).await;
    }
    let first = expect_publish(&mut s).await;
    assert_eq!((first.qos, first.payload.as_slice()), (1, b"m1".as_slice()), "{who}");
    // Packet id, reason code 0x80 (unspecified error), no properties.
    s.send(&packet(0x40, [&first.pkid.to_be_bytes()[..], &[0x80]].concat())).await;
    let second = expect_publish(&mut s).await;
    assert_eq!((second.dup, second.payload.as_slice()), (false, b"m2".as_slice()), "{who}: the next message, m1 not again");
    answer(&mut s, 0x40, &[second.pkid]).await;
    assert_eq!(s.next(QUIET).await, Event::Timeout, "{who}: nothing after the PUBACK");
}

/// MQTT 5, a clean session with a receive maximum of 1: a refusing PUBREC gives the exchange's
/// place back at once (4.9), so the next message comes, and no PUBREL for the refused one.
async fn refused_frees_its_place(addr: SocketAddr, who: &str, client: &str) {
    let mut s = Raw::open(addr, true).await;
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60];
    body.extend([3, 0x21, 0, 1]); // properties: receive maximum 1
    body.extend((client.len() as u16).to_be_bytes());
    body.extend(client.as_bytes());
    s.send(&packet(0x10, body)).await;
    match s.next(WAIT).await {
        Event::Packet(0x20, body) => assert_eq!(body.get(1), Some(&0), "{who}: CONNACK refused: {body:?}"),
        other => panic!("{who}: expected CONNACK, got {other:?}"),
    }
    let topic = format!("eo/{client}");
    s.send(&subscribe_packet(1, &topic, 2, true)).await;
    assert!(matches!(s.next(WAIT).await, Event::Packet(0x90, _)), "{who}: SUBACK");
    for m in ["m1", "m2"] {
        publish(addr.port(), &["-i", &format!("{client}-pub"), "-q", "2", "-t", &topic, "-m", m]).await;
    }
    let first = expect_publish(&mut s).await;
    assert_eq!(first.payload, b"m1", "{who}");
    s.send(&packet(0x50, [&first.pkid.to_be_bytes()[..], &[0x80]].concat())).await;
    let second = expect_publish(&mut s).await;
    assert_eq!(second.payload, b"m2", "{who}: the next message, not a PUBREL");
    answer(&mut s, 0x50, &[second.pkid]).await;
    expect_pubrel(&mut s, second.pkid).await;
    answer(&mut s, 0x70, &[second.pkid]).await;
    assert_eq!(s.next(QUIET).await, Event::Timeout, "{who}: nothing after the PUBCOMP");
}
