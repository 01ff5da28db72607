//! Ember's Python and Node.js shims against the real Runtime API server, as plain host
//! processes (the sandbox is tested in its own crate): handler resolution, the context
//! object, results, function errors and init errors.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ember_runtime::{Invocation, Outcome, RuntimeApi};

const PYTHON: &str = "/usr/bin/python3.11";

struct Runtime {
    api: RuntimeApi,
    child: Child,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node() -> String {
    let node = which("node").expect("these tests need Node.js (node) on PATH");
    node.to_string_lossy().into_owned()
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Start `program` with the shim against a fresh Runtime API, with `files` as the task root.
fn start(language: &str, handler: &str, files: &[(&str, &str)]) -> Runtime {
    start_with(language, Some(handler), files)
}

/// `handler: None` starts the runtime pooled: booted, waiting for its assignment.
fn start_with(language: &str, handler: Option<&str>, files: &[(&str, &str)]) -> Runtime {
    let task = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = task.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let runtime_dir = tempfile::tempdir().unwrap();
    ember_runtime::shims::install(runtime_dir.path()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let api = RuntimeApi::serve(listener).unwrap();
    let mut cmd = match language {
        "python" => {
            // As Ember starts it: from the bytecode compiled by the same interpreter.
            let pyc = ember_runtime::shims::compile_python(
                runtime_dir.path(),
                Path::new(PYTHON),
                "python3.11",
            )
            .unwrap();
            let mut c = Command::new(PYTHON);
            c.args(["-I", "-S", "-u"]).arg(runtime_dir.path().join(pyc));
            c
        }
        _ => {
            let mut c = Command::new(node());
            c.arg(runtime_dir.path().join("bootstrap.js"));
            c
        }
    };
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("LAMBDA_TASK_ROOT", task.path());
    match handler {
        Some(handler) => {
            cmd.env("_HANDLER", handler)
                .env("AWS_LAMBDA_FUNCTION_NAME", "fn")
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128");
        }
        None => {
            cmd.env("EMBER_POOLED", "1");
        }
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Runtime {
        api,
        child,
        _dirs: (task, runtime_dir),
    }
}

fn invocation(id: &str, payload: &str) -> Invocation {
    Invocation {
        request_id: id.into(),
        payload: Bytes::from(payload.to_owned()),
        deadline: SystemTime::now() + Duration::from_secs(5),
        function_arn: "arn:aws:lambda:us-east-1:123456789012:function:fn".into(),
        trace_id: Some("Root=1-abc".into()),
        client_context: None,
        cognito_identity: None,
    }
}

async fn call(rt: &Runtime, id: &str, payload: &str) -> Outcome {
    tokio::time::timeout(
        Duration::from_secs(10),
        rt.api.invoke(invocation(id, payload)),
    )
    .await
    .expect("invocation timed out")
    .expect("runtime gone")
    .outcome
}

fn json(bytes: &Bytes) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

async fn ready(rt: &Runtime) -> Result<(), ember_runtime::InitFailure> {
    tokio::time::timeout(Duration::from_secs(10), rt.api.ready())
        .await
        .expect("init timed out")
}

#[tokio::test]
async fn python_handlers_context_and_errors() {
    let rt = start(
        "python",
        "pkg.mod.handler",
        &[
            ("pkg/__init__.py", ""),
            (
                "pkg/mod.py",
                "import os, sys\n\
                 def handler(event, context):\n\
                 \x20   if event.get('fail'):\n\
                 \x20       raise ValueError('bad ' + str(event['fail']))\n\
                 \x20   if event.get('unserialisable'):\n\
                 \x20       return object()\n\
                 \x20   return {'echo': event, 'id': context.aws_request_id, 'name': context.function_name,\n\
                 \x20           'mem': context.memory_limit_in_mb, 'arn': context.invoked_function_arn,\n\
                 \x20           'left': context.get_remaining_time_in_millis(), 'trace': os.environ.get('_X_AMZN_TRACE_ID'),\n\
                 \x20           'unicode': 'h\\u00e9llo \\u2603',\n\
                 \x20           'heavy': [m for m in ('json', 're', 'socket') if m in sys.modules]}\n",
            ),
        ],
    );
    ready(&rt).await.unwrap();
    let Outcome::Success(body) = call(&rt, "r1", r#"{"a": 1}"#).await else {
        panic!("expected success")
    };
    let v = json(&body);
    assert_eq!(v["echo"]["a"], 1);
    assert_eq!(v["id"], "r1");
    assert_eq!(v["name"], "fn");
    assert_eq!(v["mem"], "128");
    assert_eq!(v["trace"], "Root=1-abc");
    assert_eq!(v["unicode"], "h\u{e9}llo \u{2603}");
    // The shim itself imports none of the modules that make a runtime slow to start.
    assert_eq!(v["heavy"], serde_json::json!([]));
    assert!(v["left"].as_i64().unwrap() > 3000);

    let Outcome::Error {
        error_type,
        payload,
    } = call(&rt, "r2", r#"{"fail": 7}"#).await
    else {
        panic!("expected an error")
    };
    assert_eq!(error_type, "ValueError");
    let e = json(&payload);
    assert_eq!(e["errorMessage"], "bad 7");
    assert_eq!(e["errorType"], "ValueError");
    assert!(e["stackTrace"][0].as_str().unwrap().contains("mod.py"));

    let Outcome::Error { error_type, .. } = call(&rt, "r3", r#"{"unserialisable": 1}"#).await
    else {
        panic!("expected an error")
    };
    assert_eq!(error_type, "Runtime.MarshalError");
    // The runtime keeps serving after errors.
    assert!(matches!(call(&rt, "r4", "{}").await, Outcome::Success(_)));
}

#[tokio::test]
async fn python_init_errors_are_reported() {
    for (handler, files, expected) in [
        ("missing.handler", vec![], "Runtime.ImportModuleError"),
        (
            "app.nope",
            vec![("app.py", "x = 1\n")],
            "Runtime.HandlerNotFound",
        ),
        (
            "app",
            vec![("app.py", "x = 1\n")],
            "Runtime.MalformedHandlerName",
        ),
        (
            "app.h",
            vec![("app.py", "def h(:\n")],
            "Runtime.UserCodeSyntaxError",
        ),
        (
            "app.h",
            vec![("app.py", "raise RuntimeError('boom')\n")],
            "RuntimeError",
        ),
    ] {
        let rt = start("python", handler, &files);
        let failure = ready(&rt).await.unwrap_err();
        assert_eq!(failure.error_type, expected, "{handler}");
        assert_eq!(json(&failure.payload)["errorType"], expected);
    }
}

#[tokio::test]
async fn node_async_callback_and_esm_handlers() {
    let rt = start(
        "node",
        "index.handler",
        &[(
            "index.js",
            "exports.handler = async (event, context) => {\n\
               if (event.fail) throw new TypeError('nope');\n\
               console.log('hello from', context.functionName);\n\
               return { echo: event, id: context.awsRequestId, left: context.getRemainingTimeInMillis() };\n\
             };\n",
        )],
    );
    ready(&rt).await.unwrap();
    let Outcome::Success(body) = call(&rt, "n1", r#"{"x": [1, 2]}"#).await else {
        panic!("expected success")
    };
    let v = json(&body);
    assert_eq!(v["echo"]["x"][1], 2);
    assert_eq!(v["id"], "n1");
    let Outcome::Error {
        error_type,
        payload,
    } = call(&rt, "n2", r#"{"fail": true}"#).await
    else {
        panic!("expected an error")
    };
    assert_eq!(error_type, "TypeError");
    assert_eq!(json(&payload)["errorMessage"], "nope");

    let rt = start(
        "node",
        "lib/cb.handler",
        &[(
            "lib/cb.js",
            "exports.handler = function (event, context, callback) {\n\
               setTimeout(() => event.fail ? callback(new Error('cb failed')) : callback(null, { ok: event.n + 1 }), 5);\n\
             };\n",
        )],
    );
    ready(&rt).await.unwrap();
    assert_eq!(
        call(&rt, "c1", r#"{"n": 41}"#).await,
        Outcome::Success(Bytes::from_static(br#"{"ok":42}"#))
    );
    assert!(matches!(
        call(&rt, "c2", r#"{"fail": 1}"#).await,
        Outcome::Error { .. }
    ));

    let rt = start(
        "node",
        "app.handler",
        &[(
            "app.mjs",
            "export const handler = async (e) => ({ esm: true, e });\n",
        )],
    );
    ready(&rt).await.unwrap();
    let Outcome::Success(body) = call(&rt, "m1", "5").await else {
        panic!("expected success")
    };
    assert_eq!(json(&body)["esm"], true);
}

#[tokio::test]
async fn node_init_errors_are_reported() {
    for (handler, files, expected) in [
        ("missing.handler", vec![], "Runtime.ImportModuleError"),
        (
            "index.nope",
            vec![("index.js", "exports.x = 1;\n")],
            "Runtime.HandlerNotFound",
        ),
        (
            "index",
            vec![("index.js", "exports.x = 1;\n")],
            "Runtime.MalformedHandlerName",
        ),
        (
            "index.h",
            vec![("index.js", "exports.h = (;\n")],
            "Runtime.UserCodeSyntaxError",
        ),
    ] {
        let rt = start("node", handler, &files);
        let failure = ready(&rt).await.unwrap_err();
        assert_eq!(failure.error_type, expected, "{handler}");
    }
}

#[tokio::test]
async fn unknown_request_ids_are_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _api = RuntimeApi::serve(listener).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"POST /2018-06-01/runtime/invocation/nope/response HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("InvalidRequestID"));
}

#[tokio::test]
async fn pooled_runtimes_boot_first_and_take_their_function_later() {
    for (language, handler, file, text) in [
        (
            "python",
            "app.handler",
            "app.py",
            "import os\ndef handler(e, c):\n    return {'name': c.function_name, 'v': os.environ['USER_VAR']}\n",
        ),
        (
            "node",
            "index.handler",
            "index.js",
            "exports.handler = async (e, c) => ({ name: c.functionName, v: process.env.USER_VAR });\n",
        ),
    ] {
        let rt = start_with(language, None, &[(file, text)]);
        tokio::time::timeout(Duration::from_secs(10), rt.api.booted())
            .await
            .unwrap()
            .unwrap();
        assert!(!rt.api.is_ready());
        let assignment = ember_runtime::Assignment {
            handler: handler.into(),
            env: vec![
                ("AWS_LAMBDA_FUNCTION_NAME".into(), "pooled-fn".into()),
                ("USER_VAR".into(), "42".into()),
            ],
        };
        assert!(rt.api.assign(assignment.clone()));
        assert!(!rt.api.assign(assignment), "a runtime is assigned once");
        ready(&rt).await.unwrap();
        let Outcome::Success(body) = call(&rt, "p1", "{}").await else {
            panic!("expected success")
        };
        let v = json(&body);
        assert_eq!(v["name"], "pooled-fn", "{language}");
        assert_eq!(v["v"], "42", "{language}");
    }
}

/// One health check a bound after the previous one: it sees whether the runtime came
/// back after the probe the previous check sent.
async fn check_after(rt: &Runtime, bound: Duration) -> Result<(), ember_runtime::Unresponsive> {
    tokio::time::sleep(bound + Duration::from_millis(100)).await;
    rt.api.check_responsive(bound)
}

fn signal(rt: &Runtime, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(rt.child.id() as i32);
    nix::sys::signal::kill(pid, signal).unwrap();
}

#[tokio::test]
async fn idle_runtimes_answer_health_probes_and_stopped_ones_do_not() {
    use nix::sys::signal::Signal;
    // Long enough for a live runtime to be scheduled on a busy machine.
    let bound = Duration::from_millis(1000);
    for (language, handler, file, text) in [
        (
            "python",
            "app.handler",
            "app.py",
            "def handler(e, c):\n    return e\n",
        ),
        (
            "node",
            "index.handler",
            "index.js",
            "exports.handler = async (e) => e;\n",
        ),
    ] {
        // Pooled: parked in the assignment long poll.
        let rt = start_with(language, None, &[(file, text)]);
        tokio::time::timeout(Duration::from_secs(10), rt.api.booted())
            .await
            .unwrap()
            .unwrap();
        rt.api.check_responsive(bound).unwrap();
        for _ in 0..2 {
            check_after(&rt, bound).await.expect(language);
        }
        // Probed runtimes still take their function.
        assert!(rt.api.assign(ember_runtime::Assignment {
            handler: handler.into(),
            env: vec![],
        }));
        ready(&rt).await.unwrap();
        assert!(matches!(call(&rt, "p1", "{}").await, Outcome::Success(_)));
        // Warm: parked in GET /next, probed, and still serving events afterwards.
        rt.api.check_responsive(bound).unwrap();
        check_after(&rt, bound).await.expect(language);
        assert!(matches!(call(&rt, "p2", "{}").await, Outcome::Success(_)));
        // Stopped: its request stays parked, but it never answers the probe. (Stopped
        // before it was back in GET /next, on a very busy machine, it is not parked.)
        tokio::time::sleep(Duration::from_millis(100)).await;
        signal(&rt, Signal::SIGSTOP);
        rt.api.check_responsive(bound).unwrap();
        assert!(check_after(&rt, bound).await.is_err(), "{language}");
        signal(&rt, Signal::SIGCONT);
    }
}

// Multi-threaded: the test reads from its client sockets with blocking calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_whose_long_poll_is_gone_is_not_parked() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let api = RuntimeApi::serve(listener).unwrap();
    let bound = Duration::from_millis(300);
    let poll = |probe: bool| {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let header = if probe {
            "Ember-Health-Probe: 1\r\n"
        } else {
            ""
        };
        write!(
            s,
            "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n{header}\r\n"
        )
        .unwrap();
        s
    };
    // A client that does not accept probes is parked, and never probed.
    let mut quiet = poll(false);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        api.check_responsive(bound).unwrap();
        tokio::time::sleep(bound + Duration::from_millis(50)).await;
    }
    quiet
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        std::io::Read::read(&mut quiet, &mut byte).is_err(),
        "its long poll was answered"
    );
    // Its connection closes: it is no longer parked (once the server has noticed), and
    // fails the check once the bound has passed since.
    drop(quiet);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match api.check_responsive(bound) {
            Ok(()) => assert!(std::time::Instant::now() < deadline, "still responsive"),
            Err(e) => {
                assert_eq!(e, ember_runtime::Unresponsive::NotParked(bound));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Parked again (a client that accepts probes): once the server has its request, a
    // check probes it, and the probe is a 204.
    let mut probed = poll(true);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while api.check_responsive(bound).is_err() {
        assert!(std::time::Instant::now() < deadline, "never parked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    probed
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut probed, &mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 204");
    // It does not ask again: the next check after the bound says so.
    tokio::time::sleep(bound + Duration::from_millis(50)).await;
    assert_eq!(
        api.check_responsive(bound),
        Err(ember_runtime::Unresponsive::Probe(bound))
    );
}

/// The Python shim's `Json` (on `_json`, so that the runtime need not import `json`)
/// gives exactly what `json.loads` and `json.dumps` give, results and errors alike.
#[test]
fn the_python_shims_json_is_the_json_modules() {
    let dir = tempfile::tempdir().unwrap();
    ember_runtime::shims::install(dir.path()).unwrap();
    let script = r#"
import importlib.util, sys
spec = importlib.util.spec_from_file_location("shim", sys.argv[1])
shim = importlib.util.module_from_spec(spec)
spec.loader.exec_module(shim)
documents = [b'{"a": [1, 2.5, "h\\u00e9", null, true, false]}', b'  5 \n', b'"x"', "{\"k\": \"\u00e9\u2603\"}",
    b'\xef\xbb\xbf{}', b'{"a": 1} x', b'[1e400, NaN, -Infinity, -0.0]', b'{"a": 1, "a": 2}', b'', b' \t ',
    b'{"big": 123456789012345678901234567890}', b'"\xed\xa0\x80"', '{"x": "\ud800"}', b'{"a":', b'[1,]',
    '"\\u0000"', b'\x00"\x00"', b'"\x00"', bytearray(b'[3]'), b'{"nested": ' * 50 + b'1' + b'}' * 50]
circular = []
circular.append(circular)
values = [{"a": [1, 2.5, "h\u00e9 \u2603", None, True, float("nan"), float("-inf")]}, "x", 1.0, -0.0, [],
    {1: 2, None: 3, 2.5: 1, True: 0}, object(), {"x": {1, 2}}, (1, 2), circular, {(1, 2): 3}, 10**30,
    {"deep": [[[[{"a": "\n\t\"\\"}]]]]}, "\ud800"]
def outcome(f, x):
    # Each call as in a runtime that has not imported json (an error before imports it).
    sys.modules.pop("json", None)
    try:
        return ("ok", repr(f(x)))
    except Exception as e:
        return ("error", type(e).__name__, str(e))
fast = [outcome(shim.json.loads, d) for d in documents] + [outcome(shim.json.dumps, v) for v in values]
import json
reference = [outcome(json.loads, d) for d in documents] + [outcome(json.dumps, v) for v in values]
bad = [(i, a, b) for i, (a, b) in enumerate(zip(fast, reference)) if a != b]
print(bad)
sys.exit(1 if bad else 0)
"#;
    let out = Command::new(PYTHON)
        .args(["-I", "-S", "-c", script])
        .arg(dir.path().join("bootstrap.py"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "differences from json: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
