use std::{fmt, marker::PhantomData, num::NonZero, rc::Rc};

use ntex_error::Error;
use ntex_io::IoBoxed;
use ntex_net::connect::{self, Address, Connector};
use ntex_service::cfg::{Cfg, SharedCfg};
use ntex_service::{Ctx, IntoService, Service};
use ntex_util::time::{Seconds, timeout_checked};

use super::codec::{self, Decoded, Encoded, Packet};
use super::{Connect, connection::Client, error::MqttClientError, error::MqttProtocolError};
use crate::MqttServiceConfig;
use crate::v5::shared::{MqttShared, MqttSinkPool};

/// Mqtt client connector factory
pub struct MqttConnector<A, T> {
    connector: T,
    pool: Rc<MqttSinkPool>,
    _t: PhantomData<A>,
}

impl<A, T> fmt::Debug for MqttConnector<A, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("v5::MqttConnector").finish()
    }
}

impl<A> MqttConnector<A, ()>
where
    A: Address,
{
    #[allow(clippy::new_ret_no_self)]
    /// Create new mqtt connector
    pub fn new() -> MqttConnector<A, Connector<A>> {
        MqttConnector {
            connector: Connector::default(),
            pool: Rc::new(MqttSinkPool::default()),
            _t: PhantomData,
        }
    }
}

impl<A, T> MqttConnector<A, T>
where
    A: Address,
{
    /// Use custom connector
    pub fn connector<U, F>(self, connector: F) -> MqttConnector<A, U>
    where
        F: IntoService<U, SharedCfg, connect::Connect<A>>,
        U: Service<SharedCfg, connect::Connect<A>, Error = Error<connect::ConnectError>>,
        IoBoxed: From<U::Res>,
    {
        MqttConnector {
            connector: connector.into_service(),
            pool: self.pool,
            _t: PhantomData,
        }
    }
}

impl<A, S> Service<SharedCfg, Connect<A>> for MqttConnector<A, S>
where
    A: Address,
    S: Service<SharedCfg, connect::Connect<A>, Error = Error<connect::ConnectError>>,
    IoBoxed: From<S::Res>,
{
    type Res = Client;
    type Error = Error<MqttClientError<Box<codec::ConnectAck>>>;

    ntex_service::forward_ready!(SharedCfg, connector, Error::map_err);
    ntex_service::forward_shutdown!(SharedCfg, connector);

    /// Connect to mqtt server
    async fn call(
        &self,
        req: Connect<A>,
        ctx: Ctx<'_, Self, SharedCfg>,
    ) -> Result<Client, Self::Error> {
        let (addr, pkt) = req.into_parts();
        let cfg = ctx.st().get::<MqttServiceConfig>();

        timeout_checked(
            cfg.handshake_timeout,
            self.connect_inner(addr, pkt, ctx, cfg),
        )
        .await
        .map_err(|()| Error::from(MqttClientError::ConnectTimeout))
        .and_then(|res| res)
    }
}

impl<A, S> MqttConnector<A, S>
where
    A: Address,
    S: Service<SharedCfg, connect::Connect<A>, Error = Error<connect::ConnectError>>,
    IoBoxed: From<S::Res>,
{
    async fn connect_inner(
        &self,
        addr: A,
        pkt: codec::Connect,
        ctx: Ctx<'_, Self, SharedCfg>,
        cfg: Cfg<MqttServiceConfig>,
    ) -> Result<Client, Error<MqttClientError<Box<codec::ConnectAck>>>> {
        let io: IoBoxed = ctx
            .call(&self.connector, connect::Connect::new(addr))
            .await
            .map_err(Error::map_err)?
            .into();
        let keep_alive = pkt.keep_alive;
        let max_packet_size = pkt.max_packet_size.map_or(0, NonZero::get);
        let max_receive = pkt.receive_max.map_or(65535, NonZero::get);
        let pool = self.pool.clone();

        let codec = codec::Codec::new();
        codec.set_max_inbound_size(max_packet_size);
        codec.set_min_chunk_size(cfg.min_chunk_size);

        io.encode(Encoded::Packet(Packet::Connect(Box::new(pkt))), &codec)
            .map_err(Error::from_err)?;

        let packet = io
            .recv(&codec)
            .await
            .map_err(MqttClientError::from)?
            .ok_or_else(|| {
                log::trace!("Mqtt server is disconnected during handshake");
                MqttClientError::Disconnected(None)
            })?;

        let shared = Rc::new(MqttShared::new(io.get_ref(), codec, pool));
        match packet {
            Decoded::Packet(Packet::ConnectAck(pkt), ..) => {
                log::trace!("Connect ack response from server: {pkt:#?}");
                if pkt.reason_code == codec::ConnectAckReason::Success {
                    // set max outbound (encoder) packet size
                    if let Some(size) = pkt.max_packet_size {
                        shared.codec.set_max_outbound_size(size);
                    }
                    // server keep-alive
                    let keep_alive = pkt.server_keepalive_sec.unwrap_or(keep_alive);

                    shared.set_cap(pkt.receive_max.get() as usize);

                    Ok(Client::new(
                        io,
                        shared,
                        pkt,
                        max_receive,
                        Seconds(keep_alive),
                        cfg,
                    ))
                } else {
                    Err(MqttClientError::Ack(pkt).into())
                }
            }
            Decoded::Packet(packet, ..) => {
                Err(MqttClientError::from(MqttProtocolError::unexpected_packet(
                    packet.packet_type(),
                    "CONNACK packet expected from server first [MQTT-3.2.0-1]",
                ))
                .into())
            }
            Decoded::Publish(..) => {
                Err(MqttClientError::from(MqttProtocolError::unexpected_packet(
                    crate::types::packet_type::PUBLISH_START,
                    "CONNACK packet expected from server first [MQTT-3.2.0-1]",
                ))
                .into())
            }
            Decoded::PayloadChunk(..) => unreachable!(),
        }
    }
}
