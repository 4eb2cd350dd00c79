//! orders-consumer binary: `ORDERS_TABLE` names the app's table.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use orders_consumer::Orders;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt().json().with_target(false).without_time().init();
    let table = std::env::var("ORDERS_TABLE").map_err(|_| "ORDERS_TABLE is not set")?;
    // The workspace builds the AWS SDK without its default HTTP client (one TLS stack, ring):
    // name one. A copy of this example with default SDK features can use `load_from_env()`.
    let http = {
        use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
        aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
    };
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http).load().await;
    let orders = Orders::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    let orders = &orders;
    run(service_fn(move |ev: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| async move {
        Ok::<_, std::convert::Infallible>(orders.handle(ev.payload).await)
    }))
    .await
}
