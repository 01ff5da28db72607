//! The Lambda control-plane API (rest-json), as botocore's `lambda/2015-03-31` model
//! describes it: paths, shapes, status codes and error codes.
//!
//! `route` maps method and path to an [`Op`] before anything else happens, so the body
//! limit and the authentication scope are known up front; `execute` runs it. Names in
//! the path may be plain names, partial or full ARNs (see [`names`]); an ARN naming
//! another account is `AccessDeniedException`, a name the caller's account does not have
//! is `ResourceNotFoundException`.

pub mod concurrency;
pub mod config;
pub mod event_config;
mod invoke;
pub mod mappings;
pub mod names;
pub mod policy;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ember_store::model::new_revision_id;
use ember_store::package::{self, PackageInfo};
use ember_store::{Function, StoreError};
use http::{HeaderValue, Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::protocol::{Operation, Route};
use crate::{ApiError, Call, Frontend, empty_response, json_response};
use config::ConfigPatch;
use names::FunctionRef;

/// Lambda's limit on a CreateFunction/UpdateFunctionCode request: a 50 MB zip, base64.
pub const MAX_CODE_REQUEST_BYTES: usize = 70_167_211;
/// Limit for every other Lambda request.
pub const MAX_REQUEST_BYTES: usize = 6 * 1024 * 1024;
/// The presigned code download URL in GetFunction stays valid this long (as Lambda's).
const CODE_URL_EXPIRY_SECS: u64 = 600;
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 10_000;
const API_VERSION: &str = "2015-03-31";
const EVENT_CONFIG_VERSION: &str = "2019-09-25";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    CreateFunction,
    ListFunctions,
    GetFunction(String),
    GetFunctionConfiguration(String),
    UpdateFunctionCode(String),
    UpdateFunctionConfiguration(String),
    DeleteFunction(String),
    /// `GET .../code`: the download behind GetFunction's presigned `Code.Location`.
    DownloadCode(String),
    Invoke(String),
    PutFunctionConcurrency(String),
    GetFunctionConcurrency(String),
    DeleteFunctionConcurrency(String),
    GetAccountSettings,
    CreateEventSourceMapping,
    ListEventSourceMappings,
    GetEventSourceMapping(String),
    UpdateEventSourceMapping(String),
    DeleteEventSourceMapping(String),
    PutFunctionEventInvokeConfig(String),
    UpdateFunctionEventInvokeConfig(String),
    GetFunctionEventInvokeConfig(String),
    DeleteFunctionEventInvokeConfig(String),
    ListFunctionEventInvokeConfigs(String),
    AddPermission(String),
    RemovePermission(String, String),
    GetPolicy(String),
}

/// Whether a path belongs to the Lambda API: its first segment is an API date.
pub fn owns_path(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    first.len() == 10
        && first.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        })
}

pub fn route(method: &Method, segments: &[String]) -> Result<Route, ApiError> {
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let name = |n: &str| n.to_owned();
    let op = match (method, segs.as_slice()) {
        (&Method::POST, [API_VERSION, "functions"]) => Op::CreateFunction,
        (&Method::GET, [API_VERSION, "functions"]) => Op::ListFunctions,
        (&Method::GET, [API_VERSION, "functions", n]) => Op::GetFunction(name(n)),
        (&Method::DELETE, [API_VERSION, "functions", n]) => Op::DeleteFunction(name(n)),
        (&Method::GET, [API_VERSION, "functions", n, "configuration"]) => {
            Op::GetFunctionConfiguration(name(n))
        }
        (&Method::PUT, [API_VERSION, "functions", n, "configuration"]) => {
            Op::UpdateFunctionConfiguration(name(n))
        }
        (&Method::PUT, [API_VERSION, "functions", n, "code"]) => Op::UpdateFunctionCode(name(n)),
        (&Method::GET, [API_VERSION, "functions", n, "code"]) => Op::DownloadCode(name(n)),
        (&Method::POST, [API_VERSION, "functions", n, "invocations"]) => Op::Invoke(name(n)),
        (&Method::PUT, ["2017-10-31", "functions", n, "concurrency"]) => {
            Op::PutFunctionConcurrency(name(n))
        }
        (&Method::GET, ["2019-09-30", "functions", n, "concurrency"]) => {
            Op::GetFunctionConcurrency(name(n))
        }
        (&Method::DELETE, ["2017-10-31", "functions", n, "concurrency"]) => {
            Op::DeleteFunctionConcurrency(name(n))
        }
        (&Method::GET, ["2016-08-19", "account-settings"]) => Op::GetAccountSettings,
        (&Method::POST, [API_VERSION, "event-source-mappings"]) => Op::CreateEventSourceMapping,
        (&Method::GET, [API_VERSION, "event-source-mappings"]) => Op::ListEventSourceMappings,
        (&Method::GET, [API_VERSION, "event-source-mappings", u]) => {
            Op::GetEventSourceMapping(name(u))
        }
        (&Method::PUT, [API_VERSION, "event-source-mappings", u]) => {
            Op::UpdateEventSourceMapping(name(u))
        }
        (&Method::DELETE, [API_VERSION, "event-source-mappings", u]) => {
            Op::DeleteEventSourceMapping(name(u))
        }
        (&Method::PUT, [EVENT_CONFIG_VERSION, "functions", n, "event-invoke-config"]) => {
            Op::PutFunctionEventInvokeConfig(name(n))
        }
        (&Method::POST, [EVENT_CONFIG_VERSION, "functions", n, "event-invoke-config"]) => {
            Op::UpdateFunctionEventInvokeConfig(name(n))
        }
        (&Method::GET, [EVENT_CONFIG_VERSION, "functions", n, "event-invoke-config"]) => {
            Op::GetFunctionEventInvokeConfig(name(n))
        }
        (&Method::DELETE, [EVENT_CONFIG_VERSION, "functions", n, "event-invoke-config"]) => {
            Op::DeleteFunctionEventInvokeConfig(name(n))
        }
        (
            &Method::GET,
            [
                EVENT_CONFIG_VERSION,
                "functions",
                n,
                "event-invoke-config",
                "list",
            ],
        ) => Op::ListFunctionEventInvokeConfigs(name(n)),
        (&Method::POST, [API_VERSION, "functions", n, "policy"]) => Op::AddPermission(name(n)),
        (&Method::GET, [API_VERSION, "functions", n, "policy"]) => Op::GetPolicy(name(n)),
        (&Method::DELETE, [API_VERSION, "functions", n, "policy", sid]) => {
            Op::RemovePermission(name(n), name(sid))
        }
        _ => return Err(ApiError::unknown_operation()),
    };
    let body_limit = match op {
        Op::CreateFunction | Op::UpdateFunctionCode(_) => MAX_CODE_REQUEST_BYTES,
        Op::Invoke(_) => invoke::MAX_PAYLOAD_BYTES,
        _ => MAX_REQUEST_BYTES,
    };
    Ok(Route {
        operation: Operation::Lambda(op),
        body_limit,
    })
}

pub async fn execute(frontend: &Frontend, op: Op, call: Call) -> Result<Response, ApiError> {
    match op {
        Op::CreateFunction => create_function(frontend, &call).await,
        Op::ListFunctions => list_functions(frontend, &call).await,
        Op::GetFunction(n) => get_function(frontend, &call, &n).await,
        Op::GetFunctionConfiguration(n) => {
            let f = lookup(frontend, &call, &n).await?;
            Ok(json_response(StatusCode::OK, &configuration(frontend, &f)))
        }
        Op::UpdateFunctionCode(n) => update_function_code(frontend, &call, &n).await,
        Op::UpdateFunctionConfiguration(n) => {
            update_function_configuration(frontend, &call, &n).await
        }
        Op::DeleteFunction(n) => delete_function(frontend, &call, &n).await,
        Op::DownloadCode(n) => download_code(frontend, &call, &n).await,
        Op::Invoke(n) => invoke::invoke(frontend, &call, &n).await,
        Op::PutFunctionConcurrency(n) => concurrency::put(frontend, &call, &n).await,
        Op::GetFunctionConcurrency(n) => concurrency::get(frontend, &call, &n).await,
        Op::DeleteFunctionConcurrency(n) => concurrency::delete(frontend, &call, &n).await,
        Op::GetAccountSettings => concurrency::account_settings(frontend, &call).await,
        Op::CreateEventSourceMapping => mappings::create(frontend, &call).await,
        Op::ListEventSourceMappings => mappings::list(frontend, &call).await,
        Op::GetEventSourceMapping(u) => mappings::get(frontend, &call, &u).await,
        Op::UpdateEventSourceMapping(u) => mappings::update(frontend, &call, &u).await,
        Op::DeleteEventSourceMapping(u) => mappings::delete(frontend, &call, &u).await,
        Op::PutFunctionEventInvokeConfig(n) => event_config::put(frontend, &call, &n).await,
        Op::UpdateFunctionEventInvokeConfig(n) => event_config::update(frontend, &call, &n).await,
        Op::GetFunctionEventInvokeConfig(n) => event_config::get(frontend, &call, &n).await,
        Op::DeleteFunctionEventInvokeConfig(n) => event_config::delete(frontend, &call, &n).await,
        Op::ListFunctionEventInvokeConfigs(n) => event_config::list(frontend, &call, &n).await,
        Op::AddPermission(n) => policy::add(frontend, &call, &n).await,
        Op::RemovePermission(n, sid) => policy::remove(frontend, &call, &n, &sid).await,
        Op::GetPolicy(n) => policy::get(frontend, &call, &n).await,
    }
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    // serde skips unknown fields without checking their bytes; JSON must be UTF-8 throughout.
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::invalid_request_content(format!(
            "Could not parse request body into json: the body is not valid UTF-8 ({e})"
        ))
    })?;
    serde_json::from_str(text).map_err(|e| {
        ApiError::invalid_request_content(format!("Could not parse request body into json: {e}"))
    })
}

fn function_arn(frontend: &Frontend, account_id: &str, name: &str) -> String {
    format!(
        "arn:aws:lambda:{}:{account_id}:function:{name}",
        frontend.config.region
    )
}

fn not_found(arn: &str) -> ApiError {
    ApiError::not_found(format!("Function not found: {arn}"))
}

/// Resolve a `FunctionName` path parameter (and `?Qualifier=`) to an account and name.
fn resolve_target(
    frontend: &Frontend,
    call: &Call,
    raw: &str,
) -> Result<(String, String), ApiError> {
    let r = FunctionRef::parse(raw)?;
    let own = &call.caller.account.id;
    let account = r.account_id.clone().unwrap_or_else(|| own.clone());
    let arn = function_arn(frontend, &account, &r.name);
    if r.region
        .as_deref()
        .is_some_and(|region| region != frontend.config.region)
    {
        return Err(not_found(&arn));
    }
    let query = call.query_param("Qualifier");
    let qualifier = match (r.qualifier.as_deref(), query) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid_parameter(
                "The derived qualifier from the function name does not match the specified \
                 qualifier.",
            ));
        }
        (a, b) => a.or(b),
    };
    match qualifier {
        None | Some("$LATEST") => Ok((account, r.name)),
        // Versions and aliases do not exist yet, so no other qualifier names anything.
        Some(q) => Err(not_found(&format!("{arn}:{q}"))),
    }
}

fn denied(frontend: &Frontend, call: &Call, account: &str, name: &str, action: &str) -> ApiError {
    ApiError::access_denied(format!(
        "User: {} is not authorized to perform: lambda:{action} on resource: {} because \
         no resource-based policy allows the lambda:{action} action",
        call.caller.principal_arn(),
        function_arn(frontend, account, name)
    ))
}

/// Resolve a `FunctionName` to a name in the caller's account, enforcing that callers
/// only reach their own functions.
fn resolve(frontend: &Frontend, call: &Call, raw: &str, action: &str) -> Result<String, ApiError> {
    let (account, name) = resolve_target(frontend, call, raw)?;
    if account != call.caller.account.id {
        return Err(denied(frontend, call, &account, &name, action));
    }
    Ok(name)
}

/// The name of the function `raw` names, which must exist in the caller's account (else
/// `ResourceNotFoundException`, as Lambda checks).
pub(crate) async fn existing_function(
    frontend: &Frontend,
    call: &Call,
    raw: &str,
    action: &str,
) -> Result<String, ApiError> {
    Ok(lookup_for(frontend, call, raw, action).await?.name)
}

/// The function `raw` names in the caller's account, authorized for `action`.
async fn lookup_for(
    frontend: &Frontend,
    call: &Call,
    raw: &str,
    action: &str,
) -> Result<Function, ApiError> {
    let (account, name) = resolve_target(frontend, call, raw)?;
    let own = &call.caller.account.id;
    if &account != own {
        // Another account's function: only Invoke, and only if its policy allows it.
        let invoker = ember_store::policy::Invoker {
            account_id: own,
            service: None,
            source_arn: None,
        };
        if action == "InvokeFunction"
            && let Some(policy) = policy::load(frontend, &account, &name).await?
            && ember_store::policy::allows_invoke(&policy, &invoker)
            && let Some(f) = frontend.store.get_function(&account, &name).await?
        {
            return Ok(f);
        }
        return Err(denied(frontend, call, &account, &name, action));
    }
    frontend
        .store
        .get_function(own, &name)
        .await?
        .ok_or_else(|| not_found(&function_arn(frontend, own, &name)))
}

async fn lookup(frontend: &Frontend, call: &Call, raw: &str) -> Result<Function, ApiError> {
    let action = match call.method {
        Method::GET => "GetFunction",
        Method::DELETE => "DeleteFunction",
        Method::POST => "InvokeFunction",
        _ => "UpdateFunction",
    };
    lookup_for(frontend, call, raw, action).await
}

/// The `FunctionConfiguration` shape.
pub fn configuration(frontend: &Frontend, f: &Function) -> Value {
    let mut c = json!({
        "FunctionName": f.name,
        "FunctionArn": f.arn(&frontend.config.region),
        "Role": f.role,
        "CodeSize": f.code_size,
        "Description": f.description,
        "Timeout": f.timeout,
        "MemorySize": f.memory_size,
        "LastModified": f.last_modified_string(),
        "CodeSha256": hex_to_base64(&f.code_sha256),
        "Version": "$LATEST",
        "TracingConfig": { "Mode": "PassThrough" },
        "RevisionId": f.revision_id,
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": f.architectures,
        "EphemeralStorage": { "Size": f.ephemeral_storage },
        "SnapStart": { "ApplyOn": "None", "OptimizationStatus": "Off" },
        "LoggingConfig": { "LogFormat": "Text", "LogGroup": format!("/aws/lambda/{}", f.name) },
    });
    if let Some(runtime) = &f.runtime {
        c["Runtime"] = json!(runtime);
    }
    if let Some(handler) = &f.handler {
        c["Handler"] = json!(handler);
    }
    if !f.environment.is_empty() {
        c["Environment"] = json!({ "Variables": f.environment });
    }
    if let Some(target) = &f.dead_letter_target_arn {
        c["DeadLetterConfig"] = json!({ "TargetArn": target });
    }
    c
}

/// A function's dead-letter queue must exist when it is configured.
async fn check_dead_letter_queue(
    frontend: &Frontend,
    call: &Call,
    f: &Function,
) -> Result<(), ApiError> {
    match &f.dead_letter_target_arn {
        Some(arn) => event_config::check_destination(frontend, call, arn).await,
        None => Ok(()),
    }
}

fn hex_to_base64(hex_digest: &str) -> String {
    hex::decode(hex_digest)
        .map(|raw| STANDARD.encode(raw))
        .unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FunctionCode {
    zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    s3_bucket: Option<String>,
    image_uri: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateFunctionRequest {
    function_name: String,
    code: FunctionCode,
    publish: Option<bool>,
    package_type: Option<String>,
    architectures: Option<Vec<String>>,
    tags: Option<BTreeMap<String, String>>,
    code_signing_config_arn: Option<String>,
    #[serde(flatten)]
    config: ConfigPatch,
}

fn refuse_publish(publish: Option<bool>) -> Result<(), ApiError> {
    if publish == Some(true) {
        return Err(ApiError::invalid_parameter(
            "Ember does not support publishing versions yet; omit Publish or set it to false",
        ));
    }
    Ok(())
}

/// Decode and validate a code package and, unless `dry_run`, store it durably. CPU- and
/// fsync-heavy, so it runs on the blocking pool.
async fn accept_code(
    frontend: &Frontend,
    zip_base64: &str,
    dry_run: bool,
) -> Result<PackageInfo, ApiError> {
    let zip = STANDARD
        .decode(zip_base64.trim())
        .map_err(|_| ApiError::invalid_request_content("Code.ZipFile is not valid base64"))?;
    let limits = frontend.config.code_limits;
    let code = frontend.code.clone();
    tokio::task::spawn_blocking(move || {
        let info = package::inspect(&zip, &limits).map_err(|e| {
            if e.is_server_error() {
                ApiError::internal(e)
            } else {
                ApiError::invalid_parameter(e.to_string())
            }
        })?;
        if !dry_run {
            code.put(&zip, &info).map_err(ApiError::internal)?;
        }
        Ok(info)
    })
    .await
    .map_err(ApiError::internal)?
}

fn zip_source(code: &FunctionCode) -> Result<&str, ApiError> {
    if code.s3_bucket.is_some() {
        return Err(ApiError::invalid_parameter(
            "Ember does not support code from S3 buckets yet; send Code.ZipFile",
        ));
    }
    if code.image_uri.is_some() {
        return Err(ApiError::invalid_parameter(
            "Ember does not support container images; send Code.ZipFile",
        ));
    }
    code.zip_file
        .as_deref()
        .ok_or_else(|| ApiError::invalid_parameter("Please provide a source for function code."))
}

/// A CreateFunction request, decoded and checked: the function to create (without its
/// code hash yet) and the base64 zip. Pure, so it can be fuzzed on its own.
pub fn decode_create_function(
    body: &[u8],
    caller_account: &str,
) -> Result<(Function, String), ApiError> {
    let request: CreateFunctionRequest = parse_json(body)?;
    let own = caller_account.to_owned();
    let r = FunctionRef::parse(&request.function_name)?;
    if r.qualifier.is_some() {
        return Err(ApiError::invalid_parameter(
            "FunctionName must not carry a qualifier when creating a function",
        ));
    }
    if let Some(other) = r.account_id.as_deref().filter(|a| *a != own) {
        return Err(ApiError::access_denied(format!(
            "User: arn:aws:iam::{own}:root is not authorized to perform: lambda:CreateFunction \
             on resource: {}:function:{}",
            other, r.name
        )));
    }
    refuse_publish(request.publish)?;
    if request.package_type.as_deref().is_some_and(|p| p != "Zip") {
        return Err(ApiError::invalid_parameter(
            "Ember supports PackageType Zip only",
        ));
    }
    if request.code_signing_config_arn.is_some() {
        return Err(ApiError::invalid_parameter(
            "Ember does not support CodeSigningConfigArn",
        ));
    }
    let architectures = request
        .architectures
        .unwrap_or_else(|| vec![config::native_architecture().to_owned()]);
    config::check_architectures(&architectures)?;
    let tags = request.tags.unwrap_or_default();
    config::check_tags(&tags)?;
    if request.config.runtime.is_none() || request.config.handler.is_none() {
        return Err(ApiError::invalid_parameter(
            "Runtime and Handler are mandatory parameters for functions created with deployment \
             packages.",
        ));
    }
    let zip = zip_source(&request.code)?.to_owned();

    let mut function = Function {
        account_id: own.clone(),
        name: r.name,
        runtime: None,
        handler: None,
        role: format!("arn:aws:iam::{own}:role/ember-default"),
        description: String::new(),
        timeout: config::DEFAULT_TIMEOUT,
        memory_size: config::DEFAULT_MEMORY,
        ephemeral_storage: config::DEFAULT_EPHEMERAL,
        environment: BTreeMap::new(),
        architectures,
        tags,
        code_sha256: String::new(),
        code_size: 0,
        last_modified: time::OffsetDateTime::now_utc(),
        revision_id: new_revision_id(),
        dead_letter_target_arn: None,
    };
    request.config.apply(&mut function)?;
    Ok((function, zip))
}

async fn create_function(frontend: &Frontend, call: &Call) -> Result<Response, ApiError> {
    let (mut function, zip) = decode_create_function(&call.body, &call.caller.account.id)?;
    check_host_runtime(frontend, &function)?;
    check_dead_letter_queue(frontend, call, &function).await?;
    let own = call.caller.account.id.clone();
    // Cheap early answer for the common mistake, before unzipping anything.
    if frontend
        .store
        .get_function(&own, &function.name)
        .await?
        .is_some()
    {
        return Err(function_exists(&function.name));
    }

    let _gc = frontend.code_gc.lock().await;
    let info = accept_code(frontend, &zip, false).await?;
    function.code_sha256 = info.sha256_hex();
    function.code_size = info.size;
    if let Err(e) = frontend.store.create_function(&function).await {
        collect_code(frontend, &function.code_sha256).await;
        return Err(match e {
            StoreError::AlreadyExists(_) => function_exists(&function.name),
            e => e.into(),
        });
    }
    tracing::info!(account = %own, function = %function.name, "created function");
    frontend.notify_function(&function.account_id, &function.name);
    Ok(json_response(
        StatusCode::CREATED,
        &configuration(frontend, &function),
    ))
}

/// A runtime Lambda knows but this node cannot run is refused when it is configured, not
/// at the first invocation.
fn check_host_runtime(frontend: &Frontend, f: &Function) -> Result<(), ApiError> {
    let runtimes = frontend.worker.runtimes();
    match f.runtime.as_deref() {
        Some(runtime) if runtimes.get(runtime).is_none() => {
            Err(ApiError::invalid_parameter(format!(
                "The runtime parameter of {runtime} is not available on this Ember node. \
                 Available runtimes: {}",
                runtimes.names().collect::<Vec<_>>().join(", ")
            )))
        }
        _ => Ok(()),
    }
}

fn function_exists(name: &str) -> ApiError {
    ApiError::conflict(format!("Function already exist: {name}"))
}

async fn get_function(frontend: &Frontend, call: &Call, raw: &str) -> Result<Response, ApiError> {
    let f = lookup(frontend, call, raw).await?;
    let path = format!(
        "/{API_VERSION}/functions/{}/code",
        percent_encoding::utf8_percent_encode(&f.name, percent_encoding::NON_ALPHANUMERIC)
    );
    let endpoint = call.endpoint();
    let host = endpoint.trim_start_matches("http://");
    let uri: http::Uri = path.parse().map_err(ApiError::internal)?;
    let query = ember_sigv4::presign(
        &Method::GET,
        &uri,
        host,
        &ember_sigv4::Credentials {
            access_key_id: &call.caller.key.access_key_id,
            secret_access_key: &call.caller.key.secret_access_key,
        },
        &frontend.config.region,
        "lambda",
        time::OffsetDateTime::now_utc(),
        CODE_URL_EXPIRY_SECS,
    );
    let mut body = json!({
        "Configuration": configuration(frontend, &f),
        "Code": { "RepositoryType": "S3", "Location": format!("{endpoint}{path}?{query}") },
    });
    if !f.tags.is_empty() {
        body["Tags"] = json!(f.tags);
    }
    if let Some(c) = concurrency::of_function(frontend, &f).await? {
        body["Concurrency"] = c;
    }
    Ok(json_response(StatusCode::OK, &body))
}

async fn download_code(frontend: &Frontend, call: &Call, raw: &str) -> Result<Response, ApiError> {
    let f = lookup(frontend, call, raw).await?;
    let code = frontend.code.clone();
    let sha = f.code_sha256.clone();
    let zip = tokio::task::spawn_blocking(move || code.read(&sha))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let mut response = Response::new(Body::from(zip));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    Ok(response)
}

async fn list_functions(frontend: &Frontend, call: &Call) -> Result<Response, ApiError> {
    let limit = match call.query_param("MaxItems") {
        None => DEFAULT_PAGE,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=MAX_PAGE as i64).contains(&n) => n as usize,
            _ => {
                return Err(ApiError::invalid_parameter(format!(
                    "1 validation error detected: Value '{}' at 'maxItems' failed to satisfy \
                     constraint: Member must be an integer between 1 and {MAX_PAGE}",
                    names::truncate_for_message(v)
                )));
            }
        },
    };
    let after = match call.query_param("Marker") {
        None | Some("") => None,
        Some(marker) => Some(
            URL_SAFE_NO_PAD
                .decode(marker)
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .filter(|name| names::valid_name(name))
                .ok_or_else(|| ApiError::invalid_parameter("Invalid Marker"))?,
        ),
    };
    if let Some(version) = call.query_param("FunctionVersion")
        && version != "ALL"
    {
        return Err(ApiError::invalid_parameter(
            "FunctionVersion must be ALL when given",
        ));
    }
    let own = &call.caller.account.id;
    // One extra row tells whether another page exists.
    let mut functions = frontend
        .store
        .list_functions(own, after.as_deref(), limit + 1)
        .await?;
    let next = if functions.len() > limit {
        functions.truncate(limit);
        functions.last().map(|f| URL_SAFE_NO_PAD.encode(&f.name))
    } else {
        None
    };
    let list: Vec<Value> = functions
        .iter()
        .map(|f| configuration(frontend, f))
        .collect();
    let mut body = json!({ "Functions": list });
    if let Some(next) = next {
        body["NextMarker"] = json!(next);
    }
    Ok(json_response(StatusCode::OK, &body))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateFunctionCodeRequest {
    zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    s3_bucket: Option<String>,
    image_uri: Option<String>,
    architectures: Option<Vec<String>>,
    publish: Option<bool>,
    dry_run: Option<bool>,
    revision_id: Option<String>,
}

fn check_revision(f: &Function, expected: Option<&str>) -> Result<(), ApiError> {
    match expected {
        Some(r) if r != f.revision_id => Err(ApiError::precondition_failed(
            "The Revision Id provided does not match the latest Revision Id. Call the \
             GetFunction/GetAlias API to retrieve the latest Revision Id",
        )),
        _ => Ok(()),
    }
}

/// Write an updated function, turning a lost race into Lambda's conflict error.
async fn save(frontend: &Frontend, f: &Function, previous_revision: &str) -> Result<(), ApiError> {
    match frontend.store.update_function(f, previous_revision).await {
        Ok(()) => Ok(()),
        Err(StoreError::Conflict) => Err(ApiError::conflict(format!(
            "An update is in progress for resource: {}",
            f.arn(&frontend.config.region)
        ))),
        Err(StoreError::NotFound(_)) => Err(not_found(&f.arn(&frontend.config.region))),
        Err(e) => Err(e.into()),
    }
}

async fn update_function_code(
    frontend: &Frontend,
    call: &Call,
    raw: &str,
) -> Result<Response, ApiError> {
    let request: UpdateFunctionCodeRequest = parse_json(&call.body)?;
    let mut f = lookup(frontend, call, raw).await?;
    check_revision(&f, request.revision_id.as_deref())?;
    refuse_publish(request.publish)?;
    if let Some(architectures) = &request.architectures {
        config::check_architectures(architectures)?;
        f.architectures = architectures.clone();
    }
    let zip = zip_source(&FunctionCode {
        zip_file: request.zip_file,
        s3_bucket: request.s3_bucket,
        image_uri: request.image_uri,
    })?
    .to_owned();
    let previous = std::mem::replace(&mut f.revision_id, new_revision_id());
    let old_sha = f.code_sha256.clone();
    if request.dry_run == Some(true) {
        let info = accept_code(frontend, &zip, true).await?;
        f.code_sha256 = info.sha256_hex();
        f.code_size = info.size;
        return Ok(json_response(StatusCode::OK, &configuration(frontend, &f)));
    }
    let _gc = frontend.code_gc.lock().await;
    let info = accept_code(frontend, &zip, false).await?;
    f.code_sha256 = info.sha256_hex();
    f.code_size = info.size;
    f.last_modified = time::OffsetDateTime::now_utc();
    let saved = save(frontend, &f, &previous).await;
    // Whichever package lost (the old one, or the new one if the save failed) may be unused now.
    collect_code(
        frontend,
        if saved.is_ok() {
            &old_sha
        } else {
            &f.code_sha256
        },
    )
    .await;
    saved?;
    tracing::info!(account = %f.account_id, function = %f.name, "updated function code");
    Ok(json_response(StatusCode::OK, &configuration(frontend, &f)))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateFunctionConfigurationRequest {
    revision_id: Option<String>,
    #[serde(flatten)]
    config: ConfigPatch,
}

async fn update_function_configuration(
    frontend: &Frontend,
    call: &Call,
    raw: &str,
) -> Result<Response, ApiError> {
    let request: UpdateFunctionConfigurationRequest = parse_json(&call.body)?;
    let mut f = lookup(frontend, call, raw).await?;
    check_revision(&f, request.revision_id.as_deref())?;
    request.config.apply(&mut f)?;
    check_host_runtime(frontend, &f)?;
    check_dead_letter_queue(frontend, call, &f).await?;
    let previous = std::mem::replace(&mut f.revision_id, new_revision_id());
    f.last_modified = time::OffsetDateTime::now_utc();
    save(frontend, &f, &previous).await?;
    tracing::info!(account = %f.account_id, function = %f.name, "updated function configuration");
    Ok(json_response(StatusCode::OK, &configuration(frontend, &f)))
}

async fn delete_function(
    frontend: &Frontend,
    call: &Call,
    raw: &str,
) -> Result<Response, ApiError> {
    let name = resolve(frontend, call, raw, "DeleteFunction")?;
    let own = &call.caller.account.id;
    let _gc = frontend.code_gc.lock().await;
    // Its reserved concurrency goes with it (the store cascades; the limiter forgets it).
    let deleted = frontend
        .concurrency
        .deleting_function(frontend.store.as_ref(), own, &name, async {
            frontend
                .store
                .delete_function(own, &name)
                .await?
                .ok_or_else(|| not_found(&function_arn(frontend, own, &name)))
        })
        .await?;
    collect_code(frontend, &deleted.code_sha256).await;
    tracing::info!(account = %own, function = %name, "deleted function");
    frontend.notify_function(own, &name);
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// Remove a code package no function uses any more. The caller holds `code_gc`, so no
/// concurrent create can start using the package between the check and the removal.
/// Failure only leaves a stray file, which start-up collection removes.
async fn collect_code(frontend: &Frontend, sha256_hex: &str) {
    match frontend.store.code_in_use(sha256_hex).await {
        Ok(false) => {
            if let Err(e) = frontend.code.remove(sha256_hex) {
                tracing::warn!(error = %e, sha256 = sha256_hex, "could not remove code package");
            }
        }
        Ok(true) => {}
        Err(e) => tracing::warn!(error = %e, "could not check code package use"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample_function() -> Function {
        Function {
            account_id: "123456789012".into(),
            name: "f".into(),
            runtime: Some("python3.11".into()),
            handler: Some("app.handler".into()),
            role: "arn:aws:iam::123456789012:role/r".into(),
            description: String::new(),
            timeout: 3,
            memory_size: 128,
            ephemeral_storage: 512,
            environment: BTreeMap::new(),
            architectures: vec!["x86_64".into()],
            tags: BTreeMap::new(),
            code_sha256: "00".repeat(32),
            code_size: 1,
            last_modified: time::OffsetDateTime::UNIX_EPOCH,
            revision_id: "r".into(),
            dead_letter_target_arn: None,
        }
    }

    const VALID: &str = r#"{"FunctionName": "f", "Runtime": "python3.11", "Handler": "a.h",
        "Role": "arn:aws:iam::123456789012:role/r", "Code": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="},
        "Timeout": 10, "MemorySize": 256, "Environment": {"Variables": {"AB": "1"}},
        "Tags": {"k": "v"}, "Architectures": ["x86_64"], "EphemeralStorage": {"Size": 1024}}"#;

    #[test]
    fn decodes_a_create_request() {
        let (f, zip) = decode_create_function(VALID.as_bytes(), "123456789012").unwrap();
        assert_eq!(
            (
                f.name.as_str(),
                f.timeout,
                f.memory_size,
                f.ephemeral_storage
            ),
            ("f", 10, 256, 1024)
        );
        assert_eq!(zip, "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==");
        for (body, code) in [
            ("{", "InvalidRequestContentException"),
            (r#"{"FunctionName": 5}"#, "InvalidRequestContentException"),
            (
                r#"{"FunctionName": "f", "Code": {}, "Runtime": "python3.11", "Handler": "a"}"#,
                "InvalidParameterValueException",
            ),
            (
                r#"{"FunctionName": "f", "Code": {"ZipFile": ""}, "Runtime": "cobol", "Handler": "a"}"#,
                "InvalidParameterValueException",
            ),
            (
                r#"{"FunctionName": "999999999999:function:f", "Code": {"ZipFile": ""}, "Runtime": "python3.11", "Handler": "a"}"#,
                "AccessDeniedException",
            ),
        ] {
            assert_eq!(
                decode_create_function(body.as_bytes(), "123456789012")
                    .unwrap_err()
                    .code,
                code,
                "{body}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn create_decoder_never_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode_create_function(&body, "123456789012");
        }

        #[test]
        fn create_decoder_survives_mutated_requests(cut in 0..VALID.len(), byte in proptest::prelude::any::<u8>()) {
            let mut body = VALID.as_bytes().to_vec();
            body[cut] = byte;
            let _ = decode_create_function(&body, "123456789012");
            let _ = decode_create_function(&body[..cut], "123456789012");
        }
    }

    #[test]
    fn lambda_paths() {
        assert!(owns_path("/2015-03-31/functions"));
        assert!(owns_path("/2017-10-31/functions/x/concurrency"));
        assert!(!owns_path("/ember/health"));
        assert!(!owns_path("/2015-3-31/functions"));
        let segs = |p: &str| crate::protocol::decode_segments(p).unwrap();
        let op = |m: Method, p: &str| match route(&m, &segs(p)).map(|r| r.operation) {
            Ok(Operation::Lambda(op)) => Some(op),
            _ => None,
        };
        assert_eq!(
            op(Method::POST, "/2015-03-31/functions/"),
            Some(Op::CreateFunction)
        );
        assert_eq!(
            op(
                Method::GET,
                "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Af/configuration"
            ),
            Some(Op::GetFunctionConfiguration(
                "arn:aws:lambda:us-east-1:123456789012:function:f".into()
            ))
        );
        assert_eq!(
            op(Method::PUT, "/2017-10-31/functions/f/concurrency"),
            Some(Op::PutFunctionConcurrency("f".into()))
        );
        assert_eq!(
            op(Method::GET, "/2019-09-30/functions/f/concurrency"),
            Some(Op::GetFunctionConcurrency("f".into()))
        );
        assert_eq!(
            op(Method::DELETE, "/2017-10-31/functions/f/concurrency"),
            Some(Op::DeleteFunctionConcurrency("f".into()))
        );
        assert_eq!(
            op(Method::GET, "/2016-08-19/account-settings"),
            Some(Op::GetAccountSettings)
        );
        assert_eq!(op(Method::GET, "/2017-10-31/functions/f/concurrency"), None);
        assert_eq!(op(Method::PATCH, "/2015-03-31/functions/f"), None);
        assert_eq!(op(Method::GET, "/2015-03-31/functions/f/bogus"), None);
    }
}
