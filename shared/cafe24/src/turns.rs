//! Admissions in a message group's order, for jobs of one group that overlap.
//!
//! When jobs of a FIFO group run side by side (`JOBS_IN_FLIGHT` > 1), a later one can reach the
//! rate gate first and take the credit an earlier one needed; the earlier one is then deferred,
//! and the later one — finished, published — comes back with it (FIFO returns the rest of the
//! group) and publishes its version again. Asked in the group's order instead, the gate hands
//! out credit first-come: once an earlier job is refused, every later one is refused too (the
//! limiter's state only moves forward), so nothing behind a deferral has made its call.
//!
//! The worker runs each job [`in_turn`] with its position in its group; the client waits for
//! the turn before asking the gate and passes it right after (admitted or not). A job that ends
//! without asking (coalesced, deferred before its read, failed earlier) passes it when it ends.
//! A sync job's check for a wait already known (`Cafe24::known_deferral`, before its head read)
//! takes the same turn, so a job behind one just refused is deferred without reading. Cafe24's
//! round trips and snapshot writes still overlap.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

tokio::task_local! {
    static TURN: Turn;
}

#[derive(Debug, Default)]
struct Inner {
    /// (the first position that has not passed, positions after it that have).
    state: Mutex<(usize, BTreeSet<usize>)>,
    notify: Notify,
}

/// The turns of one message group in one batch: positions 0, 1, … in the group's order.
#[derive(Clone, Debug, Default)]
pub struct Turns(Arc<Inner>);

impl Turns {
    /// The turn of the job at `position` in the group.
    pub fn turn(&self, position: usize) -> Turn {
        Turn { turns: self.clone(), position }
    }

    fn pass(&self, position: usize) {
        let mut s = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (next, ahead) = &mut *s;
        if position < *next {
            return;
        }
        ahead.insert(position);
        while ahead.remove(next) {
            *next += 1;
        }
        drop(s);
        self.0.notify.notify_waiters();
    }

    fn ready(&self, position: usize) -> bool {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner).0 >= position
    }

    async fn wait(&self, position: usize) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a pass between the check and the await wakes it.
            notified.as_mut().enable();
            if self.ready(position) {
                return;
            }
            notified.await;
        }
    }
}

/// A job's place in its group's admission order; passed when dropped, if not before.
#[derive(Debug)]
pub struct Turn {
    turns: Turns,
    position: usize,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.turns.pass(self.position);
    }
}

/// Runs `f` (one job) holding `turn`: the gate is asked only once every earlier position of the
/// group has passed. The turn passes when `f` ends at the latest (dropped included).
pub async fn in_turn<F: Future>(turn: Turn, f: F) -> F::Output {
    TURN.scope(turn, f).await
}

/// Waits until the running job may ask the gate (at once outside [`in_turn`]).
pub(crate) async fn before_asking() {
    let Ok((turns, position)) = TURN.try_with(|t| (t.turns.clone(), t.position)) else { return };
    crate::idle::waiting(turns.wait(position)).await;
}

/// The running job has had the gate's answer: later positions may ask.
pub(crate) fn asked() {
    let _ = TURN.try_with(|t| t.turns.pass(t.position));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn later_positions_ask_only_after_every_earlier_one_passed() {
        let turns = Turns::default();
        let order = Arc::new(Mutex::new(Vec::new()));
        // Position 2 is ready first, then 1 ends without asking, then 0 asks late.
        let job = |pos: usize, delay_ms: u64, asks: bool| {
            let (turn, order) = (turns.turn(pos), order.clone());
            in_turn(turn, async move {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                if asks {
                    before_asking().await;
                    order.lock().unwrap().push(pos);
                    asked();
                }
            })
        };
        tokio::join!(job(2, 0, true), job(1, 10, false), job(0, 30, true), job(3, 5, true));
        assert_eq!(*order.lock().unwrap(), vec![0, 2, 3]);
    }

    #[tokio::test]
    async fn a_job_dropped_before_asking_lets_the_next_one_ask() {
        let turns = Turns::default();
        let first = in_turn(turns.turn(0), std::future::pending::<()>());
        // Cut off (the driver stops it, or the process its invocation): dropped unfinished.
        assert!(tokio::time::timeout(Duration::from_millis(10), first).await.is_err());
        let second = in_turn(turns.turn(1), async {
            before_asking().await;
        });
        assert!(tokio::time::timeout(Duration::from_secs(1), second).await.is_ok(), "position 1 may ask");
    }

    #[tokio::test]
    async fn outside_a_turn_nothing_waits() {
        tokio::time::timeout(Duration::from_millis(100), before_asking()).await.unwrap();
        asked();
    }
}
