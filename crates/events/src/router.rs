//! Routing queues: queues whose messages name the function to run.
//!
//! A queue created with the tag `ember:router=true` is a routing queue. Its poller takes
//! messages while it has room (at most [`ROUTER_IN_FLIGHT`] messages leased at once) and
//! for each one:
//!
//! 1. converts it ([`convert::routed`]): an RPC call, a CloudEvent, or an aggregate of
//!    these;
//! 2. resolves every function it names (a name is a function of the queue's account, an
//!    ARN may name another account's) and checks the sender may invoke it: the same
//!    account, or the function's resource policy allows the sender's account or the
//!    `sqs.amazonaws.com` service for this queue (AddPermission);
//! 3. runs the invocations, each waiting for a slot of its function's concurrency — one
//!    after another for an ordered aggregate, with progress checkpointed in the store
//!    after each so a redelivered message resumes after the last completed sub-event;
//!    concurrently otherwise, skipping sub-events a previous delivery completed;
//!    The message's lease is extended while its invocations run.
//! 4. deletes the message once every invocation succeeded. A function error leaves the
//!    message for a retry after its visibility timeout (and, through the queue's redrive
//!    policy, for its dead-letter queue).
//!
//! A malformed message, one naming an unknown function, or one whose sender may not
//! invoke the function goes straight to the queue's dead-letter queue with the reason
//! in the `EmberFailureReason` message attribute (or, without a dead-letter queue, stays
//! and is logged). Nothing a message says can stop the poller.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ember_queue::{
    MessageAttribute, NewMessage, QueueError, QueueRef, ReceiveRequest, ReceivedMessage,
};
use ember_store::policy::{Invoker, StoredPolicy, allows_invoke};
use ember_store::{Function, FunctionSetting};
use ember_worker::InvokeRequest;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::convert::{self, Form};
use crate::{EventsManager, Shared};

/// The tag that makes a queue a routing queue.
pub const ROUTER_TAG: &str = "ember:router";
/// Messages one routing queue has leased and in progress at most.
pub const ROUTER_IN_FLIGHT: usize = 64;
/// The message attribute carrying why a message was dead-lettered.
pub const FAILURE_REASON: &str = "EmberFailureReason";
const LONG_POLL: Duration = Duration::from_secs(20);
const RETRY: Duration = Duration::from_secs(5);

/// Whether a queue's tags make it a routing queue.
pub fn is_router(tags: &std::collections::BTreeMap<String, String>) -> bool {
    tags.get(ROUTER_TAG)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// A routing queue's poller.
pub(crate) async fn run(shared: Arc<Shared>, queue: QueueRef, mut stop: watch::Receiver<bool>) {
    let room = Arc::new(Semaphore::new(ROUTER_IN_FLIGHT));
    let mut in_flight = JoinSet::new();
    let queue_arn = queue.arn(&shared.region);
    loop {
        while in_flight.try_join_next().is_some() {}
        let first = tokio::select! {
            p = room.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = crate::poller::stopped(&mut stop) => break,
        };
        let free = room.available_permits() + 1;
        let received = tokio::select! {
            r = shared.queues.receive(&queue, ReceiveRequest {
                max_messages: free.min(10) as u32,
                visibility_timeout: None,
                wait: Some(LONG_POLL),
            }) => r,
            _ = crate::poller::stopped(&mut stop) => break,
        };
        let received_at = Instant::now();
        let messages = match received {
            Ok(m) => m,
            Err(QueueError::QueueDoesNotExist) => break,
            Err(e) => {
                tracing::warn!(queue = %queue, error = %e, "routing queue receive failed");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    _ = crate::poller::stopped(&mut stop) => break,
                }
                continue;
            }
        };
        let mut first = Some(first);
        for message in messages {
            let slot = match first.take() {
                Some(p) => p,
                None => match room.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => match room.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                },
            };
            let (shared, queue, queue_arn) = (shared.clone(), queue.clone(), queue_arn.clone());
            in_flight.spawn(async move {
                // Keep the lease while the message's invocations run, so a long aggregate
                // is not delivered twice at once.
                let lease = tokio::spawn(hold_lease(
                    shared.clone(),
                    queue.clone(),
                    message.receipt_handle.clone(),
                ));
                handle(shared, &queue, &queue_arn, message, received_at).await;
                lease.abort();
                drop(slot);
            });
        }
    }
    while in_flight.join_next().await.is_some() {}
    tracing::info!(queue = %queue, "routing queue poller stopped");
}

/// Extend a message's lease by the queue's visibility timeout every half of it, until
/// aborted.
async fn hold_lease(shared: Arc<Shared>, queue: QueueRef, receipt_handle: String) {
    let timeout = match shared.queues.get_queue(&queue).await {
        Ok(info) => info.settings.visibility_timeout.max(1),
        Err(_) => return,
    };
    loop {
        tokio::time::sleep(Duration::from_millis(u64::from(timeout) * 500)).await;
        let change = ember_queue::VisibilityChange {
            receipt_handle: receipt_handle.clone(),
            timeout,
        };
        if let Err(e) = shared.queues.change_visibility(&queue, vec![change]).await {
            tracing::warn!(queue = %queue, error = %e, "could not extend a routed message's lease");
            return;
        }
    }
}

/// A resolved sub-event.
struct Target {
    function: Function,
    payload: Bytes,
    form: Form,
}

/// Resolve and authorize every event of a message; `Err` is why the message is refused.
async fn resolve(
    shared: &Shared,
    queue: &QueueRef,
    queue_arn: &str,
    message: &ReceivedMessage,
    routed: convert::Routed,
) -> Result<Vec<Target>, String> {
    let mut targets = Vec::with_capacity(routed.events.len());
    for (i, event) in routed.events.into_iter().enumerate() {
        let label = if routed.aggregate {
            format!("event {i} of the aggregate: ")
        } else {
            String::new()
        };
        let (account, name) = match crate::names::function_of_arn(&event.function) {
            Some(arn) if arn.region != shared.region => {
                return Err(format!(
                    "{label}function {} is not in this region",
                    event.function
                ));
            }
            Some(arn) => (arn.account_id, arn.name),
            None if event.function.contains(':') => {
                return Err(format!(
                    "{label}{} is neither a function name nor a function ARN",
                    event.function
                ));
            }
            None => (queue.account_id.clone(), event.function.clone()),
        };
        let function = match shared.store.get_function(&account, &name).await {
            Ok(Some(f)) => f,
            Ok(None) => {
                return Err(format!(
                    "{label}function arn:aws:lambda:{}:{account}:function:{name} does not exist",
                    shared.region
                ));
            }
            Err(e) => return Err(format!("{label}could not read the function: {e}")),
        };
        if account != message.sender_id {
            let invoker = Invoker {
                account_id: &message.sender_id,
                service: Some("sqs.amazonaws.com"),
                source_arn: Some(queue_arn),
            };
            let policy: Option<StoredPolicy> = shared
                .store
                .get_function_setting(&account, &name, FunctionSetting::Policy)
                .await
                .ok()
                .flatten()
                .and_then(|d| serde_json::from_str(&d.body).ok());
            if !policy.is_some_and(|p| allows_invoke(&p, &invoker)) {
                return Err(format!(
                    "{label}the sender {} is not authorized to invoke {}: no resource-based \
                     policy of the function allows it",
                    message.sender_id,
                    function.arn(&shared.region)
                ));
            }
        }
        targets.push(Target {
            function,
            payload: Bytes::from(event.payload.to_string()),
            form: event.form,
        });
    }
    Ok(targets)
}

async fn handle(
    shared: Arc<Shared>,
    queue: &QueueRef,
    queue_arn: &str,
    message: ReceivedMessage,
    received_at: Instant,
) {
    let routed = match convert::routed(&message.body) {
        Ok(r) => r,
        Err(why) => return refuse(&shared, queue, &message, &why).await,
    };
    let (ordered, aggregate) = (routed.ordered, routed.aggregate);
    let targets = match resolve(&shared, queue, queue_arn, &message, routed).await {
        Ok(t) => t,
        Err(why) => return refuse(&shared, queue, &message, &why).await,
    };
    let checkpoint = format!(
        "route:{}:{}:{}",
        queue.account_id, queue.name, message.message_id
    );
    // Sub-events completed by earlier deliveries of this message.
    let mut done: BTreeSet<usize> = if aggregate && message.receive_count > 1 {
        match shared.store.get_checkpoint(&checkpoint).await {
            Ok(Some(c)) => serde_json::from_str(&c).unwrap_or_default(),
            Ok(None) => BTreeSet::new(),
            Err(e) => {
                tracing::warn!(queue = %queue, error = %e, "could not read a checkpoint; the message will be retried");
                return;
            }
        }
    } else {
        BTreeSet::new()
    };
    let had_progress = !done.is_empty();
    let context = |i: usize, form: Form| {
        convert::invocation_context(
            &message,
            queue_arn,
            &queue.account_id,
            form,
            aggregate.then_some(i),
        )
    };
    let all_ok = if ordered {
        let mut ok = true;
        for (i, t) in targets.iter().enumerate() {
            if done.contains(&i) {
                continue;
            }
            if !run_one(&shared, t, context(i, t.form), &message, received_at).await {
                ok = false;
                break;
            }
            done.insert(i);
            if i + 1 < targets.len() {
                save_checkpoint(&shared, &checkpoint, &done).await;
            }
        }
        ok
    } else {
        let mut runs = JoinSet::new();
        for (i, t) in targets.into_iter().enumerate() {
            if done.contains(&i) {
                continue;
            }
            let client_context = context(i, t.form);
            let shared = shared.clone();
            let message = message.clone();
            runs.spawn(async move {
                let ok = run_one(&shared, &t, client_context, &message, received_at).await;
                (i, ok)
            });
        }
        let mut ok = true;
        while let Some(r) = runs.join_next().await {
            match r {
                Ok((i, true)) => {
                    done.insert(i);
                }
                _ => ok = false,
            }
        }
        if !ok && aggregate && !done.is_empty() {
            save_checkpoint(&shared, &checkpoint, &done).await;
        }
        ok
    };
    if !all_ok {
        return; // back after the visibility timeout, resuming from the checkpoint
    }
    if let Err(e) = shared
        .queues
        .delete_messages(queue, vec![message.receipt_handle.clone()])
        .await
    {
        tracing::warn!(queue = %queue, error = %e, "could not delete a routed message");
        return;
    }
    if aggregate
        && (had_progress || ordered)
        && let Err(e) = shared.store.put_checkpoint(&checkpoint, None).await
    {
        tracing::warn!(error = %e, "could not clear a checkpoint");
    }
}

async fn save_checkpoint(shared: &Shared, key: &str, done: &BTreeSet<usize>) {
    let body = serde_json::to_string(done).unwrap_or_default();
    if let Err(e) = shared.store.put_checkpoint(key, Some(&body)).await {
        tracing::warn!(error = %e, "could not save a checkpoint");
    }
}

/// Run one invocation; whether it succeeded.
async fn run_one(
    shared: &Shared,
    target: &Target,
    client_context: String,
    message: &ReceivedMessage,
    received_at: Instant,
) -> bool {
    let f = &target.function;
    let permit = shared.limiter.acquire(&f.account_id, &f.name).await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let outcome = shared
        .worker
        .invoke(InvokeRequest {
            function: f.clone(),
            request_id: request_id.clone(),
            payload: target.payload.clone(),
            client_context: Some(client_context),
            event: Some(ember_worker::metrics::EventTiming {
                received: received_at,
                sent_ms: message.sent_ms,
            }),
        })
        .await;
    drop(permit);
    match outcome {
        Ok(r) => {
            if r.function_error {
                tracing::info!(function = %f.name, %request_id, message_id = %message.message_id,
                    "a routed invocation failed; the message will be retried");
            }
            !r.function_error
        }
        Err(e) => {
            tracing::warn!(function = %f.name, %request_id, error = %e,
                "could not run a routed invocation; the message will be retried");
            false
        }
    }
}

/// Dead-letter a message Ember cannot route, with the reason.
async fn refuse(shared: &Shared, queue: &QueueRef, message: &ReceivedMessage, why: &str) {
    tracing::warn!(queue = %queue, message_id = %message.message_id, reason = %why,
        "refused a routed message");
    let dlq = match shared.queues.get_queue(queue).await {
        Ok(info) => info
            .settings
            .redrive_policy
            .map(|r| r.dead_letter_target_arn),
        Err(e) => {
            tracing::warn!(queue = %queue, error = %e, "could not read the routing queue");
            return;
        }
    };
    let Some((_, dlq)) = dlq.as_deref().and_then(QueueRef::from_arn) else {
        tracing::warn!(queue = %queue, message_id = %message.message_id,
            "the routing queue has no dead-letter queue; the refused message stays");
        return;
    };
    let mut attributes = message.attributes.clone();
    while attributes.len() >= ember_queue::validate::MAX_MESSAGE_ATTRIBUTES {
        let last = attributes.keys().next_back().cloned();
        if let Some(k) = last {
            attributes.remove(&k);
        }
    }
    attributes.insert(
        FAILURE_REASON.into(),
        MessageAttribute::string("String", crate::truncate(why, 2048)),
    );
    let moved = NewMessage {
        body: message.body.clone(),
        attributes,
        trace_header: message.trace_header.clone(),
        group_id: message.group_id.clone(),
        deduplication_id: message
            .group_id
            .as_ref()
            .map(|_| message.message_id.clone()),
        sender_id: message.sender_id.clone(),
        ..NewMessage::default()
    };
    match shared.queues.send(&dlq, vec![moved]).await {
        Ok(r) if matches!(r.first(), Some(Ok(_))) => {
            if let Err(e) = shared
                .queues
                .delete_messages(queue, vec![message.receipt_handle.clone()])
                .await
            {
                tracing::warn!(queue = %queue, error = %e, "could not delete a dead-lettered message");
            }
        }
        Ok(_) | Err(_) => {
            tracing::warn!(queue = %queue, dlq = %dlq, "could not dead-letter a refused message; it stays");
        }
    }
}

impl EventsManager {
    /// A queue was created or deleted: start or stop its routing poller.
    pub fn queue_changed(&self, account_id: &str, queue_name: &str) {
        let this = self.clone();
        let queue = QueueRef::new(account_id, queue_name);
        tokio::spawn(async move { this.reconcile_router(queue).await });
    }

    pub(crate) async fn reconcile_router(&self, queue: QueueRef) {
        let wanted = match self.shared.queues.get_queue(&queue).await {
            Ok(info) => is_router(&info.tags),
            Err(QueueError::QueueDoesNotExist) => false,
            Err(e) => {
                tracing::warn!(queue = %queue, error = %e, "could not read a queue");
                return;
            }
        };
        let mut routers = self.routers.lock().unwrap_or_else(|p| p.into_inner());
        let running = routers
            .get(&queue)
            .is_some_and(|(_, task)| !task.is_finished());
        if wanted == running {
            return;
        }
        if let Some((stop, task)) = routers.remove(&queue) {
            let _ = stop.send(true);
            self.keep(task);
        }
        if wanted && !*self.shared.stop.borrow() {
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(run(self.shared.clone(), queue.clone(), stopped));
            tracing::info!(queue = %queue, "routing queue poller started");
            routers.insert(queue, (stop, task));
        }
    }

    /// At start: a poller for every routing queue.
    pub(crate) async fn start_routers(&self) -> ember_store::Result<()> {
        for account in self.shared.store.list_accounts().await? {
            let names = self
                .shared
                .queues
                .list_queues(&account.id, "", None, usize::MAX)
                .await
                .unwrap_or_default();
            for name in names {
                self.reconcile_router(QueueRef::new(account.id.clone(), name))
                    .await;
            }
        }
        Ok(())
    }
}
