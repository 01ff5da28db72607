//! The converter: queue messages become the invocation payloads Lambda hands functions,
//! and function responses become acknowledgement decisions. The one place event shapes
//! are built, for every event source.
//!
//! - [`sqs_event`]: a batch of SQS messages → Lambda's SQS event (`{"Records": [...]}`);
//!   [`sqs_record`]: one of its records.
//! - [`batch_item_failures`]: a `ReportBatchItemFailures` response → the messages that
//!   failed, or the whole batch when the response does not follow the contract.
//! - [`routed`]: a message on a routing queue, which names its function itself → the
//!   invocations it asks for. Three forms:
//!   - remote-procedure call: `{"invoke": "<function name or ARN>", "args": <JSON>}`; the
//!     function gets `args` (`{}` when absent);
//!   - CloudEvents 1.0, structured JSON mode (`specversion`, `id`, `source`, `type`)
//!     with the extension attribute `emberfunction` naming the function; the function
//!     gets the whole event;
//!   - aggregate: a JSON array of the above (CloudEvents' batch format), or
//!     `{"events": [...], "ordered": true|false}`; each sub-event is one invocation, run
//!     in order, one at a time, when `ordered` is true.
//! - [`invocation_context`]: the event metadata an invocation's client context carries.

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

/// CloudEvents extension attribute naming the function (extension names are lowercase
/// letters and digits, at most 20).
pub const CLOUDEVENTS_FUNCTION_EXTENSION: &str = "emberfunction";
/// Most sub-events one aggregate message may hold.
pub const MAX_AGGREGATE: usize = 1000;

/// The shape a routed message came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Rpc,
    CloudEvent,
}

impl Form {
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Rpc => "rpc",
            Form::CloudEvent => "cloudevents",
        }
    }
}

/// One invocation a routed message asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedEvent {
    /// A function name (in the queue's account) or a function ARN.
    pub function: String,
    pub payload: Value,
    pub form: Form,
}

/// What a routed message asks for: one event, or an aggregate of several.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub events: Vec<RoutedEvent>,
    /// Sub-events run one after another, in order (checkpointed).
    pub ordered: bool,
    pub aggregate: bool,
}

/// Parse a routing queue's message body. `Err` is the reason the message is malformed,
/// in words fit for the dead-letter queue.
pub fn routed(body: &str) -> Result<Routed, String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("the message body is not JSON: {e}"))?;
    let (items, ordered) = match value {
        Value::Array(items) => (items, false),
        Value::Object(ref o) if o.contains_key("events") => {
            let ordered = match o.get("ordered") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err("\"ordered\" must be true or false".into()),
            };
            match o.get("events") {
                Some(Value::Array(items)) => (items.clone(), ordered),
                _ => return Err("\"events\" must be a list of events".into()),
            }
        }
        single => {
            return Ok(Routed {
                events: vec![one(&single)?],
                ordered: false,
                aggregate: false,
            });
        }
    };
    if items.is_empty() {
        return Err("the aggregate holds no events".into());
    }
    if items.len() > MAX_AGGREGATE {
        return Err(format!(
            "the aggregate holds {} events; at most {MAX_AGGREGATE} are allowed",
            items.len()
        ));
    }
    let events = items
        .iter()
        .enumerate()
        .map(|(i, item)| one(item).map_err(|why| format!("event {i} of the aggregate: {why}")))
        .collect::<Result<_, _>>()?;
    Ok(Routed {
        events,
        ordered,
        aggregate: true,
    })
}

fn one(value: &Value) -> Result<RoutedEvent, String> {
    let Value::Object(o) = value else {
        return Err("an event must be a JSON object".into());
    };
    if let Some(target) = o.get("invoke") {
        let function = non_empty_string(target, "\"invoke\"")?;
        let payload = o.get("args").cloned().unwrap_or_else(|| json!({}));
        return Ok(RoutedEvent {
            function,
            payload,
            form: Form::Rpc,
        });
    }
    if let Some(version) = o.get("specversion") {
        if version.as_str() != Some("1.0") {
            return Err(format!(
                "unsupported CloudEvents specversion {version}: Ember reads 1.0"
            ));
        }
        for required in ["id", "source", "type"] {
            non_empty_string(
                o.get(required).unwrap_or(&Value::Null),
                &format!("the CloudEvents attribute \"{required}\""),
            )?;
        }
        let function = non_empty_string(
            o.get(CLOUDEVENTS_FUNCTION_EXTENSION)
                .unwrap_or(&Value::Null),
            &format!("the CloudEvents extension \"{CLOUDEVENTS_FUNCTION_EXTENSION}\""),
        )?;
        return Ok(RoutedEvent {
            function,
            payload: value.clone(),
            form: Form::CloudEvent,
        });
    }
    Err(format!(
        "the message names no function: expected {{\"invoke\": ..., \"args\": ...}}, a CloudEvents \
         1.0 event with the \"{CLOUDEVENTS_FUNCTION_EXTENSION}\" extension, or a list of these"
    ))
}

fn non_empty_string(v: &Value, what: &str) -> Result<String, String> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Null => Err(format!("{what} is missing")),
        _ => Err(format!("{what} must be a non-empty string")),
    }
}

/// The client context of a routed invocation (Lambda's `{"custom": ...}` shape, read by
/// handlers as `context.client_context.custom["ember"]`): where the event came from, who
/// owns the queue and who sent the message.
pub fn invocation_context(
    m: &ReceivedMessage,
    queue_arn: &str,
    owner: &str,
    form: Form,
    index: Option<usize>,
) -> String {
    let mut ember = json!({
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "messageId": m.message_id,
        "owner": owner,
        "sender": m.sender_id,
        "form": form.as_str(),
        "sentTimestamp": m.sent_ms,
    });
    if let Some(i) = index {
        ember["index"] = json!(i);
    }
    json!({ "custom": { "ember": ember } }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_queue::MessageAttribute;

    #[test]
    fn routed_forms() {
        let r = routed(r#"{"invoke": "thumb", "args": {"k": 1}}"#).unwrap();
        assert_eq!(r.events.len(), 1);
        assert!(!r.aggregate);
        assert_eq!(r.events[0].function, "thumb");
        assert_eq!(r.events[0].payload, json!({"k": 1}));
        assert_eq!(
            routed(r#"{"invoke": "f"}"#).unwrap().events[0].payload,
            json!({})
        );

        let ce = r#"{"specversion": "1.0", "id": "1", "source": "/s", "type": "t",
                     "emberfunction": "f", "data": {"x": 2}}"#;
        let r = routed(ce).unwrap();
        assert_eq!(r.events[0].form, Form::CloudEvent);
        assert_eq!(r.events[0].payload["data"], json!({"x": 2}));

        let agg = routed(&format!(r#"[{{"invoke": "a"}}, {ce}]"#)).unwrap();
        assert!(agg.aggregate && !agg.ordered);
        assert_eq!(agg.events.len(), 2);
        let ordered =
            routed(r#"{"ordered": true, "events": [{"invoke": "a"}, {"invoke": "b"}]}"#).unwrap();
        assert!(ordered.ordered);
        assert_eq!(ordered.events[1].function, "b");
    }

    #[test]
    fn malformed_routed_messages_say_why() {
        let why = |b: &str| routed(b).unwrap_err();
        assert!(why("not json").contains("not JSON"));
        assert!(why("42").contains("JSON object"));
        assert!(why(r#"{"hello": 1}"#).contains("names no function"));
        assert!(why(r#"{"invoke": ""}"#).contains("non-empty"));
        assert!(why(r#"{"invoke": 7}"#).contains("non-empty"));
        assert!(why("[]").contains("no events"));
        assert!(why(r#"{"events": 1}"#).contains("list"));
        assert!(why(r#"{"events": [{"invoke": "a"}], "ordered": "yes"}"#).contains("ordered"));
        assert!(why(r#"[{"invoke": "a"}, {"x": 1}]"#).starts_with("event 1 of the aggregate"));
        let ce = r#"{"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}"#;
        assert!(why(ce).contains("emberfunction"));
        assert!(why(r#"{"specversion": "0.3", "emberfunction": "f"}"#).contains("specversion"));
        assert!(why(r#"{"specversion": "1.0", "emberfunction": "f"}"#).contains("\"id\""));
        let many = format!(
            "[{}]",
            vec![r#"{"invoke":"a"}"#; MAX_AGGREGATE + 1].join(",")
        );
        assert!(why(&many).contains("at most"));
    }

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
