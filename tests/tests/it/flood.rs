//! A flood on the public ingest URL while real webhooks arrive, on the strict local event source
//! mapping with concurrency pools laid out as `infra/template.yaml` lays them out: a function
//! with `ReservedConcurrentExecutions` gets its own pool, the others share one small "account"
//! pool. With the consumers' concurrency reserved, throttling never reaches them and no webhook
//! is dead-lettered; with a shared pool the flood starves the dispatcher, every throttled poll
//! counts a receive, and webhooks end in the inbox DLQ.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use devstack::esm::{invoke, ConcurrencyPool, EsmConfig, LocalEsm};
use devstack::resources::{create_fifo_pair, FifoSpec};
use dispatcher::{Dispatcher, DispatcherConfig};
use relay_aws::sqs::SqsQueue;
use relay_tests::pipeline::Pipeline;
use relay_tests::*;
use serde_json::{json, Value};
use webhook_ingest::{Ingest, IngestConfig};

fn template() -> serde_yaml::Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// An ingest invocation on `pool`: 429 when throttled (as a Function URL answers), else the
/// handler's answer. The slot is held at least 5 ms, a Lambda invocation's own overhead.
async fn call(pool: &ConcurrencyPool, ingest: &Ingest<SqsQueue>, key: &str, body: &[u8], trace: &str) -> u16 {
    let Some(_slot) = pool.try_invoke() else { return 429 };
    let ev = http_event(
        Shape::FunctionUrl,
        "POST",
        "/webhooks/cafe24",
        &[("X-API-Key", key), ("X-Trace-ID", trace)],
        body,
        false,
    );
    let status = ingest.handle(to_request(&ev)).await.status().as_u16();
    tokio::time::sleep(Duration::from_millis(5)).await;
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_on_ingest_dead_letters_no_webhook_and_every_one_is_processed() {
    let t = template();
    let reserved = |f: &str| t["Resources"][f]["Properties"].get("ReservedConcurrentExecutions").is_some();
    let account = ConcurrencyPool::new(4);
    let pool = |f: &str, own: usize| if reserved(f) { ConcurrencyPool::new(own) } else { account.clone() };
    let (ingest_pool, dispatch_pool, work_pool) =
        (pool("WebhookIngestFunction", 2), pool("DispatcherFunction", 2), pool("WorkerFunction", 2));
    let max_receives = t["Resources"]["InboxQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"].as_u64().unwrap();

    let fx = Pipeline::new("flood").await;
    let malls = ["floodone", "floodtwo"];
    for m in malls {
        fx.install(m).await;
    }
    // The template's inbox, with a 2 s visibility so throttled polls come back within the test.
    let inbox = create_fifo_pair(
        &fx.env.sqs,
        &FifoSpec {
            name: format!("{}finbox", devstack::unique_prefix("flood")),
            visibility_timeout_s: 2,
            max_receive_count: max_receives as u32,
        },
    )
    .await
    .unwrap();
    let lookup = |k: &str| match k {
        "INBOX_QUEUE_URL" => Some(inbox.url.clone()),
        "PARKING_QUEUE_URL" => Some(inbox.dlq_url.clone()),
        "WEBHOOK_API_KEY" => Some(KEY.to_owned()),
        _ => fx.env_var(k),
    };
    let icfg = IngestConfig::from_lookup(lookup).unwrap();
    let ingest = Ingest::new(
        &icfg,
        SqsQueue::new(fx.env.sqs.clone(), inbox.url.clone()),
        SqsQueue::new(fx.env.sqs.clone(), inbox.dlq_url.clone()),
    );
    let d = Dispatcher::on_aws(&fx.env.clients, DispatcherConfig::from_lookup(lookup).unwrap());
    let w = fx.worker();
    let esm = |url: &str, arn: &str, pool: &ConcurrencyPool| {
        LocalEsm::new(
            fx.env.sqs.clone(),
            EsmConfig { wait_time_seconds: 0, pool: Some(pool.clone()), ..EsmConfig::new(url, arn) },
        )
    };
    let (inbox_esm, work_esm) =
        (esm(&inbox.url, &inbox.arn, &dispatch_pool), esm(&fx.env.stack.work.url, &fx.env.stack.work.arn, &work_pool));
    let dh = |event: Value| invoke("dispatcher", event, |ev| d.handle_batch(ev, devstack::esm::time_left));
    let wh = |event: Value| invoke("worker", event, |ev| w.handle_batch(ev, devstack::esm::time_left));

    let stop = AtomicBool::new(false);
    let flood_calls = AtomicU64::new(0);
    let flood = (0..16).map(|i| {
        let (stop, flood_calls, ingest, ingest_pool) = (&stop, &flood_calls, &ingest, &ingest_pool);
        async move {
            while !stop.load(Ordering::Relaxed) {
                call(ingest_pool, ingest, "not-the-key", b"{}", &format!("flood-{i}")).await;
                flood_calls.fetch_add(1, Ordering::Relaxed);
                // 16 callers each back within ~1 ms keep every slot of a small pool taken.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let orders: Vec<(String, String)> =
        malls.iter().flat_map(|m| fx.orders(m).into_iter().take(5).map(move |o| (m.to_string(), o))).collect();
    let senders = orders.iter().enumerate().map(|(i, (m, o))| {
        let (ingest, ingest_pool) = (&ingest, &ingest_pool);
        async move {
            let body = json!({"event_no": 90023, "resource": {"mall_id": m, "order_id": o}}).to_string();
            // Cafe24 retries until it gets a 2xx.
            while call(ingest_pool, ingest, KEY, body.as_bytes(), &format!("real-{i}")).await != 200 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let consumers = async {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut dispatch_throttled = 0;
        loop {
            let r = inbox_esm.poll_once(&dh).await.unwrap();
            dispatch_throttled += r.throttled;
            let r2 = work_esm.poll_once(&wh).await.unwrap();
            let done = w.stats.synced.load(Ordering::Relaxed) + w.stats.coalesced.load(Ordering::Relaxed);
            let dead = fx.env.depth(&inbox.dlq_url).await.unwrap();
            if done >= orders.len() as u64 || dead > 0 || Instant::now() > deadline {
                stop.store(true, Ordering::Relaxed);
                return (done, dead, dispatch_throttled);
            }
            if r.received + r2.received == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let (_, (), (done, dead, dispatch_throttled)) = tokio::join!(
        futures::future::join_all(flood),
        async {
            futures::future::join_all(senders).await;
        },
        consumers
    );
    println!(
        "flood: {} unauthenticated calls, ingest throttled {}, dispatcher throttled {dispatch_throttled}, \
         jobs done {done}/{}, inbox DLQ {dead}",
        flood_calls.load(Ordering::Relaxed),
        ingest_pool.throttled(),
        orders.len()
    );
    assert_eq!(dead, 0, "webhooks dead-lettered by throttling alone");
    assert_eq!(done, orders.len() as u64, "every webhook processed");
    assert_eq!(fx.env.depth(&fx.env.stack.work.dlq_url).await.unwrap(), 0);
    assert_eq!(dispatch_throttled, 0, "the dispatcher was never throttled");
}
