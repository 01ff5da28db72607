//! The warming pool's task slot: a sandbox boots with an empty `/var/task`, and the code
//! assigned later appears there read-only — and nothing else of the host does.

mod common;

use common::*;
use ember_sandbox::Sandbox;

#[test]
fn code_loaded_after_start_appears_read_only_at_var_task() {
    let code = tempfile::tempdir().unwrap();
    std::fs::write(code.path().join("app.txt"), "hello from the code\n").unwrap();
    // Reachable by the sandbox's unprivileged uids.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(code.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut spec = python(
        "slot",
        "import os, time\n\
         before = os.listdir('/var/task')\n\
         deadline = time.time() + 10\n\
         while not os.path.exists('/var/task/app.txt') and time.time() < deadline:\n\
         \x20   time.sleep(0.002)\n\
         print('before', before)\n\
         print('mounts', [l.split()[3].split(',')[0] for l in open('/proc/self/mounts') if l.split()[1] == '/var/task'])\n\
         print(open('/var/task/app.txt').read().strip())\n\
         try:\n\
         \x20   open('/var/task/new', 'w')\n\
         \x20   print('WRITABLE')\n\
         except OSError as e:\n\
         \x20   print('write refused', e.errno)\n",
    );
    spec.task_slot = true;
    let mut sandbox = Sandbox::spawn(spec, env()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    sandbox.load_code(code.path()).unwrap();
    sandbox.set_memory_limit(200 << 20).unwrap();
    let (status, out) = finish(&mut sandbox);
    assert!(status.success(), "{out}");
    assert!(out.contains("before []"), "{out}");
    assert!(out.contains("hello from the code"), "{out}");
    assert!(out.contains("write refused"), "{out}");
    assert!(!out.contains("WRITABLE"), "{out}");
    // Both the slot and the code mounted over it are read-only.
    assert!(out.contains("mounts ['ro', 'ro']"), "{out}");
    sandbox.destroy().unwrap();
    let slots = sandboxes_dir().join(".slots");
    let leftover: Vec<_> = std::fs::read_dir(&slots)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("slot-"))
        .collect();
    assert!(leftover.is_empty(), "slot directories left: {leftover:?}");
}

#[test]
fn a_slot_and_code_dir_together_are_refused() {
    let mut spec = spec("both", &["/bin/true"]);
    spec.task_slot = true;
    spec.code_dir = Some("/usr".into());
    assert!(Sandbox::spawn(spec, env()).is_err());
}
