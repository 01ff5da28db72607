//! Ember's own API, under `/ember/`: what AWS has no API for.
//!
//! - `GET  /ember/health` — unauthenticated liveness check.
//! - `POST /ember/v1/accounts` `{"Name": "..."}` — create an account (root only); answers
//!   `{"AccountId", "AccessKeyId", "SecretAccessKey"}` with 201.
//! - `GET  /ember/v1/accounts` — list accounts (root only).
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    CreateAccount,
    ListAccounts,
}

pub fn route(method: &Method, segments: &[String]) -> Result<Route, ApiError> {
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let op = match (method, segs.as_slice()) {
        (&Method::POST, ["ember", "v1", "accounts"]) => Op::CreateAccount,
        (&Method::GET, ["ember", "v1", "accounts"]) => Op::ListAccounts,
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
            "User: {} is not authorized to perform: ember:{op:?}; only the root account administers Ember",
            call.caller.principal_arn()
        )));
    }
    match op {
        Op::CreateAccount => create_account(frontend, &call).await,
        Op::ListAccounts => list_accounts(frontend).await,
    }
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
