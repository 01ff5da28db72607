//! Placement: where an invocation runs.
//!
//! Today: an idle warm sandbox of the same function revision if there is one, else a
//! sandbox started cold. A sandbox runs one invocation at a time, belongs to one account
//! for its whole life (its key includes the account), and is destroyed — never reused —
//! after a timeout, a crash, an out-of-memory kill or a failed init. Idle sandboxes are
//! torn down after `idle_timeout`.
//!
//! The warming pool (pre-booted runtimes specialised on demand) slots in between "warm"
//! and "cold" in [`WorkerManager::invoke`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ember_runtime::{Assignment, Invocation, Outcome, RuntimeApi};
use ember_sandbox::{Environment, Sandbox, SandboxSpec};
use ember_store::Function;
use ember_store::package::{CodeStore, Limits};

use crate::budget::{Budget, KeepAlive, Reservation};
use crate::code_cache::CodeCache;
use crate::logs::{self, LogTap, Report};
use crate::metrics::Metrics;
use crate::runtimes::{HostRuntimes, RUNTIME_DIR};

/// Sandbox set-ups in flight per core.
const SETUPS_PER_CORE: usize = 2;
/// How long an invocation waits for a set-up slot before it is throttled.
const SETUP_WAIT: Duration = Duration::from_secs(3);
/// An idle sandbox used more recently than this is not evicted for another function:
/// under sustained load that would only trade one cold start for another.
const EVICT_MIN_IDLE: Duration = Duration::from_secs(1);

/// How long a runtime may take to initialise (Lambda's limit for on-demand init).
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle or pooled runtime must be back in its long poll this soon after a health
/// probe answered it (or after it last did anything): else it is stopped, wedged or cut
/// off, and its sandbox is destroyed. Generous: a busy 2-core machine can leave a runnable
/// process waiting for the CPU for a while.
pub const RESPONSIVE_WITHIN: Duration = Duration::from_secs(2);
/// How often a running invocation checks that its sandbox is still alive.
const LIVENESS_POLL: Duration = Duration::from_millis(5);

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Holds `sandboxes/`, `cache/` (unpacked code) and `runtime/` (the shims).
    pub data_dir: PathBuf,
    pub region: String,
    pub code_limits: Limits,
    /// When idle sandboxes are torn down.
    pub keep_alive: Arc<dyn KeepAlive>,
    /// Memory (the sum of sandboxes' memory limits) this node gives to sandboxes.
    pub memory_budget_bytes: u64,
    /// Warming pool: how many booted, unassigned sandboxes to keep per runtime.
    pub pool_targets: BTreeMap<String, usize>,
}

/// Memory limit of a pooled sandbox until it is assigned (then: the function's).
const POOL_MEMORY_BYTES: u64 = 128 << 20;
/// `/tmp` of pooled sandboxes: Lambda's default; functions asking for more start cold.
const POOL_TMP_MB: u32 = 512;

/// One invocation to place.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    pub function: Function,
    pub request_id: String,
    pub payload: Bytes,
    /// `X-Amz-Client-Context`, already decoded from base64.
    pub client_context: Option<String>,
    /// Set for events that came through a queue: the invocation's latency figures go to
    /// the node's histograms and its REPORT line.
    pub event: Option<crate::metrics::EventTiming>,
}

/// Where an invocation ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// An idle sandbox already running this function revision.
    Warm,
    /// A sandbox from the warming pool (runtime booted), specialised for this function.
    Pooled,
    /// A sandbox created for this invocation.
    Cold,
}

#[derive(Debug, Clone)]
pub struct InvokeResponse {
    /// The function's result, or Lambda's error payload.
    pub payload: Bytes,
    /// Set when `payload` is an error (`X-Amz-Function-Error: Unhandled`).
    pub function_error: bool,
    /// The invocation's log: START, the function's output, END, REPORT.
    pub log: String,
    pub placement: Placement,
    /// For a queued event ([`InvokeRequest::event`]) that reached its handler: how long
    /// it took from retrieval and from its send (also in the histograms and the REPORT
    /// line); `None` otherwise, or when the runtime never took the event (init failure, a
    /// sandbox that died first).
    pub event_latency: Option<logs::EventLatency>,
}

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The function's runtime does not exist on this node.
    #[error("the runtime {0} is not available on this Ember node")]
    RuntimeUnavailable(String),
    /// A sandbox could not be made: a platform failure, not the function's.
    #[error("could not start a sandbox: {0}")]
    Sandbox(String),
    /// The node's memory budget is taken by running sandboxes; nothing idle could be
    /// evicted to make room.
    #[error("this Ember node has no memory left for another sandbox")]
    OutOfCapacity,
    /// The function's own entry point (a `provided` runtime's `bootstrap`) cannot be run:
    /// the function's fault, reported to the caller as `Runtime.InvalidEntrypoint`.
    #[error("the function's entry point cannot be run: {0}")]
    Entrypoint(String),
}

/// One sandbox with its Runtime API and log, ready for an invocation.
struct Worker {
    sandbox: Sandbox,
    api: RuntimeApi,
    log: LogTap,
    last_used: Instant,
    /// The sandbox's memory limit, held against the node's budget while it lives.
    memory: Reservation,
}

/// Idle workers are keyed by account, function and revision: a worker is only ever reused
/// for the same account, and an updated function never runs old code or configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    account_id: String,
    name: String,
    revision_id: String,
}

impl Key {
    fn of(f: &Function) -> Key {
        Key {
            account_id: f.account_id.clone(),
            name: f.name.clone(),
            revision_id: f.revision_id.clone(),
        }
    }
}

struct Inner {
    config: WorkerConfig,
    budget: Budget,
    /// Sandboxes being set up at once (cold starts, specialisations, pool boots): beyond
    /// a few per core, set-ups only slow each other down until they all time out.
    setups: tokio::sync::Semaphore,
    /// Booted, unassigned workers per runtime: they belong to no account yet.
    pool: Mutex<HashMap<String, Vec<Worker>>>,
    pool_targets: Mutex<BTreeMap<String, usize>>,
    /// Wakes the refill task when the pool shrinks or a target changes.
    refill: tokio::sync::Notify,
    /// Invocations running now, per function (for `ember pool`).
    busy: Mutex<HashMap<Key, usize>>,
    /// Set at shutdown: the pool stops refilling.
    closed: std::sync::atomic::AtomicBool,
    /// False while the pool's refill task runs (it finishes its in-flight boots after
    /// `closed` is set, so shutdown waits for it before releasing the environment).
    refill_stopped: std::sync::atomic::AtomicBool,
    env: Environment,
    runtimes: HostRuntimes,
    cache: CodeCache,
    runtime_dir: PathBuf,
    idle: Mutex<HashMap<Key, Vec<Worker>>>,
    next_id: AtomicU64,
    metrics: Metrics,
}

/// The worker manager. Cheap to clone.
#[derive(Clone)]
pub struct WorkerManager {
    inner: Arc<Inner>,
}

/// How a started runtime's init ended.
enum Init {
    /// A worker ready for the invocation, and how long its init took (none if warm).
    Ready(Box<Worker>, Option<Duration>),
    /// The function's init failed: the error payload, and the log so far.
    Failed(Bytes, Vec<u8>),
}

impl WorkerManager {
    /// Set up the data directories, install the runtime shims, and remove what a
    /// previous server process left behind. Blocking.
    pub fn new(
        config: WorkerConfig,
        env: Environment,
        code: CodeStore,
    ) -> std::io::Result<WorkerManager> {
        let cache = CodeCache::open(config.data_dir.join("cache"), code, config.code_limits)?;
        match ember_sandbox::cleanup_stale(&env) {
            Ok(stats) => tracing::info!(?stats, "cleaned up after the previous server"),
            Err(e) => tracing::warn!(error = %e, "could not clean up old sandboxes"),
        }
        let shims = config.data_dir.join("runtime");
        ember_runtime::shims::install(&shims)?;
        let mut runtimes = HostRuntimes::detect();
        runtimes.use_compiled_shims(&shims);
        // Sandboxes bind the shims and the code from published paths: the data directory
        // itself may sit under a directory their unprivileged uids cannot search.
        let runtime_dir = env
            .publish(&shims, "runtime")
            .map_err(std::io::Error::other)?;
        Ok(WorkerManager {
            inner: Arc::new(Inner {
                budget: Budget::new(config.memory_budget_bytes),
                setups: tokio::sync::Semaphore::new(
                    SETUPS_PER_CORE * std::thread::available_parallelism().map_or(1, |n| n.get()),
                ),
                pool: Mutex::new(HashMap::new()),
                pool_targets: Mutex::new(config.pool_targets.clone()),
                refill: tokio::sync::Notify::new(),
                busy: Mutex::new(HashMap::new()),
                closed: std::sync::atomic::AtomicBool::new(false),
                refill_stopped: std::sync::atomic::AtomicBool::new(true),
                config,
                env,
                runtimes,
                cache,
                runtime_dir,
                idle: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                metrics: Metrics::default(),
            }),
        })
    }

    pub fn runtimes(&self) -> &HostRuntimes {
        &self.inner.runtimes
    }

    /// The node's latency histograms (recorded by the components that feed invocations).
    /// A queued event reached its handler at `dispatched`: record (and return) its
    /// retrieved→handler and sent→handler latencies.
    fn record_event_latency(
        &self,
        event: crate::metrics::EventTiming,
        dispatched: Instant,
    ) -> logs::EventLatency {
        let poll_to_handler = dispatched.saturating_duration_since(event.received);
        let dispatched_ms = (std::time::SystemTime::now() - dispatched.elapsed())
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let send_to_handler = Duration::from_millis((dispatched_ms - event.sent_ms).max(0) as u64);
        let metrics = &self.inner.metrics;
        metrics.poll_to_handler.observe(poll_to_handler);
        metrics.send_to_handler.observe(send_to_handler);
        logs::EventLatency {
            poll_to_handler,
            send_to_handler,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Run one invocation to completion (success, function error, timeout or crash).
    pub async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, InvokeError> {
        let f = &request.function;
        let runtime = f.runtime.clone().unwrap_or_default();
        if self.inner.runtimes.get(&runtime).is_none() {
            return Err(InvokeError::RuntimeUnavailable(runtime));
        }
        let key = Key::of(f);
        let _busy = BusyGuard::enter(&self.inner, &key);
        // Placement: warm, else pooled, else cold. A warm sandbox that turns out to have
        // died while idle, before its runtime took the event, is replaced once: the event
        // never reached the function.
        let timeout = Duration::from_secs(u64::from(f.timeout));
        let mut attempts = 0;
        let (mut worker, placement, init_duration, started, result) = loop {
            attempts += 1;
            let (init, placement) = match self.take_idle(&key) {
                Some(worker) => (Init::Ready(Box::new(worker), None), Placement::Warm),
                None => match self.take_pooled(f) {
                    Some(pooled) => (self.specialize(pooled, f).await?, Placement::Pooled),
                    None => (self.start(f).await?, Placement::Cold),
                },
            };
            let (worker, init_duration) = match init {
                Init::Ready(worker, took) => (*worker, took),
                Init::Failed(payload, output) => {
                    let report = Report {
                        duration: Duration::ZERO,
                        memory_size_mb: f.memory_size,
                        max_memory_used_mb: 0,
                        init_duration: None,
                        event_latency: None,
                    };
                    return Ok(InvokeResponse {
                        payload,
                        function_error: true,
                        log: logs::invocation_log(&request.request_id, "$LATEST", &output, &report),
                        placement,
                        event_latency: None,
                    });
                }
            };
            tracing::debug!(function = %f.name, ?placement, "placed");
            let invocation = Invocation {
                request_id: request.request_id.clone(),
                payload: request.payload.clone(),
                deadline: SystemTime::now() + timeout,
                function_arn: f.arn(&self.inner.config.region),
                trace_id: None,
                client_context: request.client_context.clone(),
                cognito_identity: None,
            };
            let dispatched_before = worker.api.dispatched();
            let started = Instant::now();
            let result = tokio::select! {
                answer = worker.api.invoke(invocation) => match answer {
                    Ok(done) => Ended::Answered(done.outcome, done.dispatched),
                    Err(_) => Ended::Died,
                },
                _ = tokio::time::sleep(timeout) => Ended::TimedOut,
                _ = died(&worker.sandbox) => Ended::Died,
            };
            let undelivered =
                matches!(result, Ended::Died) && worker.api.dispatched() == dispatched_before;
            if undelivered && placement == Placement::Warm && attempts < 2 {
                tracing::info!(function = %f.name, "a warm sandbox died while idle; using another");
                destroy(worker);
                continue;
            }
            break (worker, placement, init_duration, started, result);
        };
        let duration = started.elapsed();
        let mut output = worker.log.take().await;
        let id = &request.request_id;
        let dispatched = match &result {
            Ended::Answered(_, at) => Some(*at),
            _ => None,
        };
        let (payload, function_error, reusable) = match result {
            Ended::Answered(Outcome::Success(body), _) => (body, false, true),
            Ended::Answered(Outcome::Error { payload, .. }, _) => (payload, true, true),
            Ended::TimedOut => {
                let message = format!("Task timed out after {:.2} seconds", timeout.as_secs_f64());
                output.extend_from_slice(format!("{} {id} {message}\n", timestamp()).as_bytes());
                (
                    error_payload(
                        "Sandbox.Timedout",
                        &format!("RequestId: {id} Error: {message}"),
                    ),
                    true,
                    false,
                )
            }
            Ended::Died => {
                let (kind, why) = if worker.sandbox.oom_killed() {
                    ("Runtime.OutOfMemory", "signal: killed".to_owned())
                } else {
                    ("Runtime.ExitError", exit_description(&mut worker.sandbox))
                };
                let message = format!("RequestId: {id} Error: Runtime exited with error: {why}");
                output.extend_from_slice(format!("{message}\n{kind}\n").as_bytes());
                (error_payload(kind, &message), true, false)
            }
        };
        let report = Report {
            duration,
            memory_size_mb: f.memory_size,
            max_memory_used_mb: worker
                .sandbox
                .memory_peak_bytes()
                .unwrap_or(0)
                .div_ceil(1 << 20),
            init_duration,
            event_latency: match (request.event, dispatched) {
                (Some(event), Some(at)) => Some(self.record_event_latency(event, at)),
                _ => None,
            },
        };
        let event_latency = report.event_latency;
        let log = logs::invocation_log(id, "$LATEST", &output, &report);
        let reusable = reusable && worker.sandbox.is_alive() && !worker.sandbox.oom_killed();
        if reusable {
            worker.last_used = Instant::now();
            self.put_idle(key, worker);
        } else {
            destroy(worker);
        }
        Ok(InvokeResponse {
            payload,
            function_error,
            log,
            placement,
            event_latency,
        })
    }

    fn take_idle(&self, key: &Key) -> Option<Worker> {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Most recently used first: it is the most likely to still be in the CPU caches,
        // and leaves the others to age out.
        pop_alive(idle.get_mut(key)?)
    }

    fn put_idle(&self, key: Key, worker: Worker) {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.entry(key).or_default().push(worker);
    }

    /// The periodic health check of idle and pooled workers: destroys those the
    /// keep-alive policy retires (idle ones), whose sandbox died, or whose runtime is not
    /// responsive: not parked in its long poll (`GET /next`, or the pooled assignment),
    /// or not back in it after a probe an earlier check sent, by the first check at least
    /// [`RESPONSIVE_WITHIN`] later (see [`RuntimeApi::check_responsive`]). The pool is
    /// refilled. Returns how many went.
    pub fn reap_idle(&self) -> usize {
        let policy = self.inner.config.keep_alive.clone();
        let unhealthy = |w: &Worker| -> bool {
            if !w.sandbox.is_alive() {
                return true;
            }
            match w.api.check_responsive(RESPONSIVE_WITHIN) {
                Ok(()) => false,
                Err(why) => {
                    tracing::warn!(sandbox = w.sandbox.id(), error = %why, "destroying an unresponsive sandbox");
                    true
                }
            }
        };
        let mut expired = Vec::new();
        {
            let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
            for workers in idle.values_mut() {
                let (old, keep): (Vec<Worker>, Vec<Worker>) = workers
                    .drain(..)
                    .partition(|w| policy.retire(w.last_used.elapsed()) || unhealthy(w));
                *workers = keep;
                expired.extend(old);
            }
            idle.retain(|_, workers| !workers.is_empty());
        }
        // Pooled sandboxes that fail are replaced.
        let failed: Vec<Worker> = {
            let mut pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.values_mut()
                .flat_map(|workers| {
                    let (failed, healthy): (Vec<Worker>, Vec<Worker>) =
                        workers.drain(..).partition(unhealthy);
                    *workers = healthy;
                    failed
                })
                .collect()
        };
        if !failed.is_empty() {
            self.inner.refill.notify_one();
        }
        let count = expired.len() + failed.len();
        expired.into_iter().chain(failed).for_each(destroy);
        count
    }

    /// Number of idle sandboxes.
    pub fn idle_count(&self) -> usize {
        let idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.values().map(Vec::len).sum()
    }

    /// Destroy every idle sandbox (at shutdown).
    pub fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.refill.notify_one();
        // Sandboxes the refill task is still booting go first (bounded: a boot takes
        // milliseconds), so nothing is left in the environment released below.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.inner.refill_stopped.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut all: Vec<Worker> = {
            let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.drain().flat_map(|(_, w)| w).collect()
        };
        {
            let mut targets = self
                .inner
                .pool_targets
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            targets.clear();
            let mut pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
            all.extend(pool.drain().flat_map(|(_, w)| w));
        }
        for worker in all {
            if let Err(e) = worker.sandbox.destroy() {
                tracing::warn!(error = %e, "could not destroy a sandbox at shutdown");
            }
        }
        if let Err(e) = self.inner.env.release() {
            tracing::warn!(error = %e, "could not release the sandboxes' mounts");
        }
    }

    /// Start a sandbox for `f` and wait for its runtime to finish init (cold start).
    async fn start(&self, f: &Function) -> Result<Init, InvokeError> {
        let started = Instant::now();
        let _slot = self.setup_slot().await?;
        let memory = self.reserve(u64::from(f.memory_size) << 20)?;
        let inner = self.inner.clone();
        let function = f.clone();
        let spawned = tokio::task::spawn_blocking(move || inner.spawn(&function))
            .await
            .map_err(|e| InvokeError::Sandbox(e.to_string()))?;
        let sandbox = match spawned {
            Ok(sandbox) => sandbox,
            Err(InvokeError::Entrypoint(why)) => {
                let payload = error_payload("Runtime.InvalidEntrypoint", &why);
                return Ok(Init::Failed(payload, format!("{why}\n").into_bytes()));
            }
            Err(e) => return Err(e),
        };
        let worker = attach(sandbox, memory)?;
        Ok(await_init(worker, started).await)
    }

    /// Reserve `bytes` of the memory budget, evicting least-recently-used idle sandboxes
    /// (then pooled ones) while it does not fit.
    fn reserve(&self, bytes: u64) -> Result<Reservation, InvokeError> {
        self.check_room(bytes)?;
        loop {
            if let Some(reservation) = self.inner.budget.try_reserve(bytes) {
                return Ok(reservation);
            }
            if !self.evict_one() {
                return Err(InvokeError::OutOfCapacity);
            }
        }
    }

    /// A slot to set up a sandbox in, waiting at most [`SETUP_WAIT`]; beyond that the
    /// node is overloaded and the invocation is throttled.
    async fn setup_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, InvokeError> {
        match tokio::time::timeout(SETUP_WAIT, self.inner.setups.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(InvokeError::OutOfCapacity),
        }
    }

    /// Fail at once when `bytes` more could not fit even after evicting every idle and
    /// pooled sandbox: evicting them would cost their users and gain nothing.
    fn check_room(&self, bytes: u64) -> Result<(), InvokeError> {
        let evictable: u64 = {
            let idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.values()
                .flatten()
                .filter(|w| w.last_used.elapsed() >= EVICT_MIN_IDLE)
                .map(|w| w.memory.bytes())
                .sum::<u64>()
        } + {
            let pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.values()
                .flatten()
                .map(|w| w.memory.bytes())
                .sum::<u64>()
        };
        let budget = &self.inner.budget;
        if budget
            .used()
            .saturating_sub(evictable)
            .saturating_add(bytes)
            > budget.limit()
        {
            return Err(InvokeError::OutOfCapacity);
        }
        Ok(())
    }

    /// Destroy the least recently used idle sandbox, or else one pooled sandbox. False if
    /// there is neither.
    fn evict_one(&self) -> bool {
        let victim = {
            let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
            let oldest = idle
                .iter()
                .flat_map(|(key, workers)| {
                    workers
                        .iter()
                        .enumerate()
                        .map(move |(i, w)| (key, i, w.last_used))
                })
                .min_by_key(|(_, _, used)| *used)
                .filter(|(_, _, used)| used.elapsed() >= EVICT_MIN_IDLE)
                .map(|(key, i, _)| (key.clone(), i));
            oldest.map(|(key, i)| {
                let workers = idle.get_mut(&key).expect("the key was just found");
                let worker = workers.remove(i);
                if workers.is_empty() {
                    idle.remove(&key);
                }
                worker
            })
        };
        let victim = victim.or_else(|| {
            let mut pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.values_mut().find_map(Vec::pop)
        });
        match victim {
            Some(worker) => {
                tracing::debug!(
                    sandbox = worker.sandbox.id(),
                    "evicted to stay within the memory budget"
                );
                destroy(worker);
                true
            }
            None => false,
        }
    }

    /// Give a pooled worker its function: code at `/var/task`, the function's memory
    /// limit, then the handler and environment; wait for its init.
    async fn specialize(&self, mut worker: Worker, f: &Function) -> Result<Init, InvokeError> {
        let started = Instant::now();
        let _slot = match self.setup_slot().await {
            Ok(slot) => slot,
            Err(e) => {
                // Back to the pool: it was never assigned.
                let runtime = f.runtime.clone().unwrap_or_default();
                let mut pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
                pool.entry(runtime).or_default().push(worker);
                return Err(e);
            }
        };
        let wanted = u64::from(f.memory_size) << 20;
        if let Err(e) = self.check_room(wanted.saturating_sub(worker.memory.bytes())) {
            destroy(worker);
            return Err(e);
        }
        while !worker.memory.resize(&self.inner.budget, wanted) {
            if !self.evict_one() {
                destroy(worker);
                return Err(InvokeError::OutOfCapacity);
            }
        }
        let inner = self.inner.clone();
        let (sha, memory) = (f.code_sha256.clone(), u64::from(f.memory_size) << 20);
        let worker = tokio::task::spawn_blocking(move || -> Result<Worker, InvokeError> {
            let code_dir = inner
                .cache
                .unpacked(&sha)
                .map_err(|e| InvokeError::Sandbox(e.to_string()))?;
            worker
                .sandbox
                .load_code(&code_dir)
                .and_then(|()| worker.sandbox.set_memory_limit(memory))
                .map_err(|e| InvokeError::Sandbox(e.to_string()))?;
            Ok(worker)
        })
        .await
        .map_err(|e| InvokeError::Sandbox(e.to_string()))??;
        let runtime = f.runtime.clone().unwrap_or_default();
        let id = worker.sandbox.id().to_owned();
        let assigned = worker.api.assign(Assignment {
            handler: f.handler.clone().unwrap_or_default(),
            env: lambda_environment(f, &runtime, &self.inner.config.region, &id),
        });
        if !assigned {
            destroy(worker);
            return Err(InvokeError::Sandbox(
                "a pooled runtime was already assigned".into(),
            ));
        }
        Ok(await_init(worker, started).await)
    }

    /// A booted pooled worker for `f`'s runtime, if `f` can use one.
    fn take_pooled(&self, f: &Function) -> Option<Worker> {
        let runtime = f.runtime.as_deref()?;
        if f.ephemeral_storage != POOL_TMP_MB {
            return None;
        }
        let taken = {
            let mut pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
            pop_alive(pool.get_mut(runtime)?)
        };
        self.inner.refill.notify_one();
        taken
    }

    /// Keep the warming pool at its targets, booting at most two sandboxes per core at a
    /// time (a boot waits on the kernel and the helper part of the time). Runs until
    /// [`WorkerManager::shutdown`].
    pub fn start_pool(&self) {
        let manager = self.clone();
        let parallel =
            SETUPS_PER_CORE * std::thread::available_parallelism().map_or(1, |n| n.get());
        self.inner.refill_stopped.store(false, Ordering::Release);
        tokio::spawn(async move {
            let mut booting: HashMap<String, usize> = HashMap::new();
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                if manager.inner.closed.load(Ordering::Acquire) {
                    // Shutting down: let the boots in flight finish, and destroy them.
                    while let Some(done) = tasks.join_next().await {
                        if let Ok((_, Ok(worker))) = done {
                            destroy(worker);
                        }
                    }
                    manager.inner.refill_stopped.store(true, Ordering::Release);
                    return;
                }
                while tasks.len() < parallel {
                    let Some(runtime) = manager.inner.pool_deficit(&booting) else {
                        break;
                    };
                    *booting.entry(runtime.clone()).or_default() += 1;
                    let m = manager.clone();
                    tasks.spawn(async move {
                        let booted = m.boot_pooled(&runtime).await;
                        (runtime, booted)
                    });
                }
                // A notification sent meanwhile is kept as a permit: none is lost.
                let notified = manager.inner.refill.notified();
                let finished = if tasks.is_empty() {
                    notified.await;
                    continue;
                } else {
                    tokio::select! {
                        done = tasks.join_next() => done,
                        _ = notified => continue,
                    }
                };
                let Some(Ok((runtime, booted))) = finished else {
                    continue;
                };
                if let Some(n) = booting.get_mut(&runtime) {
                    *n -= 1;
                }
                match booted {
                    Ok(worker) if manager.inner.closed.load(Ordering::Acquire) => destroy(worker),
                    Ok(worker) => {
                        // The target may have been lowered while this one booted.
                        let target = manager.inner.pool_target(&runtime);
                        let mut pool = manager.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
                        let workers = pool.entry(runtime).or_default();
                        if workers.len() < target {
                            workers.push(worker);
                        } else {
                            drop(pool);
                            destroy(worker);
                        }
                    }
                    Err(InvokeError::OutOfCapacity) => {
                        tracing::debug!(%runtime, "the memory budget is full: the pool waits");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        tracing::warn!(%runtime, error = %e, "could not add a sandbox to the warming pool");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    /// Boot one unassigned sandbox of `runtime` for the pool.
    async fn boot_pooled(&self, runtime: &str) -> Result<Worker, InvokeError> {
        // Refilling never takes a set-up slot an invocation is waiting for.
        let _slot = self
            .inner
            .setups
            .try_acquire()
            .map_err(|_| InvokeError::OutOfCapacity)?;
        // The pool never evicts warm sandboxes: it only uses memory nobody needs.
        let memory = self
            .inner
            .budget
            .try_reserve(POOL_MEMORY_BYTES)
            .ok_or(InvokeError::OutOfCapacity)?;
        let inner = self.inner.clone();
        let name = runtime.to_owned();
        let sandbox = tokio::task::spawn_blocking(move || inner.spawn_pooled(&name))
            .await
            .map_err(|e| InvokeError::Sandbox(e.to_string()))??;
        let worker = attach(sandbox, memory)?;
        let booted = tokio::select! {
            booted = worker.api.booted() => booted.map_err(|f| f.error_type),
            _ = tokio::time::sleep(INIT_TIMEOUT) => Err("boot timed out".to_owned()),
            _ = died(&worker.sandbox) => Err("the runtime exited while booting".to_owned()),
        };
        match booted {
            Ok(()) => Ok(worker),
            Err(why) => {
                let output = worker.log.take().await;
                destroy(worker);
                Err(InvokeError::Sandbox(format!(
                    "pooled {runtime} runtime failed to boot: {why}: {}",
                    String::from_utf8_lossy(&output)
                )))
            }
        }
    }

    /// Change the warming pool's target for `runtime`. Extra pooled sandboxes are
    /// destroyed; missing ones are booted in the background.
    pub fn set_pool_target(&self, runtime: &str, size: usize) -> Result<(), InvokeError> {
        if !self.inner.poolable(runtime) {
            return Err(InvokeError::RuntimeUnavailable(runtime.to_owned()));
        }
        self.inner
            .pool_targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(runtime.to_owned(), size);
        let extra: Vec<Worker> = {
            let mut pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
            let workers = pool.entry(runtime.to_owned()).or_default();
            let keep = workers.len().min(size);
            workers.drain(keep..).collect()
        };
        extra.into_iter().for_each(destroy);
        self.inner.refill.notify_one();
        Ok(())
    }

    /// What the pool and the functions' sandboxes look like now.
    pub fn status(&self) -> Status {
        let targets = self
            .inner
            .pool_targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
        let runtimes = self
            .inner
            .runtimes
            .names()
            .filter(|r| self.inner.poolable(r))
            .map(|r| RuntimeStatus {
                runtime: r.to_owned(),
                pooled: pool.get(r).map_or(0, Vec::len),
                target: targets.get(r).copied().unwrap_or(0),
            })
            .collect();
        drop(pool);
        let mut functions: BTreeMap<(String, String), FunctionStatus> = BTreeMap::new();
        let idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        let mut memory_bytes = 0;
        for (key, workers) in idle.iter() {
            let entry = functions
                .entry((key.account_id.clone(), key.name.clone()))
                .or_insert_with(|| FunctionStatus::new(key));
            entry.idle += workers.len();
            memory_bytes += workers
                .iter()
                .filter_map(|w| w.sandbox.memory_current_bytes())
                .sum::<u64>();
        }
        drop(idle);
        let busy = self.inner.busy.lock().unwrap_or_else(|e| e.into_inner());
        for (key, n) in busy.iter() {
            functions
                .entry((key.account_id.clone(), key.name.clone()))
                .or_insert_with(|| FunctionStatus::new(key))
                .busy += n;
        }
        drop(busy);
        let pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
        memory_bytes += pool
            .values()
            .flatten()
            .filter_map(|w| w.sandbox.memory_current_bytes())
            .sum::<u64>();
        Status {
            runtimes,
            functions: functions.into_values().collect(),
            memory_bytes,
            budget_used_bytes: self.inner.budget.used(),
            budget_bytes: self.inner.budget.limit(),
        }
    }
}

/// The warming pool and sandboxes, for `ember pool`.
#[derive(Debug, Clone)]
pub struct Status {
    pub runtimes: Vec<RuntimeStatus>,
    pub functions: Vec<FunctionStatus>,
    /// Memory charged to all idle and pooled sandboxes.
    pub memory_bytes: u64,
    /// Memory limits of all live sandboxes, against the budget.
    pub budget_used_bytes: u64,
    pub budget_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct RuntimeStatus {
    pub runtime: String,
    pub pooled: usize,
    pub target: usize,
}

#[derive(Debug, Clone)]
pub struct FunctionStatus {
    pub account_id: String,
    pub name: String,
    pub idle: usize,
    pub busy: usize,
}

impl FunctionStatus {
    fn new(key: &Key) -> FunctionStatus {
        FunctionStatus {
            account_id: key.account_id.clone(),
            name: key.name.clone(),
            idle: 0,
            busy: 0,
        }
    }
}

/// Counts a running invocation for [`WorkerManager::status`] while it lives.
struct BusyGuard<'a> {
    inner: &'a Inner,
    key: Key,
}

impl<'a> BusyGuard<'a> {
    fn enter(inner: &'a Inner, key: &Key) -> BusyGuard<'a> {
        *inner
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default() += 1;
        BusyGuard {
            inner,
            key: key.clone(),
        }
    }
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        let mut busy = self.inner.busy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = busy.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                busy.remove(&self.key);
            }
        }
    }
}

/// The last worker of `workers` whose sandbox is alive; dead ones on the way are destroyed.
fn pop_alive(workers: &mut Vec<Worker>) -> Option<Worker> {
    while let Some(worker) = workers.pop() {
        if worker.sandbox.is_alive() {
            return Some(worker);
        }
        destroy(worker);
    }
    None
}

/// Serve the Runtime API and collect the log of a freshly spawned sandbox.
fn attach(mut sandbox: Sandbox, memory: Reservation) -> Result<Worker, InvokeError> {
    let sandbox_error = |what: &str| InvokeError::Sandbox(what.to_owned());
    let listener = sandbox
        .runtime_api_listener()
        .ok_or_else(|| sandbox_error("the sandbox has no Runtime API listener"))?;
    let api = RuntimeApi::serve(listener).map_err(|e| InvokeError::Sandbox(e.to_string()))?;
    let output = sandbox
        .take_output()
        .ok_or_else(|| sandbox_error("the sandbox has no output pipe"))?;
    let log = LogTap::start(output).map_err(|e| InvokeError::Sandbox(e.to_string()))?;
    Ok(Worker {
        sandbox,
        api,
        log,
        last_used: Instant::now(),
        memory,
    })
}

/// Wait for a worker's runtime to finish its init (first `GET /next`), fail it, time out
/// or die. A failed worker is destroyed.
async fn await_init(mut worker: Worker, started: Instant) -> Init {
    let ended = tokio::select! {
        ready = worker.api.ready() => ready.map_err(|failure| failure.payload),
        _ = tokio::time::sleep(INIT_TIMEOUT) => Err(error_payload(
            "Runtime.InitTimeout",
            &format!("Init did not complete within {} seconds", INIT_TIMEOUT.as_secs()),
        )),
        _ = died(&worker.sandbox) => Err(Bytes::new()),
    };
    match ended {
        Ok(()) => Init::Ready(Box::new(worker), Some(started.elapsed())),
        Err(payload) => {
            let output = worker.log.take().await;
            let payload = if payload.is_empty() {
                let why = exit_description(&mut worker.sandbox);
                error_payload(
                    "Runtime.ExitError",
                    &format!("Runtime exited during init: {why}"),
                )
            } else {
                payload
            };
            destroy(worker);
            Init::Failed(payload, output)
        }
    }
}

enum Ended {
    Answered(Outcome, Instant),
    TimedOut,
    Died,
}

impl Inner {
    /// Runtimes whose interpreter can boot before the code is known (not `provided*`,
    /// whose runtime *is* the code).
    fn poolable(&self, runtime: &str) -> bool {
        !runtime.starts_with("provided") && self.runtimes.get(runtime).is_some()
    }

    fn pool_target(&self, runtime: &str) -> usize {
        let targets = self.pool_targets.lock().unwrap_or_else(|e| e.into_inner());
        targets.get(runtime).copied().unwrap_or(0)
    }

    /// The first runtime whose pool, counting the sandboxes `booting`, is below its target.
    fn pool_deficit(&self, booting: &HashMap<String, usize>) -> Option<String> {
        let targets = self
            .pool_targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        targets
            .into_iter()
            .find(|(runtime, target)| {
                let have = pool.get(runtime).map_or(0, Vec::len)
                    + booting.get(runtime).copied().unwrap_or(0);
                self.poolable(runtime) && have < *target
            })
            .map(|(runtime, _)| runtime)
    }

    /// Create a pooled sandbox: the runtime boots with an empty `/var/task` and waits for
    /// its function. Blocking.
    fn spawn_pooled(&self, runtime_name: &str) -> Result<Sandbox, InvokeError> {
        let runtime = self
            .runtimes
            .get(runtime_name)
            .ok_or_else(|| InvokeError::RuntimeUnavailable(runtime_name.to_owned()))?;
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("pool-{}-{n}", std::process::id());
        let mut spec =
            SandboxSpec::new(id.clone(), self.env.root_dir_for(&id), runtime.argv.clone());
        spec.ro_binds = ember_sandbox::system_ro_binds();
        spec.ro_binds
            .extend(runtime.extra_binds.iter().map(|p| (p.clone(), p.clone())));
        spec.task_slot = true;
        spec.runtime_dir = Some(self.runtime_dir.clone());
        spec.tmp_bytes = u64::from(POOL_TMP_MB) << 20;
        spec.memory_bytes = POOL_MEMORY_BYTES;
        spec.env = base_environment();
        spec.env.push(("EMBER_POOLED".into(), "1".into()));
        Sandbox::spawn(spec, &self.env).map_err(|e| InvokeError::Sandbox(e.to_string()))
    }

    /// Unpack the code and create the sandbox. Blocking.
    fn spawn(&self, f: &Function) -> Result<Sandbox, InvokeError> {
        let runtime_name = f.runtime.clone().unwrap_or_default();
        let runtime = self
            .runtimes
            .get(&runtime_name)
            .ok_or_else(|| InvokeError::RuntimeUnavailable(runtime_name.clone()))?;
        let code_dir = self
            .cache
            .unpacked(&f.code_sha256)
            .map_err(|e| InvokeError::Sandbox(e.to_string()))?;
        let code_dir = self
            .env
            .publish(&code_dir, &f.code_sha256)
            .map_err(|e| InvokeError::Sandbox(e.to_string()))?;
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("sb-{}-{n}", std::process::id());
        let mut spec =
            SandboxSpec::new(id.clone(), self.env.root_dir_for(&id), runtime.argv.clone());
        spec.ro_binds = ember_sandbox::system_ro_binds();
        spec.ro_binds
            .extend(runtime.extra_binds.iter().map(|p| (p.clone(), p.clone())));
        spec.code_dir = Some(code_dir);
        spec.runtime_dir = Some(self.runtime_dir.clone());
        spec.tmp_bytes = u64::from(f.ephemeral_storage) << 20;
        spec.memory_bytes = u64::from(f.memory_size) << 20;
        spec.env = lambda_environment(f, &runtime_name, &self.config.region, &id);
        Sandbox::spawn(spec, &self.env).map_err(|e| match e {
            // The runtime program failed to start: for `provided`, that is the function's
            // bootstrap (missing, not executable, wrong format).
            ember_sandbox::SandboxError::Setup { stage, message, .. }
                if stage.starts_with("exec /var/task/") =>
            {
                let program = stage.trim_start_matches("exec ");
                let why = match message.as_str() {
                    m if m.contains("EACCES") => "permission denied",
                    m if m.contains("ENOENT") => "no such file or directory",
                    m if m.contains("ENOEXEC") => "exec format error",
                    m => m,
                };
                InvokeError::Entrypoint(format!("Error: fork/exec {program}: {why}"))
            }
            // Set-up did not finish in time: the node is overloaded; throttle rather than fail.
            e @ ember_sandbox::SandboxError::Timeout { .. } => {
                tracing::warn!(error = %e, "sandbox set-up timed out");
                InvokeError::OutOfCapacity
            }
            e => InvokeError::Sandbox(e.to_string()),
        })
    }
}

/// The environment Lambda gives a function: its own variables, then the platform's
/// (which win: the control plane already refuses reserved names).
fn lambda_environment(
    f: &Function,
    runtime: &str,
    region: &str,
    id: &str,
) -> Vec<(String, String)> {
    let today = time::OffsetDateTime::now_utc().date();
    let stream = format!(
        "{:04}/{:02}/{:02}/[$LATEST]{}",
        today.year(),
        u8::from(today.month()),
        today.day(),
        id
    );
    let mut env: Vec<(String, String)> = f
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let platform = [
        (
            "AWS_LAMBDA_RUNTIME_API",
            ember_sandbox::RUNTIME_API_ADDR.to_owned(),
        ),
        ("_HANDLER", f.handler.clone().unwrap_or_default()),
        ("LAMBDA_TASK_ROOT", ember_sandbox::TASK_DIR.to_owned()),
        ("LAMBDA_RUNTIME_DIR", RUNTIME_DIR.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", f.name.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", f.memory_size.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", f.name),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", stream),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_REGION", region.to_owned()),
        ("AWS_DEFAULT_REGION", region.to_owned()),
        ("AWS_EXECUTION_ENV", format!("AWS_Lambda_{runtime}")),
    ];
    let platform = platform
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(base_environment());
    let platform: Vec<(String, String)> = platform.collect();
    env.retain(|(k, _)| !platform.iter().any(|(p, _)| p == k));
    env.extend(platform);
    env
}

/// What every runtime process starts with, before it knows its function.
fn base_environment() -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", ember_sandbox::RUNTIME_API_ADDR),
        ("LAMBDA_TASK_ROOT", ember_sandbox::TASK_DIR),
        ("LAMBDA_RUNTIME_DIR", RUNTIME_DIR),
        ("TZ", ":UTC"),
        ("LANG", "C.UTF-8"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin:/opt/bin"),
        ("HOME", "/tmp"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Resolves when the sandbox's processes are gone.
async fn died(sandbox: &Sandbox) {
    while sandbox.is_alive() {
        tokio::time::sleep(LIVENESS_POLL).await;
    }
}

fn exit_description(sandbox: &mut Sandbox) -> String {
    match sandbox.try_wait() {
        Ok(Some(status)) => match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("signal: {signal}"),
            _ => status.to_string(),
        },
        _ => "the runtime stopped".to_owned(),
    }
}

fn error_payload(error_type: &str, message: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string())
}

fn timestamp() -> String {
    ember_store::model::format_timestamp(time::OffsetDateTime::now_utc())
}

/// Tear a worker down off the async threads (it waits for processes to die).
fn destroy(worker: Worker) {
    let Worker { sandbox, .. } = worker;
    tokio::task::spawn_blocking(move || {
        if let Err(e) = sandbox.destroy() {
            tracing::warn!(error = %e, "could not destroy a sandbox");
        }
    });
}
