//! Bytes read from the upstream broker, decoded into whole MQTT 5 packets by ntex-mqtt's codec.

use ntex_bytes::{Bytes, BytesMut};
use ntex_codec::Decoder;
use ntex_mqtt::v5::codec::{Codec, Decoded, Packet, Publish};
use tokio::io::AsyncReadExt;

use super::link::{LinkError, MAX_INCOMING, Stream};

/// A decoded packet, a PUBLISH with its whole payload.
pub(super) enum Incoming {
    Packet(Packet),
    Publish(Publish, Bytes),
}

/// Bytes read from upstream and the packets in them.
pub(super) struct Reader {
    codec: Codec,
    input: BytesMut,
    /// A PUBLISH whose payload has not all arrived yet.
    head: Option<Publish>,
}

impl Reader {
    pub(super) fn new() -> Self {
        let codec = Codec::new();
        codec.set_max_inbound_size(MAX_INCOMING);
        // A PUBLISH's payload comes as one piece: with this minimum the codec gives the head
        // of a PUBLISH whose payload is not all here yet, then the whole payload in one chunk.
        codec.set_min_chunk_size(u32::MAX);
        Self { codec, input: BytesMut::new(), head: None }
    }

    /// The next whole packet in what has been read, if there is one.
    pub(super) fn next(&mut self) -> Result<Option<Incoming>, LinkError> {
        loop {
            match self.codec.decode(&mut self.input).map_err(LinkError::Decode)? {
                None => return Ok(None),
                Some(Decoded::Packet(p, _)) => return Ok(Some(Incoming::Packet(p))),
                Some(Decoded::Publish(p, payload, _)) if payload.len() == p.payload_size as usize => {
                    return Ok(Some(Incoming::Publish(p, payload)));
                }
                Some(Decoded::Publish(p, _, _)) => self.head = Some(p),
                Some(Decoded::PayloadChunk(payload, _)) => match self.head.take() {
                    Some(p) => return Ok(Some(Incoming::Publish(p, payload))),
                    None => return Err(LinkError::Unexpected("a payload without its PUBLISH".into())),
                },
            }
        }
    }

    /// Read more from `stream` (cancel safe: nothing is lost if the read is dropped).
    pub(super) async fn fill(&mut self, stream: &mut Box<dyn Stream>) -> Result<(), LinkError> {
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(LinkError::Closed);
        }
        self.input.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// The next whole packet, reading as needed.
    pub(super) async fn packet(&mut self, stream: &mut Box<dyn Stream>) -> Result<Incoming, LinkError> {
        loop {
            if let Some(p) = self.next()? {
                return Ok(p);
            }
            self.fill(stream).await?;
        }
    }
}
