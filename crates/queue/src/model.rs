//! The values that cross the [`Queues`](crate::Queues) interface. Plain data.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::QueueSettings;

/// A queue is named by its owning account and its name; names are unique per account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueRef {
    pub account_id: String,
    pub name: String,
}

impl QueueRef {
    pub fn new(account_id: impl Into<String>, name: impl Into<String>) -> Self {
        QueueRef {
            account_id: account_id.into(),
            name: name.into(),
        }
    }

    /// `arn:aws:sqs:<region>:<account>:<name>`.
    pub fn arn(&self, region: &str) -> String {
        format!("arn:aws:sqs:{region}:{}:{}", self.account_id, self.name)
    }

    /// The region and queue an `arn:aws:sqs:<region>:<account>:<name>` names, if it is one.
    pub fn from_arn(arn: &str) -> Option<(String, QueueRef)> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        match parts.as_slice() {
            ["arn", "aws", "sqs", region, account, name]
                if !region.is_empty() && !account.is_empty() && !name.is_empty() =>
            {
                Some(((*region).to_owned(), QueueRef::new(*account, *name)))
            }
            _ => None,
        }
    }

    /// Whether this is a FIFO queue's name (FIFO queue names end in `.fifo`).
    pub fn is_fifo_name(&self) -> bool {
        self.name.ends_with(".fifo")
    }
}

impl std::fmt::Display for QueueRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.account_id, self.name)
    }
}

/// A queue as it exists: identity, settings and bookkeeping times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    pub queue: QueueRef,
    pub settings: QueueSettings,
    pub tags: BTreeMap<String, String>,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// The value of a message attribute: SQS has string-typed (`String`, `Number` and their
/// custom subtypes such as `Number.int`) and binary-typed (`Binary...`) attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttributeValue {
    #[serde(rename = "s")]
    String(String),
    #[serde(rename = "b", with = "base64_bytes")]
    Binary(Vec<u8>),
}

/// A typed message attribute (`{"DataType": "Number", "StringValue": "42"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageAttribute {
    #[serde(rename = "t")]
    pub data_type: String,
    #[serde(rename = "v")]
    pub value: AttributeValue,
}

impl MessageAttribute {
    pub fn string(data_type: impl Into<String>, value: impl Into<String>) -> Self {
        MessageAttribute {
            data_type: data_type.into(),
            value: AttributeValue::String(value.into()),
        }
    }

    pub fn binary(data_type: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        MessageAttribute {
            data_type: data_type.into(),
            value: AttributeValue::Binary(value.into()),
        }
    }

    /// Bytes this attribute counts towards the message size limit: name, type and value.
    pub fn size(&self, name: &str) -> usize {
        name.len()
            + self.data_type.len()
            + match &self.value {
                AttributeValue::String(s) => s.len(),
                AttributeValue::Binary(b) => b.len(),
            }
    }
}

/// Message attributes by name. A `BTreeMap` because SQS's attribute digest is computed
/// over the names in sorted order.
pub type MessageAttributes = BTreeMap<String, MessageAttribute>;

/// A message to enqueue. Check it with [`NewMessage::validate`] (the backends do) before
/// it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewMessage {
    pub body: String,
    pub attributes: MessageAttributes,
    /// The X-Ray trace header (`AWSTraceHeader`), the one system attribute a sender may set.
    pub trace_header: Option<String>,
    /// Overrides the queue's `DelaySeconds` (standard queues only).
    pub delay_seconds: Option<u32>,
    /// Required for FIFO queues; on a standard queue it is only carried along.
    pub group_id: Option<String>,
    /// FIFO queues only.
    pub deduplication_id: Option<String>,
    /// Who sent it (the `SenderId` attribute): the sending account's id.
    pub sender_id: String,
}

/// The outcome of one accepted send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub message_id: String,
    /// FIFO queues: the message's sequence number (increasing within the queue).
    pub sequence_number: Option<String>,
    /// FIFO queues: the message was a duplicate within the deduplication interval, so it
    /// was accepted but not enqueued again; `message_id` is the original's.
    pub duplicate: bool,
}

/// Parameters of a receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveRequest {
    /// 1 to 10.
    pub max_messages: u32,
    /// The lease each received message gets; `None` takes the queue's `VisibilityTimeout`.
    pub visibility_timeout: Option<u32>,
    /// How long to wait for a message when none is available; `None` takes the queue's
    /// `ReceiveMessageWaitTimeSeconds`.
    pub wait: Option<Duration>,
}

impl Default for ReceiveRequest {
    fn default() -> Self {
        ReceiveRequest {
            max_messages: 1,
            visibility_timeout: None,
            wait: None,
        }
    }
}

/// A message handed out by a receive, with the lease's receipt handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    /// Valid until the message is received again: only the latest handle deletes it.
    pub receipt_handle: String,
    pub body: String,
    /// Hex MD5 of the body.
    pub md5_of_body: String,
    pub attributes: MessageAttributes,
    pub trace_header: Option<String>,
    pub sender_id: String,
    pub sent_ms: i64,
    /// Including this receive.
    pub receive_count: u32,
    pub first_receive_ms: i64,
    pub group_id: Option<String>,
    pub deduplication_id: Option<String>,
    pub sequence_number: Option<String>,
    /// Set when the message was moved here from a source queue by its redrive policy.
    pub dead_letter_source_arn: Option<String>,
}

/// How many messages a queue holds, as GetQueueAttributes reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueCounts {
    /// Available for receive now (`ApproximateNumberOfMessages`).
    pub visible: u64,
    /// Received and leased (`ApproximateNumberOfMessagesNotVisible`).
    pub in_flight: u64,
    /// Sent with a delay that has not passed (`ApproximateNumberOfMessagesDelayed`).
    pub delayed: u64,
}

/// A change of a leased message's visibility timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibilityChange {
    pub receipt_handle: String,
    /// Seconds from now (0 gives the message back at once); at most 12 hours from the
    /// receive that produced the handle.
    pub timeout: u32,
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
