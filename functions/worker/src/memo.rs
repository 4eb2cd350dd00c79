//! What this process knows, so a sync job can often skip its snapshot head read:
//! [`StoredVersions`] (versions it stored or read: a covered job is coalesced without a read) and
//! [`OwnReturns`] (records it gave back having stored nothing — deferred before any call, or
//! returned unstarted behind another record of their group: their next receive here is as good
//! as a first one).
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

/// How this process gave a sync job's record back, having stored nothing with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Returned {
    /// Its run read the head, found no version of its own, and was deferred before any call.
    Deferred,
    /// Its handler never started (a record before it in its group did not finish), on a receive
    /// that was itself a first one or followed one of these.
    Unstarted,
    /// Its run finished (stored and published, or found nothing to do) and it came back only
    /// because a record before it in its group did not finish: its next receive has nothing
    /// left to do.
    Finished,
}

/// Sync jobs' messages this process gave back — without storing anything, or finished — by SQS
/// message id (the same across a message's receives; another message of the same job — a
/// re-send — has its own), with the receive count and how.
///
/// A record received again with the next count was received by nobody else in between. By
/// induction over such receives back to its first, no run of this message stored anything: a
/// version stored by its job id can only come from another message of the same job (a re-send),
/// as on a first receive — so the versions this process knows may coalesce it without a read.
/// After [`Returned::Deferred`] the head read itself may be skipped: the last run found no
/// version of its own, and another job's version can only have appeared since through a backfill
/// page of the same mall (every other job of the entity waits behind it in its FIFO group), at
/// the risk of one superfluous call, never of a lost or repeated event (the upsert keeps the
/// newest version). After [`Returned::Unstarted`] nothing was read: the head is read as usual.
/// After [`Returned::Finished`] the job is complete: nothing is read, called or published again
/// (read from the store, its own version would be published a second time).
#[derive(Debug, Default)]
pub struct OwnReturns(Mutex<HashMap<String, (u32, Returned)>>);

impl OwnReturns {
    /// More entries than this: start over.
    const MAX_ENTRIES: usize = 10_000;

    /// Message `message_id` at receive `count` was given back `how`.
    pub fn note(&self, message_id: &str, count: u32, how: Returned) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= Self::MAX_ENTRIES && !map.contains_key(message_id) {
            map.clear();
        }
        map.insert(message_id.to_owned(), (count, how));
    }

    /// How the receive before `count` of message `message_id` was given back, if that receive
    /// was this process's and noted here (forgotten either way).
    pub fn resumes(&self, message_id: &str, count: u32) -> Option<Returned> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(message_id).and_then(|(noted, how)| (noted.checked_add(1) == Some(count)).then_some(how))
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
    fn only_the_next_receive_after_a_return_here_resumes_it() {
        let d = OwnReturns::default();
        assert_eq!(d.resumes("j1", 2), None, "nothing noted");
        d.note("j1", 1, Returned::Deferred);
        assert_eq!(d.resumes("j1", 3), None, "someone else received it in between");
        assert_eq!(d.resumes("j1", 2), None, "forgotten after being asked");
        d.note("j1", 4, Returned::Deferred);
        assert_eq!(d.resumes("j1", 5), Some(Returned::Deferred));
        d.note("j1", 5, Returned::Unstarted);
        assert_eq!(d.resumes("j1", 6), Some(Returned::Unstarted), "how it was returned is kept");
        d.note("j1", u32::MAX, Returned::Unstarted);
        assert_eq!(d.resumes("j1", 0), None);
    }
}
