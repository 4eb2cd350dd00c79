//! CloudWatch metrics in Embedded Metric Format (EMF).
//!
//! Each invocation prints one JSON line whose `_aws` block tells CloudWatch which top-level
//! members are metrics:
//!
//! ```text
//! {"_aws":{"Timestamp":1763776468123,"CloudWatchMetrics":[{"Namespace":"Cafe24Relay",
//!   "Dimensions":[["function"]],"Metrics":[{"Name":"Cafe24Calls","Unit":"Count"},…]}]},
//!  "function":"worker","Cafe24Calls":7,…, "request_id":"…", "message":"metrics", …}
//! ```
//!
//! The only dimension is `function`: every distinct dimension set is a billed custom metric, so a
//! mall id is never a dimension (it is a plain log field, queryable in Logs Insights). The line
//! goes through the log writer ([`crate::telemetry`]) on a target that no level filter drops, so
//! it also carries the invocation's `request_id`.
//!
//! Handlers keep cumulative counters (tests assert on them); [`Deltas`] turns them into
//! per-invocation values, and the sum over all lines equals the counters' totals even when
//! invocations overlap in one process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// The EMF document for `function`'s samples at `timestamp_ms`.
pub fn document(function: &str, timestamp_ms: u64, samples: &[Sample]) -> Value {
    let defs: Vec<Value> = samples.iter().map(|(n, u, _)| json!({"Name": n, "Unit": u.as_str()})).collect();
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["function"]], "Metrics": defs}],
        }),
    );
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
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let doc = document(function, now, samples);
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
    fn the_document_names_every_sample_as_a_metric_with_only_the_function_dimension() {
        let d = document(
            "worker",
            1_763_776_468_123,
            &[("Cafe24Calls", Unit::Count, 7), ("WaitMs", Unit::Milliseconds, 5)],
        );
        assert_eq!(d["_aws"]["Timestamp"], 1_763_776_468_123u64);
        let dir = &d["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(dir["Namespace"], NAMESPACE);
        assert_eq!(dir["Dimensions"], json!([["function"]]));
        assert_eq!(dir["Metrics"][1], json!({"Name": "WaitMs", "Unit": "Milliseconds"}));
        assert_eq!(d["function"], "worker");
        assert_eq!(d["Cafe24Calls"], 7);
    }

    #[test]
    fn deltas_sum_to_the_totals() {
        let d = Deltas::default();
        assert_eq!(d.take(&[("A", Unit::Count, 3)]), vec![("A", Unit::Count, 3)]);
        assert_eq!(d.take(&[("A", Unit::Count, 3)]), vec![("A", Unit::Count, 0)]);
        assert_eq!(d.take(&[("A", Unit::Count, 10)]), vec![("A", Unit::Count, 7)]);
    }
}
