//! # devstack — the local development and test stack (never shipped in a function)
//!
//! - [`moto`]: finds or starts the local moto server (SQS + DynamoDB on the real wire
//!   protocols), or starts a private one a test may kill.
//! - [`resources`]: creates the queues (and later tables) with the same attributes the real
//!   infrastructure uses — FIFO, content-based deduplication **off**, FIFO dead-letter queues
//!   with a redrive policy.
//! - [`esm`]: a local SQS event source mapping. moto has none, so this drives handlers the way
//!   Lambda does: receive ≤ 10 messages with all system attributes, build the exact SQS event
//!   JSON, invoke, delete the successes, leave the `batchItemFailures` for redelivery, with a
//!   `MaximumConcurrency`-like cap.
//!
//! `anyhow` is fine here: this is a tool, not a request path.

pub mod esm;
pub mod moto;
pub mod resources;

/// Region used for every local resource.
pub const LOCAL_REGION: &str = "us-east-1";

/// SDK configuration for a local endpoint with dummy credentials.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(relay_aws::http_client())
        .region(aws_config::Region::new(LOCAL_REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "devstack"))
        .load()
        .await
}

/// [`sdk_config`] with the functions' own timeouts (`relay_aws::timeout_config`): an attempt
/// slower than 1.5 s is abandoned and retried, as in a deployed function. For tests that inject
/// delays; the others keep the SDK's defaults, so a loaded machine's slow moto is not a fault.
pub async fn sdk_config_strict(endpoint: &str) -> aws_config::SdkConfig {
    sdk_config(endpoint).await.into_builder().timeout_config(relay_aws::timeout_config()).build()
}

/// A fresh, unique resource-name prefix (tests use one each, so they never share state).
pub fn unique_prefix(tag: &str) -> String {
    let n: u32 = rand::random();
    let tag: String = tag.chars().filter(|c| c.is_ascii_alphanumeric()).take(20).collect();
    format!("{tag}-{n:08x}-")
}
