//! Sign/presign with this crate, then parse + verify; tampering, clock skew, expiry and
//! malformed input.

mod common;

use common::{Owned, at};
use ember_sigv4::{
    AuthError, Claim, Credentials, MAX_PRESIGN_EXPIRES, parse, presign, sign, sign_with, verify,
};

/// 2015-08-30T12:36:00Z
const T: i64 = 1_440_938_160;
const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const CREDS: Credentials<'static> = Credentials {
    access_key_id: AKID,
    secret_access_key: SECRET,
};
const INVOKE: &str = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn/invocations?Qualifier=%24LATEST";

fn invoke_request() -> Owned {
    Owned::new(
        "POST",
        INVOKE,
        &[
            ("host", b"localhost:9000"),
            ("content-type", b"application/json"),
            ("x-amz-invocation-type", b"RequestResponse"),
            ("x-amz-meta-repeat", b"one"),
            ("x-amz-meta-repeat", b"  two  "),
            ("user-agent", b"ember-cli/0.1"),
        ],
        br#"{"hello":"world"}"#,
    )
}

fn signed(mut owned: Owned, service: &str) -> Owned {
    let out = sign(&owned.req(), &CREDS, "us-east-1", service, at(T));
    owned.insert_all(out);
    owned
}

fn check(owned: &Owned, secret: &str, now: i64) -> Result<Claim, AuthError> {
    let claim = parse(&owned.req())?;
    verify(&claim, &owned.req(), secret, at(now))?;
    Ok(claim)
}

#[test]
fn sign_then_verify() {
    let owned = signed(invoke_request(), "lambda");
    let claim = check(&owned, SECRET, T).expect("verifies");
    assert_eq!(claim.access_key_id, AKID);
    assert_eq!(claim.scope.date, "20150830");
    assert_eq!(claim.scope.region, "us-east-1");
    assert_eq!(claim.scope.service, "lambda");
    assert_eq!(
        claim.scope.credential_scope(),
        "20150830/us-east-1/lambda/aws4_request"
    );
    assert_eq!(
        claim.signed_headers,
        [
            "content-type",
            "host",
            "x-amz-date",
            "x-amz-invocation-type",
            "x-amz-meta-repeat"
        ]
    );
    assert_eq!(claim.amz_date, "20150830T123600Z");
    assert_eq!(claim.time, at(T));
    assert!(!claim.presigned);
    assert_eq!(claim.expires_secs, None);
    assert_eq!(claim.security_token, None);
    assert_eq!(claim.signature.len(), 64);
    // Not signed for Lambda: no x-amz-content-sha256.
    assert!(!owned.headers.contains_key("x-amz-content-sha256"));
}

#[test]
fn sign_then_verify_s3_with_content_sha256() {
    let owned = signed(
        Owned::new(
            "PUT",
            "/bucket/dir/a%20b%2Bc%3Ad.txt",
            &[
                ("host", b"localhost:9000"),
                ("content-md5", b"XrY7u+Ae7tCTyyK7j1rNww=="),
            ],
            b"hello world",
        ),
        "s3",
    );
    assert_eq!(
        owned.headers["x-amz-content-sha256"],
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    );
    let claim = check(&owned, SECRET, T).expect("verifies");
    assert_eq!(
        claim.signed_headers,
        ["content-md5", "host", "x-amz-content-sha256", "x-amz-date"]
    );

    let mut body = owned.clone();
    body.body = b"hello world!".to_vec();
    assert_eq!(
        check(&body, SECRET, T).unwrap_err(),
        AuthError::ContentSha256Mismatch
    );
}

#[test]
fn sign_with_explicit_content_sha256_choice() {
    let req = invoke_request();
    let with = sign_with(&req.req(), &CREDS, "us-east-1", "lambda", at(T), true);
    assert_eq!(with.len(), 3);
    let mut owned = req.clone();
    owned.insert_all(with);
    check(&owned, SECRET, T).expect("verifies");

    let without = sign_with(&req.req(), &CREDS, "us-east-1", "s3", at(T), false);
    assert_eq!(without.len(), 2);
}

#[test]
fn unsigned_payload_is_accepted_and_does_not_cover_the_body() {
    let mut owned = invoke_request();
    owned.set("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    let mut owned = signed(owned, "lambda");
    check(&owned, SECRET, T).expect("verifies");
    owned.body = b"anything else".to_vec();
    check(&owned, SECRET, T).expect("body is not signed");
}

#[test]
fn streaming_payload_is_rejected() {
    let mut owned = invoke_request();
    owned.set("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
    let owned = signed(owned, "s3");
    let err = check(&owned, SECRET, T).unwrap_err();
    assert_eq!(err, AuthError::UnsupportedContentSha256);
    assert_eq!(err.code(), "InvalidSignatureException");
}

#[test]
fn tampering_is_detected() {
    let owned = signed(invoke_request(), "lambda");

    let mut body = owned.clone();
    body.body = br#"{"hello":"World"}"#.to_vec();
    let mut path = owned.clone();
    path.set_target(&INVOKE.replace("my-fn", "my-fm"));
    let mut query = owned.clone();
    query.set_target(&INVOKE.replace("%24LATEST", "1"));
    let mut added_query = owned.clone();
    added_query.set_target(&format!("{INVOKE}&extra=1"));
    let mut header = owned.clone();
    header.set("x-amz-invocation-type", "Event");
    let mut repeated = owned.clone();
    repeated
        .headers
        .append("x-amz-meta-repeat", "three".parse().unwrap());
    let mut date = owned.clone();
    date.set("x-amz-date", "20150830T123601Z");
    let mut signature = owned.clone();
    let auth = owned.headers["authorization"].to_str().unwrap();
    signature.set("authorization", &auth.replace("Signature=", "Signature=0"));

    for (what, req) in [
        ("body", &body),
        ("path", &path),
        ("query", &query),
        ("added query", &added_query),
        ("header", &header),
        ("repeated header", &repeated),
        ("date", &date),
        ("signature", &signature),
    ] {
        assert_eq!(
            check(req, SECRET, T).unwrap_err(),
            AuthError::SignatureDoesNotMatch,
            "{what}"
        );
    }
    assert_eq!(
        check(&owned, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEX", T).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );

    // Unsigned headers may change freely.
    let mut ua = owned.clone();
    ua.set("user-agent", "something/else");
    ua.set("x-forwarded-for", "10.0.0.1");
    check(&ua, SECRET, T).expect("unsigned headers are not covered");
}

#[test]
fn clock_skew() {
    let owned = signed(invoke_request(), "lambda");
    check(&owned, SECRET, T + 14 * 60).expect("14 minutes late");
    check(&owned, SECRET, T - 14 * 60).expect("14 minutes early");
    check(&owned, SECRET, T + 15 * 60).expect("exactly 15 minutes late");

    let late = check(&owned, SECRET, T + 20 * 60).unwrap_err();
    assert_eq!(
        late.to_string(),
        "Signature expired: 20150830T123600Z is now earlier than 20150830T124100Z \
         (20150830T125600Z - 15 min.)"
    );
    assert!(matches!(late, AuthError::SignatureExpired(_)));
    assert_eq!(late.code(), "InvalidSignatureException");
    assert_eq!(late.status(), 403);
    assert!(matches!(
        check(&owned, SECRET, T + 16 * 60),
        Err(AuthError::SignatureExpired(_))
    ));

    let early = check(&owned, SECRET, T - 16 * 60).unwrap_err();
    assert_eq!(
        early.to_string(),
        "Signature not yet current: 20150830T123600Z is still later than 20150830T123500Z \
         (20150830T122000Z + 15 min.)"
    );
    assert_eq!(early.code(), "InvalidSignatureException");
    assert_eq!(early.status(), 403);
}

#[test]
fn presign_then_verify() {
    let uri: http::Uri = "/2015-03-31/functions/my-fn%3Aprod?Qualifier=prod&x=a%2Fb"
        .parse()
        .unwrap();
    let query = presign(
        &http::Method::GET,
        &uri,
        "localhost:9000",
        &CREDS,
        "us-east-1",
        "lambda",
        at(T),
        300,
    );
    assert!(query.starts_with(
        "Qualifier=prod&x=a%2Fb&X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Flambda%2Faws4_request\
         &X-Amz-Date=20150830T123600Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature="
    ));
    let target = format!("{}?{query}", uri.path());
    let owned = Owned::new("GET", &target, &[("host", b"localhost:9000")], b"");

    let claim = check(&owned, SECRET, T).expect("verifies");
    assert!(claim.presigned);
    assert_eq!(claim.expires_secs, Some(300));
    check(&owned, SECRET, T + 300).expect("valid until expiry");
    let err = check(&owned, SECRET, T + 301).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z \
         (20150830T124101Z - 300 sec.)"
    );
    assert!(matches!(
        check(&owned, SECRET, T - 16 * 60),
        Err(AuthError::SignatureNotYetCurrent(_))
    ));

    let mut host = owned.clone();
    host.set("host", "localhost:9001");
    assert_eq!(
        check(&host, SECRET, T).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    let mut param = owned.clone();
    param.set_target(&target.replace("Qualifier=prod", "Qualifier=dev"));
    assert_eq!(
        check(&param, SECRET, T).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    let mut expires = owned.clone();
    expires.set_target(&target.replace("X-Amz-Expires=300", "X-Amz-Expires=3000"));
    assert_eq!(
        check(&expires, SECRET, T).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    let mut method = owned.clone();
    method.method = http::Method::DELETE;
    assert_eq!(
        check(&method, SECRET, T).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
}

#[test]
fn presign_long_expiry_and_re_presign() {
    let uri: http::Uri = "/bucket/key.txt".parse().unwrap();
    let query = presign(
        &http::Method::GET,
        &uri,
        "s3.local",
        &CREDS,
        "us-east-1",
        "s3",
        at(T),
        10 * MAX_PRESIGN_EXPIRES,
    );
    assert!(query.contains("&X-Amz-Expires=604800&"), "capped: {query}");
    let owned = Owned::new(
        "GET",
        &format!("/bucket/key.txt?{query}"),
        &[("host", b"s3.local")],
        b"",
    );
    check(&owned, SECRET, T + 604_800).expect("valid for a week");
    assert!(matches!(
        check(&owned, SECRET, T + 604_801),
        Err(AuthError::SignatureExpired(_))
    ));

    // Presigning an already presigned URL replaces the old parameters.
    let again: http::Uri = format!("/bucket/key.txt?{query}").parse().unwrap();
    let query2 = presign(
        &http::Method::GET,
        &again,
        "s3.local",
        &CREDS,
        "us-east-1",
        "s3",
        at(T + 60),
        60,
    );
    assert_eq!(query2.matches("X-Amz-Signature=").count(), 1);
    let owned = Owned::new(
        "GET",
        &format!("/bucket/key.txt?{query2}"),
        &[("host", b"s3.local")],
        b"",
    );
    check(&owned, SECRET, T + 60).expect("verifies");
}

#[test]
fn presigned_expires_over_a_week_is_incomplete() {
    let target = "/?X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fs3%2Faws4_request\
        &X-Amz-Date=20150830T123600Z&X-Amz-Expires=604801&X-Amz-SignedHeaders=host\
        &X-Amz-Signature=00";
    let owned = Owned::new("GET", target, &[("host", b"h")], b"");
    let err = parse(&owned.req()).unwrap_err();
    assert_eq!(
        err,
        AuthError::IncompleteSignature(
            "X-Amz-Expires must be less than a week (in seconds) that is 604800".into()
        )
    );
}

#[test]
fn host_from_uri_authority() {
    // HTTP/2 requests carry :authority in the URI instead of a host header.
    let owned = Owned::new(
        "GET",
        "https://localhost:9000/2015-03-31/functions",
        &[],
        b"",
    );
    let owned = signed(owned, "lambda");
    let claim = check(&owned, SECRET, T).expect("verifies");
    assert!(claim.signed_headers.contains(&"host".to_owned()));

    let mut host = owned.clone();
    host.set("host", "localhost:9000");
    check(&host, SECRET, T).expect("same host as a header");
}

#[test]
fn security_token_is_reported() {
    let mut owned = invoke_request();
    owned.set("x-amz-security-token", "session-token");
    let owned = signed(owned, "lambda");
    let claim = check(&owned, SECRET, T).expect("verifies");
    assert_eq!(claim.security_token.as_deref(), Some("session-token"));
    assert!(
        claim
            .signed_headers
            .contains(&"x-amz-security-token".to_owned())
    );
}

#[test]
fn missing_authentication_token() {
    let owned = Owned::new("GET", "/?a=1", &[("host", b"h")], b"");
    let err = parse(&owned.req()).unwrap_err();
    assert_eq!(err, AuthError::MissingAuthenticationToken);
    assert_eq!(err.code(), "MissingAuthenticationTokenException");
    assert_eq!(err.status(), 403);
    assert_eq!(err.to_string(), "Missing Authentication Token");
}

#[test]
fn signature_mismatch_error_shape() {
    let err = AuthError::SignatureDoesNotMatch;
    assert_eq!(err.code(), "InvalidSignatureException");
    assert_eq!(err.status(), 403);
    assert_eq!(
        err.to_string(),
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. \
         Consult the service documentation for details."
    );
    let err = AuthError::ContentSha256Mismatch;
    assert_eq!(err.code(), "InvalidSignatureException");
    assert_eq!(
        err.to_string(),
        "The provided 'x-amz-content-sha256' header does not match what was computed."
    );
}

const GOOD_CREDENTIAL: &str = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";
const GOOD_SIG: &str = "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

fn parse_with_authorization(authorization: &[u8], extra: &[(&str, &[u8])]) -> AuthError {
    let mut headers: Vec<(&str, &[u8])> = vec![
        ("host", b"example.amazonaws.com"),
        ("x-amz-date", b"20150830T123600Z"),
        ("authorization", authorization),
    ];
    headers.extend_from_slice(extra);
    let owned = Owned::new("GET", "/", &headers, b"");
    match parse(&owned.req()) {
        Ok(claim) => panic!(
            "{:?} parsed: {claim:?}",
            String::from_utf8_lossy(authorization)
        ),
        Err(err) => err,
    }
}

fn incomplete(err: AuthError) -> String {
    assert_eq!(err.code(), "IncompleteSignatureException", "{err:?}");
    assert_eq!(err.status(), 400);
    match err {
        AuthError::IncompleteSignature(message) => message,
        other => panic!("not incomplete: {other:?}"),
    }
}

#[test]
fn the_good_header_parses() {
    let owned = Owned::new(
        "GET",
        "/",
        &[
            ("host", b"example.amazonaws.com"),
            ("x-amz-date", b"20150830T123600Z"),
            (
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 {GOOD_CREDENTIAL},SignedHeaders=host;x-amz-date,{GOOD_SIG}"
                )
                .as_bytes(),
            ),
        ],
        b"",
    );
    check(&owned, SECRET, T).expect("get-vanilla, compact commas");
}

#[test]
fn malformed_authorization_headers() {
    let cases: Vec<(String, &str)> = vec![
        (
            format!("AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, {GOOD_SIG}"),
            "Authorization header requires 'Credential' parameter.",
        ),
        (
            format!("AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host;x-amz-date"),
            "Authorization header requires 'Signature' parameter.",
        ),
        (
            format!("AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, {GOOD_SIG}"),
            "Authorization header requires 'SignedHeaders' parameter.",
        ),
        (
            "AWS4-HMAC-SHA256".to_owned(),
            "Authorization header requires 'Credential' parameter. \
             Authorization header requires 'Signature' parameter. \
             Authorization header requires 'SignedHeaders' parameter.",
        ),
        (
            format!("AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=, {GOOD_SIG}"),
            "Authorization header requires 'SignedHeaders' parameter.",
        ),
        (
            format!("AWS4-HMAC-SHA1 {GOOD_CREDENTIAL}, SignedHeaders=host, {GOOD_SIG}"),
            "Unsupported Authorization algorithm 'AWS4-HMAC-SHA1'; only AWS4-HMAC-SHA256 is supported.",
        ),
        (
            "Bearer abc".to_owned(),
            "Unsupported Authorization algorithm 'Bearer'; only AWS4-HMAC-SHA256 is supported.",
        ),
        (
            format!("AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders, {GOOD_SIG}"),
            "Invalid key=value pair (missing equal-sign) in Authorization header.",
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, {GOOD_CREDENTIAL}, SignedHeaders=host, {GOOD_SIG}"
            ),
            "Authorization header contains more than one 'Credential' parameter.",
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service, SignedHeaders=host, {GOOD_SIG}"
            ),
            "Credential should have the form '<access key id>/<yyyymmdd>/<region>/<service>/aws4_request', \
             not 'AKIDEXAMPLE/20150830/us-east-1/service'.",
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws5_request, SignedHeaders=host, {GOOD_SIG}"
            ),
            "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'.",
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential=/20150830/us-east-1/service/aws4_request, SignedHeaders=host, {GOOD_SIG}"
            ),
            "Credential should contain an access key id.",
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830//service/aws4_request, SignedHeaders=host, {GOOD_SIG}"
            ),
            "Credential should be scoped to a valid region.",
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1//aws4_request, SignedHeaders=host, {GOOD_SIG}"
            ),
            "Credential should be scoped to a valid service.",
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150831/us-east-1/service/aws4_request, SignedHeaders=host, {GOOD_SIG}"
            ),
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: \
             '20150831' != '20150830', from '20150830T123600Z'.",
        ),
        (
            format!("AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=x-amz-date, {GOOD_SIG}"),
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=x-amz-date;host, {GOOD_SIG}"
            ),
            "SignedHeaders must be a ';'-separated list of distinct lowercase header names in sorted order.",
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=Host;x-amz-date, {GOOD_SIG}"
            ),
            "SignedHeaders must be a ';'-separated list of distinct lowercase header names in sorted order.",
        ),
        (
            format!("AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host;host, {GOOD_SIG}"),
            "SignedHeaders must be a ';'-separated list of distinct lowercase header names in sorted order.",
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host;;x-amz-date, {GOOD_SIG}"
            ),
            "SignedHeaders must be a ';'-separated list of distinct lowercase header names in sorted order.",
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=content-type;host, {GOOD_SIG}"
            ),
            "Header 'content-type' is listed in SignedHeaders but is not present in the request.",
        ),
    ];
    for (authorization, message) in cases {
        let err = parse_with_authorization(authorization.as_bytes(), &[]);
        assert_eq!(incomplete(err), message, "{authorization}");
    }

    // Non-ASCII header value.
    let err = parse_with_authorization(b"AWS4-HMAC-SHA256 Credential=\xff", &[]);
    assert_eq!(
        incomplete(err),
        "Authorization header contains non-ASCII or control characters."
    );
}

#[test]
fn header_form_requires_a_date() {
    let auth = format!("AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host, {GOOD_SIG}");
    let no_date = Owned::new(
        "GET",
        "/",
        &[
            ("host", b"example.amazonaws.com"),
            ("authorization", auth.as_bytes()),
        ],
        b"",
    );
    assert_eq!(
        incomplete(parse(&no_date.req()).unwrap_err()),
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
    );
}

#[test]
fn bad_dates_are_incomplete() {
    let auth = format!("AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host, {GOOD_SIG}");
    let bad_amz = Owned::new(
        "GET",
        "/",
        &[
            ("host", b"example.amazonaws.com"),
            ("x-amz-date", b"2015-08-30T12:36:00Z"),
            ("authorization", auth.as_bytes()),
        ],
        b"",
    );
    assert_eq!(
        incomplete(parse(&bad_amz.req()).unwrap_err()),
        "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\""
    );
    let bad_date = Owned::new(
        "GET",
        "/",
        &[
            ("host", b"example.amazonaws.com"),
            ("date", b"yesterday"),
            ("authorization", auth.as_bytes()),
        ],
        b"",
    );
    assert_eq!(
        incomplete(parse(&bad_date.req()).unwrap_err()),
        "Date must be in the RFC 1123 format, e.g. 'Sun, 30 Aug 2015 12:36:00 GMT'."
    );
    // x-amz-date wins over Date.
    let both = Owned::new(
        "GET",
        "/",
        &[
            ("host", b"example.amazonaws.com"),
            ("date", b"Mon, 01 Jan 2001 00:00:00 GMT"),
            ("x-amz-date", b"20150830T123600Z"),
            ("authorization", auth.as_bytes()),
        ],
        b"",
    );
    assert_eq!(parse(&both.req()).unwrap().time, at(T));
}

#[test]
fn both_mechanisms_or_two_headers_are_incomplete() {
    let auth = format!("AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host, {GOOD_SIG}");
    let both = Owned::new(
        "GET",
        "/?X-Amz-Signature=abc",
        &[
            ("host", b"example.amazonaws.com"),
            ("x-amz-date", b"20150830T123600Z"),
            ("authorization", auth.as_bytes()),
        ],
        b"",
    );
    assert!(
        incomplete(parse(&both.req()).unwrap_err()).starts_with("Only one auth mechanism allowed")
    );

    let err = parse_with_authorization(auth.as_bytes(), &[("authorization", auth.as_bytes())]);
    assert_eq!(incomplete(err), "Only one Authorization header is allowed.");
}

#[test]
fn malformed_query_forms() {
    let full = "X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request\
        &X-Amz-Date=20150830T123600Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=00";
    let parse_query = |q: &str| {
        let owned = Owned::new("GET", &format!("/?{q}"), &[("host", b"h")], b"");
        parse(&owned.req())
    };
    assert!(parse_query(full).is_ok());
    let required = "AWS query-string parameters must include 'X-Amz-Algorithm', 'X-Amz-Credential', \
                    'X-Amz-Signature', 'X-Amz-Date', 'X-Amz-SignedHeaders'. \
                    Re-examine the query-string parameters.";
    for param in [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    ] {
        let q: Vec<&str> = full.split('&').filter(|p| !p.starts_with(param)).collect();
        assert_eq!(
            incomplete(parse_query(&q.join("&")).unwrap_err()),
            required,
            "{param}"
        );
    }
    let cases = [
        (
            full.replace("HMAC-SHA256", "HMAC-SHA1"),
            "Unsupported X-Amz-Algorithm 'AWS4-HMAC-SHA1'; only AWS4-HMAC-SHA256 is supported.",
        ),
        (
            full.replace("Expires=60", "Expires=sixty"),
            "X-Amz-Expires should be a number",
        ),
        (
            full.replace("Expires=60", "Expires=-1"),
            "X-Amz-Expires should be a number",
        ),
        (
            full.replace("Expires=60", "Expires=99999999999999999999999"),
            "X-Amz-Expires should be a number",
        ),
        (
            full.replace("Date=20150830T123600Z", "Date=20150830"),
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
        ),
        (
            full.replace("SignedHeaders=host", "SignedHeaders=x-amz-date"),
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ),
        (
            format!("{full}&X-Amz-Signature=01"),
            "Query string contains more than one 'X-Amz-Signature' parameter.",
        ),
        (
            full.replace("Credential=AKIDEXAMPLE", "Credential=%FF"),
            "'X-Amz-Credential' is not valid UTF-8.",
        ),
    ];
    for (query, message) in cases {
        assert_eq!(
            incomplete(parse_query(&query).unwrap_err()),
            message,
            "{query}"
        );
    }
    // Without X-Amz-Expires only the clock-skew window applies.
    let no_expires = full.replace("&X-Amz-Expires=60", "");
    let claim = parse_query(&no_expires).unwrap();
    assert_eq!(claim.expires_secs, None);
    assert!(claim.presigned);
}
