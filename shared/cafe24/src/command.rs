//! The one execution core of a command (`relay_domain::command`), whichever door it came
//! through — the worker's command job or the call API: the record is read, a request that may
//! be out is never sent again as a POST, `sending` is noted after the limiter admitted the call
//! and before it leaves, and the outcome is recorded once (the first one stays).
//!
//! Two runs of one key can meet: the app's retry of a call-API request while the first is
//! still out, or the same key sent as a command and to the call API. A POST's note is
//! exclusive (one writer token per run), so only one of them sends; the other learns that a
//! request may be out and asks again later ([`Run::InFlight`]). A note older than the request
//! timeout plus [`NOTE_MARGIN_MS`] belongs to a run that died: its POST ends `uncertain`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use relay_domain::command::{Command, Outcome};
use relay_domain::ports::{CommandStore, Noted, RateGate, StoreError};
use relay_domain::ratelimit::Class;
use relay_domain::tokens::TokenStore;
use serde_json::json;

use crate::{Cafe24, Cafe24Error};

/// How long a command's record (and so its outcome, for the same key sent again) is kept.
pub const RECORD_TTL_MS: u64 = 30 * 86_400_000;

/// After the request timeout, how long a run still has to record its outcome: a note younger
/// than both together may belong to a run that is alive.
pub const NOTE_MARGIN_MS: u64 = 2_000;

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
    /// Another run's POST for this key may be out now: nothing was sent. Ask again after
    /// `retry_ms`, when that run has recorded its outcome or its note has aged into `uncertain`.
    InFlight {
        /// How long until the other run's note is old enough to decide on, ms (at least 100).
        retry_ms: u64,
    },
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
    let exclusive = !cmd.method.resend_is_safe();
    let in_flight_ms = cafe24.config().request_timeout.as_millis() as u64 + NOTE_MARGIN_MS;
    let wait_for = |since: u64| (since + in_flight_ms).saturating_sub(now());
    if let (true, Some(since)) = (exclusive, record.sending_since_ms) {
        // An earlier run noted the request leaving and recorded nothing after it: alive and
        // waiting for Cafe24's answer, or dead.
        if wait_for(since) > 0 {
            return Run::InFlight { retry_ms: wait_for(since).max(100) };
        }
        let outcome = settle(cafe24, cmd, class, Outcome::Uncertain { reason: "interrupted".into() }).await;
        return record_outcome(store, cmd, outcome, now()).await;
    }
    let writer = format!("{:016x}", rand::random::<u64>());
    let had_outcome = AtomicBool::new(false);
    // Since when another writer's note stands (0: none).
    let elsewhere = AtomicU64::new(0);
    let note = async {
        match store.note_sending(mall, &cmd.key, &writer, exclusive, now(), now() + RECORD_TTL_MS).await? {
            Noted::Yes => Ok(()),
            Noted::Recorded => {
                had_outcome.store(true, Ordering::Relaxed);
                Err(StoreError(Box::new(Recorded)))
            }
            Noted::Elsewhere { since_ms } => {
                elsewhere.store(since_ms.max(1), Ordering::Relaxed);
                Err(StoreError(Box::new(Recorded)))
            }
        }
    };
    let sent = cafe24.send(mall, cmd.method, &cmd.path_and_query(), cmd.body.as_ref(), class, note).await;
    let outcome = match sent {
        Ok((status, body)) => Outcome::Succeeded { status, body },
        // Another run recorded the outcome between the read above and the note: nothing was
        // sent; the next run finds that outcome.
        Err(Cafe24Error::Store(_)) if had_outcome.load(Ordering::Relaxed) => return Run::RecordedMeanwhile,
        Err(Cafe24Error::Store(_)) if elsewhere.load(Ordering::Relaxed) > 0 => {
            return Run::InFlight { retry_ms: wait_for(elsewhere.load(Ordering::Relaxed)).max(100) };
        }
        Err(e) => match failed_send(store, cmd, &writer, e).await {
            Ok(outcome @ Outcome::Uncertain { .. }) => settle(cafe24, cmd, class, outcome).await,
            Ok(outcome) => outcome,
            Err(run) => return run,
        },
    };
    record_outcome(store, cmd, outcome, now()).await
}

/// A POST whose answer is lost (`uncertain`), read back with the command's settling read: found
/// → [`Outcome::Settled`]. Anything else — not found, the read refused, throttled or failing —
/// leaves it `uncertain`: only positive evidence settles it, since a read can come before Cafe24
/// finished applying the request.
async fn settle<G: RateGate, S: TokenStore>(
    cafe24: &Cafe24<G, S>,
    cmd: &Command,
    class: Class,
    uncertain: Outcome,
) -> Outcome {
    let (Some(s), Some(pq)) = (&cmd.settle, cmd.settle_path_and_query()) else { return uncertain };
    match cafe24.get_json(&cmd.mall_id, &pq, class).await {
        Ok(answer) if s.found_in(&answer) => {
            tracing::info!(outcome = "settled", "command: the settling read found the POST's effect");
            Outcome::Settled { body: answer }
        }
        Ok(_) => {
            tracing::info!(outcome = "unsettled", "command: the settling read did not find the POST's effect");
            uncertain
        }
        Err(e) => {
            tracing::warn!(error = %e, outcome = "unsettled", "command: the settling read failed");
            uncertain
        }
    }
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
async fn failed_send<C: CommandStore>(store: &C, cmd: &Command, writer: &str, e: Cafe24Error) -> Result<Outcome, Run> {
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
            clear_note(store, cmd, writer).await;
            Err(Run::NotNow(e))
        }
        Cafe24Error::Transport(t) if t.is_connect() => {
            clear_note(store, cmd, writer).await;
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

async fn clear_note<C: CommandStore>(store: &C, cmd: &Command, writer: &str) {
    if let Err(e) = store.clear_sending(&cmd.mall_id, &cmd.key, writer).await {
        tracing::warn!(error = %e, "command's sending note not cleared");
    }
}
