//! The records Ember keeps.

use std::collections::BTreeMap;

use time::OffsetDateTime;

/// A tenant. Everything a user creates belongs to exactly one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Twelve decimal digits, as in AWS.
    pub id: String,
    pub name: String,
    /// The root account administers Ember itself (creates accounts, sizes pools).
    pub is_root: bool,
    pub created: OffsetDateTime,
}

/// A SigV4 key pair. The secret is kept because verifying a signature means recomputing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub account_id: String,
}

impl AccessKey {
    /// A fresh random key pair in AWS's formats: `AKIA` + 16 base-32 characters, and a
    /// 40-character secret.
    pub fn generate(account_id: &str) -> Self {
        const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let id: String = random_bytes::<16>()
            .iter()
            .map(|b| BASE32[(*b as usize) % BASE32.len()] as char)
            .collect();
        let secret: String = random_bytes::<40>()
            .iter()
            .map(|b| SECRET[(*b as usize) % SECRET.len()] as char)
            .collect();
        AccessKey {
            access_key_id: format!("AKIA{id}"),
            secret_access_key: secret,
            account_id: account_id.to_owned(),
        }
    }
}

/// A random twelve-digit account id that does not start with 0.
pub fn generate_account_id() -> String {
    let bytes = random_bytes::<12>();
    let mut id = String::with_capacity(12);
    for (i, b) in bytes.iter().enumerate() {
        let digit = if i == 0 { 1 + b % 9 } else { b % 10 };
        id.push(char::from(b'0' + digit));
    }
    id
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf
}

/// A function's configuration and the code package it runs (`$LATEST`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub account_id: String,
    pub name: String,
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub role: String,
    pub description: String,
    /// Seconds.
    pub timeout: u32,
    /// MiB.
    pub memory_size: u32,
    /// MiB of `/tmp`.
    pub ephemeral_storage: u32,
    pub environment: BTreeMap<String, String>,
    pub architectures: Vec<String>,
    pub tags: BTreeMap<String, String>,
    /// Hex sha256 of the zip in the code store.
    pub code_sha256: String,
    /// Bytes of the zip.
    pub code_size: u64,
    pub last_modified: OffsetDateTime,
    /// Changes on every update; clients pass it back for optimistic concurrency.
    pub revision_id: String,
    /// `DeadLetterConfig.TargetArn`: the SQS queue that receives asynchronous events that
    /// failed every attempt.
    pub dead_letter_target_arn: Option<String>,
}

impl Function {
    /// `arn:aws:lambda:<region>:<account>:function:<name>`.
    pub fn arn(&self, region: &str) -> String {
        format!(
            "arn:aws:lambda:{region}:{}:function:{}",
            self.account_id, self.name
        )
    }

    /// Lambda's `LastModified` format: `2019-09-24T15:43:07.522+0000`.
    pub fn last_modified_string(&self) -> String {
        format_timestamp(self.last_modified)
    }
}

/// A function's reserved concurrency (PutFunctionConcurrency).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedConcurrency {
    pub account_id: String,
    pub function_name: String,
    pub reserved: u32,
}

/// What became of a request to reserve concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveOutcome {
    Saved,
    /// Refused: the account's reservations would exceed the allowed total. Nothing changed.
    OverAccountLimit {
        /// What the account's other functions already reserve.
        reserved_elsewhere: u64,
    },
}

/// What one account uses (GetAccountSettings' `AccountUsage`, plus its reservations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccountUsage {
    pub function_count: u64,
    /// Bytes of the zips of its functions.
    pub total_code_size: u64,
    /// Sum of its functions' reserved concurrency.
    pub reserved_concurrency: u64,
}

/// A fresh revision id (a UUID, as Lambda uses).
pub fn new_revision_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Lambda's timestamp format, millisecond precision, UTC: `2019-09-24T15:43:07.522+0000`.
pub fn format_timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+0000",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_formats() {
        let k = AccessKey::generate("123456789012");
        assert_eq!(k.access_key_id.len(), 20);
        assert!(k.access_key_id.starts_with("AKIA"));
        assert_eq!(k.secret_access_key.len(), 40);
        assert_ne!(k, AccessKey::generate("123456789012"));
        let id = generate_account_id();
        assert_eq!(id.len(), 12);
        assert!(id.bytes().all(|b| b.is_ascii_digit()) && !id.starts_with('0'));
    }

    #[test]
    fn timestamp_format() {
        let t = time::macros::datetime!(2019-09-24 15:43:07.522 UTC);
        assert_eq!(format_timestamp(t), "2019-09-24T15:43:07.522+0000");
    }
}

/// An event source mapping from an SQS queue of the same account to a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSourceMapping {
    pub uuid: String,
    pub account_id: String,
    pub function_name: String,
    /// The queue's name (in `account_id`).
    pub queue_name: String,
    pub batch_size: u32,
    /// `MaximumBatchingWindowInSeconds`.
    pub max_batching_window: u32,
    pub enabled: bool,
    /// `FunctionResponseTypes` contains `ReportBatchItemFailures`.
    pub report_batch_item_failures: bool,
    /// `ScalingConfig.MaximumConcurrency`.
    pub maximum_concurrency: Option<u32>,
    /// `FilterCriteria.Filters[].Pattern`, as the caller gave them (checked by the API;
    /// empty: no filtering).
    pub filter_patterns: Vec<String>,
    pub last_modified_ms: i64,
}

/// A document kept per function beside its configuration, deleted with the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionSetting {
    /// PutFunctionEventInvokeConfig's retries, event age and destinations (JSON).
    EventInvokeConfig,
    /// The resource-based policy built by AddPermission (an IAM policy document).
    Policy,
}

impl FunctionSetting {
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionSetting::EventInvokeConfig => "event-invoke-config",
            FunctionSetting::Policy => "policy",
        }
    }
}

/// A stored [`FunctionSetting`] document and when it last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingDocument {
    pub body: String,
    pub modified_ms: i64,
}

/// A function's asynchronous invocation settings (PutFunctionEventInvokeConfig), stored
/// as [`FunctionSetting::EventInvokeConfig`] in the API's JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventInvokeConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_retry_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_event_age_in_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_config: Option<DestinationConfig>,
}

/// Where records of asynchronous invocations go, by outcome.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DestinationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_success: Option<Destination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Destination>,
}

/// One destination: an SQS queue or Lambda function ARN.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Destination {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

impl EventInvokeConfig {
    /// Lambda's defaults: two retries, events kept six hours.
    pub const DEFAULT_RETRIES: u32 = 2;
    pub const DEFAULT_MAX_AGE_SECS: u32 = 21_600;

    pub fn retries(&self) -> u32 {
        self.maximum_retry_attempts.unwrap_or(Self::DEFAULT_RETRIES)
    }

    pub fn max_age_secs(&self) -> u32 {
        self.maximum_event_age_in_seconds
            .unwrap_or(Self::DEFAULT_MAX_AGE_SECS)
    }

    fn destination(d: Option<&Destination>) -> Option<&str> {
        d.and_then(|d| d.destination.as_deref())
            .filter(|d| !d.is_empty())
    }

    pub fn on_success(&self) -> Option<&str> {
        Self::destination(
            self.destination_config
                .as_ref()
                .and_then(|c| c.on_success.as_ref()),
        )
    }

    pub fn on_failure(&self) -> Option<&str> {
        Self::destination(
            self.destination_config
                .as_ref()
                .and_then(|c| c.on_failure.as_ref()),
        )
    }
}
