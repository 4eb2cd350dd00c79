//! Identifier newtypes with one validating constructor each, so a mall id can never be passed
//! where a dedup id is expected, and no invalid value reaches SQS.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest `MessageDeduplicationId` / `MessageGroupId` SQS accepts.
pub const SQS_ID_MAX_LEN: usize = 128;

/// True for the characters SQS allows in `MessageDeduplicationId` and `MessageGroupId`:
/// ASCII alphanumerics and ASCII punctuation.
fn sqs_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c.is_ascii_punctuation()
}

/// A Cafe24 mall id (the shop's subdomain, e.g. `cafe24bestshop`).
///
/// Accepted: 1..=64 characters of `[a-z0-9_-]` after trimming; upper case is folded to lower
/// case because Cafe24 mall ids are DNS labels. Always a valid SQS `MessageGroupId`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MallId(String);

/// Why a string is not a [`MallId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MallIdError {
    /// Empty (or only whitespace).
    #[error("mall id is empty")]
    Empty,
    /// Longer than 64 characters.
    #[error("mall id is longer than 64 characters")]
    TooLong,
    /// Contains a character outside `[a-z0-9_-]`.
    #[error("mall id contains a character outside [a-z0-9_-]")]
    BadChar,
}

impl MallId {
    /// Longest accepted mall id.
    pub const MAX_LEN: usize = 64;

    /// Validates and normalises a mall id.
    pub fn parse(raw: &str) -> Result<Self, MallIdError> {
        let s = raw.trim().to_ascii_lowercase();
        if s.is_empty() {
            return Err(MallIdError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(MallIdError::TooLong);
        }
        if !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
            return Err(MallIdError::BadChar);
        }
        Ok(Self(s))
    }

    /// The normalised id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `id` can name a Cafe24 resource (an order id, a member id) inside one Admin API URL:
/// 1..=64 characters of `[A-Za-z0-9._@-]` and not made of dots only. `.` and `..` are dot
/// segments: URL normalisation resolves them even percent-encoded, so `orders/..` would call a
/// different endpoint than the job names. Checked where jobs are made and where they are read.
pub fn is_resource_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
        && !id.bytes().all(|b| b == b'.')
}

/// A shop of a multi-shop mall (`shop_no`). Shop 1 is the default: an Admin API call without
/// `shop_no` answers for it, and a webhook without `event_shop_no` is one of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct ShopNo(u32);

impl Default for ShopNo {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<u32> for ShopNo {
    type Error = String;
    fn try_from(n: u32) -> Result<Self, String> {
        Self::new(n).ok_or_else(|| format!("shop_no must be 1..={}", Self::MAX))
    }
}

impl From<ShopNo> for u32 {
    fn from(s: ShopNo) -> u32 {
        s.0
    }
}

impl fmt::Display for ShopNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl ShopNo {
    /// The default shop.
    pub const DEFAULT: Self = Self(1);
    /// Largest shop number accepted (Cafe24 malls run a handful of shops; the bound keeps
    /// garbage out of keys and URLs).
    pub const MAX: u32 = 9_999;

    /// A shop number in `1..=MAX`.
    pub fn new(n: u32) -> Option<Self> {
        (1..=Self::MAX).contains(&n).then_some(Self(n))
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Whether this is shop 1 (kept out of serialized jobs, so they read as before).
    pub fn is_default(&self) -> bool {
        *self == Self::DEFAULT
    }

    /// A webhook's `event_shop_no` (a string in Cafe24's samples; a number is taken too):
    /// absent or null is the default shop, anything else unusable is `None`.
    pub fn from_event(v: Option<&serde_json::Value>) -> Option<Self> {
        match v {
            None | Some(serde_json::Value::Null) => Some(Self::DEFAULT),
            Some(serde_json::Value::String(s)) => s.trim().parse::<u32>().ok().and_then(Self::new),
            Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()).and_then(Self::new),
            Some(_) => None,
        }
    }

    /// The key of entity `id` of this shop, for snapshots and event ids: the id itself in the
    /// default shop (so keys stored before shops were told apart still match), `<shop>/<id>`
    /// in any other (`/` is never part of a resource id, see [`is_resource_id`]).
    pub fn entity_key(self, id: &str) -> String {
        if self.is_default() {
            id.to_owned()
        } else {
            format!("{}/{id}", self.0)
        }
    }
}

impl<'de> Deserialize<'de> for MallId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MallId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for MallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id that follows one webhook through all three functions and into the logs.
///
/// Cafe24's `X-Trace-ID` header (a UUID) when it is usable, otherwise derived from the body
/// hash so that a redelivery of the same body carries the same trace id.
///
/// Read back from a message it is validated (`try_from`) by the header's rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TraceId(String);

impl TryFrom<String> for TraceId {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        match Self::from_header(&raw) {
            Some(t) if t.0 == raw => Ok(t),
            _ => Err("not a trace id (1..=100 of [A-Za-z0-9._-])".to_owned()),
        }
    }
}

impl From<TraceId> for String {
    fn from(id: TraceId) -> Self {
        id.0
    }
}

impl TraceId {
    /// Longest header value taken verbatim.
    pub const MAX_VERBATIM_LEN: usize = 100;

    /// The trace id from an `X-Trace-ID` header value, if it is usable verbatim: 1..=100
    /// characters of `[A-Za-z0-9._-]`. Anything else (empty, too long, odd characters that
    /// could smuggle content into logs) is rejected and the caller falls back to the body hash.
    pub fn from_header(raw: &str) -> Option<Self> {
        let s = raw.trim();
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_VERBATIM_LEN
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        ok.then(|| Self(s.to_owned()))
    }

    /// A trace id for work the relay starts itself (a schedule, a resync): `<prefix>-<n>`, the
    /// prefix cut to the allowed characters and 60 of them (`relay` when nothing is left).
    pub fn derived(prefix: &str, n: u64) -> Self {
        let p: String =
            prefix.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(60).collect();
        Self(format!("{}-{n}", if p.is_empty() { "relay" } else { p.as_str() }))
    }

    /// A trace id derived from the raw body: `body-` + the first 32 hex digits of its SHA-256.
    pub fn from_body(body: &[u8]) -> Self {
        Self::from_body_digest(&hex::encode(Sha256::digest(body)))
    }

    /// [`TraceId::from_body`] from the body's SHA-256 in hex, already computed.
    fn from_body_digest(digest: &str) -> Self {
        Self(format!("body-{}", digest.get(..32).unwrap_or(digest)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An explicit SQS `MessageDeduplicationId`: 1..=128 characters from SQS's allowed set.
///
/// Content-based deduplication is never used (two different webhooks can have identical
/// bodies); every message carries one of these.
///
/// Read back from a message it is validated (`try_from`): a job carrying an id SQS would refuse
/// is not a job.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DedupId(String);

impl TryFrom<String> for DedupId {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw).ok_or_else(|| "not a deduplication id (1..=128 of SQS's characters)".to_owned())
    }
}

impl From<DedupId> for String {
    fn from(id: DedupId) -> Self {
        id.0
    }
}

impl std::str::FromStr for DedupId {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::try_from(raw.to_owned())
    }
}

/// The deduplication id ([`DedupId::for_webhook`]) and trace id of one webhook delivery, as
/// ingest assigns them and reconciliation re-derives them: the trace id is the `X-Trace-ID`
/// header when usable verbatim, else [`TraceId::from_body`]. Without a header the body is hashed
/// once for both.
pub fn webhook_ids(trace_header: Option<&str>, body: &[u8]) -> (DedupId, TraceId) {
    let header = trace_header.map(str::trim).filter(|s| !s.is_empty());
    if let Some(t) = header.and_then(TraceId::from_header) {
        return (DedupId(format!("t-{}", t.as_str())), t);
    }
    let digest = hex::encode(Sha256::digest(body));
    let trace = TraceId::from_body_digest(&digest);
    let dedup = match header {
        Some(raw) => DedupId(format!("th-{}", hex::encode(Sha256::digest(raw.as_bytes())))),
        None => DedupId(format!("b-{digest}")),
    };
    (dedup, trace)
}

impl DedupId {
    /// For an inbound webhook: from the `X-Trace-ID` header when present and usable
    /// (`t-<trace id>`), else from the SHA-256 of the raw body (`b-<64 hex>`).
    ///
    /// A trace id that is present but not usable verbatim (too long, odd characters) is hashed
    /// (`th-<64 hex>`), so distinct deliveries stay distinct.
    pub fn for_webhook(trace_header: Option<&str>, body: &[u8]) -> Self {
        webhook_ids(trace_header, body).0
    }

    /// Derives a dedup id from several parts, unambiguously: each part is length-prefixed
    /// before hashing, so `("ab","c")` and `("a","bc")` give different ids.
    pub fn derive(prefix: &str, parts: &[&[u8]]) -> Self {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        let digest = hex::encode(h.finalize());
        let prefix: String = prefix.chars().filter(|c| sqs_id_char(*c)).take(32).collect();
        Self(format!("{prefix}-{digest}"))
    }

    /// Accepts an existing id (e.g. read back from a message), validating SQS's rules.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = !raw.is_empty() && raw.len() <= SQS_ID_MAX_LEN && raw.chars().all(sqs_id_char);
        ok.then(|| Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DedupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kinds of entity the relay keeps a snapshot of (the `kind` of a snapshot key and of a
/// `<kind>.synced` event).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotKind {
    /// An order with its items.
    Order,
    /// A product.
    Product,
    /// A customer's non-personal fields.
    Customer,
}

impl SnapshotKind {
    /// Every kind.
    pub const ALL: [Self; 3] = [Self::Order, Self::Product, Self::Customer];

    /// `order`, `product` or `customer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::Product => "product",
            Self::Customer => "customer",
        }
    }

    /// The kind named `s` (exactly as [`Self::as_str`] spells it).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for SnapshotKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shop_numbers_from_webhooks_default_to_one_and_refuse_garbage() {
        use serde_json::json;
        assert_eq!(ShopNo::from_event(None), Some(ShopNo::DEFAULT));
        assert_eq!(ShopNo::from_event(Some(&json!(null))), Some(ShopNo::DEFAULT));
        assert_eq!(ShopNo::from_event(Some(&json!("4"))).map(ShopNo::get), Some(4), "a string, as published");
        assert_eq!(ShopNo::from_event(Some(&json!(" 2 "))).map(ShopNo::get), Some(2));
        assert_eq!(ShopNo::from_event(Some(&json!(3))).map(ShopNo::get), Some(3));
        for bad in [json!("0"), json!(""), json!("two"), json!(-1), json!(1.5), json!(10_000), json!([1]), json!({})] {
            assert_eq!(ShopNo::from_event(Some(&bad)), None, "{bad}");
        }
        assert_eq!(serde_json::from_str::<ShopNo>("2").ok().map(ShopNo::get), Some(2));
        assert!(serde_json::from_str::<ShopNo>("0").is_err() && serde_json::from_str::<ShopNo>("\"2\"").is_err());
    }

    #[test]
    fn entity_keys_keep_the_default_shop_as_it_was_and_tell_the_others_apart() {
        let two = ShopNo::new(2).unwrap();
        assert_eq!(ShopNo::DEFAULT.entity_key("12"), "12");
        assert_eq!(two.entity_key("12"), "2/12");
        assert_ne!(two.entity_key("12"), ShopNo::new(21).unwrap().entity_key("2"));
        assert!(!is_resource_id(&two.entity_key("12")), "a key is never mistaken for an id");
    }

    #[test]
    fn snapshot_kinds_round_trip_and_nothing_else_parses() {
        for k in SnapshotKind::ALL {
            assert_eq!(SnapshotKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).ok(), Some(serde_json::json!(k.as_str())));
        }
        for bad in ["", "orders", "Order", " order", "order ", "member", "ord\u{0}er"] {
            assert_eq!(SnapshotKind::parse(bad), None, "{bad:?}");
        }
    }

    fn valid_sqs_id(s: &str) -> bool {
        !s.is_empty() && s.len() <= SQS_ID_MAX_LEN && s.chars().all(sqs_id_char)
    }

    #[test]
    fn mall_id_is_normalised_and_validated() {
        assert_eq!(MallId::parse(" CafeShop ").map(|m| m.0), Ok("cafeshop".to_owned()));
        assert_eq!(MallId::parse(""), Err(MallIdError::Empty));
        assert_eq!(MallId::parse("   "), Err(MallIdError::Empty));
        assert_eq!(MallId::parse("a b"), Err(MallIdError::BadChar));
        assert_eq!(MallId::parse("몰"), Err(MallIdError::BadChar));
        assert_eq!(MallId::parse(&"a".repeat(65)), Err(MallIdError::TooLong));
    }

    #[test]
    fn uuid_trace_header_is_used_verbatim() {
        let id = DedupId::for_webhook(Some("0d492786-ae82-4073-aa88-0991b08ee732"), b"{}");
        assert_eq!(id.as_str(), "t-0d492786-ae82-4073-aa88-0991b08ee732");
    }

    #[test]
    fn missing_or_blank_trace_header_falls_back_to_body_hash() {
        let a = DedupId::for_webhook(None, b"{\"a\":1}");
        let b = DedupId::for_webhook(Some("  "), b"{\"a\":1}");
        assert_eq!(a, b);
        assert!(a.as_str().starts_with("b-"));
        assert_eq!(a.as_str().len(), 2 + 64);
        assert_ne!(a, DedupId::for_webhook(None, b"{\"a\":2}"));
    }

    #[test]
    fn unusable_trace_header_is_hashed_not_dropped() {
        let long = "x".repeat(500);
        let a = DedupId::for_webhook(Some(&long), b"{}");
        let b = DedupId::for_webhook(Some("id with spaces"), b"{}");
        assert!(a.as_str().starts_with("th-") && valid_sqs_id(a.as_str()));
        assert!(b.as_str().starts_with("th-") && valid_sqs_id(b.as_str()));
        assert_ne!(a, b);
    }

    #[test]
    fn derive_is_unambiguous_across_part_boundaries() {
        let a = DedupId::derive("job", &[b"ab", b"c"]);
        let b = DedupId::derive("job", &[b"a", b"bc"]);
        assert_ne!(a, b);
        assert_eq!(a, DedupId::derive("job", &[b"ab", b"c"]));
    }

    #[test]
    fn trace_id_from_header_rejects_log_injection() {
        assert!(TraceId::from_header("abc\n{\"level\":\"ERROR\"}").is_none());
        assert!(TraceId::from_header("").is_none());
        assert_eq!(TraceId::from_body(b"x").as_str().len(), 5 + 32);
    }

    proptest! {
        #[test]
        fn any_webhook_dedup_id_is_a_valid_sqs_id(trace in proptest::option::of(".*"), body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let id = DedupId::for_webhook(trace.as_deref(), &body);
            prop_assert!(valid_sqs_id(id.as_str()), "{:?}", id);
            // Both ids, against their formulas written out here (a change to either would give a
            // redelivery across a deploy a new id, and let its duplicate through).
            let (dedup, trace_id) = webhook_ids(trace.as_deref(), &body);
            prop_assert_eq!(&dedup, &id);
            let body_hex = hex::encode(Sha256::digest(&body));
            let header = trace.as_deref().map(str::trim).filter(|h| !h.is_empty());
            let usable = header.filter(|h| h.len() <= 100 && h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
            let (want_dedup, want_trace) = match (header, usable) {
                (_, Some(h)) => (format!("t-{h}"), h.to_owned()),
                (Some(h), None) => (format!("th-{}", hex::encode(Sha256::digest(h.as_bytes()))), format!("body-{}", &body_hex[..32])),
                (None, _) => (format!("b-{body_hex}"), format!("body-{}", &body_hex[..32])),
            };
            prop_assert_eq!(dedup.as_str(), want_dedup.as_str());
            prop_assert_eq!(trace_id.as_str(), want_trace.as_str());
        }

        #[test]
        fn any_derived_dedup_id_is_a_valid_sqs_id(prefix in ".*", parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..5)) {
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let id = DedupId::derive(&prefix, &refs);
            prop_assert!(valid_sqs_id(id.as_str()), "{:?}", id);
        }

        #[test]
        fn parsed_mall_ids_are_valid_group_ids(raw in ".*") {
            if let Ok(m) = MallId::parse(&raw) {
                prop_assert!(valid_sqs_id(m.as_str()));
            }
        }
    }

    #[test]
    fn resource_ids_refuse_dot_segments_and_url_syntax() {
        for ok in ["20200717-0029236", "gdhong", "member0001", "kakao_12@k", "a.b", "x"] {
            assert!(is_resource_id(ok), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in ["", ".", "..", "...", "a/b", "a?b", "a#b", "a%2e", "a b", "<x>", "ö", long.as_str()] {
            assert!(!is_resource_id(bad), "{bad:?}");
        }
    }
}
