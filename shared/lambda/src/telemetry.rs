//! Flat JSON logs for CloudWatch.
//!
//! One JSON object per line: `{"timestamp":"2026-…Z","level":"INFO","message":"…",
//! "function":"webhook-ingest","mall_id":"…",…}`. Fields are flattened to the top level so
//! Logs Insights can filter `mall_id = "x"` directly. The level filter comes from
//! `AWS_LAMBDA_LOG_LEVEL` (set by Lambda's advanced logging controls), else `RUST_LOG`, else
//! `info`.

use tracing_subscriber::EnvFilter;

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

/// The filter directives for a configured level: the level itself, then [`NOISY_DEPENDENCIES`]
/// capped at `info` (later directives win in `EnvFilter`).
pub fn directives(level: &str) -> String {
    let mut d = level.to_owned();
    for dep in NOISY_DEPENDENCIES {
        d.push_str(&format!(",{dep}=info"));
    }
    d
}

/// Installs the global JSON subscriber. Safe to call more than once (later calls are no-ops).
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .map(|l| l.to_ascii_lowercase())
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let filter = directives(&level);
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info")))
        .try_init();
}
