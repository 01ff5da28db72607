//! Function configuration as CreateFunction and UpdateFunctionConfiguration send it, and
//! the checks Lambda applies to it.
//!
//! Both operations share [`ConfigPatch`]: CreateFunction applies it to defaults,
//! UpdateFunctionConfiguration to the stored function. Options Ember does not implement
//! are refused with a message that says so, rather than silently ignored: a function
//! that appears to have a VPC or a layer but has none would be worse than an error.

use std::collections::BTreeMap;

use ember_store::Function;
use serde::Deserialize;
use serde_json::Value;

use crate::ApiError;

pub const DEFAULT_TIMEOUT: u32 = 3;
pub const MAX_TIMEOUT: i64 = 900;
pub const DEFAULT_MEMORY: u32 = 128;
pub const MAX_MEMORY: i64 = 10_240;
pub const DEFAULT_EPHEMERAL: u32 = 512;
const MAX_DESCRIPTION: usize = 256;
const MAX_HANDLER: usize = 128;
/// Lambda measures the JSON-serialised variables map against 4 KB.
const MAX_ENVIRONMENT_BYTES: usize = 4096;
const MAX_TAGS: usize = 50;

/// Runtimes Ember knows how to run. Whether this host has the interpreter is checked
/// where sandboxes are made.
pub const RUNTIMES: &[&str] = &[
    "python3.8",
    "python3.9",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "python3.14",
    "nodejs16.x",
    "nodejs18.x",
    "nodejs20.x",
    "nodejs22.x",
    "nodejs24.x",
    "provided",
    "provided.al2",
    "provided.al2023",
];

/// Variables the platform sets itself; functions may not override them.
const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_REGION",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "LAMBDA_RUNTIME_DIR",
    "LAMBDA_TASK_ROOT",
];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Environment {
    pub variables: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EphemeralStorage {
    pub size: i64,
}

/// The configuration fields CreateFunction and UpdateFunctionConfiguration share. Absent
/// fields leave the current value alone.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigPatch {
    pub runtime: Option<String>,
    pub role: Option<String>,
    pub handler: Option<String>,
    pub description: Option<String>,
    pub timeout: Option<i64>,
    pub memory_size: Option<i64>,
    pub environment: Option<Environment>,
    pub ephemeral_storage: Option<EphemeralStorage>,
    // Accepted only in their "off" form; see `refuse_unsupported`.
    pub vpc_config: Option<Value>,
    pub dead_letter_config: Option<Value>,
    #[serde(rename = "KMSKeyArn")]
    pub kms_key_arn: Option<String>,
    pub tracing_config: Option<Value>,
    pub layers: Option<Vec<String>>,
    pub file_system_configs: Option<Vec<Value>>,
    pub image_config: Option<Value>,
    pub snap_start: Option<Value>,
    pub logging_config: Option<Value>,
}

pub(crate) fn constraint(value: impl std::fmt::Display, field: &str, rule: &str) -> ApiError {
    ApiError::invalid_parameter(format!(
        "1 validation error detected: Value '{}' at '{field}' failed to satisfy constraint: {rule}",
        super::names::truncate_for_message(&value.to_string())
    ))
}

pub(crate) fn in_range(value: i64, field: &str, min: i64, max: i64) -> Result<u32, ApiError> {
    if value < min {
        return Err(constraint(
            value,
            field,
            &format!("Member must have value greater than or equal to {min}"),
        ));
    }
    if value > max {
        return Err(constraint(
            value,
            field,
            &format!("Member must have value less than or equal to {max}"),
        ));
    }
    u32::try_from(value).map_err(|_| constraint(value, field, "Member must fit in 32 bits"))
}

/// `arn:aws:iam::123456789012:role/name`, as Lambda's `RoleArn` pattern describes.
fn valid_role(role: &str) -> bool {
    let Some(rest) = role.strip_prefix("arn:") else {
        return false;
    };
    let Some((partition, rest)) = rest.split_once(":iam::") else {
        return false;
    };
    let Some((account, path)) = rest.split_once(":role") else {
        return false;
    };
    let path = path.strip_prefix('/').unwrap_or(path);
    (partition.is_empty() || partition.starts_with("aws"))
        && partition
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'-')
        && super::names::valid_account_id(account)
        && !path.is_empty()
        && role.len() <= 2048
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@-_/".contains(&b))
}

fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() >= 2
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub fn check_runtime(runtime: &str) -> Result<(), ApiError> {
    if RUNTIMES.contains(&runtime) {
        return Ok(());
    }
    Err(ApiError::invalid_parameter(format!(
        "The runtime parameter of {} is not supported by Ember. Supported runtimes: {}",
        super::names::truncate_for_message(runtime),
        RUNTIMES.join(", ")
    )))
}

/// Check `Architectures`: exactly one, and the one this machine runs.
pub fn check_architectures(architectures: &[String]) -> Result<(), ApiError> {
    let native = native_architecture();
    match architectures {
        [one] if one == native => Ok(()),
        [one] if one == "x86_64" || one == "arm64" => Err(ApiError::invalid_parameter(format!(
            "Architecture {one} is not available on this Ember node, which runs {native}"
        ))),
        [one] => Err(constraint(
            one,
            "architectures",
            "Member must satisfy enum value set: [x86_64, arm64]",
        )),
        _ => Err(constraint(
            architectures.len(),
            "architectures",
            "Member must have length equal to 1",
        )),
    }
}

/// The Lambda name of the machine's architecture.
pub fn native_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::invalid_parameter(format!(
            "A function can have at most {MAX_TAGS} tags"
        )));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(ApiError::invalid_parameter(
                "Tag keys must be 1 to 128 characters and values at most 256 characters",
            ));
        }
    }
    Ok(())
}

impl ConfigPatch {
    /// Refuse options Ember does not implement, unless they are given in their "off" form.
    fn refuse_unsupported(&self) -> Result<(), ApiError> {
        let unsupported =
            |what: &str| ApiError::invalid_parameter(format!("Ember does not support {what}"));
        let empty_list = |v: &Value, key: &str| {
            v.get(key)
                .is_none_or(|l| l.as_array().is_some_and(|a| a.is_empty()))
        };
        if let Some(vpc) = &self.vpc_config
            && !(empty_list(vpc, "SubnetIds") && empty_list(vpc, "SecurityGroupIds"))
        {
            return Err(unsupported(
                "VpcConfig (functions have no outbound network yet)",
            ));
        }
        if self.kms_key_arn.as_deref().is_some_and(|k| !k.is_empty()) {
            return Err(unsupported("KMSKeyArn"));
        }
        if let Some(tracing) = &self.tracing_config
            && tracing
                .get("Mode")
                .is_some_and(|m| m.as_str() != Some("PassThrough"))
        {
            return Err(unsupported("TracingConfig Mode other than PassThrough"));
        }
        if self.layers.as_ref().is_some_and(|l| !l.is_empty()) {
            return Err(unsupported("Layers"));
        }
        if self
            .file_system_configs
            .as_ref()
            .is_some_and(|l| !l.is_empty())
        {
            return Err(unsupported("FileSystemConfigs"));
        }
        if self
            .image_config
            .as_ref()
            .is_some_and(|v| v.as_object().is_none_or(|o| !o.is_empty()))
        {
            return Err(unsupported("ImageConfig (container images)"));
        }
        if let Some(snap) = &self.snap_start
            && snap
                .get("ApplyOn")
                .is_some_and(|m| m.as_str() != Some("None"))
        {
            return Err(unsupported("SnapStart"));
        }
        if let Some(logging) = &self.logging_config
            && logging
                .get("LogFormat")
                .is_some_and(|m| m.as_str() != Some("Text"))
        {
            return Err(unsupported("LoggingConfig LogFormat other than Text"));
        }
        Ok(())
    }

    /// Check every field and apply the patch to `f`.
    pub fn apply(self, f: &mut Function) -> Result<(), ApiError> {
        self.refuse_unsupported()?;
        if let Some(dlq) = &self.dead_letter_config {
            f.dead_letter_target_arn = dead_letter_target(dlq, &f.account_id)?;
        }
        if let Some(runtime) = self.runtime {
            check_runtime(&runtime)?;
            f.runtime = Some(runtime);
        }
        if let Some(role) = self.role {
            if !valid_role(&role) {
                return Err(constraint(
                    &role,
                    "role",
                    "Member must satisfy regular expression pattern: \
                     arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+",
                ));
            }
            f.role = role;
        }
        if let Some(handler) = self.handler {
            if handler.len() > MAX_HANDLER {
                return Err(constraint(
                    &handler,
                    "handler",
                    &format!("Member must have length less than or equal to {MAX_HANDLER}"),
                ));
            }
            if handler.is_empty() || handler.chars().any(char::is_whitespace) {
                return Err(constraint(
                    &handler,
                    "handler",
                    "Member must satisfy regular expression pattern: [^\\s]+",
                ));
            }
            f.handler = Some(handler);
        }
        if let Some(description) = self.description {
            if description.chars().count() > MAX_DESCRIPTION {
                return Err(constraint(
                    &description,
                    "description",
                    &format!("Member must have length less than or equal to {MAX_DESCRIPTION}"),
                ));
            }
            f.description = description;
        }
        if let Some(timeout) = self.timeout {
            f.timeout = in_range(timeout, "timeout", 1, MAX_TIMEOUT)?;
        }
        if let Some(memory) = self.memory_size {
            f.memory_size = in_range(memory, "memorySize", 128, MAX_MEMORY)?;
        }
        if let Some(storage) = self.ephemeral_storage {
            f.ephemeral_storage = in_range(storage.size, "ephemeralStorage.size", 512, 10_240)?;
        }
        if let Some(environment) = self.environment {
            let variables = environment.variables.unwrap_or_default();
            check_environment(&variables)?;
            f.environment = variables;
        }
        Ok(())
    }
}

fn check_environment(variables: &BTreeMap<String, String>) -> Result<(), ApiError> {
    let prefix = "Lambda was unable to configure your environment variables because the \
                  environment variables you have provided";
    let invalid: Vec<&str> = variables
        .keys()
        .map(String::as_str)
        .filter(|k| !valid_env_name(k))
        .collect();
    if !invalid.is_empty() {
        return Err(ApiError::invalid_parameter(format!(
            "{prefix} contains invalid keys. Keys must start with a letter and contain only \
             letters, digits and '_' (at least 2 characters). Invalid keys: {}",
            super::names::truncate_for_message(&invalid.join(","))
        )));
    }
    let reserved: Vec<&str> = variables
        .keys()
        .map(String::as_str)
        .filter(|k| RESERVED_ENV.contains(k))
        .collect();
    if !reserved.is_empty() {
        return Err(ApiError::invalid_parameter(format!(
            "{prefix} contains reserved keys that are currently not supported for modification. \
             Reserved keys used in this request: {}",
            reserved.join(",")
        )));
    }
    let measured = serde_json::to_string(variables).unwrap_or_default();
    if measured.len() > MAX_ENVIRONMENT_BYTES {
        return Err(ApiError::invalid_parameter(format!(
            "{prefix} exceeded the 4KB limit. String measured: {} bytes",
            measured.len()
        )));
    }
    Ok(())
}

/// `DeadLetterConfig.TargetArn`: an SQS queue of the function's own account (an empty or
/// absent `TargetArn` removes it). Whether the queue exists is checked by the caller.
fn dead_letter_target(dlq: &Value, account_id: &str) -> Result<Option<String>, ApiError> {
    let target = match dlq.get("TargetArn") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(ApiError::invalid_parameter(
                "DeadLetterConfig.TargetArn must be a string",
            ));
        }
    };
    match ember_queue::QueueRef::from_arn(target) {
        Some((_, queue)) if queue.account_id == account_id => Ok(Some(target.clone())),
        Some(_) => Err(ApiError::invalid_parameter(format!(
            "The dead-letter queue {} must belong to the function's account",
            super::names::truncate_for_message(target)
        ))),
        None => Err(ApiError::invalid_parameter(format!(
            "DeadLetterConfig.TargetArn {} is not an SQS queue ARN \
             (arn:aws:sqs:<region>:<account>:<queue>); Ember supports SQS dead-letter queues only",
            super::names::truncate_for_message(target)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        assert!(valid_role("arn:aws:iam::123456789012:role/lambda-role"));
        assert!(valid_role(
            "arn:aws:iam::123456789012:role/path/to/r_1+=,.@-"
        ));
        assert!(!valid_role("arn:aws:iam::12345678901:role/x"));
        assert!(!valid_role("arn:aws:iam::123456789012:user/x"));
        assert!(!valid_role("role"));
        assert!(!valid_role("arn:aws:iam::123456789012:role/"));
    }

    #[test]
    fn environment_rules() {
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(check_environment(&env(&[("DB_HOST", "x"), ("A1", "")])).is_ok());
        assert!(check_environment(&env(&[("1A", "x")])).is_err());
        assert!(check_environment(&env(&[("A", "x")])).is_err());
        assert!(check_environment(&env(&[("A-B", "x")])).is_err());
        let e = check_environment(&env(&[("AWS_REGION", "x")])).unwrap_err();
        assert!(e.message.contains("AWS_REGION"));
        let big = "x".repeat(4100);
        assert!(check_environment(&env(&[("BIG", &big)])).is_err());
    }

    #[test]
    fn ranges_and_unsupported() {
        let mut f = super::super::tests::sample_function();
        let patch: ConfigPatch = serde_json::from_str(r#"{"Timeout": 901}"#).unwrap();
        assert!(patch.apply(&mut f).is_err());
        let patch: ConfigPatch = serde_json::from_str(r#"{"MemorySize": 127}"#).unwrap();
        assert!(patch.apply(&mut f).is_err());
        let patch: ConfigPatch = serde_json::from_str(r#"{"Layers": ["arn:x"]}"#).unwrap();
        assert!(patch.apply(&mut f).unwrap_err().message.contains("Layers"));
        let patch: ConfigPatch = serde_json::from_str(
            r#"{"Timeout": 900, "MemorySize": 10240, "VpcConfig": {"SubnetIds": []},
                "TracingConfig": {"Mode": "PassThrough"}, "Environment": {"Variables": {"AB": "1"}}}"#,
        )
        .unwrap();
        patch.apply(&mut f).unwrap();
        assert_eq!((f.timeout, f.memory_size), (900, 10240));
        assert_eq!(f.environment.get("AB").map(String::as_str), Some("1"));
    }
}
