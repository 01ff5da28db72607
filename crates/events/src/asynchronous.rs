//! Asynchronous invocation (`InvocationType: Event`).
//!
//! Invoke answers 202 once the event is on a durable queue: each function has its own
//! internal queue ([`queue_of`]: account `<id>:async`, which no SQS caller can name, so
//! users never see it in ListQueues). A poller per function with queued events — started
//! by the first event, stopped after one idle long poll, restarted by the next event or
//! at server start — takes events only when the function has free concurrency, runs them
//! through the worker manager, and settles each one:
//!
//! - success: the `OnSuccess` destination gets a record, the event is deleted;
//! - function error: retried after `retry_delay × attempt` (Lambda waits one, then two
//!   minutes) until `MaximumRetryAttempts` is used up; the count of function errors is
//!   checkpointed in the store so a restart does not reset it;
//! - throttled or the sandbox failed (not the function's fault): back on the queue with
//!   exponential backoff, not counted as an attempt, until `MaximumEventAgeInSeconds`;
//! - finally failed (retries exhausted, or the event too old): the `OnFailure` destination
//!   gets a record and the function's `DeadLetterConfig` queue gets the original event,
//!   then the event is deleted.
//!
//! Records follow Lambda's destination format (`version`, `timestamp`,
//! `requestContext.condition`, `requestPayload`, `responseContext`, `responsePayload`).
//! An event whose server crashed mid-invocation comes back when its lease ends and runs
//! again: delivery is at least once, as in Lambda.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ember_queue::{
    MessageAttribute, NewMessage, QueueError, QueueRef, ReceiveRequest, ReceivedMessage,
};
use ember_store::{EventInvokeConfig, Function, FunctionSetting};
use ember_worker::InvokeRequest;
use ember_worker::limits::Permit;
use serde_json::{Value, json};

use crate::Shared;
use crate::poller::give_back;

/// Lambda's limit on an asynchronous invocation's payload. The queue message carries the
/// request id and client context as attributes, which count towards the same limit.
pub const MAX_PAYLOAD_BYTES: usize = 1_048_576;
const REQUEST_ID: &str = "ember.requestId";
const CLIENT_CONTEXT: &str = "ember.clientContext";
/// SQS's longest long poll: a poller with nothing to do for this long exits.
const LONG_POLL: Duration = Duration::from_secs(20);
/// Events kept at most this long (more than the largest `MaximumEventAgeInSeconds` plus
/// retries); an older one is dropped by the queue's retention.
const RETENTION_SECS: u32 = 86_400;
/// Throttled events wait at most this long before they are tried again.
const MAX_BACKOFF_SECS: u32 = 300;

/// An asynchronous invocation to queue.
#[derive(Debug, Clone)]
pub struct AsyncEvent {
    pub account_id: String,
    pub function_name: String,
    pub request_id: String,
    /// JSON.
    pub payload: String,
    /// Decoded `X-Amz-Client-Context`.
    pub client_context: Option<String>,
}

/// The internal queue holding a function's asynchronous events.
pub fn queue_of(account_id: &str, function_name: &str) -> QueueRef {
    QueueRef::new(format!("{account_id}:async"), function_name)
}

/// The pollers of functions with queued events.
#[derive(Default)]
pub(crate) struct AsyncPollers {
    /// Per queue, how many events were queued since the poller started (it exits only
    /// when nothing arrived during its last empty poll).
    running: HashMap<QueueRef, u64>,
    /// Internal queues known to exist.
    created: std::collections::HashSet<QueueRef>,
}

impl crate::EventsManager {
    /// Queue an asynchronous invocation durably (Invoke with `InvocationType: Event`
    /// answers 202 after this returns `Ok`) and make sure a poller runs it.
    pub async fn invoke_async(&self, event: AsyncEvent) -> Result<(), QueueError> {
        let queue = queue_of(&event.account_id, &event.function_name);
        self.ensure_async_queue(&queue).await?;
        let mut attributes = ember_queue::MessageAttributes::new();
        attributes.insert(
            REQUEST_ID.into(),
            MessageAttribute::string("String", &event.request_id),
        );
        if let Some(cc) = &event.client_context {
            attributes.insert(
                CLIENT_CONTEXT.into(),
                MessageAttribute::string("String", cc),
            );
        }
        let message = NewMessage {
            body: event.payload,
            attributes,
            sender_id: event.account_id.clone(),
            ..NewMessage::default()
        };
        let mut sent = self.shared.queues.send(&queue, vec![message]).await?;
        sent.pop().unwrap_or(Err(QueueError::QueueDoesNotExist))?;
        self.kick_async(queue);
        Ok(())
    }

    async fn ensure_async_queue(&self, queue: &QueueRef) -> Result<(), QueueError> {
        if self.async_pollers().created.contains(queue) {
            return Ok(());
        }
        let attributes = [
            ("MaximumMessageSize", MAX_PAYLOAD_BYTES.to_string()),
            ("MessageRetentionPeriod", RETENTION_SECS.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        self.shared
            .queues
            .create_queue(queue, &attributes, &Default::default())
            .await?;
        self.async_pollers().created.insert(queue.clone());
        Ok(())
    }

    fn async_pollers(&self) -> std::sync::MutexGuard<'_, AsyncPollers> {
        self.asynchronous.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An event was queued on `queue`: start its poller, or tell the running one.
    fn kick_async(&self, queue: QueueRef) {
        let mut pollers = self.async_pollers();
        if let Some(kicks) = pollers.running.get_mut(&queue) {
            *kicks += 1;
            return;
        }
        if *self.shared.stop.borrow() {
            return; // shutting down: the events wait on disk for the next start
        }
        pollers.running.insert(queue.clone(), 0);
        drop(pollers);
        let task = tokio::spawn(run(self.clone(), queue));
        self.keep(task);
    }

    /// At start: run the events left queued by the previous process.
    pub(crate) async fn resume_async(&self) -> ember_store::Result<()> {
        for account in self.shared.store.list_accounts().await? {
            let owner = format!("{}:async", account.id);
            let names = match self
                .shared
                .queues
                .list_queues(&owner, "", None, usize::MAX)
                .await
            {
                Ok(names) => names,
                Err(e) => {
                    tracing::warn!(account = %account.id, error = %e, "could not list asynchronous event queues");
                    continue;
                }
            };
            for name in names {
                let queue = QueueRef::new(owner.clone(), name);
                self.async_pollers().created.insert(queue.clone());
                self.kick_async(queue);
            }
        }
        Ok(())
    }

    /// A function was deleted: its queued events go with it (as in Lambda).
    pub(crate) async fn drop_async_queue(&self, account_id: &str, function_name: &str) {
        let queue = queue_of(account_id, function_name);
        self.async_pollers().created.remove(&queue);
        match self.shared.queues.delete_queue(&queue).await {
            Ok(()) | Err(QueueError::QueueDoesNotExist) => {}
            Err(e) => {
                tracing::warn!(queue = %queue, error = %e, "could not delete a function's event queue")
            }
        }
    }
}

/// One function's poller.
async fn run(manager: crate::EventsManager, queue: QueueRef) {
    let shared = manager.shared.clone();
    let account_id = queue.account_id.trim_end_matches(":async").to_owned();
    let function_name = queue.name.clone();
    let mut stop = shared.stop.subscribe();
    loop {
        let kicks = manager
            .async_pollers()
            .running
            .get(&queue)
            .copied()
            .unwrap_or(0);
        tokio::select! {
            _ = shared.limiter.wait_available(&account_id, &function_name) => {}
            _ = crate::poller::stopped(&mut stop) => break,
        }
        let function = match shared.store.get_function(&account_id, &function_name).await {
            Ok(Some(f)) => f,
            Ok(None) => {
                manager.drop_async_queue(&account_id, &function_name).await;
                break;
            }
            Err(e) => {
                tracing::warn!(queue = %queue, error = %e, "could not read the function");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let received = tokio::select! {
            r = shared.queues.receive(&queue, ReceiveRequest {
                max_messages: 10,
                // Long enough for the invocation; a crash makes the event visible again.
                visibility_timeout: Some(function.timeout + 60),
                wait: Some(LONG_POLL),
            }) => r,
            _ = crate::poller::stopped(&mut stop) => break,
        };
        let received_at = std::time::Instant::now();
        let messages = match received {
            Ok(m) => m,
            Err(QueueError::QueueDoesNotExist) => break,
            Err(e) => {
                tracing::warn!(queue = %queue, error = %e, "receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            let mut pollers = manager.async_pollers();
            if pollers.running.get(&queue).copied().unwrap_or(0) == kicks {
                pollers.running.remove(&queue);
                return;
            }
            continue;
        }
        for (i, message) in messages.into_iter().enumerate() {
            // One slot per event: never more running than the function may. The first
            // waits for its slot (there was room before the receive); an event with no
            // free slot goes back at once rather than waiting under its lease.
            let permit = if i == 0 {
                tokio::select! {
                    p = shared.limiter.acquire(&account_id, &function_name) => Some(p),
                    _ = crate::poller::stopped(&mut stop) => None,
                }
            } else {
                shared.limiter.try_acquire(&account_id, &function_name).ok()
            };
            let Some(permit) = permit else {
                give_back(&shared, &queue, std::slice::from_ref(&message), 0).await;
                continue;
            };
            let task = tokio::spawn(deliver(
                shared.clone(),
                manager.clone(),
                queue.clone(),
                function.clone(),
                message,
                received_at,
                permit,
            ));
            manager.keep(task);
        }
    }
    manager.async_pollers().running.remove(&queue);
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn attribute(message: &ReceivedMessage, name: &str) -> Option<String> {
    match message.attributes.get(name).map(|a| &a.value) {
        Some(ember_queue::AttributeValue::String(s)) => Some(s.clone()),
        _ => None,
    }
}

async fn delete(shared: &crate::Shared, queue: &QueueRef, m: &ReceivedMessage) {
    if let Err(e) = shared
        .queues
        .delete_messages(queue, vec![m.receipt_handle.clone()])
        .await
    {
        tracing::warn!(queue = %queue, error = %e, "could not delete a settled asynchronous event");
    }
}

/// Why an event is given up.
#[derive(Debug, Clone, Copy)]
enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    fn as_str(self) -> &'static str {
        match self {
            Condition::Success => "Success",
            Condition::RetriesExhausted => "RetriesExhausted",
            Condition::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

/// Run one event and settle it.
async fn deliver(
    shared: Arc<Shared>,
    manager: crate::EventsManager,
    queue: QueueRef,
    function: Function,
    message: ReceivedMessage,
    received_at: std::time::Instant,
    permit: Permit,
) {
    let config = match shared
        .store
        .get_function_setting(
            &function.account_id,
            &function.name,
            FunctionSetting::EventInvokeConfig,
        )
        .await
    {
        Ok(Some(doc)) => serde_json::from_str(&doc.body).unwrap_or_default(),
        Ok(None) => EventInvokeConfig::default(),
        Err(e) => {
            tracing::warn!(queue = %queue, error = %e, "could not read the event invoke config");
            give_back(&shared, &queue, std::slice::from_ref(&message), 5).await;
            return;
        }
    };
    let request_id = attribute(&message, REQUEST_ID).unwrap_or_else(|| message.message_id.clone());
    let checkpoint = format!(
        "async:{}:{}:{}",
        queue.account_id, queue.name, message.message_id
    );
    // Function errors so far (only a redelivered event can have any).
    let errors: u32 = if message.receive_count > 1 {
        match shared.store.get_checkpoint(&checkpoint).await {
            Ok(c) => c.and_then(|c| c.parse().ok()).unwrap_or(0),
            Err(e) => {
                tracing::warn!(queue = %queue, error = %e, "could not read an event's attempts");
                give_back(&shared, &queue, std::slice::from_ref(&message), 5).await;
                return;
            }
        }
    } else {
        0
    };
    let age_ms = now_ms().saturating_sub(message.sent_ms);
    let settled = Settle {
        shared: &shared,
        manager: &manager,
        function: &function,
        message: &message,
        request_id: &request_id,
    };
    if age_ms > i64::from(config.max_age_secs()) * 1000 {
        drop(permit);
        settled
            .fail(&config, Condition::EventAgeExceeded, errors, None)
            .await;
        finish(&shared, &queue, &message, &checkpoint, errors).await;
        return;
    }
    let outcome = shared
        .worker
        .invoke(InvokeRequest {
            function: function.clone(),
            request_id: request_id.clone(),
            payload: Bytes::from(message.body.clone()),
            client_context: attribute(&message, CLIENT_CONTEXT),
            event: Some(ember_worker::metrics::EventTiming {
                received: received_at,
                sent_ms: message.sent_ms,
            }),
        })
        .await;
    drop(permit);
    match outcome {
        Ok(response) if !response.function_error => {
            if let Some(destination) = config.on_success() {
                let record = settled.record(
                    Condition::Success,
                    errors + 1,
                    Some(&response.payload),
                    false,
                );
                settled.send_record(destination, record).await;
            }
            finish(&shared, &queue, &message, &checkpoint, errors).await;
        }
        Ok(response) => {
            let errors = errors + 1;
            if errors > config.retries() {
                settled
                    .fail(
                        &config,
                        Condition::RetriesExhausted,
                        errors,
                        Some(&response.payload),
                    )
                    .await;
                finish(&shared, &queue, &message, &checkpoint, errors).await;
                return;
            }
            if let Err(e) = shared
                .store
                .put_checkpoint(&checkpoint, Some(&errors.to_string()))
                .await
            {
                tracing::warn!(queue = %queue, error = %e, "could not record an event's attempts");
            }
            let delay = shared.retry_delay.as_secs().max(1) as u32 * errors;
            tracing::info!(function = %function.name, %request_id, attempt = errors,
                delay_secs = delay, "asynchronous invocation failed; retrying later");
            give_back(&shared, &queue, std::slice::from_ref(&message), delay).await;
        }
        Err(e) => {
            // Not the function's fault (throttled, a sandbox failed): try again later.
            let delay = 2u32
                .saturating_pow(message.receive_count.min(16))
                .min(MAX_BACKOFF_SECS);
            tracing::info!(function = %function.name, %request_id, error = %e,
                delay_secs = delay, "asynchronous invocation could not run; retrying later");
            give_back(&shared, &queue, std::slice::from_ref(&message), delay).await;
        }
    }
}

/// Delete a settled event and its attempt count.
async fn finish(
    shared: &Shared,
    queue: &QueueRef,
    m: &ReceivedMessage,
    checkpoint: &str,
    errors: u32,
) {
    delete(shared, queue, m).await;
    if errors > 0
        && let Err(e) = shared.store.put_checkpoint(checkpoint, None).await
    {
        tracing::warn!(error = %e, "could not clear an event's attempts");
    }
}

/// What settling one event needs to know.
struct Settle<'a> {
    shared: &'a Shared,
    manager: &'a crate::EventsManager,
    function: &'a Function,
    message: &'a ReceivedMessage,
    request_id: &'a str,
}

impl Settle<'_> {
    /// Lambda's destination record.
    fn record(
        &self,
        condition: Condition,
        invocations: u32,
        response: Option<&Bytes>,
        function_error: bool,
    ) -> Value {
        let request_payload: Value =
            serde_json::from_str(&self.message.body).unwrap_or_else(|_| json!(self.message.body));
        let mut response_context = json!({ "statusCode": 200, "executedVersion": "$LATEST" });
        if function_error {
            response_context["functionError"] = json!("Unhandled");
        }
        let mut record = json!({
            "version": "1.0",
            "timestamp": timestamp(),
            "requestContext": {
                "requestId": self.request_id,
                "functionArn": format!("{}:$LATEST", self.function.arn(&self.shared.region)),
                "condition": condition.as_str(),
                "approximateInvokeCount": invocations,
            },
            "requestPayload": request_payload,
        });
        if let Some(body) = response {
            record["responseContext"] = response_context;
            record["responsePayload"] = serde_json::from_slice(body)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(body)));
        }
        record
    }

    /// The event failed for good: the `OnFailure` destination and the dead-letter queue.
    async fn fail(
        &self,
        config: &EventInvokeConfig,
        condition: Condition,
        invocations: u32,
        response: Option<&Bytes>,
    ) {
        tracing::warn!(function = %self.function.name, request_id = %self.request_id,
            condition = condition.as_str(), "asynchronous invocation failed for good");
        if let Some(destination) = config.on_failure() {
            let record = self.record(condition, invocations, response, response.is_some());
            self.send_record(destination, record).await;
        }
        if let Some(dlq) = &self.function.dead_letter_target_arn {
            let error_message = response
                .and_then(|r| serde_json::from_slice::<Value>(r).ok())
                .and_then(|v| {
                    v.get("errorMessage")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| condition.as_str().to_owned());
            let mut attributes = ember_queue::MessageAttributes::new();
            attributes.insert(
                "RequestID".into(),
                MessageAttribute::string("String", self.request_id),
            );
            attributes.insert(
                "ErrorCode".into(),
                MessageAttribute::string("Number", "200"),
            );
            attributes.insert(
                "ErrorMessage".into(),
                MessageAttribute::string("String", crate::truncate(&error_message, 1024)),
            );
            self.send_to_queue(dlq, self.message.body.clone(), attributes)
                .await;
        }
    }

    /// Deliver a record to a destination: an SQS queue, or a function (invoked
    /// asynchronously with the record as its event).
    async fn send_record(&self, destination: &str, record: Value) {
        let body = record.to_string();
        if destination.starts_with("arn:aws:sqs:") {
            self.send_to_queue(destination, body, Default::default())
                .await;
            return;
        }
        match crate::names::function_of_arn(destination) {
            Some(arn) => {
                let event = AsyncEvent {
                    account_id: arn.account_id,
                    function_name: arn.name,
                    request_id: uuid::Uuid::new_v4().to_string(),
                    payload: body,
                    client_context: None,
                };
                if let Err(e) = self.manager.invoke_async(event).await {
                    tracing::warn!(%destination, error = %e, "could not deliver to a destination function");
                }
            }
            None => tracing::warn!(%destination, "unsupported destination"),
        }
    }

    async fn send_to_queue(
        &self,
        arn: &str,
        body: String,
        attributes: ember_queue::MessageAttributes,
    ) {
        let Some((_, queue)) = QueueRef::from_arn(arn) else {
            tracing::warn!(destination = %arn, "not an SQS queue ARN");
            return;
        };
        let message = NewMessage {
            body,
            attributes,
            sender_id: self.function.account_id.clone(),
            ..NewMessage::default()
        };
        match self.shared.queues.send(&queue, vec![message]).await {
            Ok(mut r) => {
                if let Some(Err(e)) = r.pop() {
                    tracing::warn!(destination = %arn, error = %e, "a destination refused a record");
                }
            }
            Err(e) => {
                tracing::warn!(destination = %arn, error = %e, "could not send to a destination")
            }
        }
    }
}

/// `2019-11-14T18:16:05.568Z`.
fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}
