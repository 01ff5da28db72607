"""Reserved concurrency and the account concurrency limit, driven by boto3.

PutFunctionConcurrency / GetFunctionConcurrency / DeleteFunctionConcurrency and
GetAccountSettings as botocore's Lambda model describes them, and their enforcement on
synchronous Invoke: a function with reserved concurrency R runs at most R invocations at
once (R = 0 disables it), the other functions of an account share what is left of the
account limit, and an invocation over a limit is 429 TooManyRequestsException with
Lambda's `Reason`. Expected values are AWS Lambda's.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading
import time

import pytest
from botocore.exceptions import ClientError

import embertest as et

PY = et.PY_RUNTIME
needs_python = pytest.mark.skipif(PY is None, reason="this host has no Python runtime")

UNRESERVED_MINIMUM_MESSAGE = (
    "Specified ReservedConcurrentExecutions for function decreases account's "
    "UnreservedConcurrentExecution below its minimum value of [{}]."
)
RESERVED_REASON = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_REASON = "ConcurrentInvocationLimitExceeded"

# Sleeps `event["sleep"]` seconds and says when it ran (the host and the sandbox share
# the realtime clock).
SLEEPER = (
    "import time\n\n"
    "def handler(event, context):\n"
    "    start = time.time()\n"
    "    time.sleep(event.get('sleep', 0))\n"
    "    return {'start': start, 'end': time.time()}\n"
)


def error(excinfo) -> tuple[int, str, str]:
    e = excinfo.value
    return (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"],
            e.response["Error"]["Message"])


def reserved(resp: dict):
    """ReservedConcurrentExecutions of a Put/GetFunctionConcurrency response (None: unset)."""
    return resp.get("ReservedConcurrentExecutions")


@pytest.fixture
def functions(lam, role):
    """make(client=lam, role=role, zip_bytes=None, **kw) -> name: a fresh function; every
    function made is deleted at the end (with its reservation)."""
    made = []

    def make(client=lam, role_arn=role, zip_bytes=None, **kw):
        name = et.function_name("conc")
        et.create_function(client, name, zip_bytes, Role=role_arn, **kw)
        made.append((client, name))
        return name

    yield make
    for client, name in made:
        try:
            client.delete_function(FunctionName=name)
        except ClientError:
            pass


# --------------------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------------------


def test_put_get_delete_function_concurrency(lam, functions, root_id):
    name = functions()
    assert reserved(lam.get_function_concurrency(FunctionName=name)) is None
    assert "Concurrency" not in lam.get_function(FunctionName=name)

    resp = lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert reserved(resp) == 5
    assert reserved(lam.get_function_concurrency(FunctionName=name)) == 5
    assert lam.get_function(FunctionName=name)["Concurrency"] == {
        "ReservedConcurrentExecutions": 5}
    assert "Concurrency" not in lam.get_function_configuration(FunctionName=name)

    # Every name form reaches the same function; a put replaces the value.
    arn = f"arn:aws:lambda:us-east-1:{root_id}:function:{name}"
    assert reserved(lam.put_function_concurrency(
        FunctionName=arn, ReservedConcurrentExecutions=7)) == 7
    assert reserved(lam.get_function_concurrency(
        FunctionName=f"{root_id}:function:{name}")) == 7
    assert reserved(lam.get_function_concurrency(FunctionName=f"{name}:$LATEST")) == 7

    resp = lam.delete_function_concurrency(FunctionName=arn)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert reserved(lam.get_function_concurrency(FunctionName=name)) is None
    assert "Concurrency" not in lam.get_function(FunctionName=name)
    # Deleting what is not there is not an error.
    resp = lam.delete_function_concurrency(FunctionName=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_zero_is_a_reservation(lam, functions):
    name = functions()
    resp = lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    assert reserved(resp) == 0
    assert reserved(lam.get_function_concurrency(FunctionName=name)) == 0
    assert lam.get_function(FunctionName=name)["Concurrency"] == {
        "ReservedConcurrentExecutions": 0}


def test_unknown_function(lam):
    missing = et.function_name("missing")
    calls = [
        lambda: lam.put_function_concurrency(FunctionName=missing,
                                             ReservedConcurrentExecutions=1),
        lambda: lam.get_function_concurrency(FunctionName=missing),
        lambda: lam.delete_function_concurrency(FunctionName=missing),
    ]
    for call in calls:
        with pytest.raises(lam.exceptions.ResourceNotFoundException) as ei:
            call()
        status, code, message = error(ei)
        assert status == 404 and message.startswith("Function not found: arn:aws:lambda:"), \
            message


def test_reservations_keep_100_unreserved(server, fresh_account, functions):
    c = fresh_account.client(server)
    role = et.role_arn(fresh_account.account_id)
    f, g = functions(client=c, role_arn=role), functions(client=c, role_arn=role)
    message = UNRESERVED_MINIMUM_MESSAGE.format(100)

    with pytest.raises(c.exceptions.InvalidParameterValueException) as ei:
        c.put_function_concurrency(FunctionName=f, ReservedConcurrentExecutions=901)
    assert error(ei) == (400, "InvalidParameterValueException", message)
    assert reserved(c.get_function_concurrency(FunctionName=f)) is None

    assert reserved(c.put_function_concurrency(FunctionName=f,
                                               ReservedConcurrentExecutions=900)) == 900
    # Re-putting the same function does not count it twice.
    assert reserved(c.put_function_concurrency(FunctionName=f,
                                               ReservedConcurrentExecutions=900)) == 900
    with pytest.raises(c.exceptions.InvalidParameterValueException) as ei:
        c.put_function_concurrency(FunctionName=g, ReservedConcurrentExecutions=1)
    assert error(ei) == (400, "InvalidParameterValueException", message)
    # Zero takes nothing from the pool.
    assert reserved(c.put_function_concurrency(FunctionName=g,
                                               ReservedConcurrentExecutions=0)) == 0
    assert reserved(c.put_function_concurrency(FunctionName=f,
                                               ReservedConcurrentExecutions=899)) == 899
    assert reserved(c.put_function_concurrency(FunctionName=g,
                                               ReservedConcurrentExecutions=1)) == 1

    settings = c.get_account_settings()
    assert settings["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 100


def test_invalid_values(server, lam_raw, functions):
    name = functions()
    with pytest.raises(lam_raw.exceptions.InvalidParameterValueException) as ei:
        lam_raw.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=-1)
    status, _, message = error(ei)
    assert status == 400
    assert message == (
        "1 validation error detected: Value '-1' at 'reservedConcurrentExecutions' failed "
        "to satisfy constraint: Member must have value greater than or equal to 0"), message
    with pytest.raises(lam_raw.exceptions.InvalidParameterValueException):
        lam_raw.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=10**12)
    # No value at all, and a value that is not an integer (raw requests: botocore refuses).
    path = f"/2017-10-31/functions/{name}/concurrency"
    status, etype, _ = et.error_of(et.signed_request(server, "PUT", path, b"{}"))
    assert (status, etype) == (400, "InvalidParameterValueException")
    status, etype, _ = et.error_of(et.signed_request(
        server, "PUT", path, b'{"ReservedConcurrentExecutions": "ten"}'))
    assert (status, etype) == (400, "InvalidRequestContentException")
    status, etype, _ = et.error_of(et.signed_request(server, "PUT", path, b"{"))
    assert (status, etype) == (400, "InvalidRequestContentException")
    assert reserved(lam_raw.get_function_concurrency(FunctionName=name)) is None
    # The operations live under their own API dates only.
    status, etype, _ = et.error_of(et.signed_request(
        server, "GET", f"/2017-10-31/functions/{name}/concurrency"))
    assert (status, etype) == (404, "UnknownOperationException")


def test_other_accounts_cannot_see_or_change_reservations(lam, other_lam, functions, root_id):
    name = functions()
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=3)
    arn = f"arn:aws:lambda:us-east-1:{root_id}:function:{name}"
    for action, call in [
        ("PutFunctionConcurrency", lambda: other_lam.put_function_concurrency(
            FunctionName=arn, ReservedConcurrentExecutions=0)),
        ("GetFunctionConcurrency", lambda: other_lam.get_function_concurrency(FunctionName=arn)),
        ("DeleteFunctionConcurrency",
         lambda: other_lam.delete_function_concurrency(FunctionName=arn)),
    ]:
        with pytest.raises(other_lam.exceptions.ClientError) as ei:
            call()
        status, code, message = error(ei)
        assert (status, code) == (403, "AccessDeniedException"), message
        assert f"lambda:{action}" in message and arn in message, message
    # A plain name is looked up in the caller's own account only.
    with pytest.raises(other_lam.exceptions.ResourceNotFoundException):
        other_lam.get_function_concurrency(FunctionName=name)
    with pytest.raises(other_lam.exceptions.ResourceNotFoundException):
        other_lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    assert reserved(lam.get_function_concurrency(FunctionName=name)) == 3


def test_account_settings(server, fresh_account, functions):
    c = fresh_account.client(server)
    role = et.role_arn(fresh_account.account_id)
    settings = c.get_account_settings()
    limit, usage = settings["AccountLimit"], settings["AccountUsage"]
    assert limit["ConcurrentExecutions"] == 1000
    assert limit["UnreservedConcurrentExecutions"] == 1000
    assert limit["CodeSizeZipped"] == 52_428_800
    assert limit["CodeSizeUnzipped"] == et.MAX_UNZIPPED_BYTES
    assert limit["TotalCodeSize"] == 80_530_636_800
    assert usage == {"FunctionCount": 0, "TotalCodeSize": 0}

    zips = [et.unique_zip("a"), et.unique_zip("b")]
    f = functions(client=c, role_arn=role, zip_bytes=zips[0])
    functions(client=c, role_arn=role, zip_bytes=zips[1])
    c.put_function_concurrency(FunctionName=f, ReservedConcurrentExecutions=50)
    settings = c.get_account_settings()
    assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 950
    assert settings["AccountUsage"] == {"FunctionCount": 2,
                                        "TotalCodeSize": sum(map(len, zips))}

    # A reservation goes with its function, and a function recreated under the same name
    # starts without one.
    c.delete_function(FunctionName=f)
    settings = c.get_account_settings()
    assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 1000
    assert settings["AccountUsage"]["FunctionCount"] == 1
    et.create_function(c, f, Role=role)
    assert reserved(c.get_function_concurrency(FunctionName=f)) is None
    assert "Concurrency" not in c.get_function(FunctionName=f)


# --------------------------------------------------------------------------------------
# Enforcement on Invoke
# --------------------------------------------------------------------------------------


def assert_throttled(excinfo, reason: str):
    e = excinfo.value
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert e.response["Error"]["Code"] == "TooManyRequestsException"
    assert e.response["Error"]["Message"] == "Rate Exceeded."
    assert e.response["Reason"] == reason, e.response
    assert e.response["Type"] == "User", e.response


def burst(client, name: str, n: int, sleep: float = 1.0):
    """`n` invokes of `name` released at the same moment; returns (results, throttles):
    the payloads of the ones that ran, the exceptions of the throttled ones."""
    barrier = threading.Barrier(n)

    def one(_):
        barrier.wait()
        try:
            inv = et.invoke(client, name, {"sleep": sleep}, tail=False)
            assert inv.status == 200 and inv.function_error is None, inv.describe()
            return inv.json()
        except client.exceptions.TooManyRequestsException as e:
            return e

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        out = list(pool.map(one, range(n)))
    return ([r for r in out if isinstance(r, dict)],
            [r for r in out if not isinstance(r, dict)])


class Held:
    """`n` invokes of `name` sleeping `sleep` s, sent at once in the background: while
    they run, they hold their slots (a slot is taken when the request arrives, before any
    cold start). `wait()` -> (results, throttles), as `burst`."""

    def __init__(self, client, name: str, n: int, sleep: float):
        self.pool = concurrent.futures.ThreadPoolExecutor(1)
        self.future = self.pool.submit(burst, client, name, n, sleep)
        time.sleep(1.0)  # far longer than a request takes to arrive; far shorter than `sleep`

    def wait(self):
        try:
            return self.future.result(timeout=120)
        finally:
            self.pool.shutdown()


def ran_during(inner: dict, outer: dict) -> bool:
    return outer["start"] <= inner["start"] and inner["end"] <= outer["end"]


def max_overlap(results) -> int:
    """The most invocations that ran at the same time, from their start/end times."""
    edges = sorted([(r["start"], 1) for r in results] + [(r["end"], -1) for r in results],
                   key=lambda e: (e[0], e[1]))
    now = peak = 0
    for _, d in edges:
        now += d
        peak = max(peak, now)
    return peak


@needs_python
def test_zero_disables_a_function(server, lam, functions):
    name = functions(zip_bytes=et.py_zip(SLEEPER))
    et.invoke(lam, name, {})
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    for _ in range(3):
        with pytest.raises(lam.exceptions.TooManyRequestsException) as ei:
            lam.invoke(FunctionName=name, Payload=b"{}")
        assert_throttled(ei, RESERVED_REASON)
    # Raw: the header and the body Lambda sends.
    status, headers, body = et.signed_request(
        server, "POST", f"/2015-03-31/functions/{name}/invocations", b"{}")
    assert status == 429
    assert headers["x-amzn-errortype"].split(":")[0] == "TooManyRequestsException"
    assert json.loads(body) == {"Type": "User", "message": "Rate Exceeded.",
                                   "Reason": RESERVED_REASON}
    lam.delete_function_concurrency(FunctionName=name)
    inv = et.invoke(lam, name, {})
    assert inv.status == 200 and inv.function_error is None, inv.describe()


@needs_python
def test_reserved_concurrency_caps_parallel_invokes(lam, functions):
    name = functions(zip_bytes=et.py_zip(SLEEPER), Timeout=30)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
    et.invoke(lam, name, {"sleep": 0})  # a warm sandbox, so the burst is not all cold starts

    t0 = time.monotonic()
    ran, throttled = burst(lam, name, 6)
    elapsed = time.monotonic() - t0
    assert len(ran) == 2 and len(throttled) == 4, (ran, throttled)
    for e in throttled:
        assert e.response["Reason"] == RESERVED_REASON, e.response
        assert e.response["Error"]["Message"] == "Rate Exceeded."
    assert max_overlap(ran) <= 2
    assert elapsed < 10, f"the burst took {elapsed:.1f}s"

    # The slots came back: the next burst of two runs side by side, and again after it.
    for _ in range(2):
        ran, throttled = burst(lam, name, 2, sleep=0.5)
        assert len(ran) == 2 and not throttled, throttled
        assert max_overlap(ran) == 2, ran
    # Raising the reservation takes effect at once.
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=4)
    ran, throttled = burst(lam, name, 4, sleep=0.5)
    assert len(ran) == 4 and not throttled, throttled


@needs_python
def test_throttled_functions_do_not_affect_others(lam, functions):
    limited = functions(zip_bytes=et.py_zip(SLEEPER), Timeout=30)
    free = functions(zip_bytes=et.py_zip(SLEEPER), Timeout=30)
    lam.put_function_concurrency(FunctionName=limited, ReservedConcurrentExecutions=1)
    held = Held(lam, limited, 2, sleep=3)
    try:
        with pytest.raises(lam.exceptions.TooManyRequestsException) as ei:
            lam.invoke(FunctionName=limited, Payload=b"{}")
        assert_throttled(ei, RESERVED_REASON)
        inv = et.invoke(lam, free, {"sleep": 0})
        assert inv.status == 200 and inv.function_error is None, inv.describe()
    finally:
        ran, throttled = held.wait()  # (an error of the held invokes explains any above)
    assert len(ran) == 1 and len(throttled) == 1, (ran, throttled)
    assert ran_during(inv.json(), ran[0]), (inv.json(), ran)


# --------------------------------------------------------------------------------------
# Servers of their own: a small account limit, and a restart
# --------------------------------------------------------------------------------------


@pytest.fixture
def own_servers():
    started: list[et.EmberServer] = []
    yield started
    for s in started:
        if s.alive():
            assert s.stop() == 0, s.stderr()


def start_server(own_servers, tmp_root, config: str | None = None,
                 data_dir: str | None = None) -> et.EmberServer:
    base = os.path.join(tmp_root, "concurrency-" + os.urandom(4).hex())
    extra = []
    if config is not None:
        path = base + ".toml"
        with open(path, "w") as f:
            f.write(config)
        extra = ["--config", path]
    s = et.EmberServer(data_dir=data_dir or base + "-data", extra_args=extra).start()
    own_servers.append(s)
    return s


@needs_python
def test_account_limit_and_the_unreserved_pool(own_servers, tmp_root):
    s = start_server(own_servers, tmp_root, "[limits]\naccount_concurrency = 3\n")
    root = s.lambda_client()
    root_id = et.root_account_id(s)
    role = et.role_arn(root_id)
    settings = root.get_account_settings()["AccountLimit"]
    assert (settings["ConcurrentExecutions"], settings["UnreservedConcurrentExecutions"]) == (3, 3)

    name, other_fn, off = (et.function_name(h) for h in ("pool", "pool2", "off"))
    for n in (name, other_fn, off):
        et.create_function(root, n, et.py_zip(SLEEPER), Role=role, Timeout=30)
    # With a limit this small nothing can be reserved, except zero.
    with pytest.raises(root.exceptions.InvalidParameterValueException) as ei:
        root.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    assert error(ei)[2] == UNRESERVED_MINIMUM_MESSAGE.format(3)
    root.put_function_concurrency(FunctionName=off, ReservedConcurrentExecutions=0)

    ran, throttled = burst(root, name, 5)
    assert len(ran) == 3 and len(throttled) == 2, (ran, throttled)
    for e in throttled:
        assert e.response["Reason"] == ACCOUNT_REASON, e.response
    assert max_overlap(ran) <= 3

    # The pool is the account's, shared by its functions; other accounts have their own.
    other = et.create_account(s)
    other_c = other.client(s)
    other_fn2 = et.function_name("theirs")
    et.create_function(other_c, other_fn2, et.py_zip(SLEEPER),
                       Role=et.role_arn(other.account_id), Timeout=30)
    held = Held(root, name, 3, sleep=3)
    try:
        with pytest.raises(root.exceptions.TooManyRequestsException) as ei:
            root.invoke(FunctionName=other_fn, Payload=b"{}")
        assert_throttled(ei, ACCOUNT_REASON)
        with pytest.raises(root.exceptions.TooManyRequestsException) as ei:
            root.invoke(FunctionName=off, Payload=b"{}")
        assert_throttled(ei, RESERVED_REASON)
        inv = et.invoke(other_c, other_fn2, {"sleep": 0})
        assert inv.status == 200 and inv.function_error is None, inv.describe()
    finally:
        ran, throttled = held.wait()
    assert len(ran) == 3 and not throttled, throttled
    assert all(ran_during(inv.json(), r) for r in ran), (inv.json(), ran)
    # Everything works again afterwards.
    ran, throttled = burst(root, other_fn, 3, sleep=0.2)
    assert len(ran) == 3 and not throttled, throttled


@needs_python
def test_reservations_survive_a_restart(own_servers, tmp_root):
    s = start_server(own_servers, tmp_root)
    root = s.lambda_client()
    role = et.role_arn(et.root_account_id(s))
    off, five = et.function_name("off"), et.function_name("five")
    for n in (off, five):
        et.create_function(root, n, et.py_zip(SLEEPER), Role=role)
    root.put_function_concurrency(FunctionName=off, ReservedConcurrentExecutions=0)
    root.put_function_concurrency(FunctionName=five, ReservedConcurrentExecutions=5)
    assert s.stop() == 0, s.stderr()

    s.start()
    root = s.lambda_client()
    # The first request after the start is an invoke: the limiter must already know.
    with pytest.raises(root.exceptions.TooManyRequestsException) as ei:
        root.invoke(FunctionName=off, Payload=b"{}")
    assert_throttled(ei, RESERVED_REASON)
    assert reserved(root.get_function_concurrency(FunctionName=off)) == 0
    assert reserved(root.get_function_concurrency(FunctionName=five)) == 5
    assert root.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 995
    inv = et.invoke(root, five, {})
    assert inv.status == 200 and inv.function_error is None, inv.describe()
