//! Shared set-up of the integration tests: one environment, real sandboxes.
//!
//! These tests need root and cgroups. Without them they fail with a message saying so:
//! a sandbox test that silently passes on a host that cannot sandbox proves nothing.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use ember_sandbox::{Environment, EnvironmentConfig, Sandbox, SandboxSpec, system_ro_binds};

/// The real interpreter, not a pyenv shim.
pub const PYTHON: &str = "/usr/bin/python3.11";

pub fn sandboxes_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ember-sandbox-tests")
}

pub fn config() -> EnvironmentConfig {
    let mut config = EnvironmentConfig::new(sandboxes_dir());
    config.init_program = PathBuf::from(env!("CARGO_BIN_EXE_ember-sandbox-init"));
    config.cgroup_parent = "ember-test".into();
    config
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test spawns real sandboxes and needs root (cgroups, namespaces, mounts); run it as root"
    );
}

static ENV: OnceLock<Environment> = OnceLock::new();

/// At the test process's exit: undo the environment's shared mounts, as the server does
/// at shutdown (a static is never dropped), so no test run leaves a mount behind.
extern "C" fn release_env() {
    if let Some(env) = ENV.get() {
        let _ = env.release();
    }
}

/// The shared environment; fails the test if this host cannot isolate fully.
#[allow(unsafe_code)] // one `atexit` registration
pub fn env() -> &'static Environment {
    require_root();
    ENV.get_or_init(|| {
        let env = Environment::detect_with(config());
        assert!(
            env.report().is_complete(),
            "this host cannot isolate sandboxes fully, so these tests cannot run:\n{}",
            env.report()
        );
        // SAFETY: `release_env` is a plain function that only unmounts; registering it
        // has no other effect.
        unsafe {
            libc::atexit(release_env);
        }
        env
    })
}

/// A unique sandbox id for this test process.
pub fn unique_id(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A spec with the system binds, a small memory limit and PATH set.
pub fn spec(name: &str, argv: &[&str]) -> SandboxSpec {
    let id = unique_id(name);
    let mut spec = SandboxSpec::new(
        &id,
        env().root_dir_for(&id),
        argv.iter().map(|s| s.to_string()).collect(),
    );
    spec.ro_binds = system_ro_binds();
    spec.memory_bytes = 256 << 20;
    spec.tmp_bytes = 16 << 20;
    spec.cwd = "/".into();
    spec.env = vec![("PATH".into(), "/usr/bin:/bin".into())];
    spec
}

pub fn python(name: &str, script: &str) -> SandboxSpec {
    spec(name, &[PYTHON, "-I", "-S", "-c", script])
}

/// Runs the spec to completion: (exit status, stdout + stderr).
pub fn run(spec: SandboxSpec) -> (ExitStatus, String) {
    let mut sandbox = Sandbox::spawn(spec, env()).expect("spawn");
    let (status, output) = finish(&mut sandbox);
    sandbox.destroy().expect("destroy");
    (status, output)
}

/// Reads the output to EOF and waits for the payload.
pub fn finish(sandbox: &mut Sandbox) -> (ExitStatus, String) {
    let mut output = String::new();
    sandbox
        .take_output()
        .expect("output")
        .read_to_string(&mut output)
        .expect("read output");
    let status = sandbox.wait().expect("wait");
    (status, output)
}

/// Runs a Python script that must exit 0; returns its output.
pub fn run_python_ok(name: &str, script: &str) -> String {
    let (status, output) = run(python(name, script));
    assert!(status.success(), "payload failed ({status}):\n{output}");
    output
}
