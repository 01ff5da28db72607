//! The MD5 digests SQS returns so clients can check what it stored
//! (`MD5OfMessageBody`, `MD5OfMessageAttributes`, `MD5OfMessageSystemAttributes`).
//!
//! SDKs that verify them (the Java and .NET SDKs, among others) recompute them with the
//! algorithm below and fail the call on a mismatch, so this must be bit-exact: for each
//! attribute in name order, the name, the data type and the value, each as a 4-byte
//! big-endian length followed by the bytes, with a one-byte transport type (1 for
//! string values, 2 for binary) before the value.

use md5::{Digest, Md5};

use crate::model::{AttributeValue, MessageAttribute, MessageAttributes};

/// Hex MD5 of the message body's UTF-8 bytes.
pub fn md5_of_body(body: &str) -> String {
    hex::encode(Md5::digest(body.as_bytes()))
}

/// Hex MD5 of a set of message attributes, or `None` when there are none (SQS then
/// leaves the field out).
pub fn md5_of_attributes<'a>(
    attributes: impl IntoIterator<Item = (&'a String, &'a MessageAttribute)>,
) -> Option<String> {
    let mut sorted: Vec<_> = attributes.into_iter().collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut md5 = Md5::new();
    for (name, attribute) in sorted {
        length_prefixed(&mut md5, name.as_bytes());
        length_prefixed(&mut md5, attribute.data_type.as_bytes());
        match &attribute.value {
            AttributeValue::String(s) => {
                md5.update([1u8]);
                length_prefixed(&mut md5, s.as_bytes());
            }
            AttributeValue::Binary(b) => {
                md5.update([2u8]);
                length_prefixed(&mut md5, b);
            }
        }
    }
    Some(hex::encode(md5.finalize()))
}

/// Hex MD5 of the message system attributes a sender set (only `AWSTraceHeader` exists).
pub fn md5_of_trace_header(trace_header: &str) -> String {
    let attributes: MessageAttributes = [(
        "AWSTraceHeader".to_owned(),
        MessageAttribute::string("String", trace_header),
    )]
    .into();
    md5_of_attributes(&attributes).unwrap_or_default()
}

fn length_prefixed(md5: &mut Md5, bytes: &[u8]) {
    md5.update((bytes.len() as u32).to_be_bytes());
    md5.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    // Digests recorded from real SQS responses.
    #[test]
    fn matches_sqs() {
        assert_eq!(md5_of_body("msg"), "6e2baaf3b97dbeef01c0043275f9a0e7");
        assert_eq!(md5_of_body("foobar"), "3858f62230ac3c915f300c664312c63f");
        let one = |name: &str, value: &str| -> MessageAttributes {
            [(name.to_owned(), MessageAttribute::string("String", value))].into()
        };
        assert_eq!(
            md5_of_attributes(&one("Foo", "Bar")).as_deref(),
            Some("ae7155c6026991b6d54b11589678bf9c")
        );
        assert_eq!(
            md5_of_attributes(&one("MyAttribute", "foobar")).as_deref(),
            Some("adb59cd4678ea5a855436b949cd07ab6")
        );
        assert_eq!(md5_of_attributes(&MessageAttributes::new()), None);
    }

    #[test]
    fn order_and_binary_matter() {
        let mut a = MessageAttributes::new();
        a.insert("b".into(), MessageAttribute::string("Number", "1"));
        a.insert(
            "a".into(),
            MessageAttribute::binary("Binary", vec![0, 1, 2]),
        );
        let listed_backwards = [
            ("b".to_string(), a["b"].clone()),
            ("a".to_string(), a["a"].clone()),
        ];
        let backwards: Vec<_> = listed_backwards.iter().map(|(k, v)| (k, v)).collect();
        assert_eq!(md5_of_attributes(&a), md5_of_attributes(backwards));
        let mut as_string = a.clone();
        as_string.insert(
            "a".into(),
            MessageAttribute::string("Binary", "\0\u{1}\u{2}"),
        );
        assert_ne!(md5_of_attributes(&a), md5_of_attributes(&as_string));
    }
}
