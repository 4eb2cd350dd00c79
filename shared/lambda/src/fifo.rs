//! The FIFO batch driver: Lambda hands a batch that may mix message groups; this runs each
//! group's records strictly in order, groups independently and concurrently, and returns exactly
//! the records that must come back.
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
}

/// Longest visibility delay SQS accepts.
pub const MAX_VISIBILITY_S: u32 = 43_200;

/// Runs `handler` over `items` (id and group read with `id`/`group`), following the FIFO rules.
/// `time_left` is polled before each record; below `min_left` the rest of the group is returned.
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
        let (handler, time_left) = (&handler, &time_left);
        async move {
            // (index, Some(delay) | None) for returned records; counts.
            let mut returned: Vec<(usize, Option<u32>)> = Vec::new();
            let (mut processed, mut deferred, mut failed, mut out_of_time) = (0, 0, 0, 0);
            let mut stop: Option<Option<u32>> = None;
            for &i in idx {
                if let Some(delay) = stop {
                    returned.push((i, delay));
                    continue;
                }
                if time_left() < min_left {
                    out_of_time += 1;
                    stop = Some(None);
                    returned.push((i, None));
                    continue;
                }
                let Some(item) = items.get(i) else { continue };
                processed += 1;
                match handler(i, item).await {
                    RecordResult::Done => {}
                    RecordResult::Failed => {
                        failed += 1;
                        stop = Some(None);
                        returned.push((i, None));
                    }
                    RecordResult::Deferred { delay_s } => {
                        deferred += 1;
                        let d = delay_s.min(MAX_VISIBILITY_S);
                        stop = Some(Some(d));
                        returned.push((i, Some(d)));
                    }
                }
            }
            (returned, processed, deferred, failed, out_of_time)
        }
    });
    let results = futures::future::join_all(per_group).await;
    let mut plan = BatchPlan::default();
    let mut all: Vec<(usize, Option<u32>)> = Vec::new();
    for (returned, p, d, f, o) in results {
        all.extend(returned);
        plan.processed += p;
        plan.deferred += d;
        plan.failed += f;
        plan.out_of_time += o;
    }
    all.sort_by_key(|(i, _)| *i);
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
            for (i, (id, g)) in it.iter().enumerate() {
                let done = calls.contains(&i) && outcomes[i] == RecordResult::Done && !plan.returned.contains(id);
                if done {
                    // Every earlier record of the same group must be done too.
                    for (jid, jg) in it.iter().take(i) {
                        if jg == g {
                            prop_assert!(!plan.returned.contains(jid), "{id} done after returned {jid}");
                        }
                    }
                }
                // A record is either reported done (processed, Done) or returned — never lost.
                prop_assert!(done || plan.returned.contains(id), "{id} neither done nor returned");
            }
            // The returned list holds only batch ids, each once, in input order.
            let mut sorted = plan.returned.clone();
            sorted.sort_by_key(|s| s[1..].parse::<usize>().unwrap());
            prop_assert_eq!(&sorted, &plan.returned);
        }
    }
}
