//! The real `ember` binary, driven from outside: `ember serve` on port 0 with a temporary
//! data directory, and the client subcommands against it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

#[test]
fn first_start_writes_root_credentials_and_the_cli_uses_them() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let creds = data.path().join("credentials");
    let mode = std::fs::metadata(&creds).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(&creds)
            .unwrap()
            .contains("aws_access_key_id = AKIA")
    );

    let code = function_dir();
    let dir = code.path().to_str().unwrap();
    let created = json(&server.ok(
        &[
            "deploy",
            dir,
            "--name",
            "hello",
            "--runtime",
            "python3.11",
            "--handler",
            "app.handler",
            "--memory",
            "256",
            "--env",
            "GREETING=hi",
        ],
        &[],
    ));
    assert_eq!(created["FunctionName"], "hello");
    assert_eq!(created["MemorySize"], 256);
    assert_eq!(created["Environment"]["Variables"]["GREETING"], "hi");
    let sha = created["CodeSha256"].clone();

    // Deploying again updates in place; unchanged code keeps its hash.
    let updated = json(&server.ok(
        &[
            "deploy",
            dir,
            "--name",
            "hello",
            "--runtime",
            "python3.11",
            "--handler",
            "app.handler",
            "--timeout",
            "30",
        ],
        &[],
    ));
    assert_eq!(updated["Timeout"], 30);
    assert_eq!(updated["CodeSha256"], sha);
    assert_ne!(updated["RevisionId"], created["RevisionId"]);

    let listing = server.ok(&["functions", "ls"], &[]);
    assert!(
        listing.lines().any(|l| l.starts_with("hello ")),
        "{listing}"
    );
    let got = json(&server.ok(&["functions", "get", "hello"], &[]));
    assert_eq!(got["Configuration"]["Timeout"], 30);
    assert!(
        got["Code"]["Location"]
            .as_str()
            .unwrap()
            .contains("X-Amz-Signature=")
    );

    server.ok(&["functions", "rm", "hello"], &[]);
    server.fails_with(
        &["functions", "get", "hello"],
        &[],
        "ResourceNotFoundException",
    );
    server.fails_with(
        &["functions", "rm", "hello"],
        &[],
        "ResourceNotFoundException",
    );
}

#[test]
fn accounts_are_created_by_root_and_isolated() {
    let data = tempfile::tempdir().unwrap();
    let root_env = [
        ("EMBER_ROOT_ACCESS_KEY_ID", "AKIAROOTROOTROOTROOT"),
        (
            "EMBER_ROOT_SECRET_ACCESS_KEY",
            "root-secret-root-secret-root-secret-0000",
        ),
    ];
    let server = Server::start(data.path(), &root_env);
    assert!(
        !data.path().join("credentials").exists(),
        "no key file when keys come from env"
    );
    let root = [
        ("AWS_ACCESS_KEY_ID", root_env[0].1),
        ("AWS_SECRET_ACCESS_KEY", root_env[1].1),
    ];
    let alice = json(&server.ok(&["accounts", "create", "alice"], &root));
    let alice_id = alice["AccountId"].as_str().unwrap().to_owned();
    assert_eq!(alice_id.len(), 12);
    let alice_env = [
        ("AWS_ACCESS_KEY_ID", alice["AccessKeyId"].as_str().unwrap()),
        (
            "AWS_SECRET_ACCESS_KEY",
            alice["SecretAccessKey"].as_str().unwrap(),
        ),
    ];
    server.fails_with(
        &["accounts", "create", "alice"],
        &root,
        "ResourceConflictException",
    );
    server.fails_with(
        &["accounts", "create", "mallory"],
        &alice_env,
        "AccessDeniedException",
    );
    server.fails_with(
        &["accounts", "create", "bad name!"],
        &root,
        "InvalidParameterValueException",
    );

    let code = function_dir();
    let dir = code.path().to_str().unwrap();
    let deploy = |env: &[(&str, &str)]| {
        json(&server.ok(
            &[
                "deploy",
                dir,
                "--name",
                "shared-name",
                "--runtime",
                "python3.11",
                "--handler",
                "app.h",
            ],
            env,
        ))
    };
    let alices = deploy(&alice_env);
    assert!(alices["FunctionArn"].as_str().unwrap().contains(&alice_id));
    let roots = deploy(&root);
    assert_ne!(alices["FunctionArn"], roots["FunctionArn"]);

    // Alice's function is invisible to root by name and forbidden by ARN.
    server.ok(&["functions", "rm", "shared-name"], &root);
    server.fails_with(
        &["functions", "get", "shared-name"],
        &root,
        "ResourceNotFoundException",
    );
    let arn = alices["FunctionArn"].as_str().unwrap();
    server.fails_with(&["functions", "get", arn], &root, "AccessDeniedException");
    server.fails_with(&["functions", "rm", arn], &root, "AccessDeniedException");
    assert_eq!(
        json(&server.ok(&["functions", "get", arn], &alice_env))["Configuration"]["FunctionArn"],
        *arn
    );

    let accounts = json(&server.ok(&["accounts", "ls"], &root));
    assert_eq!(accounts["Accounts"].as_array().unwrap().len(), 2);
    server.fails_with(
        &["functions", "ls"],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
        ],
        "UnrecognizedClientException",
    );
    server.fails_with(
        &["functions", "ls"],
        &[
            ("AWS_ACCESS_KEY_ID", root_env[0].1),
            ("AWS_SECRET_ACCESS_KEY", "wrong"),
        ],
        "InvalidSignatureException",
    );
}

#[test]
fn created_functions_survive_kill_9_and_sigterm_is_graceful() {
    let data = tempfile::tempdir().unwrap();
    let code = function_dir();
    let dir = code.path().to_str().unwrap();
    let mut server = Server::start(data.path(), &[]);
    let mut hashes = Vec::new();
    for i in 0..5 {
        let name = format!("durable-{i}");
        let created = json(&server.ok(
            &[
                "deploy",
                dir,
                "--name",
                &name,
                "--runtime",
                "nodejs20.x",
                "--handler",
                "index.handler",
            ],
            &[],
        ));
        hashes.push(created["CodeSha256"].clone());
    }
    server.signal("-KILL");
    server.wait();

    let mut server = Server::start(data.path(), &[]);
    for (i, sha) in hashes.iter().enumerate() {
        let got = json(&server.ok(&["functions", "get", &format!("durable-{i}")], &[]));
        assert_eq!(got["Configuration"]["CodeSha256"], *sha);
        assert_eq!(got["Configuration"]["Runtime"], "nodejs20.x");
    }
    server.signal("-TERM");
    assert!(
        server.wait().success(),
        "SIGTERM should end the server cleanly"
    );
}

#[test]
fn oversized_and_garbage_requests_get_aws_errors_and_the_server_keeps_serving() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let addr = server.addr();

    // A declared body far over the limit is refused before it is read.
    let answer = raw_http(
        &addr,
        format!(
            "POST /2015-03-31/functions HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 999999999\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer
            .to_lowercase()
            .contains("x-amzn-errortype: requesttoolargeexception"),
        "{answer}"
    );

    let answer = raw_http(
        &addr,
        format!("GET /2015-03-31/functions HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains("MissingAuthenticationTokenException"),
        "{answer}"
    );

    let answer = raw_http(&addr, b"\x16\x03\x01 garbage that is not HTTP\r\n\r\n");
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");

    let answer = raw_http(
        &addr,
        format!("GET /ember/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.ok(&["functions", "ls"], &[]);
}

#[test]
fn settings_come_from_flags_env_and_config_file() {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("ember.toml");
    std::fs::write(
        &config,
        "region = \"eu-west-1\"\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut cmd = Command::new(EMBER);
    cmd.arg("serve")
        .env("EMBER_CONFIG", &config)
        .env("EMBER_DATA_DIR", data.path().join("d"))
        .env_remove("EMBER_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let server = Server {
        child,
        endpoint: line
            .trim()
            .trim_start_matches("Ember is listening on ")
            .to_owned(),
        data_dir: data.path().join("d"),
    };
    let code = function_dir();
    let created = json(&server.ok(
        &[
            "deploy",
            code.path().to_str().unwrap(),
            "--name",
            "f",
            "--runtime",
            "provided.al2023",
            "--handler",
            "x",
        ],
        &[],
    ));
    assert!(
        created["FunctionArn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:lambda:eu-west-1:")
    );

    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nbogus = 1\n").unwrap();
    let out = Command::new(EMBER)
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(data.path().join("e"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
}

#[test]
fn invoke_runs_the_function_in_a_sandbox_and_prints_result_and_log() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let code = function_dir();
    std::fs::write(
        code.path().join("fail.py"),
        "def handler(event, context):\n    raise KeyError('missing')\n",
    )
    .unwrap();
    let dir = code.path().to_str().unwrap();
    for (name, handler) in [("echo", "app.handler"), ("broken", "fail.handler")] {
        server.ok(
            &[
                "deploy",
                dir,
                "--name",
                name,
                "--runtime",
                "python3.11",
                "--handler",
                handler,
            ],
            &[],
        );
    }
    let out = server.ember(
        &["invoke", "echo", "--payload", r#"{"k": [1, 2]}"#, "--log"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        json(&String::from_utf8(out.stdout).unwrap()),
        serde_json::json!({"k": [1, 2]})
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("START RequestId: "), "{log}");
    assert!(log.contains("REPORT RequestId: "), "{log}");
    assert!(
        log.contains("Init Duration: "),
        "a first invoke is a cold start: {log}"
    );

    let out = server.ember(&["invoke", "echo", "--log"], &[]);
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("Init Duration"),
        "the second invoke is warm"
    );

    let out = server.ember(&["invoke", "broken"], &[]);
    assert!(!out.status.success());
    let error = json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(error["errorType"], "KeyError");
    server.fails_with(
        &["invoke", "echo", "--payload", "{nope"],
        &[],
        "not valid JSON",
    );
    server.fails_with(&["invoke", "absent"], &[], "ResourceNotFoundException");
}
