//! Billed time spent asleep: the wall time an invocation had every running job waiting for
//! credit.
//!
//! Summing each job's limiter sleep overstates what an invocation is billed for sleeping when
//! its jobs overlap: a job that sleeps out the spacing while another waits on Cafe24's answer
//! costs nothing the other did not already hold the invocation for. [`invocation`] keeps one
//! clock per invocation; [`job`] marks a job running, and the client marks a job waiting while
//! it sleeps for the limiter or waits for its group's turn (see `turns`: behind an earlier job
//! that has not had the gate's answer, so while that one reads or asks, the invocation is not
//! idle). The clock runs while at least one job runs and all of them wait. Outside
//! [`invocation`] nothing is measured.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static CLOCK: Arc<Clock>;
}

#[derive(Debug, Default)]
struct Counts {
    running: usize,
    waiting: usize,
    since: Option<Instant>,
    asleep: Duration,
}

/// One invocation's idle clock.
#[derive(Debug, Default)]
struct Clock(Mutex<Counts>);

impl Clock {
    fn change(&self, running: isize, waiting: isize) {
        let mut c = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        c.running = c.running.saturating_add_signed(running);
        c.waiting = c.waiting.saturating_add_signed(waiting);
        let idle = c.running > 0 && c.waiting >= c.running;
        match (idle, c.since) {
            (true, None) => c.since = Some(Instant::now()),
            (false, Some(t)) => {
                c.asleep += t.elapsed();
                c.since = None;
            }
            _ => {}
        }
    }

    fn asleep(&self) -> Duration {
        let c = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        c.asleep + c.since.map_or(Duration::ZERO, |t| t.elapsed())
    }
}

/// Undoes a [`Clock::change`] when dropped (a job cut off mid-sleep included).
struct Mark {
    clock: Option<Arc<Clock>>,
    running: isize,
    waiting: isize,
}

impl Mark {
    fn new(running: isize, waiting: isize) -> Self {
        let clock = CLOCK.try_with(Arc::clone).ok();
        if let Some(c) = &clock {
            c.change(running, waiting);
        }
        Self { clock, running, waiting }
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        if let Some(c) = &self.clock {
            c.change(-self.running, -self.waiting);
        }
    }
}

/// Runs one invocation's work `f`; answers its output and the wall time it spent with every
/// running job waiting for credit.
pub async fn invocation<F: Future>(f: F) -> (F::Output, Duration) {
    let clock = Arc::new(Clock::default());
    let out = CLOCK.scope(clock.clone(), f).await;
    (out, clock.asleep())
}

/// Runs one job of the current invocation.
pub async fn job<F: Future>(f: F) -> F::Output {
    let _running = Mark::new(1, 0);
    f.await
}

/// Runs `f`, a wait of the current job for credit (a limiter sleep, or its group's turn).
pub async fn waiting<F: Future>(f: F) -> F::Output {
    let _waiting = Mark::new(0, 1);
    f.await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn nap(ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_time_every_running_job_waits_is_asleep() {
        // A waits 100 ms then works 100 ms; B works 50 ms then waits 200 ms. Every running job
        // waits during 50..100 (both) and 200..250 (B alone, A has ended): 100 ms.
        let a = job(async {
            waiting(nap(100)).await;
            nap(100).await;
        });
        let b = job(async {
            nap(50).await;
            waiting(nap(200)).await;
        });
        let ((), asleep) = invocation(async {
            tokio::join!(a, b);
        })
        .await;
        assert_eq!(asleep, Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_job_asleep_is_all_asleep_and_nothing_is_measured_outside_an_invocation() {
        let ((), asleep) = invocation(job(async {
            nap(30).await;
            waiting(nap(70)).await;
        }))
        .await;
        assert_eq!(asleep, Duration::from_millis(70));
        // No invocation: no clock, no panic.
        job(waiting(nap(10))).await;
    }
}
