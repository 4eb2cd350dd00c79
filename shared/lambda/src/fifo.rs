//! The FIFO batch driver: Lambda hands a batch that may mix message groups; this runs each
//! group's records strictly in order ([`drive`]; [`drive_overlapping`] lets records of a group
//! that commute run side by side, the outcome still decided in order), groups independently and
//! concurrently, and returns exactly the records that must come back.
//!
//! Rules (AWS's FIFO rule, refined like Powertools' `skipGroupOnError`):
//! - after a record fails or is deferred, the rest of **its group** is returned unprocessed;
//!   other groups go on;
//! - before each record, the remaining invocation time is checked; if it is short, that record and
//!   the rest of its group are returned instead of risking a timeout (which would redeliver the
//!   whole batch);
//! - a deferred record and the rest of its group get a visibility delay (the caller applies it with
//!   `ChangeMessageVisibility` before answering), so nothing sleeps while billed.
//!
//! Invariant (property-tested): no record after a returned one in the same group is ever
//! reported as done.

use std::future::Future;
use std::time::Duration;

/// What handling one record came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordResult {
    /// Done: delete it.
    Done,
    /// Failed: return it (and the rest of its group) with the queue's visibility timeout.
    Failed,
    /// Not now: return it (and the rest of its group) visible again after this many seconds.
    Deferred {
        /// Visibility delay, seconds (SQS allows 0..=43200).
        delay_s: u32,
    },
}

/// The driver's answer for a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchPlan {
    /// Message ids to report in `batchItemFailures`, in input order.
    pub returned: Vec<String>,
    /// (message index in the batch, delay) for every returned record that needs a visibility change.
    pub visibility: Vec<(usize, u32)>,
    /// Records processed (handler called).
    pub processed: usize,
    /// Records deferred by their handler (not counting the group siblings returned with them).
    pub deferred: usize,
    /// Records that failed.
    pub failed: usize,
    /// Records returned because time ran out.
    pub out_of_time: usize,
    /// Batch indices of the returned records whose handler never started, in input order
    /// (a caller may note that this receive did nothing with them).
    pub unstarted: Vec<usize>,
    /// Batch indices of the returned records whose handler finished done (behind a record of
    /// their group that did not), in input order: their work is complete.
    pub finished: Vec<usize>,
}

/// Longest visibility delay SQS accepts.
pub const MAX_VISIBILITY_S: u32 = 43_200;

/// Runs `handler` over `items` (id and group read with `id`/`group`), following the FIFO rules,
/// one record of a group at a time.
pub async fn drive<T, H, Fut>(
    items: &[T],
    id: impl Fn(&T) -> &str,
    group: impl Fn(&T) -> &str,
    time_left: impl Fn() -> Duration,
    min_left: Duration,
    handler: H,
) -> BatchPlan
where
    H: Fn(usize, &T) -> Fut,
    Fut: Future<Output = RecordResult>,
{
    drive_overlapping(items, id, group, |_| None, 1, time_left, min_left, handler).await
}

/// [`drive`], with up to `window` records of one group in flight at once where they commute:
/// `key` names what a record acts on (`None`: it runs alone). A record starts only when every
/// record before it in its group has started, none in flight is keyless, none in flight has
/// its key, and fewer than `window` are in flight; a keyless record waits for the group to be
/// idle. The outcome is decided in group order as in [`drive`]: from the first record that did
/// not finish done, that record and every later one of its group are returned with its delay —
/// later ones that had already finished included (their redelivery must find them done: the
/// handler's idempotency is what makes overlapping safe). Nothing starts after a record of the
/// group failed or was deferred.
#[allow(clippy::too_many_arguments)]
pub async fn drive_overlapping<T, H, Fut>(
    items: &[T],
    id: impl Fn(&T) -> &str,
    group: impl Fn(&T) -> &str,
    key: impl Fn(&T) -> Option<String>,
    window: usize,
    time_left: impl Fn() -> Duration,
    min_left: Duration,
    handler: H,
) -> BatchPlan
where
    H: Fn(usize, &T) -> Fut,
    Fut: Future<Output = RecordResult>,
{
    use futures::stream::{FuturesUnordered, StreamExt as _};
    let window = window.max(1);
    // Groups in order of first appearance, each with its records' indices in order.
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let g = group(it);
        match groups.iter_mut().find(|(name, _)| *name == g) {
            Some((_, v)) => v.push(i),
            None => groups.push((g, vec![i])),
        }
    }
    let per_group = groups.iter().map(|(_, idx)| {
        let (handler, time_left, key) = (&handler, &time_left, &key);
        async move {
            // Per position in the group: its result once finished (`None`: not started or
            // stopped for time).
            let mut results: Vec<Option<RecordResult>> = vec![None; idx.len()];
            let mut in_flight = FuturesUnordered::new();
            let mut keys_in_flight: Vec<(usize, Option<String>)> = Vec::new();
            let (mut next, mut processed, mut out_of_time, mut stopped) = (0, 0, 0, false);
            loop {
                while !stopped && next < idx.len() && in_flight.len() < window {
                    let Some(item) = idx.get(next).and_then(|&i| items.get(i)) else {
                        next += 1;
                        continue;
                    };
                    // One at a time, every record runs alone: no key needed (nor its cost).
                    let k = if window > 1 { key(item) } else { None };
                    let blocked = match &k {
                        None => !keys_in_flight.is_empty(),
                        Some(k) => keys_in_flight.iter().any(|(_, f)| f.as_ref().is_none_or(|f| f == k)),
                    };
                    if blocked {
                        break;
                    }
                    if time_left() < min_left {
                        out_of_time += 1;
                        stopped = true;
                        break;
                    }
                    processed += 1;
                    keys_in_flight.push((next, k));
                    let (pos, i) = (next, idx.get(next).copied().unwrap_or_default());
                    in_flight.push(async move { (pos, handler(i, item).await) });
                    next += 1;
                }
                let Some((pos, r)) = in_flight.next().await else { break };
                keys_in_flight.retain(|(p, _)| *p != pos);
                if let Some(slot) = results.get_mut(pos) {
                    *slot = Some(r);
                }
                stopped |= r != RecordResult::Done;
            }
            let deferred = results.iter().filter(|r| matches!(r, Some(RecordResult::Deferred { .. }))).count();
            let failed = results.iter().filter(|r| matches!(r, Some(RecordResult::Failed))).count();
            // From the first record not done: it and the rest of the group come back.
            let first = results.iter().position(|r| *r != Some(RecordResult::Done)).unwrap_or(results.len());
            let delay = match results.get(first) {
                Some(Some(RecordResult::Deferred { delay_s })) => Some((*delay_s).min(MAX_VISIBILITY_S)),
                _ => None,
            };
            let returned: Vec<(usize, Option<u32>)> = idx.iter().skip(first).map(|&i| (i, delay)).collect();
            let unstarted: Vec<usize> =
                idx.iter().zip(&results).filter(|(_, r)| r.is_none()).map(|(&i, _)| i).collect();
            // Returned, yet done: behind the first record not done.
            let finished: Vec<usize> = idx
                .iter()
                .zip(&results)
                .skip(first)
                .filter(|(_, r)| **r == Some(RecordResult::Done))
                .map(|(&i, _)| i)
                .collect();
            (returned, processed, deferred, failed, out_of_time, (unstarted, finished))
        }
    });
    let results = futures::future::join_all(per_group).await;
    let mut plan = BatchPlan::default();
    let mut all: Vec<(usize, Option<u32>)> = Vec::new();
    for (returned, p, d, f, o, (u, done)) in results {
        all.extend(returned);
        plan.unstarted.extend(u);
        plan.finished.extend(done);
        plan.processed += p;
        plan.deferred += d;
        plan.failed += f;
        plan.out_of_time += o;
    }
    all.sort_by_key(|(i, _)| *i);
    plan.unstarted.sort_unstable();
    plan.finished.sort_unstable();
    for (i, delay) in all {
        if let Some(it) = items.get(i) {
            plan.returned.push(id(it).to_owned());
            if let Some(d) = delay {
                plan.visibility.push((i, d));
            }
        }
    }
    plan
}

/// Glue between Lambda's SQS event types and [`drive`].
pub mod sqs {
    use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};

    /// A record's message id (empty if absent, which Lambda never sends).
    pub fn message_id(m: &SqsMessage) -> &str {
        m.message_id.as_deref().unwrap_or("")
    }

    /// The visibility delay after a transient failure: `base` × the message's receive count,
    /// at most 60 s — so a long outage costs few of the queue's `maxReceiveCount` receives
    /// (1000 receives ≥ 16 h of retries; see the template).
    pub fn retry_delay_s(m: &SqsMessage, base: u32) -> u32 {
        let receives = m.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse::<u32>().ok()).unwrap_or(1);
        base.saturating_mul(receives.max(1)).min(60)
    }

    /// Whether this is the message's first receive (`ApproximateReceiveCount` = 1). Missing or
    /// unreadable counts as a redelivery, the side that repeats work rather than skipping it.
    pub fn first_receive(m: &SqsMessage) -> bool {
        m.attributes.get("ApproximateReceiveCount").is_some_and(|v| v == "1")
    }

    /// How many times the record was received, this time included (`None` when the attribute
    /// is missing or not a number).
    pub fn receive_count(m: &SqsMessage) -> Option<u32> {
        m.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok())
    }

    /// A record's FIFO message group.
    pub fn group_id(m: &SqsMessage) -> &str {
        m.attributes.get("MessageGroupId").map(String::as_str).unwrap_or("")
    }

    /// Applies a plan's visibility delays to the returned records with `ChangeMessageVisibility`
    /// (before the batch response: a returned message keeps the visibility set here, so a
    /// deferral costs its delay, not the queue's whole visibility timeout). A change that fails
    /// is logged; that message comes back after the queue's default instead — later, never lost.
    pub async fn apply_visibility<V: relay_domain::ports::VisibilityControl>(
        plan: &super::BatchPlan,
        records: &[SqsMessage],
        visibility: &V,
    ) {
        let deferrals: Vec<(String, u32)> = plan
            .visibility
            .iter()
            .filter_map(|(i, d)| records.get(*i).and_then(|m| m.receipt_handle.clone()).map(|rh| (rh, *d)))
            .collect();
        if deferrals.is_empty() {
            return;
        }
        match visibility.defer(&deferrals).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(
                    failed = n,
                    "some visibility changes failed; those messages return after the queue default"
                )
            }
            Err(e) => tracing::warn!(error = %e, "visibility change failed; messages return after the queue default"),
        }
    }

    /// The partial-batch response listing exactly `returned`.
    pub fn response(returned: Vec<String>) -> SqsBatchResponse {
        let mut resp = SqsBatchResponse::default();
        resp.batch_item_failures = returned
            .into_iter()
            .map(|id| {
                let mut f = BatchItemFailure::default();
                f.item_identifier = id;
                f
            })
            .collect();
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Mutex;

    #[test]
    fn only_a_receive_count_of_exactly_one_is_a_first_receive() {
        let msg = |count: Option<&str>| {
            let mut m = aws_lambda_events::event::sqs::SqsMessage::default();
            if let Some(c) = count {
                m.attributes.insert("ApproximateReceiveCount".into(), c.into());
            }
            m
        };
        assert!(sqs::first_receive(&msg(Some("1"))));
        for redelivered in [Some("2"), Some("17"), Some(""), Some("one"), Some("01"), Some("-1"), None] {
            assert!(!sqs::first_receive(&msg(redelivered)), "{redelivered:?}");
        }
    }

    fn run(items: &[(String, String)], outcomes: &[RecordResult], budget_records: usize) -> (BatchPlan, Vec<usize>) {
        let calls = Mutex::new(Vec::new());
        let left = Mutex::new(budget_records);
        let plan = futures::executor::block_on(drive(
            items,
            |it| it.0.as_str(),
            |it| it.1.as_str(),
            || {
                let l = *left.lock().unwrap();
                if l == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_secs(60)
                }
            },
            Duration::from_secs(5),
            |i, _| {
                calls.lock().unwrap().push(i);
                let mut l = left.lock().unwrap();
                *l = l.saturating_sub(1);
                let r = outcomes[i];
                async move { r }
            },
        ));
        (plan, calls.into_inner().unwrap())
    }

    fn items(groups: &[&str]) -> Vec<(String, String)> {
        groups.iter().enumerate().map(|(i, g)| (format!("m{i}"), (*g).to_owned())).collect()
    }

    #[test]
    fn a_failure_returns_the_rest_of_its_group_only() {
        use RecordResult::*;
        let it = items(&["a", "b", "a", "a", "b"]);
        let (plan, calls) = run(&it, &[Done, Done, Failed, Done, Done], 100);
        assert_eq!(plan.returned, vec!["m2", "m3"]);
        assert!(!calls.contains(&3), "m3 must not run after m2 failed");
        assert!(calls.contains(&4), "group b goes on");
        assert!(plan.visibility.is_empty());
    }

    #[test]
    fn a_deferral_sets_the_delay_on_the_rest_of_its_group() {
        use RecordResult::*;
        let it = items(&["a", "a", "a", "b"]);
        let (plan, _) = run(&it, &[Done, Deferred { delay_s: 7 }, Done, Done], 100);
        assert_eq!(plan.returned, vec!["m1", "m2"]);
        assert_eq!(plan.visibility, vec![(1, 7), (2, 7)]);
        assert_eq!((plan.deferred, plan.failed), (1, 0));
    }

    #[test]
    fn running_out_of_time_returns_the_rest_instead_of_timing_out() {
        use RecordResult::*;
        let it = items(&["a", "a", "a"]);
        let (plan, calls) = run(&it, &[Done, Done, Done], 1);
        assert_eq!(calls, vec![0]);
        assert_eq!(plan.returned, vec!["m1", "m2"]);
        assert_eq!(plan.out_of_time, 1);
    }

    fn outcome() -> impl Strategy<Value = RecordResult> {
        prop_oneof![
            6 => Just(RecordResult::Done),
            1 => Just(RecordResult::Failed),
            1 => (0u32..100).prop_map(|d| RecordResult::Deferred { delay_s: d }),
        ]
    }

    /// Yields `n` times before finishing: records of one batch finish out of order.
    async fn yield_n(n: usize) {
        struct Yield(bool);
        impl Future for Yield {
            type Output = ();
            fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
                if self.0 {
                    std::task::Poll::Ready(())
                } else {
                    self.0 = true;
                    cx.waker().wake_by_ref();
                    std::task::Poll::Pending
                }
            }
        }
        for _ in 0..n {
            Yield(false).await;
        }
    }

    /// Item: (id, group, key). Returns the plan, the started indices, and the most records of one
    /// group in flight at once; panics if two records with one key, or a keyless record and any
    /// other of its group, were ever in flight together.
    fn run_overlapping(
        items: &[(String, String, Option<String>)],
        outcomes: &[(RecordResult, usize)],
        window: usize,
        budget_records: usize,
    ) -> (BatchPlan, Vec<usize>, usize) {
        let calls = Mutex::new(Vec::new());
        let left = Mutex::new(budget_records);
        let flying: Mutex<Vec<usize>> = Mutex::new(Vec::new());
        let most = Mutex::new(0usize);
        let plan = futures::executor::block_on(drive_overlapping(
            items,
            |it| it.0.as_str(),
            |it| it.1.as_str(),
            |it| it.2.clone(),
            window,
            || if *left.lock().unwrap() == 0 { Duration::ZERO } else { Duration::from_secs(60) },
            Duration::from_secs(5),
            |i, it| {
                calls.lock().unwrap().push(i);
                let mut l = left.lock().unwrap();
                *l = l.saturating_sub(1);
                {
                    let mut f = flying.lock().unwrap();
                    for &j in f.iter().filter(|&&j| items[j].1 == it.1) {
                        let (a, b) = (&items[j].2, &it.2);
                        assert!(a.is_some() && b.is_some() && a != b, "{j} and {i} overlapped");
                    }
                    f.push(i);
                    let n = f.iter().filter(|&&j| items[j].1 == it.1).count();
                    let mut m = most.lock().unwrap();
                    *m = (*m).max(n);
                }
                let (r, yields) = outcomes[i];
                let flying = &flying;
                async move {
                    yield_n(yields).await;
                    flying.lock().unwrap().retain(|&j| j != i);
                    r
                }
            },
        ));
        (plan, calls.into_inner().unwrap(), most.into_inner().unwrap())
    }

    fn keyed(n: usize) -> Vec<(String, String, Option<String>)> {
        (0..n).map(|i| (format!("m{i}"), "a".to_owned(), Some(format!("order-{i}")))).collect()
    }

    #[test]
    fn records_with_distinct_keys_overlap_up_to_the_window() {
        let it = keyed(8);
        let outcomes: Vec<_> = (0..8).map(|i| (RecordResult::Done, 8 - i)).collect();
        let (plan, calls, most) = run_overlapping(&it, &outcomes, 4, 100);
        assert_eq!((plan.returned.len(), plan.processed, calls.len()), (0, 8, 8));
        assert_eq!(most, 4, "four in flight at once, never more");
        let (_, _, most) = run_overlapping(&it, &outcomes, 1, 100);
        assert_eq!(most, 1);
    }

    #[test]
    fn a_deferral_returns_later_records_that_finished_first() {
        use RecordResult::*;
        let it = keyed(6);
        // m1 is deferred after m2 (started beside it) finished done; m3 is in flight by then.
        let outcomes = [(Done, 0), (Deferred { delay_s: 3 }, 1), (Done, 0), (Done, 9), (Done, 0), (Done, 0)];
        let (plan, calls, _) = run_overlapping(&it, &outcomes, 2, 100);
        assert_eq!(calls, vec![0, 1, 2, 3]);
        assert_eq!(plan.returned, vec!["m1", "m2", "m3", "m4", "m5"]);
        assert_eq!(plan.visibility, vec![(1, 3), (2, 3), (3, 3), (4, 3), (5, 3)]);
        assert!(!calls.contains(&4), "nothing starts after the deferral is known: {calls:?}");
    }

    #[test]
    fn a_keyless_record_runs_alone_and_one_key_never_twice_at_once() {
        use RecordResult::*;
        let mut it = keyed(6);
        it[2].2 = None; // e.g. a token or backfill job
        it[4].2 = it[3].2.clone(); // the same order twice
        let outcomes: Vec<_> = (0..6).map(|i| (Done, 6 - i)).collect();
        let (plan, calls, _) = run_overlapping(&it, &outcomes, 4, 100);
        assert!(plan.returned.is_empty());
        assert_eq!(calls.len(), 6);
    }

    /// The FIFO outcome of a plan over records `m0`, `m1`, … of `groups`: nothing after a
    /// returned record of its group is done, every record is done or returned (never lost),
    /// the returned ids are batch ids, each once, in input order, and `unstarted` names
    /// exactly the records whose handler was never called (each of them returned), and
    /// `finished` exactly the returned records whose handler finished done.
    fn fifo_outcome_holds(
        groups: &[&str],
        plan: &BatchPlan,
        calls: &[usize],
        outcomes: &[RecordResult],
    ) -> Result<(), TestCaseError> {
        for (i, g) in groups.iter().enumerate() {
            let id = format!("m{i}");
            let done = calls.contains(&i) && outcomes[i] == RecordResult::Done && !plan.returned.contains(&id);
            if done {
                for (j, jg) in groups.iter().enumerate().take(i) {
                    prop_assert!(jg != g || !plan.returned.contains(&format!("m{j}")), "{id} done after returned m{j}");
                }
            }
            prop_assert!(done || plan.returned.contains(&id), "{id} neither done nor returned");
        }
        let mut sorted = plan.returned.clone();
        sorted.sort_by_key(|s| s[1..].parse::<usize>().unwrap());
        prop_assert_eq!(&sorted, &plan.returned);
        let never_called: Vec<usize> = (0..groups.len()).filter(|i| !calls.contains(i)).collect();
        prop_assert_eq!(&plan.unstarted, &never_called);
        let returned_done: Vec<usize> = (0..groups.len())
            .filter(|&i| {
                calls.contains(&i) && outcomes[i] == RecordResult::Done && plan.returned.contains(&format!("m{i}"))
            })
            .collect();
        prop_assert_eq!(&plan.finished, &returned_done);
        Ok(())
    }

    proptest! {
        #[test]
        fn nothing_after_a_returned_record_of_its_group_is_ever_done(
            spec in proptest::collection::vec((0usize..4, outcome()), 1..10),
            budget in 0usize..12,
        ) {
            let names = ["g0", "g1", "g2", "g3"];
            let it: Vec<(String, String)> = spec.iter().enumerate().map(|(i, (g, _))| (format!("m{i}"), names[*g].to_owned())).collect();
            let outcomes: Vec<RecordResult> = spec.iter().map(|(_, o)| *o).collect();
            let (plan, calls) = run(&it, &outcomes, budget);
            let groups: Vec<&str> = it.iter().map(|(_, g)| g.as_str()).collect();
            fifo_outcome_holds(&groups, &plan, &calls, &outcomes)?;
        }

        #[test]
        fn overlapping_keeps_the_fifo_outcome_and_the_exclusions(
            spec in proptest::collection::vec((0usize..3, proptest::option::of(0usize..4), outcome(), 0usize..6), 1..12),
            window in 1usize..6,
            budget in 0usize..14,
        ) {
            let names = ["g0", "g1", "g2"];
            let it: Vec<(String, String, Option<String>)> = spec
                .iter()
                .enumerate()
                .map(|(i, (g, k, _, _))| (format!("m{i}"), names[*g].to_owned(), k.map(|k| format!("k{k}"))))
                .collect();
            let outcomes: Vec<(RecordResult, usize)> = spec.iter().map(|(_, _, o, y)| (*o, *y)).collect();
            let (plan, calls, most) = run_overlapping(&it, &outcomes, window, budget);
            prop_assert!(most <= window);
            let groups: Vec<&str> = it.iter().map(|(_, g, _)| g.as_str()).collect();
            let results: Vec<RecordResult> = outcomes.iter().map(|(r, _)| *r).collect();
            fifo_outcome_holds(&groups, &plan, &calls, &results)?;
        }
    }
}
