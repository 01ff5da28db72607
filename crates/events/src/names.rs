//! Function names as events give them.

/// The account and name of `arn:aws:lambda:<region>:<account>:function:<name>[:$LATEST]`.
pub(crate) fn function_of_arn(arn: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", "aws", "lambda", _, account, "function", name]
        | [
            "arn",
            "aws",
            "lambda",
            _,
            account,
            "function",
            name,
            "$LATEST",
        ] if !account.is_empty() && !name.is_empty() => {
            Some(((*account).to_owned(), (*name).to_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_arns() {
        let a = |s: &str| function_of_arn(s);
        assert_eq!(
            a("arn:aws:lambda:us-east-1:123456789012:function:f"),
            Some(("123456789012".into(), "f".into()))
        );
        assert_eq!(
            a("arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST"),
            Some(("123456789012".into(), "f".into()))
        );
        assert_eq!(
            a("arn:aws:lambda:us-east-1:123456789012:function:f:1"),
            None
        );
        assert_eq!(a("arn:aws:sqs:us-east-1:123456789012:q"), None);
        assert_eq!(a("f"), None);
    }
}
