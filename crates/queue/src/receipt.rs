//! Receipt handles: which lease of which message a delete or visibility change refers to.
//!
//! A handle names the queue (its internal id, never reused), the message (its row) and
//! the lease (a random 64-bit token drawn at each receive). Only the token of the latest
//! receive is stored with the message, so a handle from an earlier receive no longer
//! matches once the message has been received again. Handles are opaque to clients:
//! URL-safe base64 of the three numbers.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub queue_id: i64,
    pub seq: i64,
    pub token: i64,
}

impl Receipt {
    pub fn encode(&self) -> String {
        let mut raw = [0u8; 24];
        raw[..8].copy_from_slice(&self.queue_id.to_be_bytes());
        raw[8..16].copy_from_slice(&self.seq.to_be_bytes());
        raw[16..].copy_from_slice(&self.token.to_be_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// `None` for anything a receive did not produce.
    pub fn decode(handle: &str) -> Option<Receipt> {
        if handle.len() != 32 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(handle).ok()?;
        let word =
            |i: usize| i64::from_be_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        (raw.len() == 24).then(|| Receipt {
            queue_id: word(0),
            seq: word(1),
            token: word(2),
        })
    }

    /// A fresh lease token.
    pub fn new_token() -> i64 {
        getrandom::u64().map(|v| v as i64).unwrap_or_else(|_| {
            // No entropy source: fall back to a v4 UUID's bits (which has its own fallbacks).
            let bits = uuid::Uuid::new_v4().as_u128();
            bits as i64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn round_trips(queue_id: i64, seq: i64, token: i64) {
            let r = Receipt { queue_id, seq, token };
            proptest::prop_assert_eq!(Receipt::decode(&r.encode()), Some(r));
        }

        #[test]
        fn decoding_never_panics(s in ".{0,64}") {
            let _ = Receipt::decode(&s);
        }
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(Receipt::decode("garbage"), None);
        assert_eq!(Receipt::decode(""), None);
        assert_eq!(Receipt::decode(&"!".repeat(32)), None);
    }
}
