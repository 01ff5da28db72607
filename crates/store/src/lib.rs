//! Ember's durable state.
//!
//! # Layout
//! - [`model`]: the records the rest of Ember reads and writes (accounts, access keys,
//!   functions, reserved concurrency). Plain data, no behaviour beyond formatting helpers.
//! - [`Store`]: the one interface the frontend (and later the worker manager) uses for
//!   those records. [`SqliteStore`] is the embedded implementation; a PostgreSQL one can
//!   implement the same trait for multi-node deployments.
//! - [`package`]: code packages: validating and extracting untrusted zips, and the
//!   content-addressed [`package::CodeStore`] that keeps them on disk.
//!
//! Durability: SQLite runs in WAL mode with `synchronous=FULL`, so every call that
//! returned `Ok` survives `kill -9` of the process and a power loss of the machine.

pub mod model;
pub mod package;
pub mod policy;
mod sqlite;

use async_trait::async_trait;

pub use model::{
    AccessKey, Account, AccountUsage, Destination, DestinationConfig, EventInvokeConfig,
    EventSourceMapping, Function, FunctionSetting, ReserveOutcome, ReservedConcurrency,
    SettingDocument,
};
pub use sqlite::SqliteStore;

/// Errors from the store. Each says what the caller did wrong or what failed underneath.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A record with the same key already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A record the operation needs does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// An optimistic-concurrency check failed: someone changed the record in between.
    #[error("the record was changed by another request")]
    Conflict,
    /// The database itself failed (disk full, corruption, I/O error).
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// A stored value could not be decoded: the database was edited by hand or is corrupt.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The blocking task running the query panicked or was cancelled.
    #[error("store task failed: {0}")]
    Task(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Accounts, access keys, functions and their reserved concurrency. Every method is one atomic, durable step.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Create an account named `name` with one fresh access key.
    async fn create_account(&self, name: &str, is_root: bool) -> Result<(Account, AccessKey)>;
    /// The root account, if one was created.
    async fn root_account(&self) -> Result<Option<Account>>;
    /// All accounts, oldest first.
    async fn list_accounts(&self) -> Result<Vec<Account>>;
    /// Add (or, if the id exists for the same account, re-key) an access key.
    async fn put_access_key(&self, key: &AccessKey) -> Result<()>;
    /// Look up an access key and the account that owns it.
    async fn access_key(&self, access_key_id: &str) -> Result<Option<(AccessKey, Account)>>;

    /// Insert a new function; [`StoreError::AlreadyExists`] if the name is taken.
    async fn create_function(&self, function: &Function) -> Result<()>;
    async fn get_function(&self, account_id: &str, name: &str) -> Result<Option<Function>>;
    /// Functions of one account ordered by name, starting after `after`.
    async fn list_functions(
        &self,
        account_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Function>>;
    /// Replace a function if its stored revision is still `expected_revision_id`.
    async fn update_function(&self, function: &Function, expected_revision_id: &str) -> Result<()>;
    /// Delete a function, returning what was deleted.
    async fn delete_function(&self, account_id: &str, name: &str) -> Result<Option<Function>>;
    /// Whether any function still uses the code package with this hash.
    async fn code_in_use(&self, code_sha256_hex: &str) -> Result<bool>;

    /// Set a function's reserved concurrency, unless that would take the account's total
    /// of reservations over `max_account_total` (checked atomically with the write;
    /// lowering a reservation is always allowed). [`StoreError::NotFound`] if the function
    /// does not exist. A function's reservation is deleted with it.
    async fn put_reserved_concurrency(
        &self,
        account_id: &str,
        name: &str,
        reserved: u32,
        max_account_total: u64,
    ) -> Result<ReserveOutcome>;
    /// A function's reserved concurrency, if it has one.
    async fn get_reserved_concurrency(&self, account_id: &str, name: &str) -> Result<Option<u32>>;
    /// Remove a function's reservation; whether there was one.
    async fn delete_reserved_concurrency(&self, account_id: &str, name: &str) -> Result<bool>;
    /// Every reservation of every account (loaded into the in-memory limiter at start).
    async fn list_reserved_concurrency(&self) -> Result<Vec<ReservedConcurrency>>;
    /// An account's function count, code bytes and total reserved concurrency.
    async fn account_usage(&self, account_id: &str) -> Result<AccountUsage>;

    /// Insert or replace an event source mapping (by UUID; its account and queue never
    /// change).
    async fn put_event_source_mapping(&self, mapping: &EventSourceMapping) -> Result<()>;
    async fn get_event_source_mapping(&self, uuid: &str) -> Result<Option<EventSourceMapping>>;
    /// The mappings of one account, or of every account (`None`), by UUID.
    async fn list_event_source_mappings(
        &self,
        account_id: Option<&str>,
    ) -> Result<Vec<EventSourceMapping>>;
    /// Delete a mapping; whether it existed.
    async fn delete_event_source_mapping(&self, uuid: &str) -> Result<bool>;

    /// A function's setting document, if it has one.
    async fn get_function_setting(
        &self,
        account_id: &str,
        name: &str,
        kind: FunctionSetting,
    ) -> Result<Option<SettingDocument>>;
    /// Store (`Some`) or remove (`None`) a function's setting document; the document is
    /// deleted with the function. [`StoreError::NotFound`] if the function does not exist.
    /// Returns whether a document existed before.
    async fn put_function_setting(
        &self,
        account_id: &str,
        name: &str,
        kind: FunctionSetting,
        body: Option<&str>,
    ) -> Result<bool>;

    /// Progress recorded under `key` (e.g. how far an aggregate message got).
    async fn get_checkpoint(&self, key: &str) -> Result<Option<String>>;
    /// Record (`Some`) or clear (`None`) progress under `key`, durably.
    async fn put_checkpoint(&self, key: &str, body: Option<&str>) -> Result<()>;
}
