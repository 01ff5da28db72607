//! Event filtering (`FilterCriteria`): which received messages reach the function.
//!
//! A mapping has up to [`MAX_FILTERS`] patterns, each parsed once ([`Pattern::parse`])
//! into a matcher. A message reaches the function when it matches any of them; a message
//! that matches none is deleted from the queue without an invocation, as Lambda does for
//! SQS ([`BatchFilter`]). Patterns come from callers, so parsing never panics on any
//! input (`fuzz/fuzz_targets/filter_pattern.rs`).
//!
//! The syntax and its meaning are those Lambda documents (EventBridge's patterns, as
//! AWS's event-ruler compiles them):
//!
//! - A pattern is a non-empty object whose keys name fields of the record; a nested
//!   object follows nested fields; a leaf is a non-empty list of rules, any of which may
//!   match. All fields of an object must match. `"$or": [{..}, {..}, ..]` (at least two
//!   objects) matches when any of its objects matches at that level.
//! - Rules look at leaf values only: an object is not a leaf, and an array in the event
//!   stands for its elements (a nested pattern must match one element as a whole).
//! - Exact values: a string matches that string, a number any numerically equal number,
//!   `true`/`false`/`null` themselves. `prefix`, `suffix` (each also with
//!   `{"equals-ignore-case": ..}`), `equals-ignore-case` and `wildcard` (`*`, with `\*`
//!   and `\\` escapes) match strings; `numeric` (`=`, or `>`/`>=` and/or `<`/`<=`)
//!   matches numbers. `anything-but` (a value, a list of strings or of numbers, or
//!   `prefix`/`suffix`/`equals-ignore-case`/`wildcard`) matches any leaf value its operand
//!   does not. `exists` tells whether the field has a leaf value at all.
//! - SQS: the record is the one the function would get ([`crate::convert`]). When the
//!   message body is a JSON object or array, `body` must be an object pattern, and it
//!   filters on the body's fields; otherwise `body` must be a list of rules matched
//!   against the whole body as a string. When the two disagree the pattern does not
//!   match (Lambda drops such messages).

use std::collections::HashSet;
use std::fmt;

use ember_queue::{QueueRef, ReceivedMessage};
use ember_store::EventSourceMapping;
use serde_json::{Map, Number, Value};

use crate::{Shared, convert};

/// Filters per mapping (Lambda's default quota).
pub const MAX_FILTERS: usize = 5;
/// The longest pattern, in characters (botocore's `Pattern` shape).
pub const MAX_PATTERN_LENGTH: usize = 4096;

const OR: &str = "$or";
/// Names event-ruler keeps for operators: not field names inside `$or`.
const RESERVED_IN_OR: &[&str] = &[
    "exactly",
    "equals-ignore-case",
    "prefix",
    "suffix",
    "anything-but",
    "exists",
    "wildcard",
    "numeric",
    "cidr",
    "=",
    "<",
    "<=",
    ">",
    ">=",
];

/// Why a pattern is not a valid filter pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatternError(String);

fn bad<T>(why: impl Into<String>) -> Result<T, PatternError> {
    Err(PatternError(why.into()))
}

/// Why a `FilterCriteria` cannot be accepted, worded as Lambda's API errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CriteriaError {
    #[error(
        "The number of filters ({count}) exceeds the limit of {MAX_FILTERS} filters per event \
         source mapping"
    )]
    TooMany { count: usize },
    #[error(
        "1 validation error detected: Value at 'filterCriteria.filters.{index}.member.pattern' \
         failed to satisfy constraint: Member must have length less than or equal to \
         {MAX_PATTERN_LENGTH} (it has {length})"
    )]
    TooLong { index: usize, length: usize },
    #[error("Invalid filter pattern definition (filter {index}): {reason}")]
    Invalid { index: usize, reason: PatternError },
}

/// A mapping's compiled filters: a record passes when it matches any of them.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterCriteria {
    patterns: Vec<Pattern>,
}

impl FilterCriteria {
    /// Check and compile a mapping's patterns (1-based `index` in errors, as Lambda).
    pub fn compile<S: AsRef<str>>(patterns: &[S]) -> Result<FilterCriteria, CriteriaError> {
        if patterns.len() > MAX_FILTERS {
            return Err(CriteriaError::TooMany {
                count: patterns.len(),
            });
        }
        let mut compiled = Vec::with_capacity(patterns.len());
        for (i, p) in patterns.iter().enumerate() {
            let p = p.as_ref();
            let length = p.chars().count();
            if length > MAX_PATTERN_LENGTH {
                return Err(CriteriaError::TooLong {
                    index: i + 1,
                    length,
                });
            }
            compiled.push(Pattern::parse(p).map_err(|reason| CriteriaError::Invalid {
                index: i + 1,
                reason,
            })?);
        }
        Ok(FilterCriteria { patterns: compiled })
    }

    /// No filters: every record passes.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Does Lambda's SQS `record` (as [`convert`] builds it) pass?
    pub fn matches_sqs(&self, mut record: Value) -> bool {
        if self.is_empty() {
            return true;
        }
        // The body is parsed once for every pattern: a JSON object or array is filtered
        // on its fields, anything else as the plain string it is.
        if let Some(body) = record.get_mut("body")
            && let Value::String(text) = body
            && let Ok(parsed @ (Value::Object(_) | Value::Array(_))) =
                serde_json::from_str::<Value>(text)
        {
            *body = parsed;
        }
        let fields = record.as_object();
        self.patterns
            .iter()
            .any(|p| p.root.matches(fields, Level::SqsRecord))
    }
}

/// One compiled filter pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    root: Fields,
}

impl Pattern {
    /// Parse and check one pattern (the JSON text of `Filters[].Pattern`).
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| PatternError(format!("the pattern is not valid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return bad("Filter is not an object");
        };
        Ok(Pattern {
            root: Fields::parse(&map, false)?,
        })
    }

    /// Does `event` (any JSON document) match? SQS records go through
    /// [`FilterCriteria::matches_sqs`], which also applies the rules for `body`.
    pub fn matches(&self, event: &Value) -> bool {
        self.root.matches(event.as_object(), Level::Nested)
    }
}

/// The fields of one object of a pattern (all must match).
#[derive(Debug, Clone, PartialEq)]
struct Fields {
    fields: Vec<(String, Node)>,
    /// Each `$or`: one of the alternatives must match, at this same level.
    any_of: Vec<Vec<Fields>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Nested(Fields),
    Rules(Vec<Rule>),
}

/// Where an object of a pattern is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// The top of an SQS record, where `body` must fit the message body's kind.
    SqsRecord,
    Nested,
}

impl Fields {
    fn parse(map: &Map<String, Value>, in_or: bool) -> Result<Fields, PatternError> {
        if map.is_empty() {
            return bad("Empty objects are not allowed");
        }
        let mut fields = Vec::new();
        let mut any_of = Vec::new();
        for (name, value) in map {
            if name == OR {
                let Value::Array(items) = value else {
                    return bad("\"$or\" must be an array of objects");
                };
                if items.len() < 2 {
                    return bad("\"$or\" needs at least two objects");
                }
                let mut alternatives = Vec::with_capacity(items.len());
                for item in items {
                    let Value::Object(m) = item else {
                        return bad("Only objects are allowed in the array of \"$or\"");
                    };
                    alternatives.push(Fields::parse(m, true)?);
                }
                any_of.push(alternatives);
                continue;
            }
            if in_or && RESERVED_IN_OR.contains(&name.as_str()) {
                return bad(format!(
                    "\"{name}\" is a reserved name and cannot be a field inside \"$or\""
                ));
            }
            let node = match value {
                Value::Object(m) => Node::Nested(Fields::parse(m, in_or)?),
                Value::Array(rules) => Node::Rules(parse_rules(rules)?),
                _ => return bad(format!("\"{name}\" must be an object or an array")),
            };
            fields.push((name.clone(), node));
        }
        Ok(Fields { fields, any_of })
    }

    fn matches(&self, object: Option<&Map<String, Value>>, level: Level) -> bool {
        self.fields.iter().all(|(name, node)| {
            let value = object.and_then(|o| o.get(name));
            if level == Level::SqsRecord && name == "body" {
                let json_body = matches!(value, Some(Value::Object(_) | Value::Array(_)));
                if json_body != matches!(node, Node::Nested(_)) {
                    return false;
                }
            }
            node.matches(value)
        }) && self
            .any_of
            .iter()
            .all(|alternatives| alternatives.iter().any(|f| f.matches(object, level)))
    }
}

impl Node {
    fn matches(&self, value: Option<&Value>) -> bool {
        match self {
            Node::Nested(fields) => {
                let mut objects = Vec::new();
                collect_objects(value, &mut objects);
                if objects.is_empty() {
                    // Nothing to descend into: only absence rules can match.
                    fields.matches(None, Level::Nested)
                } else {
                    objects
                        .iter()
                        .any(|o| fields.matches(Some(o), Level::Nested))
                }
            }
            Node::Rules(rules) => {
                let mut leaves = Vec::new();
                collect_leaves(value, &mut leaves);
                rules.iter().any(|r| r.matches(&leaves))
            }
        }
    }
}

fn collect_objects<'a>(value: Option<&'a Value>, out: &mut Vec<&'a Map<String, Value>>) {
    match value {
        Some(Value::Object(o)) => out.push(o),
        Some(Value::Array(items)) => items.iter().for_each(|v| collect_objects(Some(v), out)),
        _ => {}
    }
}

fn collect_leaves<'a>(value: Option<&'a Value>, out: &mut Vec<&'a Value>) {
    match value {
        None | Some(Value::Object(_)) => {}
        Some(Value::Array(items)) => items.iter().for_each(|v| collect_leaves(Some(v), out)),
        Some(leaf) => out.push(leaf),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Rule {
    /// A string, number, boolean or null.
    Exact(Value),
    Prefix(Affix),
    Suffix(Affix),
    /// Lowercased.
    EqualsIgnoreCase(String),
    Wildcard(Wildcard),
    Numeric(Vec<(Comparison, f64)>),
    AnythingBut(Negated),
    Exists(bool),
}

#[derive(Debug, Clone, PartialEq)]
struct Affix {
    /// Lowercased when `ignore_case`.
    text: String,
    ignore_case: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

/// What `anything-but` excludes.
#[derive(Debug, Clone, PartialEq)]
enum Negated {
    /// All strings or all numbers.
    Values(Vec<Value>),
    Prefix(String),
    Suffix(String),
    /// Lowercased.
    IgnoreCase(HashSet<String>),
    Wildcard(Wildcard),
}

fn parse_rules(rules: &[Value]) -> Result<Vec<Rule>, PatternError> {
    if rules.is_empty() {
        return bad("Empty arrays are not allowed");
    }
    rules
        .iter()
        .map(|r| match r {
            Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => {
                Ok(Rule::Exact(r.clone()))
            }
            Value::Object(op) => parse_operator(op),
            Value::Array(_) => bad("Match value must be a string, number, true, false, or null"),
        })
        .collect()
}

/// The single `name: operand` of a `{ .. }` rule.
fn single(op: &Map<String, Value>) -> Result<(&str, &Value), PatternError> {
    let mut entries = op.iter();
    match (entries.next(), entries.next()) {
        (Some((name, operand)), None) => Ok((name.as_str(), operand)),
        (None, _) => bad("Match expression name not found"),
        (Some(_), Some(_)) => bad("Only one key allowed in match expression"),
    }
}

fn parse_operator(op: &Map<String, Value>) -> Result<Rule, PatternError> {
    let (name, operand) = single(op)?;
    match name {
        "prefix" => Ok(Rule::Prefix(parse_affix(name, operand)?)),
        "suffix" => Ok(Rule::Suffix(parse_affix(name, operand)?)),
        "equals-ignore-case" => match operand {
            Value::String(s) => Ok(Rule::EqualsIgnoreCase(s.to_lowercase())),
            _ => bad("equals-ignore-case match pattern must be a string"),
        },
        "wildcard" => match operand {
            Value::String(s) => Ok(Rule::Wildcard(Wildcard::parse(s)?)),
            _ => bad("wildcard match pattern must be a string"),
        },
        "numeric" => match operand {
            Value::Array(terms) => Ok(Rule::Numeric(parse_numeric(terms)?)),
            _ => bad("Value of numeric must be an array"),
        },
        "anything-but" => Ok(Rule::AnythingBut(parse_anything_but(operand)?)),
        "exists" => match operand {
            Value::Bool(b) => Ok(Rule::Exists(*b)),
            _ => bad("exists match pattern must be either true or false"),
        },
        other => bad(format!("Unrecognized match type {other}")),
    }
}

fn parse_affix(name: &str, operand: &Value) -> Result<Affix, PatternError> {
    match operand {
        Value::String(s) => Ok(Affix {
            text: s.clone(),
            ignore_case: false,
        }),
        Value::Object(inner) => match single(inner)? {
            ("equals-ignore-case", Value::String(s)) => Ok(Affix {
                text: s.to_lowercase(),
                ignore_case: true,
            }),
            _ => bad(format!(
                "{name} match pattern must be a string or {{\"equals-ignore-case\": string}}"
            )),
        },
        _ => bad(format!("{name} match pattern must be a string")),
    }
}

fn comparison(term: &Value) -> Result<Comparison, PatternError> {
    match term.as_str() {
        Some("=") => Ok(Comparison::Eq),
        Some("<") => Ok(Comparison::Lt),
        Some("<=") => Ok(Comparison::Le),
        Some(">") => Ok(Comparison::Gt),
        Some(">=") => Ok(Comparison::Ge),
        _ => bad(format!("Unrecognized numeric range operator: {term}")),
    }
}

fn number(op: Comparison, term: Option<&Value>) -> Result<f64, PatternError> {
    match term.and_then(Value::as_f64) {
        Some(n) if n.is_finite() => Ok(n),
        _ => bad(format!("Value of {op} must be numeric")),
    }
}

/// `["=", n]`, `["<" | "<=", n]`, or `[">" | ">=", n]` optionally followed by
/// `"<" | "<=", m` with `n < m`.
fn parse_numeric(terms: &[Value]) -> Result<Vec<(Comparison, f64)>, PatternError> {
    let Some(first) = terms.first() else {
        return bad("Value of numeric must not be empty");
    };
    let op = comparison(first)?;
    let n = number(op, terms.get(1))?;
    let lower = matches!(op, Comparison::Gt | Comparison::Ge);
    match terms.len() {
        2 => Ok(vec![(op, n)]),
        4 if lower => {
            let upper = comparison(&terms[2])?;
            if !matches!(upper, Comparison::Lt | Comparison::Le) {
                return bad(format!("Bad numeric range operator: {upper}"));
            }
            let m = number(upper, terms.get(3))?;
            if n >= m {
                return bad("Bottom must be less than top in a numeric range");
            }
            Ok(vec![(op, n), (upper, m)])
        }
        _ => bad("Too many elements in numeric expression"),
    }
}

fn parse_anything_but(operand: &Value) -> Result<Negated, PatternError> {
    match operand {
        Value::String(_) | Value::Number(_) => Ok(Negated::Values(vec![operand.clone()])),
        Value::Array(values) => {
            let strings = values.iter().all(Value::is_string);
            let numbers = values.iter().all(Value::is_number);
            if values.is_empty() || !(strings || numbers) {
                return bad(
                    "Inside anything-but list, all values must be strings or all must be numbers",
                );
            }
            Ok(Negated::Values(values.clone()))
        }
        Value::Object(inner) => match single(inner)? {
            ("prefix" | "suffix", Value::String(s)) if s.is_empty() => {
                bad("Null prefix/suffix not allowed")
            }
            ("prefix", Value::String(s)) => Ok(Negated::Prefix(s.clone())),
            ("suffix", Value::String(s)) => Ok(Negated::Suffix(s.clone())),
            ("prefix" | "suffix", _) => bad("prefix/suffix match pattern must be a string"),
            ("equals-ignore-case", Value::String(s)) => {
                Ok(Negated::IgnoreCase(HashSet::from([s.to_lowercase()])))
            }
            ("equals-ignore-case", Value::Array(values))
                if !values.is_empty() && values.iter().all(Value::is_string) =>
            {
                Ok(Negated::IgnoreCase(
                    values
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_lowercase)
                        .collect(),
                ))
            }
            ("equals-ignore-case", _) => bad(
                "Inside anything-but/equals-ignore-case, only a string or a list of strings is \
                 supported",
            ),
            ("wildcard", Value::String(s)) => Ok(Negated::Wildcard(Wildcard::parse(s)?)),
            ("wildcard", _) => bad("wildcard match pattern must be a string"),
            (other, _) => bad(format!("Unsupported anything-but pattern: {other}")),
        },
        _ => bad("Value of anything-but must be an array or single string/number value"),
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Comparison::Eq => "=",
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
        })
    }
}

impl Rule {
    fn matches(&self, leaves: &[&Value]) -> bool {
        match self {
            Rule::Exists(present) => leaves.is_empty() != *present,
            _ => leaves.iter().any(|v| self.matches_value(v)),
        }
    }

    fn matches_value(&self, v: &Value) -> bool {
        match self {
            Rule::Exact(want) => same_value(want, v),
            Rule::Prefix(a) => v.as_str().is_some_and(|s| a.fold(s).starts_with(&a.text)),
            Rule::Suffix(a) => v.as_str().is_some_and(|s| a.fold(s).ends_with(&a.text)),
            Rule::EqualsIgnoreCase(want) => v.as_str().is_some_and(|s| s.to_lowercase() == *want),
            Rule::Wildcard(w) => v.as_str().is_some_and(|s| w.matches(s)),
            Rule::Numeric(bounds) => v.as_f64().is_some_and(|n| {
                bounds.iter().all(|(op, bound)| match op {
                    Comparison::Eq => n == *bound,
                    Comparison::Lt => n < *bound,
                    Comparison::Le => n <= *bound,
                    Comparison::Gt => n > *bound,
                    Comparison::Ge => n >= *bound,
                })
            }),
            Rule::AnythingBut(negated) => !negated.matches_value(v),
            Rule::Exists(_) => true,
        }
    }
}

impl Affix {
    fn fold<'a>(&self, s: &'a str) -> std::borrow::Cow<'a, str> {
        if self.ignore_case {
            s.to_lowercase().into()
        } else {
            s.into()
        }
    }
}

impl Negated {
    fn matches_value(&self, v: &Value) -> bool {
        match self {
            Negated::Values(values) => values.iter().any(|want| same_value(want, v)),
            Negated::Prefix(p) => v.as_str().is_some_and(|s| s.starts_with(p.as_str())),
            Negated::Suffix(p) => v.as_str().is_some_and(|s| s.ends_with(p.as_str())),
            Negated::IgnoreCase(set) => v.as_str().is_some_and(|s| set.contains(&s.to_lowercase())),
            Negated::Wildcard(w) => v.as_str().is_some_and(|s| w.matches(s)),
        }
    }
}

/// Exact matching: strings, booleans and null by value, numbers numerically (so `300`,
/// `300.0` and `3e2` are equal; integers exactly, beyond what a double holds).
fn same_value(want: &Value, v: &Value) -> bool {
    match (want, v) {
        (Value::Number(a), Value::Number(b)) => same_number(a, b),
        _ => want == v,
    }
}

fn same_number(a: &Number, b: &Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

/// A `wildcard` operand: literal pieces between `*`s.
#[derive(Debug, Clone, PartialEq)]
struct Wildcard {
    /// Always one more than the number of `*`.
    pieces: Vec<String>,
}

impl Wildcard {
    fn parse(pattern: &str) -> Result<Wildcard, PatternError> {
        let mut pieces = vec![String::new()];
        let mut chars = pattern.chars().enumerate().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e @ ('*' | '\\'))) => {
                        pieces.last_mut().into_iter().for_each(|p| p.push(e))
                    }
                    _ => return bad(format!("Invalid escape character at pos {at}")),
                },
                '*' => {
                    if matches!(chars.peek(), Some((_, '*'))) {
                        return bad(format!("Consecutive wildcard characters at pos {}", at + 1));
                    }
                    pieces.push(String::new());
                }
                c => pieces.last_mut().into_iter().for_each(|p| p.push(c)),
            }
        }
        Ok(Wildcard { pieces })
    }

    /// Linear: the first piece anchors the start, the last the end, and the pieces in
    /// between are found left to right, each as early as possible.
    fn matches(&self, s: &str) -> bool {
        let [first, middle @ .., last] = self.pieces.as_slice() else {
            return self.pieces.first().is_some_and(|p| p == s);
        };
        if s.len() < first.len() + last.len()
            || !s.starts_with(first.as_str())
            || !s.ends_with(last.as_str())
        {
            return false;
        }
        let mut rest = &s[first.len()..s.len() - last.len()];
        for piece in middle {
            match rest.find(piece.as_str()) {
                Some(at) => rest = &rest[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

/// A poller's filter: drops (deletes) the received messages that match no pattern.
pub(crate) struct BatchFilter {
    criteria: Option<FilterCriteria>,
    uuid: String,
    queue_arn: String,
    region: String,
}

impl BatchFilter {
    /// Compile the mapping's patterns once, for the life of its poller.
    pub(crate) fn for_mapping(shared: &Shared, mapping: &EventSourceMapping) -> BatchFilter {
        let queue = QueueRef::new(&mapping.account_id, &mapping.queue_name);
        let criteria = match FilterCriteria::compile(&mapping.filter_patterns) {
            Ok(c) if c.is_empty() => None,
            Ok(c) => Some(c),
            Err(e) => {
                // The API checked these patterns; a stored one that no longer compiles
                // must not make messages disappear, so nothing is filtered.
                tracing::error!(uuid = %mapping.uuid, error = %e,
                    "the mapping's filter criteria do not compile; messages are not filtered");
                None
            }
        };
        BatchFilter {
            criteria,
            uuid: mapping.uuid.clone(),
            queue_arn: queue.arn(&shared.region),
            region: shared.region.clone(),
        }
    }

    /// The messages of `batch` that match the criteria; the others are deleted (when the
    /// delete fails they come back after their visibility timeout and are filtered again).
    pub(crate) async fn keep_matching(
        &self,
        shared: &Shared,
        queue: &QueueRef,
        batch: Vec<ReceivedMessage>,
    ) -> Vec<ReceivedMessage> {
        let Some(criteria) = &self.criteria else {
            return batch;
        };
        let (keep, drop): (Vec<_>, Vec<_>) = batch.into_iter().partition(|m| {
            criteria.matches_sqs(convert::sqs_record(m, &self.queue_arn, &self.region))
        });
        if drop.is_empty() {
            return keep;
        }
        tracing::debug!(uuid = %self.uuid, dropped = drop.len(), kept = keep.len(),
            "messages matching no filter are deleted");
        let handles = drop.into_iter().map(|m| m.receipt_handle).collect();
        match shared.queues.delete_messages(queue, handles).await {
            Ok(results) => {
                let failures = results.iter().filter(|r| r.is_err()).count();
                if failures > 0 {
                    tracing::warn!(uuid = %self.uuid, failures,
                        "some filtered-out messages could not be deleted");
                }
            }
            Err(e) => {
                tracing::warn!(uuid = %self.uuid, error = %e,
                    "could not delete filtered-out messages");
            }
        }
        keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn pattern(p: Value) -> Pattern {
        Pattern::parse(&p.to_string()).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    /// Does `p` match `event`?
    fn m(p: Value, event: Value) -> bool {
        pattern(p).matches(&event)
    }

    fn error(p: &str) -> String {
        match Pattern::parse(p) {
            Ok(_) => panic!("{p} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn exact_values() {
        let p = json!({"a": ["x", 300, true, null]});
        assert!(m(p.clone(), json!({"a": "x"})));
        assert!(m(p.clone(), json!({"a": 300})));
        assert!(m(p.clone(), json!({"a": 300.0})));
        assert!(m(p.clone(), json!({"a": 3e2})));
        assert!(m(p.clone(), json!({"a": true})));
        assert!(m(p.clone(), json!({"a": null})));
        assert!(
            !m(p.clone(), json!({"a": "300"})),
            "a string is not a number"
        );
        assert!(!m(p.clone(), json!({"a": "X"})));
        assert!(!m(p.clone(), json!({"a": false})));
        assert!(!m(p.clone(), json!({"a": "null"})));
        assert!(!m(p.clone(), json!({"b": "x"})), "absent");
        assert!(!m(json!({"a": ["300"]}), json!({"a": 300})));
        assert!(m(json!({"a": [""]}), json!({"a": ""})), "empty string");
        // Integers beyond a double's precision compare exactly.
        assert!(m(
            json!({"a": [9007199254740993_u64]}),
            json!({"a": 9007199254740993_u64})
        ));
        assert!(!m(
            json!({"a": [9007199254740993_u64]}),
            json!({"a": 9007199254740992_u64})
        ));
        assert!(m(json!({"a": [-1]}), json!({"a": -1.0})));
    }

    #[test]
    fn fields_are_anded_and_rules_ored() {
        let p = json!({"a": ["x", "y"], "b": [1]});
        assert!(m(p.clone(), json!({"a": "y", "b": 1, "c": 2})));
        assert!(!m(p.clone(), json!({"a": "y", "b": 2})));
        assert!(!m(p, json!({"a": "y"})));
    }

    #[test]
    fn prefix_suffix_and_ignore_case() {
        assert!(m(
            json!({"a": [{"prefix": "us-"}]}),
            json!({"a": "us-east-1"})
        ));
        assert!(!m(
            json!({"a": [{"prefix": "us-"}]}),
            json!({"a": "eu-west-1"})
        ));
        assert!(!m(
            json!({"a": [{"prefix": "US-"}]}),
            json!({"a": "us-east-1"})
        ));
        assert!(m(json!({"a": [{"prefix": ""}]}), json!({"a": "anything"})));
        assert!(
            !m(json!({"a": [{"prefix": "1"}]}), json!({"a": 12})),
            "strings only"
        );
        assert!(m(json!({"a": [{"suffix": ".png"}]}), json!({"a": "x.png"})));
        assert!(!m(
            json!({"a": [{"suffix": ".png"}]}),
            json!({"a": "x.PNG"})
        ));
        let ci = json!({"a": [{"suffix": {"equals-ignore-case": ".Png"}}]});
        assert!(m(ci, json!({"a": "x.PNG"})));
        let ci = json!({"a": [{"prefix": {"equals-ignore-case": "EventB"}}]});
        assert!(m(ci.clone(), json!({"a": "eventbridge"})));
        assert!(!m(ci, json!({"a": "event"})));
        let eq = json!({"a": [{"equals-ignore-case": "Alice"}]});
        assert!(m(eq.clone(), json!({"a": "aLiCe"})));
        assert!(!m(eq.clone(), json!({"a": "alic"})));
        assert!(!m(eq, json!({"a": ["bob", 1]})));
        assert!(m(
            json!({"a": [{"equals-ignore-case": "ÉTÉ"}]}),
            json!({"a": "été"})
        ));
    }

    #[test]
    fn anything_but() {
        let p = json!({"a": [{"anything-but": "x"}]});
        assert!(m(p.clone(), json!({"a": "y"})));
        assert!(m(p.clone(), json!({"a": 5})));
        assert!(m(p.clone(), json!({"a": null})));
        assert!(!m(p.clone(), json!({"a": "x"})));
        assert!(
            !m(p.clone(), json!({})),
            "an absent field matches no anything-but"
        );
        let list = json!({"a": [{"anything-but": ["x", "y"]}]});
        assert!(!m(list.clone(), json!({"a": "y"})));
        assert!(m(list, json!({"a": "z"})));
        let numbers = json!({"a": [{"anything-but": [1, 2.5]}]});
        assert!(!m(numbers.clone(), json!({"a": 1.0})));
        assert!(!m(numbers.clone(), json!({"a": 2.5})));
        assert!(m(numbers.clone(), json!({"a": 3})));
        assert!(m(numbers, json!({"a": "1"})));
        assert!(!m(json!({"a": [{"anything-but": 7}]}), json!({"a": 7})));
        let prefix = json!({"a": [{"anything-but": {"prefix": "us-"}}]});
        assert!(m(prefix.clone(), json!({"a": "eu-west-1"})));
        assert!(!m(prefix.clone(), json!({"a": "us-east-1"})));
        assert!(m(prefix, json!({"a": 1})));
        let suffix = json!({"a": [{"anything-but": {"suffix": ".png"}}]});
        assert!(m(suffix.clone(), json!({"a": "a.jpg"})));
        assert!(!m(suffix, json!({"a": "a.png"})));
        let ci = json!({"a": [{"anything-but": {"equals-ignore-case": ["Init", "DONE"]}}]});
        assert!(!m(ci.clone(), json!({"a": "INIT"})));
        assert!(!m(ci.clone(), json!({"a": "done"})));
        assert!(m(ci, json!({"a": "running"})));
        let ci = json!({"a": [{"anything-but": {"equals-ignore-case": "x"}}]});
        assert!(!m(ci, json!({"a": "X"})));
        let wild = json!({"a": [{"anything-but": {"wildcard": "*/lib/*"}}]});
        assert!(!m(wild.clone(), json!({"a": "/usr/lib/x"})));
        assert!(m(wild, json!({"a": "/usr/bin/x"})));
        // An array matches when any element is not excluded.
        let p = json!({"a": [{"anything-but": "x"}]});
        assert!(m(p.clone(), json!({"a": ["x", "y"]})));
        assert!(!m(p, json!({"a": ["x", "x"]})));
    }

    #[test]
    fn numeric() {
        let n = |ops: Value, v: Value| m(json!({"a": [{"numeric": ops}]}), json!({"a": v}));
        assert!(n(json!(["=", 100]), json!(100)));
        assert!(n(json!(["=", 100]), json!(100.0)));
        assert!(!n(json!(["=", 100]), json!(100.000001)));
        assert!(n(json!(["<", 10]), json!(9.99)));
        assert!(!n(json!(["<", 10]), json!(10)));
        assert!(n(json!(["<=", 10]), json!(10)));
        assert!(!n(json!(["<=", 10]), json!(10.5)));
        assert!(n(json!([">", 0]), json!(0.001)));
        assert!(!n(json!([">", 0]), json!(0)));
        assert!(n(json!([">=", 0]), json!(0)));
        assert!(!n(json!([">=", 0]), json!(-0.5)));
        assert!(n(json!([">", 0, "<=", 150.5]), json!(150.5)));
        assert!(n(json!([">", 0, "<=", 150.5]), json!(100)));
        assert!(!n(json!([">", 0, "<=", 150.5]), json!(0)));
        assert!(!n(json!([">", 0, "<=", 150.5]), json!(200)));
        assert!(n(json!([">=", -10, "<", -5]), json!(-10)));
        assert!(!n(json!([">=", -10, "<", -5]), json!(-5)));
        assert!(n(json!([">", 1e15]), json!(1e16)));
        assert!(!n(json!(["<", 10]), json!("5")), "strings are not numbers");
        assert!(!n(json!(["<", 10]), json!(null)));
        assert!(n(json!(["<", 10]), json!([50, 5])), "any element");
    }

    #[test]
    fn exists() {
        let yes = json!({"a": {"b": [{"exists": true}]}});
        let no = json!({"a": {"b": [{"exists": false}]}});
        for (event, present) in [
            (json!({"a": {"b": "x"}}), true),
            (json!({"a": {"b": null}}), true),
            (json!({"a": {"b": 0}}), true),
            (json!({"a": {"b": [1]}}), true),
            (json!({"a": {"c": 1}}), false),
            (json!({"a": {}}), false),
            (json!({}), false),
            (json!({"a": 5}), false),
            // Only leaves exist: an object or an empty array is not a value.
            (json!({"a": {"b": {"c": 1}}}), false),
            (json!({"a": {"b": []}}), false),
        ] {
            assert_eq!(m(yes.clone(), event.clone()), present, "{event}");
            assert_eq!(m(no.clone(), event.clone()), !present, "{event}");
        }
        // exists:false next to another field.
        let p = json!({"kind": ["order"], "error": [{"exists": false}]});
        assert!(m(p.clone(), json!({"kind": "order"})));
        assert!(!m(p, json!({"kind": "order", "error": "boom"})));
        // Or'ed with a value.
        let p = json!({"a": [{"exists": false}, "x"]});
        assert!(m(p.clone(), json!({})));
        assert!(m(p.clone(), json!({"a": "x"})));
        assert!(!m(p, json!({"a": "y"})));
    }

    #[test]
    fn nested_objects_and_arrays() {
        let p = json!({"detail": {"state": ["running"], "tags": {"env": ["prod"]}}});
        assert!(m(
            p.clone(),
            json!({"detail": {"state": "running", "tags": {"env": "prod", "x": 1}}})
        ));
        assert!(!m(
            p.clone(),
            json!({"detail": {"state": "running", "tags": {"env": "dev"}}})
        ));
        assert!(!m(p.clone(), json!({"detail": {"state": "running"}})));
        assert!(!m(p, json!({"detail": "running"})));
        // A leaf array matches when any element does.
        assert!(m(json!({"a": ["x"]}), json!({"a": ["w", "x"]})));
        assert!(m(json!({"a": ["x"]}), json!({"a": [["w"], ["x"]]})));
        assert!(!m(json!({"a": ["x"]}), json!({"a": []})));
        // An array of objects: one element must match the nested pattern as a whole.
        let p = json!({"items": {"sku": ["a"], "qty": [{"numeric": [">", 1]}]}});
        assert!(m(
            p.clone(),
            json!({"items": [{"sku": "b", "qty": 5}, {"sku": "a", "qty": 2}]})
        ));
        assert!(!m(
            p,
            json!({"items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 5}]})
        ));
        // A rule never matches an object.
        assert!(!m(
            json!({"a": [{"anything-but": "x"}]}),
            json!({"a": {"b": 1}})
        ));
        // Keys are exact (case-sensitive, dots are not paths).
        assert!(!m(json!({"A": ["x"]}), json!({"a": "x"})));
        assert!(m(json!({"a.b": ["x"]}), json!({"a.b": "x"})));
        assert!(!m(json!({"a.b": ["x"]}), json!({"a": {"b": "x"}})));
    }

    #[test]
    fn or() {
        let p = json!({
            "source": ["s"],
            "$or": [
                {"metric": ["cpu", "mem"]},
                {"type": ["t"], "ns": [{"prefix": "AWS/"}]},
            ]
        });
        assert!(m(p.clone(), json!({"source": "s", "metric": "cpu"})));
        assert!(m(
            p.clone(),
            json!({"source": "s", "type": "t", "ns": "AWS/EC2"})
        ));
        assert!(!m(
            p.clone(),
            json!({"source": "s", "type": "t", "ns": "x"})
        ));
        assert!(!m(p.clone(), json!({"source": "x", "metric": "cpu"})));
        assert!(!m(p, json!({"source": "s"})));
        // Nested, and $or inside $or.
        let p = json!({"d": {"$or": [
            {"c": [{"numeric": [">", 0, "<=", 5]}]},
            {"$or": [{"x": [1]}, {"y": [2]}]},
        ]}});
        assert!(m(p.clone(), json!({"d": {"c": 5}})));
        assert!(m(p.clone(), json!({"d": {"y": 2}})));
        assert!(!m(p, json!({"d": {"c": 6, "x": 2}})));
    }

    #[test]
    fn wildcard() {
        let w = |p: &str, s: &str| Wildcard::parse(p).unwrap().matches(s);
        assert!(w("*", ""));
        assert!(w("*", "anything"));
        assert!(w("a*", "abc"));
        assert!(!w("a*", "bac"));
        assert!(w("*c", "abc"));
        assert!(w("a*c", "ac"));
        assert!(!w("a*c", "a"), "the anchors must not overlap");
        assert!(!w("ab*ba", "aba"));
        assert!(w("ab*ba", "abba"));
        assert!(w("*/lib/*", "/usr/lib/x"));
        assert!(w("a*b*c", "a-b-b-c"));
        assert!(!w("a*b*c", "a-c-b"));
        assert!(w("exact", "exact"));
        assert!(!w("exact", "exactly"));
        assert!(w(r"a\*b", "a*b"));
        assert!(!w(r"a\*b", "axb"));
        assert!(w(r"a\\*", r"a\zzz"));
        assert!(w("é*ü", "éaü"));
        assert!(m(
            json!({"a": [{"wildcard": "*.png"}]}),
            json!({"a": "x.png"})
        ));
        assert!(
            !m(json!({"a": [{"wildcard": "*"}]}), json!({"a": 1})),
            "strings only"
        );
        assert!(error(r#"{"a": [{"wildcard": "a**b"}]}"#).contains("Consecutive wildcard"));
        assert!(error(r#"{"a": [{"wildcard": "a\\b"}]}"#).contains("Invalid escape"));
        assert!(error(r#"{"a": [{"wildcard": "a\\"}]}"#).contains("Invalid escape"));
    }

    #[test]
    fn invalid_patterns_say_why() {
        for (p, why) in [
            ("", "not valid JSON"),
            ("{", "not valid JSON"),
            ("[1]", "not an object"),
            ("\"a\"", "not an object"),
            ("{}", "Empty objects"),
            (r#"{"a": {}}"#, "Empty objects"),
            (r#"{"a": []}"#, "Empty arrays"),
            (r#"{"a": "x"}"#, "must be an object or an array"),
            (r#"{"a": 1}"#, "must be an object or an array"),
            (r#"{"a": [["x"]]}"#, "Match value"),
            (r#"{"a": [{}]}"#, "name not found"),
            (r#"{"a": [{"prefix": "x", "suffix": "y"}]}"#, "Only one key"),
            (
                r#"{"a": [{"regex": "x"}]}"#,
                "Unrecognized match type regex",
            ),
            (r#"{"a": [{"prefix": 1}]}"#, "prefix match pattern"),
            (r#"{"a": [{"prefix": {"x": "y"}}]}"#, "prefix match pattern"),
            (r#"{"a": [{"suffix": null}]}"#, "suffix match pattern"),
            (r#"{"a": [{"equals-ignore-case": 1}]}"#, "must be a string"),
            (r#"{"a": [{"wildcard": 1}]}"#, "must be a string"),
            (r#"{"a": [{"exists": "true"}]}"#, "true or false"),
            (r#"{"a": [{"numeric": 5}]}"#, "must be an array"),
            (r#"{"a": [{"numeric": []}]}"#, "must not be empty"),
            (r#"{"a": [{"numeric": ["!=", 5]}]}"#, "Unrecognized numeric"),
            (r#"{"a": [{"numeric": ["<", "5"]}]}"#, "must be numeric"),
            (r#"{"a": [{"numeric": ["<"]}]}"#, "must be numeric"),
            (r#"{"a": [{"numeric": ["=", 1, "<", 2]}]}"#, "Too many"),
            (r#"{"a": [{"numeric": ["<", 1, ">", 0]}]}"#, "Too many"),
            (
                r#"{"a": [{"numeric": [">", 1, ">", 2]}]}"#,
                "Bad numeric range",
            ),
            (
                r#"{"a": [{"numeric": [">", 5, "<", 5]}]}"#,
                "Bottom must be less",
            ),
            (r#"{"a": [{"numeric": [">", 1, "<", 5, 6]}]}"#, "Too many"),
            (
                r#"{"a": [{"anything-but": ["x", 1]}]}"#,
                "all values must be",
            ),
            (r#"{"a": [{"anything-but": []}]}"#, "all values must be"),
            (r#"{"a": [{"anything-but": [null]}]}"#, "all values must be"),
            (
                r#"{"a": [{"anything-but": true}]}"#,
                "must be an array or single",
            ),
            (
                r#"{"a": [{"anything-but": {"prefix": ""}}]}"#,
                "Null prefix",
            ),
            (
                r#"{"a": [{"anything-but": {"prefix": 1}}]}"#,
                "must be a string",
            ),
            (
                r#"{"a": [{"anything-but": {"numeric": [">", 1]}}]}"#,
                "Unsupported anything-but",
            ),
            (
                r#"{"a": [{"anything-but": {"equals-ignore-case": [1]}}]}"#,
                "only a string",
            ),
            (r#"{"$or": [{"a": [1]}]}"#, "at least two"),
            (r#"{"$or": {"a": [1]}}"#, "must be an array"),
            (r#"{"$or": [{"a": [1]}, 2]}"#, "Only objects"),
            (r#"{"$or": [{"a": [1]}, {}]}"#, "Empty objects"),
            (r#"{"$or": [{"a": [1]}, {"prefix": ["x"]}]}"#, "reserved"),
            (
                r#"{"$or": [{"a": [1]}, {"b": {"numeric": ["x"]}}]}"#,
                "reserved",
            ),
        ] {
            let e = error(p);
            assert!(e.contains(why), "{p}: {e:?} does not say {why:?}");
        }
        // Operator names are ordinary field names outside $or.
        assert!(m(json!({"prefix": ["x"]}), json!({"prefix": "x"})));
    }

    fn record(body: &str) -> Value {
        json!({
            "messageId": "m1",
            "receiptHandle": "rh",
            "body": body,
            "attributes": {"ApproximateReceiveCount": "1", "SenderId": "123"},
            "messageAttributes": {
                "kind": {"stringValue": "order", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
            },
            "md5OfBody": "x",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123:q",
            "awsRegion": "us-east-1",
        })
    }

    fn sqs(patterns: &[&Value], body: &str) -> bool {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        FilterCriteria::compile(&patterns)
            .unwrap()
            .matches_sqs(record(body))
    }

    #[test]
    fn sqs_json_bodies_filter_on_their_fields() {
        let p = json!({"body": {"RequestCode": ["BBBB"], "n": [{"numeric": [">", 1]}]}});
        assert!(sqs(&[&p], r#"{"RequestCode": "BBBB", "n": 2}"#));
        assert!(!sqs(&[&p], r#"{"RequestCode": "AAAA", "n": 2}"#));
        assert!(!sqs(&[&p], r#"{"RequestCode": "BBBB"}"#));
        // An array body: any element.
        assert!(sqs(
            &[&p],
            r#"[{"RequestCode": "X"}, {"RequestCode": "BBBB", "n": 5}]"#
        ));
        // A plain body never matches an object pattern, even one that only asks for
        // absence.
        assert!(!sqs(&[&p], "RequestCode BBBB"));
        let absent = json!({"body": {"error": [{"exists": false}]}});
        assert!(sqs(&[&absent], r#"{"ok": 1}"#));
        assert!(!sqs(&[&absent], "plain text"));
    }

    #[test]
    fn sqs_plain_bodies_match_as_strings() {
        let p = json!({"body": [{"prefix": "Result: "}]});
        assert!(sqs(&[&p], "Result: ok"));
        assert!(!sqs(&[&p], "Error: no"));
        // A JSON body never matches a plain pattern, even one its text would satisfy.
        assert!(!sqs(&[&json!({"body": [{"prefix": "{"}]})], r#"{"a": 1}"#));
        assert!(!sqs(&[&json!({"body": [{"exists": true}]})], r#"{"a": 1}"#));
        // Scalar JSON is plain text: the string as sent.
        assert!(sqs(&[&json!({"body": ["42"]})], "42"));
        assert!(!sqs(&[&json!({"body": [42]})], "42"));
        assert!(sqs(&[&json!({"body": ["\"quoted\""]})], "\"quoted\""));
        assert!(sqs(&[&json!({"body": [{"exists": true}]})], "x"));
        assert!(!sqs(&[&p], "{not json"), "broken JSON is a plain string");
        assert!(sqs(&[&json!({"body": [{"prefix": "{not"}]})], "{not json"));
    }

    #[test]
    fn sqs_metadata_and_several_filters() {
        let by_attribute = json!({"messageAttributes": {"kind": {"stringValue": ["order"]}}});
        assert!(sqs(&[&by_attribute], "anything"));
        let by_sender = json!({"attributes": {"SenderId": [{"anything-but": "123"}]}});
        assert!(!sqs(&[&by_sender], "x"));
        // Several filters: any one is enough (OR), fields within one are ANDed.
        let a = json!({"body": {"t": ["a"]}});
        let b = json!({"body": {"t": ["b"]}, "awsRegion": ["us-east-1"]});
        let c = json!({"body": {"t": ["c"]}, "awsRegion": ["eu-west-1"]});
        assert!(sqs(&[&a, &b, &c], r#"{"t": "a"}"#));
        assert!(sqs(&[&a, &b, &c], r#"{"t": "b"}"#));
        assert!(!sqs(&[&a, &b, &c], r#"{"t": "c"}"#));
        assert!(!sqs(&[&a, &b, &c, &by_sender], r#"{"t": "d"}"#));
        // $or at the top of the record still applies the body rule.
        let or = json!({"$or": [{"body": ["plain"]}, {"body": {"t": ["json"]}}]});
        assert!(sqs(&[&or], "plain"));
        assert!(sqs(&[&or], r#"{"t": "json"}"#));
        assert!(!sqs(&[&or], r#"{"t": "plain"}"#));
        // No filters: everything passes.
        assert!(
            FilterCriteria::compile::<String>(&[])
                .unwrap()
                .matches_sqs(record("x"))
        );
    }

    #[test]
    fn criteria_limits() {
        let ok = r#"{"body": ["x"]}"#;
        assert!(FilterCriteria::compile(&[ok; MAX_FILTERS]).is_ok());
        assert_eq!(
            FilterCriteria::compile(&[ok; MAX_FILTERS + 1]),
            Err(CriteriaError::TooMany { count: 6 })
        );
        let long = format!(r#"{{"body": ["{}"]}}"#, "é".repeat(MAX_PATTERN_LENGTH));
        assert_eq!(
            FilterCriteria::compile(&[ok, long.as_str()]),
            Err(CriteriaError::TooLong {
                index: 2,
                length: MAX_PATTERN_LENGTH + 14
            })
        );
        // At the limit, counted in characters.
        let at_limit = format!(r#"{{"body": ["{}"]}}"#, "é".repeat(MAX_PATTERN_LENGTH - 14));
        assert!(FilterCriteria::compile(&[at_limit]).is_ok());
        let e = FilterCriteria::compile(&[ok, ok, "{]"]).unwrap_err();
        assert!(
            matches!(e, CriteriaError::Invalid { index: 3, .. }),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("Invalid filter pattern definition")
        );
    }

    /// Small JSON documents: what patterns and events are made of.
    fn json_value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("$or".to_owned()),
            Just("prefix".to_owned()),
            Just("numeric".to_owned()),
            Just("anything-but".to_owned()),
            Just("exists".to_owned()),
            Just("wildcard".to_owned()),
            Just("equals-ignore-case".to_owned()),
            Just("suffix".to_owned()),
            "[a-z<>=*\\\\]{0,3}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-z<>=*\\\\]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 48, 5, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn parsing_and_matching_never_panic(p in json_value(), event in json_value()) {
            if let Ok(pattern) = Pattern::parse(&p.to_string()) {
                pattern.matches(&event);
                let c = FilterCriteria { patterns: vec![pattern] };
                c.matches_sqs(json!({"body": event.to_string(), "awsRegion": "r"}));
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = Pattern::parse(&text);
            let _ = Wildcard::parse(&text);
        }

        /// A pattern of an event's own values matches it; excluding them does not.
        #[test]
        fn exact_values_match_their_event(
            fields in prop::collection::btree_map("[a-z]{1,6}", prop_oneof![
                "[ -~]{0,8}".prop_map(Value::String),
                any::<i64>().prop_map(Value::from),
                (-1e9f64..1e9).prop_map(Value::from),
            ], 1..6)
        ) {
            // Events, like patterns, arrive as text.
            let event: Value = serde_json::from_str(
                &Value::Object(fields.clone().into_iter().collect()).to_string(),
            ).unwrap();
            let exact: Map<String, Value> =
                fields.iter().map(|(k, v)| (k.clone(), json!([v]))).collect();
            prop_assert!(m(Value::Object(exact), event.clone()));
            let but: Map<String, Value> = fields
                .iter()
                .map(|(k, v)| (k.clone(), json!([{"anything-but": v}])))
                .collect();
            prop_assert!(!m(Value::Object(but), event));
        }

        /// A wildcard made of a string's own pieces matches it.
        #[test]
        fn wildcards_match_their_source(parts in prop::collection::vec("[a-c]{1,3}", 1..5), cut in any::<prop::sample::Index>()) {
            let s: String = parts.concat();
            let pattern = parts.iter().map(|p| p.as_str()).collect::<Vec<_>>().join("*");
            prop_assert!(Wildcard::parse(&pattern).unwrap().matches(&s));
            // A prefix wildcard agrees with starts_with.
            let at = cut.index(s.len() + 1);
            let w = Wildcard::parse(&format!("{}*", &s[..at])).unwrap();
            prop_assert!(w.matches(&s));
            prop_assert_eq!(w.matches("zz"), s[..at].is_empty());
        }
    }
}
