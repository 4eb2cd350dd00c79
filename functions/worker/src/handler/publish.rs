//! Publishing to the app's bus: counted, retried entry by entry under the same ids, and
//! published again from the store when a job's own stored version did not get out.

use std::sync::atomic::Ordering;
use std::time::Duration;

use relay_domain::delivery::snapshot_event;
use relay_domain::jobs::Job;
use relay_domain::SnapshotKind;

use relay_domain::ports::{EventBus, SnapshotStore};

use super::{Ports, Worker};

impl<P: Ports> Worker<P> {
    /// Publishes `events`, counted; `true` only when the bus accepted every one.
    pub(super) async fn publish_all(&self, events: &[relay_domain::delivery::BusEvent]) -> bool {
        let accepted = match self.bus.publish(events).await {
            Ok(failed) => failed.is_empty(),
            Err(e) => {
                tracing::warn!(error = %e, "event bus unavailable");
                false
            }
        };
        if accepted {
            self.stats.published.fetch_add(events.len() as u64, Ordering::Relaxed);
        } else {
            self.stats.publish_failed.fetch_add(1, Ordering::Relaxed);
        }
        accepted
    }

    /// Publishes `events`, offering the bus only what it refused again (the same events, the
    /// same ids) after a short pause, twice. Returns the indices still refused. A backfill page
    /// is never read again for its events: re-reading would store new versions and publish the
    /// accepted ones a second time under new ids, which consumers cannot de-duplicate.
    pub(super) async fn publish_retrying(&self, events: &[relay_domain::delivery::BusEvent]) -> Vec<usize> {
        let mut left: Vec<usize> = (0..events.len()).collect();
        for pause_ms in [0u64, 100, 500] {
            if left.is_empty() {
                break;
            }
            if pause_ms > 0 {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            }
            // The first offer is the caller's slice itself; only a retry copies what it offers.
            let copied: Vec<_>;
            let offered = if left.len() == events.len() {
                events
            } else {
                copied = left.iter().filter_map(|&i| events.get(i).cloned()).collect();
                &copied
            };
            match self.bus.publish(offered).await {
                Ok(refused) => {
                    self.stats.published.fetch_add((offered.len() - refused.len()) as u64, Ordering::Relaxed);
                    left = refused.into_iter().filter_map(|j| left.get(j).copied()).collect();
                }
                Err(e) => tracing::warn!(error = %e, "event bus unavailable"),
            }
        }
        if !left.is_empty() {
            self.stats.publish_failed.fetch_add(1, Ordering::Relaxed);
        }
        left
    }

    /// Publishes the event of a version of the job's target that this job stored. `false` =
    /// the bus did not take it (the job comes back, finds its own version stored and
    /// [`Self::publish_stored`] retries without calling Cafe24).
    pub(super) async fn publish(
        &self,
        job: &Job,
        kind: SnapshotKind,
        version: u64,
        data: Option<&serde_json::Value>,
    ) -> bool {
        let Some((_, id)) = job.kind.target() else { return true };
        let event = snapshot_event(&job.mall_id, job.shop_no, kind, &id, version, job.trace(), data);
        if !self.publish_all(std::slice::from_ref(&event)).await {
            tracing::warn!(event_id = %event.event_id, outcome = "publish_failed", "delivery");
            return false;
        }
        true
    }

    /// Publishes the stored version of the job's target (stored by this job).
    pub(super) async fn publish_stored(&self, job: &Job, kind: SnapshotKind, id: &str) -> bool {
        match self.state.snapshot(&job.mall_id, kind, id).await {
            Ok(Some((version, data))) => self.publish(job, kind, version, data.as_ref()).await,
            Ok(None) => true,
            Err(e) => {
                tracing::warn!(error = %e, "stored snapshot not readable for publishing");
                false
            }
        }
    }
}
