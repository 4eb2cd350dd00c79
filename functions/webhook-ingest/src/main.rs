//! webhook-ingest binary: reads configuration, builds the AWS clients once, serves requests.
//! All logic lives in the library (`webhook_ingest::handler`, `webhook_ingest::install`).

use lambda_http::{service_fn, Error, Request};
use relay_cafe24::Cafe24Config;
use relay_domain::ports::MessageQueue;
use relay_lambda::clock::system_clock;
use webhook_ingest::event::SafeAdapter;
use webhook_ingest::install::{AwsInstaller, InstallConfig, InstallFlow};
use webhook_ingest::{ConfigError, Ingest, IngestConfig};

async fn serve<Q: MessageQueue, I: InstallFlow>(ingest: Ingest<Q, I>) -> Result<(), Error> {
    let ingest = &ingest;
    // lambda_http's own `run`, with the event read through `SafeEvent` (see `event`): no
    // query string can panic the conversion.
    let adapter = lambda_http::Adapter::from(service_fn(move |req: Request| async move {
        Ok::<_, std::convert::Infallible>(ingest.handle(req).await)
    }));
    lambda_http::lambda_runtime::run(SafeAdapter(adapter)).await
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    relay_lambda::telemetry::init("webhook-ingest");
    let sdk = relay_aws::load_sdk_config().await;
    // Secrets from the secret named by SECRET_ID (on AWS), over the environment.
    let env = relay_aws::secrets::lookup(&sdk, |k| std::env::var(k).ok()).await?;
    let env = &env;
    // A bad configuration fails the cold start, loudly, not the 1,000th request.
    let cfg = IngestConfig::from_lookup(env)?;
    let ingest = Ingest::on_aws(&aws_sdk_sqs::Client::new(&sdk), &cfg);
    // The webhook receiver needs no install flow (nor its permissions).
    if cfg.routes == webhook_ingest::Routes::Webhooks || env("CAFE24_CLIENT_ID").is_none() {
        return serve(ingest).await;
    }
    let token_table = env("TOKEN_TABLE").filter(|v| !v.trim().is_empty()).ok_or(ConfigError::Missing("TOKEN_TABLE"))?;
    let installer = AwsInstaller::on_aws(
        &relay_aws::Clients::new(&sdk),
        &token_table,
        Cafe24Config::from_lookup(env)?,
        InstallConfig::from_lookup(env)?,
        system_clock(),
    )?;
    serve(ingest.with_install(installer)).await
}
