//! One session actor per MQTT connection, under the `sessions` supervisor.
//!
//! The actor is the connection's place in the supervision tree. The I/O side hands it a
//! [`tokio::sync::oneshot::Sender`]; the actor's state holds it, so however the actor ends
//! (stopped, killed, taken over by a newer connection with the same client id, or its
//! supervisor going down) the state is dropped, the receiver wakes, and the I/O side closes
//! the connection. The device reconnects and resends what was not acknowledged.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;

/// The session actor (stateless handler).
pub struct SessionActor;

/// Start-up arguments.
pub struct SessionArgs {
    /// MQTT client id.
    pub client_id: String,
    /// Protocol level (`v3` or `v5`), for logs.
    pub protocol: &'static str,
    /// Dropped with the state: tells the I/O side to close the connection.
    pub closer: oneshot::Sender<()>,
}

/// Messages to a session: none. Its job is its lifetime; publishes go straight to storage,
/// ACL decisions and device status are made by ingress and the device health actor.
pub enum SessionMsg {}

/// The session's state; dropping it closes the connection.
pub struct SessionState {
    /// MQTT client id, for logs.
    client_id: String,
    /// Never sent on: dropping it is the signal. Dropped in `post_stop` on a graceful stop
    /// (ractor then hands the state to the supervisor, which would drop it later), and with the
    /// state when the actor is killed.
    closer: Option<oneshot::Sender<()>>,
}

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(&self, _myself: ActorRef<SessionMsg>, args: SessionArgs) -> Result<SessionState, ActorProcessingErr> {
        tracing::debug!(client_id = %args.client_id, protocol = args.protocol, "Session started.");
        Ok(SessionState { client_id: args.client_id, closer: Some(args.closer) })
    }

    async fn post_stop(&self, _myself: ActorRef<SessionMsg>, state: &mut SessionState) -> Result<(), ActorProcessingErr> {
        tracing::debug!(client_id = %state.client_id, "Session stopped.");
        state.closer.take();
        Ok(())
    }

    async fn handle(&self, _myself: ActorRef<SessionMsg>, msg: SessionMsg, _state: &mut SessionState) -> Result<(), ActorProcessingErr> {
        match msg {}
    }
}
