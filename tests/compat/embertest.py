"""Helpers shared by the compatibility suite: running `ember serve`, making clients,
signing raw requests, and building zip files in memory.

Only the standard library and the pinned packages (boto3/botocore, awscli, pytest) are
used. Nothing here talks to real AWS: every client is pointed at a local Ember endpoint.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.client
import io
import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass, field
from unittest import mock

import boto3
import botocore.session
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

REGION = "us-east-1"
API = "/2015-03-31"

# Fixed root key pair for the shared session server (EMBER_ROOT_ACCESS_KEY_ID/...).
ROOT_ACCESS_KEY_ID = "AKIAEMBERCOMPATROOT1"
ROOT_SECRET_ACCESS_KEY = "compatRootSecret/0123456789+abcdefghijKLMNOP"

READY_LINE = re.compile(r"^Ember is listening on (http://127\.0\.0\.1:(\d+))$")
ACCOUNT_ID = re.compile(r"^\d{12}$")
FUNCTION_ARN = re.compile(r"^arn:aws:lambda:us-east-1:(\d{12}):function:([A-Za-z0-9_-]{1,64})$")
LAST_MODIFIED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")

# Lambda limits Ember implements.
MAX_CODE_REQUEST_BYTES = 70_167_211
MAX_REQUEST_BYTES = 6 * 1024 * 1024
MAX_UNZIPPED_BYTES = 262_144_000

# --------------------------------------------------------------------------------------
# Runtimes
# --------------------------------------------------------------------------------------

# Every runtime identifier the Lambda control plane accepts (and Ember knows).
SUPPORTED_RUNTIMES = (
    "python3.8", "python3.9", "python3.10", "python3.11", "python3.12", "python3.13",
    "python3.14", "nodejs16.x", "nodejs18.x", "nodejs20.x", "nodejs22.x", "nodejs24.x",
    "provided", "provided.al2", "provided.al2023",
)


def _is_elf_executable(path: str) -> bool:
    try:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return False
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def detect_host_runtimes() -> tuple:
    """The runtimes `ember serve` finds on this host, detected the way it does: a real
    (ELF) /usr/bin/python3.X or /usr/local/bin/python3.X, the major version of the first
    `node` on PATH, and the provided* runtimes (which need only the base userland)."""
    found = []
    for minor in range(8, 15):
        name = f"python3.{minor}"
        if any(_is_elf_executable(f"{d}/{name}") for d in ("/usr/bin", "/usr/local/bin")):
            found.append(name)
    node = shutil.which("node")
    if node and _is_elf_executable(os.path.realpath(node)):
        try:
            out = subprocess.run([node, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
            found.append(f"nodejs{int(out.strip().lstrip('v').split('.')[0])}.x")
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    found += ["provided", "provided.al2", "provided.al2023"]
    return tuple(r for r in found if r in SUPPORTED_RUNTIMES)


HOST_RUNTIMES = detect_host_runtimes()
# The newest Python runtime of this host: the suite's default runtime (None: no Python).
PY_RUNTIME = max((r for r in HOST_RUNTIMES if r.startswith("python")),
                 key=lambda r: int(r.split(".")[1]), default=None)
NODE_RUNTIME = next((r for r in HOST_RUNTIMES if r.startswith("nodejs")), None)
# A runtime other than PY_RUNTIME that this host has (for updates that change it).
OTHER_RUNTIME = NODE_RUNTIME or "provided.al2023"
UNAVAILABLE_RUNTIMES = tuple(r for r in SUPPORTED_RUNTIMES if r not in HOST_RUNTIMES)


START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0

# Environment variables that would make a client or the server look somewhere other
# than where the test points it.
_LEAKY_ENV_PREFIXES = ("AWS_", "EMBER_")


def ember_bin() -> str:
    """The `ember` binary under test, from EMBER_BIN. A missing or unusable binary is a
    test failure (never a skip): the suite is meaningless without it."""
    import pytest

    path = os.environ.get("EMBER_BIN", "")
    if not path:
        pytest.fail(
            "EMBER_BIN is not set: point it at the ember binary, e.g. "
            "EMBER_BIN=$PWD/target/debug/ember (build it with `cargo build` first)",
            pytrace=False,
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(
            f"EMBER_BIN={path!r} is not an executable file (did `cargo build` run?)",
            pytrace=False,
        )
    return path


def clean_env(**extra: str) -> dict:
    """os.environ without AWS_*/EMBER_* variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_ENV_PREFIXES)}
    env.update(extra)
    return env


# --------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------


@dataclass
class EmberServer:
    """One `ember serve` process on 127.0.0.1:0 with its own data directory."""

    data_dir: str
    root_keys: tuple[str, str] | None = (ROOT_ACCESS_KEY_ID, ROOT_SECRET_ACCESS_KEY)
    proc: subprocess.Popen | None = None
    endpoint: str = ""
    port: int = 0
    stderr_path: str = ""
    extra_stdout: list = field(default_factory=list)
    starts: int = 0
    # More `ember serve` arguments, e.g. ["--config", path].
    extra_args: list = field(default_factory=list)

    def start(self) -> "EmberServer":
        extra = {}
        if self.root_keys is not None:
            extra = {
                "EMBER_ROOT_ACCESS_KEY_ID": self.root_keys[0],
                "EMBER_ROOT_SECRET_ACCESS_KEY": self.root_keys[1],
            }
        self.starts += 1
        self.stderr_path = os.path.join(
            os.path.dirname(self.data_dir.rstrip("/")) or ".",
            f"{os.path.basename(self.data_dir.rstrip('/'))}.stderr.{self.starts}.log",
        )
        stderr = open(self.stderr_path, "wb")
        try:
            self.proc = subprocess.Popen(
                [ember_bin(), "serve", "--data-dir", self.data_dir, "--listen", "127.0.0.1:0",
                 *self.extra_args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=clean_env(RUST_LOG="info", **extra),
            )
        finally:
            stderr.close()
        line = self._read_line(START_TIMEOUT)
        m = READY_LINE.match(line.rstrip("\n")) if line else None
        if not m:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"ember serve did not print its ready line within {START_TIMEOUT}s; "
                f"got stdout {line!r}; stderr:\n{self.stderr()}"
            )
        self.endpoint, self.port = m.group(1), int(m.group(2))
        self.extra_stdout = []
        return self

    def _read_line(self, timeout: float) -> str:
        """One stdout line, or '' at EOF/timeout."""
        assert self.proc and self.proc.stdout
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    break
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk
        line, _, rest = buf.partition(b"\n")
        if rest:
            self.extra_stdout.append(rest)
        return line.decode(errors="replace") + ("\n" if b"\n" in buf else "")

    def stderr(self) -> str:
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")[-20000:]
        except OSError:
            return "<no stderr>"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send `sig`, wait, and return the exit code (negative: killed by a signal)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"ember serve did not exit within {timeout}s of signal {sig}; "
                    f"stderr:\n{self.stderr()}"
                )
        rest = self.proc.stdout.read() if self.proc.stdout else b""
        if rest:
            self.extra_stdout.append(rest)
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def lambda_client(self, key: str | None = None, secret: str | None = None, **kw):
        if key is None:
            key, secret = self.root_keys
        return lambda_client(self.endpoint, key, secret, **kw)

    def health(self) -> tuple[int, dict]:
        status, _, body = http_request(self.endpoint, "GET", "/ember/health")
        return status, json.loads(body) if body else {}


# --------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------


def _isolated_botocore_session() -> botocore.session.Session:
    """A botocore session that reads no config or credentials file and no profile."""
    session = botocore.session.Session()
    session.set_config_variable("config_file", os.devnull)
    session.set_config_variable("credentials_file", os.devnull)
    return session


def lambda_client(endpoint: str, key: str, secret: str, *, validate: bool = True, **config):
    """A boto3 Lambda client for `endpoint`, with no retries (errors surface at once).
    `validate=False` turns off botocore's client-side parameter validation so the
    server's own validation is exercised."""
    cfg = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        parameter_validation=validate,
        **config,
    )
    session = boto3.Session(botocore_session=_isolated_botocore_session())
    return session.client(
        "lambda",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=cfg,
    )


def run_ember_cli(args: list, endpoint: str, key: str, secret: str, cwd: str | None = None):
    """Run an `ember` client subcommand with the given credentials in the environment."""
    cwd = cwd or tempfile.gettempdir()
    return subprocess.run(
        [ember_bin(), *args, "--endpoint", endpoint],
        env=clean_env(
            AWS_ACCESS_KEY_ID=key,
            AWS_SECRET_ACCESS_KEY=secret,
            AWS_DEFAULT_REGION=REGION,
            HOME=cwd,
        ),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclass
class Account:
    account_id: str
    key: str
    secret: str
    name: str = ""

    def client(self, server: EmberServer, **kw):
        return server.lambda_client(self.key, self.secret, **kw)


def create_account(server: EmberServer, name: str | None = None, key=None, secret=None) -> Account:
    """`ember accounts create NAME --endpoint URL`, signed by the root account."""
    name = name or f"acct-{uuid.uuid4().hex[:12]}"
    if key is None:
        key, secret = server.root_keys
    r = run_ember_cli(["accounts", "create", name], server.endpoint, key, secret)
    assert r.returncode == 0, f"accounts create failed ({r.returncode}): {r.stderr}"
    out = json.loads(r.stdout)
    assert set(out) >= {"AccountId", "AccessKeyId", "SecretAccessKey"}, out
    assert ACCOUNT_ID.match(out["AccountId"]), out
    return Account(out["AccountId"], out["AccessKeyId"], out["SecretAccessKey"], name)


def root_account_id(server: EmberServer) -> str:
    r = run_ember_cli(["accounts", "ls"], server.endpoint, *server.root_keys)
    assert r.returncode == 0, r.stderr
    roots = [a for a in json.loads(r.stdout)["Accounts"] if a.get("Root")]
    assert len(roots) == 1, r.stdout
    return roots[0]["AccountId"]


# --------------------------------------------------------------------------------------
# Raw HTTP and signing
# --------------------------------------------------------------------------------------


def http_request(endpoint: str, method: str, path: str, body: bytes = b"", headers=None, timeout=120):
    """Send one request with http.client; return (status, lowercased headers, body)."""
    u = urllib.parse.urlsplit(endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def sign(method: str, url: str, body: bytes, key: str, secret: str, *, service="lambda",
         headers=None, when: datetime.datetime | None = None) -> dict:
    """SigV4-sign a request with botocore's own signer; return the headers to send.
    `when` (UTC) replaces the signing clock."""
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    signer = SigV4Auth(Credentials(key, secret), service, REGION)
    if when is None:
        signer.add_auth(req)
    else:
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            signer.add_auth(req)
    return dict(req.headers.items())


def presign(url: str, key: str, secret: str, expires: int = 600, service="lambda") -> str:
    """A presigned GET URL made with botocore's query-string signer."""
    req = AWSRequest(method="GET", url=url)
    SigV4QueryAuth(Credentials(key, secret), service, REGION, expires=expires).add_auth(req)
    return req.url


def signed_request(server: EmberServer, method: str, path: str, body: bytes = b"",
                   key=None, secret=None, headers=None, **sign_kw):
    if key is None:
        key, secret = server.root_keys
    hdrs = dict(headers or {})
    hdrs.update(sign(method, server.endpoint + path, body, key, secret, headers=hdrs, **sign_kw))
    return http_request(server.endpoint, method, path, body, hdrs)


def error_of(status_headers_body) -> tuple[int, str, dict]:
    """(status, x-amzn-ErrorType, JSON body) of a raw error response."""
    status, headers, body = status_headers_body
    try:
        doc = json.loads(body) if body else {}
    except ValueError:
        doc = {"_raw": body[:500]}
    etype = headers.get("x-amzn-errortype", "").split(":")[0]
    return status, etype, doc


def url_get(url: str, timeout: float = 60) -> tuple[int, bytes, dict]:
    """A plain unauthenticated GET (as a browser or curl would do)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
    except urllib.error.HTTPError as e:
        return e.code, e.read(), {k.lower(): v for k, v in e.headers.items()}


def send_raw(host: str, port: int, head: bytes, body_chunks=(), timeout=60.0):
    """Write a hand-made HTTP/1.1 request over a socket, reading the response while the
    body is still being written (a server may answer early and stop reading). Returns
    (status or None, raw response bytes, error seen while writing or None)."""
    import threading

    sock = socket.create_connection((host, port), timeout=timeout)
    received = bytearray()
    write_error: list = []

    def writer():
        try:
            sock.sendall(head)
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError as e:  # server stopped reading (expected after an early 413)
            write_error.append(e)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        while True:
            try:
                data = sock.recv(65536)
            except socket.timeout:
                break
            except OSError as e:
                write_error.append(e)
                break
            if not data:
                break
            received.extend(data)
            if _response_complete(received):
                break
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        t.join(timeout)
    m = re.match(rb"HTTP/1\.[01] (\d{3})", bytes(received))
    return (int(m.group(1)) if m else None), bytes(received), (write_error[0] if write_error else None)


def _response_complete(buf: bytearray) -> bool:
    head, sep, body = bytes(buf).partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return bool(m) and len(body) >= int(m.group(1))


def raw_json_body(raw: bytes) -> dict:
    _, _, body = raw.partition(b"\r\n\r\n")
    try:
        return json.loads(body)
    except ValueError:
        return {}


def raw_header(raw: bytes, name: str) -> str:
    head = raw.partition(b"\r\n\r\n")[0].decode(errors="replace")
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return ""


# --------------------------------------------------------------------------------------
# Zip files and functions
# --------------------------------------------------------------------------------------

HANDLER_SOURCE = b"def handler(event, context):\n    return {'ok': True, 'event': event}\n"


def make_zip(files: dict | None = None) -> bytes:
    """A zip in memory. `files` maps names to bytes/str (mode 0644), to
    ("symlink", target), or to ("exec", bytes/str) for an executable (mode 0755, e.g. a
    custom runtime's `bootstrap`)."""
    if files is None:
        files = {"app.py": HANDLER_SOURCE}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so external_attr carries a mode
            if isinstance(content, tuple) and content[0] == "symlink":
                info.external_attr = (0o120777 << 16)
                data = content[1].encode()
            elif isinstance(content, tuple) and content[0] == "exec":
                info.external_attr = (0o100755 << 16)
                data = content[1].encode() if isinstance(content[1], str) else content[1]
            else:
                info.external_attr = (0o100644 << 16)
                data = content.encode() if isinstance(content, str) else content
            zf.writestr(info, data)
    return buf.getvalue()


def tree_files(root: str) -> dict:
    """The regular files under `root` as a `make_zip` mapping (relative names; executable
    files keep their exec bit; __pycache__ directories are left out)."""
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fname in sorted(filenames):
            path = os.path.join(dirpath, fname)
            rel = os.path.relpath(path, root)
            with open(path, "rb") as f:
                data = f.read()
            files[rel] = ("exec", data) if os.access(path, os.X_OK) else data
    return files


def unique_zip(tag: str = "") -> bytes:
    """A valid zip whose bytes (and so CodeSha256) are unique."""
    return make_zip({
        "app.py": HANDLER_SOURCE,
        "unique.txt": f"{tag}{uuid.uuid4()}".encode(),
    })


def zip_bomb(unzipped_bytes: int = 300 * 1024 * 1024) -> bytes:
    """A small zip that inflates to `unzipped_bytes` of zeros, written streaming."""
    buf = io.BytesIO()
    chunk = b"\0" * (1024 * 1024)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        info = zipfile.ZipInfo("zeros.bin", date_time=(2024, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as f:
            left = unzipped_bytes
            while left > 0:
                n = min(left, len(chunk))
                f.write(chunk[:n])
                left -= n
    return buf.getvalue()


def code_sha256(zip_bytes: bytes) -> str:
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()


def role_arn(account_id: str) -> str:
    return f"arn:aws:iam::{account_id}:role/ember-compat"


def function_name(hint: str = "fn") -> str:
    """A unique, valid function name (at most 64 characters)."""
    hint = re.sub(r"[^A-Za-z0-9_-]+", "-", hint).strip("-_") or "fn"
    suffix = uuid.uuid4().hex[:10]
    return f"{hint[: 64 - len(suffix) - 1]}-{suffix}"


def create_function(client, name: str, zip_bytes: bytes | None = None, **overrides) -> dict:
    """CreateFunction with sensible defaults; returns the response."""
    params = dict(
        FunctionName=name,
        Runtime=PY_RUNTIME,
        Handler="app.handler",
        Role=overrides.pop("Role", "arn:aws:iam::123456789012:role/ember-compat"),
        Code={"ZipFile": zip_bytes if zip_bytes is not None else make_zip()},
    )
    params.update(overrides)
    return client.create_function(**params)


def which_aws() -> str:
    import pytest

    path = shutil.which("aws")
    if not path:
        pytest.fail(
            "the `aws` command (awscli from tests/compat/requirements.txt) is not on PATH; "
            "run the suite through scripts/test or put the venv's bin first in PATH",
            pytrace=False,
        )
    return path


# --------------------------------------------------------------------------------------
# Invoke
# --------------------------------------------------------------------------------------

START_LINE = re.compile(r"^START RequestId: (?P<id>[0-9a-f-]{36}) Version: (?P<version>\S+)$")
END_LINE = re.compile(r"^END RequestId: (?P<id>[0-9a-f-]{36})$")
REPORT_LINE = re.compile(
    r"^REPORT RequestId: (?P<id>[0-9a-f-]{36})"
    r"\tDuration: (?P<duration>\d+(?:\.\d+)?) ms"
    r"\tBilled Duration: (?P<billed>\d+) ms"
    r"\tMemory Size: (?P<memory>\d+) MB"
    r"\tMax Memory Used: (?P<used>\d+) MB"
    r"(?:\tInit Duration: (?P<init>\d+(?:\.\d+)?) ms)?"
    r"\t?$"
)


@dataclass
class Invocation:
    """One Invoke as boto3 saw it."""

    status: int
    payload: bytes
    function_error: str | None
    log: str  # X-Amz-Log-Result, decoded ('' when absent)
    log_result_present: bool
    request_id: str
    executed_version: str | None
    headers: dict
    elapsed: float

    def json(self):
        return json.loads(self.payload)

    def parsed_log(self) -> "ParsedLog":
        return parse_log(self.log, self.request_id)

    def describe(self) -> str:
        return (f"status {self.status}, FunctionError {self.function_error!r}, "
                f"payload {self.payload[:2000]!r}\nlog:\n{self.log}")


def invoke(client, name: str, payload=None, *, tail: bool = True, **kw) -> Invocation:
    """boto3 `invoke` (LogType Tail unless tail=False). `payload`: bytes/str sent as is,
    anything else JSON-encoded; None sends no payload."""
    args = dict(FunctionName=name, **kw)
    if tail:
        args["LogType"] = "Tail"
    if payload is not None:
        args["Payload"] = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    started = time.monotonic()
    resp = client.invoke(**args)
    body = resp["Payload"].read() if "Payload" in resp else b""
    elapsed = time.monotonic() - started
    meta = resp["ResponseMetadata"]
    log_result = resp.get("LogResult")
    return Invocation(
        status=resp["StatusCode"],
        payload=body,
        function_error=resp.get("FunctionError"),
        log=base64.b64decode(log_result).decode("utf-8", "replace") if log_result else "",
        log_result_present=log_result is not None,
        request_id=meta.get("RequestId") or meta["HTTPHeaders"].get("x-amzn-requestid", ""),
        executed_version=resp.get("ExecutedVersion"),
        headers=dict(meta["HTTPHeaders"]),
        elapsed=elapsed,
    )


@dataclass
class ParsedLog:
    start: dict | None  # the START line's fields (None when cut off by the 4 KB tail)
    output: str  # the function's output between START (or the tail's start) and END
    end: dict
    report: dict  # duration (float), billed, memory, used (int), init (float or None)


def parse_log(log: str, request_id: str | None = None) -> ParsedLog:
    """Check the shape of an invocation log (START ... END, REPORT last) and return its
    parts. With `request_id`, every line's RequestId must be it."""
    assert log.endswith("\n"), f"the log does not end with a newline:\n{log!r}"
    lines = log[:-1].split("\n")
    assert len(lines) >= 2, f"the log has no END/REPORT lines:\n{log}"
    report_m = REPORT_LINE.match(lines[-1])
    assert report_m, f"the last line is not a REPORT line: {lines[-1]!r}\nlog:\n{log}"
    end_m = END_LINE.match(lines[-2])
    assert end_m, f"the line before REPORT is not an END line: {lines[-2]!r}\nlog:\n{log}"
    start_m = START_LINE.match(lines[0])
    body = lines[1:-2] if start_m else lines[:-2]
    starts = [l for l in lines[1:] if l.startswith("START RequestId:")]
    assert not starts, f"more than one START line:\n{log}"
    ids = {report_m["id"], end_m["id"]} | ({start_m["id"]} if start_m else set())
    assert len(ids) == 1, f"the START/END/REPORT lines name different requests: {ids}\n{log}"
    if request_id is not None:
        assert ids == {request_id}, f"log of {ids}, but the response's RequestId is {request_id}"
    report = {
        "duration": float(report_m["duration"]),
        "billed": int(report_m["billed"]),
        "memory": int(report_m["memory"]),
        "used": int(report_m["used"]),
        "init": float(report_m["init"]) if report_m["init"] is not None else None,
    }
    return ParsedLog(
        start=start_m.groupdict() if start_m else None,
        output="\n".join(body) + ("\n" if body else ""),
        end=end_m.groupdict(),
        report=report,
    )


def py_zip(source: str, module: str = "app", **more) -> bytes:
    """A zip holding `source` as `<module>.py` (plus `more` files)."""
    return make_zip({f"{module}.py": source, **more})


def pip_target(dest: str, *requirements: str) -> None:
    """`pip install --target dest` with the pip of the Python running the suite."""
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-compile", "--target", dest, *requirements],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, f"pip install {requirements} failed:\n{r.stdout}\n{r.stderr}"


# --------------------------------------------------------------------------------------
# The aws CLI
# --------------------------------------------------------------------------------------


class AwsCli:
    """The aws CLI (v1, from PyPI) on PATH, with credentials and region from the
    environment, an empty HOME, and --endpoint-url."""

    def __init__(self, endpoint: str, key: str, secret: str, home: str):
        self.aws = which_aws()
        self.endpoint = endpoint
        self.home = home
        self.env = clean_env(
            HOME=home,
            AWS_ACCESS_KEY_ID=key,
            AWS_SECRET_ACCESS_KEY=secret,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_PAGER="",
            AWS_MAX_ATTEMPTS="1",
        )

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(
            [self.aws, *args, "--endpoint-url", self.endpoint, "--output", "json"],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert r.returncode == 0, f"aws {' '.join(args)} -> {r.returncode}\n{r.stderr}"
        return r

    def json(self, *args: str):
        r = self.run(*args)
        return json.loads(r.stdout) if r.stdout.strip() else None
