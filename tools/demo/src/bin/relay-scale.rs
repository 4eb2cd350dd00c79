//! `relay-scale`: a virtual-time model of many malls' work queues, the worker's pollers and the
//! per-mall limiter, against Cafe24's per-mall leaky bucket. It answers what the local stack
//! cannot run: with N malls bursting at once and `WorkerMaxConcurrency` pollers, does any mall
//! get a 429, and how long does a small mall wait behind the big ones?
//!
//! What is real: the limiter's decisions and its feedback (`relay_domain::ratelimit`, the code
//! the worker runs) and Cafe24's bucket (`cafe24_sim::limits::LeakyBucket`, the simulator's).
//! What is modelled: SQS FIFO and Lambda's poller — a free poller takes up to 10 messages of one
//! visible group chosen at random (AWS does not document how it picks groups), a group is
//! locked while its batch runs, a deferral hides the group for the limiter's wait rounded up to
//! whole seconds (at least 1 s, `DEFER_MIN_S`); one job = a state read, one Cafe24 call (counted
//! by Cafe24 halfway through the round trip), a state write. Coalescing, tokens and delivery are
//! left out. Results: docs/scale.md.

use std::collections::{BinaryHeap, VecDeque};

use anyhow::{bail, Result};
use cafe24_sim::limits::LeakyBucket;
use rand::{rngs::StdRng, Rng as _, SeedableRng as _};
use relay_domain::ratelimit::{Class, Decision, Feedback, LimiterConfig, LimiterState};

#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "relay-scale",
    about = "make scale: a virtual-time model of N malls bursting at once through the worker's pollers and the per-mall limiter (prints a table)",
    long_about = None
)]
struct Args {
    /// Malls with work at t = 0.
    #[arg(long, default_value_t = 1_000)]
    malls: usize,
    /// Pollers (the worker's `WorkerMaxConcurrency`); several values run one after another.
    #[arg(long, value_delimiter = ',', default_value = "50,200,1000")]
    concurrency: Vec<usize>,
    /// Cafe24's round trip, ms.
    #[arg(long, default_value_t = 150)]
    latency_ms: u64,
    /// Seed of the model's random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// One scenario's parameters.
#[derive(Clone, Copy, Debug)]
struct Model {
    malls: usize,
    pollers: usize,
    latency_ms: u64,
    seed: u64,
}

/// Per job, the state-table round trips around the call (head read, snapshot write), ms.
const STORE_MS: u64 = 8;
/// Per invocation: the receive and the acknowledgement, ms.
const INVOKE_MS: u64 = 20;
/// Messages per batch (the event source mapping's `BatchSize` for FIFO).
const BATCH: usize = 10;
/// Waits up to this are slept in the invocation (`WORKER_MAX_SLEEP_MS`).
const MAX_SLEEP_MS: u64 = 200;
/// The deferral floor (`DEFER_MIN_S`), ms.
const DEFER_MIN_MS: u64 = 1_000;

/// Jobs per mall: most malls get a few webhooks, some a promotion's worth.
fn jobs_for(i: usize) -> u64 {
    match i % 100 {
        0 => 400,
        1..=9 => 60,
        _ => 6,
    }
}

struct Mall {
    left: u64,
    jobs: u64,
    visible_at: u64,
    busy: bool,
    done_at: u64,
    limiter: LimiterState,
    bucket: LeakyBucket,
    recent: VecDeque<u64>,
}

/// What a run measured.
#[derive(Debug, Default)]
struct Outcome {
    calls: u64,
    r429: u64,
    max_calls_1s: usize,
    makespan_ms: u64,
    billed_ms: u64,
    slept_ms: u64,
    deferrals: u64,
    /// Per size class (jobs per mall): lateness = done − the mall's own floor, ms, sorted.
    lateness: Vec<(u64, Vec<u64>)>,
}

fn run(m: Model) -> Outcome {
    let cfg = LimiterConfig::default();
    let mut rng = StdRng::seed_from_u64(m.seed);
    let mut malls: Vec<Mall> = (0..m.malls)
        .map(|i| Mall {
            left: jobs_for(i),
            jobs: jobs_for(i),
            visible_at: 0,
            busy: false,
            done_at: 0,
            limiter: LimiterState::default(),
            bucket: LeakyBucket::new(cfg.burst, cfg.rate_per_sec, 0),
            recent: VecDeque::new(),
        })
        .collect();
    let mut out = Outcome::default();
    // Pollers by the instant they are free (min-heap through Reverse).
    let mut pollers: BinaryHeap<std::cmp::Reverse<u64>> = (0..m.pollers).map(|_| std::cmp::Reverse(0)).collect();
    let mut candidates = Vec::with_capacity(m.malls);
    while let Some(std::cmp::Reverse(t)) = pollers.pop() {
        if malls.iter().all(|x| x.left == 0) {
            break;
        }
        candidates.clear();
        candidates.extend(
            malls.iter().enumerate().filter(|(_, x)| x.left > 0 && !x.busy && x.visible_at <= t).map(|(i, _)| i),
        );
        if candidates.is_empty() {
            // Nothing visible: poll again when the next group shows or another poller frees one.
            let next_visible = malls.iter().filter(|x| x.left > 0 && !x.busy).map(|x| x.visible_at).min();
            let next_free = pollers.peek().map(|r| r.0);
            let wake = next_visible.into_iter().chain(next_free).filter(|&w| w > t).min().unwrap_or(t + 100);
            pollers.push(std::cmp::Reverse(wake));
            continue;
        }
        let Some(mall) = candidates.get(rng.random_range(0..candidates.len())).and_then(|&i| malls.get_mut(i)) else {
            pollers.push(std::cmp::Reverse(t));
            continue;
        };
        mall.busy = true;
        let mut now = t + INVOKE_MS;
        for _ in 0..BATCH {
            if mall.left == 0 {
                break;
            }
            now += STORE_MS / 2;
            let admitted = loop {
                match cfg.decide(&mall.limiter, now, Class::Live) {
                    Decision::Admit(next) => {
                        mall.limiter = next;
                        break true;
                    }
                    Decision::Wait(w) if w <= MAX_SLEEP_MS => {
                        now += w;
                        out.slept_ms += w;
                    }
                    Decision::Wait(w) => {
                        mall.visible_at = now + w.div_ceil(1_000).max(DEFER_MIN_MS / 1_000) * 1_000;
                        out.deferrals += 1;
                        break false;
                    }
                }
            };
            if !admitted {
                break;
            }
            let arrives = now + m.latency_ms / 2;
            out.calls += 1;
            mall.recent.push_back(arrives);
            while mall.recent.front().is_some_and(|&a| a + 1_000 <= arrives) {
                mall.recent.pop_front();
            }
            out.max_calls_1s = out.max_calls_1s.max(mall.recent.len());
            let accepted = mall.bucket.try_add(arrives).is_ok();
            let used = mall.bucket.level(arrives).ceil() as u32;
            now += m.latency_ms;
            let fb = Feedback { call_limit: Some((used, cfg.burst)), rate_limited: !accepted, ..Feedback::default() };
            mall.limiter = cfg.apply_feedback(&mall.limiter, &fb, now);
            if !accepted {
                out.r429 += 1;
                mall.visible_at = now + DEFER_MIN_MS;
                out.deferrals += 1;
                break;
            }
            now += STORE_MS / 2;
            mall.left -= 1;
            if mall.left == 0 {
                mall.done_at = now;
            }
        }
        mall.busy = false;
        out.billed_ms += now - t;
        out.makespan_ms = out.makespan_ms.max(now);
        pollers.push(std::cmp::Reverse(now));
    }
    let mut classes: Vec<(u64, Vec<u64>)> = Vec::new();
    for x in &malls {
        let floor_ms = x.jobs.saturating_sub(u64::from(cfg.burst)) * 1_000 / 2;
        let late = x.done_at.saturating_sub(floor_ms);
        match classes.iter_mut().find(|c| c.0 == x.jobs) {
            Some(c) => c.1.push(late),
            None => classes.push((x.jobs, vec![late])),
        }
    }
    for c in &mut classes {
        c.1.sort_unstable();
    }
    classes.sort_by_key(|c| c.0);
    out.lateness = classes;
    out
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    if args.malls == 0 || args.concurrency.contains(&0) {
        bail!("--malls and every --concurrency must be at least 1");
    }
    println!(
        "{} malls at once (1 % with 400 jobs, 9 % with 60, 90 % with 6), Cafe24 round trip {} ms, bucket 40 draining 2/s per mall; \
         lateness = when a mall's last job finished minus its own floor ((jobs - 40) / 2 s)\n",
        args.malls, args.latency_ms
    );
    println!("| pollers | 429s | max calls to a mall in 1 s | makespan | lateness p50 / p99 / max, malls with 6 jobs | … with 60 | … with 400 | pollers busy | billed asleep | deferrals |");
    println!("|---:|---:|---:|---:|---|---|---|---:|---:|---:|");
    for &pollers in &args.concurrency {
        let o = run(Model { malls: args.malls, pollers, latency_ms: args.latency_ms, seed: args.seed });
        let class = |jobs: u64| {
            o.lateness.iter().find(|c| c.0 == jobs).map_or("–".to_owned(), |c| {
                format!("{:.1} / {:.1} / {:.1} s", pct(&c.1, 0.5), pct(&c.1, 0.99), pct(&c.1, 1.0))
            })
        };
        println!(
            "| {pollers} | {} | {} | {:.1} s | {} | {} | {} | {:.0} % | {:.1} % | {} |",
            o.r429,
            o.max_calls_1s,
            o.makespan_ms as f64 / 1000.0,
            class(6),
            class(60),
            class(400),
            100.0 * o.billed_ms as f64 / (pollers as f64 * o.makespan_ms.max(1) as f64),
            100.0 * o.slept_ms as f64 / o.billed_ms.max(1) as f64,
            o.deferrals,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(malls: usize, pollers: usize) -> Model {
        Model { malls, pollers, latency_ms: 150, seed: 7 }
    }

    #[test]
    fn every_job_is_done_without_a_429_and_never_more_than_eight_calls_a_second() {
        for (malls, pollers) in [(100, 5), (100, 100), (300, 30)] {
            let o = run(model(malls, pollers));
            let jobs: u64 = (0..malls).map(jobs_for).sum();
            assert_eq!(o.calls, jobs, "{malls} malls, {pollers} pollers: one call per job");
            assert_eq!(o.r429, 0, "{malls} malls, {pollers} pollers");
            assert!(o.max_calls_1s <= 8, "{malls} malls, {pollers} pollers: {} calls in 1 s", o.max_calls_1s);
        }
    }

    #[test]
    fn with_a_poller_per_mall_no_mall_waits_behind_another() {
        // Enough pollers: each mall's last job lands within a few seconds of its own floor
        // (plus the limiter's 2 % rate margin over a long drain), whatever the big malls do.
        // The floor is Cafe24's (a bucket of 40); live work leaves the burst margin and the
        // interactive share unused, which costs every mall that many intervals once.
        let cfg = LimiterConfig::default();
        let unused_s = (u64::from(cfg.burst) - (cfg.effective_burst() - cfg.reserved_for_interactive())) as f64 / 2.0;
        let o = run(model(200, 200));
        for (jobs, late) in &o.lateness {
            let floor_s = jobs.saturating_sub(40) as f64 / 2.0;
            let worst = pct(late, 1.0);
            assert!(
                worst < 2.0 + unused_s + 0.05 * floor_s,
                "malls with {jobs} jobs finished up to {worst:.1} s late ({unused_s} s of it the unused burst)"
            );
        }
    }

    #[test]
    fn the_model_sees_it_when_pollers_are_short() {
        // Ten times more malls than pollers: small malls queue for a poller (the reason to
        // size WorkerMaxConcurrency to the malls that burst together).
        let o = run(model(200, 20));
        let small = o.lateness.iter().find(|c| c.0 == 6).map(|c| pct(&c.1, 1.0)).unwrap_or(0.0);
        assert!(small > 5.0, "a small mall's worst lateness with 20 pollers for 200 malls: {small:.1} s");
    }
}
