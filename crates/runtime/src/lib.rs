//! The runtime side of a sandbox.
//!
//! # Layout
//! - [`api`]: the Lambda Runtime API server the host runs for each sandbox, and the
//!   [`RuntimeApi`] handle the worker uses to hand it events.
//! - [`shims`]: Ember's own Python and Node.js runtimes (`shims/bootstrap.py`,
//!   `shims/bootstrap.js`), embedded in the binary and installed read-only into sandboxes
//!   at `/var/runtime`.

pub mod api;
pub mod shims;

pub use api::{
    Assignment, Completion, InitFailure, Invocation, Outcome, PROBE_HEADER, RuntimeApi,
    RuntimeGone, Unresponsive,
};
