//! Resource-based policies: AddPermission (`POST .../policy`), RemovePermission
//! (`DELETE .../policy/{sid}`), GetPolicy (`GET .../policy`).
//!
//! Statements are built as Lambda builds them (principal `arn:aws:iam::<id>:root` for an
//! account id, `{"Service": ...}` for a service, `ArnLike AWS:SourceArn` and
//! `StringEquals AWS:SourceAccount` conditions). They are evaluated by
//! [`ember_store::policy::allows_invoke`] when another account invokes the function and
//! when a routed queue message names it.

use axum::response::Response;
use ember_store::FunctionSetting;
use ember_store::policy::StoredPolicy;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{existing_function, function_arn, parse_json};
use crate::{ApiError, Call, Frontend, empty_response, json_response};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AddPermissionRequest {
    statement_id: Option<String>,
    action: Option<String>,
    principal: Option<String>,
    source_arn: Option<String>,
    source_account: Option<String>,
    event_source_token: Option<String>,
    revision_id: Option<String>,
    #[serde(rename = "PrincipalOrgID")]
    principal_org_id: Option<String>,
    function_url_auth_type: Option<String>,
}

fn required<'a>(v: &'a Option<String>, field: &str) -> Result<&'a str, ApiError> {
    v.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError::invalid_parameter(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: \
             Member must not be null"
        ))
    })
}

fn valid_sid(sid: &str) -> bool {
    (1..=100).contains(&sid.len())
        && sid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn valid_action(action: &str) -> bool {
    action == "*"
        || action == "lambda:*"
        || action
            .strip_prefix("lambda:")
            .is_some_and(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphabetic()))
}

/// Lambda's principal forms: `*`, an account id, an IAM ARN, or a service name.
fn principal(p: &str) -> Result<Value, ApiError> {
    if p == "*" {
        return Ok(json!("*"));
    }
    if p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(json!({ "AWS": format!("arn:aws:iam::{p}:root") }));
    }
    if p.starts_with("arn:aws:iam::") {
        return Ok(json!({ "AWS": p }));
    }
    if p.ends_with(".amazonaws.com") && p.len() > ".amazonaws.com".len() {
        return Ok(json!({ "Service": p }));
    }
    Err(ApiError::invalid_parameter(format!(
        "The provided principal was invalid. Please check the principal and try again: {}",
        super::names::truncate_for_message(p)
    )))
}

/// The policy of `account`'s function `name`, if it has one.
pub(crate) async fn load(
    frontend: &Frontend,
    account: &str,
    name: &str,
) -> Result<Option<StoredPolicy>, ApiError> {
    match frontend
        .store
        .get_function_setting(account, name, FunctionSetting::Policy)
        .await?
    {
        None => Ok(None),
        Some(doc) => Ok(Some(
            serde_json::from_str(&doc.body).map_err(ApiError::internal)?,
        )),
    }
}

fn check_revision(policy: &Option<StoredPolicy>, expected: Option<&str>) -> Result<(), ApiError> {
    if let Some(expected) = expected {
        let current = policy.as_ref().map(|p| p.revision_id.as_str());
        if current != Some(expected) {
            return Err(ApiError::precondition_failed(
                "The Revision Id provided does not match the latest Revision Id. Call the \
                 GetPolicy API to retrieve the latest Revision Id",
            ));
        }
    }
    Ok(())
}

async fn save(
    frontend: &Frontend,
    account: &str,
    name: &str,
    policy: Option<&StoredPolicy>,
) -> Result<(), ApiError> {
    let body = policy
        .map(serde_json::to_string)
        .transpose()
        .map_err(ApiError::internal)?;
    frontend
        .store
        .put_function_setting(account, name, FunctionSetting::Policy, body.as_deref())
        .await?;
    Ok(())
}

pub async fn add(frontend: &Frontend, call: &Call, raw: &str) -> Result<Response, ApiError> {
    let name = existing_function(frontend, call, raw, "AddPermission").await?;
    let request: AddPermissionRequest = parse_json(&call.body)?;
    let sid = required(&request.statement_id, "statementId")?;
    let action = required(&request.action, "action")?;
    let who = required(&request.principal, "principal")?;
    if !valid_sid(sid) {
        return Err(super::config::constraint(
            sid,
            "statementId",
            "Member must satisfy regular expression pattern: ([a-zA-Z0-9-_.]+)",
        ));
    }
    if !valid_action(action) {
        return Err(super::config::constraint(
            action,
            "action",
            "Member must satisfy regular expression pattern: (lambda:[*]|lambda:[a-zA-Z]+|[*])",
        ));
    }
    for (value, what) in [
        (&request.event_source_token, "EventSourceToken"),
        (&request.principal_org_id, "PrincipalOrgID"),
        (&request.function_url_auth_type, "FunctionUrlAuthType"),
    ] {
        if value.is_some() {
            return Err(ApiError::invalid_parameter(format!(
                "Ember does not support {what} in AddPermission"
            )));
        }
    }
    let mut statement = json!({
        "Sid": sid,
        "Effect": "Allow",
        "Principal": principal(who)?,
        "Action": action,
        "Resource": function_arn(frontend, &call.caller.account.id, &name),
    });
    let mut condition = serde_json::Map::new();
    if let Some(arn) = request.source_arn.as_deref().filter(|s| !s.is_empty()) {
        condition.insert("ArnLike".into(), json!({ "AWS:SourceArn": arn }));
    }
    if let Some(account) = request.source_account.as_deref().filter(|s| !s.is_empty()) {
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(super::config::constraint(
                account,
                "sourceAccount",
                "Member must satisfy regular expression pattern: \\d{12}",
            ));
        }
        condition.insert(
            "StringEquals".into(),
            json!({ "AWS:SourceAccount": account }),
        );
    }
    if !condition.is_empty() {
        statement["Condition"] = Value::Object(condition);
    }

    let own = call.caller.account.id.clone();
    let _edit = frontend.policy_edits.lock().await;
    let current = load(frontend, &own, &name).await?;
    check_revision(&current, request.revision_id.as_deref())?;
    let mut policy = current.unwrap_or_default();
    if policy
        .statements()
        .iter()
        .any(|s| s.get("Sid").and_then(Value::as_str) == Some(sid))
    {
        return Err(ApiError::conflict(format!(
            "The statement id ({sid}) provided already exists. Please provide a new statement \
             id, or remove the existing statement."
        )));
    }
    policy.statements_mut().push(statement.clone());
    policy.revision_id = ember_store::model::new_revision_id();
    save(frontend, &own, &name, Some(&policy)).await?;
    tracing::info!(account = %own, function = %name, %sid, "added a permission");
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "Statement": statement.to_string() }),
    ))
}

pub async fn remove(
    frontend: &Frontend,
    call: &Call,
    raw: &str,
    sid: &str,
) -> Result<Response, ApiError> {
    let name = existing_function(frontend, call, raw, "RemovePermission").await?;
    let own = call.caller.account.id.clone();
    let _edit = frontend.policy_edits.lock().await;
    let current = load(frontend, &own, &name).await?;
    check_revision(&current, call.query_param("RevisionId"))?;
    let Some(mut policy) = current else {
        return Err(no_policy());
    };
    let before = policy.statements().len();
    policy
        .statements_mut()
        .retain(|s| s.get("Sid").and_then(Value::as_str) != Some(sid));
    if policy.statements().len() == before {
        return Err(ApiError::not_found(format!(
            "Statement {} is not found in resource policy.",
            super::names::truncate_for_message(sid)
        )));
    }
    policy.revision_id = ember_store::model::new_revision_id();
    let keep = (!policy.statements().is_empty()).then_some(&policy);
    save(frontend, &own, &name, keep).await?;
    tracing::info!(account = %own, function = %name, %sid, "removed a permission");
    Ok(empty_response(StatusCode::NO_CONTENT))
}

fn no_policy() -> ApiError {
    ApiError::not_found("The resource you requested does not exist.")
}

pub async fn get(frontend: &Frontend, call: &Call, raw: &str) -> Result<Response, ApiError> {
    let name = existing_function(frontend, call, raw, "GetPolicy").await?;
    let policy = load(frontend, &call.caller.account.id, &name)
        .await?
        .ok_or_else(no_policy)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "Policy": policy.document.to_string(), "RevisionId": policy.revision_id }),
    ))
}
