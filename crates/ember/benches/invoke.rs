//! Invocation latency of a real `ember serve`, each figure beside a floor measured in the
//! same run. `cargo bench -p ember --bench invoke` (builds the release binary).
//!
//! - pool: how fast the warming pool refills from empty to 40 Python sandboxes (wall
//!   clock: it depends on what else the machine runs), and what each pooled sandbox cost
//!   in CPU (per process, from `/proc/<pid>/schedstat`: little affected by other load)
//!   and costs in memory (PSS);
//! - floor: an HTTP/1.1 keep-alive round trip to `GET /ember/health` (no auth, no work);
//! - warm: `Invoke` of a no-op Python function whose sandbox is already running, over the
//!   same kind of connection (a signed request, signed once: SigV4 allows replay within
//!   its 15-minute window, so the client's signing cost is not measured);
//! - cold: the first `Invoke` of a never-run function (Python, Node), beside the bare
//!   interpreter start-up (`python3.11 -I -S -c pass`, `node -e 0`) measured here too.
//!
//! Latencies are wall-clock on this machine, client and server unpinned (see FLOORS.md:
//! a cross-core round trip costs ~60 µs here).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Conn, create, ms, row, set_pool, signed, signed_for, start_server, stats, time_n, us,
};

fn invoke_request(addr: &str, name: &str) -> Vec<u8> {
    signed(
        addr,
        "POST",
        &format!("/2015-03-31/functions/{name}/invocations"),
        b"{}",
        &[],
    )
}

fn main() {
    // `cargo bench` passes --bench; anything else (e.g. a filter) is ignored.
    let server = start_server();
    let addr = server.addr.clone();
    let mut conn = Conn::open(&addr);
    let health = format!("GET /ember/health HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();

    // Refill: from empty to 40 booted Python sandboxes.
    let refill_n = 40;
    set_pool(&mut conn, &addr, "python3.11", 0);
    let server_pid = server.pid();
    let server_cpu = process_cpu_ms(server_pid);
    let t = Instant::now();
    set_pool(&mut conn, &addr, "python3.11", refill_n);
    wait_pool_full(&mut conn, &addr, "python3.11");
    let took = t.elapsed();
    let server_cpu = process_cpu_ms(server_pid) - server_cpu;
    println!(
        "\npool refill, Python: {refill_n} sandboxes in {}  = {:.0} sandboxes/s (booting two per core)",
        ms(took),
        refill_n as f64 / took.as_secs_f64()
    );
    let sandboxes = pooled_python_sandboxes(server_pid);
    let (runtime_cpu, rest_cpu) = runtime_and_rest(&sandboxes, cpu_ms);
    let server_share = server_cpu / refill_n as f64;
    println!(
        "CPU per pooled Python sandbox (n={}): runtime process {runtime_cpu:.1} ms, helper + pid 1 \
         {rest_cpu:.1} ms, server ~{server_share:.1} ms (10 ms ticks; includes answering this \
         bench's pool polls) -> {:.1} ms = {:.0} sandboxes/s of CPU on {} cores",
        sandboxes.len(),
        runtime_cpu + rest_cpu + server_share,
        1000.0 * cores() as f64 / (runtime_cpu + rest_cpu + server_share),
        cores()
    );
    let (payload_pss, helpers_pss) = runtime_and_rest(&sandboxes, pss_mib);
    let total_pss = payload_pss + helpers_pss;
    println!(
        "memory per idle pooled Python sandbox (PSS, n={}): runtime process {:.2} MiB, \
         with the sandbox's two helper processes {:.2} MiB -> {:.0} idle sandboxes fit in 8 GiB",
        sandboxes.len(),
        payload_pss,
        total_pss,
        8192.0 / total_pss
    );
    set_pool(&mut conn, &addr, "python3.11", 2);

    create(
        &mut conn,
        &addr,
        "noop",
        "python3.11",
        "app.handler",
        &[("app.py", "def handler(event, context):\n    return None\n")],
    );
    let warm = invoke_request(&addr, "noop");
    let (status, body) = conn.round_trip(&warm);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    for _ in 0..300 {
        conn.round_trip(&health);
        conn.round_trip(&warm);
    }

    println!("\nEmber invoke latency (this machine: {} cores)\n", cores());
    let floor = time_n(3000, || assert_eq!(conn.round_trip(&health).0, 200));
    let warm_stats = time_n(3000, || assert_eq!(conn.round_trip(&warm).0, 200));
    row(
        "HTTP keep-alive GET /ember/health (floor)",
        &floor,
        &floor,
        us,
    );
    row("warm Invoke, no-op Python", &warm_stats, &floor, us);

    let python_floor = time_n(20, || {
        assert!(
            Command::new("/usr/bin/python3.11")
                .args(["-I", "-S", "-c", "pass"])
                .status()
                .unwrap()
                .success()
        )
    });
    let node = which_node();
    let node_floor = time_n(10, || {
        assert!(
            Command::new(&node)
                .args(["-e", "0"])
                .status()
                .unwrap()
                .success()
        )
    });
    let python_fn: &[(&str, &str)] =
        &[("app.py", "def handler(event, context):\n    return None\n")];
    let node_fn: &[(&str, &str)] = &[("index.js", "exports.handler = async () => null;\n")];

    // First invokes with a pooled sandbox ready: wait for the pool to be full each time.
    let mut n = 0;
    let mut first_invokes = |conn: &mut Conn,
                             runtime: &str,
                             handler: &str,
                             files: &[(&str, &str)],
                             pooled: bool,
                             count: usize| {
        let mut samples = Vec::new();
        for _ in 0..count {
            if pooled {
                wait_pool_full(conn, &addr, runtime);
            }
            n += 1;
            let name = format!("first-{n}");
            create(conn, &addr, &name, runtime, handler, files);
            let request = invoke_request(&addr, &name);
            let t = Instant::now();
            let (status, body) = conn.round_trip(&request);
            samples.push(t.elapsed());
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        }
        stats(samples)
    };
    let py_pooled = first_invokes(&mut conn, "python3.11", "app.handler", python_fn, true, 20);
    let node_pooled = first_invokes(&mut conn, "nodejs20.x", "index.handler", node_fn, true, 10);
    set_pool(&mut conn, &addr, "python3.11", 0);
    set_pool(&mut conn, &addr, "nodejs20.x", 0);
    let py_cold = first_invokes(&mut conn, "python3.11", "app.handler", python_fn, false, 20);
    let node_cold = first_invokes(&mut conn, "nodejs20.x", "index.handler", node_fn, false, 10);
    row(
        "first Invoke, Python, pooled sandbox ready",
        &py_pooled,
        &python_floor,
        ms,
    );
    row(
        "first Invoke, Python, pool empty (cold)",
        &py_cold,
        &python_floor,
        ms,
    );
    println!(
        "{:<44} p50 {:>9}  p99 {:>9}",
        "  floor: python3.11 -I -S -c pass",
        ms(python_floor.p50),
        ms(python_floor.p99)
    );
    row(
        "first Invoke, Node, pooled sandbox ready",
        &node_pooled,
        &node_floor,
        ms,
    );
    row(
        "first Invoke, Node, pool empty (cold)",
        &node_cold,
        &node_floor,
        ms,
    );
    println!(
        "{:<44} p50 {:>9}  p99 {:>9}",
        "  floor: node -e 0",
        ms(node_floor.p50),
        ms(node_floor.p99)
    );

    // Warm latency does not depend on how many functions exist.
    let many = 5000;
    for i in 0..many {
        create(
            &mut conn,
            &addr,
            &format!("many-{i}"),
            "python3.11",
            "app.handler",
            python_fn,
        );
    }
    for _ in 0..300 {
        conn.round_trip(&warm);
    }
    let floor_many = time_n(3000, || assert_eq!(conn.round_trip(&health).0, 200));
    let warm_many = time_n(3000, || assert_eq!(conn.round_trip(&warm).0, 200));
    println!();
    row(
        "warm Invoke, 10 functions deployed",
        &warm_stats,
        &floor,
        us,
    );
    row(
        &format!("warm Invoke, {} functions deployed", many + 81),
        &warm_many,
        &floor_many,
        us,
    );
}

/// Wait until the pool of `runtime` holds its target.
fn wait_pool_full(conn: &mut Conn, addr: &str, runtime: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let request = signed_for("ember", addr, "GET", "/ember/v1/pool", b"", &[]);
        let (_, body) = conn.round_trip(&request);
        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let full = status["Runtimes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["Runtime"] == runtime && r["Pooled"].as_u64() >= r["Target"].as_u64());
        if full {
            return;
        }
        assert!(Instant::now() < deadline, "the pool did not fill: {status}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The processes of each unassigned pooled Python sandbox of server `server_pid`: (comm,
/// pid), read from the sandboxes' cgroups (named `pool-<server pid>-<n>`).
fn pooled_python_sandboxes(server_pid: u32) -> Vec<Vec<(String, String)>> {
    let prefix = format!("pool-{server_pid}-");
    // Each server has its own cgroup parent (`ember-<tag>`) under the pids controller
    // (v1) or the unified hierarchy (v2).
    let parents = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
        .iter()
        .filter_map(|root| std::fs::read_dir(root).ok())
        .flat_map(|dirs| dirs.flatten())
        .filter(|d| d.file_name().to_string_lossy().starts_with("ember-"))
        .map(|d| d.path());
    let mut sandboxes = Vec::new();
    for base in parents {
        let Ok(dirs) = std::fs::read_dir(base) else {
            continue;
        };
        for dir in dirs.flatten() {
            if !dir.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let Ok(procs) = std::fs::read_to_string(dir.path().join("cgroup.procs")) else {
                continue;
            };
            let processes: Vec<(String, String)> = procs
                .split_whitespace()
                .map(|pid| {
                    let comm =
                        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                    (comm.trim().to_owned(), pid.to_owned())
                })
                .collect();
            // The bench assigns none before measuring; the Node pool is skipped.
            if processes.iter().any(|(c, _)| c.starts_with("python")) {
                sandboxes.push(processes);
            }
        }
        if !sandboxes.is_empty() {
            break;
        }
    }
    sandboxes
}

/// Mean over `sandboxes` of `value` summed over the runtime process, and over the others
/// (the helper and pid 1).
fn runtime_and_rest(
    sandboxes: &[Vec<(String, String)>],
    value: impl Fn(&str) -> f64,
) -> (f64, f64) {
    let n = sandboxes.len().max(1) as f64;
    let (mut runtime, mut rest) = (0.0, 0.0);
    for (comm, pid) in sandboxes.iter().flatten() {
        match comm.starts_with("python") {
            true => runtime += value(pid),
            false => rest += value(pid),
        }
    }
    (runtime / n, rest / n)
}

/// PSS of a process, MiB.
fn pss_mib(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| {
            t.lines().find(|l| l.starts_with("Pss:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .map(|k| k.parse::<f64>().unwrap_or(0.0))
            })
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// CPU time a process has used so far, ms (`/proc/<pid>/schedstat`: ns on a CPU).
fn cpu_ms(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1e6
}

/// CPU time of a whole process (all its threads, living or not), ms; clock-tick
/// resolution (`/proc/<pid>/stat` utime + stime).
fn process_cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    // USER_HZ is 100 on Linux.
    ticks * 10.0
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn which_node() -> String {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("node"))
                .find(|p| p.is_file())
        })
        .map(|p| p.to_string_lossy().into_owned())
        .expect("node on PATH")
}
