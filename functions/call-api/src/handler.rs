//! The call API's routes (see the crate doc).

use std::time::{Duration, Instant};

use lambda_http::http::{HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use relay_cafe24::command::{run, Run};
use relay_cafe24::{Cafe24, Cafe24Error};
use relay_domain::command::{Command, Method as CommandMethod, Outcome, COMMAND_VERSION};
use relay_domain::ports::{CommandRecord, CommandStore, Noted, RateGate, SnapshotStore, StoreError};
use relay_domain::ratelimit::Class;
use relay_domain::tokens::TokenStore;
use relay_domain::{MallId, ShopNo, SnapshotKind};
use relay_lambda::http as resp;
use relay_lambda::telemetry::invocation_span;
use serde_json::{json, Map, Value};
use tracing::Instrument;

use crate::config::CallApiConfig;

/// The call API over its ports: the Cafe24 client (limiter and tokens inside) and the state
/// table (command records, snapshots).
pub struct CallApi<G, S, C> {
    cafe24: Cafe24<G, S>,
    state: C,
    cfg: CallApiConfig,
}

/// A GET without an `Idempotency-Key` is a plain read: nothing is recorded for it.
struct Unrecorded;

impl CommandStore for Unrecorded {
    async fn command_record(&self, _: &MallId, _: &str) -> Result<Option<CommandRecord>, StoreError> {
        Ok(None)
    }
    async fn note_sending(&self, _: &MallId, _: &str, _: &str, _: bool, _: u64, _: u64) -> Result<Noted, StoreError> {
        Ok(Noted::Yes)
    }
    async fn clear_sending(&self, _: &MallId, _: &str, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
    async fn record_outcome(&self, _: &MallId, _: &str, outcome: &Value, _: u64, _: u64) -> Result<Value, StoreError> {
        Ok(outcome.clone())
    }
}

fn with_header(mut r: Response<Body>, name: &'static str, value: &str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
    r
}

/// 503 with `Retry-After` (whole seconds, at least 1).
fn retry_after(wait_ms: u64, code: &str, message: &str) -> Response<Body> {
    let r = resp::error(StatusCode::SERVICE_UNAVAILABLE, code, message);
    with_header(r, "retry-after", &wait_ms.div_ceil(1000).max(1).to_string())
}

/// How long a "not now" asks to wait, ms.
fn wait_of(e: &Cafe24Error) -> u64 {
    match e {
        Cafe24Error::Throttled { wait_ms } | Cafe24Error::RefreshInProgress { wait_ms } => *wait_ms,
        Cafe24Error::RateLimited { feedback } => {
            feedback.call_remain_s.into_iter().chain(feedback.time_remain_s).max().unwrap_or(1) * 1000
        }
        Cafe24Error::Config(_) => 60_000,
        _ => 1_000,
    }
}

/// The HTTP answer of a recorded outcome.
fn reply(outcome: &Outcome, replayed: bool) -> Response<Body> {
    let r = match outcome {
        Outcome::Succeeded { status, body } => {
            resp::json(StatusCode::from_u16(*status).unwrap_or(StatusCode::OK), body)
        }
        // Cafe24's answer was lost; its settling read proved the POST took effect.
        Outcome::Settled { body } => with_header(resp::json(StatusCode::OK, body), "x-relay-settled", "true"),
        Outcome::Failed { reason, status: Some(status), body } if reason == "cafe24_error" => {
            resp::json(StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST), body)
        }
        Outcome::Failed { reason, body, .. } => {
            let status = match reason.as_str() {
                "not_installed" => StatusCode::NOT_FOUND,
                "needs_reauth" | "uninstalled" | "unauthorized" | "insufficient_scope" | "forbidden" => {
                    StatusCode::FORBIDDEN
                }
                _ => StatusCode::BAD_REQUEST,
            };
            let message = body.get("message").and_then(Value::as_str).unwrap_or(reason.as_str()).to_owned();
            resp::error(status, reason, &message)
        }
        Outcome::Uncertain { reason } => resp::error(
            StatusCode::BAD_GATEWAY,
            "uncertain",
            &format!("the request may have taken effect at Cafe24 without an answer ({reason}); it is not sent again"),
        ),
    };
    let r = with_header(r, "x-relay-outcome", outcome.name());
    if replayed {
        with_header(r, "x-relay-replayed", "true")
    } else {
        r
    }
}

/// The snapshot a GET path reads (`orders/{id}` → an order, `products/{no}` → a product).
fn snapshot_of(path: &str) -> Option<(SnapshotKind, &str, &'static str)> {
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["orders", id] if relay_domain::ids::is_resource_id(id) => Some((SnapshotKind::Order, id, "order")),
        ["products", no] if no.parse::<u64>().is_ok() => Some((SnapshotKind::Product, no, "product")),
        _ => None,
    }
}

/// The call API on AWS: the limiter and tokens in DynamoDB, records and snapshots in the state table.
pub type AwsCallApi =
    CallApi<relay_aws::limiter::DynamoLimiter, relay_aws::tokens::DynamoTokenStore, relay_aws::state::DynamoState>;

impl AwsCallApi {
    /// Wires the call API to DynamoDB with `aws`'s clients (the binary, `make demo`, `make bench`).
    pub fn on_aws(
        aws: &relay_aws::Clients,
        cfg: CallApiConfig,
        cafe24: relay_cafe24::Cafe24Config,
        clock: relay_cafe24::Clock,
    ) -> Result<Self, Cafe24Error> {
        let (limiter, tokens) =
            aws.cafe24_ports(&cfg.rate_limit_table, &cfg.token_table, cfg.limiter.clone(), clock.clone());
        let state = relay_aws::state::DynamoState::new(aws.ddb.clone(), cfg.state_table.clone());
        Ok(Self::new(Cafe24::new(cafe24, limiter, tokens, clock)?, state, cfg))
    }
}

impl<G: RateGate, S: TokenStore, C: CommandStore + SnapshotStore> CallApi<G, S, C> {
    /// Wires the call API.
    pub fn new(cafe24: Cafe24<G, S>, state: C, cfg: CallApiConfig) -> Self {
        Self { cafe24, state, cfg }
    }

    fn now(&self) -> u64 {
        (self.cafe24.clock())()
    }

    /// One HTTP request. On Lambda, every Cafe24 call it makes is bounded by the invocation's
    /// time left (`relay_cafe24::deadline`), so a slow Cafe24 cannot outlive the function and
    /// leave a POST sent with its answer lost to a timeout kill.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let request_id = req.lambda_context_ref().map(|c| c.request_id.clone()).unwrap_or_default();
        let deadline =
            req.lambda_context_ref().and_then(|c| c.deadline().duration_since(std::time::SystemTime::now()).ok());
        let fut = self.route(req).instrument(invocation_span("call-api", &request_id));
        match deadline {
            Some(left) => relay_cafe24::deadline::within(Instant::now() + left, fut).await,
            None => fut.await,
        }
    }

    async fn route(&self, req: Request) -> Response<Body> {
        let raw = req.raw_http_path();
        let path = if raw.is_empty() { req.uri().path().to_owned() } else { raw.to_owned() };
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let answer = match (req.method(), parts.as_slice()) {
            (&Method::POST, ["v1", "call"]) => self.call(&req).await,
            (&Method::GET, ["v1", "snapshots", mall, kind, id]) => self.snapshot(&req, mall, kind, id).await,
            _ => resp::error(StatusCode::NOT_FOUND, "not_found", "no such route"),
        };
        tracing::info!(status = answer.status().as_u16(), "call");
        answer
    }

    async fn call(&self, req: &Request) -> Response<Body> {
        let bad = |code: &str, message: &str| resp::error(StatusCode::BAD_REQUEST, code, message);
        let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(req.body().as_ref()) else {
            return bad("not_json", "the body must be a JSON object");
        };
        let wait_ms = match fields.remove("wait_ms") {
            None => self.cfg.default_wait_ms,
            Some(v) => match v.as_u64().filter(|w| *w <= self.cfg.max_wait_ms) {
                Some(w) => w,
                None => {
                    return bad("bad_wait", &format!("wait_ms must be an integer of at most {}", self.cfg.max_wait_ms))
                }
            },
        };
        let max_age_s = match fields.remove("max_age_s") {
            None => None,
            Some(v) => match v.as_u64() {
                Some(s) => Some(s),
                None => return bad("bad_max_age", "max_age_s must be a whole number of seconds"),
            },
        };
        let key = req.headers().get("idempotency-key").map(|v| v.to_str().map(str::to_owned));
        let key = match key {
            None => None,
            Some(Ok(k)) if relay_domain::command::valid_key(&k) => Some(k),
            Some(_) => return bad("bad_key", "Idempotency-Key must be 1 to 128 letters, digits or ASCII punctuation"),
        };
        if fields.contains_key("key") || fields.contains_key("v") {
            return bad("bad_field", "the key goes in the Idempotency-Key header; \"v\" is not a field here");
        }
        fields.insert("v".into(), json!(COMMAND_VERSION));
        // A keyless GET is run under a key of its own that nothing records.
        fields.insert("key".into(), json!(key.clone().unwrap_or_else(|| "unrecorded-read".into())));
        let cmd = match Command::parse(&Value::Object(fields).to_string()) {
            Ok(c) => c,
            Err(r) => return bad(r.code(), &r.message()),
        };
        if key.is_none() && cmd.method != CommandMethod::Get {
            return bad("missing_idempotency_key", "an Idempotency-Key header is required for anything but GET");
        }
        if !self.cfg.allow.allows_command(&cmd) {
            let r = relay_domain::command::Refusal::NotAllowed;
            return resp::error(StatusCode::FORBIDDEN, r.code(), &r.message());
        }
        if let (Some(age), CommandMethod::Get) = (max_age_s, cmd.method) {
            if let Some(r) = self.fresh_snapshot(&cmd, age).await {
                return r;
            }
        }
        let started = Instant::now();
        loop {
            let outcome = if key.is_some() {
                run(&self.cafe24, &self.state, &cmd, Class::Interactive).await
            } else {
                run(&self.cafe24, &Unrecorded, &cmd, Class::Interactive).await
            };
            match outcome {
                Run::Recorded { outcome, replayed } => return reply(&outcome, replayed),
                Run::NotNow(e) => {
                    let wait = wait_of(&e);
                    let spent = started.elapsed().as_millis() as u64;
                    if spent.saturating_add(wait) > wait_ms {
                        return retry_after(wait, "busy", "the mall's rate limit has no credit within the budget");
                    }
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                // The next run reads the outcome another request recorded.
                Run::RecordedMeanwhile => {}
                // The same key's POST is out in another request (the app retried, or sent it as
                // a command too): its answer, within the budget, or a 503 to ask again.
                Run::InFlight { retry_ms } => {
                    let wait = retry_ms.min(250);
                    let spent = started.elapsed().as_millis() as u64;
                    if spent.saturating_add(wait) > wait_ms {
                        return retry_after(retry_ms, "in_progress", "a request with this key is being made");
                    }
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                Run::Again(class) => return retry_after(1_000, "retry", class),
            }
        }
    }

    /// The stored snapshot a GET reads, when it is at most `max_age_s` old.
    async fn fresh_snapshot(&self, cmd: &Command, max_age_s: u64) -> Option<Response<Body>> {
        let (kind, id, wrapper) = snapshot_of(&cmd.path)?;
        if !cmd.query.is_empty() {
            return None; // `embed` and the like: the stored copy may not be what was asked
        }
        let key = cmd.shop_no.unwrap_or(ShopNo::DEFAULT).entity_key(id);
        let (at, data) = self.state.snapshot(&cmd.mall_id, kind, &key).await.ok()??;
        let age = self.now().saturating_sub(at);
        if age > max_age_s.saturating_mul(1000) {
            return None;
        }
        let data = data?; // deleted: Cafe24 answers that itself (404)
        let mut body = Map::new();
        body.insert(wrapper.into(), data);
        let r = with_header(resp::json(StatusCode::OK, &Value::Object(body)), "x-relay-outcome", "snapshot");
        Some(with_header(r, "x-relay-snapshot-age-ms", &age.to_string()))
    }

    async fn snapshot(&self, req: &Request, mall: &str, kind: &str, id: &str) -> Response<Body> {
        let bad = |code: &str, message: &str| resp::error(StatusCode::BAD_REQUEST, code, message);
        let Ok(mall) = MallId::parse(mall) else { return bad("bad_mall", "not a Cafe24 mall id") };
        let Some(kind) = SnapshotKind::parse(kind) else {
            return bad("bad_kind", "kind must be order, product or customer");
        };
        if !relay_domain::ids::is_resource_id(id) {
            return bad("bad_id", "not an entity id");
        }
        let shop = match req.query_string_parameters_ref().and_then(|q| q.first("shop_no").map(str::to_owned)) {
            None => ShopNo::DEFAULT,
            Some(s) => match s.parse().ok().and_then(ShopNo::new) {
                Some(n) => n,
                None => return bad("bad_shop", "shop_no must be a positive integer"),
            },
        };
        match self.state.snapshot(&mall, kind, &shop.entity_key(id)).await {
            Ok(Some((version, data))) => resp::json(
                StatusCode::OK,
                &json!({"mall_id": mall.as_str(), "kind": kind.as_str(), "id": id, "shop_no": shop.get(),
                    "version": version, "deleted": data.is_none(), "data": data}),
            ),
            Ok(None) => resp::error(StatusCode::NOT_FOUND, "not_found", "no snapshot of this entity is stored"),
            Err(e) => {
                tracing::warn!(error = %e, "snapshot store unavailable");
                retry_after(1_000, "retry", "the snapshot store is unavailable")
            }
        }
    }
}
