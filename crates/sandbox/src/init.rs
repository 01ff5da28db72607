//! The init helper: everything that runs between the host's `spawn` and the payload's
//! `execve`, in a freshly executed, single-threaded copy of the program.
//!
//! Three processes, each with one job:
//!
//! ```text
//! host (ember serve, multi-threaded)
//!  └─ helper      host namespaces, root → no capabilities; joins the cgroup, clones the
//!     │           sandbox, writes its uid/gid maps, then only waits and forwards the exit
//!     └─ pid 1    all new namespaces; builds the root, brings up lo, binds the Runtime API
//!        │        listener, forks the payload, reports Ready, drops every capability,
//!        │        then reaps zombies and exits with the payload's status
//!        └─ payload   pid 2: rlimits, ids, no capabilities, no_new_privs, seccomp, execve
//! ```
//!
//! Why this order:
//! - The helper joins the cgroup *first*, so every process and every page of the sandbox is
//!   accounted and limited from its first instant, and `destroy` can find all of them.
//! - `clone` creates all namespaces at once; the user namespace comes first in the kernel,
//!   so the others are owned by it and the sandbox's root has power over them only.
//! - The uid/gid maps are written by the helper, which still has `CAP_SETUID` on the host:
//!   only a privileged writer may map more than its own id.
//! - Pid 1 waits for the maps before doing anything (until then its ids are unmapped and
//!   it could not create files). The host stops a sandbox through the helper, its own
//!   unreaped child (a pid that cannot have been recycled): SIGTERM makes the helper kill
//!   and reap pid 1, whose death takes the whole pid namespace along. Pid 1 also dies with
//!   the helper (`PR_SET_PDEATHSIG`), so even a SIGKILLed helper leaves nothing running.
//! - `/proc` is mounted before `pivot_root` (see [`crate::rootfs`]), `lo` and the listener
//!   exist before the payload, and the listener is close-on-exec and closed by pid 1
//!   before anything untrusted runs.
//! - The payload drops capabilities in the only order that works: bounding set (needs
//!   `CAP_SETPCAP`), ids (`setresuid` to a non-zero uid clears the other sets), then the
//!   remaining sets; `no_new_privs`; and seccomp last, so that no setup call needs to be
//!   allowed by the filter.
//! - Errors anywhere travel back over the socket as "step: error", and a failed `execve`
//!   is reported through a close-on-exec pipe, so `spawn` returns only once the payload
//!   really runs.

use std::ffi::{CString, OsStr};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::prctl;
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::stat::{Mode, umask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid, dup, getpid, pipe2, setgroups, setresgid, setresuid, setsid};

use crate::protocol::{At, Failure, INIT_MARKER, Identity, InitReply, InitRequest, recv, send};
use crate::rootfs;
use crate::seccomp;
use crate::spec::SandboxSpec;
use crate::sys::{self, Forked};

/// Address of the Lambda Runtime API inside every sandbox.
pub const RUNTIME_API_ADDR: &str = "127.0.0.1:9001";

/// Turns this process into the sandbox init helper if it was started as one, and never
/// returns in that case; otherwise returns immediately.
///
/// Call it first thing in `main()`, before starting any thread (a tokio runtime, a logger
/// with a background thread): the helper forks and creates namespaces, which requires a
/// single-threaded process.
///
/// ```text
/// fn main() {
///     ember_sandbox::init_if_requested();
///     // ... the program proper: parse arguments, start tokio, ...
/// }
/// ```
pub fn init_if_requested() {
    let mut args = std::env::args_os();
    args.next();
    if args.next().as_deref() != Some(OsStr::new(INIT_MARKER)) {
        return;
    }
    std::process::exit(helper_main());
}

/// The helper, in the host's namespaces. Returns its exit code.
fn helper_main() -> i32 {
    // Block the two signals the helper waits for (see `supervise`) before anything can
    // send them; pid 1 unblocks them again.
    let _ = supervised_signals().thread_block();
    // fd 0 is the socket to the host; keep a close-on-exec copy and put /dev/null there.
    let socket = match dup(std::io::stdin())
        .and_then(|fd| fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map(|_| fd))
    {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("{INIT_MARKER}: no socket on stdin ({e}); this mode is internal to ember");
            return 2;
        }
    };
    let request: InitRequest = match recv(socket.as_fd()) {
        Ok(Some((request, _))) => request,
        Ok(None) => return 2, // the host went away before sending anything
        Err(e) => {
            report(socket.as_fd(), Failure::new("read the sandbox request", e));
            return 2;
        }
    };
    let child = match start_sandbox(&request, &socket) {
        Ok(child) => child,
        Err(failure) => {
            report(socket.as_fd(), failure);
            return 1;
        }
    };
    // From here on the helper only waits. It gives up its end of the socket and of the
    // output pipe (so the host sees EOF once the sandbox is gone) and every privilege.
    // Nobody is left to report a failure to, and none of these matter for isolation: the
    // helper runs no untrusted code and holds nothing the sandbox could reach.
    drop(socket);
    let _ = redirect_to_dev_null(false, true);
    let _ = drop_all_privileges(None);
    supervise(child)
}

fn supervised_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGCHLD);
    set
}

/// Waits for pid 1 and returns its exit code (128 + signal if killed). `SIGTERM` (sent by
/// `destroy`) makes the helper SIGKILL pid 1, which takes the whole pid namespace with it,
/// and then reap it: pid 1 is reaped here and not orphaned to the host's init (which may
/// never reap, e.g. when Ember itself runs as pid 1 of a container). Both signals are
/// blocked and taken with `sigwait`, so pid 1 cannot be reaped between our deciding to
/// kill it and the kill: its pid cannot have been reused.
fn supervise(child: Pid) -> i32 {
    let signals = supervised_signals();
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, signal, _)) => return 128 + signal as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return 1,
        }
        if let Ok(Signal::SIGTERM) = signals.wait() {
            let _ = kill(child, Signal::SIGKILL);
        }
    }
}

fn report(socket: BorrowedFd<'_>, failure: Failure) {
    let reply = InitReply::Failed {
        stage: failure.stage,
        message: failure.message,
    };
    // If the host is gone there is nobody to tell.
    let _ = send(socket, &reply, None);
}

/// Points stdin, and stdout + stderr if `output` too, at `/dev/null`.
fn redirect_to_dev_null(input: bool, output: bool) -> Result<(), Failure> {
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .at(|| "open /dev/null")?;
    if input {
        nix::unistd::dup2_stdin(&null).at(|| "redirect stdin to /dev/null")?;
    }
    if output {
        nix::unistd::dup2_stdout(&null).at(|| "redirect stdout to /dev/null")?;
        nix::unistd::dup2_stderr(&null).at(|| "redirect stderr to /dev/null")?;
    }
    Ok(())
}

fn check_single_threaded() -> Result<(), Failure> {
    let status = std::fs::read_to_string("/proc/self/status").at(|| "read /proc/self/status")?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .map(str::trim);
    if threads != Some("1") {
        return Err(Failure::new(
            "check the helper is single-threaded",
            format!(
                "it has {} threads: init_if_requested() must run before any thread is started",
                threads.unwrap_or("?")
            ),
        ));
    }
    Ok(())
}

/// Joins the cgroup, clones pid 1 into new namespaces and maps its ids.
fn start_sandbox(request: &InitRequest, socket: &OwnedFd) -> Result<Pid, Failure> {
    check_single_threaded()?;
    redirect_to_dev_null(true, false)?;
    let pid = getpid().to_string();
    for procs in &request.cgroup_procs {
        std::fs::write(procs, &pid).at(|| format!("join cgroup {}", procs.display()))?;
    }
    let filters = if request.seccomp {
        seccomp::build().at(|| "compile the seccomp filter")?
    } else {
        Vec::new()
    };

    let ns = request.namespaces;
    let mut flags = 0;
    for (wanted, flag) in [
        (request.identity.uses_user_namespace(), libc::CLONE_NEWUSER),
        (ns.mount, libc::CLONE_NEWNS),
        (ns.pid, libc::CLONE_NEWPID),
        (ns.net, libc::CLONE_NEWNET),
        (ns.ipc, libc::CLONE_NEWIPC),
        (ns.uts, libc::CLONE_NEWUTS),
        (ns.cgroup, libc::CLONE_NEWCGROUP),
    ] {
        if wanted {
            flags |= flag;
        }
    }
    let (go_read, go_write) = pipe2(OFlag::O_CLOEXEC).at(|| "create a pipe")?;
    let child = match sys::clone_into_namespaces(flags).at(|| "clone into new namespaces")? {
        Forked::Child => {
            drop(go_write);
            // Pid 1 never returns from here: it exits with the payload's status.
            std::process::exit(match sandbox_init(request, socket, go_read, &filters) {
                Ok(payload) => reap_until(payload),
                Err(failure) => {
                    report(socket.as_fd(), failure);
                    1
                }
            });
        }
        Forked::Parent(child) => child,
    };
    drop(go_read);

    if let Some((uid_map, gid_map, deny_setgroups)) = request.identity.id_maps() {
        let proc_dir = PathBuf::from(format!("/proc/{child}"));
        let write = |file: &str, contents: &str| {
            std::fs::write(proc_dir.join(file), contents).at(|| {
                format!(
                    "write {file} of the sandbox ({})",
                    contents.trim().replace('\n', ", ")
                )
            })
        };
        let written = (|| {
            if deny_setgroups {
                write("setgroups", "deny")?;
            }
            write("uid_map", &uid_map)?;
            write("gid_map", &gid_map)
        })();
        if let Err(failure) = written {
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            return Err(failure);
        }
    }
    // Tell pid 1 its host pid, which also means "your ids are mapped, go on".
    File::from(go_write)
        .write_all(&(child.as_raw() as u32).to_le_bytes())
        .at(|| "start the sandbox's pid 1")?;
    Ok(child)
}

/// No capability in any set, none obtainable again, not traceable by same-uid processes;
/// switching to `ids` (uid, gid) on the way. The bounding set goes first (dropping it needs
/// `CAP_SETPCAP`), the ids next (that needs `CAP_SETUID`), the remaining sets last.
fn drop_all_privileges(ids: Option<(u32, u32)>) -> std::io::Result<()> {
    sys::drop_bounding_and_ambient()?;
    if let Some((uid, gid)) = ids {
        setgroups(&[])?;
        setresgid(Gid::from_raw(gid), Gid::from_raw(gid), Gid::from_raw(gid))?;
        setresuid(Uid::from_raw(uid), Uid::from_raw(uid), Uid::from_raw(uid))?;
    }
    sys::clear_capabilities()?;
    prctl::set_no_new_privs()?;
    prctl::set_dumpable(false)?;
    Ok(())
}

/// Pid 1 of the sandbox, up to the point where the payload runs. Returns the payload's pid.
fn sandbox_init(
    request: &InitRequest,
    socket: &OwnedFd,
    go: OwnedFd,
    filters: &[seccompiler::BpfProgram],
) -> Result<Pid, Failure> {
    prctl::set_pdeathsig(Signal::SIGKILL).at(|| "set the parent-death signal")?;
    supervised_signals()
        .thread_unblock()
        .at(|| "unblock signals")?;
    let mut host_pid = [0u8; 4];
    File::from(go)
        .read_exact(&mut host_pid)
        .at(|| "wait for the helper (it died before mapping our ids)")?;
    let host_pid = u32::from_le_bytes(host_pid);
    umask(Mode::from_bits_truncate(0o022));

    let spec = &request.spec;
    if request.identity.uses_user_namespace() {
        // Become the namespace's root (host id host_base): until now our ids were the
        // host's root, which is unmapped in here.
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).at(|| "setresgid 0")?;
        if !matches!(request.identity, Identity::MappedSelf { .. }) {
            setgroups(&[]).at(|| "setgroups []")?;
        }
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).at(|| "setresuid 0")?;
    }
    if request.namespaces.uts {
        nix::unistd::sethostname(&spec.hostname).at(|| "set the hostname")?;
    }
    if request.namespaces.mount {
        if spec.task_slot {
            rootfs::make_slave()?;
        } else {
            rootfs::make_private()?;
        }
        rootfs::build(&spec.root_dir, &rootfs::plan(spec, request.identity))?;
        if spec.task_slot {
            rootfs::slot_in(&spec.root_dir, &crate::spec::slot_path(&spec.root_dir))?;
        }
        rootfs::pivot(&spec.root_dir)?;
        rootfs::seal()?;
    }
    let listener = if request.namespaces.net {
        sys::loopback_up().at(|| "bring up the loopback interface")?;
        Some(
            TcpListener::bind(RUNTIME_API_ADDR)
                .at(|| format!("listen on {RUNTIME_API_ADDR} for the Runtime API"))?,
        )
    } else {
        None
    };

    let (exec_read, exec_write) = pipe2(OFlag::O_CLOEXEC).at(|| "create a pipe")?;
    let payload = match sys::fork().at(|| "fork the payload")? {
        Forked::Child => {
            drop(exec_read);
            drop(listener);
            let Err(failure) = start_payload(request, filters);
            let _ = File::from(exec_write).write_all(
                serde_json::to_string(&failure)
                    .unwrap_or_default()
                    .as_bytes(),
            );
            std::process::exit(127);
        }
        Forked::Parent(pid) => pid,
    };
    drop(exec_write);
    let mut exec_error = Vec::new();
    File::from(exec_read)
        .read_to_end(&mut exec_error)
        .at(|| "wait for the payload's exec")?;
    if !exec_error.is_empty() {
        let _ = waitpid(payload, None);
        return Err(serde_json::from_slice(&exec_error)
            .unwrap_or_else(|_| Failure::new("start the payload", "it died before exec")));
    }

    let ready = InitReply::Ready {
        init_pid: host_pid,
        listener: listener.is_some(),
    };
    send(socket.as_fd(), &ready, listener.as_ref().map(|l| l.as_fd()))
        .at(|| "report readiness to the host")?;
    drop(listener);
    redirect_to_dev_null(true, true)?;
    // This is a forked copy of the helper that never returns to the frame owning `socket`
    // (it leaves through `exit`), so closing the descriptor here cannot close it twice.
    let _ = nix::unistd::close(socket.as_raw_fd());
    // Without a user namespace pid 1 is the host's root: it becomes the sandbox's own
    // unprivileged host uid as well.
    let ids = (!request.identity.uses_user_namespace()).then(|| request.identity.init_ids());
    drop_all_privileges(ids).at(|| "drop pid 1's privileges")?;
    Ok(payload)
}

/// Pid 1's loop: reap every zombie (orphans are re-parented to us) and return the
/// payload's status when it ends; exiting then makes the kernel kill everything left in
/// the pid namespace.
fn reap_until(payload: Pid) -> i32 {
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == payload => return code,
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == payload => {
                return 128 + signal as i32;
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 1,
        }
    }
}

/// The payload: sets up its process and execs. Returns only on failure.
fn start_payload(
    request: &InitRequest,
    filters: &[seccompiler::BpfProgram],
) -> Result<std::convert::Infallible, Failure> {
    let spec = &request.spec;
    redirect_to_dev_null(true, false)?;
    setsid().at(|| "setsid")?;
    sys::reset_signals().at(|| "reset signal dispositions")?;
    let limit = |resource, value: u64, name: &str| {
        setrlimit(resource, value, value).at(|| format!("set {name} to {value}"))
    };
    limit(Resource::RLIMIT_NOFILE, spec.nofile, "RLIMIT_NOFILE")?;
    limit(Resource::RLIMIT_CORE, 0, "RLIMIT_CORE")?;
    if let Some(nproc) = request.nproc_fallback {
        limit(Resource::RLIMIT_NPROC, nproc, "RLIMIT_NPROC")?;
    }

    sys::drop_bounding_and_ambient().at(|| "drop the capability bounding set")?;
    let (uid, gid) = request.identity.payload_ids();
    if !matches!(request.identity, Identity::MappedSelf { .. }) {
        setgroups(&[]).at(|| "setgroups []")?;
    }
    setresgid(Gid::from_raw(gid), Gid::from_raw(gid), Gid::from_raw(gid))
        .at(|| format!("setresgid {gid}"))?;
    setresuid(Uid::from_raw(uid), Uid::from_raw(uid), Uid::from_raw(uid))
        .at(|| format!("setresuid {uid}"))?;
    sys::clear_capabilities().at(|| "clear capabilities")?;

    nix::unistd::chdir(&spec.cwd).at(|| format!("chdir {}", spec.cwd.display()))?;
    let program = resolve_program(spec)?;
    let argv = c_strings(spec.argv.iter().map(String::as_str))?;
    let env = c_strings(spec.env.iter().map(|(k, v)| format!("{k}={v}")))?;
    let path = CString::new(program.as_os_str().as_bytes()).at(|| "program path")?;
    sys::cloexec_from(3).at(|| "mark descriptors close-on-exec")?;
    prctl::set_no_new_privs().at(|| "set no_new_privs")?;
    seccomp::install(filters).at(|| "install the seccomp filter")?;
    let err = nix::unistd::execve(&path, &argv, &env).unwrap_err();
    Err(Failure::new(format!("exec {}", program.display()), err))
}

fn c_strings<S: AsRef<str>>(items: impl Iterator<Item = S>) -> Result<Vec<CString>, Failure> {
    items
        .map(|s| CString::new(s.as_ref()).at(|| "argv/env contains NUL"))
        .collect()
}

/// `argv[0]` as a path: used as is if it contains a slash, else looked up in the
/// payload's `PATH` (not the host's).
fn resolve_program(spec: &SandboxSpec) -> Result<PathBuf, Failure> {
    let name = &spec.argv[0];
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let search = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/bin:/usr/bin:/bin");
    search
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .ok_or_else(|| {
            Failure::new(
                format!("exec {name}"),
                format!("not found in PATH={search} inside the sandbox"),
            )
        })
}
