//! Ember's frontend: the one HTTP endpoint every client talks to.
//!
//! # Layout
//! - [`serve`] / [`router`]: the listener and the single entry handler. Every request
//!   goes through the same steps: classify the protocol ([`protocol`]), find the
//!   operation, read the body under that operation's size limit, authenticate it with
//!   SigV4 ([`auth`]), run it, and render errors in the protocol's own shape.
//! - [`lambda`]: the Lambda control-plane API (rest-json, `/2015-03-31/...`).
//! - [`sqs`]: the SQS API (AWS JSON 1.0, `X-Amz-Target: AmazonSQS.*`) over
//!   [`ember_queue::Queues`].
//! - [`admin`]: Ember's own API under `/ember/` (accounts), and the unauthenticated
//!   health check `GET /ember/health`.
//! - [`error`]: [`ApiError`], the AWS-shaped error every handler returns.
//!
//! The frontend parses, authenticates and authorizes; it owns no state of its own beyond
//! a cache of access keys. Records live in the [`ember_store::Store`]; invocations (a
//! later component) will be handed to the worker manager, never run here.

pub mod admin;
pub mod auth;
pub mod error;
pub mod lambda;
pub mod protocol;
pub mod sqs;

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use ember_queue::Queues;
use ember_store::Store;
use ember_store::package::{CodeStore, Limits};
use ember_worker::WorkerManager;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;

pub use error::ApiError;
use protocol::Protocol;

/// Settings of the frontend, resolved once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The region in ARNs (`arn:aws:lambda:<region>:...`).
    pub region: String,
    /// Limits applied to uploaded code packages.
    pub code_limits: Limits,
    /// Concurrent executions per account (Lambda's `ConcurrentExecutions`, default 1000).
    pub account_concurrency_limit: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            region: "us-east-1".to_owned(),
            code_limits: Limits::default(),
            account_concurrency_limit: ember_worker::limits::DEFAULT_ACCOUNT_LIMIT,
        }
    }
}

/// Everything a request handler may use. One per server, shared by all requests.
pub struct Frontend {
    pub store: Arc<dyn Store>,
    pub code: CodeStore,
    pub config: Config,
    /// Places invocations; the frontend never runs them itself.
    pub worker: WorkerManager,
    /// Reserved concurrency and the account limit, enforced on every invocation.
    pub concurrency: lambda::concurrency::Concurrency,
    /// The durable queues behind the SQS API.
    pub queues: Arc<dyn Queues>,
    /// Told about event source mapping changes (the events manager); unset, nobody is.
    pub mapping_events: std::sync::OnceLock<Arc<dyn MappingEvents>>,
    keys: auth::KeyCache,
    /// Held while code packages are stored or collected, so a package is never removed
    /// between a create storing it and the function row that uses it being written.
    code_gc: tokio::sync::Mutex<()>,
    /// Held while a function's resource policy is read, changed and written back.
    pub(crate) policy_edits: tokio::sync::Mutex<()>,
}

impl Frontend {
    pub fn new(
        store: Arc<dyn Store>,
        code: CodeStore,
        config: Config,
        worker: WorkerManager,
        queues: Arc<dyn Queues>,
    ) -> Self {
        Frontend {
            queues,
            concurrency: lambda::concurrency::Concurrency::new(config.account_concurrency_limit),
            store,
            code,
            config,
            worker,
            mapping_events: std::sync::OnceLock::new(),
            keys: auth::KeyCache::default(),
            code_gc: tokio::sync::Mutex::new(()),
            policy_edits: tokio::sync::Mutex::new(()),
        }
    }
}

/// The event pipeline (the events manager), as the frontend sees it: told what changed
/// (the frontend itself never polls; the receiver re-reads the store) and handed
/// asynchronous invocations.
#[async_trait::async_trait]
pub trait MappingEvents: Send + Sync {
    /// A mapping was created, updated or deleted.
    fn mapping_changed(&self, uuid: &str);
    /// A function was created or deleted.
    fn function_changed(&self, account_id: &str, function_name: &str);
    /// A queue was created or deleted (it may be a routing queue).
    fn queue_changed(&self, account_id: &str, queue_name: &str);
    /// Queue an asynchronous invocation; `Ok` once it is durable.
    async fn invoke_async(
        &self,
        function: &ember_store::Function,
        request_id: &str,
        payload: String,
        client_context: Option<String>,
    ) -> Result<(), ember_queue::QueueError>;
}

impl Frontend {
    pub(crate) fn notify_mapping(&self, uuid: &str) {
        if let Some(m) = self.mapping_events.get() {
            m.mapping_changed(uuid);
        }
    }

    pub(crate) fn notify_queue(&self, account_id: &str, queue_name: &str) {
        if let Some(m) = self.mapping_events.get() {
            m.queue_changed(account_id, queue_name);
        }
    }

    pub(crate) fn notify_function(&self, account_id: &str, function_name: &str) {
        if let Some(m) = self.mapping_events.get() {
            m.function_changed(account_id, function_name);
        }
    }
}

/// A request that passed authentication, as handed to a protocol module.
pub struct Call {
    /// Also the `x-amzn-RequestId` of the response (and an invocation's request id).
    pub request_id: String,
    pub caller: auth::Caller,
    pub method: Method,
    /// Percent-decoded path segments.
    pub segments: Vec<String>,
    /// Percent-decoded query parameters, in the order sent.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Call {
    /// The first value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `http://host` as the client addressed us, for URLs we hand back.
    pub fn endpoint(&self) -> String {
        let host = self
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    }
}

/// The axum router: one fallback handler, because routing depends on more than the path.
pub fn router(frontend: Arc<Frontend>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(frontend)
}

/// Serve on `listener` until `shutdown` completes, then let in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    frontend: Arc<Frontend>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let queues = frontend.queues.clone();
    let shutdown = async move {
        shutdown.await;
        // In-flight long polls end now instead of holding the shutdown for up to 20 s.
        queues.close_waits();
    };
    axum::serve(listener, router(frontend))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn handle(State(frontend): State<Arc<Frontend>>, req: Request<Body>) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    if req.method() == Method::GET && req.uri().path() == admin::HEALTH_PATH {
        return admin::health(&frontend);
    }
    let protocol = Protocol::classify(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut response = match dispatch(&frontend, protocol, req, &request_id).await {
        Ok(response) => response,
        Err(error) => {
            if error.is_client_error() {
                tracing::debug!(%method, %path, %error, "request refused");
            } else {
                tracing::warn!(%method, %path, %error, %request_id, "request failed");
            }
            protocol.render_error(&error)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    response
}

async fn dispatch(
    frontend: &Frontend,
    protocol: Protocol,
    req: Request<Body>,
    request_id: &str,
) -> Result<Response, ApiError> {
    let segments = protocol::decode_segments(req.uri().path())?;
    let route = protocol.route(req.method(), &segments, req.headers())?;
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body, route.body_limit).await?;
    let request = ember_sigv4::Request {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        body: &body,
    };
    let caller = auth::authenticate(frontend, &request, protocol.signing_name()).await?;
    let call = Call {
        request_id: request_id.to_owned(),
        caller,
        segments,
        query: protocol::decode_query(parts.uri.query().unwrap_or(""))?,
        method: parts.method,
        headers: parts.headers,
        body,
    };
    protocol.execute(frontend, route.operation, call).await
}

/// Read the whole body, refusing as soon as it passes `limit` bytes: a declared
/// `Content-Length` over the limit is refused before reading anything, and a body that
/// lies about its length is cut off when it crosses the limit.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(limit)),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            format!("Could not read the request body: {e}"),
        )),
    }
}

/// A JSON response with the given status.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An empty response with the given status.
pub fn empty_response(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}
