//! Functions' resource-based policies (AddPermission / RemovePermission / GetPolicy): IAM
//! policy documents as Lambda builds them, and the one question Ember asks of them — may
//! this principal invoke the function?

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A function's policy with its revision (stored as [`crate::FunctionSetting::Policy`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPolicy {
    pub revision_id: String,
    /// `{"Version": "2012-10-17", "Id": "default", "Statement": [...]}`.
    pub document: Value,
}

impl StoredPolicy {
    pub fn new() -> StoredPolicy {
        StoredPolicy {
            revision_id: crate::model::new_revision_id(),
            document: json!({ "Version": "2012-10-17", "Id": "default", "Statement": [] }),
        }
    }

    pub fn statements(&self) -> &[Value] {
        self.document
            .get("Statement")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    pub fn statements_mut(&mut self) -> &mut Vec<Value> {
        if !self.document["Statement"].is_array() {
            self.document["Statement"] = json!([]);
        }
        match self.document.get_mut("Statement") {
            Some(Value::Array(a)) => a,
            _ => unreachable!("just made an array"),
        }
    }
}

impl Default for StoredPolicy {
    fn default() -> Self {
        StoredPolicy::new()
    }
}

/// Who asks to invoke: an account, or an Ember event source acting for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoker<'a> {
    /// The account the request or message comes from.
    pub account_id: &'a str,
    /// The service the request comes through (`sqs.amazonaws.com` for a queue's messages).
    pub service: Option<&'a str>,
    /// The resource the event comes from (a queue's ARN).
    pub source_arn: Option<&'a str>,
}

/// Whether any statement of `policy` allows `invoker` to call `lambda:InvokeFunction`.
pub fn allows_invoke(policy: &StoredPolicy, invoker: &Invoker<'_>) -> bool {
    policy.statements().iter().any(|s| allows(s, invoker))
}

fn allows(statement: &Value, invoker: &Invoker<'_>) -> bool {
    if statement.get("Effect").and_then(Value::as_str) != Some("Allow") {
        return false;
    }
    let action_ok = one_or_many(statement.get("Action"))
        .any(|a| matches!(a, "lambda:InvokeFunction" | "lambda:*" | "*"));
    if !action_ok || !principal_matches(statement.get("Principal"), invoker) {
        return false;
    }
    conditions_hold(statement.get("Condition"), invoker)
}

fn one_or_many(v: Option<&Value>) -> impl Iterator<Item = &str> {
    let items: Vec<&str> = match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    items.into_iter()
}

fn principal_matches(principal: Option<&Value>, invoker: &Invoker<'_>) -> bool {
    match principal {
        Some(Value::String(s)) => s == "*",
        Some(Value::Object(o)) => {
            let aws = one_or_many(o.get("AWS")).any(|p| {
                p == "*"
                    || p == invoker.account_id
                    || p == format!("arn:aws:iam::{}:root", invoker.account_id)
            });
            let service = invoker
                .service
                .is_some_and(|svc| one_or_many(o.get("Service")).any(|p| p == svc));
            aws || service
        }
        _ => false,
    }
}

fn conditions_hold(condition: Option<&Value>, invoker: &Invoker<'_>) -> bool {
    let Some(Value::Object(operators)) = condition else {
        return condition.is_none();
    };
    operators.iter().all(|(operator, tests)| {
        let Value::Object(tests) = tests else {
            return false;
        };
        tests.iter().all(|(key, expected)| {
            let actual = match key.to_ascii_lowercase().as_str() {
                "aws:sourcearn" => invoker.source_arn,
                "aws:sourceaccount" => Some(invoker.account_id),
                _ => None, // a condition Ember cannot evaluate never holds
            };
            let Some(actual) = actual else {
                return false;
            };
            one_or_many(Some(expected)).any(|e| match operator.as_str() {
                "ArnLike" | "StringLike" => glob(e, actual),
                "ArnEquals" | "StringEquals" => e == actual,
                _ => false,
            })
        })
    })
}

/// IAM's `*` (any run) and `?` (any one character) wildcards.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(statements: Value) -> StoredPolicy {
        StoredPolicy {
            revision_id: "r".into(),
            document: json!({ "Version": "2012-10-17", "Statement": statements }),
        }
    }

    const ACCOUNT: &str = "111111111111";
    const QUEUE: &str = "arn:aws:sqs:us-east-1:111111111111:jobs";

    fn by_account() -> Invoker<'static> {
        Invoker {
            account_id: ACCOUNT,
            service: None,
            source_arn: None,
        }
    }

    fn by_queue() -> Invoker<'static> {
        Invoker {
            account_id: ACCOUNT,
            service: Some("sqs.amazonaws.com"),
            source_arn: Some(QUEUE),
        }
    }

    #[test]
    fn account_principals() {
        let p = policy(json!([{ "Sid": "a", "Effect": "Allow",
            "Principal": { "AWS": format!("arn:aws:iam::{ACCOUNT}:root") },
            "Action": "lambda:InvokeFunction", "Resource": "f" }]));
        assert!(allows_invoke(&p, &by_account()));
        assert!(allows_invoke(&p, &by_queue()));
        let other = Invoker {
            account_id: "222222222222",
            ..by_account()
        };
        assert!(!allows_invoke(&p, &other));
        assert!(!allows_invoke(&StoredPolicy::new(), &by_account()));
    }

    #[test]
    fn actions_and_effects() {
        let p = |action: &str, effect: &str| {
            policy(json!([{ "Effect": effect, "Principal": "*", "Action": action }]))
        };
        assert!(allows_invoke(&p("lambda:*", "Allow"), &by_account()));
        assert!(allows_invoke(&p("*", "Allow"), &by_account()));
        assert!(!allows_invoke(
            &p("lambda:GetFunction", "Allow"),
            &by_account()
        ));
        assert!(!allows_invoke(
            &p("lambda:InvokeFunction", "Deny"),
            &by_account()
        ));
    }

    #[test]
    fn service_principals_with_source_conditions() {
        let p = |arn: &str| {
            policy(
                json!([{ "Effect": "Allow", "Principal": { "Service": "sqs.amazonaws.com" },
                "Action": "lambda:InvokeFunction",
                "Condition": { "ArnLike": { "AWS:SourceArn": arn } } }]),
            )
        };
        assert!(allows_invoke(&p(QUEUE), &by_queue()));
        assert!(allows_invoke(
            &p("arn:aws:sqs:*:111111111111:j*"),
            &by_queue()
        ));
        assert!(!allows_invoke(
            &p("arn:aws:sqs:*:111111111111:other"),
            &by_queue()
        ));
        // Not through the service: the service principal does not match.
        assert!(!allows_invoke(&p(QUEUE), &by_account()));
    }

    #[test]
    fn unknown_conditions_never_hold() {
        let p = policy(json!([{ "Effect": "Allow", "Principal": "*", "Action": "*",
            "Condition": { "StringEquals": { "aws:PrincipalOrgID": "o-1" } } }]));
        assert!(!allows_invoke(&p, &by_account()));
    }

    #[test]
    fn globs() {
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "abbc"));
        assert!(glob("*", ""));
        assert!(!glob("a", "ab"));
    }
}
