//! `Invoke` (`POST /2015-03-31/functions/{name}/invocations`): decode the request, hand
//! it to the worker manager, and answer as Lambda does.
//!
//! - `X-Amz-Invocation-Type`: `RequestResponse` (default) runs the function and answers
//!   200 with its result; `DryRun` checks the request and answers 204.
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
        "Event" => {
            return Err(ApiError::invalid_parameter(
                "Ember does not support asynchronous invocation (InvocationType Event) yet",
            ));
        }
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

/// The function name as the caller gave it, for the log.
fn call_target(call: &Call) -> &str {
    call.segments.get(2).map_or("", String::as_str)
}
