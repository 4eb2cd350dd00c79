//! The DynamoDB rate limiter against moto: bounds under contention, no lost capacity, and its
//! write cost.
//!
//! Time is virtual: every limiter reads one shared clock that the test moves in steps, and at
//! each instant the tasks ask until every one of them has been refused. So the verdicts do not
//! depend on how fast moto or the machine is — the throughput share measured in wall time is a
//! benchmark figure (`make bench`), not a test verdict. The reference for "exactly what the
//! bound allows" is the pure GCRA core (`LimiterConfig::decide`) run sequentially on the same
//! schedule of instants.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use relay_aws::limiter::{Acquire, DynamoLimiter};
use relay_domain::clock::Clock;
use relay_domain::ratelimit::{Class, Decision, LimiterConfig, LimiterState};
use relay_tests::TestEnv;

/// 20/s, burst 10, no margins, no spacing (the mechanism itself).
fn scaled() -> LimiterConfig {
    LimiterConfig {
        rate_per_sec: 20.0,
        burst: 10,
        rate_margin: 0.0,
        burst_margin: 0,
        min_spacing_ms: 0,
        ..Default::default()
    }
}

/// Steps of the virtual clock (ms after the start): sub-interval steps, single intervals, a
/// few intervals at once, and a long idle gap that must refill no more than the burst.
const STEPS_MS: &[u64] = &[0, 20, 50, 100, 130, 400, 1_000, 1_050, 5_000, 5_010, 5_300];

/// What the pure GCRA core admits, asked sequentially until refused at each instant.
/// Also returns the state after the last step.
fn reference(cfg: &LimiterConfig, t0: u64) -> (Vec<u64>, LimiterState) {
    let mut s = LimiterState::default();
    let per_step = STEPS_MS
        .iter()
        .map(|dt| {
            let mut n = 0;
            while let Decision::Admit(next) = cfg.decide(&s, t0 + dt, Class::Live) {
                s = next;
                n += 1;
            }
            n
        })
        .collect();
    (per_step, s)
}

/// Runs `tasks` tasks on one key and one virtual clock, spread round robin over `instances`
/// limiters (each its own cache, as separate Lambda instances have; tasks sharing one are jobs
/// overlapping in one process). At each step every task asks until it gets a real refusal (a
/// give-up after too many conflicts is asked again: it is not a decision). Returns the
/// admissions per step and the limiters.
async fn hammer(
    env: &TestEnv,
    cfg: &LimiterConfig,
    tasks: usize,
    instances: usize,
    t0: u64,
) -> (Vec<u64>, Vec<Arc<DynamoLimiter>>) {
    let now = Arc::new(AtomicU64::new(t0));
    let clock: Clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let limiters: Vec<Arc<DynamoLimiter>> = (0..instances)
        .map(|_| {
            Arc::new(DynamoLimiter::new(
                env.ddb.clone(),
                env.stack.rate_limit_table.clone(),
                cfg.clone(),
                clock.clone(),
            ))
        })
        .collect();
    let mut per_step = Vec::new();
    for dt in STEPS_MS {
        now.store(t0 + dt, Ordering::SeqCst);
        let handles: Vec<_> = (0..tasks)
            .filter_map(|i| limiters.get(i % instances).cloned())
            .map(|l| {
                tokio::spawn(async move {
                    let mut admitted = 0u64;
                    loop {
                        let gave_up = l.stats.exhausted.load(Ordering::SeqCst);
                        match l.acquire("mall-hot", Class::Live).await.unwrap() {
                            Acquire::Admitted => admitted += 1,
                            Acquire::Wait(_) if l.stats.exhausted.load(Ordering::SeqCst) > gave_up => {}
                            Acquire::Wait(_) => return admitted,
                        }
                    }
                })
            })
            .collect();
        let mut step = 0;
        for h in handles {
            step += h.await.unwrap();
        }
        per_step.push(step);
    }
    (per_step, limiters)
}

fn sum(ls: &[Arc<DynamoLimiter>], f: impl Fn(&DynamoLimiter) -> u64) -> u64 {
    ls.iter().map(|l| f(l)).sum()
}

/// A start far from the wall clock, so nothing here can depend on it.
const T0: u64 = 1_900_000_000_000;

#[tokio::test]
async fn uncontended_admits_exactly_the_bound_with_one_write_per_admitted_call() {
    let env = TestEnv::new("rl-solo").await.unwrap();
    let cfg = scaled();
    let (per_step, ls) = hammer(&env, &cfg, 1, 1, T0).await;
    let (expected, end) = reference(&cfg, T0);
    let admitted: u64 = per_step.iter().sum();
    let writes = sum(&ls, |l| l.stats.writes.load(Ordering::Relaxed));
    println!("uncontended: admitted {per_step:?} (reference {expected:?}), writes {writes}");
    assert_eq!(per_step, expected, "admissions per instant differ from the GCRA bound");
    assert_eq!(writes, admitted, "one conditional write per admitted call, none for waits");
    let stored = ls[0].stored("mall-hot").await.unwrap().unwrap();
    assert_eq!(stored, end, "the stored state is the one the GCRA core reaches");
}

/// Jobs of one mall overlapping in one process (`JOBS_IN_FLIGHT` > 1) take turns on the
/// limiter: the bound exactly, and no write lost to a conflict among themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks_in_one_process_admit_exactly_the_bound_without_conflicting() {
    let env = TestEnv::new("rl-1p").await.unwrap();
    let cfg = scaled();
    let (per_step, ls) = hammer(&env, &cfg, 8, 1, T0).await;
    let (expected, _) = reference(&cfg, T0);
    let admitted: u64 = per_step.iter().sum();
    let writes = sum(&ls, |l| l.stats.writes.load(Ordering::Relaxed));
    let conflicts = sum(&ls, |l| l.stats.conflicts.load(Ordering::Relaxed));
    println!(
        "8 tasks, 1 process: admitted {per_step:?} (reference {expected:?}), writes {writes}, conflicts {conflicts}"
    );
    assert_eq!(per_step, expected, "admissions per instant differ from the GCRA bound");
    assert_eq!((conflicts, writes), (0, admitted), "one write per admitted call, no conflict");
}

#[tokio::test]
async fn sixteen_contending_tasks_admit_exactly_the_bound_never_more_and_lose_nothing() {
    let env = TestEnv::new("rl-16").await.unwrap();
    let cfg = scaled();
    let (per_step, ls) = hammer(&env, &cfg, 16, 16, T0).await;
    let (expected, end) = reference(&cfg, T0);
    let writes = sum(&ls, |l| l.stats.writes.load(Ordering::Relaxed));
    let conflicts = sum(&ls, |l| l.stats.conflicts.load(Ordering::Relaxed));
    let waits = sum(&ls, |l| l.stats.waits.load(Ordering::Relaxed));
    let exhausted = sum(&ls, |l| l.stats.exhausted.load(Ordering::Relaxed));
    let admitted: u64 = per_step.iter().sum();
    println!(
        "16 tasks: admitted {per_step:?} (reference {expected:?}), writes {writes} ({:.2}/admitted), \
         conflicts {conflicts}, waits {waits}, exhausted {exhausted}",
        writes as f64 / admitted as f64
    );
    // Safety and capacity in one: at every instant, exactly what the bound allows. More would be
    // a call over Cafe24's limit; fewer would be capacity lost to contention or the cache.
    for (i, (got, want)) in per_step.iter().zip(&expected).enumerate() {
        assert!(got <= want, "over the limit at +{} ms: {got} > {want}", STEPS_MS[i]);
        assert_eq!(got, want, "capacity lost at +{} ms", STEPS_MS[i]);
    }
    assert_eq!(ls[0].stored("mall-hot").await.unwrap().unwrap(), end);
    assert!(conflicts > 0, "the tasks really contended");
}

/// `known_wait` (the worker defers a job on it before reading anything) answers from what the
/// process last saw, with no request: never a longer wait than the store's state gives, since
/// that state only moves forward — a process that saw less answers less, never more.
#[tokio::test]
async fn a_process_knows_a_wait_no_longer_than_the_stored_state_gives() {
    let env = TestEnv::new("rl-known").await.unwrap();
    let cfg = scaled();
    let now = Arc::new(AtomicU64::new(T0));
    let clock: Clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let new = || DynamoLimiter::new(env.ddb.clone(), env.stack.rate_limit_table.clone(), cfg.clone(), clock.clone());
    let (a, b) = (new(), new());
    assert_eq!(a.known_wait("mall-hot", Class::Live), None, "nothing seen: no wait known");
    // A spends the burst; what it knows then is what acquire answers, without a request.
    while a.acquire("mall-hot", Class::Live).await.unwrap() == Acquire::Admitted {}
    let writes = a.stats.writes.load(Ordering::Relaxed);
    let Acquire::Wait(w) = a.acquire("mall-hot", Class::Live).await.unwrap() else { panic!("burst spent") };
    assert_eq!(a.known_wait("mall-hot", Class::Live), Some(w));
    now.fetch_add(w / 2, Ordering::SeqCst);
    assert_eq!(a.known_wait("mall-hot", Class::Live), Some(w - w / 2), "the wait shrinks with time");
    assert_eq!(a.stats.writes.load(Ordering::Relaxed), writes, "no request for any of it");
    // B has seen nothing: it knows no wait, though the store has one; its first acquire learns it.
    assert_eq!(b.known_wait("mall-hot", Class::Live), None);
    let Acquire::Wait(wb) = b.acquire("mall-hot", Class::Live).await.unwrap() else { panic!("A spent the burst") };
    assert_eq!(b.known_wait("mall-hot", Class::Live), Some(wb));
    // Once the credit is there, neither knows a wait.
    now.fetch_add(w, Ordering::SeqCst);
    assert_eq!((a.known_wait("mall-hot", Class::Live), b.known_wait("mall-hot", Class::Live)), (None, None));
}

/// Within one process, one class's wait never holds another: bulk work refused while the mall
/// keeps live headroom must not make the next live call wait (a "refused until" cached for
/// every class once did), nor a call to an endpoint with a small limit of its own.
#[tokio::test]
async fn a_bulk_or_capped_wait_does_not_hold_a_live_call_of_the_same_process() {
    let env = TestEnv::new("rl-class").await.unwrap();
    let cfg = LimiterConfig { min_spacing_ms: 0, ..LimiterConfig::default() };
    let clock: Clock = Arc::new(|| T0);
    let l = DynamoLimiter::new(env.ddb.clone(), env.stack.rate_limit_table.clone(), cfg.clone(), clock);
    // Fill the bucket up to bulk's share, at one instant.
    let mut n = 0;
    while matches!(l.acquire("mall-mixed", Class::Bulk).await.unwrap(), Acquire::Admitted) {
        n += 1;
    }
    assert!(n > 1 && matches!(l.acquire_within("mall-mixed", Class::Live, Some(n)).await.unwrap(), Acquire::Wait(_)));
    assert_eq!(l.acquire("mall-mixed", Class::Live).await.unwrap(), Acquire::Admitted, "live headroom is live's");
    assert_eq!(l.acquire("mall-mixed", Class::Interactive).await.unwrap(), Acquire::Admitted);
}
