//! The worker's reconcile jobs against the simulator's webhook logs (in-memory ports): what is
//! re-injected, how the checkpoint moves, and every variant of the logs Cafe24 leaves open.

use crate::common::*;

use std::sync::atomic::Ordering;
use std::time::Duration;

use relay_domain::jobs::{Job, JobKind};
use relay_domain::ports::memory::MemoryQueue;
use relay_domain::ratelimit::Class;

fn reconcile_job(fx: &Fx, id: &str) -> String {
    serde_json::to_string(&Job { class: Class::Bulk, ..fx.job(id, JobKind::Reconcile) }).unwrap()
}

fn dedup_ids(q: &MemoryQueue) -> Vec<String> {
    q.messages().iter().map(|m| m.dedup_id.as_str().to_owned()).collect()
}

#[tokio::test]
async fn reconcile_reinjects_only_deliveries_that_never_succeeded_with_the_live_dedup_id() {
    let fx = Fx::new().await;
    let w = fx.worker();
    fx.log("tr-retried", "G", false, "20261201-0000001");
    fx.log("tr-retried", "G", true, "20261201-0000001"); // Cafe24's retry got through
    fx.log("tr-lost", "G", false, "20261201-0000002");
    fx.log("tr-ok", "G", true, "20261201-0000003");
    let last = fx.log("tr-test", "T", false, "20261201-0000004"); // a test delivery
    let r = run(&w, &reconcile_job(&fx, "rc1")).await;
    assert!(!returned(&r));
    assert_eq!(fx.state.outcome("rc1").as_deref(), Some("reconciled"));
    let body = cafe24_sim::webhooks::event_body("shop", 90023, &serde_json::json!({"order_id": "20261201-0000002"}));
    let live = relay_domain::DedupId::for_webhook(Some("tr-lost"), body.to_string().as_bytes());
    assert_eq!(
        dedup_ids(&fx.inbox),
        vec![live.as_str().to_owned()],
        "the lost delivery, as ingest would have queued it"
    );
    assert_eq!(fx.inbox.messages()[0].group_id.as_str(), "shop");
    let st = relay_domain::ports::ReconcileStore::reconcile_state(&fx.state, &fx.mall).await.unwrap();
    let last_at = fx.sim.lock().logs.iter().find(|l| l.log_id == last).map(|l| l.requested_ms).unwrap();
    assert!(st.checkpoint_ms.is_some_and(|c| c > last_at), "the checkpoint covers the last log: {st:?}");
    assert_eq!((st.reception_on, st.failed_logs), (Some(true), 2));
    assert!(st.last_delivered_ms > 0, "the newest successful delivery is recorded: {st:?}");
    assert_eq!((fx.endpoint_calls("webhooks/setting"), fx.endpoint_calls("webhooks/logs")), (1, 1));
    assert_eq!(fx.gate.feedback_seen(), 2, "both calls went through the limiter");

    // The next period reads from the checkpoint and finds nothing new.
    let r = run(&w, &reconcile_job(&fx, "rc2")).await;
    assert!(!returned(&r));
    assert_eq!(fx.inbox.messages().len(), 1, "nothing re-injected twice");
    assert_eq!(w.stats.reinjected.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn reconcile_pages_through_the_logs_and_a_refused_inbox_keeps_the_checkpoint() {
    let fx = Fx::new().await;
    let w = fx.worker();
    for i in 0..1_005 {
        fx.log(&format!("tr-{i:05}"), "G", false, &format!("20261201-{:07}", i + 1));
    }
    fx.inbox.set_failing(true);
    let r = run(&w, &reconcile_job(&fx, "rc-p")).await;
    assert!(returned(&r), "not done while the inbox refuses");
    let st = relay_domain::ports::ReconcileStore::reconcile_state(&fx.state, &fx.mall).await.unwrap();
    let first_at = fx.sim.lock().logs.iter().map(|l| l.requested_ms).min().unwrap();
    assert!(
        st.checkpoint_ms.is_none_or(|c| c <= first_at),
        "the checkpoint did not move past unsent re-injections: {st:?}"
    );
    fx.inbox.set_failing(false);
    let r = run(&w, &reconcile_job(&fx, "rc-p")).await;
    assert!(!returned(&r));
    let ids = dedup_ids(&fx.inbox);
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (1_005, 1_005), "every lost delivery once");
    // All 1,005 in one second S: per run, a full page of the window, then (first run only) the
    // seconds before S (none), then S alone — at 1,000 when a window starts there (full), and
    // at 10,000. Whether the clock passed a second between runs moves it by one a run.
    let calls = fx.endpoint_calls("webhooks/logs");
    assert!((5..=8).contains(&calls), "{calls} log reads");
}

/// Cafe24 documents neither the logs' order nor `since_log_id`, its published log ids are opaque
/// and its published log answers carry no `links`: 2,500 failed deliveries over the last two
/// hours (with a success between them) are all re-injected, once each, under every combination.
#[tokio::test]
async fn reconcile_recovers_2500_failed_deliveries_under_every_log_order_id_shape_and_links_variant() {
    use cafe24_sim::state::{Links, LogIds, LogOrder, Variants};
    let mut all = Vec::new();
    for log_order in [LogOrder::NewestFirst, LogOrder::OldestFirst] {
        for log_ids in [LogIds::Opaque, LogIds::Sortable] {
            for links in [Links::AsPublished, Links::Always] {
                all.push(Variants { links, log_order, log_ids, ..Variants::default() });
            }
        }
    }
    // The variants are independent (a simulator and a worker each): side by side.
    futures::future::join_all(all.into_iter().map(recovers_every_lost_delivery_under)).await;
}

async fn recovers_every_lost_delivery_under(variants: cafe24_sim::state::Variants) {
    let fx = Fx::with(|c| c.variants = variants).await;
    let w = fx.worker();
    let now = fx.sim.clock.now_ms();
    for i in 0..2_500u64 {
        let at = now - 7_200_000 + i * 2_870;
        fx.log_at(at, &format!("tr-{i:05}"), "G", false, &format!("20261201-{:07}", i + 1));
        if i % 100 == 0 {
            fx.log_at(at, &format!("ok-{i:05}"), "G", true, &format!("20261202-{:07}", i + 1));
        }
    }
    // One run reads everything settled, whatever the answers' order and links.
    let r = run(&w, &reconcile_job(&fx, "rc-1")).await;
    assert!(!returned(&r), "{variants:?}");
    let ids = dedup_ids(&fx.inbox);
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (2_500, 2_500), "{variants:?}: every lost delivery once");
    let first_reads = fx.endpoint_calls("webhooks/logs");
    // Deliveries that fail later are found by the next run, from the checkpoint on (logged at
    // the checkpoint's instant, once the second after it has passed).
    let st = relay_domain::ports::ReconcileStore::reconcile_state(&fx.state, &fx.mall).await.unwrap();
    let later = st.checkpoint_ms.unwrap();
    let settled_at = later + 2_000;
    tokio::time::sleep(Duration::from_millis(settled_at.saturating_sub(fx.sim.clock.now_ms()))).await;
    for i in 0..30u64 {
        fx.log_at(later, &format!("late-{i:02}"), "G", false, &format!("20261203-{:07}", i + 1));
    }
    let r = run(&w, &reconcile_job(&fx, "rc-2")).await;
    assert!(!returned(&r), "{variants:?}");
    let ids = dedup_ids(&fx.inbox);
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (2_530, 2_530), "{variants:?}: the later ones too, once");
    println!("{variants:?}: {first_reads} log reads, then {}", fx.endpoint_calls("webhooks/logs") - first_reads);
}

#[tokio::test]
async fn a_mall_with_reception_switched_off_is_recorded_and_counted() {
    let fx = Fx::new().await;
    let w = fx.worker();
    {
        let mut g = fx.sim.lock();
        fx.sim.mall(&mut g, "shop").reception_off = true;
    }
    let r = run(&w, &reconcile_job(&fx, "rc-off")).await;
    assert!(!returned(&r));
    let st = relay_domain::ports::ReconcileStore::reconcile_state(&fx.state, &fx.mall).await.unwrap();
    assert_eq!(st.reception_on, Some(false));
    assert_eq!(w.stats.reception_off.load(Ordering::Relaxed), 1);
    assert!(w.samples().iter().any(|(name, _, v)| *name == "ReceptionOff" && *v == 1));
}

/// A reconcile run notes on the mall's record whether the mall is busy (issue 30, "cost"): the
/// schedule then reconciles busy malls every period and quiet ones every
/// `RECONCILE_QUIET_MINUTES`. Busy: a failed delivery, or a delivery in the last hour.
#[tokio::test]
async fn a_reconcile_run_notes_whether_the_mall_is_busy() {
    // Quiet: nothing in the logs.
    let fx = Fx::new().await;
    let w = fx.worker();
    run(&w, &reconcile_job(&fx, "rc-quiet")).await;
    let (at, busy) = fx.tokens.reconciled(&fx.mall).expect("the run is noted");
    assert!(!busy && at > 0);
    // Busy: a delivery got through a minute ago.
    let fx = Fx::new().await;
    let w = fx.worker();
    fx.log_at(fx.sim.clock.now_ms() - 60_000, "tr-recent", "G", true, "20261201-0000001");
    run(&w, &reconcile_job(&fx, "rc-recent")).await;
    assert_eq!(fx.tokens.reconciled(&fx.mall).map(|r| r.1), Some(true), "a delivery in the last hour");
    // Busy: a failed delivery two hours ago (re-injected now).
    let fx = Fx::new().await;
    let w = fx.worker();
    fx.log_at(fx.sim.clock.now_ms() - 7_200_000, "tr-failed", "G", false, "20261201-0000002");
    run(&w, &reconcile_job(&fx, "rc-failed")).await;
    assert_eq!(fx.tokens.reconciled(&fx.mall).map(|r| r.1), Some(true), "a failed delivery");
}
