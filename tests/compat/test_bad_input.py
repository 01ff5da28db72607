"""Hostile and broken input: malformed JSON, wrong types, bad names, unsafe zips and
oversized bodies. Every test ends by checking that the server still serves and that a
function created before the onslaught is intact."""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile

import pytest
from botocore.exceptions import ClientError

import embertest as et

CREATE_PATH = f"{et.API}/functions"
GOOD_ZIP_B64 = base64.b64encode(et.make_zip()).decode()


@pytest.fixture(scope="module")
def sentinel(lam, root_id):
    """A function created before any bad input; it must come through untouched."""
    name = et.function_name("sentinel")
    zip_bytes = et.unique_zip("sentinel")
    resp = et.create_function(lam, name, zip_bytes, Role=et.role_arn(root_id),
                              Environment={"Variables": {"KEEP": "me"}})
    return name, zip_bytes, resp


@pytest.fixture
def intact(server, lam, sentinel):
    """Yields, then checks health and the sentinel function after the test."""
    yield
    assert server.alive(), f"ember serve died; stderr:\n{server.stderr()}"
    status, body = server.health()
    assert status == 200 and body.get("Status") == "ok", body
    name, zip_bytes, created = sentinel
    got = lam.get_function(FunctionName=name)
    c = got["Configuration"]
    assert c["CodeSha256"] == et.code_sha256(zip_bytes)
    assert c["RevisionId"] == created["RevisionId"]
    assert c["Environment"]["Variables"] == {"KEEP": "me"}
    status, body, _ = et.url_get(got["Code"]["Location"])
    assert status == 200 and body == zip_bytes


def create_body(**fields) -> bytes:
    doc = {
        "FunctionName": et.function_name("raw"),
        "Runtime": et.PY_RUNTIME,
        "Handler": "app.handler",
        "Role": "arn:aws:iam::123456789012:role/r",
        "Code": {"ZipFile": GOOD_ZIP_B64},
    }
    doc.update(fields)
    return json.dumps(doc).encode()


def err(exc: ClientError) -> tuple[str, int, str]:
    e = exc.response["Error"]
    return e["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"], e.get("Message", "")


# --------------------------------------------------------------------------------------
# Malformed JSON and wrong types
# --------------------------------------------------------------------------------------

MALFORMED = {
    "truncated": b'{"FunctionName": ',
    "not-json": b"this is not json",
    "trailing-comma": b'{"FunctionName": "x",}',
    "single-quotes": b"{'FunctionName': 'x'}",
    "nul-bytes": b"\x00\x00\x00\x00",
}


@pytest.fixture
def victim(lam, fn_name):
    """A throwaway function for update requests: (name, zip, create response)."""
    zip_bytes = et.unique_zip()
    return fn_name, zip_bytes, et.create_function(lam, fn_name, zip_bytes)


def assert_unchanged(lam, victim):
    name, zip_bytes, created = victim
    conf = lam.get_function_configuration(FunctionName=name)
    assert conf["CodeSha256"] == et.code_sha256(zip_bytes)
    assert conf["RevisionId"] == created["RevisionId"]


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_json_is_invalid_request_content(server, lam, intact, victim, body):
    name = victim[0]
    for method, path in [
        ("POST", CREATE_PATH),
        ("PUT", f"{et.API}/functions/{name}/configuration"),
        ("PUT", f"{et.API}/functions/{name}/code"),
    ]:
        status, etype, doc = et.error_of(et.signed_request(
            server, method, path, body, headers={"Content-Type": "application/json"}))
        assert (status, etype) == (400, "InvalidRequestContentException"), (method, path, status, etype, doc)
        assert doc.get("Type") == "User" and doc.get("message"), doc
    assert_unchanged(lam, victim)


def test_invalid_utf8_in_an_otherwise_valid_body_is_refused(server, lam, intact, victim):
    """JSON text must be UTF-8 (RFC 8259); a body with invalid UTF-8 is not JSON, even
    when the bad bytes sit in a member the operation does not use."""
    name = victim[0]
    new_zip = base64.b64encode(et.unique_zip()).decode().encode()
    wrong = []
    for method, path, body in [
        ("PUT", f"{et.API}/functions/{name}/code", b'{"ZipFile": "' + new_zip + b'", "Junk": "\xff\xfe"}'),
        ("PUT", f"{et.API}/functions/{name}/configuration", b'{"Timeout": 7, "Junk": "\xff\xfe"}'),
        ("POST", CREATE_PATH, create_body()[:-1] + b', "Junk": "\xff\xfe"}'),
    ]:
        assert b"\xff" in body
        status, etype, doc = et.error_of(et.signed_request(server, method, path, body))
        if (status, etype) != (400, "InvalidRequestContentException"):
            wrong.append((method, path, status, etype, doc.get("message") or doc.get("FunctionName")))
    assert not wrong, wrong
    assert_unchanged(lam, victim)


def test_deeply_nested_json_is_refused_without_harm(server, intact):
    for body in (b'{"Environment": ' + b"[" * 200_000, b'{"Environment": {"Variables": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}}"):
        status, etype, doc = et.error_of(et.signed_request(server, "POST", CREATE_PATH, body))
        assert (status, etype) == (400, "InvalidRequestContentException"), (status, etype, doc)


WRONG_TYPES = {
    "timeout-string": {"Timeout": "abc"},
    "memory-list": {"MemorySize": [1]},
    "memory-float": {"MemorySize": 128.5},
    "env-variables-list": {"Environment": {"Variables": ["A=1"]}},
    "env-value-object": {"Environment": {"Variables": {"AB": {"x": 1}}}},
    "code-string": {"Code": "UEsDBA=="},
    "architectures-string": {"Architectures": "x86_64"},
    "ephemeral-string": {"EphemeralStorage": "1024"},
    "timeout-overflow": {"Timeout": 99999999999999999999999},
    "handler-number": {"Handler": {"name": "app.handler"}},
}


@pytest.mark.parametrize("fields", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_wrong_json_types_are_invalid_request_content(server, lam, intact, fields):
    body = create_body(**fields)
    name = json.loads(body)["FunctionName"]
    status, etype, doc = et.error_of(et.signed_request(server, "POST", CREATE_PATH, body))
    assert (status, etype) == (400, "InvalidRequestContentException"), (status, etype, doc)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=name)


def test_wrong_json_types_in_updates(server, lam, intact, victim):
    name = victim[0]
    for fields in ({"Timeout": "abc"}, {"MemorySize": "big"}, {"Environment": "A=1"}):
        status, etype, doc = et.error_of(et.signed_request(
            server, "PUT", f"{et.API}/functions/{name}/configuration", json.dumps(fields).encode()))
        assert (status, etype) == (400, "InvalidRequestContentException"), (fields, status, etype, doc)
    for fields in ({"ZipFile": 12345}, {"ZipFile": ["UEsDBA=="]}, {"DryRun": "yes", "ZipFile": GOOD_ZIP_B64}):
        status, etype, doc = et.error_of(et.signed_request(
            server, "PUT", f"{et.API}/functions/{name}/code", json.dumps(fields).encode()))
        assert (status, etype) == (400, "InvalidRequestContentException"), (fields, status, etype, doc)
    assert_unchanged(lam, victim)


def test_zip_file_that_is_not_base64(server, intact):
    body = create_body(Code={"ZipFile": "%%% definitely not base64 %%%"})
    status, etype, doc = et.error_of(et.signed_request(server, "POST", CREATE_PATH, body))
    assert status == 400, doc
    assert etype in ("InvalidRequestContentException", "InvalidParameterValueException"), etype


# --------------------------------------------------------------------------------------
# Names, runtimes, handlers
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "n" * 65,
    "x" * 300,
    "bad name",
    "fünf",
    "semi;colon",
    "arn:aws:lambda:us-east-1:12345:function:short-account",
    "a:b:c:d",
])
def test_bad_function_names_in_create(lam_raw, intact, name):
    with pytest.raises(ClientError) as ei:
        et.create_function(lam_raw, name)
    code, status, message = err(ei.value)
    assert status == 400, (code, message)
    assert code in ("InvalidParameterValueException", "ValidationException"), code


def test_overlong_names_in_the_path(server, lam_raw, intact):
    for ref in ("y" * 300, "arn:aws:lambda:us-east-1:123456789012:function:" + "z" * 250):
        with pytest.raises(ClientError) as ei:
            lam_raw.get_function(FunctionName=ref)
        code, status, _ = err(ei.value)
        assert status == 400 and code in ("InvalidParameterValueException", "ValidationException"), (ref[:20], code, status)
    # 65 characters: not a valid name, so nothing can be found (400 or 404, never 2xx/5xx).
    with pytest.raises(ClientError) as ei:
        lam_raw.get_function(FunctionName="q" * 65)
    assert err(ei.value)[1] in (400, 404)


@pytest.mark.parametrize("runtime", ["", "PYTHON3.12", "python3.12 ", "python", "python3.1", "nodejs", "x" * 10000])
def test_invalid_runtimes(lam_raw, fn_name, intact, runtime):
    with pytest.raises(ClientError) as ei:
        et.create_function(lam_raw, fn_name, Runtime=runtime)
    code, status, message = err(ei.value)
    assert status == 400, (code, message[:200])
    assert code in ("InvalidParameterValueException", "ValidationException"), code
    assert len(message) < 5000, "the error echoes an unbounded amount of input"


@pytest.mark.parametrize("handler", ["", " ", "app.\nhandler", "app handler", "h" * 129, "h" * 5000])
def test_invalid_handlers(lam_raw, fn_name, intact, handler):
    with pytest.raises(ClientError) as ei:
        et.create_function(lam_raw, fn_name, Handler=handler)
    code, status, message = err(ei.value)
    assert status == 400, (code, message[:200])
    assert code in ("InvalidParameterValueException", "ValidationException"), code
    assert len(message) < 5000


# --------------------------------------------------------------------------------------
# Unsafe and broken zip files
# --------------------------------------------------------------------------------------


def _truncated() -> bytes:
    z = et.make_zip({"app.py": et.HANDLER_SOURCE * 50, "b.txt": b"b" * 5000})
    return z[: len(z) // 2]


def _eocd_cut() -> bytes:
    return et.make_zip()[:-10]


def _crc_mismatch() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("app.py", b"A" * 200)
    data = bytearray(buf.getvalue())
    i = data.index(b"A" * 200)
    data[i + 100] = ord("B")  # content changed, CRC-32 in the headers not
    return bytes(data)


UNSAFE_ZIPS = {
    "absolute-path": (lambda: et.make_zip({"app.py": "x", "/etc/cron.d/evil": "x"}), ["/etc/cron.d/evil"]),
    "dotdot": (lambda: et.make_zip({"../evil.py": "x"}), ["../evil.py"]),
    "dotdot-nested": (lambda: et.make_zip({"a/b/../../../evil.py": "x"}), ["evil.py"]),
    "symlink-absolute": (lambda: et.make_zip({"app.py": "x", "passwd": ("symlink", "/etc/passwd")}), ["passwd"]),
    "symlink-dotdot": (lambda: et.make_zip({"app.py": "x", "up": ("symlink", "../../outside")}), ["up"]),
    "symlink-chain": (lambda: et.make_zip({
        "s/file.txt": "x", "s/up": ("symlink", ".."), "d": ("symlink", "s/up"), "e": ("symlink", "d/..")}), ["symbolic link"]),
    "truncated": (_truncated, ["unzip"]),
    "eocd-cut": (_eocd_cut, ["unzip"]),
    "crc-mismatch": (_crc_mismatch, ["unzip"]),
    "not-a-zip": (lambda: b"this is plain text, not a zip archive", ["unzip"]),
    "empty": (lambda: b"", []),
}


@pytest.mark.parametrize("case", UNSAFE_ZIPS.values(), ids=UNSAFE_ZIPS.keys())
def test_unsafe_or_broken_zip_is_refused_on_create(lam, fn_name, intact, case):
    make, mentions = case
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as ei:
        et.create_function(lam, fn_name, make())
    code, status, message = err(ei.value)
    assert (code, status) == ("InvalidParameterValueException", 400)
    for m in mentions:
        assert m.lower() in message.lower(), message
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=fn_name)


@pytest.mark.parametrize("case", [UNSAFE_ZIPS[k] for k in ("dotdot", "symlink-absolute", "truncated")],
                         ids=["dotdot", "symlink-absolute", "truncated"])
def test_unsafe_zip_is_refused_on_update_and_code_is_kept(lam, fn_name, intact, case):
    good = et.unique_zip()
    created = et.create_function(lam, fn_name, good)
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.update_function_code(FunctionName=fn_name, ZipFile=case[0]())
    got = lam.get_function(FunctionName=fn_name)
    assert got["Configuration"]["CodeSha256"] == et.code_sha256(good)
    assert got["Configuration"]["RevisionId"] == created["RevisionId"]
    assert et.url_get(got["Code"]["Location"])[1] == good


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = et.zip_bomb(300 * 1024 * 1024)
    assert len(data) < 2 * 1024 * 1024
    return data


def test_zip_bomb_is_refused(lam, fn_name, intact, bomb):
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as ei:
        et.create_function(lam, fn_name, bomb)
    message = err(ei.value)[2]
    assert str(et.MAX_UNZIPPED_BYTES) in message or "size" in message.lower(), message
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=fn_name)


def test_zip_bomb_is_refused_on_dry_run_and_update(lam, fn_name, intact, bomb):
    good = et.unique_zip()
    et.create_function(lam, fn_name, good)
    for dry in (True, False):
        with pytest.raises(lam.exceptions.InvalidParameterValueException):
            lam.update_function_code(FunctionName=fn_name, ZipFile=bomb, DryRun=dry)
    assert lam.get_function_configuration(FunctionName=fn_name)["CodeSha256"] == et.code_sha256(good)


def test_safe_unusual_zips_are_accepted(lam, intact):
    """Internal symlinks, nested directories and an empty directory entry are fine."""
    z = et.make_zip({
        "app.py": et.HANDLER_SOURCE,
        "lib/pkg/__init__.py": "",
        "lib/pkg/mod.py": "X = 1\n",
        "current": ("symlink", "lib/pkg"),
        "alias.py": ("symlink", "app.py"),
        "lib/pkg/back.py": ("symlink", "../../app.py"),
        "empty/": "",
    })
    name = et.function_name("unusual")
    resp = et.create_function(lam, name, z)
    assert resp["CodeSha256"] == et.code_sha256(z)
    assert et.url_get(lam.get_function(FunctionName=name)["Code"]["Location"])[1] == z


def test_just_under_the_unzipped_limit_is_accepted(lam, fn_name, intact):
    z = et.zip_bomb(et.MAX_UNZIPPED_BYTES - 1024)
    resp = et.create_function(lam, fn_name, z)
    assert resp["CodeSize"] == len(z)


# --------------------------------------------------------------------------------------
# Oversized bodies
# --------------------------------------------------------------------------------------


def _head(method: str, path: str, host: str, headers: dict, length: int | None, chunked=False) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    for k, v in headers.items():
        if k.lower() not in ("host", "content-length", "transfer-encoding"):
            lines.append(f"{k}: {v}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _oversized_create_body(total: int) -> bytes:
    prefix = b'{"FunctionName":"too-big","Runtime":"%s","Handler":"a.b","Code":{"ZipFile":"' % et.PY_RUNTIME.encode()
    suffix = b'"}}'
    return prefix + b"A" * (total - len(prefix) - len(suffix)) + suffix


def _chunks(data: bytes, size: int = 1 << 20):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_signed_create_over_70mb_is_413(server, intact):
    body = _oversized_create_body(et.MAX_CODE_REQUEST_BYTES + 1)
    headers = et.sign("POST", server.endpoint + CREATE_PATH, body, *server.root_keys,
                      headers={"Content-Type": "application/json"})
    head = _head("POST", CREATE_PATH, server.host, headers, len(body))
    status, raw, _ = et.send_raw("127.0.0.1", server.port, head, _chunks(body))
    assert status == 413, raw[:500]
    assert et.raw_header(raw, "x-amzn-ErrorType").startswith("RequestTooLargeException"), raw[:500]
    assert et.raw_json_body(raw).get("message"), raw[:500]


def test_signed_update_code_over_70mb_is_413(server, intact, sentinel):
    path = f"{et.API}/functions/{sentinel[0]}/code"
    body = b'{"ZipFile":"' + b"A" * (et.MAX_CODE_REQUEST_BYTES + 10) + b'"}'
    headers = et.sign("PUT", server.endpoint + path, body, *server.root_keys)
    status, raw, _ = et.send_raw("127.0.0.1", server.port, _head("PUT", path, server.host, headers, len(body)), _chunks(body))
    assert status == 413, raw[:500]
    assert et.raw_header(raw, "x-amzn-ErrorType").startswith("RequestTooLargeException")


def test_unsigned_oversized_declared_length_is_refused(server, intact):
    head = _head("POST", CREATE_PATH, server.host, {"Content-Type": "application/json"}, 100 * 1024 * 1024)
    status, raw, _ = et.send_raw("127.0.0.1", server.port, head, [b"{" * 4096])
    assert status in (413, 403), raw[:500]


def test_unsigned_oversized_chunked_body_is_refused(server, intact):
    """No Content-Length: the server must cut the body off once it passes the limit."""
    chunk = b"A" * (1 << 20)
    framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"

    def body():
        for _ in range(80):  # 80 MiB > 70,167,211 bytes
            yield framed
        yield b"0\r\n\r\n"

    head = _head("POST", CREATE_PATH, server.host, {"Content-Type": "application/json"}, None, chunked=True)
    status, raw, write_error = et.send_raw("127.0.0.1", server.port, head, body())
    assert status in (413, 403), (raw[:500], write_error)


def test_other_operations_limit_is_6_mib(server, lam, intact, sentinel):
    name = sentinel[0]
    path = f"{et.API}/functions/{name}/configuration"
    # Exactly 6 MiB is allowed through (it then fails validation: the description is too long).
    filler = b"x" * (et.MAX_REQUEST_BYTES - len(b'{"Description":""}'))
    body = b'{"Description":"' + filler + b'"}'
    assert len(body) == et.MAX_REQUEST_BYTES
    status, etype, doc = et.error_of(et.signed_request(server, "PUT", path, body))
    assert status == 400 and etype in ("InvalidParameterValueException", "ValidationException"), (status, etype)
    # One byte more is too large.
    body = b'{"Description":"' + filler + b'x"}'
    headers = et.sign("PUT", server.endpoint + path, body, *server.root_keys)
    status, raw, _ = et.send_raw("127.0.0.1", server.port, _head("PUT", path, server.host, headers, len(body)), _chunks(body))
    assert status == 413, raw[:500]
    assert et.raw_header(raw, "x-amzn-ErrorType").startswith("RequestTooLargeException")
    # ListFunctions with a big body as well (GET with a body is odd but must not hurt).
    big = b"z" * (et.MAX_REQUEST_BYTES + 1)
    headers = et.sign("GET", server.endpoint + CREATE_PATH, big, *server.root_keys)
    status, raw, _ = et.send_raw("127.0.0.1", server.port, _head("GET", CREATE_PATH, server.host, headers, len(big)), _chunks(big))
    assert status == 413, raw[:500]


def test_create_body_at_exactly_the_code_limit_is_not_413(server, intact):
    body = _oversized_create_body(et.MAX_CODE_REQUEST_BYTES)
    assert len(body) == et.MAX_CODE_REQUEST_BYTES
    headers = et.sign("POST", server.endpoint + CREATE_PATH, body, *server.root_keys)
    status, raw, _ = et.send_raw("127.0.0.1", server.port, _head("POST", CREATE_PATH, server.host, headers, len(body)), _chunks(body))
    assert status == 400, raw[:500]  # not too large; the zip of "AAAA..." is just not a zip


def test_boto3_request_after_all_that_still_works(lam, fn_name, intact):
    resp = et.create_function(lam, fn_name, et.unique_zip())
    assert resp["State"] == "Active"


def test_boto3_oversized_requests_map_to_request_too_large(lam_raw, fn_name, intact, sentinel):
    """botocore itself sending too much: RequestTooLargeException, as a modeled error."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("big.bin", os.urandom(53 * 1024 * 1024))  # base64 of it: > 70,167,211 bytes
    big_zip = buf.getvalue()
    with pytest.raises(lam_raw.exceptions.RequestTooLargeException) as ei:
        et.create_function(lam_raw, fn_name, big_zip)
    assert err(ei.value)[1] == 413
    with pytest.raises(lam_raw.exceptions.RequestTooLargeException):
        lam_raw.update_function_code(FunctionName=sentinel[0], ZipFile=big_zip)
    with pytest.raises(lam_raw.exceptions.RequestTooLargeException) as ei:
        lam_raw.update_function_configuration(FunctionName=sentinel[0], Description="x" * (7 * 1024 * 1024))
    assert err(ei.value)[1] == 413
    with pytest.raises(lam_raw.exceptions.ResourceNotFoundException):
        lam_raw.get_function(FunctionName=fn_name)
