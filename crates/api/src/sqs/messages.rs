//! Message operations: SendMessage(Batch), ReceiveMessage, DeleteMessage(Batch),
//! ChangeMessageVisibility(Batch).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ember_queue::digest::{md5_of_attributes, md5_of_body, md5_of_trace_header};
use ember_queue::settings::{MAX_MESSAGE_SIZE, MAX_VISIBILITY_TIMEOUT, MAX_WAIT_SECONDS};
use ember_queue::{
    AttributeValue, MessageAttribute, MessageAttributes, NewMessage, QueueError, ReceiveRequest,
    ReceivedMessage, Sent, VisibilityChange,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Int, batch_ids, failed_entry, ok, parse, queue_error, required, resolve, sqs_error};
use crate::{ApiError, Call, Frontend};

/// A message attribute as the wire carries it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireAttribute {
    string_value: Option<String>,
    /// Base64.
    binary_value: Option<String>,
    string_list_values: Option<Vec<String>>,
    binary_list_values: Option<Vec<String>>,
    data_type: Option<String>,
}

fn invalid(message: String) -> QueueError {
    QueueError::InvalidParameterValue(message)
}

fn to_attribute(name: &str, wire: WireAttribute) -> Result<MessageAttribute, QueueError> {
    if wire.string_list_values.is_some_and(|l| !l.is_empty())
        || wire.binary_list_values.is_some_and(|l| !l.is_empty())
    {
        return Err(invalid(format!(
            "Message (user) attribute '{name}': list values are reserved for future use and \
             not supported."
        )));
    }
    let data_type = wire.data_type.unwrap_or_default();
    let binary = data_type.starts_with("Binary");
    let value = match (wire.string_value, wire.binary_value) {
        (_, Some(b)) if binary => {
            AttributeValue::Binary(STANDARD.decode(b.trim()).map_err(|_| {
                invalid(format!(
                    "Message (user) attribute '{name}': BinaryValue is not valid base64."
                ))
            })?)
        }
        (Some(s), _) => AttributeValue::String(s),
        // The wrong kind of value, or none: the checks report the missing one.
        _ if binary => AttributeValue::Binary(Vec::new()),
        _ => AttributeValue::String(String::new()),
    };
    Ok(MessageAttribute { data_type, value })
}

/// The fields SendMessage and each SendMessageBatch entry share.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct MessageFields {
    message_body: Option<String>,
    delay_seconds: Option<Int>,
    message_attributes: Option<BTreeMap<String, WireAttribute>>,
    message_system_attributes: Option<BTreeMap<String, WireAttribute>>,
    message_deduplication_id: Option<String>,
    message_group_id: Option<String>,
}

impl MessageFields {
    fn into_message(self, sender_id: &str) -> Result<NewMessage, QueueError> {
        let delay_seconds = match self.delay_seconds {
            None => None,
            Some(Int(d)) => Some(u32::try_from(d).map_err(|_| {
                QueueError::invalid_value(
                    d,
                    "DelaySeconds",
                    "DelaySeconds must be >= 0 and <= 900.",
                )
            })?),
        };
        let mut attributes = MessageAttributes::new();
        for (name, wire) in self.message_attributes.unwrap_or_default() {
            let attribute = to_attribute(&name, wire)?;
            attributes.insert(name, attribute);
        }
        let mut trace_header = None;
        for (name, wire) in self.message_system_attributes.unwrap_or_default() {
            if name != "AWSTraceHeader" {
                return Err(invalid(format!(
                    "Message system attribute name '{name}' is invalid: only AWSTraceHeader can be sent."
                )));
            }
            match (wire.data_type.as_deref(), wire.string_value) {
                (Some("String"), Some(v)) => trace_header = Some(v),
                _ => {
                    return Err(invalid(
                        "Message system attribute 'AWSTraceHeader' must be of type String with a \
                         StringValue."
                            .into(),
                    ));
                }
            }
        }
        Ok(NewMessage {
            body: self.message_body.unwrap_or_default(),
            attributes,
            trace_header,
            delay_seconds,
            group_id: self.message_group_id,
            deduplication_id: self.message_deduplication_id,
            sender_id: sender_id.to_owned(),
        })
    }
}

/// The digests of what was sent, as SendMessage's result carries them.
fn sent_result(message: &NewMessage, sent: &Sent) -> Map<String, Value> {
    let mut r = Map::new();
    r.insert("MessageId".into(), json!(sent.message_id));
    r.insert("MD5OfMessageBody".into(), json!(md5_of_body(&message.body)));
    if let Some(md5) = md5_of_attributes(&message.attributes) {
        r.insert("MD5OfMessageAttributes".into(), json!(md5));
    }
    if let Some(t) = &message.trace_header {
        r.insert(
            "MD5OfMessageSystemAttributes".into(),
            json!(md5_of_trace_header(t)),
        );
    }
    if let Some(s) = &sent.sequence_number {
        r.insert("SequenceNumber".into(), json!(s));
    }
    r
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct SendMessageRequest {
    queue_url: Option<String>,
    #[serde(flatten)]
    fields: MessageFields,
}

pub async fn send_message(frontend: &Frontend, call: &Call) -> Result<Response, ApiError> {
    let request: SendMessageRequest = parse(&call.body)?;
    let queue = resolve(call, &request.queue_url)?;
    let message = request
        .fields
        .into_message(&call.caller.account.id)
        .map_err(queue_error)?;
    let outcome = frontend
        .queues
        .send(&queue, vec![message.clone()])
        .await
        .map_err(queue_error)?
        .pop()
        .ok_or_else(|| ApiError::internal("the queue returned no result for a send"))?;
    let sent = outcome.map_err(queue_error)?;
    ok(Value::Object(sent_result(&message, &sent)))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendEntry {
    id: Option<String>,
    #[serde(flatten)]
    fields: MessageFields,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageBatchRequest {
    queue_url: Option<String>,
    entries: Option<Vec<SendEntry>>,
}

/// In a batch, SQS words a size failure as "cannot be validated".
fn batch_wording(e: QueueError) -> QueueError {
    match e {
        QueueError::InvalidParameterValue(m) => QueueError::InvalidParameterValue(m.replace(
            "One or more parameters are invalid.",
            "One or more parameters cannot be validated.",
        )),
        e => e,
    }
}

pub async fn send_message_batch(frontend: &Frontend, call: &Call) -> Result<Response, ApiError> {
    let request: SendMessageBatchRequest = parse(&call.body)?;
    let queue = resolve(call, &request.queue_url)?;
    let entries = request.entries.unwrap_or_default();
    let ids = batch_ids(
        &entries,
        |e| e.id.as_deref(),
        "SendMessageBatchRequestEntry",
    )?;
    let converted: Vec<Result<NewMessage, QueueError>> = entries
        .into_iter()
        .map(|e| e.fields.into_message(&call.caller.account.id))
        .collect();
    let total: usize = converted
        .iter()
        .flatten()
        .map(ember_queue::validate::message_size)
        .sum();
    if total > MAX_MESSAGE_SIZE as usize {
        return Err(sqs_error(
            "BatchRequestTooLong",
            format!(
                "Batch requests cannot be longer than {MAX_MESSAGE_SIZE} bytes. You have sent {total} bytes."
            ),
        ));
    }
    let messages: Vec<NewMessage> = converted.iter().flatten().cloned().collect();
    let mut outcomes = frontend
        .queues
        .send(&queue, messages.clone())
        .await
        .map_err(queue_error)?
        .into_iter();
    let mut sent_messages = messages.iter();
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for (id, entry) in ids.iter().zip(converted) {
        let result = entry.and_then(|_| {
            let message = sent_messages.next();
            let outcome = outcomes
                .next()
                .unwrap_or_else(|| Err(QueueError::Storage("missing batch result".into())));
            outcome.map(|sent| (message, sent))
        });
        match result {
            Ok((Some(message), sent)) => {
                let mut r = sent_result(message, &sent);
                r.insert("Id".into(), json!(id));
                successful.push(Value::Object(r));
            }
            Ok((None, _)) => failed.push(failed_entry(
                id,
                &QueueError::Storage("missing batch entry".into()),
            )),
            Err(e) => failed.push(failed_entry(id, &batch_wording(e))),
        }
    }
    ok(json!({ "Successful": successful, "Failed": failed }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ReceiveMessageRequest {
    queue_url: Option<String>,
    attribute_names: Option<Vec<String>>,
    message_system_attribute_names: Option<Vec<String>>,
    message_attribute_names: Option<Vec<String>>,
    max_number_of_messages: Option<Int>,
    visibility_timeout: Option<Int>,
    wait_time_seconds: Option<Int>,
}

fn in_range(
    value: Option<Int>,
    name: &str,
    min: i64,
    max: i64,
    reason: &str,
) -> Result<Option<u32>, ApiError> {
    match value {
        None => Ok(None),
        Some(Int(v)) if (min..=max).contains(&v) => Ok(Some(v as u32)),
        Some(Int(v)) => Err(queue_error(QueueError::invalid_value(v, name, reason))),
    }
}

/// Which message attributes a receive asked for: `All`/`.*`, exact names, or `prefix.*`.
fn attribute_wanted(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| {
        p == "All"
            || p == ".*"
            || p == name
            || p.strip_suffix(".*")
                .is_some_and(|prefix| name.starts_with(&format!("{prefix}.")))
    })
}

pub async fn receive_message(frontend: &Frontend, call: &Call) -> Result<Response, ApiError> {
    let request: ReceiveMessageRequest = parse(&call.body)?;
    let queue = resolve(call, &request.queue_url)?;
    let max = in_range(
        request.max_number_of_messages,
        "MaxNumberOfMessages",
        1,
        10,
        "Must be between 1 and 10, if provided.",
    )?;
    let wait = in_range(
        request.wait_time_seconds,
        "WaitTimeSeconds",
        0,
        i64::from(MAX_WAIT_SECONDS),
        "Must be >= 0 and <= 20, if provided.",
    )?;
    let visibility_timeout = in_range(
        request.visibility_timeout,
        "VisibilityTimeout",
        0,
        i64::from(MAX_VISIBILITY_TIMEOUT),
        "Must be >= 0 and <= 43200, if provided.",
    )?;
    // AttributeNames (deprecated) and MessageSystemAttributeNames both select system
    // attributes; SQS returns the union.
    let system: Vec<String> = request
        .attribute_names
        .unwrap_or_default()
        .into_iter()
        .chain(request.message_system_attribute_names.unwrap_or_default())
        .collect();
    let user = request.message_attribute_names.unwrap_or_default();
    let messages = frontend
        .queues
        .receive(
            &queue,
            ReceiveRequest {
                max_messages: max.unwrap_or(1),
                visibility_timeout,
                wait: wait.map(|w| Duration::from_secs(u64::from(w))),
            },
        )
        .await
        .map_err(queue_error)?;
    if messages.is_empty() {
        return ok(json!({}));
    }
    let rendered: Vec<Value> = messages
        .iter()
        .map(|m| render_message(m, &system, &user))
        .collect();
    ok(json!({ "Messages": rendered }))
}

fn render_message(m: &ReceivedMessage, system: &[String], user: &[String]) -> Value {
    let mut out = Map::new();
    out.insert("MessageId".into(), json!(m.message_id));
    out.insert("ReceiptHandle".into(), json!(m.receipt_handle));
    out.insert("MD5OfBody".into(), json!(m.md5_of_body));
    out.insert("Body".into(), json!(m.body));

    let all = system.iter().any(|s| s == "All");
    let mut attributes = Map::new();
    let mut put = |name: &str, value: Option<String>| {
        if let Some(v) = value
            && (all || system.iter().any(|s| s == name))
        {
            attributes.insert(name.to_owned(), Value::String(v));
        }
    };
    put("SenderId", Some(m.sender_id.clone()));
    put("SentTimestamp", Some(m.sent_ms.to_string()));
    put("ApproximateReceiveCount", Some(m.receive_count.to_string()));
    put(
        "ApproximateFirstReceiveTimestamp",
        Some(m.first_receive_ms.to_string()),
    );
    put("SequenceNumber", m.sequence_number.clone());
    put("MessageDeduplicationId", m.deduplication_id.clone());
    put("MessageGroupId", m.group_id.clone());
    put("AWSTraceHeader", m.trace_header.clone());
    put("DeadLetterQueueSourceArn", m.dead_letter_source_arn.clone());
    if !attributes.is_empty() {
        out.insert("Attributes".into(), Value::Object(attributes));
    }

    let selected: Vec<(&String, &MessageAttribute)> = m
        .attributes
        .iter()
        .filter(|(name, _)| attribute_wanted(user, name))
        .collect();
    if let Some(md5) = md5_of_attributes(selected.iter().copied()) {
        out.insert("MD5OfMessageAttributes".into(), json!(md5));
        let rendered: Map<String, Value> = selected
            .into_iter()
            .map(|(name, a)| {
                let value = match &a.value {
                    AttributeValue::String(s) => {
                        json!({ "DataType": a.data_type, "StringValue": s })
                    }
                    AttributeValue::Binary(b) => {
                        json!({ "DataType": a.data_type, "BinaryValue": STANDARD.encode(b) })
                    }
                };
                (name.clone(), value)
            })
            .collect();
        out.insert("MessageAttributes".into(), Value::Object(rendered));
    }
    Value::Object(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteMessageRequest {
    queue_url: Option<String>,
    receipt_handle: Option<String>,
}

pub async fn delete_message(frontend: &Frontend, call: &Call) -> Result<Response, ApiError> {
    let request: DeleteMessageRequest = parse(&call.body)?;
    let queue = resolve(call, &request.queue_url)?;
    let handle = required(&request.receipt_handle, "ReceiptHandle")?;
    frontend
        .queues
        .delete_messages(&queue, vec![handle.clone()])
        .await
        .map_err(queue_error)?
        .pop()
        .ok_or_else(|| ApiError::internal("the queue returned no result for a delete"))?
        .map_err(queue_error)?;
    ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HandleEntry {
    id: Option<String>,
    receipt_handle: Option<String>,
    visibility_timeout: Option<Int>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HandleBatchRequest {
    queue_url: Option<String>,
    entries: Option<Vec<HandleEntry>>,
}

/// `{"Successful": [{"Id"}], "Failed": [...]}` from per-entry results.
fn batch_result(
    ids: &[String],
    results: impl IntoIterator<Item = Result<(), QueueError>>,
) -> Value {
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for (id, result) in ids.iter().zip(results) {
        match result {
            Ok(()) => successful.push(json!({ "Id": id })),
            Err(e) => failed.push(failed_entry(id, &e)),
        }
    }
    json!({ "Successful": successful, "Failed": failed })
}

pub async fn delete_message_batch(frontend: &Frontend, call: &Call) -> Result<Response, ApiError> {
    let request: HandleBatchRequest = parse(&call.body)?;
    let queue = resolve(call, &request.queue_url)?;
    let entries = request.entries.unwrap_or_default();
    let ids = batch_ids(
        &entries,
        |e| e.id.as_deref(),
        "DeleteMessageBatchRequestEntry",
    )?;
    let handles = entries
        .into_iter()
        .map(|e| e.receipt_handle.unwrap_or_default())
        .collect();
    let results = frontend
        .queues
        .delete_messages(&queue, handles)
        .await
        .map_err(queue_error)?;
    ok(batch_result(&ids, results))
}

fn visibility_timeout(value: Option<Int>) -> Result<u32, QueueError> {
    match value {
        None => Err(QueueError::missing("VisibilityTimeout")),
        Some(Int(v)) if (0..=i64::from(MAX_VISIBILITY_TIMEOUT)).contains(&v) => Ok(v as u32),
        Some(Int(v)) => Err(QueueError::invalid_value(
            v,
            "VisibilityTimeout",
            "VisibilityTimeout must be an integer between 0 and 43200.",
        )),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeMessageVisibilityRequest {
    queue_url: Option<String>,
    receipt_handle: Option<String>,
    visibility_timeout: Option<Int>,
}

pub async fn change_message_visibility(
    frontend: &Frontend,
    call: &Call,
) -> Result<Response, ApiError> {
    let request: ChangeMessageVisibilityRequest = parse(&call.body)?;
    let queue = resolve(call, &request.queue_url)?;
    let handle = required(&request.receipt_handle, "ReceiptHandle")?;
    let timeout = visibility_timeout(request.visibility_timeout).map_err(queue_error)?;
    frontend
        .queues
        .change_visibility(
            &queue,
            vec![VisibilityChange {
                receipt_handle: handle.clone(),
                timeout,
            }],
        )
        .await
        .map_err(queue_error)?
        .pop()
        .ok_or_else(|| ApiError::internal("the queue returned no result for a visibility change"))?
        .map_err(queue_error)?;
    ok(json!({}))
}

pub async fn change_message_visibility_batch(
    frontend: &Frontend,
    call: &Call,
) -> Result<Response, ApiError> {
    let request: HandleBatchRequest = parse(&call.body)?;
    let queue = resolve(call, &request.queue_url)?;
    let entries = request.entries.unwrap_or_default();
    let ids = batch_ids(
        &entries,
        |e| e.id.as_deref(),
        "ChangeMessageVisibilityBatchRequestEntry",
    )?;
    // Entries with a bad timeout fail on their own; the rest go to the queue together.
    let mut results: Vec<Option<Result<(), QueueError>>> = Vec::with_capacity(entries.len());
    let mut changes = Vec::new();
    for e in entries {
        match visibility_timeout(e.visibility_timeout) {
            Ok(timeout) => {
                changes.push(VisibilityChange {
                    receipt_handle: e.receipt_handle.unwrap_or_default(),
                    timeout,
                });
                results.push(None);
            }
            Err(err) => results.push(Some(Err(err))),
        }
    }
    let mut outcomes = frontend
        .queues
        .change_visibility(&queue, changes)
        .await
        .map_err(queue_error)?
        .into_iter();
    let results = results.into_iter().map(|r| {
        r.unwrap_or_else(|| {
            outcomes
                .next()
                .unwrap_or_else(|| Err(QueueError::Storage("missing batch result".into())))
        })
    });
    ok(batch_result(&ids, results))
}
