//! Authentication errors, with the error codes and messages AWS itself returns.

/// Why a request failed SigV4 authentication.
///
/// `Display` yields the message to put in the error response; [`AuthError::code`]
/// and [`AuthError::status`] give the AWS error code and HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Neither an `Authorization` header nor an `X-Amz-Signature` query parameter.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,

    /// The signature is malformed or incomplete; the message says what is wrong.
    #[error("{0}")]
    IncompleteSignature(String),

    /// The request time is too far in the past (or the presigned URL has expired).
    /// The message is AWS's "Signature expired: ..." text.
    #[error("{0}")]
    SignatureExpired(String),

    /// The request time is more than [`crate::MAX_CLOCK_SKEW`] in the future.
    /// The message is AWS's "Signature not yet current: ..." text.
    #[error("{0}")]
    SignatureNotYetCurrent(String),

    /// The recomputed signature differs from the one sent.
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. \
         Consult the service documentation for details."
    )]
    SignatureDoesNotMatch,

    /// `x-amz-content-sha256` is a SHA-256 digest that is not the digest of the body.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch,

    /// `x-amz-content-sha256` is neither a hex SHA-256 digest nor `UNSIGNED-PAYLOAD`
    /// (e.g. the `STREAMING-*` values of S3's aws-chunked uploads, which are not supported).
    #[error(
        "The 'x-amz-content-sha256' header must be UNSIGNED-PAYLOAD or the hex-encoded \
         SHA-256 of the payload; streaming (aws-chunked) payloads are not supported."
    )]
    UnsupportedContentSha256,
}

impl AuthError {
    /// The AWS error code (the `__type` / `x-amzn-ErrorType` of the error response).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            AuthError::IncompleteSignature(_) => "IncompleteSignatureException",
            AuthError::SignatureExpired(_)
            | AuthError::SignatureNotYetCurrent(_)
            | AuthError::SignatureDoesNotMatch
            | AuthError::ContentSha256Mismatch
            | AuthError::UnsupportedContentSha256 => "InvalidSignatureException",
        }
    }

    /// The HTTP status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::IncompleteSignature(_) | AuthError::UnsupportedContentSha256 => 400,
            AuthError::MissingAuthenticationToken
            | AuthError::SignatureExpired(_)
            | AuthError::SignatureNotYetCurrent(_)
            | AuthError::SignatureDoesNotMatch
            | AuthError::ContentSha256Mismatch => 403,
        }
    }

    pub(crate) fn incomplete(message: impl Into<String>) -> Self {
        AuthError::IncompleteSignature(message.into())
    }
}
