//! Delivery of webhooks to the app, without moto (in-memory ports): every authentic,
//! identified webhook reaches the bus as `webhook.received` before its inbox message is
//! acknowledged — routed to jobs, forwarded (billing, expiry, unknown numbers) or uninstalling —
//! and nothing parked or explicitly ignored is published.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsBatchResponse;
use relay_domain::ports::memory::{MemoryBus, MemoryQueue, MemoryVisibility};
use relay_domain::{classify, DedupId, InboxEnvelope, TraceId};
use serde_json::Value;

use crate::common::D;

fn dispatcher(overrides: &str) -> (D, MemoryQueue, MemoryBus, MemoryVisibility) {
    let (d, p) = crate::common::dispatcher(overrides);
    (d, p.work, p.bus, p.visibility)
}

fn envelope(body: &str, trace: &str) -> String {
    let (_, c) = classify(body.as_bytes()).unwrap();
    let env = InboxEnvelope::new(
        TraceId::from_header(trace).unwrap(),
        DedupId::for_webhook(Some(trace), body.as_bytes()),
        1_000,
        &c,
        body.as_bytes(),
    )
    .unwrap();
    serde_json::to_string(&env).unwrap()
}

async fn run(d: &D, bodies: &[String]) -> SqsBatchResponse {
    d.handle_batch(crate::common::batch(bodies), || Duration::from_secs(30)).await
}

fn details(bus: &MemoryBus) -> Vec<(String, Value)> {
    bus.events().into_iter().map(|e| (e.detail_type, serde_json::from_str(&e.detail).unwrap())).collect()
}

const ORDER: &str = r#"{"event_no":90023,"resource":{"mall_id":"shop","order_id":"20260101-0000001"}}"#;
const BILLING: &str = r#"{"event_no":90157,"resource":{"mall_id":"shop","amount":"1000"}}"#;
const EXPIRED: &str = r#"{"event_no":90078,"resource":{"mall_id":"shop"}}"#;
const UNKNOWN: &str = r#"{"event_no":99999,"resource":{"mall_id":"shop"}}"#;
const NO_MALL: &str = r#"{"event_no":90023,"resource":{"order_id":"1"}}"#;

#[tokio::test]
async fn every_identified_webhook_is_published_with_its_body_and_the_parked_are_not() {
    let (d, work, bus, _) = dispatcher("");
    let bodies: Vec<String> = [ORDER, BILLING, EXPIRED, UNKNOWN, NO_MALL]
        .iter()
        .enumerate()
        .map(|(i, b)| envelope(b, &format!("t{i}")))
        .collect();
    let r = run(&d, &bodies).await;
    assert!(r.batch_item_failures.is_empty());
    let got = details(&bus);
    assert!(got.iter().all(|(t, _)| t == "webhook.received"));
    let nos: Vec<u64> = got.iter().map(|(_, d)| d["event_no"].as_u64().unwrap()).collect();
    assert_eq!(nos, [90023, 90157, 90078, 99999], "the parked webhook (no mall) is not published");
    assert_eq!(got[1].1["payload"]["resource"]["amount"], "1000", "the body as Cafe24 sent it");
    assert_eq!(work.messages().len(), 1, "only the order event makes a job");
}

#[tokio::test]
async fn the_fast_path_publishes_every_routed_webhook_of_the_batch() {
    let (d, work, bus, _) = dispatcher("");
    let bodies: Vec<String> =
        (0..5).map(|i| envelope(&ORDER.replace("0000001", &format!("000000{i}")), &format!("t{i}"))).collect();
    assert!(run(&d, &bodies).await.batch_item_failures.is_empty());
    assert_eq!((work.messages().len(), bus.events().len()), (5, 5));
}

#[tokio::test]
async fn a_bus_refusal_returns_the_webhook_and_the_retry_publishes_the_same_event() {
    let (d, work, bus, vis) = dispatcher("");
    let bodies = vec![envelope(ORDER, "t1"), envelope(BILLING, "t2")];
    bus.set_failing(true);
    let r = run(&d, &bodies).await;
    assert_eq!(r.batch_item_failures.len(), 2, "nothing acknowledged while the bus refuses");
    assert_eq!(vis.changes().len(), 2, "returned with a retry delay, not hot");
    bus.set_failing(false);
    assert!(run(&d, &bodies).await.batch_item_failures.is_empty());
    let ids: Vec<String> = bus.events().into_iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 2);
    // A fresh dispatcher derives the same ids from the same envelopes.
    let d2 = dispatcher("");
    run(&d2.0, &bodies).await;
    let ids2: Vec<String> = d2.2.events().into_iter().map(|e| e.event_id).collect();
    assert_eq!(ids, ids2, "event ids are stable across redeliveries");
    // The jobs sent before the refusal carry the same deduplication ids as the retry's.
    let dedup: std::collections::BTreeSet<String> =
        work.messages().iter().map(|m| m.dedup_id.as_str().to_owned()).collect();
    assert_eq!(dedup.len(), 1);
}

#[tokio::test]
async fn an_uninstall_is_published_as_the_webhook_and_mall_uninstalled() {
    let (d, _, bus, _) = dispatcher("");
    let r = run(&d, &[envelope(r#"{"event_no":90077,"resource":{"mall_id":"shop"}}"#, "t9")]).await;
    assert!(r.batch_item_failures.is_empty());
    let types: Vec<String> = details(&bus).into_iter().map(|(t, _)| t).collect();
    assert_eq!(types, ["webhook.received", "mall.uninstalled"]);
}

#[tokio::test]
async fn forward_and_ignore_overrides() {
    let (d, work, bus, _) = dispatcher(r#"{"90023":"forward","90157":"ignore"}"#);
    assert!(run(&d, &[envelope(ORDER, "t1"), envelope(BILLING, "t2")]).await.batch_item_failures.is_empty());
    assert!(work.messages().is_empty(), "forward makes no Cafe24 call");
    let nos: Vec<u64> = details(&bus).iter().map(|(_, d)| d["event_no"].as_u64().unwrap()).collect();
    assert_eq!(nos, [90023], "ignore is an explicit opt-out of delivery");
}
