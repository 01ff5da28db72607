//! The Lambda Runtime API, served to one sandbox on a listener that lives in the
//! sandbox's network namespace (so the runtime inside reaches it at 127.0.0.1:9001).
//!
//! The host side talks to it through [`RuntimeApi`]: [`RuntimeApi::ready`] resolves when
//! the runtime finished its init (its first `GET .../invocation/next`) or reported an init
//! error; [`RuntimeApi::invoke`] hands one event to the waiting `/next` and resolves with
//! what the runtime posts to `/response` or `/error`. One invocation at a time: a second
//! `invoke` waits until the runtime asks for more work.
//!
//! # Responsiveness
//!
//! An idle runtime is *parked*: its `GET .../invocation/next` (or, pooled,
//! `GET .../ember/assignment`) waits here. The server knows whether a long poll is
//! waiting, and since when the runtime was last active, but a parked request alone does
//! not prove the runtime lives: a stopped or wedged process leaves its request waiting
//! too. So a runtime that sends `Ember-Health-Probe: 1` with its long polls (Ember's
//! shims do) may have one answered with `204 No Content`, and must ask again.
//! [`RuntimeApi::check_responsive`] does that, and reports a runtime that did not come
//! back, or was not parked at all, for longer than a bound.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::{mpsc, oneshot, watch};

/// Largest response (or error) payload a function may return, as in Lambda.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// One event for the runtime.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub payload: Bytes,
    /// When the invocation times out (sent as `Lambda-Runtime-Deadline-Ms`).
    pub deadline: SystemTime,
    pub function_arn: String,
    pub trace_id: Option<String>,
    pub client_context: Option<String>,
    pub cognito_identity: Option<String>,
}

/// What the runtime answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `POST .../response`: the function's result.
    Success(Bytes),
    /// `POST .../error`, or a result Ember refused (too large): Lambda's error payload.
    Error { error_type: String, payload: Bytes },
}

/// A completed invocation.
#[derive(Debug, Clone)]
pub struct Completion {
    pub outcome: Outcome,
    /// When the runtime received the event (the handler starts right after).
    pub dispatched: Instant,
}

/// The runtime reported an init error through `/runtime/init/error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the runtime failed to initialise: {error_type}")]
pub struct InitFailure {
    pub error_type: String,
    pub payload: Bytes,
}

/// Why an idle runtime failed [`RuntimeApi::check_responsive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unresponsive {
    /// It was probed and did not ask again in time: stopped, wedged, or cut off.
    #[error("the runtime did not answer a health probe within {0:?}")]
    Probe(Duration),
    /// It was not waiting for work for longer than the bound (it never came back for
    /// the next event, or its connection is gone).
    #[error("the runtime has not been waiting for work for over {0:?}")]
    NotParked(Duration),
}

/// Header with which a runtime says its long polls may be answered by a probe (204).
pub const PROBE_HEADER: &str = "ember-health-probe";

/// The runtime went away (its connection or the server ended) before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the runtime stopped before answering")]
pub struct RuntimeGone;

#[derive(Debug, Clone)]
enum InitState {
    /// The runtime is starting (a pooled one: not yet asking for its assignment).
    Initializing,
    /// A pooled runtime is booted and waits for its function (`GET .../ember/assignment`).
    Booted,
    /// Init is done: the runtime asked for its first event.
    Ready,
    Failed(InitFailure),
}

/// What a pooled runtime learns when it is given a function: its handler and the
/// function's environment variables (Lambda's and the user's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub handler: String,
    pub env: Vec<(String, String)>,
}

struct Pending {
    invocation: Invocation,
    reply: oneshot::Sender<Completion>,
}

struct Current {
    request_id: String,
    dispatched: Instant,
    reply: oneshot::Sender<Completion>,
}

/// Whether the runtime waits in a long poll, and the state of a health probe.
struct Parking {
    /// Long polls waiting now.
    parked: usize,
    /// The latest long poll accepts a probe ([`PROBE_HEADER`]).
    probeable: bool,
    /// When the runtime last did something: a request arrived, a long poll ended, an
    /// invocation was completed.
    active: Instant,
    /// When a probe answered its long poll; cleared when it parks again.
    probed: Option<Instant>,
}

struct Shared {
    /// Events handed to the runtime so far.
    dispatched: std::sync::atomic::AtomicU64,
    next_rx: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
    /// Until the runtime has taken its assignment (pooled runtimes only).
    assignment_rx: tokio::sync::Mutex<Option<oneshot::Receiver<Assignment>>>,
    current: Mutex<Option<Current>>,
    init: watch::Sender<InitState>,
    parking: Mutex<Parking>,
    /// Answers the parked long polls that accept probes.
    probe: tokio::sync::Notify,
}

impl Shared {
    fn parking(&self) -> std::sync::MutexGuard<'_, Parking> {
        self.parking.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn touch(&self) {
        self.parking().active = Instant::now();
    }
}

/// A long poll waiting in a handler; counted while it lives (hyper drops the handler's
/// future when the runtime's connection closes).
struct Parked<'a>(&'a Shared);

impl<'a> Parked<'a> {
    fn enter(shared: &'a Shared, probeable: bool) -> Parked<'a> {
        let mut parking = shared.parking();
        parking.parked += 1;
        parking.probeable = probeable;
        parking.active = Instant::now();
        parking.probed = None;
        Parked(shared)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        let mut parking = self.0.parking();
        parking.parked -= 1;
        parking.active = Instant::now();
    }
}

fn accepts_probes(headers: &HeaderMap) -> bool {
    headers.get(PROBE_HEADER).is_some_and(|v| v == "1")
}

/// The host's handle on one sandbox's Runtime API server. Dropping it stops the server.
pub struct RuntimeApi {
    shared: Arc<Shared>,
    next_tx: mpsc::Sender<Pending>,
    assignment_tx: Mutex<Option<oneshot::Sender<Assignment>>>,
    init: watch::Receiver<InitState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    /// Serve the Runtime API on `listener` (must be called inside a tokio runtime).
    pub fn serve(listener: std::net::TcpListener) -> std::io::Result<RuntimeApi> {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let (next_tx, next_rx) = mpsc::channel(1);
        let (init_tx, init_rx) = watch::channel(InitState::Initializing);
        let (assignment_tx, assignment_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            dispatched: std::sync::atomic::AtomicU64::new(0),
            next_rx: tokio::sync::Mutex::new(next_rx),
            assignment_rx: tokio::sync::Mutex::new(Some(assignment_rx)),
            current: Mutex::new(None),
            init: init_tx,
            parking: Mutex::new(Parking {
                parked: 0,
                probeable: false,
                active: Instant::now(),
                probed: None,
            }),
            probe: tokio::sync::Notify::new(),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .route("/2018-06-01/runtime/ember/assignment", get(assignment))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            if let Err(e) = axum::serve(listener, app).await {
                tracing::debug!(error = %e, "runtime API server ended");
            }
        });
        Ok(RuntimeApi {
            shared,
            next_tx,
            assignment_tx: Mutex::new(Some(assignment_tx)),
            init: init_rx,
            server,
        })
    }

    /// Wait until a pooled runtime has booted and asks for its function.
    pub async fn booted(&self) -> Result<(), InitFailure> {
        let mut init = self.init.clone();
        loop {
            match &*init.borrow_and_update() {
                InitState::Booted | InitState::Ready => return Ok(()),
                InitState::Failed(failure) => return Err(failure.clone()),
                InitState::Initializing => {}
            }
            if init.changed().await.is_err() {
                return Err(InitFailure {
                    error_type: "Runtime.Unknown".into(),
                    payload: Bytes::new(),
                });
            }
        }
    }

    /// Give a pooled runtime its function. Only once: a runtime serves one function for
    /// its whole life. Returns false if it was already assigned.
    pub fn assign(&self, assignment: Assignment) -> bool {
        let sender = self
            .assignment_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        sender.is_some_and(|tx| tx.send(assignment).is_ok())
    }

    /// Wait until the runtime is initialised (asked for its first event) or failed to.
    pub async fn ready(&self) -> Result<(), InitFailure> {
        let mut init = self.init.clone();
        loop {
            match &*init.borrow_and_update() {
                InitState::Ready => return Ok(()),
                InitState::Failed(failure) => return Err(failure.clone()),
                InitState::Initializing | InitState::Booted => {}
            }
            if init.changed().await.is_err() {
                return Err(InitFailure {
                    error_type: "Runtime.Unknown".into(),
                    payload: Bytes::new(),
                });
            }
        }
    }

    /// How many events the runtime has received. An invocation whose runtime died before
    /// this moved never reached the function, so it may safely run elsewhere.
    pub fn dispatched(&self) -> u64 {
        self.shared
            .dispatched
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether the runtime has finished init.
    pub fn is_ready(&self) -> bool {
        matches!(*self.init.borrow(), InitState::Ready)
    }

    /// The health check of an idle (or pooled) runtime, to be called periodically:
    /// `Err` if it has not been parked in its long poll for longer than `bound`, or did
    /// not come back within `bound` after a probe. Otherwise, if it is parked and accepts
    /// probes, answers its long poll with a probe, which the next call checks.
    ///
    /// Only for a runtime that is not running an invocation and has finished its init
    /// (or pooled boot): it is not parked while it works.
    pub fn check_responsive(&self, bound: Duration) -> Result<(), Unresponsive> {
        let now = Instant::now();
        let mut parking = self.shared.parking();
        if let Some(probed) = parking.probed {
            return match now.duration_since(probed) > bound {
                true => Err(Unresponsive::Probe(bound)),
                false => Ok(()),
            };
        }
        if parking.parked == 0 {
            return match now.duration_since(parking.active) > bound {
                true => Err(Unresponsive::NotParked(bound)),
                false => Ok(()),
            };
        }
        if parking.probeable {
            parking.probed = Some(now);
            drop(parking);
            self.shared.probe.notify_waiters();
        }
        Ok(())
    }

    /// Run one invocation and wait for its answer. The caller enforces the timeout (by
    /// dropping this future and destroying the sandbox).
    pub async fn invoke(&self, invocation: Invocation) -> Result<Completion, RuntimeGone> {
        let (reply, answer) = oneshot::channel();
        self.next_tx
            .send(Pending { invocation, reply })
            .await
            .map_err(|_| RuntimeGone)?;
        answer.await.map_err(|_| RuntimeGone)
    }
}

fn header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

async fn next(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    // Asking for the next event means the previous one is finished: one that was never
    // answered is abandoned, and its caller sees the runtime as gone.
    drop(
        shared
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(),
    );
    shared.init.send_if_modified(|state| {
        if matches!(state, InitState::Initializing | InitState::Booted) {
            *state = InitState::Ready;
            true
        } else {
            false
        }
    });
    let probeable = accepts_probes(&headers);
    let probe = shared.probe.notified();
    tokio::pin!(probe);
    // Registered before the runtime counts as parked, so no probe can be missed.
    probe.as_mut().enable();
    let parked = Parked::enter(&shared, probeable);
    let pending = {
        let mut rx = shared.next_rx.lock().await;
        tokio::select! {
            biased;
            pending = rx.recv() => match pending {
                Some(p) => p,
                None => return StatusCode::GONE.into_response(),
            },
            () = &mut probe, if probeable => return StatusCode::NO_CONTENT.into_response(),
        }
    };
    drop(parked);
    let inv = pending.invocation;
    let deadline_ms = inv
        .deadline
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    let mut response = Response::new(Body::from(inv.payload));
    let h = response.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    header(h, "lambda-runtime-aws-request-id", &inv.request_id);
    header(h, "lambda-runtime-deadline-ms", &deadline_ms.to_string());
    header(h, "lambda-runtime-invoked-function-arn", &inv.function_arn);
    if let Some(v) = &inv.trace_id {
        header(h, "lambda-runtime-trace-id", v);
    }
    if let Some(v) = &inv.client_context {
        header(h, "lambda-runtime-client-context", v);
    }
    if let Some(v) = &inv.cognito_identity {
        header(h, "lambda-runtime-cognito-identity", v);
    }
    shared
        .dispatched
        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    *shared.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Current {
        request_id: inv.request_id,
        dispatched: Instant::now(),
        reply: pending.reply,
    });
    response
}

fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errorType": error_type, "errorMessage": message });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response
}

/// Read a posted payload, at most [`MAX_RESPONSE_BYTES`].
async fn read_payload(request: Request) -> Result<Bytes, ()> {
    http_body_util::Limited::new(request.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| ())
}

/// Complete the current invocation if `id` names it.
fn complete(shared: &Shared, id: &str, outcome: Outcome) -> Response {
    shared.touch();
    let mut current = shared.current.lock().unwrap_or_else(|e| e.into_inner());
    match current.take() {
        Some(c) if c.request_id == id => {
            let _ = c.reply.send(Completion {
                outcome,
                dispatched: c.dispatched,
            });
            (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
        }
        other => {
            *current = other;
            runtime_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestID",
                "Invalid request ID",
            )
        }
    }
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    match read_payload(request).await {
        Ok(body) => complete(&shared, &id, Outcome::Success(body)),
        Err(()) => {
            let message = format!(
                "Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
            );
            let payload = serde_json::json!({
                "errorMessage": message,
                "errorType": "Function.ResponseSizeTooLarge",
            });
            complete(
                &shared,
                &id,
                Outcome::Error {
                    error_type: "Function.ResponseSizeTooLarge".into(),
                    payload: Bytes::from(payload.to_string()),
                },
            );
            runtime_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &message,
            )
        }
    }
}

fn error_type(headers: &HeaderMap) -> String {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Unhandled")
        .to_owned()
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let error_type = error_type(request.headers());
    let payload = read_payload(request).await.unwrap_or_default();
    complete(
        &shared,
        &id,
        Outcome::Error {
            error_type,
            payload,
        },
    )
}

/// `GET .../ember/assignment`: a pooled runtime, booted, waits here for its function.
async fn assignment(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    // Held while waiting: a runtime that was probed asks again and finds it still here.
    let mut slot = shared.assignment_rx.lock().await;
    let Some(rx) = slot.as_mut() else {
        return runtime_error(
            StatusCode::FORBIDDEN,
            "AlreadyAssigned",
            "This runtime already has its function",
        );
    };
    shared.init.send_if_modified(|state| {
        if matches!(state, InitState::Initializing) {
            *state = InitState::Booted;
            true
        } else {
            false
        }
    });
    let probeable = accepts_probes(&headers);
    let probe = shared.probe.notified();
    tokio::pin!(probe);
    probe.as_mut().enable();
    let parked = Parked::enter(&shared, probeable);
    let assigned = tokio::select! {
        biased;
        assigned = rx => assigned,
        () = &mut probe, if probeable => return StatusCode::NO_CONTENT.into_response(),
    };
    drop(parked);
    *slot = None;
    match assigned {
        Ok(a) => {
            let env: serde_json::Map<String, serde_json::Value> = a
                .env
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            let body = serde_json::json!({ "handler": a.handler, "env": env });
            let mut response = Response::new(Body::from(body.to_string()));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(_) => StatusCode::GONE.into_response(),
    }
}

async fn init_error(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    shared.touch();
    let error_type = error_type(request.headers());
    let payload = read_payload(request).await.unwrap_or_default();
    shared.init.send_replace(InitState::Failed(InitFailure {
        error_type,
        payload,
    }));
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}
