//! A dispatcher middleware that closes a connection on packets a client must never send after
//! its CONNECT: a second CONNECT, or a CONNACK. ntex-mqtt ignores them silently; the spec
//! ([MQTT-3.1.0-2]) says they are protocol violations, so the connection is closed (v5 with a
//! DISCONNECT reason code) and the refusal is counted as `unexpected_packet`.

use ntex_mqtt::error::{DecodeError, DispatcherError, MqttProtocolError};
use ntex_mqtt::{v3, v5};
use ntex_service::{Ctx, Middleware, Service};

/// The middleware factory.
#[derive(Clone, Copy, Debug)]
pub struct RejectUnexpected;

/// The middleware service wrapping the dispatcher's service.
pub struct RejectUnexpectedService<S> {
    /// The dispatcher's service.
    inner: S,
}

impl<S, St> Middleware<S, St> for RejectUnexpected {
    type Service = RejectUnexpectedService<S>;

    fn create(&self, _st: &St, service: S) -> Self::Service {
        RejectUnexpectedService { inner: service }
    }
}

fn violation<E>() -> DispatcherError<E> {
    DispatcherError::Protocol(MqttProtocolError::Decode(DecodeError::UnsupportedPacketType))
}

/// The same check for both protocol versions' decoded packets.
macro_rules! reject_unexpected {
    ($v:ident) => {
        impl<S, St, E> Service<St, $v::codec::Decoded> for RejectUnexpectedService<S>
        where
            S: Service<St, $v::codec::Decoded, Error = DispatcherError<E>>,
        {
            type Res = S::Res;
            type Error = S::Error;

            async fn ready(&self, ctx: Ctx<'_, Self, St>) -> Result<(), Self::Error> {
                ctx.ready(&self.inner).await
            }

            async fn call(&self, req: $v::codec::Decoded, ctx: Ctx<'_, Self, St>) -> Result<S::Res, S::Error> {
                use $v::codec::{Decoded, Packet};
                if let Decoded::Packet(Packet::Connect(_) | Packet::ConnectAck(_), _) = &req {
                    return Err(violation());
                }
                ctx.call(&self.inner, req).await
            }

            ntex_service::forward_shutdown!(St, inner);
        }
    };
}

reject_unexpected!(v3);
reject_unexpected!(v5);
