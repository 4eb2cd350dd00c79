//! Flat JSON logs for CloudWatch.
//!
//! One JSON object per line, and **every line carries the same schema** ([`SCHEMA`]):
//!
//! ```text
//! {"timestamp":"2026-11-22T04:33:02.123Z","level":"INFO","message":"job","function":"worker",
//!  "request_id":"…","mall_id":"bigshop","event_no":90023,"trace_id":"…","dedup_id":"…",
//!  "job":"sync_order","outcome":"synced","latency_ms":412, …other fields of the event…}
//! ```
//!
//! A field that does not apply to a line is `null`, never missing, so a Logs Insights query such
//! as `filter trace_id = "…"` or `stats count() by outcome` treats every line alike. Values come
//! from the event itself and from the context spans around it ([`invocation_span`] per Lambda
//! invocation, [`record_span`] per SQS record): a warning deep inside the Cafe24 client still
//! names the mall, the webhook's `trace_id` and the invocation's `request_id`.
//!
//! The level filter comes from `AWS_LAMBDA_LOG_LEVEL` (Lambda's advanced logging controls), else
//! `RUST_LOG`, else `info`. Lambda filters JSON lines on their `level` key (`TRACE`…`ERROR`).
//! The context spans are always enabled whatever the level, so a `WARN`-only configuration still
//! gets the ids. CloudWatch EMF documents ([`crate::metrics`]) pass through this same writer as
//! lines of their own and are never filtered out.
//!
//! Never log a secret or a customer's personal data: tokens are `Secret`s (no `Display`), bodies
//! are never logged, and dependencies that print request contents at debug/trace
//! ([`NOISY_DEPENDENCIES`]) are capped at `info`.

use std::fmt::Debug;
use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{span, Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The keys every line has, in this order (`null` when they do not apply).
pub const SCHEMA: [&str; 12] = [
    "timestamp",
    "level",
    "message",
    "function",
    "request_id",
    "mall_id",
    "event_no",
    "trace_id",
    "dedup_id",
    "job",
    "outcome",
    "latency_ms",
];

/// Target of the context spans (always enabled, never printed on their own).
pub const CONTEXT_TARGET: &str = "relay::ctx";
/// Target of the metric documents (always printed).
pub const METRICS_TARGET: &str = "relay::metrics";
/// An event field holding a JSON object whose members are merged into the line (used by the EMF
/// writer: metric names are dynamic, `tracing` field names are not).
pub const MERGE_FIELD: &str = "emf";

/// Crates that may log request and response contents (headers, bodies — tokens, customer data)
/// at debug/trace level. They are capped at `info` whatever the configured level.
pub const NOISY_DEPENDENCIES: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_sigv4",
    "aws_config",
    "aws_runtime",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "lambda_runtime",
    "lambda_runtime_api_client",
];

/// The filter directives for a configured level (a level name or `RUST_LOG` directives): the
/// level itself, the context spans and metrics always on, and — when the level is more verbose
/// than `info` — [`NOISY_DEPENDENCIES`] capped at `info` (later directives win in `EnvFilter`).
pub fn directives(level: &str) -> String {
    let level = level.trim();
    let level = if level.is_empty() { "info" } else { level };
    let mut d = level.to_owned();
    d.push_str(&format!(",{CONTEXT_TARGET}=trace,{METRICS_TARGET}=info"));
    let quiet = matches!(level.to_ascii_lowercase().as_str(), "off" | "error" | "warn" | "info" | "fatal");
    if !quiet {
        for dep in NOISY_DEPENDENCIES {
            d.push_str(&format!(",{dep}=info"));
        }
    }
    d
}

/// The configured level: `AWS_LAMBDA_LOG_LEVEL` (upper case in Lambda), else `RUST_LOG`, else
/// `info`. `FATAL` (a Lambda level `tracing` lacks) means `error`.
pub fn configured_level(lookup: impl Fn(&str) -> Option<String>) -> String {
    match lookup("AWS_LAMBDA_LOG_LEVEL").map(|l| l.trim().to_ascii_lowercase()) {
        Some(l) if l == "fatal" => "error".to_owned(),
        Some(l) if !l.is_empty() => l,
        _ => lookup("RUST_LOG").filter(|v| !v.trim().is_empty()).unwrap_or_else(|| "info".to_owned()),
    }
}

/// The subscriber the functions use, writing to `writer` (tests and local runs pass a buffer or
/// a file; Lambda uses stdout). An invalid `level` falls back to `info`.
pub fn subscriber<W>(level: &str, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    subscriber_for(None, level, writer)
}

/// [`subscriber`] for a process that runs one function: lines outside any invocation (cold
/// start, the runtime's own messages) still name `function`.
pub fn subscriber_for<W>(function: Option<&'static str>, level: &str, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(directives(level)).unwrap_or_else(|_| EnvFilter::new(directives("info")));
    tracing_subscriber::registry().with(filter).with(FlatJson { writer, function })
}

/// Installs the global subscriber of the function `function`, writing to stdout. Later calls
/// are no-ops.
pub fn init(function: &'static str) {
    let level = configured_level(|k| std::env::var(k).ok());
    let _ = tracing::subscriber::set_global_default(subscriber_for(Some(function), &level, std::io::stdout));
}

/// Installs the global subscriber writing to `writer`. Later calls are no-ops.
pub fn init_with_writer<W>(level: &str, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let _ = tracing::subscriber::set_global_default(subscriber(level, writer));
}

/// The span around one Lambda invocation (`function`, `request_id`; the record ids can be filled
/// in later, as webhook-ingest does for its one webhook). `main` wraps every invocation in it;
/// local drivers do the same with a generated request id.
pub fn invocation_span(function: &'static str, request_id: &str) -> tracing::Span {
    tracing::info_span!(
        target: CONTEXT_TARGET,
        "invocation",
        function,
        request_id = %request_id,
        mall_id = tracing::field::Empty,
        event_no = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        dedup_id = tracing::field::Empty,
    )
}

/// The span around one SQS record. Its ids are filled in once the record is parsed:
/// `tracing::Span::current().record("trace_id", …)`.
pub fn record_span() -> tracing::Span {
    tracing::info_span!(
        target: CONTEXT_TARGET,
        "record",
        mall_id = tracing::field::Empty,
        event_no = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        dedup_id = tracing::field::Empty,
        job = tracing::field::Empty,
        job_id = tracing::field::Empty,
        entity_id = tracing::field::Empty,
        message_id = tracing::field::Empty,
    )
}

/// Fields recorded on a span.
struct SpanFields(Map<String, Value>);

struct Visitor<'a>(&'a mut Map<String, Value>);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, f: &Field, v: &dyn Debug) {
        self.0.insert(f.name().to_owned(), Value::String(format!("{v:?}")));
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        self.0.insert(f.name().to_owned(), Value::String(v.to_owned()));
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.0.insert(f.name().to_owned(), Value::from(v));
    }
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.0.insert(f.name().to_owned(), Value::from(v));
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        self.0.insert(f.name().to_owned(), Value::from(v));
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.0.insert(f.name().to_owned(), Value::Bool(v));
    }
}

/// The layer writing one flat JSON line per event (see the module docs).
pub struct FlatJson<W> {
    writer: W,
    /// `function` for lines outside an invocation span.
    function: Option<&'static str>,
}

impl<W> FlatJson<W> {
    /// A layer writing to `writer`.
    pub fn new(writer: W) -> Self {
        Self { writer, function: None }
    }
}

/// Renders one line from the context spans' fields (outermost first) and the event's fields.
fn render(
    level: &tracing::Level,
    function: Option<&'static str>,
    spans: Vec<Map<String, Value>>,
    mut event: Map<String, Value>,
) -> String {
    let mut line = Map::new();
    line.insert(
        "timestamp".into(),
        Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    line.insert("level".into(), Value::String(level.as_str().to_owned()));
    for key in SCHEMA.iter().skip(2) {
        line.insert((*key).to_owned(), Value::Null);
    }
    if let Some(f) = function {
        line.insert("function".into(), Value::String(f.to_owned()));
    }
    for fields in spans {
        line.extend(fields);
    }
    let merged = match event.remove(MERGE_FIELD) {
        Some(Value::String(s)) => serde_json::from_str::<Map<String, Value>>(&s).ok(),
        _ => None,
    };
    for (k, v) in event {
        if k != "timestamp" && k != "level" {
            line.insert(k, v);
        }
    }
    if let Some(m) = merged {
        line.extend(m);
    }
    let mut s = Value::Object(line).to_string();
    s.push('\n');
    s
}

impl<S, W> Layer<S> for FlatJson<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        // Only our context spans fill the line: a dependency's span (the Lambda runtime's own
        // invocation span at trace level carries `request_id = Some("…")` in Debug form) must not
        // overwrite a schema field with another shape.
        if attrs.metadata().target() != CONTEXT_TARGET {
            return;
        }
        let mut m = Map::new();
        attrs.record(&mut Visitor(&mut m));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(m));
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(SpanFields(m)) = span.extensions_mut().get_mut::<SpanFields>() {
                values.record(&mut Visitor(m));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        event.record(&mut Visitor(&mut fields));
        let spans: Vec<Map<String, Value>> = ctx
            .event_scope(event)
            .map(|scope| {
                scope.from_root().filter_map(|s| s.extensions().get::<SpanFields>().map(|f| f.0.clone())).collect()
            })
            .unwrap_or_default();
        let line = render(event.metadata().level(), self.function, spans, fields);
        // A full pipe or a closed stdout must not take the invocation down.
        let _ = self.writer.make_writer().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing::Instrument;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Buf {
        fn lines(&self) -> Vec<Value> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
        }
    }

    fn capture(level: &str, f: impl FnOnce()) -> Vec<Value> {
        let buf = Buf::default();
        let w = buf.clone();
        tracing::subscriber::with_default(subscriber(level, move || w.clone()), f);
        buf.lines()
    }

    #[test]
    fn every_line_has_the_whole_schema_with_nulls_for_what_does_not_apply() {
        let lines = capture("info", || tracing::info!(mall_id = "m1", "hello"));
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        for k in SCHEMA {
            assert!(l.get(k).is_some(), "{k} missing in {l}");
        }
        assert_eq!(l["message"], "hello");
        assert_eq!(l["level"], "INFO");
        assert_eq!(l["mall_id"], "m1");
        assert_eq!(l["trace_id"], Value::Null);
        assert!(l["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(chrono::DateTime::parse_from_rfc3339(l["timestamp"].as_str().unwrap()).is_ok());
    }

    #[test]
    fn span_fields_reach_lines_inside_them_and_events_override_spans() {
        let lines = capture("info", || {
            let inv = invocation_span("worker", "req-1");
            let _i = inv.enter();
            let rec = record_span();
            let _r = rec.enter();
            tracing::Span::current().record("trace_id", "t-1");
            tracing::Span::current().record("mall_id", "shop");
            tracing::info!(outcome = "synced", latency_ms = 12u64, "job");
            tracing::info!(mall_id = "other", "override");
        });
        assert_eq!(lines[0]["function"], "worker");
        assert_eq!(lines[0]["request_id"], "req-1");
        assert_eq!(lines[0]["trace_id"], "t-1");
        assert_eq!(lines[0]["mall_id"], "shop");
        assert_eq!(lines[0]["latency_ms"], 12);
        assert_eq!(lines[1]["mall_id"], "other");
        assert_eq!(lines.len(), 2, "spans themselves are not printed");
    }

    #[test]
    fn a_dependencys_span_never_fills_a_schema_field_even_at_trace() {
        let lines = capture("trace", || {
            let inv = invocation_span("worker", "req-1");
            let _i = inv.enter();
            let dep = tracing::info_span!(target: "some_runtime", "invoke", request_id = ?Some("req-1"), xray = "x");
            let _d = dep.enter();
            tracing::info!("inside");
        });
        assert_eq!(lines[0]["request_id"], "req-1", "a plain id, never `Some(\"…\")`");
        assert!(lines[0].get("xray").is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn context_spans_survive_a_warn_only_level_and_info_lines_are_dropped() {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = subscriber("WARN", move || w.clone());
        let _g = tracing::subscriber::set_default(sub);
        async {
            tracing::info!("dropped");
            tracing::warn!("kept");
        }
        .instrument(invocation_span("dispatcher", "req-9"))
        .await;
        let lines = buf.lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["message"], "kept");
        assert_eq!(lines[0]["request_id"], "req-9");
        assert_eq!(lines[0]["level"], "WARN");
    }

    #[test]
    fn merge_field_members_land_at_the_top_level() {
        let lines = capture(
            "error",
            || tracing::info!(target: METRICS_TARGET, emf = r#"{"_aws":{"Timestamp":1},"Calls":3}"#, "metrics"),
        );
        assert_eq!(lines.len(), 1, "metrics pass a level filter of error");
        assert_eq!(lines[0]["Calls"], 3);
        assert_eq!(lines[0]["_aws"]["Timestamp"], 1);
        assert!(lines[0].get("emf").is_none());
    }

    #[test]
    fn a_single_function_process_names_itself_outside_invocations() {
        let buf = Buf::default();
        let w = buf.clone();
        tracing::subscriber::with_default(subscriber_for(Some("worker"), "info", move || w.clone()), || {
            tracing::warn!("cold start")
        });
        assert_eq!(buf.lines()[0]["function"], "worker");
        assert_eq!(buf.lines()[0]["request_id"], Value::Null);
    }

    #[test]
    fn timestamp_and_level_cannot_be_overridden_by_a_field() {
        let lines = capture("info", || tracing::info!(level = "nope", timestamp = 3u64, "x"));
        assert_eq!(lines[0]["level"], "INFO");
        assert!(lines[0]["timestamp"].is_string());
    }

    #[test]
    fn dependencies_are_capped_only_when_the_level_is_verbose() {
        assert!(directives("trace").contains("hyper=info"));
        assert!(directives("debug,worker=trace").contains("reqwest=info"));
        assert!(!directives("warn").contains("hyper=info"), "a warn level must not raise dependencies to info");
        assert!(directives("").starts_with("info,"));
    }

    #[test]
    fn configured_level_prefers_lambda_and_maps_fatal() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert_eq!(configured_level(env(&[("AWS_LAMBDA_LOG_LEVEL", "WARN"), ("RUST_LOG", "debug")])), "warn");
        assert_eq!(configured_level(env(&[("AWS_LAMBDA_LOG_LEVEL", "FATAL")])), "error");
        assert_eq!(configured_level(env(&[("RUST_LOG", "debug")])), "debug");
        assert_eq!(configured_level(env(&[("AWS_LAMBDA_LOG_LEVEL", " ")])), "info");
        assert_eq!(configured_level(env(&[])), "info");
    }

    #[test]
    fn a_bad_level_falls_back_to_info() {
        let lines = capture("worker=[[", || {
            tracing::debug!("hidden");
            tracing::info!("shown");
        });
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["message"], "shown");
    }
}
