//! Ember's runtime shims, embedded so the binary is all a node needs.

use std::io::Write;
use std::path::Path;

/// The Python runtime (`python3 -I -S /var/runtime/bootstrap.py`).
pub const PYTHON_BOOTSTRAP: &str = include_str!("../shims/bootstrap.py");
/// The Node.js runtime (`node /var/runtime/bootstrap.js`).
pub const NODE_BOOTSTRAP: &str = include_str!("../shims/bootstrap.js");

/// File names of the shims inside the runtime directory.
pub const PYTHON_FILE: &str = "bootstrap.py";
pub const NODE_FILE: &str = "bootstrap.js";

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
