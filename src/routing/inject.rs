//! Messages that come from outside any MQTT connection: the HTTP downlink (`POST /api/publish`)
//! and the MQTT bridge's upstream subscriptions. Each is checked against the ACL as an identity
//! of its own, stored like a device's publish (the sinks see it; a retained one survives a
//! restart; persistent sessions get it in the same commit) and delivered to the matching local
//! subscriptions once committed.

use std::time::Duration;

use edge_gateway_actors::record::NewRecord;
use edge_gateway_actors::slot::ActorSlot;
use edge_gateway_actors::storage::{AppendError, Appended, StorageMsg, now_ms};
use ractor::rpc::CallResult;

use super::{Message, Router};

/// How long the commit may take before the caller gives up (the message may still be stored).
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an injected message was not published.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The identity may not publish to the topic.
    #[error("{identity} may not publish to {topic:?} (ACL)")]
    NotAuthorized {
        /// Who published.
        identity: String,
        /// Where to.
        topic: String,
    },
    /// The topic's archive class is at its quota with `on_full = "refuse_ingest"`.
    #[error("archive class {0:?} is at its quota")]
    ArchiveFull(String),
    /// The store refused it (quota, retained bound) or its commit failed.
    #[error(transparent)]
    Store(#[from] AppendError),
    /// The storage actor is restarting or did not answer in time (it may have been stored).
    #[error("{0}")]
    Unavailable(&'static str),
}

/// Publish `message` as `identity`: ACL, store, then local delivery; the stored record's key.
pub async fn publish(router: &Router, storage: &ActorSlot<StorageMsg>, identity: &str, message: Message) -> Result<Appended, InjectError> {
    if !router.may_publish(identity, &message.topic) {
        return Err(InjectError::NotAuthorized { identity: identity.to_string(), topic: message.topic.to_string() });
    }
    if let Some(class) = router.archive_refusing(&message.topic) {
        return Err(InjectError::ArchiveFull(class.to_string()));
    }
    let mut rec = NewRecord {
        device: identity.to_string(),
        topic: message.topic.to_string(),
        qos: message.qos,
        payload: message.payload.to_vec(),
        content_type: message.content_type.as_ref().map(|c| c.to_string()),
        user_properties: message.user_properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        received_at_ms: now_ms(),
        retain: message.retain,
        mqtt5: message.retain.then(|| super::persist::retained_props(&message)).flatten(),
        ..Default::default()
    };
    let mut plan = router.plan(identity, message);
    rec.copies = plan.take_copies();
    let Some(actor) = storage.get() else { return Err(InjectError::Unavailable("the storage actor is restarting")) };
    let appended = match actor.call(|reply| StorageMsg::append_batch(vec![rec], reply), Some(COMMIT_TIMEOUT)).await {
        Ok(CallResult::Success(mut results)) => results.pop().unwrap_or(Err(AppendError::CommitFailed("no result".into())))?,
        Ok(_) | Err(_) => {
            return Err(InjectError::Unavailable("the storage actor did not answer in time; the message may have been stored"));
        }
    };
    router.deliver(plan);
    Ok(appended)
}
