//! Asynchronous invocation settings: Put/Update/Get/Delete/ListFunctionEventInvokeConfig
//! (`/2019-09-25/functions/{name}/event-invoke-config`).
//!
//! `MaximumRetryAttempts` 0–2 (default 2), `MaximumEventAgeInSeconds` 60–21600 (default
//! 21600), and `DestinationConfig` `OnSuccess`/`OnFailure`: an SQS queue or a function of
//! the caller's account, which must exist. Put replaces the whole configuration; Update
//! changes only the fields given. The events manager reads it for every event.

use axum::response::Response;
use ember_store::{Destination, DestinationConfig, EventInvokeConfig, FunctionSetting};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::config::in_range;
use super::{existing_function, function_arn, not_found, parse_json};
use crate::{ApiError, Call, Frontend, empty_response, json_response};

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Request {
    maximum_retry_attempts: Option<i64>,
    maximum_event_age_in_seconds: Option<i64>,
    destination_config: Option<DestinationRequest>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct DestinationRequest {
    on_success: Option<DestinationTarget>,
    on_failure: Option<DestinationTarget>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct DestinationTarget {
    destination: Option<String>,
}

/// Check a destination ARN: a queue or function of the caller's account that exists.
pub(crate) async fn check_destination(
    frontend: &Frontend,
    call: &Call,
    arn: &str,
) -> Result<(), ApiError> {
    let own = &call.caller.account.id;
    let shown = super::names::truncate_for_message(arn);
    if let Some((region, queue)) = ember_queue::QueueRef::from_arn(arn) {
        if region != frontend.config.region || &queue.account_id != own {
            return Err(ApiError::invalid_parameter(format!(
                "The destination {shown} must be in this region and the caller's account"
            )));
        }
        return match frontend.queues.get_queue(&queue).await {
            Ok(_) => Ok(()),
            Err(ember_queue::QueueError::QueueDoesNotExist) => Err(ApiError::invalid_parameter(
                format!("The destination queue {shown} does not exist"),
            )),
            Err(e) => Err(ApiError::internal(e)),
        };
    }
    if arn.starts_with("arn:aws:lambda:") {
        let r = super::names::FunctionRef::parse(arn)
            .map_err(|_| ApiError::invalid_parameter(format!("Invalid destination {shown}")))?;
        if r.account_id.as_deref() != Some(own.as_str())
            || r.qualifier.as_deref().is_some_and(|q| q != "$LATEST")
        {
            return Err(ApiError::invalid_parameter(format!(
                "The destination function {shown} must be a function of the caller's account"
            )));
        }
        if frontend.store.get_function(own, &r.name).await?.is_none() {
            return Err(ApiError::invalid_parameter(format!(
                "The destination function {shown} does not exist"
            )));
        }
        return Ok(());
    }
    Err(ApiError::invalid_parameter(format!(
        "Unsupported destination {shown}: Ember delivers to SQS queues and Lambda functions"
    )))
}

fn target(t: Option<DestinationTarget>) -> Option<Destination> {
    t.map(|t| Destination {
        destination: t.destination.filter(|d| !d.is_empty()),
    })
}

/// Apply the request's fields to `config` (all of them for Put, the given ones for Update).
async fn apply(
    frontend: &Frontend,
    call: &Call,
    request: Request,
    config: &mut EventInvokeConfig,
) -> Result<(), ApiError> {
    if let Some(n) = request.maximum_retry_attempts {
        config.maximum_retry_attempts = Some(in_range(n, "maximumRetryAttempts", 0, 2)?);
    }
    if let Some(n) = request.maximum_event_age_in_seconds {
        config.maximum_event_age_in_seconds =
            Some(in_range(n, "maximumEventAgeInSeconds", 60, 21_600)?);
    }
    if let Some(d) = request.destination_config {
        let d = DestinationConfig {
            on_success: target(d.on_success),
            on_failure: target(d.on_failure),
        };
        let mut checked = EventInvokeConfig {
            destination_config: Some(d),
            ..EventInvokeConfig::default()
        };
        for arn in [checked.on_success(), checked.on_failure()]
            .into_iter()
            .flatten()
        {
            check_destination(frontend, call, arn).await?;
        }
        config.destination_config = checked.destination_config.take();
    }
    Ok(())
}

fn shape(frontend: &Frontend, call: &Call, name: &str, c: &EventInvokeConfig, at_ms: i64) -> Value {
    let dest = |d: Option<&str>| match d {
        Some(d) => json!({ "Destination": d }),
        None => json!({}),
    };
    json!({
        "LastModified": at_ms as f64 / 1000.0,
        "FunctionArn": format!("{}:$LATEST", function_arn(frontend, &call.caller.account.id, name)),
        "MaximumRetryAttempts": c.retries(),
        "MaximumEventAgeInSeconds": c.max_age_secs(),
        "DestinationConfig": { "OnSuccess": dest(c.on_success()), "OnFailure": dest(c.on_failure()) },
    })
}

async fn stored(
    frontend: &Frontend,
    call: &Call,
    name: &str,
) -> Result<Option<(EventInvokeConfig, i64)>, ApiError> {
    let own = &call.caller.account.id;
    match frontend
        .store
        .get_function_setting(own, name, FunctionSetting::EventInvokeConfig)
        .await?
    {
        None => Ok(None),
        Some(doc) => Ok(Some((
            serde_json::from_str(&doc.body).map_err(ApiError::internal)?,
            doc.modified_ms,
        ))),
    }
}

fn missing(frontend: &Frontend, call: &Call, name: &str) -> ApiError {
    ApiError::not_found(format!(
        "The function {}:$LATEST doesn't have an EventInvokeConfig",
        function_arn(frontend, &call.caller.account.id, name)
    ))
}

async fn save(
    frontend: &Frontend,
    call: &Call,
    name: &str,
    config: &EventInvokeConfig,
) -> Result<Response, ApiError> {
    let body = serde_json::to_string(config).map_err(ApiError::internal)?;
    let own = &call.caller.account.id;
    frontend
        .store
        .put_function_setting(own, name, FunctionSetting::EventInvokeConfig, Some(&body))
        .await
        .map_err(|e| match e {
            ember_store::StoreError::NotFound(_) => not_found(&function_arn(frontend, own, name)),
            e => e.into(),
        })?;
    let (config, at) = stored(frontend, call, name)
        .await?
        .ok_or_else(|| missing(frontend, call, name))?;
    Ok(json_response(
        StatusCode::OK,
        &shape(frontend, call, name, &config, at),
    ))
}

pub async fn put(frontend: &Frontend, call: &Call, raw: &str) -> Result<Response, ApiError> {
    let name = existing_function(frontend, call, raw, "PutFunctionEventInvokeConfig").await?;
    let request: Request = parse_json(&call.body)?;
    let mut config = EventInvokeConfig::default();
    apply(frontend, call, request, &mut config).await?;
    save(frontend, call, &name, &config).await
}

pub async fn update(frontend: &Frontend, call: &Call, raw: &str) -> Result<Response, ApiError> {
    let name = existing_function(frontend, call, raw, "UpdateFunctionEventInvokeConfig").await?;
    let request: Request = parse_json(&call.body)?;
    let mut config = stored(frontend, call, &name)
        .await?
        .map(|(c, _)| c)
        .unwrap_or_default();
    apply(frontend, call, request, &mut config).await?;
    save(frontend, call, &name, &config).await
}

pub async fn get(frontend: &Frontend, call: &Call, raw: &str) -> Result<Response, ApiError> {
    let name = existing_function(frontend, call, raw, "GetFunctionEventInvokeConfig").await?;
    let (config, at) = stored(frontend, call, &name)
        .await?
        .ok_or_else(|| missing(frontend, call, &name))?;
    Ok(json_response(
        StatusCode::OK,
        &shape(frontend, call, &name, &config, at),
    ))
}

pub async fn list(frontend: &Frontend, call: &Call, raw: &str) -> Result<Response, ApiError> {
    let name = existing_function(frontend, call, raw, "ListFunctionEventInvokeConfigs").await?;
    let configs: Vec<Value> = stored(frontend, call, &name)
        .await?
        .map(|(c, at)| shape(frontend, call, &name, &c, at))
        .into_iter()
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "FunctionEventInvokeConfigs": configs }),
    ))
}

pub async fn delete(frontend: &Frontend, call: &Call, raw: &str) -> Result<Response, ApiError> {
    let name = existing_function(frontend, call, raw, "DeleteFunctionEventInvokeConfig").await?;
    let own = &call.caller.account.id;
    let existed = frontend
        .store
        .put_function_setting(own, &name, FunctionSetting::EventInvokeConfig, None)
        .await?;
    if !existed {
        return Err(missing(frontend, call, &name));
    }
    Ok(empty_response(StatusCode::NO_CONTENT))
}
