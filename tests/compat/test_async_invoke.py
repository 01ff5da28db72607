"""Asynchronous invocation, driven by boto3: Invoke with InvocationType=Event answers
202 once the event is durable; the function runs in the background; retries follow
Put/Get/Update/Delete/ListFunctionEventInvokeConfig; records reach OnSuccess/OnFailure
destinations (SQS queues) in Lambda's destination format; the original event reaches the
function's DeadLetterConfig queue; queued events survive kill -9 and wait while the
function is throttled. Also resource policies (AddPermission/RemovePermission/GetPolicy)
and the cross-account Invoke they allow."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
from botocore.exceptions import ClientError

import embertest as et
from test_sqs import sqs_client

PY = et.PY_RUNTIME
pytestmark = pytest.mark.skipif(PY is None, reason="this host has no Python runtime")

HANDLER = """
def handler(event, context):
    if event.get("fail"):
        raise RuntimeError("asked to fail: " + str(event["fail"]))
    return {"echo": event, "requestId": context.aws_request_id}
"""


@pytest.fixture(scope="module")
def srv(tmp_root):
    """A server whose asynchronous retries wait 1 s instead of Lambda's minute."""
    base = os.path.join(tmp_root, "async-" + uuid.uuid4().hex[:8])
    path = base + ".toml"
    with open(path, "w") as f:
        f.write("[events]\nasync_retry_delay_secs = 1\n")
    s = et.EmberServer(data_dir=base + "-data", extra_args=["--config", path]).start()
    yield s
    if s.alive():
        assert s.stop() == 0, s.stderr()


@pytest.fixture(scope="module")
def lam(srv):
    return srv.lambda_client()


@pytest.fixture(scope="module")
def sqs(srv):
    return sqs_client(srv.endpoint, *srv.root_keys)


@pytest.fixture(scope="module")
def account_id(srv):
    return et.root_account_id(srv)


def make_queue(sqs, hint):
    url = sqs.create_queue(QueueName=f"{hint}-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def receive_one(sqs, url, timeout=30.0, attributes=False):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kw = {"MessageAttributeNames": ["All"]} if attributes else {}
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2, **kw).get("Messages", [])
        if got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
            return got[0]
    raise AssertionError(f"nothing arrived on {url} within {timeout}s")


@pytest.fixture
def fn(lam, account_id, fn_name):
    et.create_function(lam, fn_name, et.make_zip({"app.py": HANDLER}),
                       Role=et.role_arn(account_id), Timeout=10)
    yield fn_name
    try:
        lam.delete_function(FunctionName=fn_name)
    except ClientError:
        pass


def test_event_is_accepted_and_runs_with_success_destination(lam, sqs, fn):
    url, arn = make_queue(sqs, "ok")
    lam.put_function_event_invoke_config(
        FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": arn}})
    r = lam.invoke(FunctionName=fn, InvocationType="Event", Payload=b'{"n": 1}')
    assert r["StatusCode"] == 202
    assert r["Payload"].read() == b""
    request_id = r["ResponseMetadata"]["RequestId"]
    record = json.loads(receive_one(sqs, url)["Body"])
    assert record["version"] == "1.0"
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["functionArn"].endswith(f":function:{fn}:$LATEST")
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["requestPayload"] == {"n": 1}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"echo": {"n": 1}, "requestId": request_id}
    assert record["timestamp"].endswith("Z")


def test_failures_are_retried_then_reach_failure_destination_and_dlq(lam, sqs, fn):
    fail_url, fail_arn = make_queue(sqs, "fail")
    dlq_url, dlq_arn = make_queue(sqs, "dlq")
    lam.update_function_configuration(FunctionName=fn, DeadLetterConfig={"TargetArn": dlq_arn})
    got = lam.get_function_configuration(FunctionName=fn)
    assert got["DeadLetterConfig"] == {"TargetArn": dlq_arn}
    lam.put_function_event_invoke_config(
        FunctionName=fn, MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": fail_arn}})
    started = time.monotonic()
    r = lam.invoke(FunctionName=fn, InvocationType="Event", Payload=b'{"fail": "boom"}')
    assert r["StatusCode"] == 202
    record = json.loads(receive_one(sqs, fail_url)["Body"])
    elapsed = time.monotonic() - started
    assert elapsed >= 1.0, "the retry waited for the configured delay"
    ctx = record["requestContext"]
    assert ctx["condition"] == "RetriesExhausted"
    assert ctx["approximateInvokeCount"] == 2  # the first attempt and one retry
    assert record["requestPayload"] == {"fail": "boom"}
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorType"] == "RuntimeError"
    assert "asked to fail: boom" in record["responsePayload"]["errorMessage"]
    dead = receive_one(sqs, dlq_url, attributes=True)
    assert json.loads(dead["Body"]) == {"fail": "boom"}
    attrs = dead["MessageAttributes"]
    assert attrs["RequestID"]["StringValue"] == r["ResponseMetadata"]["RequestId"]
    assert attrs["ErrorCode"]["StringValue"] == "200"
    assert "asked to fail" in attrs["ErrorMessage"]["StringValue"]


def test_zero_retries_fail_at_once(lam, sqs, fn):
    fail_url, fail_arn = make_queue(sqs, "fail0")
    lam.put_function_event_invoke_config(
        FunctionName=fn, MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": fail_arn}})
    lam.invoke(FunctionName=fn, InvocationType="Event", Payload=b'{"fail": 1}')
    record = json.loads(receive_one(sqs, fail_url)["Body"])
    assert record["requestContext"]["approximateInvokeCount"] == 1


SLEEPER = """
import time

def handler(event, context):
    start = time.time()
    time.sleep(event["sleep"])
    return {"start": start, "end": time.time()}
"""


def test_async_events_never_exceed_reserved_concurrency(lam, sqs, account_id, fn_name):
    et.create_function(lam, fn_name, et.make_zip({"app.py": SLEEPER}),
                       Role=et.role_arn(account_id), Timeout=10)
    try:
        url, arn = make_queue(sqs, "conc")
        lam.put_function_event_invoke_config(
            FunctionName=fn_name, DestinationConfig={"OnSuccess": {"Destination": arn}})
        lam.put_function_concurrency(FunctionName=fn_name, ReservedConcurrentExecutions=2)
        for _ in range(8):
            lam.invoke(FunctionName=fn_name, InvocationType="Event", Payload=b'{"sleep": 0.4}')
        spans = []
        deadline = time.monotonic() + 60
        while len(spans) < 8 and time.monotonic() < deadline:
            for m in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2,
                                         MaxNumberOfMessages=10).get("Messages", []):
                r = json.loads(m["Body"])["responsePayload"]
                spans.append((r["start"], r["end"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        assert len(spans) == 8
        edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
                       key=lambda x: (x[0], x[1]))
        running = peak = 0
        for _, d in edges:
            running += d
            peak = max(peak, running)
        assert peak <= 2, f"peak concurrency {peak}"
    finally:
        lam.delete_function(FunctionName=fn_name)


def test_event_invoke_config_api(lam, sqs, fn, account_id):
    _, arn = make_queue(sqs, "cfg")
    with pytest.raises(ClientError) as e:
        lam.get_function_event_invoke_config(FunctionName=fn)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    put = lam.put_function_event_invoke_config(
        FunctionName=fn, MaximumRetryAttempts=0, MaximumEventAgeInSeconds=120)
    assert put["MaximumRetryAttempts"] == 0
    assert put["MaximumEventAgeInSeconds"] == 120
    assert put["FunctionArn"] == f"arn:aws:lambda:us-east-1:{account_id}:function:{fn}:$LATEST"
    assert put["LastModified"].year >= 2024
    upd = lam.update_function_event_invoke_config(
        FunctionName=fn, DestinationConfig={"OnFailure": {"Destination": arn}})
    assert upd["MaximumRetryAttempts"] == 0  # kept
    assert upd["DestinationConfig"]["OnFailure"] == {"Destination": arn}
    # Put replaces everything.
    again = lam.put_function_event_invoke_config(FunctionName=fn, MaximumEventAgeInSeconds=60)
    assert again["MaximumRetryAttempts"] == 2
    assert again["DestinationConfig"]["OnFailure"] == {}
    listed = lam.list_function_event_invoke_configs(FunctionName=fn)["FunctionEventInvokeConfigs"]
    assert [c["MaximumEventAgeInSeconds"] for c in listed] == [60]
    lam.delete_function_event_invoke_config(FunctionName=fn)
    with pytest.raises(ClientError):
        lam.get_function_event_invoke_config(FunctionName=fn)
    assert lam.list_function_event_invoke_configs(FunctionName=fn)[
        "FunctionEventInvokeConfigs"] == []


@pytest.mark.parametrize("kwargs,needle", [
    ({"MaximumRetryAttempts": 3}, "maximumRetryAttempts"),
    ({"MaximumEventAgeInSeconds": 59}, "maximumEventAgeInSeconds"),
    ({"MaximumEventAgeInSeconds": 21601}, "maximumEventAgeInSeconds"),
    ({"DestinationConfig": {"OnSuccess": {
        "Destination": "arn:aws:sqs:us-east-1:000000000000:nope"}}}, "account"),
    ({"DestinationConfig": {"OnSuccess": {"Destination": "arn:aws:sns:us-east-1:1:t"}}},
     "Unsupported destination"),
])
def test_event_invoke_config_bad_input(srv, fn, kwargs, needle):
    raw = srv.lambda_client(validate=False)
    with pytest.raises(ClientError) as e:
        raw.put_function_event_invoke_config(FunctionName=fn, **kwargs)
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert needle in e.value.response["Error"]["Message"]


def test_missing_destination_queue_and_dlq_are_refused(lam, fn, account_id):
    missing = f"arn:aws:sqs:us-east-1:{account_id}:does-not-exist-{uuid.uuid4().hex[:6]}"
    with pytest.raises(ClientError) as e:
        lam.put_function_event_invoke_config(
            FunctionName=fn, DestinationConfig={"OnFailure": {"Destination": missing}})
    assert "does not exist" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        lam.update_function_configuration(FunctionName=fn, DeadLetterConfig={"TargetArn": missing})
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"


def test_payload_limit_and_bad_payload(lam, fn):
    big = b'{"x": "' + b"a" * (1024 * 1024) + b'"}'
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName=fn, InvocationType="Event", Payload=big)
    assert e.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName=fn, InvocationType="Event", Payload=b"{not json")
    assert e.value.response["Error"]["Code"] == "InvalidRequestContentException"
    # Just under the limit is accepted.
    ok = b'{"x": "' + b"a" * (1000 * 1000) + b'"}'
    assert lam.invoke(FunctionName=fn, InvocationType="Event", Payload=ok)["StatusCode"] == 202


def test_queued_events_wait_while_throttled_and_survive_kill_9(tmp_root):
    """A server of its own, killed with SIGKILL while events wait for a throttled function."""
    srv = et.EmberServer(data_dir=os.path.join(tmp_root, "async-kill-" + uuid.uuid4().hex[:8])).start()
    try:
        lam, sqs = srv.lambda_client(), sqs_client(srv.endpoint, *srv.root_keys)
        account_id = et.root_account_id(srv)
        fn = et.function_name("durable")
        et.create_function(lam, fn, et.make_zip({"app.py": HANDLER}), Role=et.role_arn(account_id))
        url, arn = make_queue(sqs, "durable")
        lam.put_function_event_invoke_config(
            FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": arn}})
        # Reserved concurrency 0: the function may not run, so events stay queued.
        lam.put_function_concurrency(FunctionName=fn, ReservedConcurrentExecutions=0)
        sent = set()
        for i in range(5):
            r = lam.invoke(FunctionName=fn, InvocationType="Event",
                           Payload=json.dumps({"i": i}).encode())
            assert r["StatusCode"] == 202
            sent.add(i)
        time.sleep(1.0)
        assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages") is None
        srv.kill()
        srv.start()
        lam, sqs = srv.lambda_client(), sqs_client(srv.endpoint, *srv.root_keys)
        lam.delete_function_concurrency(FunctionName=fn)
        done = set()
        deadline = time.monotonic() + 60
        while done != sent and time.monotonic() < deadline:
            for m in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2,
                                         MaxNumberOfMessages=10).get("Messages", []):
                done.add(json.loads(m["Body"])["requestPayload"]["i"])
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        assert done == sent
    finally:
        if srv.alive():
            assert srv.stop() == 0, srv.stderr()


def test_resource_policy_and_cross_account_invoke(srv, lam, fn, account_id):
    other = et.create_account(srv)
    other_lam = other.client(srv)
    arn = f"arn:aws:lambda:us-east-1:{account_id}:function:{fn}"
    with pytest.raises(ClientError) as e:
        other_lam.invoke(FunctionName=arn, Payload=b"{}")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    with pytest.raises(ClientError) as e:
        lam.get_policy(FunctionName=fn)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"

    added = lam.add_permission(FunctionName=fn, StatementId="other-invoke",
                               Action="lambda:InvokeFunction", Principal=other.account_id)
    statement = json.loads(added["Statement"])
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{other.account_id}:root"}
    assert statement["Resource"] == arn
    with pytest.raises(ClientError) as e:
        lam.add_permission(FunctionName=fn, StatementId="other-invoke",
                           Action="lambda:InvokeFunction", Principal=other.account_id)
    assert e.value.response["Error"]["Code"] == "ResourceConflictException"
    policy = lam.get_policy(FunctionName=fn)
    doc = json.loads(policy["Policy"])
    assert [s["Sid"] for s in doc["Statement"]] == ["other-invoke"]

    r = other_lam.invoke(FunctionName=arn, Payload=b'{"from": "other"}')
    assert json.loads(r["Payload"].read())["echo"] == {"from": "other"}
    # The policy allows Invoke, nothing else.
    with pytest.raises(ClientError) as e:
        other_lam.get_function(FunctionName=arn)
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"

    with pytest.raises(ClientError) as e:
        lam.remove_permission(FunctionName=fn, StatementId="other-invoke", RevisionId="stale")
    assert e.value.response["Error"]["Code"] == "PreconditionFailedException"
    lam.remove_permission(FunctionName=fn, StatementId="other-invoke",
                          RevisionId=policy["RevisionId"])
    with pytest.raises(ClientError) as e:
        other_lam.invoke(FunctionName=arn, Payload=b"{}")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    with pytest.raises(ClientError) as e:
        lam.remove_permission(FunctionName=fn, StatementId="other-invoke")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


@pytest.mark.parametrize("kwargs,code", [
    ({"StatementId": "bad id!", "Action": "lambda:InvokeFunction", "Principal": "*"},
     "InvalidParameterValueException"),
    ({"StatementId": "a", "Action": "s3:GetObject", "Principal": "*"},
     "InvalidParameterValueException"),
    ({"StatementId": "a", "Action": "lambda:InvokeFunction", "Principal": "not a principal"},
     "InvalidParameterValueException"),
])
def test_add_permission_bad_input(srv, fn, kwargs, code):
    raw = srv.lambda_client(validate=False)
    with pytest.raises(ClientError) as e:
        raw.add_permission(FunctionName=fn, **kwargs)
    assert e.value.response["Error"]["Code"] == code
