//! The HTTP client behind every subcommand except `serve`: finds the server and the
//! credentials the way AWS tools do, signs each request with SigV4, and turns AWS-shaped
//! error responses into [`ApiFailure`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use http::{HeaderValue, Method, Request};
use serde_json::Value;

use crate::config::{DEFAULT_DATA_DIR, DEFAULT_LISTEN, DEFAULT_REGION};
use crate::credentials::{self, KeyPair};
use crate::serve::CREDENTIALS_FILE;

/// An error response from the server, in AWS's terms.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// A raw response.
pub struct Reply {
    pub status: u16,
    /// The AWS error code from `x-amzn-ErrorType`, on errors.
    pub error_type: Option<String>,
    /// `X-Amz-Function-Error` of an Invoke.
    pub function_error: Option<String>,
    /// `X-Amz-Log-Result` of an Invoke, decoded.
    pub log_result: Option<String>,
    /// `X-Ember-Placement` of an Invoke: warm, pooled or cold.
    pub placement: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The error this (non-2xx) reply carries.
    pub fn into_failure(self) -> ApiFailure {
        let value: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        let field = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
        ApiFailure {
            status: self.status,
            code: self
                .error_type
                .unwrap_or_else(|| error_code_from_status(self.status).to_owned()),
            message: field("message")
                .or_else(|| field("Message"))
                .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned()),
        }
    }
}

/// Where to find the server and which key to sign with.
pub struct Client {
    agent: ureq::Agent,
    endpoint: String,
    host: String,
    key: KeyPair,
    region: String,
}

/// Largest response body the CLI reads (a code package download is at most 50 MB zipped).
const MAX_RESPONSE_BYTES: u64 = 128 * 1024 * 1024;

impl Client {
    /// Endpoint: `--endpoint`, else `AWS_ENDPOINT_URL`, else the default listen address.
    /// Credentials: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, else the `AWS_PROFILE`
    /// profile of the shared credentials file, else the data directory's root key file.
    /// Region: `AWS_REGION`, else `AWS_DEFAULT_REGION`, else the server's own.
    pub fn from_env(endpoint: Option<String>, data_dir: Option<PathBuf>) -> Result<Client> {
        let endpoint = endpoint
            .or_else(|| non_empty_env("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("http://{DEFAULT_LISTEN}"));
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let uri: http::Uri = endpoint
            .parse()
            .with_context(|| format!("invalid endpoint URL {endpoint:?}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("the endpoint must be an http:// URL, got {endpoint:?}");
        }
        let host = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .with_context(|| format!("the endpoint {endpoint:?} has no host"))?;
        let data_dir = data_dir
            .or_else(|| non_empty_env("EMBER_DATA_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let key = find_credentials(&data_dir)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let region =
            match non_empty_env("AWS_REGION").or_else(|| non_empty_env("AWS_DEFAULT_REGION")) {
                Some(region) => region,
                None => server_region(&agent, &endpoint),
            };
        Ok(Client {
            agent,
            endpoint,
            host,
            key,
            region,
        })
    }

    /// Send a signed request; `path_and_query` must already be percent-encoded.
    pub fn send(
        &self,
        service: &str,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> Result<Reply> {
        self.send_with(service, method, path_and_query, body, &[])
    }

    /// [`Client::send`] with extra (signed) headers.
    pub fn send_with(
        &self,
        service: &str,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
        extra_headers: &[(&'static str, &str)],
    ) -> Result<Reply> {
        let uri: http::Uri = path_and_query
            .parse()
            .with_context(|| format!("invalid request path {path_and_query:?}"))?;
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, HeaderValue::from_str(&self.host)?);
        if !body.is_empty() {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        for (name, value) in extra_headers {
            headers.insert(*name, HeaderValue::from_str(value)?);
        }
        let signed = ember_sigv4::sign(
            &ember_sigv4::Request {
                method: &method,
                uri: &uri,
                headers: &headers,
                body: &body,
            },
            &ember_sigv4::Credentials {
                access_key_id: &self.key.access_key_id,
                secret_access_key: &self.key.secret_access_key,
            },
            &self.region,
            service,
            time::OffsetDateTime::now_utc(),
        );
        headers.extend(signed);
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.endpoint))
            .body(body)?;
        // ureq sets Host itself from the URI, which is the same value we signed.
        headers.remove(http::header::HOST);
        request.headers_mut().extend(headers);
        let response = self
            .agent
            .run(request)
            .with_context(|| format!("could not reach Ember at {}", self.endpoint))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let error_type =
            header("x-amzn-errortype").map(|v| v.split(':').next().unwrap_or(&v).to_owned());
        let function_error = header("x-amz-function-error");
        let placement = header("x-ember-placement");
        let log_result = header("x-amz-log-result").and_then(|b64| {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(raw).ok()
        });
        let body = response
            .into_body()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .context("reading the response")?;
        Ok(Reply {
            status,
            error_type,
            function_error,
            log_result,
            placement,
            body,
        })
    }

    /// Send a JSON request and parse the JSON answer (or `null` for an empty one). Error
    /// responses become [`ApiFailure`].
    pub fn json(
        &self,
        service: &str,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let reply = self.send(service, method, path_and_query, bytes)?;
        if !(200..300).contains(&reply.status) {
            return Err(reply.into_failure().into());
        }
        if reply.body.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&reply.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&reply.body).into_owned())))
    }
}

/// The region the server signs for, from its health endpoint; the default if it does not
/// say (the signed request that follows then reports any real problem).
fn server_region(agent: &ureq::Agent, endpoint: &str) -> String {
    agent
        .get(format!("{endpoint}/ember/health"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_vec().ok())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|v| v["Region"].as_str().map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_REGION.to_owned())
}

fn error_code_from_status(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        403 => "AccessDenied",
        404 => "NotFound",
        413 => "RequestTooLarge",
        _ => "ServiceError",
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn find_credentials(data_dir: &Path) -> Result<KeyPair> {
    if let (Some(id), Some(secret)) = (
        non_empty_env("AWS_ACCESS_KEY_ID"),
        non_empty_env("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok(KeyPair {
            access_key_id: id,
            secret_access_key: secret,
        });
    }
    if let Some(profile) = non_empty_env("AWS_PROFILE") {
        let path = non_empty_env("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| non_empty_env("HOME").map(|h| Path::new(&h).join(".aws/credentials")))
            .context("AWS_PROFILE is set but neither AWS_SHARED_CREDENTIALS_FILE nor HOME is")?;
        return credentials::read_profile(&path, &profile)?
            .with_context(|| format!("profile {profile:?} has no key pair in {}", path.display()));
    }
    let path = data_dir.join(CREDENTIALS_FILE);
    credentials::read_profile(&path, "default")?.with_context(|| {
        format!(
            "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, \
             or run from where {} exists (the root key `ember serve` writes)",
            path.display()
        )
    })
}
