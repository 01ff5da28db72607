//! Creating and destroying sandboxes: nothing is left behind (processes, cgroups, mounts,
//! directories), failures name their step, crashes are cleaned up, and the other isolation
//! modes (no user namespace, degraded) behave as documented.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use ember_sandbox::{Check, Environment, EnvironmentConfig, Sandbox, SandboxError, cleanup_stale};

/// Every place a cgroup of `id` under `parent` could be, v1 or v2.
fn cgroup_dirs(parent: &str, id: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["memory", "pids", "cpu", "freezer"]
        .iter()
        .map(|c| Path::new("/sys/fs/cgroup").join(c).join(parent).join(id))
        .collect();
    dirs.push(Path::new("/sys/fs/cgroup").join(parent).join(id));
    dirs.push(Path::new("/sys/fs/cgroup/unified").join(parent).join(id));
    dirs
}

fn existing(dirs: &[PathBuf]) -> Vec<&PathBuf> {
    dirs.iter().filter(|d| d.exists()).collect()
}

/// A process is gone when its /proc entry is (or it is a zombie whose reaper is the
/// host's init, which takes a moment).
fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next())
                    .map(str::to_owned)
            });
        if state.is_none() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} still exists (state {state:?})"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn mountinfo_mentions(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(path.to_str().unwrap())
}

#[test]
fn destroy_leaves_no_process_cgroup_mount_or_directory() {
    let spec = spec("destroy", &["/bin/sleep", "1000"]);
    let (id, root) = (spec.id.clone(), spec.root_dir.clone());
    let sandbox = Sandbox::spawn(spec, env()).unwrap();
    let (init, helper) = (sandbox.pid(), sandbox.helper_pid());
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).unwrap();
    let payload: u32 = children.trim().parse().unwrap();
    let dirs = cgroup_dirs("ember-test", &id);
    assert!(!existing(&dirs).is_empty(), "the sandbox has a cgroup");
    assert!(root.is_dir());
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        0,
        "the host's view of the root is empty"
    );
    assert!(
        !mountinfo_mentions(&root),
        "the sandbox's mounts are invisible to the host"
    );

    let started = Instant::now();
    sandbox.destroy().unwrap();
    eprintln!("destroy took {:?}", started.elapsed());
    for pid in [helper, init, payload] {
        wait_gone(pid);
    }
    assert!(
        existing(&dirs).is_empty(),
        "cgroup left: {:?}",
        existing(&dirs)
    );
    assert!(!root.exists(), "root directory left");
    assert!(!mountinfo_mentions(&root));
}

#[test]
fn a_dropped_sandbox_is_destroyed_too() {
    let spec = spec("drop", &["/bin/sleep", "1000"]);
    let (id, root) = (spec.id.clone(), spec.root_dir.clone());
    let sandbox = Sandbox::spawn(spec, env()).unwrap();
    let init = sandbox.pid();
    drop(sandbox);
    wait_gone(init);
    assert!(existing(&cgroup_dirs("ember-test", &id)).is_empty());
    assert!(!root.exists());
}

#[test]
fn a_finished_sandbox_reports_and_destroys_cleanly() {
    let mut sandbox = Sandbox::spawn(spec("finished", &["/bin/true"]), env()).unwrap();
    let status = sandbox.wait().unwrap();
    assert!(status.success());
    assert!(!sandbox.is_alive());
    assert_eq!(sandbox.try_wait().unwrap().map(|s| s.success()), Some(true));
    sandbox.destroy().unwrap();
}

#[test]
fn a_failed_exec_names_the_step_and_leaves_nothing() {
    let spec = spec("badexec", &["/no/such/program", "arg"]);
    let (id, root) = (spec.id.clone(), spec.root_dir.clone());
    match Sandbox::spawn(spec, env()) {
        Err(SandboxError::Setup { stage, message, .. }) => {
            assert_eq!(stage, "exec /no/such/program");
            assert!(message.contains("ENOENT"), "{message}");
        }
        other => panic!("expected a setup error, got {other:?}"),
    }
    assert!(existing(&cgroup_dirs("ember-test", &id)).is_empty());
    assert!(!root.exists());

    let err = Sandbox::spawn(spec_with_missing_bind(), env()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("bind /no/such/dir at /opt/x") && text.contains("No such file or directory"),
        "{text}"
    );

    let err = Sandbox::spawn(self::spec("nopath", &["no-such-command"]), env()).unwrap_err();
    assert!(
        err.to_string()
            .contains("not found in PATH=/usr/bin:/bin inside the sandbox"),
        "{err}"
    );
}

fn spec_with_missing_bind() -> ember_sandbox::SandboxSpec {
    let mut spec = spec("badbind", &["/bin/true"]);
    spec.ro_binds.push(("/no/such/dir".into(), "/opt/x".into()));
    spec
}

#[test]
fn an_id_in_use_is_refused() {
    let first = spec("dup", &["/bin/sleep", "100"]);
    let mut second = spec("dup", &["/bin/true"]);
    second.id = first.id.clone();
    second.root_dir = first.root_dir.clone();
    let sandbox = Sandbox::spawn(first, env()).unwrap();
    let err = Sandbox::spawn(second, env()).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(
        sandbox.is_alive(),
        "the refused twin must not disturb the original"
    );
    sandbox.destroy().unwrap();
}

#[test]
fn many_threads_spawn_concurrently() {
    let env = env();
    let outputs: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                scope.spawn(move || {
                    let (status, output) = run(spec(
                        &format!("par{i}"),
                        &["/bin/sh", "-c", "id -u; cat /proc/self/uid_map"],
                    ));
                    assert!(status.success(), "{output}");
                    output
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Each sandbox has its own host ids while it runs.
    let _ = env;
    for output in &outputs {
        assert!(output.starts_with("993\n"), "{output}");
    }
}

#[test]
fn a_helper_that_never_answers_is_reported() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config();
    config.init_program = PathBuf::from("/bin/true");
    let env = Environment::detect_with(config);
    let mut spec = spec("nohelper", &["/bin/true"]);
    spec.root_dir = env.root_dir_for(&spec.id);
    let err = Sandbox::spawn(spec, &env).unwrap_err();
    assert!(matches!(err, SandboxError::HelperDied { .. }), "{err}");
    assert!(err.to_string().contains("init_if_requested"), "{err}");

    let script = dir.path().join("slow-helper");
    std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut config = self::config();
    config.init_program = script;
    config.spawn_timeout = Duration::from_millis(300);
    let env = Environment::detect_with(config);
    let mut spec = self::spec("slowhelper", &["/bin/true"]);
    spec.root_dir = env.root_dir_for(&spec.id);
    let (id, root) = (spec.id.clone(), spec.root_dir.clone());
    let started = Instant::now();
    let err = Sandbox::spawn(spec, &env).unwrap_err();
    assert!(matches!(err, SandboxError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(existing(&cgroup_dirs("ember-test", &id)).is_empty());
    assert!(!root.exists());
}

#[test]
fn cleanup_stale_removes_what_a_crashed_owner_left() {
    require_root();
    let parent = format!("ember-test-stale-{}", std::process::id());
    let sandboxes = std::env::temp_dir().join(format!("ember-test-stale-{}", std::process::id()));
    let mut config = config();
    config.cgroup_parent = parent.clone();
    config.sandboxes_dir = sandboxes.clone();
    let env = Environment::detect_with(config);
    assert!(env.report().is_complete(), "{}", env.report());

    let mut leaked = Vec::new();
    for n in 0..2 {
        let id = unique_id(&format!("leak{n}"));
        let mut spec = spec("x", &["/bin/sleep", "1000"]);
        spec.root_dir = env.root_dir_for(&id);
        spec.id = id.clone();
        let sandbox = Sandbox::spawn(spec, &env).unwrap();
        leaked.push((id, sandbox.pid(), sandbox.helper_pid()));
        // Simulates the owner being killed: nobody will ever destroy it.
        std::mem::forget(sandbox);
    }
    for (id, init, _) in &leaked {
        assert!(Path::new(&format!("/proc/{init}")).exists());
        assert!(!existing(&cgroup_dirs(&parent, id)).is_empty());
    }

    let stats = cleanup_stale(&env).unwrap();
    assert_eq!(stats.cgroups_removed, 2, "{stats:?}");
    assert!(stats.processes_killed >= 2, "{stats:?}");
    assert_eq!(stats.root_dirs_removed, 2, "{stats:?}");
    assert!(stats.left_in_place.is_empty());
    for (id, init, helper) in &leaked {
        // The helpers are this process's children (forgotten, never reaped): reap them.
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(*helper as i32), None);
        wait_gone(*init);
        wait_gone(*helper);
        assert!(existing(&cgroup_dirs(&parent, id)).is_empty());
    }
    assert_eq!(std::fs::read_dir(&sandboxes).unwrap().count(), 0);
    assert_eq!(
        cleanup_stale(&env).unwrap(),
        Default::default(),
        "idempotent"
    );

    // Leave no trace of this test's parent cgroups either.
    for dir in cgroup_dirs(&parent, "") {
        let _ = std::fs::remove_dir(dir);
    }
    std::fs::remove_dir(&sandboxes).unwrap();
}

#[test]
fn without_a_user_namespace_the_payload_runs_as_an_unprivileged_host_uid() {
    require_root();
    let mut config = config();
    config.user_namespace = false;
    let env = Environment::detect_with(config);
    let report = env.report();
    assert!(matches!(report.user_namespace, Check::Disabled(_)));
    assert!(report.is_complete(), "{report}");
    let mut spec = python(
        "nouserns",
        "import os\n\
         status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n\
         print(os.getuid(), status['CapEff'].strip(), status['CapBnd'].strip(), status['NoNewPrivs'].strip())\n\
         print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()), sorted(os.listdir('/')))",
    );
    spec.root_dir = env.root_dir_for(&spec.id);
    let (status, output) = {
        let mut sandbox = Sandbox::spawn(spec, &env).unwrap();
        let result = finish(&mut sandbox);
        sandbox.destroy().unwrap();
        result
    };
    assert!(status.success(), "{output}");
    let mut lines = output.lines();
    let ids: Vec<&str> = lines.next().unwrap().split(' ').collect();
    let uid: u32 = ids[0].parse().unwrap();
    assert!(
        uid > ember_sandbox::DEFAULT_UID_BASE && uid % 2 == 1,
        "payload uid {uid}"
    );
    assert_eq!(&ids[1..], ["0000000000000000", "0000000000000000", "1"]);
    assert_eq!(
        lines.next().unwrap(),
        "[2] ['bin', 'dev', 'etc', 'lib', 'lib64', 'proc', 'sbin', 'tmp', 'usr', 'var']"
    );
}

#[test]
fn degraded_hosts_are_refused_unless_allowed() {
    require_root();
    let no_cgroups = tempfile::tempdir().unwrap();
    let mut config: EnvironmentConfig = config();
    config.cgroup_root = no_cgroups.path().to_path_buf();
    let env = Environment::detect_with(config.clone());
    let report = env.report();
    assert!(!report.is_complete());
    assert!(report.to_string().contains("[MISSING] cgroups"), "{report}");
    let mut spec = python(
        "degraded",
        "import resource\nprint(resource.getrlimit(resource.RLIMIT_NPROC))",
    );
    spec.pids_max = 50;
    spec.root_dir = env.root_dir_for(&spec.id);
    match Sandbox::spawn(spec.clone(), &env) {
        Err(SandboxError::Degraded { missing }) => {
            assert!(
                missing.contains("cgroups") && missing.contains("memory limit"),
                "{missing}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!spec.root_dir.exists());

    config.allow_degraded = true;
    let env = Environment::detect_with(config);
    let mut sandbox = Sandbox::spawn(spec, &env).unwrap();
    let (status, output) = finish(&mut sandbox);
    assert!(status.success(), "{output}");
    assert_eq!(
        output, "(50, 50)\n",
        "RLIMIT_NPROC stands in for the missing pids controller"
    );
    assert_eq!(sandbox.memory_current_bytes(), None);
    sandbox.destroy().unwrap();
}

#[test]
fn cgroup_v2_hierarchy_is_used_for_kill_and_cleanup() {
    require_root();
    // This host: a pure cgroup2 /sys/fs/cgroup (already covered by the shared environment)
    // or a hybrid one whose cgroup2 mount has no controllers; either way the v2 code path
    // (cgroup.procs, cgroup.kill, removal) runs against the real kernel here.
    let root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.controllers").exists())
        .expect("this test needs a cgroup2 hierarchy (pure v2, or v1 with /sys/fs/cgroup/unified)");
    let mut config = config();
    config.cgroup_root = root.clone();
    config.allow_degraded = true;
    let env = Environment::detect_with(config);
    assert_eq!(env.cgroup_version(), Some(ember_sandbox::CgroupVersion::V2));
    let mut spec = spec("v2", &["/bin/sh", "-c", "sleep 100 & sleep 100"]);
    spec.root_dir = env.root_dir_for(&spec.id);
    let id = spec.id.clone();
    let sandbox = Sandbox::spawn(spec, &env).unwrap();
    let dir = root.join("ember-test").join(&id);
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().count() >= 3,
        "helper, pid 1 and the payload are in the v2 cgroup: {procs}"
    );
    sandbox.destroy().unwrap();
    assert!(!dir.exists());
    // Only this test uses the cgroup2 parent here; leave nothing behind.
    let _ = std::fs::remove_dir(root.join("ember-test"));
}
