//! The simulator against the documented Cafe24 facts, over real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use cafe24_sim::state::{DAY_MS, HOUR_MS};
use cafe24_sim::{Clock, Sim, SimConfig};
use serde_json::{json, Value};

/// 2026-11-22T00:00:00Z
const T0: u64 = 1_795_305_600_000;

struct Fx {
    sim: Arc<Sim>,
    base: String,
    http: reqwest::Client,
}

impl Fx {
    async fn start(config: SimConfig, clock: Clock) -> Self {
        let sim = Arc::new(Sim::new(config, clock));
        let (addr, _task) = cafe24_sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { sim, base: format!("http://{addr}"), http }
    }

    async fn manual() -> Self {
        Self::start(SimConfig::default(), Clock::manual(T0)).await
    }

    fn token(&self, mall: &str) -> String {
        self.sim
            .seed_tokens(mall, "sim-client", cafe24_sim::state::ALL_READ_SCOPES.iter().map(|s| s.to_string()).collect())
            .0
    }

    async fn get(&self, mall: &str, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/{mall}/api/v2/admin/{path}", self.base))
            .bearer_auth(token)
            .header("X-Cafe24-Api-Version", "2025-12-01")
            .send()
            .await
            .unwrap()
    }

    async fn token_req(&self, mall: &str, form: &[(&str, &str)], secret: &str) -> (u16, Value) {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("sim-client:{secret}"));
        let r = self
            .http
            .post(format!("{}/{mall}/api/v2/oauth/token", self.base))
            .header("Authorization", format!("Basic {basic}"))
            .form(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn refresh(&self, mall: &str, rt: &str) -> (u16, Value) {
        self.token_req(mall, &[("grant_type", "refresh_token"), ("refresh_token", rt)], "sim-secret").await
    }

    fn advance(&self, ms: u64) {
        assert!(self.sim.clock.advance(ms));
    }
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn bucket_holds_forty_then_429_and_drains_two_per_second() {
    let fx = Fx::manual().await;
    let t = fx.token("shop1");
    for i in 1..=40 {
        let r = fx.get("shop1", "products/1", &t).await;
        assert_eq!(r.status(), 200, "call {i}");
        assert_eq!(header(&r, "x-api-call-limit").unwrap(), format!("{i}/40"));
    }
    let r = fx.get("shop1", "products/1", &t).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-api-call-limit").unwrap(), "40/40");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], 429, "Cafe24's error envelope");
    fx.advance(499);
    assert_eq!(fx.get("shop1", "products/1", &t).await.status(), 429, "not a whole call drained yet");
    fx.advance(1);
    assert_eq!(fx.get("shop1", "products/1", &t).await.status(), 200, "0.5 s drains one call at 2/s");
    fx.advance(10_000);
    let r = fx.get("shop1", "products/1", &t).await;
    assert_eq!(header(&r, "x-api-call-limit").unwrap(), "21/40", "10 s drained 20, then this call");
    let s = fx.sim.stats("shop1");
    assert_eq!((s.calls, s.ok, s.status_429), (44, 42, 2));
    assert_eq!(s.max_bucket_level, 40.0);
    assert_eq!(s.versions.get("2025-12-01"), Some(&44));
}

#[tokio::test]
async fn a_naive_client_with_twenty_concurrent_workers_gets_429s() {
    let fx = Arc::new(Fx::start(SimConfig::default(), Clock::Real).await);
    let t = fx.token("naive");
    let ok = Arc::new(AtomicUsize::new(0));
    let limited = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (fx, t, ok, limited) = (fx.clone(), t.clone(), ok.clone(), limited.clone());
            tokio::spawn(async move {
                for _ in 0..5 {
                    match fx
                        .get("naive", "orders/count?start_date=2026-09-01&end_date=2026-11-01", &t)
                        .await
                        .status()
                        .as_u16()
                    {
                        200 => ok.fetch_add(1, Ordering::SeqCst),
                        429 => limited.fetch_add(1, Ordering::SeqCst),
                        s => panic!("unexpected {s}"),
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let s = fx.sim.stats("naive");
    assert!(limited.load(Ordering::SeqCst) >= 50, "only {} 429s", limited.load(Ordering::SeqCst));
    assert!(ok.load(Ordering::SeqCst) >= 40);
    assert_eq!(s.status_429 as usize, limited.load(Ordering::SeqCst));
    assert!(s.max_calls_in_1s >= 10 && s.abnormal_detections >= 1, "{s:?}");
}

#[tokio::test]
async fn usage_quota_blocks_with_remain_headers_and_calls_during_the_block_lengthen_it() {
    let config = SimConfig { call_quota: 5, block_extension_ms: 5_000, ..SimConfig::default() };
    let fx = Fx::start(config, Clock::manual(T0)).await;
    let t = fx.token("busy");
    for _ in 0..4 {
        let r = fx.get("busy", "products/1", &t).await;
        assert_eq!(r.status(), 200);
        assert!(header(&r, "x-cafe24-call-remain").is_none(), "Remain only at 100%");
    }
    let r = fx.get("busy", "products/1", &t).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-cafe24-call-usage").unwrap(), "100.00");
    let remain: u64 = header(&r, "x-cafe24-call-remain").unwrap().parse().unwrap();
    assert_eq!(remain, 600, "T0 is a window boundary: blocked for the whole window");
    fx.advance(1_000);
    let r = fx.get("busy", "products/1", &t).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-cafe24-call-usage").unwrap(), "120.00", "usage rises during the block");
    let after: u64 = header(&r, "x-cafe24-call-remain").unwrap().parse().unwrap();
    assert_eq!(after, 604, "599 s left + 5 s for calling while blocked");
    fx.advance(603_000);
    assert_eq!(fx.get("busy", "products/1", &t).await.status(), 429, "the lengthened block outlives the window");
    fx.advance(7_000);
    assert_eq!(fx.get("busy", "products/1", &t).await.status(), 200);
    assert_eq!(fx.sim.stats("busy").blocked_calls, 2);
}

#[tokio::test]
async fn tokens_live_two_hours_and_fourteen_days_and_expires_at_is_kst_without_offset() {
    let fx = Fx::manual().await;
    let (access, refresh) = fx.sim.seed_tokens("m1", "sim-client", vec!["mall.read_product".into()]);
    fx.advance(2 * HOUR_MS - 1);
    assert_eq!(fx.get("m1", "products/1", &access).await.status(), 200);
    fx.advance(1);
    let r = fx.get("m1", "products/1", &access).await;
    assert_eq!(r.status(), 401, "access token dies at 2 h");
    let (s, body) = fx.refresh("m1", &refresh).await;
    assert_eq!(s, 200, "{body}");
    let now = fx.sim.clock.now_ms();
    // KST = UTC+9, written without an offset.
    assert_eq!(body["issued_at"], cafe24_sim::kst::naive_kst_millis(now));
    assert!(body["expires_at"].as_str().unwrap().ends_with(".000"));
    assert_eq!(
        cafe24_sim::kst::parse(&body["expires_at"].as_str().unwrap()[..19].replace('T', " ")),
        Some(now + 2 * HOUR_MS)
    );
    let new_refresh = body["refresh_token"].as_str().unwrap().to_owned();
    fx.advance(14 * DAY_MS);
    let (s, body) = fx.refresh("m1", &new_refresh).await;
    assert_eq!((s, body["error"].as_str()), (401, Some("invalid_grant")), "refresh token dies at 14 d");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_of_the_old_token_is_invalid_grant() {
    let fx = Fx::manual().await;
    let (_, r0) = fx.sim.seed_tokens("rot", "sim-client", vec!["mall.read_order".into()]);
    let (s, b) = fx.refresh("rot", &r0).await;
    assert_eq!(s, 200);
    let r1 = b["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r0, r1);
    let (s, b) = fx.refresh("rot", &r0).await;
    assert_eq!(s, 401);
    assert_eq!(b["error"], "invalid_grant");
    assert_eq!(b["error_description"], "Invalid refresh_token");
    let (s, _) = fx.refresh("rot", &r1).await;
    assert_eq!(s, 200, "the rotated-in token works");
    let st = fx.sim.stats("rot");
    assert_eq!((st.token_issuances, st.refresh_reuse_attempts, st.invalid_grants), (2, 1, 1));
    let (s, b) = fx.token_req("rot", &[("grant_type", "refresh_token"), ("refresh_token", &r1)], "wrong-secret").await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_client")));
}

#[tokio::test]
async fn issuance_is_capped_at_fifteen_per_two_hours_per_mall() {
    let fx = Fx::manual().await;
    let (_, mut rt) = fx.sim.seed_tokens("cap", "sim-client", vec![]);
    for i in 0..15 {
        let (s, b) = fx.refresh("cap", &rt).await;
        assert_eq!(s, 200, "issuance {i}: {b}");
        rt = b["refresh_token"].as_str().unwrap().to_owned();
        fx.advance(60_000);
    }
    let (s, b) = fx.refresh("cap", &rt).await;
    assert_eq!((s, b["error"].as_str()), (429, Some("too_many_requests")));
    fx.advance(2 * HOUR_MS - 15 * 60_000 + 1);
    let (s, _) = fx.refresh("cap", &rt).await;
    assert_eq!(s, 200, "the refused call did not rotate the token; the window moved on");
    assert_eq!(fx.sim.stats("cap").issuance_cap_refusals, 1);
}

#[tokio::test]
async fn authorize_redirects_with_code_and_state_and_codes_expire_after_sixty_seconds() {
    let fx = Fx::manual().await;
    let authorize = |state: &str| {
        format!(
            "{}/inst/api/v2/oauth/authorize?response_type=code&client_id=sim-client&state={state}&redirect_uri=http%3A%2F%2Fapp.example%2Fcb&scope=mall.read_order,mall.read_product",
            fx.base
        )
    };
    let r = fx.http.get(authorize("st%2B1")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let loc = header(&r, "location").unwrap();
    assert!(loc.starts_with("http://app.example/cb?code="), "{loc}");
    assert!(loc.ends_with("&state=st%2B1"), "{loc}");
    let code = loc.split("code=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    let fx = &fx;
    let exchange = |code: String| async move {
        fx.token_req(
            "inst",
            &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", "http://app.example/cb")],
            "sim-secret",
        )
        .await
    };
    fx.advance(60_000);
    let (s, b) = exchange(code.clone()).await;
    assert_eq!(s, 200, "valid for 60 s: {b}");
    assert_eq!(b["scopes"], json!(["mall.read_order", "mall.read_product"]));
    assert_eq!(b["mall_id"], "inst");
    let (s, b) = exchange(code).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_grant")), "single use");

    let loc = header(&fx.http.get(authorize("x")).send().await.unwrap(), "location").unwrap();
    let code = loc.split("code=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    fx.advance(60_001);
    let (s, b) = exchange(code).await;
    assert_eq!((s, b["error_description"].as_str()), (401, Some("authorization code expired")));
}

#[tokio::test]
async fn list_parameters_are_limited_like_cafe24() {
    let fx = Fx::manual().await;
    let t = fx.token("lists");
    let status = |p: &'static str| {
        let (fx, t) = (&fx, t.clone());
        async move { fx.get("lists", p, &t).await.status().as_u16() }
    };
    assert_eq!(status("orders?start_date=2026-07-01&end_date=2026-11-01").await, 422, "4-month range");
    assert_eq!(status("orders?start_date=2026-08-01&end_date=2026-11-01").await, 200, "3 months");
    assert_eq!(status("orders?start_date=2026-08-01").await, 422, "end_date required");
    assert_eq!(status("orders?start_date=2026-08-01&end_date=2026-09-01&limit=1001").await, 422);
    assert_eq!(status("orders?start_date=2026-08-01&end_date=2026-09-01&limit=0").await, 422);
    assert_eq!(status("orders?start_date=2026-08-01&end_date=2026-09-01&offset=15001").await, 422);
    assert_eq!(status("orders?start_date=2026-08-01&end_date=2026-09-01&limit=abc").await, 422);
    assert_eq!(status("orders/count?start_date=2026-04-01&end_date=2026-11-01").await, 422);
    assert_eq!(status("products?limit=101").await, 422);
    assert_eq!(status("products?offset=5001").await, 422);
    assert_eq!(status("orders/does-not-exist").await, 404);
    assert_eq!(status("products/abc").await, 422);

    let r = fx.get("lists", "products?limit=10", &t).await;
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["products"].as_array().unwrap().len(), 10);
    assert!(b.get("links").is_none(), "as published: a products list carries no links");
    let b: Value = fx.get("lists", "products?since_product_no=35&limit=100", &t).await.json().await.unwrap();
    assert_eq!(b["products"].as_array().unwrap().len(), 5, "40 products, numbers 36..=40");

    let count: Value =
        fx.get("lists", "orders/count?start_date=2026-08-22&end_date=2026-11-22", &t).await.json().await.unwrap();
    let n = count["count"].as_u64().unwrap();
    assert!(n > 0);
    let list: Value = fx
        .get("lists", "orders?start_date=2026-08-22&end_date=2026-11-22&limit=1000&embed=items", &t)
        .await
        .json()
        .await
        .unwrap();
    let orders = list["orders"].as_array().unwrap();
    assert_eq!(orders.len() as u64, n, "count agrees with the list");
    assert!(orders[0]["items"][0]["order_item_code"]
        .as_str()
        .unwrap()
        .starts_with(orders[0]["order_id"].as_str().unwrap()));
    let one: Value =
        fx.get("lists", &format!("orders/{}", orders[0]["order_id"].as_str().unwrap()), &t).await.json().await.unwrap();
    assert!(one["order"]["items"].is_null(), "items only when embedded");
    let c: Value = fx.get("lists", "customers?member_id=member0001,nobody", &t).await.json().await.unwrap();
    assert_eq!(c["customers"].as_array().unwrap().len(), 1);
    assert!(c["customers"][0].get("name").is_none() && c["customers"][0].get("email").is_none(), "no personal fields");
}

#[tokio::test]
async fn auth_failures_look_like_cafe24s() {
    let fx = Fx::manual().await;
    let t = fx.token("auth");
    assert_eq!(fx.get("auth", "products/1", "not-a-token").await.status(), 401);
    assert_eq!(fx.get("other-mall", "products/1", &t).await.status(), 401, "a token is valid for its mall only");
    let (narrow, _) = fx.sim.seed_tokens("auth", "sim-client", vec!["mall.read_product".into()]);
    let r = fx.get("auth", "orders/count?start_date=2026-11-01&end_date=2026-11-02", &narrow).await;
    assert_eq!(r.status(), 403, "scope missing");
    fx.sim.uninstall("auth", "sim-client");
    let r = fx.get("auth", "products/1", &t).await;
    assert_eq!(r.status(), 401, "uninstall revokes the tokens");
    let (t2, _) = fx.sim.seed_tokens("auth", "sim-client", vec!["mall.read_product".into()]);
    let r = fx.get("auth", "products/1", &t2).await;
    assert_eq!(r.status(), 403, "app deleted from the mall");
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], 403);
}

#[tokio::test]
async fn faults_on_demand() {
    let fx = Fx::manual().await;
    let t = fx.token("f");
    let add = |f: Value| {
        let fx = &fx;
        async move {
            assert_eq!(fx.http.post(format!("{}/sim/faults", fx.base)).json(&f).send().await.unwrap().status(), 204)
        }
    };
    add(json!({"mall": "f", "endpoint": "products", "kind": "status", "status": 503, "remaining": 1})).await;
    assert_eq!(fx.get("f", "products/1", &t).await.status(), 503);
    assert_eq!(fx.get("f", "products/1", &t).await.status(), 200, "remaining: 1");
    add(json!({"mall": "f", "kind": "rate_limit", "remaining": 2})).await;
    assert_eq!(fx.get("f", "customers?member_id=member0001", &t).await.status(), 429);
    assert_eq!(fx.get("f", "products/2", &t).await.status(), 429);
    assert_eq!(fx.get("f", "products/2", &t).await.status(), 200);
    add(json!({"mall": "f", "kind": "latency", "ms": 300, "remaining": 1})).await;
    let started = std::time::Instant::now();
    assert_eq!(fx.get("f", "products/1", &t).await.status(), 200);
    assert!(started.elapsed().as_millis() >= 300);
    add(json!({"mall": "f", "kind": "timeout", "ms": 5000})).await;
    let r = fx
        .http
        .get(format!("{}/f/api/v2/admin/products/1", fx.base))
        .bearer_auth(&t)
        .timeout(std::time::Duration::from_millis(300))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    fx.http.delete(format!("{}/sim/faults", fx.base)).send().await.unwrap();
    fx.sim.revoke("f");
    assert_eq!(fx.get("f", "products/1", &t).await.status(), 401, "revoked token");
}

/// A webhook receiver that fails its first `fail_first` requests.
async fn receiver(fail_first: usize) -> (String, Arc<std::sync::Mutex<Vec<(String, String, String)>>>) {
    use axum::http::HeaderMap;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let n = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: HeaderMap, body: String| {
            let (seen, n) = (s2.clone(), n.clone());
            async move {
                let get = |k: &str| h.get(k).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
                seen.lock().unwrap().push((get("x-api-key"), get("x-trace-id"), body));
                if n.fetch_add(1, Ordering::SeqCst) < fail_first {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

#[tokio::test]
async fn webhook_retries_duplicates_and_drops_are_visible_in_the_logs() {
    use cafe24_sim::state::{Links, LogIds, LogOrder, Variants};
    let variants = Variants {
        links: Links::Always,
        log_order: LogOrder::OldestFirst,
        log_ids: LogIds::Sortable,
        ..Variants::default()
    };
    let config = SimConfig { webhook_retry_delay_ms: 10, variants, ..SimConfig::default() };
    let fx = Fx::start(config, Clock::manual(T0)).await;
    let (url, seen) = receiver(1).await;
    fx.http
        .post(format!("{}/sim/webhooks/target", fx.base))
        .json(&json!({"url": url, "api_key": "hook-key"}))
        .send()
        .await
        .unwrap();
    let send = |body: Value| {
        let fx = &fx;
        async move {
            fx.http
                .post(format!("{}/sim/webhooks/send", fx.base))
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    // 1st event: first attempt fails (503), the automatic retry succeeds.
    let a = send(json!({"mall": "wh", "event_no": 90023, "resource": {"order_id": "20261122-0000001"}})).await;
    assert_eq!((a["attempts"].as_u64(), a["delivered"].as_u64()), (Some(2), Some(1)));
    // 2nd event: delivered, then resent as a duplicate with the same trace id.
    let b =
        send(json!({"mall": "wh", "event_no": 90025, "resource": {"order_id": "20261122-0000001"}, "duplicate": true}))
            .await;
    assert_eq!(b["delivered"], 2);
    // 3rd event: dropped.
    let c = send(json!({"mall": "wh", "event_no": 90024, "resource": {"order_id": "20261122-0000001"}, "drop": true}))
        .await;
    assert_eq!((c["attempts"].as_u64(), c["delivered"].as_u64()), (Some(0), Some(0)));

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "2 attempts + 2 deliveries; the dropped one never arrived");
    assert!(seen.iter().all(|(k, _, _)| k == "hook-key"));
    assert_eq!(seen[0].1, a["trace_id"].as_str().unwrap());
    assert_eq!(seen[2].1, seen[3].1, "a resend keeps the trace id");
    let body: Value = serde_json::from_str(&seen[0].2).unwrap();
    assert_eq!(body["event_no"], 90023);
    assert_eq!(body["resource"]["mall_id"], "wh");

    let t = fx.token("wh");
    let logs: Value = fx.get("wh", "webhooks/logs", &t).await.json().await.unwrap();
    let logs = logs["logs"].as_array().unwrap();
    let summary: Vec<(u64, &str, &str)> = logs
        .iter()
        .map(|l| (l["event_no"].as_u64().unwrap(), l["log_type"].as_str().unwrap(), l["success"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        vec![(90023, "G", "F"), (90023, "G", "T"), (90025, "G", "T"), (90025, "R", "T"), (90024, "G", "F")]
    );
    assert_eq!(logs[0]["response_http_code"], 503);
    assert!(logs[4]["response_http_code"].is_null(), "dropped: never sent");
    let failed: Value = fx.get("wh", "webhooks/logs?success=F&event_no=90024", &t).await.json().await.unwrap();
    assert_eq!(failed["logs"].as_array().unwrap().len(), 1, "the official way to find a lost webhook");
    let since = logs[2]["log_id"].as_str().unwrap();
    let later: Value = fx.get("wh", &format!("webhooks/logs?since_log_id={since}"), &t).await.json().await.unwrap();
    assert_eq!(later["logs"].as_array().unwrap().len(), 2);
    let paged: Value = fx.get("wh", "webhooks/logs?limit=2", &t).await.json().await.unwrap();
    assert!(paged["links"][0]["href"].as_str().unwrap().contains("since_log_id="));
    assert_eq!(fx.get("wh", "webhooks/logs?limit=0", &t).await.status(), 422);
    assert_eq!(fx.get("wh", "webhooks/logs?success=maybe", &t).await.status(), 422);
}

#[tokio::test]
async fn changes_show_in_the_content_and_can_emit_the_matching_webhook() {
    let fx = Fx::manual().await;
    let (url, seen) = receiver(0).await;
    fx.http
        .post(format!("{}/sim/webhooks/target", fx.base))
        .json(&json!({"url": url, "api_key": "k"}))
        .send()
        .await
        .unwrap();
    let placed: Value = fx
        .http
        .post(format!("{}/sim/malls/chg/orders", fx.base))
        .json(&json!({"emit_webhook": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(placed["delivered"], 1);
    let body: Value = serde_json::from_str(&seen.lock().unwrap()[0].2).unwrap();
    let id = body["resource"]["order_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("20261122-"), "{id}");
    let t = fx.token("chg");
    let before: Value = fx.get("chg", &format!("orders/{id}"), &t).await.json().await.unwrap();
    fx.advance(5_000);
    let r = fx
        .http
        .post(format!("{}/sim/malls/chg/orders/{id}/change", fx.base))
        .json(&json!({"paid": true, "emit_event_no": 90025}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let after: Value = fx.get("chg", &format!("orders/{id}"), &t).await.json().await.unwrap();
    assert_eq!((before["order"]["paid"].as_str(), after["order"]["paid"].as_str()), (Some("F"), Some("T")));
    assert!(after["order"].get("updated_date").is_none(), "Cafe24's orders carry no updated_date");
    assert_eq!(
        Some(after["order"].clone()),
        fx.sim.order_json("chg", 1, &id).map(|mut o| {
            o.as_object_mut().unwrap().remove("items");
            o
        })
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(serde_json::from_str::<Value>(&seen[1].2).unwrap()["event_no"], 90025);
}

#[tokio::test]
async fn garbage_requests_get_clear_errors_not_crashes() {
    let fx = Fx::manual().await;
    let r = fx.http.post(format!("{}/x/api/v2/oauth/token", fx.base)).body("%%%").send().await.unwrap();
    assert_eq!(r.status(), 401, "no client auth");
    let (s, b) = fx.token_req("x", &[("grant_type", "password")], "sim-secret").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("unsupported_grant_type")));
    let r = fx
        .http
        .get(format!("{}/x/api/v2/admin/products/1", fx.base))
        .header("Authorization", "Bearer")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = fx.http.get(format!("{}/x/api/v2/oauth/authorize?response_type=token", fx.base)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = fx
        .http
        .post(format!("{}/sim/clock/advance", fx.base))
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
}

/// Where Cafe24's documentation is silent, the simulator defaults to what its published answers
/// show: no `links` on products and logs, opaque log ids, and an order the relay must not rely
/// on (newest first).
#[tokio::test]
async fn by_default_lists_look_like_cafe24s_published_answers() {
    let config = SimConfig { products_per_mall: 150, ..SimConfig::default() };
    let fx = Fx::start(config, Clock::manual(T0)).await;
    let t = fx.token("pub");
    for i in 0..3u64 {
        fx.advance(1_000);
        cafe24_sim::webhooks::log(
            &fx.sim,
            cafe24_sim::webhooks::WebhookLog {
                log_id: String::new(),
                log_type: "G".into(),
                event_no: 90023,
                mall_id: "pub".into(),
                trace_id: format!("t{i}"),
                requested_time: cafe24_sim::kst::iso_kst(fx.sim.clock.now_ms()),
                requested_ms: fx.sim.clock.now_ms(),
                request_endpoint: "https://x.example/h".into(),
                request_body: "{}".into(),
                success: "F".into(),
                response_http_code: None,
                response_body: None,
            },
        );
    }
    let logs: Value = fx.get("pub", "webhooks/logs?limit=2", &t).await.json().await.unwrap();
    assert!(logs.get("links").is_none(), "{logs}");
    let traces: Vec<&str> = logs["logs"].as_array().unwrap().iter().map(|l| l["trace_id"].as_str().unwrap()).collect();
    assert_eq!(traces, ["t2", "t1"], "newest first");
    let id = logs["logs"][0]["log_id"].as_str().unwrap();
    let sortable = id.len() == 13 && id.starts_with('L') && id.bytes().skip(1).all(|b| b.is_ascii_digit());
    assert!(id.len() == 20 && !sortable, "opaque: {id}");
    let rest: Value = fx.get("pub", &format!("webhooks/logs?since_log_id={id}"), &t).await.json().await.unwrap();
    assert_eq!(rest["logs"].as_array().unwrap().len(), 2, "after it, in the answer's order");
    let p: Value = fx.get("pub", "products?limit=100", &t).await.json().await.unwrap();
    assert_eq!((p["products"].as_array().unwrap().len(), p.get("links")), (100, None));
    let o: Value =
        fx.get("pub", "orders?start_date=2026-08-01&end_date=2026-09-01&limit=1", &t).await.json().await.unwrap();
    assert!(o["links"].is_array(), "orders carry links, as published");
}
