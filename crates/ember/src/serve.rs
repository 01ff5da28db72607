//! `ember serve`: open the data directory, make sure a root account exists, and run the
//! frontend until SIGTERM or SIGINT.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use ember_sandbox::{Environment, EnvironmentConfig};
use ember_store::package::CodeStore;
use ember_store::{AccessKey, SqliteStore, Store};
use ember_worker::budget::FixedKeepAlive;
use ember_worker::{WorkerConfig, WorkerManager};

use crate::config::ServeConfig;
use crate::credentials::{self, KeyPair};

/// Default warming pool: two booted Python runtimes and one Node.js runtime (Node costs
/// ~40 MiB idle) for each version this host has.
fn default_pool() -> BTreeMap<String, usize> {
    ember_worker::runtimes::HostRuntimes::detect()
        .names()
        .filter_map(|name| {
            let size = if name.starts_with("python") {
                2
            } else if name.starts_with("nodejs") {
                1
            } else {
                return None;
            };
            Some((name.to_owned(), size))
        })
        .collect()
}

/// What this host can enforce for sandboxes kept under `<data-dir>/sandboxes`.
///
/// Each data directory gets its own cgroup parent and its own range of host uids, so two
/// Ember servers on one host (another data directory, a test) never clean up or share
/// each other's sandboxes.
pub fn sandbox_environment(data_dir: &Path) -> Environment {
    let data_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let tag = fnv1a(data_dir.as_os_str().as_encoded_bytes());
    // Sandbox roots, task slots and published code live where the sandboxes' unprivileged
    // uids can reach them (under /run when it exists), not in the data directory, which
    // may sit in a 0700 home.
    let base = if Path::new("/run").is_dir() {
        PathBuf::from("/run/ember")
    } else {
        std::env::temp_dir().join("ember")
    };
    let mut config = EnvironmentConfig::new(base.join(format!("{:016x}", tag)));
    config.cgroup_parent = format!("ember-{:08x}", tag as u32);
    config.max_sandboxes = SANDBOXES_PER_SERVER;
    // 2 host ids per sandbox; 256 disjoint ranges above the default base.
    config.uid_base =
        ember_sandbox::DEFAULT_UID_BASE + (tag % 256) as u32 * 2 * SANDBOXES_PER_SERVER;
    Environment::detect_with(config)
}

/// Most sandboxes one server runs at once (each takes two host uids).
const SANDBOXES_PER_SERVER: u32 = 65_536;

/// FNV-1a: a stable hash (the same for every build of Ember) to name per-server resources.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Name of the root key file inside the data directory.
pub const CREDENTIALS_FILE: &str = "credentials";

pub async fn run(config: ServeConfig) -> Result<()> {
    let data_dir = &config.data_dir.clone();
    create_private_dir(data_dir)?;
    let store = SqliteStore::open(&data_dir.join("ember.db"))
        .with_context(|| format!("opening the database in {}", data_dir.display()))?;
    let code = CodeStore::open(data_dir.join("code"))
        .with_context(|| format!("opening the code store in {}", data_dir.display()))?;
    bootstrap_root(&store, data_dir).await?;
    collect_orphaned_code(&store, &code).await?;

    let env = sandbox_environment(data_dir);
    let report = env.report();
    if report.is_complete() {
        tracing::info!("sandbox isolation: complete");
    } else {
        for (protection, why) in report.missing() {
            tracing::warn!(protection, why, "sandbox protection missing");
        }
        tracing::warn!(
            "sandboxes will not start until the missing protections are available (run `ember doctor`)"
        );
    }
    let worker = WorkerManager::new(
        WorkerConfig {
            data_dir: data_dir.clone(),
            region: config.frontend.region.clone(),
            code_limits: config.frontend.code_limits,
            keep_alive: Arc::new(FixedKeepAlive(config.idle_timeout)),
            memory_budget_bytes: config.memory_budget_bytes,
            pool_targets: config.pool.clone().unwrap_or_else(default_pool),
        },
        env,
        code.clone(),
    )
    .context("setting up the worker manager")?;
    worker.start_pool();
    let health_interval = config.health_check_interval;
    let reaper = tokio::spawn({
        let worker = worker.clone();
        async move {
            let mut tick = tokio::time::interval(health_interval);
            loop {
                tick.tick().await;
                let reaped = worker.reap_idle();
                if reaped > 0 {
                    tracing::debug!(reaped, "tore down idle sandboxes");
                }
            }
        }
    });

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %data_dir.display(), "serving");
    // A line for people and scripts (tests read it to learn the port).
    println!("Ember is listening on http://{addr}");

    let queues =
        ember_queue::SqliteQueues::open(&data_dir.join("queues.db"), &config.frontend.region)
            .with_context(|| format!("opening the queues in {}", data_dir.display()))?;
    let store: Arc<dyn Store> = Arc::new(store);
    let queues: Arc<dyn ember_queue::Queues> = Arc::new(queues);
    let region = config.frontend.region.clone();
    let frontend = Arc::new(ember_api::Frontend::new(
        store.clone(),
        code,
        config.frontend,
        worker.clone(),
        queues.clone(),
    ));
    // Event source mappings: pollers share the frontend's concurrency limiter, so
    // synchronous invocations and pollers compete for the same slots.
    frontend
        .concurrency
        .ensure_loaded(store.as_ref())
        .await
        .map_err(|e| anyhow::anyhow!("loading reserved concurrency: {e}"))?;
    let events = ember_events::EventsManager::new(
        store,
        queues,
        worker.clone(),
        frontend.concurrency.shared_limiter(),
        ember_events::EventsSettings {
            region,
            retry_delay: config.async_retry_delay,
        },
    );
    events
        .start()
        .await
        .context("starting event source mapping pollers")?;
    let _ = frontend
        .mapping_events
        .set(Arc::new(MappingEventsAdapter(events.clone())));
    let shutdown = {
        let events = events.clone();
        async move {
            shutdown_signal().await;
            // Pollers stop receiving before the queues' long polls are closed.
            events.stop_polling();
        }
    };
    ember_api::serve(listener, frontend, shutdown).await?;
    // In-flight batches finish (and are acknowledged) before sandboxes go.
    events.shutdown().await;
    reaper.abort();
    tokio::task::spawn_blocking(move || worker.shutdown()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// The frontend's view of the events manager.
struct MappingEventsAdapter(ember_events::EventsManager);

#[async_trait::async_trait]
impl ember_api::MappingEvents for MappingEventsAdapter {
    async fn invoke_async(
        &self,
        function: &ember_store::Function,
        request_id: &str,
        payload: String,
        client_context: Option<String>,
    ) -> Result<(), ember_queue::QueueError> {
        self.0
            .invoke_async(ember_events::asynchronous::AsyncEvent {
                account_id: function.account_id.clone(),
                function_name: function.name.clone(),
                request_id: request_id.to_owned(),
                payload,
                client_context,
            })
            .await
    }

    fn mapping_changed(&self, uuid: &str) {
        self.0.mapping_changed(uuid);
    }

    fn function_changed(&self, account_id: &str, function_name: &str) {
        self.0.function_changed(account_id, function_name);
    }

    fn queue_changed(&self, account_id: &str, queue_name: &str) {
        self.0.queue_changed(account_id, queue_name);
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))
}

/// The root account is created on first start. Its key comes from
/// `EMBER_ROOT_ACCESS_KEY_ID`/`EMBER_ROOT_SECRET_ACCESS_KEY` when set (added on every
/// start, so the pair can be rotated by restarting), otherwise the generated key is
/// written to `<data-dir>/credentials`.
async fn bootstrap_root(store: &SqliteStore, data_dir: &Path) -> Result<()> {
    let from_env = match (
        std::env::var("EMBER_ROOT_ACCESS_KEY_ID"),
        std::env::var("EMBER_ROOT_SECRET_ACCESS_KEY"),
    ) {
        (Ok(id), Ok(secret)) if !id.is_empty() && !secret.is_empty() => Some((id, secret)),
        (Ok(_), Err(_)) | (Err(_), Ok(_)) => anyhow::bail!(
            "set both EMBER_ROOT_ACCESS_KEY_ID and EMBER_ROOT_SECRET_ACCESS_KEY, or neither"
        ),
        _ => None,
    };
    let root = match store.root_account().await? {
        Some(root) => root,
        None => {
            let (root, key) = store.create_account("root", true).await?;
            tracing::info!(account = %root.id, "created the root account");
            if from_env.is_none() {
                let path = data_dir.join(CREDENTIALS_FILE);
                credentials::write_default(
                    &path,
                    &KeyPair {
                        access_key_id: key.access_key_id,
                        secret_access_key: key.secret_access_key,
                    },
                )?;
                tracing::info!(
                    path = %path.display(),
                    "wrote the root account's access key (AWS shared-credentials format, mode 0600)"
                );
            }
            root
        }
    };
    if let Some((id, secret)) = from_env {
        store
            .put_access_key(&AccessKey {
                access_key_id: id,
                secret_access_key: secret,
                account_id: root.id.clone(),
            })
            .await
            .context("installing the root key from EMBER_ROOT_ACCESS_KEY_ID")?;
        tracing::info!("root account key taken from EMBER_ROOT_ACCESS_KEY_ID");
    }
    Ok(())
}

/// Remove code packages no function refers to (left behind when the process died
/// between storing a package and recording the function that uses it) and half-written
/// temp files. Runs before serving, so no upload is in progress.
async fn collect_orphaned_code(store: &SqliteStore, code: &CodeStore) -> Result<()> {
    code.remove_temp_files()?;
    for sha in code.list()? {
        if !store.code_in_use(&sha).await? {
            code.remove(&sha)?;
            tracing::info!(sha256 = %sha, "removed unused code package");
        }
    }
    Ok(())
}

/// Completes on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
