//! orders-consumer binary: `ORDERS_TABLE` names the app's table.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use orders_consumer::Orders;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt().json().with_target(false).without_time().init();
    let table = std::env::var("ORDERS_TABLE").map_err(|_| "ORDERS_TABLE is not set")?;
    let sdk = aws_config::load_from_env().await;
    let orders = Orders::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    let orders = &orders;
    run(service_fn(move |ev: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| async move {
        Ok::<_, std::convert::Infallible>(orders.handle(ev.payload).await)
    }))
    .await
}
