//! webhook-ingest binary: reads configuration, builds the SQS client once, serves requests.
//! All logic lives in the library (`webhook_ingest::handler`).

use lambda_http::{run, service_fn, Error, Request};
use relay_aws::sqs::SqsQueue;
use webhook_ingest::{Ingest, IngestConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    relay_lambda::telemetry::init();
    // A bad configuration fails the cold start, loudly, not the 1,000th request.
    let cfg = IngestConfig::from_lookup(|k| std::env::var(k).ok())?;
    let sdk = relay_aws::load_sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let ingest = Ingest::new(
        &cfg,
        SqsQueue::new(sqs.clone(), cfg.inbox_queue_url.clone()),
        SqsQueue::new(sqs, cfg.parking_queue_url.clone()),
    );
    let ingest = &ingest;
    run(service_fn(move |req: Request| async move { Ok::<_, std::convert::Infallible>(ingest.handle(req).await) }))
        .await
}
