//! The sandbox init helper as a standalone program: what `ember` does when re-executed
//! with `__ember-sandbox-init`, without the rest of `ember`. Used by this crate's tests and
//! benchmarks (set `EnvironmentConfig::init_program` to it).

fn main() {
    ember_sandbox::init_if_requested();
    eprintln!(
        "ember-sandbox-init: internal helper of ember; it is started by Sandbox::spawn with {}",
        ember_sandbox::INIT_MARKER
    );
    std::process::exit(2);
}
