//! The command job: the app's own request, run by the shared core
//! (`relay_cafe24::command::run`: once per key, under the mall's limiter and tokens), its
//! result published. The command's record is its idempotency record — no claim is taken: a
//! key sent again, whenever, finds the recorded outcome and publishes it again under the same
//! event id.

use std::sync::atomic::Ordering;

use relay_cafe24::command::{run, Run};
use relay_domain::command::{result_event, Command, Named, Outcome, Queued};
use relay_domain::jobs::Job;
use relay_domain::ports::CommandStore as _;
use relay_domain::ratelimit::Class;
use serde_json::json;

use super::{JobOutcome, Worker};

/// Longest a command job waits for the limiter inside the invocation.
const COMMAND_INLINE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl<P: super::Ports> Worker<P> {
    /// A command job (see the module doc).
    pub(super) async fn command(&self, job: &Job, q: &Queued) -> JobOutcome {
        let mall = &job.mall_id;
        let n = Named { key: Some(q.key.clone()), mall_id: Some(mall.clone()) };
        let cmd = match Command::from_queued(mall, q) {
            Ok(c) => c,
            Err(r) => {
                // A job message is input too: refused as the dispatcher would have, recorded so
                // the key stays answered.
                let outcome =
                    Outcome::Failed { reason: r.code().into(), status: None, body: json!({"message": r.message()}) };
                let now = self.now();
                let expires = now + relay_cafe24::command::RECORD_TTL_MS;
                return match self.state.record_outcome(mall, &q.key, &outcome.to_record(), now, expires).await {
                    Ok(v) => {
                        let recorded = Outcome::from_record(&v).unwrap_or(outcome);
                        self.publish_command(job, &q.key, &n, None, &recorded).await
                    }
                    Err(_) => JobOutcome::Retry("store"),
                };
            }
        };
        // A command waits for credit in the invocation up to `COMMAND_INLINE_WAIT` (billed, and
        // counted as asleep): a deferral by visibility costs whole seconds, and the app waits
        // for its result. Longer waits are deferred like any job's.
        let started = std::time::Instant::now();
        loop {
            match run(&self.cafe24, &self.state, &cmd, Class::Live).await {
                Run::Recorded { outcome, replayed } => {
                    if replayed {
                        self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    return self.publish_command(job, &cmd.key, &n, Some(&cmd), &outcome).await;
                }
                Run::NotNow(relay_cafe24::Cafe24Error::Throttled { wait_ms })
                    if started.elapsed() + std::time::Duration::from_millis(wait_ms) <= COMMAND_INLINE_WAIT =>
                {
                    relay_cafe24::idle::waiting(tokio::time::sleep(std::time::Duration::from_millis(wait_ms))).await;
                }
                Run::NotNow(e) => return self.map_error(job, e).await,
                Run::RecordedMeanwhile => return JobOutcome::Defer(1),
                // The call API is making this key's POST: its outcome is recorded within seconds.
                Run::InFlight { retry_ms } => return JobOutcome::Defer(retry_ms.div_ceil(1000).max(1) as u32),
                Run::Again(class) => return JobOutcome::Retry(class),
            }
        }
    }

    async fn publish_command(
        &self,
        job: &Job,
        key: &str,
        n: &Named,
        cmd: Option<&Command>,
        outcome: &Outcome,
    ) -> JobOutcome {
        let event = result_event(key, n, cmd, outcome, job.trace());
        if !self.publish_all(std::slice::from_ref(&event)).await {
            return JobOutcome::PublishPending;
        }
        tracing::info!(command_outcome = outcome.name(), "command");
        JobOutcome::Completed(match outcome {
            Outcome::Succeeded { .. } => "command_succeeded",
            Outcome::Settled { .. } => "command_settled",
            Outcome::Failed { .. } => "command_failed",
            Outcome::Uncertain { .. } => "command_uncertain",
        })
    }
}
