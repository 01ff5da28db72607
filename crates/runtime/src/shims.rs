//! Ember's runtime shims, embedded so the binary is all a node needs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python runtime (`python3 -I -S -u /var/runtime/<runtime>/bootstrap.pyc`, see
/// [`compile_python`]; `/var/runtime/bootstrap.py` if that failed).
pub const PYTHON_BOOTSTRAP: &str = include_str!("../shims/bootstrap.py");
/// The Node.js runtime (`node /var/runtime/bootstrap.js`).
pub const NODE_BOOTSTRAP: &str = include_str!("../shims/bootstrap.js");

/// File names of the shims inside the runtime directory.
pub const PYTHON_FILE: &str = "bootstrap.py";
pub const NODE_FILE: &str = "bootstrap.js";
/// File name of the Python shim's bytecode, in a directory per interpreter version.
pub const PYTHON_BYTECODE_FILE: &str = "bootstrap.pyc";

/// Write the shims into `dir` (created if needed), replacing older copies atomically.
pub fn install(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in [(PYTHON_FILE, PYTHON_BOOTSTRAP), (NODE_FILE, NODE_BOOTSTRAP)] {
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))?;
    }
    Ok(())
}

/// Compile the installed Python shim with `python` (the interpreter that will run it) into
/// `dir/<version>/bootstrap.pyc`; returns that path relative to `dir`.
///
/// Python never caches the bytecode of the script it is started with, so a shim started
/// from source is compiled again by every runtime process (~1.5 ms of CPU on a 2-core VM,
/// paid by every sandbox the warming pool boots). Started from its `.pyc`, it is not.
/// Bytecode is specific to the interpreter's minor version, hence one per `version`.
pub fn compile_python(dir: &Path, python: &Path, version: &str) -> std::io::Result<PathBuf> {
    let relative = Path::new(version).join(PYTHON_BYTECODE_FILE);
    let out_dir = dir.join(version);
    std::fs::create_dir_all(&out_dir)?;
    let tmp = out_dir.join(format!(".{PYTHON_BYTECODE_FILE}.tmp"));
    // Tracebacks name the source as the sandbox sees it.
    let shown = Path::new("/var/runtime").join(PYTHON_FILE);
    let output = Command::new(python)
        .args(["-I", "-S", "-c"])
        .arg(
            "import py_compile, sys\n\
             py_compile.compile(sys.argv[1], cfile=sys.argv[2], dfile=sys.argv[3], doraise=True)",
        )
        .arg(dir.join(PYTHON_FILE))
        .arg(&tmp)
        .arg(shown)
        .env_clear()
        .output()?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(std::io::Error::other(format!(
            "{} could not compile the shim: {}",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(&relative))?;
    Ok(relative)
}
