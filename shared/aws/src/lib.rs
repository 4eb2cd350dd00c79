//! # relay-aws — AWS adapters for relay-domain's ports
//!
//! - [`sqs::SqsQueue`] implements [`relay_domain::ports::MessageQueue`] on an SQS FIFO queue,
//!   always with an explicit `MessageGroupId` and `MessageDeduplicationId`.
//! - [`limiter::DynamoLimiter`]: the per-mall GCRA rate limiter on DynamoDB (one conditional
//!   write per admitted call).
//! - [`bus::EventBridgeBus`] implements [`relay_domain::ports::EventBus`] (delivery to the app).
//! - [`secrets::lookup`]: configuration variables from the Secrets Manager secret named by
//!   `SECRET_ID`, read once per cold start, over the process environment.
//! - [`load_sdk_config`] builds the shared SDK configuration once per cold start: region and
//!   credentials from the default chain, `AWS_ENDPOINT_URL` honoured (moto locally), and
//!   bounded timeouts so a caller answers "unavailable" instead of hanging.
//!
//! Adapters keep the SDK error as the `#[source]` of the domain error; nothing here flattens
//! an error into a string, and nothing here logs message bodies.

pub mod bus;
pub mod limiter;
pub mod once;
pub mod secrets;
pub mod sqs;
pub mod state;
pub mod tokens;

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// Connect timeout for AWS API calls.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Upper bound of one AWS API call including the SDK's own retries. Sized to the functions'
/// deadlines: a DynamoDB or SQS call answers in milliseconds; one that takes seconds is
/// failing, and a token pair must be stored well inside `relay_cafe24::deadline::PERSIST_BUDGET`.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(4);
/// Upper bound of one attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1_500);

/// The AWS clients the functions use, built once per cold start from one SDK configuration.
#[derive(Clone, Debug)]
pub struct Clients {
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// DynamoDB.
    pub ddb: aws_sdk_dynamodb::Client,
    /// EventBridge (delivery to the app).
    pub events: aws_sdk_eventbridge::Client,
}

impl Clients {
    /// All clients from one configuration.
    pub fn new(conf: &SdkConfig) -> Self {
        Self {
            sqs: aws_sdk_sqs::Client::new(conf),
            ddb: aws_sdk_dynamodb::Client::new(conf),
            events: aws_sdk_eventbridge::Client::new(conf),
        }
    }
}

impl Clients {
    /// The ports a Cafe24 client takes on AWS: the limiter on `rate_limit_table` and the token
    /// records in `token_table` (the worker's and the call API's, one construction).
    pub fn cafe24_ports(
        &self,
        rate_limit_table: &str,
        token_table: &str,
        limiter: relay_domain::ratelimit::LimiterConfig,
        clock: relay_domain::clock::Clock,
    ) -> (limiter::DynamoLimiter, tokens::DynamoTokenStore) {
        (
            limiter::DynamoLimiter::new(self.ddb.clone(), rate_limit_table, limiter, clock),
            tokens::DynamoTokenStore::new(self.ddb.clone(), token_table),
        )
    }
}

/// The HTTP client of every AWS SDK client here: hyper 1 with rustls on ring, the same TLS
/// stack reqwest uses for Cafe24 (the SDK's default features would add aws-lc and a legacy
/// hyper 0.14 + rustls 0.21 stack; see the workspace Cargo.toml). Trust roots: the system's.
pub fn http_client() -> aws_sdk_sqs::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// The functions' timeouts ([`CONNECT_TIMEOUT`], [`ATTEMPT_TIMEOUT`], [`OPERATION_TIMEOUT`]).
/// An attempt that runs past its timeout is retried by the SDK although it may have been
/// applied: every conditional write here recognises its own earlier attempt (see `state.rs`).
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// Loads the SDK configuration from the environment (default chain) with bounded timeouts.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .timeout_config(timeout_config())
        .load()
        .await
}
