//! Every `unsafe` block of the crate, as small safe wrappers.
//!
//! These are the system calls that nix does not wrap (or wraps only as `unsafe fn`): the
//! init helper's fork/clone, the loopback ioctl, capability and mount-attribute calls, plus
//! adopting descriptors received over `SCM_RIGHTS`. Everything else in the crate is safe
//! Rust; the workspace's `unsafe_code = "deny"` is relaxed for this module only.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
use nix::unistd::Pid;

/// Which side of a fork we are on.
pub(crate) enum Forked {
    Child,
    Parent(Pid),
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `clone(2)` into new namespaces with fork semantics (no new stack, `SIGCHLD` on exit).
///
/// The caller must be single-threaded: the init helper checks that first thing.
pub(crate) fn clone_into_namespaces(flags: libc::c_int) -> io::Result<Forked> {
    // SAFETY: without CLONE_VM and with a null stack pointer, clone(2) behaves like fork(2):
    // the child runs on a copy-on-write copy of our address space and returns here with 0.
    // The process is single-threaded (checked by the caller), so no other thread can hold
    // a lock the child would inherit. glibc's fork bookkeeping is skipped: we register no
    // atfork handlers and the child never uses pthread functions that rely on the cached
    // thread id. No pointers are passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match check(ret)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as libc::pid_t))),
    }
}

/// `fork(2)`; the caller must be single-threaded.
pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: only the init helper calls this, and it is single-threaded (checked at its
    // start), so the child may run arbitrary code, not just async-signal-safe functions.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
    }
}

/// Brings the loopback interface of the current network namespace up (`SIOCSIFFLAGS`).
pub(crate) fn loopback_up() -> io::Result<()> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: `ifreq` is plain old data (a name array and a union of integers and
    // addresses); all-zero bytes are a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    request.ifr_ifru.ifru_flags =
        (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads one `ifreq`, which is initialised above and outlives the
    // call; the socket descriptor is valid for the duration of the call.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &request) };
    check(ret.into()).map(drop)
}

/// Drops every capability from the bounding set (needs `CAP_SETPCAP`), so that no later
/// `execve` can ever regain one, and clears the ambient set.
pub(crate) fn drop_bounding_and_ambient() -> io::Result<()> {
    for cap in 0..64 {
        // SAFETY: prctl(PR_CAPBSET_DROP) takes a capability number; no pointers.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if ret == -1 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINVAL) {
                break; // past the last capability this kernel knows
            }
            return Err(err);
        }
    }
    // SAFETY: prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL) takes no pointers.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if ret == -1 {
        let err = io::Error::last_os_error();
        // Kernels before 4.3 have no ambient set: nothing to clear.
        if err.raw_os_error() != Some(libc::EINVAL) {
            return Err(err);
        }
    }
    Ok(())
}

/// Empties the effective, permitted and inheritable capability sets of this process.
pub(crate) fn clear_capabilities() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset(2) version 3 reads one header and two data structs; both are
    // initialised, correctly laid out (#[repr(C)]) and outlive the call.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    check(ret).map(drop)
}

/// Mount attributes for [`mount_setattr`] (`MOUNT_ATTR_*` of `<linux/mount.h>`).
pub(crate) mod attr {
    pub const RDONLY: u64 = 0x1;
    pub const NOSUID: u64 = 0x2;
    pub const NODEV: u64 = 0x4;
    pub const NOEXEC: u64 = 0x8;
}

/// `mount_setattr(2)` (Linux 5.12+): sets `attrs` on the mount at `path`, and on every
/// mount below it when `recursive`. Returns `ENOSYS` on older kernels.
pub(crate) fn mount_setattr(path: &Path, recursive: bool, attrs: u64) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let path = CString::new(path.as_os_str().as_bytes())?;
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: the path is NUL-terminated and the attribute struct is initialised with the
    // layout of `struct mount_attr`; both outlive the call, and we pass its exact size.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(ret).map(drop)
}

/// Marks every descriptor from `first` upwards close-on-exec, so nothing but stdin,
/// stdout and stderr reaches the payload.
pub(crate) fn cloexec_from(first: RawFd) -> io::Result<()> {
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets a flag on descriptors of
    // this process; no memory is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if check(ret).is_ok() {
        return Ok(());
    }
    // Kernels before 5.11: walk /proc/self/fd instead.
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= first)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on a descriptor number only changes its flags; an fd that
        // vanished in between (the directory's own) yields EBADF, which we ignore.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Resets every signal to its default disposition and unblocks all of them, so the
/// payload starts like a program started by a shell (Rust ignores `SIGPIPE`, and ignored
/// signals would survive `execve`).
pub(crate) fn reset_signals() -> io::Result<()> {
    for signal in Signal::iterator() {
        if matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL involves no Rust handler; it only changes the
        // disposition the kernel applies.
        unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) }?;
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    Ok(())
}

/// Takes ownership of a descriptor the kernel just installed for us via `SCM_RIGHTS`.
pub(crate) fn adopt_received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: recvmsg(2) created this descriptor in our table for this message; nothing
    // else refers to it, so we are its only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
