"""Unmodified AWS runtime clients against Ember's Lambda Runtime API, in real sandboxes.

test_invoke.py already runs AWS's Python client (awslambdaric) and the bash+curl
bootstrap of AWS's tutorial. Here are two more, each used exactly as its documentation
says, in a custom runtime (provided.al2023) whose `bootstrap` is the client:

* the Rust `lambda_runtime` crate from crates.io: a tiny bootstrap binary built with
  cargo (a Cargo project this file writes under target/, so the build is reused across
  runs), dynamically linked against the host's glibc, which the sandbox binds read-only;
* the npm `aws-lambda-ric` package (AWS's Node.js Runtime Interface Client), installed
  with npm (its install scripts build curl, aws-lambda-cpp and a native addon from
  source) and run by the host's /usr/bin/node.

Neither client can be skipped: a missing toolchain or a failed install is a test failure
that says what is missing. Expected values are AWS Lambda's and the clients' own.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import time

import pytest

import embertest as et

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(REPO, "target")
RUST_DIR = os.path.join(CACHE, "compat-rust-bootstrap")
NODE_DIR = os.path.join(CACHE, "compat-node-ric")
NODE = "/usr/bin/node"

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
NODE_LOG_LINE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t%s\t%s\t%s"


@contextlib.contextmanager
def locked(directory: str):
    """An exclusive lock on `directory` (made if missing), so that two suites running at
    once do not build into the same cache together."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_if_changed(path: str, content: str) -> None:
    """Write `content` unless the file already holds it (an unchanged mtime keeps cargo's
    build fresh)."""
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == content:
                return
    except OSError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)


def run_tool(args: list, cwd: str, what: str, timeout: float, **env) -> str:
    """Run a build tool; fail the test (with its output's tail) when it fails."""
    started = time.monotonic()
    try:
        r = subprocess.run(args, cwd=cwd, env=et.clean_env(**env), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = ((e.stdout or b"") + (e.stderr or b"")).decode(errors="replace") \
            if isinstance(e.stdout, bytes) else f"{e.stdout or ''}{e.stderr or ''}"
        pytest.fail(f"{what} did not finish within {timeout:.0f}s: {' '.join(args)}\n"
                    f"{out[-6000:]}", pytrace=False)
    out = r.stdout + r.stderr
    if r.returncode != 0:
        pytest.fail(f"{what} failed (exit status {r.returncode}) after "
                    f"{time.monotonic() - started:.0f}s: {' '.join(args)} in {cwd}\n"
                    f"{out[-6000:]}", pytrace=False)
    return out


def zip_tree(root: str, prefix: str, skip=()) -> dict:
    """The files under `root` as a `make_zip` mapping named `prefix/...`: symbolic links
    stay links (node_modules/.bin holds links whose targets import relative paths),
    executables keep their exec bit, and the directories in `skip` (relative to `root`)
    are left out."""
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        keep = []
        for d in sorted(dirnames):
            rel = os.path.normpath(os.path.join(rel_dir, d))
            full = os.path.join(dirpath, d)
            if rel in skip:
                continue
            if os.path.islink(full):
                files[f"{prefix}/{rel}"] = ("symlink", os.readlink(full))
                continue
            keep.append(d)
        dirnames[:] = keep
        for fname in sorted(filenames):
            full = os.path.join(dirpath, fname)
            name = f"{prefix}/{os.path.normpath(os.path.join(rel_dir, fname))}"
            if os.path.islink(full):
                files[name] = ("symlink", os.readlink(full))
                continue
            with open(full, "rb") as f:
                data = f.read()
            files[name] = ("exec", data) if os.access(full, os.X_OK) else data
    return files


@pytest.fixture
def mk(lam, role, fn_name):
    """mk(zip mapping, **CreateFunction params) -> name (provided.al2023, handler
    "bootstrap" unless given); the functions are deleted afterwards."""
    made = []

    def make(files: dict, **kw):
        name = fn_name if not made else et.function_name(f"{fn_name[:40]}-{len(made)}")
        params = dict(Runtime="provided.al2023", Handler="bootstrap", Role=role, Timeout=10)
        params.update(kw)
        et.create_function(lam, name, et.make_zip(files), **params)
        made.append(name)
        return name

    yield make
    for name in made:
        try:
            lam.delete_function(FunctionName=name)
        except Exception:  # noqa: BLE001 - a test may have deleted it already
            pass


def assert_ok(inv: et.Invocation):
    assert inv.status == 200 and inv.function_error is None, inv.describe()


def assert_error(inv: et.Invocation, error_type: str | None) -> dict:
    """A function error: 200, X-Amz-Function-Error Unhandled, {errorType, errorMessage}
    (errorType exactly `error_type` unless None)."""
    assert inv.status == 200, inv.describe()
    assert inv.function_error == "Unhandled", inv.describe()
    doc = inv.json()
    assert isinstance(doc, dict), inv.describe()
    assert isinstance(doc.get("errorType"), str) and doc["errorType"], inv.describe()
    if error_type is not None:
        assert doc["errorType"] == error_type, inv.describe()
    assert isinstance(doc.get("errorMessage"), str), inv.describe()
    return doc


def is_cold(inv: et.Invocation) -> bool:
    return inv.parsed_log().report["init"] is not None


CLIENT_CONTEXT = {
    "client": {"installation_id": "inst-1", "app_title": "compat", "app_version_name": "1.0",
               "app_version_code": "1", "app_package_name": "dev.ember.compat"},
    "custom": {"k": "v ü"},
    "env": {"platform": "test"},
}


def b64json(doc) -> str:
    return base64.b64encode(json.dumps(doc).encode()).decode()


# The two builds (cargo, npm) take a minute or more each when cold and leave each other
# idle time (downloads, configure scripts), so the first test of this file starts every
# build that the selected tests need, side by side; each test waits for its own.
_BUILDERS: dict = {}  # fixture name -> the function that builds (filled in below)
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="compat-build")
_started: dict = {}


def build(fixture: str):
    if fixture not in _started:
        _started[fixture] = _pool.submit(_BUILDERS[fixture])
    return _started[fixture]


@pytest.fixture(scope="module", autouse=True)
def _start_builds(request):
    wanted = {f for item in request.session.items for f in getattr(item, "fixturenames", ())}
    for fixture in _BUILDERS:
        if fixture in wanted:
            build(fixture)
    yield
    _pool.shutdown(wait=True)


# The builds' futures: a test calls .result() itself, so that a failed build (a missing
# toolchain, a failed install) fails the test rather than erroring its setup.
@pytest.fixture(scope="module")
def rust_build() -> concurrent.futures.Future:
    return build("rust_build")


@pytest.fixture(scope="module")
def node_ric_build() -> concurrent.futures.Future:
    return build("node_ric_build")


# --------------------------------------------------------------------------------------
# Rust: the lambda_runtime crate
# --------------------------------------------------------------------------------------

RUST_CARGO_TOML = '''\
[package]
name = "ember-compat-bootstrap"
version = "0.0.0"
edition = "2021"
publish = false

[[bin]]
name = "bootstrap"
path = "src/main.rs"

[dependencies]
lambda_runtime = { version = "1", default-features = false }
serde_json = "1"
tokio = { version = "1", default-features = false, features = ["macros", "rt"] }

[profile.release]
strip = true
incremental = true
codegen-units = 16

# Not a member of Ember's workspace above it.
[workspace]
'''

# The handler of lambda_runtime's README, echoing what the crate read from the Runtime API.
RUST_MAIN = r'''use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let (payload, ctx) = event.into_parts();
    println!("rust handler got {payload}");
    match payload.get("fail").and_then(Value::as_str) {
        Some("diagnostic") => {
            return Err(Diagnostic {
                error_type: "PaymentDeclined".to_string(),
                error_message: "card 1234 declined \u{fc}".to_string(),
            })
        }
        Some("panic") => panic!("kaboom in the handler"),
        _ => {}
    }
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    Ok(json!({
        "event": payload,
        "request_id": ctx.request_id,
        "invoked_function_arn": ctx.invoked_function_arn,
        "deadline_in_ms": ctx.deadline as i64 - now_ms,
        "function_name": ctx.env_config.function_name,
        "memory": ctx.env_config.memory,
        "version": ctx.env_config.version,
        "log_group": ctx.env_config.log_group,
        "client_custom": ctx.client_context.as_ref().map(|c| c.custom.clone()),
        "client_installation_id": ctx.client_context.as_ref().map(|c| c.client.installation_id.clone()),
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(handler)).await
}
'''


def find_cargo() -> str:
    cargo = shutil.which("cargo") or os.path.expanduser("~/.cargo/bin/cargo")
    if not os.access(cargo, os.X_OK):
        pytest.fail("`cargo` is not on PATH (nor in ~/.cargo/bin): the lambda_runtime test "
                    "builds its bootstrap with cargo", pytrace=False)
    return cargo


def build_rust_bootstrap() -> bytes:
    """The bootstrap binary, built with `cargo build --release` in RUST_DIR (incremental:
    a warm rebuild takes about a second)."""
    cargo = find_cargo()
    with locked(RUST_DIR):
        write_if_changed(os.path.join(RUST_DIR, "Cargo.toml"), RUST_CARGO_TOML)
        write_if_changed(os.path.join(RUST_DIR, "src", "main.rs"), RUST_MAIN)
        target = os.path.join(RUST_DIR, "target")
        run_tool([cargo, "build", "--release", "--quiet"], RUST_DIR,
                 "building the lambda_runtime bootstrap", 900, CARGO_TARGET_DIR=target)
        with open(os.path.join(target, "release", "bootstrap"), "rb") as f:
            binary = f.read()
        lock = os.path.join(RUST_DIR, "Cargo.lock")
        versions = re.findall(r'name = "(lambda_runtime)"\nversion = "([^"]+)"',
                              open(lock).read()) if os.path.exists(lock) else []
    assert binary[:4] == b"\x7fELF", "cargo did not produce an ELF binary"
    print(f"lambda_runtime bootstrap: {len(binary)} bytes, {versions}")
    return binary


_BUILDERS["rust_build"] = build_rust_bootstrap


def test_rust_lambda_runtime_crate(lam, mk, rust_build, root_id):
    name = mk({"bootstrap": ("exec", rust_build.result())}, MemorySize=256)
    arn = f"arn:aws:lambda:us-east-1:{root_id}:function:{name}"
    event = {"hello": "rust ✓", "n": [1, 2.5, None, True], "nested": {"k": "日本"}}
    inv = et.invoke(lam, name, event)
    assert_ok(inv)
    got = inv.json()
    assert 5000 < got.pop("deadline_in_ms") <= 10000, inv.describe()
    assert got == {
        "event": event, "request_id": inv.request_id, "invoked_function_arn": arn,
        "function_name": name, "memory": 256, "version": "$LATEST",
        "log_group": f"/aws/lambda/{name}", "client_custom": None,
        "client_installation_id": None,
    }, inv.describe()
    log = inv.parsed_log()
    assert log.start == {"id": inv.request_id, "version": "$LATEST"}, inv.log
    assert log.report["memory"] == 256, inv.log
    assert log.report["init"] is not None, "the first invoke is a cold start:\n" + inv.log
    assert f"rust handler got {json.dumps(event, ensure_ascii=False, separators=(',', ':'))}" \
        in log.output.splitlines(), inv.log

    # The same process serves the next invocation (warm), with its own request id, and
    # gets the caller's ClientContext (the Lambda-Runtime-Client-Context header).
    second = et.invoke(lam, name, "[1,2,3]", ClientContext=b64json(CLIENT_CONTEXT))
    assert_ok(second)
    got = second.json()
    assert got["event"] == [1, 2, 3] and got["request_id"] == second.request_id, second.describe()
    assert got["client_custom"] == {"k": "v ü"}, second.describe()
    assert got["client_installation_id"] == "inst-1", second.describe()
    assert second.request_id != inv.request_id
    assert not is_cold(second), second.log


def test_rust_lambda_runtime_crate_errors(lam, mk, rust_build):
    """A handler's Err(Diagnostic) and a panic are posted by the crate to
    /runtime/invocation/{id}/error: the caller gets FunctionError Unhandled and the
    crate's {errorType, errorMessage}; the runtime goes on serving."""
    name = mk({"bootstrap": ("exec", rust_build.result())})
    inv = et.invoke(lam, name, {"fail": "diagnostic"})
    doc = assert_error(inv, "PaymentDeclined")
    assert doc == {"errorType": "PaymentDeclined", "errorMessage": "card 1234 declined ü"}, doc
    log = inv.parsed_log()
    assert 'rust handler got {"fail":"diagnostic"}' in log.output, inv.log

    inv = et.invoke(lam, name, {"fail": "panic"})
    doc = assert_error(inv, None)  # errorType: the Rust type name of the panic payload
    assert doc["errorMessage"] == "Lambda panicked: kaboom in the handler", doc
    assert "kaboom in the handler" in inv.parsed_log().output, inv.log  # the panic hook's line

    inv = et.invoke(lam, name, {"fine": True})
    assert_ok(inv)
    assert inv.json()["event"] == {"fine": True}
    assert not is_cold(inv), "the errors must not have cost the sandbox:\n" + inv.log


# --------------------------------------------------------------------------------------
# Node.js: the aws-lambda-ric npm package
# --------------------------------------------------------------------------------------

# aws-lambda-ric's install scripts build curl (autotools) and aws-lambda-cpp (cmake) from
# the sources it ships, then its native addon with node-gyp.
NODE_RIC_BUILD_TOOLS = ("npm", "make", "cmake", "autoreconf", "aclocal", "libtoolize", "gcc", "g++")

NODE_BOOTSTRAP = '''\
#!/bin/sh
cd "$LAMBDA_TASK_ROOT"
exec /usr/bin/node /var/task/node_modules/.bin/aws-lambda-ric "$_HANDLER"
'''

NODE_INDEX = '''\
const fs = require('fs');

let count = 0;
console.log('index.js loaded');

class OrderError extends Error {
  constructor(message) { super(message); this.name = 'OrderError'; }
}

exports.handler = async (event, context) => {
  count += 1;
  console.log('node ric got', JSON.stringify(event));
  if (event && event.fail) throw new OrderError(`order ${event.fail} rejected ü`);
  const remaining = context.getRemainingTimeInMillis();
  return {
    count,
    event,
    awsRequestId: context.awsRequestId,
    functionName: context.functionName,
    functionVersion: context.functionVersion,
    invokedFunctionArn: context.invokedFunctionArn,
    memoryLimitInMB: context.memoryLimitInMB,
    logGroupName: context.logGroupName,
    remainingOk: remaining > 5000 && remaining <= 10000,
    clientCustom: context.clientContext ? context.clientContext.custom : null,
    ric: JSON.parse(fs.readFileSync('/var/task/node_modules/aws-lambda-ric/package.json')).version,
  };
};
'''


def ric_addon(pkg: str) -> list:
    """The native addons (rapid-client.node) in an installed aws-lambda-ric, outside the
    build directories."""
    found = []
    for dirpath, dirnames, filenames in os.walk(pkg):
        dirnames[:] = [d for d in dirnames if d not in ("deps", "build", "src")]
        found += [os.path.join(dirpath, f) for f in filenames if f.endswith(".node")]
    return found


def install_node_ric() -> dict:
    """`npm install aws-lambda-ric` in NODE_DIR (kept for later runs once complete), as a
    `make_zip` mapping of node_modules without the package's build sources."""
    if not os.access(NODE, os.X_OK):
        pytest.fail(f"{NODE} is missing: the aws-lambda-ric test runs the host's Node.js",
                    pytrace=False)
    pkg = os.path.join(NODE_DIR, "node_modules", "aws-lambda-ric")
    with locked(NODE_DIR):
        if not (os.path.exists(os.path.join(NODE_DIR, ".complete")) and ric_addon(pkg)):
            missing = [t for t in NODE_RIC_BUILD_TOOLS if not shutil.which(t)]
            if missing:
                pytest.fail(
                    "cannot install aws-lambda-ric from the npm registry: its install scripts "
                    "build curl and aws-lambda-cpp from source and need "
                    f"{', '.join(NODE_RIC_BUILD_TOOLS)}; missing here: {', '.join(missing)} "
                    "(on Debian: apt-get install cmake autoconf automake libtool make g++)",
                    pytrace=False)
            shutil.rmtree(os.path.join(NODE_DIR, "node_modules"), ignore_errors=True)
            for stale in ("package-lock.json", ".complete"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(NODE_DIR, stale))
            write_if_changed(os.path.join(NODE_DIR, "package.json"), json.dumps(
                {"name": "ember-compat-node-ric", "version": "0.0.0", "private": True}) + "\n")
            # The addon must be built for /usr/bin/node (the sandbox's Node.js), from its
            # headers: node-gyp may download nothing (only package registries are reached).
            env = {"PATH": "/usr/bin:" + os.environ.get("PATH", "")}
            if os.path.exists("/usr/include/node/node_api.h"):
                env["npm_config_nodedir"] = "/usr"
            out = run_tool(["npm", "install", "--no-audit", "--no-fund", "aws-lambda-ric"],
                           NODE_DIR, "npm install aws-lambda-ric", 900, **env)
            if not ric_addon(pkg):
                pytest.fail("npm install aws-lambda-ric succeeded but built no native addon "
                            f"(rapid-client.node) in {pkg}; npm said:\n{out[-4000:]}",
                            pytrace=False)
            open(os.path.join(NODE_DIR, ".complete"), "w").close()
        with open(os.path.join(pkg, "package.json")) as f:
            version = json.load(f)["version"]
        files = zip_tree(os.path.join(NODE_DIR, "node_modules"), "node_modules",
                         skip={"aws-lambda-ric/deps", "aws-lambda-ric/build",
                               "aws-lambda-ric/src/native/build"})
    assert "node_modules/.bin/aws-lambda-ric" in files, sorted(files)[:50]
    print(f"aws-lambda-ric {version}: {len(files)} files")
    return files


_BUILDERS["node_ric_build"] = install_node_ric


def test_node_aws_lambda_ric(lam, mk, node_ric_build, root_id):
    files = dict(node_ric_build.result())
    files["bootstrap"] = ("exec", NODE_BOOTSTRAP)
    files["index.js"] = NODE_INDEX
    name = mk(files, Handler="index.handler", MemorySize=256)
    arn = f"arn:aws:lambda:us-east-1:{root_id}:function:{name}"
    event = {"hello": "node ric ✓", "n": [1, 2.5, None]}
    inv = et.invoke(lam, name, event)
    assert_ok(inv)
    got = inv.json()
    ric_version = got.pop("ric")
    assert got == {
        "count": 1, "event": event, "awsRequestId": inv.request_id, "functionName": name,
        "functionVersion": "$LATEST", "invokedFunctionArn": arn, "memoryLimitInMB": "256",
        "logGroupName": f"/aws/lambda/{name}", "remainingOk": True, "clientCustom": None,
    }, inv.describe()
    log = inv.parsed_log()
    assert log.start == {"id": inv.request_id, "version": "$LATEST"}, inv.log
    assert log.report["init"] is not None, "the first invoke is a cold start:\n" + inv.log
    assert "index.js loaded" in log.output, inv.log
    rid = re.escape(inv.request_id)
    assert re.search(r"(?m)^" + NODE_LOG_LINE % (rid, "INFO", re.escape(
        "node ric got " + json.dumps(event, ensure_ascii=False, separators=(",", ":")))) + "$",
        log.output), inv.log

    second = et.invoke(lam, name, {"again": 2}, ClientContext=b64json(CLIENT_CONTEXT))
    assert_ok(second)
    got = second.json()
    assert got["count"] == 2 and got["event"] == {"again": 2}, second.describe()
    assert got["awsRequestId"] == second.request_id != inv.request_id
    assert got["clientCustom"] == {"k": "v ü"}, second.describe()
    assert not is_cold(second), second.log
    assert "index.js loaded" not in second.log
    print(f"aws-lambda-ric {ric_version} served {name}")


def test_node_aws_lambda_ric_errors(lam, mk, node_ric_build):
    files = dict(node_ric_build.result())
    files["bootstrap"] = ("exec", NODE_BOOTSTRAP)
    files["index.js"] = NODE_INDEX
    name = mk(files, Handler="index.handler")
    inv = et.invoke(lam, name, {"fail": 17})
    doc = assert_error(inv, "OrderError")
    assert doc["errorMessage"] == "order 17 rejected ü", doc
    assert isinstance(doc.get("trace"), list) and doc["trace"], doc
    assert doc["trace"][0] == "OrderError: order 17 rejected ü", doc
    assert any("/var/task/index.js" in line for line in doc["trace"]), doc
    out = inv.parsed_log().output
    rid = re.escape(inv.request_id)
    assert re.search(NODE_LOG_LINE % (rid, "ERROR", "Invoke Error"), out), inv.log

    inv = et.invoke(lam, name, {"fine": True})
    assert_ok(inv)
    assert inv.json()["count"] == 2, inv.describe()
    assert not is_cold(inv), "the error must not have cost the sandbox:\n" + inv.log

    # A handler that does not exist: the client reports an init error through the
    # Runtime API (/runtime/init/error) and the caller gets it as the function's error.
    bad = mk(files, Handler="index.nothing")
    inv = et.invoke(lam, bad, {})
    doc = assert_error(inv, "Runtime.HandlerNotFound")
    assert "index.nothing is undefined or not exported" in doc["errorMessage"], doc
