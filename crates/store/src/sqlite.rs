//! The embedded [`Store`]: one SQLite file in WAL mode.
//!
//! A single connection behind a mutex serialises writers (SQLite does anyway) and is
//! used from `spawn_blocking`, so a slow fsync never stalls the async runtime. Schema
//! changes are numbered migrations recorded in `PRAGMA user_version`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use crate::model::{
    AccessKey, Account, AccountUsage, EventSourceMapping, Function, FunctionSetting,
    ReserveOutcome, ReservedConcurrency, SettingDocument, generate_account_id,
};
use crate::{Result, Store, StoreError};

/// Each entry moves the schema from version `i` to `i + 1`. Never edit a released one;
/// append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE accounts (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    is_root    INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL
);
CREATE TABLE access_keys (
    access_key_id     TEXT PRIMARY KEY,
    secret_access_key TEXT NOT NULL,
    account_id        TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_ms        INTEGER NOT NULL
);
CREATE TABLE functions (
    account_id        TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name              TEXT NOT NULL,
    runtime           TEXT,
    handler           TEXT,
    role              TEXT NOT NULL,
    description       TEXT NOT NULL,
    timeout           INTEGER NOT NULL,
    memory_size       INTEGER NOT NULL,
    ephemeral_storage INTEGER NOT NULL,
    environment       TEXT NOT NULL,
    architectures     TEXT NOT NULL,
    tags              TEXT NOT NULL,
    code_sha256       TEXT NOT NULL,
    code_size         INTEGER NOT NULL,
    last_modified_ms  INTEGER NOT NULL,
    revision_id       TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
);
CREATE INDEX functions_by_code ON functions(code_sha256);
"#,
    r#"
CREATE TABLE function_concurrency (
    account_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    reserved   INTEGER NOT NULL CHECK (reserved >= 0),
    PRIMARY KEY (account_id, name),
    FOREIGN KEY (account_id, name) REFERENCES functions(account_id, name) ON DELETE CASCADE
);
"#,
    r#"
CREATE TABLE event_source_mappings (
    uuid                       TEXT PRIMARY KEY,
    account_id                 TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    function_name              TEXT NOT NULL,
    queue_name                 TEXT NOT NULL,
    batch_size                 INTEGER NOT NULL,
    max_batching_window        INTEGER NOT NULL,
    enabled                    INTEGER NOT NULL,
    report_batch_item_failures INTEGER NOT NULL,
    maximum_concurrency        INTEGER,
    last_modified_ms           INTEGER NOT NULL
);
CREATE INDEX event_source_mappings_by_account ON event_source_mappings(account_id, function_name);
"#,
    r#"
ALTER TABLE event_source_mappings ADD COLUMN filter_patterns TEXT NOT NULL DEFAULT '[]';
"#,
    r#"
ALTER TABLE functions ADD COLUMN dead_letter_target_arn TEXT;
CREATE TABLE function_settings (
    account_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    body        TEXT NOT NULL,
    modified_ms INTEGER NOT NULL,
    PRIMARY KEY (account_id, name, kind),
    FOREIGN KEY (account_id, name) REFERENCES functions(account_id, name) ON DELETE CASCADE
);
CREATE TABLE checkpoints (
    key         TEXT PRIMARY KEY,
    body        TEXT NOT NULL,
    modified_ms INTEGER NOT NULL
);
"#,
];

const MAPPING_SELECT: &str = "SELECT uuid, account_id, function_name, queue_name, batch_size,
     max_batching_window, enabled, report_batch_item_failures, maximum_concurrency,
     last_modified_ms, filter_patterns FROM event_source_mappings";

fn mapping_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventSourceMapping> {
    Ok(EventSourceMapping {
        uuid: r.get(0)?,
        account_id: r.get(1)?,
        function_name: r.get(2)?,
        queue_name: r.get(3)?,
        batch_size: r.get(4)?,
        max_batching_window: r.get(5)?,
        enabled: r.get(6)?,
        report_batch_item_failures: r.get(7)?,
        maximum_concurrency: r.get(8)?,
        last_modified_ms: r.get(9)?,
        filter_patterns: {
            let text: String = r.get(10)?;
            serde_json::from_str(&text).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(10, rusqlite::types::Type::Text, e.into())
            })?
        },
    })
}

/// SQLite-backed [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Functions as last read, so an invocation's lookup needs no query. Filled and
    /// invalidated only while the connection is held (after a write committed), so it
    /// never holds a version older than the database's.
    functions: Arc<RwLock<HashMap<(String, String), Function>>>,
}

impl SqliteStore {
    /// Open (creating if needed) the database file and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            functions: Arc::default(),
        })
    }

    /// Run `f` with the connection on the blocking pool.
    async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let current: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {current}, newer than this ember ({}); \
             upgrade ember",
            MIGRATIONS.len()
        )));
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
        tracing::info!(version = version + 1, "applied store migration");
    }
    Ok(())
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn from_ms(ms: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| StoreError::Corrupt(format!("timestamp {ms}: {e}")))
}

fn account_from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<(String, String, bool, i64)> {
    Ok((
        row.get(first)?,
        row.get(first + 1)?,
        row.get(first + 2)?,
        row.get(first + 3)?,
    ))
}

fn account(parts: (String, String, bool, i64)) -> Result<Account> {
    let (id, name, is_root, created_ms) = parts;
    Ok(Account {
        id,
        name,
        is_root,
        created: from_ms(created_ms)?,
    })
}

/// The columns of a function row, in [`FunctionRow::read`]'s order.
macro_rules! function_columns {
    () => {
        "account_id, name, runtime, handler, role, description, timeout, \
     memory_size, ephemeral_storage, environment, architectures, tags, code_sha256, code_size, \
     last_modified_ms, revision_id, dead_letter_target_arn"
    };
}
const FUNCTION_COLUMNS: &str = function_columns!();

const GET_FUNCTION: &str = concat!(
    "SELECT ",
    function_columns!(),
    " FROM functions WHERE account_id = ?1 AND name = ?2"
);

/// A function row as stored, before its JSON columns are decoded.
struct FunctionRow {
    account_id: String,
    name: String,
    runtime: Option<String>,
    handler: Option<String>,
    role: String,
    description: String,
    timeout: u32,
    memory_size: u32,
    ephemeral_storage: u32,
    environment: String,
    architectures: String,
    tags: String,
    code_sha256: String,
    code_size: i64,
    last_modified_ms: i64,
    revision_id: String,
    dead_letter_target_arn: Option<String>,
}

impl FunctionRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(FunctionRow {
            account_id: row.get(0)?,
            name: row.get(1)?,
            runtime: row.get(2)?,
            handler: row.get(3)?,
            role: row.get(4)?,
            description: row.get(5)?,
            timeout: row.get(6)?,
            memory_size: row.get(7)?,
            ephemeral_storage: row.get(8)?,
            environment: row.get(9)?,
            architectures: row.get(10)?,
            tags: row.get(11)?,
            code_sha256: row.get(12)?,
            code_size: row.get(13)?,
            last_modified_ms: row.get(14)?,
            revision_id: row.get(15)?,
            dead_letter_target_arn: row.get(16)?,
        })
    }

    fn decode(self) -> Result<Function> {
        let json =
            |what: &str, s: &str| StoreError::Corrupt(format!("{what} of {}: {s}", self.name));
        Ok(Function {
            environment: serde_json::from_str(&self.environment)
                .map_err(|e| json("environment", &e.to_string()))?,
            architectures: serde_json::from_str(&self.architectures)
                .map_err(|e| json("architectures", &e.to_string()))?,
            tags: serde_json::from_str(&self.tags).map_err(|e| json("tags", &e.to_string()))?,
            last_modified: from_ms(self.last_modified_ms)?,
            code_size: u64::try_from(self.code_size)
                .map_err(|e| json("code size", &e.to_string()))?,
            account_id: self.account_id,
            name: self.name,
            runtime: self.runtime,
            handler: self.handler,
            role: self.role,
            description: self.description,
            timeout: self.timeout,
            memory_size: self.memory_size,
            ephemeral_storage: self.ephemeral_storage,
            code_sha256: self.code_sha256,
            revision_id: self.revision_id,
            dead_letter_target_arn: self.dead_letter_target_arn,
        })
    }
}

/// The values bound for [`FUNCTION_COLUMNS`], in order.
fn function_params(f: &Function) -> Result<[Box<dyn rusqlite::ToSql>; 17]> {
    let json = |v: serde_json::Result<String>| v.map_err(|e| StoreError::Corrupt(e.to_string()));
    Ok([
        Box::new(f.account_id.clone()),
        Box::new(f.name.clone()),
        Box::new(f.runtime.clone()),
        Box::new(f.handler.clone()),
        Box::new(f.role.clone()),
        Box::new(f.description.clone()),
        Box::new(f.timeout),
        Box::new(f.memory_size),
        Box::new(f.ephemeral_storage),
        Box::new(json(serde_json::to_string(&f.environment))?),
        Box::new(json(serde_json::to_string(&f.architectures))?),
        Box::new(json(serde_json::to_string(&f.tags))?),
        Box::new(f.code_sha256.clone()),
        Box::new(i64::try_from(f.code_size).map_err(|e| StoreError::Corrupt(e.to_string()))?),
        Box::new((f.last_modified.unix_timestamp_nanos() / 1_000_000) as i64),
        Box::new(f.revision_id.clone()),
        Box::new(f.dead_letter_target_arn.clone()),
    ])
}

/// Drop a function from the lookup cache (called with the connection held, before a
/// write; the next lookup reads the database again).
fn forget(cache: &RwLock<HashMap<(String, String), Function>>, account_id: &str, name: &str) {
    cache
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&(account_id.to_owned(), name.to_owned()));
}

/// [`StoreError::NotFound`] unless the function exists.
fn require_function(conn: &Connection, account_id: &str, name: &str) -> Result<()> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM functions WHERE account_id = ?1 AND name = ?2)",
        params![account_id, name],
        |r| r.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("function {name}")))
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(err, _)
            if err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                || err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_account(&self, name: &str, is_root: bool) -> Result<(Account, AccessKey)> {
        let name = name.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let created_ms = now_ms();
            // Account ids are random; retry the rare collision.
            let id = loop {
                let id = generate_account_id();
                match tx.execute(
                    "INSERT INTO accounts (id, name, is_root, created_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![id, name, is_root, created_ms],
                ) {
                    Ok(_) => break id,
                    Err(e) if is_unique_violation(&e) => {
                        let name_taken: bool = tx.query_row(
                            "SELECT EXISTS(SELECT 1 FROM accounts WHERE name = ?1)",
                            [&name],
                            |r| r.get(0),
                        )?;
                        if name_taken {
                            return Err(StoreError::AlreadyExists(format!("account {name}")));
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            let key = AccessKey::generate(&id);
            tx.execute(
                "INSERT INTO access_keys (access_key_id, secret_access_key, account_id, created_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![key.access_key_id, key.secret_access_key, id, created_ms],
            )?;
            tx.commit()?;
            Ok((
                Account {
                    id,
                    name,
                    is_root,
                    created: from_ms(created_ms)?,
                },
                key,
            ))
        })
        .await
    }

    async fn root_account(&self) -> Result<Option<Account>> {
        self.with(|conn| {
            conn.query_row(
                "SELECT id, name, is_root, created_ms FROM accounts WHERE is_root = 1
                 ORDER BY created_ms LIMIT 1",
                [],
                |r| account_from_row(r, 0),
            )
            .optional()?
            .map(account)
            .transpose()
        })
        .await
    }

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, name, is_root, created_ms FROM accounts ORDER BY created_ms, id",
            )?;
            let rows = stmt.query_map([], |r| account_from_row(r, 0))?;
            rows.map(|r| account(r?)).collect()
        })
        .await
    }

    async fn put_access_key(&self, key: &AccessKey) -> Result<()> {
        let key = key.clone();
        self.with(move |conn| {
            let owner: Option<String> = conn
                .query_row(
                    "SELECT account_id FROM access_keys WHERE access_key_id = ?1",
                    [&key.access_key_id],
                    |r| r.get(0),
                )
                .optional()?;
            match owner {
                Some(owner) if owner != key.account_id => Err(StoreError::AlreadyExists(format!(
                    "access key {} (owned by another account)",
                    key.access_key_id
                ))),
                Some(_) => {
                    conn.execute(
                        "UPDATE access_keys SET secret_access_key = ?2 WHERE access_key_id = ?1",
                        params![key.access_key_id, key.secret_access_key],
                    )?;
                    Ok(())
                }
                None => {
                    conn.execute(
                        "INSERT INTO access_keys
                         (access_key_id, secret_access_key, account_id, created_ms)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![
                            key.access_key_id,
                            key.secret_access_key,
                            key.account_id,
                            now_ms()
                        ],
                    )?;
                    Ok(())
                }
            }
        })
        .await
    }

    async fn access_key(&self, access_key_id: &str) -> Result<Option<(AccessKey, Account)>> {
        let access_key_id = access_key_id.to_owned();
        self.with(move |conn| {
            let row = conn
                .query_row(
                    "SELECT k.secret_access_key, a.id, a.name, a.is_root, a.created_ms
                     FROM access_keys k JOIN accounts a ON a.id = k.account_id
                     WHERE k.access_key_id = ?1",
                    [&access_key_id],
                    |r| Ok((r.get::<_, String>(0)?, account_from_row(r, 1)?)),
                )
                .optional()?;
            row.map(|(secret, parts)| {
                let account = account(parts)?;
                Ok((
                    AccessKey {
                        access_key_id: access_key_id.clone(),
                        secret_access_key: secret,
                        account_id: account.id.clone(),
                    },
                    account,
                ))
            })
            .transpose()
        })
        .await
    }

    async fn create_function(&self, function: &Function) -> Result<()> {
        let function = function.clone();
        let cache = self.functions.clone();
        self.with(move |conn| {
            forget(&cache, &function.account_id, &function.name);
            let values = function_params(&function)?;
            let sql = format!(
                "INSERT INTO functions ({FUNCTION_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
            );
            match conn.execute(&sql, rusqlite::params_from_iter(values.iter())) {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists(format!(
                    "function {}",
                    function.name
                ))),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn get_function(&self, account_id: &str, name: &str) -> Result<Option<Function>> {
        let key = (account_id.to_owned(), name.to_owned());
        // On every invocation's path: a hit costs no query and no thread hand-off.
        if let Some(f) = self
            .functions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(Some(f.clone()));
        }
        let cache = self.functions.clone();
        self.with(move |conn| {
            let found = conn
                .prepare_cached(GET_FUNCTION)?
                .query_row(params![key.0, key.1], FunctionRow::read)
                .optional()?
                .map(FunctionRow::decode)
                .transpose()?;
            if let Some(f) = &found {
                // Still under the connection's lock: no write can come between.
                cache
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, f.clone());
            }
            Ok(found)
        })
        .await
    }

    async fn list_functions(
        &self,
        account_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Function>> {
        let (account_id, after) = (account_id.to_owned(), after.unwrap_or("").to_owned());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {FUNCTION_COLUMNS} FROM functions WHERE account_id = ?1 AND name > ?2
                 ORDER BY name LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![account_id, after, limit], FunctionRow::read)?;
            rows.map(|r| r?.decode()).collect()
        })
        .await
    }

    async fn update_function(&self, function: &Function, expected_revision_id: &str) -> Result<()> {
        let (function, expected) = (function.clone(), expected_revision_id.to_owned());
        let cache = self.functions.clone();
        self.with(move |conn| {
            forget(&cache, &function.account_id, &function.name);
            let values = function_params(&function)?;
            let assignments: Vec<String> = FUNCTION_COLUMNS
                .split(',')
                .map(str::trim)
                .enumerate()
                .skip(2)
                .map(|(i, col)| format!("{col} = ?{}", i + 1))
                .collect();
            let sql = format!(
                "UPDATE functions SET {} WHERE account_id = ?1 AND name = ?2 AND revision_id = ?18",
                assignments.join(", ")
            );
            let mut bound: Vec<&dyn rusqlite::ToSql> = values.iter().map(|b| b.as_ref()).collect();
            bound.push(&expected);
            match conn.execute(&sql, bound.as_slice())? {
                1 => Ok(()),
                _ => {
                    let exists: bool = conn.query_row(
                        "SELECT EXISTS(SELECT 1 FROM functions WHERE account_id = ?1 AND name = ?2)",
                        params![function.account_id, function.name],
                        |r| r.get(0),
                    )?;
                    if exists {
                        Err(StoreError::Conflict)
                    } else {
                        Err(StoreError::NotFound(format!("function {}", function.name)))
                    }
                }
            }
        })
        .await
    }

    async fn delete_function(&self, account_id: &str, name: &str) -> Result<Option<Function>> {
        let (account_id, name) = (account_id.to_owned(), name.to_owned());
        let cache = self.functions.clone();
        self.with(move |conn| {
            forget(&cache, &account_id, &name);
            let tx = conn.transaction()?;
            let found = tx
                .query_row(
                    &format!(
                        "SELECT {FUNCTION_COLUMNS} FROM functions WHERE account_id = ?1 AND name = ?2"
                    ),
                    params![account_id, name],
                    FunctionRow::read,
                )
                .optional()?;
            if found.is_some() {
                tx.execute(
                    "DELETE FROM functions WHERE account_id = ?1 AND name = ?2",
                    params![account_id, name],
                )?;
            }
            tx.commit()?;
            found.map(FunctionRow::decode).transpose()
        })
        .await
    }

    async fn code_in_use(&self, code_sha256_hex: &str) -> Result<bool> {
        let sha = code_sha256_hex.to_owned();
        self.with(move |conn| {
            Ok(conn.query_row(
                "SELECT EXISTS(SELECT 1 FROM functions WHERE code_sha256 = ?1)",
                [sha],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn put_reserved_concurrency(
        &self,
        account_id: &str,
        name: &str,
        reserved: u32,
        max_account_total: u64,
    ) -> Result<ReserveOutcome> {
        let (account_id, name) = (account_id.to_owned(), name.to_owned());
        self.with(move |conn| {
            // The check and the write in one transaction, so two concurrent reservations
            // cannot both pass it.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            require_function(&tx, &account_id, &name)?;
            let current: Option<i64> = tx
                .query_row(
                    "SELECT reserved FROM function_concurrency WHERE account_id = ?1 AND name = ?2",
                    params![account_id, name],
                    |r| r.get(0),
                )
                .optional()?;
            let elsewhere: i64 = tx.query_row(
                "SELECT COALESCE(SUM(reserved), 0) FROM function_concurrency
                 WHERE account_id = ?1 AND name <> ?2",
                params![account_id, name],
                |r| r.get(0),
            )?;
            let elsewhere = u64::try_from(elsewhere)
                .map_err(|e| StoreError::Corrupt(format!("reserved concurrency sum: {e}")))?;
            let current = current.map_or(0, |c| u64::try_from(c).unwrap_or(0));
            // Lowering a reservation is always allowed, even when the account is over.
            if elsewhere + u64::from(reserved) > max_account_total && u64::from(reserved) > current
            {
                return Ok(ReserveOutcome::OverAccountLimit {
                    reserved_elsewhere: elsewhere,
                });
            }
            tx.execute(
                "INSERT INTO function_concurrency (account_id, name, reserved) VALUES (?1, ?2, ?3)
                 ON CONFLICT (account_id, name) DO UPDATE SET reserved = excluded.reserved",
                params![account_id, name, reserved],
            )?;
            tx.commit()?;
            Ok(ReserveOutcome::Saved)
        })
        .await
    }

    async fn get_reserved_concurrency(&self, account_id: &str, name: &str) -> Result<Option<u32>> {
        let (account_id, name) = (account_id.to_owned(), name.to_owned());
        self.with(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT reserved FROM function_concurrency WHERE account_id = ?1 AND name = ?2",
                    params![account_id, name],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    async fn delete_reserved_concurrency(&self, account_id: &str, name: &str) -> Result<bool> {
        let (account_id, name) = (account_id.to_owned(), name.to_owned());
        self.with(move |conn| {
            Ok(conn.execute(
                "DELETE FROM function_concurrency WHERE account_id = ?1 AND name = ?2",
                params![account_id, name],
            )? > 0)
        })
        .await
    }

    async fn list_reserved_concurrency(&self) -> Result<Vec<ReservedConcurrency>> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT account_id, name, reserved FROM function_concurrency
                 ORDER BY account_id, name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(ReservedConcurrency {
                    account_id: r.get(0)?,
                    function_name: r.get(1)?,
                    reserved: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn put_event_source_mapping(&self, mapping: &EventSourceMapping) -> Result<()> {
        let m = mapping.clone();
        let patterns = serde_json::Value::from(m.filter_patterns.clone()).to_string();
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO event_source_mappings (uuid, account_id, function_name, queue_name,
                     batch_size, max_batching_window, enabled, report_batch_item_failures,
                     maximum_concurrency, last_modified_ms, filter_patterns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (uuid) DO UPDATE SET function_name = excluded.function_name,
                     batch_size = excluded.batch_size,
                     max_batching_window = excluded.max_batching_window,
                     enabled = excluded.enabled,
                     report_batch_item_failures = excluded.report_batch_item_failures,
                     maximum_concurrency = excluded.maximum_concurrency,
                     last_modified_ms = excluded.last_modified_ms,
                     filter_patterns = excluded.filter_patterns",
                params![
                    m.uuid,
                    m.account_id,
                    m.function_name,
                    m.queue_name,
                    m.batch_size,
                    m.max_batching_window,
                    m.enabled,
                    m.report_batch_item_failures,
                    m.maximum_concurrency,
                    m.last_modified_ms,
                    patterns
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_event_source_mapping(&self, uuid: &str) -> Result<Option<EventSourceMapping>> {
        let uuid = uuid.to_owned();
        self.with(move |conn| {
            Ok(conn
                .query_row(
                    &format!("{MAPPING_SELECT} WHERE uuid = ?1"),
                    [&uuid],
                    mapping_row,
                )
                .optional()?)
        })
        .await
    }

    async fn list_event_source_mappings(
        &self,
        account_id: Option<&str>,
    ) -> Result<Vec<EventSourceMapping>> {
        let account_id = account_id.map(str::to_owned);
        self.with(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "{MAPPING_SELECT} WHERE ?1 IS NULL OR account_id = ?1 ORDER BY uuid"
            ))?;
            let rows = stmt.query_map([&account_id], mapping_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn delete_event_source_mapping(&self, uuid: &str) -> Result<bool> {
        let uuid = uuid.to_owned();
        self.with(move |conn| {
            Ok(conn.execute("DELETE FROM event_source_mappings WHERE uuid = ?1", [&uuid])? > 0)
        })
        .await
    }

    async fn get_function_setting(
        &self,
        account_id: &str,
        name: &str,
        kind: FunctionSetting,
    ) -> Result<Option<SettingDocument>> {
        let (account_id, name) = (account_id.to_owned(), name.to_owned());
        self.with(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT body, modified_ms FROM function_settings
                     WHERE account_id = ?1 AND name = ?2 AND kind = ?3",
                    params![account_id, name, kind.as_str()],
                    |r| {
                        Ok(SettingDocument {
                            body: r.get(0)?,
                            modified_ms: r.get(1)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    async fn put_function_setting(
        &self,
        account_id: &str,
        name: &str,
        kind: FunctionSetting,
        body: Option<&str>,
    ) -> Result<bool> {
        let (account_id, name) = (account_id.to_owned(), name.to_owned());
        let body = body.map(str::to_owned);
        self.with(move |conn| {
            let tx = conn.transaction()?;
            require_function(&tx, &account_id, &name)?;
            let existed = tx.execute(
                "DELETE FROM function_settings WHERE account_id = ?1 AND name = ?2 AND kind = ?3",
                params![account_id, name, kind.as_str()],
            )? > 0;
            if let Some(body) = body {
                tx.execute(
                    "INSERT INTO function_settings (account_id, name, kind, body, modified_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![account_id, name, kind.as_str(), body, now_ms()],
                )?;
            }
            tx.commit()?;
            Ok(existed)
        })
        .await
    }

    async fn get_checkpoint(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.with(move |conn| {
            Ok(conn
                .query_row("SELECT body FROM checkpoints WHERE key = ?1", [&key], |r| {
                    r.get(0)
                })
                .optional()?)
        })
        .await
    }

    async fn put_checkpoint(&self, key: &str, body: Option<&str>) -> Result<()> {
        let key = key.to_owned();
        let body = body.map(str::to_owned);
        self.with(move |conn| {
            match body {
                Some(body) => conn.execute(
                    "INSERT INTO checkpoints (key, body, modified_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT(key) DO UPDATE SET body = excluded.body,
                                                    modified_ms = excluded.modified_ms",
                    params![key, body, now_ms()],
                )?,
                None => conn.execute("DELETE FROM checkpoints WHERE key = ?1", [&key])?,
            };
            Ok(())
        })
        .await
    }

    async fn account_usage(&self, account_id: &str) -> Result<AccountUsage> {
        let account_id = account_id.to_owned();
        self.with(move |conn| {
            let (count, code): (i64, i64) = conn.query_row(
                "SELECT COUNT(*), COALESCE(SUM(code_size), 0) FROM functions WHERE account_id = ?1",
                [&account_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let reserved: i64 = conn.query_row(
                "SELECT COALESCE(SUM(reserved), 0) FROM function_concurrency WHERE account_id = ?1",
                [&account_id],
                |r| r.get(0),
            )?;
            let n = |v: i64| {
                u64::try_from(v).map_err(|e| StoreError::Corrupt(format!("account usage: {e}")))
            };
            Ok(AccountUsage {
                function_count: n(count)?,
                total_code_size: n(code)?,
                reserved_concurrency: n(reserved)?,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::new_revision_id;

    fn function(account_id: &str, name: &str) -> Function {
        Function {
            account_id: account_id.into(),
            name: name.into(),
            runtime: Some("python3.11".into()),
            handler: Some("app.handler".into()),
            role: "arn:aws:iam::123456789012:role/x".into(),
            description: String::new(),
            timeout: 3,
            memory_size: 128,
            ephemeral_storage: 512,
            environment: [("A".to_string(), "1".to_string())].into(),
            architectures: vec!["x86_64".into()],
            tags: Default::default(),
            code_sha256: "ab".repeat(32),
            code_size: 10,
            last_modified: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            revision_id: new_revision_id(),
            dead_letter_target_arn: None,
        }
    }

    #[tokio::test]
    async fn functions_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ember.db");
        let store = SqliteStore::open(&path).unwrap();
        let (acct, key) = store.create_account("alice", false).await.unwrap();
        let f = function(&acct.id, "fn1");
        store.create_function(&f).await.unwrap();
        assert!(matches!(
            store.create_function(&f).await,
            Err(StoreError::AlreadyExists(_))
        ));
        drop(store);

        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.get_function(&acct.id, "fn1").await.unwrap(),
            Some(f.clone())
        );
        let (k, a) = store.access_key(&key.access_key_id).await.unwrap().unwrap();
        assert_eq!((k, a), (key, acct.clone()));
        assert!(store.code_in_use(&f.code_sha256).await.unwrap());

        let mut g = f.clone();
        g.memory_size = 256;
        g.revision_id = new_revision_id();
        assert!(matches!(
            store.update_function(&g, "stale").await,
            Err(StoreError::Conflict)
        ));
        store.update_function(&g, &f.revision_id).await.unwrap();
        assert_eq!(
            store.get_function(&acct.id, "fn1").await.unwrap(),
            Some(g.clone())
        );

        assert_eq!(
            store.delete_function(&acct.id, "fn1").await.unwrap(),
            Some(g)
        );
        assert_eq!(store.delete_function(&acct.id, "fn1").await.unwrap(), None);
        assert!(!store.code_in_use(&f.code_sha256).await.unwrap());
        // The lookup cache forgot it, and a recreated function is read afresh.
        assert_eq!(store.get_function(&acct.id, "fn1").await.unwrap(), None);
        let h = function(&acct.id, "fn1");
        store.create_function(&h).await.unwrap();
        assert_eq!(store.get_function(&acct.id, "fn1").await.unwrap(), Some(h));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn lookups_racing_updates_never_end_on_a_stale_function() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ember.db")).unwrap();
        let (acct, _) = store.create_account("racer", false).await.unwrap();
        let mut current = function(&acct.id, "f");
        store.create_function(&current).await.unwrap();
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (store, id) = (store.clone(), acct.id.clone());
                tokio::spawn(async move {
                    for _ in 0..200 {
                        store.get_function(&id, "f").await.unwrap().unwrap();
                    }
                })
            })
            .collect();
        for i in 0..100 {
            let mut next = current.clone();
            next.memory_size = 128 + i;
            next.revision_id = new_revision_id();
            store
                .update_function(&next, &current.revision_id)
                .await
                .unwrap();
            current = next;
            assert_eq!(
                store.get_function(&acct.id, "f").await.unwrap().as_ref(),
                Some(&current)
            );
        }
        for r in readers {
            r.await.unwrap();
        }
        assert_eq!(
            store.get_function(&acct.id, "f").await.unwrap(),
            Some(current)
        );
    }

    #[tokio::test]
    async fn listing_pages_by_name_within_one_account() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ember.db")).unwrap();
        let (a, _) = store.create_account("a", false).await.unwrap();
        let (b, _) = store.create_account("b", false).await.unwrap();
        for name in ["c", "a", "b", "d"] {
            store.create_function(&function(&a.id, name)).await.unwrap();
        }
        store.create_function(&function(&b.id, "zz")).await.unwrap();
        let names = |v: Vec<Function>| v.into_iter().map(|f| f.name).collect::<Vec<_>>();
        assert_eq!(
            names(store.list_functions(&a.id, None, 3).await.unwrap()),
            ["a", "b", "c"]
        );
        assert_eq!(
            names(store.list_functions(&a.id, Some("c"), 3).await.unwrap()),
            ["d"]
        );
        assert_eq!(
            names(store.list_functions(&b.id, None, 10).await.unwrap()),
            ["zz"]
        );
        assert!(store.get_function(&b.id, "a").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn accounts_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ember.db")).unwrap();
        assert!(store.root_account().await.unwrap().is_none());
        let (root, _) = store.create_account("root", true).await.unwrap();
        assert!(matches!(
            store.create_account("root", false).await,
            Err(StoreError::AlreadyExists(_))
        ));
        assert_eq!(store.root_account().await.unwrap(), Some(root.clone()));
        let key = AccessKey {
            access_key_id: "AKIAFIXED".into(),
            secret_access_key: "one".into(),
            account_id: root.id.clone(),
        };
        store.put_access_key(&key).await.unwrap();
        let rekeyed = AccessKey {
            secret_access_key: "two".into(),
            ..key.clone()
        };
        store.put_access_key(&rekeyed).await.unwrap();
        assert_eq!(
            store.access_key("AKIAFIXED").await.unwrap().unwrap().0,
            rekeyed
        );
        let (other, _) = store.create_account("other", false).await.unwrap();
        let stolen = AccessKey {
            account_id: other.id,
            ..key
        };
        assert!(matches!(
            store.put_access_key(&stolen).await,
            Err(StoreError::AlreadyExists(_))
        ));
        assert_eq!(store.list_accounts().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn event_source_mappings_are_durable_and_listed_per_account() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ember.db");
        let store = SqliteStore::open(&path).unwrap();
        let (a, _) = store.create_account("a", false).await.unwrap();
        let (b, _) = store.create_account("b", false).await.unwrap();
        let mut m = EventSourceMapping {
            uuid: "u1".into(),
            account_id: a.id.clone(),
            function_name: "f".into(),
            queue_name: "q".into(),
            batch_size: 10,
            max_batching_window: 0,
            enabled: true,
            report_batch_item_failures: false,
            maximum_concurrency: None,
            filter_patterns: Vec::new(),
            last_modified_ms: 1,
        };
        store.put_event_source_mapping(&m).await.unwrap();
        let mut other = m.clone();
        other.uuid = "u2".into();
        other.account_id = b.id.clone();
        store.put_event_source_mapping(&other).await.unwrap();
        m.enabled = false;
        m.batch_size = 100;
        m.max_batching_window = 5;
        m.report_batch_item_failures = true;
        m.maximum_concurrency = Some(7);
        m.filter_patterns = vec![
            r#"{"body": {"a": [1]}}"#.into(),
            r#"{"body": ["x"]}"#.into(),
        ];
        store.put_event_source_mapping(&m).await.unwrap();
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.get_event_source_mapping("u1").await.unwrap(),
            Some(m.clone())
        );
        assert_eq!(
            store.list_event_source_mappings(Some(&a.id)).await.unwrap(),
            vec![m.clone()]
        );
        assert_eq!(
            store.list_event_source_mappings(None).await.unwrap().len(),
            2
        );
        assert!(store.delete_event_source_mapping("u1").await.unwrap());
        assert!(!store.delete_event_source_mapping("u1").await.unwrap());
        assert_eq!(store.get_event_source_mapping("u1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn reserved_concurrency_is_checked_durable_and_deleted_with_the_function() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ember.db");
        let store = SqliteStore::open(&path).unwrap();
        let (a, _) = store.create_account("a", false).await.unwrap();
        let (b, _) = store.create_account("b", false).await.unwrap();
        for name in ["f", "g"] {
            store.create_function(&function(&a.id, name)).await.unwrap();
        }
        store.create_function(&function(&b.id, "f")).await.unwrap();
        assert!(matches!(
            store.put_reserved_concurrency(&a.id, "nope", 1, 900).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(
            store
                .put_reserved_concurrency(&a.id, "f", 600, 900)
                .await
                .unwrap(),
            ReserveOutcome::Saved
        );
        assert_eq!(
            store
                .put_reserved_concurrency(&a.id, "g", 301, 900)
                .await
                .unwrap(),
            ReserveOutcome::OverAccountLimit {
                reserved_elsewhere: 600
            }
        );
        assert_eq!(
            store.get_reserved_concurrency(&a.id, "g").await.unwrap(),
            None
        );
        // Another account's reservations do not count.
        assert_eq!(
            store
                .put_reserved_concurrency(&b.id, "f", 900, 900)
                .await
                .unwrap(),
            ReserveOutcome::Saved
        );
        // Replacing a function's own reservation does not count it twice.
        assert_eq!(
            store
                .put_reserved_concurrency(&a.id, "f", 900, 900)
                .await
                .unwrap(),
            ReserveOutcome::Saved
        );
        assert_eq!(
            store
                .put_reserved_concurrency(&a.id, "g", 0, 900)
                .await
                .unwrap(),
            ReserveOutcome::Saved
        );
        // Lowering is allowed even when the total is already over (a smaller limit).
        assert_eq!(
            store
                .put_reserved_concurrency(&a.id, "f", 850, 100)
                .await
                .unwrap(),
            ReserveOutcome::Saved
        );
        let usage = store.account_usage(&a.id).await.unwrap();
        assert_eq!(
            usage,
            AccountUsage {
                function_count: 2,
                total_code_size: 20,
                reserved_concurrency: 850
            }
        );
        drop(store);

        let store = SqliteStore::open(&path).unwrap();
        let all = store.list_reserved_concurrency().await.unwrap();
        let mut got: Vec<_> = all
            .iter()
            .map(|r| (r.account_id.as_str(), r.function_name.as_str(), r.reserved))
            .collect();
        got.sort();
        let mut want = vec![
            (a.id.as_str(), "f", 850),
            (a.id.as_str(), "g", 0),
            (b.id.as_str(), "f", 900),
        ];
        want.sort();
        assert_eq!(got, want);
        assert_eq!(
            store.get_reserved_concurrency(&a.id, "g").await.unwrap(),
            Some(0)
        );
        assert!(store.delete_reserved_concurrency(&a.id, "g").await.unwrap());
        assert!(!store.delete_reserved_concurrency(&a.id, "g").await.unwrap());
        // Deleting (and recreating) a function drops its reservation.
        store.delete_function(&a.id, "f").await.unwrap();
        assert_eq!(
            store.get_reserved_concurrency(&a.id, "f").await.unwrap(),
            None
        );
        store.create_function(&function(&a.id, "f")).await.unwrap();
        assert_eq!(
            store.get_reserved_concurrency(&a.id, "f").await.unwrap(),
            None
        );
        assert_eq!(store.list_reserved_concurrency().await.unwrap().len(), 1);
        assert_eq!(
            store.account_usage("000000000000").await.unwrap(),
            AccountUsage::default()
        );
    }

    #[test]
    fn upgrades_a_version_1_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ember.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        drop(conn);
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        let version: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
    }

    #[tokio::test]
    async fn a_version_3_mapping_gets_no_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ember.db");
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute_batch(
            "INSERT INTO accounts VALUES ('111111111111', 'a', 0, 1);
             INSERT INTO event_source_mappings VALUES
                 ('u1', '111111111111', 'f', 'q', 10, 0, 1, 0, NULL, 1);",
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(&path).unwrap();
        let m = store.get_event_source_mapping("u1").await.unwrap().unwrap();
        assert!(m.filter_patterns.is_empty());
        assert_eq!(m.batch_size, 10);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ember.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::Corrupt(_))
        ));
    }
}
