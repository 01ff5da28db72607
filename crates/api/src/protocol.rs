//! Which AWS protocol a request speaks, and the operation it names.
//!
//! One listener serves every API. A request is classified by what it says about
//! itself: Ember's own API lives under `/ember/`, SQS (AWS JSON 1.0) is recognised by its
//! `X-Amz-Target: AmazonSQS.*` header, and rest-json services by their dated path prefix
//! (`/2015-03-31/...` for Lambda). Other protocols (rest-xml S3 by the SigV4 scope) slot
//! in here as new variants; adding one is adding a module plus a line in
//! [`Protocol::classify`].

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, Request};
use percent_encoding::percent_decode_str;

use crate::{ApiError, Call, Frontend, admin, json_response, lambda, sqs};

/// The protocols this endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Ember's own rest-json API under `/ember/`.
    Admin,
    /// The Lambda control plane (rest-json).
    Lambda,
    /// SQS (AWS JSON 1.0, operation in `X-Amz-Target`).
    Sqs,
    /// Nothing we recognise.
    Unknown,
}

/// An operation, resolved before the body is read or the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Admin(admin::Op),
    Lambda(lambda::Op),
    Sqs(sqs::Op),
}

/// What the dispatcher needs to know about an operation before running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub operation: Operation,
    /// Largest body accepted, in bytes.
    pub body_limit: usize,
}

impl Protocol {
    pub fn classify(req: &Request<Body>) -> Protocol {
        let path = req.uri().path();
        if path == "/ember" || path.starts_with("/ember/") {
            Protocol::Admin
        } else if sqs::owns(req.headers()) {
            Protocol::Sqs
        } else if lambda::owns_path(path) {
            Protocol::Lambda
        } else {
            Protocol::Unknown
        }
    }

    /// The service name a SigV4 credential scope must carry for this protocol.
    pub fn signing_name(self) -> &'static str {
        match self {
            Protocol::Admin => "ember",
            Protocol::Sqs => "sqs",
            Protocol::Lambda | Protocol::Unknown => "lambda",
        }
    }

    pub fn route(
        self,
        method: &Method,
        segments: &[String],
        headers: &HeaderMap,
    ) -> Result<Route, ApiError> {
        match self {
            Protocol::Admin => admin::route(method, segments),
            Protocol::Lambda => lambda::route(method, segments),
            Protocol::Sqs => sqs::route(method, headers),
            Protocol::Unknown => Err(ApiError::unknown_operation()),
        }
    }

    pub async fn execute(
        self,
        frontend: &Frontend,
        operation: Operation,
        call: Call,
    ) -> Result<Response, ApiError> {
        match operation {
            Operation::Admin(op) => admin::execute(frontend, op, call).await,
            Operation::Lambda(op) => lambda::execute(frontend, op, call).await,
            Operation::Sqs(op) => sqs::execute(frontend, op, call).await,
        }
    }

    /// The error in this protocol's wire shape. rest-json (Lambda, Ember): the code in the
    /// `x-amzn-ErrorType` header, and `{"Type": "User"|"Service", "message": ...}` (plus
    /// `"Reason"` when the error has one). SQS: see [`sqs::render_error`].
    pub fn render_error(self, error: &ApiError) -> Response {
        if self == Protocol::Sqs {
            return sqs::render_error(error);
        }
        let kind = if error.is_client_error() {
            "User"
        } else {
            "Service"
        };
        let mut body = serde_json::json!({ "Type": kind, "message": error.message });
        if let Some(reason) = error.reason {
            body["Reason"] = reason.into();
        }
        let mut response = json_response(error.status, &body);
        response
            .headers_mut()
            .insert("x-amzn-errortype", HeaderValue::from_static(error.code));
        response
    }
}

/// Split a raw path into percent-decoded segments. The leading `/` yields no segment and
/// a trailing `/` is ignored, so `/2015-03-31/functions/` and `/2015-03-31/functions`
/// are the same.
pub fn decode_segments(path: &str) -> Result<Vec<String>, ApiError> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    trimmed.split('/').map(decode).collect()
}

/// Parse a raw query string into percent-decoded pairs (`+` stays `+`, as AWS does).
pub fn decode_query(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

fn decode(s: &str) -> Result<String, ApiError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ApiError::invalid_request_content("The request URI is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_query() {
        assert_eq!(
            decode_segments("/2015-03-31/functions/arn%3Aaws%3Alambda/").unwrap(),
            ["2015-03-31", "functions", "arn:aws:lambda"]
        );
        assert!(decode_segments("/").unwrap().is_empty());
        assert_eq!(
            decode_query("MaxItems=5&Marker=a%2Bb+c&flag").unwrap(),
            [
                ("MaxItems".to_string(), "5".to_string()),
                ("Marker".to_string(), "a+b+c".to_string()),
                ("flag".to_string(), String::new())
            ]
        );
        assert!(decode_segments("/%FF").is_err());
    }
}
