//! The converter: queue messages become the invocation payloads Lambda hands functions,
//! and function responses become acknowledgement decisions. The one place event shapes
//! are built, for every event source.
//!
//! - [`sqs_event`]: a batch of SQS messages → Lambda's SQS event (`{"Records": [...]}`);
//!   [`sqs_record`]: one of its records.
//! - [`batch_item_failures`]: a `ReportBatchItemFailures` response → the messages that
//!   failed, or the whole batch when the response does not follow the contract.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ember_queue::{AttributeValue, ReceivedMessage};
use serde_json::{Map, Value, json};

/// Lambda's SQS event for `messages` received from the queue `queue_arn`.
pub fn sqs_event(messages: &[ReceivedMessage], queue_arn: &str, region: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| sqs_record(m, queue_arn, region))
        .collect();
    json!({ "Records": records })
}

/// One message as a record of Lambda's SQS event (what filter patterns see, too).
pub fn sqs_record(m: &ReceivedMessage, queue_arn: &str, region: &str) -> Value {
    let mut attributes = Map::new();
    let mut put = |k: &str, v: String| {
        attributes.insert(k.to_owned(), Value::String(v));
    };
    put("ApproximateReceiveCount", m.receive_count.to_string());
    put("SentTimestamp", m.sent_ms.to_string());
    put("SenderId", m.sender_id.clone());
    put(
        "ApproximateFirstReceiveTimestamp",
        m.first_receive_ms.to_string(),
    );
    if let Some(v) = &m.trace_header {
        put("AWSTraceHeader", v.clone());
    }
    if let Some(v) = &m.sequence_number {
        put("SequenceNumber", v.clone());
    }
    if let Some(v) = &m.group_id {
        put("MessageGroupId", v.clone());
    }
    if let Some(v) = &m.deduplication_id {
        put("MessageDeduplicationId", v.clone());
    }
    if let Some(v) = &m.dead_letter_source_arn {
        put("DeadLetterQueueSourceArn", v.clone());
    }
    let message_attributes: Map<String, Value> = m
        .attributes
        .iter()
        .map(|(name, a)| {
            let mut v = Map::new();
            match &a.value {
                AttributeValue::String(s) => {
                    v.insert("stringValue".into(), Value::String(s.clone()));
                }
                AttributeValue::Binary(b) => {
                    v.insert("binaryValue".into(), Value::String(STANDARD.encode(b)));
                }
            }
            v.insert("stringListValues".into(), json!([]));
            v.insert("binaryListValues".into(), json!([]));
            v.insert("dataType".into(), Value::String(a.data_type.clone()));
            (name.clone(), Value::Object(v))
        })
        .collect();
    json!({
        "messageId": m.message_id,
        "receiptHandle": m.receipt_handle,
        "body": m.body,
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": m.md5_of_body,
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    })
}

/// The message ids a successful `ReportBatchItemFailures` response lists as failed.
///
/// As Lambda: an empty or `null` response, or one without a `batchItemFailures` list (or
/// with an empty or `null` one), is a complete success. A response that is not JSON, or
/// an item whose `itemIdentifier` is missing, empty, not a string or not the id of a
/// message of the batch, makes the whole batch a failure (`Err` with the reason).
pub fn batch_item_failures(payload: &[u8], batch: &[&str]) -> Result<HashSet<String>, String> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(HashSet::new());
    }
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| format!("the function's response is not valid JSON: {e}"))?;
    let items = match value.get("batchItemFailures") {
        None | Some(Value::Null) => return Ok(HashSet::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err("batchItemFailures is not a list".into()),
    };
    let known: HashSet<&str> = batch.iter().copied().collect();
    let mut failed = HashSet::new();
    for item in items {
        match item.get("itemIdentifier") {
            Some(Value::String(id)) if known.contains(id.as_str()) => {
                failed.insert(id.clone());
            }
            Some(Value::String(id)) if id.is_empty() => {
                return Err("an itemIdentifier is empty".into());
            }
            Some(Value::String(id)) => {
                return Err(format!("itemIdentifier {id} is not a message of the batch"));
            }
            _ => return Err("a batch item failure has no string itemIdentifier".into()),
        }
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_queue::MessageAttribute;

    fn message(id: &str) -> ReceivedMessage {
        ReceivedMessage {
            message_id: id.into(),
            receipt_handle: format!("rh-{id}"),
            body: "hello".into(),
            md5_of_body: "5d41402abc4b2a76b9719d911017c592".into(),
            attributes: Default::default(),
            trace_header: None,
            sender_id: "123456789012".into(),
            sent_ms: 1_700_000_000_000,
            receive_count: 1,
            first_receive_ms: 1_700_000_000_005,
            group_id: None,
            deduplication_id: None,
            sequence_number: None,
            dead_letter_source_arn: None,
        }
    }

    #[test]
    fn standard_message_has_lambdas_shape() {
        let mut m = message("m1");
        m.attributes
            .insert("n".into(), MessageAttribute::string("Number", "42"));
        m.attributes.insert(
            "b".into(),
            MessageAttribute::binary("Binary", b"\x00\x01".to_vec()),
        );
        let arn = "arn:aws:sqs:us-east-1:123456789012:q";
        let event = sqs_event(&[m], arn, "us-east-1");
        assert_eq!(
            event,
            json!({"Records": [{
                "messageId": "m1",
                "receiptHandle": "rh-m1",
                "body": "hello",
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1700000000000",
                    "SenderId": "123456789012",
                    "ApproximateFirstReceiveTimestamp": "1700000000005",
                },
                "messageAttributes": {
                    "b": {"binaryValue": "AAE=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
                    "n": {"stringValue": "42", "stringListValues": [], "binaryListValues": [], "dataType": "Number"},
                },
                "md5OfBody": "5d41402abc4b2a76b9719d911017c592",
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            }]})
        );
    }

    #[test]
    fn fifo_message_carries_group_dedup_and_sequence() {
        let mut m = message("m1");
        m.group_id = Some("g".into());
        m.deduplication_id = Some("d".into());
        m.sequence_number = Some("18849496460467696128".into());
        let event = sqs_event(&[m], "arn:aws:sqs:r:1:q.fifo", "r");
        let a = &event["Records"][0]["attributes"];
        assert_eq!(a["MessageGroupId"], "g");
        assert_eq!(a["MessageDeduplicationId"], "d");
        assert_eq!(a["SequenceNumber"], "18849496460467696128");
    }

    #[test]
    fn batch_item_failures_follow_lambdas_rules() {
        let batch = ["a", "b", "c"];
        let ok = |p: &str| batch_item_failures(p.as_bytes(), &batch);
        assert!(ok("").unwrap().is_empty());
        assert!(ok("null").unwrap().is_empty());
        assert!(ok("{}").unwrap().is_empty());
        assert!(ok(r#"{"batchItemFailures": null}"#).unwrap().is_empty());
        assert!(ok(r#"{"batchItemFailures": []}"#).unwrap().is_empty());
        assert!(ok(r#""done""#).unwrap().is_empty());
        let failed = ok(r#"{"batchItemFailures": [{"itemIdentifier": "b"}]}"#).unwrap();
        assert_eq!(failed, HashSet::from(["b".to_owned()]));
        assert!(ok("not json").is_err());
        assert!(ok(r#"{"batchItemFailures": [{"itemIdentifier": "zzz"}]}"#).is_err());
        assert!(ok(r#"{"batchItemFailures": [{"itemIdentifier": ""}]}"#).is_err());
        assert!(ok(r#"{"batchItemFailures": [{"itemIdentifier": null}]}"#).is_err());
        assert!(ok(r#"{"batchItemFailures": [{"id": "a"}]}"#).is_err());
        assert!(ok(r#"{"batchItemFailures": "a"}"#).is_err());
    }
}
