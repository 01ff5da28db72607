//! [`Sandbox`]: the host's handle on one running sandbox.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, setsockopt, socketpair, sockopt};
use nix::sys::time::TimeVal;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::{Pid, pipe2};

use crate::cgroup::{Cgroup, Controller, Limits};
use crate::env::{Environment, UidSlot, check_reachable};
use crate::protocol::{INIT_MARKER, Identity, InitReply, InitRequest, recv, send};
use crate::{SandboxError, SandboxSpec};

/// Processes of a sandbox besides the payload's: the helper and pid 1.
const HELPER_PROCESSES: u64 = 2;

/// One running sandbox. Dropping it destroys it (best effort); call [`Sandbox::destroy`]
/// to learn whether that worked.
#[derive(Debug)]
pub struct Sandbox {
    id: String,
    /// The init helper: our child; its exit status is the payload's.
    child: Option<Child>,
    init_pid: u32,
    cgroup: Option<Cgroup>,
    /// Created by `spawn` (it must not exist before), so teardown may remove it.
    root_dir: PathBuf,
    listener: Option<TcpListener>,
    output: Option<File>,
    slot: Option<UidSlot>,
    /// The host directory whose mounts appear at the sandbox's `/var/task` (pool mode).
    task_slot: Option<PathBuf>,
    /// The cgroup's process limit, kept to rewrite limits when the memory changes.
    pids_max: u64,
    kill_timeout: Duration,
    /// The helper reported Ready: it now takes SIGTERM as "stop the sandbox".
    ready: bool,
    torn_down: bool,
}

impl Sandbox {
    /// Creates a sandbox and starts `spec.argv` in it; returns once the payload has been
    /// exec'd (or with the step that failed, everything already cleaned up).
    ///
    /// Blocking: it starts the helper and waits for its report. That takes about 4 ms on a
    /// 2-core VM (two `exec`s, a clone into seven namespaces, ~20 mounts; the crate's
    /// `spawn_latency` example measures it), with outliers of ~20 ms on cgroup v1 hosts,
    /// where joining the memory cgroup can wait for an RCU grace period. In async code
    /// call it from `spawn_blocking`.
    pub fn spawn(spec: SandboxSpec, env: &Environment) -> Result<Sandbox, SandboxError> {
        spec.validate()?;
        env.admit(&spec)?;
        let (identity, slot) = env.allocate_identity()?;
        if !matches!(identity, Identity::MappedSelf { .. }) {
            for (field, dir) in [
                ("code_dir", &spec.code_dir),
                ("runtime_dir", &spec.runtime_dir),
            ] {
                if let Some(dir) = dir {
                    check_reachable(field, dir)?;
                }
            }
        }
        env.ensure_sandboxes_dir()?;
        if !matches!(identity, Identity::MappedSelf { .. }) {
            check_reachable("root_dir", env.sandboxes_dir())?;
        }
        create_root_dir(&spec.root_dir)?;
        let task_slot = if spec.task_slot {
            env.ensure_slots()?;
            let slot = crate::spec::slot_path(&spec.root_dir);
            match fs::create_dir(&slot) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(SandboxError::io("create the task slot", &slot, e)),
            }
            Some(slot)
        } else {
            None
        };
        let mut sandbox = Sandbox {
            id: spec.id.clone(),
            child: None,
            init_pid: 0,
            cgroup: None,
            root_dir: spec.root_dir.clone(),
            listener: None,
            output: None,
            slot,
            task_slot,
            pids_max: u64::from(spec.pids_max) + HELPER_PROCESSES,
            kill_timeout: env.config().kill_timeout,
            ready: false,
            torn_down: false,
        };
        match sandbox.start(spec, env, identity) {
            Ok(()) => Ok(sandbox),
            Err(e) => {
                if let Err(cleanup) = sandbox.teardown() {
                    tracing::warn!(sandbox = %sandbox.id, error = %cleanup, "cleanup after a failed spawn failed");
                }
                Err(e)
            }
        }
    }

    fn start(
        &mut self,
        spec: SandboxSpec,
        env: &Environment,
        identity: Identity,
    ) -> Result<(), SandboxError> {
        let id = spec.id.clone();
        let protocol = |message: String| SandboxError::Protocol {
            id: id.clone(),
            message,
        };
        let (host_end, helper_end) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| protocol(format!("socketpair: {e}")))?;
        let (output_read, output_write) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| protocol(format!("pipe: {e}")))?;
        let stderr = output_write
            .try_clone()
            .map_err(|e| protocol(format!("dup: {e}")))?;

        let program = &env.config().init_program;
        let mut command = Command::new(program);
        command
            .arg(INIT_MARKER)
            .arg(&spec.id)
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::from(helper_end))
            .stdout(Stdio::from(output_write))
            .stderr(Stdio::from(stderr))
            // Not in the host's process group: a Ctrl-C meant for the server must not
            // kill sandboxes behind its back.
            .process_group(0);
        let child = command
            .spawn()
            .map_err(|source| SandboxError::SpawnHelper {
                program: program.clone(),
                source,
            })?;
        // The helper's ends of the socket and pipe must close here, or EOF never comes.
        drop(command);
        self.child = Some(child);
        self.output = Some(File::from(output_read));

        // The cgroup is made while the helper execs (it waits for the request before doing
        // anything, and joins the cgroup first thing), which takes it off the latency path.
        if let Some(layout) = env.cgroup_layout() {
            env.ensure_cgroup_parent(layout)?;
            let limits = Limits {
                memory_bytes: spec.memory_bytes,
                pids_max: u64::from(spec.pids_max) + HELPER_PROCESSES,
            };
            self.cgroup = Some(layout.create(&spec.id, &limits)?);
        }

        let pids_limited =
            self.cgroup.is_some() && env.cgroup_layout().is_some_and(|l| l.has(Controller::Pids));
        let request = InitRequest {
            cgroup_procs: self
                .cgroup
                .as_ref()
                .map(Cgroup::procs_files)
                .unwrap_or_default(),
            identity,
            namespaces: env.namespaces(),
            seccomp: env.seccomp_available(),
            nproc_fallback: (!pids_limited).then_some(u64::from(spec.pids_max)),
            spec,
        };
        if let Err(e) = send(host_end.as_fd(), &request, None) {
            if self.helper_exited_soon() {
                return Err(SandboxError::HelperDied {
                    id: self.id.clone(),
                    status: self.exit_status_soon(),
                });
            }
            return Err(protocol(format!("send the request: {e}")));
        }
        let timeout = env.config().spawn_timeout;
        setsockopt(
            &host_end,
            sockopt::ReceiveTimeout,
            &TimeVal::from(libc::timeval {
                tv_sec: timeout.as_secs() as libc::time_t,
                tv_usec: timeout.subsec_micros() as libc::suseconds_t,
            }),
        )
        .map_err(|e| protocol(format!("set a receive timeout: {e}")))?;

        match recv::<InitReply>(host_end.as_fd()) {
            Ok(Some((InitReply::Ready { init_pid, listener }, fd))) => {
                self.init_pid = init_pid;
                self.ready = true;
                if listener {
                    let fd = fd.ok_or_else(|| protocol("Ready without the listener".into()))?;
                    self.listener = Some(TcpListener::from(fd));
                }
                Ok(())
            }
            Ok(Some((InitReply::Failed { stage, message }, _))) => Err(SandboxError::Setup {
                id: self.id.clone(),
                stage,
                message,
            }),
            Ok(None) => Err(SandboxError::HelperDied {
                id: self.id.clone(),
                status: self.exit_status_soon(),
            }),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(SandboxError::Timeout {
                    id: self.id.clone(),
                    timeout,
                })
            }
            // A helper that exits without reading the request resets the connection.
            Err(_) if self.helper_exited_soon() => Err(SandboxError::HelperDied {
                id: self.id.clone(),
                status: self.exit_status_soon(),
            }),
            Err(e) => Err(protocol(format!("read the reply: {e}"))),
        }
    }

    /// True if the helper has exited or does so within a moment.
    fn helper_exited_soon(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_millis(200);
        while let Some(child) = &mut self.child {
            if !matches!(child.try_wait(), Ok(None)) || Instant::now() >= deadline {
                return !matches!(child.try_wait(), Ok(None));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    fn exit_status_soon(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Some(child) = &mut self.child {
            match child.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(None) => return "still running".into(),
                Err(e) => return e.to_string(),
            }
        }
        "not started".into()
    }

    /// The id given in the spec.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Host pid of the sandbox's init (its pid 1).
    pub fn pid(&self) -> u32 {
        self.init_pid
    }

    /// Host pid of the helper process that started the sandbox and waits for it (the
    /// host's child; its exit status is the payload's).
    pub fn helper_pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The Lambda Runtime API listener (`127.0.0.1:9001` inside the sandbox's network
    /// namespace), once. Accepting on it from the host works: the socket lives in the
    /// sandbox's namespace, but a descriptor works anywhere. It is blocking and
    /// close-on-exec; call `set_nonblocking(true)` before handing it to tokio.
    pub fn runtime_api_listener(&mut self) -> Option<TcpListener> {
        self.listener.take()
    }

    /// The read end of the pipe that is the payload's stdout and stderr, once. Read it
    /// continuously: a full pipe (64 KiB) blocks the payload's writes.
    pub fn take_output(&mut self) -> Option<File> {
        self.output.take()
    }

    /// True while the sandbox's processes run (its helper has not exited).
    pub fn is_alive(&self) -> bool {
        let Some(child) = &self.child else {
            return false;
        };
        let pid = Pid::from_raw(child.id() as i32);
        matches!(
            waitid(
                Id::Pid(pid),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT
            ),
            Ok(WaitStatus::StillAlive)
        )
    }

    /// The payload's exit status if it has ended: its exit code, or 128 + the signal that
    /// killed it (137 for SIGKILL, e.g. by the OOM killer), as a shell reports it.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, SandboxError> {
        match &mut self.child {
            Some(child) => child
                .try_wait()
                .map_err(|e| SandboxError::io("wait for", format!("sandbox {}", self.id), e)),
            None => Ok(None),
        }
    }

    /// Waits for the payload to end; see [`Sandbox::try_wait`].
    pub fn wait(&mut self) -> Result<ExitStatus, SandboxError> {
        let id = self.id.clone();
        match &mut self.child {
            Some(child) => child
                .wait()
                .map_err(|e| SandboxError::io("wait for", format!("sandbox {id}"), e)),
            None => Err(SandboxError::io(
                "wait for",
                format!("sandbox {id}"),
                std::io::Error::other("not started"),
            )),
        }
    }

    /// Memory the sandbox uses now, from its cgroup.
    pub fn memory_current_bytes(&self) -> Option<u64> {
        self.cgroup.as_ref()?.memory_current()
    }

    /// The most memory the sandbox has used, from its cgroup.
    pub fn memory_peak_bytes(&self) -> Option<u64> {
        self.cgroup.as_ref()?.memory_peak()
    }

    /// True if the kernel's OOM killer killed a process of this sandbox.
    pub fn oom_killed(&self) -> bool {
        self.cgroup
            .as_ref()
            .and_then(Cgroup::oom_kills)
            .is_some_and(|n| n > 0)
    }

    /// Kills every process of the sandbox, waits for them, removes its cgroup and root
    /// directory. Idempotent; on error, what could not be removed stays (and the
    /// sandbox's host ids stay reserved) so that [`crate::cleanup_stale`] can finish.
    pub fn destroy(mut self) -> Result<(), SandboxError> {
        self.teardown()
    }

    /// Put `code_dir` at the sandbox's `/var/task`, read-only (a sandbox spawned with
    /// `task_slot`; once). The host bind-mounts it on the slot and the mount propagates
    /// into the sandbox's namespace.
    pub fn load_code(&self, code_dir: &Path) -> Result<(), SandboxError> {
        use nix::mount::{MntFlags, MsFlags, mount, umount2};
        let slot = self
            .task_slot
            .as_ref()
            .ok_or_else(|| SandboxError::InvalidSpec {
                field: "task_slot",
                reason: "this sandbox was not started with a task slot".into(),
            })?;
        // Propagation copies a mount as it is when it is made; a later remount is not
        // propagated. So the code is first bound at a staging point and made read-only
        // there, and only that read-only mount is bound into the slot.
        let staging = slot.with_extension("staging");
        fs::create_dir(&staging)
            .map_err(|e| SandboxError::io("create the code staging point", &staging, e))?;
        let result = (|| {
            mount(
                Some(code_dir),
                &staging,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| SandboxError::io("bind the code", &staging, e.into()))?;
            mount(
                None::<&str>,
                &staging,
                None::<&str>,
                MsFlags::MS_REMOUNT
                    | MsFlags::MS_BIND
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV,
                None::<&str>,
            )
            .map_err(|e| SandboxError::io("make the code read-only", &staging, e.into()))?;
            mount(
                Some(&staging),
                slot,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| SandboxError::io("bind the code into the task slot", slot, e.into()))
        })();
        let _ = umount2(&staging, MntFlags::MNT_DETACH);
        let _ = fs::remove_dir(&staging);
        result
    }

    /// Change the memory limit (e.g. when a pooled sandbox is assigned a function).
    pub fn set_memory_limit(&self, bytes: u64) -> Result<(), SandboxError> {
        match &self.cgroup {
            Some(cgroup) => cgroup.apply_limits(&Limits {
                memory_bytes: bytes,
                pids_max: self.pids_max,
            }),
            None => Ok(()),
        }
    }

    fn teardown(&mut self) -> Result<(), SandboxError> {
        if self.torn_down {
            return Ok(());
        }
        let mut first_error: Option<SandboxError> = None;
        let mut note = |result: Result<(), SandboxError>| {
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        };
        if let Some(child) = &mut self.child {
            if self.ready {
                stop_helper(child, self.kill_timeout);
            } else {
                // Still setting up (or failed doing so): no handshake, pid 1 (if any) dies
                // with the helper through its parent-death signal.
                let _ = child.kill();
            }
        }
        if let Some(cgroup) = &self.cgroup {
            // Sweep whatever is left (there is nothing unless a namespace was missing).
            note(cgroup.kill_all(self.kill_timeout).map(drop));
        }
        if let Some(child) = &mut self.child {
            let id = &self.id;
            note(
                child.wait().map(drop).map_err(|e| {
                    SandboxError::io("reap the helper of", format!("sandbox {id}"), e)
                }),
            );
        }
        if let Some(cgroup) = &self.cgroup {
            note(cgroup.remove(self.kill_timeout));
        }
        note(remove_root_dir(&self.root_dir));
        if let Some(slot) = &self.task_slot {
            note(remove_slot(slot));
        }
        match first_error {
            None => {
                self.torn_down = true;
                self.slot = None;
                Ok(())
            }
            Some(e) => {
                // Its processes may survive: never hand its host ids to another sandbox.
                std::mem::forget(self.slot.take());
                Err(e)
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::warn!(sandbox = %self.id, error = %e, "destroying a dropped sandbox failed");
        }
    }
}

/// Stops the sandbox through its helper, our unreaped child (so its pid cannot have been
/// recycled): SIGTERM makes it SIGKILL the sandbox's pid 1, which takes the whole pid
/// namespace along, and reap it. If it does not exit in time, SIGKILL kills the helper, and
/// pid 1 dies anyway (parent-death signal), but is then reaped by the host's init.
fn stop_helper(child: &mut Child, timeout: Duration) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + timeout.min(Duration::from_secs(1));
    let mut pause = Duration::from_micros(20);
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() >= deadline {
            let _ = child.kill();
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
}

/// Creates the root directory, which must not exist: an existing one belongs to a live
/// sandbox with the same id, or to a crashed one that `cleanup_stale` has not removed.
fn create_root_dir(dir: &Path) -> Result<(), SandboxError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(SandboxError::InvalidSpec {
            field: "root_dir",
            reason: format!(
                "{} already exists: a sandbox with this id is running, or cleanup_stale has not run since a crash",
                dir.display()
            ),
        }),
        Err(e) => Err(SandboxError::io("create the root directory", dir, e)),
    }
}

/// Removes the (empty) root directory. Never recursively: if something is in it, it may be
/// a mount of the host's files, and deleting through it would delete the host's files.
pub(crate) fn remove_root_dir(dir: &Path) -> Result<(), SandboxError> {
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e)
            if e.raw_os_error() == Some(libc::ENOTEMPTY)
                || e.raw_os_error() == Some(libc::EBUSY) =>
        {
            Err(SandboxError::RootDirNotEmpty {
                path: dir.to_path_buf(),
            })
        }
        Err(e) => Err(SandboxError::io("remove the root directory", dir, e)),
    }
}

/// Detach whatever is mounted on a task slot and remove the slot directory.
pub(crate) fn remove_slot(slot: &Path) -> Result<(), SandboxError> {
    use nix::mount::{MntFlags, umount2};
    match umount2(slot, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(SandboxError::io("unmount the task slot", slot, e.into())),
    }
    match fs::remove_dir(slot) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SandboxError::io("remove the task slot", slot, e)),
    }
}
