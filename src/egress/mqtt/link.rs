//! One connection of the bridge to its upstream broker: TCP or TLS, MQTT 5 packets encoded and
//! decoded by ntex-mqtt's own v5 codec (the one the local broker speaks), and one task that
//! owns the socket. The task writes what the sink hands it (whole runs of PUBLISH packets in one
//! write), reports every PUBACK, hands downlink messages to the local broker and acknowledges
//! them after their commit, and keeps the connection alive with PINGREQs.

use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::Duration;

use ntex_bytes::{BytePages, Bytes};
use ntex_codec::Encoder;
use ntex_mqtt::QoS;
use ntex_mqtt::v5::codec::Connect;
use ntex_mqtt::v5::codec::{
    Codec, ConnectAckReason, Encoded, Packet, Publish, PublishAck, PublishAckReason, Subscribe, SubscribeAckReason, SubscriptionOptions,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::super::downlink::{Downlink, Taken};
use super::reader::{Incoming, Reader};

/// Where and how to connect.
pub struct Target {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// TLS (`mqtts://`) with this client config; `None`: plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// A persistent upstream session (with a downlink) of this many seconds; `None`: clean.
    pub session_secs: Option<u32>,
}

/// The largest packet the bridge takes from upstream (said in CONNECT, so the upstream does not
/// send larger ones).
pub(super) const MAX_INCOMING: u32 = 16 * 1024 * 1024;

/// Idle time after which the bridge sends a PINGREQ; keep-alive said in CONNECT is twice that.
const PING_EVERY: Duration = Duration::from_secs(15);

/// Why a connection could not be opened or ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum LinkError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS handshake with {0}: {1}")]
    Tls(String, std::io::Error),
    #[error("\"{0}\" is not a TLS server name")]
    ServerName(String),
    #[error("upstream refused the connection: {0:?}")]
    Refused(ConnectAckReason),
    #[error("the upstream answered CONNECT with {0}")]
    Unexpected(String),
    #[error("the upstream closed the connection")]
    Closed,
    #[error("upstream I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("upstream sent a packet the bridge cannot decode: {0:?}")]
    Decode(ntex_mqtt::error::DecodeError),
    #[error("a packet for upstream cannot be encoded: {0:?}")]
    Encode(ntex_mqtt::error::EncodeError),
}

/// What the connection's task saw.
pub(super) enum Report {
    /// The upstream acknowledged this packet id.
    Acked(u16, PublishAckReason),
    /// The connection failed; the task has ended.
    Failed(String),
}

/// An open connection: what the upstream allows, the way to its task, and the task.
pub(super) struct Link {
    /// Encoded packets to write, in order.
    pub out: mpsc::UnboundedSender<Bytes>,
    /// What the task reports.
    pub reports: mpsc::UnboundedReceiver<Report>,
    /// The upstream's receive maximum: QoS 1 publishes it takes unacknowledged.
    pub window: usize,
    /// The largest packet the upstream takes (0: no limit said).
    pub max_packet: u32,
    /// The next packet id of the bridge's publishes.
    pub next_id: u16,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Link {
    /// A packet id not in use: ids go round 1..=65535 and at most `window` are in flight, and
    /// a connection's ids of a failed batch are never reused (the connection is dropped).
    pub fn packet_id(&mut self) -> NonZeroU16 {
        let id = NonZeroU16::new(self.next_id).unwrap_or(NonZeroU16::MIN);
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        id
    }
}

pub(super) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Connect, say CONNECT, wait for CONNACK, subscribe the downlink's filters, start the task.
pub(super) async fn open(target: &Target, downlink: Option<Arc<Downlink>>, prefix: String) -> Result<Link, LinkError> {
    let addr = format!("{}:{}", target.host, target.port);
    let tcp = tokio::net::TcpStream::connect(&addr).await.map_err(|e| LinkError::Connect(addr.clone(), e))?;
    // A batch is many small publishes written together: no Nagle delay on the last one.
    tcp.set_nodelay(true)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
    let mut stream: Box<dyn Stream> = match &target.tls {
        None => Box::new(tcp),
        Some(config) => {
            let name =
                rustls::pki_types::ServerName::try_from(target.host.clone()).map_err(|_| LinkError::ServerName(target.host.clone()))?;
            let tls =
                tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await.map_err(|e| LinkError::Tls(addr.clone(), e))?;
            Box::new(tls)
        }
    };
    let codec = Codec::new();
    let connect = Connect {
        clean_start: target.session_secs.is_none(),
        keep_alive: (PING_EVERY.as_secs() * 2) as u16,
        session_expiry_interval_secs: target.session_secs.unwrap_or(0),
        client_id: target.client_id.as_str().into(),
        username: target.username.as_deref().map(Into::into),
        password: target.password.as_ref().map(|p| Bytes::copy_from_slice(p.as_bytes())),
        max_packet_size: NonZeroU32::new(MAX_INCOMING),
        receive_max: NonZeroU16::new(DOWNLINK_IN_FLIGHT),
        ..Connect::default()
    };
    stream.write_all(&encode(&codec, Packet::from(connect).into())?).await?;
    stream.flush().await?;
    let mut reader = Reader::new();
    let ack = match reader.packet(&mut stream).await? {
        Incoming::Packet(Packet::ConnectAck(ack)) => ack,
        Incoming::Packet(other) => return Err(LinkError::Unexpected(format!("{other:?}"))),
        Incoming::Publish(..) => return Err(LinkError::Unexpected("PUBLISH".into())),
    };
    if ack.reason_code != ConnectAckReason::Success {
        return Err(LinkError::Refused(ack.reason_code));
    }
    if ack.max_qos == QoS::AtMostOnce {
        return Err(LinkError::Unexpected("a CONNACK with maximum QoS 0 (the bridge publishes at QoS 1)".into()));
    }
    // The upstream may ask for a shorter keep-alive than the bridge said: ping within half of it.
    let ping_every = match ack.server_keepalive_sec {
        Some(secs) if secs > 0 => PING_EVERY.min(Duration::from_millis(u64::from(secs) * 500)),
        _ => PING_EVERY,
    };
    let max_packet = ack.max_packet_size.unwrap_or(0);
    let mut next_id = 1;
    if let Some(d) = &downlink {
        let subscribe = Subscribe {
            packet_id: NonZeroU16::MIN,
            id: None,
            user_properties: Vec::new(),
            topic_filters: d
                .filters
                .iter()
                .map(|f| (f.as_str().into(), SubscriptionOptions { qos: QoS::AtLeastOnce, ..SubscriptionOptions::default() }))
                .collect(),
        };
        stream.write_all(&encode(&codec, Packet::Subscribe(subscribe).into())?).await?;
        stream.flush().await?;
        next_id = 2;
    }
    let (out, outgoing) = mpsc::unbounded_channel();
    let (tx, reports) = mpsc::unbounded_channel();
    let conn = Connection { stream, fd, reader, codec, outgoing, tx, downlink, prefix, ping_every };
    let task = tokio::spawn(conn.run());
    Ok(Link { out, reports, window: usize::from(ack.receive_max.get()), max_packet, next_id, task })
}

/// Downlink messages the upstream may have in flight to the bridge at once (each waits for a
/// local commit before its PUBACK).
const DOWNLINK_IN_FLIGHT: u16 = 64;

/// One packet into bytes.
pub(super) fn encode(codec: &Codec, item: Encoded) -> Result<Bytes, LinkError> {
    let mut pages = BytePages::default();
    codec.encodev(item, &mut pages).map_err(LinkError::Encode)?;
    Ok(pages.freeze())
}

/// Acknowledge what was read at once instead of up to 40 ms later (Linux's delayed ACK; the
/// kernel clears the flag again, so it is set after every read). An upstream that writes its
/// PUBACKs with Nagle's algorithm on (mosquitto's default) holds the last ones of a batch until
/// its earlier segments are acknowledged: with delayed ACKs every batch waited ~40 ms for its
/// last PUBACKs (measured: 11,000 msg/s into a local mosquitto, 50,800 with Nagle off there).
fn quick_ack(fd: std::os::fd::RawFd) {
    let on: libc::c_int = 1;
    // SAFETY: `fd` is the connection's socket, open for as long as the connection's stream is;
    // the option value is a c_int that outlives the call.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The task's state.
struct Connection {
    stream: Box<dyn Stream>,
    /// The TCP socket under `stream` (for TCP_QUICKACK).
    fd: std::os::fd::RawFd,
    reader: Reader,
    /// Encodes PUBACKs and PINGREQs.
    codec: Codec,
    outgoing: mpsc::UnboundedReceiver<Bytes>,
    tx: mpsc::UnboundedSender<Report>,
    downlink: Option<Arc<Downlink>>,
    prefix: String,
    /// Idle time before a PINGREQ.
    ping_every: Duration,
}

impl Connection {
    /// Until the connection fails or the link is dropped.
    async fn run(mut self) {
        let why = match self.serve().await {
            Ok(()) => return,
            Err(e) => e.to_string(),
        };
        let _ = self.tx.send(Report::Failed(why));
    }

    async fn serve(&mut self) -> Result<(), LinkError> {
        let mut ping = tokio::time::interval(self.ping_every);
        ping.tick().await;
        // `waiting`: a PINGREQ went out at the last tick; `heard`: any packet since.
        let (mut wrote, mut heard, mut waiting) = (false, false, false);
        loop {
            while let Some(packet) = self.reader.next()? {
                heard = true;
                self.handle(packet).await?;
            }
            tokio::select! {
                read = self.reader.fill(&mut self.stream) => {
                    read?;
                    quick_ack(self.fd);
                }
                data = self.outgoing.recv() => {
                    let Some(first) = data else { return Ok(()) };
                    self.write(first).await?;
                    wrote = true;
                }
                _ = ping.tick() => {
                    if waiting && !heard {
                        return Err(LinkError::Unexpected(format!("no PINGRESP within {:?}", self.ping_every)));
                    }
                    // Idle since the last tick: a PINGREQ keeps the session and proves the link.
                    waiting = !wrote;
                    if waiting {
                        let ping = encode(&self.codec, Packet::PingRequest.into())?;
                        self.write(ping).await?;
                    }
                    (wrote, heard) = (false, false);
                }
            }
        }
    }

    /// Write `first` and whatever else is queued, in one go.
    async fn write(&mut self, first: Bytes) -> Result<(), LinkError> {
        let mut more = Vec::new();
        while let Ok(b) = self.outgoing.try_recv() {
            more.push(b);
            if more.len() >= 1024 {
                break;
            }
        }
        if more.is_empty() {
            self.stream.write_all(&first).await?;
        } else {
            let mut all = Vec::with_capacity(first.len() + more.iter().map(Bytes::len).sum::<usize>());
            all.extend_from_slice(&first);
            for b in &more {
                all.extend_from_slice(b);
            }
            self.stream.write_all(&all).await?;
        }
        self.stream.flush().await?;
        Ok(())
    }

    async fn handle(&mut self, packet: Incoming) -> Result<(), LinkError> {
        match packet {
            Incoming::Packet(Packet::PublishAck(ack)) => {
                let _ = self.tx.send(Report::Acked(ack.packet_id.get(), ack.reason_code));
            }
            Incoming::Packet(Packet::SubscribeAck(ack)) => {
                let filters = self.downlink.as_ref().map(|d| d.filters.as_slice()).unwrap_or_default();
                for (filter, status) in filters.iter().zip(&ack.status) {
                    if !matches!(
                        status,
                        SubscribeAckReason::GrantedQos0 | SubscribeAckReason::GrantedQos1 | SubscribeAckReason::GrantedQos2
                    ) {
                        tracing::warn!(filter, ?status, "The upstream broker refused a downlink subscription.");
                    }
                }
            }
            Incoming::Packet(Packet::PingResponse) => {}
            Incoming::Packet(Packet::Disconnect(d)) => {
                return Err(LinkError::Unexpected(format!("DISCONNECT {:?} {}", d.reason_code, d.reason_string.as_deref().unwrap_or(""))));
            }
            Incoming::Packet(other) => return Err(LinkError::Unexpected(format!("{other:?}"))),
            Incoming::Publish(p, payload) => self.downlink(p, payload).await?,
        }
        Ok(())
    }

    /// A downlink message: handed to the local broker, acknowledged after its commit (or its
    /// refusal for good: it would come back for ever otherwise).
    async fn downlink(&mut self, p: Publish, payload: Bytes) -> Result<(), LinkError> {
        if p.qos == QoS::ExactlyOnce {
            // The downlink subscribes at QoS 1; a QoS 2 PUBLISH breaks the protocol.
            return Err(LinkError::Unexpected("a QoS 2 PUBLISH on a QoS 1 subscription".into()));
        }
        let taken = match &self.downlink {
            Some(d) => d.deliver(&self.prefix, &p, payload).await,
            None => Taken::Handled,
        };
        match taken {
            Taken::Handled => {
                if let (QoS::AtLeastOnce, Some(id)) = (p.qos, p.packet_id) {
                    let ack = PublishAck { packet_id: id, ..PublishAck::default() };
                    let ack = encode(&self.codec, Packet::PublishAck(ack).into())?;
                    self.write(ack).await?;
                }
                Ok(())
            }
            // The upstream resends an unacknowledged message only when the session resumes:
            // end this connection (the bridge reconnects within a second).
            Taken::Retry(why) => {
                tracing::warn!(topic = ?crate::ingress::clip(&p.topic), why, "A downlink message could not be stored; not acknowledged, reconnecting to receive it again.");
                Err(LinkError::Unexpected(format!("a downlink message could not be stored: {why}")))
            }
        }
    }
}
