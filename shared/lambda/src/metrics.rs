//! CloudWatch metrics in Embedded Metric Format (EMF).
//!
//! Each invocation prints one JSON line whose `_aws` block tells CloudWatch which top-level
//! members are metrics:
//!
//! ```text
//! {"_aws":{"Timestamp":1763776468123,"CloudWatchMetrics":[{"Namespace":"Cafe24Relay",
//!   "Dimensions":[["stack","function"]],"Metrics":[{"Name":"Cafe24Calls","Unit":"Count"},…]}]},
//!  "stack":"prod","function":"worker","Cafe24Calls":7,…, "request_id":"…", "message":"metrics", …}
//! ```
//!
//! The dimensions are `stack` and `function`: `stack` keeps two stacks in one account (staging and
//! prod) on separate metrics, so one's alarms never fire on the other's traffic. It is the
//! deployed function's name less `-<function>` (the template names functions
//! `<stack>-<function>`), `local` off Lambda. Every distinct dimension set is a billed custom
//! metric, so a mall id is never a dimension (it is a plain log field, queryable in Logs Insights). The line
//! goes through the log writer ([`crate::telemetry`]) on a target that no level filter drops, so
//! it also carries the invocation's `request_id`.
//!
//! Handlers keep cumulative counters (tests assert on them); [`Deltas`] turns them into
//! per-invocation values, and the sum over all lines equals the counters' totals even when
//! invocations overlap in one process.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use crate::telemetry::METRICS_TARGET;

/// The CloudWatch namespace of every relay metric.
pub const NAMESPACE: &str = "Cafe24Relay";

/// A metric's unit (the EMF names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A count.
    Count,
    /// A duration in milliseconds.
    Milliseconds,
}

impl Unit {
    /// The EMF unit name.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One metric value.
pub type Sample = (&'static str, Unit, u64);

/// The stack a function belongs to, from its deployed name (`<stack>-<function>`, as the
/// template names them); the whole name when it does not end so; `local` without one.
pub fn stack_of(deployed_name: Option<&str>, function: &str) -> String {
    match deployed_name.map(str::trim).filter(|n| !n.is_empty()) {
        None => "local".to_owned(),
        Some(n) => {
            n.strip_suffix(function).and_then(|s| s.strip_suffix('-')).filter(|s| !s.is_empty()).unwrap_or(n).to_owned()
        }
    }
}

static STACK: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// This process's stack (read once from `AWS_LAMBDA_FUNCTION_NAME`, which Lambda sets).
fn stack(function: &str) -> &'static str {
    STACK.get_or_init(|| stack_of(std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok().as_deref(), function))
}

/// The EMF document for `function`'s samples at `timestamp_ms`, in `stack`.
pub fn document(stack: &str, function: &str, timestamp_ms: u64, samples: &[Sample]) -> Value {
    let defs: Vec<Value> = samples.iter().map(|(n, u, _)| json!({"Name": n, "Unit": u.as_str()})).collect();
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["stack", "function"]], "Metrics": defs}],
        }),
    );
    root.insert("stack".into(), Value::String(stack.to_owned()));
    root.insert("function".into(), Value::String(function.to_owned()));
    for (n, _, v) in samples {
        root.insert((*n).to_owned(), Value::from(*v));
    }
    Value::Object(root)
}

/// Prints `samples` as one EMF line (nothing when `samples` is empty).
pub fn emit(function: &str, samples: &[Sample]) {
    if samples.is_empty() {
        return;
    }
    let now = crate::clock::now_ms();
    let doc = document(stack(function), function, now, samples);
    tracing::info!(target: METRICS_TARGET, emf = %doc, "metrics");
}

/// Turns cumulative counters into the increase since the previous call.
#[derive(Debug, Default)]
pub struct Deltas {
    last: Mutex<HashMap<&'static str, u64>>,
}

impl Deltas {
    /// The increase of each counter since the last call (a counter seen for the first time counts
    /// from zero). A poisoned lock yields the totals rather than a panic.
    pub fn take(&self, cumulative: &[Sample]) -> Vec<Sample> {
        let mut last = match self.last.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        cumulative
            .iter()
            .map(|(n, u, v)| {
                let prev = last.insert(n, *v).unwrap_or(0);
                (*n, *u, v.saturating_sub(prev))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_every_sample_as_a_metric_with_only_the_stack_and_function_dimensions() {
        let d = document(
            "staging",
            "worker",
            1_763_776_468_123,
            &[("Cafe24Calls", Unit::Count, 7), ("WaitMs", Unit::Milliseconds, 5)],
        );
        assert_eq!(d["_aws"]["Timestamp"], 1_763_776_468_123u64);
        let dir = &d["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(dir["Namespace"], NAMESPACE);
        assert_eq!(dir["Dimensions"], json!([["stack", "function"]]));
        assert_eq!(d["stack"], "staging");
        assert_eq!(dir["Metrics"][1], json!({"Name": "WaitMs", "Unit": "Milliseconds"}));
        assert_eq!(d["function"], "worker");
        assert_eq!(d["Cafe24Calls"], 7);
    }

    #[test]
    fn the_stack_comes_from_the_deployed_function_name() {
        assert_eq!(stack_of(Some("prod-relay-worker"), "worker"), "prod-relay");
        assert_eq!(stack_of(Some("staging-webhook-ingest"), "webhook-ingest"), "staging");
        assert_eq!(stack_of(Some("renamed"), "worker"), "renamed", "not <stack>-<function>: the whole name");
        assert_eq!(stack_of(Some("-worker"), "worker"), "-worker");
        assert_eq!(stack_of(Some(" "), "worker"), "local");
        assert_eq!(stack_of(None, "dispatcher"), "local");
    }

    #[test]
    fn deltas_sum_to_the_totals() {
        let d = Deltas::default();
        assert_eq!(d.take(&[("A", Unit::Count, 3)]), vec![("A", Unit::Count, 3)]);
        assert_eq!(d.take(&[("A", Unit::Count, 3)]), vec![("A", Unit::Count, 0)]);
        assert_eq!(d.take(&[("A", Unit::Count, 10)]), vec![("A", Unit::Count, 7)]);
    }
}
