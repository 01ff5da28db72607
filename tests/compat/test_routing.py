"""Routing queues (a queue tagged ember:router=true), driven by boto3: messages that name
their function — remote-procedure-call form, CloudEvents 1.0 with the emberfunction
extension, aggregates of either (ordered ones checkpointed and resumed after kill -9) —
become invocations; malformed messages, unknown functions and senders without a
resource-policy grant go to the queue's dead-letter queue with their reason.

The recording function keeps what it received in a module global; with reserved
concurrency 1 every invocation runs in the same warm sandbox, so a synchronous
{"report": true} returns everything routed to it, in order."""

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

RECORDER = """
import time
SEEN = []

def handler(event, context):
    if isinstance(event, dict) and event.get("report"):
        return SEEN
    cc = context.client_context
    SEEN.append({"event": event, "ember": cc.custom["ember"] if cc and cc.custom else None})
    if isinstance(event, dict) and event.get("sleep"):
        time.sleep(event["sleep"])
    if isinstance(event, dict) and event.get("fail"):
        raise RuntimeError("asked to fail")
    return "ok"
"""


def make_router(sqs, hint, visibility=30, max_receive=3):
    dlq_url = sqs.create_queue(QueueName=f"{hint}-dlq-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName=f"{hint}-{uuid.uuid4().hex[:6]}",
        Attributes={"VisibilityTimeout": str(visibility), "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)})},
        tags={"ember:router": "true"},
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"]
    return url, arn, dlq_url


def recorder(lam, account_id, name=None):
    name = name or et.function_name("rec")
    et.create_function(lam, name, et.make_zip({"app.py": RECORDER}),
                       Role=et.role_arn(account_id), Timeout=30)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    return name


def report(lam, name):
    for _ in range(50):
        try:
            r = lam.invoke(FunctionName=name, Payload=b'{"report": true}')
            return json.loads(r["Payload"].read())
        except ClientError as e:  # the one slot is busy with a routed invocation
            if e.response["Error"]["Code"] != "TooManyRequestsException":
                raise
            time.sleep(0.2)
    raise AssertionError("the recorder stayed busy")


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def dead_letters(sqs, dlq_url, want, timeout=30.0):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        for m in sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1, MaxNumberOfMessages=10,
                                     MessageAttributeNames=["All"]).get("Messages", []):
            got.append(m)
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"])
    return got


@pytest.fixture(scope="module")
def sqs(server):
    return sqs_client(server.endpoint, *server.root_keys)


def test_rpc_and_cloudevents_messages_invoke_the_named_function(lam, sqs, root_id):
    fn = recorder(lam, root_id)
    url, arn, _ = make_router(sqs, "rpc")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"invoke": fn, "args": {"n": 1}}))
    cloud = {"specversion": "1.0", "id": "e-1", "source": "/orders", "type": "order.created",
             "emberfunction": f"arn:aws:lambda:us-east-1:{root_id}:function:{fn}",
             "datacontenttype": "application/json", "data": {"order": 7}}
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(cloud))
    seen = wait_for(lambda: (lambda s: s if len(s) == 2 else None)(report(lam, fn)),
                    what="two routed invocations")
    by_form = {s["ember"]["form"]: s for s in seen}
    assert by_form["rpc"]["event"] == {"n": 1}
    assert by_form["cloudevents"]["event"] == cloud
    meta = by_form["rpc"]["ember"]
    assert meta["eventSource"] == "aws:sqs"
    assert meta["eventSourceARN"] == arn
    assert meta["owner"] == root_id and meta["sender"] == root_id
    # Acknowledged: nothing left in the queue.
    wait_for(lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])[
        "Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0", what="deletes")
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages") is None


def test_aggregates_split_into_invocations_in_order(lam, sqs, root_id):
    fn = recorder(lam, root_id)
    url, _, _ = make_router(sqs, "agg")
    ordered = {"ordered": True, "events": [{"invoke": fn, "args": {"i": i}} for i in range(5)]}
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(ordered))
    seen = wait_for(lambda: (lambda s: s if len(s) == 5 else None)(report(lam, fn)),
                    what="five sub-events")
    assert [s["event"]["i"] for s in seen] == [0, 1, 2, 3, 4]
    assert [s["ember"]["index"] for s in seen] == [0, 1, 2, 3, 4]
    # A plain list (CloudEvents' batch form) is an unordered aggregate.
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(
        [{"invoke": fn, "args": {"j": j}} for j in range(3)]))
    seen = wait_for(lambda: (lambda s: s if len(s) == 8 else None)(report(lam, fn)),
                    what="three more sub-events")
    assert sorted(s["event"]["j"] for s in seen[5:]) == [0, 1, 2]


@pytest.mark.parametrize("body,reason", [
    ("this is not json", "not JSON"),
    ('{"hello": "world"}', "names no function"),
    ('{"invoke": "no-such-function-here"}', "does not exist"),
    ('[{"invoke": "x"}, 42]', "event 1 of the aggregate"),
    ('{"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}', "emberfunction"),
])
def test_bad_messages_go_to_the_dlq_with_their_reason(lam, sqs, root_id, body, reason):
    fn = recorder(lam, root_id)
    url, _, dlq_url = make_router(sqs, "bad")
    sqs.send_message(QueueUrl=url, MessageBody=body,
                     MessageAttributes={"kept": {"DataType": "String", "StringValue": "v"}})
    # A good message behind it still flows.
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"invoke": fn, "args": {"ok": 1}}))
    dead = dead_letters(sqs, dlq_url, 1)
    assert len(dead) == 1
    assert dead[0]["Body"] == body
    assert reason in dead[0]["MessageAttributes"]["EmberFailureReason"]["StringValue"]
    assert dead[0]["MessageAttributes"]["kept"]["StringValue"] == "v"
    seen = wait_for(lambda: report(lam, fn), what="the good message")
    assert [s["event"] for s in seen] == [{"ok": 1}]


def test_cross_account_needs_a_resource_policy(server, lam, sqs, root_id):
    other = et.create_account(server)
    other_lam = other.client(server)
    fn = recorder(other_lam, other.account_id)
    url, arn, dlq_url = make_router(sqs, "xacct")
    target = f"arn:aws:lambda:us-east-1:{other.account_id}:function:{fn}"
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"invoke": target, "args": {"a": 1}}))
    dead = dead_letters(sqs, dlq_url, 1)
    assert len(dead) == 1
    assert "not authorized" in dead[0]["MessageAttributes"]["EmberFailureReason"]["StringValue"]
    assert report(other_lam, fn) == []
    # The function's owner lets this queue's messages in.
    other_lam.add_permission(FunctionName=fn, StatementId="from-router",
                             Action="lambda:InvokeFunction", Principal="sqs.amazonaws.com",
                             SourceArn=arn)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"invoke": target, "args": {"a": 2}}))
    seen = wait_for(lambda: report(other_lam, fn), what="the permitted invocation")
    assert [s["event"] for s in seen] == [{"a": 2}]
    assert seen[0]["ember"]["sender"] == root_id
    assert seen[0]["ember"]["owner"] == root_id


def test_function_errors_are_retried_then_dead_lettered(lam, sqs, root_id):
    fn = recorder(lam, root_id)
    url, _, dlq_url = make_router(sqs, "err", visibility=1, max_receive=2)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"invoke": fn, "args": {"fail": 1}}))
    dead = dead_letters(sqs, dlq_url, 1, timeout=30)
    assert len(dead) == 1
    assert len(report(lam, fn)) == 2  # tried maxReceiveCount times


def test_ordered_aggregate_resumes_from_its_checkpoint_after_kill_9(tmp_root):
    srv = et.EmberServer(data_dir=os.path.join(tmp_root, "route-kill-" + uuid.uuid4().hex[:8])).start()
    try:
        lam, sqs = srv.lambda_client(), sqs_client(srv.endpoint, *srv.root_keys)
        account_id = et.root_account_id(srv)
        fn = recorder(lam, account_id)
        url, _, _ = make_router(sqs, "resume", visibility=2)
        events = [{"invoke": fn, "args": {"step": "a"}},
                  {"invoke": fn, "args": {"step": "b", "sleep": 4}},
                  {"invoke": fn, "args": {"step": "c"}}]
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"ordered": True, "events": events}))
        time.sleep(2.0)  # a is done and checkpointed; b is sleeping
        srv.kill()
        srv.start()
        lam, sqs = srv.lambda_client(), sqs_client(srv.endpoint, *srv.root_keys)
        seen = wait_for(lambda: (lambda s: s if len(s) >= 2 else None)(report(lam, fn)),
                        timeout=60, what="the resumed aggregate")
        # A fresh sandbox after the restart: it saw only what ran after the checkpoint.
        assert [s["event"]["step"] for s in seen] == ["b", "c"]
        wait_for(lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])[
            "Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0", what="the delete")
        assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=3).get("Messages") is None
    finally:
        if srv.alive():
            assert srv.stop() == 0, srv.stderr()
