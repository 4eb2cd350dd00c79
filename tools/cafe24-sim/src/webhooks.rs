//! The webhook sender and `/webhooks/logs`.
//!
//! A delivery POSTs `{"event_no":…, "resource":{…}}` to the configured target with
//! `X-API-Key` and `X-Trace-ID`, retries on non-2xx and timeouts, and logs every attempt.
//! On request it also resends the delivery (log type `R`, same trace id) or drops it (logged as
//! failed, never sent) — the duplicates and losses the relay must survive. A configured share of
//! events is lost the same way (`SimConfig::webhook_drop_rate`), and a mall whose reception is
//! switched off gets nothing (every event logged as failed).

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::admin::error_body;
use crate::kst;
use crate::state::{LogIds, LogOrder, Sim, Variants};

/// One entry of `/webhooks/logs`, as Cafe24 shapes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WebhookLog {
    /// Opaque or sortable, as `SimConfig::variants` says.
    pub log_id: String,
    /// `G` normal, `R` resend, `T` test.
    pub log_type: String,
    /// Event number.
    pub event_no: u32,
    pub mall_id: String,
    /// The delivery's `X-Trace-ID`.
    pub trace_id: String,
    /// KST with offset.
    pub requested_time: String,
    /// Internal: when, ms (not part of Cafe24's shape).
    #[serde(skip)]
    pub requested_ms: u64,
    /// Target URL.
    pub request_endpoint: String,
    /// The webhook body as a JSON string.
    pub request_body: String,
    /// `T`/`F`.
    pub success: String,
    /// Receiver's status, if any answered.
    pub response_http_code: Option<u16>,
    /// Receiver's body (truncated).
    pub response_body: Option<String>,
}

/// What to do with one event.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SendOptions {
    /// Also resend it afterwards (same trace id, log type `R`).
    #[serde(default)]
    pub duplicate: bool,
    /// Drop it: log a failure, never deliver.
    #[serde(default)]
    pub drop: bool,
}

/// Outcome of one event's deliveries.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SendReport {
    /// Trace id of the (first) delivery.
    pub trace_id: String,
    /// HTTP attempts made.
    pub attempts: u32,
    /// Times the receiver answered 2xx.
    pub delivered: u32,
    /// Log ids written.
    pub log_ids: Vec<String>,
}

fn uuid_like() -> String {
    let a: u128 = rand::random();
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        (a >> 96) as u32,
        (a >> 80) as u16,
        (a >> 64) as u16,
        (a >> 48) as u16,
        (a & 0xffff_ffff_ffff) as u64
    )
}

/// Builds the webhook body for an event.
pub fn event_body(mall: &str, event_no: u32, resource: &Value) -> Value {
    let mut r = resource.as_object().cloned().unwrap_or_default();
    r.insert("mall_id".into(), Value::String(mall.to_owned()));
    r.entry("event_shop_no").or_insert(Value::String("1".into()));
    json!({"event_no": event_no, "resource": r})
}

/// Records one delivery attempt in the logs; its id.
pub fn log(sim: &Sim, e: WebhookLog) -> String {
    let mut g = sim.lock();
    g.next_log += 1;
    let id = match sim.config.variants.log_ids {
        LogIds::Sortable => format!("L{:012}", g.next_log),
        LogIds::Opaque => opaque_log_id(),
    };
    g.logs.push(WebhookLog { log_id: id.clone(), ..e });
    id
}

/// 20 characters of Cafe24's published log-id alphabet (`zV7Ur3oBsq3B53njmYm-`): unique with
/// overwhelming odds, with no order.
fn opaque_log_id() -> String {
    use rand::Rng as _;
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut r = rand::rng();
    (0..20).filter_map(|_| A.get(r.random_range(0..A.len())).map(|b| char::from(*b))).collect()
}

/// Sends one event according to `opts`. Needs a target (`/sim/webhooks/target`).
pub async fn send(
    sim: &Sim,
    mall: &str,
    event_no: u32,
    resource: &Value,
    opts: &SendOptions,
) -> Result<SendReport, String> {
    let Some((url, key)) = sim.lock().webhook_target.clone() else {
        return Err("no webhook target configured".into());
    };
    let body = event_body(mall, event_no, resource).to_string();
    let trace = uuid_like();
    let mut report = SendReport { trace_id: trace.clone(), attempts: 0, delivered: 0, log_ids: Vec::new() };
    let template = |log_type: &str, trace: &str| WebhookLog {
        log_id: String::new(),
        log_type: log_type.into(),
        event_no,
        mall_id: mall.to_owned(),
        trace_id: trace.to_owned(),
        requested_time: kst::iso_kst(sim.clock.now_ms()),
        requested_ms: sim.clock.now_ms(),
        request_endpoint: url.clone(),
        request_body: body.clone(),
        success: "F".into(),
        response_http_code: None,
        response_body: None,
    };
    let reception_off = {
        let mut g = sim.lock();
        sim.mall(&mut g, mall).reception_off
    };
    let lost = sim.config.webhook_drop_rate > 0.0 && rand::random::<f64>() < sim.config.webhook_drop_rate;
    if opts.drop || lost || reception_off {
        let mut entry = template("G", &trace);
        entry.response_body = Some(if reception_off { "reception off" } else { "not delivered" }.into());
        report.log_ids.push(log(sim, entry));
        return Ok(report);
    }
    let mut rounds = vec![("G", trace.clone())];
    if opts.duplicate {
        rounds.push(("R", trace.clone()));
    }
    for (log_type, first_trace) in rounds {
        let mut trace_now = first_trace;
        for attempt in 0..=sim.config.webhook_retries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(sim.config.webhook_retry_delay_ms)).await;
                if !sim.config.retry_keeps_trace_id {
                    trace_now = uuid_like();
                }
            }
            report.attempts += 1;
            let r = sim
                .http
                .post(&url)
                .header("content-type", "application/json")
                .header("X-API-Key", &key)
                .header("X-Trace-ID", &trace_now)
                .body(body.clone())
                .send()
                .await;
            let mut entry = template(log_type, &trace_now);
            let ok = match r {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    entry.response_http_code = Some(status);
                    let text = resp.text().await.unwrap_or_default();
                    entry.response_body = Some(text.chars().take(500).collect());
                    (200..300).contains(&status)
                }
                Err(e) => {
                    entry.response_body =
                        Some(if e.is_timeout() { "timeout".into() } else { "connection failed".into() });
                    false
                }
            };
            entry.success = if ok { "T" } else { "F" }.into();
            report.log_ids.push(log(sim, entry));
            if ok {
                report.delivered += 1;
                break;
            }
        }
    }
    Ok(report)
}

/// `GET /webhooks/logs` for one mall, with Cafe24's filters, in the variant's order.
/// `requested_end_date` is an instant (a log later in its second is not included: the stricter
/// reading); `since_log_id` answers the logs after that one in the answer's order (its meaning
/// is undocumented; an id not found answers from the start).
pub fn query_logs(mall: &str, q: &HashMap<String, String>, logs: &[WebhookLog], variants: Variants) -> (u16, Value) {
    let fail = |m: &str| (422, error_body(422, m));
    let limit = match q.get("limit").map(|v| v.trim().parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=10_000).contains(&n) => n,
        Some(_) => return fail("limit must be an integer between 1 and 10000."),
    };
    let event_no = match q.get("event_no").map(|v| v.trim().parse::<u32>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return fail("event_no is invalid."),
    };
    let date = |k: &str| -> Result<Option<u64>, String> {
        match q.get(k) {
            None => Ok(None),
            Some(v) => kst::parse(v).map(Some).ok_or_else(|| format!("{k} is invalid.")),
        }
    };
    let (start, end) = match (date("requested_start_date"), date("requested_end_date")) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(m), _) | (_, Err(m)) => return fail(&m),
    };
    let success = q.get("success").map(String::as_str);
    if success.is_some_and(|s| s != "T" && s != "F") {
        return fail("success must be T or F.");
    }
    let log_type = q.get("log_type").map(String::as_str);
    if log_type.is_some_and(|t| !matches!(t, "G" | "R" | "T")) {
        return fail("log_type must be G, R or T.");
    }
    let since = q.get("since_log_id").cloned();
    let mut matching: Vec<&WebhookLog> = logs
        .iter()
        .filter(|l| l.mall_id == mall)
        .filter(|l| event_no.is_none_or(|n| l.event_no == n))
        .filter(|l| start.is_none_or(|s| l.requested_ms >= s))
        .filter(|l| end.is_none_or(|e| l.requested_ms <= e))
        .filter(|l| success.is_none_or(|s| l.success == s))
        .filter(|l| log_type.is_none_or(|t| l.log_type == t))
        .collect();
    // Written in request order; a stable sort keeps that order within a millisecond.
    matching.sort_by_key(|l| l.requested_ms);
    if variants.log_order == LogOrder::NewestFirst {
        matching.reverse();
    }
    if let Some(s) = since {
        if let Some(i) = matching.iter().position(|l| l.log_id == s) {
            matching.drain(..=i);
        }
    }
    let page: Vec<&WebhookLog> = matching.iter().take(limit).copied().collect();
    if !variants.links.on("webhooks/logs") {
        return (200, json!({"logs": page}));
    }
    let links = match (matching.len() > limit, page.last()) {
        (true, Some(last)) => {
            json!([{"rel": "next", "href": format!("/{mall}/api/v2/admin/webhooks/logs?since_log_id={}&limit={limit}", last.log_id)}])
        }
        _ => json!([]),
    };
    (200, json!({"logs": page, "links": links}))
}
