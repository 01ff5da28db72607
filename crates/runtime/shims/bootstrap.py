"""Ember's Python runtime: the Lambda Runtime API client loop.

Started as `python3 -I -S -u /var/runtime/<runtime>/bootstrap.pyc` inside a sandbox (the
bytecode Ember compiles at start-up with that interpreter; Python never caches a script's
bytecode, and /var/runtime is read-only anyway). It imports the handler named by _HANDLER
from LAMBDA_TASK_ROOT (init), then loops: GET .../next, call the handler, POST the result
or the error. Behaves like AWS's Python runtime: same handler resolution, context object,
error payloads and init error types.

Start-up cost matters: every sandbox the warming pool boots pays it. So the shim imports
`_socket` (built in) rather than `socket` (which pulls in enum, selectors, collections),
and encodes and decodes JSON with `_json`, the C accelerator the `json` module itself
uses, rather than importing `json` (which pulls in `re`: ~6 ms of CPU per start on a
2-core VM, as much as the interpreter's own start-up); see `Json`.
"""

import os
import sys
import time

import _json
import _socket

API = os.environ.get("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")
PREFIX = "/2018-06-01/runtime"
TASK_ROOT = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")


class Response:
    def __init__(self, status, headers):
        self.status, self.headers = status, headers

    def getheader(self, name):
        return self.headers.get(name.lower())


class Json:
    """`json.loads` and `json.dumps` with their default settings, without importing `json`.

    The common case (a UTF-8 document; an object the C encoder takes) runs through the
    same C scanner and encoder, built with the same parameters, as `json`'s own default
    decoder and encoder, so the results are the same. Everything else (other encodings,
    invalid documents, unserialisable objects, an interpreter whose `_json` differs) is
    handed to the `json` module itself, which then also produces the error. Once the
    function has imported `json`, it is used directly.
    """

    WHITESPACE = " \t\n\r"
    CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = CONSTANTS.__getitem__

    def __init__(self):
        try:
            self.scan = _json.make_scanner(self)
        except Exception:
            self.scan = None

    @staticmethod
    def module():
        import json

        return json

    def loads(self, data):
        if self.scan is not None and "json" not in sys.modules:
            try:
                text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
                start = len(text) - len(text.lstrip(self.WHITESPACE))
                value, end = self.scan(text, start)
                if not text[end:].strip(self.WHITESPACE):
                    return value
            except Exception:
                pass
        return self.module().loads(data)

    def dumps(self, value):
        if "json" not in sys.modules:
            try:
                # A new encoder each time: its circular-reference markers survive an error.
                encode = _json.make_encoder(
                    {}, unserialisable, _json.encode_basestring_ascii, None,
                    ": ", ", ", False, False, True)
                return "".join(encode(value, 0))
            except Exception:
                pass
        return self.module().dumps(value)


def unserialisable(value):
    raise TypeError("Object of type %s is not JSON serializable" % type(value).__name__)


json = Json()


# Long polls (GET .../next, GET .../ember/assignment) carry this header: Ember may then
# answer one with 204 No Content to check that the runtime is responsive, and the runtime
# simply asks again.
PROBE_HEADER = {"Ember-Health-Probe": "1"}


class Connection:
    """One keep-alive HTTP/1.1 connection to the Runtime API, reopened if it drops.

    Hand-written rather than http.client: importing http.client costs ~17 ms and a few
    MiB per runtime process, paid by every cold start and every pooled sandbox. The server
    is Ember's own and always answers with a Content-Length.
    """

    def __init__(self):
        host, _, port = API.rpartition(":")
        self.addr = (host.strip("[]"), int(port))
        self.sock = None
        self.buf = b""

    def _connect(self):
        # The host as bytes: a str would be IDNA-encoded, which imports `re`.
        family, kind, proto, _, addr = _socket.getaddrinfo(
            self.addr[0].encode("ascii"), self.addr[1], 0, _socket.SOCK_STREAM)[0]
        sock = _socket.socket(family, kind, proto)
        try:
            sock.connect(addr)
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        except OSError:
            sock.close()
            raise
        return sock

    def request(self, method, path, body=b"", headers=None):
        head = "%s %s%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n" % (
            method, PREFIX, path, API, len(body))
        for name, value in (headers or {}).items():
            head += "%s: %s\r\n" % (name, value)
        message = head.encode("latin-1") + b"\r\n" + body
        for attempt in (0, 1):
            try:
                if self.sock is None:
                    self.sock = self._connect()
                    self.buf = b""
                self.sock.sendall(message)
                return self._response()
            except OSError:
                if self.sock is not None:
                    self.sock.close()
                self.sock = None
                if attempt:
                    raise

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the Runtime API closed the connection")
        self.buf += chunk

    def _response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return Response(int(lines[0].split(" ", 2)[1]), headers), body


class Client:
    def __init__(self, d):
        self.installation_id = d.get("installation_id")
        self.app_title = d.get("app_title")
        self.app_version_name = d.get("app_version_name")
        self.app_version_code = d.get("app_version_code")
        self.app_package_name = d.get("app_package_name")


class ClientContext:
    """context.client_context, as AWS's runtime builds it from X-Amz-Client-Context."""

    def __init__(self, d):
        self.client = Client(d["client"]) if d.get("client") else None
        self.custom = d.get("custom")
        self.env = d.get("env")


class CognitoIdentity:
    def __init__(self, d):
        self.cognito_identity_id = d.get("cognitoIdentityId")
        self.cognito_identity_pool_id = d.get("cognitoIdentityPoolId")


class LambdaContext:
    def __init__(self, request_id, deadline_ms, arn, client_context, identity):
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self._deadline_ms = deadline_ms
        self.client_context = ClientContext(json.loads(client_context)) if client_context else None
        self.identity = CognitoIdentity(json.loads(identity) if identity else {})

    def get_remaining_time_in_millis(self):
        return max(int(self._deadline_ms - time.time() * 1000), 0)


def error_payload(exc, error_type=None, message=None):
    import traceback  # only on errors: it costs start-up time otherwise

    # Frames of this shim are the platform's, not the user's: leave them out, as Lambda does.
    # (Compared by the code's file name: run from bytecode, __file__ names the .pyc.)
    shim = error_payload.__code__.co_filename
    tb = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != shim]
    return {
        "errorMessage": message if message is not None else str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_list(tb),
    }


def log_error(payload):
    lines = "".join(payload.get("stackTrace") or [])
    sys.stdout.write(
        "[ERROR] %s: %s\nTraceback (most recent call last):\n%s"
        % (payload["errorType"], payload["errorMessage"], lines)
    )
    sys.stdout.flush()


def load_handler(spec):
    module_path, _, function_name = spec.rpartition(".")
    if not module_path or not function_name:
        raise InitError(
            "Runtime.MalformedHandlerName",
            "Bad handler '%s': not enough values to unpack (expected 2, got 1)" % spec,
        )
    module_name = module_path.replace("/", ".")
    try:
        import importlib

        module = importlib.import_module(module_name)
    except SyntaxError as e:
        raise InitError("Runtime.UserCodeSyntaxError", "Syntax error in module '%s': %s" % (module_name, e), e)
    except ImportError as e:
        raise InitError("Runtime.ImportModuleError", "Unable to import module '%s': %s" % (module_name, e), e)
    except Exception as e:  # the module raised while being imported
        raise InitError(type(e).__name__, str(e), e)
    handler = getattr(module, function_name, None)
    if handler is None:
        raise InitError(
            "Runtime.HandlerNotFound",
            "Handler '%s' missing on module '%s'" % (function_name, module_name),
        )
    return handler


class InitError(Exception):
    def __init__(self, error_type, message, cause=None):
        super().__init__(message)
        self.error_type, self.message, self.cause = error_type, message, cause


def long_poll(api, path):
    """GET a long-poll endpoint until it answers with something other than a probe."""
    while True:
        resp, body = api.request("GET", path, headers=PROBE_HEADER)
        if resp.status != 204:
            return resp, body


def await_assignment(api):
    """A pooled runtime boots before it has a function: wait for it (Ember's own call)."""
    resp, body = long_poll(api, "/ember/assignment")
    if resp.status != 200:
        sys.stderr.write("runtime API assignment answered %d\n" % resp.status)
        sys.exit(1)
    assignment = json.loads(body)
    del os.environ["EMBER_POOLED"]
    os.environ.update(assignment["env"])
    os.environ["_HANDLER"] = assignment["handler"]


CURRENT_REQUEST_ID = None


def install_logging():
    """Give the root logger Lambda's handler, if the function uses `logging`.

    Done only once `logging` has been imported (by the function): importing it ourselves
    would cost every runtime start-up time it may not need.
    """
    if "logging" not in sys.modules or getattr(install_logging, "done", False):
        return
    install_logging.done = True
    import logging

    class RequestIdFilter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = CURRENT_REQUEST_ID
            return True

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S"))
    handler.formatter.converter = time.gmtime
    handler.addFilter(RequestIdFilter())
    logging.getLogger().addHandler(handler)


def main():
    global TASK_ROOT, CURRENT_REQUEST_ID
    api = Connection()
    if os.environ.get("EMBER_POOLED") == "1":
        await_assignment(api)
        TASK_ROOT = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    sys.path[:0] = [TASK_ROOT, "/opt/python"]
    os.chdir(TASK_ROOT) if os.path.isdir(TASK_ROOT) else None
    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except InitError as e:
        payload = error_payload(e.cause or e, e.error_type, e.message)
        log_error(payload)
        api.request(
            "POST",
            "/init/error",
            json.dumps(payload).encode(),
            {"Lambda-Runtime-Function-Error-Type": e.error_type},
        )
        sys.exit(1)

    while True:
        resp, body = long_poll(api, "/invocation/next")
        if resp.status != 200:
            sys.stderr.write("runtime API /next answered %d\n" % resp.status)
            sys.exit(1)
        request_id = resp.getheader("Lambda-Runtime-Aws-Request-Id")
        CURRENT_REQUEST_ID = request_id
        install_logging()
        context = LambdaContext(
            request_id,
            int(resp.getheader("Lambda-Runtime-Deadline-Ms") or 0),
            resp.getheader("Lambda-Runtime-Invoked-Function-Arn"),
            resp.getheader("Lambda-Runtime-Client-Context"),
            resp.getheader("Lambda-Runtime-Cognito-Identity"),
        )
        trace_id = resp.getheader("Lambda-Runtime-Trace-Id")
        if trace_id:
            os.environ["_X_AMZN_TRACE_ID"] = trace_id
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        try:
            event = json.loads(body) if body else None
        except ValueError as e:
            payload = error_payload(e, "Runtime.UnmarshalError", "Unable to unmarshal input: %s" % e)
            log_error(payload)
            post_error(api, request_id, payload)
            continue
        try:
            result = handler(event, context)
        except Exception as e:
            payload = error_payload(e)
            log_error(payload)
            post_error(api, request_id, payload)
            continue
        try:
            out = json.dumps(result)
        except (TypeError, ValueError) as e:
            payload = error_payload(e, "Runtime.MarshalError", "Unable to marshal response: %s" % e)
            log_error(payload)
            post_error(api, request_id, payload)
            continue
        sys.stdout.flush()
        api.request("POST", "/invocation/%s/response" % request_id, out.encode())


def post_error(api, request_id, payload):
    sys.stdout.flush()
    api.request(
        "POST",
        "/invocation/%s/error" % request_id,
        json.dumps(payload).encode(),
        {"Lambda-Runtime-Function-Error-Type": payload["errorType"]},
    )


if __name__ == "__main__":
    main()
