"""SQS event source mappings, driven by boto3: the Create/Get/List/Update/Delete API as
botocore's Lambda model describes it, and the pollers behind it — batches delivered in
Lambda's SQS event shape, deleted on success, left for the queue's redrive on a function
error, partial deletion with ReportBatchItemFailures, disabled mappings leave messages
alone, and rate matching: a backlog never runs more invocations at once than the
function's concurrency allows."""

from __future__ import annotations

import datetime
import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

import embertest as et
from test_sqs import sqs_client

PY = et.PY_RUNTIME
needs_python = pytest.mark.skipif(PY is None, reason="this host has no Python runtime")

# Fails for "poison" bodies; with ReportBatchItemFailures semantics for "fail" bodies;
# sleeps for "sleep:<seconds>" bodies. Checks the event's shape as it goes.
HANDLER = """
import time

def handler(event, context):
    failures = []
    for r in event["Records"]:
        assert r["eventSource"] == "aws:sqs", r
        assert r["eventSourceARN"].startswith("arn:aws:sqs:"), r
        assert set(r["attributes"]) >= {"ApproximateReceiveCount", "SentTimestamp",
                                        "SenderId", "ApproximateFirstReceiveTimestamp"}, r
        for k in ("messageId", "receiptHandle", "body", "md5OfBody", "awsRegion",
                  "messageAttributes"):
            assert k in r, r
        body = r["body"]
        if "poison" in body:
            raise ValueError("poison message " + r["messageId"])
        if "fail" in body:
            failures.append({"itemIdentifier": r["messageId"]})
        if body.startswith("sleep:"):
            time.sleep(float(body.split(":", 1)[1]))
    return {"batchItemFailures": failures}
"""


def queue_name(hint: str) -> str:
    return f"esm-{hint}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def sqs(server):
    return sqs_client(server.endpoint, *server.root_keys)


@pytest.fixture
def function(lam, role, fn_name):
    if PY is None:
        pytest.skip("this host has no Python runtime")
    et.create_function(lam, fn_name, et.make_zip({"app.py": HANDLER}), Role=role, Timeout=30)
    yield fn_name
    try:
        lam.delete_function(FunctionName=fn_name)
    except ClientError:
        pass


@pytest.fixture
def mappings(lam):
    """Mappings made by the test are deleted at the end."""
    made = []
    yield made
    for u in made:
        try:
            lam.delete_event_source_mapping(UUID=u)
        except ClientError:
            pass


def make_queue(sqs, hint, dlq_arn=None, max_receive=2, visibility=1):
    attrs = {"VisibilityTimeout": str(visibility)}
    if dlq_arn:
        attrs["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)})
    url = sqs.create_queue(QueueName=queue_name(hint), Attributes=attrs)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    return url, arn


def counts(sqs, url) -> tuple[int, int]:
    a = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def wait_until(cond, timeout=60.0, interval=0.2, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def drain(sqs, url) -> list[str]:
    bodies = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        msgs = got.get("Messages", [])
        if not msgs:
            return bodies
        bodies += [m["Body"] for m in msgs]
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])


def error(excinfo) -> tuple[int, str]:
    e = excinfo.value
    return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]


# --------------------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------------------


def test_mapping_lifecycle(lam, sqs, function, mappings, root_id):
    url, arn = make_queue(sqs, "api")
    created = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=function, Enabled=False,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        ScalingConfig={"MaximumConcurrency": 5},
    )
    mappings.append(created["UUID"])
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert created["BatchSize"] == 10
    assert created["MaximumBatchingWindowInSeconds"] == 0
    assert created["EventSourceArn"] == arn
    assert created["FunctionArn"] == \
        f"arn:aws:lambda:{et.REGION}:{root_id}:function:{function}"
    assert created["State"] == "Disabled"
    assert created["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert created["ScalingConfig"] == {"MaximumConcurrency": 5}
    assert isinstance(created["LastModified"], datetime.datetime)
    u = created["UUID"]

    got = lam.get_event_source_mapping(UUID=u)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["UUID"] == u and got["State"] == "Disabled"

    listed = lam.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [u]
    listed = lam.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [u]
    assert u in [m["UUID"] for m in lam.list_event_source_mappings()["EventSourceMappings"]]

    updated = lam.update_event_source_mapping(
        UUID=u, BatchSize=100, MaximumBatchingWindowInSeconds=2, FunctionResponseTypes=[])
    assert updated["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert updated["BatchSize"] == 100
    assert updated["MaximumBatchingWindowInSeconds"] == 2
    assert updated["FunctionResponseTypes"] == []
    assert lam.get_event_source_mapping(UUID=u)["BatchSize"] == 100

    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function)
    assert error(e) == (409, "ResourceConflictException")

    deleted = lam.delete_event_source_mapping(UUID=u)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert deleted["State"] == "Deleting"
    with pytest.raises(ClientError) as e:
        lam.get_event_source_mapping(UUID=u)
    assert error(e) == (404, "ResourceNotFoundException")


def test_mapping_validation(lam, lam_raw, sqs, function, mappings, other_lam, root_id):
    url, arn = make_queue(sqs, "val")
    cases = [
        dict(BatchSize=11),
        dict(BatchSize=0),
        dict(BatchSize=10001, MaximumBatchingWindowInSeconds=1),
        dict(MaximumBatchingWindowInSeconds=301),
        dict(ScalingConfig={"MaximumConcurrency": 1}),
        dict(FunctionResponseTypes=["Nope"]),
    ]
    for extra in cases:
        with pytest.raises(ClientError) as e:
            lam_raw.create_event_source_mapping(EventSourceArn=arn, FunctionName=function,
                                                **extra)
        assert error(e) == (400, "InvalidParameterValueException"), extra
    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(EventSourceArn=arn + "-missing", FunctionName=function)
    assert error(e) == (400, "InvalidParameterValueException")
    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function + "-missing")
    assert error(e) == (404, "ResourceNotFoundException")
    # A batch over 10 needs a batching window.
    ok = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function,
                                         BatchSize=500, MaximumBatchingWindowInSeconds=1,
                                         Enabled=False)
    mappings.append(ok["UUID"])
    # Another account sees nothing of it, and cannot map the queue.
    with pytest.raises(ClientError) as e:
        other_lam.get_event_source_mapping(UUID=ok["UUID"])
    assert error(e) == (404, "ResourceNotFoundException")
    assert other_lam.list_event_source_mappings()["EventSourceMappings"] == []


# --------------------------------------------------------------------------------------
# The pollers
# --------------------------------------------------------------------------------------


@needs_python
def test_batches_are_deleted_and_poison_goes_to_the_dlq(lam, sqs, function, mappings):
    dlq_url, dlq_arn = make_queue(sqs, "dlq")
    url, arn = make_queue(sqs, "work", dlq_arn=dlq_arn, max_receive=2)
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": f"hello {i}",
         "MessageAttributes": {"n": {"DataType": "Number", "StringValue": str(i)}}}
        for i in range(9)
    ] + [{"Id": "p", "MessageBody": "poison"}])
    sqs.send_message(QueueUrl=url, MessageBody="hello after")
    m = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function, BatchSize=1)
    mappings.append(m["UUID"])
    # The good messages are deleted; the poison one fails twice and is moved to the DLQ.
    wait_until(lambda: counts(sqs, url) == (0, 0), what="the queue to empty")
    assert drain(sqs, dlq_url) == ["poison"]


@needs_python
def test_report_batch_item_failures_deletes_the_rest(lam, sqs, function, mappings):
    dlq_url, dlq_arn = make_queue(sqs, "dlq")
    # Longer than the batching window, so a batch is not re-received while it is filled.
    url, arn = make_queue(sqs, "partial", dlq_arn=dlq_arn, max_receive=2, visibility=3)
    bodies = [f"ok {i}" for i in range(6)] + ["fail a", "fail b"]
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)])
    m = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=function, BatchSize=10,
        MaximumBatchingWindowInSeconds=1, FunctionResponseTypes=["ReportBatchItemFailures"])
    mappings.append(m["UUID"])
    wait_until(lambda: counts(sqs, url) == (0, 0), what="the queue to empty")
    assert sorted(drain(sqs, dlq_url)) == ["fail a", "fail b"]


@needs_python
def test_a_disabled_mapping_leaves_messages_alone(lam, sqs, function, mappings):
    url, arn = make_queue(sqs, "off")
    m = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function,
                                        Enabled=False)
    mappings.append(m["UUID"])
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": f"m{i}"} for i in range(5)])
    time.sleep(2)
    assert counts(sqs, url) == (5, 0)
    lam.update_event_source_mapping(UUID=m["UUID"], Enabled=True)
    wait_until(lambda: counts(sqs, url) == (0, 0), what="the queue to empty")
    assert lam.get_event_source_mapping(UUID=m["UUID"])["State"] == "Enabled"
    lam.update_event_source_mapping(UUID=m["UUID"], Enabled=False)
    time.sleep(1)
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": f"n{i}"} for i in range(4)])
    time.sleep(2)
    visible, in_flight = counts(sqs, url)
    assert (visible, in_flight) == (4, 0)
    assert sorted(drain(sqs, url)) == [f"n{i}" for i in range(4)]


def run_backlog(sqs, url, n, sleep) -> int:
    """Send a backlog of `n` sleeping messages; the most ever in flight until it drains."""
    for start in range(0, n, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": f"sleep:{sleep}"} for i in range(start, min(n, start + 10))])
    most = 0
    deadline = time.time() + 120
    while time.time() < deadline:
        visible, in_flight = counts(sqs, url)
        most = max(most, in_flight)
        if visible == 0 and in_flight == 0:
            return most
        time.sleep(0.05)
    raise AssertionError("the backlog did not drain")


@needs_python
def test_reserved_concurrency_caps_a_backlog(lam, sqs, function, mappings):
    lam.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=2)
    url, arn = make_queue(sqs, "backlog", visibility=30)
    m = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function, BatchSize=1)
    mappings.append(m["UUID"])
    most = run_backlog(sqs, url, 40, 0.2)
    # Capacity is taken before messages: never more leased than can run.
    assert 1 <= most <= 2


@needs_python
def test_maximum_concurrency_caps_a_backlog(lam, sqs, function, mappings):
    url, arn = make_queue(sqs, "scaling", visibility=30)
    m = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function, BatchSize=1,
                                        ScalingConfig={"MaximumConcurrency": 3})
    mappings.append(m["UUID"])
    most = run_backlog(sqs, url, 45, 0.2)
    assert 1 <= most <= 3


@needs_python
def test_fifo_queue_is_processed(lam, sqs, function, mappings):
    name = queue_name("fifo") + ".fifo"
    url = sqs.create_queue(QueueName=name, Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true",
        "VisibilityTimeout": "1"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function,
                                        BatchSize=20, MaximumBatchingWindowInSeconds=1)
    assert error(e) == (400, "InvalidParameterValueException")
    for g in "ab":
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": f"{g}{i}", "MessageGroupId": g} for i in range(5)])
    m = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function, BatchSize=3)
    mappings.append(m["UUID"])
    wait_until(lambda: counts(sqs, url) == (0, 0), what="the FIFO queue to empty")


@needs_python
def test_deleting_the_function_stops_the_poller(lam, sqs, role, mappings, server):
    name = et.function_name("esm-del")
    et.create_function(lam, name, et.make_zip({"app.py": HANDLER}), Role=role)
    url, arn = make_queue(sqs, "del")
    m = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, BatchSize=1)
    mappings.append(m["UUID"])
    sqs.send_message(QueueUrl=url, MessageBody="first")
    wait_until(lambda: counts(sqs, url) == (0, 0), what="the first message")
    lam.delete_function(FunctionName=name)
    time.sleep(1)
    sqs.send_message(QueueUrl=url, MessageBody="second")
    time.sleep(2)
    assert counts(sqs, url) == (1, 0)
    # The latency of each batch is logged.
    with open(server.stderr_path, errors="replace") as f:
        log = f.read()
    assert "poll_to_handler_us" in log and "send_to_handler_ms" in log
