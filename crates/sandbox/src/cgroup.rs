//! cgroup v1 and v2 behind one interface: [`CgroupLayout`] (where Ember's cgroups live on
//! this host) and [`Cgroup`] (one sandbox's cgroup: limits, statistics, kill, remove).
//!
//! Every Ember cgroup is `<parent>/<sandbox id>`: on v2 `<root>/<parent>/<id>`, on v1
//! `<root>/<controller>/<parent>/<id>` for each controller used (memory, pids, cpu,
//! freezer). One parent makes [`crate::cleanup_stale`] possible after a crash: whatever is
//! under it belongs to Ember.
//!
//! The root is injected (default `/sys/fs/cgroup`), so the path and limit logic is tested
//! against a temporary directory without root. What the kernel would do itself (create the
//! interface files in a new cgroup directory) those tests do by hand.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{AccessFlags, Pid, access};

use crate::SandboxError;
use crate::spec::validate_id;

/// Which cgroup hierarchy the host uses for Ember's cgroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Legacy: one hierarchy per controller (`/sys/fs/cgroup/memory`, ...).
    V1,
    /// Unified: one hierarchy, controllers enabled per subtree.
    V2,
}

impl std::fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "cgroup v1",
            CgroupVersion::V2 => "cgroup v2",
        })
    }
}

/// The controllers Ember uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Controller {
    Memory,
    Pids,
    Cpu,
    /// v1 only: v2 has `cgroup.freeze` (and `cgroup.kill`) in every cgroup.
    Freezer,
}

impl Controller {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
            Controller::Freezer => "freezer",
        }
    }
}

const V1_CONTROLLERS: [Controller; 4] = [
    Controller::Memory,
    Controller::Pids,
    Controller::Cpu,
    Controller::Freezer,
];
const V2_CONTROLLERS: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

/// Where Ember's cgroups live on this host, and which controllers they get.
#[derive(Clone, Debug)]
pub(crate) struct CgroupLayout {
    pub version: CgroupVersion,
    pub root: PathBuf,
    pub parent: String,
    pub controllers: Vec<Controller>,
}

impl CgroupLayout {
    /// Looks at `root`: a cgroup2 mount (it has `cgroup.controllers`) means v2, directories
    /// of v1 controller hierarchies (`memory/cgroup.procs`, ...) mean v1. The error says
    /// why neither is usable.
    pub(crate) fn detect(root: &Path, parent: &str) -> Result<CgroupLayout, String> {
        validate_id(parent).map_err(|e| format!("cgroup parent name {e}"))?;
        if !root.is_dir() {
            return Err(format!("{} does not exist", root.display()));
        }
        let v2_controllers = root.join("cgroup.controllers");
        let layout = if v2_controllers.exists() {
            let available = fs::read_to_string(&v2_controllers)
                .map_err(|e| format!("cannot read {}: {e}", v2_controllers.display()))?;
            let names: BTreeSet<&str> = available.split_whitespace().collect();
            CgroupLayout {
                version: CgroupVersion::V2,
                root: root.to_path_buf(),
                parent: parent.to_owned(),
                controllers: V2_CONTROLLERS
                    .into_iter()
                    .filter(|c| names.contains(c.name()))
                    .collect(),
            }
        } else {
            let controllers: Vec<Controller> = V1_CONTROLLERS
                .into_iter()
                .filter(|c| root.join(c.name()).join("cgroup.procs").exists())
                .collect();
            if controllers.is_empty() {
                return Err(format!(
                    "{} holds neither a cgroup v2 hierarchy nor cgroup v1 controllers",
                    root.display()
                ));
            }
            CgroupLayout {
                version: CgroupVersion::V1,
                root: root.to_path_buf(),
                parent: parent.to_owned(),
                controllers,
            }
        };
        for dir in layout.hierarchy_roots() {
            let existing = if dir.join(&layout.parent).is_dir() {
                dir.join(&layout.parent)
            } else {
                dir
            };
            if access(&existing, AccessFlags::W_OK).is_err() {
                return Err(format!(
                    "{} is not writable (needs root, or a cgroup delegated to this user)",
                    existing.display()
                ));
            }
        }
        Ok(layout)
    }

    pub(crate) fn has(&self, controller: Controller) -> bool {
        self.controllers.contains(&controller)
    }

    /// The directories under which `<parent>` is created: the v2 root, or each v1
    /// controller's hierarchy.
    fn hierarchy_roots(&self) -> Vec<PathBuf> {
        match self.version {
            CgroupVersion::V2 => vec![self.root.clone()],
            CgroupVersion::V1 => self
                .controllers
                .iter()
                .map(|c| self.root.join(c.name()))
                .collect(),
        }
    }

    /// `<parent>` in every hierarchy.
    pub(crate) fn parent_dirs(&self) -> Vec<PathBuf> {
        self.hierarchy_roots()
            .into_iter()
            .map(|d| d.join(&self.parent))
            .collect()
    }

    /// The cgroup of sandbox `id` (whether or not it exists).
    pub(crate) fn cgroup(&self, id: &str) -> Cgroup {
        let dirs = match self.version {
            CgroupVersion::V2 => Dirs::V2(self.root.join(&self.parent).join(id)),
            CgroupVersion::V1 => Dirs::V1(
                self.controllers
                    .iter()
                    .map(|&c| (c, self.root.join(c.name()).join(&self.parent).join(id)))
                    .collect(),
            ),
        };
        Cgroup {
            dirs,
            controllers: self.controllers.clone(),
        }
    }

    /// Creates `<parent>` and, on v2, enables Ember's controllers for its children (in the
    /// root's and the parent's `cgroup.subtree_control`). Idempotent.
    pub(crate) fn ensure_parent(&self) -> Result<(), SandboxError> {
        for dir in self.parent_dirs() {
            create_dir_if_missing(&dir)?;
        }
        if self.version == CgroupVersion::V2 && !self.controllers.is_empty() {
            enable_controllers(&self.root, &self.controllers)?;
            enable_controllers(&self.root.join(&self.parent), &self.controllers)?;
        }
        Ok(())
    }

    /// Creates the cgroup of sandbox `id` with `limits` applied. Fails if it exists (the id
    /// is in use). On failure nothing is left behind.
    pub(crate) fn create(&self, id: &str, limits: &Limits) -> Result<Cgroup, SandboxError> {
        let cgroup = self.cgroup(id);
        cgroup.create_dirs()?;
        if let Err(e) = cgroup.apply_limits(limits) {
            let _ = cgroup.remove(Duration::ZERO);
            return Err(e);
        }
        Ok(cgroup)
    }

    /// Ids of every sandbox cgroup under `<parent>`, in any hierarchy.
    pub(crate) fn list_sandboxes(&self) -> Result<Vec<String>, SandboxError> {
        let mut ids = BTreeSet::new();
        for dir in self.parent_dirs() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(SandboxError::cgroup("list", dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| SandboxError::cgroup("list", &dir, e))?;
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
                let name = entry.file_name().to_str().map(str::to_owned);
                if let Some(name) = name.filter(|n| is_dir && validate_id(n).is_ok()) {
                    ids.insert(name);
                }
            }
        }
        Ok(ids.into_iter().collect())
    }
}

fn create_dir_if_missing(dir: &Path) -> Result<(), SandboxError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(SandboxError::cgroup("create", dir, e)),
    }
}

fn enable_controllers(dir: &Path, controllers: &[Controller]) -> Result<(), SandboxError> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&file).map_err(|e| SandboxError::cgroup("read", &file, e))?;
    let enabled: BTreeSet<&str> = enabled.split_whitespace().collect();
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !enabled.contains(c.name()))
        .map(|c| format!("+{}", c.name()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write_file(&file, &missing.join(" "))
}

fn write_file(path: &Path, value: &str) -> Result<(), SandboxError> {
    fs::write(path, value).map_err(|e| SandboxError::cgroup("write", path, e))
}

/// Resource limits of one sandbox, derived from its spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub memory_bytes: u64,
    /// Includes the sandbox's own two helper processes.
    pub pids_max: u64,
}

/// One write into a cgroup interface file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LimitWrite {
    pub controller: Controller,
    pub file: &'static str,
    pub value: String,
    /// A required file that is missing is an error; an optional one is skipped (e.g. the
    /// swap files exist only with swap accounting).
    pub required: bool,
}

/// CPU weight proportional to memory, as Lambda allocates CPU: 1 GiB gets the kernel's
/// default weight (v2 `cpu.weight` 100).
pub(crate) fn cpu_weight_v2(memory_bytes: u64) -> u64 {
    ((memory_bytes >> 20) * 100 / 1024).clamp(1, 10_000)
}

/// The same proportion for v1 `cpu.shares` (default 1024 at 1 GiB).
pub(crate) fn cpu_shares_v1(memory_bytes: u64) -> u64 {
    (memory_bytes >> 20).clamp(2, 262_144)
}

/// The interface-file writes that apply `limits`, in the order they must happen (v1's
/// `memory.memsw.limit_in_bytes` may not be set below `memory.limit_in_bytes`).
pub(crate) fn limit_writes(version: CgroupVersion, limits: &Limits) -> Vec<LimitWrite> {
    let write = |controller, file, value: u64, required| LimitWrite {
        controller,
        file,
        value: value.to_string(),
        required,
    };
    match version {
        CgroupVersion::V2 => vec![
            write(Controller::Memory, "memory.max", limits.memory_bytes, true),
            write(Controller::Memory, "memory.swap.max", 0, false),
            write(Controller::Pids, "pids.max", limits.pids_max, true),
            write(
                Controller::Cpu,
                "cpu.weight",
                cpu_weight_v2(limits.memory_bytes),
                true,
            ),
        ],
        CgroupVersion::V1 => vec![
            write(
                Controller::Memory,
                "memory.limit_in_bytes",
                limits.memory_bytes,
                true,
            ),
            write(
                Controller::Memory,
                "memory.memsw.limit_in_bytes",
                limits.memory_bytes,
                false,
            ),
            write(Controller::Pids, "pids.max", limits.pids_max, true),
            write(
                Controller::Cpu,
                "cpu.shares",
                cpu_shares_v1(limits.memory_bytes),
                true,
            ),
        ],
    }
}

#[derive(Clone, Debug)]
enum Dirs {
    V1(Vec<(Controller, PathBuf)>),
    V2(PathBuf),
}

/// One sandbox's cgroup (a directory per v1 controller, or one v2 directory).
#[derive(Clone, Debug)]
pub(crate) struct Cgroup {
    dirs: Dirs,
    controllers: Vec<Controller>,
}

impl Cgroup {
    pub(crate) fn version(&self) -> CgroupVersion {
        match self.dirs {
            Dirs::V1(_) => CgroupVersion::V1,
            Dirs::V2(_) => CgroupVersion::V2,
        }
    }

    /// Every directory of this cgroup.
    pub(crate) fn dirs(&self) -> Vec<&Path> {
        match &self.dirs {
            Dirs::V1(dirs) => dirs.iter().map(|(_, d)| d.as_path()).collect(),
            Dirs::V2(dir) => vec![dir.as_path()],
        }
    }

    /// The directory holding `controller`'s files, if that controller is in use.
    fn dir_for(&self, controller: Controller) -> Option<&Path> {
        match &self.dirs {
            Dirs::V1(dirs) => dirs
                .iter()
                .find(|(c, _)| *c == controller)
                .map(|(_, d)| d.as_path()),
            Dirs::V2(dir) => self
                .controllers
                .contains(&controller)
                .then_some(dir.as_path()),
        }
    }

    /// The `cgroup.procs` files a process writes its pid into to join this cgroup.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    pub(crate) fn create_dirs(&self) -> Result<(), SandboxError> {
        let mut created: Vec<&Path> = Vec::new();
        for dir in self.dirs() {
            if let Err(e) = fs::create_dir(dir) {
                for done in created {
                    let _ = fs::remove_dir(done);
                }
                return Err(SandboxError::cgroup("create", dir, e));
            }
            created.push(dir);
        }
        Ok(())
    }

    pub(crate) fn apply_limits(&self, limits: &Limits) -> Result<(), SandboxError> {
        // v1 requires memory.memsw.limit_in_bytes >= memory.limit_in_bytes at every
        // moment: to raise both, memsw must go first (to lower them, last, as below). This
        // early write fails harmlessly when lowering.
        if self.version() == CgroupVersion::V1
            && let Some(dir) = self.dir_for(Controller::Memory)
        {
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                let _ = write_file(&memsw, &limits.memory_bytes.to_string());
            }
        }
        for write in limit_writes(self.version(), limits) {
            let Some(dir) = self.dir_for(write.controller) else {
                continue; // controller unavailable: the environment report says so
            };
            let path = dir.join(write.file);
            if !path.exists() {
                if write.required {
                    return Err(SandboxError::cgroup(
                        "write",
                        path,
                        io::Error::new(ErrorKind::NotFound, "interface file missing"),
                    ));
                }
                continue;
            }
            write_file(&path, &write.value)?;
        }
        Ok(())
    }

    fn read_u64(&self, controller: Controller, file: &str) -> Option<u64> {
        let text = fs::read_to_string(self.dir_for(controller)?.join(file)).ok()?;
        text.trim().parse().ok()
    }

    /// Memory in use now (`memory.current` / `memory.usage_in_bytes`).
    pub(crate) fn memory_current(&self) -> Option<u64> {
        match self.version() {
            CgroupVersion::V2 => self.read_u64(Controller::Memory, "memory.current"),
            CgroupVersion::V1 => self.read_u64(Controller::Memory, "memory.usage_in_bytes"),
        }
    }

    /// Highest memory use so far (`memory.peak`, Linux 5.19+ / `memory.max_usage_in_bytes`).
    pub(crate) fn memory_peak(&self) -> Option<u64> {
        match self.version() {
            CgroupVersion::V2 => self.read_u64(Controller::Memory, "memory.peak"),
            CgroupVersion::V1 => self.read_u64(Controller::Memory, "memory.max_usage_in_bytes"),
        }
    }

    /// How many processes the OOM killer killed in this cgroup (`oom_kill` of
    /// `memory.events` / `memory.oom_control`, Linux 4.13+).
    pub(crate) fn oom_kills(&self) -> Option<u64> {
        let file = match self.version() {
            CgroupVersion::V2 => "memory.events",
            CgroupVersion::V1 => "memory.oom_control",
        };
        let text = fs::read_to_string(self.dir_for(Controller::Memory)?.join(file)).ok()?;
        keyed_value(&text, "oom_kill")
    }

    /// Pids of every process in the cgroup (the union over v1 hierarchies).
    pub(crate) fn pids(&self) -> Result<BTreeSet<i32>, SandboxError> {
        let mut pids = BTreeSet::new();
        for file in self.procs_files() {
            match fs::read_to_string(&file) {
                Ok(text) => pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(SandboxError::cgroup("read", file, e)),
            }
        }
        Ok(pids)
    }

    fn set_frozen(&self, frozen: bool) {
        let (path, value) = match &self.dirs {
            Dirs::V2(dir) => (dir.join("cgroup.freeze"), if frozen { "1" } else { "0" }),
            Dirs::V1(_) => match self.dir_for(Controller::Freezer) {
                Some(dir) => (
                    dir.join("freezer.state"),
                    if frozen { "FROZEN" } else { "THAWED" },
                ),
                None => return,
            },
        };
        if path.exists() {
            let _ = fs::write(path, value);
        }
    }

    /// SIGKILLs every process in the cgroup and waits until it is empty. Uses
    /// `cgroup.kill` (v2, Linux 5.14+), which is atomic; otherwise freezes the cgroup so
    /// nothing forks while its pids are read and killed, thaws (v1 frozen tasks die only
    /// when thawed), and repeats. Returns how many processes it killed.
    pub(crate) fn kill_all(&self, timeout: Duration) -> Result<usize, SandboxError> {
        let initial = self.pids()?;
        if initial.is_empty() {
            return Ok(0);
        }
        if let Dirs::V2(dir) = &self.dirs {
            let kill_file = dir.join("cgroup.kill");
            if kill_file.exists() {
                write_file(&kill_file, "1")?;
                self.wait_empty(timeout)?;
                return Ok(initial.len());
            }
        }
        let deadline = Instant::now() + timeout;
        let mut killed = BTreeSet::new();
        let mut pause = Duration::from_micros(50);
        loop {
            if self.pids()?.is_empty() {
                return Ok(killed.len());
            }
            if Instant::now() >= deadline {
                return Err(self.still_running(timeout));
            }
            self.set_frozen(true);
            for pid in self.pids()? {
                // ESRCH: it exited in between.
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                killed.insert(pid);
            }
            self.set_frozen(false);
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    /// Waits until no process is left in the cgroup.
    pub(crate) fn wait_empty(&self, timeout: Duration) -> Result<(), SandboxError> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(20);
        while !self.pids()?.is_empty() {
            if Instant::now() >= deadline {
                return Err(self.still_running(timeout));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
        Ok(())
    }

    fn still_running(&self, waited: Duration) -> SandboxError {
        SandboxError::StillRunning {
            path: self.dirs()[0].to_path_buf(),
            remaining: self.pids().map(|p| p.len()).unwrap_or(0),
            waited,
        }
    }

    /// Removes the cgroup's directories. A cgroup whose last process has just exited can
    /// report `EBUSY` for a moment, so that is retried until `timeout`.
    pub(crate) fn remove(&self, timeout: Duration) -> Result<(), SandboxError> {
        let deadline = Instant::now() + timeout;
        for dir in self.dirs() {
            loop {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err(e) => return Err(SandboxError::cgroup("remove", dir, e)),
                }
            }
        }
        Ok(())
    }
}

/// The value of `key` in a flat-keyed cgroup file (`key value` per line).
pub(crate) fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake v1 mount: controller hierarchies with the files the kernel has at the root.
    fn fake_v1(root: &Path, controllers: &[&str]) {
        for c in controllers {
            fs::create_dir_all(root.join(c)).unwrap();
            fs::write(root.join(c).join("cgroup.procs"), "").unwrap();
        }
    }

    /// What the kernel does on mkdir of a v1 cgroup: create its interface files.
    fn populate_v1(cgroup: &Cgroup, with_memsw: bool) {
        for (controller, dir) in match &cgroup.dirs {
            Dirs::V1(d) => d.clone(),
            Dirs::V2(_) => unreachable!(),
        } {
            let mut files = vec!["cgroup.procs"];
            match controller {
                Controller::Memory => {
                    files.extend([
                        "memory.limit_in_bytes",
                        "memory.usage_in_bytes",
                        "memory.max_usage_in_bytes",
                        "memory.oom_control",
                    ]);
                    if with_memsw {
                        files.push("memory.memsw.limit_in_bytes");
                    }
                }
                Controller::Pids => files.push("pids.max"),
                Controller::Cpu => files.push("cpu.shares"),
                Controller::Freezer => files.push("freezer.state"),
            }
            for f in files {
                fs::write(dir.join(f), "").unwrap();
            }
        }
    }

    fn fake_v2(root: &Path, controllers: &str) {
        fs::write(root.join("cgroup.controllers"), controllers).unwrap();
        fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        fs::write(root.join("cgroup.procs"), "").unwrap();
    }

    fn populate_v2(dir: &Path, files: &[&str]) {
        for f in files {
            fs::write(dir.join(f), "").unwrap();
        }
    }

    fn read(path: impl AsRef<Path>) -> String {
        fs::read_to_string(path).unwrap()
    }

    const LIMITS: Limits = Limits {
        memory_bytes: 256 << 20,
        pids_max: 66,
    };

    #[test]
    fn detects_v1_controllers_and_builds_per_controller_paths() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v1(tmp.path(), &["memory", "pids", "cpu", "cpuacct", "freezer"]);
        let layout = CgroupLayout::detect(tmp.path(), "ember").unwrap();
        assert_eq!(layout.version, CgroupVersion::V1);
        assert_eq!(
            layout.controllers,
            [
                Controller::Memory,
                Controller::Pids,
                Controller::Cpu,
                Controller::Freezer
            ]
        );
        let cg = layout.cgroup("sb-1");
        assert_eq!(
            cg.procs_files(),
            ["memory", "pids", "cpu", "freezer"]
                .map(|c| tmp.path().join(c).join("ember/sb-1/cgroup.procs"))
        );
    }

    #[test]
    fn v1_without_pids_controller_is_partial_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v1(tmp.path(), &["memory"]);
        let layout = CgroupLayout::detect(tmp.path(), "ember").unwrap();
        assert_eq!(layout.controllers, [Controller::Memory]);
        assert!(!layout.has(Controller::Pids));
    }

    #[test]
    fn nothing_mounted_is_an_explained_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = CgroupLayout::detect(tmp.path(), "ember").unwrap_err();
        assert!(err.contains("neither"), "{err}");
        let err = CgroupLayout::detect(&tmp.path().join("absent"), "ember").unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        assert!(CgroupLayout::detect(tmp.path(), "../escape").is_err());
    }

    #[test]
    fn v1_limits_are_written_in_order_and_memsw_only_if_present() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v1(tmp.path(), &["memory", "pids", "cpu", "freezer"]);
        let layout = CgroupLayout::detect(tmp.path(), "ember").unwrap();
        layout.ensure_parent().unwrap();
        for (id, memsw) in [("with-swap", true), ("without-swap", false)] {
            let cg = layout.cgroup(id);
            cg.create_dirs().unwrap();
            populate_v1(&cg, memsw);
            cg.apply_limits(&LIMITS).unwrap();
            let mem = tmp.path().join("memory/ember").join(id);
            assert_eq!(
                read(mem.join("memory.limit_in_bytes")),
                (256u64 << 20).to_string()
            );
            assert_eq!(
                mem.join("memory.memsw.limit_in_bytes").exists(),
                memsw,
                "memsw must not be created when the kernel has no swap accounting"
            );
            if memsw {
                assert_eq!(
                    read(mem.join("memory.memsw.limit_in_bytes")),
                    (256u64 << 20).to_string()
                );
            }
            assert_eq!(
                read(tmp.path().join("pids/ember").join(id).join("pids.max")),
                "66"
            );
            assert_eq!(
                read(tmp.path().join("cpu/ember").join(id).join("cpu.shares")),
                "256"
            );
        }
        let writes = limit_writes(CgroupVersion::V1, &LIMITS);
        let order: Vec<_> = writes.iter().map(|w| w.file).collect();
        let limit = order
            .iter()
            .position(|f| *f == "memory.limit_in_bytes")
            .unwrap();
        let memsw = order
            .iter()
            .position(|f| *f == "memory.memsw.limit_in_bytes")
            .unwrap();
        assert!(
            limit < memsw,
            "memsw must be written after the memory limit"
        );
    }

    #[test]
    fn missing_required_file_fails_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v1(tmp.path(), &["memory", "pids"]);
        let layout = CgroupLayout::detect(tmp.path(), "ember").unwrap();
        layout.ensure_parent().unwrap();
        // Interface files absent (as if the kernel lacked them): create() must fail cleanly.
        let err = layout.create("sb", &LIMITS).unwrap_err();
        assert!(err.to_string().contains("memory.limit_in_bytes"), "{err}");
        assert!(!tmp.path().join("memory/ember/sb").exists());
        assert!(!tmp.path().join("pids/ember/sb").exists());
    }

    #[test]
    fn v2_enables_controllers_for_the_subtree_and_writes_limits() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v2(tmp.path(), "cpuset cpu io memory hugetlb pids rdma misc");
        let layout = CgroupLayout::detect(tmp.path(), "ember").unwrap();
        assert_eq!(layout.version, CgroupVersion::V2);
        assert_eq!(
            layout.controllers,
            [Controller::Memory, Controller::Pids, Controller::Cpu]
        );
        // The parent's subtree_control exists once the kernel made the directory.
        fs::create_dir(tmp.path().join("ember")).unwrap();
        fs::write(tmp.path().join("ember/cgroup.subtree_control"), "").unwrap();
        layout.ensure_parent().unwrap();
        assert_eq!(
            read(tmp.path().join("cgroup.subtree_control")),
            "+memory +pids +cpu"
        );
        assert_eq!(
            read(tmp.path().join("ember/cgroup.subtree_control")),
            "+memory +pids +cpu"
        );

        let cg = layout.cgroup("sb-2");
        assert_eq!(
            cg.procs_files(),
            [tmp.path().join("ember/sb-2/cgroup.procs")]
        );
        cg.create_dirs().unwrap();
        let dir = tmp.path().join("ember/sb-2");
        populate_v2(
            &dir,
            &["memory.max", "pids.max", "cpu.weight", "cgroup.procs"],
        );
        cg.apply_limits(&LIMITS).unwrap();
        assert_eq!(read(dir.join("memory.max")), (256u64 << 20).to_string());
        assert!(
            !dir.join("memory.swap.max").exists(),
            "no swap accounting: skipped"
        );
        assert_eq!(read(dir.join("pids.max")), "66");
        assert_eq!(read(dir.join("cpu.weight")), "25");

        populate_v2(&dir, &["memory.swap.max"]);
        cg.apply_limits(&LIMITS).unwrap();
        assert_eq!(read(dir.join("memory.swap.max")), "0");
    }

    #[test]
    fn v2_already_enabled_controllers_are_not_rewritten() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v2(tmp.path(), "memory pids cpu");
        fs::write(
            tmp.path().join("cgroup.subtree_control"),
            "cpu memory pids\n",
        )
        .unwrap();
        fs::create_dir(tmp.path().join("ember")).unwrap();
        fs::write(tmp.path().join("ember/cgroup.subtree_control"), "memory\n").unwrap();
        CgroupLayout::detect(tmp.path(), "ember")
            .unwrap()
            .ensure_parent()
            .unwrap();
        assert_eq!(
            read(tmp.path().join("cgroup.subtree_control")),
            "cpu memory pids\n"
        );
        assert_eq!(
            read(tmp.path().join("ember/cgroup.subtree_control")),
            "+pids +cpu"
        );
    }

    #[test]
    fn v2_without_memory_controller_skips_memory_limits() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v2(tmp.path(), "pids");
        let layout = CgroupLayout::detect(tmp.path(), "ember").unwrap();
        assert_eq!(layout.controllers, [Controller::Pids]);
        fs::create_dir(tmp.path().join("ember")).unwrap();
        fs::write(tmp.path().join("ember/cgroup.subtree_control"), "").unwrap();
        layout.ensure_parent().unwrap();
        let cg = layout.cgroup("x");
        cg.create_dirs().unwrap();
        populate_v2(&tmp.path().join("ember/x"), &["pids.max"]);
        cg.apply_limits(&LIMITS).unwrap();
        assert!(!tmp.path().join("ember/x/memory.max").exists());
        assert_eq!(cg.memory_current(), None);
    }

    #[test]
    fn statistics_are_parsed_from_both_versions() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v2(tmp.path(), "memory pids");
        let v2 = CgroupLayout::detect(tmp.path(), "ember")
            .unwrap()
            .cgroup("s");
        let dir = tmp.path().join("ember/s");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("memory.current"), "4096\n").unwrap();
        fs::write(dir.join("memory.peak"), "8192\n").unwrap();
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        fs::write(dir.join("cgroup.procs"), "12\n34\n").unwrap();
        assert_eq!(v2.memory_current(), Some(4096));
        assert_eq!(v2.memory_peak(), Some(8192));
        assert_eq!(v2.oom_kills(), Some(1));
        assert_eq!(v2.pids().unwrap(), BTreeSet::from([12, 34]));

        let tmp = tempfile::tempdir().unwrap();
        fake_v1(tmp.path(), &["memory", "pids"]);
        let v1 = CgroupLayout::detect(tmp.path(), "ember")
            .unwrap()
            .cgroup("s");
        let mem = tmp.path().join("memory/ember/s");
        fs::create_dir_all(&mem).unwrap();
        fs::create_dir_all(tmp.path().join("pids/ember/s")).unwrap();
        fs::write(mem.join("memory.usage_in_bytes"), "100\n").unwrap();
        fs::write(mem.join("memory.max_usage_in_bytes"), "200\n").unwrap();
        fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        )
        .unwrap();
        fs::write(mem.join("cgroup.procs"), "7\n").unwrap();
        fs::write(tmp.path().join("pids/ember/s/cgroup.procs"), "7\n8\n").unwrap();
        assert_eq!(v1.memory_current(), Some(100));
        assert_eq!(v1.memory_peak(), Some(200));
        assert_eq!(v1.oom_kills(), Some(0));
        assert_eq!(
            v1.pids().unwrap(),
            BTreeSet::from([7, 8]),
            "union over hierarchies"
        );
    }

    #[test]
    fn lists_and_removes_sandbox_cgroups() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v1(tmp.path(), &["memory", "pids"]);
        let layout = CgroupLayout::detect(tmp.path(), "ember").unwrap();
        layout.ensure_parent().unwrap();
        layout.cgroup("a").create_dirs().unwrap();
        layout.cgroup("b").create_dirs().unwrap();
        fs::create_dir(tmp.path().join("pids/ember/c")).unwrap(); // half-created by a crash
        fs::write(tmp.path().join("memory/ember/not-a-dir"), "").unwrap();
        assert_eq!(layout.list_sandboxes().unwrap(), ["a", "b", "c"]);
        assert!(
            layout.cgroup("a").create_dirs().is_err(),
            "an id in use is refused"
        );
        for id in ["a", "b", "c"] {
            layout.cgroup(id).remove(Duration::ZERO).unwrap();
        }
        assert!(layout.list_sandboxes().unwrap().is_empty());
    }

    #[test]
    fn cpu_share_follows_memory_like_lambda() {
        assert_eq!(cpu_weight_v2(1 << 30), 100);
        assert_eq!(cpu_weight_v2(128 << 20), 12);
        assert_eq!(cpu_weight_v2(1 << 20), 1);
        assert_eq!(cpu_weight_v2(10 << 40), 10_000);
        assert_eq!(cpu_shares_v1(1 << 30), 1024);
        assert_eq!(cpu_shares_v1(128 << 20), 128);
        assert_eq!(cpu_shares_v1(1 << 20), 2);
    }

    #[test]
    fn keyed_values() {
        let text = "oom 3\noom_kill 2\n";
        assert_eq!(keyed_value(text, "oom_kill"), Some(2));
        assert_eq!(keyed_value(text, "oom"), Some(3));
        assert_eq!(keyed_value(text, "missing"), None);
    }
}
