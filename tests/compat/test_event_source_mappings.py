"""SQS event source mappings, driven by boto3: the Create/Get/List/Update/Delete API as
botocore's Lambda model describes it, and the pollers behind it — batches delivered in
Lambda's SQS event shape, deleted on success, left for the queue's redrive on a function
error, partial deletion with ReportBatchItemFailures, disabled mappings leave messages
alone, rate matching: a backlog never runs more invocations at once than the
function's concurrency allows, and FilterCriteria: only matching messages reach the
function, the others are deleted, and a batch with no match invokes nothing."""

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
def test_fifo_poison_blocks_only_its_own_group(lam, sqs, function, mappings):
    dlq_name = queue_name("fifo-dlq") + ".fifo"
    dlq_url = sqs.create_queue(QueueName=dlq_name, Attributes={"FifoQueue": "true"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    name = queue_name("fifo-poison") + ".fifo"
    url = sqs.create_queue(QueueName=name, Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "1",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "4"}),
    })["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": body, "MessageGroupId": "a"}
        for i, body in enumerate(["a0", "a1 poison", "a2", "a3"])])
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": f"b{i}", "MessageGroupId": "b"} for i in range(5)])
    m = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function, BatchSize=1)
    mappings.append(m["UUID"])
    # Group b flows past the poison message while group a waits behind it: a0 and b0..b4
    # are gone, the poison message and the two after it stay, in order.
    wait_until(lambda: sum(counts(sqs, url)) == 3, what="group b to drain")
    # Then the poison message reaches the dead-letter queue and group a resumes.
    wait_until(lambda: counts(sqs, url) == (0, 0), timeout=60, what="group a to resume")
    assert drain(sqs, dlq_url) == ["a1 poison"]


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


# --------------------------------------------------------------------------------------
# FilterCriteria
# --------------------------------------------------------------------------------------


def criteria(*patterns) -> dict:
    return {"Filters": [{"Pattern": json.dumps(p) if not isinstance(p, str) else p}
                        for p in patterns]}


def filters_of(config) -> list:
    return config.get("FilterCriteria", {}).get("Filters", [])


def test_filter_criteria_api(lam, lam_raw, sqs, function, mappings):
    url, arn = make_queue(sqs, "filter-api")
    given = criteria({"body": {"kind": ["order"]}}, {"body": [{"prefix": "urgent"}]})
    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function,
                                              Enabled=False, FilterCriteria=given)
    u = created["UUID"]
    mappings.append(u)
    assert created["FilterCriteria"] == given
    assert lam.get_event_source_mapping(UUID=u)["FilterCriteria"] == given
    listed = lam.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"]
    assert [m["FilterCriteria"] for m in listed] == [given]

    # An update without FilterCriteria leaves it alone.
    assert lam.update_event_source_mapping(UUID=u, BatchSize=5)["FilterCriteria"] == given

    # Invalid criteria are refused, on create and on update, and change nothing.
    too_long = json.dumps({"body": ["x" * 4100]})
    invalid = [
        criteria("not json"),
        criteria("[1, 2]"),
        criteria({}),
        criteria({"body": []}),
        criteria({"body": "x"}),
        criteria({"body": [{"regex": "x"}]}),
        criteria({"body": {"n": [{"numeric": [">", 5, "<", 1]}]}}),
        criteria({"body": {"n": [{"anything-but": ["a", 1]}]}}),
        criteria({"$or": [{"body": ["x"]}]}),
        criteria(*[{"body": [str(i)]} for i in range(6)]),
        criteria(too_long),
    ]
    for bad in invalid:
        with pytest.raises(ClientError) as e:
            lam_raw.create_event_source_mapping(EventSourceArn=arn, FunctionName=function,
                                                Enabled=False, FilterCriteria=bad)
        assert error(e) == (400, "InvalidParameterValueException"), bad
        with pytest.raises(ClientError) as e:
            lam_raw.update_event_source_mapping(UUID=u, FilterCriteria=bad)
        assert error(e) == (400, "InvalidParameterValueException"), bad
    with pytest.raises(ClientError) as e:
        lam.update_event_source_mapping(UUID=u, FilterCriteria=criteria("{oops"))
    assert "Invalid filter pattern definition" in e.value.response["Error"]["Message"]
    assert lam.get_event_source_mapping(UUID=u)["FilterCriteria"] == given
    assert [m["UUID"] for m in
            lam.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"]] == [u]

    # Five filters and a 4096-character pattern are the limits.
    five = criteria(*[{"body": [str(i)]} for i in range(5)])
    assert lam.update_event_source_mapping(UUID=u, FilterCriteria=five)["FilterCriteria"] == five
    longest = json.dumps({"body": ["x" * (4096 - 14)]})
    assert len(longest) == 4096
    assert filters_of(lam.update_event_source_mapping(
        UUID=u, FilterCriteria=criteria(longest))) == [{"Pattern": longest}]

    # {"Filters": []} and {} clear it.
    cleared = lam.update_event_source_mapping(UUID=u, FilterCriteria={"Filters": []})
    assert filters_of(cleared) == []
    assert filters_of(lam.get_event_source_mapping(UUID=u)) == []
    lam.update_event_source_mapping(UUID=u, FilterCriteria=given)
    assert lam.get_event_source_mapping(UUID=u)["FilterCriteria"] == given
    lam.update_event_source_mapping(UUID=u, FilterCriteria={})
    assert filters_of(lam.get_event_source_mapping(UUID=u)) == []


@needs_python
def test_filter_criteria_deliver_only_matching_messages(lam, sqs, function, mappings):
    # Every body says "fail", so the function reports every message it gets as failed and
    # the redrive policy moves it to the DLQ: the DLQ holds exactly what was delivered.
    dlq_url, dlq_arn = make_queue(sqs, "filter-dlq")
    url, arn = make_queue(sqs, "filter", dlq_arn=dlq_arn, max_receive=1, visibility=2)
    matching = [
        json.dumps({"kind": "order", "amount": 150, "note": "fail"}),
        json.dumps({"kind": "order", "amount": 100.5, "tags": ["x", "fail"]}),
        json.dumps({"kind": "refund", "region": "eu-west-1", "note": "fail"}),
        "fail: plain text",
        '["fail, not JSON: a plain body',
    ]
    other = [
        json.dumps({"kind": "order", "amount": 100, "note": "fail"}),
        json.dumps({"kind": "order", "amount": "150", "note": "fail"}),
        json.dumps({"kind": "refund", "region": "us-east-1", "note": "fail"}),
        json.dumps({"kind": "refund", "note": "fail"}),
        # Its text starts with ["fail, but a JSON body never matches a plain pattern.
        json.dumps(["fail", "JSON"]),
        "fail plain text without the colon",
        "{\"kind\": \"order\", \"amount\": 500, broken JSON is plain text: fail",
    ]
    bodies = matching + other
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[:10])])
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[10:])])
    m = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=function, BatchSize=10,
        MaximumBatchingWindowInSeconds=1, FunctionResponseTypes=["ReportBatchItemFailures"],
        FilterCriteria=criteria(
            {"body": {"kind": ["order"], "amount": [{"numeric": [">", 100]}]}},
            {"body": {"kind": ["refund"], "region": [{"anything-but": {"prefix": "us-"}}]}},
            {"body": [{"prefix": "fail: "}]},
            {"body": [{"prefix": "[\"fail"}]},
        ))
    mappings.append(m["UUID"])
    wait_until(lambda: counts(sqs, url) == (0, 0) and counts(sqs, dlq_url)[0] == len(matching),
               what="the queue to empty and the delivered messages to reach the DLQ")
    time.sleep(1)
    assert counts(sqs, url) == (0, 0)
    assert sorted(drain(sqs, dlq_url)) == sorted(matching)


@needs_python
def test_a_batch_with_no_match_invokes_nothing(lam, sqs, function, mappings, server):
    url, arn = make_queue(sqs, "filter-none")
    m = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=function, BatchSize=10,
        FilterCriteria=criteria({"body": {"kind": ["order"]}}))
    u = m["UUID"]
    mappings.append(u)
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "0", "MessageBody": json.dumps({"kind": "refund"})},
        {"Id": "1", "MessageBody": "order"},
        {"Id": "2", "MessageBody": json.dumps({"Kind": "order"})},
    ])
    wait_until(lambda: counts(sqs, url) == (0, 0), what="the filtered messages to be deleted")

    def invocations() -> int:
        with open(server.stderr_path, errors="replace") as f:
            return sum(1 for line in f
                       if "event source mapping batch invoked" in line and u in line)

    time.sleep(1)
    assert invocations() == 0
    # Clearing the filters delivers everything again (and shows the count can move).
    lam.update_event_source_mapping(UUID=u, FilterCriteria={"Filters": []})
    time.sleep(1)
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    wait_until(lambda: counts(sqs, url) == (0, 0), what="the unfiltered message")
    wait_until(lambda: invocations() == 1, what="the invocation to be logged")
