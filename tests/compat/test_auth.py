"""Authentication (SigV4 as botocore does it) and account isolation."""

from __future__ import annotations

import datetime
import json
import urllib.request
from unittest import mock

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import embertest as et


def code_status(exc: ClientError) -> tuple[str, int, str]:
    e = exc.response["Error"]
    return e["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"], e.get("Message", "")


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


# --------------------------------------------------------------------------------------
# Who is calling
# --------------------------------------------------------------------------------------


def test_health_needs_no_credentials(server):
    status, body = server.health()
    assert status == 200
    assert body["Status"] == "ok"


def test_valid_root_key_works(lam):
    resp = lam.list_functions()
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert isinstance(resp["Functions"], list)


def test_unknown_access_key_is_unrecognized_client(server):
    c = et.lambda_client(server.endpoint, "AKIADOESNOTEXIST0000", "whatever-secret")
    with pytest.raises(ClientError) as ei:
        c.list_functions()
    assert code_status(ei.value)[:2] == ("UnrecognizedClientException", 403)
    with pytest.raises(ClientError) as ei:
        et.create_function(c, et.function_name("unknown"))
    assert code_status(ei.value)[:2] == ("UnrecognizedClientException", 403)


def test_wrong_secret_is_invalid_signature(server, lam, fn_name):
    c = et.lambda_client(server.endpoint, et.ROOT_ACCESS_KEY_ID, et.ROOT_SECRET_ACCESS_KEY + "x")
    with pytest.raises(ClientError) as ei:
        c.list_functions()
    code, status, message = code_status(ei.value)
    assert (code, status) == ("InvalidSignatureException", 403)
    assert "signature" in message.lower()
    with pytest.raises(ClientError) as ei:
        et.create_function(c, fn_name)
    assert code_status(ei.value)[:2] == ("InvalidSignatureException", 403)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=fn_name)


def test_missing_authorization_is_missing_authentication_token(server):
    for method, path, body in [
        ("GET", f"{et.API}/functions", None),
        ("GET", f"{et.API}/functions/anything", None),
        ("POST", f"{et.API}/functions", b"{}"),
        ("DELETE", f"{et.API}/functions/anything", None),
        ("POST", "/ember/v1/accounts", b'{"Name": "sneaky"}'),
    ]:
        req = urllib.request.Request(server.endpoint + path, data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                pytest.fail(f"{method} {path} without credentials answered {r.status}")
        except urllib.error.HTTPError as e:
            assert e.code == 403, (method, path, e.code)
            assert e.headers.get("x-amzn-ErrorType", "").startswith("MissingAuthenticationTokenException"), (method, path, dict(e.headers))
            doc = json.loads(e.read())
            assert doc.get("message"), doc


@pytest.mark.parametrize("authorization", [
    "AWS4-HMAC-SHA256 garbage",
    "AWS4-HMAC-SHA256 Credential=AKIAEMBERCOMPATROOT1/20240101/us-east-1/lambda/aws4_request",
    "AWS4-HMAC-SHA256 Credential=AKIAEMBERCOMPATROOT1/20240101/us-east-1/lambda/aws4_request, SignedHeaders=host",
    "Bearer abc.def.ghi",
    "AWS AKIAEMBERCOMPATROOT1:c2lnbmF0dXJl",
])
def test_malformed_authorization_is_incomplete_signature(server, authorization):
    status, etype, doc = et.error_of(et.http_request(
        server.endpoint, "GET", f"{et.API}/functions",
        headers={"Authorization": authorization, "X-Amz-Date": utcnow().strftime("%Y%m%dT%H%M%SZ")},
    ))
    assert (status, etype) == (400, "IncompleteSignatureException"), (authorization, status, etype, doc)
    assert doc.get("message")


def test_signature_over_a_different_body_is_refused(server):
    """The body is part of the signature: sign one body, send another."""
    path = f"{et.API}/functions"
    signed_body = b'{"FunctionName": "a"}'
    headers = et.sign("POST", server.endpoint + path, signed_body, *server.root_keys)
    status, etype, _ = et.error_of(et.http_request(server.endpoint, "POST", path, b'{"FunctionName": "b"}', headers))
    assert (status, etype) == (403, "InvalidSignatureException")


def test_signature_for_another_service_scope_is_refused(server):
    path = f"{et.API}/functions"
    headers = et.sign("GET", server.endpoint + path, b"", *server.root_keys, service="s3")
    status, etype, _ = et.error_of(et.http_request(server.endpoint, "GET", path, b"", headers))
    assert status == 403 and etype == "InvalidSignatureException"


# --------------------------------------------------------------------------------------
# Clock skew
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("minutes", [-20, -60 * 24, 20])
def test_clock_skew_over_15_minutes_is_refused(server, minutes):
    c = server.lambda_client()
    shifted = utcnow() + datetime.timedelta(minutes=minutes)
    with mock.patch("botocore.auth.get_current_datetime", return_value=shifted):
        with pytest.raises(ClientError) as ei:
            c.list_functions()
    code, status, message = code_status(ei.value)
    assert (code, status) == ("InvalidSignatureException", 403), message
    if minutes < 0:
        assert "Signature expired" in message, message
    else:
        assert "not yet current" in message.lower() or "expired" in message.lower(), message


@pytest.mark.parametrize("minutes", [-10, 10])
def test_clock_skew_within_15_minutes_is_accepted(server, minutes):
    c = server.lambda_client()
    shifted = utcnow() + datetime.timedelta(minutes=minutes)
    with mock.patch("botocore.auth.get_current_datetime", return_value=shifted):
        resp = c.list_functions(MaxItems=1)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_skewed_manual_signature_is_refused(server):
    """Same check with SigV4Auth on a hand-made request (timestamp 16 minutes old)."""
    path = f"{et.API}/functions"
    old = utcnow() - datetime.timedelta(minutes=16)
    status, etype, doc = et.error_of(et.signed_request(server, "GET", path, when=old))
    assert (status, etype) == (403, "InvalidSignatureException"), doc
    assert "Signature expired" in doc.get("message", "")
    status, _, _ = et.signed_request(server, "GET", path, when=utcnow() - datetime.timedelta(minutes=1))
    assert status == 200


# --------------------------------------------------------------------------------------
# Accounts
# --------------------------------------------------------------------------------------


def test_accounts_create_prints_usable_keys(server, root_id):
    acct = et.create_account(server)
    assert acct.account_id != root_id
    assert acct.key and acct.secret
    c = acct.client(server)
    assert c.list_functions()["Functions"] == []
    name = et.function_name("newacct")
    resp = et.create_function(c, name, Role=et.role_arn(acct.account_id))
    assert resp["FunctionArn"] == f"arn:aws:lambda:us-east-1:{acct.account_id}:function:{name}"


def test_accounts_create_needs_root(server, other):
    r = et.run_ember_cli(["accounts", "create", "by-non-root"], server.endpoint, other.key, other.secret)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("error: AccessDeniedException: "), r.stderr
    assert r.stdout.strip() == ""
    r = et.run_ember_cli(["accounts", "ls"], server.endpoint, other.key, other.secret)
    assert r.returncode == 1 and "AccessDeniedException" in r.stderr, r.stderr
    # The refused account really was not created.
    r = et.run_ember_cli(["accounts", "ls"], server.endpoint, *server.root_keys)
    assert r.returncode == 0
    assert "by-non-root" not in [a["Name"] for a in json.loads(r.stdout)["Accounts"]]


def test_accounts_create_with_bad_credentials_fails(server):
    r = et.run_ember_cli(["accounts", "create", "x-bad-secret"], server.endpoint, et.ROOT_ACCESS_KEY_ID, "wrong")
    assert r.returncode == 1
    assert "InvalidSignatureException" in r.stderr, r.stderr
    r = et.run_ember_cli(["accounts", "create", "x-bad-key"], server.endpoint, "AKIANOSUCHKEY0000000", "wrong")
    assert r.returncode == 1
    assert "UnrecognizedClientException" in r.stderr, r.stderr


def test_accounts_isolate_list_functions(server, lam, other_lam, other, role):
    mine = et.function_name("mine")
    theirs = et.function_name("theirs")
    et.create_function(lam, mine, Role=role)
    et.create_function(other_lam, theirs, Role=et.role_arn(other.account_id))

    def names(c):
        return {f["FunctionName"] for p in c.get_paginator("list_functions").paginate() for f in p["Functions"]}

    root_names, other_names = names(lam), names(other_lam)
    assert mine in root_names and theirs not in root_names
    assert theirs in other_names and mine not in other_names


# --------------------------------------------------------------------------------------
# Cross-account access
# --------------------------------------------------------------------------------------


@pytest.fixture
def root_fn(lam, fn_name, role, root_id):
    """A root-account function: (name, full ARN, zip, create response)."""
    zip_bytes = et.unique_zip()
    resp = et.create_function(lam, fn_name, zip_bytes, Role=role)
    return fn_name, resp["FunctionArn"], zip_bytes, resp


def test_other_account_by_plain_name_is_not_found(other_lam, root_fn):
    name = root_fn[0]
    for call in (other_lam.get_function, other_lam.get_function_configuration, other_lam.delete_function):
        with pytest.raises(other_lam.exceptions.ResourceNotFoundException) as ei:
            call(FunctionName=name)
        assert code_status(ei.value)[1] == 404
    with pytest.raises(other_lam.exceptions.ResourceNotFoundException):
        other_lam.update_function_configuration(FunctionName=name, Timeout=9)
    with pytest.raises(other_lam.exceptions.ResourceNotFoundException):
        other_lam.update_function_code(FunctionName=name, ZipFile=et.make_zip())


def _assert_access_denied(call, **kw):
    with pytest.raises(ClientError) as ei:
        call(**kw)
    code, status, message = code_status(ei.value)
    assert (code, status) == ("AccessDeniedException", 403), (code, status, message)


def test_other_account_by_arn_is_access_denied(lam, other_lam, root_fn, root_id):
    name, arn, zip_bytes, created = root_fn
    for ref in (arn, f"{root_id}:function:{name}", f"{arn}:$LATEST"):
        _assert_access_denied(other_lam.get_function, FunctionName=ref)
        _assert_access_denied(other_lam.get_function_configuration, FunctionName=ref)
        _assert_access_denied(other_lam.update_function_configuration, FunctionName=ref, Timeout=9)
        _assert_access_denied(other_lam.update_function_code, FunctionName=ref, ZipFile=et.unique_zip())
        _assert_access_denied(other_lam.delete_function, FunctionName=ref)
    # Nothing changed for the owner.
    conf = lam.get_function_configuration(FunctionName=name)
    assert conf["RevisionId"] == created["RevisionId"]
    assert conf["Timeout"] == 3
    assert conf["CodeSha256"] == et.code_sha256(zip_bytes)


def test_other_account_cannot_create_in_root_account(other_lam, fn_name, root_id, lam):
    _assert_access_denied(
        other_lam.create_function,
        FunctionName=f"{root_id}:function:{fn_name}",
        Runtime=et.PY_RUNTIME, Handler="app.handler",
        Role=et.role_arn(root_id), Code={"ZipFile": et.make_zip()},
    )
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=fn_name)


def test_same_name_in_two_accounts_is_two_functions(lam, other_lam, other, root_fn):
    name, arn, zip_bytes, _ = root_fn
    their_zip = et.unique_zip()
    theirs = et.create_function(other_lam, name, their_zip, Role=et.role_arn(other.account_id))
    assert theirs["FunctionArn"] == f"arn:aws:lambda:us-east-1:{other.account_id}:function:{name}"
    assert theirs["FunctionArn"] != arn
    assert lam.get_function_configuration(FunctionName=name)["CodeSha256"] == et.code_sha256(zip_bytes)
    assert other_lam.get_function_configuration(FunctionName=name)["CodeSha256"] == et.code_sha256(their_zip)
    other_lam.delete_function(FunctionName=name)
    assert lam.get_function_configuration(FunctionName=name)["CodeSha256"] == et.code_sha256(zip_bytes)


def test_other_account_cannot_download_root_code(server, other, root_fn, root_id):
    """A URL the other account presigns itself for the root account's code is refused."""
    name, arn, zip_bytes, _ = root_fn
    for ref in (name, arn):
        url = f"{server.endpoint}{et.API}/functions/{ref.replace(':', '%3A')}/code"
        status, body, headers = et.url_get(et.presign(url, other.key, other.secret))
        assert status in (403, 404), (ref, status, body[:200])
        assert body != zip_bytes
    status, body, _ = et.url_get(et.presign(f"{server.endpoint}{et.API}/functions/{name}/code", *server.root_keys))
    assert status == 200 and body == zip_bytes


def test_signature_scoped_to_another_region_is_refused(server, root_fn):
    """Ember serves us-east-1 (its ARNs say so); AWS refuses a credential scope naming
    another region ("Credential should be scoped to a valid region")."""
    name = root_fn[0]
    c = et.lambda_client(server.endpoint, *server.root_keys)
    c_eu = boto3.Session(botocore_session=et._isolated_botocore_session()).client(
        "lambda", endpoint_url=server.endpoint, region_name="eu-west-1",
        aws_access_key_id=server.root_keys[0], aws_secret_access_key=server.root_keys[1],
        config=Config(retries={"total_max_attempts": 1}),
    )
    assert c.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
    with pytest.raises(ClientError) as ei:
        c_eu.get_function(FunctionName=name)
    code, status, message = code_status(ei.value)
    assert (code, status) == ("InvalidSignatureException", 403), (code, status, message)
    assert "region" in message.lower(), message


def test_identical_code_in_two_accounts_is_kept_for_each(lam, other_lam, other, fn_name, role):
    zip_bytes = et.unique_zip("cross-shared")
    et.create_function(lam, fn_name, zip_bytes, Role=role)
    et.create_function(other_lam, fn_name, zip_bytes, Role=et.role_arn(other.account_id))
    other_lam.delete_function(FunctionName=fn_name)
    status, body, _ = et.url_get(lam.get_function(FunctionName=fn_name)["Code"]["Location"])
    assert status == 200 and body == zip_bytes


def test_duplicate_account_name_is_refused(server):
    acct = et.create_account(server)
    r = et.run_ember_cli(["accounts", "create", acct.name], server.endpoint, *server.root_keys)
    assert r.returncode == 1, r.stdout
    assert "ResourceConflictException" in r.stderr, r.stderr
