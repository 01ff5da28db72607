//! Durable SendMessage throughput of the SQLite backend, beside a floor measured in the
//! same run on the same disk. `cargo bench -p ember-queue --bench send`.
//!
//! - floor: sequential one-row SQLite transactions, WAL, `synchronous=FULL` — what one
//!   fsync'd commit costs here, i.e. the rate a queue without group commit would reach;
//! - 1 sender: one task sending one message at a time (each waits for its commit);
//! - 64 senders: 64 tasks doing the same concurrently (group commit batches them);
//! - 64 senders × batches of 10: SendMessageBatch-sized sends;
//! - consume: 1 and 8 consumers draining the queue with receive (10 at a time, leased)
//!   then a batch delete of what they got — the event-source poller's loop.
//!
//! Every send returns only after its transaction is synced, as in production.
//! `EMBER_BENCH_SECONDS` sets the duration of each measurement (default 3).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ember_queue::{NewMessage, QueueRef, Queues, ReceiveRequest, SqliteQueues};

fn seconds() -> Duration {
    let s = std::env::var("EMBER_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(s)
}

fn floor(dir: &Path) -> f64 {
    let conn = rusqlite::Connection::open(dir.join("floor.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch("CREATE TABLE t (v BLOB)").unwrap();
    let body = vec![7u8; 100];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < seconds() {
        let tx = conn.unchecked_transaction().unwrap();
        tx.execute("INSERT INTO t (v) VALUES (?1)", [&body])
            .unwrap();
        tx.commit().unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn message(i: u64) -> NewMessage {
    NewMessage {
        body: format!("{i:0100}"),
        sender_id: "111111111111".into(),
        ..Default::default()
    }
}

async fn sends(queues: Arc<SqliteQueues>, queue: QueueRef, senders: usize, batch: usize) -> f64 {
    let sent = Arc::new(AtomicU64::new(0));
    let duration = seconds();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (queues, queue, sent) = (queues.clone(), queue.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while start.elapsed() < duration {
                let messages = (0..batch as u64).map(|j| message(i + j)).collect();
                let results = queues.send(&queue, messages).await.unwrap();
                assert!(results.iter().all(Result::is_ok));
                i += batch as u64;
                sent.fetch_add(batch as u64, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    sent.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Drain `queue` with `consumers` tasks doing receive-10 + delete-10; messages/s.
async fn consume(queues: Arc<SqliteQueues>, queue: QueueRef, consumers: usize) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let duration = seconds();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..consumers {
        let (queues, queue, done) = (queues.clone(), queue.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < duration {
                let got = queues
                    .receive(
                        &queue,
                        ReceiveRequest {
                            max_messages: 10,
                            visibility_timeout: Some(60),
                            wait: Some(Duration::ZERO),
                        },
                    )
                    .await
                    .unwrap();
                if got.is_empty() {
                    break;
                }
                let handles = got
                    .into_iter()
                    .map(|m| m.receipt_handle)
                    .collect::<Vec<_>>();
                let n = handles.len() as u64;
                let results = queues.delete_messages(&queue, handles).await.unwrap();
                assert!(results.iter().all(Result::is_ok));
                done.fetch_add(n, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let floor = floor(dir.path());
    println!("floor: fsync'd one-row SQLite transactions  {floor:>9.0} /s");
    runtime.block_on(async {
        let queues =
            Arc::new(SqliteQueues::open(&dir.path().join("queues.db"), "us-east-1").unwrap());
        let queue = QueueRef::new("111111111111", "bench");
        queues
            .create_queue(&queue, &BTreeMap::new(), &BTreeMap::new())
            .await
            .unwrap();
        for (senders, batch) in [(1, 1), (64, 1), (64, 10)] {
            let rate = sends(queues.clone(), queue.clone(), senders, batch).await;
            println!(
                "SendMessage, {senders:>2} sender(s), {batch:>2} per call       {rate:>9.0} msg/s  ({:.1}x floor)",
                rate / floor
            );
        }
        let backlog = queues.counts(&queue).await.unwrap().visible;
        for consumers in [1, 8] {
            let rate = consume(queues.clone(), queue.clone(), consumers).await;
            println!(
                "receive 10 + delete 10, {consumers} consumer(s)      {rate:>9.0} msg/s  (backlog {backlog})"
            );
        }
    });
}
