//! The warming pool and the worker manager with real sandboxes: placement order, idle
//! teardown, the memory budget, health checks (a dead runtime, a stopped one), and
//! clean-up after `kill -9`.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A server with the given config file text.
fn server_with(config: &str) -> (tempfile::TempDir, Server) {
    let data = tempfile::tempdir().unwrap();
    let path = data.path().join("ember.toml");
    std::fs::write(&path, config).unwrap();
    let server = Server::start(
        &data.path().join("d"),
        &[("EMBER_CONFIG", path.to_str().unwrap())],
    );
    (data, server)
}

fn deploy(server: &Server, code: &tempfile::TempDir, name: &str, memory: &str) {
    server.ok(
        &[
            "deploy",
            code.path().to_str().unwrap(),
            "--name",
            name,
            "--runtime",
            "python3.11",
            "--handler",
            "app.handler",
            "--memory",
            memory,
        ],
        &[],
    );
}

/// Invoke and return where it ran (warm, pooled, cold).
fn placement(server: &Server, name: &str) -> String {
    let out = server.ember(&["invoke", name, "--log"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("placement: "))
        .unwrap_or_else(|| panic!("no placement in {stderr}"))
        .to_owned()
}

fn pool_status(server: &Server) -> String {
    server.ok(&["pool"], &[])
}

/// Wait until `ember pool` output satisfies `pred`.
fn wait_for(server: &Server, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = pool_status(server);
        if pred(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pooled(status: &str, runtime: &str) -> usize {
    status
        .lines()
        .find(|l| l.starts_with(runtime))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn idle(status: &str, function: &str) -> usize {
    status
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(function))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn placement_is_warm_then_pooled_then_cold() {
    let (_data, server) = server_with("[pool]\n\"python3.11\" = 1\n");
    let code = function_dir();
    wait_for(&server, "the pool to fill", |s| {
        pooled(s, "python3.11") == 1
    });
    deploy(&server, &code, "a", "128");
    deploy(&server, &code, "b", "256");
    assert_eq!(placement(&server, "a"), "pooled");
    assert_eq!(placement(&server, "a"), "warm");
    // The pool refills in the background.
    wait_for(&server, "the refill", |s| pooled(s, "python3.11") == 1);
    assert_eq!(
        placement(&server, "b"),
        "pooled",
        "a pooled sandbox takes any memory size"
    );
    server.ok(&["pool", "set", "python3.11", "0"], &[]);
    deploy(&server, &code, "c", "128");
    assert_eq!(placement(&server, "c"), "cold");
    assert_eq!(placement(&server, "c"), "warm");
    // An updated function never runs in its old sandbox.
    deploy(&server, &code, "c", "192");
    assert_eq!(placement(&server, "c"), "cold");
    server.fails_with(
        &["pool", "set", "provided.al2023", "2"],
        &[],
        "cannot be pooled",
    );
}

#[test]
fn idle_sandboxes_are_torn_down_after_the_keep_alive() {
    let (_data, server) =
        server_with("[pool]\n\"python3.11\" = 0\n[sandboxes]\nidle_timeout_secs = 1\n");
    let code = function_dir();
    deploy(&server, &code, "f", "128");
    assert_eq!(placement(&server, "f"), "cold");
    assert_eq!(idle(&pool_status(&server), "f"), 1);
    wait_for(&server, "the idle sandbox to go", |s| idle(s, "f") == 0);
    assert_eq!(placement(&server, "f"), "cold");
}

#[test]
fn the_memory_budget_evicts_the_least_recently_used_idle_sandbox() {
    // Room for two 256 MiB sandboxes, not three.
    let (_data, server) =
        server_with("[pool]\n\"python3.11\" = 0\n[sandboxes]\nmemory_budget_mib = 600\n");
    let code = function_dir();
    for name in ["x", "y", "z"] {
        deploy(&server, &code, name, "256");
    }
    assert_eq!(placement(&server, "x"), "cold");
    assert_eq!(placement(&server, "y"), "cold");
    assert_eq!(placement(&server, "x"), "warm");
    // Sandboxes used within the last second are never evicted (that would only trade one
    // cold start for another under load).
    std::thread::sleep(Duration::from_millis(1100));
    // z needs room: y is the least recently used idle sandbox.
    assert_eq!(placement(&server, "z"), "cold");
    let status = pool_status(&server);
    assert_eq!(
        (idle(&status, "x"), idle(&status, "y"), idle(&status, "z")),
        (1, 0, 1),
        "{status}"
    );
    assert!(status.contains("reserved"), "{status}");
    // A function larger than the whole budget is throttled, and nothing else breaks.
    deploy(&server, &code, "huge", "1024");
    server.fails_with(&["invoke", "huge"], &[], "TooManyRequestsException");
    assert_eq!(placement(&server, "x"), "warm");
}

/// Host pids of the processes in the sandboxes' cgroups of this server.
fn sandbox_pids(server: &Server) -> Vec<u32> {
    let mut pids = Vec::new();
    let data_dir = std::fs::canonicalize(&server.data_dir).unwrap();
    let tag = fnv1a(data_dir.as_os_str().as_encoded_bytes());
    let parent = format!("ember-{:08x}", tag as u32);
    for root in ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"] {
        let Ok(dirs) = std::fs::read_dir(std::path::Path::new(root).join(&parent)) else {
            continue;
        };
        for dir in dirs.flatten().filter(|d| d.path().is_dir()) {
            if let Ok(procs) = std::fs::read_to_string(dir.path().join("cgroup.procs")) {
                pids.extend(
                    procs
                        .split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
        if !pids.is_empty() {
            break;
        }
    }
    pids
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn a_sandbox_whose_runtime_was_killed_is_replaced() {
    let (_data, server) = server_with("[pool]\n\"python3.11\" = 0\n");
    let code = function_dir();
    deploy(&server, &code, "victim", "128");
    assert_eq!(placement(&server, "victim"), "cold");
    let pids = sandbox_pids(&server);
    assert!(!pids.is_empty(), "no sandbox process found");
    for pid in &pids {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    // The health check notices, or the next invocation does: it runs in a new sandbox.
    assert_eq!(placement(&server, "victim"), "cold");
    assert_eq!(placement(&server, "victim"), "warm");
}

/// Host pids of the runtime (Python) processes in this server's sandboxes.
fn runtime_pids(server: &Server) -> Vec<u32> {
    sandbox_pids(server)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.starts_with("python"))
        })
        .collect()
}

fn kill(signal: &str, pid: u32) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// Wait until process `pid` no longer exists.
fn wait_gone(pid: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "{what} (pid {pid}) still exists");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_stopped_runtime_is_destroyed_and_replaced() {
    let (_data, server) =
        server_with("[pool]\n\"python3.11\" = 1\n[sandboxes]\nhealth_check_interval_ms = 200\n");
    let code = function_dir();
    deploy(&server, &code, "f", "128");
    wait_for(&server, "the pool to fill", |s| {
        pooled(s, "python3.11") == 1
    });
    // A pooled runtime, stopped from outside: its long poll stays open, but it no longer
    // answers the health probe.
    let stopped = runtime_pids(&server);
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    kill("-STOP", stopped[0]);
    wait_gone(stopped[0], "the stopped pooled runtime");
    wait_for(&server, "a replacement in the pool", |s| {
        pooled(s, "python3.11") == 1
    });
    let replacement = runtime_pids(&server);
    assert_eq!(replacement.len(), 1, "{replacement:?}");
    assert_ne!(replacement, stopped);
    // The replacement serves, and is idle afterwards (warm): stop that one too.
    assert_eq!(placement(&server, "f"), "pooled");
    let warm = replacement[0];
    kill("-STOP", warm);
    wait_gone(warm, "the stopped warm runtime");
    assert_eq!(idle(&pool_status(&server), "f"), 0);
    // Invocations still succeed, in the pool's new sandbox.
    wait_for(&server, "the refill", |s| pooled(s, "python3.11") == 1);
    assert_eq!(placement(&server, "f"), "pooled");
    assert_eq!(placement(&server, "f"), "warm");
}

#[test]
fn a_restart_after_kill_9_removes_the_old_sandboxes() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("d");
    let mut server = Server::start(&dir, &[]);
    let code = function_dir();
    deploy(&server, &code, "f", "128");
    placement(&server, "f");
    let before = sandbox_pids(&server);
    assert!(!before.is_empty());
    server.signal("-KILL");
    server.wait();
    // The sandboxes outlive a killed server...
    assert!(
        before
            .iter()
            .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
    );
    let server = Server::start(&dir, &[]);
    // ...until the next start on the same data directory removes them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while before
        .iter()
        .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "old sandbox processes survived the restart"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(placement(&server, "f"), "pooled");
}
