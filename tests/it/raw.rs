//! A minimal MQTT client written from the spec, for what real clients will not send: malformed
//! packets, protocol violations, and a device that reconnects and resends until acknowledged.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the server did next.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A whole packet: first byte and body (after the remaining length).
    Packet(u8, Vec<u8>),
    /// The server closed the connection.
    Closed,
    /// Nothing within the timeout.
    Timeout,
}

/// Remaining Length encoding (MQTT variable byte integer).
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

pub fn string(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

pub fn packet(first: u8, body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend(body);
    out
}

/// CONNECT with the given client id; `v5` selects protocol level 5.
pub fn connect_packet(client_id: &str, v5: bool, clean: bool, keep_alive: u16) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.push(if v5 { 5 } else { 4 });
    body.push(if clean { 0x02 } else { 0 });
    body.extend(keep_alive.to_be_bytes());
    if v5 {
        body.push(0); // no properties
    }
    body.extend(string(client_id.as_bytes()));
    packet(0x10, body)
}

/// CONNECT with clean session/start 0 that asks for a lasting session (MQTT 5: a session
/// expiry interval of `expiry_secs`; 3.1.1: kept until a clean one).
pub fn connect_persistent_packet(client_id: &str, v5: bool, expiry_secs: u32) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.push(if v5 { 5 } else { 4 });
    body.push(0);
    body.extend(60u16.to_be_bytes());
    if v5 {
        body.push(5);
        body.push(0x11); // session expiry interval
        body.extend(expiry_secs.to_be_bytes());
    }
    body.extend(string(client_id.as_bytes()));
    packet(0x10, body)
}

/// SUBSCRIBE to one filter at `qos`.
pub fn subscribe_packet(pkid: u16, filter: &str, qos: u8, v5: bool) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    body.extend(string(filter.as_bytes()));
    body.push(qos);
    packet(0x82, body)
}

/// A PUBLISH as received: flags, packet id, topic, payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Received {
    pub dup: bool,
    pub qos: u8,
    pub pkid: u16,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Read a PUBLISH packet (`first` is its first byte); `None` for another packet.
pub fn parse_publish(first: u8, body: &[u8], v5: bool) -> Option<Received> {
    if first >> 4 != 3 {
        return None;
    }
    let qos = (first >> 1) & 3;
    let len = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let topic = String::from_utf8(body[2..2 + len].to_vec()).ok()?;
    let mut at = 2 + len;
    let pkid = if qos > 0 {
        at += 2;
        u16::from_be_bytes([body[at - 2], body[at - 1]])
    } else {
        0
    };
    if v5 {
        // Property length (a variable byte integer) and the properties.
        let (mut n, mut mult) = (0usize, 1usize);
        loop {
            let b = body[at];
            at += 1;
            n += usize::from(b & 0x7f) * mult;
            mult *= 128;
            if b & 0x80 == 0 {
                break;
            }
        }
        at += n;
    }
    Some(Received { dup: first & 0x08 != 0, qos, pkid, topic, payload: body[at..].to_vec() })
}

/// PUBLISH; `pkid` is used for QoS > 0.
pub fn publish_packet(topic: &str, payload: &[u8], qos: u8, pkid: u16, v5: bool) -> Vec<u8> {
    let mut body = string(topic.as_bytes());
    if qos > 0 {
        body.extend(pkid.to_be_bytes());
    }
    if v5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1), body)
}

/// One raw connection.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    pub v5: bool,
}

impl Raw {
    /// Open a TCP connection without sending anything.
    pub async fn open(addr: SocketAddr, v5: bool) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect to the gateway");
        stream.set_nodelay(true).ok();
        Raw { stream, buf: Vec::new(), v5 }
    }

    /// Open, CONNECT, and expect a successful CONNACK.
    pub async fn connect(addr: SocketAddr, client_id: &str, v5: bool) -> Raw {
        let mut raw = Raw::open(addr, v5).await;
        raw.send(&connect_packet(client_id, v5, true, 60)).await;
        match raw.next(Duration::from_secs(10)).await {
            Event::Packet(0x20, body) => assert_eq!(body.get(1), Some(&0), "CONNACK refused: {body:?}"),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        raw
    }

    /// Open and CONNECT asking for a lasting session; the CONNACK's session-present flag.
    pub async fn connect_persistent(addr: SocketAddr, client_id: &str, v5: bool) -> (Raw, bool) {
        let mut raw = Raw::open(addr, v5).await;
        raw.send(&connect_persistent_packet(client_id, v5, 300)).await;
        match raw.next(Duration::from_secs(10)).await {
            Event::Packet(0x20, body) => {
                assert_eq!(body.get(1), Some(&0), "CONNACK refused: {body:?}");
                (raw, body[0] & 1 == 1)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Write raw bytes (errors are ignored: the server may have closed already).
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Write `bytes`; false when the connection refused them (closed or reset) or did not take
    /// them within `timeout`.
    pub async fn try_send(&mut self, bytes: &[u8], timeout: Duration) -> bool {
        matches!(tokio::time::timeout(timeout, self.stream.write_all(bytes)).await, Ok(Ok(())))
    }

    /// Send a QoS1 PUBLISH.
    pub async fn publish(&mut self, topic: &str, payload: &[u8], pkid: u16) {
        let p = publish_packet(topic, payload, 1, pkid, self.v5);
        self.send(&p).await;
    }

    /// The next whole packet, or closed / timeout.
    pub async fn next(&mut self, timeout: Duration) -> Event {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some((first, body, used)) = parse_packet(&self.buf) {
                self.buf.drain(..used);
                return Event::Packet(first, body);
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Event::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => return Event::Closed,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Skip packets until the connection closes; panics if it stays open past `timeout`.
    pub async fn expect_closed(&mut self, timeout: Duration) -> Vec<(u8, Vec<u8>)> {
        let mut seen = Vec::new();
        loop {
            match self.next(timeout).await {
                Event::Closed => return seen,
                Event::Timeout => panic!("connection still open after {timeout:?}; packets seen: {seen:?}"),
                Event::Packet(f, b) => seen.push((f, b)),
            }
        }
    }

    /// The PUBACK for `pkid`: its reason code (0 when absent, as in v3 and v5 success).
    pub async fn expect_puback(&mut self, pkid: u16) -> u8 {
        match self.next(Duration::from_secs(10)).await {
            Event::Packet(0x40, body) => {
                assert_eq!(&body[..2], &pkid.to_be_bytes(), "PUBACK for another packet id");
                body.get(2).copied().unwrap_or(0)
            }
            other => panic!("expected PUBACK for {pkid}, got {other:?}"),
        }
    }
}

/// The first whole packet in `buf`: first byte, body, bytes used.
pub fn parse_packet(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let first = *buf.first()?;
    let (mut len, mut mult, mut i) = (0usize, 1usize, 1usize);
    loop {
        let b = *buf.get(i)?;
        len += (b & 0x7f) as usize * mult;
        mult *= 128;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    let body = buf.get(i..i + len)?.to_vec();
    Some((first, body, i + len))
}

/// A device that publishes `payloads` in order with QoS1 and at most `window` in flight, and on
/// a closed connection reconnects and resends everything not yet acknowledged. Returns the
/// payloads that were acknowledged, in order. Gives up (panics) after `deadline`.
pub async fn resilient_device(
    addr: SocketAddr,
    client_id: &str,
    topic: &str,
    payloads: Vec<String>,
    window: usize,
    deadline: Duration,
) -> Vec<String> {
    let started = Instant::now();
    let mut acked = Vec::with_capacity(payloads.len());
    let mut next = 0usize;
    let mut reconnects = 0;
    while acked.len() < payloads.len() {
        assert!(started.elapsed() < deadline, "{client_id}: not done after {deadline:?} ({} acked)", acked.len());
        let Ok(stream) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut raw = Raw { stream, buf: Vec::new(), v5: false };
        raw.send(&connect_packet(client_id, false, true, 60)).await;
        if !matches!(raw.next(Duration::from_secs(5)).await, Event::Packet(0x20, b) if b.get(1) == Some(&0)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        if reconnects > 0 {
            next = acked.len(); // resend everything unacknowledged, in order
        }
        reconnects += 1;
        let mut inflight: VecDeque<(u16, usize)> = VecDeque::new();
        loop {
            while inflight.len() < window && next < payloads.len() {
                let pkid = (next % 65_000 + 1) as u16;
                raw.publish(topic, payloads[next].as_bytes(), pkid).await;
                inflight.push_back((pkid, next));
                next += 1;
            }
            if inflight.is_empty() {
                break;
            }
            match raw.next(Duration::from_secs(15)).await {
                Event::Packet(0x40, body) => {
                    let pkid = u16::from_be_bytes([body[0], body[1]]);
                    // QoS1 acks arrive in order on one connection.
                    if inflight.front().map(|f| f.0) == Some(pkid) {
                        let (_, idx) = inflight.pop_front().unwrap();
                        acked.push(payloads[idx].clone());
                    }
                }
                Event::Packet(..) => {}
                Event::Closed | Event::Timeout => break,
            }
        }
    }
    acked
}
