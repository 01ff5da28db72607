"""The SQS API (AWS JSON 1.0, as current boto3 speaks it) on Ember's endpoint: queues,
messages, leases, long polling, dead-letter queues, FIFO queues, batch errors, account
isolation, error shapes, and durability of acknowledged sends across kill -9."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import struct
import threading
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import embertest as et

# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def sqs_client(endpoint: str, key: str, secret: str, *, validate: bool = True):
    """A boto3 SQS client for `endpoint` with no retries. `validate=False` turns off
    client-side parameter validation so the server's own checks are exercised."""
    cfg = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        parameter_validation=validate,
    )
    session = boto3.Session(botocore_session=et._isolated_botocore_session())
    return session.client(
        "sqs",
        endpoint_url=endpoint,
        region_name=et.REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=cfg,
    )


def error_of(exc: ClientError) -> tuple[str, int, str]:
    e = exc.response["Error"]
    return e["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"], e.get("Message", "")


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def md5_of_attributes(attributes: dict) -> str:
    """SQS's MD5OfMessageAttributes, computed independently: for each attribute in name
    order, length-prefixed name and type, a transport byte (1 string, 2 binary), and the
    length-prefixed value."""
    h = hashlib.md5()

    def prefixed(b: bytes):
        h.update(struct.pack(">I", len(b)))
        h.update(b)

    for name in sorted(attributes):
        a = attributes[name]
        prefixed(name.encode())
        prefixed(a["DataType"].encode())
        if "StringValue" in a:
            h.update(b"\x01")
            prefixed(a["StringValue"].encode())
        else:
            h.update(b"\x02")
            prefixed(a["BinaryValue"])
    return h.hexdigest()


def queue_name(tag: str = "q", fifo: bool = False) -> str:
    name = f"{tag}-{uuid.uuid4().hex[:12]}"
    return name + ".fifo" if fifo else name


def receive_all(client, url: str, expected: int, timeout: float = 30.0, **kw) -> list:
    """Receive until `expected` messages arrived (each leased for a minute) or timeout."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        r = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60,
                                   WaitTimeSeconds=1, **kw)
        got.extend(r.get("Messages", []))
    return got


@pytest.fixture(scope="module")
def sqs(server):
    return sqs_client(server.endpoint, *server.root_keys)


@pytest.fixture(scope="module")
def sqs_raw(server):
    return sqs_client(server.endpoint, *server.root_keys, validate=False)


@pytest.fixture(scope="module")
def other_sqs(server, other):
    return sqs_client(server.endpoint, other.key, other.secret)


@pytest.fixture
def queue(sqs):
    """A fresh standard queue (1 s visibility timeout)."""
    return sqs.create_queue(QueueName=queue_name(), Attributes={"VisibilityTimeout": "1"})["QueueUrl"]


# --------------------------------------------------------------------------------------
# Queues
# --------------------------------------------------------------------------------------


def test_queue_lifecycle(sqs, server, root_id):
    name = queue_name("life")
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "7"})["QueueUrl"]
    assert url == f"{server.endpoint}/{root_id}/{name}"
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    # Idempotent with the same attribute values; a different value is refused.
    assert sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "7"})["QueueUrl"] == url
    assert sqs.create_queue(QueueName=name)["QueueUrl"] == url
    with pytest.raises(sqs.exceptions.QueueNameExists) as ei:
        sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "8"})
    code, status, message = error_of(ei.value)
    assert (code, status) == ("QueueAlreadyExists", 400)
    assert "VisibilityTimeout" in message

    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as ei:
        sqs.get_queue_url(QueueName=name)
    assert error_of(ei.value)[:2] == ("AWS.SimpleQueueService.NonExistentQueue", 400)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=url, MessageBody="x")
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.delete_queue(QueueUrl=url)


def test_queue_names(sqs_raw):
    for bad in ["", "has space", "a" * 81, "dot.ted", "x.fifo"]:
        with pytest.raises(ClientError) as ei:
            sqs_raw.create_queue(QueueName=bad)
        assert error_of(ei.value)[0] in ("InvalidParameterValue", "MissingParameter"), bad
    with pytest.raises(ClientError) as ei:
        sqs_raw.create_queue(QueueName="nofifo", Attributes={"FifoQueue": "true"})
    assert error_of(ei.value)[0] == "InvalidParameterValue"
    assert sqs_raw.create_queue(QueueName="a" * 75 + ".fifo", Attributes={"FifoQueue": "true"})


def test_list_queues_prefix_and_pages(sqs, fresh_account, server):
    c = sqs_client(server.endpoint, fresh_account.key, fresh_account.secret)
    assert c.list_queues().get("QueueUrls", []) == []
    names = [f"lst-{i:02d}" for i in range(7)] + ["other-1"]
    urls = {n: c.create_queue(QueueName=n)["QueueUrl"] for n in names}
    assert c.list_queues()["QueueUrls"] == [urls[n] for n in sorted(names)]
    assert c.list_queues(QueueNamePrefix="lst-")["QueueUrls"] == [urls[n] for n in names[:7]]
    assert "NextToken" not in c.list_queues(QueueNamePrefix="lst-")
    # Pages of 3 with NextToken, as boto3's paginator walks them.
    pages = list(c.get_paginator("list_queues").paginate(
        QueueNamePrefix="lst-", PaginationConfig={"PageSize": 3}))
    assert [len(p["QueueUrls"]) for p in pages] == [3, 3, 1]
    assert [u for p in pages for u in p["QueueUrls"]] == [urls[n] for n in names[:7]]
    with pytest.raises(ClientError) as ei:
        sqs_client(server.endpoint, fresh_account.key, fresh_account.secret, validate=False) \
            .list_queues(MaxResults=1001)
    assert error_of(ei.value)[0] == "InvalidParameterValue"


def test_queue_attributes(sqs):
    url = sqs.create_queue(QueueName=queue_name("attrs"), Attributes={
        "VisibilityTimeout": "20", "MessageRetentionPeriod": "604800", "DelaySeconds": "0",
        "ReceiveMessageWaitTimeSeconds": "10", "MaximumMessageSize": "2048"})["QueueUrl"]
    before = time.time()
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert set(a) == {
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed",
        "ApproximateNumberOfMessagesNotVisible", "CreatedTimestamp", "DelaySeconds",
        "LastModifiedTimestamp", "MaximumMessageSize", "MessageRetentionPeriod", "QueueArn",
        "ReceiveMessageWaitTimeSeconds", "SqsManagedSseEnabled", "VisibilityTimeout"}
    account, name = url.split("/")[-2:]
    assert a["QueueArn"] == f"arn:aws:sqs:us-east-1:{account}:{name}"
    assert (a["VisibilityTimeout"], a["MessageRetentionPeriod"], a["MaximumMessageSize"],
            a["ReceiveMessageWaitTimeSeconds"]) == ("20", "604800", "2048", "10")
    assert abs(int(a["CreatedTimestamp"]) - before) < 30
    only = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn", "DelaySeconds"])
    assert set(only["Attributes"]) == {"QueueArn", "DelaySeconds"}

    sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "420", "VisibilityTimeout": "69"})
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (a["DelaySeconds"], a["VisibilityTimeout"]) == ("420", "69")
    assert int(a["LastModifiedTimestamp"]) >= int(a["CreatedTimestamp"])

    with pytest.raises(sqs.exceptions.InvalidAttributeName) as ei:
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Bogus"])
    assert error_of(ei.value)[0] == "InvalidAttributeName"
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Bogus": "1"})
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"FifoQueue": "true"})
    for k, v in [("VisibilityTimeout", "43201"), ("MessageRetentionPeriod", "59"),
                 ("DelaySeconds", "901"), ("ReceiveMessageWaitTimeSeconds", "21"),
                 ("MaximumMessageSize", "1023"), ("VisibilityTimeout", "soon")]:
        with pytest.raises(sqs.exceptions.InvalidAttributeValue):
            sqs.set_queue_attributes(QueueUrl=url, Attributes={k: v})
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.create_queue(QueueName=queue_name(), Attributes={"ContentBasedDeduplication": "true"})


def test_approximate_counts(sqs):
    url = sqs.create_queue(QueueName=queue_name("counts"))["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="now-1")
    sqs.send_message(QueueUrl=url, MessageBody="now-2")
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60)
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed"])["Attributes"]
    assert a == {"ApproximateNumberOfMessages": "1", "ApproximateNumberOfMessagesNotVisible": "1",
                 "ApproximateNumberOfMessagesDelayed": "1"}


def test_purge_queue(sqs):
    url = sqs.create_queue(QueueName=queue_name("purge"))["QueueUrl"]
    for i in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    sqs.purge_queue(QueueUrl=url)
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    # SQS allows one purge per queue every 60 seconds.
    with pytest.raises(sqs.exceptions.PurgeQueueInProgress) as ei:
        sqs.purge_queue(QueueUrl=url)
    assert error_of(ei.value)[:2] == ("AWS.SimpleQueueService.PurgeQueueInProgress", 403)


# --------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------


def test_send_receive_delete_with_digests(sqs, queue, root_id):
    body = "héllo wörld ✓ 😀 <xml/> {\"json\": true}\t\n"
    attributes = {
        "Foo": {"DataType": "String", "StringValue": "Bar"},
        "count": {"DataType": "Number", "StringValue": "-12.5e3"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xffbinary"},
        "custom.type": {"DataType": "Number.int", "StringValue": "7"},
        "img": {"DataType": "Binary.gif", "BinaryValue": b"GIF89a"},
    }
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    sent = sqs.send_message(QueueUrl=queue, MessageBody=body, MessageAttributes=attributes,
                            MessageSystemAttributes={"AWSTraceHeader": {
                                "DataType": "String", "StringValue": trace}})
    assert sent["MD5OfMessageBody"] == md5_hex(body.encode())
    assert sent["MD5OfMessageAttributes"] == md5_of_attributes(attributes)
    assert sent["MD5OfMessageSystemAttributes"] == md5_of_attributes(
        {"AWSTraceHeader": {"DataType": "String", "StringValue": trace}})
    uuid.UUID(sent["MessageId"])
    assert "SequenceNumber" not in sent

    before = int(time.time() * 1000)
    r = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["All"],
                            MessageSystemAttributeNames=["All"], VisibilityTimeout=30)
    (m,) = r["Messages"]
    assert (m["MessageId"], m["Body"], m["MD5OfBody"]) == (sent["MessageId"], body, md5_hex(body.encode()))
    assert m["MessageAttributes"] == attributes
    assert m["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    sa = m["Attributes"]
    assert set(sa) == {"SenderId", "SentTimestamp", "ApproximateReceiveCount",
                       "ApproximateFirstReceiveTimestamp", "AWSTraceHeader"}
    assert sa["SenderId"] == root_id and sa["ApproximateReceiveCount"] == "1"
    assert sa["AWSTraceHeader"] == trace
    assert abs(int(sa["SentTimestamp"]) - before) < 30_000
    assert int(sa["ApproximateFirstReceiveTimestamp"]) >= int(sa["SentTimestamp"])

    sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    # Deleting a deleted message again succeeds, as in SQS.
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    time.sleep(1.2)
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)


def test_known_sqs_digest(sqs, queue):
    """A digest recorded from real SQS for {"Foo": String "Bar"}."""
    r = sqs.send_message(QueueUrl=queue, MessageBody="msg",
                         MessageAttributes={"Foo": {"DataType": "String", "StringValue": "Bar"}})
    assert r["MD5OfMessageBody"] == "6e2baaf3b97dbeef01c0043275f9a0e7"
    assert r["MD5OfMessageAttributes"] == "ae7155c6026991b6d54b11589678bf9c"


def test_attribute_name_filters(sqs, queue):
    attributes = {n: {"DataType": "String", "StringValue": n}
                  for n in ("a.one", "a.two", "b.one", "c")}
    sqs.send_message(QueueUrl=queue, MessageBody="filters", MessageAttributes=attributes)

    def receive(**kw):
        (m,) = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0, WaitTimeSeconds=1, **kw)["Messages"]
        return m

    m = receive()
    assert "MessageAttributes" not in m and "MD5OfMessageAttributes" not in m and "Attributes" not in m
    m = receive(MessageAttributeNames=["a.*", "c"])
    assert set(m["MessageAttributes"]) == {"a.one", "a.two", "c"}
    assert m["MD5OfMessageAttributes"] == md5_of_attributes(
        {k: attributes[k] for k in ("a.one", "a.two", "c")})
    m = receive(MessageAttributeNames=[".*"])
    assert set(m["MessageAttributes"]) == set(attributes)
    # The deprecated AttributeNames and MessageSystemAttributeNames add up.
    m = receive(AttributeNames=["SenderId"], MessageSystemAttributeNames=["ApproximateReceiveCount"])
    assert set(m["Attributes"]) == {"SenderId", "ApproximateReceiveCount"}


def test_message_validation(sqs, sqs_raw):
    url = sqs.create_queue(QueueName=queue_name("valid"), Attributes={"MaximumMessageSize": "1024"})["QueueUrl"]
    cases = [
        (dict(MessageBody="x" * 1025), "InvalidParameterValue", "shorter than 1024 bytes"),
        (dict(MessageBody="x" * 1020, MessageAttributes={"abc": {"DataType": "String", "StringValue": "z"}}),
         "InvalidParameterValue", "shorter than 1024 bytes"),
        (dict(MessageBody="bad \x00 char"), "InvalidMessageContents", "Invalid characters"),
        (dict(MessageBody="bad \ufffe char"), "InvalidMessageContents", "Invalid characters"),
        (dict(MessageBody="lone \ud800 surrogate"), "InvalidMessageContents", "Invalid characters"),
        (dict(MessageBody=""), "MissingParameter", "MessageBody"),
        (dict(MessageBody="x", DelaySeconds=901), "InvalidParameterValue", "DelaySeconds"),
        (dict(MessageBody="x", DelaySeconds=-1), "InvalidParameterValue", "DelaySeconds"),
        (dict(MessageBody="x", MessageAttributes={"n": {"DataType": "Number", "StringValue": "abc"}}),
         "InvalidParameterValue", "number"),
        (dict(MessageBody="x", MessageAttributes={"AWS.x": {"DataType": "String", "StringValue": "v"}}),
         "InvalidParameterValue", "AWS."),
        (dict(MessageBody="x", MessageAttributes={"s": {"DataType": "String", "StringValue": ""}}),
         "InvalidParameterValue", "non-empty"),
        (dict(MessageBody="x", MessageAttributes={"s": {"DataType": "Strange", "StringValue": "v"}}),
         "InvalidParameterValue", "type"),
        (dict(MessageBody="x", MessageAttributes={f"a{i}": {"DataType": "String", "StringValue": "v"}
                                                  for i in range(11)}),
         "InvalidParameterValue", "exceeds"),
        (dict(MessageBody="x", MessageDeduplicationId="d"), "InvalidParameterValue", "queue type"),
    ]
    for params, code, fragment in cases:
        with pytest.raises(ClientError) as ei:
            sqs_raw.send_message(QueueUrl=url, **params)
        got_code, status, message = error_of(ei.value)
        assert (got_code, status) == (code, 400), (params, message)
        assert fragment.lower() in message.lower(), (params, message)
    # Exactly at the limit is fine (body + name + type + value).
    sqs.send_message(QueueUrl=url, MessageBody="x" * 1014,
                     MessageAttributes={"abc": {"DataType": "String", "StringValue": "z"}})
    for params, fragment in [(dict(MaxNumberOfMessages=11), "MaxNumberOfMessages"),
                             (dict(MaxNumberOfMessages=0), "MaxNumberOfMessages"),
                             (dict(WaitTimeSeconds=21), "WaitTimeSeconds"),
                             (dict(VisibilityTimeout=43201), "VisibilityTimeout")]:
        with pytest.raises(ClientError) as ei:
            sqs_raw.receive_message(QueueUrl=url, **params)
        assert error_of(ei.value)[0] == "InvalidParameterValue"
        assert fragment in error_of(ei.value)[2]


def test_send_message_batch(sqs, sqs_raw, queue):
    entries = [{"Id": f"ok-{i}", "MessageBody": f"body {i}",
                "MessageAttributes": {"i": {"DataType": "Number", "StringValue": str(i)}}}
               for i in range(8)]
    entries.append({"Id": "bad-chars", "MessageBody": "nul \x00"})
    entries.append({"Id": "bad-attr", "MessageBody": "x",
                    "MessageAttributes": {"n": {"DataType": "Number", "StringValue": "NaN"}}})
    r = sqs.send_message_batch(QueueUrl=queue, Entries=entries)
    assert sorted(s["Id"] for s in r["Successful"]) == sorted(f"ok-{i}" for i in range(8))
    for s in r["Successful"]:
        i = int(s["Id"].split("-")[1])
        assert s["MD5OfMessageBody"] == md5_hex(f"body {i}".encode())
        assert s["MD5OfMessageAttributes"] == md5_of_attributes(entries[i]["MessageAttributes"])
    failed = {f["Id"]: f for f in r["Failed"]}
    assert set(failed) == {"bad-chars", "bad-attr"}
    assert failed["bad-chars"]["Code"] == "InvalidMessageContents" and failed["bad-chars"]["SenderFault"]
    assert failed["bad-attr"]["Code"] == "InvalidParameterValue"
    got = receive_all(sqs, queue, 8)
    assert sorted(m["Body"] for m in got) == sorted(f"body {i}" for i in range(8))

    def batch_error(entries):
        with pytest.raises(ClientError) as ei:
            sqs_raw.send_message_batch(QueueUrl=queue, Entries=entries)
        return error_of(ei.value)

    code, status, message = batch_error([{"Id": f"m{i}", "MessageBody": "x"} for i in range(11)])
    assert (code, status) == ("AWS.SimpleQueueService.TooManyEntriesInBatchRequest", 400)
    assert message == "Maximum number of entries per request are 10. You have sent 11."
    assert batch_error([{"Id": "same", "MessageBody": "x"}] * 2)[0] == \
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    assert batch_error([])[0] == "AWS.SimpleQueueService.EmptyBatchRequest"
    assert batch_error([{"Id": "not valid!", "MessageBody": "x"}])[0] == \
        "AWS.SimpleQueueService.InvalidBatchEntryId"
    code, _, message = batch_error([{"Id": f"big{i}", "MessageBody": "y" * 600_000} for i in range(2)])
    assert code == "AWS.SimpleQueueService.BatchRequestTooLong", message
    # botocore raises the modeled exceptions (each client has its own classes).
    with pytest.raises(sqs_raw.exceptions.TooManyEntriesInBatchRequest):
        sqs_raw.send_message_batch(QueueUrl=queue, Entries=[{"Id": f"m{i}", "MessageBody": "x"} for i in range(11)])
    with pytest.raises(sqs_raw.exceptions.BatchEntryIdsNotDistinct):
        sqs_raw.send_message_batch(QueueUrl=queue, Entries=[{"Id": "a", "MessageBody": "x"}] * 2)


def test_visibility_timeout_and_stale_handles(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="lease me")
    first = sqs.receive_message(QueueUrl=queue, MessageSystemAttributeNames=["All"])["Messages"][0]
    assert "Messages" not in sqs.receive_message(QueueUrl=queue), "leased for the queue's 1 s"
    time.sleep(1.3)
    second = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=30,
                                 MessageSystemAttributeNames=["All"])["Messages"][0]
    assert second["MessageId"] == first["MessageId"]
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    assert second["ReceiptHandle"] != first["ReceiptHandle"]
    # SQS: the latest receipt handle is required; an older one succeeds without deleting.
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=first["ReceiptHandle"])
    a = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert a["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"
    # Giving the lease back makes it receivable at once.
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=second["ReceiptHandle"], VisibilityTimeout=0)
    third = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=30)["Messages"][0]
    assert third["MessageId"] == first["MessageId"]
    # The replaced handle no longer changes visibility.
    with pytest.raises(ClientError) as ei:
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=second["ReceiptHandle"], VisibilityTimeout=5)
    code, _, message = error_of(ei.value)
    assert code == "InvalidParameterValue" and "ReceiptHandle" in message
    # Extending works; garbage handles are ReceiptHandleIsInvalid.
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=third["ReceiptHandle"], VisibilityTimeout=120)
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid) as ei:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle="garbage")
    assert error_of(ei.value)[:3] == (
        "ReceiptHandleIsInvalid", 400, 'The input receipt handle "garbage" is not a valid receipt handle.')
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle="garbage", VisibilityTimeout=5)
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=third["ReceiptHandle"])
    with pytest.raises(ClientError) as ei:
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=third["ReceiptHandle"], VisibilityTimeout=5)
    assert error_of(ei.value)[0] == "InvalidParameterValue"


def test_batch_delete_and_change_visibility(sqs, queue):
    sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(4)])
    got = receive_all(sqs, queue, 4)
    assert len(got) == 4
    handles = [m["ReceiptHandle"] for m in got]
    r = sqs.change_message_visibility_batch(QueueUrl=queue, Entries=[
        {"Id": "a", "ReceiptHandle": handles[0], "VisibilityTimeout": 0},
        {"Id": "b", "ReceiptHandle": "garbage", "VisibilityTimeout": 10},
        {"Id": "c", "ReceiptHandle": handles[1], "VisibilityTimeout": 43201},
    ])
    assert [s["Id"] for s in r["Successful"]] == ["a"]
    failed = {f["Id"]: f["Code"] for f in r["Failed"]}
    assert failed == {"b": "ReceiptHandleIsInvalid", "c": "InvalidParameterValue"}
    released = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=60)["Messages"][0]
    assert released["MessageId"] == got[0]["MessageId"]
    handles[0] = released["ReceiptHandle"]
    r = sqs.delete_message_batch(QueueUrl=queue, Entries=[
        *({"Id": f"d{i}", "ReceiptHandle": h} for i, h in enumerate(handles)),
        {"Id": "junk", "ReceiptHandle": "junk"},
    ])
    assert sorted(s["Id"] for s in r["Successful"]) == ["d0", "d1", "d2", "d3"]
    assert [(f["Id"], f["Code"], f["SenderFault"]) for f in r["Failed"]] == [("junk", "ReceiptHandleIsInvalid", True)]
    a = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert (a["ApproximateNumberOfMessages"], a["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.delete_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "ReceiptHandle": "x"} for i in range(11)])
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.change_message_visibility_batch(QueueUrl=queue, Entries=[
            {"Id": "x", "ReceiptHandle": "x", "VisibilityTimeout": 1}] * 2)


def test_delay_seconds(sqs):
    url = sqs.create_queue(QueueName=queue_name("delay"), Attributes={"DelaySeconds": "2"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="queue delay")
    sqs.send_message(QueueUrl=url, MessageBody="no delay", DelaySeconds=0)
    (m,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert m["Body"] == "no delay"
    t0 = time.monotonic()
    r = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)
    assert r["Messages"][0]["Body"] == "queue delay"
    assert time.monotonic() - t0 < 4, "the long poll wakes when the delay ends"


# --------------------------------------------------------------------------------------
# Long polling
# --------------------------------------------------------------------------------------


def test_long_poll_returns_promptly_on_send(sqs, server):
    url = sqs.create_queue(QueueName=queue_name("poll"))["QueueUrl"]
    sender = sqs_client(server.endpoint, *server.root_keys)

    def send_later():
        time.sleep(0.5)
        sender.send_message(QueueUrl=url, MessageBody="ping")

    t = threading.Thread(target=send_later)
    t0 = time.monotonic()
    t.start()
    r = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)
    elapsed = time.monotonic() - t0
    t.join()
    assert r["Messages"][0]["Body"] == "ping"
    assert 0.4 < elapsed < 2.0, elapsed


def test_long_poll_waits_then_returns_empty(sqs):
    url = sqs.create_queue(QueueName=queue_name("empty"))["QueueUrl"]
    t0 = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    assert 0.9 < time.monotonic() - t0 < 3
    # The queue's ReceiveMessageWaitTimeSeconds applies when the request has none.
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"ReceiveMessageWaitTimeSeconds": "1"})
    t0 = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    assert 0.9 < time.monotonic() - t0 < 3
    t0 = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    assert time.monotonic() - t0 < 0.5


def test_long_poll_wakes_when_a_lease_ends(sqs):
    url = sqs.create_queue(QueueName=queue_name("lease-wake"))["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="comes back")
    sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)
    t0 = time.monotonic()
    r = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10, MessageSystemAttributeNames=["All"])
    assert r["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "2"
    assert time.monotonic() - t0 < 3


# --------------------------------------------------------------------------------------
# Dead-letter queues
# --------------------------------------------------------------------------------------


def test_dead_letter_queue_after_max_receive_count(sqs):
    dlq = sqs.create_queue(QueueName=queue_name("dlq"))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    src = sqs.create_queue(QueueName=queue_name("src"),
                           Attributes={"RedrivePolicy": policy, "VisibilityTimeout": "0"})["QueueUrl"]
    src_arn = sqs.get_queue_attributes(QueueUrl=src, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    a = sqs.get_queue_attributes(QueueUrl=src, AttributeNames=["RedrivePolicy"])["Attributes"]
    assert json.loads(a["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}

    poison = sqs.send_message(QueueUrl=src, MessageBody="poison",
                              MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}})["MessageId"]
    for expected in ("1", "2"):
        (m,) = sqs.receive_message(QueueUrl=src, MessageSystemAttributeNames=["All"])["Messages"]
        assert m["Attributes"]["ApproximateReceiveCount"] == expected
    # Other messages keep flowing while the poison one moves on the next receive.
    healthy = sqs.send_message(QueueUrl=src, MessageBody="healthy")["MessageId"]
    r = sqs.receive_message(QueueUrl=src, MaxNumberOfMessages=10)
    assert [m["MessageId"] for m in r["Messages"]] == [healthy]
    (moved,) = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=2, MessageAttributeNames=["All"],
                                   MessageSystemAttributeNames=["All"])["Messages"]
    assert (moved["MessageId"], moved["Body"]) == (poison, "poison")
    assert moved["MessageAttributes"] == {"k": {"DataType": "String", "StringValue": "v"}}
    assert moved["Attributes"]["DeadLetterQueueSourceArn"] == src_arn
    assert moved["Attributes"]["ApproximateReceiveCount"] == "3"

    # The target must exist and be of the same type; "" removes the policy.
    missing = json.dumps({"deadLetterTargetArn": dlq_arn + "-nope", "maxReceiveCount": 2})
    for bad in [missing, "not json", json.dumps({"deadLetterTargetArn": dlq_arn}),
                json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 0})]:
        with pytest.raises(ClientError) as ei:
            sqs.set_queue_attributes(QueueUrl=src, Attributes={"RedrivePolicy": bad})
        assert error_of(ei.value)[0] == "InvalidParameterValue", bad
    sqs.set_queue_attributes(QueueUrl=src, Attributes={"RedrivePolicy": ""})
    assert "RedrivePolicy" not in sqs.get_queue_attributes(QueueUrl=src, AttributeNames=["All"])["Attributes"]


# --------------------------------------------------------------------------------------
# FIFO queues
# --------------------------------------------------------------------------------------


def test_fifo_order_per_group_and_in_flight_groups(sqs):
    url = sqs.create_queue(QueueName=queue_name("order", fifo=True),
                           Attributes={"FifoQueue": "true", "VisibilityTimeout": "30"})["QueueUrl"]
    sent = []
    for i in range(5):
        for g in ("A", "B"):
            r = sqs.send_message(QueueUrl=url, MessageBody=f"{g}{i}", MessageGroupId=g,
                                 MessageDeduplicationId=f"{g}-{i}")
            sent.append((g, int(r["SequenceNumber"])))
    assert [s for _, s in sent] == sorted(s for _, s in sent)
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (a["FifoQueue"], a["ContentBasedDeduplication"], a["DeduplicationScope"],
            a["FifoThroughputLimit"]) == ("true", "false", "queue", "perQueue")

    (first,) = sqs.receive_message(QueueUrl=url)["Messages"]
    assert first["Body"] == "A0"
    # A is in flight: the next receive serves B from its start, never A1.
    r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"])
    assert [m["Body"] for m in r["Messages"]] == ["B0", "B1", "B2", "B3", "B4"]
    m = r["Messages"][0]["Attributes"]
    assert (m["MessageGroupId"], m["MessageDeduplicationId"]) == ("B", "B-0")
    assert int(m["SequenceNumber"]) == sent[1][1]
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
    r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    assert [m["Body"] for m in r["Messages"]] == ["A1", "A2", "A3", "A4"]


def test_fifo_deduplication(sqs, sqs_raw):
    url = sqs.create_queue(QueueName=queue_name("dedup", fifo=True),
                           Attributes={"FifoQueue": "true"})["QueueUrl"]
    a = sqs.send_message(QueueUrl=url, MessageBody="one", MessageGroupId="g", MessageDeduplicationId="d1")
    b = sqs.send_message(QueueUrl=url, MessageBody="two", MessageGroupId="g", MessageDeduplicationId="d1")
    assert (a["MessageId"], a["SequenceNumber"]) == (b["MessageId"], b["SequenceNumber"])
    r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    assert [m["Body"] for m in r["Messages"]] == ["one"]
    # Without ContentBasedDeduplication a deduplication id is required.
    with pytest.raises(ClientError) as ei:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g")
    assert "ContentBasedDeduplication" in error_of(ei.value)[2]
    with pytest.raises(ClientError) as ei:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageDeduplicationId="x")
    assert error_of(ei.value)[:3] == ("MissingParameter", 400, "The request must contain the parameter MessageGroupId.")
    with pytest.raises(ClientError) as ei:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="z",
                         DelaySeconds=2)
    assert error_of(ei.value)[0] == "InvalidParameterValue"
    with pytest.raises(ClientError) as ei:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g 1", MessageDeduplicationId="z")
    assert "MessageGroupId" in error_of(ei.value)[2]

    cbd = sqs.create_queue(QueueName=queue_name("cbd", fifo=True),
                           Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    x = sqs.send_message(QueueUrl=cbd, MessageBody="same", MessageGroupId="g1")
    y = sqs.send_message(QueueUrl=cbd, MessageBody="same", MessageGroupId="g2")
    z = sqs.send_message(QueueUrl=cbd, MessageBody="same", MessageGroupId="g1", MessageDeduplicationId="own")
    assert x["MessageId"] == y["MessageId"] != z["MessageId"]
    r = sqs.receive_message(QueueUrl=cbd, MaxNumberOfMessages=10, MessageSystemAttributeNames=["MessageDeduplicationId"])
    ids = sorted(m["Attributes"]["MessageDeduplicationId"] for m in r["Messages"])
    assert ids == sorted(["own", hashlib.sha256(b"same").hexdigest()])


def test_fifo_batch_keeps_order_and_dlq_blocks_only_its_group(sqs):
    dlq = sqs.create_queue(QueueName=queue_name("fdlq", fifo=True), Attributes={"FifoQueue": "true"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    with pytest.raises(ClientError):  # a standard queue can't use a FIFO dead-letter queue
        sqs.create_queue(QueueName=queue_name("std"), Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})})
    url = sqs.create_queue(QueueName=queue_name("fsrc", fifo=True), Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "0",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})})["QueueUrl"]
    r = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": f"e{i}", "MessageBody": f"p{i}", "MessageGroupId": "P"} for i in range(3)])
    assert len(r["Successful"]) == 3
    sqs.send_message(QueueUrl=url, MessageBody="g0", MessageGroupId="G")
    (p0,) = sqs.receive_message(QueueUrl=url)["Messages"]
    assert p0["Body"] == "p0"
    # p0 used its one receive: the next receive moves it and continues with p1 in order;
    # group G is unaffected (groups may come in any order, each in its own order).
    r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)
    bodies = [m["Body"] for m in r["Messages"]]
    assert [b for b in bodies if b.startswith("p")] == ["p1", "p2"]
    assert sorted(bodies) == ["g0", "p1", "p2"]
    (dead,) = sqs.receive_message(QueueUrl=dlq, MessageSystemAttributeNames=["All"])["Messages"]
    assert dead["Body"] == "p0" and dead["Attributes"]["MessageGroupId"] == "P"


# --------------------------------------------------------------------------------------
# Accounts
# --------------------------------------------------------------------------------------


def test_queues_are_private_to_their_account(sqs, other_sqs, other, root_id):
    name = queue_name("private")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="root's secret")
    for call in (
        lambda: other_sqs.get_queue_url(QueueName=name),
        lambda: other_sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=root_id),
        lambda: other_sqs.send_message(QueueUrl=url, MessageBody="x"),
        lambda: other_sqs.receive_message(QueueUrl=url),
        lambda: other_sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]),
        lambda: other_sqs.purge_queue(QueueUrl=url),
        lambda: other_sqs.delete_queue(QueueUrl=url),
    ):
        with pytest.raises(other_sqs.exceptions.QueueDoesNotExist):
            call()
    assert url not in other_sqs.list_queues().get("QueueUrls", [])
    # The same name in the other account is a different queue.
    theirs = other_sqs.create_queue(QueueName=name)["QueueUrl"]
    assert theirs != url and f"/{other.account_id}/{name}" in theirs
    assert "Messages" not in other_sqs.receive_message(QueueUrl=theirs)
    (m,) = sqs.receive_message(QueueUrl=url)["Messages"]
    assert m["Body"] == "root's secret"
    # A receipt handle from one account's queue is meaningless on another's.
    with pytest.raises(other_sqs.exceptions.ReceiptHandleIsInvalid):
        other_sqs.delete_message(QueueUrl=theirs, ReceiptHandle=m["ReceiptHandle"])


def test_queue_url_forms(sqs, root_id):
    name = queue_name("forms")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    for form in (url, url.replace("127.0.0.1", "localhost"), f"https://sqs.us-east-1.amazonaws.com/{root_id}/{name}",
                 name):
        sqs.get_queue_attributes(QueueUrl=form, AttributeNames=["QueueArn"])
    with pytest.raises(ClientError) as ei:
        sqs.get_queue_attributes(QueueUrl="http://x/a/b/c", AttributeNames=["QueueArn"])
    assert error_of(ei.value)[0] == "InvalidAddress"


# --------------------------------------------------------------------------------------
# The wire: error shapes, authentication, unknown operations
# --------------------------------------------------------------------------------------


def raw_sqs(server, target: str, body: dict | bytes, *, key=None, secret=None, service="sqs", sign=True):
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": f"AmazonSQS.{target}"}
    if sign:
        key, secret = (key, secret) if key else server.root_keys
        headers = et.sign("POST", f"{server.endpoint}/", payload, key, secret, service=service,
                          headers=headers)
    status, h, data = et.http_request(server.endpoint, "POST", "/", payload, headers)
    return status, h, json.loads(data) if data else {}


def test_error_wire_shape(server):
    status, h, body = raw_sqs(server, "GetQueueUrl", {"QueueName": "does-not-exist-" + uuid.uuid4().hex})
    assert status == 400
    assert h["content-type"] == "application/x-amz-json-1.0"
    assert h["x-amzn-query-error"] == "AWS.SimpleQueueService.NonExistentQueue;Sender"
    assert body == {"__type": "com.amazonaws.sqs#QueueDoesNotExist",
                    "message": "The specified queue does not exist."}
    assert h.get("x-amzn-requestid")

    status, h, body = raw_sqs(server, "NoSuchOperation", {})
    assert status == 400 and body["__type"].endswith("UnknownOperationException")
    status, h, body = raw_sqs(server, "TagQueue", {"QueueUrl": "q", "Tags": {}})
    assert (status, h["x-amzn-query-error"]) == (400, "AWS.SimpleQueueService.UnsupportedOperation;Sender")
    status, h, body = raw_sqs(server, "ListQueues", b"{not json")
    assert status == 400 and body["__type"].endswith("SerializationException")
    status, h, body = raw_sqs(server, "ReceiveMessage", {"QueueUrl": "x", "MaxNumberOfMessages": "ten"})
    assert status == 400 and body["__type"].endswith("SerializationException")
    status, h, body = raw_sqs(server, "SendMessage", {"MessageBody": "x"})
    assert (status, h["x-amzn-query-error"]) == (400, "MissingParameter;Sender")


def test_authentication_errors_are_json_1_0(server):
    # Unsigned: refused before dispatch, still in SQS's shape.
    status, h, body = raw_sqs(server, "ListQueues", {}, sign=False)
    assert status in (400, 403) and h["content-type"] == "application/x-amz-json-1.0"
    assert "__type" in body and h["x-amzn-query-error"].endswith(";Sender")
    # Signed for another service.
    status, h, body = raw_sqs(server, "ListQueues", {}, service="lambda")
    assert status == 403 and body["__type"].endswith("InvalidSignatureException")
    assert "sqs" in body["message"]
    # boto3 sees the codes SQS users match on.
    c = sqs_client(server.endpoint, "AKIADOESNOTEXIST0000", "nope")
    with pytest.raises(ClientError) as ei:
        c.list_queues()
    assert error_of(ei.value)[:2] == ("InvalidClientTokenId", 403)
    c = sqs_client(server.endpoint, server.root_keys[0], server.root_keys[1] + "x")
    with pytest.raises(ClientError) as ei:
        c.list_queues()
    assert error_of(ei.value)[:2] == ("SignatureDoesNotMatch", 403)


# --------------------------------------------------------------------------------------
# Durability and shutdown (servers of their own)
# --------------------------------------------------------------------------------------



def test_acknowledged_sends_survive_kill_9(servers, tmp_path):
    data_dir = str(tmp_path / "data")
    s = et.EmberServer(data_dir=data_dir).start()
    servers.append(s)
    c = sqs_client(s.endpoint, *s.root_keys)
    url = c.create_queue(QueueName="durable")["QueueUrl"]
    fifo = c.create_queue(QueueName="durable.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    acked: set = set()
    fifo_acked: list = []
    for i in range(100):
        acked.add(c.send_message(QueueUrl=url, MessageBody=f"single {i}")["MessageId"])
    for b in range(10):
        r = c.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": f"batch {b}-{i}"} for i in range(10)])
        assert not r["Failed"]
        acked.update(e["MessageId"] for e in r["Successful"])
    for i in range(30):
        fifo_acked.append(c.send_message(QueueUrl=fifo, MessageBody=f"f{i}", MessageGroupId="g",
                                         MessageDeduplicationId=str(i))["MessageId"])

    # Concurrent senders while the server is killed: whatever was acknowledged survives.
    lock = threading.Lock()
    stop = threading.Event()

    def sender(n):
        client = sqs_client(s.endpoint, *s.root_keys)
        i = 0
        while not stop.is_set():
            try:
                mid = client.send_message(QueueUrl=url, MessageBody=f"racing {n}-{i}")["MessageId"]
            except Exception:
                return
            with lock:
                acked.add(mid)
            i += 1

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    assert s.kill() == -signal.SIGKILL
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) > 200

    s2 = et.EmberServer(data_dir=data_dir).start()
    servers.append(s2)
    c = sqs_client(s2.endpoint, *s2.root_keys)
    url = c.get_queue_url(QueueName="durable")["QueueUrl"]
    got = receive_all(c, url, len(acked), timeout=120)
    received = {m["MessageId"] for m in got}
    assert acked <= received, f"{len(acked - received)} acknowledged messages lost"
    fifo = c.get_queue_url(QueueName="durable.fifo")["QueueUrl"]
    order = []
    while True:
        r = c.receive_message(QueueUrl=fifo, MaxNumberOfMessages=10)
        if "Messages" not in r:
            break
        order += [m["MessageId"] for m in r["Messages"]]
        c.delete_message_batch(QueueUrl=fifo, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(r["Messages"])])
    assert order == fifo_acked
    # Deduplication ids survive the crash too.
    again = c.send_message(QueueUrl=fifo, MessageBody="f0", MessageGroupId="g", MessageDeduplicationId="0")
    assert again["MessageId"] == fifo_acked[0]
    assert s2.stop(signal.SIGTERM) == 0


def test_sigterm_ends_long_polls(servers, tmp_path):
    s = et.EmberServer(data_dir=str(tmp_path / "data")).start()
    servers.append(s)
    c = sqs_client(s.endpoint, *s.root_keys)
    url = c.create_queue(QueueName="waiting")["QueueUrl"]
    result = {}

    def poll():
        try:
            result["r"] = c.receive_message(QueueUrl=url, WaitTimeSeconds=20)
        except Exception as e:  # the connection may close with the server
            result["e"] = e

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    assert s.stop(signal.SIGTERM) == 0, s.stderr()
    assert time.monotonic() - t0 < 5, "a 20 s long poll must not hold up shutdown"
    t.join(30)
    assert "Messages" not in result.get("r", {})
