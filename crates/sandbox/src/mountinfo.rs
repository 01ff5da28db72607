//! Reading `/proc/self/mountinfo`: which file system is the root, what is mounted over
//! the host's `/proc`, what is mounted under the sandboxes directory.

use std::io;
use std::path::{Path, PathBuf};

/// One line of `mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mount {
    pub mount_point: PathBuf,
    pub fs_type: String,
}

/// The mounts of this process's mount namespace, in mount order.
pub(crate) fn read() -> io::Result<Vec<Mount>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// Parses `mountinfo` text: field 5 is the mount point (octal-escaped), the file system
/// type follows the ` - ` separator.
pub(crate) fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mount_point = before.split(' ').nth(4)?;
            let fs_type = after.split(' ').next()?;
            Some(Mount {
                mount_point: PathBuf::from(unescape(mount_point)),
                fs_type: fs_type.to_owned(),
            })
        })
        .collect()
}

/// Undoes the kernel's `\ooo` escaping of spaces, tabs, newlines and backslashes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(value as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The file-system type of the current root (the last mount on `/` wins).
pub(crate) fn root_fs_type(mounts: &[Mount]) -> Option<&str> {
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == Path::new("/"))
        .map(|m| m.fs_type.as_str())
}

/// Mounts strictly below `dir`, deepest first (the order to unmount them in).
pub(crate) fn below(mounts: &[Mount], dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mounts
        .iter()
        .filter(|m| m.mount_point.starts_with(dir) && m.mount_point != dir)
        .map(|m| m.mount_point.clone())
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Mounts over parts of the host's `/proc` that stop the kernel from allowing a fresh
/// proc mount inside a user namespace. `binfmt_misc` is mounted on a directory that procfs
/// declares permanently empty, which the kernel accepts.
pub(crate) fn proc_overmounts(mounts: &[Mount]) -> Vec<PathBuf> {
    below(mounts, Path::new("/proc"))
        .into_iter()
        .filter(|p| p != Path::new("/proc/sys/fs/binfmt_misc"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 8:1 / / rw,relatime - ext4 /dev/vda rw
40 22 0:35 / /proc/sys/fs/binfmt_misc rw,relatime - binfmt_misc binfmt_misc rw
41 22 0:5 /null /proc/kcore rw,nosuid - devtmpfs udev rw
50 27 0:40 / /var/lib/ember/sandboxes/a rw - tmpfs tmpfs rw
51 50 0:41 / /var/lib/ember/sandboxes/a/usr ro - ext4 /dev/vda ro
52 27 0:42 / /mnt/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn parses_mount_points_and_types() {
        let mounts = parse(SAMPLE);
        assert_eq!(mounts.len(), 7);
        assert_eq!(root_fs_type(&mounts), Some("ext4"));
        assert_eq!(mounts[6].mount_point, Path::new("/mnt/with space"));
        assert_eq!(
            root_fs_type(&parse("1 1 0:1 / / rw - rootfs rootfs rw\n")),
            Some("rootfs")
        );
    }

    #[test]
    fn lists_mounts_below_a_directory_deepest_first() {
        let mounts = parse(SAMPLE);
        assert_eq!(
            below(&mounts, Path::new("/var/lib/ember/sandboxes")),
            [
                PathBuf::from("/var/lib/ember/sandboxes/a/usr"),
                PathBuf::from("/var/lib/ember/sandboxes/a")
            ]
        );
        assert!(below(&mounts, Path::new("/var/lib/ember/sandboxes/a/usr")).is_empty());
    }

    #[test]
    fn binfmt_misc_is_not_an_overmount_but_a_masked_kcore_is() {
        assert_eq!(
            proc_overmounts(&parse(SAMPLE)),
            [PathBuf::from("/proc/kcore")]
        );
    }
}
