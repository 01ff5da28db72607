//! What can go wrong with a queue operation, in SQS's vocabulary.
//!
//! The queue implements SQS semantics, so its errors are SQS's errors: each variant is
//! one SQS error code ([`QueueError::code`]) and its message is the one SQS sends, so the
//! frontend can pass both through unchanged. Only [`QueueError::Storage`] is Ember's own:
//! the disk or the database failed, and the detail is for the log, not the caller.

/// An SQS error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("The specified queue does not exist.")]
    QueueDoesNotExist,
    /// CreateQueue named an existing queue with a different value for this attribute.
    #[error("A queue already exists with the same name and a different value for attribute {0}")]
    QueueNameExists(String),
    #[error("{0}")]
    InvalidParameterValue(String),
    #[error("{0}")]
    MissingParameter(String),
    #[error("{0}")]
    InvalidAttributeName(String),
    #[error("{0}")]
    InvalidAttributeValue(String),
    /// The body holds characters SQS does not allow.
    #[error("{0}")]
    InvalidMessageContents(String),
    /// A receipt handle that no receive ever produced (garbage, or another queue's).
    #[error("The input receipt handle \"{0}\" is not a valid receipt handle.")]
    ReceiptHandleIsInvalid(String),
    /// ChangeMessageVisibility on a message whose lease has already ended.
    #[error("The message referred to isn't in flight.")]
    MessageNotInflight,
    /// The queue was purged less than 60 seconds ago.
    #[error("Only one PurgeQueue operation on {0} is allowed every 60 seconds.")]
    PurgeQueueInProgress(String),
    /// The database or the disk failed. Nothing was changed by the failed operation.
    #[error("the queue store failed: {0}")]
    Storage(String),
}

impl QueueError {
    /// The SQS error code (the name of the error shape in botocore's model).
    pub fn code(&self) -> &'static str {
        match self {
            QueueError::QueueDoesNotExist => "QueueDoesNotExist",
            QueueError::QueueNameExists(_) => "QueueNameExists",
            QueueError::InvalidParameterValue(_) => "InvalidParameterValue",
            QueueError::MissingParameter(_) => "MissingParameter",
            QueueError::InvalidAttributeName(_) => "InvalidAttributeName",
            QueueError::InvalidAttributeValue(_) => "InvalidAttributeValue",
            QueueError::InvalidMessageContents(_) => "InvalidMessageContents",
            QueueError::ReceiptHandleIsInvalid(_) => "ReceiptHandleIsInvalid",
            QueueError::MessageNotInflight => "MessageNotInflight",
            QueueError::PurgeQueueInProgress(_) => "PurgeQueueInProgress",
            QueueError::Storage(_) => "InternalError",
        }
    }

    /// Whether the caller caused the error (SQS's `SenderFault`).
    pub fn is_sender_fault(&self) -> bool {
        !matches!(self, QueueError::Storage(_))
    }

    /// `Value <value> for parameter <parameter> is invalid. Reason: <reason>`, SQS's
    /// usual wording for a bad parameter.
    pub fn invalid_value(value: impl std::fmt::Display, parameter: &str, reason: &str) -> Self {
        QueueError::InvalidParameterValue(format!(
            "Value {value} for parameter {parameter} is invalid. Reason: {reason}"
        ))
    }

    pub fn missing(parameter: &str) -> Self {
        QueueError::MissingParameter(format!(
            "The request must contain the parameter {parameter}."
        ))
    }
}

impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> Self {
        QueueError::Storage(e.to_string())
    }
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;
