//! How the broker writes persistent sessions into the store: the session row (JSON: identity,
//! protocol, expiry, subscriptions) and one queued delivery (binary: the message as its
//! subscriber gets it). The store keeps both as opaque values (`sessions`, `session_queue`).
//!
//! A queued delivery, version 1 (integers big-endian):
//!
//! ```text
//! u8 version (1) | u8 qos to send | u8 retain flag to send | u8 qos published with
//! u64 expiry, unix ms (0: none) | u32 len, topic | u32 len, payload
//! u8 has, u32 len, content type | u16 count, (u32 len, key, u32 len, value)*
//! u8 has, u32 len, response topic | u8 has, u32 len, correlation data
//! u8 count, u32 subscription identifier*
//! ```
//!
//! A QoS 2 delivery whose PUBREC came is rewritten (MQTT 4.4: from then on the PUBREL is sent
//! again, never the message), version 2: `u8 version (2) | u16 packet id`. A build that knows
//! only version 1 drops such a row with an error (the client already has the message; it would
//! miss only the PUBREL).

use std::num::NonZeroU16;
use std::time::{Duration, Instant};

use edge_gateway_actors::storage::now_ms;
use ntex_bytes::{ByteString, Bytes};
use serde::{Deserialize, Serialize};

use super::table::Subscription;
use super::{Delivery, Message};

/// A stored session or delivery that cannot be read back.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PersistError {
    /// The value ends before a field does.
    #[error("truncated")]
    Truncated,
    /// A version this build does not know.
    #[error("unknown version {0}")]
    Version(u8),
    /// A string that is not UTF-8.
    #[error("invalid UTF-8")]
    Utf8,
    /// A session row that is not the JSON this build writes.
    #[error("session: {0}")]
    Session(String),
}

const DELIVERY_VERSION: u8 = 1;
const RELEASED_VERSION: u8 = 2;

/// What a persistent session's queue holds at one number.
#[derive(Debug)]
pub enum Queued {
    /// A message to send.
    Delivery(Delivery),
    /// A QoS 2 message the client has received (its PUBREC is recorded): what is left to send is
    /// the PUBREL with this packet id.
    Released(NonZeroU16),
}

/// The row of a QoS 2 delivery once its PUBREC came.
pub fn encode_released(packet_id: NonZeroU16) -> Vec<u8> {
    let [hi, lo] = packet_id.get().to_be_bytes();
    vec![RELEASED_VERSION, hi, lo]
}

/// A queued row read back.
pub fn decode_queued(bytes: &[u8]) -> Result<Queued, PersistError> {
    match bytes.first() {
        Some(&RELEASED_VERSION) => {
            let [_, hi, lo] = bytes else { return Err(PersistError::Truncated) };
            NonZeroU16::new(u16::from_be_bytes([*hi, *lo])).map(Queued::Released).ok_or(PersistError::Truncated)
        }
        _ => decode_delivery(bytes).map(Queued::Delivery),
    }
}

/// A retained message's MQTT 5 expiry, response topic and correlation data as the store keeps
/// them with its record (`None` when it has none: nothing is written).
pub fn retained_props(m: &Message) -> Option<edge_gateway_actors::record::Mqtt5Props> {
    let props = edge_gateway_actors::record::Mqtt5Props {
        expires_at_ms: m.expires_at.map(wall_ms),
        response_topic: m.response_topic.as_ref().map(|t| t.to_string()),
        correlation_data: m.correlation_data.as_ref().map(|c| c.to_vec()),
    };
    (props != Default::default()).then_some(props)
}

/// An instant as wall-clock time (ms since the Unix epoch), to outlive the process.
fn wall_ms(at: Instant) -> u64 {
    now_ms() + at.saturating_duration_since(Instant::now()).as_millis() as u64
}

/// Wall-clock time read back as an instant (already passed: now).
pub fn instant_of(wall_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(wall_ms.saturating_sub(now_ms()))
}

/// A stored record as a message to deliver (retained messages read back at start).
pub(super) fn retained_message(r: edge_gateway_actors::record::Record) -> Message {
    Message {
        topic: r.topic.into(),
        payload: Bytes::from(r.payload),
        qos: r.qos,
        retain: true,
        content_type: r.content_type.map(Into::into),
        user_properties: r.user_properties.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        response_topic: r.mqtt5.as_ref().and_then(|m| m.response_topic.clone()).map(Into::into),
        correlation_data: r.mqtt5.as_ref().and_then(|m| m.correlation_data.clone()).map(Bytes::from),
        // Kept as wall-clock time: it runs out across restarts too.
        expires_at: r.mqtt5.as_ref().and_then(|m| m.expires_at_ms).map(instant_of),
    }
}

/// One delivery, as queued for a persistent session.
pub fn encode_delivery(d: &Delivery) -> Vec<u8> {
    let m = &d.message;
    let mut out = Vec::with_capacity(m.payload.len() + m.topic.len() + 32);
    out.extend_from_slice(&[DELIVERY_VERSION, d.qos, u8::from(d.retain), m.qos]);
    let expires = m.expires_at.map(wall_ms);
    out.extend_from_slice(&expires.unwrap_or(0).to_be_bytes());
    put(&mut out, m.topic.as_bytes());
    put(&mut out, &m.payload);
    put_opt(&mut out, m.content_type.as_ref().map(|s| s.as_str().as_bytes()));
    out.extend_from_slice(&(m.user_properties.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    for (k, v) in m.user_properties.iter().take(usize::from(u16::MAX)) {
        put(&mut out, k.as_bytes());
        put(&mut out, v.as_bytes());
    }
    put_opt(&mut out, m.response_topic.as_ref().map(|s| s.as_str().as_bytes()));
    put_opt(&mut out, m.correlation_data.as_deref());
    let ids = &d.subscription_ids[..d.subscription_ids.len().min(255)];
    out.push(ids.len() as u8);
    for id in ids {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out
}

/// A queued delivery read back (its expiry, kept as wall-clock time, back to an instant).
fn decode_delivery(bytes: &[u8]) -> Result<Delivery, PersistError> {
    let mut r = Reader(bytes);
    let [version, qos, retain, published] = r.take::<4>()?;
    if version != DELIVERY_VERSION {
        return Err(PersistError::Version(version));
    }
    let expires_ms = u64::from_be_bytes(r.take::<8>()?);
    let topic = r.string()?;
    let payload = Bytes::copy_from_slice(r.field()?);
    let content_type = r.opt()?.map(utf8).transpose()?;
    let count = u16::from_be_bytes(r.take::<2>()?);
    let mut user_properties = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        user_properties.push((r.string()?, r.string()?));
    }
    let response_topic = r.opt()?.map(utf8).transpose()?;
    let correlation_data = r.opt()?.map(Bytes::copy_from_slice);
    let [ids] = r.take::<1>()?;
    let subscription_ids = (0..ids).map(|_| r.take::<4>().map(u32::from_be_bytes)).collect::<Result<_, _>>()?;
    let expires_at = (expires_ms > 0).then(|| instant_of(expires_ms));
    let message = Message {
        topic,
        payload,
        qos: published,
        retain: retain == 1,
        content_type,
        user_properties,
        response_topic,
        correlation_data,
        expires_at,
    };
    Ok(Delivery { message: std::sync::Arc::new(message), qos, retain: retain == 1, subscription_ids })
}

fn put(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

fn put_opt(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        Some(f) => {
            out.push(1);
            put(out, f);
        }
        None => out.push(0),
    }
}

fn utf8(field: &[u8]) -> Result<ByteString, PersistError> {
    std::str::from_utf8(field).map(ByteString::from).map_err(|_| PersistError::Utf8)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], PersistError> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(PersistError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }

    fn field(&mut self) -> Result<&'a [u8], PersistError> {
        let len = u32::from_be_bytes(self.take::<4>()?) as usize;
        let (field, rest) = self.0.split_at_checked(len).ok_or(PersistError::Truncated)?;
        self.0 = rest;
        Ok(field)
    }

    fn string(&mut self) -> Result<ByteString, PersistError> {
        utf8(self.field()?)
    }

    fn opt(&mut self) -> Result<Option<&'a [u8]>, PersistError> {
        let [has] = self.take::<1>()?;
        if has == 1 { self.field().map(Some) } else { Ok(None) }
    }
}

/// A persistent session as stored (the `sessions` row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSession {
    /// Who owns it (a reconnect under another identity does not resume it).
    pub identity: String,
    /// MQTT 5 (one copy per matching subscription) or 3.1.1.
    pub mqtt5: bool,
    /// Seconds it is kept after its connection ends (`u32::MAX`: never expires).
    pub expiry_secs: u32,
    /// Its subscriptions.
    pub subscriptions: Vec<StoredSubscription>,
    /// When its connection ended (ms since the Unix epoch), written at the disconnect of a
    /// session that expires: its expiry still counts from then after a restart. Absent while
    /// connected (and in rows from before it: counted from the start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_since_ms: Option<u64>,
}

/// One subscription of a stored session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSubscription {
    /// The filter as subscribed (`$share/<group>/...` included).
    pub filter: String,
    /// Granted QoS.
    pub qos: u8,
    /// MQTT 5 no-local.
    #[serde(default)]
    pub no_local: bool,
    /// MQTT 5 retain-as-published.
    #[serde(default)]
    pub retain_as_published: bool,
    /// MQTT 5 subscription identifier.
    #[serde(default)]
    pub id: Option<u32>,
}

impl StoredSession {
    /// The JSON row.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A row read back, its subscriptions parsed again.
    pub fn decode(bytes: &[u8]) -> Result<(Self, Vec<Subscription>), PersistError> {
        let session: StoredSession = serde_json::from_slice(bytes).map_err(|e| PersistError::Session(e.to_string()))?;
        let subs = session
            .subscriptions
            .iter()
            .map(|s| {
                Subscription::new(&s.filter, s.qos.min(2), s.no_local, s.retain_as_published, s.id)
                    .map_err(|e| PersistError::Session(format!("filter {:?}: {e}", s.filter)))
            })
            .collect::<Result<_, _>>()?;
        Ok((session, subs))
    }
}

impl From<&Subscription> for StoredSubscription {
    fn from(s: &Subscription) -> Self {
        Self { filter: s.filter.clone(), qos: s.qos, no_local: s.no_local, retain_as_published: s.retain_as_published, id: s.id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_reads_back_as_written_and_a_cut_one_is_refused() {
        let message = Message {
            topic: "site/a".into(),
            payload: Bytes::from_static(b"\x00\xffpayload"),
            qos: 2,
            retain: true,
            content_type: Some("application/json".into()),
            user_properties: vec![("k".into(), "v".into())],
            response_topic: Some("reply/x".into()),
            correlation_data: Some(Bytes::from_static(b"corr")),
            expires_at: Some(Instant::now() + Duration::from_secs(60)),
        };
        let d = Delivery { message: std::sync::Arc::new(message), qos: 1, retain: false, subscription_ids: vec![7, 9] };
        let bytes = encode_delivery(&d);
        let back = decode_delivery(&bytes).unwrap();
        let (m, n) = (&d.message, &back.message);
        assert_eq!((back.qos, back.retain, &back.subscription_ids), (1, false, &vec![7, 9]));
        assert_eq!((&n.topic, &n.payload, n.qos, &n.content_type), (&m.topic, &m.payload, 2, &m.content_type));
        assert_eq!(
            (&n.user_properties, &n.response_topic, &n.correlation_data),
            (&m.user_properties, &m.response_topic, &m.correlation_data)
        );
        let left = n.expires_at.unwrap().saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(58) && left <= Duration::from_secs(60), "{left:?}");
        for cut in 0..bytes.len() {
            assert!(decode_delivery(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut future = bytes.clone();
        future[0] = 9;
        assert_eq!(decode_delivery(&future).unwrap_err(), PersistError::Version(9));
        assert!(matches!(decode_queued(&bytes), Ok(Queued::Delivery(_))));
    }

    #[test]
    fn a_released_delivery_keeps_its_packet_id() {
        let id = NonZeroU16::new(0xab01).unwrap();
        let bytes = encode_released(id);
        assert!(matches!(decode_queued(&bytes), Ok(Queued::Released(back)) if back == id));
        assert!(decode_queued(&bytes[..2]).is_err() && decode_queued(&[2, 0, 0]).is_err() && decode_queued(&[2, 0, 1, 0]).is_err());
    }

    #[test]
    fn a_session_reads_back_and_a_bad_filter_is_named() {
        let sub = Subscription::new("$share/g/site/+", 1, false, true, Some(3)).unwrap();
        let s = StoredSession {
            identity: "dev".into(),
            mqtt5: true,
            expiry_secs: 60,
            subscriptions: vec![(&sub).into()],
            offline_since_ms: Some(7),
        };
        let (back, subs) = StoredSession::decode(&s.encode()).unwrap();
        assert_eq!(back, s);
        assert_eq!((subs[0].share.as_deref(), subs[0].id, subs[0].retain_as_published), (Some("g"), Some(3), true));
        let bad = br#"{"identity":"d","mqtt5":false,"expiry_secs":1,"subscriptions":[{"filter":"a/#/b","qos":1}]}"#;
        assert!(matches!(StoredSession::decode(bad), Err(PersistError::Session(e)) if e.contains("a/#/b")));
        assert!(StoredSession::decode(b"{").is_err());
    }
}
