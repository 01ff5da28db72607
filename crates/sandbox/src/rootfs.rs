//! The sandbox's root filesystem: a pure [`plan`] (unit-tested) and the code that carries
//! it out inside the sandbox's private mount namespace ([`build`], [`pivot`], [`seal`]).
//!
//! The root is a small tmpfs mounted over `spec.root_dir`, so the host directory stays
//! empty and nothing is written to the host's disk. Into it go, in this order:
//!
//! 1. the skeleton directories and the few `/etc` files a program expects (`passwd`,
//!    `group`, `hosts`, `hostname`, `nsswitch.conf`);
//! 2. the read-only binds, parents before children. A mount point is only ever created in
//!    our own tmpfs: one that would lie inside another bind (that is, on the host's file
//!    system) must already exist there, and no path component may be a symlink, so a bind
//!    list cannot make us write to the host;
//! 3. the code at `/var/task` and the runtime at `/var/runtime`, read-only;
//! 4. `/tmp` (a size-capped tmpfs), `/dev` (the host's harmless device nodes, bound one by
//!    one, and a small `/dev/shm`);
//! 5. `/proc` of the sandbox's pid namespace, with `hidepid=2` (a process sees only its own
//!    uid's processes, so the payload does not see pid 1), `/proc/sys` read-only and a few
//!    kernel-information files masked. It must be mounted while the host's `/proc` is still
//!    visible in the namespace: inside a user namespace the kernel only allows a new proc
//!    mount if a fully visible one already exists.
//!
//! Then [`pivot`] makes it the root (`pivot_root(".", ".")`, then the old root is detached,
//! so no path leads back to the host's tree) and [`seal`] makes the root tmpfs read-only.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, symlink};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statvfs::{FsFlags, statvfs};

use crate::protocol::{At, Failure, Identity};
use crate::spec::{RUNTIME_DIR, SandboxSpec, TASK_DIR};
use crate::sys::{self, attr};

/// Size of the root tmpfs: it holds only directories, mount points and the `/etc` files.
const ROOT_TMPFS: &str = "size=1m,nr_inodes=4096,mode=0755";
/// Size of `/dev/shm` (POSIX semaphores and shared memory, e.g. Python multiprocessing).
const SHM_BYTES: u64 = 64 << 20;
/// Host device nodes bound into `/dev`.
pub(crate) const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
/// Kernel-information files hidden behind `/dev/null`.
const MASKED_PROC_FILES: &[&str] = &[
    "kcore",
    "keys",
    "timer_list",
    "sched_debug",
    "latency_stats",
];
/// `/proc` entries bound read-only over themselves. Only root could write to anything else
/// in `/proc`, and the payload has neither root's uid nor a capability.
const READONLY_PROC: &[&str] = &["sys", "sysrq-trigger"];

/// One step of building the root. Paths are inside the sandbox (`/` is the new root)
/// except `BindHost::src`, which is on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Tmpfs {
        path: PathBuf,
        options: String,
        attrs: u64,
    },
    Dir {
        path: PathBuf,
        mode: u32,
    },
    File {
        path: PathBuf,
        contents: String,
    },
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
    /// Bind the host's `src` at `dst`, recursively, then set `attrs` on it and every mount
    /// below it. `create`: make the mount point (a directory or file like `src`, or the same
    /// symlink if `src` is one); false when `dst` lies inside another bind.
    BindHost {
        src: PathBuf,
        dst: PathBuf,
        attrs: u64,
        create: bool,
        /// Skip it if `src` does not exist on this host (the optional devices).
        optional: bool,
    },
    Proc {
        path: PathBuf,
        options: String,
    },
    /// Bind `src` over `dst`, both inside the new root; skipped if `dst` does not exist.
    BindInside {
        src: PathBuf,
        dst: PathBuf,
        attrs: u64,
    },
}

const READ_ONLY: u64 = attr::RDONLY | attr::NOSUID | attr::NODEV;

/// The `/etc` files of the sandbox (path, contents).
pub(crate) fn etc_files(hostname: &str, identity: Identity) -> Vec<(&'static str, String)> {
    let (uid, gid) = identity.payload_ids();
    let mut passwd = String::from("root:x:0:0:root:/root:/usr/sbin/nologin\n");
    let mut group = String::from("root:x:0:\n");
    if uid != 0 {
        passwd.push_str(&format!(
            "sbx_user1051:x:{uid}:{gid}::/tmp:/usr/sbin/nologin\n"
        ));
        group.push_str(&format!("sbx_user1051:x:{gid}:\n"));
    }
    passwd.push_str("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    group.push_str("nogroup:x:65534:\n");
    vec![
        ("/etc/passwd", passwd),
        ("/etc/group", group),
        (
            "/etc/hosts",
            format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
        ),
        ("/etc/hostname", format!("{hostname}\n")),
        (
            "/etc/nsswitch.conf",
            "passwd: files\ngroup: files\nshadow: files\nhosts: files\nnetworks: files\n\
             protocols: files\nservices: files\n"
                .to_owned(),
        ),
    ]
}

/// The steps that build the sandbox's root, in order.
pub(crate) fn plan(spec: &SandboxSpec, identity: Identity) -> Vec<Step> {
    let p = PathBuf::from;
    let mut steps = vec![Step::Tmpfs {
        path: p("/"),
        options: ROOT_TMPFS.to_owned(),
        attrs: attr::NOSUID | attr::NODEV,
    }];
    for dir in ["/proc", "/dev", "/tmp", "/etc", "/var", TASK_DIR] {
        steps.push(Step::Dir {
            path: p(dir),
            mode: 0o755,
        });
    }
    if spec.runtime_dir.is_some() {
        steps.push(Step::Dir {
            path: p(RUNTIME_DIR),
            mode: 0o755,
        });
    }
    for (path, contents) in etc_files(&spec.hostname, identity) {
        steps.push(Step::File {
            path: p(path),
            contents,
        });
    }

    // Parents before children; a stable sort keeps the caller's order otherwise.
    let mut binds: Vec<&(PathBuf, PathBuf)> = spec.ro_binds.iter().collect();
    binds.sort_by_key(|(_, dst)| dst.components().count());
    for (i, (src, dst)) in binds.iter().enumerate() {
        let inside_another = binds[..i]
            .iter()
            .any(|(_, parent)| dst.starts_with(parent) && dst != parent);
        steps.push(Step::BindHost {
            src: src.clone(),
            dst: dst.clone(),
            attrs: READ_ONLY,
            create: !inside_another,
            optional: false,
        });
    }
    for (src, dst) in [(&spec.code_dir, TASK_DIR), (&spec.runtime_dir, RUNTIME_DIR)] {
        if let Some(src) = src {
            steps.push(Step::BindHost {
                src: src.clone(),
                dst: p(dst),
                attrs: READ_ONLY,
                create: true,
                optional: false,
            });
        }
    }

    steps.push(Step::Tmpfs {
        path: p("/tmp"),
        options: format!("size={},mode=1777", spec.tmp_bytes),
        attrs: attr::NOSUID | attr::NODEV,
    });
    for device in DEVICES {
        // No attributes: nosuid and noexec mean nothing for a character device, and each
        // mount_setattr costs ~20 µs of spawn latency.
        let path = Path::new("/dev").join(device);
        steps.push(Step::BindHost {
            src: path.clone(),
            dst: path,
            attrs: 0,
            create: true,
            optional: true,
        });
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        steps.push(Step::Symlink {
            path: Path::new("/dev").join(name),
            target: p(target),
        });
    }
    steps.push(Step::Dir {
        path: p("/dev/shm"),
        mode: 0o755,
    });
    steps.push(Step::Tmpfs {
        path: p("/dev/shm"),
        options: format!("size={SHM_BYTES},mode=1777"),
        attrs: attr::NOSUID | attr::NODEV | attr::NOEXEC,
    });

    steps.push(Step::Proc {
        path: p("/proc"),
        options: "hidepid=2".to_owned(),
    });
    for entry in READONLY_PROC {
        let path = Path::new("/proc").join(entry);
        steps.push(Step::BindInside {
            src: path.clone(),
            dst: path,
            attrs: READ_ONLY | attr::NOEXEC,
        });
    }
    for file in MASKED_PROC_FILES {
        // Not NODEV: the mask is the null device, and it should read as empty.
        steps.push(Step::BindInside {
            src: p("/dev/null"),
            dst: Path::new("/proc").join(file),
            attrs: attr::RDONLY | attr::NOSUID | attr::NOEXEC,
        });
    }
    steps
}

/// `path` (inside the sandbox) as a host path under `root`.
fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn ms_flags(attrs: u64) -> MsFlags {
    let mut flags = MsFlags::empty();
    for (a, f) in [
        (attr::RDONLY, MsFlags::MS_RDONLY),
        (attr::NOSUID, MsFlags::MS_NOSUID),
        (attr::NODEV, MsFlags::MS_NODEV),
        (attr::NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if attrs & a != 0 {
            flags |= f;
        }
    }
    flags
}

/// Sets mount attributes on `target` (and below it if `recursive`). Kernels before 5.12 lack
/// `mount_setattr`: there the top mount is remounted, keeping the flags the kernel locked on
/// it (a remount inside a user namespace may not clear them).
fn set_attrs(target: &Path, recursive: bool, attrs: u64) -> io::Result<()> {
    match sys::mount_setattr(target, recursive, attrs) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            let current = statvfs(target)?.flags();
            let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | ms_flags(attrs);
            for (f, m) in [
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
                (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
            ] {
                if current.contains(f) {
                    flags |= m;
                }
            }
            Ok(mount(
                None::<&str>,
                target,
                None::<&str>,
                flags,
                None::<&str>,
            )?)
        }
        other => other,
    }
}

/// Walks `path` component by component below `root`, creating missing directories
/// (all of them if `include_last`, else all but the last) and refusing symlinks and
/// non-directories, so that creation can never leave our own tmpfs.
fn make_dirs(root: &Path, path: &Path, include_last: bool, mode: u32) -> io::Result<()> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    let count = relative.components().count();
    let take = if include_last {
        count
    } else {
        count.saturating_sub(1)
    };
    let mut current = root.to_path_buf();
    for component in relative.components().take(take) {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(io::Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{} is a symlink; mount points are never created through one",
                        current.display()
                    ),
                ));
            }
            Ok(_) => {
                return Err(io::Error::new(
                    ErrorKind::InvalidInput,
                    format!("{} is not a directory", current.display()),
                ));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                DirBuilder::new().mode(mode).create(&current)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn make_file(root: &Path, path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    make_dirs(root, path, false, 0o755)?;
    let target = under(root, path);
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&target)
    {
        Ok(mut file) => io::Write::write_all(&mut file, contents),
        // A mount point that already exists (e.g. created by an earlier step) is fine.
        Err(e) if e.kind() == ErrorKind::AlreadyExists && contents.is_empty() => Ok(()),
        Err(e) => Err(e),
    }
}

fn bind(src: &Path, target: &Path, attrs: u64) -> io::Result<()> {
    mount(
        Some(src),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )?;
    if attrs != 0 {
        set_attrs(target, true, attrs)?;
    }
    Ok(())
}

/// Makes every mount of this (new) mount namespace private, so that nothing mounted from
/// now on propagates to the host, and nothing the host mounts appears in the sandbox.
pub(crate) fn make_private() -> Result<(), Failure> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .at(|| "make all mounts private")
}

/// Like [`make_private`], but every mount becomes a slave of its host peer: host mounts
/// still propagate in (needed for the task slot), nothing propagates out. [`slot_in`]
/// then makes the new tree private again except the task slot.
pub(crate) fn make_slave() -> Result<(), Failure> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .at(|| "make all mounts slaves")
}

/// Make the new root's tree private, then bind the host's task slot at `/var/task` as the
/// one mount that keeps receiving host mounts (the code, once assigned). Read-only.
pub(crate) fn slot_in(root: &Path, slot: &Path) -> Result<(), Failure> {
    mount(
        None::<&str>,
        root,
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .at(|| "make the new root private")?;
    let target = under(root, Path::new(TASK_DIR));
    mount(
        Some(slot),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .at(|| format!("bind the task slot {}", slot.display()))?;
    set_attrs(&target, false, READ_ONLY).at(|| "make the task slot read-only")
}

/// Carries out `steps` with the new root at `root` (a host path, before `pivot`).
pub(crate) fn build(root: &Path, steps: &[Step]) -> Result<(), Failure> {
    for step in steps {
        run_step(root, step)?;
    }
    Ok(())
}

fn run_step(root: &Path, step: &Step) -> Result<(), Failure> {
    match step {
        Step::Tmpfs {
            path,
            options,
            attrs,
        } => mount(
            Some("tmpfs"),
            &under(root, path),
            Some("tmpfs"),
            ms_flags(*attrs),
            Some(options.as_str()),
        )
        .at(|| format!("mount tmpfs ({options}) at {}", path.display())),
        Step::Dir { path, mode } => {
            make_dirs(root, path, true, *mode).at(|| format!("create {}", path.display()))
        }
        Step::File { path, contents } => make_file(root, path, contents.as_bytes(), 0o644)
            .at(|| format!("write {}", path.display())),
        Step::Symlink { path, target } => make_dirs(root, path, false, 0o755)
            .and_then(|()| symlink(target, under(root, path)))
            .at(|| format!("symlink {} -> {}", path.display(), target.display())),
        Step::BindHost {
            src,
            dst,
            attrs,
            create,
            optional,
        } => {
            let stage = || format!("bind {} at {}", src.display(), dst.display());
            let meta = match fs::symlink_metadata(src) {
                Err(e) if *optional && e.kind() == ErrorKind::NotFound => return Ok(()),
                other => other.at(stage)?,
            };
            let target = under(root, dst);
            if meta.file_type().is_symlink() {
                if !create {
                    return Err(Failure::new(
                        stage(),
                        "the source is a symlink and its place lies inside another bind",
                    ));
                }
                let link = fs::read_link(src).at(stage)?;
                return make_dirs(root, dst, false, 0o755)
                    .and_then(|()| symlink(&link, &target))
                    .at(stage);
            }
            if *create {
                if meta.is_dir() {
                    make_dirs(root, dst, true, 0o755).at(stage)?;
                } else {
                    make_file(root, dst, b"", 0o644).at(stage)?;
                }
            }
            bind(src, &target, *attrs).at(stage)
        }
        Step::Proc { path, options } => mount(
            Some("proc"),
            &under(root, path),
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(options.as_str()),
        )
        .map_err(|e| {
            let hint = if e == nix::errno::Errno::EPERM {
                " (inside a user namespace the kernel refuses a new /proc while the host's \
                 /proc has mounts over parts of it, as in most containers: disable the user \
                 namespace in the environment configuration)"
            } else {
                ""
            };
            Failure::new(
                format!("mount proc at {}", path.display()),
                format!("{e}{hint}"),
            )
        }),
        Step::BindInside { src, dst, attrs } => {
            let target = under(root, dst);
            if fs::symlink_metadata(&target).is_err() {
                return Ok(()); // this kernel has no such file
            }
            bind(&under(root, src), &target, *attrs)
                .at(|| format!("bind {} over {}", src.display(), dst.display()))
        }
    }
}

/// Makes `root` the root directory and detaches the old root entirely.
pub(crate) fn pivot(root: &Path) -> Result<(), Failure> {
    nix::unistd::chdir(root).at(|| format!("chdir {}", root.display()))?;
    // pivot_root(".", "."): the old root ends up stacked on top of the new one, and is
    // then detached; no directory for it is needed in the new root.
    nix::unistd::pivot_root(".", ".").at(|| format!("pivot_root into {}", root.display()))?;
    umount2(".", MntFlags::MNT_DETACH).at(|| "detach the old root")?;
    nix::unistd::chdir("/").at(|| "chdir /")
}

/// Makes the root tmpfs itself read-only (the mounts on it keep their own attributes:
/// `/tmp` and `/dev/shm` stay writable).
pub(crate) fn seal() -> Result<(), Failure> {
    set_attrs(Path::new("/"), false, READ_ONLY).at(|| "make / read-only")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SandboxSpec {
        let mut s = SandboxSpec::new("t", "/sb/t", vec!["/usr/bin/python3.11".into()]);
        s.ro_binds = vec![
            ("/opt/py/lib".into(), "/usr/lib/extra".into()),
            ("/usr".into(), "/usr".into()),
            ("/lib".into(), "/lib".into()),
            ("/etc/ssl".into(), "/etc/ssl".into()),
        ];
        s.code_dir = Some("/data/code/abc".into());
        s.tmp_bytes = 1 << 20;
        s
    }

    fn position(steps: &[Step], pred: impl Fn(&Step) -> bool) -> usize {
        steps.iter().position(pred).expect("step missing")
    }

    fn bind_at(dst: &str) -> impl Fn(&Step) -> bool + '_ {
        move |s| matches!(s, Step::BindHost { dst: d, .. } if d == Path::new(dst))
    }

    #[test]
    fn the_root_tmpfs_comes_first_and_proc_comes_last() {
        let steps = plan(&spec(), Identity::MappedRange { host_base: 10 });
        assert!(matches!(&steps[0], Step::Tmpfs { path, .. } if path == Path::new("/")));
        let proc = position(&steps, |s| matches!(s, Step::Proc { .. }));
        assert!(
            steps[proc + 1..]
                .iter()
                .all(|s| matches!(s, Step::BindInside { .. }))
        );
    }

    #[test]
    fn binds_are_read_only_parents_first_and_never_create_inside_another_bind() {
        let steps = plan(&spec(), Identity::MappedRange { host_base: 10 });
        let usr = position(&steps, bind_at("/usr"));
        let extra = position(&steps, bind_at("/usr/lib/extra"));
        assert!(usr < extra, "parent bind first");
        match &steps[extra] {
            Step::BindHost { create, attrs, .. } => {
                assert!(!create, "must not mkdir inside the host's /usr");
                assert_eq!(*attrs & attr::RDONLY, attr::RDONLY);
            }
            _ => unreachable!(),
        }
        match &steps[position(&steps, bind_at("/var/task"))] {
            Step::BindHost {
                src, attrs, create, ..
            } => {
                assert_eq!(src, Path::new("/data/code/abc"));
                assert_eq!(*attrs, READ_ONLY);
                assert!(create);
            }
            _ => unreachable!(),
        }
        // /etc files are written before anything is bound under /etc.
        let passwd = position(
            &steps,
            |s| matches!(s, Step::File { path, .. } if path == Path::new("/etc/passwd")),
        );
        assert!(passwd < position(&steps, bind_at("/etc/ssl")));
    }

    #[test]
    fn only_listed_host_paths_and_harmless_devices_are_bound() {
        let steps = plan(&spec(), Identity::MappedRange { host_base: 10 });
        let sources: Vec<&Path> = steps
            .iter()
            .filter_map(|s| match s {
                Step::BindHost { src, .. } => Some(src.as_path()),
                _ => None,
            })
            .collect();
        let mut expected: Vec<PathBuf> =
            ["/opt/py/lib", "/usr", "/lib", "/etc/ssl", "/data/code/abc"]
                .iter()
                .map(PathBuf::from)
                .collect();
        expected.extend(DEVICES.iter().map(|d| Path::new("/dev").join(d)));
        let mut got: Vec<PathBuf> = sources.iter().map(|p| p.to_path_buf()).collect();
        got.sort();
        expected.sort();
        assert_eq!(got, expected);
    }

    #[test]
    fn tmp_is_capped_and_proc_hides_other_users() {
        let steps = plan(&spec(), Identity::MappedRange { host_base: 10 });
        assert!(steps.contains(&Step::Tmpfs {
            path: "/tmp".into(),
            options: "size=1048576,mode=1777".into(),
            attrs: attr::NOSUID | attr::NODEV,
        }));
        assert!(steps.contains(&Step::Proc {
            path: "/proc".into(),
            options: "hidepid=2".into(),
        }));
        assert!(
            steps
                .iter()
                .any(|s| matches!(s, Step::BindInside { src, dst, attrs }
            if src == Path::new("/proc/sys") && dst == src && attrs & attr::RDONLY != 0))
        );
        assert!(
            steps
                .iter()
                .any(|s| matches!(s, Step::BindInside { src, dst, .. }
            if src == Path::new("/dev/null") && dst == Path::new("/proc/kcore")))
        );
    }

    #[test]
    fn etc_files_name_the_payload_user() {
        let files = etc_files("box", Identity::MappedRange { host_base: 10 });
        let get = |name: &str| files.iter().find(|(p, _)| *p == name).unwrap().1.clone();
        assert!(get("/etc/passwd").contains("sbx_user1051:x:993:990:"));
        assert!(get("/etc/group").contains("sbx_user1051:x:990:"));
        assert!(get("/etc/hosts").starts_with("127.0.0.1\tlocalhost box\n"));
        assert_eq!(get("/etc/hostname"), "box\n");
        let host_ids = etc_files("box", Identity::HostIds { host_base: 7000 });
        assert!(host_ids[0].1.contains("sbx_user1051:x:7001:7001:"));
        let own = etc_files(
            "box",
            Identity::MappedSelf {
                uid: 1000,
                gid: 1000,
            },
        );
        assert!(!own[0].1.contains("sbx_user1051"), "payload is root there");
    }

    #[test]
    fn mount_points_are_never_created_through_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), tmp.path().join("bin")).unwrap();
        let err = make_dirs(tmp.path(), Path::new("/bin/sub"), true, 0o755).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(!outside.path().join("sub").exists());
        make_dirs(tmp.path(), Path::new("/var/task"), true, 0o755).unwrap();
        assert!(tmp.path().join("var/task").is_dir());
        make_file(tmp.path(), Path::new("/dev/null"), b"", 0o644).unwrap();
        make_file(tmp.path(), Path::new("/dev/null"), b"", 0o644).unwrap();
    }
}
