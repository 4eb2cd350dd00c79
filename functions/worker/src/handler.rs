//! One batch from the work queue: the FIFO driver runs each mall's jobs in order; each job is
//! claimed (idempotency), possibly coalesced, performed through the rate-limited Cafe24 client
//! **inside this invocation**, and mapped to done / deferred (visibility, not sleep) / retried with
//! backoff / dead-lettered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use relay_cafe24::tokens::Need;
use relay_cafe24::turns::{in_turn, Turns};
use relay_cafe24::{Cafe24, Cafe24Error};
use relay_domain::jobs::{backoff_s, Job, JobKind};
use relay_domain::ports::{
    BackfillStore, Claim, CommandStore, ConfigFaultStore, EventBus, GroupId, IdempotencyStore, MessageQueue,
    OutboundMessage, RateGate, ReconcileStore, SnapshotStore, Upsert, VisibilityControl,
};
use relay_domain::tokens::TokenStore;
use relay_domain::{DedupId, SnapshotKind};
use relay_lambda::fifo::{drive_overlapping, sqs, RecordResult};
use relay_lambda::metrics::{self, Deltas, Sample, Unit};
use relay_lambda::telemetry::record_span;
use serde_json::json;
use tracing::Instrument;

use crate::config::WorkerConfig;
use crate::memo::{OwnReturns, Returned, StoredVersions};

mod backfill;
mod command;
mod errors;
mod publish;
mod reconcile;

/// Seconds a job waits when the state store cannot be read (no Cafe24 call is made before).
const STORE_DOWN_DEFER_S: u32 = 5;

/// A many-call job's budget (a backfill's pages) when its batch holds other message groups:
/// none, so it runs one page and comes back. Until the invocation returns, every group of the
/// batch stays in flight and FIFO hands out nothing more of it, so a longer slice beside a
/// mall's live records would hold that mall's next live webhooks behind it.
const SHARED_BATCH_BUDGET: Duration = Duration::ZERO;

/// What a job came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Finished (outcome name: synced, coalesced, tombstoned, refreshed, dropped_uninstalled).
    Completed(&'static str),
    /// Not now; come back after this many seconds (not an attempt).
    Defer(u32),
    /// Not started: by what this process last saw, the mall's limiter has no credit for longer
    /// than a wait it would sleep; come back after this many seconds. Nothing was read or
    /// written for the job (unlike `Defer`, which may follow its head read).
    NotYet(u32),
    /// A real attempt failed transiently (error class).
    Retry(&'static str),
    /// The effect is stored but its event is not on the bus yet: come back (not an attempt;
    /// the redelivery publishes the stored version without calling Cafe24 again).
    PublishPending,
    /// Give up: to the DLQ with the reason.
    DeadLetter {
        reason: String,
        /// Error class.
        class: &'static str,
    },
}

/// How a record reached the worker, as far as a sync job's idempotency cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receipt {
    /// Never received before.
    First,
    /// Received again right after this process deferred it before any call
    /// ([`crate::memo::OwnReturns`]): it has stored nothing, and its last run found no version
    /// of its own.
    AfterOwnDeferral,
    /// Received again right after this process returned it unstarted (behind another record
    /// of its group) on a receive of one of the kinds above: it has stored nothing.
    AfterOwnReturn,
    /// Received again right after this process returned it finished (behind a record of its
    /// group that did not finish): nothing is left to do.
    AfterOwnFinish,
    /// Received again otherwise: an earlier run may have stored its version.
    Redelivery,
}

/// Counters (exported as metrics later; asserted by tests).
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Wall time invocations spent with every running job waiting for credit: the billed
    /// time asleep (`relay_cafe24::idle`; the client's `inline_sleep_ms` sums each job's sleeps).
    pub asleep_ms: AtomicU64,
    /// Jobs completed by calling Cafe24.
    pub synced: AtomicU64,
    /// Of those, fetches that found the stored content unchanged (no version, no event).
    pub unchanged: AtomicU64,
    /// Jobs skipped because the snapshot was already newer than the event.
    pub coalesced: AtomicU64,
    pub deferred: AtomicU64,
    /// Real failed attempts.
    pub failures: AtomicU64,
    /// Jobs dead-lettered.
    pub dead_lettered: AtomicU64,
    /// Events the bus accepted (synced and deleted versions, mall status changes).
    pub published: AtomicU64,
    /// Publications the bus refused or could not take (the version stays stored and its job
    /// comes back to publish it).
    pub publish_failed: AtomicU64,
    /// Runs of a job whose effect an earlier run of it already had (a redelivery of a completed
    /// job, or a sync job back because the bus had not taken its event yet).
    pub duplicates: AtomicU64,
    /// Of `duplicates`, jobs that came back only because FIFO returned them behind an earlier
    /// record of their group that did not finish (nothing was run twice: no call, no event).
    pub returned_finished: AtomicU64,
    /// Jobs dropped because the app was uninstalled.
    pub dropped: AtomicU64,
    /// Jobs finished, whatever the way (synced, coalesced, tombstoned, refreshed, dropped).
    pub done: AtomicU64,
    /// Tombstones written.
    pub tombstoned: AtomicU64,
    /// Webhooks re-injected into the inbox by reconciliation.
    pub reinjected: AtomicU64,
    /// Failed deliveries reconciliation found in Cafe24's webhook logs.
    pub failed_deliveries: AtomicU64,
    /// Reconcile runs that found the mall's webhook reception switched off.
    pub reception_off: AtomicU64,
    /// Snapshots stored by backfill jobs straight from list pages.
    pub backfilled: AtomicU64,
    /// Coalesced jobs decided from the versions this process stored or read (no head read).
    pub coalesced_unread: AtomicU64,
    /// Head reads skipped: sync jobs back right after this process deferred them before a call.
    pub head_reads_skipped: AtomicU64,
    /// Sync jobs deferred before their head read, on the limiter state this process last saw.
    pub deferred_unread: AtomicU64,
}

/// The worker's six ports, named by one type: the rate gate and token store inside the Cafe24
/// client, the state table (idempotency, snapshots, checkpoints, progress, faults), the queues
/// (dead letters and the inbox), visibility control and the event bus. [`With`] bundles six
/// types; [`OnAws`] is the deployed bundle.
pub trait Ports {
    /// The per-key rate limiter.
    type Gate: RateGate;
    /// OAuth tokens.
    type Tokens: TokenStore;
    /// The state table.
    type State: IdempotencyStore + SnapshotStore + ReconcileStore + BackfillStore + ConfigFaultStore + CommandStore;
    /// A queue the worker sends to (its DLQ, the inbox).
    type Queue: MessageQueue;
    /// The work queue's visibility control.
    type Visibility: VisibilityControl;
    /// The app's event bus.
    type Bus: EventBus;
}

/// A [`Ports`] bundle of six types (tests and local drivers name theirs this way).
pub struct With<G, S, I, Q, V, B>(std::marker::PhantomData<(G, S, I, Q, V, B)>);

impl<G, S, I, Q, V, B> Ports for With<G, S, I, Q, V, B>
where
    G: RateGate,
    S: TokenStore,
    I: IdempotencyStore + SnapshotStore + ReconcileStore + BackfillStore + ConfigFaultStore + CommandStore,
    Q: MessageQueue,
    V: VisibilityControl,
    B: EventBus,
{
    type Gate = G;
    type Tokens = S;
    type State = I;
    type Queue = Q;
    type Visibility = V;
    type Bus = B;
}

/// The worker, built once per cold start.
pub struct Worker<P: Ports> {
    /// Cafe24 client (rate gate + token store inside).
    pub cafe24: Cafe24<P::Gate, P::Tokens>,
    state: P::State,
    bus: P::Bus,
    dlq: P::Queue,
    inbox: P::Queue,
    visibility: P::Visibility,
    cfg: WorkerConfig,
    pub stats: WorkerStats,
    deltas: Deltas,
    versions: StoredVersions,
    deferrals: OwnReturns,
    /// When this process last noted a configuration fault in the state table (0: never).
    fault_noted_ms: AtomicU64,
}

/// The deployed ports: DynamoDB limiter, token store and state table, SQS queues and
/// visibility, the EventBridge bus.
pub type OnAws = With<
    relay_aws::limiter::DynamoLimiter,
    relay_aws::tokens::DynamoTokenStore,
    relay_aws::state::DynamoState,
    relay_aws::sqs::SqsQueue,
    relay_aws::sqs::SqsVisibility,
    relay_aws::bus::EventBridgeBus,
>;

/// The worker as deployed.
pub type AwsWorker = Worker<OnAws>;

impl AwsWorker {
    /// The production wiring (the binary, the demo, the bench and the tests build through it):
    /// every resource named by `cfg`, the Cafe24 client from `cafe24` with the worker's inline
    /// sleep threshold, one clock for the limiter and the client.
    pub fn on_aws(
        aws: &relay_aws::Clients,
        cfg: WorkerConfig,
        mut cafe24: relay_cafe24::Cafe24Config,
        clock: relay_cafe24::Clock,
    ) -> Result<Self, Cafe24Error> {
        use relay_aws::sqs::{SqsQueue, SqsVisibility};
        let (sqs, ddb) = (&aws.sqs, &aws.ddb);
        cafe24.max_inline_wait_ms = cfg.max_sleep_ms;
        let (limiter, tokens) =
            aws.cafe24_ports(&cfg.rate_limit_table, &cfg.token_table, cfg.limiter.clone(), clock.clone());
        Ok(Self::new(
            Cafe24::new(cafe24, limiter, tokens, clock)?,
            relay_aws::state::DynamoState::new(ddb.clone(), cfg.state_table.clone()),
            relay_aws::bus::EventBridgeBus::new(aws.events.clone(), cfg.event_bus.clone()),
            SqsQueue::new(sqs.clone(), cfg.dlq_url.clone()),
            SqsQueue::new(sqs.clone(), cfg.inbox_queue_url.clone()),
            SqsVisibility::new(sqs.clone(), cfg.work_queue_url.clone()),
            cfg,
        ))
    }
}

/// What a record acts on, for [`drive_overlapping`]: a sync job's snapshot (kind and id), so two
/// jobs of one entity never overlap and their snapshot writes stay in fetch order. Every other
/// job (token, reconcile, backfill) and an unparsable record run alone.
fn overlap_key(m: &SqsMessage) -> Option<String> {
    sync_target(m).map(|(kind, id)| format!("{kind}:{id}"))
}

/// The snapshot a record's job syncs (`None`: not a sync job, or not a job).
fn sync_target(m: &SqsMessage) -> Option<(SnapshotKind, String)> {
    Job::parse(m.body.as_deref()?).ok()?.target()
}

impl<P: Ports> Worker<P> {
    /// Wires the worker. `inbox` is where reconciliation re-injects webhooks.
    pub fn new(
        cafe24: Cafe24<P::Gate, P::Tokens>,
        state: P::State,
        bus: P::Bus,
        dlq: P::Queue,
        inbox: P::Queue,
        visibility: P::Visibility,
        cfg: WorkerConfig,
    ) -> Self {
        let (stats, deltas) = (WorkerStats::default(), Deltas::default());
        let (versions, deferrals) = (StoredVersions::default(), OwnReturns::default());
        Self {
            cafe24,
            state,
            bus,
            dlq,
            inbox,
            visibility,
            cfg,
            stats,
            deltas,
            versions,
            deferrals,
            fault_noted_ms: AtomicU64::new(0),
        }
    }

    /// The state store (benchmarks read its write counter).
    pub fn state(&self) -> &P::State {
        &self.state
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &WorkerConfig {
        &self.cfg
    }

    fn now(&self) -> u64 {
        (self.cafe24.clock())()
    }

    /// Handles one SQS batch. `time_left` is the invocation's remaining time.
    pub async fn handle_batch(&self, event: SqsEvent, time_left: impl Fn() -> Duration) -> SqsBatchResponse {
        let records = event.records;
        let tl = &time_left;
        // The token code reads the deadline (see `relay_cafe24::deadline`).
        let deadline = std::time::Instant::now() + time_left();
        // A batch holding more than one message group: see `SHARED_BATCH_BUDGET`.
        let shared = records.iter().any(|m| sqs::group_id(m) != records.first().map_or("", sqs::group_id));
        // Each record's admission turn: its position in its group (see `relay_cafe24::turns`).
        let mut groups: std::collections::HashMap<&str, (Turns, usize)> = std::collections::HashMap::new();
        let turns: Vec<(Turns, usize)> = records
            .iter()
            .map(|m| {
                let (t, next) = groups.entry(sqs::group_id(m)).or_default();
                *next += 1;
                (t.clone(), *next - 1)
            })
            .collect();
        let turns = &turns;
        let (plan, asleep) = relay_cafe24::idle::invocation(relay_cafe24::deadline::within(
            deadline,
            drive_overlapping(
                &records,
                sqs::message_id,
                sqs::group_id,
                overlap_key,
                self.cfg.jobs_in_flight,
                tl,
                Duration::from_millis(self.cfg.min_time_left_ms),
                |i, _| {
                    let (m, turn) = (records.get(i), turns.get(i).map(|(t, pos)| t.turn(*pos)));
                    async move {
                        match (m, turn) {
                            (Some(m), Some(turn)) => {
                                let job = self.handle_record(m, tl().as_millis() as u64, shared);
                                in_turn(turn, relay_cafe24::idle::job(job)).instrument(record_span()).await
                            }
                            _ => RecordResult::Failed,
                        }
                    }
                },
            ),
        ))
        .await;
        self.stats.asleep_ms.fetch_add(asleep.as_millis() as u64, Ordering::Relaxed);
        self.note_returns(&records, &plan.unstarted, &plan.finished);
        sqs::apply_visibility(&plan, &records, &self.visibility).await;
        metrics::emit("worker", &self.deltas.take(&self.samples()));
        sqs::response(plan.returned)
    }

    /// Remembers the sync jobs returned unstarted whose receive was as good as a first one, so
    /// their next receive here may coalesce without a read, and those returned finished, so
    /// their next receive here does nothing (see [`OwnReturns`]). Before the batch response:
    /// nothing can receive them again before that.
    fn note_returns(&self, records: &[SqsMessage], unstarted: &[usize], finished: &[usize]) {
        let sync_job = |m: &SqsMessage| sync_target(m).is_some();
        for m in unstarted.iter().filter_map(|&i| records.get(i)) {
            let Some(n) = sqs::receive_count(m).filter(|_| sync_job(m)) else { continue };
            let id = sqs::message_id(m);
            // Nothing ran on this receive: how the one before it was returned still holds.
            if let Some(how) = self.deferrals.resumes(id, n).or(sqs::first_receive(m).then_some(Returned::Unstarted)) {
                self.deferrals.note(id, n, how);
            }
        }
        for m in finished.iter().filter_map(|&i| records.get(i)) {
            if let Some(n) = sqs::receive_count(m).filter(|_| sync_job(m)) {
                self.deferrals.note(sqs::message_id(m), n, Returned::Finished);
            }
        }
    }

    /// The cumulative counters behind the worker's metrics.
    pub fn samples(&self) -> Vec<Sample> {
        let (w, c) = (&self.stats, &self.cafe24.stats);
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("JobsDone", Unit::Count, n(&w.done)),
            ("JobsCoalesced", Unit::Count, n(&w.coalesced)),
            ("JobsDeferred", Unit::Count, n(&w.deferred)),
            ("JobsFailedAttempts", Unit::Count, n(&w.failures)),
            ("JobsDeadLettered", Unit::Count, n(&w.dead_lettered)),
            ("EventsPublished", Unit::Count, n(&w.published)),
            ("EventsPublishFailed", Unit::Count, n(&w.publish_failed)),
            ("JobsDuplicate", Unit::Count, n(&w.duplicates)),
            ("JobsDroppedUninstalled", Unit::Count, n(&w.dropped)),
            ("Cafe24Calls", Unit::Count, n(&c.calls)),
            ("Cafe24Status429", Unit::Count, n(&c.status_429)),
            ("LimiterWaits", Unit::Count, n(&c.inline_sleeps) + n(&c.throttled)),
            ("LimiterWaitMs", Unit::Milliseconds, n(&c.inline_sleep_ms)),
            ("InvocationAsleepMs", Unit::Milliseconds, n(&w.asleep_ms)),
            ("TokenRefreshes", Unit::Count, n(&c.refreshes)),
            ("Cafe24ConfigFaults", Unit::Count, n(&c.config_faults)),
            ("WebhooksReinjected", Unit::Count, n(&w.reinjected)),
            ("WebhookDeliveriesFailed", Unit::Count, n(&w.failed_deliveries)),
            ("ReceptionOff", Unit::Count, n(&w.reception_off)),
            ("SnapshotsBackfilled", Unit::Count, n(&w.backfilled)),
        ]
    }

    async fn dead_letter(&self, job_id: &str, group: &str, body: serde_json::Value) -> bool {
        let dedup = DedupId::derive("dlq", &[job_id.as_bytes()]);
        let group = GroupId::for_key(group).unwrap_or_else(GroupId::parked);
        let msg = OutboundMessage { group_id: group, dedup_id: dedup, body: body.to_string() };
        match self.dlq.send(&msg).await {
            Ok(()) => {
                self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                tracing::error!(job_id, error = %e, "DLQ send failed; the message stays on the queue");
                false
            }
        }
    }

    /// `time_left_ms`: the invocation's remaining time, which bounds the in-progress claim (a
    /// crashed invocation's claim expires when its time would have). `shared`: the batch holds
    /// other message groups too.
    async fn handle_record(&self, m: &SqsMessage, time_left_ms: u64, shared: bool) -> RecordResult {
        let body = m.body.as_deref().unwrap_or("");
        let group = m.attributes.get("MessageGroupId").map(String::as_str).unwrap_or("");
        let span = tracing::Span::current();
        let job = match Job::parse(body) {
            Ok(j) => j,
            Err(e) => {
                let id = m.message_id.clone().unwrap_or_default();
                span.record("message_id", id.as_str());
                tracing::error!(message_id = %id, error = %e, outcome = "malformed", "job");
                let dl = json!({"reason": e.to_string(), "error_class": "malformed", "message_id": id, "body": body.chars().take(10_000).collect::<String>()});
                return if self.dead_letter(&id, group, dl).await { RecordResult::Done } else { RecordResult::Failed };
            }
        };
        span.record("mall_id", job.mall_id.as_str());
        span.record("trace_id", job.trace());
        span.record("dedup_id", job.job_id.as_str());
        span.record("job_id", job.job_id.as_str());
        span.record("job", job.kind.name());
        // Orders and products are named on every line of their job (`relay trace --order`);
        // member ids are personal data and stay out of the logs.
        match &job.kind {
            JobKind::SyncOrder { order_id } => span.record("entity_id", order_id.as_str()),
            JobKind::SyncProduct { product_no } => span.record("entity_id", product_no.to_string().as_str()),
            _ => &span,
        };
        // A job that stores a snapshot needs no claim: the versioned snapshot, which names the
        // job that stored it, is its idempotency record (`run_within` reads it first), and its
        // FIFO group keeps any other run of it from overlapping. Other jobs claim.
        // A command's record is its idempotency record (`handler/command.rs`): a key sent again
        // publishes the recorded result, which a completed claim would skip.
        let claimed = job.target().is_none() && !matches!(job.kind, JobKind::Command(_));
        if claimed {
            let now = self.now();
            let claim = self
                .state
                .claim(job.job_id.as_str(), now, now + time_left_ms.max(1_000), now + self.cfg.idempotency_ttl_ms)
                .await;
            match claim {
                Ok(Claim::Claimed) => {}
                Ok(Claim::Completed(outcome)) => {
                    self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(outcome = "duplicate", previous = %outcome, "job");
                    return RecordResult::Done;
                }
                Ok(Claim::InProgress { until_ms }) => {
                    return RecordResult::Deferred {
                        delay_s: (until_ms.saturating_sub(now).div_ceil(1000) as u32).max(1),
                    };
                }
                Err(e) => {
                    tracing::warn!(job_id = %job.job_id, error = %e, "idempotency store unavailable");
                    return RecordResult::Deferred { delay_s: STORE_DOWN_DEFER_S };
                }
            }
        }
        let started = std::time::Instant::now();
        // Half the invocation's time for a job that paces itself (a backfill's pages); the rest
        // is the margin for finishing the page in hand and acknowledging.
        let count = sqs::receive_count(m);
        let receipt = if sqs::first_receive(m) {
            Receipt::First
        } else {
            match count.and_then(|n| self.deferrals.resumes(sqs::message_id(m), n)) {
                Some(Returned::Deferred) => Receipt::AfterOwnDeferral,
                Some(Returned::Unstarted) => Receipt::AfterOwnReturn,
                Some(Returned::Finished) => Receipt::AfterOwnFinish,
                None => Receipt::Redelivery,
            }
        };
        let budget = if shared { SHARED_BATCH_BUDGET } else { Duration::from_millis(time_left_ms / 2) };
        let outcome = self.run_within(&job, receipt, budget).await;
        if let (Some(n), Some(_)) = (count, job.target()) {
            match outcome {
                // Every `Defer` of a sync job comes before its snapshot write (see `OwnReturns`).
                JobOutcome::Defer(_) => self.deferrals.note(sqs::message_id(m), n, Returned::Deferred),
                // Only on a clean receive, and nothing ran: as a record returned unstarted.
                JobOutcome::NotYet(_) => self.deferrals.note(sqs::message_id(m), n, Returned::Unstarted),
                _ => {}
            }
        }
        let latency_ms = started.elapsed().as_millis() as u64;
        let result = match &outcome {
            JobOutcome::Completed(name) => {
                self.stats.done.fetch_add(1, Ordering::Relaxed);
                if claimed {
                    if let Err(e) = self.state.complete(job.job_id.as_str(), name, self.now()).await {
                        // The effect happened; a retry will find it (or redo it, if idempotent).
                        tracing::warn!(job_id = %job.job_id, error = %e, "completion not recorded");
                    }
                }
                RecordResult::Done
            }
            JobOutcome::Defer(d) | JobOutcome::NotYet(d) => {
                self.stats.deferred.fetch_add(1, Ordering::Relaxed);
                self.release(claimed, job.job_id.as_str()).await;
                RecordResult::Deferred { delay_s: *d }
            }
            JobOutcome::PublishPending => {
                self.stats.deferred.fetch_add(1, Ordering::Relaxed);
                self.release(claimed, job.job_id.as_str()).await;
                RecordResult::Deferred { delay_s: sqs::retry_delay_s(m, self.cfg.defer_min_s.max(1)) }
            }
            JobOutcome::Retry(class) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                let attempts = self
                    .state
                    .add_failure(job.job_id.as_str(), self.now() + self.cfg.idempotency_ttl_ms)
                    .await
                    .unwrap_or(1);
                self.release(claimed, job.job_id.as_str()).await;
                if attempts >= self.cfg.max_attempts {
                    let dl = json!({"job": job, "reason": format!("gave up after {attempts} attempts"), "error_class": class, "attempts": attempts});
                    if self.dead_letter(job.job_id.as_str(), group, dl).await {
                        self.complete_dead_lettered(claimed, job.job_id.as_str()).await;
                        RecordResult::Done
                    } else {
                        RecordResult::Failed
                    }
                } else {
                    RecordResult::Deferred { delay_s: backoff_s(attempts) }
                }
            }
            JobOutcome::DeadLetter { reason, class } => {
                let dl = json!({"job": job, "reason": reason, "error_class": class, "attempts": 1});
                if self.dead_letter(job.job_id.as_str(), group, dl).await {
                    self.complete_dead_lettered(claimed, job.job_id.as_str()).await;
                    RecordResult::Done
                } else {
                    self.release(claimed, job.job_id.as_str()).await;
                    RecordResult::Failed
                }
            }
        };
        let (name, class) = match &outcome {
            JobOutcome::Completed(n) => (*n, ""),
            JobOutcome::Defer(_) | JobOutcome::NotYet(_) => ("deferred", ""),
            JobOutcome::PublishPending => ("publish_pending", "publish"),
            JobOutcome::Retry(c) => ("retry", *c),
            JobOutcome::DeadLetter { class, .. } => ("dead_lettered", *class),
        };
        tracing::info!(outcome = name, error_class = (!class.is_empty()).then_some(class), latency_ms, "job");
        result
    }

    /// Releases a claim (if the job took one) so the job can run again; a failed release is
    /// logged (the claim then expires with the invocation's time, and the job runs after that).
    async fn release(&self, claimed: bool, job_id: &str) {
        if !claimed {
            return;
        }
        if let Err(e) = self.state.release(job_id).await {
            tracing::warn!(job_id, error = %e, "claim not released; it expires with this invocation");
        }
    }

    /// Marks a dead-lettered job complete (if it took a claim); if that fails, or for a job
    /// without a claim, a redelivery dead-letters it again (the DLQ drops the same deduplication
    /// id within 5 minutes) — logged, never silent.
    async fn complete_dead_lettered(&self, claimed: bool, job_id: &str) {
        if !claimed {
            return;
        }
        if let Err(e) = self.state.complete(job_id, "dead_lettered", self.now()).await {
            tracing::warn!(job_id, error = %e, "dead-lettered job not marked complete");
        }
    }

    /// A job of many steps saved a step (`progress`: the first save of this run). Only its
    /// consecutive failures count toward the DLQ: a long backfill meeting a transient error a
    /// few times a day must not be dead-lettered for their sum. A message that comes back after
    /// a failure is a `Redelivery` (a failure notes nothing in `deferrals`), so only those clear.
    async fn progressed(&self, job: &Job, receipt: Receipt, first_save: bool) {
        if first_save && receipt == Receipt::Redelivery {
            if let Err(e) = self.state.clear_failures(job.job_id.as_str()).await {
                tracing::warn!(job_id = %job.job_id, error = %e, "failure count not reset after progress");
            }
        }
    }

    /// Defer until the limiter's next credit (SQS visibility has whole seconds), at least
    /// `DEFER_MIN_S`.
    fn defer_for(&self, wait_ms: u64) -> JobOutcome {
        JobOutcome::Defer(self.defer_s(wait_ms))
    }

    fn defer_s(&self, wait_ms: u64) -> u32 {
        (wait_ms.div_ceil(1000) as u32).max(self.cfg.defer_min_s).max(1)
    }

    /// Performs one job (claimed, if it is not a sync job); a job made of many calls (a
    /// backfill) starts no new call after `budget` and comes back for the rest.
    /// `receipt`: how this message arrived (see the sync-job rule below).
    pub async fn run_within(&self, job: &Job, receipt: Receipt, budget: Duration) -> JobOutcome {
        let mall = &job.mall_id;
        if receipt == Receipt::AfterOwnFinish {
            // Its last run here finished; it came back only behind another record.
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            self.stats.returned_finished.fetch_add(1, Ordering::Relaxed);
            return JobOutcome::Completed("already_done");
        }
        let first_receive = receipt != Receipt::Redelivery;
        if let Some((kind, id)) = job.target() {
            if first_receive && self.versions.covers(mall, kind, &id, job.event_received_ms, job.job_id.as_str()) {
                // What the head read below would find (see `memo`), known without it.
                self.stats.coalesced_unread.fetch_add(1, Ordering::Relaxed);
                self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                return JobOutcome::Completed("coalesced");
            }
            // On a receive as good as a first (no run of this message stored anything, so the
            // head read can only lead to a call or a coalesce, never to a republish): when the
            // call would be deferred after the read, defer before it — a job is read once per
            // call, not once per run (and, in its group's turn, not before the answers of the
            // group's earlier jobs). A job the read would have coalesced waits for credit it
            // does not need; its next receive decides it, by the versions known then.
            if matches!(receipt, Receipt::First | Receipt::AfterOwnReturn) {
                if let Some(wait_ms) = self.cafe24.known_deferral(mall, job.class).await {
                    self.stats.deferred_unread.fetch_add(1, Ordering::Relaxed);
                    return JobOutcome::NotYet(self.defer_s(wait_ms));
                }
            }
            let head = if receipt == Receipt::AfterOwnDeferral {
                self.stats.head_reads_skipped.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            } else {
                self.state.head(mall, kind, &id).await
            };
            if let Ok(Some(h)) = &head {
                self.versions.note(mall, kind, &id, h.fetched_at_ms, &h.stored_by);
            }
            match head {
                Ok(Some(head)) if head.fetched_at_ms > job.event_received_ms => {
                    if head.stored_by == job.job_id.as_str() {
                        // This job stored it. A redelivery of this message may follow a run
                        // that stopped before the bus took the event: publish it from the store
                        // (same event id, no second call). A first receive is another message
                        // of a job already done (a re-send): the message that stored the version
                        // was acknowledged only after its event was out, and it was ahead in
                        // the group.
                        if !first_receive && !self.publish_stored(job, kind, &id).await {
                            return JobOutcome::PublishPending;
                        }
                        self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                        return JobOutcome::Completed("already_stored");
                    }
                    // The stored version already reflects the event; its own job publishes it.
                    self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                    return JobOutcome::Completed("coalesced");
                }
                Ok(_) => {}
                Err(e) => {
                    // Nothing is known about what is stored: no call before it is.
                    tracing::warn!(job_id = %job.job_id, error = %e, "snapshot store unavailable");
                    return JobOutcome::Defer(STORE_DOWN_DEFER_S);
                }
            }
        }
        let fetched_at = self.now();
        let result: Result<Option<serde_json::Value>, Cafe24Error> = match &job.kind {
            JobKind::SyncOrder { order_id } => {
                self.cafe24.order_with_items(mall, job.shop_no, order_id, job.class).await.map(|o| Some(o.raw))
            }
            JobKind::SyncProduct { product_no } => {
                self.cafe24.product(mall, job.shop_no, *product_no, job.class).await.map(|p| Some(p.raw))
            }
            JobKind::SyncCustomer { member_id } => {
                match self.cafe24.customers(mall, job.shop_no, &[member_id], job.class).await {
                    Ok(list) => list.into_iter().next().map(|c| Some(c.raw)).ok_or(Cafe24Error::NotFound),
                    Err(e) => Err(e),
                }
            }
            JobKind::Reconcile => return self.reconcile(job, receipt).await,
            // Boxed: its future would otherwise enlarge every job's (debug builds run on 2 MiB stacks).
            JobKind::Command(q) => return Box::pin(self.command(job, q)).await,
            JobKind::Backfill { resource, since_ms, until_ms, only_shop } => {
                return self.backfill(job, *resource, (*since_ms, *until_ms), *only_shop, budget, receipt).await
            }
            JobKind::RefreshToken => {
                return match self
                    .cafe24
                    .token(mall, Need::RenewRefreshBefore(self.now() + self.cfg.keepalive_window_ms))
                    .await
                {
                    Ok(_) => JobOutcome::Completed("refreshed"),
                    Err(e) => self.map_error(job, e).await,
                };
            }
        };
        match result {
            Ok(data) => {
                if let Some((kind, id)) = job.target() {
                    let stored =
                        self.state.upsert(mall, kind, &id, fetched_at, data.as_ref(), job.job_id.as_str()).await;
                    match stored {
                        Ok(Upsert::Stored) => self.versions.note(mall, kind, &id, fetched_at, job.job_id.as_str()),
                        // Something at least as new is stored (or was confirmed), by a job not known here.
                        Ok(Upsert::Older | Upsert::Unchanged) => self.versions.note(mall, kind, &id, fetched_at, ""),
                        Err(_) => {}
                    }
                    match stored {
                        Ok(Upsert::Stored) => {
                            if !self.publish(job, kind, fetched_at, data.as_ref()).await {
                                return JobOutcome::PublishPending;
                            }
                        }
                        // Cafe24 returned what is stored: no new version, no event.
                        Ok(Upsert::Unchanged) => {
                            self.stats.synced.fetch_add(1, Ordering::Relaxed);
                            self.stats.unchanged.fetch_add(1, Ordering::Relaxed);
                            return JobOutcome::Completed("unchanged");
                        }
                        // A newer version is stored: its own job publishes it.
                        Ok(Upsert::Older) => {}
                        Err(e) => {
                            if let Some(big) = e.too_large() {
                                // No retry can store it: one billed call, then the DLQ with the sizes.
                                return JobOutcome::DeadLetter { reason: big.to_string(), class: "snapshot_too_large" };
                            }
                            tracing::warn!(job_id = %job.job_id, error = %e, "snapshot not stored");
                            return JobOutcome::Retry("store");
                        }
                    }
                }
                self.stats.synced.fetch_add(1, Ordering::Relaxed);
                JobOutcome::Completed("synced")
            }
            Err(e) => self.map_error(job, e).await,
        }
    }
}
