//! The worker manager: places each invocation in a sandbox.
//!
//! # Layout
//! - [`runtimes`]: the Lambda runtimes this host can run and how to start them.
//! - [`code_cache`]: unpacked code packages, extracted once per node and shared
//!   read-only by every sandbox of the same code.

pub mod code_cache;
pub mod runtimes;
