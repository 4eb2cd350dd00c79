//! Verification of Cafe24's webhook `X-API-Key` header.
//!
//! Cafe24 signs nothing: the header carries a static key from the developer center. It is
//! compared in constant time against the current key and, during a rotation, the previous one.
//! Both comparisons always run, on fixed-length SHA-256 digests, so neither the position of the
//! first differing byte nor the key's length nor which key matched shows in the timing.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Holds the digests of the accepted webhook keys. Never prints a key, not even in `Debug`.
#[derive(Clone)]
pub struct ApiKeyVerifier {
    current: [u8; 32],
    previous: Option<[u8; 32]>,
}

/// Why a configured key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyConfigError {
    /// The key is empty or only whitespace: it would accept a missing header.
    #[error("webhook API key is empty")]
    Empty,
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

impl ApiKeyVerifier {
    /// Builds a verifier. An empty current key is refused; an empty previous key means "none".
    pub fn new(current: &str, previous: Option<&str>) -> Result<Self, ApiKeyConfigError> {
        if current.trim().is_empty() {
            return Err(ApiKeyConfigError::Empty);
        }
        let previous = previous.filter(|p| !p.trim().is_empty()).map(|p| digest(p.as_bytes()));
        Ok(Self { current: digest(current.as_bytes()), previous })
    }

    /// True when `presented` equals the current or the previous key.
    pub fn verify(&self, presented: Option<&[u8]>) -> bool {
        // A missing header is compared like any wrong key, so it takes the same time.
        let d = digest(presented.unwrap_or_default());
        let cur = d.ct_eq(&self.current);
        let prev = match &self.previous {
            Some(p) => d.ct_eq(p),
            None => subtle::Choice::from(0u8),
        };
        bool::from(cur | prev) && presented.is_some()
    }
}

impl fmt::Debug for ApiKeyVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyVerifier")
            .field("current", &"<redacted>")
            .field("previous", &self.previous.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_key_is_accepted_and_wrong_or_missing_is_not() {
        let v = ApiKeyVerifier::new("s3cret-key", None).unwrap();
        assert!(v.verify(Some(b"s3cret-key")));
        assert!(!v.verify(Some(b"s3cret-kez")));
        assert!(!v.verify(Some(b"s3cret-key ")));
        assert!(!v.verify(Some(b"")));
        assert!(!v.verify(None));
    }

    #[test]
    fn previous_key_is_accepted_during_rotation() {
        let v = ApiKeyVerifier::new("new-key", Some("old-key")).unwrap();
        assert!(v.verify(Some(b"new-key")));
        assert!(v.verify(Some(b"old-key")));
        assert!(!v.verify(Some(b"older-key")));
    }

    #[test]
    fn empty_keys_are_refused_or_ignored() {
        assert_eq!(ApiKeyVerifier::new("  ", None).err(), Some(ApiKeyConfigError::Empty));
        let v = ApiKeyVerifier::new("k", Some("")).unwrap();
        assert!(!v.verify(Some(b"")), "an empty previous key must not accept an empty header");
        assert!(!v.verify(None));
    }

    #[test]
    fn debug_output_never_contains_a_key() {
        let v = ApiKeyVerifier::new("super-secret-current", Some("super-secret-previous")).unwrap();
        let s = format!("{v:?}");
        assert!(!s.contains("super-secret"), "{s}");
    }
}
