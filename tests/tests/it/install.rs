//! The OAuth install flow through webhook-ingest, against the simulator's authorize and token
//! endpoints and moto.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Duration;

use cafe24_sim::state::{AppConfig, ALL_READ_SCOPES};
use cafe24_sim::{Clock, Sim, SimConfig};
use relay_aws::tokens::DynamoTokenStore;
use relay_domain::tokens::{Secret, TokenStatus, TokenStore};
use relay_domain::MallId;
use relay_tests::*;
use webhook_ingest::install::{AwsInstaller, InstallConfig};

const T0: u64 = 1_795_305_600_000;
const REDIRECT: &str = "https://relay.example/oauth/callback";

struct Fx {
    sim: Arc<Sim>,
    base: String,
    env: TestEnv,
    http: reqwest::Client,
}

type Handler = webhook_ingest::Ingest<relay_aws::sqs::SqsQueue, AwsInstaller>;

impl Fx {
    async fn new(tag: &str) -> Self {
        let app = AppConfig {
            client_id: "relay-client".into(),
            client_secret: "relay-secret".into(),
            scopes: ALL_READ_SCOPES.iter().map(|s| s.to_string()).collect(),
        };
        let sim = Arc::new(Sim::new(SimConfig { apps: vec![app], ..SimConfig::default() }, Clock::manual(T0)));
        let (addr, _t) = cafe24_sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { sim, base: format!("http://{addr}"), env: TestEnv::new(tag).await.unwrap(), http }
    }

    fn handler(&self) -> Handler {
        self.handler_with(|_| {})
    }

    fn handler_with(&self, tweak: impl FnOnce(&mut InstallConfig)) -> Handler {
        let c = self.sim.clock.clone();
        let clock: relay_cafe24::Clock = Arc::new(move || c.now_ms());
        let mut install = InstallConfig {
            state_secret: Secret::new("0123456789abcdef0123456789abcdef-test"),
            redirect_uri: Some(REDIRECT.into()),
            scopes: "mall.read_order,mall.read_product".into(),
            state_ttl_ms: 10 * 60_000,
            event_bus: self.env.stack.event_bus.clone(),
            backfill_days: 0,
            work_queue_url: None,
        };
        tweak(&mut install);
        let installer = AwsInstaller::on_aws(
            &self.env.clients,
            &self.env.stack.token_table,
            sim_cafe24_config(&self.base),
            install,
            clock,
        )
        .unwrap();
        self.env.ingest().with_install(installer)
    }

    async fn get(&self, h: &Handler, path_and_query: &str) -> lambda_http::Response<lambda_http::Body> {
        h.handle(to_request(&http_event(Shape::FunctionUrl, "GET", path_and_query, &[], b"", false))).await
    }

    /// The App URL query the Cafe24 admin opens for `mall` now (the simulator signs it).
    fn launch(&self, mall: &str) -> String {
        cafe24_sim::oauth::app_launch_query("relay-secret", mall, self.sim.clock.now_ms())
    }

    /// Cafe24 launch → /install → Cafe24 authorize → the callback query Cafe24 redirects the
    /// browser to.
    async fn authorize(&self, h: &Handler, mall: &str) -> String {
        let r = self.get(h, &format!("/install?{}", self.launch(mall))).await;
        assert_eq!(r.status(), 302);
        let to_cafe24 = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            to_cafe24.starts_with(&format!(
                "{}/{mall}/api/v2/oauth/authorize?response_type=code&client_id=relay-client",
                self.base
            )),
            "{to_cafe24}"
        );
        assert!(to_cafe24.contains("redirect_uri=https%3A%2F%2Frelay.example%2Foauth%2Fcallback"));
        let back = self.http.get(&to_cafe24).send().await.unwrap();
        assert_eq!(back.status(), 302);
        let loc = back.headers()["location"].to_str().unwrap().to_owned();
        let (prefix, query) = loc.split_once('?').unwrap();
        assert_eq!(prefix, REDIRECT);
        query.to_owned()
    }
}

fn body(r: &lambda_http::Response<lambda_http::Body>) -> String {
    String::from_utf8_lossy(r.body().as_ref()).into_owned()
}

/// No OAUTH_REDIRECT_URI (the template's default): the redirect URI is the Function URL the
/// request came to, the same in the authorize redirect and the code exchange, so a first deploy
/// needs no second one. A request whose host cannot be read gets a clear error, not a bad URL.
#[tokio::test]
async fn without_a_configured_redirect_uri_the_function_url_is_used() {
    let fx = Fx::new("install-host").await;
    let h = fx.handler_with(|c| c.redirect_uri = None);
    // The event as Lambda delivers it for a Function URL: `requestContext.domainName` and a Host.
    let host = "abcdefg.lambda-url.us-east-1.on.aws";
    let get = |pq: String, host_header: Option<&'static str>| {
        let headers: Vec<(&str, &str)> = host_header.map(|v| vec![("host", v)]).unwrap_or_default();
        h.handle(to_request(&http_event(Shape::FunctionUrl, "GET", &pq, &headers, b"", false)))
    };
    let r = get(format!("/install?{}", fx.launch("hostshop")), Some("abcdefg.lambda-url.us-east-1.on.aws")).await;
    assert_eq!(r.status(), 302, "{}", body(&r));
    let to_cafe24 = r.headers()["location"].to_str().unwrap().to_owned();
    let want = format!("https://{host}/oauth/callback");
    assert!(to_cafe24.contains(&format!("redirect_uri={}", cafe24_sim::oauth::encode(&want))), "{to_cafe24}");
    // Without a Host header, lambda_http's URI carries the event's domainName: the same URL.
    let r = get(format!("/install?{}", fx.launch("hostshop")), None).await;
    assert!(r.headers()["location"].to_str().unwrap().contains(&cafe24_sim::oauth::encode(&want)));
    // Cafe24 sends the browser back to that URL; the exchange uses the same redirect URI (the
    // simulator refuses a code exchanged with another one).
    let back = fx.http.get(&to_cafe24).send().await.unwrap();
    let loc = back.headers()["location"].to_str().unwrap().to_owned();
    let (prefix, query) = loc.split_once('?').unwrap();
    assert_eq!(prefix, want);
    let r = get(format!("/oauth/callback?{query}"), Some("abcdefg.lambda-url.us-east-1.on.aws")).await;
    assert_eq!(r.status(), 200, "{}", body(&r));
    // A host that is no host name: refused with the reason, nothing redirected.
    let r = get(format!("/install?{}", fx.launch("hostshop")), Some("evil.example/\"@x")).await;
    assert_eq!(r.status(), 400);
    assert!(body(&r).contains("OAUTH_REDIRECT_URI"), "{}", body(&r));
}

/// A new install queues the backfill of its last `backfill_days` of orders — one bulk job in the
/// mall's bulk group — before the merchant is told it worked; a work queue that refuses it
/// makes the merchant try again (503), and the retry queues it once.
#[tokio::test]
async fn an_install_queues_its_history_backfill_in_the_bulk_group() {
    use aws_sdk_sqs::types::MessageSystemAttributeName as Sys;
    use relay_domain::jobs::{Job, JobKind};
    let fx = Fx::new("install-bf").await;
    let work = fx.env.stack.work.url.clone();
    let h = fx.handler_with(|c| {
        c.backfill_days = 30;
        c.work_queue_url = Some(work.clone());
    });
    let query = fx.authorize(&h, "histshop").await;
    let r = fx.get(&h, &format!("/oauth/callback?{query}")).await;
    assert_eq!(r.status(), 200, "{}", body(&r));
    let msgs = fx.env.peek_all(&work).await.unwrap();
    assert_eq!(msgs.len(), 1, "one backfill job");
    let m = &msgs[0];
    assert_eq!(attr(m, Sys::MessageGroupId).as_deref(), Some("histshop.bulk"), "the mall's bulk group");
    let job = Job::parse(m.body().unwrap()).unwrap();
    let now = fx.sim.clock.now_ms();
    match job.kind {
        JobKind::Backfill { since_ms, until_ms, .. } => {
            assert_eq!((until_ms, until_ms - since_ms), (now, 30 * 86_400_000), "the last 30 days");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(attr(m, Sys::MessageDeduplicationId).as_deref(), Some(job.job_id.as_str()));

    // A work queue that refuses: 503, the merchant opens the app again, the job is queued.
    let broken = fx.handler_with(|c| {
        c.backfill_days = 30;
        c.work_queue_url = Some(format!("{}-missing", fx.env.stack.work.url));
    });
    let query = fx.authorize(&broken, "histshop2").await;
    let r = fx.get(&broken, &format!("/oauth/callback?{query}")).await;
    assert_eq!(r.status(), 503, "{}", body(&r));
    let h = fx.handler_with(|c| {
        c.backfill_days = 30;
        c.work_queue_url = Some(fx.env.stack.work.url.clone());
    });
    let query = fx.authorize(&h, "histshop2").await;
    assert_eq!(fx.get(&h, &format!("/oauth/callback?{query}")).await.status(), 200);
    // (histshop's job is still in flight from the peek above: only histshop2's is received.)
    assert_eq!(fx.env.drain_all(&work).await.unwrap().len(), 1, "the retry queued it once");
}

#[tokio::test]
async fn install_end_to_end_stores_tokens_and_refuses_a_replay() {
    let fx = Fx::new("install").await;
    let app = devstack::resources::subscribe_queue(
        &fx.env.clients,
        &fx.env.stack.event_bus,
        &format!("{}-app", fx.env.stack.event_bus),
    )
    .await
    .unwrap();
    let h = fx.handler();
    let query = fx.authorize(&h, "newshop").await;
    let r = fx.get(&h, &format!("/oauth/callback?{query}")).await;
    assert_eq!(r.status(), 200, "{}", body(&r));
    assert!(body(&r).contains("newshop"));
    let rec = DynamoTokenStore::new(fx.env.ddb.clone(), fx.env.stack.token_table.clone())
        .get(&MallId::parse("newshop").unwrap())
        .await
        .unwrap()
        .expect("tokens stored");
    assert_eq!(rec.status, TokenStatus::Active);
    assert_eq!(rec.pair.access_expires_ms, T0 + 2 * 3_600_000, "expires_at read as KST");
    assert_eq!(rec.pair.scopes, vec!["mall.read_order", "mall.read_product"]);
    assert_eq!(fx.sim.stats("newshop").token_issuances, 1);

    let replay = fx.get(&h, &format!("/oauth/callback?{query}")).await;
    assert_eq!(replay.status(), 400);
    assert!(body(&replay).contains("already used"), "{}", body(&replay));
    assert_eq!(fx.sim.stats("newshop").token_issuances, 1, "a replay never reaches Cafe24");

    // The app heard of the install once: one mall.installed (the replay published nothing).
    let events: Vec<serde_json::Value> = fx
        .env
        .drain_all(&app)
        .await
        .unwrap()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail-type"], "mall.installed");
    assert_eq!(events[0]["detail"]["mall_id"], "newshop");
}

#[tokio::test]
async fn an_install_the_bus_refuses_asks_the_merchant_to_try_again() {
    let fx = Fx::new("install-nobus").await;
    fx.env.events.delete_event_bus().name(&fx.env.stack.event_bus).send().await.unwrap();
    let h = fx.handler();
    let query = fx.authorize(&h, "quietshop").await;
    let r = fx.get(&h, &format!("/oauth/callback?{query}")).await;
    assert_eq!(r.status(), 503, "not confirmed while the app was not told: {}", body(&r));
}

#[tokio::test]
async fn forged_expired_and_malformed_states_are_refused_with_clear_messages() {
    let fx = Fx::new("install-bad").await;
    let h = fx.handler();
    let query = fx.authorize(&h, "shopb").await;
    let state = query.split("state=").nth(1).unwrap();
    let code = query.split("code=").nth(1).unwrap().split('&').next().unwrap();
    let forged = format!("{}{}", &state[..state.len() - 2], if state.ends_with("00") { "11" } else { "00" });
    let r = fx.get(&h, &format!("/oauth/callback?code={code}&state={forged}")).await;
    assert_eq!(r.status(), 400);
    assert!(body(&r).contains("not issued by this app"), "{}", body(&r));
    let r = fx.get(&h, &format!("/oauth/callback?code={code}&state=garbage")).await;
    assert!(body(&r).contains("malformed") && r.status() == 400);
    let r = fx.get(&h, &format!("/oauth/callback?state={state}")).await;
    assert!(body(&r).contains("missing `code`") && r.status() == 400);

    fx.sim.clock.advance(11 * 60_000);
    let r = fx.get(&h, &format!("/oauth/callback?{query}")).await;
    assert_eq!(r.status(), 400);
    assert!(body(&r).contains("link expired"), "{}", body(&r));
    assert_eq!(fx.sim.stats("shopb").token_issuances, 0);
}

#[tokio::test]
async fn a_code_older_than_sixty_seconds_gets_a_clear_error() {
    let fx = Fx::new("install-slow").await;
    let h = fx.handler();
    let query = fx.authorize(&h, "slowshop").await;
    fx.sim.clock.advance(61_000);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let r = fx.get(&h, &format!("/oauth/callback?{query}")).await;
    assert_eq!(r.status(), 400);
    assert!(body(&r).contains("valid for 1 minute"), "{}", body(&r));
}

#[tokio::test]
async fn without_install_configuration_the_routes_do_not_exist() {
    let env = TestEnv::new("install-off").await.unwrap();
    let h = env.ingest();
    let r = h
        .handle(to_request(&http_event(
            Shape::FunctionUrl,
            "GET",
            "/install?mall_id=x&timestamp=1&hmac=x",
            &[],
            b"",
            false,
        )))
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn install_starts_only_from_a_fresh_signed_cafe24_launch() {
    let fx = Fx::new("install-launch").await;
    let h = fx.handler();
    let launch = fx.launch("launchshop");
    let cases: Vec<(String, &str)> = vec![
        ("/install?mall_id=launchshop".into(), "no Cafe24 signature"),
        ("/install".into(), "no Cafe24 signature"),
        (format!("/install?{}", launch.replace("launchshop", "othershop")), "signature of this link is not valid"),
        (
            format!("/install?{}", cafe24_sim::oauth::app_launch_query("not-the-secret", "launchshop", T0)),
            "signature of this link is not valid",
        ),
        ("/install?mall_id=<script>&hmac=\"x\"".into(), "signature of this link is not valid"),
        ("/install?mall_id=<script>".into(), "no Cafe24 signature"),
    ];
    for (path, msg) in &cases {
        let r = fx.get(&h, path).await;
        assert_eq!(r.status(), 400, "{path}");
        assert!(body(&r).contains(msg), "{path}: {}", body(&r));
        assert!(!r.headers().contains_key("location"), "{path}: no redirect to Cafe24");
    }
    // A signed launch that is too old.
    fx.sim.clock.advance(11 * 60_000);
    let r = fx.get(&h, &format!("/install?{launch}")).await;
    assert_eq!(r.status(), 400);
    assert!(body(&r).contains("expired"), "{}", body(&r));
    // A fresh one, with an upper-case mall id, is accepted for the normalised mall.
    let r = fx.get(&h, &format!("/install?{}", fx.launch("LaunchShop"))).await;
    assert_eq!(r.status(), 302, "{}", body(&r));
    assert!(r.headers()["location"].to_str().unwrap().contains("/launchshop/api/v2/oauth/authorize"));
    assert_eq!(fx.sim.stats("launchshop").token_requests, 0);
}

#[tokio::test]
async fn code_exchanges_are_bounded_per_mall() {
    let fx = Fx::new("install-bound").await;
    let h = fx.handler();
    let mut statuses = Vec::new();
    for _ in 0..(webhook_ingest::install::MAX_EXCHANGES_PER_WINDOW + 2) {
        let query = fx.authorize(&h, "boundshop").await;
        let state = query.split("state=").nth(1).unwrap().split('&').next().unwrap();
        let r = fx.get(&h, &format!("/oauth/callback?code=junk&state={state}")).await;
        statuses.push((r.status().as_u16(), body(&r).contains("too many installation attempts")));
    }
    let limited = statuses.iter().filter(|(s, too_many)| *s == 400 && *too_many).count();
    assert_eq!(limited, 2, "{statuses:?}");
    assert_eq!(
        fx.sim.stats("boundshop").token_requests,
        u64::from(webhook_ingest::install::MAX_EXCHANGES_PER_WINDOW),
        "the token endpoint saw only the bounded exchanges"
    );
}

#[tokio::test]
async fn a_callback_too_close_to_the_deadline_exchanges_nothing_and_can_be_retried() {
    let fx = Fx::new("install-deadline").await;
    let h = fx.handler();
    let query = fx.authorize(&h, "lateshop").await;
    let ev = http_event(Shape::FunctionUrl, "GET", &format!("/oauth/callback?{query}"), &[], b"", false);
    // The invocation has 5 s left: not enough for the token request and storing its answer.
    let mut ctx = lambda_http::Context::default();
    ctx.deadline = (std::time::SystemTime::now() + Duration::from_secs(5))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let req = webhook_ingest::event::request_from_json(ev, Some(ctx)).unwrap();
    let r = h.handle(req).await;
    assert_eq!(r.status(), 503, "{}", body(&r));
    assert_eq!(fx.sim.stats("lateshop").token_requests, 0, "no code exchange started");
    // The merchant reloads the page: the same state still works.
    let r = fx.get(&h, &format!("/oauth/callback?{query}")).await;
    assert_eq!(r.status(), 200, "{}", body(&r));
    assert_eq!(fx.sim.stats("lateshop").token_issuances, 1);
}
