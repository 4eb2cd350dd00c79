//! The command job: the app's own request, made once per key under the mall's limiter and tokens
//! (`relay_domain::command`), its result recorded and published.
//!
//! The command's record (`CommandStore`) is its idempotency record — no claim is taken: a key
//! sent again, whenever, finds the recorded outcome and publishes it again under the same event
//! id. Before a request leaves (after the limiter admitted it), the record notes `sending`; a
//! run that finds that note with no outcome knows an earlier run may have reached Cafe24, and a
//! POST — Cafe24 has no idempotency key, and a second POST is a second effect — ends
//! `uncertain` instead of being sent again. Errors that prove Cafe24 applied nothing (a 429, a
//! 401 before the refresh, a connection never made) remove the note.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use relay_cafe24::Cafe24Error;
use relay_domain::command::{result_event, Command, Named, Outcome, Queued};
use relay_domain::jobs::Job;
use relay_domain::ports::{CommandStore, StoreError};
use relay_domain::ratelimit::Class;
use serde_json::json;

use super::{JobOutcome, Worker};

/// How long a command's record (and so its outcome, for the same key sent again) is kept.
pub const COMMAND_RECORD_TTL_MS: u64 = 30 * 86_400_000;

/// The note could not be written because the command has an outcome already.
#[derive(Debug, thiserror::Error)]
#[error("the command has an outcome already")]
struct Recorded;

impl<P: super::Ports> Worker<P> {
    /// A command job (see the module doc).
    pub(super) async fn command(&self, job: &Job, q: &Queued) -> JobOutcome {
        let mall = &job.mall_id;
        let cmd = match Command::from_queued(mall, q) {
            Ok(c) => c,
            Err(r) => {
                let n = Named { key: Some(q.key.clone()), mall_id: Some(mall.clone()) };
                let outcome =
                    Outcome::Failed { reason: r.code().into(), status: None, body: json!({"message": r.message()}) };
                return self.finish_command(job, &q.key, &n, None, outcome).await;
            }
        };
        let n = named_of(&cmd);
        let record = match self.state.command_record(mall, &cmd.key).await {
            Ok(r) => r.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "command record not readable");
                return JobOutcome::Defer(super::STORE_DOWN_DEFER_S);
            }
        };
        if let Some(done) = record.outcome.as_ref().and_then(Outcome::from_record) {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return self.publish_command(job, &cmd.key, &n, Some(&cmd), &done).await;
        }
        if record.sending_since_ms.is_some() && !cmd.method.resend_is_safe() {
            // An earlier run noted the request leaving and recorded nothing after it.
            let outcome = Outcome::Uncertain { reason: "interrupted".into() };
            return self.finish_command(job, &cmd.key, &n, Some(&cmd), outcome).await;
        }
        let expires = self.now() + COMMAND_RECORD_TTL_MS;
        let had_outcome = Arc::new(AtomicBool::new(false));
        let note = {
            let (had_outcome, key, now) = (had_outcome.clone(), cmd.key.clone(), self.now());
            async move {
                if self.state.note_sending(mall, &key, now, expires).await? {
                    Ok(())
                } else {
                    had_outcome.store(true, Ordering::Relaxed);
                    Err(StoreError(Box::new(Recorded)))
                }
            }
        };
        let sent =
            self.cafe24.send(mall, cmd.method, &cmd.path_and_query(), cmd.body.as_ref(), Class::Live, note).await;
        let outcome = match sent {
            Ok((status, body)) => Outcome::Succeeded { status, body },
            // Another run recorded the outcome between the read above and the note: nothing was
            // sent, and the next run publishes that outcome.
            Err(Cafe24Error::Store(_)) if had_outcome.load(Ordering::Relaxed) => return JobOutcome::Defer(1),
            Err(e) => match self.failed_send(job, &cmd, e).await {
                Ok(outcome) => outcome,
                Err(not_now) => return not_now,
            },
        };
        self.finish_command(job, &cmd.key, &n, Some(&cmd), outcome).await
    }

    /// What an error of the send comes to: an outcome to record, or (`Err`) the job comes back
    /// (nothing was applied, or resending is safe).
    async fn failed_send(&self, job: &Job, cmd: &Command, e: Cafe24Error) -> Result<Outcome, JobOutcome> {
        let safe = cmd.method.resend_is_safe();
        let failed = |reason: &str, status: Option<u16>, body: serde_json::Value| Outcome::Failed {
            reason: reason.into(),
            status,
            body,
        };
        match e {
            // Refused before anything left, or answered without applying anything: clear the
            // note (if it was written) and come back.
            Cafe24Error::Throttled { .. }
            | Cafe24Error::OutOfTime
            | Cafe24Error::RefreshInProgress { .. }
            | Cafe24Error::RefreshFailed
            | Cafe24Error::RateLimited { .. }
            | Cafe24Error::Config(_) => {
                self.clear_note(job, cmd).await;
                Err(self.map_error(job, e).await)
            }
            Cafe24Error::Transport(t) if t.is_connect() => {
                self.clear_note(job, cmd).await;
                Err(JobOutcome::Retry("transport"))
            }
            // Nothing was sent: the store failed before (a token read, the note itself).
            Cafe24Error::Store(_) => Err(JobOutcome::Retry("store")),
            Cafe24Error::NotInstalled => {
                Ok(failed("not_installed", None, json!({"message": "the mall is not installed"})))
            }
            Cafe24Error::NeedsReauth => {
                Ok(failed("needs_reauth", None, json!({"message": "the mall must authorize the app again"})))
            }
            Cafe24Error::Uninstalled => Ok(failed("uninstalled", None, json!({"message": "the app is uninstalled"}))),
            Cafe24Error::AppDeleted => Ok(failed("uninstalled", Some(403), json!({"message": "the app was deleted"}))),
            Cafe24Error::Unauthorized => {
                Ok(failed("unauthorized", Some(401), json!({"message": "Cafe24 refused the token"})))
            }
            Cafe24Error::Forbidden { message } => {
                let reason =
                    if message.to_ascii_lowercase().contains("scope") { "insufficient_scope" } else { "forbidden" };
                Ok(failed(reason, Some(403), json!({"error": {"code": 403, "message": message}})))
            }
            Cafe24Error::NotFound => Ok(failed("cafe24_error", Some(404), json!({"error": {"code": 404}}))),
            Cafe24Error::InvalidRequest { status, code, message } => {
                Ok(failed("cafe24_error", Some(status), json!({"error": {"code": code, "message": message}})))
            }
            // It may have reached Cafe24 and taken effect.
            Cafe24Error::Server { .. } if safe => Err(JobOutcome::Retry("server_error")),
            Cafe24Error::Timeout if safe => Err(JobOutcome::Retry("timeout")),
            Cafe24Error::Transport(_) if safe => Err(JobOutcome::Retry("transport")),
            Cafe24Error::Server { .. } => Ok(Outcome::Uncertain { reason: "server_error".into() }),
            Cafe24Error::Timeout => Ok(Outcome::Uncertain { reason: "timeout".into() }),
            Cafe24Error::Transport(_) => Ok(Outcome::Uncertain { reason: "transport".into() }),
            // A 2xx whose body is not JSON: it took effect, and what it said is unknown.
            Cafe24Error::Decode(_) => Ok(Outcome::Uncertain { reason: "unreadable_answer".into() }),
        }
    }

    /// Removes the `sending` note after an error that proves nothing took effect; if that
    /// fails, a later run of a POST ends `uncertain` (never a second request).
    async fn clear_note(&self, job: &Job, cmd: &Command) {
        if let Err(e) = self.state.clear_sending(&job.mall_id, &cmd.key).await {
            tracing::warn!(error = %e, "command's sending note not cleared");
        }
    }

    /// Records `outcome` (or finds the one recorded first) and publishes it.
    async fn finish_command(
        &self,
        job: &Job,
        key: &str,
        n: &Named,
        cmd: Option<&Command>,
        outcome: Outcome,
    ) -> JobOutcome {
        let expires = self.now() + COMMAND_RECORD_TTL_MS;
        let recorded =
            match self.state.record_outcome(&job.mall_id, key, &outcome.to_record(), self.now(), expires).await {
                Ok(v) => Outcome::from_record(&v).unwrap_or(outcome),
                Err(e) => {
                    // A POST that was sent ends `uncertain` on its next run; anything else runs again.
                    tracing::warn!(error = %e, outcome = outcome.name(), "command outcome not recorded");
                    return JobOutcome::Retry("store");
                }
            };
        self.publish_command(job, key, n, cmd, &recorded).await
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
            Outcome::Failed { .. } => "command_failed",
            Outcome::Uncertain { .. } => "command_uncertain",
        })
    }
}

fn named_of(cmd: &Command) -> Named {
    Named { key: Some(cmd.key.clone()), mall_id: Some(cmd.mall_id.clone()) }
}
