//! Ports: the traits through which functions reach queues. Adapters in `relay-aws` implement
//! them against SQS; `memory` (feature `test-util`) holds an in-memory fake for unit tests of
//! handler logic. Handlers and their tests never see an AWS type.

use std::error::Error as StdError;
use std::future::Future;

use crate::ids::{DedupId, MallId};

/// An SQS FIFO `MessageGroupId`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupId(String);

impl GroupId {
    /// Group of everything about one mall.
    pub fn mall(m: &MallId) -> Self {
        Self(m.as_str().to_owned())
    }

    /// Group for parked envelopes, which have no usable mall.
    pub fn parked() -> Self {
        Self("_parked".to_owned())
    }

    /// Group for envelopes the dispatcher parks, carrying the reason (`_parked.<reason>`): the
    /// envelope itself is parked unchanged, so parking never makes a message larger than the
    /// one ingest accepted. `reason` is a short snake_case class.
    pub fn parked_for(reason: &str) -> Self {
        let r: String = reason.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(100).collect();
        Self(format!("_parked.{r}"))
    }

    /// The reason of a group made by [`GroupId::parked_for`].
    pub fn parked_reason(group: &str) -> Option<&str> {
        group.strip_prefix("_parked.")
    }

    /// Group for a rate-limit key (`KeyScope::key`): 1..=128 characters of SQS's allowed set.
    pub fn for_key(key: &str) -> Option<Self> {
        let ok = !key.is_empty()
            && key.len() <= 128
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c.is_ascii_punctuation());
        ok.then(|| Self(key.to_owned()))
    }

    /// The group of `key`'s jobs of `class` (see [`crate::ratelimit::RateKey::group`]); always
    /// valid by the key's construction.
    pub(crate) fn for_rate_key(key: &crate::ratelimit::RateKey, class: crate::ratelimit::Class) -> Self {
        match class {
            crate::ratelimit::Class::Live => Self(key.as_str().to_owned()),
            crate::ratelimit::Class::Bulk => Self(format!("{}.bulk", key.as_str())),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One message to put on a FIFO queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundMessage {
    /// FIFO group: ordering and serialization unit.
    pub group_id: GroupId,
    /// Explicit deduplication id (content-based dedup is off everywhere).
    pub dedup_id: DedupId,
    /// Message body (JSON).
    pub body: String,
}

/// A queue send failed. Either way the message is *not* known to be stored.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Could not reach the queue service, or it failed (network, 5xx, throttling, timeout).
    #[error("queue unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync>),
    /// The service refused this queue or message (queue missing, access denied, invalid).
    #[error("queue rejected the message")]
    Rejected(#[source] Box<dyn StdError + Send + Sync>),
}

impl QueueError {
    /// Short class name for logs and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Rejected(_) => "rejected",
        }
    }
}

/// The source of a [`StoreError`] when a snapshot cannot be stored at any size the store
/// allows (even compressed): retrying cannot help.
#[derive(Debug, thiserror::Error)]
#[error("snapshot of {json_bytes} bytes is {stored_bytes} bytes compressed, over the {limit} bytes the store holds")]
pub struct SnapshotTooLarge {
    /// Length of the snapshot's JSON.
    pub json_bytes: usize,
    /// Length after compression.
    pub stored_bytes: usize,
    /// The store's limit.
    pub limit: usize,
}

impl StoreError {
    /// The [`SnapshotTooLarge`] behind this error, if that is what it is.
    pub fn too_large(&self) -> Option<&SnapshotTooLarge> {
        self.0.downcast_ref::<SnapshotTooLarge>()
    }
}

/// A store behind a port failed (network, throttling, 5xx). Not a refusal or a conflict: those
/// are results.
#[derive(Debug, thiserror::Error)]
#[error("store unavailable")]
pub struct StoreError(#[source] pub Box<dyn StdError + Send + Sync>);

/// The per-key rate limiter every Cafe24 call goes through.
pub trait RateGate: Send + Sync {
    /// Asks to make one call under `key` now.
    fn acquire(
        &self,
        key: &str,
        class: crate::ratelimit::Class,
    ) -> impl Future<Output = Result<crate::ratelimit::Acquire, StoreError>> + Send;
    /// Reports what Cafe24 said about its limits in a response.
    fn feedback(
        &self,
        key: &str,
        fb: &crate::ratelimit::Feedback,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// How long a call under `key` would wait now by what this process last saw of its state,
    /// without any I/O; `None` when that shows no wait or nothing is known. The state only moves
    /// forward, so the wait `acquire` would answer is at least this long.
    fn known_wait(&self, _key: &str, _class: crate::ratelimit::Class) -> Option<u64> {
        None
    }
}

/// Remembers one-time ids (OAuth state nonces) until they expire.
pub trait OnceStore: Send + Sync {
    /// Marks `id` used; `true` the first time, `false` when it was already used.
    fn consume(&self, id: &str, expires_ms: u64) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Result of claiming a job for execution (the Powertools idempotency design).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This caller runs the job.
    Claimed,
    /// It already completed: do not run it again.
    Completed(String),
    /// Another invocation is running it until this instant (epoch ms).
    InProgress {
        /// When that claim expires.
        until_ms: u64,
    },
}

/// Job idempotency records and real-attempt counters.
pub trait IdempotencyStore: Send + Sync {
    /// Claims `job_id`: succeeds when there is no record, it expired, or it is an in-progress
    /// claim whose holder's time ran out (`in_progress_until_ms`).
    fn claim(
        &self,
        job_id: &str,
        now_ms: u64,
        in_progress_until_ms: u64,
        expires_ms: u64,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;
    /// Marks the job completed with an outcome name.
    fn complete(&self, job_id: &str, outcome: &str, now_ms: u64)
        -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Drops the claim so a later delivery can run the job.
    fn release(&self, job_id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Counts one real failed attempt; returns the failures since the job last made progress.
    fn add_failure(&self, job_id: &str, expires_ms: u64) -> impl Future<Output = Result<u32, StoreError>> + Send;
    /// The job made progress (a saved page, an advanced checkpoint): its failures so far no
    /// longer count toward the dead-letter queue — only consecutive ones do.
    fn clear_failures(&self, job_id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// What the worker needs to know about a stored snapshot before a job runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotHead {
    /// When the stored version was fetched (epoch ms): its version.
    pub fetched_at_ms: u64,
    /// The job that stored it (the outbox: only that job's own later runs publish the version
    /// again, since only they can have stopped between storing and publishing).
    pub stored_by: String,
}

/// A stored snapshot: (version = fetched at, epoch ms; data, `None` for a tombstone).
pub type StoredSnapshot = (u64, Option<serde_json::Value>);

/// What an upsert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upsert {
    /// A new version was stored: the storing job publishes it.
    Stored,
    /// The stored version has exactly this content: no new version, nothing to publish; the
    /// stored one was confirmed fresh at this fetch (its head reads the later instant).
    Unchanged,
    /// A version fetched at the same time or later is stored: its own job publishes it.
    Older,
}

/// The up-to-date copy of each mall's orders, products and customers. Each version names the
/// job that stored it, which publishes its event after storing it; the snapshot is also that
/// job's idempotency record (a job whose version is stored has had its effect).
pub trait SnapshotStore: Send + Sync {
    /// The stored version and the job that stored it, if there is a snapshot; `fetched_at_ms`
    /// is the later of the version's fetch and its last confirmation ([`Upsert::Unchanged`]).
    fn head(
        &self,
        mall: &MallId,
        kind: crate::SnapshotKind,
        id: &str,
    ) -> impl Future<Output = Result<Option<SnapshotHead>, StoreError>> + Send;
    /// Stores `data` (or a tombstone when `None`) fetched at `fetched_at_ms` by job `by`,
    /// unless a snapshot fetched at the same time or later is already stored ([`Upsert::Older`])
    /// or the stored one has the same content ([`Upsert::Unchanged`]: compared by
    /// [`crate::delivery::content_digest`]).
    fn upsert(
        &self,
        mall: &MallId,
        kind: crate::SnapshotKind,
        id: &str,
        fetched_at_ms: u64,
        data: Option<&serde_json::Value>,
        by: &str,
    ) -> impl Future<Output = Result<Upsert, StoreError>> + Send;
    /// The stored snapshot, if there is one.
    fn snapshot(
        &self,
        mall: &MallId,
        kind: crate::SnapshotKind,
        id: &str,
    ) -> impl Future<Output = Result<Option<StoredSnapshot>, StoreError>> + Send;
}

/// Per-mall reconciliation state: how far the webhook logs were read, and what the last run
/// saw of the mall's webhook reception.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileState {
    /// Every log requested before this instant has been read (epoch ms, a whole second; `None`:
    /// never read, start at the look-back window). See `reconcile::LogWindow`.
    pub checkpoint_ms: Option<u64>,
    /// Cafe24's `reception_status` at the last run (`None`: not read yet).
    pub reception_on: Option<bool>,
    /// Failed deliveries the last run found in the logs.
    pub failed_logs: u64,
    /// Webhooks re-injected into the inbox, all runs.
    pub reinjected_total: u64,
    /// When the last run finished, epoch ms.
    pub last_run_ms: u64,
    /// The newest successful (non-test) delivery any run saw in the logs, epoch ms (0: none).
    pub last_delivered_ms: u64,
}

/// Where reconciliation keeps each mall's checkpoint.
pub trait ReconcileStore: Send + Sync {
    /// The mall's state (default when there is none).
    fn reconcile_state(&self, mall: &MallId) -> impl Future<Output = Result<ReconcileState, StoreError>> + Send;
    /// Replaces the mall's state.
    fn save_reconcile_state(
        &self,
        mall: &MallId,
        state: &ReconcileState,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Where a backfill keeps its progress (one per mall and resource).
pub trait BackfillStore: Send + Sync {
    /// The stored progress, if any.
    fn backfill_progress(
        &self,
        mall: &MallId,
        resource: crate::backfill::Resource,
    ) -> impl Future<Output = Result<Option<crate::backfill::Progress>, StoreError>> + Send;
    /// Replaces the progress.
    fn save_backfill_progress(
        &self,
        mall: &MallId,
        progress: &crate::backfill::Progress,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Where a scheduled fan-out (reconciliation, keep-alive) stopped when its time ran out, so the
/// next run starts there instead of at the first mall again: a run that cannot reach every mall
/// must not leave the same ones out every time.
pub trait ScheduleCursor: Send + Sync {
    /// The last mall the run `name` reached, if it stopped before the end.
    fn cursor(&self, name: &str) -> impl Future<Output = Result<Option<MallId>, StoreError>> + Send;
    /// Notes where the run stopped (`None`: it reached every mall).
    fn save_cursor(&self, name: &str, after: Option<&MallId>) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Where a configuration fault of the whole stack (Cafe24 refusing the relay's API version or
/// client credentials) is noted for operators: `relay mall status` shows the last one.
pub trait ConfigFaultStore: Send + Sync {
    /// Notes that Cafe24 refused the configuration with `fault` at `at_ms` (the latest wins).
    fn note_config_fault(&self, fault: &str, at_ms: u64) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The last fault noted and when, if any.
    fn config_fault(&self) -> impl Future<Output = Result<Option<(String, u64)>, StoreError>> + Send;
}

/// The event bus the user's application subscribes to.
pub trait EventBus: Send + Sync {
    /// Publishes the events (any number; the adapter splits them into requests). `Ok(failed)`
    /// lists the indices the bus refused (the others are accepted); `Err` = nothing known
    /// accepted.
    fn publish(
        &self,
        events: &[crate::delivery::BusEvent],
    ) -> impl Future<Output = Result<Vec<usize>, StoreError>> + Send;
}

/// A rate gate for a component that makes no Admin API call (webhook-ingest's install flow
/// only talks to the token endpoint): every `acquire` is refused with an error, so a call
/// added there by mistake fails loudly instead of going around the mall's limiter; feedback
/// is ignored. Needs no table and no grant.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAdminCalls;

#[derive(Debug, thiserror::Error)]
#[error("this component makes no Cafe24 Admin API call (no rate gate wired)")]
struct NoGateWired;

impl RateGate for NoAdminCalls {
    async fn acquire(&self, _: &str, _: crate::ratelimit::Class) -> Result<crate::ratelimit::Acquire, StoreError> {
        Err(StoreError(Box::new(NoGateWired)))
    }

    async fn feedback(&self, _: &str, _: &crate::ratelimit::Feedback) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Visibility control for messages returned to their queue (deferral without sleeping).
pub trait VisibilityControl: Send + Sync {
    /// Makes each (receipt handle, delay) visible again after its delay. Returns how many failed.
    fn defer(&self, items: &[(String, u32)]) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

/// Puts messages on one FIFO queue.
pub trait MessageQueue: Send + Sync {
    /// Sends one message; `Ok` only once the queue has durably accepted it.
    fn send(&self, msg: &OutboundMessage) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Sends up to 10 messages in one call. `Ok(failed)` lists the indices the queue refused
    /// (the others are stored); `Err` = the call as a whole failed (nothing known stored).
    fn send_batch(&self, msgs: &[OutboundMessage]) -> impl Future<Output = Result<Vec<usize>, QueueError>> + Send {
        async move {
            let mut failed = Vec::new();
            for (i, m) in msgs.iter().enumerate() {
                if self.send(m).await.is_err() {
                    failed.push(i);
                }
            }
            Ok(failed)
        }
    }
}

/// In-memory fakes of the ports, for unit tests of pure handler logic.
#[cfg(any(test, feature = "test-util"))]
pub mod memory {
    use std::sync::{Arc, Mutex, PoisonError};

    use super::*;

    /// Records every accepted message; can be switched to fail.
    #[derive(Clone, Default)]
    pub struct MemoryQueue {
        inner: Arc<Mutex<(Vec<OutboundMessage>, bool)>>,
    }

    impl MemoryQueue {
        /// Messages accepted so far.
        pub fn messages(&self) -> Vec<OutboundMessage> {
            self.inner.lock().unwrap_or_else(PoisonError::into_inner).0.clone()
        }

        /// From now on every send fails with [`QueueError::Unavailable`] (or succeeds again).
        pub fn set_failing(&self, failing: bool) {
            self.inner.lock().unwrap_or_else(PoisonError::into_inner).1 = failing;
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("memory queue is set to fail")]
    struct Failing;

    impl MessageQueue for MemoryQueue {
        async fn send(&self, msg: &OutboundMessage) -> Result<(), QueueError> {
            let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            if g.1 {
                return Err(QueueError::Unavailable(Box::new(Failing)));
            }
            g.0.push(msg.clone());
            Ok(())
        }
    }

    /// Shared "store down" switch of the fakes below.
    #[derive(Debug, thiserror::Error)]
    #[error("memory store is set to fail")]
    struct Down;

    fn down() -> StoreError {
        StoreError(Box::new(Down))
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[derive(Clone, Debug)]
    struct IdemRecord {
        completed: Option<String>,
        in_progress_until_ms: u64,
        expires_ms: u64,
    }

    #[derive(Default)]
    struct StateInner {
        idem: std::collections::HashMap<String, IdemRecord>,
        attempts: std::collections::HashMap<String, u32>,
        snapshots: std::collections::HashMap<String, (u64, Option<serde_json::Value>, String)>,
        /// When an unchanged fetch last confirmed a snapshot.
        confirmed: std::collections::HashMap<String, u64>,
        reconcile: std::collections::HashMap<String, ReconcileState>,
        backfill: std::collections::HashMap<String, crate::backfill::Progress>,
        config_fault: Option<(String, u64)>,
        failing: bool,
        failing_upserts: bool,
        head_reads: u64,
    }

    /// Idempotency records, attempt counters and snapshots in memory, with the DynamoDB
    /// adapter's semantics (claim rules, versioned upsert); can be switched to fail.
    #[derive(Clone, Default)]
    pub struct MemoryState {
        inner: Arc<Mutex<StateInner>>,
    }

    impl MemoryState {
        /// From now on every call fails (or succeeds again).
        pub fn set_failing(&self, failing: bool) {
            lock(&self.inner).failing = failing;
        }

        /// From now on only snapshot writes fail (a store failing after the Cafe24 call).
        pub fn set_failing_upserts(&self, failing: bool) {
            lock(&self.inner).failing_upserts = failing;
        }

        /// The stored snapshot: (fetched_at, data; `None` = tombstone).
        pub fn stored(&self, mall: &MallId, kind: crate::SnapshotKind, id: &str) -> Option<StoredSnapshot> {
            lock(&self.inner)
                .snapshots
                .get(&format!("{}#{}#{id}", mall.as_str(), kind.as_str()))
                .map(|s| (s.0, s.1.clone()))
        }

        /// The job that stored the current version.
        pub fn stored_by(&self, mall: &MallId, kind: crate::SnapshotKind, id: &str) -> Option<String> {
            lock(&self.inner).snapshots.get(&format!("{}#{}#{id}", mall.as_str(), kind.as_str())).map(|s| s.2.clone())
        }

        /// Snapshot head reads so far.
        pub fn head_reads(&self) -> u64 {
            lock(&self.inner).head_reads
        }

        /// The completion outcome recorded for a job.
        pub fn outcome(&self, job_id: &str) -> Option<String> {
            lock(&self.inner).idem.get(job_id).and_then(|r| r.completed.clone())
        }

        /// Whether a claim (completed or in progress) exists for a job.
        pub fn claimed(&self, job_id: &str) -> bool {
            lock(&self.inner).idem.contains_key(job_id)
        }
    }

    impl IdempotencyStore for MemoryState {
        async fn claim(&self, job_id: &str, now_ms: u64, until_ms: u64, expires_ms: u64) -> Result<Claim, StoreError> {
            let mut g = lock(&self.inner);
            if g.failing {
                return Err(down());
            }
            if let Some(r) = g.idem.get(job_id).filter(|r| r.expires_ms >= now_ms) {
                match &r.completed {
                    Some(o) => return Ok(Claim::Completed(o.clone())),
                    None if r.in_progress_until_ms >= now_ms => {
                        return Ok(Claim::InProgress { until_ms: r.in_progress_until_ms })
                    }
                    None => {}
                }
            }
            g.idem
                .insert(job_id.to_owned(), IdemRecord { completed: None, in_progress_until_ms: until_ms, expires_ms });
            Ok(Claim::Claimed)
        }

        async fn complete(&self, job_id: &str, outcome: &str, _now_ms: u64) -> Result<(), StoreError> {
            let mut g = lock(&self.inner);
            if g.failing {
                return Err(down());
            }
            if let Some(r) = g.idem.get_mut(job_id) {
                r.completed = Some(outcome.to_owned());
            }
            Ok(())
        }

        async fn release(&self, job_id: &str) -> Result<(), StoreError> {
            let mut g = lock(&self.inner);
            if g.failing {
                return Err(down());
            }
            g.idem.remove(job_id);
            Ok(())
        }

        async fn add_failure(&self, job_id: &str, _expires_ms: u64) -> Result<u32, StoreError> {
            let mut g = lock(&self.inner);
            if g.failing {
                return Err(down());
            }
            let n = g.attempts.entry(job_id.to_owned()).or_insert(0);
            *n += 1;
            Ok(*n)
        }

        async fn clear_failures(&self, job_id: &str) -> Result<(), StoreError> {
            let mut g = lock(&self.inner);
            if g.failing {
                return Err(down());
            }
            g.attempts.remove(job_id);
            Ok(())
        }
    }

    impl ReconcileStore for MemoryState {
        async fn reconcile_state(&self, mall: &MallId) -> Result<ReconcileState, StoreError> {
            let g = lock(&self.inner);
            if g.failing {
                return Err(down());
            }
            Ok(g.reconcile.get(mall.as_str()).cloned().unwrap_or_default())
        }

        async fn save_reconcile_state(&self, mall: &MallId, state: &ReconcileState) -> Result<(), StoreError> {
            let mut g = lock(&self.inner);
            if g.failing {
                return Err(down());
            }
            g.reconcile.insert(mall.as_str().to_owned(), state.clone());
            Ok(())
        }
    }

    impl ConfigFaultStore for MemoryState {
        async fn note_config_fault(&self, fault: &str, at_ms: u64) -> Result<(), StoreError> {
            let mut g = lock(&self.inner);
            if g.failing {
                return Err(down());
            }
            g.config_fault = Some((fault.to_owned(), at_ms));
            Ok(())
        }

        async fn config_fault(&self) -> Result<Option<(String, u64)>, StoreError> {
            let g = lock(&self.inner);
            if g.failing {
                return Err(down());
            }
            Ok(g.config_fault.clone())
        }
    }

    impl BackfillStore for MemoryState {
        async fn backfill_progress(
            &self,
            mall: &MallId,
            resource: crate::backfill::Resource,
        ) -> Result<Option<crate::backfill::Progress>, StoreError> {
            let g = lock(&self.inner);
            if g.failing {
                return Err(down());
            }
            Ok(g.backfill.get(&format!("{}#{}", mall.as_str(), resource.as_str())).cloned())
        }

        async fn save_backfill_progress(
            &self,
            mall: &MallId,
            progress: &crate::backfill::Progress,
        ) -> Result<(), StoreError> {
            let mut g = lock(&self.inner);
            if g.failing {
                return Err(down());
            }
            g.backfill.insert(format!("{}#{}", mall.as_str(), progress.resource.as_str()), progress.clone());
            Ok(())
        }
    }

    impl SnapshotStore for MemoryState {
        async fn head(
            &self,
            mall: &MallId,
            kind: crate::SnapshotKind,
            id: &str,
        ) -> Result<Option<SnapshotHead>, StoreError> {
            let mut g = lock(&self.inner);
            g.head_reads += 1;
            if g.failing {
                return Err(down());
            }
            let key = format!("{}#{}#{id}", mall.as_str(), kind.as_str());
            let confirmed = g.confirmed.get(&key).copied().unwrap_or(0);
            Ok(g.snapshots
                .get(&key)
                .map(|s| SnapshotHead { fetched_at_ms: s.0.max(confirmed), stored_by: s.2.clone() }))
        }

        async fn upsert(
            &self,
            mall: &MallId,
            kind: crate::SnapshotKind,
            id: &str,
            fetched_at_ms: u64,
            data: Option<&serde_json::Value>,
            by: &str,
        ) -> Result<Upsert, StoreError> {
            let mut g = lock(&self.inner);
            if g.failing || g.failing_upserts {
                return Err(down());
            }
            let key = format!("{}#{}#{id}", mall.as_str(), kind.as_str());
            match g.snapshots.get(&key) {
                Some(s) if s.0 >= fetched_at_ms => return Ok(Upsert::Older),
                Some(s) if crate::delivery::content_digest(s.1.as_ref()) == crate::delivery::content_digest(data) => {
                    let c = g.confirmed.entry(key).or_insert(0);
                    *c = (*c).max(fetched_at_ms);
                    return Ok(Upsert::Unchanged);
                }
                _ => {}
            }
            g.confirmed.remove(&key);
            g.snapshots.insert(key, (fetched_at_ms, data.cloned(), by.to_owned()));
            Ok(Upsert::Stored)
        }

        async fn snapshot(
            &self,
            mall: &MallId,
            kind: crate::SnapshotKind,
            id: &str,
        ) -> Result<Option<StoredSnapshot>, StoreError> {
            let g = lock(&self.inner);
            if g.failing {
                return Err(down());
            }
            Ok(g.snapshots.get(&format!("{}#{}#{id}", mall.as_str(), kind.as_str())).map(|s| (s.0, s.1.clone())))
        }
    }

    /// Events the bus accepted, in order; can refuse everything (`set_failing`) or the next
    /// `n` events (`refuse_next`).
    #[derive(Clone, Default)]
    pub struct MemoryBus {
        inner: Arc<Mutex<(Vec<crate::delivery::BusEvent>, bool, usize)>>,
    }

    impl MemoryBus {
        /// Every accepted event.
        pub fn events(&self) -> Vec<crate::delivery::BusEvent> {
            lock(&self.inner).0.clone()
        }

        /// From now on every call fails (or succeeds again).
        pub fn set_failing(&self, failing: bool) {
            lock(&self.inner).1 = failing;
        }

        /// The next `n` events offered are refused entry by entry.
        pub fn refuse_next(&self, n: usize) {
            lock(&self.inner).2 = n;
        }
    }

    impl EventBus for MemoryBus {
        async fn publish(&self, events: &[crate::delivery::BusEvent]) -> Result<Vec<usize>, StoreError> {
            let mut g = lock(&self.inner);
            if g.1 {
                return Err(down());
            }
            let mut failed = Vec::new();
            for (i, e) in events.iter().enumerate() {
                if g.2 > 0 {
                    g.2 -= 1;
                    failed.push(i);
                } else {
                    g.0.push(e.clone());
                }
            }
            Ok(failed)
        }
    }

    #[derive(Default)]
    struct GateInner {
        script: std::collections::VecDeque<crate::ratelimit::Acquire>,
        feedback: Vec<crate::ratelimit::Feedback>,
        failing: bool,
        known_wait: Option<u64>,
    }

    /// A rate gate that admits everything, or answers a scripted sequence first; records
    /// feedback; can be switched to fail.
    #[derive(Clone, Default)]
    pub struct MemoryGate {
        inner: Arc<Mutex<GateInner>>,
    }

    impl MemoryGate {
        /// The next answers to `acquire`, before it admits everything again.
        pub fn script(&self, answers: impl IntoIterator<Item = crate::ratelimit::Acquire>) {
            lock(&self.inner).script.extend(answers);
        }

        /// From now on every call fails (or succeeds again).
        pub fn set_failing(&self, failing: bool) {
            lock(&self.inner).failing = failing;
        }

        /// What `known_wait` answers from now on.
        pub fn set_known_wait(&self, wait_ms: Option<u64>) {
            lock(&self.inner).known_wait = wait_ms;
        }

        /// Feedback received so far.
        pub fn feedback_seen(&self) -> usize {
            lock(&self.inner).feedback.len()
        }
    }

    impl RateGate for MemoryGate {
        async fn acquire(&self, _: &str, _: crate::ratelimit::Class) -> Result<crate::ratelimit::Acquire, StoreError> {
            let mut g = lock(&self.inner);
            if g.failing {
                return Err(down());
            }
            Ok(g.script.pop_front().unwrap_or(crate::ratelimit::Acquire::Admitted))
        }

        async fn feedback(&self, _: &str, fb: &crate::ratelimit::Feedback) -> Result<(), StoreError> {
            lock(&self.inner).feedback.push(*fb);
            Ok(())
        }

        fn known_wait(&self, _: &str, _: crate::ratelimit::Class) -> Option<u64> {
            lock(&self.inner).known_wait
        }
    }

    /// Records visibility changes.
    #[derive(Clone, Default)]
    pub struct MemoryVisibility {
        inner: Arc<Mutex<Vec<(String, u32)>>>,
    }

    impl MemoryVisibility {
        /// Every (receipt handle, delay) asked for.
        pub fn changes(&self) -> Vec<(String, u32)> {
            lock(&self.inner).clone()
        }
    }

    impl VisibilityControl for MemoryVisibility {
        async fn defer(&self, items: &[(String, u32)]) -> Result<usize, StoreError> {
            lock(&self.inner).extend(items.iter().cloned());
            Ok(0)
        }
    }

    /// Token records in memory with the adapter's lease semantics; can be switched to fail.
    #[derive(Clone, Default)]
    pub struct MemoryTokens {
        /// (records, failing, reads)
        inner: Arc<Mutex<TokensInner>>,
        /// When each mall's current installation was stored (`put_installed`).
        installed: Arc<Mutex<std::collections::HashMap<String, u64>>>,
        /// Scheduled fan-outs' cursors.
        cursors: Arc<Mutex<std::collections::HashMap<String, MallId>>>,
        /// Last reconcile run per mall: (at, busy).
        reconciled: Arc<Mutex<std::collections::HashMap<String, (u64, bool)>>>,
    }

    type TokensInner = (std::collections::HashMap<String, crate::tokens::TokenRecord>, bool, u64);

    impl MemoryTokens {
        /// From now on every call fails (or succeeds again).
        pub fn set_failing(&self, failing: bool) {
            lock(&self.inner).1 = failing;
        }

        /// Record reads (`get`) so far.
        pub fn reads(&self) -> u64 {
            lock(&self.inner).2
        }
    }

    impl crate::tokens::TokenStore for MemoryTokens {
        async fn get(&self, mall: &MallId) -> Result<Option<crate::tokens::TokenRecord>, StoreError> {
            let mut g = lock(&self.inner);
            g.2 += 1;
            if g.1 {
                return Err(down());
            }
            Ok(g.0.get(mall.as_str()).cloned())
        }

        async fn put_installed(
            &self,
            mall: &MallId,
            pair: &crate::tokens::TokenPair,
            now_ms: u64,
        ) -> Result<(), StoreError> {
            let mut g = lock(&self.inner);
            if g.1 {
                return Err(down());
            }
            lock(&self.installed).insert(mall.as_str().to_owned(), now_ms);
            let version = g.0.get(mall.as_str()).map_or(1, |r| r.version + 1);
            g.0.insert(
                mall.as_str().to_owned(),
                crate::tokens::TokenRecord {
                    mall_id: mall.clone(),
                    pair: pair.clone(),
                    status: crate::tokens::TokenStatus::Active,
                    version,
                    lease_until_ms: 0,
                    lease_owner: String::new(),
                    updated_ms: now_ms,
                },
            );
            Ok(())
        }

        async fn try_lease(
            &self,
            mall: &MallId,
            seen_version: u64,
            owner: &str,
            now_ms: u64,
            until_ms: u64,
        ) -> Result<crate::tokens::LeaseOutcome, StoreError> {
            let mut g = lock(&self.inner);
            if g.1 {
                return Err(down());
            }
            match g.0.get_mut(mall.as_str()) {
                Some(r) if r.version == seen_version && r.lease_until_ms <= now_ms => {
                    r.version += 1;
                    r.lease_until_ms = until_ms;
                    r.lease_owner = owner.to_owned();
                    Ok(crate::tokens::LeaseOutcome::Acquired(r.clone()))
                }
                other => Ok(crate::tokens::LeaseOutcome::Lost(other.map(|r| r.clone()))),
            }
        }

        async fn complete_refresh(
            &self,
            mall: &MallId,
            owner: &str,
            lease_version: u64,
            pair: &crate::tokens::TokenPair,
            now_ms: u64,
        ) -> Result<bool, StoreError> {
            let mut g = lock(&self.inner);
            if g.1 {
                return Err(down());
            }
            match g.0.get_mut(mall.as_str()) {
                Some(r) if r.version == lease_version && r.lease_owner == owner => {
                    r.pair = pair.clone();
                    r.version += 1;
                    r.lease_until_ms = 0;
                    r.lease_owner.clear();
                    r.updated_ms = now_ms;
                    Ok(true)
                }
                _ => Ok(false),
            }
        }

        async fn set_status(
            &self,
            mall: &MallId,
            status: crate::tokens::TokenStatus,
            now_ms: u64,
        ) -> Result<(), StoreError> {
            let mut g = lock(&self.inner);
            if g.1 {
                return Err(down());
            }
            if let Some(r) = g.0.get_mut(mall.as_str()) {
                r.status = status;
                r.version += 1;
                r.updated_ms = now_ms;
            }
            Ok(())
        }

        async fn mark_uninstalled(&self, mall: &MallId, deleted_at_ms: u64, now_ms: u64) -> Result<bool, StoreError> {
            if lock(&self.installed).get(mall.as_str()).is_some_and(|&at| at > deleted_at_ms) {
                return Ok(false);
            }
            self.set_status(mall, crate::tokens::TokenStatus::Uninstalled, now_ms).await.map(|()| true)
        }

        async fn expiring_before(&self, before_ms: u64) -> Result<Vec<MallId>, StoreError> {
            let g = lock(&self.inner);
            Ok(g.0.values().filter(|r| r.pair.refresh_expires_ms < before_ms).map(|r| r.mall_id.clone()).collect())
        }

        async fn needing_reauth(&self) -> Result<Vec<MallId>, StoreError> {
            let g = lock(&self.inner);
            Ok(g.0
                .values()
                .filter(|r| r.status == crate::tokens::TokenStatus::NeedsReauth)
                .map(|r| r.mall_id.clone())
                .collect())
        }

        async fn note_reconciled(&self, mall: &MallId, at_ms: u64, busy: bool) -> Result<(), StoreError> {
            if lock(&self.inner).1 {
                return Err(down());
            }
            if lock(&self.inner).0.contains_key(mall.as_str()) {
                lock(&self.reconciled).insert(mall.as_str().to_owned(), (at_ms, busy));
            }
            Ok(())
        }

        async fn due_for_reconcile(&self, quiet_before_ms: u64) -> Result<Vec<MallId>, StoreError> {
            let g = lock(&self.inner);
            let runs = lock(&self.reconciled);
            Ok(g.0
                .values()
                .filter(|r| r.status == crate::tokens::TokenStatus::Active)
                .filter(|r| match runs.get(r.mall_id.as_str()) {
                    None => true,
                    Some((at, busy)) => *busy || *at <= quiet_before_ms,
                })
                .map(|r| r.mall_id.clone())
                .collect())
        }
    }

    impl MemoryTokens {
        /// The last reconcile run noted for `mall`: (at, busy).
        pub fn reconciled(&self, mall: &MallId) -> Option<(u64, bool)> {
            lock(&self.reconciled).get(mall.as_str()).copied()
        }
    }

    impl ScheduleCursor for MemoryTokens {
        async fn cursor(&self, name: &str) -> Result<Option<MallId>, StoreError> {
            if lock(&self.inner).1 {
                return Err(down());
            }
            Ok(lock(&self.cursors).get(name).cloned())
        }

        async fn save_cursor(&self, name: &str, after: Option<&MallId>) -> Result<(), StoreError> {
            if lock(&self.inner).1 {
                return Err(down());
            }
            let mut g = lock(&self.cursors);
            match after {
                Some(m) => g.insert(name.to_owned(), m.clone()),
                None => g.remove(name),
            };
            Ok(())
        }
    }
}
