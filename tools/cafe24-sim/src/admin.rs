//! The Admin API: `/{mall}/api/v2/admin/{endpoint}`. Every request goes through the same gate
//! as at Cafe24 — version record, rate detector, auth, app-deleted check, faults, scope, usage
//! quota, leaky bucket — and every answer (429s included) carries the limit headers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::kst;
use crate::state::{CallRecord, FaultKind, Inner, Sim, MAX_CALL_RECORDS};

/// Cafe24's error envelope.
pub fn error_body(status: u16, message: &str) -> Value {
    json!({"error": {"code": status, "message": message, "more_info": {}}})
}

/// The endpoint name used in stats and fault matching: ids replaced by `{id}`.
pub fn endpoint_name(rest: &str) -> String {
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["orders", "count"] => "orders/count".into(),
        ["orders", _] => "orders/{id}".into(),
        ["products", _] => "products/{id}".into(),
        ["webhooks", "logs"] => "webhooks/logs".into(),
        ["webhooks", "setting"] => "webhooks/setting".into(),
        [one] => (*one).to_owned(),
        _ => rest.to_owned(),
    }
}

fn required_scope(endpoint: &str) -> Option<&'static str> {
    match endpoint.split('/').next() {
        Some("orders") => Some("mall.read_order"),
        Some("products") => Some("mall.read_product"),
        Some("customers") => Some("mall.read_customer"),
        Some("customersprivacy") => Some("mall.read_privacy"),
        Some("webhooks") | Some("scripttags") => Some("mall.read_application"),
        Some("shops") => Some("mall.read_store"),
        _ => None,
    }
}

struct Answer {
    status: u16,
    body: Value,
    headers: Vec<(&'static str, String)>,
    delay: Option<Duration>,
}

impl Answer {
    fn err(status: u16, msg: &str) -> Self {
        Self { status, body: error_body(status, msg), headers: Vec::new(), delay: None }
    }
}

/// Axum handler for every Admin API GET.
pub async fn dispatch(
    State(sim): State<Arc<Sim>>,
    Path((mall, rest)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    respond(gate_and_handle(&sim, &mall, &rest, &q, &headers)).await
}

/// The HTTP response of an answer, after its injected delay.
async fn respond(a: Answer) -> Response {
    if let Some(d) = a.delay {
        tokio::time::sleep(d).await;
    }
    let mut resp = (StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(a.body))
        .into_response();
    for (k, v) in a.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// Axum handler for every Admin API POST and PUT: the same gate as a read (with the write
/// scope of the resource), then the write, recorded as an effect when it is answered 2xx; a
/// write Cafe24 announces by webhook sends it to the registered target, after the answer
/// (see [`write_event`]).
pub async fn write(
    State(sim): State<Arc<Sim>>,
    method: axum::http::Method,
    Path((mall, rest)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return (StatusCode::BAD_REQUEST, axum::Json(error_body(400, "The request body is not a JSON object.")))
                .into_response()
        }
    };
    let w = Write { method: method.as_str().to_owned(), body };
    let answer = gate_and_handle_write(&sim, &mall, &rest, &q, &headers, Some(&w));
    if (200..300).contains(&answer.status) {
        let shop =
            w.body.get("shop_no").and_then(Value::as_u64).or_else(|| q.get("shop_no").and_then(|v| v.parse().ok()));
        if let Some((event_no, resource)) = write_event(&w.method, &rest, shop.unwrap_or(1)) {
            let (sim, mall) = (sim.clone(), mall.clone());
            tokio::spawn(async move {
                // No target registered: nothing is sent, as for any event.
                let _ = crate::webhooks::send(&sim, &mall, event_no, &resource, &Default::default()).await;
            });
        }
    }
    respond(answer).await
}

/// The webhook a write makes Cafe24 send (our reading of the event table): a shipping status
/// changed → 90024, a shipment registered → 90064 (shipping information changed), a product
/// updated → 90002. Points and script tags announce nothing.
pub fn write_event(method: &str, rest: &str, shop: u64) -> Option<(u32, Value)> {
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let shop = shop.to_string();
    match (method, parts.as_slice()) {
        ("PUT", ["orders", id]) => Some((90024, json!({"order_id": id, "event_shop_no": shop}))),
        ("POST", ["orders", id, "shipments"]) => Some((90064, json!({"order_id": id, "event_shop_no": shop}))),
        ("PUT", ["products", no]) => Some((90002, json!({"product_no": no, "event_shop_no": shop}))),
        _ => None,
    }
}

/// A POST or PUT.
struct Write {
    method: String,
    body: Value,
}

fn write_scope(endpoint: &str) -> Option<&'static str> {
    match endpoint.split('/').next() {
        Some("orders") => Some("mall.write_order"),
        Some("products") => Some("mall.write_product"),
        Some("customers") => Some("mall.write_customer"),
        Some("points") => Some("mall.write_mileage"),
        Some("scripttags") => Some("mall.write_application"),
        _ => None,
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

fn gate_and_handle(sim: &Sim, mall: &str, rest: &str, q: &HashMap<String, String>, headers: &HeaderMap) -> Answer {
    gate_and_handle_write(sim, mall, rest, q, headers, None)
}

fn gate_and_handle_write(
    sim: &Sim,
    mall: &str,
    rest: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    write: Option<&Write>,
) -> Answer {
    let now = sim.clock.now_ms();
    let endpoint = endpoint_name(rest);
    let mut g = sim.lock();
    let version = headers.get("x-cafe24-api-version").and_then(|v| v.to_str().ok()).unwrap_or("none").to_owned();
    {
        let m = sim.mall(&mut g, mall);
        *m.stats.versions.entry(version).or_default() += 1;
        m.window.record(now, sim.config.abnormal_per_sec);
        m.stats.max_calls_in_1s = m.window.max_in_1s;
        m.stats.abnormal_detections = m.window.detections;
    }
    let answer = gate(sim, &mut g, mall, rest, &endpoint, q, headers, now, write);
    let m = sim.mall(&mut g, mall);
    m.stats.calls += 1;
    match answer.status {
        200..=299 => m.stats.ok += 1,
        401 => m.stats.status_401 += 1,
        403 => m.stats.status_403 += 1,
        404 => m.stats.status_404 += 1,
        422 => m.stats.status_422 += 1,
        429 => m.stats.status_429 += 1,
        500..=599 => m.stats.status_5xx += 1,
        _ => {}
    }
    let e = m.stats.endpoints.entry(endpoint.clone()).or_default();
    e.calls += 1;
    if answer.status == 429 {
        e.status_429 += 1;
    }
    if g.calls.len() < MAX_CALL_RECORDS {
        let shop_no = q.get("shop_no").and_then(|v| v.trim().parse().ok());
        g.calls.push(CallRecord { at_ms: now, mall: mall.to_owned(), endpoint, status: answer.status, shop_no });
    }
    answer
}

#[allow(clippy::too_many_arguments)]
fn gate(
    sim: &Sim,
    g: &mut Inner,
    mall: &str,
    rest: &str,
    endpoint: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    now: u64,
    write: Option<&Write>,
) -> Answer {
    // Auth.
    let Some(token) = bearer(headers) else {
        return Answer::err(401, "Access token is required.");
    };
    let Some(t) = g.access.get(&token).cloned() else {
        return Answer::err(401, "Invalid access_token.");
    };
    if t.revoked || t.mall != mall {
        return Answer::err(401, "Invalid access_token.");
    }
    if t.expires_ms <= now {
        return Answer::err(401, "access_token time expired.");
    }
    if sim.mall(g, mall).uninstalled.contains(&t.client_id) {
        return Answer::err(403, "The app has been deleted from this mall.");
    }
    // A retired API version (no header: the app's version in the developer center, never retired here).
    if let (Some(retired), Some(asked)) =
        (g.retired_before.as_deref(), headers.get("x-cafe24-api-version").and_then(|v| v.to_str().ok()))
    {
        if asked < retired && sim.config.variants.retired_version == crate::state::RetiredVersion::Refused {
            return Answer::err(
                400,
                &format!(
                    "The version you requested is not available. The default value for the app version is {retired}."
                ),
            );
        }
    }

    // Faults.
    let mut delay = None;
    if let Some(i) = g.faults.iter().position(|f| {
        f.mall.as_deref().is_none_or(|m| m == mall)
            && f.endpoint.as_deref().is_none_or(|e| endpoint.starts_with(e) || rest.starts_with(e))
    }) {
        let mut exhausted = false;
        let kind = match g.faults.get_mut(i) {
            Some(f) => {
                if let Some(n) = f.remaining.as_mut() {
                    *n = n.saturating_sub(1);
                    exhausted = *n == 0;
                }
                f.kind.clone()
            }
            None => FaultKind::Latency { ms: 0 },
        };
        if exhausted {
            g.faults.remove(i);
        }
        match kind {
            FaultKind::Status { status } => return Answer::err(status, "Injected fault."),
            FaultKind::RateLimit => {
                let key = sim.rate_key(mall, &t.client_id);
                let l = sim.limits(g, &key);
                let mut a = Answer::err(429, "Too Many Requests.");
                a.headers.push(("x-api-call-limit", l.bucket.header(now)));
                return a;
            }
            FaultKind::Latency { ms } => delay = Some(Duration::from_millis(ms)),
            FaultKind::Timeout { ms } => {
                let mut a = Answer::err(504, "Gateway Timeout.");
                a.delay = Some(Duration::from_millis(ms));
                return a;
            }
        }
    }

    // Scope.
    let scope = if write.is_some() { write_scope(endpoint) } else { required_scope(endpoint) };
    if let Some(scope) = scope {
        if !t.scopes.iter().any(|s| s == scope) {
            return Answer::err(403, &format!("Insufficient scope: {scope} is required."));
        }
    }

    // Usage quota, then bucket. Both count every authenticated call.
    let key = sim.rate_key(mall, &t.client_id);
    let processing = sim.config.processing_ms;
    let l = sim.limits(g, &key);
    let (usage, blocked) = l.usage.record(now, processing);
    // An endpoint with a limit of its own (scripttags: 10), as `variants.endpoint_limit` reads it.
    let family = rest.trim_matches('/').split('/').next().unwrap_or("");
    let own = sim.config.endpoint_limits.get(family).copied().filter(|c| *c < sim.config.capacity);
    let (bucket, call_limit) = match (own, sim.config.variants.endpoint_limit) {
        (None, _) => (l.bucket.try_add(now), l.bucket.header(now)),
        (Some(cap), crate::state::EndpointLimit::SharedLevel) => {
            let r = if l.bucket.level(now) + 1.0 <= f64::from(cap) + 1e-9 {
                l.bucket.try_add(now)
            } else {
                Err(l.bucket.level(now))
            };
            let used = l.bucket.level(now).ceil().min(f64::from(cap)) as u32;
            (r, format!("{used}/{cap}"))
        }
        (Some(cap), crate::state::EndpointLimit::OwnBucket) => {
            let leak = sim.config.leak_per_sec;
            let b =
                l.endpoints.entry(family.to_owned()).or_insert_with(|| crate::limits::LeakyBucket::new(cap, leak, now));
            (b.try_add(now), b.header(now))
        }
    };
    let level = l.bucket.level(now);
    let mut limit_headers = vec![
        ("x-api-call-limit", call_limit),
        ("x-cafe24-call-usage", format!("{:.2}", usage.call_pct)),
        ("x-cafe24-time-usage", format!("{:.2}", usage.time_pct)),
    ];
    if let Some(s) = usage.call_remain_s {
        limit_headers.push(("x-cafe24-call-remain", s.to_string()));
    }
    if let Some(s) = usage.time_remain_s {
        limit_headers.push(("x-cafe24-time-remain", s.to_string()));
    }
    let m = sim.mall(g, mall);
    m.stats.max_bucket_level = m.stats.max_bucket_level.max(level);
    if blocked {
        m.stats.blocked_calls += 1;
        let mut a = Answer::err(429, "API usage limit exceeded. Try again later.");
        a.headers = limit_headers;
        return a;
    }
    if bucket.is_err() {
        let mut a = Answer::err(429, "Too Many Requests.");
        a.headers = limit_headers;
        return a;
    }

    let (status, body) = match write {
        Some(w) => handle_write(sim, g, mall, rest, q, w, now),
        None => handle(sim, g, mall, rest, q),
    };
    Answer { status, body, headers: limit_headers, delay }
}

fn param_u64(q: &HashMap<String, String>, k: &str, default: u64, max: u64, min: u64) -> Result<u64, String> {
    match q.get(k) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!("{k} must be an integer between {min} and {max}.")),
        },
    }
}

fn next_link(mall: &str, path: &str, q: &HashMap<String, String>, offset: u64, limit: u64, total: usize) -> Value {
    if offset + limit < total as u64 {
        let mut q2: Vec<(String, String)> =
            q.iter().filter(|(k, _)| *k != "offset").map(|(k, v)| (k.clone(), v.clone())).collect();
        q2.push(("offset".into(), (offset + limit).to_string()));
        q2.sort();
        let qs: Vec<String> = q2.iter().map(|(k, v)| format!("{k}={v}")).collect();
        json!([{"rel": "next", "href": format!("/{mall}/api/v2/admin/{path}?{}", qs.join("&"))}])
    } else {
        json!([])
    }
}

/// Order list filters shared by `/orders` and `/orders/count`.
fn order_window(q: &HashMap<String, String>) -> Result<(u64, u64, String), String> {
    let start_s = q.get("start_date").ok_or("start_date is required.")?;
    let end_s = q.get("end_date").ok_or("end_date is required.")?;
    let start = kst::parse(start_s).ok_or("start_date is invalid.")?;
    let mut end = kst::parse(end_s).ok_or("end_date is invalid.")?;
    if end_s.trim().len() == 10 {
        end += 86_400_000 - 1; // a date-only end is inclusive
    } else {
        end += 999; // so is the end's second (Cafe24's timestamps have no fraction)
    }
    if end < start {
        return Err("end_date must not be before start_date.".into());
    }
    let limit_day = kst::add_months(kst::kst_date(start), 3);
    let (ed_y, ed_m, ed_d) = kst::kst_date(end);
    if (ed_y, ed_m, ed_d) > limit_day {
        return Err("The search period cannot exceed 3 months.".into());
    }
    let date_type = q.get("date_type").cloned().unwrap_or_else(|| "order_date".into());
    if !matches!(date_type.as_str(), "order_date" | "pay_date") {
        return Err("date_type is invalid.".into());
    }
    Ok((start, end, date_type))
}

fn handle(sim: &Sim, g: &mut Inner, mall: &str, rest: &str, q: &HashMap<String, String>) -> (u16, Value) {
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let logs_snapshot = if parts.as_slice() == ["webhooks", "logs"] { Some(g.logs.clone()) } else { None };
    let state = sim.mall(g, mall);
    let reception = if state.reception_off { "F" } else { "T" };
    let fail = |status: u16, m: &str| (status, error_body(status, m));
    // Without `shop_no`, shop 1's view (as Cafe24 answers); a shop the mall does not have is refused.
    let shop = match q.get("shop_no").map(|v| v.trim().parse::<u32>()) {
        None => 1,
        Some(Ok(n)) => n,
        Some(Err(_)) => return fail(422, "shop_no must be an integer."),
    };
    let Some(data) = state.shop(shop) else {
        return fail(422, &format!("shop_no {shop} is not a shop of this mall."));
    };
    match parts.as_slice() {
        ["scripttags"] => (200, json!({"scripttags": data.scripttags})),
        ["shops"] => {
            let shops: Vec<Value> = state
                .shop_numbers()
                .into_iter()
                .map(|n| {
                    json!({"shop_no": n, "default": if n == 1 { "T" } else { "F" }, "shop_name": format!("Shop {n}"),
                        "language_code": if n == 1 { "ko_KR" } else { "en_US" }})
                })
                .collect();
            (200, json!({"shops": shops}))
        }
        ["orders", "count"] => match order_window(q) {
            Ok((s, e, dt)) => {
                let n = data.orders.values().filter(|o| in_window(o, s, e, &dt)).count();
                (200, json!({"count": n}))
            }
            Err(m) => fail(422, &m),
        },
        ["orders", id] => match data.orders.get(*id) {
            Some(o) => {
                let embed = q.get("embed").is_some_and(|e| e.split(',').any(|x| x.trim() == "items"));
                (200, json!({"order": o.to_json(embed, &data.products)}))
            }
            None => fail(404, "No order found."),
        },
        ["orders"] => {
            let (s, e, dt) = match order_window(q) {
                Ok(w) => w,
                Err(m) => return fail(422, &m),
            };
            let (limit, offset) = match (param_u64(q, "limit", 10, 1000, 1), param_u64(q, "offset", 0, 15_000, 0)) {
                (Ok(l), Ok(o)) => (l, o),
                (Err(m), _) | (_, Err(m)) => return fail(422, &m),
            };
            let embed = q.get("embed").is_some_and(|e| e.split(',').any(|x| x.trim() == "items"));
            let all: Vec<_> = data.orders.values().filter(|o| in_window(o, s, e, &dt)).collect();
            let page: Vec<Value> = all
                .iter()
                .skip(offset as usize)
                .take(limit as usize)
                .map(|o| o.to_json(embed, &data.products))
                .collect();
            let links = sim.config.variants.links.on("orders");
            list_answer("orders", page, links.then(|| next_link(mall, "orders", q, offset, limit, all.len())))
        }
        ["products", no] => match no.parse::<u64>() {
            Ok(n) => match data.products.get(&n) {
                Some(p) => (200, json!({"product": p.to_json()})),
                None => fail(404, "No product found."),
            },
            Err(_) => fail(422, "product_no must be an integer."),
        },
        ["products"] => {
            let (limit, offset, since) = match (
                param_u64(q, "limit", 10, 100, 1),
                param_u64(q, "offset", 0, 5_000, 0),
                param_u64(q, "since_product_no", 0, u64::MAX, 0),
            ) {
                (Ok(l), Ok(o), Ok(s)) => (l, o, s),
                (Err(m), _, _) | (_, Err(m), _) | (_, _, Err(m)) => return fail(422, &m),
            };
            let all: Vec<_> = data.products.values().filter(|p| p.product_no > since).collect();
            let page: Vec<Value> = all.iter().skip(offset as usize).take(limit as usize).map(|p| p.to_json()).collect();
            let links = sim.config.variants.links.on("products");
            list_answer("products", page, links.then(|| next_link(mall, "products", q, offset, limit, all.len())))
        }
        ["customers"] => {
            let Some(ids) = q.get("member_id").filter(|s| !s.trim().is_empty()) else {
                return fail(422, "member_id is required.");
            };
            let found: Vec<Value> =
                ids.split(',').filter_map(|id| data.customers.get(id.trim())).map(|c| c.to_json()).collect();
            (200, json!({"customers": found}))
        }
        // All members by join date: from `created_start_date` (its second included), oldest
        // first — the order a cursor implies; Cafe24 does not state it (an assumption).
        ["customersprivacy"] => {
            if q.get("search_type").map(String::as_str) != Some("created_date") {
                return fail(422, "search_type must be created_date.");
            }
            let Some(start) = q.get("created_start_date").and_then(|v| kst::parse(v)) else {
                return fail(422, "created_start_date is required.");
            };
            let limit = match param_u64(q, "limit", 10, 1000, 1) {
                Ok(l) => l as usize,
                Err(m) => return fail(422, &m),
            };
            let mut all: Vec<&crate::data::Customer> =
                data.customers.values().filter(|c| c.created_ms >= start).collect();
            all.sort_by(|a, b| (a.created_ms, &a.member_id).cmp(&(b.created_ms, &b.member_id)));
            if sim.config.variants.member_order == crate::state::MemberOrder::NewestFirst {
                all.reverse();
            }
            let page: Vec<Value> = all.iter().take(limit).map(|c| c.to_privacy_json()).collect();
            (200, json!({"customersprivacy": page}))
        }
        ["webhooks", "setting"] => (200, json!({"webhook": {"shop_no": 1, "reception_status": reception}})),
        ["webhooks", "logs"] => {
            crate::webhooks::query_logs(mall, q, logs_snapshot.as_deref().unwrap_or_default(), sim.config.variants)
        }
        _ => fail(404, "No such resource."),
    }
}

/// The writes the simulator knows (our reading of Cafe24's Admin API; bodies are
/// `{"shop_no"?, "request": {...}}`): `POST points` (grant or take points), `POST
/// orders/{id}/shipments` (a tracking number), `PUT orders/{id}` (`shipping_status`), `PUT
/// products/{no}` (`product_name`, `price`). A 2xx is one effect
/// ([`crate::state::Effect`]); nothing else is.
fn handle_write(
    sim: &Sim,
    g: &mut Inner,
    mall: &str,
    rest: &str,
    q: &HashMap<String, String>,
    w: &Write,
    now: u64,
) -> (u16, Value) {
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let fail = |status: u16, m: &str| (status, error_body(status, m));
    let Some(req) = w.body.get("request").and_then(Value::as_object) else {
        return fail(422, "request is required.");
    };
    let shop = w
        .body
        .get("shop_no")
        .and_then(Value::as_u64)
        .or_else(|| q.get("shop_no").and_then(|v| v.parse().ok()))
        .unwrap_or(1) as u32;
    let state = sim.mall(g, mall);
    let Some(data) = (if shop == 1 { Some(&mut state.data) } else { state.other_shops.get_mut(&shop) }) else {
        return fail(422, &format!("shop_no {shop} is not a shop of this mall."));
    };
    let answer = match (w.method.as_str(), parts.as_slice()) {
        ("POST", ["points"]) => {
            let amount =
                req.get("amount").and_then(|v| v.as_str().and_then(|s| s.parse::<f64>().ok()).or_else(|| v.as_f64()));
            match (req.get("member_id").and_then(Value::as_str), amount) {
                (Some(m), Some(a)) if a > 0.0 => (
                    201,
                    json!({"point": {"shop_no": shop, "member_id": m, "amount": format!("{a:.2}"),
                        "type": req.get("type").cloned().unwrap_or(json!("increase")),
                        "reason": req.get("reason").cloned().unwrap_or(Value::Null), "created_date": kst::iso_kst(now)}}),
                ),
                _ => fail(422, "member_id and a positive amount are required."),
            }
        }
        ("POST", ["orders", id, "shipments"]) => {
            match (data.orders.contains_key(*id), req.get("tracking_no").and_then(Value::as_str)) {
                (false, _) => fail(404, "No order found."),
                (true, Some(t)) if !t.is_empty() => (
                    201,
                    json!({"shipment": {"shop_no": shop, "order_id": id, "tracking_no": t,
                    "shipping_company_code": req.get("shipping_company_code").cloned().unwrap_or(Value::Null),
                    "shipping_code": format!("D-{}", now)}}),
                ),
                (true, _) => fail(422, "tracking_no is required."),
            }
        }
        ("PUT", ["orders", id]) => {
            let products = data.products.clone();
            match data.orders.get_mut(*id) {
                None => fail(404, "No order found."),
                Some(o) => {
                    if let Some(s) = req.get("shipping_status").and_then(Value::as_str) {
                        o.shipping_status = s.to_owned();
                    }
                    o.updated_ms = now;
                    (200, json!({"order": o.to_json(false, &products)}))
                }
            }
        }
        ("POST", ["scripttags"]) => match req.get("src").and_then(Value::as_str) {
            Some(src) if src.starts_with("https://") => {
                let tag = json!({"shop_no": shop, "script_no": format!("{}", 1_000 + data.scripttags.len()),
                    "src": src, "display_location": req.get("display_location").cloned().unwrap_or(json!(["all"])),
                    "created_date": kst::iso_kst(now)});
                data.scripttags.push(tag.clone());
                (201, json!({"scripttag": tag}))
            }
            _ => fail(422, "src must be an https URL."),
        },
        ("PUT", ["products", no]) => match no.parse::<u64>().ok().and_then(|n| data.products.get_mut(&n)) {
            None => fail(404, "No product found."),
            Some(p) => {
                if let Some(n) = req.get("product_name").and_then(Value::as_str) {
                    p.product_name = n.to_owned();
                }
                if let Some(pr) =
                    req.get("price").and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_u64()))
                {
                    p.price = pr;
                }
                p.updated_ms = now;
                (200, json!({"product": p.to_json()}))
            }
        },
        _ => fail(404, "No such resource."),
    };
    if (200..300).contains(&answer.0) {
        state.stats.effects.push(crate::state::Effect {
            method: w.method.clone(),
            path: rest.trim_matches('/').to_owned(),
            body: w.body.clone(),
        });
    }
    answer
}

/// `{"<key>": [...]}`, with `links` when the variant sends them.
fn list_answer(key: &str, page: Vec<Value>, links: Option<Value>) -> (u16, Value) {
    let mut body = serde_json::Map::new();
    body.insert(key.to_owned(), Value::Array(page));
    if let Some(l) = links {
        body.insert("links".into(), l);
    }
    (200, Value::Object(body))
}

fn in_window(o: &crate::data::Order, start: u64, end: u64, date_type: &str) -> bool {
    let t = match date_type {
        "pay_date" if o.paid => o.order_date_ms + 60_000,
        "pay_date" => return false,
        _ => o.order_date_ms,
    };
    (start..=end).contains(&t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names_hide_ids() {
        assert_eq!(endpoint_name("orders/20200717-0029236"), "orders/{id}");
        assert_eq!(endpoint_name("orders/count"), "orders/count");
        assert_eq!(endpoint_name("products/12"), "products/{id}");
        assert_eq!(endpoint_name("customers"), "customers");
        assert_eq!(endpoint_name("webhooks/logs"), "webhooks/logs");
    }
}
