"""`GET /ember/v1/metrics`: the node's histograms in Prometheus' text format, for the root
account only; an event source mapping batch is counted in both pipeline histograms."""

from __future__ import annotations

import time
import uuid

import pytest

import embertest as et
from test_sqs import sqs_client

HISTOGRAMS = ("ember_poll_to_handler_seconds", "ember_send_to_handler_seconds")


def metrics(server, key=None, secret=None) -> tuple[int, dict, str]:
    status, headers, body = et.signed_request(server, "GET", "/ember/v1/metrics", key=key,
                                              secret=secret, service="ember")
    return status, headers, body.decode()


def samples(text: str) -> dict[str, float]:
    """`name{labels}` → value, for every sample line."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def wait_counted(server, before: dict, what: str) -> dict:
    """The samples once every histogram has counted more than in `before` (60 s at most)."""
    deadline = time.monotonic() + 60
    while True:
        after = samples(metrics(server)[2])
        if all(after[f"{n}_count"] > before[f"{n}_count"] for n in HISTOGRAMS):
            return after
        assert time.monotonic() < deadline, f"{what} was not counted within 60 s"
        time.sleep(0.1)


def test_metrics_exposition_format(server):
    status, headers, text = metrics(server)
    assert status == 200, text
    assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers
    values = samples(text)
    for name in HISTOGRAMS:
        assert f"# TYPE {name} histogram" in text, text
        buckets = [(k, v) for k, v in values.items() if k.startswith(f"{name}_bucket")]
        assert buckets[-1][0] == f'{name}_bucket{{le="+Inf"}}', buckets
        assert [v for _, v in buckets] == sorted(v for _, v in buckets), "buckets are cumulative"
        assert buckets[-1][1] == values[f"{name}_count"]
        assert f"{name}_sum" in values


def test_metrics_are_root_only(server, other):
    status, headers, text = metrics(server, other.key, other.secret)
    assert status == 403, text
    assert headers.get("x-amzn-errortype", "").startswith("AccessDeniedException"), headers
    status, _, _ = et.http_request(server.endpoint, "GET", "/ember/v1/metrics")
    assert status == 403


@pytest.mark.skipif(et.PY_RUNTIME is None, reason="this host has no Python runtime")
def test_a_mapping_batch_is_counted(server, lam, fn_name):
    sqs = sqs_client(server.endpoint, *server.root_keys)
    url = sqs.create_queue(QueueName=f"metrics-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    et.create_function(lam, fn_name)
    before = samples(metrics(server)[2])
    mapping = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn_name)
    try:
        sqs.send_message(QueueUrl=url, MessageBody="counted")
        after = wait_counted(server, before, "the batch")
        # The hand-off itself is far below a minute: it lands in a finite bucket.
        assert (after['ember_poll_to_handler_seconds_bucket{le="60"}']
                > before['ember_poll_to_handler_seconds_bucket{le="60"}'])
        # The batch's REPORT line (logged by the poller) carries the same two figures.
        deadline = time.monotonic() + 10
        while not any(fn_name in line and "Poll To Handler: " in line
                      and "Send To Handler: " in line for line in server.stderr().splitlines()):
            assert time.monotonic() < deadline, "no REPORT line with the event latencies"
            time.sleep(0.1)
    finally:
        lam.delete_event_source_mapping(UUID=mapping["UUID"])
        lam.delete_function(FunctionName=fn_name)


def test_queued_events_report_their_latency(server, lam, fn_name):
    """Asynchronous events are counted like mapping batches and routed messages (the
    worker manager records every queued event's latencies)."""
    et.create_function(lam, fn_name)
    before = samples(metrics(server)[2])
    try:
        assert lam.invoke(FunctionName=fn_name, InvocationType="Event",
                          Payload=b"{}")["StatusCode"] == 202
        wait_counted(server, before, "the event")
    finally:
        lam.delete_function(FunctionName=fn_name)
