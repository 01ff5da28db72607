//! What one sandbox should look like: [`SandboxSpec`], its defaults and its validation.
//!
//! The spec is plain data (it crosses the process boundary to the init helper as JSON) and
//! is validated on the host before anything is created, so that a malformed spec never
//! leaves a cgroup or a directory behind.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::SandboxError;

/// Default size cap of the sandbox's `/tmp` (Lambda's default ephemeral storage).
pub const DEFAULT_TMP_BYTES: u64 = 512 << 20;
/// Default memory limit (Lambda's default function memory).
pub const DEFAULT_MEMORY_BYTES: u64 = 128 << 20;
/// Default limit on the number of processes and threads of the payload.
pub const DEFAULT_PIDS_MAX: u32 = 1024;
/// Default `RLIMIT_NOFILE`.
pub const DEFAULT_NOFILE: u64 = 1024;
/// Default hostname inside the sandbox.
pub const DEFAULT_HOSTNAME: &str = "ember-sandbox";

/// Where the function's code appears inside the sandbox (read-only).
pub const TASK_DIR: &str = "/var/task";
/// Where Ember's runtime shims appear inside the sandbox (read-only).
pub const RUNTIME_DIR: &str = "/var/runtime";

/// Paths the sandbox builds itself; a read-only bind may not be one of them, contain one,
/// or lie inside one.
const RESERVED: &[&str] = &[
    "/proc",
    "/dev",
    "/tmp",
    TASK_DIR,
    RUNTIME_DIR,
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/nsswitch.conf",
];

/// Smallest memory limit accepted: below this even the init helper is OOM-killed.
const MIN_MEMORY_BYTES: u64 = 8 << 20;

/// One sandbox: what it runs, what it sees and what it may use.
///
/// Everything is explicit: the payload gets exactly [`env`](Self::env) as its environment,
/// exactly [`argv`](Self::argv), and sees exactly the listed binds plus the few files and
/// pseudo-filesystems the sandbox builds itself (`/proc`, `/dev`, `/tmp`, `/etc/passwd`...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSpec {
    /// Unique among the live sandboxes of one [`crate::Environment`]: names the cgroup.
    /// 1 to 64 characters of `[A-Za-z0-9_.-]`, not starting with a dot.
    pub id: String,
    /// The (empty, or not yet existing) host directory that becomes the sandbox's root.
    /// Must be a direct child of the environment's sandboxes directory (see
    /// [`crate::Environment::root_dir_for`]) so that [`crate::cleanup_stale`] finds it.
    /// Nothing is ever written into it on the host: the root is a tmpfs mounted over it
    /// inside the sandbox's private mount namespace.
    pub root_dir: PathBuf,
    /// Read-only binds, host path → sandbox path. A host path that is a symlink is
    /// reproduced as the same symlink (so `/lib -> usr/lib` on merged-/usr hosts stays a
    /// symlink into the bound `/usr`). See [`system_ro_binds`].
    pub ro_binds: Vec<(PathBuf, PathBuf)>,
    /// The function's code, bound read-only at [`TASK_DIR`]. Must be readable by others:
    /// the payload runs as an unprivileged uid.
    pub code_dir: Option<PathBuf>,
    /// Ember's runtime shims, bound read-only at [`RUNTIME_DIR`].
    pub runtime_dir: Option<PathBuf>,
    /// Size cap of the tmpfs at `/tmp`; writes beyond it fail with `ENOSPC`. Its pages are
    /// charged to the sandbox's memory cgroup, so they also count against `memory_bytes`.
    pub tmp_bytes: u64,
    /// Memory limit of the whole sandbox (cgroup), swap included; beyond it the kernel's
    /// OOM killer kills the payload.
    pub memory_bytes: u64,
    /// Processes and threads the payload may have (the two helper processes of the
    /// sandbox come on top).
    pub pids_max: u32,
    /// `RLIMIT_NOFILE` (soft and hard) of the payload.
    pub nofile: u64,
    /// The payload's complete environment, in order.
    pub env: Vec<(String, String)>,
    /// The payload's argv. `argv[0]` is the program: an absolute path, a path relative to
    /// `cwd`, or a bare name looked up in `PATH` from [`env`](Self::env)
    /// (default `/usr/local/bin:/usr/bin:/bin`) inside the sandbox.
    pub argv: Vec<String>,
    /// The payload's working directory inside the sandbox.
    pub cwd: PathBuf,
    /// The sandbox's hostname (its own UTS namespace).
    pub hostname: String,
    /// Start with an empty `/var/task` that receives the code later, through
    /// [`crate::Sandbox::load_code`] (the warming pool: boot the runtime first, learn the
    /// function afterwards). Excludes `code_dir`. The mount arrives by propagation from a
    /// host-side slot directory, one way only: nothing the sandbox mounts reaches the host.
    #[serde(default)]
    pub task_slot: bool,
}

impl SandboxSpec {
    /// A spec with Lambda's defaults: no binds, no code, 512 MiB `/tmp`, 128 MiB memory,
    /// 1024 processes, 1024 open files, empty environment, cwd [`TASK_DIR`].
    pub fn new(id: impl Into<String>, root_dir: impl Into<PathBuf>, argv: Vec<String>) -> Self {
        SandboxSpec {
            id: id.into(),
            root_dir: root_dir.into(),
            ro_binds: Vec::new(),
            code_dir: None,
            runtime_dir: None,
            tmp_bytes: DEFAULT_TMP_BYTES,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            pids_max: DEFAULT_PIDS_MAX,
            nofile: DEFAULT_NOFILE,
            env: Vec::new(),
            argv,
            cwd: PathBuf::from(TASK_DIR),
            hostname: DEFAULT_HOSTNAME.to_owned(),
            task_slot: false,
        }
    }

    /// Checks everything that can be checked without touching the system.
    pub fn validate(&self) -> Result<(), SandboxError> {
        let bad = |field: &'static str, reason: String| SandboxError::InvalidSpec { field, reason };
        validate_id(&self.id).map_err(|r| bad("id", r))?;
        if !self.root_dir.is_absolute() {
            return Err(bad(
                "root_dir",
                format!("{} is not absolute", self.root_dir.display()),
            ));
        }
        for (host, inside) in &self.ro_binds {
            if !host.is_absolute() {
                return Err(bad(
                    "ro_binds",
                    format!("host path {} is not absolute", host.display()),
                ));
            }
            check_sandbox_path(inside).map_err(|r| bad("ro_binds", r))?;
            if inside == Path::new("/") {
                return Err(bad(
                    "ro_binds",
                    "cannot bind over the sandbox root /".into(),
                ));
            }
            if let Some(reserved) = RESERVED
                .iter()
                .map(Path::new)
                .find(|r| r.starts_with(inside) || inside.starts_with(r))
            {
                return Err(bad(
                    "ro_binds",
                    format!(
                        "{} overlaps {}, which the sandbox builds itself",
                        inside.display(),
                        reserved.display()
                    ),
                ));
            }
        }
        for (field, dir) in [
            ("code_dir", &self.code_dir),
            ("runtime_dir", &self.runtime_dir),
        ] {
            if let Some(dir) = dir.as_ref().filter(|d| !d.is_absolute()) {
                return Err(bad(field, format!("{} is not absolute", dir.display())));
            }
        }
        if self.tmp_bytes < 4096 {
            return Err(bad(
                "tmp_bytes",
                format!("{} is below one page", self.tmp_bytes),
            ));
        }
        if self.memory_bytes < MIN_MEMORY_BYTES {
            return Err(bad(
                "memory_bytes",
                format!(
                    "{} is below the minimum of {MIN_MEMORY_BYTES}",
                    self.memory_bytes
                ),
            ));
        }
        if self.pids_max == 0 {
            return Err(bad("pids_max", "must be at least 1".into()));
        }
        if self.nofile < 8 {
            return Err(bad(
                "nofile",
                format!("{} is too small to start any program", self.nofile),
            ));
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
                return Err(bad("env", format!("invalid variable {key:?}")));
            }
        }
        match self.argv.first() {
            None => return Err(bad("argv", "is empty".into())),
            Some(program) if program.is_empty() => {
                return Err(bad("argv", "argv[0] is empty".into()));
            }
            Some(_) => {}
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return Err(bad("argv", "contains a NUL byte".into()));
        }
        check_sandbox_path(&self.cwd).map_err(|r| bad("cwd", r))?;
        if self.task_slot && self.code_dir.is_some() {
            return Err(bad(
                "task_slot",
                "a sandbox gets its code either at start (code_dir) or later (task_slot), not both"
                    .into(),
            ));
        }
        validate_hostname(&self.hostname).map_err(|r| bad("hostname", r))?;
        Ok(())
    }
}

/// Name of the directory, inside the sandboxes directory, holding the task slots.
pub(crate) const SLOTS_DIR: &str = ".slots";

/// The host directory whose mounts propagate to the `/var/task` of the sandbox rooted at
/// `root_dir` (a direct child of the sandboxes directory).
pub(crate) fn slot_path(root_dir: &Path) -> PathBuf {
    let id = root_dir.file_name().unwrap_or_default();
    root_dir
        .parent()
        .unwrap_or(Path::new("/"))
        .join(SLOTS_DIR)
        .join(id)
}

/// The read-only binds a typical interpreter needs, among those that exist on this host:
/// `/usr`, `/lib`, `/lib64`, `/bin`, `/sbin` (symlinks on merged-/usr hosts, reproduced as
/// symlinks), the CA certificates, Debian's alternatives and the dynamic linker's cache.
pub fn system_ro_binds() -> Vec<(PathBuf, PathBuf)> {
    [
        "/usr",
        "/lib",
        "/lib64",
        "/bin",
        "/sbin",
        "/etc/ssl",
        "/etc/alternatives",
        "/etc/ld.so.cache",
    ]
    .iter()
    .map(Path::new)
    .filter(|p| p.symlink_metadata().is_ok())
    .map(|p| (p.to_path_buf(), p.to_path_buf()))
    .collect()
}

pub(crate) fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 {
        return Err(format!("{id:?} must be 1 to 64 characters"));
    }
    if id.starts_with('.') {
        return Err(format!("{id:?} must not start with a dot"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(format!("{id:?} may only contain A-Z a-z 0-9 _ . -"));
    }
    Ok(())
}

fn validate_hostname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("{name:?} must be 1 to 64 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(format!("{name:?} may only contain A-Z a-z 0-9 - ."));
    }
    Ok(())
}

/// A path inside the sandbox must be absolute and normal: no `.`, `..` or empty components,
/// so that joining it to the root cannot escape the root.
fn check_sandbox_path(path: &Path) -> Result<(), String> {
    if !path.is_absolute() {
        return Err(format!("{} is not absolute", path.display()));
    }
    if path.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(format!("{} contains a NUL byte", path.display()));
    }
    // Checked on the bytes: `Path::components` would silently drop `.` and `//`.
    let bytes = path.as_os_str().as_encoded_bytes();
    if bytes != b"/"
        && bytes[1..]
            .split(|&b| b == b'/')
            .any(|segment| matches!(segment, b"" | b"." | b".."))
    {
        return Err(format!(
            "{} must be normal: no ., .., empty components or trailing slash",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SandboxSpec {
        SandboxSpec::new(
            "fn-1",
            "/var/lib/ember/sandboxes/fn-1",
            vec!["/bin/true".into()],
        )
    }

    #[test]
    fn defaults_are_lambdas() {
        let s = spec();
        assert_eq!(s.tmp_bytes, 512 << 20);
        assert_eq!(s.pids_max, 1024);
        assert_eq!(s.nofile, 1024);
        assert_eq!(s.cwd, Path::new("/var/task"));
        s.validate().unwrap();
    }

    #[test]
    fn ids_are_safe_directory_names() {
        for good in ["a", "fn-1.v2_x", &"x".repeat(64)] {
            validate_id(good).unwrap();
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", &"x".repeat(65), "é"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn binds_may_not_touch_what_the_sandbox_builds() {
        for inside in [
            "/proc",
            "/proc/sys",
            "/dev",
            "/tmp/x",
            "/var/task",
            "/var",
            "/etc",
            "/etc/passwd",
            "/",
        ] {
            let mut s = spec();
            s.ro_binds = vec![("/usr".into(), inside.into())];
            assert!(s.validate().is_err(), "bind at {inside} accepted");
        }
        for inside in ["/usr", "/etc/ssl", "/var/lib/x", "/opt/python"] {
            let mut s = spec();
            s.ro_binds = vec![("/usr".into(), inside.into())];
            s.validate().unwrap();
        }
    }

    #[test]
    fn sandbox_paths_must_be_normal() {
        for bad in ["usr", "/usr/../etc", "/usr/./lib", "/a//b/.."] {
            let mut s = spec();
            s.ro_binds = vec![("/usr".into(), bad.into())];
            assert!(s.validate().is_err(), "{bad} accepted");
        }
        let mut s = spec();
        s.cwd = "/var/task/../..".into();
        assert!(s.validate().is_err());
    }

    #[test]
    fn rejects_nonsense_limits_and_argv() {
        let mut s = spec();
        s.memory_bytes = 1 << 20;
        assert!(s.validate().is_err());
        let mut s = spec();
        s.argv.clear();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.env = vec![("A=B".into(), "c".into())];
        assert!(s.validate().is_err());
        let mut s = spec();
        s.hostname = "bad host".into();
        assert!(s.validate().is_err());
    }

    #[test]
    fn spec_round_trips_through_json() {
        let mut s = spec();
        s.ro_binds = system_ro_binds();
        s.env = vec![("A".into(), "1".into())];
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SandboxSpec>(&json).unwrap(), s);
    }
}
