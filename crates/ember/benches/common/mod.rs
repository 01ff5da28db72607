//! What the benchmarks share: a real `ember serve` (release build) on port 0 with a fixed
//! root key, a keep-alive HTTP/1.1 connection sending prepared (signed-once) requests,
//! and the statistics and table rows every figure is printed with.

// Each benchmark uses a different subset.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

pub const EMBER: &str = env!("CARGO_BIN_EXE_ember");
pub const KEY_ID: &str = "AKIABENCHBENCHBENCH0";
pub const SECRET: &str = "bench-secret-bench-secret-bench-secret-00";

pub struct Server {
    child: Child,
    pub addr: String,
    pub data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's stderr, when it was started with [`start_server_capturing`].
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }
}

/// `ember serve` logging warnings and errors to the benchmark's stderr.
pub fn start_server() -> Server {
    spawn_server("warn", Stdio::inherit())
}

/// `ember serve` with `RUST_LOG=filter`, its stderr piped to the benchmark.
pub fn start_server_capturing(filter: &str) -> Server {
    spawn_server(filter, Stdio::piped())
}

fn spawn_server(filter: &str, stderr: Stdio) -> Server {
    let data = tempfile::tempdir().unwrap();
    // `EMBER_BENCH_BIN` runs another build of the server (to compare two builds).
    let bin = std::env::var("EMBER_BENCH_BIN").unwrap_or_else(|_| EMBER.to_owned());
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("EMBER_ROOT_ACCESS_KEY_ID", KEY_ID)
        .env("EMBER_ROOT_SECRET_ACCESS_KEY", SECRET)
        .env("RUST_LOG", filter)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("starting ember serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .trim_start_matches("Ember is listening on http://")
        .to_owned();
    Server { child, addr, data }
}

/// A keep-alive HTTP/1.1 connection that sends prepared requests.
pub struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream: BufReader::new(stream),
        }
    }

    /// Send raw request bytes, return (status, body).
    pub fn round_trip(&mut self, request: &[u8]) -> (u16, Vec<u8>) {
        self.stream.get_mut().write_all(request).unwrap();
        let mut status = 0;
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).unwrap();
            if status == 0 {
                status = line
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
            } else if line == "\r\n" {
                break;
            } else if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).unwrap();
        (status, body)
    }

    /// A round trip that must answer 200; the body as JSON (null when empty).
    pub fn ok_json(&mut self, request: &[u8]) -> serde_json::Value {
        let (status, body) = self.round_trip(request);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        }
    }
}

/// A signed Lambda request, serialised once.
pub fn signed(
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> Vec<u8> {
    signed_for("lambda", addr, method, path, body, extra)
}

/// A request signed for `service`, serialised once (SigV4 allows replaying it for 15
/// minutes, so benchmarks do not measure their own signing).
pub fn signed_for(
    service: &str,
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let method: http::Method = method.parse().unwrap();
    let uri: http::Uri = path.parse().unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::HOST, addr.parse().unwrap());
    for (k, v) in extra {
        headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let added = ember_sigv4::sign(
        &ember_sigv4::Request {
            method: &method,
            uri: &uri,
            headers: &headers,
            body,
        },
        &ember_sigv4::Credentials {
            access_key_id: KEY_ID,
            secret_access_key: SECRET,
        },
        "us-east-1",
        service,
        time::OffsetDateTime::now_utc(),
    );
    headers.extend(added);
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in &headers {
        out.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// An SQS (AWS JSON 1.0) request for `action`, signed.
pub fn sqs(addr: &str, action: &str, body: &serde_json::Value) -> Vec<u8> {
    signed_for(
        "sqs",
        addr,
        "POST",
        "/",
        body.to_string().as_bytes(),
        &[
            ("x-amz-target", &format!("AmazonSQS.{action}")),
            ("content-type", "application/x-amz-json-1.0"),
        ],
    )
}

pub fn zip(files: &[(&str, &str)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, text) in files {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(text.as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

pub fn create(
    conn: &mut Conn,
    addr: &str,
    name: &str,
    runtime: &str,
    handler: &str,
    files: &[(&str, &str)],
) {
    use base64::Engine;
    let body = serde_json::json!({
        "FunctionName": name, "Runtime": runtime, "Handler": handler,
        "Role": "arn:aws:iam::123456789012:role/bench",
        "Code": { "ZipFile": base64::engine::general_purpose::STANDARD.encode(zip(files)) },
    })
    .to_string();
    let (status, answer) = conn.round_trip(&signed(
        addr,
        "POST",
        "/2015-03-31/functions",
        body.as_bytes(),
        &[],
    ));
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
}

/// Set the warming pool target of `runtime` (root's admin API).
pub fn set_pool(conn: &mut Conn, addr: &str, runtime: &str, size: usize) {
    let body = format!("{{\"Size\": {size}}}");
    let request = signed_for(
        "ember",
        addr,
        "PUT",
        &format!("/ember/v1/pool/{runtime}"),
        body.as_bytes(),
        &[],
    );
    let (status, answer) = conn.round_trip(&request);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
}

pub struct Stats {
    pub p50: Duration,
    pub p99: Duration,
    pub n: usize,
}

pub fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        n: samples.len(),
    }
}

pub fn time_n(n: usize, mut f: impl FnMut()) -> Stats {
    stats(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

pub fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

pub fn row(name: &str, s: &Stats, floor: &Stats, unit: fn(Duration) -> String) {
    println!(
        "{name:<44} p50 {:>9}  p99 {:>9}  (n={:>4})   floor p50 {:>9}  ratio {:>6.2}x",
        unit(s.p50),
        unit(s.p99),
        s.n,
        unit(floor.p50),
        s.p50.as_secs_f64() / floor.p50.as_secs_f64()
    );
}

/// `uptime`'s load averages, printed with every set of figures (this machine is shared).
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().take(3).collect();
            format!("load average {}", f.join(", "))
        })
        .unwrap_or_else(|_| "load average unknown".into())
}
