//! The event pipeline of a real `ember serve`: SQS API → durable queue → event source
//! mapping → no-op Python function, each figure beside a floor measured in the same run.
//! `cargo bench -p ember --bench pipeline` (builds the release binary).
//!
//! - message retrieved → handler started, warm sandbox (`poll_to_handler`): what Ember adds
//!   between a receive returning and the runtime getting the event. Exact per-batch values
//!   from the server's log line, cross-checked with the `ember_poll_to_handler_seconds`
//!   histogram of `GET /ember/v1/metrics`. Floor: an HTTP keep-alive round trip to
//!   `/ember/health` (one hand-off between two processes over loopback).
//! - SendMessage → handler started, one message at a time: the client's clock before the
//!   send against the handler's own `time.time_ns()` at its first line (one host clock;
//!   the function prints it and the server logs the function's output). Floor: two
//!   fsync'd SQLite commits on the same disk — a send must be on disk before it is
//!   acknowledged, and so must the receive's lease.
//! - throughput: N messages sent with SendMessageBatch (10 per request, a few concurrent
//!   connections) into a queue mapped to a no-op Python function; messages/s from the
//!   first send to the queue being empty with nothing in flight (every message deleted
//!   after the function succeeded). Beside it, in the same run, Celery with the Redis
//!   broker at 127.0.0.1:6379 running the same number of no-op tasks (see [`celery`]).
//!
//! The throughput runs twice: with Lambda's default batch (BatchSize 10, no window) and
//! with BatchSize 100 and a 1 s batching window, both with MaximumConcurrency 2 (one
//! sandbox per core).
//!
//! Knobs (environment): `EMBER_BENCH_MESSAGES` (50000); `EMBER_BENCH_BATCH`,
//! `EMBER_BENCH_WINDOW` (0), `EMBER_BENCH_CONCURRENCY` (2): one mapping configuration
//! instead of the two; `EMBER_BENCH_SENDERS` (concurrent SendMessageBatch connections, 2);
//! `EMBER_BENCH_REDIS` (`redis://127.0.0.1:6379/13`); `EMBER_BENCH_CELERY_POOL`
//! (`prefork`; or `threads`); `EMBER_BENCH_CELERY_PREFETCH` (4, Celery's default);
//! `EMBER_BENCH_CELERY=0` skips Celery; `EMBER_BENCH_BIN` runs
//! another `ember` build.
//!
//! Client and server are unpinned on a 2-core machine (see FLOORS.md: a cross-core hop
//! costs ~60 µs here); the load average is printed with each set of figures.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Conn, Stats, create, load, ms, row, signed, signed_for, sqs, stats, time_n, us};
use serde_json::{Value, json};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the server logged for one invoked batch.
struct Batch {
    poll_to_handler: Duration,
    warm: bool,
    /// The handler's `time.time_ns()`, when the function printed it.
    handler_start_ns: Option<u128>,
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(name)? + name.len();
    let rest = &line[at..];
    let end = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Read the server's log: batches go to the channel, anything else that is not an info
/// line is passed on to our stderr.
fn read_log(stderr: std::process::ChildStderr) -> mpsc::Receiver<Batch> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !line.contains("event source mapping batch invoked") {
                if !line.contains(" INFO ") {
                    eprintln!("{line}");
                }
                continue;
            }
            let batch = Batch {
                poll_to_handler: Duration::from_micros(
                    field(&line, "poll_to_handler_us=")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                ),
                warm: field(&line, "placement=") == Some("Warm"),
                handler_start_ns: field(&line, "handler_start_ns=").and_then(|v| v.parse().ok()),
            };
            if tx.send(batch).is_err() {
                break;
            }
        }
    });
    rx
}

fn epoch_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Create a queue; return its URL and ARN.
fn create_queue(conn: &mut Conn, addr: &str, name: &str) -> (String, String) {
    let created = conn.ok_json(&sqs(
        addr,
        "CreateQueue",
        &json!({ "QueueName": name, "Attributes": { "VisibilityTimeout": "120" } }),
    ));
    let url = created["QueueUrl"].as_str().unwrap().to_owned();
    let attrs = conn.ok_json(&sqs(
        addr,
        "GetQueueAttributes",
        &json!({ "QueueUrl": url, "AttributeNames": ["QueueArn"] }),
    ));
    let arn = attrs["Attributes"]["QueueArn"].as_str().unwrap().to_owned();
    (url, arn)
}

fn create_mapping(conn: &mut Conn, addr: &str, arn: &str, function: &str, config: &Value) {
    let mut body = json!({ "EventSourceArn": arn, "FunctionName": function });
    for (k, v) in config.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, answer) = conn.round_trip(&signed(
        addr,
        "POST",
        "/2015-03-31/event-source-mappings/",
        body.to_string().as_bytes(),
        &[],
    ));
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&answer));
}

/// Messages visible, in flight and delayed.
fn pending(conn: &mut Conn, counts: &[u8]) -> u64 {
    let attrs = conn.ok_json(counts);
    attrs["Attributes"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap().parse::<u64>().unwrap())
        .sum()
}

fn counts_request(addr: &str, url: &str) -> Vec<u8> {
    sqs(
        addr,
        "GetQueueAttributes",
        &json!({ "QueueUrl": url, "AttributeNames": [
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed"] }),
    )
}

fn wait_empty(conn: &mut Conn, counts: &[u8], poll: Duration, limit: Duration) {
    let deadline = Instant::now() + limit;
    while pending(conn, counts) > 0 {
        assert!(Instant::now() < deadline, "the queue did not drain");
        std::thread::sleep(poll);
    }
}

/// p50 of one fsync'd single-row SQLite commit (WAL, `synchronous=FULL`) in `dir`.
fn commit_floor(dir: &Path) -> Stats {
    let conn = rusqlite::Connection::open(dir.join("floor.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch("CREATE TABLE t (v BLOB)").unwrap();
    let body = vec![7u8; 100];
    time_n(300, || {
        let tx = conn.unchecked_transaction().unwrap();
        tx.execute("INSERT INTO t (v) VALUES (?1)", [&body])
            .unwrap();
        tx.commit().unwrap();
    })
}

/// (count, fraction ≤ 200 µs, fraction ≤ 2 ms) of `ember_poll_to_handler_seconds`.
fn histogram_fractions(conn: &mut Conn, addr: &str) -> (u64, f64, f64) {
    let (status, body) = conn.round_trip(&signed_for(
        "ember",
        addr,
        "GET",
        "/ember/v1/metrics",
        b"",
        &[],
    ));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let text = String::from_utf8(body).unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in the metrics:\n{text}"))
    };
    let count = value("ember_poll_to_handler_seconds_count ");
    (
        count as u64,
        value("ember_poll_to_handler_seconds_bucket{le=\"0.0002\"}") / count,
        value("ember_poll_to_handler_seconds_bucket{le=\"0.002\"}") / count,
    )
}

fn main() {
    let mut server = common::start_server_capturing("warn,ember_events=info");
    let batches = read_log(server.take_stderr().unwrap());
    let addr = server.addr.clone();
    let mut conn = Conn::open(&addr);
    let health = format!("GET /ember/health HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());

    // 1. Latency, one message at a time, warm sandbox.
    create(
        &mut conn,
        &addr,
        "stamp",
        "python3.11",
        "app.handler",
        &[(
            "app.py",
            "import time\n\ndef handler(event, context):\n    print(\"handler_start_ns=%d\" % time.time_ns())\n",
        )],
    );
    let (url, arn) = create_queue(&mut conn, &addr, "latency");
    create_mapping(
        &mut conn,
        &addr,
        &arn,
        "stamp",
        &json!({ "BatchSize": 1, "ScalingConfig": { "MaximumConcurrency": 2 } }),
    );
    let send = sqs(
        &addr,
        "SendMessage",
        &json!({ "QueueUrl": url, "MessageBody": "{\"hello\": \"ember\"}" }),
    );
    let counts = counts_request(&addr, &url);
    let one = |conn: &mut Conn| -> (Duration, Batch, u128) {
        let before = epoch_ns();
        let t = Instant::now();
        conn.ok_json(&send);
        let acked = t.elapsed();
        let batch = batches
            .recv_timeout(Duration::from_secs(60))
            .expect("no batch was invoked within 60 s");
        // Let the batch's delete commit before the next send (one message at a time).
        wait_empty(
            conn,
            &counts,
            Duration::from_millis(1),
            Duration::from_secs(10),
        );
        (acked, batch, before)
    };
    for _ in 0..30 {
        one(&mut conn);
    }
    for _ in 0..300 {
        conn.round_trip(&health);
    }
    let load_latency = load();
    let floor_http = time_n(2000, || assert_eq!(conn.round_trip(&health).0, 200));
    let floor_commit = commit_floor(server.data.path());
    let (mut poll, mut send_to_handler, mut send_ack) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..500 {
        let (acked, batch, before) = one(&mut conn);
        send_ack.push(acked);
        if batch.warm {
            poll.push(batch.poll_to_handler);
        }
        let started = batch
            .handler_start_ns
            .expect("the function's output (handler_start_ns) is missing from the server log");
        send_to_handler.push(Duration::from_nanos(started.saturating_sub(before) as u64));
    }
    let (hist_n, under_200us, under_2ms) = histogram_fractions(&mut conn, &addr);
    let two_commits = Stats {
        p50: floor_commit.p50 * 2,
        p99: floor_commit.p99 * 2,
        n: floor_commit.n,
    };

    println!("\nEmber event pipeline ({cores} cores; {load_latency})\n");
    row(
        "HTTP keep-alive GET /ember/health (floor)",
        &floor_http,
        &floor_http,
        us,
    );
    row(
        "retrieved -> handler started, warm",
        &stats(poll),
        &floor_http,
        us,
    );
    println!(
        "  ember_poll_to_handler_seconds (GET /ember/v1/metrics, n={hist_n}, warm-up included): \
         {:.1}% <= 200 µs, {:.1}% <= 2 ms",
        under_200us * 100.0,
        under_2ms * 100.0
    );
    row(
        "2 fsync'd SQLite commits (floor)",
        &two_commits,
        &two_commits,
        ms,
    );
    row(
        "SendMessage acknowledged",
        &stats(send_ack),
        &two_commits,
        ms,
    );
    row(
        "SendMessage -> handler started",
        &stats(send_to_handler),
        &two_commits,
        ms,
    );

    drop(conn);
    drop(server);

    // 2. Throughput: a backlog sent with SendMessageBatch, drained by the mapping. A
    // server of its own, logging only warnings (no per-batch log line to format).
    let server = common::start_server();
    let addr = server.addr.clone();
    let mut conn = Conn::open(&addr);
    let n: usize = env_or("EMBER_BENCH_MESSAGES", 50_000usize).div_ceil(10) * 10;
    let senders: usize = env_or("EMBER_BENCH_SENDERS", 2);
    // Lambda's default batch, and a bigger batch with a batching window (fewer
    // invocations and acknowledgements per message), unless the environment picks one.
    let configs = match std::env::var("EMBER_BENCH_BATCH") {
        Ok(_) => vec![Mapping {
            batch_size: env_or("EMBER_BENCH_BATCH", 10),
            window: env_or("EMBER_BENCH_WINDOW", 0),
            concurrency: env_or("EMBER_BENCH_CONCURRENCY", 2),
        }],
        Err(_) => vec![
            Mapping {
                batch_size: 10,
                window: 0,
                concurrency: 2,
            },
            Mapping {
                batch_size: 100,
                window: 1,
                concurrency: 2,
            },
        ],
    };
    create(
        &mut conn,
        &addr,
        "noop",
        "python3.11",
        "app.handler",
        &[("app.py", "def handler(event, context):\n    return None\n")],
    );
    println!(
        "\nthroughput: {n} messages, SendMessageBatch of 10 over {senders} connections -> mapping \
         -> no-op Python, first send -> queue empty with nothing in flight\n"
    );
    let mut ember_rates = Vec::new();
    for (i, config) in configs.iter().enumerate() {
        let (rate, cpu) = throughput(&server, &mut conn, &format!("bulk-{i}"), n, senders, config);
        ember_rates.push((config.to_string(), rate, cpu));
    }
    drop(conn);
    drop(server);
    if std::env::var("EMBER_BENCH_CELERY").as_deref() == Ok("0") {
        return;
    }
    let load_before = load();
    let celery = celery::run(n);
    let load_after = load();
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "{:<44} {:>8.0} msg/s   (all enqueued after {}, all done and acknowledged after {})",
        format!("Celery {}, same N, worker running", celery.version),
        rate(celery.live),
        ms(celery.live_enqueued),
        ms(celery.live),
    );
    println!(
        "{:<44} {:>8.0} msg/s   (a backlog of N enqueued first, in {}; worker's first take -> all done)",
        format!("Celery {}, worker alone (floor)", celery.version),
        rate(celery.drain),
        ms(celery.enqueued),
    );
    println!(
        "  Celery config: {} pool, prefetch multiplier {}, {}",
        celery::pool(),
        celery::prefetch(),
        celery::CONFIG
    );
    println!("  (before: {load_before}; after: {load_after})");
    for (config, ember_rate, _) in &ember_rates {
        println!(
            "{:<44} {:>8.2}x   (against the worker alone; {:.2}x against the same definition)",
            format!("ratio Ember ({config}) / Celery"),
            ember_rate / rate(celery.drain),
            ember_rate / rate(celery.live),
        );
    }
    // CPU time is less sensitive than wall time to what else runs on this machine.
    let per_1000 = |d: Duration| ms(d * 1000 / n as u32);
    println!(
        "\nCPU time per 1,000 messages: Celery worker alone (main and pool processes; Redis \
         not counted) {}",
        per_1000(celery.drain_cpu)
    );
    for (config, _, cpu) in &ember_rates {
        println!(
            "  Ember ({config}; server with its queue, sends included, and sandboxes) {}  -> {:.2}x less",
            per_1000(*cpu),
            celery.drain_cpu.as_secs_f64() / cpu.as_secs_f64()
        );
    }
}

/// An event source mapping's batching and scaling settings.
struct Mapping {
    batch_size: u32,
    window: u32,
    concurrency: u32,
}

impl std::fmt::Display for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BatchSize {}, window {} s, MaxConc {}",
            self.batch_size, self.window, self.concurrency
        )
    }
}

/// Send `n` messages into a new queue mapped to `noop` with `config`; print and return
/// messages/s from the first send to the queue being empty with nothing in flight.
fn throughput(
    server: &common::Server,
    conn: &mut Conn,
    queue: &str,
    n: usize,
    senders: usize,
    config: &Mapping,
) -> (f64, Duration) {
    let addr = &server.addr;
    let (url, arn) = create_queue(conn, addr, queue);
    let mut mapping = json!({ "BatchSize": config.batch_size,
        "ScalingConfig": { "MaximumConcurrency": config.concurrency } });
    if config.window > 0 {
        mapping["MaximumBatchingWindowInSeconds"] = json!(config.window);
    }
    create_mapping(conn, addr, &arn, "noop", &mapping);
    let send_batch = sqs(
        addr,
        "SendMessageBatch",
        &json!({ "QueueUrl": url, "Entries": (0..10).map(|i| json!({
            "Id": format!("m{i}"), "MessageBody": format!("{{\"n\": {i}}}") })).collect::<Vec<_>>() }),
    );
    let counts = counts_request(addr, &url);
    // Warm the sandboxes the mapping may use.
    for _ in 0..20 {
        conn.ok_json(&send_batch);
    }
    wait_empty(
        conn,
        &counts,
        Duration::from_millis(20),
        Duration::from_secs(60),
    );
    let requests = n / 10;
    let load_before = load();
    let cpu_before = cpu::snapshot(server.pid());
    let start = Instant::now();
    let threads: Vec<_> = (0..senders)
        .map(|s| {
            let (addr, send_batch) = (addr.clone(), send_batch.clone());
            let mine = requests / senders + usize::from(s < requests % senders);
            std::thread::spawn(move || {
                let mut conn = Conn::open(&addr);
                for _ in 0..mine {
                    let sent = conn.ok_json(&send_batch);
                    assert_eq!(sent["Failed"], json!([]), "{sent}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let sent = start.elapsed();
    wait_empty(
        conn,
        &counts,
        Duration::from_millis(10),
        Duration::from_secs(600),
    );
    let total = start.elapsed();
    let cpu_used = cpu::snapshot(server.pid()).since(&cpu_before);
    let load_after = load();
    let rate = n as f64 / total.as_secs_f64();
    println!(
        "{:<44} {:>8.0} msg/s   (all sent and on disk after {}, all processed and deleted after {})",
        format!("Ember, {config}"),
        rate,
        ms(sent),
        ms(total)
    );
    println!(
        "  CPU time: ember serve {}, sandbox runtimes (python) {}, sandbox helpers {}, this \
         client {} (before: {load_before}; after: {load_after})",
        ms(cpu_used.server),
        ms(cpu_used.runtimes),
        ms(cpu_used.helpers),
        ms(cpu_used.client)
    );
    (rate, cpu_used.total())
}

/// Where the CPU goes: user+system time of the server, of its descendants (the sandboxes'
/// runtimes and their helper processes) and of this benchmark, from `/proc`.
mod cpu {
    use std::collections::HashMap;
    use std::time::Duration;

    #[derive(Default)]
    pub struct Usage {
        pub server: Duration,
        pub runtimes: Duration,
        pub helpers: Duration,
        pub client: Duration,
        /// Per process (pid → ticks), to subtract a snapshot from a later one.
        ticks: HashMap<u32, (u64, Kind)>,
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Server,
        Runtime,
        Helper,
        Client,
    }

    /// `/proc` reports CPU time in USER_HZ ticks, 100 per second on Linux whatever the
    /// kernel's HZ.
    const USER_HZ: f64 = 100.0;

    /// (ppid, comm, utime + stime in ticks) of `pid`.
    fn stat(pid: u32) -> Option<(u32, String, u64)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        let comm = text[open + 1..close].to_owned();
        let fields: Vec<&str> = text[close + 2..].split(' ').collect();
        let ppid = fields.get(1)?.parse().ok()?;
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some((ppid, comm, utime + stime))
    }

    pub fn snapshot(server: u32) -> Usage {
        let all: HashMap<u32, (u32, String, u64)> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| Some((pid, stat(pid)?)))
            .collect();
        let descends = |mut pid: u32| {
            while let Some((ppid, _, _)) = all.get(&pid) {
                if *ppid == server {
                    return true;
                }
                pid = *ppid;
            }
            false
        };
        let mut usage = Usage::default();
        for (pid, (_, comm, t)) in &all {
            let kind = if *pid == server {
                Kind::Server
            } else if *pid == std::process::id() {
                Kind::Client
            } else if descends(*pid) {
                if comm.starts_with("python") {
                    Kind::Runtime
                } else {
                    Kind::Helper
                }
            } else {
                continue;
            };
            usage.ticks.insert(*pid, (*t, kind));
        }
        usage.sum_up();
        usage
    }

    impl Usage {
        /// The server (or worker) and all its descendants.
        pub fn total(&self) -> Duration {
            self.server + self.runtimes + self.helpers
        }

        fn sum_up(&mut self) {
            let sum = |k: Kind| {
                Duration::from_secs_f64(
                    self.ticks
                        .values()
                        .filter(|(_, kind)| *kind == k)
                        .map(|(t, _)| *t as f64)
                        .sum::<f64>()
                        / USER_HZ,
                )
            };
            self.server = sum(Kind::Server);
            self.runtimes = sum(Kind::Runtime);
            self.helpers = sum(Kind::Helper);
            self.client = sum(Kind::Client);
        }

        /// What was used between `earlier` and this snapshot (processes that ended in
        /// between are not counted; sandboxes outlive the run).
        pub fn since(mut self, earlier: &Usage) -> Usage {
            for (pid, (t, _)) in self.ticks.iter_mut() {
                if let Some((before, _)) = earlier.ticks.get(pid) {
                    *t = t.saturating_sub(*before);
                }
            }
            self.sum_up();
            self
        }
    }
}

/// The comparison: Celery with Redis, in a virtualenv this benchmark makes.
mod celery {
    use super::*;

    pub const CONFIG: &str = "concurrency 2, -O fair, acks_late on (a task is acknowledged after it ran, as Ember \
        deletes a message after the function succeeded), results ignored, one Python producer \
        calling apply_async per task; Redis does not fsync (appendonly no) while Ember syncs \
        every commit";

    /// `worker_prefetch_multiplier`: Celery's default (4) unless `EMBER_BENCH_CELERY_PREFETCH`
    /// says otherwise.
    pub fn prefetch() -> u32 {
        super::env_or("EMBER_BENCH_CELERY_PREFETCH", 4)
    }

    /// The worker's pool: `prefork` unless `EMBER_BENCH_CELERY_POOL` says otherwise.
    pub fn pool() -> String {
        std::env::var("EMBER_BENCH_CELERY_POOL").unwrap_or_else(|_| "prefork".into())
    }

    const VERSIONS: &[&str] = &["celery[redis]==5.7.0", "redis==8.1.0"];

    const TASKS: &str = r#"
import os
from celery import Celery

BROKER = os.environ["BENCH_BROKER"]
QUEUE = os.environ["BENCH_QUEUE"]
app = Celery("benchtasks", broker=BROKER)
app.conf.update(
    task_default_queue=QUEUE,
    task_acks_late=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=int(os.environ["BENCH_PREFETCH"]),
    broker_connection_retry_on_startup=True,
)


@app.task(name="noop")
def noop():
    return None
"#;

    /// `live N`: warm up, then enqueue N tasks with a worker running and wait until the
    /// queue is empty and nothing is unacknowledged. `enqueue N`: only enqueue (no worker
    /// runs). `drain N`: print "ready", wait for a worker to start taking from the backlog
    /// of N, and time it until everything is done. `cleanup`: delete this run's keys.
    const PRODUCER: &str = r#"
import json, sys, time
import celery, redis
from benchtasks import BROKER, QUEUE, app, noop

r = redis.Redis.from_url(BROKER)


def done():
    # With acks_late a task stays in kombu's "unacked" hash until it ran.
    return r.llen(QUEUE) == 0 and r.hlen("unacked") == 0


def wait_done():
    # Twice, 2 ms apart: a task between the list and the unacked hash is in neither.
    while not (done() and (time.sleep(0.002) or done())):
        time.sleep(0.005)


def enqueue(n):
    with app.producer_or_acquire() as producer:
        t0 = time.perf_counter()
        for _ in range(n):
            noop.apply_async(producer=producer)
        return t0, time.perf_counter() - t0


mode, n = sys.argv[1], int(sys.argv[2])
out = {"version": celery.__version__}
if mode == "live":
    r.delete(QUEUE, "unacked", "unacked_index")
    enqueue(500)
    wait_done()
    t0, out["enqueued"] = enqueue(n)
    wait_done()
    out["total"] = time.perf_counter() - t0
elif mode == "enqueue":
    r.delete(QUEUE, "unacked", "unacked_index")
    out["enqueued"] = enqueue(n)[1]
elif mode == "drain":
    assert r.llen(QUEUE) == n, r.llen(QUEUE)
    print("ready", flush=True)
    while r.llen(QUEUE) == n:
        time.sleep(0.0005)
    t0 = time.perf_counter()
    print("started", flush=True)
    wait_done()
    out["total"] = time.perf_counter() - t0
elif mode == "cleanup":
    # What this run left in Redis (the worker has stopped).
    r.delete(QUEUE, "unacked", "unacked_index", "unacked_mutex", "_kombu.binding_deadlines",
             "_kombu.binding." + QUEUE, "_kombu.binding_permanent." + QUEUE)
print(json.dumps(out), flush=True)
"#;

    pub struct Result {
        pub version: String,
        /// Enqueueing N tasks (one producer, `apply_async` each), the worker running.
        pub live_enqueued: Duration,
        /// The same with no worker running.
        pub enqueued: Duration,
        /// First enqueue to all done, with the worker running all along.
        pub live: Duration,
        /// A backlog of N, from the worker's first take to all done.
        pub drain: Duration,
        /// CPU time of the worker's processes (main and pool) over `drain`.
        pub drain_cpu: Duration,
    }

    fn venv() -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
        let venv = target.join("bench-celery-venv");
        let stamp = venv.join("bench-requirements.txt");
        let wanted = VERSIONS.join("\n");
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
            let _ = std::fs::remove_dir_all(&venv);
            let ok = Command::new("/usr/bin/python3.11")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success())
                && Command::new(venv.join("bin/pip"))
                    .args(["install", "--quiet", "--disable-pip-version-check"])
                    .args(VERSIONS)
                    .status()
                    .is_ok_and(|s| s.success());
            assert!(ok, "could not install Celery into {}", venv.display());
            std::fs::write(&stamp, wanted).unwrap();
        }
        venv
    }

    struct Bench {
        venv: PathBuf,
        dir: tempfile::TempDir,
        broker: String,
        queue: String,
    }

    impl Bench {
        fn python(&self, program: &str) -> Command {
            let mut c = Command::new(self.venv.join("bin").join(program));
            c.current_dir(self.dir.path())
                .env("PYTHONPATH", self.dir.path())
                .env("BENCH_BROKER", &self.broker)
                .env("BENCH_QUEUE", &self.queue)
                .env("BENCH_PREFETCH", prefetch().to_string());
            c
        }

        /// A worker: [`pool`], concurrency 2, fair scheduling; its log goes to a file.
        fn worker(&self) -> std::process::Child {
            let log = std::fs::File::create(self.dir.path().join("worker.log")).unwrap();
            self.python("celery")
                .args(["-A", "benchtasks", "worker", "-P"])
                .arg(pool())
                .args(["-c", "2", "-O", "fair"])
                .args([
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ])
                .args(["-l", "WARNING"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("starting the Celery worker")
        }

        fn stop(&self, mut worker: std::process::Child) {
            let _ = Command::new("kill")
                .args(["-TERM", &worker.id().to_string()])
                .status();
            let _ = worker.wait();
        }

        fn producer(&self, mode: &str, n: usize) -> std::process::Child {
            self.python("python")
                .args(["producer.py", mode, &n.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("running the Celery producer")
        }

        fn answer(&self, child: std::process::Child) -> Value {
            let out = child.wait_with_output().unwrap();
            let worker_log =
                std::fs::read_to_string(self.dir.path().join("worker.log")).unwrap_or_default();
            assert!(
                out.status.success(),
                "the Celery producer failed: {}\nworker log:\n{worker_log}",
                String::from_utf8_lossy(&out.stderr)
            );
            let last = String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap_or_default()
                .to_owned();
            serde_json::from_str(&last).unwrap()
        }
    }

    pub fn run(n: usize) -> Result {
        let bench = Bench {
            venv: venv(),
            dir: tempfile::tempdir().unwrap(),
            broker: std::env::var("EMBER_BENCH_REDIS")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379/13".into()),
            queue: format!("ember-bench-{}", std::process::id()),
        };
        std::fs::write(bench.dir.path().join("benchtasks.py"), TASKS).unwrap();
        std::fs::write(bench.dir.path().join("producer.py"), PRODUCER).unwrap();
        let secs = |v: &Value, k: &str| Duration::from_secs_f64(v[k].as_f64().unwrap());

        // Same definition as Ember's figure: the worker runs while tasks are enqueued.
        let worker = bench.worker();
        let live = bench.answer(bench.producer("live", n));
        bench.stop(worker);

        // The worker alone: a backlog enqueued first, timed from the worker's first take.
        let enqueued = bench.answer(bench.producer("enqueue", n));
        let mut drain = bench.producer("drain", n);
        let mut ready = String::new();
        BufReader::new(drain.stdout.as_mut().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready");
        let worker = bench.worker();
        let mut started = String::new();
        BufReader::new(drain.stdout.as_mut().unwrap())
            .read_line(&mut started)
            .unwrap();
        assert_eq!(started.trim(), "started");
        let cpu_before = cpu::snapshot(worker.id());
        let drained = bench.answer(drain);
        let drain_cpu = cpu::snapshot(worker.id()).since(&cpu_before).total();
        bench.stop(worker);
        bench.answer(bench.producer("cleanup", 0));
        Result {
            version: live["version"].as_str().unwrap().to_owned(),
            live_enqueued: secs(&live, "enqueued"),
            enqueued: secs(&enqueued, "enqueued"),
            live: secs(&live, "total"),
            drain: secs(&drained, "total"),
            drain_cpu,
        }
    }
}
