//! The worker manager: places each invocation in a sandbox.
//!
//! # Layout
//! - [`WorkerManager`]: placement (warm sandbox of the same function revision, else
//!   cold), timeouts, crash and out-of-memory handling, idle teardown.
//! - [`runtimes`]: the Lambda runtimes this host can run and how to start them.
//! - [`logs`]: a sandbox's output, cut per invocation, with Lambda's START/END/REPORT lines.
//! - [`limits`]: reserved concurrency and the account-wide limit (in-memory, RAII permits).
//! - [`budget`]: the node's memory budget for sandboxes and the keep-alive policy.
//! - [`metrics`]: the node's latency histograms (Prometheus text format).
//! - [`code_cache`]: unpacked code packages, extracted once per node and shared
//!   read-only by every sandbox of the same code.

pub mod budget;
pub mod code_cache;
pub mod limits;
pub mod logs;
mod manager;
pub mod metrics;
pub mod runtimes;

pub use manager::{
    InvokeError, InvokeRequest, InvokeResponse, Placement, WorkerConfig, WorkerManager,
};
