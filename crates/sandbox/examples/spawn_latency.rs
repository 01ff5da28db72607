//! Spawn-to-exec latency of a sandbox running `/bin/true`, beside the floor of a plain
//! fork+exec of `/bin/true` measured in the same run, and the cost of `destroy`.
//!
//! ```text
//! sudo cargo run --release -p ember-sandbox --example spawn_latency -- [runs]
//! sudo taskset -c 0 cargo run ...   # everything on one core (FLOORS.md: placement matters)
//! ```
//!
//! This binary is its own init helper (it calls `init_if_requested` first and the default
//! `init_program` is `/proc/self/exe`), exactly as `ember` will be.

use std::os::unix::fs::DirBuilderExt;
use std::process::Command;
use std::time::{Duration, Instant};

use ember_sandbox::{Environment, EnvironmentConfig, Sandbox, SandboxSpec, system_ro_binds};

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn row(name: &str, samples: &mut [Duration]) {
    println!(
        "{name:<44} p50 {:>9.3} ms   p99 {:>9.3} ms",
        percentile(samples, 0.50).as_secs_f64() * 1e3,
        percentile(samples, 0.99).as_secs_f64() * 1e3,
    );
}

fn main() {
    ember_sandbox::init_if_requested();
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("runs: a number"))
        .unwrap_or(200);
    if !nix::unistd::geteuid().is_root() {
        eprintln!("spawn_latency needs root (cgroups, namespaces)");
        std::process::exit(1);
    }
    let dir = std::env::temp_dir().join(format!("ember-bench-{}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o711)
        .create(&dir)
        .expect("sandboxes dir");
    let mut config = EnvironmentConfig::new(&dir);
    config.cgroup_parent = "ember-bench".into();
    let env = Environment::detect_with(config);
    println!("{}\n", env.report());

    let mut floor_spawn = Vec::with_capacity(runs);
    let mut floor_total = Vec::with_capacity(runs);
    let mut floor_unshare = Vec::with_capacity(runs);
    let mut spawn = Vec::with_capacity(runs);
    let mut exit = Vec::with_capacity(runs);
    let mut destroy = Vec::with_capacity(runs);
    let warmup = 20;
    for i in 0..warmup + runs {
        let started = Instant::now();
        let mut child = Command::new("/bin/true").spawn().expect("spawn /bin/true");
        let spawned = started.elapsed();
        child.wait().expect("wait /bin/true");
        let total = started.elapsed();

        // The same shape without any of the sandbox's work: two execs and a clone into
        // fresh user, mount, pid, net, ipc and uts namespaces.
        let started = Instant::now();
        let unshared = Command::new("/usr/bin/unshare")
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "--pid",
                "--net",
                "--ipc",
                "--uts",
                "--fork",
                "/bin/true",
            ])
            .status()
            .expect("unshare");
        assert!(unshared.success());
        let unshare_total = started.elapsed();

        let id = format!("bench-{i}");
        let mut spec = SandboxSpec::new(&id, env.root_dir_for(&id), vec!["/bin/true".into()]);
        spec.ro_binds = system_ro_binds();
        spec.cwd = "/".into();
        let t0 = Instant::now();
        let mut sandbox = Sandbox::spawn(spec, &env).expect("spawn sandbox");
        let t1 = Instant::now();
        let status = sandbox.wait().expect("wait sandbox");
        assert!(status.success());
        let t2 = Instant::now();
        sandbox.destroy().expect("destroy");
        let t3 = Instant::now();
        if i >= warmup {
            floor_spawn.push(spawned);
            floor_total.push(total);
            floor_unshare.push(unshare_total);
            spawn.push(t1 - t0);
            exit.push(t2 - t1);
            destroy.push(t3 - t2);
        }
    }
    std::fs::remove_dir(&dir).ok();
    for controller in ["memory", "pids", "cpu", "freezer", ""] {
        let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{controller}/ember-bench"));
    }

    println!("{runs} sequential runs after {warmup} warm-up (unpinned unless run under taskset)");
    row(
        "floor: fork+exec /bin/true (Command::spawn)",
        &mut floor_spawn,
    );
    row("floor: fork+exec+wait /bin/true", &mut floor_total);
    row(
        "floor: unshare -U -m -p -n -i -u -f /bin/true",
        &mut floor_unshare,
    );
    row("sandbox: spawn until /bin/true exec'd", &mut spawn);
    row("sandbox: then until it exited (wait)", &mut exit);
    row("sandbox: destroy", &mut destroy);
    let p50 = |s: &mut Vec<Duration>| percentile(s, 0.5).as_secs_f64();
    let mut full = spawn
        .iter()
        .zip(&exit)
        .map(|(a, b)| *a + *b)
        .collect::<Vec<_>>();
    row("sandbox: spawn + wait (compare with unshare)", &mut full);
    println!(
        "p50 ratios: spawn-to-exec / fork+exec+wait = {:.1}x; spawn+wait / unshare floor = {:.1}x",
        p50(&mut spawn) / p50(&mut floor_total),
        p50(&mut full) / p50(&mut floor_unshare),
    );
}
