//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`), both sides of it.
//!
//! * **Signing** ([`sign`], [`sign_with`], [`presign`]) is used by Ember's own CLI client
//!   to authenticate its requests, exactly as an AWS SDK would.
//! * **Verification** ([`parse`] then [`verify`]) is used by Ember's HTTP frontend to
//!   authenticate requests made by boto3/botocore, the aws CLI, any AWS SDK, or
//!   Ember's CLI.
//!
//! # Why verification recomputes
//!
//! A SigV4 signature is an HMAC-SHA256 over a *canonical* form of the request (method,
//! path, query, a chosen set of headers, and the payload hash), keyed by a key derived
//! from the secret access key and the credential scope (date, region, service). It is
//! not a public-key signature: there is nothing to "check" except by producing it again.
//! So the server parses what the request claims ([`parse`]: access key, scope, signed
//! header names, date, signature — no secret needed), looks up the secret for that
//! access key itself, rebuilds the canonical request from the bytes it received,
//! recomputes the signature and compares it in constant time ([`verify`]).
//!
//! Recomputing only works if both sides canonicalize byte-for-byte identically, so the
//! rules here follow botocore (the reference the aws CLI uses), including its quirks:
//!
//! * Canonical URI: for every service but S3, the raw (already percent-encoded) path,
//!   with `.`/`..` and empty segments removed, percent-encoded *again* (a client-sent
//!   `%3A` is signed as `%253A`). S3 signs the raw path as is.
//! * Canonical query: pairs percent-decoded, re-encoded with the AWS rule (everything but
//!   `A-Za-z0-9-_.~`), sorted by key then value. `+` is a literal plus, not a space.
//! * Canonical headers: the signed names, each with all its values trimmed, inner
//!   whitespace runs collapsed, joined with `,`.
//! * Payload hash: the `x-amz-content-sha256` header if sent (checked against the body
//!   when it is a digest), else `UNSIGNED-PAYLOAD` for presigned S3 URLs, else the
//!   SHA-256 of the body.
//!
//! The request time must be within [`MAX_CLOCK_SKEW`] of the server's clock (for
//! presigned URLs: not in the future by more than that, and not older than
//! `X-Amz-Expires`), which together with the signature bounds replay.
//!
//! This crate does not decide whether the access key exists, nor whether the scope's
//! region and service are the ones the server serves: the caller checks
//! [`Claim::access_key_id`] and [`Claim::scope`].

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue};
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

mod canonical;
mod date;
mod error;

use canonical::{
    CanonicalRequest, aws_encode, canonical_headers, canonical_query, canonical_uri, query_pairs,
    sha256_hex, signature,
};
pub use error::AuthError;

/// The only algorithm SigV4 defines.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Payload hash placeholder for requests whose body is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// How far the request time may be from the server's clock, either way.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(15);

/// The largest `X-Amz-Expires` a presigned URL may carry: one week.
pub const MAX_PRESIGN_EXPIRES: u64 = 604_800;

const X_AMZ_DATE: &str = "x-amz-date";
const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";
const X_AMZ_SECURITY_TOKEN: &str = "x-amz-security-token";

const Q_ALGORITHM: &str = "X-Amz-Algorithm";
const Q_CREDENTIAL: &str = "X-Amz-Credential";
const Q_DATE: &str = "X-Amz-Date";
const Q_EXPIRES: &str = "X-Amz-Expires";
const Q_SIGNED_HEADERS: &str = "X-Amz-SignedHeaders";
const Q_SIGNATURE: &str = "X-Amz-Signature";
const Q_SECURITY_TOKEN: &str = "X-Amz-Security-Token";

/// An access key pair.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// A request as received or sent on the wire.
///
/// `uri` carries the RAW (still percent-encoded) path and query, as in the request
/// line. The `host` header may be absent if `uri` has an authority (HTTP/2 `:authority`).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

/// The credential scope of a signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// `yyyymmdd`.
    pub date: String,
    pub region: String,
    pub service: String,
}

impl Scope {
    /// `date/region/service/aws4_request`.
    pub fn credential_scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// What a request claims about its signature, parsed from the `Authorization` header or
/// from the presigned query form (`X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
/// `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Signature`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub access_key_id: String,
    pub scope: Scope,
    /// Lowercase, sorted, always containing `host`; each is present in the request.
    pub signed_headers: Vec<String>,
    /// As sent (normally 64 lowercase hex digits).
    pub signature: String,
    /// The request time in ISO 8601 basic format (`20150830T123600Z`), as signed.
    pub amz_date: String,
    /// The request time: `X-Amz-Date`, or the `Date` header.
    pub time: OffsetDateTime,
    /// Whether the signature came in the query string (a presigned URL).
    pub presigned: bool,
    /// `X-Amz-Expires` of a presigned URL (at most [`MAX_PRESIGN_EXPIRES`]).
    pub expires_secs: Option<u64>,
    /// `x-amz-security-token` header / `X-Amz-Security-Token` parameter, if any
    /// (temporary credentials; the caller decides what to do with it).
    pub security_token: Option<String>,
}

/// Parses the signature a request claims. Cheap, needs no secret: the server then looks
/// up the secret for `claim.access_key_id` and calls [`verify`].
///
/// Checks everything that can be checked without the secret and the clock: the
/// algorithm, the presence and shape of `Credential`/`SignedHeaders`/`Signature`, the
/// date (and that it matches the scope date), that `host` is signed and that every
/// signed header is present.
pub fn parse(req: &Request) -> Result<Claim, AuthError> {
    let mut authorizations = req.headers.get_all(http::header::AUTHORIZATION).iter();
    let authorization = authorizations.next();
    if authorizations.next().is_some() {
        return Err(AuthError::incomplete(
            "Only one Authorization header is allowed.",
        ));
    }
    let query = req.uri.query().unwrap_or("");
    let query_form = query_pairs(query).any(|(key, _)| {
        [Q_ALGORITHM, Q_CREDENTIAL, Q_SIGNATURE]
            .iter()
            .any(|k| key.as_ref() == k.as_bytes())
    });
    match (authorization, query_form) {
        (None, false) => Err(AuthError::MissingAuthenticationToken),
        (Some(_), true) => Err(AuthError::incomplete(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, \
             Signature query string parameter or the Authorization header should be specified",
        )),
        (Some(value), false) => parse_authorization_header(value, req),
        (None, true) => parse_query_form(query, req),
    }
}

fn parse_authorization_header(value: &HeaderValue, req: &Request) -> Result<Claim, AuthError> {
    let value = value.to_str().map_err(|_| {
        AuthError::incomplete("Authorization header contains non-ASCII or control characters.")
    })?;
    let value = value.trim();
    let (algorithm, params) = value
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(AuthError::incomplete(format!(
            "Unsupported Authorization algorithm '{}'; only {ALGORITHM} is supported.",
            snippet(algorithm)
        )));
    }

    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, val)) = part.split_once('=') else {
            return Err(AuthError::incomplete(
                "Invalid key=value pair (missing equal-sign) in Authorization header.",
            ));
        };
        let key = key.trim();
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.is_some() {
            return Err(AuthError::incomplete(format!(
                "Authorization header contains more than one '{key}' parameter."
            )));
        }
        *slot = Some(val.trim()).filter(|v| !v.is_empty());
    }

    let date = header_date(req);
    let mut missing = Vec::new();
    for (param, name) in [
        (&credential, "Credential"),
        (&signature, "Signature"),
        (&signed_headers, "SignedHeaders"),
    ] {
        if param.is_none() {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    if matches!(date, Ok(None)) {
        missing.push(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                .to_owned(),
        );
    }
    let (Some(credential), Some(signed_headers), Some(signature), Some(time)) =
        (credential, signed_headers, signature, date?)
    else {
        return Err(AuthError::incomplete(missing.join(" ")));
    };

    build_claim(
        req,
        credential,
        signed_headers,
        signature,
        time,
        false,
        None,
    )
}

/// The request time of the header form: `x-amz-date`, or else `Date`.
fn header_date(req: &Request) -> Result<Option<OffsetDateTime>, AuthError> {
    if let Some(v) = req.headers.get(X_AMZ_DATE) {
        return v
            .to_str()
            .ok()
            .and_then(date::parse_amz_date)
            .map(Some)
            .ok_or_else(|| AuthError::incomplete(BAD_AMZ_DATE));
    }
    if let Some(v) = req.headers.get(http::header::DATE) {
        return v
            .to_str()
            .ok()
            .and_then(date::parse_http_date)
            .map(Some)
            .ok_or_else(|| {
                AuthError::incomplete(
                    "Date must be in the RFC 1123 format, e.g. 'Sun, 30 Aug 2015 12:36:00 GMT'.",
                )
            });
    }
    Ok(None)
}

const BAD_AMZ_DATE: &str = "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"";

fn parse_query_form(query: &str, req: &Request) -> Result<Claim, AuthError> {
    const KEYS: [&str; 7] = [
        Q_ALGORITHM,
        Q_CREDENTIAL,
        Q_DATE,
        Q_EXPIRES,
        Q_SIGNED_HEADERS,
        Q_SIGNATURE,
        Q_SECURITY_TOKEN,
    ];
    let mut values: [Option<String>; 7] = Default::default();
    for (key, value) in query_pairs(query) {
        let Some(i) = KEYS.iter().position(|k| key.as_ref() == k.as_bytes()) else {
            continue;
        };
        if values[i].is_some() {
            return Err(AuthError::incomplete(format!(
                "Query string contains more than one '{}' parameter.",
                KEYS[i]
            )));
        }
        let value = String::from_utf8(value.into_owned())
            .map_err(|_| AuthError::incomplete(format!("'{}' is not valid UTF-8.", KEYS[i])))?;
        values[i] = Some(value);
    }
    let [
        algorithm,
        credential,
        date,
        expires,
        signed_headers,
        signature,
        token,
    ] = values.map(|v| v.filter(|v| !v.is_empty()));

    let (Some(algorithm), Some(credential), Some(date), Some(signed_headers), Some(signature)) =
        (algorithm, credential, date, signed_headers, signature)
    else {
        return Err(AuthError::incomplete(
            "AWS query-string parameters must include 'X-Amz-Algorithm', 'X-Amz-Credential', \
             'X-Amz-Signature', 'X-Amz-Date', 'X-Amz-SignedHeaders'. \
             Re-examine the query-string parameters.",
        ));
    };
    if algorithm != ALGORITHM {
        return Err(AuthError::incomplete(format!(
            "Unsupported X-Amz-Algorithm '{}'; only {ALGORITHM} is supported.",
            snippet(&algorithm)
        )));
    }
    let time = date::parse_amz_date(&date).ok_or_else(|| AuthError::incomplete(BAD_AMZ_DATE))?;
    let expires = match expires {
        None => None,
        Some(e) => {
            let secs = Some(e.as_str())
                .filter(|e| e.len() <= 19 && e.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|e| e.parse::<u64>().ok())
                .ok_or_else(|| AuthError::incomplete("X-Amz-Expires should be a number"))?;
            if secs > MAX_PRESIGN_EXPIRES {
                return Err(AuthError::incomplete(
                    "X-Amz-Expires must be less than a week (in seconds) that is 604800",
                ));
            }
            Some(secs)
        }
    };
    let mut claim = build_claim(
        req,
        &credential,
        &signed_headers,
        &signature,
        time,
        true,
        expires,
    )?;
    if token.is_some() {
        claim.security_token = token;
    }
    Ok(claim)
}

fn build_claim(
    req: &Request,
    credential: &str,
    signed_headers: &str,
    signature: &str,
    time: OffsetDateTime,
    presigned: bool,
    expires_secs: Option<u64>,
) -> Result<Claim, AuthError> {
    let (access_key_id, scope) = parse_credential(credential)?;
    let amz_date = date::format_amz_date(time);
    if scope.date != amz_date[..8] {
        return Err(AuthError::incomplete(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{}' != '{}', from '{amz_date}'.",
            snippet(&scope.date),
            &amz_date[..8]
        )));
    }
    let signed_headers = parse_signed_headers(signed_headers, req)?;
    let security_token = req
        .headers
        .get(X_AMZ_SECURITY_TOKEN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(Claim {
        access_key_id,
        scope,
        signed_headers,
        signature: signature.to_owned(),
        amz_date,
        time,
        presigned,
        expires_secs,
        security_token,
    })
}

fn parse_credential(credential: &str) -> Result<(String, Scope), AuthError> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = parts.as_slice() else {
        return Err(AuthError::incomplete(format!(
            "Credential should have the form '<access key id>/<yyyymmdd>/<region>/<service>/aws4_request', \
             not '{}'.",
            snippet(credential)
        )));
    };
    if access_key_id.is_empty() {
        return Err(AuthError::incomplete(
            "Credential should contain an access key id.",
        ));
    }
    if region.is_empty() {
        return Err(AuthError::incomplete(
            "Credential should be scoped to a valid region.",
        ));
    }
    if service.is_empty() {
        return Err(AuthError::incomplete(
            "Credential should be scoped to a valid service.",
        ));
    }
    if *terminator != "aws4_request" {
        return Err(AuthError::incomplete(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'.",
            snippet(terminator)
        )));
    }
    Ok((
        (*access_key_id).to_owned(),
        Scope {
            date: (*date).to_owned(),
            region: (*region).to_owned(),
            service: (*service).to_owned(),
        },
    ))
}

fn parse_signed_headers(list: &str, req: &Request) -> Result<Vec<String>, AuthError> {
    let names: Vec<&str> = list.split(';').collect();
    let well_formed = names.iter().all(|n| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase())
    }) && names.windows(2).all(|w| w[0] < w[1]);
    if !well_formed {
        return Err(AuthError::incomplete(
            "SignedHeaders must be a ';'-separated list of distinct lowercase header names \
             in sorted order.",
        ));
    }
    if !names.contains(&"host") {
        return Err(AuthError::incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    for name in &names {
        if header_values(req, name).is_empty() {
            return Err(AuthError::incomplete(format!(
                "Header '{}' is listed in SignedHeaders but is not present in the request.",
                snippet(name)
            )));
        }
    }
    Ok(names.into_iter().map(str::to_owned).collect())
}

/// All values of header `name`; for `host`, falls back to the URI authority.
fn header_values<'r>(req: &Request<'r>, name: &str) -> Vec<&'r [u8]> {
    let values: Vec<&[u8]> = req
        .headers
        .get_all(name)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let use_authority = values.is_empty() && name == "host";
    if let Some(authority) = req.uri.authority().filter(|_| use_authority) {
        return vec![authority.as_str().as_bytes()];
    }
    values
}

/// At most 64 characters of a client-supplied value, for error messages.
fn snippet(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Verifies a parsed claim against the request it came from, with the secret access key
/// of `claim.access_key_id`, at server time `now`.
///
/// Checks, in order: the request time (±[`MAX_CLOCK_SKEW`], or `X-Amz-Expires` for a
/// presigned URL), the `x-amz-content-sha256` header against the body, and finally the
/// signature itself, recomputed and compared in constant time.
pub fn verify(
    claim: &Claim,
    req: &Request,
    secret_access_key: &str,
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    check_time(claim, now)?;
    let payload_hash = payload_hash(claim, req)?;
    let uri = canonical_uri(req.uri.path(), &claim.scope.service);
    let query = canonical_query(
        req.uri.query().unwrap_or(""),
        claim.presigned.then_some(Q_SIGNATURE),
    );
    let headers = canonical_headers(
        claim
            .signed_headers
            .iter()
            .map(|name| (name.as_str(), header_values(req, name))),
    );
    let signed_headers = claim.signed_headers.join(";");
    let hash = CanonicalRequest {
        method: req.method.as_str(),
        uri: &uri,
        query: &query,
        headers: &headers,
        signed_headers: &signed_headers,
        payload_hash: &payload_hash,
    }
    .hash();
    let expected = signature(secret_access_key, &claim.scope, &claim.amz_date, &hash);
    if bool::from(expected.as_bytes().ct_eq(claim.signature.as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::SignatureDoesNotMatch)
    }
}

fn check_time(claim: &Claim, now: OffsetDateTime) -> Result<(), AuthError> {
    let fmt = date::format_amz_date;
    let t = claim.time;
    if let Some(latest) = now.checked_add(MAX_CLOCK_SKEW).filter(|l| t > *l) {
        return Err(AuthError::SignatureNotYetCurrent(format!(
            "Signature not yet current: {} is still later than {} ({} + 15 min.)",
            fmt(t),
            fmt(latest),
            fmt(now)
        )));
    }
    let (window, window_text) = match (claim.presigned, claim.expires_secs) {
        (true, Some(secs)) => (
            Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX)),
            format!("{secs} sec."),
        ),
        _ => (MAX_CLOCK_SKEW, "15 min.".to_owned()),
    };
    if let Some(earliest) = now.checked_sub(window).filter(|e| t < *e) {
        return Err(AuthError::SignatureExpired(format!(
            "Signature expired: {} is now earlier than {} ({} - {window_text})",
            fmt(t),
            fmt(earliest),
            fmt(now)
        )));
    }
    Ok(())
}

fn payload_hash(claim: &Claim, req: &Request) -> Result<String, AuthError> {
    let Some(sent) = req.headers.get(X_AMZ_CONTENT_SHA256) else {
        return Ok(if claim.presigned && claim.scope.service == "s3" {
            UNSIGNED_PAYLOAD.to_owned()
        } else {
            sha256_hex(req.body)
        });
    };
    let sent = sent
        .to_str()
        .map_err(|_| AuthError::UnsupportedContentSha256)?;
    if sent == UNSIGNED_PAYLOAD {
        return Ok(sent.to_owned());
    }
    if sent.len() != 64 || !sent.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthError::UnsupportedContentSha256);
    }
    if !sent.eq_ignore_ascii_case(&sha256_hex(req.body)) {
        return Err(AuthError::ContentSha256Mismatch);
    }
    Ok(sent.to_owned())
}

/// Signs a request; returns the headers to add to it (insert them, replacing any
/// existing ones): `authorization`, `x-amz-date`, and for S3 `x-amz-content-sha256`.
///
/// Same as [`sign_with`] with `sign_content_sha256 = (service == "s3")`.
pub fn sign(
    req: &Request,
    creds: &Credentials,
    region: &str,
    service: &str,
    now: OffsetDateTime,
) -> Vec<(HeaderName, HeaderValue)> {
    sign_with(req, creds, region, service, now, service == "s3")
}

/// Signs a request; returns the headers to add to it (insert them, replacing any
/// existing ones): `authorization`, `x-amz-date`, and — when `sign_content_sha256` is
/// true and the request has no `x-amz-content-sha256` header yet — `x-amz-content-sha256`
/// with the SHA-256 of the body (as S3 clients send).
///
/// The caller must already have put the `host` header in `req.headers` (or use a `uri`
/// with an authority). Signed headers: `host`, `content-type`, `content-md5` and every
/// `x-amz-*` header present, plus the new `x-amz-date` (an existing `x-amz-date` is
/// superseded). An existing `x-amz-content-sha256` (e.g. `UNSIGNED-PAYLOAD`) is used as
/// the payload hash.
///
/// # Panics
///
/// If the access key id, region or service contain characters not allowed in a header
/// value (control characters).
pub fn sign_with(
    req: &Request,
    creds: &Credentials,
    region: &str,
    service: &str,
    now: OffsetDateTime,
    sign_content_sha256: bool,
) -> Vec<(HeaderName, HeaderValue)> {
    let amz_date = date::format_amz_date(now);
    let scope = Scope {
        date: amz_date[..8].to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
    };
    let existing_hash = req.headers.get(X_AMZ_CONTENT_SHA256);
    let payload_hash = match existing_hash {
        Some(v) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
        None => sha256_hex(req.body),
    };
    let add_content_sha256 = sign_content_sha256 && existing_hash.is_none();

    let mut signed: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
    for (name, value) in req.headers {
        let name = name.as_str();
        let wanted = matches!(name, "host" | "content-type" | "content-md5")
            || (name.starts_with("x-amz-") && name != X_AMZ_DATE);
        if wanted {
            signed.entry(name).or_default().push(value.as_bytes());
        }
    }
    let has_host = signed.contains_key("host");
    if let Some(authority) = req.uri.authority().filter(|_| !has_host) {
        signed.insert("host", vec![authority.as_str().as_bytes()]);
    }
    signed.insert(X_AMZ_DATE, vec![amz_date.as_bytes()]);
    if add_content_sha256 {
        signed.insert(X_AMZ_CONTENT_SHA256, vec![payload_hash.as_bytes()]);
    }

    let signed_headers = signed.keys().copied().collect::<Vec<_>>().join(";");
    let headers = canonical_headers(signed.iter().map(|(name, values)| (*name, values.clone())));
    let uri = canonical_uri(req.uri.path(), service);
    let query = canonical_query(req.uri.query().unwrap_or(""), None);
    let hash = CanonicalRequest {
        method: req.method.as_str(),
        uri: &uri,
        query: &query,
        headers: &headers,
        signed_headers: &signed_headers,
        payload_hash: &payload_hash,
    }
    .hash();
    let sig = signature(creds.secret_access_key, &scope, &amz_date, &hash);

    let authorization = format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={signed_headers}, Signature={sig}",
        creds.access_key_id,
        scope.credential_scope()
    );
    let mut out = vec![
        (
            http::header::AUTHORIZATION,
            HeaderValue::try_from(authorization)
                .expect("access key id, region and service must be valid in a header value"),
        ),
        (
            HeaderName::from_static(X_AMZ_DATE),
            HeaderValue::try_from(amz_date).expect("an ISO 8601 date is a valid header value"),
        ),
    ];
    if add_content_sha256 {
        out.push((
            HeaderName::from_static(X_AMZ_CONTENT_SHA256),
            HeaderValue::try_from(payload_hash).expect("a hex digest is a valid header value"),
        ));
    }
    out
}

/// Presigns a URL (the query-string form), valid for `expires_secs` (capped at
/// [`MAX_PRESIGN_EXPIRES`]) from `now`.
///
/// `uri` is the raw path plus optional existing query; `host` is the value of the `host`
/// header the URL will be requested with (the only signed header). Returns the complete
/// query string to put after `?` (already encoded): the existing query parameters (minus
/// any old `X-Amz-*` signature parameters), then `X-Amz-Algorithm`, `X-Amz-Credential`,
/// `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders` and last `X-Amz-Signature`.
///
/// The payload hash is `UNSIGNED-PAYLOAD` for S3; for other services it is the hash of an
/// empty body (as botocore's `SigV4QueryAuth` signs a body-less request), so the URL is
/// valid for body-less requests only — which is what [`verify`] expects.
#[allow(clippy::too_many_arguments)]
pub fn presign(
    method: &http::Method,
    uri: &http::Uri,
    host: &str,
    creds: &Credentials,
    region: &str,
    service: &str,
    now: OffsetDateTime,
    expires_secs: u64,
) -> String {
    const AUTH_PARAMS: [&str; 7] = [
        Q_ALGORITHM,
        Q_CREDENTIAL,
        Q_DATE,
        Q_EXPIRES,
        Q_SIGNED_HEADERS,
        Q_SIGNATURE,
        Q_SECURITY_TOKEN,
    ];
    let expires = expires_secs.min(MAX_PRESIGN_EXPIRES);
    let amz_date = date::format_amz_date(now);
    let scope = Scope {
        date: amz_date[..8].to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
    };

    let mut query = String::new();
    for pair in uri.query().unwrap_or("").split('&') {
        if pair.is_empty() {
            continue;
        }
        let is_auth_param = query_pairs(pair)
            .next()
            .is_some_and(|(key, _)| AUTH_PARAMS.iter().any(|p| key.as_ref() == p.as_bytes()));
        if !is_auth_param {
            query.push_str(pair);
            query.push('&');
        }
    }
    let credential = format!("{}/{}", creds.access_key_id, scope.credential_scope());
    query.push_str(&format!(
        "{Q_ALGORITHM}={ALGORITHM}&{Q_CREDENTIAL}={}&{Q_DATE}={amz_date}&{Q_EXPIRES}={expires}\
         &{Q_SIGNED_HEADERS}=host",
        aws_encode(credential.as_bytes())
    ));

    let payload_hash = if service == "s3" {
        UNSIGNED_PAYLOAD.to_owned()
    } else {
        sha256_hex(b"")
    };
    let uri_c = canonical_uri(uri.path(), service);
    let query_c = canonical_query(&query, None);
    let headers = canonical_headers([("host", [host.as_bytes()])]);
    let hash = CanonicalRequest {
        method: method.as_str(),
        uri: &uri_c,
        query: &query_c,
        headers: &headers,
        signed_headers: "host",
        payload_hash: &payload_hash,
    }
    .hash();
    let sig = signature(creds.secret_access_key, &scope, &amz_date, &hash);
    query.push_str(&format!("&{Q_SIGNATURE}={sig}"));
    query
}
