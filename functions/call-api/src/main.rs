//! call-api binary: reads configuration, builds the AWS clients once, serves requests. All
//! logic lives in the library (`call_api::handler`).

use call_api::{CallApi, CallApiConfig};
use lambda_http::{service_fn, Error, Request};
use relay_cafe24::{Cafe24, Cafe24Config};
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
    let clients = relay_aws::Clients::new(&sdk);
    let clock = system_clock();
    let limiter = relay_aws::limiter::DynamoLimiter::new(
        clients.ddb.clone(),
        cfg.rate_limit_table.clone(),
        cfg.limiter.clone(),
        clock.clone(),
    );
    let tokens = relay_aws::tokens::DynamoTokenStore::new(clients.ddb.clone(), cfg.token_table.clone());
    let cafe24 = Cafe24::new(Cafe24Config::from_lookup(env)?, limiter, tokens, clock)?;
    let state = relay_aws::state::DynamoState::new(clients.ddb.clone(), cfg.state_table.clone());
    let api = CallApi::new(cafe24, state, cfg);
    let api = &api;
    let adapter = lambda_http::Adapter::from(service_fn(move |req: Request| async move {
        Ok::<_, std::convert::Infallible>(api.handle(req).await)
    }));
    lambda_http::lambda_runtime::run(SafeAdapter(adapter)).await
}
