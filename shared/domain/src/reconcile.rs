//! Reconciliation from Cafe24's webhook logs: which logged deliveries the relay never accepted,
//! the inbox messages that re-inject them, and how far the mall's checkpoint may advance.
//!
//! A re-injected webhook carries the deduplication id a live delivery of the same trace would
//! have had ([`webhook_ids`]), so its jobs have the live job ids: a delivery that did
//! arrive after all is skipped by the worker's idempotency record, never run twice.
//!
//! Rules (one page of logs, in `log_id` order):
//! - test deliveries (`log_type` `T`) are never re-injected;
//! - a trace with any successful log was accepted by ingest (a 2xx answer is only given once
//!   the inbox stored the envelope) and is not re-injected;
//! - a trace whose logs all failed is re-injected once, from its first log;
//! - logs younger than the settle time are left for the next run (Cafe24 may still be retrying
//!   them), and so is everything after the first of them: the checkpoint only ever covers a
//!   settled prefix, so nothing is skipped.

use std::collections::BTreeSet;

use crate::envelope::InboxEnvelope;
use crate::ids::{webhook_ids, MallId};
use crate::ports::{GroupId, OutboundMessage};
use crate::tokens::parse_cafe24_token_time;
use crate::webhook::{classify_value, Classified};

/// `source` of an envelope re-injected from the webhook logs.
pub const SOURCE_WEBHOOK_LOG: &str = "cafe24-webhook-log";

/// One entry of `GET /webhooks/logs`, the fields reconciliation reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Sortable log id (the paging cursor, `since_log_id`).
    pub log_id: String,
    /// `G` normal, `R` resend, `T` test.
    pub log_type: String,
    /// The delivery's trace id (`X-Trace-ID`).
    pub trace_id: Option<String>,
    /// Cafe24 saw a 2xx answer.
    pub success: bool,
    /// `requested_time` as epoch ms, when it parsed.
    pub requested_ms: Option<u64>,
    /// The webhook body exactly as sent.
    pub request_body: Option<String>,
}

impl LogEntry {
    /// From one element of Cafe24's `logs` list; `None` without a `log_id`.
    pub fn from_value(v: &serde_json::Value) -> Option<Self> {
        let text = |k: &str| match v.get(k) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Some(Self {
            log_id: text("log_id").filter(|s| !s.is_empty())?,
            log_type: text("log_type").unwrap_or_default(),
            trace_id: text("trace_id").filter(|s| !s.is_empty()),
            success: text("success").as_deref() == Some("T"),
            requested_ms: text("requested_time").as_deref().and_then(parse_cafe24_token_time),
            request_body: text("request_body"),
        })
    }
}

/// Why a failed log was not re-injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// No trace id: a live delivery's id cannot be reproduced, so re-injecting could duplicate.
    NoTrace,
    /// No body, or a body that is not a JSON webhook of this mall.
    Unusable,
}

/// What one page of logs asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PagePlan {
    /// Inbox messages to send (mall group, live dedup ids), in log order.
    pub reinject: Vec<OutboundMessage>,
    /// The checkpoint once `reinject` is stored: the last settled log id, if any advanced.
    pub checkpoint: Option<String>,
    /// Failed deliveries seen in the settled part (every failed log, retries included).
    pub failed_logs: usize,
    /// Failed logs that could not be re-injected, with the reason.
    pub skipped: Vec<(String, Skip)>,
    /// Logs left for a later run because they are younger than the settle time.
    pub unsettled: usize,
    /// The newest request time of a successful, non-test delivery on the page (settled or not):
    /// when Cafe24 last got a webhook through to ingest.
    pub last_delivered_ms: Option<u64>,
}

/// Plans one page of logs for `mall`. `now_ms - settle_ms` is the newest request time treated
/// as settled; `received_at_ms` of a re-injected envelope is the log's request time (so a
/// snapshot fetched after the lost event already covers it), or `now_ms` if that is unknown.
pub fn plan_page(mall: &MallId, logs: &[LogEntry], now_ms: u64, settle_ms: u64) -> PagePlan {
    let horizon = now_ms.saturating_sub(settle_ms);
    let settled_len = logs.iter().position(|l| l.requested_ms.is_none_or(|t| t > horizon)).unwrap_or(logs.len());
    let (settled, rest) = logs.split_at(settled_len);
    let accepted: BTreeSet<&str> = logs.iter().filter(|l| l.success).filter_map(|l| l.trace_id.as_deref()).collect();
    let last_delivered_ms = logs.iter().filter(|l| l.success && l.log_type != "T").filter_map(|l| l.requested_ms).max();
    let mut plan = PagePlan {
        checkpoint: settled.last().map(|l| l.log_id.clone()),
        unsettled: rest.len(),
        last_delivered_ms,
        ..PagePlan::default()
    };
    let mut planned: BTreeSet<&str> = BTreeSet::new();
    for l in settled.iter().filter(|l| l.log_type != "T" && !l.success) {
        plan.failed_logs += 1;
        let Some(trace) = l.trace_id.as_deref() else {
            plan.skipped.push((l.log_id.clone(), Skip::NoTrace));
            continue;
        };
        if accepted.contains(trace) || !planned.insert(trace) {
            continue;
        }
        match reinjection(mall, trace, l, now_ms) {
            Some(m) => plan.reinject.push(m),
            None => plan.skipped.push((l.log_id.clone(), Skip::Unusable)),
        }
    }
    plan
}

/// Logs read per page (Cafe24 allows 1..=10000).
pub const LOG_PAGE_LIMIT: u32 = 1_000;

/// The query of the next `GET /webhooks/logs` page: from the checkpoint, or — for a mall never
/// reconciled — from `now_ms - lookback_ms` by request time.
pub fn logs_query(since_log_id: Option<&str>, now_ms: u64, lookback_ms: u64) -> String {
    match since_log_id {
        Some(id) => format!("since_log_id={}&limit={LOG_PAGE_LIMIT}", encode_query_value(id)),
        None => format!(
            "requested_start_date={}&limit={LOG_PAGE_LIMIT}",
            encode_query_value(&kst_iso(now_ms.saturating_sub(lookback_ms)))
        ),
    }
}

/// Whether a logs page says more pages follow (`links` with `rel: next`).
pub fn has_next_page(body: &serde_json::Value) -> bool {
    body.get("links")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|l| l.iter().any(|x| x.get("rel").and_then(serde_json::Value::as_str) == Some("next")))
}

/// The log entries of a `{"logs": [...]}` page; `None` when the body has no such list.
pub fn page_entries(body: &serde_json::Value) -> Option<Vec<LogEntry>> {
    Some(body.get("logs")?.as_array()?.iter().filter_map(LogEntry::from_value).collect())
}

/// `reception_status` of a `GET /webhooks/setting` answer (`{"webhook": {"reception_status": "T"}}`,
/// or the field at the top level): `Some(true)` for `T`, `Some(false)` for `F`, else `None`.
pub fn reception_on(body: &serde_json::Value) -> Option<bool> {
    let v = body.get("webhook").and_then(|w| w.get("reception_status")).or_else(|| body.get("reception_status"))?;
    match v.as_str()? {
        "T" => Some(true),
        "F" => Some(false),
        _ => None,
    }
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
pub fn encode_query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Epoch ms as Cafe24's KST timestamp, `2026-12-01T09:30:00+09:00`.
pub fn kst_iso(ms: u64) -> String {
    let secs = ms / 1000 + 9 * 3600;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+09:00", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The inbox message ingest would have produced for this delivery.
fn reinjection(mall: &MallId, trace: &str, l: &LogEntry, now_ms: u64) -> Option<OutboundMessage> {
    let body = l.request_body.as_deref()?;
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let classified = classify_value(&value);
    // A log of this mall describes a webhook of this mall; anything else is not ours to replay.
    let Classified::Routable { mall_id, .. } = &classified else { return None };
    if mall_id != mall {
        return None;
    }
    let (dedup_id, trace_id) = webhook_ids(Some(trace), body.as_bytes());
    let received = l.requested_ms.unwrap_or(now_ms);
    let mut env = InboxEnvelope::new(trace_id, dedup_id.clone(), received, &classified, body.as_bytes()).ok()?;
    env.source = SOURCE_WEBHOOK_LOG.to_owned();
    Some(OutboundMessage { group_id: GroupId::mall(mall), dedup_id, body: env.to_message_body().ok()? })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000_000;
    const SETTLE: u64 = 300_000;

    fn log(id: &str, trace: &str, ok: bool, age_ms: u64, body: &serde_json::Value) -> LogEntry {
        LogEntry {
            log_id: id.into(),
            log_type: "G".into(),
            trace_id: Some(trace.into()),
            success: ok,
            requested_ms: Some(NOW - age_ms),
            request_body: Some(body.to_string()),
        }
    }

    fn order(mall: &str, id: &str) -> serde_json::Value {
        json!({"event_no": 90023, "resource": {"mall_id": mall, "order_id": id}})
    }

    fn mall() -> MallId {
        MallId::parse("shop1").unwrap()
    }

    #[test]
    fn only_traces_that_never_succeeded_are_reinjected_with_the_live_dedup_id() {
        let a = order("shop1", "20261201-0000001");
        let logs = vec![
            log("L1", "tr-a", false, 900_000, &a),
            log("L2", "tr-a", true, 899_000, &a), // Cafe24's retry got through
            log("L3", "tr-b", false, 800_000, &order("shop1", "20261201-0000002")),
            log("L4", "tr-b", false, 790_000, &order("shop1", "20261201-0000002")), // retry failed too
            log("L5", "tr-c", true, 700_000, &order("shop1", "20261201-0000003")),
        ];
        let p = plan_page(&mall(), &logs, NOW, SETTLE);
        assert_eq!(p.reinject.len(), 1, "{p:?}");
        let m = &p.reinject[0];
        let body = order("shop1", "20261201-0000002").to_string();
        assert_eq!(m.dedup_id, crate::DedupId::for_webhook(Some("tr-b"), body.as_bytes()));
        assert_eq!(m.group_id, GroupId::mall(&mall()));
        let env: serde_json::Value = serde_json::from_str(&m.body).unwrap();
        assert_eq!(
            (env["source"].as_str(), env["received_at_ms"].as_u64()),
            (Some(SOURCE_WEBHOOK_LOG), Some(NOW - 800_000))
        );
        assert_eq!(env["payload"], json!(order("shop1", "20261201-0000002")), "the body byte for byte");
        assert_eq!((p.failed_logs, p.checkpoint.as_deref(), p.unsettled), (3, Some("L5"), 0));
        assert_eq!(p.last_delivered_ms, Some(NOW - 700_000), "the newest successful delivery");
    }

    #[test]
    fn the_checkpoint_stops_before_the_first_unsettled_log() {
        let logs = vec![
            log("L1", "t1", false, 900_000, &order("shop1", "20261201-0000001")),
            log("L2", "t2", false, 10_000, &order("shop1", "20261201-0000002")), // Cafe24 may still retry
            log("L3", "t3", false, 900_000, &order("shop1", "20261201-0000003")), // settled, but after L2
        ];
        let p = plan_page(&mall(), &logs, NOW, SETTLE);
        assert_eq!(p.reinject.len(), 1);
        assert_eq!((p.checkpoint.as_deref(), p.unsettled), (Some("L1"), 2));
        let none = plan_page(&mall(), &logs[1..], NOW, SETTLE);
        assert_eq!((none.checkpoint, none.reinject.len()), (None, 0), "nothing settled, nothing advances");
    }

    #[test]
    fn test_deliveries_foreign_bodies_and_traceless_logs_are_not_reinjected() {
        let mut test = log("L1", "t1", false, 900_000, &order("shop1", "20261201-0000001"));
        test.log_type = "T".into();
        let mut test_ok = test.clone();
        test_ok.success = true;
        assert_eq!(
            plan_page(&mall(), &[test_ok], NOW, SETTLE).last_delivered_ms,
            None,
            "a test delivery is no webhook"
        );
        let mut traceless = log("L2", "x", false, 900_000, &order("shop1", "20261201-0000002"));
        traceless.trace_id = None;
        let foreign = log("L3", "t3", false, 900_000, &order("othershop", "20261201-0000003"));
        let mut garbage = log("L4", "t4", false, 900_000, &json!(null));
        garbage.request_body = Some("{not json".into());
        let mut no_time = log("L5", "t5", false, 0, &order("shop1", "20261201-0000005"));
        no_time.requested_ms = None;
        let p = plan_page(&mall(), &[test, traceless, foreign, garbage], NOW, SETTLE);
        assert!(p.reinject.is_empty(), "{p:?}");
        assert_eq!(
            p.skipped,
            vec![("L2".into(), Skip::NoTrace), ("L3".into(), Skip::Unusable), ("L4".into(), Skip::Unusable)]
        );
        assert_eq!(p.checkpoint.as_deref(), Some("L4"));
        let p = plan_page(&mall(), &[no_time], NOW, SETTLE);
        assert_eq!((p.checkpoint, p.unsettled), (None, 1), "an unreadable request time is never treated as settled");
    }

    #[test]
    fn queries_timestamps_and_settings_read_back() {
        assert_eq!(kst_iso(0), "1970-01-01T09:00:00+09:00");
        for t in [1_764_547_200_000u64, 1_709_164_800_000, 951_782_400_000, NOW] {
            assert_eq!(parse_cafe24_token_time(&kst_iso(t)), Some(t), "{}", kst_iso(t));
        }
        assert_eq!(logs_query(Some("L0001"), NOW, 1), "since_log_id=L0001&limit=1000");
        let q = logs_query(None, 86_400_000, 3_600_000);
        assert_eq!(q, "requested_start_date=1970-01-02T08%3A00%3A00%2B09%3A00&limit=1000");
        assert_eq!(reception_on(&json!({"webhook": {"reception_status": "F"}})), Some(false));
        assert_eq!(reception_on(&json!({"reception_status": "T"})), Some(true));
        for odd in [json!({}), json!({"webhook": {"reception_status": 1}}), json!({"reception_status": "yes"})] {
            assert_eq!(reception_on(&odd), None, "{odd}");
        }
        assert!(has_next_page(&json!({"links": [{"rel": "next", "href": "x"}]})));
        assert!(!has_next_page(&json!({"links": []})) && !has_next_page(&json!({"links": "next"})));
        assert_eq!(page_entries(&json!({"logs": [{"log_id": "L1"}, {"nope": 1}]})).map(|v| v.len()), Some(1));
        assert!(page_entries(&json!({"logs": {}})).is_none() && page_entries(&json!(null)).is_none());
    }

    #[test]
    fn log_entries_parse_defensively() {
        let v = json!({"log_id": "L000000000001", "log_type": "G", "event_no": 90023, "trace_id": "abc",
            "requested_time": "2026-12-01T10:00:00+09:00", "success": "F", "request_body": "{}"});
        let e = LogEntry::from_value(&v).unwrap();
        assert_eq!((e.success, e.requested_ms.is_some(), e.trace_id.as_deref()), (false, true, Some("abc")));
        assert!(LogEntry::from_value(&json!({"log_type": "G"})).is_none());
        assert!(LogEntry::from_value(&json!({"log_id": ""})).is_none());
        assert!(LogEntry::from_value(&json!("L1")).is_none());
        let odd = LogEntry::from_value(&json!({"log_id": 7, "success": true, "requested_time": "yesterday"})).unwrap();
        assert_eq!((odd.log_id.as_str(), odd.success, odd.requested_ms), ("7", false, None));
    }
}
