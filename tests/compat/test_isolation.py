"""Sandbox isolation, tested from inside real functions.

Each test deploys a function that tries to break out of its sandbox (read host files,
see host processes, reach host services, write its code, exhaust memory, pids, /tmp or
file descriptors, call privileged syscalls, outlive its timeout, peek at another
account's sandbox) and asserts that the attempt FAILED, and that the server and other
functions are unaffected afterwards.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

import pytest

import embertest as et

pytestmark = pytest.mark.skipif(et.PY_RUNTIME is None, reason="this host has no Python runtime")

SANDBOX_UID = 993


@pytest.fixture
def mk(lam, role, fn_name):
    made = []

    def make(source: str | None, *, client=None, role_arn=None, name=None, zip_bytes=None, **kw):
        name = name or (fn_name if not made else et.function_name(f"{fn_name[:40]}-{len(made)}"))
        client = client or lam
        et.create_function(client, name, zip_bytes or et.py_zip(source),
                           Role=role_arn or role, **kw)
        made.append((client, name))
        return name

    yield make
    for client, name in made:  # free the functions' sandboxes for the tests that follow
        try:
            client.delete_function(FunctionName=name)
        except Exception:  # noqa: BLE001 - a test may have deleted it already
            pass


@pytest.fixture(scope="module")
def canary(lam, root_id):
    """A bystander function, invoked after each breakout attempt."""
    name = et.function_name("canary")
    et.create_function(lam, name, et.py_zip(
        "count = 0\n\ndef handler(event, context):\n    global count\n    count += 1\n"
        "    return {'echo': event, 'count': count}\n"), Role=et.role_arn(root_id))
    inv = et.invoke(lam, name, {"warm": True})
    assert inv.status == 200 and inv.function_error is None, inv.describe()
    yield name
    lam.delete_function(FunctionName=name)


def assert_unaffected(server, lam, canary):
    """The server is up and healthy, and another function still works."""
    assert server.alive(), f"the server died; stderr:\n{server.stderr()}"
    status, body = server.health()
    assert status == 200, (status, body)
    token = uuid.uuid4().hex
    inv = et.invoke(lam, canary, {"token": token})
    assert inv.status == 200 and inv.function_error is None, inv.describe()
    assert inv.json()["echo"] == {"token": token}
    # The control plane still answers too.
    assert lam.get_function_configuration(FunctionName=canary)["State"] == "Active"


def ok(inv: et.Invocation):
    assert inv.status == 200 and inv.function_error is None, inv.describe()
    return inv.json()


def sandbox_id_of(log_stream_name: str) -> str:
    """The sandbox id Ember puts at the end of the log stream name."""
    return log_stream_name.rsplit("]", 1)[-1]


def host_pids_in_cgroup(fragment: str) -> list:
    """Host pids whose cgroup path contains `fragment`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cgroup") as f:
                if fragment in f.read():
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def host_pids_with_cmdline(token: str) -> list:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if token.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


# --------------------------------------------------------------------------------------
# The filesystem
# --------------------------------------------------------------------------------------

PROBE_PATHS_PY = '''\
import errno, os

def probe(path):
    try:
        if os.path.isdir(path):
            return {"ok": True, "list": sorted(os.listdir(path))[:50]}
        with open(path, "rb") as f:
            return {"ok": True, "data": f.read(4096).decode("utf-8", "replace")}
    except OSError as e:
        return {"ok": False, "errno": errno.errorcode.get(e.errno, str(e.errno))}

def handler(event, context):
    return {
        "probes": {p: probe(p) for p in event["paths"]},
        "task": sorted(os.listdir("/var/task")),
        "uid": os.getuid(),
        "gid": os.getgid(),
    }
'''


def test_host_files_are_out_of_reach(server, lam, mk, canary, tmp_root):
    secret = "host-secret-" + uuid.uuid4().hex
    marker_dir = os.path.join(tmp_root, "marker-" + uuid.uuid4().hex[:8])
    os.makedirs(marker_dir)
    os.chmod(marker_dir, 0o755)
    marker = os.path.join(marker_dir, "secret.txt")
    with open(marker, "w") as f:
        f.write(secret)
    os.chmod(marker, 0o644)  # readable by anyone who can see it
    host_tmp_marker = f"/tmp/ember-isolation-{uuid.uuid4().hex}"
    with open(host_tmp_marker, "w") as f:
        f.write(secret)
    os.chmod(host_tmp_marker, 0o644)
    db = os.path.join(server.data_dir, "ember.db")
    try:
        name = mk(PROBE_PATHS_PY)
        paths = [marker, marker_dir, host_tmp_marker, "/etc/shadow", "/root", "/home",
                 server.data_dir, db, os.path.join(server.data_dir, "code"),
                 "/proc/1/root" + marker, f"/proc/{server.proc.pid}/root" + marker,
                 f"/proc/{server.proc.pid}/environ", f"/proc/{os.getpid()}/cwd",
                 "/var/run/docker.sock", "/dev/sda", "/dev/mem", "/dev/kmsg"]
        got = ok(et.invoke(lam, name, {"paths": paths}))
    finally:
        os.unlink(host_tmp_marker)
    probes = got["probes"]
    blob = json.dumps(probes)
    assert secret not in blob, f"the function read the host's secret: {probes}"
    for p in (marker, marker_dir, host_tmp_marker, db, server.data_dir, "/proc/1/root" + marker,
              f"/proc/{server.proc.pid}/root" + marker, f"/proc/{server.proc.pid}/environ",
              f"/proc/{os.getpid()}/cwd", "/var/run/docker.sock", "/dev/sda", "/dev/mem", "/dev/kmsg"):
        assert not probes[p]["ok"], f"{p} is reachable from the sandbox: {probes[p]}"
    assert et.ROOT_SECRET_ACCESS_KEY not in blob
    # /etc/shadow: absent, unreadable, or at least not the host's.
    with open("/etc/shadow") as f:
        host_shadow = f.read()
    shadow = probes["/etc/shadow"]
    assert not shadow["ok"] or shadow["data"] != host_shadow[:4096], "the host's /etc/shadow is readable"
    # /root and /home: nothing of the host's.
    for d in ("/root", "/home"):
        seen = set(probes[d].get("list", []))
        host = set(os.listdir(d)) if os.path.isdir(d) else set()
        assert not (seen & host - {".bashrc", ".profile"}), f"{d} shows host entries: {seen & host}"
    # The function sees its own code, and nothing else there; it runs unprivileged.
    assert got["task"] == ["app.py"], got["task"]
    assert (got["uid"], got["gid"]) != (0, 0)
    assert got["uid"] == SANDBOX_UID, got["uid"]
    assert_unaffected(server, lam, canary)


WRITE_PY = '''\
import errno, os

def attempt(fn):
    try:
        fn()
        return "succeeded"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

def handler(event, context):
    results = {
        "append app.py": attempt(lambda: open("/var/task/app.py", "a").write("# pwned\\n")),
        "create in /var/task": attempt(lambda: open("/var/task/new.py", "w").write("x")),
        "unlink app.py": attempt(lambda: os.unlink("/var/task/app.py")),
        "chmod app.py": attempt(lambda: os.chmod("/var/task/app.py", 0o777)),
        "mkdir in /var/task": attempt(lambda: os.mkdir("/var/task/d")),
        "write /var/runtime": attempt(lambda: open("/var/runtime/x", "w").write("x")),
        "write /usr/bin": attempt(lambda: open("/usr/bin/pwned", "w").write("x")),
        "write /etc/passwd": attempt(lambda: open("/etc/passwd", "a").write("x")),
        "write /": attempt(lambda: open("/pwned", "w").write("x")),
        "write /tmp": attempt(lambda: open("/tmp/ok", "w").write("x")),
    }
    return {"results": results, "marker": MARKER}

MARKER = "original"
'''


def test_code_and_system_directories_are_read_only(server, lam, mk, canary):
    name = mk(WRITE_PY)
    got = ok(et.invoke(lam, name, {}))
    results = got["results"]
    assert results.pop("write /tmp") == "succeeded", "/tmp must be writable"
    for what, outcome in results.items():
        assert outcome in ("EROFS", "EACCES", "EPERM"), f"{what}: {outcome}"
    # The code is unchanged, for this sandbox and a fresh one.
    assert ok(et.invoke(lam, name, {}))["marker"] == "original"
    lam.update_function_configuration(FunctionName=name, Description="force a cold start")
    again = et.invoke(lam, name, {})
    assert ok(again)["marker"] == "original"
    assert again.parsed_log().report["init"] is not None
    assert_unaffected(server, lam, canary)


# --------------------------------------------------------------------------------------
# Processes, identity, namespaces
# --------------------------------------------------------------------------------------

PROCESSES_PY = '''\
import os, socket

def handler(event, context):
    procs = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = open("/proc/%s/cmdline" % entry, "rb").read().replace(b"\\0", b" ").decode("utf-8", "replace")
            except OSError as e:
                cmd = "<%s>" % e
            procs.append([int(entry), cmd])
    kills = {}
    for pid in event["pids"]:
        try:
            os.kill(pid, 0)
            kills[str(pid)] = "exists"
        except OSError as e:
            kills[str(pid)] = type(e).__name__
    status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
    ns = {}
    for kind in ("user", "pid", "mnt", "net", "ipc", "uts", "cgroup"):
        try:
            ns[kind] = os.readlink("/proc/self/ns/" + kind)
        except OSError as e:
            ns[kind] = "<%s>" % e
    return {
        "procs": sorted(procs),
        "kills": kills,
        "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
        "cap_eff": status.get("CapEff", "").strip(),
        "cap_bnd": status.get("CapBnd", "").strip(),
        "no_new_privs": status.get("NoNewPrivs", "").strip(),
        "seccomp": status.get("Seccomp", "").strip(),
        "ns": ns,
        "hostname": socket.gethostname(),
        "cgroup": open("/proc/self/cgroup").read(),
    }
'''


def test_host_processes_are_invisible(server, lam, mk, canary):
    name = mk(PROCESSES_PY)
    server_pid, my_pid = server.proc.pid, os.getpid()
    got = ok(et.invoke(lam, name, {"pids": [server_pid, my_pid]}))
    procs = got["procs"]
    assert len(procs) <= 5, f"the sandbox sees {len(procs)} processes: {procs}"
    cmdlines = " | ".join(cmd for _, cmd in procs)
    for needle in ("ember serve", "pytest", "postgres", "redis", "systemd", "sshd"):
        assert needle not in cmdlines, f"host process {needle!r} visible: {procs}"
    assert all(pid < 1000 for pid, _ in procs), procs
    for pid, outcome in got["kills"].items():
        assert outcome == "ProcessLookupError", f"kill({pid}, 0) from the sandbox: {outcome}"
    assert_unaffected(server, lam, canary)


def test_unprivileged_in_its_own_namespaces(server, lam, mk, canary):
    name = mk(PROCESSES_PY)
    got = ok(et.invoke(lam, name, {"pids": []}))
    assert (got["uid"], got["euid"]) == (SANDBOX_UID, SANDBOX_UID), got
    assert int(got["cap_eff"], 16) == 0, f"effective capabilities: {got['cap_eff']}"
    assert got["no_new_privs"] == "1", got
    assert got["seccomp"] == "2", "no seccomp filter: " + got["seccomp"]
    for kind, link in got["ns"].items():
        host = os.readlink(f"/proc/self/ns/{kind}")
        assert link != host, f"the sandbox shares the host's {kind} namespace ({link})"
    assert got["hostname"] != socket.gethostname()
    assert "ember" not in got["cgroup"] and "sb-" not in got["cgroup"], got["cgroup"]
    assert_unaffected(server, lam, canary)


# --------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------

NETWORK_PY = '''\
import socket

def handler(event, context):
    results = {}
    for host, port in event["targets"]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect((host, port))
            results["%s:%d" % (host, port)] = "connected"
        except OSError as e:
            results["%s:%d" % (host, port)] = type(e).__name__
        finally:
            s.close()
    return {"results": results, "interfaces": [n for _, n in socket.if_nameindex()]}
'''


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_host_loopback_services_are_unreachable(server, lam, mk, canary):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    services = [p for p in (5432, 6379, 3306, 4222, 5672) if _listening(p)]
    targets = [["127.0.0.1", server.port], ["127.0.0.1", port], ["localhost", server.port],
               ["::1", server.port], ["::1", 6379]] + [["127.0.0.1", p] for p in services]
    try:
        name = mk(NETWORK_PY, Timeout=30)
        got = ok(et.invoke(lam, name, {"targets": targets}))
        with pytest.raises(BlockingIOError):
            conn, _ = listener.accept()
            conn.close()
    finally:
        listener.close()
    for target, outcome in got["results"].items():
        assert outcome != "connected", f"the sandbox reached host service {target}"
    assert got["interfaces"] == ["lo"], got["interfaces"]
    assert_unaffected(server, lam, canary)


# --------------------------------------------------------------------------------------
# Resource limits
# --------------------------------------------------------------------------------------


def test_memory_limit(server, lam, mk, canary):
    name = mk("import os\n\ndef handler(event, context):\n"
              "    data = b'\\x01' * (event['mb'] << 20)\n    return len(data)\n", MemorySize=128)
    inv = et.invoke(lam, name, {"mb": 400})
    assert inv.function_error == "Unhandled", inv.describe()
    assert inv.json()["errorType"] == "Runtime.OutOfMemory", inv.describe()
    assert_unaffected(server, lam, canary)
    # Within the limit it works.
    assert ok(et.invoke(lam, name, {"mb": 50})) == 50 << 20


PIDS_PY = '''\
import errno, os, signal, time

def handler(event, context):
    children, failure = [], None
    try:
        for _ in range(3000):
            pid = os.fork()
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            children.append(pid)
    except OSError as e:
        failure = errno.errorcode.get(e.errno, str(e.errno))
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    for pid in children:
        os.waitpid(pid, 0)
    return {"forked": len(children), "failure": failure}
'''


def test_pids_limit(server, lam, mk, canary):
    name = mk(PIDS_PY, MemorySize=1024, Timeout=60)
    got = ok(et.invoke(lam, name, {}))
    assert got["failure"] == "EAGAIN", got
    assert 900 <= got["forked"] < 1024, got
    assert_unaffected(server, lam, canary)


FORK_BOMB_PY = '''\
import os

def handler(event, context):
    if not event.get("bomb"):
        return context.log_stream_name
    while True:
        try:
            os.fork()
        except OSError:
            pass
'''


def test_fork_bomb(server, lam, mk, canary):
    name = mk(FORK_BOMB_PY, Timeout=3)
    sandbox = sandbox_id_of(ok(et.invoke(lam, name, {})))
    assert host_pids_in_cgroup(f"/{sandbox}\n"), "cannot find the sandbox's processes on the host"
    inv = et.invoke(lam, name, {"bomb": True})
    assert inv.function_error == "Unhandled", inv.describe()
    assert inv.json()["errorType"] in ("Sandbox.Timedout", "Runtime.OutOfMemory", "Runtime.ExitError"), inv.describe()
    assert inv.elapsed < 15, f"the fork bomb's invoke took {inv.elapsed:.1f}s with Timeout=3"
    # Every process of the bomb is gone from the host.
    wait_until(lambda: not host_pids_in_cgroup(f"/{sandbox}\n"), 15,
               f"processes of sandbox {sandbox} still on the host: {host_pids_in_cgroup(f'/{sandbox}')}")
    assert_unaffected(server, lam, canary)
    nxt = et.invoke(lam, name, {})
    assert sandbox_id_of(ok(nxt)) != sandbox


TMP_FILL_PY = '''\
import errno, os

def handler(event, context):
    chunk = b"\\1" * (1 << 20)
    written, failure = 0, None
    try:
        with open("/tmp/fill", "wb") as f:
            for _ in range(event["max_mb"]):
                f.write(chunk)
                f.flush()
                written += 1
            os.fsync(f.fileno())
    except OSError as e:
        failure = errno.errorcode.get(e.errno, str(e.errno))
    st = os.statvfs("/tmp")
    size_mb = st.f_blocks * st.f_frsize // (1 << 20)
    os.unlink("/tmp/fill")
    return {"written_mb": written, "failure": failure, "tmp_size_mb": size_mb}
'''


def test_tmp_is_capped_at_ephemeral_storage(server, lam, mk, canary):
    name = mk(TMP_FILL_PY, MemorySize=1024, Timeout=60, EphemeralStorage={"Size": 512})
    got = ok(et.invoke(lam, name, {"max_mb": 700}))
    assert got["failure"] == "ENOSPC", got
    assert 500 <= got["written_mb"] <= 512, got
    assert 500 <= got["tmp_size_mb"] <= 512, got
    # The space is back once the file is gone.
    got = ok(et.invoke(lam, name, {"max_mb": 100}))
    assert got == {"written_mb": 100, "failure": None, "tmp_size_mb": got["tmp_size_mb"]}, got
    assert_unaffected(server, lam, canary)


@pytest.mark.xfail(
    strict=True,
    reason="known difference, documented in ARCHITECTURE.md: Ember's /tmp is a tmpfs whose "
    "pages are charged to the sandbox's memory cgroup, so /tmp use counts against MemorySize "
    "(Lambda's /tmp is separate storage)",
)
def test_tmp_is_not_limited_by_memory_size(server, lam, mk, canary):
    """As in Lambda, /tmp (EphemeralStorage) is separate from MemorySize: a 128 MB
    function can keep 300 MB in /tmp."""
    name = mk(TMP_FILL_PY, MemorySize=128, Timeout=60, EphemeralStorage={"Size": 512})
    inv = et.invoke(lam, name, {"max_mb": 300})
    got = ok(inv)
    assert got["failure"] is None and got["written_mb"] == 300, got
    assert_unaffected(server, lam, canary)


FILES_PY = '''\
import errno, os, resource

def handler(event, context):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard * 4, hard * 4))
        raised = "succeeded"
    except (OSError, ValueError) as e:
        raised = type(e).__name__
    fds, failure = [], None
    try:
        for _ in range(5000):
            fds.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as e:
        failure = errno.errorcode.get(e.errno, str(e.errno))
    for fd in fds:
        os.close(fd)
    return {"soft": soft, "hard": hard, "raise": raised, "opened": len(fds), "failure": failure}
'''


def test_open_files_limit(server, lam, mk, canary):
    name = mk(FILES_PY)
    got = ok(et.invoke(lam, name, {}))
    assert (got["soft"], got["hard"]) == (1024, 1024), got
    assert got["raise"] != "succeeded", got
    assert got["failure"] == "EMFILE", got
    assert 1000 <= got["opened"] < 1024, got
    assert_unaffected(server, lam, canary)


SYSCALLS_PY = '''\
import ctypes, errno, os

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def result(ret):
    err = ctypes.get_errno()
    ctypes.set_errno(0)
    if ret == -1:
        return errno.errorcode.get(err, str(err))
    return "succeeded (%d)" % ret

def handler(event, context):
    os.makedirs("/tmp/mnt", exist_ok=True)
    fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    results = {
        "mount": result(libc.mount(b"none", b"/tmp/mnt", b"tmpfs", 0, None)),
        "umount2": result(libc.umount2(b"/var/task", 2)),
        "unshare(CLONE_NEWUSER)": result(libc.unshare(0x10000000)),
        "unshare(CLONE_NEWNS)": result(libc.unshare(0x00020000)),
        "unshare(CLONE_NEWNET)": result(libc.unshare(0x40000000)),
        "setns": result(libc.setns(fd, 0)),
        "ptrace(TRACEME)": result(libc.ptrace(0, 0, None, None)),
        "ptrace(ATTACH, 1)": result(libc.ptrace(16, 1, None, None)),
        "bpf": result(libc.syscall(321, 0, None, 0)),
        "keyctl": result(libc.syscall(250, 0, 0, 0, 0, 0)),
        "add_key": result(libc.syscall(248, b"user", b"k", b"v", 1, -2)),
        "chroot": result(libc.chroot(b"/tmp")),
        "pivot_root": result(libc.syscall(155, b"/tmp", b"/tmp/mnt")),
    }
    os.close(fd)
    return results
'''

EPERM_SYSCALLS = ("mount", "unshare(CLONE_NEWUSER)", "unshare(CLONE_NEWNS)", "unshare(CLONE_NEWNET)",
                  "setns", "ptrace(TRACEME)", "ptrace(ATTACH, 1)", "bpf", "keyctl", "add_key")


def test_privileged_syscalls_are_denied(server, lam, mk, canary):
    name = mk(SYSCALLS_PY)
    got = ok(et.invoke(lam, name, {}))
    for call in EPERM_SYSCALLS:
        assert got[call] == "EPERM", f"{call} from the sandbox: {got[call]} (all: {got})"
    for call in ("umount2", "chroot", "pivot_root"):
        assert not got[call].startswith("succeeded"), f"{call} from the sandbox: {got[call]}"
    assert_unaffected(server, lam, canary)


TIMEOUT_ESCAPE_PY = '''\
import os, subprocess, time

def handler(event, context):
    # A detached child that ignores SIGTERM and SIGHUP, then a busy loop past the timeout.
    subprocess.Popen(["/bin/sh", "-c", "trap '' TERM HUP; exec sleep %s" % event["token"]],
                     start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    x = 0
    while True:
        x += 1
'''


def test_nothing_outlives_the_timeout(server, lam, mk, canary):
    token = f"{777 + int(uuid.uuid4().int % 1000)}.{uuid.uuid4().int % 10 ** 9}"
    name = mk(TIMEOUT_ESCAPE_PY, Timeout=1)
    inv = et.invoke(lam, name, {"token": token})
    assert inv.function_error == "Unhandled", inv.describe()
    assert inv.json()["errorType"] == "Sandbox.Timedout", inv.describe()
    assert inv.elapsed < 3, f"Timeout=1 but the invoke took {inv.elapsed:.1f}s"
    wait_until(lambda: not host_pids_with_cmdline(f"sleep\0{token}"), 10,
               f"the function's background process (sleep {token}) outlived its sandbox")
    assert_unaffected(server, lam, canary)


# --------------------------------------------------------------------------------------
# Accounts and functions never share a sandbox
# --------------------------------------------------------------------------------------

TMP_SECRET_PY = '''\
import os

def handler(event, context):
    path = "/tmp/secret.txt"
    seen = open(path).read() if os.path.exists(path) else None
    if event.get("write"):
        with open(path, "w") as f:
            f.write(event["write"])
    return {"seen": seen, "tmp": sorted(os.listdir("/tmp")), "stream": context.log_stream_name,
            "function": context.function_name, "arn": context.invoked_function_arn}
'''


def test_tmp_is_never_shared_across_accounts_or_functions(server, lam, other_lam, other, root_id, mk, canary):
    zip_bytes = et.py_zip(TMP_SECRET_PY)  # identical code (same CodeSha256) everywhere
    name = mk(None, zip_bytes=zip_bytes)
    secret = "secret-" + uuid.uuid4().hex
    wrote = ok(et.invoke(lam, name, {"write": secret}))
    assert wrote["seen"] is None
    mine_again = ok(et.invoke(lam, name, {}))
    assert mine_again["seen"] == secret, "the warm sandbox should keep its own /tmp"

    # The other account: a function with the same name and the same code.
    mk(None, zip_bytes=zip_bytes, name=name, client=other_lam, role_arn=et.role_arn(other.account_id))
    theirs = et.invoke(other_lam, name, {})
    got = ok(theirs)
    assert got["seen"] is None and "secret.txt" not in got["tmp"], f"another account's /tmp leaked: {got}"
    assert got["arn"] == f"arn:aws:lambda:us-east-1:{other.account_id}:function:{name}"
    assert theirs.parsed_log().report["init"] is not None, "the other account got a warm sandbox:\n" + theirs.log
    assert sandbox_id_of(got["stream"]) != sandbox_id_of(wrote["stream"])

    # Another function of the same account, same code.
    sibling = mk(None, zip_bytes=zip_bytes)
    got = ok(et.invoke(lam, sibling, {}))
    assert got["seen"] is None and "secret.txt" not in got["tmp"], f"another function's /tmp leaked: {got}"
    assert sandbox_id_of(got["stream"]) != sandbox_id_of(wrote["stream"])

    # And the other account cannot run the root account's function at all.
    arn = f"arn:aws:lambda:us-east-1:{root_id}:function:{sibling}"
    with pytest.raises(other_lam.exceptions.ResourceNotFoundException):
        other_lam.invoke(FunctionName=sibling, Payload=b"{}")
    with pytest.raises(other_lam.exceptions.ClientError) as ei:
        other_lam.invoke(FunctionName=arn, Payload=b"{}")
    err = ei.value.response
    assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDeniedException", 403), err
    assert ok(et.invoke(lam, name, {}))["seen"] == secret
    assert_unaffected(server, lam, canary)


def test_concurrent_invokes_of_two_accounts_stay_apart(server, lam, other_lam, other, mk, canary):
    import concurrent.futures

    src = ("import os, time\n\ndef handler(event, context):\n"
           "    open('/tmp/owner', 'a').write(event['owner'] + '\\n')\n    time.sleep(0.3)\n"
           "    return sorted(set(open('/tmp/owner').read().split()))\n")
    name = mk(src)
    mk(src, name=name, client=other_lam, role_arn=et.role_arn(other.account_id))
    calls = [(lam, "root"), (other_lam, "other")] * 4
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda c: (c[1], et.invoke(c[0], name, {"owner": c[1]})), calls))
    for owner, inv in results:
        assert ok(inv) == [owner], f"{owner}'s invoke saw {inv.json()}"
    assert_unaffected(server, lam, canary)


# --------------------------------------------------------------------------------------
# Two servers on one host
# --------------------------------------------------------------------------------------


def test_another_server_starting_leaves_this_servers_sandboxes_alone(server, lam, mk, canary, tmp_root):
    """A second `ember serve` (its own data directory) on the same host must not touch the
    first one's sandboxes: not the invocation running now, nor the warm ones."""
    import concurrent.futures

    name = mk("import time\n\ndef handler(event, context):\n    time.sleep(event['sleep'])\n"
              "    return 'slept'\n", Timeout=30)
    assert ok(et.invoke(lam, name, {"sleep": 0})) == "slept"
    warm_before = et.invoke(lam, canary, {"before": True})
    assert warm_before.function_error is None, warm_before.describe()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(et.invoke, lam, name, {"sleep": 3})
        time.sleep(1)  # the invocation is under way in a warm sandbox
        second = et.EmberServer(data_dir=os.path.join(tmp_root, "second-" + uuid.uuid4().hex[:8])).start()
        try:
            assert second.health()[0] == 200
        finally:
            assert second.stop() == 0, second.stderr()
        inv = running.result(timeout=60)
    assert inv.status == 200 and inv.function_error is None, (
        "an invocation of this server died when another server started:\n" + inv.describe())
    assert inv.json() == "slept"
    after = et.invoke(lam, canary, {"after": True})
    assert after.function_error is None, after.describe()
    assert after.parsed_log().report["init"] is None, (
        "the canary's warm sandbox was destroyed by the other server:\n" + after.log)
    assert_unaffected(server, lam, canary)
