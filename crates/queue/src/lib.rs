//! Ember's durable message queue, with SQS's semantics.
//!
//! Every event that reaches a function passes through here: the SQS API puts messages
//! in, asynchronous Invoke and event-source pollers take them out. A message is
//! received under a lease (the visibility timeout) and stays in the queue until it is
//! deleted with the receipt handle of its latest receive; a lease that ends unacknowledged
//! makes it receivable again, and a message received `maxReceiveCount` times moves to
//! its queue's dead-letter queue at the next receive. FIFO queues deduplicate sends
//! within five minutes and deliver each message group strictly in order, one leased
//! batch at a time.
//!
//! # Layout
//! - [`Queues`]: the one interface the rest of Ember uses. Queues are named by account
//!   and name ([`QueueRef`]); nothing outside this crate sees storage details.
//! - [`model`]: the values crossing that interface (messages, deliveries, counts).
//! - [`settings`]: queue attributes (`VisibilityTimeout`, `RedrivePolicy`, ...) parsed
//!   and checked, with SQS's error messages.
//! - [`validate`]: SQS's rules for names, bodies, attributes and ids.
//! - [`digest`]: the MD5 digests SQS returns for bodies and attributes.
//! - [`SqliteQueues`]: the embedded backend (module `sqlite`: schema, operations, the
//!   group-commit writer).
//! - [`clock`]: wall-clock time, injectable so tests can move it.
//!
//! # Why SQLite
//! The queue lives in the data directory next to the store, in its own SQLite file
//! (`queues.db`) in WAL mode with `synchronous=FULL`. SQLite gives us, with one
//! dependency Ember already has, what a durable queue needs: atomic multi-row changes
//! (a dead-letter move, a FIFO dedup check and insert, a lease), indexes to find the
//! next visible message or FIFO group without scanning, and crash safety that is among
//! the most tested of any storage engine. Its limit — one writer at a time — costs
//! little here, because the backend has exactly one writer thread and group-commits:
//! all requests waiting while one transaction is being synced go into the next one, so
//! an fsync is paid per batch, not per message. An append-only log of our own (or an
//! LSM engine such as RocksDB/fjall) could write faster, but would need its own
//! indexing of leases and groups, compaction, and recovery code — the riskiest code to
//! own for the component whose whole job is not losing messages. A separate file from
//! `ember.db` keeps queue traffic from contending with the store's connection and lets
//! the queue's schema evolve (or its backend be swapped) on its own.
//!
//! A multi-node deployment can implement [`Queues`] on NATS JetStream: streams per
//! queue, consumer acks for delete, `AckWait`/`nak` with delay for visibility timeouts,
//! `MaxDeliver` plus an advisory for dead-lettering, `Nats-Msg-Id` for FIFO dedup.

pub mod clock;
pub mod digest;
mod error;
pub mod model;
mod receipt;
pub mod settings;
mod sqlite;
pub mod validate;

use std::collections::BTreeMap;

use async_trait::async_trait;

pub use error::{QueueError, Result};
pub use model::{
    AttributeValue, MessageAttribute, MessageAttributes, NewMessage, QueueCounts, QueueInfo,
    QueueRef, ReceiveRequest, ReceivedMessage, Sent, VisibilityChange,
};
pub use settings::{QueueSettings, RedrivePolicy};
pub use sqlite::SqliteQueues;

/// Ember's queues. Every method is atomic; every method that changes something has
/// made the change durable (synced to disk) before it returns `Ok`.
///
/// Errors are SQS's ([`QueueError`]); operations on several entries (a batch send,
/// delete or visibility change) return one result per entry, in order, and fail as a
/// whole only when the queue does not exist or storage failed.
#[async_trait]
pub trait Queues: Send + Sync + 'static {
    /// Create a queue from CreateQueue's attributes. Creating an existing queue with the
    /// same values for the attributes given returns it; a different value is
    /// [`QueueError::QueueNameExists`].
    async fn create_queue(
        &self,
        queue: &QueueRef,
        attributes: &BTreeMap<String, String>,
        tags: &BTreeMap<String, String>,
    ) -> Result<QueueInfo>;

    async fn get_queue(&self, queue: &QueueRef) -> Result<QueueInfo>;

    /// Names of the account's queues starting with `prefix`, in name order, after
    /// `after` (exclusive), at most `limit`.
    async fn list_queues(
        &self,
        account_id: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>>;

    /// Change settings with SetQueueAttributes' attributes; nothing changes on error.
    async fn set_queue_attributes(
        &self,
        queue: &QueueRef,
        attributes: &BTreeMap<String, String>,
    ) -> Result<QueueInfo>;

    /// Delete a queue and every message in it.
    async fn delete_queue(&self, queue: &QueueRef) -> Result<()>;

    /// Delete every message (at most once a minute per queue).
    async fn purge_queue(&self, queue: &QueueRef) -> Result<()>;

    async fn counts(&self, queue: &QueueRef) -> Result<QueueCounts>;

    /// Enqueue messages. Each is checked ([`NewMessage::validate`]) and accepted or
    /// refused on its own; accepted ones are durable when this returns.
    async fn send(&self, queue: &QueueRef, messages: Vec<NewMessage>) -> Result<Vec<Result<Sent>>>;

    /// Take up to `max_messages` visible messages, leasing each for the visibility
    /// timeout. With a wait, blocks until a message is available or the wait ends,
    /// woken by sends and lease expiries rather than polling.
    async fn receive(
        &self,
        queue: &QueueRef,
        request: ReceiveRequest,
    ) -> Result<Vec<ReceivedMessage>>;

    /// Acknowledge messages by receipt handle (only a message's latest handle deletes it).
    async fn delete_messages(
        &self,
        queue: &QueueRef,
        receipt_handles: Vec<String>,
    ) -> Result<Vec<Result<()>>>;

    /// Extend, shorten or give back (timeout 0) leases.
    async fn change_visibility(
        &self,
        queue: &QueueRef,
        changes: Vec<VisibilityChange>,
    ) -> Result<Vec<Result<()>>>;

    /// End every long poll now (they return what they have), and every later one at once:
    /// called when the server shuts down so in-flight receives do not hold it up.
    fn close_waits(&self);
}
