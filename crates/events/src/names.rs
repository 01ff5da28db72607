//! Function names as events give them.

/// What `arn:aws:lambda:<region>:<account>:function:<name>[:$LATEST]` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FunctionArn {
    pub region: String,
    pub account_id: String,
    pub name: String,
}

/// The function an ARN names, if it is a function ARN (unqualified or `$LATEST`).
pub(crate) fn function_of_arn(arn: &str) -> Option<FunctionArn> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", "aws", "lambda", region, account, "function", name]
        | [
            "arn",
            "aws",
            "lambda",
            region,
            account,
            "function",
            name,
            "$LATEST",
        ] if !account.is_empty() && !name.is_empty() => Some(FunctionArn {
            region: (*region).to_owned(),
            account_id: (*account).to_owned(),
            name: (*name).to_owned(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_arns() {
        let f = |region: &str, account: &str, name: &str| {
            Some(FunctionArn {
                region: region.into(),
                account_id: account.into(),
                name: name.into(),
            })
        };
        assert_eq!(
            function_of_arn("arn:aws:lambda:us-east-1:123456789012:function:f"),
            f("us-east-1", "123456789012", "f")
        );
        assert_eq!(
            function_of_arn("arn:aws:lambda:eu-west-1:123456789012:function:f:$LATEST"),
            f("eu-west-1", "123456789012", "f")
        );
        assert_eq!(
            function_of_arn("arn:aws:lambda:us-east-1:123456789012:function:f:1"),
            None
        );
        assert_eq!(
            function_of_arn("arn:aws:sqs:us-east-1:123456789012:q"),
            None
        );
        assert_eq!(function_of_arn("f"), None);
    }
}
