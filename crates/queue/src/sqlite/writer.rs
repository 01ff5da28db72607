//! The single writer: one thread owns the read-write connection and applies commands in
//! batches, one transaction per batch (group commit).
//!
//! Callers put a [`Command`] with a reply channel on an unbounded channel (each caller
//! waits for its reply, so the channel holds at most one command per request in
//! flight). The thread takes every command waiting, up to [`MAX_BATCH`], runs each under
//! its own savepoint (a failing command rolls back alone), commits once — one fsync for
//! the whole batch, because the connection runs with `synchronous=FULL` — and only then
//! answers. A send is therefore acknowledged only once it is on disk, and while one
//! batch is being synced the next one gathers, so throughput grows with concurrency
//! instead of being capped at one fsync per message.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{Notify, oneshot};

use super::ops::{self, Catalog, Ctx, Effects, Received};
use crate::clock::Clock;
use crate::error::{QueueError, Result};
use crate::model::{NewMessage, QueueInfo, QueueRef, Sent, VisibilityChange};

/// Most commands in one transaction (bounds the latency one batch adds to the next).
const MAX_BATCH: usize = 1024;
/// How often expired messages are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

type Reply<T> = oneshot::Sender<Result<T>>;

pub enum Command {
    CreateQueue {
        queue: QueueRef,
        attributes: BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
        reply: Reply<QueueInfo>,
    },
    SetAttributes {
        queue: QueueRef,
        attributes: BTreeMap<String, String>,
        reply: Reply<QueueInfo>,
    },
    DeleteQueue {
        queue: QueueRef,
        reply: Reply<()>,
    },
    Purge {
        queue: QueueRef,
        reply: Reply<()>,
    },
    Send {
        queue: QueueRef,
        checked_for: i64,
        messages: Vec<NewMessage>,
        reply: Reply<Vec<Result<Sent>>>,
    },
    Receive {
        queue: QueueRef,
        max: u32,
        visibility_timeout: Option<u32>,
        reply: Reply<Received>,
    },
    Delete {
        queue: QueueRef,
        handles: Vec<String>,
        reply: Reply<Vec<Result<()>>>,
    },
    ChangeVisibility {
        queue: QueueRef,
        changes: Vec<VisibilityChange>,
        reply: Reply<Vec<Result<()>>>,
    },
}

/// Answers a command once the batch's fate is known (`Some(error)`: the commit failed).
type Finish = Box<dyn FnOnce(Option<&QueueError>) + Send>;

fn finish<T: Send + 'static>(reply: Reply<T>, result: Result<T>) -> (Finish, bool) {
    let ok = result.is_ok();
    let f: Finish = Box::new(move |failed| {
        let _ = reply.send(match failed {
            Some(e) => Err(e.clone()),
            None => result,
        });
    });
    (f, ok)
}

impl Command {
    fn execute(self, ctx: &mut Ctx<'_>) -> (Finish, bool) {
        match self {
            Command::CreateQueue {
                queue,
                attributes,
                tags,
                reply,
            } => finish(reply, ops::create_queue(ctx, &queue, &attributes, &tags)),
            Command::SetAttributes {
                queue,
                attributes,
                reply,
            } => finish(reply, ops::set_attributes(ctx, &queue, &attributes)),
            Command::DeleteQueue { queue, reply } => finish(reply, ops::delete_queue(ctx, &queue)),
            Command::Purge { queue, reply } => finish(reply, ops::purge(ctx, &queue)),
            Command::Send {
                queue,
                checked_for,
                messages,
                reply,
            } => finish(reply, ops::send(ctx, &queue, checked_for, messages)),
            Command::Receive {
                queue,
                max,
                visibility_timeout,
                reply,
            } => finish(reply, ops::receive(ctx, &queue, max, visibility_timeout)),
            Command::Delete {
                queue,
                handles,
                reply,
            } => finish(reply, ops::delete_messages(ctx, &queue, &handles)),
            Command::ChangeVisibility {
                queue,
                changes,
                reply,
            } => finish(reply, ops::change_visibility(ctx, &queue, &changes)),
        }
    }

    /// Answer without running (the transaction could not start).
    fn fail(self, e: &QueueError) {
        let err = Some(e);
        let f = match self {
            Command::CreateQueue { reply, .. } | Command::SetAttributes { reply, .. } => {
                finish(reply, Err(e.clone())).0
            }
            Command::DeleteQueue { reply, .. } | Command::Purge { reply, .. } => {
                finish(reply, Err(e.clone())).0
            }
            Command::Send { reply, .. } => finish(reply, Err(e.clone())).0,
            Command::Receive { reply, .. } => finish(reply, Err(e.clone())).0,
            Command::Delete { reply, .. } | Command::ChangeVisibility { reply, .. } => {
                finish(reply, Err(e.clone())).0
            }
        };
        f(err);
    }
}

/// Per-queue wake-ups for long polls.
#[derive(Default)]
pub struct Notifiers(Mutex<HashMap<i64, Arc<Notify>>>);

impl Notifiers {
    pub fn get(&self, queue_id: i64) -> Arc<Notify> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(queue_id)
            .or_default()
            .clone()
    }

    fn notify(&self, queue_id: i64) {
        if let Some(n) = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&queue_id)
        {
            n.notify_waiters();
        }
    }

    pub fn notify_all(&self) {
        for n in self.0.lock().unwrap_or_else(|e| e.into_inner()).values() {
            n.notify_waiters();
        }
    }
}

pub struct Writer {
    pub conn: Connection,
    /// Includes the changes of the batch being run; `shared` has only committed ones.
    pub catalog: Catalog,
    pub shared: Arc<RwLock<Arc<Catalog>>>,
    pub notifiers: Arc<Notifiers>,
    pub clock: Arc<dyn Clock>,
    pub region: String,
    pub purged: HashMap<i64, i64>,
}

impl Writer {
    pub fn run(mut self, commands: Receiver<Command>) {
        let mut last_sweep = self.clock.now_ms();
        loop {
            let first = match commands.recv_timeout(SWEEP_EVERY) {
                Ok(c) => c,
                Err(RecvTimeoutError::Timeout) => {
                    self.sweep();
                    last_sweep = self.clock.now_ms();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match commands.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            self.run_batch(batch);
            if self.clock.now_ms() - last_sweep > SWEEP_EVERY.as_millis() as i64 {
                self.sweep();
                last_sweep = self.clock.now_ms();
            }
        }
        tracing::debug!("queue writer stopped");
    }

    fn run_batch(&mut self, batch: Vec<Command>) {
        let now = self.clock.now_ms();
        let mut tx = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => {
                let e = QueueError::from(e);
                tracing::error!(error = %e, "could not start a queue transaction");
                for command in batch {
                    command.fail(&e);
                }
                return;
            }
        };
        let mut finishers = Vec::with_capacity(batch.len());
        let mut notify = Vec::new();
        let mut catalog_changed = false;
        for command in batch {
            let sp = match tx.savepoint() {
                Ok(sp) => sp,
                Err(e) => {
                    command.fail(&e.into());
                    continue;
                }
            };
            let mut ctx = Ctx {
                conn: &sp,
                now,
                region: &self.region,
                catalog: &self.catalog,
                purged: &self.purged,
                effects: Effects::default(),
            };
            let (finisher, ok) = command.execute(&mut ctx);
            let effects = ctx.effects;
            let kept = ok && {
                match sp.commit() {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(error = %e, "could not release a savepoint");
                        false
                    }
                }
            };
            if kept {
                for (queue, entry) in effects.catalog {
                    catalog_changed = true;
                    match entry {
                        Some(q) => self.catalog.insert(queue, q),
                        None => self.catalog.remove(&queue),
                    };
                }
                notify.extend(effects.notify);
                self.purged.extend(effects.purged);
            }
            finishers.push(finisher);
        }
        match tx.commit() {
            Ok(()) => {
                if catalog_changed {
                    *self.shared.write().unwrap_or_else(|e| e.into_inner()) =
                        Arc::new(self.catalog.clone());
                }
                for finisher in finishers {
                    finisher(None);
                }
                notify.sort_unstable();
                notify.dedup();
                for id in notify {
                    self.notifiers.notify(id);
                }
            }
            Err(e) => {
                let e = QueueError::from(e);
                tracing::error!(error = %e, "could not commit a queue transaction");
                self.catalog = (**self.shared.read().unwrap_or_else(|e| e.into_inner())).clone();
                for finisher in finishers {
                    finisher(Some(&e));
                }
            }
        }
    }

    fn sweep(&mut self) {
        let now = self.clock.now_ms();
        let result = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(QueueError::from)
            .and_then(|tx| {
                let n = ops::sweep(&tx, &self.catalog, now)?;
                tx.commit()?;
                Ok(n)
            });
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "deleted messages past their retention period"),
            Err(e) => tracing::warn!(error = %e, "could not delete expired messages"),
        }
    }
}
