//! The one execution core of a command (`relay_domain::command`), whichever door it came
//! through — the worker's command job or the call API: the record is read, a request that may
//! be out is never sent again as a POST, `sending` is noted after the limiter admitted the call
//! and before it leaves, and the outcome is recorded once (the first one stays).

use std::sync::atomic::{AtomicBool, Ordering};

use relay_domain::command::{Command, Outcome};
use relay_domain::ports::{CommandStore, RateGate, StoreError};
use relay_domain::ratelimit::Class;
use relay_domain::tokens::TokenStore;
use serde_json::json;

use crate::{Cafe24, Cafe24Error};

/// How long a command's record (and so its outcome, for the same key sent again) is kept.
pub const RECORD_TTL_MS: u64 = 30 * 86_400_000;

/// What running a command came to.
#[derive(Debug)]
pub enum Run {
    /// Its outcome is recorded (now, or by an earlier run: `replayed`).
    Recorded {
        /// The recorded outcome.
        outcome: Outcome,
        /// It was recorded before this run (nothing was sent now).
        replayed: bool,
    },
    /// Nothing took effect and it may be run again: the limiter wants a wait, a token refresh
    /// is under way elsewhere, Cafe24 answered 429, the relay's configuration is refused (the
    /// error says which; the door decides how to wait).
    NotNow(Cafe24Error),
    /// Run it again: a transient failure after which re-sending is safe (`class` for the logs).
    Again(&'static str),
    /// Another run recorded the outcome between this run's read and its note: nothing was sent;
    /// running it again finds that outcome.
    RecordedMeanwhile,
}

/// The note could not be written because the command has an outcome already.
#[derive(Debug, thiserror::Error)]
#[error("the command has an outcome already")]
struct Recorded;

/// Runs `cmd` (see the module doc) in `class`, its record in `store`.
pub async fn run<G: RateGate, S: TokenStore, C: CommandStore>(
    cafe24: &Cafe24<G, S>,
    store: &C,
    cmd: &Command,
    class: Class,
) -> Run {
    let mall = &cmd.mall_id;
    let now = || (cafe24.clock())();
    let record = match store.command_record(mall, &cmd.key).await {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "command record not readable");
            return Run::Again("store");
        }
    };
    if let Some(done) = record.outcome.as_ref().and_then(Outcome::from_record) {
        return Run::Recorded { outcome: done, replayed: true };
    }
    if record.sending_since_ms.is_some() && !cmd.method.resend_is_safe() {
        // An earlier run noted the request leaving and recorded nothing after it.
        return record_outcome(store, cmd, Outcome::Uncertain { reason: "interrupted".into() }, now()).await;
    }
    let had_outcome = AtomicBool::new(false);
    let note = async {
        if store.note_sending(mall, &cmd.key, now(), now() + RECORD_TTL_MS).await? {
            Ok(())
        } else {
            had_outcome.store(true, Ordering::Relaxed);
            Err(StoreError(Box::new(Recorded)))
        }
    };
    let sent = cafe24.send(mall, cmd.method, &cmd.path_and_query(), cmd.body.as_ref(), class, note).await;
    let outcome = match sent {
        Ok((status, body)) => Outcome::Succeeded { status, body },
        // Another run recorded the outcome between the read above and the note: nothing was
        // sent; the next run finds that outcome.
        Err(Cafe24Error::Store(_)) if had_outcome.load(Ordering::Relaxed) => return Run::RecordedMeanwhile,
        Err(e) => match failed_send(store, cmd, e).await {
            Ok(outcome) => outcome,
            Err(run) => return run,
        },
    };
    record_outcome(store, cmd, outcome, now()).await
}

async fn record_outcome<C: CommandStore>(store: &C, cmd: &Command, outcome: Outcome, now: u64) -> Run {
    match store.record_outcome(&cmd.mall_id, &cmd.key, &outcome.to_record(), now, now + RECORD_TTL_MS).await {
        Ok(v) => Run::Recorded { outcome: Outcome::from_record(&v).unwrap_or(outcome), replayed: false },
        Err(e) => {
            // A POST that was sent ends `uncertain` on its next run; anything else runs again.
            tracing::warn!(error = %e, outcome = outcome.name(), "command outcome not recorded");
            Run::Again("store")
        }
    }
}

/// What an error of the send comes to: an outcome to record, or (`Err`) a run that may be
/// repeated (nothing was applied, or resending is safe).
async fn failed_send<C: CommandStore>(store: &C, cmd: &Command, e: Cafe24Error) -> Result<Outcome, Run> {
    let safe = cmd.method.resend_is_safe();
    let failed = |reason: &str, status: Option<u16>, body: serde_json::Value| Outcome::Failed {
        reason: reason.into(),
        status,
        body,
    };
    match e {
        // Refused before anything left, or answered without applying anything: the note (if
        // it was written) is removed; if that fails, a later run of a POST ends `uncertain`
        // (never a second request).
        Cafe24Error::Throttled { .. }
        | Cafe24Error::OutOfTime
        | Cafe24Error::RefreshInProgress { .. }
        | Cafe24Error::RefreshFailed
        | Cafe24Error::RateLimited { .. }
        | Cafe24Error::Config(_) => {
            clear_note(store, cmd).await;
            Err(Run::NotNow(e))
        }
        Cafe24Error::Transport(t) if t.is_connect() => {
            clear_note(store, cmd).await;
            Err(Run::Again("transport"))
        }
        // Nothing was sent: the store failed before (a token read, the note itself).
        Cafe24Error::Store(_) => Err(Run::Again("store")),
        Cafe24Error::NotInstalled => Ok(failed("not_installed", None, json!({"message": "the mall is not installed"}))),
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
        Cafe24Error::Server { .. } if safe => Err(Run::Again("server_error")),
        Cafe24Error::Timeout if safe => Err(Run::Again("timeout")),
        Cafe24Error::Transport(_) if safe => Err(Run::Again("transport")),
        Cafe24Error::Server { .. } => Ok(Outcome::Uncertain { reason: "server_error".into() }),
        Cafe24Error::Timeout => Ok(Outcome::Uncertain { reason: "timeout".into() }),
        Cafe24Error::Transport(_) => Ok(Outcome::Uncertain { reason: "transport".into() }),
        // A 2xx whose body is not JSON: it took effect, and what it said is unknown.
        Cafe24Error::Decode(_) => Ok(Outcome::Uncertain { reason: "unreadable_answer".into() }),
    }
}

async fn clear_note<C: CommandStore>(store: &C, cmd: &Command) {
    if let Err(e) = store.clear_sending(&cmd.mall_id, &cmd.key).await {
        tracing::warn!(error = %e, "command's sending note not cleared");
    }
}
