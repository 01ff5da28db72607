//! # ember-sandbox: the isolation driver
//!
//! One sandbox is one isolated execution environment: a process tree in its own user,
//! mount, pid, network, IPC, UTS and cgroup namespaces, in its own cgroup (memory, process
//! and CPU limits), under a seccomp filter, with its own root filesystem. This crate knows
//! nothing of accounts, functions or HTTP: it gets a [`SandboxSpec`] (what to run, what to
//! show it, what it may use) and returns a [`Sandbox`] (its output, its Runtime API
//! listener, its memory statistics, and `destroy`).
//!
//! ```no_run
//! use ember_sandbox::{Environment, Sandbox, SandboxSpec, system_ro_binds};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     ember_sandbox::init_if_requested(); // first thing: this binary is also the helper
//!     let env = Environment::detect(None, "/var/lib/ember/sandboxes".into());
//!     println!("{}", env.report());
//!     ember_sandbox::cleanup_stale(&env)?;
//!     let mut spec = SandboxSpec::new("sb-1", env.root_dir_for("sb-1"), vec!["/usr/bin/python3.11".into(), "-c".into(), "print(1)".into()]);
//!     spec.ro_binds = system_ro_binds();
//!     let mut sandbox = Sandbox::spawn(spec, &env)?;
//!     let listener = sandbox.runtime_api_listener(); // serve the Runtime API on it
//!     let output = sandbox.take_output();            // the payload's stdout + stderr
//!     sandbox.wait()?;
//!     sandbox.destroy()?;
//!     # drop((listener, output));
//!     Ok(())
//! }
//! ```
//!
//! # Threat model
//!
//! The payload is hostile code of one account. It must not read or change the host or
//! other sandboxes, see their processes or network, exhaust the machine (memory,
//! processes, CPU, disk), or gain privilege. Each layer assumes the others may fail:
//!
//! - **Identity.** With a user namespace, the sandbox's root is an unprivileged host uid
//!   (`uid_base + 2n`) and the payload runs as uid 993 (Lambda's `sbx_user1051`), host uid
//!   `uid_base + 2n + 1`: a breakout lands as a nobody. Without one (containers that mask
//!   parts of `/proc`), pid 1 and the payload drop to those same host uids after setup.
//!   Either way every capability is gone (bounding, effective, permitted, inheritable,
//!   ambient), `no_new_privs` is set, and `RLIMIT_CORE` is 0.
//! - **Filesystem.** A tmpfs root in a private mount namespace, reached by `pivot_root`
//!   with the old root detached: only the listed read-only binds exist, the code is
//!   read-only at `/var/task`, `/tmp` is a size-capped tmpfs, `/dev` has six harmless
//!   devices, `/proc` is the sandbox's own with `hidepid=2`, `/proc/sys` read-only and
//!   kernel-information files masked.
//! - **Processes.** A pid namespace: the payload is pid 2, sees only its own processes, and
//!   everything dies when pid 1 does.
//! - **Network.** A network namespace with only `lo`. The Runtime API listener at
//!   `127.0.0.1:9001` is created inside it and handed to the host as a descriptor, so the
//!   host serves the API without any route between the namespaces. `AF_VSOCK` (not
//!   namespaced) is denied by seccomp.
//! - **Resources.** A cgroup per sandbox: memory (and swap) limit, process limit, CPU
//!   weight proportional to memory as Lambda does; `RLIMIT_NOFILE`.
//! - **Kernel surface.** A seccomp denylist (see `seccomp.rs`): mounts, namespaces,
//!   tracing, eBPF, perf, keyrings, modules, clocks, io_uring, device nodes, x32.
//!
//! Not covered: `/proc/meminfo` and `/proc/cpuinfo` show the host's totals (no lxcfs);
//! `/tmp` pages count against the memory limit (they are RAM); side channels; kernel
//! bugs reachable through the allowed syscalls (a microVM is the answer to those).
//!
//! # Process model
//!
//! `spawn` is called from a multi-threaded tokio program, where a forked child may only
//! call async-signal-safe functions until it execs. So nothing is done between our fork
//! and exec: `spawn` runs `/proc/self/exe __ember-sandbox-init <id>` (the same binary,
//! whose `main` calls [`init_if_requested`] first) with a `SOCK_SEQPACKET` socket as stdin
//! and the output pipe as stdout/stderr, and sends it the spec as JSON. That fresh,
//! single-threaded helper can fork freely; `init.rs` describes what it does and why in that
//! order. It answers with `Ready` plus the listener descriptor, or with the step that
//! failed.
//!
//! # Cost (2-core KVM guest, cgroup v1; `examples/spawn_latency.rs`)
//!
//! `spawn` of `/bin/true` takes ~3–4 ms p50 until the payload has exec'd (plain
//! fork+exec+wait: ~0.6 ms; `unshare` into the same namespaces + `/bin/true`: ~2 ms).
//! Roughly: the helper's exec 0.8 ms, the clone into seven namespaces (the network
//! namespace is most of it) with the id maps 0.8 ms, the root filesystem 0.6 ms, seccomp
//! 0.2 ms, the payload's fork and exec 0.4 ms; the cgroup is created while the helper
//! execs. On cgroup v1, joining the memory cgroup sometimes waits for an RCU grace
//! period, which gives a p99 of 15–25 ms. `destroy` takes ~0.25 ms. The helper and pid 1
//! cost ~0.7 MiB of the sandbox's memory. Pre-warming (the pool) keeps all this off the
//! invocation path.
//!
//! # Layout
//!
//! - [`spec`](SandboxSpec): what a sandbox should be, validated on the host.
//! - `env`: [`Environment`] (what this host can enforce, detected once; the allocation of
//!   host uids) and [`IsolationReport`].
//! - `sandbox`: [`Sandbox`], the host's handle: spawn, observe, destroy.
//! - `cgroup`: cgroup v1 and v2 behind one interface, with an injectable root.
//! - `init`: the helper, pid 1 and the payload's last steps before `execve`.
//! - `rootfs`: the root filesystem as a pure plan, and its execution.
//! - `seccomp`: the filter.
//! - `protocol`: the messages between host and helper.
//! - `cleanup`: [`cleanup_stale`] after a crash.
//! - `sys`: the crate's only `unsafe` code, as small safe wrappers over system calls.

#[cfg(not(target_os = "linux"))]
compile_error!("ember-sandbox uses Linux namespaces, cgroups and seccomp: it builds only on Linux");

mod cgroup;
mod cleanup;
mod env;
mod error;
mod init;
mod mountinfo;
mod protocol;
mod rootfs;
mod sandbox;
mod seccomp;
mod spec;
#[allow(unsafe_code)]
mod sys;

pub use cgroup::CgroupVersion;
pub use cleanup::{CleanupStats, cleanup_stale};
pub use env::{Check, DEFAULT_UID_BASE, Environment, EnvironmentConfig, IsolationReport};
pub use error::SandboxError;
pub use init::{RUNTIME_API_ADDR, init_if_requested};
pub use protocol::{INIT_MARKER, SANDBOX_GID, SANDBOX_UID};
pub use sandbox::Sandbox;
pub use spec::{
    DEFAULT_HOSTNAME, DEFAULT_MEMORY_BYTES, DEFAULT_NOFILE, DEFAULT_PIDS_MAX, DEFAULT_TMP_BYTES,
    RUNTIME_DIR, SandboxSpec, TASK_DIR, system_ro_binds,
};
