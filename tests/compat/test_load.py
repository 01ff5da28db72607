"""Load: 200 concurrent invokes across 50 functions of 3 accounts for a minute; no error
other than deliberate throttles, and no leaked sandbox, cgroup or mount afterwards.

The test runs a server of its own (so it can stop it and look at what is left): the root
account and two more, 50 Python functions spread over them, one of them with
ReservedConcurrentExecutions=1 so that deliberate throttles happen. 200 threads invoke
(RequestResponse) round-robin for EMBER_LOAD_SECONDS seconds (default 60). Allowed
outcomes: the right payload, or a 429 TooManyRequestsException with Reason
ReservedFunctionConcurrentInvocationLimitExceeded (the reserved function only) or
ConcurrentInvocationLimitExceeded (the node's memory budget is full). Anything else
(5xx, other errors, function errors, a wrong payload, a hang) fails the test.

Then SIGTERM must stop the server with status 0, leaving no process in, and no
directory under, its cgroup parent `ember-<8 hex>`, no mount under `/run/ember/<16 hex>`
and no sandbox root directory there (names: FNV-1a-64 of the canonical data directory,
as `sandbox_environment` in crates/ember/src/serve.rs makes them).

Marked `load`: deselect it with `-m "not load"`.
"""

from __future__ import annotations

import collections
import json
import math
import os
import random
import re
import signal
import tempfile
import threading
import time

import pytest
from botocore.exceptions import ClientError

import embertest as et


def _register_marker(name: str, description: str) -> None:
    """Declare the marker (as `markers =` in an ini file would) before it is used below,
    so that `-m "not load"` works without an unknown-marker warning and the shared
    conftest.py need not know about this module. Uses the config pytest's mark plugin
    keeps; without it the marker still works, with a warning."""
    config = getattr(pytest.mark, "_config", None)
    if config is None:
        return
    if not any(line.split(":")[0].strip() == name for line in config.getini("markers")):
        config.addinivalue_line("markers", f"{name}: {description}")


_register_marker("load", "the long-running load test (deselect with -m 'not load')")

pytestmark = [
    pytest.mark.load,
    pytest.mark.skipif(et.PY_RUNTIME is None, reason="this host has no Python runtime"),
]

LOAD_SECONDS = float(os.environ.get("EMBER_LOAD_SECONDS", "60"))
# `[sandboxes] memory_budget_mib` of the server (default: the server's own, 3/4 of RAM).
MEMORY_BUDGET_MIB = os.environ.get("EMBER_LOAD_MEMORY_BUDGET_MIB", "")
# Pause of a thread after a throttle (0: retry at once, with the next function).
THROTTLE_BACKOFF_MS = float(os.environ.get("EMBER_LOAD_THROTTLE_BACKOFF_MS", "0"))
THREADS = 200
FUNCTIONS_PER_ACCOUNT = (17, 17, 16)  # root, then the two extra accounts
STOP_TIMEOUT = 60.0

RESERVED_REASON = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_REASON = "ConcurrentInvocationLimitExceeded"

# Sleeps 10-50 ms (as asked by the event) and says who it is and what it got.
HANDLER = (
    "import time\n\n"
    "NAME = {name!r}\n\n"
    "def handler(event, context):\n"
    "    time.sleep(event['sleep_ms'] / 1000.0)\n"
    "    return {{'code': NAME, 'context': context.function_name, 'event': event}}\n"
)


# --------------------------------------------------------------------------------------
# Where a server's sandboxes live on the host
# --------------------------------------------------------------------------------------


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


class ServerResources:
    """The per-server names of `sandbox_environment` (crates/ember/src/serve.rs)."""

    CGROUP_ROOT = "/sys/fs/cgroup"

    def __init__(self, data_dir: str):
        self.data_dir = os.path.realpath(data_dir)
        tag = fnv1a64(os.fsencode(self.data_dir))
        self.cgroup_parent = f"ember-{tag & 0xFFFFFFFF:08x}"
        base = "/run/ember" if os.path.isdir("/run") else os.path.join(tempfile.gettempdir(), "ember")
        self.sandboxes_dir = os.path.join(base, f"{tag:016x}")

    def cgroup_parent_dirs(self) -> list[str]:
        """`<parent>` in every hierarchy where it exists: the v2 root, and every v1
        controller (memory, pids, cpu, ...) and the unified v2 mount of a hybrid host."""
        candidates = [os.path.join(self.CGROUP_ROOT, self.cgroup_parent)]
        try:
            for h in sorted(os.listdir(self.CGROUP_ROOT)):
                candidates.append(os.path.join(self.CGROUP_ROOT, h, self.cgroup_parent))
        except OSError:
            pass
        return [d for d in candidates if os.path.isdir(d)]

    def child_cgroups(self) -> list[str]:
        out = []
        for parent in self.cgroup_parent_dirs():
            for dirpath, dirnames, _ in os.walk(parent):
                out += [os.path.join(dirpath, d) for d in dirnames]
        return sorted(out)

    def processes_in_cgroups(self) -> list[str]:
        """Processes whose cgroup (any hierarchy) is `<parent>` or below it, and the pids
        in the parent directories' own cgroup.procs."""
        found = []
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                with open(f"/proc/{pid}/cgroup") as f:
                    lines = f.read().splitlines()
            except OSError:
                continue
            hits = [l for l in lines
                    if f"/{self.cgroup_parent}/" in l + "/"]
            if hits:
                found.append(f"pid {pid} ({_comm(pid)}): {hits}")
        for parent in self.cgroup_parent_dirs():
            try:
                with open(os.path.join(parent, "cgroup.procs")) as f:
                    pids = f.read().split()
            except OSError:
                continue
            if pids:
                found.append(f"{parent}/cgroup.procs: {pids}")
        return found

    def mounts(self) -> list[str]:
        """Mount points at or under the sandboxes directory (/proc/self/mountinfo)."""
        out = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = _unescape_mountinfo(line.split(" ")[4])
                if point == self.sandboxes_dir or point.startswith(self.sandboxes_dir + "/"):
                    out.append(point)
        return out

    def entries(self) -> list[str]:
        """Everything in the sandboxes directory, one level down into .slots/.published."""
        try:
            names = sorted(os.listdir(self.sandboxes_dir))
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            out.append(n)
            p = os.path.join(self.sandboxes_dir, n)
            if n.startswith(".") and os.path.isdir(p):
                try:
                    out += [f"{n}/{c}" for c in sorted(os.listdir(p))]
                except OSError:
                    pass
        return out

    def sandbox_root_dirs(self) -> list[str]:
        """Sandbox root directories: directories of the sandboxes directory whose name is a
        sandbox id (not hidden)."""
        return [n for n in self.entries()
                if "/" not in n and not n.startswith(".")
                and os.path.isdir(os.path.join(self.sandboxes_dir, n))]


def _unescape_mountinfo(field: str) -> str:
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        if cmd:
            return cmd[:200]
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


# --------------------------------------------------------------------------------------
# The load
# --------------------------------------------------------------------------------------


class Stats:
    """What one worker thread saw (merged at the end, so no locking while running)."""

    def __init__(self):
        self.outcomes = collections.Counter()  # success / function_error / throttle / ...
        self.reasons = collections.Counter()  # (function kind, Reason) of the 429s
        self.placements = collections.Counter()
        self.latency_ok: list[float] = []
        self.latency_all: list[float] = []
        self.samples = collections.defaultdict(list)  # outcome -> first few details
        self.ok_per_function = collections.Counter()

    def note(self, outcome: str, detail: str | None = None):
        self.outcomes[outcome] += 1
        if detail is not None and len(self.samples[outcome]) < 5:
            self.samples[outcome].append(detail)

    def merge(self, other: "Stats"):
        self.outcomes.update(other.outcomes)
        self.reasons.update(other.reasons)
        self.placements.update(other.placements)
        self.latency_ok += other.latency_ok
        self.latency_all += other.latency_all
        self.ok_per_function.update(other.ok_per_function)
        for k, v in other.samples.items():
            self.samples[k] += v[: max(0, 10 - len(self.samples[k]))]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)  # nearest rank
    return s[min(len(s) - 1, max(0, math.ceil(p / 100.0 * len(s)) - 1))]


def worker(index: int, targets: list, reserved_name: str, deadline: float, stats: Stats):
    rng = random.Random(index)
    i = index  # round-robin, each thread from its own offset
    seq = 0
    while time.monotonic() < deadline:
        client, name = targets[i % len(targets)]
        i += 1
        seq += 1
        event = {"w": index, "n": seq, "sleep_ms": rng.randint(10, 50)}
        started = time.monotonic()
        try:
            inv = et.invoke(client, name, event, tail=False)
        except ClientError as e:
            elapsed = time.monotonic() - started
            stats.latency_all.append(elapsed)
            r = e.response
            status = r.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = r.get("Error", {}).get("Code")
            reason = r.get("Reason")
            detail = (f"{name}: HTTP {status} {code} Reason={reason!r} "
                      f"message={r.get('Error', {}).get('Message')!r}")
            if status == 429 and code == "TooManyRequestsException":
                deliberate = (reason == ACCOUNT_REASON
                              or (reason == RESERVED_REASON and name == reserved_name))
                kind = "reserved fn" if name == reserved_name else "other fn"
                stats.reasons[(kind, reason)] += 1
                if deliberate:
                    stats.note("throttle")
                else:
                    stats.note("undeliberate 429", detail)
                if THROTTLE_BACKOFF_MS > 0:
                    time.sleep(THROTTLE_BACKOFF_MS / 1000.0)
            else:
                stats.note(f"error {status} {code}", detail)
            continue
        except Exception as e:  # connection reset, read timeout, ...
            stats.latency_all.append(time.monotonic() - started)
            stats.note(f"exception {type(e).__name__}", f"{name}: {e!r}")
            continue
        stats.latency_all.append(inv.elapsed)
        stats.placements[inv.headers.get("x-ember-placement", "?")] += 1
        if inv.status != 200:
            stats.note(f"status {inv.status}", f"{name}: {inv.describe()}")
        elif inv.function_error is not None:
            stats.note("function error", f"{name}: {inv.describe()}")
        else:
            try:
                got = inv.json()
            except ValueError:
                got = None
            want = {"code": name, "context": name, "event": event}
            if got != want:
                stats.note("wrong payload", f"{name}: want {want}, got {inv.payload[:500]!r}")
            else:
                stats.note("success")
                stats.latency_ok.append(inv.elapsed)
                stats.ok_per_function[name] += 1


def pool_snapshot(server: et.EmberServer) -> tuple[str, dict]:
    t0 = time.monotonic()
    status, _, body = et.signed_request(server, "GET", "/ember/v1/pool", service="ember")
    took = time.monotonic() - t0
    if status != 200:
        return f"GET /ember/v1/pool -> {status}: {body[:300]!r}", {}
    doc = json.loads(body)
    fns = doc.get("Functions", [])
    idle = sum(f.get("Idle", 0) for f in fns)
    busy = sum(f.get("Busy", 0) for f in fns)
    runtimes = ", ".join(f"{r['Runtime']} {r['Pooled']}/{r['Target']}" for r in doc.get("Runtimes", []))
    budget = doc.get("MemoryBudget", {})
    line = (f"pool during load (answered in {took * 1000:.0f} ms): {len(fns)} functions with sandboxes, {idle} idle + {busy} busy "
            f"sandboxes; pooled/target: {runtimes}; memory in use "
            f"{doc.get('MemoryBytes', 0) / 2**20:.0f} MiB; budget reserved "
            f"{budget.get('Reserved', 0) / 2**20:.0f} of {budget.get('Limit', 0) / 2**20:.0f} MiB")
    return line, doc


def server_log_errors(path: str, limit: int = 15) -> str:
    """The server's ERROR and WARN lines, grouped by their text without timestamps, ids,
    request ids and function names: `count x line`, most frequent first."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return "<no stderr>"
    groups = collections.Counter()
    first = {}
    for line in text.splitlines():
        m = re.match(r"^\S+\s+(ERROR|WARN)\s+(.*)$", line)
        if not m:
            continue
        key = re.sub(r"request_id=\S+|function=\S+|path=\S+|sb-[0-9a-z-]+",
                     "*", f"{m.group(1)} {m.group(2)}")
        groups[key] += 1
        first.setdefault(key, line)
    return "\n".join(f"  {n} x {first[k][:400]}" for k, n in groups.most_common(limit))


# --------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------


@pytest.fixture
def load_server(tmp_root):
    base = os.path.join(tmp_root, "load-" + os.urandom(4).hex())
    extra = []
    if MEMORY_BUDGET_MIB:
        with open(base + ".toml", "w") as f:
            f.write(f"[sandboxes]\nmemory_budget_mib = {int(MEMORY_BUDGET_MIB)}\n")
        extra = ["--config", base + ".toml"]
    s = et.EmberServer(data_dir=base + "-data", extra_args=extra).start()
    yield s
    if s.alive():  # the test failed before its own stop
        s.kill()


def test_load_200_concurrent_invokes_50_functions_3_accounts(load_server):
    s = load_server
    res = ServerResources(s.data_dir)
    role = et.role_arn(et.root_account_id(s))

    # Three accounts, one client each, with a connection pool for every thread.
    accounts = [("root", s.lambda_client(max_pool_connections=THREADS + 16), role)]
    for label in ("load-a", "load-b"):
        a = et.create_account(s, f"{label}-{os.urandom(3).hex()}")
        accounts.append((label, a.client(s, max_pool_connections=THREADS + 16),
                         et.role_arn(a.account_id)))

    targets = []  # (client, name)
    for (label, client, role_arn), count in zip(accounts, FUNCTIONS_PER_ACCOUNT):
        for k in range(count):
            name = et.function_name(f"load-{label}-{k}")
            et.create_function(client, name, et.py_zip(HANDLER.format(name=name)),
                               Role=role_arn, Timeout=30, MemorySize=128)
            targets.append((client, name))
    assert len(targets) == 50
    reserved_client, reserved_name = targets[0]
    reserved_client.put_function_concurrency(FunctionName=reserved_name,
                                             ReservedConcurrentExecutions=1)

    # Every function works before the load starts (a broken set-up fails here, clearly).
    for client, name in targets:
        event = {"w": -1, "n": 0, "sleep_ms": 10}
        inv = et.invoke(client, name, event, tail=False)
        assert inv.status == 200 and inv.function_error is None, inv.describe()
        assert inv.json() == {"code": name, "context": name, "event": event}, inv.describe()

    per_thread = [Stats() for _ in range(THREADS)]
    started = time.monotonic()
    deadline = started + LOAD_SECONDS
    threads = [threading.Thread(target=worker, name=f"load-{i}", daemon=True,
                                args=(i, targets, reserved_name, deadline, per_thread[i]))
               for i in range(THREADS)]
    for t in threads:
        t.start()

    # Once, half-way: what the pool holds, and proof that the leak checks below look at
    # the right places (this server's cgroups and sandboxes directory are in use).
    time.sleep(LOAD_SECONDS / 2)
    pool_line, _ = pool_snapshot(s)
    during = {
        "cgroups": len(res.child_cgroups()),
        "mounts": len(res.mounts()),
        "root dirs": len(res.sandbox_root_dirs()),
    }
    print(f"\n{pool_line}")
    print(f"host during load: {during['cgroups']} sandbox cgroup dirs under "
          f"{res.cgroup_parent} ({', '.join(res.cgroup_parent_dirs())}), "
          f"{during['mounts']} mounts and {during['root dirs']} sandbox root dirs "
          f"in {res.sandboxes_dir}")

    join_deadline = deadline + 150  # an invoke may legitimately take up to read_timeout
    for t in threads:
        t.join(max(0.0, join_deadline - time.monotonic()))
    hung = [t.name for t in threads if t.is_alive()]
    wall = time.monotonic() - started

    stats = Stats()
    for st in per_thread:
        stats.merge(st)
    total = sum(stats.outcomes.values())
    errors = {k: v for k, v in stats.outcomes.items() if k not in ("success", "throttle")}
    other_errors = {k: v for k, v in errors.items() if k != "function error"}
    reasons = {f"{kind}: {reason}": n for (kind, reason), n in sorted(stats.reasons.items())}
    summary = (
        f"load: {THREADS} threads x {LOAD_SECONDS:.0f}s over {len(targets)} functions of "
        f"{len(accounts)} accounts: {total} invocations in {wall:.1f}s "
        f"({total / wall:.0f}/s); success {stats.outcomes['success']}, "
        f"deliberate throttles {stats.outcomes['throttle']} {reasons}, "
        f"function errors {stats.outcomes['function error']}, other errors "
        f"{sum(other_errors.values())} {other_errors}; "
        f"latency of successes p50 {percentile(stats.latency_ok, 50) * 1000:.0f} ms "
        f"p99 {percentile(stats.latency_ok, 99) * 1000:.0f} ms max "
        f"{max(stats.latency_ok, default=float('nan')) * 1000:.0f} ms "
        f"(all outcomes p50 {percentile(stats.latency_all, 50) * 1000:.0f} ms "
        f"p99 {percentile(stats.latency_all, 99) * 1000:.0f} ms); "
        f"placement {dict(stats.placements)}; hung threads {len(hung)}"
    )
    print(summary)
    samples = "\n".join(f"  {k}: {d}" for k, ds in stats.samples.items() for d in ds)
    context = f"{summary}\n{pool_line}\nsamples:\n{samples}"

    problems = []
    if hung:
        problems.append(f"{len(hung)} threads still inside an invoke {join_deadline - deadline:.0f}s "
                        f"after the end of the load: {hung[:10]}")
    if errors:
        problems.append(f"errors other than deliberate throttles: {errors}")
    missing = [n for _, n in targets if stats.ok_per_function[n] == 0]
    if missing:
        problems.append(f"{len(missing)} functions never returned a right payload: {missing}")
    if stats.outcomes["success"] == 0:
        problems.append("no invocation succeeded")
    if during["cgroups"] == 0 or during["root dirs"] == 0:
        problems.append(
            f"while the load ran, no sandbox cgroup under {res.cgroup_parent} or no sandbox "
            f"root dir in {res.sandboxes_dir} was found ({during}): the leak checks below "
            "would look in the wrong place")

    # Stop: SIGTERM, status 0, within STOP_TIMEOUT.
    alive = s.alive()
    if not alive:
        problems.append(f"the server died during the load (status {s.proc.returncode})")
    t0 = time.monotonic()
    code = s.stop(signal.SIGTERM, timeout=STOP_TIMEOUT)
    stop_seconds = time.monotonic() - t0
    print(f"SIGTERM: exit status {code} after {stop_seconds:.1f}s")
    if alive and code != 0:
        problems.append(f"ember serve exited with {code} after SIGTERM")

    # Nothing left behind (give killed processes a moment to be reaped by the kernel).
    leaks = {}
    for _ in range(20):
        leaks = {
            "processes in the server's cgroups": res.processes_in_cgroups(),
            "child cgroups": res.child_cgroups(),
            "mounts": res.mounts(),
            "sandbox root dirs": res.sandbox_root_dirs(),
            "slot/publication dirs": [e for e in res.entries() if "/" in e],
        }
        if not any(leaks.values()):
            break
        time.sleep(0.5)
    leaked = {k: v for k, v in leaks.items() if v}
    print(f"after stop: {res.sandboxes_dir} holds {res.entries()}; "
          f"cgroup parent dirs {res.cgroup_parent_dirs()}; leaks {leaked or 'none'}")
    if leaked:
        problems.append(f"left behind after SIGTERM: {leaked}")

    server_errors = server_log_errors(s.stderr_path)
    if server_errors:
        print("server ERROR/WARN lines (grouped):\n" + server_errors)
    assert not problems, (
        "\n".join(problems) + f"\n{context}\nserver ERROR/WARN lines (grouped):\n"
        f"{server_errors}\nserver stderr (tail):\n{s.stderr()[-6000:]}")
