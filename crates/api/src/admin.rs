//! Ember's own API, under `/ember/`: what AWS has no API for.
//!
//! - `GET  /ember/health` — unauthenticated liveness check.
//! - `POST /ember/v1/accounts` `{"Name": "..."}` — create an account (root only); answers
//!   `{"AccountId", "AccessKeyId", "SecretAccessKey"}` with 201.
//! - `GET  /ember/v1/accounts` — list accounts (root only).
//! - `GET  /ember/v1/pool`, `PUT /ember/v1/pool/{runtime}` — the warming pool (root only).
//! - `GET  /ember/v1/metrics` — the node's histograms in Prometheus' text format (root
//!   only): `ember_poll_to_handler_seconds`, `ember_send_to_handler_seconds`.
//!
//! Requests are SigV4-signed with the service name `ember`; errors are rest-json, as in
//! Lambda.

use axum::response::Response;
use ember_store::StoreError;
use ember_store::model::format_timestamp;
use http::{Method, StatusCode};
use serde::Deserialize;

use crate::protocol::{Operation, Route};
use crate::{ApiError, Call, Frontend, json_response};

pub const HEALTH_PATH: &str = "/ember/health";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    CreateAccount,
    ListAccounts,
    PoolStatus,
    SetPoolTarget(String),
    Metrics,
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::CreateAccount => "CreateAccount",
            Op::ListAccounts => "ListAccounts",
            Op::PoolStatus => "GetPool",
            Op::SetPoolTarget(_) => "SetPoolTarget",
            Op::Metrics => "GetMetrics",
        }
    }
}

pub fn route(method: &Method, segments: &[String]) -> Result<Route, ApiError> {
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let op = match (method, segs.as_slice()) {
        (&Method::POST, ["ember", "v1", "accounts"]) => Op::CreateAccount,
        (&Method::GET, ["ember", "v1", "accounts"]) => Op::ListAccounts,
        (&Method::GET, ["ember", "v1", "pool"]) => Op::PoolStatus,
        (&Method::GET, ["ember", "v1", "metrics"]) => Op::Metrics,
        (&Method::PUT, ["ember", "v1", "pool", runtime]) => {
            Op::SetPoolTarget((*runtime).to_owned())
        }
        _ => return Err(ApiError::unknown_operation()),
    };
    Ok(Route {
        operation: Operation::Admin(op),
        body_limit: 64 * 1024,
    })
}

/// `GET /ember/health`. Also tells clients the region to sign for.
pub fn health(frontend: &Frontend) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "Status": "ok",
            "Version": env!("CARGO_PKG_VERSION"),
            "Region": frontend.config.region,
        }),
    )
}

pub async fn execute(frontend: &Frontend, op: Op, call: Call) -> Result<Response, ApiError> {
    if !call.caller.account.is_root {
        return Err(ApiError::access_denied(format!(
            "User: {} is not authorized to perform: ember:{}; only the root account administers Ember",
            call.caller.principal_arn(),
            op.name()
        )));
    }
    match op {
        Op::CreateAccount => create_account(frontend, &call).await,
        Op::ListAccounts => list_accounts(frontend).await,
        Op::PoolStatus => Ok(pool_status(frontend)),
        Op::SetPoolTarget(runtime) => set_pool_target(frontend, &call, &runtime),
        Op::Metrics => Ok(metrics(frontend)),
    }
}

/// `GET /ember/v1/metrics`: Prometheus' text exposition format, version 0.0.4.
fn metrics(frontend: &Frontend) -> Response {
    let mut response = Response::new(axum::body::Body::from(frontend.worker.metrics().render()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAccountRequest {
    #[serde(rename = "Name")]
    name: String,
}

/// Account names: 1–64 characters of letters, digits, `-`, `_` and `.`.
fn valid_account_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

async fn create_account(frontend: &Frontend, call: &Call) -> Result<Response, ApiError> {
    let request: CreateAccountRequest = serde_json::from_slice(&call.body).map_err(|e| {
        ApiError::invalid_request_content(format!("Could not parse request body into json: {e}"))
    })?;
    if !valid_account_name(&request.name) {
        return Err(ApiError::invalid_parameter(
            "Account name must be 1 to 64 characters of letters, digits, '-', '_' and '.'",
        ));
    }
    let (account, key) = match frontend.store.create_account(&request.name, false).await {
        Ok(created) => created,
        Err(StoreError::AlreadyExists(_)) => {
            return Err(ApiError::conflict(format!(
                "An account named {} already exists",
                request.name
            )));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(account = %account.id, name = %account.name, "created account");
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({
            "AccountId": account.id,
            "AccessKeyId": key.access_key_id,
            "SecretAccessKey": key.secret_access_key,
        }),
    ))
}

async fn list_accounts(frontend: &Frontend) -> Result<Response, ApiError> {
    let accounts: Vec<_> = frontend
        .store
        .list_accounts()
        .await?
        .into_iter()
        .map(|a| {
            serde_json::json!({
                "AccountId": a.id,
                "Name": a.name,
                "Root": a.is_root,
                "Created": format_timestamp(a.created),
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "Accounts": accounts }),
    ))
}

/// `GET /ember/v1/pool`: the warming pool per runtime, sandboxes per function, and the
/// memory they hold.
fn pool_status(frontend: &Frontend) -> Response {
    let status = frontend.worker.status();
    let runtimes: Vec<_> = status
        .runtimes
        .iter()
        .map(
            |r| serde_json::json!({ "Runtime": r.runtime, "Pooled": r.pooled, "Target": r.target }),
        )
        .collect();
    let functions: Vec<_> = status
        .functions
        .iter()
        .map(|f| {
            serde_json::json!({
                "AccountId": f.account_id, "FunctionName": f.name, "Idle": f.idle, "Busy": f.busy,
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "Runtimes": runtimes,
            "Functions": functions,
            "MemoryBytes": status.memory_bytes,
            "MemoryBudget": { "Reserved": status.budget_used_bytes, "Limit": status.budget_bytes },
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPoolTargetRequest {
    #[serde(rename = "Size")]
    size: u32,
}

/// Largest pool one runtime may ask for (each pooled sandbox holds memory).
const MAX_POOL_TARGET: u32 = 1000;

/// `PUT /ember/v1/pool/{runtime}` `{"Size": n}`.
fn set_pool_target(frontend: &Frontend, call: &Call, runtime: &str) -> Result<Response, ApiError> {
    let request: SetPoolTargetRequest = serde_json::from_slice(&call.body).map_err(|e| {
        ApiError::invalid_request_content(format!("Could not parse request body into json: {e}"))
    })?;
    if request.size > MAX_POOL_TARGET {
        return Err(ApiError::invalid_parameter(format!(
            "Size must be between 0 and {MAX_POOL_TARGET}"
        )));
    }
    frontend
        .worker
        .set_pool_target(runtime, request.size as usize)
        .map_err(|_| {
            ApiError::invalid_parameter(format!(
                "{runtime} cannot be pooled on this node: pools exist for the Python and Node.js \
                 runtimes it has"
            ))
        })?;
    tracing::info!(runtime, size = request.size, "warming pool target changed");
    Ok(pool_status(frontend))
}
