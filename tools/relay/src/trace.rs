//! `relay trace <trace-id>`: every log line of one webhook, across the three functions, in time
//! order.
//!
//! On AWS it runs the saved Logs Insights query `<stack>/follow-one-webhook` (the same text,
//! [`TRACE_QUERY`], is in `infra/template.yaml`; a test keeps them equal) over the three log
//! groups. On the local stack it reads the log file `make demo` writes, which holds the same JSON
//! lines the functions print in Lambda.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use relay_domain::TraceId;
use serde_json::{Map, Value};

/// The saved query, with [`PLACEHOLDER`] where the trace id goes.
pub const TRACE_QUERY: &str =
    "fields @timestamp, function, level, message, mall_id, event_no, outcome, job, error_class, latency_ms, request_id
| filter trace_id = \"PUT-TRACE-ID-HERE\"
| sort @timestamp asc
| limit 1000
";

/// Where the trace id goes in [`TRACE_QUERY`].
pub const PLACEHOLDER: &str = "PUT-TRACE-ID-HERE";

/// Checks a trace id with the same rule webhook-ingest applies to `X-Trace-ID` (which also keeps
/// quotes and pipes out of the query).
pub fn parse_trace_id(raw: &str) -> Result<TraceId> {
    TraceId::from_header(raw).with_context(|| {
        format!("{raw:?} is not a trace id (1–{} characters of A-Z a-z 0-9 . _ -)", TraceId::MAX_VERBATIM_LEN)
    })
}

/// The Logs Insights query for one trace id.
pub fn query_for(trace: &TraceId) -> String {
    TRACE_QUERY.replace(PLACEHOLDER, trace.as_str())
}

/// The lines of `trace` in a local log file's text, metric documents left out, oldest first.
/// Returns the lines and how many lines of the file were not JSON.
pub fn local(text: &str, trace: &TraceId) -> (Vec<Value>, usize) {
    let mut bad = 0;
    let mut out: Vec<Value> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v.get("_aws").is_none() && v.get("trace_id").and_then(Value::as_str) == Some(trace.as_str()) => {
                out.push(v)
            }
            Ok(_) => {}
            Err(_) => bad += 1,
        }
    }
    out.sort_by(|a, b| timestamp(a).cmp(timestamp(b)));
    (out, bad)
}

fn timestamp(v: &Value) -> &str {
    v.get("@timestamp").or_else(|| v.get("timestamp")).and_then(Value::as_str).unwrap_or("")
}

/// One line for a terminal: time, function, level, message, then the fields that are set.
pub fn render(v: &Value) -> String {
    let s = |k: &str| match v.get(k) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => String::new(),
        Some(x) => x.to_string(),
    };
    let mut line = format!("{:<24} {:<15} {:<5} {:<10}", timestamp(v), s("function"), s("level"), s("message"));
    for k in ["mall_id", "event_no", "job", "outcome", "error_class"] {
        let val = s(k);
        if !val.is_empty() {
            line.push_str(&format!(" {k}={val}"));
        }
    }
    let ms = s("latency_ms");
    if !ms.is_empty() {
        line.push_str(&format!(" {ms} ms"));
    }
    line
}

/// Runs the query on CloudWatch Logs Insights over `groups` for the last `since`, calling
/// `tick` while it waits. Rows come back as JSON objects keyed by field name.
pub async fn aws(
    client: &aws_sdk_cloudwatchlogs::Client,
    groups: &[String],
    trace: &TraceId,
    since: Duration,
    tick: impl Fn(&str),
) -> Result<Vec<Value>> {
    if groups.is_empty() {
        bail!("LOG_GROUPS is empty");
    }
    let now = chrono::Utc::now().timestamp();
    let start = client
        .start_query()
        .set_log_group_names(Some(groups.to_vec()))
        .start_time(now - since.as_secs() as i64)
        .end_time(now)
        .query_string(query_for(trace))
        .send()
        .await
        .context("StartQuery")?;
    let id = start.query_id().context("StartQuery returned no query id")?.to_owned();
    for _ in 0..600 {
        let r = client.get_query_results().query_id(&id).send().await.context("GetQueryResults")?;
        let status = r.status().map(|s| s.as_str().to_owned()).unwrap_or_default();
        tick(&status);
        match status.as_str() {
            "Complete" => {
                return Ok(r
                    .results()
                    .iter()
                    .map(|row| {
                        let m: Map<String, Value> = row
                            .iter()
                            .filter_map(|f| Some((f.field()?.to_owned(), Value::String(f.value()?.to_owned()))))
                            .collect();
                        Value::Object(m)
                    })
                    .collect())
            }
            "Failed" | "Cancelled" | "Timeout" | "Unknown" => bail!("the query ended as {status}"),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    bail!("the query did not finish in 5 minutes (id {id})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_that_could_break_the_query_are_refused() {
        for bad in ["", "a\"b", "x | filter 1=1", "ünïcode", &"a".repeat(101)] {
            assert!(parse_trace_id(bad).is_err(), "{bad:?}");
        }
        let t = parse_trace_id("demo-0001.x_y").unwrap();
        assert!(query_for(&t).contains("filter trace_id = \"demo-0001.x_y\""));
        assert!(!query_for(&t).contains(PLACEHOLDER));
    }

    #[test]
    fn local_lines_are_filtered_sorted_and_skip_metrics_and_garbage() {
        let text = r#"{"timestamp":"2026-01-01T00:00:02.000Z","trace_id":"t1","function":"worker","message":"job","outcome":"synced","latency_ms":5}
not json
{"timestamp":"2026-01-01T00:00:01.000Z","trace_id":"t1","function":"webhook-ingest","message":"webhook"}
{"timestamp":"2026-01-01T00:00:01.500Z","trace_id":"t2","function":"dispatcher","message":"dispatch"}
{"_aws":{},"trace_id":"t1","function":"worker"}
"#;
        let (lines, bad) = local(text, &parse_trace_id("t1").unwrap());
        assert_eq!(bad, 1);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["function"], "webhook-ingest");
        let r = render(&lines[1]);
        assert!(r.contains("outcome=synced") && r.ends_with("5 ms"), "{r}");
    }
}
