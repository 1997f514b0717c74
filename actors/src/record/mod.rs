//! One stored message and its on-disk encoding.
//!
//! Encoding (version 4; version 3 is the same without the trailing MQTT 5 section, version 2
//! also without the schema section, version 1 also without the trace context; all are still
//! read), all integers little-endian:
//!
//! ```text
//! u8  version (4)
//! u64 received_at_ms (Unix epoch, gateway clock)
//! u8  qos
//! str idempotency key   } each `str` is a u16 length + UTF-8 bytes
//! str device identity   }
//! str topic             }
//! u8  has_content_type, then str content_type if 1
//! u16 user property count, then (str key, str value) pairs
//! u32 payload length + payload bytes
//! u8  has_trace, then if 1: 16 bytes trace id, 8 bytes span id, u8 trace flags (the W3C
//!     context of the message's receive span, so that a message forwarded later, also after a
//!     restart, joins its trace)
//! u8  has_schema, then if 1: str subject, u32 version, u8 valid, u16 error count, str errors
//!     (the schema the payload was checked against, see `docs/SCHEMAS.md`)
//! u8  has_mqtt5, then if 1: u64 expires_at_ms (Unix epoch; 0: never), u8 has_response_topic,
//!     then str response_topic if 1, u8 has_correlation_data, then u32 length + bytes if 1
//!     (what an MQTT 5 subscriber is given besides the above: kept for retained messages,
//!     which are delivered again after a restart)
//! ```
//!
//! The sequence number is the table key and is not repeated in the value.

use thiserror::Error;

/// The record format this build writes (it reads every earlier one too, from 1).
pub const VERSION: u8 = 4;

/// A W3C trace context (the `traceparent` fields) stored with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceCtx {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// Span id (of the span to continue from).
    pub span_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceCtx {
    /// Whether the trace is sampled (spans are recorded for it).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// The schema a payload was checked against, and what the check found: stored with the record
/// and given to every sink.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SchemaTag {
    /// The registry subject (`telemetry`).
    pub subject: String,
    /// The subject's version the payload was checked against (or that the device named, when
    /// it names one the registry does not have).
    pub version: u32,
    /// Whether the payload validated.
    pub valid: bool,
    /// Why not: one line per failure, each led by the failing JSON pointer (`/temp: ...`).
    pub errors: Vec<String>,
}

/// The MQTT 5 properties a subscriber gets that sinks do not: the message expiry (as wall-clock
/// time, so that it still runs out after a restart), the response topic and correlation data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mqtt5Props {
    /// When the message expires (ms since the Unix epoch), if it does.
    pub expires_at_ms: Option<u64>,
    /// MQTT 5 response topic.
    pub response_topic: Option<String>,
    /// MQTT 5 correlation data.
    pub correlation_data: Option<Vec<u8>>,
}

/// A message as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the store; assigned at commit, strictly increasing, never reused.
    pub seq: u64,
    /// `{gateway_id}:{run}:{seq}` (`{gateway_id}:{seq}` in stores written before runs): the key
    /// the cloud dedupes on; fixed when the record is written (see `storage::recovery::run_prefix`).
    pub key: String,
    /// Who sent it: the connection's identity (certificate field, username, or the client id
    /// on a lab listener).
    pub device: String,
    /// MQTT topic name as published.
    pub topic: String,
    /// QoS the device published with (0, 1 or 2).
    pub qos: u8,
    /// Raw payload bytes.
    pub payload: Vec<u8>,
    /// MQTT 5 content type, if the device set one.
    pub content_type: Option<String>,
    /// MQTT 5 user properties, in the order the device sent them.
    pub user_properties: Vec<(String, String)>,
    /// When the gateway received it (ms since the Unix epoch).
    pub received_at_ms: u64,
    /// Trace context of its receive span, if traced.
    pub trace: Option<TraceCtx>,
    /// The schema check of its payload, when a schema binding covers its topic.
    pub schema: Option<SchemaTag>,
    /// Its MQTT 5 expiry, response topic and correlation data, when it has any.
    pub mqtt5: Option<Mqtt5Props>,
}

/// A message from a device, before the store gave it a sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewRecord {
    /// Who sent it.
    pub device: String,
    /// MQTT topic name.
    pub topic: String,
    /// QoS 0, 1 or 2.
    pub qos: u8,
    /// Raw payload bytes.
    pub payload: Vec<u8>,
    /// MQTT 5 content type.
    pub content_type: Option<String>,
    /// MQTT 5 user properties.
    pub user_properties: Vec<(String, String)>,
    /// Receive time, ms since the Unix epoch.
    pub received_at_ms: u64,
    /// Trace context of its receive span, if traced.
    pub trace: Option<TraceCtx>,
    /// The schema check of its payload, when a schema binding covers its topic.
    pub schema: Option<SchemaTag>,
    /// Its MQTT 5 expiry, response topic and correlation data, when it has any.
    pub mqtt5: Option<Mqtt5Props>,
    /// Failed its schema and is kept apart: stored in the rejected table, never forwarded.
    /// Not part of the encoding (the table says it).
    pub kept_apart: bool,
    /// Published with the retain flag: also replaces (an empty payload: clears) the topic's
    /// retained message, in the same transaction. Not part of the encoding.
    pub retain: bool,
    /// Deliveries to persistent sessions, queued in the same transaction (`session_queue`).
    /// Not part of the encoding.
    pub copies: Vec<SessionCopy>,
}

/// One delivery of a message to a persistent session, queued durably with it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionCopy {
    /// The session's client id.
    pub client_id: String,
    /// The delivery, encoded by the broker (the store does not read it).
    pub value: Vec<u8>,
}

/// A stored value that cannot be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The value ends before a field does.
    #[error("record truncated")]
    Truncated,
    /// The first byte names a format this build does not know.
    #[error("unknown record version {0}")]
    UnknownVersion(u8),
    /// A string field holds invalid UTF-8.
    #[error("record holds invalid UTF-8")]
    Utf8,
}

impl NewRecord {
    /// Encode as stored under `seq` with idempotency key `key`.
    pub fn encode(&self, key: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + key.len() + self.device.len() + self.topic.len() + self.payload.len());
        out.push(VERSION);
        out.extend_from_slice(&self.received_at_ms.to_le_bytes());
        out.push(self.qos);
        put_str(&mut out, key);
        put_str(&mut out, &self.device);
        put_str(&mut out, &self.topic);
        match &self.content_type {
            Some(ct) => {
                out.push(1);
                put_str(&mut out, ct);
            }
            None => out.push(0),
        }
        let n = self.user_properties.len().min(u16::MAX as usize);
        out.extend_from_slice(&(n as u16).to_le_bytes());
        for (k, v) in self.user_properties.iter().take(n) {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
        out.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.payload);
        match &self.trace {
            Some(t) => {
                out.push(1);
                out.extend_from_slice(&t.trace_id);
                out.extend_from_slice(&t.span_id);
                out.push(t.flags);
            }
            None => out.push(0),
        }
        match &self.schema {
            Some(tag) => {
                out.push(1);
                put_str(&mut out, &tag.subject);
                out.extend_from_slice(&tag.version.to_le_bytes());
                out.push(u8::from(tag.valid));
                let n = tag.errors.len().min(u16::MAX as usize);
                out.extend_from_slice(&(n as u16).to_le_bytes());
                for e in tag.errors.iter().take(n) {
                    put_str(&mut out, e);
                }
            }
            None => out.push(0),
        }
        match &self.mqtt5 {
            Some(m) => {
                out.push(1);
                out.extend_from_slice(&m.expires_at_ms.unwrap_or(0).to_le_bytes());
                match &m.response_topic {
                    Some(t) => {
                        out.push(1);
                        put_str(&mut out, t);
                    }
                    None => out.push(0),
                }
                match &m.correlation_data {
                    Some(c) => {
                        out.push(1);
                        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
                        out.extend_from_slice(c);
                    }
                    None => out.push(0),
                }
            }
            None => out.push(0),
        }
        out
    }
}

impl Record {
    /// Decode a stored value found under `seq`.
    pub fn decode(seq: u64, bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_prefix(seq, bytes).map(|(record, _)| record)
    }

    /// Decode the record at the start of `bytes` (more may follow); also how many bytes it
    /// took. For salvaging records out of a file's raw bytes.
    pub fn decode_prefix(seq: u64, bytes: &[u8]) -> Result<(Self, usize), DecodeError> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if !(1..=VERSION).contains(&version) {
            return Err(DecodeError::UnknownVersion(version));
        }
        let received_at_ms = u64::from_le_bytes(r.take(8)?.try_into().map_err(|_| DecodeError::Truncated)?);
        let qos = r.u8()?;
        let key = r.str()?;
        let device = r.str()?;
        let topic = r.str()?;
        let content_type = if r.u8()? == 1 { Some(r.str()?) } else { None };
        let n = r.u16()?;
        let mut user_properties = Vec::with_capacity(n as usize);
        for _ in 0..n {
            user_properties.push((r.str()?, r.str()?));
        }
        let len = u32::from_le_bytes(r.take(4)?.try_into().map_err(|_| DecodeError::Truncated)?);
        let payload = r.take(len as usize)?.to_vec();
        let trace = if version >= 2 && r.u8()? == 1 {
            let trace_id = r.take(16)?.try_into().map_err(|_| DecodeError::Truncated)?;
            let span_id = r.take(8)?.try_into().map_err(|_| DecodeError::Truncated)?;
            Some(TraceCtx { trace_id, span_id, flags: r.u8()? })
        } else {
            None
        };
        let schema = if version >= 3 && r.u8()? == 1 {
            let subject = r.str()?;
            let version = u32::from_le_bytes(r.take(4)?.try_into().map_err(|_| DecodeError::Truncated)?);
            let valid = r.u8()? == 1;
            let n = r.u16()?;
            let errors = (0..n).map(|_| r.str()).collect::<Result<_, _>>()?;
            Some(SchemaTag { subject, version, valid, errors })
        } else {
            None
        };
        let mqtt5 = if version >= 4 && r.u8()? == 1 {
            let expires = u64::from_le_bytes(r.take(8)?.try_into().map_err(|_| DecodeError::Truncated)?);
            let response_topic = if r.u8()? == 1 { Some(r.str()?) } else { None };
            let correlation_data = if r.u8()? == 1 {
                let len = u32::from_le_bytes(r.take(4)?.try_into().map_err(|_| DecodeError::Truncated)?);
                Some(r.take(len as usize)?.to_vec())
            } else {
                None
            };
            Some(Mqtt5Props { expires_at_ms: (expires > 0).then_some(expires), response_topic, correlation_data })
        } else {
            None
        };
        let used = bytes.len() - r.0.len();
        let record = Record { seq, key, device, topic, qos, payload, content_type, user_properties, received_at_ms, trace, schema, mqtt5 };
        Ok((record, used))
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Fields come from MQTT (topic, client id, properties): all are <= 65535 bytes by protocol;
    // anything longer is cut on a character boundary, so what is stored always decodes.
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let bytes = &s.as_bytes()[..end];
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    fn str(&mut self) -> Result<String, DecodeError> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| DecodeError::Utf8)
    }
}

#[cfg(test)]
mod tests;
