//! What this process knows, so a sync job can often skip its snapshot head read:
//! [`StoredVersions`] (versions it stored or read: a covered job is coalesced without a read) and
//! [`OwnDeferrals`] (jobs it deferred before any call: their next receive here stored nothing).
//!
//! The snapshot store only moves forward (`upsert` writes only a later `fetched_at`), so a
//! version this process stored or read is a lower bound of what is stored now, for as long as
//! the process lives. A job whose event is older than that bound is covered by a stored version:
//! on a *first receive* that is all the head read would have told it (stored by another job →
//! coalesced; stored by this very job → a re-send, which publishes nothing either). Redeliveries
//! still read the head — whether this job stored the current version decides a republish —
//! unless they follow this process's own deferral.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use relay_domain::{MallId, SnapshotKind};

/// A snapshot: (mall, kind, id).
type Entity = (MallId, SnapshotKind, String);

/// Lower bounds of stored versions: entity → (fetched_at ms, the job that stored it, empty when
/// unknown).
#[derive(Debug, Default)]
pub struct StoredVersions(Mutex<HashMap<Entity, (u64, String)>>);

impl StoredVersions {
    /// More entries than this: start over (bounded memory; a miss only costs a read).
    const MAX_ENTRIES: usize = 50_000;

    /// Remembers that a version fetched at `fetched_at_ms` (stored by `by`) is stored.
    pub fn note(&self, mall: &MallId, kind: SnapshotKind, id: &str, fetched_at_ms: u64, by: &str) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (mall.clone(), kind, id.to_owned());
        if map.len() >= Self::MAX_ENTRIES && !map.contains_key(&key) {
            map.clear();
        }
        let e = map.entry(key).or_insert((0, String::new()));
        if fetched_at_ms > e.0 {
            *e = (fetched_at_ms, by.to_owned());
        }
    }

    /// Whether a version fetched after `event_received_ms` by a job other than `job_id` is known
    /// to be stored.
    pub fn covers(&self, mall: &MallId, kind: SnapshotKind, id: &str, event_received_ms: u64, job_id: &str) -> bool {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&(mall.clone(), kind, id.to_owned()))
            .is_some_and(|(fetched_at, by)| *fetched_at > event_received_ms && by != job_id)
    }
}

/// Sync jobs this process deferred before any call, with the receive count of that run.
///
/// A record received again with the next count was received by nobody else in between, and its
/// previous run stored nothing; the run before that read the head and found no version of its
/// own. So the job has stored nothing, and another job's version can only have appeared through a
/// backfill page of the same mall (every other job of the entity waits behind it in its FIFO
/// group): its head read may be skipped, at the risk of one superfluous call, never of a lost or
/// repeated event (the upsert keeps the newest version).
#[derive(Debug, Default)]
pub struct OwnDeferrals(Mutex<HashMap<String, u32>>);

impl OwnDeferrals {
    /// More entries than this: start over.
    const MAX_ENTRIES: usize = 10_000;

    /// `job_id`'s run at receive `count` was deferred before any call.
    pub fn note(&self, job_id: &str, count: u32) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= Self::MAX_ENTRIES && !map.contains_key(job_id) {
            map.clear();
        }
        map.insert(job_id.to_owned(), count);
    }

    /// Whether receive `count` of `job_id` directly follows a deferral noted here (and forgets
    /// it either way).
    pub fn resumes(&self, job_id: &str, count: u32) -> bool {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(job_id).is_some_and(|noted| noted.checked_add(1) == Some(count))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn covers_only_later_versions_stored_by_another_job() {
        let v = StoredVersions::default();
        let m = MallId::parse("shop").unwrap();
        assert!(!v.covers(&m, SnapshotKind::Order, "o1", 10, "j2"), "nothing known");
        v.note(&m, SnapshotKind::Order, "o1", 100, "j1");
        assert!(v.covers(&m, SnapshotKind::Order, "o1", 99, "j2"));
        assert!(!v.covers(&m, SnapshotKind::Order, "o1", 100, "j2"), "an event at the fetch instant is not covered");
        assert!(!v.covers(&m, SnapshotKind::Order, "o1", 99, "j1"), "the storing job itself reads the head");
        assert!(!v.covers(&m, SnapshotKind::Product, "o1", 99, "j2"), "kinds are apart");
        assert!(!v.covers(&MallId::parse("other").unwrap(), SnapshotKind::Order, "o1", 99, "j2"), "malls are apart");
        v.note(&m, SnapshotKind::Order, "o1", 50, "j0");
        assert!(v.covers(&m, SnapshotKind::Order, "o1", 99, "j2"), "an older version never lowers the bound");
        v.note(&m, SnapshotKind::Order, "o1", 200, "j3");
        assert!(v.covers(&m, SnapshotKind::Order, "o1", 150, "j1"));
    }

    #[test]
    fn only_the_next_receive_after_a_deferral_here_resumes_it() {
        let d = OwnDeferrals::default();
        assert!(!d.resumes("j1", 2), "nothing noted");
        d.note("j1", 1);
        assert!(!d.resumes("j1", 3), "someone else received it in between");
        assert!(!d.resumes("j1", 2), "forgotten after being asked");
        d.note("j1", 4);
        assert!(d.resumes("j1", 5));
        d.note("j1", u32::MAX);
        assert!(!d.resumes("j1", 0));
    }
}
