//! One mapping's poller: capacity first, then a long poll, then invoke and acknowledge.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ember_queue::{QueueError, QueueRef, ReceiveRequest, ReceivedMessage};
use ember_store::{EventSourceMapping, Function};
use ember_worker::InvokeRequest;
use ember_worker::limits::Permit;
use ember_worker::metrics::EventTiming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::Shared;
use crate::convert;
use crate::filter::BatchFilter;

/// SQS's longest long poll.
const LONG_POLL: Duration = Duration::from_secs(20);
/// SQS's largest receive.
const MAX_RECEIVE: u32 = 10;
/// Without `ScalingConfig.MaximumConcurrency`, Lambda scales an SQS mapping up to this.
const DEFAULT_MAX_CONCURRENCY: u32 = 1000;
/// How long to wait before retrying after the store or the queue failed.
const RETRY: Duration = Duration::from_secs(5);

/// Resolves once `stop` says so (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn is_stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow()
}

/// Capacity held by one batch: freed when the batch is acknowledged.
struct Capacity {
    _mapping: OwnedSemaphorePermit,
    _function: Permit,
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    mapping: EventSourceMapping,
    mut stop: watch::Receiver<bool>,
) {
    let queue = QueueRef::new(&mapping.account_id, &mapping.queue_name);
    let cap = Arc::new(Semaphore::new(
        mapping
            .maximum_concurrency
            .unwrap_or(DEFAULT_MAX_CONCURRENCY) as usize,
    ));
    let filter = BatchFilter::for_mapping(&shared, &mapping);
    let mapping = Arc::new(mapping);
    let mut in_flight = JoinSet::new();
    loop {
        while in_flight.try_join_next().is_some() {}
        // (a) Capacity first.
        let slot = tokio::select! {
            s = cap.clone().acquire_owned() => match s { Ok(s) => s, Err(_) => break },
            _ = stopped(&mut stop) => break,
        };
        // The function's concurrency must have room before anything is received; the
        // permit itself is taken once there is a batch, so an idle queue holds no slot.
        tokio::select! {
            _ = shared.limiter.wait_available(&mapping.account_id, &mapping.function_name) => {}
            _ = stopped(&mut stop) => break,
        };
        let function = match shared
            .store
            .get_function(&mapping.account_id, &mapping.function_name)
            .await
        {
            Ok(Some(f)) => f,
            Ok(None) => {
                tracing::info!(uuid = %mapping.uuid, function = %mapping.function_name,
                    "the mapping's function no longer exists; poller stopped");
                break;
            }
            Err(e) => {
                tracing::warn!(uuid = %mapping.uuid, error = %e, "could not read the function");
                pause(&mut stop).await;
                continue;
            }
        };
        // (b) Then messages.
        let batch = match receive_batch(&shared, &queue, &mapping, &stop).await {
            Ok(batch) => batch,
            Err(QueueError::QueueDoesNotExist) => {
                tracing::warn!(uuid = %mapping.uuid, queue = %queue, "the mapping's queue does not exist");
                pause(&mut stop).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(uuid = %mapping.uuid, queue = %queue, error = %e, "receive failed");
                pause(&mut stop).await;
                continue;
            }
        };
        let received = Instant::now();
        if batch.is_empty() {
            continue;
        }
        if is_stopped(&stop) {
            // Received after the mapping was disabled: give the messages back untouched.
            give_back(&shared, &queue, &batch, 0).await;
            break;
        }
        // FilterCriteria: what matches no pattern is deleted, never invoked.
        let batch = filter.keep_matching(&shared, &queue, batch).await;
        if batch.is_empty() {
            continue;
        }
        // Room was there before the receive; a synchronous invocation may have taken it
        // since, so wait for a slot (the messages stay leased meanwhile).
        let permit = tokio::select! {
            p = shared.limiter.acquire(&mapping.account_id, &mapping.function_name) => p,
            _ = stopped(&mut stop) => {
                give_back(&shared, &queue, &batch, 0).await;
                break;
            }
        };
        let capacity = Capacity {
            _mapping: slot,
            _function: permit,
        };
        in_flight.spawn(process(
            shared.clone(),
            mapping.clone(),
            queue.clone(),
            function,
            batch,
            received,
            capacity,
        ));
    }
    // In-flight batches finish and are acknowledged; nothing new is received.
    while in_flight.join_next().await.is_some() {}
    tracing::info!(uuid = %mapping.uuid, "event source mapping poller stopped");
}

async fn pause(stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(RETRY) => {}
        _ = stopped(stop) => {}
    }
}

/// Up to `BatchSize` messages: one long poll for the first, then — within the batching
/// window, or for as long as messages are there at once — more receives to fill the batch.
async fn receive_batch(
    shared: &Shared,
    queue: &QueueRef,
    mapping: &EventSourceMapping,
    stop: &watch::Receiver<bool>,
) -> Result<Vec<ReceivedMessage>, QueueError> {
    let want = mapping.batch_size.max(1) as usize;
    let receive = |n: usize, wait: Duration| {
        shared.queues.receive(
            queue,
            ReceiveRequest {
                max_messages: (n as u32).min(MAX_RECEIVE),
                visibility_timeout: None,
                wait: Some(wait),
            },
        )
    };
    let mut batch = receive(want, LONG_POLL).await?;
    if batch.is_empty() {
        return Ok(batch);
    }
    let deadline = Instant::now() + Duration::from_secs(u64::from(mapping.max_batching_window));
    while batch.len() < want && !is_stopped(stop) {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .min(LONG_POLL);
        let more = match receive(want - batch.len(), left).await {
            Ok(more) => more,
            Err(e) => {
                tracing::warn!(queue = %queue, error = %e, "receive failed while filling a batch");
                break;
            }
        };
        if more.is_empty() && Instant::now() >= deadline {
            break;
        }
        // A message whose lease ran out while the batch filled is in it once, with its
        // latest receipt handle.
        for m in more {
            batch.retain(|b| b.message_id != m.message_id);
            batch.push(m);
        }
    }
    Ok(batch)
}

/// Make received messages visible again after `secs` (0: at once).
pub(crate) async fn give_back(
    shared: &Shared,
    queue: &QueueRef,
    messages: &[ReceivedMessage],
    secs: u32,
) {
    let changes = messages
        .iter()
        .map(|m| ember_queue::VisibilityChange {
            receipt_handle: m.receipt_handle.clone(),
            timeout: secs,
        })
        .collect();
    if let Err(e) = shared.queues.change_visibility(queue, changes).await {
        tracing::warn!(queue = %queue, error = %e, "could not give back received messages");
    }
}

/// (c) convert, (d) invoke, (e) acknowledge once the outcome is known.
async fn process(
    shared: Arc<Shared>,
    mapping: Arc<EventSourceMapping>,
    queue: QueueRef,
    function: Function,
    batch: Vec<ReceivedMessage>,
    received: Instant,
    _capacity: Capacity,
) {
    let queue_arn = queue.arn(&shared.region);
    let event = convert::sqs_event(&batch, &queue_arn, &shared.region);
    let payload = Bytes::from(serde_json::to_vec(&event).unwrap_or_default());
    let request_id = uuid::Uuid::new_v4().to_string();
    let oldest_sent = batch.iter().map(|m| m.sent_ms).min().unwrap_or(0);
    let outcome = shared
        .worker
        .invoke(InvokeRequest {
            function,
            request_id: request_id.clone(),
            payload,
            client_context: None,
            event: Some(EventTiming {
                received,
                sent_ms: oldest_sent,
            }),
        })
        .await;
    // The batch's capacity (`_capacity`) is held until it is acknowledged, at the end of
    // this function: the next batch is not received while this one is still leased.
    let response = match outcome {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(uuid = %mapping.uuid, %request_id, error = %e,
                "could not invoke the function; the batch will be retried");
            return;
        }
    };
    // The worker manager measured both latencies (and recorded them in the node's
    // histograms and the REPORT line).
    if let Some(latency) = response.event_latency {
        tracing::info!(
            uuid = %mapping.uuid,
            function = %mapping.function_name,
            %request_id,
            messages = batch.len(),
            placement = ?response.placement,
            poll_to_handler_us = latency.poll_to_handler.as_micros() as u64,
            send_to_handler_ms = latency.send_to_handler.as_millis() as u64,
            function_error = response.function_error,
            log = ?ember_worker::logs::tail(&response.log),
            "event source mapping batch invoked"
        );
    }
    if response.function_error {
        // Nothing is deleted: the messages come back after their visibility timeout.
        return;
    }
    let failed: HashSet<String> = if mapping.report_batch_item_failures {
        let ids: Vec<&str> = batch.iter().map(|m| m.message_id.as_str()).collect();
        match convert::batch_item_failures(&response.payload, &ids) {
            Ok(failed) => failed,
            Err(why) => {
                tracing::info!(uuid = %mapping.uuid, %request_id, %why,
                    "the response fails the whole batch");
                return;
            }
        }
    } else {
        HashSet::new()
    };
    // FIFO: after a failed message, later messages of its group stay too, to keep order.
    let mut blocked_groups = HashSet::new();
    let mut delete = Vec::new();
    for m in &batch {
        let group_blocked = m
            .group_id
            .as_ref()
            .is_some_and(|g| blocked_groups.contains(g));
        if failed.contains(&m.message_id) || group_blocked {
            if let Some(g) = &m.group_id {
                blocked_groups.insert(g.clone());
            }
            continue;
        }
        delete.push(m.receipt_handle.clone());
    }
    if delete.is_empty() {
        return;
    }
    match shared.queues.delete_messages(&queue, delete).await {
        Ok(results) => {
            let failures = results.iter().filter(|r| r.is_err()).count();
            if failures > 0 {
                tracing::warn!(uuid = %mapping.uuid, failures, "some processed messages could not be deleted");
            }
        }
        Err(e) => {
            tracing::warn!(uuid = %mapping.uuid, error = %e, "could not delete a processed batch");
        }
    }
}
