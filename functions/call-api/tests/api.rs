//! The call API over the in-memory ports and the simulator (in-process): what each request
//! comes to, and that a request repeated with its `Idempotency-Key` is made once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use cafe24_sim::state::{AppConfig, Fault, FaultKind, ALL_READ_SCOPES, ALL_WRITE_SCOPES};
use cafe24_sim::{Clock, Sim, SimConfig};
use call_api::{CallApi, CallApiConfig};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt};
use relay_cafe24::command::{run, Run};
use relay_cafe24::{Cafe24, Cafe24Config};
use relay_domain::command::{Command, Outcome};
use relay_domain::ports::memory::{MemoryGate, MemoryState, MemoryTokens};
use relay_domain::ports::{CommandRecord, CommandStore, Noted, SnapshotStore as _, StoreError};
use relay_domain::ratelimit::{Acquire, Class};
use relay_domain::tokens::{TokenPair, TokenStatus, TokenStore as _};
use relay_domain::{MallId, SnapshotKind};
use serde_json::{json, Value};

type Api = CallApi<MemoryGate, MemoryTokens, MemoryState>;

struct Fx {
    sim: Arc<Sim>,
    gate: MemoryGate,
    tokens: MemoryTokens,
    state: MemoryState,
    api: Api,
    /// The client's configuration (for another client on the same gate and tokens).
    ccfg: Cafe24Config,
}

async fn fx(timeout_ms: u64) -> Fx {
    fx_allowing(timeout_ms, "").await
}

/// [`fx`] with `COMMAND_ALLOW` set to `allow`.
async fn fx_allowing(timeout_ms: u64, allow: &str) -> Fx {
    let scopes: Vec<String> = ALL_READ_SCOPES.iter().chain(ALL_WRITE_SCOPES).map(|s| s.to_string()).collect();
    let app =
        AppConfig { client_id: "relay-client".into(), client_secret: "relay-secret".into(), scopes: scopes.clone() };
    let sim =
        Arc::new(Sim::new(SimConfig { apps: vec![app], orders_per_mall: 3, ..SimConfig::default() }, Clock::Real));
    let (addr, _t) = cafe24_sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let tokens = MemoryTokens::default();
    let (a, r) = sim.seed_tokens("shop", "relay-client", scopes.clone());
    let now = sim.clock.now_ms();
    tokens.put_installed(&MallId::parse("shop").unwrap(), &TokenPair::issued(a, r, scopes, now), now).await.unwrap();
    let base = format!("http://{addr}/{{mall_id}}");
    let mut ccfg = Cafe24Config::from_lookup(|k| match k {
        "CAFE24_API_BASE_URL" => Some(base.clone()),
        "CAFE24_CLIENT_ID" => Some("relay-client".into()),
        "CAFE24_CLIENT_SECRET" => Some("relay-secret".into()),
        _ => None,
    })
    .unwrap();
    ccfg.request_timeout = std::time::Duration::from_millis(timeout_ms);
    ccfg.call_margin = std::time::Duration::from_millis(100);
    ccfg.min_call_wait = std::time::Duration::from_millis(100);
    let cfg = CallApiConfig::from_lookup(|k| match k {
        "STATE_TABLE" | "TOKEN_TABLE" | "RATE_LIMIT_TABLE" => Some("t".into()),
        "CALL_DEFAULT_WAIT_MS" => Some("500".into()),
        "COMMAND_ALLOW" => Some(allow.to_owned()),
        _ => None,
    })
    .unwrap();
    let (gate, state) = (MemoryGate::default(), MemoryState::default());
    let cafe24 = Cafe24::new(ccfg.clone(), gate.clone(), tokens.clone(), relay_lambda::clock::system_clock()).unwrap();
    Fx { sim, gate, tokens, state: state.clone(), api: CallApi::new(cafe24, state, cfg), ccfg }
}

fn request(method: Method, path: &str, key: Option<&str>, body: &str) -> Request {
    let mut b = lambda_http::http::Request::builder()
        .method(method)
        .uri(format!("https://x.lambda-url.ap-northeast-2.on.aws{path}"));
    if let Some(k) = key {
        b = b.header("idempotency-key", k);
    }
    b.body(Body::Text(body.to_owned())).unwrap()
}

async fn call(f: &Fx, key: Option<&str>, body: &Value) -> (StatusCode, Value, Option<String>) {
    let r = f.api.handle(request(Method::POST, "/v1/call", key, &body.to_string())).await;
    let outcome = r.headers().get("x-relay-outcome").map(|v| v.to_str().unwrap().to_owned());
    let replayed = r.headers().get("x-relay-replayed").is_some();
    let status = r.status();
    let body: Value = serde_json::from_slice(r.body().as_ref()).unwrap_or(Value::Null);
    (status, body, outcome.map(|o| if replayed { format!("{o}+replayed") } else { o }))
}

fn grant() -> Value {
    json!({"mall_id": "shop", "method": "POST", "path": "points",
        "body": {"shop_no": 1, "request": {"member_id": "m1", "amount": "300", "reason": "ui-1"}}})
}

fn effects(f: &Fx) -> usize {
    f.sim.stats("shop").effects.len()
}

#[tokio::test]
async fn a_write_is_answered_with_cafe24s_answer_and_a_retried_request_returns_the_recorded_one() {
    let f = fx(2_000).await;
    let (status, body, outcome) = call(&f, Some("ui-1"), &grant()).await;
    assert_eq!((status, outcome.as_deref()), (StatusCode::CREATED, Some("succeeded")));
    assert_eq!(body["point"]["amount"], "300.00");
    let calls = f.sim.stats("shop").calls;
    let (status, again, outcome) = call(&f, Some("ui-1"), &grant()).await;
    assert_eq!((status, outcome.as_deref()), (StatusCode::CREATED, Some("succeeded+replayed")));
    assert_eq!(again, body);
    assert_eq!((effects(&f), f.sim.stats("shop").calls), (1, calls), "made once");
}

#[tokio::test]
async fn a_post_without_an_answer_is_uncertain_and_its_retry_sends_nothing() {
    let f = fx(300).await;
    f.sim.lock().faults.push(Fault {
        mall: Some("shop".into()),
        endpoint: Some("points".into()),
        kind: FaultKind::Latency { ms: 1_000 },
        remaining: Some(1),
    });
    let (status, body, outcome) = call(&f, Some("ui-2"), &grant()).await;
    assert_eq!((status, outcome.as_deref()), (StatusCode::BAD_GATEWAY, Some("uncertain")));
    assert_eq!(body["error"]["code"], "uncertain");
    let (status, _, outcome) = call(&f, Some("ui-2"), &grant()).await;
    assert_eq!((status, outcome.as_deref()), (StatusCode::BAD_GATEWAY, Some("uncertain+replayed")));
    assert_eq!(effects(&f), 1, "applied once by Cafe24, never sent again");
}

#[tokio::test]
async fn no_credit_within_the_budget_is_a_503_with_retry_after_never_a_429() {
    let f = fx(2_000).await;
    f.gate.script([Acquire::Wait(5_000)]);
    let r = f.api.handle(request(Method::POST, "/v1/call", Some("ui-3"), &grant().to_string())).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "5");
    assert_eq!((effects(&f), f.sim.stats("shop").status_429), (0, 0));
    // A wait inside the budget is waited.
    f.gate.script([Acquire::Wait(300)]);
    let mut body = grant();
    body["wait_ms"] = json!(2_000);
    let (status, _, _) = call(&f, Some("ui-3"), &body).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(effects(&f), 1);
}

#[tokio::test]
async fn reads_need_no_key_and_may_take_a_young_snapshot_instead_of_a_call() {
    let f = fx(2_000).await;
    let order = {
        let mut g = f.sim.lock();
        f.sim.mall(&mut g, "shop").data.orders.keys().next().cloned().unwrap()
    };
    let read = json!({"mall_id": "shop", "method": "GET", "path": format!("orders/{order}"), "max_age_s": 60});
    let (status, body, outcome) = call(&f, None, &read).await;
    assert_eq!((status, outcome.as_deref()), (StatusCode::OK, Some("succeeded")), "nothing stored: a call");
    assert_eq!(body["order"]["order_id"], order.as_str());
    let calls = f.sim.stats("shop").calls;
    let mall = MallId::parse("shop").unwrap();
    let now = f.sim.clock.now_ms();
    f.state
        .upsert(&mall, SnapshotKind::Order, &order, now, Some(&json!({"order_id": order, "stored": true})), "j")
        .await
        .unwrap();
    let (status, body, outcome) = call(&f, None, &read).await;
    assert_eq!((status, outcome.as_deref()), (StatusCode::OK, Some("snapshot")));
    assert_eq!((body["order"]["stored"].as_bool(), f.sim.stats("shop").calls), (Some(true), calls));
    let mut strict = read.clone();
    strict["max_age_s"] = json!(0);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (_, _, outcome) = call(&f, None, &strict).await;
    assert_eq!(outcome.as_deref(), Some("succeeded"), "older than asked: a call");

    // The snapshots route serves the stored copy to any language.
    let r = f.api.handle(request(Method::GET, &format!("/v1/snapshots/shop/order/{order}"), None, "")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = serde_json::from_slice(r.body().as_ref()).unwrap();
    assert_eq!((v["data"]["stored"].as_bool(), v["deleted"].as_bool()), (Some(true), Some(false)));
    let r = f.api.handle(request(Method::GET, "/v1/snapshots/shop/order/19990101-0000001", None, "")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    for bad in ["/v1/snapshots/shop/invoice/1", "/v1/snapshots/Bad!/order/1", "/v1/snapshots/shop/order/a%20b"] {
        let r = f.api.handle(request(Method::GET, bad, None, "")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let shop_zero = request(Method::GET, &format!("/v1/snapshots/shop/order/{order}"), None, "")
        .with_query_string_parameters(std::collections::HashMap::from([("shop_no".to_owned(), "zero".to_owned())]));
    assert_eq!(f.api.handle(shop_zero).await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_requests_get_a_clear_code_and_no_call() {
    let f = fx(2_000).await;
    let cases: Vec<(Option<&str>, String, &str)> = vec![
        (Some("k"), "not json".into(), "not_json"),
        (Some("k"), "[1]".into(), "not_json"),
        (None, grant().to_string(), "missing_idempotency_key"),
        (Some("has space"), grant().to_string(), "bad_key"),
        (
            Some("k"),
            json!({"mall_id": "shop", "method": "POST", "path": "../oauth/token", "body": {}}).to_string(),
            "bad_path",
        ),
        (Some("k"), json!({"mall_id": "shop", "method": "PATCH", "path": "points"}).to_string(), "bad_method"),
        (
            Some("k"),
            {
                let mut g = grant();
                g["wait_ms"] = json!(60_000);
                g.to_string()
            },
            "bad_wait",
        ),
        (
            Some("k"),
            {
                let mut g = grant();
                g["max_age_s"] = json!("soon");
                g.to_string()
            },
            "bad_max_age",
        ),
        (
            Some("k"),
            {
                let mut g = grant();
                g["key"] = json!("other");
                g.to_string()
            },
            "bad_field",
        ),
    ];
    for (key, body, code) in cases {
        let r = f.api.handle(request(Method::POST, "/v1/call", key, &body)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{code}");
        let v: Value = serde_json::from_slice(r.body().as_ref()).unwrap();
        assert_eq!(v["error"]["code"], code);
    }
    let r = f.api.handle(request(Method::GET, "/v1/call", None, "")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(f.sim.stats("shop").calls, 0);

    // A mall the relay does not know, and one that must authorize again.
    let mut other = grant();
    other["mall_id"] = json!("nomall");
    let (status, body, _) = call(&f, Some("k-2"), &other).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_installed")));
    let now = f.sim.clock.now_ms();
    let fresh = fx(2_000).await;
    fresh.tokens.set_status(&MallId::parse("shop").unwrap(), TokenStatus::NeedsReauth, now).await.unwrap();
    let (status, body, _) = call(&fresh, Some("k-3"), &grant()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("needs_reauth")));
    assert_eq!(fresh.sim.stats("shop").calls, 0);

    // Cafe24's own refusal comes back as Cafe24 said it.
    let mut zero = grant();
    zero["body"]["request"]["amount"] = json!("0");
    let (status, body, outcome) = call(&f, Some("k-4"), &zero).await;
    assert_eq!((status, outcome.as_deref()), (StatusCode::UNPROCESSABLE_ENTITY, Some("failed")));
    assert!(body["error"]["message"].as_str().unwrap().contains("amount"));
}

#[tokio::test]
async fn a_request_outside_the_allow_list_is_a_403_and_no_call() {
    let f = fx_allowing(2_000, "PUT orders/*, GET **").await;
    let (status, body, _) = call(&f, Some("k-1"), &grant()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("not_allowed")));
    assert_eq!(f.sim.stats("shop").calls, 0);
    // What the list names goes through.
    let (status, ..) = call(&f, None, &json!({"mall_id": "shop", "method": "GET", "path": "products/1"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((f.sim.stats("shop").calls, effects(&f)), (1, 0));
}

/// A call to an endpoint with a documented limit of its own asks the limiter within that limit.
#[tokio::test]
async fn a_call_to_scripttags_is_admitted_within_its_own_limit() {
    let f = fx(2_000).await;
    let (s1, ..) = call(&f, None, &json!({"mall_id": "shop", "method": "GET", "path": "scripttags"})).await;
    let (s2, ..) = call(&f, None, &json!({"mall_id": "shop", "method": "GET", "path": "products/1"})).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(f.gate.caps_asked(), [Some(10), None]);
}

/// The command store, with record reads that take a while: two runs of one key both read
/// "nothing yet" before either notes its request.
struct SlowReads(MemoryState);

impl CommandStore for SlowReads {
    async fn command_record(&self, mall: &MallId, key: &str) -> Result<Option<CommandRecord>, StoreError> {
        // Read, then answered late.
        let r = self.0.command_record(mall, key).await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        r
    }
    async fn note_sending(
        &self,
        mall: &MallId,
        key: &str,
        writer: &str,
        exclusive: bool,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<Noted, StoreError> {
        self.0.note_sending(mall, key, writer, exclusive, now_ms, expires_ms).await
    }
    async fn clear_sending(&self, mall: &MallId, key: &str, writer: &str) -> Result<(), StoreError> {
        self.0.clear_sending(mall, key, writer).await
    }
    async fn record_outcome(
        &self,
        mall: &MallId,
        key: &str,
        o: &Value,
        now: u64,
        exp: u64,
    ) -> Result<Value, StoreError> {
        self.0.record_outcome(mall, key, o, now, exp).await
    }
}

/// The same key through both doors at the same instant (a command, and the app's call): the
/// POST's note is one run's, so Cafe24 gets one request; the other run learns it is out and,
/// asked again, finds its outcome.
#[tokio::test]
async fn one_key_run_twice_at_the_same_instant_is_posted_once() {
    let f = fx(2_000).await;
    let store = SlowReads(f.state.clone());
    let client = || Cafe24::new(f.ccfg.clone(), f.gate.clone(), f.tokens.clone(), relay_lambda::clock::system_clock());
    let (c1, c2) = (client().unwrap(), client().unwrap());
    let mut g = grant();
    g["v"] = json!(1);
    g["key"] = json!("same-key");
    let cmd = Command::parse(&g.to_string()).unwrap();
    let (a, b) = tokio::join!(run(&c1, &store, &cmd, Class::Interactive), run(&c2, &store, &cmd, Class::Live));
    assert_eq!(effects(&f), 1, "one request reached Cafe24: {a:?} / {b:?}");
    let (sent, waited) = match (&a, &b) {
        (Run::Recorded { .. }, Run::InFlight { .. }) => (&a, &b),
        (Run::InFlight { .. }, Run::Recorded { .. }) => (&b, &a),
        _ => panic!("one run sends, the other waits: {a:?} / {b:?}"),
    };
    assert!(matches!(sent, Run::Recorded { outcome: Outcome::Succeeded { status: 201, .. }, replayed: false }));
    assert!(matches!(waited, Run::InFlight { retry_ms } if *retry_ms >= 100));
    // Asked again, the waiting run finds the recorded outcome and sends nothing.
    let again = run(&c2, &store, &cmd, Class::Live).await;
    assert!(matches!(again, Run::Recorded { outcome: Outcome::Succeeded { .. }, replayed: true }), "{again:?}");
    assert_eq!(effects(&f), 1);
}

/// On Lambda a call is bounded by the invocation's time left: a Cafe24 that answers after the
/// function would be killed ends the POST `uncertain` within the invocation, instead of the
/// kill losing the answer of a request that went out.
#[tokio::test]
async fn a_call_never_outlives_the_invocation() {
    let f = fx(10_000).await;
    f.sim.lock().faults.push(Fault {
        mall: Some("shop".into()),
        endpoint: Some("points".into()),
        kind: FaultKind::Latency { ms: 4_000 },
        remaining: Some(1),
    });
    let mut ctx = lambda_http::Context::default();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    ctx.deadline = now_ms + 1_500;
    let req = request(Method::POST, "/v1/call", Some("ui-dl"), &grant().to_string()).with_lambda_context(ctx);
    let r = f.api.handle(req).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "cut at the invocation's deadline, not after Cafe24's 4 s");
    assert_eq!(r.headers()["x-relay-outcome"], "uncertain");
}
