//! [`cleanup_stale`]: removing what sandboxes of a crashed Ember left behind.
//!
//! After `kill -9` of the server its sandboxes keep running: their helpers are re-parented
//! to the host's init, and nothing will ever destroy them. Everything of theirs is findable
//! by construction: their processes are in cgroups under Ember's one parent cgroup, and
//! their root directories are the entries of the sandboxes directory (empty on the host:
//! their mounts lived in their own, now dead, mount namespaces).

use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;

use nix::mount::{MntFlags, umount2};

use crate::sandbox::remove_root_dir;
use crate::spec::validate_id;
use crate::{Environment, SandboxError, mountinfo};

/// What [`cleanup_stale`] found and removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanupStats {
    /// Sandbox cgroups removed.
    pub cgroups_removed: usize,
    /// Processes killed in them.
    pub processes_killed: usize,
    /// Mounts detached under the sandboxes directory (none unless something mounted in
    /// the host's namespace there).
    pub mounts_detached: usize,
    /// Sandbox root directories removed.
    pub root_dirs_removed: usize,
    /// Root directories left in place because they were not empty (never deleted
    /// recursively); investigate them by hand.
    pub left_in_place: Vec<PathBuf>,
}

/// Kills every leftover sandbox process (found through Ember's cgroups), removes those
/// cgroups, and removes leftover root directories and mounts under the sandboxes
/// directory.
///
/// Call it once at start-up, before the first `spawn`: it treats every sandbox of this
/// environment's cgroup parent and sandboxes directory as stale, including live ones.
pub fn cleanup_stale(env: &Environment) -> Result<CleanupStats, SandboxError> {
    let mut stats = CleanupStats::default();
    let timeout = env.config().kill_timeout;
    if let Some(layout) = env.cgroup_layout() {
        for id in layout.list_sandboxes()? {
            let cgroup = layout.cgroup(&id);
            stats.processes_killed += cgroup.kill_all(timeout)?;
            cgroup.remove(timeout)?;
            stats.cgroups_removed += 1;
        }
    }

    let dir = env.sandboxes_dir();
    let mounts =
        mountinfo::read().map_err(|e| SandboxError::io("read", "/proc/self/mountinfo", e))?;
    for mount_point in mountinfo::below(&mounts, dir) {
        match umount2(&mount_point, MntFlags::MNT_DETACH) {
            Ok(()) => stats.mounts_detached += 1,
            // Already gone with its parent.
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(SandboxError::io("unmount", mount_point, e.into())),
        }
    }
    // Mounts are detached above; remove the empty slot and publication points.
    for hidden in [crate::spec::SLOTS_DIR, crate::env::PUBLISHED_DIR] {
        if let Ok(entries) = fs::read_dir(dir.join(hidden)) {
            for entry in entries.flatten() {
                crate::sandbox::remove_slot(&entry.path())?;
            }
        }
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(stats),
        Err(e) => return Err(SandboxError::io("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| SandboxError::io("list", dir, e))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let name_ok = entry
            .file_name()
            .to_str()
            .is_some_and(|n| validate_id(n).is_ok());
        if !is_dir || !name_ok {
            continue;
        }
        match remove_root_dir(&entry.path()) {
            Ok(()) => stats.root_dirs_removed += 1,
            Err(SandboxError::RootDirNotEmpty { path }) => {
                tracing::warn!(path = %path.display(), "stale sandbox root directory is not empty; left in place");
                stats.left_in_place.push(path);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(stats)
}
