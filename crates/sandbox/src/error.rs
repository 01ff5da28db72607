//! The crate's one error type. Every message names what failed and where (the sandbox id,
//! the path, the setup step), because the person reading it is an operator looking at a
//! log line, not a debugger.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why a sandbox could not be created, inspected or destroyed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec is malformed: the caller's bug, nothing was created.
    #[error("invalid sandbox spec: {field}: {reason}")]
    InvalidSpec {
        /// The offending field of [`crate::SandboxSpec`].
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Some protection is missing on this host and the environment does not allow
    /// degraded sandboxes (see [`crate::EnvironmentConfig::allow_degraded`]).
    #[error(
        "this host cannot enforce every sandbox protection and degraded sandboxes are not allowed; missing: {missing}"
    )]
    Degraded {
        /// The missing protections, each with its reason.
        missing: String,
    },
    /// Nothing usable: without a mount namespace a sandbox cannot have its own root
    /// filesystem, so no sandbox is started even in degraded mode.
    #[error("this host cannot run sandboxes: {0}")]
    Unsupported(String),
    /// A cgroup file or directory operation failed.
    #[error("cgroup: cannot {op} {path}: {source}")]
    Cgroup {
        /// What we tried to do ("create", "write", "remove", ...).
        op: &'static str,
        /// The cgroup file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Any other file-system or system-call failure on the host side.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What we tried to do.
        op: &'static str,
        /// The path (or object) involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The init helper program could not be started at all.
    #[error("cannot start the sandbox init helper {program}: {source}")]
    SpawnHelper {
        /// The helper executable (normally `/proc/self/exe`).
        program: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The init helper reported that one setup step failed inside the new sandbox.
    #[error("sandbox {id}: setup failed at step \"{stage}\": {message}")]
    Setup {
        /// The sandbox id.
        id: String,
        /// The step, e.g. `mount /usr at /usr` or `exec /usr/bin/python3.11`.
        stage: String,
        /// The error as seen inside the sandbox.
        message: String,
    },
    /// The init helper exited (or crashed) before it reported success or failure.
    #[error(
        "sandbox {id}: the init helper exited before reporting ({status}); is init_if_requested() called first thing in main()?"
    )]
    HelperDied {
        /// The sandbox id.
        id: String,
        /// Its exit status.
        status: String,
    },
    /// The init helper did not answer in time.
    #[error("sandbox {id}: the init helper did not finish setting up within {timeout:?}")]
    Timeout {
        /// The sandbox id.
        id: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The conversation with the init helper broke (malformed message, socket error).
    #[error("sandbox {id}: talking to the init helper: {message}")]
    Protocol {
        /// The sandbox id.
        id: String,
        /// What went wrong.
        message: String,
    },
    /// Processes of the sandbox survived SIGKILL for longer than the kill timeout.
    #[error(
        "sandbox cgroup {path}: {remaining} process(es) still present after {waited:?} of SIGKILL"
    )]
    StillRunning {
        /// The cgroup directory.
        path: PathBuf,
        /// How many remained.
        remaining: usize,
        /// How long we waited.
        waited: Duration,
    },
    /// The root directory could not be removed because something is still in it.
    #[error(
        "sandbox root directory {path} is not empty after teardown; left in place (never deleted recursively, it may hide a mount)"
    )]
    RootDirNotEmpty {
        /// The directory.
        path: PathBuf,
    },
    /// Every host uid range reserved for sandboxes is in use.
    #[error("no free host uid range for another sandbox ({slots} sandboxes already run)")]
    NoUidSlot {
        /// How many ranges exist.
        slots: u32,
    },
}

impl SandboxError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SandboxError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn cgroup(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SandboxError::Cgroup {
            op,
            path: path.into(),
            source,
        }
    }
}
