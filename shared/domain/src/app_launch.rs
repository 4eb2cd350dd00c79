//! Cafe24's App URL launch: when a merchant installs or opens the app from the Cafe24 admin,
//! Cafe24 opens the app's App URL with query parameters (`mall_id`, `timestamp`, `user_id`, …,
//! and last `hmac`) signed with the app's client secret:
//! `hmac = base64(HMAC-SHA256(client_secret, raw query without the hmac pair))`, over the query
//! exactly as received (still percent-encoded). A request that verifies, with a fresh
//! `timestamp`, came from the Cafe24 admin; `/install` starts an OAuth flow only for those, so
//! nobody else can make the app call Cafe24's token endpoint.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::ids::MallId;

/// Why a launch query is refused; `Display` is shown to the merchant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// No `hmac` parameter: not opened from the Cafe24 admin.
    #[error("open the app from the Cafe24 admin (the link has no Cafe24 signature)")]
    Unsigned,
    /// The signature does not match the query.
    #[error("the Cafe24 signature of this link is not valid")]
    BadSignature,
    /// No usable `timestamp`.
    #[error("the link has no valid timestamp")]
    NoTimestamp,
    /// Signed too long ago (or too far in the future).
    #[error("the link has expired; open the app from the Cafe24 admin again")]
    Stale,
    /// No usable `mall_id`.
    #[error("mall_id is missing or not a valid Cafe24 mall id")]
    BadMall,
}

impl LaunchError {
    /// Short class for logs.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Unsigned => "launch_unsigned",
            Self::BadSignature => "launch_bad_signature",
            Self::NoTimestamp => "launch_no_timestamp",
            Self::Stale => "launch_stale",
            Self::BadMall => "bad_mall",
        }
    }
}

/// How far a launch's `timestamp` may lie in the future (clock skew), ms.
pub const MAX_FUTURE_SKEW_MS: u64 = 60_000;

/// Decodes `%XX` escapes (other bytes as they are); `None` on a broken escape or non-UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The signature Cafe24 puts on `unsigned_query` (base64 of HMAC-SHA256 with the client secret).
pub fn sign(client_secret: &[u8], unsigned_query: &str) -> String {
    // HMAC accepts a key of any length: new_from_slice cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(client_secret) else { return String::new() };
    mac.update(unsigned_query.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Verifies a launch query (`raw_query` exactly as received, without `?`) and returns the mall.
/// Fresh means signed at most `max_age_ms` ago and at most [`MAX_FUTURE_SKEW_MS`] ahead.
pub fn verify(client_secret: &[u8], raw_query: &str, now_ms: u64, max_age_ms: u64) -> Result<MallId, LaunchError> {
    let pairs: Vec<&str> = raw_query.split('&').collect();
    let mut hmac_value: Option<&str> = None;
    let mut rest = Vec::with_capacity(pairs.len());
    for p in &pairs {
        match p.strip_prefix("hmac=") {
            Some(v) if hmac_value.is_none() => hmac_value = Some(v),
            Some(_) => return Err(LaunchError::BadSignature),
            None => rest.push(*p),
        }
    }
    let given = hmac_value.and_then(percent_decode).filter(|v| !v.is_empty()).ok_or(LaunchError::Unsigned)?;
    let expected = sign(client_secret, &rest.join("&"));
    if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        return Err(LaunchError::BadSignature);
    }
    let param = |name: &str| {
        rest.iter().find_map(|p| p.strip_prefix(name).and_then(|v| v.strip_prefix('='))).and_then(percent_decode)
    };
    let ts_ms = param("timestamp")
        .and_then(|t| t.trim().parse::<u64>().ok())
        .map(|s| s.saturating_mul(1000))
        .ok_or(LaunchError::NoTimestamp)?;
    if ts_ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) || now_ms.saturating_sub(ts_ms) > max_age_ms {
        return Err(LaunchError::Stale);
    }
    param("mall_id").and_then(|m| MallId::parse(&m).ok()).ok_or(LaunchError::BadMall)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed with Python's hmac/hashlib/base64 (not with this module):
    // base64.b64encode(hmac.new(b'relay-secret', Q.encode(), hashlib.sha256).digest())
    const Q: &str = "is_multi_shop=F&lang=ko_KR&mall_id=shop1&shop_no=1&timestamp=1795305600&user_id=shop1&user_name=%ED%99%8D%EA%B8%B8%EB%8F%99&user_type=A";
    const SIG: &str = "hrPjU/qcQcbpmUlRtwJLsQqHeWJ1ACLqqW3lRCT17tE=";
    const NOW: u64 = 1_795_305_600_000 + 30_000;
    const AGE: u64 = 10 * 60_000;

    fn signed() -> String {
        format!("{Q}&hmac={}", SIG.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D"))
    }

    #[test]
    fn an_independently_signed_launch_verifies() {
        assert_eq!(sign(b"relay-secret", Q), SIG);
        assert_eq!(verify(b"relay-secret", &signed(), NOW, AGE).unwrap().as_str(), "shop1");
    }

    #[test]
    fn anything_else_is_refused_with_its_reason() {
        let s = signed();
        assert_eq!(verify(b"other-secret", &s, NOW, AGE), Err(LaunchError::BadSignature));
        assert_eq!(verify(b"relay-secret", Q, NOW, AGE), Err(LaunchError::Unsigned));
        assert_eq!(verify(b"relay-secret", "mall_id=shop1", NOW, AGE), Err(LaunchError::Unsigned));
        assert_eq!(verify(b"relay-secret", "", NOW, AGE), Err(LaunchError::Unsigned));
        assert_eq!(verify(b"relay-secret", &s.replace("shop1", "shop2"), NOW, AGE), Err(LaunchError::BadSignature));
        assert_eq!(verify(b"relay-secret", &format!("{s}&hmac=x"), NOW, AGE), Err(LaunchError::BadSignature));
        assert_eq!(verify(b"relay-secret", &s.replace("hmac=", "hmac=%zz"), NOW, AGE), Err(LaunchError::Unsigned));
        assert_eq!(verify(b"relay-secret", &s, NOW + AGE + 1_000, AGE), Err(LaunchError::Stale));
        assert_eq!(verify(b"relay-secret", &s, NOW - 120_000, AGE), Err(LaunchError::Stale));
        let no_ts = "mall_id=shop1";
        assert_eq!(
            verify(b"k", &format!("{no_ts}&hmac={}", sign(b"k", no_ts).replace('+', "%2B")), NOW, AGE),
            Err(LaunchError::NoTimestamp)
        );
        let bad_mall = "mall_id=..&timestamp=1795305600";
        assert_eq!(
            verify(b"k", &format!("{bad_mall}&hmac={}", sign(b"k", bad_mall).replace('+', "%2B")), NOW, AGE),
            Err(LaunchError::BadMall)
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_queries_never_panic(q in ".{0,200}") {
            let _ = verify(b"relay-secret", &q, NOW, AGE);
        }
    }
}
