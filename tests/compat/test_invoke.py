"""Synchronous Invoke with real sandboxes, driven by boto3's `invoke` (LogType Tail).

Every function here really runs: Python and Node.js handlers written as AWS documents
them, custom runtimes (a bash+curl `bootstrap` from AWS's tutorial, and AWS's own
awslambdaric vendored into the zip), and the error cases a Lambda user meets (exceptions,
init errors, timeouts, out of memory, crashes). Expected values are AWS Lambda's.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import math
import os
import re
import sys
import tempfile
import threading
import time

import pytest

import embertest as et

PY = et.PY_RUNTIME
NODE = et.NODE_RUNTIME

needs_python = pytest.mark.skipif(PY is None, reason="this host has no Python runtime")
needs_node = pytest.mark.skipif(NODE is None, reason="this host has no Node.js runtime")

NODE_LOG_LINE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t%s\t%s\t%s"


@pytest.fixture
def mk(lam, role, fn_name):
    """mk(files, **CreateFunction params) -> name: create a function in the root account
    (a fresh name each call) from a `make_zip` mapping."""
    made = []

    def make(files: dict, *, runtime=PY, handler="app.handler", client=None, role_arn=None, **kw):
        name = fn_name if not made else et.function_name(f"{fn_name[:40]}-{len(made)}")
        client = client or lam
        et.create_function(client, name, et.make_zip(files), Runtime=runtime,
                           Handler=handler, Role=role_arn or role, **kw)
        made.append((client, name))
        return name

    yield make
    for client, name in made:  # free the functions' sandboxes for the tests that follow
        try:
            client.delete_function(FunctionName=name)
        except Exception:  # noqa: BLE001 - a test may have deleted it already
            pass


def assert_server_ok(server):
    assert server.alive(), f"the server died; stderr:\n{server.stderr()}"
    status, body = server.health()
    assert status == 200, (status, body)


def assert_ok(inv: et.Invocation):
    assert inv.status == 200 and inv.function_error is None, inv.describe()


def assert_error(inv: et.Invocation, error_type: str) -> dict:
    """A function error: 200, X-Amz-Function-Error Unhandled, Lambda's error payload."""
    assert inv.status == 200, inv.describe()
    assert inv.function_error == "Unhandled", inv.describe()
    doc = inv.json()
    assert isinstance(doc, dict), inv.describe()
    assert doc.get("errorType") == error_type, inv.describe()
    assert isinstance(doc.get("errorMessage"), str), inv.describe()
    return doc


def is_cold(inv: et.Invocation) -> bool:
    return inv.parsed_log().report["init"] is not None


# --------------------------------------------------------------------------------------
# Python
# --------------------------------------------------------------------------------------

DOCS_PYTHON = '''\
import json

def lambda_handler(event, context):
    # TODO implement
    return {
        'statusCode': 200,
        'body': json.dumps('Hello from Lambda!')
    }
'''


@needs_python
def test_python_documentation_example(lam, mk):
    name = mk({"lambda_function.py": DOCS_PYTHON}, handler="lambda_function.lambda_handler")
    inv = et.invoke(lam, name, {"key1": "value1", "key2": "value2", "key3": "value3"})
    assert_ok(inv)
    assert inv.json() == {"statusCode": 200, "body": '"Hello from Lambda!"'}
    assert inv.executed_version == "$LATEST"
    assert inv.headers.get("content-type", "").startswith("application/json")
    assert inv.log_result_present
    log = inv.parsed_log()
    assert log.start == {"id": inv.request_id, "version": "$LATEST"}
    assert log.report["init"] is not None, "the first invoke is a cold start:\n" + inv.log


ECHO_PY = '''\
def handler(event, context):
    return {"type": type(event).__name__, "event": event}
'''


@needs_python
@pytest.mark.parametrize("payload, event", [
    ({"text": "héllo wörld ✓ 日本語 🚀", "nested": {"list": [1, 2.5, None, True, "ü"]}},
     {"text": "héllo wörld ✓ 日本語 🚀", "nested": {"list": [1, 2.5, None, True, "ü"]}}),
    ('"just a string"', "just a string"),
    ("42", 42),
    ("[1, \"two\", {\"three\": 3}]", [1, "two", {"three": 3}]),
    ("null", None),
    ("true", True),
    (" \n{\"padded\": 1}\n ", {"padded": 1}),
], ids=["unicode-object", "string", "number", "list", "null", "bool", "whitespace"])
def test_python_json_in_and_out(lam, mk, payload, event):
    name = mk({"app.py": ECHO_PY})
    raw = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    inv = et.invoke(lam, name, raw.encode())
    assert_ok(inv)
    assert inv.json() == {"type": type(event).__name__, "event": event}


@needs_python
def test_python_empty_payload_is_an_empty_object(lam, mk):
    name = mk({"app.py": ECHO_PY})
    assert et.invoke(lam, name).json() == {"type": "dict", "event": {}}
    assert et.invoke(lam, name, b"").json() == {"type": "dict", "event": {}}


@needs_python
@pytest.mark.parametrize("ret, expected", [
    ("None", b"null"),
    ("'text ü'", None),
    ("[1, 2, 3]", b"[1, 2, 3]"),
    ("3.5", b"3.5"),
], ids=["none", "string", "list", "float"])
def test_python_return_values(lam, mk, ret, expected):
    name = mk({"app.py": f"def handler(event, context):\n    return {ret}\n"})
    inv = et.invoke(lam, name, {})
    assert_ok(inv)
    if expected is None:
        assert json.loads(inv.payload) == "text ü"
    else:
        assert json.loads(inv.payload) == json.loads(expected)


@needs_python
def test_python_unserialisable_result_is_a_marshal_error(lam, mk):
    name = mk({"app.py": "def handler(event, context):\n    return {1, 2}\n"})
    doc = assert_error(et.invoke(lam, name, {}), "Runtime.MarshalError")
    assert doc["errorMessage"].startswith("Unable to marshal response:"), doc
    assert "set" in doc["errorMessage"], doc


CONTEXT_PY = '''\
import os

def handler(event, context):
    remaining = context.get_remaining_time_in_millis()
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": remaining,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
    }
'''


@needs_python
def test_python_context_and_environment(lam, mk, root_id):
    name = mk({"app.py": CONTEXT_PY}, Timeout=7, MemorySize=256,
              Environment={"Variables": {"GREETING": "hello", "UNICODE_VALUE": "ünï ✓"}})
    arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]
    inv = et.invoke(lam, name, {})
    assert_ok(inv)
    got = inv.json()
    assert got["aws_request_id"] == inv.request_id
    assert got["function_name"] == name
    assert got["function_version"] == "$LATEST"
    assert got["invoked_function_arn"] == arn == f"arn:aws:lambda:us-east-1:{root_id}:function:{name}"
    assert got["memory_limit_in_mb"] == "256"
    assert got["log_group_name"] == f"/aws/lambda/{name}"
    assert isinstance(got["log_stream_name"], str) and got["log_stream_name"], got
    assert 5000 < got["remaining"] <= 7000, got["remaining"]
    assert got["cwd"] == "/var/task"
    env = got["env"]
    expected = {
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": "us-east-1",
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "_HANDLER": "app.handler",
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "GREETING": "hello",
        "UNICODE_VALUE": "ünï ✓",
    }
    assert {k: env.get(k) for k in expected} == expected
    assert env.get("TZ"), env
    assert env.get("AWS_LAMBDA_LOG_STREAM_NAME") == got["log_stream_name"]
    # Nothing of the server's own environment (its root keys, EMBER_*) reaches the function.
    assert not [k for k in env if k.startswith("EMBER_")], env
    assert et.ROOT_ACCESS_KEY_ID not in json.dumps(env)
    assert et.ROOT_SECRET_ACCESS_KEY not in json.dumps(env)


CLIENT_CONTEXT_PY = '''\
def handler(event, context):
    cc = context.client_context
    if cc is None:
        return None
    client = getattr(cc, "client", None)
    return {
        "custom": getattr(cc, "custom", "<no attribute custom>"),
        "env": getattr(cc, "env", "<no attribute env>"),
        "installation_id": getattr(client, "installation_id", "<no attribute client.installation_id>"),
    }
'''


@needs_python
def test_python_client_context(lam, mk):
    """ClientContext (base64 JSON) reaches the handler as context.client_context, an
    object with .custom, .env and .client (as in AWS's Python runtime)."""
    name = mk({"app.py": CLIENT_CONTEXT_PY})
    cc = {"custom": {"k": "v ü"}, "env": {"platform": "test"},
          "client": {"installation_id": "inst-1", "app_title": "t", "app_version_name": "1",
                     "app_version_code": "1", "app_package_name": "p"}}
    inv = et.invoke(lam, name, {}, ClientContext=base64.b64encode(json.dumps(cc).encode()).decode())
    assert_ok(inv)
    assert inv.json() == {"custom": {"k": "v ü"}, "env": {"platform": "test"},
                          "installation_id": "inst-1"}
    inv = et.invoke(lam, name, {})
    assert_ok(inv)
    assert inv.json() is None


@needs_python
def test_python_client_context_not_base64_json_is_refused(lam_raw, mk):
    name = mk({"app.py": ECHO_PY})
    with pytest.raises(lam_raw.exceptions.InvalidRequestContentException) as ei:
        lam_raw.invoke(FunctionName=name, Payload=b"{}", ClientContext="%%% not base64 %%%")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@needs_python
def test_python_nested_package_handler(lam, mk):
    name = mk({
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "",
        "pkg/sub/mod.py": "from helpers import shout\n\ndef fn(event, context):\n    return shout(event['w'])\n",
        "helpers.py": "def shout(w):\n    return w.upper() + '!'\n",
    }, handler="pkg.sub.mod.fn")
    inv = et.invoke(lam, name, {"w": "nested"})
    assert_ok(inv)
    assert inv.json() == "NESTED!"


LOGGING_PY = '''\
import sys

def handler(event, context):
    print("hello from print", event["n"])
    print("ünïcode ✓ 日本語")
    sys.stderr.write("to stderr\\n")
    return "done"
'''


@needs_python
def test_python_output_in_tail_log_with_start_end_report(lam, mk):
    name = mk({"app.py": LOGGING_PY}, MemorySize=192)
    first = et.invoke(lam, name, {"n": 1})
    second = et.invoke(lam, name, {"n": 2})
    for n, inv in ((1, first), (2, second)):
        assert_ok(inv)
        assert inv.json() == "done"
        log = inv.parsed_log()
        assert log.start == {"id": inv.request_id, "version": "$LATEST"}, inv.log
        lines = log.output.splitlines()
        # stdout and stderr as written, in order (the runtime's stdout is unbuffered).
        assert lines == [f"hello from print {n}", "ünïcode ✓ 日本語", "to stderr"], inv.log
        r = log.report
        assert r["memory"] == 192, inv.log
        assert 0 < r["used"] <= 192, inv.log
        assert r["billed"] >= 1 and r["billed"] >= math.floor(r["duration"]), inv.log
        assert r["duration"] < 5000, inv.log
    assert first.request_id != second.request_id
    assert first.parsed_log().report["init"] is not None, "first invoke must be cold:\n" + first.log
    assert second.parsed_log().report["init"] is None, "second invoke must be warm:\n" + second.log
    assert "Init Duration" not in second.log


@needs_python
def test_python_logging_module_lines_carry_level_time_and_request_id(lam, mk):
    """AWS's documented Python logging: with the root logger at INFO, logger.info('x')
    appears as `[INFO]\\t<ISO time>\\t<request id>\\tx`."""
    name = mk({"app.py": (
        "import logging\nlogger = logging.getLogger()\nlogger.setLevel('INFO')\n\n"
        "def handler(event, context):\n    logger.info('Some log message %s', 7)\n    return 1\n")})
    inv = et.invoke(lam, name, {})
    assert_ok(inv)
    pattern = (r"(?m)^\[INFO\]\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t%s\tSome log message 7$"
               % re.escape(inv.request_id))
    assert re.search(pattern, inv.log), inv.log


@needs_python
def test_tail_is_the_last_4_kb_of_the_log(lam, mk):
    name = mk({"app.py": (
        "def handler(event, context):\n"
        "    for i in range(400):\n        print('line %04d ' % i + 'x' * 40)\n"
        "    return len(event)\n")})
    inv = et.invoke(lam, name, {"a": 1})
    assert_ok(inv)
    raw = base64.b64decode(inv.headers["x-amz-log-result"])
    assert len(raw) <= 4096, len(raw)
    assert len(raw) > 3000, len(raw)
    log = inv.parsed_log()
    assert log.start is None, "the START line should have been cut off:\n" + inv.log[:300]
    assert "line 0399 " in log.output
    assert "line 0000 " not in inv.log


@needs_python
def test_log_type_none_has_no_log_result(lam, mk):
    name = mk({"app.py": LOGGING_PY})
    inv = et.invoke(lam, name, {"n": 0}, tail=False)
    assert_ok(inv)
    assert not inv.log_result_present
    assert "x-amz-log-result" not in inv.headers


@needs_python
def test_request_id_header_matches_context_and_log(lam, mk):
    name = mk({"app.py": "def handler(event, context):\n    print('rid', context.aws_request_id)\n"
                         "    return context.aws_request_id\n"})
    seen = set()
    for _ in range(3):
        inv = et.invoke(lam, name, {})
        assert_ok(inv)
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", inv.request_id)
        assert inv.json() == inv.request_id
        assert f"rid {inv.request_id}\n" in inv.parsed_log().output, inv.log
        seen.add(inv.request_id)
    assert len(seen) == 3


# --------------------------------------------------------------------------------------
# Python function errors and init errors
# --------------------------------------------------------------------------------------


@needs_python
def test_python_exception_payload(lam, mk):
    name = mk({"app.py": (
        "class PaymentDeclined(Exception):\n    pass\n\n"
        "def helper(kind):\n"
        "    if kind == 'value':\n        raise ValueError('bad value ü')\n"
        "    raise PaymentDeclined('card 1234 declined')\n\n"
        "def handler(event, context):\n    print('about to fail')\n    return helper(event['kind'])\n")})
    inv = et.invoke(lam, name, {"kind": "value"})
    doc = assert_error(inv, "ValueError")
    assert doc["errorMessage"] == "bad value ü"
    assert isinstance(doc["stackTrace"], list) and doc["stackTrace"], doc
    trace = "".join(doc["stackTrace"])
    assert "/var/task/app.py" in trace and "helper" in trace, trace
    assert "bootstrap" not in trace, "the runtime's own frames leak into stackTrace: " + trace
    log = inv.parsed_log()
    assert "about to fail" in log.output
    assert "[ERROR] ValueError: bad value ü" in log.output, inv.log

    inv2 = et.invoke(lam, name, {"kind": "custom"})
    doc = assert_error(inv2, "PaymentDeclined")
    assert doc["errorMessage"] == "card 1234 declined"
    # A handled function error does not cost the sandbox: the next invoke is warm.
    assert not is_cold(inv2), inv2.log


@pytest.mark.parametrize("files, handler, error_type, message", [
    ({"app.py": "import nonexistent_module_xyz\n\ndef handler(e, c):\n    return 1\n"}, "app.handler",
     "Runtime.ImportModuleError", "Unable to import module 'app': No module named 'nonexistent_module_xyz'"),
    ({"app.py": "def handler(e, c):\n    return 1\n"}, "missing.handler",
     "Runtime.ImportModuleError", "Unable to import module 'missing': No module named 'missing'"),
    ({"app.py": "def handler(e, c):\n    return 1\n"}, "app.nope",
     "Runtime.HandlerNotFound", "Handler 'nope' missing on module 'app'"),
    ({"app.py": "def handler(e, c)\n    return 1\n"}, "app.handler",
     "Runtime.UserCodeSyntaxError", "Syntax error in module 'app'"),
    ({"app.py": "raise RuntimeError('no config at import')\n\ndef handler(e, c):\n    return 1\n"}, "app.handler",
     "RuntimeError", "no config at import"),
    ({"app.py": "def handler(e, c):\n    return 1\n"}, "app",
     "Runtime.MalformedHandlerName", "Bad handler 'app'"),
], ids=["import-error", "missing-module", "handler-not-found", "syntax-error", "raise-at-import",
        "malformed-handler"])
@needs_python
def test_python_init_errors(lam, mk, server, files, handler, error_type, message):
    name = mk(files, handler=handler)
    for _ in range(2):  # a failed init is not kept: the second invoke fails the same way
        inv = et.invoke(lam, name, {})
        doc = assert_error(inv, error_type)
        assert doc["errorMessage"].startswith(message), doc
        assert error_type in inv.log, inv.log
    assert_server_ok(server)


# --------------------------------------------------------------------------------------
# Timeouts, memory, crashes
# --------------------------------------------------------------------------------------

SLEEPY_PY = '''\
import time
count = 0

def handler(event, context):
    global count
    count += 1
    print("sleeping", event.get("sleep", 0))
    time.sleep(event.get("sleep", 0))
    return {"count": count}
'''


@needs_python
def test_timeout(lam, mk, server):
    name = mk({"app.py": SLEEPY_PY}, Timeout=1)
    assert_ok(et.invoke(lam, name, {"sleep": 0}))  # a warm sandbox to time out in
    inv = et.invoke(lam, name, {"sleep": 3})
    doc = assert_error(inv, "Sandbox.Timedout")
    assert doc["errorMessage"] == f"RequestId: {inv.request_id} Error: Task timed out after 1.00 seconds", doc
    assert inv.elapsed < 2.5, f"the invoke took {inv.elapsed:.2f}s with Timeout=1"
    log = inv.parsed_log()
    assert f"{inv.request_id} Task timed out after 1.00 seconds" in log.output, inv.log
    assert "sleeping 3" in log.output
    assert 900 <= log.report["duration"] < 2500, inv.log
    # The timed-out sandbox is gone: the next invoke is a cold start (fresh module state).
    nxt = et.invoke(lam, name, {"sleep": 0})
    assert_ok(nxt)
    assert nxt.json() == {"count": 1}
    assert is_cold(nxt), nxt.log
    assert_server_ok(server)


@needs_python
def test_out_of_memory(lam, mk, server):
    name = mk({"app.py": (
        "def handler(event, context):\n"
        "    if event.get('mb'):\n"
        "        data = b'\\x01' * (event['mb'] << 20)\n"
        "        return len(data)\n"
        "    return 'small'\n")}, MemorySize=128)
    inv = et.invoke(lam, name, {"mb": 300})
    doc = assert_error(inv, "Runtime.OutOfMemory")
    assert doc["errorMessage"].startswith(f"RequestId: {inv.request_id} Error: Runtime exited with error"), doc
    log = inv.parsed_log()
    assert log.report["memory"] == 128
    assert log.report["used"] <= 128 + 8, inv.log
    assert_server_ok(server)
    nxt = et.invoke(lam, name, {})
    assert_ok(nxt)
    assert nxt.json() == "small"
    assert is_cold(nxt), nxt.log


@needs_python
def test_os_exit_is_a_runtime_exit_error(lam, mk, server):
    name = mk({"app.py": (
        "import os\n\ndef handler(event, context):\n"
        "    if event.get('exit') is not None:\n        print('exiting'); os._exit(event['exit'])\n"
        "    return 'alive'\n")})
    inv = et.invoke(lam, name, {"exit": 3})
    doc = assert_error(inv, "Runtime.ExitError")
    assert doc["errorMessage"] == f"RequestId: {inv.request_id} Error: Runtime exited with error: exit status 3", doc
    # What the handler printed before it exited is in the log.
    assert "exiting" in inv.parsed_log().output.splitlines(), inv.log
    nxt = et.invoke(lam, name, {})
    assert_ok(nxt)
    assert nxt.json() == "alive" and is_cold(nxt), nxt.describe()
    assert_server_ok(server)


@needs_python
def test_response_over_6_mb_is_a_function_error(lam, mk, server):
    name = mk({"app.py": "def handler(event, context):\n    return 'x' * event['n']\n"}, MemorySize=512)
    inv = et.invoke(lam, name, {"n": 7 * 1024 * 1024})
    assert_error(inv, "Function.ResponseSizeTooLarge")
    ok = et.invoke(lam, name, {"n": 5 * 1024 * 1024})
    assert_ok(ok)
    assert len(ok.payload) == 5 * 1024 * 1024 + 2
    assert_server_ok(server)


# --------------------------------------------------------------------------------------
# Request handling: DryRun, bad payloads, qualifiers, missing functions
# --------------------------------------------------------------------------------------

COUNTER_PY = '''\
import os
count = 0

def handler(event, context):
    global count
    count += 1
    first = not os.path.exists("/tmp/seen")
    open("/tmp/seen", "w").close()
    return {"count": count, "pid": os.getpid(), "fresh_tmp": first, "version": "v1"}
'''


@needs_python
def test_dry_run(lam, mk):
    name = mk({"app.py": COUNTER_PY})
    resp = lam.invoke(FunctionName=name, InvocationType="DryRun", Payload=b'{"a": 1}')
    assert resp["StatusCode"] == 204
    assert resp["Payload"].read() == b""
    assert "FunctionError" not in resp
    inv = et.invoke(lam, name, {})
    assert_ok(inv)
    assert inv.json()["count"] == 1, "DryRun must not run the function"


@needs_python
def test_dry_run_of_missing_function_is_not_found(lam, fn_name):
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=fn_name, InvocationType="DryRun")


@needs_python
@pytest.mark.parametrize("payload", [b"{not json", b'{"a": 1', b"\xff\xfe", b"undefined"],
                         ids=["garbage", "truncated", "binary", "bare-word"])
def test_invalid_json_payload_is_refused(lam, mk, payload):
    name = mk({"app.py": COUNTER_PY})
    with pytest.raises(lam.exceptions.InvalidRequestContentException) as ei:
        lam.invoke(FunctionName=name, Payload=payload)
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    inv = et.invoke(lam, name, {})
    assert inv.json()["count"] == 1, "a refused payload must not run the function"


@needs_python
def test_payload_size_limit(lam, mk):
    name = mk({"app.py": "def handler(event, context):\n    return len(event)\n"})
    limit = et.MAX_REQUEST_BYTES  # 6 MB = 6291456 bytes
    at_limit = b'"' + b"a" * (limit - 2) + b'"'
    assert len(at_limit) == limit
    inv = et.invoke(lam, name, at_limit, tail=False)
    assert_ok(inv)
    assert inv.json() == limit - 2
    over = b'"' + b"a" * (limit - 1) + b'"'
    with pytest.raises(lam.exceptions.RequestTooLargeException) as ei:
        lam.invoke(FunctionName=name, Payload=over)
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


@needs_python
def test_qualifiers(lam, mk, root_id):
    name = mk({"app.py": ECHO_PY})
    arn = f"arn:aws:lambda:us-east-1:{root_id}:function:{name}"
    for ref, qualifier in ((name, "$LATEST"), (arn, None), (f"{arn}:$LATEST", None),
                           (f"{root_id}:function:{name}", None)):
        kw = {"Qualifier": qualifier} if qualifier else {}
        inv = et.invoke(lam, ref, {"q": 1}, **kw)
        assert_ok(inv)
        assert inv.json() == {"type": "dict", "event": {"q": 1}}
        assert inv.executed_version == "$LATEST"
    for qualifier in ("1", "prod"):
        with pytest.raises(lam.exceptions.ResourceNotFoundException) as ei:
            lam.invoke(FunctionName=name, Qualifier=qualifier, Payload=b"{}")
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=f"{arn}:7", Payload=b"{}")


def test_missing_function_is_not_found(lam, fn_name, root_id):
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as ei:
        lam.invoke(FunctionName=fn_name, Payload=b"{}")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert fn_name in ei.value.response["Error"]["Message"]


@needs_python
def test_event_invocation_type_answers_202(lam, mk):
    # The rest of asynchronous invocation is in test_async_invoke.py.
    name = mk({"app.py": COUNTER_PY})
    r = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    assert r["StatusCode"] == 202
    assert r["Payload"].read() == b""


# --------------------------------------------------------------------------------------
# Reuse and updates
# --------------------------------------------------------------------------------------


@needs_python
def test_warm_reuse_keeps_module_state_and_tmp(lam, mk):
    name = mk({"app.py": COUNTER_PY})
    invs = [et.invoke(lam, name, {}) for _ in range(3)]
    for inv in invs:
        assert_ok(inv)
    got = [inv.json() for inv in invs]
    assert [g["count"] for g in got] == [1, 2, 3], got
    assert [g["fresh_tmp"] for g in got] == [True, False, False], got
    assert len({g["pid"] for g in got}) == 1, got
    assert [is_cold(inv) for inv in invs] == [True, False, False], [inv.log for inv in invs]


@needs_python
def test_update_code_makes_the_next_invoke_cold_with_the_new_code(lam, mk):
    name = mk({"app.py": COUNTER_PY})
    assert et.invoke(lam, name, {}).json()["count"] == 1
    assert et.invoke(lam, name, {}).json()["count"] == 2
    lam.update_function_code(FunctionName=name, ZipFile=et.make_zip(
        {"app.py": COUNTER_PY.replace('"v1"', '"v2"')}))
    inv = et.invoke(lam, name, {})
    assert_ok(inv)
    assert inv.json()["version"] == "v2" and inv.json()["count"] == 1, inv.json()
    assert is_cold(inv), inv.log
    assert not is_cold(et.invoke(lam, name, {}))


@needs_python
def test_update_configuration_makes_the_next_invoke_cold_with_the_new_config(lam, mk):
    name = mk({"app.py": CONTEXT_PY}, Environment={"Variables": {"STAGE": "one"}})
    first = et.invoke(lam, name, {})
    assert first.json()["env"]["STAGE"] == "one"
    assert not is_cold(et.invoke(lam, name, {}))
    lam.update_function_configuration(FunctionName=name, MemorySize=320,
                                      Environment={"Variables": {"STAGE": "two"}})
    inv = et.invoke(lam, name, {})
    assert_ok(inv)
    got = inv.json()
    assert got["env"]["STAGE"] == "two", got["env"]
    assert got["memory_limit_in_mb"] == "320"
    assert got["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "320"
    log = inv.parsed_log()
    assert log.report["memory"] == 320 and log.report["init"] is not None, inv.log


@needs_python
def test_concurrent_invokes_all_succeed(lam, mk):
    name = mk({"app.py": (
        "import time\n\ndef handler(event, context):\n"
        "    time.sleep(1)\n    return {'i': event['i']}\n")}, Timeout=30)
    start = threading.Barrier(10)

    def one(i):
        start.wait()
        return et.invoke(lam, name, {"i": i})

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(10)))
    elapsed = time.monotonic() - t0
    for i, inv in enumerate(results):
        assert_ok(inv)
        assert inv.json()["i"] == i
        inv.parsed_log()
    assert len({inv.request_id for inv in results}) == 10
    # Ten one-second invocations ran side by side, each in its own sandbox.
    assert elapsed < 6, f"10 concurrent 1 s invokes took {elapsed:.1f}s"


# --------------------------------------------------------------------------------------
# Node.js
# --------------------------------------------------------------------------------------

DOCS_NODE_ESM = '''\
export const handler = async (event) => {
  // TODO implement
  const response = {
    statusCode: 200,
    body: JSON.stringify('Hello from Lambda!'),
  };
  return response;
};
'''

DOCS_NODE_CALLBACK = '''\
console.log('Loading function');

exports.handler = function(event, context, callback) {
    console.log('value1 =', event.key1);
    console.log('value2 =', event.key2);
    console.log('value3 =', event.key3);
    callback(null, event.key1);  // Echo back the first key value
    //callback('Something went wrong');
};
'''


@needs_node
def test_node_esm_documentation_example(lam, mk):
    name = mk({"index.mjs": DOCS_NODE_ESM}, runtime=NODE, handler="index.handler")
    inv = et.invoke(lam, name, {"key1": "value1"})
    assert_ok(inv)
    assert inv.json() == {"statusCode": 200, "body": '"Hello from Lambda!"'}
    assert is_cold(inv), inv.log


@needs_node
def test_node_commonjs_callback_handler_and_console_log(lam, mk):
    name = mk({"index.js": DOCS_NODE_CALLBACK}, runtime=NODE, handler="index.handler")
    event = {"key1": "value1", "key2": "value2", "key3": "value3"}
    first = et.invoke(lam, name, event)
    assert_ok(first)
    assert first.json() == "value1"
    out = first.parsed_log().output
    rid = re.escape(first.request_id)
    for n in (1, 2, 3):
        assert re.search(r"(?m)^" + NODE_LOG_LINE % (rid, "INFO", f"value{n} = value{n}") + "$", out), first.log
    assert "Loading function" in first.log
    second = et.invoke(lam, name, {"key1": "ü ✓ 日本"})
    assert_ok(second)
    assert second.json() == "ü ✓ 日本"
    assert not is_cold(second), second.log
    assert "Loading function" not in second.log


@needs_node
def test_node_json_and_context(lam, mk, root_id):
    name = mk({"index.js": '''\
let count = 0;
exports.handler = async (event, context) => {
  count += 1;
  return {
    count,
    event,
    awsRequestId: context.awsRequestId,
    functionName: context.functionName,
    functionVersion: context.functionVersion,
    invokedFunctionArn: context.invokedFunctionArn,
    memoryLimitInMB: context.memoryLimitInMB,
    logGroupName: context.logGroupName,
    logStreamName: context.logStreamName,
    remaining: context.getRemainingTimeInMillis(),
    cwd: process.cwd(),
    env: { name: process.env.AWS_LAMBDA_FUNCTION_NAME, region: process.env.AWS_REGION,
           api: process.env.AWS_LAMBDA_RUNTIME_API, handler: process.env._HANDLER,
           root: process.env.LAMBDA_TASK_ROOT, mine: process.env.MY_VAR },
  };
};
'''}, runtime=NODE, handler="index.handler", Timeout=5, MemorySize=256,
        Environment={"Variables": {"MY_VAR": "node ✓"}})
    event = {"text": "héllo 🚀", "n": [1, 2.5, None]}
    inv = et.invoke(lam, name, event)
    assert_ok(inv)
    got = inv.json()
    assert got["event"] == event
    assert got["awsRequestId"] == inv.request_id
    assert got["functionName"] == name
    assert got["functionVersion"] == "$LATEST"
    assert got["invokedFunctionArn"] == f"arn:aws:lambda:us-east-1:{root_id}:function:{name}"
    assert got["memoryLimitInMB"] == "256"
    assert got["logGroupName"] == f"/aws/lambda/{name}"
    assert got["logStreamName"]
    assert 3000 < got["remaining"] <= 5000, got
    assert got["cwd"] == "/var/task"
    assert got["env"] == {"name": name, "region": "us-east-1", "api": "127.0.0.1:9001",
                          "handler": "index.handler", "root": "/var/task", "mine": "node ✓"}
    assert et.invoke(lam, name, {}).json()["count"] == 2


@needs_node
def test_node_errors(lam, mk):
    name = mk({"index.mjs": '''\
class OrderError extends Error {
  constructor(message) { super(message); this.name = 'OrderError'; }
}
export const handler = async (event) => {
  console.log('failing with', event.kind);
  if (event.kind === 'error') throw new Error('boom ü');
  if (event.kind === 'custom') throw new OrderError('order 17 rejected');
  return 'fine';
};
'''}, runtime=NODE, handler="index.handler")
    inv = et.invoke(lam, name, {"kind": "error"})
    doc = assert_error(inv, "Error")
    assert doc["errorMessage"] == "boom ü"
    assert isinstance(doc["trace"], list) and doc["trace"][0] == "Error: boom ü", doc
    assert any("/var/task/index.mjs" in line for line in doc["trace"]), doc
    out = inv.parsed_log().output
    assert re.search(NODE_LOG_LINE % (re.escape(inv.request_id), "INFO", "failing with error"), out), inv.log
    assert re.search(NODE_LOG_LINE % (re.escape(inv.request_id), "ERROR", "Invoke Error"), out), inv.log
    doc = assert_error(et.invoke(lam, name, {"kind": "custom"}), "OrderError")
    assert doc["errorMessage"] == "order 17 rejected"
    assert_ok(et.invoke(lam, name, {"kind": "none"}))

    cb = mk({"index.js": "exports.handler = (event, context, callback) => {\n"
                         "  callback(new TypeError('callback failure'));\n};\n"},
            runtime=NODE, handler="index.handler")
    doc = assert_error(et.invoke(lam, cb, {}), "TypeError")
    assert doc["errorMessage"] == "callback failure"


@needs_node
@pytest.mark.parametrize("files, handler, error_type, message", [
    ({"index.js": "exports.handler = async () => 1;\n"}, "missing.handler",
     "Runtime.ImportModuleError", "Error: Cannot find module 'missing'"),
    ({"index.js": "exports.other = async () => 1;\n"}, "index.handler",
     "Runtime.HandlerNotFound", "index.handler is undefined or not exported"),
    ({"index.js": "exports.handler = async () => {\n  return 1 +;\n};\n"}, "index.handler",
     "Runtime.UserCodeSyntaxError", "SyntaxError: "),
    ({"index.js": "require('no-such-package-xyz');\nexports.handler = async () => 1;\n"}, "index.handler",
     "Runtime.ImportModuleError", "Error: Cannot find module 'no-such-package-xyz'"),
], ids=["missing-module", "handler-not-found", "syntax-error", "missing-dependency"])
def test_node_init_errors(lam, mk, files, handler, error_type, message):
    name = mk(files, runtime=NODE, handler=handler)
    inv = et.invoke(lam, name, {})
    doc = assert_error(inv, error_type)
    assert doc["errorMessage"].startswith(message), doc
    assert error_type in inv.log, inv.log


# --------------------------------------------------------------------------------------
# Custom runtimes
# --------------------------------------------------------------------------------------

# AWS's custom runtime tutorial (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-walkthrough.html).
TUTORIAL_BOOTSTRAP = '''\
#!/bin/bash
set -euo pipefail

# Initialization - load function handler
source $LAMBDA_TASK_ROOT/"$(echo $_HANDLER | cut -d. -f1).sh"

# Processing
while true
do
  HEADERS="$(mktemp)"
  # Get an event. The HTTP request will block until one is received
  EVENT_DATA=$(curl -sS -LD "$HEADERS" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")

  # Extract request ID by scraping response headers received above
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)

  # Run the handler function from the script
  RESPONSE=$($(echo "$_HANDLER" | cut -d. -f2) "$EVENT_DATA")

  # Send the response
  curl -sS "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$REQUEST_ID/response"  -d "$RESPONSE"
done
'''

TUTORIAL_FUNCTION = '''\
function handler () {
  EVENT_DATA=$1
  echo "$EVENT_DATA" 1>&2;
  RESPONSE="Echoing request: '$EVENT_DATA'"

  echo $RESPONSE
}
'''


def test_provided_al2023_bash_bootstrap_from_the_tutorial(lam, mk):
    name = mk({"bootstrap": ("exec", TUTORIAL_BOOTSTRAP), "function.sh": TUTORIAL_FUNCTION},
              runtime="provided.al2023", handler="function.handler")
    first = et.invoke(lam, name, b'{"text":"Hello"}')
    assert_ok(first)
    assert first.payload == b"Echoing request: '{\"text\":\"Hello\"}'"
    log = first.parsed_log()
    assert '{"text":"Hello"}' in log.output.splitlines(), first.log
    assert log.report["init"] is not None, first.log
    second = et.invoke(lam, name, b'{"text":"again"}')
    assert_ok(second)
    assert second.payload == b"Echoing request: '{\"text\":\"again\"}'"
    assert not is_cold(second), second.log


@pytest.mark.parametrize("files, error_type, mention", [
    ({"bootstrap": TUTORIAL_BOOTSTRAP, "function.sh": TUTORIAL_FUNCTION},
     "Runtime.InvalidEntrypoint", "permission denied"),
    ({"function.sh": TUTORIAL_FUNCTION}, "Runtime.InvalidEntrypoint", "no such file or directory"),
    ({"bootstrap": ("exec", "#!/bin/sh\necho giving up\nexit 2\n")}, "Runtime.ExitError", "exit status 2"),
], ids=["bootstrap-not-executable", "no-bootstrap", "bootstrap-exits"])
def test_provided_bootstrap_that_cannot_run_is_a_function_error(lam, mk, server, files, error_type, mention):
    """A custom runtime whose bootstrap cannot start (or exits during init) is the
    function's error (200, X-Amz-Function-Error Unhandled), not a server error."""
    name = mk(files, runtime="provided.al2", handler="function.handler")
    inv = et.invoke(lam, name, {})
    doc = assert_error(inv, error_type)
    assert mention in doc["errorMessage"].lower(), doc
    assert_server_ok(server)


@pytest.fixture(scope="module")
def awslambdaric_files():
    """awslambdaric (AWS's Python runtime interface client) and its dependencies,
    installed with pip into a directory, as a `make_zip` mapping."""
    with tempfile.TemporaryDirectory(prefix="ember-ric-") as d:
        et.pip_target(d, "awslambdaric")
        yield et.tree_files(d)


RIC_BOOTSTRAP = '''\
#!/bin/sh
export PYTHONPATH=/var/task
exec /usr/bin/python3 -m awslambdaric app.handler
'''

RIC_APP = '''\
import os

count = 0

def handler(event, context):
    global count
    count += 1
    print("ric got", event)
    if event.get("fail"):
        raise KeyError("missing thing")
    return {
        "count": count,
        "event": event,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "remaining_ok": 0 < context.get_remaining_time_in_millis() <= 10000,
        "arn": context.invoked_function_arn,
    }
'''


def test_provided_with_awslambdaric(lam, mk, awslambdaric_files, root_id):
    # pip installed awslambdaric's binary wheel for the Python running this suite: the
    # sandbox's /usr/bin/python3 must be the same version.
    if os.path.realpath("/usr/bin/python3") != f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}":
        pytest.skip("awslambdaric's wheel is for another Python than /usr/bin/python3")
    files = dict(awslambdaric_files)
    files["bootstrap"] = ("exec", RIC_BOOTSTRAP)
    files["app.py"] = RIC_APP
    name = mk(files, runtime="provided", handler="app.handler", Timeout=10)
    inv = et.invoke(lam, name, {"hello": "ric ✓"})
    assert_ok(inv)
    got = inv.json()
    assert got == {
        "count": 1, "event": {"hello": "ric ✓"}, "request_id": inv.request_id,
        "function_name": name, "memory": "128", "remaining_ok": True,
        "arn": f"arn:aws:lambda:us-east-1:{root_id}:function:{name}",
    }
    assert "ric got {'hello': 'ric ✓'}" in inv.parsed_log().output, inv.log
    assert is_cold(inv), inv.log
    inv = et.invoke(lam, name, {"fail": True})
    doc = assert_error(inv, "KeyError")
    assert doc["errorMessage"] == "'missing thing'", doc
    assert isinstance(doc.get("stackTrace"), list), doc
    inv = et.invoke(lam, name, {})
    assert_ok(inv)
    assert inv.json()["count"] == 3 and not is_cold(inv), inv.describe()


# --------------------------------------------------------------------------------------
# The aws CLI
# --------------------------------------------------------------------------------------


@needs_python
def test_aws_cli_invoke_with_log_tail(server, lam, mk, tmp_path):
    name = mk({"lambda_function.py": "def lambda_handler(event, context):\n"
                                     "    print('cli says', event['say'])\n"
                                     "    return {'said': event['say']}\n"},
              handler="lambda_function.lambda_handler")
    event = tmp_path / "event.json"
    event.write_text('{"say": "hi ✓"}')
    outfile = tmp_path / "out.json"
    cli = et.AwsCli(server.endpoint, *server.root_keys, str(tmp_path))
    out = cli.json("lambda", "invoke", "--function-name", name, "--payload", f"fileb://{event}",
                   "--log-type", "Tail", str(outfile))
    detail = f"{out}\npayload: {outfile.read_bytes()[:2000]!r}\nlog:\n" + \
        base64.b64decode(out.get("LogResult") or "").decode(errors="replace")
    assert out["StatusCode"] == 200, detail
    assert "FunctionError" not in out, detail
    assert out["ExecutedVersion"] == "$LATEST", out
    assert json.loads(outfile.read_text()) == {"said": "hi ✓"}
    log = base64.b64decode(out["LogResult"]).decode()
    parsed = et.parse_log(log)
    assert "cli says hi ✓" in parsed.output, log

    # A function error through the CLI: exit status 0, FunctionError in the output.
    out = cli.json("lambda", "invoke", "--function-name", name, "--payload", f"fileb://{outfile}",
                   str(tmp_path / "err.json"))
    assert out["StatusCode"] == 200 and out.get("FunctionError") == "Unhandled", out
    assert json.loads((tmp_path / "err.json").read_text())["errorType"] == "KeyError"
