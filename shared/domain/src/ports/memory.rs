//! In-memory fakes of the ports, beside the traits: the adapters' semantics (claim rules,
//! versioned upserts, leases, cursors) without AWS, for unit tests of handler logic. Each can be
//! switched to fail.

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
    commands: std::collections::HashMap<String, CommandRecord>,
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

    /// From now on only snapshot writes and command outcomes fail (a store failing after the
    /// Cafe24 call).
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
        g.idem.insert(job_id.to_owned(), IdemRecord { completed: None, in_progress_until_ms: until_ms, expires_ms });
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

impl CommandStore for MemoryState {
    async fn command_record(&self, mall: &MallId, key: &str) -> Result<Option<CommandRecord>, StoreError> {
        let g = lock(&self.inner);
        if g.failing {
            return Err(down());
        }
        Ok(g.commands.get(&format!("{}#{key}", mall.as_str())).cloned())
    }

    async fn note_sending(
        &self,
        mall: &MallId,
        key: &str,
        writer: &str,
        exclusive: bool,
        now_ms: u64,
        _expires_ms: u64,
    ) -> Result<Noted, StoreError> {
        let mut g = lock(&self.inner);
        if g.failing {
            return Err(down());
        }
        let r = g.commands.entry(format!("{}#{key}", mall.as_str())).or_default();
        if r.outcome.is_some() {
            return Ok(Noted::Recorded);
        }
        if let (true, Some(since_ms)) = (exclusive, r.sending_since_ms) {
            if r.sending_writer.as_deref() != Some(writer) {
                return Ok(Noted::Elsewhere { since_ms });
            }
        }
        r.sending_since_ms = Some(now_ms);
        r.sending_writer = Some(writer.to_owned());
        Ok(Noted::Yes)
    }

    async fn clear_sending(&self, mall: &MallId, key: &str, writer: &str) -> Result<(), StoreError> {
        let mut g = lock(&self.inner);
        if g.failing {
            return Err(down());
        }
        if let Some(r) = g.commands.get_mut(&format!("{}#{key}", mall.as_str())) {
            if r.sending_writer.as_deref() == Some(writer) {
                r.sending_since_ms = None;
                r.sending_writer = None;
            }
        }
        Ok(())
    }

    async fn record_outcome(
        &self,
        mall: &MallId,
        key: &str,
        outcome: &serde_json::Value,
        _now_ms: u64,
        _expires_ms: u64,
    ) -> Result<serde_json::Value, StoreError> {
        let mut g = lock(&self.inner);
        if g.failing || g.failing_upserts {
            return Err(down());
        }
        let r = g.commands.entry(format!("{}#{key}", mall.as_str())).or_default();
        if r.outcome.is_none() {
            // As on DynamoDB: the outcome replaces the note.
            r.sending_since_ms = None;
            r.sending_writer = None;
        }
        Ok(r.outcome.get_or_insert_with(|| outcome.clone()).clone())
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
        Ok(g.snapshots.get(&key).map(|s| SnapshotHead { fetched_at_ms: s.0.max(confirmed), stored_by: s.2.clone() }))
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
    /// The endpoint limit of every acquisition asked, in order.
    caps: Vec<Option<u32>>,
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

    /// The endpoint limit each acquisition asked with, in order.
    pub fn caps_asked(&self) -> Vec<Option<u32>> {
        lock(&self.inner).caps.clone()
    }
}

impl RateGate for MemoryGate {
    async fn acquire_within(
        &self,
        _: &str,
        _: crate::ratelimit::Class,
        cap: Option<u32>,
    ) -> Result<crate::ratelimit::Acquire, StoreError> {
        let mut g = lock(&self.inner);
        if g.failing {
            return Err(down());
        }
        g.caps.push(cap);
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
