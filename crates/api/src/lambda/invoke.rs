//! `Invoke` (`POST /2015-03-31/functions/{name}/invocations`): decode the request, hand
//! it to the worker manager, and answer as Lambda does.
//!
//! - `X-Amz-Invocation-Type`: `RequestResponse` (default) runs the function and answers
//!   200 with its result; `Event` queues the event durably and answers 202 (the events
//!   manager runs it, with retries and destinations; payloads up to 1 MB); `DryRun`
//!   checks the request and answers 204.
//! - `X-Amz-Log-Type: Tail` adds `X-Amz-Log-Result`: base64 of the log's last 4 KB.
//! - A function error (an exception, a timeout, a crash, out of memory) is still 200, with
//!   `X-Amz-Function-Error: Unhandled` and Lambda's error payload.
//! - Over the function's reserved concurrency (or the account's unreserved pool): 429
//!   `TooManyRequestsException` with its `Reason` (see [`super::concurrency`]).

use axum::body::Body;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use ember_worker::{InvokeError, InvokeRequest, Placement, logs};
use http::{HeaderValue, StatusCode};

use crate::{ApiError, Call, Frontend, empty_response};

/// Lambda's synchronous payload limit (request and response).
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
/// Lambda's asynchronous payload limit.
pub const MAX_ASYNC_PAYLOAD_BYTES: usize = 1_048_576;

fn header<'a>(call: &'a Call, name: &str) -> Option<&'a str> {
    call.headers.get(name).and_then(|v| v.to_str().ok())
}

pub async fn invoke(frontend: &Frontend, call: &Call, raw: &str) -> Result<Response, ApiError> {
    let function = super::lookup(frontend, call, raw).await?;
    let invocation_type = header(call, "x-amz-invocation-type").unwrap_or("RequestResponse");
    let tail = match header(call, "x-amz-log-type") {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => {
            return Err(ApiError::invalid_parameter(format!(
                "Unsupported log type {}: use None or Tail",
                super::names::truncate_for_message(other)
            )));
        }
    };
    let client_context = match header(call, "x-amz-client-context") {
        None => None,
        Some(encoded) => Some(
            STANDARD
                .decode(encoded)
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .ok_or_else(|| {
                    ApiError::invalid_request_content(
                        "Client context must be a valid Base64-encoded JSON object.",
                    )
                })?,
        ),
    };
    // Lambda takes an empty payload as `{}`; anything else must be JSON.
    let payload = if call.body.iter().all(u8::is_ascii_whitespace) {
        Bytes::from_static(b"{}")
    } else {
        if serde_json::from_slice::<serde::de::IgnoredAny>(&call.body).is_err() {
            return Err(ApiError::invalid_request_content(
                "Could not parse request body into json: the payload is not valid JSON",
            ));
        }
        call.body.clone()
    };
    match invocation_type {
        "RequestResponse" => {}
        "DryRun" => return Ok(empty_response(StatusCode::NO_CONTENT)),
        "Event" => return invoke_async(frontend, call, &function, payload, client_context).await,
        other => {
            return Err(ApiError::invalid_parameter(format!(
                "Unsupported invocation type {}: use RequestResponse, Event or DryRun",
                super::names::truncate_for_message(other)
            )));
        }
    }

    // One execution slot (reserved concurrency, else the account's unreserved pool), held
    // until the worker returns; dropped with this future if the client goes away.
    let permit = frontend
        .concurrency
        .acquire(frontend.store.as_ref(), &function)
        .await?;
    let outcome = frontend
        .worker
        .invoke(InvokeRequest {
            function,
            request_id: call.request_id.clone(),
            payload,
            client_context,
            event: None,
        })
        .await
        .map_err(|e| match e {
            InvokeError::RuntimeUnavailable(runtime) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "InvalidRuntimeException",
                format!("The runtime {runtime} is not available on this Ember node"),
            ),
            InvokeError::OutOfCapacity => {
                ApiError::too_many_requests("ConcurrentInvocationLimitExceeded")
            }
            InvokeError::Sandbox(detail) | InvokeError::Entrypoint(detail) => {
                ApiError::internal(detail)
            }
        })?;
    drop(permit);
    let placement = match outcome.placement {
        Placement::Warm => "warm",
        Placement::Pooled => "pooled",
        Placement::Cold => "cold",
    };
    tracing::info!(function = %call_target(call), placement, error = outcome.function_error, "invoked");

    let mut response = Response::new(Body::from(outcome.payload));
    let h = response.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        "x-amz-executed-version",
        HeaderValue::from_static("$LATEST"),
    );
    // Where the invocation ran: an idle sandbox of the function, a pooled one, or a new one.
    h.insert("x-ember-placement", HeaderValue::from_static(placement));
    if outcome.function_error {
        h.insert(
            "x-amz-function-error",
            HeaderValue::from_static("Unhandled"),
        );
    }
    if tail {
        let encoded = STANDARD.encode(logs::tail(&outcome.log));
        if let Ok(v) = HeaderValue::from_str(&encoded) {
            h.insert("x-amz-log-result", v);
        }
    }
    Ok(response)
}

/// Queue the event; 202 once it is durable.
async fn invoke_async(
    frontend: &Frontend,
    call: &Call,
    function: &ember_store::Function,
    payload: Bytes,
    client_context: Option<String>,
) -> Result<Response, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLargeException",
            format!(
                "Request must be smaller than {MAX_ASYNC_PAYLOAD_BYTES} bytes for the InvokeAsync \
                 operation"
            ),
        )
    };
    if payload.len() > MAX_ASYNC_PAYLOAD_BYTES {
        return Err(too_large());
    }
    let pipeline = frontend.mapping_events.get().ok_or_else(|| {
        ApiError::internal("asynchronous invocation is not available: no event pipeline runs")
    })?;
    // Checked as JSON above, so it is UTF-8.
    let payload = String::from_utf8(payload.to_vec())
        .map_err(|_| ApiError::invalid_request_content("The payload is not valid UTF-8"))?;
    pipeline
        .invoke_async(function, &call.request_id, payload, client_context)
        .await
        .map_err(|e| match e {
            ember_queue::QueueError::InvalidParameterValue(m) if m.contains("shorter than") => {
                too_large()
            }
            ember_queue::QueueError::InvalidParameterValue(m)
            | ember_queue::QueueError::InvalidMessageContents(m) => {
                ApiError::invalid_request_content(format!("The payload cannot be queued: {m}"))
            }
            e => ApiError::internal(e),
        })?;
    tracing::info!(function = %function.name, request_id = %call.request_id, "queued an asynchronous invocation");
    Ok(empty_response(StatusCode::ACCEPTED))
}

/// The function name as the caller gave it, for the log.
fn call_target(call: &Call) -> &str {
    call.segments.get(2).map_or("", String::as_str)
}
