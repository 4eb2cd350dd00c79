//! An endpoint with a call limit of its own (`scripttags`: 10, where the mall's bucket holds 40)
//! while the mall is busy: the relay's client never meets a 429, whichever way Cafe24 applies
//! that limit — against the mall's shared level, or in a bucket of its own (the simulator's
//! `EndpointLimit` variants; the documentation does not say). Rates are ×10 (bucket 40 draining
//! 20/s) so a run takes a couple of seconds; the limiter and the tokens are on moto.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use cafe24_sim::state::{AppConfig, EndpointLimit, Variants, ALL_READ_SCOPES, ALL_WRITE_SCOPES};
use cafe24_sim::{Clock, Sim, SimConfig};
use futures::StreamExt as _;
use relay_aws::limiter::DynamoLimiter;
use relay_aws::tokens::DynamoTokenStore;
use relay_cafe24::{Cafe24, Cafe24Error};
use relay_domain::command::Method;
use relay_domain::ratelimit::{Class, LimiterConfig};
use relay_tests::{install_seeded_writer, sim_cafe24_config, TestEnv};
use serde_json::json;

const ORDERS: usize = 30;
const TAGS: usize = 15;

struct Run {
    status_429: u64,
    tag_429: u64,
    tags_made: usize,
    orders_read: usize,
    caps_learnt: Option<u32>,
}

async fn run(tag: &str, variant: EndpointLimit) -> Run {
    let scopes = ALL_READ_SCOPES.iter().chain(ALL_WRITE_SCOPES).map(|s| s.to_string()).collect();
    let app = AppConfig { client_id: "relay-client".into(), client_secret: "relay-secret".into(), scopes };
    let config = SimConfig {
        apps: vec![app],
        leak_per_sec: 20.0,
        abnormal_per_sec: 10_000,
        variants: Variants { endpoint_limit: variant, ..Variants::default() },
        ..SimConfig::default()
    };
    let sim = Arc::new(Sim::new(config, Clock::Real));
    let (addr, _t) = cafe24_sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let env = TestEnv::new(tag).await.unwrap();
    let mall = install_seeded_writer(&sim, &env, "tagmall").await;
    let clock = relay_lambda::clock::system_clock();
    let limits = LimiterConfig { rate_per_sec: 20.0, min_spacing_ms: 0, ..LimiterConfig::default() };
    let limiter = DynamoLimiter::new(env.ddb.clone(), env.stack.rate_limit_table.clone(), limits, clock.clone());
    let mut cfg = sim_cafe24_config(&format!("http://{addr}"));
    cfg.max_inline_wait_ms = 10_000;
    let client =
        Cafe24::new(cfg, limiter, DynamoTokenStore::new(env.ddb.clone(), env.stack.token_table.clone()), clock)
            .unwrap();
    let orders: Vec<String> = {
        let mut g = sim.lock();
        sim.mall(&mut g, "tagmall").data.orders.keys().take(ORDERS).cloned().collect()
    };
    // The mall's sync reads fill its bucket, then the app registers its script tags: eight
    // calls at a time. The first tag call already finds the mall busy (no limit learnt from an
    // earlier answer helps it: the documented one must).
    let work: Vec<Option<String>> = orders.into_iter().map(Some).chain((0..TAGS).map(|_| None)).collect();
    let results: Vec<(bool, Result<(), Cafe24Error>)> = futures::stream::iter(work)
        .map(|w| {
            let (client, mall) = (&client, &mall);
            async move {
                match w {
                    Some(order) => {
                        (false, client.get_json(mall, &format!("orders/{order}"), Class::Live).await.map(|_| ()))
                    }
                    None => {
                        let body = json!({"shop_no": 1, "request": {"src": "https://app.example/tag.js"}});
                        let sent = client
                            .send(
                                mall,
                                Method::Post,
                                "scripttags",
                                Some(&body),
                                Class::Interactive,
                                std::future::ready(Ok(())),
                            )
                            .await;
                        (true, sent.map(|_| ()))
                    }
                }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let stats = sim.stats("tagmall");
    let tags_made = sim.lock().malls.get("tagmall").map_or(0, |m| m.data.scripttags.len());
    Run {
        status_429: stats.status_429,
        tag_429: stats.endpoints.get("scripttags").map_or(0, |e| e.status_429),
        tags_made,
        orders_read: results.iter().filter(|(tag, r)| !tag && r.is_ok()).count(),
        caps_learnt: client.endpoint_cap("scripttags"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_with_its_own_smaller_limit_gets_no_429_under_either_reading() {
    for (tag, variant) in [("ep-shared", EndpointLimit::SharedLevel), ("ep-own", EndpointLimit::OwnBucket)] {
        let r = run(tag, variant).await;
        println!(
            "{variant:?}: {} 429s ({} on scripttags), {} tags made, {} orders read",
            r.status_429, r.tag_429, r.tags_made, r.orders_read
        );
        assert_eq!(r.status_429, 0, "{variant:?}: a call over a limit");
        assert_eq!((r.tags_made, r.orders_read), (TAGS, ORDERS), "{variant:?}: every call made");
        assert_eq!(r.caps_learnt, Some(10), "{variant:?}: the header's limit is the documented one");
    }
}
