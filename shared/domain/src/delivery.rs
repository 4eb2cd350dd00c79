//! Delivery to the user's application: the events the relay publishes on its EventBridge bus,
//! built here as plain values (`relay_aws::bus` puts them on the bus).
//!
//! Every event's `detail` carries `schema_version`, a stable `event_id` and the entity's
//! `version`; the JSON Schemas are in `docs/events/`. Semantics:
//! - **at least once**: a consumer may see an event twice (after a failure), never zero times;
//!   it de-duplicates on `event_id`, which is the same for every publication of the same fact
//!   (a webhook: its deduplication id; a snapshot: mall, kind, id and version);
//! - **newest wins**: `version` of a synced or deleted entity is the epoch-ms time the relay
//!   fetched it, increasing per entity, so a consumer that keeps the highest version is right
//!   whatever order events arrive in.

use serde_json::{json, Map, Value};

use crate::envelope::InboxEnvelope;
use crate::ids::{DedupId, MallId, SnapshotKind};

/// Version of the `detail` formats below; bumped on any incompatible change.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// The `source` of every event the relay publishes (rules match on it).
pub const EVENT_SOURCE: &str = "cafe24-relay";

/// EventBridge's limit on one entry (source + detail type + detail), in bytes.
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// Largest `detail` published in full; above it the data (or a webhook's payload) is left out
/// and the event says so (`data_omitted`), with how to read it.
pub const MAX_DETAIL_BYTES: usize = MAX_ENTRY_BYTES - 1_024;

/// Most entries in one `PutEvents` request.
pub const MAX_ENTRIES_PER_PUT: usize = 10;

/// One event for the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusEvent {
    /// EventBridge `detail-type`, e.g. `order.synced`.
    pub detail_type: String,
    /// EventBridge `detail`: a JSON object, at most [`MAX_DETAIL_BYTES`].
    pub detail: String,
    /// The stable id inside `detail` (for logs and tests).
    pub event_id: String,
}

impl BusEvent {
    fn new(detail_type: String, event_id: String, detail: &Value) -> Self {
        Self { detail_type, detail: detail.to_string(), event_id }
    }

    /// Bytes this entry counts against EventBridge's entry and request limits.
    pub fn size(&self) -> usize {
        EVENT_SOURCE.len() + self.detail_type.len() + self.detail.len()
    }
}

/// The stable id of the event for a snapshot version; `id` is the entity key (`ShopNo::entity_key`).
pub fn snapshot_event_id(mall: &MallId, kind: SnapshotKind, id: &str, version_ms: u64) -> String {
    let v = version_ms.to_string();
    DedupId::derive("evt", &[mall.as_str().as_bytes(), kind.as_str().as_bytes(), id.as_bytes(), v.as_bytes()])
        .as_str()
        .to_owned()
}

/// The digest of a snapshot's content (`None`: a tombstone): a fetch whose content has this
/// digest again stores no new version and publishes nothing (`SnapshotStore::upsert` answers
/// [`crate::values::Upsert::Unchanged`]). SHA-256 of the JSON text, hex, first 32 characters.
pub fn content_digest(data: Option<&Value>) -> String {
    use sha2::{Digest, Sha256};
    let Some(d) = data else { return "deleted".to_owned() };
    let hash = Sha256::digest(d.to_string().as_bytes());
    hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// `webhook.received` for an authentic webhook with a usable event number and mall (`None`
/// for anything else: parked envelopes are not published). The payload is the body Cafe24 sent;
/// when it would not fit an entry it is left out (`payload_omitted`, with its size).
pub fn webhook_received(env: &InboxEnvelope) -> Option<BusEvent> {
    let (Some(event_no), Some(mall)) = (env.event_no, env.mall_id.as_ref()) else { return None };
    if env.parked.is_some() {
        return None;
    }
    let event_id = DedupId::derive("evt", &[b"webhook", env.dedup_id.as_str().as_bytes()]).as_str().to_owned();
    let payload: Value = serde_json::from_str(env.payload.get()).unwrap_or(Value::Null);
    let mut detail = Map::new();
    detail.insert("schema_version".into(), json!(EVENT_SCHEMA_VERSION));
    detail.insert("event_id".into(), json!(event_id));
    detail.insert("mall_id".into(), json!(mall.as_str()));
    detail.insert("event_no".into(), json!(event_no.0));
    detail.insert("trace_id".into(), json!(env.trace_id.as_str()));
    if let Some(tp) = traceparent(env.trace_id.as_str(), &event_id) {
        detail.insert("traceparent".into(), json!(tp));
    }
    detail.insert("received_at_ms".into(), json!(env.received_at_ms));
    detail.insert("payload".into(), payload);
    let mut detail = Value::Object(detail);
    if detail.to_string().len() > MAX_DETAIL_BYTES {
        if let Some(d) = detail.as_object_mut() {
            d.insert("payload".into(), Value::Null);
            d.insert("payload_omitted".into(), json!({"bytes": env.payload.get().len()}));
        }
    }
    Some(BusEvent::new("webhook.received".into(), event_id, &detail))
}

/// The W3C `traceparent` an event carries so a consumer's trace continues the relay's: version
/// 00, a trace id that is the first 32 hex digits of SHA-256 of the relay's `trace_id` (the same
/// for every event of one webhook), a parent span id from the event's id (the same each time
/// the event is published again), sampled. `None` for an empty trace id.
pub fn traceparent(trace_id: &str, event_id: &str) -> Option<String> {
    use sha2::{Digest as _, Sha256};
    if trace_id.is_empty() {
        return None;
    }
    let hex = |prefix: &[u8], v: &str, n: usize| {
        let mut h = Sha256::new();
        h.update(prefix);
        h.update(v.as_bytes());
        let d: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        d.get(..n).map(str::to_owned)
    };
    Some(format!("00-{}-{}-01", hex(b"trace:", trace_id, 32)?, hex(b"span:", event_id, 16)?))
}

/// `<kind>.synced` (data present) or `<kind>.deleted` (`data` is `None`: Cafe24 answered 404)
/// for the snapshot version fetched at `version_ms`. Data too large for an entry is left out
/// (`data_omitted`) and read back from the state table (`relay snapshot get`).
pub fn snapshot_event(
    mall: &MallId,
    shop: crate::ShopNo,
    kind: SnapshotKind,
    id: &str,
    version_ms: u64,
    trace_id: &str,
    data: Option<&Value>,
) -> BusEvent {
    let event_id = snapshot_event_id(mall, kind, &shop.entity_key(id), version_ms);
    let mut detail = Map::new();
    detail.insert("schema_version".into(), json!(EVENT_SCHEMA_VERSION));
    detail.insert("event_id".into(), json!(event_id));
    detail.insert("mall_id".into(), json!(mall.as_str()));
    detail.insert("shop_no".into(), json!(shop.get()));
    detail.insert("kind".into(), json!(kind.as_str()));
    detail.insert("id".into(), json!(id));
    detail.insert("version".into(), json!(version_ms));
    detail.insert("trace_id".into(), json!(trace_id));
    if let Some(tp) = traceparent(trace_id, &event_id) {
        detail.insert("traceparent".into(), json!(tp));
    }
    let detail_type = match data {
        Some(d) => {
            let size = d.to_string().len();
            if Value::Object(detail.clone()).to_string().len() + size + 10 > MAX_DETAIL_BYTES {
                detail.insert("data".into(), Value::Null);
                detail.insert(
                    "data_omitted".into(),
                    json!({
                        "bytes": size,
                        "read_with": if shop.is_default() {
                            format!("relay snapshot get --mall {} {kind} {id}", mall.as_str())
                        } else {
                            format!("relay snapshot get --mall {} --shop {shop} {kind} {id}", mall.as_str())
                        },
                    }),
                );
            } else {
                detail.insert("data".into(), d.clone());
            }
            format!("{kind}.synced")
        }
        None => format!("{kind}.deleted"),
    };
    BusEvent::new(detail_type, event_id, &Value::Object(detail))
}

/// `mall.installed`, `mall.uninstalled` or `mall.needs_reauth`: the mall's status changed at
/// `at_ms` (the event id is per mall, status and instant, so a retry publishes the same id).
pub fn mall_event(mall: &MallId, status: MallStatusEvent, at_ms: u64) -> BusEvent {
    let name = status.detail_type();
    let at = at_ms.to_string();
    let event_id =
        DedupId::derive("evt", &[mall.as_str().as_bytes(), name.as_bytes(), at.as_bytes()]).as_str().to_owned();
    let detail = json!({
        "schema_version": EVENT_SCHEMA_VERSION,
        "event_id": event_id,
        "mall_id": mall.as_str(),
        "version": at_ms,
    });
    BusEvent::new(name.into(), event_id, &detail)
}

/// A mall status change published as an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MallStatusEvent {
    /// Tokens stored after an install (or a re-authorization).
    Installed,
    /// The app was deleted from the mall.
    Uninstalled,
    /// The refresh token is gone; an operator must re-authorize the mall.
    NeedsReauth,
}

impl MallStatusEvent {
    /// The event's `detail-type`.
    pub fn detail_type(self) -> &'static str {
        match self {
            Self::Installed => "mall.installed",
            Self::Uninstalled => "mall.uninstalled",
            Self::NeedsReauth => "mall.needs_reauth",
        }
    }
}

/// Splits events into `PutEvents` requests: at most [`MAX_ENTRIES_PER_PUT`] entries and
/// [`MAX_ENTRY_BYTES`] in total each. Returns index ranges into `events`.
pub fn put_chunks(events: &[BusEvent]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, e) in events.iter().enumerate() {
        let full = i - start == MAX_ENTRIES_PER_PUT || (i > start && bytes + e.size() > MAX_ENTRY_BYTES);
        if full {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += e.size();
    }
    if start < events.len() {
        out.push(start..events.len());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_events_traceparent_is_w3c_one_trace_per_webhook_one_span_per_event() {
        let a = traceparent("cafe24-trace-1", "evt-a").unwrap();
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!((parts[0], parts[1].len(), parts[2].len(), parts[3]), ("00", 32, 16, "01"));
        assert!(parts[1].bytes().chain(parts[2].bytes()).all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(traceparent("cafe24-trace-1", "evt-a").unwrap(), a, "published again: the same");
        let b = traceparent("cafe24-trace-1", "evt-b").unwrap();
        assert_eq!(b.get(3..35), a.get(3..35), "one webhook, one trace");
        assert_ne!(b.get(36..52), a.get(36..52), "each event its own span");
        assert_ne!(traceparent("other", "evt-a").unwrap().get(3..35), a.get(3..35));
        assert_eq!(traceparent("", "evt-a"), None);
    }
    use crate::webhook::classify;
    use crate::TraceId;

    fn mall() -> MallId {
        MallId::parse("shop1").unwrap()
    }

    fn envelope(body: &str) -> InboxEnvelope {
        let (_, c) = classify(body.as_bytes()).unwrap();
        InboxEnvelope::new(
            TraceId::from_header("t1").unwrap(),
            DedupId::for_webhook(Some("t1"), body.as_bytes()),
            1_000,
            &c,
            body.as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn a_webhook_event_carries_the_body_and_an_id_stable_across_redeliveries() {
        let body = r#"{"event_no":90157,"resource":{"mall_id":"shop1","amount":"1000"}}"#;
        let a = webhook_received(&envelope(body)).unwrap();
        let b = webhook_received(&envelope(body)).unwrap();
        assert_eq!(a.event_id, b.event_id);
        assert_eq!(a.detail_type, "webhook.received");
        let d: Value = serde_json::from_str(&a.detail).unwrap();
        assert_eq!(d["payload"]["resource"]["amount"], "1000");
        assert_eq!((d["event_no"].as_u64(), d["mall_id"].as_str()), (Some(90157), Some("shop1")));
        assert_eq!(d["schema_version"], EVENT_SCHEMA_VERSION);
    }

    #[test]
    fn parked_or_unidentified_webhooks_are_not_published() {
        assert!(webhook_received(&envelope(r#"{"resource":{"mall_id":"shop1"}}"#)).is_none());
        assert!(webhook_received(&envelope(r#"{"event_no":90023}"#)).is_none());
    }

    #[test]
    fn a_webhook_too_large_for_an_entry_is_published_without_its_payload() {
        let body = format!(r#"{{"event_no":90157,"resource":{{"mall_id":"shop1","x":"{}"}}}}"#, "a".repeat(300_000));
        let e = webhook_received(&envelope(&body)).unwrap();
        assert!(e.size() <= MAX_ENTRY_BYTES, "{}", e.size());
        let d: Value = serde_json::from_str(&e.detail).unwrap();
        assert!(d["payload"].is_null());
        assert_eq!(d["payload_omitted"]["bytes"].as_u64(), Some(body.len() as u64));
    }

    #[test]
    fn two_shops_entities_of_the_same_id_are_two_events_each_naming_its_shop() {
        let data = json!({"product_no": 12});
        let two = crate::ShopNo::new(2).unwrap();
        let a = snapshot_event(&mall(), crate::ShopNo::DEFAULT, SnapshotKind::Product, "12", 5, "t", Some(&data));
        let b = snapshot_event(&mall(), two, SnapshotKind::Product, "12", 5, "t", Some(&data));
        assert_ne!(a.event_id, b.event_id);
        assert_eq!(a.event_id, snapshot_event_id(&mall(), SnapshotKind::Product, "12", 5), "shop 1's id as before");
        let d: Value = serde_json::from_str(&b.detail).unwrap();
        assert_eq!((d["shop_no"].as_u64(), d["id"].as_str()), (Some(2), Some("12")), "the plain id beside its shop");
    }

    #[test]
    fn snapshot_events_name_the_version_and_differ_per_version() {
        let data = json!({"order_id": "o1"});
        let a = snapshot_event(&mall(), crate::ShopNo::DEFAULT, SnapshotKind::Order, "o1", 5, "t", Some(&data));
        let b = snapshot_event(&mall(), crate::ShopNo::DEFAULT, SnapshotKind::Order, "o1", 6, "t", Some(&data));
        let again =
            snapshot_event(&mall(), crate::ShopNo::DEFAULT, SnapshotKind::Order, "o1", 5, "other-trace", Some(&data));
        assert_ne!(a.event_id, b.event_id);
        assert_eq!(a.event_id, again.event_id, "the id names the version, not the delivery");
        assert_eq!(a.detail_type, "order.synced");
        let d: Value = serde_json::from_str(&a.detail).unwrap();
        assert_eq!((d["version"].as_u64(), &d["data"]), (Some(5), &data));
        let gone = snapshot_event(&mall(), crate::ShopNo::DEFAULT, SnapshotKind::Product, "7", 9, "t", None);
        assert_eq!(gone.detail_type, "product.deleted");
        assert!(serde_json::from_str::<Value>(&gone.detail).unwrap().get("data").is_none());
    }

    #[test]
    fn a_snapshot_too_large_for_an_entry_becomes_a_pointer() {
        let data = json!({"description": "x".repeat(400_000)});
        let e = snapshot_event(&mall(), crate::ShopNo::DEFAULT, SnapshotKind::Product, "7", 9, "t", Some(&data));
        assert!(e.size() <= MAX_ENTRY_BYTES);
        let d: Value = serde_json::from_str(&e.detail).unwrap();
        assert!(d["data"].is_null());
        assert_eq!(d["data_omitted"]["read_with"], "relay snapshot get --mall shop1 product 7");
    }

    #[test]
    fn put_chunks_respect_the_entry_count_and_the_request_size() {
        let small = snapshot_event(&mall(), crate::ShopNo::DEFAULT, SnapshotKind::Order, "o", 1, "t", Some(&json!({})));
        let big = snapshot_event(
            &mall(),
            crate::ShopNo::DEFAULT,
            SnapshotKind::Order,
            "o",
            1,
            "t",
            Some(&json!({"d": "x".repeat(200_000)})),
        );
        let events = vec![small.clone(); 23];
        assert_eq!(put_chunks(&events), vec![0..10, 10..20, 20..23]);
        let mixed = vec![small.clone(), big.clone(), big.clone(), small];
        assert_eq!(put_chunks(&mixed), vec![0..2, 2..4]);
        assert!(put_chunks(&[]).is_empty());
        for r in put_chunks(&mixed) {
            assert!(mixed[r].iter().map(BusEvent::size).sum::<usize>() <= MAX_ENTRY_BYTES);
        }
    }

    #[test]
    fn mall_events_are_typed_and_stable() {
        let a = mall_event(&mall(), MallStatusEvent::NeedsReauth, 7);
        assert_eq!(a.detail_type, "mall.needs_reauth");
        assert_eq!(a, mall_event(&mall(), MallStatusEvent::NeedsReauth, 7));
        assert_ne!(a.event_id, mall_event(&mall(), MallStatusEvent::Uninstalled, 7).event_id);
    }
}
