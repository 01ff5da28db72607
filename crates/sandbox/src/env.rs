//! What this host can enforce ([`Environment`], detected once) and the human-readable
//! account of it ([`IsolationReport`]) that `ember doctor` and `ember serve` print.

use std::fmt;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cgroup::{CgroupLayout, CgroupVersion, Controller};
use crate::init::RUNTIME_API_ADDR;
use crate::mountinfo;
use crate::protocol::{Identity, Namespaces, SANDBOX_UID};
use crate::seccomp;
use crate::{SandboxError, SandboxSpec};

/// First host uid/gid handed to sandboxes by default: above systemd's container range
/// (`0x80000`–`0x6FFFFFFF`, which `systemd-nspawn` and rootless tools pick from) and below
/// the ids that 32-bit signed code mishandles.
pub const DEFAULT_UID_BASE: u32 = 0x7000_0000;
/// Host ids per sandbox: one for the sandbox's root, one for the payload.
const IDS_PER_SANDBOX: u32 = 2;

/// How to run sandboxes on this host. [`EnvironmentConfig::new`] has the defaults.
#[derive(Clone, Debug)]
pub struct EnvironmentConfig {
    /// Where cgroup hierarchies are mounted (`/sys/fs/cgroup`): a cgroup2 mount, or the
    /// directory holding v1 controller mounts. Point it at a delegated v2 subtree to keep
    /// Ember inside its own service's cgroup.
    pub cgroup_root: PathBuf,
    /// Name of the cgroup that holds every sandbox's cgroup (`ember`).
    pub cgroup_parent: String,
    /// Directory holding the sandboxes' root directories (created if missing).
    pub sandboxes_dir: PathBuf,
    /// The program re-executed as the init helper: `/proc/self/exe`, i.e. the running
    /// binary, whose `main` must call [`crate::init_if_requested`] first thing.
    pub init_program: PathBuf,
    /// Start sandboxes even if some protection is missing (the report says which).
    pub allow_degraded: bool,
    /// Use a user namespace (sandbox root is an unprivileged host uid). When false, or
    /// when unusable, a root host runs sandbox processes as unprivileged host uids without
    /// capabilities instead.
    pub user_namespace: bool,
    /// First host uid/gid of the sandboxes' ranges (two ids per concurrent sandbox).
    pub uid_base: u32,
    /// How many sandboxes may exist at once (each takes two host ids).
    pub max_sandboxes: u32,
    /// How long `spawn` waits for the helper to report.
    pub spawn_timeout: Duration,
    /// How long `destroy` waits for killed processes to disappear.
    pub kill_timeout: Duration,
}

impl EnvironmentConfig {
    /// The defaults: `/sys/fs/cgroup`, parent `ember`, `/proc/self/exe`, user namespace on,
    /// nothing degraded allowed.
    pub fn new(sandboxes_dir: impl Into<PathBuf>) -> Self {
        EnvironmentConfig {
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            cgroup_parent: "ember".to_owned(),
            sandboxes_dir: sandboxes_dir.into(),
            init_program: PathBuf::from("/proc/self/exe"),
            allow_degraded: false,
            user_namespace: true,
            uid_base: DEFAULT_UID_BASE,
            max_sandboxes: 65_536,
            spawn_timeout: Duration::from_secs(10),
            kill_timeout: Duration::from_secs(5),
        }
    }
}

/// The state of one protection on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// Enforced; the text says how.
    Available(String),
    /// Deliberately not used (configuration); the text says what replaces it.
    Disabled(String),
    /// Not enforceable here; the text says why and what to do.
    Missing(String),
}

impl Check {
    /// True unless missing.
    pub fn is_ok(&self) -> bool {
        !matches!(self, Check::Missing(_))
    }
}

/// Each protection a sandbox relies on, and whether this host provides it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsolationReport {
    /// Running as root (per-sandbox host uids, cgroups, mounts).
    pub root: Check,
    /// User namespace: the sandbox's root is an unprivileged uid on the host.
    pub user_namespace: Check,
    /// Own mount namespace (own root filesystem).
    pub mount_namespace: Check,
    /// Own pid namespace (sees only its own processes).
    pub pid_namespace: Check,
    /// Own network namespace (loopback only).
    pub net_namespace: Check,
    /// Own IPC namespace.
    pub ipc_namespace: Check,
    /// Own UTS namespace (hostname).
    pub uts_namespace: Check,
    /// Own cgroup namespace (hides the host's cgroup paths).
    pub cgroup_namespace: Check,
    /// A usable cgroup hierarchy, and its version.
    pub cgroups: Check,
    /// Memory limit.
    pub memory_controller: Check,
    /// Process-count limit.
    pub pids_controller: Check,
    /// CPU weight.
    pub cpu_controller: Check,
    /// Seccomp filter.
    pub seccomp: Check,
    /// `pivot_root` into the sandbox's root.
    pub pivot_root: Check,
}

impl IsolationReport {
    /// Every check with its name, in display order.
    pub fn entries(&self) -> [(&'static str, &Check); 14] {
        [
            ("root privileges", &self.root),
            ("user namespace", &self.user_namespace),
            ("mount namespace", &self.mount_namespace),
            ("pid namespace", &self.pid_namespace),
            ("network namespace", &self.net_namespace),
            ("ipc namespace", &self.ipc_namespace),
            ("uts namespace", &self.uts_namespace),
            ("cgroup namespace", &self.cgroup_namespace),
            ("cgroups", &self.cgroups),
            ("memory limit", &self.memory_controller),
            ("process limit", &self.pids_controller),
            ("cpu weight", &self.cpu_controller),
            ("seccomp filter", &self.seccomp),
            ("pivot_root", &self.pivot_root),
        ]
    }

    /// The missing protections with their reasons.
    pub fn missing(&self) -> Vec<(&'static str, &str)> {
        self.entries()
            .into_iter()
            .filter_map(|(name, check)| match check {
                Check::Missing(why) => Some((name, why.as_str())),
                _ => None,
            })
            .collect()
    }

    /// True if every protection is available (or deliberately replaced).
    pub fn is_complete(&self) -> bool {
        self.missing().is_empty()
    }
}

impl fmt::Display for IsolationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, check) in self.entries() {
            let (tag, text) = match check {
                Check::Available(t) => ("ok", t),
                Check::Disabled(t) => ("off", t),
                Check::Missing(t) => ("MISSING", t),
            };
            writeln!(f, "  [{tag:<7}] {name:<17} {text}")?;
        }
        if self.is_complete() {
            write!(f, "  sandboxes are fully isolated")
        } else {
            write!(
                f,
                "  sandboxes are NOT fully isolated: {} protection(s) missing",
                self.missing().len()
            )
        }
    }
}

/// How sandbox ids are chosen on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IdMode {
    /// Root + user namespace: a two-id range per sandbox.
    Range,
    /// Not root + user namespace: our own ids only.
    OwnIds { uid: u32, gid: u32 },
    /// Root without user namespace: two host ids per sandbox, no capabilities.
    HostIds,
}

/// What this host can enforce, detected once, plus the state shared by all sandboxes of
/// one Ember process (the allocation of host uid ranges). `Send + Sync`: share it.
pub struct Environment {
    config: EnvironmentConfig,
    report: IsolationReport,
    cgroups: Option<CgroupLayout>,
    id_mode: Option<IdMode>,
    namespaces: Namespaces,
    seccomp: bool,
    slots: Arc<Mutex<Vec<bool>>>,
    cgroup_parent_ready: Mutex<bool>,
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Environment")
            .field("config", &self.config)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

fn ns_supported(name: &str) -> bool {
    Path::new("/proc/self/ns").join(name).exists()
}

impl Environment {
    /// Detects what this host provides, with the default configuration, cgroups under
    /// `cgroup_root` (default `/sys/fs/cgroup`) and sandbox roots under `sandboxes_dir`.
    pub fn detect(cgroup_root: Option<PathBuf>, sandboxes_dir: PathBuf) -> Environment {
        let mut config = EnvironmentConfig::new(sandboxes_dir);
        if let Some(root) = cgroup_root {
            config.cgroup_root = root;
        }
        Environment::detect_with(config)
    }

    /// Detects what this host provides, with an explicit configuration.
    pub fn detect_with(config: EnvironmentConfig) -> Environment {
        let euid = nix::unistd::geteuid();
        let is_root = euid.is_root();
        let mounts = mountinfo::read().unwrap_or_default();
        let base = config.uid_base;

        let root = if is_root {
            Check::Available("running as root".into())
        } else {
            Check::Missing(format!(
                "running as uid {euid}: every sandbox shares that uid, and cgroup limits need a \
                 delegated cgroup"
            ))
        };

        let user_namespace = if !config.user_namespace {
            Check::Disabled(format!(
                "by configuration: sandbox processes run as host uids {base}+2n (pid 1) and \
                 {base}+2n+1 (payload) without capabilities"
            ))
        } else if !ns_supported("user") {
            Check::Missing("the kernel has no user namespaces".into())
        } else if read_trimmed("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
            Check::Missing("user.max_user_namespaces is 0".into())
        } else if !is_root
            && (read_trimmed("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0")
                || read_trimmed("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
                    .as_deref()
                    == Some("1"))
        {
            Check::Missing(
                "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone or \
                 apparmor_restrict_unprivileged_userns)"
                    .into(),
            )
        } else if let Some(over) = mountinfo::proc_overmounts(&mounts).first() {
            Check::Missing(format!(
                "{} is mounted over part of the host's /proc (as in most containers), so the \
                 kernel refuses a fresh /proc inside a user namespace; set user_namespace = false",
                over.display()
            ))
        } else if is_root {
            Check::Available(format!(
                "sandbox root is host uid {base}+2n, the payload (uid {SANDBOX_UID}) host uid {base}+2n+1"
            ))
        } else {
            Check::Available(format!(
                "your uid {euid} is the sandbox's (capability-less) root; all sandboxes share it"
            ))
        };
        let userns_ok = matches!(user_namespace, Check::Available(_));
        let can_unshare = is_root || userns_ok;
        let id_mode = match (is_root, userns_ok) {
            (true, true) => Some(IdMode::Range),
            (false, true) => Some(IdMode::OwnIds {
                uid: euid.as_raw(),
                gid: nix::unistd::getegid().as_raw(),
            }),
            (true, false) => Some(IdMode::HostIds),
            (false, false) => None,
        };
        let namespace = |name: &str, what: &str| {
            if !ns_supported(name) {
                Check::Missing(format!("the kernel has no {name} namespaces"))
            } else if !can_unshare {
                Check::Missing("needs root or a usable user namespace".into())
            } else {
                Check::Available(what.to_owned())
            }
        };
        let mount_namespace =
            namespace("mnt", "own root filesystem; nothing propagates to the host");
        let pid_namespace = namespace("pid", "sees only its own processes; dies with its pid 1");
        let net_namespace = namespace(
            "net",
            &format!("loopback only; the Runtime API listens at {RUNTIME_API_ADDR}"),
        );
        let ipc_namespace = namespace("ipc", "own System V IPC and POSIX message queues");
        let uts_namespace = namespace("uts", "own hostname");
        let cgroup_namespace = namespace("cgroup", "host cgroup paths hidden");

        let layout = CgroupLayout::detect(&config.cgroup_root, &config.cgroup_parent);
        let (cgroups, memory_controller, pids_controller, cpu_controller) = match &layout {
            Err(why) => {
                let missing = || Check::Missing("no usable cgroup hierarchy".into());
                (Check::Missing(why.clone()), missing(), missing(), missing())
            }
            Ok(layout) => {
                let controller = |c: Controller, text: String| {
                    if layout.has(c) {
                        Check::Available(text)
                    } else {
                        Check::Missing(format!(
                            "the {} controller is not available under {}",
                            c.name(),
                            layout.root.display()
                        ))
                    }
                };
                let swap = match layout.version {
                    CgroupVersion::V2 => "memory.max, swap off where memory.swap.max exists",
                    CgroupVersion::V1 => {
                        if layout
                            .root
                            .join("memory/memory.memsw.limit_in_bytes")
                            .exists()
                        {
                            "memory.limit_in_bytes and memory.memsw (swap included)"
                        } else {
                            "memory.limit_in_bytes; swap not limited (no swap accounting)"
                        }
                    }
                };
                let cpu = match layout.version {
                    CgroupVersion::V2 => "cpu.weight proportional to memory",
                    CgroupVersion::V1 => "cpu.shares proportional to memory",
                };
                (
                    Check::Available(format!(
                        "{} at {}, sandboxes under {}/",
                        layout.version,
                        layout.root.display(),
                        layout.parent
                    )),
                    controller(Controller::Memory, swap.to_owned()),
                    controller(
                        Controller::Pids,
                        "pids.max = the spec's limit + 2 helpers".to_owned(),
                    ),
                    controller(Controller::Cpu, cpu.to_owned()),
                )
            }
        };

        let seccomp = if !cfg!(target_arch = "x86_64") {
            Check::Missing("the filter is only built for x86-64".into())
        } else if read_trimmed("/proc/sys/kernel/seccomp/actions_avail")
            .is_some_and(|a| a.split_whitespace().any(|x| x == "errno"))
        {
            Check::Available(format!(
                "{} syscalls denied (EPERM), clone with namespace flags, device mknod, vsock; x32 blocked",
                seccomp::DENIED.len()
            ))
        } else {
            Check::Missing("the kernel has no seccomp filters".into())
        };

        let pivot_root = if !matches!(mount_namespace, Check::Available(_)) {
            Check::Missing("needs a mount namespace".into())
        } else if mountinfo::root_fs_type(&mounts) == Some("rootfs") {
            Check::Missing(
                "the host runs from its initramfs (rootfs), which pivot_root cannot leave".into(),
            )
        } else {
            Check::Available("root is a private tmpfs; the host's tree is detached".into())
        };

        let namespaces = Namespaces {
            mount: mount_namespace.is_ok(),
            pid: pid_namespace.is_ok(),
            net: net_namespace.is_ok(),
            ipc: ipc_namespace.is_ok(),
            uts: uts_namespace.is_ok(),
            cgroup: cgroup_namespace.is_ok(),
        };
        let seccomp_ok = seccomp.is_ok();
        let slots = vec![false; config.max_sandboxes as usize];
        Environment {
            report: IsolationReport {
                root,
                user_namespace,
                mount_namespace,
                pid_namespace,
                net_namespace,
                ipc_namespace,
                uts_namespace,
                cgroup_namespace,
                cgroups,
                memory_controller,
                pids_controller,
                cpu_controller,
                seccomp,
                pivot_root,
            },
            cgroups: layout.ok(),
            id_mode,
            namespaces,
            seccomp: seccomp_ok,
            slots: Arc::new(Mutex::new(slots)),
            cgroup_parent_ready: Mutex::new(false),
            config,
        }
    }

    /// What this host enforces, protection by protection.
    pub fn report(&self) -> IsolationReport {
        self.report.clone()
    }

    /// The configuration this environment was detected with.
    pub fn config(&self) -> &EnvironmentConfig {
        &self.config
    }

    /// Directory holding the sandboxes' root directories.
    pub fn sandboxes_dir(&self) -> &Path {
        &self.config.sandboxes_dir
    }

    /// The root directory a sandbox with this id should use.
    pub fn root_dir_for(&self, id: &str) -> PathBuf {
        self.config.sandboxes_dir.join(id)
    }

    /// The cgroup version Ember's cgroups use here, if any.
    pub fn cgroup_version(&self) -> Option<CgroupVersion> {
        self.cgroups.as_ref().map(|l| l.version)
    }

    pub(crate) fn cgroup_layout(&self) -> Option<&CgroupLayout> {
        self.cgroups.as_ref()
    }

    pub(crate) fn namespaces(&self) -> Namespaces {
        self.namespaces
    }

    pub(crate) fn seccomp_available(&self) -> bool {
        self.seccomp
    }

    /// Refuses a spawn the host cannot isolate, or that the configuration does not allow
    /// in degraded form; checks where the root directory lies.
    pub(crate) fn admit(&self, spec: &SandboxSpec) -> Result<(), SandboxError> {
        if self.id_mode.is_none() || !self.namespaces.mount || !self.report.pivot_root.is_ok() {
            let why = self
                .report
                .missing()
                .into_iter()
                .map(|(name, why)| format!("{name}: {why}"))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(SandboxError::Unsupported(why));
        }
        if !self.report.is_complete() && !self.config.allow_degraded {
            let missing = self
                .report
                .missing()
                .into_iter()
                .map(|(name, why)| format!("{name} ({why})"))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(SandboxError::Degraded { missing });
        }
        if spec.root_dir.parent() != Some(self.config.sandboxes_dir.as_path()) {
            return Err(SandboxError::InvalidSpec {
                field: "root_dir",
                reason: format!(
                    "{} must be a direct child of the sandboxes directory {}",
                    spec.root_dir.display(),
                    self.config.sandboxes_dir.display()
                ),
            });
        }
        Ok(())
    }

    /// The identity for a new sandbox, reserving its host ids.
    pub(crate) fn allocate_identity(&self) -> Result<(Identity, Option<UidSlot>), SandboxError> {
        let mode = self.id_mode.ok_or_else(|| {
            SandboxError::Unsupported("needs root or a usable user namespace".into())
        })?;
        if let IdMode::OwnIds { uid, gid } = mode {
            return Ok((Identity::MappedSelf { uid, gid }, None));
        }
        let slot = UidSlot::allocate(&self.slots)?;
        let host_base = self.config.uid_base + slot.index * IDS_PER_SANDBOX;
        let identity = match mode {
            IdMode::Range => Identity::MappedRange { host_base },
            _ => Identity::HostIds { host_base },
        };
        Ok((identity, Some(slot)))
    }

    /// Creates the cgroup parent once per environment.
    pub(crate) fn ensure_cgroup_parent(&self, layout: &CgroupLayout) -> Result<(), SandboxError> {
        let mut ready = self
            .cgroup_parent_ready
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !*ready {
            layout.ensure_parent()?;
            *ready = true;
        }
        Ok(())
    }

    /// Creates the sandboxes directory if needed (traversable, not listable, by others:
    /// the sandbox's own unprivileged ids must reach their root directory).
    /// Make `<sandboxes>/.slots` a shared mount (once), so that what the host mounts in a
    /// slot propagates to the sandbox whose `/var/task` is bound from it.
    pub(crate) fn ensure_slots(&self) -> Result<PathBuf, SandboxError> {
        let dir = self.config.sandboxes_dir.join(crate::spec::SLOTS_DIR);
        let _guard = SLOTS_SETUP.lock().unwrap_or_else(|e| e.into_inner());
        if !dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(&dir)
                .map_err(|e| SandboxError::io("create the task slots directory", &dir, e))?;
        }
        let mounts = crate::mountinfo::read()
            .map_err(|e| SandboxError::io("read", "/proc/self/mountinfo", e))?;
        if !mounts.iter().any(|m| m.mount_point == dir) {
            use nix::mount::{MsFlags, mount};
            mount(
                Some(&dir),
                &dir,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| SandboxError::io("bind the task slots directory", &dir, e.into()))?;
            mount(
                None::<&str>,
                &dir,
                None::<&str>,
                MsFlags::MS_SHARED,
                None::<&str>,
            )
            .map_err(|e| SandboxError::io("share the task slots mount", &dir, e.into()))?;
        }
        Ok(dir)
    }

    /// Make the host directory `src` visible (read-only binds only) at a path every
    /// sandbox can reach: `<sandboxes>/.published/<name>`. A sandbox's processes are
    /// unprivileged host uids, so they cannot bind from a directory under, say, a `0700`
    /// home; the host (root) binds it here once. Idempotent.
    pub fn publish(&self, src: &Path, name: &str) -> Result<PathBuf, SandboxError> {
        crate::spec::validate_id(name).map_err(|reason| SandboxError::InvalidSpec {
            field: "name",
            reason,
        })?;
        let dir = self.config.sandboxes_dir.join(PUBLISHED_DIR);
        let target = dir.join(name);
        let _guard = SLOTS_SETUP.lock().unwrap_or_else(|e| e.into_inner());
        let mounts = crate::mountinfo::read()
            .map_err(|e| SandboxError::io("read", "/proc/self/mountinfo", e))?;
        if mounts.iter().any(|m| m.mount_point == target) {
            return Ok(target);
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&dir)
            .map_err(|e| SandboxError::io("create the published directory", &dir, e))?;
        match fs::create_dir(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(SandboxError::io("create a publication point", &target, e)),
        }
        nix::mount::mount(
            Some(src),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| SandboxError::io("publish", &target, e.into()))?;
        Ok(target)
    }

    /// Undo [`Environment::publish`] and the task slots' shared mount once no sandbox
    /// uses them (at shutdown), and remove the (then empty) parent cgroup, so that no
    /// mount or cgroup outlives the server.
    pub fn release(&self) -> Result<(), SandboxError> {
        let _guard = SLOTS_SETUP.lock().unwrap_or_else(|e| e.into_inner());
        let published = self.config.sandboxes_dir.join(PUBLISHED_DIR);
        let mut points: Vec<PathBuf> = fs::read_dir(&published)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        points.push(self.config.sandboxes_dir.join(crate::spec::SLOTS_DIR));
        for point in points {
            match nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(SandboxError::io("unmount", &point, e.into())),
            }
            match fs::remove_dir(&point) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SandboxError::io("remove", &point, e)),
            }
        }
        match fs::remove_dir(&published) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SandboxError::io("remove", &published, e)),
        }
        // The parent cgroup too, once empty (a sandbox still alive keeps it: rmdir of a
        // cgroup with children fails, and it is made again when needed).
        if let Some(layout) = &self.cgroups {
            let mut ready = self
                .cgroup_parent_ready
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let mut removed = true;
            for dir in layout.parent_dirs() {
                match fs::remove_dir(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(_) => removed = false,
                }
            }
            if removed {
                *ready = false;
            }
        }
        Ok(())
    }

    pub(crate) fn ensure_sandboxes_dir(&self) -> Result<(), SandboxError> {
        let dir = &self.config.sandboxes_dir;
        if !dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(dir)
                .map_err(|e| SandboxError::io("create the sandboxes directory", dir, e))?;
        }
        Ok(())
    }
}

/// Name of the directory, inside the sandboxes directory, of [`Environment::publish`].
pub(crate) const PUBLISHED_DIR: &str = ".published";

/// Serialises the one-time set-up of the shared slots mount between threads.
static SLOTS_SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Checks that `path` and every directory above it can be searched by others: the
/// sandbox's processes are unprivileged host uids, so a `0700` directory anywhere on the
/// way makes the path unreachable for them.
pub(crate) fn check_reachable(field: &'static str, path: &Path) -> Result<(), SandboxError> {
    let mut current = Some(path);
    while let Some(dir) = current {
        let meta = fs::metadata(dir).map_err(|e| SandboxError::io("inspect", dir, e))?;
        if meta.is_dir() && meta.permissions().mode() & 0o001 == 0 {
            return Err(SandboxError::InvalidSpec {
                field,
                reason: format!(
                    "{} (mode {:o}) is not searchable by others, but sandbox processes run as \
                     unprivileged host uids",
                    dir.display(),
                    meta.permissions().mode() & 0o7777
                ),
            });
        }
        current = dir.parent();
    }
    Ok(())
}

/// A reserved pair of host ids, returned when dropped.
#[derive(Debug)]
pub(crate) struct UidSlot {
    index: u32,
    slots: Arc<Mutex<Vec<bool>>>,
}

impl UidSlot {
    fn allocate(slots: &Arc<Mutex<Vec<bool>>>) -> Result<UidSlot, SandboxError> {
        let mut used = slots.lock().unwrap_or_else(|e| e.into_inner());
        let index = used
            .iter()
            .position(|u| !u)
            .ok_or(SandboxError::NoUidSlot {
                slots: used.len() as u32,
            })?;
        used[index] = true;
        Ok(UidSlot {
            index: index as u32,
            slots: Arc::clone(slots),
        })
    }
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        let mut used = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        used[self.index as usize] = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_with(memory: Check) -> IsolationReport {
        let ok = || Check::Available("yes".into());
        IsolationReport {
            root: ok(),
            user_namespace: Check::Disabled("by configuration".into()),
            mount_namespace: ok(),
            pid_namespace: ok(),
            net_namespace: ok(),
            ipc_namespace: ok(),
            uts_namespace: ok(),
            cgroup_namespace: ok(),
            cgroups: ok(),
            memory_controller: memory,
            pids_controller: ok(),
            cpu_controller: ok(),
            seccomp: ok(),
            pivot_root: ok(),
        }
    }

    #[test]
    fn report_lists_every_protection_and_what_is_missing() {
        let complete = report_with(Check::Available("memory.max".into()));
        assert!(complete.is_complete(), "disabled is not missing");
        let text = complete.to_string();
        assert_eq!(text.lines().count(), 15);
        assert!(text.contains("[off    ] user namespace"), "{text}");
        assert!(text.ends_with("fully isolated"));

        let partial = report_with(Check::Missing("no memory controller".into()));
        assert_eq!(
            partial.missing(),
            [("memory limit", "no memory controller")]
        );
        let text = partial.to_string();
        assert!(
            text.contains("[MISSING] memory limit      no memory controller"),
            "{text}"
        );
        assert!(text.contains("NOT fully isolated: 1 protection(s) missing"));
    }

    #[test]
    fn uid_slots_are_unique_and_reused_after_release() {
        let slots = Arc::new(Mutex::new(vec![false; 2]));
        let a = UidSlot::allocate(&slots).unwrap();
        let b = UidSlot::allocate(&slots).unwrap();
        assert_ne!(a.index, b.index);
        assert!(matches!(
            UidSlot::allocate(&slots),
            Err(SandboxError::NoUidSlot { slots: 2 })
        ));
        let freed = a.index;
        drop(a);
        assert_eq!(UidSlot::allocate(&slots).unwrap().index, freed);
    }

    #[test]
    fn unreachable_paths_are_explained() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let inner = tmp.path().join("code");
        fs::create_dir(&inner).unwrap();
        let err = check_reachable("code_dir", &inner).unwrap_err().to_string();
        assert!(err.contains("not searchable by others"), "{err}");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        check_reachable("code_dir", &inner).unwrap();
    }

    #[test]
    fn detection_against_an_empty_cgroup_root_reports_why() {
        let tmp = tempfile::tempdir().unwrap();
        let env = Environment::detect(Some(tmp.path().to_path_buf()), tmp.path().join("sb"));
        let report = env.report();
        assert!(matches!(&report.cgroups, Check::Missing(why) if why.contains("neither")));
        assert!(!report.memory_controller.is_ok());
        assert_eq!(env.root_dir_for("x"), tmp.path().join("sb/x"));
    }
}
