//! Scheduled fan-out (reconciliation, keep-alive) at 10,000 malls against a slow work queue and
//! the dispatcher's real deadline (the template's `Timeout: 30`), in virtual time (tokio's
//! paused clock: the queue's latency and the deadline are exact, the test takes milliseconds).
//! Issue 30, item 5: a run that sent batch after batch in alphabetical order with no time check
//! was killed at its deadline every time at the same mall, and the malls after it were never
//! reconciled (nor their refresh tokens kept alive).

use std::collections::BTreeSet;
use std::time::Duration;

use dispatcher::{Dispatcher, DispatcherConfig};
use relay_domain::jobs::{Job, JobKind};
use relay_domain::ports::memory::{MemoryBus, MemoryQueue, MemoryTokens, MemoryVisibility};
use relay_domain::ports::{MessageQueue, OutboundMessage, QueueError};
use relay_domain::tokens::{TokenPair, TokenStore};
use relay_domain::MallId;
use tokio::time::Instant;

/// The dispatcher's timeout in `infra/template.yaml`.
const DEADLINE: Duration = Duration::from_secs(30);
const MALLS: usize = 10_000;

/// A work queue that takes `per_request` to answer each request (an SQS having a bad minute).
#[derive(Clone)]
struct SlowQueue {
    inner: MemoryQueue,
    per_request: Duration,
}

impl MessageQueue for SlowQueue {
    async fn send(&self, msg: &OutboundMessage) -> Result<(), QueueError> {
        tokio::time::sleep(self.per_request).await;
        self.inner.send(msg).await
    }

    async fn send_batch(&self, msgs: &[OutboundMessage]) -> Result<Vec<usize>, QueueError> {
        tokio::time::sleep(self.per_request).await;
        let mut failed = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            if self.inner.send(m).await.is_err() {
                failed.push(i);
            }
        }
        Ok(failed)
    }
}

/// The dispatcher's configuration with its defaults (reconcile every 10 minutes, quiet malls
/// every 60).
fn config() -> DispatcherConfig {
    DispatcherConfig::from_lookup(|k| match k {
        "WORK_QUEUE_URL" => Some("https://sqs.example/1/work.fifo".into()),
        "INBOX_QUEUE_URL" => Some("https://sqs.example/1/inbox.fifo".into()),
        "PARKING_QUEUE_URL" => Some("https://sqs.example/1/inbox-dlq.fifo".into()),
        "TOKEN_TABLE" => Some("t".into()),
        "RATE_LIMIT_TABLE" => Some("rl".into()),
        "EVENT_BUS_NAME" => Some("bus".into()),
        _ => None,
    })
    .unwrap()
}

type D = Dispatcher<SlowQueue, MemoryTokens, MemoryQueue, MemoryVisibility, MemoryBus>;

async fn dispatcher(per_request: Duration) -> (D, MemoryQueue) {
    let cfg = config();
    let tokens = MemoryTokens::default();
    let now = relay_lambda::clock::now_ms();
    for i in 0..MALLS {
        let pair = TokenPair::issued("a".into(), "r".into(), vec![], now);
        tokens.put_installed(&MallId::parse(&format!("mall{i:05}")).unwrap(), &pair, now).await.unwrap();
    }
    let work = MemoryQueue::default();
    let slow = SlowQueue { inner: work.clone(), per_request };
    let d =
        Dispatcher::new(slow, MemoryQueue::default(), tokens, MemoryVisibility::default(), MemoryBus::default(), cfg);
    (d, work)
}

/// Malls with a job of `kind` on the queue.
fn reached(q: &MemoryQueue, reconcile: bool) -> BTreeSet<MallId> {
    q.messages()
        .iter()
        .filter_map(|m| serde_json::from_str::<Job>(&m.body).ok())
        .filter(|j| matches!(j.kind, JobKind::Reconcile) == reconcile)
        .map(|j| j.mall_id)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn scheduled_runs_over_10000_malls_on_a_slow_queue_end_in_time_and_reach_every_mall() {
    // 150 ms per request: 1,000 batches sent one after another take 150 s.
    let (d, work) = dispatcher(Duration::from_millis(150)).await;
    let interval = 600_000;
    let t0 = relay_lambda::clock::now_ms();
    let mut runs = 0;
    while reached(&work, true).len() < MALLS {
        assert!(runs < 6, "after {runs} runs only {} of {MALLS} malls reconciled", reached(&work, true).len());
        let deadline = Instant::now() + DEADLINE;
        let run = d.reconcile_all(t0 + runs * interval, move || deadline.saturating_duration_since(Instant::now()));
        let done = tokio::time::timeout(DEADLINE, run).await;
        assert!(done.is_ok(), "run {runs} was still sending at its deadline: Lambda kills it there");
        runs += 1;
    }
    assert!(runs > 1, "the queue was not slow enough to cut a run: the test shows nothing");
    println!("{MALLS} malls reconciled in {runs} runs of {DEADLINE:?} at 150 ms per request");

    // The keep-alive fans out the same way, with its own cursor.
    let deadline = Instant::now() + DEADLINE;
    let (sent, _) = tokio::time::timeout(
        DEADLINE,
        d.keep_alive(t0 + 20 * 86_400_000, move || deadline.saturating_duration_since(Instant::now())),
    )
    .await
    .expect("the keep-alive ran past its deadline")
    .unwrap();
    assert!(sent > 0 && sent < MALLS, "{sent}");
    let first = reached(&work, false);
    let deadline = Instant::now() + DEADLINE;
    tokio::time::timeout(
        DEADLINE,
        d.keep_alive(t0 + 20 * 86_400_000, move || deadline.saturating_duration_since(Instant::now())),
    )
    .await
    .unwrap()
    .unwrap();
    let second = reached(&work, false);
    assert!(second.len() > first.len(), "the second keep-alive run started at the first mall again");
}

/// A fast queue reaches every mall in one run, within the pace kept for live dispatching
/// (≤ 100 requests a second).
#[tokio::test(start_paused = true)]
async fn a_scheduled_run_on_a_healthy_queue_reaches_every_mall_at_a_bounded_pace() {
    let (d, work) = dispatcher(Duration::from_millis(10)).await;
    let started = Instant::now();
    let sent = d.reconcile_all(relay_lambda::clock::now_ms(), || DEADLINE).await.unwrap();
    assert_eq!(sent, MALLS);
    assert_eq!(reached(&work, true).len(), MALLS);
    let took = started.elapsed();
    let per_s = (MALLS / 10) as f64 / took.as_secs_f64();
    println!("{MALLS} malls in {took:?}: {per_s:.0} SendMessageBatch requests/s");
    assert!(per_s <= 100.5, "{per_s:.0} requests/s: more than the share a FIFO queue's quota leaves");
}

/// The reconcile schedule takes the malls that need it (issue 30, "cost"): never reconciled,
/// busy at their last run, or quiet for `RECONCILE_QUIET_MINUTES` (60) — a quiet mall is still
/// checked within the hour, a busy one every period.
#[tokio::test]
async fn the_reconcile_schedule_takes_new_busy_and_long_quiet_malls() {
    let cfg = config();
    let tokens = MemoryTokens::default();
    let now = relay_lambda::clock::now_ms();
    let mall = |m: &str| MallId::parse(m).unwrap();
    for m in ["fresh", "busy", "quiet", "longquiet"] {
        tokens.put_installed(&mall(m), &TokenPair::issued("a".into(), "r".into(), vec![], now), now).await.unwrap();
    }
    tokens.note_reconciled(&mall("busy"), now - 600_000, true).await.unwrap();
    tokens.note_reconciled(&mall("quiet"), now - 600_000, false).await.unwrap();
    tokens.note_reconciled(&mall("longquiet"), now - 3_600_001, false).await.unwrap();
    let work = MemoryQueue::default();
    let d = Dispatcher::new(
        work.clone(),
        MemoryQueue::default(),
        tokens,
        MemoryVisibility::default(),
        MemoryBus::default(),
        cfg,
    );
    assert_eq!(d.reconcile_all(now, || DEADLINE).await.unwrap(), 3);
    let got: Vec<String> = reached(&work, true).iter().map(|m| m.as_str().to_owned()).collect();
    assert_eq!(got, ["busy", "fresh", "longquiet"]);
}
