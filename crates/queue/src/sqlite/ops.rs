//! The SQL behind each queue operation. Everything here runs on the writer thread inside
//! the batch's transaction (each command under its own savepoint), so operations are
//! serial: two receives can never lease the same message.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, Row, params};
use sha2::{Digest, Sha256};

use crate::error::{QueueError, Result};
use crate::model::{
    MessageAttributes, NewMessage, QueueInfo, QueueRef, ReceivedMessage, Sent, VisibilityChange,
};
use crate::receipt::Receipt;
use crate::settings::{MAX_VISIBILITY_TIMEOUT, QueueSettings};

/// FIFO deduplication interval.
pub const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;
/// PurgeQueue may run once per queue in this interval.
pub const PURGE_INTERVAL_MS: i64 = 60 * 1000;

/// A queue as the backend knows it: its internal id and its public description.
#[derive(Debug)]
pub struct Queue {
    pub id: i64,
    pub info: QueueInfo,
}

impl Queue {
    fn fifo(&self) -> bool {
        self.info.settings.fifo
    }
}

/// All queues, by account and name.
pub type Catalog = BTreeMap<QueueRef, Arc<Queue>>;

/// What a command changed besides rows; applied only once the command succeeded.
#[derive(Default)]
pub struct Effects {
    /// Catalog entries to set (`Some`) or remove (`None`).
    pub catalog: Vec<(QueueRef, Option<Arc<Queue>>)>,
    /// Queues whose waiting receivers should look again (after the commit).
    pub notify: Vec<i64>,
    /// Queues purged, and when.
    pub purged: Vec<(i64, i64)>,
}

/// What one command may read and change.
pub struct Ctx<'a> {
    pub conn: &'a Connection,
    pub now: i64,
    pub region: &'a str,
    pub catalog: &'a Catalog,
    pub purged: &'a HashMap<i64, i64>,
    pub effects: Effects,
}

impl Ctx<'_> {
    pub fn queue(&self, queue: &QueueRef) -> Result<Arc<Queue>> {
        self.catalog
            .get(queue)
            .cloned()
            .ok_or(QueueError::QueueDoesNotExist)
    }
}

/// Map a per-entry result: storage failures abort the whole command, the rest are the
/// entry's own outcome.
fn entry<T>(r: Result<T>) -> Result<Result<T>> {
    match r {
        Err(QueueError::Storage(e)) => Err(QueueError::Storage(e)),
        other => Ok(other),
    }
}

pub fn create_queue(
    ctx: &mut Ctx<'_>,
    queue: &QueueRef,
    attributes: &BTreeMap<String, String>,
    tags: &BTreeMap<String, String>,
) -> Result<QueueInfo> {
    let settings = QueueSettings::for_create(queue, ctx.region, attributes)?;
    if let Some(existing) = ctx.catalog.get(queue) {
        return match existing
            .info
            .settings
            .first_difference(&settings, attributes)
        {
            Some(attribute) => Err(QueueError::QueueNameExists(attribute)),
            None => Ok(existing.info.clone()),
        };
    }
    check_redrive_target(ctx, queue, &settings)?;
    let info = QueueInfo {
        queue: queue.clone(),
        settings,
        tags: tags.clone(),
        created_ms: ctx.now,
        modified_ms: ctx.now,
    };
    ctx.conn
        .prepare_cached(
            "INSERT INTO queues (account_id, name, settings, tags, created_ms, modified_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )?
        .execute(params![
            queue.account_id,
            queue.name,
            to_json(&info.settings)?,
            to_json(&info.tags)?,
            ctx.now
        ])?;
    let id = ctx.conn.last_insert_rowid();
    ctx.effects.catalog.push((
        queue.clone(),
        Some(Arc::new(Queue {
            id,
            info: info.clone(),
        })),
    ));
    Ok(info)
}

/// A redrive policy must name an existing queue of the same type, other than the source.
fn check_redrive_target(ctx: &Ctx<'_>, queue: &QueueRef, settings: &QueueSettings) -> Result<()> {
    let Some(policy) = &settings.redrive_policy else {
        return Ok(());
    };
    let bad = |reason: &str| QueueError::invalid_value(policy.to_json(), "RedrivePolicy", reason);
    let target = policy.target();
    if &target == queue {
        return Err(bad("A queue can't be its own dead-letter queue."));
    }
    match ctx.catalog.get(&target) {
        None => Err(bad("Dead-letter target does not exist.")),
        Some(dlq) if dlq.fifo() != settings.fifo => Err(bad(
            "Dead-letter queue must be same type of queue as the source.",
        )),
        Some(_) => Ok(()),
    }
}

pub fn set_attributes(
    ctx: &mut Ctx<'_>,
    queue: &QueueRef,
    attributes: &BTreeMap<String, String>,
) -> Result<QueueInfo> {
    let existing = ctx.queue(queue)?;
    let mut info = existing.info.clone();
    info.settings.apply(queue, ctx.region, attributes)?;
    if attributes.contains_key("RedrivePolicy") {
        check_redrive_target(ctx, queue, &info.settings)?;
    }
    info.modified_ms = ctx.now;
    ctx.conn
        .prepare_cached("UPDATE queues SET settings = ?2, modified_ms = ?3 WHERE id = ?1")?
        .execute(params![existing.id, to_json(&info.settings)?, ctx.now])?;
    ctx.effects.catalog.push((
        queue.clone(),
        Some(Arc::new(Queue {
            id: existing.id,
            info: info.clone(),
        })),
    ));
    // A shorter retention or a new redrive policy may change what a receive returns.
    ctx.effects.notify.push(existing.id);
    Ok(info)
}

pub fn delete_queue(ctx: &mut Ctx<'_>, queue: &QueueRef) -> Result<()> {
    let q = ctx.queue(queue)?;
    remove_all_messages(ctx.conn, q.id)?;
    ctx.conn
        .prepare_cached("DELETE FROM dedup WHERE queue_id = ?1")?
        .execute([q.id])?;
    ctx.conn
        .prepare_cached("DELETE FROM queues WHERE id = ?1")?
        .execute([q.id])?;
    ctx.effects.catalog.push((queue.clone(), None));
    ctx.effects.notify.push(q.id);
    Ok(())
}

fn remove_all_messages(conn: &Connection, queue_id: i64) -> Result<()> {
    conn.prepare_cached(
        "DELETE FROM bodies WHERE id IN (SELECT body_id FROM messages WHERE queue_id = ?1)",
    )?
    .execute([queue_id])?;
    conn.prepare_cached("DELETE FROM messages WHERE queue_id = ?1")?
        .execute([queue_id])?;
    conn.prepare_cached("DELETE FROM fifo_groups WHERE queue_id = ?1")?
        .execute([queue_id])?;
    Ok(())
}

pub fn purge(ctx: &mut Ctx<'_>, queue: &QueueRef) -> Result<()> {
    let q = ctx.queue(queue)?;
    if let Some(at) = ctx.purged.get(&q.id)
        && ctx.now - at < PURGE_INTERVAL_MS
    {
        return Err(QueueError::PurgeQueueInProgress(queue.name.clone()));
    }
    remove_all_messages(ctx.conn, q.id)?;
    ctx.effects.purged.push((q.id, ctx.now));
    ctx.effects.notify.push(q.id);
    Ok(())
}

fn sha256_hex(body: &str) -> String {
    hex::encode(Sha256::digest(body.as_bytes()))
}

/// SQS-looking sequence numbers: the message's arrival number, 20 digits, so that they
/// compare the same as strings and as numbers.
pub fn sequence_number(seq: i64) -> String {
    format!("{seq:020}")
}

/// Enqueue messages already checked against the queue's settings (`checked_for` is the
/// id of the queue they were checked for; if the queue was replaced meanwhile they are
/// checked again).
pub fn send(
    ctx: &mut Ctx<'_>,
    queue: &QueueRef,
    checked_for: i64,
    messages: Vec<NewMessage>,
) -> Result<Vec<Result<Sent>>> {
    let q = ctx.queue(queue)?;
    let settings = &q.info.settings;
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        if q.id != checked_for
            && let Err(e) = m.validate(settings)
        {
            out.push(Err(e));
            continue;
        }
        out.push(Ok(send_one(ctx, &q, m)?));
    }
    ctx.effects.notify.push(q.id);
    Ok(out)
}

fn send_one(ctx: &mut Ctx<'_>, q: &Queue, m: NewMessage) -> Result<Sent> {
    let settings = &q.info.settings;
    let dedup_id = settings.fifo.then(|| {
        m.deduplication_id
            .clone()
            .unwrap_or_else(|| sha256_hex(&m.body))
    });
    let dedup_key = dedup_id.as_ref().map(|d| {
        if settings.deduplication_scope == "messageGroup" {
            format!("{}\n{d}", m.group_id.as_deref().unwrap_or(""))
        } else {
            d.clone()
        }
    });
    if let Some(key) = &dedup_key {
        let original: Option<(String, i64)> = ctx
            .conn
            .prepare_cached(
                "SELECT message_id, seq FROM dedup
                 WHERE queue_id = ?1 AND dedup_key = ?2 AND expires_ms > ?3",
            )?
            .query_row(params![q.id, key, ctx.now], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((message_id, seq)) = original {
            return Ok(Sent {
                message_id,
                sequence_number: Some(sequence_number(seq)),
                duplicate: true,
            });
        }
    }
    let message_id = uuid::Uuid::new_v4().to_string();
    let attributes = if m.attributes.is_empty() {
        None
    } else {
        Some(to_json(&m.attributes)?)
    };
    ctx.conn
        .prepare_cached(
            "INSERT INTO bodies (message_id, body, md5_of_body, attributes, trace_header, sender_id, dedup_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            message_id,
            m.body,
            crate::digest::md5_of_body(&m.body),
            attributes,
            m.trace_header,
            m.sender_id,
            dedup_id
        ])?;
    let body_id = ctx.conn.last_insert_rowid();
    let delay = m.delay_seconds.unwrap_or(settings.delay_seconds);
    let visible_at = ctx.now + i64::from(delay) * 1000;
    ctx.conn
        .prepare_cached(
            "INSERT INTO messages (queue_id, body_id, sent_ms, group_id, visible_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![q.id, body_id, ctx.now, m.group_id, visible_at])?;
    let seq = ctx.conn.last_insert_rowid();
    if let Some(key) = &dedup_key {
        ctx.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO dedup (queue_id, dedup_key, message_id, seq, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                q.id,
                key,
                message_id,
                seq,
                ctx.now + DEDUP_WINDOW_MS
            ])?;
        ctx.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO fifo_groups (queue_id, group_id, head_seq, head_visible_ms)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![q.id, m.group_id, seq, visible_at])?;
    }
    Ok(Sent {
        message_id,
        sequence_number: settings.fifo.then(|| sequence_number(seq)),
        duplicate: false,
    })
}

/// A message that may be handed out, with everything a delivery needs.
struct Candidate {
    seq: i64,
    sent_ms: i64,
    group_id: Option<String>,
    visible_at_ms: i64,
    receive_count: u32,
    first_receive_ms: Option<i64>,
    dlq_source_arn: Option<String>,
    body_id: i64,
    message_id: String,
    body: String,
    md5_of_body: String,
    attributes: Option<String>,
    trace_header: Option<String>,
    sender_id: String,
    dedup_id: Option<String>,
}

const CANDIDATE_COLUMNS: &str = "m.seq, m.sent_ms, m.group_id, m.visible_at_ms, m.receive_count, \
     m.first_receive_ms, m.dlq_source_arn, m.body_id, b.message_id, b.body, b.md5_of_body, \
     b.attributes, b.trace_header, b.sender_id, b.dedup_id";

// The receive statements below write `LIMIT +?n`, not `LIMIT ?n`: SQLite reads the value
// bound to a bare `LIMIT ?n` while planning, which marks the statement as depending on it,
// so every execution (every rebinding) parsed and planned the statement anew — on the
// single writer thread, for every receive. The unary plus makes the limit an expression
// the planner does not look into; the statement cache then works.

/// Visible messages of a standard queue after a cursor, the longest-visible first.
fn standard_candidates_sql() -> String {
    format!(
        "SELECT {CANDIDATE_COLUMNS} FROM messages m JOIN bodies b ON b.id = m.body_id
         WHERE m.queue_id = ?1 AND m.visible_at_ms <= ?2 AND (m.visible_at_ms, m.seq) > (?3, ?4)
         ORDER BY m.visible_at_ms, m.seq LIMIT +?5"
    )
}

/// A FIFO group's messages after a sequence number, in order.
fn fifo_run_sql() -> String {
    format!(
        "SELECT {CANDIDATE_COLUMNS} FROM messages m JOIN bodies b ON b.id = m.body_id
         WHERE m.queue_id = ?1 AND m.group_id = ?2 AND m.seq > ?3
         ORDER BY m.seq LIMIT +?4"
    )
}

impl Candidate {
    fn read(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Candidate {
            seq: r.get(0)?,
            sent_ms: r.get(1)?,
            group_id: r.get(2)?,
            visible_at_ms: r.get(3)?,
            receive_count: r.get(4)?,
            first_receive_ms: r.get(5)?,
            dlq_source_arn: r.get(6)?,
            body_id: r.get(7)?,
            message_id: r.get(8)?,
            body: r.get(9)?,
            md5_of_body: r.get(10)?,
            attributes: r.get(11)?,
            trace_header: r.get(12)?,
            sender_id: r.get(13)?,
            dedup_id: r.get(14)?,
        })
    }
}

/// The result of a receive attempt.
#[derive(Debug, Default)]
pub struct Received {
    pub messages: Vec<ReceivedMessage>,
    /// When nothing was delivered: the earliest time a message of the queue becomes
    /// visible (a delay or lease ending), so a long poll knows when to look again.
    pub next_visible_ms: Option<i64>,
}

enum Taken {
    Delivered(Box<ReceivedMessage>),
    /// Expired, or moved to the dead-letter queue.
    Removed,
    NotVisible,
}

/// How one receive treats the messages it looks at.
struct Receiving<'q> {
    queue: &'q Queue,
    lease_ms: i64,
    /// Messages sent at or before this are past the retention period.
    expired_at: i64,
    /// The dead-letter queue and the receive count that sends a message there.
    dead_letter: Option<(u32, Arc<Queue>)>,
}

pub fn receive(
    ctx: &mut Ctx<'_>,
    queue: &QueueRef,
    max: u32,
    visibility_timeout: Option<u32>,
) -> Result<Received> {
    let q = ctx.queue(queue)?;
    let settings = &q.info.settings;
    let dead_letter = settings.redrive_policy.as_ref().and_then(|p| {
        let dlq = ctx.catalog.get(&p.target())?;
        // A target deleted and recreated with the other type no longer qualifies; the
        // messages stay deliverable here rather than being lost.
        (dlq.fifo() == settings.fifo && dlq.id != q.id).then(|| (p.max_receive_count, dlq.clone()))
    });
    let how = Receiving {
        queue: &q,
        lease_ms: i64::from(visibility_timeout.unwrap_or(settings.visibility_timeout)) * 1000,
        expired_at: ctx.now - i64::from(settings.message_retention_period) * 1000,
        dead_letter,
    };
    let max = max.clamp(1, 10) as usize;
    let mut out = Vec::new();
    if settings.fifo {
        receive_fifo(ctx, &how, max, &mut out)?;
    } else {
        receive_standard(ctx, &how, max, &mut out)?;
    }
    let next_visible_ms = if out.is_empty() {
        ctx.conn
            .prepare_cached(
                "SELECT MIN(visible_at_ms) FROM messages WHERE queue_id = ?1 AND visible_at_ms > ?2",
            )?
            .query_row(params![q.id, ctx.now], |r| r.get(0))?
    } else {
        None
    };
    Ok(Received {
        messages: out,
        next_visible_ms,
    })
}

/// Standard queues: visible messages, the longest-visible first.
fn receive_standard(
    ctx: &mut Ctx<'_>,
    how: &Receiving<'_>,
    max: usize,
    out: &mut Vec<ReceivedMessage>,
) -> Result<()> {
    let sql = standard_candidates_sql();
    // A message leased with a zero timeout stays visible and may show up again after the
    // cursor; `seen` keeps one receive from returning it twice.
    let mut seen = HashSet::new();
    let mut cursor = (i64::MIN, i64::MIN);
    loop {
        let page: Vec<Candidate> = ctx
            .conn
            .prepare_cached(&sql)?
            .query_map(
                params![
                    how.queue.id,
                    ctx.now,
                    cursor.0,
                    cursor.1,
                    (max - out.len() + 8) as i64
                ],
                Candidate::read,
            )?
            .collect::<rusqlite::Result<_>>()?;
        if page.is_empty() {
            return Ok(());
        }
        for c in page {
            cursor = (c.visible_at_ms, c.seq);
            if !seen.insert(c.seq) {
                continue;
            }
            if let Taken::Delivered(m) = take(ctx, how, c)? {
                out.push(*m);
                if out.len() == max {
                    return Ok(());
                }
            }
        }
    }
}

/// FIFO queues: from each message group whose head (oldest message) is visible, messages
/// in order until one is not visible. A group with a leased message delivers nothing.
fn receive_fifo(
    ctx: &mut Ctx<'_>,
    how: &Receiving<'_>,
    max: usize,
    out: &mut Vec<ReceivedMessage>,
) -> Result<()> {
    let queue_id = how.queue.id;
    // Ready groups, those visible longest first, then oldest head first.
    let groups_sql = "SELECT group_id, head_visible_ms, head_seq FROM fifo_groups
         WHERE queue_id = ?1 AND head_visible_ms <= ?2 AND (head_visible_ms, head_seq) > (?3, ?4)
         ORDER BY head_visible_ms, head_seq LIMIT 64";
    let run_sql = fifo_run_sql();
    let mut done = HashSet::new();
    let mut cursor = (i64::MIN, i64::MIN);
    loop {
        let groups: Vec<(String, i64, i64)> = ctx
            .conn
            .prepare_cached(groups_sql)?
            .query_map(params![queue_id, ctx.now, cursor.0, cursor.1], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        if groups.is_empty() {
            return Ok(());
        }
        for (group, head_visible, head_seq) in groups {
            cursor = (head_visible, head_seq);
            if !done.insert(group.clone()) {
                continue;
            }
            let mut after = i64::MIN;
            'run: loop {
                let page: Vec<Candidate> = ctx
                    .conn
                    .prepare_cached(&run_sql)?
                    .query_map(
                        params![queue_id, group, after, (max - out.len() + 4) as i64],
                        Candidate::read,
                    )?
                    .collect::<rusqlite::Result<_>>()?;
                if page.is_empty() {
                    break;
                }
                for c in page {
                    after = c.seq;
                    match take(ctx, how, c)? {
                        Taken::Delivered(m) => {
                            out.push(*m);
                            if out.len() == max {
                                refresh_group(ctx.conn, queue_id, &group)?;
                                return Ok(());
                            }
                        }
                        Taken::Removed => {}
                        Taken::NotVisible => break 'run,
                    }
                }
            }
            refresh_group(ctx.conn, queue_id, &group)?;
        }
    }
}

/// Deliver `c` (taking a lease), or remove it if it expired or has been received
/// `maxReceiveCount` times already (then it moves to the dead-letter queue).
fn take(ctx: &mut Ctx<'_>, how: &Receiving<'_>, c: Candidate) -> Result<Taken> {
    if c.visible_at_ms > ctx.now {
        return Ok(Taken::NotVisible);
    }
    if c.sent_ms <= how.expired_at {
        remove_message(ctx.conn, c.seq, c.body_id)?;
        return Ok(Taken::Removed);
    }
    if let Some((max_receives, dlq)) = &how.dead_letter
        && c.receive_count >= *max_receives
    {
        move_to_dead_letter(ctx, how.queue, dlq, &c)?;
        return Ok(Taken::Removed);
    }
    let token = Receipt::new_token();
    let visible_at = ctx.now + how.lease_ms;
    ctx.conn
        .prepare_cached(
            "UPDATE messages SET visible_at_ms = ?2, receive_count = receive_count + 1,
                 first_receive_ms = COALESCE(first_receive_ms, ?3), lease_start_ms = ?3, receipt = ?4
             WHERE seq = ?1",
        )?
        .execute(params![c.seq, visible_at, ctx.now, token])?;
    let attributes: MessageAttributes = match &c.attributes {
        None => MessageAttributes::new(),
        Some(json) => serde_json::from_str(json).map_err(|e| {
            QueueError::Storage(format!("message {}: attributes: {e}", c.message_id))
        })?,
    };
    let fifo = how.queue.fifo();
    Ok(Taken::Delivered(Box::new(ReceivedMessage {
        receipt_handle: Receipt {
            queue_id: how.queue.id,
            seq: c.seq,
            token,
        }
        .encode(),
        message_id: c.message_id,
        body: c.body,
        md5_of_body: c.md5_of_body,
        attributes,
        trace_header: c.trace_header,
        sender_id: c.sender_id,
        sent_ms: c.sent_ms,
        receive_count: c.receive_count + 1,
        first_receive_ms: c.first_receive_ms.unwrap_or(ctx.now),
        group_id: c.group_id,
        deduplication_id: if fifo { c.dedup_id } else { None },
        sequence_number: fifo.then(|| sequence_number(c.seq)),
        dead_letter_source_arn: c.dlq_source_arn,
    })))
}

fn remove_message(conn: &Connection, seq: i64, body_id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM messages WHERE seq = ?1")?
        .execute([seq])?;
    conn.prepare_cached("DELETE FROM bodies WHERE id = ?1")?
        .execute([body_id])?;
    Ok(())
}

/// Move a message to the dead-letter queue: same id, body, attributes, sent time and
/// receive count (as SQS keeps them), visible there at once, with
/// `DeadLetterQueueSourceArn` set.
fn move_to_dead_letter(
    ctx: &mut Ctx<'_>,
    source: &Queue,
    dlq: &Queue,
    c: &Candidate,
) -> Result<()> {
    let source_arn = source.info.queue.arn(ctx.region);
    ctx.conn
        .prepare_cached(
            "INSERT INTO messages (queue_id, body_id, sent_ms, group_id, visible_at_ms,
                 receive_count, first_receive_ms, dlq_source_arn)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            dlq.id,
            c.body_id,
            c.sent_ms,
            c.group_id,
            ctx.now,
            c.receive_count,
            c.first_receive_ms,
            source_arn
        ])?;
    let seq = ctx.conn.last_insert_rowid();
    ctx.conn
        .prepare_cached("DELETE FROM messages WHERE seq = ?1")?
        .execute([c.seq])?;
    if dlq.fifo()
        && let Some(group) = &c.group_id
    {
        ctx.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO fifo_groups (queue_id, group_id, head_seq, head_visible_ms)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![dlq.id, group, seq, ctx.now])?;
    }
    tracing::debug!(
        message_id = %c.message_id,
        from = %source.info.queue,
        to = %dlq.info.queue,
        receives = c.receive_count,
        "moved message to its dead-letter queue"
    );
    ctx.effects.notify.push(dlq.id);
    Ok(())
}

/// Recompute a FIFO group's head after its messages changed.
fn refresh_group(conn: &Connection, queue_id: i64, group: &str) -> Result<()> {
    let head: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT seq, visible_at_ms FROM messages
             WHERE queue_id = ?1 AND group_id = ?2 ORDER BY seq LIMIT 1",
        )?
        .query_row(params![queue_id, group], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match head {
        Some((seq, visible)) => conn
            .prepare_cached(
                "INSERT OR REPLACE INTO fifo_groups (queue_id, group_id, head_seq, head_visible_ms)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![queue_id, group, seq, visible])?,
        None => conn
            .prepare_cached("DELETE FROM fifo_groups WHERE queue_id = ?1 AND group_id = ?2")?
            .execute(params![queue_id, group])?,
    };
    Ok(())
}

/// The state of the message a receipt handle points at.
struct Lease {
    receipt: Option<i64>,
    visible_at_ms: i64,
    lease_start_ms: Option<i64>,
    group_id: Option<String>,
    body_id: i64,
}

fn find_lease(ctx: &Ctx<'_>, q: &Queue, handle: &str) -> Result<(Receipt, Option<Lease>)> {
    let receipt = Receipt::decode(handle)
        .filter(|r| r.queue_id == q.id)
        .ok_or_else(|| QueueError::ReceiptHandleIsInvalid(handle.to_owned()))?;
    let lease = ctx
        .conn
        .prepare_cached(
            "SELECT receipt, visible_at_ms, lease_start_ms, group_id, body_id FROM messages
             WHERE seq = ?1 AND queue_id = ?2",
        )?
        .query_row(params![receipt.seq, q.id], |r| {
            Ok(Lease {
                receipt: r.get(0)?,
                visible_at_ms: r.get(1)?,
                lease_start_ms: r.get(2)?,
                group_id: r.get(3)?,
                body_id: r.get(4)?,
            })
        })
        .optional()?;
    Ok((receipt, lease))
}

/// Delete messages by receipt handle. As in SQS: deleting an already deleted message
/// succeeds; on a standard queue a handle from an earlier receive succeeds without
/// deleting (the message was received again, and only the latest handle counts); on a
/// FIFO queue a handle whose lease ended is refused as expired.
pub fn delete_messages(
    ctx: &mut Ctx<'_>,
    queue: &QueueRef,
    handles: &[String],
) -> Result<Vec<Result<()>>> {
    let q = ctx.queue(queue)?;
    let mut touched = BTreeSet::new();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(entry(delete_one(ctx, &q, handle, &mut touched))?);
    }
    if !touched.is_empty() {
        for group in &touched {
            refresh_group(ctx.conn, q.id, group)?;
        }
        // The groups may be free now.
        ctx.effects.notify.push(q.id);
    }
    Ok(out)
}

fn delete_one(
    ctx: &Ctx<'_>,
    q: &Queue,
    handle: &str,
    touched: &mut BTreeSet<String>,
) -> Result<()> {
    let (receipt, lease) = find_lease(ctx, q, handle)?;
    let Some(lease) = lease else {
        return Ok(());
    };
    let current = lease.receipt == Some(receipt.token);
    if q.fifo() && (!current || lease.visible_at_ms <= ctx.now) {
        return Err(QueueError::invalid_value(
            handle,
            "ReceiptHandle",
            "The receipt handle has expired.",
        ));
    }
    if !current {
        return Ok(());
    }
    remove_message(ctx.conn, receipt.seq, lease.body_id)?;
    if q.fifo()
        && let Some(group) = lease.group_id
    {
        touched.insert(group);
    }
    Ok(())
}

/// Extend, shorten or end leases. Only the latest receipt handle of a message that is
/// in flight works, and a lease ends at most 12 hours after the receive that took it.
pub fn change_visibility(
    ctx: &mut Ctx<'_>,
    queue: &QueueRef,
    changes: &[VisibilityChange],
) -> Result<Vec<Result<()>>> {
    let q = ctx.queue(queue)?;
    let mut touched = BTreeSet::new();
    let mut out = Vec::with_capacity(changes.len());
    for change in changes {
        out.push(entry(change_one(ctx, &q, change, &mut touched))?);
    }
    for group in &touched {
        refresh_group(ctx.conn, q.id, group)?;
    }
    // Waiting receivers recompute when the next lease ends (or take a message given back).
    ctx.effects.notify.push(q.id);
    Ok(out)
}

fn change_one(
    ctx: &Ctx<'_>,
    q: &Queue,
    change: &VisibilityChange,
    touched: &mut BTreeSet<String>,
) -> Result<()> {
    let handle = &change.receipt_handle;
    let (receipt, lease) = find_lease(ctx, q, handle)?;
    let unavailable = || {
        QueueError::invalid_value(
            handle,
            "ReceiptHandle",
            "Message does not exist or is not available for visibility timeout change.",
        )
    };
    let lease = lease.ok_or_else(unavailable)?;
    if lease.receipt != Some(receipt.token) {
        return Err(unavailable());
    }
    if lease.visible_at_ms <= ctx.now {
        return Err(QueueError::MessageNotInflight);
    }
    let start = lease.lease_start_ms.unwrap_or(ctx.now);
    let until = ctx.now + i64::from(change.timeout) * 1000;
    if until > start + i64::from(MAX_VISIBILITY_TIMEOUT) * 1000 {
        return Err(QueueError::invalid_value(
            change.timeout,
            "VisibilityTimeout",
            "Total VisibilityTimeout for the message is beyond the limit [43200 seconds]",
        ));
    }
    ctx.conn
        .prepare_cached("UPDATE messages SET visible_at_ms = ?2 WHERE seq = ?1")?
        .execute(params![receipt.seq, until])?;
    if q.fifo()
        && let Some(group) = lease.group_id
    {
        touched.insert(group);
    }
    Ok(())
}

/// Delete messages past their queue's retention period and expired deduplication ids.
/// Receives skip expired messages anyway; this reclaims their space.
pub fn sweep(conn: &Connection, catalog: &Catalog, now: i64) -> Result<usize> {
    let mut removed = 0;
    for q in catalog.values() {
        let expired_at = now - i64::from(q.info.settings.message_retention_period) * 1000;
        conn.prepare_cached(
            "DELETE FROM bodies WHERE id IN
                 (SELECT body_id FROM messages WHERE queue_id = ?1 AND sent_ms <= ?2)",
        )?
        .execute(params![q.id, expired_at])?;
        let n = conn
            .prepare_cached("DELETE FROM messages WHERE queue_id = ?1 AND sent_ms <= ?2")?
            .execute(params![q.id, expired_at])?;
        if n > 0 && q.fifo() {
            conn.prepare_cached("DELETE FROM fifo_groups WHERE queue_id = ?1")?
                .execute([q.id])?;
            // SQLite takes the bare column from the row that has the MIN.
            conn.prepare_cached(
                "INSERT INTO fifo_groups (queue_id, group_id, head_seq, head_visible_ms)
                 SELECT queue_id, group_id, MIN(seq), visible_at_ms FROM messages
                 WHERE queue_id = ?1 AND group_id IS NOT NULL GROUP BY group_id",
            )?
            .execute([q.id])?;
        }
        removed += n;
    }
    conn.prepare_cached("DELETE FROM dedup WHERE expires_ms <= ?1")?
        .execute([now])?;
    Ok(removed)
}

/// Load the catalog at start-up.
pub fn load_catalog(conn: &Connection) -> Result<Catalog> {
    let mut stmt = conn.prepare(
        "SELECT id, account_id, name, settings, tags, created_ms, modified_ms FROM queues",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, i64>(6)?,
        ))
    })?;
    let mut catalog = Catalog::new();
    for row in rows {
        let (id, account_id, name, settings, tags, created_ms, modified_ms) = row?;
        let queue = QueueRef::new(account_id, name);
        let corrupt = |what: &str, e: serde_json::Error| {
            QueueError::Storage(format!("queue {queue}: {what}: {e}"))
        };
        let info = QueueInfo {
            settings: serde_json::from_str(&settings).map_err(|e| corrupt("settings", e))?,
            tags: serde_json::from_str(&tags).map_err(|e| corrupt("tags", e))?,
            queue: queue.clone(),
            created_ms,
            modified_ms,
        };
        catalog.insert(queue, Arc::new(Queue { id, info }));
    }
    Ok(catalog)
}

fn to_json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| QueueError::Storage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use rusqlite::{StatementStatus, params};

    use super::*;

    /// Executing a receive statement again with another limit must not re-prepare it.
    #[test]
    fn receive_statements_are_prepared_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = super::super::schema::connect(&dir.path().join("q.db")).unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        let limits = [18i64, 11, 18, 3];
        let mut standard = conn.prepare(&standard_candidates_sql()).unwrap();
        for limit in limits {
            let rows = standard
                .query_map(params![1, 0, i64::MIN, i64::MIN, limit], |_| Ok(()))
                .unwrap()
                .count();
            assert_eq!(rows, 0);
        }
        assert_eq!(standard.get_status(StatementStatus::RePrepare), 0);
        let mut fifo = conn.prepare(&fifo_run_sql()).unwrap();
        for limit in limits {
            let rows = fifo
                .query_map(params![1, "g", 0, limit], |_| Ok(()))
                .unwrap()
                .count();
            assert_eq!(rows, 0);
        }
        assert_eq!(fifo.get_status(StatementStatus::RePrepare), 0);
    }
}
