//! The dispatcher's handlers: SQS batches from the inbox, and the scheduled keep-alive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use relay_domain::delivery::{mall_event, webhook_received, BusEvent, MallStatusEvent};
use relay_domain::envelope::InboxEnvelope;
use relay_domain::jobs::{Job, JobKind, JOB_VERSION};
use relay_domain::ports::{EventBus, GroupId, MessageQueue, OutboundMessage, ScheduleCursor, VisibilityControl};
use relay_domain::ratelimit::Class;
use relay_domain::routing::{plan, Dispatch};

use crate::config::DispatcherConfig;
use relay_domain::tokens::TokenStore;
use relay_domain::{DedupId, MallId, ShopNo, TraceId};
use relay_lambda::fifo::sqs::retry_delay_s;
use relay_lambda::fifo::{drive, sqs, RecordResult};
use relay_lambda::metrics::{self, Deltas, Sample, Unit};
use relay_lambda::telemetry::record_span;
use tracing::Instrument;

#[derive(Debug, Default)]
pub struct DispatchStats {
    /// Envelopes routed to jobs.
    pub routed: AtomicU64,
    /// Jobs accepted by the work queue.
    pub jobs: AtomicU64,
    /// Envelopes ignored (event numbers routed `ignore`: not even published).
    pub ignored: AtomicU64,
    /// Envelopes only forwarded to the app (no sync route: billing, expiry, unknown numbers).
    pub forwarded: AtomicU64,
    /// Events the bus accepted.
    pub published: AtomicU64,
    /// Events the bus refused or could not take (their inbox message comes back).
    pub publish_failed: AtomicU64,
    /// Envelopes parked.
    pub parked: AtomicU64,
    /// Malls uninstalled.
    pub uninstalled: AtomicU64,
    /// Entries the work queue refused and that were retried.
    pub retried_entries: AtomicU64,
    /// Keep-alive jobs enqueued.
    pub keepalive_jobs: AtomicU64,
    /// Reconcile jobs enqueued.
    pub reconcile_jobs: AtomicU64,
    /// Scheduled runs that stopped before reaching every mall (the next run goes on from there).
    pub fanout_cut: AtomicU64,
    /// Commands queued as jobs.
    pub commands: AtomicU64,
    /// Commands refused (answered with `command.failed`).
    pub commands_refused: AtomicU64,
}

/// The dispatcher (`Q` the work queue, `P` the parking queue, `S` the token store, `V` the
/// inbox's visibility control, `B` the event bus).
pub struct Dispatcher<Q, S, P = Q, V = relay_aws::sqs::SqsVisibility, B = relay_aws::bus::EventBridgeBus> {
    work: Q,
    parking: P,
    tokens: S,
    inbox: V,
    bus: B,
    cfg: DispatcherConfig,
    clock: fn() -> u64,
    pub stats: DispatchStats,
    deltas: Deltas,
}

/// Puts a webhook's ids on its record span.
fn record_ids(span: &tracing::Span, env: &InboxEnvelope) {
    span.record("trace_id", env.trace_id.as_str());
    span.record("dedup_id", env.dedup_id.as_str());
    if let Some(m) = &env.mall_id {
        span.record("mall_id", m.as_str());
    }
    if let Some(e) = env.event_no {
        span.record("event_no", e.0);
    }
}

/// Most jobs one invocation sends in one go (ten `SendMessageBatch` calls).
const BATCH_PATH_MAX_JOBS: usize = 100;

/// Rounds of re-sending refused entries before giving the inbox message back.
const SEND_ROUNDS: usize = 3;

/// A scheduled fan-out sends its messages in waves of this many `SendMessageBatch` requests
/// at once, each wave lasting at least [`FANOUT_WAVE_MIN`]: at most 100 requests a second, a
/// third of what a FIFO queue takes per action without high throughput, the rest left to live
/// dispatching (docs/scale.md).
const FANOUT_IN_FLIGHT: usize = 2;
/// See [`FANOUT_IN_FLIGHT`].
const FANOUT_WAVE_MIN: Duration = Duration::from_millis(20);
/// No wave starts with less time left than this (a wave's sends and their retries, the
/// cursor write, the metrics).
const FANOUT_MARGIN: Duration = Duration::from_secs(5);

impl Dispatcher<relay_aws::sqs::SqsQueue, relay_aws::tokens::DynamoTokenStore> {
    /// The production wiring: the work and parking queues and the token table named by `cfg`.
    pub fn on_aws(aws: &relay_aws::Clients, cfg: DispatcherConfig) -> Self {
        use relay_aws::sqs::{SqsQueue, SqsVisibility};
        Self::new(
            SqsQueue::new(aws.sqs.clone(), cfg.work_queue_url.clone()),
            SqsQueue::new(aws.sqs.clone(), cfg.parking_queue_url.clone()),
            relay_aws::tokens::DynamoTokenStore::new(aws.ddb.clone(), cfg.token_table.clone())
                .fencing(cfg.rate_limit_table.clone(), cfg.key_scope.clone()),
            SqsVisibility::new(aws.sqs.clone(), cfg.inbox_queue_url.clone()),
            relay_aws::bus::EventBridgeBus::new(aws.events.clone(), cfg.event_bus.clone()),
            cfg,
        )
    }
}

impl<Q, S, P, V, B> Dispatcher<Q, S, P, V, B>
where
    Q: MessageQueue,
    S: TokenStore + ScheduleCursor,
    P: MessageQueue,
    V: VisibilityControl,
    B: EventBus,
{
    /// Wires the dispatcher.
    pub fn new(work: Q, parking: P, tokens: S, inbox: V, bus: B, cfg: DispatcherConfig) -> Self {
        Self {
            work,
            parking,
            tokens,
            inbox,
            bus,
            cfg,
            clock: relay_lambda::clock::now_ms,
            stats: DispatchStats::default(),
            deltas: Deltas::default(),
        }
    }

    /// The work queue (tests inspect their wrappers through it).
    pub fn work_queue(&self) -> &Q {
        &self.work
    }

    /// Sends all messages, retrying refused entries; `true` only if every one was accepted.
    async fn send_all(&self, msgs: Vec<OutboundMessage>) -> bool {
        let mut pending = msgs;
        for round in 0..SEND_ROUNDS {
            let mut still = Vec::new();
            for chunk in pending.chunks(10) {
                match self.work.send_batch(chunk).await {
                    Ok(failed) => still.extend(failed.into_iter().filter_map(|i| chunk.get(i).cloned())),
                    Err(e) => {
                        tracing::warn!(error = %e, "SendMessageBatch failed");
                        still.extend(chunk.iter().cloned());
                    }
                }
            }
            if still.is_empty() {
                return true;
            }
            self.stats.retried_entries.fetch_add(still.len() as u64, Ordering::Relaxed);
            pending = still;
            tokio::time::sleep(Duration::from_millis(50 * (round as u64 + 1))).await;
        }
        false
    }

    /// A job's work-queue message. Live jobs share the mall's group (its rate-limit key), bulk
    /// jobs (keep-alive, reconciliation) go in `<key>.bulk`: a FIFO group runs in order, so bulk
    /// work waiting for credit never holds a live webhook behind it, while both groups still
    /// draw on the one limiter key (whose live reserve keeps live calls flowing).
    fn job_message(&self, job: &Job) -> Option<OutboundMessage> {
        Some(OutboundMessage {
            group_id: self.cfg.key_scope.key(&job.mall_id).group(job.class),
            dedup_id: job.job_id.clone(),
            body: serde_json::to_string(job).ok()?,
        })
    }

    /// Publishes `events`; `true` when the bus accepted every one (a refusal is counted and
    /// logged by event id, never with the detail).
    async fn publish(&self, events: &[BusEvent]) -> bool {
        if events.is_empty() {
            return true;
        }
        let failed = match self.bus.publish(events).await {
            Ok(failed) => failed.len(),
            Err(e) => {
                tracing::warn!(error = %e, "event bus unavailable");
                events.len()
            }
        };
        self.stats.published.fetch_add((events.len() - failed) as u64, Ordering::Relaxed);
        self.stats.publish_failed.fetch_add(failed as u64, Ordering::Relaxed);
        failed == 0
    }

    /// Parks the inbox message unchanged (the reason goes in the group id, see
    /// [`GroupId::parked_for`]): whatever the inbox held fits the parking queue.
    async fn park(&self, body: &str, reason: &str, dedup_seed: &str) -> (RecordResult, &'static str) {
        let msg = OutboundMessage {
            group_id: GroupId::parked_for(reason),
            dedup_id: DedupId::derive("park", &[dedup_seed.as_bytes(), reason.as_bytes()]),
            body: body.to_owned(),
        };
        match self.parking.send(&msg).await {
            Ok(()) => {
                self.stats.parked.fetch_add(1, Ordering::Relaxed);
                (RecordResult::Done, "parked")
            }
            Err(e) => {
                tracing::error!(error = %e, class = e.class(), reason, "parking failed; the message stays on the inbox");
                (RecordResult::Failed, "park_failed")
            }
        }
    }

    async fn handle_record(&self, m: &SqsMessage) -> RecordResult {
        let body = m.body.as_deref().unwrap_or("");
        let id = m.message_id.as_deref().unwrap_or("");
        let span = tracing::Span::current();
        span.record("message_id", id);
        let env: InboxEnvelope = match serde_json::from_str(body) {
            Ok(e) => e,
            Err(e) => {
                let (result, outcome) = self.park(body, "not_an_envelope", id).await;
                tracing::error!(message_id = id, error = %e, outcome, "inbox message is not an envelope");
                return result;
            }
        };
        record_ids(&span, &env);
        if env.v != relay_domain::ENVELOPE_VERSION {
            let (result, outcome) = self.park(body, "unknown_envelope_version", env.dedup_id.as_str()).await;
            tracing::warn!(version = env.v, outcome, "dispatch");
            return result;
        }
        let d = plan(&self.cfg.routing, &env);
        let (result, outcome, jobs) = match d.clone() {
            Dispatch::Jobs(jobs) => {
                let n = jobs.len();
                let msgs: Vec<OutboundMessage> = jobs.iter().filter_map(|j| self.job_message(j)).collect();
                if msgs.len() != n {
                    let (result, outcome) = self.park(body, "job_not_encodable", env.dedup_id.as_str()).await;
                    (result, outcome, 0)
                } else if self.send_all(msgs).await {
                    self.stats.routed.fetch_add(1, Ordering::Relaxed);
                    self.stats.jobs.fetch_add(n as u64, Ordering::Relaxed);
                    (RecordResult::Done, "routed", n)
                } else {
                    // Not acknowledged: comes back; already accepted jobs are deduplicated by SQS
                    // (5 minutes) and by the worker's idempotency after that.
                    (RecordResult::Deferred { delay_s: retry_delay_s(m, 2) }, "send_failed", n)
                }
            }
            Dispatch::Uninstall(mall_id, at) => {
                match self.tokens.mark_uninstalled(&mall_id, at.ms, (self.clock)()).await {
                    Ok(true) => {
                        self.stats.uninstalled.fetch_add(1, Ordering::Relaxed);
                        (RecordResult::Done, "uninstalled", 0)
                    }
                    // Delivered late: the merchant has reinstalled since. The new tokens are kept;
                    // the webhook still reaches the app (its payload says which deletion it was).
                    Ok(false) => {
                        tracing::info!(
                            deleted_at_ms = at.ms,
                            from_cafe24 = at.from_cafe24,
                            "an uninstall older than the mall's installation: not applied"
                        );
                        (RecordResult::Done, "uninstall_superseded", 0)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "token store unavailable");
                        (RecordResult::Deferred { delay_s: retry_delay_s(m, 5) }, "store_failed", 0)
                    }
                }
            }
            Dispatch::Forward(reason) => {
                self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                (RecordResult::Done, reason, 0)
            }
            Dispatch::Ignore(reason) => {
                self.stats.ignored.fetch_add(1, Ordering::Relaxed);
                (RecordResult::Done, reason, 0)
            }
            Dispatch::Park(reason) => {
                let (result, outcome) = self.park(body, reason, env.dedup_id.as_str()).await;
                (result, outcome, 0)
            }
        };
        // Delivery: every authentic, identified webhook that was not parked or ignored reaches
        // the bus before the inbox message is acknowledged; a refusal returns the message (its
        // jobs are deduplicated on the way back, the events carry the same ids).
        let (result, outcome) = match (&result, outcome) {
            (
                RecordResult::Done,
                "routed" | "uninstalled" | "uninstall_superseded" | "forwarded" | "unknown_event_no",
            ) => {
                let mut events: Vec<BusEvent> = webhook_received(&env).into_iter().collect();
                if let (Dispatch::Uninstall(mall, _), "uninstalled") = (&d, outcome) {
                    events.push(mall_event(mall, MallStatusEvent::Uninstalled, env.received_at_ms));
                }
                if self.publish(&events).await {
                    (result, outcome)
                } else {
                    (RecordResult::Deferred { delay_s: retry_delay_s(m, 2) }, "publish_failed")
                }
            }
            _ => (result, outcome),
        };
        tracing::info!(outcome, jobs, "dispatch");
        result
    }

    /// The common case in one go: when every record of the batch is a current-version webhook
    /// that routes to jobs, all their jobs are sent in batch order through `SendMessageBatch`
    /// (ten per call) instead of at least one call per record. Anything else in the batch, or a
    /// refusal that outlasts the retries, returns `false` and the batch takes the per-record path
    /// — where jobs already accepted here are deduplicated by SQS (same deduplication ids).
    async fn dispatch_all(&self, records: &[SqsMessage]) -> bool {
        let mut planned = Vec::with_capacity(records.len());
        for m in records {
            let Ok(env) = serde_json::from_str::<InboxEnvelope>(m.body.as_deref().unwrap_or("")) else {
                return false;
            };
            if env.v != relay_domain::ENVELOPE_VERSION {
                return false;
            }
            let Dispatch::Jobs(jobs) = plan(&self.cfg.routing, &env) else { return false };
            let msgs: Vec<OutboundMessage> = jobs.iter().filter_map(|j| self.job_message(j)).collect();
            if msgs.len() != jobs.len() {
                return false;
            }
            planned.push((m, env, msgs));
        }
        let all: Vec<OutboundMessage> = planned.iter().flat_map(|(_, _, msgs)| msgs.iter().cloned()).collect();
        // Large bulk events take the per-record path, which checks the time left between records.
        if all.len() > BATCH_PATH_MAX_JOBS || !self.send_all(all).await {
            return false;
        }
        let events: Vec<BusEvent> = planned.iter().filter_map(|(_, env, _)| webhook_received(env)).collect();
        if !self.publish(&events).await {
            // Per record from here: what the bus took is published again with the same ids.
            return false;
        }
        for (m, env, msgs) in &planned {
            let span = record_span();
            span.record("message_id", m.message_id.as_deref().unwrap_or(""));
            record_ids(&span, env);
            let _in = span.enter();
            self.stats.routed.fetch_add(1, Ordering::Relaxed);
            self.stats.jobs.fetch_add(msgs.len() as u64, Ordering::Relaxed);
            tracing::info!(outcome = "routed", jobs = msgs.len(), "dispatch");
        }
        true
    }

    /// Handles one batch: of the inbox, or of the command queue (one mapping per queue, so a
    /// batch comes from one of them).
    pub async fn handle_batch(&self, event: SqsEvent, time_left: impl Fn() -> Duration) -> SqsBatchResponse {
        let records = event.records;
        let arn = self.cfg.command_queue_arn.as_deref();
        let commands = arn.is_some() && records.first().and_then(|m| m.event_source_arn.as_deref()) == arn;
        if !commands && self.dispatch_all(&records).await {
            metrics::emit("dispatcher", &self.deltas.take(&self.samples()));
            return sqs::response(Vec::new());
        }
        let plan = drive(
            &records,
            sqs::message_id,
            sqs::group_id,
            time_left,
            Duration::from_millis(self.cfg.min_time_left_ms),
            |i, _| {
                let m = records.get(i);
                async move {
                    match m {
                        Some(m) if commands => self.handle_command(m).instrument(record_span()).await,
                        Some(m) => self.handle_record(m).instrument(record_span()).await,
                        None => RecordResult::Failed,
                    }
                }
            },
        )
        .await;
        // A command is queued, answered or returned, never deferred: only the inbox's records are.
        if !commands {
            sqs::apply_visibility(&plan, &records, &self.inbox).await;
        }
        metrics::emit("dispatcher", &self.deltas.take(&self.samples()));
        sqs::response(plan.returned)
    }

    /// One of the app's commands (a batch of the command queue runs in each group's order): a
    /// valid command becomes a job in the mall's command group of the work queue (`<key>.cmd`:
    /// behind no sync or bulk work, on the mall's limiter in the live class), deduplicated by
    /// mall and key; a refused one is answered on the bus with `command.failed` and its reason.
    /// Nothing is dropped silently: what cannot be sent or published comes back.
    async fn handle_command(&self, m: &SqsMessage) -> RecordResult {
        use relay_domain::command::{command_job, named, result_event, Named, Outcome};
        let body = m.body.as_deref().unwrap_or("");
        let id = m.message_id.as_deref().unwrap_or("");
        let span = tracing::Span::current();
        span.record("message_id", id);
        let now = (self.clock)();
        let allowed = |c: relay_domain::command::Command| {
            if self.cfg.command_allow.allows_command(&c) {
                Ok(c)
            } else {
                Err(relay_domain::command::Refusal::NotAllowed)
            }
        };
        match relay_domain::command::Command::parse(body).and_then(allowed) {
            Ok(cmd) => {
                span.record("mall_id", cmd.mall_id.as_str());
                let job = command_job(&cmd, now);
                span.record("job_id", job.job_id.as_str());
                let key = self.cfg.key_scope.key(&cmd.mall_id);
                let group =
                    GroupId::for_key(&format!("{}.cmd", key.as_str())).unwrap_or_else(|| key.group(Class::Live));
                let msg = OutboundMessage { group_id: group, dedup_id: job.job_id.clone(), body: job.to_body() };
                if self.send_all(vec![msg]).await {
                    self.stats.commands.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(outcome = "command_queued", method = cmd.method.as_str(), "command");
                    RecordResult::Done
                } else {
                    tracing::warn!(outcome = "send_failed", "command");
                    RecordResult::Failed
                }
            }
            Err(refusal) => {
                // Named by what was valid of it; without a valid key, by the SQS message id.
                let n = named(body);
                let key = n.key.clone().unwrap_or_else(|| format!("message:{id}"));
                let outcome = Outcome::Failed {
                    reason: refusal.code().into(),
                    status: None,
                    body: serde_json::json!({"message": refusal.message()}),
                };
                let n = Named { key: n.key, mall_id: n.mall_id };
                let event = result_event(&key, &n, None, &outcome, "");
                if self.publish(std::slice::from_ref(&event)).await {
                    self.stats.commands_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(outcome = "command_refused", reason = refusal.code(), "command");
                    RecordResult::Done
                } else {
                    RecordResult::Failed
                }
            }
        }
    }

    /// The cumulative counters behind the dispatcher's metrics.
    pub fn samples(&self) -> Vec<Sample> {
        let s = &self.stats;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("WebhooksRouted", Unit::Count, n(&s.routed)),
            ("JobsEnqueued", Unit::Count, n(&s.jobs)),
            ("WebhooksIgnored", Unit::Count, n(&s.ignored)),
            ("WebhooksForwarded", Unit::Count, n(&s.forwarded)),
            ("EventsPublished", Unit::Count, n(&s.published)),
            ("EventsPublishFailed", Unit::Count, n(&s.publish_failed)),
            ("WebhooksParked", Unit::Count, n(&s.parked)),
            ("CommandsQueued", Unit::Count, n(&s.commands)),
            ("CommandsRefused", Unit::Count, n(&s.commands_refused)),
            ("MallsUninstalled", Unit::Count, n(&s.uninstalled)),
            ("JobSendRetries", Unit::Count, n(&s.retried_entries)),
            ("KeepAliveJobs", Unit::Count, n(&s.keepalive_jobs)),
            ("ReconcileJobs", Unit::Count, n(&s.reconcile_jobs)),
            ("ScheduledRunsCut", Unit::Count, n(&s.fanout_cut)),
        ]
    }

    /// One bulk job of `kind` per mall for a scheduled run, its id per (mall, `slot`), as
    /// messages by mall (a job whose message cannot be built is left out and logged).
    fn scheduled(
        &self,
        malls: &[MallId],
        kind: JobKind,
        name: &str,
        slot: u64,
        now_ms: u64,
    ) -> Vec<(MallId, OutboundMessage)> {
        let slot_text = slot.to_string();
        malls
            .iter()
            .map(|m| Job {
                v: JOB_VERSION,
                job_id: DedupId::derive(name, &[m.as_str().as_bytes(), slot_text.as_bytes()]),
                mall_id: m.clone(),
                kind: kind.clone(),
                class: Class::Bulk,
                trace_id: Some(TraceId::derived(name, slot)),
                event_received_ms: now_ms,
                // Reconcile and keep-alive are per mall: the logs and the tokens are the mall's.
                shop_no: ShopNo::DEFAULT,
            })
            .filter_map(|j| match self.job_message(&j) {
                Some(msg) => Some((j.mall_id, msg)),
                None => {
                    tracing::error!(mall_id = %j.mall_id, job_id = %j.job_id, "scheduled job not serializable");
                    None
                }
            })
            .collect()
    }

    /// Sends a scheduled run's messages (`name`: its cursor), in mall order from where the last
    /// run stopped, wrapping around, for as long as the invocation has time: a run cut short
    /// saves the last mall it reached, so with 10,000 malls and a slow queue every mall is still
    /// reached within a few runs — never the same ones left out every time. Returns
    /// (messages sent, whether every one was).
    async fn fan_out(
        &self,
        name: &str,
        mut msgs: Vec<(MallId, OutboundMessage)>,
        time_left: &(dyn Fn() -> Duration + Sync),
    ) -> (usize, bool) {
        msgs.sort_by(|a, b| a.0.cmp(&b.0));
        let cursor = self.tokens.cursor(name).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "{name}: cursor not readable; starting at the first mall");
            None
        });
        let start = cursor.as_ref().map_or(0, |c| msgs.partition_point(|(m, _)| m <= c));
        msgs.rotate_left(start);
        let (mut sent, mut reached) = (0, None);
        for wave in msgs.chunks(10 * FANOUT_IN_FLIGHT) {
            if time_left() < FANOUT_MARGIN {
                break;
            }
            let began = tokio::time::Instant::now();
            let sends = wave.chunks(10).map(|c| self.send_all(c.iter().map(|(_, m)| m.clone()).collect()));
            if !futures::future::join_all(sends).await.into_iter().all(|ok| ok) {
                break;
            }
            sent += wave.len();
            reached = wave.last().map(|(m, _)| m.clone());
            tokio::time::sleep_until(began + FANOUT_WAVE_MIN).await;
        }
        let complete = sent == msgs.len();
        if !complete {
            self.stats.fanout_cut.fetch_add(1, Ordering::Relaxed);
        }
        let save = if complete { None } else { reached.or(cursor) };
        if let Err(e) = self.tokens.save_cursor(name, save.as_ref()).await {
            tracing::warn!(error = %e, "{name}: cursor not stored; the next run starts at the first mall");
        }
        (sent, complete)
    }

    /// Scheduled reconciliation: one `Reconcile` job (bulk class) per active mall that is due, its id per
    /// mall and period of `RECONCILE_MINUTES`, so extra firings in one period add nothing.
    /// Returns the jobs enqueued.
    /// `time_left`: the invocation's; the run stops in time and the next one goes on from there
    /// ([`Self::fan_out`]).
    pub async fn reconcile_all(
        &self,
        now_ms: u64,
        time_left: impl Fn() -> Duration + Sync,
    ) -> Result<usize, relay_domain::ports::StoreError> {
        // Busy malls every period, quiet ones every `RECONCILE_QUIET_MINUTES` (a mall that
        // receives nothing may be one whose deliveries all fail: it is still checked then).
        let malls = self.tokens.due_for_reconcile(now_ms.saturating_sub(self.cfg.reconcile_quiet_ms)).await?;
        let slot = now_ms / self.cfg.reconcile_interval_ms.max(1);
        let msgs = self.scheduled(&malls, JobKind::Reconcile, "reconcile", slot, now_ms);
        let (sent, complete) = self.fan_out("reconcile", msgs, &time_left).await;
        self.stats.reconcile_jobs.fetch_add(sent as u64, Ordering::Relaxed);
        metrics::emit("dispatcher", &self.deltas.take(&self.samples()));
        tracing::info!(
            jobs = sent,
            malls = malls.len(),
            outcome = if complete { "enqueued" } else { "cut" },
            "reconcile"
        );
        Ok(sent)
    }

    /// Scheduled keep-alive: one `RefreshToken` job per mall whose refresh token expires within
    /// the window (job id per mall and day, so a re-run the same day adds nothing). Returns
    /// (jobs enqueued, malls needing re-authorization).
    pub async fn keep_alive(
        &self,
        now_ms: u64,
        time_left: impl Fn() -> Duration + Sync,
    ) -> Result<(usize, usize), relay_domain::ports::StoreError> {
        let malls = self.tokens.expiring_before(now_ms + self.cfg.keepalive_window_ms).await?;
        let msgs = self.scheduled(&malls, JobKind::RefreshToken, "keepalive", now_ms / 86_400_000, now_ms);
        let (sent, ok) = self.fan_out("keepalive", msgs, &time_left).await;
        let reauth = self.tokens.needing_reauth().await?;
        for m in &reauth {
            tracing::warn!(mall_id = %m, outcome = "needs_reauth", "keepalive: mall must re-authorize");
        }
        self.stats.keepalive_jobs.fetch_add(sent as u64, Ordering::Relaxed);
        metrics::emit("dispatcher", &self.deltas.take(&self.samples()));
        // A gauge, not a counter: how many malls need re-authorization now (the
        // MallsNeedReauth alarm watches its maximum over the schedule's 12 h).
        metrics::emit("dispatcher", &[("MallsNeedingReauth", Unit::Count, reauth.len() as u64)]);
        tracing::info!(
            jobs = sent,
            malls = malls.len(),
            needs_reauth = reauth.len(),
            outcome = if ok { "enqueued" } else { "cut" },
            "keepalive"
        );
        Ok((sent, reauth.len()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn with_receives(n: &str) -> SqsMessage {
        serde_json::from_value(
            serde_json::json!({"messageId": "m", "body": "{}", "attributes": {"ApproximateReceiveCount": n}}),
        )
        .unwrap()
    }

    #[test]
    fn transient_retries_back_off_so_a_long_outage_spends_few_receives() {
        assert_eq!(retry_delay_s(&with_receives("1"), 2), 2);
        assert_eq!(retry_delay_s(&with_receives("10"), 2), 20);
        assert_eq!(retry_delay_s(&with_receives("999"), 2), 60);
        assert_eq!(retry_delay_s(&with_receives("junk"), 5), 5);
        // The inbox's maxReceiveCount (1000, infra/template.yaml) spent on deferrals alone:
        let total_s: u64 = (1..=1000).map(|n| u64::from(retry_delay_s(&with_receives(&n.to_string()), 2))).sum();
        assert!(total_s > 16 * 3600, "{total_s} s");
    }
}
