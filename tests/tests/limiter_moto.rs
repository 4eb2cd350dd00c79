//! The DynamoDB rate limiter against moto: bounds under contention, and its write cost.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_aws::limiter::{system_clock, Acquire, DynamoLimiter};
use relay_domain::ratelimit::{Class, LimiterConfig};
use relay_tests::TestEnv;

/// Scaled limits for a 10 s run: 20/s, burst 10, no margins, no spacing (the mechanism itself).
fn scaled(rate: f64) -> LimiterConfig {
    LimiterConfig {
        rate_per_sec: rate,
        burst: 10,
        rate_margin: 0.0,
        burst_margin: 0,
        min_spacing_ms: 0,
        ..Default::default()
    }
}

/// Runs `tasks` workers, each with its own limiter (own cache, as separate Lambda instances
/// would have), all at full demand on one key for `secs`. Returns (admitted, elapsed, limiters).
async fn hammer(
    env: &TestEnv,
    cfg: LimiterConfig,
    tasks: usize,
    secs: u64,
) -> (u64, Duration, Vec<Arc<DynamoLimiter>>) {
    let limiters: Vec<Arc<DynamoLimiter>> = (0..tasks)
        .map(|_| {
            Arc::new(DynamoLimiter::new(
                env.ddb.clone(),
                env.stack.rate_limit_table.clone(),
                cfg.clone(),
                system_clock(),
            ))
        })
        .collect();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let handles: Vec<_> = limiters
        .iter()
        .cloned()
        .map(|l| {
            tokio::spawn(async move {
                let mut admitted = 0u64;
                while Instant::now() < deadline {
                    match l.acquire("mall-hot", Class::Live).await.unwrap() {
                        Acquire::Admitted => admitted += 1,
                        Acquire::Wait(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                    }
                }
                admitted
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    (total, start.elapsed(), limiters)
}

/// The two tests measure capacity; running them at the same time would make each the other's noise.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn sum(ls: &[Arc<DynamoLimiter>], f: impl Fn(&DynamoLimiter) -> u64) -> u64 {
    ls.iter().map(|l| f(l)).sum()
}

#[tokio::test]
async fn uncontended_costs_exactly_one_write_per_admitted_call() {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new("rl-solo").await.unwrap();
    let cfg = scaled(20.0);
    let (admitted, elapsed, ls) = hammer(&env, cfg.clone(), 1, 3).await;
    let writes = sum(&ls, |l| l.stats.writes.load(Ordering::Relaxed));
    let bound = 10.0 + 20.0 * elapsed.as_secs_f64();
    println!("uncontended: admitted {admitted} in {elapsed:?} (bound {bound:.1}), writes {writes}");
    assert_eq!(writes, admitted, "one conditional write per admitted call, none for waits");
    assert!(admitted as f64 <= bound + 1.0);
    assert!(admitted as f64 >= 0.95 * bound, "lost capacity: {admitted} of {bound:.1}");
    let stored = ls[0].stored("mall-hot").await.unwrap().unwrap();
    assert!(stored.tat_ms > 0);
}

#[tokio::test]
async fn sixteen_contending_tasks_never_exceed_the_bound_and_lose_little_capacity() {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new("rl-16").await.unwrap();
    let rate = 20.0;
    let (admitted, elapsed, ls) = hammer(&env, scaled(rate), 16, 10).await;
    let writes = sum(&ls, |l| l.stats.writes.load(Ordering::Relaxed));
    let conflicts = sum(&ls, |l| l.stats.conflicts.load(Ordering::Relaxed));
    let cached = sum(&ls, |l| l.stats.cached_waits.load(Ordering::Relaxed));
    let exhausted = sum(&ls, |l| l.stats.exhausted.load(Ordering::Relaxed));
    // All tasks share this process's clock, so the tolerance is the measurement window only:
    // one interval for a call admitted right at the deadline.
    let bound = 10.0 + rate * elapsed.as_secs_f64();
    println!(
        "16 tasks: admitted {admitted} in {elapsed:.2?} (bound {bound:.1}, {:.1}%), writes {writes} ({:.2}/admitted), \
         conflicts {conflicts}, cached waits {cached}, exhausted {exhausted}",
        100.0 * admitted as f64 / bound,
        writes as f64 / admitted as f64
    );
    assert!(admitted as f64 <= bound + 1.0, "over the limit: {admitted} > {bound:.1}");
    assert!(admitted as f64 >= 0.95 * bound, "lost capacity: {admitted} of {bound:.1}");
}
