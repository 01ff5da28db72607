//! Every limit is enforced by the kernel and hitting it is visible: memory (OOM kill),
//! processes (fork fails with EAGAIN), open files (EMFILE), /tmp (ENOSPC).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use ember_sandbox::Sandbox;

#[test]
fn tmp_writes_beyond_the_cap_fail_with_enospc() {
    let mut spec = python(
        "tmp",
        "import errno\n\
         f = open('/tmp/big', 'wb')\n\
         written = 0\n\
         try:\n\
         \x20   while True:\n\
         \x20       f.write(b'x' * 65536)\n\
         \x20       f.flush()\n\
         \x20       written += 65536\n\
         except OSError as e:\n\
         \x20   print(errno.errorcode[e.errno], written // 65536)",
    );
    spec.tmp_bytes = 8 << 20;
    let (status, output) = run(spec);
    assert!(status.success(), "{output}");
    let (error, chunks) = output.trim().split_once(' ').unwrap();
    assert_eq!(error, "ENOSPC");
    let chunks: u64 = chunks.parse().unwrap();
    assert!(
        (120..=128).contains(&chunks),
        "wrote {chunks} x 64 KiB into an 8 MiB /tmp"
    );
}

#[test]
fn memory_over_the_limit_is_oom_killed_and_reported() {
    let mut spec = python(
        "oom",
        "import sys\nprint('allocating', flush=True)\nb = b'x' * (256 << 20)\nprint('SURVIVED')",
    );
    spec.memory_bytes = 64 << 20;
    let mut sandbox = Sandbox::spawn(spec, env()).unwrap();
    assert!(!sandbox.oom_killed());
    let (status, output) = finish(&mut sandbox);
    assert_eq!(output, "allocating\n");
    assert_eq!(status.code(), Some(128 + 9), "killed by SIGKILL: {status}");
    assert!(
        sandbox.oom_killed(),
        "the cgroup must say it was the OOM killer"
    );
    let peak = sandbox.memory_peak_bytes().expect("memory peak");
    assert!(
        peak > 48 << 20 && peak <= 64 << 20,
        "peak {peak} near the 64 MiB limit"
    );
    sandbox.destroy().unwrap();
}

#[test]
fn memory_statistics_come_from_the_cgroup() {
    let mut sandbox = Sandbox::spawn(
        python(
            "memstat",
            "b = b'x' * (32 << 20)\nimport time\nprint('ready', flush=True)\ntime.sleep(30)",
        ),
        env(),
    )
    .unwrap();
    let mut output = sandbox.take_output().unwrap();
    let mut line = [0u8; 6];
    std::io::Read::read_exact(&mut output, &mut line).unwrap();
    assert_eq!(&line, b"ready\n");
    let current = sandbox.memory_current_bytes().unwrap();
    assert!(current >= 32 << 20, "current {current}");
    assert!(sandbox.memory_peak_bytes().unwrap() >= current);
    assert!(!sandbox.oom_killed());
    sandbox.destroy().unwrap();
}

#[test]
fn process_limit_stops_forks_with_eagain() {
    let mut spec = python(
        "pids",
        "import os, time, errno\n\
         n = 0\n\
         try:\n\
         \x20   while True:\n\
         \x20       if os.fork() == 0:\n\
         \x20           time.sleep(60)\n\
         \x20           os._exit(0)\n\
         \x20       n += 1\n\
         except OSError as e:\n\
         \x20   print(n, errno.errorcode[e.errno])",
    );
    spec.pids_max = 20;
    let (status, output) = run(spec);
    assert!(status.success(), "{output}");
    assert_eq!(
        output, "19 EAGAIN\n",
        "20 processes: the payload and 19 children"
    );
}

/// Finds the sandbox's pids cgroup to watch it from outside.
fn pids_cgroup(id: &str) -> PathBuf {
    [
        "/sys/fs/cgroup/pids/ember-test",
        "/sys/fs/cgroup/ember-test",
    ]
    .iter()
    .map(|p| PathBuf::from(p).join(id))
    .find(|p| p.join("pids.current").exists())
    .expect("the sandbox's pids cgroup")
}

#[test]
fn a_fork_bomb_is_contained_and_destroyed() {
    let mut spec = spec("bomb", &["/bin/sh", "-c", "b() { b | b & }; b; sleep 5"]);
    spec.pids_max = 64;
    let id = spec.id.clone();
    let sandbox = Sandbox::spawn(spec, env()).unwrap();
    let cgroup = pids_cgroup(&id);
    let mut highest = 0;
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        let current: u64 = std::fs::read_to_string(cgroup.join("pids.current"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        highest = highest.max(current);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        highest <= 64 + 2,
        "{highest} processes despite the limit of 64 (+2 helpers)"
    );
    // The bomb grows and collapses faster than 20 ms samples can follow; that it ran into
    // the limit shows in `pids.events` (forks refused at `pids.max`).
    let refused: u64 = std::fs::read_to_string(cgroup.join("pids.events"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        highest >= 32 || refused > 0,
        "the bomb did not run ({highest} processes, {refused} forks refused)"
    );
    // The host still forks.
    let host = std::process::Command::new("/bin/true").status().unwrap();
    assert!(host.success());
    let started = Instant::now();
    sandbox.destroy().unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "destroy took {took:?}");
    assert!(!cgroup.exists());
}

#[test]
fn open_files_beyond_nofile_fail_with_emfile() {
    let output = run_python_ok(
        "nofile",
        "import os, errno, resource\n\
         print(resource.getrlimit(resource.RLIMIT_NOFILE), resource.getrlimit(resource.RLIMIT_CORE))\n\
         fds = []\n\
         try:\n\
         \x20   while True:\n\
         \x20       fds.append(os.open('/dev/null', os.O_RDONLY))\n\
         except OSError as e:\n\
         \x20   print(len(fds) + 3, errno.errorcode[e.errno])",
    );
    assert_eq!(output, "(1024, 1024) (0, 0)\n1024 EMFILE\n");
}

#[test]
fn the_sandboxes_own_processes_cost_little_memory() {
    let sandbox = Sandbox::spawn(spec("overhead", &["/bin/sleep", "100"]), env()).unwrap();
    let current = sandbox.memory_current_bytes().unwrap();
    // The helper and pid 1 are charged to the sandbox's cgroup; they must not eat into a
    // 128 MiB function's memory (measured: ~0.7 MiB with `sleep` as the payload).
    assert!(
        current < 4 << 20,
        "helper + pid 1 + sleep use {current} bytes"
    );
    sandbox.destroy().unwrap();
}
