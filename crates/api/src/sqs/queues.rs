//! Queue operations: CreateQueue, GetQueueUrl, ListQueues, DeleteQueue,
//! Get/SetQueueAttributes, PurgeQueue.

use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ember_queue::{QueueError, QueueInfo, QueueRef};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Int, StringMap, ok, parse, queue_error, queue_url, required, resolve, sqs_error};
use crate::{ApiError, Call, Frontend};

/// ListQueues without MaxResults returns at most this many URLs.
const LIST_LIMIT: usize = 1000;
const MAX_TAGS: usize = 50;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct CreateQueueRequest {
    queue_name: Option<String>,
    attributes: Option<StringMap>,
    #[serde(rename = "tags")]
    tags: Option<StringMap>,
}

fn check_tags(tags: &StringMap) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(queue_error(QueueError::InvalidParameterValue(format!(
            "Too many tags: {} (a queue can have at most {MAX_TAGS}).",
            tags.len()
        ))));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(queue_error(QueueError::InvalidParameterValue(format!(
                "Tag {k} is invalid: keys are 1 to 128 characters, values at most 256."
            ))));
        }
    }
    Ok(())
}

pub async fn create_queue(frontend: &Frontend, call: &Call) -> Result<Response, ApiError> {
    let request: CreateQueueRequest = parse(&call.body)?;
    let name = required(&request.queue_name, "QueueName")?;
    let tags = request.tags.unwrap_or_default();
    check_tags(&tags)?;
    let queue = QueueRef::new(&call.caller.account.id, name);
    let info = frontend
        .queues
        .create_queue(&queue, &request.attributes.unwrap_or_default(), &tags)
        .await
        .map_err(queue_error)?;
    frontend.notify_queue(&info.queue.account_id, &info.queue.name);
    ok(json!({ "QueueUrl": queue_url(call, &info.queue) }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueUrlRequest {
    queue_name: Option<String>,
    #[serde(rename = "QueueOwnerAWSAccountId")]
    owner: Option<String>,
}

pub async fn get_queue_url(frontend: &Frontend, call: &Call) -> Result<Response, ApiError> {
    let request: GetQueueUrlRequest = parse(&call.body)?;
    let name = required(&request.queue_name, "QueueName")?;
    let own = &call.caller.account.id;
    if request.owner.as_ref().is_some_and(|o| o != own) {
        return Err(queue_error(QueueError::QueueDoesNotExist));
    }
    let info = frontend
        .queues
        .get_queue(&QueueRef::new(own, name))
        .await
        .map_err(queue_error)?;
    ok(json!({ "QueueUrl": queue_url(call, &info.queue) }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListQueuesRequest {
    queue_name_prefix: Option<String>,
    next_token: Option<String>,
    max_results: Option<Int>,
}

pub async fn list_queues(frontend: &Frontend, call: &Call) -> Result<Response, ApiError> {
    let request: ListQueuesRequest = parse(&call.body)?;
    let page = match request.max_results {
        None => None,
        Some(Int(n)) if (1..=1000).contains(&n) => Some(n as usize),
        Some(Int(n)) => {
            return Err(queue_error(QueueError::invalid_value(
                n,
                "MaxResults",
                "MaxResults must be an integer between 1 and 1000.",
            )));
        }
    };
    let after = match request.next_token.as_deref() {
        None | Some("") => None,
        Some(token) => Some(
            URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .ok_or_else(|| {
                    queue_error(QueueError::invalid_value(
                        token,
                        "NextToken",
                        "Invalid token.",
                    ))
                })?,
        ),
    };
    let prefix = request.queue_name_prefix.unwrap_or_default();
    let own = &call.caller.account.id;
    let limit = page.unwrap_or(LIST_LIMIT);
    // One more than a page tells whether there is a next one.
    let mut names = frontend
        .queues
        .list_queues(own, &prefix, after.as_deref(), limit + 1)
        .await
        .map_err(queue_error)?;
    let more = names.len() > limit;
    names.truncate(limit);
    let urls: Vec<String> = names
        .iter()
        .map(|n| queue_url(call, &QueueRef::new(own, n)))
        .collect();
    let mut body = json!({ "QueueUrls": urls });
    // As SQS: a NextToken only when the caller asked for pages.
    if more
        && page.is_some()
        && let Some(last) = names.last()
    {
        body["NextToken"] = json!(URL_SAFE_NO_PAD.encode(last));
    }
    ok(body)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueUrlRequest {
    queue_url: Option<String>,
}

pub async fn delete_queue(frontend: &Frontend, call: &Call) -> Result<Response, ApiError> {
    let request: QueueUrlRequest = parse(&call.body)?;
    let queue = resolve(call, &request.queue_url)?;
    frontend
        .queues
        .delete_queue(&queue)
        .await
        .map_err(queue_error)?;
    tracing::info!(queue = %queue, "deleted queue");
    frontend.notify_queue(&queue.account_id, &queue.name);
    ok(json!({}))
}

pub async fn purge_queue(frontend: &Frontend, call: &Call) -> Result<Response, ApiError> {
    let request: QueueUrlRequest = parse(&call.body)?;
    let queue = resolve(call, &request.queue_url)?;
    frontend
        .queues
        .purge_queue(&queue)
        .await
        .map_err(queue_error)?;
    ok(json!({}))
}

/// Attributes GetQueueAttributes computes rather than stores.
const COMPUTED: &[&str] = &[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
];

/// Settable attributes GetQueueAttributes may show.
const SETTABLE: &[&str] = &[
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds",
    "MaximumMessageSize",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "Policy",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
];

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueAttributesRequest {
    queue_url: Option<String>,
    attribute_names: Option<Vec<String>>,
}

pub async fn get_queue_attributes(frontend: &Frontend, call: &Call) -> Result<Response, ApiError> {
    let request: GetQueueAttributesRequest = parse(&call.body)?;
    let queue = resolve(call, &request.queue_url)?;
    let names = request.attribute_names.unwrap_or_default();
    for name in &names {
        if name != "All" && !COMPUTED.contains(&name.as_str()) && !SETTABLE.contains(&name.as_str())
        {
            return Err(queue_error(QueueError::InvalidAttributeName(format!(
                "Unknown Attribute {name}."
            ))));
        }
    }
    let all = names.iter().any(|n| n == "All");
    let wanted = |n: &str| all || names.iter().any(|w| w == n);
    let info = frontend
        .queues
        .get_queue(&queue)
        .await
        .map_err(queue_error)?;
    let mut attributes = Map::new();
    for (name, value) in info.settings.to_attributes() {
        if wanted(name) {
            attributes.insert(name.to_owned(), Value::String(value));
        }
    }
    add_computed(frontend, &info, &wanted, &mut attributes).await?;
    if attributes.is_empty() {
        return ok(json!({}));
    }
    ok(json!({ "Attributes": attributes }))
}

async fn add_computed(
    frontend: &Frontend,
    info: &QueueInfo,
    wanted: &(dyn Fn(&str) -> bool + Sync),
    attributes: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let mut put = |name: &str, value: String| {
        if wanted(name) {
            attributes.insert(name.to_owned(), Value::String(value));
        }
    };
    put("QueueArn", info.queue.arn(&frontend.config.region));
    put("CreatedTimestamp", (info.created_ms / 1000).to_string());
    put(
        "LastModifiedTimestamp",
        (info.modified_ms / 1000).to_string(),
    );
    if COMPUTED[..3].iter().any(|n| wanted(n)) {
        let counts = frontend
            .queues
            .counts(&info.queue)
            .await
            .map_err(queue_error)?;
        put("ApproximateNumberOfMessages", counts.visible.to_string());
        put(
            "ApproximateNumberOfMessagesNotVisible",
            counts.in_flight.to_string(),
        );
        put(
            "ApproximateNumberOfMessagesDelayed",
            counts.delayed.to_string(),
        );
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SetQueueAttributesRequest {
    queue_url: Option<String>,
    attributes: Option<StringMap>,
}

pub async fn set_queue_attributes(frontend: &Frontend, call: &Call) -> Result<Response, ApiError> {
    let request: SetQueueAttributesRequest = parse(&call.body)?;
    let queue = resolve(call, &request.queue_url)?;
    let attributes = required(&request.attributes, "Attributes")?;
    if attributes.is_empty() {
        return Err(sqs_error(
            "MissingParameter",
            "The request must contain the parameter Attributes.",
        ));
    }
    frontend
        .queues
        .set_queue_attributes(&queue, attributes)
        .await
        .map_err(queue_error)?;
    ok(json!({}))
}
