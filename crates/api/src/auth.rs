//! Who is calling: SigV4 authentication against the store's access keys.
//!
//! The signature is recomputed from the secret we hold (see `ember_sigv4`); a request
//! whose key we do not know is `UnrecognizedClientException`, one whose signature does
//! not match is `InvalidSignatureException`. Authorization (what the caller may touch)
//! is decided by each operation from [`Caller::account`].

use std::collections::HashMap;
use std::sync::RwLock;

use ember_store::{AccessKey, Account};
use http::StatusCode;

use crate::{ApiError, Frontend};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: Account,
    /// The key that signed the request (used to presign URLs handed back to it).
    pub key: AccessKey,
}

impl Caller {
    /// The principal ARN used in authorization messages.
    pub fn principal_arn(&self) -> String {
        format!("arn:aws:iam::{}:root", self.account.id)
    }
}

/// Access keys already looked up. Keys are only ever added or re-keyed by the process
/// itself at start-up, so a cached entry stays valid for the life of the server.
#[derive(Default)]
pub(crate) struct KeyCache(RwLock<HashMap<String, (AccessKey, Account)>>);

impl KeyCache {
    fn get(&self, id: &str) -> Option<(AccessKey, Account)> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    fn insert(&self, entry: (AccessKey, Account)) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.0.access_key_id.clone(), entry);
    }
}

/// Authenticate a request whose body has been read in full. `service` is the signing
/// name the protocol requires in the credential scope.
pub async fn authenticate(
    frontend: &Frontend,
    request: &ember_sigv4::Request<'_>,
    service: &str,
) -> Result<Caller, ApiError> {
    let claim = ember_sigv4::parse(request)?;
    if claim.scope.service != service {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            format!("Credential should be scoped to correct service: '{service}'. "),
        ));
    }
    if claim.scope.region != frontend.config.region {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to a valid region, not '{}'. This Ember serves \
                 region '{}'.",
                claim.scope.region, frontend.config.region
            ),
        ));
    }
    let (key, account) = match frontend.keys.get(&claim.access_key_id) {
        Some(found) => found,
        None => {
            let found = frontend
                .store
                .access_key(&claim.access_key_id)
                .await?
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::FORBIDDEN,
                        "UnrecognizedClientException",
                        "The security token included in the request is invalid.",
                    )
                })?;
            frontend.keys.insert(found.clone());
            found
        }
    };
    ember_sigv4::verify(
        &claim,
        request,
        &key.secret_access_key,
        time::OffsetDateTime::now_utc(),
    )?;
    Ok(Caller { account, key })
}
