//! The payload's seccomp filter: a denylist of the system calls that reach kernel surface a
//! function never needs (mounts, namespaces, tracing other processes, kernel modules and
//! keyrings, clocks, eBPF, io_uring, ...), answered with `EPERM`.
//!
//! Why a denylist and not an allowlist: payloads are arbitrary Linux programs (Python,
//! Node.js, any custom runtime), and an allowlist that fits all of them is Docker's
//! ~350-entry list; the dangerous calls are few and well known. The filter is defence in
//! depth: the payload also has no capabilities, `no_new_privs`, and (with a user
//! namespace) no privilege on the host even as "root".
//!
//! Three programs are stacked (the kernel runs all and the most severe answer wins):
//! 1. the denylist, built with `seccompiler` (`EPERM`; `clone` only with a namespace flag,
//!    `mknod` only for devices, `socket` only for `AF_VSOCK`, which is not namespaced);
//! 2. `clone3` answers `ENOSYS`, so libc falls back to `clone`, whose flags (unlike
//!    `clone3`'s, which sit in memory) a filter can inspect;
//! 3. a hand-written guard for the x32 ABI: on x86-64 the same syscalls exist again with
//!    bit 30 set, and a filter keyed on syscall numbers must not be bypassable through them.
//!
//! Every program first checks the architecture and kills the process on a mismatch (no
//! 32-bit `int 0x80` entry point either).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

/// Syscalls denied outright with `EPERM` (name, number).
pub(crate) const DENIED: &[(&str, libc::c_long)] = &[
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("open_tree", libc::SYS_open_tree),
    ("move_mount", libc::SYS_move_mount),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
    ("syslog", libc::SYS_syslog),
    ("quotactl", libc::SYS_quotactl),
    ("quotactl_fd", libc::SYS_quotactl_fd),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("vhangup", libc::SYS_vhangup),
];

/// Namespace flags that `clone` may not carry (`CLONE_NEWTIME` shares its bit with the exit
/// signal in `clone`'s flags, and is only accepted by `clone3` and `unshare` anyway).
const CLONE_NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A condition on the low 32 bits of an argument: all the arguments filtered here (clone
/// flags, a mode, an address family) are read as 32-bit values by the kernel, so garbage in
/// the upper half of the register must not make a call slip past the filter.
fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(|e| e.to_string())
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, String> {
    SeccompRule::new(conditions).map_err(|e| e.to_string())
}

/// One rule per flag: a syscall matches if the masked argument equals the flag.
fn any_flag(arg: u8, flags: &[u64]) -> Result<Vec<SeccompRule>, String> {
    flags
        .iter()
        .map(|&f| rule(vec![condition(arg, SeccompCmpOp::MaskedEq(f), f)?]))
        .collect()
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    on_match: SeccompAction,
) -> Result<BpfProgram, String> {
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, on_match, TargetArch::x86_64)
        .map_err(|e| e.to_string())?;
    BpfProgram::try_from(filter).map_err(|e| e.to_string())
}

/// The x32 guard, by hand: seccompiler only compares syscall numbers for equality.
fn x32_guard() -> BpfProgram {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    let stmt = |code, k| sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code, k, jt, jf| sock_filter { code, jt, jf, k };
    vec![
        stmt(LD_W_ABS, 4), // seccomp_data.arch
        jump(JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(LD_W_ABS, 0), // seccomp_data.nr
        jump(JSET_K, X32_SYSCALL_BIT, 0, 1),
        stmt(RET_K, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        stmt(RET_K, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Builds the three programs, in the order they are installed.
pub(crate) fn build() -> Result<Vec<BpfProgram>, String> {
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&(_, nr)| (nr, Vec::new())).collect();
    let clone_flags: Vec<u64> = CLONE_NAMESPACE_FLAGS.iter().map(|&f| f as u64).collect();
    deny.insert(libc::SYS_clone, any_flag(0, &clone_flags)?);
    // mknod(path, mode, dev) / mknodat(dirfd, path, mode, dev): devices only; FIFOs and
    // regular files stay allowed.
    let device = |arg| -> Result<Vec<SeccompRule>, String> {
        [libc::S_IFCHR, libc::S_IFBLK]
            .into_iter()
            .map(|kind| {
                rule(vec![condition(
                    arg,
                    SeccompCmpOp::MaskedEq(libc::S_IFMT as u64),
                    kind as u64,
                )?])
            })
            .collect()
    };
    deny.insert(libc::SYS_mknod, device(1)?);
    deny.insert(libc::SYS_mknodat, device(2)?);
    deny.insert(
        libc::SYS_socket,
        vec![rule(vec![condition(
            0,
            SeccompCmpOp::Eq,
            libc::AF_VSOCK as u64,
        )?])?],
    );
    let denylist = compile(deny, SeccompAction::Errno(libc::EPERM as u32))?;
    let clone3 = compile(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Errno(libc::ENOSYS as u32),
    )?;
    Ok(vec![denylist, clone3, x32_guard()])
}

/// Installs the programs on the calling thread. Requires `no_new_privs` (or
/// `CAP_SYS_ADMIN`); meant to be the last step before `execve`.
pub(crate) fn install(programs: &[BpfProgram]) -> Result<(), String> {
    for program in programs {
        seccompiler::apply_filter(program).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The programs are checked by running them in a tiny classic-BPF interpreter against
    //! `struct seccomp_data` values, so the decisions are tested without installing them.
    use super::*;

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
    const X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

    /// `struct seccomp_data` as the kernel lays it out.
    fn data(arch: u32, nr: u32, args: [u64; 6]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend(nr.to_le_bytes());
        bytes.extend(arch.to_le_bytes());
        bytes.extend(0u64.to_le_bytes()); // instruction pointer
        for a in args {
            bytes.extend(a.to_le_bytes());
        }
        bytes
    }

    fn run(program: &[sock_filter], data: &[u8]) -> u32 {
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let ins = &program[pc];
            pc += 1;
            let class = ins.code & 0x07;
            let op = ins.code & 0xf0;
            match class as u32 {
                libc::BPF_LD => {
                    let at = ins.k as usize;
                    acc = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
                }
                libc::BPF_ALU => {
                    assert_eq!(op as u32, libc::BPF_AND, "unexpected ALU op");
                    acc &= ins.k;
                }
                libc::BPF_JMP => {
                    let taken = match op as u32 {
                        libc::BPF_JA => {
                            pc += ins.k as usize;
                            continue;
                        }
                        libc::BPF_JEQ => acc == ins.k,
                        libc::BPF_JGT => acc > ins.k,
                        libc::BPF_JGE => acc >= ins.k,
                        libc::BPF_JSET => acc & ins.k != 0,
                        other => panic!("unexpected jump {other:#x}"),
                    };
                    pc += if taken { ins.jt } else { ins.jf } as usize;
                }
                libc::BPF_RET => return ins.k,
                other => panic!("unexpected instruction class {other:#x}"),
            }
        }
    }

    /// The kernel's verdict for the stacked programs: the most severe action wins
    /// (KILL_PROCESS > ... > ERRNO > ALLOW, by the action bits).
    fn verdict(programs: &[BpfProgram], arch: u32, nr: libc::c_long, args: [u64; 6]) -> u32 {
        let d = data(arch, nr as u32, args);
        let precedence = |r: u32| match r & libc::SECCOMP_RET_ACTION_FULL {
            libc::SECCOMP_RET_KILL_PROCESS => 0,
            libc::SECCOMP_RET_ERRNO => 3,
            libc::SECCOMP_RET_ALLOW => 9,
            other => panic!("unexpected action {other:#x}"),
        };
        programs
            .iter()
            .map(|p| run(p, &d))
            .min_by_key(|&r| precedence(r))
            .unwrap()
    }

    fn check(nr: libc::c_long, args: [u64; 6]) -> u32 {
        verdict(&build().unwrap(), X86_64, nr, args)
    }

    #[test]
    fn every_required_syscall_is_denied_with_eperm() {
        for (name, nr) in DENIED {
            assert_eq!(check(*nr, [0; 6]), EPERM, "{name} not denied");
        }
    }

    #[test]
    fn clone_is_denied_only_with_namespace_flags() {
        let fork_flags =
            (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as u64;
        let thread_flags = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        assert_eq!(check(libc::SYS_clone, [fork_flags, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(check(libc::SYS_clone, [thread_flags, 0, 0, 0, 0, 0]), ALLOW);
        for flag in CLONE_NAMESPACE_FLAGS {
            let flags = fork_flags | *flag as u64;
            assert_eq!(
                check(libc::SYS_clone, [flags, 0, 0, 0, 0, 0]),
                EPERM,
                "{flag:#x}"
            );
        }
    }

    #[test]
    fn upper_register_bits_do_not_hide_an_argument() {
        let garbage = 0xdead_beef_0000_0000u64;
        let flags = garbage | (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64;
        assert_eq!(check(libc::SYS_clone, [flags, 0, 0, 0, 0, 0]), EPERM);
        let family = garbage | libc::AF_VSOCK as u64;
        assert_eq!(check(libc::SYS_socket, [family, 1, 0, 0, 0, 0]), EPERM);
    }

    #[test]
    fn clone3_falls_back_to_clone() {
        assert_eq!(check(libc::SYS_clone3, [0; 6]), ENOSYS);
    }

    #[test]
    fn mknod_is_denied_only_for_devices() {
        let at = |mode: u32| [libc::AT_FDCWD as u64, 0, mode as u64, 0, 0, 0];
        assert_eq!(check(libc::SYS_mknodat, at(libc::S_IFCHR | 0o666)), EPERM);
        assert_eq!(check(libc::SYS_mknodat, at(libc::S_IFBLK | 0o600)), EPERM);
        assert_eq!(check(libc::SYS_mknodat, at(libc::S_IFIFO | 0o600)), ALLOW);
        assert_eq!(check(libc::SYS_mknodat, at(libc::S_IFREG | 0o600)), ALLOW);
        let old = |mode: u32| [0, mode as u64, 0, 0, 0, 0];
        assert_eq!(check(libc::SYS_mknod, old(libc::S_IFCHR | 0o666)), EPERM);
        assert_eq!(check(libc::SYS_mknod, old(libc::S_IFIFO | 0o666)), ALLOW);
    }

    #[test]
    fn vsock_is_denied_other_sockets_allowed() {
        let socket = |family: i32| [family as u64, libc::SOCK_STREAM as u64, 0, 0, 0, 0];
        assert_eq!(check(libc::SYS_socket, socket(libc::AF_VSOCK)), EPERM);
        assert_eq!(check(libc::SYS_socket, socket(libc::AF_INET)), ALLOW);
        assert_eq!(check(libc::SYS_socket, socket(libc::AF_UNIX)), ALLOW);
    }

    #[test]
    fn ordinary_syscalls_are_allowed() {
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_mmap,
            libc::SYS_execve,
            libc::SYS_wait4,
            libc::SYS_futex,
            libc::SYS_connect,
            libc::SYS_accept4,
            libc::SYS_epoll_wait,
        ] {
            assert_eq!(check(nr, [0; 6]), ALLOW, "syscall {nr}");
        }
    }

    #[test]
    fn x32_aliases_and_foreign_architectures_are_stopped() {
        let programs = build().unwrap();
        let x32_mount = libc::SYS_mount | X32_SYSCALL_BIT as libc::c_long;
        assert_eq!(verdict(&programs, X86_64, x32_mount, [0; 6]), ENOSYS);
        const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
        assert_eq!(verdict(&programs, AUDIT_ARCH_I386, 21, [0; 6]), KILL);
    }
}
