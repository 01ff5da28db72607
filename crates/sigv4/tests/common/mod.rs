//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ember_sigv4::Request;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use time::OffsetDateTime;

/// An owned request, to borrow an [`ember_sigv4::Request`] from.
#[derive(Debug, Clone)]
pub struct Owned {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Owned {
    /// `target` is the raw request target (path and query) as on the request line.
    pub fn new(method: &str, target: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Self {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_bytes(value).expect("header value"),
            );
        }
        Owned {
            method: Method::from_bytes(method.as_bytes()).expect("method"),
            uri: target.parse().expect("uri"),
            headers: map,
            body: body.to_vec(),
        }
    }

    pub fn req(&self) -> Request<'_> {
        Request {
            method: &self.method,
            uri: &self.uri,
            headers: &self.headers,
            body: &self.body,
        }
    }

    /// Inserts (replacing) the given headers, e.g. those returned by `sign`.
    pub fn insert_all(&mut self, headers: Vec<(HeaderName, HeaderValue)>) {
        for (name, value) in headers {
            self.headers.insert(name, value);
        }
    }

    pub fn set(&mut self, name: &'static str, value: &str) {
        self.headers
            .insert(name, HeaderValue::from_str(value).expect("header value"));
    }

    pub fn set_target(&mut self, target: &str) {
        self.uri = target.parse().expect("uri");
    }
}

pub fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).expect("timestamp")
}
