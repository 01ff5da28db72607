//! The SQLite backend through the `Queues` interface: leases, dead-letter moves, FIFO
//! order and deduplication, retention, durability across reopen, group commit, long
//! polling, and a model-based test of the standard queue.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ember_queue::clock::{Clock, ManualClock};
use ember_queue::{
    MessageAttribute, NewMessage, QueueError, QueueRef, Queues, ReceiveRequest, ReceivedMessage,
    SqliteQueues, VisibilityChange,
};

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "111111111111";
const T0: i64 = 1_700_000_000_000;

struct Fixture {
    queues: SqliteQueues,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let queues =
        SqliteQueues::open_with_clock(&dir.path().join("queues.db"), REGION, clock.clone())
            .unwrap();
    Fixture { queues, clock, dir }
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn q(name: &str) -> QueueRef {
    QueueRef::new(ACCOUNT, name)
}

fn msg(body: &str) -> NewMessage {
    NewMessage {
        body: body.into(),
        sender_id: ACCOUNT.into(),
        ..Default::default()
    }
}

fn fifo_msg(body: &str, group: &str) -> NewMessage {
    NewMessage {
        group_id: Some(group.into()),
        deduplication_id: Some(body.into()),
        ..msg(body)
    }
}

async fn create(f: &Fixture, name: &str, a: &[(&str, &str)]) -> QueueRef {
    f.queues
        .create_queue(&q(name), &attrs(a), &BTreeMap::new())
        .await
        .unwrap();
    q(name)
}

async fn send(f: &Fixture, queue: &QueueRef, m: NewMessage) -> String {
    f.queues
        .send(queue, vec![m])
        .await
        .unwrap()
        .remove(0)
        .unwrap()
        .message_id
}

async fn recv(f: &Fixture, queue: &QueueRef, max: u32) -> Vec<ReceivedMessage> {
    f.queues
        .receive(
            queue,
            ReceiveRequest {
                max_messages: max,
                wait: Some(Duration::ZERO),
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

async fn delete(f: &Fixture, queue: &QueueRef, handle: &str) -> Result<(), QueueError> {
    f.queues
        .delete_messages(queue, vec![handle.to_owned()])
        .await
        .unwrap()
        .remove(0)
}

#[tokio::test]
async fn send_receive_delete() {
    let f = fixture();
    let queue = create(&f, "basic", &[]).await;
    let mut m = msg("hello");
    m.attributes
        .insert("n".into(), MessageAttribute::string("Number", "42"));
    m.attributes
        .insert("b".into(), MessageAttribute::binary("Binary", vec![0, 255]));
    m.trace_header = Some("Root=1-5759e988-bd862e3fe1be46a994272793".into());
    let id = send(&f, &queue, m.clone()).await;

    let got = recv(&f, &queue, 10).await;
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(
        (r.message_id.as_str(), r.body.as_str()),
        (id.as_str(), "hello")
    );
    assert_eq!(r.attributes, m.attributes);
    assert_eq!(r.trace_header, m.trace_header);
    assert_eq!(r.md5_of_body, "5d41402abc4b2a76b9719d911017c592");
    assert_eq!(
        (r.receive_count, r.sent_ms, r.first_receive_ms),
        (1, T0, T0)
    );
    assert_eq!(r.sender_id, ACCOUNT);
    assert_eq!(r.sequence_number, None);

    assert!(recv(&f, &queue, 10).await.is_empty(), "leased");
    let counts = f.queues.counts(&queue).await.unwrap();
    assert_eq!(
        (counts.visible, counts.in_flight, counts.delayed),
        (0, 1, 0)
    );

    delete(&f, &queue, &r.receipt_handle).await.unwrap();
    // Deleting again succeeds (SQS: idempotent).
    delete(&f, &queue, &r.receipt_handle).await.unwrap();
    f.clock.advance_ms(60_000);
    assert!(recv(&f, &queue, 10).await.is_empty(), "deleted for good");
    assert_eq!(f.queues.counts(&queue).await.unwrap().in_flight, 0);
}

#[tokio::test]
async fn lease_expiry_and_stale_handles() {
    let f = fixture();
    let queue = create(&f, "lease", &[("VisibilityTimeout", "30")]).await;
    send(&f, &queue, msg("m")).await;
    let first = recv(&f, &queue, 1).await.remove(0);
    f.clock.advance_ms(29_999);
    assert!(recv(&f, &queue, 1).await.is_empty());
    f.clock.advance_ms(1);
    let second = recv(&f, &queue, 1).await.remove(0);
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.receive_count, 2);
    assert_eq!(second.first_receive_ms, T0);
    assert_ne!(second.receipt_handle, first.receipt_handle);

    // The stale handle succeeds but deletes nothing (SQS's documented behaviour).
    delete(&f, &queue, &first.receipt_handle).await.unwrap();
    f.clock.advance_ms(30_000);
    let third = recv(&f, &queue, 1).await.remove(0);
    assert_eq!(third.message_id, first.message_id);
    // A lease that ended without a new receive: the latest handle still deletes.
    f.clock.advance_ms(31_000);
    delete(&f, &queue, &third.receipt_handle).await.unwrap();
    assert!(recv(&f, &queue, 1).await.is_empty());

    // Garbage and other queues' handles are invalid.
    let other = create(&f, "other", &[]).await;
    send(&f, &other, msg("x")).await;
    let theirs = recv(&f, &other, 1).await.remove(0);
    for bad in ["garbage", theirs.receipt_handle.as_str()] {
        assert!(matches!(
            delete(&f, &queue, bad).await,
            Err(QueueError::ReceiptHandleIsInvalid(_))
        ));
    }
}

#[tokio::test]
async fn change_visibility() {
    let f = fixture();
    let queue = create(&f, "vis", &[("VisibilityTimeout", "10")]).await;
    send(&f, &queue, msg("m")).await;
    let r = recv(&f, &queue, 1).await.remove(0);
    let change = |handle: &str, timeout: u32| VisibilityChange {
        receipt_handle: handle.to_owned(),
        timeout,
    };
    let one = |c: VisibilityChange| {
        let queue = queue.clone();
        let queues = &f.queues;
        async move {
            queues
                .change_visibility(&queue, vec![c])
                .await
                .unwrap()
                .remove(0)
        }
    };
    // Extend to 100 s: still hidden after the original 10 s.
    one(change(&r.receipt_handle, 100)).await.unwrap();
    f.clock.advance_ms(50_000);
    assert!(recv(&f, &queue, 1).await.is_empty());
    // Give it back.
    one(change(&r.receipt_handle, 0)).await.unwrap();
    let again = recv(&f, &queue, 1).await.remove(0);
    // The old handle no longer works.
    let e = one(change(&r.receipt_handle, 5)).await.unwrap_err();
    assert_eq!(e.code(), "InvalidParameterValue", "{e}");
    // Beyond 12 hours from the receive.
    let e = one(change(&again.receipt_handle, 43_201))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterValue", "{e}");
    one(change(&again.receipt_handle, 43_200)).await.unwrap();
    f.clock.advance_ms(43_200_000);
    // The lease ended: not in flight.
    assert_eq!(
        one(change(&again.receipt_handle, 5)).await.unwrap_err(),
        QueueError::MessageNotInflight
    );
    let e = one(change("garbage", 5)).await.unwrap_err();
    assert_eq!(e.code(), "ReceiptHandleIsInvalid");
}

#[tokio::test]
async fn dead_letter_after_max_receives() {
    let f = fixture();
    let dlq = create(&f, "dlq", &[]).await;
    let policy = format!(
        r#"{{"deadLetterTargetArn": "{}", "maxReceiveCount": 2}}"#,
        dlq.arn(REGION)
    );
    let queue = create(
        &f,
        "src",
        &[("RedrivePolicy", &policy), ("VisibilityTimeout", "0")],
    )
    .await;
    let poison = send(&f, &queue, msg("poison")).await;
    assert_eq!(recv(&f, &queue, 1).await[0].receive_count, 1);
    assert_eq!(recv(&f, &queue, 1).await[0].receive_count, 2);
    let healthy = send(&f, &queue, msg("healthy")).await;
    // The third attempt moves the poison message and returns the healthy one.
    let got = recv(&f, &queue, 10).await;
    assert_eq!(
        got.iter().map(|m| &m.message_id).collect::<Vec<_>>(),
        [&healthy]
    );
    let moved = recv(&f, &dlq, 10).await;
    assert_eq!(moved.len(), 1);
    let m = &moved[0];
    assert_eq!(
        (m.message_id.as_str(), m.body.as_str()),
        (poison.as_str(), "poison")
    );
    assert_eq!(m.receive_count, 3, "SQS keeps the count across the move");
    assert_eq!(
        m.dead_letter_source_arn.as_deref(),
        Some(queue.arn(REGION).as_str())
    );
    assert_eq!(m.sent_ms, T0);

    // The target must exist and be of the same type.
    let missing = format!(
        r#"{{"deadLetterTargetArn": "{}", "maxReceiveCount": 2}}"#,
        q("nope").arn(REGION)
    );
    let e = f
        .queues
        .create_queue(
            &q("x"),
            &attrs(&[("RedrivePolicy", &missing)]),
            &BTreeMap::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterValue");
    let e = f
        .queues
        .create_queue(
            &q("x.fifo"),
            &attrs(&[("FifoQueue", "true"), ("RedrivePolicy", &policy)]),
            &BTreeMap::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterValue");
}

#[tokio::test]
async fn fifo_order_per_group() {
    let f = fixture();
    let queue = create(
        &f,
        "order.fifo",
        &[("FifoQueue", "true"), ("VisibilityTimeout", "30")],
    )
    .await;
    for i in 0..5 {
        send(&f, &queue, fifo_msg(&format!("a{i}"), "A")).await;
        send(&f, &queue, fifo_msg(&format!("b{i}"), "B")).await;
    }
    // One at a time: A's head is in flight, so the next receive serves B, then nothing.
    let a0 = recv(&f, &queue, 1).await.remove(0);
    assert_eq!(a0.body, "a0");
    let b0 = recv(&f, &queue, 1).await.remove(0);
    assert_eq!(b0.body, "b0");
    assert!(recv(&f, &queue, 10).await.is_empty(), "both groups blocked");
    delete(&f, &queue, &a0.receipt_handle).await.unwrap();
    // A is free again: the rest of A in order, B still blocked.
    let rest = recv(&f, &queue, 10).await;
    assert_eq!(
        rest.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["a1", "a2", "a3", "a4"]
    );
    for m in &rest {
        delete(&f, &queue, &m.receipt_handle).await.unwrap();
    }
    // B's lease expires: B's whole run, starting again at b0.
    f.clock.advance_ms(30_000);
    let b: Vec<ReceivedMessage> = recv(&f, &queue, 10).await;
    assert_eq!(
        b.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["b0", "b1", "b2", "b3", "b4"]
    );
    assert_eq!(b[0].receive_count, 2);
    let seqs: Vec<&str> = b
        .iter()
        .map(|m| m.sequence_number.as_deref().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(b[0].group_id.as_deref(), Some("B"));
    assert_eq!(b[0].deduplication_id.as_deref(), Some("b0"));
    // A handle whose lease ended is expired on a FIFO queue.
    f.clock.advance_ms(30_000);
    let e = delete(&f, &queue, &b[1].receipt_handle).await.unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
}

#[tokio::test]
async fn fifo_poison_message_blocks_only_its_group() {
    let f = fixture();
    let dlq = create(&f, "dlq.fifo", &[("FifoQueue", "true")]).await;
    let policy = format!(
        r#"{{"deadLetterTargetArn": "{}", "maxReceiveCount": 1}}"#,
        dlq.arn(REGION)
    );
    let queue = create(
        &f,
        "src.fifo",
        &[
            ("FifoQueue", "true"),
            ("VisibilityTimeout", "0"),
            ("RedrivePolicy", &policy),
        ],
    )
    .await;
    send(&f, &queue, fifo_msg("p0", "P")).await;
    send(&f, &queue, fifo_msg("p1", "P")).await;
    send(&f, &queue, fifo_msg("g0", "G")).await;
    let first = recv(&f, &queue, 1).await.remove(0);
    assert_eq!(first.body, "p0");
    // p0 was received once (the maximum): the next receive moves it and serves p1 in order.
    let next: Vec<String> = recv(&f, &queue, 2)
        .await
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(next, ["p1", "g0"]);
    let moved = recv(&f, &dlq, 10).await;
    assert_eq!(moved.len(), 1);
    assert_eq!(
        (moved[0].body.as_str(), moved[0].group_id.as_deref()),
        ("p0", Some("P"))
    );
}

#[tokio::test]
async fn fifo_deduplication() {
    let f = fixture();
    let queue = create(
        &f,
        "dedup.fifo",
        &[("FifoQueue", "true"), ("ContentBasedDeduplication", "true")],
    )
    .await;
    let sent = |m: NewMessage| {
        let queue = queue.clone();
        let queues = &f.queues;
        async move {
            queues
                .send(&queue, vec![m])
                .await
                .unwrap()
                .remove(0)
                .unwrap()
        }
    };
    let plain = |body: &str| NewMessage {
        group_id: Some("g".into()),
        ..msg(body)
    };
    let a = sent(plain("same body")).await;
    let b = sent(plain("same body")).await;
    assert!(!a.duplicate && b.duplicate);
    assert_eq!(
        (&a.message_id, &a.sequence_number),
        (&b.message_id, &b.sequence_number)
    );
    // An explicit id overrides the content hash.
    let c = sent(NewMessage {
        deduplication_id: Some("explicit".into()),
        ..plain("same body")
    })
    .await;
    assert!(!c.duplicate);
    let got = recv(&f, &queue, 10).await;
    assert_eq!(got.len(), 2);
    // Content-based: the deduplication id is the body's SHA-256.
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(b"same body"));
    assert_eq!(got[0].deduplication_id.as_deref(), Some(hash.as_str()));
    assert_eq!(got[1].deduplication_id.as_deref(), Some("explicit"));
    for m in &got {
        delete(&f, &queue, &m.receipt_handle).await.unwrap();
    }
    // Still a duplicate after delete, within five minutes; accepted again after.
    f.clock.advance_ms(299_000);
    assert!(sent(plain("same body")).await.duplicate);
    f.clock.advance_ms(1_000);
    assert!(!sent(plain("same body")).await.duplicate);
    assert_eq!(recv(&f, &queue, 10).await.len(), 1);
}

#[tokio::test]
async fn retention_and_delay() {
    let f = fixture();
    let queue = create(
        &f,
        "ret",
        &[("MessageRetentionPeriod", "60"), ("DelaySeconds", "10")],
    )
    .await;
    send(&f, &queue, msg("delayed")).await;
    let counts = f.queues.counts(&queue).await.unwrap();
    assert_eq!((counts.visible, counts.delayed), (0, 1));
    assert!(recv(&f, &queue, 1).await.is_empty());
    f.clock.advance_ms(10_000);
    assert_eq!(f.queues.counts(&queue).await.unwrap().visible, 1);
    // A per-message delay overrides the queue's.
    send(
        &f,
        &queue,
        NewMessage {
            delay_seconds: Some(0),
            ..msg("now")
        },
    )
    .await;
    // The first message was sent 60 s ago by then: past retention, never delivered.
    f.clock.advance_ms(50_000);
    let got = recv(&f, &queue, 10).await;
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["now"]
    );
    f.clock.advance_ms(10_001);
    assert_eq!(f.queues.counts(&queue).await.unwrap(), Default::default());
    assert!(recv(&f, &queue, 10).await.is_empty());
}

#[tokio::test]
async fn sweep_reclaims_expired_messages() {
    let f = fixture();
    let fifo = create(
        &f,
        "sweep.fifo",
        &[("FifoQueue", "true"), ("MessageRetentionPeriod", "60")],
    )
    .await;
    send(&f, &fifo, fifo_msg("old", "g")).await;
    f.clock.advance_ms(30_000);
    let young = f
        .queues
        .send(&fifo, vec![fifo_msg("young", "g")])
        .await
        .unwrap();
    let young_seq = young[0].as_ref().unwrap().sequence_number.clone().unwrap();
    // More than a minute after the last sweep (at open), the writer sweeps after the next
    // batch; a second command waits for that sweep to finish.
    f.clock.advance_ms(31_000);
    let other = create(&f, "sweep-trigger", &[]).await;
    send(&f, &other, msg("x")).await;

    let db = rusqlite::Connection::open(f.dir.path().join("queues.db")).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM messages m JOIN queues q ON q.id = m.queue_id WHERE q.name = 'sweep.fifo'"
        ),
        1
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM bodies"),
        2,
        "young and the trigger's"
    );
    let head = count("SELECT head_seq FROM fifo_groups");
    assert_eq!(format!("{head:020}"), young_seq);
    let got = recv(&f, &fifo, 10).await;
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["young"]
    );
}

#[tokio::test]
async fn queue_lifecycle() {
    let f = fixture();
    let queue = create(&f, "life", &[("VisibilityTimeout", "5")]).await;
    // Idempotent with the same values; a different value is refused.
    f.queues
        .create_queue(
            &queue,
            &attrs(&[("VisibilityTimeout", "5")]),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    let e = f
        .queues
        .create_queue(
            &queue,
            &attrs(&[("VisibilityTimeout", "6")]),
            &BTreeMap::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(e, QueueError::QueueNameExists("VisibilityTimeout".into()));
    for name in ["life-a", "life-b", "other"] {
        create(&f, name, &[]).await;
    }
    f.queues
        .create_queue(
            &QueueRef::new("222222222222", "life-z"),
            &BTreeMap::new(),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    let list = |prefix: &'static str, after: Option<&'static str>, limit| {
        let queues = &f.queues;
        async move {
            queues
                .list_queues(ACCOUNT, prefix, after, limit)
                .await
                .unwrap()
        }
    };
    assert_eq!(list("life", None, 100).await, ["life", "life-a", "life-b"]);
    assert_eq!(list("life", Some("life"), 1).await, ["life-a"]);
    assert_eq!(
        list("", None, 100).await,
        ["life", "life-a", "life-b", "other"]
    );
    assert_eq!(list("zzz", None, 100).await, Vec::<String>::new());

    let info = f
        .queues
        .set_queue_attributes(&queue, &attrs(&[("DelaySeconds", "3")]))
        .await
        .unwrap();
    assert_eq!(info.settings.delay_seconds, 3);
    send(&f, &queue, msg("x")).await;
    f.queues.purge_queue(&queue).await.unwrap();
    assert!(matches!(
        f.queues.purge_queue(&queue).await,
        Err(QueueError::PurgeQueueInProgress(_))
    ));
    f.clock.advance_ms(60_000);
    f.queues.purge_queue(&queue).await.unwrap();
    assert_eq!(f.queues.counts(&queue).await.unwrap(), Default::default());

    f.queues.delete_queue(&queue).await.unwrap();
    assert_eq!(
        f.queues.get_queue(&queue).await.unwrap_err(),
        QueueError::QueueDoesNotExist
    );
    assert_eq!(
        f.queues.send(&queue, vec![msg("x")]).await.unwrap_err(),
        QueueError::QueueDoesNotExist
    );
    // Recreated under the same name, it is a new, empty queue.
    create(&f, "life", &[]).await;
    assert!(recv(&f, &queue, 10).await.is_empty());
}

#[tokio::test]
async fn survives_reopen() {
    let f = fixture();
    let path = f.dir.path().join("queues.db");
    let queue = create(&f, "durable", &[("VisibilityTimeout", "60")]).await;
    let fifo = create(&f, "durable.fifo", &[("FifoQueue", "true")]).await;
    for i in 0..100 {
        send(&f, &queue, msg(&format!("m{i}"))).await;
    }
    send(&f, &fifo, fifo_msg("f0", "g")).await;
    send(&f, &fifo, fifo_msg("f1", "g")).await;
    let leased = recv(&f, &queue, 1).await.remove(0);
    drop(f.queues);

    let queues = SqliteQueues::open_with_clock(&path, REGION, f.clock.clone()).unwrap();
    let f = Fixture { queues, ..f };
    // The lease survived the restart, and so did everything else.
    let mut got = HashSet::new();
    loop {
        let batch = recv(&f, &queue, 10).await;
        if batch.is_empty() {
            break;
        }
        got.extend(batch.into_iter().map(|m| m.message_id));
    }
    assert_eq!(got.len(), 99);
    assert!(!got.contains(&leased.message_id));
    f.clock.advance_ms(60_000);
    assert_eq!(recv(&f, &queue, 10).await[0].message_id, leased.message_id);
    let bodies: Vec<String> = recv(&f, &fifo, 10)
        .await
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(bodies, ["f0", "f1"]);
    let again = f
        .queues
        .send(&fifo, vec![fifo_msg("f0", "g")])
        .await
        .unwrap();
    assert!(
        again[0].as_ref().unwrap().duplicate,
        "dedup ids survive too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_are_all_durable() {
    let f = Arc::new(fixture());
    let queue = create(&f, "many", &[]).await;
    let mut tasks = Vec::new();
    for t in 0..64 {
        let f = f.clone();
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..20 {
                ids.push(send(&f, &queue, msg(&format!("{t}-{i}"))).await);
            }
            ids
        }));
    }
    let mut sent = HashSet::new();
    for t in tasks {
        sent.extend(t.await.unwrap());
    }
    assert_eq!(sent.len(), 64 * 20);
    assert_eq!(f.queues.counts(&queue).await.unwrap().visible, 64 * 20);
    let mut got = HashSet::new();
    loop {
        let batch = recv(&f, &queue, 10).await;
        if batch.is_empty() {
            break;
        }
        for m in batch {
            assert!(got.insert(m.message_id), "delivered twice while leased");
        }
    }
    assert_eq!(got, sent);
}

fn wait_for(seconds: f64) -> ReceiveRequest {
    ReceiveRequest {
        max_messages: 1,
        wait: Some(Duration::from_secs_f64(seconds)),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_on_send_and_on_lease_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let queues = Arc::new(SqliteQueues::open(&dir.path().join("queues.db"), REGION).unwrap());
    let queue = q("poll");
    queues
        .create_queue(
            &queue,
            &attrs(&[("VisibilityTimeout", "1")]),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    let waiting = {
        let (queues, queue) = (queues.clone(), queue.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            let got = queues.receive(&queue, wait_for(10.0)).await.unwrap();
            (got, start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    queues.send(&queue, vec![msg("wake up")]).await.unwrap();
    let (got, waited) = waiting.await.unwrap();
    assert_eq!(got[0].body, "wake up");
    assert!(waited < Duration::from_secs(2), "{waited:?}");

    // The message is leased for 1 s; a long poll returns it when the lease ends.
    let start = Instant::now();
    let again = queues.receive(&queue, wait_for(10.0)).await.unwrap();
    assert_eq!(again[0].receive_count, 2);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    // An empty wait ends at its deadline...
    let start = Instant::now();
    let none = queues.receive(&q("poll"), wait_for(0.2)).await.unwrap();
    assert!(none.is_empty() && start.elapsed() >= Duration::from_millis(200));
    // ...and close_waits ends waits at once.
    let waiting = {
        let (queues, queue) = (queues.clone(), queue.clone());
        tokio::spawn(async move { queues.receive(&queue, wait_for(20.0)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    queues.close_waits();
    assert!(waiting.await.unwrap().unwrap().is_empty());
    assert!(start.elapsed() < Duration::from_secs(1));
}

/// Model-based test of a standard queue: random sends, receives (with random lease
/// lengths), deletes by current or stale handles, leases given back and clock moves,
/// checked after every step against a plain in-memory model.
mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Send,
        Receive { max: u32, lease: u32 },
        Delete { pick: usize, stale: bool },
        Release { pick: usize },
        Advance { seconds: u32 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Send),
            3 => (1u32..=10, 0u32..=5).prop_map(|(max, lease)| Op::Receive { max, lease }),
            2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, stale)| Op::Delete { pick, stale }),
            1 => any::<usize>().prop_map(|pick| Op::Release { pick }),
            2 => (0u32..=6).prop_map(|seconds| Op::Advance { seconds }),
        ]
    }

    /// message id -> (visible at, latest handle, earlier handles)
    type Model = HashMap<String, (i64, Option<String>, Vec<String>)>;

    fn run(ops: Vec<Op>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let f = fixture();
            let queue = create(&f, "model", &[]).await;
            let mut model = Model::new();
            let mut n = 0;
            for op in ops {
                let now = f.clock.now_ms();
                match op {
                    Op::Send => {
                        n += 1;
                        let id = send(&f, &queue, msg(&format!("m{n}"))).await;
                        model.insert(id, (now, None, Vec::new()));
                    }
                    Op::Receive { max, lease } => {
                        let got = f
                            .queues
                            .receive(
                                &queue,
                                ReceiveRequest {
                                    max_messages: max,
                                    visibility_timeout: Some(lease),
                                    wait: Some(Duration::ZERO),
                                },
                            )
                            .await
                            .unwrap();
                        let visible = model.values().filter(|v| v.0 <= now).count();
                        assert_eq!(got.len(), visible.min(max as usize));
                        let mut ids = HashSet::new();
                        for m in got {
                            assert!(ids.insert(m.message_id.clone()), "duplicate in one receive");
                            let entry = model.get_mut(&m.message_id).expect("only live messages");
                            assert!(entry.0 <= now, "only visible messages");
                            entry.0 = now + i64::from(lease) * 1000;
                            if let Some(old) = entry.1.replace(m.receipt_handle) {
                                entry.2.push(old);
                            }
                        }
                    }
                    Op::Delete { pick, stale } => {
                        let mut ids: Vec<_> = model.keys().cloned().collect();
                        ids.sort();
                        if ids.is_empty() {
                            continue;
                        }
                        let id = &ids[pick % ids.len()];
                        let (_, current, old) = model[id].clone();
                        let handle = if stale { old.last().cloned() } else { current };
                        let Some(handle) = handle else { continue };
                        delete(&f, &queue, &handle).await.unwrap();
                        if !stale {
                            model.remove(id);
                        }
                    }
                    Op::Release { pick } => {
                        let mut leased: Vec<_> = model
                            .iter()
                            .filter(|(_, v)| v.0 > now)
                            .map(|(k, _)| k.clone())
                            .collect();
                        leased.sort();
                        if leased.is_empty() {
                            continue;
                        }
                        let id = leased[pick % leased.len()].clone();
                        let handle = model[&id].1.clone().unwrap();
                        f.queues
                            .change_visibility(
                                &queue,
                                vec![VisibilityChange {
                                    receipt_handle: handle,
                                    timeout: 0,
                                }],
                            )
                            .await
                            .unwrap()
                            .remove(0)
                            .unwrap();
                        model.get_mut(&id).unwrap().0 = now;
                    }
                    Op::Advance { seconds } => f.clock.advance_ms(i64::from(seconds) * 1000),
                }
                let now = f.clock.now_ms();
                let counts = f.queues.counts(&queue).await.unwrap();
                let visible = model.values().filter(|v| v.0 <= now).count() as u64;
                assert_eq!(counts.visible, visible);
                assert_eq!(counts.visible + counts.in_flight, model.len() as u64);
            }
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn standard_queue_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
            run(ops);
        }
    }
}

/// Model-based test of a FIFO queue with three message groups: whatever the interleaving
/// of sends, receives, deletes, lease returns and clock moves, a receive returns from
/// each group exactly a prefix of the group's visible run starting at its oldest message
/// (nothing from a group whose oldest message is leased), in order, as many as allowed.
mod fifo_model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Send { group: u8 },
        Receive { max: u32, lease: u32 },
        Delete { pick: usize },
        Release { pick: usize },
        Advance { seconds: u32 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..3).prop_map(|group| Op::Send { group }),
            3 => (1u32..=10, 0u32..=4).prop_map(|(max, lease)| Op::Receive { max, lease }),
            2 => any::<usize>().prop_map(|pick| Op::Delete { pick }),
            1 => any::<usize>().prop_map(|pick| Op::Release { pick }),
            2 => (0u32..=5).prop_map(|seconds| Op::Advance { seconds }),
        ]
    }

    /// One live message: body, visible at, latest receipt handle.
    type Entry = (String, i64, Option<String>);

    fn run(ops: Vec<Op>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let f = fixture();
            let queue = create(&f, "model.fifo", &[("FifoQueue", "true")]).await;
            let mut groups: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
            let mut n = 0;
            for op in ops {
                let now = f.clock.now_ms();
                match op {
                    Op::Send { group } => {
                        n += 1;
                        let (body, group) = (format!("m{n}"), format!("g{group}"));
                        send(&f, &queue, fifo_msg(&body, &group)).await;
                        groups.entry(group).or_default().push((body, now, None));
                    }
                    Op::Receive { max, lease } => {
                        let got = f
                            .queues
                            .receive(
                                &queue,
                                ReceiveRequest {
                                    max_messages: max,
                                    visibility_timeout: Some(lease),
                                    wait: Some(Duration::ZERO),
                                },
                            )
                            .await
                            .unwrap();
                        let runs: BTreeMap<String, usize> = groups
                            .iter()
                            .map(|(g, msgs)| {
                                (g.clone(), msgs.iter().take_while(|m| m.1 <= now).count())
                            })
                            .collect();
                        let deliverable: usize = runs.values().sum();
                        assert_eq!(got.len(), deliverable.min(max as usize));
                        let mut taken: BTreeMap<String, usize> = BTreeMap::new();
                        for m in got {
                            let group = m.group_id.clone().unwrap();
                            let k = taken.entry(group.clone()).or_default();
                            let entry = &mut groups.get_mut(&group).unwrap()[*k];
                            assert_eq!(m.body, entry.0, "group {group} out of order");
                            assert!(*k < runs[&group], "beyond the visible run");
                            entry.1 = now + i64::from(lease) * 1000;
                            entry.2 = Some(m.receipt_handle);
                            *k += 1;
                        }
                    }
                    Op::Delete { pick } => {
                        let leased: Vec<(String, usize)> = groups
                            .iter()
                            .flat_map(|(g, msgs)| {
                                msgs.iter()
                                    .enumerate()
                                    .filter(|(_, m)| m.1 > now && m.2.is_some())
                                    .map(move |(i, _)| (g.clone(), i))
                            })
                            .collect();
                        if leased.is_empty() {
                            continue;
                        }
                        let (g, i) = leased[pick % leased.len()].clone();
                        let handle = groups[&g][i].2.clone().unwrap();
                        delete(&f, &queue, &handle).await.unwrap();
                        groups.get_mut(&g).unwrap().remove(i);
                    }
                    Op::Release { pick } => {
                        let leased: Vec<(String, usize)> = groups
                            .iter()
                            .flat_map(|(g, msgs)| {
                                msgs.iter()
                                    .enumerate()
                                    .filter(|(_, m)| m.1 > now && m.2.is_some())
                                    .map(move |(i, _)| (g.clone(), i))
                            })
                            .collect();
                        if leased.is_empty() {
                            continue;
                        }
                        let (g, i) = leased[pick % leased.len()].clone();
                        let handle = groups[&g][i].2.clone().unwrap();
                        f.queues
                            .change_visibility(
                                &queue,
                                vec![VisibilityChange {
                                    receipt_handle: handle,
                                    timeout: 0,
                                }],
                            )
                            .await
                            .unwrap()
                            .remove(0)
                            .unwrap();
                        groups.get_mut(&g).unwrap()[i].1 = now;
                    }
                    Op::Advance { seconds } => f.clock.advance_ms(i64::from(seconds) * 1000),
                }
            }
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn fifo_queue_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
            run(ops);
        }
    }
}
