//! Arbitrary Authorization headers, dates and query strings through SigV4 parsing and
//! verification. Both must return, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let (auth, date, query) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::HOST, http::HeaderValue::from_static("localhost"));
    if let Ok(v) = http::HeaderValue::from_bytes(auth) {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    if let Ok(v) = http::HeaderValue::from_bytes(date) {
        headers.insert("x-amz-date", v);
    }
    let query = String::from_utf8_lossy(query);
    let Ok(uri) = format!("/2015-03-31/functions?{query}").parse::<http::Uri>() else {
        return;
    };
    let method = http::Method::GET;
    let request = ember_sigv4::Request { method: &method, uri: &uri, headers: &headers, body: b"" };
    if let Ok(claim) = ember_sigv4::parse(&request) {
        let _ = ember_sigv4::verify(&claim, &request, "secret", time::OffsetDateTime::now_utc());
    }
});
