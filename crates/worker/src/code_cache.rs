//! Node-local cache of unpacked code packages: `<root>/<sha256>/`, extracted once and
//! shared read-only by every sandbox of that code (bind-mounted at `/var/task`).
//!
//! Extraction goes to a temporary directory that is renamed into place, so a directory
//! under its final name is always complete; two concurrent extractions of the same
//! package both succeed and one result is kept.

use std::path::{Path, PathBuf};

use ember_store::package::{self, CodeStore, Limits};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("the code package {0} is missing from the code store")]
    Missing(String),
    #[error("the code package could not be unpacked: {0}")]
    Package(#[from] package::PackageError),
    #[error("I/O error in the code cache: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct CodeCache {
    root: PathBuf,
    store: CodeStore,
    limits: Limits,
}

impl CodeCache {
    pub fn open(root: PathBuf, store: CodeStore, limits: Limits) -> std::io::Result<CodeCache> {
        std::fs::create_dir_all(&root)?;
        // Leftovers of extractions interrupted by a crash.
        for entry in std::fs::read_dir(&root)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                remove_tree(&entry.path())?;
            }
        }
        Ok(CodeCache {
            root,
            store,
            limits,
        })
    }

    /// The unpacked directory of the package `sha256_hex`, extracting it if needed.
    /// Blocking: call from a blocking thread.
    pub fn unpacked(&self, sha256_hex: &str) -> Result<PathBuf, CacheError> {
        let dest = self.root.join(sha256_hex);
        if dest.is_dir() {
            return Ok(dest);
        }
        let zip = self.store.read(sha256_hex).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CacheError::Missing(sha256_hex.to_owned()),
            _ => CacheError::Io(e),
        })?;
        let tmp = self
            .root
            .join(format!(".tmp-{sha256_hex}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&tmp)?;
        let result = package::extract(&zip, &tmp, &self.limits)
            .map_err(CacheError::from)
            .and_then(|_| make_read_only(&tmp).map_err(CacheError::from));
        if let Err(e) = result {
            remove_tree(&tmp)?;
            return Err(e);
        }
        match std::fs::rename(&tmp, &dest) {
            Ok(()) => Ok(dest),
            // Someone else finished first: theirs is as good as ours.
            Err(_) if dest.is_dir() => {
                remove_tree(&tmp)?;
                Ok(dest)
            }
            Err(e) => {
                remove_tree(&tmp)?;
                Err(e.into())
            }
        }
    }
}

/// Clear write bits so even a mistaken writable mount could not change shared code.
fn make_read_only(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.path().symlink_metadata()?;
        if meta.file_type().is_symlink() {
            continue;
        }
        if meta.is_dir() {
            make_read_only(&entry.path())?;
        }
        let mode = meta.permissions().mode() & !0o222;
        std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Remove a tree whose directories may have had their write bits cleared.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = path.symlink_metadata()
        && meta.is_dir()
    {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        for entry in std::fs::read_dir(path)? {
            remove_tree(&entry?.path())?;
        }
        return std::fs::remove_dir(path);
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip(files: &[(&str, &str)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, text) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(text.as_bytes()).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn extracts_once_read_only_and_concurrently() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path().join("code")).unwrap();
        let bytes = zip(&[("app.py", "x = 1\n"), ("pkg/m.py", "y = 2\n")]);
        let info = package::inspect(&bytes, &Limits::default()).unwrap();
        store.put(&bytes, &info).unwrap();
        let cache = CodeCache::open(dir.path().join("cache"), store, Limits::default()).unwrap();
        let sha = info.sha256_hex();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (cache, sha) = (cache.clone(), sha.clone());
                std::thread::spawn(move || cache.unpacked(&sha).unwrap())
            })
            .collect();
        let paths: Vec<PathBuf> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(paths.iter().all(|p| p == &paths[0]));
        assert_eq!(
            std::fs::read_to_string(paths[0].join("pkg/m.py")).unwrap(),
            "y = 2\n"
        );
        let mode = std::fs::metadata(paths[0].join("app.py"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o222, 0);
        let leftovers = std::fs::read_dir(dir.path().join("cache")).unwrap().count();
        assert_eq!(leftovers, 1, "temporary directories were left behind");
        assert!(matches!(
            cache.unpacked(&"ab".repeat(32)),
            Err(CacheError::Missing(_))
        ));
    }
}
