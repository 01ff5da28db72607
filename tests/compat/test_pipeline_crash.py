"""Crash safety of the event pipeline: an SQS queue with a dead-letter queue, mapped to a
function, while `ember serve` is killed with SIGKILL again and again and restarted on the
same data directory.

Every acknowledged message must in the end have been processed at least once or be in
the dead-letter queue; nothing may be lost. Processing is seen from outside: sandboxes
have no network, so the function prints `processed=<messageId>;` and the server logs each
mapping batch's function output (the `log` field of "event source mapping batch
invoked"), which the test reads from the server's stderr files of every start. A batch
whose function ran but whose log line was not written before a kill is not deleted
either, so it is processed (and logged) again later: the count of duplicates printed is
therefore a lower bound on the runs of the handler that repeated.

Poison messages (their handler reports them failed with ReportBatchItemFailures) must
reach the dead-letter queue and never be reported processed.

Marked `load` (it takes about half a minute): deselect it with `-m "not load"`.
"""

from __future__ import annotations

import collections
import json
import random
import re
import signal
import time

import pytest

import embertest as et
from test_load import _register_marker
from test_sqs import sqs_client

_register_marker("load", "the long-running load test (deselect with -m 'not load')")

pytestmark = [
    pytest.mark.load,
    pytest.mark.skipif(et.PY_RUNTIME is None, reason="this host has no Python runtime"),
]

N = 300
POISON = 6
KILLS = 4
# Processed lines a server instance must have logged before it is killed.
PROCESSED_BEFORE_KILL = 20
MAX_RECEIVE = 4
VISIBILITY = 2

HANDLER = """
import time

def handler(event, context):
    failures = []
    for r in event["Records"]:
        if r["body"].startswith("poison"):
            failures.append({"itemIdentifier": r["messageId"]})
            continue
        time.sleep(0.02)
        print("processed=%s;" % r["messageId"])
    return {"batchItemFailures": failures}
"""

PROCESSED = re.compile(r"processed=([0-9A-Za-z-]+);")


def processed_ids(paths) -> list[str]:
    ids = []
    for path in paths:
        with open(path, "rb") as f:
            for line in f.read().decode(errors="replace").splitlines():
                if "event source mapping batch invoked" in line:
                    ids += PROCESSED.findall(line)
    return ids


def pending(sqs, url) -> int:
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed"])["Attributes"]
    return sum(int(v) for v in a.values())



def test_acknowledged_messages_survive_kill_9_while_processed(servers, tmp_path):
    # One server object, started again after each kill: each start logs to a file of
    # its own (`<data-dir>.stderr.<start>.log`).
    s = et.EmberServer(data_dir=str(tmp_path / "data"))
    servers.append(s)
    logs = []

    def start() -> et.EmberServer:
        s.start()
        logs.append(s.stderr_path)
        return s

    s = start()
    sqs = sqs_client(s.endpoint, *s.root_keys)
    lam = s.lambda_client()
    dlq_url = sqs.create_queue(QueueName="crash-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName="crash", Attributes={
        "VisibilityTimeout": str(VISIBILITY),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": str(MAX_RECEIVE)}),
    })["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]

    bodies = [f"poison {i}" if i % (N // POISON) == 0 else f"work {i}" for i in range(N)]
    acked, poison = set(), set()
    for start_at in range(0, N, 10):
        r = sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": bodies[i]} for i in range(start_at, start_at + 10)])
        assert not r["Failed"], r["Failed"]
        for e in r["Successful"]:
            acked.add(e["MessageId"])
            if bodies[int(e["Id"])].startswith("poison"):
                poison.add(e["MessageId"])
    assert len(acked) == N and len(poison) == POISON

    et.create_function(lam, "crash-worker", et.make_zip({"app.py": HANDLER}), Timeout=30)
    lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName="crash-worker", BatchSize=10,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        ScalingConfig={"MaximumConcurrency": 2})

    kills = 0
    for _ in range(KILLS):
        deadline = time.monotonic() + 60
        while len(processed_ids([s.stderr_path])) < PROCESSED_BEFORE_KILL:
            assert s.alive(), s.stderr()
            assert time.monotonic() < deadline, f"nothing processed within 60 s:\n{s.stderr()}"
            time.sleep(0.05)
        # Most likely in the middle of a batch (a batch of 10 takes ~0.2 s).
        time.sleep(random.uniform(0, 0.3))
        assert s.kill() == -signal.SIGKILL
        kills += 1
        start()
    processed_before_last_start = set(processed_ids(logs[:-1]))
    assert acked - processed_before_last_start, "everything was processed before the last kill"

    sqs = sqs_client(s.endpoint, *s.root_keys)
    deadline = time.monotonic() + 120
    while pending(sqs, url) > 0:
        assert time.monotonic() < deadline, f"the queue did not drain:\n{s.stderr()}"
        time.sleep(0.2)
    dead = set()
    while True:
        got = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10,
                                  VisibilityTimeout=60).get("Messages", [])
        if not got:
            break
        dead.update(m["MessageId"] for m in got)

    runs = processed_ids(logs)
    seen = collections.Counter(runs)
    processed = set(seen)
    duplicates = len(runs) - len(processed)
    lost = acked - processed - dead
    print(f"\npipeline crash test: N={N} ({POISON} poison), kills={kills}, "
          f"processed={len(processed)} (handler runs logged: {len(runs)}, "
          f"duplicates: {duplicates}, messages processed more than once: "
          f"{sum(1 for c in seen.values() if c > 1)}), in the DLQ: {len(dead)} "
          f"(of which not poison: {len(dead - poison)}), lost: {len(lost)}")
    assert not lost, f"{len(lost)} acknowledged messages were neither processed nor dead-lettered"
    assert processed <= acked, "a message nobody sent was processed"
    assert poison <= dead, "a poison message did not reach the dead-letter queue"
    assert not (poison & processed), "a poison message was reported processed"
    assert s.stop(signal.SIGTERM) == 0, s.stderr()
