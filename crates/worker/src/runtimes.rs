//! Which Lambda runtimes this host can run, and how.
//!
//! Detected once at start-up. Interpreters are resolved to their real binaries (never a
//! pyenv-style shim script: see FLOORS.md), and every directory the binary needs is
//! recorded so the sandbox can bind it read-only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How to start one runtime inside a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeCommand {
    /// Lambda runtime identifier, e.g. `python3.11`.
    pub name: String,
    /// argv of the runtime process, as seen inside the sandbox.
    pub argv: Vec<String>,
    /// Host directories the runtime needs beyond the base userland, bound read-only at the
    /// same path inside the sandbox.
    pub extra_binds: Vec<PathBuf>,
}

/// Directory inside the sandbox holding Ember's runtime shims.
pub const RUNTIME_DIR: &str = "/var/runtime";

/// The runtimes found on this host, by Lambda name.
#[derive(Debug, Clone, Default)]
pub struct HostRuntimes {
    runtimes: BTreeMap<String, RuntimeCommand>,
}

impl HostRuntimes {
    /// Look for Python 3 interpreters in the standard system locations and for `node` on
    /// `PATH` (following symlinks to the real file). `provided*` runtimes need nothing but
    /// the sandbox's base userland, so they are always available.
    pub fn detect() -> HostRuntimes {
        let mut runtimes = BTreeMap::new();
        for dir in ["/usr/bin", "/usr/local/bin"] {
            for minor in 8..=14 {
                let path = Path::new(dir).join(format!("python3.{minor}"));
                let name = format!("python3.{minor}");
                if runtimes.contains_key(&name) || !is_real_executable(&path) {
                    continue;
                }
                let extra_binds = match dir {
                    "/usr/bin" => vec![],
                    _ => vec![PathBuf::from(dir), PathBuf::from("/usr/local/lib")],
                };
                runtimes.insert(
                    name.clone(),
                    RuntimeCommand {
                        name,
                        argv: vec![
                            path.to_string_lossy().into_owned(),
                            "-I".into(),
                            "-S".into(),
                            // Unbuffered, as Lambda's: output before a crash or a timeout
                            // still reaches the log, in order.
                            "-u".into(),
                            format!("{RUNTIME_DIR}/{}", ember_runtime::shims::PYTHON_FILE),
                        ],
                        extra_binds,
                    },
                );
            }
        }
        if let Some(node) = find_node() {
            runtimes.insert(node.name.clone(), node);
        }
        for name in ["provided", "provided.al2", "provided.al2023"] {
            runtimes.insert(
                name.to_owned(),
                RuntimeCommand {
                    name: name.to_owned(),
                    argv: vec!["/var/task/bootstrap".into()],
                    extra_binds: vec![],
                },
            );
        }
        HostRuntimes { runtimes }
    }

    /// Start the Python runtimes from their shim's bytecode, compiled now by each
    /// interpreter into `shims_dir` (where [`ember_runtime::shims::install`] put the
    /// source; bound at [`RUNTIME_DIR`] in sandboxes). A runtime whose interpreter cannot
    /// compile it keeps starting from the source, a little slower.
    pub fn use_compiled_shims(&mut self, shims_dir: &Path) {
        for runtime in self.runtimes.values_mut() {
            if !runtime.name.starts_with("python") {
                continue;
            }
            let python = Path::new(&runtime.argv[0]);
            match ember_runtime::shims::compile_python(shims_dir, python, &runtime.name) {
                Ok(relative) => {
                    if let Some(script) = runtime.argv.last_mut() {
                        *script = format!("{RUNTIME_DIR}/{}", relative.display());
                    }
                }
                Err(e) => {
                    tracing::warn!(runtime = %runtime.name, error = %e, "the Python shim runs from source");
                }
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&RuntimeCommand> {
        self.runtimes.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.runtimes.keys().map(String::as_str)
    }
}

/// An executable ELF file (not a shell-script shim).
fn is_real_executable(path: &Path) -> bool {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return false;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

fn find_node() -> Option<RuntimeCommand> {
    let path = std::env::var_os("PATH")?;
    let node = std::env::split_paths(&path)
        .map(|d| d.join("node"))
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .find(|p| is_real_executable(p))?;
    let out = Command::new(&node).arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&out.stdout);
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()?;
    // The node binary's own installation (…/bin/node → …/lib/node_modules etc.).
    let prefix = node.parent()?.parent()?.to_path_buf();
    let extra_binds = if prefix == Path::new("/usr") {
        vec![]
    } else {
        vec![prefix]
    };
    Some(RuntimeCommand {
        name: format!("nodejs{major}.x"),
        argv: vec![
            node.to_string_lossy().into_owned(),
            format!("{RUNTIME_DIR}/{}", ember_runtime::shims::NODE_FILE),
        ],
        extra_binds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_hosts_runtimes() {
        let found = HostRuntimes::detect();
        let names: Vec<&str> = found.names().collect();
        assert!(names.contains(&"provided.al2023"), "{names:?}");
        // This machine has Debian's Python 3.11 and Node 20 (see the README).
        let python = found
            .get("python3.11")
            .expect("this host should have /usr/bin/python3.11");
        assert_eq!(python.argv[0], "/usr/bin/python3.11");
        assert!(
            names.iter().any(|n| n.starts_with("nodejs")),
            "node not found: {names:?}"
        );
        assert!(!is_real_executable(Path::new("/etc/hostname")));
    }

    #[test]
    fn python_runtimes_start_from_the_shims_bytecode() {
        let dir = tempfile::tempdir().unwrap();
        ember_runtime::shims::install(dir.path()).unwrap();
        let mut found = HostRuntimes::detect();
        found.use_compiled_shims(dir.path());
        let python = found.get("python3.11").unwrap();
        assert_eq!(
            python.argv.last().unwrap(),
            "/var/runtime/python3.11/bootstrap.pyc"
        );
        let pyc = std::fs::read(dir.path().join("python3.11/bootstrap.pyc")).unwrap();
        // The interpreter's own bytecode, checked by the same interpreter.
        let magic = Command::new("/usr/bin/python3.11")
            .args([
                "-I",
                "-S",
                "-c",
                "import importlib.util, sys; sys.stdout.buffer.write(importlib.util.MAGIC_NUMBER)",
            ])
            .output()
            .unwrap()
            .stdout;
        assert_eq!(&pyc[..4], &magic[..]);
        // Node is untouched.
        let node = found.names().find(|n| n.starts_with("nodejs")).unwrap();
        assert!(found.get(node).unwrap().argv[1].ends_with("bootstrap.js"));
    }
}
