//! `relay trace <trace-id>`: every log line of one webhook, across the three functions, in time
//! order. `relay trace --mall M --order ID` (or `--product N`): the same for every webhook whose
//! jobs touched that order or product.
//!
//! On AWS it runs the saved Logs Insights query `<stack>/follow-one-webhook` (the same text,
//! [`TRACE_QUERY`], is in `infra/template.yaml`; a test keeps them equal) over the three log
//! groups; for an entity it first runs `<stack>/webhooks-of-one-entity` ([`ENTITY_QUERY`]) on the
//! worker's lines, which carry `entity_id` for order and product jobs (never a member id: that is
//! personal data), and then the trace query for the trace ids found. On the local stack it reads
//! the log file `make demo` writes, which holds the same JSON lines the functions print in Lambda.

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

/// The saved query listing the webhooks (trace ids) behind one order's or product's jobs, with
/// [`ENTITY_PLACEHOLDERS`] for the mall, the job kind and the id.
pub const ENTITY_QUERY: &str =
    "filter mall_id = \"PUT-MALL-ID-HERE\" and job = \"sync_order\" and entity_id = \"PUT-ENTITY-ID-HERE\"
| stats count(*) as lines, min(@timestamp) as first by trace_id
| sort first asc
| limit 100
";

/// Where the mall, the job kind and the id go in [`ENTITY_QUERY`].
pub const ENTITY_PLACEHOLDERS: [&str; 3] = ["PUT-MALL-ID-HERE", "sync_order", "PUT-ENTITY-ID-HERE"];

/// An order or a product, named the way the worker's log lines name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entity {
    /// `sync_order` or `sync_product` (the `job` field of the lines).
    pub job: &'static str,
    /// The order id or product number.
    pub id: String,
}

impl Entity {
    /// An order id: 1–40 characters of A-Z a-z 0-9 - _ (Cafe24's are `YYYYMMDD-NNNNNNN`), which
    /// also keeps quotes and pipes out of the query.
    pub fn order(raw: &str) -> Result<Self> {
        let ok =
            (1..=40).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            bail!("{raw:?} is not an order id (1–40 characters of A-Z a-z 0-9 - _)");
        }
        Ok(Self { job: "sync_order", id: raw.to_owned() })
    }

    /// A product number.
    pub fn product(raw: &str) -> Result<Self> {
        let n: u64 = raw.parse().with_context(|| format!("{raw:?} is not a product number"))?;
        Ok(Self { job: "sync_product", id: n.to_string() })
    }
}

/// The entity query for one mall's order or product.
pub fn entity_query_for(mall: &relay_domain::MallId, e: &Entity) -> String {
    let [m, j, i] = ENTITY_PLACEHOLDERS;
    ENTITY_QUERY.replace(m, mall.as_str()).replace(&format!("\"{j}\""), &format!("\"{}\"", e.job)).replace(i, &e.id)
}

/// The trace query for several trace ids at once.
pub fn query_for_all(traces: &[TraceId]) -> String {
    let list: Vec<String> = traces.iter().map(|t| format!("\"{}\"", t.as_str())).collect();
    TRACE_QUERY.replace(&format!("= \"{PLACEHOLDER}\""), &format!("in [{}]", list.join(", ")))
}

/// The trace ids of the worker's lines about `e` in `mall` in a local log file's text, in the
/// order they first appear.
pub fn local_traces_of(text: &str, mall: &relay_domain::MallId, e: &Entity) -> Vec<TraceId> {
    let mut out: Vec<TraceId> = Vec::new();
    for v in text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        let field = |k: &str| v.get(k).and_then(Value::as_str);
        if field("mall_id") == Some(mall.as_str()) && field("job") == Some(e.job) && field("entity_id") == Some(&e.id) {
            if let Some(t) = field("trace_id").and_then(TraceId::from_header) {
                if !out.contains(&t) {
                    out.push(t);
                }
            }
        }
    }
    out
}

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

/// The lines of `traces` in a local log file's text, metric documents left out, oldest first.
/// Returns the lines and how many lines of the file were not JSON.
pub fn local(text: &str, traces: &[TraceId]) -> (Vec<Value>, usize) {
    let mut bad = 0;
    let mut out: Vec<Value> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v)
                if v.get("_aws").is_none()
                    && v.get("trace_id")
                        .and_then(Value::as_str)
                        .is_some_and(|t| traces.iter().any(|x| x.as_str() == t)) =>
            {
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

/// Runs `query` on CloudWatch Logs Insights over `groups` for the last `since`, calling
/// `tick` while it waits. Rows come back as JSON objects keyed by field name.
pub async fn aws(
    client: &aws_sdk_cloudwatchlogs::Client,
    groups: &[String],
    query: &str,
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
        .query_string(query)
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
        let (lines, bad) = local(text, &[parse_trace_id("t1").unwrap()]);
        assert_eq!(bad, 1);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["function"], "webhook-ingest");
        let r = render(&lines[1]);
        assert!(r.contains("outcome=synced") && r.ends_with("5 ms"), "{r}");
    }

    #[test]
    fn entity_queries_name_one_order_or_product_and_refuse_query_breaking_ids() {
        let mall = relay_domain::MallId::parse("shop1").unwrap();
        let q = entity_query_for(&mall, &Entity::order("20261201-0000007").unwrap());
        assert!(q.contains("mall_id = \"shop1\"") && q.contains("job = \"sync_order\""), "{q}");
        assert!(q.contains("entity_id = \"20261201-0000007\"") && !q.contains("PUT-"), "{q}");
        let q = entity_query_for(&mall, &Entity::product("12").unwrap());
        assert!(q.contains("job = \"sync_product\"") && q.contains("entity_id = \"12\""), "{q}");
        for bad in ["", "a\"b", "x | filter 1=1", &"1".repeat(41)] {
            assert!(Entity::order(bad).is_err(), "{bad:?}");
        }
        assert!(Entity::product("12a").is_err() && Entity::product("-1").is_err());
        let all = query_for_all(&[parse_trace_id("a").unwrap(), parse_trace_id("b").unwrap()]);
        assert!(all.contains("filter trace_id in [\"a\", \"b\"]"), "{all}");
    }

    #[test]
    fn local_entity_lines_give_the_trace_ids_of_that_mall_and_kind_only() {
        let text = r#"{"trace_id":"t1","mall_id":"shop1","job":"sync_order","entity_id":"o-1","message":"job"}
{"trace_id":"t2","mall_id":"shop2","job":"sync_order","entity_id":"o-1","message":"job"}
{"trace_id":"t3","mall_id":"shop1","job":"sync_product","entity_id":"o-1","message":"job"}
{"trace_id":"t4","mall_id":"shop1","job":"sync_order","entity_id":"o-1","message":"job"}
{"trace_id":"t1","mall_id":"shop1","job":"sync_order","entity_id":"o-1","message":"call"}
"#;
        let mall = relay_domain::MallId::parse("shop1").unwrap();
        let got = local_traces_of(text, &mall, &Entity::order("o-1").unwrap());
        let got: Vec<&str> = got.iter().map(TraceId::as_str).collect();
        assert_eq!(got, ["t1", "t4"]);
    }
}
