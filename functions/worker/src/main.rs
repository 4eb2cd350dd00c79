//! worker binary: reads configuration, builds clients once, serves SQS batches.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use relay_aws::limiter::{system_clock, DynamoLimiter};
use relay_aws::sqs::{SqsQueue, SqsVisibility};
use relay_aws::state::DynamoState;
use relay_aws::tokens::DynamoTokenStore;
use relay_cafe24::{Cafe24, Cafe24Config};
use relay_lambda::telemetry::invocation_span;
use tracing::Instrument;
use worker::{Worker, WorkerConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    relay_lambda::telemetry::init("worker");
    let sdk = relay_aws::load_sdk_config().await;
    // Secrets from the secret named by SECRET_ID (on AWS), over the environment.
    let env = relay_aws::secrets::lookup(&sdk, |k| std::env::var(k).ok()).await?;
    let env = &env;
    let cfg = WorkerConfig::from_lookup(env)?;
    let mut cafe24_cfg = Cafe24Config::from_lookup(env)?;
    if let Some(ms) = env("WORKER_MAX_SLEEP_MS").and_then(|v| v.trim().parse::<u64>().ok()) {
        cafe24_cfg.max_inline_wait_ms = ms.min(5_000);
    } else {
        cafe24_cfg.max_inline_wait_ms = 200;
    }
    let (ddb, sqs) = (aws_sdk_dynamodb::Client::new(&sdk), aws_sdk_sqs::Client::new(&sdk));
    let clock = system_clock();
    let limiter = DynamoLimiter::new(ddb.clone(), cfg.rate_limit_table.clone(), cfg.limiter.clone(), clock.clone());
    let cafe24 = Cafe24::new(cafe24_cfg, limiter, DynamoTokenStore::new(ddb.clone(), cfg.token_table.clone()), clock)?;
    let worker = Worker::new(
        cafe24,
        DynamoState::new(ddb, cfg.state_table.clone()),
        SqsQueue::new(sqs.clone(), cfg.dlq_url.clone()),
        SqsVisibility::new(sqs, cfg.work_queue_url.clone()),
        cfg,
    );
    let worker = &worker;
    run(service_fn(move |ev: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| async move {
        let deadline = ev.context.deadline();
        let left = move || deadline.duration_since(std::time::SystemTime::now()).unwrap_or_default();
        let span = invocation_span("worker", &ev.context.request_id);
        Ok::<_, std::convert::Infallible>(worker.handle_batch(ev.payload, left).instrument(span).await)
    }))
    .await
}
