//! worker binary: reads configuration, builds clients once, serves SQS batches.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use relay_cafe24::Cafe24Config;
use relay_lambda::clock::system_clock;
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
    let cafe24_cfg = Cafe24Config::from_lookup(env)?;
    let mut worker = Worker::on_aws(&relay_aws::Clients::new(&sdk), cfg, cafe24_cfg, system_clock())?;
    // A client secret reissued in the developer center and rotated in Secrets Manager reaches
    // this warm process on Cafe24's first refusal (relay_cafe24::fault).
    if let Some(reader) = relay_aws::secrets::client_secret_reader(&sdk, |k| std::env::var(k).ok()) {
        worker.cafe24.set_secret_reader(reader);
    }
    let worker = &worker;
    run(service_fn(move |ev: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| async move {
        let deadline = ev.context.deadline();
        let left = move || deadline.duration_since(std::time::SystemTime::now()).unwrap_or_default();
        let span = invocation_span("worker", &ev.context.request_id);
        Ok::<_, std::convert::Infallible>(worker.handle_batch(ev.payload, left).instrument(span).await)
    }))
    .await
}
