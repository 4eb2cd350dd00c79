//! The worker end to end: moto (work queue, DLQ, DynamoDB), the Cafe24 simulator, the local
//! event source mapping, and the worker's real handler and adapters.
//!
//! Time scaling: `RELAY_E2E_SCALE` (default 4) multiplies the simulator's drain rate and the
//! limiter's rate, divides the minimum spacing, the simulated latency and the minimum deferral.
//! The bucket stays 40. `RELAY_E2E_SCALE=1` runs at Cafe24's real limits (about 2.5 minutes).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use devstack::esm::new_request_id;
use relay_domain::ports::SnapshotStore as _;
use relay_domain::SnapshotKind;
use relay_lambda::telemetry::invocation_span;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use aws_lambda_events::event::sqs::SqsEvent;
use cafe24_sim::state::{AppConfig, Fault, FaultKind, ALL_READ_SCOPES};
use cafe24_sim::{Clock, Sim, SimConfig};
use devstack::esm::{EsmConfig, LocalEsm};
use relay_aws::state::DynamoState;
use relay_aws::tokens::DynamoTokenStore;
use relay_cafe24::Cafe24;
use relay_domain::jobs::{Job, JobKind};
use relay_domain::ratelimit::Class;
use relay_domain::MallId;
use relay_lambda::clock::system_clock;
use relay_tests::{install_seeded, sim_cafe24_config, TestEnv};
use worker::{Worker, WorkerConfig};

type W = worker::AwsWorker;

use relay_tests::pipeline::scale;

struct Fx {
    sim: Arc<Sim>,
    base: String,
    env: TestEnv,
    scale: f64,
    defer_min_s: Option<u32>,
    jobs_in_flight: Option<u32>,
}

impl Fx {
    async fn new(tag: &str, orders: u32) -> Self {
        Self::scaled(tag, orders, scale()).await
    }

    /// Like [`Fx::new`] at time scale `s` (Cafe24's limits and the worker's timings × `s`).
    async fn scaled(tag: &str, orders: u32, s: f64) -> Self {
        let app = AppConfig {
            client_id: "relay-client".into(),
            client_secret: "relay-secret".into(),
            scopes: ALL_READ_SCOPES.iter().map(|x| x.to_string()).collect(),
        };
        let config =
            SimConfig { apps: vec![app], leak_per_sec: 2.0 * s, orders_per_mall: orders, ..SimConfig::default() };
        let sim = Arc::new(Sim::new(config, Clock::Real));
        let (addr, _t) = cafe24_sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        Self {
            sim,
            base: format!("http://{addr}"),
            env: TestEnv::new(tag).await.unwrap(),
            scale: s,
            defer_min_s: None,
            jobs_in_flight: None,
        }
    }

    fn worker(&self) -> W {
        let env = self.env.stack.env();
        let s = self.scale;
        let wcfg = WorkerConfig::from_lookup(|k| match k {
            "LIMITER_RATE_PER_SEC" => Some((2.0 * s).to_string()),
            "LIMITER_MIN_SPACING_MS" => {
                Some(((relay_domain::ratelimit::LimiterConfig::default().min_spacing_ms as f64 / s) as u64).to_string())
            }
            "WORKER_MAX_SLEEP_MS" => Some(((200.0 / s) as u64).to_string()),
            "DEFER_MIN_S" => Some(self.defer_min_s.map_or(((5.0 / s).ceil() as u64).to_string(), |d| d.to_string())),
            "JOBS_IN_FLIGHT" => self.jobs_in_flight.map(|n| n.to_string()),
            _ => env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()),
        })
        .unwrap();
        Worker::on_aws(&self.env.clients, wcfg, sim_cafe24_config(&self.base), system_clock()).unwrap()
    }

    async fn install(&self, mall: &str) -> MallId {
        install_seeded(&self.sim, &self.env, mall).await
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
                        .message_deduplication_id(j.job_id.as_str())
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
        job_id: id.parse().unwrap(),
        mall_id: mall.clone(),
        kind,
        class: Class::Live,
        trace_id: format!("trace-{id}").try_into().ok(),
        event_received_ms: received_ms,
        shop_no: relay_domain::ShopNo::DEFAULT,
    }
}

use relay_lambda::clock::now_ms;

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
            let resp = w
                .handle_batch(ev, move || deadline.saturating_duration_since(Instant::now()))
                .instrument(invocation_span("worker", &new_request_id()))
                .await;
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
    // Twice the suite's time scale: the longest test of the suite (35 s at ×4), and what it
    // checks does not depend on the scale (RELAY_E2E_SCALE still raises it).
    let fx = Fx::scaled("w300", 300, 2.0 * scale()).await;
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
    // Billed asleep: invocation time with every running job waiting for credit.
    let asleep_ms = w.stats.asleep_ms.load(Ordering::Relaxed);
    let floor_s = (300.0 - 40.0) / (2.0 * fx.scale);
    let limiter_writes = w.cafe24.gate().stats.writes.load(Ordering::Relaxed);
    println!(
        "300 jobs (scale {}): makespan {:.1} s vs floor {floor_s:.1} s ({:.2}×), calls {calls}, 429s {}, billed {} ms in {} invocations, \
         asleep {asleep_ms} ms ({:.2}% of billed; jobs' sleeps summed {sleep_ms} ms), deferrals {}, limiter writes/call {:.2}, state writes/call {:.2}, max bucket {:.1}, max calls/s {}",
        fx.scale,
        run.makespan.as_secs_f64(),
        run.makespan.as_secs_f64() / floor_s,
        s.status_429,
        run.billed_ms,
        run.invocations,
        100.0 * asleep_ms as f64 / run.billed_ms.max(1) as f64,
        w.stats.deferred.load(Ordering::Relaxed),
        limiter_writes as f64 / calls.max(1) as f64,
        w.state().writes() as f64 / calls.max(1) as f64,
        s.max_bucket_level,
        s.max_calls_in_1s,
    );
    assert_eq!(finished(&w), 300, "every job done");
    assert_eq!(s.status_429, 0, "the simulator saw 429s");
    assert_eq!(calls, 300, "each job's call made exactly once");
    assert_eq!(w.stats.duplicates.load(Ordering::Relaxed), 0);
    // A synced job's state-table writes: its snapshot only (the snapshot is its idempotency
    // record and its outbox; no claim, completion or flag-clearing write).
    assert_eq!(w.state().writes(), 300, "state-table writes for 300 synced jobs");
    // The ≤ 5 % target is a performance figure: measured by `make bench` and printed above
    // (1.2 % on a quiet machine, 6.5 % seen while a release build shared the 2 cores). This
    // test only guards against a regression to sleeping instead of deferring, which bills
    // most of the run asleep: the margin (50 %) is far beyond what machine load moves.
    let inline = w.cafe24.stats.inline_sleeps.load(Ordering::Relaxed);
    assert!(sleep_ms <= inline * (200.0 / fx.scale) as u64, "an inline sleep longer than the inline threshold");
    assert!(asleep_ms as f64 <= 0.5 * run.billed_ms as f64, "asleep {asleep_ms} ms of {} ms billed", run.billed_ms);
    assert_eq!(fx.env.depth(&fx.env.stack.work.dlq_url).await.unwrap(), 0, "nothing dead-lettered");
    let state = DynamoState::new(fx.env.ddb.clone(), fx.env.stack.state_table.clone());
    let (_, snap) = state.snapshot(&mall, SnapshotKind::Order, &fx.orders("bigmall")[123]).await.unwrap().unwrap();
    assert!(snap.unwrap()["items"].is_array(), "order snapshot with items");
}

/// JOBS_IN_FLIGHT > 1 against the real limiter and moto: overlapping jobs of one mall keep the
/// limit (0 × 429), make each call once, never run one order's two jobs at once (the second
/// coalesces, as in sequence), and a token job between them runs alone; nothing is lost, and
/// no job that finished is returned behind a deferred one (admissions in the group's order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_jobs_of_one_mall_keep_the_limit_and_make_each_call_once() {
    let mut fx = Fx::new("wover", 60).await;
    fx.jobs_in_flight = Some(4);
    let mall = fx.install("overlap").await;
    fx.fault("overlap", None, FaultKind::Latency { ms: (150.0 / fx.scale) as u64 }, None);
    let received = now_ms() - 1_000;
    let orders = fx.orders("overlap");
    let mut jobs: Vec<Job> = orders
        .iter()
        .enumerate()
        .map(|(i, o)| job(&format!("o{i:03}"), &mall, JobKind::SyncOrder { order_id: o.clone() }, received))
        .collect();
    // The same order again right behind its first job, and a keyless job in the middle.
    jobs.insert(1, job("o000-again", &mall, JobKind::SyncOrder { order_id: orders[0].clone() }, received));
    jobs.insert(30, job("token", &mall, JobKind::RefreshToken, received));
    fx.enqueue(&jobs).await;
    let w = fx.worker();
    assert_eq!(w.config().jobs_in_flight, 4);
    let n = jobs.len() as u64;
    // A job that finished behind one that was deferred would be returned with it, and its
    // redelivery would find its own version and publish it again: done twice, counted as a
    // duplicate. So the jobs done once are `done - duplicates`, and there must be none.
    let once = |w: &W| w.stats.done.load(Ordering::Relaxed) - w.stats.duplicates.load(Ordering::Relaxed);
    let run = drive_until(&fx, &w, Duration::from_secs(300), |w| once(w) >= n).await;
    let s = fx.sim.stats("overlap");
    let calls = s.endpoints.get("orders/{id}").map_or(0, |e| e.calls);
    let (duplicates, deferred) = (w.stats.duplicates.load(Ordering::Relaxed), w.stats.deferred.load(Ordering::Relaxed));
    println!(
        "overlap: {run:?}, calls {calls}, max calls/s {}, 429s {}, redelivered finished jobs {duplicates}, deferrals {deferred}",
        s.max_calls_in_1s, s.status_429
    );
    assert_eq!(once(&w), n, "every job done");
    // Whether the run reaches the limit depends on the machine's speed (a loaded one never
    // did); the ordering itself is pinned down by the worker's outcome test
    // `overlapping_jobs_get_credit_in_their_group_order…`.
    assert_eq!(duplicates, 0, "a job that made its call never comes back behind a deferred one ({deferred} deferrals)");
    assert_eq!(finished(&w), n - 1, "60 synced + 1 coalesced (the token job is neither)");
    assert_eq!(s.status_429, 0);
    assert_eq!(calls, 60, "each order fetched once: its second job coalesced");
    assert_eq!(w.stats.coalesced.load(Ordering::Relaxed), 1);
    assert_eq!(fx.env.depth(&fx.env.stack.work.dlq_url).await.unwrap(), 0, "nothing dead-lettered");
    let state = DynamoState::new(fx.env.ddb.clone(), fx.env.stack.state_table.clone());
    for o in &orders {
        assert!(state.snapshot(&mall, SnapshotKind::Order, o).await.unwrap().unwrap().1.is_some(), "{o} stored");
    }
}

async fn dlq_bodies(fx: &Fx) -> Vec<serde_json::Value> {
    fx.env
        .peek_all(&fx.env.stack.work.dlq_url)
        .await
        .unwrap()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_5xx_then_success_422_to_dlq_404_tombstone_401_refresh() {
    let fx = Fx::new("woutcomes", 5).await;
    let (m5, m422, m404, m401) =
        (fx.install("m5xx").await, fx.install("m422").await, fx.install("m404").await, fx.install("m401").await);
    fx.fault("m5xx", Some("products"), FaultKind::Status { status: 500 }, Some(2));
    fx.fault("m422", Some("customers"), FaultKind::Status { status: 422 }, Some(1));
    fx.fault("m401", Some("orders"), FaultKind::Status { status: 401 }, Some(1));
    let t = now_ms() - 1_000;
    let order401 = fx.orders("m401")[0].clone();
    let jobs = vec![
        job("j-5xx", &m5, JobKind::SyncProduct { product_no: 1 }, t),
        job("j-422", &m422, JobKind::SyncCustomer { member_id: "member0001".into() }, t),
        job("j-404", &m404, JobKind::SyncOrder { order_id: "20990101-0000001".into() }, t),
        job("j-401", &m401, JobKind::SyncOrder { order_id: order401.clone() }, t),
    ];
    fx.enqueue(&jobs).await;
    let w = fx.worker();
    let run = drive_until(&fx, &w, Duration::from_secs(120), |w| {
        finished(w) >= 3 && w.stats.dead_lettered.load(Ordering::Relaxed) >= 1
    })
    .await;
    println!("outcomes: {run:?}, failures {}", w.stats.failures.load(Ordering::Relaxed));
    let state = DynamoState::new(fx.env.ddb.clone(), fx.env.stack.state_table.clone());
    // 5xx twice, then 200: success after two real attempts with backoff.
    assert!(state.snapshot(&m5, SnapshotKind::Product, "1").await.unwrap().unwrap().1.is_some());
    assert_eq!(fx.sim.stats("m5xx").status_5xx, 2);
    assert_eq!(w.stats.failures.load(Ordering::Relaxed), 2);
    // 422: DLQ after one attempt, with Cafe24's code and message.
    let dlq = dlq_bodies(&fx).await;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0]["job"]["job_id"], "j-422");
    assert_eq!(dlq[0]["error_class"], "invalid_request");
    assert!(dlq[0]["reason"].as_str().unwrap().contains("422"), "{}", dlq[0]);
    assert_eq!(fx.sim.stats("m422").endpoints.get("customers").map_or(0, |e| e.calls), 1, "one attempt only");
    // 404: tombstone.
    let (_, data) = state.snapshot(&m404, SnapshotKind::Order, "20990101-0000001").await.unwrap().unwrap();
    assert!(data.is_none(), "tombstone");
    assert_eq!(w.stats.tombstoned.load(Ordering::Relaxed), 1);
    // 401: one refresh, then success.
    assert!(state.snapshot(&m401, SnapshotKind::Order, &order401).await.unwrap().unwrap().1.is_some());
    assert_eq!(fx.sim.stats("m401").token_issuances, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_mall_does_not_block_another_and_order_holds_through_deferrals() {
    let mut fx = Fx::new("whol", 12).await;
    // One job at a time: the order checked below is the snapshots' `fetched_at`, taken before
    // each job's admission. Side by side (the default 2), jobs of different orders commute: they
    // ask the limiter in queue order, but one can take its `fetched_at` before the one ahead of
    // it (CI saw it once). The overlap test covers overlapping jobs.
    fx.jobs_in_flight = Some(1);
    let (slow, fast) = (fx.install("slowmall").await, fx.install("fastmall").await);
    fx.fault("slowmall", None, FaultKind::RateLimit, Some(6));
    let t = now_ms() - 1_000;
    let (so, fo) = (fx.orders("slowmall"), fx.orders("fastmall"));
    // Interleaved, so batches mix both groups.
    let mut jobs = Vec::new();
    for i in 0..12 {
        jobs.push(job(&format!("s{i:02}"), &slow, JobKind::SyncOrder { order_id: so[i].clone() }, t));
        jobs.push(job(&format!("f{i:02}"), &fast, JobKind::SyncOrder { order_id: fo[i].clone() }, t));
    }
    fx.enqueue(&jobs).await;
    let w = fx.worker();
    let state = DynamoState::new(fx.env.ddb.clone(), fx.env.stack.state_table.clone());
    let started = now_ms();
    let run = drive_until(&fx, &w, Duration::from_secs(180), |w| finished(w) >= 24).await;
    let mut fast_done = Vec::new();
    let mut slow_done = Vec::new();
    for o in &fo {
        fast_done.push(state.snapshot(&fast, SnapshotKind::Order, o).await.unwrap().unwrap().0);
    }
    for o in &so {
        slow_done.push(state.snapshot(&slow, SnapshotKind::Order, o).await.unwrap().unwrap().0);
    }
    let fast_last = *fast_done.iter().max().unwrap() - started;
    let slow_last = *slow_done.iter().max().unwrap() - started;
    println!("HOL: fast mall done after {fast_last} ms, throttled mall after {slow_last} ms; {run:?}");
    assert!(fast_done.windows(2).all(|p| p[0] < p[1]), "fast mall out of order: {fast_done:?}");
    // The throttled group keeps its order through its deferrals too (the local SQS holds a
    // deferred group, as SQS does: `the_local_sqs_keeps_a_fifo_group_in_order…`).
    assert_eq!(slow_done.len(), 12, "every throttled job completed");
    assert!(slow_done.windows(2).all(|p| p[0] < p[1]), "throttled mall out of order: {slow_done:?}");
    // Relative, not absolute: blocked behind the throttled group, the fast mall would finish
    // about when it does (13.4 s vs 0.6 s measured quietly). Both stretch on a loaded machine,
    // so no wall-clock bound decides this.
    assert!(
        2 * fast_last < slow_last,
        "the unthrottled mall waited behind the throttled one ({fast_last} vs {slow_last} ms)"
    );
    assert_eq!(fx.sim.stats("fastmall").status_429, 0);
}

/// Deferrals are not attempts: a job throttled more than twice its attempt budget (MAX_ATTEMPTS,
/// 5) completes and never reaches the DLQ. Each deferral costs a second of SQS visibility, so
/// twelve of them, not fifty (which only made the test 40 s longer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_past_twice_the_attempt_budget_never_reaches_the_dlq() {
    const THROTTLED: u64 = 12;
    let mut fx = Fx::new("wdefer", 3).await;
    fx.defer_min_s = Some(1);
    let mall = fx.install("patient").await;
    fx.fault("patient", None, FaultKind::RateLimit, Some(THROTTLED as u32));
    let order = fx.orders("patient")[0].clone();
    fx.enqueue(&[job("j-patient", &mall, JobKind::SyncOrder { order_id: order.clone() }, now_ms() - 1_000)]).await;
    let w = fx.worker();
    assert!(THROTTLED > 2 * u64::from(w.config().max_attempts));
    let run = drive_until(&fx, &w, Duration::from_secs(120), |w| finished(w) >= 1).await;
    println!("deferred {THROTTLED} times: {run:?}, deferrals {}", w.stats.deferred.load(Ordering::Relaxed));
    assert_eq!(finished(&w), 1, "the job completed");
    assert_eq!(fx.sim.stats("patient").status_429, THROTTLED);
    assert!(w.stats.deferred.load(Ordering::Relaxed) >= THROTTLED);
    assert_eq!(w.stats.failures.load(Ordering::Relaxed), 0, "deferrals are not attempts");
    assert_eq!(fx.env.depth(&fx.env.stack.work.dlq_url).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_call_is_redelivered_without_a_duplicate_effect() {
    let fx = Fx::new("wcrash", 3).await;
    let mall = fx.install("crashy").await;
    // Short visibility so the crashed batch comes back quickly.
    fx.env
        .sqs
        .set_queue_attributes()
        .queue_url(&fx.env.stack.work.url)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "2")
        .send()
        .await
        .unwrap();
    fx.fault("crashy", Some("orders"), FaultKind::Latency { ms: 800 }, Some(1));
    let order = fx.orders("crashy")[0].clone();
    fx.enqueue(&[job("j-crash", &mall, JobKind::SyncOrder { order_id: order.clone() }, now_ms() - 1_000)]).await;
    let w = fx.worker();
    let esm = LocalEsm::new(
        fx.env.sqs.clone(),
        EsmConfig { wait_time_seconds: 0, ..EsmConfig::new(&fx.env.stack.work.url, &fx.env.stack.work.arn) },
    );
    // First invocation dies (like a Lambda timeout) while the call is in flight at Cafe24.
    let crashing = |event: serde_json::Value| {
        let w = &w;
        async move {
            let ev: SqsEvent = serde_json::from_value(event).map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_millis(6_000);
            match tokio::time::timeout(
                Duration::from_millis(300),
                w.handle_batch(ev, move || deadline.saturating_duration_since(Instant::now())),
            )
            .await
            {
                Ok(r) => serde_json::to_value(r).map_err(|e| e.to_string()),
                Err(_) => Err("invocation timed out".to_owned()),
            }
        }
    };
    let mut r = esm.poll_once(&crashing).await.unwrap();
    while r.received == 0 {
        r = esm.poll_once(&crashing).await.unwrap();
    }
    assert_eq!(r.failed_batches, 1, "the crash fails the batch");
    tokio::time::sleep(Duration::from_millis(900)).await; // let the simulator finish the call it started
    assert_eq!(
        fx.sim.stats("crashy").endpoints.get("orders/{id}").map_or(0, |e| e.calls),
        1,
        "the call reached Cafe24"
    );
    let run = drive_until(&fx, &w, Duration::from_secs(60), |w| finished(w) >= 1).await;
    println!("crash: {run:?}");
    let state = DynamoState::new(fx.env.ddb.clone(), fx.env.stack.state_table.clone());
    assert!(state.snapshot(&mall, SnapshotKind::Order, &order).await.unwrap().unwrap().1.is_some());
    assert_eq!(w.stats.synced.load(Ordering::Relaxed), 1, "the effect (snapshot) was applied once");
    // Redelivered again (e.g. a late duplicate): completed jobs never run again.
    fx.env
        .sqs
        .send_message()
        .queue_url(&fx.env.stack.work.url)
        .message_group_id("crashy")
        .message_deduplication_id("j-crash-again")
        .message_body(
            serde_json::to_string(&job(
                "j-crash",
                &mall,
                JobKind::SyncOrder { order_id: order.clone() },
                now_ms() - 1_000,
            ))
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let calls_before = fx.sim.stats("crashy").endpoints.get("orders/{id}").map_or(0, |e| e.calls);
    drive_until(&fx, &w, Duration::from_secs(30), |w| w.stats.duplicates.load(Ordering::Relaxed) >= 1).await;
    assert_eq!(
        fx.sim.stats("crashy").endpoints.get("orders/{id}").map_or(0, |e| e.calls),
        calls_before,
        "no second call for a completed job"
    );
}

/// The local SQS (moto with `scripts/moto_server.py`'s patch) keeps a FIFO group's order after a
/// visibility change, as SQS does: moto alone redelivered `m1, m2, m3` before `m0` here.
#[tokio::test]
async fn the_local_sqs_keeps_a_fifo_group_in_order_after_a_visibility_change() {
    let env = TestEnv::new("motogap").await.unwrap();
    let q = &env.stack.work.url;
    for i in 0..4 {
        env.sqs
            .send_message()
            .queue_url(q)
            .message_group_id("g")
            .message_deduplication_id(format!("d{i}"))
            .message_body(format!("m{i}"))
            .send()
            .await
            .unwrap();
    }
    let got = env.sqs.receive_message().queue_url(q).max_number_of_messages(2).send().await.unwrap();
    assert_eq!(got.messages().len(), 2);
    for m in got.messages() {
        env.sqs
            .change_message_visibility()
            .queue_url(q)
            .receipt_handle(m.receipt_handle().unwrap())
            .visibility_timeout(1)
            .send()
            .await
            .unwrap();
    }
    // While m0 and m1 wait, the group is held: m2 and m3 are not handed out.
    let held = env.sqs.receive_message().queue_url(q).max_number_of_messages(10).send().await.unwrap();
    assert!(held.messages().is_empty(), "{:?}", held.messages().iter().filter_map(|m| m.body()).collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let again = env.sqs.receive_message().queue_url(q).max_number_of_messages(10).send().await.unwrap();
    let bodies: Vec<&str> = again.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, ["m0", "m1", "m2", "m3"], "the group again from its first message");
}

fn set_description(fx: &Fx, mall: &str, product_no: u64, text: String) {
    let mut g = fx.sim.lock();
    let m = fx.sim.mall(&mut g, mall);
    let p = m.data.products.get_mut(&product_no).unwrap();
    p.description = text;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_with_a_600_kb_description_syncs_once() {
    let fx = Fx::new("wbig", 5).await;
    let mall = fx.install("bigdesc").await;
    set_description(&fx, "bigdesc", 1, cafe24_sim::data::Product::long_description(1, 600_000));
    fx.enqueue(&[job("j-big", &mall, JobKind::SyncProduct { product_no: 1 }, now_ms() - 1_000)]).await;
    let w = fx.worker();
    drive_until(&fx, &w, Duration::from_secs(120), |w| {
        finished(w) >= 1 || w.stats.failures.load(Ordering::Relaxed) >= 1
    })
    .await;
    let calls = fx.sim.stats("bigdesc").endpoints.get("products/{id}").map_or(0, |e| e.calls);
    assert_eq!(w.stats.synced.load(Ordering::Relaxed), 1, "synced");
    assert_eq!(calls, 1, "one billed call");
    assert_eq!(w.stats.failures.load(Ordering::Relaxed), 0);
    let state = DynamoState::new(fx.env.ddb.clone(), fx.env.stack.state_table.clone());
    let (_, snap) = state.snapshot(&mall, SnapshotKind::Product, "1").await.unwrap().unwrap();
    let desc = snap.unwrap()["description"].as_str().unwrap().len();
    assert!(desc >= 600_000, "the whole description is stored ({desc} bytes)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_too_large_even_compressed_is_dead_lettered_after_one_call() {
    let fx = Fx::new("wtoobig", 5).await;
    let mall = fx.install("hugedesc").await;
    // Incompressible (random base64, like inline images): ~700 KB stays ~525 KB deflated.
    use base64::Engine as _;
    let noise: Vec<u8> = (0..525_000).map(|_| rand::random::<u8>()).collect();
    set_description(&fx, "hugedesc", 2, base64::engine::general_purpose::STANDARD.encode(noise));
    fx.enqueue(&[job("j-huge", &mall, JobKind::SyncProduct { product_no: 2 }, now_ms() - 1_000)]).await;
    let w = fx.worker();
    drive_until(&fx, &w, Duration::from_secs(120), |w| {
        w.stats.dead_lettered.load(Ordering::Relaxed) >= 1 || w.stats.failures.load(Ordering::Relaxed) >= 2
    })
    .await;
    let calls = fx.sim.stats("hugedesc").endpoints.get("products/{id}").map_or(0, |e| e.calls);
    assert_eq!(calls, 1, "not retried: no retry can store it");
    let dlq = dlq_bodies(&fx).await;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0]["error_class"], "snapshot_too_large");
}

/// One invocation of `w` on the work queue under the strict local ESM (`timeout`), the handler
/// taking the real time left, as the binary does.
async fn invoke_strict(fx: &Fx, w: &W, timeout: Duration) -> devstack::esm::EsmReport {
    let esm = LocalEsm::new(
        fx.env.sqs.clone(),
        EsmConfig {
            wait_time_seconds: 0,
            timeout: Some(timeout),
            ..EsmConfig::new(&fx.env.stack.work.url, &fx.env.stack.work.arn)
        },
    );
    let h = |event: serde_json::Value| {
        devstack::esm::invoke("worker", event, move |ev| w.handle_batch(ev, devstack::esm::time_left))
    };
    esm.poll_once(&h).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_never_starts_when_the_invocation_could_be_killed_before_storing_the_pair() {
    use relay_domain::tokens::{TokenStatus, TokenStore};
    let fx = Fx::new("wkill", 3).await;
    let mall = fx.install("killshop").await;
    let store = DynamoTokenStore::new(fx.env.ddb.clone(), fx.env.stack.token_table.clone());
    let mut rec = store.get(&mall).await.unwrap().unwrap();
    rec.pair.access_expires_ms = now_ms() - 1; // the next call needs a refresh
    store.put_installed(&mall, &rec.pair, now_ms()).await.unwrap();
    // Cafe24 issues at once and answers 8 s later (the pair is rotated before the client sees it).
    fx.sim.lock().token_answer_delay_ms = 8_000;
    let order = fx.orders("killshop")[0].clone();
    fx.enqueue(&[job("j-kill", &mall, JobKind::SyncOrder { order_id: order }, now_ms() - 1_000)]).await;
    let w = fx.worker();

    // A 6 s invocation (past the worker's 5 s minimum for starting a record): killed in the
    // middle of the refresh if one starts.
    let r = invoke_strict(&fx, &w, Duration::from_secs(6)).await;
    println!("short invocation: {r:?}, token requests {}", fx.sim.stats("killshop").token_requests);

    // Later (past any lease), a client refreshes with whatever pair is stored.
    fx.sim.lock().token_answer_delay_ms = 0;
    let later: relay_cafe24::Clock = Arc::new(|| now_ms() + 3_600_000);
    let client = Cafe24::new(
        sim_cafe24_config(&fx.base),
        relay_domain::ports::NoAdminCalls,
        DynamoTokenStore::new(fx.env.ddb.clone(), fx.env.stack.token_table.clone()),
        later,
    )
    .unwrap();
    let refreshed = client.token(&mall, relay_cafe24::tokens::Need::Fresh).await;
    let s = fx.sim.stats("killshop");
    assert_eq!(s.invalid_grants, 0, "the stored refresh token was rotated away: {refreshed:?}");
    assert!(refreshed.is_ok(), "{refreshed:?}");
    assert_eq!(store.get(&mall).await.unwrap().unwrap().status, TokenStatus::Active, "no mall locked out");
    assert_eq!(r.timed_out, 0, "the short invocation deferred instead of being killed mid-refresh");
    assert_eq!(w.stats.failures.load(Ordering::Relaxed), 0, "a deferral, not a failed attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_dynamodb_down_a_job_is_returned_not_lost_and_cafe24_is_not_called() {
    let mut moto = devstack::moto::PrivateMoto::start().await.unwrap();
    let fx = Fx { env: TestEnv::on(&moto.url, "wddbdown").await.unwrap(), ..Fx::new("wddbdown", 3).await };
    let mall = fx.install("ddbdown").await;
    let order = fx.orders("ddbdown")[0].clone();
    let j = job("j-ddb", &mall, JobKind::SyncOrder { order_id: order }, now_ms() - 1_000);
    let w = fx.worker();
    let event: SqsEvent = serde_json::from_value(serde_json::json!({"Records": [{
        "messageId": "m-ddb", "receiptHandle": "rh-ddb", "body": serde_json::to_string(&j).unwrap(),
        "attributes": {"MessageGroupId": "ddbdown", "ApproximateReceiveCount": "1"},
        "messageAttributes": {}, "eventSource": "aws:sqs"
    }]}))
    .unwrap();
    moto.stop().await.unwrap(); // DynamoDB (and SQS) gone
    let resp = w.handle_batch(event, || Duration::from_secs(60)).await;
    let returned: Vec<&str> = resp.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(returned, ["m-ddb"], "returned to the queue, not acknowledged");
    assert_eq!(fx.sim.stats("ddbdown").calls, 0, "no Cafe24 call without a claim");
    assert_eq!(w.stats.failures.load(Ordering::Relaxed), 0, "a deferral, not an attempt");
    assert_eq!(w.stats.dead_lettered.load(Ordering::Relaxed), 0);
}
