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

    #[tokio::test]
    async fn the_deadline_is_seen_inside_its_scope_only() {
        assert_eq!(time_left(), None);
        let left = within(Instant::now() + Duration::from_secs(30), async { time_left() }).await;
        assert!(left.is_some_and(|l| l > Duration::from_secs(29)));
    }
}
