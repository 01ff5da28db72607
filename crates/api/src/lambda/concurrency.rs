//! Reserved concurrency and the account-wide concurrency limit.
//!
//! - `PUT /2017-10-31/functions/{name}/concurrency` (PutFunctionConcurrency)
//!   `{"ReservedConcurrentExecutions": N}` → 200, the same object.
//! - `GET /2019-09-30/functions/{name}/concurrency` (GetFunctionConcurrency) → `{}` or
//!   `{"ReservedConcurrentExecutions": N}`.
//! - `DELETE /2017-10-31/functions/{name}/concurrency` (DeleteFunctionConcurrency) → 204.
//! - `GET /2016-08-19/account-settings` (GetAccountSettings) → `AccountLimit` and
//!   `AccountUsage`.
//!
//! Reservations are durable in the store (and go with their function); enforcement is the
//! in-memory [`ConcurrencyLimiter`], loaded from the store on first use and updated by
//! every change here. [`Concurrency::acquire`] is what Invoke calls before handing an
//! invocation to the worker manager: a 429 `TooManyRequestsException` with Lambda's
//! `Reason` when the function (or the account's unreserved pool) is at its limit.

use std::future::Future;

use axum::response::Response;
use ember_store::{Function, ReserveOutcome, Store, StoreError};
use ember_worker::limits::{ConcurrencyLimiter, Permit};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{existing_function, function_arn, not_found, parse_json, resolve};
use crate::{ApiError, Call, Frontend, empty_response, json_response};

/// Lambda's quota on the code an account stores (75 GB).
const ACCOUNT_CODE_STORAGE: u64 = 80_530_636_800;
/// Lambda's limit on a zip uploaded directly (50 MB).
const CODE_SIZE_ZIPPED: u64 = 52_428_800;

/// The frontend's concurrency state: the limiter, whether it has been loaded from the
/// store, and the lock that orders changes (store write, then limiter) against each other.
pub struct Concurrency {
    limiter: std::sync::Arc<ConcurrencyLimiter>,
    loaded: tokio::sync::OnceCell<()>,
    changes: tokio::sync::Mutex<()>,
}

impl Concurrency {
    pub fn new(account_limit: u32) -> Concurrency {
        Concurrency {
            limiter: std::sync::Arc::new(ConcurrencyLimiter::new(account_limit)),
            loaded: tokio::sync::OnceCell::new(),
            changes: tokio::sync::Mutex::new(()),
        }
    }

    pub fn limiter(&self) -> &ConcurrencyLimiter {
        &self.limiter
    }

    /// The limiter, shared (event source pollers take their permits from it too; call
    /// [`Concurrency::ensure_loaded`] before handing it out).
    pub fn shared_limiter(&self) -> std::sync::Arc<ConcurrencyLimiter> {
        self.limiter.clone()
    }

    /// Load every reservation from the store into the limiter, once. A failed load is
    /// retried by the next caller.
    pub async fn ensure_loaded(&self, store: &dyn Store) -> Result<(), ApiError> {
        self.loaded
            .get_or_try_init(|| async {
                for r in store.list_reserved_concurrency().await? {
                    self.limiter
                        .reserve(&r.account_id, &r.function_name, r.reserved);
                }
                Ok::<(), ApiError>(())
            })
            .await
            .map(|_| ())
    }

    /// Take an execution slot for one synchronous invocation of `function`; dropping the
    /// permit frees it. Throttled: 429 `TooManyRequestsException` with its `Reason`.
    pub async fn acquire(
        &self,
        store: &dyn Store,
        function: &Function,
    ) -> Result<Permit, ApiError> {
        if self.loaded.get().is_none() {
            self.ensure_loaded(store).await?;
        }
        self.limiter
            .try_acquire(&function.account_id, &function.name)
            .map_err(|throttle| ApiError::too_many_requests(throttle.reason()))
    }

    /// Start a change of reservations: loaded first, then serialised with other changes so
    /// the limiter applies them in the order the store did.
    async fn begin_change(
        &self,
        store: &dyn Store,
    ) -> Result<tokio::sync::MutexGuard<'_, ()>, ApiError> {
        self.ensure_loaded(store).await?;
        Ok(self.changes.lock().await)
    }

    /// Delete a function through `delete` while no reservation changes, then forget its
    /// reservation, so a function recreated under the same name starts without one.
    pub async fn deleting_function<T>(
        &self,
        store: &dyn Store,
        account_id: &str,
        name: &str,
        delete: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let _change = self.begin_change(store).await?;
        let deleted = delete.await?;
        self.limiter.unreserve(account_id, name);
        Ok(deleted)
    }
}

/// `Concurrency` of GetFunction's response, when the function has a reservation.
pub async fn of_function(frontend: &Frontend, f: &Function) -> Result<Option<Value>, ApiError> {
    Ok(frontend
        .store
        .get_reserved_concurrency(&f.account_id, &f.name)
        .await?
        .map(|n| json!({ "ReservedConcurrentExecutions": n })))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutFunctionConcurrencyRequest {
    reserved_concurrent_executions: Option<i64>,
}

pub async fn put(frontend: &Frontend, call: &Call, raw: &str) -> Result<Response, ApiError> {
    let request: PutFunctionConcurrencyRequest = parse_json(&call.body)?;
    let name = resolve(frontend, call, raw, "PutFunctionConcurrency")?;
    let own = &call.caller.account.id;
    let reserved = match request.reserved_concurrent_executions {
        None => {
            return Err(ApiError::invalid_parameter(
                "1 validation error detected: Value null at 'reservedConcurrentExecutions' \
                 failed to satisfy constraint: Member must not be null",
            ));
        }
        Some(n) if n < 0 => {
            return Err(ApiError::invalid_parameter(format!(
                "1 validation error detected: Value '{n}' at 'reservedConcurrentExecutions' \
                 failed to satisfy constraint: Member must have value greater than or equal to 0"
            )));
        }
        Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
    };
    let concurrency = &frontend.concurrency;
    let limiter = concurrency.limiter();
    let _change = concurrency.begin_change(frontend.store.as_ref()).await?;
    match frontend
        .store
        .put_reserved_concurrency(own, &name, reserved, limiter.max_reserved_total())
        .await
    {
        Ok(ReserveOutcome::Saved) => limiter.reserve(own, &name, reserved),
        Ok(ReserveOutcome::OverAccountLimit { .. }) => {
            return Err(ApiError::invalid_parameter(format!(
                "Specified ReservedConcurrentExecutions for function decreases account's \
                 UnreservedConcurrentExecution below its minimum value of [{}].",
                limiter.min_unreserved()
            )));
        }
        Err(StoreError::NotFound(_)) => return Err(not_found(&function_arn(frontend, own, &name))),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(account = %own, function = %name, reserved, "set reserved concurrency");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "ReservedConcurrentExecutions": reserved }),
    ))
}

pub async fn get(frontend: &Frontend, call: &Call, raw: &str) -> Result<Response, ApiError> {
    let name = existing_function(frontend, call, raw, "GetFunctionConcurrency").await?;
    let own = &call.caller.account.id;
    let body = match frontend.store.get_reserved_concurrency(own, &name).await? {
        Some(n) => json!({ "ReservedConcurrentExecutions": n }),
        None => json!({}),
    };
    Ok(json_response(StatusCode::OK, &body))
}

pub async fn delete(frontend: &Frontend, call: &Call, raw: &str) -> Result<Response, ApiError> {
    let name = existing_function(frontend, call, raw, "DeleteFunctionConcurrency").await?;
    let own = &call.caller.account.id;
    let concurrency = &frontend.concurrency;
    let _change = concurrency.begin_change(frontend.store.as_ref()).await?;
    frontend
        .store
        .delete_reserved_concurrency(own, &name)
        .await?;
    concurrency.limiter().unreserve(own, &name);
    tracing::info!(account = %own, function = %name, "removed reserved concurrency");
    Ok(empty_response(StatusCode::NO_CONTENT))
}

pub async fn account_settings(frontend: &Frontend, call: &Call) -> Result<Response, ApiError> {
    let usage = frontend
        .store
        .account_usage(&call.caller.account.id)
        .await?;
    let limit = frontend.concurrency.limiter().account_limit();
    let unreserved = u64::from(limit).saturating_sub(usage.reserved_concurrency);
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "AccountLimit": {
                "TotalCodeSize": ACCOUNT_CODE_STORAGE,
                "CodeSizeUnzipped": frontend.config.code_limits.max_unzipped_bytes,
                "CodeSizeZipped": CODE_SIZE_ZIPPED,
                "ConcurrentExecutions": limit,
                "UnreservedConcurrentExecutions": unreserved,
            },
            "AccountUsage": {
                "TotalCodeSize": usage.total_code_size,
                "FunctionCount": usage.function_count,
            },
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_load_from_the_store_once_and_follow_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ember_store::SqliteStore::open(&dir.path().join("ember.db")).unwrap();
        let (a, _) = store.create_account("a", false).await.unwrap();
        let mut f = super::super::tests::sample_function();
        f.account_id = a.id.clone();
        store.create_function(&f).await.unwrap();
        store
            .put_reserved_concurrency(&a.id, &f.name, 0, 900)
            .await
            .unwrap();

        let c = Concurrency::new(1000);
        let e = c.acquire(&store, &f).await.unwrap_err();
        assert_eq!(
            (e.status, e.code, e.reason, e.message.as_str()),
            (
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequestsException",
                Some("ReservedFunctionConcurrentInvocationLimitExceeded"),
                "Rate Exceeded."
            )
        );
        assert_eq!(c.limiter().unreserved_limit(&a.id), 1000);

        let deleted = c
            .deleting_function(&store, &a.id, &f.name, async {
                Ok(store.delete_function(&a.id, &f.name).await?)
            })
            .await
            .unwrap();
        assert!(deleted.is_some());
        store.create_function(&f).await.unwrap();
        let permit = c.acquire(&store, &f).await.unwrap();
        assert_eq!(c.limiter().in_flight(&a.id), (1, 0));
        drop(permit);
        assert_eq!(c.limiter().in_flight(&a.id), (0, 0));
    }

    #[tokio::test]
    async fn throttles_render_with_their_reason() {
        use http_body_util::BodyExt;
        let e = ApiError::too_many_requests("ConcurrentInvocationLimitExceeded");
        let response = crate::protocol::Protocol::Lambda.render_error(&e);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response.headers()["x-amzn-errortype"],
            "TooManyRequestsException"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            json!({"Type": "User", "message": "Rate Exceeded.",
                   "Reason": "ConcurrentInvocationLimitExceeded"})
        );
        // Other errors carry no Reason.
        let response = crate::protocol::Protocol::Lambda.render_error(&ApiError::not_found("x"));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(!String::from_utf8_lossy(&body).contains("Reason"));
    }
}
