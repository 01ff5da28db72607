"""Fixtures of the compatibility suite.

One `ember serve` process (the session server) is shared by every test that does not
need a server of its own: it listens on 127.0.0.1:0, keeps its data in a temporary
directory and uses a fixed root key pair. It is stopped with SIGTERM at the end and must
exit with status 0.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import embertest as et  # noqa: E402


def pytest_configure(config):
    # The clients under test must see only what each test gives them: no profile, no
    # credentials or config file, no endpoint override from the developer's shell.
    for k in list(os.environ):
        if k.startswith("AWS_"):
            del os.environ[k]
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


@pytest.fixture(scope="session")
def ember_bin() -> str:
    return et.ember_bin()


@pytest.fixture(scope="session")
def tmp_root():
    with tempfile.TemporaryDirectory(prefix="ember-compat-") as d:
        # Sandboxes run as unprivileged uids and bind code from under the data dir, so
        # every directory above it must be searchable (not readable) by others.
        os.chmod(d, 0o711)
        yield d


@pytest.fixture(scope="session")
def server(ember_bin, tmp_root):
    """The shared server. Teardown: SIGTERM, exit status 0, nothing more on stdout."""
    s = et.EmberServer(data_dir=os.path.join(tmp_root, "session-data")).start()
    yield s
    assert s.alive(), f"the session server died during the run; stderr:\n{s.stderr()}"
    code = s.stop(signal.SIGTERM)
    assert code == 0, f"ember serve exited with {code} after SIGTERM; stderr:\n{s.stderr()}"
    extra = b"".join(s.extra_stdout).strip()
    assert not extra, f"ember serve printed more than its ready line on stdout: {extra!r}"


@pytest.fixture(scope="session")
def root_id(server) -> str:
    return et.root_account_id(server)


@pytest.fixture(scope="session")
def lam(server):
    """boto3 Lambda client of the root account (client-side validation on)."""
    return server.lambda_client()


@pytest.fixture(scope="session")
def lam_raw(server):
    """boto3 Lambda client of the root account without client-side validation, so
    out-of-range values reach the server."""
    return server.lambda_client(validate=False)


@pytest.fixture(scope="session")
def other(server) -> et.Account:
    """A second, non-root account."""
    return et.create_account(server, "compat-other-" + os.urandom(4).hex())


@pytest.fixture(scope="session")
def other_lam(server, other):
    return other.client(server)


@pytest.fixture
def fn_name(request) -> str:
    """A fresh function name for this test."""
    return et.function_name(re.sub(r"\[.*", "", request.node.name).removeprefix("test_"))


@pytest.fixture
def role(root_id) -> str:
    return et.role_arn(root_id)


@pytest.fixture
def fresh_account(server) -> et.Account:
    """A brand-new account (empty function list) for this test."""
    return et.create_account(server)


@pytest.fixture
def servers():
    """Servers a test starts itself (and may kill). Any still running at the end are
    stopped gracefully, so they remove their sandboxes, mounts and cgroups."""
    started: list[et.EmberServer] = []
    yield started
    for s in started:
        if s.alive():
            s.stop()
