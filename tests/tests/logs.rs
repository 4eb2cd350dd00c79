//! What operators see: the log lines and EMF metric lines of a local end-to-end run (Cafe24's
//! sample webhooks → webhook-ingest over HTTP → inbox → dispatcher → work → worker → simulator),
//! written by the functions' own subscriber and parsed back as JSON.
//!
//! This binary installs the global subscriber, so it holds one pipeline run that its tests share.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devstack::esm::new_request_id;
use relay_domain::tokens::TokenStore;
use relay_lambda::telemetry::SCHEMA;
use relay_tests::pipeline::Pipeline;
use relay_tests::{cafe24_fixtures, emf, serve_ingest, IngestEnv as _, KEY};
use serde_json::Value;
use tokio::sync::OnceCell;

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const MALL: &str = "cafe24bestshop";

/// What the run left behind.
struct Run {
    lines: Vec<Value>,
    raw: String,
    /// Trace ids of the accepted webhooks (one per delivery).
    traces: Vec<String>,
    /// Values that must never appear in a log line.
    secrets: Vec<String>,
    accepted: u64,
    rejected: u64,
    unauthorized: u64,
    calls: u64,
    jobs_done: u64,
    needs_reauth: u64,
}

static RUN: OnceCell<Run> = OnceCell::const_new();

async fn run() -> &'static Run {
    RUN.get_or_init(pipeline_run).await
}

async fn pipeline_run() -> Run {
    let sink = Sink::default();
    let w = sink.clone();
    relay_lambda::telemetry::init_with_writer("info", move || w.clone());

    let p = Pipeline::new("logs").await;
    let mall = p.install(MALL).await;
    let url = serve_ingest(Arc::new(p.env.ingest())).await;
    let http = reqwest::Client::new();

    // Cafe24's samples (customer e-mail and phone numbers included), one of them pointed at an
    // order the simulator has, so both a real sync and a 404 tombstone happen.
    let real_order = p.orders(MALL).into_iter().next().unwrap();
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for (name, body) in cafe24_fixtures() {
        if name.contains("90077") || name.starts_with("quirk-missing") {
            continue;
        }
        bodies.push(body.clone());
        if name.contains("90023") {
            let mut v: Value = serde_json::from_slice(&body).unwrap();
            v["resource"]["order_id"] = Value::String(real_order.clone());
            bodies.push(v.to_string().into_bytes());
        }
    }
    let (mut traces, mut accepted, mut rejected, mut unauthorized) = (Vec::new(), 0, 0, 0);
    for (i, body) in bodies.iter().enumerate() {
        let trace = format!("logtrace-{i:02}-{}", rand_suffix());
        let r = http
            .post(format!("{url}/webhooks/cafe24"))
            .header("X-API-Key", KEY)
            .header("X-Trace-ID", &trace)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        traces.push(trace);
        accepted += 1;
    }
    // Two refusals: a wrong key and a broken body.
    let r = http.post(format!("{url}/webhooks/cafe24")).header("X-API-Key", "wrong").body("{}").send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = http.post(format!("{url}/webhooks/cafe24")).header("X-API-Key", KEY).body("{\"event_no\":").send().await;
    assert_eq!(r.unwrap().status(), 400);
    rejected += 1;
    unauthorized += 1;

    let d = p.dispatcher();
    let wk = p.worker();
    p.run_until_drained(&d, &wk, Duration::from_secs(300)).await;

    let rec = p.tokens().get(&mall).await.unwrap().unwrap();
    // The scheduled keep-alive, with the mall needing re-authorization: a gauge of such malls.
    p.tokens().set_status(&mall, relay_domain::tokens::TokenStatus::NeedsReauth, 1).await.unwrap();
    let now = relay_lambda::clock::now_ms();
    let (_, needs_reauth) = {
        use tracing::Instrument as _;
        let span = relay_lambda::telemetry::invocation_span("dispatcher", &new_request_id());
        d.keep_alive(now, || std::time::Duration::from_secs(30)).instrument(span).await.unwrap()
    };
    let secrets = vec![
        rec.pair.access_token.expose().to_owned(),
        rec.pair.refresh_token.expose().to_owned(),
        KEY.to_owned(),
        "relay-secret".to_owned(),
        "gdhong@cafe24corp.com".to_owned(),
        "010-2424-2424".to_owned(),
        "02-0000-0000".to_owned(),
        "382-222254-13-001".to_owned(),
        "Jessica Hong".to_owned(),
        "홍길동".to_owned(),
    ];
    let raw = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    if let Ok(path) = std::env::var("RELAY_TEST_LOG_DUMP") {
        std::fs::write(path, &raw).unwrap();
    }
    let lines =
        raw.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    Run {
        lines,
        raw,
        traces,
        secrets,
        accepted,
        rejected,
        unauthorized,
        calls: p.sim.stats(MALL).calls,
        jobs_done: wk.stats.done.load(std::sync::atomic::Ordering::Relaxed),
        needs_reauth: needs_reauth as u64,
    }
}

fn rand_suffix() -> String {
    new_request_id().chars().take(8).collect()
}

fn is_metrics(l: &Value) -> bool {
    l.get("_aws").is_some()
}

fn of<'a>(r: &'a Run, function: &str) -> Vec<&'a Value> {
    r.lines.iter().filter(|l| l["function"] == function && !is_metrics(l)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_is_json_with_the_whole_schema() {
    let r = run().await;
    assert!(r.lines.len() > 30, "{} lines", r.lines.len());
    for l in &r.lines {
        for k in SCHEMA {
            assert!(l.get(k).is_some(), "{k} missing: {l}");
        }
        assert!(["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&l["level"].as_str().unwrap()), "{l}");
        assert!(l["function"].is_string(), "every line names its function: {l}");
        assert!(l["request_id"].as_str().is_some_and(|s| !s.is_empty()), "every line has a request id: {l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_id_follows_each_webhook_through_all_three_functions() {
    let r = run().await;
    for t in &r.traces {
        let fns: BTreeSet<&str> =
            r.lines.iter().filter(|l| l["trace_id"] == t.as_str()).filter_map(|l| l["function"].as_str()).collect();
        assert_eq!(fns, BTreeSet::from(["dispatcher", "webhook-ingest", "worker"]), "trace {t}");
    }
    // The worker's job lines are complete: what, which mall, how it ended, how long it took.
    let jobs: Vec<&Value> = of(r, "worker").into_iter().filter(|l| l["message"] == "job").collect();
    assert!(!jobs.is_empty());
    for l in &jobs {
        for k in ["mall_id", "trace_id", "dedup_id", "job", "outcome", "latency_ms"] {
            assert!(!l[k].is_null(), "{k} null on a job line: {l}");
        }
    }
    assert!(jobs.iter().any(|l| l["outcome"] == "synced") && jobs.iter().any(|l| l["outcome"] == "tombstoned"));
    // The ingest line of an accepted webhook names the event and its dedup id.
    let first =
        r.lines.iter().find(|l| l["function"] == "webhook-ingest" && l["trace_id"] == r.traces[0].as_str()).unwrap();
    assert!(first["event_no"].is_u64() && first["dedup_id"].is_string() && first["mall_id"] == MALL, "{first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_line_contains_a_token_the_webhook_key_or_customer_data() {
    let r = run().await;
    assert!(r.raw.contains("logtrace-"), "the capture holds the run");
    for s in &r.secrets {
        assert!(!r.raw.contains(s.as_str()), "a secret or personal value reached the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_lines_follow_the_emf_specification_and_add_up() {
    let r = run().await;
    let docs: Vec<&Value> = r.lines.iter().filter(|l| is_metrics(l)).collect();
    for d in &docs {
        if let Err(e) = emf::validate(d) {
            panic!("invalid EMF {e:?}: {d}");
        }
        for set in d["_aws"]["CloudWatchMetrics"][0]["Dimensions"].as_array().unwrap() {
            assert!(!set.as_array().unwrap().iter().any(|n| n == "mall_id"), "mall id as a dimension: {d}");
        }
    }
    let sum = |function: &str, metric: &str| -> u64 {
        docs.iter().filter(|d| d["function"] == function).filter_map(|d| d[metric].as_u64()).sum()
    };
    assert_eq!(sum("webhook-ingest", "WebhooksAccepted"), r.accepted);
    assert_eq!(sum("webhook-ingest", "WebhooksRejected"), r.rejected, "400s and 413s");
    assert_eq!(sum("webhook-ingest", "WebhooksUnauthorized"), r.unauthorized, "403s, counted apart");
    assert_eq!(sum("worker", "Cafe24Calls"), r.calls, "every Cafe24 call counted once");
    assert_eq!(sum("worker", "JobsDone"), r.jobs_done);
    assert_eq!(sum("worker", "Cafe24Status429"), 0);
    assert!(sum("dispatcher", "JobsEnqueued") >= r.jobs_done);
    assert_eq!(r.needs_reauth, 1);
    assert_eq!(sum("dispatcher", "MallsNeedingReauth"), 1, "the keep-alive reports the malls needing re-authorization");
}

/// Log bytes per webhook and per deferral (issue 30, "cost at 10,000 malls"): CloudWatch Logs
/// bills ingestion by the byte, and every line carries the whole schema. The figures go to
/// docs/scale.md's cost table; the bound fails when lines grow unnoticed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_bytes_per_webhook_and_per_deferral_are_measured() {
    let r = run().await;
    let bytes = |l: &Value| l.to_string().len() + 1;
    let total: usize = r.lines.iter().map(bytes).sum();
    let metric: usize = r.lines.iter().filter(|l| is_metrics(l)).map(bytes).sum();
    // A deferral writes one job line (outcome `deferred`, the same fields as any job's line):
    // measured on the run's worker job lines.
    let job_lines: Vec<&Value> = r
        .lines
        .iter()
        .filter(|l| !is_metrics(l) && l["function"] == "worker" && !l["job"].is_null() && !l["outcome"].is_null())
        .collect();
    assert!(!job_lines.is_empty(), "no worker job line to measure");
    let per_deferral = job_lines.iter().map(|l| bytes(l)).sum::<usize>() / job_lines.len();
    let per_webhook = total as f64 / r.accepted as f64;
    println!(
        "log bytes: {total} for {} webhooks = {per_webhook:.0} per webhook ({:.0} of them metric documents); \
         a job line (one per deferral) {per_deferral} bytes; {} lines",
        r.accepted,
        metric as f64 / r.accepted as f64,
        r.lines.len()
    );
    assert!(per_webhook < 4_096.0, "{per_webhook:.0} log bytes per webhook");
    assert!(per_deferral < 1_024, "{per_deferral} bytes per deferral line");
}
