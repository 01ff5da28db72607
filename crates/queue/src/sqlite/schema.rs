//! The queue database's schema and how a connection is opened.
//!
//! - `queues`: one row per queue; `id` is never reused (AUTOINCREMENT), so receipt
//!   handles of a deleted queue never match a new queue of the same name.
//! - `bodies`: what was sent, written once (id, body, attributes, sender...). A message
//!   moved to a dead-letter queue keeps its body row.
//! - `messages`: the small, often-updated delivery state of each message: its queue,
//!   `visible_at_ms` (delay or lease end), receive count, the token of the latest receipt.
//!   `seq` (AUTOINCREMENT) is arrival order and a FIFO queue's sequence number.
//! - `fifo_groups`: for FIFO queues, each message group's head (its oldest message) and
//!   when the head is visible. A group delivers only when its head is visible, so
//!   receive looks only at ready groups instead of scanning a blocked group's backlog.
//! - `dedup`: FIFO deduplication ids seen in the last five minutes.

use std::path::Path;

use rusqlite::Connection;

use crate::error::{QueueError, Result};

const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE queues (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    settings    TEXT NOT NULL,
    tags        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    UNIQUE (account_id, name)
);
CREATE TABLE bodies (
    id           INTEGER PRIMARY KEY,
    message_id   TEXT NOT NULL,
    body         TEXT NOT NULL,
    md5_of_body  TEXT NOT NULL,
    attributes   TEXT,
    trace_header TEXT,
    sender_id    TEXT NOT NULL,
    dedup_id     TEXT
);
CREATE TABLE messages (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    queue_id         INTEGER NOT NULL,
    body_id          INTEGER NOT NULL,
    sent_ms          INTEGER NOT NULL,
    group_id         TEXT,
    visible_at_ms    INTEGER NOT NULL,
    receive_count    INTEGER NOT NULL DEFAULT 0,
    first_receive_ms INTEGER,
    lease_start_ms   INTEGER,
    receipt          INTEGER,
    dlq_source_arn   TEXT
);
CREATE INDEX messages_by_visibility ON messages (queue_id, visible_at_ms);
CREATE INDEX messages_by_group ON messages (queue_id, group_id, seq) WHERE group_id IS NOT NULL;
CREATE TABLE fifo_groups (
    queue_id        INTEGER NOT NULL,
    group_id        TEXT NOT NULL,
    head_seq        INTEGER NOT NULL,
    head_visible_ms INTEGER NOT NULL,
    PRIMARY KEY (queue_id, group_id)
) WITHOUT ROWID;
CREATE INDEX fifo_groups_ready ON fifo_groups (queue_id, head_visible_ms, head_seq);
CREATE TABLE dedup (
    queue_id   INTEGER NOT NULL,
    dedup_key  TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (queue_id, dedup_key)
) WITHOUT ROWID;
"#];

/// Open a connection with the durability settings every connection must use: WAL, and
/// `synchronous=FULL` so a commit is on disk (WAL fsynced) before it returns.
pub fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// Bring the schema up to date; a schema newer than this binary is refused.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let current: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > MIGRATIONS.len() {
        return Err(QueueError::Storage(format!(
            "the queue database has schema version {current}, newer than this ember ({}); \
             upgrade ember",
            MIGRATIONS.len()
        )));
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
        tracing::info!(version = version + 1, "applied queue migration");
    }
    Ok(())
}
