//! A queue's settings: SQS's queue attributes, parsed and checked once.
//!
//! CreateQueue and SetQueueAttributes hand over a map of attribute names to strings;
//! [`QueueSettings::for_create`] and [`QueueSettings::apply`] turn it into typed values
//! with SQS's error codes and messages, and [`QueueSettings::to_attributes`] renders it
//! back for GetQueueAttributes. Attributes SQS accepts but Ember does not act on are
//! refused when accepting them would be a false promise (server-side encryption) and
//! stored as given when they only describe access (`Policy`, `RedriveAllowPolicy`: a
//! queue is only ever reachable from its own account here).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{QueueError, Result};
use crate::model::QueueRef;
use crate::validate::{self, MAX_DELAY_SECONDS};

pub const DEFAULT_VISIBILITY_TIMEOUT: u32 = 30;
pub const MAX_VISIBILITY_TIMEOUT: u32 = 43_200;
pub const DEFAULT_RETENTION: u32 = 345_600;
pub const MIN_RETENTION: u32 = 60;
pub const MAX_RETENTION: u32 = 1_209_600;
pub const MAX_WAIT_SECONDS: u32 = 20;
pub const MIN_MESSAGE_SIZE: u32 = 1024;
/// SQS's largest message (and largest batch): 1 MiB.
pub const MAX_MESSAGE_SIZE: u32 = 1_048_576;
pub const MAX_RECEIVE_COUNT: u32 = 1000;

/// Where a queue's messages go after too many receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedrivePolicy {
    pub dead_letter_target_arn: String,
    /// A message received this many times moves to the dead-letter queue at the next
    /// receive that would have returned it.
    pub max_receive_count: u32,
}

impl RedrivePolicy {
    /// The dead-letter queue (the ARN was checked when the policy was set).
    pub fn target(&self) -> QueueRef {
        let mut parts = self.dead_letter_target_arn.splitn(6, ':');
        let account = parts.nth(4).unwrap_or_default();
        let name = parts.next().unwrap_or_default();
        QueueRef::new(account, name)
    }

    /// The policy as SQS renders it: `{"deadLetterTargetArn":"...","maxReceiveCount":5}`.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "deadLetterTargetArn": self.dead_letter_target_arn,
            "maxReceiveCount": self.max_receive_count,
        })
        .to_string()
    }
}

/// Typed queue attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    pub fifo: bool,
    pub visibility_timeout: u32,
    pub message_retention_period: u32,
    pub delay_seconds: u32,
    pub receive_message_wait_time_seconds: u32,
    pub maximum_message_size: u32,
    pub redrive_policy: Option<RedrivePolicy>,
    pub content_based_deduplication: bool,
    /// FIFO: `queue` or `messageGroup` (deduplication ids are then per group).
    pub deduplication_scope: String,
    /// FIFO: `perQueue` or `perMessageGroupId` (stored and shown; Ember has no quota).
    pub fifo_throughput_limit: String,
    /// Stored and shown, not evaluated.
    pub policy: Option<String>,
    /// Stored and shown, not evaluated.
    pub redrive_allow_policy: Option<String>,
}

impl QueueSettings {
    pub fn defaults(fifo: bool) -> Self {
        QueueSettings {
            fifo,
            visibility_timeout: DEFAULT_VISIBILITY_TIMEOUT,
            message_retention_period: DEFAULT_RETENTION,
            delay_seconds: 0,
            receive_message_wait_time_seconds: 0,
            maximum_message_size: MAX_MESSAGE_SIZE,
            redrive_policy: None,
            content_based_deduplication: false,
            deduplication_scope: "queue".into(),
            fifo_throughput_limit: "perQueue".into(),
            policy: None,
            redrive_allow_policy: None,
        }
    }

    /// The settings of a queue CreateQueue would make from `attributes`; also checks the
    /// queue's name (which must end in `.fifo` exactly when `FifoQueue` is `true`).
    pub fn for_create(
        queue: &QueueRef,
        region: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let fifo = match attributes.get("FifoQueue") {
            None => false,
            Some(v) => match parse_bool("FifoQueue", v)? {
                true => true,
                false => return Err(unknown("FifoQueue")),
            },
        };
        validate::queue_name(&queue.name, fifo)?;
        let mut settings = QueueSettings::defaults(fifo);
        settings.apply(queue, region, attributes)?;
        Ok(settings)
    }

    /// Apply SetQueueAttributes (or CreateQueue) attributes. On error nothing is changed.
    pub fn apply(
        &mut self,
        queue: &QueueRef,
        region: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<()> {
        let mut next = self.clone();
        for (name, value) in attributes {
            next.set(queue, region, name, value)?;
        }
        if next.fifo_throughput_limit == "perMessageGroupId"
            && next.deduplication_scope != "messageGroup"
        {
            return Err(QueueError::InvalidAttributeValue(
                "Invalid value for the parameter FifoThroughputLimit. Reason: \
                 perMessageGroupId is allowed only when DeduplicationScope is messageGroup."
                    .into(),
            ));
        }
        *self = next;
        Ok(())
    }

    fn set(&mut self, queue: &QueueRef, region: &str, name: &str, value: &str) -> Result<()> {
        let fifo_only = |what: &str| -> Result<()> {
            match what {
                "DeduplicationScope" | "FifoThroughputLimit" => {
                    Err(QueueError::InvalidAttributeName(format!(
                        "You can specify the {what} only when FifoQueue is set to true."
                    )))
                }
                _ => Err(unknown(what)),
            }
        };
        match name {
            "VisibilityTimeout" => {
                self.visibility_timeout = parse_range(name, value, 0, MAX_VISIBILITY_TIMEOUT)?
            }
            "MessageRetentionPeriod" => {
                self.message_retention_period =
                    parse_range(name, value, MIN_RETENTION, MAX_RETENTION)?
            }
            "DelaySeconds" => self.delay_seconds = parse_range(name, value, 0, MAX_DELAY_SECONDS)?,
            "ReceiveMessageWaitTimeSeconds" => {
                self.receive_message_wait_time_seconds =
                    parse_range(name, value, 0, MAX_WAIT_SECONDS)?
            }
            "MaximumMessageSize" => {
                self.maximum_message_size =
                    parse_range(name, value, MIN_MESSAGE_SIZE, MAX_MESSAGE_SIZE)?
            }
            "RedrivePolicy" => self.redrive_policy = parse_redrive(queue, region, value)?,
            "Policy" => self.policy = parse_json_map(name, value)?,
            "RedriveAllowPolicy" => self.redrive_allow_policy = parse_json_map(name, value)?,
            "FifoQueue" => {
                if !self.fifo {
                    return Err(unknown(name));
                }
                if !parse_bool(name, value).unwrap_or(false) {
                    return Err(QueueError::InvalidAttributeValue(
                        "Invalid value for the parameter FifoQueue. Reason: Modifying queue \
                         type is not supported."
                            .into(),
                    ));
                }
            }
            "ContentBasedDeduplication" if self.fifo => {
                self.content_based_deduplication = parse_bool(name, value)?
            }
            "DeduplicationScope" if self.fifo => {
                self.deduplication_scope = parse_choice(name, value, &["queue", "messageGroup"])?
            }
            "FifoThroughputLimit" if self.fifo => {
                self.fifo_throughput_limit =
                    parse_choice(name, value, &["perQueue", "perMessageGroupId"])?
            }
            "ContentBasedDeduplication" | "DeduplicationScope" | "FifoThroughputLimit" => {
                return fifo_only(name);
            }
            "SqsManagedSseEnabled" => {
                if parse_bool(name, value)? {
                    return Err(not_supported(
                        name,
                        "Ember does not encrypt queue data at rest; leave it false.",
                    ));
                }
            }
            "KmsMasterKeyId" | "KmsDataKeyReusePeriodSeconds" => {
                return Err(not_supported(
                    name,
                    "Ember does not support KMS encryption of queues.",
                ));
            }
            _ => return Err(unknown(name)),
        }
        Ok(())
    }

    /// The settable attributes as GetQueueAttributes shows them.
    pub fn to_attributes(&self) -> BTreeMap<&'static str, String> {
        let mut a = BTreeMap::new();
        a.insert("VisibilityTimeout", self.visibility_timeout.to_string());
        a.insert(
            "MessageRetentionPeriod",
            self.message_retention_period.to_string(),
        );
        a.insert("DelaySeconds", self.delay_seconds.to_string());
        a.insert(
            "ReceiveMessageWaitTimeSeconds",
            self.receive_message_wait_time_seconds.to_string(),
        );
        a.insert("MaximumMessageSize", self.maximum_message_size.to_string());
        a.insert("SqsManagedSseEnabled", "false".into());
        if let Some(r) = &self.redrive_policy {
            a.insert("RedrivePolicy", r.to_json());
        }
        if let Some(p) = &self.policy {
            a.insert("Policy", p.clone());
        }
        if let Some(p) = &self.redrive_allow_policy {
            a.insert("RedriveAllowPolicy", p.clone());
        }
        if self.fifo {
            a.insert("FifoQueue", "true".into());
            a.insert(
                "ContentBasedDeduplication",
                self.content_based_deduplication.to_string(),
            );
            a.insert("DeduplicationScope", self.deduplication_scope.clone());
            a.insert("FifoThroughputLimit", self.fifo_throughput_limit.clone());
        }
        a
    }

    /// The first attribute in `requested` whose value differs from these settings' value
    /// (CreateQueue on an existing queue succeeds only when there is none).
    pub fn first_difference(
        &self,
        other: &QueueSettings,
        requested: &BTreeMap<String, String>,
    ) -> Option<String> {
        let mine = self.to_attributes();
        let theirs = other.to_attributes();
        requested
            .keys()
            .find(|k| mine.get(k.as_str()) != theirs.get(k.as_str()))
            .cloned()
    }
}

fn unknown(name: &str) -> QueueError {
    QueueError::InvalidAttributeName(format!("Unknown Attribute {name}."))
}

fn invalid(name: &str) -> QueueError {
    QueueError::InvalidAttributeValue(format!("Invalid value for the parameter {name}."))
}

fn not_supported(name: &str, why: &str) -> QueueError {
    QueueError::InvalidAttributeValue(format!(
        "Invalid value for the parameter {name}. Reason: {why}"
    ))
}

fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(name)),
    }
}

fn parse_range(name: &str, value: &str, min: u32, max: u32) -> Result<u32> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| invalid(name))
}

fn parse_choice(name: &str, value: &str, choices: &[&str]) -> Result<String> {
    choices
        .iter()
        .find(|c| **c == value)
        .map(|c| (*c).to_owned())
        .ok_or_else(|| invalid(name))
}

/// A JSON-object attribute; the empty string removes it.
fn parse_json_map(name: &str, value: &str) -> Result<Option<String>> {
    if value.is_empty() {
        return Ok(None);
    }
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(serde_json::Value::Object(_)) => Ok(Some(value.to_owned())),
        _ => Err(invalid(name)),
    }
}

/// `{"deadLetterTargetArn": "arn:aws:sqs:<region>:<account>:<name>", "maxReceiveCount": n}`
/// with `n` a number or numeric string from 1 to 1000; the empty string removes the policy.
/// The target must be in the source's region and account; that it exists and has the
/// same type is checked by the backend.
fn parse_redrive(queue: &QueueRef, region: &str, value: &str) -> Result<Option<RedrivePolicy>> {
    if value.is_empty() {
        return Ok(None);
    }
    let bad = |reason: &str| QueueError::invalid_value(value, "RedrivePolicy", reason);
    let map = match serde_json::from_str::<serde_json::Value>(value) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => return Err(bad("Redrive policy is not a valid JSON map.")),
    };
    if let Some(extra) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "deadLetterTargetArn" | "maxReceiveCount"))
    {
        return Err(bad(&format!(
            "Only following attributes are supported: [deadLetterTargetArn, maxReceiveCount], found: {extra}."
        )));
    }
    let arn = map.get("deadLetterTargetArn").ok_or_else(|| {
        bad("Redrive policy does not contain mandatory attribute: deadLetterTargetArn.")
    })?;
    let count = map.get("maxReceiveCount").ok_or_else(|| {
        bad("Redrive policy does not contain mandatory attribute: maxReceiveCount.")
    })?;
    let count_text = match count {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let max_receive_count = count_text
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_RECEIVE_COUNT).contains(n))
        .ok_or_else(|| {
            bad(&format!(
                "Invalid value for maxReceiveCount: {count_text}, valid values are from 1 to 1000 both inclusive."
            ))
        })?;
    let arn = arn
        .as_str()
        .ok_or_else(|| bad("Invalid value for deadLetterTargetArn."))?;
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", "aws", "sqs", r, account, name] if !name.is_empty() => {
            if *r != region || *account != queue.account_id {
                return Err(bad(
                    "Dead-letter target must be in the same region and account as the source queue.",
                ));
            }
        }
        _ => return Err(bad("Invalid value for deadLetterTargetArn.")),
    }
    Ok(Some(RedrivePolicy {
        dead_letter_target_arn: arn.to_owned(),
        max_receive_count,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const ACCOUNT: &str = "123456789012";

    fn q(name: &str) -> QueueRef {
        QueueRef::new(ACCOUNT, name)
    }

    #[test]
    fn create_standard_and_fifo() {
        let s = QueueSettings::for_create(
            &q("q"),
            "us-east-1",
            &attrs(&[("VisibilityTimeout", "5"), ("DelaySeconds", "10")]),
        )
        .unwrap();
        assert_eq!(
            (s.fifo, s.visibility_timeout, s.delay_seconds),
            (false, 5, 10)
        );
        let f = QueueSettings::for_create(
            &q("q.fifo"),
            "us-east-1",
            &attrs(&[("FifoQueue", "TRUE"), ("ContentBasedDeduplication", "true")]),
        )
        .unwrap();
        assert!(f.fifo && f.content_based_deduplication);
        assert_eq!(f.to_attributes()["FifoQueue"], "true");

        let err = |name: &str, a: &[(&str, &str)]| {
            QueueSettings::for_create(&q(name), "us-east-1", &attrs(a))
                .unwrap_err()
                .code()
        };
        assert_eq!(err("q", &[("FifoQueue", "false")]), "InvalidAttributeName");
        assert_eq!(
            err("q", &[("ContentBasedDeduplication", "false")]),
            "InvalidAttributeName"
        );
        assert_eq!(
            err("q", &[("DeduplicationScope", "queue")]),
            "InvalidAttributeName"
        );
        assert_eq!(err("q.fifo", &[]), "InvalidParameterValue");
        assert_eq!(err("q", &[("FifoQueue", "true")]), "InvalidParameterValue");
        assert_eq!(
            err("q", &[("VisibilityTimeout", "43201")]),
            "InvalidAttributeValue"
        );
        assert_eq!(
            err("q", &[("MessageRetentionPeriod", "59")]),
            "InvalidAttributeValue"
        );
        assert_eq!(
            err("q", &[("MaximumMessageSize", "1048577")]),
            "InvalidAttributeValue"
        );
        assert_eq!(err("q", &[("Bogus", "1")]), "InvalidAttributeName");
        assert_eq!(err("q", &[("QueueArn", "x")]), "InvalidAttributeName");
        assert_eq!(
            err("q", &[("SqsManagedSseEnabled", "true")]),
            "InvalidAttributeValue"
        );
        assert_eq!(
            err(
                "q.fifo",
                &[
                    ("FifoQueue", "true"),
                    ("FifoThroughputLimit", "perMessageGroupId")
                ]
            ),
            "InvalidAttributeValue"
        );
    }

    #[test]
    fn redrive() {
        let arn = format!("arn:aws:sqs:us-east-1:{ACCOUNT}:dlq");
        let mut s = QueueSettings::defaults(false);
        for count in ["3", "\"3\""] {
            let v = format!(r#"{{"deadLetterTargetArn": "{arn}", "maxReceiveCount": {count}}}"#);
            s.apply(&q("q"), "us-east-1", &attrs(&[("RedrivePolicy", &v)]))
                .unwrap();
            let r = s.redrive_policy.clone().unwrap();
            assert_eq!(r.max_receive_count, 3);
            assert_eq!(r.target(), q("dlq"));
            assert_eq!(
                s.to_attributes()["RedrivePolicy"],
                format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":3}}"#)
            );
        }
        for bad in [
            "nope".to_string(),
            format!(r#"{{"deadLetterTargetArn": "{arn}"}}"#),
            r#"{"maxReceiveCount": 3}"#.to_string(),
            format!(r#"{{"deadLetterTargetArn": "{arn}", "maxReceiveCount": "invalid"}}"#),
            format!(r#"{{"deadLetterTargetArn": "{arn}", "maxReceiveCount": 1001}}"#),
            r#"{"deadLetterTargetArn": "arn:aws:sqs:us-east-1:999999999999:dlq", "maxReceiveCount": 3}"#.to_string(),
            r#"{"deadLetterTargetArn": "dummy", "maxReceiveCount": 3}"#.to_string(),
        ] {
            let before = s.clone();
            let e = s
                .apply(&q("q"), "us-east-1", &attrs(&[("RedrivePolicy", &bad)]))
                .unwrap_err();
            assert_eq!(e.code(), "InvalidParameterValue", "{bad}");
            assert_eq!(s, before, "a failed apply changes nothing");
        }
        s.apply(&q("q"), "us-east-1", &attrs(&[("RedrivePolicy", "")]))
            .unwrap();
        assert!(s.redrive_policy.is_none());
    }

    #[test]
    fn set_fifo_flag() {
        let mut f = QueueSettings::defaults(true);
        f.apply(&q("q.fifo"), "us-east-1", &attrs(&[("FifoQueue", "true")]))
            .unwrap();
        assert_eq!(
            f.apply(&q("q.fifo"), "us-east-1", &attrs(&[("FifoQueue", "false")]))
                .unwrap_err()
                .code(),
            "InvalidAttributeValue"
        );
        let mut s = QueueSettings::defaults(false);
        assert_eq!(
            s.apply(&q("q"), "us-east-1", &attrs(&[("FifoQueue", "true")]))
                .unwrap_err()
                .code(),
            "InvalidAttributeName"
        );
    }

    #[test]
    fn idempotent_create_compares_given_attributes() {
        let a = attrs(&[("VisibilityTimeout", "30")]);
        let existing = QueueSettings::defaults(false);
        let same = QueueSettings::for_create(&q("q"), "us-east-1", &a).unwrap();
        assert_eq!(existing.first_difference(&same, &a), None);
        let b = attrs(&[("DelaySeconds", "5")]);
        let other = QueueSettings::for_create(&q("q"), "us-east-1", &b).unwrap();
        assert_eq!(
            existing.first_difference(&other, &b).as_deref(),
            Some("DelaySeconds")
        );
    }
}
