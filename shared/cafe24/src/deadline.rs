//! The invocation's deadline, for steps that must not be cut in half.
//!
//! Lambda stops the process at its deadline: nothing after that point runs. A token refresh is
//! the one sequence where that loses something — Cafe24 rotates the refresh token when it
//! issues the new pair, so a pair issued and not stored locks the mall out. The function's
//! handler runs its work [`within`] the invocation's deadline; the token code asks
//! [`token_request_timeout`] before it starts a refresh or a code exchange: the token request
//! gets only the time that leaves [`PERSIST_BUDGET`] to store the pair, and none starts when that
//! is less than [`MIN_TOKEN_WAIT`].

use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Storing a new pair: bounded attempts at the token store (see `tokens`), each bounded by
/// [`STORE_ATTEMPT`].
pub const PERSIST_BUDGET: Duration = Duration::from_secs(4);
/// One attempt to store a pair (the SDK's own timeouts are shorter; this bounds it regardless).
pub const STORE_ATTEMPT: Duration = Duration::from_millis(1_800);
/// Left over after storing: logging, the batch response.
pub const MARGIN: Duration = Duration::from_millis(500);
/// The least time worth giving the token endpoint.
pub const MIN_TOKEN_WAIT: Duration = Duration::from_secs(2);

/// Left after an Admin API call for what follows it in the invocation: storing the snapshot,
/// publishing its event and answering the batch (each an AWS call of milliseconds, bounded by the
/// SDK's 4 s operation timeout when AWS is slow).
pub const CALL_MARGIN: Duration = Duration::from_secs(2);
/// The least time worth giving an Admin API call; with less left none starts (the job is
/// deferred, not failed).
pub const MIN_CALL_WAIT: Duration = Duration::from_secs(1);

/// How long an Admin API call may take so that the invocation can still finish its record before
/// the deadline, capped at `configured`; `None` when no call should start now. A call cut by this
/// timeout fails like any timeout (a transient error, the job retried) — without it, a slow
/// Cafe24 ran the invocation into its deadline and Lambda returned the whole batch, finished
/// records included, after the visibility timeout.
/// `margin` and `min_wait`: [`CALL_MARGIN`] and [`MIN_CALL_WAIT`] unless configured otherwise.
pub fn call_timeout(configured: Duration, margin: Duration, min_wait: Duration) -> Option<Duration> {
    call_timeout_with(time_left(), configured, margin, min_wait)
}

fn call_timeout_with(
    left: Option<Duration>,
    configured: Duration,
    margin: Duration,
    min_wait: Duration,
) -> Option<Duration> {
    let Some(left) = left else { return Some(configured) };
    let available = left.saturating_sub(margin);
    (available >= min_wait).then(|| available.min(configured))
}

/// Runs `f` with `deadline` as the invocation's deadline (a task-local: every future `f` polls
/// in this task sees it).
pub async fn within<F: Future>(deadline: Instant, f: F) -> F::Output {
    DEADLINE.scope(deadline, f).await
}

/// Time left before the deadline, if one is set.
pub fn time_left() -> Option<Duration> {
    DEADLINE.try_with(|d| d.saturating_duration_since(Instant::now())).ok()
}

/// How long a token request may take so that storing its answer still fits before the
/// deadline, capped at `configured`; `None` when no token request should start now. Without a
/// deadline (tools, tests that do not set one) it is `configured`.
pub fn token_request_timeout(configured: Duration) -> Option<Duration> {
    token_request_timeout_with(time_left(), configured)
}

fn token_request_timeout_with(left: Option<Duration>, configured: Duration) -> Option<Duration> {
    let Some(left) = left else { return Some(configured) };
    let available = left.saturating_sub(PERSIST_BUDGET + MARGIN);
    (available >= MIN_TOKEN_WAIT).then(|| available.min(configured))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_request_gets_what_leaves_room_to_store_its_answer() {
        let ten = Duration::from_secs(10);
        assert_eq!(token_request_timeout_with(None, ten), Some(ten));
        assert_eq!(token_request_timeout_with(Some(Duration::from_secs(60)), ten), Some(ten));
        assert_eq!(token_request_timeout_with(Some(Duration::from_secs(9)), ten), Some(Duration::from_millis(4_500)));
        assert_eq!(token_request_timeout_with(Some(Duration::from_millis(6_500)), ten), Some(MIN_TOKEN_WAIT));
        assert_eq!(token_request_timeout_with(Some(Duration::from_millis(6_499)), ten), None);
        assert_eq!(token_request_timeout_with(Some(Duration::ZERO), ten), None);
    }

    #[test]
    fn an_admin_call_gets_what_leaves_room_to_finish_the_record() {
        let ten = Duration::from_secs(10);
        let at = |left: Option<Duration>| call_timeout_with(left, ten, CALL_MARGIN, MIN_CALL_WAIT);
        assert_eq!(at(None), Some(ten));
        assert_eq!(at(Some(Duration::from_secs(60))), Some(ten));
        assert_eq!(at(Some(Duration::from_secs(12))), Some(ten));
        assert_eq!(at(Some(Duration::from_secs(5))), Some(Duration::from_secs(3)));
        assert_eq!(at(Some(Duration::from_secs(3))), Some(MIN_CALL_WAIT));
        assert_eq!(at(Some(Duration::from_millis(2_999))), None);
        assert_eq!(at(Some(Duration::ZERO)), None);
    }

    #[tokio::test]
    async fn the_deadline_is_seen_inside_its_scope_only() {
        assert_eq!(time_left(), None);
        let left = within(Instant::now() + Duration::from_secs(30), async { time_left() }).await;
        assert!(left.is_some_and(|l| l > Duration::from_secs(29)));
    }
}
