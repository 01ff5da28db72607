"""The aws CLI (v1, from PyPI) against Ember: the command on PATH, credentials and
region from the environment, an empty HOME, and --endpoint-url."""

from __future__ import annotations

import json
import tempfile

import pytest

import embertest as et


AwsCli = et.AwsCli


@pytest.fixture(scope="module")
def cli_env(server):
    """A fresh account (so listings are exact) and an aws CLI configured for it."""
    acct = et.create_account(server)
    with tempfile.TemporaryDirectory(prefix="ember-aws-home-") as home:
        yield acct, AwsCli(server.endpoint, acct.key, acct.secret, home)


@pytest.fixture
def zip_file(tmp_path):
    data = et.unique_zip("cli")
    path = tmp_path / "function.zip"
    path.write_bytes(data)
    return path, data


def create(cli: AwsCli, acct, name: str, zip_path, *extra: str) -> dict:
    return cli.json(
        "lambda", "create-function",
        "--function-name", name,
        "--runtime", et.PY_RUNTIME,
        "--handler", "app.handler",
        "--role", et.role_arn(acct.account_id),
        "--zip-file", f"fileb://{zip_path}",
        *extra,
    )


def test_cli_create_get_update_delete(cli_env, zip_file, tmp_path):
    acct, cli = cli_env
    path, data = zip_file
    name = et.function_name("cli")
    out = create(cli, acct, name, path, "--timeout", "20", "--memory-size", "256",
                 "--environment", "Variables={STAGE=test,LEVEL=2}", "--description", "from the cli")
    assert out["FunctionName"] == name
    assert out["FunctionArn"] == f"arn:aws:lambda:us-east-1:{acct.account_id}:function:{name}"
    assert out["CodeSha256"] == et.code_sha256(data)
    assert out["CodeSize"] == len(data)
    assert out["State"] == "Active"
    assert (out["Timeout"], out["MemorySize"]) == (20, 256)
    assert out["Environment"]["Variables"] == {"STAGE": "test", "LEVEL": "2"}

    got = cli.json("lambda", "get-function", "--function-name", name)
    assert got["Configuration"]["CodeSha256"] == et.code_sha256(data)
    assert got["Configuration"]["Description"] == "from the cli"
    status, body, _ = et.url_get(got["Code"]["Location"])
    assert status == 200 and body == data

    conf = cli.json("lambda", "get-function-configuration", "--function-name", out["FunctionArn"])
    assert conf["RevisionId"] == out["RevisionId"]

    upd = cli.json("lambda", "update-function-configuration", "--function-name", name,
                   "--timeout", "45", "--memory-size", "512", "--description", "changed",
                   "--environment", "Variables={STAGE=prod}")
    assert (upd["Timeout"], upd["MemorySize"], upd["Description"]) == (45, 512, "changed")
    assert upd["Environment"]["Variables"] == {"STAGE": "prod"}
    assert upd["RevisionId"] != out["RevisionId"]
    cli.run("lambda", "wait", "function-updated-v2", "--function-name", name)

    new = tmp_path / "v2.zip"
    new_data = et.unique_zip("cli-v2")
    new.write_bytes(new_data)
    code = cli.json("lambda", "update-function-code", "--function-name", name,
                    "--zip-file", f"fileb://{new}", "--revision-id", upd["RevisionId"])
    assert code["CodeSha256"] == et.code_sha256(new_data)
    assert code["Timeout"] == 45

    r = cli.run("lambda", "delete-function", "--function-name", name)
    # Newer Lambda models bind DeleteFunction's HTTP status to an output member.
    assert json.loads(r.stdout or "{}").get("StatusCode", 204) == 204, r.stdout
    r = cli.run("lambda", "get-function", "--function-name", name, check=False)
    assert r.returncode != 0
    assert "ResourceNotFoundException" in r.stderr, r.stderr
    assert "GetFunction" in r.stderr, r.stderr


def test_cli_list_functions_max_items_pagination(cli_env, zip_file):
    acct, cli = cli_env
    path, _ = zip_file
    before = {f["FunctionName"] for f in cli.json("lambda", "list-functions")["Functions"]}
    names = {et.function_name(f"cli-list-{i}") for i in range(5)}
    for n in names:
        create(cli, acct, n, path)

    collected, token, pages = [], None, 0
    while True:
        args = ["lambda", "list-functions", "--max-items", "2"]
        if token:
            args += ["--starting-token", token]
        page = cli.json(*args)
        pages += 1
        assert len(page["Functions"]) <= 2
        collected += [f["FunctionName"] for f in page["Functions"]]
        token = page.get("NextToken")
        if not token:
            break
        assert pages < 20
    total = len(before) + 5
    assert pages == (total + 1) // 2
    assert set(collected) == before | names
    assert len(collected) == len(set(collected))

    # Without --max-items the CLI follows NextMarker itself, a page at a time.
    everything = cli.json("lambda", "list-functions", "--page-size", "2")
    assert {f["FunctionName"] for f in everything["Functions"]} == before | names


def test_cli_errors_name_the_exception(cli_env, zip_file, server):
    acct, cli = cli_env
    path, _ = zip_file
    name = et.function_name("clierr")
    r = cli.run("lambda", "create-function", "--function-name", name, "--runtime", "python2.7",
                "--handler", "app.handler", "--role", et.role_arn(acct.account_id),
                "--zip-file", f"fileb://{path}", check=False)
    assert r.returncode != 0
    assert "InvalidParameterValueException" in r.stderr, r.stderr
    assert "CreateFunction" in r.stderr, r.stderr

    create(cli, acct, name, path)
    r = cli.run("lambda", "create-function", "--function-name", name, "--runtime", et.PY_RUNTIME,
                "--handler", "app.handler", "--role", et.role_arn(acct.account_id),
                "--zip-file", f"fileb://{path}", check=False)
    assert r.returncode != 0
    assert "ResourceConflictException" in r.stderr, r.stderr

    r = cli.run("lambda", "update-function-configuration", "--function-name", name,
                "--timeout", "5", "--revision-id", "stale", check=False)
    assert r.returncode != 0
    assert "PreconditionFailedException" in r.stderr, r.stderr

    bad = AwsCli(server.endpoint, acct.key, acct.secret + "nope", cli.home)
    r = bad.run("lambda", "list-functions", check=False)
    assert r.returncode != 0
    assert "InvalidSignatureException" in r.stderr, r.stderr

    unknown = AwsCli(server.endpoint, "AKIANOTAKEY000000000", "s", cli.home)
    r = unknown.run("lambda", "list-functions", check=False)
    assert r.returncode != 0
    assert "UnrecognizedClientException" in r.stderr, r.stderr
