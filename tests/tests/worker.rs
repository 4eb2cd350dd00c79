//! The worker end to end: moto (work queue, DLQ, DynamoDB), the Cafe24 simulator, the local
//! event source mapping, and the worker's real handler and adapters.
//!
//! Time scaling: `RELAY_E2E_SCALE` (default 4) multiplies the simulator's drain rate and the
//! limiter's rate, divides the minimum spacing, the simulated latency and the minimum deferral.
//! The bucket stays 40. `RELAY_E2E_SCALE=1` runs at Cafe24's real limits (about 2.5 minutes).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use cafe24_sim::state::{AppConfig, Fault, FaultKind, ALL_READ_SCOPES, DAY_MS, HOUR_MS};
use cafe24_sim::{Clock, Sim, SimConfig};
use devstack::esm::{EsmConfig, LocalEsm};
use relay_aws::limiter::{system_clock, DynamoLimiter};
use relay_aws::sqs::{SqsQueue, SqsVisibility};
use relay_aws::state::DynamoState;
use relay_aws::tokens::DynamoTokenStore;
use relay_cafe24::{Cafe24, Cafe24Config};
use relay_domain::jobs::{Job, JobKind};
use relay_domain::ratelimit::Class;
use relay_domain::tokens::{Secret, TokenPair, TokenStore};
use relay_domain::MallId;
use relay_tests::TestEnv;
use worker::{Worker, WorkerConfig};

type W = Worker<DynamoLimiter, DynamoTokenStore, DynamoState, SqsQueue, SqsVisibility>;

fn scale() -> f64 {
    std::env::var("RELAY_E2E_SCALE").ok().and_then(|v| v.parse().ok()).filter(|s: &f64| *s >= 1.0).unwrap_or(4.0)
}

struct Fx {
    sim: Arc<Sim>,
    base: String,
    env: TestEnv,
    scale: f64,
}

impl Fx {
    async fn new(tag: &str, orders: u32) -> Self {
        let s = scale();
        let app = AppConfig {
            client_id: "relay-client".into(),
            client_secret: "relay-secret".into(),
            scopes: ALL_READ_SCOPES.iter().map(|x| x.to_string()).collect(),
        };
        let config =
            SimConfig { apps: vec![app], leak_per_sec: 2.0 * s, orders_per_mall: orders, ..SimConfig::default() };
        let sim = Arc::new(Sim::new(config, Clock::Real));
        let (addr, _t) = cafe24_sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        Self { sim, base: format!("http://{addr}"), env: TestEnv::new(tag).await.unwrap(), scale: s }
    }

    fn worker(&self) -> W {
        let base = format!("{}/{{mall_id}}", self.base);
        let mut ccfg = Cafe24Config::from_lookup(|k| match k {
            "CAFE24_API_BASE_URL" => Some(base.clone()),
            "CAFE24_API_VERSION" => Some("2025-12-01".into()),
            "CAFE24_CLIENT_ID" => Some("relay-client".into()),
            "CAFE24_CLIENT_SECRET" => Some("relay-secret".into()),
            _ => None,
        })
        .unwrap();
        ccfg.max_inline_wait_ms = (200.0 / self.scale) as u64;
        let env = self.env.stack.env();
        let s = self.scale;
        let wcfg = WorkerConfig::from_lookup(|k| match k {
            "LIMITER_RATE_PER_SEC" => Some((2.0 * s).to_string()),
            "LIMITER_MIN_SPACING_MS" => Some(((125.0 / s) as u64).to_string()),
            "DEFER_MIN_S" => Some(((5.0 / s).ceil() as u64).to_string()),
            _ => env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()),
        })
        .unwrap();
        let ddb = self.env.ddb.clone();
        let clock = system_clock();
        let limiter =
            DynamoLimiter::new(ddb.clone(), wcfg.rate_limit_table.clone(), wcfg.limiter.clone(), clock.clone());
        let cafe24 =
            Cafe24::new(ccfg, limiter, DynamoTokenStore::new(ddb.clone(), wcfg.token_table.clone()), clock).unwrap();
        Worker::new(
            cafe24,
            DynamoState::new(ddb, wcfg.state_table.clone()),
            SqsQueue::new(self.env.sqs.clone(), wcfg.dlq_url.clone()),
            SqsVisibility::new(self.env.sqs.clone(), wcfg.work_queue_url.clone()),
            wcfg,
        )
    }

    async fn install(&self, mall: &str) -> MallId {
        let scopes: Vec<String> = ALL_READ_SCOPES.iter().map(|x| x.to_string()).collect();
        let (a, r) = self.sim.seed_tokens(mall, "relay-client", scopes.clone());
        let now = self.sim.clock.now_ms();
        let pair = TokenPair {
            access_token: Secret::new(a),
            access_expires_ms: now + 2 * HOUR_MS,
            refresh_token: Secret::new(r),
            refresh_expires_ms: now + 14 * DAY_MS,
            scopes,
        };
        let m = MallId::parse(mall).unwrap();
        DynamoTokenStore::new(self.env.ddb.clone(), self.env.stack.token_table.clone())
            .put_installed(&m, &pair, now)
            .await
            .unwrap();
        m
    }

    fn orders(&self, mall: &str) -> Vec<String> {
        let mut g = self.sim.lock();
        self.sim.mall(&mut g, mall).data.orders.keys().cloned().collect()
    }

    async fn enqueue(&self, jobs: &[Job]) {
        for chunk in jobs.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, j)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(format!("e{i}"))
                        .message_body(serde_json::to_string(j).unwrap())
                        .message_group_id(j.mall_id.as_str())
                        .message_deduplication_id(&j.job_id)
                        .build()
                        .unwrap()
                })
                .collect();
            let out = self
                .env
                .sqs
                .send_message_batch()
                .queue_url(&self.env.stack.work.url)
                .set_entries(Some(entries))
                .send()
                .await
                .unwrap();
            assert!(out.failed().is_empty());
        }
    }

    fn fault(&self, mall: &str, endpoint: Option<&str>, kind: FaultKind, remaining: Option<u32>) {
        self.sim.lock().faults.push(Fault {
            mall: Some(mall.into()),
            endpoint: endpoint.map(str::to_owned),
            kind,
            remaining,
        });
    }
}

fn job(id: &str, mall: &MallId, kind: JobKind, received_ms: u64) -> Job {
    Job {
        v: 1,
        job_id: id.into(),
        mall_id: mall.clone(),
        kind,
        class: Class::Live,
        trace_id: format!("trace-{id}"),
        event_received_ms: received_ms,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[derive(Debug, Default)]
struct Run {
    makespan: Duration,
    billed_ms: u64,
    invocations: u64,
}

/// Drives the work queue through the worker with a local ESM (concurrency 2) until `done()`.
async fn drive_until(fx: &Fx, w: &W, limit: Duration, done: impl Fn(&W) -> bool) -> Run {
    // Short polls with a pause when empty: moto serves a long poll by holding the queue, which
    // would stall the other poller's DynamoDB and SQS calls behind it.
    let esm = LocalEsm::new(
        fx.env.sqs.clone(),
        EsmConfig {
            max_concurrency: 2,
            wait_time_seconds: 0,
            ..EsmConfig::new(&fx.env.stack.work.url, &fx.env.stack.work.arn)
        },
    );
    let billed = AtomicU64::new(0);
    let invocations = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let handler = |event: serde_json::Value| {
        let (billed, invocations) = (&billed, &invocations);
        async move {
            let t = Instant::now();
            let ev: SqsEvent = serde_json::from_value(event).map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(60);
            let resp = w.handle_batch(ev, move || deadline.saturating_duration_since(Instant::now())).await;
            billed.fetch_add(t.elapsed().as_millis() as u64, Ordering::Relaxed);
            invocations.fetch_add(1, Ordering::Relaxed);
            serde_json::to_value(resp).map_err(|e| e.to_string())
        }
    };
    let poller = || async {
        while !stop.load(Ordering::Relaxed) {
            if done(w) || start.elapsed() > limit {
                stop.store(true, Ordering::Relaxed);
                break;
            }
            if esm.poll_once(&handler).await.unwrap().received == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    futures::future::join(poller(), poller()).await;
    Run {
        makespan: start.elapsed(),
        billed_ms: billed.load(Ordering::Relaxed),
        invocations: invocations.load(Ordering::Relaxed),
    }
}

fn finished(w: &W) -> u64 {
    w.stats.synced.load(Ordering::Relaxed)
        + w.stats.coalesced.load(Ordering::Relaxed)
        + w.stats.tombstoned.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_jobs_for_one_mall_at_the_limit_no_429_no_duplicate_little_sleep() {
    let fx = Fx::new("w300", 300).await;
    let mall = fx.install("bigmall").await;
    // Realistic Cafe24 latency (150 ms at real scale).
    fx.fault("bigmall", None, FaultKind::Latency { ms: (150.0 / fx.scale) as u64 }, None);
    let received = now_ms() - 1_000;
    let jobs: Vec<Job> = fx
        .orders("bigmall")
        .iter()
        .enumerate()
        .map(|(i, o)| job(&format!("j{i:04}"), &mall, JobKind::SyncOrder { order_id: o.clone() }, received))
        .collect();
    let jobs: Vec<Job> =
        jobs.into_iter().take(std::env::var("QUICK").ok().and_then(|v| v.parse().ok()).unwrap_or(300)).collect();
    fx.enqueue(&jobs).await;
    let w = fx.worker();
    let run = drive_until(&fx, &w, Duration::from_secs(600), |w| finished(w) >= jobs.len() as u64).await;

    let s = fx.sim.stats("bigmall");
    let calls = s.endpoints.get("orders/{id}").map_or(0, |e| e.calls);
    let sleep_ms = w.cafe24.stats.inline_sleep_ms.load(Ordering::Relaxed);
    let floor_s = (300.0 - 40.0) / (2.0 * fx.scale);
    let limiter_writes = w.cafe24.gate().stats.writes.load(Ordering::Relaxed);
    println!(
        "300 jobs (scale {}): makespan {:.1} s vs floor {floor_s:.1} s ({:.2}×), calls {calls}, 429s {}, billed {} ms in {} invocations, \
         slept {sleep_ms} ms ({:.2}% of billed), deferrals {}, limiter writes/call {:.2}, max bucket {:.1}, max calls/s {}",
        fx.scale,
        run.makespan.as_secs_f64(),
        run.makespan.as_secs_f64() / floor_s,
        s.status_429,
        run.billed_ms,
        run.invocations,
        100.0 * sleep_ms as f64 / run.billed_ms.max(1) as f64,
        w.stats.deferred.load(Ordering::Relaxed),
        limiter_writes as f64 / calls.max(1) as f64,
        s.max_bucket_level,
        s.max_calls_in_1s,
    );
    assert_eq!(finished(&w), 300, "every job done");
    assert_eq!(s.status_429, 0, "the simulator saw 429s");
    assert_eq!(calls, 300, "each job's call made exactly once");
    assert_eq!(w.stats.duplicates.load(Ordering::Relaxed), 0);
    assert!(sleep_ms as f64 <= 0.05 * run.billed_ms as f64, "slept {sleep_ms} ms of {} ms billed", run.billed_ms);
    assert_eq!(fx.env.depth(&fx.env.stack.work.dlq_url).await.unwrap(), 0, "nothing dead-lettered");
    let state = DynamoState::new(fx.env.ddb.clone(), fx.env.stack.state_table.clone());
    let (_, snap) = state.snapshot(&mall, "order", &fx.orders("bigmall")[123]).await.unwrap().unwrap();
    assert!(snap.unwrap()["items"].is_array(), "order snapshot with items");
}
