//! Control API under `/sim/` for tests, the demo and benchmarks (not part of Cafe24).
//!
//! | method and path | body | effect |
//! |---|---|---|
//! | `GET /sim/health` | | `ok` |
//! | `GET /sim/clock` | | `{"now_ms","manual"}` |
//! | `POST /sim/clock/advance` | `{"ms"}` | advances a manual clock (409 on the real one) |
//! | `GET /sim/stats` / `GET /sim/stats/{mall}` | | what Cafe24 saw, per mall and endpoint |
//! | `GET /sim/calls?since_ms=` | | every Admin API call (time, mall, endpoint, status) |
//! | `POST /sim/tokens` | `{"mall","client_id"?,"scopes"?}` | an installed app's token pair, no OAuth dance |
//! | `POST /sim/malls/{mall}/revoke` | | revokes every token of the mall |
//! | `GET /sim/malls/{mall}/launch?app_url=&client_id=` | | 302 to the App URL with Cafe24's signed launch query (`hmac`, `timestamp`) |
//! | `POST /sim/malls/{mall}/uninstall` | `{"client_id"?,"emit_webhook"?}` | deletes the app from the mall (403 from then on), optionally sends 90077 |
//! | `POST /sim/malls/{mall}/orders` | `{"shop_no"?,"member_id"?,"paid"?,"emit_webhook"?}` | places an order in a shop (default 1), optionally sends 90023 with that `event_shop_no` |
//! | `POST /sim/malls/{mall}/orders/{id}/change` | `{"shop_no"?,"paid"?,"shipping_status"?,"emit_event_no"?,"duplicate"?,"drop"?}` | changes it, optionally sends the event |
//! | `POST /sim/malls/{mall}/products/{no}/change` | `{"shop_no"?,"price"?,"selling"?,"description_bytes"?,"emit_event_no"?,…}` | the same for a product in one shop's view |
//! | `GET /sim/malls/{mall}/orders` | | the mall's order ids |
//! | `POST /sim/faults` / `DELETE /sim/faults` | a fault (see [`crate::state::Fault`]) | inject / clear faults |
//! | `POST /sim/webhooks/target` | `{"url","api_key"}` | where webhooks go |
//! | `POST /sim/webhooks/send` | `{"mall","event_no","resource","duplicate"?,"drop"?}` | sends one event |

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::kst;
use crate::state::{Fault, Sim};
use crate::webhooks::{self, SendOptions};

/// The `/sim` routes.
pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/sim/health", get(|| async { "ok" }))
        .route("/sim/clock", get(clock))
        .route("/sim/clock/advance", post(advance))
        .route("/sim/stats", get(all_stats))
        .route("/sim/stats/{mall}", get(mall_stats))
        .route("/sim/calls", get(calls))
        .route("/sim/tokens", post(tokens))
        .route("/sim/malls/{mall}/revoke", post(revoke))
        .route("/sim/malls/{mall}/launch", get(crate::oauth::launch))
        .route("/sim/malls/{mall}/uninstall", post(uninstall))
        .route("/sim/malls/{mall}/reception", post(set_reception))
        .route("/sim/malls/{mall}/orders", post(create_order).get(list_orders))
        .route("/sim/malls/{mall}/orders/{id}/change", post(change_order))
        .route("/sim/malls/{mall}/products/{no}/change", post(change_product))
        .route("/sim/faults", post(add_fault).delete(clear_faults))
        .route("/sim/webhooks/target", post(set_target))
        .route("/sim/webhooks/send", post(send))
}

fn bad(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({"error": msg}))).into_response()
}

async fn clock(State(sim): State<Arc<Sim>>) -> Json<Value> {
    Json(json!({"now_ms": sim.clock.now_ms(), "manual": sim.clock.is_manual()}))
}

#[derive(Deserialize)]
struct Advance {
    ms: u64,
}

async fn advance(State(sim): State<Arc<Sim>>, Json(a): Json<Advance>) -> Response {
    if sim.clock.advance(a.ms) {
        Json(json!({"now_ms": sim.clock.now_ms()})).into_response()
    } else {
        bad(StatusCode::CONFLICT, "the simulator runs on the real clock (start it with --manual-clock)")
    }
}

async fn all_stats(State(sim): State<Arc<Sim>>) -> Json<Value> {
    let g = sim.lock();
    let malls: serde_json::Map<String, Value> =
        g.malls.iter().map(|(k, m)| (k.clone(), serde_json::to_value(&m.stats).unwrap_or_default())).collect();
    Json(json!({"malls": malls}))
}

async fn mall_stats(State(sim): State<Arc<Sim>>, Path(mall): Path<String>) -> Json<Value> {
    Json(serde_json::to_value(sim.stats(&mall)).unwrap_or_default())
}

async fn calls(State(sim): State<Arc<Sim>>, Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let since: u64 = q.get("since_ms").and_then(|s| s.parse().ok()).unwrap_or(0);
    let g = sim.lock();
    let v: Vec<&crate::state::CallRecord> = g.calls.iter().filter(|c| c.at_ms >= since).collect();
    Json(serde_json::to_value(v).unwrap_or_default())
}

#[derive(Deserialize)]
struct TokenReq {
    mall: String,
    client_id: Option<String>,
    scopes: Option<Vec<String>>,
}

async fn tokens(State(sim): State<Arc<Sim>>, Json(r): Json<TokenReq>) -> Response {
    let Some(app) = r.client_id.as_deref().map_or(sim.config.apps.first(), |c| sim.app(c)).cloned() else {
        return bad(StatusCode::BAD_REQUEST, "unknown client_id");
    };
    let scopes = r.scopes.unwrap_or(app.scopes);
    let (a, rt) = sim.seed_tokens(&r.mall, &app.client_id, scopes);
    Json(json!({"access_token": a, "refresh_token": rt, "client_id": app.client_id})).into_response()
}

async fn revoke(State(sim): State<Arc<Sim>>, Path(mall): Path<String>) -> StatusCode {
    sim.revoke(&mall);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize, Default)]
struct UninstallReq {
    client_id: Option<String>,
    #[serde(default)]
    emit_webhook: bool,
}

async fn uninstall(
    State(sim): State<Arc<Sim>>,
    Path(mall): Path<String>,
    body: Option<Json<UninstallReq>>,
) -> Response {
    let r = body.map(|b| b.0).unwrap_or_default();
    let Some(app) = r.client_id.as_deref().map_or(sim.config.apps.first(), |c| sim.app(c)).cloned() else {
        return bad(StatusCode::BAD_REQUEST, "unknown client_id");
    };
    sim.uninstall(&mall, &app.client_id);
    if r.emit_webhook {
        let now = sim.clock.now_ms();
        let resource = json!({"client_id": app.client_id, "app_name": "relay", "deleted_date": kst::iso_kst(now)});
        return match webhooks::send(&sim, &mall, 90077, &resource, &SendOptions::default()).await {
            Ok(rep) => Json(serde_json::to_value(rep).unwrap_or_default()).into_response(),
            Err(e) => bad(StatusCode::CONFLICT, &e),
        };
    }
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize, Default)]
struct NewOrder {
    /// The shop it is placed in (default 1); its webhook carries it as `event_shop_no`.
    shop_no: Option<u32>,
    member_id: Option<String>,
    paid: Option<bool>,
    #[serde(default)]
    emit_webhook: bool,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    drop: bool,
}

async fn emit(sim: &Sim, mall: &str, event_no: u32, resource: Value, opts: SendOptions) -> Response {
    match webhooks::send(sim, mall, event_no, &resource, &opts).await {
        Ok(rep) => Json(serde_json::to_value(rep).unwrap_or_default()).into_response(),
        Err(e) => bad(StatusCode::CONFLICT, &e),
    }
}

async fn create_order(State(sim): State<Arc<Sim>>, Path(mall): Path<String>, body: Option<Json<NewOrder>>) -> Response {
    let r = body.map(|b| b.0).unwrap_or_default();
    let now = sim.clock.now_ms();
    let header = {
        let mut g = sim.lock();
        let shop = r.shop_no.unwrap_or(1);
        let Some(data) = sim.mall(&mut g, &mall).shop_mut(shop) else {
            return bad(StatusCode::NOT_FOUND, "no such shop");
        };
        let product = data.products.keys().next().copied().unwrap_or(1);
        let id = data.add_order(
            now,
            r.member_id.unwrap_or_else(|| "member0001".into()),
            vec![(product, 1, 10_000)],
            r.paid.unwrap_or(false),
        );
        match data.orders.get(&id) {
            Some(o) => with_shop(order_header(o), shop),
            None => return bad(StatusCode::INTERNAL_SERVER_ERROR, "order vanished"),
        }
    };
    if r.emit_webhook {
        return emit(&sim, &mall, 90023, header, SendOptions { duplicate: r.duplicate, drop: r.drop }).await;
    }
    Json(header).into_response()
}

/// A webhook resource of shop `shop` (`event_shop_no` is a string in Cafe24's samples).
fn with_shop(mut resource: Value, shop: u32) -> Value {
    if let Some(r) = resource.as_object_mut() {
        r.insert("event_shop_no".into(), Value::String(shop.to_string()));
    }
    resource
}

fn order_header(o: &crate::data::Order) -> Value {
    json!({
        "order_id": o.order_id,
        "order_date": kst::iso_kst(o.order_date_ms),
        "paid": if o.paid { "T" } else { "F" },
        "shipping_status": o.shipping_status,
        "member_id": o.member_id,
    })
}

async fn list_orders(State(sim): State<Arc<Sim>>, Path(mall): Path<String>) -> Json<Value> {
    let mut g = sim.lock();
    let ids: Vec<String> = sim.mall(&mut g, &mall).data.orders.keys().cloned().collect();
    Json(json!({"order_ids": ids}))
}

#[derive(Deserialize, Default)]
struct Change {
    /// The shop whose view changes (default 1).
    shop_no: Option<u32>,
    paid: Option<bool>,
    shipping_status: Option<String>,
    price: Option<u64>,
    selling: Option<bool>,
    /// Products: replace the description with one of about this many bytes.
    description_bytes: Option<usize>,
    emit_event_no: Option<u32>,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    drop: bool,
}

async fn change_order(
    State(sim): State<Arc<Sim>>,
    Path((mall, id)): Path<(String, String)>,
    body: Option<Json<Change>>,
) -> Response {
    let c = body.map(|b| b.0).unwrap_or_default();
    let now = sim.clock.now_ms();
    let header = {
        let mut g = sim.lock();
        let shop = c.shop_no.unwrap_or(1);
        let Some(o) = sim.mall(&mut g, &mall).shop_mut(shop).and_then(|d| d.orders.get_mut(&id)) else {
            return bad(StatusCode::NOT_FOUND, "no such order");
        };
        if let Some(p) = c.paid {
            o.paid = p;
        }
        if let Some(s) = c.shipping_status {
            o.shipping_status = s;
        }
        o.updated_ms = now.max(o.updated_ms + 1);
        with_shop(order_header(o), shop)
    };
    match c.emit_event_no {
        Some(n) => emit(&sim, &mall, n, header, SendOptions { duplicate: c.duplicate, drop: c.drop }).await,
        None => Json(header).into_response(),
    }
}

async fn change_product(
    State(sim): State<Arc<Sim>>,
    Path((mall, no)): Path<(String, u64)>,
    body: Option<Json<Change>>,
) -> Response {
    let c = body.map(|b| b.0).unwrap_or_default();
    let now = sim.clock.now_ms();
    let resource = {
        let mut g = sim.lock();
        let shop = c.shop_no.unwrap_or(1);
        let Some(p) = sim.mall(&mut g, &mall).shop_mut(shop).and_then(|d| d.products.get_mut(&no)) else {
            return bad(StatusCode::NOT_FOUND, "no such product");
        };
        if let Some(price) = c.price {
            p.price = price;
        }
        if let Some(s) = c.selling {
            p.selling = s;
        }
        if let Some(b) = c.description_bytes {
            p.description = crate::data::Product::long_description(no, b.min(5_000_000));
        }
        p.updated_ms = now.max(p.updated_ms + 1);
        with_shop(
            json!({"product_no": p.product_no, "product_code": p.product_code, "updated_date": kst::iso_kst(p.updated_ms)}),
            shop,
        )
    };
    match c.emit_event_no {
        Some(n) => emit(&sim, &mall, n, resource, SendOptions { duplicate: c.duplicate, drop: c.drop }).await,
        None => Json(resource).into_response(),
    }
}

async fn add_fault(State(sim): State<Arc<Sim>>, Json(f): Json<Fault>) -> StatusCode {
    sim.lock().faults.push(f);
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(sim): State<Arc<Sim>>) -> StatusCode {
    sim.lock().faults.clear();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Target {
    url: String,
    api_key: String,
}

#[derive(Deserialize)]
struct Reception {
    on: bool,
}

/// Switches a mall's webhook reception on or off (Cafe24 switches it off after repeated failures).
async fn set_reception(State(sim): State<Arc<Sim>>, Path(mall): Path<String>, Json(r): Json<Reception>) -> StatusCode {
    let mut g = sim.lock();
    sim.mall(&mut g, &mall).reception_off = !r.on;
    StatusCode::NO_CONTENT
}

async fn set_target(State(sim): State<Arc<Sim>>, Json(t): Json<Target>) -> StatusCode {
    sim.lock().webhook_target = Some((t.url, t.api_key));
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct SendReq {
    mall: String,
    event_no: u32,
    #[serde(default)]
    resource: Value,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    drop: bool,
}

async fn send(State(sim): State<Arc<Sim>>, Json(r): Json<SendReq>) -> Response {
    emit(&sim, &r.mall, r.event_no, r.resource, SendOptions { duplicate: r.duplicate, drop: r.drop }).await
}
