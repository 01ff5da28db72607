//! `parse` (and `verify` on whatever parses) never panics on arbitrary header and query
//! bytes; `sign` then `verify` always succeeds on arbitrary well-formed requests.

mod common;

use common::at;
use ember_sigv4::{Credentials, Request, parse, sign, verify};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use proptest::prelude::*;
use time::{OffsetDateTime, PrimitiveDateTime};

const T: i64 = 1_440_938_160;

/// Pieces that make the fuzzer reach deep into the parser.
const AUTH_PIECES: &[&str] = &[
    "AWS4-HMAC-SHA256",
    " ",
    ",",
    ", ",
    "=",
    "/",
    ";",
    "Credential=",
    "SignedHeaders=",
    "Signature=",
    "AKIDEXAMPLE",
    "20150830",
    "20150831",
    "us-east-1",
    "service",
    "s3",
    "aws4_request",
    "host",
    "x-amz-date",
    "content-type",
    "Host",
    "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    "\u{e9}",
    "\t",
];

const QUERY_PIECES: &[&str] = &[
    "&",
    "=",
    "%",
    "%2F",
    "%FF",
    "%zz",
    "+",
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
    "AWS4-HMAC-SHA256",
    "AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fs3%2Faws4_request",
    "20150830T123600Z",
    "604800",
    "604801",
    "18446744073709551616",
    "host",
    "host%3Bx-amz-date",
    "00",
];

fn pieces(set: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(set), 0..24).prop_map(|v| v.concat())
}

/// Arbitrary bytes that `HeaderValue::from_bytes` accepts, or pieces of a real header.
fn header_bytes(set: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        pieces(set).prop_map(String::into_bytes),
    ]
    .prop_filter("valid header value", |b| HeaderValue::from_bytes(b).is_ok())
}

/// An `Authorization` header that is right, or almost.
fn near_valid_authorization() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(&["20150830", "20150831", ""][..]),
        prop::sample::select(&["service", "s3", ""][..]),
        prop::sample::select(
            &[
                "host",
                "host;x-amz-date",
                "date;host",
                "host;x-amz-content-sha256",
                "a;host",
            ][..],
        ),
        "[0-9a-f]{0,64}",
        prop::sample::select(&[", ", ",", " , ", ",,"][..]),
    )
        .prop_map(|(date, service, signed, sig, sep)| {
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{date}/us-east-1/{service}/aws4_request\
                 {sep}SignedHeaders={signed}{sep}Signature={sig}"
            )
            .into_bytes()
        })
}

/// A query string that `http::Uri` accepts.
fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,120}",
        pieces(QUERY_PIECES),
        Just(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20150830T123600Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=00"
                .to_owned()
        ),
        prop::collection::vec(any::<u8>(), 0..80)
            .prop_map(|b| b.iter().map(|&c| char::from(c)).collect()),
    ]
}

fn extreme_times() -> impl Strategy<Value = OffsetDateTime> {
    prop_oneof![
        Just(at(T)),
        Just(PrimitiveDateTime::MIN.assume_utc()),
        Just(PrimitiveDateTime::MAX.assume_utc()),
        (-100_000_000_000i64..100_000_000_000).prop_map(|s| {
            OffsetDateTime::from_unix_timestamp(s).unwrap_or(OffsetDateTime::UNIX_EPOCH)
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn parse_never_panics(
        authorization in prop::option::of(prop_oneof![
            header_bytes(AUTH_PIECES),
            near_valid_authorization(),
        ]),
        amz_date in prop::option::of(prop_oneof![
            header_bytes(QUERY_PIECES),
            Just(b"20150830T123600Z".to_vec()),
        ]),
        date in prop::option::of(prop_oneof![
            header_bytes(AUTH_PIECES),
            Just(b"Sun, 30 Aug 2015 12:36:00 GMT".to_vec()),
        ]),
        content_sha in prop::option::of(header_bytes(QUERY_PIECES)),
        path in "/[ -~]{0,40}",
        query in query(),
        host in prop::bool::ANY,
        now in extreme_times(),
        body in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let Ok(uri) = format!("{path}?{query}").parse::<Uri>() else {
            return Ok(());
        };
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", authorization),
            ("x-amz-date", amz_date),
            ("date", date),
            ("x-amz-content-sha256", content_sha),
            ("host", host.then(|| b"example.amazonaws.com".to_vec())),
        ] {
            if let Some(value) = value {
                headers.insert(
                    HeaderName::from_static(name),
                    HeaderValue::from_bytes(&value).expect("filtered"),
                );
            }
        }
        let req = Request { method: &Method::GET, uri: &uri, headers: &headers, body: &body };
        if let Ok(claim) = parse(&req) {
            let result = verify(&claim, &req, "secret", now);
            prop_assert!(result.is_err(), "random input verified: {claim:?}");
        }
    }

    #[test]
    fn sign_then_verify_round_trips(
        path in "(/[A-Za-z0-9._~%:+=@-]{0,12}){0,5}/?",
        query in "([A-Za-z0-9._~%+*-]{0,8}(=[A-Za-z0-9._~%+=/*-]{0,8})?&?){0,4}",
        values in prop::collection::vec("[ -~\t]{0,20}", 0..4),
        service in prop::sample::select(&["lambda", "s3", "iam"][..]),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let target = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
        let target = if target.starts_with('/') { target } else { format!("/{target}") };
        let Ok(uri) = target.parse::<Uri>() else {
            return Ok(());
        };
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("localhost:9000"));
        for value in &values {
            headers.append("x-amz-meta-v", HeaderValue::from_str(value).expect("visible ascii"));
        }
        let creds = Credentials { access_key_id: "AKID", secret_access_key: "secret" };
        let req = Request { method: &Method::PUT, uri: &uri, headers: &headers, body: &body };
        for (name, value) in sign(&req, &creds, "us-east-1", service, at(T)) {
            headers.insert(name, value);
        }
        let req = Request { method: &Method::PUT, uri: &uri, headers: &headers, body: &body };
        let claim = parse(&req).map_err(|e| TestCaseError::fail(format!("{target}: {e}")))?;
        prop_assert_eq!(verify(&claim, &req, "secret", at(T)), Ok(()), "{}", target);
        prop_assert!(verify(&claim, &req, "secreT", at(T)).is_err());
    }
}
