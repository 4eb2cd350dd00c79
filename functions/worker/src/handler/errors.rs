//! What a Cafe24 error makes of a job (the outcome table: defer, retry, tombstone, drop,
//! dead-letter), and the one-time `mall.needs_reauth` announcement it may need.

use std::sync::atomic::Ordering;

use relay_cafe24::Cafe24Error;
use relay_domain::jobs::Job;
use relay_domain::tokens::{TokenStatus, TokenStore};

use relay_domain::ports::{Claim, ConfigFaultStore, IdempotencyStore, SnapshotStore, Upsert};

use super::{JobOutcome, Ports, Worker};

impl<P: Ports> Worker<P> {
    /// Tells the app that a mall needs re-authorization (`mall.needs_reauth`) once per
    /// transition: the event's version is the time the token record took that status, and an
    /// idempotency record keyed by the event id keeps the mall's other jobs from publishing it
    /// again. `false` = not published yet (the job comes back and tries again before it is
    /// dead-lettered, so the app is told before the DLQ fills).
    pub(super) async fn announce_needs_reauth(&self, mall: &relay_domain::MallId) -> bool {
        use relay_domain::delivery::{mall_event, MallStatusEvent};
        let since = match self.cafe24.token_store().get(mall).await {
            Ok(Some(r)) if r.status == TokenStatus::NeedsReauth => r.updated_ms,
            // Not (or no longer) needing re-authorization: nothing to announce.
            Ok(_) => return true,
            Err(e) => {
                tracing::warn!(error = %e, "token store unavailable; needs_reauth not announced yet");
                return false;
            }
        };
        let event = mall_event(mall, MallStatusEvent::NeedsReauth, since);
        let key = format!("announce#{}", event.event_id);
        let now = self.now();
        match self.state.claim(&key, now, now + 30_000, now + self.cfg.idempotency_ttl_ms).await {
            Ok(Claim::Claimed) => {}
            Ok(Claim::Completed(_)) => return true,
            Ok(Claim::InProgress { .. }) | Err(_) => return false,
        }
        if !self.publish_all(std::slice::from_ref(&event)).await {
            self.release(true, &key).await;
            return false;
        }
        if let Err(e) = self.state.complete(&key, "published", now).await {
            // Published; another job of the mall may publish the same event id once more.
            tracing::warn!(error = %e, "needs_reauth announcement not recorded");
        }
        tracing::warn!(event_id = %event.event_id, outcome = "needs_reauth_published", "delivery");
        true
    }

    pub(super) async fn map_error(&self, job: &Job, e: Cafe24Error) -> JobOutcome {
        let mall = &job.mall_id;
        match e {
            Cafe24Error::Throttled { wait_ms } => self.defer_for(wait_ms),
            Cafe24Error::RateLimited { feedback } => {
                let remain = feedback.call_remain_s.into_iter().chain(feedback.time_remain_s).max().unwrap_or(0) * 1000;
                self.defer_for(remain.max(1_000))
            }
            Cafe24Error::RefreshInProgress { wait_ms } => self.defer_for(wait_ms),
            // No token request was made: a fresh invocation has the time for it.
            Cafe24Error::OutOfTime => JobOutcome::Defer(1),
            Cafe24Error::NotFound => match job.target() {
                Some((kind, id)) => {
                    let at = self.now();
                    match self.state.upsert(mall, kind, &id, at, None, job.job_id.as_str()).await {
                        Ok(stored) => {
                            if stored == Upsert::Stored && !self.publish(job, kind, at, None).await {
                                return JobOutcome::PublishPending;
                            }
                            self.stats.tombstoned.fetch_add(1, Ordering::Relaxed);
                            JobOutcome::Completed("tombstoned")
                        }
                        Err(_) => JobOutcome::Retry("store"),
                    }
                }
                None => JobOutcome::DeadLetter { reason: "not found".into(), class: "not_found" },
            },
            Cafe24Error::AppDeleted | Cafe24Error::Uninstalled => {
                // Who decided: Cafe24's 403 "app deleted" (recorded here), or the mall's token
                // record (a 90077 the dispatcher applied), read before a call or after Cafe24
                // refused a cached token with a 401.
                let decided_by = if matches!(e, Cafe24Error::AppDeleted) {
                    let status = self.cafe24.token_store().set_status(mall, TokenStatus::Uninstalled, self.now());
                    if let Err(e) = status.await {
                        // Next job for the mall gets the same 403 and tries again.
                        tracing::warn!(error = %e, "uninstalled status not recorded");
                    }
                    "cafe24"
                } else {
                    "token_record"
                };
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::info!(outcome = "dropped_uninstalled", decided_by, "the app is uninstalled; dropping the job");
                JobOutcome::Completed("dropped_uninstalled")
            }
            Cafe24Error::NeedsReauth => {
                if !self.announce_needs_reauth(mall).await {
                    return JobOutcome::PublishPending;
                }
                JobOutcome::DeadLetter { reason: "mall needs re-authorization".into(), class: "needs_reauth" }
            }
            Cafe24Error::NotInstalled => {
                JobOutcome::DeadLetter { reason: "mall not installed".into(), class: "not_installed" }
            }
            Cafe24Error::InvalidRequest { status, code, message } => JobOutcome::DeadLetter {
                reason: format!("Cafe24 {status} {code}: {message}"),
                class: "invalid_request",
            },
            Cafe24Error::Forbidden { message } => {
                JobOutcome::DeadLetter { reason: format!("forbidden: {message}"), class: "forbidden" }
            }
            Cafe24Error::Decode(m) => JobOutcome::DeadLetter { reason: m, class: "decode" },
            // Refused for every mall (a retired API version, a rotated client secret): nothing
            // this job did. It waits out the process's probe period without spending an attempt;
            // the operator is told by the Cafe24ConfigFaults alarm, once for the whole stack.
            Cafe24Error::Config(fault) => {
                tracing::warn!(
                    outcome = "config_fault",
                    fault = fault.as_str(),
                    "job returned: Cafe24 refuses the relay's configuration"
                );
                let probe_ms = self.cafe24.config().fault_probe_ms;
                // Noted for `relay mall status` at most once a probe period per process.
                let (now, last) = (self.now(), self.fault_noted_ms.load(Ordering::Relaxed));
                if (last == 0 || now >= last.saturating_add(probe_ms))
                    && self.fault_noted_ms.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_ok()
                {
                    if let Err(e) = self.state.note_config_fault(fault.as_str(), now).await {
                        tracing::warn!(error = %e, "configuration fault not noted");
                    }
                }
                self.defer_for(probe_ms)
            }
            other => JobOutcome::Retry(other.class()),
        }
    }
}
