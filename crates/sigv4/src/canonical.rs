//! Canonicalization (the canonical request) and the SigV4 key/HMAC chain.
//!
//! Everything here mirrors botocore (`botocore/auth.py`), which is what the aws CLI and
//! boto3 use, and which agrees with the other AWS SDKs on every request they produce.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode};
use sha2::{Digest, Sha256};

use crate::{ALGORITHM, Scope};

/// Everything but the RFC 3986 unreserved characters `A-Z a-z 0-9 - _ . ~`.
const AWS_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Like [`AWS_ENCODE`] but keeps `/` (for paths).
const AWS_ENCODE_PATH: &AsciiSet = &AWS_ENCODE.remove(b'/');

/// Percent-encodes `bytes` with the AWS rule: everything but unreserved characters.
pub(crate) fn aws_encode(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, AWS_ENCODE).to_string()
}

/// The canonical URI, from the raw (still percent-encoded) request path.
///
/// S3 signs the path exactly as sent. Every other service signs the path with dot
/// segments and empty segments removed (botocore `remove_dot_segments`), then
/// percent-encoded a second time (so `%3A` on the wire is `%253A` here).
pub(crate) fn canonical_uri(raw_path: &str, service: &str) -> String {
    if service == "s3" {
        return if raw_path.is_empty() {
            "/".to_owned()
        } else {
            raw_path.to_owned()
        };
    }
    let normalized = remove_dot_segments(raw_path);
    percent_encoding::percent_encode(normalized.as_bytes(), AWS_ENCODE_PATH).to_string()
}

/// botocore's `normalize_url_path`: RFC 3986 dot-segment removal that also drops
/// empty segments (`//`), keeping a leading slash and a trailing slash (the latter
/// only when something is left). An empty path becomes `/`.
fn remove_dot_segments(path: &str) -> Cow<'_, str> {
    if path.is_empty() {
        return Cow::Borrowed("/");
    }
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let first = if path.starts_with('/') { "/" } else { "" };
    let last = if path.ends_with('/') && !out.is_empty() {
        "/"
    } else {
        ""
    };
    let joined = format!("{first}{}{last}", out.join("/"));
    if joined == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(joined)
    }
}

/// Splits a raw query string into percent-decoded `(key, value)` pairs.
///
/// Pairs are separated by `&`; the key ends at the first `=` (a pair without `=` has
/// an empty value). `+` is left alone (it is *not* a space). Empty pairs are skipped.
pub(crate) fn query_pairs(raw_query: &str) -> impl Iterator<Item = (Cow<'_, [u8]>, Cow<'_, [u8]>)> {
    raw_query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                Cow::from(percent_decode(key.as_bytes())),
                Cow::from(percent_decode(value.as_bytes())),
            )
        })
}

/// The canonical query string: every pair decoded, re-encoded with the AWS rule,
/// sorted by key then value, joined with `&`. Pairs whose decoded key is `exclude`
/// are left out (the presigned form excludes `X-Amz-Signature`).
pub(crate) fn canonical_query(raw_query: &str, exclude: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = query_pairs(raw_query)
        .filter(|(key, _)| exclude.is_none_or(|ex| key.as_ref() != ex.as_bytes()))
        .map(|(key, value)| (aws_encode(&key), aws_encode(&value)))
        .collect();
    pairs.sort_unstable();
    let mut out = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Python's `str.split()` whitespace, restricted to ASCII.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0x1c..=0x1f)
}

/// Appends `value` trimmed, with internal runs of whitespace collapsed to one space
/// (botocore: `' '.join(value.split())`).
pub(crate) fn push_trimmed(out: &mut Vec<u8>, value: &[u8]) {
    let mut first = true;
    for word in value.split(|&b| is_space(b)).filter(|w| !w.is_empty()) {
        if !first {
            out.push(b' ');
        }
        out.extend_from_slice(word);
        first = false;
    }
}

/// Canonical header block: `name:value\n` for each name, where value is every
/// occurrence of the header, trimmed, joined with `,`.
pub(crate) fn canonical_headers<'v, I, V>(entries: I) -> Vec<u8>
where
    I: IntoIterator<Item = (&'v str, V)>,
    V: IntoIterator<Item = &'v [u8]>,
{
    let mut out = Vec::new();
    for (name, values) in entries {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_trimmed(&mut out, value);
        }
        out.push(b'\n');
    }
    out
}

/// The pieces of a canonical request.
pub(crate) struct CanonicalRequest<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub query: &'a str,
    pub headers: &'a [u8],
    pub signed_headers: &'a str,
    pub payload_hash: &'a str,
}

impl CanonicalRequest<'_> {
    /// SHA-256 of `method\nuri\nquery\nheaders\nsigned_headers\npayload_hash`,
    /// where `headers` already ends with a newline.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [self.method, self.uri, self.query] {
            h.update(part.as_bytes());
            h.update(b"\n");
        }
        h.update(self.headers);
        h.update(b"\n");
        h.update(self.signed_headers.as_bytes());
        h.update(b"\n");
        h.update(self.payload_hash.as_bytes());
        h.finalize().into()
    }
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The hex signature of a canonical request (whose SHA-256 is given) at `amz_date`
/// within `scope`.
pub(crate) fn signature(
    secret_access_key: &str,
    scope: &Scope,
    amz_date: &str,
    canonical_request_hash: &[u8; 32],
) -> String {
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        scope.credential_scope(),
        hex::encode(canonical_request_hash)
    );
    let k_secret = format!("AWS4{secret_access_key}");
    let k_date = hmac(k_secret.as_bytes(), scope.date.as_bytes());
    let k_region = hmac(&k_date, scope.region.as_bytes());
    let k_service = hmac(&k_region, scope.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    hex::encode(hmac(&k_signing, string_to_sign.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_non_s3_double_encodes_and_normalizes() {
        let cases = [
            ("", "/"),
            ("/", "/"),
            ("//", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/a/./b/../c", "/a/c"),
            ("/../..", "/"),
            ("/a//b///c/", "/a/b/c/"),
            (
                "/functions/arn%3Aaws%3Alambda/x",
                "/functions/arn%253Aaws%253Alambda/x",
            ),
            ("/a b~c:d", "/a%20b~c%3Ad"),
            ("/%E2%82%AC", "/%25E2%2582%25AC"),
            ("relative/./x", "relative/x"),
        ];
        for (raw, want) in cases {
            assert_eq!(canonical_uri(raw, "lambda"), want, "{raw:?}");
        }
    }

    #[test]
    fn uri_s3_is_raw() {
        assert_eq!(canonical_uri("/b/x/./y/../z//w", "s3"), "/b/x/./y/../z//w");
        assert_eq!(canonical_uri("/b/a%20b%3A", "s3"), "/b/a%20b%3A");
        assert_eq!(canonical_uri("", "s3"), "/");
    }

    #[test]
    fn query_canonicalization() {
        assert_eq!(canonical_query("", None), "");
        assert_eq!(
            canonical_query(
                "b=2&a=%20x%2By&acl&a=1&%C3%BC=%E2%82%AC&z=*&p=a+b&t=%7e",
                None
            ),
            "%C3%BC=%E2%82%AC&a=%20x%2By&a=1&acl=&b=2&p=a%2Bb&t=~&z=%2A"
        );
        assert_eq!(canonical_query("a=1&&b=2&", None), "a=1&b=2");
        assert_eq!(canonical_query("k==v", None), "k=%3Dv");
        assert_eq!(
            canonical_query("X-Amz-Signature=abc&X-Amz-Date=1", Some("X-Amz-Signature")),
            "X-Amz-Date=1"
        );
        // Invalid escapes are kept literally, then the '%' is encoded.
        assert_eq!(canonical_query("a=%zz&b=%4", None), "a=%25zz&b=%254");
    }

    #[test]
    fn header_values_are_trimmed_and_joined() {
        let block = canonical_headers([
            ("a", vec![&b"  x   y  "[..], b"\tz"]),
            ("b", vec![&b""[..]]),
        ]);
        assert_eq!(block, b"a:x y,z\nb:\n");
    }
}
