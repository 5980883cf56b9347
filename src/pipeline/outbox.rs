//! The outbox writer every stage uses: it queues what a thread must be told (reactions,
//! replies, private notes, moments) and wakes the notifier, which delivers them and keeps
//! status posts current.

use crate::domain::Origin;
use crate::store::{OutboxMessage, Store, StoreResult};
use crate::surface::Mark;
use std::sync::Arc;
use tokio::sync::Notify;

/// Queues messages for the notifier and wakes it.
#[derive(Clone)]
pub(super) struct Outbox {
    store: Store,
    notifier: Arc<Notify>,
}

impl Outbox {
    /// A writer over `store` that wakes `notifier`.
    pub fn new(store: Store, notifier: Arc<Notify>) -> Self {
        Self { store, notifier }
    }

    /// Queues `message` once per `key`.
    pub async fn send(&self, key: String, message: OutboxMessage) -> StoreResult<()> {
        self.store.enqueue(&key, &message).await?;
        self.notifier.notify_one();
        Ok(())
    }

    /// Queues a reaction on the command's message.
    pub async fn mark(&self, key: String, origin: &Origin, mark: Mark) -> StoreResult<()> {
        let origin = origin.clone();
        self.send(key, OutboxMessage::Reaction { origin, mark })
            .await
    }

    /// Queues a private note to the command's author.
    pub async fn private(&self, key: String, origin: &Origin, text: String) -> StoreResult<()> {
        let origin = origin.clone();
        self.send(key, OutboxMessage::Private { origin, text })
            .await
    }

    /// Queues a reply in the command's thread.
    pub async fn reply(&self, key: String, origin: &Origin, text: String) -> StoreResult<()> {
        let origin = origin.clone();
        self.send(key, OutboxMessage::Reply { origin, text }).await
    }

    /// Tells the notifier that a run's view changed, so its status post is behind.
    pub fn status_changed(&self) {
        self.notifier.notify_one();
    }
}
