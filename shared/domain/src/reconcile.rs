//! Reconciliation from Cafe24's webhook logs: which logged deliveries the relay never accepted,
//! the inbox messages that re-inject them, and which window of request times to read next.
//!
//! Cafe24 documents neither the order of `GET /webhooks/logs` results nor what `since_log_id`
//! means, log ids are opaque strings, and an answer may carry no `links`
//! (docs/cafe24-conformance.md). So the logs are read by **request-time window**, never by id:
//! - a window covers whole seconds from the checkpoint to `now - settle` ([`LogWindow`]);
//! - a page shorter than its `limit` is the whole window, whatever its order; a full page is
//!   not, and the window is narrowed ([`LogWindow::narrowed`]) and read again;
//! - within a window, logs are de-duplicated by `log_id` and taken in request-time order;
//! - the checkpoint moves to the window's end once its re-injections are stored.
//!
//! A re-injected webhook carries the deduplication id a live delivery of the same trace would
//! have had ([`webhook_ids`]), so its jobs have the live job ids: within SQS's 5 minutes the
//! queue drops the second copy, and after that a sync job finds the stored snapshot (the sync
//! jobs' idempotency record) already covering its event and coalesces without a call — which is
//! also what makes reading a second twice harmless.
//!
//! Rules (one complete window):
//! - test deliveries (`log_type` `T`) are never re-injected;
//! - a trace with any successful log in the window was accepted by ingest (a 2xx answer is only
//!   given once the inbox stored the envelope) and is not re-injected;
//! - a trace whose logs all failed is re-injected once, from its first log.

use std::collections::{BTreeMap, BTreeSet};

use crate::envelope::InboxEnvelope;
use crate::ids::{webhook_ids, MallId};
use crate::tokens::parse_cafe24_token_time;
use crate::values::{GroupId, OutboundMessage};
use crate::webhook::{classify_value, Classified};

/// `source` of an envelope re-injected from the webhook logs.
pub const SOURCE_WEBHOOK_LOG: &str = "cafe24-webhook-log";

/// One entry of `GET /webhooks/logs`, the fields reconciliation reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Cafe24's log id: opaque, compared for equality only.
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

/// What one complete window of logs asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PagePlan {
    /// Inbox messages to send (mall group, live dedup ids), in request-time order.
    pub reinject: Vec<OutboundMessage>,
    /// Failed deliveries in the window (every failed log, retries included).
    pub failed_logs: usize,
    /// Failed logs that could not be re-injected, with the reason.
    pub skipped: Vec<(String, Skip)>,
    /// Logs answered twice (the same `log_id`), counted once.
    pub duplicates: usize,
    /// The newest request time of a successful, non-test delivery in the window: when Cafe24
    /// last got a webhook through to ingest.
    pub last_delivered_ms: Option<u64>,
}

/// Plans one complete window of logs for `mall`, in any order Cafe24 answered them.
/// `received_at_ms` of a re-injected envelope is the end of the log's request second (Cafe24's
/// `requested_time` has whole seconds, so a snapshot fetched within that second may predate the
/// event: erring late makes the worker fetch), or `now_ms` if the time is unknown.
pub fn plan_page(mall: &MallId, logs: &[LogEntry], now_ms: u64) -> PagePlan {
    let mut by_id: BTreeMap<&str, &LogEntry> = BTreeMap::new();
    for l in logs {
        by_id.entry(l.log_id.as_str()).or_insert(l);
    }
    let mut ordered: Vec<&LogEntry> = by_id.values().copied().collect();
    ordered.sort_by(|a, b| (a.requested_ms, &a.log_id).cmp(&(b.requested_ms, &b.log_id)));
    let accepted: BTreeSet<&str> = ordered.iter().filter(|l| l.success).filter_map(|l| l.trace_id.as_deref()).collect();
    let mut plan = PagePlan {
        duplicates: logs.len() - ordered.len(),
        last_delivered_ms: ordered
            .iter()
            .filter(|l| l.success && l.log_type != "T")
            .filter_map(|l| l.requested_ms)
            .max(),
        ..PagePlan::default()
    };
    let mut planned: BTreeSet<&str> = BTreeSet::new();
    for l in ordered.iter().filter(|l| l.log_type != "T" && !l.success) {
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

/// Logs asked for per page at first (Cafe24 allows 1..=10000).
pub const LOG_PAGE_LIMIT: u32 = 1_000;
/// The largest page Cafe24 answers: a one-second window that fills [`LOG_PAGE_LIMIT`] is read
/// again with it.
pub const LOG_PAGE_LIMIT_MAX: u32 = 10_000;

/// A window of request times to read: the whole seconds `start_ms..=end_ms`. Its query asks up
/// to the second after `end_ms`, so the window is covered whether Cafe24's end bound is an
/// instant or takes in its whole second (not documented); logs of that extra second are read
/// again by the next window, which starts there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogWindow {
    /// First second (epoch ms, a multiple of 1,000).
    pub start_ms: u64,
    /// Last second covered (epoch ms, a multiple of 1,000); the query's end is a second later,
    /// never after `now - settle`.
    pub end_ms: u64,
    /// `limit` of the query.
    pub limit: u32,
}

impl LogWindow {
    /// The next window: from the checkpoint — or, for a mall never reconciled,
    /// `now_ms - lookback_ms` — to the last whole second whose successor is settled
    /// (`now_ms - settle_ms`). `None` when no such second is left.
    pub fn next(checkpoint_ms: Option<u64>, now_ms: u64, lookback_ms: u64, settle_ms: u64) -> Option<Self> {
        let start_ms = checkpoint_ms.unwrap_or(now_ms.saturating_sub(lookback_ms)) / 1_000 * 1_000;
        let end_ms = (now_ms.saturating_sub(settle_ms) / 1_000 * 1_000).checked_sub(1_000)?;
        (end_ms >= start_ms).then_some(Self { start_ms, end_ms, limit: LOG_PAGE_LIMIT })
    }

    /// The checkpoint once the window is read: the first second it does not cover.
    pub fn checkpoint_after(&self) -> u64 {
        self.end_ms + 1_000
    }

    /// The `GET /webhooks/logs` query of the window.
    pub fn query(&self) -> String {
        format!(
            "requested_start_date={}&requested_end_date={}&limit={}",
            encode_query_value(&kst_iso(self.start_ms)),
            encode_query_value(&kst_iso(self.checkpoint_after())),
            self.limit
        )
    }

    /// Whether a page of `returned` logs (the list's length, before any filtering) holds the
    /// whole window: it is shorter than the limit. `links` is never needed.
    pub fn is_complete(&self, returned: usize) -> bool {
        returned < self.limit as usize
    }

    /// After a full page: a window from the same second that holds fewer logs, whatever order
    /// the page came in. By the median request second among `returned`: at the window's start,
    /// the start's second alone; at its end, all but the last second (a burst in one second is
    /// read apart from what came before it); between, the earlier of it and the middle second
    /// (an oldest-first answer fits in one step, a newest-first one halves the window). A
    /// one-second window is read at [`LOG_PAGE_LIMIT_MAX`]; `None` when even that was
    /// full (over 10,000 deliveries in one second: the caller keeps the page it has and says so).
    pub fn narrowed(&self, returned: &[LogEntry]) -> Option<Self> {
        if self.end_ms <= self.start_ms {
            return (self.limit < LOG_PAGE_LIMIT_MAX).then_some(Self { limit: LOG_PAGE_LIMIT_MAX, ..*self });
        }
        // The window's seconds before its last one: the narrowed window always ends earlier.
        let middle = self.start_ms + (self.end_ms - self.start_ms) / 2_000 * 1_000;
        let mut seconds: Vec<u64> = returned
            .iter()
            .filter_map(|l| l.requested_ms)
            .map(|t| t / 1_000 * 1_000)
            .filter(|t| (self.start_ms..=self.end_ms).contains(t))
            .collect();
        seconds.sort_unstable();
        let end_ms = match seconds.get(seconds.len() / 2).copied() {
            Some(m) if m == self.start_ms => m,
            Some(m) if m == self.end_ms => m - 1_000,
            Some(m) => middle.min(m),
            None => middle,
        };
        // One second that a full page was narrowed down to: at the largest page at once.
        let limit = if end_ms == self.start_ms { LOG_PAGE_LIMIT_MAX } else { self.limit };
        Some(Self { end_ms, limit, ..*self })
    }
}

/// Whether a list answer links a next page (`links` with `rel: next`). A hint only: an answer
/// may carry no `links` (Cafe24's published product and log answers do not); paging goes on
/// while pages are full.
pub fn has_next_page(body: &serde_json::Value) -> bool {
    body.get("links")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|l| l.iter().any(|x| x.get("rel").and_then(serde_json::Value::as_str) == Some("next")))
}

/// The log entries of a `{"logs": [...]}` page and the list's length (entries without a
/// `log_id` are left out of the first, counted in the second); `None` when the body has no
/// such list.
pub fn page_entries(body: &serde_json::Value) -> Option<(Vec<LogEntry>, usize)> {
    let list = body.get("logs")?.as_array()?;
    Some((list.iter().filter_map(LogEntry::from_value).collect(), list.len()))
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
    let received = l.requested_ms.map_or(now_ms, |t| t / 1_000 * 1_000 + 999);
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
        for logs in [logs.clone(), logs.iter().rev().cloned().collect()] {
            let p = plan_page(&mall(), &logs, NOW);
            assert_eq!(p.reinject.len(), 1, "{p:?}");
            let m = &p.reinject[0];
            let body = order("shop1", "20261201-0000002").to_string();
            assert_eq!(m.dedup_id, crate::DedupId::for_webhook(Some("tr-b"), body.as_bytes()));
            assert_eq!(m.group_id, GroupId::mall(&mall()));
            let env: serde_json::Value = serde_json::from_str(&m.body).unwrap();
            assert_eq!(
                (env["source"].as_str(), env["received_at_ms"].as_u64()),
                (Some(SOURCE_WEBHOOK_LOG), Some(NOW - 800_000 + 999)),
                "received at the end of the first failed log's second"
            );
            assert_eq!(env["payload"], json!(order("shop1", "20261201-0000002")), "the body byte for byte");
            assert_eq!(p.failed_logs, 3);
            assert_eq!(p.last_delivered_ms, Some(NOW - 700_000), "the newest successful delivery");
        }
    }

    #[test]
    fn a_whole_second_request_time_errs_towards_fetching() {
        // Cafe24 logs the request at 12:00:05 (whole seconds); the relay's snapshot of the order
        // was fetched at 12:00:05.400. The event may have happened after the fetch, so the
        // re-injected webhook must count as received after it (the worker then fetches again).
        let mut l = log("L1", "t1", false, 0, &order("shop1", "20261201-0000001"));
        l.requested_ms = Some(1_800_000_005_000);
        let fetched_at = 1_800_000_005_400;
        let p = plan_page(&mall(), &[l], NOW);
        let env: serde_json::Value = serde_json::from_str(&p.reinject[0].body).unwrap();
        assert!(env["received_at_ms"].as_u64().unwrap() > fetched_at, "{env}");
    }

    #[test]
    fn a_log_answered_twice_is_planned_once_in_request_time_order() {
        let logs = vec![
            log("zV7Ur3oBsq3B53njmYm-", "t2", false, 100_000, &order("shop1", "20261201-0000002")),
            log("Aq9", "t1", false, 200_000, &order("shop1", "20261201-0000001")),
            log("zV7Ur3oBsq3B53njmYm-", "t2", false, 100_000, &order("shop1", "20261201-0000002")),
        ];
        let p = plan_page(&mall(), &logs, NOW);
        assert_eq!((p.failed_logs, p.duplicates, p.reinject.len()), (2, 1, 2));
        let traces: Vec<String> = p
            .reinject
            .iter()
            .map(|m| {
                serde_json::from_str::<serde_json::Value>(&m.body).unwrap()["trace_id"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(traces, ["t1", "t2"], "the older request first");
    }

    #[test]
    fn test_deliveries_foreign_bodies_and_traceless_logs_are_not_reinjected() {
        let mut test = log("L1", "t1", false, 900_000, &order("shop1", "20261201-0000001"));
        test.log_type = "T".into();
        let mut test_ok = test.clone();
        test_ok.success = true;
        assert_eq!(plan_page(&mall(), &[test_ok], NOW).last_delivered_ms, None, "a test delivery is no webhook");
        let mut traceless = log("L2", "x", false, 900_000, &order("shop1", "20261201-0000002"));
        traceless.trace_id = None;
        let foreign = log("L3", "t3", false, 900_000, &order("othershop", "20261201-0000003"));
        let mut garbage = log("L4", "t4", false, 900_000, &json!(null));
        garbage.request_body = Some("{not json".into());
        let p = plan_page(&mall(), &[test, traceless, foreign, garbage], NOW);
        assert!(p.reinject.is_empty(), "{p:?}");
        assert_eq!(
            p.skipped,
            vec![("L2".into(), Skip::NoTrace), ("L3".into(), Skip::Unusable), ("L4".into(), Skip::Unusable)]
        );
        let mut no_time = log("L5", "t5", false, 0, &order("shop1", "20261201-0000005"));
        no_time.requested_ms = None;
        let p = plan_page(&mall(), &[no_time], NOW);
        let env: serde_json::Value = serde_json::from_str(&p.reinject[0].body).unwrap();
        assert_eq!(env["received_at_ms"].as_u64(), Some(NOW), "an unreadable request time: received now");
    }

    #[test]
    fn windows_cover_whole_settled_seconds_from_the_checkpoint() {
        let now = 1_800_000_000_500;
        let w = LogWindow::next(None, now, 3_600_000, 300_000).unwrap();
        assert_eq!((w.start_ms, w.end_ms, w.limit), (now - 500 - 3_600_000, now - 500 - 301_000, LOG_PAGE_LIMIT));
        assert_eq!(w.checkpoint_after(), now - 500 - 300_000, "the query ends at the settle horizon");
        let w2 = LogWindow::next(Some(w.checkpoint_after()), now + 10_000, 3_600_000, 300_000).unwrap();
        assert_eq!((w2.start_ms, w2.end_ms), (w.checkpoint_after(), w.checkpoint_after() + 9_000));
        assert_eq!(LogWindow::next(Some(w.checkpoint_after()), now, 3_600_000, 300_000), None, "nothing new settled");
        assert_eq!(
            LogWindow::next(Some(w.checkpoint_after()), now + 1_000, 3_600_000, 300_000).map(|w| w.end_ms),
            Some(w.checkpoint_after()),
            "one more second"
        );
        assert_eq!(LogWindow::next(None, 500, 1, 0), None, "no whole second before the epoch's first");
        let q = LogWindow { start_ms: 86_400_000, end_ms: 86_401_000, limit: 7 }.query();
        assert_eq!(
            q,
            "requested_start_date=1970-01-02T09%3A00%3A00%2B09%3A00&requested_end_date=1970-01-02T09%3A00%3A02%2B09%3A00&limit=7"
        );
    }

    #[test]
    fn a_full_page_narrows_the_window_until_it_fits() {
        let w = LogWindow { start_ms: 1_000_000, end_ms: 1_100_000, limit: 4 };
        assert!(w.is_complete(3) && !w.is_complete(4) && !w.is_complete(5));
        let at = |s: &[u64]| -> Vec<LogEntry> {
            s.iter()
                .map(|t| LogEntry { requested_ms: Some(t * 1_000 + 250), ..log("x", "t", false, 0, &json!({})) })
                .collect()
        };
        // Oldest-first: the returned logs are the window's first; their median ends the window.
        assert_eq!(w.narrowed(&at(&[1_000, 1_001, 1_002, 1_003])).map(|n| n.end_ms), Some(1_002_000));
        // Newest-first: the median is late, the middle second wins.
        assert_eq!(w.narrowed(&at(&[1_099, 1_098, 1_097, 1_096])).map(|n| n.end_ms), Some(1_050_000));
        // A burst in the last second is read apart; one in the first second alone.
        assert_eq!(w.narrowed(&at(&[1_100, 1_100, 1_100, 1_040])).map(|n| n.end_ms), Some(1_099_000));
        assert_eq!(
            w.narrowed(&at(&[1_000, 1_000, 1_000, 1_040])).map(|n| (n.end_ms, n.limit)),
            Some((1_000_000, LOG_PAGE_LIMIT_MAX)),
            "a single second is read at the largest page at once"
        );
        // Times outside the window or unknown are ignored; none at all halves.
        assert_eq!(w.narrowed(&at(&[5, 9_999])).map(|n| n.end_ms), Some(1_050_000));
        assert_eq!(w.narrowed(&[]).map(|n| (n.start_ms, n.limit)), Some((1_000_000, 4)));
        // Two seconds: the first alone. One second: the largest page, then give up.
        let two = LogWindow { start_ms: 7_000, end_ms: 8_000, limit: 4 };
        assert_eq!(
            two.narrowed(&at(&[8, 8, 8, 8])),
            Some(LogWindow { end_ms: 7_000, limit: LOG_PAGE_LIMIT_MAX, ..two })
        );
        let one = LogWindow { end_ms: 7_000, ..two };
        let max = one.narrowed(&at(&[7])).unwrap();
        assert_eq!(max, LogWindow { limit: LOG_PAGE_LIMIT_MAX, ..one });
        assert_eq!(max.narrowed(&at(&[7])), None);
        // Every narrowing ends strictly earlier or raises the limit, and a newest-first answer
        // (the window's last seconds) halves it: a day comes down to a second in 17 steps.
        let mut w = LogWindow { start_ms: 0, end_ms: 86_400_000, limit: LOG_PAGE_LIMIT };
        let mut steps = 0;
        while let Some(n) = {
            let top = w.end_ms / 1_000;
            w.narrowed(&at(&[top, top.saturating_sub(1), top.saturating_sub(2)]))
        } {
            assert!(n.end_ms < w.end_ms || n.limit > w.limit, "{w:?} -> {n:?}");
            w = n;
            steps += 1;
        }
        assert!(steps <= 19, "{steps} steps from a day to a second");
    }

    #[test]
    fn settings_links_and_pages_read_back() {
        assert_eq!(kst_iso(0), "1970-01-01T09:00:00+09:00");
        for t in [1_764_547_200_000u64, 1_709_164_800_000, 951_782_400_000, NOW] {
            assert_eq!(parse_cafe24_token_time(&kst_iso(t)), Some(t), "{}", kst_iso(t));
        }
        assert_eq!(reception_on(&json!({"webhook": {"reception_status": "F"}})), Some(false));
        assert_eq!(reception_on(&json!({"reception_status": "T"})), Some(true));
        for odd in [json!({}), json!({"webhook": {"reception_status": 1}}), json!({"reception_status": "yes"})] {
            assert_eq!(reception_on(&odd), None, "{odd}");
        }
        assert!(has_next_page(&json!({"links": [{"rel": "next", "href": "x"}]})));
        assert!(!has_next_page(&json!({"links": []})) && !has_next_page(&json!({"links": "next"})));
        assert!(!has_next_page(&json!({"logs": []})), "no links at all");
        let (entries, len) = page_entries(&json!({"logs": [{"log_id": "L1"}, {"nope": 1}]})).unwrap();
        assert_eq!((entries.len(), len), (1, 2), "an entry without an id still counts towards a full page");
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
