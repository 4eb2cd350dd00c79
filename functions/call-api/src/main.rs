//! call-api binary: reads configuration, builds the AWS clients once, serves requests. All
//! logic lives in the library (`call_api::handler`).

use call_api::{CallApi, CallApiConfig};
use lambda_http::{service_fn, Error, Request};
use relay_cafe24::Cafe24Config;
use relay_lambda::clock::system_clock;
use relay_lambda::http_event::SafeAdapter;

#[tokio::main]
async fn main() -> Result<(), Error> {
    relay_lambda::telemetry::init("call-api");
    let sdk = relay_aws::load_sdk_config().await;
    // The client secret from the secret named by SECRET_ID (on AWS), over the environment.
    let env = relay_aws::secrets::lookup(&sdk, |k| std::env::var(k).ok()).await?;
    let env = &env;
    let cfg = CallApiConfig::from_lookup(env)?;
    let api = CallApi::on_aws(&relay_aws::Clients::new(&sdk), cfg, Cafe24Config::from_lookup(env)?, system_clock())?;
    let api = &api;
    let adapter = lambda_http::Adapter::from(service_fn(move |req: Request| async move {
        Ok::<_, std::convert::Infallible>(api.handle(req).await)
    }));
    lambda_http::lambda_runtime::run(SafeAdapter(adapter)).await
}
