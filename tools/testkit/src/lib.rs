//! # testkit — test support that depends on no function crate
//!
//! A fresh, uniquely named set of resources on moto per test ([`TestEnv`]), fixture loading,
//! queue inspection, the HTTP event shapes Lambda delivers (Function URL and API Gateway HTTP
//! API v2) as JSON, the Cafe24 simulator's client configuration and seeded installs, and the EMF
//! checker. The functions' own tests (webhook-ingest's runtime-API test) use it directly; the
//! black-box suite in `tests/` re-exports it and adds what needs the functions (`relay-tests`).
//! Nothing here is shipped.

// Test support: failing loudly on a broken fixture or environment is the point.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod emf;
pub mod faults;

use std::path::PathBuf;

use anyhow::{Context, Result};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use base64::Engine as _;
use devstack::resources::Stack;
use serde_json::{json, Value};

/// The webhook key the tests configure.
pub const KEY: &str = "test-webhook-key-current";
/// The previous key, accepted during rotation.
pub const PREVIOUS_KEY: &str = "test-webhook-key-previous";

/// The fixtures directory (`tests/fixtures/`).
fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A fixture file's bytes (`tests/fixtures/<rel>`).
pub fn fixture(rel: &str) -> Vec<u8> {
    let p = fixtures_dir().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

/// Every Cafe24 sample fixture: (file name, bytes).
pub fn cafe24_fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = fixtures_dir().join("cafe24");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap_or_default()))
        .collect();
    out.sort();
    out
}

/// A test's own resources on the shared moto server.
pub struct TestEnv {
    /// moto endpoint.
    pub endpoint: String,
    /// SQS client for moto.
    pub sqs: aws_sdk_sqs::Client,
    /// DynamoDB client for moto.
    pub ddb: aws_sdk_dynamodb::Client,
    /// EventBridge client for moto.
    pub events: aws_sdk_eventbridge::Client,
    /// All three, as the functions' composition roots take them.
    pub clients: relay_aws::Clients,
    /// The created resources.
    pub stack: Stack,
}

impl TestEnv {
    /// Creates fresh resources with a unique prefix.
    pub async fn new(tag: &str) -> Result<Self> {
        let endpoint = devstack::moto::endpoint().await?;
        Self::on(&endpoint, tag).await
    }

    /// [`TestEnv::new`] whose clients have the functions' own timeouts
    /// (`devstack::sdk_config_strict`): for tests that inject delays with [`faults`].
    pub async fn strict(tag: &str) -> Result<Self> {
        let endpoint = devstack::moto::endpoint().await?;
        let clients = relay_aws::Clients::new(&devstack::sdk_config_strict(&endpoint).await);
        let stack = Stack::create(&clients, &devstack::unique_prefix(tag)).await?;
        let (sqs, ddb, events) = (clients.sqs.clone(), clients.ddb.clone(), clients.events.clone());
        Ok(Self { endpoint, sqs, ddb, events, clients, stack })
    }

    /// Adds an injected fault on this test's endpoint (scope it with one of the stack's names).
    pub async fn inject(&self, rule: &faults::Rule) -> Result<()> {
        faults::inject(&self.endpoint, rule).await
    }

    /// Creates fresh resources on a given endpoint.
    pub async fn on(endpoint: &str, tag: &str) -> Result<Self> {
        Self::on_split(endpoint, endpoint, tag).await
    }

    /// [`TestEnv::on`] with DynamoDB on an endpoint of its own, as `AWS_ENDPOINT_URL_DYNAMODB`
    /// would put it: a test whose DynamoDB writes would saturate one moto keeps its SQS requests
    /// out of that queue (on AWS the two services never wait for each other).
    pub async fn on_split(sqs_endpoint: &str, ddb_endpoint: &str, tag: &str) -> Result<Self> {
        let mut clients = relay_aws::Clients::new(&devstack::sdk_config(sqs_endpoint).await);
        clients.ddb = aws_sdk_dynamodb::Client::new(&devstack::sdk_config(ddb_endpoint).await);
        let stack = Stack::create(&clients, &devstack::unique_prefix(tag)).await?;
        let (sqs, ddb, events) = (clients.sqs.clone(), clients.ddb.clone(), clients.events.clone());
        Ok(Self { endpoint: sqs_endpoint.to_owned(), sqs, ddb, events, clients, stack })
    }

    /// Receives everything visible on `url` (with system attributes), without deleting.
    pub async fn peek_all(&self, url: &str) -> Result<Vec<Message>> {
        let mut all = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .context("receive")?;
            if out.messages().is_empty() {
                return Ok(all);
            }
            all.extend(out.messages().iter().cloned());
        }
    }

    /// Receives and deletes everything on `url` (FIFO groups unlock as their messages are
    /// deleted), returning the messages in the order received.
    pub async fn drain_all(&self, url: &str) -> Result<Vec<Message>> {
        let mut all = Vec::new();
        let mut empty = 0;
        while empty < 2 {
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(30)
                .send()
                .await?;
            if out.messages().is_empty() {
                empty += 1;
                continue;
            }
            empty = 0;
            for m in out.messages() {
                if let Some(rh) = m.receipt_handle() {
                    self.sqs.delete_message().queue_url(url).receipt_handle(rh).send().await?;
                }
            }
            all.extend(out.messages().iter().cloned());
        }
        Ok(all)
    }

    /// Exact number of messages in the queue, visible or in flight.
    pub async fn depth(&self, url: &str) -> Result<usize> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await?;
        let attrs = out.attributes().context("no attributes")?;
        let n = |a: &A| attrs.get(a).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        Ok(n(&A::ApproximateNumberOfMessages) + n(&A::ApproximateNumberOfMessagesNotVisible))
    }
}

/// A system attribute of a received message.
pub fn attr(m: &Message, name: MessageSystemAttributeName) -> Option<String> {
    m.attributes().and_then(|a| a.get(&name)).cloned()
}

/// Which HTTP event shape Lambda delivers.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// Lambda Function URL.
    FunctionUrl,
    /// API Gateway HTTP API, payload format 2.0, `$default` stage.
    HttpApiV2,
    /// API Gateway HTTP API with a named stage (`prod`) in the path.
    HttpApiV2Staged,
}

/// Builds the JSON event Lambda would deliver for `POST /webhooks/cafe24`.
pub fn http_event(
    shape: Shape,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    base64: bool,
) -> Value {
    let headers: serde_json::Map<String, Value> =
        headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), Value::String((*v).to_owned()))).collect();
    let body_field = if base64 {
        Value::String(base64::engine::general_purpose::STANDARD.encode(body))
    } else {
        Value::String(String::from_utf8_lossy(body).into_owned())
    };
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let (route_key, stage, domain, account, raw_path) = match shape {
        Shape::FunctionUrl => {
            ("$default", "$default", "abcdefg.lambda-url.us-east-1.on.aws", "anonymous", path.to_owned())
        }
        Shape::HttpApiV2 => (
            "POST /webhooks/cafe24",
            "$default",
            "r3pmxmplak.execute-api.us-east-1.amazonaws.com",
            "123456789012",
            path.to_owned(),
        ),
        Shape::HttpApiV2Staged => (
            "POST /webhooks/cafe24",
            "prod",
            "r3pmxmplak.execute-api.us-east-1.amazonaws.com",
            "123456789012",
            format!("/prod{path}"),
        ),
    };
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": account,
            "apiId": "r3pmxmplak",
            "domainName": domain,
            "domainPrefix": domain.split('.').next().unwrap_or_default(),
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "Cafe24-Webhook"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": route_key,
            "stage": stage,
            "time": "22/Nov/2026:01:54:28 +0000",
            "timeEpoch": 1_795_312_468_000u64
        },
        "body": body_field,
        "isBase64Encoded": base64
    })
}

/// The Cafe24 client configuration for an app `relay-client`/`relay-secret` on a simulator at
/// `sim_base` (`http://127.0.0.1:PORT`).
pub fn sim_cafe24_config(sim_base: &str) -> relay_cafe24::Cafe24Config {
    let base = format!("{sim_base}/{{mall_id}}");
    relay_cafe24::Cafe24Config::from_lookup(|k| match k {
        "CAFE24_API_BASE_URL" => Some(base.clone()),
        "CAFE24_API_VERSION" => Some("2025-12-01".into()),
        "CAFE24_CLIENT_ID" => Some("relay-client".into()),
        "CAFE24_CLIENT_SECRET" => Some("relay-secret".into()),
        _ => None,
    })
    .unwrap()
}

/// "Already installed": the simulator issues `relay-client` a token pair with every read scope for
/// `mall` (not counted as an issuance) and the pair is stored in the env's token table.
pub async fn install_seeded(sim: &cafe24_sim::Sim, env: &TestEnv, mall: &str) -> relay_domain::MallId {
    install_seeded_with(sim, env, mall, cafe24_sim::state::ALL_READ_SCOPES).await
}

/// [`install_seeded`] with write scopes too: an app that asked for both (commands, the call API).
pub async fn install_seeded_writer(sim: &cafe24_sim::Sim, env: &TestEnv, mall: &str) -> relay_domain::MallId {
    use cafe24_sim::state::{ALL_READ_SCOPES, ALL_WRITE_SCOPES};
    let scopes: Vec<&str> = ALL_READ_SCOPES.iter().chain(ALL_WRITE_SCOPES).copied().collect();
    install_seeded_with(sim, env, mall, &scopes).await
}

async fn install_seeded_with(
    sim: &cafe24_sim::Sim,
    env: &TestEnv,
    mall: &str,
    scopes: &[&str],
) -> relay_domain::MallId {
    use relay_domain::tokens::{TokenPair, TokenStore};
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let (a, r) = sim.seed_tokens(mall, "relay-client", scopes.clone());
    let now = sim.clock.now_ms();
    let pair = TokenPair::issued(a, r, scopes, now);
    let m = relay_domain::MallId::parse(mall).unwrap();
    relay_aws::tokens::DynamoTokenStore::new(env.ddb.clone(), env.stack.token_table.clone())
        .put_installed(&m, &pair, now)
        .await
        .unwrap();
    m
}
