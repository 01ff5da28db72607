//! Errors as callers see them: an AWS error code, an HTTP status and a message.
//!
//! Every failure that leaves the frontend is an [`ApiError`]. The protocol module that
//! handled the request decides the wire shape (rest-json today: the
//! `x-amzn-ErrorType` header plus a JSON body). Internal details (paths, database
//! errors) are logged, never sent.

use http::StatusCode;

/// An error in AWS's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// The AWS error code, e.g. `ResourceNotFoundException`.
    pub code: &'static str,
    pub message: String,
    /// The `Reason` member some errors carry (`TooManyRequestsException`).
    pub reason: Option<&'static str>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code,
            self.status.as_u16(),
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            reason: None,
        }
    }

    /// 429 `TooManyRequestsException` with its `Reason` (a Lambda `ThrottleReason`).
    pub fn too_many_requests(reason: &'static str) -> Self {
        ApiError {
            reason: Some(reason),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequestsException",
                "Rate Exceeded.",
            )
        }
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            message,
        )
    }

    pub fn invalid_request_content(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            message,
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "ResourceConflictException", message)
    }

    pub fn precondition_failed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailedException",
            message,
        )
    }

    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AccessDeniedException", message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            format!("Request must be smaller than {limit} bytes for this operation"),
        )
    }

    pub fn unknown_operation() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "The requested operation is not recognized by this endpoint",
        )
    }

    /// Something failed inside Ember. The detail is logged with the request id; the caller
    /// gets a generic `ServiceException`.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            "Ember encountered an internal error; the request may be retried",
        )
    }

    pub fn is_client_error(&self) -> bool {
        self.status.is_client_error()
    }
}

impl From<ember_sigv4::AuthError> for ApiError {
    fn from(e: ember_sigv4::AuthError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN);
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<ember_store::StoreError> for ApiError {
    fn from(e: ember_store::StoreError) -> Self {
        ApiError::internal(e)
    }
}
