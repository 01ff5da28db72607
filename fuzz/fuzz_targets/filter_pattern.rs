//! Feeds arbitrary text to the `FilterCriteria` pattern compiler (patterns come from API
//! callers), then matches what compiles against an SQS record whose body is the rest of
//! the input. Neither may panic, and a compiled pattern must agree with itself.
//! Input: `<pattern>\0<message body>` (no NUL: the whole input is the pattern).
#![no_main]

use ember_events::filter::{FilterCriteria, Pattern};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, body) = text.split_once('\0').unwrap_or((text, ""));
    let Ok(criteria) = FilterCriteria::compile(&[pattern]) else {
        assert!(Pattern::parse(pattern).is_err() || pattern.chars().count() > 4096);
        return;
    };
    let record = json!({
        "messageId": "m",
        "body": body,
        "attributes": {"SenderId": "123456789012"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "awsRegion": "us-east-1",
    });
    let first = criteria.matches_sqs(record.clone());
    assert_eq!(first, criteria.matches_sqs(record));
    if let Ok(event) = serde_json::from_str::<Value>(body) {
        let p = Pattern::parse(pattern).expect("compiled once, compiles again");
        assert_eq!(p.matches(&event), p.matches(&event));
    }
});
