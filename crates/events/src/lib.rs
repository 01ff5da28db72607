//! Ember's event pipeline: event source mappings from SQS queues to functions.
//!
//! [`EventsManager`] runs one poller per enabled mapping. A poller makes sure of capacity
//! first — it takes a slot of the mapping's `MaximumConcurrency` and waits until the
//! function's concurrency limit (reserved concurrency, else the account's unreserved pool)
//! has room — and only then long-polls the queue for a batch, taking the execution permit
//! once the batch is there. A backlog never starts more invocations than the function may
//! run, and an idle queue costs one parked long poll and holds no execution slot.
//! Messages that match none of the mapping's filter patterns ([`filter`]) are deleted
//! without an invocation. Each batch is converted ([`convert`]), invoked through the
//! worker manager, and acknowledged once its outcome is known: success deletes the batch; a function error
//! deletes nothing (the messages come back after their visibility timeout and reach the
//! dead-letter queue through the queue's redrive policy); with `ReportBatchItemFailures`
//! every message but the listed ones is deleted.
//!
//! The frontend tells the manager about changes ([`EventsManager::mapping_changed`],
//! [`EventsManager::function_changed`]); the manager re-reads the store and starts or
//! stops pollers to match.

pub mod asynchronous;
pub mod convert;
pub mod filter;
mod names;
mod poller;
pub mod router;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ember_queue::Queues;
use ember_store::{EventSourceMapping, Store};
use ember_worker::WorkerManager;
use ember_worker::limits::ConcurrencyLimiter;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What pollers need: where mappings, messages and functions live.
pub(crate) struct Shared {
    pub store: Arc<dyn Store>,
    pub queues: Arc<dyn Queues>,
    pub worker: WorkerManager,
    pub limiter: Arc<ConcurrencyLimiter>,
    pub region: String,
    /// Asynchronous invocations wait `retry_delay × attempt` after a function error.
    pub retry_delay: std::time::Duration,
    /// Set at shutdown: every poller stops receiving.
    pub stop: watch::Sender<bool>,
}

/// How the events manager behaves.
#[derive(Debug, Clone)]
pub struct EventsSettings {
    pub region: String,
    /// Lambda waits one minute before the first retry of a failed asynchronous
    /// invocation and two before the second; this is the one minute.
    pub retry_delay: std::time::Duration,
}

struct Running {
    mapping: EventSourceMapping,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A routing queue's poller and its stop signal.
type RunningRouter = (watch::Sender<bool>, JoinHandle<()>);

/// Starts, stops and restarts the pollers of event source mappings. Cheap to clone.
#[derive(Clone)]
pub struct EventsManager {
    shared: Arc<Shared>,
    running: Arc<Mutex<HashMap<String, Running>>>,
    /// Stopped pollers whose in-flight batches may still be running (awaited at shutdown).
    retired: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Orders reconciliations so concurrent changes converge on the store's state.
    reconciling: Arc<tokio::sync::Mutex<bool>>,
    /// Pollers of functions' asynchronous event queues.
    asynchronous: Arc<Mutex<asynchronous::AsyncPollers>>,
    /// Pollers of routing queues, with their stop signals.
    routers: Arc<Mutex<HashMap<ember_queue::QueueRef, RunningRouter>>>,
}

impl EventsManager {
    pub fn new(
        store: Arc<dyn Store>,
        queues: Arc<dyn Queues>,
        worker: WorkerManager,
        limiter: Arc<ConcurrencyLimiter>,
        settings: EventsSettings,
    ) -> EventsManager {
        EventsManager {
            shared: Arc::new(Shared {
                store,
                queues,
                worker,
                limiter,
                region: settings.region,
                retry_delay: settings.retry_delay,
                stop: watch::channel(false).0,
            }),
            running: Arc::new(Mutex::new(HashMap::new())),
            retired: Arc::new(Mutex::new(Vec::new())),
            reconciling: Arc::new(tokio::sync::Mutex::new(false)),
            asynchronous: Arc::new(Mutex::new(Default::default())),
            routers: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Start the pollers of every enabled mapping and of queued asynchronous events (at
    /// server start).
    pub async fn start(&self) -> ember_store::Result<()> {
        let mappings = self.shared.store.list_event_source_mappings(None).await?;
        {
            let _guard = self.reconciling.lock().await;
            for m in mappings {
                self.reconcile_one(&m.uuid.clone(), Some(m)).await;
            }
        }
        self.start_routers().await?;
        self.resume_async().await
    }

    /// Await `task` at shutdown (in-flight work finishes before sandboxes go).
    pub(crate) fn keep(&self, task: JoinHandle<()>) {
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        retired.retain(|t| !t.is_finished());
        retired.push(task);
    }

    /// A mapping was created, updated or deleted: bring its poller in line (in the
    /// background).
    pub fn mapping_changed(&self, uuid: &str) {
        let this = self.clone();
        let uuid = uuid.to_owned();
        tokio::spawn(async move {
            let guard = this.reconciling.lock().await;
            if *guard {
                return; // shutting down
            }
            match this.shared.store.get_event_source_mapping(&uuid).await {
                Ok(m) => this.reconcile_one(&uuid, m).await,
                Err(e) => {
                    tracing::warn!(%uuid, error = %e, "could not read an event source mapping")
                }
            }
        });
    }

    /// A function was created or deleted: its mappings' pollers start or stop.
    pub fn function_changed(&self, account_id: &str, function_name: &str) {
        let this = self.clone();
        let (account_id, function_name) = (account_id.to_owned(), function_name.to_owned());
        tokio::spawn(async move {
            let guard = this.reconciling.lock().await;
            if *guard {
                return;
            }
            match this
                .shared
                .store
                .get_function(&account_id, &function_name)
                .await
            {
                Ok(None) => this.drop_async_queue(&account_id, &function_name).await,
                Ok(Some(_)) => {}
                Err(e) => tracing::warn!(error = %e, "could not read a function"),
            }
            let mappings = match this
                .shared
                .store
                .list_event_source_mappings(Some(&account_id))
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "could not list event source mappings");
                    return;
                }
            };
            for m in mappings
                .into_iter()
                .filter(|m| m.function_name == function_name)
            {
                let uuid = m.uuid.clone();
                // Restart: a recreated function is a new function.
                this.stop(&uuid);
                this.reconcile_one(&uuid, Some(m)).await;
            }
        });
    }

    async fn reconcile_one(&self, uuid: &str, mapping: Option<EventSourceMapping>) {
        let wanted = match mapping {
            Some(m) if m.enabled => {
                match self
                    .shared
                    .store
                    .get_function(&m.account_id, &m.function_name)
                    .await
                {
                    Ok(Some(_)) => Some(m),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(%uuid, error = %e, "could not read a mapping's function");
                        None
                    }
                }
            }
            _ => None,
        };
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(r), Some(m)) = (running.get(uuid), &wanted)
            && r.mapping == *m
            && !r.task.is_finished()
        {
            return;
        }
        if let Some(old) = running.remove(uuid) {
            // In-flight batches of the old poller finish on their own.
            self.retire(old);
        }
        if let Some(m) = wanted {
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(poller::run(self.shared.clone(), m.clone(), stopped));
            tracing::info!(uuid = %m.uuid, function = %m.function_name, queue = %m.queue_name,
                "event source mapping poller started");
            running.insert(
                uuid.to_owned(),
                Running {
                    mapping: m,
                    stop,
                    task,
                },
            );
        }
    }

    fn stop(&self, uuid: &str) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = running.remove(uuid) {
            self.retire(old);
        }
    }

    fn retire(&self, old: Running) {
        let _ = old.stop.send(true);
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        retired.retain(|t| !t.is_finished());
        retired.push(old.task);
    }

    /// Stop receiving (every poller); in-flight batches go on. Call before the queues'
    /// long polls are closed at shutdown.
    pub fn stop_polling(&self) {
        let _ = self.shared.stop.send(true);
        for (stop, _) in self
            .routers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            let _ = stop.send(true);
        }
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        for r in running.values() {
            let _ = r.stop.send(true);
        }
    }

    /// Stop every poller and wait for their in-flight batches to finish.
    pub async fn shutdown(&self) {
        *self.reconciling.lock().await = true;
        self.stop_polling();
        let mut tasks: Vec<JoinHandle<()>> = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            running.drain().map(|(_, r)| r.task).collect()
        };
        tasks.extend(
            self.routers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain()
                .map(|(_, (_, task))| task),
        );
        tasks.append(&mut self.retired.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
