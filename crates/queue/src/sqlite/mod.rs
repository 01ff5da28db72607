//! [`SqliteQueues`]: the embedded queue backend, one SQLite file in WAL mode.
//!
//! Writes (and receives, which write a lease) go to the single writer thread
//! ([`writer`]), which batches them into one transaction per fsync. Reads that need no
//! lease are served without it: queue metadata from an in-memory catalog the writer
//! republishes after each commit that changed it, message counts from a second,
//! read-only connection (WAL lets it read while the writer writes).
//!
//! Long polls wait on a per-queue [`tokio::sync::Notify`] that the writer signals after
//! committing anything that may make a message receivable (a send, a lease given back,
//! a delete that frees a FIFO group), and on a timer set to the queue's next visibility
//! change (a delay or lease ending). They never poll the database in a loop.

mod ops;
mod schema;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, params};
use tokio::sync::{Notify, oneshot};

use crate::Queues;
use crate::clock::{Clock, SystemClock};
use crate::error::{QueueError, Result};
use crate::model::{
    NewMessage, QueueCounts, QueueInfo, QueueRef, ReceiveRequest, ReceivedMessage, Sent,
    VisibilityChange,
};
use ops::{Catalog, Queue};
use writer::{Command, Notifiers, Writer};

/// The SQLite queue backend. Open once per data directory.
pub struct SqliteQueues {
    commands: mpsc::Sender<Command>,
    catalog: Arc<RwLock<Arc<Catalog>>>,
    reader: Arc<Mutex<Connection>>,
    notifiers: Arc<Notifiers>,
    clock: Arc<dyn Clock>,
    closing: AtomicBool,
    closed: Notify,
}

impl SqliteQueues {
    /// Open (creating if needed) the queue database at `path`. `region` is the region in
    /// queue ARNs.
    pub fn open(path: &Path, region: &str) -> Result<Self> {
        Self::open_with_clock(path, region, Arc::new(SystemClock))
    }

    /// As [`open`](Self::open), with the clock leases, delays and retention are measured by.
    pub fn open_with_clock(path: &Path, region: &str, clock: Arc<dyn Clock>) -> Result<Self> {
        let mut conn = schema::connect(path)?;
        schema::migrate(&mut conn)?;
        sync_parent_dir(path)?;
        let catalog = ops::load_catalog(&conn)?;
        let shared = Arc::new(RwLock::new(Arc::new(catalog.clone())));
        let reader = schema::connect(path)?;
        let notifiers = Arc::new(Notifiers::default());
        let (commands, inbox) = mpsc::channel();
        let writer = Writer {
            conn,
            catalog,
            shared: shared.clone(),
            notifiers: notifiers.clone(),
            clock: clock.clone(),
            region: region.to_owned(),
            purged: Default::default(),
        };
        std::thread::Builder::new()
            .name("ember-queue-writer".into())
            .spawn(move || writer.run(inbox))
            .map_err(|e| QueueError::Storage(format!("starting the queue writer: {e}")))?;
        Ok(SqliteQueues {
            commands,
            catalog: shared,
            reader: Arc::new(Mutex::new(reader)),
            notifiers,
            clock,
            closing: AtomicBool::new(false),
            closed: Notify::new(),
        })
    }

    fn lookup(&self, queue: &QueueRef) -> Result<Arc<Queue>> {
        self.catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(queue)
            .cloned()
            .ok_or(QueueError::QueueDoesNotExist)
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let stopped = || QueueError::Storage("the queue writer has stopped".into());
        self.commands.send(make(reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Make the database file's directory entry durable (the WAL and the file itself are
/// synced by SQLite).
fn sync_parent_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| QueueError::Storage(format!("syncing {}: {e}", dir.display())))
}

#[async_trait]
impl Queues for SqliteQueues {
    async fn create_queue(
        &self,
        queue: &QueueRef,
        attributes: &BTreeMap<String, String>,
        tags: &BTreeMap<String, String>,
    ) -> Result<QueueInfo> {
        self.call(|reply| Command::CreateQueue {
            queue: queue.clone(),
            attributes: attributes.clone(),
            tags: tags.clone(),
            reply,
        })
        .await
    }

    async fn get_queue(&self, queue: &QueueRef) -> Result<QueueInfo> {
        Ok(self.lookup(queue)?.info.clone())
    }

    async fn list_queues(
        &self,
        account_id: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let catalog = self
            .catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Names with the prefix are contiguous in name order, starting at the prefix.
        let from = match after {
            Some(a) if a > prefix => a,
            _ => prefix,
        };
        Ok(catalog
            .range(QueueRef::new(account_id, from)..)
            .map(|(r, _)| r)
            .take_while(|r| r.account_id == account_id && r.name.starts_with(prefix))
            .filter(|r| after.is_none_or(|a| r.name.as_str() > a))
            .take(limit)
            .map(|r| r.name.clone())
            .collect())
    }

    async fn set_queue_attributes(
        &self,
        queue: &QueueRef,
        attributes: &BTreeMap<String, String>,
    ) -> Result<QueueInfo> {
        self.call(|reply| Command::SetAttributes {
            queue: queue.clone(),
            attributes: attributes.clone(),
            reply,
        })
        .await
    }

    async fn delete_queue(&self, queue: &QueueRef) -> Result<()> {
        self.call(|reply| Command::DeleteQueue {
            queue: queue.clone(),
            reply,
        })
        .await
    }

    async fn purge_queue(&self, queue: &QueueRef) -> Result<()> {
        self.call(|reply| Command::Purge {
            queue: queue.clone(),
            reply,
        })
        .await
    }

    async fn counts(&self, queue: &QueueRef) -> Result<QueueCounts> {
        let q = self.lookup(queue)?;
        let now = self.clock.now_ms();
        let expired_at = now - i64::from(q.info.settings.message_retention_period) * 1000;
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|e| e.into_inner());
            let counts = conn
                .prepare_cached(
                    "SELECT COALESCE(SUM(visible_at_ms <= ?2), 0),
                            COALESCE(SUM(visible_at_ms > ?2 AND receive_count > 0), 0),
                            COALESCE(SUM(visible_at_ms > ?2 AND receive_count = 0), 0)
                     FROM messages WHERE queue_id = ?1 AND sent_ms > ?3",
                )?
                .query_row(params![q.id, now, expired_at], |r| {
                    Ok(QueueCounts {
                        visible: r.get(0)?,
                        in_flight: r.get(1)?,
                        delayed: r.get(2)?,
                    })
                })?;
            Ok(counts)
        })
        .await
        .map_err(|e| QueueError::Storage(e.to_string()))?
    }

    async fn send(&self, queue: &QueueRef, messages: Vec<NewMessage>) -> Result<Vec<Result<Sent>>> {
        let q = self.lookup(queue)?;
        let mut results: Vec<Option<Result<Sent>>> = Vec::with_capacity(messages.len());
        let mut valid = Vec::with_capacity(messages.len());
        let mut slots = Vec::with_capacity(messages.len());
        for (i, m) in messages.into_iter().enumerate() {
            match m.validate(&q.info.settings) {
                Ok(()) => {
                    valid.push(m);
                    slots.push(i);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        if !valid.is_empty() {
            let sent = self
                .call(|reply| Command::Send {
                    queue: queue.clone(),
                    checked_for: q.id,
                    messages: valid,
                    reply,
                })
                .await?;
            for (slot, outcome) in slots.into_iter().zip(sent) {
                results[slot] = Some(outcome);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(QueueError::Storage("send result missing".into()))))
            .collect())
    }

    async fn receive(
        &self,
        queue: &QueueRef,
        request: ReceiveRequest,
    ) -> Result<Vec<ReceivedMessage>> {
        let q = self.lookup(queue)?;
        let wait = request.wait.unwrap_or_else(|| {
            Duration::from_secs(u64::from(q.info.settings.receive_message_wait_time_seconds))
        });
        let deadline = tokio::time::Instant::now() + wait;
        let queue_changed = self.notifiers.get(q.id);
        loop {
            // Register for wake-ups before looking, so a send committed between the look
            // and the wait is not missed.
            let changed = queue_changed.notified();
            let closed = self.closed.notified();
            tokio::pin!(changed, closed);
            changed.as_mut().enable();
            closed.as_mut().enable();
            let received = self
                .call(|reply| Command::Receive {
                    queue: queue.clone(),
                    max: request.max_messages,
                    visibility_timeout: request.visibility_timeout,
                    reply,
                })
                .await?;
            let now = tokio::time::Instant::now();
            if !received.messages.is_empty()
                || now >= deadline
                || self.closing.load(Ordering::SeqCst)
            {
                return Ok(received.messages);
            }
            let mut until = deadline;
            if let Some(at) = received.next_visible_ms {
                let ms = (at - self.clock.now_ms()).max(1) as u64;
                until = until.min(now + Duration::from_millis(ms));
            }
            tokio::select! {
                _ = changed => {}
                _ = closed => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn delete_messages(
        &self,
        queue: &QueueRef,
        receipt_handles: Vec<String>,
    ) -> Result<Vec<Result<()>>> {
        self.call(|reply| Command::Delete {
            queue: queue.clone(),
            handles: receipt_handles,
            reply,
        })
        .await
    }

    async fn change_visibility(
        &self,
        queue: &QueueRef,
        changes: Vec<VisibilityChange>,
    ) -> Result<Vec<Result<()>>> {
        self.call(|reply| Command::ChangeVisibility {
            queue: queue.clone(),
            changes,
            reply,
        })
        .await
    }

    fn close_waits(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.closed.notify_waiters();
        self.notifiers.notify_all();
    }
}
