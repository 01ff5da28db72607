"""Servers of their own: crash durability, graceful shutdown, and the generated root
credentials file."""

from __future__ import annotations

import configparser
import os
import signal
import stat
import subprocess
import time

import boto3
import botocore.config
import botocore.session
import pytest

import embertest as et


@pytest.fixture
def data_dir(tmp_path, ember_bin):
    return str(tmp_path / "data")



def start(servers, data_dir, **kw) -> et.EmberServer:
    s = et.EmberServer(data_dir=data_dir, **kw).start()
    servers.append(s)
    return s


def test_functions_survive_kill_9(servers, data_dir):
    s = start(servers, data_dir)
    root = s.lambda_client()
    acct = et.create_account(s)
    other = acct.client(s)

    zips = {}
    for i in range(3):
        name = et.function_name(f"durable{i}")
        zips[name] = et.unique_zip(name)
        et.create_function(root, name, zips[name], Timeout=10 + i,
                           Environment={"Variables": {"INDEX": str(i)}})
    updated = next(iter(zips))
    new_zip = et.unique_zip("updated")
    root.update_function_code(FunctionName=updated, ZipFile=new_zip)
    zips[updated] = new_zip
    conf = root.update_function_configuration(FunctionName=updated, MemorySize=640)
    deleted = et.function_name("deleted")
    et.create_function(root, deleted)
    root.delete_function(FunctionName=deleted)
    theirs = et.function_name("theirs")
    their_zip = et.unique_zip("theirs")
    et.create_function(other, theirs, their_zip, Role=et.role_arn(acct.account_id))
    # The very last thing before the crash: a create that returned 201.
    last = et.function_name("last")
    zips[last] = et.unique_zip("last")
    assert et.create_function(root, last, zips[last])["ResponseMetadata"]["HTTPStatusCode"] == 201

    before = {n: root.get_function_configuration(FunctionName=n) for n in zips}
    code = s.kill()
    assert code == -signal.SIGKILL

    s2 = start(servers, data_dir)
    root = s2.lambda_client()
    for name, zip_bytes in zips.items():
        got = root.get_function(FunctionName=name)
        c = got["Configuration"]
        assert c["CodeSha256"] == et.code_sha256(zip_bytes), name
        assert c["CodeSize"] == len(zip_bytes), name
        for k in ("FunctionArn", "Runtime", "Handler", "Role", "Timeout", "MemorySize",
                  "Environment", "RevisionId", "LastModified"):
            assert c.get(k) == before[name].get(k), (name, k)
        status, body, _ = et.url_get(got["Code"]["Location"])
        assert status == 200 and body == zip_bytes, name
    assert root.get_function_configuration(FunctionName=updated)["MemorySize"] == 640
    assert root.get_function_configuration(FunctionName=updated)["RevisionId"] == conf["RevisionId"]
    with pytest.raises(root.exceptions.ResourceNotFoundException):
        root.get_function(FunctionName=deleted)
    listed = {f["FunctionName"] for p in root.get_paginator("list_functions").paginate() for f in p["Functions"]}
    assert listed == set(zips)

    # The other account and its key survived as well.
    other = acct.client(s2)
    assert other.get_function_configuration(FunctionName=theirs)["CodeSha256"] == et.code_sha256(their_zip)
    assert {f["FunctionName"] for f in other.list_functions()["Functions"]} == {theirs}

    # And the restarted server keeps working normally.
    fresh = et.function_name("after-restart")
    assert et.create_function(root, fresh)["State"] == "Active"
    assert s2.stop(signal.SIGTERM) == 0


def test_sigterm_is_a_graceful_exit_0(servers, data_dir):
    s = start(servers, data_dir)
    name = et.function_name("graceful")
    zip_bytes = et.unique_zip()
    et.create_function(s.lambda_client(), name, zip_bytes)
    t0 = time.monotonic()
    assert s.stop(signal.SIGTERM) == 0, s.stderr()
    assert time.monotonic() - t0 < 10
    assert b"".join(s.extra_stdout).strip() == b"", "stdout must hold only the ready line"

    s2 = start(servers, data_dir)
    assert s2.lambda_client().get_function_configuration(FunctionName=name)["CodeSha256"] == et.code_sha256(zip_bytes)
    assert s2.stop(signal.SIGINT) == 0


def _credentials_client(endpoint: str, path: str):
    """A boto3 client whose credentials come from the shared-credentials file at `path`
    through botocore's own credential chain (profile "default")."""
    session = botocore.session.Session()
    session.set_config_variable("config_file", os.devnull)
    session.set_config_variable("credentials_file", path)
    session.set_config_variable("profile", "default")
    return boto3.Session(botocore_session=session).client(
        "lambda", endpoint_url=endpoint, region_name=et.REGION,
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )


def test_generated_credentials_file(servers, data_dir):
    s = start(servers, data_dir, root_keys=None)
    path = os.path.join(data_dir, "credentials")
    assert os.path.isfile(path), os.listdir(data_dir)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600, oct(mode)

    parser = configparser.ConfigParser()
    parser.read(path)
    assert parser.has_section("default"), open(path).read()
    key = parser["default"]["aws_access_key_id"].strip()
    secret = parser["default"]["aws_secret_access_key"].strip()
    assert key and secret and key != secret

    c = _credentials_client(s.endpoint, path)
    assert c._request_signer._credentials.access_key == key
    name = et.function_name("credsfile")
    resp = et.create_function(c, name)
    assert resp["FunctionArn"].startswith("arn:aws:lambda:us-east-1:")
    assert name in {f["FunctionName"] for f in c.list_functions()["Functions"]}

    # The ember CLI finds the same key through --data-dir when no AWS_* key is set.
    r = subprocess.run(
        [et.ember_bin(), "accounts", "ls", "--endpoint", s.endpoint, "--data-dir", data_dir],
        env=et.clean_env(HOME=data_dir), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr

    # A restart keeps the key (and does not rewrite the file).
    before = open(path).read()
    assert s.stop(signal.SIGTERM) == 0
    s2 = start(servers, data_dir, root_keys=None)
    assert open(path).read() == before
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    c2 = _credentials_client(s2.endpoint, path)
    assert name in {f["FunctionName"] for f in c2.list_functions()["Functions"]}
    assert s2.stop(signal.SIGTERM) == 0


def test_no_credentials_file_when_keys_come_from_env(servers, data_dir):
    s = start(servers, data_dir)
    assert not os.path.exists(os.path.join(data_dir, "credentials"))
    assert s.lambda_client().list_functions()["Functions"] == []
    assert s.stop(signal.SIGTERM) == 0
