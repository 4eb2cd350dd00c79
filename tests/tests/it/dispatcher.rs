//! The dispatcher over moto and the simulator, and the whole path end to end:
//! simulator webhook sender → webhook-ingest (HTTP) → inbox → dispatcher → work → worker.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use relay_domain::ports::SnapshotStore as _;
use relay_domain::SnapshotKind;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cafe24_sim::state::DAY_MS;
use devstack::esm::{invoke, EsmConfig, LocalEsm};
use dispatcher::Dispatcher;
use relay_aws::sqs::SqsQueue;
use relay_aws::state::DynamoState;
use relay_domain::ports::{MessageQueue, OutboundMessage, QueueError};
use relay_domain::tokens::{TokenStatus, TokenStore};
use relay_domain::MallId;
use relay_tests::pipeline::Pipeline;
use relay_tests::*;
use serde_json::{json, Value};

type Fx = Pipeline;

fn esm(fx: &Fx, url: &str, arn: &str) -> LocalEsm {
    LocalEsm::new(
        fx.env.sqs.clone(),
        EsmConfig { max_concurrency: 2, wait_time_seconds: 0, ..EsmConfig::new(url, arn) },
    )
}

async fn run_dispatcher<Q: MessageQueue, S: TokenStore + relay_domain::ports::ScheduleCursor>(
    fx: &Fx,
    d: &Dispatcher<Q, S, SqsQueue>,
) -> devstack::esm::EsmReport {
    let e = esm(fx, &fx.env.stack.inbox.url, &fx.env.stack.inbox.arn);
    let h = |event: Value| invoke("dispatcher", event, move |ev| d.handle_batch(ev, || Duration::from_secs(30)));
    e.run_until_idle(&h, 2).await.unwrap()
}

/// Takes every job off the work queue (destructive).
async fn work_jobs(fx: &Fx) -> Vec<Value> {
    fx.env
        .drain_all(&fx.env.stack.work.url)
        .await
        .unwrap()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn bulk_events_fan_out_and_a_replayed_inbox_message_makes_the_same_jobs() {
    let fx = Fx::new("d-fanout").await;
    let bulk = json!({"event_no": 90072, "resource": {"mall_id": "fanmall", "event_shop_no": "1", "order_id": "20200713-0000039,20200708-0000080,20200713-0000039"}});
    fx.ingest(&bulk, "bulk-trace-1").await;
    fx.ingest(
        &json!({"event_no": "90041", "mall_id": "fanmall", "product_no": "17652,17394,17293,16807,16118"}),
        "bulk-trace-2",
    )
    .await;
    fx.ingest(&json!({"event_no": 12345, "resource": {"mall_id": "fanmall"}}), "unknown-1").await;
    let d = fx.dispatcher();
    let r = run_dispatcher(&fx, &d).await;
    assert_eq!((r.received, r.deleted), (3, 3));
    let jobs = work_jobs(&fx).await;
    assert_eq!(jobs.len(), 2 + 5, "2 distinct orders + 5 products");
    assert_eq!(d.stats.forwarded.load(Ordering::Relaxed), 1, "the unknown event number is forwarded to the app");
    let first: BTreeSet<String> = jobs.iter().map(|j| j["job_id"].as_str().unwrap().to_owned()).collect();

    // The same inbox message again (as after a redelivery): identical job ids.
    let fresh = TestEnv::new("d-fanout-2").await.unwrap();
    let fx2 = Fx { sim: fx.sim.clone(), base: fx.base.clone(), env: fresh };
    fx2.ingest(&bulk, "bulk-trace-1").await;
    fx2.ingest(
        &json!({"event_no": "90041", "mall_id": "fanmall", "product_no": "17652,17394,17293,16807,16118"}),
        "bulk-trace-2",
    )
    .await;
    run_dispatcher(&fx2, &fx2.dispatcher()).await;
    let again: BTreeSet<String> =
        work_jobs(&fx2).await.iter().map(|j| j["job_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(first, again);
}

/// A work queue that refuses chosen entries for the first `fail_calls` batch sends.
struct Flaky {
    inner: SqsQueue,
    fail_calls: AtomicUsize,
    fail_every: usize,
}

impl MessageQueue for Flaky {
    async fn send(&self, msg: &OutboundMessage) -> Result<(), QueueError> {
        self.inner.send(msg).await
    }

    async fn send_batch(&self, msgs: &[OutboundMessage]) -> Result<Vec<usize>, QueueError> {
        if self.fail_calls.load(Ordering::SeqCst) == 0 {
            return self.inner.send_batch(msgs).await;
        }
        self.fail_calls.fetch_sub(1, Ordering::SeqCst);
        // Store only the entries not chosen to fail, report the chosen ones as refused.
        let keep: Vec<OutboundMessage> =
            msgs.iter().enumerate().filter(|(i, _)| i % self.fail_every != 0).map(|(_, m)| m.clone()).collect();
        let failed_inner = self.inner.send_batch(&keep).await?;
        assert!(failed_inner.is_empty());
        Ok((0..msgs.len()).filter(|i| i % self.fail_every == 0).collect())
    }
}

/// Refuses every send until `until`, then passes them through (an SQS outage of the work queue).
struct DownUntil {
    inner: SqsQueue,
    until: Instant,
}

impl MessageQueue for DownUntil {
    async fn send(&self, msg: &OutboundMessage) -> Result<(), QueueError> {
        if Instant::now() < self.until {
            return Err(QueueError::Unavailable("work queue unavailable (test)".into()));
        }
        self.inner.send(msg).await
    }

    async fn send_batch(&self, msgs: &[OutboundMessage]) -> Result<Vec<usize>, QueueError> {
        if Instant::now() < self.until {
            return Err(QueueError::Unavailable("work queue unavailable (test)".into()));
        }
        self.inner.send_batch(msgs).await
    }
}

/// Counts `SendMessageBatch` calls.
struct Counting {
    inner: SqsQueue,
    batches: AtomicUsize,
}

impl MessageQueue for Counting {
    async fn send(&self, msg: &OutboundMessage) -> Result<(), QueueError> {
        self.inner.send(msg).await
    }

    async fn send_batch(&self, msgs: &[OutboundMessage]) -> Result<Vec<usize>, QueueError> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.inner.send_batch(msgs).await
    }
}

#[tokio::test]
async fn a_batch_of_routable_webhooks_goes_out_in_as_few_sends_as_its_jobs_need() {
    let fx = Fx::new("d-batched").await;
    let orders: Vec<String> = (0..10).map(|i| format!("20261122-{i:07}")).collect();
    for (i, o) in orders.iter().enumerate() {
        fx.ingest(&json!({"event_no": 90023, "resource": {"mall_id": "batched", "order_id": o}}), &format!("b-{i}"))
            .await;
    }
    let d = fx.dispatcher_with(Counting {
        inner: SqsQueue::new(fx.env.sqs.clone(), fx.env.stack.work.url.clone()),
        batches: AtomicUsize::new(0),
    });
    let r = run_dispatcher(&fx, &d).await;
    assert_eq!((r.received, r.deleted), (10, 10));
    assert_eq!(d.stats.routed.load(Ordering::Relaxed), 10);
    // Ten webhooks, ten jobs: one SendMessageBatch for the whole invocation, not one per webhook.
    assert_eq!(d.work_queue().batches.load(Ordering::SeqCst), 1);
    let jobs = work_jobs(&fx).await;
    let got: Vec<&str> = jobs.iter().map(|j| j["order_id"].as_str().unwrap()).collect();
    assert_eq!(got, orders.iter().map(String::as_str).collect::<Vec<_>>(), "in webhook order");
}

#[tokio::test]
async fn partial_batch_failures_lose_no_job_and_acknowledge_nothing_early() {
    let fx = Fx::new("d-partial").await;
    let ids: Vec<String> = (0..25).map(|i| format!("20261122-{i:07}")).collect();
    fx.ingest(&json!({"event_no": 90072, "resource": {"mall_id": "flaky", "order_id": ids.join(",")}}), "flaky-1")
        .await;
    // 1) Refusals that the retries absorb: all 25 jobs arrive, the inbox message is acknowledged.
    let d = fx.dispatcher_with(Flaky {
        inner: SqsQueue::new(fx.env.sqs.clone(), fx.env.stack.work.url.clone()),
        fail_calls: AtomicUsize::new(3),
        fail_every: 3,
    });
    let r = run_dispatcher(&fx, &d).await;
    assert_eq!(r.deleted, 1);
    assert!(d.stats.retried_entries.load(Ordering::Relaxed) > 0);
    let jobs = work_jobs(&fx).await;
    assert_eq!(jobs.iter().map(|j| j["job_id"].as_str().unwrap()).collect::<BTreeSet<_>>().len(), 25, "no job lost");

    // 2) Refusals that outlast the retries: the inbox message is NOT acknowledged.
    let fx2 = Fx { sim: fx.sim.clone(), base: fx.base.clone(), env: TestEnv::new("d-partial-2").await.unwrap() };
    fx2.ingest(&json!({"event_no": 90072, "resource": {"mall_id": "flaky", "order_id": ids.join(",")}}), "flaky-2")
        .await;
    let d2 = fx2.dispatcher_with(Flaky {
        inner: SqsQueue::new(fx2.env.sqs.clone(), fx2.env.stack.work.url.clone()),
        fail_calls: AtomicUsize::new(1000),
        fail_every: 2,
    });
    let e = esm(&fx2, &fx2.env.stack.inbox.url, &fx2.env.stack.inbox.arn);
    let h = |event: Value| {
        let d2 = &d2;
        invoke("dispatcher", event, move |ev| d2.handle_batch(ev, || Duration::from_secs(30)))
    };
    let r = e.poll_once(&h).await.unwrap();
    assert_eq!((r.received, r.deleted, r.returned), (1, 0, 1), "returned for a retry, not acknowledged");
    assert_eq!(fx2.env.depth(&fx2.env.stack.inbox.url).await.unwrap(), 1, "the webhook is still on the inbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_deleted_drops_queued_work_and_removes_tokens() {
    let fx = Fx::new("d-uninstall").await;
    let mall = fx.install("leaving").await;
    let orders = fx.orders("leaving");
    for (i, o) in orders.iter().take(10).enumerate() {
        fx.ingest(&json!({"event_no": 90023, "resource": {"mall_id": "leaving", "order_id": o}}), &format!("o-{i}"))
            .await;
    }
    fx.sim.uninstall("leaving", "relay-client");
    fx.ingest(&json!({"event_no": 90077, "resource": {"mall_id": "leaving", "client_id": "relay-client"}}), "bye")
        .await;
    let d = fx.dispatcher();
    run_dispatcher(&fx, &d).await;
    assert_eq!(d.stats.uninstalled.load(Ordering::Relaxed), 1);
    assert_eq!(fx.env.depth(&fx.env.stack.work.url).await.unwrap(), 10, "the work was queued before the uninstall");
    let rec = fx.tokens().get(&mall).await.unwrap().unwrap();
    assert_eq!(rec.status, TokenStatus::Uninstalled);
    assert!(rec.pair.access_token.is_empty() && rec.pair.refresh_token.is_empty(), "tokens gone");

    let w = fx.worker();
    let e = esm(&fx, &fx.env.stack.work.url, &fx.env.stack.work.arn);
    let h = |event: Value| {
        let w = &w;
        invoke("worker", event, move |ev| w.handle_batch(ev, || Duration::from_secs(60)))
    };
    e.run_until_idle(&h, 2).await.unwrap();
    assert_eq!(w.stats.dropped.load(Ordering::Relaxed), 10, "all queued work dropped");
    assert_eq!(fx.sim.stats("leaving").calls, 0, "no Cafe24 call for the uninstalled mall");
    assert_eq!(fx.env.depth(&fx.env.stack.work.url).await.unwrap(), 0);
}

/// A warm worker holds the mall's token in its cache (60 s) when the uninstall is applied. The
/// dispatcher's fence on the limiter item reaches it at its next admission: it reads the record
/// again and drops the job without calling Cafe24 with the dead token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninstall_reaches_a_warm_workers_token_cache_before_its_next_call() {
    let fx = Fx::new("d-fence").await;
    fx.install("fenced").await;
    let orders = fx.orders("fenced");
    let d = fx.dispatcher();
    let w = fx.worker();
    let e = esm(&fx, &fx.env.stack.work.url, &fx.env.stack.work.arn);
    let h = |event: Value| {
        let w = &w;
        invoke("worker", event, move |ev| w.handle_batch(ev, || Duration::from_secs(60)))
    };
    let order = |i: usize| json!({"event_no": 90023, "resource": {"mall_id": "fenced", "order_id": orders[i]}});
    fx.ingest(&order(0), "warm").await;
    run_dispatcher(&fx, &d).await;
    e.run_until_idle(&h, 2).await.unwrap();
    let warm = fx.sim.stats("fenced").calls;
    assert_eq!((warm, w.stats.dropped.load(Ordering::Relaxed)), (1, 0), "the worker called once and cached the token");

    fx.sim.uninstall("fenced", "relay-client");
    fx.ingest(&json!({"event_no": 90077, "resource": {"mall_id": "fenced", "client_id": "relay-client"}}), "bye").await;
    fx.ingest(&order(1), "after").await;
    run_dispatcher(&fx, &d).await;
    assert_eq!(d.stats.uninstalled.load(Ordering::Relaxed), 1);
    e.run_until_idle(&h, 2).await.unwrap();
    let after = fx.sim.stats("fenced");
    assert_eq!((after.calls, after.status_403), (warm, 0), "no call with the token cached before the uninstall");
    assert_eq!(w.stats.dropped.load(Ordering::Relaxed), 1, "the job is dropped for the uninstalled mall");
}

/// The merchant deleted the app and reinstalled it; the deletion's 90077 arrives only now (a
/// retry, the inbox backoff, reconciliation's look-back). The newer installation keeps its
/// tokens; an uninstall that is not older than the installation still applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_uninstall_does_not_wipe_a_newer_installation() {
    let fx = Fx::new("d-late-bye").await;
    let mall = fx.install("returning").await; // installed now, after the deletion below
    let an_hour_ago = cafe24_sim::kst::iso_kst(fx.sim.clock.now_ms() - 3_600_000);
    fx.ingest(
        &json!({"event_no": 90077, "resource": {"mall_id": "returning", "deleted_date": an_hour_ago}}),
        "late-bye",
    )
    .await;
    let d = fx.dispatcher();
    run_dispatcher(&fx, &d).await;
    let rec = fx.tokens().get(&mall).await.unwrap().unwrap();
    assert_eq!(rec.status, TokenStatus::Active, "the reinstalled mall keeps working");
    assert!(!rec.pair.refresh_token.is_empty(), "its tokens are kept");
    assert_eq!(d.stats.uninstalled.load(Ordering::Relaxed), 0);

    let later = cafe24_sim::kst::iso_kst(fx.sim.clock.now_ms() + 2_000);
    fx.ingest(&json!({"event_no": 90077, "resource": {"mall_id": "returning", "deleted_date": later}}), "real-bye")
        .await;
    run_dispatcher(&fx, &d).await;
    assert_eq!(
        fx.tokens().get(&mall).await.unwrap().unwrap().status,
        TokenStatus::Uninstalled,
        "a current uninstall applies"
    );
}

#[tokio::test]
async fn scheduled_keep_alive_enqueues_refreshes_and_reports_reauth() {
    let fx = Fx::new("d-keepalive").await;
    let now = fx.sim.clock.now_ms();
    let soon = fx.install("expiring").await;
    let store = fx.tokens();
    let mut rec = store.get(&soon).await.unwrap().unwrap();
    rec.pair.refresh_expires_ms = now + DAY_MS;
    store.put_installed(&soon, &rec.pair, now).await.unwrap();
    fx.install("healthy").await;
    let locked = fx.install("locked").await;
    store.set_status(&locked, TokenStatus::NeedsReauth, now).await.unwrap();
    let d = fx.dispatcher();
    assert_eq!(d.keep_alive(now, || std::time::Duration::from_secs(30)).await.unwrap(), (1, 1));
    assert_eq!(d.keep_alive(now, || std::time::Duration::from_secs(30)).await.unwrap(), (1, 1), "idempotent per day");
    assert_eq!(fx.env.depth(&fx.env.stack.work.url).await.unwrap(), 1, "the same day's job is deduplicated");
    let w = fx.worker();
    let e = esm(&fx, &fx.env.stack.work.url, &fx.env.stack.work.arn);
    let h = |event: Value| {
        let w = &w;
        invoke("worker", event, move |ev| w.handle_batch(ev, || Duration::from_secs(60)))
    };
    e.run_until_idle(&h, 2).await.unwrap();
    assert!(
        store.get(&soon).await.unwrap().unwrap().pair.refresh_expires_ms > now + 13 * DAY_MS,
        "refresh token renewed"
    );
    assert_eq!(fx.sim.stats("expiring").token_issuances, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_webhooks_across_five_malls_end_to_end() {
    // Its own moto process: this test alone saturates one (it is the pace-setter of the suite),
    // and on the shared one every other test would wait behind it.
    let moto = devstack::moto::PrivateMoto::start().await.unwrap();
    let mut fx = Fx::new("d-e2e").await;
    fx.env = TestEnv::on(&moto.url, "d-e2e").await.unwrap();
    let malls = ["alpha", "bravo", "charlie", "delta", "echo"];
    for m in malls {
        fx.install(m).await;
    }
    fx.send_webhooks_to_ingest().await;
    let http = reqwest::Client::new();

    // Per mall (100 events): 74 orders placed, 20 payments on earlier orders (5 of them also resent by Cafe24),
    // 5 shipping changes, and one bulk cancellation over 3 orders.
    let mut sent = 0usize;
    let mut touched: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for m in malls {
        let mut placed = Vec::new();
        for _ in 0..74 {
            let r: Value = http
                .post(format!("{}/sim/malls/{m}/orders", fx.base))
                .json(&json!({"emit_webhook": true}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(r["delivered"], 1, "{r}");
            sent += 1;
        }
        let ids = fx.orders(m);
        for id in ids.iter().rev().take(74) {
            placed.push(id.clone());
        }
        for (i, id) in placed.iter().take(20).enumerate() {
            let r: Value = http
                .post(format!("{}/sim/malls/{m}/orders/{id}/change", fx.base))
                .json(&json!({"paid": true, "emit_event_no": 90025, "duplicate": i < 5}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(r["delivered"].as_u64().unwrap() >= 1);
            sent += 1;
        }
        for id in placed.iter().skip(20).take(5) {
            http.post(format!("{}/sim/malls/{m}/orders/{id}/change", fx.base))
                .json(&json!({"shipping_status": "M", "emit_event_no": 90024}))
                .send()
                .await
                .unwrap();
            sent += 1;
        }
        let bulk: Vec<String> = placed.iter().skip(30).take(3).cloned().collect();
        for id in &bulk {
            http.post(format!("{}/sim/malls/{m}/orders/{id}/change", fx.base))
                .json(&json!({"shipping_status": "C"}))
                .send()
                .await
                .unwrap();
        }
        http.post(format!("{}/sim/webhooks/send", fx.base))
            .json(&json!({"mall": m, "event_no": 90072, "resource": {"order_id": bulk.join(",")}}))
            .send()
            .await
            .unwrap();
        sent += 1;
        touched.insert(m, placed.into_iter().collect());
    }
    assert_eq!(sent, 500, "webhook events sent (plus 25 resends)");

    let d = fx.dispatcher();
    let w = fx.worker();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let inbox = esm(&fx, &fx.env.stack.inbox.url, &fx.env.stack.inbox.arn);
    let work = esm(&fx, &fx.env.stack.work.url, &fx.env.stack.work.arn);
    let dh = |event: Value| {
        let d = &d;
        invoke("dispatcher", event, move |ev| d.handle_batch(ev, || Duration::from_secs(30)))
    };
    let wh = |event: Value| {
        let w = &w;
        invoke("worker", event, move |ev| w.handle_batch(ev, || Duration::from_secs(60)))
    };
    let state = DynamoState::new(fx.env.ddb.clone(), fx.env.stack.state_table.clone());
    let current = |m: &str, id: &str| fx.sim.order_json(m, 1, id);
    let pollers = async {
        let a = async {
            while !stop.load(Ordering::Relaxed) {
                if inbox.poll_once(&dh).await.unwrap().received == 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let b = async {
            while !stop.load(Ordering::Relaxed) {
                if work.poll_once(&wh).await.unwrap().received == 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let watch = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let idle = fx.env.depth(&fx.env.stack.inbox.url).await.unwrap() == 0
                    && fx.env.depth(&fx.env.stack.work.url).await.unwrap() == 0;
                if idle || started.elapsed() > Duration::from_secs(300) {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
            }
        };
        futures::future::join3(a, b, watch).await;
    };
    pollers.await;
    let elapsed = started.elapsed();

    let mut missing = 0;
    let mut stale = 0;
    let mut expected = 0;
    for (m, ids) in &touched {
        let mall = MallId::parse(m).unwrap();
        for id in ids {
            expected += 1;
            match state.snapshot(&mall, SnapshotKind::Order, id).await.unwrap() {
                Some((_, Some(data))) => {
                    if Some(data) != current(m, id) {
                        stale += 1;
                    }
                }
                _ => missing += 1,
            }
        }
    }
    let calls: u64 = malls.iter().map(|m| fx.sim.stats(m).endpoints.get("orders/{id}").map_or(0, |e| e.calls)).sum();
    let r429: u64 = malls.iter().map(|m| fx.sim.stats(m).status_429).sum();
    println!(
        "e2e: {sent} webhooks → {} jobs; {expected} orders expected, {missing} missing, {stale} stale; {calls} calls, {r429} 429s, \
         coalesced {}, duplicates {}, {:.1} s",
        d.stats.jobs.load(Ordering::Relaxed),
        w.stats.coalesced.load(Ordering::Relaxed),
        w.stats.duplicates.load(Ordering::Relaxed),
        elapsed.as_secs_f64()
    );
    assert_eq!((missing, stale), (0, 0), "every expected snapshot present and current");
    assert_eq!(r429, 0, "zero 429s at the simulator");
    assert!(calls <= d.stats.jobs.load(Ordering::Relaxed), "no job executed twice");
    assert_eq!(w.stats.synced.load(Ordering::Relaxed), calls, "every call was a distinct job's");
    assert_eq!(fx.env.depth(&fx.env.stack.work.dlq_url).await.unwrap(), 0);
}

#[tokio::test]
async fn a_deferred_webhook_comes_back_after_its_delay_not_the_inbox_visibility_timeout() {
    let fx = Fx::new("d-defer").await;
    fx.ingest(&json!({"event_no": 90023, "resource": {"mall_id": "outage", "order_id": "20261201-0000001"}}), "o-1")
        .await;
    let recovered = Instant::now() + Duration::from_secs(3);
    let d = fx.dispatcher_with(DownUntil {
        inner: SqsQueue::new(fx.env.sqs.clone(), fx.env.stack.work.url.clone()),
        until: recovered,
    });
    let e = esm(&fx, &fx.env.stack.inbox.url, &fx.env.stack.inbox.arn);
    let h = |event: Value| {
        let d = &d;
        invoke("dispatcher", event, move |ev| d.handle_batch(ev, || Duration::from_secs(30)))
    };
    // Poll like the event source mapping until the webhook was dispatched. The inbox's
    // visibility timeout is 180 s: a deferral that is not applied costs that much.
    let guard = Instant::now() + Duration::from_secs(200);
    let mut returned = 0;
    while d.stats.routed.load(Ordering::Relaxed) == 0 && Instant::now() < guard {
        let r = e.poll_once(&h).await.unwrap();
        returned += r.returned;
        if r.received == 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let after_recovery = Instant::now().saturating_duration_since(recovered);
    println!("dispatched {after_recovery:?} after the work queue recovered; {returned} returns before");
    assert_eq!(d.stats.routed.load(Ordering::Relaxed), 1, "the webhook was never dispatched");
    assert!(returned >= 1, "the outage really deferred it");
    // The deferral is 2 s; anything near 180 s means the visibility change was not applied.
    assert!(after_recovery < Duration::from_secs(60), "dispatched {after_recovery:?} after recovery");
    assert_eq!(work_jobs(&fx).await.len(), 1);
}

#[tokio::test]
async fn a_large_webhook_that_must_be_parked_is_parked_unchanged_not_returned_to_the_inbox() {
    let fx = Fx::new("d-bigpark").await;
    // An order event without an order id (the dispatcher parks it), near the ingest cap, whose
    // padding is full of escaped quotes: re-escaping the envelope would double it.
    let padding = "\"".repeat(120_000);
    let body = json!({"event_no": 90023, "resource": {"mall_id": "bigpark", "note": padding}});
    assert!(body.to_string().len() > 240_000);
    fx.ingest(&body, "big-1").await;
    let on_inbox = fx.env.peek_all(&fx.env.stack.inbox.url).await.unwrap();
    let envelope = on_inbox[0].body().unwrap().to_owned();
    fx.env
        .sqs
        .change_message_visibility()
        .queue_url(&fx.env.stack.inbox.url)
        .receipt_handle(on_inbox[0].receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let d = fx.dispatcher();
    let r = run_dispatcher(&fx, &d).await;
    assert_eq!(d.stats.parked.load(Ordering::Relaxed), 1, "{r:?}");
    assert_eq!(r.deleted, 1, "acknowledged only once parked: {r:?}");
    assert_eq!(fx.env.depth(&fx.env.stack.inbox.url).await.unwrap(), 0, "nothing returned to the inbox");
    let parked = fx.env.peek_all(&fx.env.stack.inbox.dlq_url).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].body().unwrap(), envelope, "parked as is");
    let group = parked[0]
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId))
        .cloned();
    assert_eq!(group.as_deref(), Some("_parked.no_target_id"));
}
