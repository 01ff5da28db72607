//! Function names as the Lambda API accepts them: a plain name, a partial ARN
//! (`123456789012:function:name`) or a full ARN, each optionally with `:qualifier`.

use crate::ApiError;

/// A parsed `FunctionName` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub region: Option<String>,
    pub account_id: Option<String>,
    pub name: String,
    pub qualifier: Option<String>,
}

/// The longest `FunctionName` any operation accepts (a full ARN with a qualifier).
const MAX_REF_LEN: usize = 256;

/// Function names: 1–64 letters, digits, `-` and `_`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn valid_qualifier(q: &str) -> bool {
    (1..=128).contains(&q.len())
        && q.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'$'))
}

fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 32
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

pub fn valid_account_id(a: &str) -> bool {
    a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit())
}

impl FunctionRef {
    pub fn parse(input: &str) -> Result<FunctionRef, ApiError> {
        let invalid = || {
            ApiError::invalid_parameter(format!(
                "1 validation error detected: Value '{}' at 'functionName' failed to satisfy \
                 constraint: Member must be a function name (1-64 letters, digits, '-' or '_'), \
                 a partial ARN (123456789012:function:name) or a full ARN, optionally followed \
                 by ':qualifier', and at most {MAX_REF_LEN} characters",
                truncate_for_message(input)
            ))
        };
        if input.len() > MAX_REF_LEN {
            return Err(invalid());
        }
        let parts: Vec<&str> = input.split(':').collect();
        let (region, account_id, rest) = match parts.as_slice() {
            [
                "arn",
                partition,
                "lambda",
                region,
                account,
                "function",
                rest @ ..,
            ] if partition.starts_with("aws") && valid_region(region) => {
                (Some(*region), Some(*account), rest)
            }
            [account, "function", rest @ ..] => (None, Some(*account), rest),
            rest => (None, None, rest),
        };
        let (name, qualifier) = match rest {
            [name] => (*name, None),
            [name, qualifier] if valid_qualifier(qualifier) => (*name, Some(*qualifier)),
            _ => return Err(invalid()),
        };
        if !valid_name(name) || account_id.is_some_and(|a| !valid_account_id(a)) {
            return Err(invalid());
        }
        Ok(FunctionRef {
            region: region.map(str::to_owned),
            account_id: account_id.map(str::to_owned),
            name: name.to_owned(),
            qualifier: qualifier.map(str::to_owned),
        })
    }
}

/// User input echoed in a message, cut so a huge value cannot bloat the response.
pub fn truncate_for_message(s: &str) -> String {
    const MAX: usize = 300;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(region: Option<&str>, account: Option<&str>, name: &str, q: Option<&str>) -> FunctionRef {
        FunctionRef {
            region: region.map(Into::into),
            account_id: account.map(Into::into),
            name: name.into(),
            qualifier: q.map(Into::into),
        }
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(
            FunctionRef::parse("my-fn_1").unwrap(),
            r(None, None, "my-fn_1", None)
        );
        assert_eq!(
            FunctionRef::parse("my-fn:$LATEST").unwrap(),
            r(None, None, "my-fn", Some("$LATEST"))
        );
        assert_eq!(
            FunctionRef::parse("123456789012:function:f").unwrap(),
            r(None, Some("123456789012"), "f", None)
        );
        assert_eq!(
            FunctionRef::parse("arn:aws:lambda:us-east-1:123456789012:function:f:prod").unwrap(),
            r(Some("us-east-1"), Some("123456789012"), "f", Some("prod"))
        );
    }

    #[test]
    fn rejected_forms() {
        for bad in [
            "",
            "a b",
            "a/b",
            "a:b:c",
            &"x".repeat(65),
            &"x".repeat(300),
            "arn:aws:lambda:us-east-1:12345:function:f",
            "arn:aws:s3:us-east-1:123456789012:function:f",
            "12345678901a:function:f",
            "f:",
            "f:bad qualifier",
            "ü",
        ] {
            assert!(FunctionRef::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
