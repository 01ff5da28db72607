//! The conversation between the host and the init helper.
//!
//! One `SOCK_SEQPACKET` unix socket pair: the helper's end is its fd 0. Message boundaries
//! are kept by the socket, so each message is exactly one JSON document, and a file
//! descriptor (the Runtime API listener) travels in the same message as `SCM_RIGHTS`.
//!
//! ```text
//! host ── InitRequest ──────────────────────────────► helper (fd 0)
//! host ◄─ InitReply::Ready {..} + listener fd ─────── sandbox pid 1, once the payload exec'd
//!      ◄─ InitReply::Failed { stage, message } ────── any of them, on the first failure
//! ```

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};

use crate::SandboxSpec;

/// `argv[1]` that turns a program calling [`crate::init_if_requested`] into the helper.
pub const INIT_MARKER: &str = "__ember-sandbox-init";

/// Largest message either side accepts. A spec is a few KiB (Lambda caps the environment
/// at 4 KiB); the cap keeps a single `SOCK_SEQPACKET` datagram under the default socket
/// buffer size.
pub(crate) const MAX_MESSAGE: usize = 128 * 1024;

/// Who the sandbox's processes are, as seen by the host kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Identity {
    /// Root on the host, user namespace: sandbox uid/gid 0 is host id `host_base`, the
    /// payload's uid [`SANDBOX_UID`] / gid [`SANDBOX_GID`] is host id `host_base + 1`.
    MappedRange {
        /// First of the two host ids of this sandbox.
        host_base: u32,
    },
    /// Not root, user namespace: only our own uid/gid exist, as sandbox root; the payload
    /// runs as that (capability-less) root.
    MappedSelf {
        /// Our uid on the host.
        uid: u32,
        /// Our gid on the host.
        gid: u32,
    },
    /// Root on the host, no user namespace: the sandbox's pid 1 drops to host id
    /// `host_base`, the payload to `host_base + 1`, both without any capability.
    HostIds {
        /// First of the two host ids of this sandbox.
        host_base: u32,
    },
}

/// The payload's uid inside the sandbox when a user namespace maps a range (Lambda's
/// `sbx_user1051` has uid 993, gid 990).
pub const SANDBOX_UID: u32 = 993;
/// The payload's gid inside the sandbox when a user namespace maps a range.
pub const SANDBOX_GID: u32 = 990;

impl Identity {
    /// (uid, gid) of the payload, as seen inside the sandbox.
    pub(crate) fn payload_ids(self) -> (u32, u32) {
        match self {
            Identity::MappedRange { .. } => (SANDBOX_UID, SANDBOX_GID),
            Identity::MappedSelf { .. } => (0, 0),
            Identity::HostIds { host_base } => (host_base + 1, host_base + 1),
        }
    }

    /// (uid, gid) of the sandbox's pid 1 after setup, as seen inside the sandbox.
    pub(crate) fn init_ids(self) -> (u32, u32) {
        match self {
            Identity::MappedRange { .. } | Identity::MappedSelf { .. } => (0, 0),
            Identity::HostIds { host_base } => (host_base, host_base),
        }
    }

    pub(crate) fn uses_user_namespace(self) -> bool {
        !matches!(self, Identity::HostIds { .. })
    }

    /// Contents for `/proc/<pid>/uid_map` and `gid_map`, and whether `setgroups` must be
    /// denied first (required when an unprivileged process writes `gid_map`).
    pub(crate) fn id_maps(self) -> Option<(String, String, bool)> {
        match self {
            Identity::MappedRange { host_base } => Some((
                format!("0 {host_base} 1\n{SANDBOX_UID} {} 1\n", host_base + 1),
                format!("0 {host_base} 1\n{SANDBOX_GID} {} 1\n", host_base + 1),
                false,
            )),
            Identity::MappedSelf { uid, gid } => {
                Some((format!("0 {uid} 1\n"), format!("0 {gid} 1\n"), true))
            }
            Identity::HostIds { .. } => None,
        }
    }
}

/// Which namespaces to create (all of them unless the environment lacks some and the
/// caller allowed degraded sandboxes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Namespaces {
    pub mount: bool,
    pub pid: bool,
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    pub cgroup: bool,
}

/// Everything the helper needs; sent once, as the first message.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InitRequest {
    pub spec: SandboxSpec,
    /// `cgroup.procs` files the helper writes its pid into before anything else.
    pub cgroup_procs: Vec<PathBuf>,
    pub identity: Identity,
    pub namespaces: Namespaces,
    /// Install the seccomp filter (false only in degraded mode without seccomp).
    pub seccomp: bool,
    /// `RLIMIT_NPROC` as a stand-in for a missing pids controller (degraded mode).
    pub nproc_fallback: Option<u64>,
}

/// The helper's answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum InitReply {
    /// The payload has been exec'd. `listener` says whether the Runtime API listener fd
    /// is attached.
    Ready { init_pid: u32, listener: bool },
    /// A setup step failed; nothing of the sandbox keeps running.
    Failed { stage: String, message: String },
}

/// A failed setup step inside the helper: what it was doing and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Failure {
    pub stage: String,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(stage: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Failure {
            stage: stage.into(),
            message: message.to_string(),
        }
    }
}

/// Attaches the setup step to an error: `mount(..).at(|| format!("mount {path}"))?`.
pub(crate) trait At<T> {
    fn at<S: Into<String>>(self, stage: impl FnOnce() -> S) -> Result<T, Failure>;
}

impl<T, E: std::fmt::Display> At<T> for Result<T, E> {
    fn at<S: Into<String>>(self, stage: impl FnOnce() -> S) -> Result<T, Failure> {
        self.map_err(|e| Failure::new(stage(), e))
    }
}

/// Sends one message, with an optional file descriptor attached.
pub(crate) fn send<T: Serialize>(
    socket: BorrowedFd<'_>,
    message: &T,
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let bytes = serde_json::to_vec(message).map_err(io::Error::other)?;
    if bytes.len() > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message of {} bytes exceeds {MAX_MESSAGE}", bytes.len()),
        ));
    }
    let raw_fds = fd.map(|fd| [fd.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage<'_>> = raw_fds
        .as_ref()
        .map(|fds| vec![ControlMessage::ScmRights(fds)])
        .unwrap_or_default();
    let sent = sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(&bytes)],
        &cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    if sent != bytes.len() {
        return Err(io::Error::other(format!(
            "short send: {sent} of {} bytes",
            bytes.len()
        )));
    }
    Ok(())
}

/// Receives one message and the file descriptor attached to it, if any (close-on-exec).
/// `Ok(None)` means the other side closed the socket without sending.
pub(crate) fn recv<T: for<'de> Deserialize<'de>>(
    socket: BorrowedFd<'_>,
) -> io::Result<Option<(T, Option<OwnedFd>)>> {
    let mut buffer = vec![0u8; MAX_MESSAGE + 1];
    let mut cmsg_space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let (len, truncated, fds) = {
        let mut iov = [IoSliceMut::new(&mut buffer)];
        let msg = recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                fds.extend(received.into_iter().map(crate::sys::adopt_received_fd));
            }
        }
        let truncated = msg
            .flags
            .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
        (msg.bytes, truncated, fds)
    };
    if len == 0 && fds.is_empty() {
        return Ok(None);
    }
    if truncated || len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message truncated: larger than the protocol allows",
        ));
    }
    let message = serde_json::from_slice(&buffer[..len])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Some((message, fds.into_iter().next())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    use std::os::fd::AsFd;

    #[test]
    fn id_maps_map_two_ids_per_sandbox() {
        let (uid_map, gid_map, deny) = Identity::MappedRange { host_base: 1000 }.id_maps().unwrap();
        assert_eq!(uid_map, "0 1000 1\n993 1001 1\n");
        assert_eq!(gid_map, "0 1000 1\n990 1001 1\n");
        assert!(!deny);
        let (uid_map, _, deny) = Identity::MappedSelf { uid: 1234, gid: 99 }
            .id_maps()
            .unwrap();
        assert_eq!(uid_map, "0 1234 1\n");
        assert!(deny, "unprivileged gid_map needs setgroups=deny");
        assert!(Identity::HostIds { host_base: 5 }.id_maps().is_none());
        assert_eq!(Identity::HostIds { host_base: 5 }.payload_ids(), (6, 6));
    }

    #[test]
    fn messages_and_fds_cross_a_seqpacket_pair() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let reply = InitReply::Ready {
            init_pid: 42,
            listener: true,
        };
        send(a.as_fd(), &reply, Some(listener.as_fd())).unwrap();
        let (got, fd): (InitReply, _) = recv(b.as_fd()).unwrap().unwrap();
        assert!(matches!(
            got,
            InitReply::Ready {
                init_pid: 42,
                listener: true
            }
        ));
        let received = std::net::TcpListener::from(fd.unwrap());
        assert_eq!(
            received.local_addr().unwrap(),
            listener.local_addr().unwrap()
        );
        drop(a);
        assert!(
            recv::<InitReply>(b.as_fd()).unwrap().is_none(),
            "EOF after close"
        );
    }

    #[test]
    fn oversized_messages_are_refused_before_sending() {
        let (a, _b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let huge = "x".repeat(MAX_MESSAGE + 1);
        assert!(send(a.as_fd(), &huge, None).is_err());
    }
}
