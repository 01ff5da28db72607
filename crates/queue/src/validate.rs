//! SQS's rules for names, bodies, attributes and ids, with SQS's error messages.
//!
//! Every producer (the SQS API, asynchronous Invoke, destinations) goes through
//! [`NewMessage::validate`], so a message in a queue always satisfies these rules and
//! consumers never see something SQS would have refused.

use crate::error::{QueueError, Result};
use crate::model::{AttributeValue, MessageAttributes, NewMessage};
use crate::settings::QueueSettings;

/// Most message attributes one message may carry.
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;
/// Longest delay, per message or per queue.
pub const MAX_DELAY_SECONDS: u32 = 900;

/// Queue names: 1–80 characters of letters, digits, `-` and `_`; a FIFO queue's name
/// ends in `.fifo`, which counts towards the 80.
pub fn queue_name(name: &str, fifo: bool) -> Result<()> {
    let base = if fifo {
        name.strip_suffix(".fifo")
    } else {
        Some(name)
    };
    let ok = name.len() <= 80
        && base.is_some_and(|b| {
            !b.is_empty()
                && b.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        });
    if ok {
        Ok(())
    } else if fifo {
        Err(QueueError::InvalidParameterValue(
            "The name of a FIFO queue can only include alphanumeric characters, hyphens, or \
             underscores, must end with .fifo suffix and be 1 to 80 in length."
                .into(),
        ))
    } else {
        Err(QueueError::InvalidParameterValue(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
                .into(),
        ))
    }
}

/// Whether SQS accepts `c` in a body or string attribute value (the XML 1.0 character
/// set: `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`).
pub fn allowed_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn invalid_characters() -> QueueError {
    QueueError::InvalidMessageContents(
        "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to \
         #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"
            .into(),
    )
}

/// The body: present, non-empty, and only allowed characters.
pub fn body(body: &str) -> Result<()> {
    if body.is_empty() {
        return Err(QueueError::missing("MessageBody"));
    }
    if !body.chars().all(allowed_char) {
        return Err(invalid_characters());
    }
    Ok(())
}

/// Attribute names: up to 256 characters of letters, digits, `_`, `-` and `.`; no
/// leading or trailing `.`, no `..`, and not starting with `AWS.` or `Amazon.`.
fn attribute_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 256 {
        return Err(QueueError::InvalidParameterValue(
            "Message (user) attribute names must be 1 to 256 characters long.".into(),
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(QueueError::InvalidParameterValue(format!(
            "Message (user) attribute name '{name}' can only contain upper and lower case \
             characters, digits, periods, hyphens and underscores."
        )));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("aws.")
        || lower.starts_with("amazon.")
        || name.starts_with('.')
        || name.ends_with('.')
        || name.contains("..")
    {
        return Err(QueueError::InvalidParameterValue(format!(
            "Message (user) attribute name '{name}' is reserved or malformed: names can't \
             start with 'AWS.' or 'Amazon.', start or end with '.', or contain '..'."
        )));
    }
    Ok(())
}

/// Whether `s` is a number SQS accepts for a `Number` attribute: decimal, optionally
/// signed, with an optional exponent, at most 38 significant digits, within ±10^126.
fn is_sqs_number(s: &str) -> bool {
    let s = s.trim();
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return false;
    }
    let exp: i64 = match exponent {
        None => 0,
        Some(e) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return false;
            }
            match e.parse() {
                Ok(v) => v,
                Err(_) => return false,
            }
        }
    };
    let digits: String = format!("{int}{frac}");
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return true; // zero
    }
    if significant.trim_end_matches('0').len() > 38 {
        return false;
    }
    // Magnitude: the position of the leading significant digit, as a power of ten.
    let leading = int.trim_start_matches('0').len() as i64 - 1;
    let magnitude = if leading >= 0 {
        leading
    } else {
        -((frac.len() - frac.trim_start_matches('0').len()) as i64) - 1
    } + exp;
    (-128..=126).contains(&magnitude)
}

/// Message attributes: at most 10, each well named, typed and valued.
pub fn attributes(attributes: &MessageAttributes) -> Result<()> {
    if attributes.len() > MAX_MESSAGE_ATTRIBUTES {
        return Err(QueueError::InvalidParameterValue(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MAX_MESSAGE_ATTRIBUTES}].",
            attributes.len()
        )));
    }
    for (name, attribute) in attributes {
        attribute_name(name)?;
        let data_type = attribute.data_type.as_str();
        let base = data_type.split_once('.').map_or(data_type, |(b, _)| b);
        if data_type.is_empty() {
            return Err(QueueError::InvalidParameterValue(format!(
                "The message attribute '{name}' must contain a non-empty message attribute type."
            )));
        }
        if data_type.len() > 256 || !matches!(base, "String" | "Number" | "Binary") {
            return Err(QueueError::InvalidParameterValue(format!(
                "The type of message (user) attribute '{name}' is invalid. You must use only \
                 the following supported type prefixes: Binary, Number, String."
            )));
        }
        match (&attribute.value, base) {
            (AttributeValue::String(s), "String" | "Number") if s.is_empty() => {
                return Err(QueueError::InvalidParameterValue(format!(
                    "Message (user) attribute '{name}' must contain a non-empty value of type '{base}'."
                )));
            }
            (AttributeValue::String(s), "String") => {
                if !s.chars().all(allowed_char) {
                    return Err(QueueError::InvalidParameterValue(format!(
                        "Message (user) attribute '{name}' contains characters that are not \
                         allowed: valid unicode characters are #x9 | #xA | #xD | #x20 to \
                         #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"
                    )));
                }
            }
            (AttributeValue::String(s), "Number") => {
                if !is_sqs_number(s) {
                    return Err(QueueError::InvalidParameterValue(format!(
                        "Can't cast the value of message (user) attribute '{name}' to a number."
                    )));
                }
            }
            (AttributeValue::Binary(b), "Binary") if b.is_empty() => {
                return Err(QueueError::InvalidParameterValue(format!(
                    "Message (user) attribute '{name}' must contain a non-empty value of type 'Binary'."
                )));
            }
            (AttributeValue::Binary(_), "Binary") => {}
            (_, base) => {
                return Err(QueueError::InvalidParameterValue(format!(
                    "Message (user) attribute '{name}' must contain a non-empty value of type '{base}'."
                )));
            }
        }
    }
    Ok(())
}

/// Group and deduplication ids: 1–128 printable ASCII characters (letters, digits and
/// punctuation).
fn fifo_id(value: &str, parameter: &str) -> Result<()> {
    if (1..=128).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(QueueError::invalid_value(
            value,
            parameter,
            &format!(
                "{parameter} can only include alphanumeric and punctuation characters. 1 to 128 in length."
            ),
        ))
    }
}

/// The X-Ray trace header: printable ASCII, at most 8 KB.
fn trace_header(value: &str) -> Result<()> {
    if !value.is_empty() && value.len() <= 8192 && value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(QueueError::InvalidParameterValue(
            "Message system attribute 'AWSTraceHeader' must be a well-formed X-Ray trace header."
                .into(),
        ))
    }
}

/// Bytes a message counts towards `MaximumMessageSize`: the body and every attribute's
/// name, type and value (system attributes do not count).
pub fn message_size(message: &NewMessage) -> usize {
    message.body.len()
        + message
            .attributes
            .iter()
            .map(|(name, a)| a.size(name))
            .sum::<usize>()
}

impl NewMessage {
    /// Check the message against SQS's rules and the queue it is for.
    pub fn validate(&self, settings: &QueueSettings) -> Result<()> {
        body(&self.body)?;
        attributes(&self.attributes)?;
        if let Some(t) = &self.trace_header {
            trace_header(t)?;
        }
        let size = message_size(self);
        if size > settings.maximum_message_size as usize {
            return Err(QueueError::InvalidParameterValue(format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {} bytes.",
                settings.maximum_message_size
            )));
        }
        if let Some(delay) = self.delay_seconds {
            if delay > MAX_DELAY_SECONDS {
                return Err(QueueError::invalid_value(
                    delay,
                    "DelaySeconds",
                    "DelaySeconds must be >= 0 and <= 900.",
                ));
            }
            if settings.fifo && delay != 0 {
                return Err(QueueError::invalid_value(
                    delay,
                    "DelaySeconds",
                    "The request include parameter that is not valid for this queue type.",
                ));
            }
        }
        if let Some(group) = &self.group_id {
            fifo_id(group, "MessageGroupId")?;
        }
        if let Some(dedup) = &self.deduplication_id {
            if !settings.fifo {
                return Err(QueueError::invalid_value(
                    dedup,
                    "MessageDeduplicationId",
                    "The request include parameter that is not valid for this queue type.",
                ));
            }
            fifo_id(dedup, "MessageDeduplicationId")?;
        }
        if settings.fifo {
            if self.group_id.is_none() {
                return Err(QueueError::missing("MessageGroupId"));
            }
            if self.deduplication_id.is_none() && !settings.content_based_deduplication {
                return Err(QueueError::InvalidParameterValue(
                    "The queue should either have ContentBasedDeduplication enabled or \
                     MessageDeduplicationId provided explicitly"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageAttribute;

    #[test]
    fn names() {
        assert!(queue_name("a-b_C9", false).is_ok());
        assert!(queue_name(&"a".repeat(80), false).is_ok());
        assert!(queue_name(&"a".repeat(81), false).is_err());
        assert!(queue_name("", false).is_err());
        assert!(queue_name("a.fifo", false).is_err());
        assert!(queue_name("a.fifo", true).is_ok());
        assert!(queue_name(".fifo", true).is_err());
        assert!(queue_name("a", true).is_err());
        assert!(queue_name(&format!("{}.fifo", "a".repeat(75)), true).is_ok());
        assert!(queue_name(&format!("{}.fifo", "a".repeat(76)), true).is_err());
    }

    #[test]
    fn bodies() {
        assert!(body("hello\t\n\r ✓ 😀").is_ok());
        assert_eq!(body("").unwrap_err().code(), "MissingParameter");
        for bad in ["\u{0}", "a\u{8}b", "\u{FFFE}", "\u{FFFF}", "\u{1F}"] {
            assert_eq!(
                body(bad).unwrap_err().code(),
                "InvalidMessageContents",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn numbers() {
        for ok in [
            "0", "-1", "+1.5", "1e10", "1.5E-3", ".5", "5.", "000123", "1e126", "9e-128",
        ] {
            assert!(is_sqs_number(ok), "{ok}");
        }
        for bad in [
            "",
            "-",
            "abc",
            "1e",
            "1e+",
            "1..2",
            "0x10",
            "1e127",
            "1e-129",
            "123456789012345678901234567890123456789",
            "NaN",
            "inf",
        ] {
            assert!(!is_sqs_number(bad), "{bad}");
        }
    }

    #[test]
    fn attribute_rules() {
        let one = |name: &str, a: MessageAttribute| -> MessageAttributes {
            [(name.to_owned(), a)].into()
        };
        assert!(
            attributes(&one(
                "a.b-c_d",
                MessageAttribute::string("Number.int", "42")
            ))
            .is_ok()
        );
        assert!(attributes(&one("bin", MessageAttribute::binary("Binary.gif", vec![1]))).is_ok());
        for (name, a) in [
            ("AWS.x", MessageAttribute::string("String", "v")),
            ("amazon.x", MessageAttribute::string("String", "v")),
            (".x", MessageAttribute::string("String", "v")),
            ("x.", MessageAttribute::string("String", "v")),
            ("a..b", MessageAttribute::string("String", "v")),
            ("sp ace", MessageAttribute::string("String", "v")),
            ("x", MessageAttribute::string("Strin", "v")),
            ("x", MessageAttribute::string("", "v")),
            ("x", MessageAttribute::string("String", "")),
            ("x", MessageAttribute::string("Number", "x")),
            ("x", MessageAttribute::string("Binary", "x")),
            ("x", MessageAttribute::binary("String", vec![1])),
            ("x", MessageAttribute::binary("Binary", vec![])),
            ("x", MessageAttribute::string("String", "\u{0}")),
        ] {
            assert!(attributes(&one(name, a.clone())).is_err(), "{name} {a:?}");
        }
        let many: MessageAttributes = (0..11)
            .map(|i| (format!("a{i}"), MessageAttribute::string("String", "v")))
            .collect();
        assert!(attributes(&many).is_err());
    }

    #[test]
    fn fifo_rules() {
        let fifo = QueueSettings::defaults(true);
        let standard = QueueSettings::defaults(false);
        let msg = |group: Option<&str>, dedup: Option<&str>, delay: Option<u32>| NewMessage {
            body: "b".into(),
            group_id: group.map(Into::into),
            deduplication_id: dedup.map(Into::into),
            delay_seconds: delay,
            ..Default::default()
        };
        assert!(msg(Some("g"), Some("d"), Some(0)).validate(&fifo).is_ok());
        assert_eq!(
            msg(None, Some("d"), None)
                .validate(&fifo)
                .unwrap_err()
                .code(),
            "MissingParameter"
        );
        assert!(msg(Some("g"), None, None).validate(&fifo).is_err());
        assert!(msg(Some("g"), Some("d"), Some(2)).validate(&fifo).is_err());
        assert!(msg(Some("g 1"), Some("d"), None).validate(&fifo).is_err());
        assert!(msg(Some("g"), None, None).validate(&standard).is_ok());
        assert!(msg(None, Some("d"), None).validate(&standard).is_err());
        assert!(msg(None, None, Some(901)).validate(&standard).is_err());
        let mut small = standard.clone();
        small.maximum_message_size = 1024;
        let big = NewMessage {
            body: "x".repeat(1020),
            attributes: [("abc".to_owned(), MessageAttribute::string("String", "z"))].into(),
            ..Default::default()
        };
        // 1020 + 3 + 6 + 1 = 1030 bytes.
        assert!(big.validate(&small).is_err());
        assert!(big.validate(&standard).is_ok());
    }
}
