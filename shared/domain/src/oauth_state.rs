//! The signed, expiring, single-use `state` of the OAuth install flow.
//!
//! Format: `v1.<mall_id>.<expires_ms>.<nonce>.<hex hmac-sha256>` — mall ids never contain a dot.
//! The signature (compared in constant time) proves we issued it; the expiry bounds how long a
//! browser may take; the nonce is consumed once (by the caller, in a store) so a replayed
//! callback is refused.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::ids::MallId;

type HmacSha256 = Hmac<Sha256>;

/// Why a state was refused. Messages are safe to show the merchant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not of our format.
    #[error("the state parameter is malformed")]
    Malformed,
    /// Signature does not match: not issued by us, or altered.
    #[error("the state parameter was not issued by this app")]
    Forged,
    /// Past its expiry.
    #[error("the installation link expired; start again")]
    Expired,
}

/// A verified state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedState {
    /// The mall the install was started for.
    pub mall_id: MallId,
    /// Expiry, epoch ms.
    pub expires_ms: u64,
    /// One-time nonce (to be consumed).
    pub nonce: String,
}

fn sign(secret: &[u8], payload: &str) -> Vec<u8> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for HMAC.
    match HmacSha256::new_from_slice(secret) {
        Ok(mut m) => {
            m.update(payload.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Issues a state for `mall` valid until `expires_ms`, with a caller-supplied random `nonce`
/// (hex or alphanumeric).
pub fn issue(secret: &[u8], mall: &MallId, expires_ms: u64, nonce: &str) -> String {
    let payload = format!("v1.{}.{}.{}", mall.as_str(), expires_ms, nonce);
    let sig = hex::encode(sign(secret, &payload));
    format!("{payload}.{sig}")
}

/// Verifies signature and expiry. Consuming the nonce is the caller's job.
pub fn verify(secret: &[u8], state: &str, now_ms: u64) -> Result<VerifiedState, StateError> {
    let parts: Vec<&str> = state.trim().split('.').collect();
    let [v, mall, exp, nonce, sig] = parts.as_slice() else { return Err(StateError::Malformed) };
    if *v != "v1" || nonce.is_empty() || nonce.len() > 64 || !nonce.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(StateError::Malformed);
    }
    let mall_id = MallId::parse(mall).map_err(|_| StateError::Malformed)?;
    let expires_ms: u64 = exp.parse().map_err(|_| StateError::Malformed)?;
    let presented = hex::decode(sig).map_err(|_| StateError::Malformed)?;
    let expected = sign(secret, &format!("v1.{mall}.{exp}.{nonce}"));
    if expected.is_empty() || presented.len() != expected.len() || !bool::from(presented.ct_eq(&expected)) {
        return Err(StateError::Forged);
    }
    if now_ms > expires_ms {
        return Err(StateError::Expired);
    }
    Ok(VerifiedState { mall_id, expires_ms, nonce: (*nonce).to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &[u8] = b"state-secret";

    #[test]
    fn issued_state_verifies_until_it_expires() {
        let m = MallId::parse("shop1").unwrap();
        let s = issue(K, &m, 10_000, "abc123");
        let v = verify(K, &s, 9_999).unwrap();
        assert_eq!((v.mall_id, v.nonce.as_str()), (m, "abc123"));
        assert_eq!(verify(K, &s, 10_001), Err(StateError::Expired));
    }

    #[test]
    fn forged_and_altered_states_are_refused() {
        let m = MallId::parse("shop1").unwrap();
        let s = issue(K, &m, 10_000, "abc123");
        assert_eq!(verify(b"other-secret", &s, 0), Err(StateError::Forged));
        assert_eq!(verify(K, &s.replace("shop1", "shop2"), 0), Err(StateError::Forged));
        assert_eq!(verify(K, &s.replace("10000", "99999"), 0), Err(StateError::Forged));
        for bad in [
            "",
            "v1",
            "v2.shop1.1.n.00",
            "v1.shop1.x.n.00",
            "v1.shop1.1..00",
            "v1.shop1.1.n.zz",
            "v1.SHOP!.1.n.00",
            "a.b.c.d.e.f",
        ] {
            assert_eq!(verify(K, bad, 0), Err(StateError::Malformed), "{bad}");
        }
    }
}
