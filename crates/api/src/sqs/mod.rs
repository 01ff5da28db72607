//! The SQS API, in the AWS JSON 1.0 protocol that current SDKs use: `POST /` with
//! `Content-Type: application/x-amz-json-1.0` and `X-Amz-Target: AmazonSQS.<Operation>`,
//! shapes as in botocore's `sqs/2012-11-05` model, SigV4 scope service `sqs`.
//!
//! This module only parses, checks and renders; queue semantics live behind
//! [`ember_queue::Queues`]. Queues belong to the caller's account: a queue URL
//! (`http://<host>/<account>/<name>`) naming another account is `QueueDoesNotExist`,
//! exactly as a missing queue, so accounts cannot probe each other's queue names.
//!
//! Errors are rendered as SQS renders them ([`render_error`]): HTTP 400 (403 for a few),
//! `{"__type": "com.amazonaws.sqs#<Shape>", "message": ...}`, and the header
//! `x-amzn-query-error: <legacy code>;Sender`. SDKs take the legacy code (e.g.
//! `AWS.SimpleQueueService.NonExistentQueue`) as the error code users match on, and
//! botocore maps the shape name to the modeled exception (`QueueDoesNotExist`).
//!
//! Not implemented: the older query (XML) protocol; permissions, tags and message-move
//! tasks (they answer `UnsupportedOperation`); `ReceiveRequestAttemptId` (accepted and
//! ignored: a retried FIFO receive gets fresh messages, not the same ones); the 60-second
//! wait before a deleted queue's name can be reused (it can be at once).

mod messages;
mod queues;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::response::Response;
use ember_queue::{QueueError, QueueRef};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::protocol::{Operation, Route};
use crate::{ApiError, Call, Frontend};

/// `X-Amz-Target` values of SQS requests start with this.
pub const TARGET_PREFIX: &str = "AmazonSQS.";
/// Content type of requests and responses.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
/// Largest request body: a 1 MiB batch, JSON-escaped (up to 3 bytes per byte for
/// non-ASCII text, 4/3 for base64 binary), with room for the envelope.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Most entries in a batch request.
pub const MAX_BATCH_ENTRIES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    CreateQueue,
    GetQueueUrl,
    ListQueues,
    DeleteQueue,
    GetQueueAttributes,
    SetQueueAttributes,
    PurgeQueue,
    SendMessage,
    SendMessageBatch,
    ReceiveMessage,
    DeleteMessage,
    DeleteMessageBatch,
    ChangeMessageVisibility,
    ChangeMessageVisibilityBatch,
    /// An SQS operation Ember does not implement (permissions, tags, message moves).
    Unsupported(&'static str),
}

const UNSUPPORTED: &[&str] = &[
    "AddPermission",
    "RemovePermission",
    "TagQueue",
    "UntagQueue",
    "ListQueueTags",
    "ListDeadLetterSourceQueues",
    "StartMessageMoveTask",
    "CancelMessageMoveTask",
    "ListMessageMoveTasks",
];

/// Whether the request is an SQS request (by its `X-Amz-Target`).
pub fn owns(headers: &HeaderMap) -> bool {
    target(headers).is_some()
}

fn target(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix(TARGET_PREFIX))
}

pub fn route(method: &Method, headers: &HeaderMap) -> Result<Route, ApiError> {
    let name = target(headers).unwrap_or_default();
    let op = match name {
        "CreateQueue" => Op::CreateQueue,
        "GetQueueUrl" => Op::GetQueueUrl,
        "ListQueues" => Op::ListQueues,
        "DeleteQueue" => Op::DeleteQueue,
        "GetQueueAttributes" => Op::GetQueueAttributes,
        "SetQueueAttributes" => Op::SetQueueAttributes,
        "PurgeQueue" => Op::PurgeQueue,
        "SendMessage" => Op::SendMessage,
        "SendMessageBatch" => Op::SendMessageBatch,
        "ReceiveMessage" => Op::ReceiveMessage,
        "DeleteMessage" => Op::DeleteMessage,
        "DeleteMessageBatch" => Op::DeleteMessageBatch,
        "ChangeMessageVisibility" => Op::ChangeMessageVisibility,
        "ChangeMessageVisibilityBatch" => Op::ChangeMessageVisibilityBatch,
        other => match UNSUPPORTED.iter().find(|u| **u == other) {
            Some(u) => Op::Unsupported(u),
            None => return Err(unknown_operation(name)),
        },
    };
    if method != Method::POST {
        return Err(unknown_operation(name));
    }
    Ok(Route {
        operation: Operation::Sqs(op),
        body_limit: MAX_REQUEST_BYTES,
    })
}

fn unknown_operation(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "UnknownOperationException",
        format!("The requested operation {name} is not recognized by SQS (send it with POST)"),
    )
}

pub async fn execute(frontend: &Frontend, op: Op, call: Call) -> Result<Response, ApiError> {
    match op {
        Op::CreateQueue => queues::create_queue(frontend, &call).await,
        Op::GetQueueUrl => queues::get_queue_url(frontend, &call).await,
        Op::ListQueues => queues::list_queues(frontend, &call).await,
        Op::DeleteQueue => queues::delete_queue(frontend, &call).await,
        Op::GetQueueAttributes => queues::get_queue_attributes(frontend, &call).await,
        Op::SetQueueAttributes => queues::set_queue_attributes(frontend, &call).await,
        Op::PurgeQueue => queues::purge_queue(frontend, &call).await,
        Op::SendMessage => messages::send_message(frontend, &call).await,
        Op::SendMessageBatch => messages::send_message_batch(frontend, &call).await,
        Op::ReceiveMessage => messages::receive_message(frontend, &call).await,
        Op::DeleteMessage => messages::delete_message(frontend, &call).await,
        Op::DeleteMessageBatch => messages::delete_message_batch(frontend, &call).await,
        Op::ChangeMessageVisibility => messages::change_message_visibility(frontend, &call).await,
        Op::ChangeMessageVisibilityBatch => {
            messages::change_message_visibility_batch(frontend, &call).await
        }
        Op::Unsupported(name) => Err(sqs_error(
            "UnsupportedOperation",
            format!("Ember does not implement the SQS operation {name}."),
        )),
    }
}

/// An SQS error with HTTP status 400.
pub(crate) fn sqs_error(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// The API error for a queue error (storage failures are logged, not shown).
pub(crate) fn queue_error(e: QueueError) -> ApiError {
    match e {
        QueueError::Storage(_) => ApiError::internal(e),
        QueueError::PurgeQueueInProgress(_) => {
            ApiError::new(StatusCode::FORBIDDEN, e.code(), e.to_string())
        }
        e => sqs_error(e.code(), e.to_string()),
    }
}

/// The shape name (`__type`) and legacy query code (`x-amzn-query-error`) of an error.
fn wire_codes(code: &str) -> (String, Option<String>) {
    let sqs =
        |shape: &str, query: &str| (format!("com.amazonaws.sqs#{shape}"), Some(query.to_owned()));
    let coral = |shape: &str, query: Option<&str>| {
        (
            format!("com.amazon.coral.service#{shape}"),
            query.map(str::to_owned),
        )
    };
    match code {
        "QueueDoesNotExist" => sqs(code, "AWS.SimpleQueueService.NonExistentQueue"),
        "QueueNameExists" => sqs(code, "QueueAlreadyExists"),
        "InvalidParameterValue" => sqs("InvalidParameterValueException", code),
        "MissingParameter" => sqs("MissingRequiredParameterException", code),
        "MessageNotInflight"
        | "TooManyEntriesInBatchRequest"
        | "EmptyBatchRequest"
        | "BatchEntryIdsNotDistinct"
        | "BatchRequestTooLong"
        | "InvalidBatchEntryId"
        | "PurgeQueueInProgress"
        | "UnsupportedOperation"
        | "QueueDeletedRecently" => sqs(code, &format!("AWS.SimpleQueueService.{code}")),
        "UnrecognizedClientException" => coral(code, Some("InvalidClientTokenId")),
        "InvalidSignatureException" => coral(code, Some("SignatureDoesNotMatch")),
        "IncompleteSignatureException" => coral(code, Some("IncompleteSignature")),
        "MissingAuthenticationTokenException" => coral(code, Some("MissingAuthenticationToken")),
        "AccessDeniedException" => coral(code, Some("AccessDenied")),
        "ServiceException" => sqs("InternalError", "InternalError"),
        "UnknownOperationException" | "SerializationException" | "RequestTooLargeException" => {
            coral(code, None)
        }
        _ => sqs(code, code),
    }
}

/// The query code a batch entry's failure carries (the code SDK users match on).
fn entry_code(e: &QueueError) -> String {
    wire_codes(e.code())
        .1
        .unwrap_or_else(|| e.code().to_owned())
}

/// An error in SQS's JSON 1.0 shape.
pub fn render_error(error: &ApiError) -> Response {
    let (shape, query) = wire_codes(error.code);
    let body = serde_json::json!({ "__type": shape, "message": error.message });
    let mut response = json(error.status, &body);
    if let Some(query) = query {
        let fault = if error.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        if let Ok(v) = HeaderValue::from_str(&format!("{query};{fault}")) {
            response.headers_mut().insert("x-amzn-query-error", v);
        }
    }
    response
}

fn json(status: StatusCode, value: &Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

fn ok(value: Value) -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, &value))
}

/// Decode a request body. Unknown members are ignored, as AWS does; a body that is not
/// JSON of the right shape is a `SerializationException`.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        if (text.contains("surrogate") || text.contains("escape")) && has_surrogate_escape(body) {
            // A lone UTF-16 surrogate in an escaped string: characters SQS refuses.
            return sqs_error(
                "InvalidMessageContents",
                "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | \
                 #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
            );
        }
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            format!("The request body could not be read as this operation's input: {text}"),
        )
    })
}

/// Whether the JSON text holds a `\uD800`–`\uDFFF` escape (a UTF-16 surrogate).
fn has_surrogate_escape(body: &[u8]) -> bool {
    body.windows(4).any(|w| {
        w[0] == b'\\'
            && w[1] == b'u'
            && w[2].eq_ignore_ascii_case(&b'd')
            && matches!(w[3].to_ascii_lowercase(), b'8'..=b'9' | b'a'..=b'f')
    })
}

fn required<'a, T>(value: &'a Option<T>, name: &str) -> Result<&'a T, ApiError> {
    value
        .as_ref()
        .ok_or_else(|| queue_error(QueueError::missing(name)))
}

/// Where queue URLs point: the endpoint the client used.
fn queue_url(call: &Call, queue: &QueueRef) -> String {
    format!("{}/{}/{}", call.endpoint(), queue.account_id, queue.name)
}

/// The queue a `QueueUrl` names, in the caller's account. Accepted forms:
/// `http(s)://<any host>/<account>/<name>`, `/<account>/<name>`, and (as SQS does) a
/// bare queue name.
fn resolve(call: &Call, url: &Option<String>) -> Result<QueueRef, ApiError> {
    let url = required(url, "QueueUrl")?;
    let own = &call.caller.account.id;
    let invalid = || {
        sqs_error(
            "InvalidAddress",
            format!("The address {url} is not valid for this endpoint."),
        )
    };
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => url.as_str(),
    };
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    match parts.as_slice() {
        [name] if !url.contains("://") && !url.starts_with('/') => Ok(QueueRef::new(own, *name)),
        [account, name] => {
            if account != own {
                // Another account's queue: indistinguishable from a missing one.
                return Err(queue_error(QueueError::QueueDoesNotExist));
            }
            Ok(QueueRef::new(own, *name))
        }
        _ => Err(invalid()),
    }
}

/// The common checks of a batch request's entry ids: 1–10 entries, ids of letters,
/// digits, `-` and `_` (at most 80), all distinct.
/// The `Id`s of a batch's entries (a missing one is empty), checked with
/// [`check_batch_ids`].
fn batch_ids<E>(
    entries: &[E],
    id: impl Fn(&E) -> Option<&str>,
    kind: &str,
) -> Result<Vec<String>, ApiError> {
    let ids: Vec<String> = entries
        .iter()
        .map(|e| id(e).unwrap_or_default().to_owned())
        .collect();
    check_batch_ids(ids.iter().map(String::as_str), kind)?;
    Ok(ids)
}

fn check_batch_ids<'a>(
    ids: impl ExactSizeIterator<Item = &'a str>,
    kind: &str,
) -> Result<(), ApiError> {
    let n = ids.len();
    if n == 0 {
        return Err(sqs_error(
            "EmptyBatchRequest",
            format!("There should be at least one {kind} in the request."),
        ));
    }
    if n > MAX_BATCH_ENTRIES {
        return Err(sqs_error(
            "TooManyEntriesInBatchRequest",
            format!(
                "Maximum number of entries per request are {MAX_BATCH_ENTRIES}. You have sent {n}."
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if id.is_empty()
            || id.len() > 80
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(sqs_error(
                "InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and \
                 underscores. It can be at most 80 letters long.",
            ));
        }
        if !seen.insert(id) {
            return Err(sqs_error(
                "BatchEntryIdsNotDistinct",
                format!("Id {id} repeated."),
            ));
        }
    }
    Ok(())
}

/// A batch entry's failure, as `BatchResultErrorEntry`.
fn failed_entry(id: &str, e: &QueueError) -> Value {
    if let QueueError::Storage(_) = e {
        tracing::error!(error = %e, "queue storage failed in a batch entry");
    }
    serde_json::json!({
        "Id": id,
        "SenderFault": e.is_sender_fault(),
        "Code": entry_code(e),
        "Message": match e {
            QueueError::Storage(_) => "Ember encountered an internal error; the entry may be retried".to_owned(),
            e => e.to_string(),
        },
    })
}

/// `Attributes` maps (queue attributes, tags): string values only.
type StringMap = BTreeMap<String, String>;

/// Integers arrive as JSON numbers; parameters are range-checked by the handlers, so
/// they are decoded wide enough to report a bad value as SQS does.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(transparent)]
struct Int(i64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_target() {
        let mut h = HeaderMap::new();
        assert!(!owns(&h));
        h.insert(
            "x-amz-target",
            HeaderValue::from_static("AmazonSQS.SendMessage"),
        );
        assert!(owns(&h));
        let op = |h: &HeaderMap, m: Method| route(&m, h).map(|r| r.operation);
        assert_eq!(op(&h, Method::POST), Ok(Operation::Sqs(Op::SendMessage)));
        assert!(op(&h, Method::GET).is_err());
        h.insert(
            "x-amz-target",
            HeaderValue::from_static("AmazonSQS.TagQueue"),
        );
        assert_eq!(
            op(&h, Method::POST),
            Ok(Operation::Sqs(Op::Unsupported("TagQueue")))
        );
        h.insert("x-amz-target", HeaderValue::from_static("AmazonSQS.Bogus"));
        assert_eq!(
            op(&h, Method::POST).unwrap_err().code,
            "UnknownOperationException"
        );
    }

    #[test]
    fn error_shape() {
        let r = render_error(&queue_error(QueueError::QueueDoesNotExist));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            r.headers()["x-amzn-query-error"],
            "AWS.SimpleQueueService.NonExistentQueue;Sender"
        );
        assert_eq!(r.headers()["content-type"], CONTENT_TYPE);
        assert_eq!(
            wire_codes("QueueDoesNotExist").0,
            "com.amazonaws.sqs#QueueDoesNotExist"
        );
        let r = render_error(&ApiError::internal("boom"));
        assert_eq!(r.headers()["x-amzn-query-error"], "InternalError;Receiver");
        let r = render_error(&queue_error(QueueError::PurgeQueueInProgress("q".into())));
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn lone_surrogates_are_invalid_contents() {
        let body = br#"{"QueueUrl": "q", "MessageBody": "lone \ud800 surrogate"}"#;
        let e = parse::<messages::SendMessageRequest>(body).err().unwrap();
        assert_eq!(e.code, "InvalidMessageContents");
        let paired = br#"{"QueueUrl": "q", "MessageBody": "pair \ud83d\ude00"}"#;
        assert!(parse::<messages::SendMessageRequest>(paired).is_ok());
        let e = parse::<messages::SendMessageRequest>(b"{bad")
            .err()
            .unwrap();
        assert_eq!(e.code, "SerializationException");
    }

    #[test]
    fn batch_ids() {
        let check =
            |ids: &[&str]| check_batch_ids(ids.iter().copied(), "Entry").map_err(|e| e.code);
        assert_eq!(check(&["a", "b-1", "C_2"]), Ok(()));
        assert_eq!(check(&[]), Err("EmptyBatchRequest"));
        assert_eq!(check(&["a"; 11]), Err("TooManyEntriesInBatchRequest"));
        assert_eq!(check(&["a", "a"]), Err("BatchEntryIdsNotDistinct"));
        assert_eq!(check(&["a b"]), Err("InvalidBatchEntryId"));
        assert_eq!(check(&[&"x".repeat(81)]), Err("InvalidBatchEntryId"));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = parse::<messages::SendMessageRequest>(&body);
            let _ = parse::<messages::ReceiveMessageRequest>(&body);
            let _ = parse::<queues::CreateQueueRequest>(&body);
        }
    }
}
