//! The Cafe24 client and token lifecycle against the simulator (manual clock) and moto.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use relay_domain::ShopNo;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cafe24_sim::state::{AppConfig, FaultKind, ALL_READ_SCOPES, DAY_MS, HOUR_MS};
use cafe24_sim::{Clock, Sim, SimConfig};
use relay_aws::limiter::DynamoLimiter;
use relay_aws::tokens::DynamoTokenStore;
use relay_cafe24::tokens::Need;
use relay_cafe24::{Cafe24, Cafe24Config, Cafe24Error};
use relay_domain::ratelimit::{Class, LimiterConfig};
use relay_domain::tokens::{Secret, TokenPair, TokenStatus, TokenStore};
use relay_domain::MallId;
use relay_tests::{install_seeded, sim_cafe24_config, TestEnv};

const T0: u64 = 1_795_305_600_000;
type Client = Cafe24<DynamoLimiter, DynamoTokenStore>;

struct Fx {
    sim: Arc<Sim>,
    base: String,
    env: TestEnv,
}

impl Fx {
    async fn new(tag: &str) -> Self {
        let app = AppConfig {
            client_id: "relay-client".into(),
            client_secret: "relay-secret".into(),
            scopes: ALL_READ_SCOPES.iter().map(|s| s.to_string()).collect(),
        };
        let sim = Arc::new(Sim::new(SimConfig { apps: vec![app], ..SimConfig::default() }, Clock::manual(T0)));
        let (addr, _t) = cafe24_sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        // The manual clock also flows with real time, so short limiter waits slept by the client
        // elapse; tests still jump hours and days with `advance`.
        let ticking = sim.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                ticking.clock.advance(5);
            }
        });
        Self { sim, base: format!("http://{addr}"), env: TestEnv::new(tag).await.unwrap() }
    }

    fn config(&self) -> Cafe24Config {
        let mut c = sim_cafe24_config(&self.base);
        c.request_timeout = Duration::from_millis(800);
        c
    }

    /// A client as one Lambda instance would build it (own limiter cache, own lease owner id).
    fn client(&self) -> Client {
        self.client_with(self.config())
    }

    fn client_with(&self, cfg: Cafe24Config) -> Client {
        let clock = self.sim.clock.clone();
        let clock: relay_cafe24::Clock = Arc::new(move || clock.now_ms());
        let limiter = DynamoLimiter::new(
            self.env.ddb.clone(),
            self.env.stack.rate_limit_table.clone(),
            LimiterConfig::default(),
            clock.clone(),
        );
        let store = DynamoTokenStore::new(self.env.ddb.clone(), self.env.stack.token_table.clone());
        Cafe24::new(cfg, limiter, store, clock).unwrap()
    }

    fn store(&self) -> DynamoTokenStore {
        DynamoTokenStore::new(self.env.ddb.clone(), self.env.stack.token_table.clone())
    }

    /// Installs the app into `mall` (tokens issued by the simulator, stored in DynamoDB).
    async fn install(&self, mall: &str) -> MallId {
        install_seeded(&self.sim, &self.env, mall).await
    }

    fn fault(&self, mall: &str, endpoint: &str, kind: FaultKind, remaining: u32) {
        self.sim.lock().faults.push(cafe24_sim::state::Fault {
            mall: Some(mall.into()),
            endpoint: Some(endpoint.into()),
            kind,
            remaining: Some(remaining),
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_callers_after_expiry_cause_exactly_one_issuance() {
    let fx = Fx::new("tok-race").await;
    let mall = fx.install("racemall").await;
    fx.sim.clock.advance(2 * HOUR_MS); // the access token just expired
    let clients: Vec<Arc<Client>> = (0..20).map(|_| Arc::new(fx.client())).collect();
    // Twenty callers (each its own Lambda instance) need the token at the same moment.
    let tasks: Vec<_> = clients
        .iter()
        .cloned()
        .map(|c| {
            let mall = mall.clone();
            tokio::spawn(async move { c.token(&mall, Need::Fresh).await })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap().expect("every caller gets a token"));
    }
    let stored = fx.store().get(&mall).await.unwrap().unwrap().pair.access_token;
    assert!(got.iter().all(|t| *t == stored), "every caller ends with the stored, refreshed token");
    // And that token is the valid one at Cafe24.
    clients[7].product(&mall, ShopNo::DEFAULT, 1, Class::Live).await.unwrap();
    let s = fx.sim.stats("racemall");
    assert_eq!(s.token_issuances, 1, "exactly one refresh reached Cafe24");
    assert_eq!((s.invalid_grants, s.refresh_reuse_attempts), (0, 0));
    assert_eq!(s.status_401, 0, "nobody used a dead token");
    let refreshes: u64 = clients.iter().map(|c| c.stats.refreshes.load(std::sync::atomic::Ordering::Relaxed)).sum();
    assert_eq!(refreshes, 1);
    let rec = fx.store().get(&mall).await.unwrap().unwrap();
    assert_eq!(rec.status, TokenStatus::Active);
    assert!(rec.pair.access_expires_ms > fx.sim.clock.now_ms() + HOUR_MS);
}

#[tokio::test]
async fn an_access_token_that_expired_between_calls_is_refreshed_transparently() {
    let fx = Fx::new("tok-expire").await;
    let mall = fx.install("m-exp").await;
    let c = fx.client();
    c.product(&mall, ShopNo::DEFAULT, 1, Class::Live).await.unwrap();
    fx.sim.clock.advance(2 * HOUR_MS + 1);
    c.order_with_items(&mall, ShopNo::DEFAULT, &first_order(&fx, "m-exp"), Class::Live).await.unwrap();
    assert_eq!(fx.sim.stats("m-exp").token_issuances, 1);
    assert_eq!(fx.sim.stats("m-exp").status_401, 0, "refreshed ahead of expiry, not after a 401");
}

fn first_order(fx: &Fx, mall: &str) -> String {
    let mut g = fx.sim.lock();
    fx.sim.mall(&mut g, mall).data.orders.keys().next().cloned().unwrap()
}

#[tokio::test]
async fn a_401_on_a_token_we_thought_valid_triggers_one_refresh_and_a_retry() {
    let fx = Fx::new("tok-401").await;
    let mall = fx.install("m401").await;
    fx.fault("m401", "products", FaultKind::Status { status: 401 }, 1);
    let c = fx.client();
    let p = c.product(&mall, ShopNo::DEFAULT, 3, Class::Live).await.unwrap();
    assert_eq!(p.product_no, 3);
    assert_eq!(fx.sim.stats("m401").token_issuances, 1);
    // Twice in a row: refresh once, then give up with Unauthorized.
    fx.fault("m401", "products", FaultKind::Status { status: 401 }, 2);
    assert!(matches!(c.product(&mall, ShopNo::DEFAULT, 3, Class::Live).await, Err(Cafe24Error::Unauthorized)));
    assert_eq!(fx.sim.stats("m401").token_issuances, 2);
}

#[tokio::test]
async fn fourteen_idle_days_with_only_the_keep_alive_keep_the_refresh_token_alive() {
    let fx = Fx::new("tok-keepalive").await;
    let kept = fx.install("kept").await;
    let idle = fx.install("idle").await;
    let c = fx.client();
    let window = 3 * DAY_MS;
    for _day in 0..15 {
        fx.sim.clock.advance(DAY_MS);
        let now = fx.sim.clock.now_ms();
        // The scheduled keep-alive: malls whose refresh token expires within 3 days.
        for m in fx.store().expiring_before(now + window).await.unwrap() {
            if m == kept {
                c.token(&m, Need::RenewRefreshBefore(now + window)).await.unwrap();
            }
        }
    }
    c.product(&kept, ShopNo::DEFAULT, 1, Class::Live).await.unwrap();
    assert_eq!(fx.sim.stats("kept").invalid_grants, 0);
    assert!(fx.sim.stats("kept").token_issuances >= 2, "keep-alive refresh + the refresh for the call");
    // The mall the keep-alive skipped is locked out after 14 idle days.
    assert!(matches!(c.product(&idle, ShopNo::DEFAULT, 1, Class::Live).await, Err(Cafe24Error::NeedsReauth)));
}

#[tokio::test]
async fn a_revoked_refresh_token_marks_the_mall_needs_reauth_and_stops_trying() {
    let fx = Fx::new("tok-revoked").await;
    let mall = fx.install("revoked").await;
    fx.sim.revoke("revoked");
    fx.sim.clock.advance(2 * HOUR_MS);
    let c = fx.client();
    assert!(matches!(c.product(&mall, ShopNo::DEFAULT, 1, Class::Live).await, Err(Cafe24Error::NeedsReauth)));
    assert_eq!(fx.store().get(&mall).await.unwrap().unwrap().status, TokenStatus::NeedsReauth);
    assert_eq!(fx.store().needing_reauth().await.unwrap(), vec![mall.clone()]);
    let before = c.stats.token_requests.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..5 {
        assert!(matches!(c.product(&mall, ShopNo::DEFAULT, 1, Class::Live).await, Err(Cafe24Error::NeedsReauth)));
        assert!(matches!(
            fx.client().product(&mall, ShopNo::DEFAULT, 1, Class::Live).await,
            Err(Cafe24Error::NeedsReauth)
        ));
    }
    assert_eq!(
        c.stats.token_requests.load(std::sync::atomic::Ordering::Relaxed),
        before,
        "no refresh after needs_reauth"
    );
    assert_eq!(fx.sim.stats("revoked").invalid_grants, 1, "exactly one attempt reached Cafe24");
}

#[tokio::test]
async fn a_transient_refresh_failure_is_retried_at_most_once_per_lease_period() {
    let fx = Fx::new("tok-transient").await;
    let mall = fx.install("capped").await;
    let c = fx.client();
    // Exhaust the issuance cap so the token endpoint answers 429.
    {
        let mut g = fx.sim.lock();
        let now = fx.sim.clock.now_ms();
        let m = fx.sim.mall(&mut g, "capped");
        for _ in 0..15 {
            m.issuances.push_back(now);
        }
    }
    fx.sim.clock.advance(2 * HOUR_MS - 60_000); // inside the margin, still usable
    c.product(&mall, ShopNo::DEFAULT, 1, Class::Live).await.unwrap(); // refresh fails, the usable token is used
    c.product(&mall, ShopNo::DEFAULT, 1, Class::Live).await.unwrap(); // lease still held: no second attempt
    assert_eq!(fx.sim.stats("capped").issuance_cap_refusals, 1);
    assert_eq!(c.stats.token_requests.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn every_error_class_is_produced_and_mapped() {
    let fx = Fx::new("errors").await;
    let mall = fx.install("errs").await;
    let c = fx.client();
    fx.fault("errs", "products", FaultKind::Status { status: 500 }, 1);
    assert!(matches!(
        c.product(&mall, ShopNo::DEFAULT, 1, Class::Live).await,
        Err(Cafe24Error::Server { status: 500 })
    ));
    fx.fault("errs", "products", FaultKind::Status { status: 503 }, 1);
    assert!(matches!(
        c.product(&mall, ShopNo::DEFAULT, 1, Class::Live).await,
        Err(Cafe24Error::Server { status: 503 })
    ));
    fx.fault("errs", "products", FaultKind::RateLimit, 1);
    match c.product(&mall, ShopNo::DEFAULT, 1, Class::Live).await {
        Err(Cafe24Error::RateLimited { feedback }) => assert!(feedback.rate_limited && feedback.call_limit.is_some()),
        other => panic!("{other:?}"),
    }
    fx.sim.clock.advance(5_000);
    fx.fault("errs", "products", FaultKind::Timeout { ms: 3_000 }, 1);
    assert!(matches!(c.product(&mall, ShopNo::DEFAULT, 1, Class::Live).await, Err(Cafe24Error::Timeout)));
    assert!(matches!(c.product(&mall, ShopNo::DEFAULT, 999_999, Class::Live).await, Err(Cafe24Error::NotFound)));
    match c.get_json(&mall, "orders?start_date=2026-01-01&end_date=2026-11-01", Class::Live).await {
        Err(Cafe24Error::InvalidRequest { status: 422, code, message }) => {
            assert_eq!(code, "422");
            assert!(message.contains("3 months"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Missing scope.
    let (narrow, _) = fx.sim.seed_tokens("narrow", "relay-client", vec!["mall.read_product".into()]);
    let m2 = MallId::parse("narrow").unwrap();
    let now = fx.sim.clock.now_ms();
    let pair = TokenPair {
        access_token: Secret::new(narrow),
        access_expires_ms: now + HOUR_MS,
        refresh_token: Secret::new("r"),
        refresh_expires_ms: now + DAY_MS,
        scopes: vec![],
    };
    fx.store().put_installed(&m2, &pair, now).await.unwrap();
    assert!(matches!(
        c.customers(&m2, ShopNo::DEFAULT, &["member0001"], Class::Live).await,
        Err(Cafe24Error::Forbidden { .. })
    ));
    // App deleted from the mall.
    fx.sim.uninstall("errs", "relay-client");
    let (fresh, _) = fx.sim.seed_tokens("errs", "relay-client", vec!["mall.read_product".into()]);
    let pair = TokenPair {
        access_token: Secret::new(fresh),
        access_expires_ms: now + HOUR_MS,
        refresh_token: Secret::new("r"),
        refresh_expires_ms: now + DAY_MS,
        scopes: vec![],
    };
    fx.store().put_installed(&mall, &pair, now).await.unwrap();
    assert!(matches!(c.product(&mall, ShopNo::DEFAULT, 1, Class::Live).await, Err(Cafe24Error::AppDeleted)));
    // Never installed.
    assert!(matches!(
        c.product(&MallId::parse("nobody").unwrap(), ShopNo::DEFAULT, 1, Class::Live).await,
        Err(Cafe24Error::NotInstalled)
    ));
    // Nothing listening.
    let mut cfg = fx.config();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    cfg.base_url_template = format!("http://127.0.0.1:{port}/{{mall_id}}");
    let m4 = fx.install("unreachable").await;
    assert!(matches!(
        fx.client_with(cfg).product(&m4, ShopNo::DEFAULT, 1, Class::Live).await,
        Err(Cafe24Error::Transport(_))
    ));
    // The limiter says wait longer than a call may sleep.
    let mut cfg = fx.config();
    cfg.max_inline_wait_ms = 0;
    let strict = fx.client_with(cfg);
    let m3 = fx.install("throttled").await;
    let fb = relay_domain::ratelimit::Feedback::from_headers(429, [("X-Api-Call-Limit", "40/40")]);
    strict.gate().feedback("throttled", &fb).await.unwrap();
    assert!(
        matches!(strict.product(&m3, ShopNo::DEFAULT, 1, Class::Live).await, Err(Cafe24Error::Throttled { wait_ms }) if wait_ms > 0)
    );
}

/// Collects log output for the current thread.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A subscriber that records nothing and has every callsite asked each time (see its use).
struct AskEachTime;

impl tracing::Subscriber for AskEachTime {
    fn register_callsite(&self, _: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn token_values_never_appear_in_logs_or_debug_output() {
    let fx = Fx::new("tok-logs").await;
    let mall = fx.install("secretive").await;
    let buf = Buf::default();
    let writer = buf.clone();
    // Our crates at TRACE; dependencies at the level the functions allow them (see telemetry).
    let filter = tracing_subscriber::EnvFilter::new(relay_lambda::telemetry::directives("trace"));
    let subscriber =
        tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(move || writer.clone()).finish();
    // tracing caches each callsite's interest process-wide when the callsite is first hit: a
    // callsite first hit by another test thread while no subscriber was set could stay cached
    // as "never" (twice under load: the `refreshed` line missing). A global subscriber that
    // answers "sometimes" to every callsite and enables nothing makes every cached interest at
    // least "sometimes", so each event asks the thread's own subscriber — this one, here.
    let _ = tracing::subscriber::set_global_default(AskEachTime);
    let _guard = tracing::subscriber::set_default(subscriber);
    // Registrations that were under way when the global one was set finish within moments.
    tokio::time::sleep(Duration::from_millis(50)).await;
    tracing::callsite::rebuild_interest_cache();
    let old = fx.store().get(&mall).await.unwrap().unwrap();
    fx.sim.clock.advance(2 * HOUR_MS);
    // The configured request timeout, not the fixture's 800 ms: on a loaded machine a refresh
    // that timed out would be a transient error, and the refusal below would never be logged.
    let c = fx.client_with(sim_cafe24_config(&fx.base));
    c.product(&mall, ShopNo::DEFAULT, 1, Class::Live).await.unwrap();
    fx.sim.revoke("secretive");
    fx.sim.clock.advance(2 * HOUR_MS);
    let refused = c.product(&mall, ShopNo::DEFAULT, 1, Class::Live).await;
    assert!(matches!(refused, Err(Cafe24Error::NeedsReauth)), "the revoked refresh token is refused: {refused:?}");
    let new = fx.store().get(&mall).await.unwrap().unwrap();
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    for line in ["refreshed", "needs_reauth"] {
        assert!(logs.contains(line), "the lifecycle line {line:?} was not logged: {logs}");
    }
    for secret in [&old.pair.access_token, &old.pair.refresh_token, &new.pair.access_token, &new.pair.refresh_token] {
        assert!(!logs.contains(secret.expose()), "a token value reached the logs");
        assert!(!format!("{new:?}{old:?}").contains(secret.expose()), "a token value reached Debug output");
    }
    assert!(!logs.contains("relay-secret") && !format!("{:?}", fx.config()).contains("relay-secret"));
}
