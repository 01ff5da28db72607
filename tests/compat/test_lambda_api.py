"""The Lambda control plane through boto3: every operation, its validation and errors."""

from __future__ import annotations

import base64
import datetime
import json
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import pytest
from botocore.exceptions import ClientError, WaiterError

import embertest as et

# Errors for model constraints (ranges, lengths, patterns). Real Lambda answers
# ValidationException for these; Ember documents InvalidParameterValueException. Both are
# 400 client errors, and both are accepted here (the difference is in the report).
MODEL_CONSTRAINT_CODES = {"InvalidParameterValueException", "ValidationException"}


def err(exc: ClientError) -> tuple[str, int, str]:
    e = exc.response["Error"]
    return e["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"], e.get("Message", "")


def status_of(resp: dict) -> int:
    return resp["ResponseMetadata"]["HTTPStatusCode"]


# --------------------------------------------------------------------------------------
# CreateFunction
# --------------------------------------------------------------------------------------


def test_create_function_returns_full_configuration(lam, fn_name, role, root_id):
    zip_bytes = et.unique_zip()
    resp = et.create_function(
        lam, fn_name, zip_bytes,
        Role=role,
        Runtime=et.PY_RUNTIME,
        Handler="app.handler",
        Description="compat test function",
        Timeout=30,
        MemorySize=256,
        EphemeralStorage={"Size": 1024},
        Environment={"Variables": {"GREETING": "hello", "DB_HOST": "db.local"}},
        Architectures=["x86_64"],
        Publish=False,
    )
    assert status_of(resp) == 201
    assert resp["FunctionName"] == fn_name
    assert resp["FunctionArn"] == f"arn:aws:lambda:us-east-1:{root_id}:function:{fn_name}"
    assert resp["Runtime"] == et.PY_RUNTIME
    assert resp["Handler"] == "app.handler"
    assert resp["Role"] == role
    assert resp["Description"] == "compat test function"
    assert resp["Timeout"] == 30
    assert resp["MemorySize"] == 256
    assert resp["EphemeralStorage"] == {"Size": 1024}
    assert resp["Environment"]["Variables"] == {"GREETING": "hello", "DB_HOST": "db.local"}
    assert resp["Architectures"] == ["x86_64"]
    assert resp["CodeSha256"] == et.code_sha256(zip_bytes)
    assert resp["CodeSize"] == len(zip_bytes)
    assert resp["State"] == "Active"
    assert resp["LastUpdateStatus"] == "Successful"
    assert resp["Version"] == "$LATEST"
    assert resp["PackageType"] == "Zip"
    assert resp["RevisionId"]
    assert et.LAST_MODIFIED.match(resp["LastModified"]), resp["LastModified"]


def test_create_function_defaults(lam, fn_name, role):
    resp = et.create_function(lam, fn_name, Role=role)
    assert resp["Timeout"] == 3
    assert resp["MemorySize"] == 128
    assert resp["EphemeralStorage"] == {"Size": 512}
    assert resp["Architectures"] == ["x86_64"]
    assert resp["Version"] == "$LATEST"
    got = lam.get_function_configuration(FunctionName=fn_name)
    assert (got["Timeout"], got["MemorySize"], got["EphemeralStorage"]["Size"]) == (3, 128, 512)


@pytest.mark.parametrize("runtime", et.HOST_RUNTIMES)
def test_every_runtime_of_this_host_is_accepted(lam, fn_name, role, runtime):
    handler = "bootstrap" if runtime.startswith("provided") else "index.handler"
    resp = et.create_function(lam, fn_name, Role=role, Runtime=runtime, Handler=handler)
    assert resp["Runtime"] == runtime
    assert lam.get_function(FunctionName=fn_name)["Configuration"]["Runtime"] == runtime


@pytest.mark.parametrize("runtime", et.UNAVAILABLE_RUNTIMES or ["(none)"])
def test_a_lambda_runtime_this_host_lacks_is_refused(lam, fn_name, role, runtime):
    """A valid Lambda runtime this host cannot run is refused at create and update time
    with InvalidParameterValueException, naming the runtimes it does have."""
    if runtime == "(none)":
        pytest.skip("this host has every supported runtime")
    handler = "index.handler"
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as ei:
        et.create_function(lam, fn_name, Role=role, Runtime=runtime, Handler=handler)
    code, status, message = err(ei.value)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert runtime in message and "not available" in message, message
    for available in et.HOST_RUNTIMES:
        assert available in message, message
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=fn_name)
    et.create_function(lam, fn_name, Role=role)
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as ei:
        lam.update_function_configuration(FunctionName=fn_name, Runtime=runtime)
    assert "not available" in err(ei.value)[2]
    assert lam.get_function_configuration(FunctionName=fn_name)["Runtime"] == et.PY_RUNTIME


def test_create_function_accepts_boundary_values(lam_raw, fn_name, role):
    env = {"K1": "v" * 4087}  # serialised {"K1":"vvv..."} is exactly 4096 bytes
    assert len(json.dumps(env, separators=(",", ":"))) == 4096
    resp = et.create_function(
        lam_raw, fn_name,
        Role=role,
        Timeout=900,
        MemorySize=10240,
        EphemeralStorage={"Size": 10240},
        Description="d" * 256,
        Handler="h" * 128,
        Environment={"Variables": env},
    )
    assert (resp["Timeout"], resp["MemorySize"], resp["EphemeralStorage"]["Size"]) == (900, 10240, 10240)
    assert resp["Description"] == "d" * 256
    assert resp["Handler"] == "h" * 128
    name2 = et.function_name("lowbound")
    resp = et.create_function(lam_raw, name2, Role=role, Timeout=1, MemorySize=128,
                              EphemeralStorage={"Size": 512})
    assert (resp["Timeout"], resp["MemorySize"], resp["EphemeralStorage"]["Size"]) == (1, 128, 512)


def test_create_duplicate_is_resource_conflict(lam, fn_name, role):
    et.create_function(lam, fn_name, Role=role)
    with pytest.raises(lam.exceptions.ResourceConflictException) as ei:
        et.create_function(lam, fn_name, et.unique_zip(), Role=role)
    code, status, message = err(ei.value)
    assert (code, status) == ("ResourceConflictException", 409)
    assert f"Function already exist: {fn_name}" in message


def test_create_with_full_and_partial_arn_names(lam, role, root_id):
    n1, n2 = et.function_name("byarn"), et.function_name("bypartial")
    r1 = et.create_function(lam, f"arn:aws:lambda:us-east-1:{root_id}:function:{n1}", Role=role)
    r2 = et.create_function(lam, f"{root_id}:function:{n2}", Role=role)
    assert r1["FunctionName"] == n1
    assert r2["FunctionName"] == n2
    assert lam.get_function(FunctionName=n1)["Configuration"]["FunctionName"] == n1
    assert lam.get_function(FunctionName=n2)["Configuration"]["FunctionName"] == n2


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------

BIG_ENV = {"BIG": "x" * 4100}
ENV_4097 = {"K1": "v" * 4088}

MODEL_CONSTRAINT_CASES = {
    "timeout-0": {"Timeout": 0},
    "timeout-901": {"Timeout": 901},
    "timeout-negative": {"Timeout": -5},
    "memory-127": {"MemorySize": 127},
    "memory-10241": {"MemorySize": 10241},
    "ephemeral-511": {"EphemeralStorage": {"Size": 511}},
    "ephemeral-10241": {"EphemeralStorage": {"Size": 10241}},
    "description-257": {"Description": "d" * 257},
    "handler-129": {"Handler": "h" * 129},
    "handler-space": {"Handler": "app handler"},
    "handler-tab": {"Handler": "app.\thandler"},
    "handler-empty": {"Handler": ""},
    "role-not-arn": {"Role": "my-role"},
    "role-short-account": {"Role": "arn:aws:iam::12345:role/r"},
    "role-user-not-role": {"Role": "arn:aws:iam::123456789012:user/someone"},
    "name-65-chars": {"FunctionName": "n" * 65},
    "name-space": {"FunctionName": "bad name"},
    "name-dot": {"FunctionName": "bad.name"},
    "name-empty": {"FunctionName": ""},
    "architectures-bogus": {"Architectures": ["sparc"]},
    "architectures-two": {"Architectures": ["x86_64", "arm64"]},
}


@pytest.mark.parametrize("override", MODEL_CONSTRAINT_CASES.values(), ids=MODEL_CONSTRAINT_CASES.keys())
def test_create_model_constraint_violations_are_400(lam_raw, fn_name, role, override):
    params = {"Role": role, **override}
    name = params.pop("FunctionName", fn_name)
    with pytest.raises(ClientError) as ei:
        et.create_function(lam_raw, name, **params)
    code, status, message = err(ei.value)
    assert status == 400, (code, message)
    assert code in MODEL_CONSTRAINT_CODES, (code, message)
    assert message
    if name != fn_name:
        return
    with pytest.raises(lam_raw.exceptions.ResourceNotFoundException):
        lam_raw.get_function(FunctionName=fn_name)


INVALID_PARAMETER_CASES = {
    "runtime-python2.7": ({"Runtime": "python2.7"}, "python2.7"),
    "runtime-python3.7": ({"Runtime": "python3.7"}, "python3.7"),
    "runtime-nodejs14.x": ({"Runtime": "nodejs14.x"}, "nodejs14.x"),
    "runtime-java21": ({"Runtime": "java21"}, "java21"),
    "runtime-garbage": ({"Runtime": "cobol"}, "cobol"),
    "env-4097-bytes": ({"Environment": {"Variables": ENV_4097}}, "4"),
    "env-too-big": ({"Environment": {"Variables": BIG_ENV}}, "4"),
    "env-key-digit-first": ({"Environment": {"Variables": {"1ABC": "x"}}}, "1ABC"),
    "env-key-dash": ({"Environment": {"Variables": {"A-B": "x"}}}, "A-B"),
    "env-key-one-char": ({"Environment": {"Variables": {"A": "x"}}}, "A"),
    "env-reserved-aws-region": ({"Environment": {"Variables": {"AWS_REGION": "eu-west-1"}}}, "AWS_REGION"),
    "env-reserved-secret": ({"Environment": {"Variables": {"AWS_SECRET_ACCESS_KEY": "x"}}}, "AWS_SECRET_ACCESS_KEY"),
    "arm64": ({"Architectures": ["arm64"]}, "arm64"),
    "layers": ({"Layers": ["arn:aws:lambda:us-east-1:123456789012:layer:l:1"]}, "Layers"),
    "vpc-subnets": ({"VpcConfig": {"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}}, "VpcConfig"),
    "publish": ({"Publish": True}, "Publish"),
    "package-type-image": ({"PackageType": "Image", "Code": {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/r:latest"}}, "PackageType"),
    "code-s3": ({"Code": {"S3Bucket": "bucket", "S3Key": "key.zip"}}, "S3"),
    "kms-key": ({"KMSKeyArn": "arn:aws:kms:us-east-1:123456789012:key/abc"}, "KMSKeyArn"),
    "tracing-active": ({"TracingConfig": {"Mode": "Active"}}, "TracingConfig"),
    "missing-runtime": ({"Runtime": None}, "Runtime"),
    "missing-handler": ({"Handler": None}, "Handler"),
}


@pytest.mark.parametrize("case", INVALID_PARAMETER_CASES.values(), ids=INVALID_PARAMETER_CASES.keys())
def test_create_invalid_parameter_value(lam_raw, fn_name, role, case):
    override, mention = case
    params = dict(
        FunctionName=fn_name,
        Runtime=et.PY_RUNTIME,
        Handler="app.handler",
        Role=role,
        Code={"ZipFile": et.make_zip()},
    )
    params.update(override)
    params = {k: v for k, v in params.items() if v is not None}
    with pytest.raises(lam_raw.exceptions.InvalidParameterValueException) as ei:
        lam_raw.create_function(**params)
    code, status, message = err(ei.value)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert mention in message, message
    with pytest.raises(lam_raw.exceptions.ResourceNotFoundException):
        lam_raw.get_function(FunctionName=fn_name)


def test_valid_environment_names_are_accepted(lam, fn_name, role):
    env = {"ab": "1", "A_1": "", "Zz_9_": "x=y;z", "LONGER_NAME_WITH_DIGITS_123": "v"}
    resp = et.create_function(lam, fn_name, Role=role, Environment={"Variables": env})
    assert resp["Environment"]["Variables"] == env
    assert lam.get_function_configuration(FunctionName=fn_name)["Environment"]["Variables"] == env


# --------------------------------------------------------------------------------------
# GetFunction / GetFunctionConfiguration, names and qualifiers
# --------------------------------------------------------------------------------------


@pytest.fixture
def made(lam, fn_name, role):
    """A function with a unique zip: (name, zip bytes, create response)."""
    zip_bytes = et.unique_zip()
    resp = et.create_function(lam, fn_name, zip_bytes, Role=role)
    return fn_name, zip_bytes, resp


def name_forms(name: str, account_id: str) -> list:
    arn = f"arn:aws:lambda:us-east-1:{account_id}:function:{name}"
    return [
        name,
        f"{account_id}:function:{name}",
        arn,
        f"{name}:$LATEST",
        f"{account_id}:function:{name}:$LATEST",
        f"{arn}:$LATEST",
    ]


def test_get_function_by_every_name_form(lam, made, root_id):
    name, zip_bytes, created = made
    for form in name_forms(name, root_id):
        got = lam.get_function(FunctionName=form)
        assert status_of(got) == 200
        c = got["Configuration"]
        assert c["FunctionName"] == name, form
        assert c["FunctionArn"] == created["FunctionArn"], form
        assert c["CodeSha256"] == et.code_sha256(zip_bytes), form
        assert c["RevisionId"] == created["RevisionId"], form
        assert got["Code"]["Location"].startswith("http"), form
        conf = lam.get_function_configuration(FunctionName=form)
        assert conf["FunctionName"] == name, form
        assert conf["CodeSize"] == len(zip_bytes), form


def test_qualifier_parameter(lam, made):
    name = made[0]
    assert lam.get_function(FunctionName=name, Qualifier="$LATEST")["Configuration"]["FunctionName"] == name
    assert lam.get_function_configuration(FunctionName=name, Qualifier="$LATEST")["FunctionName"] == name
    for q in ("1", "prod", "live_alias"):
        with pytest.raises(lam.exceptions.ResourceNotFoundException) as ei:
            lam.get_function(FunctionName=name, Qualifier=q)
        assert err(ei.value)[1] == 404
        with pytest.raises(lam.exceptions.ResourceNotFoundException):
            lam.get_function_configuration(FunctionName=name, Qualifier=q)
        with pytest.raises(lam.exceptions.ResourceNotFoundException):
            lam.get_function(FunctionName=f"{name}:{q}")


def test_get_missing_function_is_not_found(lam, fn_name, root_id):
    for call in (lam.get_function, lam.get_function_configuration):
        with pytest.raises(lam.exceptions.ResourceNotFoundException) as ei:
            call(FunctionName=fn_name)
        code, status, message = err(ei.value)
        assert (code, status) == ("ResourceNotFoundException", 404)
        assert fn_name in message
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=f"arn:aws:lambda:us-east-1:{root_id}:function:{fn_name}")


def test_get_function_in_another_region_arn_is_not_found(lam, made, root_id):
    name = made[0]
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=f"arn:aws:lambda:eu-west-1:{root_id}:function:{name}")


# --------------------------------------------------------------------------------------
# Code.Location: presigned download
# --------------------------------------------------------------------------------------


def test_code_location_downloads_identical_bytes(server, lam, made):
    name, zip_bytes, _ = made
    loc = lam.get_function(FunctionName=name)["Code"]["Location"]
    assert loc.startswith(server.endpoint + "/"), loc
    status, body, headers = et.url_get(loc)
    assert status == 200, body[:300]
    assert body == zip_bytes
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc).query))
    assert q.get("X-Amz-Algorithm") == "AWS4-HMAC-SHA256"
    assert q.get("X-Amz-Expires") == "600"


def _with_query(url: str, **changes) -> str:
    parts = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    q = [(k, changes.pop(k)) if k in changes else (k, v) for k, v in q]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(q, quote_via=urllib.parse.quote)))


def test_code_location_tampered_or_expired_is_refused(server, lam, made, role):
    name, zip_bytes, _ = made
    other_name = et.function_name("victim")
    et.create_function(lam, other_name, et.unique_zip(), Role=role)
    loc = lam.get_function(FunctionName=name)["Code"]["Location"]
    sig = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc).query))["X-Amz-Signature"]
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    parts = urllib.parse.urlsplit(loc)
    tampered = {
        "signature": _with_query(loc, **{"X-Amz-Signature": flipped}),
        "other-function-path": urllib.parse.urlunsplit(
            parts._replace(path=f"{et.API}/functions/{other_name}/code")
        ),
        "old-date": _with_query(loc, **{"X-Amz-Date": "20200101T000000Z"}),
        "longer-expiry": _with_query(loc, **{"X-Amz-Expires": "604800"}),
        "no-signature": urllib.parse.urlunsplit(parts._replace(query="")),
    }
    assert tampered["other-function-path"] != loc
    for what, url in tampered.items():
        status, body, headers = et.url_get(url)
        assert status in (400, 403), (what, status, body[:300])
        assert body != zip_bytes, what
        assert headers.get("x-amzn-errortype"), (what, headers)


def test_code_location_that_has_expired_is_refused(server, lam, made):
    """A URL correctly signed long ago (botocore presigner at a past time) is expired."""
    name = made[0]
    url = f"{server.endpoint}{et.API}/functions/{name}/code"
    past = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(hours=1)
    with mock.patch("botocore.auth.get_current_datetime", return_value=past):
        old = et.presign(url, *server.root_keys, expires=600)
    status, body, headers = et.url_get(old)
    assert status == 403, (status, body[:300])
    assert headers.get("x-amzn-errortype", "").startswith("InvalidSignatureException"), headers
    fresh = et.presign(url, *server.root_keys, expires=600)
    status, body, _ = et.url_get(fresh)
    assert status == 200, body[:300]
    assert body == made[1]
    # Ten minutes of validity: signed 9 minutes ago still works, 11 minutes ago does not.
    for minutes, ok in ((9, True), (11, False)):
        when = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=minutes)
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            signed = et.presign(url, *server.root_keys, expires=600)
        status, body, _ = et.url_get(signed)
        assert (status == 200 and body == made[1]) if ok else status == 403, (minutes, status)


# --------------------------------------------------------------------------------------
# ListFunctions
# --------------------------------------------------------------------------------------


def test_list_functions_pagination(server, fresh_account):
    c = fresh_account.client(server)
    assert c.list_functions()["Functions"] == []
    role = et.role_arn(fresh_account.account_id)
    names = sorted(f"page-{i:02d}-{et.function_name('p')}"[:64] for i in range(25))
    for n in names:
        et.create_function(c, n, Role=role)

    seen, pages, marker = [], [], None
    while True:
        kw = {"MaxItems": 10}
        if marker:
            kw["Marker"] = marker
        page = c.list_functions(**kw)
        pages.append(len(page["Functions"]))
        seen += [f["FunctionName"] for f in page["Functions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
        assert len(pages) < 10, "pagination does not terminate"
    assert pages == [10, 10, 5]
    assert sorted(seen) == names
    assert len(set(seen)) == 25

    everything = c.list_functions()
    assert sorted(f["FunctionName"] for f in everything["Functions"]) == names
    assert not everything.get("NextMarker")
    f0 = next(f for f in everything["Functions"] if f["FunctionName"] == names[0])
    assert f0["State"] == "Active"
    assert f0["FunctionArn"] == f"arn:aws:lambda:us-east-1:{fresh_account.account_id}:function:{names[0]}"

    paginator = c.get_paginator("list_functions")
    page_sizes = [len(p["Functions"]) for p in paginator.paginate(PaginationConfig={"PageSize": 10})]
    assert page_sizes == [10, 10, 5]
    all_names = [f["FunctionName"] for p in paginator.paginate() for f in p["Functions"]]
    assert sorted(all_names) == names
    limited = paginator.paginate(PaginationConfig={"MaxItems": 12, "PageSize": 5}).build_full_result()
    assert len(limited["Functions"]) == 12
    assert "NextToken" in limited
    rest = paginator.paginate(
        PaginationConfig={"StartingToken": limited["NextToken"], "PageSize": 5}
    ).build_full_result()
    assert sorted([f["FunctionName"] for f in limited["Functions"] + rest["Functions"]]) == names

    # After a delete the listing shrinks accordingly.
    c.delete_function(FunctionName=names[3])
    after = [f["FunctionName"] for p in paginator.paginate() for f in p["Functions"]]
    assert sorted(after) == [n for n in names if n != names[3]]


@pytest.mark.parametrize("max_items", [0, -1, 10001])
def test_list_functions_bad_max_items(lam_raw, max_items):
    with pytest.raises(ClientError) as ei:
        lam_raw.list_functions(MaxItems=max_items)
    code, status, _ = err(ei.value)
    assert status == 400
    assert code in MODEL_CONSTRAINT_CODES


# --------------------------------------------------------------------------------------
# UpdateFunctionCode
# --------------------------------------------------------------------------------------


def test_update_function_code(lam, made):
    name, old_zip, created = made
    new_zip = et.unique_zip("v2")
    resp = lam.update_function_code(FunctionName=name, ZipFile=new_zip)
    assert status_of(resp) == 200
    assert resp["CodeSha256"] == et.code_sha256(new_zip)
    assert resp["CodeSize"] == len(new_zip)
    assert resp["RevisionId"] != created["RevisionId"]
    assert resp["LastUpdateStatus"] == "Successful"
    assert resp["Runtime"] == created["Runtime"] and resp["Handler"] == created["Handler"]
    got = lam.get_function(FunctionName=name)
    assert got["Configuration"]["CodeSha256"] == et.code_sha256(new_zip)
    assert got["Configuration"]["RevisionId"] == resp["RevisionId"]
    status, body, _ = et.url_get(got["Code"]["Location"])
    assert status == 200 and body == new_zip


def test_update_function_code_dry_run_changes_nothing(lam, made):
    name, old_zip, created = made
    new_zip = et.unique_zip("dry")
    resp = lam.update_function_code(FunctionName=name, ZipFile=new_zip, DryRun=True)
    assert status_of(resp) == 200
    got = lam.get_function(FunctionName=name)
    assert got["Configuration"]["CodeSha256"] == et.code_sha256(old_zip)
    assert got["Configuration"]["CodeSize"] == len(old_zip)
    assert got["Configuration"]["RevisionId"] == created["RevisionId"]
    status, body, _ = et.url_get(got["Code"]["Location"])
    assert body == old_zip
    # A dry run still validates the package.
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.update_function_code(FunctionName=name, ZipFile=b"not a zip", DryRun=True)


def test_update_function_code_revision_id(lam, made):
    name, old_zip, created = made
    with pytest.raises(lam.exceptions.PreconditionFailedException) as ei:
        lam.update_function_code(FunctionName=name, ZipFile=et.unique_zip(), RevisionId="00000000-0000-0000-0000-000000000000")
    assert err(ei.value)[:2] == ("PreconditionFailedException", 412)
    assert lam.get_function_configuration(FunctionName=name)["CodeSha256"] == et.code_sha256(old_zip)
    new_zip = et.unique_zip()
    resp = lam.update_function_code(FunctionName=name, ZipFile=new_zip, RevisionId=created["RevisionId"])
    assert resp["CodeSha256"] == et.code_sha256(new_zip)
    # The old revision id is stale now.
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.update_function_code(FunctionName=name, ZipFile=et.unique_zip(), RevisionId=created["RevisionId"])


def test_update_function_code_of_missing_function(lam, fn_name):
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.update_function_code(FunctionName=fn_name, ZipFile=et.make_zip())


def test_update_function_code_unsupported_sources(lam_raw, made):
    name = made[0]
    with pytest.raises(lam_raw.exceptions.InvalidParameterValueException) as ei:
        lam_raw.update_function_code(FunctionName=name, S3Bucket="b", S3Key="k.zip")
    assert "S3" in err(ei.value)[2]
    with pytest.raises(lam_raw.exceptions.InvalidParameterValueException) as ei:
        lam_raw.update_function_code(FunctionName=name, ZipFile=et.make_zip(), Publish=True)
    assert "Publish" in err(ei.value)[2]
    with pytest.raises(lam_raw.exceptions.InvalidParameterValueException) as ei:
        lam_raw.update_function_code(FunctionName=name, ZipFile=et.make_zip(), Architectures=["arm64"])
    assert "arm64" in err(ei.value)[2]
    assert lam_raw.get_function_configuration(FunctionName=name)["CodeSha256"] == made[2]["CodeSha256"]


# --------------------------------------------------------------------------------------
# UpdateFunctionConfiguration
# --------------------------------------------------------------------------------------


def test_update_function_configuration(lam, made, root_id):
    name, zip_bytes, created = made
    new_role = f"arn:aws:iam::{root_id}:role/other-role"
    resp = lam.update_function_configuration(
        FunctionName=name,
        Timeout=60,
        MemorySize=512,
        Description="updated",
        Handler="app.other",
        Runtime=et.OTHER_RUNTIME,
        Role=new_role,
        EphemeralStorage={"Size": 2048},
        Environment={"Variables": {"MODE": "prod"}},
    )
    assert status_of(resp) == 200
    assert (resp["Timeout"], resp["MemorySize"], resp["Description"]) == (60, 512, "updated")
    assert (resp["Handler"], resp["Runtime"], resp["Role"]) == ("app.other", et.OTHER_RUNTIME, new_role)
    assert resp["EphemeralStorage"]["Size"] == 2048
    assert resp["Environment"]["Variables"] == {"MODE": "prod"}
    assert resp["RevisionId"] != created["RevisionId"]
    assert resp["CodeSha256"] == et.code_sha256(zip_bytes)
    assert resp["LastUpdateStatus"] == "Successful"

    # Fields not sent stay as they are.
    resp2 = lam.update_function_configuration(FunctionName=name, Timeout=61)
    assert (resp2["Timeout"], resp2["MemorySize"], resp2["Handler"]) == (61, 512, "app.other")
    assert resp2["Environment"]["Variables"] == {"MODE": "prod"}

    # An empty Variables map clears the environment.
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {}})
    conf = lam.get_function_configuration(FunctionName=name)
    assert conf.get("Environment", {}).get("Variables", {}) == {}
    assert conf["Timeout"] == 61


def test_update_function_configuration_revision_id(lam, made):
    name, _, created = made
    with pytest.raises(lam.exceptions.PreconditionFailedException) as ei:
        lam.update_function_configuration(FunctionName=name, Timeout=10, RevisionId="not-the-revision")
    code, status, _ = err(ei.value)
    assert (code, status) == ("PreconditionFailedException", 412)
    assert lam.get_function_configuration(FunctionName=name)["Timeout"] == 3
    resp = lam.update_function_configuration(FunctionName=name, Timeout=10, RevisionId=created["RevisionId"])
    assert resp["Timeout"] == 10
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.update_function_configuration(FunctionName=name, Timeout=11, RevisionId=created["RevisionId"])
    resp2 = lam.update_function_configuration(FunctionName=name, Timeout=12, RevisionId=resp["RevisionId"])
    assert resp2["Timeout"] == 12


@pytest.mark.parametrize("override,codes", [
    ({"Timeout": 0}, MODEL_CONSTRAINT_CODES),
    ({"Timeout": 901}, MODEL_CONSTRAINT_CODES),
    ({"MemorySize": 64}, MODEL_CONSTRAINT_CODES),
    ({"MemorySize": 20480}, MODEL_CONSTRAINT_CODES),
    ({"Description": "x" * 300}, MODEL_CONSTRAINT_CODES),
    ({"Handler": "has space"}, MODEL_CONSTRAINT_CODES),
    ({"Runtime": "python2.7"}, {"InvalidParameterValueException"}),
    ({"Role": "not-a-role"}, MODEL_CONSTRAINT_CODES),
    ({"Environment": {"Variables": {"AWS_REGION": "x"}}}, {"InvalidParameterValueException"}),
    ({"Environment": {"Variables": BIG_ENV}}, {"InvalidParameterValueException"}),
    ({"Layers": ["arn:aws:lambda:us-east-1:123456789012:layer:l:1"]}, {"InvalidParameterValueException"}),
    ({"VpcConfig": {"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}}, {"InvalidParameterValueException"}),
    ({"TracingConfig": {"Mode": "Active"}}, {"InvalidParameterValueException"}),
    ({"KMSKeyArn": "arn:aws:kms:us-east-1:123456789012:key/abc"}, {"InvalidParameterValueException"}),
], ids=lambda v: json.dumps(v)[:40] if isinstance(v, dict) else "")
def test_update_function_configuration_validation(lam_raw, made, override, codes):
    name, _, created = made
    with pytest.raises(ClientError) as ei:
        lam_raw.update_function_configuration(FunctionName=name, **override)
    code, status, _ = err(ei.value)
    assert status == 400 and code in codes, (code, status)
    conf = lam_raw.get_function_configuration(FunctionName=name)
    assert conf["RevisionId"] == created["RevisionId"]
    assert (conf["Timeout"], conf["MemorySize"], conf["Runtime"]) == (3, 128, et.PY_RUNTIME)


def test_update_function_configuration_of_missing_function(lam, fn_name):
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as ei:
        lam.update_function_configuration(FunctionName=fn_name, Timeout=5)
    assert err(ei.value)[1] == 404


def test_vpc_config_and_tracing_in_their_off_form_are_accepted(lam, fn_name, role):
    resp = et.create_function(
        lam, fn_name, Role=role,
        VpcConfig={"SubnetIds": [], "SecurityGroupIds": []},
        TracingConfig={"Mode": "PassThrough"},
        Layers=[],
    )
    assert resp["State"] == "Active"


# --------------------------------------------------------------------------------------
# DeleteFunction
# --------------------------------------------------------------------------------------


def test_delete_function(lam, made):
    name = made[0]
    resp = lam.delete_function(FunctionName=name)
    assert status_of(resp) == 204
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as ei:
        lam.delete_function(FunctionName=name)
    assert err(ei.value)[1] == 404
    assert name not in [f["FunctionName"] for p in lam.get_paginator("list_functions").paginate() for f in p["Functions"]]


def test_delete_function_by_arn_then_recreate(lam, made, role, root_id):
    name, _, created = made
    assert lam.delete_function(FunctionName=f"arn:aws:lambda:us-east-1:{root_id}:function:{name}")["ResponseMetadata"]["HTTPStatusCode"] == 204
    new_zip = et.unique_zip()
    resp = et.create_function(lam, name, new_zip, Role=role)
    assert resp["CodeSha256"] == et.code_sha256(new_zip)
    assert resp["RevisionId"] != created["RevisionId"]
    status, body, _ = et.url_get(lam.get_function(FunctionName=name)["Code"]["Location"])
    assert body == new_zip


def test_shared_code_survives_deleting_one_user(lam, role):
    """Two functions with byte-identical zips: deleting one keeps the other's code."""
    zip_bytes = et.unique_zip("shared")
    a, b = et.function_name("shareA"), et.function_name("shareB")
    et.create_function(lam, a, zip_bytes, Role=role)
    et.create_function(lam, b, zip_bytes, Role=role)
    lam.delete_function(FunctionName=a)
    status, body, _ = et.url_get(lam.get_function(FunctionName=b)["Code"]["Location"])
    assert status == 200 and body == zip_bytes
    # Replacing the code of one user must not lose it for the other either.
    c = et.function_name("shareC")
    et.create_function(lam, c, zip_bytes, Role=role)
    lam.update_function_code(FunctionName=c, ZipFile=et.unique_zip())
    status, body, _ = et.url_get(lam.get_function(FunctionName=b)["Code"]["Location"])
    assert status == 200 and body == zip_bytes


# --------------------------------------------------------------------------------------
# Waiters
# --------------------------------------------------------------------------------------


def test_waiters_pass_immediately(lam, fn_name, role):
    fast = {"Delay": 1, "MaxAttempts": 2}
    et.create_function(lam, fn_name, Role=role)
    lam.get_waiter("function_exists").wait(FunctionName=fn_name, WaiterConfig=fast)
    lam.get_waiter("function_active_v2").wait(FunctionName=fn_name, WaiterConfig=fast)
    lam.get_waiter("function_active").wait(FunctionName=fn_name, WaiterConfig=fast)
    lam.update_function_configuration(FunctionName=fn_name, MemorySize=1024)
    lam.get_waiter("function_updated_v2").wait(FunctionName=fn_name, WaiterConfig=fast)
    lam.update_function_code(FunctionName=fn_name, ZipFile=et.unique_zip())
    lam.get_waiter("function_updated").wait(FunctionName=fn_name, WaiterConfig=fast)
    assert lam.get_function(FunctionName=fn_name)["Configuration"]["MemorySize"] == 1024


def test_function_exists_waiter_fails_for_missing_function(lam, fn_name):
    with pytest.raises(WaiterError):
        lam.get_waiter("function_exists").wait(FunctionName=fn_name, WaiterConfig={"Delay": 1, "MaxAttempts": 2})


# --------------------------------------------------------------------------------------
# Error shape
# --------------------------------------------------------------------------------------


def test_error_responses_are_rest_json_shaped(server, lam, made):
    """x-amzn-ErrorType header plus {"Type", "message"} for every error class."""
    name = made[0]
    cases = [
        ("GET", f"{et.API}/functions/{et.function_name('missing')}", b"", "ResourceNotFoundException", 404),
        ("POST", f"{et.API}/functions", b'{"FunctionName": ', "InvalidRequestContentException", 400),
        ("PUT", f"{et.API}/functions/{name}/configuration", b'{"Timeout": 0}', None, 400),
        ("PUT", f"{et.API}/functions/{name}/configuration", b'{"RevisionId": "x", "Timeout": 5}', "PreconditionFailedException", 412),
    ]
    for method, path, body, code, status in cases:
        s, etype, doc = et.error_of(et.signed_request(server, method, path, body, headers={"Content-Type": "application/json"}))
        assert s == status, (path, s, doc)
        if code:
            assert etype == code, (path, etype)
        else:
            assert etype in MODEL_CONSTRAINT_CODES, (path, etype)
        assert doc.get("Type") == "User", doc
        assert isinstance(doc.get("message"), str) and doc["message"], doc
    # A duplicate create through the raw path as well.
    body = json.dumps({
        "FunctionName": name, "Runtime": et.PY_RUNTIME, "Handler": "a.b",
        "Role": "arn:aws:iam::123456789012:role/r",
        "Code": {"ZipFile": base64.b64encode(et.make_zip()).decode()},
    }).encode()
    s, etype, doc = et.error_of(et.signed_request(server, "POST", f"{et.API}/functions", body))
    assert (s, etype) == (409, "ResourceConflictException"), doc
    assert doc["message"] == f"Function already exist: {name}"


# --------------------------------------------------------------------------------------
# Odds and ends
# --------------------------------------------------------------------------------------


def test_tags_round_trip_and_request_ids(lam, fn_name, role):
    resp = et.create_function(lam, fn_name, Role=role, Tags={"team": "compat", "env": "test"})
    assert resp["ResponseMetadata"].get("RequestId"), resp["ResponseMetadata"]
    got = lam.get_function(FunctionName=fn_name)
    assert got["Tags"] == {"team": "compat", "env": "test"}
    assert got["ResponseMetadata"].get("RequestId")
    assert got["ResponseMetadata"]["RequestId"] != resp["ResponseMetadata"]["RequestId"]


def test_description_length_counts_characters(lam_raw, fn_name, role):
    resp = et.create_function(lam_raw, fn_name, Role=role, Description="é" * 256)
    assert resp["Description"] == "é" * 256
    with pytest.raises(ClientError) as ei:
        lam_raw.update_function_configuration(FunctionName=fn_name, Description="é" * 257)
    assert err(ei.value)[1] == 400


def test_last_modified_moves_forward_on_update(lam, made):
    name, _, created = made
    time.sleep(0.01)
    resp = lam.update_function_configuration(FunctionName=name, Timeout=4)
    assert et.LAST_MODIFIED.match(resp["LastModified"])
    assert resp["LastModified"] >= created["LastModified"]
    assert lam.get_function_configuration(FunctionName=name)["LastModified"] == resp["LastModified"]


def test_delete_with_an_unknown_qualifier_deletes_nothing(lam, made):
    name = made[0]
    for q in ("1", "prod"):
        with pytest.raises(lam.exceptions.ResourceNotFoundException):
            lam.delete_function(FunctionName=name, Qualifier=q)
        with pytest.raises(lam.exceptions.ResourceNotFoundException):
            lam.delete_function(FunctionName=f"{name}:{q}")
    assert lam.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name


def test_concurrent_creates_of_one_name_yield_exactly_one_function(server, lam, fn_name, role):
    zips = [et.unique_zip(str(i)) for i in range(8)]

    def attempt(z):
        c = server.lambda_client()
        try:
            return "ok", et.create_function(c, fn_name, z, Role=role)["CodeSha256"]
        except ClientError as e:
            return e.response["Error"]["Code"], None

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, zips))
    winners = [sha for outcome, sha in results if outcome == "ok"]
    assert len(winners) == 1, results
    assert sorted(o for o, _ in results if o != "ok") == ["ResourceConflictException"] * 7, results
    got = lam.get_function(FunctionName=fn_name)
    assert got["Configuration"]["CodeSha256"] == winners[0]
    body = et.url_get(got["Code"]["Location"])[1]
    assert et.code_sha256(body) == winners[0]


def test_concurrent_updates_with_one_revision_id_let_exactly_one_win(server, lam, made):
    name, _, created = made

    def attempt(timeout):
        c = server.lambda_client()
        try:
            c.update_function_configuration(FunctionName=name, Timeout=timeout, RevisionId=created["RevisionId"])
            return "ok", timeout
        except ClientError as e:
            return e.response["Error"]["Code"], timeout

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(10, 18)))
    winners = [t for o, t in results if o == "ok"]
    assert len(winners) == 1, results
    assert all(o in ("PreconditionFailedException", "ResourceConflictException") for o, _ in results if o != "ok"), results
    assert lam.get_function_configuration(FunctionName=name)["Timeout"] == winners[0]


def test_concurrent_code_updates_leave_consistent_code(server, lam, made):
    """Racing UpdateFunctionCode calls: whatever wins, the stored CodeSha256 and the
    bytes behind Code.Location agree (no package lost to garbage collection)."""
    name = made[0]
    zips = {et.code_sha256(z): z for z in (et.unique_zip(f"race{i}") for i in range(6))}

    def attempt(z):
        try:
            server.lambda_client().update_function_code(FunctionName=name, ZipFile=z)
            return "ok"
        except ClientError as e:
            return e.response["Error"]["Code"]

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(attempt, zips.values()))
    assert "ok" in outcomes, outcomes
    assert all(o in ("ok", "ResourceConflictException") for o in outcomes), outcomes
    got = lam.get_function(FunctionName=name)
    sha = got["Configuration"]["CodeSha256"]
    assert sha in zips
    status, body, _ = et.url_get(got["Code"]["Location"])
    assert status == 200 and body == zips[sha]
    # Re-uploading the very same bytes keeps them available too.
    lam.update_function_code(FunctionName=name, ZipFile=zips[sha])
    status, body, _ = et.url_get(lam.get_function(FunctionName=name)["Code"]["Location"])
    assert status == 200 and body == zips[sha]
