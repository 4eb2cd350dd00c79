//! The DynamoDB rate limiter (on moto) in front of the Cafe24 simulator at Cafe24's real limits
//! (bucket 40, drain 2/s), for 60 s of simulated time.
//!
//! Time is virtual: the simulator runs on its manual clock and the limiter reads the same clock,
//! so a minute of traffic at real limits runs in about a second, deterministically. Each call
//! takes 100 ms of virtual round trip (the server sees it half-way). DynamoDB is real (moto).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use cafe24_sim::state::{AppConfig, ALL_READ_SCOPES};
use cafe24_sim::{Clock, Sim, SimConfig};
use relay_aws::limiter::{Acquire, DynamoLimiter};
use relay_domain::clock::Clock as ClockFn;
use relay_domain::ratelimit::{Class, Feedback, LimiterConfig};
use relay_tests::TestEnv;

const T0: u64 = 1_795_305_600_000;
const MINUTE: u64 = 60_000;
const LATENCY: u64 = 100;

#[derive(Debug)]
struct Outcome {
    managed_ok: u64,
    managed_ok_steady: u64,
    unmanaged_calls: u64,
    sim_429: u64,
    max_bucket: f64,
    max_in_1s: u32,
    writes: u64,
    admitted: u64,
}

fn app(id: &str) -> AppConfig {
    AppConfig {
        client_id: id.into(),
        client_secret: "s".into(),
        scopes: ALL_READ_SCOPES.iter().map(|s| s.to_string()).collect(),
    }
}

async fn run(tag: &str, unmanaged_every_ms: Option<u64>) -> Outcome {
    let config = SimConfig { apps: vec![app("relay"), app("other")], ..SimConfig::default() };
    let sim = Arc::new(Sim::new(config, Clock::manual(T0)));
    let (addr, _task) = cafe24_sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let env = TestEnv::new(tag).await.unwrap();
    let sim_clock = sim.clock.clone();
    let clock: ClockFn = Arc::new(move || sim_clock.now_ms());
    let limiter =
        DynamoLimiter::new(env.ddb.clone(), env.stack.rate_limit_table.clone(), LimiterConfig::default(), clock);
    let scopes: Vec<String> = ALL_READ_SCOPES.iter().map(|s| s.to_string()).collect();
    let (ours, _) = sim.seed_tokens("busymall", "relay", scopes.clone());
    let (theirs, _) = sim.seed_tokens("busymall", "other", scopes);
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/busymall/api/v2/admin/products/1");

    let mut out = Outcome {
        managed_ok: 0,
        managed_ok_steady: 0,
        unmanaged_calls: 0,
        sim_429: 0,
        max_bucket: 0.0,
        max_in_1s: 0,
        writes: 0,
        admitted: 0,
    };
    let mut next_other = unmanaged_every_ms.map(|_| T0 + 250);
    loop {
        let now = sim.clock.now_ms();
        if now >= T0 + MINUTE {
            break;
        }
        if let (Some(at), Some(every)) = (next_other, unmanaged_every_ms) {
            if now >= at {
                // The other app ignores every limit.
                http.get(&url).bearer_auth(&theirs).send().await.unwrap();
                out.unmanaged_calls += 1;
                next_other = Some(at + every);
                continue;
            }
        }
        match limiter.acquire("busymall", Class::Live).await.unwrap() {
            Acquire::Admitted => {
                sim.clock.advance(LATENCY / 2);
                let r = http.get(&url).bearer_auth(&ours).send().await.unwrap();
                sim.clock.advance(LATENCY / 2);
                let status = r.status().as_u16();
                let headers: Vec<(String, String)> = r
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                    .collect();
                let fb = Feedback::from_headers(status, headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                limiter.feedback("busymall", &fb).await.unwrap();
                if status == 200 {
                    out.managed_ok += 1;
                    if now >= T0 + 20_000 {
                        out.managed_ok_steady += 1;
                    }
                }
            }
            Acquire::Wait(d) => {
                let until_other = next_other.map_or(u64::MAX, |at| at.saturating_sub(now).max(1));
                sim.clock.advance(d.min(until_other).max(1));
            }
        }
    }
    let s = sim.stats("busymall");
    out.sim_429 = s.status_429;
    out.max_bucket = s.max_bucket_level;
    out.max_in_1s = s.max_calls_in_1s;
    out.writes = limiter.stats.writes.load(std::sync::atomic::Ordering::Relaxed);
    out.admitted = limiter.stats.admitted.load(std::sync::atomic::Ordering::Relaxed);
    out
}

#[tokio::test]
async fn full_demand_for_a_minute_gets_zero_429s_and_at_least_95_percent_of_the_drain_rate() {
    let o = run("rl-sim-full", None).await;
    let steady_rate = o.managed_ok_steady as f64 / 40.0;
    println!("full demand: {o:?}; steady throughput {steady_rate:.3}/s = {:.1}% of 2/s", steady_rate * 50.0);
    assert_eq!(o.sim_429, 0, "the simulator saw 429s");
    assert!(steady_rate >= 0.95 * 2.0, "steady throughput {steady_rate:.3}/s is under 95% of the drain rate");
    assert!(o.max_in_1s < 10, "looked abnormal to Cafe24: {} calls in 1 s", o.max_in_1s);
    assert!(o.max_bucket <= 40.0);
}

#[tokio::test]
async fn an_unmanaged_app_using_half_the_drain_rate_causes_at_most_two_429s() {
    let o = run("rl-sim-shared", Some(1_000)).await;
    let ours = o.managed_ok_steady as f64 / 40.0;
    println!("shared mall: {o:?}; our steady throughput {ours:.3}/s (the other app takes 1/s of 2/s)");
    assert!(o.unmanaged_calls >= 59);
    assert!(o.sim_429 <= 2, "{} 429s: feedback did not move the limiter in time", o.sim_429);
    assert!(ours >= 0.85, "feedback over-throttled: {ours:.3}/s of the 1/s left");
}
