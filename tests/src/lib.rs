//! # relay-tests — black-box tests of cafe24-relay over the real wire protocols
//!
//! The test binaries in `tests/tests/` (`it/` and `logs.rs`). [`testkit`] (re-exported here)
//! holds the support that needs no function crate; this crate adds what does: the ingest service
//! on a test env ([`IngestEnv`]), Lambda's HTTP events turned into the handler's requests, ingest
//! served over HTTP, and the end-to-end [`pipeline`] fixture. Nothing here is shipped.

// Test support: failing loudly on a broken fixture or environment is the point.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod pipeline;

pub use testkit::*;

use relay_aws::sqs::SqsQueue;
use serde_json::Value;
use webhook_ingest::{Ingest, IngestConfig};

/// webhook-ingest wired to a [`TestEnv`]'s queues.
pub trait IngestEnv {
    /// The ingest configuration for this env (current + previous key).
    fn ingest_config(&self) -> IngestConfig;
    /// The ingest service wired to this env's queues through the real SQS adapter.
    fn ingest(&self) -> Ingest<SqsQueue>;
}

impl IngestEnv for TestEnv {
    fn ingest_config(&self) -> IngestConfig {
        let env = self.stack.env();
        IngestConfig::from_lookup(|k| match k {
            "WEBHOOK_API_KEY" => Some(KEY.to_owned()),
            "WEBHOOK_API_KEY_PREVIOUS" => Some(PREVIOUS_KEY.to_owned()),
            _ => env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()),
        })
        .unwrap_or_else(|e| panic!("config: {e}"))
    }

    fn ingest(&self) -> Ingest<SqsQueue> {
        Ingest::on_aws(&self.sqs, &self.ingest_config())
    }
}

/// Turns an event JSON into the `lambda_http::Request` the runtime would hand the handler.
pub fn to_request(event: &Value) -> lambda_http::Request {
    // The binary's own conversion (sanitized query string), not lambda_http's bare one.
    webhook_ingest::event::request_from_json(event.clone(), None)
        .unwrap_or_else(|e| panic!("event does not parse: {e}"))
}

/// Status and parsed JSON body (or `Null`) of a response.
pub fn response_parts(r: &lambda_http::Response<lambda_http::Body>) -> (u16, Value) {
    let bytes: &[u8] = r.body().as_ref();
    (r.status().as_u16(), serde_json::from_slice(bytes).unwrap_or(Value::Null))
}

/// Serves a webhook-ingest handler over real HTTP on loopback (each request is turned into the
/// Function URL event Lambda would deliver). Returns the base URL.
pub async fn serve_ingest<Q, I>(ingest: std::sync::Arc<webhook_ingest::Ingest<Q, I>>) -> String
where
    Q: relay_domain::ports::MessageQueue + 'static,
    I: webhook_ingest::install::InstallFlow + 'static,
{
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, Uri};
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let ingest = ingest.clone();
        async move {
            let hs: Vec<(String, String)> = headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
            let refs: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let path = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
            let event = http_event(Shape::FunctionUrl, method.as_str(), &path, &refs, &body, true);
            let resp = ingest.handle(to_request(&event)).await;
            let status = axum::http::StatusCode::from_u16(resp.status().as_u16())
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
            (status, resp.body().as_ref().to_vec())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}
