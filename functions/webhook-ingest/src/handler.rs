//! The request handler. [`Ingest::ingest`] is the decision logic over plain values (headers,
//! body, clock); [`Ingest::handle`] adapts a `lambda_http` request to it, answers, and writes
//! the one log line per request.

use std::time::Instant;

use relay_lambda::clock::now_ms;

use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use relay_domain::auth::ApiKeyVerifier;
use relay_domain::envelope::InboxEnvelope;
use relay_domain::ports::{GroupId, MessageQueue, OutboundMessage};
use relay_domain::webhook::{classify_body, Classified, EventNo, ParkReason};
use relay_domain::{webhook_ids, DedupId, MallId, TraceId};
use relay_lambda::http as resp;
use relay_lambda::metrics::{self, Unit};
use relay_lambda::telemetry::invocation_span;
use serde::Serialize;
use tracing::Instrument;

use crate::config::IngestConfig;
use crate::install::{InstallError, InstallFlow, NoInstall};

/// The webhook path.
pub const WEBHOOK_PATH: &str = "/webhooks/cafe24";

/// What happened to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Routable webhook accepted by the inbox queue.
    Enqueued,
    /// Authentic but unroutable webhook accepted by the parking queue.
    Parked(ParkReason),
    /// `X-API-Key` wrong or missing.
    Unauthorized,
    /// Body over the cap.
    TooLarge,
    /// Body not JSON or truncated.
    InvalidJson,
    /// The queue did not accept the message (class from [`relay_domain::ports::QueueError`]).
    QueueFailed(&'static str),
}

impl Outcome {
    /// Stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enqueued => "enqueued",
            Self::Parked(_) => "parked",
            Self::Unauthorized => "unauthorized",
            Self::TooLarge => "too_large",
            Self::InvalidJson => "invalid_json",
            Self::QueueFailed(_) => "queue_failed",
        }
    }
}

/// The result of [`Ingest::ingest`]: the outcome and whatever ids were established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestResult {
    /// What happened.
    pub outcome: Outcome,
    /// Trace id (set once the body was authenticated and parsed).
    pub trace_id: Option<TraceId>,
    /// Dedup id sent to SQS.
    pub dedup_id: Option<DedupId>,
    /// Mall, when readable.
    pub mall_id: Option<MallId>,
    /// Event number, when readable.
    pub event_no: Option<EventNo>,
}

impl IngestResult {
    fn bare(outcome: Outcome) -> Self {
        Self { outcome, trace_id: None, dedup_id: None, mall_id: None, event_no: None }
    }
}

#[derive(Serialize)]
struct Accepted<'a> {
    status: &'a str,
    trace_id: Option<&'a str>,
}

/// webhook-ingest's service: the verifier, the two queues and the install flow, built once per
/// cold start.
pub struct Ingest<Q, I = NoInstall> {
    verifier: ApiKeyVerifier,
    max_body_bytes: usize,
    routes: crate::config::Routes,
    inbox: Q,
    parking: Q,
    install: I,
    unauthorized: UnauthorizedMeter,
}

/// Counts 403s (wrong or missing key) without a metric document each: a flood of unauthenticated requests costs one
/// counter increment per request and at most one document per [`UnauthorizedMeter::EVERY_MS`]
/// per instance; other requests' documents carry the count accumulated since.
#[derive(Debug, Default)]
pub struct UnauthorizedMeter {
    pending: std::sync::atomic::AtomicU64,
    last_doc_ms: std::sync::atomic::AtomicU64,
}

impl UnauthorizedMeter {
    /// Longest a 403 count waits for a document of its own.
    pub const EVERY_MS: u64 = 60_000;

    /// Records one 403 at `now_ms`; `Some(n)` when a document carrying `n` 403s is due.
    pub fn record(&self, now_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        self.pending.fetch_add(1, Relaxed);
        let last = self.last_doc_ms.load(Relaxed);
        if now_ms.saturating_sub(last) < Self::EVERY_MS {
            return None;
        }
        // One caller wins the slot; the others keep counting.
        self.last_doc_ms.compare_exchange(last, now_ms, Relaxed, Relaxed).ok().map(|_| self.take())
    }

    /// The 403s not yet in a document (for the next document of any request).
    pub fn take(&self) -> u64 {
        self.pending.swap(0, std::sync::atomic::Ordering::Relaxed)
    }
}

impl Ingest<relay_aws::sqs::SqsQueue, NoInstall> {
    /// The production wiring of the webhook path: the inbox and parking queues named by `cfg`
    /// (add the install flow with [`Ingest::with_install`] and `install::AwsInstaller::on_aws`).
    pub fn on_aws(sqs: &aws_sdk_sqs::Client, cfg: &IngestConfig) -> Self {
        use relay_aws::sqs::SqsQueue;
        Self::new(
            cfg,
            SqsQueue::new(sqs.clone(), cfg.inbox_queue_url.clone()),
            SqsQueue::new(sqs.clone(), cfg.parking_queue_url.clone()),
        )
    }
}

impl<Q: MessageQueue> Ingest<Q, NoInstall> {
    /// Wires the service from its configuration and queue adapters (no install flow).
    pub fn new(cfg: &IngestConfig, inbox: Q, parking: Q) -> Self {
        Self {
            verifier: cfg.verifier.clone(),
            max_body_bytes: cfg.max_body_bytes,
            routes: cfg.routes,
            inbox,
            parking,
            install: NoInstall,
            unauthorized: UnauthorizedMeter::default(),
        }
    }

    /// Adds the OAuth install flow (`/install`, `/oauth/callback`).
    pub fn with_install<I: InstallFlow>(self, install: I) -> Ingest<Q, I> {
        Ingest {
            verifier: self.verifier,
            max_body_bytes: self.max_body_bytes,
            routes: self.routes,
            inbox: self.inbox,
            parking: self.parking,
            install,
            unauthorized: self.unauthorized,
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn html(status: StatusCode, title: &str, message: &str) -> Response<Body> {
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1><p>{m}</p></body></html>",
        t = html_escape(title),
        m = html_escape(message)
    );
    let mut r = Response::new(Body::Text(page));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

impl<Q: MessageQueue, I: InstallFlow> Ingest<Q, I> {
    async fn handle_install(&self, path: &str, req: &Request) -> Response<Body> {
        let started = Instant::now();
        let q = req.query_string_parameters();
        // The Function URL's own domain (the redirect URI when none is configured): the Host
        // header, or the event's `requestContext.domainName` that lambda_http puts in the URI.
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        let (resp, mall, outcome) = if path == "/install" {
            match self.install.start(req.uri().query(), host) {
                Ok((url, mall)) => {
                    let mut r = resp::empty(StatusCode::FOUND);
                    match HeaderValue::from_str(&url) {
                        Ok(v) => {
                            r.headers_mut().insert(header::LOCATION, v);
                            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                            (r, Some(mall.as_str().to_owned()), "redirected")
                        }
                        Err(_) => {
                            (html(StatusCode::BAD_REQUEST, "Installation failed", "bad redirect"), None, "bad_redirect")
                        }
                    }
                }
                Err(InstallError::NotConfigured) => {
                    (resp::error(StatusCode::NOT_FOUND, "not_found", "no such route"), None, "not_configured")
                }
                Err(e) => (html(StatusCode::BAD_REQUEST, "Installation failed", &e.to_string()), None, e.class()),
            }
        } else {
            match self.install.finish(q.first("code"), q.first("state"), host).await {
                Ok(mall) => (
                    html(
                        StatusCode::OK,
                        "Installed",
                        &format!("cafe24-relay is now connected to the mall {mall}. You can close this page."),
                    ),
                    Some(mall.as_str().to_owned()),
                    "installed",
                ),
                Err(InstallError::NotConfigured) => {
                    (resp::error(StatusCode::NOT_FOUND, "not_found", "no such route"), None, "not_configured")
                }
                Err(e @ InstallError::Unavailable) => {
                    (html(StatusCode::SERVICE_UNAVAILABLE, "Installation failed", &e.to_string()), None, e.class())
                }
                Err(e) => (html(StatusCode::BAD_REQUEST, "Installation failed", &e.to_string()), None, e.class()),
            }
        };
        // Never the code or the state: they are credentials for a minute.
        tracing::info!(
            route = path,
            mall_id = mall.as_deref(),
            outcome,
            status = resp.status().as_u16(),
            latency_ms = started.elapsed().as_millis() as u64,
            "install"
        );
        resp
    }

    /// Decides what to do with one delivery, without I/O: authentication first (an
    /// unauthenticated caller learns nothing, not even the size cap), then size, then JSON,
    /// then the ids and the envelope. Returns the result so far and, when something must be
    /// queued, the message.
    pub fn prepare(
        &self,
        api_key: Option<&[u8]>,
        trace_header: Option<&str>,
        body: &[u8],
        now_ms: u64,
    ) -> (IngestResult, Option<OutboundMessage>) {
        if !self.verifier.verify(api_key) {
            return (IngestResult::bare(Outcome::Unauthorized), None);
        }
        if body.len() > self.max_body_bytes {
            return (IngestResult::bare(Outcome::TooLarge), None);
        }
        let Ok(classified) = classify_body(body) else {
            return (IngestResult::bare(Outcome::InvalidJson), None);
        };

        let (dedup_id, trace_id) = webhook_ids(trace_header, body);
        let (group, outcome, mall_id, event_no) = match &classified {
            Classified::Routable { event_no, mall_id } => {
                (GroupId::mall(mall_id), Outcome::Enqueued, Some(mall_id.clone()), Some(*event_no))
            }
            Classified::Parked { reason, event_no, mall_id } => {
                (GroupId::parked(), Outcome::Parked(*reason), mall_id.clone(), *event_no)
            }
        };
        let mut result = IngestResult {
            outcome,
            trace_id: Some(trace_id.clone()),
            dedup_id: Some(dedup_id.clone()),
            mall_id,
            event_no,
        };
        let envelope =
            InboxEnvelope::new(trace_id, dedup_id.clone(), now_ms, &classified, body).and_then(|e| e.to_message_body());
        match envelope {
            Ok(body) => (result, Some(OutboundMessage { group_id: group, dedup_id, body })),
            // Only reachable if the cap was configured above what fits; refuse, never truncate.
            Err(_) => {
                result.outcome = Outcome::TooLarge;
                (result, None)
            }
        }
    }

    /// Ingests one delivery: [`Self::prepare`], then the send. `Enqueued`/`Parked` only once
    /// the queue accepted the envelope.
    pub async fn ingest(
        &self,
        api_key: Option<&[u8]>,
        trace_header: Option<&str>,
        body: &[u8],
        now_ms: u64,
    ) -> IngestResult {
        let (mut result, msg) = self.prepare(api_key, trace_header, body, now_ms);
        let span = tracing::Span::current();
        if let Some(t) = &result.trace_id {
            span.record("trace_id", t.as_str());
        }
        if let Some(d) = &result.dedup_id {
            span.record("dedup_id", d.as_str());
        }
        if let Some(m) = &result.mall_id {
            span.record("mall_id", m.as_str());
        }
        if let Some(e) = result.event_no {
            span.record("event_no", e.0);
        }
        let Some(msg) = msg else { return result };
        let queue = match result.outcome {
            Outcome::Enqueued => &self.inbox,
            _ => &self.parking,
        };
        if let Err(e) = queue.send(&msg).await {
            // The error chain may name the queue URL but never the payload or the key.
            tracing::warn!(error_class = e.class(), error = %ErrorChain(&e), "queue send failed");
            result.outcome = Outcome::QueueFailed(e.class());
        }
        result
    }

    /// Handles one HTTP request from a Function URL or HTTP API (v2) event, inside the
    /// invocation's log span (`function`, `request_id` from the Lambda context).
    pub async fn handle(&self, req: Request) -> Response<Body> {
        // Lambda's invocation id; a local bridge without a runtime has only the HTTP request id.
        let request_id = req
            .lambda_context_ref()
            .map(|c| c.request_id.clone())
            .or_else(|| match req.request_context_ref() {
                Some(lambda_http::request::RequestContext::ApiGatewayV2(c)) => c.request_id.clone(),
                _ => None,
            })
            .unwrap_or_default();
        // The install flow's code exchange must fit before the deadline (`relay_cafe24::deadline`).
        let deadline =
            req.lambda_context_ref().and_then(|c| c.deadline().duration_since(std::time::SystemTime::now()).ok());
        let fut = self.route(req).instrument(invocation_span("webhook-ingest", &request_id));
        match deadline {
            Some(left) => relay_cafe24::deadline::within(Instant::now() + left, fut).await,
            None => fut.await,
        }
    }

    async fn route(&self, req: Request) -> Response<Body> {
        let started = Instant::now();
        let path = route_path(&req);
        let path = path.trim_end_matches('/');

        // A deployment serves its own routes only (`INGEST_ROUTES`): the others are not here.
        if (path == "/install" || path == "/oauth/callback") && req.method() == Method::GET && self.routes.app() {
            return self.handle_install(path, &req).await;
        }
        if path != WEBHOOK_PATH || !self.routes.webhooks() {
            return resp::error(StatusCode::NOT_FOUND, "not_found", "no such route");
        }
        if req.method() != Method::POST {
            let mut r = resp::error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use POST");
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
            return r;
        }

        let api_key = req.headers().get("x-api-key").map(HeaderValue::as_bytes);
        let trace = req.headers().get("x-trace-id").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body: &[u8] = req.body().as_ref();
        let r = self.ingest(api_key, trace.as_deref(), body, now_ms()).await;

        let response = match r.outcome {
            Outcome::Enqueued | Outcome::Parked(_) => resp::json(
                StatusCode::OK,
                &Accepted { status: r.outcome.as_str(), trace_id: r.trace_id.as_ref().map(TraceId::as_str) },
            ),
            // Cafe24 asks receivers to answer a failed key check with 403 (developer notice, 2023-08-02).
            Outcome::Unauthorized => resp::empty(StatusCode::FORBIDDEN),
            Outcome::TooLarge => resp::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &format!("body exceeds {} bytes", self.max_body_bytes),
            ),
            Outcome::InvalidJson => {
                resp::error(StatusCode::BAD_REQUEST, "invalid_json", "body is not valid JSON (or is truncated)")
            }
            Outcome::QueueFailed(_) => {
                let mut r = resp::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "could not store the webhook; retry later",
                );
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                r
            }
        };

        let latency_ms = started.elapsed().as_millis() as u64;
        let park_reason = match r.outcome {
            Outcome::Parked(p) => Some(p.as_str()),
            _ => None,
        };
        let error_class = match r.outcome {
            Outcome::QueueFailed(c) => Some(c),
            _ => None,
        };
        if r.outcome == Outcome::Unauthorized {
            // A caller without the key gets no document and no INFO line of its own (a flood
            // must not cost what real traffic costs); the count reaches CloudWatch anyway.
            if let Some(n) = self.unauthorized.record(now_ms()) {
                metrics::emit("webhook-ingest", &[("WebhooksUnauthorized", Unit::Count, n)]);
            }
            tracing::debug!(outcome = r.outcome.as_str(), status = 403, latency_ms, "webhook");
            return response;
        }
        let accepted = matches!(r.outcome, Outcome::Enqueued | Outcome::Parked(_));
        let failed = matches!(r.outcome, Outcome::QueueFailed(_));
        metrics::emit(
            "webhook-ingest",
            &[
                ("WebhooksAccepted", Unit::Count, accepted as u64),
                ("WebhooksParked", Unit::Count, matches!(r.outcome, Outcome::Parked(_)) as u64),
                ("WebhooksRejected", Unit::Count, (!accepted && !failed) as u64),
                ("WebhooksQueueFailed", Unit::Count, failed as u64),
                ("WebhooksUnauthorized", Unit::Count, self.unauthorized.take()),
                ("IngestLatencyMs", Unit::Milliseconds, latency_ms),
            ],
        );
        tracing::info!(
            mall_id = r.mall_id.as_ref().map(MallId::as_str),
            event_no = r.event_no.map(|e| e.0),
            trace_id = r.trace_id.as_ref().map(TraceId::as_str),
            dedup_id = r.dedup_id.as_ref().map(DedupId::as_str),
            outcome = r.outcome.as_str(),
            park_reason,
            error_class,
            status = response.status().as_u16(),
            body_bytes = body.len(),
            latency_ms,
            "webhook"
        );
        response
    }
}

/// The request path without an HTTP API stage prefix. Function URLs and the `$default` stage
/// have none; a named stage (`/prod/webhooks/cafe24`) is stripped.
fn route_path(req: &Request) -> String {
    let raw = req.raw_http_path();
    let path = if raw.is_empty() { req.uri().path() } else { raw };
    let stage = match req.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx.stage.clone(),
        _ => None,
    };
    match stage.filter(|s| s != "$default") {
        Some(stage) => {
            let prefix = format!("/{stage}");
            match path.strip_prefix(&prefix) {
                Some(rest) if rest.starts_with('/') => rest.to_owned(),
                _ => path.to_owned(),
            }
        }
        None => path.to_owned(),
    }
}

/// Displays an error with its sources, `a: b: c`.
struct ErrorChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut src = self.0.source();
        while let Some(s) = src {
            write!(f, ": {s}")?;
            src = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Unit tests of the decision logic with the in-memory queue; the wire-level tests
    //! (moto, both event shapes, cargo lambda) are in the workspace's `tests/` crate.
    use super::*;
    use relay_domain::ports::memory::MemoryQueue;

    fn service(max: usize) -> (Ingest<MemoryQueue>, MemoryQueue, MemoryQueue) {
        let cfg = IngestConfig::from_lookup(|k| {
            match k {
                "WEBHOOK_API_KEY" => Some("cur"),
                "WEBHOOK_API_KEY_PREVIOUS" => Some("prev"),
                "INBOX_QUEUE_URL" => Some("http://x/inbox.fifo"),
                "PARKING_QUEUE_URL" => Some("http://x/parking.fifo"),
                _ => None,
            }
            .map(str::to_owned)
        })
        .unwrap();
        let (inbox, parking) = (MemoryQueue::default(), MemoryQueue::default());
        let mut s = Ingest::new(&cfg, inbox.clone(), parking.clone());
        s.max_body_bytes = max;
        (s, inbox, parking)
    }

    const ORDER: &[u8] = br#"{"event_no":90023,"resource":{"mall_id":"shop1","order_id":"20200717-0029236"}}"#;

    fn request(method: Method, path: &str, body: &[u8]) -> Request {
        let mut r = lambda_http::http::Request::builder()
            .method(method)
            .uri(format!("https://x.lambda-url.ap-northeast-2.on.aws{path}"))
            .header("x-api-key", "cur")
            .body(Body::Binary(body.to_vec()))
            .unwrap();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    }

    /// Each deployment serves its own routes (issue 30, item 11): the webhook receiver's URL
    /// has no install flow, the browser-facing one takes no webhook.
    #[tokio::test]
    async fn a_deployment_serves_only_its_own_routes() {
        use crate::config::Routes;
        /// An install flow that always starts (redirects to Cafe24's consent).
        struct Starts;
        impl InstallFlow for Starts {
            fn start(&self, _: Option<&str>, _: Option<&str>) -> Result<(String, MallId), InstallError> {
                Ok(("https://shop1.cafe24api.com/api/v2/oauth/authorize".into(), MallId::parse("shop1").unwrap()))
            }
            async fn finish(&self, _: Option<&str>, _: Option<&str>, _: Option<&str>) -> Result<MallId, InstallError> {
                Err(InstallError::NotConfigured)
            }
        }
        for (routes, webhook, install) in [
            (Routes::All, StatusCode::OK, StatusCode::FOUND),
            (Routes::Webhooks, StatusCode::OK, StatusCode::NOT_FOUND),
            (Routes::App, StatusCode::NOT_FOUND, StatusCode::FOUND),
        ] {
            let (mut s, inbox, _) = service(100_000);
            s.routes = routes;
            let s = s.with_install(Starts);
            let r = s.route(request(Method::POST, WEBHOOK_PATH, ORDER)).await;
            assert_eq!(r.status(), webhook, "{routes:?}: webhook");
            assert_eq!(inbox.messages().len(), usize::from(webhook == StatusCode::OK), "{routes:?}");
            let r = s.route(request(Method::GET, "/install", b"")).await;
            assert_eq!(r.status(), install, "{routes:?}: install");
        }
    }

    #[tokio::test]
    async fn authentic_routable_webhook_goes_to_inbox_grouped_by_mall() {
        let (s, inbox, parking) = service(1000);
        let r = s.ingest(Some(b"cur"), Some("abc-1"), ORDER, 5).await;
        assert_eq!(r.outcome, Outcome::Enqueued);
        let m = inbox.messages();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].group_id.as_str(), "shop1");
        assert_eq!(m[0].dedup_id.as_str(), "t-abc-1");
        assert!(parking.messages().is_empty());
    }

    #[tokio::test]
    async fn rejections_enqueue_nothing() {
        let (s, inbox, parking) = service(100);
        assert_eq!(s.ingest(None, None, ORDER, 0).await.outcome, Outcome::Unauthorized);
        assert_eq!(s.ingest(Some(b"nope"), None, ORDER, 0).await.outcome, Outcome::Unauthorized);
        assert_eq!(s.ingest(Some(b"cur"), None, &[b' '; 101], 0).await.outcome, Outcome::TooLarge);
        assert_eq!(s.ingest(Some(b"cur"), None, b"{\"event_no\":", 0).await.outcome, Outcome::InvalidJson);
        assert!(inbox.messages().is_empty() && parking.messages().is_empty());
    }

    #[tokio::test]
    async fn unauthenticated_oversized_body_is_403_not_413() {
        let (s, _, _) = service(10);
        assert_eq!(s.ingest(Some(b"bad"), None, &[b'x'; 50], 0).await.outcome, Outcome::Unauthorized);
    }

    #[tokio::test]
    async fn unroutable_json_is_parked() {
        let (s, inbox, parking) = service(1000);
        let r = s.ingest(Some(b"prev"), None, br#"{"resource":{"mall_id":"shop1"}}"#, 0).await;
        assert_eq!(r.outcome, Outcome::Parked(ParkReason::MissingEventNo));
        assert!(inbox.messages().is_empty());
        assert_eq!(parking.messages().len(), 1);
        assert_eq!(parking.messages()[0].group_id, GroupId::parked());
    }

    #[tokio::test]
    async fn queue_failure_is_reported_not_swallowed() {
        let (s, inbox, _) = service(1000);
        inbox.set_failing(true);
        let r = s.ingest(Some(b"cur"), None, ORDER, 0).await;
        assert_eq!(r.outcome, Outcome::QueueFailed("unavailable"));
    }

    #[test]
    fn a_flood_of_403s_makes_at_most_one_metric_document_a_minute_and_loses_no_count() {
        let m = UnauthorizedMeter::default();
        let t0 = 1_000_000_000;
        let docs: Vec<u64> = (0..10_000).filter_map(|i| m.record(t0 + i)).collect();
        assert_eq!(docs, vec![1], "the first 403 opens the minute, the rest wait");
        assert_eq!(m.take(), 9_999, "carried by the next document");
        assert_eq!(m.record(t0 + 30_000), None);
        assert_eq!(m.record(t0 + UnauthorizedMeter::EVERY_MS), Some(2));
    }
}
