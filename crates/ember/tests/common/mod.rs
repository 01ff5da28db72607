//! Shared by the integration tests: the real `ember` binary as a server on port 0 with a
//! temporary data directory, and as a client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const EMBER: &str = env!("CARGO_BIN_EXE_ember");

pub struct Server {
    pub child: Child,
    pub endpoint: String,
    pub data_dir: PathBuf,
}

impl Server {
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(EMBER);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env_remove("EMBER_ROOT_ACCESS_KEY_ID")
            .env_remove("EMBER_ROOT_SECRET_ACCESS_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning ember serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let endpoint = line
            .trim()
            .strip_prefix("Ember is listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server {
            child,
            endpoint,
            data_dir: data_dir.to_owned(),
        }
    }

    /// Run a client subcommand with the given credentials environment.
    pub fn ember(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(EMBER);
        cmd.args(args)
            .arg("--endpoint")
            .arg(&self.endpoint)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("running the ember client")
    }

    pub fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.ember(args, env);
        assert!(
            out.status.success(),
            "ember {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn fails_with(&self, args: &[&str], env: &[(&str, &str)], code: &str) {
        let out = self.ember(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "ember {args:?} succeeded");
        assert!(stderr.contains(code), "ember {args:?}: {stderr}");
    }

    pub fn addr(&self) -> String {
        self.endpoint.trim_start_matches("http://").to_owned()
    }

    pub fn signal(&mut self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A graceful stop, so the server removes its sandboxes and mounts.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn function_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.py"),
        "def handler(event, context):\n    return event\n",
    )
    .unwrap();
    dir
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

pub fn raw_http(addr: &str, request: &[u8]) -> String {
    // No half-close: hyper drops a connection whose client stops sending mid-request.
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok();
    answer
}
