//! The worker's outcome table without moto: the ports are the in-memory fakes of
//! `relay-domain` (`test-util`), Cafe24 is the simulator in-process. One test per row: what a
//! Cafe24 answer or a store state becomes (done, deferred, retried, dead-lettered) and what it
//! leaves behind. Runs in well under a second.

use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use cafe24_sim::state::{Fault, FaultKind, ALL_READ_SCOPES};
use relay_domain::delivery::snapshot_event_id;
use relay_domain::jobs::{Job, JobKind};
use relay_domain::ports::memory::MemoryGate;
use relay_domain::ports::{RateGate, StoreError};
use relay_domain::ratelimit::{Acquire, Class, Feedback};
use relay_domain::tokens::{TokenPair, TokenStatus, TokenStore};
use relay_domain::SnapshotKind;

use crate::common::*;

#[tokio::test]
async fn ok_syncs_the_snapshot_and_completes() {
    let fx = Fx::new().await;
    let (w, order) = (fx.worker(), fx.order());
    let r =
        run(&w, &serde_json::to_string(&fx.job("j1", JobKind::SyncOrder { order_id: order.clone() })).unwrap()).await;
    assert!(!returned(&r));
    assert!(fx.state.stored(&fx.mall, SnapshotKind::Order, &order).unwrap().1.is_some());
    assert!(!fx.state.claimed("j1"), "no idempotency record: the snapshot is it");
    assert_eq!(fx.state.stored_by(&fx.mall, SnapshotKind::Order, &order).as_deref(), Some("j1"));
    assert_eq!(fx.gate.feedback_seen(), 1, "Cafe24's headers fed back");
    // Delivered: one order.synced for the stored version, carrying the data.
    let (version, data) = fx.state.stored(&fx.mall, SnapshotKind::Order, &order).unwrap();
    let events = fx.bus.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].detail_type, "order.synced");
    assert_eq!(events[0].event_id, snapshot_event_id(&fx.mall, SnapshotKind::Order, &order, version));
    let detail: serde_json::Value = serde_json::from_str(&events[0].detail).unwrap();
    assert_eq!((detail["version"].as_u64(), Some(&detail["data"])), (Some(version), data.as_ref()));
}

#[tokio::test]
async fn a_bus_refusal_keeps_the_version_in_the_outbox_and_the_redelivery_publishes_it_without_a_second_call() {
    let fx = Fx::new().await;
    let (w, order) = (fx.worker(), fx.order());
    let body = serde_json::to_string(&fx.job("jp", JobKind::SyncOrder { order_id: order.clone() })).unwrap();
    fx.bus.refuse_next(1);
    let r = run(&w, &body).await;
    assert!(returned(&r), "not acknowledged while the event is not on the bus");
    assert_eq!(w.stats.failures.load(Ordering::Relaxed), 0, "not an attempt");
    assert_eq!(w.stats.publish_failed.load(Ordering::Relaxed), 1);
    assert_eq!(fx.vis.changes(), vec![("rh1".to_owned(), 5)], "comes back after DEFER_MIN_S × receives");
    assert_eq!(fx.state.stored_by(&fx.mall, SnapshotKind::Order, &order).as_deref(), Some("jp"), "stored by the job");
    assert!(fx.bus.events().is_empty());
    let r = run_receive(&w, &body, 2).await; // the redelivery, bus healthy again
    assert!(!returned(&r));
    assert_eq!(fx.calls(), 1, "published from the store, Cafe24 not called again");
    let version = fx.state.stored(&fx.mall, SnapshotKind::Order, &order).unwrap().0;
    let ids: Vec<String> = fx.bus.events().into_iter().map(|e| e.event_id).collect();
    assert_eq!(ids, [snapshot_event_id(&fx.mall, SnapshotKind::Order, &order, version)]);
    assert_eq!(w.stats.duplicates.load(Ordering::Relaxed), 1, "the job found its own version stored");
}

#[tokio::test]
async fn with_the_bus_down_jobs_wait_and_nothing_is_lost() {
    let fx = Fx::new().await;
    let (w, order) = (fx.worker(), fx.order());
    let body = serde_json::to_string(&fx.job("jd", JobKind::SyncOrder { order_id: order.clone() })).unwrap();
    fx.bus.set_failing(true);
    for receive in 1..=3 {
        assert!(returned(&run_receive(&w, &body, receive).await));
    }
    assert_eq!((fx.calls(), w.stats.failures.load(Ordering::Relaxed)), (1, 0));
    assert!(fx.dlq.messages().is_empty());
    fx.bus.set_failing(false);
    assert!(!returned(&run_receive(&w, &body, 4).await));
    assert_eq!(fx.bus.events().len(), 1);
}

#[tokio::test]
async fn a_long_limiter_wait_defers_by_visibility_without_calling_or_counting_an_attempt() {
    let fx = Fx::new().await;
    let w = fx.worker();
    fx.gate.script([Acquire::Wait(12_000)]);
    let r = run(&w, &serde_json::to_string(&fx.job("j2", JobKind::SyncOrder { order_id: fx.order() })).unwrap()).await;
    assert!(returned(&r));
    assert_eq!(fx.vis.changes(), vec![("rh1".to_owned(), 12)]);
    assert_eq!((fx.calls(), w.stats.failures.load(Ordering::Relaxed)), (0, 0));
    assert!(!fx.state.claimed("j2"), "the claim is released for the next delivery");
}

#[tokio::test]
async fn a_job_deferred_here_and_received_next_by_this_process_skips_its_head_read() {
    let fx = Fx::new().await;
    let w = fx.worker();
    let body = serde_json::to_string(&fx.job("j60", JobKind::SyncOrder { order_id: fx.order() })).unwrap();
    fx.gate.script([Acquire::Wait(12_000)]);
    assert!(returned(&run(&w, &body).await), "deferred before any call");
    let reads = fx.state.head_reads();
    // The next receive: nobody else had it in between, and its run stored nothing.
    let r = run_receive(&w, &body, 2).await;
    assert!(!returned(&r));
    assert_eq!((fx.state.head_reads(), fx.calls(), w.stats.synced.load(Ordering::Relaxed)), (reads, 1, 1));
    assert_eq!(w.stats.head_reads_skipped.load(Ordering::Relaxed), 1);
    // Deferred again, but the next receive this process sees is the one after another
    // consumer's (count 4, not 3): that consumer may have stored it, so the head is read.
    let other = {
        let mut g = fx.sim.lock();
        fx.sim.mall(&mut g, "shop").data.orders.keys().nth(1).cloned().unwrap()
    };
    let body = serde_json::to_string(&fx.job("j61", JobKind::SyncOrder { order_id: other })).unwrap();
    fx.gate.script([Acquire::Wait(12_000)]);
    assert!(returned(&run_receive(&w, &body, 2).await), "deferred before any call");
    let reads = fx.state.head_reads();
    assert!(!returned(&run_receive(&w, &body, 4).await));
    assert_eq!((fx.state.head_reads(), fx.calls()), (reads + 1, 2));
    assert_eq!(w.stats.head_reads_skipped.load(Ordering::Relaxed), 1);
    // What is noted is the message: another message of the same job (a re-send, which may have
    // stored its version elsewhere) at the next count reads the head.
    let third = {
        let mut g = fx.sim.lock();
        fx.sim.mall(&mut g, "shop").data.orders.keys().nth(2).cloned().unwrap()
    };
    let body = fx.sync_order("j62", &third);
    fx.gate.script([Acquire::Wait(12_000)]);
    assert!(returned(&w.handle_batch(one_message("m-a", &body, 1), || Duration::from_secs(60)).await));
    let reads = fx.state.head_reads();
    assert!(!returned(&w.handle_batch(one_message("m-b", &body, 2), || Duration::from_secs(60)).await));
    assert_eq!((fx.state.head_reads(), w.stats.head_reads_skipped.load(Ordering::Relaxed)), (reads + 1, 1));
}

/// A batch of two records of group `shop`, each on its given receive.
fn two_records(first: (&str, u32), second: (&str, u32)) -> SqsEvent {
    let rec = |rh: &str, (body, receive): (&str, u32)| {
        serde_json::json!({
            "messageId": message_id(body), "receiptHandle": rh, "body": body,
            "attributes": {"MessageGroupId": "shop", "ApproximateReceiveCount": receive.to_string()},
            "messageAttributes": {}, "eventSource": "aws:sqs"
        })
    };
    serde_json::from_value(serde_json::json!({"Records": [rec("rh1", first), rec("rh2", second)]})).unwrap()
}

#[tokio::test]
async fn a_job_returned_unstarted_here_and_received_next_by_this_process_coalesces_without_a_read() {
    let fx = Fx::new().await;
    let w = fx.worker();
    let (order, other) = fx.two_orders();
    let sync = |id: &str, o: &str| fx.sync_order(id, o);
    run(&w, &sync("j80", &order)).await;
    let reads = fx.state.head_reads();
    let batch = |first: u32, second: (&str, u32)| {
        fx.gate.script([Acquire::Wait(12_000)]);
        w.handle_batch(two_records((&sync("j81", &other), first), second), || Duration::from_secs(60))
    };
    // j82 (an event the stored version covers) waits behind j81, which is deferred: j82 never
    // starts. Its next receive here is as good as its first: coalesced from what is known.
    let r = batch(1, (&sync("j82", &order), 1)).await;
    assert_eq!(r.batch_item_failures.len(), 2, "both come back");
    let after_batch = fx.state.head_reads();
    assert_eq!(after_batch, reads + 1, "only j81 read its head");
    run_receive(&w, &sync("j82", &order), 2).await;
    assert_eq!(fx.state.head_reads(), after_batch, "no read for j82");
    assert_eq!(w.stats.coalesced_unread.load(Ordering::Relaxed), 1);
    // Returned unstarted on a redelivery nobody here saw before: an earlier run elsewhere may
    // have stored its version, so the next receive reads the head.
    batch(2, (&sync("j83", &order), 2)).await;
    let before = fx.state.head_reads();
    run_receive(&w, &sync("j83", &order), 3).await;
    assert_eq!(fx.state.head_reads(), before + 1, "j83 reads its head");
    // Returned unstarted on its first receive, but someone else had the receive in between.
    batch(3, (&sync("j84", &order), 1)).await;
    let before = fx.state.head_reads();
    run_receive(&w, &sync("j84", &order), 3).await;
    assert_eq!(fx.state.head_reads(), before + 1, "j84 reads its head");
    assert_eq!((w.stats.coalesced_unread.load(Ordering::Relaxed), fx.calls()), (1, 1));
}

#[tokio::test]
async fn a_job_the_limiter_would_defer_is_deferred_before_its_head_read_and_read_once_when_it_runs() {
    let fx = Fx::new().await;
    let w = fx.worker();
    let (order, other) = fx.two_orders();
    let sync = |id: &str, o: &str| fx.sync_order(id, o);
    let reads = fx.state.head_reads();
    // What this process last saw of the mall's limiter: no credit for 12 s.
    fx.gate.set_known_wait(Some(12_000));
    assert!(returned(&run(&w, &sync("j90", &order)).await));
    assert_eq!(fx.vis.changes(), vec![("rh1".to_owned(), 12)]);
    assert_eq!((fx.state.head_reads(), fx.calls(), w.stats.failures.load(Ordering::Relaxed)), (reads, 0, 0));
    assert_eq!(w.stats.deferred_unread.load(Ordering::Relaxed), 1);
    // Credit again: the next receive reads the head once (nothing was read before) and calls.
    fx.gate.set_known_wait(None);
    assert!(!returned(&run_receive(&w, &sync("j90", &order), 2).await));
    assert_eq!((fx.state.head_reads(), fx.calls()), (reads + 1, 1));
    // A wait short enough to sleep is no reason to defer.
    fx.gate.set_known_wait(Some(50));
    assert!(!returned(&run(&w, &sync("j91", &other)).await));
    assert_eq!((fx.state.head_reads(), fx.calls()), (reads + 2, 2));
    // A redelivery nobody here saw reads its head first (it may find its own version, stored
    // by an earlier run, to publish without credit); the limiter then defers the call.
    fx.gate.set_known_wait(Some(12_000));
    fx.gate.script([Acquire::Wait(12_000)]);
    let late = Job {
        event_received_ms: fx.sim.clock.now_ms() + 60_000,
        ..fx.job("j92", JobKind::SyncOrder { order_id: order.clone() })
    };
    assert!(returned(&run_receive(&w, &serde_json::to_string(&late).unwrap(), 3).await));
    assert_eq!((fx.state.head_reads(), fx.calls()), (reads + 3, 2));
    assert_eq!(w.stats.deferred_unread.load(Ordering::Relaxed), 1);
}

/// [`MemoryGate`] whose first `acquire` reaches it late: it answers after `delay`, from the
/// script as it stands then (a job whose head read was slower than a later job's). Like the
/// DynamoDB limiter's cache, it knows the last wait it answered.
struct LateFirstAsk {
    inner: MemoryGate,
    delay: Duration,
    asked: std::sync::atomic::AtomicBool,
    refused: std::sync::Mutex<Option<u64>>,
}

impl LateFirstAsk {
    fn new(inner: MemoryGate, delay: Duration) -> Self {
        Self { inner, delay, asked: false.into(), refused: None.into() }
    }
}

impl RateGate for LateFirstAsk {
    async fn acquire_within(&self, key: &str, class: Class, cap: Option<u32>) -> Result<Acquire, StoreError> {
        if !self.asked.swap(true, Ordering::SeqCst) {
            tokio::time::sleep(self.delay).await;
        }
        let answer = self.inner.acquire_within(key, class, cap).await;
        if let Ok(Acquire::Wait(ms)) = answer {
            *self.refused.lock().unwrap() = Some(ms);
        }
        answer
    }

    async fn feedback(&self, key: &str, fb: &Feedback) -> Result<(), StoreError> {
        self.inner.feedback(key, fb).await
    }

    fn known_wait(&self, _: &str, _: Class) -> Option<u64> {
        *self.refused.lock().unwrap()
    }
}

#[tokio::test]
async fn overlapping_jobs_get_credit_in_their_group_order_so_none_is_returned_after_its_call() {
    let fx = Fx::new().await;
    let (first, second) = fx.two_orders();
    let inner = MemoryGate::default();
    // One call's credit, then none for 12 s.
    inner.script([Acquire::Admitted, Acquire::Wait(12_000)]);
    let gate = LateFirstAsk::new(inner, Duration::from_millis(100));
    let w = fx.worker_on(gate, 2);
    let batch = two_records((&fx.sync_order("j95", &first), 1), (&fx.sync_order("j96", &second), 1));
    let r = w.handle_batch(batch, || Duration::from_secs(60)).await;
    // j95 asks first although it reaches the gate 100 ms after j96 would have: it gets the
    // credit and is done; j96 is deferred before its call and comes back alone.
    let back: Vec<&str> = r.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(back, ["m-j96"]);
    assert_eq!((fx.calls(), fx.bus.events().len()), (1, 1), "one call, one event: nothing to publish again");
    assert_eq!(fx.state.stored(&fx.mall, SnapshotKind::Order, &second), None, "j96 stored nothing");
}

#[tokio::test]
async fn a_job_behind_one_just_refused_is_deferred_without_reading_its_head() {
    let fx = Fx::new().await;
    let (first, second) = fx.two_orders();
    let inner = MemoryGate::default();
    inner.script([Acquire::Wait(12_000), Acquire::Wait(12_000)]);
    // j97's answer comes 100 ms late: time enough for j98 to read its head meanwhile.
    let w = fx.worker_on(LateFirstAsk::new(inner, Duration::from_millis(100)), 2);
    let reads = fx.state.head_reads();
    let batch = two_records((&fx.sync_order("j97", &first), 1), (&fx.sync_order("j98", &second), 1));
    let r = w.handle_batch(batch, || Duration::from_secs(60)).await;
    assert_eq!(r.batch_item_failures.len(), 2, "both come back");
    // j98 waited for j97's answer, and then knew the wait: one head read, for j97.
    assert_eq!((fx.state.head_reads(), fx.calls()), (reads + 1, 0));
    assert_eq!(w.stats.deferred_unread.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_job_that_finished_beside_a_deferred_one_does_nothing_when_it_comes_back_here() {
    let fx = Fx::new().await;
    let (first, second) = fx.two_orders();
    let w = fx.worker_on(fx.gate.clone(), 2);
    // `second` is stored by this process: its next job coalesces without a read.
    w.handle_batch(one_record(&fx.sync_order("j100", &second), 1), || Duration::from_secs(60)).await;
    fx.gate.script([Acquire::Wait(12_000)]);
    let batch = two_records((&fx.sync_order("j101", &first), 1), (&fx.sync_order("j102", &second), 1));
    let r = w.handle_batch(batch, || Duration::from_secs(60)).await;
    // j101 is deferred; j102, already done beside it, comes back with it (FIFO).
    assert_eq!(r.batch_item_failures.len(), 2);
    let (reads, events) = (fx.state.head_reads(), fx.bus.events().len());
    // Its next receive here has nothing left to do: no read, no call, nothing published.
    let r = w.handle_batch(one_record(&fx.sync_order("j102", &second), 2), || Duration::from_secs(60)).await;
    assert!(!returned(&r));
    assert_eq!((fx.state.head_reads(), fx.calls(), fx.bus.events().len()), (reads, 1, events));
    assert_eq!(w.stats.duplicates.load(Ordering::Relaxed), 1);
    // Received by someone else in between: read as any redelivery.
    let batch = two_records((&fx.sync_order("j103", &first), 1), (&fx.sync_order("j104", &second), 1));
    fx.gate.script([Acquire::Wait(12_000)]);
    w.handle_batch(batch, || Duration::from_secs(60)).await;
    let reads = fx.state.head_reads();
    w.handle_batch(one_record(&fx.sync_order("j104", &second), 3), || Duration::from_secs(60)).await;
    assert_eq!(fx.state.head_reads(), reads + 1);
}

#[tokio::test]
async fn the_billed_sleep_is_only_the_time_every_running_job_waited_for_credit() {
    let fx = Fx::new().await;
    let (first, second) = fx.two_orders();
    let w = fx.worker_on(fx.gate.clone(), 2);
    let asleep = || w.stats.asleep_ms.load(Ordering::Relaxed);
    // Alone, a 150 ms limiter sleep holds the invocation for nothing else.
    fx.gate.script([Acquire::Wait(150)]);
    assert!(!returned(&run(&w, &fx.sync_order("j110", &first)).await));
    let alone = asleep();
    assert!((150..300).contains(&alone), "{alone} ms");
    // Beside a job waiting 300 ms for Cafe24's answer, the same sleep is no extra billed time.
    fx.sim.lock().faults.push(Fault {
        mall: Some("shop".into()),
        endpoint: Some("orders".into()),
        kind: FaultKind::Latency { ms: 300 },
        remaining: Some(2),
    });
    fx.gate.script([Acquire::Admitted, Acquire::Wait(150)]);
    // j111's event came after j110's fetch: no coalescing.
    let late = Job {
        event_received_ms: fx.sim.clock.now_ms(),
        ..fx.job("j111", JobKind::SyncOrder { order_id: first.clone() })
    };
    let batch = two_records((&serde_json::to_string(&late).unwrap(), 1), (&fx.sync_order("j112", &second), 1));
    assert!(!returned(&w.handle_batch(batch, || Duration::from_secs(60)).await));
    let slept = w.cafe24.stats.inline_sleep_ms.load(Ordering::Relaxed);
    assert_eq!((fx.calls(), slept), (3, 300), "both sleeps happened");
    assert!(asleep() - alone < 50, "{} ms", asleep() - alone);
}

#[tokio::test]
async fn a_429_defers_and_is_not_an_attempt() {
    let fx = Fx::new().await;
    let w = fx.worker();
    fx.fault("orders", FaultKind::RateLimit);
    let r = run(&w, &serde_json::to_string(&fx.job("j3", JobKind::SyncOrder { order_id: fx.order() })).unwrap()).await;
    assert!(returned(&r));
    assert_eq!(w.stats.deferred.load(Ordering::Relaxed), 1);
    assert_eq!(w.stats.failures.load(Ordering::Relaxed), 0);
    assert!(fx.dlq.messages().is_empty());
}

#[tokio::test]
async fn a_404_writes_a_tombstone() {
    let fx = Fx::new().await;
    let w = fx.worker();
    let r = run(
        &w,
        &serde_json::to_string(&fx.job("j4", JobKind::SyncOrder { order_id: "20990101-0000001".into() })).unwrap(),
    )
    .await;
    assert!(!returned(&r));
    assert_eq!(fx.state.stored(&fx.mall, SnapshotKind::Order, "20990101-0000001").unwrap().1, None, "tombstone");
    assert_eq!(w.stats.tombstoned.load(Ordering::Relaxed), 1);
    let types: Vec<String> = fx.bus.events().into_iter().map(|e| e.detail_type).collect();
    assert_eq!(types, ["order.deleted"]);
}

#[tokio::test]
async fn a_422_is_dead_lettered_after_one_call() {
    let fx = Fx::new().await;
    let w = fx.worker();
    fx.fault("orders", FaultKind::Status { status: 422 });
    let r = run(&w, &serde_json::to_string(&fx.job("j5", JobKind::SyncOrder { order_id: fx.order() })).unwrap()).await;
    assert!(!returned(&r), "handled: the DLQ holds it");
    assert_eq!(dlq_class(&fx.dlq), ["invalid_request"]);
    assert_eq!(fx.calls(), 1);
    assert_eq!(w.stats.dead_lettered.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_5xx_is_a_real_attempt_retried_with_backoff() {
    let fx = Fx::new().await;
    let w = fx.worker();
    fx.fault("orders", FaultKind::Status { status: 503 });
    let r = run(&w, &serde_json::to_string(&fx.job("j6", JobKind::SyncOrder { order_id: fx.order() })).unwrap()).await;
    assert!(returned(&r));
    assert_eq!(w.stats.failures.load(Ordering::Relaxed), 1);
    assert_eq!(fx.vis.changes(), vec![("rh1".to_owned(), 2)], "backoff after the first attempt");
}

#[tokio::test]
async fn an_uninstalled_app_drops_the_job_and_marks_the_mall() {
    let fx = Fx::new().await;
    let w = fx.worker();
    // Cafe24 answers 403 "app deleted" to a token it still accepts.
    {
        let mut g = fx.sim.lock();
        fx.sim.mall(&mut g, "shop").uninstalled.push("relay-client".into());
    }
    let logs = LogBuf::default();
    let _logs = tracing::subscriber::set_default(relay_lambda::telemetry::subscriber("info", logs.clone()));
    let r = run(&w, &serde_json::to_string(&fx.job("j7", JobKind::SyncOrder { order_id: fx.order() })).unwrap()).await;
    assert!(!returned(&r));
    assert_eq!(w.stats.dropped.load(Ordering::Relaxed), 1);
    assert_eq!(fx.tokens.get(&fx.mall).await.unwrap().unwrap().status, TokenStatus::Uninstalled);
    assert!(fx.dlq.messages().is_empty());
    assert_eq!(deciders(&logs), ["cafe24"], "Cafe24's 403 decided this drop");
    // The refusal dropped this process's copy of the token record: the next job reads the
    // record, finds the mall uninstalled and calls nobody.
    let calls = fx.calls();
    run(&w, &serde_json::to_string(&fx.job("j7b", JobKind::SyncOrder { order_id: fx.order() })).unwrap()).await;
    assert_eq!((w.stats.dropped.load(Ordering::Relaxed), fx.calls()), (2, calls));
}

#[tokio::test]
async fn a_mall_needing_reauth_is_dead_lettered_without_a_call() {
    let fx = Fx::new().await;
    let w = fx.worker();
    fx.tokens.set_status(&fx.mall, TokenStatus::NeedsReauth, 1).await.unwrap();
    // The bus refuses first: the app must hear of it before the job is dead-lettered.
    fx.bus.refuse_next(1);
    let body = serde_json::to_string(&fx.job("j8", JobKind::SyncOrder { order_id: fx.order() })).unwrap();
    let r = run(&w, &body).await;
    assert!(returned(&r), "comes back while mall.needs_reauth is not published");
    assert!(fx.dlq.messages().is_empty());
    let r = run(&w, &body).await;
    assert!(!returned(&r));
    assert_eq!(dlq_class(&fx.dlq), ["needs_reauth"]);
    assert_eq!(fx.calls(), 0);
    // A second job of the mall is dead-lettered too, without announcing the same transition again.
    let r = run(&w, &serde_json::to_string(&fx.job("j8b", JobKind::SyncOrder { order_id: fx.order() })).unwrap()).await;
    assert!(!returned(&r));
    assert_eq!(dlq_class(&fx.dlq), ["needs_reauth", "needs_reauth"]);
    let events = fx.bus.events();
    assert_eq!(events.iter().map(|e| e.detail_type.as_str()).collect::<Vec<_>>(), ["mall.needs_reauth"]);
    let detail: serde_json::Value = serde_json::from_str(&events[0].detail).unwrap();
    assert_eq!((detail["mall_id"].as_str(), detail["version"].as_u64()), (Some("shop"), Some(1)));
}

#[tokio::test]
async fn with_the_state_store_down_the_job_is_returned_and_cafe24_not_called() {
    let fx = Fx::new().await;
    let w = fx.worker();
    fx.state.set_failing(true);
    let r = run(&w, &serde_json::to_string(&fx.job("j9", JobKind::SyncOrder { order_id: fx.order() })).unwrap()).await;
    assert!(returned(&r));
    assert_eq!(fx.vis.changes(), vec![("rh1".to_owned(), 5)]);
    assert_eq!((fx.calls(), w.stats.failures.load(Ordering::Relaxed)), (0, 0));
}

#[tokio::test]
async fn a_completed_job_is_not_run_again_and_a_newer_snapshot_coalesces() {
    let fx = Fx::new().await;
    let (w, order) = (fx.worker(), fx.order());
    let body = serde_json::to_string(&fx.job("j10", JobKind::SyncOrder { order_id: order.clone() })).unwrap();
    run(&w, &body).await;
    // The same job in a new message (a re-send after SQS's 5-minute deduplication window).
    run(&w, &body).await;
    assert_eq!(w.stats.duplicates.load(Ordering::Relaxed), 1);
    // Another job for the same order, for an event received before the stored fetch: no call.
    run(&w, &serde_json::to_string(&fx.job("j11", JobKind::SyncOrder { order_id: order.clone() })).unwrap()).await;
    assert_eq!(w.stats.coalesced.load(Ordering::Relaxed), 1);
    assert_eq!(fx.calls(), 1);
    assert_eq!(fx.bus.events().len(), 1, "neither a re-sent job nor a coalesced job publishes again");
    // A redelivery of the message itself cannot tell whether its earlier run's event reached
    // the bus: it publishes the stored version again, with the same event id.
    run_receive(&w, &body, 2).await;
    let version = fx.state.stored(&fx.mall, SnapshotKind::Order, &order).unwrap().0;
    let ids: Vec<String> = fx.bus.events().into_iter().map(|e| e.event_id).collect();
    assert_eq!(ids, vec![snapshot_event_id(&fx.mall, SnapshotKind::Order, &order, version); 2]);
    assert_eq!(fx.calls(), 1);
}

#[tokio::test]
async fn a_job_covered_by_a_version_this_process_stored_is_coalesced_without_a_read() {
    let fx = Fx::new().await;
    let (w, order) = (fx.worker(), fx.order());
    let sync = |id: &str| serde_json::to_string(&fx.job(id, JobKind::SyncOrder { order_id: order.clone() })).unwrap();
    run(&w, &sync("j20")).await;
    let reads = fx.state.head_reads();
    // A later job for an event the stored fetch already covers: nothing to read, nothing to call.
    run(&w, &sync("j21")).await;
    assert_eq!((w.stats.coalesced.load(Ordering::Relaxed), fx.state.head_reads()), (1, reads));
    assert_eq!(w.stats.coalesced_unread.load(Ordering::Relaxed), 1);
    // A redelivery reads the head: it must learn whether it stored the current version itself.
    run_receive(&w, &sync("j21"), 2).await;
    assert_eq!(fx.state.head_reads(), reads + 1);
    // So does a re-send of the job that stored it (its answer is "already stored", not "coalesced").
    run(&w, &sync("j20")).await;
    assert_eq!((fx.state.head_reads(), w.stats.duplicates.load(Ordering::Relaxed)), (reads + 2, 1));
    // An event received after the stored fetch is not covered: read, call, store.
    let late = Job {
        event_received_ms: fx.sim.clock.now_ms() + 60_000,
        ..fx.job("j22", JobKind::SyncOrder { order_id: order.clone() })
    };
    run(&w, &serde_json::to_string(&late).unwrap()).await;
    assert_eq!((fx.state.head_reads(), fx.calls()), (reads + 3, 2));
    // Cafe24 answered what is stored: no new version and no event (issue 30, "publish only what
    // changed"); a changed order is a new version, published.
    assert_eq!(w.stats.unchanged.load(Ordering::Relaxed), 1);
    assert_eq!(fx.bus.events().len(), 1, "the first version only: nothing for the others");
    fx.sim.lock().malls.get_mut("shop").unwrap().data.orders.get_mut(&order).unwrap().shipping_status = "M".into();
    let changed = Job {
        event_received_ms: fx.sim.clock.now_ms() + 120_000,
        ..fx.job("j23", JobKind::SyncOrder { order_id: order.clone() })
    };
    run(&w, &serde_json::to_string(&changed).unwrap()).await;
    assert_eq!(fx.bus.events().len(), 2, "the changed order is published");
}

#[tokio::test]
async fn the_token_record_is_read_once_per_cache_period_and_a_revoked_token_costs_one_refused_call() {
    let fx = Fx::new().await;
    let w = fx.worker();
    let sync = |id: &str, order: &str| {
        serde_json::to_string(&fx.job(id, JobKind::SyncOrder { order_id: order.to_owned() })).unwrap()
    };
    let orders: Vec<String> = {
        let mut g = fx.sim.lock();
        fx.sim.mall(&mut g, "shop").data.orders.keys().cloned().collect()
    };
    for (i, o) in orders.iter().enumerate() {
        run(&w, &sync(&format!("j3{i}"), o)).await;
    }
    assert_eq!(w.stats.synced.load(Ordering::Relaxed), 3);
    assert_eq!(fx.tokens.reads(), 1, "three calls, one read of the token record");
    assert_eq!(w.cafe24.stats.token_cache_hits.load(Ordering::Relaxed), 2);
    // Another instance re-installs the app: Cafe24 revokes the old pair, the store has the new one.
    fx.sim.revoke("shop");
    let scopes: Vec<String> = ALL_READ_SCOPES.iter().map(|s| s.to_string()).collect();
    let (a, r) = fx.sim.seed_tokens("shop", "relay-client", scopes.clone());
    let now = fx.sim.clock.now_ms();
    fx.tokens.put_installed(&fx.mall, &TokenPair::issued(a, r, scopes, now), now).await.unwrap();
    let late =
        Job { event_received_ms: now + 60_000, ..fx.job("j40", JobKind::SyncOrder { order_id: orders[0].clone() }) };
    let r = run(&w, &serde_json::to_string(&late).unwrap()).await;
    assert!(!returned(&r));
    assert_eq!(w.stats.synced.load(Ordering::Relaxed), 4, "the cached token's 401 led to the stored one");
    assert_eq!((fx.sim.stats("shop").status_401, fx.tokens.reads()), (1, 2));
}

#[tokio::test]
async fn an_uninstall_behind_a_cached_token_drops_the_job_after_one_refused_call() {
    let fx = Fx::new().await;
    let w = fx.worker();
    let order = fx.order();
    run(&w, &serde_json::to_string(&fx.job("j50", JobKind::SyncOrder { order_id: order.clone() })).unwrap()).await;
    // The app is deleted from the mall (Cafe24 revokes its tokens) and the 90077 webhook marks
    // the record; this process still holds the active record.
    fx.sim.uninstall("shop", "relay-client");
    let now = fx.sim.clock.now_ms();
    assert!(fx.tokens.mark_uninstalled(&fx.mall, now, now).await.unwrap());
    let calls = fx.calls();
    let job = |id: &str| {
        let j = Job {
            event_received_ms: fx.sim.clock.now_ms() + 60_000,
            ..fx.job(id, JobKind::SyncOrder { order_id: order.clone() })
        };
        serde_json::to_string(&j).unwrap()
    };
    let logs = LogBuf::default();
    let _logs = tracing::subscriber::set_default(relay_lambda::telemetry::subscriber("info", logs.clone()));
    let r = run(&w, &job("j51")).await;
    assert!(!returned(&r));
    assert_eq!(w.stats.dropped.load(Ordering::Relaxed), 1);
    assert_eq!(fx.calls(), calls + 1, "one call with the cached token, refused");
    // The refusal dropped the copy: the next job reads the record and makes no call.
    run(&w, &job("j52")).await;
    assert_eq!((w.stats.dropped.load(Ordering::Relaxed), fx.calls()), (2, calls + 1));
    assert!(fx.dlq.messages().is_empty());
    // The log says who decided: the token record both times (read after Cafe24's 401 to the
    // cached token, then before any call).
    assert_eq!(deciders(&logs), ["token_record", "token_record"]);
}

/// `decided_by` of the log lines that drop a job for an uninstalled mall.
fn deciders(logs: &LogBuf) -> Vec<String> {
    logs.lines().iter().filter_map(|l| l["decided_by"].as_str().map(str::to_owned)).collect()
}

/// Log lines written through the functions' JSON subscriber.
#[derive(Clone, Default)]
struct LogBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl LogBuf {
    fn lines(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

#[tokio::test]
async fn a_body_that_is_not_a_job_is_dead_lettered_as_malformed() {
    let fx = Fx::new().await;
    let w = fx.worker();
    for (i, body) in
        ["{", "[]", r#"{"v":1,"job_id":"x","mall_id":"shop","kind":"sync_order","order_id":".."}"#].iter().enumerate()
    {
        let r = run(&w, body).await;
        assert!(!returned(&r), "{body}");
        assert_eq!(dlq_class(&fx.dlq).len(), i + 1);
    }
    assert!(dlq_class(&fx.dlq).iter().all(|c| c == "malformed"));
    assert_eq!(fx.calls(), 0);
}

#[tokio::test]
async fn a_store_failure_after_the_call_is_an_attempt_retried_and_the_redelivery_stores_once() {
    let fx = Fx::new().await;
    let (w, order) = (fx.worker(), fx.order());
    let body = serde_json::to_string(&fx.job("j12", JobKind::SyncOrder { order_id: order.clone() })).unwrap();
    fx.state.set_failing_upserts(true);
    let r = run(&w, &body).await;
    assert!(returned(&r), "returned, not acknowledged: the snapshot is not stored");
    assert_eq!(w.stats.failures.load(Ordering::Relaxed), 1, "a real attempt");
    assert_eq!(fx.vis.changes(), vec![("rh1".to_owned(), 2)]);
    assert!(!fx.state.claimed("j12"), "released for the redelivery");
    fx.state.set_failing_upserts(false);
    let r = run(&w, &body).await; // the redelivery
    assert!(!returned(&r));
    assert!(fx.state.stored(&fx.mall, SnapshotKind::Order, &order).unwrap().1.is_some());
    assert_eq!(w.stats.synced.load(Ordering::Relaxed), 1);
    assert_eq!(fx.calls(), 2, "the call is repeated (the first answer was not kept), the effect stored once");
    assert!(fx.dlq.messages().is_empty());
}

#[tokio::test]
async fn an_invocation_killed_at_any_point_of_a_job_loses_nothing_and_duplicates_no_effect() {
    // Cafe24 takes 300 ms; the invocation is stopped (its future dropped, as Lambda stops the
    // process) at points before, during and after the call, then the message is redelivered
    // (its receive count one higher each time) after the call the killed run started is over.
    for kill_ms in [0u64, 20, 150, 290, 320, 400] {
        let fx = Fx::new().await;
        let (w, order) = (fx.worker(), fx.order());
        fx.sim.lock().faults.push(Fault {
            mall: Some("shop".into()),
            endpoint: Some("orders".into()),
            kind: FaultKind::Latency { ms: 300 },
            remaining: None,
        });
        let body = serde_json::to_string(&fx.job("jk", JobKind::SyncOrder { order_id: order.clone() })).unwrap();
        let event = |b: &str, receive: u32| -> SqsEvent {
            serde_json::from_value(serde_json::json!({"Records": [{
                "messageId": "m1", "receiptHandle": "rh1", "body": b,
                "attributes": {"MessageGroupId": "shop", "ApproximateReceiveCount": receive.to_string()},
                "messageAttributes": {}, "eventSource": "aws:sqs"
            }]}))
            .unwrap()
        };
        let killed = tokio::time::timeout(
            Duration::from_millis(kill_ms),
            w.handle_batch(event(&body, 1), || Duration::from_secs(1)),
        )
        .await
        .is_err();
        // Redeliveries until the job is acknowledged (the first may find the claim in progress).
        let mut acknowledged = !killed;
        for receive in 2..7 {
            if acknowledged {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1_100)).await;
            acknowledged = !returned(&w.handle_batch(event(&body, receive), || Duration::from_secs(1)).await);
        }
        println!("kill {kill_ms}: killed {killed}, synced {} coalesced {} dup {} failures {} deferred {} calls {} outcome {:?}", w.stats.synced.load(Ordering::Relaxed), w.stats.coalesced.load(Ordering::Relaxed), w.stats.duplicates.load(Ordering::Relaxed), w.stats.failures.load(Ordering::Relaxed), w.stats.deferred.load(Ordering::Relaxed), fx.calls(), fx.state.outcome("jk"));
        assert!(acknowledged, "kill at {kill_ms} ms: never completed");
        let snap = fx.state.stored(&fx.mall, SnapshotKind::Order, &order);
        assert!(snap.as_ref().is_some_and(|s| s.1.is_some()), "kill at {kill_ms} ms: the effect is stored");
        // Delivered: the stored version's event, at least once, no other.
        let version = snap.map(|s| s.0).unwrap_or(0);
        let ids: std::collections::BTreeSet<String> = fx.bus.events().into_iter().map(|e| e.event_id).collect();
        assert_eq!(
            ids.into_iter().collect::<Vec<_>>(),
            [snapshot_event_id(&fx.mall, SnapshotKind::Order, &order, version)],
            "kill at {kill_ms} ms: the stored version is published"
        );
        assert!(fx.dlq.messages().is_empty(), "kill at {kill_ms} ms: nothing dead-lettered");
        assert!(fx.calls() <= 2, "kill at {kill_ms} ms: {} calls", fx.calls());
        let synced = w.stats.synced.load(Ordering::Relaxed)
            + w.stats.coalesced.load(Ordering::Relaxed)
            + w.stats.duplicates.load(Ordering::Relaxed);
        assert!(synced >= 1, "kill at {kill_ms} ms");
    }
}

/// A slow Cafe24 answer must not run the invocation into its deadline: Lambda would then return
/// the whole batch after the visibility timeout, finished records included (issue 30, item 10).
/// The call gets the time left less the margin to finish the record; cut, it is a transient
/// failure of this record only, and the batch answers before the deadline.
#[tokio::test]
async fn a_cafe24_call_slower_than_the_time_left_is_cut_before_the_deadline() {
    let fx = Fx::new().await;
    // The deployed margins (the fixture shortens them for its 1 s invocations).
    let w = fx.worker_with_cafe24(
        |c| {
            c.call_margin = relay_cafe24::deadline::CALL_MARGIN;
            c.min_call_wait = relay_cafe24::deadline::MIN_CALL_WAIT;
        },
        |c| c,
    );
    let order = fx.order();
    fx.fault("orders", FaultKind::Latency { ms: 5_000 });
    let body = serde_json::to_string(&fx.job("slow", JobKind::SyncOrder { order_id: order.clone() })).unwrap();
    let time_left = Duration::from_secs(4);
    let started = std::time::Instant::now();
    let r = w.handle_batch(one_record(&body, 1), || time_left).await;
    let took = started.elapsed();
    assert!(took < time_left, "the batch answered after its deadline ({took:?}): Lambda would have killed it");
    assert!(returned(&r), "the cut record comes back for another try");
    assert!(fx.dlq.messages().is_empty());
    assert!(fx.state.stored(&fx.mall, SnapshotKind::Order, &order).is_none());
    // With less than the margin and a second left, no call starts (no credit spent).
    let calls = fx.calls();
    let r = w.handle_batch(one_record(&body, 2), || Duration::from_millis(2_500)).await;
    assert!(returned(&r));
    assert_eq!(fx.calls(), calls, "a call that could not finish was started");
}
