//! The reconcile job: Cafe24's webhook logs read window by window, what the relay never
//! accepted re-injected into the inbox (`relay_domain::reconcile`).

use std::sync::atomic::Ordering;

use relay_domain::jobs::Job;
use relay_domain::ports::{MessageQueue, ReconcileStore};
use relay_domain::ratelimit::Class;
use relay_domain::tokens::TokenStore;

use super::{JobOutcome, Worker};

/// A mall whose last webhook got through less than this long ago is busy: reconciled every
/// period, not every `RECONCILE_QUIET_MINUTES`.
const BUSY_IF_DELIVERED_WITHIN_MS: u64 = 3_600_000;

impl<P: super::Ports> Worker<P> {
    /// A reconcile job: the mall's reception status, then its webhook logs window by window
    /// from the checkpoint (every call bulk class, through the limiter), re-injecting what the
    /// relay never accepted ([`relay_domain::reconcile::plan_page`]). A full page means the
    /// window holds more and it is narrowed and read again ([`LogWindow::narrowed`]); neither
    /// `links`, the answer's order nor `since_log_id` is relied on. The checkpoint advances only
    /// after a window's re-injections are stored, so a job cut off anywhere resumes without a
    /// gap; a window read twice re-sends the same deduplication ids (SQS drops them within
    /// 5 minutes, the worker's idempotency records after that).
    pub(super) async fn reconcile(&self, job: &Job, receipt: super::Receipt) -> JobOutcome {
        use relay_domain::reconcile::{page_entries, plan_page, reception_on, LogWindow};
        const MAX_PAGES: usize = 20;
        let mall = &job.mall_id;
        let mut st = match self.state.reconcile_state(mall).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "reconcile state not readable");
                return JobOutcome::Retry("store");
            }
        };
        match self.cafe24.get_json(mall, "webhooks/setting", Class::Bulk).await {
            Ok(body) => st.reception_on = reception_on(&body),
            Err(e) => return self.map_error(job, e).await,
        }
        let (mut failed, mut reinjected) = (0u64, 0u64);
        let mut saved_once = false;
        let (lookback, settle) = (self.cfg.reconcile_lookback_ms, self.cfg.reconcile_settle_ms);
        let mut window = LogWindow::next(st.checkpoint_ms, self.now(), lookback, settle);
        for _ in 0..MAX_PAGES {
            let Some(w) = window else { break };
            let body = match self.cafe24.get_json(mall, &format!("webhooks/logs?{}", w.query()), Class::Bulk).await {
                Ok(b) => b,
                Err(e) => return self.map_error(job, e).await,
            };
            let Some((logs, returned)) = page_entries(&body) else {
                return JobOutcome::DeadLetter { reason: "webhook logs without a `logs` list".into(), class: "decode" };
            };
            if !w.is_complete(returned) {
                if let Some(narrower) = w.narrowed(&logs) {
                    window = Some(narrower);
                    continue;
                }
                // Over 10,000 deliveries in one second: what the page holds is all Cafe24 gives.
                tracing::warn!(outcome = "logs_truncated", returned, "a one-second window of webhook logs is full");
            }
            let plan = plan_page(mall, &logs, self.now());
            for chunk in plan.reinject.chunks(10) {
                match self.inbox.send_batch(chunk).await {
                    Ok(refused) if refused.is_empty() => {}
                    Ok(_) | Err(_) => {
                        tracing::warn!(outcome = "reinject_failed", "inbox refused re-injected webhooks");
                        return JobOutcome::Retry("inbox");
                    }
                }
            }
            for (log_id, why) in &plan.skipped {
                tracing::warn!(log_id = %log_id, reason = ?why, "failed webhook delivery not re-injectable");
            }
            failed += plan.failed_logs as u64;
            reinjected += plan.reinject.len() as u64;
            st.last_delivered_ms = st.last_delivered_ms.max(plan.last_delivered_ms.unwrap_or(0));
            self.stats.reinjected.fetch_add(plan.reinject.len() as u64, Ordering::Relaxed);
            st.checkpoint_ms = Some(w.checkpoint_after());
            st.reinjected_total += plan.reinject.len() as u64;
            if let Err(e) = self.state.save_reconcile_state(mall, &st).await {
                tracing::warn!(error = %e, "reconcile checkpoint not stored");
                return JobOutcome::Retry("store");
            }
            self.progressed(job, receipt, !saved_once).await;
            saved_once = true;
            window = LogWindow::next(st.checkpoint_ms, self.now(), lookback, settle);
        }
        st.failed_logs = failed;
        st.last_run_ms = self.now();
        if let Err(e) = self.state.save_reconcile_state(mall, &st).await {
            // The checkpoint itself is stored window by window; only the run's summary is lost.
            tracing::warn!(error = %e, "reconcile summary not stored");
        }
        if st.reception_on == Some(false) {
            self.stats.reception_off.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(outcome = "reception_off", "Cafe24 has switched this mall's webhook reception off");
        }
        self.stats.failed_deliveries.fetch_add(failed, Ordering::Relaxed);
        // Busy malls (deliveries in the last hour, failures, reception off) are reconciled every
        // period; quiet ones every `RECONCILE_QUIET_MINUTES` (the dispatcher's scan reads this).
        let now = self.now();
        let busy = failed > 0
            || reinjected > 0
            || st.reception_on == Some(false)
            || st.last_delivered_ms.saturating_add(BUSY_IF_DELIVERED_WITHIN_MS) > now;
        if let Err(e) = self.cafe24.token_store().note_reconciled(mall, now, busy).await {
            // Not noted: the mall stays due and is reconciled again next period (the safe side).
            tracing::warn!(error = %e, "reconcile run not noted on the mall's record");
        }
        tracing::info!(reinjected, failed_logs = failed, reception_on = ?st.reception_on, busy, "reconcile");
        JobOutcome::Completed("reconciled")
    }
}
