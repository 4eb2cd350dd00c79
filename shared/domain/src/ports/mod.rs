//! Ports: the traits through which the functions reach queues, stores, the rate limiter and the
//! bus. Adapters in `relay-aws` implement them against AWS; [`memory`] (feature `test-util`)
//! holds in-memory fakes with the adapters' semantics for unit tests of handler logic. Handlers
//! and their tests never see an AWS type. The values the traits carry live below, in
//! [`crate::values`] (re-exported here), so domain logic never depends on the traits.

use std::future::Future;

use crate::ids::MallId;
pub use crate::values::{
    Claim, CommandRecord, GroupId, Noted, OutboundMessage, QueueError, ReconcileState, SnapshotHead, SnapshotTooLarge,
    StoreError, StoredSnapshot, Upsert,
};

/// The per-key rate limiter every Cafe24 call goes through.
pub trait RateGate: Send + Sync {
    /// Asks to make one call under `key` now, to an endpoint whose own limit is `cap` calls when
    /// it has one smaller than the bucket (`LimiterConfig::decide_within`).
    fn acquire_within(
        &self,
        key: &str,
        class: crate::ratelimit::Class,
        cap: Option<u32>,
    ) -> impl Future<Output = Result<crate::ratelimit::Acquire, StoreError>> + Send;
    /// Asks to make one call under `key` now (an endpoint without a limit of its own).
    fn acquire(
        &self,
        key: &str,
        class: crate::ratelimit::Class,
    ) -> impl Future<Output = Result<crate::ratelimit::Acquire, StoreError>> + Send {
        self.acquire_within(key, class, None)
    }
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
    /// When an uninstall of a mall under `key` was last applied, as this process has learnt it
    /// from the gate's store (an adapter whose store carries the uninstall's fence reports it);
    /// `None`: none known. A token cached before that instant is read again before a call.
    fn closed_since(&self, _key: &str) -> Option<u64> {
        None
    }
}

/// Remembers one-time ids (OAuth state nonces) until they expire.
pub trait OnceStore: Send + Sync {
    /// Marks `id` used; `true` the first time, `false` when it was already used.
    fn consume(&self, id: &str, expires_ms: u64) -> impl Future<Output = Result<bool, StoreError>> + Send;
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

/// Each command's record, by mall and idempotency key (`relay_domain::command`): written before
/// its request leaves and when it ends, so a command runs its request at most once unless
/// re-sending it is safe, and its result can be published again.
pub trait CommandStore: Send + Sync {
    /// The record, if there is one.
    fn command_record(
        &self,
        mall: &MallId,
        key: &str,
    ) -> impl Future<Output = Result<Option<CommandRecord>, StoreError>> + Send;
    /// Notes that `writer`'s request is about to leave (kept until `expires_ms`), unless the
    /// command has an outcome ([`Noted::Recorded`]: nothing may be sent) or, when `exclusive`
    /// (a request that must not leave twice), another writer's note stands
    /// ([`Noted::Elsewhere`]). The writer's own note passes: a write retried after it was
    /// applied recognises itself.
    fn note_sending(
        &self,
        mall: &MallId,
        key: &str,
        writer: &str,
        exclusive: bool,
        now_ms: u64,
        expires_ms: u64,
    ) -> impl Future<Output = Result<Noted, StoreError>> + Send;
    /// `writer`'s request certainly had no effect (Cafe24 answered 429, or it never left): its
    /// note is removed, so the command may be sent again. Another writer's note stays.
    fn clear_sending(
        &self,
        mall: &MallId,
        key: &str,
        writer: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records `outcome` unless one is recorded, and returns the recorded one (this one, or the
    /// one recorded first: a retried write that finds its own outcome returns it).
    fn record_outcome(
        &self,
        mall: &MallId,
        key: &str,
        outcome: &serde_json::Value,
        now_ms: u64,
        expires_ms: u64,
    ) -> impl Future<Output = Result<serde_json::Value, StoreError>> + Send;
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
    async fn acquire_within(
        &self,
        _: &str,
        _: crate::ratelimit::Class,
        _: Option<u32>,
    ) -> Result<crate::ratelimit::Acquire, StoreError> {
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
pub mod memory;
