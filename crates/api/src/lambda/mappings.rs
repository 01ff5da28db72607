//! Event source mappings (SQS queues of the caller's account → functions):
//!
//! - `POST /2015-03-31/event-source-mappings` (CreateEventSourceMapping) → 202
//! - `GET /2015-03-31/event-source-mappings` (ListEventSourceMappings) → 200
//! - `GET /2015-03-31/event-source-mappings/{UUID}` (GetEventSourceMapping) → 200
//! - `PUT /2015-03-31/event-source-mappings/{UUID}` (UpdateEventSourceMapping) → 202
//! - `DELETE /2015-03-31/event-source-mappings/{UUID}` (DeleteEventSourceMapping) → 202
//!
//! The frontend only validates and stores mappings; it then tells the events manager
//! ([`crate::MappingEvents`]), which runs the pollers.

use axum::response::Response;
use ember_events::filter::FilterCriteria;
use ember_queue::{QueueError, QueueRef};
use ember_store::EventSourceMapping;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{existing_function, function_arn, parse_json, resolve};
use crate::{ApiError, Call, Frontend, json_response};

const DEFAULT_BATCH_SIZE: u32 = 10;
const MAX_BATCH_SIZE: u32 = 10_000;
const MAX_BATCH_SIZE_WITHOUT_WINDOW: u32 = 10;
const MAX_BATCHING_WINDOW: u32 = 300;
const MAX_LIST_ITEMS: usize = 100;
const REPORT_BATCH_ITEM_FAILURES: &str = "ReportBatchItemFailures";

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ScalingConfig {
    maximum_concurrency: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Request {
    event_source_arn: Option<String>,
    function_name: Option<String>,
    enabled: Option<bool>,
    batch_size: Option<u32>,
    maximum_batching_window_in_seconds: Option<u32>,
    function_response_types: Option<Vec<String>>,
    scaling_config: Option<ScalingConfig>,
    filter_criteria: Option<Value>,
    starting_position: Option<String>,
}

/// The queue an SQS ARN names, which must be the caller's, in this region.
fn parse_queue_arn(frontend: &Frontend, call: &Call, arn: &str) -> Result<QueueRef, ApiError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", "aws", "sqs", region, account, name] = parts.as_slice() else {
        return Err(ApiError::invalid_parameter(format!(
            "Unsupported event source {arn}: Ember supports SQS queues (arn:aws:sqs:<region>:<account>:<name>)"
        )));
    };
    if *region != frontend.config.region {
        return Err(ApiError::invalid_parameter(format!(
            "The event source {arn} is not in this region ({})",
            frontend.config.region
        )));
    }
    if *account != call.caller.account.id {
        return Err(ApiError::invalid_parameter(format!(
            "The event source {arn} belongs to another account; Ember maps queues of the \
             caller's account only"
        )));
    }
    Ok(QueueRef::new(*account, *name))
}

async fn check_queue(frontend: &Frontend, queue: &QueueRef, arn: &str) -> Result<bool, ApiError> {
    match frontend.queues.get_queue(queue).await {
        Ok(_) => Ok(queue.is_fifo_name()),
        Err(QueueError::QueueDoesNotExist) => Err(ApiError::invalid_parameter(format!(
            "Error occurred while ReceiveMessage. SQS Error Code: \
             AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue \
             ({arn}) does not exist."
        ))),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// The patterns of a request's `FilterCriteria`, checked and compiled as the poller will
/// (`{}`, `{"Filters": []}` or `{"Filters": null}` clear them).
fn filter_patterns(criteria: &Value) -> Result<Vec<String>, ApiError> {
    let filters = match criteria {
        Value::Object(c) => c.get("Filters").unwrap_or(&Value::Null),
        _ => {
            return Err(ApiError::invalid_parameter(
                "FilterCriteria must be an object: {\"Filters\": [{\"Pattern\": \"...\"}]}",
            ));
        }
    };
    let patterns: Vec<String> = match filters {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|f| {
                f.get("Pattern")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        ApiError::invalid_parameter(
                            "Each of FilterCriteria.Filters must be {\"Pattern\": \"<JSON pattern>\"}",
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ApiError::invalid_parameter(
                "FilterCriteria.Filters must be a list",
            ));
        }
    };
    FilterCriteria::compile(&patterns).map_err(|e| ApiError::invalid_parameter(e.to_string()))?;
    Ok(patterns)
}

/// Apply a request's settings to `m` and check the result as Lambda does.
fn apply(m: &mut EventSourceMapping, r: &Request, fifo: bool) -> Result<(), ApiError> {
    if let Some(patterns) = r
        .filter_criteria
        .as_ref()
        .map(filter_patterns)
        .transpose()?
    {
        m.filter_patterns = patterns;
    }
    if r.starting_position.is_some() {
        return Err(ApiError::invalid_parameter(
            "StartingPosition is not valid for an SQS event source",
        ));
    }
    if let Some(enabled) = r.enabled {
        m.enabled = enabled;
    }
    if let Some(n) = r.batch_size {
        m.batch_size = n;
    }
    if let Some(w) = r.maximum_batching_window_in_seconds {
        m.max_batching_window = w;
    }
    if let Some(types) = &r.function_response_types {
        if let Some(bad) = types.iter().find(|t| *t != REPORT_BATCH_ITEM_FAILURES) {
            return Err(ApiError::invalid_parameter(format!(
                "1 validation error detected: Value '[{bad}]' at 'functionResponseTypes' failed \
                 to satisfy constraint: Member must satisfy constraint: [Member must satisfy \
                 enum value set: [ReportBatchItemFailures]]"
            )));
        }
        m.report_batch_item_failures = !types.is_empty();
    }
    if let Some(scaling) = &r.scaling_config {
        m.maximum_concurrency = scaling.maximum_concurrency;
    }
    if !(1..=MAX_BATCH_SIZE).contains(&m.batch_size) {
        return Err(ApiError::invalid_parameter(format!(
            "1 validation error detected: Value '{}' at 'batchSize' failed to satisfy \
             constraint: Member must have value between 1 and {MAX_BATCH_SIZE}",
            m.batch_size
        )));
    }
    if m.max_batching_window > MAX_BATCHING_WINDOW {
        return Err(ApiError::invalid_parameter(format!(
            "1 validation error detected: Value '{}' at 'maximumBatchingWindowInSeconds' \
             failed to satisfy constraint: Member must have value less than or equal to \
             {MAX_BATCHING_WINDOW}",
            m.max_batching_window
        )));
    }
    if fifo && (m.batch_size > MAX_BATCH_SIZE_WITHOUT_WINDOW || m.max_batching_window > 0) {
        return Err(ApiError::invalid_parameter(
            "Batch size for FIFO queues must be between 1 and 10, and \
             MaximumBatchingWindowInSeconds is not supported for FIFO queues",
        ));
    }
    if m.batch_size > MAX_BATCH_SIZE_WITHOUT_WINDOW && m.max_batching_window == 0 {
        return Err(ApiError::invalid_parameter(
            "Maximum batch window in seconds must be greater than 0 if maximum batch size is \
             greater than 10",
        ));
    }
    if let Some(c) = m.maximum_concurrency
        && !(2..=1000).contains(&c)
    {
        return Err(ApiError::invalid_parameter(format!(
            "1 validation error detected: Value '{c}' at 'scalingConfig.maximumConcurrency' \
             failed to satisfy constraint: Member must have value between 2 and 1000"
        )));
    }
    Ok(())
}

fn configuration(frontend: &Frontend, m: &EventSourceMapping, state: &str) -> Value {
    let region = &frontend.config.region;
    let mut v = json!({
        "UUID": m.uuid,
        "BatchSize": m.batch_size,
        "MaximumBatchingWindowInSeconds": m.max_batching_window,
        "EventSourceArn": QueueRef::new(&m.account_id, &m.queue_name).arn(region),
        "FunctionArn": function_arn(frontend, &m.account_id, &m.function_name),
        "LastModified": m.last_modified_ms as f64 / 1000.0,
        "State": state,
        "StateTransitionReason": "USER_INITIATED",
        "FunctionResponseTypes": if m.report_batch_item_failures {
            json!([REPORT_BATCH_ITEM_FAILURES])
        } else {
            json!([])
        },
        "EventSourceMappingArn": format!(
            "arn:aws:lambda:{region}:{}:event-source-mapping:{}", m.account_id, m.uuid
        ),
    });
    if let Some(c) = m.maximum_concurrency {
        v["ScalingConfig"] = json!({ "MaximumConcurrency": c });
    }
    if !m.filter_patterns.is_empty() {
        let filters: Vec<Value> = m
            .filter_patterns
            .iter()
            .map(|p| json!({ "Pattern": p }))
            .collect();
        v["FilterCriteria"] = json!({ "Filters": filters });
    }
    v
}

fn state(m: &EventSourceMapping) -> &'static str {
    if m.enabled { "Enabled" } else { "Disabled" }
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn mapping_not_found() -> ApiError {
    ApiError::not_found("The resource you requested does not exist.")
}

/// The caller's mapping with this UUID (another account's is not found).
async fn own_mapping(
    frontend: &Frontend,
    call: &Call,
    uuid: &str,
) -> Result<EventSourceMapping, ApiError> {
    match frontend.store.get_event_source_mapping(uuid).await? {
        Some(m) if m.account_id == call.caller.account.id => Ok(m),
        _ => Err(mapping_not_found()),
    }
}

pub async fn create(frontend: &Frontend, call: &Call) -> Result<Response, ApiError> {
    let r: Request = parse_json(&call.body)?;
    let arn = r
        .event_source_arn
        .as_deref()
        .ok_or_else(|| ApiError::invalid_parameter("EventSourceArn is required for SQS"))?;
    let raw = r
        .function_name
        .as_deref()
        .ok_or_else(|| ApiError::invalid_parameter("FunctionName is required"))?;
    let queue = parse_queue_arn(frontend, call, arn)?;
    let name = existing_function(frontend, call, raw, "CreateEventSourceMapping").await?;
    let fifo = check_queue(frontend, &queue, arn).await?;
    let own = &call.caller.account.id;
    let mut m = EventSourceMapping {
        uuid: uuid::Uuid::new_v4().to_string(),
        account_id: own.clone(),
        function_name: name,
        queue_name: queue.name.clone(),
        batch_size: DEFAULT_BATCH_SIZE,
        max_batching_window: 0,
        enabled: true,
        report_batch_item_failures: false,
        maximum_concurrency: None,
        filter_patterns: Vec::new(),
        last_modified_ms: now_ms(),
    };
    apply(&mut m, &r, fifo)?;
    let existing = frontend.store.list_event_source_mappings(Some(own)).await?;
    if let Some(dup) = existing
        .iter()
        .find(|e| e.queue_name == m.queue_name && e.function_name == m.function_name)
    {
        return Err(ApiError::conflict(format!(
            "An event source mapping with SQS arn (\" {arn} \") and function (\" {} \") already \
             exists. Please update or delete the existing mapping with UUID {}",
            m.function_name, dup.uuid
        )));
    }
    frontend.store.put_event_source_mapping(&m).await?;
    tracing::info!(account = %own, uuid = %m.uuid, function = %m.function_name,
        queue = %m.queue_name, "created event source mapping");
    frontend.notify_mapping(&m.uuid);
    Ok(json_response(
        StatusCode::ACCEPTED,
        &configuration(
            frontend,
            &m,
            if m.enabled { "Creating" } else { "Disabled" },
        ),
    ))
}

pub async fn get(frontend: &Frontend, call: &Call, uuid: &str) -> Result<Response, ApiError> {
    let m = own_mapping(frontend, call, uuid).await?;
    Ok(json_response(
        StatusCode::OK,
        &configuration(frontend, &m, state(&m)),
    ))
}

pub async fn list(frontend: &Frontend, call: &Call) -> Result<Response, ApiError> {
    let own = &call.caller.account.id;
    let queue = match call.query_param("EventSourceArn") {
        Some(arn) => Some(parse_queue_arn(frontend, call, arn)?),
        None => None,
    };
    let function = match call.query_param("FunctionName") {
        Some(raw) => Some(resolve(frontend, call, raw, "ListEventSourceMappings")?),
        None => None,
    };
    let limit = match call.query_param("MaxItems") {
        None => MAX_LIST_ITEMS,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => n.min(MAX_LIST_ITEMS),
            _ => {
                return Err(ApiError::invalid_parameter(format!(
                    "1 validation error detected: Value '{n}' at 'maxItems' failed to satisfy \
                     constraint: Member must have value between 1 and 10000"
                )));
            }
        },
    };
    let marker = call.query_param("Marker");
    let all = frontend.store.list_event_source_mappings(Some(own)).await?;
    let mut matching = all.iter().filter(|m| {
        queue.as_ref().is_none_or(|q| q.name == m.queue_name)
            && function.as_ref().is_none_or(|f| *f == m.function_name)
            && marker.is_none_or(|after| m.uuid.as_str() > after)
    });
    let page: Vec<&EventSourceMapping> = matching.by_ref().take(limit).collect();
    let mut body = json!({
        "EventSourceMappings": page
            .iter()
            .map(|m| configuration(frontend, m, state(m)))
            .collect::<Vec<_>>(),
    });
    if matching.next().is_some()
        && let Some(last) = page.last()
    {
        body["NextMarker"] = json!(last.uuid);
    }
    Ok(json_response(StatusCode::OK, &body))
}

pub async fn update(frontend: &Frontend, call: &Call, uuid: &str) -> Result<Response, ApiError> {
    let r: Request = parse_json(&call.body)?;
    if r.event_source_arn.is_some() {
        return Err(ApiError::invalid_parameter(
            "EventSourceArn cannot be changed; create a new event source mapping",
        ));
    }
    let mut m = own_mapping(frontend, call, uuid).await?;
    if let Some(raw) = r.function_name.as_deref() {
        m.function_name =
            existing_function(frontend, call, raw, "UpdateEventSourceMapping").await?;
    }
    let fifo = QueueRef::new(&m.account_id, &m.queue_name).is_fifo_name();
    apply(&mut m, &r, fifo)?;
    m.last_modified_ms = now_ms();
    frontend.store.put_event_source_mapping(&m).await?;
    tracing::info!(uuid = %m.uuid, enabled = m.enabled, "updated event source mapping");
    frontend.notify_mapping(&m.uuid);
    let state = if m.enabled { "Enabled" } else { "Disabled" };
    Ok(json_response(
        StatusCode::ACCEPTED,
        &configuration(frontend, &m, state),
    ))
}

pub async fn delete(frontend: &Frontend, call: &Call, uuid: &str) -> Result<Response, ApiError> {
    let m = own_mapping(frontend, call, uuid).await?;
    if !frontend.store.delete_event_source_mapping(uuid).await? {
        return Err(mapping_not_found());
    }
    tracing::info!(uuid = %m.uuid, "deleted event source mapping");
    frontend.notify_mapping(&m.uuid);
    Ok(json_response(
        StatusCode::ACCEPTED,
        &configuration(frontend, &m, "Deleting"),
    ))
}
